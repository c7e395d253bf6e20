/* The state file round-trips, a torn or foreign file is refused, the
 * state dir lock names its holder, and the state, run and log dirs follow
 * their rule (FHS, XDG, or inside a given state dir). */
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
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "gitward/backend.h"
#include "gitward/paths.h"
#include "gitward/state.h"

#define HASH "3b3c7c05244498ac76029ed4d984d72ea4940f3ae492d93c2e5d9f2af086ddda"

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
	st.ref = gw_xstrdup("main");
	st.remote_commit = gw_xstrdup("9876543210987654321098765432109876543210");
	st.remote_invalid = true;
	st.last_sync = 1795400000;
	st.last_attempt = 1795400060;
	st.last_attempt_result = gw_xstrdup("git_error");
	st.res = gw_xcalloc(1, sizeof(*st.res));
	st.n = 1;
	st.res[0].kind = GW_KIND_PROCESS;
	st.res[0].name = gw_xstrdup("web");
	memset(st.res[0].spec_hash, 'a', 64);
	st.res[0].canonical = gw_xstrdup("{\"kind\":\"Process\",\"spec\":{}}");
	st.res[0].handle = gw_xstrdup("{\"pid\":42,\"start_time\":777}");
	st.res[0].restarts = 3;
	st.res[0].backoff_until_ms = 1234;
	st.res[0].health_failures = 2;
	st.res[0].probed_at_ms = 1795400059123;
	st.res[0].probe_every_ms = 2000;
	st.res[0].state = GW_STATE_FAILED;
	snprintf(st.res[0].detail, sizeof(st.res[0].detail), "exited with status 1");
	struct gw_backend_config bc = { .state_dir = dir };
	struct gw_backend_set set;
	assert_int_equal(gw_backend_set_open(&set, NULL, &bc, &err), 0);
	struct gw_state_describer d = { gw_backend_set_describe, &set };
	assert_int_equal(gw_state_save(&st, path, &d, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_string_equal(back.node, "n1");
	assert_string_equal(back.ref, "main");
	assert_string_equal(back.remote_commit, "9876543210987654321098765432109876543210");
	assert_true(back.remote_invalid);
	assert_int_equal(back.n, 1);
	assert_string_equal(back.res[0].name, "web");
	assert_string_equal(back.res[0].handle, "{\"pid\":42,\"start_time\":777}");
	assert_int_equal(back.res[0].restarts, 3);
	assert_int_equal(back.res[0].backoff_until_ms, 1234);
	/* the health check's count and clock, for the agent's next wait */
	assert_int_equal(back.res[0].health_failures, 2);
	assert_int_equal(back.res[0].probed_at_ms, 1795400059123);
	assert_int_equal(back.res[0].probe_every_ms, 2000);
	assert_int_equal(back.res[0].state, GW_STATE_FAILED);
	assert_string_equal(back.res[0].detail, "exited with status 1");
	assert_string_equal(back.res[0].canonical, st.res[0].canonical);
	/* for readers of the file, the identity keys status shows */
	char *file;
	assert_int_equal(gw_file_read_nofollow(&file, NULL, path, 1 << 20, &err), 0);
	assert_non_null(strstr(file, "\"pid\": 42"));
	free(file);
	char *js = gw_state_render_status(&back, &d);
	assert_non_null(strstr(js, "\"last_sync\":\"2026-11-23T02:13:20Z\""));
	assert_non_null(strstr(js, "\"last_success\":\"2026-11-23T02:13:20Z\""));
	assert_non_null(strstr(js, "\"last_attempt\":\"2026-11-23T02:14:20Z\""));
	assert_non_null(strstr(js, "\"last_attempt_result\":\"git_error\""));
	assert_int_equal(back.last_attempt, 1795400060);
	assert_string_equal(back.last_attempt_result, "git_error");
	assert_non_null(strstr(js, "\"pid\":42"));
	/* the ref's tip beside the commit in force */
	assert_non_null(strstr(js,
			       "\"commit\":\"0123456789012345678901234567890123456789\",\"ref\":\"main\","
			       "\"remote_commit\":\"9876543210987654321098765432109876543210\""));
	free(js);
	/* text status: a restarts column */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &back, &d);
	fclose(f);
	assert_non_null(strstr(text,
			       "ref:          main\nremote:       9876543210987654321098765432109876543210 "
			       "(invalid: the commit above stays in force)\nlast success: "));
	assert_non_null(strstr(text,
			       "\n  Process/web                  failed   unknown   restarts 3  pid 42  exited with "
			       "status 1\n"));
	free(text);
	gw_backend_set_close(&set);
	gw_state_file_free(&st);
	gw_state_file_free(&back);
}

/* A state file of the version before handles: pid, start_time and id keys
 * become the handles the backends now write, and status shows what it
 * showed then. */
