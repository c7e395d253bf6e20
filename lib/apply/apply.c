/* Applying one pass: observe through the backends (merged with the state
 * file's bookkeeping), probe health, execute the plan in dependency order —
 * independent resources in parallel, a failure isolated to its resource and
 * its dependents — apply the restart policy with capped exponential backoff,
 * then record the outcome atomically. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/apply.h"
#include "gitward/prof.h"
#include "gitward/paths.h"

#define MAX_WORKERS 8
#define BACKOFF_BASE_MS 1000
#define BACKOFF_MAX_MS 300000
#define STABLE_AFTER_S 60 /* a workload up this long has stopped crash-looping */

/* ---- a small pool: run fn(i) for i in [0, n) on up to MAX_WORKERS threads ---- */

struct pool {
	pthread_mutex_t mu;
	size_t next, n;
	void (*fn)(size_t i, void *ud);
	void *ud;
};

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		size_t i = p->next < p->n ? p->next++ : p->n;
		pthread_mutex_unlock(&p->mu);
		if (i >= p->n)
			return NULL;
		p->fn(i, p->ud);
	}
}

/* The one place that starts threads: worker(arg) on up to MAX_WORKERS
 * threads for n jobs, the calling thread being one of them. */
static void run_workers(size_t n, void *(*worker)(void *), void *arg)
{
	pthread_t t[MAX_WORKERS];
	size_t nt = n < MAX_WORKERS ? n : MAX_WORKERS, started = 0;
	if (n == 0)
		return;
	for (size_t i = 1; i < nt; i++)
		if (pthread_create(&t[started], NULL, worker, arg) == 0)
			started++;
	worker(arg);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
}

static void parallel(size_t n, void (*fn)(size_t i, void *ud), void *ud)
{
	struct pool p = { .mu = PTHREAD_MUTEX_INITIALIZER, .n = n, .fn = fn, .ud = ud };
	run_workers(n, pool_worker, &p);
}

static int64_t now_ms(const struct gw_pass *pass)
{
	return pass->now_ms ? pass->now_ms() : gw_now_ms();
}

/* "Kind/name", the key of a resource's log lines. */
static const char *key_of(char *buf, size_t size, enum gw_kind kind, const char *name)
{
	snprintf(buf, size, "%s/%s", gw_kind_to_string(kind), name);
	return buf;
}

/* How the backend shows a handle to people ("pid 4242"); "" when it does not. */
static const char *describe_text(char *buf, size_t size, const struct gw_backend *b, const char *handle)
{
	buf[0] = '\0';
	if (b && b->ops->describe) {
		json_t *fields = json_object();
		b->ops->describe(fields, buf, size, b, handle);
		json_decref(fields);
	}
	return buf;
}

struct gw_state_describer gw_apply_describer(const struct gw_backend_set *set)
{
	return (struct gw_state_describer){ gw_backend_set_describe, (void *)set };
}

/* ---- observe ---- */

static const struct gw_resource *desired_for(const struct gw_pass *pass, enum gw_kind kind, const char *name)
{
	for (size_t i = 0; i < pass->nselected; i++)
		if (pass->selected[i]->kind == kind && !strcmp(pass->selected[i]->name, name))
			return pass->selected[i];
	return NULL;
}

static struct gw_observed *state_entry(struct gw_state_file *st, enum gw_kind kind, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->res[i].kind == kind && !strcmp(st->res[i].name, name))
			return &st->res[i];
	return NULL;
}

static void copy_digests(struct gw_strmap *dst, const struct gw_strmap *src)
{
	memset(dst, 0, sizeof(*dst));
	for (size_t i = 0; i < src->n; i++)
		gw_strmap_set(dst, src->k[i], src->v[i]);
}

static void copy_observed(struct gw_observed *dst, const struct gw_observed *src)
{
	*dst = *src;
	dst->name = gw_xstrdup(src->name);
	dst->canonical = src->canonical ? gw_xstrdup(src->canonical) : NULL;
	dst->handle = src->handle ? gw_xstrdup(src->handle) : NULL;
	copy_digests(&dst->env_digests, &src->env_digests);
	dst->env_changed = src->env_changed ? gw_xstrdup(src->env_changed) : NULL;
	dst->restart_requested = src->restart_requested;
	memset(&dst->depends_on, 0, sizeof(dst->depends_on));
	if (src->depends_on.n) {
		dst->depends_on.v = gw_xcalloc(src->depends_on.n + 1, sizeof(char *));
		for (size_t i = 0; i < src->depends_on.n; i++)
			dst->depends_on.v[dst->depends_on.n++] = gw_xstrdup(src->depends_on.v[i]);
	}
}

struct probe_job {
	struct gw_pass *pass;
	const struct gw_backend_set *set;
	int64_t now; /* wall clock ms: when this pass's probes begin */
};

/* Does o get a health probe in this pass? A running workload of the
 * desired spec with a check: in every pass, but in a heal pass only when
 * its interval has passed (or is about to), so each check keeps its own
 * clock however often heal passes run. */
static bool probe_wanted(const struct gw_pass *pass, const struct gw_observed *o, const struct gw_resource *r,
			 int64_t now)
{
	if (pass->backend_error[o->kind][0] || o->state != GW_STATE_RUNNING || !r || r->health_type == GW_CHECK_NONE ||
	    strcmp(r->spec_hash, o->spec_hash) != 0)
		return false;
	/* never probed, or the clock went back: due */
	if (!pass->probe_due_only || !o->probed_at_ms || o->probed_at_ms > now)
		return true;
	return o->probed_at_ms + gw_resource_health_interval_ms(r) <= now + GW_APPLY_PROBE_EARLY_MS;
}

/* A probe's verdict on o: healthy, or one more failure in a row, and
 * unhealthy once there are retries of them. */
