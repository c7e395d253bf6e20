/* `gitward down`: a pass whose desired state is empty. No fetch, no commit:
 * what the state dir records is observed, planned for deletion (dependents
 * first, by the recorded dependsOn, as pruning orders it) and removed, and
 * the state file records an empty node with the result "down". */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "gitward/pass.h"

int gw_pass_down(struct gw_apply_report *out, struct gw_pass *pass, const struct gw_pass_opts *opts,
		 struct gw_observer *obs, const struct gw_backend_set *set, char **state_error, struct gw_error *err)
{
	struct gw_pass_opts o = *opts;
	o.prune = true;
	o.allow_empty = true; /* emptying the node is the point */
	int rc = gw_pass_observe_plan(pass, obs, opts->labels, &o, state_error, err);
	if (rc < 0 || pass->plan.n == 0)
		return rc;
	/* the node as recorded, not as this command's defaults name it */
	const char *node = pass->state.node ? pass->state.node : opts->node;
	const struct gw_strmap *labels = pass->state.node ? &pass->state.labels : opts->labels;
	pass->result = "down";
	return gw_apply_execute(out, pass, node, labels, opts->state_dir, set, err);
}
