/* The External backend's plugin protocol (contrib/plugins/PROTOCOL.md): one
 * JSON request on a plugin's stdin, one JSON reply on its stdout, bounded in
 * time and size. The client is public for its unit tests; the backend itself
 * is only reached through the backend table. */
#ifndef GITWARD_EXTERNAL_H
#define GITWARD_EXTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/util.h"

#define GW_PLUGIN_PROTOCOL 1
#ifndef GW_PLUGIN_DIR_DEFAULT /* the build sets PREFIX/lib/gitward/plugins */
#define GW_PLUGIN_DIR_DEFAULT "/usr/lib/gitward/plugins"
#endif
#define GW_PLUGIN_TIMEOUT_MS 30000 /* per call, unless spec.timeout says otherwise */
#define GW_PLUGIN_REPLY_MAX (1u << 20) /* bytes of one reply on stdout */
#define GW_PLUGIN_HANDLE_MAX (64u << 10) /* bytes of the handle a plugin returns */
/* How old the External resources' observation may grow while a pass waits
 * for it: then the pass goes on without them (left as recorded; the
 * observation keeps running and the next pass takes its result, without
 * waiting again). A slow plugin never holds the other kinds. */
#define GW_PLUGIN_OBSERVE_WAIT_MS 10000

/* Run operation op ("create", "observe", "destroy", "probe") of the plugin
 * called name in dir: request gets "protocol" and "op" set, goes to the
 * plugin's stdin, and on success *reply is its answer, a JSON object with
 * "protocol": 1 and "ok": true (caller decrefs). Fails (negative errno, err
 * naming the plugin, the operation and the problem) when the plugin is
 * missing or not executable, gives no answer within timeout_ms (its process
 * group is killed and reaped), dies of a signal, exits non-zero, answers more
 * than GW_PLUGIN_REPLY_MAX bytes or anything but one JSON object, speaks
 * another protocol version, or answers "ok": false (its "error" quoted).
 * A stop request (cancel, NULL: never) kills the plugin's process group at
 * once: -ECANCELED. */
int gw_plugin_call(json_t **reply, const char *dir, const char *name, const char *op, json_t *request,
		   int64_t timeout_ms, const struct gw_cancel *cancel, struct gw_error *err);

#endif
