/* The agent's whole pass, with the failure rules of the SPEC: Git errors
 * touch nothing, an invalid or unverified commit leaves the last good one
 * in force, everything is recorded for `status` and the endpoints. The
 * stages themselves are pass.c's, as for every other command. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/pin.h"
#include "gitward/prof.h"

static void log_plan(const struct gw_plan *plan)
{
	char key[200];
	for (size_t i = 0; i < plan->n; i++) {
		const struct gw_action *a = &plan->v[i];
		if (a->type == GW_ACTION_NONE)
			continue;
		snprintf(key, sizeof(key), "%s/%s", gw_kind_to_string(a->kind), a->name);
		struct gw_log_fields lf = { gw_action_to_string(a->type), NULL, -1 };
		gw_log_with(GW_LOG_INFO, key, &lf, "planned %s%s%s", gw_action_to_string(a->type),
			    a->reason[0] ? ": " : "", a->reason);
	}
}

static void finish_error(struct gw_run_summary *out, enum gw_run_result res, const struct gw_pass_opts *opts,
			 const struct gw_backend_set *set, const struct gw_pass *pass, const char *msg)
{
	struct gw_error err;
	out->result = res;
	snprintf(out->message, sizeof(out->message), "%s", msg);
	gw_log(GW_LOG_ERROR, "", "%s", msg);
	if (gw_apply_record_error(opts->node, opts->labels, opts->state_dir, set, &pass->remote, res, msg, &err) < 0)
		gw_log(GW_LOG_ERROR, "", "cannot record the error: %s", err.msg);
	gw_pass__history(opts, pass->commit, pass->ref, "failed", msg);
}

/* What the state file recorded before this pass. */
struct recorded {
	char *commit; /* the commit in force (NULL: none yet) */
	char *ref; /* the name of its ref */
	char *last_error;
	/* the result of the last attempt when it was not a pass over the
	 * wanted commit (git_error, invalid, ...), a static string */
	const char *failed;
	char *remote_commit;
	bool remote_invalid;
	char *reverted; /* --auto-revert went back from this commit; refused until the ref moves */
	char *reverted_reason;
	bool pinned; /* commit is the operator's pin, not the last one applied */
};

/* A pin stands in for the commit in force where a pass reads no tip (a
 * heal, Git down): read_offline reads it, and the pass is marked pinned. */
static void pin_load(struct recorded *out, const struct gw_pass_opts *opts)
{
	struct gw_pin pin;
	struct gw_error err;
	if (!opts->follow_pin || gw_pin_read(&pin, opts->state_dir, &err) < 0 || !pin.on)
		return;
	free(out->commit);
	out->commit = gw_xstrdup(pin.commit);
	out->pinned = true;
}

static void recorded_load(struct recorded *out, const struct gw_pass_opts *opts)
{
	struct gw_state_file st;
	struct gw_error err;
	char path[4096];

	memset(out, 0, sizeof(*out));
	gw_path_state_file(path, sizeof(path), opts->state_dir);
	if (gw_state_load(&st, path, &err) < 0)
		return;
	for (int r = 0; st.last_attempt_result && r < GW_RUN_MAX; r++)
		if (r != GW_RUN_CONVERGED && r != GW_RUN_NOT_CONVERGED && r != GW_RUN_HELD &&
		    !strcmp(st.last_attempt_result, gw_run_result_to_string((enum gw_run_result)r)))
			out->failed = gw_run_result_to_string((enum gw_run_result)r);
	/* now owned by out */
	out->commit = st.commit;
	out->ref = st.ref;
	out->last_error = st.last_error;
	out->remote_commit = st.remote_commit;
	out->remote_invalid = st.remote_invalid;
	out->reverted = st.reverted_commit;
	out->reverted_reason = st.reverted_reason;
	st.commit = st.ref = st.last_error = st.remote_commit = st.reverted_commit = st.reverted_reason = NULL;
	gw_state_file_free(&st);
	pin_load(out, opts);
}

static void recorded_free(struct recorded *r)
{
	free(r->commit);
	free(r->ref);
	free(r->last_error);
	free(r->remote_commit);
	free(r->reverted);
	free(r->reverted_reason);
}

/* The name of the ref the commit in force came from: a pass over it
 * records the name, never the commit id it is read at. */
