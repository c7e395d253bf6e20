/* `gitward agent`: poll and converge until stopped. Signal handlers only set
 * flags and wake the loop through a pipe; one poll() waits for the next pass,
 * a signal, or a webhook. SIGTERM also cancels the running pass's waits, so
 * the agent stops within seconds. Stopping it never stops the workloads. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cli.h"
#include "gitward/control.h"
#include "gitward/manifest_cache.h"
#include "gitward/notify.h"
#include "gitward/pass.h"
#include "gitward/schedule.h"
#include "http.h"

static const char agent_usage[] =
	"usage: gitward agent [OPTIONS]\n"
	"\n"
	"Poll the repository and converge the node until stopped: every --interval a\n"
	"full pass (fetch, plan, apply, record) runs, even when the commit did not\n"
	"change, so dead or unhealthy workloads are healed. Between passes, and while\n"
	"a pass fetches, a workload that dies, or fails its health check (probed every\n"
	"healthCheck.interval) retries times in a row, is restarted at once. SIGHUP runs\n"
	"a pass now; SIGTERM/SIGINT stop the agent (exit 0) and leave every workload\n"
	"running: a running pass stops waiting (fetch, health checks, stop timeouts),\n"
	"starts nothing new and records what runs.\n"
	"\n" CLI_HELP_SOURCE "  --interval DUR             time between passes (default 30s)\n"
	"  --splay DUR                random extra delay per interval, so nodes do not poll in\n"
	"                             lockstep (default a tenth of the interval; 0: none)\n" CLI_HELP_DIRS
	"  --listen ADDR:PORT         HTTP endpoints /healthz /metrics /status (default 127.0.0.1:9420; \"off\")\n"
	"  --webhook-secret-file F    enables POST /hooks/git: GitHub (X-Hub-Signature-256), GitLab\n"
	"                             (X-Gitlab-Token), Gitea/Forgejo (X-Gitea-Signature) are checked\n"
	"  --stuck-after DUR          /healthz answers 503 while a pass runs longer (default: 10\n"
	"                             intervals, at least 15m)\n"
	"  --header-timeout DUR       a request's headers must arrive within this, however they\n"
	"                             trickle (default 30s)\n"
	"  --notify URL               POST each event as JSON to URL (repeatable; see SPEC \"Events\")\n"
	"  --notify-secret-file F     sign events: X-Gitward-Signature-256 (HMAC-SHA256 of the body)\n"
	"  --notify-repeat DUR        the same failure is told again only after this (default 1h)\n"
	"  --notify-exec PATH         run PATH with each event on stdin, GITWARD_EVENT, _NODE, _COMMIT,\n"
	"                             _MESSAGE in its environment (killed after 30s)\n"
	"  --commit-status FORGE      github, gitlab or gitea: a commit status gitward/NODE (pending,\n"
	"                             then success or failure) on each commit applied\n"
	"  --forge-api URL            the forge's API, e.g. https://api.github.com\n"
	"  --forge-repo OWNER/NAME    the repository (GitLab: OWNER/NAME or the project ID)\n"
	"  --forge-token-file F       the forge's API token (read once at start)\n"
	"  --alertmanager URL         push alerts to URL/api/v2/alerts while a condition lasts\n"
	"                             (GitwardSyncFailing, ...ResourceUnhealthy, ...Suspended); "
	"repeatable\n" CLI_HELP_REST;

static int wake[2] = { -1, -1 };
static volatile sig_atomic_t want_stop, want_pass;
static atomic_int want_heal; /* set by the container events thread */
/* STATE/control and STATE/control/restart watched: `gitward suspend`,
 * `resume`, `restart` wake the loop, which runs a heal pass at once */
static int control_fd = -1;
static bool want_control;
static bool want_restart; /* a restart request landed: the history's trigger */
static struct gw_cancel stop_request; /* seen by the running pass */

static void on_signal(int sig)
{
	int saved = errno;
	if (sig == SIGHUP) {
		want_pass = 1;
	} else {
		want_stop = 1;
		gw_cancel_request(&stop_request);
	}
	if (wake[1] >= 0)
		(void)!write(wake[1], "x", 1);
	errno = saved;
}

