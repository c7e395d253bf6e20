/* The agent's scheduler (lib/pass/schedule.c) on an injected clock: full
 * passes at the interval's end plus a splay, the Git backoff with its jitter
 * and cap, heal passes after a death, spaced out while something stays down,
 * never closer than the heal gap, at the end of a restart backoff, when a
 * health check is due (each on its own clock), and the one backoff formula
 * the restart policy shares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gitward/apply.h"
#include "gitward/schedule.h"
#include "gitward/util.h"

#define T0 1000000 /* a monotonic clock some time after boot */

static const struct gw_sched_opts every_30s = { .interval_ms = 30000, .splay_ms = 0 };
static const struct gw_sched_opts every_hour = { .interval_ms = 3600000, .splay_ms = 0 };
static const struct gw_sched_opts every_day = { .interval_ms = 86400000, .splay_ms = 0 };

static int64_t full_pass(struct gw_sched *s, int64_t now, bool git_error, uint32_t rnd, const struct gw_sched_opts *o)
{
	struct gw_sched_pass p = { .mode = GW_SCHED_FULL, .git_error = git_error, .now = now, .rnd = rnd };
	return gw_sched_after_pass(s, &p, o);
}

static void heal_pass(struct gw_sched *s, int64_t now, bool changed, const struct gw_sched_opts *o)
{
	struct gw_sched_pass p = { .mode = GW_SCHED_HEAL, .changed = changed, .now = now, .rnd = 12345 };
	assert_int_equal(gw_sched_after_pass(s, &p, o), 0);
}

/* The agent's wait on a fake clock: sleep to each `when` until a pass is due;
 * the clock in *in stops at the pass's time. */
static enum gw_sched_what wait_for_pass(struct gw_sched *s, struct gw_sched_input *in)
{
	struct gw_sched_next next;
	for (int i = 0; i < 100; i++) {
		gw_sched_next(&next, s, in);
		if (next.what != GW_SCHED_WAIT)
			return next.what;
		assert_true(next.when > in->now); /* never a busy loop */
		in->now = next.when;
	}
	fail_msg("no pass after 100 wake-ups");
	return GW_SCHED_WAIT;
}

static void test_full_pass_at_the_interval_end(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_next next;
	struct gw_sched_input in = { .now = T0 };

	gw_sched_next(&next, &s, &in); /* zeroed: a full pass at once */
	assert_int_equal(next.what, GW_SCHED_FULL);
	assert_int_equal(full_pass(&s, T0, false, 777, &every_30s), 30000);
	in.now = T0 + 10;
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	assert_int_equal(next.when, T0 + 30000);
	assert_true(next.watch_fds);
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_FULL);
	assert_int_equal(in.now, T0 + 30000);
}

/* While a full pass's fetch runs beside the loop, the waits decide heal
 * passes only, however long it takes; its end sets the next interval. */
static void test_while_a_fetch_runs_only_heal_passes_are_due(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_next next;
	struct gw_sched_input in = { .now = T0 };

	full_pass(&s, T0, false, 777, &every_30s);
	in.now = T0 + 30000;
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_FULL);
	gw_sched_fetch_begin(&s);
	in.now = T0 + 30000 + 3600000; /* an hour into the fetch: no second full pass */
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	assert_true(next.watch_fds);
	in.died = true; /* a workload died: healed during the fetch */
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	heal_pass(&s, in.now, true, &every_30s);
	in.died = false;
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	/* the fetch ended: the pass completes, the interval runs from its end */
	assert_int_equal(full_pass(&s, in.now, false, 0, &every_30s), 30000);
	assert_int_equal(s.full_at, in.now + 30000);
}

static void test_splay_stays_within_its_bound_default_a_tenth(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_opts dflt = { .interval_ms = 30000, .splay_ms = -1 };
	struct gw_sched_opts five = { .interval_ms = 30000, .splay_ms = 5000 };

	assert_int_equal(full_pass(&s, T0, false, 0, &dflt), 30000);
	assert_int_equal(full_pass(&s, T0, false, 3000, &dflt), 33000); /* the largest: a tenth */
	assert_int_equal(full_pass(&s, T0, false, 3001, &dflt), 30000);
	assert_int_equal(full_pass(&s, T0, false, 1234, &dflt), 31234);
	assert_int_equal(s.full_at, T0 + 31234);
	assert_int_equal(full_pass(&s, T0, false, 5000, &five), 35000);
	for (uint32_t r = 0; r < 4000000000u; r += 7919993u) {
		int64_t d = full_pass(&s, T0, false, r, &dflt);
		assert_true(d >= 30000 && d <= 33000);
		d = full_pass(&s, T0, false, r, &five);
		assert_true(d >= 30000 && d <= 35000);
	}
	int64_t d = full_pass(&s, T0, false, UINT32_MAX, &five);
	assert_true(d >= 30000 && d <= 35000);
}

