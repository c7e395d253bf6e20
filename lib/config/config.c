/* Options from flags and from a YAML config file, one setter for both so a
 * value is checked the same way wherever it comes from. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/config.h"
#include "gitward/paths.h"
#include "gitward/state.h"

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

/* One setter per kind of option: it checks value and stores it in slot (the
 * option's field of cfg), with the message naming the option on error. */
typedef int (*setter_fn)(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err);

static void append(struct gw_strlist *l, const char *value);

/* --repo is repeatable: the mirrors of one repository, in the order tried.
 * cfg->repo stays the first one (what the logs name). */
static int set_repo(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	char *clean, *password;
	(void)name;
	(void)slot;
	if (!*value)
		return gw_error_set(err, -EINVAL, "--repo: must not be empty");
	if (cfg->repos.n >= GW_CONFIG_REPOS_MAX)
		return gw_error_set(err, -EINVAL, "--repo: at most %d remotes", GW_CONFIG_REPOS_MAX);
	/* a password inside the URL is kept apart at once: the URL that is
	 * stored, logged and shown never holds it */
	gw_url_split_password(&clean, &password, value);
	append(&cfg->repos, clean);
	cfg->repo_passwords = gw_xrealloc(cfg->repo_passwords, cfg->repos.n * sizeof(char *));
	cfg->repo_passwords[cfg->repos.n - 1] = password;
	if (cfg->repos.n == 1) {
		cfg->repo = clean;
		cfg->repo_password = password;
	} else {
		free(clean);
	}
	return 0;
}

static int set_string(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	(void)err;
	replace(slot, value);
	return 0;
}

static void append(struct gw_strlist *l, const char *value)
{
	l->v = gw_xrealloc(l->v, (l->n + 2) * sizeof(char *));
	l->v[l->n++] = gw_xstrdup(value);
	l->v[l->n] = NULL;
}

static int set_path(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	(void)err;
	append(slot, value);
	return 0;
}

static int set_exclude(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (!*value || strlen(value) > 4096)
		return gw_error_set(err, -EINVAL, "--exclude: expected a glob like docs/ or ci/*.yml");
	append(slot, value);
	return 0;
}

static int set_window(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	struct gw_window w;
	struct gw_error perr = { 0 };
	char esc[300];
	(void)name;
	(void)slot;
	if (cfg->nwindows >= 64)
		return gw_error_set(err, -EINVAL, "--window: at most 64 windows");
	if (gw_window_parse(&w, value, &perr) < 0) {
		gw_error_set(err, -EINVAL, "--window '%s': %s", gw_escape(esc, sizeof(esc), value), perr.msg);
		err->col = perr.col;
		return -EINVAL;
	}
	cfg->windows = gw_xrealloc(cfg->windows, (cfg->nwindows + 1) * sizeof(*cfg->windows));
	cfg->windows[cfg->nwindows++] = w;
	return 0;
}

static int set_dir(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	if (!*value)
		return gw_error_set(err, -EINVAL, "--%s: expected a directory", name);
	replace(slot, value);
	return 0;
}

