/* Events (lib/pass/notify.c, notify_send.c) on an injected clock: which
 * events a pass raises, the same failure held back for --notify-repeat and
 * its recovery told once, a resource's degradation and recovery, the JSON of
 * SPEC "Events" without secrets; and the delivery queue, which drops its
 * oldest event when a sink hangs and stops while a delivery is under way. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/notify.h"

#define T0 1796644800000LL /* 2026-12-07T12:00:00.000Z */
#define HOUR 3600000LL
#define COMMIT "0123456789abcdef0123456789abcdef01234567"

struct got {
	struct gw_event *v;
	size_t n;
};

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		gw_event_free(&g->v[i]);
	free(g->v);
	memset(g, 0, sizeof(*g));
}

/* The kinds of the events of pass p at now, as "applied,recovered" */
static const char *derive(struct gw_notify_tracker *t, const struct gw_notify_pass *p, int64_t now)
{
	static char kinds[256];
	struct got g = { 0 };
	struct gw_error err = { 0 };
	assert_int_equal(gw_notify_derive(&g.v, &g.n, t, p, now, &err), 0);
	kinds[0] = '\0';
	for (size_t i = 0; i < g.n; i++) {
		if (i)
			strcat(kinds, ",");
		strcat(kinds, gw_event_kind_to_string(g.v[i].kind));
	}
	got_free(&g);
	return kinds;
}

static struct gw_notify_pass pass_of(enum gw_run_result result, const char *message, bool changed)
{
	struct gw_notify_pass p = { .node = "web-01",
				    .ref = "main",
				    .commit = COMMIT,
				    .result = result,
				    .message = message,
				    .changed = changed };
	return p;
}

static void test_a_converged_pass_that_changed_something_is_applied(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p = pass_of(GW_RUN_CONVERGED, "", true);
	assert_string_equal(derive(&t, &p, T0), "applied");
	p.changed = false; /* a quiet pass is quiet */
	assert_string_equal(derive(&t, &p, T0 + 1000), "");
	gw_notify_tracker_free(&t);
}

/* held: once per commit and reason, never a failure; a create that ran
 * beside it is applied; a pass holding nothing ends it */
static void test_a_hold_is_told_once_per_commit_and_reason(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_pending_action held[2] = { { .kind = GW_KIND_PROCESS,
					       .name = "web",
					       .action = "update",
					       .held = "window",
					       .until = T0 / 1000 + 3600 },
					     { .kind = GW_KIND_PROCESS,
					       .name = "old",
					       .action = "delete",
					       .held = "window",
					       .until = T0 / 1000 + 3600 } };
	struct gw_notify_pass p = pass_of(GW_RUN_HELD, "", true);
	p.pending = held;
	p.npending = 2;
	assert_string_equal(derive(&t, &p, T0), "applied,held");
	p.changed = false;
	for (int64_t s = 1; s < 7200; s += 60) /* past the repeat period too */
		assert_string_equal(derive(&t, &p, T0 + s * 1000), "");
	snprintf(held[0].held, sizeof(held[0].held), "fleet-lock");
	snprintf(held[1].held, sizeof(held[1].held), "fleet-lock");
	assert_string_equal(derive(&t, &p, T0 + 2 * HOUR), "held");
	p.commit = "1123456789abcdef0123456789abcdef01234567";
	assert_string_equal(derive(&t, &p, T0 + 2 * HOUR + 1000), "held");
	struct gw_notify_pass done = pass_of(GW_RUN_CONVERGED, "", false);
	assert_string_equal(derive(&t, &done, T0 + 3 * HOUR), "");
	assert_string_equal(derive(&t, &p, T0 + 3 * HOUR + 1000), "held");

	struct got g = { 0 };
	struct gw_error err = { 0 };
	gw_notify_tracker_free(&t);
	gw_notify_tracker_init(&t, HOUR);
	assert_int_equal(gw_notify_derive(&g.v, &g.n, &t, &p, T0, &err), 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.v[0].message, "2 disruptive actions held (fleet-lock) until 2026-12-07T13:00:00.000Z");
	assert_non_null(strstr(g.v[0].body,
			       "\"resources\":[{\"kind\":\"Process\",\"name\":\"web\",\"action\":"
			       "\"update\",\"held\":\"fleet-lock\",\"until\":\"2026-12-07T13:00:00.000Z\"},"));
	got_free(&g);
	gw_notify_tracker_free(&t);
}

