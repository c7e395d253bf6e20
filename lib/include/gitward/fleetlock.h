/* The FleetLock client (Zincati's protocol, SPEC "Operating a node"):
 * a slot of the node's group is asked for before the first disruptive
 * action of a pass (POST URL/v1/pre-reboot) and given back once a pass
 * converged healthy (POST URL/v1/steady-state). Every request is bounded
 * (connect and total timeouts, a stop request, a response read up to a
 * limit), so a lock server that hangs holds the disruptive actions, never
 * the pass. */
#ifndef GITWARD_FLEETLOCK_H
#define GITWARD_FLEETLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gitward/util.h"

enum gw_fleetlock_op { GW_FLEETLOCK_PRE_REBOOT, GW_FLEETLOCK_STEADY_STATE, GW_FLEETLOCK_OP_MAX };
/* granted: 200; refused: another HTTP status; error: no answer (transport,
 * timeout, a stop request) */
enum gw_fleetlock_result { GW_FLEETLOCK_GRANTED, GW_FLEETLOCK_REFUSED, GW_FLEETLOCK_ERROR, GW_FLEETLOCK_RESULT_MAX };

const char *gw_fleetlock_op_to_string(enum gw_fleetlock_op op);
const char *gw_fleetlock_result_to_string(enum gw_fleetlock_result r);

/* Requests per op and result since the agent started (the metric
 * gitward_fleet_lock_requests_total); owned by the caller, shared by passes. */
struct gw_fleetlock_counts {
	_Atomic unsigned long long n[GW_FLEETLOCK_OP_MAX][GW_FLEETLOCK_RESULT_MAX];
};

struct gw_fleetlock_opts {
	const char *url; /* the server's base URL (http or https; may hold credentials) */
	const char *group; /* NULL: "default" */
	const char *ca_file; /* PEM bundle replacing the system CA store (NULL: the system's) */
	bool insecure_skip_tls_verify;
	int64_t timeout_ms; /* the whole request; 0: 30 s */
	int64_t connect_timeout_ms; /* until connected (at most timeout_ms); 0: timeout_ms */
	struct gw_fleetlock_counts *counts; /* optional */
};

/* The longest a response body is read (the protocol's error document). */
#define GW_FLEETLOCK_BODY_MAX 4096

/* One request for the node id. *result says how it ended (always set);
 * returns 0 when granted (HTTP 200), else -EAGAIN (refused: err names the
 * status and the server's kind and value), -EIO (no answer) or -ECANCELED
 * (cancel requested). */
int gw_fleetlock_request(enum gw_fleetlock_result *result, const struct gw_fleetlock_opts *o, enum gw_fleetlock_op op,
			 const char *id, const struct gw_cancel *cancel, struct gw_error *err);

/* Whether this node may hold a slot: a marker in the state dir, written
 * when a pre-reboot is granted and removed when a steady-state is, so an
 * agent restarted in between still gives the slot back. */
bool gw_fleetlock_marked(const char *state_dir);
int gw_fleetlock_mark(const char *state_dir, bool held, struct gw_error *err);

/* A pass's use of the lock (pass.c, before and after its apply).
 * before: the plan of pass has disruptive actions (update, delete) that
 * opts->fleet_lock asks a slot for: true when they may run (no lock
 * configured, nothing disruptive, the pass holds everything anyway, or the
 * slot was granted), false when they are held. A heal pass asks nothing
 * (a lock server that hangs never delays healing): its disruptive actions
 * wait for the next full pass. after: a pass that converged healthy gives
 * back the slot this node may hold (the state dir's marker). */
struct gw_pass;
struct gw_pass_opts;
bool gw_pass__fleet_lock_before(const struct gw_pass *pass, const struct gw_pass_opts *opts);
void gw_pass__fleet_lock_after(const struct gw_pass *pass, const struct gw_pass_opts *opts, bool converged);

#endif
