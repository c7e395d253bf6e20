#define _GNU_SOURCE
/* Durations, sizes, errors, atomic files, the capturing spawn, options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <jansson.h>

#include <sys/wait.h>

#include "gitward/config.h"
#include "gitward/manifest.h"
#include "gitward/spawn.h"
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
	/* %XX in either case is decoded; a '%' that starts no escape is kept */
	gw_url_split_password(&url, &pw, "https://u:%4a%4B%zz%4@h/x");
	assert_string_equal(url, "https://u@h/x");
	assert_string_equal(pw, "JK%zz%4");
	free(url);
	free(pw);
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

static void expect_redacted(const char *in, const char *want)
{
	char *got = gw_url_redacted(in);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", in, got, want);
	free(got);
}

static void test_urls_lose_user_info_and_query(void **state)
{
	(void)state;
	/* a token as the user, user:password, a query token: all masked */
	expect_redacted("https://SECRETTOKEN123@h:8443/r.git", "https://***@h:8443/r.git");
	expect_redacted("https://u:pw@h/r.git", "https://***@h/r.git");
	expect_redacted("https://h/r.git?access_token=SECRET456#x", "https://h/r.git?***#x");
	expect_redacted("fetch https://T0KEN@h/r?a=b failed: 'https://h/x?t=SECRET' (404)",
			"fetch https://***@h/r?*** failed: 'https://h/x?***' (404)");
	expect_redacted("ssh://git@h/x and git@h:x.git", "ssh://***@h/x and git@h:x.git");
	/* shorter than the mask: starred in place; '@' in the path is no user info */
	expect_redacted("http://a@h/p?q", "http://*@h/p?*");
	expect_redacted("file:///srv/a@b", "file:///srv/a@b");
	expect_redacted("https://h/x no query; ://odd?x", "https://h/x no query; ://odd?x");
	expect_redacted("", "");
	/* what the cache's config records: neither */
	char *bare = gw_url_without_credentials("https://TOK@h:1/r.git?access_token=T2#f");
	assert_string_equal(bare, "https://h:1/r.git");
	free(bare);
	bare = gw_url_without_credentials("/srv/a@b?c");
	assert_string_equal(bare, "/srv/a@b?c");
	free(bare);
	/* every error message goes through it */
	struct gw_error err;
	gw_error_set(&err, -EACCES, "cannot fetch %s", "https://TOK@h/x?access_token=TOK2");
	assert_string_equal(err.msg, "cannot fetch https://***@h/x?***");
	gw_error_prefix(&err, "from %s", "http://u:p@h/");
	assert_string_equal(err.msg, "from http://***@h/: cannot fetch https://***@h/x?***");
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

static void test_spawn_capture_feeds_stdin_and_captures_output(void **state)
{
	(void)state;
	struct gw_strbuf out, errout;
	struct gw_error err;
	int status = -1;
	char *const cat[] = { "cat", NULL };
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, cat, "signed data\n", 12, 1024, 60000, &err), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_string_equal(out.s, "signed data\n");
	assert_int_equal(errout.len, 0);
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
}

static void test_spawn_capture_bounds_output_and_time(void **state)
{
	(void)state;
	struct gw_strbuf out, errout;
	struct gw_error err = { 0 };
	int status = -1;
	char *const flood[] = { "head", "-c", "1000000", "/dev/zero", NULL };
	char *const hang[] = { "sleep", "300", NULL }; /* 5 minutes: told from the kill by the bounds below */
	char *const missing[] = { "gw-no-such-program", NULL };
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	/* the output cap is counted as the bytes arrive: an endless writer is
	 * stopped at the cap, long before a ten-minute bound, however slow the
	 * machine (the bound is there only so a broken cap cannot hang the test) */
	char *const endless[] = { "cat", "/dev/zero", NULL };
	char *const fits[] = { "head", "-c", "99", "/dev/zero", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, endless, NULL, 0, 100, 600000, &err), -EMSGSIZE);
	assert_string_equal(err.msg, "cat: more than 99 bytes of output: killed");
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, flood, NULL, 0, 100, 600000, &err), -EMSGSIZE);
	gw_strbuf_free(&out);
	gw_strbuf_init(&out);
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, fits, NULL, 0, 100, 600000, &err), 0);
	assert_int_equal(out.len, 99);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, hang, NULL, 0, 100, 200, &err), -ETIMEDOUT);
	assert_true(gw_monotonic_ms() - t0 < 60000);
	assert_string_equal(err.msg, "sleep: killed after 200ms without an answer");
	/* its output closed, the program never exits: killed at the bound all the same */
	char *const mute[] = { "/bin/sh", "-c", "exec >&- 2>&-; exec sleep 300", NULL };
	t0 = gw_monotonic_ms();
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, mute, NULL, 0, 100, 300, &err), -ETIMEDOUT);
	assert_true(gw_monotonic_ms() - t0 < 60000);
	assert_string_equal(err.msg, "/bin/sh: killed after 300ms without exiting");
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, missing, NULL, 0, 100, 60000, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot run gw-no-such-program: no such program in " GW_SPAWN_PATH);
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
}

