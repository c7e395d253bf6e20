/* The manifest cache: a resource comes back from it field for field; only
 * files without diagnostics are kept; a cache file that is truncated,
 * corrupt, foreign or of another version is refused, never used. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gitward/manifest_cache.h"

#define HDR "apiVersion: gitward/v1\n"

/* every field the model has, across the three kinds */
static const char rich[] =
	HDR "kind: Process\nmetadata: {name: p, labels: {tier: web, b: \"2\"}}\n"
	    "spec:\n  command: [/bin/sleep, \"10\"]\n  env: {B: \"2\", A: 1}\n  envFiles: [/etc/x.env]\n"
	    "  secretEnvFiles: [secrets/p.env.age]\n"
	    "  workingDir: /srv\n  user: nobody\n  stopSignal: SIGINT\n  stopTimeout: 1m30s\n"
	    "  limits: {openFiles: 1024, processes: 64, memory: 256Mi}\n  restart: on-failure\n"
	    "  nodeSelector: {node: a}\n  dependsOn: [c, v]\n"
	    "  healthCheck: {exec: {command: [/bin/true, x]}, interval: 5s, timeout: 2s, retries: 4}\n"
	    "---\n" HDR "kind: Container\nmetadata: {name: c}\n"
	    "spec: {image: busybox, ports: [\"127.0.0.1:8081:80/udp\"], volumes: [\"/a:/b\"], cpus: 0.5,\n"
	    "  memory: 64Mi, network: bridge, pull: always, healthCheck: {http: {url: \"http://127.0.0.1/\"}}}\n"
	    "---\n" HDR "kind: VM\nmetadata: {name: v}\n"
	    "spec: {kernel: /k, initrd: /i, cmdline: console=ttyS0, disk: /d.img, cpus: 2, memory: 1Gi,\n"
	    "  forwards: [\"2222:22\"], accel: tcg, healthCheck: {tcp: {address: \"127.0.0.1:2222\"}}}\n";

static const unsigned char id1[20] = { 1, 2, 3 }, id2[20] = { 9, 9, 9 };

static char *put(const struct gw_resource *r)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_manifest_cache__put_resource(&sb, r);
	return gw_strbuf_detach(&sb);
}

static size_t put_len(const struct gw_resource *r)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_manifest_cache__put_resource(&sb, r);
	size_t n = sb.len;
	gw_strbuf_free(&sb);
	return n;
}

static void test_resource_round_trips_field_for_field(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "dir/rich.yaml", rich, strlen(rich));
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 3);
	for (size_t i = 0; i < set.n; i++) {
		struct gw_resource *r = set.v[i];
		char *bytes = put(r);
		size_t len = put_len(r);
		const char *p = bytes;
		struct gw_resource *back = gw_manifest_cache__get_resource(&p, bytes + len, "dir/rich.yaml");
		assert_non_null(back);
		assert_ptr_equal(p, bytes + len);
		assert_string_equal(back->file, "dir/rich.yaml");
		assert_string_equal(back->canonical, r->canonical);
		assert_string_equal(back->spec_hash, r->spec_hash);
		/* the same bytes again: every field, positions included */
		char *again = put(back);
		assert_memory_equal(again, bytes, len);
		/* and the canonical form recomputed from the typed fields */
		char *canon = gw_xstrdup(back->canonical);
		gw_resource_finalize(back);
		assert_string_equal(back->canonical, canon);
		/* cut short anywhere: refused */
		for (size_t cut = 0; cut < len; cut += 7) {
			const char *q = bytes;
			assert_null(gw_manifest_cache__get_resource(&q, bytes + cut, "x"));
		}
		free(canon);
		free(again);
		free(bytes);
		gw_resource_free(back);
	}
	gw_manifest_set_free(&set);
}

