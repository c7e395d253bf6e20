/* Git on libgit2: a bare clone kept under the state dir and only fetched on
 * later passes; refs resolve to commits; manifests come from blobs of the
 * commit's tree, so a pass never sees a half-written file and never follows
 * a symlink. libgit2 errors are translated here, once. */
#define _GNU_SOURCE
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source_int.h"

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

static int corrupt(struct gw_error *err, const struct gw_source *src)
{
	git_fail(err, -EIO, "the git cache is corrupt");
	return gw_error_prefix(err, "%s (remove it and gitward clones again)", src->cache_dir);
}

static int init_once(void)
{
	static int done;
	if (!done) {
		git_libgit2_init();
		/* the cache is ours alone; skip the ownership check of safe.directory */
		git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
		done = 1;
	}
	return 0;
}

/* A local path (not a URL, not scp-like "user@host:path") made absolute. */
static char *normalize_url(const char *url)
{
	if (strstr(url, "://"))
		return gw_xstrdup(url);
	const char *colon = strchr(url, ':');
	const char *slash = strchr(url, '/');
	if (colon && (!slash || colon < slash) && url[0] != '/' && url[0] != '.')
		return gw_xstrdup(url); /* scp-like */
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
		rc = -1;
	if (rc < 0) {
		git_repository_free(repo);
		return corrupt(err, src);
	}
	git_repository_free(src->repo);
	src->repo = repo;
	return 0;
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

int gw_source_resolve(char out_commit[41], char **out_ref, struct gw_source *src, const char *ref, struct gw_error *err)
{
	git_object *obj = NULL;
	git_oid oid;
	char name[600];
	char *used = NULL;
	int rc = GIT_ENOTFOUND;

	if (!src->repo)
		return gw_error_set(err, -ENOENT, "%s: nothing fetched yet", src->url);
	if (!ref || !*ref) {
		git_reference *head = NULL;
		if (git_reference_lookup(&head, src->repo, "refs/remotes/origin/HEAD") < 0 ||
		    git_reference_type(head) != GIT_REFERENCE_SYMBOLIC) {
			git_reference_free(head);
			return gw_error_set(err, -ENOENT, "%s: the remote has no default branch; give --ref", src->url);
		}
		const char *t = git_reference_symbolic_target(head);
		used = gw_xstrdup(strncmp(t, "refs/remotes/origin/", 20) == 0 ? t + 20 : t);
		git_reference_free(head);
		ref = used;
	}
	if (is_hex40(ref) && git_oid_fromstr(&oid, ref) == 0) {
		rc = git_object_lookup(&obj, src->repo, &oid, GIT_OBJECT_ANY);
	} else if (strlen(ref) < 500) {
		const char *const patterns[] = { "refs/remotes/origin/%s", "refs/tags/%s", "%s" };
		for (size_t i = 0; i < 3 && rc < 0; i++) {
			git_reference *r = NULL;
			snprintf(name, sizeof(name), patterns[i], ref);
			if (i == 2 && strncmp(ref, "refs/", 5) != 0)
				break;
			if (git_reference_lookup(&r, src->repo, name) == 0) {
				rc = git_reference_peel(&obj, r, GIT_OBJECT_COMMIT);
				git_reference_free(r);
			}
		}
	}
	if (rc < 0) {
		gw_error_set(err, -ENOENT, "ref \"%s\" not found in %s (no such branch, tag or commit)", ref, src->url);
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

struct walk {
	struct gw_manifest_set *set;
	git_repository *repo;
	git_odb *odb;
	struct gw_strmap *seen; /* only when several --path may overlap */
	int rc;
	struct gw_error *err;
};

static void read_blob(struct walk *w, const git_oid *id, const char *path)
{
	size_t len;
	git_object_t type;
	git_blob *blob = NULL;

	if (w->seen) {
		if (gw_strmap_get(w->seen, path))
			return;
		gw_strmap_set(w->seen, path, "");
	}
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
	gw_manifest_set_add_file(w->set, path, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
	git_blob_free(blob);
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
	if (npaths == 0) {
		paths = root_path;
		npaths = 1;
	}
	for (size_t i = 0; i < npaths && w.rc == 0; i++) {
		char *p = clean_path(paths[i]);
		if (!*p) {
			walk_tree(&w, root, "", 0);
		} else {
			git_tree_entry *e = NULL;
			if (git_tree_entry_bypath(&e, root, p) < 0) {
				w.rc = gw_error_set(err, -ENOENT, "--path %s: no such folder in commit %.12s", p,
						    commit_hex);
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
		free(p);
	}
	gw_strmap_free(&seen);
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
	free(src->url);
	free(src->cache_dir);
	free(src);
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
