/* GET /healthz, /metrics, /status and POST /hooks/git on libmicrohttpd's own
 * thread. Handlers only read: the state file from disk, the counters under a
 * mutex; a webhook only wakes the loop. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "gitward/paths.h"
#include "gitward/state.h"
#include "http.h"

#define BODY_MAX (1u << 20)

/* per gw_run_result; "unverified": a commit whose signature was refused */
static const char *const result_names[GW_RUN_MAX] = { "success", "not_converged", "git_error",
						      "invalid", "error",	  "unverified" };

void gw_metrics_init(struct gw_metrics *m, const struct gw_config *cfg)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
	m->interval_ms = cfg->interval_ms;
	m->heartbeat = gw_monotonic_ms();
	gw_path_state_file(m->state_path, sizeof(m->state_path), cfg->state_dir);
}

void gw_metrics_free(struct gw_metrics *m)
{
	pthread_mutex_destroy(&m->mu);
}

void gw_metrics_record(struct gw_metrics *m, const struct gw_run_summary *sum, int64_t took_ms,
		       const struct gw_config *cfg)
{
	(void)cfg;
	pthread_mutex_lock(&m->mu);
	m->sync[sum->result]++;
	m->last_sync = gw_now_ms() / 1000;
	m->last_duration = (double)took_ms / 1000.0;
	m->heartbeat = gw_monotonic_ms();
	pthread_mutex_unlock(&m->mu);
}

void gw_metrics_heartbeat(struct gw_metrics *m)
{
	pthread_mutex_lock(&m->mu);
	m->heartbeat = gw_monotonic_ms();
	pthread_mutex_unlock(&m->mu);
}

