/* The stages of a pass, in order, for every command that reads a commit:
 * source -> read -> select -> observe (through an observer) -> plan ->
 * execute -> record. See gitward/pass.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "gitward/history.h"
#include "gitward/manifest_cache.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/pin.h"
#include "gitward/prof.h"

/* The manifest cache file: one that is missing is made by the next save; one
 * that is refused is said so and rebuilt, never used. */
static void cache_load(struct gw_manifest_cache *c, const char *path)
{
	struct gw_error err;
	if (gw_manifest_cache_loaded(c))
		return;
	int rc = gw_manifest_cache_load(c, path, &err);
	if (rc == -ESTALE)
		gw_log(GW_LOG_INFO, "", "manifest cache: %s; every manifest is parsed", err.msg);
	else if (rc < 0 && rc != -ENOENT)
		gw_log(GW_LOG_WARN, "", "manifest cache ignored: %s; every manifest is parsed", err.msg);
}

/* Written beside the Git objects by the holder of the state lock (a
 * dry-run writes nothing: it reads what the agent or the last reconcile
 * left), where the Git cache already is. A failure costs only time. */
static void cache_save(struct gw_manifest_cache *c, const char *path)
{
	struct gw_error err;
	char dir[4096];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (gw_manifest_cache_save(c, path, &err) < 0)
		gw_log(GW_LOG_DEBUG, "", "manifest cache not written: %s", err.msg);
}

/* The commit in force and the name of its ref: the caller's, or what the
 * state file records (none: nothing is in force yet). */
static void in_force_load(char **commit, char **ref, const struct gw_pass *pass, const struct gw_pass_opts *opts)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096];

	*commit = *ref = NULL;
	if (pass->in_force) { /* "": none */
		*commit = *pass->in_force ? gw_xstrdup(pass->in_force) : NULL;
		*ref = pass->in_force_ref ? gw_xstrdup(pass->in_force_ref) : NULL;
		return;
	}
	gw_path_state_file(path, sizeof(path), opts->state_dir);
	if (gw_state_load(&st, path, &err) < 0)
		return;
	/* now owned by the caller */
	*commit = st.commit;
	*ref = st.ref;
	st.commit = st.ref = NULL;
	gw_state_file_free(&st);
}

/* A branch that moved to a commit which does not descend from the commit
 * in force (a force-push backwards or sideways) is refused. Pins (a tag, a
 * commit id) and a switch to another ref are the operator's choice. This
 * runs before the signature check: a rewound tip is refused whoever signed
 * it (replaying an old signed commit is exactly what a signature cannot
 * catch), no gpg or ssh-keygen runs for it, and the message says the one
 * reason that matters. The check needs the commit in force in the cache:
 * the fetch keeps full history and never prunes objects; a cache made anew
 * without it cannot tell, and refuses. */
static int check_rewind(struct gw_pass *pass, struct gw_source *src, enum gw_pass_stage *stage,
			const struct gw_pass_opts *opts, struct gw_error *err)
{
	char *commit, *ref;
	bool descends = false;
	int rc = 0;

	/* a rollback is the operator's choice: always allowed; so is a move
	 * to another repository (--move-to-repo), whose history the commit in
	 * force is not part of */
	if (opts->allow_rewind || opts->move_to_repo || pass->offline || pass->pinned ||
	    !gw_source_ref_is_branch(src, opts->ref))
		return 0;
	in_force_load(&commit, &ref, pass, opts);
	if (commit && strcmp(commit, pass->commit) && (!ref || !strcmp(ref, pass->ref))) {
		*stage = GW_PASS_REWIND;
		rc = gw_source_descends(&descends, src, pass->commit, commit, err);
		if (rc == -ENOENT)
			rc = gw_error_set(err, -ESTALE,
					  "branch %s moved from %.12s to %.12s, and the commit in force is not in the "
					  "Git cache to tell whether it descends from it: refused; the commit in force "
					  "stays. Pass --allow-rewind to accept it",
					  pass->ref, commit, pass->commit);
		else if (rc == 0 && !descends)
			rc = gw_error_set(err, -ESTALE,
					  "branch %s moved from %.12s to %.12s, which does not descend from it (a "
					  "force-push backwards or sideways): refused; the commit in force stays. Pass "
					  "--allow-rewind to accept it",
					  pass->ref, commit, pass->commit);
		pass->remote.invalid = rc < 0;
	}
	free(commit);
	free(ref);
	return rc;
}

