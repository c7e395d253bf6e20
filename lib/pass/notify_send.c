/* Delivery of events: one thread with a bounded queue, so that a dead or
 * slow sink never delays a pass. Each event goes to every sink, with a few
 * tries and a doubling wait between them; a full queue drops its oldest
 * event (counted). The sinks: a signed webhook POST (libcurl, bounded by
 * its timeouts) and the exec hook (gw_spawn, argv only, killed when late).
 * Stopping abandons a delivery under way within about a second. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static int webhook_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
			   struct gw_error *err)
{
	struct webhook *w = (struct webhook *)s;
	char sig[128];
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && w->secret) {
		sign(sig, sizeof(sig), w, ev->body);
		struct curl_slist *h2 = curl_slist_append(h, sig);
		if (!h2) {
			curl_slist_free_all(h);
			h = NULL;
		}
	}
	if (!h)
		return gw_error_set(err, -ENOMEM, "%s: cannot start a request", s->shown);
	int rc = gw_notify__post(s->shown, w->url, ev->body, h, stop, err);
	curl_slist_free_all(h);
	return rc;
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

static const struct gw_notify_sink_ops webhook_ops = { webhook_deliver, webhook_free };

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
		gw_error_prefix(err, s->shown);
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

static const struct gw_notify_sink_ops hook_ops = { hook_deliver, hook_free };

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
	for (int i = 0; i < GW_NOTIFY_TRIES; i++) {
		memset(&err, 0, sizeof(err));
		if (s->ops->deliver(s, ev, &n->stop, &err) == 0) {
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
	gw_log(GW_LOG_WARN, "", "event %s not delivered: %s", gw_event_kind_to_string(ev->kind), err.msg);
}

static void *notify_main(void *arg)
{
	struct gw_notifier *n = arg;
	for (;;) {
		pthread_mutex_lock(&n->mu);
		while (!n->len && !n->stopping)
			pthread_cond_wait(&n->cv, &n->mu);
		if (n->stopping) {
			pthread_mutex_unlock(&n->mu);
			return NULL;
		}
		struct gw_event *ev = n->q[n->head];
		n->head = (n->head + 1) % n->max;
		n->len--;
		pthread_mutex_unlock(&n->mu);
		for (size_t i = 0; i < n->nsinks && !gw_cancel_requested(&n->stop); i++)
			if (n->sinks[i]->ops->commit_status == (ev->kind == GW_EVENT_COMMIT_STATUS))
				deliver(n, n->sinks[i], ev);
		gw_event_free(ev);
		free(ev);
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
	pthread_cond_init(&n->cv, NULL);
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
		return gw_error_prefix(err, option);
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
	size_t n = 0, max = o->nurls + (o->exec ? 1 : 0) + (o->forge ? 1 : 0), slen = 0;
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
		if (r != GW_RUN_CONVERGED && r != GW_RUN_NOT_CONVERGED && r != GW_RUN_ERROR &&
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
