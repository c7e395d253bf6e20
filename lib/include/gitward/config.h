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
	char *node;
	struct gw_strmap labels; /* plus "node" = node name */
	int64_t interval_ms;
	bool no_prune;
	bool allow_empty;
	char *listen;
	char *webhook_secret_file;
	char *log_format;
	char *log_level;
	char *container_socket;
	int64_t stuck_after_ms; /* agent: /healthz fails for a pass running longer; 0: the default */
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
	GW_CFG_STUCK_AFTER = 1u << 14,
};

void gw_config_init(struct gw_config *cfg);
void gw_config_free(struct gw_config *cfg);
/* Set one option by its flag name ("state-dir", "label", ...). Repeatable
 * options append. */
int gw_config_set(struct gw_config *cfg, const char *name, const char *value, struct gw_error *err);
/* Read a config file; options already set (by flags) are kept. Problems go
 * to diags with file:line:col. */
int gw_config_load_file(struct gw_config *cfg, const char *path, struct gw_diags *diags);
/* Fill defaults (state dir, node name, interval, listen, labels["node"]). */
int gw_config_finish(struct gw_config *cfg, struct gw_error *err);

#endif
