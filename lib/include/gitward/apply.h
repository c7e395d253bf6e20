/* Applying a pass: observe through the backends, plan, execute in dependency
 * order with independent resources in parallel, record the outcome. */
#ifndef GITWARD_APPLY_H
#define GITWARD_APPLY_H

#include <stdbool.h>

#include "gitward/backend.h"
#include "gitward/pass.h"

/* Per-resource outcome of an apply, parallel to pass->plan.v. */
enum gw_outcome { GW_OUT_PENDING, GW_OUT_OK, GW_OUT_FAILED, GW_OUT_WAITING };

struct gw_apply_report {
	size_t ok, failed, waiting, unhealthy;
	bool converged; /* everything desired runs (healthy where checked), nothing failed or waits */
};

/* Observe every managed resource (backends, merged with the state file's
 * bookkeeping) and probe health; fills pass->observed. A corrupt state file
 * is reported in *state_error (caller frees) and observation goes on. */
int gw_apply_observe(struct gw_pass *pass, const struct gw_config *cfg, const struct gw_backend_set *set,
		     char **state_error, struct gw_error *err);
/* Execute pass->plan through the instances of set and record the state. */
int gw_apply_execute(struct gw_apply_report *out, struct gw_pass *pass, const struct gw_config *cfg,
		     const struct gw_backend_set *set, struct gw_error *err);

/* A whole pass for the agent: prepare, observe, plan, execute, record. A
 * failing fetch touches nothing. An invalid commit, or one whose signature is
 * refused, is applied not at all: the last good commit stays in force (and is
 * reconciled, so self-healing goes on) while last_error names the problem. */
enum gw_run_result {
	GW_RUN_CONVERGED,
	GW_RUN_NOT_CONVERGED,
	GW_RUN_GIT_ERROR,
	GW_RUN_INVALID,
	GW_RUN_ERROR,
	GW_RUN_UNVERIFIED, /* like GW_RUN_INVALID: the commit's signature was refused */
	GW_RUN_MAX
};

struct gw_run_summary {
	enum gw_run_result result;
	char commit[41]; /* the commit applied (the last good one after an invalid commit) */
	size_t count[5]; /* planned actions per gw_action_type */
	struct gw_apply_report report;
	char message[GW_ERROR_MSG_MAX + 300]; /* the error, when there was one */
	bool healing; /* converged to the commit in force without fetching */
	bool fetched; /* a full pass whose fetch (and resolving the ref) succeeded */
};

/* GW_PASS_FULL: fetch, then converge (with the fallbacks of the SPEC: Git
 * down or a bad commit keep the commit in force, healed). GW_PASS_HEAL: no
 * fetch; converge to the commit in force (a workload died). */
enum gw_pass_mode { GW_PASS_FULL, GW_PASS_HEAL };
void gw_pass_run(struct gw_run_summary *out, const struct gw_config *cfg, const struct gw_backend_set *set,
		 const struct gw_cancel *cancel, enum gw_pass_mode mode);
/* The same, with the agent's manifest cache kept across passes (NULL: the
 * state dir's cache file). */
void gw_pass_run_cached(struct gw_run_summary *out, const struct gw_config *cfg, const struct gw_backend_set *set,
			const struct gw_cancel *cancel, enum gw_pass_mode mode, struct gw_manifest_cache *cache);
/* "success", "not_converged", "git_error", "invalid", "error", "unverified" */
const char *gw_run_result_to_string(enum gw_run_result r);
/* The result of a pass that gw_pass_prepare failed at stage. */
enum gw_run_result gw_run_result_of_stage(enum gw_pass_stage stage, const struct gw_pass *pass);
/* Record a failed pass (git, manifests) without touching workloads: keeps the
 * last good commit, resources and last success; sets last_error and the
 * last attempt with its result. */
int gw_apply_record_error(const struct gw_config *cfg, const struct gw_backend_set *set, enum gw_run_result result,
			  const char *message, struct gw_error *err);
/* The backends' describe, for gw_state_save and the status renderers. */
struct gw_state_describer gw_apply_describer(const struct gw_backend_set *set);

/* The restart policy's clock (exposed for its unit test): the wait before
 * the next restart after the streak-th one in a row, 1 s, 2 s, 4 s ...
 * capped at 5 min; and the crash streak an observed workload keeps (reset to
 * 0 once it has run 60 s, now_s wall clock seconds). */
int64_t gw_apply__backoff_ms(int streak);
int gw_apply__crash_streak(const struct gw_observed *o, long long now_s);

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
 * event stream (the container engine's). */
struct gw_watch {
	int *fds;
	size_t n;
	int64_t wake_at_ms;
	bool gone;
	bool down;
	bool follow;
};
int gw_watch_build(struct gw_watch *w, const struct gw_config *cfg, const struct gw_backend_set *set);
void gw_watch_clear(struct gw_watch *w);
/* Follow the event streams of the backends that have one, each in a thread
 * of its own: notify is called (from those threads) when one of this
 * node's workloads may have died, and once each time a stream is
 * (re)established. */
struct gw_events;
int gw_events_start(struct gw_events **out, const struct gw_backend_set *set, void (*notify)(void *ud), void *ud);
void gw_events_stop(struct gw_events *ev);

#endif
