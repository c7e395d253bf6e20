/* The planner, pure and without I/O: match desired resources with observed
 * ones by kind and name, decide create/update/delete/restart/none, compute
 * field-level changes from the canonical forms, and order everything so
 * dependencies come first and deletions run dependents-first. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/plan.h"

static const char *const action_names[] = { "none", "create", "update", "delete", "restart" };

const char *gw_action_to_string(enum gw_action_type a)
{
	return (unsigned)a < 5 ? action_names[a] : "none";
}

bool gw_plan_selects(const struct gw_resource *r, const struct gw_strmap *node_labels)
{
	for (size_t i = 0; i < r->node_selector.n; i++) {
		const char *have = gw_strmap_get(node_labels, r->node_selector.k[i]);
		if (!have || strcmp(have, r->node_selector.v[i]) != 0)
			return false;
	}
	return true;
}

/* ---- field-level diff ---- */

struct changes {
	struct gw_change *v;
	size_t n, cap;
};

static char *dump(const json_t *v)
{
	if (!v)
		return NULL;
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void add_change(struct changes *c, const char *path, const json_t *from, const json_t *to)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 8;
		c->v = gw_xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n].path = gw_xstrdup(path);
	c->v[c->n].from = dump(from);
	c->v[c->n].to = dump(to);
	c->n++;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void diff_json(struct changes *c, const char *path, const json_t *a, const json_t *b)
{
	if (a && b && json_is_object(a) && json_is_object(b)) {
		size_t na = json_object_size(a), nb = json_object_size(b), n = 0;
		const char **keys = gw_xcalloc(na + nb + 1, sizeof(char *));
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v) keys[n++] = k;
		json_object_foreach((json_t *)b, k, v)
		{
			if (!json_object_get(a, k))
				keys[n++] = k;
		}
		qsort(keys, n, sizeof(char *), key_cmp);
		for (size_t i = 0; i < n; i++) {
			struct gw_strbuf sub;
			gw_strbuf_init(&sub);
			gw_strbuf_printf(&sub, "%s%s%s", path, *path ? "." : "", keys[i]);
			diff_json(c, sub.s, json_object_get(a, keys[i]), json_object_get(b, keys[i]));
			gw_strbuf_free(&sub);
		}
		free(keys);
		return;
	}
	if (a && b && json_equal((json_t *)a, (json_t *)b))
		return;
	if (!a && !b)
		return;
	add_change(c, path, a, b);
}

int gw_plan_diff_canonical(struct gw_change **out, size_t *out_n, const char *from, const char *to)
{
	struct changes c = { 0 };
	json_t *a = json_loads(from, 0, NULL), *b = json_loads(to, 0, NULL);

	*out = NULL;
	*out_n = 0;
	if (!a || !b) {
		json_decref(a);
		json_decref(b);
		return -EINVAL;
	}
	/* the kind never differs between matched resources; compare the spec */
	diff_json(&c, "spec", json_object_get(a, "spec"), json_object_get(b, "spec"));
	json_decref(a);
	json_decref(b);
	*out = c.v;
	*out_n = c.n;
	return 0;
}

/* ---- matching and ordering ---- */

struct entry {
	enum gw_kind kind;
	const char *name;
	size_t idx;
};

static int entry_cmp(const void *x, const void *y)
{
	const struct entry *a = x, *b = y;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return strcmp(a->name, b->name);
}

static void action_free(struct gw_action *a)
{
	for (size_t i = 0; i < a->nchanges; i++) {
		free(a->changes[i].path);
		free(a->changes[i].from);
		free(a->changes[i].to);
	}
	free(a->changes);
	free(a->after);
}

void gw_plan_free(struct gw_plan *plan)
{
	if (!plan)
		return;
	for (size_t i = 0; i < plan->n; i++)
		action_free(&plan->v[i]);
	free(plan->v);
	memset(plan, 0, sizeof(*plan));
}

