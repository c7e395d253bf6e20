#define _GNU_SOURCE
/* Following the container engine's events (lib/apply/watch.c) against a
 * fake engine on a unix socket: only the deaths (die, oom) of this state
 * dir's managed containers wake the agent, plus once per (re)connection;
 * a stream that ends is followed again; a stop request ends the thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/apply.h"
#include "gitward/backend.h"
#include "gitward/util.h"

#define EV(type, action, attrs)                                                                                        \
	"{\"Type\":\"" type "\",\"Action\":\"" action "\",\"Actor\":{\"ID\":\"c0ffee\",\"Attributes\":{" attrs "}}}\n"
#define OURS "\"gitward.managed\":\"true\",\"gitward.state-dir\":\"/srv/state-a\""

static const char events[] = EV("container", "die", OURS) /* wakes */
	EV("container", "oom", OURS) /* wakes */
	EV("container", "die", "\"gitward.managed\":\"true\",\"gitward.state-dir\":\"/srv/state-b\"")
		EV("container", "start", OURS)
			EV("container", "die", "\"gitward.managed\":\"false\",\"gitward.state-dir\":\"/srv/state-a\"")
				EV("image", "die", OURS)
					EV("container", "die", "") "not json at all\n"
								   "{\"Type\":\"container\",\"Action\":\"die\"}\n";

struct fake {
	int lfd;
	char sock[108];
	pthread_t t;
	atomic_int streams; /* /events requests */
	atomic_int stop;
};

static void *serve(void *arg)
{
	struct fake *f = arg;
	while (!atomic_load(&f->stop)) {
		int c = accept(f->lfd, NULL, NULL);
		if (c < 0)
			return NULL;
		char req[4096];
		ssize_t n = read(c, req, sizeof(req) - 1);
		req[n > 0 ? n : 0] = '\0';
		const char *reply;
		char buf[8192];
		if (!strncmp(req, "GET /_ping ", 11)) {
			reply = "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK";
		} else if (!strncmp(req, "GET /v1.43/events ", 18)) {
			int k = atomic_fetch_add(&f->streams, 1);
			if (k > 0) { /* later streams: open, and silent until the end */
				ssize_t w = write(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", 52);
				(void)w;
				while (!atomic_load(&f->stop) && read(c, buf, sizeof(buf)) > 0)
					;
				close(c);
				continue;
			}
			snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n%s",
				 events);
			reply = buf;
		} else {
			reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		}
		ssize_t w = write(c, reply, strlen(reply));
		(void)w;
		close(c);
	}
	return NULL;
}

static atomic_int woken;

static void on_wake(void *ud)
{
	atomic_fetch_add((atomic_int *)ud, 1); /* from the events thread: no cmocka assert here */
}

static int wait_count(atomic_int *v, int want, int64_t ms)
{
	int64_t deadline = gw_monotonic_ms() + ms;
	while (atomic_load(v) < want && gw_monotonic_ms() < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return atomic_load(v);
}

/* The container backend alone, for the state dir /srv/state-a, its engine at socket. */
static void open_container_backend(struct gw_backend_set *set, const char *socket)
{
	static const struct gw_backend_ops *const ops[] = { &gw_backend_container, NULL };
	struct gw_backend_config cfg;
	struct gw_error err;
	memset(&cfg, 0, sizeof(cfg));
	cfg.state_dir = "/srv/state-a";
	cfg.container_socket = socket;
	assert_int_equal(gw_backend_set_open(set, ops, &cfg, &err), 0);
}

static void test_only_our_deaths_wake_and_a_lost_stream_is_followed_again(void **state)
{
	(void)state;
	struct fake f;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memset(&f, 0, sizeof(f));
	snprintf(f.sock, sizeof(f.sock), "/tmp/gw-fake-events-%d.sock", (int)getpid());
	unlink(f.sock);
	strcpy(a.sun_path, f.sock);
	f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f.lfd, 8), 0);
	assert_int_equal(pthread_create(&f.t, NULL, serve, &f), 0);

	struct gw_backend_set set;
	open_container_backend(&set, f.sock);
	struct gw_events *ev = NULL;
	atomic_store(&woken, 0);
	assert_int_equal(gw_events_start(&ev, &set, on_wake, &woken), 0);
	/* connected (1), die and oom of ours (2); the stream ends, is followed
	 * again about a second later (1): four, and no more. No window to
	 * sleep through for a wrong wake: the first stream is read to its end,
	 * then the wake of the new connection comes before its request, so
	 * once the second stream is asked for every wake of the first is
	 * counted (the bounds are met only on failure) */
	assert_int_equal(wait_count(&f.streams, 2, 60000), 2);
	assert_int_equal(wait_count(&woken, 4, 60000), 4);
	int64_t t0 = gw_monotonic_ms();
	gw_events_stop(ev); /* ends the silent stream in flight, which would never end */
	assert_true(gw_monotonic_ms() - t0 < 30000);
	assert_int_equal(atomic_load(&woken), 4);
	gw_events_stop(NULL);
	gw_backend_set_close(&set);

	atomic_store(&f.stop, 1);
	shutdown(f.lfd, SHUT_RDWR);
	close(f.lfd);
	pthread_join(f.t, NULL);
	unlink(f.sock);
}

static void test_an_engine_that_is_not_there_is_retried_until_stopped(void **state)
{
	(void)state;
	struct gw_backend_set set;
	open_container_backend(&set, "/nonexistent/engine.sock");
	struct gw_events *ev = NULL;
	atomic_store(&woken, 0);
	assert_int_equal(gw_events_start(&ev, &set, on_wake, &woken), 0);
	struct timespec ts = { 0, 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	int64_t t0 = gw_monotonic_ms();
	gw_events_stop(ev); /* inside its retry sleep: ends at once (bounded: a loaded machine's margin) */
	assert_true(gw_monotonic_ms() - t0 < 30000);
	assert_int_equal(atomic_load(&woken), 0);
	gw_backend_set_close(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_our_deaths_wake_and_a_lost_stream_is_followed_again),
		cmocka_unit_test(test_an_engine_that_is_not_there_is_retried_until_stopped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