/* The operator's pin, after the ref was resolved: it stands while the tip
 * is the one it was made at (the pinned commit is read instead, then
 * verified as any), and ends when the ref moved. */
static void follow_pin(struct gw_pass *pass, const struct gw_pass_opts *opts)
{
	struct gw_pin pin;
	struct gw_error err;
	bool was;
	if (gw_pin_read(&pin, opts->state_dir, &err) < 0)
		gw_log(GW_LOG_WARN, "", "%s", err.msg);
	if (!pin.on)
		return;
	if (pin.tip[0] && strcmp(pin.tip, pass->commit) != 0) {
		if (pass->read_only)
			return;
		gw_log(GW_LOG_INFO, "", "pin to %.12s ended: %s moved from %.12s to %.12s", pin.commit,
		       pass->ref ? pass->ref : "HEAD", pin.tip, pass->commit);
		if (gw_pin_clear(opts->state_dir, &was, &err) < 0)
			gw_log(GW_LOG_WARN, "", "%s", err.msg);
		return;
	}
	memcpy(pass->commit, pin.commit, sizeof(pass->commit));
	pass->pinned = true;
}

/* The remotes of opts, one at least. */
static size_t remotes_of(const struct gw_pass_opts *opts, const char **url, const char **password, size_t i)
{
	size_t n = opts->nrepos ? opts->nrepos : 1;
	if (i < n) {
		*url = opts->nrepos ? opts->repos[i] : opts->repo;
		*password = opts->nrepos ? opts->passwords[i] : opts->source.password;
	}
	return n;
}

/* Each remote's fetch, in STATE/remotes.json when there are several (the
 * lock holder's passes only: a dry-run writes nothing but the Git cache). */
static void remote_note(struct gw_remote_status **rs, size_t *nrs, const char *url, const struct gw_error *failed)
{
	size_t i;
	char *key = gw_url_without_credentials(url); /* as recorded */
	for (i = 0; i < *nrs && ((*rs)[i].url == NULL || strcmp((*rs)[i].url, key)); i++)
		;
	if (i == *nrs) {
		*rs = gw_xrealloc(*rs, (*nrs + 1) * sizeof(**rs));
		memset(&(*rs)[i], 0, sizeof(**rs));
		(*rs)[i].url = key;
		(*nrs)++;
	} else {
		free(key);
	}
	free((*rs)[i].last_error);
	(*rs)[i].last_error = failed ? gw_xstrdup(failed->msg) : NULL;
	if (failed)
		(*rs)[i].errors++;
	else
		(*rs)[i].last_success = gw_now_ms() / 1000;
}

/* Write STATE/remotes.json: the given remotes only, in their order, with
 * what rs (taken from: its entries are moved) knew of each. */
static void remotes_record(struct gw_remote_status *rs, size_t nrs, const struct gw_pass_opts *opts)
{
	const char *url = NULL, *password = NULL;
	size_t n = remotes_of(opts, &url, &password, 0);
	struct gw_error werr;
	struct gw_remote_status *kept = gw_xcalloc(n, sizeof(*kept));
	for (size_t i = 0; i < n; i++) {
		size_t j;
		remotes_of(opts, &url, &password, i);
		char *key = gw_url_without_credentials(url);
		for (j = 0; j < nrs && (!rs[j].url || strcmp(rs[j].url, key)); j++)
			;
		if (j == nrs) {
			kept[i].url = key;
			continue;
		}
		free(key);
		kept[i] = rs[j]; /* now owned by kept */
		rs[j].url = NULL;
		rs[j].last_error = NULL;
	}
	if (gw_remotes_save(opts->state_dir, kept, n, &werr) < 0)
		gw_log(GW_LOG_WARN, "", "%s", werr.msg);
	gw_remotes_free(kept, n);
}

/* Open the Git cache for each remote in turn and fetch until one answers:
 * the mirrors are transport only, whatever comes after (resolve, the
 * signature) applies to what was fetched whichever served it. Each failure
 * is a warning; when all fail, err names each remote's error. */
