/* The state dir: one lock (lib/state/lock.c), the state file (written
 * atomically), and the status document rendered from it. */
#ifndef GITWARD_STATE_H
#define GITWARD_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gitward/observed.h"
#include "gitward/util.h"

/* What a pass ended with: the values of the state file's
 * last_attempt_result and of gitward_sync_total's result label. */
enum gw_run_result {
	GW_RUN_CONVERGED,
	GW_RUN_NOT_CONVERGED,
	GW_RUN_GIT_ERROR,
	GW_RUN_INVALID,
	GW_RUN_ERROR,
	GW_RUN_UNVERIFIED, /* like GW_RUN_INVALID: the commit's signature was refused */
	GW_RUN_REWIND, /* like GW_RUN_INVALID: the branch moved to a commit not descending from the one in force */
	GW_RUN_REVERTED, /* --auto-revert: the commit in force went back, or the ref's tip is a reverted commit */
	GW_RUN_HELD, /* nothing failed or waits, but disruptive actions are held (a window, a fleet lock) */
	GW_RUN_MAX
};
/* "success", "not_converged", "git_error", "invalid", "error", "unverified", "rewind", "reverted", "held" */
const char *gw_run_result_to_string(enum gw_run_result r);

/* One remote of several --repo, as the last fetches found it
 * (STATE/remotes.json; URLs and errors never hold credentials). */
struct gw_remote_status {
	char *url;
	char *last_error; /* the last fetch's error, NULL when it succeeded */
	int64_t last_success; /* unix seconds, 0 = never */
	unsigned long long errors; /* fetches from it that failed */
};

struct gw_state_file {
	char *node;
	struct gw_strmap labels; /* the node's labels of the pass, without "node" (its name) */
	char *commit; /* last applied commit */
	char *ref; /* the ref's name (never a commit id, unless --ref is one) */
	/* the ref's tip at the last successful fetch, and whether it was invalid
	 * or its signature refused (the last good commit stood in for it) */
	char *remote_commit;
	bool remote_invalid;
	int64_t last_sync; /* unix seconds of the last successful pass, 0 = never */
	int64_t last_attempt; /* unix seconds of the last pass, whatever its result; 0 = never */
	char *last_attempt_result; /* its result: "success", "not_converged", "git_error", ... */
	char *last_error;
	struct gw_observed *res;
	size_t n;
	/* the operator's controls at the last pass (gitward/control.h) */
	char *mode; /* "enforce" or "observe"; NULL: enforce */
	bool suspended;
	char *suspended_reason, *suspended_since; /* RFC 3339 */
	/* the operator's pin (gitward/pin.h), never saved: read from its file
	 * when shown (gw_pin_overlay); commit NULL: none */
	char *pinned_commit, *pinned_reason, *pinned_since, *pinned_tip;
	/* the actions the node would take but did not (observe, suspended,
	 * held) */
	struct gw_pending_action {
		int kind; /* enum gw_kind */
		char *name;
		char action[16]; /* create, update, delete, restart */
		char held[16]; /* "window", "fleet-lock"; "": not a hold */
		int64_t until; /* held until (unix s; 0: unknown) */
	} * pending;
	size_t npending;
	/* --auto-revert (see gitward/pass.h): the last commit a pass converged
	 * on, or whose changes ran healthy; since when the commit in force is applied (unix s; 0: not yet,
	 * held); what it created or updated ("Kind/name"); and when it is
	 * reverted unless those run and are healthy (unix s; 0: not watched) */
	char *good_commit;
	int64_t commit_since;
	char **changed;
	size_t nchanged;
	int64_t revert_at;
	/* the commit reverted: not applied again until the ref moves */
	char *reverted_commit, *reverted_reason;
	int64_t reverted_at;
	/* several --repo: each remote's last fetch (read beside the state
	 * file from STATE/remotes.json; never written into it) */
	struct gw_remote_status *remotes;
	size_t nremotes;
};
/* At most this many resources are watched for an auto-revert. */
#define GW_STATE_CHANGED_MAX 4096

/* How a workload's opaque handle shows to people (the backends' describe,
 * reached from above): add the status object's identity keys to fields and
 * a short text ("pid 4242") to text. */
typedef void gw_state_describe_fn(json_t *fields, char *text, size_t size, const struct gw_observed *o, void *ud);
struct gw_state_describer {
	gw_state_describe_fn *fn;
	void *ud;
};

void gw_state_file_init(struct gw_state_file *st);
void gw_state_file_free(struct gw_state_file *st);

/* Labels read back from a file or a status document: at most this many. */
#define GW_STATE_LABELS_MAX 256
/* st's labels become a copy of labels less "node" (the node's name, kept
 * apart in st->node). */
void gw_state_labels_set(struct gw_state_file *st, const struct gw_strmap *labels);
/* Labels as JSON: {"role": "edge"} (caller frees). */
json_t *gw_state_labels_json(const struct gw_strmap *labels);
/* The labels of a JSON object of strings, less "node", into *out (empty
 * before); -EBADMSG (out empty) for anything else or more than
 * GW_STATE_LABELS_MAX. */
int gw_state_labels_parse(struct gw_strmap *out, const json_t *obj);
/* A missing file is an empty state; a torn or corrupt one is an error. An
 * entry written before handles (pid, start_time, id keys) is converted on
 * load to the handle those keys make: compact JSON of the ones set, keys
 * sorted ({"pid":N,"start_time":S} or {"id":"..."}). */
