/* Git on libgit2: a bare clone kept under the state dir and only fetched on
 * later passes; refs resolve to commits; manifests come from blobs of the
 * commit's tree, so a pass never sees a half-written file and never follows
 * a symlink. libgit2 errors are translated here, once. */
#define _GNU_SOURCE
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source_int.h"
#include "gitward/manifest_cache.h"
#include "gitward/plan.h"
#include "gitward/prof.h"

static int git_fail(struct gw_error *err, int code, const char *what)
{
	const git_error *e = git_error_last();
	return gw_error_set(err, code, "%s: %s", what, e && e->message ? e->message : "unknown libgit2 error");
}

int gw_source__cache_fault(void)
{
	const git_error *e = git_error_last();
	if (!e)
		return 0;
	switch (e->klass) {
	case GIT_ERROR_REFERENCE:
	case GIT_ERROR_ODB:
	case GIT_ERROR_OBJECT:
	case GIT_ERROR_REPOSITORY:
	case GIT_ERROR_ZLIB:
	case GIT_ERROR_CONFIG:
		return 1;
	default:
		return 0;
	}
}

const char *gw_source__cache_name(const struct gw_source *src)
{
	return src->shared_dir ? src->shared_dir : src->cache_dir;
}

static int corrupt(struct gw_error *err, const struct gw_source *src)
{
	git_fail(err, -EIO, "the git cache is corrupt");
	return gw_error_prefix(err, "%s (remove it and gitward clones again)", gw_source__cache_name(src));
}

static void init_libgit2(void)
{
	git_libgit2_init();
	/* the cache is ours alone; skip the ownership check of safe.directory */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
}

/* once per process, whichever thread opens a source first (the agent
 * fetches in one thread while it heals in another) */
static int init_once(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, init_libgit2);
	return 0;
}

/* "user@host:path", as git reads it: a colon before any slash */
static int is_scp_like(const char *url)
{
	const char *colon = strchr(url, ':');
	const char *slash = strchr(url, '/');
	return !strstr(url, "://") && colon && (!slash || colon < slash) && url[0] != '/' && url[0] != '.';
}

const char *gw_source__local_path(const char *url)
{
	if (!strncasecmp(url, "file://", 7)) {
		url += 7;
		return strncasecmp(url, "localhost/", 10) ? url : url + 9;
	}
	return strstr(url, "://") || is_scp_like(url) ? NULL : url;
}

/* A local path (not a URL, not scp-like "user@host:path") made absolute. */
static char *normalize_url(const char *url)
{
	if (strstr(url, "://") || is_scp_like(url))
		return gw_xstrdup(url);
	char buf[PATH_MAX];
	if (realpath(url, buf))
		return gw_xstrdup(buf);
	return gw_xstrdup(url);
}

int gw_source__reopen(struct gw_source *src, struct gw_error *err)
{
	git_repository *repo = NULL;
	int rc = git_repository_open_bare(&repo, src->cache_dir);
	if (rc == 0 && git_repository_is_empty(repo) < 0)
		rc = -EIO;
	if (rc < 0) {
		git_repository_free(repo);
		return corrupt(err, src);
	}
	git_repository_free(src->repo);
	src->repo = repo;
	return 0;
}

/* copy every ref of the cache into the private repository (objects are
 * reached through the alternates): a ref that cannot be copied only costs
 * a larger download */
static int copy_refs(struct gw_source *src, git_repository *cache)
{
	git_reference_iterator *it = NULL;
	git_reference *ref = NULL;
	int rc;

	if (git_reference_iterator_new(&it, cache) < 0)
		return -EIO;
	while ((rc = git_reference_next(&ref, it)) == 0) {
		git_reference *made = NULL;
		if (git_reference_type(ref) == GIT_REFERENCE_DIRECT)
			git_reference_create(&made, src->repo, git_reference_name(ref), git_reference_target(ref), 1,
					     NULL);
		else
			git_reference_symbolic_create(&made, src->repo, git_reference_name(ref),
						      git_reference_symbolic_target(ref), 1, NULL);
		git_reference_free(made);
		git_reference_free(ref);
	}
	git_reference_iterator_free(it);
	return rc == GIT_ITEROVER ? 0 : -EIO;
}

/* Point the private repository at path's objects through its alternates
 * file when the source is a local repository; nothing happens otherwise (the
 * fetch then copies what it needs). */
