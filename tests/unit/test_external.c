/* The External backend's plugin client against small sh plugins: a good
 * answer comes back whole; a plugin that is missing, hangs, crashes, exits
 * non-zero, answers garbage, too much, another protocol or an error is
 * refused with a message naming the plugin, the operation and the problem,
 * and a hanging plugin's whole process group is killed and reaped. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/backend.h"
#include "gitward/external.h"
#include "gitward/plan.h"
#include "gitward/state.h"
#include "helpers.h"

static char dir[256];

static void plugin(const char *name, const char *body)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	chmod(path, 0755);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/gw-plugin-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char *argv[] = { "/bin/rm", "-rf", dir, NULL };
	int status;
	struct gw_strbuf out, errout;
	struct gw_error err;
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	gw_spawn_capture(&status, &out, &errout, argv, "", 0, 1024, 10000, &err);
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
	return 0;
}

/* Call name's op with a small request; the error message (or "" on success). */
static int call(json_t **reply, char *msg, size_t size, const char *name, int64_t timeout_ms)
{
	struct gw_error err;
	json_t *req = json_pack("{s:s, s:{s:s}}", "name", "motd", "spec", "plugin", name);
	*reply = NULL;
	int rc = gw_plugin_call(reply, dir, name, "create", req, timeout_ms, NULL, &err);
	json_decref(req);
	snprintf(msg, size, "%s", rc < 0 ? err.msg : "");
	return rc;
}

static void test_a_good_answer_and_the_request_it_got(void **state)
{
	(void)state;
	char msg[1024], path[512];
	json_t *reply;
	snprintf(path, sizeof(path), "%s/request", dir);
	char body[1024];
	snprintf(body, sizeof(body),
		 "cat > %s\necho \"$1\" >> %s\nprintf '%%s\\n' '{\"protocol\": 1, \"ok\": true, \"handle\": \"h-1\"}'",
		 path, path);
	plugin("good", body);
	assert_int_equal(call(&reply, msg, sizeof(msg), "good", 60000), 0);
	assert_string_equal(json_string_value(json_object_get(reply, "handle")), "h-1");
	json_decref(reply);
	FILE *f = fopen(path, "r");
	char got[1024] = "";
	assert_non_null(f);
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = '\0';
	fclose(f);
	/* one JSON object with sorted keys on stdin, the op also as argv[1] */
	assert_string_equal(got,
			    "{\"name\":\"motd\",\"op\":\"create\",\"protocol\":1,\"spec\":{\"plugin\":\"good\"}}"
			    "create\n");
}

struct bad_plugin {
	const char *name, *body;
	int code;
	const char *msg;
};

static const struct bad_plugin bad[] = {
	{ "crash", "kill -SEGV $$", -EIO, "plugin crash create: killed by signal 11" },
	{ "exit3", "echo 'first words' >&2; echo 'last words' >&2; exit 3", -EIO,
	  "plugin exit3 create: exited with status 3: last words" },
	{ "garbage", "echo 'hello, gitward'", -EBADMSG,
	  "plugin garbage create: answered something other than one JSON object (" },
	{ "two", "echo '{\"protocol\": 1, \"ok\": true}{\"protocol\": 1, \"ok\": true}'", -EBADMSG,
	  "plugin two create: answered something other than one JSON object" },
	{ "array", "echo '[1]'", -EBADMSG, "plugin array create: answered something other than one JSON object" },
	{ "empty", "exit 0", -EBADMSG, "plugin empty create: answered something other than one JSON object" },
	/* an endless writer: stopped at the byte count, not at the timeout */
	{ "huge", "exec yes", -EMSGSIZE, "plugin huge create: answered more than 1048576 bytes" },
	{ "v2", "echo '{\"protocol\": 2, \"ok\": true}'", -EPROTO,
	  "plugin v2 create: answered in protocol 2, gitward speaks 1" },
	{ "v0", "echo '{\"ok\": true}'", -EPROTO, "plugin v0 create: answered without \"protocol\": 1" },
	{ "nook", "echo '{\"protocol\": 1}'", -EBADMSG, "plugin nook create: answered without \"ok\": true or false" },
	{ "refuses", "echo '{\"protocol\": 1, \"ok\": false, \"error\": \"disk full\"}'", -EIO,
	  "plugin refuses create: disk full" },
};

