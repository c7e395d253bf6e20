/* Manifests from disk, for `validate`: files and folders walked recursively
 * in name order, hidden entries skipped, symlinks inside folders not followed
 * (as in a Git tree). */
#define _GNU_SOURCE
#include <dirent.h>
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

static void add_dir(struct gw_manifest_set *set, const char *dir, unsigned depth)
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
		snprintf(path, sizeof(path), "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
		if (lstat(path, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				add_dir(set, path, depth + 1);
			else if (S_ISREG(st.st_mode) && gw_manifest_is_manifest_name(names[i]))
				add_file(set, path);
		}
		free(names[i]);
	}
	free(names);
}

void gw_manifest_set_add_path(struct gw_manifest_set *set, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		gw_diags_add(&set->diags, path, 0, 0, "cannot read: %s", strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode))
		add_dir(set, path, 0);
	else
		add_file(set, path);
}
