/* The node's history (gitward/history.h): newest first, repeats coalesced,
 * the last GW_HISTORY_MAX kept, and a file that is not a history refused
 * whole with the file and the field named. Also the pin file
 * (gitward/pin.h): round trip, and an invalid one refused. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#include <cmocka.h>

#include "gitward/history.h"
#include "gitward/pin.h"

#define C1 "1111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/gw-history-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char path[128];
	const char *names[] = { "history.json", "history.json.corrupt", "control/pin", "control/restart", "control" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (unlink(path) < 0)
			rmdir(path);
	}
	rmdir(dir);
	return 0;
}

static void f_write(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct gw_history_entry entry(const char *commit, const char *result, const char *message)
{
	struct gw_history_entry e = { 0 };
	snprintf(e.commit, sizeof(e.commit), "%s", commit);
	snprintf(e.ref, sizeof(e.ref), "main");
	snprintf(e.result, sizeof(e.result), "%s", result);
	snprintf(e.trigger, sizeof(e.trigger), "poll");
	snprintf(e.message, sizeof(e.message), "%s", message);
	return e;
}

static void test_history_is_newest_first_and_coalesces_repeats(void **state)
{
	(void)state;
	struct gw_history_entry *v, e;
	struct gw_error err = { 0 };
	size_t n;

	assert_int_equal(gw_history_load(&v, &n, dir, &err), 0); /* none yet */
	assert_null(v);
	assert_int_equal(n, 0);
	e = entry(C1, "converged", "1 created");
	assert_int_equal(gw_history_append(dir, &e, &err), 0);
	e = entry(C2, "failed", "bad");
	for (int i = 0; i < 3; i++)
		assert_int_equal(gw_history_append(dir, &e, &err), 0);
	assert_int_equal(gw_history_load(&v, &n, dir, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].commit, C2);
	assert_int_equal(v[0].count, 3);
	assert_string_equal(v[1].commit, C1);
	assert_int_equal(v[1].count, 1);
	assert_int_equal(strlen(v[1].time), 24);
	assert_int_equal(v[1].time[23], 'Z');
	free(v);
}

static void test_history_keeps_the_last_entries(void **state)
{
	(void)state;
	struct gw_history_entry *v, e;
	struct gw_error err = { 0 };
	char msg[32];
	size_t n;

	for (int i = 0; i < GW_HISTORY_MAX + 5; i++) {
		snprintf(msg, sizeof(msg), "pass %d", i);
		e = entry(C1, "converged", msg);
		assert_int_equal(gw_history_append(dir, &e, &err), 0);
	}
	assert_int_equal(gw_history_load(&v, &n, dir, &err), 0);
	assert_int_equal(n, GW_HISTORY_MAX);
	assert_string_equal(v[0].message, "pass 104");
	assert_string_equal(v[n - 1].message, "pass 5");
	free(v);
}

