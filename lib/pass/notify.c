/* The events of a pass (SPEC "Events"): derived from what the pass ended
 * with and what the tracker remembers of the passes before, so that one
 * failure is told once per --notify-repeat and its end once. Pure: no I/O,
 * the clock is a parameter. Delivery is notify_send.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/notify.h"
#include "gitward/plan.h"

static const char *const kind_names[GW_EVENT_MAX] = {
	[GW_EVENT_NONE] = "none",
	[GW_EVENT_APPLIED] = "applied",
	[GW_EVENT_FAILED] = "failed",
	[GW_EVENT_INVALID_COMMIT] = "invalid-commit",
	[GW_EVENT_DEGRADED] = "degraded",
	[GW_EVENT_RECOVERED] = "recovered",
	[GW_EVENT_SUSPENDED] = "suspended",
	[GW_EVENT_RESUMED] = "resumed",
	[GW_EVENT_REWIND_REFUSED] = "rewind-refused",
	[GW_EVENT_REVERTED] = "reverted",
	[GW_EVENT_COMMIT_STATUS] = "commit-status",
	[GW_EVENT_HELD] = "held",
};

static const char *const commit_state_names[GW_COMMIT_MAX] = {
	[GW_COMMIT_PENDING] = "pending",
	[GW_COMMIT_SUCCESS] = "success",
	[GW_COMMIT_FAILURE] = "failure",
	[GW_COMMIT_ERROR] = "error",
};

/* The event a pass's result raises: a failure condition (held back while
 * it repeats) or, for a converged pass that changed something, applied.
 * A new result (rewind refused, reverted, held) is one line here. */
static const struct {
	enum gw_event_kind kind;
	bool failure;
} by_result[GW_RUN_MAX] = {
	[GW_RUN_CONVERGED] = { GW_EVENT_APPLIED, false },
	[GW_RUN_NOT_CONVERGED] = { GW_EVENT_FAILED, true },
	[GW_RUN_GIT_ERROR] = { GW_EVENT_FAILED, true },
	[GW_RUN_INVALID] = { GW_EVENT_INVALID_COMMIT, true },
	[GW_RUN_ERROR] = { GW_EVENT_FAILED, true },
	[GW_RUN_UNVERIFIED] = { GW_EVENT_INVALID_COMMIT, true },
	[GW_RUN_REWIND] = { GW_EVENT_REWIND_REFUSED, true },
	[GW_RUN_REVERTED] = { GW_EVENT_REVERTED, true },
	/* what ran is applied; what is held is its own event (held_event) */
	[GW_RUN_HELD] = { GW_EVENT_APPLIED, false },
};

const char *gw_event_kind_to_string(enum gw_event_kind k)
{
	return k >= 0 && k < GW_EVENT_MAX ? kind_names[k] : "unknown";
}

void gw_event_free(struct gw_event *ev)
{
	if (!ev)
		return;
	free(ev->body);
	free(ev->node);
	free(ev->message);
	free(ev->resource);
	memset(ev, 0, sizeof(*ev));
}

void gw_notify_tracker_init(struct gw_notify_tracker *t, int64_t repeat_ms)
{
	memset(t, 0, sizeof(*t));
	t->repeat_ms = repeat_ms;
}

void gw_notify_tracker_free(struct gw_notify_tracker *t)
{
	free(t->fail_fp);
	for (size_t i = 0; i < t->nbad; i++)
		free(t->bad[i].key);
	free(t->bad);
	memset(t, 0, sizeof(*t));
}

static void rfc3339_ms(char *out, size_t size, int64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static bool bad_resource(const struct gw_observed *o)
{
	return o->state == GW_STATE_FAILED || o->health == GW_HEALTH_UNHEALTHY;
}

static json_t *resource_json(const struct gw_observed *o, int64_t began_s)
{
	const char *action = o->last_action[0] && o->last_action_at >= began_s ? o->last_action : "none";
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", gw_kind_to_string(o->kind), "name", o->name, "action",
			 action, "state", gw_state_to_string(o->state), "health", gw_health_to_string(o->health));
}

