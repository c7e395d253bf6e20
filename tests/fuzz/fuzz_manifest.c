/* Fuzz target for the manifest parser and validator: any bytes, as one file,
 * must give resources or diagnostics, never a crash, leak or hang. Each
 * resource then gets the values of a node (${node.name},
 * ${node.labels.KEY}): put in and checked again, or failed on that node. */
#include <stddef.h>
#include <stdint.h>

#include "gitward/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_manifest_set set;
	struct gw_strmap labels = { 0 };
	gw_strmap_set(&labels, "node", "n1");
	gw_strmap_set(&labels, "role", "edge");
	gw_strmap_set(&labels, "port", "8080");
	gw_strmap_set(&labels, "loop", "${node.labels.loop}");
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "fuzz.yaml", (const char *)data, size);
	gw_manifest_set_finish(&set);
	for (size_t i = 0; i < set.n; i++) {
		struct gw_resource *v = NULL;
		struct gw_error err;
		int rc = gw_manifest_node_values(&v, set.v[i], &labels, &err);
		/* a copy as declared on failure, with why in err */
		if (rc < 0 && (!v || !err.msg[0]))
			__builtin_trap();
		gw_resource_free(v);
	}
	gw_manifest_set_free(&set);
	gw_strmap_free(&labels);
	return 0;
}