static void test_misbehaving_plugins_are_errors_naming_the_problem(void **state)
{
	(void)state;
	char msg[1024];
	int failures = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *reply;
		plugin(bad[i].name, bad[i].body);
		int rc = call(&reply, msg, sizeof(msg), bad[i].name, 600000); /* each ends by itself */
		if (rc != bad[i].code || strncmp(msg, bad[i].msg, strlen(bad[i].msg)) != 0) {
			fprintf(stderr, "%s: wanted %d \"%s\", got %d \"%s\"\n", bad[i].name, bad[i].code, bad[i].msg,
				rc, msg);
			failures++;
		}
		assert_null(reply);
	}
	assert_int_equal(failures, 0);
}

static void test_missing_or_unusable_plugins(void **state)
{
	(void)state;
	char msg[1024], want[1024], path[512];
	json_t *reply;
	assert_int_equal(call(&reply, msg, sizeof(msg), "nosuch", 1000), -ENOENT);
	snprintf(want, sizeof(want), "plugin nosuch: no such plugin in %s (--plugin-dir)", dir);
	assert_string_equal(msg, want);
	plugin("noexec", "exit 0");
	snprintf(path, sizeof(path), "%s/noexec", dir);
	chmod(path, 0644);
	/* no x bit at all: refused for root too */
	assert_int_equal(call(&reply, msg, sizeof(msg), "noexec", 1000), -EACCES);
	snprintf(want, sizeof(want), "plugin noexec: %s is not executable", path);
	assert_string_equal(msg, want);
	assert_int_equal(call(&reply, msg, sizeof(msg), "../bin", 1000), -EINVAL);
	assert_string_equal(msg, "plugin \"../bin\": not a plugin name");
}

static long read_pid(const char *name)
{
	char path[512];
	long pid = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid;
}

static void test_a_hanging_plugin_is_killed_with_its_children(void **state)
{
	(void)state;
	char msg[1024], body[1024];
	json_t *reply;
	snprintf(body, sizeof(body), "sleep 600 & echo $! > %s/child.pid\necho $$ > %s/self.pid\nexec sleep 600", dir,
		 dir);
	plugin("hang", body);
	/* 3 s: time for a loaded machine's shell to write both pids before the
	 * kill; the sleeps of 10 minutes tell the kill from their end */
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(call(&reply, msg, sizeof(msg), "hang", 3000), -ETIMEDOUT);
	int64_t took = gw_monotonic_ms() - t0;
	assert_string_equal(msg, "plugin hang create: no answer within 3s (spec.timeout): killed");
	assert_true(took >= 3000 && took < 60000);
	long self = read_pid("self.pid"), child = read_pid("child.pid");
	assert_true(self > 1 && child > 1);
	/* the plugin was reaped (no zombie left: kill finds nothing) ... */
	assert_int_equal(kill((pid_t)self, 0), -1);
	assert_int_equal(errno, ESRCH);
	/* ... and its background child, in its process group, was killed: it is
	 * gone once init reaps it */
	int64_t deadline = gw_monotonic_ms() + 60000;
	while (kill((pid_t)child, 0) == 0 && gw_monotonic_ms() < deadline) {
		char st[64], path[64], state = 0;
		snprintf(path, sizeof(path), "/proc/%ld/stat", child);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fscanf(f, "%63s %63s %c", st, st, &state) != 3)
				state = 0;
			fclose(f);
		}
		if (state == 'Z')
			break; /* killed, waiting for its reaper */
		usleep(10000);
	}
	char path[64], line[256] = "";
	snprintf(path, sizeof(path), "/proc/%ld/stat", child);
	FILE *f = fopen(path, "r");
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = '\0';
		fclose(f);
	}
	assert_true(!f || strstr(line, ") Z ") != NULL);
}

/* ---- the backend, against one plugin whose answers the test sets ---- */

/* "p" writes its request to req.OP, appends OP to calls, exits with the
 * status in exit.OP (if any) and answers what reply.OP holds (or nothing). */
