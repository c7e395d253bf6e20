/* `gitward reconcile`: one pass, then exit. With --dry-run the plan is
 * printed and nothing is applied: exit 0 when the node matches the commit,
 * 2 when changes are pending, 1 on any error. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "gitward/apply.h"
#include "gitward/pass.h"

static const char reconcile_usage[] =
	"usage: gitward reconcile [--dry-run] [--output text|json] [OPTIONS]\n"
	"\n"
	"One pass: fetch --ref, parse and validate the manifests of that commit, observe\n"
	"what runs on this node, plan the difference.\n"
	"\n"
	"  --dry-run                  print the plan, apply nothing (exit 0 in sync, 2 changes pending)\n"
	"                             without it: apply, exit 0 only when converged and healthy\n"
	"  --output text|json         plan format\n"
	"  --repo URL|PATH            https://, ssh://, user@host:path, file:// or a local path (required)\n"
	"  --ref REF                  branch, tag or full commit id (default: the remote's default branch)\n"
	"  --path DIR                 folder in the repo holding manifests (repeatable; default: root)\n"
	"  --state-dir DIR            state and Git cache (default /var/lib/gitward as root)\n"
	"  --run-dir DIR              lock, run records, QMP sockets (default /run/gitward as root;\n"
	"                             STATE-DIR/run when --state-dir is given)\n"
	"  --log-dir DIR              workload logs (default /var/log/gitward as root;\n"
	"                             STATE-DIR/logs when --state-dir is given)\n"
	"  --node NAME                this node's name (default: hostname)\n"
	"  --label K=V                node label for nodeSelector (repeatable)\n"
	"  --no-prune                 never delete resources that left Git\n"
	"  --allow-empty              let a commit with nothing for this node delete everything\n"
	"  --log-format text|json     logging on stderr\n"
	"  --log-level LEVEL          debug, info, warn, error\n"
	"  --container-socket PATH    Docker Engine API socket\n"
	"  --ca-file FILE             PEM CA bundle for HTTPS remotes (replaces the system store)\n"
	"  --insecure-skip-tls-verify do not check the HTTPS server (warned on every fetch)\n"
	"  --known-hosts FILE         SSH host keys to trust (default ~/.ssh/known_hosts)\n"
	"  --ssh-key FILE             SSH private key (default $GITWARD_SSH_KEY, ssh-agent, ~/.ssh/id_*)\n"
	"  --git-username USER        user name for HTTPS (default: the URL's, $GITWARD_GIT_USERNAME)\n"
	"  --git-password-file FILE   password or token for HTTPS, one line (never printed)\n"
	"  --git-timeout DUR          end a fetch after this long without progress (default 60s)\n"
	"  --git-connect-timeout DUR  end a fetch the server does not answer (default 15s)\n"
	"  --verify-signatures        apply only commits signed by a key of --allowed-signers\n"
	"                             or --gpg-keyring (the commit itself; not its ancestors)\n"
	"  --allowed-signers FILE     SSH keys, in the format of git's gpg.ssh.allowedSignersFile\n"
	"  --gpg-keyring PATH         OpenPGP keys: a GnuPG home directory or a file of public keys\n"
	"  --move-to-repo             use a state dir recorded for another repository with this one\n"
	"                             (what this repository does not declare is deleted)\n"
	"  --config FILE              YAML file with the options above (flags win)\n";

enum { OPT_DRY_RUN = 1, OPT_OUTPUT };

#define PROGRESS_MIN 3 /* a progress line past this many resources */

struct opts {
	int dry_run;
	enum output_format fmt;
};

static int on_extra(int id, const char *arg, void *ud)
{
	struct opts *o = ud;
	if (id == OPT_DRY_RUN) {
		o->dry_run = 1;
		return 0;
	}
	return cli_parse_output(&o->fmt, arg) < 0 ? CLI_STOP_USAGE : 0;
}

static int fail(const struct opts *o, struct gw_pass *pass, const struct gw_config *cfg, const struct gw_error *err)
{
	if (o->fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = pass->commit[0] ? pass->commit : NULL,
					     .ref = pass->ref ? pass->ref : cfg->ref,
					     .node = cfg->node };
		int manifests = pass->set.diags.n > 0;
		char *s = gw_plan_render_json(NULL, &meta, &pass->set.diags, manifests ? NULL : err);
		puts(s);
		free(s);
	}
	cli_print_diags(&pass->set.diags);
	cli_print_error("error: ", err);
	return 1;
}

