/* The planner: actions, field changes, ordering, prune and empty guards,
 * restart policy, and the rendered text and JSON. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>

#include <cmocka.h>
#include <jansson.h>

#include "gitward/apply.h"
#include "gitward/plan.h"
#include "helpers.h"

static struct gw_resource *proc(const char *name, const char *extra)
{
	char buf[1024];
	snprintf(buf, sizeof(buf),
		 "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: %s}\nspec: {command: [/bin/true]%s%s}\n",
		 name, extra ? ", " : "", extra ? extra : "");
	struct gw_resource *r = parse_one(buf);
	assert_non_null(r);
	return r;
}

/* An observed record that matches r exactly. */
static void observe(struct gw_observed *o, const struct gw_resource *r, enum gw_state st)
{
	memset(o, 0, sizeof(*o));
	o->kind = r->kind;
	o->name = gw_xstrdup(r->name);
	memcpy(o->spec_hash, r->spec_hash, 65);
	o->canonical = gw_xstrdup(r->canonical);
	o->state = st;
}

static const struct gw_plan_opts prune_on = { .prune = true };

/* Converged: running and not unhealthy, or stopped under a policy that lets
 * it stay stopped; never when the last pass left its action failed or waiting. */
static void test_observed_converged(void **state)
{
	(void)state;
	struct gw_observed o = { .state = GW_STATE_RUNNING, .health = GW_HEALTH_UNKNOWN };
	assert_true(gw_observed_converged(&o));
	o.health = GW_HEALTH_HEALTHY;
	assert_true(gw_observed_converged(&o));
	o.health = GW_HEALTH_UNHEALTHY;
	assert_false(gw_observed_converged(&o));
	o.health = GW_HEALTH_HEALTHY;
	o.not_converged = true; /* e.g. its update failed: the old spec runs */
	assert_false(gw_observed_converged(&o));
	o.not_converged = false;
	o.state = GW_STATE_STOPPED;
	o.restart = GW_RESTART_ALWAYS;
	assert_false(gw_observed_converged(&o));
	o.restart = GW_RESTART_ON_FAILURE;
	assert_true(gw_observed_converged(&o));
	o.state = GW_STATE_FAILED;
	assert_false(gw_observed_converged(&o));
	o.state = GW_STATE_PENDING;
	assert_false(gw_observed_converged(&o));
}

static void test_fresh_node_creates_in_dependency_order(void **state)
{
	(void)state;
	struct gw_resource *r[3] = { proc("a", "dependsOn: [c]"), proc("b", NULL), proc("c", "dependsOn: [b]") };
	struct gw_plan plan;
	struct gw_error err;
	assert_int_equal(gw_plan_build(&plan, r, 3, NULL, 0, &prune_on, &err), 0);
	assert_int_equal(plan.n, 3);
	assert_string_equal(plan.v[0].name, "b");
	assert_string_equal(plan.v[1].name, "c");
	assert_string_equal(plan.v[2].name, "a");
	assert_int_equal(plan.count[GW_ACTION_CREATE], 3);
	assert_int_equal(plan.v[2].nafter, 1);
	assert_int_equal(plan.v[2].after[0], 1);
	gw_plan_free(&plan);
	for (int i = 0; i < 3; i++)
		gw_resource_free(r[i]);
}

static void test_unchanged_and_update_with_field_changes(void **state)
{
	(void)state;
	struct gw_resource *old = proc("web", "env: {V: \"1\", KEEP: x}");
	struct gw_resource *same = proc("db", NULL);
	struct gw_resource *desired[2] = { proc("web", "env: {V: \"2\", KEEP: x}, workingDir: /srv"), same };
	struct gw_observed obs[2];
	struct gw_plan plan;
	struct gw_error err;
	observe(&obs[0], old, GW_STATE_RUNNING);
	observe(&obs[1], same, GW_STATE_RUNNING);
	assert_int_equal(gw_plan_build(&plan, desired, 2, obs, 2, &prune_on, &err), 0);
	assert_int_equal(plan.count[GW_ACTION_UPDATE], 1);
	assert_int_equal(plan.count[GW_ACTION_NONE], 1);
	const struct gw_action *a = plan.v[0].type == GW_ACTION_UPDATE ? &plan.v[0] : &plan.v[1];
	assert_string_equal(a->name, "web");
	assert_int_equal(a->nchanges, 2);
	assert_string_equal(a->changes[0].path, "spec.env.V");
	assert_string_equal(a->changes[0].from, "\"1\"");
	assert_string_equal(a->changes[0].to, "\"2\"");
	assert_string_equal(a->changes[1].path, "spec.workingDir");
	assert_null(a->changes[1].from);
	assert_string_equal(a->changes[1].to, "\"/srv\"");

	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	gw_plan_render_text(f, &plan);
	fclose(f);
	assert_string_equal(text,
			    "  ~ Process/web          update  env.V: \"1\" -> \"2\", workingDir: (unset) -> \"/srv\"\n"
			    "Plan: 0 to create, 1 to update, 0 to delete, 0 to restart, 1 unchanged.\n");
	free(text);

	struct gw_plan_meta meta = { .commit = "0123456789012345678901234567890123456789",
				     .ref = "main",
				     .node = "n1" };
	char *js = gw_plan_render_json(&plan, &meta, NULL, NULL);
	json_t *root = json_loads(js, 0, NULL);
	assert_non_null(root);
	json_t *ch = json_array_get(json_object_get(json_array_get(json_object_get(root, "actions"), 0), "changes"), 0);
	assert_string_equal(json_string_value(json_object_get(ch, "path")), "spec.env.V");
	assert_string_equal(json_string_value(json_object_get(ch, "from")), "1");
	assert_string_equal(json_string_value(json_object_get(ch, "to")), "2");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "summary"), "update")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "summary"), "unchanged")), 1);
	assert_string_equal(json_string_value(json_object_get(root, "node")), "n1");
	assert_int_equal(json_array_size(json_object_get(root, "errors")), 0);
	json_decref(root);
	free(js);

	gw_plan_free(&plan);
	gw_observed_clear(&obs[0]);
	gw_observed_clear(&obs[1]);
	gw_resource_free(old);
	gw_resource_free(desired[0]);
	gw_resource_free(same);
}

