/* Typed resources: their canonical JSON (driven by the schema table, sorted
 * keys, defaults folded away) and the sha256 spec hash computed from it. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gitward/prof.h"
#include "gitward/resource.h"
#include "gitward/schema.h"
#include "gitward/util.h"

struct gw_bytes {
	atomic_size_t refs;
	size_t len;
	char data[];
};

struct gw_bytes *gw_bytes_new(const void *data, size_t len)
{
	struct gw_bytes *b = gw_xmalloc(sizeof(*b) + len + 1);
	atomic_init(&b->refs, 1);
	b->len = len;
	if (len)
		memcpy(b->data, data, len);
	b->data[len] = '\0';
	return b;
}

struct gw_bytes *gw_bytes_ref(struct gw_bytes *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

const char *gw_bytes_data(const struct gw_bytes *b)
{
	return b->data;
}

void gw_bytes_unref(struct gw_bytes *b)
{
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

static const char *const kind_names[GW_KIND_MAX] = { "Process", "Container", "VM", "External" };

const char *gw_kind_to_string(enum gw_kind k)
{
	return (unsigned)k < GW_KIND_MAX ? kind_names[k] : "?";
}

int gw_kind_from_string(enum gw_kind *out, const char *s)
{
	for (int i = 0; i < GW_KIND_MAX; i++)
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum gw_kind)i;
			return 0;
		}
	return -EINVAL;
}

const char *gw_restart_to_string(enum gw_restart r)
{
	switch (r) {
	case GW_RESTART_ON_FAILURE:
		return "on-failure";
	case GW_RESTART_NEVER:
		return "never";
	default:
		return "always";
	}
}

enum gw_restart gw_restart_from_string(const char *s)
{
	if (s && !strcmp(s, "never"))
		return GW_RESTART_NEVER;
	if (s && !strcmp(s, "on-failure"))
		return GW_RESTART_ON_FAILURE;
	return GW_RESTART_ALWAYS;
}

static const struct {
	const char *name;
	int sig;
} signals[] = { { "TERM", SIGTERM }, { "INT", SIGINT },	  { "QUIT", SIGQUIT }, { "HUP", SIGHUP },
		{ "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "WINCH", SIGWINCH } };

int gw_signal_from_string(int *out, const char *s)
{
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcasecmp(s, signals[i].name) == 0) {
			*out = signals[i].sig;
			return 0;
		}
	return -EINVAL;
}

const char *gw_signal_to_string(int sig)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return "?";
}

const char *gw_strmap_get(const struct gw_strmap *m, const char *key)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(m->k[mid], key);
		if (c == 0)
			return m->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void gw_strmap_set(struct gw_strmap *m, const char *key, const char *value)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(m->k[mid], key);
		if (c == 0) {
			free(m->v[mid]);
			m->v[mid] = gw_xstrdup(value);
			return;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	m->k = gw_xrealloc(m->k, (m->n + 1) * sizeof(char *));
	m->v = gw_xrealloc(m->v, (m->n + 1) * sizeof(char *));
	memmove(m->k + lo + 1, m->k + lo, (m->n - lo) * sizeof(char *));
	memmove(m->v + lo + 1, m->v + lo, (m->n - lo) * sizeof(char *));
	m->k[lo] = gw_xstrdup(key);
	m->v[lo] = gw_xstrdup(value);
	m->n++;
}

void gw_strmap_free(struct gw_strmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->k[i]);
		free(m->v[i]);
	}
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

void gw_strlist_free(struct gw_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void gw_resource_free(struct gw_resource *r)
{
	if (!r)
		return;
	free(r->name);
	gw_strmap_free(&r->labels);
	free(r->file);
	gw_strmap_free(&r->node_selector);
	gw_strlist_free(&r->depends_on);
	free(r->depends_on_pos);
	free(r->health_http_url);
	free(r->health_tcp_address);
	gw_strlist_free(&r->health_exec_command);
	gw_strlist_free(&r->command);
	gw_strmap_free(&r->env);
	gw_strlist_free(&r->env_files);
	for (size_t i = 0; r->secrets && i < r->secret_env_files.n; i++)
		gw_bytes_unref(r->secrets[i].bytes);
	free(r->secrets);
	gw_strlist_free(&r->secret_env_files);
	free(r->working_dir);
	free(r->user);
	free(r->image);
	gw_strlist_free(&r->ports);
	gw_strlist_free(&r->volumes);
	free(r->kernel);
	free(r->initrd);
	free(r->cmdline);
	free(r->disk);
	gw_strlist_free(&r->forwards);
	free(r->plugin);
	free(r->plugin_config);
	for (size_t i = 0; r->source_files && i < r->sources.n; i++)
		gw_bytes_unref(r->source_files[i].bytes);
	free(r->source_files);
	gw_strlist_free(&r->sources);
	free(r->canonical);
	free(r);
}

const char *gw_resource_key(char *buf, size_t size, const struct gw_resource *r)
{
	snprintf(buf, size, "%s/%s", gw_kind_to_string(r->kind), r->name);
	return buf;
}

int64_t gw_resource_stop_timeout_ms(const struct gw_resource *r)
{
	return r->stop_timeout_ms ? r->stop_timeout_ms : 10000;
}

int gw_resource_stop_signal(const struct gw_resource *r)
{
	return r->stop_signal ? r->stop_signal : SIGTERM;
}

int64_t gw_resource_health_interval_ms(const struct gw_resource *r)
{
	if (r->health_type == GW_CHECK_NONE)
		return 0;
	return r->health_interval_ms ? r->health_interval_ms : 10000;
}

static json_t *table_json(const struct gw_resource *r, const struct gw_field *table);

static json_t *list_json(const struct gw_strlist *l)
{
	if (!l->n)
		return NULL;
	json_t *v = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(v, json_string(l->v[i]));
	return v;
}

static json_t *map_json(const struct gw_strmap *m)
{
	if (!m->n)
		return NULL;
	json_t *v = json_object();
	for (size_t i = 0; i < m->n; i++)
		json_object_set_new(v, m->k[i], json_string(m->v[i]));
	return v;
}

/* milli-CPUs as written: 500 -> "0.5", 2000 -> "2" */
static char *cpus_format(char *buf, size_t size, int64_t m)
{
	snprintf(buf, size, "%lld.%03lld", (long long)(m / 1000), (long long)(m % 1000));
	char *e = buf + strlen(buf) - 1; /* trim "0.500" to "0.5", "2.000" to "2" */
	while (*e == '0')
		*e-- = '\0';
	if (*e == '.')
		*e = '\0';
	return buf;
}

