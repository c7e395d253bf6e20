/* The walk that turns parsed YAML nodes into typed resources along the
 * schema tables (lib/model/schema.c), collecting every problem with its
 * position. */
#define _GNU_SOURCE
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"
#include "gitward/manifest_cache.h"
#include "gitward/prof.h"
#include "gitward/schema.h"

struct vctx {
	struct gw_diags *diags;
	const char *file;
	enum gw_kind kind;
	int errors;
	bool expanded; /* the node's values are in: "${" is a literal */
};

static void verr(struct vctx *c, const struct gw_ynode *at, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void verr(struct vctx *c, const struct gw_ynode *at, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gw_diags_add(c->diags, c->file, at ? at->line : 0, at ? at->col : 0, "%s%s%s", path ? path : "",
		     path && *path ? ": " : "", msg);
	c->errors++;
}

static const char *node_desc(const struct gw_ynode *n)
{
	switch (n->type) {
	case GW_YNODE_MAP:
		return "a mapping";
	case GW_YNODE_SEQ:
		return "a list";
	default:
		return "a scalar";
	}
}

static int is_null(const struct gw_ynode *n)
{
	if (!n)
		return 1;
	if (n->type != GW_YNODE_SCALAR || !n->plain)
		return 0;
	return n->len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
		strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0;
}

/* Quote a scalar for a message, shortened. */
static const char *shown(char *buf, size_t size, const struct gw_ynode *n)
{
	if (n->type != GW_YNODE_SCALAR)
		snprintf(buf, size, "%s", node_desc(n));
	else if (n->len > 60)
		snprintf(buf, size, "\"%.57s...\"", n->value);
	else
		snprintf(buf, size, "\"%s\"", n->value);
	return buf;
}

static const struct gw_field *find_field(const struct gw_field *table, const char *name, enum gw_kind kind,
					 int *other_kind)
{
	*other_kind = 0;
	for (const struct gw_field *f = table; f->name; f++) {
		if (strcmp(f->name, name) != 0)
			continue;
		if (f->kinds & GW_KMASK(kind))
			return f;
		*other_kind = 1;
	}
	return NULL;
}

static void *slot(struct gw_resource *r, const struct gw_field *f)
{
	return (char *)r + f->offset;
}

static int scalar_string(struct vctx *c, const struct gw_ynode *v, const char *path, const char *what)
{
	if (v->type != GW_YNODE_SCALAR) {
		verr(c, v, path, "expected %s, got %s", what, node_desc(v));
		return -EINVAL;
	}
	return 0;
}

static int run_check(struct vctx *c, gw_fcheck check, const struct gw_ynode *v, const char *path)
{
	char buf[80];
	const char *want = check ? check(v->value) : NULL;
	if (want) {
		verr(c, v, path, "expected %s, got %s", want, shown(buf, sizeof(buf), v));
		return -EINVAL;
	}
	return 0;
}

/* Node values in a string (gitward/manifest.h): their syntax is checked
 * here, the string's own check waits for the node's values. 1: it holds
 * some; 0: none; -EINVAL: reported, at the column of the "$" when the
 * scalar is on one line. */
static int values_syntax(struct vctx *c, const struct gw_ynode *v, const char *path)
{
	char msg[256];
	size_t at = 0;

	if (c->expanded || !gw_values_field(path) || !strstr(v->value, "${"))
		return 0;
	if (gw_values_expand(NULL, &at, msg, sizeof(msg), v->value, NULL) == 0)
		return 1;
	unsigned col = v->col;
	if (!memchr(v->value, '\n', v->len)) {
		col += v->plain ? 0 : 1; /* the quote */
		for (size_t i = 0; i < at; i++)
			col += ((unsigned char)v->value[i] & 0xC0) != 0x80;
	}
	gw_diags_add(c->diags, c->file, v->line, col, "%s: %s", path, msg);
	c->errors++;
	return -EINVAL;
}

static void walk_table(struct vctx *c, struct gw_resource *r, const struct gw_field *table, const struct gw_ynode *map,
		       const char *path);

/* A mapping entry or list item with its position, for sorting. */
struct pair {
	const char *k, *v;
	size_t idx;
};

static int pair_cmp(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->k, y->k);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* One function per field type: each checks the YAML value, reports what is
 * wrong (-EINVAL, a diagnostic added) or stores it in the resource. */

static int field_str(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
		     const char *path)
{
	int rc = scalar_string(c, v, path, "a string");
	if (rc < 0)
		return rc;
	if (memchr(v->value, '\0', v->len))
		return -EINVAL; /* reported by the parser */
	rc = values_syntax(c, v, path);
	if (rc == 0)
		rc = run_check(c, f->check, v, path);
	if (rc < 0)
		return rc;
	char **p = slot(r, f);
	free(*p);
	*p = gw_xstrdup(v->value);
	return 0;
}

static int field_strlist(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			 const char *path)
{
	char sub[256];
	int rc = 0;

	if (v->type != GW_YNODE_SEQ) {
		verr(c, v, path, "expected a list of strings, got %s", node_desc(v));
		return -EINVAL;
	}
	if ((f->flags & GW_FF_NONEMPTY) && v->n == 0) {
		verr(c, v, path, "expected a non-empty list");
		return -EINVAL;
	}
	struct gw_strlist *l = slot(r, f);
	gw_strlist_free(l);
	l->v = gw_xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		const struct gw_ynode *it = v->items[i];
		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		if (scalar_string(c, it, sub, "a string") < 0) {
			rc = -EINVAL;
			continue;
		}
		int vs = values_syntax(c, it, sub);
		if (vs < 0 || (vs == 0 && run_check(c, f->check, it, sub) < 0)) {
			rc = -EINVAL;
			continue;
		}
		if (is_null(it) && it->len == 0) {
			verr(c, it, sub, "expected a string, got null");
			rc = -EINVAL;
			continue;
		}
		l->v[l->n++] = gw_xstrdup(it->value);
	}
	if ((f->flags & GW_FF_NONEMPTY) && l->n > 0 && !l->v[0][0]) {
		verr(c, v->items[0], path, "first element must not be empty");
		rc = -EINVAL;
	}
	return rc;
}