static void trigger(void *ud)
{
	(void)ud;
	want_pass = 2; /* a webhook: said so in the history */
	if (wake[1] >= 0)
		(void)!write(wake[1], "w", 1);
}

static void on_heal_event(void *ud)
{
	(void)ud;
	atomic_store(&want_heal, 1);
	if (wake[1] >= 0)
		(void)!write(wake[1], "e", 1);
}

static int on_extra(int id, const char *arg, void *ud)
{
	(void)id;
	(void)arg;
	(void)ud;
	return 0;
}

static void log_pass(const struct gw_run_summary *sum, enum gw_pass_mode mode, int64_t took)
{
	const char *what = mode == GW_PASS_HEAL ? "heal pass" : "pass";
	bool quiet = sum->count[GW_ACTION_NONE] == sum->report.ok && !sum->report.failed;
	struct gw_log_fields lf = { NULL, sum->commit, took };
	switch (sum->result) {
	case GW_RUN_CONVERGED:
		/* a quiet node gives quiet logs: no-op passes only at debug */
		gw_log_with(quiet ? GW_LOG_DEBUG : GW_LOG_INFO, "", &lf, "%s done: commit %.12s, converged (%lldms)",
			    what, sum->commit, (long long)took);
		break;
	case GW_RUN_NOT_CONVERGED:
		gw_log_with(GW_LOG_WARN, "", &lf,
			    "%s done: commit %.12s, not converged: %zu failed, %zu waiting (%lldms)", what, sum->commit,
			    sum->report.failed, sum->report.waiting, (long long)took);
		break;
	case GW_RUN_HELD: {
		char until[64] = "unknown";
		if (sum->held_until_ms > 0)
			gw_time_format_utc(until, sizeof(until), sum->held_until_ms / 1000);
		gw_log_with(GW_LOG_INFO, "", &lf, "%s done: commit %.12s, %zu disruptive held (%s) until %s (%lldms)",
			    what, sum->commit, sum->report.held, sum->held ? sum->held : "-", until, (long long)took);
		break;
	}
	case GW_RUN_GIT_ERROR:
		if (sum->healing)
			gw_log_with(quiet ? GW_LOG_DEBUG : GW_LOG_INFO, "", &lf,
				    "%s done without Git: commit %.12s kept in force, %zu failed (%lldms)", what,
				    sum->commit, sum->report.failed, (long long)took);
		break;
	default:
		break;
	}
}

/* Did the pass start, stop or replace anything? */
static bool changed(const struct gw_run_summary *sum)
{
	return sum->count[GW_ACTION_CREATE] + sum->count[GW_ACTION_UPDATE] + sum->count[GW_ACTION_DELETE] +
		sum->count[GW_ACTION_RESTART] >
		sum->report.waiting + sum->report.failed + sum->report.held;
}

/* What the scheduler is told while the agent waits: the clock, and what
 * the watch and the event flags say. The state file's times are wall clock;
 * the scheduler's monotonic. probes: room for w->nprobes. */
static void sched_input(struct gw_sched_input *in, struct gw_sched_probe *probes, const struct gw_watch *w, bool died,
			bool fetching)
{
	int64_t wall = gw_now_ms();
	/* a pass requested while one fetches runs after it */
	*in = (struct gw_sched_input){ .now = gw_monotonic_ms(), .down = w->down, .requested = want_pass && !fetching };
	in->died = died || w->gone || atomic_load(&want_heal) || want_control;
	if (w->wake_at_ms) {
		in->wake_at = in->now + (w->wake_at_ms - wall);
		if (in->wake_at < in->now)
			in->wake_at = in->now;
	}
	for (size_t i = 0; i < w->nprobes; i++) {
		const struct gw_watch_probe *p = &w->probes[i];
		int64_t ago = p->probed_at_ms ? wall - p->probed_at_ms : p->every_ms; /* never: due now */
		probes[i] = (struct gw_sched_probe){ .last = in->now - (ago > 0 ? ago : 0), .every = p->every_ms };
	}
	in->probes = probes;
	in->nprobes = w->nprobes;
}

