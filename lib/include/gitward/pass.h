/* One pass, one room: every command that reads a commit — the agent,
 * `reconcile`, `reconcile --dry-run`, `--dry-run --against` and `diff` —
 * runs the stages here, in this order:
 *
 *   source (open, fetch, resolve, verify) -> read (manifests, cache) ->
 *   select (this node's) -> observe -> plan -> [execute -> record]
 *
 * They differ only in the observer they plug in (what runs: the backends
 * and the state file; a node's status document; a base commit) and in
 * where they stop (a dry-run and a review after the plan). Whether
 * signatures are verified and the manifest cache used is decided here, once.
 * The agent's whole pass with the fallbacks of the SPEC (Git down, a bad
 * commit) is gw_pass_run; its schedule is gitward/schedule.h. */
#ifndef GITWARD_PASS_H
#define GITWARD_PASS_H

#include <stdbool.h>

#include "gitward/apply.h"
#include "gitward/fleetlock.h"
#include "gitward/review.h"
#include "gitward/source.h"
#include "gitward/window.h"

/* What a pass needs of the options, made once at the edge (agent/) from
 * the whole configuration; every pointer is borrowed. */
struct gw_pass_opts {
	const char *repo; /* URL or local path: the first of repos */
	/* several --repo: mirrors of one repository, tried in this order each
	 * fetch until one answers; passwords[i] (or NULL) goes with repos[i].
	 * nrepos 0: repo alone, with source.password */
	const char *const *repos;
	const char *const *passwords;
	size_t nrepos;
	const char *ref; /* branch, tag or commit; NULL: the remote's default branch */
	const char *const *paths; /* under which manifests are read (none: the root) */
	size_t npaths;
	const struct gw_strlist *excludes; /* --exclude */
	/* --window: outside every one, disruptive actions are held until the
	 * next opening (gw_pass_execute); none: always open */
	const struct gw_window *windows;
	size_t nwindows;
	const char *node;
	const struct gw_strmap *labels; /* the node's, "node" = its name included */
	const char *state_dir; /* the Git cache, the manifest cache, the state file */
	bool prune; /* resources that left Git are deleted */
	bool allow_empty; /* a plan that deletes everything is not refused */
	/* a branch may move to a commit that does not descend from the
	 * commit in force (else refused, GW_PASS_REWIND) */
	bool allow_rewind;
	bool move_to_repo;
	/* transport to the remote; read_only and cancel are set per pass */
	struct gw_source_opts source;
	/* --verify-signatures: only commits signed by these keys are read */
	bool verify_signatures;
	const char *allowed_signers;
	const char *gpg_keyring;
	/* --mode observe: plan and publish pending, apply and heal nothing */
	bool observe;
	/* --auto-revert: the healthy deadline in ms (0: off). A new commit
	 * whose created or updated resources do not run healthy within it of
	 * its first apply is reverted: the node goes back to the last commit
	 * whose changes did (the state file's good_commit), and the bad commit
	 * is refused (result "reverted") until the ref moves. */
	int64_t auto_revert_ms;
	/* why this pass runs, as the history records it (gitward/history.h):
	 * poll, webhook, signal, restart, rollback, auto-revert; NULL: poll */
	const char *trigger;
	/* the state dir's pin (gitward/pin.h) is followed: while the ref's tip
	 * is the one the pin was made at, the pinned commit is read instead
	 * (the agent and reconcile; not diff nor a review) */
	bool follow_pin;
	/* optional: called when the pass starts applying commit (its plan has
	 * actions), before any runs; --commit-status sets pending there */
	void (*on_apply)(void *ud, const char *commit);
	void *on_apply_ud;
	/* --fleet-lock (url NULL: off): a slot for the node is taken before
	 * the disruptive actions (update, delete) of a pass, which are held
	 * without one, and given back once a pass converged healthy */
	struct gw_fleetlock_opts fleet_lock;
};

/* GW_PASS_VERIFY: the commit's signature was refused (--verify-signatures);
 * GW_PASS_REWIND: the branch moved to a commit that does not descend from
 * the commit in force (without opts->allow_rewind) */
enum gw_pass_stage { GW_PASS_GIT = 1, GW_PASS_MANIFESTS, GW_PASS_STATE, GW_PASS_PLAN, GW_PASS_VERIFY, GW_PASS_REWIND };

/* What runs, as a plan's "observed" side. */
struct gw_observer {
	/* optional: with the repository of the pass still open, after the
	 * commit was read (a review reads a second commit of the same fetch) */
	int (*read)(struct gw_observer *self, struct gw_source *src, const struct gw_pass_opts *opts,
		    struct gw_error *err);
	/* fill pass->observed (owned by the pass) for the node of labels */
	int (*observe)(struct gw_observer *self, struct gw_pass *pass, const struct gw_strmap *labels,
		       char **state_error, struct gw_error *err);
	void (*free)(struct gw_observer *self);
	/* a review shows what would go, even all of it: an empty desired
	 * state is never refused */
	bool review;
};
void gw_observer_free(struct gw_observer *obs);

