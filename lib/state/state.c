/* The state dir's state file — the last applied commit, the node and its
 * labels, and what gitward manages — written atomically and checked on read,
 * so a torn file is reported rather than half-trusted; and the checks of the
 * state, run and log dirs (the lock is lock.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gitward/paths.h"
#include "gitward/schema.h"
#include "gitward/state.h"

#define STATE_VERSION 1
#define STATE_MAX (64u << 20)

/* per gw_run_result: the names of the metrics and of last_attempt_result */
static const char *const result_names[GW_RUN_MAX] = { "success",    "not_converged", "git_error", "invalid", "error",
						      "unverified", "rewind",	     "reverted",  "held" };

void gw_state_entry_status(struct gw_observed *o, const json_t *r)
{
	const char *state = json_string_value(json_object_get(r, "state"));
	const char *health = json_string_value(json_object_get(r, "health"));
	const char *detail = json_string_value(json_object_get(r, "detail"));
	if (!state || gw_state_from_string(&o->state, state) < 0)
		o->state = GW_STATE_PENDING;
	if (!health || gw_health_from_string(&o->health, health) < 0)
		o->health = GW_HEALTH_UNKNOWN;
	if (detail)
		snprintf(o->detail, sizeof(o->detail), "%s", detail);
	o->restarts = (int)json_integer_value(json_object_get(r, "restarts"));
}

const char *gw_run_result_to_string(enum gw_run_result r)
{
	return r < GW_RUN_MAX ? result_names[r] : "error";
}

void gw_state_file_init(struct gw_state_file *st)
{
	memset(st, 0, sizeof(*st));
}

void gw_state_file_free(struct gw_state_file *st)
{
	free(st->node);
	gw_strmap_free(&st->labels);
	free(st->commit);
	free(st->ref);
	free(st->remote_commit);
	free(st->last_attempt_result);
	free(st->last_error);
	for (size_t i = 0; i < st->n; i++)
		gw_observed_clear(&st->res[i]);
	free(st->res);
	free(st->mode);
	free(st->suspended_reason);
	free(st->suspended_since);
	free(st->pinned_commit);
	free(st->pinned_reason);
	free(st->pinned_since);
	free(st->pinned_tip);
	for (size_t i = 0; i < st->npending; i++)
		free(st->pending[i].name);
	free(st->pending);
	free(st->good_commit);
	for (size_t i = 0; i < st->nchanged; i++)
		free(st->changed[i]);
	free(st->changed);
	free(st->reverted_commit);
	free(st->reverted_reason);
	gw_remotes_free(st->remotes, st->nremotes);
	gw_state_file_init(st);
}

void gw_state_labels_set(struct gw_state_file *st, const struct gw_strmap *labels)
{
	gw_strmap_free(&st->labels);
	for (size_t i = 0; labels && i < labels->n; i++)
		if (strcmp(labels->k[i], "node") != 0)
			gw_strmap_set(&st->labels, labels->k[i], labels->v[i]);
}

json_t *gw_state_labels_json(const struct gw_strmap *labels)
{
	json_t *o = json_object();
	for (size_t i = 0; i < labels->n; i++)
		if (strcmp(labels->k[i], "node") != 0)
			json_object_set_new(o, labels->k[i], gw_json_string(labels->v[i]));
	return o;
}

int gw_state_labels_parse(struct gw_strmap *out, const json_t *obj)
{
	const char *k;
	json_t *v;

	if (!json_is_object(obj) || json_object_size(obj) > GW_STATE_LABELS_MAX)
		return -EBADMSG;
	json_object_foreach((json_t *)obj, k, v)
	{
		if (!json_is_string(v)) {
			gw_strmap_free(out);
			return -EBADMSG;
		}
		if (strcmp(k, "node") != 0)
			gw_strmap_set(out, k, json_string_value(v));
	}
	return 0;
}

static char *opt_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? gw_xstrdup(json_string_value(v)) : NULL;
}

static json_t *str_or_null(const char *s);
static json_t *error_or_null(const char *msg);
static json_t *time_or_null(int64_t t);
/* STATE/remotes.json beside the state file at path: what status shows of
 * several --repo. A record that cannot be read shows nothing. */
static void remotes_beside(struct gw_state_file *st, const char *path)
{
	char dir[4096];
	struct gw_error err;
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return;
	*slash = '\0';
	if (gw_remotes_load(&st->remotes, &st->nremotes, dir, &err) < 0)
		gw_log(GW_LOG_DEBUG, "", "%s", err.msg);
}