static void test_config_verify_signatures_needs_keys(void **state)
{
	(void)state;
	struct gw_config cfg;
	struct gw_error err = { 0 };
	char cwd[4096], want[4200];
	gw_config_init(&cfg);
	assert_int_equal(gw_config_set(&cfg, "verify-signatures", "true", &err), 0);
	assert_int_equal(gw_config_finish(&cfg, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "--verify-signatures needs the keys to accept: --allowed-signers FILE (SSH) "
			    "and/or --gpg-keyring PATH (OpenPGP)");
	assert_int_equal(gw_config_set(&cfg, "verify-signatures", "maybe", &err), -EINVAL);
	assert_string_equal(err.msg, "--verify-signatures: expected true or false, got \"maybe\"");
	assert_int_equal(gw_config_set(&cfg, "gpg-keyring", "", &err), -EINVAL);
	assert_string_equal(err.msg, "--gpg-keyring: must not be empty");
	assert_int_equal(gw_config_set(&cfg, "allowed-signers", "keys/allowed", &err), 0);
	assert_int_equal(gw_config_finish(&cfg, &err), 0);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/keys/allowed", cwd);
	assert_string_equal(cfg.allowed_signers, want);
	assert_true(cfg.verify_signatures);
	gw_config_free(&cfg);
}

static void test_nofollow_read_refuses_links_and_fifos(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-util-XXXXXX", path[256], link[256], fifo[256];
	struct gw_error err;
	char *data = NULL;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(link, sizeof(link), "%s/l", dir);
	snprintf(fifo, sizeof(fifo), "%s/p", dir);
	assert_int_equal(gw_file_write_atomic(path, "x", 1, &err), 0);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(gw_file_read_nofollow(&data, NULL, link, 100, &err), -ELOOP);
	assert_string_equal(err.msg, "is a symbolic link: not followed in the state dir");
	assert_int_equal(gw_file_read_nofollow(&data, NULL, fifo, 100, &err), -EINVAL); /* and never blocks */
	assert_null(data);
	/* an atomic write replaces a link, never writes through it */
	assert_int_equal(gw_file_write_atomic(link, "new", 3, &err), 0);
	assert_int_equal(gw_file_read(&data, NULL, path, 100, &err), 0);
	assert_string_equal(data, "x");
	free(data);
	unlink(path);
	unlink(link);
	unlink(fifo);
	rmdir(dir);
}

/* Reads of every size and kind: empty, larger than its first buffer, a
 * /proc file whose size stat() does not tell, a folder. */
static void test_file_read_sizes_and_kinds(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-util-XXXXXX", path[256];
	struct gw_error err;
	char *data = NULL, *big = malloc(100000);
	size_t len = 1;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/empty", dir);
	assert_int_equal(gw_file_write_atomic(path, "", 0, &err), 0);
	assert_int_equal(gw_file_read(&data, &len, path, 100, &err), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(data);
	for (int i = 0; i < 100000; i++)
		big[i] = (char)('a' + i % 26);
	snprintf(path, sizeof(path), "%s/big", dir);
	assert_int_equal(gw_file_write_atomic(path, big, 100000, &err), 0);
	assert_int_equal(gw_file_read(&data, &len, path, 100000, &err), 0);
	assert_int_equal(len, 100000);
	assert_memory_equal(data, big, 100000);
	free(data);
	data = NULL;
	assert_int_equal(gw_file_read(&data, &len, path, 99999, &err), -EFBIG);
	assert_null(data);
	assert_string_equal(err.msg, "file larger than 99999 bytes");
	/* st_size 0, content all the same: read until the end, not the size */
	assert_int_equal(gw_file_read(&data, &len, "/proc/self/status", 1 << 20, &err), 0);
	assert_true(len > 100);
	assert_non_null(strstr(data, "\nPid:\t"));
	free(data);
	data = NULL;
	assert_int_equal(gw_file_read(&data, NULL, dir, 100, &err), -EINVAL);
	assert_string_equal(err.msg, "not a regular file");
	assert_string_equal(err.file, dir);
	assert_int_equal(gw_file_read(&data, NULL, "/nonexistent/x", 4, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot open: No such file or directory");
	assert_null(data);
	free(big);
	assert_int_equal(gw_rm_rf(dir), 0);
}

static int count_entries(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* A write that cannot land leaves the old file and no temporary behind. */
static void test_atomic_write_failures_leave_nothing(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-util-XXXXXX", path[256], want[300], longp[5000];
	struct gw_error err;
	char *data = NULL;
	assert_non_null(mkdtemp(dir));
	/* the target is a folder that holds something: the rename fails */
	snprintf(path, sizeof(path), "%s/d", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(want, sizeof(want), "%s/d/keep", dir);
	assert_int_equal(gw_file_write_atomic(want, "k", 1, &err), 0);
	assert_true(gw_file_write_atomic(path, "new", 3, &err) < 0);
	assert_string_equal(err.file, path);
	assert_memory_equal(err.msg, "cannot write: ", 14);
	assert_int_equal(count_entries(dir), 1); /* d only: no d.tmp.PID */
	assert_int_equal(gw_file_read(&data, NULL, want, 10, &err), 0);
	assert_string_equal(data, "k");
	free(data);
	/* a folder that does not exist: the temporary cannot be made */
	snprintf(path, sizeof(path), "%s/missing/f", dir);
	assert_int_equal(gw_file_write_atomic(path, "x", 1, &err), -ENOENT);
	snprintf(want, sizeof(want), "%s.tmp.%d", path, (int)getpid());
	assert_string_equal(err.file, want);
	assert_string_equal(err.msg, "cannot create: No such file or directory");
	/* a path too long for its temporary's name */
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(gw_file_write_atomic(longp, "x", 1, &err), -ENAMETOOLONG);
	assert_memory_equal(err.msg, "/aaaa", 5); /* the path, cut to the message size */
	assert_int_equal(gw_rm_rf(dir), 0);
}

static void test_mkdir_p_and_rm_rf(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-util-XXXXXX", path[256], file[256], outside[256], link[300];
	struct gw_error err;
	struct stat st;
	char *data = NULL;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/c/", dir);
	assert_int_equal(gw_mkdir_p(path, 0750, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(gw_mkdir_p(path, 0750, &err), 0); /* again: already there */
	/* a file in the way */
	snprintf(file, sizeof(file), "%s/a/file", dir);
	assert_int_equal(gw_file_write_atomic(file, "x", 1, &err), 0);
	snprintf(path, sizeof(path), "%s/a/file/sub", dir);
	assert_int_equal(gw_mkdir_p(path, 0700, &err), -ENOTDIR);
	assert_string_equal(err.file, path);
	assert_string_equal(err.msg, "cannot create directory: Not a directory");
	snprintf(path, sizeof(path), "%s/a/file/sub/deeper", dir);
	assert_int_equal(gw_mkdir_p(path, 0700, &err), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/a/file/sub", dir);
	assert_string_equal(err.file, path);
	assert_int_equal(gw_mkdir_p("", 0700, &err), -ENAMETOOLONG);
	assert_string_equal(err.msg, ": bad directory path");
	/* rm -rf: a link inside is removed, never followed */
	snprintf(outside, sizeof(outside), "%s.outside", dir);
	assert_int_equal(gw_file_write_atomic(outside, "keep", 4, &err), 0);
	snprintf(link, sizeof(link), "%s/a/b/link", dir);
	assert_int_equal(symlink(outside, link), 0);
	assert_int_equal(gw_rm_rf(dir), 0);
	assert_int_equal(lstat(dir, &st), -1);
	assert_int_equal(gw_file_read(&data, NULL, outside, 10, &err), 0);
	assert_string_equal(data, "keep");
	free(data);
	assert_int_equal(gw_rm_rf(dir), 0); /* nothing there: nothing to do */
	assert_int_equal(gw_rm_rf(outside), 0); /* a single file */
	assert_int_equal(lstat(outside, &st), -1);
}

/* One address never takes every connection, and the host's share stays
 * free whatever the others hold. */
static void test_admit_keeps_the_hosts_share_and_bounds_each_address(void **state)
{
	(void)state;
	struct gw_admit a;
	const uint32_t host = 1, other = 2;
	struct gw_admit_peer *held[64];
	gw_admit_init(&a, host, 4, 8, 10);
	int n = 0;
	while (gw_admit_may(&a, other))
		held[n++] = gw_admit_open(&a, other);
	assert_int_equal(n, 4); /* per address */
	for (uint32_t addr = 3; addr < 40; addr++)
		while (gw_admit_may(&a, addr))
			held[n++] = gw_admit_open(&a, addr);
	assert_int_equal(n, 10); /* the others' share, whatever their number */
	int host_n = 0;
	while (gw_admit_may(&a, host))
		host_n++, held[n++] = gw_admit_open(&a, host);
	assert_int_equal(host_n, 8);
	/* a closed connection frees its address's slot */
	gw_admit_close(&a, held[0]);
	assert_false(gw_admit_may(&a, host));
	assert_true(gw_admit_may(&a, 99));
	held[0] = gw_admit_open(&a, 99);
	assert_false(gw_admit_may(&a, other));
	for (int i = 0; i < n; i++)
		gw_admit_close(&a, held[i]);
	assert_int_equal(a.others, 0);
	assert_true(gw_admit_may(&a, other));
	gw_admit_free(&a);
}

/* Headers awaited past the deadline are overdue however the bytes came;
 * headers received stop the clock until the next request is awaited; a
 * closed connection's socket is never listed again. */
static void test_headers_overdue_counts_from_accept_not_from_the_last_byte(void **state)
{
	(void)state;
	struct gw_headers h;
	int fds[4];
	gw_headers_init(&h, 3);
	struct gw_headers_conn *slow = gw_headers_open(&h, 7, 1000);
	struct gw_headers_conn *quick = gw_headers_open(&h, 8, 1000);
	struct gw_headers_conn *late = gw_headers_open(&h, 9, 5000);
	assert_non_null(slow);
	assert_null(gw_headers_open(&h, 10, 5000)); /* full: no slot, no deadline */
	assert_int_equal(gw_headers_overdue(fds, 4, &h, 10999, 10000), 0);
	gw_headers_got(quick); /* its body may take the idle rule's time */
	assert_int_equal(gw_headers_overdue(fds, 4, &h, 11000, 10000), 1);
	assert_int_equal(fds[0], 7);
	assert_int_equal(gw_headers_overdue(fds, 4, &h, 15000, 10000), 2);
	assert_int_equal(fds[1], 9);
	assert_int_equal(gw_headers_overdue(fds, 1, &h, 15000, 10000), 1); /* bounded by max */
	/* keep-alive: the next request's headers have their own deadline */
	gw_headers_wait(quick, 20000);
	gw_headers_close(slow);
	gw_headers_close(late);
	assert_int_equal(gw_headers_overdue(fds, 4, &h, 29999, 10000), 0);
	assert_int_equal(gw_headers_overdue(fds, 4, &h, 30000, 10000), 1);
	assert_int_equal(fds[0], 8);
	/* a closed slot is reused */
	assert_ptr_equal(gw_headers_open(&h, 11, 30000), slow);
	gw_headers_got(NULL), gw_headers_wait(NULL, 0), gw_headers_close(NULL);
	gw_headers_free(&h);
}

/* A flood of lines: the first written, then one per period with the count
 * of those left out since. */
static void test_log_limit_writes_one_line_per_period_with_the_count_left_out(void **state)
{
	(void)state;
	struct gw_log_limit l = { 0 };
	unsigned long long dropped = 99;
	assert_true(gw_log_limit_take(&l, 0, 10000, &dropped)); /* a clock at 0 is a time too */
	assert_int_equal(dropped, 0);
	int written = 0;
	for (int64_t t = 1; t < 10000; t += 3)
		written += gw_log_limit_take(&l, t, 10000, &dropped);
	assert_int_equal(written, 0);
	assert_true(gw_log_limit_take(&l, 10000, 10000, &dropped));
	assert_int_equal(dropped, 3333);
	assert_false(gw_log_limit_take(&l, 19999, 10000, &dropped));
	assert_true(gw_log_limit_take(&l, 500000, 10000, &dropped));
	assert_int_equal(dropped, 1);
}

static void test_log_levels_parse_and_the_default_sink(void **state)
{
	(void)state;
	enum gw_log_level l = GW_LOG_DEBUG;
	assert_int_equal(gw_log_level_parse(&l, "ERROR"), 0);
	assert_int_equal(l, GW_LOG_ERROR);
	assert_int_equal(gw_log_level_parse(&l, "warning"), 0);
	assert_int_equal(l, GW_LOG_WARN);
	assert_int_equal(gw_log_level_parse(&l, "Debug"), 0);
	assert_int_equal(l, GW_LOG_DEBUG);
	assert_int_equal(gw_log_level_parse(&l, "verbose"), -EINVAL);
	assert_int_equal(l, GW_LOG_DEBUG);
	assert_string_equal(gw_log_level_name(GW_LOG_WARN), "warn");
	assert_string_equal(gw_log_level_name((enum gw_log_level)9), "info");
	/* without a handler: "level key: msg" on stderr, one line, escaped */
	int p[2], saved = dup(STDERR_FILENO);
	assert_int_equal(pipe(p), 0);
	dup2(p[1], STDERR_FILENO);
	gw_log_set_handler(NULL, NULL, GW_LOG_INFO);
	gw_log(GW_LOG_DEBUG, "Process/a", "not shown");
	gw_log(GW_LOG_WARN, "Process/a", "two\nlines");
	gw_log(GW_LOG_ERROR, "", "no key");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	char buf[256];
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "warn Process/a: two\\nlines\nerror no key\n");
}

/* Every option's value is checked where it is given, with the option and
 * the value in the message. */
static void test_config_values_are_checked(void **state)
{
	(void)state;
	static const struct {
		const char *name, *value, *msg;
	} bad[] = {
		{ "repo", "", "--repo: must not be empty" },
		{ "state-dir", "", "--state-dir: expected a directory" },
		{ "log-dir", "", "--log-dir: expected a directory" },
		{ "node", "web 01", "--node: expected letters, digits, '-', '_', '.', got \"web 01\"" },
		{ "interval", "50ms", "--interval: expected a duration of at least 100ms like 30s, got \"50ms\"" },
		{ "git-timeout", "2h", "--git-timeout: expected a duration between 100ms and 1h like 30s, got \"2h\"" },
		{ "git-connect-timeout", "soon",
		  "--git-connect-timeout: expected a duration between 100ms and 1h like 30s, got \"soon\"" },
		{ "git-deadline", "0s",
		  "--git-deadline: expected a duration between 100ms and 1h like 30s, got \"0s\"" },
		{ "ssh-key", "", "--ssh-key: expected a file name" },
		{ "git-username", "a\nb", "--git-username: expected a user name" },
		{ "no-prune", "maybe", "--no-prune: expected true or false, got \"maybe\"" },
		{ "move-to-repo", "2", "--move-to-repo: expected true or false, got \"2\"" },
		{ "log-format", "xml", "--log-format: expected text or json, got \"xml\"" },
		{ "log-level", "loud", "--log-level: expected debug, info, warn or error, got \"loud\"" },
		{ "age-identity", "", "--age-identity: must not be empty" },
		{ "listen", "127.0.0.1", "--listen: expected ADDR:PORT, got \"127.0.0.1\"" },
		{ "listen", "127.0.0.1:70000", "--listen: expected ADDR:PORT, got \"127.0.0.1:70000\"" },
		{ "no-such-option", "x", "unknown option \"no-such-option\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gw_config cfg;
		struct gw_error err = { 0 };
		gw_config_init(&cfg);
		assert_int_equal(gw_config_set(&cfg, bad[i].name, bad[i].value, &err), -EINVAL);
		assert_string_equal(err.msg, bad[i].msg);
		gw_config_free(&cfg);
	}
	struct gw_config cfg;
	struct gw_error err = { 0 };
	gw_config_init(&cfg);
	assert_int_equal(gw_config_set(&cfg, "no-prune", "off", &err), 0);
	assert_false(cfg.no_prune);
	assert_int_equal(gw_config_set(&cfg, "no-prune", "yes", &err), 0);
	assert_true(cfg.no_prune);
	assert_true(gw_config_given(&cfg, "no-prune"));
	assert_false(gw_config_given(&cfg, "interval"));
	assert_false(gw_config_given(&cfg, "not-an-option"));
	/* a second --repo is a mirror: tried after the first, each with its own password */
	assert_int_equal(gw_config_set(&cfg, "repo", "https://u:pw1@example.com/a.git", &err), 0);
	assert_int_equal(gw_config_set(&cfg, "repo", "https://example.com/b.git", &err), 0);
	assert_string_equal(cfg.repo, "https://u@example.com/a.git");
	assert_string_equal(cfg.repo_password, "pw1");
	assert_int_equal(cfg.repos.n, 2);
	assert_string_equal(cfg.repos.v[1], "https://example.com/b.git");
	assert_string_equal(cfg.repo_passwords[0], "pw1");
	assert_null(cfg.repo_passwords[1]);
	gw_config_free(&cfg);
}

/* repo: in the config file, a string or a list of mirrors (a flag wins). */
static void test_config_file_repo_is_a_string_or_a_list(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-cfg-XXXXXX", path[256];
	struct gw_config cfg;
	struct gw_diags d;
	struct gw_error err;
	const char *list = "repo:\n  - https://u:pw@a.example/r.git\n  - file:///srv/mirror.git\n";
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/gitward.yaml", dir);
	assert_int_equal(gw_file_write_atomic(path, list, strlen(list), &err), 0);
	gw_config_init(&cfg);
	gw_diags_init(&d);
	assert_int_equal(gw_config_load_file(&cfg, path, &d), 0);
	assert_int_equal(cfg.repos.n, 2);
	assert_string_equal(cfg.repos.v[0], "https://u@a.example/r.git");
	assert_string_equal(cfg.repos.v[1], "file:///srv/mirror.git");
	assert_string_equal(cfg.repo_passwords[0], "pw");
	assert_string_equal(cfg.repo, cfg.repos.v[0]);
	gw_config_free(&cfg);
	/* a string, as before */
	assert_int_equal(gw_file_write_atomic(path, "repo: /srv/one\n", 15, &err), 0);
	gw_config_init(&cfg);
	assert_int_equal(gw_config_load_file(&cfg, path, &d), 0);
	assert_int_equal(cfg.repos.n, 1);
	assert_string_equal(cfg.repo, "/srv/one");
	gw_config_free(&cfg);
	/* --repo given as a flag: the file's list is not added to it */
	assert_int_equal(gw_file_write_atomic(path, list, strlen(list), &err), 0);
	gw_config_init(&cfg);
	assert_int_equal(gw_config_set(&cfg, "repo", "/srv/flag", &err), 0);
	assert_int_equal(gw_config_load_file(&cfg, path, &d), 0);
	assert_int_equal(cfg.repos.n, 1);
	assert_string_equal(cfg.repo, "/srv/flag");
	gw_config_free(&cfg);
	assert_int_equal(d.n, 0);
	gw_diags_free(&d);
	assert_int_equal(gw_rm_rf(dir), 0);
}

/* The config file: the problems of its shape at their line and column. */
static void test_config_file_problems_at_their_place(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		unsigned line, col;
		const char *msg;
	} cases[] = {
		{ "- a\n- b\n", 1, 1, "expected a mapping of options" },
		{ "interval: 1m\n---\ninterval: 2m\n", 3, 1, "a config file holds one document" },
		{ "path: [a, {b: c}]\n", 1, 11, "path: expected a string" },
		{ "label: [\"role\"]\n", 1, 9, "--label: expected K=V, got \"role\"" },
		{ "label: {\"\": x}\n", 1, 9, "--label: expected K=V, got \"=x\"" },
		{ "interval: 1ms\n", 1, 11, "--interval: expected a duration of at least 100ms like 30s, got \"1ms\"" },
	};
	char dir[] = "/tmp/gw-cfg-XXXXXX", path[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/gitward.yaml", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_config cfg;
		struct gw_diags d;
		struct gw_error err;
		gw_config_init(&cfg);
		gw_diags_init(&d);
		assert_int_equal(gw_file_write_atomic(path, cases[i].text, strlen(cases[i].text), &err), 0);
		gw_config_load_file(&cfg, path, &d);
		assert_int_equal(d.n, 1);
		assert_string_equal(d.v[0].msg, cases[i].msg);
		assert_int_equal(d.v[0].line, cases[i].line);
		assert_int_equal(d.v[0].col, cases[i].col);
		gw_diags_free(&d);
		gw_config_free(&cfg);
	}
	struct gw_config cfg;
	struct gw_diags d;
	gw_config_init(&cfg);
	gw_diags_init(&d);
	snprintf(path, sizeof(path), "%s/missing.yaml", dir);
	assert_int_equal(gw_config_load_file(&cfg, path, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].msg, "cannot open: No such file or directory");
	gw_diags_free(&d);
	gw_config_free(&cfg);
	assert_int_equal(gw_rm_rf(dir), 0);
}

/* A child that does not lead its process group, and its own group. */
static pid_t spawn_sleeper(int own_group)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (own_group)
			setpgid(0, 0);
		pause();
		_exit(0);
	}
	if (own_group)
		setpgid(pid, pid); /* no race with the child's own call */
	return pid;
}

static void test_signal_refuses_everything_pids(void **state)
{
	(void)state;
	/* kill(1), kill(0) = our group, kill(-1) = everything, kill(-N) = a group */
	assert_int_equal(gw_proc_signal(1, 0), -EPERM);
	assert_int_equal(gw_proc_signal(0, 0), -EPERM);
	assert_int_equal(gw_proc_signal(-1, 0), -EPERM);
	assert_int_equal(gw_proc_signal(-12345, 0), -EPERM);
	assert_int_equal(gw_proc_signal(getpid(), 0), -EPERM);
	assert_int_equal(gw_proc_signal(1LL << 40, 0), -EPERM);
	assert_false(gw_proc_alive(1, 0) && gw_proc_alive(0, 0));
}

static void test_signal_reaches_a_group_only_when_pid_leads_it(void **state)
{
	(void)state;
	int status;
	/* a child in our own group: only it is signalled (we would die too) */
	pid_t plain = spawn_sleeper(0);
	assert_int_equal(gw_proc_signal(plain, SIGTERM), 0);
	assert_int_equal(waitpid(plain, &status, 0), plain);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	/* a group leader: its group is signalled */
	pid_t leader = spawn_sleeper(1);
	struct gw_proc_ids ids;
	assert_int_equal(gw_proc_ids(&ids, leader), 0);
	assert_int_equal(ids.pgrp, leader);
	assert_int_equal(ids.ppid, getpid());
	assert_int_equal(gw_proc_signal(leader, SIGKILL), 0);
	assert_int_equal(waitpid(leader, &status, 0), leader);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(gw_proc_ids(&ids, leader), -ESRCH);
	assert_int_equal(gw_proc_signal(leader, 0), -ESRCH);
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
	assert_true(gw_monotonic_ms() - t0 < 60000); /* the request, not the hour: a loaded machine's margin */
}

/* Run s with stdout and stderr on a pipe; its output and wait status. */
static int spawn_run(struct gw_strbuf *out, int *status, struct gw_spawn *s, struct gw_error *err)
{
	int p[2];
	pid_t pid;
	char buf[512];
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	s->fds[1] = s->fds[2] = p[1];
	int rc = gw_spawn_start(&pid, s, err);
	close(p[1]);
	gw_strbuf_init(out);
	while (rc == 0 && (n = read(p[0], buf, sizeof(buf))) > 0)
		gw_strbuf_add(out, buf, (size_t)n);
	close(p[0]);
	if (rc == 0)
		assert_int_equal(waitpid(pid, status, 0), pid);
	return rc;
}

static void test_spawn_sets_fds_group_env_limits_and_cwd(void **state)
{
	(void)state;
	struct gw_strbuf out;
	struct gw_error err;
	int status, extra = open("/dev/null", O_RDONLY); /* not close-on-exec: still not inherited */
	char *const argv[] = { "/bin/sh", "-c",
			       "ls /proc/self/fd | tr '\\n' ' '; echo; env; ulimit -n; pwd; "
			       "echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)",
			       NULL };
	struct gw_spawn s = { .argv = argv,
			      .fds = { GW_SPAWN_FD_NULL },
			      .nfds = 3,
			      .group = GW_SPAWN_GROUP_NEW,
			      .nofile = 64,
			      .cwd = "/tmp" };
	assert_true(extra > 2);
	assert_int_equal(spawn_run(&out, &status, &s, &err), 0);
	close(extra);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* 0-2 and the one ls opened: nothing else reached the child */
	assert_non_null(strstr(out.s, "0 1 2 3 \n"));
	assert_non_null(strstr(out.s, "\nPATH=" GW_SPAWN_PATH "\n"));
	assert_null(strstr(out.s, "HOME="));
	assert_non_null(strstr(out.s, "\n64\n/tmp\n"));
	long pid, pgid, sid;
	const char *ps = strstr(out.s, "\n64\n/tmp\n") + 9;
	assert_int_equal(sscanf(ps, "%ld %ld %ld", &pid, &pgid, &sid), 3);
	assert_int_equal(pid, pgid);
	assert_int_not_equal(sid, pid);
	gw_strbuf_free(&out);
}

static void test_spawn_reports_the_failing_stage(void **state)
{
	(void)state;
	struct gw_strbuf out;
	struct gw_error err;
	int status;
	char *const argv[] = { "/bin/true", NULL };
	char *const missing[] = { "/no/such/program", NULL };
	struct gw_spawn s = { .argv = argv, .nfds = 3, .cwd = "/no/such/dir" };

	assert_int_equal(spawn_run(&out, &status, &s, &err), -ENOENT);
	assert_string_equal(err.msg, "workingDir /no/such/dir: No such file or directory");
	gw_strbuf_free(&out);
	s.cwd = NULL;
	s.argv = missing;
	assert_int_equal(spawn_run(&out, &status, &s, &err), -ENOENT);
	assert_string_equal(err.msg, "exec /no/such/program: No such file or directory");
	gw_strbuf_free(&out);
	s.argv = argv;
	s.nofile = 1LL << 40; /* beyond fs.nr_open: refused, to root too */
	assert_int_equal(spawn_run(&out, &status, &s, &err), -EPERM);
	assert_string_equal(err.msg, "limits : Operation not permitted");
	gw_strbuf_free(&out);
	/* the child is reaped by the builder: nothing is left to wait for */
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_spawn_detached_child_is_not_ours(void **state)
{
	(void)state;
	struct gw_strbuf out;
	struct gw_error err;
	int status;
	char *const argv[] = { "/bin/sh", "-c", "cut -d' ' -f4,6 /proc/$$/stat; echo $$", NULL };
	struct gw_spawn s = { .argv = argv, .fds = { GW_SPAWN_FD_NULL }, .nfds = 3, .group = GW_SPAWN_DETACH };
	int p[2];
	pid_t pid = -1;
	char buf[256] = "";
	size_t have = 0;
	ssize_t n;

	(void)out;
	(void)status;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	s.fds[1] = s.fds[2] = p[1];
	assert_int_equal(gw_spawn_start(&pid, &s, &err), 0);
	close(p[1]);
	assert_int_equal(pid, 0);
	while ((n = read(p[0], buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	close(p[0]);
	long ppid, sid, self;
	assert_int_equal(sscanf(buf, "%ld %ld %ld", &ppid, &sid, &self), 3);
	assert_int_not_equal(ppid, getpid());
	assert_int_not_equal(sid, getsid(0));
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1); /* the intermediate was reaped */
}

static void test_spawn_find_looks_up_a_path(void **state)
{
	(void)state;
	char out[4096];
	assert_int_equal(gw_spawn_find(out, sizeof(out), "sh", "/no/such:/bin"), 0);
	assert_string_equal(out, "/bin/sh");
	assert_int_equal(gw_spawn_find(out, sizeof(out), "gw-no-such-program", NULL), -ENOENT);
	assert_int_equal(gw_spawn_find(out, sizeof(out), "ssh", "/etc"), -ENOENT); /* a directory */
}

/* Credentials as asked (the tests run as root), and each credential stage
 * that fails named. */
static void test_spawn_sets_credentials_and_names_their_failures(void **state)
{
	(void)state;
	struct gw_strbuf out;
	struct gw_error err;
	int status;
	char *const argv[] = { "/bin/sh", "-c", "id -u; id -g; id -G; echo $$ $(cut -d' ' -f6 /proc/$$/stat)", NULL };
	gid_t groups[] = { 65534 };
	struct gw_spawn s = { .argv = argv,
			      .fds = { GW_SPAWN_FD_NULL },
			      .nfds = 3,
			      .group = GW_SPAWN_SESSION,
			      .nproc = 4096,
			      .as = 1LL << 34,
			      .set_user = true,
			      .uid = 65534,
			      .gid = 65534,
			      .groups = groups,
			      .ngroups = 1 };
	if (geteuid() != 0) {
		const char *ci = getenv("CI");
		if (ci && *ci)
			fail_msg("setting credentials needs root");
		skip();
	}
	assert_int_equal(spawn_run(&out, &status, &s, &err), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	long pid, sid;
	assert_int_equal(strncmp(out.s, "65534\n65534\n65534\n", 18), 0);
	assert_int_equal(sscanf(out.s + 18, "%ld %ld", &pid, &sid), 2);
	assert_int_equal(pid, sid); /* it leads its own session */
	gw_strbuf_free(&out);

	s.gid = (gid_t)-1;
	assert_int_equal(spawn_run(&out, &status, &s, &err), -EINVAL);
	assert_string_equal(err.msg, "setgid : Invalid argument");
	gw_strbuf_free(&out);
	s.gid = 65534;
	s.uid = (uid_t)-1;
	assert_int_equal(spawn_run(&out, &status, &s, &err), -EINVAL);
	assert_string_equal(err.msg, "setuid : Invalid argument");
	gw_strbuf_free(&out);
	s.uid = 65534;
	s.ngroups = 1u << 20; /* past NGROUPS_MAX: refused before the list is read */
	assert_int_equal(spawn_run(&out, &status, &s, &err), -EINVAL);
	assert_string_equal(err.msg, "setgroups : Invalid argument");
	gw_strbuf_free(&out);
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
}

/* Descriptors: one closed, one kept only when open, one that is not a
 * descriptor at all (refused, naming the stage). */
static void test_spawn_descriptor_edge_cases(void **state)
{
	(void)state;
	struct gw_error err;
	int status, p[2], q[2];
	char buf[256] = "";
	size_t have = 0;
	ssize_t n;
	pid_t pid;
	char *const argv[] = { "/bin/sh", "-c", "ls /proc/self/fd | tr '\\n' ' '", NULL };
	/* everything of ours above 20, and 7 free (moved away meanwhile) */
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	p[0] = fcntl(q[0], F_DUPFD_CLOEXEC, 20);
	p[1] = fcntl(q[1], F_DUPFD_CLOEXEC, 20);
	close(q[0]);
	close(q[1]);
	int open_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int high = fcntl(open_fd, F_DUPFD_CLOEXEC, 20);
	close(open_fd);
	int saved7 = fcntl(7, F_DUPFD_CLOEXEC, 30);
	close(7);
	assert_true(p[0] >= 20 && p[1] >= 20 && high >= 20);
	struct gw_spawn s = { .argv = argv,
			      .fds = { GW_SPAWN_FD_CLOSED, p[1], p[1], high, GW_SPAWN_FD_CLOSED, GW_SPAWN_FD_CLOSED,
				       GW_SPAWN_FD_CLOSED, GW_SPAWN_FD_KEEP },
			      .nfds = 8,
			      .group = GW_SPAWN_GROUP_SAME };
	int rc = gw_spawn_start(&pid, &s, &err);
	if (saved7 >= 0) {
		dup2(saved7, 7);
		close(saved7);
	}
	assert_int_equal(rc, 0);
	close(p[1]);
	while ((n = read(p[0], buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* 0 closed; 1, 2, 3 there (and the one ls opened, numbered 0) */
	assert_string_equal(buf, "0 1 2 3 ");
	s.fds[3] = 1000; /* not open in the parent */
	struct gw_strbuf out;
	assert_int_equal(spawn_run(&out, &status, &s, &err), -EBADF);
	assert_string_equal(err.msg, "fds : Bad file descriptor");
	gw_strbuf_free(&out);
	close(high);
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
}

/* A program named without a slash is looked up in the fixed PATH only: an
 * impostor earlier in the caller's PATH never runs, and the child sees the
 * fixed PATH, not the caller's. */
static void test_spawn_capture_ignores_the_callers_path(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-path-XXXXXX", fake[200], marker[200], script[400];
	struct gw_strbuf out, errout;
	struct gw_error err;
	int status = -1;
	assert_non_null(mkdtemp(dir));
	snprintf(fake, sizeof(fake), "%s/env", dir);
	snprintf(marker, sizeof(marker), "%s/fake-ran", dir);
	snprintf(script, sizeof(script), "#!/bin/sh\ntouch %s\necho PATH=fake\n", marker);
	FILE *fp = fopen(fake, "w");
	assert_non_null(fp);
	fputs(script, fp);
	fclose(fp);
	assert_int_equal(chmod(fake, 0755), 0);
	char *saved = strdup(getenv("PATH"));
	char front[4096];
	snprintf(front, sizeof(front), "%s:%s", dir, saved);
	setenv("PATH", front, 1);
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	char *const env[] = { "env", NULL };
	int rc = gw_spawn_capture(&status, &out, &errout, env, NULL, 0, 4096, 60000, &err);
	setenv("PATH", saved, 1);
	free(saved);
	assert_int_equal(rc, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(access(marker, F_OK), -1);
	assert_string_equal(out.s, "PATH=" GW_SPAWN_PATH "\nLC_ALL=C\n");
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
	assert_int_equal(gw_rm_rf(dir), 0);
}

/* Is pid gone, or a zombie (killed, not yet reaped by its new parent)? */
static bool gone_or_zombie(long pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *paren = strrchr(buf, ')');
	return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

static void test_spawn_capture_ends_at_exit_despite_an_escaped_holder(void **state)
{
	(void)state;
	struct gw_strbuf out, errout;
	struct gw_error err = { 0 };
	int status = -1;
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	/* answers, leaves a child in a session of its own holding stdout for an
	 * hour, exits: the answer stands (before, the call waited for EOF and
	 * was killed at its bound, "without an answer") */
	char *const escapes[] = { "/bin/sh", "-c",
				  "echo '{\"ok\": true}'; setsid sleep 3600 2>/dev/null & echo $! >&2; exit 0", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, escapes, NULL, 0, 100, 60000, &err), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_string_equal(out.s, "{\"ok\": true}\n");
	long escapee = strtol(errout.s ? errout.s : "0", NULL, 10);
	assert_true(escapee > 1);
	/* and the escapee, found by the pipe it holds, is killed */
	int64_t deadline = gw_monotonic_ms() + 60000;
	while (!gone_or_zombie(escapee) && gw_monotonic_ms() < deadline)
		usleep(20000);
	if (!gone_or_zombie(escapee)) {
		kill((pid_t)escapee, SIGKILL);
		fail_msg("the escaped child %ld outlived the call", escapee);
	}
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);

	/* a stop request ends a call whose child would run for 5 minutes */
	struct gw_cancel stop = { 0 };
	gw_cancel_request(&stop);
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	char *const hang[] = { "sleep", "300", NULL };
	assert_int_equal(gw_spawn_capture_cancel(&status, &out, &errout, hang, NULL, 0, 100, 600000, &stop, &err),
			 -ECANCELED);
	assert_string_equal(err.msg, "sleep: stopped: the agent is stopping");
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1); /* reaped */
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
}

static void test_spawn_capture_edge_cases(void **state)
{
	(void)state;
	struct gw_strbuf out, errout;
	struct gw_error err;
	int status = -1;
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	/* found on PATH by name */
	char *const echo[] = { "sh", "-c", "echo found", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, echo, NULL, 0, 100, 60000, &err), 0);
	assert_string_equal(out.s, "found\n");
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* a name nowhere on PATH, and a path that does not exist */
	char *const nowhere[] = { "gw-no-such-program", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, nowhere, NULL, 0, 100, 60000, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot run gw-no-such-program: no such program in " GW_SPAWN_PATH);
	char *const nopath[] = { "/no/such/program", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, nopath, NULL, 0, 100, 60000, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot run /no/such/program: No such file or directory");
	/* a child that reads nothing of a big input: no SIGPIPE, its status */
	size_t big = 4u << 20;
	char *in = gw_xmalloc(big);
	memset(in, 'x', big);
	char *const quits[] = { "/bin/sh", "-c", "exit 5", NULL };
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, quits, in, big, 100, 60000, &err), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 5);
	free(in);
	/* output closed, but the child lingers: killed at the deadline */
	char *const lingers[] = { "/bin/sh", "-c", "exec >&- 2>&-; exec sleep 300", NULL };
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, lingers, NULL, 0, 100, 300, &err), -ETIMEDOUT);
	assert_string_equal(err.msg, "/bin/sh: killed after 300ms without exiting");
	assert_true(gw_monotonic_ms() - t0 < 60000); /* the kill, not the 5-minute sleep */
	assert_int_equal(waitpid(-1, &status, WNOHANG), -1);
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
	/* lookups: empty PATH parts skipped, a path that does not fit refused */
	char found[4096], tiny[8];
	assert_int_equal(gw_spawn_find(found, sizeof(found), "sh", "::/bin:"), 0);
	assert_string_equal(found, "/bin/sh");
	assert_int_equal(gw_spawn_find(tiny, sizeof(tiny), "sh", "/usr/bin"), -ENOENT);
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
		cmocka_unit_test(test_urls_lose_user_info_and_query),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_escape_keeps_one_line_and_valid_utf8),
		cmocka_unit_test(test_json_string_is_never_dropped),
		cmocka_unit_test(test_spawn_capture_feeds_stdin_and_captures_output),
		cmocka_unit_test(test_spawn_capture_bounds_output_and_time),
		cmocka_unit_test(test_spawn_sets_fds_group_env_limits_and_cwd),
		cmocka_unit_test(test_spawn_reports_the_failing_stage),
		cmocka_unit_test(test_spawn_detached_child_is_not_ours),
		cmocka_unit_test(test_spawn_find_looks_up_a_path),
		cmocka_unit_test(test_spawn_sets_credentials_and_names_their_failures),
		cmocka_unit_test(test_spawn_descriptor_edge_cases),
		cmocka_unit_test(test_spawn_capture_edge_cases),
		cmocka_unit_test(test_spawn_capture_ignores_the_callers_path),
		cmocka_unit_test(test_spawn_capture_ends_at_exit_despite_an_escaped_holder),
		cmocka_unit_test(test_config_verify_signatures_needs_keys),
		cmocka_unit_test(test_nofollow_read_refuses_links_and_fifos),
		cmocka_unit_test(test_file_read_sizes_and_kinds),
		cmocka_unit_test(test_atomic_write_failures_leave_nothing),
		cmocka_unit_test(test_mkdir_p_and_rm_rf),
		cmocka_unit_test(test_admit_keeps_the_hosts_share_and_bounds_each_address),
		cmocka_unit_test(test_headers_overdue_counts_from_accept_not_from_the_last_byte),
		cmocka_unit_test(test_log_limit_writes_one_line_per_period_with_the_count_left_out),
		cmocka_unit_test(test_log_levels_parse_and_the_default_sink),
		cmocka_unit_test(test_config_values_are_checked),
		cmocka_unit_test(test_config_file_repo_is_a_string_or_a_list),
		cmocka_unit_test(test_config_file_problems_at_their_place),
		cmocka_unit_test(test_signal_refuses_everything_pids),
		cmocka_unit_test(test_signal_reaches_a_group_only_when_pid_leads_it),
		cmocka_unit_test(test_cancel_ends_sleeps_and_process_waits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