static void test_splay_zero_gives_none(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	for (uint32_t r = 0; r < 4000000000u; r += 99999989u)
		assert_int_equal(full_pass(&s, T0, false, r, &every_30s), 30000);
	assert_int_equal(full_pass(&s, T0, false, UINT32_MAX, &every_30s), 30000);
}

/* An unreachable remote: the interval doubled per failure, capped at 5 min,
 * + up to 20 % jitter; the next success is back to the interval. */
static void test_git_backoff_doubles_with_jitter_to_its_cap_and_resets(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_opts o = { .interval_ms = 30000, .splay_ms = -1 };
	static const int64_t steps[] = { 30000, 60000, 120000, 240000, 300000, 300000, 300000 };

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct gw_sched low = s, high = s, mid = s;
		assert_int_equal(full_pass(&low, T0, true, 0, &o), steps[i]);
		assert_int_equal(full_pass(&high, T0, true, (uint32_t)(steps[i] / 5), &o), steps[i] + steps[i] / 5);
		int64_t d = full_pass(&mid, T0, true, UINT32_MAX, &o);
		assert_true(d >= steps[i] && d <= steps[i] + steps[i] / 5);
		full_pass(&s, T0, true, 0, &o);
		assert_int_equal(s.git_streak, (int)i + 1);
		assert_int_equal(s.full_at, T0 + steps[i]);
	}
	for (int i = 0; i < 1000; i++) /* a remote down for days */
		full_pass(&s, T0, true, 0, &o);
	assert_int_equal(full_pass(&s, T0, true, 0, &o), 300000);

	assert_int_equal(full_pass(&s, T0, false, 0, &o), 30000); /* back */
	assert_int_equal(s.git_streak, 0);
	assert_int_equal(full_pass(&s, T0, true, 0, &o), 30000);

	struct gw_sched slow = { 0 }; /* an interval past the cap: the cap */
	assert_int_equal(full_pass(&slow, T0, true, 0, &every_hour), 300000);
}

static void test_heal_pass_settles_after_a_death(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_next next;
	struct gw_sched_input in = { .now = T0 + 5000 };

	full_pass(&s, T0, false, 0, &every_30s);
	gw_sched_next(&next, &s, &in);
	assert_true(next.watch_fds);
	in.died = true; /* a pidfd said so */
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	assert_int_equal(next.when, T0 + 5000 + GW_SCHED_HEAL_SETTLE_MS);
	assert_false(next.watch_fds); /* decided: the fds need not be watched */
	in.died = false; /* a later look changes nothing */
	in.now += 50;
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.when, T0 + 5000 + GW_SCHED_HEAL_SETTLE_MS);
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	assert_int_equal(in.now, T0 + 5000 + GW_SCHED_HEAL_SETTLE_MS);

	/* the heal pass leaves the full pass where it was */
	heal_pass(&s, in.now + 30, true, &every_30s);
	in.now += 30;
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_FULL);
	assert_int_equal(in.now, T0 + 30000);
}

static void test_heal_passes_never_closer_than_the_gap(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_input in = { .now = T0 + 1000, .died = true };

	full_pass(&s, T0, false, 0, &every_30s);
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	heal_pass(&s, in.now, true, &every_30s);
	int64_t healed = in.now;
	in.now += 10; /* another death at once */
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	assert_int_equal(in.now, healed + GW_SCHED_HEAL_GAP_MS);

	heal_pass(&s, in.now, true, &every_30s); /* and a restart backoff that has just ended */
	healed = in.now;
	in = (struct gw_sched_input){ .now = healed + 1, .wake_at = healed };
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	assert_int_equal(in.now, healed + GW_SCHED_HEAL_GAP_MS);
}

/* Something down that heal passes do not bring back (its dependency
 * failed): each idle heal pass waits twice as long, up to 2^12 gaps; a pass
 * that changed something, or a full pass, starts over. */
