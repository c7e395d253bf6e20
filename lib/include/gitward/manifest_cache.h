/* Parsed, validated, canonical resources by blob id, so that a pass parses
 * only what changed. Kept in memory by the agent across passes and on disk
 * (a file in the state dir, see gw_path_manifest_cache) for one-shot runs.
 *
 * Only files that gave no diagnostic at all are cached: a file with a
 * problem is parsed again every time, so its messages come out the same.
 * The resources are stored as parsed, before secretEnvFiles are resolved
 * against the commit (that is redone on every read).
 *
 * The file: a header (magic, format version, canonical-form version, size
 * of the model), the entries, and an HMAC-SHA256 of all that keyed with a
 * secret of the agent (PATH.key, 0600, made by the first write). A file
 * that is truncated, corrupt, of another version, not a cache at all, not
 * keyed with that key, not this user's or writable by group or others is
 * ignored (and replaced on the next write), never trusted; a decoded entry
 * still goes through the validator once (gw_manifest__check_decoded), or
 * its file is parsed again. Written to a temporary
 * file and renamed into place. */
#ifndef GITWARD_MANIFEST_CACHE_H
#define GITWARD_MANIFEST_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "gitward/manifest.h"

#define GW_MANIFEST_CACHE_FORMAT 2u /* 2: keyed digest */
#define GW_BLOB_ID_MAX 32u /* bytes of a blob id (SHA-1: 20, SHA-256: 32) */

struct gw_manifest_cache;

struct gw_manifest_cache *gw_manifest_cache_new(void);
void gw_manifest_cache_free(struct gw_manifest_cache *c);
/* Replace the entries with those of the file at path. 0 when loaded;
 * -ENOENT when there is none; -ESTALE when it is of another version;
 * another negative errno, with the reason in err, when the file was refused
 * (unreadable, truncated, corrupt): the cache is then empty. */
int gw_manifest_cache_load(struct gw_manifest_cache *c, const char *path, struct gw_error *err);
/* The rules compiled for key (the .gitwardignore's blob id and the
 * --exclude patterns), borrowed; NULL when others or none are kept. */
const struct gw_ignore *gw_manifest_cache_ignore(const struct gw_manifest_cache *c, const char *key);
/* Keep ig (consumed) as the rules for key, in memory only, replacing those
 * kept; returns ig, borrowed. */
const struct gw_ignore *gw_manifest_cache_keep_ignore(struct gw_manifest_cache *c, const char *key,
						      struct gw_ignore *ig);
/* Write every entry to path (temporary file, then rename). */
int gw_manifest_cache_save(struct gw_manifest_cache *c, const char *path, struct gw_error *err);
/* Has a load been tried (whatever its outcome)? */
bool gw_manifest_cache_loaded(const struct gw_manifest_cache *c);
/* End of one commit's read: entries not used in the last keep reads are
 * dropped. True when entries were added since the last save. */
bool gw_manifest_cache_end_read(struct gw_manifest_cache *c, unsigned keep);
size_t gw_manifest_cache_count(const struct gw_manifest_cache *c);
/* Hits and misses since the cache was made. */
void gw_manifest_cache_stats(const struct gw_manifest_cache *c, size_t *hits, size_t *misses);

/* For the source (set->cache may be NULL: then nothing is cached).
 * Add the file at path whose blob is id from the cache: 1 when done (its
 * resources appended, the bounds of the set applied), 0 when it must be
 * read and given to gw_manifest_set_add_blob. */
int gw_manifest_set_add_cached(struct gw_manifest_set *set, const char *file, const unsigned char *id, size_t idlen);
/* gw_manifest_set_add_file, then cache the result under id when the file
 * gave no diagnostic. */
void gw_manifest_set_add_blob(struct gw_manifest_set *set, const char *file, const unsigned char *id, size_t idlen,
			      const char *data, size_t len);

/* Count one file of len bytes against the bounds of the set (files, bytes per
 * commit): -1, with the diagnostic when it is the first past one, when the
 * file must not be read. */
int gw_manifest_set__count(struct gw_manifest_set *set, const char *file, size_t len);
/* A resource decoded from a cache file, through the validator as if parsed
 * (lib/manifest/validate.c): 0 when it is what a manifest could give and
 * its canonical form and spec hash are its own, else -EINVAL. */
int gw_manifest__check_decoded(const struct gw_resource *r);

/* Exposed for the unit tests: one resource to bytes and back. */
void gw_manifest_cache__put_resource(struct gw_strbuf *sb, const struct gw_resource *r);
/* NULL when the bytes do not hold a whole resource. */
struct gw_resource *gw_manifest_cache__get_resource(const char **p, const char *end, const char *file);

#endif
