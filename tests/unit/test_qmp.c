/* QMP message handling against a fake QMP peer on a socketpair: greeting,
 * capabilities, events skipped, errors translated, hostile replies refused,
 * every wait bounded. Replies are the ones QEMU 7.2 sends. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "gitward/qmp.h"

#define GREETING                                                                                                       \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian "       \
	"1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* A scripted peer: for each command line it reads, it writes the next
 * canned reply (which may hold events before the answer). */
struct peer {
	int fd;
	const char *greeting;
	const char *const *replies;
	char seen[8][256];
	int nseen;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	char buf[4096];
	size_t len = 0;
	if (p->greeting && write(p->fd, p->greeting, strlen(p->greeting)) < 0)
		return NULL;
	for (int i = 0; p->replies && p->replies[i]; i++) {
		/* read one line */
		for (;;) {
			char *nl = memchr(buf, '\n', len);
			if (nl) {
				size_t n = (size_t)(nl - buf);
				if (p->nseen < 8)
					snprintf(p->seen[p->nseen++], sizeof(p->seen[0]), "%.*s", (int)n, buf);
				memmove(buf, nl + 1, len - n - 1);
				len -= n + 1;
				break;
			}
			ssize_t r = read(p->fd, buf + len, sizeof(buf) - len);
			if (r <= 0)
				return NULL;
			len += (size_t)r;
		}
		if (!*p->replies[i])
			continue; /* silence: let the client time out */
		if (write(p->fd, p->replies[i], strlen(p->replies[i])) < 0)
			return NULL;
	}
	return NULL;
}

static struct gw_qmp *open_with(struct peer *p, pthread_t *t, int *client_fd, struct gw_error *err, int *rc)
{
	int sv[2];
	struct gw_qmp *q = NULL;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p->fd = sv[1];
	*client_fd = sv[0];
	pthread_create(t, NULL, peer_main, p);
	*rc = gw_qmp_open_fd(&q, sv[0], 30000, err); /* a peer thread: bounded for a loaded machine */
	return q;
}

static void finish(struct peer *p, pthread_t t, struct gw_qmp *q)
{
	gw_qmp_close(q);
	close(p->fd);
	pthread_join(t, NULL);
}

static void test_greeting_capabilities_and_query_status(void **state)
{
	(void)state;
	static const char *const replies[] = {
		"{\"return\": {}}\r\n",
		"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"RESUME\"}\r\n"
		"{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n",
		NULL
	};
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(gw_qmp_version(q), "7.2.22");
	json_t *ret = NULL;
	assert_int_equal(gw_qmp_execute(&ret, q, "query-status", NULL, 30000, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
	assert_true(json_is_true(json_object_get(ret, "running")));
	json_decref(ret);
	finish(&p, t, q);
	assert_string_equal(p.seen[0], "{\"execute\":\"qmp_capabilities\"}");
	assert_string_equal(p.seen[1], "{\"execute\":\"query-status\"}");
}

static void test_error_reply_is_translated(void **state)
{
	(void)state;
	static const char *const replies[] = {
		"{\"return\": {}}\r\n",
		"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\r\n",
		NULL
	};
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	json_t *ret = (json_t *)0x1;
	assert_int_equal(gw_qmp_execute(&ret, q, "nope", NULL, 30000, &err), -EIO);
	assert_ptr_equal(ret, (json_t *)0x1); /* untouched on failure */
	assert_string_equal(err.msg, "QMP nope: CommandNotFound: The command nope has not been found");
	finish(&p, t, q);
}

static void test_arguments_are_sent(void **state)
{
	(void)state;
	static const char *const replies[] = { "{\"return\": {}}\r\n", "{\"return\": {}}\r\n", NULL };
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err;
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	json_t *args = json_pack("{s:s}", "device", "net0");
	assert_int_equal(gw_qmp_execute(NULL, q, "device_del", args, 30000, &err), 0);
	json_decref(args);
	finish(&p, t, q);
	assert_string_equal(p.seen[1], "{\"execute\":\"device_del\",\"arguments\":{\"device\":\"net0\"}}");
}

static void test_not_a_qmp_peer_is_refused(void **state)
{
	(void)state;
	struct peer p = { .greeting = "{\"hello\": 1}\n" };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, -EPROTO);
	assert_null(q);
	assert_non_null(strstr(err.msg, "did not greet as QMP"));
	close(p.fd);
	pthread_join(t, NULL);
}

static void test_garbage_and_silence_fail_in_bounded_time(void **state)
{
	(void)state;
	struct peer p = { .greeting = "not json at all\n" };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, -EPROTO);
	assert_null(q);
	close(p.fd);
	pthread_join(t, NULL);

	static const char *const replies[] = { "{\"return\": {}}\r\n", "", NULL };
	struct peer s = { .greeting = GREETING, .replies = replies };
	q = open_with(&s, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_qmp_execute(NULL, q, "query-status", NULL, 200, &err), -ETIMEDOUT);
	assert_true(gw_monotonic_ms() - t0 < 60000); /* the silence would last until the peer closes */
	assert_non_null(strstr(err.msg, "no answer in time"));
	finish(&s, t, q);
}

