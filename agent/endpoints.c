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

#include "cli.h"
#include "endpoints.h"
#include "gitward/notify.h"
#include "gitward/paths.h"
#include "gitward/pin.h"
#include "gitward/source.h"
#include "gitward/state.h"

static const char *const hook_sources[GW_HOOK_SOURCE_MAX] = { "github", "gitlab", "gitea", "none" };
static const char *const hook_results[GW_HOOK_RESULT_MAX] = { "accepted", "unauthorized", "too_large", "disabled" };
static const double pass_bounds[GW_PASS_BUCKETS] = {
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300
};

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
	m->fleet_lock_on = cfg->fleet_lock != NULL;
	m->stuck_after_ms = cfg->stuck_after_ms ? cfg->stuck_after_ms : gw_stuck_after_default(cfg->interval_ms);
	m->heartbeat = gw_monotonic_ms();
	m->started_ms = gw_now_ms();
	gw_path_state_file(m->state_path, sizeof(m->state_path), cfg->state_dir);
	snprintf(m->version, sizeof(m->version), "%s", GW_VERSION);
	gw_source_libgit2_version(m->libgit2, sizeof(m->libgit2));
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
	int64_t now = gw_now_ms();
	double took = (double)took_ms / 1000.0;
	size_t b = 0;

	while (b < GW_PASS_BUCKETS && took > pass_bounds[b])
		b++;
	pthread_mutex_lock(&m->mu);
	m->sync[sum->result]++;
	m->last_sync = now / 1000;
	m->last_duration = took;
	if (b < GW_PASS_BUCKETS)
		m->pass_buckets[b]++;
	m->passes++;
	m->pass_seconds += took;
	m->last_attempt_ms = now;
	/* a pass that healed the node without fetching (Git down, or a heal
	 * pass after a workload died) is an attempt, not a success */
	if (sum->result == GW_RUN_CONVERGED && sum->fetched)
		m->last_success_ms = now;
	if (sum->result == GW_RUN_GIT_ERROR)
		m->fetch_errors++;
	if (sum->fetched)
		m->last_fetch_ok_ms = now;
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

/* Why a webhook was refused; each reason's warning is written at most once
 * per HOOK_LOG_PERIOD_MS (a flood of forged requests must not flood the
 * log), the next one telling how many were left out. Every one is counted. */
enum hook_refusal { REFUSED_TOO_LARGE, REFUSED_UNSIGNED, REFUSED_BAD_SIGNATURE };
#define HOOK_LOG_PERIOD_MS 10000

static void refuse_hook(struct gw_metrics *m, enum gw_hook_source src, enum gw_hook_result res, enum hook_refusal why,
			const char *msg)
{
	unsigned long long dropped = 0;
	pthread_mutex_lock(&m->mu);
	m->hooks[src][res]++;
	bool say = gw_log_limit_take(&m->hook_log[why], gw_monotonic_ms(), HOOK_LOG_PERIOD_MS, &dropped);
	pthread_mutex_unlock(&m->mu);
	if (say && dropped)
		gw_log(GW_LOG_WARN, "", "webhook refused: %s (%llu more since the last such line)", msg, dropped);
	else if (say)
		gw_log(GW_LOG_WARN, "", "webhook refused: %s", msg);
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

/* Prometheus text format 0.0.4: every family with HELP and TYPE, base units
 * (seconds), counters ending in _total, label values escaped. */

static void family(struct gw_strbuf *sb, const char *name, const char *type, const char *help)
{
	gw_strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and newline escaped; bytes that are not
 * printable ASCII become '?' so the text stays valid UTF-8. */
static void label_value(struct gw_strbuf *sb, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '\\' || *p == '"')
			gw_strbuf_printf(sb, "\\%c", *p);
		else if (*p == '\n')
			gw_strbuf_puts(sb, "\\n");
		else
			gw_strbuf_printf(sb, "%c", *p >= 0x20 && *p < 0x7f ? *p : '?');
	}
}

/* name{k1="v1",k2="v2"} with escaped values; k2 may be NULL */
static void series(struct gw_strbuf *sb, const char *name, const char *k1, const char *v1, const char *k2,
		   const char *v2)
{
	gw_strbuf_printf(sb, "%s{%s=\"", name, k1);
	label_value(sb, v1);
	if (k2) {
		gw_strbuf_printf(sb, "\",%s=\"", k2);
		label_value(sb, v2);
	}
	gw_strbuf_puts(sb, "\"} ");
}

static double seconds(int64_t ms)
{
	return (double)ms / 1000.0;
}