static void test_state_before_handles_is_converted_on_load(void **state)
{
	(void)state;
	static const char doc[] =
		"{\"version\": 1, \"node\": \"n1\", \"resources\": ["
		"{\"kind\": \"Process\", \"name\": \"web\", \"spec_hash\": \"" HASH "\", \"state\": \"running\","
		" \"pid\": 4242, \"start_time\": 777, \"id\": \"\"},"
		"{\"kind\": \"Container\", \"name\": \"api\", \"spec_hash\": \"" HASH "\", \"state\": \"running\","
		" \"pid\": 0, \"start_time\": 0, \"id\": \"0123456789abcdef0123\"},"
		"{\"kind\": \"VM\", \"name\": \"vm1\", \"spec_hash\": \"" HASH "\", \"state\": \"failed\","
		" \"pid\": 0, \"start_time\": 0, \"id\": \"\"}]}";
	struct gw_state_file st;
	struct gw_error err;
	struct gw_backend_config bc = { .state_dir = "/nonexistent" };
	struct gw_backend_set set;
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(gw_state_parse(&st, doc, sizeof(doc) - 1, "state.json", &err), 0);
	assert_int_equal(st.n, 3);
	assert_string_equal(st.res[0].handle, "{\"pid\":4242,\"start_time\":777}");
	assert_string_equal(st.res[1].handle, "{\"id\":\"0123456789abcdef0123\"}");
	assert_null(st.res[2].handle); /* never started */
	/* a file of an earlier version records no remote tip */
	assert_null(st.remote_commit);
	assert_false(st.remote_invalid);
	assert_int_equal(gw_backend_set_open(&set, NULL, &bc, &err), 0);
	struct gw_state_describer d = { gw_backend_set_describe, &set };
	char *js = gw_state_render_status(&st, &d);
	assert_non_null(strstr(js, "\"name\":\"web\",\"state\":\"running\",\"health\":\"unknown\",\"pid\":4242,"));
	assert_non_null(strstr(js,
			       "\"name\":\"api\",\"state\":\"running\",\"health\":\"unknown\",\"id\":"
			       "\"0123456789abcdef0123\","));
	assert_non_null(strstr(js, "\"name\":\"vm1\",\"state\":\"failed\",\"health\":\"unknown\",\"pid\":null,"));
	assert_null(strstr(js, "start_time"));
	free(js);
	FILE *f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &st, &d);
	fclose(f);
	assert_non_null(strstr(text, "\n  Process/web                  running  unknown   restarts 0  pid 4242\n"));
	assert_non_null(strstr(text, " pid 4242"));
	assert_non_null(strstr(text, " id 0123456789ab"));
	assert_null(strstr(text, " id 0123456789abc"));
	assert_non_null(strstr(text, " pid 0"));
	free(text);
	gw_backend_set_close(&set);
	gw_state_file_free(&st);
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