int gw_state_load(struct gw_state_file *out, const char *path, struct gw_error *err)
{
	char *data;
	size_t len;
	int rc;

	rc = gw_file_read_nofollow(&data, &len, path, STATE_MAX, err);
	if (rc == -ENOENT) {
		gw_state_file_init(out);
		return 0;
	}
	if (rc < 0)
		return rc;
	rc = gw_state_parse(out, data, len, path, err);
	free(data);
	if (rc == 0)
		remotes_beside(out, path);
	return rc;
}

/* The entry's handle: as written, or made from the identity keys entries
 * had before handles (the backends of that version wrote the same JSON). */
static char *handle_of(const json_t *r)
{
	const json_t *h = json_object_get(r, "handle");
	if (json_is_string(h))
		return gw_xstrdup(json_string_value(h));
	if (h)
		return NULL; /* null: nothing was started */
	json_int_t pid = json_integer_value(json_object_get(r, "pid"));
	const char *id = json_string_value(json_object_get(r, "id"));
	json_t *legacy = json_object();
	if (pid) {
		json_object_set_new(legacy, "pid", json_integer(pid));
		json_object_set_new(legacy, "start_time",
				    json_integer(json_integer_value(json_object_get(r, "start_time"))));
	}
	if (id && *id)
		json_object_set_new(legacy, "id", gw_json_string(id));
	char *s = json_object_size(legacy) ? json_dumps(legacy, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(legacy);
	return s;
}

/* The identity keys describe gives for o (an empty object without d). */
static json_t *described(const struct gw_state_describer *d, const struct gw_observed *o, char *text, size_t size)
{
	json_t *fields = json_object();
	if (size)
		text[0] = '\0';
	if (d && d->fn)
		d->fn(fields, text, size, o, d->ud);
	return fields;
}

/* The envFiles digests of an entry: absent in state files of earlier
 * versions (the next pass records them without a restart); an entry that is
 * not 64 hex digits is dropped the same way. */
/* The last action taken on a resource: read back only from the fixed
 * words gitward writes (anything else is dropped, never shown). */
static void last_action_parse(struct gw_observed *o, const json_t *la)
{
	static const char *const actions[] = { "create", "update", "restart", NULL };
	static const char *const triggers[] = { "commit", "heal", "restart", NULL };
	const char *action = json_string_value(json_object_get(la, "action"));
	const char *trigger = json_string_value(json_object_get(la, "trigger"));
	json_int_t at = json_integer_value(json_object_get(la, "at"));
	bool ok_a = false, ok_t = false;
	for (size_t i = 0; action && actions[i]; i++)
		ok_a |= !strcmp(action, actions[i]);
	for (size_t i = 0; trigger && triggers[i]; i++)
		ok_t |= !strcmp(trigger, triggers[i]);
	if (!ok_a || !ok_t || at <= 0)
		return;
	snprintf(o->last_action, sizeof(o->last_action), "%s", action);
	snprintf(o->last_trigger, sizeof(o->last_trigger), "%s", trigger);
	o->last_action_at = at;
}

/* {"action", "trigger", "at"}: at in unix seconds (the state file) or
 * RFC 3339 (status) */
static json_t *last_action_json(const struct gw_observed *o, bool for_status)
{
	json_t *la = json_object();
	json_object_set_new(la, "action", json_string(o->last_action));
	json_object_set_new(la, "trigger", json_string(o->last_trigger));
	if (for_status) {
		char ts[64];
		gw_time_format_utc(ts, sizeof(ts), o->last_action_at);
		json_object_set_new(la, "at", json_string(ts));
	} else {
		json_object_set_new(la, "at", json_integer(o->last_action_at));
	}
	return la;
}

static void env_digests_parse(struct gw_strmap *out, const json_t *obj)
{
	const char *path;
	json_t *v;
	json_object_foreach((json_t *)obj, path, v)
	{
		const char *d = json_string_value(v);
		if (d && strlen(d) == 64 && strspn(d, "0123456789abcdef") == 64 && path[0] == '/')
			gw_strmap_set(out, path, d);
	}
}

static json_t *env_digests_json(const struct gw_strmap *m)
{
	json_t *obj = json_object();
	for (size_t i = 0; i < m->n; i++)
		json_object_set_new(obj, m->k[i], json_string(m->v[i]));
	return obj;
}

/* A held action's reason and until ("2027-03-28T01:00:00Z"), each
 * checked: what is wrong is left out. */
static void pending_held_parse(struct gw_pending_action *p, json_t *a)
{
	const char *held = json_string_value(json_object_get(a, "held"));
	const char *until = json_string_value(json_object_get(a, "until"));
	struct tm tm = { 0 };
	int n = 0;
	if (held && strlen(held) < sizeof(p->held) && strspn(held, "abcdefghijklmnopqrstuvwxyz-") == strlen(held))
		snprintf(p->held, sizeof(p->held), "%s", held);
	if (p->held[0] && until &&
	    sscanf(until, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec, &n) == 6 &&
	    (size_t)n == strlen(until)) {
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		time_t t = timegm(&tm);
		p->until = t > 0 ? (int64_t)t : 0;
	}
}

/* mode, suspended and pending, each checked: what is wrong is left out */
static void controls_parse(struct gw_state_file *st, json_t *root, const char *path)
{
	const char *mode = json_string_value(json_object_get(root, "mode"));
	json_t *sus = json_object_get(root, "suspended"), *pend = json_object_get(root, "pending");
	if (mode && (!strcmp(mode, "enforce") || !strcmp(mode, "observe")))
		st->mode = gw_xstrdup(mode);
	if (json_is_object(sus)) {
		st->suspended = true;
		st->suspended_reason = opt_str(sus, "reason");
		st->suspended_since = opt_str(sus, "since");
	}
	if (!json_is_array(pend))
		return;
	st->pending = gw_xcalloc(json_array_size(pend) + 1, sizeof(*st->pending));
	for (size_t i = 0; i < json_array_size(pend); i++) {
		json_t *a = json_array_get(pend, i);
		const char *kind = json_string_value(json_object_get(a, "kind"));
		const char *name = json_string_value(json_object_get(a, "name"));
		const char *action = json_string_value(json_object_get(a, "action"));
		enum gw_kind k;
		if (!kind || !name || !action || gw_kind_from_string(&k, kind) < 0 || gw_check_name(name) ||
		    strlen(action) >= sizeof(st->pending[0].action) ||
		    strspn(action, "abcdefghijklmnopqrstuvwxyz") != strlen(action)) {
			gw_log(GW_LOG_WARN, "", "%s: pending action %zu is not valid: ignored", path, i);
			continue;
		}
		struct gw_pending_action *p = &st->pending[st->npending++];
		p->kind = (int)k;
		p->name = gw_xstrdup(name);
		snprintf(p->action, sizeof(p->action), "%s", action);
		pending_held_parse(p, a);
	}
}

/* A full commit id, or NULL */
static char *opt_commit(json_t *o, const char *key)
{
	const char *c = json_string_value(json_object_get(o, key));
	return c && strlen(c) == 40 && strspn(c, "0123456789abcdef") == 40 ? gw_xstrdup(c) : NULL;
}

/* --auto-revert's bookkeeping, each checked: what is wrong is left out
 * (a bad entry costs a watch, never a wrong revert) */
static void rollout_parse(struct gw_state_file *st, json_t *root, const char *path)
{
	json_t *ro = json_object_get(root, "rollout"), *rev = json_object_get(root, "reverted");
	if (json_is_object(ro)) {
		json_t *ch = json_object_get(ro, "changed");
		st->good_commit = opt_commit(ro, "good_commit");
		st->commit_since = json_integer_value(json_object_get(ro, "commit_since"));
		st->revert_at = json_integer_value(json_object_get(ro, "revert_at"));
		size_t n = json_is_array(ch) ? json_array_size(ch) : 0;
		if (n > GW_STATE_CHANGED_MAX) {
			gw_log(GW_LOG_WARN, "", "%s: rollout.changed has more than %d entries: ignored", path,
			       GW_STATE_CHANGED_MAX);
			n = 0;
		}
		st->changed = gw_xcalloc(n + 1, sizeof(*st->changed));
		for (size_t i = 0; i < n; i++) {
			const char *key = json_string_value(json_array_get(ch, i));
			const char *slash = key ? strchr(key, '/') : NULL;
			char kind[32];
			enum gw_kind k;
			if (!slash || (size_t)(slash - key) >= sizeof(kind))
				continue;
			snprintf(kind, sizeof(kind), "%.*s", (int)(slash - key), key);
			if (gw_kind_from_string(&k, kind) < 0 || gw_check_name(slash + 1))
				continue;
			st->changed[st->nchanged++] = gw_xstrdup(key);
		}
	}
	if (json_is_object(rev) && (st->reverted_commit = opt_commit(rev, "commit"))) {
		st->reverted_reason = opt_str(rev, "reason");
		st->reverted_at = json_integer_value(json_object_get(rev, "at"));
	}
}

static json_t *rollout_json(const struct gw_state_file *st)
{
	json_t *o = json_object(), *ch = json_array();
	json_object_set_new(o, "good_commit", str_or_null(st->good_commit));
	json_object_set_new(o, "commit_since", json_integer(st->commit_since));
	json_object_set_new(o, "revert_at", json_integer(st->revert_at));
	for (size_t i = 0; i < st->nchanged; i++)
		json_array_append_new(ch, gw_json_string(st->changed[i]));
	json_object_set_new(o, "changed", ch);
	return o;
}

/* status's "reverted": the commit refused until the ref moves, or null */
static json_t *reverted_json(const struct gw_state_file *st, bool times)
{
	char ts[64];
	if (!st->reverted_commit)
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "commit", json_string(st->reverted_commit));
	json_object_set_new(o, "reason", error_or_null(st->reverted_reason ? st->reverted_reason : ""));
	if (times) {
		gw_time_format_utc(ts, sizeof(ts), st->reverted_at);
		json_object_set_new(o, "at", json_string(ts));
	} else {
		json_object_set_new(o, "at", json_integer(st->reverted_at));
	}
	return o;
}

