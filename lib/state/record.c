/* The record of one workload, as JSON: the same keys in the state file and in
 * the backends' run records (spec_hash, spec, started_at, restart,
 * depends_on), written, listed and read in one place. Each backend adds its
 * own identity keys (pid and start_time, shim_pid...) to what it writes. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/schema.h"
#include "gitward/state.h"

#define RECORD_MAX (1u << 20)

json_t *gw_record_new(const struct gw_observed *o)
{
	json_t *rec = json_object(), *deps = json_array();
	json_object_set_new(rec, "spec_hash", gw_json_string(o->spec_hash));
	json_object_set_new(rec, "spec", o->canonical ? gw_json_string(o->canonical) : json_null());
	json_object_set_new(rec, "restart", json_string(gw_restart_to_string(o->restart)));
	json_object_set_new(rec, "started_at", json_integer(o->started_at));
	for (size_t i = 0; i < o->depends_on.n; i++)
		json_array_append_new(deps, gw_json_string(o->depends_on.v[i]));
	json_object_set_new(rec, "depends_on", deps);
	return rec;
}

int gw_record_write(const char *path, const json_t *rec, struct gw_error *err)
{
	char *s = json_dumps(rec, JSON_COMPACT);
	int rc;
	if (!s)
		return err ? gw_error_set_at(err, -ENOMEM, path, 0, 0, "cannot serialise the record") : -ENOMEM;
	rc = gw_file_write_atomic(path, s, strlen(s), err);
	free(s);
	return rc;
}

int gw_record_scan(const char *dir, const char *ext, int (*fn)(const char *name, const char *path, void *ud), void *ud,
		   struct gw_error *err)
{
	size_t elen = strlen(ext);
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d && errno == ENOENT)
		return 0;
	if (!d)
		return gw_error_set_at(err, -errno, dir, 0, 0, "cannot list records: %s", strerror(errno));
	while (rc >= 0 && (de = readdir(d))) {
		char name[128], path[4096 + 256];
		size_t len = strlen(de->d_name);
		if (len <= elen || strcmp(de->d_name + len - elen, ext) != 0)
			continue;
		/* NAME becomes a path and a log key: validated like a manifest name */
		if (len - elen >= sizeof(name)) {
			gw_log(GW_LOG_WARN, "", "%s/%s: not a valid resource name: ignored", dir, de->d_name);
			continue;
		}
		memcpy(name, de->d_name, len - elen);
		name[len - elen] = '\0';
		if (gw_check_name(name)) {
			gw_log(GW_LOG_WARN, "", "%s/%s: not a valid resource name: ignored", dir, de->d_name);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = fn(name, path, ud);
	}
	closedir(d);
	return rc < 0 ? rc : 0;
}

int gw_record_parse(struct gw_observed *o, enum gw_kind kind, const char *name, const json_t *rec)
{
	const char *hash = json_string_value(json_object_get(rec, "spec_hash"));
	const char *spec = json_string_value(json_object_get(rec, "spec"));
	const json_t *deps = json_object_get(rec, "depends_on");

	if (!name || !hash || strlen(hash) != 64)
		return -EBADMSG;
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->name = gw_xstrdup(name);
	memcpy(o->spec_hash, hash, sizeof(o->spec_hash));
	o->canonical = spec ? gw_xstrdup(spec) : NULL;
	o->started_at = json_integer_value(json_object_get(rec, "started_at"));
	o->restart = gw_restart_from_string(json_string_value(json_object_get(rec, "restart")));
	if (json_array_size(deps)) {
		o->depends_on.v = gw_xcalloc(json_array_size(deps) + 1, sizeof(char *));
		for (size_t i = 0; i < json_array_size(deps); i++)
			if (json_is_string(json_array_get(deps, i)))
				o->depends_on.v[o->depends_on.n++] =
					gw_xstrdup(json_string_value(json_array_get(deps, i)));
	}
	return 0;
}

int gw_record_parse_buf(struct gw_observed *o, enum gw_kind kind, const char *name, const char *data, size_t len)
{
	json_t *rec = json_loadb(data, len, 0, NULL);
	int rc = json_is_object(rec) ? gw_record_parse(o, kind, name, rec) : -EBADMSG;
	json_decref(rec);
	return rc;
}

json_t *gw_record_load(const char *path)
{
	char *data;
	size_t len;
	struct gw_error err;
	if (gw_file_read_nofollow(&data, &len, path, RECORD_MAX, &err) < 0)
		return NULL;
	json_t *rec = json_loadb(data, len, 0, NULL);
	free(data);
	return rec;
}
