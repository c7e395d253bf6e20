/* The schema of every kind, and the walk that turns parsed YAML nodes into
 * typed resources while collecting every problem with its position. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"
#include "gitward/manifest_cache.h"
#include "gitward/prof.h"
#include "gitward/schema.h"

#define OFF(f) offsetof(struct gw_resource, f)
#define KP GW_KMASK(GW_KIND_PROCESS)
#define KC GW_KMASK(GW_KIND_CONTAINER)
#define KV GW_KMASK(GW_KIND_VM)

static const struct gw_enum_name restart_names[] = {
	{ "always", GW_RESTART_ALWAYS }, { "on-failure", GW_RESTART_ON_FAILURE }, { "never", GW_RESTART_NEVER }, { 0 }
};
static const struct gw_enum_name container_net_names[] = {
	{ "none", GW_NET_NONE }, { "bridge", GW_NET_BRIDGE }, { "host", GW_NET_HOST }, { 0 }
};
static const struct gw_enum_name vm_net_names[] = { { "none", GW_NET_NONE }, { "user", GW_NET_USER }, { 0 } };
static const struct gw_enum_name pull_names[] = {
	{ "missing", GW_PULL_MISSING }, { "never", GW_PULL_NEVER }, { "always", GW_PULL_ALWAYS }, { 0 }
};
static const struct gw_enum_name accel_names[] = {
	{ "auto", GW_ACCEL_AUTO }, { "kvm", GW_ACCEL_KVM }, { "tcg", GW_ACCEL_TCG }, { 0 }
};

const char *gw_enum_name(const struct gw_enum_name *e, int value)
{
	for (; e && e->name; e++)
		if (e->value == value)
			return e->name;
	return "?";
}

const char *gw_check_name(const char *v)
{
	size_t n = strlen(v);
	const char *want = "a name of lowercase letters, digits and '-', starting and ending alphanumeric, "
			   "at most 63 characters";
	if (n == 0 || n > 63)
		return want;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return want;
	}
	if (v[0] == '-' || v[n - 1] == '-')
		return want;
	return NULL;
}

static const char *check_label_key(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 63 || !isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("-_./", v[i]))
			goto bad;
	return NULL;
bad:
	return "a label key of letters, digits, '-', '_', '.', '/', at most 63 characters";
}

static const char *check_label_value(const char *v)
{
	size_t n = strlen(v);
	if (n > 63)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("-_.", v[i]))
			goto bad;
	return NULL;
bad:
	return "a label value of letters, digits, '-', '_', '.', at most 63 characters";
}

static const char *check_env_key(const char *v)
{
	if (!*v || !(isalpha((unsigned char)v[0]) || v[0] == '_'))
		goto bad;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			goto bad;
	return NULL;
bad:
	return "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
}

static const char *check_abs_path(const char *v)
{
	return v[0] == '/' ? NULL : "an absolute path";
}

/* A file of the repository, as git names it in a tree: relative to the
 * root, no empty, "." or ".." parts. */
static const char *check_repo_path(const char *v)
{
	const char *want = "a path relative to the repository root (no leading /, no . or .. parts)";
	const char *p = v;
	if (!*v || strlen(v) > 4096)
		return want;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return want;
		p += n;
		if (*p == '/' && !*++p)
			return want;
	}
	return NULL;
}

static const char *check_portmap(const char *v)
{
	struct gw_portmap pm;
	return gw_portmap_parse(&pm, v) == 0 ? NULL : "\"[IP:]HOSTPORT:PORT[/tcp|udp]\" with ports 1-65535";
}

static const char *check_volume(const char *v)
{
	const char *want = "\"/HOST/PATH:/CONTAINER/PATH[:ro|:rw]\"";
	const char *c1 = strchr(v, ':');
	if (!c1 || v[0] != '/' || c1[1] != '/')
		return want;
	const char *c2 = strchr(c1 + 1, ':');
	if (c2 && strcmp(c2, ":ro") != 0 && strcmp(c2, ":rw") != 0)
		return want;
	if ((c2 ? (size_t)(c2 - c1) : strlen(c1)) < 2)
		return want;
	return NULL;
}

static const char *check_http_url(const char *v)
{
	if (strncmp(v, "http://", 7) != 0 || !v[7] || strchr(v, ' '))
		return "an http:// URL";
	return NULL;
}