static void test_prune_and_no_prune(void **state)
{
	(void)state;
	struct gw_resource *keep = proc("keep", NULL), *gone = proc("gone", NULL);
	struct gw_observed obs[2];
	struct gw_plan plan;
	struct gw_error err;
	struct gw_plan_opts no_prune = { .prune = false };
	observe(&obs[0], keep, GW_STATE_RUNNING);
	observe(&obs[1], gone, GW_STATE_RUNNING);
	assert_int_equal(gw_plan_build(&plan, &keep, 1, obs, 2, &prune_on, &err), 0);
	assert_int_equal(plan.count[GW_ACTION_DELETE], 1);
	assert_string_equal(plan.v[1].name, "gone");
	assert_null(plan.v[1].desired);
	gw_plan_free(&plan);
	assert_int_equal(gw_plan_build(&plan, &keep, 1, obs, 2, &no_prune, &err), 0);
	assert_int_equal(plan.count[GW_ACTION_DELETE], 0);
	assert_int_equal(plan.n, 1);
	gw_plan_free(&plan);
	gw_observed_clear(&obs[0]);
	gw_observed_clear(&obs[1]);
	gw_resource_free(keep);
	gw_resource_free(gone);
}

static void test_empty_commit_is_refused_without_allow_empty(void **state)
{
	(void)state;
	struct gw_resource *r = proc("x", NULL);
	struct gw_observed o;
	struct gw_plan plan = { 0 };
	struct gw_error err = { 0 };
	struct gw_plan_opts allow = { .prune = true, .allow_empty = true };
	observe(&o, r, GW_STATE_RUNNING);
	assert_int_equal(gw_plan_build(&plan, NULL, 0, &o, 1, &prune_on, &err), -ECANCELED);
	assert_non_null(strstr(err.msg, "--allow-empty"));
	assert_null(plan.v); /* out-param untouched */
	memset(&err, 0, sizeof(err));
	assert_int_equal(gw_plan_build(&plan, NULL, 0, &o, 1, &allow, &err), 0);
	assert_int_equal(plan.count[GW_ACTION_DELETE], 1);
	assert_int_equal(err.code, 0); /* not filled on success */
	gw_plan_free(&plan);
	/* a fresh node with an empty commit has nothing to refuse */
	assert_int_equal(gw_plan_build(&plan, NULL, 0, NULL, 0, &prune_on, &err), 0);
	assert_int_equal(plan.n, 0);
	gw_plan_free(&plan);
	gw_observed_clear(&o);
	gw_resource_free(r);
}

static enum gw_action_type plan_one(const char *extra, enum gw_state st, enum gw_health h, const char *detail)
{
	struct gw_resource *r = proc("w", extra);
	struct gw_observed o;
	struct gw_plan plan;
	struct gw_error err;
	observe(&o, r, st);
	o.health = h;
	snprintf(o.detail, sizeof(o.detail), "%s", detail);
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	enum gw_action_type t = plan.v[0].type;
	if (t == GW_ACTION_RESTART)
		assert_string_equal(plan.v[0].reason, detail);
	gw_plan_free(&plan);
	gw_observed_clear(&o);
	gw_resource_free(r);
	return t;
}

static void test_restart_policy(void **state)
{
	(void)state;
	assert_int_equal(plan_one(NULL, GW_STATE_STOPPED, GW_HEALTH_UNKNOWN, "exited with status 0"),
			 GW_ACTION_RESTART);
	assert_int_equal(plan_one(NULL, GW_STATE_FAILED, GW_HEALTH_UNKNOWN, "killed by signal 9"), GW_ACTION_RESTART);
	assert_int_equal(plan_one(NULL, GW_STATE_RUNNING, GW_HEALTH_UNHEALTHY, "health check failed"),
			 GW_ACTION_RESTART);
	assert_int_equal(plan_one(NULL, GW_STATE_RUNNING, GW_HEALTH_HEALTHY, ""), GW_ACTION_NONE);
	assert_int_equal(plan_one("restart: on-failure", GW_STATE_FAILED, GW_HEALTH_UNKNOWN, "exited with status 1"),
			 GW_ACTION_RESTART);
	assert_int_equal(plan_one("restart: on-failure", GW_STATE_STOPPED, GW_HEALTH_UNKNOWN, "exited with status 0"),
			 GW_ACTION_NONE);
	assert_int_equal(plan_one("restart: never", GW_STATE_FAILED, GW_HEALTH_UNKNOWN, "killed by signal 9"),
			 GW_ACTION_NONE);
	assert_int_equal(plan_one(NULL, GW_STATE_PENDING, GW_HEALTH_UNKNOWN, "not started"), GW_ACTION_CREATE);
}

