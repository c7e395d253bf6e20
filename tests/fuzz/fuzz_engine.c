/* Fuzz target for reading Engine API replies: any bytes as the body of
 * GET /containers/json or GET /containers/{id}/json. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gitward/container.h"
#include "gitward/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	struct gw_observed *v = NULL, o = { 0 };
	size_t n = 0;

	if (!j)
		return 0;
	if (gw_container_parse_list(&v, &n, j, "/var/lib/gitward") == 0) {
		for (size_t i = 0; i < n; i++)
			gw_observed_clear(&v[i]);
		free(v);
	}
	gw_container_apply_inspect(&o, j);
	(void)gw_engine_message(j);
	json_decref(j);
	return 0;
}