/* the lock of a state dir given alone: run and log dirs inside it */
static int lock_dir(struct gw_lock *l, const char *state_dir, struct gw_error *err)
{
	char run[300], log[300];
	snprintf(run, sizeof(run), "%s/run", state_dir);
	snprintf(log, sizeof(log), "%s/logs", state_dir);
	return gw_state_lock(l, state_dir, run, log, err);
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
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
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

/* --auto-revert's bookkeeping survives a save and a load (an agent
 * restart); read back from disk, what is not a commit id, a resource key or
 * an object is left out, never trusted; status shows the reverted commit. */
static void test_rollout_round_trips_and_bad_entries_are_left_out(void **state)
{
	(void)state;
	char path[128];
	struct gw_state_file st, back;
	struct gw_error err;
	const char *good = "1111111111111111111111111111111111111111",
		   *bad = "2222222222222222222222222222222222222222";
	snprintf(path, sizeof(path), "%s/state.json", dir);
	gw_state_file_init(&st);
	st.commit = gw_xstrdup(bad);
	st.good_commit = gw_xstrdup(good);
	st.commit_since = 1700000000;
	st.revert_at = 1700000120;
	st.changed = gw_xcalloc(2, sizeof(*st.changed));
	st.changed[st.nchanged++] = gw_xstrdup("Process/web");
	st.reverted_commit = gw_xstrdup(bad);
	st.reverted_reason = gw_xstrdup("Process/web is running, unhealthy");
	st.reverted_at = 1700000121;
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_string_equal(back.good_commit, good);
	assert_int_equal(back.commit_since, 1700000000);
	assert_int_equal(back.revert_at, 1700000120);
	assert_int_equal(back.nchanged, 1);
	assert_string_equal(back.changed[0], "Process/web");
	assert_string_equal(back.reverted_commit, bad);
	assert_string_equal(back.reverted_reason, "Process/web is running, unhealthy");
	assert_int_equal(back.reverted_at, 1700000121);
	char *doc = gw_state_render_status(&back, NULL);
	assert_non_null(strstr(doc, "\"reverted\":{\"commit\":\"2222222222222222222222222222222222222222\""));
	assert_non_null(strstr(doc, "\"healthy_deadline\":\"2023-11-14T22:15:20Z\""));
	free(doc);
	gw_state_file_free(&back);
	gw_state_file_free(&st);

	f_write(path,
		"{\"version\": 1, \"resources\": [], \"rollout\": {\"good_commit\": \"../etc\", \"changed\": "
		"[\"Process/../x\", \"Nope/web\", 7, \"Process\", \"Container/db\"]}, \"reverted\": {\"commit\": "
		"\"zz\", \"reason\": \"x\"}}");
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_null(back.good_commit);
	assert_int_equal(back.nchanged, 1);
	assert_string_equal(back.changed[0], "Container/db");
	assert_null(back.reverted_commit);
	assert_null(back.reverted_reason);
	gw_state_file_free(&back);
}

/* The envFiles digests of a workload survive a save and a load (an agent
 * restart); a state file of an earlier version has none (the next pass
 * records them, no restart); a malformed one is dropped; neither the status
 * document nor its text shows a digest. */
static void test_env_digests_round_trip_and_never_show(void **state)
{
	(void)state;
	static const char d1[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char d2[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	char path[128];
	struct gw_state_file st, back;
	struct gw_error err;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	gw_state_file_init(&st);
	st.res = gw_xcalloc(2, sizeof(*st.res));
	st.n = 2;
	for (size_t i = 0; i < 2; i++) {
		st.res[i].kind = GW_KIND_PROCESS;
		st.res[i].name = gw_xstrdup(i ? "plain" : "web");
		memset(st.res[i].spec_hash, 'a', 64);
		st.res[i].state = GW_STATE_RUNNING;
	}
	gw_strmap_set(&st.res[0].env_digests, "/etc/web/app.env", d1);
	gw_strmap_set(&st.res[0].env_digests, "/etc/web/b.env", d2);
	st.res[0].env_changed = gw_xstrdup("/etc/web/b.env"); /* what observe saw: never recorded */
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_int_equal(back.n, 2);
	assert_int_equal(back.res[0].env_digests.n, 2);
	assert_string_equal(gw_strmap_get(&back.res[0].env_digests, "/etc/web/app.env"), d1);
	assert_string_equal(gw_strmap_get(&back.res[0].env_digests, "/etc/web/b.env"), d2);
	assert_null(back.res[0].env_changed);
	assert_int_equal(back.res[1].env_digests.n, 0);

	char *js = gw_state_render_status(&back, NULL), *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &back, NULL);
	fclose(f);
	for (const char *out = js; out; out = out == js ? text : NULL) {
		assert_null(strstr(out, d1));
		assert_null(strstr(out, d2));
		assert_null(strstr(out, "env_digests"));
	}
	free(js);
	free(text);
	gw_state_file_free(&back);
	gw_state_file_free(&st);

	/* before digests, and digests that are not what gitward writes */
	f_write(path,
		"{\"version\": 1, \"resources\": [{\"kind\": \"Process\", \"name\": \"a\", \"state\": "
		"\"running\", \"spec_hash\": \"" HASH "\"}, {\"kind\": \"Process\", \"name\": \"b\", "
		"\"spec_hash\": \"" HASH "\", \"env_digests\": {\"/x.env\": \"zz\", \"rel.env\": \"" HASH
		"\", \"/y.env\": 7, \"/ok.env\": \"" HASH "\"}}]}");
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_int_equal(back.n, 2);
	assert_int_equal(back.res[0].env_digests.n, 0);
	assert_int_equal(back.res[1].env_digests.n, 1);
	assert_string_equal(gw_strmap_get(&back.res[1].env_digests, "/ok.env"), HASH);
	gw_state_file_free(&back);
}

static void test_lock_is_exclusive_and_names_the_holder(void **state)
{
	(void)state;
	struct gw_lock l1, l2;
	struct gw_error err;
	char want[64];
	gw_lock_init(&l2);
	assert_int_equal(lock_dir(&l1, dir, &err), 0);
	assert_int_equal(lock_dir(&l2, dir, &err), -EBUSY);
	assert_int_equal(l2.fd, -1);
	snprintf(want, sizeof(want), "(pid %d)", (int)getpid());
	assert_non_null(strstr(err.msg, want));
	gw_state_unlock(&l1);
	assert_int_equal(lock_dir(&l2, dir, &err), 0);
	gw_state_unlock(&l2);
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
	gw_state_render_status_text(f, &st, NULL);
	fclose(f);
	assert_non_null(strstr(text, "last error: bad: a\\ninfo pass done \\x1b[2J\n"));
	assert_non_null(strstr(text, "x\\ny\n"));
	assert_null(strstr(text, "\ninfo pass done"));
	free(text);

	/* invalid UTF-8 in a value keeps its key in the status document */
	free(st.last_error);
	st.last_error = strdup("first: b\xff.yaml");
	json = gw_state_render_status(&st, NULL);
	assert_non_null(strstr(json, "\"last_error\":\"first: b\\\\xff.yaml\""));
	free(json);
	gw_state_file_free(&st);

	/* the buffer reader fills err iff it fails */
	memset(&err, 0, sizeof(err));
	assert_int_equal(gw_state_parse(&st, "{\"version\": 1}", 14, "s.json", &err), -EBADMSG);
	assert_string_equal(err.file, "s.json");
	assert_non_null(strstr(err.msg, "state file is corrupt"));
}

/* The node's labels are recorded with the pass (less "node": the name is
 * apart) and shown by status, in JSON and text; a file of an earlier
 * version has none. */
static void test_labels_are_recorded_and_shown(void **state)
{
	(void)state;
	char path[128], *text = NULL, *js;
	size_t len = 0;
	struct gw_state_file st, back;
	struct gw_strmap labels = { 0 };
	struct gw_error err;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	gw_state_file_init(&st);
	st.node = gw_xstrdup("web-01");
	gw_strmap_set(&labels, "node", "web-01");
	gw_strmap_set(&labels, "zone", "a");
	gw_strmap_set(&labels, "role", "edge");
	gw_state_labels_set(&st, &labels);
	gw_strmap_free(&labels);
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
	assert_int_equal(gw_state_load(&back, path, &err), 0);
	assert_int_equal(back.labels.n, 2);
	assert_string_equal(gw_strmap_get(&back.labels, "role"), "edge");
	assert_string_equal(gw_strmap_get(&back.labels, "zone"), "a");
	js = gw_state_render_status(&back, NULL);
	assert_non_null(strstr(js, "{\"node\":\"web-01\",\"labels\":{\"role\":\"edge\",\"zone\":\"a\"},"));
	free(js);
	FILE *f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &back, NULL);
	fclose(f);
	assert_non_null(strstr(text, "node:         web-01\nlabels:       role=edge zone=a\ncommit:"));
	free(text);
	gw_state_file_free(&back);
	gw_state_file_free(&st);

	/* an earlier version's file: no labels, an empty object, no text line */
	static const char old[] = "{\"version\": 1, \"node\": \"n1\", \"resources\": []}";
	assert_int_equal(gw_state_parse(&back, old, sizeof(old) - 1, "state.json", &err), 0);
	assert_int_equal(back.labels.n, 0);
	js = gw_state_render_status(&back, NULL);
	assert_non_null(strstr(js, "\"labels\":{}"));
	free(js);
	f = open_memstream(&text, &len);
	gw_state_render_status_text(f, &back, NULL);
	fclose(f);
	assert_null(strstr(text, "labels:"));
	free(text);
	gw_state_file_free(&back);

	/* labels that are not strings: corrupt, err filled */
	static const char bad[] = "{\"version\": 1, \"node\": \"n1\", \"labels\": {\"role\": 3}, \"resources\": []}";
	memset(&err, 0, sizeof(err));
	assert_int_equal(gw_state_parse(&back, bad, sizeof(bad) - 1, "state.json", &err), -EBADMSG);
	assert_string_equal(err.msg, "state file is corrupt: \"labels\" is not an object of at most 256 strings");
	unlink(path);
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
	assert_null(o.handle); /* identity is the backend's to read */
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
	struct gw_lock fd;
	struct gw_error err;
	gw_lock_init(&fd);
	snprintf(sub, sizeof(sub), "%s/shared", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(lock_dir(&fd, sub, &err), -EPERM);
	assert_non_null(strstr(err.msg, "state dir is writable by others (mode 0777): chmod go-w it"));
	assert_string_equal(err.file, sub);
	assert_int_equal(chmod(sub, 0770), 0);
	assert_int_equal(lock_dir(&fd, sub, &err), -EPERM);
	assert_non_null(strstr(err.msg, "writable by its group"));
	assert_int_equal(chmod(sub, 0700), 0);
	/* a subdir that is a link: refused, not followed */
	snprintf(link, sizeof(link), "%s/logs", sub);
	assert_int_equal(symlink("/tmp", link), 0);
	assert_int_equal(lock_dir(&fd, sub, &err), -ENOTDIR);
	assert_non_null(strstr(err.msg, "not a directory but a symbolic link"));
	unlink(link);
	/* the lock as a link: refused, the target untouched */
	snprintf(link, sizeof(link), "%s/victim", dir);
	f_write(link, "precious");
	snprintf(lock, sizeof(lock), "%s/lock", sub);
	assert_int_equal(symlink(link, lock), 0);
	assert_int_equal(lock_dir(&fd, sub, &err), -ELOOP);
	assert_string_equal(err.msg, "lock is a symbolic link: remove it");
	assert_int_equal(fd.fd, -1);
	unlink(lock);
	assert_int_equal(lock_dir(&fd, sub, &err), 0);
	gw_state_unlock(&fd);
	unlink(lock);
	unlink(link);
	rmdir(sub);
}

static void resolve(char **state, char **run, char **log, const struct gw_dirs_env *env)
{
	gw_dirs_resolve(state, run, log, env);
	assert_non_null(*state);
	assert_non_null(*run);
	assert_non_null(*log);
}

static void free3(char **a, char **b, char **c)
{
	free(*a);
	free(*b);
	free(*c);
	*a = *b = *c = NULL;
}

static void test_nothing_given_as_root_is_the_fhs_layout(void **state)
{
	(void)state;
	char root[128], want[200];
	char *s = NULL, *r = NULL, *l = NULL;
	snprintf(root, sizeof(root), "%s/root", dir); /* never the host's /var/lib, /run, /var/log */
	struct gw_dirs_env env = { .euid = 0, .xdg_state_home = "/x/state", .xdg_runtime_dir = "/x/rt", .root = root };
	resolve(&s, &r, &l, &env);
	snprintf(want, sizeof(want), "%s/var/lib/gitward", root);
	assert_string_equal(s, want);
	snprintf(want, sizeof(want), "%s/run/gitward", root);
	assert_string_equal(r, want);
	snprintf(want, sizeof(want), "%s/var/log/gitward", root);
	assert_string_equal(l, want);
	free3(&s, &r, &l);
	/* and nothing was created to find that out */
	struct stat st;
	assert_int_equal(lstat(root, &st), -1);
}

static void test_nothing_given_as_a_user_is_the_xdg_layout(void **state)
{
	(void)state;
	char *s = NULL, *r = NULL, *l = NULL;
	struct gw_dirs_env env = { .euid = 1000,
				   .xdg_state_home = "/x/state",
				   .xdg_runtime_dir = "/x/rt",
				   .home = "/home/u",
				   .root = "/nonexistent" };
	resolve(&s, &r, &l, &env);
	assert_string_equal(s, "/x/state/gitward");
	assert_string_equal(r, "/x/rt/gitward");
	assert_string_equal(l, "/x/state/gitward/logs");
	free3(&s, &r, &l);
	/* no runtime dir: the run dir stays in the state dir; relative XDG values are ignored */
	env.xdg_runtime_dir = NULL;
	env.xdg_state_home = "relative";
	resolve(&s, &r, &l, &env);
	assert_string_equal(s, "/home/u/.local/state/gitward");
	assert_string_equal(r, "/home/u/.local/state/gitward/run");
	assert_string_equal(l, "/home/u/.local/state/gitward/logs");
	free3(&s, &r, &l);
}

static void test_state_dir_given_keeps_run_and_logs_inside_it(void **state)
{
	(void)state;
	char *s = gw_xstrdup("/srv/gw"), *r = NULL, *l = NULL;
	struct gw_dirs_env env = { .euid = 0, .xdg_runtime_dir = "/x/rt", .root = "" };
	resolve(&s, &r, &l, &env);
	assert_string_equal(s, "/srv/gw");
	assert_string_equal(r, "/srv/gw/run");
	assert_string_equal(l, "/srv/gw/logs");
	free3(&s, &r, &l);
	/* each one given is kept */
	s = gw_xstrdup("/srv/gw");
	r = gw_xstrdup("/run/other");
	resolve(&s, &r, &l, &env);
	assert_string_equal(r, "/run/other");
	assert_string_equal(l, "/srv/gw/logs");
	free3(&s, &r, &l);
	l = gw_xstrdup("/var/log/other");
	resolve(&s, &r, &l, &env);
	assert_string_equal(r, "/run/gitward");
	assert_string_equal(l, "/var/log/other");
	free3(&s, &r, &l);
}

static void test_an_earlier_layout_is_kept_when_nothing_is_given(void **state)
{
	(void)state;
	char root[128], path[200];
	char *s = NULL, *r = NULL, *l = NULL;
	struct gw_error err;
	snprintf(root, sizeof(root), "%s/old", dir);
	snprintf(path, sizeof(path), "%s/var/lib/gitward/run", root);
	assert_int_equal(gw_mkdir_p(path, 0700, &err), 0);
	struct gw_dirs_env env = { .euid = 0, .root = root };
	resolve(&s, &r, &l, &env);
	assert_string_equal(r, path);
	snprintf(path, sizeof(path), "%s/var/log/gitward", root);
	assert_string_equal(l, path); /* no STATE/logs: the log dir moves */
	free3(&s, &r, &l);
	snprintf(path, sizeof(path), "%s/var/lib/gitward/logs", root);
	assert_int_equal(gw_mkdir_p(path, 0700, &err), 0);
	resolve(&s, &r, &l, &env);
	assert_string_equal(l, path);
	free3(&s, &r, &l);
	gw_rm_rf(root);
}

static void test_paths_are_named_in_one_place(void **state)
{
	(void)state;
	char b[256];
	assert_string_equal(gw_path_state_file(b, sizeof(b), "/s"), "/s/state.json");
	assert_string_equal(gw_path_repo(b, sizeof(b), "/s"), "/s/repo.git");
	assert_string_equal(gw_path_repository(b, sizeof(b), "/s"), "/s/repository");
	assert_string_equal(gw_path_gnupg(b, sizeof(b), "/s"), "/s/gnupg");
	/* the lock belongs to the state dir, wherever the run dir is */
	assert_string_equal(gw_path_lock(b, sizeof(b), "/s"), "/s/lock");
	assert_string_equal(gw_path_old_run_lock(b, sizeof(b), "/run/gitward"), "/run/gitward/lock");
	assert_string_equal(gw_path_run_owner(b, sizeof(b), "/run/gitward"), "/run/gitward/owner");
	assert_string_equal(gw_path_kind_dir(b, sizeof(b), "/r", GW_KIND_PROCESS), "/r/process");
	assert_string_equal(gw_path_kind_dir(b, sizeof(b), "/r", GW_KIND_VM), "/r/vm");
	assert_string_equal(gw_path_record(b, sizeof(b), "/r", GW_KIND_PROCESS, "web", "json"), "/r/process/web.json");
	assert_string_equal(gw_path_record(b, sizeof(b), "/r", GW_KIND_VM, "db", "qmp"), "/r/vm/db.qmp");
	assert_string_equal(gw_path_log(b, sizeof(b), "/l", GW_KIND_PROCESS, "web"), "/l/process-web.log");
	assert_string_equal(gw_path_log(b, sizeof(b), "/l", GW_KIND_VM, "db"), "/l/vm-db.log");
}

static void test_run_and_log_dirs_are_checked_like_the_state_dir(void **state)
{
	(void)state;
	char top[128], s[160], r[160], l[160], path[256];
	struct gw_lock fd;
	struct gw_error err;
	gw_lock_init(&fd);
	snprintf(top, sizeof(top), "%s/three", dir);
	snprintf(s, sizeof(s), "%s/state", top);
	snprintf(r, sizeof(r), "%s/run/gitward", top);
	snprintf(l, sizeof(l), "%s/log/gitward", top);
	assert_int_equal(gw_mkdir_p(s, 0700, &err), 0);
	/* made when missing, private; the lock in the state dir, the run dir
	 * recorded as the state dir's */
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), 0);
	gw_state_unlock(&fd);
	struct stat st;
	assert_int_equal(stat(r, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(l, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/lock", s);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/lock", r);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/owner", r);
	char *owner = NULL;
	size_t len;
	assert_int_equal(gw_file_read(&owner, &len, path, 4096, &err), 0);
	assert_int_equal(len, strlen(s) + 1);
	assert_memory_equal(owner, s, strlen(s));
	free(owner);
	/* writable by others: refused, naming the option */
	assert_int_equal(chmod(r, 0777), 0);
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), -EPERM);
	assert_int_equal(fd.fd, -1);
	assert_string_equal(err.file, r);
	assert_string_equal(err.msg, "run dir is writable by others (mode 0777): chmod go-w it");
	assert_int_equal(chmod(r, 0700), 0);
	assert_int_equal(chmod(l, 0750), 0);
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), 0);
	gw_state_unlock(&fd);
	assert_int_equal(chmod(l, 0720), 0);
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), -EPERM);
	assert_string_equal(err.msg, "log dir is writable by its group (mode 0720): chmod go-w it");
	assert_int_equal(chmod(l, 0700), 0);
	/* records an earlier layout left in STATE/run: not stranded */
	snprintf(path, sizeof(path), "%s/run/process", s);
	assert_int_equal(gw_mkdir_p(path, 0700, &err), 0);
	snprintf(path, sizeof(path), "%s/run/process/web.json", s);
	f_write(path, "{}");
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "holds run records of workloads started with the run dir"));
	unlink(path);
	assert_int_equal(gw_state_lock(&fd, s, r, l, &err), 0);
	gw_state_unlock(&fd);
	gw_rm_rf(top);
}

