/* Options from flags and from a YAML config file, one setter for both so a
 * value is checked the same way wherever it comes from. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/config.h"
#include "gitward/paths.h"
#include "gitward/state.h"

static const struct {
	const char *name; /* its index in this table is its bit in set_mask */
	int repeat; /* list-valued */
	int boolean;
} options[] = {
	{ "repo", 0, 0 },
	{ "ref", 0, 0 },
	{ "path", 1, 0 },
	{ "state-dir", 0, 0 },
	{ "run-dir", 0, 0 },
	{ "log-dir", 0, 0 },
	{ "node", 0, 0 },
	{ "label", 1, 0 },
	{ "interval", 0, 0 },
	{ "no-prune", 0, 1 },
	{ "allow-empty", 0, 1 },
	{ "listen", 0, 0 },
	{ "webhook-secret-file", 0, 0 },
	{ "log-format", 0, 0 },
	{ "log-level", 0, 0 },
	{ "container-socket", 0, 0 },
	{ "ca-file", 0, 0 },
	{ "insecure-skip-tls-verify", 0, 1 },
	{ "known-hosts", 0, 0 },
	{ "ssh-key", 0, 0 },
	{ "git-username", 0, 0 },
	{ "git-password-file", 0, 0 },
	{ "git-timeout", 0, 0 },
	{ "git-connect-timeout", 0, 0 },
	{ "verify-signatures", 0, 1 },
	{ "allowed-signers", 0, 0 },
	{ "gpg-keyring", 0, 0 },
	{ "stuck-after", 0, 0 },
	{ "splay", 0, 0 },
	{ "move-to-repo", 0, 1 },
	{ "age-identity", 0, 0 },
	{ "exclude", 1, 0 },
	{ "plugin-dir", 0, 0 },
};
_Static_assert(sizeof(options) / sizeof(options[0]) <= 64, "set_mask holds one bit per option");

bool gw_config_given(const struct gw_config *cfg, const char *name)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (!strcmp(options[i].name, name))
			return (cfg->set_mask >> i) & 1;
	return false;
}

void gw_config_init(struct gw_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->splay_ms = -1;
}

void gw_config_free(struct gw_config *cfg)
{
	free(cfg->repo);
	free(cfg->ref);
	gw_strlist_free(&cfg->paths);
	gw_strlist_free(&cfg->excludes);
	free(cfg->state_dir);
	free(cfg->run_dir);
	free(cfg->log_dir);
	free(cfg->node);
	gw_strmap_free(&cfg->labels);
	free(cfg->listen);
	free(cfg->webhook_secret_file);
	free(cfg->log_format);
	free(cfg->log_level);
	free(cfg->container_socket);
	free(cfg->ca_file);
	free(cfg->known_hosts);
	free(cfg->ssh_key);
	free(cfg->git_username);
	free(cfg->git_password_file);
	if (cfg->repo_password)
		gw_secure_free(cfg->repo_password);
	free(cfg->allowed_signers);
	free(cfg->gpg_keyring);
	free(cfg->age_identity);
	free(cfg->plugin_dir);
	memset(cfg, 0, sizeof(*cfg));
}

static void replace(char **slot, const char *value)
{
	free(*slot);
	*slot = gw_xstrdup(value);
}

