/* The state file round-trips, a torn or foreign file is refused, and the
 * state dir lock names its holder. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "gitward/state.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/gw-state-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "%s/state.json", dir);
	unlink(cmd);
	snprintf(cmd, sizeof(cmd), "%s/lock", dir);
	unlink(cmd);
	rmdir(dir);
	return 0;
}

static void f_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_round_trip(void **state)
{
	(void)state;
	char path[128];
	struct gw_state_file st, back;
	struct gw_error err;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	gw_state_file_init(&st);
	st.node = gw_xstrdup("n1");
	st.commit = gw_xstrdup("0123456789012345678901234567890123456789");
	st.last_sync = 1795400000;
	st.res = gw_xcalloc(1, sizeof(*st.res));
	st.n = 1;
	st.res[0].kind = GW_KIND_PROCESS;
	st.res[0].name = gw_xstrdup("web");
	memset(st.res[0].spec_hash, 'a', 64);
	st.res[0].canonical = gw_xstrdup("{\"kind\":\"Process\",\"spec\":{}}");
	st.res[0].pid = 42;
	st.res[0].start_time = 777;
	st.res[0].restarts = 3;
	st.res[0].backoff_until_ms = 1234;
	st.res[0].state = GW_STATE_FAILED;
	snprintf(st.res[0].detail, sizeof(st.res[0].detail), "exited with status 1");
	assert_int_equal(gw_state_save(&st, path, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_string_equal(back.node, "n1");
	assert_int_equal(back.n, 1);
	assert_string_equal(back.res[0].name, "web");
	assert_int_equal(back.res[0].pid, 42);
	assert_int_equal(back.res[0].start_time, 777);
	assert_int_equal(back.res[0].restarts, 3);
	assert_int_equal(back.res[0].backoff_until_ms, 1234);
	assert_int_equal(back.res[0].state, GW_STATE_FAILED);
	assert_string_equal(back.res[0].detail, "exited with status 1");
	assert_string_equal(back.res[0].canonical, st.res[0].canonical);
	char *js = gw_state_render_status(&back);
	assert_non_null(strstr(js, "\"last_sync\":\"2026-11-23T02:13:20Z\""));
	assert_non_null(strstr(js, "\"pid\":42"));
	free(js);
	gw_state_file_free(&st);
	gw_state_file_free(&back);
}

static void test_missing_is_empty_and_torn_is_refused(void **state)
{
	(void)state;
	char path[128];
	struct gw_state_file st;
	struct gw_error err = { 0 };
	snprintf(path, sizeof(path), "%s/none.json", dir);
	assert_int_equal(gw_state_load(&st, path, &err), 0);
	assert_int_equal(st.n, 0);
	assert_null(st.commit);
	snprintf(path, sizeof(path), "%s/state.json", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"version\": 1, \"resources\": [{\"kind\":", f);
	fclose(f);
	memset(&st, 0x5a, sizeof(st));
	assert_int_equal(gw_state_load(&st, path, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "state file is corrupt"));
	assert_int_equal(st.n, 0x5a5a5a5a5a5a5a5aULL); /* untouched on failure */
	f = fopen(path, "w");
	fputs("{\"version\": 99, \"resources\": []}", f);
	fclose(f);
	assert_int_equal(gw_state_load(&st, path, &err), -EBADMSG);
}

/* A resource the last pass left short of desired is recorded so; a record
 * of an earlier version (no "converged") reads as converged. */
