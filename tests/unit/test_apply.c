/* Apply against a fake backend injected through the backend table: restart
 * policy and backoff (on an injected clock), health gating, dependency
 * waits and ordering, failure isolation, parallel creates, and deletes
 * dependents-first. The fake records every call with its times and fails,
 * crashes or stays unhealthy on demand. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/apply.h"
#include "gitward/backend.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/review.h"

/* ---- the fake backend ---- */

#define FAKE_MAX 16
#define CALLS_MAX 256

struct fake_wl {
	char name[64];
	struct gw_observed o; /* as created; o.state RUNNING until crashed */
	int id;
};

struct fake_call {
	char op[16]; /* create, destroy, probe */
	char name[64];
	int ok;
	int64_t start, end; /* monotonic ms */
};

static struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fake_wl wl[FAKE_MAX];
	size_t n;
	int next_id;
	struct fake_call calls[CALLS_MAX];
	size_t ncalls;
	/* behaviour on demand */
	char fail_create[64]; /* this resource's create fails */
	char unhealthy[64]; /* this resource's probes always fail */
	int hung; /* the probes of this workload (by id) fail: a hung instance */
	int probes_to_healthy; /* failed probes before a resource is healthy */
	int probes[FAKE_MAX]; /* per created id */
	int create_ms; /* how long a create takes */
	int gather; /* creates wait (bounded) until this many are in flight */
	int inflight, max_inflight;
	int started_ago_s; /* discover reports workloads started this long ago */
	int inits, dones;
} F = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* The restart policy's clock stands still between what a test adds: a pass
 * that a loaded machine runs slowly sees the same backoffs as a fast one. */
static int64_t clock_base_ms, clock_offset_ms;

static int64_t fake_now(void)
{
	return clock_base_ms + clock_offset_ms;
}

static void fake_reset(void)
{
	for (size_t i = 0; i < F.n; i++)
		gw_observed_clear(&F.wl[i].o);
	pthread_mutex_t mu = F.mu;
	pthread_cond_t cv = F.cv;
	memset(&F, 0, sizeof(F));
	F.mu = mu;
	F.cv = cv;
	clock_base_ms = gw_now_ms();
	clock_offset_ms = 0;
}

static size_t call_begin(const char *op, const char *name)
{
	pthread_mutex_lock(&F.mu);
	assert_true(F.ncalls < CALLS_MAX);
	size_t i = F.ncalls++;
	snprintf(F.calls[i].op, sizeof(F.calls[i].op), "%s", op);
	snprintf(F.calls[i].name, sizeof(F.calls[i].name), "%s", name);
	F.calls[i].start = gw_monotonic_ms();
	pthread_mutex_unlock(&F.mu);
	return i;
}

static void call_end(size_t i, int ok)
{
	pthread_mutex_lock(&F.mu);
	F.calls[i].end = gw_monotonic_ms();
	F.calls[i].ok = ok;
	pthread_mutex_unlock(&F.mu);
}

/* The index of the n-th (0-based) call of op on name, or -1. */
static int find_call(const char *op, const char *name, int nth)
{
	for (size_t i = 0; i < F.ncalls; i++)
		if (!strcmp(F.calls[i].op, op) && !strcmp(F.calls[i].name, name) && nth-- == 0)
			return (int)i;
	return -1;
}

static int count_calls(const char *op, const char *name)
{
	int n = 0;
	for (size_t i = 0; i < F.ncalls; i++)
		n += !strcmp(F.calls[i].op, op) && (!name || !strcmp(F.calls[i].name, name));
	return n;
}

static void copy_obs(struct gw_observed *dst, const struct gw_observed *src)
{
	*dst = *src;
	dst->name = gw_xstrdup(src->name);
	dst->canonical = src->canonical ? gw_xstrdup(src->canonical) : NULL;
	dst->handle = src->handle ? gw_xstrdup(src->handle) : NULL;
	memset(&dst->depends_on, 0, sizeof(dst->depends_on));
	dst->depends_on.v = gw_xcalloc(src->depends_on.n + 1, sizeof(char *));
	for (size_t i = 0; i < src->depends_on.n; i++)
		dst->depends_on.v[dst->depends_on.n++] = gw_xstrdup(src->depends_on.v[i]);
}

static int fake_init(void **priv, const struct gw_backend *b, struct gw_error *err)
{
	(void)b;
	(void)err;
	F.inits++;
	*priv = &F;
	return 0;
}

static void fake_done(void *priv)
{
	assert_ptr_equal(priv, &F);
	F.dones++;
}

static int fake_discover(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
			 const struct gw_backend_call *call, struct gw_error *err)
{
	(void)call;
	(void)err;
	assert_ptr_equal(b->priv, &F);
	pthread_mutex_lock(&F.mu);
	struct gw_observed *v = gw_xcalloc(F.n + 1, sizeof(*v));
	size_t n = 0;
	for (size_t i = 0; i < F.n; i++) {
		if (F.wl[i].o.kind != b->ops->kind)
			continue; /* the other fake's */
		copy_obs(&v[n], &F.wl[i].o);
		if (F.started_ago_s)
			v[n].started_at = fake_now() / 1000 - F.started_ago_s;
		n++;
	}
	*out = v;
	*out_n = n;
	pthread_mutex_unlock(&F.mu);
	return 0;
}

