/* Options shared by `reconcile` and `agent`, from flags and --config FILE
 * (YAML, the flag names without the leading dashes; flags win). */
#ifndef GITWARD_CONFIG_H
#define GITWARD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "gitward/manifest.h"
#include "gitward/resource.h"
#include "gitward/util.h"

struct gw_config {
	char *repo;
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
	/* a password given inside --repo (user:password@); the URL in repo no
	 * longer holds it, and it is never printed */
	char *repo_password;
	/* --verify-signatures: only commits signed by a key of allowed_signers
	 * (SSH) or gpg_keyring (OpenPGP) are applied */
	bool verify_signatures;
	char *allowed_signers;
	char *gpg_keyring;
	int64_t stuck_after_ms; /* agent: /healthz fails for a pass running longer; 0: the default */
	/* --move-to-repo: a state dir recorded for another repository is moved
	 * to this one rather than refused */
	bool move_to_repo;
	/* --exclude: files under --path left out (gitignore syntax, after the
	 * repository's .gitwardignore) */
	struct gw_strlist excludes;
	/* which of the above were set explicitly (flags win over the file) */
	unsigned set_mask;
};

enum gw_config_bit {
	GW_CFG_REPO = 1u << 0,
	GW_CFG_REF = 1u << 1,
	GW_CFG_PATH = 1u << 2,
	GW_CFG_STATE_DIR = 1u << 3,
	GW_CFG_NODE = 1u << 4,
	GW_CFG_LABEL = 1u << 5,
	GW_CFG_INTERVAL = 1u << 6,
	GW_CFG_NO_PRUNE = 1u << 7,
	GW_CFG_ALLOW_EMPTY = 1u << 8,
	GW_CFG_LISTEN = 1u << 9,
	GW_CFG_WEBHOOK = 1u << 10,
	GW_CFG_LOG_FORMAT = 1u << 11,
	GW_CFG_LOG_LEVEL = 1u << 12,
	GW_CFG_SOCKET = 1u << 13,
	GW_CFG_CA_FILE = 1u << 14,
	GW_CFG_INSECURE_TLS = 1u << 15,
	GW_CFG_KNOWN_HOSTS = 1u << 16,
	GW_CFG_SSH_KEY = 1u << 17,
	GW_CFG_GIT_USERNAME = 1u << 18,
	GW_CFG_GIT_PASSWORD_FILE = 1u << 19,
	GW_CFG_GIT_TIMEOUT = 1u << 20,
	GW_CFG_GIT_CONNECT_TIMEOUT = 1u << 21,
	GW_CFG_VERIFY_SIGNATURES = 1u << 24,
	GW_CFG_ALLOWED_SIGNERS = 1u << 25,
	GW_CFG_GPG_KEYRING = 1u << 26,
	GW_CFG_STUCK_AFTER = 1u << 27,
	GW_CFG_SPLAY = 1u << 28,
	GW_CFG_RUN_DIR = 1u << 29,
	GW_CFG_LOG_DIR = 1u << 30,
	GW_CFG_MOVE_TO_REPO = 1u << 22,
	GW_CFG_EXCLUDE = 1u << 23,
};

void gw_config_init(struct gw_config *cfg);
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

#endif