static void borrow_local(const struct gw_source *src, const char *path)
{
	const char *local = gw_source__local_path(src->url);
	git_repository *origin = NULL;
	char alt[PATH_MAX + 64], objects[PATH_MAX + 16];

	if (!local || git_repository_open_ext(&origin, local, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0) {
		git_error_clear();
		return;
	}
	snprintf(objects, sizeof(objects), "%sobjects\n", git_repository_commondir(origin));
	git_repository_free(origin);
	if (objects[0] != '/')
		return;
	snprintf(alt, sizeof(alt), "%s/objects/info/alternates", path);
	FILE *f = fopen(alt, "wx");
	if (!f)
		return;
	int bad = fputs(objects, f) < 0;
	if (fclose(f) != 0 || bad)
		unlink(alt);
}

/* A read-only source: a private bare repository in $TMPDIR that borrows the
 * cache's objects, as `git clone --shared` does. The agent alone writes the
 * cache (it holds the state lock), so a dry-run never meets its ref locks
 * (refs/...lock, packed-refs.lock), never makes it meet ours, and never
 * removes a lock it did not create. Reading the cache is safe beside a
 * fetch: refs and packs are replaced by rename, and a ref is only updated
 * once its objects are in place. */
static int open_private(struct gw_source *src, const char *shared, struct gw_error *err)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX], alt[PATH_MAX + 64];
	git_repository *repo = NULL;
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/gitward-dry-run.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(path))
		return gw_error_set(err, -errno, "%s: cannot make a private directory: %s", path, strerror(errno));
	src->scratch = gw_xstrdup(path);
	src->shared_dir = gw_xstrdup(shared);
	snprintf(path, sizeof(path), "%s/repo.git", src->scratch);
	free(src->cache_dir);
	src->cache_dir = gw_xstrdup(path);
	if (git_repository_init(&repo, path, 1) < 0)
		return git_fail(err, -EIO, "cannot create a private git repository");
	git_repository_free(repo);
	if (stat(shared, &st) < 0) {
		/* nothing to borrow in the state dir: a local repository lends
		 * its own objects (as `git clone --shared` does), so the fetch
		 * finds every object present and copies none; a remote one is
		 * cloned whole */
		borrow_local(src, path);
		return gw_source__reopen(src, err);
	}
	repo = NULL;
	if (git_repository_open_bare(&repo, shared) < 0 || git_repository_is_empty(repo) < 0) {
		git_repository_free(repo);
		return corrupt(err, src);
	}
	snprintf(alt, sizeof(alt), "%s/objects/info/alternates", path);
	snprintf(path, sizeof(path), "%s/objects\n", shared);
	/* no fsync: the private repository does not outlive this process */
	FILE *f = fopen(alt, "wx");
	rc = f && fputs(path, f) >= 0 ? 0 : -1;
	if (f && fclose(f) != 0)
		rc = -1;
	if (rc < 0)
		rc = gw_error_set(err, -EIO, "%s: cannot write: %s", alt, strerror(errno));
	if (rc == 0)
		rc = gw_source__reopen(src, err);
	if (rc == 0 && copy_refs(src, repo) < 0)
		rc = corrupt(err, src);
	git_repository_free(repo);
	git_error_clear();
	return rc;
}

int gw_source_open(struct gw_source **out, const char *cache_dir, const char *url, const struct gw_source_opts *opts,
		   struct gw_error *err)
{
	struct gw_source *src;
	struct stat st;

	init_once();
	src = gw_xcalloc(1, sizeof(*src));
	src->url = normalize_url(url);
	src->cache_dir = gw_xstrdup(cache_dir);
	if (opts)
		src->opts = *opts;
	if (src->opts.read_only) {
		int rc = open_private(src, cache_dir, err);
		if (rc < 0) {
			gw_source_free(src);
			return rc;
		}
		*out = src;
		return 0;
	}
	if (stat(cache_dir, &st) == 0 && gw_source__reopen(src, err) < 0) {
		gw_source_free(src);
		return -EIO;
	}
	*out = src;
	return 0;
}

static int is_hex40(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 40;
}

/* an abbreviated commit id, as git prints them: 7 to 39 hex digits */
static int is_short_hex(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') || (s[n] >= 'A' && s[n] <= 'F')))
			return 0;
	return n >= 7 && n < 40;
}

/* A name, as git resolves it: a full name (refs/...) exactly, refs/heads/X
 * being the remote's branch X; a bare name as a tag, else a branch. A bare
 * name that is both, or a name that could also be read as a short commit id,
 * is refused (*refused set, err filled): a branch must never shadow a pin.
 * Otherwise 0 or libgit2's error (GIT_ENOTFOUND), err untouched. */
static int lookup_name(git_object **out, int *refused, struct gw_source *src, const char *ref, struct gw_error *err)
{
	char tag[600], branch[600];
	git_reference *t = NULL, *b = NULL;
	int rc = GIT_ENOTFOUND;

	if (strncmp(ref, "refs/", 5) == 0) {
		if (strncmp(ref, "refs/heads/", 11) == 0)
			snprintf(tag, sizeof(tag), "refs/remotes/origin/%s", ref + 11);
		else
			snprintf(tag, sizeof(tag), "%s", ref);
		if (git_reference_lookup(&t, src->repo, tag) == 0)
			rc = git_reference_peel(out, t, GIT_OBJECT_COMMIT);
		git_reference_free(t);
		return rc;
	}
	snprintf(tag, sizeof(tag), "refs/tags/%s", ref);
	snprintf(branch, sizeof(branch), "refs/remotes/origin/%s", ref);
	int has_tag = git_reference_lookup(&t, src->repo, tag) == 0;
	int has_branch = git_reference_lookup(&b, src->repo, branch) == 0;
	git_object *o = NULL;
	git_oid oid;
	if (has_tag && has_branch) {
		*refused = 1;
		gw_error_set(err, -EINVAL,
			     "ref \"%s\" is ambiguous: %s has both a tag and a branch of that name; give "
			     "refs/tags/%s or refs/heads/%s",
			     ref, src->url, ref, ref);
	} else if ((has_tag || has_branch) && is_short_hex(ref) && git_oid_fromstrn(&oid, ref, strlen(ref)) == 0 &&
		   git_object_lookup_prefix(&o, src->repo, &oid, strlen(ref), GIT_OBJECT_COMMIT) != GIT_ENOTFOUND) {
		*refused = 1;
		gw_error_set(err, -EINVAL,
			     "ref \"%s\" is ambiguous: it is a %s of %s and also the start of a commit id; give "
			     "refs/%s/%s or the full commit id",
			     ref, has_tag ? "tag" : "branch", src->url, has_tag ? "tags" : "heads", ref);
	} else if (has_tag || has_branch) {
		rc = git_reference_peel(out, has_tag ? t : b, GIT_OBJECT_COMMIT);
	}
	git_object_free(o);
	git_reference_free(t);
	git_reference_free(b);
	return rc;
}

