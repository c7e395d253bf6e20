/* The planner: (desired, observed) -> ordered actions with field-level
 * changes. Pure: no I/O. Also the renderers of plans for people and scripts. */
#ifndef GITWARD_PLAN_H
#define GITWARD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gitward/manifest.h"
#include "gitward/observed.h"
#include "gitward/resource.h"
#include "gitward/util.h"

enum gw_action_type { GW_ACTION_NONE, GW_ACTION_CREATE, GW_ACTION_UPDATE, GW_ACTION_DELETE, GW_ACTION_RESTART };
const char *gw_action_to_string(enum gw_action_type a);

struct gw_change {
	char *path; /* "spec.env.VERSION" */
	char *from, *to; /* compact JSON of the values; NULL when absent */
};

struct gw_action {
	enum gw_action_type type;
	enum gw_kind kind;
	const char *name;
	const struct gw_resource *desired; /* borrowed; NULL for delete */
	const struct gw_observed *observed; /* borrowed; NULL for create */
	struct gw_change *changes;
	size_t nchanges;
	char reason[160];
	/* a restart for a change (an envFile's content), not the restart
	 * policy's: neither held by its backoff nor counted in its crash streak */
	bool deliberate;
	/* indices into plan->v of the actions that must finish first */
	size_t *after;
	size_t nafter;
};

struct gw_plan {
	struct gw_action *v; /* every resource, in apply order; NONE for unchanged */
	size_t n;
	size_t count[5]; /* per gw_action_type */
};

struct gw_plan_opts {
	bool prune;
	bool allow_empty;
};

/* desired: the resources selected for this node. Fails with -ECANCELED when
 * the commit declares nothing for this node, resources would be deleted and
 * allow_empty is off. */
int gw_plan_build(struct gw_plan *out, struct gw_resource *const *desired, size_t ndesired,
		  const struct gw_observed *observed, size_t nobserved, const struct gw_plan_opts *opts,
		  struct gw_error *err);
void gw_plan_free(struct gw_plan *plan);

/* Field-level differences between two canonical JSON documents. */
int gw_plan_diff_canonical(struct gw_change **out, size_t *out_n, const char *from, const char *to);

/* nodeSelector against the node's labels (label "node" is the node name). */
bool gw_plan_selects(const struct gw_resource *r, const struct gw_strmap *node_labels);

struct gw_plan_meta {
	const char *commit;
	const char *ref;
	const char *node;
};

/* One line per action: a create with its main fields (image, command,
 * kernel, disk, plugin, ports, forwards, env with secret-looking values
 * masked), an update with its field changes (a field taken out shows the
 * default it takes, else "(unset)"); then the summary. The markdown below
 * shows the same. */
void gw_plan_render_text(FILE *f, const struct gw_plan *plan);
/* The SPEC plan object. plan may be NULL (errors only). */
char *gw_plan_render_json(const struct gw_plan *plan, const struct gw_plan_meta *meta, const struct gw_diags *diags,
			  const struct gw_error *fatal);

/* Markdown for a pull-request comment: title (a line of markdown, the
 * caller's), then per node a summary line, a table of its actions and the
 * field changes in a collapsible <details>; env values whose key looks
 * secret (PASSWORD, TOKEN, KEY, ...) are masked; then the problems. */
struct gw_plan_node {
	const char *node;
	const struct gw_plan *plan;
};
void gw_plan_render_markdown(FILE *f, const char *title, const struct gw_plan_node *nodes, size_t n,
			     const struct gw_diags *diags, const struct gw_error *fatal);

#endif