static int field_strmap(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			const char *path)
{
	char sub[256];
	int rc = 0;

	if (v->type != GW_YNODE_MAP) {
		verr(c, v, path, "expected a mapping of strings, got %s", node_desc(v));
		return -EINVAL;
	}
	struct gw_strmap *m = slot(r, f);
	struct pair *ok = gw_xcalloc(v->n / 2 + 1, sizeof(*ok));
	size_t nok = 0;
	gw_strmap_free(m);
	for (size_t i = 0; i + 1 < v->n; i += 2) {
		const struct gw_ynode *k = v->items[i], *val = v->items[i + 1];
		if (k->type != GW_YNODE_SCALAR)
			continue; /* reported by the parser */
		snprintf(sub, sizeof(sub), "%s.%s", path, k->value);
		if (f->key_check && f->key_check(k->value)) {
			verr(c, k, sub, "expected %s", f->key_check(k->value));
			rc = -EINVAL;
			continue;
		}
		if (val->type != GW_YNODE_SCALAR) {
			verr(c, val, sub, "expected a string, got %s", node_desc(val));
			rc = -EINVAL;
			continue;
		}
		int vs = values_syntax(c, val, sub);
		if (vs < 0 || (vs == 0 && run_check(c, f->check, val, sub) < 0)) {
			rc = -EINVAL;
			continue;
		}
		ok[nok++] = (struct pair){ .k = k->value, .v = is_null(val) ? "" : val->value, .idx = i };
	}
	/* sorted once (inserting key by key is quadratic); a repeated
	 * key, already an error of the parser, keeps its last value */
	if (nok > 1)
		qsort(ok, nok, sizeof(*ok), pair_cmp);
	m->k = gw_xcalloc(nok + 1, sizeof(char *));
	m->v = gw_xcalloc(nok + 1, sizeof(char *));
	for (size_t i = 0; i < nok; i++) {
		if (i + 1 < nok && strcmp(ok[i].k, ok[i + 1].k) == 0)
			continue;
		m->k[m->n] = gw_xstrdup(ok[i].k);
		m->v[m->n++] = gw_xstrdup(ok[i].v);
	}
	free(ok);
	return rc;
}

/* What a number of this type looks like, for "expected ..." */
static const char *number_want(enum gw_ftype type)
{
	switch (type) {
	case GW_F_DURATION:
		return "a duration like 500ms, 10s, 1m30s or 2h";
	case GW_F_SIZE:
		return "a size like 512Mi, 2Gi or 1000000";
	case GW_F_CPUS:
		return "a number of CPUs like 0.5 or 2";
	default:
		return "an integer";
	}
}

/* A decimal with at most 3 fraction digits, kept as milli-CPUs. */
static int cpus_parse(int64_t *out, const char *p)
{
	int64_t whole = 0, frac = 0, scale = 100;
	int rc = isdigit((unsigned char)*p) ? 0 : -EINVAL;
	while (rc == 0 && isdigit((unsigned char)*p) && whole < 10000000)
		whole = whole * 10 + (*p++ - '0');
	if (rc == 0 && *p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			rc = -EINVAL;
		while (rc == 0 && isdigit((unsigned char)*p)) {
			if (scale == 0)
				rc = -EINVAL;
			else
				frac += (*p++ - '0') * scale;
			scale /= 10;
		}
	}
	if (rc == 0 && *p)
		rc = -EINVAL;
	*out = whole * 1000 + frac;
	return rc;
}

static int number_parse(int64_t *out, enum gw_ftype type, const struct gw_ynode *v)
{
	switch (type) {
	case GW_F_DURATION:
		return gw_duration_parse(out, v->value);
	case GW_F_SIZE:
		return gw_size_parse(out, v->value);
	case GW_F_CPUS:
		return cpus_parse(out, v->value);
	default: {
		char *end;
		errno = 0;
		long long ll = strtoll(v->value, &end, 10);
		*out = ll;
		return (!v->len || *end || errno || !v->plain) ? -EINVAL : 0;
	}
	}
}

/* A bound written the way the field is written. */
static void number_format(char *buf, size_t size, enum gw_ftype type, int64_t n)
{
	switch (type) {
	case GW_F_DURATION:
		gw_duration_format(buf, size, n);
		break;
	case GW_F_SIZE:
		gw_size_format(buf, size, n);
		break;
	case GW_F_CPUS:
		snprintf(buf, size, "%g", n / 1000.0);
		break;
	default:
		snprintf(buf, size, "%lld", (long long)n);
		break;
	}
}

static int field_number(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			const char *path)
{
	char buf[80], lo[32], hi[32];
	const char *want = number_want(f->type);
	int64_t n = 0;
	int rc = scalar_string(c, v, path, want);

	if (rc < 0)
		return rc;
	if (number_parse(&n, f->type, v) < 0) {
		verr(c, v, path, "expected %s, got %s", want, shown(buf, sizeof(buf), v));
		return -EINVAL;
	}
	if (f->max > 0 && (n < f->min || n > f->max)) {
		number_format(lo, sizeof(lo), f->type, f->min);
		number_format(hi, sizeof(hi), f->type, f->max);
		if (f->max == INT64_MAX)
			verr(c, v, path, "must be at least %s, got %s", lo, shown(buf, sizeof(buf), v));
		else
			verr(c, v, path, "must be between %s and %s, got %s", lo, hi, shown(buf, sizeof(buf), v));
		return -ERANGE;
	}
	*(int64_t *)slot(r, f) = n == f->defval ? 0 : n;
	return 0;
}

static int field_enum(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
		      const char *path)
{
	char buf[80];
	int rc = scalar_string(c, v, path, "a string");

	if (rc < 0)
		return rc;
	for (const struct gw_enum_name *e = f->enums; e->name; e++) {
		if (strcmp(e->name, v->value) == 0) {
			*(int *)slot(r, f) = e->value == f->defval ? 0 : e->value;
			return 0;
		}
	}
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	for (const struct gw_enum_name *e = f->enums; e->name; e++)
		gw_strbuf_printf(&sb, "%s%s", e == f->enums ? "" : (e[1].name ? ", " : " or "), e->name);
	verr(c, v, path, "expected one of %s, got %s", sb.s, shown(buf, sizeof(buf), v));
	gw_strbuf_free(&sb);
	return -EINVAL;
}

