/* The External backend: resources handled by an executable plugin that
 * speaks a small JSON protocol on stdin/stdout (contrib/plugins/PROTOCOL.md),
 * much like a CNI plugin or a Terraform provider cut to four operations:
 * create, observe, destroy, probe.
 *
 * The plugin is a file of the plugin directory (--plugin-dir), run with an
 * argv and a clean environment (gw_spawn_capture), one process per call,
 * bounded in time (spec.timeout) and in reply size; whatever it does wrong is
 * an error of its own resources only. What it returns at create is an opaque
 * handle, kept with the spec in STATE/external/NAME.json and handed back at
 * every later call. Immutable like the other kinds: a changed spec (or a
 * changed source file) is destroy + create.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/backend.h"
#include "gitward/external.h"
#include "gitward/schema.h"
#include "gitward/state.h"

/* ---- the protocol client ---- */

/* The last line of a plugin's stderr, for an error message. */
static const char *stderr_tail(char *buf, size_t size, struct gw_strbuf *errout)
{
	char *s = errout->s ? errout->s : "";
	size_t n = errout->len;
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	char *nl = memrchr(s, '\n', n);
	gw_escape(buf, size, nl ? nl + 1 : s);
	return buf;
}

static int check_reply(json_t **reply, const char *what, struct gw_strbuf *out, struct gw_error *err)
{
	json_error_t jerr;
	char esc[300];

	json_t *j = json_loadb(out->s ? out->s : "", out->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return gw_error_set(err, -EBADMSG, "%s: answered something other than one JSON object (%s)", what,
				    j ? "not an object" : gw_escape(esc, sizeof(esc), jerr.text));
	}
	json_t *proto = json_object_get(j, "protocol");
	if (!json_is_integer(proto) || json_integer_value(proto) != GW_PLUGIN_PROTOCOL) {
		if (json_is_integer(proto))
			gw_error_set(err, -EPROTO, "%s: answered in protocol %lld, gitward speaks %d", what,
				     (long long)json_integer_value(proto), GW_PLUGIN_PROTOCOL);
		else
			gw_error_set(err, -EPROTO, "%s: answered without \"protocol\": %d", what, GW_PLUGIN_PROTOCOL);
		json_decref(j);
		return -EPROTO;
	}
	json_t *ok = json_object_get(j, "ok");
	if (!json_is_boolean(ok)) {
		json_decref(j);
		return gw_error_set(err, -EBADMSG, "%s: answered without \"ok\": true or false", what);
	}
	if (!json_is_true(ok)) {
		const char *why = json_string_value(json_object_get(j, "error"));
		gw_error_set(err, -EIO, "%s: %s", what,
			     gw_escape(esc, sizeof(esc), why ? why : "failed (no error given)"));
		json_decref(j);
		return -EIO;
	}
	*reply = j;
	return 0;
}

int gw_plugin_call(json_t **reply, const char *dir, const char *name, const char *op, json_t *request,
		   int64_t timeout_ms, const struct gw_cancel *cancel, struct gw_error *err)
{
	char path[4096], what[200], tail[300];
	struct gw_strbuf out, errout;
	struct stat st;
	int status = 0, rc;

	snprintf(what, sizeof(what), "plugin %s %s", name, op);
	if (!*name || strchr(name, '/') || name[0] == '.')
		return gw_error_set(err, -EINVAL, "plugin \"%s\": not a plugin name", name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return gw_error_set(err, -ENOENT, "plugin %s: no such plugin in %s (--plugin-dir)", name, dir);
	if (access(path, X_OK) < 0)
		return gw_error_set(err, -EACCES, "plugin %s: %s is not executable", name, path);

	json_object_set_new(request, "protocol", json_integer(GW_PLUGIN_PROTOCOL));
	json_object_set_new(request, "op", json_string(op));
	char *in = json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS);
	char *argv[] = { path, (char *)op, NULL };
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	rc = gw_spawn_capture_cancel(&status, &out, &errout, argv, in, strlen(in), GW_PLUGIN_REPLY_MAX + 1, timeout_ms,
				     cancel, err);
	free(in);
	if (rc == -EMSGSIZE) {
		rc = gw_error_set(err, -EMSGSIZE, "%s: answered more than %u bytes", what, GW_PLUGIN_REPLY_MAX);
	} else if (rc == -ETIMEDOUT) {
		char d[32];
		gw_duration_format(d, sizeof(d), timeout_ms);
		rc = gw_error_set(err, -ETIMEDOUT, "%s: no answer within %s (spec.timeout): killed", what, d);
	} else if (rc < 0) {
		gw_error_prefix(err, "%s", what);
	} else if (WIFSIGNALED(status)) {
		rc = gw_error_set(err, -EIO, "%s: killed by signal %d", what, WTERMSIG(status));
	} else if (WEXITSTATUS(status) != 0) {
		rc = gw_error_set(err, -EIO, "%s: exited with status %d%s%s", what, WEXITSTATUS(status),
				  errout.len ? ": " : "", stderr_tail(tail, sizeof(tail), &errout));
	} else {
		rc = check_reply(reply, what, &out, err);
	}
	gw_strbuf_free(&out);
	gw_strbuf_free(&errout);
	return rc;
}