static void test_only_clean_files_are_cached_and_hits_match_a_fresh_read(void **state)
{
	(void)state;
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	struct gw_manifest_set a, b;
	const char bad[] = HDR "kind: Process\nmetadata: {name: q}\nspec: {command: [/bin/true], bogus: 1}\n";

	gw_manifest_set_init(&a);
	a.cache = c;
	assert_int_equal(gw_manifest_set_add_cached(&a, "rich.yaml", id1, sizeof(id1)), 0);
	gw_manifest_set_add_blob(&a, "rich.yaml", id1, sizeof(id1), rich, strlen(rich));
	assert_int_equal(gw_manifest_set_add_cached(&a, "bad.yaml", id2, sizeof(id2)), 0);
	gw_manifest_set_add_blob(&a, "bad.yaml", id2, sizeof(id2), bad, strlen(bad));
	assert_int_equal(gw_manifest_cache_count(c), 1); /* bad.yaml has a diagnostic */
	gw_manifest_set_finish(&a);
	assert_true(gw_manifest_cache_end_read(c, 1));

	gw_manifest_set_init(&b);
	b.cache = c;
	assert_int_equal(gw_manifest_set_add_cached(&b, "other/rich.yaml", id1, sizeof(id1)), 1);
	assert_int_equal(gw_manifest_set_add_cached(&b, "bad.yaml", id2, sizeof(id2)), 0);
	gw_manifest_set_add_blob(&b, "bad.yaml", id2, sizeof(id2), bad, strlen(bad));
	gw_manifest_set_finish(&b);
	assert_int_equal(b.files, a.files);
	assert_int_equal(b.bytes, a.bytes);
	assert_int_equal(b.n, a.n);
	for (size_t i = 0; i < a.n; i++) {
		assert_string_equal(b.v[i]->spec_hash, a.v[i]->spec_hash);
		assert_string_equal(b.v[i]->file, "other/rich.yaml");
	}
	/* the diagnostics are the fresh ones, the same */
	assert_int_equal(b.diags.n, a.diags.n);
	for (size_t i = 0; i < a.diags.n; i++) {
		assert_string_equal(b.diags.v[i].msg, a.diags.v[i].msg);
		assert_int_equal(b.diags.v[i].line, a.diags.v[i].line);
	}
	size_t hits, misses;
	gw_manifest_cache_stats(c, &hits, &misses);
	assert_int_equal(hits, 1);
	/* a read that does not use rich.yaml drops it */
	gw_manifest_cache_end_read(c, 1);
	gw_manifest_cache_end_read(c, 1);
	assert_int_equal(gw_manifest_cache_count(c), 0);
	gw_manifest_set_free(&a);
	gw_manifest_set_free(&b);
	gw_manifest_cache_free(c);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/gw-mcache-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	return gw_xstrdup(tmpl);
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void test_cache_file_is_verified_before_use(void **state)
{
	(void)state;
	char *dir = tmpdir(), path[512];
	struct gw_error err;
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	struct gw_manifest_set set;
	char *data;
	size_t len;

	snprintf(path, sizeof(path), "%s/cache", dir);
	assert_int_equal(gw_manifest_cache_load(c, path, &err), -ENOENT);
	gw_manifest_set_init(&set);
	set.cache = c;
	gw_manifest_set_add_blob(&set, "rich.yaml", id1, sizeof(id1), rich, strlen(rich));
	gw_manifest_set_free(&set);
	assert_int_equal(gw_manifest_cache_save(c, path, &err), 0);
	gw_manifest_cache_free(c);

	c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_load(c, path, &err), 0);
	assert_int_equal(gw_manifest_cache_count(c), 1);
	gw_manifest_set_init(&set);
	set.cache = c;
	assert_int_equal(gw_manifest_set_add_cached(&set, "rich.yaml", id1, sizeof(id1)), 1);
	assert_int_equal(set.n, 3);
	gw_manifest_set_free(&set);
	gw_manifest_cache_free(c);

	assert_int_equal(gw_file_read(&data, &len, path, 1u << 30, &err), 0);
	/* one byte changed anywhere */
	for (size_t at = 0; at < len; at += len / 13 + 1) {
		data[at] ^= 0x20;
		write_bytes(path, data, len);
		data[at] ^= 0x20;
		c = gw_manifest_cache_new();
		int rc = gw_manifest_cache_load(c, path, &err);
		assert_true(rc == -EINVAL || rc == -ESTALE);
		assert_int_equal(gw_manifest_cache_count(c), 0);
		gw_manifest_cache_free(c);
	}
	/* cut short */
	write_bytes(path, data, len - 1);
	c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_load(c, path, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "digest mismatch"));
	assert_int_equal(gw_manifest_cache_count(c), 0);
	gw_manifest_cache_free(c);
	/* another version */
	data[8] ^= 0x7f;
	write_bytes(path, data, len);
	c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_load(c, path, &err), -ESTALE);
	assert_non_null(strstr(err.msg, "another version"));
	gw_manifest_cache_free(c);
	/* not a cache at all */
	write_bytes(path, "apiVersion: gitward/v1\n", 23);
	c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_load(c, path, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a manifest cache"));
	gw_manifest_cache_free(c);

	free(data);
	unlink(path);
	rmdir(dir);
	free(dir);
}

