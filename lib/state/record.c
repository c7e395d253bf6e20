/* The record of one workload, as JSON: the same keys in the state file and in
 * the backends' run records (spec_hash, spec, pid, start_time, started_at,
 * restart, depends_on), read in one place. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/state.h"

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
	o->pid = json_integer_value(json_object_get(rec, "pid"));
	o->start_time = json_integer_value(json_object_get(rec, "start_time"));
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
	if (gw_file_read_nofollow(&data, &len, path, 1u << 20, &err) < 0)
		return NULL;
	json_t *rec = json_loadb(data, len, 0, NULL);
	free(data);
	return rec;
}