static int parse_bool(bool *out, const char *v)
{
	if (!v || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

int gw_config_set(struct gw_config *cfg, const char *name, const char *value, struct gw_error *err)
{
	if (!strcmp(name, "repo")) {
		char *clean, *password;
		if (!*value)
			return gw_error_set(err, -EINVAL, "--repo: must not be empty");
		/* a password inside the URL is kept apart at once: the URL that is
		 * stored, logged and shown never holds it */
		gw_url_split_password(&clean, &password, value);
		free(cfg->repo);
		cfg->repo = clean;
		if (cfg->repo_password)
			gw_secure_free(cfg->repo_password);
		cfg->repo_password = password;
	} else if (!strcmp(name, "ref")) {
		replace(&cfg->ref, value);
	} else if (!strcmp(name, "path")) {
		cfg->paths.v = gw_xrealloc(cfg->paths.v, (cfg->paths.n + 2) * sizeof(char *));
		cfg->paths.v[cfg->paths.n++] = gw_xstrdup(value);
		cfg->paths.v[cfg->paths.n] = NULL;
	} else if (!strcmp(name, "exclude")) {
		if (!*value || strlen(value) > 4096)
			return gw_error_set(err, -EINVAL, "--exclude: expected a glob like docs/ or ci/*.yml");
		cfg->excludes.v = gw_xrealloc(cfg->excludes.v, (cfg->excludes.n + 2) * sizeof(char *));
		cfg->excludes.v[cfg->excludes.n++] = gw_xstrdup(value);
		cfg->excludes.v[cfg->excludes.n] = NULL;
	} else if (!strcmp(name, "state-dir") || !strcmp(name, "run-dir") || !strcmp(name, "log-dir")) {
		if (!*value)
			return gw_error_set(err, -EINVAL, "--%s: expected a directory", name);
		replace(!strcmp(name, "state-dir")	   ? &cfg->state_dir
				: !strcmp(name, "run-dir") ? &cfg->run_dir
							   : &cfg->log_dir,
			value);
	} else if (!strcmp(name, "node")) {
		if (!*value || strlen(value) > 63 ||
		    strspn(value,
			   "abcdefghijklmnopqrstuvwxyz"
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(value))
			return gw_error_set(err, -EINVAL, "--node: expected letters, digits, '-', '_', '.', got \"%s\"",
					    value);
		replace(&cfg->node, value);
	} else if (!strcmp(name, "label")) {
		const char *eq = strchr(value, '=');
		if (!eq || eq == value)
			return gw_error_set(err, -EINVAL, "--label: expected K=V, got \"%s\"", value);
		char *k = gw_xstrndup(value, (size_t)(eq - value));
		gw_strmap_set(&cfg->labels, k, eq + 1);
		free(k);
	} else if (!strcmp(name, "interval")) {
		int64_t ms;
		if (gw_duration_parse(&ms, value) < 0 || ms < 100)
			return gw_error_set(err, -EINVAL,
					    "--interval: expected a duration of at least 100ms like 30s, got \"%s\"",
					    value);
		cfg->interval_ms = ms;
	} else if (!strcmp(name, "git-timeout") || !strcmp(name, "git-connect-timeout")) {
		int64_t ms;
		if (gw_duration_parse(&ms, value) < 0 || ms < 100 || ms > 3600000)
			return gw_error_set(err, -EINVAL,
					    "--%s: expected a duration between 100ms and 1h like 30s, got \"%s\"", name,
					    value);
		*(!strcmp(name, "git-timeout") ? &cfg->git_timeout_ms : &cfg->git_connect_timeout_ms) = ms;
	} else if (!strcmp(name, "ca-file") || !strcmp(name, "known-hosts") || !strcmp(name, "ssh-key") ||
		   !strcmp(name, "git-password-file")) {
		if (!*value)
			return gw_error_set(err, -EINVAL, "--%s: expected a file name", name);
		char **slot = !strcmp(name, "ca-file") ? &cfg->ca_file
			: !strcmp(name, "known-hosts") ? &cfg->known_hosts
			: !strcmp(name, "ssh-key")     ? &cfg->ssh_key
						       : &cfg->git_password_file;
		replace(slot, value);
	} else if (!strcmp(name, "git-username")) {
		if (!*value || strpbrk(value, "\n\r"))
			return gw_error_set(err, -EINVAL, "--git-username: expected a user name");
		replace(&cfg->git_username, value);
	} else if (!strcmp(name, "no-prune") || !strcmp(name, "allow-empty") ||
		   !strcmp(name, "insecure-skip-tls-verify")) {
		bool b;
		if (parse_bool(&b, value) < 0)
			return gw_error_set(err, -EINVAL, "--%s: expected true or false, got \"%s\"", name, value);
		if (!strcmp(name, "no-prune"))
			cfg->no_prune = b;
		else if (!strcmp(name, "allow-empty"))
			cfg->allow_empty = b;
		else
			cfg->insecure_skip_tls_verify = b;
	} else if (!strcmp(name, "listen") && !strcmp(value, "off")) {
		replace(&cfg->listen, value);
	} else if (!strcmp(name, "listen")) {
		const char *colon = strrchr(value, ':');
		if (!colon || !colon[1] || strlen(colon + 1) > 5 ||
		    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
			return gw_error_set(err, -EINVAL, "--listen: expected ADDR:PORT, got \"%s\"", value);
		replace(&cfg->listen, value);
	} else if (!strcmp(name, "webhook-secret-file")) {
		replace(&cfg->webhook_secret_file, value);
	} else if (!strcmp(name, "log-format")) {
		if (strcmp(value, "text") && strcmp(value, "json"))
			return gw_error_set(err, -EINVAL, "--log-format: expected text or json, got \"%s\"", value);
		replace(&cfg->log_format, value);
	} else if (!strcmp(name, "log-level")) {
		enum gw_log_level l;
		if (gw_log_level_parse(&l, value) < 0)
			return gw_error_set(err, -EINVAL,
					    "--log-level: expected debug, info, warn or error, got \"%s\"", value);
		replace(&cfg->log_level, value);
	} else if (!strcmp(name, "container-socket")) {
		replace(&cfg->container_socket, value);
	} else if (!strcmp(name, "verify-signatures")) {
		if (parse_bool(&cfg->verify_signatures, value) < 0)
			return gw_error_set(err, -EINVAL, "--%s: expected true or false, got \"%s\"", name, value);
	} else if (!strcmp(name, "move-to-repo")) {
		if (parse_bool(&cfg->move_to_repo, value) < 0)
			return gw_error_set(err, -EINVAL, "--%s: expected true or false, got \"%s\"", name, value);
	} else if (!strcmp(name, "allowed-signers") || !strcmp(name, "gpg-keyring")) {
		if (!*value)
			return gw_error_set(err, -EINVAL, "--%s: must not be empty", name);
		replace(!strcmp(name, "allowed-signers") ? &cfg->allowed_signers : &cfg->gpg_keyring, value);
	} else if (!strcmp(name, "plugin-dir")) {
		if (!*value)
			return gw_error_set(err, -EINVAL, "--plugin-dir: must not be empty");
		replace(&cfg->plugin_dir, value);
	} else if (!strcmp(name, "age-identity")) {
		if (!*value)
			return gw_error_set(err, -EINVAL, "--age-identity: must not be empty");
		replace(&cfg->age_identity, value);
	} else if (!strcmp(name, "splay")) {
		int64_t ms;
		if (gw_duration_parse(&ms, value) < 0 && strcmp(value, "0"))
			return gw_error_set(err, -EINVAL, "--splay: expected a duration like 3s (or 0), got \"%s\"",
					    value);
		cfg->splay_ms = strcmp(value, "0") ? ms : 0;
	} else if (!strcmp(name, "stuck-after")) {
		int64_t ms;
		if (gw_duration_parse(&ms, value) < 0 || ms < 1000)
			return gw_error_set(err, -EINVAL,
					    "--stuck-after: expected a duration of at least 1s like 15m, got \"%s\"",
					    value);
		cfg->stuck_after_ms = ms;
	} else {
		return gw_error_set(err, -EINVAL, "unknown option \"%s\"", name);
	}
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (!strcmp(options[i].name, name))
			cfg->set_mask |= 1ull << i;
	return 0;
}

int gw_config_load_file(struct gw_config *cfg, const char *path, struct gw_diags *diags)
{
	struct gw_error err;
	struct gw_arena *arena;
	struct gw_ynode **docs;
	size_t ndocs, before = diags->n;
	char *data;
	size_t len;
	uint64_t flags_set = cfg->set_mask;

	if (gw_file_read(&data, &len, path, 1u << 20, &err) < 0) {
		gw_diags_add(diags, path, 0, 0, "%s", err.msg);
		return -EINVAL;
	}
	arena = gw_arena_new();
	gw_yaml_parse(&docs, &ndocs, arena, path, data, len, diags);
	free(data);
	if (diags->n == before && ndocs > 1)
		gw_diags_add(diags, path, docs[1] ? docs[1]->line : 0, docs[1] ? docs[1]->col : 0,
			     "a config file holds one document");
	const struct gw_ynode *root = ndocs ? docs[0] : NULL;
	if (diags->n == before && root && root->type != GW_YNODE_MAP)
		gw_diags_add(diags, path, root->line, root->col, "expected a mapping of options");
	for (size_t i = 0; diags->n == before && root && root->type == GW_YNODE_MAP && i + 1 < root->n; i += 2) {
		const struct gw_ynode *k = root->items[i], *v = root->items[i + 1];
		size_t o;
		for (o = 0; o < sizeof(options) / sizeof(options[0]); o++)
			if (!strcmp(options[o].name, k->value))
				break;
		if (o == sizeof(options) / sizeof(options[0])) {
			gw_diags_add(diags, path, k->line, k->col, "%s: unknown option", k->value);
			continue;
		}
		if (flags_set & (1ull << o))
			continue; /* the flag wins */
		const struct gw_ynode *const *items = &v;
		size_t n = 1;
		if (v->type == GW_YNODE_SEQ && options[o].repeat) {
			items = (const struct gw_ynode *const *)v->items;
			n = v->n;
		} else if (v->type == GW_YNODE_MAP && !strcmp(k->value, "label")) {
			for (size_t j = 0; j + 1 < v->n; j += 2) {
				struct gw_strbuf sb;
				gw_strbuf_init(&sb);
				gw_strbuf_printf(&sb, "%s=%s", v->items[j]->value,
						 v->items[j + 1]->type == GW_YNODE_SCALAR ? v->items[j + 1]->value
											  : "");
				if (gw_config_set(cfg, "label", sb.s, &err) < 0)
					gw_diags_add(diags, path, v->items[j]->line, v->items[j]->col, "%s", err.msg);
				gw_strbuf_free(&sb);
			}
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			if (items[j]->type != GW_YNODE_SCALAR) {
				gw_diags_add(diags, path, items[j]->line, items[j]->col, "%s: expected a string",
					     k->value);
				continue;
			}
			if (gw_config_set(cfg, k->value, items[j]->value, &err) < 0)
				gw_diags_add(diags, path, items[j]->line, items[j]->col, "%s", err.msg);
		}
	}
	gw_arena_free(arena);
	return diags->n == before ? 0 : -EINVAL;
}

/* Relative to the cwd at start, so later passes do not depend on it. */
static void make_absolute(char **p)
{
	char cwd[4096];
	if (!*p || (*p)[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return;
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "%s/%s", cwd, *p);
	free(*p);
	*p = gw_strbuf_detach(&sb);
}

int gw_config_finish(struct gw_config *cfg, struct gw_error *err)
{
	struct gw_dirs_env env;
	/* absolute: supervisors, labels and records must not depend on a cwd */
	make_absolute(&cfg->state_dir);
	make_absolute(&cfg->run_dir);
	make_absolute(&cfg->log_dir);
	gw_dirs_env_from_process(&env);
	gw_dirs_resolve(&cfg->state_dir, &cfg->run_dir, &cfg->log_dir, &env);
	if (!cfg->node) {
		char host[256] = "";
		gethostname(host, sizeof(host) - 1);
		char *dot = strchr(host, '.');
		if (dot)
			*dot = '\0';
		cfg->node = gw_xstrdup(host[0] ? host : "localhost");
	}
	if (!cfg->interval_ms)
		cfg->interval_ms = 30000;
	if (!cfg->git_timeout_ms)
		cfg->git_timeout_ms = 60000;
	if (!cfg->git_connect_timeout_ms)
		cfg->git_connect_timeout_ms = 15000;
	if (!cfg->listen)
		cfg->listen = gw_xstrdup("127.0.0.1:9420");
	if (!cfg->log_format)
		cfg->log_format = gw_xstrdup("text");
	if (!cfg->log_level)
		cfg->log_level = gw_xstrdup("info");
	gw_strmap_set(&cfg->labels, "node", cfg->node);
	make_absolute(&cfg->allowed_signers);
	make_absolute(&cfg->gpg_keyring);
	make_absolute(&cfg->age_identity);
	make_absolute(&cfg->plugin_dir);
	if (cfg->verify_signatures && !cfg->allowed_signers && !cfg->gpg_keyring)
		return gw_error_set(err, -EINVAL,
				    "--verify-signatures needs the keys to accept: --allowed-signers FILE (SSH) "
				    "and/or --gpg-keyring PATH (OpenPGP)");
	return 0;
}