static void probe_verdict(struct gw_observed *o, const struct gw_resource *r, int rc, const struct gw_error *err)
{
	int64_t retries = r->health_retries ? r->health_retries : 3;
	char key[200];

	if (rc == 0) {
		o->health = GW_HEALTH_HEALTHY;
		o->health_failures = 0;
		return;
	}
	if (o->health_failures < retries) /* counts up to retries, then stays */
		o->health_failures++;
	if (o->health_failures >= retries) {
		o->health = GW_HEALTH_UNHEALTHY;
		snprintf(o->detail, sizeof(o->detail), "unhealthy: %s", err->msg);
	} else {
		o->health = GW_HEALTH_UNKNOWN;
	}
	gw_log(GW_LOG_WARN, key_of(key, sizeof(key), o->kind, o->name), "health check failed (%d of %lld%s): %s",
	       o->health_failures, (long long)retries, o->health == GW_HEALTH_UNHEALTHY ? ", unhealthy" : "", err->msg);
}

static void probe_one(size_t i, void *ud)
{
	struct probe_job *j = ud;
	struct gw_observed *o = &j->pass->observed[i];
	const struct gw_resource *r = desired_for(j->pass, o->kind, o->name);
	struct gw_error err;

	if (j->pass->backend_error[o->kind][0])
		return; /* cannot look: keep what was known */
	if (!probe_wanted(j->pass, o, r, j->now)) {
		/* not probed now: a running workload keeps its last verdict */
		if (o->state != GW_STATE_RUNNING || (r && r->health_type == GW_CHECK_NONE))
			o->health = GW_HEALTH_UNKNOWN;
		return;
	}
	int rc = gw_health_probe(o, r, gw_backend_set_for(j->set, o->kind), j->pass->cancel, &err);
	if (rc == -ECANCELED)
		return; /* the agent is stopping: no verdict, keep what was known */
	o->probed_at_ms = j->now;
	o->probe_every_ms = gw_resource_health_interval_ms(r);
	probe_verdict(o, r, rc, &err);
}

/* Will probe_one run a health check for any observation? */
static bool any_probe(const struct gw_pass *pass, int64_t now)
{
	for (size_t i = 0; i < pass->nobserved; i++) {
		const struct gw_observed *o = &pass->observed[i];
		if (probe_wanted(pass, o, desired_for(pass, o->kind, o->name), now))
			return true;
	}
	return false;
}

/* The observations being gathered: grown as each backend answers. */
struct seen {
	struct gw_observed *v;
	size_t n;
};

static void seen_add_copy(struct seen *all, const struct gw_observed *o)
{
	all->v = gw_xrealloc(all->v, (all->n + 1) * sizeof(*all->v));
	copy_observed(&all->v[all->n++], o);
}

/* What the state file recorded of kind k, as it was: a backend this build
 * lacks, or one that cannot look now, leaves its workloads untouched. */
static void keep_recorded(struct seen *all, const struct gw_state_file *st, enum gw_kind k)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->res[i].kind == k)
			seen_add_copy(all, &st->res[i]);
}

/* A resource that never started (its create failed) is known only from the
 * state file: keep it so the restart policy applies. */
static void keep_never_started(struct seen *all, const struct gw_state_file *st, enum gw_kind k)
{
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *rec = &st->res[i];
		int seen = 0;
		if (rec->kind != k || rec->handle || rec->state == GW_STATE_RUNNING)
			continue;
		for (size_t j = 0; j < all->n; j++)
			if (all->v[j].kind == rec->kind && !strcmp(all->v[j].name, rec->name))
				seen = 1;
		if (!seen)
			seen_add_copy(all, rec);
	}
}

/* Is kind k wanted by the commit or known to the state file? */
static bool kind_needed(const struct gw_pass *pass, enum gw_kind k)
{
	for (size_t i = 0; i < pass->nselected; i++)
		if (pass->selected[i]->kind == k)
			return true;
	for (size_t i = 0; i < pass->state.n; i++)
		if (pass->state.res[i].kind == k)
			return true;
	return false;
}

/* The health verdict of the state file, for a pass that does not probe o
 * (a heal pass before its check is due): the same workload, still running. */
static void carry_health(struct gw_observed *o, const struct gw_observed *rec)
{
	o->probe_every_ms = rec->probe_every_ms;
	if (o->state != GW_STATE_RUNNING || rec->state != GW_STATE_RUNNING ||
	    strcmp(o->handle ? o->handle : "", rec->handle ? rec->handle : "") != 0)
		return; /* another instance: probed at the next pass */
	o->probed_at_ms = rec->probed_at_ms;
	o->health = rec->health;
	if (!o->detail[0] && rec->health == GW_HEALTH_UNHEALTHY)
		memcpy(o->detail, rec->detail, sizeof(o->detail));
}

/* Ask the backend of kind k what runs, carrying the restart bookkeeping of
 * the state file over to what is unchanged. */
static void observe_kind(struct seen *all, struct gw_pass *pass, struct gw_backend *b, enum gw_kind k)
{
	struct gw_backend_call call = { .cancel = pass->cancel };
	struct gw_observed *found = NULL;
	size_t nfound = 0;
	struct gw_error berr;

	if (!b) {
		keep_recorded(all, &pass->state, k); /* no backend in this build */
		return;
	}
	/* an engine this node does not have is no error while nothing of that
	 * kind is wanted or known here */
	if (!kind_needed(pass, k) && (b->error[0] || (b->ops->supported && b->ops->supported(b, &berr) < 0)))
		return;
	if (b->error[0] || b->ops->discover(&found, &nfound, b, &call, &berr) < 0) {
		snprintf(pass->backend_error[k], sizeof(pass->backend_error[k]), "%s",
			 b->error[0] ? b->error : berr.msg);
		gw_log(GW_LOG_ERROR, "", "%s backend: %s", b->ops->name, pass->backend_error[k]);
		keep_recorded(all, &pass->state, k); /* reported failed, untouched */
		return;
	}
	all->v = gw_xrealloc(all->v, (all->n + nfound + 1) * sizeof(*all->v));
	for (size_t i = 0; i < nfound; i++) {
		struct gw_observed *o = &found[i];
		const struct gw_observed *rec = state_entry(&pass->state, o->kind, o->name);
		if (rec) {
			memcpy(o->last_action, rec->last_action, sizeof(o->last_action));
			memcpy(o->last_trigger, rec->last_trigger, sizeof(o->last_trigger));
			o->last_action_at = rec->last_action_at;
		}
		if (rec && !strcmp(rec->spec_hash, o->spec_hash)) {
			o->restarts = rec->restarts;
			o->crash_streak = rec->crash_streak;
			o->backoff_until_ms = rec->backoff_until_ms;
			o->health_failures = rec->health_failures;
			gw_strmap_free(&o->env_digests);
			copy_digests(&o->env_digests, &rec->env_digests);
			carry_health(o, rec);
		}
		o->crash_streak = gw_apply__crash_streak(o, now_ms(pass) / 1000);
		all->v[all->n++] = *o; /* now owned by all */
	}
	free(found);
	keep_never_started(all, &pass->state, k);
}

