/* Maintenance windows: the grammar with its column-exact errors, and
 * opening and closing at fixed instants, across midnight, wrapping day
 * ranges and Europe/Berlin's daylight saving changes of 2027. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gitward/window.h"

/* ms of a UTC instant "YYYY-MM-DD HH:MM" */
static int64_t at(const char *s)
{
	struct tm tm = { 0 };
	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min), 5);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000;
}

static struct gw_window parse_ok(const char *spec)
{
	struct gw_window w;
	struct gw_error err = { 0 };
	int rc = gw_window_parse(&w, spec, &err);
	if (rc < 0)
		fail_msg("%s: %s", spec, err.msg);
	return w;
}

static void assert_parse_error(const char *spec, unsigned col, const char *msg)
{
	struct gw_window w;
	struct gw_error err = { 0 };
	assert_int_equal(gw_window_parse(&w, spec, &err), -EINVAL);
	assert_string_equal(err.msg, msg);
	assert_int_equal(err.col, col);
}

static void test_parse_rejects_bad_specs_naming_the_column(void **state)
{
	(void)state;
	assert_parse_error("mon-fry 02:00-04:00", 5, "column 5: unknown day \"fry\" (mon..sun)");
	assert_parse_error("mon,xx 02:00-04:00", 5, "column 5: unknown day \"xx\" (mon..sun)");
	assert_parse_error("* 2:00-04:00", 3,
			   "column 3: expected HH:MM-HH:MM (00:00..23:59, end up to 24:00), got \"2:00-04:00\"");
	assert_parse_error("* 24:00-04:00", 3,
			   "column 3: expected HH:MM-HH:MM (00:00..23:59, end up to 24:00), got \"24:00-04:00\"");
	assert_parse_error("* 02:00-04:60", 3,
			   "column 3: expected HH:MM-HH:MM (00:00..23:59, end up to 24:00), got \"02:00-04:60\"");
	assert_parse_error("* 02:00-02:00", 3, "column 3: the window is empty: its start and end are the same");
	assert_parse_error("* 02:00-04:00 Mars/Olympus", 15,
			   "column 15: unknown time zone \"Mars/Olympus\" (not in /usr/share/zoneinfo)");
	assert_parse_error("* 02:00-04:00 ../../etc/passwd", 15,
			   "column 15: unknown time zone \"../../etc/passwd\" (not in /usr/share/zoneinfo)");
	assert_parse_error("* 02:00-04:00 UTC x", 19, "column 19: unexpected \"x\" after the time zone");
	assert_parse_error("", 1, "column 1: expected DAYS HH:MM-HH:MM [TZ], e.g. mon-fri 02:00-04:00 UTC");
	assert_parse_error("mon", 4, "column 4: expected DAYS HH:MM-HH:MM [TZ], e.g. mon-fri 02:00-04:00 UTC");
}

static void test_parse_days_ranges_wrap(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("* 01:00-02:00").days, 0x7f);
	assert_int_equal(parse_ok("mon-fri 01:00-02:00").days, 0x1f);
	assert_int_equal(parse_ok("fri-mon 01:00-02:00").days, 0x10 | 0x20 | 0x40 | 0x01);
	assert_int_equal(parse_ok("tue,sun 01:00-02:00").days, 0x02 | 0x40);
	struct gw_window w = parse_ok("sat 22:00-24:00 Europe/Berlin");
	assert_int_equal(w.start_min, 22 * 60);
	assert_int_equal(w.end_min, 24 * 60);
	assert_string_equal(w.tz, "Europe/Berlin");
	assert_string_equal(parse_ok("* 01:00-02:00").tz, "UTC");
}

static void test_no_window_is_always_open(void **state)
{
	(void)state;
	assert_true(gw_windows_open(NULL, 0, at("2027-01-01 12:00")));
	assert_int_equal(gw_windows_next_open(NULL, 0, at("2027-01-01 12:00")), at("2027-01-01 12:00"));
}

static void test_open_and_next_open_in_utc(void **state)
{
	(void)state;
	/* 2027-01-04 is a Monday */
	struct gw_window w = parse_ok("mon-fri 02:00-04:00");
	assert_false(gw_windows_open(&w, 1, at("2027-01-04 01:59")));
	assert_true(gw_windows_open(&w, 1, at("2027-01-04 02:00")));
	assert_true(gw_windows_open(&w, 1, at("2027-01-04 03:59")));
	assert_false(gw_windows_open(&w, 1, at("2027-01-04 04:00")));
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-01-04 04:00")), at("2027-01-05 02:00"));
	/* Friday after the window: next Monday */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-01-08 05:00")), at("2027-01-11 02:00"));
	assert_false(gw_windows_open(&w, 1, at("2027-01-09 03:00"))); /* Saturday */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-01-04 03:00")), at("2027-01-04 03:00"));
}