static void test_the_same_failure_is_told_once_per_repeat_period(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p = pass_of(GW_RUN_INVALID, "a.yaml:3:1: unknown field", false);
	assert_string_equal(derive(&t, &p, T0), "invalid-commit");
	for (int64_t s = 1; s < 3600; s += 30) /* every 30 s for an hour */
		assert_string_equal(derive(&t, &p, T0 + s * 1000), "");
	assert_string_equal(derive(&t, &p, T0 + HOUR), "invalid-commit");
	assert_string_equal(derive(&t, &p, T0 + HOUR + 1000), "");
	gw_notify_tracker_free(&t);
}

static void test_another_failure_is_told_at_once(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p = pass_of(GW_RUN_INVALID, "a.yaml:3:1: unknown field", false);
	assert_string_equal(derive(&t, &p, T0), "invalid-commit");
	p.message = "a.yaml:4:1: unknown field";
	assert_string_equal(derive(&t, &p, T0 + 1000), "invalid-commit");
	p = pass_of(GW_RUN_NOT_CONVERGED, "1 failed", false);
	assert_string_equal(derive(&t, &p, T0 + 2000), "failed");
	assert_string_equal(derive(&t, &p, T0 + 3000), "");
	gw_notify_tracker_free(&t);
}

static void test_recovery_is_told_once(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass bad = pass_of(GW_RUN_GIT_ERROR, "fetch: connection refused", false);
	struct gw_notify_pass good = pass_of(GW_RUN_CONVERGED, "", true);
	assert_string_equal(derive(&t, &bad, T0), "failed");
	assert_string_equal(derive(&t, &good, T0 + 1000), "recovered,applied");
	good.changed = false;
	assert_string_equal(derive(&t, &good, T0 + 2000), "");
	/* it fails again: told at once, however soon */
	assert_string_equal(derive(&t, &bad, T0 + 3000), "failed");
	assert_string_equal(derive(&t, &good, T0 + 4000), "recovered");
	gw_notify_tracker_free(&t);
}

static void test_a_degraded_resource_once_per_period_and_its_recovery_once(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	struct gw_observed res[2] = { { .kind = GW_KIND_PROCESS, .name = "web", .state = GW_STATE_RUNNING },
				      { .kind = GW_KIND_PROCESS, .name = "api", .state = GW_STATE_RUNNING } };
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p = pass_of(GW_RUN_CONVERGED, "", false);
	p.res = res;
	p.nres = 2;
	assert_string_equal(derive(&t, &p, T0), "");
	res[0].health = GW_HEALTH_UNHEALTHY;
	assert_string_equal(derive(&t, &p, T0 + 1000), "degraded");
	assert_string_equal(derive(&t, &p, T0 + 2000), "");
	res[1].state = GW_STATE_FAILED;
	assert_string_equal(derive(&t, &p, T0 + 3000), "degraded"); /* api's own */
	assert_string_equal(derive(&t, &p, T0 + 1000 + HOUR), "degraded"); /* web's, an hour on */
	res[0].health = GW_HEALTH_HEALTHY;
	assert_string_equal(derive(&t, &p, T0 + 2000 + HOUR), "recovered");
	assert_string_equal(derive(&t, &p, T0 + 3000 + HOUR), "degraded"); /* api's, an hour on */
	p.nres = 1; /* api deleted: forgotten, nothing told */
	assert_string_equal(derive(&t, &p, T0 + 4000 + HOUR), "");
	assert_int_equal(t.nbad, 0);
	gw_notify_tracker_free(&t);
}