static int field_signal(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			const char *path)
{
	char buf[80];
	int sig;
	int rc = scalar_string(c, v, path, "a signal name");

	if (rc < 0)
		return rc;
	if (gw_signal_from_string(&sig, v->value) < 0) {
		verr(c, v, path, "expected a signal name like TERM, INT, QUIT, HUP, KILL, got %s",
		     shown(buf, sizeof(buf), v));
		return -EINVAL;
	}
	*(int *)slot(r, f) = sig == f->defval ? 0 : sig;
	return 0;
}

static int field_object(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			const char *path)
{
	if (v->type != GW_YNODE_MAP) {
		verr(c, v, path, "expected a mapping, got %s", node_desc(v));
		return -EINVAL;
	}
	walk_table(c, r, f->sub, v, path);
	return 0;
}

/* Free-form YAML (External's config) as JSON: mappings are objects, lists
 * arrays, scalars strings (no YAML 1.1 guessing of booleans or numbers), a
 * plain null null. Depth and size are bounded by the parser. */
static json_t *yaml_json(const struct gw_ynode *v)
{
	json_t *j;
	switch (v->type) {
	case GW_YNODE_MAP:
		j = json_object();
		for (size_t i = 0; i + 1 < v->n; i += 2)
			if (v->items[i]->type == GW_YNODE_SCALAR)
				json_object_setn_new_nocheck(j, v->items[i]->value, v->items[i]->len,
							     yaml_json(v->items[i + 1]));
		return j;
	case GW_YNODE_SEQ:
		j = json_array();
		for (size_t i = 0; i < v->n; i++)
			json_array_append_new(j, yaml_json(v->items[i]));
		return j;
	default:
		return is_null(v) ? json_null() : json_stringn_nocheck(v->value, v->len);
	}
}

static int field_json(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
		      const char *path)
{
	if (v->type != GW_YNODE_MAP) {
		verr(c, v, path, "expected a mapping, got %s", node_desc(v));
		return -EINVAL;
	}
	json_t *j = yaml_json(v);
	char **p = slot(r, f);
	free(*p);
	*p = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(j);
	return 0;
}

/* Problems are diagnostics (c->errors counts them); the result says whether
 * this field had one. */
static int parse_field(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
		       const char *path)
{
	switch (f->type) {
	case GW_F_STR:
		return field_str(c, r, f, v, path);
	case GW_F_STRLIST:
		return field_strlist(c, r, f, v, path);
	case GW_F_STRMAP:
		return field_strmap(c, r, f, v, path);
	case GW_F_DURATION:
	case GW_F_SIZE:
	case GW_F_INT:
	case GW_F_CPUS:
		return field_number(c, r, f, v, path);
	case GW_F_ENUM:
		return field_enum(c, r, f, v, path);
	case GW_F_SIGNAL:
		return field_signal(c, r, f, v, path);
	case GW_F_OBJECT:
		return field_object(c, r, f, v, path);
	case GW_F_JSON:
		return field_json(c, r, f, v, path);
	}
	assert(!"a field type without a parser");
	return -EINVAL;
}

static void walk_table(struct vctx *c, struct gw_resource *r, const struct gw_field *table, const struct gw_ynode *map,
		       const char *path)
{
	char sub[256];

	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct gw_ynode *k = map->items[i], *v = map->items[i + 1];
		int other;
		if (k->type != GW_YNODE_SCALAR)
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k->value);
		const struct gw_field *f = find_field(table, k->value, c->kind, &other);
		if (!f) {
			if (other) {
				verr(c, k, sub, "field is not valid for kind %s", gw_kind_to_string(c->kind));
				continue;
			}
			const struct gw_field *best = NULL;
			unsigned bestd = 3;
			for (const struct gw_field *t = table; t->name && !gw_diags_full(c->diags, c->file); t++) {
				unsigned d = gw_edit_distance(k->value, t->name);
				if ((t->kinds & GW_KMASK(c->kind)) && d < bestd) {
					bestd = d;
					best = t;
				}
			}
			if (best)
				verr(c, k, sub, "unknown field (did you mean \"%s\"?)", best->name);
			else
				verr(c, k, sub, "unknown field");
			continue;
		}
		if (is_null(v))
			continue; /* an explicit null is the same as leaving the field out */
		parse_field(c, r, f, v, sub);
	}
	/* required fields */
	for (const struct gw_field *f = table; f->name; f++) {
		if (!(f->required_kinds & GW_KMASK(c->kind)))
			continue;
		int found = 0;
		for (size_t i = 0; i + 1 < map->n; i += 2)
			if (map->items[i]->type == GW_YNODE_SCALAR && strcmp(map->items[i]->value, f->name) == 0 &&
			    !is_null(map->items[i + 1]))
				found = 1;
		if (!found) {
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", f->name);
			verr(c, map, sub, "required field is missing");
		}
	}
}