int gw_source_resolve(char out_commit[41], char **out_ref, struct gw_source *src, const char *ref, struct gw_error *err)
{
	git_object *obj = NULL;
	git_oid oid;
	char *used = NULL, *full = NULL;
	int rc = GIT_ENOTFOUND;

	if (!src->repo)
		return gw_error_set(err, -ENOENT, "%s: nothing fetched yet", src->url);
	/* HEAD of the remote is its default branch, which the fetch records */
	if (!ref || !*ref || !strcmp(ref, "HEAD")) {
		git_reference *head = NULL;
		if (git_reference_lookup(&head, src->repo, "refs/remotes/origin/HEAD") < 0 ||
		    git_reference_type(head) != GIT_REFERENCE_SYMBOLIC) {
			git_reference_free(head);
			return gw_error_set(err, -ENOENT, "%s: the remote has no default branch; give --ref", src->url);
		}
		const char *t = git_reference_symbolic_target(head);
		used = gw_xstrdup(strncmp(t, "refs/remotes/origin/", 20) == 0 ? t + 20 : t);
		full = gw_xstrdup(t); /* the branch itself, whatever tags are named */
		git_reference_free(head);
		ref = used;
	}
	if (is_hex40(ref) && git_oid_fromstr(&oid, ref) == 0) {
		rc = git_object_lookup(&obj, src->repo, &oid, GIT_OBJECT_COMMIT); /* only a commit, never a name */
	} else if (strlen(ref) < 500) {
		int refused = 0;
		rc = lookup_name(&obj, &refused, src, full ? full : ref, err);
		if (refused) {
			free(full);
			free(used);
			return -EINVAL;
		}
	}
	free(full);
	if (rc < 0 && is_short_hex(ref) && git_oid_fromstrn(&oid, ref, strlen(ref)) == 0) {
		rc = git_object_lookup_prefix(&obj, src->repo, &oid, strlen(ref), GIT_OBJECT_COMMIT);
		if (rc == GIT_EAMBIGUOUS) {
			gw_error_set(
				err, -ENOENT,
				"ref \"%s\" is ambiguous: several commits of %s start with it; give more digits or the "
				"full commit id",
				ref, src->url);
			free(used);
			return -ENOENT;
		}
	}
	if (rc < 0) {
		gw_error_set(err, -ENOENT,
			     "ref \"%s\" not found in %s (no such branch, tag or commit): give a branch, a tag or a "
			     "commit id (at least 7 digits)",
			     ref, src->url);
		free(used);
		return -ENOENT;
	}
	git_object *commit = NULL;
	rc = git_object_peel(&commit, obj, GIT_OBJECT_COMMIT);
	git_object_free(obj);
	if (rc < 0) {
		free(used);
		return gw_error_set(err, -EINVAL, "ref \"%s\" does not point at a commit", ref);
	}
	git_oid_tostr(out_commit, 41, git_object_id(commit));
	git_object_free(commit);
	*out_ref = used ? used : gw_xstrdup(ref);
	return 0;
}

bool gw_source_ref_is_branch(struct gw_source *src, const char *ref)
{
	char name[600];
	git_reference *r = NULL;
	if (!ref || !*ref || !strcmp(ref, "HEAD"))
		return true; /* the remote's default branch */
	if (is_hex40(ref) || strlen(ref) >= 500)
		return false;
	if (strncmp(ref, "refs/", 5) == 0)
		return strncmp(ref, "refs/heads/", 11) == 0;
	/* a name is a tag or a branch, never both (gw_source_resolve refuses it) */
	snprintf(name, sizeof(name), "refs/tags/%s", ref);
	if (src->repo && git_reference_lookup(&r, src->repo, name) == 0) {
		git_reference_free(r);
		return false;
	}
	snprintf(name, sizeof(name), "refs/remotes/origin/%s", ref);
	bool branch = src->repo && git_reference_lookup(&r, src->repo, name) == 0;
	git_reference_free(r);
	git_error_clear();
	return branch;
}

int gw_source_descends(bool *out, struct gw_source *src, const char *commit, const char *ancestor, struct gw_error *err)
{
	git_oid c, a;
	git_commit *obj = NULL;
	if (!src->repo || git_oid_fromstr(&c, commit) < 0 || git_oid_fromstr(&a, ancestor) < 0)
		return gw_error_set(err, -EINVAL, "not a commit id: %.40s or %.40s", commit, ancestor);
	if (git_commit_lookup(&obj, src->repo, &a) < 0) {
		git_error_clear();
		return gw_error_set(err, -ENOENT, "commit %.12s is not in the Git cache", ancestor);
	}
	git_commit_free(obj);
	if (git_oid_equal(&c, &a)) {
		*out = true;
		return 0;
	}
	int rc = git_graph_descendant_of(src->repo, &c, &a);
	if (rc < 0)
		return git_fail(err, -EIO, "walking the history");
	*out = rc == 1;
	return 0;
}