static int fake_create(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
		       const struct gw_backend_call *call, struct gw_error *err)
{
	size_t c = call_begin("create", r->name);
	char handle[64];
	(void)b;
	(void)call;
	pthread_mutex_lock(&F.mu);
	F.inflight++;
	if (F.inflight > F.max_inflight)
		F.max_inflight = F.inflight;
	pthread_cond_broadcast(&F.cv);
	/* a barrier with a bound (met only on failure: generous for a loaded
	 * machine's late threads): parallel creates all get here together */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 60;
	while (F.gather && F.max_inflight < F.gather)
		if (pthread_cond_timedwait(&F.cv, &F.mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&F.mu);
	if (F.create_ms)
		usleep((useconds_t)F.create_ms * 1000);
	pthread_mutex_lock(&F.mu);
	F.inflight--;
	if (!strcmp(F.fail_create, r->name)) {
		pthread_mutex_unlock(&F.mu);
		call_end(c, 0);
		return gw_error_set(err, -EIO, "fake: cannot create %s", r->name);
	}
	size_t i;
	for (i = 0; i < F.n && strcmp(F.wl[i].name, r->name) != 0; i++)
		;
	if (i == F.n)
		F.n++;
	else
		gw_observed_clear(&F.wl[i].o);
	snprintf(F.wl[i].name, sizeof(F.wl[i].name), "%s", r->name);
	F.wl[i].id = ++F.next_id;
	gw_observed_start(&F.wl[i].o, r);
	snprintf(handle, sizeof(handle), "{\"fake\":%d}", F.wl[i].id);
	F.wl[i].o.handle = gw_xstrdup(handle);
	copy_obs(o, &F.wl[i].o);
	pthread_mutex_unlock(&F.mu);
	call_end(c, 1);
	return 0;
}

static int fake_destroy(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			const struct gw_backend_call *call, struct gw_error *err)
{
	size_t c = call_begin("destroy", o->name);
	(void)b;
	(void)r;
	(void)call;
	(void)err;
	if (F.create_ms)
		usleep((useconds_t)F.create_ms * 1000);
	pthread_mutex_lock(&F.mu);
	for (size_t i = 0; i < F.n; i++)
		if (o->handle && F.wl[i].o.handle && !strcmp(F.wl[i].o.handle, o->handle)) {
			gw_observed_clear(&F.wl[i].o);
			F.wl[i] = F.wl[--F.n];
			memset(&F.wl[F.n], 0, sizeof(F.wl[F.n]));
			break;
		}
	pthread_mutex_unlock(&F.mu);
	call_end(c, 1);
	return 0;
}

static int fake_probe(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
		      int64_t timeout_ms, const struct gw_backend_call *call, struct gw_error *err)
{
	size_t c = call_begin("probe", r->name);
	int id = 0, healthy;
	(void)b;
	(void)timeout_ms;
	(void)call;
	sscanf(o->handle ? o->handle : "", "{\"fake\":%d}", &id);
	pthread_mutex_lock(&F.mu);
	assert_true(id > 0 && id < FAKE_MAX);
	healthy = strcmp(F.unhealthy, r->name) != 0 && id != F.hung && F.probes[id]++ >= F.probes_to_healthy;
	pthread_mutex_unlock(&F.mu);
	call_end(c, healthy);
	return healthy ? 0 : gw_error_set(err, -EIO, "fake: %s is not healthy", r->name);
}

static void fake_describe(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle)
{
	int id = 0;
	(void)b;
	sscanf(handle ? handle : "", "{\"fake\":%d}", &id);
	json_object_set_new(fields, "fake", json_integer(id));
	snprintf(text, size, "fake %d", id);
}

static const struct gw_backend_ops fake_ops = {
	.name = "fake",
	.kind = GW_KIND_PROCESS,
	.init = fake_init,
	.done = fake_done,
	.discover = fake_discover,
	.create = fake_create,
	.destroy = fake_destroy,
	.exec_probe = fake_probe,
	.describe = fake_describe,
};

/* The same fake for Containers, beside the one for Processes. */
static const struct gw_backend_ops fake_container_ops = {
	.name = "fake-container",
	.kind = GW_KIND_CONTAINER,
	.init = fake_init,
	.done = fake_done,
	.discover = fake_discover,
	.create = fake_create,
	.destroy = fake_destroy,
	.exec_probe = fake_probe,
	.describe = fake_describe,
};

/* A workload of ours ends: it is observed failed. */
static void fake_crash(const char *name)
{
	pthread_mutex_lock(&F.mu);
	for (size_t i = 0; i < F.n; i++)
		if (!strcmp(F.wl[i].name, name)) {
			F.wl[i].o.state = GW_STATE_FAILED;
			snprintf(F.wl[i].o.detail, sizeof(F.wl[i].o.detail), "exited with status 1");
		}
	pthread_mutex_unlock(&F.mu);
}

/* ---- a pass over YAML, as the agent runs one ---- */

struct env {
	char dir[64];
	struct gw_strmap labels;
	struct gw_pass_opts opts;
	struct gw_backend_set set;
};

static int setup_with(void **state, const struct gw_backend_ops *const *ops, int nops)
{
	struct env *e = calloc(1, sizeof(*e));
	struct gw_backend_config bc = { 0 };
	struct gw_error err;

	fake_reset();
	snprintf(e->dir, sizeof(e->dir), "/tmp/gw-apply-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	gw_strmap_set(&e->labels, "node", "n1");
	e->opts = (struct gw_pass_opts){
		.node = "n1", .labels = &e->labels, .state_dir = e->dir, .prune = true, .allow_empty = true
	};
	bc.state_dir = e->dir;
	assert_int_equal(gw_backend_set_open(&e->set, ops, &bc, &err), 0);
	assert_int_equal(F.inits, nops);
	*state = e;
	return 0;
}

static int setup(void **state)
{
	static const struct gw_backend_ops *const ops[] = { &fake_ops, NULL };
	return setup_with(state, ops, 1);
}

/* A Process fake and a Container fake. */
static int setup_two(void **state)
{
	static const struct gw_backend_ops *const ops[] = { &fake_ops, &fake_container_ops, NULL };
	return setup_with(state, ops, 2);
}

static int teardown(void **state)
{
	struct env *e = *state;
	char path[128];
	gw_backend_set_close(&e->set);
	assert_int_equal(F.dones, F.inits);
	gw_strmap_free(&e->labels);
	snprintf(path, sizeof(path), "%s/state.json", e->dir);
	unlink(path);
	rmdir(e->dir);
	free(e);
	fake_reset();
	return 0;
}

/* gw_pass_hold_disruptive before the next pass_over (reason NULL: none) */
static const char *hold_reason;
static int64_t hold_until_ms;

/* One pass over the resources of yaml, from selection on, through the
 * live observer; *rep its report, *st the state file it wrote (caller
 * frees). heal: as a heal pass, which probes only the checks that are due. */
static void pass_over_as(struct env *e, bool heal, const char *yaml, struct gw_apply_report *rep,
			 struct gw_state_file *st)
{
	struct gw_pass pass;
	struct gw_observer_live live;
	struct gw_error err;
	char *state_error = NULL, path[128];

	gw_pass_init(&pass);
	pass.now_ms = fake_now;
	pass.probe_due_only = heal;
	memset(pass.commit, 'c', 40);
	gw_manifest_set_add_file(&pass.set, "t.yaml", yaml, strlen(yaml));
	gw_manifest_set_finish(&pass.set);
	assert_int_equal(pass.set.diags.n, 0);
	gw_backend_set_pass_begin(&e->set);
	gw_observer_live_init(&live, &e->set, e->dir);
	assert_int_equal(gw_pass_observe_plan(&pass, &live.base, e->opts.labels, &e->opts, &state_error, &err), 0);
	assert_null(state_error);
	if (hold_reason)
		gw_pass_hold_disruptive(&pass, hold_reason, hold_until_ms);
	hold_reason = NULL;
	assert_int_equal(gw_pass_execute(rep, &pass, &e->opts, &e->set, &err), 0);
	gw_backend_set_pass_end(&e->set);
	gw_pass_free(&pass);
	snprintf(path, sizeof(path), "%s/state.json", e->dir);
	assert_int_equal(gw_state_load(st, path, &err), 0);
}

static void pass_over(struct env *e, const char *yaml, struct gw_apply_report *rep, struct gw_state_file *st)
{
	pass_over_as(e, false, yaml, rep, st);
}

static const struct gw_observed *entry(const struct gw_state_file *st, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->res[i].name, name))
			return &st->res[i];
	fail_msg("no state entry for %s", name);
	return NULL;
}