static json_t *controls_suspended(const struct gw_state_file *st)
{
	if (!st->suspended)
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "reason", gw_json_string(st->suspended_reason ? st->suspended_reason : ""));
	json_object_set_new(o, "since", gw_json_string(st->suspended_since));
	return o;
}

static json_t *controls_pinned(const struct gw_state_file *st)
{
	if (!st->pinned_commit)
		return json_null();
	return json_pack("{s:s, s:o, s:o, s:o}", "commit", st->pinned_commit, "reason",
			 gw_json_string(st->pinned_reason ? st->pinned_reason : ""), "since",
			 gw_json_string(st->pinned_since), "tip", gw_json_string(st->pinned_tip));
}

static json_t *controls_pending(const struct gw_state_file *st)
{
	json_t *a = json_array();
	for (size_t i = 0; i < st->npending; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string(gw_kind_to_string((enum gw_kind)st->pending[i].kind)));
		json_object_set_new(o, "name", gw_json_string(st->pending[i].name));
		json_object_set_new(o, "action", json_string(st->pending[i].action));
		if (st->pending[i].held[0]) {
			char ts[64];
			json_object_set_new(o, "held", json_string(st->pending[i].held));
			if (st->pending[i].until) {
				gw_time_format_utc(ts, sizeof(ts), st->pending[i].until);
				json_object_set_new(o, "until", json_string(ts));
			}
		}
		json_array_append_new(a, o);
	}
	return a;
}

