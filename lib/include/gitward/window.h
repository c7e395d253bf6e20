/* Maintenance windows (--window "DAYS HH:MM-HH:MM [TZ]"): when disruptive
 * actions (update, delete) may run. Pure but for the system's tzdata: the
 * instant is always a parameter.
 *
 * DAYS is "*" or a comma list of mon..sun and ranges ("mon-fri", wrapping
 * "fri-mon"); HH:MM-HH:MM is wall-clock time in TZ (an IANA name from
 * /usr/share/zoneinfo; default UTC); an end before the start crosses
 * midnight and belongs to the day it opens; an end of 24:00 is midnight.
 *
 * Daylight saving time: a window opens at the first instant the zone's
 * clock reads its start on one of its days, and closes at the first
 * instant after that the clock reads its end. So a start or end in the hour
 * skipped in spring is the end of the gap (`* 02:30-03:30 Europe/Berlin`
 * is open 03:00-03:30 CEST on 2027-03-28, a window wholly inside the gap
 * does not open that day), and in autumn a repeated time counts at its
 * first occurrence (the same window is open from 02:30 CEST to 03:30 CET
 * on 2027-10-31: two hours).
 *
 * Zones are evaluated with the C library's (TZ, tzset, mktime, localtime_r)
 * under one lock: gitward itself uses only UTC (gmtime_r, timegm), and TZ
 * is put into the environment once at parse time (single-threaded start),
 * so evaluating only replaces its value in place and restores it. */
#ifndef GITWARD_WINDOW_H
#define GITWARD_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/util.h"

#define GW_WINDOW_TZ_MAX 64

struct gw_window {
	unsigned days; /* bit 0 Monday .. bit 6 Sunday */
	int start_min, end_min; /* minutes of the day; end 1440: midnight */
	char tz[GW_WINDOW_TZ_MAX]; /* "UTC" or an IANA name */
};

/* Parse spec. On failure err->col is the 1-based column in spec and
 * err->msg reads `column 5: unknown day "fry" (mon..sun)` (-EINVAL). */
int gw_window_parse(struct gw_window *out, const char *spec, struct gw_error *err);

/* Is one of the n windows open at now_ms (wall clock ms)? n 0: always. */
bool gw_windows_open(const struct gw_window *v, size_t n, int64_t now_ms);
/* The next instant (ms) at or after now_ms when one of the windows is
 * open: now_ms when one is; 0 when none opens within 8 days (cannot happen
 * for a valid window but in a zone that skips it). */
int64_t gw_windows_next_open(const struct gw_window *v, size_t n, int64_t now_ms);
/* Both in one evaluation (the zones are switched once): returns whether
 * one is open at now_ms, and sets *next_ms as gw_windows_next_open does. */
bool gw_windows_check(const struct gw_window *v, size_t n, int64_t now_ms, int64_t *next_ms);

#endif