struct walk {
	struct gw_manifest_set *set;
	git_repository *repo;
	git_odb *odb;
	struct gw_strmap *seen; /* only when several --path may overlap */
	const struct gw_ignore *ignore; /* .gitwardignore and --exclude */
	struct gw_ignore *own_ignore; /* when not kept by set->cache */
	size_t found; /* manifest files met, read or not */
	int rc;
	struct gw_error *err;
};

static void read_blob(struct walk *w, const git_oid *id, const char *path)
{
	size_t len;
	git_object_t type;
	git_blob *blob = NULL;

	w->found++;
	if (w->seen) {
		if (gw_strmap_get(w->seen, path))
			return;
		gw_strmap_set(w->seen, path, "");
	}
	if (gw_manifest_set_add_cached(w->set, path, id->id, GIT_OID_RAWSZ))
		return;
	GW_PROF_BEGIN(blob);
	if (git_odb_read_header(&len, &type, w->odb, id) < 0) {
		w->rc = git_fail(w->err, -EIO, path);
		return;
	}
	if (len > GW_MANIFEST_FILE_MAX) {
		w->set->files++;
		gw_diags_add(&w->set->diags, path, 0, 0, "file is %zu bytes, larger than the limit of %u", len,
			     GW_MANIFEST_FILE_MAX);
		return;
	}
	if (git_blob_lookup(&blob, w->repo, id) < 0) {
		w->rc = git_fail(w->err, -EIO, path);
		return;
	}
	GW_PROF_END(blob, "blob read");
	gw_manifest_set_add_blob(w->set, path, id->id, GIT_OID_RAWSZ, git_blob_rawcontent(blob),
				 (size_t)git_blob_rawsize(blob));
	git_blob_free(blob);
}

/* Left out by .gitwardignore or --exclude (before anything is parsed);
 * folders and manifest files are reported. */
static bool skip(struct walk *w, const char *path, const char *name, bool is_dir, bool parent_kept)
{
	const char *by =
		parent_kept ? gw_ignore_match_entry(w->ignore, path, is_dir) : gw_ignore_match(w->ignore, path, is_dir);
	if (by && (is_dir || gw_manifest_is_manifest_name(name)))
		gw_manifest_set_skip(w->set, path, by);
	return by != NULL;
}

/* The repository's .gitwardignore, read from the root of the commit and
 * compiled once per blob id (and --exclude list): set->cache keeps the
 * rules across passes. */