/* A pin made or cleared (gitward rollback) asks for a full pass: the ref's
 * tip decides whether it stands. A restart request (KIND.NAME) is said as
 * the trigger of the pass it wakes. */
static void control_changed(const char *buf, size_t len)
{
	for (size_t off = 0; off + sizeof(struct inotify_event) <= len;) {
		const struct inotify_event *e = (const struct inotify_event *)(const void *)(buf + off);
		if (e->len && !strcmp(e->name, "pin"))
			want_pass = 3;
		else if (e->len && (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && strchr(e->name, '.') &&
			 !strstr(e->name, ".tmp."))
			want_restart = true;
		off += sizeof(*e) + e->len;
	}
}

/* Sleep until `when` (at most a second, for the heartbeat) on the wake pipe
 * and, if watch_fds, the workloads' fds. Returns whether a workload exited. */
static bool wait_until(struct pollfd *p, const struct gw_watch *w, const struct gw_sched_next *next, int64_t now)
{
	size_t n = 2;
	bool died = false;
	p[0] = (struct pollfd){ .fd = wake[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = control_fd, .events = POLLIN }; /* -1: ignored by poll */
	for (size_t i = 0; next->watch_fds && i < w->n; i++)
		p[n++] = (struct pollfd){ .fd = w->fds[i], .events = POLLIN };
	int64_t left = next->when - now;
	if (poll(p, n, (int)(left > 1000 ? 1000 : left)) > 0) {
		char drain[64];
		if (p[0].revents)
			while (read(wake[0], drain, sizeof(drain)) > 0)
				;
		if (p[1].revents) {
			char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
			ssize_t got;
			while ((got = read(control_fd, ev, sizeof(ev))) > 0)
				control_changed(ev, (size_t)got);
			want_control = true;
		}
		for (size_t i = 2; i < n; i++)
			died |= p[i].revents != 0;
	}
	return died;
}

/* Wait for the next pass, as the scheduler says: the interval's end (a full
 * pass), or a workload that died, a restart backoff that ended, a health
 * check due, a container event (a heal pass, no fetch), or a signal or
 * webhook. fetched: while a full pass's fetch runs, its end (GW_PASS_FULL:
 * the rest of that pass); NULL: none runs. */
static enum gw_pass_mode wait_next(struct gw_sched *sched, const struct gw_watch *w, struct gw_metrics *m,
				   const atomic_bool *fetched)
{
	struct pollfd *p = gw_xcalloc(w->n + 2, sizeof(*p));
	struct gw_sched_probe *probes = gw_xcalloc(w->nprobes + 1, sizeof(*probes));
	struct gw_sched_next next = { .what = GW_SCHED_FULL };
	bool died = false;

	while (!want_stop && !(fetched && atomic_load(fetched))) {
		struct gw_sched_input in;
		sched_input(&in, probes, w, died, fetched != NULL);
		gw_sched_next(&next, sched, &in);
		if (next.what != GW_SCHED_WAIT)
			break;
		died |= wait_until(p, w, &next, in.now);
		gw_metrics_heartbeat(m);
	}
	free(probes);
	free(p);
	if (want_pass && !want_stop && !fetched)
		gw_log(GW_LOG_INFO, "", "pass requested (SIGHUP or webhook)");
	return next.what == GW_SCHED_HEAL ? GW_PASS_HEAL : GW_PASS_FULL;
}

/* sd_notify WATCHDOG=1 while the loop is healthy: waiting, or in a pass that
 * has not run past --stuck-after (the rule of /healthz). */
struct watchdog {
	struct gw_metrics *m;
	uint64_t usec;
	pthread_t thread;
	struct gw_cancel stop;
	bool running;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *d = arg;
	while (!gw_cancel_requested(&d->stop)) {
		pthread_mutex_lock(&d->m->mu);
		bool stuck = d->m->pass_started && gw_monotonic_ms() - d->m->pass_started > d->m->stuck_after_ms;
		pthread_mutex_unlock(&d->m->mu);
		if (!stuck)
			gw_notify_watchdog();
		gw_cancel_sleep(&d->stop, (int64_t)(d->usec / 3000));
	}
	return NULL;
}

static void watchdog_start(struct watchdog *d)
{
	d->usec = gw_watchdog_usec();
	if (d->usec && pthread_create(&d->thread, NULL, watchdog_main, d) == 0)
		d->running = true;
}

static void watchdog_stop(struct watchdog *d)
{
	if (!d->running)
		return;
	gw_cancel_request(&d->stop);
	pthread_join(d->thread, NULL);
}

/* Options, logging, the required --repo. Returns true to stop with *code
 * (cfg freed), as after --help. */
static bool parse_options(int *code, struct gw_config *cfg, int argc, char **argv)
{
	int rc = cli_parse_common(cfg, argc, argv, NULL, on_extra, NULL, agent_usage);
	if (rc < 0) {
		gw_config_free(cfg);
		*code = -rc - 1;
		return true;
	}
	cli_install_logging(cfg);
	if (!cfg->repo) {
		gw_config_free(cfg);
		*code = cli_usage_error("agent", "--repo is required: the Git repository to read (URL or local path)");
		return true;
	}
	/* commit statuses: the four go together */
	const char *forge[][2] = { { "--commit-status", cfg->commit_status },
				   { "--forge-api", cfg->forge_api },
				   { "--forge-repo", cfg->forge_repo },
				   { "--forge-token-file", cfg->forge_token_file } };
	char missing[128] = "";
	bool any = false;
	for (size_t i = 0; i < 4; i++) {
		any |= forge[i][1] != NULL;
		if (!forge[i][1])
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s",
				 missing[0] ? ", " : "", forge[i][0]);
	}
	if (any && missing[0]) {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "commit statuses need --commit-status, --forge-api, --forge-repo and "
			 "--forge-token-file together: missing %s",
			 missing);
		gw_config_free(cfg);
		*code = cli_usage_error("agent", "%s", msg);
		return true;
	}
	return false;
}