/* Live: the backends, merged with the state file's bookkeeping. */
struct gw_observer_live {
	struct gw_observer base;
	const struct gw_backend_set *set;
	const char *state_dir;
};
void gw_observer_live_init(struct gw_observer_live *o, const struct gw_backend_set *set, const char *state_dir);

/* A node's status document (`status --output json`, GET /status): its
 * resources as running; the commit it recorded, when the repository still
 * has it, gives their specs, so changes show field by field. */
struct gw_observer_status {
	struct gw_observer base;
	char *text;
	size_t len;
	char *origin; /* the file or URL, for errors */
	struct gw_review_node node; /* the node it describes: name, labels, the commit it recorded */
	struct gw_manifest_set recorded; /* that commit's manifests, when read */
};
/* text is taken on every path (freed on failure). A document that is not
 * a status fails here, before any fetch. */
int gw_observer_status_init(struct gw_observer_status *o, char *text, size_t len, const char *origin,
			    struct gw_error *err);

/* A base commit (`diff --base`): its selection for the node taken as
 * running. Its problems stay in set.diags; its valid resources count. */
struct gw_observer_commit {
	struct gw_observer base;
	const char *ref; /* borrowed */
	char commit[41];
	struct gw_manifest_set set;
};
void gw_observer_commit_init(struct gw_observer_commit *o, const char *ref);

/* The first stages: open the Git cache of opts->state_dir, fetch (unless
 * pass->offline), resolve opts->ref, refuse a branch's tip that does not
 * descend from the commit in force (pass->in_force, else the state file's;
 * unless opts->allow_rewind), verify the commit's signature (with
 * opts->verify_signatures, before any of its manifests is parsed), read and
 * validate its manifests (through the manifest cache: pass->cache, or the
 * state dir's file, written unless pass->read_only), then let obs read from
 * the same fetch. On failure *stage says where; manifest problems are in
 * pass->set.diags (-EINVAL). obs may be NULL. */
int gw_pass_read(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_pass_opts *opts,
		 struct gw_observer *obs, struct gw_error *err);
/* Only the fetch of a full pass, into the Git cache of opts->state_dir
 * (the agent runs it in a thread of its own while heal passes go on; the
 * pass that follows gets its result, see gw_pass_run). Touches nothing else. */
int gw_pass_fetch(const struct gw_pass_opts *opts, const struct gw_cancel *cancel, struct gw_error *err);
/* Select the resources of the commit for labels, observe through obs and
 * plan; again for another node (the previous plan is freed: take it first
 * with gw_pass_take). */
int gw_pass_observe_plan(struct gw_pass *pass, struct gw_observer *obs, const struct gw_strmap *labels,
			 const struct gw_pass_opts *opts, char **state_error, struct gw_error *err);
/* gw_pass_read, then gw_pass_observe_plan for opts->labels: where a
 * dry-run stops. */
int gw_pass_plan_commit(struct gw_pass *pass, enum gw_pass_stage *stage, const struct gw_pass_opts *opts,
			struct gw_observer *obs, char **state_error, struct gw_error *err);
/* Hold the disruptive actions of pass (update, delete: a changed spec or a
 * removal) for reason ("window", "fleet-lock"; a static string) until
 * until_ms (wall clock ms when they may go; 0: unknown). Call it after the
 * plan and before gw_pass_execute (which also holds for --window itself).
 * Creates and healing restarts still run; a dependent of a held action runs
 * when the held resource's old workload runs (else it waits). The pass is
 * then neither converged nor failed: result GW_RUN_HELD (when nothing else
 * fails or waits), the held actions published as pending with held and
 * until, no failure event, no --auto-revert clock; the next pass plans
 * again and applies them once nothing holds them. A second call keeps the
 * first reason and the later until. */
void gw_pass_hold_disruptive(struct gw_pass *pass, const char *reason, int64_t until_ms);
/* Execute the plan and record the state (a one-shot `reconcile`). */
int gw_pass_execute(struct gw_apply_report *out, struct gw_pass *pass, const struct gw_pass_opts *opts,
		    const struct gw_backend_set *set, struct gw_error *err);
/* A pass that failed at stage is recorded in the state dir without
 * touching workloads (see gw_apply_record_error). */
void gw_pass_record_failure(const struct gw_pass_opts *opts, const struct gw_backend_set *set, enum gw_pass_stage stage,
			    const struct gw_pass *pass, const struct gw_error *why);

/* One node's plan taken out of a pass, with what it borrows. */
struct gw_planned {
	struct gw_plan plan;
	struct gw_resource **selected; /* borrowed from the pass's set */
	struct gw_observed *observed;
	size_t nobserved;
};
void gw_pass_take(struct gw_planned *out, struct gw_pass *pass);
void gw_planned_free(struct gw_planned *p);

