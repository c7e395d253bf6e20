/* The Engine API client against a fake engine on a unix socket: version
 * negotiation (from /_ping's Api-Version header, else /version), too-old
 * engines refused, the engine's own error messages kept, an unreachable
 * socket named, a call in flight abandoned on a stop request. */
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/engine.h"

/* One canned reply per request path prefix. */
struct route {
	const char *path;
	const char *reply; /* full HTTP response */
};

struct fake {
	int lfd;
	char sock[108];
	const struct route *routes;
	char seen[16][256];
	int nseen;
	pthread_t t;
};

static void *serve(void *arg)
{
	struct fake *f = arg;
	for (;;) {
		int c = accept(f->lfd, NULL, NULL);
		if (c < 0)
			return NULL;
		char req[8192];
		ssize_t n = 0, r;
		while ((r = read(c, req + n, sizeof(req) - 1 - (size_t)n)) > 0) {
			n += r;
			req[n] = '\0';
			char *end = strstr(req, "\r\n\r\n");
			if (end) {
				char *cl = strcasestr(req, "Content-Length:");
				size_t body = cl ? (size_t)atoi(cl + 15) : 0;
				if ((size_t)(n - (end + 4 - req)) >= body)
					break;
			}
		}
		char method[16] = "", path[200] = "";
		sscanf(req, "%15s %199s", method, path);
		if (f->nseen < 16)
			snprintf(f->seen[f->nseen++], sizeof(f->seen[0]), "%s %s", method, path);
		const char *reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		for (const struct route *rt = f->routes; rt->path; rt++)
			if (!strncmp(path, rt->path, strlen(rt->path))) {
				reply = rt->reply;
				break;
			}
		if (write(c, reply, strlen(reply)) < 0) {
		}
		close(c);
	}
}

static void start(struct fake *f, const struct route *routes)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memset(f, 0, sizeof(*f));
	snprintf(f->sock, sizeof(f->sock), "/tmp/gw-fake-engine-%d.sock", (int)getpid());
	unlink(f->sock);
	strcpy(a.sun_path, f->sock);
	f->routes = routes;
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	pthread_create(&f->t, NULL, serve, f);
}

static void stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	close(f->lfd);
	pthread_join(f->t, NULL);
	unlink(f->sock);
}

#define OK_JSON(body) "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " #body "\r\n\r\n"

static void test_negotiates_from_ping_header(void **state)
{
	(void)state;
	static const struct route routes[] = {
		{ "/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK" },
		{ "/v1.43/containers/json", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]" },
		{ 0 }
	};
	struct fake f;
	struct gw_engine e;
	struct gw_error err;
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, "1.43");
	json_t *out = NULL;
	long status = 0;
	assert_int_equal(gw_engine_call(&out, &status, &e, "GET", "/containers/json", NULL, 30000, &err), 0);
	assert_int_equal(status, 200);
	assert_true(json_is_array(out));
	json_decref(out);
	stop(&f);
	assert_string_equal(f.seen[0], "GET /_ping");
	assert_string_equal(f.seen[1], "GET /v1.43/containers/json");
}

static void test_falls_back_to_version_and_refuses_old_engines(void **state)
{
	(void)state;
	static const char version_new[] = "{\"ApiVersion\":\"1.45\",\"MinAPIVersion\":\"1.42\"}";
	char reply[256];
	snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(version_new),
		 version_new);
	const struct route routes[] = { { "/_ping", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK" },
					{ "/version", reply },
					{ 0 } };
	struct fake f;
	struct gw_engine e;
	struct gw_error err = { 0 };
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, "1.45");
	stop(&f);
	assert_string_equal(f.seen[1], "GET /version");

	static const char version_old[] = "{\"ApiVersion\":\"1.30\",\"MinAPIVersion\":\"1.12\"}";
	snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(version_old),
		 version_old);
	start(&f, routes);
	memset(&e, 0x5a, sizeof(e));
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "speaks API 1.30; gitward needs 1.41 or later"));
	assert_int_equal((unsigned char)e.socket[0], 0x5a); /* untouched on failure */
	stop(&f);
}

