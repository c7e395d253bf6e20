/* Where gitward keeps what: the default rule for the state, run and log dirs
 * and every file name inside them. Nothing else in gitward spells one, so a
 * layout change is made here and nowhere else. */
#define _GNU_SOURCE
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitward/paths.h"
#include "gitward/util.h"

void gw_dirs_env_from_process(struct gw_dirs_env *env)
{
	env->euid = (unsigned)geteuid();
	env->xdg_state_home = getenv("XDG_STATE_HOME");
	env->xdg_runtime_dir = getenv("XDG_RUNTIME_DIR");
	env->home = getenv("HOME");
	env->root = "";
}

static char *join(const char *a, const char *b)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "%s%s", a, b);
	return gw_strbuf_detach(&sb);
}

/* XDG says relative values are to be ignored */
static bool set_abs(const char *v)
{
	return v && v[0] == '/';
}

char *gw_dirs_default_state(const struct gw_dirs_env *env)
{
	if (env->euid == 0)
		return join(env->root, "/var/lib/gitward");
	if (set_abs(env->xdg_state_home))
		return join(env->xdg_state_home, "/gitward");
	return join(set_abs(env->home) ? env->home : "/tmp", "/.local/state/gitward");
}

const char *gw_dirs_default_state_rule(const struct gw_dirs_env *env)
{
	if (env->euid == 0)
		return "as root";
	if (set_abs(env->xdg_state_home))
		return "for a user other than root: $XDG_STATE_HOME/gitward";
	if (set_abs(env->home))
		return "for a user other than root: $HOME/.local/state/gitward, or $XDG_STATE_HOME/gitward when set";
	return "for a user other than root without $HOME";
}

static bool is_dir(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void gw_dirs_resolve(char **state, char **run, char **log, const struct gw_dirs_env *env)
{
	bool state_given = *state != NULL;

	if (!*state)
		*state = gw_dirs_default_state(env);
	char buf[4096];
	char *legacy_run = gw_xstrdup(gw_path_state_run(buf, sizeof(buf), *state));
	char *legacy_log = gw_xstrdup(gw_path_state_logs(buf, sizeof(buf), *state));
	if (!*run) {
		if (state_given || is_dir(legacy_run))
			*run = legacy_run;
		else if (env->euid == 0)
			*run = join(env->root, "/run/gitward");
		else if (set_abs(env->xdg_runtime_dir))
			*run = join(env->xdg_runtime_dir, "/gitward");
		else
			*run = legacy_run;
		if (*run == legacy_run)
			legacy_run = NULL; /* now owned by *run */
	}
	if (!*log) {
		if (state_given || is_dir(legacy_log) || env->euid != 0) {
			*log = legacy_log;
			legacy_log = NULL; /* now owned by *log */
		} else {
			*log = join(env->root, "/var/log/gitward");
		}
	}
	free(legacy_run);
	free(legacy_log);
}

char *gw_path_state_run(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/run", state_dir);
	return buf;
}

char *gw_path_state_logs(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/logs", state_dir);
	return buf;
}

bool gw_dirs_run_is_legacy(const char *state_dir, const char *run_dir)
{
	char buf[4096];
	return !strcmp(run_dir, gw_path_state_run(buf, sizeof(buf), state_dir));
}

char *gw_path_state_file(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/state.json", state_dir);
	return buf;
}

char *gw_path_repo(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/repo.git", state_dir);
	return buf;
}

char *gw_path_repository(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/repository", state_dir);
	return buf;
}

char *gw_path_remotes(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/remotes.json", state_dir);
	return buf;
}

char *gw_path_fleet_lock(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/fleet-lock", state_dir);
	return buf;
}

char *gw_path_manifest_cache(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/repo.git/gitward-manifests.cache", state_dir);
	return buf;
}

char *gw_path_gnupg(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/gnupg", state_dir);
	return buf;
}

char *gw_path_lock(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/lock", state_dir);
	return buf;
}

char *gw_path_old_run_lock(char *buf, size_t size, const char *run_dir)
{
	snprintf(buf, size, "%s/lock", run_dir);
	return buf;
}

char *gw_path_run_owner(char *buf, size_t size, const char *run_dir)
{
	snprintf(buf, size, "%s/owner", run_dir);
	return buf;
}

/* the kinds with run records: a directory each, and their log prefix */
static const char *kind_dir(enum gw_kind kind)
{
	switch (kind) {
	case GW_KIND_PROCESS:
		return "process";
	case GW_KIND_VM:
		return "vm";
	default:
		assert(!"a kind without run records");
		return "other";
	}
}

char *gw_path_kind_dir(char *buf, size_t size, const char *run_dir, enum gw_kind kind)
{
	snprintf(buf, size, "%s/%s", run_dir, kind_dir(kind));
	return buf;
}

char *gw_path_record(char *buf, size_t size, const char *run_dir, enum gw_kind kind, const char *name, const char *ext)
{
	snprintf(buf, size, "%s/%s/%s.%s", run_dir, kind_dir(kind), name, ext);
	return buf;
}

char *gw_path_log(char *buf, size_t size, const char *log_dir, enum gw_kind kind, const char *name)
{
	snprintf(buf, size, "%s/%s-%s.log", log_dir, kind_dir(kind), name);
	return buf;
}
