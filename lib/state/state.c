/* The state dir: a lock naming its holder, and the state file — the last
 * applied commit and what gitward manages — written atomically and checked
 * on read, so a torn file is reported rather than half-trusted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitward/schema.h"
#include "gitward/state.h"

#define STATE_VERSION 1
#define STATE_MAX (64u << 20)

void gw_state_file_init(struct gw_state_file *st)
{
	memset(st, 0, sizeof(*st));
}

void gw_state_file_free(struct gw_state_file *st)
{
	free(st->node);
	free(st->commit);
	free(st->ref);
	free(st->last_error);
	for (size_t i = 0; i < st->n; i++)
		gw_observed_clear(&st->res[i]);
	free(st->res);
	gw_state_file_init(st);
}

static char *opt_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? gw_xstrdup(json_string_value(v)) : NULL;
}

int gw_state_load(struct gw_state_file *out, const char *path, struct gw_error *err)
{
	char *data;
	size_t len;
	int rc;

	rc = gw_file_read_nofollow(&data, &len, path, STATE_MAX, err);
	if (rc == -ENOENT) {
		gw_state_file_init(out);
		return 0;
	}
	if (rc < 0)
		return rc;
	rc = gw_state_parse(out, data, len, path, err);
	free(data);
	return rc;
}

int gw_state_parse(struct gw_state_file *out, const char *data, size_t len, const char *path, struct gw_error *err)
{
	struct gw_state_file st;
	json_error_t jerr;
	json_t *root, *res;

	gw_state_file_init(&st);
	root = json_loadb(data, len, 0, &jerr);
	if (!root)
		return gw_error_set_at(err, -EBADMSG, path, (unsigned)jerr.line, (unsigned)jerr.column,
				       "state file is corrupt: %s", jerr.text);
	if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION ||
	    !json_is_array(json_object_get(root, "resources"))) {
		json_decref(root);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0, "state file is corrupt: not a gitward state v%d",
				       STATE_VERSION);
	}
	st.node = opt_str(root, "node");
	st.commit = opt_str(root, "commit");
	st.ref = opt_str(root, "ref");
	st.last_error = opt_str(root, "last_error");
	st.last_sync = json_integer_value(json_object_get(root, "last_sync"));
	res = json_object_get(root, "resources");
	st.res = gw_xcalloc(json_array_size(res) + 1, sizeof(*st.res));
	for (size_t i = 0; i < json_array_size(res); i++) {
		json_t *r = json_array_get(res, i);
		struct gw_observed *o = &st.res[st.n];
		const char *kind = json_string_value(json_object_get(r, "kind"));
		enum gw_kind k;
		const char *state = json_string_value(json_object_get(r, "state"));
		const char *health = json_string_value(json_object_get(r, "health"));
		const char *detail = json_string_value(json_object_get(r, "detail"));
		const char *id = json_string_value(json_object_get(r, "id"));
		const char *name = json_string_value(json_object_get(r, "name"));
		if (name && gw_check_name(name)) {
			/* it becomes a path: never trusted because it is on disk */
			gw_log(GW_LOG_WARN, "", "%s: resource %zu has an invalid name (%s): ignored", path, i,
			       gw_check_name(name));
			continue;
		}
		if (!kind || gw_kind_from_string(&k, kind) < 0 ||
		    gw_record_parse(o, k, json_string_value(json_object_get(r, "name")), r) < 0) {
			gw_state_file_free(&st);
			json_decref(root);
			return gw_error_set_at(err, -EBADMSG, path, 0, 0, "state file is corrupt: resource %zu", i);
		}
		if (!state || gw_state_from_string(&o->state, state) < 0)
			o->state = GW_STATE_PENDING;
		if (!health || gw_health_from_string(&o->health, health) < 0)
			o->health = GW_HEALTH_UNKNOWN;
		if (detail)
			snprintf(o->detail, sizeof(o->detail), "%s", detail);
		if (id)
			snprintf(o->id, sizeof(o->id), "%s", id);
		o->restarts = (int)json_integer_value(json_object_get(r, "restarts"));
		o->crash_streak = (int)json_integer_value(json_object_get(r, "crash_streak"));
		o->backoff_until_ms = json_integer_value(json_object_get(r, "backoff_until_ms"));
		o->health_failures = (int)json_integer_value(json_object_get(r, "health_failures"));
		/* absent in state files of earlier versions: converged */
		o->not_converged = json_is_false(json_object_get(r, "converged"));
		st.n++;
	}
	json_decref(root);
	*out = st;
	return 0;
}

