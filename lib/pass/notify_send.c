/* Delivery of events: one thread with a bounded queue, so that a dead or
 * slow sink never delays a pass. Each event goes to every sink, with a few
 * tries and a doubling wait between them; a full queue drops its oldest
 * event (counted). The sinks: a signed webhook POST (libcurl, bounded by
 * its timeouts) and the exec hook (gw_spawn, argv only, killed when late).
 * Stopping abandons a delivery under way within about a second. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitward/notify.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/plan.h"
#include "gitward/spawn.h"

/* ---- the webhook ---- */

struct webhook {
	struct gw_notify_sink base;
	char *url;
	unsigned char *secret;
	size_t secret_len;
};

static void sign(char *out, size_t size, const struct webhook *w, const char *body)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	HMAC(EVP_sha256(), w->secret, (int)w->secret_len, (const unsigned char *)body, strlen(body), mac, &len);
	size_t o = (size_t)snprintf(out, size, "X-Gitward-Signature-256: sha256=");
	for (unsigned int i = 0; i < len && o + 2 < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%02x", mac[i]);
}

/* POST body (JSON) to url, bounded; sig: an extra header or NULL */
static int post_json(struct gw_notify_sink *s, const char *url, const char *body, const char *sig,
		     const struct gw_cancel *stop, struct gw_error *err)
{
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && sig) {
		struct curl_slist *h2 = curl_slist_append(h, sig);
		if (!h2) {
			curl_slist_free_all(h);
			h = NULL;
		} else {
			h = h2;
		}
	}
	if (!h)
		return gw_error_set(err, -ENOMEM, "%s: cannot start a request", s->shown);
	int rc = gw_notify__post(s->shown, url, body, h, stop, err);
	curl_slist_free_all(h);
	return rc;
}

static int webhook_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
			   struct gw_error *err)
{
	struct webhook *w = (struct webhook *)s;
	char sig[128];
	if (w->secret)
		sign(sig, sizeof(sig), w, ev->body);
	return post_json(s, w->url, ev->body, w->secret ? sig : NULL, stop, err);
}

static void webhook_free(struct gw_notify_sink *s)
{
	struct webhook *w = (struct webhook *)s;
	free(w->url);
	if (w->secret) {
		OPENSSL_cleanse(w->secret, w->secret_len);
		free(w->secret);
	}
}

static const struct gw_notify_sink_ops webhook_ops = { webhook_deliver, webhook_free, false };

int gw_notify_webhook_new(struct gw_notify_sink **out, const char *url, const char *secret, size_t secret_len,
			  struct gw_error *err)
{
	struct webhook *w = calloc(1, sizeof(*w));
	if (!w)
		return gw_error_set(err, -ENOMEM, "out of memory");
	w->base.ops = &webhook_ops;
	snprintf(w->base.label, sizeof(w->base.label), "webhook");
	w->url = strdup(url);
	w->base.shown = gw_url_redacted(url);
	if (secret) {
		w->secret = malloc(secret_len ? secret_len : 1);
		if (w->secret)
			memcpy(w->secret, secret, secret_len);
		w->secret_len = secret_len;
	}
	if (!w->url || !w->base.shown || (secret && !w->secret)) {
		webhook_free(&w->base);
		free(w->base.shown);
		free(w);
		return gw_error_set(err, -ENOMEM, "out of memory");
	}
	*out = &w->base;
	return 0;
}

/* ---- the exec hook ---- */

struct hook {
	struct gw_notify_sink base;
	char *path;
	int64_t timeout_ms;
};

static int hook_wait(pid_t pid, int64_t timeout_ms, const struct gw_cancel *stop, int *status)
{
	int64_t until = gw_monotonic_ms() + timeout_ms;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (gw_monotonic_ms() >= until || gw_cancel_requested(stop)) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
}

static int hook_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
			struct gw_error *err)
{
	struct hook *k = (struct hook *)s;
	char *env[6] = { NULL };
	int rc, status = 0, fd = memfd_create("gitward-event", MFD_CLOEXEC);
	size_t len = strlen(ev->body);
	pid_t pid;