static void test_peer_hangup(void **state)
{
	(void)state;
	struct peer p = { .greeting = NULL };
	struct gw_error err = { 0 };
	int sv[2];
	struct gw_qmp *q = NULL;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	(void)p;
	assert_int_equal(gw_qmp_open_fd(&q, sv[0], 1000, &err), -ECONNRESET);
	assert_null(q);
}

static void test_oversized_line_is_refused(void **state)
{
	(void)state;
	int sv[2];
	struct gw_qmp *q = NULL;
	struct gw_error err = { 0 };
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	if (pid == 0) {
		char junk[65536];
		memset(junk, 'x', sizeof(junk));
		for (int i = 0; i < 40; i++)
			if (write(sv[1], junk, sizeof(junk)) < 0)
				break;
		_exit(0);
	}
	close(sv[1]);
	assert_int_equal(gw_qmp_open_fd(&q, sv[0], 30000, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "longer than"));
	kill(pid, 9);
	waitpid(pid, NULL, 0);
}

/* Replies of odd shapes after a good greeting: each refused with its cause. */
static void test_odd_replies_are_errors_naming_the_cause(void **state)
{
	(void)state;
	static const char *const replies[] = {
		"{\"return\": {}}\r\n",
		"{\"error\": {}}\r\n",
		"{\"error\": {\"class\": \"GenericError\"}}\r\n",
		"{\"id\": 1}\r\n",
		"[1, 2]\r\n",
		"{\"return\": [\"ok\"]}\r\n",
		NULL,
	};
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(gw_qmp_execute(NULL, q, "a", NULL, 30000, &err), -EIO);
	assert_string_equal(err.msg, "QMP a: Error: no description");
	assert_int_equal(gw_qmp_execute(NULL, q, "b", NULL, 30000, &err), -EIO);
	assert_string_equal(err.msg, "QMP b: GenericError: no description");
	assert_int_equal(gw_qmp_execute(NULL, q, "c", NULL, 30000, &err), -EPROTO);
	assert_string_equal(err.msg, "QMP c: reply without return or error");
	assert_int_equal(gw_qmp_execute(NULL, q, "d", NULL, 30000, &err), -EPROTO);
	assert_string_equal(err.msg, "d: QMP: unreadable message: not a JSON object");
	/* the connection stays usable after each */
	json_t *ret = NULL;
	assert_int_equal(gw_qmp_execute(&ret, q, "e", NULL, 30000, &err), 0);
	assert_string_equal(json_string_value(json_array_get(ret, 0)), "ok");
	json_decref(ret);
	finish(&p, t, q);
}

static void test_refused_capabilities_fail_the_open(void **state)
{
	(void)state;
	static const char *const replies[] = {
		"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no caps\"}}\r\n", NULL
	};
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, -EIO);
	assert_null(q);
	assert_string_equal(err.msg, "QMP qmp_capabilities: CommandNotFound: no caps");
	close(p.fd);
	pthread_join(t, NULL);
	gw_qmp_close(NULL); /* a no-op */
}

static void test_no_time_left_and_a_gone_peer(void **state)
{
	(void)state;
	static const char *const replies[] = { "{\"return\": {}}\r\n", "", NULL };
	struct peer p = { .greeting = GREETING, .replies = replies };
	struct gw_error err = { 0 };
	pthread_t t;
	int fd, rc;
	struct gw_qmp *q = open_with(&p, &t, &fd, &err, &rc);
	assert_int_equal(rc, 0);
	/* no time at all: refused without waiting */
	assert_int_equal(gw_qmp_execute(NULL, q, "query-status", NULL, 0, &err), -ETIMEDOUT);
	assert_string_equal(err.msg, "query-status: QMP: no answer in time");
	/* the peer goes away: sending fails with the reason */
	close(p.fd);
	pthread_join(t, NULL);
	assert_int_equal(gw_qmp_execute(NULL, q, "query-status", NULL, 30000, &err), -EPIPE);
	assert_string_equal(err.msg, "QMP: send: Broken pipe");
	gw_qmp_close(q);
}

static void test_connect_errors_name_the_socket(void **state)
{
	(void)state;
	struct gw_qmp *q = NULL;
	struct gw_error err = { 0 };
	char longpath[200];
	memset(longpath, 'q', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(gw_qmp_connect(&q, longpath, 1000, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, " is longer than 107 bytes"));
	assert_int_equal(gw_qmp_connect(&q, "/nonexistent/gw-qmp.sock", 1000, &err), -ENOENT);
	assert_string_equal(err.msg, "QMP: connect /nonexistent/gw-qmp.sock: No such file or directory");
	assert_null(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_capabilities_and_query_status),
		cmocka_unit_test(test_error_reply_is_translated),
		cmocka_unit_test(test_arguments_are_sent),
		cmocka_unit_test(test_not_a_qmp_peer_is_refused),
		cmocka_unit_test(test_garbage_and_silence_fail_in_bounded_time),
		cmocka_unit_test(test_peer_hangup),
		cmocka_unit_test(test_oversized_line_is_refused),
		cmocka_unit_test(test_odd_replies_are_errors_naming_the_cause),
		cmocka_unit_test(test_refused_capabilities_fail_the_open),
		cmocka_unit_test(test_no_time_left_and_a_gone_peer),
		cmocka_unit_test(test_connect_errors_name_the_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
