/* The agent's endpoints as one function over a whole request: routing,
 * webhook authentication (GitHub, GitLab, Gitea/Forgejo), /healthz with its
 * stuck-pass bound, /metrics and /status. No sockets here (http.c serves it),
 * so the fuzz target drives exactly what the network reaches. Every string
 * that came from outside or from disk leaves escaped (JSON by jansson). */
#define _GNU_SOURCE
#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "gitward/paths.h"
#include "gitward/state.h"

static const char *const hook_sources[GW_HOOK_SOURCE_MAX] = { "github", "gitlab", "gitea", "none" };
static const char *const hook_results[GW_HOOK_RESULT_MAX] = { "accepted", "unauthorized", "too_large", "disabled" };

/* ---- the loop's counters ---- */

int64_t gw_stuck_after_default(int64_t interval_ms)
{
	int64_t ten = 10 * interval_ms, floor = 15 * 60 * 1000;
	return ten > floor ? ten : floor;
}

void gw_metrics_init(struct gw_metrics *m, const struct gw_config *cfg)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
	m->interval_ms = cfg->interval_ms;
	m->stuck_after_ms = cfg->stuck_after_ms ? cfg->stuck_after_ms : gw_stuck_after_default(cfg->interval_ms);
	m->heartbeat = gw_monotonic_ms();
	gw_path_state_file(m->state_path, sizeof(m->state_path), cfg->state_dir);
}

void gw_metrics_free(struct gw_metrics *m)
{
	pthread_mutex_destroy(&m->mu);
}

void gw_metrics_pass_begin(struct gw_metrics *m)
{
	pthread_mutex_lock(&m->mu);
	m->pass_started = gw_monotonic_ms();
	m->heartbeat = m->pass_started;
	pthread_mutex_unlock(&m->mu);
}

void gw_metrics_record(struct gw_metrics *m, const struct gw_run_summary *sum, int64_t took_ms)
{
	pthread_mutex_lock(&m->mu);
	m->sync[sum->result]++;
	m->last_sync = gw_now_ms() / 1000;
	m->last_duration = (double)took_ms / 1000.0;
	m->heartbeat = gw_monotonic_ms();
	m->pass_started = 0;
	pthread_mutex_unlock(&m->mu);
}

void gw_metrics_heartbeat(struct gw_metrics *m)
{
	pthread_mutex_lock(&m->mu);
	m->heartbeat = gw_monotonic_ms();
	pthread_mutex_unlock(&m->mu);
}

static void count_hook(struct gw_metrics *m, enum gw_hook_source src, enum gw_hook_result res)
{
	pthread_mutex_lock(&m->mu);
	m->hooks[src][res]++;
	pthread_mutex_unlock(&m->mu);
}

/* ---- responses ---- */

static void answer(struct gw_http_response *out, unsigned status, const char *type, char *body)
{
	out->status = status;
	out->content_type = type;
	out->body = body;
}

static void text(struct gw_http_response *out, unsigned status, const char *body)
{
	answer(out, status, "text/plain", gw_xstrdup(body));
}

/* A JSON string for text that may not be UTF-8 (a path, an error naming one):
 * bytes jansson refuses become '?'. */
static json_t *json_text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = gw_xstrdup(s);
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static char *json_body(json_t *root)
{
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	size_t n = strlen(s);
	s = gw_xrealloc(s, n + 2);
	memcpy(s + n, "\n", 2);
	return s;
}

/* ---- GET /healthz ---- */

static void healthz(struct gw_http_response *out, struct gw_metrics *m)
{
	char msg[200] = "";

	pthread_mutex_lock(&m->mu);
	int64_t now = gw_monotonic_ms();
	int64_t running = m->pass_started ? now - m->pass_started : 0;
	int64_t idle = now - m->heartbeat;
	/* between passes the loop beats at least once a minute */
	int64_t idle_limit = 3 * m->interval_ms + 600000;
	if (running > m->stuck_after_ms)
		snprintf(msg, sizeof(msg), "pass stuck: running for %llds, over --stuck-after %llds\n",
			 (long long)(running / 1000), (long long)(m->stuck_after_ms / 1000));
	else if (!m->pass_started && idle > idle_limit)
		snprintf(msg, sizeof(msg), "loop stalled: no heartbeat for %llds\n", (long long)(idle / 1000));
	pthread_mutex_unlock(&m->mu);
	if (msg[0])
		text(out, 503, msg);
	else
		text(out, 200, "ok\n");
}

/* ---- GET /metrics ---- */