	if (fd < 0 || write(fd, ev->body, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) < 0) {
		rc = gw_error_set(err, fd < 0 ? -errno : -EIO, "%s: cannot hold the event", s->shown);
		goto out;
	}
	if (asprintf(&env[0], "%s", GW_SPAWN_PATH_ENV) < 0 ||
	    asprintf(&env[1], "GITWARD_EVENT=%s", gw_event_kind_to_string(ev->kind)) < 0 ||
	    asprintf(&env[2], "GITWARD_NODE=%s", ev->node) < 0 ||
	    asprintf(&env[3], "GITWARD_COMMIT=%s", ev->commit) < 0 ||
	    asprintf(&env[4], "GITWARD_MESSAGE=%s", ev->message) < 0) {
		rc = gw_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	char *argv[] = { k->path, NULL };
	struct gw_spawn sp = { .path = k->path,
			       .argv = argv,
			       .envp = env,
			       .fds = { fd, GW_SPAWN_FD_NULL, GW_SPAWN_FD_KEEP },
			       .nfds = 3,
			       .group = GW_SPAWN_GROUP_NEW };
	rc = gw_spawn_start(&pid, &sp, err);
	if (rc < 0) {
		gw_error_prefix(err, "%s", s->shown);
		goto out;
	}
	rc = hook_wait(pid, k->timeout_ms, stop, &status);
	if (rc == -ETIMEDOUT)
		rc = gw_error_set(err, rc, "%s: killed after %lldms", s->shown, (long long)k->timeout_ms);
	else if (rc < 0)
		rc = gw_error_set(err, rc, "%s: cannot wait for it", s->shown);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rc = gw_error_set(err, -EIO, "%s: exited with status %d", s->shown,
				  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
	for (size_t i = 0; i < 5; i++)
		free(env[i]);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void hook_free(struct gw_notify_sink *s)
{
	free(((struct hook *)s)->path);
}

static const struct gw_notify_sink_ops hook_ops = { hook_deliver, hook_free, false };

int gw_notify_exec_new(struct gw_notify_sink **out, const char *path, int64_t timeout_ms, struct gw_error *err)
{
	struct hook *k = calloc(1, sizeof(*k));
	if (!k)
		return gw_error_set(err, -ENOMEM, "out of memory");
	k->base.ops = &hook_ops;
	snprintf(k->base.label, sizeof(k->base.label), "exec");
	k->path = strdup(path);
	k->base.shown = strdup(path);
	k->timeout_ms = timeout_ms;
	if (!k->path || !k->base.shown) {
		free(k->path);
		free(k->base.shown);
		free(k);
		return gw_error_set(err, -ENOMEM, "out of memory");
	}
	*out = &k->base;
	return 0;
}

/* ---- Alertmanager ---- */

#define ALERTS_MAX (GW_NOTIFY_RESOURCES_MAX + 8)

/* One condition: firing (ends_ms 0) or resolved and not yet told so */
struct alert {
	const char *name; /* GitwardSyncFailing, ... */
	char *resource; /* "Kind/name" or NULL */
	int64_t starts_ms, ends_ms;
	char *summary, *description;
};

struct alertmanager {
	struct gw_notify_sink base;
	char *url; /* .../api/v2/alerts */
	char node[256];
	json_t *labels; /* the node's --label's, names made valid */
	struct alert *v;
	size_t n;
	bool dirty; /* changed since the last POST */
	int64_t posted_ms;
};

static struct alert *alert_find(struct alertmanager *a, const char *name, const char *resource)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].name == name && !strcmp(a->v[i].resource ? a->v[i].resource : "", resource ? resource : ""))
			return &a->v[i];
	return NULL;
}

static void alert_clear(struct alert *x)
{
	free(x->resource);
	free(x->summary);
	free(x->description);
}