static const struct gw_ynode *lookup(const struct gw_ynode *map, const char *key)
{
	if (!map || map->type != GW_YNODE_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (map->items[i]->type == GW_YNODE_SCALAR && strcmp(map->items[i]->value, key) == 0)
			return map->items[i + 1];
	return NULL;
}

/* Rules that span fields. */
/* External: sources are bounded in number; where each entry is, for the
 * source's diagnostics when it resolves them against the commit. */
static void check_external_rules(struct vctx *c, struct gw_resource *r, const struct gw_ynode *spec)
{
	const struct gw_ynode *l = lookup(spec, "sources");
	if (r->sources.n > GW_SOURCES_MAX)
		verr(c, l, "spec.sources", "at most %u files, got %zu", GW_SOURCES_MAX, r->sources.n);
	if (!r->sources.n)
		return;
	r->source_files = gw_xcalloc(r->sources.n, sizeof(*r->source_files));
	for (size_t i = 0; i < r->sources.n; i++) {
		const struct gw_ynode *at = l && l->type == GW_YNODE_SEQ && i < l->n ? l->items[i] : spec;
		r->source_files[i].line = at->line;
		r->source_files[i].col = at->col;
	}
}

/* A list naming one thing twice (dependsOn, secretEnvFiles, sources) is a
 * problem at the repeat: found by sorting, as a list may hold 100,000
 * entries. */
static void check_repeats(struct vctx *c, const struct gw_ynode *spec, const char *key, const struct gw_strlist *l)
{
	if (l->n < 2)
		return;
	const struct gw_ynode *d = lookup(spec, key);
	struct pair *names = gw_xcalloc(l->n, sizeof(*names));
	char field[64];
	snprintf(field, sizeof(field), "spec.%s", key);
	for (size_t i = 0; i < l->n; i++)
		names[i] = (struct pair){ .k = l->v[i], .idx = i };
	qsort(names, l->n, sizeof(*names), pair_cmp);
	for (size_t i = 1; i < l->n; i++) {
		size_t at = names[i].idx;
		if (strcmp(names[i].k, names[i - 1].k) == 0)
			verr(c, d && d->type == GW_YNODE_SEQ && at < d->n ? d->items[at] : spec, field,
			     "\"%s\" is listed twice", names[i].k);
	}
	free(names);
}

static void check_kind_rules(struct vctx *c, struct gw_resource *r, const struct gw_ynode *spec)
{
	const struct gw_ynode *hc = lookup(spec, "healthCheck");
	if (hc && hc->type == GW_YNODE_MAP) {
		int n = (lookup(hc, "http") != NULL) + (lookup(hc, "tcp") != NULL) + (lookup(hc, "exec") != NULL);
		if (n != 1)
			verr(c, hc, "spec.healthCheck", "expected exactly one of http, tcp or exec, got %d", n);
		r->health_type = r->health_http_url ? GW_CHECK_HTTP
			: r->health_tcp_address	    ? GW_CHECK_TCP
			: r->health_exec_command.n  ? GW_CHECK_EXEC
						    : GW_CHECK_NONE;
		if (r->health_timeout_ms && r->health_interval_ms && r->health_timeout_ms > r->health_interval_ms)
			verr(c, lookup(hc, "timeout"), "spec.healthCheck.timeout", "must not exceed the interval");
	}
	if (r->kind == GW_KIND_PROCESS && r->command.n && r->command.v[0][0] && r->command.v[0][0] != '/') {
		const struct gw_ynode *cmd = lookup(spec, "command");
		verr(c, cmd && cmd->n ? cmd->items[0] : spec, "spec.command[0]",
		     "expected an absolute path to the program (argv is executed directly, no shell, no PATH search), "
		     "got \"%s\"",
		     r->command.v[0]);
	}
	if (r->kind == GW_KIND_VM) {
		if (!r->kernel && !r->disk && spec)
			verr(c, spec, "spec", "a VM needs a kernel, a disk, or both");
		if (r->initrd && !r->kernel)
			verr(c, lookup(spec, "initrd"), "spec.initrd", "needs spec.kernel");
		if (r->cmdline && !r->kernel)
			verr(c, lookup(spec, "cmdline"), "spec.cmdline", "needs spec.kernel");
		if (r->forwards.n && r->network == GW_NET_NONE)
			verr(c, lookup(spec, "forwards"), "spec.forwards", "needs network: user");
	}
	if (r->kind == GW_KIND_CONTAINER && r->ports.n && (r->network == GW_NET_NONE || r->network == GW_NET_HOST))
		verr(c, lookup(spec, "ports"), "spec.ports", "needs network: bridge (ports are not published on %s)",
		     r->network == GW_NET_NONE ? "none" : "host");
	if (r->secret_env_files.n) { /* where each entry is, for the source's diagnostics */
		const struct gw_ynode *l = lookup(spec, "secretEnvFiles");
		r->secrets = gw_xcalloc(r->secret_env_files.n, sizeof(*r->secrets));
		for (size_t i = 0; i < r->secret_env_files.n; i++) {
			const struct gw_ynode *at = l && l->type == GW_YNODE_SEQ && i < l->n ? l->items[i] : spec;
			r->secrets[i].line = at->line;
			r->secrets[i].col = at->col;
		}
	}
	if (r->kind == GW_KIND_EXTERNAL)
		check_external_rules(c, r, spec);
	const struct gw_ynode *deps = lookup(spec, "dependsOn");
	if (r->depends_on.n && deps && deps->type == GW_YNODE_SEQ && deps->n == r->depends_on.n) {
		/* where each entry is written, for problems found across the commit */
		r->depends_on_pos = gw_xcalloc(deps->n, sizeof(*r->depends_on_pos));
		for (size_t i = 0; i < deps->n; i++) {
			r->depends_on_pos[i][0] = deps->items[i]->line;
			r->depends_on_pos[i][1] = deps->items[i]->col;
		}
	}
	check_repeats(c, spec, "dependsOn", &r->depends_on);
	check_repeats(c, spec, "secretEnvFiles", &r->secret_env_files);
	check_repeats(c, spec, "sources", &r->sources);
}

/* The top-level keys of a document: apiVersion, kind, metadata, spec. */
struct doc_parts {
	const struct gw_ynode *api, *kind, *meta, *spec;
};

static void doc_split(struct doc_parts *p, struct vctx *c, const struct gw_ynode *doc)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i + 1 < doc->n; i += 2) {
		const struct gw_ynode *k = doc->items[i], *v = doc->items[i + 1];
		if (k->type != GW_YNODE_SCALAR)
			continue;
		if (strcmp(k->value, "apiVersion") == 0)
			p->api = v;
		else if (strcmp(k->value, "kind") == 0)
			p->kind = v;
		else if (strcmp(k->value, "metadata") == 0)
			p->meta = v;
		else if (strcmp(k->value, "spec") == 0)
			p->spec = v;
		else if (strcmp(k->value, "status") == 0)
			verr(c, k, k->value, "unknown field (status is reported by gitward, not declared)");
		else
			verr(c, k, k->value, "unknown field");
	}
}