#define PROC(name, extra)                                                                                              \
	"apiVersion: gitward/v1\nkind: Process\nmetadata: {name: " name "}\nspec:\n  command: [/bin/true]\n" extra     \
	"---\n"
#define CONT(name, extra)                                                                                              \
	"apiVersion: gitward/v1\nkind: Container\nmetadata: {name: " name "}\nspec:\n  image: busybox\n" extra "---\n"
#define HEALTH "  healthCheck: {exec: {command: [/bin/true]}, interval: 1s, timeout: 1s, retries: 1}\n"

/* ---- the tests ---- */

static void test_independent_creates_overlap_and_dependents_wait(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	F.gather = 3; /* each create waits until three are in flight */
	pass_over(e, PROC("a", "") PROC("b", "") PROC("c", "") PROC("d", "  dependsOn: [a]\n"), &rep, &st);
	assert_int_equal(F.max_inflight, 3);
	assert_int_equal(rep.ok, 4);
	assert_true(rep.converged);
	int a = find_call("create", "a", 0), d = find_call("create", "d", 0);
	assert_true(a >= 0 && d >= 0);
	assert_true(F.calls[d].start >= F.calls[a].end); /* d after its dependency */
	/* the handle is stored as the backend wrote it, shown through describe */
	assert_non_null(strstr(entry(&st, "a")->handle, "{\"fake\":"));
	gw_state_file_free(&st);
	char *status, path[128];
	struct gw_error err;
	snprintf(path, sizeof(path), "%s/state.json", e->dir);
	assert_int_equal(gw_file_read_nofollow(&status, NULL, path, 1 << 20, &err), 0);
	assert_non_null(strstr(status, "\"fake\": "));
	assert_null(strstr(status, "\"pid\""));
	free(status);
}

static void test_health_gates_dependents(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	F.probes_to_healthy = 2; /* healthy at the third probe */
	pass_over(e, PROC("db", HEALTH) PROC("web", "  dependsOn: [db]\n"), &rep, &st);
	assert_int_equal(rep.ok, 2);
	assert_true(rep.converged);
	assert_int_equal(count_calls("probe", "db"), 3);
	int healthy = find_call("probe", "db", 2), web = find_call("create", "web", 0);
	assert_true(F.calls[healthy].ok);
	assert_true(F.calls[web].start >= F.calls[healthy].end);
	assert_int_equal(entry(&st, "db")->health, GW_HEALTH_HEALTHY);
	gw_state_file_free(&st);
}

static void test_unhealthy_dependency_holds_its_dependents(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	snprintf(F.unhealthy, sizeof(F.unhealthy), "db");
	pass_over(e, PROC("db", HEALTH) PROC("web", "  dependsOn: [db]\n") PROC("other", ""), &rep, &st);
	assert_int_equal(rep.failed, 1);
	assert_int_equal(rep.unhealthy, 1);
	assert_int_equal(rep.waiting, 1);
	assert_int_equal(rep.ok, 1);
	assert_false(rep.converged);
	assert_int_equal(count_calls("create", "web"), 0);
	assert_int_equal(count_calls("create", "other"), 1);
	assert_string_equal(entry(&st, "db")->detail, "unhealthy: fake: db is not healthy");
	assert_int_equal(entry(&st, "web")->state, GW_STATE_PENDING);
	assert_string_equal(entry(&st, "web")->detail, "waiting for Process/db");
	gw_state_file_free(&st);
}

static void test_a_failing_resource_does_not_stop_the_others(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	snprintf(F.fail_create, sizeof(F.fail_create), "a");
	pass_over(e, PROC("a", "") PROC("b", "") PROC("c", "  dependsOn: [b]\n") PROC("d", "  dependsOn: [a]\n"), &rep,
		  &st);
	assert_int_equal(rep.failed, 1);
	assert_int_equal(rep.ok, 2);
	assert_int_equal(rep.waiting, 1);
	assert_int_equal(count_calls("create", NULL), 3); /* a (failed), b, c; never d */
	assert_int_equal(entry(&st, "a")->state, GW_STATE_FAILED);
	assert_string_equal(entry(&st, "a")->detail, "fake: cannot create a");
	assert_null(entry(&st, "a")->handle);
	assert_int_equal(entry(&st, "b")->state, GW_STATE_RUNNING);
	assert_int_equal(entry(&st, "c")->state, GW_STATE_RUNNING);
	assert_string_equal(entry(&st, "d")->detail, "waiting for Process/a");
	assert_string_equal(st.last_error, "Process/a: fake: cannot create a");
	gw_state_file_free(&st);
}

/* A hold (a window, a fleet lock) keeps updates and deletes, never a
 * create: a create whose dependency's update is held runs beside the old
 * workload. Held is neither converged nor failed; the next pass applies. */