static void test_heal_gap_doubles_with_idle_heals_to_its_cap(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_input in = { .now = T0, .down = true };

	full_pass(&s, T0, false, 0, &every_day);
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL); /* at once */
	assert_int_equal(in.now, T0);
	for (int idle = 1; idle <= 16; idle++) {
		heal_pass(&s, in.now, false, &every_day);
		assert_int_equal(s.idle_heals, idle);
		int64_t healed = in.now;
		assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
		int shift = idle < GW_SCHED_HEAL_GAP_SHIFT_MAX ? idle : GW_SCHED_HEAL_GAP_SHIFT_MAX;
		assert_int_equal(in.now - healed, (int64_t)GW_SCHED_HEAL_GAP_MS << shift);
	}
	heal_pass(&s, in.now, true, &every_day); /* it changed something */
	assert_int_equal(s.idle_heals, 0);
	int64_t healed = in.now;
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	assert_int_equal(in.now - healed, GW_SCHED_HEAL_GAP_MS);

	heal_pass(&s, in.now, false, &every_day);
	heal_pass(&s, in.now, false, &every_day);
	assert_int_equal(s.idle_heals, 2);
	full_pass(&s, in.now, false, 0, &every_day);
	assert_int_equal(s.idle_heals, 0);

	/* a gap past the interval's end: the full pass comes first */
	struct gw_sched late = { .full_at = T0 + 30000, .last_heal = T0, .idle_heals = 12 };
	in = (struct gw_sched_input){ .now = T0 + 1, .down = true };
	assert_int_equal(wait_for_pass(&late, &in), GW_SCHED_FULL);
	assert_int_equal(in.now, T0 + 30000);
}

static void test_wakes_at_the_end_of_a_restart_backoff(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_next next;
	struct gw_sched_input in = { .now = T0 + 10, .wake_at = T0 + 4000 };

	full_pass(&s, T0, false, 0, &every_30s);
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	assert_int_equal(next.when, T0 + 4000);
	assert_true(next.watch_fds); /* a death meanwhile is still seen */
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_HEAL);
	assert_int_equal(in.now, T0 + 4000);

	/* one that ends after the interval: the full pass */
	full_pass(&s, in.now, false, 0, &every_30s);
	in = (struct gw_sched_input){ .now = T0 + 4001, .wake_at = T0 + 4000 + 60000 };
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_FULL);
	assert_int_equal(in.now, T0 + 4000 + 30000);
}

static void test_requested_pass_runs_at_once(void **state)
{
	(void)state;
	struct gw_sched s = { 0 };
	struct gw_sched_next next;
	struct gw_sched_input in = { .now = T0 + 1, .died = true };

	full_pass(&s, T0, false, 0, &every_30s);
	gw_sched_next(&next, &s, &in); /* a heal pass decided on */
	assert_int_equal(next.what, GW_SCHED_WAIT);
	in.requested = true; /* then SIGHUP */
	gw_sched_next(&next, &s, &in);
	assert_int_equal(next.what, GW_SCHED_FULL);
	assert_int_equal(next.when, in.now);
	full_pass(&s, in.now, false, 0, &every_30s);
	assert_int_equal(s.heal_at, 0); /* the next wait starts afresh */
}

/* ---- health checks on their own clock ---- */

#define MAX_PROBES 4
#define MAX_PASSES 64

/* The agent's loop on a fake clock over the health checks of the state
 * file: each pass probes as apply does (a heal pass the checks that are
 * due, any other pass all of them), except a check that cannot run now
 * (its bit in cannot_run). The times of the heal passes until `end` go to
 * heals (returns how many); the clock stops at the last pass. */
struct probe_loop {
	struct gw_sched s;
	struct gw_sched_input in;
	struct gw_sched_probe probes[MAX_PROBES];
	unsigned cannot_run;
	const struct gw_sched_opts *o;
};

static void probe_pass(struct probe_loop *l, enum gw_sched_what what)
{
	for (size_t i = 0; i < l->in.nprobes; i++) {
		struct gw_sched_probe *p = &l->probes[i];
		if (!(l->cannot_run & (1u << i)) && (what == GW_SCHED_FULL || p->last + p->every <= l->in.now))
			p->last = l->in.now;
	}
	if (what == GW_SCHED_FULL)
		full_pass(&l->s, l->in.now, false, 0, l->o);
	else
		heal_pass(&l->s, l->in.now, false, l->o);
}

