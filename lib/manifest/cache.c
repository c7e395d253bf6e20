/* Parsed resources by blob id (see gitward/manifest_cache.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/manifest_cache.h"
#include "gitward/prof.h"
#include "gitward/schema.h"

/* Every field of struct gw_resource is written below: a new field must be
 * added to put_resource and get_resource (and the format version bumped). */
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(struct gw_resource) == 568, "struct gw_resource changed: update lib/manifest/cache.c");
#endif

/* Bumped whenever gw_resource_finalize would give another canonical form. */
#define CANONICAL_VERSION 1u

static const char magic[8] = { 'G', 'W', 'M', 'C', 'A', 'C', 'H', 'E' };
#define DIGEST_LEN 32u
#define KEY_LEN 32u
#define CACHE_FILE_MAX (1u << 30)

struct entry {
	unsigned char id[GW_BLOB_ID_MAX];
	unsigned char idlen; /* 0: a free slot */
	size_t len; /* of the blob */
	unsigned gen; /* the last read that used it */
	char *data; /* the resources, serialised */
	size_t datalen;
	bool owned; /* else data lies in the loaded file's buffer */
	bool checked; /* read from the file and through the validator once */
};

struct gw_manifest_cache {
	struct entry *v; /* open addressing, cap a power of two */
	size_t n, cap;
	unsigned gen;
	bool loaded, added;
	size_t hits, misses;
	char *file; /* the loaded file: entries read from it point into it */
	/* the last .gitwardignore compiled, kept across passes: a heal pass
	 * of the same commit does not compile it again */
	struct gw_ignore *ignore;
	char *ignore_key;
};

struct gw_manifest_cache *gw_manifest_cache_new(void)
{
	struct gw_manifest_cache *c = gw_xcalloc(1, sizeof(*c));
	c->gen = 1;
	return c;
}

static void clear(struct gw_manifest_cache *c)
{
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].owned)
			free(c->v[i].data);
	free(c->v);
	free(c->file);
	c->v = NULL;
	c->file = NULL;
	c->n = c->cap = 0;
}

void gw_manifest_cache_free(struct gw_manifest_cache *c)
{
	if (!c)
		return;
	clear(c);
	gw_ignore_free(c->ignore);
	free(c->ignore_key);
	free(c);
}

const struct gw_ignore *gw_manifest_cache_ignore(const struct gw_manifest_cache *c, const char *key)
{
	return c && c->ignore_key && !strcmp(c->ignore_key, key) ? c->ignore : NULL;
}

const struct gw_ignore *gw_manifest_cache_keep_ignore(struct gw_manifest_cache *c, const char *key,
						      struct gw_ignore *ig)
{
	gw_ignore_free(c->ignore);
	free(c->ignore_key);
	c->ignore = ig; /* now owned by the cache */
	c->ignore_key = gw_xstrdup(key);
	return ig;
}

bool gw_manifest_cache_loaded(const struct gw_manifest_cache *c)
{
	return c->loaded;
}

size_t gw_manifest_cache_count(const struct gw_manifest_cache *c)
{
	return c->n;
}

void gw_manifest_cache_stats(const struct gw_manifest_cache *c, size_t *hits, size_t *misses)
{
	*hits = c->hits;
	*misses = c->misses;
}

static size_t slot_of(const unsigned char *id, size_t idlen)
{
	size_t h = 0;
	memcpy(&h, id, idlen < sizeof(h) ? idlen : sizeof(h)); /* a hash already */
	return h;
}

static struct entry *find(const struct gw_manifest_cache *c, const unsigned char *id, size_t idlen)
{
	if (!c->cap)
		return NULL;
	for (size_t i = slot_of(id, idlen) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
		struct entry *e = &c->v[i];
		if (!e->idlen)
			return NULL;
		if (e->idlen == idlen && memcmp(e->id, id, idlen) == 0)
			return e;
	}
}