/* every string may hold what a library or Git said: kept valid UTF-8 */
static json_t *str_or_null(const char *s)
{
	return gw_json_string(s);
}

int gw_state_save(const struct gw_state_file *st, const char *path, struct gw_error *err)
{
	json_t *root = json_object(), *res = json_array();
	char *data;
	int rc;

	json_object_set_new(root, "version", json_integer(STATE_VERSION));
	json_object_set_new(root, "node", str_or_null(st->node));
	json_object_set_new(root, "commit", str_or_null(st->commit));
	json_object_set_new(root, "ref", str_or_null(st->ref));
	json_object_set_new(root, "last_sync", json_integer(st->last_sync));
	json_object_set_new(root, "last_error", str_or_null(st->last_error));
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		json_t *r = json_object(), *deps = json_array();
		json_object_set_new(r, "kind", json_string(gw_kind_to_string(o->kind)));
		json_object_set_new(r, "name", gw_json_string(o->name));
		json_object_set_new(r, "spec_hash", gw_json_string(o->spec_hash));
		json_object_set_new(r, "spec", str_or_null(o->canonical));
		json_object_set_new(r, "restart", json_string(gw_restart_to_string(o->restart)));
		json_object_set_new(r, "state", json_string(gw_state_to_string(o->state)));
		json_object_set_new(r, "health", json_string(gw_health_to_string(o->health)));
		json_object_set_new(r, "detail", gw_json_string(o->detail));
		json_object_set_new(r, "pid", json_integer(o->pid));
		json_object_set_new(r, "start_time", json_integer(o->start_time));
		json_object_set_new(r, "id", gw_json_string(o->id));
		json_object_set_new(r, "restarts", json_integer(o->restarts));
		json_object_set_new(r, "started_at", json_integer(o->started_at));
		json_object_set_new(r, "crash_streak", json_integer(o->crash_streak));
		json_object_set_new(r, "backoff_until_ms", json_integer(o->backoff_until_ms));
		json_object_set_new(r, "health_failures", json_integer(o->health_failures));
		json_object_set_new(r, "converged", json_boolean(!o->not_converged));
		for (size_t k = 0; k < o->depends_on.n; k++)
			json_array_append_new(deps, gw_json_string(o->depends_on.v[k]));
		json_object_set_new(r, "depends_on", deps);
		json_array_append_new(res, r);
	}
	json_object_set_new(root, "resources", res);
	data = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	rc = gw_file_write_atomic(path, data, strlen(data), err);
	free(data);
	return rc;
}

char *gw_state_render_status(const struct gw_state_file *st)
{
	json_t *root = json_object(), *res = json_array();
	char ts[64];
	char *out;

	json_object_set_new(root, "node", str_or_null(st->node));
	json_object_set_new(root, "commit", str_or_null(st->commit));
	json_object_set_new(root, "ref", str_or_null(st->ref));
	if (st->last_sync) {
		gw_time_format_utc(ts, sizeof(ts), st->last_sync);
		json_object_set_new(root, "last_sync", json_string(ts));
	} else {
		json_object_set_new(root, "last_sync", json_null());
	}
	json_object_set_new(root, "last_error", str_or_null(st->last_error));
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		json_t *r = json_object();
		json_object_set_new(r, "kind", json_string(gw_kind_to_string(o->kind)));
		json_object_set_new(r, "name", gw_json_string(o->name));
		json_object_set_new(r, "state", json_string(gw_state_to_string(o->state)));
		json_object_set_new(r, "health", json_string(gw_health_to_string(o->health)));
		if (o->kind == GW_KIND_CONTAINER)
			json_object_set_new(r, "id", gw_json_string(o->id));
		else
			json_object_set_new(r, "pid", o->pid ? json_integer(o->pid) : json_null());
		json_object_set_new(r, "spec_hash", gw_json_string(o->spec_hash));
		json_object_set_new(r, "restarts", json_integer(o->restarts));
		if (o->detail[0])
			json_object_set_new(r, "detail", gw_json_string(o->detail));
		json_array_append_new(res, r);
	}
	json_object_set_new(root, "resources", res);
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return out;
}