static const struct gw_ignore *load_ignore(struct walk *w, const git_tree *root)
{
	const git_tree_entry *e = git_tree_entry_byname(root, ".gitwardignore");
	git_blob *blob = NULL;
	struct gw_ignore *ig;
	struct gw_strbuf key;
	char hex[GIT_OID_HEXSZ + 1] = "-";

	if (e && git_tree_entry_type(e) == GIT_OBJECT_BLOB)
		git_oid_tostr(hex, sizeof(hex), git_tree_entry_id(e));
	gw_strbuf_init(&key);
	gw_strbuf_puts(&key, hex);
	for (size_t i = 0; w->set->exclude && i < w->set->exclude->n; i++)
		gw_strbuf_printf(&key, "\n%s", w->set->exclude->v[i]);
	const struct gw_ignore *kept = gw_manifest_cache_ignore(w->set->cache, key.s);
	if (kept) {
		gw_manifest_ignore_check(w->set, kept);
		gw_strbuf_free(&key);
		return kept;
	}
	if (e && git_tree_entry_type(e) == GIT_OBJECT_BLOB &&
	    git_blob_lookup(&blob, w->repo, git_tree_entry_id(e)) == 0 &&
	    git_blob_rawsize(blob) <= GW_MANIFEST_FILE_MAX) {
		ig = gw_manifest_ignore_new(w->set, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
	} else {
		if (blob)
			gw_diags_add(&w->set->diags, ".gitwardignore", 0, 0, "file larger than the limit of %u bytes",
				     GW_MANIFEST_FILE_MAX);
		ig = gw_manifest_ignore_new(w->set, NULL, 0);
	}
	bool too_big = blob && git_blob_rawsize(blob) > GW_MANIFEST_FILE_MAX;
	git_blob_free(blob);
	if (w->set->cache && !too_big) {
		const struct gw_ignore *r = gw_manifest_cache_keep_ignore(w->set->cache, key.s, ig);
		gw_strbuf_free(&key);
		return r;
	}
	gw_strbuf_free(&key);
	w->own_ignore = ig;
	return ig;
}

/* The tree in name order with an explicit stack: a commit may nest folders
 * thousands deep, so recursion would overflow; deeper than
 * GW_MANIFEST_TREE_DEPTH_MAX is a diagnostic of the commit. depth0 is the
 * depth of tree itself. */
static void walk_tree(struct walk *w, const git_tree *tree, const char *prefix, unsigned depth0)
{
	struct frame {
		git_tree *tree; /* owned, except the first */
		size_t i;
		char *prefix;
	} stack[GW_MANIFEST_TREE_DEPTH_MAX + 1];
	size_t top = 0;

	stack[0] = (struct frame){ .tree = (git_tree *)tree, .prefix = gw_xstrdup(prefix) };
	for (;;) {
		struct frame *f = &stack[top];
		if (f->i == git_tree_entrycount(f->tree) || w->rc != 0) {
			free(f->prefix);
			if (top == 0)
				break;
			git_tree_free(f->tree);
			top--;
			continue;
		}
		const git_tree_entry *e = git_tree_entry_byindex(f->tree, f->i++);
		const char *name = git_tree_entry_name(e);
		if (name[0] == '.')
			continue;
		struct gw_strbuf path;
		gw_strbuf_init(&path);
		gw_strbuf_printf(&path, "%s%s%s", f->prefix, *f->prefix ? "/" : "", name);
		if (skip(w, path.s, name, git_tree_entry_filemode(e) == GIT_FILEMODE_TREE, true)) {
			gw_strbuf_free(&path);
			continue;
		}
		switch (git_tree_entry_filemode(e)) {
		case GIT_FILEMODE_TREE: {
			git_tree *sub = NULL;
			if (depth0 + top + 1 > GW_MANIFEST_TREE_DEPTH_MAX) {
				gw_diags_add(&w->set->diags, path.s, 0, 0, "folders nested deeper than %u levels",
					     GW_MANIFEST_TREE_DEPTH_MAX);
				break;
			}
			if (git_tree_lookup(&sub, w->repo, git_tree_entry_id(e)) < 0) {
				w->rc = git_fail(w->err, -EIO, path.s);
				break;
			}
			stack[++top] = (struct frame){ .tree = sub, .prefix = gw_strbuf_detach(&path) };
			break;
		}
		case GIT_FILEMODE_BLOB:
		case GIT_FILEMODE_BLOB_EXECUTABLE:
			if (gw_manifest_is_manifest_name(name))
				read_blob(w, git_tree_entry_id(e), path.s);
			break;
		default: /* symlinks and submodules are never followed */
			break;
		}
		gw_strbuf_free(&path);
	}
}

/* Files of the commit a resource names (secretEnvFiles, an External's
 * sources): each is looked up in the whole tree (not only under --path), its
 * blob id goes into the spec hash and its content to the backend. A missing
 * or oversized file is a problem of the manifest.
 *
 * A commit may name one blob thousands of times: each blob is read at most
 * once and its bytes shared by every entry naming it; only the resources
 * selected for this node (set->node_labels) get content, the others only
 * blob ids; and the entries given content add up to at most
 * GW_REFERENCED_BYTES_MAX, past which the commit has a problem. */
struct repo_files {
	const char *field; /* "spec.secretEnvFiles" */
	const struct gw_strlist *paths;
	struct gw_secret_file *files; /* one per path; NULL: none */
	size_t max; /* bytes of one file */
};

struct blob_slot {
	git_oid id;
	size_t len;
	struct gw_bytes *bytes; /* NULL until a selected resource needs it */
	bool used;
};

struct files_ctx {
	struct gw_manifest_set *set;
	git_repository *repo;
	git_odb *odb;
	const git_tree *root;
	const char *commit_hex;
	struct blob_slot *slots; /* open addressing by blob id, a power of 2 long */
	size_t nslots, used;
	size_t referenced; /* bytes handed to this node's resources */
	bool over; /* past GW_REFERENCED_BYTES_MAX: reported once, nothing more read */
	/* folders looked up, by path: a tree of 20,000 entries is parsed once,
	 * not once per entry naming a file in it (libgit2 caches no big tree) */
	struct dir_slot {
		char *path; /* NULL: free */
		git_tree *tree; /* NULL: no such folder */
	} * dirs;
	size_t ndirs, useddirs;
};

static size_t str_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return (size_t)h;
}

/* The folder path[0..n) of the commit, looked up once. */
static git_tree *dir_tree(struct files_ctx *c, const char *path, size_t n)
{
	if (2 * (c->useddirs + 1) > c->ndirs) {
		struct dir_slot *old = c->dirs;
		size_t m = c->ndirs;
		c->ndirs = m ? 2 * m : 64;
		c->dirs = gw_xcalloc(c->ndirs, sizeof(*c->dirs));
		for (size_t i = 0; i < m; i++)
			if (old[i].path) {
				size_t j = str_hash(old[i].path, strlen(old[i].path)) & (c->ndirs - 1);
				while (c->dirs[j].path)
					j = (j + 1) & (c->ndirs - 1);
				c->dirs[j] = old[i];
			}
		free(old);
	}
	size_t j = str_hash(path, n) & (c->ndirs - 1);
	while (c->dirs[j].path && (strlen(c->dirs[j].path) != n || memcmp(c->dirs[j].path, path, n) != 0))
		j = (j + 1) & (c->ndirs - 1);
	struct dir_slot *d = &c->dirs[j];
	if (!d->path) {
		git_tree_entry *e = NULL;
		d->path = gw_xstrndup(path, n);
		if (git_tree_entry_bypath(&e, c->root, d->path) == 0 && git_tree_entry_type(e) == GIT_OBJECT_TREE &&
		    git_tree_lookup(&d->tree, c->repo, git_tree_entry_id(e)) < 0)
			d->tree = NULL;
		git_tree_entry_free(e);
		c->useddirs++;
	}
	return d->tree;
}

/* git_tree_entry_bypath from the root, through the folders looked up. */
static int entry_bypath(git_tree_entry **out, struct files_ctx *c, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash || !slash[1])
		return git_tree_entry_bypath(out, c->root, path);
	git_tree *dir = dir_tree(c, path, (size_t)(slash - path));
	return dir ? git_tree_entry_bypath(out, dir, slash + 1) : GIT_ENOTFOUND;
}

static size_t slot_index(const struct files_ctx *c, const git_oid *id)
{
	size_t h = 0;
	memcpy(&h, id->id, sizeof(h));
	return h & (c->nslots - 1);
}