/* The condition fires (again, or with new words) */
static void alert_fire(struct alertmanager *a, const char *name, const char *resource, const char *summary,
		       const char *description, int64_t now)
{
	struct alert *x = alert_find(a, name, resource);
	if (!x) {
		if (a->n == ALERTS_MAX) {
			gw_log(GW_LOG_WARN, "", "%s: %d alerts already: %s left out", a->base.shown, ALERTS_MAX, name);
			return;
		}
		x = &a->v[a->n];
		memset(x, 0, sizeof(*x));
		x->name = name;
		x->resource = resource ? strdup(resource) : NULL;
		x->starts_ms = now;
		a->n++;
	} else if (x->ends_ms) { /* resolved but not yet told: fires anew */
		x->starts_ms = now;
	}
	x->ends_ms = 0;
	free(x->summary);
	free(x->description);
	x->summary = strdup(summary);
	x->description = strdup(description);
	a->dirty = true;
}

static void alert_resolve(struct alertmanager *a, const char *name, const char *resource, int64_t now)
{
	struct alert *x = alert_find(a, name, resource);
	if (x && !x->ends_ms) {
		x->ends_ms = now;
		a->dirty = true;
	}
}

static void rfc3339(char *out, size_t size, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *alerts_json(const struct alertmanager *a, int64_t now)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < a->n; i++) {
		const struct alert *x = &a->v[i];
		char starts[40], ends[40];
		rfc3339(starts, sizeof(starts), x->starts_ms);
		rfc3339(ends, sizeof(ends), x->ends_ms ? x->ends_ms : now + GW_ALERT_TTL_MS);
		json_t *labels = a->labels ? json_deep_copy(a->labels) : json_object();
		const char *severity = !strcmp(x->name, "GitwardSyncFailing") ? "critical"
			: !strcmp(x->name, "GitwardSuspended")		      ? "info"
									      : "warning";
		json_object_set_new(labels, "alertname", json_string(x->name));
		json_object_set_new(labels, "node", json_string(a->node));
		json_object_set_new(labels, "severity", json_string(severity));
		if (x->resource)
			json_object_set_new(labels, "resource", json_string(x->resource));
		json_array_append_new(arr,
				      json_pack("{s:o, s:{s:s, s:s}, s:s, s:s}", "labels", labels, "annotations",
						"summary", x->summary ? x->summary : "", "description",
						x->description ? x->description : "", "startsAt", starts, "endsAt",
						ends));
	}
	return arr;
}

/* The event's node labels, once: names made valid for Alertmanager
 * ([a-zA-Z_][a-zA-Z0-9_]*), ours (alertname, node, ...) kept ours */
static void take_labels(struct alertmanager *a, json_t *body)
{
	json_t *node = json_object_get(body, "node"), *labels = json_object_get(body, "labels"), *v;
	const char *k;
	if (json_is_string(node))
		snprintf(a->node, sizeof(a->node), "%s", json_string_value(node));
	if (a->labels || !json_is_object(labels))
		return;
	a->labels = json_object();
	json_object_foreach(labels, k, v)
	{
		char name[128];
		size_t i = 0;
		for (; k[i] && i + 1 < sizeof(name); i++)
			name[i] = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || k[i] == '_' ||
					(i && k[i] >= '0' && k[i] <= '9')
				? k[i]
				: '_';
		name[i] = '\0';
		if (json_is_string(v) && i)
			json_object_set(a->labels, name, v);
	}
}