static void scripted_plugin(void)
{
	char body[2048];
	snprintf(body, sizeof(body),
		 "cat > %s/req.$1\necho \"$1\" >> %s/calls\n"
		 "if [ -f %s/exit.$1 ]; then exit $(cat %s/exit.$1); fi\n"
		 "if [ -f %s/hang.$1 ]; then echo $$ > %s/hang.pid; exec sleep 300; fi\n"
		 "if [ -f %s/reply.$1 ]; then cat %s/reply.$1; fi",
		 dir, dir, dir, dir, dir, dir, dir, dir);
	plugin("p", body);
}

static void put(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!text) {
		unlink(path);
		return;
	}
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void take(char *buf, size_t size, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f) {
		size_t n = fread(buf, 1, size - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
}

static void backend_init(struct gw_backend *b, char *state_dir, size_t size)
{
	memset(b, 0, sizeof(*b));
	snprintf(state_dir, size, "%s/state", dir);
	b->ops = &gw_backend_external;
	b->cfg.state_dir = state_dir;
	b->cfg.plugin_dir = dir;
}

#define OK "{\"protocol\": 1, \"ok\": true"

static struct gw_resource *ext_resource(const char *name)
{
	char yaml[512];
	snprintf(yaml, sizeof(yaml),
		 "apiVersion: gitward/v1\nkind: External\nmetadata: {name: %s}\n"
		 "spec:\n  plugin: p\n  timeout: 60s\n  config: {path: /x}\n", /* ample for a loaded machine */
		 name);
	struct gw_resource *r = parse_one(yaml);
	assert_non_null(r);
	return r;
}

static void test_create_refuses_an_answer_without_a_usable_handle(void **state)
{
	(void)state;
	struct gw_backend b;
	char sd[512];
	struct gw_error err;
	struct gw_observed o;
	backend_init(&b, sd, sizeof(sd));
	scripted_plugin();
	struct gw_resource *r = ext_resource("e");
	static const char *const replies[] = { OK "}", OK ", \"handle\": \"\"}", OK ", \"handle\": 7}" };
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		put("reply.create", replies[i]);
		memset(&o, 0, sizeof(o));
		assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), -EBADMSG);
		assert_string_equal(err.msg, "plugin p create: answered without a \"handle\" of 1 to 65536 bytes");
		assert_null(o.handle);
	}
	/* a refusal is the plugin's error, nothing recorded */
	put("reply.create", "{\"protocol\": 1, \"ok\": false}");
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), -EIO);
	assert_string_equal(err.msg, "plugin p create: failed (no error given)");
	/* a failing plugin without stderr: the status alone */
	put("exit.create", "4");
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), -EIO);
	assert_string_equal(err.msg, "plugin p create: exited with status 4");
	put("exit.create", NULL);
	char path[600];
	snprintf(path, sizeof(path), "%s/external/e.json", sd);
	assert_int_equal(access(path, F_OK), -1);
	gw_resource_free(r);
}

