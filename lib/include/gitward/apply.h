/* Applying a pass: observe through the backends, plan, execute in dependency
 * order with independent resources in parallel, record the outcome. */
#ifndef GITWARD_APPLY_H
#define GITWARD_APPLY_H

#include <stdbool.h>

#include "gitward/control.h"
#include "gitward/backend.h"
#include "gitward/manifest.h"
#include "gitward/plan.h"
#include "gitward/state.h"

/* The ref's tip as a pass fetched it. commit is empty when the pass did
 * not fetch (a heal) or its fetch failed: what was recorded stays. */
struct gw_remote_tip {
	char commit[41];
	/* invalid manifests, or its signature refused: the last good commit
	 * stood in for it */
	bool invalid;
};

/* A heal pass also runs the health probes due this soon: the agent wakes
 * for the earliest, and those close behind it share the pass. */
#define GW_APPLY_PROBE_EARLY_MS 250

/* The data of one pass: what the commit declares, this node's selection,
 * what runs, the plan. The pass layer (gitward/pass.h) fills it stage by
 * stage; apply observes into it and executes its plan. */
struct gw_pass {
	char commit[41];
	char *ref; /* its name ("main"), also when the commit is another one */
	struct gw_remote_tip remote; /* recorded as remote_commit */
	struct gw_manifest_set set; /* every resource of the commit */
	struct gw_resource **selected; /* borrowed from set: this node's */
	size_t nselected;
	struct gw_state_file state; /* as recorded */
	struct gw_observed *observed; /* what runs, from the observer (owned) */
	size_t nobserved;
	struct gw_plan plan;
	int have_plan;
	char *note; /* recorded as last_error when the apply itself succeeds */
	/* recorded as last_attempt_result instead of "success" or
	 * "not_converged" (static): the last good commit stood in for an
	 * invalid or refused one */
	const char *result;
	/* write nothing under the state dir (a dry-run beside the agent; see
	 * gw_source_opts.read_only) */
	bool read_only;
	/* a backend that could not observe (engine unreachable): its resources
	 * fail with this, the others still converge */
	char backend_error[GW_KIND_MAX][300];
	bool offline; /* no fetch: resolve the ref in the cache */
	/* the fetch already ran (gw_pass_fetch): resolve the ref in the cache,
	 * recording its tip as a full pass does */
	bool fetched;
	/* optional, borrowed: the commit in force and its ref's name (NULL:
	 * unknown) a branch's tip must descend from (--dry-run --against: the
	 * node's); in_force NULL: the state file's, "": none */
	const char *in_force, *in_force_ref;
	/* a heal pass: probe only the health checks whose interval has passed
	 * (false: probe every check, restarting each one's clock) */
	bool probe_due_only;
	const struct gw_cancel *cancel; /* a stop request ends the fetch */
	/* optional, borrowed: parsed manifests kept across passes (the agent);
	 * NULL: the state dir's cache file is read and written */
	struct gw_manifest_cache *cache;
	/* optional: told after each action of gw_apply_execute (from any of
	 * its threads, one at a time) */
	void (*progress)(size_t done, size_t total, void *ud);
	void *progress_ud;
	/* optional: the restart policy's wall clock in ms (NULL: gw_now_ms);
	 * tests step it instead of sleeping through backoffs */
	int64_t (*now_ms)(void);
	/* observe mode or suspended: every action is held (published as
	 * pending), nothing is started, stopped or replaced */
	bool hold;
	/* the disruptive actions (update, delete) are held, the others run:
	 * why ("window", "fleet-lock"; static, NULL: none) and until when (wall
	 * clock ms; 0: unknown). Set by gw_pass_hold_disruptive. */
	const char *held;
	int64_t held_until_ms;
	bool observe_mode; /* recorded as mode "observe" */
	struct gw_suspend suspend; /* recorded as suspended */
	/* --auto-revert: the healthy deadline in ms (0: off) */
	int64_t auto_revert_ms;
	/* the commit this pass goes back from (recorded as reverted, with
	 * why; "": none) */
	char reverting[41];
	char *revert_reason;
	/* the commit read is the operator's pin (gitward/pin.h), not the
	 * ref's tip: the history says "rolled-back" */
	bool pinned;
};

void gw_pass_init(struct gw_pass *pass);
/* Frees what the pass owns; borrowed inputs (cache, cancel) stay. */
void gw_pass_free(struct gw_pass *pass);

/* Per-resource outcome of an apply, parallel to pass->plan.v. */
/* GW_OUT_HELD: a disruptive action not run (pass->held): the workload
 * stays as observed; neither a failure nor converged. */
enum gw_outcome { GW_OUT_PENDING, GW_OUT_OK, GW_OUT_FAILED, GW_OUT_WAITING, GW_OUT_HELD };

