/* The FleetLock client (lib/pass/fleetlock.c) against a one-request HTTP
 * server in a thread on 127.0.0.1: the request Zincati's protocol asks
 * for (path, header, body), 200 granted, another status refused with the
 * server's kind and value, credentials kept out of messages, an answer
 * larger than the bound, a server that never answers given up at the
 * timeout or at once on a stop request, and the counts per op and result. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gitward/fleetlock.h"

/* One connection: the request is read whole, then answered with status
 * and body (status 0: never answered, held open until the test ends). */
struct server {
	int fd, port;
	int status;
	const char *body;
	size_t body_len;
	char request[8192];
	size_t request_len;
	int hold_fd;
	pthread_t th;
};

static void read_request(struct server *s, int c)
{
	size_t need = 0;
	while (s->request_len < sizeof(s->request) - 1) {
		ssize_t n = read(c, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len);
		if (n <= 0)
			break;
		s->request_len += (size_t)n;
		s->request[s->request_len] = '\0';
		char *end = strstr(s->request, "\r\n\r\n");
		char *cl = strcasestr(s->request, "content-length:");
		if (end && cl)
			need = (size_t)(end + 4 - s->request) + strtoul(cl + 15, NULL, 10);
		if (end && need && s->request_len >= need)
			break;
	}
}

static void *serve(void *arg)
{
	struct server *s = arg;
	int c = accept(s->fd, NULL, NULL);
	if (c < 0)
		return NULL;
	read_request(s, c);
	if (!s->status) {
		s->hold_fd = c;
		return NULL;
	}
	char head[256];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 s->status, s->body_len);
	if (write(c, head, (size_t)n) < 0 || (s->body_len && write(c, s->body, s->body_len) < 0))
		fprintf(stderr, "write failed\n");
	close(c);
	return NULL;
}

static void server_start(struct server *s, int status, const char *body, size_t body_len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	memset(s, 0, sizeof(*s));
	s->hold_fd = -1;
	s->status = status;
	s->body = body;
	s->body_len = body_len;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->fd, 4), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
	pthread_join(s->th, NULL);
	if (s->hold_fd >= 0)
		close(s->hold_fd);
	close(s->fd);
}

static void opts_for(struct gw_fleetlock_opts *o, char *url, size_t size, const struct server *s, const char *user,
		     struct gw_fleetlock_counts *counts)
{
	snprintf(url, size, "http://%s127.0.0.1:%d/lock/", user, s->port);
	*o = (struct gw_fleetlock_opts){ .url = url, .group = "db", .timeout_ms = 60000, .counts = counts };
}

static void test_granted_request_follows_the_protocol(void **state)
{
	(void)state;
	struct server s;
	struct gw_fleetlock_opts o;
	struct gw_fleetlock_counts counts = { 0 };
	struct gw_error err = { 0 };
	enum gw_fleetlock_result r = GW_FLEETLOCK_ERROR;
	char url[128];

	server_start(&s, 200, "", 0);
	opts_for(&o, url, sizeof(url), &s, "", &counts);
	assert_int_equal(gw_fleetlock_request(&r, &o, GW_FLEETLOCK_STEADY_STATE, "n1", NULL, &err), 0);
	server_stop(&s);
	assert_int_equal(r, GW_FLEETLOCK_GRANTED);
	static const char line[] = "POST /lock/v1/steady-state HTTP/1.1\r\n";
	assert_true(!strncmp(s.request, line, sizeof(line) - 1));
	assert_non_null(strcasestr(s.request, "\r\nfleet-lock-protocol: true\r\n"));
	json_t *body = json_loads(strstr(s.request, "\r\n\r\n") + 4, 0, NULL);
	assert_non_null(body);
	json_t *p = json_object_get(body, "client_params");
	assert_string_equal(json_string_value(json_object_get(p, "id")), "n1");
	assert_string_equal(json_string_value(json_object_get(p, "group")), "db");
	json_decref(body);
	assert_int_equal(counts.n[GW_FLEETLOCK_STEADY_STATE][GW_FLEETLOCK_GRANTED], 1);
	assert_int_equal(counts.n[GW_FLEETLOCK_PRE_REBOOT][GW_FLEETLOCK_GRANTED], 0);
}

