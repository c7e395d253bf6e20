/* Maintenance windows: the --window grammar and when a window is open, in
 * its time zone, across daylight saving changes (see gitward/window.h for
 * the rules and why the C library's zones are used under a lock). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gitward/window.h"

static const char *const day_names[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

static int fail_at(struct gw_error *err, size_t col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(struct gw_error *err, size_t col, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gw_error_set(err, -EINVAL, "column %zu: %s", col, msg);
	err->col = (unsigned)col;
	return -EINVAL;
}

static int day_of(const char *s, size_t n)
{
	for (int d = 0; d < 7; d++)
		if (n == 3 && !strncmp(s, day_names[d], 3))
			return d;
	return -1;
}

/* DAYS: "*" or "mon,wed-fri,sat-mon" */
static int parse_days(unsigned *out, const char *spec, size_t start, size_t end, struct gw_error *err)
{
	char tok[32];
	if (end - start == 1 && spec[start] == '*') {
		*out = 0x7f;
		return 0;
	}
	*out = 0;
	for (size_t i = start; i <= end;) {
		size_t j = i;
		while (j < end && spec[j] != ',')
			j++;
		const char *dash = memchr(spec + i, '-', j - i);
		size_t a_end = dash ? (size_t)(dash - spec) : j;
		int a = day_of(spec + i, a_end - i), b = a;
		if (a < 0) {
			snprintf(tok, sizeof(tok), "%.*s", (int)(a_end - i), spec + i);
			return fail_at(err, i + 1, "unknown day \"%s\" (mon..sun)", tok);
		}
		if (dash) {
			b = day_of(dash + 1, j - a_end - 1);
			if (b < 0) {
				snprintf(tok, sizeof(tok), "%.*s", (int)(j - a_end - 1), dash + 1);
				return fail_at(err, a_end + 2, "unknown day \"%s\" (mon..sun)", tok);
			}
		}
		for (int d = a;; d = (d + 1) % 7) { /* a range may wrap: fri-mon */
			*out |= 1u << d;
			if (d == b)
				break;
		}
		i = j + 1;
	}
	return 0;
}

/* "HH:MM" at s (5 characters); max_h 24 allows the end "24:00" */
static int parse_hhmm(int *out, const char *s, int max_h)
{
	if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] == ':' && s[3] >= '0' && s[3] <= '5' &&
	      s[4] >= '0' && s[4] <= '9'))
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > max_h || (h == 24 && m))
		return -1;
	*out = h * 60 + m;
	return 0;
}