static void test_append_refuses_an_invalid_entry(void **state)
{
	(void)state;
	struct gw_history_entry e = entry("../etc", "converged", "");
	struct gw_error err = { 0 };
	assert_int_equal(gw_history_append(dir, &e, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid entry"));
	e = entry(C1, "fine", "");
	err.code = 0;
	assert_int_equal(gw_history_append(dir, &e, &err), -EINVAL);
	e = entry(C1, "converged", "");
	snprintf(e.trigger, sizeof(e.trigger), "cron");
	assert_int_equal(gw_history_append(dir, &e, &err), -EINVAL);
}

static void expect_refused(const char *text, const char *says)
{
	struct gw_history_entry *v = (void *)1;
	struct gw_error err = { 0 };
	size_t n = 7;
	f_write("history.json", text);
	assert_int_equal(gw_history_load(&v, &n, dir, &err), -EBADMSG);
	assert_null(v);
	assert_int_equal(n, 0);
	assert_non_null(strstr(err.file, "history.json"));
	if (!strstr(err.msg, says))
		fail_msg("\"%s\" does not say \"%s\"", err.msg, says);
}

#define OK_ENTRY                                                                                                       \
	"{\"commit\": \"" C1 "\", \"ref\": \"main\", \"time\": \"2026-12-07T20:28:38.123Z\", \"result\": "             \
	"\"converged\", \"trigger\": \"poll\", \"message\": \"m\", \"count\": 1, \"last\": "                           \
	"\"2026-12-07T20:28:38.123Z\"}"

static void test_a_corrupt_history_is_refused_whole(void **state)
{
	(void)state;
	struct gw_history_entry *v;
	struct gw_error err = { 0 };
	size_t n;

	f_write("history.json", "{\"version\": 1, \"history\": [" OK_ENTRY "]}");
	assert_int_equal(gw_history_load(&v, &n, dir, &err), 0);
	assert_int_equal(n, 1);
	free(v);
	expect_refused("{\"version\": 1, \"history\": [", "corrupt history file");
	expect_refused("[]", "not {\"version\": 1");
	expect_refused("{\"version\": 2, \"history\": []}", "not {\"version\": 1");
	expect_refused("{\"version\": 1, \"history\": [" OK_ENTRY ", {\"commit\": \"zz\"}]}",
		       "entry 2: invalid commit");
	expect_refused(
		"{\"version\": 1, \"history\": [{\"commit\": \"\", \"ref\": \"main\", \"time\": \"yesterday\"}]}",
		"entry 1: invalid time");
	/* a NUL in a string is refused by the parser already; a long one here */
	char big[600];
	snprintf(big, sizeof(big), "{\"version\": 1, \"history\": [{\"commit\": \"\", \"ref\": \"%0300d\"}]}", 0);
	expect_refused(big, "entry 1: invalid ref");
	expect_refused("{\"version\": 1, \"history\": [{\"commit\": \"\", \"ref\": \"a\\u0000b\"}]}", "\\u0000");
}

static void test_append_sets_a_corrupt_history_aside(void **state)
{
	(void)state;
	struct gw_history_entry *v, e = entry(C2, "converged", "x");
	struct gw_error err = { 0 };
	char path[128];
	size_t n;

	f_write("history.json", "not json");
	assert_int_equal(gw_history_append(dir, &e, &err), 0);
	assert_int_equal(gw_history_load(&v, &n, dir, &err), 0);
	assert_int_equal(n, 1);
	free(v);
	snprintf(path, sizeof(path), "%s/history.json.corrupt", dir);
	assert_int_equal(access(path, F_OK), 0);
}

static void test_pin_round_trips_and_an_invalid_one_is_refused(void **state)
{
	(void)state;
	struct gw_pin pin;
	struct gw_error err = { 0 };
	bool was;

	assert_int_equal(gw_pin_read(&pin, dir, &err), 0);
	assert_false(pin.on);
	assert_int_equal(gw_pin_write(dir, "abc", C2, "", &err), -EINVAL);
	assert_int_equal(gw_pin_write(dir, C1, C2, "v2 leaks", &err), 0);
	assert_int_equal(gw_pin_read(&pin, dir, &err), 0);
	assert_true(pin.on);
	assert_string_equal(pin.commit, C1);
	assert_string_equal(pin.tip, C2);
	assert_string_equal(pin.reason, "v2 leaks");
	f_write("control/pin",
		"{\"commit\": \"" C1 "\", \"tip\": \"../x\", \"reason\": \"\", \"since\": "
		"\"2026-12-07T20:28:38Z\"}");
	assert_int_equal(gw_pin_read(&pin, dir, &err), -EBADMSG);
	assert_false(pin.on);
	assert_non_null(strstr(err.msg, "not a pin"));
	assert_int_equal(gw_pin_clear(dir, &was, &err), 0);
	assert_true(was);
	assert_int_equal(gw_pin_clear(dir, &was, &err), 0);
	assert_false(was);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_history_is_newest_first_and_coalesces_repeats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_keeps_the_last_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_refuses_an_invalid_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_corrupt_history_is_refused_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_sets_a_corrupt_history_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_round_trips_and_an_invalid_one_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