/* The slot of blob id, its size read from the object header the first time. */
static int blob_slot(struct blob_slot **out, struct files_ctx *c, const git_oid *id)
{
	if (2 * (c->used + 1) > c->nslots) {
		struct blob_slot *old = c->slots;
		size_t n = c->nslots;
		c->nslots = n ? 2 * n : 64;
		c->slots = gw_xcalloc(c->nslots, sizeof(*c->slots));
		for (size_t i = 0; i < n; i++)
			if (old[i].used) {
				size_t j = slot_index(c, &old[i].id);
				while (c->slots[j].used)
					j = (j + 1) & (c->nslots - 1);
				c->slots[j] = old[i];
			}
		free(old);
	}
	size_t j = slot_index(c, id);
	while (c->slots[j].used && !git_oid_equal(&c->slots[j].id, id))
		j = (j + 1) & (c->nslots - 1);
	struct blob_slot *sl = &c->slots[j];
	if (!sl->used) {
		git_object_t type;
		if (git_odb_read_header(&sl->len, &type, c->odb, id) < 0)
			return -EIO;
		git_oid_cpy(&sl->id, id);
		sl->used = true;
		c->used++;
	}
	*out = sl;
	return 0;
}

static void files_ctx_free(struct files_ctx *c)
{
	for (size_t i = 0; i < c->nslots; i++)
		gw_bytes_unref(c->slots[i].bytes);
	free(c->slots);
	for (size_t i = 0; i < c->ndirs; i++) {
		free(c->dirs[i].path);
		git_tree_free(c->dirs[i].tree);
	}
	free(c->dirs);
}

/* The content of entry j (path, whose blob is in sl) for a selected
 * resource, within the commit's budget. */
