/* Fuzz target for the manifest parser and validator: any bytes, as one file,
 * must give resources or diagnostics, never a crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>

#include "gitward/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "fuzz.yaml", (const char *)data, size);
	gw_manifest_set_finish(&set);
	gw_manifest_set_free(&set);
	return 0;
}