static void test_hold_keeps_updates_and_deletes_not_creates(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	pass_over(e, PROC("a", "") PROC("b", ""), &rep, &st);
	assert_true(rep.converged);
	gw_state_file_free(&st);
	hold_reason = "window";
	hold_until_ms = 1800000000123;
	const char *next = PROC("a", "  env: {V: \"2\"}\n") PROC("c", "  dependsOn: [a]\n");
	pass_over(e, next, &rep, &st);
	assert_int_equal(rep.held, 2); /* a's update, b's delete */
	assert_int_equal(rep.failed, 0);
	assert_int_equal(rep.waiting, 0);
	assert_false(rep.converged);
	assert_int_equal(count_calls("create", "a"), 1);
	assert_int_equal(count_calls("destroy", NULL), 0);
	assert_int_equal(count_calls("create", "c"), 1);
	assert_string_equal(st.last_attempt_result, "held");
	assert_int_equal(entry(&st, "b")->state, GW_STATE_RUNNING);
	assert_int_equal(st.npending, 2);
	for (size_t i = 0; i < st.npending; i++) {
		assert_string_equal(st.pending[i].held, "window");
		assert_int_equal(st.pending[i].until, 1800000001); /* rounded up to the second */
		assert_string_equal(st.pending[i].action, !strcmp(st.pending[i].name, "a") ? "update" : "delete");
	}
	gw_state_file_free(&st);
	pass_over(e, next, &rep, &st);
	assert_true(rep.converged);
	assert_int_equal(rep.held, 0);
	assert_int_equal(count_calls("create", "a"), 2);
	assert_int_equal(count_calls("destroy", "b"), 1);
	assert_int_equal(st.npending, 0);
	assert_string_equal(st.last_attempt_result, "success");
	gw_state_file_free(&st);
}

static void test_backoff_doubles_to_its_cap(void **state)
{
	(void)state;
	assert_int_equal(gw_apply__backoff_ms(1), 1000);
	assert_int_equal(gw_apply__backoff_ms(2), 2000);
	assert_int_equal(gw_apply__backoff_ms(3), 4000);
	assert_int_equal(gw_apply__backoff_ms(9), 256000);
	assert_int_equal(gw_apply__backoff_ms(10), 300000);
	assert_int_equal(gw_apply__backoff_ms(1000), 300000);
}

/* Crash, pass, and return the state entry's crash streak. */
static int crash_and_pass(struct env *e, const char *yaml, struct gw_apply_report *rep, int64_t *backoff_left)
{
	struct gw_state_file st;
	fake_crash("w");
	pass_over(e, yaml, rep, &st);
	int streak = entry(&st, "w")->crash_streak;
	*backoff_left = entry(&st, "w")->backoff_until_ms - fake_now();
	gw_state_file_free(&st);
	return streak;
}

static void test_restarts_back_off_1_2_4_s_and_reset_after_a_stable_run(void **state)
{
	struct env *e = *state;
	const char *yaml = PROC("w", "  restart: always\n");
	struct gw_apply_report rep;
	struct gw_state_file st;
	int64_t left;

	pass_over(e, yaml, &rep, &st);
	gw_state_file_free(&st);
	assert_int_equal(count_calls("create", "w"), 1);
	/* first crash: restarted at once, the next restart waits 1 s */
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 1);
	assert_int_equal(count_calls("create", "w"), 2);
	assert_int_equal(left, 1000);
	/* crashes again within its backoff: waits, nothing started */
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 1);
	assert_int_equal(count_calls("create", "w"), 2);
	assert_int_equal(rep.waiting, 1);
	/* the clock passes the backoff: restarted, the next wait doubles */
	clock_offset_ms += 1001;
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 2);
	assert_int_equal(count_calls("create", "w"), 3);
	assert_int_equal(left, 2000);
	clock_offset_ms += 2001;
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 3);
	assert_int_equal(left, 4000);
	assert_int_equal(count_calls("create", "w"), 4);
	/* a run of 60 s and more ends the streak: the next crash waits 1 s */
	clock_offset_ms += 61000;
	F.started_ago_s = 61;
	pass_over(e, yaml, &rep, &st);
	assert_int_equal(entry(&st, "w")->crash_streak, 0);
	assert_true(rep.converged);
	gw_state_file_free(&st);
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 1);
	assert_int_equal(count_calls("create", "w"), 5);
	assert_int_equal(left, 1000);
	assert_int_equal(count_calls("destroy", "w"), 4); /* each dead workload removed before its restart */
}

/* "since" is since when the resource is in its state as the same workload:
 * a restart (a new workload, running again) moves it; a quiet pass keeps it. */
static void test_since_moves_when_a_workload_restarts(void **state)
{
	struct env *e = *state;
	const char *yaml = PROC("w", "  restart: always\n");
	struct gw_apply_report rep;
	struct gw_state_file st;
	struct gw_error err;
	char path[128];
	int64_t left;

	snprintf(path, sizeof(path), "%s/state.json", e->dir);
	pass_over(e, yaml, &rep, &st);
	((struct gw_observed *)entry(&st, "w"))->since = 1000; /* long ago */
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
	gw_state_file_free(&st);
	pass_over(e, yaml, &rep, &st);
	assert_int_equal(entry(&st, "w")->since, 1000); /* nothing happened */
	gw_state_file_free(&st);
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 1);
	assert_int_equal(count_calls("create", "w"), 2);
	assert_int_equal(gw_state_load(&st, path, &err), 0);
	assert_int_equal(entry(&st, "w")->state, GW_STATE_RUNNING);
	assert_true(entry(&st, "w")->since > 1000);
	gw_state_file_free(&st);
}

/* A heal pass at the fake time `at` (ms after the first pass); returns
 * the state entry of name's failures in a row. */
static int heal_at(struct env *e, int64_t at, const char *yaml, const char *name, struct gw_apply_report *rep)
{
	struct gw_state_file st;
	clock_offset_ms = at;
	pass_over_as(e, true, yaml, rep, &st);
	int failures = entry(&st, name)->health_failures;
	gw_state_file_free(&st);
	return failures;
}

/* Heal passes probe each check on its own clock (interval 10 s and 2 s),
 * keep the failures in a row in the state file, and restart a workload
 * whose probes failed retries times in a row in the pass that saw the
 * last one. A full pass probes every check. */
