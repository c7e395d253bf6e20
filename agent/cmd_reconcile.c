/* `gitward reconcile`: one pass, then exit. With --dry-run the plan is
 * printed and nothing is applied: exit 0 when the node matches the commit,
 * 2 when changes are pending, 1 on any error. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "gitward/pass.h"
#include "gitward/prof.h"
#include "gitward/review.h"

static const char reconcile_usage[] =
	"usage: gitward reconcile [--dry-run] [--output text|json] [OPTIONS]\n"
	"\n"
	"One pass: fetch --ref, parse and validate the manifests of that commit, observe\n"
	"what runs on this node, plan the difference.\n"
	"\n"
	"  --dry-run                  print the plan, apply nothing (exit 0 in sync, 2 changes pending)\n"
	"                             without it: apply, exit 0 only when converged and healthy\n"
	"  --output FORMAT            plan format: text, json; with --dry-run also markdown (a\n"
	"                             pull-request comment) and github (workflow annotations)\n"
	"  --against FILE|URL         (--dry-run) plan against a node's recorded state: the JSON of\n"
	"                             `gitward status --output json` or an agent's GET /status,\n"
	"                             for its node and labels (--node, --label override them)\n" CLI_HELP_SOURCE
		CLI_HELP_DIRS CLI_HELP_REST;

enum { OPT_DRY_RUN = 1, OPT_OUTPUT, OPT_AGAINST };

#define PROGRESS_MIN 3 /* a progress line past this many resources */

struct observers {
	struct gw_observer_live live;
	struct gw_observer_status status;
	char self[4096]; /* the binary's path, for the live backends */
	struct gw_error err; /* what recording a refusal said */
};

struct opts {
	int dry_run;
	enum output_format fmt;
	char *against; /* a copy: argv's URL is starred out after parsing */
};

static int on_extra(int id, const char *arg, void *ud)
{
	struct opts *o = ud;
	if (id == OPT_DRY_RUN) {
		o->dry_run = 1;
		return 0;
	}
	if (id == OPT_AGAINST) {
		free(o->against);
		o->against = gw_xstrdup(arg);
		return 0;
	}
	return cli_parse_output(&o->fmt, arg, "reconcile", OUTPUTS_ALL) < 0 ? CLI_STOP_USAGE : 0;
}

static void title(char *buf, size_t size, const char *commit, const char *node, const char *against)
{
	char esc[300];
	/* names from outside may hold markdown: only [A-Za-z0-9._-] are shown */
	snprintf(esc, sizeof(esc), "%s", node);
	for (char *p = esc; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
			*p = '_';
	snprintf(buf, size, "Commit <code>%.12s</code> against %s of node <code>%s</code>.", commit,
		 against ? "the recorded status" : "what runs", esc);
}

static int fail(const struct opts *o, struct gw_pass *pass, const struct gw_config *cfg, const struct gw_error *err)
{
	int manifests = pass->set.diags.n > 0;
	if (o->fmt == OUTPUT_GITHUB) {
		cli_print_github(stdout, &pass->set.diags);
		if (!manifests)
			cli_print_github_error(stdout, err);
	} else if (o->fmt == OUTPUT_MARKDOWN) {
		char t[400] = "The commit could not be planned.";
		if (pass->commit[0])
			title(t, sizeof(t), pass->commit, cfg->node, o->against);
		gw_plan_render_markdown(stdout, t, NULL, 0, &pass->set.diags, manifests ? NULL : err);
	}
	if (o->fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = pass->commit[0] ? pass->commit : NULL,
					     .ref = pass->ref ? pass->ref : cfg->ref,
					     .node = cfg->node };
		char *s = gw_plan_render_json(NULL, &meta, &pass->set.diags, manifests ? NULL : err);
		puts(s);
		free(s);
	}
	cli_print_diags(&pass->set.diags);
	cli_print_state_error(err, cfg->state_dir);
	return 1;
}

static void print_dry_run(const struct opts *o, const struct gw_pass *pass, const struct gw_config *cfg)
{
	if (o->fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = pass->commit, .ref = pass->ref, .node = cfg->node };
		char *s = gw_plan_render_json(&pass->plan, &meta, &pass->set.diags, NULL);
		puts(s);
		free(s);
	} else if (o->fmt == OUTPUT_MARKDOWN) {
		char t[400];
		struct gw_plan_node nd = { .node = cfg->node, .plan = &pass->plan };
		title(t, sizeof(t), pass->commit, cfg->node, o->against);
		gw_plan_render_markdown(stdout, t, &nd, 1, NULL, NULL);
	} else if (o->fmt == OUTPUT_GITHUB) {
		cli_print_github_plan(stdout, cfg->node, &pass->plan);
	} else {
		gw_plan_render_text(stdout, &pass->plan);
	}
}

