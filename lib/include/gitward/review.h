/* Review in CI: the desired state of two commits compared per node
 * (`gitward diff`), inventories of nodes, and a node's recorded status
 * read back as what it runs (`reconcile --dry-run --against`). Only the Git
 * cache is touched (a private fetch beside it); no backend is called. */
#ifndef GITWARD_REVIEW_H
#define GITWARD_REVIEW_H

#include "gitward/config.h"
#include "gitward/manifest.h"
#include "gitward/pass.h"
#include "gitward/plan.h"

#define GW_INVENTORY_NODES_MAX 10000u
#define GW_STATUS_BYTES_MAX (64u << 20) /* a status document read by --against */

struct gw_review {
	char base_commit[41], head_commit[41];
	char *head_ref; /* the name used for head, e.g. "main" */
	struct gw_manifest_set base, head;
};

/* Fetch once (read-only: a private clone borrowing the cache), resolve
 * base_ref and head_ref (NULL: cfg->ref, then the remote's default branch),
 * read and validate both commits. Problems of head are in rv->head.diags
 * (-EINVAL); problems of base are left in rv->base.diags and its valid
 * resources are compared. */
void gw_review_init(struct gw_review *rv);
void gw_review_free(struct gw_review *rv);
int gw_review_prepare(struct gw_review *rv, enum gw_pass_stage *stage, const struct gw_config *cfg,
		      const char *base_ref, const char *head_ref, struct gw_error *err);
/* The plan of one node: head's selection against base's selection taken as
 * running. *out_observed holds what the plan borrows (free with
 * gw_review_observed_free after the plan). */
int gw_review_plan(struct gw_plan *out, struct gw_observed **out_observed, size_t *out_n, const struct gw_review *rv,
		   const struct gw_strmap *labels, const struct gw_config *cfg, struct gw_error *err);
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

/* What a node runs, from the JSON of `status --output json` or GET /status
 * (text, len), as observed resources; *out_node and *out_commit are the
 * node's name and last applied commit (NULL when absent; caller frees). */
int gw_review_observed_from_status(struct gw_observed **out, size_t *out_n, char **out_node, char **out_commit,
				   const char *text, size_t len, const char *origin, struct gw_error *err);

/* The status document of --against: a file, or an http(s):// URL (an
 * agent's GET /status), at most GW_STATUS_BYTES_MAX bytes; caller frees. */
int gw_review_status_read(char **out, size_t *out_len, const char *file_or_url, struct gw_error *err);
/* The plan of rv->head's selection for labels against what the status
 * recorded (obs); rv->base, when read from the status's commit, gives the
 * recorded resources their specs so changes are field by field. */
int gw_review_against(struct gw_plan *out, struct gw_review *rv, struct gw_observed *obs, size_t nobs,
		      const struct gw_strmap *labels, const struct gw_config *cfg, struct gw_error *err);

#endif