struct gw_apply_report {
	size_t ok, failed, waiting, unhealthy;
	size_t held; /* disruptive actions held (pass->held) */
	bool converged; /* everything desired runs (healthy where checked), nothing failed, waits or is held */
	/* --auto-revert: what the commit in force created or updated is not
	 * running and healthy yet: reverted at revert_at (unix s; 0: nothing
	 * watched); revert_due once that has passed, to revert_to, bad naming
	 * the first such resource and its state */
	int64_t revert_at;
	bool revert_due;
	char revert_to[41];
	char bad[512];
};

/* Observe every managed resource (backends, merged with the state file's
 * bookkeeping) and probe health; fills pass->observed. A corrupt state file
 * is reported in *state_error (caller frees) and observation goes on. */
int gw_apply_observe(struct gw_pass *pass, const char *state_dir, const struct gw_backend_set *set, char **state_error,
		     struct gw_error *err);
/* Execute pass->plan through the instances of set and record the state
 * (of node with its labels, in state_dir). */
int gw_apply_execute(struct gw_apply_report *out, struct gw_pass *pass, const char *node,
		     const struct gw_strmap *labels, const char *state_dir, const struct gw_backend_set *set,
		     struct gw_error *err);

/* Record a failed pass (git, manifests) without touching workloads: keeps the
 * last good commit, resources, last success and the node (with its labels:
 * recorded here only when none was); sets last_error and the last attempt
 * with its result, and the remote tip when remote names one (NULL or an
 * empty commit: the recorded one stays). */
int gw_apply_record_error(const char *node, const struct gw_strmap *labels, const char *state_dir,
			  const struct gw_backend_set *set, const struct gw_remote_tip *remote,
			  enum gw_run_result result, const char *message, struct gw_error *err);
/* The backends' describe, for gw_state_save and the status renderers. */
struct gw_state_describer gw_apply_describer(const struct gw_backend_set *set);

/* The restart policy's clock (exposed for its unit test): the wait before
 * the next restart after the streak-th one in a row, 1 s, 2 s, 4 s ...
 * capped at 5 min; and the crash streak an observed workload keeps (reset to
 * 0 once it has run 60 s, now_s wall clock seconds). */
int64_t gw_apply__backoff_ms(int streak);
int gw_apply__crash_streak(const struct gw_observed *o, long long now_s);

/* envFiles watched (lib/apply/envwatch.c). Record: the digest of each of
 * r's envFiles into out, taken just before a start (an edit after it is
 * seen at the next pass: one restart more, never one missed; an unreadable
 * file is left out). Check: o->env_changed = the first of r's envFiles whose
 * content differs from o->env_digests, when o runs r's spec; a file with
 * no digest yet gets one (no restart); an unreadable one is logged and is
 * no change. */
void gw_apply__env_record(struct gw_strmap *out, const struct gw_resource *r);
void gw_apply__env_check(struct gw_observed *o, const struct gw_resource *r);

/* b: the backend of o (its exec_probe runs exec checks); NULL: on the host. */
int gw_health_probe(const struct gw_observed *o, const struct gw_resource *r, struct gw_backend *b,
		    const struct gw_cancel *cancel, struct gw_error *err);
int gw_run_command(int *out_status, char *const *argv, int64_t timeout_ms, struct gw_error *err);
/* gw_run_command that kills the command and fails with -ECANCELED when
 * cancel is requested. */
int gw_run_command_cancel(int *out_status, char *const *argv, int64_t timeout_ms, const struct gw_cancel *cancel,
			  struct gw_error *err);

/* What the agent waits on between passes (lib/apply/watch.c): an fd per
 * running workload recorded in the state file whose backend can watch it
 * (a pidfd), and the end of the earliest restart backoff (wall clock ms, 0:
 * none). gone: a recorded workload has already ended. down: a resource is
 * down with no backoff to wait for, and its restart policy restarts it.
 * follow: the state holds workloads of a backend that follows its own
 * event stream (the container engine's). probes: the health checks of the
 * running workloads, each with its own clock (the scheduler wakes for the
 * earliest). */
struct gw_watch_probe {
	int64_t probed_at_ms; /* wall clock: the last probe began; 0: never */
	int64_t every_ms; /* the check's interval */
};
struct gw_watch {
	int *fds;
	size_t n;
	struct gw_watch_probe *probes;
	size_t nprobes;
	int64_t wake_at_ms;
	bool gone;
	bool down;
	bool follow;
};
int gw_watch_build(struct gw_watch *w, const char *state_dir, const struct gw_backend_set *set);
void gw_watch_clear(struct gw_watch *w);
/* Follow the event streams of the backends that have one, each in a thread
 * of its own: notify is called (from those threads) when one of this
 * node's workloads may have died, and once each time a stream is
 * (re)established. */
struct gw_events;
int gw_events_start(struct gw_events **out, const struct gw_backend_set *set, void (*notify)(void *ud), void *ud);
void gw_events_stop(struct gw_events *ev);

#endif