static void test_suspended_and_resumed_when_they_change(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p = pass_of(GW_RUN_CONVERGED, "", false);
	assert_string_equal(derive(&t, &p, T0), "");
	p.suspended = true;
	assert_string_equal(derive(&t, &p, T0 + 1000), "suspended");
	assert_string_equal(derive(&t, &p, T0 + 2000), "");
	p.suspended = false;
	assert_string_equal(derive(&t, &p, T0 + 3000), "resumed");
	gw_notify_tracker_free(&t);
	/* an agent started on a suspended node says so */
	gw_notify_tracker_init(&t, HOUR);
	p.suspended = true;
	assert_string_equal(derive(&t, &p, T0), "suspended");
	gw_notify_tracker_free(&t);
}

static void test_event_json_is_the_spec_s_without_credentials(void **state)
{
	(void)state;
	struct gw_notify_tracker t;
	struct gw_strmap labels = { 0 };
	struct gw_observed res = { .kind = GW_KIND_CONTAINER,
				   .name = "web",
				   .state = GW_STATE_RUNNING,
				   .health = GW_HEALTH_HEALTHY,
				   .last_action = "update",
				   .last_action_at = T0 / 1000 };
	struct got g = { 0 };
	struct gw_error err = { 0 };
	gw_strmap_set(&labels, "node", "web-01");
	gw_strmap_set(&labels, "role", "edge");
	gw_notify_tracker_init(&t, HOUR);
	struct gw_notify_pass p =
		pass_of(GW_RUN_GIT_ERROR, "fetch https://bob:hunter2@git.example/r.git: refused", false);
	p.labels = &labels;
	p.res = &res;
	p.nres = 1;
	p.began_s = T0 / 1000;
	assert_int_equal(gw_notify_derive(&g.v, &g.n, &t, &p, T0 + 123, &err), 0);
	assert_int_equal(g.n, 1);
	assert_null(strstr(g.v[0].body, "hunter2"));
	assert_null(strstr(g.v[0].message, "hunter2"));
	json_error_t je;
	json_t *o = json_loads(g.v[0].body, 0, &je);
	assert_non_null(o);
	assert_int_equal(json_object_size(o), 8);
	assert_string_equal(json_string_value(json_object_get(o, "event")), "failed");
	assert_string_equal(json_string_value(json_object_get(o, "node")), "web-01");
	assert_string_equal(json_string_value(json_object_get(o, "commit")), COMMIT);
	assert_string_equal(json_string_value(json_object_get(o, "ref")), "main");
	assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-12-07T12:00:00.123Z");
	json_t *l = json_object_get(o, "labels");
	assert_int_equal(json_object_size(l), 1); /* the node's name is "node", not a label */
	assert_string_equal(json_string_value(json_object_get(l, "role")), "edge");
	json_t *r = json_array_get(json_object_get(o, "resources"), 0);
	assert_string_equal(json_string_value(json_object_get(r, "kind")), "Container");
	assert_string_equal(json_string_value(json_object_get(r, "name")), "web");
	assert_string_equal(json_string_value(json_object_get(r, "action")), "update");
	assert_string_equal(json_string_value(json_object_get(r, "state")), "running");
	assert_string_equal(json_string_value(json_object_get(r, "health")), "healthy");
	json_decref(o);
	got_free(&g);
	gw_strmap_free(&labels);
	gw_notify_tracker_free(&t);
}

/* ---- delivery: a sink that hangs until released or stopped ---- */

struct hang {
	struct gw_notify_sink base;
	atomic_int release;
};
static atomic_int hang_calls; /* outlives the sink, which the notifier frees */

static int hang_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
			struct gw_error *err)
{
	struct hang *h = (struct hang *)s;
	(void)ev;
	atomic_fetch_add(&hang_calls, 1);
	while (!atomic_load(&h->release) && !gw_cancel_requested(stop))
		gw_cancel_sleep(stop, 5);
	if (gw_cancel_requested(stop))
		return gw_error_set(err, -ECANCELED, "stopped");
	return 0;
}

static void hang_free(struct gw_notify_sink *s)
{
	(void)s;
}

static const struct gw_notify_sink_ops hang_ops = { hang_deliver, hang_free };