static void test_heal_passes_probe_each_check_when_due_and_restart_at_retries(void **state)
{
	struct env *e = *state;
	const char *yaml = PROC("a", "  healthCheck: {exec: {command: [/bin/true]}, interval: 10s, retries: 3}\n")
		PROC("b", "  healthCheck: {exec: {command: [/bin/true]}, interval: 2s, retries: 3}\n");
	struct gw_apply_report rep;
	struct gw_state_file st;

	pass_over(e, yaml, &rep, &st); /* each probed once by the start's health gate */
	assert_int_equal(entry(&st, "b")->probe_every_ms, 2000);
	assert_int_equal(entry(&st, "a")->probe_every_ms, 10000);
	assert_int_equal(entry(&st, "b")->probed_at_ms, fake_now());
	int hung;
	sscanf(entry(&st, "b")->handle, "{\"fake\":%d}", &hung);
	gw_state_file_free(&st);
	assert_int_equal(heal_at(e, 1000, yaml, "b", &rep), 0); /* nothing due */
	assert_int_equal(count_calls("probe", NULL), 2);
	assert_int_equal(heal_at(e, 2000, yaml, "b", &rep), 0); /* b due, a not */
	assert_int_equal(count_calls("probe", "b"), 2);
	assert_int_equal(count_calls("probe", "a"), 1);

	F.hung = hung; /* b hangs: 1, 2, then 3 failures in a row */
	assert_int_equal(heal_at(e, 3000, yaml, "b", &rep), 0); /* not yet due */
	assert_int_equal(heal_at(e, 4000, yaml, "b", &rep), 1);
	assert_int_equal(heal_at(e, 5000, yaml, "b", &rep), 1); /* the verdict kept between probes */
	assert_int_equal(count_calls("destroy", "b"), 0);
	assert_int_equal(heal_at(e, 6000, yaml, "b", &rep), 2);
	assert_int_equal(heal_at(e, 8000 - GW_APPLY_PROBE_EARLY_MS, yaml, "b", &rep), 0); /* due: early is fine */
	assert_int_equal(count_calls("destroy", "b"), 1);
	assert_int_equal(count_calls("create", "b"), 2);
	assert_int_equal(count_calls("probe", "b"), 6); /* 2 good, 3 failed, the new one's gate */
	assert_int_equal(count_calls("probe", "a"), 1);
	assert_true(rep.converged);

	pass_over(e, yaml, &rep, &st); /* a full pass: both probed */
	assert_int_equal(count_calls("probe", "a"), 2);
	assert_int_equal(count_calls("probe", "b"), 7);
	assert_int_equal(entry(&st, "b")->restarts, 1);
	assert_int_equal(entry(&st, "b")->health, GW_HEALTH_HEALTHY);
	gw_state_file_free(&st);
}

static void test_restart_never_leaves_a_crashed_workload_down(void **state)
{
	struct env *e = *state;
	const char *yaml = PROC("w", "  restart: never\n");
	struct gw_apply_report rep;
	struct gw_state_file st;
	int64_t left;

	pass_over(e, yaml, &rep, &st);
	gw_state_file_free(&st);
	assert_int_equal(crash_and_pass(e, yaml, &rep, &left), 0);
	assert_int_equal(count_calls("create", "w"), 1);
	assert_int_equal(count_calls("destroy", "w"), 0);
}

static void test_deletes_run_dependents_first(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	struct gw_state_file st;

	pass_over(e, PROC("db", "") PROC("cache", "  dependsOn: [db]\n") PROC("web", "  dependsOn: [cache]\n"), &rep,
		  &st);
	gw_state_file_free(&st);
	assert_int_equal(rep.ok, 3);
	F.create_ms = 50; /* destroys take a while: an overlap would show */
	pass_over(e, "", &rep, &st);
	assert_int_equal(st.n, 0);
	assert_int_equal(rep.ok, 3);
	int web = find_call("destroy", "web", 0), cache = find_call("destroy", "cache", 0),
	    db = find_call("destroy", "db", 0);
	assert_true(web >= 0 && cache >= 0 && db >= 0);
	assert_true(F.calls[cache].start >= F.calls[web].end);
	assert_true(F.calls[db].start >= F.calls[cache].end);
	assert_int_equal(F.n, 0);
	gw_state_file_free(&st);
}

/* ---- review: inventories, recorded statuses, plans between commits ---- */

/* Load yaml as an inventory; the first diagnostic as "line:col: msg" ("" if none). */
/* ---- envFiles watched ---- */

static void env_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* The reason of name's action in the plan of yaml against what runs. */
static enum gw_action_type plan_reason(struct env *e, const char *yaml, const char *name, char *reason, size_t size)
{
	struct gw_pass pass;
	struct gw_observer_live live;
	struct gw_error err;
	char *state_error = NULL;
	enum gw_action_type t = GW_ACTION_NONE;

	gw_pass_init(&pass);
	pass.now_ms = fake_now;
	gw_manifest_set_add_file(&pass.set, "t.yaml", yaml, strlen(yaml));
	gw_manifest_set_finish(&pass.set);
	gw_observer_live_init(&live, &e->set, e->dir);
	assert_int_equal(gw_pass_observe_plan(&pass, &live.base, e->opts.labels, &e->opts, &state_error, &err), 0);
	for (size_t i = 0; i < pass.plan.n; i++)
		if (!strcmp(pass.plan.v[i].name, name)) {
			t = pass.plan.v[i].type;
			snprintf(reason, size, "%s", pass.plan.v[i].reason);
		}
	gw_pass_free(&pass);
	return t;
}

/* A state file as an earlier version wrote it: no digests. */
static void forget_digests(struct env *e)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[128];
	snprintf(path, sizeof(path), "%s/state.json", e->dir);
	assert_int_equal(gw_state_load(&st, path, &err), 0);
	for (size_t i = 0; i < st.n; i++)
		gw_strmap_free(&st.res[i].env_digests);
	assert_int_equal(gw_state_save(&st, path, NULL, &err), 0);
	gw_state_file_free(&st);
}

/* One more pass: how many digests name's entry keeps. The clock stands
 * still: a restart for a changed file waits for no backoff and counts in
 * no crash streak. */
static size_t pass_digests(struct env *e, const char *yaml, const char *name, struct gw_apply_report *rep)
{
	struct gw_state_file st;
	pass_over(e, yaml, rep, &st);
	assert_true(rep->converged);
	size_t n = entry(&st, name)->env_digests.n;
	assert_int_equal(entry(&st, name)->crash_streak, 0);
	assert_int_equal(entry(&st, name)->backoff_until_ms, 0);
	gw_state_file_free(&st);
	return n;
}

/* A Process's or a Container's envFiles edited on the node: the next pass
 * restarts that workload alone, naming the first changed file; an unchanged
 * file, a file gone (kept running) or a state file without digests (an
 * earlier version's) restarts nothing. */