/* The /version reply of a real Podman 4.3.1 (recorded in unit/data): its
 * ApiVersion 1.41 is what gitward speaks, and its MinAPIVersion (Podman's
 * own 4.0.0, not an Engine API version) refuses nothing. */
static void test_negotiates_with_a_recorded_podman_version_reply(void **state)
{
	(void)state;
	char body[8192], reply[8400];
	FILE *fp = fopen(GW_TEST_DATA "/podman-version.json", "r");
	assert_non_null(fp);
	size_t n = fread(body, 1, sizeof(body) - 1, fp);
	fclose(fp);
	assert_true(n > 0 && n < sizeof(body) - 1);
	body[n] = '\0';
	snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", n, body);
	const struct route routes[] = { { "/_ping", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK" },
					{ "/version", reply },
					{ 0 } };
	struct fake f;
	struct gw_engine e;
	struct gw_error err = { 0 };
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, "1.41");
	stop(&f);
	assert_string_equal(f.seen[1], "GET /version");
}

static void test_newer_engines_are_capped_and_too_new_minimums_refused(void **state)
{
	(void)state;
	static const char v[] = "{\"ApiVersion\":\"1.52\",\"MinAPIVersion\":\"1.50\"}";
	char reply[256];
	snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(v), v);
	const struct route routes[] = {
		{ "/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 1.52\r\nContent-Length: 0\r\n\r\n" }, { 0 }
	};
	const struct route routes2[] = { { "/_ping", "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n" },
					 { "/version", reply },
					 { 0 } };
	struct fake f;
	struct gw_engine e;
	struct gw_error err = { 0 };
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, GW_ENGINE_API_MAX);
	stop(&f);
	start(&f, routes2);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "needs API 1.50 or later"));
	stop(&f);
}

