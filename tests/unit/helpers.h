/* Shared by the unit tests: build a resource from YAML text. */
#ifndef GW_TEST_HELPERS_H
#define GW_TEST_HELPERS_H

#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"

/* Parse exactly one valid resource (NULL on any problem). Cross-resource
 * checks (dependsOn targets) are not run. */
static inline struct gw_resource *parse_one(const char *yaml)
{
	struct gw_manifest_set set;
	struct gw_resource *r = NULL;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "t.yaml", yaml, strlen(yaml));
	if (set.diags.n == 0 && set.n == 1) {
		r = set.v[0];
		set.n = 0;
	}
	gw_manifest_set_free(&set);
	return r;
}

#endif