static void test_edited_env_file_restarts_its_process_or_container(void **state)
{
	struct env *e = *state;
	struct gw_apply_report rep;
	char a[96], b[96], c[96], yaml[2048], reason[160], want[200];

	snprintf(a, sizeof(a), "%s/a.env", e->dir);
	snprintf(b, sizeof(b), "%s/b.env", e->dir);
	snprintf(c, sizeof(c), "%s/c.env", e->dir);
	env_write(a, "A=1\n");
	env_write(b, "B=1\n");
	env_write(c, "C=1\n");
	snprintf(yaml, sizeof(yaml),
		 PROC("web", "  envFiles: [%s, %s]\n") PROC("plain", "") CONT("api", "  envFiles: [%s]\n"), a, b, c);
	assert_int_equal(pass_digests(e, yaml, "web", &rep), 2);
	assert_int_equal(pass_digests(e, yaml, "api", &rep), 1);
	assert_int_equal(count_calls("create", NULL), 3);
	assert_int_equal(plan_reason(e, yaml, "web", reason, sizeof(reason)), GW_ACTION_NONE);

	/* the second file of two changes: web restarts, named by that file */
	env_write(b, "B=2\n");
	assert_int_equal(plan_reason(e, yaml, "web", reason, sizeof(reason)), GW_ACTION_RESTART);
	snprintf(want, sizeof(want), "envFile %s changed", b);
	assert_string_equal(reason, want);
	assert_int_equal(pass_digests(e, yaml, "web", &rep), 2);
	assert_int_equal(count_calls("destroy", "web"), 1);
	assert_int_equal(count_calls("create", "web"), 2);
	assert_int_equal(count_calls("create", NULL), 4);
	assert_int_equal(plan_reason(e, yaml, "web", reason, sizeof(reason)), GW_ACTION_NONE);

	/* the Container's file */
	env_write(c, "C=2\n");
	assert_int_equal(plan_reason(e, yaml, "api", reason, sizeof(reason)), GW_ACTION_RESTART);
	snprintf(want, sizeof(want), "envFile %s changed", c);
	assert_string_equal(reason, want);
	pass_digests(e, yaml, "api", &rep);
	assert_int_equal(count_calls("create", "api"), 2);
	assert_int_equal(count_calls("create", NULL), 5);

	/* an earlier version's state file: digests recorded, nothing restarted,
	 * and a change after that is seen */
	forget_digests(e);
	env_write(a, "A=2\n");
	assert_int_equal(pass_digests(e, yaml, "web", &rep), 2);
	assert_int_equal(count_calls("create", NULL), 5);
	env_write(a, "A=3\n");
	pass_digests(e, yaml, "web", &rep);
	assert_int_equal(count_calls("create", "web"), 3);

	/* gone: it keeps running; back as it was: nothing; back changed: restart */
	assert_int_equal(unlink(a), 0);
	assert_int_equal(plan_reason(e, yaml, "web", reason, sizeof(reason)), GW_ACTION_NONE);
	assert_int_equal(pass_digests(e, yaml, "web", &rep), 2);
	env_write(a, "A=3\n");
	pass_digests(e, yaml, "web", &rep);
	assert_int_equal(count_calls("create", "web"), 3);
	env_write(a, "A=4\n");
	pass_digests(e, yaml, "web", &rep);
	assert_int_equal(count_calls("create", "web"), 4);
	assert_int_equal(count_calls("create", "plain"), 1);
	struct gw_state_file st;
	pass_over(e, yaml, &rep, &st);
	assert_int_equal(entry(&st, "web")->restarts, 3); /* shown in status, like any restart */
	assert_int_equal(entry(&st, "api")->restarts, 1);
	assert_int_equal(entry(&st, "plain")->restarts, 0);
	gw_state_file_free(&st);
	unlink(a);
	unlink(b);
	unlink(c);
}

static int inventory_of(struct gw_inventory *inv, char *first, size_t size, size_t *ndiags, const char *yaml)
{
	char path[] = "/tmp/gw-inv-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	struct gw_diags d;
	gw_diags_init(&d);
	int rc = gw_inventory_load(inv, path, &d);
	first[0] = '\0';
	if (d.n)
		snprintf(first, size, "%u:%u: %s", d.v[0].line, d.v[0].col, d.v[0].msg);
	*ndiags = d.n;
	gw_diags_free(&d);
	unlink(path);
	return rc;
}

