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
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

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
	gw_manifest_set_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resource_round_trips_field_for_field),
		cmocka_unit_test(test_only_clean_files_are_cached_and_hits_match_a_fresh_read),
		cmocka_unit_test(test_cache_file_is_verified_before_use),
		cmocka_unit_test(test_canonical_writer_matches_jansson_byte_for_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