static void test_deletes_wait_for_their_dependents(void **state)
{
	(void)state;
	struct gw_resource *db = proc("db", NULL), *app = proc("app", "dependsOn: [db]");
	struct gw_observed obs[2];
	struct gw_plan plan;
	struct gw_error err;
	struct gw_plan_opts allow = { .prune = true, .allow_empty = true };
	observe(&obs[0], db, GW_STATE_RUNNING);
	observe(&obs[1], app, GW_STATE_RUNNING);
	obs[1].depends_on.v = gw_xcalloc(2, sizeof(char *));
	obs[1].depends_on.v[0] = gw_xstrdup("db");
	obs[1].depends_on.n = 1;
	assert_int_equal(gw_plan_build(&plan, NULL, 0, obs, 2, &allow, &err), 0);
	assert_int_equal(plan.n, 2);
	const struct gw_action *dba = !strcmp(plan.v[0].name, "db") ? &plan.v[0] : &plan.v[1];
	const struct gw_action *appa = dba == &plan.v[0] ? &plan.v[1] : &plan.v[0];
	assert_int_equal(dba->nafter, 1);
	assert_ptr_equal(&plan.v[dba->after[0]], appa);
	assert_int_equal(appa->nafter, 0);
	gw_plan_free(&plan);
	gw_observed_clear(&obs[0]);
	gw_observed_clear(&obs[1]);
	gw_resource_free(db);
	gw_resource_free(app);
}

/* A record with the given dependsOn, as read back from the state file. */
static void observe_named(struct gw_observed *o, const char *name, const char *const *deps, size_t ndeps)
{
	memset(o, 0, sizeof(*o));
	o->kind = GW_KIND_PROCESS;
	o->name = gw_xstrdup(name);
	memset(o->spec_hash, 'a', 64);
	o->state = GW_STATE_PENDING;
	o->depends_on.v = gw_xcalloc(ndeps + 1, sizeof(char *));
	for (size_t i = 0; i < ndeps; i++)
		o->depends_on.v[o->depends_on.n++] = gw_xstrdup(deps[i]);
}

/* Every action waits only for actions placed before it: no wait cycle. */
static void assert_waits_point_back(const struct gw_plan *plan)
{
	for (size_t i = 0; i < plan->n; i++)
		for (size_t k = 0; k < plan->v[i].nafter; k++)
			assert_true(plan->v[i].after[k] < i);
}

static void test_deletion_cycle_is_broken_by_name(void **state)
{
	(void)state;
	/* records a -> b (an old commit) and b -> a (a later one, kept by
	 * --no-prune), c -> a outside the cycle */
	const char *on_b[] = { "b" }, *on_a[] = { "a" };
	struct gw_observed obs[3];
	struct gw_plan plan;
	struct gw_error err;
	struct gw_plan_opts allow = { .prune = true, .allow_empty = true };
	observe_named(&obs[0], "b", on_a, 1);
	observe_named(&obs[1], "a", on_b, 1);
	observe_named(&obs[2], "c", on_a, 1);
	assert_int_equal(gw_plan_build(&plan, NULL, 0, obs, 3, &allow, &err), 0);
	assert_int_equal(plan.n, 3);
	assert_int_equal(plan.count[GW_ACTION_DELETE], 3);
	/* c depends on a and nothing depends on c: it goes first; then the
	 * cycle a <-> b is broken by name: a, then b (which waits for a) */
	assert_string_equal(plan.v[0].name, "c");
	assert_int_equal(plan.v[0].nafter, 0);
	assert_string_equal(plan.v[1].name, "a");
	assert_int_equal(plan.v[1].nafter, 1);
	assert_int_equal(plan.v[1].after[0], 0);
	assert_string_equal(plan.v[1].reason,
			    "dependency cycle among deletions (recorded dependsOn): deleted first by name");
	assert_string_equal(plan.v[2].name, "b");
	assert_int_equal(plan.v[2].nafter, 1);
	assert_int_equal(plan.v[2].after[0], 1);
	assert_waits_point_back(&plan);
	gw_plan_free(&plan);
	for (int i = 0; i < 3; i++)
		gw_observed_clear(&obs[i]);
}

static void test_repeated_recorded_dependency_is_one_wait(void **state)
{
	(void)state;
	/* x depends on y 50 times in its record (the heap overflow of issue 11) */
	const char *deps[50];
	for (int i = 0; i < 50; i++)
		deps[i] = "y";
	struct gw_observed obs[2];
	struct gw_plan plan;
	struct gw_error err;
	struct gw_plan_opts allow = { .prune = true, .allow_empty = true };
	observe_named(&obs[0], "x", deps, 50);
	observe_named(&obs[1], "y", NULL, 0);
	assert_int_equal(gw_plan_build(&plan, NULL, 0, obs, 2, &allow, &err), 0);
	assert_int_equal(plan.n, 2);
	assert_string_equal(plan.v[0].name, "x");
	assert_int_equal(plan.v[0].nafter, 0);
	assert_string_equal(plan.v[1].name, "y");
	assert_int_equal(plan.v[1].nafter, 1);
	assert_int_equal(plan.v[1].after[0], 0);
	gw_plan_free(&plan);
	gw_observed_clear(&obs[0]);
	gw_observed_clear(&obs[1]);
}

