/* The agent's clock, without a clock: when the next full pass is due (the
 * interval plus a splay, or the Git backoff) and when a heal pass runs (soon
 * after a death, at the end of a restart backoff, when a health check's
 * interval has passed, spaced out while something stays down and passes
 * change nothing). Pure, so unit tests step time themselves; the agent
 * reads the clock, calls random() and polls. */
#include <limits.h>

#include "gitward/schedule.h"
#include "gitward/util.h"

/* A random part of the interval, so a fleet does not poll in lockstep. */
static int64_t splay(const struct gw_sched_opts *o, uint32_t rnd)
{
	int64_t sp = o->splay_ms >= 0 ? o->splay_ms : o->interval_ms / 10;
	return sp > 0 ? (int64_t)(rnd % (uint64_t)(sp + 1)) : 0;
}

/* Capped exponential backoff with jitter for an unreachable remote. */
static int64_t git_retry(const struct gw_sched_opts *o, int streak, uint32_t rnd)
{
	int64_t d = gw_backoff_ms(o->interval_ms, streak, GW_SCHED_GIT_BACKOFF_MAX_MS);
	return d + (int64_t)(rnd % (uint64_t)(d / GW_SCHED_GIT_JITTER_DIV + 1));
}

int64_t gw_sched_after_pass(struct gw_sched *s, const struct gw_sched_pass *p, const struct gw_sched_opts *o)
{
	int64_t delay = 0;
	s->heal_at = 0;
	if (p->mode == GW_SCHED_HEAL) {
		s->last_heal = p->now;
		s->idle_heals = p->changed ? 0 : s->idle_heals + 1;
		return 0;
	}
	s->idle_heals = 0;
	if (p->git_error) {
		s->git_streak++;
		delay = git_retry(o, s->git_streak, p->rnd);
	} else {
		s->git_streak = 0;
		delay = o->interval_ms + splay(o, p->rnd);
	}
	s->full_at = p->now + delay;
	return delay;
}

void gw_sched_fetch_begin(struct gw_sched *s)
{
	s->full_at = INT64_MAX; /* set again by gw_sched_after_pass */
}

/* The heal pass a wait starts with, if any: soon after a death, or, while a
 * resource stays down after passes that changed nothing (say, its
 * dependency failed), each such pass twice as long after the last. */
static int64_t heal_due(const struct gw_sched *s, const struct gw_sched_input *in)
{
	const int64_t gap_max = (int64_t)GW_SCHED_HEAL_GAP_MS << GW_SCHED_HEAL_GAP_SHIFT_MAX;
	if (in->died)
		return in->now + GW_SCHED_HEAL_SETTLE_MS;
	if (in->down)
		return s->last_heal + gw_backoff_ms(GW_SCHED_HEAL_GAP_MS, s->idle_heals + 1, gap_max);
	return 0;
}

/* When a heal pass is due for the health checks (INT64_MAX: never): when
 * the earliest one's interval has passed. A check that the last such pass
 * should have probed and did not (its backend cannot look, say) is stuck:
 * tried again spaced out like a resource that stays down, while the others
 * keep their own clocks. */
static int64_t probe_due(bool *stuck, const struct gw_sched *s, const struct gw_sched_input *in)
{
	const int64_t gap_max = (int64_t)GW_SCHED_HEAL_GAP_MS << GW_SCHED_HEAL_GAP_SHIFT_MAX;
	int64_t due = INT64_MAX;

	*stuck = false;
	for (size_t i = 0; i < in->nprobes; i++) {
		const struct gw_sched_probe *p = &in->probes[i];
		int64_t at = p->last + p->every;
		if (p->every <= 0)
			continue;
		if (s->probe_for && at <= s->probe_for)
			*stuck = true;
		else if (at < due)
			due = at;
	}
	if (*stuck) {
		int64_t again = s->last_heal + gw_backoff_ms(GW_SCHED_HEAL_GAP_MS, s->probe_stuck + 1, gap_max);
		if (again < due)
			due = again;
	}
	return due;
}

void gw_sched_next(struct gw_sched_next *out, struct gw_sched *s, const struct gw_sched_input *in)
{
	int64_t now = in->now, until = s->full_at;
	bool stuck;
	int64_t probe = probe_due(&stuck, s, in);

	*out = (struct gw_sched_next){ .what = GW_SCHED_FULL, .when = now };
	if (in->requested)
		return;
	if (!s->heal_at)
		s->heal_at = heal_due(s, in);
	/* a restart backoff that has ended, before the interval has: heal */
	if (!s->heal_at && in->wake_at && in->wake_at <= now && now < until)
		s->heal_at = now;
	/* a health check due, before the interval has ended: a heal pass
	 * probes every check due by now */
	if (!s->heal_at && probe <= now && now < until) {
		s->heal_at = now;
		s->probe_for = now;
		s->probe_stuck = stuck ? s->probe_stuck + 1 : 0;
	}
	if (s->heal_at && s->heal_at < s->last_heal + GW_SCHED_HEAL_GAP_MS)
		s->heal_at = s->last_heal + GW_SCHED_HEAL_GAP_MS;
	if (s->heal_at && now >= s->heal_at) {
		out->what = GW_SCHED_HEAL;
		return;
	}
	if (s->heal_at && s->heal_at < until)
		until = s->heal_at;
	if (!s->heal_at && in->wake_at && in->wake_at < until)
		until = in->wake_at; /* a restart backoff ends: wake up then */
	if (!s->heal_at && probe < until)
		until = probe; /* a health check is due: wake up then */
	if (until <= now)
		return; /* the interval is over: a full pass */
	*out = (struct gw_sched_next){ .what = GW_SCHED_WAIT, .when = until, .watch_fds = !s->heal_at };
}
