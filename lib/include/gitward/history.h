/* A node's history: the passes that applied something or failed, newest
 * first, in STATE/history.json (`gitward history`, `gitward rollback`).
 *
 *   {"version": 1, "history": [{"commit", "ref", "time", "result",
 *     "trigger", "message", "count", "last"}, ...]}
 *
 * At most GW_HISTORY_MAX entries are kept (the oldest dropped). A pass that
 * repeats the newest entry's (commit, result, message) is not added: the
 * newest entry's count grows and "last" says when it was seen last, so a
 * commit failing at every poll takes one entry. The file is written
 * atomically (temp file + rename) by the holder of the state lock, right
 * after the state file; readers take no lock. It is read back bounded and
 * validated field by field: a file that fails is refused whole, never used
 * in part. */
#ifndef GITWARD_HISTORY_H
#define GITWARD_HISTORY_H

#include <stddef.h>

#include "gitward/util.h"

#define GW_HISTORY_MAX 100
#define GW_HISTORY_FILE_MAX (1024 * 1024)

struct gw_history_entry {
	char commit[41]; /* full hex id; "" when none was resolved (Git unreachable) */
	char ref[256]; /* the ref's name, or "" */
	char time[32]; /* RFC 3339 with ms, UTC: when first seen; "" in an append: now */
	char result[16]; /* converged | failed | reverted | rolled-back */
	char trigger[16]; /* poll | webhook | signal | rollback | auto-revert | restart */
	char message[512];
	unsigned count; /* passes coalesced into this entry (>= 1) */
	char last[32]; /* RFC 3339 ms UTC of the last of them */
};

/* STATE/history.json in buf of size. */
char *gw_path_history(char *buf, size_t size, const char *state_dir);

/* Append e (time "" = now; count and last are set here) to the history of
 * state_dir, coalescing a repeat of the newest entry. result and trigger must
 * be one of the words above, commit 40 hex or "". A corrupt file is set aside
 * as history.json.corrupt (logged) and a new history begun. */
int gw_history_append(const char *state_dir, const struct gw_history_entry *e, struct gw_error *err);

/* The history of state_dir, newest first; *out (freed by the caller) NULL
 * and *n 0 when there is none yet. A file that is not a valid history fails
 * with -EBADMSG and err naming the file and what is wrong. */
int gw_history_load(struct gw_history_entry **out, size_t *n, const char *state_dir, struct gw_error *err);

#endif