static void test_create_observe_destroy_through_the_plugin(void **state)
{
	(void)state;
	struct gw_backend b;
	char sd[512], got[4096], path[600];
	struct gw_error err;
	struct gw_observed o;
	struct gw_observed *v = NULL;
	size_t n = 0;
	backend_init(&b, sd, sizeof(sd));
	scripted_plugin();
	put("calls", "");
	struct gw_resource *r = ext_resource("e");
	put("reply.create", OK ", \"handle\": \"h-42\"}");
	memset(&o, 0, sizeof(o));
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), 0);
	assert_string_equal(o.handle, "h-42");
	assert_int_equal(o.state, GW_STATE_RUNNING);
	gw_observed_clear(&o);
	take(got, sizeof(got), "req.create");
	assert_string_equal(got,
			    "{\"name\":\"e\",\"op\":\"create\",\"protocol\":1,\"sources\":{},"
			    "\"spec\":{\"config\":{\"path\":\"/x\"},\"plugin\":\"p\"}}");
	snprintf(path, sizeof(path), "%s/external/e.json", sd);
	json_t *rec = gw_record_load(path);
	assert_non_null(rec);
	assert_string_equal(json_string_value(json_object_get(rec, "plugin")), "p");
	assert_string_equal(json_string_value(json_object_get(rec, "handle")), "h-42");
	assert_int_equal(json_integer_value(json_object_get(rec, "timeout_ms")), 60000);
	json_decref(rec);

	/* observe: every answer shape and the state/detail it gives */
	struct {
		const char *observe, *probe;
		int exit_observe;
		enum gw_state state;
		const char *detail;
	} cases[] = {
		{ "{\"protocol\": 1, \"ok\": false, \"error\": \"no api\"}", NULL, 0, GW_STATE_FAILED,
		  "plugin p observe: no api" },
		{ OK "}", NULL, 0, GW_STATE_FAILED,
		  "plugin p observe: answered without \"state\": present, absent or drifted" },
		{ OK ", \"state\": \"sideways\"}", NULL, 0, GW_STATE_FAILED,
		  "plugin p observe: answered without \"state\": present, absent or drifted" },
		{ OK ", \"state\": \"absent\"}", NULL, 0, GW_STATE_FAILED, "gone" },
		{ OK ", \"state\": \"absent\", \"detail\": \"deleted by hand\"}", NULL, 0, GW_STATE_FAILED,
		  "gone: deleted by hand" },
		{ OK ", \"state\": \"drifted\"}", NULL, 0, GW_STATE_FAILED, "drifted" },
		{ OK ", \"state\": \"drifted\", \"detail\": \"mode 0600\"}", NULL, 0, GW_STATE_FAILED,
		  "drifted: mode 0600" },
		{ OK ", \"state\": \"present\"}", "{\"protocol\": 1, \"ok\": false, \"error\": \"probe broke\"}", 0,
		  GW_STATE_FAILED, "plugin p probe: probe broke" },
		{ OK ", \"state\": \"present\"}", OK "}", 0, GW_STATE_FAILED,
		  "plugin p probe: answered without \"healthy\"" },
		{ OK ", \"state\": \"present\"}", OK ", \"healthy\": false}", 0, GW_STATE_FAILED,
		  "unhealthy: the plugin's probe failed" },
		{ OK ", \"state\": \"present\"}", OK ", \"healthy\": false, \"detail\": \"503\"}", 0, GW_STATE_FAILED,
		  "unhealthy: 503" },
		{ OK ", \"state\": \"present\"}", OK ", \"healthy\": true}", 0, GW_STATE_RUNNING, "" },
		{ NULL, NULL, 2, GW_STATE_FAILED, "plugin p observe: exited with status 2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put("reply.observe", cases[i].observe);
		put("reply.probe", cases[i].probe);
		put("exit.observe", cases[i].exit_observe ? "2" : NULL);
		assert_int_equal(gw_backend_external.discover(&v, &n, &b, NULL, &err), 0);
		assert_int_equal(n, 1);
		if (v[0].state != cases[i].state || strcmp(v[0].detail, cases[i].detail) != 0)
			fail_msg("case %zu: state %d \"%s\", wanted %d \"%s\"", i, v[0].state, v[0].detail,
				 cases[i].state, cases[i].detail);
		assert_string_equal(v[0].name, "e");
		assert_string_equal(v[0].handle, "h-42");
		gw_observed_clear(&v[0]);
		free(v);
	}
	put("exit.observe", NULL);
	take(got, sizeof(got), "req.probe");
	assert_string_equal(got,
			    "{\"handle\":\"h-42\",\"name\":\"e\",\"op\":\"probe\",\"protocol\":1,"
			    "\"spec\":{\"config\":{\"path\":\"/x\"},\"plugin\":\"p\"}}");

	/* several records are observed at once; unreadable ones are ignored */
	struct gw_resource *r2 = ext_resource("f");
	struct gw_resource *r3 = ext_resource("g");
	assert_int_equal(gw_backend_external.create(&o, &b, r2, NULL, &err), 0);
	gw_observed_clear(&o);
	assert_int_equal(gw_backend_external.create(&o, &b, r3, NULL, &err), 0);
	gw_observed_clear(&o);
	snprintf(path, sizeof(path), "%s/external/junk.json", sd);
	FILE *f = fopen(path, "w");
	fputs("not json", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/external/half.json", sd);
	f = fopen(path, "w");
	fputs("{\"plugin\": \"p\"}", f);
	fclose(f);
	put("reply.observe", OK ", \"state\": \"present\"}");
	put("reply.probe", OK ", \"healthy\": true}");
	assert_int_equal(gw_backend_external.discover(&v, &n, &b, NULL, &err), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i].state, GW_STATE_RUNNING);
		gw_observed_clear(&v[i]);
	}
	free(v);

	/* destroy: a failing plugin keeps the record, a good one removes it */
	struct gw_observed who = { .kind = GW_KIND_EXTERNAL, .name = "e" };
	put("reply.destroy", "{\"protocol\": 1, \"ok\": false, \"error\": \"busy\"}");
	assert_int_equal(gw_backend_external.destroy(&b, &who, r, NULL, &err), -EIO);
	assert_string_equal(err.msg, "plugin p destroy: busy");
	snprintf(path, sizeof(path), "%s/external/e.json", sd);
	assert_int_equal(access(path, F_OK), 0);
	put("reply.destroy", OK "}");
	assert_int_equal(gw_backend_external.destroy(&b, &who, r, NULL, &err), 0);
	assert_int_equal(access(path, F_OK), -1);
	take(got, sizeof(got), "req.destroy");
	assert_non_null(strstr(got, "\"handle\":\"h-42\""));
	/* gone already: nothing to do, the plugin is not asked */
	put("calls", "");
	assert_int_equal(gw_backend_external.destroy(&b, &who, NULL, NULL, &err), 0);
	take(got, sizeof(got), "calls");
	assert_string_equal(got, "");
	/* records it cannot use */
	who.name = "junk";
	assert_int_equal(gw_backend_external.destroy(&b, &who, NULL, NULL, &err), -EBADMSG);
	snprintf(path, sizeof(path), "%s/external/junk.json", sd);
	assert_string_equal(err.file, path);
	assert_string_equal(err.msg, "unreadable External record");
	who.name = "half";
	assert_int_equal(gw_backend_external.destroy(&b, &who, NULL, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "External record without plugin, handle or spec");
	gw_resource_free(r);
	gw_resource_free(r2);
	gw_resource_free(r3);
}

