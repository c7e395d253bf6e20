/* What the agent waits on between passes, so a workload that dies is healed
 * at once rather than at the next poll: a pidfd per running Process and VM
 * workload recorded in the state file (readable when the process exits),
 * the end of the earliest restart backoff, and the container engine's event
 * stream, followed by a thread that reports the death of our containers. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gitward/apply.h"
#include "gitward/engine.h"

static int pidfd_open_(long long pid)
{
	return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
}

void gw_watch_clear(struct gw_watch *w)
{
	for (size_t i = 0; i < w->n; i++)
		close(w->fds[i]);
	free(w->fds);
	memset(w, 0, sizeof(*w));
}

int gw_watch_build(struct gw_watch *w, const struct gw_config *cfg)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096];
	int64_t now = gw_now_ms();

	memset(w, 0, sizeof(*w));
	snprintf(path, sizeof(path), "%s/state.json", cfg->state_dir);
	gw_state_file_init(&st);
	if (gw_state_load(&st, path, &err) < 0)
		return 0; /* nothing known to watch; the next pass reports it */
	w->fds = gw_xcalloc(st.n + 1, sizeof(*w->fds));
	for (size_t i = 0; i < st.n; i++) {
		const struct gw_observed *o = &st.res[i];
		if (o->kind == GW_KIND_CONTAINER)
			w->containers = true;
		if (o->state != GW_STATE_RUNNING && o->backoff_until_ms > now &&
		    (!w->wake_at_ms || o->backoff_until_ms < w->wake_at_ms))
			w->wake_at_ms = o->backoff_until_ms;
		/* down, no backoff to wait for, and its policy restarts it: a pass
		 * now (the agent spaces out such passes while they change nothing) */
		if (o->state != GW_STATE_RUNNING && o->backoff_until_ms <= now &&
		    (o->restart == GW_RESTART_ALWAYS ||
		     (o->restart == GW_RESTART_ON_FAILURE && o->state == GW_STATE_FAILED)))
			w->down = true;
		if (o->state != GW_STATE_RUNNING || o->pid <= 1 || o->kind == GW_KIND_CONTAINER)
			continue;
		int fd = pidfd_open_(o->pid);
		/* the pid may have been reused since: the start time tells */
		if (fd < 0 || (o->start_time && !gw_proc_alive(o->pid, o->start_time))) {
			if (fd >= 0)
				close(fd);
			if (fd >= 0 || errno == ESRCH)
				w->gone = true;
			continue;
		}
		w->fds[w->n++] = fd;
	}
	gw_state_file_free(&st);
	return 0;
}

/* ---- the container engine's events ---- */

struct gw_events {
	pthread_t thread;
	struct gw_cancel stop;
	char socket[4096];
	char path[8192];
	void (*notify)(void *ud);
	void *ud;
};

static int on_event(const char *line, size_t len, void *ud)
{
	struct gw_events *ev = ud;
	(void)line;
	(void)len;
	ev->notify(ev->ud); /* the filter passes only the deaths of our containers */
	return 0;
}

static void *events_main(void *arg)
{
	struct gw_events *ev = arg;
	int failing = 0;
	while (!gw_cancel_requested(&ev->stop)) {
		struct gw_engine e;
		struct gw_error err;
		int rc = gw_engine_connect(&e, ev->socket, 5000, &err);
		if (rc == 0) {
			e.cancel = &ev->stop;
			if (failing)
				gw_log(GW_LOG_INFO, "", "container events: following %s again", ev->socket);
			failing = 0;
			/* a container that died while the stream was down is found by
			 * the heal pass this triggers */
			ev->notify(ev->ud);
			rc = gw_engine_stream(&e, ev->path, on_event, ev, &err);
		}
		if (rc < 0 && !gw_cancel_requested(&ev->stop)) {
			if (!failing++)
				gw_log(GW_LOG_DEBUG, "", "container events: %s; retrying", err.msg);
			gw_cancel_sleep(&ev->stop, failing < 5 ? 1000 : 5000);
		}
	}
	return NULL;
}

static void url_escape(char *out, size_t size, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s && o + 4 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

int gw_events_start(struct gw_events **out, const struct gw_backend_ctx *ctx, void (*notify)(void *ud), void *ud)
{
	struct gw_events *ev = gw_xcalloc(1, sizeof(*ev));
	char filters[6000], esc[7000];
	json_t *f = json_pack("{s:[s], s:[s, s], s:[s, s]}", "type", "container", "event", "die", "oom", "label",
			      "gitward.managed=true", "gitward.state-dir");
	json_array_set_new(json_object_get(f, "label"), 1,
			   json_sprintf("gitward.state-dir=%s", ctx->state_dir ? ctx->state_dir : ""));
	char *js = json_dumps(f, JSON_COMPACT);
	snprintf(filters, sizeof(filters), "%s", js);
	free(js);
	json_decref(f);
	url_escape(esc, sizeof(esc), filters);
	snprintf(ev->path, sizeof(ev->path), "/events?filters=%s", esc);
	snprintf(ev->socket, sizeof(ev->socket), "%s", gw_engine_default_socket(ctx->container_socket));
	ev->notify = notify;
	ev->ud = ud;
	if (pthread_create(&ev->thread, NULL, events_main, ev) != 0) {
		free(ev);
		return -EAGAIN;
	}
	*out = ev;
	return 0;
}

void gw_events_stop(struct gw_events *ev)
{
	if (!ev)
		return;
	gw_cancel_request(&ev->stop);
	pthread_join(ev->thread, NULL);
	free(ev);
}
