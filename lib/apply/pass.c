/* The first half of a pass, shared by `reconcile --dry-run`, `reconcile` and
 * the agent: source -> manifests -> selection -> observed -> plan. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "gitward/manifest_cache.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/prof.h"

void gw_pass_init(struct gw_pass *pass)
{
	memset(pass, 0, sizeof(*pass));
	gw_manifest_set_init(&pass->set);
	gw_state_file_init(&pass->state);
}

void gw_pass_free(struct gw_pass *pass)
{
	free(pass->ref);
	free(pass->note);
	free(pass->selected);
	gw_plan_free(&pass->plan);
	gw_manifest_set_free(&pass->set);
	gw_state_file_free(&pass->state);
	for (size_t i = 0; i < pass->nobserved; i++)
		gw_observed_clear(&pass->observed[i]);
	free(pass->observed);
	memset(pass, 0, sizeof(*pass));
}

void gw_pass__source_opts(struct gw_source_opts *o, const struct gw_config *cfg, bool read_only,
			  const struct gw_cancel *cancel)
{
	*o = (struct gw_source_opts){
		.ca_file = cfg->ca_file,
		.insecure_skip_tls_verify = cfg->insecure_skip_tls_verify,
		.known_hosts = cfg->known_hosts,
		.ssh_key = cfg->ssh_key,
		.username = cfg->git_username,
		.password_file = cfg->git_password_file,
		.password = cfg->repo_password,
		.connect_timeout_ms = cfg->git_connect_timeout_ms,
		.idle_timeout_ms = cfg->git_timeout_ms,
		.cancel = cancel,
		.read_only = read_only,
	};
}

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

int gw_pass_prepare(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_config *cfg, struct gw_error *err)
{
	struct gw_source *src = NULL;
	char path[4096];
	int rc;

	*stage = GW_PASS_GIT;
	gw_path_repo(path, sizeof(path), cfg->state_dir);
	struct gw_source_opts sopts;
	gw_pass__source_opts(&sopts, cfg, pass->read_only, pass->cancel);
	GW_PROF_BEGIN(open);
	rc = gw_source_open(&src, path, cfg->repo, &sopts, err);
	GW_PROF_END(open, "open Git cache");
	if (rc < 0)
		return rc;
	/* offline: the commit is taken from the cache as it is (a heal pass, or
	 * the last good commit after this pass already fetched) */
	GW_PROF_BEGIN(fetch);
	rc = pass->offline ? 0 : gw_source_fetch(src, err);
	GW_PROF_END(fetch, "fetch (clone/index)");
	GW_PROF_BEGIN(resolve);
	if (rc == 0)
		rc = gw_source_resolve(pass->commit, &pass->ref, src, cfg->ref, err);
	GW_PROF_END(resolve, "resolve ref");
	if (rc == 0 && cfg->verify_signatures) {
		/* before any manifest of the commit is parsed */
		const char *vdir = pass->read_only ? gw_source_scratch_dir(src) : cfg->state_dir;
		char gnupg[4096];
		struct gw_verify_opts v = { .allowed_signers = cfg->allowed_signers,
					    .gpg_keyring = cfg->gpg_keyring,
					    .state_dir = vdir,
					    .gnupg_home = gw_path_gnupg(gnupg, sizeof(gnupg), vdir) };
		*stage = GW_PASS_VERIFY;
		rc = gw_source_verify_commit(src, pass->commit, &v, err);
	}
	if (rc < 0) {
		gw_source_free(src);
		return rc;
	}
	*stage = GW_PASS_MANIFESTS;
	pass->set.exclude = &cfg->excludes;
	struct gw_manifest_cache *own = pass->cache ? NULL : gw_manifest_cache_new();
	pass->set.cache = pass->cache ? pass->cache : own;
	gw_path_manifest_cache(path, sizeof(path), cfg->state_dir);
	cache_load(pass->set.cache, path);
	GW_PROF_BEGIN(read);
	rc = gw_source_read_manifests(&pass->set, src, pass->commit, (const char *const *)cfg->paths.v, cfg->paths.n,
				      err);
	GW_PROF_END(read, "tree walk + blob read + parse + validate, or cache");
	GW_PROF_BEGIN(close);
	gw_source_free(src);
	GW_PROF_END(close, "close Git cache");
	/* a one-shot run keeps what this commit uses; the agent also the
	 * commits of its last few passes (a heal of the last good one) */
	if (rc == 0 && gw_manifest_cache_end_read(pass->set.cache, own ? 1 : 4) && !pass->read_only)
		cache_save(pass->set.cache, path);
	pass->set.cache = NULL;
	gw_manifest_cache_free(own);
	if (rc < 0)
		return rc;
	GW_PROF_BEGIN(finish);
	gw_manifest_set_finish(&pass->set);
	GW_PROF_END(finish, "cross-file checks");
	if (pass->set.diags.n)
		return gw_error_set(err, -EINVAL, "%zu problem%s in the manifests of commit %.12s", pass->set.diags.n,
				    pass->set.diags.n == 1 ? "" : "s", pass->commit);

	pass->selected = gw_xcalloc(pass->set.n + 1, sizeof(*pass->selected));
	for (size_t i = 0; i < pass->set.n; i++)
		if (gw_plan_selects(pass->set.v[i], &cfg->labels))
			pass->selected[pass->nselected++] = pass->set.v[i];

	return 0;
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

int gw_pass_check_repo(const struct gw_config *cfg, bool record, struct gw_error *err)
{
	char *want = gw_source_canonical_url(cfg->repo), *have = NULL;
	int rc = gw_state_repo_read(&have, cfg->state_dir, err);

	if (rc < 0)
		goto out;
	if (have && strcmp(have, want) != 0 && !applied_anything(cfg->state_dir)) {
		/* a first --repo that never got as far as a commit (a typo, an
		 * unreachable server) claims nothing */
		free(have);
		have = NULL;
	}
	if (have && strcmp(have, want) != 0 && !cfg->move_to_repo) {
		rc = gw_error_set(err, -EEXIST,
				  "state dir %s belongs to repository %s, not %s: use another --state-dir for %s, or "
				  "pass --move-to-repo to move this state dir and its resources to it (what it does "
				  "not declare is then deleted)",
				  cfg->state_dir, have, want, want);
		goto out;
	}
	if (record && (!have || strcmp(have, want) != 0)) {
		rc = gw_state_repo_write(cfg->state_dir, want, err);
		if (rc == 0 && have)
			gw_log(GW_LOG_WARN, "", "state dir %s moved from repository %s to %s (--move-to-repo)",
			       cfg->state_dir, have, want);
	}
out:
	free(have);
	free(want);
	return rc;
}

int gw_pass_plan(struct gw_pass *pass, const struct gw_config *cfg, struct gw_error *err)
{
	struct gw_plan_opts opts = { .prune = !cfg->no_prune, .allow_empty = cfg->allow_empty };
	GW_PROF_BEGIN(plan);
	int rc = gw_plan_build(&pass->plan, pass->selected, pass->nselected, pass->observed, pass->nobserved, &opts,
			       err);
	GW_PROF_END(plan, "plan");
	if (rc < 0)
		return rc;
	pass->have_plan = 1;
	return 0;
}
