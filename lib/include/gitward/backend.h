/* The backend table: what every backend (process, container, VM) implements.
 *
 * A backend is a const ops table plus private state: the core builds one
 * instance per registered backend from the node's settings (init), calls the
 * ops on that instance, and ends it (done). The core allocates nothing
 * backend-specific and never looks inside a workload's identity: that is an
 * opaque handle the backend serialises itself (stored as-is in the state
 * file) and shows to people through `describe`. Adding a backend is one new
 * file exporting one `const struct gw_backend_ops` plus one line in
 * lib/backend/registry.c. Modelled on systemd's UnitVTable, Nomad's driver
 * and curl's TLS backend table, cut to the few calls a reconciler needs.
 *
 * Every op is safe to run from several threads at once for different
 * resources of one instance. Errors are negative errno with `err` filled (and
 * only then); success out-params are untouched on failure. Optional slots are
 * NULL when a backend has nothing to do there.
 */
#ifndef GITWARD_BACKEND_H
#define GITWARD_BACKEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gitward/plan.h"
#include "gitward/resource.h"
#include "gitward/util.h"

/* Node-wide settings, given to init (the instance keeps its own copy: a new
 * field is copied and freed in registry.c, config_copy/config_free). */
struct gw_backend_config {
	const char *state_dir; /* whose node this is: containers are labelled with it */
	const char *run_dir; /* run records, pidfiles, QMP sockets (gitward/paths.h names them) */
	const char *log_dir; /* workload output, VM consoles */
	const char *container_socket; /* NULL: the SPEC default search */
	const char *self_exe; /* this gitward binary, for helper processes */
	const char *qemu_binary; /* NULL: qemu-system-x86_64 on PATH */
	const char *age_identity; /* --age-identity, for secretEnvFiles; NULL: none */
	const char *plugin_dir; /* where out-of-tree backends live; NULL: none */
};

/* What varies per call. */
struct gw_backend_call {
	/* NULL: never. When requested, long waits (stop timeouts, health waits)
	 * give up with -ECANCELED and leave the workload as it is. */
	const struct gw_cancel *cancel;
};

/* One instance: built by gw_backend_set_open, read-only for the ops. */
struct gw_backend {
	const struct gw_backend_ops *ops;
	struct gw_backend_config cfg; /* the instance's copies of the settings */
	void *priv; /* the backend's own state, from init */
	/* init failed: every resource of this backend fails with this, the
	 * others still converge ("" when it works) */
	char error[GW_ERROR_MSG_MAX];
};

struct gw_backend_ops {
	const char *name;
	enum gw_kind kind;

	/* Optional. Build the private state (*priv, freed by done) from b->cfg.
	 * Cheap: no connection, no child process (status builds instances too).
	 * A failure disables this backend only. */
	int (*init)(void **priv, const struct gw_backend *b, struct gw_error *err);
	/* Optional. Free what init made; safe on a half-built state. */
	void (*done)(void *priv);

	/* Optional. A pass brackets its calls with these: a backend may keep a
	 * connection (and what it negotiated) from pass_begin to pass_end. */
	void (*pass_begin)(struct gw_backend *b);
	void (*pass_end)(struct gw_backend *b);

	/* Optional. 0 when the backend can work on this host, else a negative
	 * errno with the reason in err (e.g. the engine socket is unreachable).
	 * Resources of an unsupported backend fail; others still converge. */
	int (*supported)(struct gw_backend *b, struct gw_error *err);

	/* Required. Every resource this backend manages on this node — and only
	 * those: what gitward did not create is never listed. Fills handle,
	 * spec_hash, canonical (when known), state and detail. This is how a
	 * new gitward process adopts running workloads (Nomad's Recover). The
	 * same workload always gets the same handle string. */
	int (*discover)(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
			const struct gw_backend_call *call, struct gw_error *err);

	/* Required. Start the workload for r; on success o holds its handle and
	 * state RUNNING (gw_observed_start). A failure leaves nothing running. */
	int (*create)(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
		      const struct gw_backend_call *call, struct gw_error *err);

	/* Required. Stop gracefully (r may be NULL when the resource left Git:
	 * use the backend's defaults), then force, then forget. Succeeds when
	 * the workload is already gone or o has no handle. -ECANCELED when
	 * call->cancel is requested during the graceful wait: nothing forced,
	 * nothing forgotten. */
	int (*destroy)(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
		       const struct gw_backend_call *call, struct gw_error *err);

	/* Optional. Run a health probe that needs the backend (an exec inside a
	 * container). NULL: exec probes run on the host. */
	int (*exec_probe)(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			  int64_t timeout_ms, const struct gw_backend_call *call, struct gw_error *err);

	/* Optional. How a handle (NULL: none yet) shows to people: add the
	 * status object's identity keys to fields (SPEC: "pid" for processes
	 * and VMs, "id" for containers) and write a short text into text
	 * ("pid 4242"). NULL: nothing shown. Must work on any string, also one
	 * read back from a file, and without init (b->priv may be NULL):
	 * `status` describes what the state file holds. */
	void (*describe)(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle);

	/* Optional. Between passes, the agent waits for workloads to end: an fd
	 * that becomes readable when the workload of o ends (a pidfd), owned by
	 * the caller. -ESRCH: it has ended already; any other failure: nothing
	 * to watch. */
	int (*watch)(int *out_fd, struct gw_backend *b, const struct gw_observed *o);

	/* Optional. Follow the backend's own event stream (the engine's
	 * events) in a thread of its own: notify (from that thread) when one of
	 * this node's workloads may have died, and once each time the stream is
	 * (re)established. unfollow (required with follow) stops it and frees
	 * what follow made. */
	int (*follow)(void **out, struct gw_backend *b, void (*notify)(void *ud), void *ud, struct gw_error *err);
	void (*unfollow)(void *follower);
};

/* Every backend of this build, NULL-terminated (lib/backend/registry.c). */
extern const struct gw_backend_ops *const gw_backend_registry[];

/* The instances a pass works with, one per backend (at most one per kind). */
struct gw_backend_set {
	struct gw_backend **v;
	size_t n;
};

/* Build an instance of each ops in the NULL-terminated list (NULL: the
 * registry) from cfg. A backend whose init fails is kept with b->error set. */
int gw_backend_set_open(struct gw_backend_set *out, const struct gw_backend_ops *const *ops,
			const struct gw_backend_config *cfg, struct gw_error *err);
void gw_backend_set_close(struct gw_backend_set *set);
/* The instance for kind, or NULL when this build has none. */
struct gw_backend *gw_backend_set_for(const struct gw_backend_set *set, enum gw_kind kind);
/* pass_begin / pass_end of every instance that has them. */
void gw_backend_set_pass_begin(const struct gw_backend_set *set);
void gw_backend_set_pass_end(const struct gw_backend_set *set);
/* describe through the instance of o->kind (fields and text left empty when
 * there is none); matches gw_state_describe_fn, ud = the set. */
void gw_backend_set_describe(json_t *fields, char *text, size_t size, const struct gw_observed *o, void *set);

extern const struct gw_backend_ops gw_backend_process;
extern const struct gw_backend_ops gw_backend_container;
extern const struct gw_backend_ops gw_backend_vm;
extern const struct gw_backend_ops gw_backend_external;

/* Entry point of the process supervisor ("shim"): the helper the process
 * backend starts with `gitward __shim`, reading its job from stdin. Returns
 * the shim's exit code. */
int gw_process_shim_main(void);

#endif
