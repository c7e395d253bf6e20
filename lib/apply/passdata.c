/* The data of one pass (struct gw_pass): what the pass layer fills stage by
 * stage and apply executes. Only its making and freeing live here. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "gitward/apply.h"

void gw_pass_init(struct gw_pass *pass)
{
	memset(pass, 0, sizeof(*pass));
	gw_manifest_set_init(&pass->set);
	gw_state_file_init(&pass->state);
}

void gw_pass_free(struct gw_pass *pass)
{
	free(pass->ref);
	free(pass->note);
	free(pass->revert_reason);
	free(pass->selected);
	gw_plan_free(&pass->plan);
	gw_manifest_set_free(&pass->set);
	gw_state_file_free(&pass->state);
	for (size_t i = 0; i < pass->nobserved; i++)
		gw_observed_clear(&pass->observed[i]);
	free(pass->observed);
	memset(pass, 0, sizeof(*pass));
}