/* The canonical form is the spec hash: the direct writer must give exactly
 * what jansson gives, for every escape. */
static void test_canonical_writer_matches_jansson_byte_for_byte(void **state)
{
	(void)state;
	static const char tricky[] =
		HDR "kind: Process\nmetadata: {name: t, labels: {a: b}}\n"
		    "spec:\n  command: [\"/bin/echo\", \"q\\\"b\\\\s/\", \"\\t\\n\\r\\b\\f\\x01\\x1f\\x7f\",\n"
		    "    \"\\u00e9\\u4e2d\\U0001F600\\uFFFF\", \"\"]\n"
		    "  env: {Z: \"\\u2028\", A_B: \"x y\", \"K1\": \"\\\\\"}\n"
		    "  secretEnvFiles: [b.age, a.age]\n";
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "rich.yaml", rich, strlen(rich));
	gw_manifest_set_add_file(&set, "tricky.yaml", tricky, strlen(tricky));
	for (size_t i = 0; i < set.diags.n; i++)
		fprintf(stderr, "%s:%u:%u: %s\n", set.diags.v[i].file, set.diags.v[i].line, set.diags.v[i].col,
			set.diags.v[i].msg);
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 4);
	for (size_t i = 0; i < set.n; i++) {
		struct gw_resource *r = set.v[i];
		for (int resolved = 0; resolved < 2; resolved++) {
			if (resolved && r->secrets)
				for (size_t j = 0; j < r->secret_env_files.n; j++)
					snprintf(r->secrets[j].blob, sizeof(r->secrets[j].blob), "%040zu", j);
			char *fast = gw_resource__canonical_fast(r), *slow = gw_resource__canonical_jansson(r);
			assert_non_null(fast);
			assert_string_equal(fast, slow);
			/* and the hash is the SHA-256 of it, in lower-case hex */
			gw_resource_finalize(r);
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int mdlen = 0;
			char hexd[65];
			EVP_Digest(slow, strlen(slow), md, &mdlen, EVP_sha256(), NULL);
			assert_int_equal(mdlen, 32);
			for (unsigned k = 0; k < 32; k++)
				snprintf(hexd + 2 * k, 3, "%02x", md[k]);
			assert_string_equal(r->spec_hash, hexd);
			assert_string_equal(r->canonical, slow);
			free(fast);
			free(slow);
		}
	}
	/* not UTF-8: left to jansson */
	struct gw_resource *t = set.v[3];
	assert_string_equal(t->name, "t");
	free(t->command.v[4]);
	t->command.v[4] = gw_xstrdup("\xff\xfe");
	assert_null(gw_resource__canonical_fast(t));
	gw_resource_finalize(t);
	char *slow = gw_resource__canonical_jansson(t);
	assert_string_equal(t->canonical, slow);
	free(slow);
	/* every other kind of bad UTF-8: refused by the direct writer too, and
	 * the canonical form is then jansson's */
	static const char *const bad[] = {
		"\xc0\x80", /* overlong NUL */
		"\xe0\x80\x80", /* overlong, 3 bytes */
		"\xf0\x80\x80\x80", /* overlong, 4 bytes */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xed\xa0\x80", /* a surrogate */
		"\xc3\x28", /* a bad continuation byte */
		"\xe4\xb8", /* cut short */
		"\xf8\x88\x80\x80\x80", /* 5 bytes */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(t->command.v[4]);
		t->command.v[4] = gw_xstrdup(bad[i]);
		char *fast = gw_resource__canonical_fast(t);
		if (fast)
			fail_msg("bad UTF-8 %zu: written as %s", i, fast);
		gw_resource_finalize(t);
		slow = gw_resource__canonical_jansson(t);
		assert_string_equal(t->canonical, slow);
		free(slow);
	}
	gw_manifest_set_free(&set);
}