static int fetch_remotes(struct gw_source **out, const char *cache, const struct gw_source_opts *base, bool fetch,
			 bool read_only, const struct gw_pass_opts *opts, struct gw_error *err)
{
	struct gw_remote_status *rs = NULL;
	size_t nrs = 0;
	const char *url = NULL, *password = NULL;
	size_t n = remotes_of(opts, &url, &password, 0);
	bool record = fetch && !read_only && n > 1;
	struct gw_strbuf all;
	int rc = -EIO;

	gw_strbuf_init(&all);
	struct gw_error lerr;
	if (record && gw_remotes_load(&rs, &nrs, opts->state_dir, &lerr) < 0)
		gw_log(GW_LOG_WARN, "", "%s", lerr.msg);
	for (size_t i = 0; i < n; i++) {
		struct gw_source *src = NULL;
		struct gw_source_opts sopts = *base;
		struct gw_error one = { 0 }; /* err is filled only if every remote fails */
		remotes_of(opts, &url, &password, i);
		sopts.password = password;
		rc = gw_source_open(&src, cache, url, &sopts, &one);
		if (rc == 0 && fetch)
			rc = gw_source_fetch(src, &one);
		if (rc == 0) {
			*out = src;
			if (record)
				remote_note(&rs, &nrs, url, NULL);
			break;
		}
		gw_source_free(src);
		if (n == 1 || rc == -ECANCELED) {
			*err = one;
			break;
		}
		char *shown = gw_url_redacted(one.msg);
		if (record)
			remote_note(&rs, &nrs, url, &one);
		if (i + 1 < n)
			gw_log(GW_LOG_WARN, "", "remote %d of %zu failed, trying the next: %s", (int)i + 1, n, shown);
		gw_strbuf_printf(&all, "%s%s", all.len ? "; " : "", shown);
		free(shown);
	}
	if (rc < 0 && n > 1 && rc != -ECANCELED)
		gw_error_set(err, rc, "every remote failed: %s", all.s);
	if (record)
		remotes_record(rs, nrs, opts);
	gw_remotes_free(rs, nrs);
	gw_strbuf_free(&all);
	return rc;
}

/* Open, fetch, resolve, follow the pin, refuse a rewound branch and (with
 * --verify-signatures) verify: the commit of the pass, in pass->commit. */
static int source_open(struct gw_source **out, struct gw_pass *pass, enum gw_pass_stage *stage,
		       const struct gw_pass_opts *opts, struct gw_error *err)
{
	struct gw_source *src = NULL;
	char path[4096];
	int rc;

	*stage = GW_PASS_GIT;
	gw_path_repo(path, sizeof(path), opts->state_dir);
	struct gw_source_opts sopts = opts->source;
	sopts.read_only = pass->read_only;
	sopts.cancel = pass->cancel;
	/* offline: the commit is taken from the cache as it is (a heal pass, or
	 * the last good commit after this pass already fetched) */
	GW_PROF_BEGIN(fetch);
	rc = fetch_remotes(&src, path, &sopts, !(pass->offline || pass->fetched), pass->read_only, opts, err);
	GW_PROF_END(fetch, "open Git cache, fetch (clone/index)");
	if (rc < 0)
		return rc;
	GW_PROF_BEGIN(resolve);
	if (rc == 0)
		rc = gw_source_resolve(pass->commit, &pass->ref, src, opts->ref, err);
	GW_PROF_END(resolve, "resolve ref");
	/* the ref's tip, as fetched: recorded whatever becomes of the commit */
	if (rc == 0 && !pass->offline) {
		memset(&pass->remote, 0, sizeof(pass->remote));
		memcpy(pass->remote.commit, pass->commit, sizeof(pass->remote.commit));
		if (opts->follow_pin)
			follow_pin(pass, opts);
	}
	if (rc == 0)
		rc = check_rewind(pass, src, stage, opts, err);
	if (rc == 0 && opts->verify_signatures) {
		/* before any manifest of the commit is parsed */
		const char *vdir = pass->read_only ? gw_source_scratch_dir(src) : opts->state_dir;
		char gnupg[4096];
		struct gw_verify_opts v = { .allowed_signers = opts->allowed_signers,
					    .gpg_keyring = opts->gpg_keyring,
					    .state_dir = vdir,
					    .gnupg_home = gw_path_gnupg(gnupg, sizeof(gnupg), vdir) };
		*stage = GW_PASS_VERIFY;
		rc = gw_source_verify_commit(src, pass->commit, &v, err);
		if (!pass->offline)
			pass->remote.invalid = rc < 0;
	}
	if (rc < 0) {
		gw_source_free(src);
		return rc;
	}
	*out = src;
	return 0;
}

