/* `gitward rollback`: which commit a pin names, and at which tip it is
 * made. The pass follows the pin (pass.c, run.c); this room only decides
 * and writes it (gitward/pin.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/history.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/pin.h"

static bool applied(const struct gw_history_entry *e)
{
	return !strcmp(e->result, "converged") || !strcmp(e->result, "rolled-back");
}

/* The last commit before the one in force that converged: the entries
 * older than the newest one of the commit in force, newest first. */
static int default_commit(char out[41], const char *state_dir, const char *in_force, struct gw_error *err)
{
	struct gw_history_entry *v = NULL;
	size_t n = 0, i = 0;
	int rc = gw_history_load(&v, &n, state_dir, err);
	if (rc < 0)
		return rc;
	if (in_force)
		while (i < n && !(applied(&v[i]) && !strcmp(v[i].commit, in_force)))
			i++;
	if (i == n)
		i = 0; /* the commit in force is not in the history: any other one */
	for (; i < n; i++)
		if (!strcmp(v[i].result, "converged") && (!in_force || strcmp(v[i].commit, in_force) != 0))
			break;
	if (i < n)
		memcpy(out, v[i].commit, 41);
	else
		rc = gw_error_set(err, -ENOENT,
				  "no commit before the one in force converged on this node (see gitward history): "
				  "name one");
	free(v);
	return rc;
}

int gw_pass_rollback(struct gw_pin *out, const char *state_dir, const char *id, const char *reason,
		     struct gw_error *err)
{
	struct gw_state_file st;
	char path[4096], want[41] = "", commit[41];
	int rc = gw_state_load(&st, gw_path_state_file(path, sizeof(path), state_dir), err);
	if (rc < 0)
		return rc;
	if (!id) {
		rc = default_commit(want, state_dir, st.commit, err);
		id = want;
	}
	if (rc == 0)
		rc = gw_source_find_commit(commit, gw_path_repo(path, sizeof(path), state_dir), id, err);
	const char *tip = st.remote_commit ? st.remote_commit : st.commit ? st.commit : "";
	if (rc == 0)
		rc = gw_pin_write(state_dir, commit, tip, reason ? reason : "", err);
	if (rc == 0)
		rc = gw_pin_read(out, state_dir, err);
	gw_state_file_free(&st);
	return rc;
}
