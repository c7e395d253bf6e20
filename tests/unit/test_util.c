#define _GNU_SOURCE
/* Durations, sizes, errors, atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include <cmocka.h>

#include "gitward/util.h"

static void test_duration_parse(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(gw_duration_parse(&ms, "500ms"), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(gw_duration_parse(&ms, "10s"), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(gw_duration_parse(&ms, "1m30s"), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(gw_duration_parse(&ms, "2h"), 0);
	assert_int_equal(ms, 7200000);
	assert_int_equal(gw_duration_parse(&ms, "1h1m1s1ms"), 0);
	assert_int_equal(ms, 3661001);
	assert_int_equal(gw_duration_parse(&ms, "0"), 0);
	assert_int_equal(ms, 0);
	const char *bad[] = { "", "10", "s", "1x", "1s1m", "1s1s", "-1s", "1.5s", "99999999999999999999h" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		assert_true(gw_duration_parse(&ms, bad[i]) < 0);
		assert_int_equal(ms, 42); /* out-param untouched on failure */
	}
}

static void test_duration_format(void **state)
{
	(void)state;
	char b[32];
	gw_duration_format(b, sizeof(b), 90000);
	assert_string_equal(b, "1m30s");
	gw_duration_format(b, sizeof(b), 7200000);
	assert_string_equal(b, "2h");
	gw_duration_format(b, sizeof(b), 1500);
	assert_string_equal(b, "1500ms");
	gw_duration_format(b, sizeof(b), 60000);
	assert_string_equal(b, "1m");
}

static void test_size_parse_and_format(void **state)
{
	(void)state;
	int64_t n;
	char b[32];
	assert_int_equal(gw_size_parse(&n, "512Mi"), 0);
	assert_int_equal(n, 512LL << 20);
	assert_int_equal(gw_size_parse(&n, "2Gi"), 0);
	assert_int_equal(n, 2LL << 30);
	assert_int_equal(gw_size_parse(&n, "1000000"), 0);
	assert_int_equal(n, 1000000);
	assert_int_equal(gw_size_parse(&n, "10k"), 0);
	assert_int_equal(n, 10000);
	assert_true(gw_size_parse(&n, "Mi") < 0);
	assert_true(gw_size_parse(&n, "5XB") < 0);
	assert_true(gw_size_parse(&n, "-5") < 0);
	assert_true(gw_size_parse(&n, "99999999999Ti") < 0);
	gw_size_format(b, sizeof(b), 256LL << 20);
	assert_string_equal(b, "256Mi");
	gw_size_format(b, sizeof(b), 1000);
	assert_string_equal(b, "1000");
}

static void test_error_filled_and_prefixed(void **state)
{
	(void)state;
	struct gw_error err;
	char buf[512];
	assert_int_equal(gw_error_set_at(&err, -EINVAL, "a.yaml", 3, 7, "bad %s", "thing"), -EINVAL);
	assert_int_equal(gw_error_prefix(&err, "Process/%s", "web"), -EINVAL);
	assert_string_equal(gw_error_format(buf, sizeof(buf), &err), "a.yaml:3:7: Process/web: bad thing");
}

static void test_atomic_write_and_bounded_read(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-util-XXXXXX", path[256];
	struct gw_error err;
	char *data;
	size_t len;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(gw_file_write_atomic(path, "hello", 5, &err), 0);
	assert_int_equal(gw_file_read(&data, &len, path, 100, &err), 0);
	assert_int_equal(len, 5);
	assert_string_equal(data, "hello");
	free(data);
	data = NULL;
	assert_int_equal(gw_file_read(&data, &len, path, 4, &err), -EFBIG);
	assert_null(data);
	assert_int_equal(gw_file_read(&data, &len, "/nonexistent/x", 4, &err), -ENOENT);
	unlink(path);
	rmdir(dir);
}

static void test_cancel_ends_sleeps_and_process_waits(void **state)
{
	(void)state;
	struct gw_cancel c = { 0 };
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_cancel_sleep(&c, 60), 0);
	assert_int_equal(gw_cancel_sleep(NULL, 10), 0);
	assert_true(gw_monotonic_ms() - t0 >= 70);
	assert_false(gw_cancel_requested(&c));
	assert_false(gw_cancel_requested(NULL));
	/* this test's own process never goes: only the request ends the wait */
	long long start;
	char st;
	assert_int_equal(gw_proc_stat(&start, &st, getpid()), 0);
	assert_int_equal(gw_proc_wait_gone_cancel(getpid(), start, 50, &c), -ETIMEDOUT);
	gw_cancel_request(&c);
	assert_true(gw_cancel_requested(&c));
	t0 = gw_monotonic_ms();
	assert_int_equal(gw_cancel_sleep(&c, 3600000), -ECANCELED);
	assert_int_equal(gw_proc_wait_gone_cancel(getpid(), start, 3600000, &c), -ECANCELED);
	assert_true(gw_monotonic_ms() - t0 < 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parse),
		cmocka_unit_test(test_duration_format),
		cmocka_unit_test(test_size_parse_and_format),
		cmocka_unit_test(test_error_filled_and_prefixed),
		cmocka_unit_test(test_atomic_write_and_bounded_read),
		cmocka_unit_test(test_cancel_ends_sleeps_and_process_waits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