/* --dry-run --against: the observer is a node's recorded status (no state
 * dir of this host, no backend), and the node and its labels are the
 * status's unless --node or --label say otherwise; the label "node" stays
 * the node's name. */
static int against_observer(struct gw_observer_status *obs, const struct opts *o, struct gw_config *cfg,
			    struct gw_error *err)
{
	const struct gw_review_node *nd = &obs->node;
	char *text = NULL;
	size_t len;
	int rc = gw_review_status_read(&text, &len, o->against, err);
	if (rc == 0)
		rc = gw_observer_status_init(obs, text, len, o->against, err);
	if (rc < 0)
		return rc;
	if (nd->node && !gw_config_given(cfg, "node")) {
		free(cfg->node);
		cfg->node = gw_xstrdup(nd->node);
	}
	if (nd->has_labels && !gw_config_given(cfg, "label")) {
		gw_strmap_free(&cfg->labels);
		for (size_t i = 0; i < nd->labels.n; i++)
			gw_strmap_set(&cfg->labels, nd->labels.k[i], nd->labels.v[i]);
	} else if (!nd->has_labels && !gw_config_given(cfg, "label")) {
		gw_log(GW_LOG_WARN, "",
		       "%s names no labels (an agent of an earlier version): the plan selects by --label, none given",
		       o->against);
	}
	gw_strmap_set(&cfg->labels, "node", cfg->node);
	return 0;
}

/* Options, logging, the required --repo and the --dry-run-only options.
 * Returns true to stop with *code (cfg freed), as after --help. */
static bool parse_options(int *code, struct opts *o, struct gw_config *cfg, int argc, char **argv)
{
	static const struct cli_extra extra[] = {
		{ "dry-run", 0, OPT_DRY_RUN }, { "output", 1, OPT_OUTPUT }, { "against", 1, OPT_AGAINST }, { 0 }
	};
	int rc = cli_parse_common(cfg, argc, argv, extra, on_extra, o, reconcile_usage);
	if (rc < 0) {
		gw_config_free(cfg);
		*code = -rc - 1;
		return true;
	}
	cli_install_logging(cfg);
	if (!cfg->repo) {
		gw_config_free(cfg);
		*code = cli_usage_error("reconcile",
					"--repo is required: the Git repository to read (URL or local path)");
		return true;
	}
	if (!o->dry_run && (o->against || o->fmt == OUTPUT_MARKDOWN || o->fmt == OUTPUT_GITHUB)) {
		bool against = o->against != NULL;
		gw_config_free(cfg);
		*code = cli_usage_error("reconcile", "%s needs --dry-run",
					against ? "--against" : "--output markdown|github");
		return true;
	}
	return false;
}

/* a dry-run only reads: no lock, nothing created, beside an agent;
 * another repository's state dir is refused before anything is touched */
static int lock_state(struct gw_lock *lock, const struct opts *o, const struct gw_config *cfg,
		      const struct gw_pass_opts *po, struct gw_error *err)
{
	int rc;
	GW_PROF_BEGIN(lock);
	if (o->dry_run)
		rc = gw_state_dir_check_existing(cfg->state_dir, err);
	else if ((rc = gw_pass_check_repo(po, false, err)) == 0 && (rc = gw_mkdir_p(cfg->state_dir, 0700, err)) == 0)
		rc = gw_state_lock(lock, cfg->state_dir, cfg->run_dir, cfg->log_dir, err);
	if (rc == 0)
		rc = gw_pass_check_repo(po, !o->dry_run, err);
	GW_PROF_END(lock, "state dir, lock");
	return rc;
}

/* The one pass up to its plan, through obs. A failure outside --dry-run
 * is recorded in the state dir. */