static void test_window_crossing_midnight_belongs_to_the_day_it_opens(void **state)
{
	(void)state;
	struct gw_window w = parse_ok("fri 22:00-02:00");
	assert_true(gw_windows_open(&w, 1, at("2027-01-08 23:00"))); /* Friday */
	assert_true(gw_windows_open(&w, 1, at("2027-01-09 01:59"))); /* Saturday morning: Friday's */
	assert_false(gw_windows_open(&w, 1, at("2027-01-09 02:00")));
	assert_false(gw_windows_open(&w, 1, at("2027-01-08 01:00"))); /* Friday morning: Thursday's, not listed */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-01-09 02:00")), at("2027-01-15 22:00"));
	/* a union: the earliest of several */
	struct gw_window two[2] = { w, parse_ok("sun 10:00-11:00") };
	assert_int_equal(gw_windows_next_open(two, 2, at("2027-01-09 02:00")), at("2027-01-10 10:00"));
	assert_true(gw_windows_open(two, 2, at("2027-01-10 10:30")));
}

static void test_time_zone_and_dst_spring_forward(void **state)
{
	(void)state;
	struct gw_window w = parse_ok("* 02:30-03:30 Europe/Berlin");
	/* winter: CET, UTC+1 */
	assert_true(gw_windows_open(&w, 1, at("2027-01-10 01:30")));
	assert_false(gw_windows_open(&w, 1, at("2027-01-10 02:30")));
	/* 2027-03-28 02:00 CET -> 03:00 CEST (01:00Z): 02:30 does not exist;
	 * the window opens when the gap ends and closes at 03:30 CEST */
	assert_false(gw_windows_open(&w, 1, at("2027-03-28 00:59")));
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-03-28 00:00")), at("2027-03-28 01:00"));
	assert_true(gw_windows_open(&w, 1, at("2027-03-28 01:00")));
	assert_true(gw_windows_open(&w, 1, at("2027-03-28 01:29")));
	assert_false(gw_windows_open(&w, 1, at("2027-03-28 01:30")));
	/* the next day in CEST, UTC+2 */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-03-28 01:30")), at("2027-03-29 00:30"));
	/* a window wholly inside the skipped hour does not open that day */
	struct gw_window gap = parse_ok("* 02:10-02:50 Europe/Berlin");
	assert_int_equal(gw_windows_next_open(&gap, 1, at("2027-03-27 02:00")), at("2027-03-29 00:10"));
	/* the process's own zone is untouched */
	assert_null(getenv("TZ") && strcmp(getenv("TZ"), ":/etc/localtime") ? getenv("TZ") : NULL);
}

static void test_time_zone_and_dst_fall_back(void **state)
{
	(void)state;
	struct gw_window w = parse_ok("* 02:30-03:30 Europe/Berlin");
	/* 2027-10-31 03:00 CEST -> 02:00 CET (01:00Z): open from the first
	 * 02:30 (CEST, 00:30Z) to 03:30 CET (02:30Z), two hours */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-10-30 23:00")), at("2027-10-31 00:30"));
	assert_false(gw_windows_open(&w, 1, at("2027-10-31 00:29")));
	assert_true(gw_windows_open(&w, 1, at("2027-10-31 00:30")));
	assert_true(gw_windows_open(&w, 1, at("2027-10-31 01:15")));
	assert_true(gw_windows_open(&w, 1, at("2027-10-31 02:29")));
	assert_false(gw_windows_open(&w, 1, at("2027-10-31 02:30")));
	/* then CET, UTC+1 */
	assert_int_equal(gw_windows_next_open(&w, 1, at("2027-10-31 02:30")), at("2027-11-01 01:30"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_rejects_bad_specs_naming_the_column),
		cmocka_unit_test(test_parse_days_ranges_wrap),
		cmocka_unit_test(test_no_window_is_always_open),
		cmocka_unit_test(test_open_and_next_open_in_utc),
		cmocka_unit_test(test_window_crossing_midnight_belongs_to_the_day_it_opens),
		cmocka_unit_test(test_time_zone_and_dst_spring_forward),
		cmocka_unit_test(test_time_zone_and_dst_fall_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