static void put64(char *at, uint64_t v)
{
	memcpy(at, &v, sizeof(v));
}

/* Each field read past what it may be: the resource is refused. */
static void test_resource_fields_out_of_bounds_are_refused(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "rich.yaml", rich, strlen(rich));
	assert_int_equal(set.n, 3);
	struct gw_resource *r = set.v[0]; /* kind, "p", labels {b: 2, tier: web}, line... */
	assert_string_equal(r->name, "p");
	char *bytes = put(r);
	size_t len = put_len(r);
	struct {
		size_t at;
		uint64_t v;
		int byte;
	} patches[] = {
		{ 0, 99, -1 }, /* a kind that does not exist */
		{ 8, UINT64_MAX, -1 }, /* no name */
		{ 8, 1u << 30, -1 }, /* a name longer than the rest */
		{ 16, 0, '\0' }, /* a NUL inside the name */
		{ 17, 1u << 30, -1 }, /* more labels than bytes */
		{ 33, 0, 'z' }, /* labels out of order: z before tier */
		{ 34, UINT64_MAX, -1 }, /* a label without a value */
		{ 66, 1ull << 33, -1 }, /* a line past 32 bits */
		{ len - 72, 63, -1 }, /* a hash of 63 characters */
	};
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		char *b = gw_xmalloc(len);
		memcpy(b, bytes, len);
		if (patches[i].byte >= 0)
			b[patches[i].at] = (char)patches[i].byte;
		else
			put64(b + patches[i].at, patches[i].v);
		const char *q = b;
		struct gw_resource *back = gw_manifest_cache__get_resource(&q, b + len, "x");
		if (back)
			fail_msg("patch %zu: decoded anyway", i);
		assert_ptr_equal(q, b); /* nothing consumed */
		free(b);
	}
	/* unpatched, it decodes (the offsets above are the right ones) */
	const char *q = bytes;
	struct gw_resource *back = gw_manifest_cache__get_resource(&q, bytes + len, "x");
	assert_non_null(back);
	assert_string_equal(back->labels.k[0], "b");
	assert_string_equal(back->labels.k[1], "tier");
	assert_int_equal(back->line, r->line);
	gw_resource_free(back);
	free(bytes);
	gw_manifest_set_free(&set);
}

/* A cache file with a good digest around entries that are not: refused as
 * malformed (or, for entries that do not decode, a miss at use). */
struct crafted {
	char *dir;
	char path[512];
	char *head; /* the header without the count */
	size_t hlen;
};

static void crafted_init(struct crafted *cf)
{
	struct gw_error err;
	cf->dir = tmpdir();
	snprintf(cf->path, sizeof(cf->path), "%s/cache", cf->dir);
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_save(c, cf->path, &err), 0);
	gw_manifest_cache_free(c);
	size_t len;
	assert_int_equal(gw_file_read(&cf->head, &len, cf->path, 1u << 20, &err), 0);
	cf->hlen = len - 8 - 32;
}

static void crafted_free(struct crafted *cf)
{
	unlink(cf->path);
	rmdir(cf->dir);
	free(cf->dir);
	free(cf->head);
}

/* Write header + body + HMAC-SHA256 with a key of ours at PATH.key (what
 * the agent's key is to whoever can read it); load it; the load's return
 * code. */
static int crafted_load(struct crafted *cf, const struct gw_strbuf *body, struct gw_manifest_cache *c,
			struct gw_error *err)
{
	struct gw_strbuf sb;
	unsigned char md[32], key[32];
	unsigned int mdlen = 0;
	char kp[700];
	memset(key, 'k', sizeof(key));
	snprintf(kp, sizeof(kp), "%s.key", cf->path);
	write_bytes(kp, (const char *)key, sizeof(key));
	assert_int_equal(chmod(kp, 0600), 0);
	gw_strbuf_init(&sb);
	gw_strbuf_add(&sb, cf->head, cf->hlen);
	gw_strbuf_add(&sb, body->s, body->len);
	HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)sb.s, sb.len, md, &mdlen);
	gw_strbuf_add(&sb, (const char *)md, sizeof(md));
	write_bytes(cf->path, sb.s, sb.len);
	gw_strbuf_free(&sb);
	return gw_manifest_cache_load(c, cf->path, err);
}