static int give_content(struct files_ctx *c, struct gw_resource *r, const struct repo_files *rf, size_t j,
			struct blob_slot *sl, const char *path, struct gw_error *err)
{
	struct gw_secret_file *sf = &rf->files[j];
	if (c->over)
		return 0;
	if (sl->len > GW_REFERENCED_BYTES_MAX - c->referenced) {
		c->over = true;
		gw_diags_add(&c->set->diags, r->file, sf->line, sf->col,
			     "%s[%zu]: %s: the files this commit's resources for this node name add up to more than "
			     "%u MiB, the limit per commit (each entry counted)",
			     rf->field, j, path, GW_REFERENCED_BYTES_MAX >> 20);
		return 0;
	}
	if (!sl->bytes) {
		git_blob *blob = NULL;
		GW_PROF_BEGIN(blob);
		if (git_blob_lookup(&blob, c->repo, &sl->id) < 0)
			return git_fail(err, -EIO, path);
		sl->bytes = gw_bytes_new(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
		sl->len = (size_t)git_blob_rawsize(blob);
		git_blob_free(blob);
		GW_PROF_END(blob, "referenced blob read");
	}
	c->referenced += sl->len;
	sf->bytes = gw_bytes_ref(sl->bytes);
	sf->cipher = gw_bytes_data(sl->bytes);
	sf->len = sl->len;
	return 0;
}

static int resolve_files(struct files_ctx *c, struct gw_resource *r, bool selected, const struct repo_files *rf,
			 int *changed, struct gw_error *err)
{
	for (size_t j = 0; rf->files && j < rf->paths->n; j++) {
		struct gw_secret_file *sf = &rf->files[j];
		const char *path = rf->paths->v[j];
		git_tree_entry *e = NULL;
		struct blob_slot *sl;
		int rc = 0;
		if (sf->blob[0])
			continue;
		if (entry_bypath(&e, c, path) < 0) {
			gw_diags_add(&c->set->diags, r->file, sf->line, sf->col,
				     "%s[%zu]: %s does not exist in commit %.12s", rf->field, j, path, c->commit_hex);
			continue;
		}
		if (git_tree_entry_filemode(e) != GIT_FILEMODE_BLOB &&
		    git_tree_entry_filemode(e) != GIT_FILEMODE_BLOB_EXECUTABLE) {
			gw_diags_add(&c->set->diags, r->file, sf->line, sf->col,
				     "%s[%zu]: %s is not a file in commit %.12s", rf->field, j, path, c->commit_hex);
		} else if (blob_slot(&sl, c, git_tree_entry_id(e)) < 0) {
			rc = git_fail(err, -EIO, path);
		} else if (sl->len > rf->max) {
			gw_diags_add(&c->set->diags, r->file, sf->line, sf->col,
				     "%s[%zu]: %s is %zu bytes, larger than the limit of %zu", rf->field, j, path,
				     sl->len, rf->max);
		} else {
			git_oid_tostr(sf->blob, sizeof(sf->blob), &sl->id);
			*changed = 1;
			if (selected)
				rc = give_content(c, r, rf, j, sl, path, err);
		}
		git_tree_entry_free(e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int resolve_secrets(struct gw_manifest_set *set, git_repository *repo, git_odb *odb, const git_tree *root,
			   const char *commit_hex, struct gw_error *err)
{
	struct files_ctx c = { .set = set, .repo = repo, .odb = odb, .root = root, .commit_hex = commit_hex };
	int rc = 0;
	for (size_t i = 0; i < set->n && rc == 0; i++) {
		struct gw_resource *r = set->v[i];
		const struct repo_files lists[] = {
			{ "spec.secretEnvFiles", &r->secret_env_files, r->secrets, GW_SECRET_FILE_MAX },
			{ "spec.sources", &r->sources, r->source_files, GW_SOURCE_FILE_MAX },
		};
		bool selected = !set->node_labels || gw_plan_selects(r, set->node_labels);
		int changed = 0;
		for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]) && rc == 0; l++)
			rc = resolve_files(&c, r, selected, &lists[l], &changed, err);
		if (changed)
			gw_resource_finalize(r);
	}
	files_ctx_free(&c);
	return rc;
}

/* Folders in a --path: "a/b" is 2 deep. */
static unsigned path_depth(const char *p)
{
	unsigned n = *p ? 1 : 0;
	for (; *p; p++)
		n += *p == '/';
	return n;
}

static char *clean_path(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	while (*p == '/')
		p++;
	char *s = gw_xstrdup(strcmp(p, ".") == 0 ? "" : p);
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

/* A place of the commit without a manifest: the root, or a --path. */
static void note_empty(struct gw_manifest_set *set, const char *path)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	if (*path)
		gw_strbuf_printf(&sb, "--path %s", path);
	else
		gw_strbuf_puts(&sb, "the repository");
	gw_manifest_set_empty(set, sb.s);
	gw_strbuf_free(&sb);
}

int gw_source_read_manifests(struct gw_manifest_set *set, struct gw_source *src, const char *commit_hex,
			     const char *const *paths, size_t npaths, struct gw_error *err)
{
	git_oid oid;
	git_commit *commit = NULL;
	git_tree *root = NULL;
	struct gw_strmap seen = { 0 };
	struct walk w = { .set = set, .repo = src->repo, .err = err, .seen = npaths > 1 ? &seen : NULL };
	const char *const root_path[] = { "" };

	if (!src->repo)
		return gw_error_set(err, -ENOENT, "%s: nothing fetched yet", src->url);
	if (git_oid_fromstr(&oid, commit_hex) < 0 || git_commit_lookup(&commit, src->repo, &oid) < 0)
		return git_fail(err, -EIO, commit_hex);
	if (git_commit_tree(&root, commit) < 0) {
		git_commit_free(commit);
		return git_fail(err, -EIO, commit_hex);
	}
	if (git_repository_odb(&w.odb, src->repo) < 0) {
		git_tree_free(root);
		git_commit_free(commit);
		return git_fail(err, -EIO, "git object database");
	}
	w.ignore = load_ignore(&w, root);
	if (npaths == 0) {
		paths = root_path;
		npaths = 1;
	}
	for (size_t i = 0; i < npaths && w.rc == 0; i++) {
		char *p = clean_path(paths[i]);
		size_t found = w.found;
		if (!*p) {
			walk_tree(&w, root, "", 0);
		} else {
			git_tree_entry *e = NULL;
			const char *base = strrchr(p, '/');
			if (git_tree_entry_bypath(&e, root, p) < 0) {
				w.rc = gw_error_set(err, -ENOENT, "--path %s: no such folder in commit %.12s", p,
						    commit_hex);
			} else if (skip(&w, p, base ? base + 1 : p, git_tree_entry_type(e) == GIT_OBJECT_TREE, false)) {
				/* a --path inside an excluded folder reads nothing */
			} else if (git_tree_entry_type(e) == GIT_OBJECT_TREE) {
				git_tree *sub = NULL;
				if (git_tree_lookup(&sub, src->repo, git_tree_entry_id(e)) < 0) {
					w.rc = git_fail(err, -EIO, p);
				} else {
					walk_tree(&w, sub, p, path_depth(p));
					git_tree_free(sub);
				}
			} else if (git_tree_entry_filemode(e) == GIT_FILEMODE_BLOB ||
				   git_tree_entry_filemode(e) == GIT_FILEMODE_BLOB_EXECUTABLE) {
				read_blob(&w, git_tree_entry_id(e), p);
			} else {
				w.rc = gw_error_set(err, -EINVAL, "--path %s: not a folder or file in commit %.12s", p,
						    commit_hex);
			}
			git_tree_entry_free(e);
		}
		if (w.rc == 0 && w.found == found)
			note_empty(set, p);
		free(p);
	}
	if (w.rc == 0)
		w.rc = resolve_secrets(set, src->repo, w.odb, root, commit_hex, err);
	gw_strmap_free(&seen);
	gw_ignore_free(w.own_ignore);
	git_odb_free(w.odb);
	git_tree_free(root);
	git_commit_free(commit);
	return w.rc;
}

void gw_source_free(struct gw_source *src)
{
	if (!src)
		return;
	git_repository_free(src->repo);
	if (src->scratch)
		gw_rm_rf(src->scratch);
	free(src->scratch);
	free(src->shared_dir);
	free(src->url);
	free(src->cache_dir);
	free(src);
}

const char *gw_source_scratch_dir(const struct gw_source *src)
{
	return src->scratch;
}

void gw_source_libgit2_version(char *buf, size_t size)
{
	int major = 0, minor = 0, rev = 0;
	git_libgit2_version(&major, &minor, &rev);
	snprintf(buf, size, "%d.%d.%d", major, minor, rev);
}

git_repository *gw_source__repo(struct gw_source *src)
{
	return src->repo;
}

/* ---- the repository's identity ------------------------------------------ */

/* trailing slashes (and on a remote, one ".git") off what follows keep */
static void strip_tail(struct gw_strbuf *sb, size_t keep, int remote)
{
	while (sb->len > keep && sb->s[sb->len - 1] == '/')
		sb->s[--sb->len] = '\0';
	if (remote && sb->len > keep + 4 && !strcmp(sb->s + sb->len - 4, ".git")) {
		sb->len -= 4;
		sb->s[sb->len] = '\0';
		while (sb->len > keep && sb->s[sb->len - 1] == '/')
			sb->s[--sb->len] = '\0';
	}
}

static void add_lower(struct gw_strbuf *sb, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
		gw_strbuf_add(sb, &c, 1);
	}
}