static size_t run_until(struct probe_loop *l, int64_t end, int64_t *heals, size_t max)
{
	size_t n = 0;
	l->in.probes = l->probes;
	for (;;) {
		struct gw_sched_next next;
		gw_sched_next(&next, &l->s, &l->in);
		if (next.what == GW_SCHED_WAIT) {
			assert_true(next.when > l->in.now); /* never a busy loop */
			assert_true(next.watch_fds); /* a death meanwhile is still seen */
			if (next.when > end)
				return n;
			l->in.now = next.when;
			continue;
		}
		if (next.what == GW_SCHED_HEAL) {
			assert_true(n < max);
			heals[n++] = l->in.now - T0;
		}
		probe_pass(l, next.what);
	}
}

static void assert_times(const int64_t *got, size_t n, const int64_t *want, size_t nwant)
{
	for (size_t i = 0; i < n && i < nwant; i++)
		if (got[i] != want[i])
			fail_msg("heal pass %zu at +%lldms, expected +%lldms", i, (long long)got[i],
				 (long long)want[i]);
	assert_int_equal(n, nwant);
}

/* A hung workload (interval 2s, retries 3) at --interval 1h: heal passes
 * at the check's interval, so its third failure comes 6 s after the last
 * good probe, not three hours later. */
static void test_a_due_health_check_wakes_the_loop_for_a_heal_pass(void **state)
{
	(void)state;
	struct probe_loop l = { .in = { .now = T0, .nprobes = 1 }, .probes = { { T0, 2000 } }, .o = &every_hour };
	struct gw_sched_next next;
	int64_t heals[MAX_PASSES];

	full_pass(&l.s, T0, false, 0, &every_hour);
	l.in.probes = l.probes;
	l.in.now = T0 + 10;
	gw_sched_next(&next, &l.s, &l.in);
	assert_int_equal(next.what, GW_SCHED_WAIT);
	assert_int_equal(next.when, T0 + 2000);
	assert_true(next.watch_fds);
	size_t n = run_until(&l, T0 + 6000, heals, MAX_PASSES);
	assert_times(heals, n, (const int64_t[]){ 2000, 4000, 6000 }, 3);
	assert_int_equal(l.in.now, T0 + 6000);
	assert_int_equal(l.s.full_at, T0 + 3600000); /* the interval is left alone */

	/* a check recorded without a probe time is due at once */
	struct probe_loop fresh = { .in = { .now = T0 + 10, .nprobes = 1 }, .probes = { { T0 + 10 - 5000, 5000 } } };
	fresh.o = &every_hour;
	full_pass(&fresh.s, T0, false, 0, &every_hour);
	fresh.in.probes = fresh.probes;
	gw_sched_next(&next, &fresh.s, &fresh.in);
	assert_int_equal(next.what, GW_SCHED_HEAL);
}

/* Checks of 2 s and 5 s (and a workload with none): each is probed at its
 * own interval, the two together when their times meet. */
static void test_health_checks_with_different_intervals_keep_their_own_clocks(void **state)
{
	(void)state;
	struct probe_loop l = { .in = { .now = T0, .nprobes = 3 },
				.probes = { { T0, 2000 }, { T0, 5000 }, { T0, 0 } },
				.o = &every_hour };
	int64_t heals[MAX_PASSES];

	full_pass(&l.s, T0, false, 0, &every_hour);
	size_t n = run_until(&l, T0 + 20000, heals, MAX_PASSES);
	assert_times(heals, n,
		     (const int64_t[]){ 2000, 4000, 5000, 6000, 8000, 10000, 12000, 14000, 15000, 16000, 18000, 20000 },
		     12);
	assert_int_equal(l.probes[0].last, T0 + 20000);
	assert_int_equal(l.probes[1].last, T0 + 20000);
}

/* A full pass probes every check: the next probe is an interval after it,
 * not at the time the check had before. A check due after the interval's
 * end waits for the full pass. */