/* A run dir holds the records of one state dir: the first to lock it owns
 * it (RUN/owner); another state dir naming it is refused, naming the owner. */
static void test_a_run_dir_belongs_to_one_state_dir(void **state)
{
	(void)state;
	char top[128], s1[160], s2[160], r[160], l[160], same[200], owner[200], want[700];
	struct gw_lock lk;
	struct gw_error err;
	gw_lock_init(&lk);
	snprintf(top, sizeof(top), "%s/owned", dir);
	snprintf(s1, sizeof(s1), "%s/s1", top);
	snprintf(s2, sizeof(s2), "%s/s2", top);
	snprintf(r, sizeof(r), "%s/run", top);
	snprintf(l, sizeof(l), "%s/log", top);
	snprintf(owner, sizeof(owner), "%s/owner", r);
	assert_int_equal(gw_mkdir_p(s1, 0700, &err), 0);
	assert_int_equal(gw_mkdir_p(s2, 0700, &err), 0);
	assert_int_equal(gw_state_lock(&lk, s1, r, l, &err), 0);
	gw_state_unlock(&lk);
	/* not held: owned all the same */
	memset(&err, 0, sizeof(err));
	assert_int_equal(gw_state_lock(&lk, s2, r, l, &err), -EBUSY);
	assert_int_equal(err.code, -EBUSY);
	assert_int_equal(lk.fd, -1);
	snprintf(want, sizeof(want), "run dir %s belongs to state dir %s: use --state-dir %s, or another --run-dir", r,
		 s1, s1);
	assert_string_equal(err.msg, want);
	/* the owner under another spelling is the owner */
	snprintf(same, sizeof(same), "%s/./s1", top);
	assert_int_equal(gw_state_lock(&lk, same, r, l, &err), 0);
	gw_state_unlock(&lk);
	/* an owner that is gone: how to hand the run dir over */
	gw_rm_rf(s1);
	assert_int_equal(gw_state_lock(&lk, s2, r, l, &err), -EBUSY);
	snprintf(want, sizeof(want),
		 "run dir %s belongs to state dir %s, which no longer exists: remove %s to give the run dir to "
		 "another state dir",
		 r, s1, owner);
	assert_string_equal(err.msg, want);
	unlink(owner);
	assert_int_equal(gw_state_lock(&lk, s2, r, l, &err), 0);
	gw_state_unlock(&lk);
	/* a record that is not one absolute path: refused, named */
	f_write(owner, "relative\n");
	assert_int_equal(gw_state_lock(&lk, s2, r, l, &err), -EBADMSG);
	assert_string_equal(err.file, owner);
	gw_rm_rf(top);
}