/* What ev changes of the conditions told */
static void alerts_update(struct alertmanager *a, const struct gw_event *ev, int64_t now)
{
	char summary[512];
	const char *what = gw_event_kind_to_string(ev->kind);
	json_t *body = ev->body ? json_loads(ev->body, 0, NULL) : NULL;
	if (body)
		take_labels(a, body);
	json_decref(body);
	switch (ev->kind) {
	case GW_EVENT_FAILED:
	case GW_EVENT_INVALID_COMMIT:
	case GW_EVENT_REWIND_REFUSED:
	case GW_EVENT_REVERTED:
		snprintf(summary, sizeof(summary), "gitward on %s: %s at commit %.12s", a->node, what, ev->commit);
		alert_fire(a, "GitwardSyncFailing", NULL, summary, ev->message, now);
		break;
	case GW_EVENT_DEGRADED:
		snprintf(summary, sizeof(summary), "gitward on %s: %s is not healthy", a->node,
			 ev->resource ? ev->resource : "?");
		alert_fire(a, "GitwardResourceUnhealthy", ev->resource, summary, ev->message, now);
		break;
	case GW_EVENT_RECOVERED:
		alert_resolve(a, ev->resource ? "GitwardResourceUnhealthy" : "GitwardSyncFailing", ev->resource, now);
		break;
	case GW_EVENT_SUSPENDED:
		snprintf(summary, sizeof(summary), "gitward on %s is suspended", a->node);
		alert_fire(a, "GitwardSuspended", NULL, summary, ev->message, now);
		break;
	case GW_EVENT_RESUMED:
		alert_resolve(a, "GitwardSuspended", NULL, now);
		break;
	default:
		break;
	}
}

/* Each event updates the conditions; they are POSTed when one changed or,
 * while one fires, every GW_ALERT_RESEND_MS (the endsAt ahead keeps it
 * firing; a node gone quiet lets it expire). A resolved one is told once. */
static int alertmanager_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
				struct gw_error *err)
{
	struct alertmanager *a = (struct alertmanager *)s;
	int64_t now = gw_now_ms();
	alerts_update(a, ev, now);
	bool firing = false;
	for (size_t i = 0; i < a->n; i++)
		firing |= !a->v[i].ends_ms;
	if (!a->dirty && !(firing && now - a->posted_ms >= GW_ALERT_RESEND_MS))
		return 1;
	json_t *arr = alerts_json(a, now);
	char *body = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (!body)
		return gw_error_set(err, -ENOMEM, "%s: cannot make the alerts", s->shown);
	int rc = post_json(s, a->url, body, NULL, stop, err);
	free(body);
	if (rc < 0)
		return rc;
	a->dirty = false;
	a->posted_ms = now;
	size_t w = 0; /* the resolved ones are told: forgotten */
	for (size_t i = 0; i < a->n; i++) {
		if (a->v[i].ends_ms)
			alert_clear(&a->v[i]);
		else
			a->v[w++] = a->v[i];
	}
	a->n = w;
	return 0;
}

static void alertmanager_free(struct gw_notify_sink *s)
{
	struct alertmanager *a = (struct alertmanager *)s;
	for (size_t i = 0; i < a->n; i++)
		alert_clear(&a->v[i]);
	free(a->v);
	free(a->url);
	json_decref(a->labels);
}

static const struct gw_notify_sink_ops alertmanager_ops = { .deliver = alertmanager_deliver,
							    .free = alertmanager_free,
							    .ticks = true };

int gw_notify_alertmanager_new(struct gw_notify_sink **out, const char *url, struct gw_error *err)
{
	struct alertmanager *a = calloc(1, sizeof(*a));
	if (!a)
		return gw_error_set(err, -ENOMEM, "out of memory");
	a->base.ops = &alertmanager_ops;
	snprintf(a->base.label, sizeof(a->base.label), "alertmanager");
	size_t len = strlen(url);
	while (len && url[len - 1] == '/')
		len--;
	if (asprintf(&a->url, "%.*s/api/v2/alerts", (int)len, url) < 0)
		a->url = NULL;
	a->base.shown = gw_url_redacted(url);
	a->v = calloc(ALERTS_MAX, sizeof(*a->v));
	if (!a->url || !a->base.shown || !a->v) {
		free(a->url);
		free(a->base.shown);
		free(a->v);
		free(a);
		return gw_error_set(err, -ENOMEM, "out of memory");
	}
	*out = &a->base;
	return 0;
}

/* ---- the queue and its thread ---- */

struct gw_notifier {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	struct gw_cancel stop;
	bool stopping;
	struct gw_event **q; /* a ring of queue_max */
	size_t head, len, max;
	atomic_ullong dropped;
	struct gw_notify_sink **sinks;
	size_t nsinks;
	int64_t retry_ms;
	bool statuses; /* a sink takes commit statuses */
};