/* What the loop counted: passes, their timing, Git, webhooks. */
/* Events (--notify, --notify-exec, --commit-status): delivered, given up, dropped */
static void notify_metrics(struct gw_strbuf *sb, struct gw_notifier *n)
{
	struct gw_notify_counts c;
	gw_notifier_counts(&c, n);
	family(sb, "gitward_notify_dropped_total", "counter", "Events dropped: the events queue was full.");
	gw_strbuf_printf(sb, "gitward_notify_dropped_total %llu\n", c.dropped);
	family(sb, "gitward_notify_sent_total", "counter", "Events delivered, by sink.");
	for (size_t i = 0; i < c.nsinks; i++) {
		series(sb, "gitward_notify_sent_total", "sink", c.sink[i].label, NULL, NULL);
		gw_strbuf_printf(sb, "%llu\n", c.sink[i].sent);
	}
	family(sb, "gitward_notify_failed_total", "counter", "Events given up after every try, by sink.");
	for (size_t i = 0; i < c.nsinks; i++) {
		series(sb, "gitward_notify_failed_total", "sink", c.sink[i].label, NULL, NULL);
		gw_strbuf_printf(sb, "%llu\n", c.sink[i].failed);
	}
}

static void loop_metrics(struct gw_strbuf *sb, struct gw_metrics *m)
{
	struct gw_remote_status *rs = NULL;
	size_t nrs = 0;
	char dir[4096];
	struct gw_error err;
	snprintf(dir, sizeof(dir), "%s", m->state_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (slash && gw_remotes_load(&rs, &nrs, dir, &err) < 0)
		nrs = 0; /* several --repo: each remote's failed fetches */
	pthread_mutex_lock(&m->mu);
	family(sb, "gitward_build_info", "gauge", "The gitward version and the libgit2 it runs with (always 1).");
	series(sb, "gitward_build_info", "version", m->version, "libgit2", m->libgit2);
	gw_strbuf_puts(sb, "1\n");
	family(sb, "process_start_time_seconds", "gauge", "When the agent started, in unix seconds.");
	gw_strbuf_printf(sb, "process_start_time_seconds %.3f\n", seconds(m->started_ms));
	family(sb, "gitward_sync_total", "counter", "Passes by result.");
	for (int i = 0; i < GW_RUN_MAX; i++) {
		series(sb, "gitward_sync_total", "result", gw_run_result_to_string((enum gw_run_result)i), NULL, NULL);
		gw_strbuf_printf(sb, "%llu\n", m->sync[i]);
	}
	family(sb, "gitward_last_sync_timestamp_seconds", "gauge",
	       "End of the last pass, whatever its result (0: none yet).");
	gw_strbuf_printf(sb, "gitward_last_sync_timestamp_seconds %lld\n", (long long)m->last_sync);
	family(sb, "gitward_last_attempt_timestamp_seconds", "gauge",
	       "End of the last pass, whatever its result (0: none yet).");
	gw_strbuf_printf(sb, "gitward_last_attempt_timestamp_seconds %.3f\n", seconds(m->last_attempt_ms));
	family(sb, "gitward_last_success_timestamp_seconds", "gauge",
	       "End of the last pass that fetched and converged (0: none since the agent started).");
	gw_strbuf_printf(sb, "gitward_last_success_timestamp_seconds %.3f\n", seconds(m->last_success_ms));
	family(sb, "gitward_reconcile_duration_seconds", "gauge", "Duration of the last pass.");
	gw_strbuf_printf(sb, "gitward_reconcile_duration_seconds %.3f\n", m->last_duration);
	family(sb, "gitward_pass_duration_seconds", "histogram", "Duration of passes.");
	unsigned long long cum = 0;
	for (int b = 0; b < GW_PASS_BUCKETS; b++) {
		cum += m->pass_buckets[b];
		gw_strbuf_printf(sb, "gitward_pass_duration_seconds_bucket{le=\"%g\"} %llu\n", pass_bounds[b], cum);
	}
	gw_strbuf_printf(sb,
			 "gitward_pass_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
			 "gitward_pass_duration_seconds_sum %.3f\n"
			 "gitward_pass_duration_seconds_count %llu\n",
			 m->passes, m->pass_seconds, m->passes);
	family(sb, "gitward_pass_running_seconds", "gauge", "How long the running pass has run (0 between passes).");
	gw_strbuf_printf(sb, "gitward_pass_running_seconds %.3f\n",
			 m->pass_started ? seconds(gw_monotonic_ms() - m->pass_started) : 0.0);
	family(sb, "gitward_git_fetch_errors_total", "counter",
	       "Passes whose fetch from the repository (or resolving the ref) failed; with several --repo, "
	       "also each remote's failed fetches.");
	gw_strbuf_printf(sb, "gitward_git_fetch_errors_total %llu\n", m->fetch_errors);
	for (size_t i = 0; i < nrs; i++) {
		series(sb, "gitward_git_fetch_errors_total", "remote", rs[i].url, NULL, NULL);
		gw_strbuf_printf(sb, "%llu\n", rs[i].errors);
	}
	gw_remotes_free(rs, nrs);
	family(sb, "gitward_git_last_fetch_success_timestamp_seconds", "gauge",
	       "End of the last pass whose fetch succeeded (0: none since the agent started).");
	gw_strbuf_printf(sb, "gitward_git_last_fetch_success_timestamp_seconds %.3f\n", seconds(m->last_fetch_ok_ms));
	if (m->fleet_lock_on) {
		family(sb, "gitward_fleet_lock_requests_total", "counter",
		       "Requests to the --fleet-lock server by op (pre-reboot, steady-state) and result (granted: 200, "
		       "refused: another status, error: no answer).");
		for (int o = 0; o < GW_FLEETLOCK_OP_MAX; o++)
			for (int r = 0; r < GW_FLEETLOCK_RESULT_MAX; r++) {
				series(sb, "gitward_fleet_lock_requests_total", "op",
				       gw_fleetlock_op_to_string((enum gw_fleetlock_op)o), "result",
				       gw_fleetlock_result_to_string((enum gw_fleetlock_result)r));
				gw_strbuf_printf(sb, "%llu\n", atomic_load(&m->fleet_lock.n[o][r]));
			}
	}
	family(sb, "gitward_webhook_requests_total", "counter", "Requests to /hooks/git by signing server and result.");
	for (int s = 0; s < GW_HOOK_SOURCE_MAX; s++)
		for (int r = 0; r < GW_HOOK_RESULT_MAX; r++) {
			series(sb, "gitward_webhook_requests_total", "source", hook_sources[s], "result",
			       hook_results[r]);
			gw_strbuf_printf(sb, "%llu\n", m->hooks[s][r]);
		}
	notify_metrics(sb, m->notifier);
	pthread_mutex_unlock(&m->mu);
}

/* The state dir of the state file at path, for the files beside it */
static void pin_overlay(struct gw_state_file *st, const char *state_path)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", state_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	gw_pin_overlay(st, dir);
}

