/* Fuzz target for the state file reader: any bytes as state.json must load
 * or be refused as corrupt, and what loads must render as status (text and
 * JSON, each handle through its backend's describe) and serialise again,
 * never crash, leak or hang. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gitward/backend.h"
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
	/* the backends describe handles read back from the file, whatever they hold */
	struct gw_backend_config bc = { .state_dir = "/nonexistent" };
	struct gw_backend_set set;
	gw_backend_set_open(&set, NULL, &bc, &err);
	struct gw_state_describer d = { gw_backend_set_describe, &set };
	s = gw_state_render_status(&st, &d);
	if (!s)
		abort(); /* a status document is always produced */
	free(s);
	f = open_memstream(&mem, &memlen);
	if (f) {
		gw_state_render_status_text(f, &st, &d);
		fclose(f);
		free(mem);
	}
	gw_backend_set_close(&set);
	gw_state_file_free(&st);
	return 0;
}
