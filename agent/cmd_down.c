/* `gitward down`: stop and remove every resource the state dir records,
 * dependents first, under the state dir's lock. Exit 0 when nothing is
 * left, 1 when something could not be removed (named) or the state dir is
 * missing or held by an agent. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "gitward/pass.h"
#include "gitward/paths.h"

static const char down_usage[] =
	"usage: gitward down [--state-dir DIR] [--run-dir DIR] [--log-dir DIR] [OPTIONS]\n"
	"\n"
	"Stop and remove every resource recorded in the state dir (processes, containers,\n"
	"VMs, External resources), dependents first; no fetch, no --repo. Refused while an\n"
	"agent holds the state dir. The state dir stays usable: the next reconcile or agent\n"
	"creates everything again. Exit 0 when nothing is left, 1 when something could not\n"
	"be removed.\n"
	"\n"
	"  --state-dir DIR            state dir (default /var/lib/gitward as root)\n"
	"  --run-dir DIR              lock, run records, QMP sockets (default /run/gitward as root;\n"
	"                             STATE-DIR/run when --state-dir is given)\n"
	"  --log-dir DIR              workload logs (default /var/log/gitward as root;\n"
	"                             STATE-DIR/logs when --state-dir is given)\n"
	"  --container-socket PATH    Docker Engine API socket\n"
	"  --plugin-dir DIR           External resources' plugins (default PREFIX/lib/gitward/plugins)\n"
	"  --log-format text|json     logging on stderr\n"
	"  --log-level LEVEL          debug, info, warn, error\n"
	"  --config FILE              YAML file with the options above (flags win)\n";

/* What the state file still records after the pass: named, counted. */
static size_t report_left(const char *state_dir)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096], key[300], esc[1200];
	size_t n;

	gw_path_state_file(path, sizeof(path), state_dir);
	if (gw_state_load(&st, path, &err) < 0) {
		cli_print_error("error: ", &err);
		return 1;
	}
	for (size_t i = 0; i < st.n; i++) {
		snprintf(key, sizeof(key), "%s/%s", gw_kind_to_string(st.res[i].kind), st.res[i].name);
		fprintf(stderr, "gitward: error: %s could not be removed\n", gw_escape(esc, sizeof(esc), key));
	}
	n = st.n;
	gw_state_file_free(&st);
	return n;
}

int cmd_down(int argc, char **argv)
{
	struct gw_config cfg;
	struct gw_pass_opts po;
	struct gw_pass pass;
	struct gw_error err = { 0 };
	struct gw_backend_set backends = { 0 };
	struct gw_apply_report rep = { 0 };
	struct gw_observer_live live;
	struct gw_lock lock;
	char self[4096], *state_error = NULL;
	int rc;

	gw_lock_init(&lock);
	gw_config_init(&cfg);
	gw_pass_init(&pass);
	rc = cli_parse_common(&cfg, argc, argv, NULL, NULL, NULL, down_usage);
	if (rc < 0) {
		gw_config_free(&cfg);
		return -rc - 1;
	}
	cli_install_logging(&cfg);
	/* a state dir nobody used is no empty node: a wrong --state-dir */
	if (gw_state_dir_readable(cfg.state_dir, &err) < 0 ||
	    gw_state_lock(&lock, cfg.state_dir, cfg.run_dir, cfg.log_dir, &err) < 0) {
		cli_print_state_error(&err, cfg.state_dir);
		gw_config_free(&cfg);
		return 1;
	}
	cli_backends_open(&backends, &cfg, self, sizeof(self));
	gw_backend_set_pass_begin(&backends);
	gw_observer_live_init(&live, &backends, cfg.state_dir);
	cli_pass_opts(&po, &cfg);
	rc = gw_pass_down(&rep, &pass, &po, &live.base, &backends, &state_error, &err);
	if (rc < 0) {
		cli_print_state_error(&err, cfg.state_dir);
		rc = 1;
	} else if (pass.plan.n == 0) {
		puts(state_error ? "Nothing found to remove." : "Nothing to remove.");
		rc = state_error ? 1 : 0;
	} else {
		gw_plan_render_text(stdout, &pass.plan);
		size_t left = report_left(cfg.state_dir);
		printf("Removed %zu of %zu resources.\n", pass.plan.n - (left < pass.plan.n ? left : pass.plan.n),
		       pass.plan.n);
		rc = left ? 1 : 0;
	}
	if (state_error) {
		char esc[4096];
		fprintf(stderr, "gitward: error: %s\n", gw_escape(esc, sizeof(esc), state_error));
	}
	free(state_error);
	gw_state_unlock(&lock);
	gw_pass_free(&pass);
	gw_backend_set_pass_end(&backends);
	gw_backend_set_close(&backends);
	gw_config_free(&cfg);
	return rc;
}