/* Takes data when owned; the entry is marked used by read gen. */
static void insert(struct gw_manifest_cache *c, const unsigned char *id, size_t idlen, size_t len, char *data,
		   size_t datalen, unsigned gen, bool owned)
{
	struct entry *old = find(c, id, idlen);
	if (old) {
		if (old->owned)
			free(old->data);
		old->data = data;
		old->datalen = datalen;
		old->len = len;
		old->gen = gen;
		old->owned = owned;
		old->checked = false;
		return;
	}
	if ((c->n + 1) * 2 > c->cap) {
		struct entry *v = c->v;
		size_t cap = c->cap;
		c->cap = cap ? cap * 2 : 256;
		c->v = gw_xcalloc(c->cap, sizeof(*c->v));
		for (size_t i = 0; i < cap; i++)
			if (v[i].idlen) {
				size_t j = slot_of(v[i].id, v[i].idlen) & (c->cap - 1);
				while (c->v[j].idlen)
					j = (j + 1) & (c->cap - 1);
				c->v[j] = v[i];
			}
		free(v);
	}
	size_t j = slot_of(id, idlen) & (c->cap - 1);
	while (c->v[j].idlen)
		j = (j + 1) & (c->cap - 1);
	struct entry *e = &c->v[j];
	memcpy(e->id, id, idlen);
	e->idlen = (unsigned char)idlen;
	e->len = len;
	e->gen = gen;
	e->data = data;
	e->datalen = datalen;
	e->owned = owned;
	c->n++;
}

bool gw_manifest_cache_end_read(struct gw_manifest_cache *c, unsigned keep)
{
	size_t dropped = 0;
	for (size_t i = 0; i < c->cap; i++)
		if (c->v[i].idlen && c->gen - c->v[i].gen >= keep)
			dropped++;
	if (dropped) {
		/* rebuild without them (deleting in place would break probing) */
		struct entry *v = c->v;
		size_t cap = c->cap;
		c->v = NULL;
		c->n = c->cap = 0;
		for (size_t i = 0; i < cap; i++) {
			if (!v[i].idlen)
				continue;
			if (c->gen - v[i].gen >= keep) {
				if (v[i].owned)
					free(v[i].data);
			} else {
				insert(c, v[i].id, v[i].idlen, v[i].len, v[i].data, v[i].datalen, v[i].gen, v[i].owned);
			}
		}
		free(v);
	}
	c->gen++;
	bool added = c->added;
	return added;
}

/* ---- one resource <-> bytes ------------------------------------------- */

static void put_u64(struct gw_strbuf *sb, uint64_t v)
{
	gw_strbuf_add(sb, (const char *)&v, sizeof(v));
}

static void put_str(struct gw_strbuf *sb, const char *s)
{
	if (!s) {
		put_u64(sb, UINT64_MAX);
		return;
	}
	size_t n = strlen(s);
	put_u64(sb, n);
	gw_strbuf_add(sb, s, n);
}

static void put_list(struct gw_strbuf *sb, const struct gw_strlist *l)
{
	put_u64(sb, l->n);
	for (size_t i = 0; i < l->n; i++)
		put_str(sb, l->v[i]);
}

static void put_map(struct gw_strbuf *sb, const struct gw_strmap *m)
{
	put_u64(sb, m->n);
	for (size_t i = 0; i < m->n; i++) {
		put_str(sb, m->k[i]);
		put_str(sb, m->v[i]);
	}
}

