/* Shared by git.c (cache, refs, trees) and fetch.c (the bounded fetch). */
#ifndef GITWARD_SOURCE_INT_H
#define GITWARD_SOURCE_INT_H

#include <git2.h>

#include "gitward/source.h"

struct gw_source {
	git_repository *repo; /* NULL until the first fetch made the cache */
	char *url; /* never holds a password */
	char *cache_dir;
	struct gw_source_opts opts;
};

/* Errors from the cache on disk rather than from the remote (libgit2's last
 * error). */
int gw_source__cache_fault(void);
/* Open the cache at src->cache_dir into src->repo (replacing a handle). */
int gw_source__reopen(struct gw_source *src, struct gw_error *err);

#endif