static void test_review_inventory_problems_are_placed(void **state)
{
	(void)state;
	struct gw_inventory inv;
	char first[512];
	size_t nd;
	assert_int_equal(inventory_of(&inv, first, sizeof(first), &nd,
				      "nodes:\n  - name: web-01\n    labels: {role: edge}\n  - name: db\n"),
			 0);
	assert_int_equal(inv.n, 2);
	assert_string_equal(inv.v[0].name, "web-01");
	assert_string_equal(gw_strmap_get(&inv.v[0].labels, "role"), "edge");
	assert_string_equal(gw_strmap_get(&inv.v[0].labels, "node"), "web-01");
	assert_string_equal(gw_strmap_get(&inv.v[1].labels, "node"), "db");
	gw_inventory_free(&inv);
	assert_int_equal(inv.n, 0);

	static const struct {
		const char *yaml, *first;
		size_t n;
	} bad[] = {
		{ "other: 1\n", "1:1: expected one document with \"nodes:\", a list of {name, labels}", 1 },
		{ "nodes: []\n", "1:8: expected one document with \"nodes:\", a list of {name, labels}", 1 },
		{ "nodes: {a: b}\n", "1:8: expected one document with \"nodes:\", a list of {name, labels}", 1 },
		{ "nodes: [{name: a}]\n---\nnodes: [{name: b}]\n",
		  "1:1: expected one document with \"nodes:\", a list of {name, labels}", 1 },
		{ "nodes:\n  - just-a-string\n", "2:5: nodes: expected a mapping with name and labels", 1 },
		{ "nodes:\n  - {name: a, color: red}\n", "2:15: color: unknown field (name, labels)", 1 },
		{ "nodes:\n  - {labels: {a: b}}\n", "2:5: name: expected the node's name", 1 },
		{ "nodes:\n  - {name: [x]}\n", "2:12: name: expected the node's name", 1 },
		{ "nodes:\n  - {name: a}\n  - {name: a}\n", "3:12: name: node \"a\" is listed twice", 1 },
		{ "nodes:\n  - {name: a, labels: [x]}\n", "2:23: labels: expected a mapping of label: value", 1 },
		{ "nodes:\n  - {name: a, labels: {node: b, k: [1]}}\n",
		  "2:24: labels.node: expected a string (and not \"node\", which is the name)", 2 },
		{ "nodes: [\n", "", 1 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = inventory_of(&inv, first, sizeof(first), &nd, bad[i].yaml);
		if (rc != -EINVAL || nd != bad[i].n || (*bad[i].first && strcmp(first, bad[i].first) != 0))
			fail_msg("case %zu: rc %d, %zu diags, first \"%s\"", i, rc, nd, first);
		assert_int_equal(inv.n, 0);
		assert_null(inv.v);
	}
	/* a name the node option refuses */
	assert_int_equal(inventory_of(&inv, first, sizeof(first), &nd, "nodes:\n  - {name: \"a b/c\"}\n"), -EINVAL);
	assert_int_equal(strncmp(first, "2:12: name: ", 12), 0);
	/* a file that cannot be read */
	struct gw_diags d;
	gw_diags_init(&d);
	assert_int_equal(gw_inventory_load(&inv, "/no/such/inventory.yaml", &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].file, "/no/such/inventory.yaml");
	assert_non_null(strstr(d.v[0].msg, "No such file or directory"));
	gw_diags_free(&d);
}

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void test_review_status_documents(void **state)
{
	(void)state;
	struct gw_observed *v = NULL;
	size_t n = 0;
	struct gw_review_node nd = { 0 };
	struct gw_error err;
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "[]", "s.json: not the JSON of `gitward status --output json`: no \"resources\" list" },
		{ "{\"resources\": {}}",
		  "s.json: not the JSON of `gitward status --output json`: no \"resources\" list" },
		{ "{\"resources\": [{\"name\": \"p\", \"spec_hash\": \"" HASH_A "\"}]}",
		  "s.json: not the JSON of `gitward status --output json`: resources[0]: expected kind, name and a "
		  "spec_hash of 64 hex" },
		{ "{\"resources\": [{\"kind\": \"Process\", \"name\": \"p\", \"spec_hash\": \"" HASH_A "\"},"
		  "{\"kind\": \"Bogus\", \"name\": \"q\", \"spec_hash\": \"" HASH_A "\"}]}",
		  "s.json: not the JSON of `gitward status --output json`: resources[1]: expected kind, name and a "
		  "spec_hash of 64 hex" },
		{ "{\"resources\": [{\"kind\": \"Process\", \"name\": \"p\", \"spec_hash\": \"abc\"}]}",
		  "s.json: not the JSON of `gitward status --output json`: resources[0]: expected kind, name and a "
		  "spec_hash of 64 hex" },
		{ "{\"labels\": [\"edge\"], \"resources\": []}",
		  "s.json: not the JSON of `gitward status --output json`: \"labels\": expected an object of "
		  "at most 256 strings" },
		{ "{\"labels\": {\"role\": 1}, \"resources\": []}",
		  "s.json: not the JSON of `gitward status --output json`: \"labels\": expected an object of "
		  "at most 256 strings" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
			gw_review_observed_from_status(&v, &n, &nd, bad[i].text, strlen(bad[i].text), "s.json", &err),
			-EBADMSG);
		assert_string_equal(err.msg, bad[i].msg);
	}
	const char junk[] = "{not json";
	assert_int_equal(gw_review_observed_from_status(&v, &n, &nd, junk, strlen(junk), "s.json", &err), -EBADMSG);
	static const char prefix[] = "s.json: not the JSON of `gitward status --output json`: ";
	assert_int_equal(strncmp(err.msg, prefix, sizeof(prefix) - 1), 0);
	assert_true(strlen(err.msg) > sizeof(prefix) - 1); /* and jansson's reason */

	const char good[] =
		"{\"node\": \"web-01\", \"labels\": {\"role\": \"edge\", \"node\": \"other\"}, \"commit\": \"c0ffee\", "
		"\"resources\": ["
		"{\"kind\": \"Process\", \"name\": \"p\", \"spec_hash\": \"" HASH_A "\", \"state\": \"running\","
		" \"health\": \"healthy\", \"detail\": \"pid 7\", \"restarts\": 2},"
		"{\"kind\": \"Container\", \"name\": \"c\", \"spec_hash\": \"" HASH_A "\", \"state\": \"sideways\","
		" \"health\": \"odd\"},"
		"{\"kind\": \"VM\", \"name\": \"v\", \"spec_hash\": \"" HASH_A "\"}]}";
	assert_int_equal(gw_review_observed_from_status(&v, &n, &nd, good, strlen(good), "s", &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(nd.node, "web-01");
	assert_string_equal(nd.commit, "c0ffee");
	/* the labels, less "node" (the node's name is "node" apart) */
	assert_true(nd.has_labels);
	assert_int_equal(nd.labels.n, 1);
	assert_string_equal(gw_strmap_get(&nd.labels, "role"), "edge");
	assert_int_equal(v[0].state, GW_STATE_RUNNING);
	assert_int_equal(v[0].health, GW_HEALTH_HEALTHY);
	assert_string_equal(v[0].detail, "pid 7");
	assert_int_equal(v[0].restarts, 2);
	assert_int_equal(v[1].kind, GW_KIND_CONTAINER);
	assert_int_equal(v[1].state, GW_STATE_PENDING);
	assert_int_equal(v[1].health, GW_HEALTH_UNKNOWN);
	assert_int_equal(v[2].state, GW_STATE_PENDING);
	assert_string_equal(v[2].detail, "");
	gw_review_observed_free(v, n);
	gw_review_node_free(&nd);
	const char bare[] = "{\"resources\": []}";
	assert_int_equal(gw_review_observed_from_status(&v, &n, &nd, bare, strlen(bare), "s", &err), 0);
	assert_int_equal(n, 0);
	assert_null(nd.node);
	assert_null(nd.commit);
	assert_false(nd.has_labels); /* a document of an earlier version */
	gw_review_observed_free(v, n);
	gw_review_node_free(&nd);

	/* where a status comes from */
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(gw_review_status_read(&text, &len, "/no/such/status.json", &err), -ENOENT);
	assert_int_equal(strncmp(err.msg, "--against", 9), 0);
	assert_non_null(strstr(err.msg, "No such file or directory"));
	assert_int_equal(gw_review_status_read(&text, &len, "http://127.0.0.1:1/status", &err), -EIO);
	assert_string_equal(err.msg, "--against http://127.0.0.1:1/status: Couldn't connect to server");
	char path[] = "/tmp/gw-status-XXXXXX";
	int fd = mkstemp(path);
	assert_int_equal(write(fd, bare, strlen(bare)), (ssize_t)strlen(bare));
	close(fd);
	assert_int_equal(gw_review_status_read(&text, &len, path, &err), 0);
	assert_int_equal(len, strlen(bare));
	assert_memory_equal(text, bare, len);
	free(text);
	unlink(path);
}

#define RHDR "apiVersion: gitward/v1\nkind: Process\n"

/* One plan through obs for labels: the counts per action type. */
static void plan_through(struct gw_pass *pass, struct gw_observer *obs, const struct gw_strmap *labels, bool prune)
{
	struct gw_pass_opts po = { .node = "web-01", .labels = labels, .prune = prune };
	struct gw_error err;
	char *state_error = NULL;
	assert_int_equal(gw_pass_observe_plan(pass, obs, labels, &po, &state_error, &err), 0);
	assert_null(state_error);
}

static void test_review_plans_between_commits_and_against_a_status(void **state)
{
	(void)state;
	struct gw_pass pass;
	struct gw_observer_commit base;
	struct gw_observer_status status;
	struct gw_planned first;
	struct gw_error err;
	const char base_yaml[] =
		RHDR "metadata: {name: keep}\nspec: {command: [/bin/true]}\n---\n" RHDR
		     "metadata: {name: change}\nspec: {command: [/bin/true]}\n---\n" RHDR
		     "metadata: {name: gone}\nspec: {command: [/bin/true]}\n---\n" RHDR
		     "metadata: {name: elsewhere}\nspec: {command: [/bin/true], nodeSelector: {role: db}}\n";
	const char head[] = RHDR "metadata: {name: keep}\nspec: {command: [/bin/true]}\n---\n" RHDR
				 "metadata: {name: change}\nspec: {command: [/bin/false]}\n---\n" RHDR
				 "metadata: {name: new}\nspec: {command: [/bin/true]}\n";
	gw_pass_init(&pass);
	gw_observer_commit_init(&base, "main~1");
	assert_true(base.base.review); /* a review never refuses an empty plan */
	gw_manifest_set_add_file(&base.set, "base.yaml", base_yaml, strlen(base_yaml));
	gw_manifest_set_finish(&base.set);
	gw_manifest_set_add_file(&pass.set, "head.yaml", head, strlen(head));
	gw_manifest_set_finish(&pass.set);
	assert_int_equal(base.set.diags.n, 0);
	assert_int_equal(pass.set.diags.n, 0);
	struct gw_strmap labels = { 0 };
	gw_strmap_set(&labels, "node", "web-01");
	gw_strmap_set(&labels, "role", "edge");

	/* the base commit as the observer: head's selection against base's */
	plan_through(&pass, &base.base, &labels, true);
	assert_int_equal(pass.nobserved, 3); /* "elsewhere" is not this node's */
	assert_int_equal(pass.plan.count[GW_ACTION_NONE], 1);
	assert_int_equal(pass.plan.count[GW_ACTION_UPDATE], 1);
	assert_int_equal(pass.plan.count[GW_ACTION_CREATE], 1);
	assert_int_equal(pass.plan.count[GW_ACTION_DELETE], 1);
	for (size_t i = 0; i < pass.plan.n; i++)
		if (pass.plan.v[i].type == GW_ACTION_UPDATE) {
			assert_string_equal(pass.plan.v[i].name, "change");
			assert_true(pass.plan.v[i].nchanges >= 1);
		}
	/* a plan taken out stays whole while the pass plans the next node */
	gw_pass_take(&first, &pass);
	assert_null(pass.observed);
	/* without pruning, nothing is deleted */
	plan_through(&pass, &base.base, &labels, false);
	assert_int_equal(pass.plan.count[GW_ACTION_DELETE], 0);
	assert_int_equal(first.plan.count[GW_ACTION_DELETE], 1);
	gw_planned_free(&first);

	/* a status as the observer: the recorded hash that matches the
	 * recorded commit gets its spec */
	const struct gw_resource *change = NULL;
	for (size_t i = 0; i < base.set.n; i++)
		if (!strcmp(base.set.v[i]->name, "change"))
			change = base.set.v[i];
	assert_non_null(change);
	char *doc = gw_xmalloc(1024);
	snprintf(doc, 1024,
		 "{\"node\": \"web-01\", \"labels\": {\"role\": \"edge\"}, \"commit\": \"%s\", \"resources\": ["
		 "{\"kind\": \"Process\", \"name\": \"change\", \"spec_hash\": \"%s\", \"state\": \"running\"},"
		 "{\"kind\": \"Process\", \"name\": \"other\", \"spec_hash\": \"%s\", \"state\": \"running\"}]}",
		 HASH_A, change->spec_hash, HASH_A);
	assert_int_equal(gw_observer_status_init(&status, doc, strlen(doc), "s.json", &err), 0);
	assert_string_equal(status.node.node, "web-01");
	assert_string_equal(gw_strmap_get(&status.node.labels, "role"), "edge");
	assert_string_equal(status.node.commit, HASH_A);
	gw_manifest_set_add_file(&status.recorded, "base.yaml", base_yaml, strlen(base_yaml));
	gw_manifest_set_finish(&status.recorded);
	assert_false(status.base.review);
	plan_through(&pass, &status.base, &labels, true);
	assert_int_equal(pass.nobserved, 2);
	assert_string_equal(pass.observed[0].canonical, change->canonical);
	assert_null(pass.observed[1].canonical); /* no spec of that hash recorded */
	assert_int_equal(pass.plan.count[GW_ACTION_UPDATE], 1);
	assert_int_equal(pass.plan.count[GW_ACTION_DELETE], 1);
	assert_int_equal(pass.plan.count[GW_ACTION_CREATE], 2);
	gw_observer_free(&status.base);
	/* a document that is not a status fails before any fetch, and is freed */
	char *bad = gw_xstrdup("{\"resources\": 3}");
	assert_int_equal(gw_observer_status_init(&status, bad, strlen(bad), "s.json", &err), -EBADMSG);
	assert_string_equal(err.msg, "s.json: not the JSON of `gitward status --output json`: no \"resources\" list");
	gw_strmap_free(&labels);
	gw_observer_free(&base.base);
	gw_pass_free(&pass);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_independent_creates_overlap_and_dependents_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health_gates_dependents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_keeps_updates_and_deletes_not_creates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unhealthy_dependency_holds_its_dependents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_failing_resource_does_not_stop_the_others, setup, teardown),
		cmocka_unit_test(test_backoff_doubles_to_its_cap),
		cmocka_unit_test_setup_teardown(test_restarts_back_off_1_2_4_s_and_reset_after_a_stable_run, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_heal_passes_probe_each_check_when_due_and_restart_at_retries,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_never_leaves_a_crashed_workload_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_since_moves_when_a_workload_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deletes_run_dependents_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edited_env_file_restarts_its_process_or_container, setup_two,
						teardown),
		cmocka_unit_test(test_review_inventory_problems_are_placed),
		cmocka_unit_test(test_review_status_documents),
		cmocka_unit_test(test_review_plans_between_commits_and_against_a_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