int gw_state_load(struct gw_state_file *out, const char *path, struct gw_error *err);
/* The reader behind gw_state_load, on len bytes read from path (for errors). */
int gw_state_parse(struct gw_state_file *out, const char *data, size_t len, const char *path, struct gw_error *err);
/* Each entry keeps its handle as-is ("handle") and, for readers of the file,
 * the identity keys describe gives (d may be NULL: none). */
int gw_state_save(const struct gw_state_file *st, const char *path, const struct gw_state_describer *d,
		  struct gw_error *err);

/* ---- workload records (lib/state/record.c) ----
 * The fields every workload record shares, with the same keys in the state
 * file's entries and the backends' run records: spec_hash, spec, restart,
 * depends_on, started_at. The backends add their own identity keys. */

/* A new JSON object with o's shared fields (caller adds and frees). */
json_t *gw_record_new(const struct gw_observed *o);
/* Write rec (compact JSON) to path atomically. err may be NULL. */
int gw_record_write(const char *path, const json_t *rec, struct gw_error *err);
/* A run record file as JSON (at most 1 MiB, never through a symlink), or
 * NULL when it is missing, unreadable or not JSON. */
json_t *gw_record_load(const char *path);
/* Call fn for every DIR/NAME.EXT (ext with its dot: ".json") whose NAME is a
 * valid resource name (others are logged and skipped), in directory order;
 * fn returning < 0 stops the scan with that value. A missing dir holds
 * nothing. */
int gw_record_scan(const char *dir, const char *ext, int (*fn)(const char *name, const char *path, void *ud), void *ud,
		   struct gw_error *err);
/* Fill o from rec's shared fields. Fails with -EBADMSG without a valid
 * spec_hash. */
int gw_record_parse(struct gw_observed *o, enum gw_kind kind, const char *name, const json_t *rec);
/* The fields of an entry that status shows (state, health, detail,
 * restarts), as the state file and a status document write them: a missing
 * or unknown state is pending, a missing or unknown health unknown. Shared
 * by the state file's reader and --against's reader of a status. */
void gw_state_entry_status(struct gw_observed *o, const json_t *r);
/* The same on a record's bytes (a backend's run record file): -EBADMSG
 * unless they hold one JSON object with a valid record. */
int gw_record_parse_buf(struct gw_observed *o, enum gw_kind kind, const char *name, const char *data, size_t len);

/* SPEC's status object (caller frees); d gives each resource's identity
 * keys (NULL: none). */
char *gw_state_render_status(const struct gw_state_file *st, const struct gw_state_describer *d);
void gw_state_render_status_text(FILE *f, const struct gw_state_file *st, const struct gw_state_describer *d);

/* The state dir, the run dir (and its process/ and vm/) and the log dir are
 * directories (no links) owned by this user and writable by no one else;
 * else -EPERM/-ENOTDIR naming the fix. A run or log dir outside the state
 * dir is created first. */
int gw_state_dir_check(const char *state_dir, const char *run_dir, const char *log_dir, struct gw_error *err);
/* What gw_state_lock holds: STATE/lock, and RUN/lock of an earlier version
 * while that file exists (-1: none). */
struct gw_lock {
	int fd;
	int old_fd;
};
void gw_lock_init(struct gw_lock *lock);
/* Check the dirs (gw_state_dir_check), then take the state dir's lock
 * (gw_path_lock) or fail at once naming the holder's pid. Refused too when
 * the run dir moved away from STATE/run while records remain there, when
 * the run dir belongs to another state dir (its RUN/owner; -EBUSY naming
 * it), and while an earlier version holds RUN/lock. A run dir that belongs
 * to none is recorded as this state dir's. The fds stay open (O_CLOEXEC)
 * for the life of the process; *out is set only on success. */
int gw_state_lock(struct gw_lock *out, const char *state_dir, const char *run_dir, const char *log_dir,
		  struct gw_error *err);
/* Release what gw_state_lock took (a lock from gw_lock_init: nothing). */
void gw_state_unlock(struct gw_lock *lock);
/* gw_state_dir_check for readers (a dry-run): a state dir that does not
 * exist yet is fine, nothing is recorded there. */
int gw_state_dir_check_existing(const char *dir, struct gw_error *err);
/* For `status`: the state dir exists and can be read; else an error naming
 * it (-ENOENT: no gitward has used it). */
int gw_state_dir_readable(const char *dir, struct gw_error *err);
/* The remotes of the repository a state dir belongs to (gw_source_canonical_url
 * of each --repo), from DIR/repository, one a line (an earlier version wrote
 * one line): out is empty when none is recorded (a state dir of an earlier
 * version, or never used). */
int gw_state_repo_read(struct gw_strlist *out, const char *dir, struct gw_error *err);
int gw_state_repo_write(const char *dir, const char *const *repos, size_t n, struct gw_error *err);
/* STATE/remotes.json (struct gw_remote_status): *out NULL and *n 0 when
 * there is none. */
int gw_remotes_load(struct gw_remote_status **out, size_t *n, const char *dir, struct gw_error *err);
int gw_remotes_save(const char *dir, const struct gw_remote_status *r, size_t n, struct gw_error *err);
void gw_remotes_free(struct gw_remote_status *r, size_t n);
/* Default state dir (gw_dirs_default_state of this process). */
char *gw_state_default_dir(void);
/* When state_dir is that default, which nobody may have chosen: "DIR is the
 * default state dir for ..." in buf; else NULL. */
const char *gw_state_default_dir_note(char *buf, size_t size, const char *state_dir);

#endif