/* inotify on STATE/control and STATE/control/restart (made 0700 here). */
static int control_watch(const char *state_dir)
{
	const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM;
	struct gw_error err;
	char dir[4096];
	if (gw_control_dirs(state_dir, &err) < 0) {
		cli_print_state_error(&err, state_dir);
		return -1;
	}
	control_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (control_fd < 0 ||
	    inotify_add_watch(control_fd, gw_path_control(dir, sizeof(dir), state_dir), mask | IN_DONT_FOLLOW) < 0 ||
	    inotify_add_watch(control_fd, gw_path_control_restart(dir, sizeof(dir), state_dir), mask | IN_DONT_FOLLOW) <
		    0) {
		fprintf(stderr, "gitward: error: inotify on %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* The state dir locked (another repository's state dir is refused before
 * anything is touched), the wake pipe, the signal handlers. */
static int setup(struct gw_lock *lock, const struct gw_config *cfg, const struct gw_pass_opts *po)
{
	struct gw_error err;
	if (gw_pass_check_repo(po, false, &err) < 0 || gw_mkdir_p(cfg->state_dir, 0700, &err) < 0 ||
	    gw_state_lock(lock, cfg->state_dir, cfg->run_dir, cfg->log_dir, &err) < 0 ||
	    gw_pass_check_repo(po, true, &err) < 0) {
		cli_print_state_error(&err, cfg->state_dir);
		return err.code < 0 ? err.code : -EIO;
	}
	if (control_watch(cfg->state_dir) < 0)
		return -EIO;
	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		int e = errno;
		fprintf(stderr, "gitward: error: pipe: %s\n", strerror(e));
		return -e;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)(getpid() ^ gw_now_ms()));
	return 0;
}

/* --notify, --notify-exec: their delivery thread. GITWARD_NOTIFY_QUEUE
 * sets the queue's length (tests fill a small one). */