static void test_kind_change_is_delete_plus_create(void **state)
{
	(void)state;
	struct gw_resource *p = proc("svc", NULL);
	struct gw_resource *c =
		parse_one("apiVersion: gitward/v1\nkind: Container\nmetadata: {name: svc}\nspec: {image: busybox}\n");
	struct gw_observed o;
	struct gw_plan plan;
	struct gw_error err;
	observe(&o, p, GW_STATE_RUNNING);
	assert_int_equal(gw_plan_build(&plan, &c, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.count[GW_ACTION_CREATE], 1);
	assert_int_equal(plan.count[GW_ACTION_DELETE], 1);
	gw_plan_free(&plan);
	gw_observed_clear(&o);
	gw_resource_free(p);
	gw_resource_free(c);
}

static void test_node_selector(void **state)
{
	(void)state;
	struct gw_resource *r = proc("x", "nodeSelector: {role: edge, node: n1}");
	struct gw_strmap labels = { 0 };
	gw_strmap_set(&labels, "node", "n1");
	assert_false(gw_plan_selects(r, &labels));
	gw_strmap_set(&labels, "role", "edge");
	assert_true(gw_plan_selects(r, &labels));
	gw_strmap_set(&labels, "node", "n2");
	assert_false(gw_plan_selects(r, &labels));
	gw_strmap_free(&labels);
	gw_resource_free(r);
}

static void test_errors_render_in_json(void **state)
{
	(void)state;
	struct gw_diags d;
	gw_diags_init(&d);
	gw_diags_add(&d, "web.yaml", 12, 7, "spec.ports[0]: expected \"HOST:PORT\"");
	char *js = gw_plan_render_json(NULL, NULL, &d, NULL);
	json_t *root = json_loads(js, 0, NULL);
	json_t *e = json_array_get(json_object_get(root, "errors"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "file")), "web.yaml");
	assert_int_equal(json_integer_value(json_object_get(e, "line")), 12);
	assert_int_equal(json_integer_value(json_object_get(e, "column")), 7);
	assert_true(json_is_null(json_object_get(root, "commit")));
	assert_int_equal(json_array_size(json_object_get(root, "actions")), 0);
	json_decref(root);
	free(js);
	gw_diags_free(&d);
}

static void test_untrusted_text_is_escaped_in_text_and_kept_in_json(void **state)
{
	(void)state;
	struct gw_action a = { .type = GW_ACTION_RESTART, .kind = GW_KIND_PROCESS, .name = "web" };
	struct gw_plan plan = { .v = &a, .n = 1 };
	struct gw_diags d;
	struct gw_error fatal = { .code = -EIO };
	char *text = NULL;
	size_t len = 0;

	plan.count[GW_ACTION_RESTART] = 1;
	snprintf(a.reason, sizeof(a.reason), "backend said: x\ninfo pass done");
	FILE *f = open_memstream(&text, &len);
	gw_plan_render_text(f, &plan);
	fclose(f);
	assert_string_equal(text,
			    "  ! Process/web          restart  backend said: x\\ninfo pass done\n"
			    "Plan: 0 to create, 0 to update, 0 to delete, 1 to restart, 0 unchanged.\n");
	free(text);

	gw_diags_init(&d);
	gw_diags_add(&d, "b\xff.yaml", 4, 30, "spec.bogus: unknown field");
	snprintf(fatal.file, sizeof(fatal.file), "c\xfe.yaml");
	snprintf(fatal.msg, sizeof(fatal.msg), "cannot read \xc3");
	char *js = gw_plan_render_json(&plan, NULL, &d, &fatal);
	json_t *root = json_loads(js, 0, NULL);
	json_t *errors = json_object_get(root, "errors");
	assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "file")), "b\\xff.yaml");
	assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 1), "file")), "c\\xfe.yaml");
	assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 1), "message")),
			    "cannot read \\xc3");
	json_t *act = json_array_get(json_object_get(root, "actions"), 0);
	assert_string_equal(json_string_value(json_object_get(act, "reason")), "backend said: x\ninfo pass done");
	json_decref(root);
	free(js);
	gw_diags_free(&d);
}

/* Text from a pull request (names, values, reasons, the node) reaches the
 * bot's comment as literal text: no live link, image, autolink or emphasis,
 * no HTML, no raw bidi override or zero-width character. */