static json_t *held_json(const struct gw_pending_action *a)
{
	char until[64] = "";
	if (a->until)
		rfc3339_ms(until, sizeof(until), a->until * 1000);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "kind", gw_kind_to_string((enum gw_kind)a->kind), "name", a->name,
			      "action", a->action, "held", a->held);
	if (o && until[0])
		json_object_set_new(o, "until", json_string(until));
	return o;
}

/* One event: only of what the pass recorded; the message's URLs redacted
 * (no credentials), no spec, no environment. only: the resource the event
 * is about (NULL: all of them). */
static int event_make(struct gw_event *ev, enum gw_event_kind kind, const struct gw_notify_pass *p, const char *message,
		      const struct gw_observed *only, int64_t now_ms, struct gw_error *err)
{
	char when[40];
	rfc3339_ms(when, sizeof(when), now_ms);
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->message = gw_url_redacted(message ? message : "");
	ev->node = strdup(p->node ? p->node : "");
	snprintf(ev->commit, sizeof(ev->commit), "%s", p->commit ? p->commit : "");
	if (only && asprintf(&ev->resource, "%s/%s", gw_kind_to_string(only->kind), only->name) < 0)
		ev->resource = NULL;
	json_t *res = json_array();
	for (size_t i = 0; res && kind != GW_EVENT_HELD && i < p->nres; i++)
		if (!only || &p->res[i] == only)
			json_array_append_new(res, resource_json(&p->res[i], p->began_s));
	for (size_t i = 0; res && kind == GW_EVENT_HELD && i < p->npending; i++)
		if (p->pending[i].held[0])
			json_array_append_new(res, held_json(&p->pending[i]));
	json_t *labels = p->labels ? gw_state_labels_json(p->labels) : json_object();
	json_t *o =
		json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:o}", "event", gw_event_kind_to_string(kind), "node",
			  ev->node ? ev->node : "", "labels", labels, "commit", ev->commit, "ref", p->ref ? p->ref : "",
			  "time", when, "message", ev->message ? ev->message : "", "resources", res);
	ev->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!ev->body || !ev->message || !ev->node || (only && !ev->resource)) {
		gw_event_free(ev);
		return gw_error_set(err, -ENOMEM, "cannot make the %s event", gw_event_kind_to_string(kind));
	}
	return 0;
}

struct events {
	struct gw_event *v;
	size_t n, cap;
};

static int add(struct events *e, enum gw_event_kind kind, const struct gw_notify_pass *p, const char *message,
	       const struct gw_observed *only, int64_t now_ms, struct gw_error *err)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 4;
		struct gw_event *v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return gw_error_set(err, -ENOMEM, "out of memory");
		e->v = v;
		e->cap = cap;
	}
	int rc = event_make(&e->v[e->n], kind, p, message, only, now_ms, err);
	if (rc == 0)
		e->n++;
	return rc;
}

/* Due: never sent, or the repeat period has passed since. */
static bool due(const struct gw_notify_tracker *t, int64_t sent_ms, int64_t now_ms)
{
	return now_ms - sent_ms >= t->repeat_ms;
}

/* The pass-level condition: a failure told once per repeat period (or
 * when what fails changes), its end told once. */