static char *metrics_text(struct gw_metrics *m)
{
	struct gw_strbuf sb;
	struct gw_state_file st;
	struct gw_error err;

	gw_strbuf_init(&sb);
	pthread_mutex_lock(&m->mu);
	gw_strbuf_puts(&sb, "# HELP gitward_sync_total Passes by result.\n# TYPE gitward_sync_total counter\n");
	for (int i = 0; i < GW_RUN_MAX; i++)
		gw_strbuf_printf(&sb, "gitward_sync_total{result=\"%s\"} %llu\n",
				 gw_run_result_to_string((enum gw_run_result)i), m->sync[i]);
	gw_strbuf_printf(&sb,
			 "# HELP gitward_last_sync_timestamp_seconds End of the last pass.\n"
			 "# TYPE gitward_last_sync_timestamp_seconds gauge\n"
			 "gitward_last_sync_timestamp_seconds %lld\n"
			 "# HELP gitward_reconcile_duration_seconds Duration of the last pass.\n"
			 "# TYPE gitward_reconcile_duration_seconds gauge\n"
			 "gitward_reconcile_duration_seconds %.3f\n"
			 "# HELP gitward_pass_running_seconds How long the running pass has run (0 between passes).\n"
			 "# TYPE gitward_pass_running_seconds gauge\n"
			 "gitward_pass_running_seconds %.3f\n",
			 (long long)m->last_sync, m->last_duration,
			 m->pass_started ? (double)(gw_monotonic_ms() - m->pass_started) / 1000.0 : 0.0);
	gw_strbuf_puts(&sb,
		       "# HELP gitward_webhook_requests_total Requests to /hooks/git by signing server and result.\n"
		       "# TYPE gitward_webhook_requests_total counter\n");
	for (int s = 0; s < GW_HOOK_SOURCE_MAX; s++)
		for (int r = 0; r < GW_HOOK_RESULT_MAX; r++)
			gw_strbuf_printf(&sb, "gitward_webhook_requests_total{source=\"%s\",result=\"%s\"} %llu\n",
					 hook_sources[s], hook_results[r], m->hooks[s][r]);
	pthread_mutex_unlock(&m->mu);
	gw_strbuf_puts(&sb,
		       "# HELP gitward_resources Managed resources by kind and state.\n"
		       "# TYPE gitward_resources gauge\n");
	gw_state_file_init(&st);
	if (gw_state_load(&st, m->state_path, &err) == 0) {
		static const char *const states[] = { "running", "stopped", "failed", "pending" };
		for (int k = 0; k < GW_KIND_MAX; k++)
			for (int s = 0; s < 4; s++) {
				size_t n = 0;
				for (size_t i = 0; i < st.n; i++)
					n += st.res[i].kind == (enum gw_kind)k && st.res[i].state == (enum gw_state)s;
				gw_strbuf_printf(&sb, "gitward_resources{kind=\"%s\",state=\"%s\"} %zu\n",
						 gw_kind_to_string((enum gw_kind)k), states[s], n);
			}
		gw_state_file_free(&st);
	}
	return gw_strbuf_detach(&sb);
}

/* ---- GET /status ---- */

static void status(struct gw_http_response *out, struct gw_metrics *m)
{
	struct gw_state_file st;
	struct gw_error err;
	char buf[600];

	gw_state_file_init(&st);
	if (gw_state_load(&st, m->state_path, &err) < 0) {
		json_t *root = json_object();
		json_object_set_new(root, "error", json_text(gw_error_format(buf, sizeof(buf), &err)));
		json_object_set_new(root, "state_file", json_text(m->state_path));
		answer(out, 500, "application/json", json_body(root));
		return;
	}
	char *s = gw_state_render_status(&st);
	gw_state_file_free(&st);
	answer(out, 200, "application/json", s);
}

/* ---- POST /hooks/git ---- */

static const char *header(const struct gw_http_request *req, const char *name)
{
	return req->header ? req->header(req->header_ud, name) : NULL;
}

/* given: the lowercase or uppercase hex HMAC-SHA256 of the body */
static bool hmac_hex_ok(const struct gw_endpoints *ep, const char *given, const struct gw_http_request *req)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char want[2 * EVP_MAX_MD_SIZE + 1], got[2 * EVP_MAX_MD_SIZE + 1];
	static const unsigned char empty[1];

	if (!HMAC(EVP_sha256(), ep->secret, (int)ep->secret_len,
		  req->body_len ? (const unsigned char *)req->body : empty, req->body_len, mac, &maclen))
		return false;
	for (unsigned i = 0; i < maclen; i++)
		snprintf(want + 2 * i, 3, "%02x", mac[i]);
	size_t n = 2 * (size_t)maclen;
	if (strlen(given) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		got[i] = (char)tolower((unsigned char)given[i]);
	return CRYPTO_memcmp(want, got, n) == 0;
}