/* Upgrade: RUN/lock, where an earlier version locked a run dir outside the
 * state dir, is taken as well while it exists. */
static void test_the_lock_of_an_earlier_version_is_taken_while_it_exists(void **state)
{
	(void)state;
	char top[128], s[160], r[160], l[160], old[200], owner[200], want[700], *data;
	struct gw_lock lk;
	struct gw_error err;
	struct stat st;
	size_t len;
	gw_lock_init(&lk);
	snprintf(top, sizeof(top), "%s/upgrade", dir);
	snprintf(s, sizeof(s), "%s/state", top);
	snprintf(r, sizeof(r), "%s/run", top);
	snprintf(l, sizeof(l), "%s/log", top);
	snprintf(old, sizeof(old), "%s/lock", r);
	snprintf(owner, sizeof(owner), "%s/owner", r);
	assert_int_equal(gw_mkdir_p(s, 0700, &err), 0);
	assert_int_equal(gw_mkdir_p(r, 0700, &err), 0);
	/* an agent of the earlier version holds it: refused, naming its pid;
	 * the run dir not claimed */
	f_write(old, "4242\n");
	int held = open(old, O_RDWR | O_CLOEXEC);
	assert_true(held >= 0);
	assert_int_equal(flock(held, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(gw_state_lock(&lk, s, r, l, &err), -EBUSY);
	snprintf(want, sizeof(want),
		 "state dir %s is in use by another gitward (pid 4242), holding %s (the lock of an earlier version)", s,
		 old);
	assert_string_equal(err.msg, want);
	assert_int_equal(lk.fd, -1);
	assert_int_equal(stat(owner, &st), -1);
	/* gone: this state dir claims the run dir and holds both locks */
	close(held);
	assert_int_equal(gw_state_lock(&lk, s, r, l, &err), 0);
	assert_true(lk.old_fd >= 0);
	assert_int_equal(stat(owner, &st), 0);
	held = open(old, O_RDWR | O_CLOEXEC);
	assert_int_equal(flock(held, LOCK_EX | LOCK_NB), -1); /* an earlier version is kept out */
	close(held);
	assert_int_equal(gw_file_read(&data, &len, old, 64, &err), 0);
	snprintf(want, sizeof(want), "%d\n", (int)getpid());
	assert_int_equal(len, strlen(want));
	assert_memory_equal(data, want, len);
	free(data);
	gw_state_unlock(&lk);
	/* without the file: nothing made there */
	unlink(old);
	assert_int_equal(gw_state_lock(&lk, s, r, l, &err), 0);
	assert_int_equal(lk.old_fd, -1);
	assert_int_equal(stat(old, &st), -1);
	gw_state_unlock(&lk);
	gw_rm_rf(top);
}

static void test_repository_record(void **state)
{
	(void)state;
	char path[128];
	struct gw_strlist repos = { 0 };
	struct gw_error err = { 0 };
	const char *two[] = { "https://example.com/team/repo", "/srv/mirror" };
	snprintf(path, sizeof(path), "%s/repository", dir);
	/* none recorded yet: empty, no error */
	assert_int_equal(gw_state_repo_read(&repos, dir, &err), 0);
	assert_int_equal(repos.n, 0);
	assert_int_equal(gw_state_repo_write(dir, two, 1, &err), 0);
	assert_int_equal(gw_state_repo_read(&repos, dir, &err), 0);
	assert_int_equal(repos.n, 1);
	assert_string_equal(repos.v[0], "https://example.com/team/repo");
	gw_strlist_free(&repos);
	/* several --repo: one a line, in their order */
	assert_int_equal(gw_state_repo_write(dir, two, 2, &err), 0);
	assert_int_equal(gw_state_repo_read(&repos, dir, &err), 0);
	assert_int_equal(repos.n, 2);
	assert_string_equal(repos.v[1], "/srv/mirror");
	gw_strlist_free(&repos);
	/* the format of an earlier version: one line, no newline */
	f_write(path, "https://example.com/old");
	assert_int_equal(gw_state_repo_read(&repos, dir, &err), 0);
	assert_int_equal(repos.n, 1);
	assert_string_equal(repos.v[0], "https://example.com/old");
	gw_strlist_free(&repos);
	f_write(path, "a\n\nb\n");
	assert_int_equal(gw_state_repo_read(&repos, dir, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "not lines naming a repository"));
	unlink(path);
}

static void test_status_needs_a_readable_state_dir(void **state)
{
	(void)state;
	struct gw_error err = { 0 };
	char path[128];
	assert_int_equal(gw_state_dir_readable(dir, &err), 0);
	assert_int_equal(gw_state_dir_readable("/no/such/dir", &err), -ENOENT);
	assert_string_equal(err.msg,
			    "no such state dir: no gitward has used it (give the --state-dir of the node's agent)");
	snprintf(path, sizeof(path), "%s/file", dir);
	f_write(path, "");
	assert_int_equal(gw_state_dir_readable(path, &err), -ENOTDIR);
	assert_string_equal(err.msg, "state dir is not a directory");
	/* a reader is fine with a state dir that does not exist yet */
	assert_int_equal(gw_state_dir_check_existing("/no/such/dir", &err), 0);
	assert_int_equal(gw_state_dir_check_existing(path, &err), -ENOTDIR);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_state_before_handles_is_converted_on_load),
		cmocka_unit_test(test_missing_is_empty_and_torn_is_refused),
		cmocka_unit_test(test_convergence_round_trips_and_defaults_to_converged),
		cmocka_unit_test(test_env_digests_round_trip_and_never_show),
		cmocka_unit_test(test_rollout_round_trips_and_bad_entries_are_left_out),
		cmocka_unit_test(test_lock_is_exclusive_and_names_the_holder),
		cmocka_unit_test(test_status_escapes_what_was_read_back),
		cmocka_unit_test(test_labels_are_recorded_and_shown),
		cmocka_unit_test(test_record_reader_on_bytes),
		cmocka_unit_test(test_invalid_names_on_disk_are_ignored),
		cmocka_unit_test(test_state_dir_must_be_ours_and_private),
		cmocka_unit_test(test_nothing_given_as_root_is_the_fhs_layout),
		cmocka_unit_test(test_nothing_given_as_a_user_is_the_xdg_layout),
		cmocka_unit_test(test_state_dir_given_keeps_run_and_logs_inside_it),
		cmocka_unit_test(test_an_earlier_layout_is_kept_when_nothing_is_given),
		cmocka_unit_test(test_paths_are_named_in_one_place),
		cmocka_unit_test(test_run_and_log_dirs_are_checked_like_the_state_dir),
		cmocka_unit_test(test_a_run_dir_belongs_to_one_state_dir),
		cmocka_unit_test(test_the_lock_of_an_earlier_version_is_taken_while_it_exists),
		cmocka_unit_test(test_repository_record),
		cmocka_unit_test(test_status_needs_a_readable_state_dir),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