static const char *recorded_ref(const struct recorded *was, const struct gw_pass_opts *opts)
{
	return was->ref ? was->ref : opts->ref;
}

/* Read pass against commit from the cache, without fetching; the ref keeps
 * the name ref_name (NULL: the commit's id), the remote tip stays. */
static int read_offline(struct gw_pass *pass, const struct gw_pass_opts *opts, const char *commit, const char *ref_name,
			const struct gw_cancel *cancel, struct gw_error *err)
{
	struct gw_pass_opts at = *opts;
	enum gw_pass_stage stage;
	struct gw_manifest_cache *cache = pass->cache;
	struct gw_remote_tip remote = pass->remote;
	char *name = ref_name ? gw_xstrdup(ref_name) : NULL; /* may be pass->ref */
	at.ref = commit;
	gw_pass_free(pass);
	gw_pass_init(pass);
	pass->offline = true;
	pass->cancel = cancel;
	pass->cache = cache;
	pass->remote = remote;
	int rc = gw_pass_read(pass, &stage, &at, NULL, err);
	if (rc == 0 && name) {
		free(pass->ref);
		pass->ref = name;
		name = NULL;
	}
	free(name);
	return rc;
}

/* The steps of a pass below return 0 when it goes on to converge, or
 * -ECANCELED when it has ended (recorded already, or nothing to do). */
#define PASS_ENDED (-ECANCELED)

/* A heal: a workload died; converge to the commit in force, no fetch,
 * keeping whatever error was recorded with it. */
static int prepare_heal(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
			const struct gw_backend_set *set, const struct gw_cancel *cancel, struct recorded *was)
{
	struct gw_error err = { 0 };
	char buf[GW_ERROR_MSG_MAX + 300];
	int rc;

	out->result = GW_RUN_CONVERGED;
	if (!was->commit)
		return PASS_ENDED;
	rc = read_offline(pass, opts, was->commit, recorded_ref(was, opts), cancel, &err);
	pass->pinned = was->pinned;
	/* now owned by the pass */
	pass->note = was->last_error;
	was->last_error = NULL;
	pass->result = was->failed; /* a heal keeps what the last attempt said */
	pass->probe_due_only = true; /* each health check on its own clock */
	if (rc < 0) {
		finish_error(out, GW_RUN_ERROR, opts, set, pass, gw_error_format(buf, sizeof(buf), &err));
		return PASS_ENDED;
	}
	out->healing = true;
	return 0;
}

/* Git is down: the workloads are healed anyway, against the commit in
 * force; the error is reported and the fetch retried. */
static int fall_back_git_down(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
			      const struct gw_backend_set *set, const struct gw_cancel *cancel,
			      const struct recorded *was, const struct gw_error *why)
{
	struct gw_error err = { 0 };
	char msg[GW_ERROR_MSG_MAX + 300];
	int rc;

	gw_error_format(msg, sizeof(msg), why);
	if (!was->commit || gw_cancel_requested(cancel)) {
		finish_error(out, GW_RUN_GIT_ERROR, opts, set, pass, msg);
		return PASS_ENDED;
	}
	gw_log(GW_LOG_ERROR, "", "%s", msg);
	gw_log(GW_LOG_WARN, "", "git unavailable; healing against the commit in force, %.12s", was->commit);
	gw_pass__history(opts, NULL, recorded_ref(was, opts), "failed", msg);
	rc = read_offline(pass, opts, was->commit, recorded_ref(was, opts), cancel, &err);
	pass->pinned = was->pinned;
	if (rc < 0) {
		finish_error(out, GW_RUN_GIT_ERROR, opts, set, pass, msg);
		return PASS_ENDED;
	}
	pass->note = gw_xstrdup(msg);
	pass->result = gw_run_result_to_string(GW_RUN_GIT_ERROR);
	snprintf(out->message, sizeof(out->message), "%s", msg);
	out->result = GW_RUN_GIT_ERROR;
	out->healing = true;
	return 0;
}

/* An invalid or refused commit (its signature, or a rewound branch):
 * report every problem, then fall back to the last good commit. */