static void decide(struct gw_action *a, const struct gw_resource *d, const struct gw_observed *o)
{
	a->desired = d;
	a->observed = o;
	if (!o) {
		a->type = GW_ACTION_CREATE;
		return;
	}
	if (strcmp(o->spec_hash, d->spec_hash) != 0) {
		a->type = GW_ACTION_UPDATE;
		if (o->canonical)
			gw_plan_diff_canonical(&a->changes, &a->nchanges, o->canonical, d->canonical);
		if (a->nchanges == 0)
			snprintf(a->reason, sizeof(a->reason), "spec hash %.12s -> %.12s", o->spec_hash, d->spec_hash);
		return;
	}
	if (o->state == GW_STATE_PENDING) {
		a->type = GW_ACTION_CREATE; /* recorded but never started: finish the job */
		snprintf(a->reason, sizeof(a->reason), "%s", o->detail[0] ? o->detail : "not started");
		return;
	}
	if (o->restart_requested) {
		/* replaced as for an update, outside the restart policy */
		a->type = GW_ACTION_RESTART;
		a->deliberate = true;
		snprintf(a->reason, sizeof(a->reason), "requested by gitward restart");
		return;
	}
	if (o->state == GW_STATE_RUNNING && o->env_changed) {
		/* it runs with what the file held when it started: the path only,
		 * never a value or a digest */
		a->type = GW_ACTION_RESTART;
		a->deliberate = true;
		snprintf(a->reason, sizeof(a->reason), "envFile %s changed", o->env_changed);
		return;
	}
	bool down = o->state == GW_STATE_STOPPED || o->state == GW_STATE_FAILED;
	bool restart = false;
	switch (d->restart) {
	case GW_RESTART_ALWAYS:
		restart = down || o->health == GW_HEALTH_UNHEALTHY;
		break;
	case GW_RESTART_ON_FAILURE:
		restart = o->state == GW_STATE_FAILED || (!down && o->health == GW_HEALTH_UNHEALTHY);
		break;
	case GW_RESTART_NEVER:
		restart = false;
		break;
	}
	if (restart) {
		a->type = GW_ACTION_RESTART;
		snprintf(a->reason, sizeof(a->reason), "%s",
			 o->detail[0] ? o->detail : (down ? "not running" : "unhealthy"));
	}
}

/* A min-heap of name ranks: the ready resource that sorts first goes next. */
struct heap {
	size_t *v, n;
};

static void heap_push(struct heap *h, size_t x)
{
	size_t i = h->n++;
	h->v[i] = x;
	while (i > 0 && h->v[(i - 1) / 2] > h->v[i]) {
		size_t p = (i - 1) / 2, t = h->v[p];
		h->v[p] = h->v[i];
		h->v[i] = t;
		i = p;
	}
}

static size_t heap_pop(struct heap *h)
{
	size_t top = h->v[0], i = 0;
	h->v[0] = h->v[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->n && h->v[l] < h->v[m])
			m = l;
		if (r < h->n && h->v[r] < h->v[m])
			m = r;
		if (m == i)
			break;
		size_t t = h->v[m];
		h->v[m] = h->v[i];
		h->v[i] = t;
		i = m;
	}
	return top;
}

/* Kahn's algorithm over the desired set, ties broken by name so the order is
 * stable; dependencies on resources not selected for this node are ignored. */
