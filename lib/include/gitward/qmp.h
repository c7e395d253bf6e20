/* A QMP client: JSON lines over a unix socket to QEMU. Greeting and
 * capabilities negotiation on open; commands wait for their own reply and
 * skip asynchronous events; every wait is bounded; every line from QEMU is
 * bounded in size. QMP errors are translated here, once. */
#ifndef GITWARD_QMP_H
#define GITWARD_QMP_H

#include <jansson.h>
#include <stdint.h>

#include "gitward/util.h"

#define GW_QMP_LINE_MAX (1u << 20)

struct gw_qmp;

/* Take over a connected fd (closed by gw_qmp_close, also on failure): read
 * the greeting, send qmp_capabilities. Tests use a socketpair. */
int gw_qmp_open_fd(struct gw_qmp **out, int fd, int64_t timeout_ms, struct gw_error *err);
int gw_qmp_connect(struct gw_qmp **out, const char *socket_path, int64_t timeout_ms, struct gw_error *err);
/* Run one command; *out (optional) gets its "return" value. A QMP "error"
 * reply fails with its class and description. */
int gw_qmp_execute(json_t **out, struct gw_qmp *q, const char *command, json_t *args, int64_t timeout_ms,
		   struct gw_error *err);
/* The version QEMU announced in its greeting ("7.2.22"). */
const char *gw_qmp_version(const struct gw_qmp *q);
void gw_qmp_close(struct gw_qmp *q);

#endif