static int fall_back_bad_commit(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
				const struct gw_backend_set *set, const struct gw_cancel *cancel,
				const struct recorded *was, enum gw_pass_stage stage, const struct gw_error *why)
{
	enum gw_run_result bad = stage == GW_PASS_VERIFY ? GW_RUN_UNVERIFIED
		: stage == GW_PASS_REWIND		 ? GW_RUN_REWIND
							 : GW_RUN_INVALID;
	const struct gw_diags *d = &pass->set.diags;
	struct gw_error err = { 0 };
	char msg[GW_ERROR_MSG_MAX + 300];
	int rc;

	if (bad != GW_RUN_INVALID) {
		snprintf(msg, sizeof(msg), "%s", why->msg);
		gw_log(GW_LOG_ERROR, "", "%s", msg);
	} else {
		for (size_t i = 0; i < d->n; i++)
			gw_log(GW_LOG_ERROR, "", "%s:%u:%u: %s", d->v[i].file, d->v[i].line, d->v[i].col, d->v[i].msg);
		snprintf(msg, sizeof(msg), "%s (first: %s:%u:%u: %s)", why->msg, d->v[0].file, d->v[0].line,
			 d->v[0].col, d->v[0].msg);
	}
	if (!was->commit || !strcmp(was->commit, pass->commit)) {
		finish_error(out, bad, opts, set, pass, msg);
		return PASS_ENDED;
	}
	gw_pass__history(opts, pass->commit, pass->ref, "failed", msg);
	gw_log(GW_LOG_WARN, "", "commit %s; keeping the last good commit %.12s in force",
	       bad == GW_RUN_INVALID ? "invalid" : "refused", was->commit);
	/* just fetched: the last good commit is in the cache; its ref is the
	 * one just resolved */
	rc = read_offline(pass, opts, was->commit, pass->ref, cancel, &err);
	if (rc < 0) {
		gw_log(GW_LOG_ERROR, "", "the last good commit cannot be used either: %s", err.msg);
		finish_error(out, bad, opts, set, pass, msg);
		return PASS_ENDED;
	}
	pass->note = gw_xstrdup(msg);
	pass->result = gw_run_result_to_string(bad);
	snprintf(out->message, sizeof(out->message), "%s", msg);
	out->result = bad;
	return 0;
}

/* The ref's tip is a commit --auto-revert went back from, and the ref has
 * not moved since: it is not applied again; the commit in force stays and
 * is healed. */
static int fall_back_reverted(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
			      const struct gw_backend_set *set, const struct gw_cancel *cancel,
			      const struct recorded *was)
{
	struct gw_error err = { 0 };
	char msg[GW_ERROR_MSG_MAX + 300];
	snprintf(msg, sizeof(msg),
		 "commit %.12s was reverted (%s); the commit in force %.12s stays until the ref moves to another "
		 "commit",
		 was->reverted, was->reverted_reason ? was->reverted_reason : "not healthy in time", was->commit);
	gw_log(GW_LOG_WARN, "", "%s", msg);
	if (read_offline(pass, opts, was->commit, pass->ref, cancel, &err) < 0) {
		finish_error(out, GW_RUN_REVERTED, opts, set, pass, msg);
		return PASS_ENDED;
	}
	pass->note = gw_xstrdup(msg);
	pass->result = gw_run_result_to_string(GW_RUN_REVERTED);
	snprintf(out->message, sizeof(out->message), "%s", msg);
	out->result = GW_RUN_REVERTED;
	return 0;
}

/* What this fetch ended, said once: a Git outage, an invalid tip. */
static void log_recovery(const struct recorded *was, const struct gw_pass *pass, int rc)
{
	const char *ref = pass->ref ? pass->ref : "HEAD";
	if (was->failed && !strcmp(was->failed, gw_run_result_to_string(GW_RUN_GIT_ERROR)))
		gw_log(GW_LOG_INFO, "", "Git reachable again: fetched %s at %.12s", ref, pass->remote.commit);
	if (rc == 0 && was->remote_invalid)
		gw_log(GW_LOG_INFO, "", "commit %.12s valid again on %s (the last invalid tip was %.12s)",
		       pass->remote.commit, ref, was->remote_commit ? was->remote_commit : "unknown");
}

