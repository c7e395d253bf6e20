/* What the agent waits on between passes, so a workload that dies is healed
 * at once rather than at the next poll: an fd per running workload recorded
 * in the state file that its backend can watch (a pidfd for processes and
 * VMs), the end of the earliest restart backoff, the clocks of the health
 * checks, --auto-revert's deadline, and the event streams of the backends that have one (the
 * container engine's), each followed by a thread of the backend's. Which
 * backend does what is the table's business. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/apply.h"
#include "gitward/paths.h"

void gw_watch_clear(struct gw_watch *w)
{
	for (size_t i = 0; i < w->n; i++)
		close(w->fds[i]);
	free(w->fds);
	free(w->probes);
	memset(w, 0, sizeof(*w));
}

/* Wake-ups that come from the restart policy rather than from a backend. */
static void note_policy(struct gw_watch *w, const struct gw_observed *o, int64_t now)
{
	if (o->state != GW_STATE_RUNNING && o->backoff_until_ms > now &&
	    (!w->wake_at_ms || o->backoff_until_ms < w->wake_at_ms))
		w->wake_at_ms = o->backoff_until_ms;
	/* down, no backoff to wait for, and its policy restarts it: a pass now
	 * (the agent spaces out such passes while they change nothing) */
	if (o->state != GW_STATE_RUNNING && o->backoff_until_ms <= now &&
	    (o->restart == GW_RESTART_ALWAYS || (o->restart == GW_RESTART_ON_FAILURE && o->state == GW_STATE_FAILED)))
		w->down = true;
}

int gw_watch_build(struct gw_watch *w, const char *state_dir, const struct gw_backend_set *set)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096];
	int64_t now = gw_now_ms();

	memset(w, 0, sizeof(*w));
	gw_path_state_file(path, sizeof(path), state_dir);
	gw_state_file_init(&st);
	if (gw_state_load(&st, path, &err) < 0)
		return 0; /* nothing known to watch; the next pass reports it */
	/* --auto-revert's deadline: a pass then judges the commit in force */
	if (st.revert_at && st.revert_at * 1000 > now && (!w->wake_at_ms || st.revert_at * 1000 < w->wake_at_ms))
		w->wake_at_ms = st.revert_at * 1000;
	/* held actions (a window): a pass when the hold ends applies them */
	for (size_t i = 0; i < st.npending; i++) {
		int64_t at = st.pending[i].until * 1000 + 500; /* just past the opening */
		if (st.pending[i].held[0] && at > now && (!w->wake_at_ms || at < w->wake_at_ms))
			w->wake_at_ms = at;
	}
	w->fds = gw_xcalloc(st.n + 1, sizeof(*w->fds));
	w->probes = gw_xcalloc(st.n + 1, sizeof(*w->probes));
	for (size_t i = 0; i < st.n; i++) {
		const struct gw_observed *o = &st.res[i];
		struct gw_backend *b = gw_backend_set_for(set, o->kind);
		int fd = -1, rc;
		if (b && b->ops->follow && !b->error[0])
			w->follow = true;
		note_policy(w, o, now);
		if (o->state == GW_STATE_RUNNING && o->probe_every_ms > 0)
			w->probes[w->nprobes++] = (struct gw_watch_probe){ o->probed_at_ms, o->probe_every_ms };
		if (o->state != GW_STATE_RUNNING || !o->handle || !b || !b->ops->watch || b->error[0])
			continue;
		rc = b->ops->watch(&fd, b, o);
		if (rc == -ESRCH)
			w->gone = true;
		else if (rc == 0)
			w->fds[w->n++] = fd;
	}
	gw_state_file_free(&st);
	return 0;
}

/* ---- the backends' event streams ---- */

struct gw_events {
	const struct gw_backend_set *set;
	void **followers; /* per set->v[i], NULL when it follows nothing */
};

int gw_events_start(struct gw_events **out, const struct gw_backend_set *set, void (*notify)(void *ud), void *ud)
{
	struct gw_events *ev = gw_xcalloc(1, sizeof(*ev));
	size_t started = 0;
	ev->set = set;
	ev->followers = gw_xcalloc(set->n + 1, sizeof(*ev->followers));
	for (size_t i = 0; i < set->n; i++) {
		struct gw_backend *b = set->v[i];
		struct gw_error err;
		if (!b->ops->follow || b->error[0])
			continue;
		if (b->ops->follow(&ev->followers[i], b, notify, ud, &err) < 0) {
			gw_log(GW_LOG_WARN, "", "%s backend: %s", b->ops->name, err.msg);
			ev->followers[i] = NULL;
			continue;
		}
		started++;
	}
	if (!started) {
		gw_events_stop(ev);
		return -EAGAIN;
	}
	*out = ev;
	return 0;
}

void gw_events_stop(struct gw_events *ev)
{
	if (!ev)
		return;
	for (size_t i = 0; i < ev->set->n; i++)
		if (ev->followers[i])
			ev->set->v[i]->ops->unfollow(ev->followers[i]);
	free(ev->followers);
	free(ev);
}
