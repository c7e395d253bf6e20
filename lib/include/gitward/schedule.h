/* When the agent runs its next pass, as a pure function of what it carries
 * from pass to pass and of what it has seen (lib/pass/schedule.c): a full
 * pass at the end of the interval plus a splay (a Git error backs off
 * instead), a heal pass (no fetch) soon after a workload dies, at the end of
 * a restart backoff, when a health check's interval has passed, or spaced
 * out while something stays down. Time and randomness are inputs: no clock
 * is read here, so tests step a fake one. */
#ifndef GITWARD_SCHEDULE_H
#define GITWARD_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_SCHED_GIT_BACKOFF_MAX_MS 300000 /* an unreachable remote: retries at most this far apart */
#define GW_SCHED_GIT_JITTER_DIV 5 /* + up to a fifth of the Git backoff */
#define GW_SCHED_HEAL_GAP_MS 200 /* heal passes at most this often */
#define GW_SCHED_HEAL_SETTLE_MS 100 /* after a death: time for its supervisor to record the exit */
#define GW_SCHED_HEAL_GAP_SHIFT_MAX 12 /* idle heal passes double the gap up to 2^12 times */

/* GW_SCHED_WAIT: nothing is due before `when`. */
enum gw_sched_what { GW_SCHED_WAIT, GW_SCHED_FULL, GW_SCHED_HEAL };

/* From the agent's options, built once. */
struct gw_sched_opts {
	int64_t interval_ms;
	int64_t splay_ms; /* largest random extra delay per interval; -1: a tenth of the interval */
};

/* What the loop carries from one pass to the next. All times are monotonic
 * ms. Zeroed, a full pass is due at once. */
struct gw_sched {
	int64_t full_at; /* the next full pass */
	int64_t last_heal; /* the end of the last heal pass; 0: none yet */
	int64_t heal_at; /* the heal pass decided on in this wait; 0: none */
	int git_streak; /* full passes in a row that failed on Git */
	int idle_heals; /* heal passes in a row that changed nothing */
	/* the last heal pass run for the health checks was decided at probe_for
	 * (0: none): every check due by then was to be probed; probe_stuck: such
	 * passes in a row after which one of them was still due (it cannot run) */
	int64_t probe_for;
	int probe_stuck;
};

/* A pass that ended at `now`. rnd: a random number, for the splay or the
 * Git backoff's jitter. changed: it started, stopped or replaced something. */
struct gw_sched_pass {
	enum gw_sched_what mode; /* GW_SCHED_FULL or GW_SCHED_HEAL */
	bool git_error;
	bool changed;
	int64_t now;
	uint32_t rnd;
};

/* A health check of a running workload, from the state file: when its
 * last probe began (monotonic ms) and its interval. */
struct gw_sched_probe {
	int64_t last;
	int64_t every;
};

/* What the agent has seen while it waits. */
struct gw_sched_input {
	int64_t now;
	bool died; /* a watched workload ended (or had ended), or a backend's event stream spoke */
	bool down; /* a resource is down, with no backoff to wait for, and its policy restarts it */
	int64_t wake_at; /* the end of the earliest restart backoff; 0: none */
	bool requested; /* a pass was asked for (SIGHUP, webhook) */
	const struct gw_sched_probe *probes; /* a heal pass runs each when its interval has passed */
	size_t nprobes;
};

/* The answer: run a pass now (FULL, HEAL), or wait until `when` at the
 * latest (WAIT), watching the workloads' fds only if watch_fds. */
struct gw_sched_next {
	enum gw_sched_what what;
	int64_t when;
	bool watch_fds;
};

/* After a pass: when the next full pass is due (the interval plus a splay,
 * or the Git backoff with its jitter), the streaks, and a fresh wait.
 * Returns the delay until the next full pass (after a full pass; 0 after a
 * heal pass, which leaves it alone). */
int64_t gw_sched_after_pass(struct gw_sched *s, const struct gw_sched_pass *p, const struct gw_sched_opts *o);
/* A full pass's fetch has begun (it runs beside the loop): until the pass
 * ends, the waits decide only heal passes; no second full pass is due. */
void gw_sched_fetch_begin(struct gw_sched *s);
/* While waiting: what to do now, or until when to wait. Called again after
 * each wake-up; it may note the heal pass it decided on in *s. */
void gw_sched_next(struct gw_sched_next *out, struct gw_sched *s, const struct gw_sched_input *in);

#endif