/* milli-CPUs as written: 500 -> "0.5", 2000 -> "2" */
static json_t *cpus_json(int64_t m)
{
	char buf[64];
	if (!m)
		return NULL;
	return json_string(cpus_format(buf, sizeof(buf), m));
}

/* The value of one field, NULL when unset (the default). */
static json_t *field_json(const struct gw_resource *r, const struct gw_field *f)
{
	const void *p = (const char *)r + f->offset;
	char buf[64];
	json_t *v;

	switch (f->type) {
	case GW_F_STR:
		return *(char *const *)p ? json_string(*(char *const *)p) : NULL;
	case GW_F_STRLIST:
		return list_json(p);
	case GW_F_STRMAP:
		return map_json(p);
	case GW_F_DURATION:
		if (!*(const int64_t *)p)
			return NULL;
		gw_duration_format(buf, sizeof(buf), *(const int64_t *)p);
		return json_string(buf);
	case GW_F_SIZE:
		if (!*(const int64_t *)p)
			return NULL;
		gw_size_format(buf, sizeof(buf), *(const int64_t *)p);
		return json_string(buf);
	case GW_F_INT:
		return *(const int64_t *)p ? json_integer(*(const int64_t *)p) : NULL;
	case GW_F_CPUS:
		return cpus_json(*(const int64_t *)p);
	case GW_F_ENUM:
		return *(const int *)p ? json_string(gw_enum_name(f->enums, *(const int *)p)) : NULL;
	case GW_F_SIGNAL:
		return *(const int *)p ? json_string(gw_signal_to_string(*(const int *)p)) : NULL;
	case GW_F_JSON:
		return *(char *const *)p ? json_loads(*(char *const *)p, JSON_DECODE_ANY, NULL) : NULL;
	case GW_F_OBJECT:
		v = table_json(r, f->sub);
		if (json_object_size(v) == 0) {
			json_decref(v);
			v = NULL;
		}
		return v;
	}
	return NULL;
}

