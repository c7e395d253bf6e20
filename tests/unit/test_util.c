#define _GNU_SOURCE
/* Durations, sizes, errors, atomic files, the capturing spawn, options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <jansson.h>

#include <sys/wait.h>

#include "gitward/config.h"
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

static void test_spawn_capture_feeds_stdin_and_captures_output(void **state)
{
	(void)state;
	struct gw_strbuf out, errout;
	struct gw_error err;
	int status = -1;
	char *const cat[] = { "cat", NULL };
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, cat, "signed data\n", 12, 1024, 5000, &err), 0);
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
	char *const hang[] = { "sleep", "30", NULL };
	char *const missing[] = { "gw-no-such-program", NULL };
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, flood, NULL, 0, 100, 5000, &err), 0);
	assert_int_equal(out.len, 100);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, hang, NULL, 0, 100, 200, &err), -ETIMEDOUT);
	assert_true(gw_monotonic_ms() - t0 < 5000);
	assert_string_equal(err.msg, "sleep: killed after 200ms without an answer");
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, missing, NULL, 0, 100, 1000, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot run gw-no-such-program: No such file or directory");
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
	assert_true(gw_monotonic_ms() - t0 < 1000);
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
		cmocka_unit_test(test_spawn_capture_feeds_stdin_and_captures_output),
		cmocka_unit_test(test_spawn_capture_bounds_output_and_time),
		cmocka_unit_test(test_spawn_sets_fds_group_env_limits_and_cwd),
		cmocka_unit_test(test_spawn_reports_the_failing_stage),
		cmocka_unit_test(test_spawn_detached_child_is_not_ours),
		cmocka_unit_test(test_spawn_find_looks_up_a_path),
		cmocka_unit_test(test_config_verify_signatures_needs_keys),
		cmocka_unit_test(test_nofollow_read_refuses_links_and_fifos),
		cmocka_unit_test(test_signal_refuses_everything_pids),
		cmocka_unit_test(test_signal_reaches_a_group_only_when_pid_leads_it),
		cmocka_unit_test(test_cancel_ends_sleeps_and_process_waits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
