/* Operator controls kept as files in STATE/control: see gitward/control.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitward/control.h"
#include "gitward/schema.h"
#include "gitward/state.h"

#define CONTROL_FILE_MAX 4096

char *gw_path_control(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/control", state_dir);
	return buf;
}

char *gw_path_control_restart(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/control/restart", state_dir);
	return buf;
}

/* A dir of ours: made 0700 when missing, never a symlink. */
static int own_dir(const char *path, struct gw_error *err)
{
	struct stat st;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return gw_error_set_at(err, -errno, path, 0, 0, "cannot create: %s", strerror(errno));
	if (lstat(path, &st) < 0)
		return gw_error_set_at(err, -errno, path, 0, 0, "cannot read: %s", strerror(errno));
	if (S_ISLNK(st.st_mode))
		return gw_error_set_at(err, -ELOOP, path, 0, 0, "is a symbolic link: not followed in the state dir");
	if (!S_ISDIR(st.st_mode))
		return gw_error_set_at(err, -ENOTDIR, path, 0, 0, "not a directory");
	return 0;
}

int gw_control_dirs(const char *state_dir, struct gw_error *err)
{
	char path[4096];
	int rc = own_dir(gw_path_control(path, sizeof(path), state_dir), err);
	return rc < 0 ? rc : own_dir(gw_path_control_restart(path, sizeof(path), state_dir), err);
}

static void now_rfc3339(char *buf, size_t size)
{
	gw_time_format_utc(buf, size, gw_now_ms() / 1000);
}

static int write_json(const char *path, json_t *doc, struct gw_error *err)
{
	char *s = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(doc);
	if (!s)
		return gw_error_set(err, -ENOMEM, "out of memory");
	size_t len = strlen(s);
	s = gw_xrealloc(s, len + 2);
	s[len++] = '\n';
	int rc = gw_file_write_atomic(path, s, len, err);
	free(s);
	return rc;
}

int gw_control_suspend(const char *state_dir, const char *reason, struct gw_error *err)
{
	char path[4096], since[32];
	if (strlen(reason) >= GW_CONTROL_REASON_MAX)
		return gw_error_set(err, -EINVAL, "--reason: at most %d bytes", GW_CONTROL_REASON_MAX - 1);
	int rc = gw_control_dirs(state_dir, err);
	if (rc < 0)
		return rc;
	now_rfc3339(since, sizeof(since));
	json_t *doc = json_object();
	json_object_set_new(doc, "reason", gw_json_string(reason));
	json_object_set_new(doc, "since", json_string(since));
	snprintf(path, sizeof(path), "%s/control/suspend", state_dir);
	return write_json(path, doc, err);
}

int gw_control_resume(const char *state_dir, bool *was, struct gw_error *err)
{
	char path[4096];
	*was = false;
	snprintf(path, sizeof(path), "%s/control/suspend", state_dir);
	if (unlink(path) == 0) {
		*was = true;
		return 0;
	}
	if (errno == ENOENT || errno == ENOTDIR)
		return 0;
	return gw_error_set_at(err, -errno, path, 0, 0, "cannot remove: %s", strerror(errno));
}

/* A short printable-as-escaped string of a JSON object, or -EBADMSG. */
static int json_field(char *out, size_t size, const json_t *doc, const char *key)
{
	const json_t *v = json_object_get(doc, key);
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -EBADMSG;
	snprintf(out, size, "%s", json_string_value(v));
	return 0;
}

static bool valid_time(const char *s)
{
	unsigned y, mo, d, h, mi, sec;
	char z;
	return strlen(s) == 20 && sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u%c", &y, &mo, &d, &h, &mi, &sec, &z) == 7 &&
		z == 'Z';
}