/* The field of kind named by path below table ("healthCheck.interval"). */
static const struct gw_field *field_at(const struct gw_field *table, enum gw_kind kind, const char *path)
{
	size_t n = strcspn(path, ".");
	for (const struct gw_field *f = table; f && f->name; f++) {
		if (!(f->kinds & GW_KMASK(kind)) || strlen(f->name) != n || strncmp(f->name, path, n) != 0)
			continue;
		if (!path[n])
			return f;
		return f->type == GW_F_OBJECT ? field_at(f->sub, kind, path + n + 1) : NULL;
	}
	return NULL;
}

char *gw_resource_default_json(enum gw_kind kind, const char *path)
{
	const struct gw_field *f = strncmp(path, "spec.", 5) ? NULL : field_at(gw_schema_spec, kind, path + 5);
	char buf[64];
	json_t *v = NULL;

	if (!f)
		return NULL;
	if (f->type == GW_F_ENUM) { /* the first name, unless defval names another */
		v = json_string(gw_enum_name(f->enums, (int)f->defval));
	} else if (f->defval) {
		switch (f->type) {
		case GW_F_DURATION:
			gw_duration_format(buf, sizeof(buf), f->defval);
			v = json_string(buf);
			break;
		case GW_F_SIZE:
			gw_size_format(buf, sizeof(buf), f->defval);
			v = json_string(buf);
			break;
		case GW_F_INT:
			v = json_integer(f->defval);
			break;
		case GW_F_SIGNAL:
			v = json_string(gw_signal_to_string((int)f->defval));
			break;
		default:
			break;
		}
	}
	if (!v)
		return NULL;
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	return s;
}

/* JSON for the fields of one schema table that this kind uses and sets. */
static json_t *table_json(const struct gw_resource *r, const struct gw_field *table)
{
	json_t *obj = json_object();

	for (const struct gw_field *f = table; f->name; f++) {
		if (!(f->kinds & GW_KMASK(r->kind)) || (f->flags & GW_FF_NOHASH))
			continue;
		json_t *v = field_json(r, f);
		if (v)
			json_object_set_new(obj, f->name, v);
	}
	return obj;
}

/* ---- the canonical form without building it in jansson first ----------
 * Byte for byte what json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII) makes of the document table_json builds (its escapes,
 * "\\u%04X" in upper case, surrogate pairs, keys in strcmp order), in a
 * fraction of the time. A string that is not valid UTF-8 (which jansson
 * would refuse, dropping its field) or a repeated key makes it give up, and
 * the jansson path decides as before. */

struct kv {
	const char *key;
	struct gw_strbuf val;
};

struct obj {
	struct kv *v;
	size_t n, cap;
};

static struct gw_strbuf *obj_add(struct obj *o, const char *key)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 16;
		o->v = gw_xrealloc(o->v, o->cap * sizeof(*o->v));
	}
	struct kv *e = &o->v[o->n++];
	e->key = key;
	gw_strbuf_init(&e->val);
	return &e->val;
}

static void obj_free(struct obj *o)
{
	for (size_t i = 0; i < o->n; i++)
		gw_strbuf_free(&o->v[i].val);
	free(o->v);
}