/* ---- records: STATE/external/NAME.json ----
 * In the state dir, not the run dir: what a plugin makes (files, cloud
 * objects) outlives a reboot. The shared record fields plus the plugin, its
 * handle and the timeout of the calls. */

static char *record_dir(char *buf, size_t size, const struct gw_backend *b)
{
	snprintf(buf, size, "%s/external", b->cfg.state_dir);
	return buf;
}

static char *record_path(char *buf, size_t size, const struct gw_backend *b, const char *name)
{
	snprintf(buf, size, "%s/external/%s.json", b->cfg.state_dir, name);
	return buf;
}

/* What a later call needs: the plugin, its handle, the spec it was given. */
struct record {
	const char *plugin, *handle, *spec;
	int64_t timeout_ms;
};

static int record_fields(struct record *out, const json_t *rec)
{
	out->plugin = json_string_value(json_object_get(rec, "plugin"));
	out->handle = json_string_value(json_object_get(rec, "handle"));
	out->spec = json_string_value(json_object_get(rec, "spec"));
	out->timeout_ms = json_integer_value(json_object_get(rec, "timeout_ms"));
	if (out->timeout_ms <= 0)
		out->timeout_ms = GW_PLUGIN_TIMEOUT_MS;
	return out->plugin && out->handle && out->spec ? 0 : -EBADMSG;
}

static const char *plugin_dir(const struct gw_backend *b)
{
	return b->cfg.plugin_dir ? b->cfg.plugin_dir : GW_PLUGIN_DIR_DEFAULT;
}

/* The request every operation starts from: the resource's name and its
 * canonical spec (the "spec" member of canonical). */
static json_t *request_new(const char *name, const char *canonical, const char *handle)
{
	json_t *req = json_object();
	json_t *doc = canonical ? json_loads(canonical, 0, NULL) : NULL;
	json_t *spec = json_object_get(doc, "spec");
	json_object_set_new(req, "name", json_string(name));
	json_object_set_new(req, "spec", spec ? json_incref(spec) : json_object());
	if (handle)
		json_object_set_new(req, "handle", json_string(handle));
	json_decref(doc);
	return req;
}

/* ---- the backend ---- */

/* Observe one recorded resource: present and healthy is running; gone,
 * drifted, unhealthy or a plugin that fails is failed, with the reason. */
static void observe_one(struct gw_observed *o, const struct record *rec, const struct gw_backend *b,
			const struct gw_cancel *cancel)
{
	struct gw_error err;
	json_t *reply = NULL;
	char esc[120];

	o->state = GW_STATE_FAILED;
	json_t *req = request_new(o->name, rec->spec, rec->handle);
	int rc = gw_plugin_call(&reply, plugin_dir(b), rec->plugin, "observe", req, rec->timeout_ms, cancel, &err);
	json_decref(req);
	if (rc < 0) {
		snprintf(o->detail, sizeof(o->detail), "%s", err.msg);
		return;
	}
	const char *state = json_string_value(json_object_get(reply, "state"));
	const char *detail = json_string_value(json_object_get(reply, "detail"));
	gw_escape(esc, sizeof(esc), detail ? detail : "");
	if (!state || (strcmp(state, "present") && strcmp(state, "absent") && strcmp(state, "drifted"))) {
		snprintf(o->detail, sizeof(o->detail),
			 "plugin %s observe: answered without \"state\": present, absent or drifted", rec->plugin);
	} else if (!strcmp(state, "absent")) {
		snprintf(o->detail, sizeof(o->detail), "gone%s%s", *esc ? ": " : "", esc);
	} else if (!strcmp(state, "drifted")) {
		snprintf(o->detail, sizeof(o->detail), "drifted%s%s", *esc ? ": " : "", esc);
	} else {
		json_decref(reply);
		reply = NULL;
		req = request_new(o->name, rec->spec, rec->handle);
		rc = gw_plugin_call(&reply, plugin_dir(b), rec->plugin, "probe", req, rec->timeout_ms, cancel, &err);
		json_decref(req);
		detail = json_string_value(json_object_get(reply, "detail"));
		if (rc < 0)
			snprintf(o->detail, sizeof(o->detail), "%s", err.msg);
		else if (!json_is_boolean(json_object_get(reply, "healthy")))
			snprintf(o->detail, sizeof(o->detail), "plugin %s probe: answered without \"healthy\"",
				 rec->plugin);
		else if (!json_is_true(json_object_get(reply, "healthy")))
			snprintf(o->detail, sizeof(o->detail), "unhealthy: %s",
				 gw_escape(esc, sizeof(esc), detail ? detail : "the plugin's probe failed"));
		else
			o->state = GW_STATE_RUNNING;
	}
	json_decref(reply);
}