/* Wait ms unless stopped; false when stopped. */
static bool pause_for(struct gw_notifier *n, int64_t ms)
{
	return gw_cancel_sleep(&n->stop, ms) == 0 && !gw_cancel_requested(&n->stop);
}

static void deliver(struct gw_notifier *n, struct gw_notify_sink *s, const struct gw_event *ev)
{
	struct gw_error err = { 0 };
	int64_t wait = n->retry_ms;
	if (ev->kind == GW_EVENT_NONE && !s->ops->ticks)
		return;
	for (int i = 0; i < GW_NOTIFY_TRIES; i++) {
		memset(&err, 0, sizeof(err));
		int rc = s->ops->deliver(s, ev, &n->stop, &err);
		if (rc > 0) /* nothing to send */
			return;
		if (rc == 0) {
			atomic_fetch_add(&s->sent, 1);
			gw_log(GW_LOG_DEBUG, "", "event %s sent to %s", gw_event_kind_to_string(ev->kind), s->shown);
			return;
		}
		if (gw_cancel_requested(&n->stop) || i + 1 == GW_NOTIFY_TRIES ||
		    !pause_for(n, wait + random() % (wait / 4 + 1)))
			break;
		wait *= 2;
	}
	atomic_fetch_add(&s->failed, 1);
	gw_log(GW_LOG_WARN, "", "%s %s not delivered: %s", ev->kind == GW_EVENT_NONE ? "alerts" : "event",
	       ev->kind == GW_EVENT_NONE ? "re-sent" : gw_event_kind_to_string(ev->kind), err.msg);
}

static void *notify_main(void *arg)
{
	struct gw_notifier *n = arg;
	bool ticks = false;
	for (size_t i = 0; i < n->nsinks; i++)
		ticks |= n->sinks[i]->ops->ticks;
	for (;;) {
		struct gw_event tick = { .kind = GW_EVENT_NONE }, *ev = NULL;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += GW_NOTIFY_TICK_MS / 1000;
		pthread_mutex_lock(&n->mu);
		while (!n->len && !n->stopping) {
			if (!ticks)
				pthread_cond_wait(&n->cv, &n->mu);
			else if (pthread_cond_timedwait(&n->cv, &n->mu, &until) == ETIMEDOUT)
				break;
		}
		if (n->stopping) {
			pthread_mutex_unlock(&n->mu);
			return NULL;
		}
		if (n->len) {
			ev = n->q[n->head];
			n->head = (n->head + 1) % n->max;
			n->len--;
		}
		pthread_mutex_unlock(&n->mu);
		for (size_t i = 0; i < n->nsinks && !gw_cancel_requested(&n->stop); i++)
			if (!ev ? n->sinks[i]->ops->ticks
				: n->sinks[i]->ops->commit_status == (ev->kind == GW_EVENT_COMMIT_STATUS))
				deliver(n, n->sinks[i], ev ? ev : &tick);
		if (ev) {
			gw_event_free(ev);
			free(ev);
		}
	}
}

static void sinks_free(struct gw_notify_sink **sinks, size_t nsinks)
{
	for (size_t i = 0; i < nsinks; i++) {
		if (!sinks[i])
			continue;
		sinks[i]->ops->free(sinks[i]);
		free(sinks[i]->shown);
		free(sinks[i]);
	}
	free(sinks);
}