static struct gw_event *event_new(void)
{
	struct gw_event *ev = calloc(1, sizeof(*ev));
	assert_non_null(ev);
	ev->kind = GW_EVENT_FAILED;
	ev->body = strdup("{}");
	ev->node = strdup("n");
	ev->message = strdup("m");
	return ev;
}

static void test_a_full_queue_drops_its_oldest_and_stop_ends_a_hung_delivery(void **state)
{
	(void)state;
	struct gw_notifier *n = NULL;
	struct gw_error err = { 0 };
	struct gw_notify_sink **sinks = calloc(1, sizeof(*sinks));
	struct hang *h = calloc(1, sizeof(*h));
	assert_non_null(sinks);
	assert_non_null(h);
	h->base.ops = &hang_ops;
	strcpy(h->base.label, "hang");
	h->base.shown = strdup("hang");
	sinks[0] = &h->base;
	assert_int_equal(gw_notifier_start(&n, sinks, 1, 2, 0, &err), 0);
	gw_notifier_post(n, event_new());
	while (!atomic_load(&hang_calls)) /* the first is under way, the queue empty */
		gw_cancel_sleep(NULL, 1);
	for (int i = 0; i < 5; i++) /* never blocks: 2 queued, 3 dropped */
		gw_notifier_post(n, event_new());
	struct gw_notify_counts c;
	gw_notifier_counts(&c, n);
	assert_int_equal(c.dropped, 3);
	assert_int_equal(c.nsinks, 1);
	assert_string_equal(c.sink[0].label, "hang");
	gw_notifier_stop(n); /* returns although the sink never answers */
	assert_int_equal(atomic_load(&hang_calls), 1);
}

static void test_a_commit_gets_each_status_once(void **state)
{
	struct gw_notify_tracker t;
	char c[41];
	(void)state;
	gw_notify_tracker_init(&t, 1000);
	assert_false(gw_notify_status_applying(&t, "aaaa"));
	assert_true(gw_notify_status_due(&t, "aaaa", GW_COMMIT_PENDING));
	assert_false(gw_notify_status_due(&t, "aaaa", GW_COMMIT_PENDING));
	assert_true(gw_notify_status_applying(&t, "aaaa"));
	assert_true(gw_notify_status_due(&t, "aaaa", GW_COMMIT_FAILURE));
	assert_false(gw_notify_status_due(&t, "aaaa", GW_COMMIT_FAILURE));
	assert_true(gw_notify_status_due(&t, "aaaa", GW_COMMIT_SUCCESS)); /* a later recovery is a new state */
	assert_false(gw_notify_status_due(&t, "", GW_COMMIT_PENDING));
	/* the oldest of more commits than remembered is forgotten, the newest kept */
	for (int i = 0; i < 8; i++) {
		snprintf(c, sizeof(c), "c%d", i);
		assert_true(gw_notify_status_due(&t, c, GW_COMMIT_PENDING));
	}
	assert_false(gw_notify_status_applying(&t, "aaaa"));
	assert_true(gw_notify_status_applying(&t, "c7"));
	assert_false(gw_notify_status_due(&t, "c7", GW_COMMIT_PENDING));
	assert_string_equal(gw_commit_state_to_string(GW_COMMIT_FAILURE), "failure");
	gw_notify_tracker_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_commit_gets_each_status_once),
		cmocka_unit_test(test_a_converged_pass_that_changed_something_is_applied),
		cmocka_unit_test(test_a_hold_is_told_once_per_commit_and_reason),
		cmocka_unit_test(test_the_same_failure_is_told_once_per_repeat_period),
		cmocka_unit_test(test_another_failure_is_told_at_once),
		cmocka_unit_test(test_recovery_is_told_once),
		cmocka_unit_test(test_a_degraded_resource_once_per_period_and_its_recovery_once),
		cmocka_unit_test(test_suspended_and_resumed_when_they_change),
		cmocka_unit_test(test_event_json_is_the_spec_s_without_credentials),
		cmocka_unit_test(test_a_full_queue_drops_its_oldest_and_stop_ends_a_hung_delivery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
