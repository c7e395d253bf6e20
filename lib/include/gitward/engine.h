/* A Docker Engine API client over a unix socket (libcurl + jansson). Docker
 * and Podman (`podman system service`) serve the same API. libcurl and engine
 * errors are translated here, once, keeping the engine's own message. */
#ifndef GITWARD_ENGINE_H
#define GITWARD_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "gitward/util.h"

#define GW_ENGINE_API_MIN "1.41"
#define GW_ENGINE_API_MAX "1.47" /* the newest whose replies we have checked against */

struct gw_engine {
	char socket[4096];
	char version[16]; /* negotiated, e.g. "1.41" */
	/* NULL (as connected): never. When requested, a call in flight is
	 * abandoned with -ECANCELED (the engine may still finish it). */
	const struct gw_cancel *cancel;
};

/* The socket to use: explicit, else the first that exists of
 * /run/podman/podman.sock and /var/run/docker.sock (else the first). */
const char *gw_engine_default_socket(const char *explicit_path);
/* Connect: GET /_ping (its Api-Version header), else GET /version, and
 * negotiate the API version: the engine's newest, at most 1.47, at least 1.41. */
int gw_engine_connect(struct gw_engine *out, const char *socket_path, int64_t timeout_ms, struct gw_error *err);
/* One request. body may be NULL. On success *status is the HTTP status and
 * *out the parsed JSON (NULL for an empty or non-JSON body) — also for
 * 4xx/5xx, which are not failures here; callers decide. Transport failures
 * (socket unreachable, timeout) fail naming the socket. */
int gw_engine_call(json_t **out, long *status, const struct gw_engine *e, const char *method, const char *path,
		   json_t *body, int64_t timeout_ms, struct gw_error *err);
/* A streaming GET (e.g. /events): on_line is called for every line as it
 * arrives, until it returns < 0 or e->cancel is requested (both 0), or the
 * stream fails or ends (an error). */
int gw_engine_stream(const struct gw_engine *e, const char *path,
		     int (*on_line)(const char *line, size_t len, void *ud), void *ud, struct gw_error *err);
/* The engine's own error text of a reply ("message", else "cause"). */
const char *gw_engine_message(const json_t *reply);

#endif