/* GitLab sends the secret itself: compare digests, so neither the content
 * nor the length of the secret shows in the time taken. */
static bool token_ok(const struct gw_endpoints *ep, const char *given)
{
	unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
	unsigned int alen = 0, blen = 0;

	if (!EVP_Digest(ep->secret, ep->secret_len, a, &alen, EVP_sha256(), NULL) ||
	    !EVP_Digest(given, strlen(given), b, &blen, EVP_sha256(), NULL) || alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* An event name from a header, fit for a log line: [A-Za-z0-9 ._-], short. */
static void event_name(char *buf, size_t size, const char *v)
{
	size_t n = 0;
	for (; v && *v && n + 1 < size && n < 40; v++)
		buf[n++] = isalnum((unsigned char)*v) || strchr(" ._-", *v) ? *v : '?';
	buf[n] = '\0';
}

static void hook(struct gw_http_response *out, struct gw_endpoints *ep, const struct gw_http_request *req)
{
	const char *github = header(req, "X-Hub-Signature-256");
	const char *gitlab = header(req, "X-Gitlab-Token");
	const char *gitea = header(req, "X-Gitea-Signature");
	const char *forgejo = header(req, "X-Forgejo-Signature");
	enum gw_hook_source src = gitlab ? GW_HOOK_GITLAB
		: gitea || forgejo	 ? GW_HOOK_GITEA
		: github		 ? GW_HOOK_GITHUB
					 : GW_HOOK_NONE;
	char event[48];

	if (!ep->secret) {
		count_hook(ep->m, src, GW_HOOK_DISABLED);
		text(out, 404, "webhook not enabled (--webhook-secret-file)\n");
		return;
	}
	if (req->body_too_large) {
		count_hook(ep->m, src, GW_HOOK_TOO_LARGE);
		gw_log(GW_LOG_WARN, "", "webhook refused: body over %u bytes", GW_HOOK_BODY_MAX);
		text(out, 413, "body too large\n");
		return;
	}
	/* every signature sent must hold (Gitea and Forgejo also send GitHub's) */
	bool ok = src != GW_HOOK_NONE;
	if (ok && github)
		ok = !strncmp(github, "sha256=", 7) && hmac_hex_ok(ep, github + 7, req);
	if (ok && gitea)
		ok = hmac_hex_ok(ep, gitea, req);
	if (ok && forgejo)
		ok = hmac_hex_ok(ep, forgejo, req);
	if (ok && gitlab)
		ok = token_ok(ep, gitlab);
	if (!ok) {
		count_hook(ep->m, src, GW_HOOK_UNAUTHORIZED);
		gw_log(GW_LOG_WARN, "", "webhook refused: %s",
		       src == GW_HOOK_NONE ? "no X-Hub-Signature-256, X-Gitlab-Token or X-Gitea-Signature header"
					   : "the signature or token does not match --webhook-secret-file");
		text(out, 401, src == GW_HOOK_NONE ? "missing signature\n" : "bad signature\n");
		return;
	}
	const char *ev = src == GW_HOOK_GITLAB ? header(req, "X-Gitlab-Event")
		: src == GW_HOOK_GITEA
		? (header(req, "X-Gitea-Event") ? header(req, "X-Gitea-Event") : header(req, "X-Forgejo-Event"))
		: header(req, "X-GitHub-Event");
	event_name(event, sizeof(event), ev);
	count_hook(ep->m, src, GW_HOOK_ACCEPTED);
	gw_log(GW_LOG_INFO, "", "webhook from %s (%s): pass requested", hook_sources[src], event[0] ? event : "-");
	out->trigger = true;
	text(out, 202, "pass triggered\n");
}

/* ---- routing ---- */

void gw_endpoints_handle(struct gw_http_response *out, struct gw_endpoints *ep, const struct gw_http_request *req)
{
	memset(out, 0, sizeof(*out));
	const char *method = req->method ? req->method : "";
	const char *url = req->url ? req->url : "";

	if (!strcmp(url, "/hooks/git")) {
		if (strcmp(method, "POST") != 0)
			text(out, 405, "method not allowed\n");
		else
			hook(out, ep, req);
		return;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		text(out, 405, "method not allowed\n");
		return;
	}
	if (!strcmp(url, "/healthz"))
		healthz(out, ep->m);
	else if (!strcmp(url, "/metrics"))
		answer(out, 200, "text/plain; version=0.0.4", metrics_text(ep->m));
	else if (!strcmp(url, "/status"))
		status(out, ep->m);
	else
		text(out, 404, "not found\n");
}