static const char *check_hostport(const char *v)
{
	const char *colon = strrchr(v, ':');
	const char *want = "\"HOST:PORT\"";
	if (!colon || colon == v || !colon[1])
		return want;
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (*end || errno || port < 1 || port > 65535)
		return want;
	return NULL;
}

static const char *check_image(const char *v)
{
	if (!*v)
		return "an image reference";
	for (const char *p = v; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return "an image reference without spaces";
	return NULL;
}

static const char *check_user(const char *v)
{
	if (!*v || strlen(v) > 32)
		return "a user name or numeric uid";
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
			return "a user name or numeric uid";
	return NULL;
}

static const struct gw_field health_http[] = { { .name = "url",
						 .type = GW_F_STR,
						 .offset = OFF(health_http_url),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .check = check_http_url },
					       { 0 } };
static const struct gw_field health_tcp[] = { { .name = "address",
						.type = GW_F_STR,
						.offset = OFF(health_tcp_address),
						.kinds = GW_K_ALL,
						.required_kinds = GW_K_ALL,
						.check = check_hostport },
					      { 0 } };
static const struct gw_field health_exec[] = { { .name = "command",
						 .type = GW_F_STRLIST,
						 .offset = OFF(health_exec_command),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .flags = GW_FF_NONEMPTY },
					       { 0 } };
static const struct gw_field health_fields[] = {
	{ .name = "http", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_http },
	{ .name = "tcp", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_tcp },
	{ .name = "exec", .type = GW_F_OBJECT, .kinds = KP | KC, .sub = health_exec },
	{ .name = "interval",
	  .type = GW_F_DURATION,
	  .offset = OFF(health_interval_ms),
	  .kinds = GW_K_ALL,
	  .min = 100,
	  .max = 86400000,
	  .defval = 10000 },
	{ .name = "timeout",
	  .type = GW_F_DURATION,
	  .offset = OFF(health_timeout_ms),
	  .kinds = GW_K_ALL,
	  .min = 100,
	  .max = 3600000,
	  .defval = 2000 },
	{ .name = "retries",
	  .type = GW_F_INT,
	  .offset = OFF(health_retries),
	  .kinds = GW_K_ALL,
	  .min = 1,
	  .max = 100,
	  .defval = 3 },
	{ 0 }
};
static const struct gw_field limits_fields[] = { { .name = "openFiles",
						   .type = GW_F_INT,
						   .offset = OFF(limit_open_files),
						   .kinds = KP,
						   .min = 1,
						   .max = 1 << 24 },
						 { .name = "processes",
						   .type = GW_F_INT,
						   .offset = OFF(limit_processes),
						   .kinds = KP,
						   .min = 1,
						   .max = 1 << 22 },
						 { .name = "memory",
						   .type = GW_F_SIZE,
						   .offset = OFF(limit_memory),
						   .kinds = KP,
						   .min = 1 << 20,
						   .max = INT64_MAX },
						 { 0 } };

const struct gw_field gw_schema_metadata[] = { { .name = "name",
						 .type = GW_F_STR,
						 .offset = OFF(name),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .check = gw_check_name },
					       { .name = "labels",
						 .type = GW_F_STRMAP,
						 .offset = OFF(labels),
						 .kinds = GW_K_ALL,
						 .flags = GW_FF_NOHASH,
						 .check = check_label_value,
						 .key_check = check_label_key },
					       { 0 } };

const struct gw_field gw_schema_spec[] = {
	{ .name = "nodeSelector",
	  .type = GW_F_STRMAP,
	  .offset = OFF(node_selector),
	  .kinds = GW_K_ALL,
	  .flags = GW_FF_NOHASH,
	  .check = check_label_value,
	  .key_check = check_label_key },
	{ .name = "dependsOn",
	  .type = GW_F_STRLIST,
	  .offset = OFF(depends_on),
	  .kinds = GW_K_ALL,
	  .check = gw_check_name },
	{ .name = "restart", .type = GW_F_ENUM, .offset = OFF(restart), .kinds = GW_K_ALL, .enums = restart_names },
	{ .name = "healthCheck", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_fields },
	{ .name = "command",
	  .type = GW_F_STRLIST,
	  .offset = OFF(command),
	  .kinds = KP | KC,
	  .required_kinds = KP,
	  .flags = GW_FF_NONEMPTY },
	{ .name = "env", .type = GW_F_STRMAP, .offset = OFF(env), .kinds = KP | KC, .key_check = check_env_key },
	{ .name = "envFiles",
	  .type = GW_F_STRLIST,
	  .offset = OFF(env_files),
	  .kinds = KP | KC,
	  .check = check_abs_path },
	{ .name = "secretEnvFiles",
	  .type = GW_F_STRLIST,
	  .offset = OFF(secret_env_files),
	  .kinds = KP | KC,
	  .check = check_repo_path },
	{ .name = "workingDir", .type = GW_F_STR, .offset = OFF(working_dir), .kinds = KP, .check = check_abs_path },
	{ .name = "user", .type = GW_F_STR, .offset = OFF(user), .kinds = KP, .check = check_user },
	{ .name = "stopSignal", .type = GW_F_SIGNAL, .offset = OFF(stop_signal), .kinds = KP | KC, .defval = SIGTERM },
	{ .name = "stopTimeout",
	  .type = GW_F_DURATION,
	  .offset = OFF(stop_timeout_ms),
	  .kinds = GW_K_ALL,
	  .min = 0,
	  .max = 3600000,
	  .defval = 10000 },
	{ .name = "limits", .type = GW_F_OBJECT, .kinds = KP, .sub = limits_fields },
	{ .name = "image",
	  .type = GW_F_STR,
	  .offset = OFF(image),
	  .kinds = KC,
	  .required_kinds = KC,
	  .check = check_image },
	{ .name = "pull", .type = GW_F_ENUM, .offset = OFF(pull), .kinds = KC, .enums = pull_names },
	{ .name = "ports", .type = GW_F_STRLIST, .offset = OFF(ports), .kinds = KC, .check = check_portmap },
	{ .name = "volumes", .type = GW_F_STRLIST, .offset = OFF(volumes), .kinds = KC, .check = check_volume },
	{ .name = "network",
	  .type = GW_F_ENUM,
	  .offset = OFF(network),
	  .kinds = KC,
	  .enums = container_net_names,
	  .defval = GW_NET_BRIDGE },
	{ .name = "network",
	  .type = GW_F_ENUM,
	  .offset = OFF(network),
	  .kinds = KV,
	  .enums = vm_net_names,
	  .defval = GW_NET_USER },
	{ .name = "memory", .type = GW_F_SIZE, .offset = OFF(memory), .kinds = KC, .min = 4 << 20, .max = INT64_MAX },
	{ .name = "memory",
	  .type = GW_F_SIZE,
	  .offset = OFF(memory),
	  .kinds = KV,
	  .min = 16 << 20,
	  .max = 1LL << 40,
	  .defval = 512LL << 20 },
	{ .name = "cpus", .type = GW_F_CPUS, .offset = OFF(cpus_milli), .kinds = KC, .min = 10, .max = 1024000 },
	{ .name = "cpus", .type = GW_F_INT, .offset = OFF(vcpus), .kinds = KV, .min = 1, .max = 256, .defval = 1 },
	{ .name = "kernel", .type = GW_F_STR, .offset = OFF(kernel), .kinds = KV, .check = check_abs_path },
	{ .name = "initrd", .type = GW_F_STR, .offset = OFF(initrd), .kinds = KV, .check = check_abs_path },
	{ .name = "cmdline", .type = GW_F_STR, .offset = OFF(cmdline), .kinds = KV },
	{ .name = "disk", .type = GW_F_STR, .offset = OFF(disk), .kinds = KV, .check = check_abs_path },
	{ .name = "forwards", .type = GW_F_STRLIST, .offset = OFF(forwards), .kinds = KV, .check = check_portmap },
	{ .name = "accel", .type = GW_F_ENUM, .offset = OFF(accel), .kinds = KV, .enums = accel_names },
	{ 0 }
};

/* ---- the walk ---- */

struct vctx {
	struct gw_diags *diags;
	const char *file;
	enum gw_kind kind;
	int errors;
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
		return -1;
	}
	return 0;
}