void gw_manifest_cache__put_resource(struct gw_strbuf *sb, const struct gw_resource *r)
{
	put_u64(sb, (uint64_t)r->kind);
	put_str(sb, r->name);
	put_map(sb, &r->labels);
	put_u64(sb, r->line);
	put_u64(sb, r->col);
	put_map(sb, &r->node_selector);
	put_list(sb, &r->depends_on);
	put_u64(sb, r->depends_on_pos != NULL);
	for (size_t i = 0; r->depends_on_pos && i < r->depends_on.n; i++) {
		put_u64(sb, r->depends_on_pos[i][0]);
		put_u64(sb, r->depends_on_pos[i][1]);
	}
	put_u64(sb, (uint64_t)r->restart);
	put_u64(sb, (uint64_t)r->health_type);
	put_str(sb, r->health_http_url);
	put_str(sb, r->health_tcp_address);
	put_list(sb, &r->health_exec_command);
	put_u64(sb, (uint64_t)r->health_interval_ms);
	put_u64(sb, (uint64_t)r->health_timeout_ms);
	put_u64(sb, (uint64_t)r->health_retries);
	put_u64(sb, (uint64_t)r->stop_timeout_ms);
	put_u64(sb, (uint64_t)r->stop_signal);
	put_list(sb, &r->command);
	put_map(sb, &r->env);
	put_list(sb, &r->env_files);
	put_list(sb, &r->secret_env_files);
	put_u64(sb, r->secrets != NULL);
	for (size_t i = 0; r->secrets && i < r->secret_env_files.n; i++) {
		put_u64(sb, r->secrets[i].line); /* as declared: resolved on every read */
		put_u64(sb, r->secrets[i].col);
	}
	put_str(sb, r->working_dir);
	put_str(sb, r->user);
	put_u64(sb, (uint64_t)r->limit_open_files);
	put_u64(sb, (uint64_t)r->limit_processes);
	put_u64(sb, (uint64_t)r->limit_memory);
	put_str(sb, r->image);
	put_list(sb, &r->ports);
	put_list(sb, &r->volumes);
	put_u64(sb, (uint64_t)r->network);
	put_u64(sb, (uint64_t)r->memory);
	put_u64(sb, (uint64_t)r->cpus_milli);
	put_u64(sb, (uint64_t)r->vcpus);
	put_u64(sb, (uint64_t)r->pull);
	put_str(sb, r->kernel);
	put_str(sb, r->initrd);
	put_str(sb, r->cmdline);
	put_str(sb, r->disk);
	put_list(sb, &r->forwards);
	put_u64(sb, (uint64_t)r->accel);
	put_str(sb, r->plugin);
	put_str(sb, r->plugin_config);
	put_list(sb, &r->sources);
	put_u64(sb, r->source_files != NULL);
	for (size_t i = 0; r->source_files && i < r->sources.n; i++) {
		put_u64(sb, r->source_files[i].line); /* as declared: resolved on every read */
		put_u64(sb, r->source_files[i].col);
	}
	put_u64(sb, (uint64_t)r->plugin_timeout_ms);
	put_str(sb, r->canonical);
	put_str(sb, r->spec_hash);
}

struct rd {
	const char *p, *end;
	int bad;
};

static uint64_t get_u64(struct rd *d)
{
	uint64_t v = 0;
	if ((size_t)(d->end - d->p) < sizeof(v)) {
		d->bad = 1;
		return 0;
	}
	memcpy(&v, d->p, sizeof(v));
	d->p += sizeof(v);
	return v;
}

/* a count of items each at least min bytes long, bounded by what is left */
static size_t get_count(struct rd *d, size_t min)
{
	uint64_t n = get_u64(d);
	if (n > (uint64_t)(d->end - d->p) / min) {
		d->bad = 1;
		return 0;
	}
	return (size_t)n;
}

static char *get_str(struct rd *d)
{
	uint64_t n = get_u64(d);
	if (n == UINT64_MAX || d->bad)
		return NULL;
	if (n > (uint64_t)(d->end - d->p) || memchr(d->p, '\0', (size_t)n)) {
		d->bad = 1;
		return NULL;
	}
	char *s = gw_xstrndup(d->p, (size_t)n);
	d->p += n;
	return s;
}

static int64_t get_i64(struct rd *d)
{
	return (int64_t)get_u64(d);
}

static unsigned get_uint(struct rd *d)
{
	uint64_t v = get_u64(d);
	if (v > UINT32_MAX)
		d->bad = 1;
	return (unsigned)v;
}

static void get_list(struct rd *d, struct gw_strlist *l)
{
	size_t n = get_count(d, 8);
	if (!n)
		return;
	l->v = gw_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n && !d->bad; i++) {
		l->v[i] = get_str(d);
		l->n = i + 1;
		if (!l->v[i])
			d->bad = 1;
	}
}