static void test_markdown_shows_untrusted_text_literally(void **state)
{
	(void)state;
	static const char evil[] = "[x](http://evil) ![i](http://evil/i.png) `a``b` *e* www.evil.com u@evil.com "
				   "\xe2\x80\xae"
				   "gpj.exe \xe2\x80\x8b"
				   "z <b>";
	char from[400], to[400];
	snprintf(from, sizeof(from), "\"%s\"", evil);
	snprintf(to, sizeof(to), "[\"%s\"]", evil);
	struct gw_change ch = { .path = "spec.user", .from = from, .to = to };
	struct gw_action a[2] = {
		{ .type = GW_ACTION_UPDATE, .kind = GW_KIND_PROCESS, .name = evil, .changes = &ch, .nchanges = 1 },
		{ .type = GW_ACTION_RESTART, .kind = GW_KIND_PROCESS, .name = "web" },
	};
	struct gw_plan plan = { .v = a, .n = 2 };
	plan.count[GW_ACTION_UPDATE] = plan.count[GW_ACTION_RESTART] = 1;
	snprintf(a[1].reason, sizeof(a[1].reason), "%s", evil);
	struct gw_plan_node nd = { .node = evil, .plan = &plan };
	char *md = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&md, &len);
	gw_plan_render_markdown(f, "T", &nd, 1, NULL, NULL);
	fclose(f);
	/* every untrusted copy (node twice, name twice, reason, from, to) */
	const char *p = md;
	int copies = 0;
	while ((p = strstr(p,
			   "&#91;x](http&#58;//evil) !&#91;i](http&#58;//evil/i.png) &#96;a&#96;&#96;b&#96; "
			   "&#42;e&#42; www&#46;evil.com u&#64;evil.com &#92;u202egpj.exe &#92;u200bz &lt;b&gt;")) !=
	       NULL) {
		copies++;
		p++;
	}
	if (copies != 7)
		fail_msg("%d literal copies, want 7:\n%s", copies, md);
	/* nothing live anywhere: no link or image opener, no autolink, no raw
	 * format character, no tag but ours */
	assert_null(strstr(md, "["));
	assert_null(strstr(md, "://"));
	assert_null(strstr(md, "www."));
	assert_null(strstr(md, "@"));
	assert_null(strstr(md, "`"));
	assert_null(strstr(md, "*e"));
	assert_null(strstr(md, "\xe2\x80\xae"));
	assert_null(strstr(md, "\xe2\x80\x8b"));
	assert_null(strstr(md, "<b>"));
	free(md);
}

/* The restart policy's clock: 1 s, 2 s, 4 s ... doubling up to the 5 min
 * cap, and a crash streak forgotten only after 60 s up. */
static void test_restart_backoff_steps_cap_and_reset(void **state)
{
	(void)state;
	assert_int_equal(gw_apply__backoff_ms(0), 1000);
	assert_int_equal(gw_apply__backoff_ms(1), 1000);
	assert_int_equal(gw_apply__backoff_ms(2), 2000);
	assert_int_equal(gw_apply__backoff_ms(3), 4000);
	assert_int_equal(gw_apply__backoff_ms(4), 8000);
	assert_int_equal(gw_apply__backoff_ms(9), 256000);
	assert_int_equal(gw_apply__backoff_ms(10), 300000); /* 512 s, capped */
	assert_int_equal(gw_apply__backoff_ms(22), 300000);
	assert_int_equal(gw_apply__backoff_ms(1000000), 300000); /* no overflow */

	struct gw_observed o = { .state = GW_STATE_RUNNING, .started_at = 1000, .crash_streak = 5 };
	assert_int_equal(gw_apply__crash_streak(&o, 1059), 5); /* 59 s up: still looping */
	assert_int_equal(gw_apply__crash_streak(&o, 1060), 0); /* 60 s up: reset */
	o.state = GW_STATE_STOPPED;
	assert_int_equal(gw_apply__crash_streak(&o, 5000), 5); /* down: never reset */
	o.state = GW_STATE_RUNNING;
	o.started_at = 0;
	assert_int_equal(gw_apply__crash_streak(&o, 5000), 5); /* start unknown */
}

static void test_names_of_states_health_and_actions(void **state)
{
	(void)state;
	enum gw_state st = GW_STATE_RUNNING;
	enum gw_health h = GW_HEALTH_UNKNOWN;
	assert_string_equal(gw_state_to_string(GW_STATE_FAILED), "failed");
	assert_string_equal(gw_state_to_string((enum gw_state)42), "pending");
	assert_int_equal(gw_state_from_string(&st, "stopped"), 0);
	assert_int_equal(st, GW_STATE_STOPPED);
	assert_int_equal(gw_state_from_string(&st, "Running"), -EINVAL);
	assert_int_equal(st, GW_STATE_STOPPED); /* untouched */
	assert_string_equal(gw_health_to_string(GW_HEALTH_UNHEALTHY), "unhealthy");
	assert_string_equal(gw_health_to_string((enum gw_health)9), "unknown");
	assert_int_equal(gw_health_from_string(&h, "unhealthy"), 0);
	assert_int_equal(h, GW_HEALTH_UNHEALTHY);
	assert_int_equal(gw_health_from_string(&h, "sick"), -EINVAL);
	assert_string_equal(gw_action_to_string(GW_ACTION_RESTART), "restart");
	assert_string_equal(gw_action_to_string((enum gw_action_type)7), "none");
	gw_plan_free(NULL); /* a no-op */
}