int gw_pass_fetch(const struct gw_pass_opts *opts, const struct gw_cancel *cancel, struct gw_error *err)
{
	struct gw_source *src = NULL;
	char path[4096];

	gw_path_repo(path, sizeof(path), opts->state_dir);
	struct gw_source_opts sopts = opts->source;
	sopts.cancel = cancel;
	int rc = fetch_remotes(&src, path, &sopts, true, false, opts, err);
	gw_source_free(src);
	return rc;
}

/* The manifests of the commit, through the manifest cache. */
static int read_manifests(struct gw_pass *pass, struct gw_source *src, const struct gw_pass_opts *opts,
			  struct gw_error *err)
{
	char path[4096];
	pass->set.exclude = opts->excludes;
	pass->set.node_labels = opts->labels;
	struct gw_manifest_cache *own = pass->cache ? NULL : gw_manifest_cache_new();
	pass->set.cache = pass->cache ? pass->cache : own;
	gw_path_manifest_cache(path, sizeof(path), opts->state_dir);
	cache_load(pass->set.cache, path);
	GW_PROF_BEGIN(read);
	int rc = gw_source_read_manifests(&pass->set, src, pass->commit, opts->paths, opts->npaths, err);
	GW_PROF_END(read, "tree walk + blob read + parse + validate, or cache");
	/* a one-shot run keeps what this commit uses; the agent also the
	 * commits of its last few passes (a heal of the last good one) */
	if (rc == 0 && gw_manifest_cache_end_read(pass->set.cache, own ? 1 : 4) && !pass->read_only)
		cache_save(pass->set.cache, path);
	pass->set.cache = NULL;
	gw_manifest_cache_free(own);
	return rc;
}

int gw_pass_read(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_pass_opts *opts,
		 struct gw_observer *obs, struct gw_error *err)
{
	struct gw_source *src = NULL;
	int rc = source_open(&src, pass, stage, opts, err);
	if (rc < 0)
		return rc;
	*stage = GW_PASS_MANIFESTS;
	rc = read_manifests(pass, src, opts, err);
	if (rc == 0 && obs && obs->read) {
		*stage = GW_PASS_GIT;
		rc = obs->read(obs, src, opts, err);
		if (rc == 0)
			*stage = GW_PASS_MANIFESTS;
	}
	GW_PROF_BEGIN(close);
	gw_source_free(src);
	GW_PROF_END(close, "close Git cache");
	if (rc < 0)
		return rc;
	GW_PROF_BEGIN(finish);
	gw_manifest_set_finish(&pass->set);
	GW_PROF_END(finish, "cross-file checks");
	if (pass->set.diags.n && !pass->offline)
		pass->remote.invalid = true;
	if (pass->set.diags.n)
		return gw_error_set(err, -EINVAL, "%zu problem%s in the manifests of commit %.12s", pass->set.diags.n,
				    pass->set.diags.n == 1 ? "" : "s", pass->commit);
	return 0;
}

/* What a previous node's plan left */
static void plan_clear(struct gw_pass *pass)
{
	struct gw_planned p;
	gw_pass_take(&p, pass);
	gw_planned_free(&p);
}

/* The node's resources, with its values put in (a resource whose values
 * it lacks fails there alone: gw_manifest_node_values). */
static void select_for(struct gw_pass *pass, const struct gw_strmap *labels)
{
	pass->selected = gw_xcalloc(pass->set.n + 1, sizeof(*pass->selected));
	pass->nselected = 0;
	for (size_t i = 0; i < pass->set.n; i++) {
		struct gw_resource *r = pass->set.v[i], *v;
		struct gw_error err;
		if (!gw_plan_selects(r, labels))
			continue;
		/* a failure fails that resource when applied (logged there) */
		int rc = gw_manifest_node_values(&v, r, labels, &err);
		if (v) {
			pass->valued = gw_xrealloc(pass->valued, (pass->nvalued + 1) * sizeof(*pass->valued));
			pass->valued_error =
				gw_xrealloc(pass->valued_error, (pass->nvalued + 1) * sizeof(*pass->valued_error));
			pass->valued_error[pass->nvalued] = rc < 0 ? gw_xstrdup(err.msg) : NULL;
			pass->valued[pass->nvalued++] = v; /* now owned by the pass */
			r = v;
		}
		pass->selected[pass->nselected++] = r;
	}
}

