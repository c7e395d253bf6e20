/* Shared by git.c (cache, refs, trees) and fetch.c (the bounded fetch). */
#ifndef GITWARD_SOURCE_INT_H
#define GITWARD_SOURCE_INT_H

#include <git2.h>

#include "gitward/source.h"

struct gw_source {
	git_repository *repo; /* NULL until the first fetch made the cache */
	char *url; /* never holds a password */
	char *cache_dir; /* read_only: the private repository inside scratch */
	char *shared_dir; /* read_only: the state dir's cache, only read */
	char *scratch; /* read_only: the temporary directory */
	struct gw_source_opts opts;
};

/* Errors from the cache on disk rather than from the remote (libgit2's last
 * error). */
int gw_source__cache_fault(void);
/* The cache repository, borrowed (NULL before the first fetch). */
git_repository *gw_source__repo(struct gw_source *src);
/* Open the cache at src->cache_dir into src->repo (replacing a handle). */
int gw_source__reopen(struct gw_source *src, struct gw_error *err);
/* The cache named in errors: the state dir's, also when read through a
 * private copy. */
const char *gw_source__cache_name(const struct gw_source *src);

/* The folder a local --repo names (a path or file://), inside url; NULL for
 * a remote URL. */
const char *gw_source__local_path(const char *url);

#endif