/* The kind a misspelt one most likely meant ("Proccess", "vm"), or NULL. */
static const char *nearest_kind(const char *got)
{
	char a[32], b[32];
	const char *best = NULL;
	unsigned bestd = 3;
	size_t n = strlen(got);
	if (n >= sizeof(a))
		return NULL;
	for (size_t i = 0; i <= n; i++)
		a[i] = (char)tolower((unsigned char)got[i]);
	for (int k = 0; k < GW_KIND_MAX; k++) {
		const char *name = gw_kind_to_string((enum gw_kind)k);
		for (size_t i = 0; i <= strlen(name); i++)
			b[i] = (char)tolower((unsigned char)name[i]);
		unsigned d = gw_edit_distance(a, b); /* case does not count */
		if (d < bestd && d < n) {
			bestd = d;
			best = name;
		}
	}
	return best;
}

/* apiVersion and kind; without a kind nothing else can be checked. */
static int doc_kind(struct vctx *c, const struct gw_ynode *doc, const struct doc_parts *p)
{
	char buf[80];

	if (!p->api || is_null(p->api))
		verr(c, doc, "apiVersion", "required field is missing");
	else if (p->api->type != GW_YNODE_SCALAR || strcmp(p->api->value, "gitward/v1") != 0)
		verr(c, p->api, "apiVersion", "expected \"gitward/v1\", got %s", shown(buf, sizeof(buf), p->api));
	if (!p->kind || is_null(p->kind)) {
		verr(c, doc, "kind", "required field is missing");
		return -EINVAL;
	}
	if (p->kind->type != GW_YNODE_SCALAR || gw_kind_from_string(&c->kind, p->kind->value) < 0) {
		const char *near = p->kind->type == GW_YNODE_SCALAR ? nearest_kind(p->kind->value) : NULL;
		verr(c, p->kind, "kind", "expected one of Process, Container, VM or External, got %s%s%s%s",
		     shown(buf, sizeof(buf), p->kind), near ? " (did you mean \"" : "", near ? near : "",
		     near ? "\"?)" : "");
		return -EINVAL;
	}
	return 0;
}

/* metadata and spec along the schema tables, then the rules across fields. */
static void doc_fields(struct vctx *c, struct gw_resource *r, const struct gw_ynode *doc, const struct doc_parts *p)
{
	if (!p->meta || is_null(p->meta))
		verr(c, doc, "metadata", "required field is missing");
	else if (p->meta->type != GW_YNODE_MAP)
		verr(c, p->meta, "metadata", "expected a mapping, got %s", node_desc(p->meta));
	else
		walk_table(c, r, gw_schema_metadata, p->meta, "metadata");
	if (!p->spec || is_null(p->spec)) {
		verr(c, doc, "spec", "required field is missing");
	} else if (p->spec->type != GW_YNODE_MAP) {
		verr(c, p->spec, "spec", "expected a mapping, got %s", node_desc(p->spec));
	} else {
		walk_table(c, r, gw_schema_spec, p->spec, "spec");
		check_kind_rules(c, r, p->spec);
	}
}

/* The name of a refused document is still declared: dependsOn on it is not
 * reported a second time as a missing resource. */
static void keep_invalid_name(struct gw_manifest_set *set, struct gw_resource *r)
{
	if (!r->name || !set)
		return;
	if (set->invalid_names.n == set->invalid_cap) {
		set->invalid_cap = set->invalid_cap ? set->invalid_cap * 2 : 16;
		set->invalid_names.v = gw_xrealloc(set->invalid_names.v, set->invalid_cap * sizeof(char *));
	}
	set->invalid_names.v[set->invalid_names.n++] = r->name;
	r->name = NULL; /* now owned by set->invalid_names */
}

/* Validate one document; on success *out is a finalized resource, else
 * -EINVAL and the problems are in diags. */
static int validate_doc(struct gw_resource **out, struct gw_diags *diags, struct gw_manifest_set *invalid_names,
			const char *file, const struct gw_ynode *doc)
{
	struct vctx c = { .diags = diags, .file = file };
	struct doc_parts p;
	int rc;

	*out = NULL;
	if (doc->type != GW_YNODE_MAP) {
		verr(&c, doc, "", "expected a mapping with apiVersion, kind, metadata and spec, got %s",
		     node_desc(doc));
		return -EINVAL;
	}
	doc_split(&p, &c, doc);
	rc = doc_kind(&c, doc, &p);
	if (rc < 0)
		return rc;

	struct gw_resource *r = gw_xcalloc(1, sizeof(*r));
	r->kind = c.kind;
	r->file = gw_xstrdup(file);
	r->line = doc->line;
	r->col = doc->col;
	doc_fields(&c, r, doc, &p);
	if (c.errors) {
		keep_invalid_name(invalid_names, r);
		gw_resource_free(r);
		return -EINVAL;
	}
	const struct gw_ynode *name = lookup(p.meta, "name");
	if (name) {
		r->line = name->line;
		r->col = name->col;
	}
	gw_resource_finalize(r);
	*out = r;
	return 0;
}

/* ---- resources decoded from the manifest cache ---- */

/* A decoded resource goes through the validator above as if parsed: its
 * fields are turned back into the nodes a manifest would give (each table
 * field from its slot), walked with the same tables, checks and kind rules,
 * and the result must have the decoded canonical form and spec hash. */
static struct gw_ynode *ynode_new(enum gw_ynode_type type)
{
	struct gw_ynode *n = gw_xcalloc(1, sizeof(*n));
	n->type = type;
	n->line = n->col = 1;
	return n;
}

static struct gw_ynode *ynode_scalar(const char *v)
{
	struct gw_ynode *n = ynode_new(GW_YNODE_SCALAR);
	n->value = gw_xstrdup(v);
	n->len = strlen(v);
	return n; /* quoted: "" and "null" stay strings */
}