/* A resource whose values the node lacks shows why in the plan, in place
 * of field changes from what runs: it will fail, nothing is replaced. */
static void value_errors(struct gw_pass *pass)
{
	for (size_t i = 0; i < pass->plan.n; i++) {
		struct gw_action *a = &pass->plan.v[i];
		const char *why = a->desired ? gw_pass_value_error(pass, a->desired) : NULL;
		if (!why)
			continue;
		for (size_t k = 0; k < a->nchanges; k++) {
			free(a->changes[k].path);
			free(a->changes[k].from);
			free(a->changes[k].to);
		}
		free(a->changes);
		a->changes = NULL;
		a->nchanges = 0;
		snprintf(a->reason, sizeof(a->reason), "%s", why);
	}
}

int gw_pass_observe_plan(struct gw_pass *pass, struct gw_observer *obs, const struct gw_strmap *labels,
			 const struct gw_pass_opts *opts, char **state_error, struct gw_error *err)
{
	struct gw_plan_opts popts = { .prune = opts->prune, .allow_empty = opts->allow_empty || obs->review };
	int rc;

	*state_error = NULL;
	plan_clear(pass);
	select_for(pass, labels);
	GW_PROF_BEGIN(observe);
	rc = obs->observe(obs, pass, labels, state_error, err);
	GW_PROF_END(observe, "observe");
	if (rc < 0)
		return rc;
	GW_PROF_BEGIN(plan);
	rc = gw_plan_build(&pass->plan, pass->selected, pass->nselected, pass->observed, pass->nobserved, &popts, err);
	GW_PROF_END(plan, "plan");
	if (rc < 0)
		return rc;
	value_errors(pass);
	pass->have_plan = 1;
	return 0;
}

int gw_pass_plan_commit(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_pass_opts *opts,
			struct gw_observer *obs, char **state_error, struct gw_error *err)
{
	int rc = gw_pass_read(pass, stage, opts, obs, err);
	*state_error = NULL;
	if (rc < 0)
		return rc;
	*stage = GW_PASS_PLAN;
	return gw_pass_observe_plan(pass, obs, opts->labels, opts, state_error, err);
}

void gw_pass__history(const struct gw_pass_opts *opts, const char *commit, const char *ref, const char *result,
		      const char *message)
{
	struct gw_history_entry e = { 0 };
	struct gw_error err;
	snprintf(e.commit, sizeof(e.commit), "%s", commit ? commit : "");
	snprintf(e.ref, sizeof(e.ref), "%s", ref ? ref : "");
	snprintf(e.result, sizeof(e.result), "%s", result);
	snprintf(e.trigger, sizeof(e.trigger), "%s", opts->trigger ? opts->trigger : "poll");
	snprintf(e.message, sizeof(e.message), "%s", message ? message : "");
	if (gw_history_append(opts->state_dir, &e, &err) < 0)
		gw_log(GW_LOG_WARN, "", "history not written: %s", err.msg);
}

/* A pass that applied something, or did not converge, is history; one
 * that found everything as it should be is not (nor one holding its plan:
 * suspended or observing, nothing was applied). */
