/* Where gitward keeps what: the one place that names the files of its three
 * directories, and the rule that picks those directories.
 *
 *   state dir  lock, state.json, repo.git (the Git cache and  /var/lib/gitward
 *              the manifest cache inside it), repository (the url it
 *              belongs to)
 *   run dir    owner (the state dir it belongs to),         /run/gitward
 *              process/ and vm/ records, pidfiles,
 *              QMP sockets: they describe running processes and are gone
 *              after a reboot, like the processes
 *   log dir    workload output and VM consoles             /var/log/gitward
 */
#ifndef GITWARD_PATHS_H
#define GITWARD_PATHS_H

#include <stdbool.h>
#include <stddef.h>

#include "gitward/resource.h"

/* What the default rule looks at, injectable so tests never touch the real
 * /var/lib, /run and /var/log. */
struct gw_dirs_env {
	unsigned euid;
	const char *xdg_state_home; /* NULL or "": unset */
	const char *xdg_runtime_dir;
	const char *home;
	const char *root; /* prefix of the system paths: "" on a real host */
};

/* This process's euid and environment, root "". */
void gw_dirs_env_from_process(struct gw_dirs_env *env);

/* The default state dir: ROOT/var/lib/gitward as root, else
 * $XDG_STATE_HOME/gitward (~/.local/state/gitward). Caller frees. */
char *gw_dirs_default_state(const struct gw_dirs_env *env);
/* How that default was chosen, for messages: "as root", "for a user other
 * than root: $HOME/.local/state/gitward ..." */
const char *gw_dirs_default_state_rule(const struct gw_dirs_env *env);

/* Fill each of *state, *run, *log left NULL (given ones are kept; all are
 * absolute already). The rule:
 *  - --state-dir given: run = STATE/run, log = STATE/logs (the layout of
 *    earlier versions, so existing installs and scripts keep working);
 *  - nothing given: the FHS dirs — as root ROOT/var/lib/gitward,
 *    ROOT/run/gitward, ROOT/var/log/gitward; otherwise the XDG dirs
 *    $XDG_STATE_HOME/gitward, $XDG_RUNTIME_DIR/gitward (STATE/run without
 *    it) and STATE/logs. A STATE/run or STATE/logs left by an earlier
 *    version is kept in use, so its supervisors are adopted, not doubled. */
void gw_dirs_resolve(char **state, char **run, char **log, const struct gw_dirs_env *env);

/* Is run the run dir inside state (STATE/run), the layout of earlier
 * versions? */
bool gw_dirs_run_is_legacy(const char *state_dir, const char *run_dir);

/* The names. Each writes into buf (truncated to size) and returns buf. */
/* STATE/run and STATE/logs: the run and log dirs inside the state dir */
char *gw_path_state_run(char *buf, size_t size, const char *state_dir);
char *gw_path_state_logs(char *buf, size_t size, const char *state_dir);
char *gw_path_state_file(char *buf, size_t size, const char *state_dir);
char *gw_path_repo(char *buf, size_t size, const char *state_dir);
/* STATE/repository: the url of the repository the state dir belongs to */
char *gw_path_repository(char *buf, size_t size, const char *state_dir);
/* STATE/remotes.json: each remote's last fetch, with several --repo */
char *gw_path_remotes(char *buf, size_t size, const char *state_dir);
/* STATE/fleet-lock: present while this node may hold a FleetLock slot */
char *gw_path_fleet_lock(char *buf, size_t size, const char *state_dir);
/* STATE/repo.git/gitward-manifests.cache: parsed manifests by blob id, kept
 * beside the Git objects they come from (gitward/manifest_cache.h) */
char *gw_path_manifest_cache(char *buf, size_t size, const char *state_dir);
/* STATE/gnupg: the private GnuPG home a --gpg-keyring file is imported into */
char *gw_path_gnupg(char *buf, size_t size, const char *state_dir);
/* STATE/lock, wherever the run dir is: the lock belongs to the state dir. */
char *gw_path_lock(char *buf, size_t size, const char *state_dir);
/* RUN/lock: where earlier versions locked a run dir outside the state dir;
 * taken as well while it exists (gw_state_lock). */
char *gw_path_old_run_lock(char *buf, size_t size, const char *run_dir);
/* RUN/owner: the state dir whose records the run dir holds. */
char *gw_path_run_owner(char *buf, size_t size, const char *run_dir);
/* RUN/process or RUN/vm: a kind's run records. */
char *gw_path_kind_dir(char *buf, size_t size, const char *run_dir, enum gw_kind kind);
/* RUN/KIND/NAME.EXT: json (record), lock, exit, pid, qmp */
char *gw_path_record(char *buf, size_t size, const char *run_dir, enum gw_kind kind, const char *name, const char *ext);
/* LOG/process-NAME.log, LOG/vm-NAME.log */
char *gw_path_log(char *buf, size_t size, const char *log_dir, enum gw_kind kind, const char *name);

/* The longest path a unix socket takes (sun_path less its NUL). */
#define GW_SOCKET_PATH_MAX 107

#endif