int gw_notifier_start(struct gw_notifier **out, struct gw_notify_sink **sinks, size_t nsinks, size_t queue_max,
		      int64_t retry_ms, struct gw_error *err)
{
	struct gw_notifier *n = calloc(1, sizeof(*n));
	if (!n || !queue_max || !(n->q = calloc(queue_max, sizeof(*n->q)))) {
		free(n);
		sinks_free(sinks, nsinks);
		return gw_error_set(err, -ENOMEM, "out of memory");
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	n->max = queue_max;
	n->sinks = sinks; /* now owned by n */
	n->nsinks = nsinks;
	for (size_t i = 0; i < nsinks; i++)
		n->statuses |= sinks[i]->ops->commit_status;
	n->retry_ms = retry_ms > 0 ? retry_ms : 1000;
	atomic_init(&n->dropped, 0);
	pthread_mutex_init(&n->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
		pthread_mutex_destroy(&n->mu);
		pthread_cond_destroy(&n->cv);
		sinks_free(n->sinks, n->nsinks);
		free(n->q);
		free(n);
		return gw_error_set(err, -EAGAIN, "cannot start the events thread");
	}
	*out = n;
	return 0;
}

void gw_notifier_post(struct gw_notifier *n, struct gw_event *ev)
{
	struct gw_event *drop = NULL;
	pthread_mutex_lock(&n->mu);
	if (n->len == n->max) { /* the oldest goes: the newest tells the state now */
		drop = n->q[n->head];
		n->head = (n->head + 1) % n->max;
		n->len--;
		atomic_fetch_add(&n->dropped, 1);
	}
	n->q[(n->head + n->len) % n->max] = ev;
	n->len++;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	if (drop) {
		gw_log(GW_LOG_WARN, "", "event %s dropped: the events queue is full (%zu)",
		       gw_event_kind_to_string(drop->kind), n->max);
		gw_event_free(drop);
		free(drop);
	}
}

void gw_notifier_counts(struct gw_notify_counts *out, struct gw_notifier *n)
{
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	out->dropped = atomic_load(&n->dropped);
	for (size_t i = 0; i < n->nsinks && out->nsinks < sizeof(out->sink) / sizeof(out->sink[0]); i++) {
		/* counted per label: several webhooks add up */
		size_t j = 0;
		while (j < out->nsinks && strcmp(out->sink[j].label, n->sinks[i]->label))
			j++;
		if (j == out->nsinks) {
			out->sink[j].label = n->sinks[i]->label;
			out->nsinks++;
		}
		out->sink[j].sent += atomic_load(&n->sinks[i]->sent);
		out->sink[j].failed += atomic_load(&n->sinks[i]->failed);
	}
}

void gw_notifier_stop(struct gw_notifier *n)
{
	if (!n)
		return;
	gw_cancel_request(&n->stop);
	pthread_mutex_lock(&n->mu);
	n->stopping = true;
	pthread_cond_broadcast(&n->cv);
	pthread_mutex_unlock(&n->mu);
	pthread_join(n->thread, NULL);
	while (n->len) {
		gw_event_free(n->q[n->head]);
		free(n->q[n->head]);
		n->head = (n->head + 1) % n->max;
		n->len--;
	}
	sinks_free(n->sinks, n->nsinks);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n->q);
	free(n);
}

/* ---- from the options, and after each pass ---- */

#define SECRET_MAX 65536
#define EXEC_TIMEOUT_MS 30000

static int read_secret(char **out, size_t *len, const char *path, const char *option, struct gw_error *err)
{
	if (gw_file_read(out, len, path, SECRET_MAX, err) < 0)
		return gw_error_prefix(err, "%s", option);
	while (*len && ((*out)[*len - 1] == '\n' || (*out)[*len - 1] == '\r'))
		(*out)[--*len] = '\0';
	if (!*len) {
		free(*out);
		*out = NULL;
		return gw_error_set(err, -EINVAL, "%s %s is empty", option, path);
	}
	return 0;
}

