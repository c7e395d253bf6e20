/* What runs, as the planner, the state file and the backends see one
 * managed resource: its identity, spec hash, state and health, and the
 * restart policy's bookkeeping. Below the planner and the state dir alike. */
#ifndef GITWARD_OBSERVED_H
#define GITWARD_OBSERVED_H

#include <stdbool.h>
#include <stdint.h>

#include "gitward/resource.h"
#include "gitward/util.h"

enum gw_state { GW_STATE_RUNNING, GW_STATE_STOPPED, GW_STATE_FAILED, GW_STATE_PENDING };
enum gw_health { GW_HEALTH_UNKNOWN, GW_HEALTH_HEALTHY, GW_HEALTH_UNHEALTHY };

const char *gw_state_to_string(enum gw_state s);
int gw_state_from_string(enum gw_state *out, const char *s);
const char *gw_health_to_string(enum gw_health h);
int gw_health_from_string(enum gw_health *out, const char *s);

/* What a backend (or the state dir) reports of one managed resource. */
struct gw_observed {
	enum gw_kind kind;
	char *name;
	char spec_hash[65];
	char *canonical; /* may be NULL when only the hash is known */
	struct gw_strlist depends_on;
	enum gw_restart restart;
	enum gw_state state;
	enum gw_health health;
	char detail[160]; /* e.g. "exited with status 1" */
	/* the backend's identity of the workload (pid and start time, container
	 * id...): opaque to the core, serialised by the backend, shown through
	 * its describe op; NULL: nothing was started */
	char *handle;
	int restarts; /* restarts by gitward, for status */
	int64_t started_at; /* unix seconds */
	int64_t since; /* unix seconds: in this state since (state file) */
	/* restart policy bookkeeping, kept in the state file */
	int crash_streak; /* restarts without a healthy run in between */
	int64_t backoff_until_ms; /* wall clock; no restart before */
	int health_failures; /* consecutive failed probes */
	/* the health check's own clock, kept in the state file: when its last
	 * probe began (wall clock ms; 0: never) and its interval (0: no check) */
	int64_t probed_at_ms;
	int64_t probe_every_ms;
	/* the last pass left it short of desired: its action failed or waits
	 * (e.g. a failed update leaves the old spec running) */
	bool not_converged;
	/* envFiles as the workload read them: path -> SHA-256 (hex) of the
	 * file's content, taken just before it started; kept in the state file
	 * and never shown (a digest of a short secret could be guessed) */
	struct gw_strmap env_digests;
	/* set by observe, never recorded: the first envFiles path whose content
	 * differs from its digest now (NULL: none) */
	char *env_changed;
	/* set by observe, never recorded: `gitward restart` asked for it */
	bool restart_requested;
	/* the last action gitward took on it, kept in the state file and shown:
	 * create | update | restart, why (commit | heal | restart: `gitward
	 * restart`), when (unix seconds; 0: none recorded) */
	char last_action[12];
	char last_trigger[12];
	int64_t last_action_at;
};

void gw_observed_clear(struct gw_observed *o);
/* o = a freshly started workload of r (running, identity left to the backend). */
void gw_observed_start(struct gw_observed *o, const struct gw_resource *r);
/* As desired: the last pass left nothing failed or waiting on it, and it runs
 * (not unhealthy) or finished under a policy that lets it stay stopped. */
bool gw_observed_converged(const struct gw_observed *o);

#endif