static void order_desired(size_t *order, struct gw_resource *const *d, size_t n, size_t **deps, size_t *ndeps)
{
	struct entry *byname = gw_xcalloc(n + 1, sizeof(*byname));
	size_t *rank = gw_xcalloc(n + 1, sizeof(size_t));
	size_t *indeg = gw_xcalloc(n + 1, sizeof(size_t));
	size_t *nrdep = gw_xcalloc(n + 1, sizeof(size_t));
	size_t **rdep = gw_xcalloc(n + 1, sizeof(size_t *));
	unsigned char *done = gw_xcalloc(n + 1, 1);
	struct heap h = { .v = gw_xcalloc(n + 1, sizeof(size_t)) };

	for (size_t i = 0; i < n; i++)
		byname[i] = (struct entry){ .kind = 0, .name = d[i]->name, .idx = i };
	qsort(byname, n, sizeof(*byname), entry_cmp);
	for (size_t j = 0; j < n; j++)
		rank[byname[j].idx] = j;
	for (size_t i = 0; i < n; i++) {
		deps[i] = gw_xcalloc(d[i]->depends_on.n + 1, sizeof(size_t));
		ndeps[i] = 0;
		for (size_t k = 0; k < d[i]->depends_on.n; k++) {
			struct entry key = { .kind = 0, .name = d[i]->depends_on.v[k] };
			struct entry *hit = bsearch(&key, byname, n, sizeof(*byname), entry_cmp);
			if (hit && hit->idx != i) {
				deps[i][ndeps[i]++] = hit->idx;
				nrdep[hit->idx]++;
			}
		}
		indeg[i] = ndeps[i];
	}
	for (size_t i = 0; i < n; i++) {
		rdep[i] = gw_xcalloc(nrdep[i] + 1, sizeof(size_t));
		nrdep[i] = 0;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < ndeps[i]; k++)
			rdep[deps[i][k]][nrdep[deps[i][k]]++] = i;
	for (size_t i = 0; i < n; i++)
		if (indeg[i] == 0)
			heap_push(&h, rank[i]);
	size_t out = 0, cursor = 0;
	while (out < n) {
		size_t pick;
		if (h.n) {
			pick = byname[heap_pop(&h)].idx;
		} else { /* a cycle, which validation rejects; keep going in name order */
			while (done[byname[cursor].idx])
				cursor++;
			pick = byname[cursor].idx;
		}
		if (done[pick])
			continue;
		done[pick] = 1;
		order[out++] = pick;
		for (size_t k = 0; k < nrdep[pick]; k++) {
			size_t t = rdep[pick][k];
			if (indeg[t] > 0 && --indeg[t] == 0 && !done[t])
				heap_push(&h, rank[t]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(rdep[i]);
	free(rdep);
	free(nrdep);
	free(rank);
	free(h.v);
	free(byname);
	free(indeg);
	free(done);
}

static int name_idx_cmp(const void *x, const void *y)
{
	const struct entry *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	if (c)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* The deletions of one plan as a graph: rank r is observed[who[r]]; deps[y]
 * lists what y depends on, rdep[x] the dependents of x (nout[x] of them),
 * indeg[x] how many of those are still to delete. */
struct del_graph {
	size_t nx;
	size_t *who;
	struct entry *byname; /* (name, rank) sorted by name */
	size_t **deps, *ndeps;
	size_t **rdep, *nout, *indeg;
};

static void del_graph_free(struct del_graph *g)
{
	for (size_t x = 0; g->deps && x < g->nx; x++)
		free(g->deps[x]);
	for (size_t x = 0; g->rdep && x < g->nx; x++)
		free(g->rdep[x]);
	free(g->rdep);
	free(g->deps);
	free(g->ndeps);
	free(g->indeg);
	free(g->nout);
	free(g->byname);
	free(g->who);
}

/* The first rank named name in byname (nx if none). */
static size_t del_graph_find(const struct del_graph *g, const char *name)
{
	size_t lo = 0, hi = g->nx;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(g->byname[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* edges y -> x (y depends on x), each counted once */
static void del_graph_edges(struct del_graph *g, const struct gw_observed *observed)
{
	size_t nx = g->nx;
	size_t *stamp = gw_xcalloc(nx + 1, sizeof(size_t));

	g->nout = gw_xcalloc(nx + 1, sizeof(size_t));
	g->deps = gw_xcalloc(nx + 1, sizeof(size_t *));
	g->ndeps = gw_xcalloc(nx + 1, sizeof(size_t));
	for (size_t y = 0; y < nx; y++) {
		const struct gw_strlist *l = &observed[g->who[y]].depends_on;
		size_t cap = l->n + 1;
		g->deps[y] = gw_xcalloc(cap, sizeof(size_t));
		for (size_t k = 0; k < l->n; k++) {
			/* first entry with that name, then every one after it */
			for (size_t lo = del_graph_find(g, l->v[k]);
			     lo < nx && strcmp(g->byname[lo].name, l->v[k]) == 0; lo++) {
				size_t x = g->byname[lo].idx;
				if (x == y || stamp[x] == y + 1)
					continue;
				stamp[x] = y + 1;
				if (g->ndeps[y] == cap) { /* one name kept by two kinds */
					cap *= 2;
					g->deps[y] = gw_xrealloc(g->deps[y], cap * sizeof(size_t));
				}
				g->deps[y][g->ndeps[y]++] = x;
				g->nout[x]++;
			}
		}
	}
	free(stamp);
}

/* dependents of x = the y with x in deps[y]: x waits until they are gone */
static void del_graph_reverse(struct del_graph *g)
{
	g->rdep = gw_xcalloc(g->nx + 1, sizeof(size_t *));
	g->indeg = gw_xcalloc(g->nx + 1, sizeof(size_t));
	for (size_t x = 0; x < g->nx; x++) {
		g->rdep[x] = gw_xcalloc(g->nout[x] + 1, sizeof(size_t));
		g->indeg[x] = g->nout[x];
		g->nout[x] = 0;
	}
	for (size_t y = 0; y < g->nx; y++)
		for (size_t k = 0; k < g->ndeps[y]; k++)
			g->rdep[g->deps[y][k]][g->nout[g->deps[y][k]]++] = y;
}

/* Append the delete action of rank x, after its dependents already placed
 * (pos: rank -> plan index + 1, 0 = not placed). */
static void place_deletion(struct gw_plan *plan, const struct gw_observed *observed, const struct del_graph *g,
			   size_t *pos, size_t x, bool broken)
{
	struct gw_action *a = &plan->v[plan->n];
	a->type = GW_ACTION_DELETE;
	a->kind = observed[g->who[x]].kind;
	a->name = observed[g->who[x]].name;
	a->observed = &observed[g->who[x]];
	a->after = gw_xcalloc(g->nout[x] + 1, sizeof(size_t));
	for (size_t k = 0; k < g->nout[x]; k++)
		if (pos[g->rdep[x][k]])
			a->after[a->nafter++] = pos[g->rdep[x][k]] - 1;
	if (broken)
		snprintf(a->reason, sizeof(a->reason),
			 "dependency cycle among deletions (recorded dependsOn): deleted first by name");
	pos[x] = ++plan->n;
}

/* Kahn's algorithm, ties by name; a cycle is broken at its first name. */
static void del_graph_place(struct del_graph *g, struct gw_plan *plan, const struct gw_observed *observed)
{
	size_t nx = g->nx;
	size_t *pos = gw_xcalloc(nx + 1, sizeof(size_t));
	struct heap h = { .v = gw_xcalloc(nx + 1, sizeof(size_t)) };
	size_t next_unplaced = 0;

	for (size_t x = 0; x < nx; x++)
		if (g->indeg[x] == 0)
			heap_push(&h, x);
	for (size_t placed = 0; placed < nx;) {
		size_t x;
		bool broken = false;
		if (h.n) {
			x = heap_pop(&h);
			if (pos[x])
				continue;
		} else { /* every remaining deletion is on a cycle or behind one: take the first by name */
			while (pos[next_unplaced])
				next_unplaced++;
			x = next_unplaced;
			broken = true;
		}
		place_deletion(plan, observed, g, pos, x, broken);
		placed++;
		/* what x depends on loses one dependent still to delete */
		for (size_t k = 0; k < g->ndeps[x]; k++) {
			size_t t = g->deps[x][k];
			if (g->indeg[t] > 0 && --g->indeg[t] == 0 && !pos[t])
				heap_push(&h, t);
		}
	}
	free(h.v);
	free(pos);
}

/* Deletions go dependents first: y, which depends on x, is deleted before x.
 * Records of resources that left Git are history, not a validated commit, and
 * may hold a cycle (a -> b from one commit, b -> a from a later one kept by
 * --no-prune) or repeat a name: the order comes from Kahn's algorithm with
 * ties and cycles broken by name, and an action only ever waits for actions
 * placed before it, so execution cannot deadlock. */
static void order_deletions(struct gw_plan *plan, const struct gw_observed *observed, const struct entry *obs,
			    size_t no, const unsigned char *matched, bool prune)
{
	struct del_graph g = { .who = gw_xcalloc(no + 1, sizeof(size_t)),
			       .byname = gw_xcalloc(no + 1, sizeof(struct entry)) };

	for (size_t j = 0; j < no; j++)
		if (!matched[obs[j].idx] && prune)
			g.who[g.nx++] = obs[j].idx;
	if (g.nx == 0)
		goto out;
	for (size_t r = 0; r < g.nx; r++)
		g.byname[r] = (struct entry){ .name = observed[g.who[r]].name, .idx = r };
	qsort(g.byname, g.nx, sizeof(*g.byname), name_idx_cmp);
	del_graph_edges(&g, observed);
	del_graph_reverse(&g);
	del_graph_place(&g, plan, observed);
out:
	del_graph_free(&g);
}

int gw_plan_build(struct gw_plan *out, struct gw_resource *const *desired, size_t nd,
		  const struct gw_observed *observed, size_t no, const struct gw_plan_opts *opts, struct gw_error *err)
{
	struct gw_plan plan = { 0 };
	struct entry *obs = gw_xcalloc(no + 1, sizeof(*obs));
	unsigned char *matched = gw_xcalloc(no + 1, 1);
	size_t *order = gw_xcalloc(nd + 1, sizeof(size_t));
	size_t **deps = gw_xcalloc(nd + 1, sizeof(size_t *));
	size_t *ndeps = gw_xcalloc(nd + 1, sizeof(size_t));
	size_t *pos = gw_xcalloc(nd + 1, sizeof(size_t)); /* desired index -> plan index + 1, 0 = not placed */

	if (nd == 0 && no > 0 && opts->prune && !opts->allow_empty) {
		free(obs);
		free(matched);
		free(order);
		free(deps);
		free(ndeps);
		free(pos);
		return gw_error_set(err, -ECANCELED,
				    "the commit declares no resource for this node; refusing to delete the %zu "
				    "resource%s gitward manages here (pass --allow-empty to allow it)",
				    no, no == 1 ? "" : "s");
	}
	for (size_t i = 0; i < no; i++)
		obs[i] = (struct entry){ .kind = observed[i].kind, .name = observed[i].name, .idx = i };
	qsort(obs, no, sizeof(*obs), entry_cmp);

	plan.v = gw_xcalloc(nd + no + 1, sizeof(*plan.v));
	order_desired(order, desired, nd, deps, ndeps);
	for (size_t k = 0; k < nd; k++) {
		size_t i = order[k];
		const struct gw_resource *d = desired[i];
		struct entry key = { .kind = d->kind, .name = d->name };
		struct entry *hit = no ? bsearch(&key, obs, no, sizeof(*obs), entry_cmp) : NULL;
		struct gw_action *a = &plan.v[plan.n];
		a->kind = d->kind;
		a->name = d->name;
		if (hit)
			matched[hit->idx] = 1;
		decide(a, d, hit ? &observed[hit->idx] : NULL);
		a->after = gw_xcalloc(ndeps[i] + 1, sizeof(size_t));
		for (size_t j = 0; j < ndeps[i]; j++) /* only actions already placed: never a wait cycle */
			if (pos[deps[i][j]])
				a->after[a->nafter++] = pos[deps[i][j]] - 1;
		pos[i] = ++plan.n;
	}
	order_deletions(&plan, observed, obs, no, matched, opts->prune);
	for (size_t i = 0; i < plan.n; i++)
		plan.count[plan.v[i].type]++;
	for (size_t i = 0; i < nd; i++)
		free(deps[i]);
	free(obs);
	free(matched);
	free(order);
	free(deps);
	free(ndeps);
	free(pos);
	*out = plan;
	return 0;
}