int gw_apply_observe(struct gw_pass *pass, const char *state_dir, const struct gw_backend_set *set, char **state_error,
		     struct gw_error *err)
{
	char path[4096], buf[GW_ERROR_MSG_MAX + 300];
	struct gw_error serr;
	struct seen all = { 0 };

	(void)err;
	*state_error = NULL;
	gw_path_state_file(path, sizeof(path), state_dir);
	if (gw_state_load(&pass->state, path, &serr) < 0) {
		/* the real world below still tells what runs: no duplicates */
		*state_error = gw_xstrdup(gw_error_format(buf, sizeof(buf), &serr));
		gw_log(GW_LOG_ERROR, "", "%s; observing the node without it", *state_error);
		gw_state_file_init(&pass->state);
	}
	GW_PROF_BEGIN(discover);
	for (int k = 0; k < GW_KIND_MAX; k++)
		observe_kind(&all, pass, gw_backend_set_for(set, (enum gw_kind)k), (enum gw_kind)k);
	GW_PROF_END(discover, "  discover");
	for (size_t i = 0; i < all.n; i++) /* what cannot be looked at now is left as recorded */
		if (gw_backend_set_for(set, all.v[i].kind) && !pass->backend_error[all.v[i].kind][0])
			gw_apply__env_check(&all.v[i], desired_for(pass, all.v[i].kind, all.v[i].name));
	pass->observed = all.v;
	pass->nobserved = all.n;
	struct probe_job job = { .pass = pass, .set = set, .now = now_ms(pass) };
	GW_PROF_BEGIN(probe);
	if (any_probe(pass, job.now))
		parallel(all.n, probe_one, &job);
	else /* nothing to wait for: no threads */
		for (size_t i = 0; i < all.n; i++)
			probe_one(i, &job);
	GW_PROF_END(probe, "  health probes");
	return 0;
}

/* ---- execute ---- */

int64_t gw_apply__backoff_ms(int streak)
{
	return gw_backoff_ms(BACKOFF_BASE_MS, streak, BACKOFF_MAX_MS);
}

int gw_apply__crash_streak(const struct gw_observed *o, long long now_s)
{
	if (o->state == GW_STATE_RUNNING && o->started_at && now_s - o->started_at >= STABLE_AFTER_S)
		return 0;
	return o->crash_streak;
}

/* When the next restart may happen after the streak-th one in a row. */
static int64_t backoff_until(const struct gw_pass *pass, int streak)
{
	return now_ms(pass) + gw_apply__backoff_ms(streak);
}

struct job {
	struct gw_action *a;
	enum gw_outcome out;
	int started, finished;
	char detail[300];
	struct gw_observed result; /* the workload after the action */
	int have_result;
	int deleted;
};

struct exec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *jobs;
	size_t n, done, running;
	const struct gw_backend_set *set;
	const struct gw_pass *pass;
};

/* Stop settings of a resource known only from its canonical form (it left
 * Git): parse them back so a deletion honours stopSignal/stopTimeout. */
static void stub_from_canonical(struct gw_resource *stub, const struct gw_observed *o)
{
	memset(stub, 0, sizeof(*stub));
	stub->kind = o->kind;
	stub->name = o->name;
	json_t *root = o->canonical ? json_loads(o->canonical, 0, NULL) : NULL;
	json_t *spec = json_object_get(root, "spec");
	const char *sig = json_string_value(json_object_get(spec, "stopSignal"));
	const char *to = json_string_value(json_object_get(spec, "stopTimeout"));
	if (sig)
		gw_signal_from_string(&stub->stop_signal, sig);
	if (to)
		gw_duration_parse(&stub->stop_timeout_ms, to);
	json_decref(root);
}

static int wait_healthy(struct gw_observed *o, const struct gw_resource *r, struct gw_backend *b,
			const struct gw_cancel *cancel, struct gw_error *err)
{
	int64_t interval = r->health_interval_ms ? r->health_interval_ms : 10000;
	int64_t retries = r->health_retries ? r->health_retries : 3;
	int64_t timeout = r->health_timeout_ms ? r->health_timeout_ms : 2000;
	int64_t budget = interval * retries + timeout;
	if (budget < 5000)
		budget = 5000;
	if (budget > 300000)
		budget = 300000;
	int64_t deadline = gw_monotonic_ms() + budget;
	for (;;) {
		int rc = gw_health_probe(o, r, b, cancel, err);
		if (rc == 0) {
			o->health = GW_HEALTH_HEALTHY;
			o->health_failures = 0;
			return 0;
		}
		if (rc == -ECANCELED || gw_cancel_sleep(cancel, 200) < 0)
			return gw_error_set(err, -ECANCELED, "not yet healthy when the agent stopped");
		if (gw_monotonic_ms() >= deadline) {
			o->health = GW_HEALTH_UNHEALTHY;
			o->health_failures = (int)retries;
			return -ETIMEDOUT;
		}
	}
}

/* One action's context: its job, backend, and log line fields. */
struct act {
	struct exec *ex;
	struct job *j;
	struct gw_backend *b;
	struct gw_backend_call call;
	char key[200];
	struct gw_log_fields lf; /* JSON lines carry the action, the commit and the time since it began */
	int64_t t0;
};