static void ynode_add(struct gw_ynode *n, struct gw_ynode *item)
{
	n->items = gw_xrealloc(n->items, (n->n + 1) * sizeof(*n->items));
	n->items[n->n++] = item;
}

static void ynode_free(struct gw_ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++)
		ynode_free(n->items[i]);
	free(n->items);
	free((char *)n->value);
	free(n);
}

/* The mapping the fields of table give for r; NULL when a slot holds what
 * no manifest could (an enum value without a name). */
static struct gw_ynode *ynode_table(const struct gw_resource *r, const struct gw_field *table, int *bad)
{
	struct gw_ynode *map = ynode_new(GW_YNODE_MAP), *v;
	char buf[64];

	for (const struct gw_field *f = table; f->name; f++) {
		const void *p = (const char *)r + f->offset;
		v = NULL;
		switch (f->type) {
		case GW_F_STR:
			if (*(char *const *)p)
				v = ynode_scalar(*(char *const *)p);
			break;
		case GW_F_STRLIST: {
			const struct gw_strlist *l = p;
			if (!l->v)
				break;
			v = ynode_new(GW_YNODE_SEQ);
			for (size_t i = 0; i < l->n; i++)
				ynode_add(v, ynode_scalar(l->v[i]));
			break;
		}
		case GW_F_STRMAP: {
			const struct gw_strmap *m = p;
			if (!m->k)
				break;
			v = ynode_new(GW_YNODE_MAP);
			for (size_t i = 0; i < m->n; i++) {
				ynode_add(v, ynode_scalar(m->k[i]));
				ynode_add(v, ynode_scalar(m->v[i] ? m->v[i] : ""));
			}
			break;
		}
		case GW_F_DURATION:
		case GW_F_SIZE:
		case GW_F_INT:
		case GW_F_CPUS:
			if (*(const int64_t *)p) {
				number_format(buf, sizeof(buf), f->type, *(const int64_t *)p);
				v = ynode_scalar(buf);
				v->plain = 1; /* a number, as written unquoted */
			}
			break;
		case GW_F_ENUM:
		case GW_F_SIGNAL: {
			int e = *(const int *)p;
			const char *name = !e	       ? NULL
				: f->type == GW_F_ENUM ? gw_enum_name(f->enums, e)
						       : gw_signal_to_string(e);
			if (e && !name)
				*bad = 1;
			if (name)
				v = ynode_scalar(name);
			break;
		}
		case GW_F_OBJECT:
			v = ynode_table(r, f->sub, bad);
			if (!v->n) {
				ynode_free(v);
				v = NULL;
			}
			break;
		case GW_F_JSON: /* free-form: copied as it is, its form checked below */
			break;
		}
		if (v) {
			ynode_add(map, ynode_scalar(f->name));
			ynode_add(map, v);
		}
	}
	return map;
}

static void copy_json_fields(struct gw_resource *to, const struct gw_resource *from, const struct gw_field *table,
			     int *bad)
{
	for (const struct gw_field *f = table; f->name; f++) {
		if (f->type == GW_F_OBJECT) {
			copy_json_fields(to, from, f->sub, bad);
		} else if (f->type == GW_F_JSON) {
			const char *j = *(char *const *)((const char *)from + f->offset);
			json_t *parsed = j ? json_loads(j, JSON_DECODE_ANY, NULL) : NULL;
			if (j && !parsed)
				*bad = 1;
			json_decref(parsed);
			char **slot_to = (char **)((char *)to + f->offset);
			free(*slot_to);
			*slot_to = j ? gw_xstrdup(j) : NULL;
		}
	}
}

int gw_manifest__check_decoded(const struct gw_resource *r)
{
	struct gw_diags diags;
	int bad = 0;

	if (r->kind >= GW_KIND_MAX || !r->name || !r->canonical)
		return -EINVAL;
	gw_diags_init(&diags);
	struct vctx c = { .diags = &diags, .file = r->file ? r->file : "", .kind = r->kind };
	struct gw_resource *s = gw_xcalloc(1, sizeof(*s));
	s->kind = r->kind;
	struct gw_ynode *meta = ynode_table(r, gw_schema_metadata, &bad);
	struct gw_ynode *spec = ynode_table(r, gw_schema_spec, &bad);
	walk_table(&c, s, gw_schema_metadata, meta, "metadata");
	walk_table(&c, s, gw_schema_spec, spec, "spec");
	check_kind_rules(&c, s, spec);
	copy_json_fields(s, r, gw_schema_spec, &bad);
	if (!c.errors && !bad) {
		gw_resource_finalize(s);
		bad = !s->canonical || strcmp(s->canonical, r->canonical) != 0 ||
			strcmp(s->spec_hash, r->spec_hash) != 0;
	}
	int rc = c.errors || bad ? -EINVAL : 0;
	ynode_free(meta);
	ynode_free(spec);
	gw_resource_free(s);
	gw_diags_free(&diags);
	return rc;
}

/* ---- per-node values ---- */

/* Put the node's values in every scalar under n (map values, list items;
 * never keys) of the fields that take them. */
static int ynode_values(struct gw_ynode *n, const char *path, const struct gw_strmap *labels, struct gw_error *err)
{
	char sub[256], msg[256];
	int rc = 0;

	if (n->type == GW_YNODE_SEQ) {
		for (size_t i = 0; i < n->n && rc == 0; i++) {
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			rc = ynode_values(n->items[i], sub, labels, err);
		}
		return rc;
	}
	if (n->type == GW_YNODE_MAP) {
		for (size_t i = 0; i + 1 < n->n && rc == 0; i += 2) {
			snprintf(sub, sizeof(sub), "%s.%s", path, n->items[i]->value);
			rc = ynode_values(n->items[i + 1], sub, labels, err);
		}
		return rc;
	}
	if (!strstr(n->value, "${") || !gw_values_field(path))
		return 0;
	char *v = NULL;
	size_t at = 0;
	rc = gw_values_expand(&v, &at, msg, sizeof(msg), n->value, labels);
	if (rc < 0) {
		size_t len = strcspn(n->value + at, "}");
		return gw_error_set(err, rc, "%.*s%s in %s: %s", (int)(len > 80 ? 80 : len), n->value + at,
				    n->value[at + len] ? "}" : "", path, msg);
	}
	free((char *)n->value);
	n->value = v; /* now owned by the node */
	n->len = strlen(v);
	return 0;
}