static int plan_commit(struct gw_pass *pass, char **state_error, const struct opts *o, const struct gw_pass_opts *po,
		       struct gw_observer *obs, struct gw_backend_set *backends, struct gw_error *err)
{
	enum gw_pass_stage stage;
	pass->read_only = o->dry_run;
	int rc = gw_pass_plan_commit(pass, &stage, po, obs, state_error, err);
	if (rc < 0 && !o->dry_run)
		gw_pass_record_failure(po, backends, stage, pass, err);
	return rc;
}

/* --dry-run: the plan printed; the exit code says whether it is empty */
static int output_dry_run(const struct opts *o, const struct gw_pass *pass, const struct gw_config *cfg,
			  const char *state_error)
{
	int rc;
	GW_PROF_BEGIN(output);
	print_dry_run(o, pass, cfg);
	fflush(stdout);
	GW_PROF_END(output, "output");
	rc = state_error ? 1 : pass->plan.count[GW_ACTION_NONE] == pass->plan.n ? 0 : 2;
	for (int k = 0; k < GW_KIND_MAX; k++)
		if (pass->backend_error[k][0]) {
			char esc[1024];
			fprintf(stderr, "gitward: error: %s resources: %s\n", gw_kind_to_string((enum gw_kind)k),
				gw_escape(esc, sizeof(esc), pass->backend_error[k]));
			rc = 1;
		}
	return rc;
}

/* The plan printed (text), then applied */
static int execute(struct gw_apply_report *rep, struct gw_pass *pass, const struct opts *o, const struct gw_config *cfg,
		   const struct gw_pass_opts *po, struct gw_backend_set *backends, struct gw_error *err)
{
	if (o->fmt == OUTPUT_TEXT)
		gw_plan_render_text(stdout, &pass->plan);
	fflush(stdout);
	/* progress for a person at a terminal: never in pipes, logs or JSON */
	if (pass->plan.n > PROGRESS_MIN && o->fmt == OUTPUT_TEXT && isatty(STDERR_FILENO) &&
	    !(cfg->log_format && !strcmp(cfg->log_format, "json")) && !getenv("JOURNAL_STREAM"))
		pass->progress = cli_progress;
	return gw_pass_execute(rep, pass, po, backends, err);
}

/* What applying did: the plan object plus a result (JSON), or one line */
static int output_applied(const struct opts *o, const struct gw_pass *pass, const struct gw_config *cfg,
			  const struct gw_apply_report *rep)
{
	if (o->fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = pass->commit, .ref = pass->ref, .node = cfg->node };
		char *s = gw_plan_render_json(&pass->plan, &meta, &pass->set.diags, NULL);
		/* the plan object, plus what applying it did */
		json_t *doc = json_loads(s, 0, NULL);
		free(s);
		json_object_set_new(doc, "result",
				    json_pack("{s:b, s:I, s:I, s:I, s:I}", "converged", rep->converged, "ok",
					      (json_int_t)rep->ok, "failed", (json_int_t)rep->failed, "waiting",
					      (json_int_t)rep->waiting, "held", (json_int_t)rep->held));
		s = json_dumps(doc, JSON_COMPACT);
		puts(s);
		free(s);
		json_decref(doc);
	} else {
		char empty[1024], esc[4096];
		char held[128] = "", until[64] = "unknown";
		if (rep->held && pass->held_until_ms > 0)
			gw_time_format_utc(until, sizeof(until), pass->held_until_ms / 1000);
		if (rep->held)
			snprintf(held, sizeof(held), ", %zu held (%s) until %s", rep->held, pass->held, until);
		printf("Applied: %zu ok, %zu failed, %zu waiting%s. %s", rep->ok, rep->failed, rep->waiting, held,
		       rep->converged ? "Converged" : "Not converged");
		/* not a quiet success on nothing: the commit declares nothing there */
		if (gw_manifest_set_empty_warning(empty, sizeof(empty), &pass->set))
			printf(", but %s", gw_escape(esc, sizeof(esc), empty));
		puts(".");
	}
	return rep->converged ? 0 : 1;
}

/* --auto-revert: what the commit changed does not run healthy yet; watched
 * until it does or the deadline reverts it (exit 1) */
