/* Options shared by `reconcile` and `agent`, from flags and --config FILE
 * (YAML, the flag names without the leading dashes; flags win). */
#ifndef GITWARD_CONFIG_H
#define GITWARD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "gitward/manifest.h"
#include "gitward/resource.h"
#include "gitward/util.h"
#include "gitward/window.h"

/* --repo given more often than this is refused (mirrors, not a list of repositories) */
#define GW_CONFIG_REPOS_MAX 16

struct gw_config {
	char *repo; /* the first of repos */
	/* --repo, repeatable: mirrors of one repository, tried in this order;
	 * repo_passwords[i] is the password given inside repos.v[i] or NULL */
	struct gw_strlist repos;
	char **repo_passwords;
	char *ref;
	struct gw_strlist paths;
	char *state_dir;
	char *run_dir; /* lock, run records, QMP sockets (see gitward/paths.h) */
	char *log_dir; /* workload logs */
	char *node;
	struct gw_strmap labels; /* plus "node" = node name */
	int64_t interval_ms;
	int64_t splay_ms; /* agent: random extra delay per interval; -1: interval / 10 */
	bool no_prune;
	bool allow_empty;
	bool allow_rewind;
	bool observe; /* --mode observe */
	/* --auto-revert: a new commit whose created or updated resources are
	 * not running and healthy within healthy_deadline_ms is reverted */
	bool auto_revert;
	int64_t healthy_deadline_ms; /* 0 until finished: 2m */
	char *listen;
	char *webhook_secret_file;
	char *log_format;
	char *log_level;
	char *container_socket;
	/* Git transport: trust, credentials, bounds (see lib/source) */
	char *ca_file;
	bool insecure_skip_tls_verify;
	char *known_hosts;
	char *ssh_key;
	char *git_username;
	char *git_password_file;
	int64_t git_timeout_ms; /* idle: no progress for this long ends the fetch */
	int64_t git_connect_timeout_ms; /* until the server answers */
	int64_t git_deadline_ms; /* a whole fetch, however much it progresses */
	/* a password given inside the first --repo (user:password@), borrowed
	 * from repo_passwords; the URL in repo no longer holds it, and it is
	 * never printed */
	char *repo_password;
	/* --verify-signatures: only commits signed by a key of allowed_signers
	 * (SSH) or gpg_keyring (OpenPGP) are applied */
	bool verify_signatures;
	char *allowed_signers;
	char *gpg_keyring;
	int64_t header_timeout_ms; /* agent: a request's headers must be in within this; 0: 30 s */
	int64_t stuck_after_ms; /* agent: /healthz fails for a pass running longer; 0: the default */
	/* --move-to-repo: a state dir recorded for another repository is moved
	 * to this one rather than refused */
	bool move_to_repo;
	/* --age-identity: the node's age identity, for secretEnvFiles */
	char *age_identity;
	/* --plugin-dir: where External resources' plugins are; NULL: the default */
	char *plugin_dir;
	/* --exclude: files under --path left out (gitignore syntax, after the
	 * repository's .gitwardignore) */
	struct gw_strlist excludes;
	/* --window: maintenance windows for disruptive actions (none: always) */
	struct gw_window *windows;
	size_t nwindows;
	/* events (SPEC "Events"): webhook URLs (the URL may hold credentials:
	 * never logged raw), their HMAC secret, how often the same failure is
	 * told again (0: 1 h), the exec hook */
	struct gw_strlist notify;
	char *notify_secret_file;
	int64_t notify_repeat_ms;
	char *notify_exec;
	char *commit_status; /* github, gitlab, gitea */
	char *forge_api;
	char *forge_repo;
	char *forge_token_file;
	struct gw_strlist alertmanager; /* --alertmanager URL */
	/* --fleet-lock URL (may hold credentials: never logged raw), its group */
	char *fleet_lock;
	char *fleet_lock_group;
	/* which of the above were set explicitly (flags win over the file) */
	uint64_t set_mask; /* bit i: options[i] of config.c was given as a flag */
};

void gw_config_init(struct gw_config *cfg);
/* Was option name ("node", "state-dir", ...) set by a flag or the file? */
bool gw_config_given(const struct gw_config *cfg, const char *name);
void gw_config_free(struct gw_config *cfg);
/* Set one option by its flag name ("state-dir", "label", ...). Repeatable
 * options append. */
int gw_config_set(struct gw_config *cfg, const char *name, const char *value, struct gw_error *err);
/* Read a config file; options already set (by flags) are kept. Problems go
 * to diags with file:line:col. */
int gw_config_load_file(struct gw_config *cfg, const char *path, struct gw_diags *diags);
/* Fill defaults (state, run and log dirs by gw_dirs_resolve, node name, interval, listen, labels["node"]) and
 * check options that go together (-EINVAL: a usage error). */
int gw_config_finish(struct gw_config *cfg, struct gw_error *err);
/* The rule of --node (also for the names of an inventory): 0, or -EINVAL
 * with err saying why. */
int gw_config_check_node(const char *value, struct gw_error *err);

#endif
