/* Serving the agent's endpoints (endpoints.h) over HTTP with libmicrohttpd. */
#ifndef GITWARD_AGENT_HTTP_H
#define GITWARD_AGENT_HTTP_H

#include <stdint.h>

#include "endpoints.h"

struct gw_http;
/* trigger is called (from the server thread) when a signed webhook asks for a pass. */
int gw_http_start(struct gw_http **out, struct gw_metrics *m, const struct gw_config *cfg, void (*trigger)(void *),
		  void *ud, struct gw_error *err);
void gw_http_stop(struct gw_http *h);

/* Tell systemd (Type=notify) that the agent is up; no-op elsewhere. */
void gw_notify_ready(void);
/* WATCHDOG=1 to systemd; the watchdog period (0: none asked for). */
void gw_notify_watchdog(void);
uint64_t gw_watchdog_usec(void);

#endif
