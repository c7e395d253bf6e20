/* A commit named by id or prefix in the Git cache, read offline (`gitward
 * rollback COMMIT`): what this node fetched is all it can apply without Git. */
#define _GNU_SOURCE
#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <string.h>

#include "gitward/source.h"

int gw_source_find_commit(char out[41], const char *cache_dir, const char *id, struct gw_error *err)
{
	git_repository *repo = NULL;
	git_object *obj = NULL;
	git_oid oid;
	size_t n = strlen(id);
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f') ||
		      (id[i] >= 'A' && id[i] <= 'F')))
			n = 0;
	if (n < 7 || n > 40)
		return gw_error_set(err, -EINVAL, "not a commit id (7 to 40 hex digits): \"%.60s\"", id);
	git_libgit2_init();
	if (git_repository_open_bare(&repo, cache_dir) < 0) {
		rc = gw_error_set(err, -ENOENT, "no Git cache at %s (nothing fetched yet)", cache_dir);
		goto out;
	}
	if (git_oid_fromstrn(&oid, id, n) < 0) {
		rc = gw_error_set(err, -EINVAL, "not a commit id: \"%.60s\"", id);
		goto out;
	}
	int g = git_object_lookup_prefix(&obj, repo, &oid, n, GIT_OBJECT_COMMIT);
	if (g == GIT_EAMBIGUOUS) {
		rc = gw_error_set(err, -EINVAL, "%.40s names more than one commit: give more digits", id);
	} else if (g < 0) {
		rc = gw_error_set(err, -ENOENT, "commit %.40s is not in this node's Git cache (%s)", id, cache_dir);
	} else {
		git_oid_tostr(out, 41, git_object_id(obj));
	}
out:
	git_object_free(obj);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}
