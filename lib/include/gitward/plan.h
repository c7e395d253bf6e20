/* The planner: (desired, observed) -> ordered actions with field-level
 * changes. Pure: no I/O. Also the renderers of plans for people and scripts. */
#ifndef GITWARD_PLAN_H
#define GITWARD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gitward/manifest.h"
#include "gitward/resource.h"
#include "gitward/util.h"

enum gw_state { GW_STATE_RUNNING, GW_STATE_STOPPED, GW_STATE_FAILED, GW_STATE_PENDING };
enum gw_health { GW_HEALTH_UNKNOWN, GW_HEALTH_HEALTHY, GW_HEALTH_UNHEALTHY };

const char *gw_state_to_string(enum gw_state s);
int gw_state_from_string(enum gw_state *out, const char *s);
const char *gw_health_to_string(enum gw_health h);
int gw_health_from_string(enum gw_health *out, const char *s);

/* What a backend (or the state dir) reports of one managed resource. */
struct gw_observed {
	enum gw_kind kind;
	char *name;
	char spec_hash[65];
	char *canonical; /* may be NULL when only the hash is known */
	struct gw_strlist depends_on;
	enum gw_restart restart;
	enum gw_state state;
	enum gw_health health;
	char detail[160]; /* e.g. "exited with status 1" */
	/* the backend's identity of the workload (pid and start time, container
	 * id...): opaque to the core, serialised by the backend, shown through
	 * its describe op; NULL: nothing was started */
	char *handle;
	int restarts; /* restarts by gitward, for status */
	int64_t started_at; /* unix seconds */
	int64_t since; /* unix seconds: in this state since (state file) */
	/* restart policy bookkeeping, kept in the state file */
	int crash_streak; /* restarts without a healthy run in between */
	int64_t backoff_until_ms; /* wall clock; no restart before */
	int health_failures; /* consecutive failed probes */
	/* the last pass left it short of desired: its action failed or waits
	 * (e.g. a failed update leaves the old spec running) */
	bool not_converged;
};

void gw_observed_clear(struct gw_observed *o);
/* o = a freshly started workload of r (running, identity left to the backend). */
void gw_observed_start(struct gw_observed *o, const struct gw_resource *r);
/* As desired: the last pass left nothing failed or waiting on it, and it runs
 * (not unhealthy) or finished under a policy that lets it stay stopped. */
bool gw_observed_converged(const struct gw_observed *o);

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