int gw_notifier_open(struct gw_notifier **out, const struct gw_notify_opts *o, struct gw_error *err)
{
	size_t n = 0, max = o->nurls + (o->exec ? 1 : 0) + (o->forge ? 1 : 0) + o->nalertmanagers, slen = 0;
	char *secret = NULL;
	int rc = 0;
	*out = NULL;
	if (!max)
		return 0;
	struct gw_notify_sink **sinks = calloc(max, sizeof(*sinks));
	if (!sinks)
		return gw_error_set(err, -ENOMEM, "out of memory");
	if (o->secret_file)
		rc = read_secret(&secret, &slen, o->secret_file, "--notify-secret-file", err);
	for (size_t i = 0; rc == 0 && i < o->nurls; i++)
		if ((rc = gw_notify_webhook_new(&sinks[n], o->urls[i], secret, slen, err)) == 0)
			n++;
	if (rc == 0 && o->exec && (rc = gw_notify_exec_new(&sinks[n], o->exec, EXEC_TIMEOUT_MS, err)) == 0)
		n++;
	for (size_t i = 0; rc == 0 && i < o->nalertmanagers; i++)
		if ((rc = gw_notify_alertmanager_new(&sinks[n], o->alertmanagers[i], err)) == 0)
			n++;
	if (secret)
		gw_secure_free(secret);
	if (rc == 0 && o->forge) {
		char *token = NULL;
		size_t tlen = 0;
		rc = read_secret(&token, &tlen, o->forge_token_file, "--forge-token-file", err);
		if (rc == 0 &&
		    (rc = gw_notify_forge_new(&sinks[n], o->forge, o->forge_api, o->forge_repo, token, err)) == 0)
			n++;
	}
	if (rc < 0) {
		sinks_free(sinks, n);
		return rc;
	}
	return gw_notifier_start(out, sinks, n, o->queue_max ? o->queue_max : GW_NOTIFY_QUEUE_DEFAULT, 0, err);
}

/* "not converged: Process/a, Container/b": which, not how many, so that the
 * message (a failure's fingerprint) holds while the same ones fail */
static void not_converged(char *out, size_t size, const struct gw_state_file *st)
{
	size_t o = (size_t)snprintf(out, size, "not converged:"), shown = 0;
	for (size_t i = 0; i < st->n && o < size; i++) {
		if (gw_observed_converged(&st->res[i]))
			continue;
		if (shown++ == 8) {
			o += (size_t)snprintf(out + o, size - o, " ...");
			break;
		}
		o += (size_t)snprintf(out + o, size - o, "%s %s/%s", shown > 1 ? "," : "",
				      gw_kind_to_string(st->res[i].kind), st->res[i].name);
	}
}

bool gw_notifier_statuses(const struct gw_notifier *n)
{
	return n && n->statuses;
}

void gw_notify_commit_status(struct gw_notifier *n, struct gw_notify_tracker *t, const char *node, const char *commit,
			     enum gw_commit_state state, const char *description)
{
	if (!gw_notifier_statuses(n) || !gw_notify_status_due(t, commit, state))
		return;
	struct gw_event *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return;
	ev->kind = GW_EVENT_COMMIT_STATUS;
	snprintf(ev->commit, sizeof(ev->commit), "%s", commit);
	ev->body = strdup(gw_commit_state_to_string(state));
	ev->node = strdup(node ? node : "");
	ev->message = gw_url_redacted(description ? description : "");
	if (!ev->body || !ev->node || !ev->message) {
		gw_event_free(ev);
		free(ev);
		return;
	}
	gw_notifier_post(n, ev); /* now owned by n */
}

/* The final state of a commit applied here (pending sent): success once
 * it converged, failure when it did not (and nothing still starts), was
 * reverted, or its pass failed. */
static void commit_final(struct gw_notifier *n, struct gw_notify_tracker *t, const struct gw_run_summary *sum,
			 const char *node, const struct gw_notify_pass *p)
{
	const char *commit = sum->result == GW_RUN_REVERTED && sum->reverted[0] ? sum->reverted : sum->commit;
	char desc[256];
	enum gw_commit_state state;
	if (!gw_notifier_statuses(n) || !gw_notify_status_applying(t, commit))
		return;
	switch (sum->result) {
	case GW_RUN_CONVERGED:
		state = GW_COMMIT_SUCCESS;
		snprintf(desc, sizeof(desc), "converged on %s", node);
		break;
	case GW_RUN_NOT_CONVERGED:
		if (sum->report.waiting)
			return; /* still starting: pending holds */
		/* fall through */
	case GW_RUN_REVERTED:
	case GW_RUN_ERROR:
		state = GW_COMMIT_FAILURE;
		snprintf(desc, sizeof(desc), "%s on %s: %s", gw_run_result_to_string(sum->result), node,
			 p->message && p->message[0] ? p->message : "failed");
		break;
	default:
		return;
	}
	gw_notify_commit_status(n, t, node, commit, state, desc);
}