static void add64(struct gw_strbuf *sb, uint64_t v)
{
	gw_strbuf_add(sb, (const char *)&v, sizeof(v));
}

/* one entry: id of idlen bytes (filled with fill), blob length, data */
static void entry(struct gw_strbuf *sb, uint64_t idlen, int fill, uint64_t blen, const char *data, uint64_t dlen,
		  size_t dhave)
{
	unsigned char id[64];
	memset(id, fill, sizeof(id));
	add64(sb, idlen);
	add64(sb, blen);
	gw_strbuf_add(sb, (const char *)id, idlen < sizeof(id) ? idlen : sizeof(id));
	add64(sb, dlen);
	gw_strbuf_add(sb, data, dhave);
}

static void test_malformed_cache_entries_are_refused(void **state)
{
	(void)state;
	struct crafted cf;
	struct gw_error err;
	char want[700];
	crafted_init(&cf);
	snprintf(want, sizeof(want), "%s: malformed entries", cf.path);
	struct gw_strbuf zero;
	gw_strbuf_init(&zero);
	add64(&zero, 0);
	const char *zeros = zero.s; /* 8 bytes: an entry of 0 resources */
	for (int k = 0; k < 9; k++) {
		struct gw_strbuf b;
		gw_strbuf_init(&b);
		switch (k) {
		case 0: /* more entries than bytes */
			add64(&b, 1000);
			break;
		case 1: /* an empty id */
			add64(&b, 1);
			entry(&b, 0, 1, 10, zeros, 8, 8);
			gw_strbuf_add(&b, zeros, 8);
			break;
		case 2: /* an id longer than any blob id */
			add64(&b, 1);
			entry(&b, 33, 1, 10, zeros, 8, 8);
			break;
		case 3: /* an id longer than the file */
			add64(&b, 1);
			add64(&b, 20);
			add64(&b, 10);
			add64(&b, 20);
			add64(&b, 0);
			break;
		case 4: /* data longer than the file */
			add64(&b, 1);
			entry(&b, 20, 1, 10, zeros, 4096, 8);
			break;
		case 5: /* a blob bigger than a manifest file may be */
			add64(&b, 1);
			entry(&b, 20, 1, (1u << 20) + 1, zeros, 8, 8);
			break;
		case 6: /* bytes after the last entry */
			add64(&b, 1);
			entry(&b, 20, 1, 10, zeros, 8, 8);
			gw_strbuf_add(&b, "x", 1);
			break;
		case 7: /* cut inside an entry's lengths */
			add64(&b, 1);
			add64(&b, 20);
			gw_strbuf_add(&b, zeros, 8);
			gw_strbuf_add(&b, zeros, 8);
			gw_strbuf_add(&b, zeros, 8);
			break;
		case 8: /* cut after the id */
			add64(&b, 1);
			add64(&b, 20);
			add64(&b, 10);
			gw_strbuf_add(&b, "0123456789012345678", 19);
			gw_strbuf_add(&b, "0123456789012345678", 19);
			gw_strbuf_add(&b, "\x7f\x7f", 2);
			break;
		}
		struct gw_manifest_cache *c = gw_manifest_cache_new();
		int rc = crafted_load(&cf, &b, c, &err);
		if (rc != -EINVAL || strcmp(err.msg, want) != 0)
			fail_msg("case %d: %d %s", k, rc, err.msg);
		assert_int_equal(gw_manifest_cache_count(c), 0);
		gw_manifest_cache_free(c);
		gw_strbuf_free(&b);
	}
	gw_strbuf_free(&zero);
	crafted_free(&cf);
}

/* Entries with a good digest whose resources do not decode: a miss, and the
 * fresh read takes over; the same id twice: the last one counts. */
