/* The agent's HTTP endpoints (libmicrohttpd) and the metrics they serve. */
#ifndef GITWARD_AGENT_HTTP_H
#define GITWARD_AGENT_HTTP_H

#include <pthread.h>
#include <stdint.h>

#include "gitward/apply.h"
#include "gitward/config.h"

struct gw_metrics {
	pthread_mutex_t mu;
	unsigned long long sync[GW_RUN_MAX]; /* per gw_run_result */
	int64_t last_sync; /* unix seconds of the last pass */
	double last_duration; /* seconds */
	int64_t heartbeat; /* monotonic ms, the loop is alive */
	int64_t interval_ms;
	char state_path[4096];
};

void gw_metrics_init(struct gw_metrics *m, const struct gw_config *cfg);
void gw_metrics_free(struct gw_metrics *m);
void gw_metrics_record(struct gw_metrics *m, const struct gw_run_summary *sum, int64_t took_ms,
		       const struct gw_config *cfg);
void gw_metrics_heartbeat(struct gw_metrics *m);

struct gw_http;
/* trigger is called (from the server thread) when a signed webhook asks for a pass. */
int gw_http_start(struct gw_http **out, struct gw_metrics *m, const struct gw_config *cfg, void (*trigger)(void *),
		  void *ud, struct gw_error *err);
void gw_http_stop(struct gw_http *h);

/* Tell systemd (Type=notify) that the agent is up; no-op elsewhere. */
void gw_notify_ready(void);

#endif