/* The state dir belongs to the repository that first used it: refuse
 * opts->repo when another one is recorded (and a commit or a resource was
 * recorded since: a first --repo that never got that far claims nothing),
 * unless opts->move_to_repo. With record (the holder of the state lock),
 * the repository is recorded the first time (also in a state dir of an
 * earlier version, which adopts it) and on a move. */
int gw_pass_check_repo(const struct gw_pass_opts *opts, bool record, struct gw_error *err);

/* Add a pass to the history of opts->state_dir (gitward/history.h) with
 * opts->trigger; a failure to write it is logged, never fails the pass.
 * commit may be NULL or "" (none resolved). */
void gw_pass__history(const struct gw_pass_opts *opts, const char *commit, const char *ref, const char *result,
		      const char *message);

/* `gitward rollback [COMMIT]`: pin state_dir to COMMIT (a full id or a
 * prefix of at least 7 hex digits, in the Git cache), or with id NULL to the
 * last commit before the one in force that converged (from the history),
 * made at the ref's tip the state file last recorded. -ENOENT: no such
 * commit (err says why). out: the pin as written. */
struct gw_pin;
int gw_pass_rollback(struct gw_pin *out, const char *state_dir, const char *id, const char *reason,
		     struct gw_error *err);

/* The result of a pass that gw_pass_read or gw_pass_observe_plan failed at stage. */
enum gw_run_result gw_run_result_of_stage(enum gw_pass_stage stage, const struct gw_pass *pass);

/* `gitward down`: observe what opts->state_dir records, plan its deletion
 * (dependents first; nothing desired, pruning on, an empty node allowed),
 * execute and record the node empty, with the last attempt's result
 * "down". pass is fresh (gw_pass_init): no commit is read. An empty plan
 * executes and records nothing (*out untouched). */
int gw_pass_down(struct gw_apply_report *out, struct gw_pass *pass, const struct gw_pass_opts *opts,
		 struct gw_observer *obs, const struct gw_backend_set *set, char **state_error, struct gw_error *err);

/* ---- the agent's pass ---- */

struct gw_run_summary {
	enum gw_run_result result;
	char commit[41]; /* the commit applied (the last good one after an invalid commit) */
	size_t count[5]; /* planned actions per gw_action_type */
	struct gw_apply_report report;
	char message[GW_ERROR_MSG_MAX + 300]; /* the error, when there was one */
	bool healing; /* converged to the commit in force without fetching */
	bool fetched; /* a full pass whose fetch (and resolving the ref) succeeded */
	/* the operator's controls in force: nothing applied, the plan's
	 * actions held (pending[gw_action_type]) */
	bool suspended, observe;
	size_t pending[5];
	/* disruptive actions held (gw_pass_hold_disruptive): why (static;
	 * NULL: none), until when (wall clock ms; 0: unknown) */
	const char *held;
	int64_t held_until_ms;
	/* "no manifest in ..." when a place read held none, else "" */
	char no_manifest[1024];
	/* --auto-revert: this pass went back from reverted to commit */
	char reverted[41];
};

/* GW_PASS_FULL: fetch, then converge (with the fallbacks of the SPEC: Git
 * down or a bad commit keep the commit in force, healed). GW_PASS_HEAL: no
 * fetch; converge to the commit in force (a workload died). */
enum gw_pass_mode { GW_PASS_FULL, GW_PASS_HEAL };
/* A whole pass: read, select, observe, plan, execute, record. A failing
 * fetch touches nothing. An invalid commit, or one whose signature is
 * refused, is applied not at all: the last good commit stays in force (and
 * is reconciled, so self-healing goes on) while last_error names the
 * problem. cache: parsed manifests kept across passes (NULL: the state
 * dir's cache file). fetched: a full pass whose fetch already ran
 * (gw_pass_fetch), with its result (code 0: fetched); NULL: it fetches. */
void gw_pass_run(struct gw_run_summary *out, const struct gw_pass_opts *opts, const struct gw_backend_set *set,
		 const struct gw_cancel *cancel, enum gw_pass_mode mode, struct gw_manifest_cache *cache,
		 const struct gw_error *fetched);

/* `reconcile --auto-revert` after applying a commit whose changes are not
 * running healthy yet (report->revert_at): heal passes over the commit in
 * force until they are (returns 0) or its deadline has passed and it was
 * reverted (out->result GW_RUN_REVERTED; returns 1); bounded by the
 * deadline plus one pass. */
int gw_pass_until_healthy(struct gw_run_summary *out, const struct gw_pass_opts *opts, const struct gw_backend_set *set,
			  const struct gw_cancel *cancel, int64_t revert_at);
/* The commit of pass (planned: its state read) was reverted and the ref
 * has not moved since: a one-shot `reconcile` applies nothing, msg says
 * why. */
bool gw_pass_refused_reverted(const struct gw_pass *pass, char *msg, size_t size);

#endif