#define OBSERVERS_MAX 8 /* plugin calls at once while observing */
#define RESULT_STALE_MS 300000 /* an observation that ended longer ago is redone */

struct scan {
	const struct gw_backend *b;
	const struct gw_cancel *cancel;
	struct gw_observed *v;
	json_t **recs; /* the record of each, read once */
	size_t n;
	atomic_size_t next; /* the next one an observer takes */
};

static int scan_one(const char *name, const char *path, void *ud)
{
	struct scan *sc = ud;
	struct record rec;
	json_t *j = gw_record_load(path);
	sc->v = gw_xrealloc(sc->v, (sc->n + 1) * sizeof(*sc->v));
	sc->recs = gw_xrealloc(sc->recs, (sc->n + 1) * sizeof(*sc->recs));
	struct gw_observed *o = &sc->v[sc->n];
	if (!j || record_fields(&rec, j) < 0 || gw_record_parse(o, GW_KIND_EXTERNAL, name, j) < 0) {
		gw_log(GW_LOG_WARN, name, "unreadable External record %s: ignored", path);
		json_decref(j);
		return 0;
	}
	o->handle = gw_xstrdup(rec.handle);
	sc->recs[sc->n++] = j;
	return 0;
}

/* An observer: plugins are slow to start and one may hang for its whole
 * timeout, so several are asked at once. */
static void *observer(void *ud)
{
	struct scan *sc = ud;
	for (size_t i; (i = atomic_fetch_add(&sc->next, 1)) < sc->n;) {
		struct record rec;
		record_fields(&rec, sc->recs[i]);
		observe_one(&sc->v[i], &rec, sc->b, sc->cancel);
	}
	return NULL;
}

/* Every recorded resource, each observed by its plugin. */
static int observe_all(struct gw_observed **out, size_t *out_n, const struct gw_backend *b,
		       const struct gw_cancel *cancel, struct gw_error *err)
{
	char dir[4096];
	struct scan sc = { .b = b, .cancel = cancel };
	pthread_t t[OBSERVERS_MAX];
	size_t nt = 0;
	int rc = gw_record_scan(record_dir(dir, sizeof(dir), b), ".json", scan_one, &sc, err);
	if (rc == 0) {
		atomic_init(&sc.next, 0);
		while (nt < OBSERVERS_MAX && nt + 1 < sc.n && pthread_create(&t[nt], NULL, observer, &sc) == 0)
			nt++;
		observer(&sc); /* and this thread too */
		for (size_t i = 0; i < nt; i++)
			pthread_join(t[i], NULL);
	}
	for (size_t i = 0; i < sc.n; i++) {
		json_decref(sc.recs[i]);
		if (rc < 0)
			gw_observed_clear(&sc.v[i]);
	}
	free(sc.recs);
	if (rc < 0) {
		free(sc.v);
		return rc;
	}
	*out = sc.v;
	*out_n = sc.n;
	return 0;
}

/* ---- the observation thread ----
 * A pass waits for the observation until it is GW_PLUGIN_OBSERVE_WAIT_MS old: a
 * plugin that hangs (for up to its spec.timeout, an hour if Git says so)
 * then holds neither the heal of the other kinds nor a stop request. The
 * observation goes on, on its own thread, and the next pass takes its
 * result — unless a create or destroy ran since it began (it would miss
 * what they did), or it ended too long ago. done stops it: its plugins'
 * process groups are killed within 50 ms. */

struct ext {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gw_cancel stop;
	const struct gw_backend *b;
	pthread_t thread;
	bool joinable, busy, ready;
	unsigned long changes, began_at_change; /* creates and destroys so far */
	int64_t began_ms, ended_ms;
	/* the result, once ready */
	struct gw_observed *v;
	size_t n;
	int rc;
	struct gw_error err;
};