/* An IANA name of the system's tzdata: a regular file starting "TZif". */
static bool zone_known(const char *name)
{
	char path[512];
	char magic[4];
	if (!strcmp(name, "UTC"))
		return true;
	if (name[0] == '/' || name[0] == '.' || strstr(name, "..") ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") != strlen(name))
		return false;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", name);
	FILE *f = fopen(path, "rbe");
	if (!f)
		return false;
	struct stat st;
	bool ok = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && fread(magic, 1, 4, f) == 4 &&
		!memcmp(magic, "TZif", 4);
	fclose(f);
	return ok;
}

int gw_window_parse(struct gw_window *out, const char *spec, struct gw_error *err)
{
	struct gw_window w = { 0 };
	size_t tok[4][2], n = 0, len = strlen(spec);
	char what[80];

	for (size_t i = 0; i < len;) {
		while (i < len && spec[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t j = i;
		while (j < len && spec[j] != ' ')
			j++;
		if (n == 3) {
			snprintf(what, sizeof(what), "%.*s", (int)(j - i > 60 ? 60 : j - i), spec + i);
			return fail_at(err, i + 1, "unexpected \"%s\" after the time zone", what);
		}
		tok[n][0] = i;
		tok[n][1] = j;
		n++;
		i = j;
	}
	if (n < 2)
		return fail_at(err, n ? tok[0][1] + 1 : 1, "%s",
			       "expected DAYS HH:MM-HH:MM [TZ], e.g. mon-fri 02:00-04:00 UTC");
	int rc = parse_days(&w.days, spec, tok[0][0], tok[0][1], err);
	if (rc < 0)
		return rc;
	const char *t = spec + tok[1][0];
	if (tok[1][1] - tok[1][0] != 11 || t[5] != '-' || parse_hhmm(&w.start_min, t, 23) < 0 ||
	    parse_hhmm(&w.end_min, t + 6, 24) < 0) {
		snprintf(what, sizeof(what), "%.*s", (int)(tok[1][1] - tok[1][0] > 60 ? 60 : tok[1][1] - tok[1][0]), t);
		return fail_at(err, tok[1][0] + 1, "expected HH:MM-HH:MM (00:00..23:59, end up to 24:00), got \"%s\"",
			       what);
	}
	if (w.start_min == w.end_min)
		return fail_at(err, tok[1][0] + 1, "%s", "the window is empty: its start and end are the same");
	snprintf(w.tz, sizeof(w.tz), "UTC");
	if (n == 3) {
		size_t tl = tok[2][1] - tok[2][0];
		snprintf(what, sizeof(what), "%.*s", (int)(tl > 60 ? 60 : tl), spec + tok[2][0]);
		if (tl >= sizeof(w.tz) || !zone_known(what))
			return fail_at(err, tok[2][0] + 1, "unknown time zone \"%s\" (not in /usr/share/zoneinfo)",
				       what);
		snprintf(w.tz, sizeof(w.tz), "%s", what);
	}
	/* TZ is in the environment from now on (see gitward/window.h): later
	 * evaluations replace its value in place, never grow the environment */
	if (strcmp(w.tz, "UTC") != 0 && !getenv("TZ"))
		setenv("TZ", ":/etc/localtime", 0);
	*out = w;
	return 0;
}

/* ---- evaluation ---- */

static pthread_mutex_t zone_mu = PTHREAD_MUTEX_INITIALIZER;

/* The zone's clock, as seconds of a UTC calendar (timegm of the local
 * broken-down time). */
static int64_t local_secs(int64_t t, bool utc)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (utc)
		return t;
	localtime_r(&tt, &tm);
	return (int64_t)timegm(&tm);
}

/* The first instant the zone's clock reads the local time lt (seconds of a
 * UTC calendar): the earliest of its occurrences, or, in a gap, the end of
 * the gap. */
static int64_t first_at(int64_t lt, bool utc)
{
	if (utc)
		return lt;
	time_t tt = (time_t)lt;
	struct tm want;
	gmtime_r(&tt, &want);
	int64_t best = 0;
	bool found = false;
	for (int dst = 0; dst <= 1; dst++) {
		struct tm c = want;
		c.tm_isdst = dst;
		time_t t = mktime(&c);
		if (t == (time_t)-1)
			continue;
		if (local_secs(t, false) == lt && (!found || t < best)) {
			best = t;
			found = true;
		}
	}
	if (found)
		return best;
	/* a gap: the clock jumps over lt; the first instant reading later */
	int64_t lo = lt - 15 * 3600, hi = lt + 15 * 3600;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (local_secs(mid, false) >= lt)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Days since 1970-01-01 of a UTC-calendar second, and its weekday (0 Monday). */
static int64_t day_of_secs(int64_t s)
{
	return s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
}

static int weekday(int64_t day)
{
	return (int)(((day + 3) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
}

/* Scan w's openings around now (s): *open_now, and the first opening after. */
static void scan(const struct gw_window *w, int64_t now, bool *open_now, int64_t *next)
{
	bool utc = !strcmp(w->tz, "UTC");
	int64_t today = day_of_secs(local_secs(now, utc));
	for (int64_t d = today - 1; d <= today + 8; d++) {
		if (!(w->days & (1u << weekday(d))))
			continue;
		int64_t open = first_at(d * 86400 + w->start_min * 60, utc);
		int64_t close_day = w->end_min <= w->start_min ? d + 1 : d;
		int64_t close = first_at(close_day * 86400 + (int64_t)w->end_min * 60, utc);
		if (close <= open)
			continue; /* wholly inside a skipped hour */
		if (open <= now && now < close)
			*open_now = true;
		if (open > now && (!*next || open < *next))
			*next = open;
	}
}

static void zone_eval(const struct gw_window *v, size_t n, int64_t now, bool *open_now, int64_t *next)
{
	pthread_mutex_lock(&zone_mu);
	const char *was = getenv("TZ");
	char *saved = was ? strdup(was) : NULL;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].tz, "UTC") != 0) {
			setenv("TZ", v[i].tz, 1);
			tzset();
		}
		scan(&v[i], now, open_now, next);
	}
	if (saved) {
		setenv("TZ", saved, 1);
		tzset();
	}
	free(saved);
	pthread_mutex_unlock(&zone_mu);
}

bool gw_windows_check(const struct gw_window *v, size_t n, int64_t now_ms, int64_t *next_ms)
{
	bool open = false;
	int64_t next = 0;
	if (!n)
		open = true;
	else
		zone_eval(v, n, now_ms / 1000, &open, &next);
	*next_ms = open ? now_ms : next * 1000;
	return open;
}

bool gw_windows_open(const struct gw_window *v, size_t n, int64_t now_ms)
{
	int64_t next;
	return gw_windows_check(v, n, now_ms, &next);
}

int64_t gw_windows_next_open(const struct gw_window *v, size_t n, int64_t now_ms)
{
	int64_t next;
	gw_windows_check(v, n, now_ms, &next);
	return next;
}