static void controls_json(json_t *root, const struct gw_state_file *st)
{
	json_object_set_new(root, "mode", json_string(st->mode ? st->mode : "enforce"));
	json_object_set_new(root, "suspended", controls_suspended(st));
	json_object_set_new(root, "pinned", controls_pinned(st));
	json_object_set_new(root, "pending", controls_pending(st));
}

int gw_state_parse(struct gw_state_file *out, const char *data, size_t len, const char *path, struct gw_error *err)
{
	struct gw_state_file st;
	json_error_t jerr;
	json_t *root, *res;

	gw_state_file_init(&st);
	root = json_loadb(data, len, 0, &jerr);
	if (!root)
		return gw_error_set_at(err, -EBADMSG, path, (unsigned)jerr.line, (unsigned)jerr.column,
				       "state file is corrupt: %s", jerr.text);
	if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION ||
	    !json_is_array(json_object_get(root, "resources"))) {
		json_decref(root);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0, "state file is corrupt: not a gitward state v%d",
				       STATE_VERSION);
	}
	st.node = opt_str(root, "node");
	/* absent in state files of earlier versions: none recorded */
	if (json_object_get(root, "labels") && gw_state_labels_parse(&st.labels, json_object_get(root, "labels")) < 0) {
		gw_state_file_free(&st);
		json_decref(root);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0,
				       "state file is corrupt: \"labels\" is not an object of at most %d strings",
				       GW_STATE_LABELS_MAX);
	}
	st.commit = opt_str(root, "commit");
	st.ref = opt_str(root, "ref");
	st.remote_commit = opt_str(root, "remote_commit");
	st.remote_invalid = json_is_true(json_object_get(root, "remote_invalid"));
	st.last_error = opt_str(root, "last_error");
	st.last_sync = json_integer_value(json_object_get(root, "last_sync"));
	st.last_attempt = json_integer_value(json_object_get(root, "last_attempt"));
	st.last_attempt_result = opt_str(root, "last_attempt_result");
	controls_parse(&st, root, path);
	rollout_parse(&st, root, path);
	res = json_object_get(root, "resources");
	st.res = gw_xcalloc(json_array_size(res) + 1, sizeof(*st.res));
	for (size_t i = 0; i < json_array_size(res); i++) {
		json_t *r = json_array_get(res, i);
		struct gw_observed *o = &st.res[st.n];
		const char *kind = json_string_value(json_object_get(r, "kind"));
		enum gw_kind k;
		const char *name = json_string_value(json_object_get(r, "name"));
		if (name && gw_check_name(name)) {
			/* it becomes a path: never trusted because it is on disk */
			gw_log(GW_LOG_WARN, "", "%s: resource %zu has an invalid name (%s): ignored", path, i,
			       gw_check_name(name));
			continue;
		}
		if (!kind || gw_kind_from_string(&k, kind) < 0 ||
		    gw_record_parse(o, k, json_string_value(json_object_get(r, "name")), r) < 0) {
			gw_state_file_free(&st);
			json_decref(root);
			return gw_error_set_at(err, -EBADMSG, path, 0, 0, "state file is corrupt: resource %zu", i);
		}
		gw_state_entry_status(o, r);
		o->handle = handle_of(r);
		o->since = json_integer_value(json_object_get(r, "since"));
		o->crash_streak = (int)json_integer_value(json_object_get(r, "crash_streak"));
		o->backoff_until_ms = json_integer_value(json_object_get(r, "backoff_until_ms"));
		o->health_failures = (int)json_integer_value(json_object_get(r, "health_failures"));
		o->probed_at_ms = json_integer_value(json_object_get(r, "health_probed_at_ms"));
		o->probe_every_ms = json_integer_value(json_object_get(r, "health_interval_ms"));
		/* absent in state files of earlier versions: converged */
		o->not_converged = json_is_false(json_object_get(r, "converged"));
		last_action_parse(o, json_object_get(r, "last_action"));
		env_digests_parse(&o->env_digests, json_object_get(r, "env_digests"));
		st.n++;
	}
	json_decref(root);
	*out = st;
	return 0;
}