static void test_engine_errors_keep_their_message(void **state)
{
	(void)state;
	static const char body[] = "{\"cause\":\"no such container\",\"message\":\"no container with name or ID "
				   "\\\"x\\\" found: no such container\",\"response\":404}";
	char reply[512];
	snprintf(reply, sizeof(reply), "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
	const struct route routes[] = { { "/_ping",
					  "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 0\r\n\r\n" },
					{ "/v1.41/containers/x/json", reply },
					{ 0 } };
	struct fake f;
	struct gw_engine e;
	struct gw_error err;
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	json_t *out = NULL;
	long status = 0;
	assert_int_equal(gw_engine_call(&out, &status, &e, "GET", "/containers/x/json", NULL, 30000, &err), 0);
	assert_int_equal(status, 404);
	assert_string_equal(gw_engine_message(out), "no container with name or ID \"x\" found: no such container");
	json_decref(out);
	stop(&f);
}

static void test_unreachable_socket_is_named(void **state)
{
	(void)state;
	struct gw_engine e;
	struct gw_error err = { 0 };
	assert_int_equal(gw_engine_connect(&e, "/tmp/gw-no-such-engine.sock", 30000, &err), -ECONNREFUSED);
	assert_string_equal(err.msg,
			    "container engine at /tmp/gw-no-such-engine.sock is unreachable (Couldn't connect "
			    "to server)");
}

struct later {
	struct gw_cancel *c;
	int ms;
};

static void *request_later(void *arg)
{
	struct later *l = arg;
	usleep((useconds_t)l->ms * 1000);
	gw_cancel_request(l->c);
	return NULL;
}

static void test_a_stop_request_abandons_a_call_in_flight(void **state)
{
	(void)state;
	/* an engine that takes the request and never answers (a long stop) */
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "/tmp/gw-mute-engine-%d.sock", (int)getpid());
	unlink(a.sun_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	struct gw_cancel c = { 0 };
	struct gw_engine e = { .cancel = &c };
	snprintf(e.socket, sizeof(e.socket), "%s", a.sun_path);
	strcpy(e.version, "1.43");
	struct later l = { .c = &c, .ms = 200 };
	pthread_t t;
	pthread_create(&t, NULL, request_later, &l);
	json_t *out = NULL;
	long status = 0;
	struct gw_error err;
	int64_t t0 = gw_monotonic_ms();
	assert_int_equal(gw_engine_call(&out, &status, &e, "POST", "/containers/x/stop?t=3600", NULL, 3600000, &err),
			 -ECANCELED);
	assert_true(gw_monotonic_ms() - t0 < 60000); /* the stop request, not the hour: a loaded machine's margin */
	assert_non_null(strstr(err.msg, "POST abandoned: the agent is stopping"));
	assert_null(out);
	pthread_join(t, NULL);
	close(lfd);
	unlink(a.sun_path);
}

static void test_messages_and_default_sockets(void **state)
{
	(void)state;
	json_t *j = json_pack("{s:s}", "cause", "only a cause");
	assert_string_equal(gw_engine_message(j), "only a cause");
	json_decref(j);
	j = json_pack("{s:i}", "message", 3);
	assert_string_equal(gw_engine_message(j), "no message");
	json_decref(j);
	assert_string_equal(gw_engine_message(NULL), "no message");
	assert_string_equal(gw_engine_default_socket("/x/e.sock"), "/x/e.sock");
	const char *d = gw_engine_default_socket("");
	assert_true(!strcmp(d, "/run/podman/podman.sock") || !strcmp(d, "/var/run/docker.sock"));
	assert_string_equal(gw_engine_default_socket(NULL), d);
}

/* Bodies of every shape, methods with and without a body, a header with
 * odd spacing, a /version that fails, a reply that is not HTTP. */
static void test_bodies_methods_and_broken_replies(void **state)
{
	(void)state;
	const struct route routes[] = {
		{ "/_ping", "HTTP/1.1 200 OK\r\napi-version:    1.43-dev\r\nContent-Length: 0\r\n\r\n" },
		{ "/v1.43/text", "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"a\":1}\n{\"b\":2}\n" },
		{ "/v1.43/empty", "HTTP/1.1 204 No Content\r\n\r\n" },
		{ "/v1.43/post", "HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":7}\n" },
		{ "/v1.43/bad", "this is not HTTP at all\r\n\r\n" },
		{ 0 },
	};
	struct fake f;
	struct gw_engine e;
	struct gw_error err;
	json_t *out = NULL;
	long status = 0;
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, "1.43");
	/* several JSON objects: kept as text */
	assert_int_equal(gw_engine_call(&out, &status, &e, "GET", "/text", NULL, 30000, &err), 0);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(out, "stream")), "{\"a\":1}\n{\"b\":2}\n");
	json_decref(out);
	assert_int_equal(gw_engine_call(&out, &status, &e, "DELETE", "/empty", NULL, 30000, &err), 0);
	assert_int_equal(status, 204);
	assert_null(out);
	assert_int_equal(gw_engine_call(&out, &status, &e, "POST", "/post/start", NULL, 30000, &err), 0);
	assert_int_equal(status, 201);
	assert_int_equal(json_integer_value(json_object_get(out, "Id")), 7);
	json_decref(out);
	json_t *body = json_pack("{s:s}", "Image", "busybox");
	assert_int_equal(gw_engine_call(&out, &status, &e, "POST", "/post/create", body, 30000, &err), 0);
	json_decref(body);
	json_decref(out);
	assert_int_equal(gw_engine_call(&out, &status, &e, "GET", "/bad", NULL, 30000, &err), -EIO);
	char want[300];
	snprintf(want, sizeof(want), "container engine at %s: GET /v1.43/bad: ", f.sock);
	assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
	assert_true(strlen(err.msg) > strlen(want)); /* and curl's reason */
	stop(&f);
	assert_string_equal(f.seen[3], "POST /v1.43/post/start");
	assert_string_equal(f.seen[4], "POST /v1.43/post/create");

	/* no Api-Version header and a failing /version: refused, the status named */
	const struct route broken[] = {
		{ "/_ping", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" },
		{ "/version", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}" },
		{ 0 },
	};
	start(&f, broken);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), -EPROTO);
	snprintf(want, sizeof(want), "container engine at %s: /version answered HTTP 500 without ApiVersion", f.sock);
	assert_string_equal(err.msg, want);
	stop(&f);
	/* an engine of API 2.0: spoken to at the newest we know */
	const struct route two[] = { { "/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 2.0\r\nContent-Length: 0\r\n\r\n" },
				     { 0 } };
	start(&f, two);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	assert_string_equal(e.version, GW_ENGINE_API_MAX);
	stop(&f);
	/* and one of API 0.99: too old */
	const struct route old[] = { { "/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 0.99\r\nContent-Length: 0\r\n\r\n" },
				     { 0 } };
	start(&f, old);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "speaks API 0.99; gitward needs 1.41 or later"));
	stop(&f);
}