static int pass_events(struct events *e, struct gw_notify_tracker *t, const struct gw_notify_pass *p, int64_t now_ms,
		       struct gw_error *err)
{
	int rc = 0;
	enum gw_event_kind kind = by_result[p->result].kind;
	if (by_result[p->result].failure) {
		char *fp = NULL;
		if (asprintf(&fp, "%s\n%s\n%s", gw_event_kind_to_string(kind), p->commit ? p->commit : "",
			     p->message ? p->message : "") < 0)
			return gw_error_set(err, -ENOMEM, "out of memory");
		bool same = t->failing && t->fail_fp && !strcmp(t->fail_fp, fp);
		if (!same || due(t, t->fail_sent_ms, now_ms)) {
			rc = add(e, kind, p, p->message, NULL, now_ms, err);
			t->fail_sent_ms = now_ms;
		}
		free(t->fail_fp);
		t->fail_fp = fp;
		t->failing = kind;
		return rc;
	}
	if (t->failing) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%s ended", gw_event_kind_to_string(t->failing));
		rc = add(e, GW_EVENT_RECOVERED, p, msg, NULL, now_ms, err);
		t->failing = GW_EVENT_NONE;
		free(t->fail_fp);
		t->fail_fp = NULL;
	}
	if (rc == 0 && kind != GW_EVENT_NONE && p->changed)
		rc = add(e, kind, p, p->message, NULL, now_ms, err);
	return rc;
}

static struct gw_notify_bad *bad_find(struct gw_notify_tracker *t, const char *key)
{
	for (size_t i = 0; i < t->nbad; i++)
		if (!strcmp(t->bad[i].key, key))
			return &t->bad[i];
	return NULL;
}

/* Each resource that fails or is unhealthy: degraded once per repeat
 * period; recovered once when it no longer is (or is gone). */
static int resource_events(struct events *e, struct gw_notify_tracker *t, const struct gw_notify_pass *p,
			   int64_t now_ms, struct gw_error *err)
{
	char key[300];
	size_t old = t->nbad; /* those remembered before this pass */
	bool *still = old ? calloc(old, sizeof(bool)) : NULL;
	int rc = 0;
	if (t->nbad && !still)
		return gw_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < p->nres; i++) {
		const struct gw_observed *o = &p->res[i];
		snprintf(key, sizeof(key), "%s/%s", gw_kind_to_string(o->kind), o->name);
		struct gw_notify_bad *b = bad_find(t, key);
		if (b && !bad_resource(o)) {
			char msg[400];
			snprintf(msg, sizeof(msg), "%s is %s again", key, gw_state_to_string(o->state));
			rc = add(e, GW_EVENT_RECOVERED, p, msg, o, now_ms, err);
			continue; /* not kept: dropped below */
		}
		if (b && (size_t)(b - t->bad) < old)
			still[b - t->bad] = true;
		if (!bad_resource(o))
			continue;
		if (!b && t->nbad < GW_NOTIFY_RESOURCES_MAX) {
			struct gw_notify_bad *v = realloc(t->bad, (t->nbad + 1) * sizeof(*v));
			char *k = strdup(key);
			if (!v || !k) {
				free(k);
				if (v)
					t->bad = v;
				rc = gw_error_set(err, -ENOMEM, "out of memory");
				break;
			}
			t->bad = v;
			b = &t->bad[t->nbad++];
			b->key = k;
			b->sent_ms = now_ms;
		} else if (!b || !due(t, b->sent_ms, now_ms)) {
			continue;
		} else {
			b->sent_ms = now_ms;
		}
		char msg[400];
		snprintf(msg, sizeof(msg), "%s is %s%s%s", key,
			 o->state == GW_STATE_FAILED ? "failed" : gw_health_to_string(o->health),
			 o->detail[0] ? ": " : "", o->detail);
		rc = add(e, GW_EVENT_DEGRADED, p, msg, o, now_ms, err);
	}
	/* forget those no longer bad (recovered above, or gone) */
	size_t w = 0;
	for (size_t i = 0; i < t->nbad; i++) {
		if (i < old && !still[i]) {
			free(t->bad[i].key);
			continue;
		}
		t->bad[w++] = t->bad[i];
	}
	t->nbad = w;
	free(still);
	return rc;
}

/* Disruptive actions held: told once per commit and reason while the
 * hold lasts; a pass holding nothing ends it (a later hold is told again). */