static void test_a_pass_resets_the_probe_clock(void **state)
{
	(void)state;
	struct probe_loop l = { .in = { .now = T0, .nprobes = 1 }, .probes = { { T0, 10000 } }, .o = &every_30s };
	struct gw_sched_next next;
	int64_t heals[MAX_PASSES];

	full_pass(&l.s, T0, false, 0, &every_30s);
	size_t n = run_until(&l, T0 + 10000, heals, MAX_PASSES);
	assert_times(heals, n, (const int64_t[]){ 10000 }, 1);
	l.in.now = T0 + 13000; /* SIGHUP: a full pass */
	l.in.requested = true;
	gw_sched_next(&next, &l.s, &l.in);
	assert_int_equal(next.what, GW_SCHED_FULL);
	l.in.requested = false;
	probe_pass(&l, GW_SCHED_FULL);
	assert_int_equal(l.probes[0].last, T0 + 13000);
	n = run_until(&l, T0 + 43000, heals, MAX_PASSES);
	/* 23 s, 33 s; the full pass at 43 s probes it in their stead */
	assert_times(heals, n, (const int64_t[]){ 23000, 33000 }, 2);
	assert_int_equal(l.probes[0].last, T0 + 43000);
	assert_int_equal(l.s.full_at, T0 + 43000 + 30000);

	struct gw_sched_probe late = { T0 + 25000, 10000 }; /* due at 35 s, after the interval */
	struct gw_sched s = { 0 };
	struct gw_sched_input in = { .now = T0 + 25001, .probes = &late, .nprobes = 1 };
	full_pass(&s, T0, false, 0, &every_30s);
	assert_int_equal(wait_for_pass(&s, &in), GW_SCHED_FULL);
	assert_int_equal(in.now, T0 + 30000);
}

/* A check whose probe cannot run (its backend cannot look) stays due: it
 * is tried again spaced out like a resource that stays down, while the
 * other check keeps its 3 s clock; once it runs again, its clock is its
 * own again. */
static void test_a_check_that_cannot_run_is_spaced_out_and_the_others_keep_their_clocks(void **state)
{
	(void)state;
	struct probe_loop l = { .in = { .now = T0, .nprobes = 2 },
				.probes = { { T0, 1000 }, { T0, 3000 } },
				.cannot_run = 1,
				.o = &every_hour };
	int64_t heals[MAX_PASSES];

	full_pass(&l.s, T0, false, 0, &every_hour);
	size_t n = run_until(&l, T0 + 10000, heals, MAX_PASSES);
	assert_times(heals, n, (const int64_t[]){ 1000, 1200, 1600, 2400, 3000, 6000, 9000 }, 7);
	l.cannot_run = 0; /* back: probed at the next heal pass, then every second */
	n = run_until(&l, T0 + 15000, heals, MAX_PASSES);
	assert_times(heals, n, (const int64_t[]){ 12000, 13000, 14000, 15000 }, 4);
	assert_int_equal(l.s.probe_stuck, 0);
}

/* One formula: the restart policy's 1 s, 2 s, 4 s ... capped at 5 min is
 * the Git backoff and the heal gap with their own base and cap. */
static void test_restart_backoff_is_the_one_backoff(void **state)
{
	(void)state;
	static const int64_t steps[] = { 1000, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000 };
	for (int n = 0; n < (int)(sizeof(steps) / sizeof(steps[0])); n++) {
		assert_int_equal(gw_apply__backoff_ms(n), steps[n]);
		assert_int_equal(gw_backoff_ms(1000, n, 300000), steps[n]);
	}
	assert_int_equal(gw_apply__backoff_ms(1000000), 300000); /* no overflow */
	assert_int_equal(gw_backoff_ms(1000, -3, 300000), 1000);
	assert_int_equal(gw_backoff_ms(7, 1000000, INT64_MAX / 2), INT64_MAX / 2);
	assert_int_equal(gw_backoff_ms(600000, 1, 300000), 300000); /* the base capped too */
	assert_int_equal(gw_backoff_ms(0, 1000000, 300000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_pass_at_the_interval_end),
		cmocka_unit_test(test_while_a_fetch_runs_only_heal_passes_are_due),
		cmocka_unit_test(test_splay_stays_within_its_bound_default_a_tenth),
		cmocka_unit_test(test_splay_zero_gives_none),
		cmocka_unit_test(test_git_backoff_doubles_with_jitter_to_its_cap_and_resets),
		cmocka_unit_test(test_heal_pass_settles_after_a_death),
		cmocka_unit_test(test_heal_passes_never_closer_than_the_gap),
		cmocka_unit_test(test_heal_gap_doubles_with_idle_heals_to_its_cap),
		cmocka_unit_test(test_wakes_at_the_end_of_a_restart_backoff),
		cmocka_unit_test(test_requested_pass_runs_at_once),
		cmocka_unit_test(test_a_due_health_check_wakes_the_loop_for_a_heal_pass),
		cmocka_unit_test(test_health_checks_with_different_intervals_keep_their_own_clocks),
		cmocka_unit_test(test_a_pass_resets_the_probe_clock),
		cmocka_unit_test(test_a_check_that_cannot_run_is_spaced_out_and_the_others_keep_their_clocks),
		cmocka_unit_test(test_restart_backoff_is_the_one_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