struct gw_http {
	struct MHD_Daemon *d;
	struct gw_metrics *m;
	char *secret;
	size_t secret_len;
	void (*trigger)(void *);
	void *ud;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static char *metrics_text(struct gw_metrics *m)
{
	struct gw_strbuf sb;
	struct gw_state_file st;
	struct gw_error err;

	gw_strbuf_init(&sb);
	pthread_mutex_lock(&m->mu);
	gw_strbuf_puts(&sb, "# HELP gitward_sync_total Passes by result.\n# TYPE gitward_sync_total counter\n");
	for (int i = 0; i < GW_RUN_MAX; i++)
		gw_strbuf_printf(&sb, "gitward_sync_total{result=\"%s\"} %llu\n", result_names[i], m->sync[i]);
	gw_strbuf_printf(&sb,
			 "# HELP gitward_last_sync_timestamp_seconds End of the last pass.\n"
			 "# TYPE gitward_last_sync_timestamp_seconds gauge\n"
			 "gitward_last_sync_timestamp_seconds %lld\n"
			 "# HELP gitward_reconcile_duration_seconds Duration of the last pass.\n"
			 "# TYPE gitward_reconcile_duration_seconds gauge\n"
			 "gitward_reconcile_duration_seconds %.3f\n",
			 (long long)m->last_sync, m->last_duration);
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

static int signature_ok(const struct gw_http *h, const char *header, const char *body, size_t len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (!header || strncmp(header, "sha256=", 7) != 0)
		return 0;
	if (!HMAC(EVP_sha256(), h->secret, (int)h->secret_len, (const unsigned char *)body, len, mac, &maclen))
		return 0;
	for (unsigned i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	size_t want = 2 * (size_t)maclen;
	if (strlen(header + 7) != want)
		return 0;
	return CRYPTO_memcmp(hex, header + 7, want) == 0;
}

struct upload {
	struct gw_strbuf body;
	int too_big;
};

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct upload *u = *con_cls;
	if (u) {
		gw_strbuf_free(&u->body);
		free(u);
		*con_cls = NULL;
	}
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct gw_http *h = cls;
	(void)version;

	if (!strcmp(method, "POST") && !strcmp(url, "/hooks/git")) {
		struct upload *u = *con_cls;
		if (!u) {
			u = gw_xcalloc(1, sizeof(*u));
			gw_strbuf_init(&u->body);
			*con_cls = u;
			return MHD_YES;
		}
		if (*upload_size) {
			if (u->body.len + *upload_size > BODY_MAX)
				u->too_big = 1;
			else
				gw_strbuf_add(&u->body, upload_data, *upload_size);
			*upload_size = 0;
			return MHD_YES;
		}
		if (!h->secret)
			return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", gw_xstrdup("webhook not enabled\n"));
		if (u->too_big)
			return reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "text/plain", gw_xstrdup("body too large\n"));
		const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hub-Signature-256");
		if (!signature_ok(h, sig, u->body.s ? u->body.s : "", u->body.len)) {
			gw_log(GW_LOG_WARN, "", "webhook refused: bad or missing X-Hub-Signature-256");
			return reply(c, MHD_HTTP_UNAUTHORIZED, "text/plain", gw_xstrdup("bad signature\n"));
		}
		gw_log(GW_LOG_INFO, "", "webhook: pass requested");
		h->trigger(h->ud);
		return reply(c, MHD_HTTP_ACCEPTED, "text/plain", gw_xstrdup("pass triggered\n"));
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", gw_xstrdup("method not allowed\n"));
	if (!strcmp(url, "/healthz")) {
		pthread_mutex_lock(&h->m->mu);
		int64_t age = gw_monotonic_ms() - h->m->heartbeat;
		int64_t limit = 3 * h->m->interval_ms + 600000; /* a pass may take long: its own timeouts bound it */
		pthread_mutex_unlock(&h->m->mu);
		if (age > limit)
			return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", gw_xstrdup("loop stalled\n"));
		return reply(c, MHD_HTTP_OK, "text/plain", gw_xstrdup("ok\n"));
	}
	if (!strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", metrics_text(h->m));
	if (!strcmp(url, "/status")) {
		struct gw_state_file st;
		struct gw_error err;
		char buf[GW_ERROR_MSG_MAX + 300];
		gw_state_file_init(&st);
		if (gw_state_load(&st, h->m->state_path, &err) < 0) {
			struct gw_strbuf sb;
			gw_strbuf_init(&sb);
			gw_strbuf_printf(&sb, "{\"error\":\"%s\"}\n", gw_error_format(buf, sizeof(buf), &err));
			return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", gw_strbuf_detach(&sb));
		}
		char *s = gw_state_render_status(&st);
		gw_state_file_free(&st);
		return reply(c, MHD_HTTP_OK, "application/json", s);
	}
	return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", gw_xstrdup("not found\n"));
}

int gw_http_start(struct gw_http **out, struct gw_metrics *m, const struct gw_config *cfg, void (*trigger)(void *),
		  void *ud, struct gw_error *err)
{
	struct gw_http *h = gw_xcalloc(1, sizeof(*h));
	struct sockaddr_in addr = { .sin_family = AF_INET };
	char host[256];
	const char *colon = strrchr(cfg->listen, ':');

	snprintf(host, sizeof(host), "%.*s", (int)(colon - cfg->listen), cfg->listen);
	if (!*host || !strcmp(host, "*"))
		strcpy(host, "0.0.0.0");
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		free(h);
		return gw_error_set(err, -EINVAL, "--listen %s: expected an IPv4 address and a port", cfg->listen);
	}
	addr.sin_port = htons((uint16_t)atoi(colon + 1));
	h->m = m;
	h->trigger = trigger;
	h->ud = ud;
	if (cfg->webhook_secret_file) {
		size_t len;
		int rc = gw_file_read(&h->secret, &len, cfg->webhook_secret_file, 65536, err);
		if (rc < 0) {
			free(h);
			return gw_error_prefix(err, "--webhook-secret-file");
		}
		while (len && (h->secret[len - 1] == '\n' || h->secret[len - 1] == '\r'))
			h->secret[--len] = '\0';
		if (!len) {
			free(h->secret);
			free(h);
			return gw_error_set(err, -EINVAL, "--webhook-secret-file %s is empty",
					    cfg->webhook_secret_file);
		}
		h->secret_len = len;
	}
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, h,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed,
				NULL, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	if (!h->d) {
		free(h->secret);
		free(h);
		return gw_error_set(err, -EADDRINUSE, "--listen %s: cannot listen (address in use?)", cfg->listen);
	}
	gw_log(GW_LOG_INFO, "", "endpoints on http://%s/ (healthz, metrics, status%s)", cfg->listen,
	       cfg->webhook_secret_file ? ", hooks/git" : "");
	*out = h;
	return 0;
}

void gw_http_stop(struct gw_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	if (h->secret)
		OPENSSL_cleanse(h->secret, h->secret_len);
	free(h->secret);
	free(h);
}

void gw_notify_ready(void)
{
	sd_notify(0, "READY=1");
}
