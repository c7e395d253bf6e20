/* What a review reads besides commits: inventories of nodes (`gitward diff
 * --nodes`) and a node's recorded status read back as what it runs
 * (`reconcile --dry-run --against`). The plans are the pass's
 * (gitward/pass.h), through its status and commit observers. */
#ifndef GITWARD_REVIEW_H
#define GITWARD_REVIEW_H

#include "gitward/manifest.h"
#include "gitward/plan.h"

#define GW_INVENTORY_NODES_MAX 10000u
#define GW_STATUS_BYTES_MAX (64u << 20) /* a status document read by --against */

void gw_review_observed_free(struct gw_observed *v, size_t n);

/* An inventory: nodes with their labels ("node" = the name is added). */
struct gw_inventory_node {
	char *name;
	struct gw_strmap labels;
};
struct gw_inventory {
	struct gw_inventory_node *v;
	size_t n;
};
/* Read an inventory file (YAML):
 *   nodes:
 *     - name: web-01
 *       labels: {role: edge}
 * Problems go to diags with file:line:col (-EINVAL). */
int gw_inventory_load(struct gw_inventory *out, const char *path, struct gw_diags *diags);
void gw_inventory_free(struct gw_inventory *inv);

/* The node a status document describes. */
struct gw_review_node {
	char *node; /* its name (NULL: absent) */
	char *commit; /* its last applied commit (NULL: absent) */
	char *ref; /* the name of that commit's ref (NULL: absent) */
	struct gw_strmap labels; /* its labels, less "node" */
	bool has_labels; /* "labels" is there (not in documents of earlier versions) */
};
void gw_review_node_free(struct gw_review_node *nd);

/* What a node runs, from the JSON of `status --output json` or GET /status
 * (text, len), as observed resources; *out_node (NULL: not wanted) the node
 * it describes (caller frees with gw_review_node_free). */
int gw_review_observed_from_status(struct gw_observed **out, size_t *out_n, struct gw_review_node *out_node,
				   const char *text, size_t len, const char *origin, struct gw_error *err);

/* The status document of --against: a file, or an http(s):// URL (an
 * agent's GET /status), at most GW_STATUS_BYTES_MAX bytes; caller frees. */
int gw_review_status_read(char **out, size_t *out_len, const char *file_or_url, struct gw_error *err);
#endif