static int put_jstr(struct gw_strbuf *sb, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char seq[16];

	gw_strbuf_add(sb, "\"", 1);
	while (*p) {
		const unsigned char *run = p;
		while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p > run)
			gw_strbuf_add(sb, (const char *)run, (size_t)(p - run));
		if (!*p)
			break;
		unsigned char c = *p;
		uint32_t cp;
		size_t n;
		if (c < 0x80) {
			cp = c;
			n = 1;
		} else if ((c & 0xE0) == 0xC0) {
			cp = c & 0x1F;
			n = 2;
		} else if ((c & 0xF0) == 0xE0) {
			cp = c & 0x0F;
			n = 3;
		} else if ((c & 0xF8) == 0xF0) {
			cp = c & 0x07;
			n = 4;
		} else {
			return -EILSEQ;
		}
		for (size_t i = 1; i < n; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return -EILSEQ;
			cp = (cp << 6) | (p[i] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return -EILSEQ;
		p += n;
		switch (cp) {
		case '\\':
			gw_strbuf_add(sb, "\\\\", 2);
			break;
		case '"':
			gw_strbuf_add(sb, "\\\"", 2);
			break;
		case '\b':
			gw_strbuf_add(sb, "\\b", 2);
			break;
		case '\f':
			gw_strbuf_add(sb, "\\f", 2);
			break;
		case '\n':
			gw_strbuf_add(sb, "\\n", 2);
			break;
		case '\r':
			gw_strbuf_add(sb, "\\r", 2);
			break;
		case '\t':
			gw_strbuf_add(sb, "\\t", 2);
			break;
		default:
			if (cp < 0x10000) {
				snprintf(seq, sizeof(seq), "\\u%04X", (unsigned)cp);
			} else {
				uint32_t v = cp - 0x10000;
				snprintf(seq, sizeof(seq), "\\u%04X\\u%04X", (unsigned)(0xD800 | (v >> 10)),
					 (unsigned)(0xDC00 | (v & 0x3FF)));
			}
			gw_strbuf_puts(sb, seq);
		}
	}
	gw_strbuf_add(sb, "\"", 1);
	return 0;
}

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

/* {"key":value,...} in key order; -EEXIST on a repeated key, -EILSEQ on a
 * bad string */
static int put_obj(struct gw_strbuf *sb, struct obj *o)
{
	if (o->n > 1)
		qsort(o->v, o->n, sizeof(*o->v), kv_cmp);
	gw_strbuf_add(sb, "{", 1);
	for (size_t i = 0; i < o->n; i++) {
		if (i && strcmp(o->v[i - 1].key, o->v[i].key) == 0)
			return -EEXIST;
		if (i)
			gw_strbuf_add(sb, ",", 1);
		int rc = put_jstr(sb, o->v[i].key);
		if (rc < 0)
			return rc;
		gw_strbuf_add(sb, ":", 1);
		gw_strbuf_add(sb, o->v[i].val.s, o->v[i].val.len);
	}
	gw_strbuf_add(sb, "}", 1);
	return 0;
}

static int list_fast(struct obj *obj, const char *name, const struct gw_strlist *l)
{
	int rc = 0;
	if (!l->n)
		return 0;
	struct gw_strbuf *v = obj_add(obj, name);
	gw_strbuf_add(v, "[", 1);
	for (size_t i = 0; i < l->n && rc == 0; i++) {
		if (i)
			gw_strbuf_add(v, ",", 1);
		rc = put_jstr(v, l->v[i]);
	}
	gw_strbuf_add(v, "]", 1);
	return rc;
}

static int map_fast(struct obj *obj, const char *name, const struct gw_strmap *m)
{
	struct obj sub = { 0 };
	int rc = 0;
	if (!m->n)
		return 0;
	for (size_t i = 0; i < m->n && rc == 0; i++)
		rc = put_jstr(obj_add(&sub, m->k[i]), m->v[i]);
	if (rc == 0)
		rc = put_obj(obj_add(obj, name), &sub);
	obj_free(&sub);
	return rc;
}

static int table_fast(struct obj *obj, const struct gw_resource *r, const struct gw_field *table)
{
	char buf[64];

	for (const struct gw_field *f = table; f->name; f++) {
		const void *p = (const char *)r + f->offset;
		const char *str = NULL;
		int rc = 0;
		if (!(f->kinds & GW_KMASK(r->kind)) || (f->flags & GW_FF_NOHASH))
			continue;
		switch (f->type) {
		case GW_F_STR:
			str = *(char *const *)p;
			break;
		case GW_F_STRLIST:
			rc = list_fast(obj, f->name, p);
			break;
		case GW_F_STRMAP:
			rc = map_fast(obj, f->name, p);
			break;
		case GW_F_DURATION:
			if (*(const int64_t *)p) {
				gw_duration_format(buf, sizeof(buf), *(const int64_t *)p);
				str = buf;
			}
			break;
		case GW_F_SIZE:
			if (*(const int64_t *)p) {
				gw_size_format(buf, sizeof(buf), *(const int64_t *)p);
				str = buf;
			}
			break;
		case GW_F_INT:
			if (*(const int64_t *)p)
				gw_strbuf_printf(obj_add(obj, f->name), "%lld", (long long)*(const int64_t *)p);
			break;
		case GW_F_CPUS:
			if (*(const int64_t *)p)
				str = cpus_format(buf, sizeof(buf), *(const int64_t *)p);
			break;
		case GW_F_ENUM:
			if (*(const int *)p && !(str = gw_enum_name(f->enums, *(const int *)p)))
				rc = -EINVAL;
			break;
		case GW_F_SIGNAL:
			if (*(const int *)p && !(str = gw_signal_to_string(*(const int *)p)))
				rc = -EINVAL;
			break;
		case GW_F_JSON: /* any YAML value: the jansson path canonicalises it */
			if (*(char *const *)p)
				rc = -ENOTSUP;
			break;
		case GW_F_OBJECT: {
			struct obj sub = { 0 };
			rc = table_fast(&sub, r, f->sub);
			if (rc == 0 && sub.n)
				rc = put_obj(obj_add(obj, f->name), &sub);
			obj_free(&sub);
			break;
		}
		}
		if (rc == 0 && str)
			rc = put_jstr(obj_add(obj, f->name), str);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* NULL when the jansson path must decide */
static char *canonical_fast(const struct gw_resource *r)
{
	struct obj doc = { 0 }, spec = { 0 }, secrets = { 0 };
	if (r->source_files)
		return NULL; /* External sources: the jansson path adds their blob ids */
	int rc = put_jstr(obj_add(&doc, "kind"), gw_kind_to_string(r->kind));
	if (rc == 0)
		rc = table_fast(&spec, r, gw_schema_spec);
	for (size_t i = 0; rc == 0 && r->secrets && i < r->secret_env_files.n; i++)
		if (r->secrets[i].blob[0])
			rc = put_jstr(obj_add(&secrets, r->secret_env_files.v[i]), r->secrets[i].blob);
	if (rc == 0 && secrets.n)
		rc = put_obj(obj_add(&spec, "secrets"), &secrets);
	if (rc == 0)
		rc = put_obj(obj_add(&doc, "spec"), &spec);
	struct gw_strbuf out;
	gw_strbuf_init(&out);
	if (rc == 0)
		rc = put_obj(&out, &doc);
	obj_free(&secrets);
	obj_free(&spec);
	obj_free(&doc);
	if (rc < 0) {
		gw_strbuf_free(&out);
		return NULL;
	}
	return gw_strbuf_detach(&out);
}

char *gw_resource__canonical_jansson(const struct gw_resource *r)
{
	json_t *doc = json_object();

	json_object_set_new(doc, "kind", json_string(gw_kind_to_string(r->kind)));
	json_t *spec = table_json(r, gw_schema_spec);
	/* the blob id of each secret file: a rotated secret changes the hash */
	json_t *secrets = json_object();
	for (size_t i = 0; r->secrets && i < r->secret_env_files.n; i++)
		if (r->secrets[i].blob[0])
			json_object_set_new(secrets, r->secret_env_files.v[i], json_string(r->secrets[i].blob));
	if (json_object_size(secrets))
		json_object_set_new(spec, "secrets", secrets);
	else
		json_decref(secrets);
	/* and of each source file: a changed file replaces the resource */
	json_t *sources = json_object();
	for (size_t i = 0; r->source_files && i < r->sources.n; i++)
		if (r->source_files[i].blob[0])
			json_object_set_new(sources, r->sources.v[i], json_string(r->source_files[i].blob));
	if (json_object_size(sources))
		json_object_set_new(spec, "sources", sources);
	else
		json_decref(sources);
	json_object_set_new(doc, "spec", spec);
	char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (!s)
		abort();
	return s;
}

char *gw_resource__canonical_fast(const struct gw_resource *r)
{
	return canonical_fast(r);
}

/* SHA-256 fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up
 * again on every digest, most of the cost of hashing a small document. */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void gw_resource_finalize(struct gw_resource *r)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	GW_PROF_BEGIN(canonical);
	free(r->canonical);
	r->canonical = canonical_fast(r);
	if (!r->canonical)
		r->canonical = gw_resource__canonical_jansson(r);
	GW_PROF_END(canonical, "  canonical form");
	GW_PROF_BEGIN(hash);
	pthread_once(&sha256_once, sha256_fetch);
	if (!EVP_Digest(r->canonical, strlen(r->canonical), md, &mdlen, sha256 ? sha256 : EVP_sha256(), NULL))
		abort();
	for (unsigned i = 0; i < mdlen && i < 32; i++) {
		r->spec_hash[2 * i] = hex[md[i] >> 4];
		r->spec_hash[2 * i + 1] = hex[md[i] & 15];
	}
	r->spec_hash[64] = '\0';
	GW_PROF_END(hash, "  spec hash");
}