static void get_map(struct rd *d, struct gw_strmap *m)
{
	size_t n = get_count(d, 16);
	if (!n)
		return;
	m->k = gw_xcalloc(n, sizeof(char *));
	m->v = gw_xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n && !d->bad; i++) {
		m->k[i] = get_str(d);
		m->v[i] = get_str(d);
		m->n = i + 1;
		if (!m->k[i] || !m->v[i] || (i && strcmp(m->k[i - 1], m->k[i]) >= 0))
			d->bad = 1; /* kept sorted by key */
	}
}

/* restart policy, health check and stop of any kind */
static void get_lifecycle(struct rd *d, struct gw_resource *r)
{
	r->restart = (enum gw_restart)get_uint(d);
	r->health_type = (enum gw_check_type)get_uint(d);
	r->health_http_url = get_str(d);
	r->health_tcp_address = get_str(d);
	get_list(d, &r->health_exec_command);
	r->health_interval_ms = get_i64(d);
	r->health_timeout_ms = get_i64(d);
	r->health_retries = get_i64(d);
	r->stop_timeout_ms = get_i64(d);
	r->stop_signal = (int)get_uint(d);
}

/* Process and Container: what runs and its environment */
static void get_workload(struct rd *d, struct gw_resource *r)
{
	get_list(d, &r->command);
	get_map(d, &r->env);
	get_list(d, &r->env_files);
	get_list(d, &r->secret_env_files);
	if (get_u64(d) && !d->bad) {
		r->secrets = gw_xcalloc(r->secret_env_files.n + 1, sizeof(*r->secrets));
		for (size_t i = 0; i < r->secret_env_files.n; i++) {
			r->secrets[i].line = get_uint(d);
			r->secrets[i].col = get_uint(d);
		}
	}
	r->working_dir = get_str(d);
	r->user = get_str(d);
	r->limit_open_files = get_i64(d);
	r->limit_processes = get_i64(d);
	r->limit_memory = get_i64(d);
}

/* Container and VM */
static void get_machine(struct rd *d, struct gw_resource *r)
{
	r->image = get_str(d);
	get_list(d, &r->ports);
	get_list(d, &r->volumes);
	r->network = (enum gw_net)get_uint(d);
	r->memory = get_i64(d);
	r->cpus_milli = get_i64(d);
	r->vcpus = get_i64(d);
	r->pull = (enum gw_pull)get_uint(d);
	r->kernel = get_str(d);
	r->initrd = get_str(d);
	r->cmdline = get_str(d);
	r->disk = get_str(d);
	get_list(d, &r->forwards);
	r->accel = (enum gw_accel)get_uint(d);
}

/* External */
static void get_external(struct rd *d, struct gw_resource *r)
{
	r->plugin = get_str(d);
	r->plugin_config = get_str(d);
	get_list(d, &r->sources);
	if (get_u64(d) && !d->bad) {
		r->source_files = gw_xcalloc(r->sources.n + 1, sizeof(*r->source_files));
		for (size_t i = 0; i < r->sources.n; i++) {
			r->source_files[i].line = get_uint(d);
			r->source_files[i].col = get_uint(d);
		}
	}
	r->plugin_timeout_ms = get_i64(d);
}

struct gw_resource *gw_manifest_cache__get_resource(const char **p, const char *end, const char *file)
{
	struct rd d = { .p = *p, .end = end };
	struct gw_resource *r = gw_xcalloc(1, sizeof(*r));

	r->file = gw_xstrdup(file);
	uint64_t kind = get_u64(&d);
	if (kind >= GW_KIND_MAX)
		d.bad = 1;
	r->kind = (enum gw_kind)kind;
	r->name = get_str(&d);
	get_map(&d, &r->labels);
	r->line = get_uint(&d);
	r->col = get_uint(&d);
	get_map(&d, &r->node_selector);
	get_list(&d, &r->depends_on);
	if (get_u64(&d) && !d.bad) {
		r->depends_on_pos = gw_xcalloc(r->depends_on.n + 1, sizeof(*r->depends_on_pos));
		for (size_t i = 0; i < r->depends_on.n; i++) {
			r->depends_on_pos[i][0] = get_uint(&d);
			r->depends_on_pos[i][1] = get_uint(&d);
		}
	}
	get_lifecycle(&d, r);
	get_workload(&d, r);
	get_machine(&d, r);
	get_external(&d, r);
	r->canonical = get_str(&d);
	char *hash = get_str(&d);
	/* decoded names obey the rules of parsed ones: a name becomes a
	 * path under the run dir */
	if (!r->name || gw_check_name(r->name) || !r->canonical || !hash || strlen(hash) != 64)
		d.bad = 1;
	else
		memcpy(r->spec_hash, hash, 65);
	free(hash);
	if (d.bad) {
		gw_resource_free(r);
		return NULL;
	}
	*p = d.p;
	return r;
}

