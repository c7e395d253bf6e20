/* The container backend's pure pieces — request bodies and reply parsing —
 * exposed for unit tests against recorded Engine API replies. */
#ifndef GITWARD_CONTAINER_H
#define GITWARD_CONTAINER_H

#include <jansson.h>

#include "gitward/plan.h"
#include "gitward/resource.h"

#define GW_LABEL_MANAGED "gitward.managed"
#define GW_LABEL_NAME "gitward.name"
#define GW_LABEL_HASH "gitward.spec-hash"
#define GW_LABEL_SPEC "gitward.spec"
#define GW_LABEL_STATE_DIR "gitward.state-dir"
#define GW_LABEL_RESTART "gitward.restart"
#define GW_LABEL_DEPENDS_ON "gitward.depends-on"

/* A container's handle: {"id":"<id>"} (caller frees). */
char *gw_container_handle(const char *id);
/* The id a handle names, "" for NULL or another handle. */
const char *gw_container_id(char *buf, size_t size, const char *handle);
/* "gitward-<name>" */
const char *gw_container_name(char *buf, size_t size, const char *name);
/* The body of POST /containers/create. file_env: values read from envFiles. */
json_t *gw_container_create_body(const struct gw_resource *r, const struct gw_strmap *file_env, const char *state_dir);
/* GET /containers/json -> the containers this gitward owns (by labels). */
int gw_container_parse_list(struct gw_observed **out, size_t *out_n, const json_t *list, const char *state_dir);
/* GET /containers/{id}/json -> state and detail (exit code, OOM). */
void gw_container_apply_inspect(struct gw_observed *o, const json_t *inspect);

#endif
