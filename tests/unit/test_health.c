#define _GNU_SOURCE
/* Health probes from the host (lib/apply/health.c): HTTP status classes,
 * refused and silent peers, TCP connect (refused, timed out, cancelled,
 * unresolvable, [v6]), and commands: exit status, death by a signal, the
 * clean environment, timeout and cancel, a program that does not exist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/apply.h"
#include "gitward/backend.h"
#include "gitward/util.h"
#include "helpers.h"

/* ---- a one-connection-at-a-time HTTP server on a port it bound itself ---- */

struct server {
	int fd;
	int port;
	const char *reply; /* NULL: read the request, answer nothing until closed */
	pthread_t thread;
	int served;
	char first_line[128];
	volatile int stop;
};

static void *serve(void *arg)
{
	struct server *s = arg;
	while (!s->stop) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			break;
		char buf[4096];
		ssize_t n = read(c, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			if (!s->first_line[0])
				snprintf(s->first_line, sizeof(s->first_line), "%.*s", (int)strcspn(buf, "\r\n"), buf);
		}
		if (s->reply) {
			ssize_t w = write(c, s->reply, strlen(s->reply));
			(void)w;
		} else {
			while (!s->stop && read(c, buf, sizeof(buf)) > 0)
				;
		}
		s->served++;
		close(c);
	}
	return NULL;
}

static int listen_any(struct sockaddr_in *a, int backlog)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
	return fd;
}

static void server_start(struct server *s, const char *reply)
{
	struct sockaddr_in a;
	memset(s, 0, sizeof(*s));
	s->fd = listen_any(&a, 16);
	s->port = ntohs(a.sin_port);
	s->reply = reply;
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
	s->stop = 1;
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* A Process with this health check, probed without a backend: the host
 * runs exec checks itself (the fallback of a backend without an exec probe). */
static int probe(const char *check, const struct gw_cancel *cancel, struct gw_error *err)
{
	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: p}\nspec:\n  command: [/bin/true]\n"
		 "  healthCheck:\n    %s\n",
		 check);
	struct gw_resource *r = parse_one(yaml);
	assert_non_null(r);
	struct gw_observed o;
	memset(&o, 0, sizeof(o));
	memset(err, 0, sizeof(*err));
	int rc = gw_health_probe(&o, r, NULL, cancel, err); /* no backend: the host runs exec checks */
	gw_resource_free(r);
	return rc;
}

/* ---- HTTP ---- */

