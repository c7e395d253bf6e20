/* What the agent's HTTP endpoints answer, without sockets: the loop's
 * counters (struct gw_metrics) and one function from a whole request to a
 * whole response, which http.c serves and tests/fuzz/fuzz_http.c calls. */
#ifndef GITWARD_AGENT_ENDPOINTS_H
#define GITWARD_AGENT_ENDPOINTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/pass.h"
#include "gitward/config.h"

/* Largest webhook body taken; a longer one is answered 413. */
#define GW_HOOK_BODY_MAX (1u << 20)

/* Which server signed a webhook (by the header it sent). */
enum gw_hook_source { GW_HOOK_GITHUB, GW_HOOK_GITLAB, GW_HOOK_GITEA, GW_HOOK_NONE, GW_HOOK_SOURCE_MAX };
/* How a webhook request ended: 202, 401, 413, 404 (no secret configured). */
enum gw_hook_result { GW_HOOK_ACCEPTED, GW_HOOK_UNAUTHORIZED, GW_HOOK_TOO_LARGE, GW_HOOK_DISABLED, GW_HOOK_RESULT_MAX };

/* Buckets of gitward_pass_duration_seconds (upper bounds, seconds; +Inf
 * is the count): from a no-op pass on a local repo to a slow fetch. */
#define GW_PASS_BUCKETS 14

struct gw_metrics {
	pthread_mutex_t mu;
	unsigned long long sync[GW_RUN_MAX]; /* per gw_run_result */
	unsigned long long hooks[GW_HOOK_SOURCE_MAX][GW_HOOK_RESULT_MAX];
	/* the refusals' warnings, one limit per reason (enum hook_refusal) */
	struct gw_log_limit hook_log[3];
	int64_t last_sync; /* unix seconds of the last pass */
	double last_duration; /* seconds */
	unsigned long long pass_buckets[GW_PASS_BUCKETS]; /* passes per bucket, not cumulative */
	unsigned long long passes; /* passes recorded */
	double pass_seconds; /* their total duration */
	int64_t started_ms; /* unix ms: the agent's start (process_start_time_seconds) */
	int64_t last_attempt_ms; /* unix ms: end of the last pass; 0 = none yet */
	int64_t last_success_ms; /* end of the last pass that converged */
	int64_t last_fetch_ok_ms; /* end of the last pass whose fetch succeeded */
	unsigned long long fetch_errors; /* passes whose fetch failed */
	struct gw_fleetlock_counts fleet_lock; /* --fleet-lock requests, counted by the passes */
	bool fleet_lock_on;
	char version[32], libgit2[32]; /* gitward_build_info */
	int64_t heartbeat; /* monotonic ms, the loop is alive */
	int64_t pass_started; /* monotonic ms of the running pass; 0 between passes */
	int64_t interval_ms;
	int64_t stuck_after_ms; /* /healthz fails while a pass runs longer */
	char state_path[4096];
	struct gw_notifier *notifier; /* events: gitward_notify_*_total; NULL: none */
	struct gw_state_describer describe; /* how /status shows each workload ("pid", "id") */
};

void gw_metrics_init(struct gw_metrics *m, const struct gw_config *cfg);
void gw_metrics_free(struct gw_metrics *m);
/* The loop calls these around each pass, and heartbeat while it waits. */
void gw_metrics_pass_begin(struct gw_metrics *m);
void gw_metrics_record(struct gw_metrics *m, const struct gw_run_summary *sum, int64_t took_ms);
void gw_metrics_heartbeat(struct gw_metrics *m);

/* The default --stuck-after: 10 intervals, at least 15 minutes. */
int64_t gw_stuck_after_default(int64_t interval_ms);

struct gw_endpoints {
	struct gw_metrics *m;
	const char *secret; /* NULL: POST /hooks/git answers 404 */
	size_t secret_len;
};

struct gw_http_request {
	const char *method;
	const char *url; /* the path, without the query */
	/* The value of a request header (name case-insensitive), NULL if absent. */
	const char *(*header)(void *ud, const char *name);
	void *header_ud;
	const char *body; /* may be NULL when body_len is 0 */
	size_t body_len;
	bool body_too_large; /* the transport dropped a body over GW_HOOK_BODY_MAX */
};

struct gw_http_response {
	unsigned status;
	const char *content_type;
	char *body; /* caller frees */
	bool trigger; /* a signed webhook asked for a pass */
};

/* Answer one request: GET /healthz, /metrics, /status; POST /hooks/git with
 * a GitHub (X-Hub-Signature-256), GitLab (X-Gitlab-Token) or Gitea/Forgejo
 * (X-Gitea-Signature, X-Forgejo-Signature) signature. Safe from several
 * threads; reads the state file, never writes. */
void gw_endpoints_handle(struct gw_http_response *out, struct gw_endpoints *ep, const struct gw_http_request *req);

#endif