/* An instance (init) observes on a thread of its own: a good answer comes
 * back as before; a plugin asleep in observe is waited for 10 s, then the
 * pass goes on without it (-EINPROGRESS), and done kills it at once. */
static void test_a_hanging_observe_is_left_behind_and_killed_at_done(void **state)
{
	(void)state;
	struct gw_backend b;
	char sd[512], path[600], got[64];
	struct gw_error err;
	struct gw_observed o;
	struct gw_observed *v = NULL;
	size_t n = 0;
	backend_init(&b, sd, sizeof(sd));
	snprintf(sd, sizeof(sd), "%s/state-thread", dir);
	assert_int_equal(gw_backend_external.init(&b.priv, &b, &err), 0);
	scripted_plugin();
	struct gw_resource *r = ext_resource("t");
	put("reply.create", OK ", \"handle\": \"h-t\"}");
	put("reply.observe", OK ", \"state\": \"present\"}");
	put("reply.probe", OK ", \"healthy\": true}");
	memset(&o, 0, sizeof(o));
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), 0);
	gw_observed_clear(&o);
	assert_int_equal(gw_backend_external.discover(&v, &n, &b, NULL, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].state, GW_STATE_RUNNING);
	gw_observed_clear(&v[0]);
	free(v);
	v = NULL;

	put("hang.pid", NULL);
	put("hang.observe", "");
	assert_int_equal(gw_backend_external.discover(&v, &n, &b, NULL, &err), -EINPROGRESS);
	assert_non_null(strstr(err.msg, "the plugins have not answered observe for "));
	assert_non_null(strstr(err.msg, "s: External resources left as recorded until they do"));
	/* a stop request ends the wait of a pass */
	struct gw_cancel stop = { 0 };
	struct gw_backend_call call = { .cancel = &stop };
	gw_cancel_request(&stop);
	assert_int_equal(gw_backend_external.discover(&v, &n, &b, &call, &err), -ECANCELED);
	/* (the plugin's start, on a loaded machine, is waited for) */
	for (int64_t t0 = gw_monotonic_ms(); take(got, sizeof(got), "hang.pid"), !strchr(got, '\n');)
		if (gw_monotonic_ms() - t0 > 60000)
			fail_msg("the plugin never started");
		else
			usleep(20000);
	long pid = strtol(got, NULL, 10);
	assert_true(pid > 1);
	assert_int_equal(kill((pid_t)pid, 0), 0); /* still asleep */
	/* done stops the observation: the plugin is killed and reaped, not
	 * waited for (its sleep is 5 minutes, the test's bound far less) */
	gw_backend_external.done(b.priv);
	assert_int_equal(kill((pid_t)pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	put("hang.observe", NULL);
	snprintf(path, sizeof(path), "%s/external/t.json", sd);
	unlink(path);
	gw_resource_free(r);
}

/* A record that cannot be written: what the plugin made is destroyed again,
 * since nothing would ever find it. */
static void test_an_unrecordable_create_is_undone(void **state)
{
	(void)state;
	struct gw_backend b;
	char sd[512], got[4096], path[600];
	struct gw_error err;
	struct gw_observed o;
	backend_init(&b, sd, sizeof(sd));
	scripted_plugin();
	snprintf(path, sizeof(path), "%s/external/u.json", sd);
	char mk[600];
	snprintf(mk, sizeof(mk), "%s/external", sd);
	mkdir(sd, 0700);
	mkdir(mk, 0700);
	assert_int_equal(mkdir(path, 0700), 0); /* a directory where the record goes */
	struct gw_resource *r = ext_resource("u");
	put("reply.create", OK ", \"handle\": \"h-u\"}");
	put("reply.destroy", OK "}");
	put("calls", "");
	memset(&o, 0, sizeof(o));
	assert_true(gw_backend_external.create(&o, &b, r, NULL, &err) < 0);
	assert_null(o.handle);
	take(got, sizeof(got), "calls");
	assert_string_equal(got, "create\ndestroy\n");
	take(got, sizeof(got), "req.destroy");
	assert_non_null(strstr(got, "\"handle\":\"h-u\""));
	rmdir(path);
	/* a state dir that cannot be made: the plugin is not asked */
	put("calls", "");
	snprintf(mk, sizeof(mk), "%s/afile", dir);
	put("afile", "x");
	b.cfg.state_dir = mk;
	assert_true(gw_backend_external.create(&o, &b, r, NULL, &err) < 0);
	take(got, sizeof(got), "calls");
	assert_string_equal(got, "");
	gw_resource_free(r);
}

static void test_describe_shows_the_handle(void **state)
{
	(void)state;
	char text[64];
	json_t *fields = json_object();
	gw_backend_external.describe(fields, text, sizeof(text), NULL, "bucket/k\n1");
	assert_string_equal(text, "handle bucket/k\\n1");
	assert_string_equal(json_string_value(json_object_get(fields, "handle")), "bucket/k\n1");
	gw_backend_external.describe(fields, text, sizeof(text), NULL, NULL);
	assert_string_equal(text, "handle -");
	assert_true(json_is_null(json_object_get(fields, "handle")));
	gw_backend_external.describe(fields, NULL, 0, NULL, "h");
	assert_string_equal(json_string_value(json_object_get(fields, "handle")), "h");
	json_decref(fields);
}

/* Source files go to the plugin in base64; sources not read from the commit,
 * a handle too long, names that are no plugin's and the default directory
 * are refused before or after the call, each with its reason. */
static void test_sources_handles_and_names(void **state)
{
	(void)state;
	struct gw_backend b;
	char sd[512], got[4096], want[600];
	struct gw_error err;
	struct gw_observed o;
	backend_init(&b, sd, sizeof(sd));
	scripted_plugin();
	struct gw_resource *r = parse_one("apiVersion: gitward/v1\nkind: External\nmetadata: {name: s}\n"
					  "spec:\n  plugin: p\n  sources: [etc/motd]\n");
	assert_non_null(r);
	assert_non_null(r->source_files);
	put("calls", "");
	memset(&o, 0, sizeof(o));
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "spec.sources: not read from the commit");
	take(got, sizeof(got), "calls");
	assert_string_equal(got, "");
	/* as read from the commit */
	snprintf(r->source_files[0].blob, sizeof(r->source_files[0].blob), "%040d", 1);
	r->source_files[0].bytes = gw_bytes_new("hello", 5); /* freed with r */
	r->source_files[0].cipher = gw_bytes_data(r->source_files[0].bytes);
	r->source_files[0].len = 5;
	put("reply.create", OK ", \"handle\": \"h-s\"}");
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), 0);
	gw_observed_clear(&o);
	take(got, sizeof(got), "req.create");
	assert_non_null(strstr(got, "\"sources\":{\"etc/motd\":\"aGVsbG8=\"}"));
	/* the default timeout is recorded when the spec has none */
	snprintf(want, sizeof(want), "%s/external/s.json", sd);
	json_t *rec = gw_record_load(want);
	assert_int_equal(json_integer_value(json_object_get(rec, "timeout_ms")), GW_PLUGIN_TIMEOUT_MS);
	json_decref(rec);

	/* a handle past 64 KiB */
	size_t big = GW_PLUGIN_HANDLE_MAX + 1;
	char *reply = gw_xmalloc(big + 64);
	int k = snprintf(reply, 64, OK ", \"handle\": \"");
	memset(reply + k, 'h', big);
	strcpy(reply + k + big, "\"}");
	put("reply.create", reply);
	free(reply);
	assert_int_equal(gw_backend_external.create(&o, &b, r, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "plugin p create: answered without a \"handle\" of 1 to 65536 bytes");

	/* answers of other wrong shapes */
	static const struct {
		const char *reply, *msg;
		int code;
	} odd[] = {
		{ "{\"protocol\": \"1\", \"ok\": true, \"handle\": \"h\"}",
		  "plugin p create: answered without \"protocol\": 1", -EPROTO },
		{ "{\"protocol\": 1, \"ok\": \"yes\", \"handle\": \"h\"}",
		  "plugin p create: answered without \"ok\": true or false", -EBADMSG },
		{ "{\"protocol\": 1, \"ok\": false, \"error\": 42}", "plugin p create: failed (no error given)", -EIO },
		{ "{\"protocol\": 1, \"ok\": false, \"error\": \"bad\\nline\"}", "plugin p create: bad\\nline", -EIO },
	};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		put("reply.create", odd[i].reply);
		int rc = gw_backend_external.create(&o, &b, r, NULL, &err);
		if (rc != odd[i].code || strcmp(err.msg, odd[i].msg) != 0)
			fail_msg("case %zu: %d \"%s\"", i, rc, err.msg);
	}
	gw_resource_free(r);

	/* names that are not a plugin's, a directory, the default directory */
	json_t *reply_j = NULL;
	json_t *req = json_object();
	assert_int_equal(gw_plugin_call(&reply_j, dir, "", "create", req, 1000, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "plugin \"\": not a plugin name");
	assert_int_equal(gw_plugin_call(&reply_j, dir, ".p", "create", req, 1000, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "plugin \".p\": not a plugin name");
	assert_int_equal(gw_plugin_call(&reply_j, dir, "state", "create", req, 1000, NULL, &err), -ENOENT);
	snprintf(want, sizeof(want), "plugin state: no such plugin in %s (--plugin-dir)", dir);
	assert_string_equal(err.msg, want);
	json_decref(req);
	struct gw_resource *d = parse_one("apiVersion: gitward/v1\nkind: External\nmetadata: {name: d}\n"
					  "spec: {plugin: gw-no-such-plugin}\n");
	assert_non_null(d);
	b.cfg.plugin_dir = NULL;
	assert_int_equal(gw_backend_external.create(&o, &b, d, NULL, &err), -ENOENT);
	/* the build's PREFIX/lib/gitward/plugins */
	assert_int_equal(strncmp(err.msg, "plugin gw-no-such-plugin: no such plugin in /", 45), 0);
	assert_non_null(strstr(err.msg, "/lib/gitward/plugins (--plugin-dir)"));
	gw_resource_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_good_answer_and_the_request_it_got),
		cmocka_unit_test(test_misbehaving_plugins_are_errors_naming_the_problem),
		cmocka_unit_test(test_missing_or_unusable_plugins),
		cmocka_unit_test(test_a_hanging_plugin_is_killed_with_its_children),
		cmocka_unit_test(test_create_refuses_an_answer_without_a_usable_handle),
		cmocka_unit_test(test_create_observe_destroy_through_the_plugin),
		cmocka_unit_test(test_an_unrecordable_create_is_undone),
		cmocka_unit_test(test_a_hanging_observe_is_left_behind_and_killed_at_done),
		cmocka_unit_test(test_describe_shows_the_handle),
		cmocka_unit_test(test_sources_handles_and_names),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
