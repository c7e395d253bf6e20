/* Typed resources: their canonical JSON (driven by the schema table, sorted
 * keys, defaults folded away) and the sha256 spec hash computed from it. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gitward/resource.h"
#include "gitward/schema.h"
#include "gitward/util.h"

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

static int parse_port(unsigned *out, const char *s, size_t n)
{
	unsigned v = 0;
	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = v;
	return 0;
}

int gw_portmap_parse(struct gw_portmap *out, const char *s)
{
	struct gw_portmap pm;
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	const char *last = NULL, *prev = NULL;

	memset(&pm, 0, sizeof(pm));
	strcpy(pm.proto, "tcp");
	if (slash) {
		if (strcmp(slash + 1, "tcp") != 0 && strcmp(slash + 1, "udp") != 0)
			return -EINVAL;
		strcpy(pm.proto, slash + 1);
	}
	for (const char *p = s; p < s + len; p++)
		if (*p == ':') {
			prev = last;
			last = p;
		}
	if (!last)
		return -EINVAL;
	if (parse_port(&pm.port, last + 1, (size_t)(s + len - last - 1)) < 0)
		return -EINVAL;
	const char *hp = prev ? prev + 1 : s;
	if (parse_port(&pm.host_port, hp, (size_t)(last - hp)) < 0)
		return -EINVAL;
	if (prev) {
		size_t iplen = (size_t)(prev - s);
		if (iplen == 0 || iplen >= sizeof(pm.host_ip))
			return -EINVAL;
		for (size_t i = 0; i < iplen; i++)
			if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || (s[i] >= 'a' && s[i] <= 'z')))
				return -EINVAL;
		memcpy(pm.host_ip, s, iplen);
	}
	*out = pm;
	return 0;
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
		free(r->secrets[i].cipher);
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
		free(r->source_files[i].cipher);
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
static json_t *cpus_json(int64_t m)
{
	char buf[64];
	if (!m)
		return NULL;
	snprintf(buf, sizeof(buf), "%lld.%03lld", (long long)(m / 1000), (long long)(m % 1000));
	/* trim "0.500" to "0.5", "2.000" to "2" */
	char *e = buf + strlen(buf) - 1;
	while (*e == '0')
		*e-- = '\0';
	if (*e == '.')
		*e = '\0';
	return json_string(buf);
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

void gw_resource_finalize(struct gw_resource *r)
{
	json_t *doc = json_object();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

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
	free(r->canonical);
	r->canonical = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (!r->canonical)
		abort();
	EVP_Digest(r->canonical, strlen(r->canonical), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(r->spec_hash + 2 * i, 3, "%02x", md[i]);
}