static int notifier_open(struct gw_notifier **out, const struct gw_config *cfg)
{
	struct gw_error err;
	const char *q = getenv("GITWARD_NOTIFY_QUEUE");
	struct gw_notify_opts o = { .urls = (const char *const *)cfg->notify.v,
				    .nurls = cfg->notify.n,
				    .secret_file = cfg->notify_secret_file,
				    .exec = cfg->notify_exec,
				    .forge = cfg->commit_status,
				    .forge_api = cfg->forge_api,
				    .forge_repo = cfg->forge_repo,
				    .forge_token_file = cfg->forge_token_file,
				    .alertmanagers = (const char *const *)cfg->alertmanager.v,
				    .nalertmanagers = cfg->alertmanager.n,
				    .queue_max = q ? strtoul(q, NULL, 10) : 0 };
	if (gw_notifier_open(out, &o, &err) < 0) {
		fprintf(stderr, "gitward: error: %s\n", err.msg);
		return err.code;
	}
	return 0;
}

/* /healthz /metrics /status (and the webhook), unless --listen off */
static int endpoints_start(struct gw_http **http, struct gw_metrics *m, const struct gw_config *cfg)
{
	struct gw_error err;
	int rc;
	if (strcmp(cfg->listen, "off") == 0)
		return 0;
	rc = gw_http_start(http, m, cfg, trigger, NULL, &err);
	if (rc < 0)
		cli_print_error("error: ", &err);
	return rc;
}

/* What the loop carries from one pass to the next */
struct loop {
	struct gw_config *cfg;
	const struct gw_pass_opts *opts;
	struct gw_backend_set *backends;
	struct gw_metrics *metrics;
	struct gw_notifier *notifier; /* NULL: no --notify, --notify-exec, --commit-status */
	struct gw_notify_tracker events_told;
	struct gw_manifest_cache *manifests; /* parsed manifests by blob id */
	struct gw_watch watch;
	struct gw_events *events;
	enum gw_pass_mode mode;
	struct gw_sched_opts sched_opts;
	struct gw_sched sched; /* when the next pass runs */
	char warned[41]; /* the commit whose lack of manifests was logged */
	int64_t fetch_began; /* when the fetch of the full pass under way began */
	bool suspended; /* as the last pass found it, for the log */
	const char *trigger; /* why the full pass under way runs: poll, signal, webhook */
};

/* Why a full pass runs, for the history */
static const char *full_trigger(void)
{
	return want_pass == 3 ? "rollback" : want_pass == 2 ? "webhook" : want_pass ? "signal" : "poll";
}

/* Said once when it changes: suspended or resumed. */
static void log_controls(struct loop *l, const struct gw_run_summary *sum)
{
	bool applied = sum->result == GW_RUN_CONVERGED || sum->result == GW_RUN_NOT_CONVERGED ||
		sum->result == GW_RUN_HELD || sum->healing;
	if (!applied || sum->suspended == l->suspended)
		return;
	l->suspended = sum->suspended;
	if (sum->suspended)
		gw_log(GW_LOG_WARN, "",
		       "suspended (gitward suspend): nothing is applied or healed until gitward resume");
	else
		gw_log(GW_LOG_INFO, "", "resumed (gitward resume): applying and healing again");
}

/* --commit-status: a pass starts applying a commit (its plan has actions) */
static void on_apply(void *ud, const char *commit)
{
	struct loop *l = ud;
	char desc[128];
	snprintf(desc, sizeof(desc), "applying %.12s on %s", commit, l->cfg->node);
	gw_notify_commit_status(l->notifier, &l->events_told, l->cfg->node, commit, GW_COMMIT_PENDING, desc);
}

/* One pass, then what to watch and when the next full pass is due.
 * fetched: the result of a full pass's fetch that already ran (NULL: the
 * pass fetches, or heals). */