static int held_event(struct events *e, struct gw_notify_tracker *t, const struct gw_notify_pass *p, int64_t now_ms,
		      struct gw_error *err)
{
	const struct gw_pending_action *first = NULL;
	size_t n = 0;
	for (size_t i = 0; i < p->npending; i++)
		if (p->pending[i].held[0] && (n++, !first))
			first = &p->pending[i];
	if (!first) {
		t->held_fp[0] = '\0';
		return 0;
	}
	char fp[sizeof(t->held_fp)], msg[256], until[64] = "unknown";
	snprintf(fp, sizeof(fp), "%.41s %.30s", p->commit ? p->commit : "", first->held);
	if (!strcmp(fp, t->held_fp))
		return 0;
	snprintf(t->held_fp, sizeof(t->held_fp), "%s", fp);
	if (first->until)
		rfc3339_ms(until, sizeof(until), first->until * 1000);
	snprintf(msg, sizeof(msg), "%zu disruptive action%s held (%s) until %s", n, n == 1 ? "" : "s", first->held,
		 until);
	return add(e, GW_EVENT_HELD, p, msg, NULL, now_ms, err);
}

int gw_notify_derive(struct gw_event **out, size_t *n, struct gw_notify_tracker *t, const struct gw_notify_pass *p,
		     int64_t now_ms, struct gw_error *err)
{
	struct events e = { 0 };
	int rc = 0;
	if (p->result < 0 || p->result >= GW_RUN_MAX)
		return gw_error_set(err, -EINVAL, "unknown pass result %d", (int)p->result);
	if (p->suspended != t->suspended || (!t->seen && p->suspended))
		rc = add(&e, p->suspended ? GW_EVENT_SUSPENDED : GW_EVENT_RESUMED, p,
			 p->suspended ? "suspended (gitward suspend)" : "resumed (gitward resume)", NULL, now_ms, err);
	t->suspended = p->suspended;
	t->seen = true;
	if (rc == 0)
		rc = pass_events(&e, t, p, now_ms, err);
	if (rc == 0)
		rc = held_event(&e, t, p, now_ms, err);
	if (rc == 0)
		rc = resource_events(&e, t, p, now_ms, err);
	if (rc < 0) {
		for (size_t i = 0; i < e.n; i++)
			gw_event_free(&e.v[i]);
		free(e.v);
		return rc;
	}
	*out = e.v;
	*n = e.n;
	return 0;
}

const char *gw_commit_state_to_string(enum gw_commit_state s)
{
	return s >= 0 && s < GW_COMMIT_MAX ? commit_state_names[s] : "error";
}

static struct gw_notify_told *told_find(const struct gw_notify_tracker *t, const char *commit)
{
	for (size_t i = 0; i < sizeof(t->told) / sizeof(t->told[0]); i++)
		if (t->told[i].commit[0] && !strcmp(t->told[i].commit, commit))
			return (struct gw_notify_told *)&t->told[i];
	return NULL;
}

bool gw_notify_status_due(struct gw_notify_tracker *t, const char *commit, enum gw_commit_state state)
{
	if (!commit || !commit[0] || state < 0 || state >= GW_COMMIT_MAX)
		return false;
	struct gw_notify_told *k = told_find(t, commit);
	if (!k) { /* the oldest commit remembered makes room */
		k = &t->told[t->told_next];
		t->told_next = (t->told_next + 1) % (sizeof(t->told) / sizeof(t->told[0]));
		snprintf(k->commit, sizeof(k->commit), "%s", commit);
		k->sent = 0;
	}
	if (k->sent & (1u << state))
		return false;
	k->sent |= 1u << state;
	return true;
}

bool gw_notify_status_applying(const struct gw_notify_tracker *t, const char *commit)
{
	const struct gw_notify_told *k = commit && commit[0] ? told_find(t, commit) : NULL;
	return k && (k->sent & (1u << GW_COMMIT_PENDING));
}