static void test_convergence_round_trips_and_defaults_to_converged(void **state)
{
	(void)state;
	char path[128];
	struct gw_state_file st, back;
	struct gw_error err;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	gw_state_file_init(&st);
	st.res = gw_xcalloc(2, sizeof(*st.res));
	st.n = 2;
	for (size_t i = 0; i < 2; i++) {
		st.res[i].kind = GW_KIND_PROCESS;
		st.res[i].name = gw_xstrdup(i ? "old" : "new");
		memset(st.res[i].spec_hash, 'a', 64);
		st.res[i].state = GW_STATE_RUNNING;
	}
	st.res[1].not_converged = true;
	assert_int_equal(gw_state_save(&st, path, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_int_equal(back.n, 2);
	assert_false(back.res[0].not_converged);
	assert_true(back.res[1].not_converged);
	assert_true(gw_observed_converged(&back.res[0]));
	assert_false(gw_observed_converged(&back.res[1]));
	gw_state_file_free(&back);
	gw_state_file_free(&st);

	f_write(path,
		"{\"version\": 1, \"resources\": [{\"kind\": \"Process\", \"name\": \"a\", \"state\": "
		"\"running\", \"spec_hash\": \""
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}");
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_int_equal(back.n, 1);
	assert_false(back.res[0].not_converged);
	assert_true(gw_observed_converged(&back.res[0]));
	gw_state_file_free(&back);
}

static void test_lock_is_exclusive_and_names_the_holder(void **state)
{
	(void)state;
	int fd1 = -1, fd2 = -1;
	struct gw_error err;
	char want[64];
	assert_int_equal(gw_state_lock(&fd1, dir, &err), 0);
	assert_int_equal(gw_state_lock(&fd2, dir, &err), -EBUSY);
	assert_int_equal(fd2, -1);
	snprintf(want, sizeof(want), "(pid %d)", (int)getpid());
	assert_non_null(strstr(err.msg, want));
	close(fd1);
	assert_int_equal(gw_state_lock(&fd2, dir, &err), 0);
	close(fd2);
}

static void test_status_escapes_what_was_read_back(void **state)
{
	(void)state;
	/* a last error quoting a Git file name with a newline and a byte that is not UTF-8 */
	static const char doc[] =
		"{\"version\": 1, \"node\": \"n1\", \"last_error\": \"bad: a\\ninfo pass done \\u001b[2J\","
		" \"resources\": [{\"kind\": \"Process\", \"name\": \"p\", \"spec_hash\":"
		" \"3b3c7c05244498ac76029ed4d984d72ea4940f3ae492d93c2e5d9f2af086ddda\", \"detail\": \"x\\ny\"}]}";
	struct gw_state_file st;
	struct gw_error err;
	char *text = NULL, *json;
	size_t len = 0;

	assert_int_equal(gw_state_parse(&st, doc, sizeof(doc) - 1, "state.json", &err), 0);
	assert_string_equal(st.last_error, "bad: a\ninfo pass done \x1b[2J");
	FILE *f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &st);
	fclose(f);
	assert_non_null(strstr(text, "last error: bad: a\\ninfo pass done \\x1b[2J\n"));
	assert_non_null(strstr(text, "x\\ny\n"));
	assert_null(strstr(text, "\ninfo pass done"));
	free(text);

	/* invalid UTF-8 in a value keeps its key in the status document */
	free(st.last_error);
	st.last_error = strdup("first: b\xff.yaml");
	json = gw_state_render_status(&st);
	assert_non_null(strstr(json, "\"last_error\":\"first: b\\\\xff.yaml\""));
	free(json);
	gw_state_file_free(&st);

	/* the buffer reader fills err iff it fails */
	memset(&err, 0, sizeof(err));
	assert_int_equal(gw_state_parse(&st, "{\"version\": 1}", 14, "s.json", &err), -EBADMSG);
	assert_string_equal(err.file, "s.json");
	assert_non_null(strstr(err.msg, "state file is corrupt"));
}

static void test_record_reader_on_bytes(void **state)
{
	(void)state;
	static const char rec[] = "{\"pid\": 7, \"spec_hash\": "
				  "\"3b3c7c05244498ac76029ed4d984d72ea4940f3ae492d93c2e5d9f2af086ddda\","
				  " \"depends_on\": [\"db\", 3], \"restart\": \"never\"}";
	struct gw_observed o;

	assert_int_equal(gw_record_parse_buf(&o, GW_KIND_PROCESS, "web", rec, sizeof(rec) - 1), 0);
	assert_string_equal(o.name, "web");
	assert_int_equal(o.pid, 7);
	assert_int_equal(o.depends_on.n, 1);
	assert_string_equal(o.depends_on.v[0], "db");
	gw_observed_clear(&o);
	assert_int_equal(gw_record_parse_buf(&o, GW_KIND_PROCESS, "web", "[]", 2), -EBADMSG);
	assert_int_equal(gw_record_parse_buf(&o, GW_KIND_PROCESS, "web", rec, 20), -EBADMSG);
	assert_int_equal(gw_record_parse_buf(&o, GW_KIND_VM, "v", "{\"spec_hash\": \"short\"}", 22), -EBADMSG);
}

static void test_invalid_names_on_disk_are_ignored(void **state)
{
	(void)state;
	char path[128];
	struct gw_state_file st;
	struct gw_error err = { 0 };
	const char *hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	snprintf(path, sizeof(path), "%s/names.json", dir);
	FILE *f = fopen(path, "w");
	fprintf(f,
		"{\"version\": 1, \"resources\": ["
		"{\"kind\": \"Process\", \"name\": \"../../../../tmp/x/precious\", \"spec_hash\": \"%s\"},"
		"{\"kind\": \"Process\", \"name\": \"Upper\", \"spec_hash\": \"%s\"},"
		"{\"kind\": \"Process\", \"name\": \"good\", \"spec_hash\": \"%s\"}]}",
		hash, hash, hash);
	fclose(f);
	assert_int_equal(gw_state_load(&st, path, &err), 0);
	assert_int_equal(st.n, 1);
	assert_string_equal(st.res[0].name, "good");
	gw_state_file_free(&st);
	unlink(path);
}

static void test_state_dir_must_be_ours_and_private(void **state)
{
	(void)state;
	char sub[160], link[200], lock[200];
	int fd = -1;
	struct gw_error err;
	snprintf(sub, sizeof(sub), "%s/shared", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(gw_state_lock(&fd, sub, &err), -EPERM);
	assert_non_null(strstr(err.msg, "state dir is writable by others (mode 0777): chmod go-w it"));
	assert_string_equal(err.file, sub);
	assert_int_equal(chmod(sub, 0770), 0);
	assert_int_equal(gw_state_lock(&fd, sub, &err), -EPERM);
	assert_non_null(strstr(err.msg, "writable by its group"));
	assert_int_equal(chmod(sub, 0700), 0);
	/* a subdir that is a link: refused, not followed */
	snprintf(link, sizeof(link), "%s/logs", sub);
	assert_int_equal(symlink("/tmp", link), 0);
	assert_int_equal(gw_state_lock(&fd, sub, &err), -ENOTDIR);
	assert_non_null(strstr(err.msg, "not a directory but a symbolic link"));
	unlink(link);
	/* the lock as a link: refused, the target untouched */
	snprintf(link, sizeof(link), "%s/victim", dir);
	f_write(link, "precious");
	snprintf(lock, sizeof(lock), "%s/lock", sub);
	assert_int_equal(symlink(link, lock), 0);
	assert_int_equal(gw_state_lock(&fd, sub, &err), -ELOOP);
	assert_string_equal(err.msg, "lock is a symbolic link: remove it");
	assert_int_equal(fd, -1);
	unlink(lock);
	assert_int_equal(gw_state_lock(&fd, sub, &err), 0);
	close(fd);
	unlink(lock);
	unlink(link);
	rmdir(sub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_missing_is_empty_and_torn_is_refused),
		cmocka_unit_test(test_convergence_round_trips_and_defaults_to_converged),
		cmocka_unit_test(test_lock_is_exclusive_and_names_the_holder),
		cmocka_unit_test(test_status_escapes_what_was_read_back),
		cmocka_unit_test(test_record_reader_on_bytes),
		cmocka_unit_test(test_invalid_names_on_disk_are_ignored),
		cmocka_unit_test(test_state_dir_must_be_ours_and_private),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