static void test_undecodable_entries_are_misses(void **state)
{
	(void)state;
	struct crafted cf;
	struct gw_error err;
	crafted_init(&cf);
	unsigned char idA[20], idB[20], idC[20], idD[20];
	memset(idA, 0xa, sizeof(idA));
	memset(idB, 0xb, sizeof(idB));
	memset(idC, 0xc, sizeof(idC));
	memset(idD, 0xd, sizeof(idD));
	struct gw_strbuf b, d;
	gw_strbuf_init(&b);
	gw_strbuf_init(&d);
	add64(&b, 5);
	/* A: says one resource, holds none */
	add64(&d, 1);
	entry(&b, 20, 0xa, 10, d.s, d.len, d.len);
	/* B: more resources than bytes */
	d.len = 0;
	add64(&d, 1u << 20);
	entry(&b, 20, 0xb, 10, d.s, d.len, d.len);
	/* C: no resources, then a stray byte */
	d.len = 0;
	add64(&d, 0);
	gw_strbuf_add(&d, "!", 1);
	entry(&b, 20, 0xc, 10, d.s, d.len, d.len);
	/* D twice: first with junk, then empty and good */
	entry(&b, 20, 0xd, 10, "junkjunkj", 9, 9);
	d.len = 0;
	add64(&d, 0);
	entry(&b, 20, 0xd, 10, d.s, d.len, d.len);
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	assert_int_equal(crafted_load(&cf, &b, c, &err), 0);
	assert_int_equal(gw_manifest_cache_count(c), 4);
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	set.cache = c;
	assert_int_equal(gw_manifest_set_add_cached(&set, "a.yaml", idA, sizeof(idA)), 0);
	assert_int_equal(gw_manifest_set_add_cached(&set, "b.yaml", idB, sizeof(idB)), 0);
	assert_int_equal(gw_manifest_set_add_cached(&set, "c.yaml", idC, sizeof(idC)), 0);
	assert_int_equal(set.n, 0);
	assert_int_equal(set.files, 0);
	assert_int_equal(gw_manifest_set_add_cached(&set, "d.yaml", idD, sizeof(idD)), 1);
	assert_int_equal(set.files, 1);
	assert_int_equal(set.bytes, 10);
	size_t hits, misses;
	gw_manifest_cache_stats(c, &hits, &misses);
	assert_int_equal(hits, 1);
	assert_int_equal(misses, 3);
	/* no id, or one longer than a blob id: not looked up, not stored */
	assert_int_equal(gw_manifest_set_add_cached(&set, "e.yaml", idA, 0), 0);
	assert_int_equal(gw_manifest_set_add_cached(&set, "e.yaml", idA, 33), 0);
	gw_manifest_set_add_blob(&set, "e.yaml", idA, 0, rich, strlen(rich));
	assert_int_equal(set.n, 3);
	assert_int_equal(gw_manifest_cache_count(c), 4);
	/* a fresh read of A replaces the loaded (unowned) entry */
	gw_manifest_set_add_blob(&set, "a.yaml", idA, sizeof(idA), rich, strlen(rich));
	assert_int_equal(set.n, 6);
	assert_int_equal(gw_manifest_cache_count(c), 4);
	gw_manifest_set_free(&set);
	gw_manifest_set_init(&set);
	set.cache = c;
	assert_int_equal(gw_manifest_set_add_cached(&set, "a.yaml", idA, sizeof(idA)), 1);
	assert_int_equal(set.n, 3);
	/* past the file-count bound: counted as a fresh read does, nothing taken */
	set.files = GW_MANIFEST_FILES_MAX;
	assert_int_equal(gw_manifest_set_add_cached(&set, "a2.yaml", idA, sizeof(idA)), 1);
	assert_int_equal(set.n, 3);
	gw_manifest_set_free(&set);
	gw_manifest_cache_free(c);
	gw_strbuf_free(&b);
	gw_strbuf_free(&d);
	crafted_free(&cf);
}

/* Many entries: the table grows and every one is still found, also after a
 * save and load. */
/* A .gitwardignore is compiled once per blob id (and --exclude list): the
 * cache keeps the rules for the next pass, a heal of the same commit. */