/* every string may hold what a library or Git said: kept valid UTF-8 */
static json_t *str_or_null(const char *s)
{
	return gw_json_string(s);
}

/* An error line as written and shown: URLs without user info or query (the
 * line may quote a message from libgit2 or an older gitward). */
static json_t *error_or_null(const char *msg)
{
	if (!msg)
		return json_null();
	char *shown = gw_url_redacted(msg);
	json_t *j = gw_json_string(shown);
	free(shown);
	return j;
}

int gw_state_save(const struct gw_state_file *st, const char *path, const struct gw_state_describer *d,
		  struct gw_error *err)
{
	json_t *root = json_object(), *res = json_array();
	char *data;
	int rc;

	json_object_set_new(root, "version", json_integer(STATE_VERSION));
	json_object_set_new(root, "node", str_or_null(st->node));
	json_object_set_new(root, "labels", gw_state_labels_json(&st->labels));
	json_object_set_new(root, "commit", str_or_null(st->commit));
	json_object_set_new(root, "ref", str_or_null(st->ref));
	json_object_set_new(root, "remote_commit", str_or_null(st->remote_commit));
	json_object_set_new(root, "remote_invalid", json_boolean(st->remote_invalid));
	json_object_set_new(root, "last_sync", json_integer(st->last_sync));
	json_object_set_new(root, "last_attempt", json_integer(st->last_attempt));
	json_object_set_new(root, "last_attempt_result", str_or_null(st->last_attempt_result));
	json_object_set_new(root, "last_error", error_or_null(st->last_error));
	controls_json(root, st);
	json_object_set_new(root, "rollout", rollout_json(st));
	json_object_set_new(root, "reverted", reverted_json(st, false));
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		json_t *r = json_object(), *rec = gw_record_new(o);
		char text[8];
		json_object_set_new(r, "kind", json_string(gw_kind_to_string(o->kind)));
		json_object_set_new(r, "name", gw_json_string(o->name));
		json_object_update(r, rec);
		json_decref(rec);
		json_object_set_new(r, "state", json_string(gw_state_to_string(o->state)));
		json_object_set_new(r, "health", json_string(gw_health_to_string(o->health)));
		json_object_set_new(r, "detail", gw_json_string(o->detail));
		json_object_set_new(r, "handle", str_or_null(o->handle));
		/* for readers of the file: what status shows ("pid", "id") */
		json_object_update_missing_new(r, described(d, o, text, sizeof(text)));
		json_object_set_new(r, "restarts", json_integer(o->restarts));
		if (o->since)
			json_object_set_new(r, "since", json_integer(o->since));
		json_object_set_new(r, "crash_streak", json_integer(o->crash_streak));
		json_object_set_new(r, "backoff_until_ms", json_integer(o->backoff_until_ms));
		json_object_set_new(r, "health_failures", json_integer(o->health_failures));
		if (o->probe_every_ms) {
			json_object_set_new(r, "health_probed_at_ms", json_integer(o->probed_at_ms));
			json_object_set_new(r, "health_interval_ms", json_integer(o->probe_every_ms));
		}
		json_object_set_new(r, "converged", json_boolean(!o->not_converged));
		if (o->last_action_at)
			json_object_set_new(r, "last_action", last_action_json(o, false));
		if (o->env_digests.n)
			json_object_set_new(r, "env_digests", env_digests_json(&o->env_digests));
		json_array_append_new(res, r);
	}
	json_object_set_new(root, "resources", res);
	data = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	rc = gw_file_write_atomic(path, data, strlen(data), err);
	free(data);
	return rc;
}

