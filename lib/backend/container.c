/* The container backend: one service per container, through the Docker
 * Engine API (Docker or Podman) over a unix socket.
 *
 * Every container gitward creates is named gitward-<name> and carries the
 * labels gitward.managed=true, gitward.name, gitward.spec-hash (the drift
 * detector, like compose's config-hash), gitward.spec (the canonical form, for
 * field-level plans) and gitward.state-dir (which gitward owns it). Only
 * containers with all of them are ever listed, stopped or removed; a name
 * clash with any other container is an error, never a takeover. The restart
 * policy is gitward's: the engine's is always "no".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/backend.h"
#include "gitward/container.h"
#include "gitward/engine.h"
#include "gitward/schema.h"

#define CALL_TIMEOUT_MS 30000
#define PULL_TIMEOUT_MS 600000

char *gw_container_handle(const char *id)
{
	json_t *h = json_pack("{s:s}", "id", id);
	char *s = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(h);
	return s;
}

const char *gw_container_id(char *buf, size_t size, const char *handle)
{
	json_t *h = handle ? json_loads(handle, 0, NULL) : NULL;
	const char *id = json_string_value(json_object_get(h, "id"));
	snprintf(buf, size, "%s", id ? id : "");
	json_decref(h);
	return buf;
}

const char *gw_container_name(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "gitward-%s", name);
	return buf;
}

/* Env: envFiles and secretEnvFiles first, env wins. */
static json_t *env_json(const struct gw_resource *r, const struct gw_strmap *file_env)
{
	json_t *env = json_array();
	struct gw_strmap merged = { 0 };

	for (size_t i = 0; file_env && i < file_env->n; i++)
		gw_strmap_set(&merged, file_env->k[i], file_env->v[i]);
	for (size_t i = 0; i < r->env.n; i++)
		gw_strmap_set(&merged, r->env.k[i], r->env.v[i]);
	for (size_t i = 0; i < merged.n; i++) {
		struct gw_strbuf sb;
		gw_strbuf_init(&sb);
		gw_strbuf_printf(&sb, "%s=%s", merged.k[i], merged.v[i]);
		json_array_append_new(env, json_string(sb.s));
		gw_strbuf_free(&sb);
	}
	gw_strmap_free(&merged);
	return env;
}

/* ExposedPorts of the body and PortBindings of its HostConfig. */
static void set_ports(json_t *body, json_t *host, const struct gw_resource *r)
{
	char buf[128];
	json_t *exposed = json_object(), *bindings = json_object();
	for (size_t i = 0; i < r->ports.n; i++) {
		struct gw_portmap pm;
		if (gw_portmap_parse(&pm, r->ports.v[i]) < 0)
			continue;
		snprintf(buf, sizeof(buf), "%u/%s", pm.port, pm.proto);
		json_object_set_new(exposed, buf, json_object());
		json_t *list = json_object_get(bindings, buf);
		if (!list) {
			list = json_array();
			json_object_set_new(bindings, buf, list);
		}
		char hp[16];
		snprintf(hp, sizeof(hp), "%u", pm.host_port);
		json_array_append_new(list, json_pack("{s:s, s:s}", "HostIp", pm.host_ip, "HostPort", hp));
	}
	json_object_set_new(body, "ExposedPorts", exposed);
	json_object_set_new(host, "PortBindings", bindings);
}