int gw_control_suspend_read(struct gw_suspend *out, const char *state_dir, struct gw_error *err)
{
	char path[4096], *data = NULL;
	size_t len;
	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/control/suspend", state_dir);
	int rc = gw_file_read_nofollow(&data, &len, path, CONTROL_FILE_MAX, err);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return 0;
	out->on = true; /* present: suspended, whatever it holds */
	if (rc < 0) {
		snprintf(out->reason, sizeof(out->reason), "unreadable suspend file");
		return rc;
	}
	json_error_t je;
	json_t *doc = json_loadb(data, len, 0, &je);
	free(data);
	if (!json_is_object(doc) || json_field(out->reason, sizeof(out->reason), doc, "reason") < 0 ||
	    json_field(out->since, sizeof(out->since), doc, "since") < 0 || !valid_time(out->since)) {
		json_decref(doc);
		memset(out->since, 0, sizeof(out->since));
		snprintf(out->reason, sizeof(out->reason), "invalid suspend file");
		return gw_error_set_at(err, -EBADMSG, path, 0, 0,
				       "not a suspend record ({\"reason\": ..., \"since\": ...}): kept suspended");
	}
	json_decref(doc);
	return 0;
}

int gw_control_restart_request(const char *state_dir, enum gw_kind kind, const char *name, struct gw_error *err)
{
	char path[4096], now[32];
	if (gw_check_name(name))
		return gw_error_set(err, -EINVAL, "not a valid resource name");
	int rc = gw_control_dirs(state_dir, err);
	if (rc < 0)
		return rc;
	now_rfc3339(now, sizeof(now));
	json_t *doc = json_object();
	json_object_set_new(doc, "requested", json_string(now));
	snprintf(path, sizeof(path), "%s/control/restart/%s.%s", state_dir, gw_kind_to_string(kind), name);
	return write_json(path, doc, err);
}

int gw_control_restart_list(struct gw_restart_req **out, size_t *n, const char *state_dir, struct gw_error *err)
{
	char dir[4096];
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	gw_path_control_restart(dir, sizeof(dir), state_dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
		return 0;
	if (fd < 0)
		return gw_error_set_at(err, -errno, dir, 0, 0, "cannot read: %s", strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return gw_error_set_at(err, -errno, dir, 0, 0, "cannot read: %s", strerror(errno));
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		struct gw_restart_req r;
		char kind[32];
		const char *dot = strchr(de->d_name, '.');
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp."))
			continue;
		if (!dot || (size_t)(dot - de->d_name) >= sizeof(kind) || strlen(dot + 1) >= sizeof(r.name) ||
		    de->d_type != DT_REG) {
			gw_log(GW_LOG_WARN, "", "%s/%s: not a restart request (KIND.NAME): ignored", dir, de->d_name);
			continue;
		}
		memcpy(kind, de->d_name, (size_t)(dot - de->d_name));
		kind[dot - de->d_name] = '\0';
		snprintf(r.name, sizeof(r.name), "%s", dot + 1);
		if (gw_kind_from_string(&r.kind, kind) < 0 || gw_check_name(r.name)) {
			gw_log(GW_LOG_WARN, "", "%s/%s: not a restart request (KIND.NAME): ignored", dir, de->d_name);
			continue;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			*out = gw_xrealloc(*out, cap * sizeof(**out));
		}
		(*out)[(*n)++] = r;
	}
	closedir(d);
	return 0;
}

void gw_control_restart_done(const char *state_dir, enum gw_kind kind, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/control/restart/%s.%s", state_dir, gw_kind_to_string(kind), name);
	if (unlink(path) < 0 && errno != ENOENT)
		gw_log(GW_LOG_WARN, "", "%s: cannot remove the restart request: %s", path, strerror(errno));
}

void gw_control_overlay(struct gw_state_file *st, const char *state_dir)
{
	struct gw_suspend s;
	struct gw_error err;
	gw_control_suspend_read(&s, state_dir, &err); /* unreadable: suspended */
	free(st->suspended_reason);
	free(st->suspended_since);
	st->suspended_reason = st->suspended_since = NULL;
	st->suspended = s.on;
	if (s.on) {
		st->suspended_reason = gw_xstrdup(s.reason);
		st->suspended_since = s.since[0] ? gw_xstrdup(s.since) : NULL;
	}
}