/* What the source resolved against the commit, and where r was declared. */
static void copy_resolved(struct gw_resource *to, const struct gw_resource *from)
{
	to->file = gw_xstrdup(from->file ? from->file : "");
	to->line = from->line;
	to->col = from->col;
	free(to->depends_on_pos);
	to->depends_on_pos = NULL;
	if (from->depends_on_pos && to->depends_on.n == from->depends_on.n) {
		to->depends_on_pos = gw_xcalloc(from->depends_on.n + 1, sizeof(*to->depends_on_pos));
		memcpy(to->depends_on_pos, from->depends_on_pos, from->depends_on.n * sizeof(*to->depends_on_pos));
	}
	for (size_t i = 0; from->secrets && to->secrets && i < to->secret_env_files.n; i++) {
		to->secrets[i] = from->secrets[i];
		to->secrets[i].bytes = from->secrets[i].bytes ? gw_bytes_ref(from->secrets[i].bytes) : NULL;
	}
	for (size_t i = 0; from->source_files && to->source_files && i < to->sources.n; i++) {
		to->source_files[i] = from->source_files[i];
		to->source_files[i].bytes =
			from->source_files[i].bytes ? gw_bytes_ref(from->source_files[i].bytes) : NULL;
	}
}

/* The values put in, then the fields walked again with their checks (a
 * port "${node.labels.port}:80" is checked as the node gives it); labels
 * NULL: a copy of r as declared, its checks waiting for a node as when it
 * was parsed. */
static int node_values(struct gw_resource **out, const struct gw_resource *r, const struct gw_strmap *labels,
		       struct gw_error *err)
{
	struct gw_diags diags;
	int bad = 0, rc = 0;

	gw_diags_init(&diags);
	struct vctx c = { .diags = &diags, .file = r->file ? r->file : "", .kind = r->kind, .expanded = !!labels };
	struct gw_resource *s = gw_xcalloc(1, sizeof(*s));
	s->kind = r->kind;
	struct gw_ynode *meta = ynode_table(r, gw_schema_metadata, &bad);
	struct gw_ynode *spec = ynode_table(r, gw_schema_spec, &bad);
	if (labels)
		rc = ynode_values(spec, "spec", labels, err);
	if (rc == 0) {
		walk_table(&c, s, gw_schema_metadata, meta, "metadata");
		walk_table(&c, s, gw_schema_spec, spec, "spec");
		check_kind_rules(&c, s, spec);
		copy_json_fields(s, r, gw_schema_spec, &bad);
		const char *node = labels ? gw_strmap_get(labels, "node") : NULL;
		if (c.errors)
			rc = gw_error_set(err, -EINVAL, "%s (with the values of node \"%s\")", diags.v[0].msg,
					  node ? node : "");
		else if (bad)
			rc = gw_error_set(err, -EINVAL, "cannot put the node's values in");
	}
	ynode_free(meta);
	ynode_free(spec);
	gw_diags_free(&diags);
	if (rc < 0) {
		gw_resource_free(s);
		return rc;
	}
	copy_resolved(s, r);
	gw_resource_finalize(s);
	*out = s;
	return 0;
}

int gw_manifest_node_values(struct gw_resource **out, const struct gw_resource *r, const struct gw_strmap *labels,
			    struct gw_error *err)
{
	struct gw_resource *f = NULL;
	struct gw_error copy_err;

	*out = NULL;
	if (!r->canonical || !strstr(r->canonical, "${"))
		return 0;
	int rc = node_values(out, r, labels, err);
	if (rc == 0)
		return 0;
	/* failed on this node only: a copy as declared carries why; it is
	 * never started (r was parsed by the same walk: it copies) */
	int copied = node_values(&f, r, NULL, &copy_err);
	assert(copied == 0);
	(void)copied;
	char msg[GW_ERROR_MSG_MAX + 64];
	snprintf(msg, sizeof(msg), "%s (%s:%u:%u)", err->msg, r->file ? r->file : "", r->line, r->col);
	snprintf(err->msg, sizeof(err->msg), "%s", msg);
	*out = f;
	return rc;
}

/* ---- sets of resources ---- */

void gw_manifest_set_init(struct gw_manifest_set *set)
{
	memset(set, 0, sizeof(*set));
	gw_diags_init(&set->diags);
}

void gw_manifest_set_free(struct gw_manifest_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		gw_resource_free(set->v[i]);
	free(set->v);
	gw_diags_free(&set->diags);
	for (size_t i = 0; i < set->invalid_names.n; i++)
		free(set->invalid_names.v[i]);
	free(set->invalid_names.v);
	gw_strmap_free(&set->skipped);
	gw_strlist_free(&set->empty);
	memset(set, 0, sizeof(*set));
}

int gw_manifest_set__count(struct gw_manifest_set *set, const char *file, size_t len)
{
	set->files++;
	set->bytes += len;
	if (set->files > GW_MANIFEST_FILES_MAX) {
		if (set->files == GW_MANIFEST_FILES_MAX + 1)
			gw_diags_add(&set->diags, file, 0, 0, "more than %u manifest files", GW_MANIFEST_FILES_MAX);
		return -E2BIG;
	}
	if (set->bytes > GW_MANIFEST_COMMIT_MAX) {
		if (set->bytes - len <= GW_MANIFEST_COMMIT_MAX)
			gw_diags_add(&set->diags, file, 0, 0, "manifests exceed %u bytes in total",
				     GW_MANIFEST_COMMIT_MAX);
		return -E2BIG;
	}
	return 0;
}