static void test_refused_names_status_and_kind_without_credentials(void **state)
{
	(void)state;
	static const char doc[] = "{\"kind\": \"failed_lock\", \"value\": \"semaphore full\"}";
	struct server s;
	struct gw_fleetlock_opts o;
	struct gw_fleetlock_counts counts = { 0 };
	struct gw_error err = { 0 };
	enum gw_fleetlock_result r = GW_FLEETLOCK_GRANTED;
	char url[128];

	server_start(&s, 409, doc, sizeof(doc) - 1);
	opts_for(&o, url, sizeof(url), &s, "ops:s3cret@", &counts);
	assert_int_equal(gw_fleetlock_request(&r, &o, GW_FLEETLOCK_PRE_REBOOT, "n1", NULL, &err), -EAGAIN);
	server_stop(&s);
	assert_int_equal(r, GW_FLEETLOCK_REFUSED);
	assert_int_equal(err.code, -EAGAIN);
	assert_non_null(strstr(err.msg, "fleet lock pre-reboot at http://"));
	assert_non_null(strstr(err.msg, "HTTP 409: failed_lock (semaphore full)"));
	assert_null(strstr(err.msg, "s3cret"));
	assert_int_equal(counts.n[GW_FLEETLOCK_PRE_REBOOT][GW_FLEETLOCK_REFUSED], 1);
}

static void test_an_answer_over_the_bound_is_read_no_further(void **state)
{
	(void)state;
	size_t big = 1 << 20;
	char *body = malloc(big);
	struct server s;
	struct gw_fleetlock_opts o;
	struct gw_error err = { 0 };
	enum gw_fleetlock_result r;
	char url[128];

	memset(body, 'x', big);
	server_start(&s, 500, body, big);
	opts_for(&o, url, sizeof(url), &s, "", NULL);
	assert_int_equal(gw_fleetlock_request(&r, &o, GW_FLEETLOCK_PRE_REBOOT, "n1", NULL, &err), -EAGAIN);
	server_stop(&s);
	free(body);
	assert_int_equal(r, GW_FLEETLOCK_REFUSED);
	assert_non_null(strstr(err.msg, "HTTP 500"));
	assert_null(strstr(err.msg, "xxx"));
}

static void test_a_server_that_never_answers_ends_at_the_timeout(void **state)
{
	(void)state;
	struct server s;
	struct gw_fleetlock_opts o;
	struct gw_fleetlock_counts counts = { 0 };
	struct gw_error err = { 0 };
	enum gw_fleetlock_result r;
	char url[128];

	server_start(&s, 0, NULL, 0);
	opts_for(&o, url, sizeof(url), &s, "", &counts);
	o.timeout_ms = 300;
	assert_int_equal(gw_fleetlock_request(&r, &o, GW_FLEETLOCK_PRE_REBOOT, "n1", NULL, &err), -EIO);
	server_stop(&s);
	assert_int_equal(r, GW_FLEETLOCK_ERROR);
	assert_non_null(strstr(err.msg, "fleet lock pre-reboot at http://127.0.0.1:"));
	assert_int_equal(counts.n[GW_FLEETLOCK_PRE_REBOOT][GW_FLEETLOCK_ERROR], 1);
}

static void *cancel_soon(void *arg)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 200000000L };
	nanosleep(&ts, NULL);
	gw_cancel_request(arg);
	return NULL;
}

/* The timeout is an hour: only the stop request can end it, and it says
 * -ECANCELED (a timeout says -EIO). */
static void test_a_stop_request_ends_a_hung_request(void **state)
{
	(void)state;
	struct server s;
	struct gw_fleetlock_opts o;
	struct gw_cancel cancel = { 0 };
	struct gw_error err = { 0 };
	enum gw_fleetlock_result r;
	pthread_t th;
	char url[128];

	server_start(&s, 0, NULL, 0);
	opts_for(&o, url, sizeof(url), &s, "", NULL);
	o.timeout_ms = 3600000;
	assert_int_equal(pthread_create(&th, NULL, cancel_soon, &cancel), 0);
	assert_int_equal(gw_fleetlock_request(&r, &o, GW_FLEETLOCK_PRE_REBOOT, "n1", &cancel, &err), -ECANCELED);
	pthread_join(th, NULL);
	server_stop(&s);
	assert_int_equal(r, GW_FLEETLOCK_ERROR);
	assert_non_null(strstr(err.msg, "stopped"));
}

static void test_the_marker_is_written_and_removed(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-fleetlock-XXXXXX";
	struct gw_error err = { 0 };
	assert_non_null(mkdtemp(dir));
	assert_false(gw_fleetlock_marked(dir));
	assert_int_equal(gw_fleetlock_mark(dir, true, &err), 0);
	assert_true(gw_fleetlock_marked(dir));
	assert_int_equal(gw_fleetlock_mark(dir, false, &err), 0);
	assert_false(gw_fleetlock_marked(dir));
	assert_int_equal(gw_fleetlock_mark(dir, false, &err), 0); /* already gone: fine */
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_granted_request_follows_the_protocol),
		cmocka_unit_test(test_refused_names_status_and_kind_without_credentials),
		cmocka_unit_test(test_an_answer_over_the_bound_is_read_no_further),
		cmocka_unit_test(test_a_server_that_never_answers_ends_at_the_timeout),
		cmocka_unit_test(test_a_stop_request_ends_a_hung_request),
		cmocka_unit_test(test_the_marker_is_written_and_removed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