static int until_healthy(const struct opts *o, const struct gw_pass_opts *po, struct gw_backend_set *backends,
			 int64_t revert_at)
{
	struct gw_run_summary sum;
	char ts[64], esc[GW_ERROR_MSG_MAX + 400];
	gw_time_format_utc(ts, sizeof(ts), revert_at);
	gw_log(GW_LOG_WARN, "", "not running healthy yet; the commit is reverted at %s unless it is (--auto-revert)",
	       ts);
	gw_backend_set_pass_end(backends);
	int reverted = gw_pass_until_healthy(&sum, po, backends, NULL, revert_at);
	gw_backend_set_pass_begin(backends);
	if (o->fmt != OUTPUT_JSON) {
		if (reverted)
			printf("Reverted: %s\n", gw_escape(esc, sizeof(esc), sum.message));
		else
			printf("After healing: %zu ok, %zu failed, %zu waiting. %s.\n", sum.report.ok,
			       sum.report.failed, sum.report.waiting,
			       sum.result == GW_RUN_CONVERGED ? "Converged" : "Not converged");
	} else if (reverted) {
		fprintf(stderr, "gitward: error: %s\n", gw_escape(esc, sizeof(esc), sum.message));
	}
	return !reverted && sum.result == GW_RUN_CONVERGED ? 0 : 1;
}

static void cleanup(struct gw_pass *pass, struct gw_backend_set *backends, struct gw_lock *lock)
{
	gw_state_unlock(lock);
	GW_PROF_BEGIN(free);
	if (gw_free_at_exit())
		gw_pass_free(pass);
	if (backends->v)
		gw_backend_set_pass_end(backends);
	gw_backend_set_close(backends);
	GW_PROF_END(free, "free");
}

/* The observer: the backends and the state file, or --against's status */
static int observer_open(struct gw_observer **out, struct observers *u, const struct opts *o, struct gw_config *cfg,
			 struct gw_backend_set *backends, struct gw_error *err)
{
	if (o->against) {
		int rc = against_observer(&u->status, o, cfg, err);
		if (rc == 0)
			*out = &u->status.base;
		return rc;
	}
	cli_backends_open(backends, cfg, u->self, sizeof(u->self));
	gw_backend_set_pass_begin(backends);
	gw_observer_live_init(&u->live, backends, cfg->state_dir);
	*out = &u->live.base;
	return 0;
}

int cmd_reconcile(int argc, char **argv)
{
	struct opts o = { 0 };
	struct gw_config cfg;
	struct gw_pass_opts po;
	struct gw_pass pass;
	struct gw_error err = { 0 };
	struct gw_backend_set backends = { 0 };
	struct gw_apply_report rep;
	struct gw_observer *obs = NULL;
	struct observers u;
	char *state_error = NULL;
	struct gw_lock lock;
	int rc;

	gw_lock_init(&lock);
	gw_config_init(&cfg);
	gw_pass_init(&pass);
	if (parse_options(&rc, &o, &cfg, argc, argv)) {
		free(o.against);
		return rc;
	}
	if (observer_open(&obs, &u, &o, &cfg, &backends, &err) < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	cli_pass_opts(&po, &cfg); /* after --against named the node */
	if (o.against) { /* a rewind is the node's: its commit in force, not this state dir's */
		pass.in_force = u.status.node.ref && u.status.node.commit ? u.status.node.commit : "";
		pass.in_force_ref = u.status.node.ref;
	}
	po.follow_pin = !o.against; /* gitward rollback: this node's pin */
	if (!o.against && lock_state(&lock, &o, &cfg, &po, &err) < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	rc = plan_commit(&pass, &state_error, &o, &po, obs, &backends, &err);
	cli_warn_empty(&pass.set);
	if (rc < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	if (o.dry_run) {
		rc = output_dry_run(&o, &pass, &cfg, state_error);
		goto out;
	}
	if (gw_pass_refused_reverted(&pass, err.msg, sizeof(err.msg))) {
		gw_apply_record_error(cfg.node, &cfg.labels, cfg.state_dir, &backends, &pass.remote, GW_RUN_REVERTED,
				      err.msg, &u.err);
		err.code = -ECANCELED;
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	if (execute(&rep, &pass, &o, &cfg, &po, &backends, &err) < 0) {
		rc = fail(&o, &pass, &cfg, &err);
		goto out;
	}
	rc = output_applied(&o, &pass, &cfg, &rep);
	if (rep.revert_at && po.auto_revert_ms)
		rc = until_healthy(&o, &po, &backends, rep.revert_at);
out:
	free(state_error);
	gw_observer_free(obs);
	cleanup(&pass, &backends, &lock);
	gw_config_free(&cfg);
	free(o.against);
	return rc;
}