void gw_notify_after_pass(struct gw_notifier *n, struct gw_notify_tracker *t, const struct gw_run_summary *sum,
			  const char *node, const struct gw_strmap *labels, const char *state_dir, int64_t began_ms)
{
	struct gw_state_file st;
	struct gw_error err = { 0 };
	char path[4096];
	struct gw_event *evs = NULL;
	size_t nev = 0;

	if (!n)
		return;
	gw_state_file_init(&st);
	if (gw_state_load(&st, gw_path_state_file(path, sizeof(path), state_dir), &err) < 0)
		gw_log(GW_LOG_DEBUG, "", "events: the resources are left out: %s", err.msg);
	char why[1024];
	enum gw_run_result result = sum->result;
	const char *message = sum->message;
	/* a heal pass between two full ones keeps the failure the last full
	 * pass recorded (an invalid tip, a rewind, a revert): not a recovery */
	for (int r = 0; sum->healing && result == GW_RUN_CONVERGED && st.last_attempt_result && r < GW_RUN_MAX; r++)
		if (r != GW_RUN_CONVERGED && r != GW_RUN_NOT_CONVERGED && r != GW_RUN_ERROR && r != GW_RUN_HELD &&
		    !strcmp(st.last_attempt_result, gw_run_result_to_string((enum gw_run_result)r))) {
			result = (enum gw_run_result)r;
			message = st.last_error ? st.last_error : "";
		}
	if (result == GW_RUN_NOT_CONVERGED && !message[0]) {
		not_converged(why, sizeof(why), &st);
		message = why;
	}
	/* a revert is told once: the same words for the pass that reverted
	 * and for each pass after it that refuses the tip */
	if (result == GW_RUN_REVERTED && st.reverted_commit) {
		snprintf(why, sizeof(why), "commit %.12s reverted (%s); the node runs %.12s until the ref moves",
			 st.reverted_commit, st.reverted_reason ? st.reverted_reason : "not healthy in time",
			 st.commit ? st.commit : "-");
		message = why;
	}
	/* an invalid commit's event names it, not the last good one in force */
	bool bad_tip = (result == GW_RUN_INVALID || result == GW_RUN_UNVERIFIED || result == GW_RUN_REWIND) &&
		st.remote_invalid && st.remote_commit;
	struct gw_notify_pass p = { .node = node,
				    .labels = labels,
				    .ref = st.ref,
				    .commit = bad_tip					      ? st.remote_commit
					    : result == GW_RUN_REVERTED && st.reverted_commit ? st.reverted_commit
											      : sum->commit,
				    .result = result,
				    .message = message,
				    .changed = sum->count[GW_ACTION_CREATE] + sum->count[GW_ACTION_UPDATE] +
						    sum->count[GW_ACTION_DELETE] + sum->count[GW_ACTION_RESTART] >
					    sum->report.waiting + sum->report.failed,
				    .suspended = sum->suspended,
				    .res = st.res,
				    .nres = st.n,
				    .began_s = began_ms / 1000 };
	commit_final(n, t, sum, node, &p);
	if (gw_notify_derive(&evs, &nev, t, &p, gw_now_ms(), &err) < 0)
		gw_log(GW_LOG_WARN, "", "events: %s", err.msg);
	for (size_t i = 0; i < nev; i++) {
		struct gw_event *ev = malloc(sizeof(*ev));
		if (!ev) {
			gw_event_free(&evs[i]);
			continue;
		}
		*ev = evs[i];
		gw_notifier_post(n, ev); /* now owned by n */
	}
	free(evs);
	gw_state_file_free(&st);
}