struct lines {
	char v[4][64];
	int n, stop_at;
};

static int on_line(const char *line, size_t len, void *ud)
{
	struct lines *l = ud;
	if (l->n < 4)
		snprintf(l->v[l->n], sizeof(l->v[0]), "%.*s", (int)len, line);
	l->n++;
	return l->n == l->stop_at ? -1 : 0;
}

static void test_event_stream_lines_end_and_errors(void **state)
{
	(void)state;
	const struct route routes[] = {
		{ "/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 0\r\n\r\n" },
		{ "/v1.41/events", "HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n{\"a\":1}\n\n{\"b\":2}\n{\"c\":3}\n" },
		{ "/v1.41/gone", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n" },
		{ 0 },
	};
	struct fake f;
	struct gw_engine e;
	struct gw_error err;
	char want[300];
	start(&f, routes);
	assert_int_equal(gw_engine_connect(&e, f.sock, 30000, &err), 0);
	/* every non-empty line, then the end of the stream is an error */
	struct lines l = { .stop_at = -1 };
	assert_int_equal(gw_engine_stream(&e, "/events", on_line, &l, &err), -EPIPE);
	snprintf(want, sizeof(want), "container engine at %s: the event stream ended", f.sock);
	assert_string_equal(err.msg, want);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0], "{\"a\":1}");
	assert_string_equal(l.v[1], "{\"b\":2}");
	assert_string_equal(l.v[2], "{\"c\":3}");
	/* the reader stops it: not an error */
	struct lines s = { .stop_at = 2 };
	assert_int_equal(gw_engine_stream(&e, "/events", on_line, &s, &err), 0);
	assert_int_equal(s.n, 2);
	/* an HTTP error */
	struct lines g = { .stop_at = -1 };
	assert_int_equal(gw_engine_stream(&e, "/gone", on_line, &g, &err), -EIO);
	snprintf(want, sizeof(want), "container engine at %s: event stream: HTTP 500", f.sock);
	assert_string_equal(err.msg, want);
	assert_int_equal(g.n, 0);
	stop(&f);
	/* nobody listening */
	assert_int_equal(gw_engine_stream(&e, "/events", on_line, &g, &err), -ECONNREFUSED);
	snprintf(want, sizeof(want), "container engine at %s: event stream: ", f.sock);
	assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_negotiates_from_ping_header),
		cmocka_unit_test(test_falls_back_to_version_and_refuses_old_engines),
		cmocka_unit_test(test_negotiates_with_a_recorded_podman_version_reply),
		cmocka_unit_test(test_newer_engines_are_capped_and_too_new_minimums_refused),
		cmocka_unit_test(test_engine_errors_keep_their_message),
		cmocka_unit_test(test_unreachable_socket_is_named),
		cmocka_unit_test(test_a_stop_request_abandons_a_call_in_flight),
		cmocka_unit_test(test_messages_and_default_sockets),
		cmocka_unit_test(test_bodies_methods_and_broken_replies),
		cmocka_unit_test(test_event_stream_lines_end_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