static json_t *time_or_null(int64_t t)
{
	char ts[64];
	if (!t)
		return json_null();
	gw_time_format_utc(ts, sizeof(ts), t);
	return json_string(ts);
}

/* [{"url", "last_error", "last_success"}]: each of several --repo */
static json_t *remotes_json(const struct gw_state_file *st)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < st->nremotes; i++) {
		json_t *e = json_object();
		json_object_set_new(e, "url", gw_json_string(st->remotes[i].url));
		json_object_set_new(e, "last_error", error_or_null(st->remotes[i].last_error));
		json_object_set_new(e, "last_success", time_or_null(st->remotes[i].last_success));
		json_array_append_new(arr, e);
	}
	return arr;
}

char *gw_state_render_status(const struct gw_state_file *st, const struct gw_state_describer *d)
{
	json_t *root = json_object(), *res = json_array();
	char *out;

	json_object_set_new(root, "node", str_or_null(st->node));
	json_object_set_new(root, "labels", gw_state_labels_json(&st->labels));
	json_object_set_new(root, "commit", str_or_null(st->commit));
	json_object_set_new(root, "ref", str_or_null(st->ref));
	json_object_set_new(root, "remote_commit", str_or_null(st->remote_commit));
	/* last_sync (SPEC) is the last success; the attempt may have failed since */
	json_object_set_new(root, "last_sync", time_or_null(st->last_sync));
	json_object_set_new(root, "last_success", time_or_null(st->last_sync));
	json_object_set_new(root, "last_attempt", time_or_null(st->last_attempt));
	json_object_set_new(root, "last_attempt_result", str_or_null(st->last_attempt_result));
	json_object_set_new(root, "last_error", error_or_null(st->last_error));
	controls_json(root, st);
	json_object_set_new(root, "reverted", reverted_json(st, true));
	json_object_set_new(root, "healthy_deadline", time_or_null(st->revert_at));
	if (st->nremotes)
		json_object_set_new(root, "remotes", remotes_json(st));
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		json_t *r = json_object();
		json_object_set_new(r, "kind", json_string(gw_kind_to_string(o->kind)));
		json_object_set_new(r, "name", gw_json_string(o->name));
		json_object_set_new(r, "state", json_string(gw_state_to_string(o->state)));
		json_object_set_new(r, "health", json_string(gw_health_to_string(o->health)));
		char text[8];
		json_object_update_missing_new(r, described(d, o, text, sizeof(text)));
		json_object_set_new(r, "spec_hash", gw_json_string(o->spec_hash));
		json_object_set_new(r, "restarts", json_integer(o->restarts));
		json_object_set_new(r, "since", time_or_null(o->since));
		if (o->detail[0])
			json_object_set_new(r, "detail", gw_json_string(o->detail));
		json_object_set_new(r, "last_action", o->last_action_at ? last_action_json(o, true) : json_null());
		json_array_append_new(res, r);
	}
	json_object_set_new(root, "resources", res);
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return out;
}

/* "labels:       role=edge zone=a", each escaped (read back from a file) */
static void print_labels(FILE *f, const struct gw_strmap *labels)
{
	char k[512], v[1024];
	fputs("labels:      ", f);
	for (size_t i = 0; i < labels->n; i++)
		fprintf(f, " %s=%s", gw_escape(k, sizeof(k), labels->k[i]), gw_escape(v, sizeof(v), labels->v[i]));
	fputc('\n', f);
}