static void history_executed(const struct gw_pass *pass, const struct gw_pass_opts *opts,
			     const struct gw_apply_report *rep)
{
	const size_t *c = pass->plan.count;
	size_t acted = c[GW_ACTION_CREATE] + c[GW_ACTION_UPDATE] + c[GW_ACTION_DELETE] + c[GW_ACTION_RESTART];
	char msg[256];
	/* held disruptive actions: what ran is history, what waits for its
	 * window or lock is not (nor a failure) */
	bool held_only = rep->held && !rep->failed && !rep->waiting;
	if (held_only)
		acted -= rep->held;
	if (pass->hold || (!acted && (rep->converged || held_only)))
		return;
	if (rep->converged || held_only)
		snprintf(msg, sizeof(msg), "%zu created, %zu updated, %zu deleted, %zu restarted%s",
			 c[GW_ACTION_CREATE], c[GW_ACTION_UPDATE], c[GW_ACTION_DELETE], c[GW_ACTION_RESTART],
			 held_only ? "; disruptive actions held" : "");
	else
		snprintf(msg, sizeof(msg), "not converged: %zu failed, %zu waiting", rep->failed, rep->waiting);
	struct gw_pass_opts o = *opts;
	if (pass->reverting[0]) { /* --auto-revert: the bad commit is what is recorded */
		o.trigger = "auto-revert";
		gw_pass__history(&o, pass->reverting, pass->ref, "reverted", pass->note ? pass->note : msg);
		return;
	}
	/* the first pass to apply a pin is the rollback's */
	if (pass->pinned && (!pass->state.commit || strcmp(pass->state.commit, pass->commit) != 0))
		o.trigger = "rollback";
	gw_pass__history(&o, pass->commit, pass->ref,
			 !rep->converged && !held_only ? "failed"
				 : pass->pinned	       ? "rolled-back"
						       : "converged",
			 msg);
}

void gw_pass_hold_disruptive(struct gw_pass *pass, const char *reason, int64_t until_ms)
{
	if (!pass->held)
		pass->held = reason;
	if (until_ms > pass->held_until_ms)
		pass->held_until_ms = until_ms;
}

int gw_pass_execute(struct gw_apply_report *out, struct gw_pass *pass, const struct gw_pass_opts *opts,
		    const struct gw_backend_set *set, struct gw_error *err)
{
	struct gw_error cerr;
	/* the operator's controls, read at every pass: a file present is a
	 * suspension, even one that cannot be read */
	if (gw_control_suspend_read(&pass->suspend, opts->state_dir, &cerr) < 0)
		gw_log(GW_LOG_WARN, "", "%s", cerr.msg);
	pass->observe_mode = opts->observe;
	pass->auto_revert_ms = opts->auto_revert_ms;
	pass->hold = pass->suspend.on || opts->observe;
	const size_t *n = pass->plan.count;
	/* --window: outside every window, updates and deletes wait for the
	 * next opening (the agent wakes then: gw_watch_build) */
	if (!pass->hold && opts->nwindows && n[GW_ACTION_UPDATE] + n[GW_ACTION_DELETE] > 0) {
		int64_t next;
		if (!gw_windows_check(opts->windows, opts->nwindows, gw_now_ms(), &next))
			gw_pass_hold_disruptive(pass, "window", next);
	}
	/* --fleet-lock: update and delete wait for a slot (not asked for while
	 * something else holds them: a closed window asks no server) */
	if (!pass->held && !gw_pass__fleet_lock_before(pass, opts))
		gw_pass_hold_disruptive(pass, "fleet-lock", 0);
	/* a commit starts being applied (held: nothing is) */
	size_t runs = n[GW_ACTION_CREATE] + n[GW_ACTION_RESTART] +
		(pass->held ? 0 : n[GW_ACTION_UPDATE] + n[GW_ACTION_DELETE]);
	if (opts->on_apply && !pass->hold && runs > 0)
		opts->on_apply(opts->on_apply_ud, pass->commit);
	GW_PROF_BEGIN(execute);
	int rc = gw_apply_execute(out, pass, opts->node, opts->labels, opts->state_dir, set, err);
	GW_PROF_END(execute, "apply (execute, record)");
	if (rc == 0)
		history_executed(pass, opts, out);
	if (rc == 0)
		gw_pass__fleet_lock_after(pass, opts, out->converged);
	return rc;
}

enum gw_run_result gw_run_result_of_stage(enum gw_pass_stage stage, const struct gw_pass *pass)
{
	if (stage == GW_PASS_GIT)
		return GW_RUN_GIT_ERROR;
	if (stage == GW_PASS_VERIFY)
		return GW_RUN_UNVERIFIED;
	if (stage == GW_PASS_REWIND)
		return GW_RUN_REWIND;
	return pass->set.diags.n ? GW_RUN_INVALID : GW_RUN_ERROR;
}