/* Select, observe, plan, execute, record. */
static void converge(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
		     const struct gw_backend_set *set)
{
	struct gw_error err = { 0 };
	struct gw_observer_live live;
	char buf[GW_ERROR_MSG_MAX + 300], *state_error = NULL;

	gw_observer_live_init(&live, set, opts->state_dir);
	int rc = gw_pass_observe_plan(pass, &live.base, opts->labels, opts, &state_error, &err);
	free(state_error); /* logged; observation went on without the file */
	if (rc < 0) {
		finish_error(out, GW_RUN_ERROR, opts, set, pass, gw_error_format(buf, sizeof(buf), &err));
		return;
	}
	memcpy(out->commit, pass->commit, sizeof(out->commit));
	memcpy(out->count, pass->plan.count, sizeof(out->count));
	gw_manifest_set_empty_warning(out->no_manifest, sizeof(out->no_manifest), &pass->set);
	log_plan(&pass->plan);
	rc = gw_pass_execute(&out->report, pass, opts, set, &err);
	out->suspended = pass->suspend.on;
	out->observe = pass->observe_mode;
	if (pass->hold)
		memcpy(out->pending, pass->plan.count, sizeof(out->pending));
	if (!pass->hold && out->report.held) {
		out->held = pass->held;
		out->held_until_ms = pass->held_until_ms;
		out->pending[GW_ACTION_UPDATE] = pass->plan.count[GW_ACTION_UPDATE];
		out->pending[GW_ACTION_DELETE] = pass->plan.count[GW_ACTION_DELETE];
	}
	if (rc < 0) {
		finish_error(out, GW_RUN_ERROR, opts, set, pass, gw_error_format(buf, sizeof(buf), &err));
		return;
	}
	if (out->result != GW_RUN_INVALID && out->result != GW_RUN_UNVERIFIED && out->result != GW_RUN_REWIND &&
	    out->result != GW_RUN_GIT_ERROR && out->result != GW_RUN_REVERTED)
		out->result = out->report.converged				   ? GW_RUN_CONVERGED
			: out->held && !out->report.failed && !out->report.waiting ? GW_RUN_HELD
										   : GW_RUN_NOT_CONVERGED;
}

/* --auto-revert: what the commit in force changed has not run healthy by
 * its deadline; the node goes back to the last commit whose changes did,
 * and the bad one is recorded as reverted. Never reported as converged. */
static void revert(struct gw_pass *pass, struct gw_run_summary *out, const struct gw_pass_opts *opts,
		   const struct gw_backend_set *set, const struct gw_cancel *cancel)
{
	struct gw_error err = { 0 };
	char bad[41], to[41], why[sizeof(out->report.bad)], dur[32], msg[GW_ERROR_MSG_MAX + 300];

	memcpy(bad, pass->commit, sizeof(bad));
	memcpy(to, out->report.revert_to, sizeof(to));
	memcpy(why, out->report.bad, sizeof(why));
	gw_duration_format(dur, sizeof(dur), opts->auto_revert_ms);
	snprintf(msg, sizeof(msg),
		 "commit %.12s reverted: %s, not running and healthy within --healthy-deadline %s of its first "
		 "apply; back to %.12s, the last commit whose changes ran healthy; %.12s is not applied again "
		 "until the ref moves",
		 bad, why[0] ? why : "a changed resource", dur, to, bad);
	gw_log(GW_LOG_ERROR, "", "%s", msg);
	if (read_offline(pass, opts, to, pass->ref, cancel, &err) < 0) {
		char buf[GW_ERROR_MSG_MAX + 300], emsg[GW_ERROR_MSG_MAX + 400];
		snprintf(emsg, sizeof(emsg), "cannot revert commit %.12s to %.12s: %s", bad, to,
			 gw_error_format(buf, sizeof(buf), &err));
		finish_error(out, GW_RUN_ERROR, opts, set, pass, emsg);
		return;
	}
	memcpy(pass->reverting, bad, sizeof(pass->reverting));
	char reason[sizeof(why) + 64];
	snprintf(reason, sizeof(reason), "%s, not healthy within %s", why[0] ? why : "a changed resource", dur);
	pass->revert_reason = gw_xstrdup(reason);
	pass->note = gw_xstrdup(msg);
	pass->result = gw_run_result_to_string(GW_RUN_REVERTED);
	snprintf(out->message, sizeof(out->message), "%s", msg);
	out->result = GW_RUN_REVERTED;
	memcpy(out->reverted, bad, sizeof(out->reverted));
	converge(pass, out, opts, set);
}

