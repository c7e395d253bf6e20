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
	for (size_t i = 0; i < pass->nvalued; i++) {
		gw_resource_free(pass->valued[i]);
		free(pass->valued_error[i]);
	}
	free(pass->valued);
	free(pass->valued_error);
	gw_plan_free(&pass->plan);
	gw_manifest_set_free(&pass->set);
	gw_state_file_free(&pass->state);
	for (size_t i = 0; i < pass->nobserved; i++)
		gw_observed_clear(&pass->observed[i]);
	free(pass->observed);
	memset(pass, 0, sizeof(*pass));
}

const char *gw_pass_value_error(const struct gw_pass *pass, const struct gw_resource *r)
{
	for (size_t i = 0; i < pass->nvalued; i++)
		if (pass->valued[i] == r)
			return pass->valued_error[i];
	return NULL;
}
