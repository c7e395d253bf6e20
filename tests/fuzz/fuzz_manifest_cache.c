/* Fuzz target for the manifest cache reader: any bytes as a cache file
 * (sealed with the key beside it, so that inputs get past the digest to the
 * decoder) must load or be refused, and each entry must come back as
 * resources that pass the rules of a parsed manifest, or be a miss: never
 * crash, leak or hang. The corpus holds files the agent wrote (less their
 * digest), whose entries decode. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/manifest_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[128], key_file[160];

static void cleanup(void)
{
	unlink(path);
	unlink(key_file);
	rmdir(dir);
}

static int write_all(const char *p, const void *a, size_t alen, const void *b, size_t blen)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int ok = write(fd, a, alen) == (ssize_t)alen && write(fd, b, blen) == (ssize_t)blen;
	return close(fd) == 0 && ok ? 0 : -1;
}

static uint64_t u64_at(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[32] = "gitward fuzz key, not a secret.";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct gw_error err;

	if (size > (1u << 22))
		return 0;
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/gw-fuzz-mcache-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof(path), "%s/cache", dir);
		snprintf(key_file, sizeof(key_file), "%s/cache.key", dir);
		if (write_all(key_file, key, sizeof(key), "", 0) < 0)
			abort();
		atexit(cleanup);
	}
	HMAC(EVP_sha256(), key, sizeof(key), data, size, md, &mdlen);
	if (write_all(path, data, size, md, mdlen) < 0)
		abort();
	struct gw_manifest_cache *c = gw_manifest_cache_new();
	/* the corpus replay (ctest) sets this: every seed must load and give
	 * resources back, or the fuzzer would stop at the decoder */
	bool must_decode = getenv("GW_FUZZ_MUST_DECODE") != NULL;
	size_t hits = 0, misses = 0;
	int rc = gw_manifest_cache_load(c, path, &err);
	if (rc < 0 && must_decode) {
		fprintf(stderr, "seed refused: %s\n", err.msg);
		abort();
	}
	if (rc == 0) {
		/* every entry's id, walked as the reader does, is asked for */
		struct gw_manifest_set set;
		gw_manifest_set_init(&set);
		set.cache = c;
		size_t pos = 48; /* magic and five numbers, the last the count */
		uint64_t n = size >= pos ? u64_at(data + 40) : 0;
		for (uint64_t i = 0; i < n && pos + 16 <= size; i++) {
			uint64_t idlen = u64_at(data + pos), dlen;
			if (idlen == 0 || idlen > GW_BLOB_ID_MAX || pos + 24 + idlen > size)
				break;
			const unsigned char *id = data + pos + 16;
			dlen = u64_at(data + pos + 16 + idlen);
			gw_manifest_set_add_cached(&set, "apps/f.yaml", id, (size_t)idlen);
			if (dlen > size - pos - 24 - idlen)
				break;
			pos += 24 + idlen + dlen;
		}
		gw_manifest_set_finish(&set);
		gw_manifest_cache_stats(c, &hits, &misses);
		if (must_decode && (hits == 0 || set.n == 0)) {
			fprintf(stderr, "seed decodes to nothing (%zu hits, %zu misses)\n", hits, misses);
			abort();
		}
		gw_manifest_set_free(&set);
	}
	gw_manifest_cache_free(c);
	return 0;
}
