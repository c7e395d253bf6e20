/* `gitward status`: what the node runs, as last recorded. Only reads; never
 * takes the lock, never waits. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "gitward/backend.h"
#include "gitward/control.h"
#include "gitward/history.h"
#include "gitward/pin.h"
#include "gitward/paths.h"
#include "gitward/state.h"

static const char status_usage[] = "usage: gitward status [--output text|json] [--state-dir DIR]\n"
				   "\n"
				   "Print the last applied commit and the state of every managed resource as\n"
				   "recorded in the state dir: the last success and, apart, the last attempt\n"
				   "with its result. Exit 1 when the state dir does not exist or cannot be read.\n";

int cmd_status(int argc, char **argv)
{
	enum output_format fmt;
	struct gw_state_file st;
	struct gw_error err;
	char *dir = NULL, path[4096];

	int code = cli_parse_state_reader(&fmt, &dir, argc, argv, "status", status_usage);
	if (code >= 0)
		return code;
	gw_path_state_file(path, sizeof(path), dir);
	if (gw_state_dir_readable(dir, &err) < 0 || gw_state_load(&st, path, &err) < 0) {
		cli_print_state_error(&err, dir);
		free(dir);
		return 1;
	}
	gw_control_overlay(&st, dir); /* suspend/resume take effect at once */
	gw_pin_overlay(&st, dir); /* so does rollback */
	struct gw_history_entry *hist;
	size_t nhist;
	if (gw_history_load(&hist, &nhist, dir, &err) < 0)
		cli_print_error("warning: ", &err); /* a corrupt history is said, never used */
	else
		free(hist);
	/* the backends show each workload's identity ("pid", "id") */
	struct gw_backend_config bc = { .state_dir = dir };
	struct gw_backend_set backends;
	gw_backend_set_open(&backends, NULL, &bc, &err);
	struct gw_state_describer d = { gw_backend_set_describe, &backends };
	free(dir);
	if (fmt == OUTPUT_JSON) {
		char *s = gw_state_render_status(&st, &d);
		puts(s);
		free(s);
	} else {
		gw_state_render_status_text(stdout, &st, &d);
	}
	gw_backend_set_close(&backends);
	gw_state_file_free(&st);
	return 0;
}