void gw_state_render_status_text(FILE *f, const struct gw_state_file *st)
{
	char ts[64] = "never", esc[2048];
	if (st->last_sync)
		gw_time_format_utc(ts, sizeof(ts), st->last_sync);
	/* all of it read back from a file: escaped */
	fprintf(f, "node:      %s\n", gw_escape(esc, sizeof(esc), st->node ? st->node : "-"));
	fprintf(f, "commit:    %s\n", gw_escape(esc, sizeof(esc), st->commit ? st->commit : "-"));
	fprintf(f, "ref:       %s\nlast sync: %s\n", gw_escape(esc, sizeof(esc), st->ref ? st->ref : "-"), ts);
	if (st->last_error)
		fprintf(f, "last error: %s\n", gw_escape(esc, sizeof(esc), st->last_error));
	for (size_t i = 0; i < st->n; i++) {
		const struct gw_observed *o = &st->res[i];
		char key[200], ident[100], id[13];
		snprintf(esc, sizeof(esc), "%s/%s", gw_kind_to_string(o->kind), o->name);
		gw_escape(key, sizeof(key), esc);
		if (o->kind == GW_KIND_CONTAINER)
			snprintf(ident, sizeof(ident), "id %s", gw_escape(id, sizeof(id), o->id));
		else
			snprintf(ident, sizeof(ident), "pid %lld", o->pid);
		fprintf(f, "  %-28s %-8s %-9s %s%s%s\n", key, gw_state_to_string(o->state),
			gw_health_to_string(o->health), ident, o->detail[0] ? "  " : "",
			gw_escape(esc, sizeof(esc), o->detail));
	}
}

/* One entry of the state dir: a real directory (no link), ours, writable by
 * nobody else — whoever could write here could make gitward signal, delete
 * or overwrite what they choose. */
static int check_dir(const char *path, int follow, struct gw_error *err)
{
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) {
		if (errno == ENOENT && !follow)
			return 0;
		return gw_error_set_at(err, -errno, path, 0, 0, "state dir: %s", strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return gw_error_set_at(err, -ENOTDIR, path, 0, 0,
				       "state dir: not a directory%s (remove it; gitward creates its own)",
				       S_ISLNK(st.st_mode) ? " but a symbolic link" : "");
	if (st.st_uid != geteuid())
		return gw_error_set_at(
			err, -EPERM, path, 0, 0,
			"state dir is owned by uid %u, not by this user (uid %u): chown it or use another "
			"--state-dir",
			(unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return gw_error_set_at(err, -EPERM, path, 0, 0,
				       "state dir is writable by %s (mode %04o): chmod go-w it",
				       st.st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st.st_mode & 07777));
	return 0;
}

int gw_state_dir_check(const char *dir, struct gw_error *err)
{
	static const char *const subdirs[] = { "run", "run/process", "run/vm", "logs" };
	char path[4096];
	int rc = check_dir(dir, 1, err);
	for (size_t i = 0; rc == 0 && i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subdirs[i]);
		rc = check_dir(path, 0, err);
	}
	return rc;
}

int gw_state_lock(int *out_fd, const char *dir, struct gw_error *err)
{
	char path[4096], buf[32];
	int fd, rc;

	if ((rc = gw_state_dir_check(dir, err)) < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (fd < 0 && errno == ELOOP)
		return gw_error_set_at(err, -ELOOP, path, 0, 0, "lock is a symbolic link: remove it");
	if (fd < 0)
		return gw_error_set_at(err, -errno, path, 0, 0, "cannot open lock: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return gw_error_set_at(err, -EINVAL, path, 0, 0, "lock is not a plain file of its own: remove it");
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			return gw_error_set(err, -EBUSY, "state dir %s is in use by another gitward (pid %s)", dir,
					    buf[0] ? buf : "unknown");
		return gw_error_set_at(err, -e, path, 0, 0, "cannot lock: %s", strerror(e));
	}
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		int e = errno;
		close(fd);
		return gw_error_set_at(err, -e, path, 0, 0, "cannot write lock: %s", strerror(e));
	}
	*out_fd = fd;
	return 0;
}

char *gw_state_default_dir(void)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	if (geteuid() == 0) {
		gw_strbuf_puts(&sb, "/var/lib/gitward");
	} else {
		const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
		if (x && *x)
			gw_strbuf_printf(&sb, "%s/gitward", x);
		else
			gw_strbuf_printf(&sb, "%s/.local/state/gitward", home && *home ? home : "/tmp");
	}
	return gw_strbuf_detach(&sb);
}