static void test_canonical_diff_shapes(void **state)
{
	(void)state;
	struct gw_change *c;
	size_t n;
	assert_int_equal(gw_plan_diff_canonical(&c, &n, "{", "{}"), -EINVAL);
	assert_null(c);
	assert_int_equal(n, 0);
	assert_int_equal(gw_plan_diff_canonical(&c, &n, "{}", "not json"), -EINVAL);
	/* no spec on either side: nothing */
	assert_int_equal(gw_plan_diff_canonical(&c, &n, "{\"kind\":\"X\"}", "{\"kind\":\"X\"}"), 0);
	assert_int_equal(n, 0);
	free(c);
	/* an object that became a scalar, a key gone, a key new, nested keys,
	 * and more changes than the first allocation holds */
	const char *from = "{\"spec\":{\"a\":{\"x\":1},\"gone\":\"g\",\"n\":{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,"
			   "\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"same\":[1]}}}";
	const char *to = "{\"spec\":{\"a\":5,\"new\":true,\"n\":{\"k1\":10,\"k2\":20,\"k3\":30,\"k4\":40,"
			 "\"k5\":50,\"k6\":60,\"k7\":70,\"k8\":80,\"same\":[1]}}}";
	assert_int_equal(gw_plan_diff_canonical(&c, &n, from, to), 0);
	assert_int_equal(n, 11);
	assert_string_equal(c[0].path, "spec.a");
	assert_string_equal(c[0].from, "{\"x\":1}");
	assert_string_equal(c[0].to, "5");
	assert_string_equal(c[1].path, "spec.gone");
	assert_string_equal(c[1].from, "\"g\"");
	assert_null(c[1].to);
	assert_string_equal(c[2].path, "spec.n.k1");
	assert_string_equal(c[2].from, "1");
	assert_string_equal(c[2].to, "10");
	assert_string_equal(c[9].path, "spec.n.k8");
	assert_string_equal(c[10].path, "spec.new");
	assert_null(c[10].from);
	assert_string_equal(c[10].to, "true");
	for (size_t i = 0; i < n; i++) {
		free(c[i].path);
		free(c[i].from);
		free(c[i].to);
	}
	free(c);
	/* a whole spec that appeared */
	assert_int_equal(gw_plan_diff_canonical(&c, &n, "{}", "{\"spec\":{\"a\":1}}"), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c[0].path, "spec");
	assert_null(c[0].from);
	assert_string_equal(c[0].to, "{\"a\":1}");
	free(c[0].path);
	free(c[0].to);
	free(c);
}

/* An update of a record without its spec says which hashes differ; a
 * pending record without a detail is "not started"; the restart reasons
 * without a detail say why. */
static void test_reasons_without_details(void **state)
{
	(void)state;
	struct gw_resource *r = proc("w", NULL);
	struct gw_observed o;
	struct gw_plan plan;
	struct gw_error err;
	char want[160];

	observe(&o, r, GW_STATE_RUNNING);
	free(o.canonical);
	o.canonical = NULL;
	memset(o.spec_hash, 'b', 64);
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.v[0].type, GW_ACTION_UPDATE);
	assert_int_equal(plan.v[0].nchanges, 0);
	snprintf(want, sizeof(want), "spec hash bbbbbbbbbbbb -> %.12s", r->spec_hash);
	assert_string_equal(plan.v[0].reason, want);
	gw_plan_free(&plan);
	gw_observed_clear(&o);

	observe(&o, r, GW_STATE_PENDING);
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.v[0].type, GW_ACTION_CREATE);
	assert_string_equal(plan.v[0].reason, "not started");
	gw_plan_free(&plan);
	gw_observed_clear(&o);

	observe(&o, r, GW_STATE_STOPPED);
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.v[0].type, GW_ACTION_RESTART);
	assert_string_equal(plan.v[0].reason, "not running");
	gw_plan_free(&plan);
	gw_observed_clear(&o);

	observe(&o, r, GW_STATE_RUNNING);
	o.health = GW_HEALTH_UNHEALTHY;
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.v[0].type, GW_ACTION_RESTART);
	assert_string_equal(plan.v[0].reason, "unhealthy");
	gw_plan_free(&plan);
	gw_observed_clear(&o);
	gw_resource_free(r);

	/* on-failure: unhealthy while running restarts, unhealthy and stopped does not */
	assert_int_equal(plan_one("restart: on-failure", GW_STATE_RUNNING, GW_HEALTH_UNHEALTHY, "probe failed"),
			 GW_ACTION_RESTART);
	assert_int_equal(plan_one("restart: on-failure", GW_STATE_STOPPED, GW_HEALTH_UNHEALTHY, "x"), GW_ACTION_NONE);
	assert_int_equal(plan_one("restart: never", GW_STATE_RUNNING, GW_HEALTH_UNHEALTHY, "x"), GW_ACTION_NONE);
}

/* A plan rendered as text and as markdown (one node, "n1"). */
static void render_both(char **text, char **md, const struct gw_plan *plan)
{
	size_t len = 0;
	FILE *f = open_memstream(text, &len);
	gw_plan_render_text(f, plan);
	fclose(f);
	struct gw_plan_node nd = { .node = "n1", .plan = plan };
	f = open_memstream(md, &len);
	gw_plan_render_markdown(f, "T", &nd, 1, NULL, NULL);
	fclose(f);
}

