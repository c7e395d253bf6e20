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

#include <jansson.h>

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

static void test_url_password_kept_apart(void **state)
{
	(void)state;
	char *url, *pw;
	gw_url_split_password(&url, &pw, "https://alice:S3cr%40t@git.example.com:8443/ops/x.git");
	assert_string_equal(url, "https://alice@git.example.com:8443/ops/x.git");
	assert_string_equal(pw, "S3cr@t");
	free(url);
	free(pw);
	/* the last '@' of the authority ends the user info; '@' in the path is not one */
	gw_url_split_password(&url, &pw, "https://u:p@ss@h/a@b");
	assert_string_equal(url, "https://u@h/a@b");
	assert_string_equal(pw, "p@ss");
	free(url);
	free(pw);
	static const char *const unchanged[] = { "https://alice@h/x.git", "ssh://git@h:22/x",
						 "git@h:ops/x.git",	  "/srv/repo",
						 "file:///srv/a@b",	  "https://h/x?u=a:b@c" };
	for (size_t i = 0; i < sizeof(unchanged) / sizeof(unchanged[0]); i++) {
		gw_url_split_password(&url, &pw, unchanged[i]);
		assert_string_equal(url, unchanged[i]);
		assert_null(pw);
		free(url);
	}
}

static void test_redact(void **state)
{
	(void)state;
	char s[] = "auth for S3cr3t failed: S3cr3tS3cr3t";
	gw_str_redact(s, "S3cr3t");
	assert_string_equal(s, "auth for *** failed: ******");
	char t[] = "a*b";
	gw_str_redact(t, "*"); /* shorter than the mask, and part of it: ends */
	assert_string_equal(t, "a*b");
	char u[] = "xyx";
	gw_str_redact(u, "y");
	assert_string_equal(u, "x*x");
	gw_str_redact(u, NULL);
	gw_str_redact(u, "");
	assert_string_equal(u, "x*x");
}

static void test_escape_keeps_one_line_and_valid_utf8(void **state)
{
	(void)state;
	char buf[64];
	struct gw_strbuf sb;

	/* control characters cannot start a line or drive a terminal */
	assert_string_equal(gw_escape(buf, sizeof(buf), "a\ninfo pass done\r\t\x1b[2J\x7f"),
			    "a\\ninfo pass done\\r\\t\\x1b[2J\\x7f");
	/* C1 controls (U+0085 next line) and bytes that are not UTF-8 */
	assert_string_equal(gw_escape(buf, sizeof(buf), "x\xc2\x85y\xff\xc0\xafz"), "x\\u0085y\\xff\\xc0\\xafz");
	/* valid UTF-8 and backslashes pass unchanged: escaping twice changes nothing */
	assert_string_equal(gw_escape(buf, sizeof(buf), "caf\xc3\xa9 \xe2\x82\xac \\n"),
			    "caf\xc3\xa9 \xe2\x82\xac \\n");
	assert_string_equal(gw_escape(buf, sizeof(buf), "a\\nb"), "a\\nb");
	assert_string_equal(gw_escape(buf, sizeof(buf), NULL), "");
	/* cut to fit, never inside an escape or a character */
	assert_string_equal(gw_escape(buf, 5, "abc\ndef"), "abc");
	assert_string_equal(gw_escape(buf, 5, "ab\xc3\xa9\xc3\xa9"), "ab\xc3\xa9");
	assert_string_equal(gw_escape(buf, 1, "abc"), "");

	gw_strbuf_init(&sb);
	gw_strbuf_puts(&sb, "file ");
	gw_strbuf_add_escaped(&sb, "b\xff.yaml\n");
	assert_string_equal(sb.s, "file b\\xff.yaml\\n");
	gw_strbuf_free(&sb);
}

static void test_json_string_is_never_dropped(void **state)
{
	(void)state;
	json_t *o = json_object();
	char *s;

	/* jansson refuses invalid UTF-8: the key would vanish */
	json_object_set_new(o, "file", gw_json_string("b\xff.yaml"));
	json_object_set_new(o, "nl", gw_json_string("a\nb"));
	json_object_set_new(o, "cut", gw_json_string("ab\xc3"));
	json_object_set_new(o, "none", gw_json_string(NULL));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"cut\":\"ab\\\\xc3\",\"file\":\"b\\\\xff.yaml\",\"nl\":\"a\\nb\",\"none\":null}");
	free(s);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parse),
		cmocka_unit_test(test_duration_format),
		cmocka_unit_test(test_size_parse_and_format),
		cmocka_unit_test(test_error_filled_and_prefixed),
		cmocka_unit_test(test_atomic_write_and_bounded_read),
		cmocka_unit_test(test_url_password_kept_apart),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_escape_keeps_one_line_and_valid_utf8),
		cmocka_unit_test(test_json_string_is_never_dropped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
