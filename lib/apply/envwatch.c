/* envFiles watched: a workload reads its envFiles when it starts, so a later
 * edit on the node is invisible to it. Just before each start the SHA-256 of
 * each file is taken and kept with the workload in the state file; at observe
 * a running workload whose file now differs is marked for the planner, which
 * restarts it. Values and digests never reach a log line, plan or status. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/apply.h"

void gw_apply__env_record(struct gw_strmap *out, const struct gw_resource *r)
{
	for (size_t i = 0; i < r->env_files.n; i++) {
		struct gw_error e;
		char digest[65];
		/* unreadable: the start fails on it with its own error */
		if (gw_envfile_digest(digest, r->env_files.v[i], &e) == 0)
			gw_strmap_set(out, r->env_files.v[i], digest);
	}
}

void gw_apply__env_check(struct gw_observed *o, const struct gw_resource *r)
{
	char key[200];

	free(o->env_changed);
	o->env_changed = NULL;
	if (!r || o->state != GW_STATE_RUNNING || strcmp(o->spec_hash, r->spec_hash) != 0)
		return; /* an update or a start reads the files anew anyway */
	snprintf(key, sizeof(key), "%s/%s", gw_kind_to_string(o->kind), o->name);
	for (size_t i = 0; i < r->env_files.n && !o->env_changed; i++) {
		const char *path = r->env_files.v[i], *was = gw_strmap_get(&o->env_digests, path);
		struct gw_error e;
		char now[65];
		if (gw_envfile_digest(now, path, &e) < 0) {
			/* gone or unreadable is no new content: it keeps running on
			 * what it read, and its next start fails on this error */
			gw_log(GW_LOG_WARN, key, "%s; not restarted: it keeps the values it read when it started",
			       e.msg);
			continue;
		}
		if (!was) /* started by an earlier version: its digest from now on, no restart */
			gw_strmap_set(&o->env_digests, path, now);
		else if (strcmp(was, now) != 0)
			o->env_changed = gw_xstrdup(path);
	}
}
