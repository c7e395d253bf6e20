/* The observers of a pass: what runs, seen three ways. Live (the backends
 * and the state file: the agent and `reconcile`), a node's status document
 * (`reconcile --dry-run --against`) and a base commit (`diff`). The pass
 * is the same; only this side of the plan differs. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/control.h"
#include "gitward/pass.h"
#include "gitward/review.h"

void gw_observer_free(struct gw_observer *obs)
{
	if (obs && obs->free)
		obs->free(obs);
}

/* ---- live ---- */

static int live_observe(struct gw_observer *self, struct gw_pass *pass, const struct gw_strmap *labels,
			char **state_error, struct gw_error *err)
{
	struct gw_observer_live *o = (struct gw_observer_live *)self;
	struct gw_restart_req *req = NULL;
	struct gw_error cerr;
	size_t n = 0;
	(void)labels; /* what runs here, whatever the labels */
	int rc = gw_apply_observe(pass, o->state_dir, o->set, state_error, err);
	if (rc < 0)
		return rc;
	/* `gitward restart`: marked for the planner, which replaces it */
	if (gw_control_restart_list(&req, &n, o->state_dir, &cerr) < 0)
		gw_log(GW_LOG_WARN, "", "restart requests not read: %s", cerr.msg);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < pass->nobserved; k++)
			if (pass->observed[k].kind == req[i].kind && !strcmp(pass->observed[k].name, req[i].name))
				pass->observed[k].restart_requested = true;
	free(req);
	return 0;
}

void gw_observer_live_init(struct gw_observer_live *o, const struct gw_backend_set *set, const char *state_dir)
{
	*o = (struct gw_observer_live){ .base = { .observe = live_observe }, .set = set, .state_dir = state_dir };
}

/* ---- a node's status document ---- */

/* The recorded commit, when the repository has it: its specs give the
 * field-level changes. One force-pushed away is no error: the plan then
 * compares by spec hash only. */
static int status_read(struct gw_observer *self, struct gw_source *src, const struct gw_pass_opts *opts,
		       struct gw_error *err)
{
	struct gw_observer_status *o = (struct gw_observer_status *)self;
	struct gw_error ignored;
	char commit[41], *used = NULL;
	(void)err;

	if (!o->node.commit || gw_source_resolve(commit, &used, src, o->node.commit, &ignored) < 0)
		return 0;
	free(used);
	o->recorded.exclude = opts->excludes;
	o->recorded.node_labels = opts->labels;
	if (gw_source_read_manifests(&o->recorded, src, commit, opts->paths, opts->npaths, &ignored) == 0)
		gw_manifest_set_finish(&o->recorded);
	return 0;
}

static int status_observe(struct gw_observer *self, struct gw_pass *pass, const struct gw_strmap *labels,
			  char **state_error, struct gw_error *err)
{
	struct gw_observer_status *o = (struct gw_observer_status *)self;
	struct gw_observed *v;
	size_t n;
	(void)labels;
	(void)state_error;

	int rc = gw_review_observed_from_status(&v, &n, NULL, o->text, o->len, o->origin, err);
	if (rc < 0)
		return rc;
	/* the specs of the recorded commit, where the hashes agree */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; !v[i].canonical && j < o->recorded.n; j++) {
			const struct gw_resource *r = o->recorded.v[j];
			if (r->kind == v[i].kind && !strcmp(r->name, v[i].name) &&
			    !strcmp(r->spec_hash, v[i].spec_hash))
				v[i].canonical = gw_xstrdup(r->canonical);
		}
	pass->observed = v; /* now owned by the pass */
	pass->nobserved = n;
	return 0;
}

static void status_free(struct gw_observer *self)
{
	struct gw_observer_status *o = (struct gw_observer_status *)self;
	free(o->text);
	free(o->origin);
	gw_review_node_free(&o->node);
	gw_manifest_set_free(&o->recorded);
	memset(o, 0, sizeof(*o));
}

int gw_observer_status_init(struct gw_observer_status *o, char *text, size_t len, const char *origin,
			    struct gw_error *err)
{
	struct gw_observed *v;
	size_t n;

	*o = (struct gw_observer_status){
		.base = { .read = status_read, .observe = status_observe, .free = status_free },
		.text = text,
		.len = len,
		.origin = gw_xstrdup(origin),
	};
	gw_manifest_set_init(&o->recorded);
	/* read once now: a document that is not a status fails before a fetch */
	int rc = gw_review_observed_from_status(&v, &n, &o->node, text, len, origin, err);
	if (rc < 0) {
		status_free(&o->base);
		return rc;
	}
	gw_review_observed_free(v, n);
	return 0;
}

/* ---- a base commit ---- */

static int commit_read(struct gw_observer *self, struct gw_source *src, const struct gw_pass_opts *opts,
		       struct gw_error *err)
{
	struct gw_observer_commit *o = (struct gw_observer_commit *)self;
	char *used = NULL;
	int rc = gw_source_resolve(o->commit, &used, src, o->ref, err);
	free(used);
	if (rc < 0)
		return gw_error_prefix(err, "--base");
	o->set.exclude = opts->excludes;
	o->set.node_labels = opts->labels;
	rc = gw_source_read_manifests(&o->set, src, o->commit, opts->paths, opts->npaths, err);
	if (rc == 0)
		gw_manifest_set_finish(&o->set);
	return rc;
}

/* Base's selection for the node, as running: a commit, not a workload,
 * so nothing time-dependent. */
static int commit_observe(struct gw_observer *self, struct gw_pass *pass, const struct gw_strmap *labels,
			  char **state_error, struct gw_error *err)
{
	struct gw_observer_commit *o = (struct gw_observer_commit *)self;
	struct gw_observed *v = gw_xcalloc(o->set.n + 1, sizeof(*v));
	size_t n = 0;
	(void)state_error;
	(void)err;

	for (size_t i = 0; i < o->set.n; i++)
		if (gw_plan_selects(o->set.v[i], labels)) {
			/* with the node's values, as the head's; one the node
			 * lacks: as declared */
			struct gw_resource *valued;
			struct gw_error verr;
			int rc = gw_manifest_node_values(&valued, o->set.v[i], labels, &verr);
			gw_observed_start(&v[n], rc == 0 && valued ? valued : o->set.v[i]);
			gw_resource_free(valued);
			v[n++].started_at = 0;
		}
	pass->observed = v; /* now owned by the pass */
	pass->nobserved = n;
	return 0;
}

static void commit_free(struct gw_observer *self)
{
	struct gw_observer_commit *o = (struct gw_observer_commit *)self;
	gw_manifest_set_free(&o->set);
}

void gw_observer_commit_init(struct gw_observer_commit *o, const char *ref)
{
	*o = (struct gw_observer_commit){
		.base = { .read = commit_read, .observe = commit_observe, .free = commit_free, .review = true },
		.ref = ref,
	};
	gw_manifest_set_init(&o->set);
}