int cmd_reconcile(int argc, char **argv)
{
	static const struct cli_extra extra[] = { { "dry-run", 0, OPT_DRY_RUN }, { "output", 1, OPT_OUTPUT }, { 0 } };
	struct opts o = { 0 };
	struct gw_config cfg;
	struct gw_pass pass;
	struct gw_error err = { 0 };
	struct gw_backend_ctx ctx;
	enum gw_pass_stage stage;
	char *state_error = NULL, self[4096];
	int lock_fd = -1, rc;

	gw_config_init(&cfg);
	gw_pass_init(&pass);
	rc = cli_parse_common(&cfg, argc, argv, extra, on_extra, &o, reconcile_usage);
	if (rc < 0) {
		gw_config_free(&cfg);
		return -rc - 1;
	}
	cli_install_logging(&cfg);
	if (!cfg.repo) {
		gw_config_free(&cfg);
		return cli_usage_error("reconcile",
				       "--repo is required: the Git repository to read (URL or local path)");
	}
	cli_backend_ctx(&ctx, &cfg, self, sizeof(self));
	/* a dry-run only reads: no lock, nothing created, beside an agent;
	 * another repository's state dir is refused before anything is touched */
	if (o.dry_run)
		rc = gw_state_dir_check_existing(cfg.state_dir, &err);
	else if ((rc = gw_pass_check_repo(&cfg, false, &err)) == 0 && (rc = gw_mkdir_p(cfg.state_dir, 0700, &err)) == 0)
		rc = gw_state_lock(&lock_fd, cfg.state_dir, cfg.run_dir, cfg.log_dir, &err);
	if (rc == 0)
		rc = gw_pass_check_repo(&cfg, !o.dry_run, &err);
	if (rc < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	pass.read_only = o.dry_run;
	rc = gw_pass_prepare(&pass, &stage, &cfg, &err);
	if (rc == 0) {
		stage = GW_PASS_PLAN;
		rc = gw_apply_observe(&pass, &cfg, &ctx, &state_error, &err);
		if (rc == 0)
			rc = gw_pass_plan(&pass, &cfg, &err);
	}
	if (rc < 0) {
		if (!o.dry_run) {
			char buf[GW_ERROR_MSG_MAX + 300];
			struct gw_error rerr;
			gw_apply_record_error(&cfg, gw_run_result_of_stage(stage, &pass),
					      gw_error_format(buf, sizeof(buf), &err), &rerr);
		}
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	if (o.dry_run) {
		if (o.fmt == OUTPUT_JSON) {
			struct gw_plan_meta meta = { .commit = pass.commit, .ref = pass.ref, .node = cfg.node };
			char *s = gw_plan_render_json(&pass.plan, &meta, &pass.set.diags, NULL);
			puts(s);
			free(s);
		} else {
			gw_plan_render_text(stdout, &pass.plan);
		}
		rc = state_error ? 1 : pass.plan.count[GW_ACTION_NONE] == pass.plan.n ? 0 : 2;
		for (int k = 0; k < GW_KIND_MAX; k++)
			if (pass.backend_error[k][0]) {
				char esc[1024];
				fprintf(stderr, "gitward: error: %s resources: %s\n",
					gw_kind_to_string((enum gw_kind)k),
					gw_escape(esc, sizeof(esc), pass.backend_error[k]));
				rc = 1;
			}
		goto out;
	}
	struct gw_apply_report rep;
	if (o.fmt == OUTPUT_TEXT)
		gw_plan_render_text(stdout, &pass.plan);
	fflush(stdout);
	/* progress for a person at a terminal: never in pipes, logs or JSON */
	if (pass.plan.n > PROGRESS_MIN && o.fmt == OUTPUT_TEXT && isatty(STDERR_FILENO) &&
	    !(cfg.log_format && !strcmp(cfg.log_format, "json")) && !getenv("JOURNAL_STREAM"))
		pass.progress = cli_progress;
	rc = gw_apply_execute(&rep, &pass, &cfg, &ctx, &err);
	if (rc < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	if (o.fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = pass.commit, .ref = pass.ref, .node = cfg.node };
		char *s = gw_plan_render_json(&pass.plan, &meta, &pass.set.diags, NULL);
		/* the plan object, plus what applying it did */
		json_t *doc = json_loads(s, 0, NULL);
		free(s);
		json_object_set_new(doc, "result",
				    json_pack("{s:b, s:I, s:I, s:I}", "converged", rep.converged, "ok",
					      (json_int_t)rep.ok, "failed", (json_int_t)rep.failed, "waiting",
					      (json_int_t)rep.waiting));
		s = json_dumps(doc, JSON_COMPACT);
		puts(s);
		free(s);
		json_decref(doc);
	} else {
		printf("Applied: %zu ok, %zu failed, %zu waiting. %s\n", rep.ok, rep.failed, rep.waiting,
		       rep.converged ? "Converged." : "Not converged.");
	}
	rc = rep.converged ? 0 : 1;
out:
	free(state_error);
	if (lock_fd >= 0)
		close(lock_fd);
	gw_pass_free(&pass);
	gw_config_free(&cfg);
	return rc;
}