void gw_state_render_status_text(FILE *f, const struct gw_state_file *st, const struct gw_state_describer *d)
{
	char ts[64] = "never", esc[2048];
	if (st->last_sync)
		gw_time_format_utc(ts, sizeof(ts), st->last_sync);
	/* all of it read back from a file: escaped */
	fprintf(f, "node:         %s\n", gw_escape(esc, sizeof(esc), st->node ? st->node : "-"));
	if (st->labels.n)
		print_labels(f, &st->labels);
	fprintf(f, "commit:       %s\n", gw_escape(esc, sizeof(esc), st->commit ? st->commit : "-"));
	fprintf(f, "ref:          %s\n", gw_escape(esc, sizeof(esc), st->ref ? st->ref : "-"));
	if (st->remote_commit)
		fprintf(f, "remote:       %s%s\n", gw_escape(esc, sizeof(esc), st->remote_commit),
			st->remote_invalid ? " (invalid: the commit above stays in force)" : "");
	fprintf(f, "last success: %s\n", ts);
	if (st->last_attempt) {
		gw_time_format_utc(ts, sizeof(ts), st->last_attempt);
		fprintf(f, "last attempt: %s (%s)\n", ts,
			gw_escape(esc, sizeof(esc), st->last_attempt_result ? st->last_attempt_result : "unknown"));
	}
	if (st->last_error) {
		char *shown = gw_url_redacted(st->last_error);
		fprintf(f, "last error: %s\n", gw_escape(esc, sizeof(esc), shown));
		free(shown);
	}
	for (size_t i = 0; i < st->nremotes; i++) {
		if (!st->remotes[i].last_error)
			continue;
		char *shown = gw_url_redacted(st->remotes[i].last_error);
		fprintf(f, "remote error: %s\n", gw_escape(esc, sizeof(esc), shown));
		free(shown);
	}
	fprintf(f, "mode:         %s\n", st->mode ? st->mode : "enforce");
	if (st->suspended)
		fprintf(f, "suspended:    since %s (%s)\n",
			gw_escape(esc, sizeof(esc), st->suspended_since ? st->suspended_since : "?"),
			gw_escape(esc + 1024, sizeof(esc) - 1024, st->suspended_reason ? st->suspended_reason : ""));
	if (st->pinned_commit)
		fprintf(f, "pinned:       %.12s since %s (%s) until the ref moves from %.12s\n", st->pinned_commit,
			st->pinned_since ? st->pinned_since : "?",
			gw_escape(esc, sizeof(esc), st->pinned_reason ? st->pinned_reason : ""),
			st->pinned_tip && st->pinned_tip[0] ? st->pinned_tip : "?");
	if (st->reverted_commit) {
		char *shown = gw_url_redacted(st->reverted_reason ? st->reverted_reason : "");
		gw_time_format_utc(ts, sizeof(ts), st->reverted_at);
		fprintf(f, "reverted:     %s at %s (%s); not applied again until the ref moves\n", st->reverted_commit,
			ts, gw_escape(esc, sizeof(esc), shown));
		free(shown);
	}
	if (st->revert_at) {
		gw_time_format_utc(ts, sizeof(ts), st->revert_at);
		fprintf(f, "auto-revert:  unless what commit %.12s changed runs healthy by %s\n",
			st->commit ? st->commit : "-", ts);
	}
	for (size_t i = 0; i < st->npending; i++) {
		snprintf(esc, sizeof(esc), "%s/%s", gw_kind_to_string((enum gw_kind)st->pending[i].kind),
			 st->pending[i].name);
		char key[200];
		char why[120] = "";
		if (st->pending[i].held[0] && st->pending[i].until) {
			gw_time_format_utc(ts, sizeof(ts), st->pending[i].until);
			snprintf(why, sizeof(why), " (held: %s until %s)", st->pending[i].held, ts);
		} else if (st->pending[i].held[0]) {
			snprintf(why, sizeof(why), " (held: %s)", st->pending[i].held);
		}
		fprintf(f, "pending:      %s %s%s\n", st->pending[i].action, gw_escape(key, sizeof(key), esc), why);
	}
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		char key[200], text[100], ident[100];
		snprintf(esc, sizeof(esc), "%s/%s", gw_kind_to_string(o->kind), o->name);
		gw_escape(key, sizeof(key), esc);
		json_decref(described(d, o, text, sizeof(text)));
		gw_escape(ident, sizeof(ident), text); /* made from a file's bytes */
		char since[64] = "", restarts[32];
		if (o->since) {
			strcpy(since, "  since ");
			gw_time_format_utc(since + 8, sizeof(since) - 8, o->since);
		}
		snprintf(restarts, sizeof(restarts), "restarts %d", o->restarts);
		fprintf(f, "  %-28s %-8s %-9s %-11s %s%s%s%s\n", key, gw_state_to_string(o->state),
			gw_health_to_string(o->health), restarts, ident, since, o->detail[0] ? "  " : "",
			gw_escape(esc, sizeof(esc), o->detail));
	}
}

/* One of gitward's directories or an entry of one: a real directory (no
 * link), ours, writable by nobody else — whoever could write here could make
 * gitward signal, delete or overwrite what they choose. `what` names the
 * dir in messages, `option` the flag that moves it. */
static int check_dir(const char *path, int follow, const char *what, const char *option, struct gw_error *err)
{
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) {
		if (errno == ENOENT && !follow)
			return 0;
		return gw_error_set_at(err, -errno, path, 0, 0, "%s: %s", what, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return gw_error_set_at(err, -ENOTDIR, path, 0, 0,
				       "%s: not a directory%s (remove it; gitward creates its own)", what,
				       S_ISLNK(st.st_mode) ? " but a symbolic link" : "");
	if (st.st_uid != geteuid())
		return gw_error_set_at(err, -EPERM, path, 0, 0,
				       "%s is owned by uid %u, not by this user (uid %u): chown it or use another %s",
				       what, (unsigned)st.st_uid, (unsigned)geteuid(), option);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return gw_error_set_at(err, -EPERM, path, 0, 0, "%s is writable by %s (mode %04o): chmod go-w it", what,
				       st.st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st.st_mode & 07777));
	return 0;
}

