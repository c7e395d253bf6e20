/* `gitward diff`: the desired state of two commits compared per node, for
 * review in CI. Writes nothing but a private fetch beside the Git cache,
 * calls no backend. Exit 0 when the commits declare the same, 2 when they
 * differ, 1 on any error. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "gitward/pass.h"
#include "gitward/review.h"

static const char diff_usage[] =
	"usage: gitward diff --base REF [--head REF] [--output text|json|markdown|github] [OPTIONS]\n"
	"\n"
	"Compare the desired state of two commits, field by field, per node: what\n"
	"merging head would change on each node. Exit 0 when they declare the same,\n"
	"2 when they differ, 1 on any error.\n"
	"\n"
	"  --base REF                 branch, tag or commit compared against (required; in CI:\n"
	"                             the merge base)\n"
	"  --head REF                 the commit under review (default: the --ref tip)\n"
	"  --nodes FILE               an inventory (YAML: nodes: [{name, labels}]): one plan per\n"
	"                             node (default: --node and --label)\n"
	"  --output FORMAT            text, json, markdown (a pull-request comment) or github\n"
	"                             (workflow annotations)\n" CLI_HELP_SOURCE
	"  --state-dir DIR            where the Git cache is (only read; default /var/lib/gitward as root)\n"
	"  --node NAME                the node's name (default: hostname)\n"
	"  --label K=V                node label for nodeSelector (repeatable)\n"
	"  --no-prune                 resources that left Git are kept, not deleted\n" CLI_HELP_GIT
	"  --config FILE              YAML file with these options (flags win)\n";

enum { OPT_BASE = 1, OPT_HEAD, OPT_NODES, OPT_OUTPUT };

struct opts {
	const char *base, *head, *nodes;
	enum output_format fmt;
};

static int on_extra(int id, const char *arg, void *ud)
{
	struct opts *o = ud;
	if (id == OPT_BASE)
		o->base = arg;
	else if (id == OPT_HEAD)
		o->head = arg;
	else if (id == OPT_NODES)
		o->nodes = arg;
	else
		return cli_parse_output(&o->fmt, arg, "diff", OUTPUTS_ALL) < 0 ? CLI_STOP_USAGE : 0;
	return 0;
}

/* The two commits compared: head is the pass's, base its observer's. */
struct review {
	const struct gw_pass *head;
	const struct gw_observer_commit *base;
};