static void loop_pass(struct loop *l, const struct gw_error *fetched)
{
	struct gw_run_summary sum;
	int64_t t0 = fetched ? l->fetch_began : gw_monotonic_ms(); /* a full pass's time includes its fetch */
	struct gw_pass_opts opts = *l->opts;
	if (l->mode == GW_PASS_FULL && !fetched)
		l->trigger = full_trigger();
	opts.trigger = l->mode == GW_PASS_FULL ? l->trigger : want_restart ? "restart" : "poll";
	want_restart = false;
	if (gw_notifier_statuses(l->notifier)) {
		opts.on_apply = on_apply;
		opts.on_apply_ud = l;
	}
	int64_t began = gw_now_ms();
	if (l->mode == GW_PASS_FULL && !fetched)
		want_pass = 0; /* else cleared when the fetch began */
	want_heal = 0;
	want_control = false;
	gw_metrics_pass_begin(l->metrics);
	gw_pass_run(&sum, &opts, l->backends, &stop_request, l->mode, l->manifests, fetched);
	int64_t took = gw_monotonic_ms() - t0;
	gw_metrics_record(l->metrics, &sum, took);
	log_pass(&sum, l->mode, took);
	log_controls(l, &sum);
	gw_notify_after_pass(l->notifier, &l->events_told, &sum, l->cfg->node, &l->cfg->labels, l->cfg->state_dir,
			     began);
	if (sum.no_manifest[0] && strcmp(l->warned, sum.commit) != 0) { /* once per commit, not every pass */
		gw_log(GW_LOG_WARN, "", "commit %.12s: %s", sum.commit, sum.no_manifest);
		memcpy(l->warned, sum.commit, sizeof(l->warned));
	}
	struct gw_sched_pass done = { .mode = l->mode == GW_PASS_HEAL ? GW_SCHED_HEAL : GW_SCHED_FULL,
				      .git_error = sum.result == GW_RUN_GIT_ERROR,
				      .changed = changed(&sum),
				      .now = gw_monotonic_ms(),
				      .rnd = (uint32_t)random() };
	int64_t delay = gw_sched_after_pass(&l->sched, &done, &l->sched_opts);
	if (done.mode == GW_SCHED_FULL && done.git_error)
		gw_log(GW_LOG_WARN, "", "next try in %lldms", (long long)delay);
	/* what can make a workload need healing before the next pass */
	gw_watch_clear(&l->watch);
	gw_watch_build(&l->watch, l->cfg->state_dir, l->backends);
	if (l->watch.follow && !l->events && gw_events_start(&l->events, l->backends, on_heal_event, NULL) < 0)
		gw_log(GW_LOG_WARN, "", "cannot follow the container engine's events");
}

/* The fetch of a full pass, in a thread of its own, so that a slow or
 * trickling server (bounded by --git-deadline) never holds up the heal
 * passes; SIGTERM ends it through stop_request. It touches only the Git
 * cache, with its own repository object; the loop's heal passes read the
 * commit in force from that cache (Git adds objects before it moves refs). */
struct fetcher {
	const struct gw_pass_opts *opts;
	pthread_t thread;
	struct gw_error err; /* code 0: fetched */
	atomic_bool done;
};

static void *fetch_main(void *arg)
{
	struct fetcher *f = arg;
	int rc = gw_pass_fetch(f->opts, &stop_request, &f->err);
	if (rc < 0 && f->err.code == 0)
		f->err.code = rc;
	atomic_store(&f->done, true);
	if (wake[1] >= 0)
		(void)!write(wake[1], "f", 1);
	return NULL;
}

/* A full pass: its fetch beside heal passes as they fall due, then the
 * rest of it with what the fetch got. */
static void loop_full(struct loop *l)
{
	struct fetcher f = { .opts = l->opts };

	atomic_init(&f.done, false);
	l->trigger = full_trigger();
	want_pass = 0;
	l->fetch_began = gw_monotonic_ms();
	gw_sched_fetch_begin(&l->sched);
	if (pthread_create(&f.thread, NULL, fetch_main, &f) != 0) {
		loop_pass(l, NULL); /* no thread: the pass fetches itself */
		return;
	}
	while (!atomic_load(&f.done) && !want_stop) {
		if (wait_next(&l->sched, &l->watch, l->metrics, &f.done) != GW_PASS_HEAL)
			break;
		l->mode = GW_PASS_HEAL;
		loop_pass(l, NULL);
	}
	pthread_join(f.thread, NULL);
	l->mode = GW_PASS_FULL;
	loop_pass(l, &f.err);
}

