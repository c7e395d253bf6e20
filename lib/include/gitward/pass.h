/* One pass of the pipeline up to the plan: fetch, resolve, read and validate
 * the manifests of one commit, select this node's, observe, plan. */
#ifndef GITWARD_PASS_H
#define GITWARD_PASS_H

#include <stdbool.h>

#include "gitward/config.h"
#include "gitward/manifest.h"
#include "gitward/plan.h"
#include "gitward/source.h"
#include "gitward/state.h"

struct gw_pass {
	char commit[41];
	char *ref;
	struct gw_manifest_set set; /* every resource of the commit */
	struct gw_resource **selected; /* borrowed from set: this node's */
	size_t nselected;
	struct gw_state_file state; /* as recorded */
	struct gw_observed *observed; /* what runs, from the backends (owned) */
	size_t nobserved;
	struct gw_plan plan;
	int have_plan;
	char *note; /* recorded as last_error when the apply itself succeeds */
	/* recorded as last_attempt_result instead of "success" or
	 * "not_converged" (static): the last good commit stood in for an
	 * invalid or refused one */
	const char *result;
	/* set before gw_pass_prepare: write nothing under the state dir (a
	 * dry-run beside the agent; see gw_source_opts.read_only) */
	bool read_only;
	/* a backend that could not observe (engine unreachable): its resources
	 * fail with this, the others still converge */
	char backend_error[GW_KIND_MAX][300];
	/* set by the caller before gw_pass_prepare */
	bool offline; /* no fetch: resolve the ref in the cache */
	const struct gw_cancel *cancel; /* a stop request ends the fetch */
	/* optional, borrowed: parsed manifests kept across passes (the agent);
	 * NULL: the state dir's cache file is read and written */
	struct gw_manifest_cache *cache;
	/* optional: told after each action of gw_apply_execute (from any of
	 * its threads, one at a time) */
	void (*progress)(size_t done, size_t total, void *ud);
	void *progress_ud;
	/* optional: the restart policy's wall clock in ms (NULL: gw_now_ms);
	 * tests step it instead of sleeping through backoffs */
	int64_t (*now_ms)(void);
};

/* GW_PASS_VERIFY: the commit's signature was refused (--verify-signatures) */
enum gw_pass_stage { GW_PASS_GIT = 1, GW_PASS_MANIFESTS, GW_PASS_STATE, GW_PASS_PLAN, GW_PASS_VERIFY };

void gw_pass_init(struct gw_pass *pass);
void gw_pass_free(struct gw_pass *pass);
/* Fetch, resolve, read, validate and select. On failure *stage says where;
 * manifest problems are in pass->set.diags (return -EINVAL). */
int gw_pass_prepare(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_config *cfg, struct gw_error *err);
/* The state dir belongs to the repository that first used it: refuse
 * cfg->repo when another one is recorded (and a commit or a resource was
 * recorded since: a first --repo that never got that far claims nothing),
 * unless cfg->move_to_repo. With
 * record (the holder of the state lock), the repository is recorded the
 * first time (also in a state dir of an earlier version, which adopts it)
 * and on a move. */
int gw_pass_check_repo(const struct gw_config *cfg, bool record, struct gw_error *err);
/* How a pass reaches the remote, from the options (shared with review.c). */
void gw_pass__source_opts(struct gw_source_opts *o, const struct gw_config *cfg, bool read_only,
			  const struct gw_cancel *cancel);
/* Plan pass->selected against pass->observed (see gw_apply_observe). */
int gw_pass_plan(struct gw_pass *pass, const struct gw_config *cfg, struct gw_error *err);

#endif