/* The operator's controls as the last pass found them (gitward/control.h) */
static void control_metrics(struct gw_strbuf *sb, const struct gw_state_file *st)
{
	static const char *const actions[] = { "create", "update", "delete", "restart" };
	static const char *const modes[] = { "enforce", "observe" };
	bool observe = st->mode && !strcmp(st->mode, "observe");
	family(sb, "gitward_suspended", "gauge", "1 while the node is suspended (gitward suspend), else 0.");
	gw_strbuf_printf(sb, "gitward_suspended %d\n", st->suspended ? 1 : 0);
	family(sb, "gitward_reverted", "gauge",
	       "1 while the ref's tip is a commit --auto-revert went back from (refused until the ref moves), else 0.");
	gw_strbuf_printf(sb, "gitward_reverted %d\n", st->reverted_commit ? 1 : 0);
	family(sb, "gitward_pinned", "gauge", "1 while the node is pinned to a commit (gitward rollback), else 0.");
	gw_strbuf_printf(sb, "gitward_pinned %d\n", st->pinned_commit ? 1 : 0);
	family(sb, "gitward_mode", "gauge", "1 for the mode the agent runs in (--mode), 0 for the other.");
	for (int i = 0; i < 2; i++) {
		series(sb, "gitward_mode", "mode", modes[i], NULL, NULL);
		gw_strbuf_printf(sb, "%d\n", (i == 1) == observe);
	}
	family(sb, "gitward_pending_actions", "gauge",
	       "Actions planned but not applied (observe mode, suspended, held), by action.");
	for (int a = 0; a < 4; a++) {
		size_t n = 0;
		for (size_t i = 0; i < st->npending; i++)
			n += !strcmp(st->pending[i].action, actions[a]);
		series(sb, "gitward_pending_actions", "action", actions[a], NULL, NULL);
		gw_strbuf_printf(sb, "%zu\n", n);
	}
	static const char *const reasons[] = { "window", "fleet-lock" };
	family(sb, "gitward_held_actions", "gauge",
	       "Disruptive actions (update, delete) held by a maintenance window or a fleet lock, by reason.");
	for (int r = 0; r < 2; r++) {
		size_t n = 0;
		for (size_t i = 0; i < st->npending; i++)
			n += !strcmp(st->pending[i].held, reasons[r]);
		series(sb, "gitward_held_actions", "reason", reasons[r], NULL, NULL);
		gw_strbuf_printf(sb, "%zu\n", n);
	}
}

