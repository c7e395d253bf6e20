/* Manifests from disk, for `validate`: files and folders walked recursively
 * in name order, hidden entries skipped, symlinks inside folders not followed
 * (as in a Git tree); the work tree's .gitwardignore and --exclude leave
 * files out as they do in a pass. */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gitward/manifest.h"

int gw_manifest_is_manifest_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) || (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static void add_file(struct gw_manifest_set *set, const char *path)
{
	struct gw_error err;
	char *data;
	size_t len;
	int rc = gw_file_read(&data, &len, path, GW_MANIFEST_FILE_MAX, &err);

	if (rc == -EFBIG) {
		set->files++;
		gw_diags_add(&set->diags, path, 0, 0, "file larger than the limit of %u bytes", GW_MANIFEST_FILE_MAX);
		return;
	}
	if (rc < 0) {
		gw_diags_add(&set->diags, path, 0, 0, "%s", err.msg);
		return;
	}
	gw_manifest_set_add_file(set, path, data, len);
	free(data);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Where exclusions are matched from: the work tree holding path (the
 * nearest folder with a .git), else path's own folder. */
struct scope {
	struct gw_ignore *ignore;
};

static char *rel_join(const char *rel, const char *name)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "%s%s%s", rel, *rel ? "/" : "", name);
	return gw_strbuf_detach(&sb);
}

static void add_dir(struct gw_manifest_set *set, const char *dir, const char *rel, struct scope *sc, unsigned depth)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (depth > GW_MANIFEST_TREE_DEPTH_MAX) {
		gw_diags_add(&set->diags, dir, 0, 0, "folders nested deeper than %u levels",
			     GW_MANIFEST_TREE_DEPTH_MAX);
		return;
	}
	d = opendir(dir);
	if (!d) {
		gw_diags_add(&set->diags, dir, 0, 0, "cannot open folder: %s", strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			names = gw_xrealloc(names, cap * sizeof(char *));
		}
		names[n++] = gw_xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		if (!strcmp(dir, "."))
			snprintf(path, sizeof(path), "%s", names[i]);
		else
			snprintf(path, sizeof(path), "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
		if (lstat(path, &st) == 0) {
			char *sub = rel_join(rel, names[i]);
			const char *by = gw_ignore_match(sc->ignore, sub, S_ISDIR(st.st_mode));
			if (by) {
				if (S_ISDIR(st.st_mode) || gw_manifest_is_manifest_name(names[i]))
					gw_manifest_set_skip(set, path, by);
			} else if (S_ISDIR(st.st_mode))
				add_dir(set, path, sub, sc, depth + 1);
			else if (S_ISREG(st.st_mode) && gw_manifest_is_manifest_name(names[i]))
				add_file(set, path);
			free(sub);
		}
		free(names[i]);
	}
	free(names);
}

/* The work tree root above abs (a folder), or abs itself; caller frees. */
static char *find_root(const char *abs)
{
	char *dir = gw_xstrdup(abs);
	for (;;) {
		struct gw_strbuf git;
		struct stat st;
		gw_strbuf_init(&git);
		gw_strbuf_printf(&git, "%s/.git", dir);
		int found = lstat(git.s, &st) == 0;
		gw_strbuf_free(&git);
		if (found)
			return dir;
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			break;
		*slash = '\0';
	}
	free(dir);
	return gw_xstrdup(abs);
}

/* The scope of path: its root's .gitwardignore and --exclude; *rel is
 * path relative to that root (caller frees). */
static void scope_open(struct scope *sc, char **rel, struct gw_manifest_set *set, const char *path, bool is_dir)
{
	char abs[PATH_MAX], *root, *text = NULL;
	size_t len = 0;
	struct gw_error err;

	sc->ignore = NULL;
	*rel = gw_xstrdup("");
	if (!realpath(path, abs))
		return;
	if (!is_dir) {
		char *slash = strrchr(abs, '/');
		root = gw_xstrndup(abs, slash && slash != abs ? (size_t)(slash - abs) : 1);
		char *r = find_root(root);
		free(root);
		root = r;
	} else {
		root = find_root(abs);
	}
	struct gw_strbuf f;
	gw_strbuf_init(&f);
	gw_strbuf_printf(&f, "%s/.gitwardignore", root);
	if (gw_file_read(&text, &len, f.s, GW_MANIFEST_FILE_MAX, &err) < 0)
		text = NULL;
	gw_strbuf_free(&f);
	sc->ignore = gw_manifest_ignore_new(set, text, len);
	free(text);
	size_t n = strlen(root);
	if (strcmp(root, "/") != 0 && strncmp(abs, root, n) == 0 && abs[n] == '/') {
		free(*rel);
		*rel = gw_xstrdup(abs + n + 1);
	}
	free(root);
}

/* path as files are named in every output, as Git names them: no "./",
 * no empty or "." parts, no trailing "/" ("./apps//x/" -> "apps/x"; "./"
 * -> "."). Caller frees. */
static char *clean_name(const char *path)
{
	struct gw_strbuf sb;
	const char *p = path;
	gw_strbuf_init(&sb);
	if (*p == '/')
		gw_strbuf_puts(&sb, "/");
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n && !(n == 1 && p[0] == '.')) {
			if (sb.len && sb.s[sb.len - 1] != '/')
				gw_strbuf_puts(&sb, "/");
			gw_strbuf_add(&sb, p, n);
		}
		p += n;
		p += strspn(p, "/");
	}
	if (!sb.len)
		gw_strbuf_puts(&sb, ".");
	return gw_strbuf_detach(&sb);
}

void gw_manifest_set_add_path(struct gw_manifest_set *set, const char *given)
{
	struct stat st;
	struct scope sc;
	char *rel, *path = clean_name(given);

	if (stat(path, &st) < 0) {
		gw_diags_add(&set->diags, path, 0, 0, "cannot read: %s", strerror(errno));
		free(path);
		return;
	}
	scope_open(&sc, &rel, set, path, S_ISDIR(st.st_mode));
	const char *by = *rel ? gw_ignore_match(sc.ignore, rel, S_ISDIR(st.st_mode)) : NULL;
	size_t files = set->files, diags = set->diags.n;
	if (by)
		gw_manifest_set_skip(set, path, by);
	else if (S_ISDIR(st.st_mode))
		add_dir(set, path, rel, &sc, 0);
	else
		add_file(set, path);
	if (set->files == files && set->diags.n == diags)
		gw_manifest_set_empty(set, path);
	free(rel);
	free(path);
	gw_ignore_free(sc.ignore);
}
