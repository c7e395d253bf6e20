/* The backend table: what every backend (process, container, VM) implements.
 *
 * One const ops struct per backend file, registered per kind in registry.c;
 * the planner and the loop never name a backend. Modelled on Nomad's driver
 * (Start/Inspect/Stop/Destroy/Recover) and curl's TLS backend table, cut to
 * the few calls a reconciler needs. Every call is safe to run from several
 * threads at once for different resources. Errors are negative errno with
 * `err` filled (and only then); success out-params are untouched on failure.
 */
#ifndef GITWARD_BACKEND_H
#define GITWARD_BACKEND_H

#include <stddef.h>

#include "gitward/plan.h"
#include "gitward/resource.h"
#include "gitward/util.h"

/* What every backend call may use. */
struct gw_backend_ctx {
	const char *state_dir; /* whose node this is: containers are labelled with it */
	const char *run_dir; /* run records, pidfiles, QMP sockets (gitward/paths.h names them) */
	const char *log_dir; /* workload output, VM consoles */
	const char *container_socket; /* NULL: the SPEC default search */
	const char *self_exe; /* this gitward binary, for helper processes */
	const char *qemu_binary; /* NULL: qemu-system-x86_64 on PATH */
	const char *age_identity; /* --age-identity, for secretEnvFiles; NULL: none */
	const char *plugin_dir; /* --plugin-dir, External's plugins; NULL: the default */
	/* NULL: never. When requested, long waits (stop timeouts, health
	 * waits) give up with -ECANCELED and leave the workload as it is. */
	const struct gw_cancel *cancel;
};

struct gw_backend_ops {
	const char *name;
	enum gw_kind kind;

	/* Optional. 0 when the backend can work on this host, else a negative
	 * errno with the reason in err (e.g. the engine socket is unreachable).
	 * Resources of an unsupported backend fail; others still converge. */
	int (*supported)(const struct gw_backend_ctx *ctx, struct gw_error *err);

	/* Required. Every resource this backend manages on this node — and only
	 * those: what gitward did not create is never listed. Fills identity,
	 * spec_hash, canonical (when known), state and detail. This is how a
	 * new gitward process adopts running workloads (Nomad's Recover). */
	int (*discover)(struct gw_observed **out, size_t *out_n, const struct gw_backend_ctx *ctx,
			struct gw_error *err);

	/* Required. Start the workload for r; on success o holds its identity
	 * and state RUNNING. A failure leaves nothing running. */
	int (*create)(struct gw_observed *o, const struct gw_resource *r, const struct gw_backend_ctx *ctx,
		      struct gw_error *err);

	/* Required. Stop gracefully (r may be NULL when the resource left Git:
	 * use the backend's defaults), then force, then forget. Succeeds when
	 * the workload is already gone. -ECANCELED when ctx->cancel is
	 * requested during the graceful wait: nothing forced, nothing forgotten. */
	int (*destroy)(const struct gw_observed *o, const struct gw_resource *r, const struct gw_backend_ctx *ctx,
		       struct gw_error *err);

	/* Optional. Run a health probe that needs the backend (an exec inside a
	 * container). NULL: exec probes run on the host. */
	int (*exec_probe)(const struct gw_observed *o, const struct gw_resource *r, const struct gw_backend_ctx *ctx,
			  int64_t timeout_ms, struct gw_error *err);
};

/* The backend for a kind, or NULL when this build has none. */
const struct gw_backend_ops *gw_backend_for(enum gw_kind kind);

extern const struct gw_backend_ops gw_backend_process;
extern const struct gw_backend_ops gw_backend_container;
extern const struct gw_backend_ops gw_backend_vm;
extern const struct gw_backend_ops gw_backend_external;

/* Entry point of the process supervisor ("shim"): the helper the process
 * backend starts with `gitward __shim`, reading its job from stdin. Returns
 * the shim's exit code. */
int gw_process_shim_main(void);

#endif