/* What the state file records: resources by kind and state, and per
 * resource its restarts and whether it is as desired. Nothing when the file
 * cannot be read (/status says why). */
static void state_metrics(struct gw_strbuf *sb, const char *state_path)
{
	static const char *const states[] = { "running", "stopped", "failed", "pending" };
	struct gw_state_file st;
	struct gw_error err;

	gw_state_file_init(&st);
	bool loaded = gw_state_load(&st, state_path, &err) == 0;
	pin_overlay(&st, state_path);
	control_metrics(sb, &st);
	family(sb, "gitward_resources", "gauge", "Managed resources by kind and state.");
	if (!loaded)
		return;
	for (int k = 0; k < GW_KIND_MAX; k++)
		for (int s = 0; s < 4; s++) {
			size_t n = 0;
			for (size_t i = 0; i < st.n; i++)
				n += st.res[i].kind == (enum gw_kind)k && st.res[i].state == (enum gw_state)s;
			series(sb, "gitward_resources", "kind", gw_kind_to_string((enum gw_kind)k), "state", states[s]);
			gw_strbuf_printf(sb, "%zu\n", n);
		}
	family(sb, "gitward_resource_restarts_total", "counter",
	       "Restarts of a resource by gitward (since its spec last changed).");
	for (size_t i = 0; i < st.n; i++) {
		series(sb, "gitward_resource_restarts_total", "kind", gw_kind_to_string(st.res[i].kind), "name",
		       st.res[i].name);
		gw_strbuf_printf(sb, "%d\n", st.res[i].restarts);
	}
	family(sb, "gitward_resource_converged", "gauge",
	       "1 when a resource is as desired (its spec applied, running and not unhealthy, or finished under "
	       "its restart policy), else 0.");
	for (size_t i = 0; i < st.n; i++) {
		series(sb, "gitward_resource_converged", "kind", gw_kind_to_string(st.res[i].kind), "name",
		       st.res[i].name);
		gw_strbuf_printf(sb, "%d\n", gw_observed_converged(&st.res[i]) ? 1 : 0);
	}
	/* the commit in force, as a label: "commit by node" and rollout gates
	 * in Prometheus alone */
	if (st.commit) {
		family(sb, "gitward_commit_info", "gauge", "Always 1; the commit in force on this node and its ref.");
		series(sb, "gitward_commit_info", "commit", st.commit, "ref", st.ref ? st.ref : "");
		gw_strbuf_puts(sb, "1\n");
	}
	/* beside it the ref's tip: "node runs X, main is at Y", and whether Y
	 * is refused */
	if (st.remote_commit) {
		family(sb, "gitward_remote_commit_info", "gauge",
		       "Always 1; the ref's tip at the last successful fetch and the ref.");
		series(sb, "gitward_remote_commit_info", "commit", st.remote_commit, "ref", st.ref ? st.ref : "");
		gw_strbuf_puts(sb, "1\n");
	}
	family(sb, "gitward_remote_commit_invalid", "gauge",
	       "1 while the ref's tip at the last successful fetch is invalid or its signature refused (the last "
	       "good commit stays in force), else 0.");
	series(sb, "gitward_remote_commit_invalid", "ref", st.ref ? st.ref : "", NULL, NULL);
	gw_strbuf_printf(sb, "%d\n", st.remote_invalid ? 1 : 0);
	gw_state_file_free(&st);
}

static char *metrics_text(struct gw_metrics *m)
{
	struct gw_strbuf sb;

	gw_strbuf_init(&sb);
	loop_metrics(&sb, m);
	state_metrics(&sb, m->state_path);
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
	pin_overlay(&st, m->state_path);
	char *s = gw_state_render_status(&st, &m->describe);
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
		char msg[64];
		snprintf(msg, sizeof(msg), "body over %u bytes", GW_HOOK_BODY_MAX);
		refuse_hook(ep->m, src, GW_HOOK_TOO_LARGE, REFUSED_TOO_LARGE, msg);
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
		if (src == GW_HOOK_NONE)
			refuse_hook(ep->m, src, GW_HOOK_UNAUTHORIZED, REFUSED_UNSIGNED,
				    "no X-Hub-Signature-256, X-Gitlab-Token or X-Gitea-Signature header");
		else
			refuse_hook(ep->m, src, GW_HOOK_UNAUTHORIZED, REFUSED_BAD_SIGNATURE,
				    "the signature or token does not match --webhook-secret-file");
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