static void test_compiled_ignore_rules_are_kept_per_key(void **state)
{
	(void)state;
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	assert_null(gw_manifest_cache_ignore(c, "abc"));
	assert_null(gw_manifest_cache_ignore(NULL, "abc"));
	struct gw_ignore *ig = gw_ignore_new();
	gw_ignore_add_pattern(ig, "docs/");
	const struct gw_ignore *kept = gw_manifest_cache_keep_ignore(c, "abc", ig);
	assert_ptr_equal(kept, ig);
	assert_ptr_equal(gw_manifest_cache_ignore(c, "abc"), ig);
	assert_null(gw_manifest_cache_ignore(c, "abc\n--exclude"));
	assert_string_equal(gw_ignore_match(gw_manifest_cache_ignore(c, "abc"), "docs/x.yaml", false),
			    "--exclude docs/");
	/* another blob replaces them */
	struct gw_ignore *other = gw_ignore_new();
	assert_ptr_equal(gw_manifest_cache_keep_ignore(c, "def", other), other);
	assert_null(gw_manifest_cache_ignore(c, "abc"));
	gw_manifest_cache_free(c);
}

static void test_many_entries_survive_growth_and_a_round_trip(void **state)
{
	(void)state;
	struct crafted cf;
	struct gw_error err;
	crafted_init(&cf);
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	struct gw_manifest_set set;
	const char one[] = HDR "kind: Process\nmetadata: {name: one}\nspec: {command: [/bin/true]}\n";
	gw_manifest_set_init(&set);
	set.cache = c;
	for (unsigned i = 0; i < 300; i++) {
		unsigned char id[20] = { 0 };
		char file[32];
		memcpy(id, &i, sizeof(i));
		snprintf(file, sizeof(file), "f%u.yaml", i);
		gw_manifest_set_add_blob(&set, file, id, sizeof(id), one, strlen(one));
	}
	gw_manifest_set_free(&set);
	assert_int_equal(gw_manifest_cache_count(c), 300);
	assert_int_equal(gw_manifest_cache_save(c, cf.path, &err), 0);
	gw_manifest_cache_free(c);
	c = gw_manifest_cache_new();
	assert_int_equal(gw_manifest_cache_load(c, cf.path, &err), 0);
	assert_int_equal(gw_manifest_cache_count(c), 300);
	gw_manifest_set_init(&set);
	set.cache = c;
	for (unsigned i = 0; i < 300; i++) {
		unsigned char id[20] = { 0 };
		memcpy(id, &i, sizeof(i));
		assert_int_equal(gw_manifest_set_add_cached(&set, "f.yaml", id, sizeof(id)), 1);
	}
	assert_int_equal(set.n, 300);
	gw_manifest_set_free(&set);

	/* a save that cannot write: the error names the file, nothing replaced */
	char bad[600], want[700];
	snprintf(bad, sizeof(bad), "%s/no/such/dir/cache", cf.dir);
	assert_true(gw_manifest_cache_save(c, bad, &err) < 0);
	snprintf(want, sizeof(want), "%s.key: No such file or directory", bad);
	assert_string_equal(err.msg, want);
	snprintf(bad, sizeof(bad), "%s/adir", cf.dir);
	assert_int_equal(mkdir(bad, 0700), 0);
	assert_true(gw_manifest_cache_save(c, bad, &err) < 0);
	snprintf(want, sizeof(want), "%s: Is a directory", bad);
	assert_string_equal(err.msg, want);
	snprintf(want, sizeof(want), "%s.tmp.%d", bad, (int)getpid());
	assert_int_equal(access(want, F_OK), -1); /* the temporary file is gone */
	rmdir(bad);
	char *longpath = gw_xmalloc(5000);
	memset(longpath, 'a', 4999);
	longpath[4999] = '\0';
	assert_int_equal(gw_manifest_cache_save(c, longpath, &err), -ENAMETOOLONG);
	assert_int_equal(strncmp(err.msg, "aaaaaaaa", 8), 0); /* the path, cut to fit the message */
	free(longpath);
	gw_manifest_cache_free(c);
	crafted_free(&cf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resource_round_trips_field_for_field),
		cmocka_unit_test(test_only_clean_files_are_cached_and_hits_match_a_fresh_read),
		cmocka_unit_test(test_cache_file_is_verified_before_use),
		cmocka_unit_test(test_canonical_writer_matches_jansson_byte_for_byte),
		cmocka_unit_test(test_resource_fields_out_of_bounds_are_refused),
		cmocka_unit_test(test_malformed_cache_entries_are_refused),
		cmocka_unit_test(test_undecodable_entries_are_misses),
		cmocka_unit_test(test_many_entries_survive_growth_and_a_round_trip),
		cmocka_unit_test(test_compiled_ignore_rules_are_kept_per_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