static int external_init(void **priv, const struct gw_backend *b, struct gw_error *err)
{
	struct ext *x = gw_xcalloc(1, sizeof(*x));
	(void)err;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	x->b = b;
	*priv = x;
	return 0;
}

static void result_drop(struct ext *x)
{
	for (size_t i = 0; i < x->n; i++)
		gw_observed_clear(&x->v[i]);
	free(x->v);
	x->v = NULL;
	x->n = 0;
	x->ready = false;
}

static void external_done(void *priv)
{
	struct ext *x = priv;
	if (!x)
		return;
	gw_cancel_request(&x->stop);
	if (x->joinable)
		pthread_join(x->thread, NULL);
	result_drop(x);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
	free(x);
}

static void *observation(void *ud)
{
	struct ext *x = ud;
	struct gw_observed *v = NULL;
	struct gw_error err = { 0 };
	size_t n = 0;
	int rc = observe_all(&v, &n, x->b, &x->stop, &err);
	pthread_mutex_lock(&x->mu);
	x->v = v;
	x->n = n;
	x->rc = rc;
	x->err = err;
	x->ready = true;
	x->busy = false;
	x->ended_ms = gw_monotonic_ms();
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* Called with x->mu held: an observation under way, started if need be. */
static int observation_start(struct ext *x, struct gw_error *err)
{
	if (x->ready && (x->began_at_change != x->changes || gw_monotonic_ms() - x->ended_ms > RESULT_STALE_MS))
		result_drop(x);
	if (x->busy || x->ready)
		return 0;
	if (x->joinable) /* ended: joins at once */
		pthread_join(x->thread, NULL);
	x->joinable = false;
	x->began_at_change = x->changes;
	x->began_ms = gw_monotonic_ms();
	int rc = pthread_create(&x->thread, NULL, observation, x);
	if (rc != 0)
		return gw_error_set(err, -rc, "cannot start the observation: %s", strerror(rc));
	x->joinable = x->busy = true;
	return 0;
}

static int external_discover(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
			     const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_cancel *cancel = call ? call->cancel : NULL;
	struct ext *x = b->priv;
	if (!x) /* an instance without init: observed in this thread */
		return observe_all(out, out_n, b, cancel, err);

	pthread_mutex_lock(&x->mu);
	int rc = observation_start(x, err);
	/* waited for until it is that old: one that an earlier pass already
	 * waited for holds this one no more */
	int64_t deadline = x->began_ms + GW_PLUGIN_OBSERVE_WAIT_MS;
	while (rc == 0 && !x->ready) {
		int64_t now = gw_monotonic_ms();
		if (gw_cancel_requested(cancel)) {
			rc = gw_error_set(err, -ECANCELED, "observing: stopped: the agent is stopping");
		} else if (now >= deadline) {
			rc = gw_error_set(err, -EINPROGRESS,
					  "the plugins have not answered observe for %llds: External resources left as "
					  "recorded until they do",
					  (long long)((now - x->began_ms) / 1000));
		} else {
			struct timespec ts; /* woken every 50 ms for the stop request */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&x->cv, &x->mu, &ts);
		}
	}
	if (rc == 0) {
		rc = x->rc;
		if (rc < 0) {
			*err = x->err;
			result_drop(x);
		} else {
			*out = x->v; /* now owned by the caller */
			*out_n = x->n;
			x->v = NULL;
			x->n = 0;
			x->ready = false;
		}
	}
	pthread_mutex_unlock(&x->mu);
	return rc;
}

/* A create or destroy: an observation begun before it is out of date. */
static void changed(struct gw_backend *b)
{
	struct ext *x = b->priv;
	if (!x)
		return;
	pthread_mutex_lock(&x->mu);
	x->changes++;
	pthread_mutex_unlock(&x->mu);
}