json_t *gw_container_create_body(const struct gw_resource *r, const struct gw_strmap *file_env, const char *state_dir)
{
	json_t *body = json_object(), *labels = json_object(), *host = json_object();
	char buf[128];

	json_object_set_new(body, "Image", json_string(r->image));
	if (r->command.n) {
		json_t *cmd = json_array();
		for (size_t i = 0; i < r->command.n; i++)
			json_array_append_new(cmd, json_string(r->command.v[i]));
		json_object_set_new(body, "Cmd", cmd);
	}
	json_object_set_new(body, "Env", env_json(r, file_env));

	json_object_set_new(labels, GW_LABEL_MANAGED, json_string("true"));
	json_object_set_new(labels, GW_LABEL_NAME, json_string(r->name));
	json_object_set_new(labels, GW_LABEL_HASH, json_string(r->spec_hash));
	json_object_set_new(labels, GW_LABEL_SPEC, json_string(r->canonical));
	json_object_set_new(labels, GW_LABEL_STATE_DIR, json_string(state_dir));
	json_object_set_new(labels, GW_LABEL_RESTART, json_string(gw_restart_to_string(r->restart)));
	if (r->depends_on.n) {
		struct gw_strbuf sb;
		gw_strbuf_init(&sb);
		for (size_t i = 0; i < r->depends_on.n; i++)
			gw_strbuf_printf(&sb, "%s%s", i ? "," : "", r->depends_on.v[i]);
		json_object_set_new(labels, GW_LABEL_DEPENDS_ON, json_string(sb.s));
		gw_strbuf_free(&sb);
	}
	json_object_set_new(body, "Labels", labels);
	snprintf(buf, sizeof(buf), "SIG%s", gw_signal_to_string(gw_resource_stop_signal(r)));
	json_object_set_new(body, "StopSignal", json_string(buf));
	json_object_set_new(body, "StopTimeout", json_integer((gw_resource_stop_timeout_ms(r) + 999) / 1000));

	const char *net = r->network == GW_NET_NONE ? "none" : r->network == GW_NET_HOST ? "host" : "bridge";
	json_object_set_new(host, "NetworkMode", json_string(net));
	if (r->ports.n)
		set_ports(body, host, r);
	if (r->volumes.n) {
		json_t *binds = json_array();
		for (size_t i = 0; i < r->volumes.n; i++)
			json_array_append_new(binds, json_string(r->volumes.v[i]));
		json_object_set_new(host, "Binds", binds);
	}
	if (r->memory)
		json_object_set_new(host, "Memory", json_integer(r->memory));
	if (r->cpus_milli)
		json_object_set_new(host, "NanoCpus", json_integer(r->cpus_milli * 1000000LL));
	json_object_set_new(host, "RestartPolicy", json_pack("{s:s}", "Name", "no"));
	json_object_set_new(body, "HostConfig", host);
	return body;
}

static int owned(const json_t *labels, const char *state_dir)
{
	const char *m = json_string_value(json_object_get(labels, GW_LABEL_MANAGED));
	const char *n = json_string_value(json_object_get(labels, GW_LABEL_NAME));
	const char *h = json_string_value(json_object_get(labels, GW_LABEL_HASH));
	const char *d = json_string_value(json_object_get(labels, GW_LABEL_STATE_DIR));
	return m && !strcmp(m, "true") && n && h && strlen(h) == 64 && d && !strcmp(d, state_dir);
}

int gw_container_parse_list(struct gw_observed **out, size_t *out_n, const json_t *list, const char *state_dir)
{
	struct gw_observed *v;
	size_t n = 0;

	if (!json_is_array(list))
		return -EPROTO;
	v = gw_xcalloc(json_array_size(list) + 1, sizeof(*v));
	for (size_t i = 0; i < json_array_size(list); i++) {
		const json_t *c = json_array_get(list, i);
		const json_t *labels = json_object_get(c, "Labels");
		const char *id = json_string_value(json_object_get(c, "Id"));
		if (!id || !owned(labels, state_dir))
			continue;
		const char *name = json_string_value(json_object_get(labels, GW_LABEL_NAME));
		if (gw_check_name(name)) {
			/* names become paths and log keys: never trusted for being ours */
			gw_log(GW_LOG_WARN, "", "container %.12s: label %s is not a valid resource name: ignored", id,
			       GW_LABEL_NAME);
			continue;
		}
		struct gw_observed *o = &v[n++];
		o->kind = GW_KIND_CONTAINER;
		o->name = gw_xstrdup(json_string_value(json_object_get(labels, GW_LABEL_NAME)));
		memcpy(o->spec_hash, json_string_value(json_object_get(labels, GW_LABEL_HASH)), 65);
		const char *spec = json_string_value(json_object_get(labels, GW_LABEL_SPEC));
		o->canonical = spec ? gw_xstrdup(spec) : NULL;
		o->restart = gw_restart_from_string(json_string_value(json_object_get(labels, GW_LABEL_RESTART)));
		o->handle = gw_container_handle(id);
		o->started_at = json_integer_value(json_object_get(c, "Created"));
		const char *deps = json_string_value(json_object_get(labels, GW_LABEL_DEPENDS_ON));
		if (deps && *deps) {
			char *copy = gw_xstrdup(deps), *save = NULL;
			o->depends_on.v = gw_xcalloc(strlen(deps) / 2 + 2, sizeof(char *));
			for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
				o->depends_on.v[o->depends_on.n++] = gw_xstrdup(t);
			free(copy);
		}
		const char *state = json_string_value(json_object_get(c, "State"));
		if (state && !strcmp(state, "running")) {
			o->state = GW_STATE_RUNNING;
		} else if (state && (!strcmp(state, "created") || !strcmp(state, "configured"))) {
			o->state = GW_STATE_PENDING;
			snprintf(o->detail, sizeof(o->detail), "created, never started");
		} else {
			/* exited, stopped, dead, paused...: the exit code comes from inspect */
			o->state = GW_STATE_FAILED;
			snprintf(o->detail, sizeof(o->detail), "%s", state ? state : "unknown");
		}
	}
	*out = v;
	*out_n = n;
	return 0;
}