static int run_check(struct vctx *c, gw_fcheck check, const struct gw_ynode *v, const char *path)
{
	char buf[80];
	const char *want = check ? check(v->value) : NULL;
	if (want) {
		verr(c, v, path, "expected %s, got %s", want, shown(buf, sizeof(buf), v));
		return -1;
	}
	return 0;
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

static void parse_field(struct vctx *c, struct gw_resource *r, const struct gw_field *f, const struct gw_ynode *v,
			const char *path)
{
	char buf[80], sub[256];

	switch (f->type) {
	case GW_F_STR: {
		if (scalar_string(c, v, path, "a string") < 0)
			return;
		if (memchr(v->value, '\0', v->len) || run_check(c, f->check, v, path) < 0)
			return;
		char **p = slot(r, f);
		free(*p);
		*p = gw_xstrdup(v->value);
		return;
	}
	case GW_F_STRLIST: {
		if (v->type != GW_YNODE_SEQ) {
			verr(c, v, path, "expected a list of strings, got %s", node_desc(v));
			return;
		}
		if ((f->flags & GW_FF_NONEMPTY) && v->n == 0) {
			verr(c, v, path, "expected a non-empty list");
			return;
		}
		struct gw_strlist *l = slot(r, f);
		gw_strlist_free(l);
		l->v = gw_xcalloc(v->n + 1, sizeof(char *));
		for (size_t i = 0; i < v->n; i++) {
			const struct gw_ynode *it = v->items[i];
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			if (scalar_string(c, it, sub, "a string") < 0 || run_check(c, f->check, it, sub) < 0)
				continue;
			if (is_null(it) && it->len == 0) {
				verr(c, it, sub, "expected a string, got null");
				continue;
			}
			l->v[l->n++] = gw_xstrdup(it->value);
		}
		if ((f->flags & GW_FF_NONEMPTY) && l->n > 0 && !l->v[0][0])
			verr(c, v->items[0], path, "first element must not be empty");
		return;
	}
	case GW_F_STRMAP: {
		if (v->type != GW_YNODE_MAP) {
			verr(c, v, path, "expected a mapping of strings, got %s", node_desc(v));
			return;
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
				continue;
			}
			if (val->type != GW_YNODE_SCALAR) {
				verr(c, val, sub, "expected a string, got %s", node_desc(val));
				continue;
			}
			if (run_check(c, f->check, val, sub) < 0)
				continue;
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
		return;
	}
	case GW_F_DURATION:
	case GW_F_SIZE:
	case GW_F_INT:
	case GW_F_CPUS: {
		int64_t n = 0;
		int rc;
		const char *want;
		if (f->type == GW_F_DURATION) {
			want = "a duration like 500ms, 10s, 1m30s or 2h";
		} else if (f->type == GW_F_SIZE) {
			want = "a size like 512Mi, 2Gi or 1000000";
		} else if (f->type == GW_F_CPUS) {
			want = "a number of CPUs like 0.5 or 2";
		} else {
			want = "an integer";
		}
		if (scalar_string(c, v, path, want) < 0)
			return;
		if (f->type == GW_F_DURATION) {
			rc = gw_duration_parse(&n, v->value);
		} else if (f->type == GW_F_SIZE) {
			rc = gw_size_parse(&n, v->value);
		} else if (f->type == GW_F_CPUS) {
			/* decimal with at most 3 fraction digits, kept as milli-CPUs */
			const char *p = v->value;
			int64_t whole = 0, frac = 0, scale = 100;
			rc = isdigit((unsigned char)*p) ? 0 : -EINVAL;
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
			n = whole * 1000 + frac;
		} else {
			char *end;
			errno = 0;
			long long ll = strtoll(v->value, &end, 10);
			rc = (!v->len || *end || errno || !v->plain) ? -EINVAL : 0;
			n = ll;
		}
		if (rc < 0) {
			verr(c, v, path, "expected %s, got %s", want, shown(buf, sizeof(buf), v));
			return;
		}
		if (f->max > 0 && (n < f->min || n > f->max)) {
			char lo[32], hi[32];
			if (f->type == GW_F_DURATION) {
				gw_duration_format(lo, sizeof(lo), f->min);
				gw_duration_format(hi, sizeof(hi), f->max);
			} else if (f->type == GW_F_SIZE) {
				gw_size_format(lo, sizeof(lo), f->min);
				gw_size_format(hi, sizeof(hi), f->max);
			} else if (f->type == GW_F_CPUS) {
				snprintf(lo, sizeof(lo), "%g", f->min / 1000.0);
				snprintf(hi, sizeof(hi), "%g", f->max / 1000.0);
			} else {
				snprintf(lo, sizeof(lo), "%lld", (long long)f->min);
				snprintf(hi, sizeof(hi), "%lld", (long long)f->max);
			}
			if (f->max == INT64_MAX)
				verr(c, v, path, "must be at least %s, got %s", lo, shown(buf, sizeof(buf), v));
			else
				verr(c, v, path, "must be between %s and %s, got %s", lo, hi,
				     shown(buf, sizeof(buf), v));
			return;
		}
		*(int64_t *)slot(r, f) = n == f->defval ? 0 : n;
		return;
	}
	case GW_F_ENUM: {
		if (scalar_string(c, v, path, "a string") < 0)
			return;
		for (const struct gw_enum_name *e = f->enums; e->name; e++) {
			if (strcmp(e->name, v->value) == 0) {
				*(int *)slot(r, f) = e->value == f->defval ? 0 : e->value;
				return;
			}
		}
		struct gw_strbuf sb;
		gw_strbuf_init(&sb);
		for (const struct gw_enum_name *e = f->enums; e->name; e++)
			gw_strbuf_printf(&sb, "%s%s", e == f->enums ? "" : (e[1].name ? ", " : " or "), e->name);
		verr(c, v, path, "expected one of %s, got %s", sb.s, shown(buf, sizeof(buf), v));
		gw_strbuf_free(&sb);
		return;
	}
	case GW_F_SIGNAL: {
		int sig;
		if (scalar_string(c, v, path, "a signal name") < 0)
			return;
		if (gw_signal_from_string(&sig, v->value) < 0) {
			verr(c, v, path, "expected a signal name like TERM, INT, QUIT, HUP, KILL, got %s",
			     shown(buf, sizeof(buf), v));
			return;
		}
		*(int *)slot(r, f) = sig == f->defval ? 0 : sig;
		return;
	}
	case GW_F_OBJECT:
		if (v->type != GW_YNODE_MAP) {
			verr(c, v, path, "expected a mapping, got %s", node_desc(v));
			return;
		}
		walk_table(c, r, f->sub, v, path);
		return;
	}
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
	const struct gw_ynode *deps = lookup(spec, "dependsOn");
	if (r->depends_on.n && deps && deps->type == GW_YNODE_SEQ && deps->n == r->depends_on.n) {
		/* where each entry is written, for problems found across the commit */
		r->depends_on_pos = gw_xcalloc(deps->n, sizeof(*r->depends_on_pos));
		for (size_t i = 0; i < deps->n; i++) {
			r->depends_on_pos[i][0] = deps->items[i]->line;
			r->depends_on_pos[i][1] = deps->items[i]->col;
		}
	}
	if (r->depends_on.n > 1) { /* repeats, by sorting: the list may hold 100,000 names */
		const struct gw_ynode *d = lookup(spec, "dependsOn");
		struct pair *names = gw_xcalloc(r->depends_on.n, sizeof(*names));
		for (size_t i = 0; i < r->depends_on.n; i++)
			names[i] = (struct pair){ .k = r->depends_on.v[i], .idx = i };
		qsort(names, r->depends_on.n, sizeof(*names), pair_cmp);
		for (size_t i = 1; i < r->depends_on.n; i++) {
			size_t at = names[i].idx;
			if (strcmp(names[i].k, names[i - 1].k) == 0)
				verr(c, d && d->type == GW_YNODE_SEQ && at < d->n ? d->items[at] : spec,
				     "spec.dependsOn", "\"%s\" is listed twice", names[i].k);
		}
		free(names);
	}
}

/* Validate one document; on success *out is a finalized resource. */
static int validate_doc(struct gw_resource **out, struct gw_diags *diags, struct gw_manifest_set *invalid_names,
			const char *file, const struct gw_ynode *doc)
{
	struct vctx c = { .diags = diags, .file = file };
	char buf[80];
	const struct gw_ynode *api = NULL, *kind = NULL, *meta = NULL, *spec = NULL;

	*out = NULL;
	if (doc->type != GW_YNODE_MAP) {
		verr(&c, doc, "", "expected a mapping with apiVersion, kind, metadata and spec, got %s",
		     node_desc(doc));
		return -1;
	}
	for (size_t i = 0; i + 1 < doc->n; i += 2) {
		const struct gw_ynode *k = doc->items[i], *v = doc->items[i + 1];
		if (k->type != GW_YNODE_SCALAR)
			continue;
		if (strcmp(k->value, "apiVersion") == 0)
			api = v;
		else if (strcmp(k->value, "kind") == 0)
			kind = v;
		else if (strcmp(k->value, "metadata") == 0)
			meta = v;
		else if (strcmp(k->value, "spec") == 0)
			spec = v;
		else if (strcmp(k->value, "status") == 0)
			verr(&c, k, k->value, "unknown field (status is reported by gitward, not declared)");
		else
			verr(&c, k, k->value, "unknown field");
	}
	if (!api || is_null(api))
		verr(&c, doc, "apiVersion", "required field is missing");
	else if (api->type != GW_YNODE_SCALAR || strcmp(api->value, "gitward/v1") != 0)
		verr(&c, api, "apiVersion", "expected \"gitward/v1\", got %s", shown(buf, sizeof(buf), api));
	if (!kind || is_null(kind)) {
		verr(&c, doc, "kind", "required field is missing");
		return -1;
	}
	if (kind->type != GW_YNODE_SCALAR || gw_kind_from_string(&c.kind, kind->value) < 0) {
		verr(&c, kind, "kind", "expected one of Process, Container or VM, got %s",
		     shown(buf, sizeof(buf), kind));
		return -1;
	}

	struct gw_resource *r = gw_xcalloc(1, sizeof(*r));
	r->kind = c.kind;
	r->file = gw_xstrdup(file);
	r->line = doc->line;
	r->col = doc->col;
	if (!meta || is_null(meta))
		verr(&c, doc, "metadata", "required field is missing");
	else if (meta->type != GW_YNODE_MAP)
		verr(&c, meta, "metadata", "expected a mapping, got %s", node_desc(meta));
	else
		walk_table(&c, r, gw_schema_metadata, meta, "metadata");
	if (!spec || is_null(spec)) {
		verr(&c, doc, "spec", "required field is missing");
	} else if (spec->type != GW_YNODE_MAP) {
		verr(&c, spec, "spec", "expected a mapping, got %s", node_desc(spec));
	} else {
		walk_table(&c, r, gw_schema_spec, spec, "spec");
		check_kind_rules(&c, r, spec);
	}
	if (c.errors) {
		if (r->name && invalid_names) {
			struct gw_manifest_set *set = invalid_names;
			if (set->invalid_names.n == set->invalid_cap) {
				set->invalid_cap = set->invalid_cap ? set->invalid_cap * 2 : 16;
				set->invalid_names.v =
					gw_xrealloc(set->invalid_names.v, set->invalid_cap * sizeof(char *));
			}
			set->invalid_names.v[set->invalid_names.n++] = r->name;
			r->name = NULL; /* now owned by set->invalid_names */
		}
		gw_resource_free(r);
		return -1;
	}
	const struct gw_ynode *name = lookup(meta, "name");
	if (name) {
		r->line = name->line;
		r->col = name->col;
	}
	gw_resource_finalize(r);
	*out = r;
	return 0;
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
	memset(set, 0, sizeof(*set));
}

int gw_manifest_set__count(struct gw_manifest_set *set, const char *file, size_t len)
{
	set->files++;
	set->bytes += len;
	if (set->files > GW_MANIFEST_FILES_MAX) {
		if (set->files == GW_MANIFEST_FILES_MAX + 1)
			gw_diags_add(&set->diags, file, 0, 0, "more than %u manifest files", GW_MANIFEST_FILES_MAX);
		return -1;
	}
	if (set->bytes > GW_MANIFEST_COMMIT_MAX) {
		if (set->bytes - len <= GW_MANIFEST_COMMIT_MAX)
			gw_diags_add(&set->diags, file, 0, 0, "manifests exceed %u bytes in total",
				     GW_MANIFEST_COMMIT_MAX);
		return -1;
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