static void act_log(struct act *c, enum gw_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void act_log(struct act *c, enum gw_log_level level, const char *fmt, ...)
{
	char msg[GW_ERROR_MSG_MAX + 600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->lf.duration_ms = gw_monotonic_ms() - c->t0;
	gw_log_with(level, c->key, &c->lf, "%s", msg);
}

/* The job ends with out and the detail (also logged at level). */
static void act_end(struct act *c, enum gw_outcome out, enum gw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void act_end(struct act *c, enum gw_outcome out, enum gw_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->j->detail, sizeof(c->j->detail), fmt, ap);
	va_end(ap);
	c->j->out = out;
	act_log(c, level, "%s", c->j->detail);
}

/* Step 1: can this action run now? 0 yes; else the job has ended. */
static int act_may_run(struct act *c)
{
	const struct gw_action *a = c->j->a;
	const struct gw_pass *pass = c->ex->pass;
	if (!c->b) {
		act_end(c, GW_OUT_FAILED, GW_LOG_ERROR, "no %s backend in this build", gw_kind_to_string(a->kind));
		return -ENOTSUP;
	}
	if (pass->backend_error[a->kind][0]) {
		act_end(c, GW_OUT_FAILED, GW_LOG_ERROR, "%s", pass->backend_error[a->kind]);
		return -EIO;
	}
	if (a->type == GW_ACTION_RESTART && !a->deliberate && a->observed->backoff_until_ms > now_ms(pass)) {
		act_end(c, GW_OUT_WAITING, GW_LOG_INFO, "%s; restart backoff, next try in %llds", a->reason,
			(long long)((a->observed->backoff_until_ms - now_ms(pass) + 999) / 1000));
		return -EAGAIN;
	}
	return 0;
}

/* Step 2: workloads are immutable: a changed, dead or deleted one is
 * removed first (a create over a leftover too). 0: go on. */
static int act_stop_old(struct act *c)
{
	const struct gw_action *a = c->j->a;
	const struct gw_observed *o = a->observed;
	struct gw_resource stub;
	const struct gw_resource *stop = a->desired;
	struct gw_error err = { 0 };
	char what[100];

	if (!o || (a->type == GW_ACTION_CREATE && !o->handle))
		return 0;
	if (a->type != GW_ACTION_RESTART || !a->desired) {
		stub_from_canonical(&stub, o);
		stop = &stub;
	}
	describe_text(what, sizeof(what), c->b, o->handle);
	act_log(c, GW_LOG_INFO, "%s: stopping %s", gw_action_to_string(a->type), what[0] ? what : "the workload");
	int rc = c->b->ops->destroy(c->b, o, stop, &c->call, &err);
	if (rc == -ECANCELED) {
		/* left as it was: the next agent plans this again */
		act_end(c, GW_OUT_WAITING, GW_LOG_WARN, "%s", err.msg);
		return rc;
	}
	if (rc < 0) {
		act_end(c, GW_OUT_FAILED, GW_LOG_ERROR, "stop failed: %s", err.msg);
		return rc;
	}
	return 0;
}

/* Step 3: start the new workload, counting a restart against the policy. */
static int act_start(struct act *c)
{
	struct job *j = c->j;
	const struct gw_action *a = j->a;
	struct gw_error err = { 0 };
	struct gw_strmap digests = { 0 };
	char what[100];

	gw_apply__env_record(&digests, a->desired); /* before the files are read */
	int rc = c->b->ops->create(&j->result, c->b, a->desired, &c->call, &err);
	if (rc < 0) {
		gw_strmap_free(&digests);
		j->out = GW_OUT_FAILED;
		snprintf(j->detail, sizeof(j->detail), "%s", err.msg);
		act_log(c, GW_LOG_ERROR, "%s failed: %s", gw_action_to_string(a->type), err.msg);
		return rc;
	}
	j->have_result = 1;
	gw_strmap_free(&j->result.env_digests);
	j->result.env_digests = digests; /* now owned by the result */
	j->result.probe_every_ms = gw_resource_health_interval_ms(a->desired);
	if (a->observed && a->type == GW_ACTION_RESTART) {
		j->result.restarts = a->observed->restarts + 1;
		/* a deliberate restart leaves the policy's clock as it was */
		j->result.crash_streak = a->observed->crash_streak + !a->deliberate;
		j->result.backoff_until_ms = a->deliberate ? a->observed->backoff_until_ms
							   : backoff_until(c->ex->pass, j->result.crash_streak);
	}
	describe_text(what, sizeof(what), c->b, j->result.handle);
	act_log(c, GW_LOG_INFO, "%s: started%s%s", gw_action_to_string(a->type), what[0] ? " " : "", what);
	return 0;
}

/* Step 4: with a health check, dependents wait until it passes. */
static void act_gate_health(struct act *c)
{
	struct job *j = c->j;
	const struct gw_action *a = j->a;
	struct gw_error err = { 0 };

	if (a->desired->health_type == GW_CHECK_NONE) {
		j->out = GW_OUT_OK;
		return;
	}
	int rc = wait_healthy(&j->result, a->desired, c->b, c->call.cancel, &err);
	if (rc != -ECANCELED) /* its last probe: the check's clock starts here */
		j->result.probed_at_ms = now_ms(c->ex->pass);
	if (rc == -ECANCELED) {
		/* it runs and is recorded; the next pass probes it */
		j->result.health = GW_HEALTH_UNKNOWN;
		act_end(c, GW_OUT_WAITING, GW_LOG_WARN, "started; %s", err.msg);
	} else if (rc < 0) {
		snprintf(j->result.detail, sizeof(j->result.detail), "unhealthy: %s", err.msg);
		act_end(c, GW_OUT_FAILED, GW_LOG_ERROR, "started but unhealthy: %s", err.msg);
	} else {
		j->out = GW_OUT_OK;
		act_log(c, GW_LOG_INFO, "healthy");
	}
}

/* A disruptive action (a changed spec, a removal) while pass->held: not
 * run. A create and a heal (restart) always run. */
static bool held_action(const struct gw_pass *pass, const struct gw_action *a)
{
	return pass->held && (a->type == GW_ACTION_UPDATE || a->type == GW_ACTION_DELETE);
}

/* A held dependency lets its dependents go when its old workload runs
 * (and is not unhealthy): they start beside what they already ran with.
 * One that does not run keeps them waiting, as a failed one does. */
static bool dep_ok(const struct job *dep)
{
	if (dep->out == GW_OUT_OK)
		return true;
	const struct gw_observed *o = dep->a->observed;
	return dep->out == GW_OUT_HELD && o && o->state == GW_STATE_RUNNING && o->health != GW_HEALTH_UNHEALTHY;
}

static void run_action(struct exec *ex, struct job *j)
{
	const struct gw_action *a = j->a;
	struct act c = { .ex = ex,
			 .j = j,
			 .b = gw_backend_set_for(ex->set, a->kind),
			 .call = { .cancel = ex->pass->cancel },
			 .lf = { gw_action_to_string(a->type), ex->pass->commit, -1 },
			 .t0 = gw_monotonic_ms() };

	key_of(c.key, sizeof(c.key), a->kind, a->name);
	if (ex->pass->hold) {
		act_end(&c, GW_OUT_WAITING, GW_LOG_INFO, "pending (%s): not applied",
			ex->pass->suspend.on ? "suspended" : "observe mode");
		return;
	}
	if (held_action(ex->pass, a)) {
		char until[64] = "unknown";
		if (ex->pass->held_until_ms > 0)
			gw_time_format_utc(until, sizeof(until), ex->pass->held_until_ms / 1000);
		act_end(&c, GW_OUT_HELD, GW_LOG_INFO, "held (%s) until %s: not applied", ex->pass->held, until);
		return;
	}
	if (act_may_run(&c) < 0 || act_stop_old(&c) < 0)
		return;
	if (a->type == GW_ACTION_DELETE) {
		j->out = GW_OUT_OK;
		j->deleted = 1;
		act_log(&c, GW_LOG_INFO, "deleted");
		return;
	}
	if (act_start(&c) == 0)
		act_gate_health(&c);
}

/* A resource that needs no action is fine for its dependents when it runs
 * (and is not unhealthy), or finished cleanly under a policy that allows it. */
static void settle_unchanged(struct job *j)
{
	const struct gw_observed *o = j->a->observed;
	if (o->state == GW_STATE_RUNNING && o->health != GW_HEALTH_UNHEALTHY) {
		j->out = GW_OUT_OK;
	} else if (o->state == GW_STATE_STOPPED && o->restart != GW_RESTART_ALWAYS) {
		j->out = GW_OUT_OK;
	} else {
		j->out = GW_OUT_WAITING;
		snprintf(j->detail, sizeof(j->detail), "%s (restart: %s)", o->detail[0] ? o->detail : "not running",
			 gw_restart_to_string(j->a->desired ? j->a->desired->restart : o->restart));
	}
}

static void report_progress(struct exec *ex)
{
	if (ex->pass->progress)
		ex->pass->progress(ex->done, ex->n, ex->pass->progress_ud);
}

static void *exec_worker(void *arg)
{
	struct exec *ex = arg;
	pthread_mutex_lock(&ex->mu);
	while (ex->done < ex->n) {
		struct job *pick = NULL;
		for (size_t i = 0; i < ex->n && !pick; i++) {
			struct job *j = &ex->jobs[i];
			if (j->started)
				continue;
			int ready = 1, blocked = -1;
			for (size_t k = 0; k < j->a->nafter; k++) {
				struct job *dep = &ex->jobs[j->a->after[k]];
				if (!dep->finished)
					ready = 0;
				else if (!dep_ok(dep) && blocked < 0)
					blocked = (int)j->a->after[k];
			}
			if (!ready)
				continue;
			j->started = 1;
			if (blocked >= 0) {
				const struct gw_action *d = ex->jobs[blocked].a;
				j->out = GW_OUT_WAITING;
				snprintf(j->detail, sizeof(j->detail), "waiting for %s/%s", gw_kind_to_string(d->kind),
					 d->name);
				j->finished = 1;
				ex->done++;
				report_progress(ex);
				pthread_cond_broadcast(&ex->cv);
				continue;
			}
			pick = j;
		}
		if (!pick && ex->running == 0 && ex->done < ex->n) {
			/* nothing runs and nothing is ready: what is left waits on a
			 * cycle (the planner never makes one; this is the backstop) */
			for (size_t i = 0; i < ex->n; i++) {
				struct job *j = &ex->jobs[i];
				if (j->started)
					continue;
				j->started = j->finished = 1;
				j->out = GW_OUT_FAILED;
				snprintf(j->detail, sizeof(j->detail),
					 "not run: its ordering waits on a dependency cycle");
				ex->done++;
			}
			pthread_cond_broadcast(&ex->cv);
			continue;
		}
		if (!pick) {
			if (ex->done < ex->n)
				pthread_cond_wait(&ex->cv, &ex->mu);
			continue;
		}
		ex->running++;
		pthread_mutex_unlock(&ex->mu);
		if (pick->a->type == GW_ACTION_NONE && !ex->pass->backend_error[pick->a->kind][0]) {
			settle_unchanged(pick);
		} else if (gw_cancel_requested(ex->pass->cancel)) {
			/* the agent is stopping: start nothing new, record as is */
			pick->out = GW_OUT_WAITING;
			snprintf(pick->detail, sizeof(pick->detail), "not started: the agent is stopping");
		} else {
			run_action(ex, pick);
		}
		pthread_mutex_lock(&ex->mu);
		pick->finished = 1;
		ex->running--;
		ex->done++;
		report_progress(ex);
		pthread_cond_broadcast(&ex->cv);
	}
	pthread_mutex_unlock(&ex->mu);
	return NULL;
}

/* Is the observation of kind k older than this pass's work: did an action
 * of that kind run, or a health probe (which may take seconds)? Else what
 * was observed moments ago stands, and a second look would cost as much as
 * the first. */
static bool look_again(const struct gw_pass *pass, enum gw_kind k)
{
	for (size_t i = 0; i < pass->plan.n; i++) {
		const struct gw_action *a = &pass->plan.v[i];
		if (a->kind == k &&
		    (a->type != GW_ACTION_NONE || (a->desired && a->desired->health_type != GW_CHECK_NONE)))
			return true;
	}
	return false;
}

/* Refresh what was recorded with one more look at the world, so the state
 * file and the verdict reflect workloads that died right after starting. */
static void final_look(struct gw_state_file *st, const struct gw_pass *pass, const struct gw_backend_set *set)
{
	struct gw_backend_call call = { .cancel = pass->cancel };
	for (int k = 0; k < GW_KIND_MAX; k++) {
		struct gw_backend *b = gw_backend_set_for(set, (enum gw_kind)k);
		struct gw_observed *found = NULL;
		size_t nfound = 0;
		struct gw_error err;
		int known = 0;
		for (size_t i = 0; i < st->n; i++)
			known |= st->res[i].kind == (enum gw_kind)k;
		if (!b || b->error[0] || !known || !look_again(pass, (enum gw_kind)k) ||
		    b->ops->discover(&found, &nfound, b, &call, &err) < 0)
			continue;
		for (size_t i = 0; i < nfound; i++) {
			struct gw_observed *rec = state_entry(st, found[i].kind, found[i].name);
			/* the same workload (the same handle) that stopped since */
			if (rec && !strcmp(rec->handle ? rec->handle : "", found[i].handle ? found[i].handle : "") &&
			    rec->state == GW_STATE_RUNNING && found[i].state != GW_STATE_RUNNING) {
				rec->state = found[i].state;
				memcpy(rec->detail, found[i].detail, sizeof(rec->detail));
				rec->health = GW_HEALTH_UNKNOWN;
			}
			gw_observed_clear(&found[i]);
		}
		free(found);
	}
}

static void push(struct gw_state_file *st, const struct gw_observed *o)
{
	st->res = gw_xrealloc(st->res, (st->n + 1) * sizeof(*st->res));
	copy_observed(&st->res[st->n++], o);
}

/* Step 1: run every action, in dependency order, independent ones in
 * parallel. */
static struct job *run_jobs(struct gw_pass *pass, const struct gw_backend_set *set)
{
	struct gw_plan *plan = &pass->plan;
	struct exec ex = {
		.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .n = plan->n, .set = set, .pass = pass
	};
	ex.jobs = gw_xcalloc(plan->n + 1, sizeof(*ex.jobs));
	for (size_t i = 0; i < plan->n; i++)
		ex.jobs[i].a = &plan->v[i];
	run_workers(plan->n, exec_worker, &ex);
	return ex.jobs;
}

/* A resource whose workload never started: remembered for status and the
 * restart policy. */
static void push_never_started(struct gw_state_file *st, const struct gw_pass *pass, const struct job *j)
{
	const struct gw_action *a = j->a;
	struct gw_observed f = { .kind = a->kind,
				 .name = (char *)a->name,
				 .canonical = a->desired->canonical,
				 .restart = a->desired->restart,
				 .state = j->out == GW_OUT_WAITING ? GW_STATE_PENDING : GW_STATE_FAILED };
	memcpy(f.spec_hash, a->desired->spec_hash, 65);
	snprintf(f.detail, sizeof(f.detail), "%s", j->detail);
	f.depends_on = a->desired->depends_on;
	if (a->observed) {
		f.restarts = a->observed->restarts;
		f.crash_streak = a->observed->crash_streak + 1;
		f.backoff_until_ms = backoff_until(pass, f.crash_streak);
	}
	push(st, &f);
}

/* Step 2: the state entry of one job, and its count in the report. */
static void record_job(struct gw_state_file *st, struct gw_apply_report *rep, const struct gw_pass *pass,
		       const struct job *j)
{
	const struct gw_action *a = j->a;
	size_t before = st->n;
	if (j->deleted) {
		rep->ok++;
		return;
	}
	if (j->have_result) {
		if (j->out == GW_OUT_FAILED && j->result.health == GW_HEALTH_UNHEALTHY)
			rep->unhealthy++;
		push(st, &j->result);
	} else if (a->observed && (a->type == GW_ACTION_NONE || a->type == GW_ACTION_RESTART || j->out != GW_OUT_OK)) {
		/* unchanged, waiting, or an action that failed before replacing
		 * anything: the workload is as observed */
		push(st, a->observed);
		if (j->out == GW_OUT_FAILED && a->type != GW_ACTION_DELETE)
			snprintf(st->res[st->n - 1].detail, sizeof(st->res[st->n - 1].detail), "%s", j->detail);
	} else if (a->desired) {
		push_never_started(st, pass, j);
	}
	if (st->n > before)
		st->res[st->n - 1].not_converged = j->out != GW_OUT_OK;
	if (j->out == GW_OUT_HELD) {
		rep->held++;
		return;
	}
	if (st->n > before && j->have_result && j->out == GW_OUT_OK &&
	    (a->type == GW_ACTION_CREATE || a->type == GW_ACTION_UPDATE || a->type == GW_ACTION_RESTART)) {
		struct gw_observed *o = &st->res[st->n - 1];
		const char *why = a->observed && a->observed->restart_requested ? "restart"
			: a->type == GW_ACTION_RESTART				? "heal"
										: "commit";
		snprintf(o->last_action, sizeof(o->last_action), "%s", gw_action_to_string(a->type));
		snprintf(o->last_trigger, sizeof(o->last_trigger), "%s", why);
		o->last_action_at = now_ms(pass) / 1000;
	}
	if (j->out == GW_OUT_OK) {
		rep->ok++;
	} else if (j->out == GW_OUT_FAILED) {
		rep->failed++;
		if (!st->last_error) {
			struct gw_strbuf sb;
			gw_strbuf_init(&sb);
			gw_strbuf_printf(&sb, "%s/%s: %s", gw_kind_to_string(a->kind), a->name, j->detail);
			st->last_error = gw_strbuf_detach(&sb);
		}
	} else {
		rep->waiting++;
	}
}

/* The operator's controls in force, and what they held. */
static void record_controls(struct gw_state_file *st, const struct gw_pass *pass)
{
	st->mode = gw_xstrdup(pass->observe_mode ? "observe" : "enforce");
	st->suspended = pass->suspend.on;
	if (pass->suspend.on) {
		st->suspended_reason = gw_xstrdup(pass->suspend.reason);
		st->suspended_since = gw_xstrdup(pass->suspend.since);
	}
	if (!pass->hold && !pass->held)
		return;
	st->pending = gw_xcalloc(pass->plan.n + 1, sizeof(*st->pending));
	for (size_t i = 0; i < pass->plan.n; i++) {
		const struct gw_action *a = &pass->plan.v[i];
		if (a->type == GW_ACTION_NONE || (!pass->hold && !held_action(pass, a)))
			continue;
		struct gw_pending_action *p = &st->pending[st->npending++];
		p->kind = (int)a->kind;
		p->name = gw_xstrdup(a->name);
		snprintf(p->action, sizeof(p->action), "%s", gw_action_to_string(a->type));
		if (!pass->hold) {
			snprintf(p->held, sizeof(p->held), "%s", pass->held);
			p->until = pass->held_until_ms > 0 ? (pass->held_until_ms + 999) / 1000 : 0;
		}
	}
}

/* Step 3: with --no-prune, resources that left Git stay managed. */
static void keep_unplanned(struct gw_state_file *st, const struct gw_pass *pass)
{
	unsigned char *planned = gw_xcalloc(pass->nobserved + 1, 1);
	for (size_t k = 0; k < pass->plan.n; k++)
		if (pass->plan.v[k].observed)
			planned[pass->plan.v[k].observed - pass->observed] = 1;
	for (size_t i = 0; i < pass->nobserved; i++)
		if (!planned[i])
			push(st, &pass->observed[i]);
	free(planned);
}

/* Step 4: converged when every desired resource runs (not unhealthy) or
 * finished under a policy that lets it stay stopped, and nothing failed or
 * waits. */
static bool converged(const struct gw_state_file *st, const struct gw_pass *pass, const struct gw_apply_report *rep)
{
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		if (!desired_for(pass, o->kind, o->name))
			continue;
		if (o->state == GW_STATE_RUNNING && o->health != GW_HEALTH_UNHEALTHY)
			continue;
		if (o->state == GW_STATE_STOPPED && o->restart != GW_RESTART_ALWAYS)
			continue;
		return false;
	}
	return rep->failed == 0 && rep->waiting == 0 && rep->held == 0;
}

/* The same workload: the same handle (JSON, compared as such), or none. */
static bool same_workload(const char *a, const char *b)
{
	if (!a || !b)
		return !a && !b;
	json_t *x = json_loads(a, 0, NULL), *y = json_loads(b, 0, NULL);
	bool same = x && y ? json_equal(x, y) : !strcmp(a, b);
	json_decref(x);
	json_decref(y);
	return same;
}

/* Step 5: since when each resource is in its state (kept while it stays in
 * it as the same workload: a restart starts a new one), the pass's verdict,
 * and the file. */
static int record_state(struct gw_state_file *st, const struct gw_pass *pass, const char *state_dir,
			const struct gw_backend_set *set, const struct gw_apply_report *rep, struct gw_error *err)
{
	char path[4096];
	for (size_t i = 0; i < st->n; i++) {
		struct gw_observed *o = &st->res[i];
		const struct gw_observed *was = state_entry((struct gw_state_file *)&pass->state, o->kind, o->name);
		bool kept = was && was->state == o->state && was->since && same_workload(was->handle, o->handle);
		o->since = kept ? was->since : gw_now_ms() / 1000;
	}
	bool ok = rep->converged;
	/* held, and nothing else keeps it from converging */
	bool held = !ok && rep->held && !rep->failed && !rep->waiting;
	if (ok && !pass->result)
		st->last_sync = st->last_attempt;
	st->last_attempt_result =
		gw_xstrdup(pass->result ? pass->result
					: gw_run_result_to_string(ok		 ? GW_RUN_CONVERGED
									  : held ? GW_RUN_HELD
										 : GW_RUN_NOT_CONVERGED));
	gw_path_state_file(path, sizeof(path), state_dir);
	struct gw_state_describer d = gw_apply_describer(set);
	return gw_state_save(st, path, &d, err);
}

/* Does the resource named key ("Kind/name") run and is it healthy, for
 * --auto-revert? A job that finished under a policy that lets it stay
 * stopped counts as good; a check that has not said healthy yet does not.
 * When not, why says how it is. */
static bool runs_healthy(const struct gw_state_file *st, const struct gw_pass *pass, const char *key, char *why,
			 size_t size)
{
	const char *slash = strchr(key, '/');
	enum gw_kind k;
	char kind[32];
	snprintf(kind, sizeof(kind), "%.*s", (int)(slash ? slash - key : 0), key);
	if (!slash || gw_kind_from_string(&k, kind) < 0)
		return true;
	const struct gw_observed *o = state_entry((struct gw_state_file *)st, k, slash + 1);
	const struct gw_resource *r = desired_for(pass, k, slash + 1);
	if (!r)
		return true; /* no longer desired: nothing to wait for */
	if (!o) {
		snprintf(why, size, "%s was never started", key);
		return false;
	}
	bool checked = r->health_type != GW_CHECK_NONE;
	if (!o->not_converged && o->state == GW_STATE_RUNNING &&
	    (checked ? o->health == GW_HEALTH_HEALTHY : o->health != GW_HEALTH_UNHEALTHY))
		return true;
	if (!o->not_converged && o->state == GW_STATE_STOPPED && o->restart != GW_RESTART_ALWAYS)
		return true;
	snprintf(why, size, "%s is %s, %s%s%s", key, gw_state_to_string(o->state), gw_health_to_string(o->health),
		 o->detail[0] ? ": " : "", o->detail);
	return false;
}

/* --auto-revert's bookkeeping: since when the commit in force is applied
 * and what it created or updated (kept while it stays in force), the last
 * commit whose changes ran healthy, and the deadline by which those of the
 * commit in force must. A held pass (observe, suspended) applies nothing:
 * no clock starts; nor while disruptive actions are held (a window, a fleet
 * lock): the clock starts with the pass that applies them. */
static void record_rollout(struct gw_state_file *st, const struct gw_pass *pass, struct gw_apply_report *rep)
{
	const struct gw_state_file *was = &pass->state;
	int64_t now = gw_now_ms() / 1000;
	bool same = was->commit && st->commit && !strcmp(was->commit, st->commit);
	bool hold = pass->hold || rep->held;

	if (same && was->commit_since) {
		st->commit_since = was->commit_since;
		st->changed = gw_xcalloc(was->nchanged + 1, sizeof(*st->changed));
		for (size_t i = 0; i < was->nchanged; i++)
			st->changed[st->nchanged++] = gw_xstrdup(was->changed[i]);
	} else if (st->commit && !hold) {
		st->commit_since = now;
		st->changed = gw_xcalloc(pass->plan.n + 1, sizeof(*st->changed));
		for (size_t i = 0; i < pass->plan.n && st->nchanged < GW_STATE_CHANGED_MAX; i++) {
			const struct gw_action *a = &pass->plan.v[i];
			if (a->type != GW_ACTION_CREATE && a->type != GW_ACTION_UPDATE)
				continue;
			char key[200];
			snprintf(key, sizeof(key), "%s/%s", gw_kind_to_string(a->kind), a->name);
			st->changed[st->nchanged++] = gw_xstrdup(key);
		}
	}
	char why[sizeof(rep->bad)] = "";
	bool good = st->commit && st->commit_since && !hold;
	for (size_t i = 0; good && i < st->nchanged; i++)
		good = runs_healthy(st, pass, st->changed[i], why, sizeof(why));
	const char *keep = good || rep->converged ? st->commit : was->good_commit;
	st->good_commit = keep ? gw_xstrdup(keep) : NULL;
	/* a rollback is the operator's choice: never reverted */
	if (!pass->auto_revert_ms || pass->pinned || good || !st->commit_since || hold || !st->good_commit ||
	    !strcmp(st->good_commit, st->commit))
		return;
	st->revert_at = st->commit_since + (pass->auto_revert_ms + 999) / 1000;
	rep->revert_at = st->revert_at;
	snprintf(rep->bad, sizeof(rep->bad), "%s", why);
	if (now >= st->revert_at) {
		rep->revert_due = true;
		snprintf(rep->revert_to, sizeof(rep->revert_to), "%s", st->good_commit);
	}
}

/* The commit reverted stays refused until a fetch sees the ref elsewhere;
 * this pass may revert one. */
static void record_reverted(struct gw_state_file *st, const struct gw_pass *pass)
{
	const struct gw_state_file *was = &pass->state;
	if (pass->reverting[0]) {
		st->reverted_commit = gw_xstrdup(pass->reverting);
		st->reverted_reason = pass->revert_reason ? gw_xstrdup(pass->revert_reason) : NULL;
		st->reverted_at = gw_now_ms() / 1000;
		return;
	}
	if (!was->reverted_commit)
		return;
	if (pass->remote.commit[0] && strcmp(pass->remote.commit, was->reverted_commit) != 0) {
		gw_log(GW_LOG_INFO, "", "the ref moved to %.12s: the reverted commit %.12s is no longer refused",
		       pass->remote.commit, was->reverted_commit);
		return;
	}
	st->reverted_commit = gw_xstrdup(was->reverted_commit);
	st->reverted_reason = was->reverted_reason ? gw_xstrdup(was->reverted_reason) : NULL;
	st->reverted_at = was->reverted_at;
}

/* The remote tip this pass fetched, else the one recorded before. */
static void record_remote(struct gw_state_file *st, const struct gw_remote_tip *remote, const struct gw_state_file *was)
{
	const char *commit = remote ? remote->commit : was->remote_commit;
	char *copy = commit ? gw_xstrdup(commit) : NULL;
	st->remote_invalid = remote ? remote->invalid : was->remote_invalid;
	free(st->remote_commit);
	st->remote_commit = copy;
}

int gw_apply_execute(struct gw_apply_report *out, struct gw_pass *pass, const char *node,
		     const struct gw_strmap *labels, const char *state_dir, const struct gw_backend_set *set,
		     struct gw_error *err)
{
	struct gw_apply_report rep = { 0 };
	struct gw_state_file st;
	GW_PROF_BEGIN(jobs);
	struct job *jobs = run_jobs(pass, set);
	GW_PROF_END(jobs, "  run actions");
	int rc;

	/* the new state: every resource with its outcome */
	gw_state_file_init(&st);
	st.node = gw_xstrdup(node);
	gw_state_labels_set(&st, labels);
	st.commit = pass->commit[0] ? gw_xstrdup(pass->commit) : NULL; /* none: `down` */
	st.ref = pass->ref ? gw_xstrdup(pass->ref) : NULL;
	record_remote(&st, pass->remote.commit[0] ? &pass->remote : NULL, &pass->state);
	st.last_attempt = gw_now_ms() / 1000;
	st.last_sync = pass->state.last_sync; /* until this pass succeeds */
	for (size_t i = 0; i < pass->plan.n; i++) {
		const struct gw_action *a = jobs[i].a;
		record_job(&st, &rep, pass, &jobs[i]);
		/* `gitward restart` done: it was replaced (or went) */
		if (jobs[i].out == GW_OUT_OK && a->observed && a->observed->restart_requested)
			gw_control_restart_done(state_dir, a->kind, a->name);
	}
	keep_unplanned(&st, pass);
	record_controls(&st, pass);
	if (!st.last_error && pass->note)
		st.last_error = gw_xstrdup(pass->note);
	GW_PROF_BEGIN(look);
	final_look(&st, pass, set);
	GW_PROF_END(look, "  final look");
	rep.converged = converged(&st, pass, &rep);
	record_rollout(&st, pass, &rep);
	record_reverted(&st, pass);
	GW_PROF_BEGIN(save);
	rc = record_state(&st, pass, state_dir, set, &rep, err);
	GW_PROF_END(save, "  state file");
	for (size_t i = 0; i < pass->plan.n; i++)
		if (jobs[i].have_result)
			gw_observed_clear(&jobs[i].result);
	free(jobs);
	gw_state_file_free(&st);
	if (rc < 0)
		return rc;
	*out = rep;
	return 0;
}

int gw_apply_record_error(const char *node, const struct gw_strmap *labels, const char *state_dir,
			  const struct gw_backend_set *set, const struct gw_remote_tip *remote,
			  enum gw_run_result result, const char *message, struct gw_error *err)
{
	struct gw_state_file st;
	struct gw_error lerr;
	char path[4096];
	int rc;

	gw_path_state_file(path, sizeof(path), state_dir);
	if (gw_state_load(&st, path, &lerr) < 0)
		gw_state_file_init(&st);
	if (!st.node) {
		st.node = gw_xstrdup(node);
		gw_state_labels_set(&st, labels);
	}
	if (remote && remote->commit[0])
		record_remote(&st, remote, &st);
	free(st.last_error);
	st.last_error = gw_xstrdup(message);
	st.last_attempt = gw_now_ms() / 1000;
	free(st.last_attempt_result);
	st.last_attempt_result = gw_xstrdup(gw_run_result_to_string(result));
	struct gw_state_describer d = gw_apply_describer(set);
	rc = gw_state_save(&st, path, &d, err);
	gw_state_file_free(&st);
	return rc;
}