/* The canonical form folds defaults away: a field set back to its default
 * shows that default, not "(unset)"; a field without a default stays
 * "(unset)"; the JSON keeps null (left out). */
static void test_a_field_back_to_its_default_shows_the_default(void **state)
{
	(void)state;
	struct gw_resource *old = proc("web",
				       "restart: on-failure, stopSignal: INT, healthCheck: {tcp: {address: "
				       "\"127.0.0.1:1\"}, interval: 20s}, user: www");
	struct gw_resource *now = proc("web", "healthCheck: {tcp: {address: \"127.0.0.1:1\"}}");
	struct gw_observed o;
	struct gw_plan plan;
	struct gw_error err;
	char *text = NULL, *md = NULL;

	observe(&o, old, GW_STATE_RUNNING);
	assert_int_equal(gw_plan_build(&plan, &now, 1, &o, 1, &prune_on, &err), 0);
	render_both(&text, &md, &plan);
	assert_string_equal(text,
			    "  ~ Process/web          update  healthCheck.interval: \"20s\" -> \"10s\", restart: "
			    "\"on-failure\" -> \"always\", stopSignal: \"INT\" -> \"TERM\", user: \"www\" -> "
			    "(unset)\n"
			    "Plan: 0 to create, 1 to update, 0 to delete, 0 to restart, 0 unchanged.\n");
	assert_non_null(strstr(md,
			       "| Process/web | <code>restart</code> | <code>\"on-failure\"</code> | "
			       "<code>\"always\"</code> |\n"));
	assert_non_null(
		strstr(md, "| Process/web | <code>user</code> | <code>\"www\"</code> | <code>(unset)</code> |\n"));
	char *js = gw_plan_render_json(&plan, NULL, NULL, NULL);
	assert_non_null(strstr(js, "{\"path\":\"spec.restart\",\"from\":\"on-failure\",\"to\":null}"));
	free(js);
	free(text);
	free(md);
	gw_plan_free(&plan);
	gw_observed_clear(&o);
	gw_resource_free(old);
	gw_resource_free(now);

	/* the defaults of other kinds and types, from the schema table */
	static const struct {
		enum gw_kind kind;
		const char *path, *want;
	} cases[] = {
		{ GW_KIND_VM, "spec.memory", "\"512Mi\"" },	   { GW_KIND_VM, "spec.cpus", "1" },
		{ GW_KIND_VM, "spec.network", "\"user\"" },	   { GW_KIND_CONTAINER, "spec.network", "\"bridge\"" },
		{ GW_KIND_CONTAINER, "spec.pull", "\"missing\"" }, { GW_KIND_PROCESS, "spec.healthCheck.retries", "3" },
		{ GW_KIND_CONTAINER, "spec.memory", NULL },	   { GW_KIND_PROCESS, "spec.env.X", NULL },
		{ GW_KIND_PROCESS, "spec.image", NULL },	   { GW_KIND_PROCESS, "spec.healthCheck", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d = gw_resource_default_json(cases[i].kind, cases[i].path);
		if (cases[i].want)
			assert_string_equal(d, cases[i].want);
		else
			assert_null(d);
		free(d);
	}
}

/* A create shows what the resource runs, exposes and its environment, with
 * secret-looking env values masked, in text and in markdown. */
static void test_a_create_shows_its_main_fields(void **state)
{
	(void)state;
	struct gw_resource *r[2] = {
		proc("web", "env: {MODE: prod, API_TOKEN: abc}, workingDir: /srv"),
		parse_one("apiVersion: gitward/v1\nkind: Container\nmetadata: {name: api}\nspec: {image: "
			  "\"localhost/api:1.4\", ports: [\"127.0.0.1:8081:80\"], command: [/bin/api]}\n"),
	};
	struct gw_plan plan;
	struct gw_error err;
	char *text = NULL, *md = NULL;

	assert_non_null(r[1]);
	assert_int_equal(gw_plan_build(&plan, r, 2, NULL, 0, &prune_on, &err), 0);
	render_both(&text, &md, &plan);
	assert_string_equal(text,
			    "  + Container/api        create  image: \"localhost/api:1.4\", command: "
			    "[\"/bin/api\"], ports: [\"127.0.0.1:8081:80\"]\n"
			    "  + Process/web          create  command: [\"/bin/true\"], env: "
			    "{\"API_TOKEN\":\"***\",\"MODE\":\"prod\"}\n"
			    "Plan: 2 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n");
	assert_non_null(strstr(md,
			       "| + | Container/api | create | image <code>\"localhost/api:1.4\"</code>, command "
			       "<code>&#91;\"/bin/api\"]</code>, ports <code>&#91;\"127.0.0.1:8081:80\"]</code> |\n"));
	assert_non_null(strstr(md,
			       "| + | Process/web | create | command <code>&#91;\"/bin/true\"]</code>, env "
			       "<code>{\"API_TOKEN\":\"&#42;&#42;&#42;\",\"MODE\":\"prod\"}</code> |\n"));
	assert_null(strstr(md, "abc"));
	free(text);
	free(md);
	gw_plan_free(&plan);
	gw_resource_free(r[0]);
	gw_resource_free(r[1]);
}

/* An envFiles file whose content changed restarts a running workload with
 * the path as the reason, never a value or digest, outside the restart
 * policy's backoff; it re-runs nothing that has stopped for good, leaves a
 * down one to its restart policy, and a spec change stays an update. */
static enum gw_action_type plan_env(const char *extra, enum gw_state st, const char *detail, bool same_spec,
				    struct gw_plan *plan, struct gw_observed *o, struct gw_resource **r)
{
	struct gw_error err;
	*r = proc("web", extra);
	observe(o, *r, st);
	snprintf(o->detail, sizeof(o->detail), "%s", detail);
	gw_strmap_set(&o->env_digests, "/etc/web/app.env",
		      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	o->env_changed = gw_xstrdup("/etc/web/app.env");
	if (!same_spec)
		memset(o->spec_hash, 'b', 64);
	assert_int_equal(gw_plan_build(plan, r, 1, o, 1, &prune_on, &err), 0);
	return plan->v[0].type;
}

static void plan_env_free(struct gw_plan *plan, struct gw_observed *o, struct gw_resource *r)
{
	gw_plan_free(plan);
	gw_observed_clear(o);
	gw_resource_free(r);
}

static void test_changed_env_file_restarts_a_running_workload(void **state)
{
	(void)state;
	struct gw_resource *r;
	struct gw_observed o;
	struct gw_plan plan;
	const char *extra = "envFiles: [/etc/web/app.env, /etc/web/b.env]";

	assert_int_equal(plan_env(extra, GW_STATE_RUNNING, "", true, &plan, &o, &r), GW_ACTION_RESTART);
	assert_string_equal(plan.v[0].reason, "envFile /etc/web/app.env changed");
	assert_true(plan.v[0].deliberate); /* no backoff, no crash streak */
	assert_int_equal(plan.v[0].nchanges, 0);
	char *text = NULL, *js;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	gw_plan_render_text(f, &plan);
	fclose(f);
	assert_string_equal(text,
			    "  ! Process/web          restart  envFile /etc/web/app.env changed\n"
			    "Plan: 0 to create, 0 to update, 0 to delete, 1 to restart, 0 unchanged.\n");
	js = gw_plan_render_json(&plan, NULL, NULL, NULL);
	assert_non_null(strstr(js, "\"reason\":\"envFile /etc/web/app.env changed\""));
	assert_null(strstr(js, "0123456789abcdef"));
	free(js);
	free(text);
	plan_env_free(&plan, &o, r);

	/* finished under a policy that lets it stay stopped: it holds no value */
	assert_int_equal(plan_env("restart: on-failure", GW_STATE_STOPPED, "exited with status 0", true, &plan, &o, &r),
			 GW_ACTION_NONE);
	plan_env_free(&plan, &o, r);
	/* down: the policy's restart, with its reason (it reads the file anew) */
	assert_int_equal(plan_env(NULL, GW_STATE_FAILED, "exited with status 1", true, &plan, &o, &r),
			 GW_ACTION_RESTART);
	assert_string_equal(plan.v[0].reason, "exited with status 1");
	assert_false(plan.v[0].deliberate);
	plan_env_free(&plan, &o, r);
	/* a spec change replaces it anyway: an update with its field changes */
	assert_int_equal(plan_env(NULL, GW_STATE_RUNNING, "", false, &plan, &o, &r), GW_ACTION_UPDATE);
	plan_env_free(&plan, &o, r);
	/* digests recorded, content unchanged (observe set no env_changed): nothing to do */
	r = proc("web", extra);
	observe(&o, r, GW_STATE_RUNNING);
	gw_strmap_set(&o.env_digests, "/etc/web/app.env",
		      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	struct gw_error err;
	assert_int_equal(gw_plan_build(&plan, &r, 1, &o, 1, &prune_on, &err), 0);
	assert_int_equal(plan.v[0].type, GW_ACTION_NONE);
	plan_env_free(&plan, &o, r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_node_creates_in_dependency_order),
		cmocka_unit_test(test_unchanged_and_update_with_field_changes),
		cmocka_unit_test(test_prune_and_no_prune),
		cmocka_unit_test(test_empty_commit_is_refused_without_allow_empty),
		cmocka_unit_test(test_restart_policy),
		cmocka_unit_test(test_deletes_wait_for_their_dependents),
		cmocka_unit_test(test_deletion_cycle_is_broken_by_name),
		cmocka_unit_test(test_repeated_recorded_dependency_is_one_wait),
		cmocka_unit_test(test_kind_change_is_delete_plus_create),
		cmocka_unit_test(test_node_selector),
		cmocka_unit_test(test_observed_converged),
		cmocka_unit_test(test_errors_render_in_json),
		cmocka_unit_test(test_untrusted_text_is_escaped_in_text_and_kept_in_json),
		cmocka_unit_test(test_markdown_shows_untrusted_text_literally),
		cmocka_unit_test(test_restart_backoff_steps_cap_and_reset),
		cmocka_unit_test(test_names_of_states_health_and_actions),
		cmocka_unit_test(test_canonical_diff_shapes),
		cmocka_unit_test(test_reasons_without_details),
		cmocka_unit_test(test_a_field_back_to_its_default_shows_the_default),
		cmocka_unit_test(test_a_create_shows_its_main_fields),
		cmocka_unit_test(test_changed_env_file_restarts_a_running_workload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