void gw_container_apply_inspect(struct gw_observed *o, const json_t *inspect)
{
	const json_t *st = json_object_get(inspect, "State");
	const char *status = json_string_value(json_object_get(st, "Status"));
	json_int_t code = json_integer_value(json_object_get(st, "ExitCode"));
	if (json_is_true(json_object_get(st, "Running")) && !json_is_true(json_object_get(st, "Paused"))) {
		o->state = GW_STATE_RUNNING;
		o->detail[0] = '\0';
	} else if (status && (!strcmp(status, "created") || !strcmp(status, "configured"))) {
		o->state = GW_STATE_PENDING;
		snprintf(o->detail, sizeof(o->detail), "created, never started");
	} else if (json_is_true(json_object_get(st, "OOMKilled"))) {
		o->state = GW_STATE_FAILED;
		snprintf(o->detail, sizeof(o->detail), "killed: out of memory");
	} else if (code == 0 && status && strcmp(status, "paused") != 0) {
		o->state = GW_STATE_STOPPED;
		snprintf(o->detail, sizeof(o->detail), "exited with status 0");
	} else {
		o->state = GW_STATE_FAILED;
		if (status && !strcmp(status, "paused"))
			snprintf(o->detail, sizeof(o->detail), "paused");
		else
			snprintf(o->detail, sizeof(o->detail), "exited with status %lld", (long long)code);
	}
}

/* ---- the backend ---- */

/* One engine connection (and negotiated API version) per pass: made at the
 * first call, dropped at pass_end and after any failure, so the next call
 * negotiates afresh with an engine that restarted or changed. */
struct container_priv {
	pthread_mutex_t mu;
	bool connected;
	struct gw_engine engine;
};

static int container_init(void **priv, const struct gw_backend *b, struct gw_error *err)
{
	struct container_priv *p = gw_xcalloc(1, sizeof(*p));
	(void)b;
	(void)err;
	pthread_mutex_init(&p->mu, NULL);
	*priv = p;
	return 0;
}

