/* Fuzz target for the workload record reader (the backends' run records and
 * the state file's entries share it): any bytes give a record or -EBADMSG. */
#include <stddef.h>
#include <stdint.h>

#include "gitward/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum gw_kind kinds[] = { GW_KIND_PROCESS, GW_KIND_VM };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct gw_observed o;
		if (gw_record_parse_buf(&o, kinds[i], "fuzz", (const char *)data, size) == 0)
			gw_observed_clear(&o);
	}
	return 0;
}