/* The run or log dir: inside the state dir (the default with --state-dir)
 * it is an entry of it, made when first needed; on its own (/run/gitward)
 * it is made now, then checked like the state dir. */
static int check_own_dir(const char *inside, const char *dir, const char *what, const char *option,
			 struct gw_error *err)
{
	int rc;
	if (!strcmp(dir, inside))
		return check_dir(dir, 0, "state dir", "--state-dir", err);
	if ((rc = gw_mkdir_p(dir, 0700, err)) < 0)
		return rc;
	return check_dir(dir, 1, what, option, err);
}

int gw_state_dir_check(const char *state_dir, const char *run_dir, const char *log_dir, struct gw_error *err)
{
	static const enum gw_kind kinds[] = { GW_KIND_PROCESS, GW_KIND_VM };
	char path[4096];
	int rc = check_dir(state_dir, 1, "state dir", "--state-dir", err);
	if (rc == 0)
		rc = check_own_dir(gw_path_state_run(path, sizeof(path), state_dir), run_dir, "run dir", "--run-dir",
				   err);
	for (size_t i = 0; rc == 0 && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		rc = check_dir(gw_path_kind_dir(path, sizeof(path), run_dir, kinds[i]), 0,
			       gw_dirs_run_is_legacy(state_dir, run_dir) ? "state dir" : "run dir",
			       gw_dirs_run_is_legacy(state_dir, run_dir) ? "--state-dir" : "--run-dir", err);
	if (rc == 0)
		rc = check_own_dir(gw_path_state_logs(path, sizeof(path), state_dir), log_dir, "log dir", "--log-dir",
				   err);
	return rc;
}

int gw_state_dir_check_existing(const char *dir, struct gw_error *err)
{
	struct stat st;
	if (lstat(dir, &st) < 0 && errno == ENOENT)
		return 0;
	/* the state dir alone: a reader creates nothing, not even a run dir */
	return check_dir(dir, 0, "state dir", "--state-dir", err);
}

int gw_state_dir_readable(const char *dir, struct gw_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT)
		return gw_error_set_at(err, -ENOENT, dir, 0, 0,
				       "no such state dir: no gitward has used it (give the --state-dir of the node's "
				       "agent)");
	if (errno == ENOTDIR)
		return gw_error_set_at(err, -ENOTDIR, dir, 0, 0, "state dir is not a directory");
	return gw_error_set_at(err, -errno, dir, 0, 0, "cannot read the state dir: %s", strerror(errno));
}

#define REPO_RECORD_MAX 4096

int gw_state_repo_read(struct gw_strlist *out, const char *dir, struct gw_error *err)
{
	char path[4096], *data;
	size_t len;
	int rc;

	memset(out, 0, sizeof(*out));
	gw_path_repository(path, sizeof(path), dir);
	rc = gw_file_read_nofollow(&data, &len, path, REPO_RECORD_MAX, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		data[--len] = '\0';
	if (len == 0 || memchr(data, '\0', len) || strstr(data, "\n\n")) {
		free(data);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0,
				       "not lines naming a repository: remove it and the next --repo is recorded");
	}
	/* one remote a line; a state dir of an earlier version has one */
	for (char *save = NULL, *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		out->v = gw_xrealloc(out->v, (out->n + 2) * sizeof(char *));
		out->v[out->n++] = gw_xstrdup(line);
		out->v[out->n] = NULL;
	}
	free(data);
	return 0;
}

int gw_state_repo_write(const char *dir, const char *const *repos, size_t n, struct gw_error *err)
{
	char path[4096];
	struct gw_strbuf sb;
	int rc;

	gw_path_repository(path, sizeof(path), dir);
	gw_strbuf_init(&sb);
	for (size_t i = 0; i < n; i++)
		gw_strbuf_printf(&sb, "%s\n", repos[i]);
	rc = gw_file_write_atomic(path, sb.s, sb.len, err);
	gw_strbuf_free(&sb);
	return rc;
}

char *gw_state_default_dir(void)
{
	struct gw_dirs_env env;
	gw_dirs_env_from_process(&env);
	return gw_dirs_default_state(&env);
}

const char *gw_state_default_dir_note(char *buf, size_t size, const char *state_dir)
{
	struct gw_dirs_env env;
	gw_dirs_env_from_process(&env);
	char *def = gw_dirs_default_state(&env);
	bool is_default = state_dir && !strcmp(state_dir, def);
	free(def);
	if (!is_default)
		return NULL;
	snprintf(buf, size, "%s is the default state dir %s", state_dir, gw_dirs_default_state_rule(&env));
	return buf;
}