void gw_manifest_set_add_file(struct gw_manifest_set *set, const char *file, const char *data, size_t len)
{
	struct gw_arena *arena;
	struct gw_ynode **docs;
	size_t ndocs;

	if (gw_manifest_set__count(set, file, len) < 0)
		return;
	GW_PROF_BEGIN(parse);
	arena = gw_arena_new();
	gw_yaml_parse(&docs, &ndocs, arena, file, data, len, &set->diags);
	GW_PROF_END(parse, "parse");
	GW_PROF_BEGIN(validate);
	for (size_t i = 0; i < ndocs; i++) {
		struct gw_resource *r;
		if (is_null(docs[i]))
			continue; /* an empty document */
		if (validate_doc(&r, &set->diags, set, file, docs[i]) < 0)
			continue;
		if (set->n == set->cap) {
			set->cap = set->cap ? set->cap * 2 : 64;
			set->v = gw_xrealloc(set->v, set->cap * sizeof(*set->v));
		}
		set->v[set->n++] = r;
	}
	gw_arena_free(arena);
	GW_PROF_END(validate, "validate (with canonical form and hash)");
}

static int res_cmp_name(const void *a, const void *b)
{
	const struct gw_resource *x = *(struct gw_resource *const *)a, *y = *(struct gw_resource *const *)b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	c = strcmp(x->file, y->file);
	if (c)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Index of the resource called name in the name-sorted array, or n. */
static size_t find_index(struct gw_resource **v, size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(v[mid]->name, name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A cycle found at the back edge from stack[depth] to stack[start]: named in
 * full when short, else its first and last names. */
/* Reported at the dependsOn entry (index entry of the last resource on the
 * path) that closes the cycle. */
static void report_cycle(struct gw_manifest_set *set, const size_t *stack, size_t start, size_t depth, size_t entry)
{
	struct gw_resource *r = set->v[stack[depth]];
	unsigned line = r->depends_on_pos ? r->depends_on_pos[entry][0] : r->line;
	unsigned col = r->depends_on_pos ? r->depends_on_pos[entry][1] : r->col;
	struct gw_strbuf sb;
	if (gw_diags_full(&set->diags, r->file)) {
		gw_diags_add(&set->diags, r->file, line, col, "spec.dependsOn[%zu]: dependency cycle", entry);
		return;
	}
	gw_strbuf_init(&sb);
	for (size_t k = start; k <= depth; k++) {
		if (depth - start > 16 && k == start + 8) {
			gw_strbuf_printf(&sb, "(%zu more) -> ", depth - start - 16);
			k = depth - 8;
		}
		gw_strbuf_printf(&sb, "%s -> ", set->v[stack[k]]->name);
	}
	gw_strbuf_puts(&sb, set->v[stack[start]]->name);
	gw_diags_add(&set->diags, r->file, line, col, "spec.dependsOn[%zu]: dependency cycle: %s", entry, sb.s);
	gw_strbuf_free(&sb);
}

/* Depth-first search for cycles with an explicit stack (a chain may be
 * 250,000 resources long); colour 0 white, 1 grey, 2 black. */
static void find_cycles(struct gw_manifest_set *set)
{
	size_t n = set->n;
	unsigned char *colour = gw_xcalloc(n + 1, 1);
	size_t *stack = gw_xcalloc(n + 1, sizeof(size_t)); /* resource on the path */
	size_t *edge = gw_xcalloc(n + 1, sizeof(size_t)); /* next dependsOn entry to follow */
	size_t *at = gw_xcalloc(n + 1, sizeof(size_t)); /* position of a grey resource on the path */

	for (size_t root = 0; root < n; root++) {
		if (colour[root])
			continue;
		size_t depth = 0;
		stack[0] = root;
		edge[0] = 0;
		at[root] = 0;
		colour[root] = 1;
		for (;;) {
			struct gw_resource *r = set->v[stack[depth]];
			if (edge[depth] == r->depends_on.n) {
				colour[stack[depth]] = 2;
				if (depth == 0)
					break;
				depth--;
				continue;
			}
			size_t j = find_index(set->v, n, r->depends_on.v[edge[depth]++]);
			if (j == n)
				continue;
			if (colour[j] == 1) {
				report_cycle(set, stack, at[j], depth, edge[depth] - 1);
			} else if (colour[j] == 0) {
				colour[j] = 1;
				stack[++depth] = j;
				edge[depth] = 0;
				at[j] = depth;
			}
		}
	}
	free(colour);
	free(stack);
	free(edge);
	free(at);
}

void gw_manifest_set_finish(struct gw_manifest_set *set)
{
	size_t n = set->n;

	if (n > 1)
		qsort(set->v, n, sizeof(*set->v), res_cmp_name);
	/* duplicates: keep the first by (file, line), drop the others */
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && strcmp(set->v[w - 1]->name, set->v[i]->name) == 0) {
			struct gw_resource *first = set->v[w - 1], *dup = set->v[i];
			gw_diags_add(&set->diags, dup->file, dup->line, dup->col,
				     "metadata.name: duplicate name \"%s\" (first declared as %s at %s:%u:%u)",
				     dup->name, gw_kind_to_string(first->kind), first->file, first->line, first->col);
			gw_resource_free(dup);
			continue;
		}
		set->v[w++] = set->v[i];
	}
	set->n = n = w;
	if (set->invalid_names.n > 1)
		qsort(set->invalid_names.v, set->invalid_names.n, sizeof(char *), str_cmp);
	for (size_t i = 0; i < n; i++) {
		struct gw_resource *r = set->v[i];
		for (size_t d = 0; d < r->depends_on.n; d++) {
			if (strcmp(r->depends_on.v[d], r->name) == 0)
				continue; /* reported as a cycle below */
			if (find_index(set->v, n, r->depends_on.v[d]) == n &&
			    !(set->invalid_names.n &&
			      bsearch(&r->depends_on.v[d], set->invalid_names.v, set->invalid_names.n, sizeof(char *),
				      str_cmp)))
				gw_diags_add(&set->diags, r->file,
					     r->depends_on_pos ? r->depends_on_pos[d][0] : r->line,
					     r->depends_on_pos ? r->depends_on_pos[d][1] : r->col,
					     "spec.dependsOn[%zu]: \"%s\" names no resource in this commit", d,
					     r->depends_on.v[d]);
		}
	}
	find_cycles(set);
	gw_diags_sort(&set->diags);
}