int gw_config_check_node(const char *value, struct gw_error *err)
{
	if (!*value || strlen(value) > 63 ||
	    strspn(value,
		   "abcdefghijklmnopqrstuvwxyz"
		   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(value))
		return gw_error_set(err, -EINVAL, "--node: expected letters, digits, '-', '_', '.', got \"%s\"", value);
	return 0;
}

static int set_node(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	int rc = gw_config_check_node(value, err);
	if (rc < 0)
		return rc;
	replace(slot, value);
	return 0;
}

static int set_label(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	const char *eq = strchr(value, '=');
	if (!eq || eq == value)
		return gw_error_set(err, -EINVAL, "--label: expected K=V, got \"%s\"", value);
	char *k = gw_xstrndup(value, (size_t)(eq - value));
	gw_strmap_set(slot, k, eq + 1);
	free(k);
	return 0;
}

static int set_interval(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 || ms < 100)
		return gw_error_set(err, -EINVAL,
				    "--interval: expected a duration of at least 100ms like 30s, got \"%s\"", value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_git_timeout(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	if (gw_duration_parse(&ms, value) < 0 || ms < 100 || ms > 3600000)
		return gw_error_set(err, -EINVAL, "--%s: expected a duration between 100ms and 1h like 30s, got \"%s\"",
				    name, value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_healthy_deadline(struct gw_config *cfg, const char *name, void *slot, const char *value,
				struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 || ms < 1000 || ms > 86400000)
		return gw_error_set(err, -EINVAL,
				    "--healthy-deadline: expected a duration from 1s to 24h like 2m, got \"%s\"",
				    value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_file(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	if (!*value)
		return gw_error_set(err, -EINVAL, "--%s: expected a file name", name);
	replace(slot, value);
	return 0;
}

static int set_git_username(struct gw_config *cfg, const char *name, void *slot, const char *value,
			    struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (!*value || strpbrk(value, "\n\r"))
		return gw_error_set(err, -EINVAL, "--git-username: expected a user name");
	replace(slot, value);
	return 0;
}

static int set_bool(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	if (parse_bool(slot, value) < 0)
		return gw_error_set(err, -EINVAL, "--%s: expected true or false, got \"%s\"", name, value);
	return 0;
}

static int set_listen(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (strcmp(value, "off")) {
		const char *colon = strrchr(value, ':');
		if (!colon || !colon[1] || strlen(colon + 1) > 5 ||
		    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
			return gw_error_set(err, -EINVAL, "--listen: expected ADDR:PORT, got \"%s\"", value);
	}
	replace(slot, value);
	return 0;
}

static int set_mode(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (strcmp(value, "enforce") != 0 && strcmp(value, "observe") != 0)
		return gw_error_set(err, -EINVAL, "--mode: expected enforce or observe, got \"%s\"", value);
	*(bool *)slot = !strcmp(value, "observe");
	return 0;
}

static int set_log_format(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (strcmp(value, "text") && strcmp(value, "json"))
		return gw_error_set(err, -EINVAL, "--log-format: expected text or json, got \"%s\"", value);
	replace(slot, value);
	return 0;
}

static int set_log_level(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	enum gw_log_level l;
	(void)cfg;
	(void)name;
	if (gw_log_level_parse(&l, value) < 0)
		return gw_error_set(err, -EINVAL, "--log-level: expected debug, info, warn or error, got \"%s\"",
				    value);
	replace(slot, value);
	return 0;
}

static int set_nonempty(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	if (!*value)
		return gw_error_set(err, -EINVAL, "--%s: must not be empty", name);
	replace(slot, value);
	return 0;
}

static int set_splay(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 && strcmp(value, "0"))
		return gw_error_set(err, -EINVAL, "--splay: expected a duration like 3s (or 0), got \"%s\"", value);
	*(int64_t *)slot = strcmp(value, "0") ? ms : 0;
	return 0;
}

static int set_stuck_after(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 || ms < 1000)
		return gw_error_set(err, -EINVAL,
				    "--stuck-after: expected a duration of at least 1s like 15m, got \"%s\"", value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_header_timeout(struct gw_config *cfg, const char *name, void *slot, const char *value,
			      struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 || ms < 1000 || ms > 3600000)
		return gw_error_set(err, -EINVAL,
				    "--header-timeout: expected a duration from 1s to 1h like 30s, got \"%s\"", value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_notify(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
		return gw_error_set(err, -EINVAL, "--notify: expected an http:// or https:// URL");
	append(slot, value);
	return 0;
}

static int set_alertmanager(struct gw_config *cfg, const char *name, void *slot, const char *value,
			    struct gw_error *err)
{
	(void)cfg;
	(void)name;
	if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
		return gw_error_set(err, -EINVAL, "--alertmanager: expected an http:// or https:// URL");
	append(slot, value);
	return 0;
}

static int set_notify_repeat(struct gw_config *cfg, const char *name, void *slot, const char *value,
			     struct gw_error *err)
{
	int64_t ms;
	(void)cfg;
	(void)name;
	if (gw_duration_parse(&ms, value) < 0 || ms < 1000)
		return gw_error_set(err, -EINVAL,
				    "--notify-repeat: expected a duration of at least 1s like 1h, got \"%s\"", value);
	*(int64_t *)slot = ms;
	return 0;
}

static int set_commit_status(struct gw_config *cfg, const char *name, void *slot, const char *value,
			     struct gw_error *err)
{
	if (strcmp(value, "github") && strcmp(value, "gitlab") && strcmp(value, "gitea"))
		return gw_error_set(err, -EINVAL, "--commit-status: expected github, gitlab or gitea, got \"%s\"",
				    value);
	return set_nonempty(cfg, name, slot, value, err);
}

static int set_forge_api(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
		return gw_error_set(err, -EINVAL, "--forge-api: expected an http:// or https:// URL");
	return set_nonempty(cfg, name, slot, value, err);
}

static int set_fleet_lock(struct gw_config *cfg, const char *name, void *slot, const char *value, struct gw_error *err)
{
	if (strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
		return gw_error_set(err, -EINVAL, "--fleet-lock: expected an http:// or https:// URL");
	return set_nonempty(cfg, name, slot, value, err);
}

#define AT(field) offsetof(struct gw_config, field)

static const struct {
	const char *name; /* its index in this table is its bit in set_mask */
	int repeat; /* list-valued */
	int boolean;
	setter_fn set;
	size_t slot; /* offset of its field in struct gw_config */
} options[] = {
	{ "repo", 1, 0, set_repo, AT(repo) },
	{ "ref", 0, 0, set_string, AT(ref) },
	{ "path", 1, 0, set_path, AT(paths) },
	{ "state-dir", 0, 0, set_dir, AT(state_dir) },
	{ "run-dir", 0, 0, set_dir, AT(run_dir) },
	{ "log-dir", 0, 0, set_dir, AT(log_dir) },
	{ "node", 0, 0, set_node, AT(node) },
	{ "label", 1, 0, set_label, AT(labels) },
	{ "interval", 0, 0, set_interval, AT(interval_ms) },
	{ "no-prune", 0, 1, set_bool, AT(no_prune) },
	{ "allow-empty", 0, 1, set_bool, AT(allow_empty) },
	{ "allow-rewind", 0, 1, set_bool, AT(allow_rewind) },
	{ "listen", 0, 0, set_listen, AT(listen) },
	{ "webhook-secret-file", 0, 0, set_string, AT(webhook_secret_file) },
	{ "log-format", 0, 0, set_log_format, AT(log_format) },
	{ "log-level", 0, 0, set_log_level, AT(log_level) },
	{ "container-socket", 0, 0, set_string, AT(container_socket) },
	{ "ca-file", 0, 0, set_file, AT(ca_file) },
	{ "insecure-skip-tls-verify", 0, 1, set_bool, AT(insecure_skip_tls_verify) },
	{ "known-hosts", 0, 0, set_file, AT(known_hosts) },
	{ "ssh-key", 0, 0, set_file, AT(ssh_key) },
	{ "git-username", 0, 0, set_git_username, AT(git_username) },
	{ "git-password-file", 0, 0, set_file, AT(git_password_file) },
	{ "git-timeout", 0, 0, set_git_timeout, AT(git_timeout_ms) },
	{ "git-connect-timeout", 0, 0, set_git_timeout, AT(git_connect_timeout_ms) },
	{ "git-deadline", 0, 0, set_git_timeout, AT(git_deadline_ms) },
	{ "verify-signatures", 0, 1, set_bool, AT(verify_signatures) },
	{ "allowed-signers", 0, 0, set_nonempty, AT(allowed_signers) },
	{ "gpg-keyring", 0, 0, set_nonempty, AT(gpg_keyring) },
	{ "stuck-after", 0, 0, set_stuck_after, AT(stuck_after_ms) },
	{ "header-timeout", 0, 0, set_header_timeout, AT(header_timeout_ms) },
	{ "splay", 0, 0, set_splay, AT(splay_ms) },
	{ "move-to-repo", 0, 1, set_bool, AT(move_to_repo) },
	{ "age-identity", 0, 0, set_nonempty, AT(age_identity) },
	{ "exclude", 1, 0, set_exclude, AT(excludes) },
	{ "window", 1, 0, set_window, AT(windows) },
	{ "plugin-dir", 0, 0, set_nonempty, AT(plugin_dir) },
	{ "mode", 0, 0, set_mode, AT(observe) },
	{ "auto-revert", 0, 1, set_bool, AT(auto_revert) },
	{ "healthy-deadline", 0, 0, set_healthy_deadline, AT(healthy_deadline_ms) },
	{ "notify", 1, 0, set_notify, AT(notify) },
	{ "notify-secret-file", 0, 0, set_file, AT(notify_secret_file) },
	{ "notify-repeat", 0, 0, set_notify_repeat, AT(notify_repeat_ms) },
	{ "notify-exec", 0, 0, set_nonempty, AT(notify_exec) },
	{ "commit-status", 0, 0, set_commit_status, AT(commit_status) },
	{ "forge-api", 0, 0, set_forge_api, AT(forge_api) },
	{ "forge-repo", 0, 0, set_nonempty, AT(forge_repo) },
	{ "forge-token-file", 0, 0, set_file, AT(forge_token_file) },
	{ "alertmanager", 1, 0, set_alertmanager, AT(alertmanager) },
	{ "fleet-lock", 0, 0, set_fleet_lock, AT(fleet_lock) },
	{ "fleet-lock-group", 0, 0, set_nonempty, AT(fleet_lock_group) },
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
	for (size_t i = 0; cfg->repo_passwords && i < cfg->repos.n; i++)
		if (cfg->repo_passwords[i])
			gw_secure_free(cfg->repo_passwords[i]);
	free(cfg->repo_passwords);
	gw_strlist_free(&cfg->repos);
	free(cfg->ref);
	gw_strlist_free(&cfg->paths);
	gw_strlist_free(&cfg->excludes);
	free(cfg->windows);
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
	free(cfg->allowed_signers);
	free(cfg->gpg_keyring);
	free(cfg->age_identity);
	free(cfg->plugin_dir);
	gw_strlist_free(&cfg->notify);
	free(cfg->notify_secret_file);
	free(cfg->notify_exec);
	free(cfg->commit_status);
	free(cfg->forge_api);
	free(cfg->forge_repo);
	free(cfg->forge_token_file);
	gw_strlist_free(&cfg->alertmanager);
	free(cfg->fleet_lock);
	free(cfg->fleet_lock_group);
	memset(cfg, 0, sizeof(*cfg));
}

int gw_config_set(struct gw_config *cfg, const char *name, const char *value, struct gw_error *err)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (strcmp(options[i].name, name))
			continue;
		int r = options[i].set(cfg, name, (char *)cfg + options[i].slot, value, err);
		if (r < 0)
			return r;
		cfg->set_mask |= 1ull << i;
		return 0;
	}
	return gw_error_set(err, -EINVAL, "unknown option \"%s\"", name);
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
	if (!cfg->git_deadline_ms)
		cfg->git_deadline_ms = 300000;
	if (!cfg->healthy_deadline_ms)
		cfg->healthy_deadline_ms = 120000;
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