/* Passes until SIGTERM/SIGINT */
static void run_loop(struct gw_config *cfg, const struct gw_pass_opts *po, struct gw_backend_set *backends,
		     struct gw_metrics *m, struct gw_notifier *notifier)
{
	struct loop l = { .cfg = cfg,
			  .opts = po,
			  .backends = backends,
			  .metrics = m,
			  .notifier = notifier,
			  .mode = GW_PASS_FULL,
			  .sched_opts = { .interval_ms = cfg->interval_ms, .splay_ms = cfg->splay_ms } };
	struct watchdog dog = { .m = m };

	/* parsed manifests by blob id: a pass parses only what changed */
	l.manifests = gw_manifest_cache_new();
	gw_notify_tracker_init(&l.events_told, cfg->notify_repeat_ms ? cfg->notify_repeat_ms : 3600000);
	watchdog_start(&dog);
	while (!want_stop) {
		if (l.mode == GW_PASS_FULL)
			loop_full(&l);
		else
			loop_pass(&l, NULL);
		l.mode = wait_next(&l.sched, &l.watch, m, NULL);
	}
	gw_manifest_cache_free(l.manifests);
	gw_notify_tracker_free(&l.events_told);
	gw_events_stop(l.events);
	gw_watch_clear(&l.watch);
	watchdog_stop(&dog);
}

int cmd_agent(int argc, char **argv)
{
	struct gw_config cfg;
	struct gw_pass_opts po;
	struct gw_backend_set backends;
	struct gw_metrics metrics;
	struct gw_http *http = NULL;
	struct gw_notifier *notifier = NULL;
	char self[4096], every[32];
	struct gw_lock lock;
	int rc;

	gw_lock_init(&lock);
	gw_config_init(&cfg);
	if (parse_options(&rc, &cfg, argc, argv))
		return rc;
	cli_pass_opts(&po, &cfg);
	po.follow_pin = true; /* gitward rollback */
	cli_backends_open(&backends, &cfg, self, sizeof(self));
	rc = 1;
	if (setup(&lock, &cfg, &po) < 0)
		goto out;
	if (notifier_open(&notifier, &cfg) < 0)
		goto out;
	gw_metrics_init(&metrics, &cfg);
	po.fleet_lock.counts = &metrics.fleet_lock;
	metrics.describe = gw_apply_describer(&backends);
	metrics.notifier = notifier;
	if (endpoints_start(&http, &metrics, &cfg) < 0) {
		gw_metrics_free(&metrics);
		gw_notifier_stop(notifier);
		goto out;
	}
	gw_duration_format(every, sizeof(every), cfg.interval_ms);
	gw_log(GW_LOG_INFO, "", "agent started: repo %s, node %s, interval %s, state dir %s, run dir %s, log dir %s%s",
	       cfg.repo, cfg.node, every, cfg.state_dir, cfg.run_dir, cfg.log_dir,
	       cfg.observe ? ", mode observe (nothing is applied or healed)" : "");
	gw_notify_ready();
	run_loop(&cfg, &po, &backends, &metrics, notifier);
	gw_log(GW_LOG_INFO, "", "agent stopping; workloads keep running");
	gw_http_stop(http);
	gw_notifier_stop(notifier); /* a delivery under way is abandoned */
	gw_metrics_free(&metrics);
	rc = 0;
out:
	gw_state_unlock(&lock);
	if (control_fd >= 0)
		close(control_fd);
	if (wake[0] >= 0) {
		close(wake[0]);
		close(wake[1]);
	}
	gw_backend_set_close(&backends);
	gw_config_free(&cfg);
	return rc;
}
