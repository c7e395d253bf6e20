/* Fuzz target for the state file reader: any bytes as state.json must load
 * or be refused as corrupt, and what loads must render as status (text and
 * JSON) and serialise again, never crash, leak or hang. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gitward/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_state_file st;
	struct gw_error err;
	char *s, *mem = NULL;
	size_t memlen = 0;
	FILE *f;

	if (gw_state_parse(&st, (const char *)data, size, "state.json", &err) < 0)
		return 0;
	s = gw_state_render_status(&st);
	if (!s)
		abort(); /* a status document is always produced */
	free(s);
	f = open_memstream(&mem, &memlen);
	if (f) {
		gw_state_render_status_text(f, &st);
		fclose(f);
		free(mem);
	}
	gw_state_file_free(&st);
	return 0;
}