static void title(char *buf, size_t size, const struct review *rv)
{
	char ref[300];
	gw_escape(ref, sizeof(ref), rv->head->ref);
	/* ref names may hold markdown: only [A-Za-z0-9._/-] are shown */
	for (char *p = ref; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-", *p))
			*p = '_';
	snprintf(buf, size, "Commit <code>%.12s</code> (<code>%s</code>) against <code>%.12s</code>.", rv->head->commit,
		 ref, rv->base->commit);
}

static int report_error(const struct opts *o, const struct review *rv, const struct gw_config *cfg,
			const struct gw_error *err)
{
	const struct gw_diags *d = &rv->head->set.diags;
	if (o->fmt == OUTPUT_JSON) {
		struct gw_plan_meta meta = { .commit = rv->head->commit[0] ? rv->head->commit : NULL,
					     .ref = rv->head->ref ? rv->head->ref : cfg->ref,
					     .node = cfg->node };
		char *s = gw_plan_render_json(NULL, &meta, d, d->n ? NULL : err);
		puts(s);
		free(s);
	} else if (o->fmt == OUTPUT_GITHUB) {
		cli_print_github(stdout, d);
		if (!d->n)
			cli_print_github_error(stdout, err);
	} else if (o->fmt == OUTPUT_MARKDOWN) {
		char t[400] = "The commits could not be compared.";
		if (rv->head->commit[0] && rv->base->commit[0])
			title(t, sizeof(t), rv);
		gw_plan_render_markdown(stdout, t, NULL, 0, d, d->n ? NULL : err);
	}
	cli_print_diags(d);
	cli_print_state_error(err, cfg->state_dir);
	return 1;
}

static char *plan_json(const struct gw_plan *plan, const struct review *rv, const char *node)
{
	struct gw_plan_meta meta = { .commit = rv->head->commit, .ref = rv->head->ref, .node = node };
	return gw_plan_render_json(plan, &meta, &rv->head->set.diags, NULL);
}

static void print_plans(const struct opts *o, const struct review *rv, const struct gw_plan_node *v, size_t n)
{
	if (o->fmt == OUTPUT_MARKDOWN) {
		char t[400];
		title(t, sizeof(t), rv);
		gw_plan_render_markdown(stdout, t, v, n, NULL, NULL);
	} else if (o->fmt == OUTPUT_GITHUB) {
		for (size_t i = 0; i < n; i++)
			cli_print_github_plan(stdout, v[i].node, v[i].plan);
	} else if (o->fmt == OUTPUT_JSON && !o->nodes) {
		char *s = plan_json(v[0].plan, rv, v[0].node);
		json_t *doc = json_loads(s, 0, NULL);
		free(s);
		json_object_set_new(doc, "base", json_string(rv->base->commit));
		s = json_dumps(doc, JSON_COMPACT);
		puts(s);
		free(s);
		json_decref(doc);
	} else if (o->fmt == OUTPUT_JSON) {
		json_t *doc = json_object(), *nodes = json_array();
		json_object_set_new(doc, "commit", json_string(rv->head->commit));
		json_object_set_new(doc, "base", json_string(rv->base->commit));
		json_object_set_new(doc, "ref", gw_json_string(rv->head->ref));
		for (size_t i = 0; i < n; i++) {
			char *s = plan_json(v[i].plan, rv, v[i].node);
			json_array_append_new(nodes, json_loads(s, 0, NULL));
			free(s);
		}
		json_object_set_new(doc, "nodes", nodes);
		json_object_set_new(doc, "errors", json_array());
		char *s = json_dumps(doc, JSON_COMPACT);
		puts(s);
		free(s);
		json_decref(doc);
	} else {
		for (size_t i = 0; i < n; i++) {
			char node[200];
			if (o->nodes)
				printf("%sNode %s:\n", i ? "\n" : "", gw_escape(node, sizeof(node), v[i].node));
			gw_plan_render_text(stdout, v[i].plan);
		}
	}
}

/* One plan per node (the inventory's, or this one alone). */
struct plans {
	struct gw_planned *planned;
	struct gw_plan_node *nodes;
	size_t n, built;
};

/* 0: no change anywhere, 2: some node has changes, < 0: err says why */
static int plans_build(struct plans *p, struct gw_pass *pass, struct gw_observer *base, const struct opts *o,
		       const struct gw_inventory *inv, const struct gw_pass_opts *po, struct gw_error *err)
{
	int rc = 0;
	char *state_error = NULL;
	p->n = o->nodes ? inv->n : 1;
	p->planned = gw_xcalloc(p->n, sizeof(*p->planned));
	p->nodes = gw_xcalloc(p->n, sizeof(*p->nodes));
	for (p->built = 0; p->built < p->n; p->built++) {
		size_t i = p->built;
		const struct gw_strmap *labels = o->nodes ? &inv->v[i].labels : po->labels;
		int r = gw_pass_observe_plan(pass, base, labels, po, &state_error, err);
		free(state_error);
		if (r < 0)
			return r;
		gw_pass_take(&p->planned[i], pass);
		p->nodes[i] = (struct gw_plan_node){ .node = o->nodes ? inv->v[i].name : po->node,
						     .plan = &p->planned[i].plan };
		if (p->planned[i].plan.count[GW_ACTION_NONE] != p->planned[i].plan.n)
			rc = 2;
	}
	return rc;
}

static void plans_free(struct plans *p)
{
	for (size_t i = 0; i < p->built; i++)
		gw_planned_free(&p->planned[i]);
	free(p->planned);
	free(p->nodes);
}

/* --base and --repo are required; --nodes is read before any fetch. */
static int check_args(struct gw_inventory *inv, const struct opts *o, struct gw_config *cfg)
{
	if (!cfg->repo || !o->base) {
		bool no_repo = !cfg->repo;
		return cli_usage_error("diff", "%s is required: %s", no_repo ? "--repo" : "--base",
				       no_repo ? "the Git repository to read (URL or local path)"
					       : "the commit to compare with (e.g. the merge base)");
	}
	if (o->nodes) {
		struct gw_diags d;
		gw_diags_init(&d);
		int rc = gw_inventory_load(inv, o->nodes, &d);
		cli_print_diags(&d);
		gw_diags_free(&d);
		if (rc < 0)
			return 1;
	}
	return 0;
}

int cmd_diff(int argc, char **argv)
{
	static const struct cli_extra extra[] = { { "base", 1, OPT_BASE },
						  { "head", 1, OPT_HEAD },
						  { "nodes", 1, OPT_NODES },
						  { "output", 1, OPT_OUTPUT },
						  { 0 } };
	struct opts o = { 0 };
	struct gw_config cfg;
	struct gw_pass_opts po;
	struct gw_pass pass;
	struct gw_observer_commit base;
	struct gw_inventory inv = { 0 };
	struct gw_error err = { 0 };
	struct plans p = { 0 };
	struct review rv = { &pass, &base };
	enum gw_pass_stage stage;
	int rc;

	gw_config_init(&cfg);
	rc = cli_parse_common(&cfg, argc, argv, extra, on_extra, &o, diff_usage);
	if (rc < 0) {
		gw_config_free(&cfg);
		return -rc - 1;
	}
	cli_install_logging(&cfg);
	gw_pass_init(&pass);
	gw_observer_commit_init(&base, o.base);
	if ((rc = check_args(&inv, &o, &cfg)) != 0)
		goto out;
	cli_pass_opts(&po, &cfg);
	if (o.head)
		po.ref = o.head;
	/* only reads: the cache is borrowed, another repository's state dir refused */
	pass.read_only = true;
	rc = gw_state_dir_check_existing(cfg.state_dir, &err);
	if (rc == 0)
		rc = gw_pass_check_repo(&po, false, &err);
	if (rc == 0)
		rc = gw_pass_read(&pass, &stage, &po, &base.base, &err);
	cli_warn_empty(&pass.set);
	if (rc < 0) {
		rc = report_error(&o, &rv, &cfg, &err);
		goto out;
	}
	if (base.set.diags.n)
		fprintf(stderr,
			"gitward: warning: the base commit %.12s has %zu problem%s; its valid resources are "
			"compared\n",
			base.commit, base.set.diags.n, base.set.diags.n == 1 ? "" : "s");
	rc = plans_build(&p, &pass, &base.base, &o, &inv, &po, &err);
	if (rc >= 0)
		print_plans(&o, &rv, p.nodes, p.n);
	else
		rc = report_error(&o, &rv, &cfg, &err);
out:
	plans_free(&p);
	gw_inventory_free(&inv);
	gw_observer_free(&base.base);
	gw_pass_free(&pass);
	gw_config_free(&cfg);
	return rc;
}