void gw_pass_run(struct gw_run_summary *out, const struct gw_pass_opts *opts, const struct gw_backend_set *set,
		 const struct gw_cancel *cancel, enum gw_pass_mode mode, struct gw_manifest_cache *cache,
		 const struct gw_error *fetched)
{
	struct gw_pass pass;
	struct gw_error err = { 0 };
	enum gw_pass_stage stage = GW_PASS_GIT;
	char buf[GW_ERROR_MSG_MAX + 300];
	struct recorded was;
	int rc;

	memset(out, 0, sizeof(*out));
	gw_backend_set_pass_begin(set);
	gw_pass_init(&pass);
	pass.cancel = cancel;
	pass.cache = cache;
	recorded_load(&was, opts);
	if (mode == GW_PASS_HEAL) {
		rc = prepare_heal(&pass, out, opts, set, cancel, &was);
	} else {
		if (fetched && fetched->code < 0) {
			err = *fetched;
			rc = err.code;
		} else {
			pass.fetched = fetched != NULL;
			rc = gw_pass_read(&pass, &stage, opts, NULL, &err);
		}
		out->fetched = rc == 0 || stage != GW_PASS_GIT;
		if (out->fetched)
			log_recovery(&was, &pass, rc);
		if (rc < 0 && stage == GW_PASS_GIT) {
			rc = fall_back_git_down(&pass, out, opts, set, cancel, &was, &err);
		} else if (rc < 0 && (stage == GW_PASS_VERIFY || stage == GW_PASS_REWIND || pass.set.diags.n)) {
			rc = fall_back_bad_commit(&pass, out, opts, set, cancel, &was, stage, &err);
		} else if (rc < 0) {
			finish_error(out, GW_RUN_ERROR, opts, set, &pass, gw_error_format(buf, sizeof(buf), &err));
			rc = PASS_ENDED;
		} else if (!pass.pinned && was.reverted && was.commit && !strcmp(pass.commit, was.reverted) &&
			   strcmp(was.commit, was.reverted) != 0) {
			rc = fall_back_reverted(&pass, out, opts, set, cancel, &was);
		}
	}
	if (rc == 0)
		converge(&pass, out, opts, set);
	if (rc == 0 && out->report.revert_due && !gw_cancel_requested(cancel))
		revert(&pass, out, opts, set, cancel);
	recorded_free(&was);
	gw_pass_free(&pass);
	gw_backend_set_pass_end(set);
}

bool gw_pass_refused_reverted(const struct gw_pass *pass, char *msg, size_t size)
{
	const struct gw_state_file *st = &pass->state;
	if (pass->pinned || !st->reverted_commit || strcmp(st->reverted_commit, pass->commit) != 0 || !st->commit ||
	    !strcmp(st->commit, st->reverted_commit))
		return false;
	snprintf(msg, size,
		 "commit %.12s was reverted (%s); it is not applied again until the ref moves to another commit, and "
		 "the commit in force %.12s stays",
		 st->reverted_commit, st->reverted_reason ? st->reverted_reason : "not healthy in time", st->commit);
	return true;
}

int gw_pass_until_healthy(struct gw_run_summary *out, const struct gw_pass_opts *opts, const struct gw_backend_set *set,
			  const struct gw_cancel *cancel, int64_t revert_at)
{
	int64_t deadline_ms = revert_at * 1000;
	memset(out, 0, sizeof(*out));
	while (!gw_cancel_requested(cancel)) {
		/* a heal pass at least every second, and one right after the
		 * deadline: what the commit changed is looked at, then judged */
		int64_t now = gw_now_ms(), left = deadline_ms - now;
		if (left > 0) {
			struct timespec ts = { .tv_sec = 0, .tv_nsec = (left > 1000 ? 1000 : left) * 1000000L };
			if (left >= 1000)
				ts = (struct timespec){ .tv_sec = 1 };
			nanosleep(&ts, NULL);
		}
		gw_pass_run(out, opts, set, cancel, GW_PASS_HEAL, NULL, NULL);
		if (out->result == GW_RUN_REVERTED)
			return 1;
		if (!out->report.revert_at || out->result == GW_RUN_ERROR)
			return 0; /* healthy (or no longer watched): the caller judges the rest */
		if (gw_now_ms() > deadline_ms + 1000 && !out->report.revert_due)
			return 0; /* cannot happen: the deadline has passed, it was due */
	}
	return 0;
}
