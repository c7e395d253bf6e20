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

#include "gitward/external.h"

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
	int rc = gw_plugin_call(reply, dir, name, "create", req, timeout_ms, &err);
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
	assert_int_equal(call(&reply, msg, sizeof(msg), "good", 5000), 0);
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
	{ "huge", "head -c 2000000 /dev/zero | tr '\\0' ' '; echo '{\"protocol\": 1, \"ok\": true}'", -EMSGSIZE,
	  "plugin huge create: answered more than 1048576 bytes" },
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
		int rc = call(&reply, msg, sizeof(msg), bad[i].name, 10000);
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
	snprintf(body, sizeof(body), "sleep 60 & echo $! > %s/child.pid\necho $$ > %s/self.pid\nexec sleep 60", dir,
		 dir);
	plugin("hang", body);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(call(&reply, msg, sizeof(msg), "hang", 300), -ETIMEDOUT);
	int64_t took = gw_monotonic_ms() - t0;
	assert_string_equal(msg, "plugin hang create: no answer within 300ms (spec.timeout): killed");
	assert_true(took >= 300 && took < 5000);
	long self = read_pid("self.pid"), child = read_pid("child.pid");
	assert_true(self > 1 && child > 1);
	/* the plugin was reaped (no zombie left: kill finds nothing) ... */
	assert_int_equal(kill((pid_t)self, 0), -1);
	assert_int_equal(errno, ESRCH);
	/* ... and its background child, in its process group, was killed: it is
	 * gone once init reaps it */
	int64_t deadline = gw_monotonic_ms() + 5000;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_good_answer_and_the_request_it_got),
		cmocka_unit_test(test_misbehaving_plugins_are_errors_naming_the_problem),
		cmocka_unit_test(test_missing_or_unusable_plugins),
		cmocka_unit_test(test_a_hanging_plugin_is_killed_with_its_children),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