/* ---- use by a read ------------------------------------------------------ */

/* The resources of one entry into set; -EINVAL when they do not decode. */
static int take(struct gw_manifest_set *set, struct entry *e, const char *file)
{
	struct rd d = { .p = e->data, .end = e->data + e->datalen };
	size_t n = get_count(&d, 8), n0 = set->n;
	for (size_t i = 0; i < n && !d.bad; i++) {
		struct gw_resource *r = gw_manifest_cache__get_resource(&d.p, d.end, file);
		/* what this process parsed is trusted; what a file holds is
		 * validated as a parsed manifest, once */
		if (r && !e->owned && !e->checked && gw_manifest__check_decoded(r) < 0) {
			gw_resource_free(r);
			r = NULL;
		}
		if (!r) {
			d.bad = 1;
			break;
		}
		if (set->n == set->cap) {
			set->cap = set->cap ? set->cap * 2 : 64;
			set->v = gw_xrealloc(set->v, set->cap * sizeof(*set->v));
		}
		set->v[set->n++] = r;
	}
	if (d.bad || d.p != d.end) {
		while (set->n > n0)
			gw_resource_free(set->v[--set->n]);
		return -EINVAL;
	}
	e->checked = true;
	return 0;
}

int gw_manifest_set_add_cached(struct gw_manifest_set *set, const char *file, const unsigned char *id, size_t idlen)
{
	struct gw_manifest_cache *c = set->cache;
	if (!c || idlen == 0 || idlen > GW_BLOB_ID_MAX)
		return 0;
	GW_PROF_BEGIN(hit);
	struct entry *e = find(c, id, idlen);
	if (!e) {
		c->misses++;
		return 0;
	}
	if (set->files + 1 > GW_MANIFEST_FILES_MAX || set->bytes + e->len > GW_MANIFEST_COMMIT_MAX) {
		/* past the bounds: as a fresh read does */
		gw_manifest_set__count(set, file, e->len);
		return 1;
	}
	if (take(set, e, file) < 0) {
		/* only a file written by someone else holds such an entry */
		gw_log(GW_LOG_WARN, "",
		       "manifest cache: the entry for %s does not decode or breaks the rules of a manifest; "
		       "it is parsed again",
		       file);
		c->misses++;
		return 0;
	}
	set->files++;
	set->bytes += e->len;
	e->gen = c->gen;
	c->hits++;
	GW_PROF_END(hit, "cache hits");
	return 1;
}

void gw_manifest_set_add_blob(struct gw_manifest_set *set, const char *file, const unsigned char *id, size_t idlen,
			      const char *data, size_t len)
{
	size_t n0 = set->n, diags0 = gw_diags_count(&set->diags), invalid0 = set->invalid_names.n;
	size_t files0 = set->files;

	gw_manifest_set_add_file(set, file, data, len);
	struct gw_manifest_cache *c = set->cache;
	if (!c || idlen == 0 || idlen > GW_BLOB_ID_MAX || gw_diags_count(&set->diags) != diags0 ||
	    set->invalid_names.n != invalid0 || set->files != files0 + 1 || set->files > GW_MANIFEST_FILES_MAX ||
	    set->bytes > GW_MANIFEST_COMMIT_MAX)
		return;
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	put_u64(&sb, set->n - n0);
	for (size_t i = n0; i < set->n; i++)
		gw_manifest_cache__put_resource(&sb, set->v[i]);
	size_t datalen = sb.len;
	insert(c, id, idlen, len, gw_strbuf_detach(&sb), datalen, c->gen, true);
	c->added = true;
}

