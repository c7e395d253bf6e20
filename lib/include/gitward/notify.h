/* Events out (SPEC "Events"): what a pass changed, told to the operator's
 * sinks. The model is pure: a tracker compares each pass with what it
 * remembers of the earlier ones and returns the events to send, with the
 * same failure held back for --notify-repeat and its recovery sent once
 * (unit-tested on an injected clock). Delivery is a thread of its own with a
 * bounded queue, so a dead or slow sink never delays a pass. */
#ifndef GITWARD_NOTIFY_H
#define GITWARD_NOTIFY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/observed.h"
#include "gitward/state.h"
#include "gitward/util.h"

/* Only grows at the end; names in gw_event_kind_to_string. */
enum gw_event_kind {
	GW_EVENT_NONE,
	GW_EVENT_APPLIED,
	GW_EVENT_FAILED,
	GW_EVENT_INVALID_COMMIT,
	GW_EVENT_DEGRADED,
	GW_EVENT_RECOVERED,
	GW_EVENT_SUSPENDED,
	GW_EVENT_RESUMED,
	GW_EVENT_REWIND_REFUSED,
	GW_EVENT_REVERTED,
	GW_EVENT_COMMIT_STATUS, /* for --commit-status only: body is the state */
	GW_EVENT_HELD, /* disruptive actions held (a window, a fleet lock) */
	GW_EVENT_MAX
};
/* "applied", "failed", "invalid-commit", ... */
const char *gw_event_kind_to_string(enum gw_event_kind k);

/* One event, ready to send: its JSON body and what the exec hook's
 * environment tells of it. */
struct gw_event {
	enum gw_event_kind kind;
	char *body; /* the JSON object of SPEC "Events" */
	char commit[41];
	char *node;
	char *message;
	char *resource; /* "Kind/name" of the one resource it is about; NULL: the pass */
};
void gw_event_free(struct gw_event *ev);

/* What one pass ended with, as events see it (every pointer borrowed). */
struct gw_notify_pass {
	const char *node;
	const struct gw_strmap *labels; /* "node" left out of the JSON */
	const char *ref;
	const char *commit;
	enum gw_run_result result;
	const char *message; /* the pass's error; URLs in it are redacted */
	bool changed; /* it started, stopped or replaced something */
	bool suspended;
	const struct gw_observed *res; /* the resources as recorded after it */
	size_t nres;
	int64_t began_s; /* unix seconds: the pass's start (a last_action since is this pass's) */
	/* the state's pending actions; those with a held reason make a held
	 * event, told once per commit and reason */
	const struct gw_pending_action *pending;
	size_t npending;
};

#define GW_NOTIFY_RESOURCES_MAX 1024 /* resources remembered as degraded */

/* What the events remember between passes. */
struct gw_notify_tracker {
	int64_t repeat_ms; /* --notify-repeat */
	bool seen; /* a pass was seen */
	bool suspended;
	/* the pass-level failure in force, and when it was last sent */
	enum gw_event_kind failing;
	char *fail_fp;
	int64_t fail_sent_ms;
	/* resources failed or unhealthy ("Kind/name"), and when each was last sent */
	struct gw_notify_bad {
		char *key;
		int64_t sent_ms;
	} * bad;
	size_t nbad;
	/* the commit and reason of the hold last told ("" none in force) */
	char held_fp[80];
	/* --commit-status: the states sent for the last few commits */
	struct gw_notify_told {
		char commit[41];
		unsigned sent; /* 1 << enum gw_commit_state */
	} told[8];
	size_t told_next;
};
void gw_notify_tracker_init(struct gw_notify_tracker *t, int64_t repeat_ms);
void gw_notify_tracker_free(struct gw_notify_tracker *t);
/* The events of pass p at now_ms (unix ms, injected for tests) into *out
 * (caller frees each with gw_event_free, then the array); *n may be 0. */
int gw_notify_derive(struct gw_event **out, size_t *n, struct gw_notify_tracker *t, const struct gw_notify_pass *p,
		     int64_t now_ms, struct gw_error *err);

/* ---- commit statuses (--commit-status) ---- */

enum gw_commit_state { GW_COMMIT_PENDING, GW_COMMIT_SUCCESS, GW_COMMIT_FAILURE, GW_COMMIT_ERROR, GW_COMMIT_MAX };
/* "pending", "success", "failure", "error" */
const char *gw_commit_state_to_string(enum gw_commit_state s);
/* True (and remembered) when state was not yet sent for commit: a commit
 * gets each state once, not once per pass. */
bool gw_notify_status_due(struct gw_notify_tracker *t, const char *commit, enum gw_commit_state state);
/* True when pending was sent for commit (it was applied here). */
bool gw_notify_status_applying(const struct gw_notify_tracker *t, const char *commit);

/* ---- delivery ---- */

/* A sink: one way out (a webhook, the exec hook; Alertmanager and commit
 * statuses plug in here). deliver is called from the delivery thread only,
 * once per try; it returns 0 or a negative errno with err filled, and must
 * give up soon after gw_cancel_requested(stop). */