static void test_http_2xx_and_3xx_are_healthy_4xx_5xx_not(void **state)
{
	(void)state;
	static const struct {
		const char *reply;
		int rc;
		const char *msg;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n", 0, "" },
		{ "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 0, "" },
		{ "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, "" },
		{ "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", -EIO, "HTTP 404" },
		{ "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", -EIO, "HTTP 503" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct server s;
		struct gw_error err;
		char check[256], want[300];
		server_start(&s, cases[i].reply);
		snprintf(check, sizeof(check), "http: {url: \"http://127.0.0.1:%d/healthz\"}", s.port);
		assert_int_equal(probe(check, NULL, &err), cases[i].rc);
		if (cases[i].rc) {
			snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/healthz: %s", s.port, cases[i].msg);
			assert_string_equal(err.msg, want);
		}
		server_stop(&s);
		assert_int_equal(s.served, 1); /* one GET, a redirect not followed */
		assert_string_equal(s.first_line, "GET /healthz HTTP/1.1");
	}
}

static void test_http_refused_silent_and_cancelled(void **state)
{
	(void)state;
	struct sockaddr_in a;
	struct gw_error err;
	char check[256], want[300];
	int closed = listen_any(&a, -1); /* bound, not listening: refused */
	snprintf(check, sizeof(check), "http: {url: \"http://127.0.0.1:%d/\"}", ntohs(a.sin_port));
	assert_int_equal(probe(check, NULL, &err), -EIO);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/: ", ntohs(a.sin_port));
	assert_memory_equal(err.msg, want, strlen(want));
	assert_non_null(strstr(err.msg, "onnect"));
	close(closed);

	/* a server that never answers: the check's timeout ends the GET (the
	 * upper bounds here only tell a working timeout or stop request from
	 * none: wide enough for a loaded machine running ASan) */
	struct server s;
	server_start(&s, NULL);
	snprintf(check, sizeof(check), "http: {url: \"http://127.0.0.1:%d/\"}\n    timeout: 300ms", s.port);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(probe(check, NULL, &err), -EIO);
	int64_t took = gw_monotonic_ms() - t0;
	assert_true(took >= 250 && took < 60000);
	assert_non_null(strstr(err.msg, "imed out"));
	/* a stop request abandons it, long before its 10 minutes */
	struct gw_cancel cancel = { 0 };
	gw_cancel_request(&cancel);
	snprintf(check, sizeof(check), "http: {url: \"http://127.0.0.1:%d/\"}\n    timeout: 10m", s.port);
	t0 = gw_monotonic_ms();
	assert_int_equal(probe(check, &cancel, &err), -ECANCELED);
	assert_true(gw_monotonic_ms() - t0 < 60000);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/: abandoned, the agent is stopping", s.port);
	assert_string_equal(err.msg, want);
	server_stop(&s);
}

/* ---- TCP ---- */

static void test_tcp_listening_refused_and_unresolvable(void **state)
{
	(void)state;
	struct sockaddr_in a;
	struct gw_error err;
	char check[256], want[300];
	int l = listen_any(&a, 4);
	snprintf(check, sizeof(check), "tcp: {address: \"127.0.0.1:%d\"}", ntohs(a.sin_port));
	assert_int_equal(probe(check, NULL, &err), 0);
	close(l);
	l = listen_any(&a, -1);
	snprintf(check, sizeof(check), "tcp: {address: \"127.0.0.1:%d\"}", ntohs(a.sin_port));
	assert_int_equal(probe(check, NULL, &err), -ECONNREFUSED);
	snprintf(want, sizeof(want), "tcp 127.0.0.1:%d: Connection refused", ntohs(a.sin_port));
	assert_string_equal(err.msg, want);
	close(l);
	assert_int_equal(probe("tcp: {address: \"no-such-host.invalid:80\"}", NULL, &err), -EHOSTUNREACH);
	assert_string_equal(err.msg, "tcp no-such-host.invalid:80: cannot resolve");
}

static void test_tcp_bracketed_ipv6(void **state)
{
	(void)state;
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t len = sizeof(a);
	struct gw_error err;
	char check[256];
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		skip(); /* no IPv6 loopback in this sandbox */
	}
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	snprintf(check, sizeof(check), "tcp: {address: \"[::1]:%d\"}", ntohs(a.sin6_port));
	assert_int_equal(probe(check, NULL, &err), 0);
	close(fd);
}

/* A peer whose accept queue is full: the SYN goes unanswered and the
 * connect stays in progress until the timeout, or a stop request. */
static void test_tcp_timeout_and_cancel_on_a_full_backlog(void **state)
{
	(void)state;
	struct sockaddr_in a;
	struct gw_error err;
	char check[256], want[300];
	int l = listen_any(&a, 0), fill[8], nfill = 0;
	/* fill the queue: connects that complete but are never accepted */
	for (; nfill < 8; nfill++) {
		fill[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(fill[nfill], (struct sockaddr *)&a, sizeof(a)) < 0 && errno == EINPROGRESS) {
			nfill++;
			break;
		}
	}
	snprintf(check, sizeof(check), "tcp: {address: \"127.0.0.1:%d\"}\n    timeout: 300ms", ntohs(a.sin_port));
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(probe(check, NULL, &err), -ETIMEDOUT);
	int64_t took = gw_monotonic_ms() - t0;
	assert_true(took >= 290 && took < 60000); /* bounded; wide for a loaded machine */
	snprintf(want, sizeof(want), "tcp 127.0.0.1:%d: Connection timed out", ntohs(a.sin_port));
	assert_string_equal(err.msg, want);

	struct gw_cancel cancel = { 0 };
	gw_cancel_request(&cancel);
	/* a stop request ends it long before its 10 minutes */
	snprintf(check, sizeof(check), "tcp: {address: \"127.0.0.1:%d\"}\n    timeout: 10m", ntohs(a.sin_port));
	t0 = gw_monotonic_ms();
	assert_int_equal(probe(check, &cancel, &err), -ECANCELED);
	assert_true(gw_monotonic_ms() - t0 < 60000);
	snprintf(want, sizeof(want), "tcp 127.0.0.1:%d: abandoned, the agent is stopping", ntohs(a.sin_port));
	assert_string_equal(err.msg, want);
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(l);
}

/* ---- commands ---- */

static void test_exec_status_signal_and_missing_program(void **state)
{
	(void)state;
	struct gw_error err;
	assert_int_equal(probe("exec: {command: [/bin/true]}", NULL, &err), 0);
	assert_int_equal(probe("exec: {command: [/bin/sh, -c, \"exit 3\"]}", NULL, &err), -EIO);
	assert_string_equal(err.msg, "/bin/sh exited with status 3");
	assert_int_equal(probe("exec: {command: [/bin/sh, -c, \"kill -9 $$\"]}", NULL, &err), -EIO);
	assert_string_equal(err.msg, "/bin/sh exited with status 137");
	assert_int_equal(probe("exec: {command: [/nonexistent/check]}", NULL, &err), -ENOENT);
	assert_string_equal(err.msg, "exec /nonexistent/check: No such file or directory");
}

static void test_run_command_clean_environment_and_null_stdio(void **state)
{
	(void)state;
	struct gw_error err;
	int status = -1;
	setenv("GW_TEST_SECRET", "leak", 1);
	/* exactly PATH in the environment; stdin reads nothing */
	char *const argv[] = { "/bin/sh", "-c",
			       "test \"$(env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=')\" = "
			       "\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\" && "
			       "test -z \"$(cat)\"",
			       NULL };
	assert_int_equal(gw_run_command(&status, argv, 60000, &err), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	unsetenv("GW_TEST_SECRET");
}

static void test_run_command_timeout_kills_the_group(void **state)
{
	(void)state;
	struct gw_error err;
	int status = -1, p[2];
	assert_int_equal(pipe(p), 0);
	/* a child in the command's group: killed with it, its pipe end closes.
	 * Sleeps of 5 minutes: the bounds below tell the kill from their end,
	 * with room for a loaded machine */
	char arg[64];
	snprintf(arg, sizeof(arg), "sleep 300 >&%d & exec sleep 300", p[1]);
	char *const argv[] = { "/bin/sh", "-c", arg, NULL };
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_run_command(&status, argv, 200, &err), -ETIMEDOUT);
	assert_true(gw_monotonic_ms() - t0 < 60000);
	assert_string_equal(err.msg, "/bin/sh: timed out after 200ms");
	/* the background sleep held the write end: end of file once it is gone too */
	close(p[1]);
	struct pollfd pf = { .fd = p[0], .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 60000), 1);
	char c;
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
}

static void *cancel_later(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	gw_cancel_request(arg);
	return NULL;
}

static void test_run_command_cancel(void **state)
{
	(void)state;
	struct gw_error err;
	struct gw_cancel cancel = { 0 };
	int status = -1;
	pthread_t t;
	char *const argv[] = { "/bin/sleep", "300", NULL };
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &cancel), 0);
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_run_command_cancel(&status, argv, 600000, &cancel, &err), -ECANCELED);
	int64_t took = gw_monotonic_ms() - t0;
	pthread_join(t, NULL);
	assert_true(took >= 150 && took < 60000); /* the stop request, not the 5-minute sleep */
	assert_string_equal(err.msg, "/bin/sleep: abandoned, the agent is stopping");
}

static void test_no_check_is_healthy(void **state)
{
	(void)state;
	struct gw_resource *r = parse_one("apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d}\n");
	struct gw_observed o;
	struct gw_error err;
	assert_non_null(r);
	memset(&o, 0, sizeof(o));
	assert_int_equal(gw_health_probe(&o, r, NULL, NULL, &err), 0);
	gw_resource_free(r);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_2xx_and_3xx_are_healthy_4xx_5xx_not),
		cmocka_unit_test(test_http_refused_silent_and_cancelled),
		cmocka_unit_test(test_tcp_listening_refused_and_unresolvable),
		cmocka_unit_test(test_tcp_bracketed_ipv6),
		cmocka_unit_test(test_tcp_timeout_and_cancel_on_a_full_backlog),
		cmocka_unit_test(test_exec_status_signal_and_missing_program),
		cmocka_unit_test(test_run_command_clean_environment_and_null_stdio),
		cmocka_unit_test(test_run_command_timeout_kills_the_group),
		cmocka_unit_test(test_run_command_cancel),
		cmocka_unit_test(test_no_check_is_healthy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