/* ---- the file ----------------------------------------------------------- */

static void header(struct gw_strbuf *sb, uint64_t n)
{
	gw_strbuf_add(sb, magic, sizeof(magic));
	put_u64(sb, GW_MANIFEST_CACHE_FORMAT);
	put_u64(sb, 0x0102030405060708u); /* byte order */
	put_u64(sb, CANONICAL_VERSION);
	put_u64(sb, sizeof(struct gw_resource));
	put_u64(sb, n);
}

/* The file's digest is keyed: an HMAC-SHA256 with a secret of the agent
 * beside the file (PATH.key, 0600), so whoever may write the cache but not
 * read the key cannot forge entries. */
static void digest(unsigned char out[DIGEST_LEN], const unsigned char *key, const char *data, size_t len)
{
	unsigned int mdlen = 0;
	HMAC(EVP_sha256(), key, KEY_LEN, (const unsigned char *)data, len, out, &mdlen);
}

/* A file of the cache must be this user's, and writable (readable: mask)
 * by nobody else. */
static int check_owner(const char *path, mode_t mask, const char *what, struct gw_error *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return gw_error_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return gw_error_set(err, -EPERM, "%s: not a regular file", path);
	if (st.st_uid != geteuid())
		return gw_error_set(err, -EPERM, "%s: owned by uid %u, not by this user (uid %u)", path,
				    (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & mask)
		return gw_error_set(err, -EPERM, "%s: %s by group or others (mode %04o)", path, what,
				    (unsigned)(st.st_mode & 07777));
	return 0;
}

static void key_path(char *buf, size_t size, const char *path)
{
	snprintf(buf, size, "%s.key", path);
}

/* The key beside path; create: made when missing (by the writer only). */
static int read_key(unsigned char key[KEY_LEN], const char *path, bool create, struct gw_error *err)
{
	char kp[4096], *data = NULL;
	size_t len = 0;
	key_path(kp, sizeof(kp), path);
	if (create && access(kp, F_OK) < 0 && errno == ENOENT) {
		unsigned char fresh[KEY_LEN];
		if (RAND_bytes(fresh, sizeof(fresh)) != 1)
			return gw_error_set(err, -EIO, "%s: no random bytes for a key", kp);
		int fd = open(kp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			ssize_t w = write(fd, fresh, sizeof(fresh));
			if (close(fd) < 0 || w != (ssize_t)sizeof(fresh)) {
				unlink(kp);
				OPENSSL_cleanse(fresh, sizeof(fresh));
				return gw_error_set(err, -EIO, "%s: cannot write", kp);
			}
		}
		OPENSSL_cleanse(fresh, sizeof(fresh));
	}
	int rc = check_owner(kp, 077, "readable or writable", err);
	if (rc < 0)
		return rc;
	rc = gw_file_read_nofollow(&data, &len, kp, KEY_LEN + 1, err);
	if (rc == 0 && len != KEY_LEN)
		rc = gw_error_set(err, -EINVAL, "%s: not a key of %u bytes", kp, KEY_LEN);
	if (rc == 0)
		memcpy(key, data, KEY_LEN);
	if (data)
		OPENSSL_cleanse(data, len);
	free(data);
	return rc;
}

int gw_manifest_cache_load(struct gw_manifest_cache *c, const char *path, struct gw_error *err)
{
	char *data = NULL;
	size_t len = 0;
	unsigned char md[DIGEST_LEN];
	int rc;

	unsigned char key[KEY_LEN];

	GW_PROF_BEGIN(load);
	c->loaded = true;
	clear(c);
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return gw_error_set(err, -ENOENT, "%s: no manifest cache", path);
	/* another user's file, or one others may write, is not trusted */
	rc = check_owner(path, 022, "writable", err);
	if (rc < 0)
		return rc;
	rc = gw_file_read_nofollow(&data, &len, path, CACHE_FILE_MAX, err);
	if (rc < 0) {
		free(data);
		return rc;
	}
	struct gw_strbuf want;
	gw_strbuf_init(&want);
	header(&want, 0);
	size_t hlen = want.len - 8; /* all but the count */
	rc = -EINVAL;
	if (len < want.len + DIGEST_LEN || memcmp(data, want.s, sizeof(magic)) != 0) {
		gw_error_set(err, rc, "%s: not a manifest cache", path);
		goto out;
	}
	if (memcmp(data, want.s, hlen) != 0) {
		rc = gw_error_set(err, -ESTALE, "%s: a manifest cache of another version", path);
		goto out;
	}
	if ((rc = read_key(key, path, false, err)) < 0)
		goto out;
	rc = -EINVAL;
	digest(md, key, data, len - DIGEST_LEN);
	OPENSSL_cleanse(key, sizeof(key));
	if (CRYPTO_memcmp(md, data + len - DIGEST_LEN, DIGEST_LEN) != 0) {
		gw_error_set(err, rc, "%s: digest mismatch (truncated, corrupt or not written by this agent)", path);
		goto out;
	}
	struct rd d = { .p = data + hlen, .end = data + len - DIGEST_LEN };
	size_t n = get_count(&d, 8 * 4);
	for (size_t i = 0; i < n && !d.bad; i++) {
		uint64_t idlen = get_u64(&d), blen = get_u64(&d);
		if (d.bad || idlen == 0 || idlen > GW_BLOB_ID_MAX || (size_t)(d.end - d.p) < idlen) {
			d.bad = 1;
			break;
		}
		const unsigned char *id = (const unsigned char *)d.p;
		d.p += idlen;
		uint64_t dlen = get_u64(&d);
		if (d.bad || dlen > (uint64_t)(d.end - d.p) || blen > GW_MANIFEST_FILE_MAX) {
			d.bad = 1;
			break;
		}
		insert(c, id, idlen, blen, (char *)d.p, dlen, c->gen - 1, false);
		d.p += dlen;
	}
	if (d.bad || d.p != d.end) {
		clear(c);
		gw_error_set(err, rc, "%s: malformed entries", path);
		goto out;
	}
	c->added = false;
	c->file = data; /* the entries point into it */
	data = NULL;
	rc = 0;
out:
	gw_strbuf_free(&want);
	free(data);
	GW_PROF_END(load, "cache load");
	return rc;
}

int gw_manifest_cache_save(struct gw_manifest_cache *c, const char *path, struct gw_error *err)
{
	struct gw_strbuf sb;
	unsigned char md[DIGEST_LEN];
	char tmp[4096];
	int fd, rc = 0;

	unsigned char key[KEY_LEN];

	GW_PROF_BEGIN(save);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return gw_error_set(err, -ENAMETOOLONG, "%s: path too long", path);
	if ((rc = read_key(key, path, true, err)) < 0)
		return rc;
	gw_strbuf_init(&sb);
	header(&sb, c->n);
	for (size_t i = 0; i < c->cap; i++) {
		const struct entry *e = &c->v[i];
		if (!e->idlen)
			continue;
		put_u64(&sb, e->idlen);
		put_u64(&sb, e->len);
		gw_strbuf_add(&sb, (const char *)e->id, e->idlen);
		put_u64(&sb, e->datalen);
		gw_strbuf_add(&sb, e->data, e->datalen);
	}
	digest(md, key, sb.s, sb.len);
	OPENSSL_cleanse(key, sizeof(key));
	gw_strbuf_add(&sb, (const char *)md, sizeof(md));
	/* no fsync: a file cut short by a crash fails its digest and is rebuilt */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = gw_error_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < sb.len;) {
		ssize_t w = write(fd, sb.s + off, sb.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = gw_error_set(err, -errno, "%s: %s", tmp, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	if (close(fd) < 0 && rc == 0)
		rc = gw_error_set(err, -errno, "%s: %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, path) < 0)
		rc = gw_error_set(err, -errno, "%s: %s", path, strerror(errno));
	if (rc < 0)
		unlink(tmp);
	else
		c->added = false;
out:
	gw_strbuf_free(&sb);
	GW_PROF_END(save, "cache save");
	return rc;
}