void gw_pass_record_failure(const struct gw_pass_opts *opts, const struct gw_backend_set *set, enum gw_pass_stage stage,
			    const struct gw_pass *pass, const struct gw_error *why)
{
	char buf[GW_ERROR_MSG_MAX + 300];
	struct gw_error err;
	if (gw_apply_record_error(opts->node, opts->labels, opts->state_dir, set, &pass->remote,
				  gw_run_result_of_stage(stage, pass), gw_error_format(buf, sizeof(buf), why),
				  &err) < 0)
		gw_log(GW_LOG_ERROR, "", "cannot record the error: %s", err.msg);
	gw_pass__history(opts, pass->commit, pass->ref, "failed", buf);
}

void gw_pass_take(struct gw_planned *out, struct gw_pass *pass)
{
	*out = (struct gw_planned){
		.plan = pass->plan, .selected = pass->selected, .observed = pass->observed, .nobserved = pass->nobserved
	};
	/* now owned by out */
	memset(&pass->plan, 0, sizeof(pass->plan));
	pass->selected = NULL;
	pass->nselected = 0;
	pass->observed = NULL;
	pass->nobserved = 0;
	pass->have_plan = 0;
}

void gw_planned_free(struct gw_planned *p)
{
	gw_plan_free(&p->plan);
	free(p->selected);
	for (size_t i = 0; i < p->nobserved; i++)
		gw_observed_clear(&p->observed[i]);
	free(p->observed);
	memset(p, 0, sizeof(*p));
}

static bool applied_anything(const char *state_dir)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096];
	bool any;

	gw_path_state_file(path, sizeof(path), state_dir);
	if (gw_state_load(&st, path, &err) < 0)
		return true; /* unreadable: assume the worst */
	any = st.commit || st.n;
	gw_state_file_free(&st);
	return any;
}

/* Is any of have (recorded) among want (given)? */
static bool shares_remote(const struct gw_strlist *have, char *const *want, size_t nwant)
{
	for (size_t i = 0; i < have->n; i++)
		for (size_t j = 0; j < nwant; j++)
			if (!strcmp(have->v[i], want[j]))
				return true;
	return false;
}

/* A state dir belongs to the repository while at least one of the remotes
 * it recorded is still given: reordering the mirrors or adding one is not a
 * move. What is recorded is always the remotes given last. */
int gw_pass_check_repo(const struct gw_pass_opts *opts, bool record, struct gw_error *err)
{
	const char *url, *password;
	size_t n = remotes_of(opts, &url, &password, 0);
	char **want = gw_xcalloc(n, sizeof(char *));
	struct gw_strlist have = { 0 };
	bool same_list = false;
	int rc;

	for (size_t i = 0; i < n; i++) {
		remotes_of(opts, &url, &password, i);
		want[i] = gw_source_canonical_url(url);
	}
	rc = gw_state_repo_read(&have, opts->state_dir, err);
	if (rc < 0)
		goto out;
	if (have.n && !shares_remote(&have, want, n) && !applied_anything(opts->state_dir)) {
		/* a first --repo that never got as far as a commit (a typo, an
		 * unreachable server) claims nothing */
		gw_strlist_free(&have);
	}
	same_list = have.n == n;
	for (size_t i = 0; same_list && i < n; i++)
		same_list = !strcmp(have.v[i], want[i]);
	if (have.n && !shares_remote(&have, want, n) && !opts->move_to_repo) {
		rc = gw_error_set(err, -EEXIST,
				  "state dir %s belongs to repository %s, not %s: use another --state-dir for %s, or "
				  "pass --move-to-repo to move this state dir and its resources to it (what it does "
				  "not declare is then deleted)",
				  opts->state_dir, have.v[0], want[0], want[0]);
		goto out;
	}
	if (record && !same_list) {
		rc = gw_state_repo_write(opts->state_dir, (const char *const *)want, n, err);
		if (rc == 0 && have.n && !shares_remote(&have, want, n))
			gw_log(GW_LOG_WARN, "", "state dir %s moved from repository %s to %s (--move-to-repo)",
			       opts->state_dir, have.v[0], want[0]);
	}
out:
	gw_strlist_free(&have);
	for (size_t i = 0; i < n; i++)
		free(want[i]);
	free(want);
	return rc;
}