/* a local path: absolute, links resolved where it exists, the .git folder
 * of a work tree named by the work tree */
static void canonical_path(struct gw_strbuf *sb, const char *path)
{
	char buf[PATH_MAX], head[PATH_MAX];
	size_t start = sb->len;
	if (realpath(path, buf)) {
		gw_strbuf_puts(sb, buf);
	} else if (path[0] != '/' && getcwd(buf, sizeof(buf))) {
		gw_strbuf_printf(sb, "%s/%s", buf, path);
	} else {
		gw_strbuf_puts(sb, path);
	}
	strip_tail(sb, start + 1, 0);
	size_t n = sb->len - start;
	if (n > 5 && !strcmp(sb->s + sb->len - 5, "/.git")) {
		snprintf(head, sizeof(head), "%.*s/HEAD", (int)n, sb->s + start);
		struct stat st;
		if (stat(head, &st) == 0) { /* a repository inside a work tree */
			sb->len -= 5;
			sb->s[sb->len] = '\0';
			if (sb->len == start)
				gw_strbuf_puts(sb, "/");
		}
	}
}

/* user@host:path: the host in lower case */
static void canonical_scp(struct gw_strbuf *sb, const char *url)
{
	const char *colon = strchr(url, ':');
	const char *at = memchr(url, '@', (size_t)(colon - url));
	const char *host = at ? at + 1 : url;
	gw_strbuf_add(sb, url, (size_t)(host - url));
	add_lower(sb, host, (size_t)(colon - host));
	gw_strbuf_puts(sb, ":");
	size_t keep = sb->len;
	gw_strbuf_puts(sb, colon + 1);
	strip_tail(sb, keep, 1);
}

/* Is port (plen bytes; empty counts) the scheme's default? */
static int default_port(const char *scheme, size_t slen, const char *port, size_t plen)
{
	static const struct {
		const char *scheme, *port;
	} defaults[] = { { "http", "80" }, { "https", "443" }, { "ssh", "22" }, { "git", "9418" } };
	int dflt = plen == 0;
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (strlen(defaults[i].scheme) == slen && !strncasecmp(scheme, defaults[i].scheme, slen) &&
		    strlen(defaults[i].port) == plen && !strncmp(port, defaults[i].port, plen))
			dflt = 1;
	return dflt;
}

/* [user[:password]@]host[:port] (alen bytes at auth) of a URL whose scheme
 * is the slen bytes at scheme: no HTTP credentials, the host in lower case,
 * no default port */
static void canonical_authority(struct gw_strbuf *sb, const char *scheme, size_t slen, const char *auth, size_t alen)
{
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;
	int http = (slen == 4 && !strncasecmp(scheme, "http", 4)) || (slen == 5 && !strncasecmp(scheme, "https", 5));
	const char *host = auth;
	if (at) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		/* HTTP credentials are not part of the address; an SSH user is */
		if (!http) {
			gw_strbuf_add(sb, auth, (size_t)((colon ? colon : at) - auth));
			gw_strbuf_puts(sb, "@");
		}
		host = at + 1;
	}
	size_t hlen = (size_t)(auth + alen - host);
	const char *port = NULL;
	for (const char *p = host + hlen; p > host; p--)
		if (p[-1] == ':') {
			port = p;
			break;
		} else if (p[-1] == ']') {
			break;
		}
	size_t name_len = port ? (size_t)(port - 1 - host) : hlen;
	add_lower(sb, host, name_len);
	if (port) {
		size_t plen = (size_t)(host + hlen - port);
		if (!default_port(scheme, slen, port, plen)) {
			gw_strbuf_puts(sb, ":");
			gw_strbuf_add(sb, port, plen);
		}
	}
}

char *gw_source_canonical_url(const char *url)
{
	struct gw_strbuf sb;
	const char *sep = strstr(url, "://");

	gw_strbuf_init(&sb);
	if (sep && (size_t)(sep - url) == 4 && !strncasecmp(url, "file", 4)) {
		const char *p = sep + 3;
		if (strncasecmp(p, "localhost/", 10) == 0)
			p += 9;
		canonical_path(&sb, p);
	} else if (!sep && is_scp_like(url)) {
		canonical_scp(&sb, url);
	} else if (!sep) {
		canonical_path(&sb, url);
	} else {
		/* scheme://[user[:password]@]host[:port]/path */
		size_t slen = (size_t)(sep - url);
		const char *auth = sep + 3;
		size_t alen = strcspn(auth, "/?#");
		add_lower(&sb, url, slen);
		gw_strbuf_puts(&sb, "://");
		canonical_authority(&sb, url, slen, auth, alen);
		size_t keep = sb.len;
		/* a query or fragment names no other repository, and a query may
		 * carry a token (?access_token=): not recorded */
		gw_strbuf_add(&sb, auth + alen, strcspn(auth + alen, "?#"));
		strip_tail(&sb, keep, 1);
	}
	return gw_strbuf_detach(&sb);
}
