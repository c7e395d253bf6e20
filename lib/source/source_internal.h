/* Shared between the files of lib/source/ only. */
#ifndef GITWARD_SOURCE_INTERNAL_H
#define GITWARD_SOURCE_INTERNAL_H

#include <git2.h>

struct gw_source;

/* The cache repository, borrowed. */
git_repository *gw_source__repo(struct gw_source *src);

#endif
