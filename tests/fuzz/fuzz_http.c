/* Fuzz target for the agent's HTTP front without sockets: any request
 * (method, path, headers, body) must give a response, never a crash, leak or
 * a pass triggered without a valid signature.
 *
 * Input: a method line, a path line, "Name: value" header lines, an empty
 * line, then the body. A header value "@github", "@hex" or "@secret" stands
 * for the valid X-Hub-Signature-256, hex HMAC or token of that body, so the
 * accepting paths are reached too. */
#define _GNU_SOURCE
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "endpoints.h"

#define SECRET "fuzz-secret"
#define MAX_HEADERS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct headers {
	size_t n;
	char *name[MAX_HEADERS], *value[MAX_HEADERS];
};

static const char *lookup(void *ud, const char *name)
{
	struct headers *h = ud;
	for (size_t i = 0; i < h->n; i++)
		if (!strcasecmp(h->name[i], name))
			return h->value[i];
	return NULL;
}

static void quiet(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *msg,
		  void *ud)
{
	(void)level;
	(void)key;
	(void)fields;
	(void)msg;
	(void)ud;
}

/* The next line of [*p, end) as a NUL-terminated copy, or NULL at the end. */
static char *next_line(const char **p, const char *end)
{
	if (*p >= end)
		return NULL;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *stop = nl ? nl : end;
	char *line = gw_xstrndup(*p, (size_t)(stop - *p));
	*p = nl ? nl + 1 : end;
	return line;
}

static char *signature(const char *kind, const char *body, size_t len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 8];

	if (!strcmp(kind, "@secret"))
		return gw_xstrdup(SECRET);
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)(len ? body : ""), len, mac, &maclen);
	size_t off = 0;
	if (!strcmp(kind, "@github")) {
		memcpy(hex, "sha256=", 7);
		off = 7;
	}
	for (unsigned i = 0; i < maclen; i++)
		snprintf(hex + off + 2 * i, 3, "%02x", mac[i]);
	return gw_xstrdup(hex);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gw_metrics m;
	static int ready;
	struct headers h = { 0 };
	const char *p = (const char *)data, *end = p + size;
	char *method, *url, *line;

	if (size > (1u << 20) + 4096)
		return 0;
	if (!ready) {
		struct gw_config cfg;
		gw_config_init(&cfg);
		cfg.interval_ms = 30000;
		cfg.state_dir = "/nonexistent/gitward-fuzz";
		gw_metrics_init(&m, &cfg);
		gw_log_set_handler(quiet, NULL, GW_LOG_DEBUG);
		ready = 1;
	}
	method = next_line(&p, end);
	url = next_line(&p, end);
	while ((line = next_line(&p, end)) && *line && h.n < MAX_HEADERS) {
		char *colon = strchr(line, ':');
		if (!colon) {
			free(line);
			continue;
		}
		*colon = '\0';
		h.name[h.n] = line;
		h.value[h.n++] = gw_xstrdup(colon[1] == ' ' ? colon + 2 : colon + 1);
		line = NULL;
	}
	free(line);
	const char *body = p < end ? p : NULL;
	size_t len = (size_t)(end - p);
	for (size_t i = 0; i < h.n; i++)
		if (h.value[i][0] == '@') {
			char *v = signature(h.value[i], body, len);
			free(h.value[i]);
			h.value[i] = v;
		}

	struct gw_endpoints ep = { .m = &m, .secret = SECRET, .secret_len = strlen(SECRET) };
	struct gw_http_request req = { .method = method,
				       .url = url,
				       .header = lookup,
				       .header_ud = &h,
				       .body = body,
				       .body_len = len,
				       .body_too_large = len > GW_HOOK_BODY_MAX };
	struct gw_http_response res;
	gw_endpoints_handle(&res, &ep, &req);
	if (!res.status || !res.content_type || !res.body)
		abort();
	if (res.trigger && res.status != 202)
		abort();
	free(res.body);
	for (size_t i = 0; i < h.n; i++) {
		free(h.name[i]);
		free(h.value[i]);
	}
	free(method);
	free(url);
	return 0;
}