struct gw_notify_sink {
	const struct gw_notify_sink_ops *ops;
	char label[32]; /* the sink label of gitward_notify_sent_total: "webhook", "exec" */
	char *shown; /* how logs name it (URLs redacted) */
	atomic_ullong sent, failed;
};
struct gw_notify_sink_ops {
	int (*deliver)(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
		       struct gw_error *err);
	void (*free)(struct gw_notify_sink *s);
	/* takes the commit statuses (GW_EVENT_COMMIT_STATUS) and nothing else */
	bool commit_status;
	/* also given ticks (kind GW_EVENT_NONE, no body) at least every
	 * GW_NOTIFY_TICK_MS, to keep what it told alive; deliver returns 1
	 * when it sent nothing */
	bool ticks;
};
#define GW_NOTIFY_TICK_MS 30000
/* A POST of the body to url, signed with secret (NULL: unsigned). */
int gw_notify_webhook_new(struct gw_notify_sink **out, const char *url, const char *secret, size_t secret_len,
			  struct gw_error *err);
/* path run with the body on stdin and GITWARD_* in its environment,
 * killed after timeout_ms. */
int gw_notify_exec_new(struct gw_notify_sink **out, const char *path, int64_t timeout_ms, struct gw_error *err);
/* A commit status on a forge: forge "github", "gitlab" or "gitea"; api its
 * API's base URL; repo OWNER/NAME (or a GitLab project ID); token taken
 * (cleansed and freed with the sink, never logged). */
int gw_notify_forge_new(struct gw_notify_sink **out, const char *forge, const char *api, const char *repo, char *token,
			struct gw_error *err);
/* A POST of body with headers (a curl_slist) to url, named shown in errors
 * (internal: the webhook and the forges). */
int gw_notify__post(const char *shown, const char *url, const char *body, void *headers, const struct gw_cancel *stop,
		    struct gw_error *err);
/* Alerts POSTed to url's /api/v2/alerts (Alertmanager): one per failing
 * condition, re-sent while it lasts (every GW_ALERT_RESEND_MS at most,
 * endsAt GW_ALERT_TTL_MS ahead) and resolved (endsAt now) when it ends. */
#define GW_ALERT_RESEND_MS 60000
#define GW_ALERT_TTL_MS 300000
int gw_notify_alertmanager_new(struct gw_notify_sink **out, const char *url, struct gw_error *err);

#define GW_NOTIFY_QUEUE_DEFAULT 256
#define GW_NOTIFY_TRIES 3

struct gw_notifier;
/* Sinks are taken (on every path). retry_ms: the first wait between tries
 * (doubling, plus jitter); 0: 1 s. */
int gw_notifier_start(struct gw_notifier **out, struct gw_notify_sink **sinks, size_t nsinks, size_t queue_max,
		      int64_t retry_ms, struct gw_error *err);
/* Queue ev (taken) for every sink; never blocks on a sink. A full queue
 * drops its oldest event, counted. */
void gw_notifier_post(struct gw_notifier *n, struct gw_event *ev);
/* Counters for /metrics. */
struct gw_notify_counts {
	unsigned long long dropped;
	size_t nsinks;
	struct {
		const char *label;
		unsigned long long sent, failed;
	} sink[16];
};
void gw_notifier_counts(struct gw_notify_counts *out, struct gw_notifier *n);
/* Stop the thread (a delivery under way is abandoned within a second or
 * so), drop what is queued, free. NULL is a no-op. */
void gw_notifier_stop(struct gw_notifier *n);

/* The options of events, made at the edge (every pointer borrowed). */
struct gw_notify_opts {
	const char *const *urls; /* --notify */
	size_t nurls;
	const char *secret_file; /* --notify-secret-file: read once, here */
	const char *exec; /* --notify-exec */
	const char *const *alertmanagers; /* --alertmanager */
	size_t nalertmanagers;
	size_t queue_max; /* 0: GW_NOTIFY_QUEUE_DEFAULT */
	/* --commit-status, --forge-api, --forge-repo, --forge-token-file
	 * (the token read once, here); forge NULL: none */
	const char *forge, *forge_api, *forge_repo, *forge_token_file;
};
/* The sinks of o and their thread; *out NULL (and 0) when o names none.
 * The secret is never logged nor put in an event. */
int gw_notifier_open(struct gw_notifier **out, const struct gw_notify_opts *o, struct gw_error *err);

/* Whether n has a --commit-status sink. */
bool gw_notifier_statuses(const struct gw_notifier *n);
/* Queue state for commit (once per commit and state, through t). */
void gw_notify_commit_status(struct gw_notifier *n, struct gw_notify_tracker *t, const char *node, const char *commit,
			     enum gw_commit_state state, const char *description);

struct gw_run_summary;
/* After a pass of the agent: its events (the resources as state_dir's
 * state file records them, began_ms its start, unix ms) derived through t
 * and queued on n. Never blocks on a sink; problems are logged. */
void gw_notify_after_pass(struct gw_notifier *n, struct gw_notify_tracker *t, const struct gw_run_summary *sum,
			  const char *node, const struct gw_strmap *labels, const char *state_dir, int64_t began_ms);

#endif