/* {"path": "base64 of its content"} for the resource's source files. */
static json_t *sources_json(const struct gw_resource *r)
{
	json_t *s = json_object();
	for (size_t i = 0; r->source_files && i < r->sources.n; i++) {
		const struct gw_secret_file *f = &r->source_files[i];
		char *b64 = gw_xmalloc(4 * ((f->len + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)(f->cipher ? f->cipher : ""), (int)f->len);
		json_object_set_new(s, r->sources.v[i], json_string(b64));
		free(b64);
	}
	return s;
}

static int call_destroy(const char *name, const struct record *rec, const struct gw_backend *b,
			const struct gw_cancel *cancel, struct gw_error *err)
{
	json_t *reply = NULL;
	json_t *req = request_new(name, rec->spec, rec->handle);
	int rc = gw_plugin_call(&reply, plugin_dir(b), rec->plugin, "destroy", req, rec->timeout_ms, cancel, err);
	json_decref(req);
	json_decref(reply);
	return rc;
}

/* Ask the plugin to create r; *handle is what it answered (caller frees). */
static int call_create(char **handle, const struct gw_backend *b, const struct gw_resource *r, int64_t timeout,
		       const struct gw_cancel *cancel, struct gw_error *err)
{
	json_t *reply = NULL;
	json_t *req = request_new(r->name, r->canonical, NULL);
	json_object_set_new(req, "sources", sources_json(r));
	int rc = gw_plugin_call(&reply, plugin_dir(b), r->plugin, "create", req, timeout, cancel, err);
	json_decref(req);
	if (rc < 0)
		return rc;
	const char *h = json_string_value(json_object_get(reply, "handle"));
	if (!h || !*h || strlen(h) > GW_PLUGIN_HANDLE_MAX)
		rc = gw_error_set(err, -EBADMSG, "plugin %s create: answered without a \"handle\" of 1 to %u bytes",
				  r->plugin, GW_PLUGIN_HANDLE_MAX);
	else
		*handle = gw_xstrdup(h);
	json_decref(reply);
	return rc;
}

static int external_create(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
			   const struct gw_backend_call *call, struct gw_error *err)
{
	char dir[4096], path[4400];
	int64_t timeout = r->plugin_timeout_ms ? r->plugin_timeout_ms : GW_PLUGIN_TIMEOUT_MS;
	const struct gw_cancel *cancel = call ? call->cancel : NULL;
	struct gw_observed made;
	char *handle = NULL;
	int rc;

	if (r->sources.n && (!r->source_files || !r->source_files[r->sources.n - 1].blob[0]))
		return gw_error_set(err, -EINVAL, "spec.sources: not read from the commit");
	if ((rc = gw_mkdir_p(record_dir(dir, sizeof(dir), b), 0700, err)) < 0)
		return rc;
	rc = call_create(&handle, b, r, timeout, cancel, err);
	changed(b); /* whether it made something or not */
	if (rc < 0)
		return rc;
	gw_observed_start(&made, r);
	made.handle = handle; /* now owned by made */
	json_t *rec = gw_record_new(&made);
	json_object_set_new(rec, "plugin", json_string(r->plugin));
	json_object_set_new(rec, "handle", json_string(handle));
	json_object_set_new(rec, "timeout_ms", json_integer(timeout));
	rc = gw_record_write(record_path(path, sizeof(path), b, r->name), rec, err);
	if (rc < 0) { /* unrecorded, it would never be found again: undone */
		struct record back;
		struct gw_error ignored;
		if (record_fields(&back, rec) == 0)
			call_destroy(r->name, &back, b, NULL, &ignored);
		gw_observed_clear(&made);
	} else {
		*o = made;
	}
	json_decref(rec);
	return rc;
}

static int external_destroy(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			    const struct gw_backend_call *call, struct gw_error *err)
{
	char path[4400];
	struct record rec;
	json_t *j = gw_record_load(record_path(path, sizeof(path), b, o->name));
	int rc;

	if (!j) {
		if (access(path, F_OK) < 0 && errno == ENOENT)
			return 0; /* never created, or already gone */
		return gw_error_set_at(err, -EBADMSG, path, 0, 0, "unreadable External record");
	}
	if (record_fields(&rec, j) < 0) {
		json_decref(j);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0, "External record without plugin, handle or spec");
	}
	rc = call_destroy(o->name, &rec, b, call ? call->cancel : NULL, err);
	json_decref(j);
	if (rc == 0 && unlink(path) < 0 && errno != ENOENT)
		rc = gw_error_set_at(err, -errno, path, 0, 0, "cannot remove: %s", strerror(errno));
	changed(b);
	return rc;
}

/* The handle is the plugin's: shown as it is, shortened. */
static void external_describe(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle)
{
	char esc[64];
	json_object_set_new(fields, "handle", handle ? gw_json_string(handle) : json_null());
	if (size)
		snprintf(text, size, "handle %s", handle ? gw_escape(esc, sizeof(esc), handle) : "-");
}

const struct gw_backend_ops gw_backend_external = {
	.name = "external",
	.kind = GW_KIND_EXTERNAL,
	.init = external_init,
	.done = external_done,
	.discover = external_discover,
	.create = external_create,
	.destroy = external_destroy,
	.describe = external_describe,
};