static void container_done(void *priv)
{
	struct container_priv *p = priv;
	if (!p)
		return;
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static void engine_drop(struct gw_backend *b)
{
	struct container_priv *p = b->priv;
	pthread_mutex_lock(&p->mu);
	p->connected = false;
	pthread_mutex_unlock(&p->mu);
}

/* The pass's connection, with this call's cancel. */
static int connect_engine(struct gw_engine *e, struct gw_backend *b, const struct gw_backend_call *call,
			  struct gw_error *err)
{
	struct container_priv *p = b->priv;
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	if (!p->connected && (rc = gw_engine_connect(&p->engine, b->cfg.container_socket, 10000, err)) == 0)
		p->connected = true;
	if (rc == 0)
		*e = p->engine;
	pthread_mutex_unlock(&p->mu);
	if (rc == 0)
		e->cancel = call ? call->cancel : NULL;
	return rc;
}

/* rc of an op: a failure drops the connection (see container_priv). */
static int engine_result(struct gw_backend *b, int rc)
{
	if (rc < 0)
		engine_drop(b);
	return rc;
}

static int engine_fail(struct gw_error *err, const char *what, long status, const json_t *reply)
{
	int code = status == 404 ? -ENOENT : status == 409 ? -EEXIST : -EIO;
	return gw_error_set(err, code, "%s: %s (HTTP %ld)", what, gw_engine_message(reply), status);
}

static int container_supported(struct gw_backend *b, struct gw_error *err)
{
	struct gw_engine e;
	return connect_engine(&e, b, NULL, err);
}

static int discover_on(struct gw_observed **out, size_t *out_n, const struct gw_engine *e, const char *state_dir,
		       struct gw_error *err)
{
	json_t *list = NULL;
	long status = 0;
	int rc;

	rc = gw_engine_call(&list, &status, e, "GET",
			    "/containers/json?all=true&filters=%7B%22label%22%3A%5B%22gitward.managed%3Dtrue%22%5D%7D",
			    NULL, CALL_TIMEOUT_MS, err);
	if (rc < 0)
		return rc;
	if (status != 200) {
		rc = engine_fail(err, "list containers", status, list);
		json_decref(list);
		return rc;
	}
	struct gw_observed *v;
	size_t n;
	rc = gw_container_parse_list(&v, &n, list, state_dir);
	json_decref(list);
	if (rc < 0)
		return gw_error_set(err, rc, "list containers: unexpected reply");
	/* exit codes are only in inspect: ask for the few that are not running */
	for (size_t i = 0; i < n; i++) {
		if (v[i].state == GW_STATE_RUNNING)
			continue;
		char path[256], id[80];
		json_t *ins = NULL;
		snprintf(path, sizeof(path), "/containers/%s/json", gw_container_id(id, sizeof(id), v[i].handle));
		if (gw_engine_call(&ins, &status, e, "GET", path, NULL, CALL_TIMEOUT_MS, err) == 0 && status == 200)
			gw_container_apply_inspect(&v[i], ins);
		json_decref(ins);
	}
	*out = v;
	*out_n = n;
	return 0;
}

static int container_discover(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
			      const struct gw_backend_call *call, struct gw_error *err)
{
	struct gw_engine e;
	int rc = connect_engine(&e, b, NULL, err);
	(void)call; /* listing is quick: never abandoned */
	if (rc == 0)
		rc = discover_on(out, out_n, &e, b->cfg.state_dir, err);
	return engine_result(b, rc);
}

static int remove_container(const struct gw_engine *e, const char *id, int64_t stop_ms, struct gw_error *err)
{
	char path[512];
	json_t *reply = NULL;
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/containers/%s/stop?t=%lld", id, (long long)((stop_ms + 999) / 1000));
	rc = gw_engine_call(&reply, &status, e, "POST", path, NULL, stop_ms + CALL_TIMEOUT_MS, err);
	if (rc < 0)
		return rc;
	/* 304: already stopped; 404: already gone */
	if (status != 204 && status != 304 && status != 404) {
		rc = engine_fail(err, "stop", status, reply);
		json_decref(reply);
		return rc;
	}
	json_decref(reply);
	reply = NULL;
	snprintf(path, sizeof(path), "/containers/%s?force=true&v=true", id);
	rc = gw_engine_call(&reply, &status, e, "DELETE", path, NULL, CALL_TIMEOUT_MS, err);
	if (rc < 0)
		return rc;
	if (status != 200 && status != 204 && status != 404) {
		rc = engine_fail(err, "remove", status, reply);
		json_decref(reply);
		return rc;
	}
	json_decref(reply);
	return 0;
}

static int container_destroy(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			     const struct gw_backend_call *call, struct gw_error *err)
{
	struct gw_engine e;
	char id[80];
	int rc;

	if (!gw_container_id(id, sizeof(id), o->handle)[0])
		return 0; /* never created */
	/* the engine's stop waits up to stopTimeout: call->cancel ends it */
	if ((rc = connect_engine(&e, b, call, err)) == 0)
		rc = remove_container(&e, id, r ? gw_resource_stop_timeout_ms(r) : 10000, err);
	return engine_result(b, rc);
}

static int ensure_image(const struct gw_engine *e, const struct gw_resource *r, struct gw_error *err)
{
	char path[2048];
	json_t *reply = NULL;
	long status = 0;
	int rc;

	if (r->pull != GW_PULL_ALWAYS) {
		snprintf(path, sizeof(path), "/images/%s/json", r->image);
		rc = gw_engine_call(&reply, &status, e, "GET", path, NULL, CALL_TIMEOUT_MS, err);
		json_decref(reply);
		reply = NULL;
		if (rc < 0)
			return rc;
		if (status == 200)
			return 0;
		if (r->pull == GW_PULL_NEVER)
			return gw_error_set(err, -ENOENT, "image %s is not on this node and pull is never", r->image);
	}
	char *esc = gw_xstrdup(r->image);
	/* fromImage carries the whole reference, tag included */
	struct gw_strbuf q;
	gw_strbuf_init(&q);
	gw_strbuf_puts(&q, "/images/create?fromImage=");
	for (const char *p = esc; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			gw_strbuf_add(&q, p, 1);
		else
			gw_strbuf_printf(&q, "%%%02X", (unsigned char)*p);
	}
	free(esc);
	rc = gw_engine_call(&reply, &status, e, "POST", q.s, NULL, PULL_TIMEOUT_MS, err);
	gw_strbuf_free(&q);
	if (rc < 0)
		return rc;
	const char *stream = json_string_value(json_object_get(reply, "stream"));
	const char *errtxt = json_string_value(json_object_get(reply, "error"));
	if (status != 200 || errtxt || (stream && strstr(stream, "\"error\""))) {
		char msg[300] = "";
		if (errtxt)
			snprintf(msg, sizeof(msg), "%s", errtxt);
		else if (stream && strstr(stream, "\"error\""))
			snprintf(msg, sizeof(msg), "%.299s", strstr(stream, "\"error\""));
		else
			snprintf(msg, sizeof(msg), "%s", gw_engine_message(reply));
		json_decref(reply);
		return gw_error_set(err, -EIO, "pull %s: %s", r->image, msg);
	}
	json_decref(reply);
	return 0;
}

/* Step 1: the values of envFiles and secretEnvFiles, all or nothing. */
static int load_file_env(struct gw_strmap *file_env, const struct gw_backend_config *ctx, const struct gw_resource *r,
			 struct gw_error *err)
{
	struct gw_error e;
	int rc;
	for (size_t i = 0; i < r->env_files.n; i++)
		if (gw_envfile_load(file_env, r->env_files.v[i], &e) < 0)
			return gw_error_set(err, -ENOENT, "%s", e.msg);
	/* decrypted here, in the process that makes the create call; the engine
	 * keeps the values in the container's config (inspect shows them) */
	for (size_t i = 0; r->secrets && i < r->secret_env_files.n; i++)
		if ((rc = gw_secret_env_load(file_env, ctx->age_identity, r->secret_env_files.v[i],
					     r->secrets[i].cipher, r->secrets[i].len, err)) < 0)
			return rc;
	return 0;
}

/* Step 2: the name must be free, or hold a leftover of ours (a pass killed
 * between create and record), which goes: never take over someone else's. */
static int free_the_name(const struct gw_engine *e, const char *name, const char *state_dir, struct gw_error *err)
{
	char path[512], id[80];
	json_t *reply = NULL;
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/containers/%s/json", name);
	rc = gw_engine_call(&reply, &status, e, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	if (rc < 0 || status != 200) {
		json_decref(reply);
		return rc;
	}
	const json_t *labels = json_object_get(json_object_get(reply, "Config"), "Labels");
	const char *idv = json_string_value(json_object_get(reply, "Id"));
	snprintf(id, sizeof(id), "%s", idv ? idv : "");
	rc = owned(labels, state_dir) && idv;
	json_decref(reply);
	if (!rc)
		return gw_error_set(err, -EEXIST,
				    "a container named %s exists and is not managed by this gitward; refusing to take "
				    "it over",
				    name);
	return remove_container(e, id, 2000, err);
}

/* Step 3: create and start it; a failure leaves nothing behind. */
static int create_and_start(char *id, size_t size, const struct gw_engine *e, const char *name, json_t *body,
			    struct gw_error *err)
{
	char path[512];
	json_t *reply = NULL;
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/containers/create?name=%s", name);
	rc = gw_engine_call(&reply, &status, e, "POST", path, body, CALL_TIMEOUT_MS, err);
	if (rc == 0 && status != 201)
		rc = engine_fail(err, "create", status, reply);
	const char *idv = json_string_value(json_object_get(reply, "Id"));
	snprintf(id, size, "%s", idv ? idv : "");
	json_decref(reply);
	reply = NULL;
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/containers/%s/start", id);
	rc = gw_engine_call(&reply, &status, e, "POST", path, NULL, CALL_TIMEOUT_MS, err);
	if (rc == 0 && status != 204 && status != 304) /* 304: already running, fine */
		rc = engine_fail(err, "start", status, reply);
	json_decref(reply);
	if (rc < 0) {
		struct gw_error ignored;
		remove_container(e, id, 1000, &ignored);
	}
	return rc;
}

static int create_on(struct gw_observed *o, const struct gw_engine *e, const struct gw_backend_config *ctx,
		     const struct gw_resource *r, struct gw_error *err)
{
	struct gw_strmap file_env = { 0 };
	char name[128], id[80];
	int rc;

	gw_container_name(name, sizeof(name), r->name);
	if ((rc = load_file_env(&file_env, ctx, r, err)) < 0 || (rc = ensure_image(e, r, err)) < 0 ||
	    (rc = free_the_name(e, name, ctx->state_dir, err)) < 0) {
		gw_strmap_free(&file_env);
		return rc;
	}
	json_t *body = gw_container_create_body(r, &file_env, ctx->state_dir);
	gw_strmap_free(&file_env);
	rc = create_and_start(id, sizeof(id), e, name, body, err);
	json_decref(body); /* held the envFiles and secretEnvFiles values: gone now */
	if (rc < 0)
		return rc;
	gw_observed_start(o, r);
	o->handle = gw_container_handle(id);
	return 0;
}

static int container_create(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
			    const struct gw_backend_call *call, struct gw_error *err)
{
	struct gw_engine e;
	int rc = connect_engine(&e, b, NULL, err);
	(void)call; /* a create (and its pull) runs to its end: nothing half-made */
	if (rc == 0)
		rc = create_on(o, &e, &b->cfg, r, err);
	return engine_result(b, rc);
}

static int exec_probe_on(const struct gw_engine *ep, const struct gw_observed *o, const struct gw_resource *r,
			 int64_t timeout_ms, struct gw_error *err)
{
	struct gw_engine e = *ep;
	json_t *reply = NULL, *body;
	long status = 0;
	char path[512], exec_id[128], id[80];
	int rc;

	json_t *cmd = json_array();
	for (size_t i = 0; i < r->health_exec_command.n; i++)
		json_array_append_new(cmd, json_string(r->health_exec_command.v[i]));
	body = json_pack("{s:o, s:b, s:b}", "Cmd", cmd, "AttachStdout", 1, "AttachStderr", 1);
	snprintf(path, sizeof(path), "/containers/%s/exec", gw_container_id(id, sizeof(id), o->handle));
	rc = gw_engine_call(&reply, &status, &e, "POST", path, body, timeout_ms, err);
	json_decref(body);
	if (rc < 0)
		return rc;
	if (status != 201) {
		rc = engine_fail(err, "exec", status, reply);
		json_decref(reply);
		return rc;
	}
	const char *eid = json_string_value(json_object_get(reply, "Id"));
	snprintf(exec_id, sizeof(exec_id), "%s", eid ? eid : "");
	json_decref(reply);
	reply = NULL;
	body = json_pack("{s:b, s:b}", "Detach", 0, "Tty", 0);
	snprintf(path, sizeof(path), "/exec/%s/start", exec_id);
	rc = gw_engine_call(&reply, &status, &e, "POST", path, body, timeout_ms, err);
	json_decref(body);
	json_decref(reply);
	reply = NULL;
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "/exec/%s/json", exec_id);
	rc = gw_engine_call(&reply, &status, &e, "GET", path, NULL, CALL_TIMEOUT_MS, err);
	if (rc < 0)
		return rc;
	json_int_t code = json_integer_value(json_object_get(reply, "ExitCode"));
	int running = json_is_true(json_object_get(reply, "Running"));
	json_decref(reply);
	if (running)
		return gw_error_set(err, -ETIMEDOUT, "%s: timed out", r->health_exec_command.v[0]);
	if (code != 0)
		return gw_error_set(err, -EIO, "%s exited with status %lld", r->health_exec_command.v[0],
				    (long long)code);
	return 0;
}

static int container_exec_probe(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
				int64_t timeout_ms, const struct gw_backend_call *call, struct gw_error *err)
{
	struct gw_engine e;
	int rc = connect_engine(&e, b, NULL, err);
	(void)call; /* bounded by timeout_ms */
	if (rc == 0)
		rc = exec_probe_on(&e, o, r, timeout_ms, err);
	return rc; /* a failing probe says nothing about the connection */
}

static void container_pass_end(struct gw_backend *b)
{
	engine_drop(b);
}

static void container_describe(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle)
{
	char id[80];
	(void)b;
	gw_container_id(id, sizeof(id), handle);
	/* no id (never created): nothing to name, and never "id " */
	json_object_set_new(fields, "id", id[0] ? gw_json_string(id) : json_null());
	if (size)
		snprintf(text, size, "%s%.12s", id[0] ? "id " : "", id);
}

/* ---- the engine's events: the deaths of our containers, between passes ---- */

struct follower {
	pthread_t thread;
	struct gw_cancel stop;
	char socket[4096];
	char state_dir[4096];
	void (*notify)(void *ud);
	void *ud;
};

/* The death of one of this state dir's containers? Filtered here, not by
 * the engine: Podman 4.3's events endpoint answers nothing at all to a
 * label filter. */
static int on_event(const char *line, size_t len, void *ud)
{
	struct follower *ev = ud;
	json_t *e = json_loadb(line, len, 0, NULL);
	json_t *attrs = json_object_get(json_object_get(e, "Actor"), "Attributes");
	const char *type = json_string_value(json_object_get(e, "Type"));
	const char *action = json_string_value(json_object_get(e, "Action"));
	const char *managed = json_string_value(json_object_get(attrs, GW_LABEL_MANAGED));
	const char *dir = json_string_value(json_object_get(attrs, GW_LABEL_STATE_DIR));
	if (type && !strcmp(type, "container") && action && (!strcmp(action, "die") || !strcmp(action, "oom")) &&
	    managed && !strcmp(managed, "true") && dir && !strcmp(dir, ev->state_dir))
		ev->notify(ev->ud);
	json_decref(e);
	return 0;
}

static void *follow_main(void *arg)
{
	struct follower *ev = arg;
	int failing = 0;
	while (!gw_cancel_requested(&ev->stop)) {
		struct gw_engine e;
		struct gw_error err;
		int rc = gw_engine_connect(&e, ev->socket, 5000, &err);
		if (rc == 0) {
			e.cancel = &ev->stop;
			if (failing)
				gw_log(GW_LOG_INFO, "", "container events: following %s again", ev->socket);
			failing = 0;
			/* a container that died while the stream was down is found by
			 * the heal pass this triggers */
			ev->notify(ev->ud);
			rc = gw_engine_stream(&e, "/events", on_event, ev, &err);
		}
		if (rc < 0 && !gw_cancel_requested(&ev->stop)) {
			if (!failing++)
				gw_log(GW_LOG_DEBUG, "", "container events: %s; retrying", err.msg);
			gw_cancel_sleep(&ev->stop, failing < 5 ? 1000 : 5000);
		}
	}
	return NULL;
}

static int container_follow(void **out, struct gw_backend *b, void (*notify)(void *ud), void *ud, struct gw_error *err)
{
	struct follower *ev = gw_xcalloc(1, sizeof(*ev));
	snprintf(ev->state_dir, sizeof(ev->state_dir), "%s", b->cfg.state_dir ? b->cfg.state_dir : "");
	snprintf(ev->socket, sizeof(ev->socket), "%s", gw_engine_default_socket(b->cfg.container_socket));
	ev->notify = notify;
	ev->ud = ud;
	if (pthread_create(&ev->thread, NULL, follow_main, ev) != 0) {
		free(ev);
		return gw_error_set(err, -EAGAIN, "cannot start a thread to follow the container engine's events");
	}
	*out = ev;
	return 0;
}

static void container_unfollow(void *follower)
{
	struct follower *ev = follower;
	if (!ev)
		return;
	gw_cancel_request(&ev->stop);
	pthread_join(ev->thread, NULL);
	free(ev);
}

const struct gw_backend_ops gw_backend_container = {
	.name = "container",
	.kind = GW_KIND_CONTAINER,
	.init = container_init,
	.done = container_done,
	.pass_end = container_pass_end,
	.supported = container_supported,
	.discover = container_discover,
	.create = container_create,
	.destroy = container_destroy,
	.exec_probe = container_exec_probe,
	.describe = container_describe,
	.follow = container_follow,
	.unfollow = container_unfollow,
};
