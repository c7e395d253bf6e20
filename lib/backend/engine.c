/* Docker Engine API over a unix socket: one libcurl easy handle per request
 * (safe from several threads), bounded by a timeout, JSON in and out. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "gitward/engine.h"

#define REPLY_MAX (64u << 20)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *gw_engine_default_socket(const char *explicit_path)
{
	static const char *const defaults[] = { "/run/podman/podman.sock", "/var/run/docker.sock" };
	struct stat st;
	if (explicit_path && *explicit_path)
		return explicit_path;
	for (size_t i = 0; i < 2; i++)
		if (stat(defaults[i], &st) == 0)
			return defaults[i];
	return defaults[0];
}

struct reply {
	struct gw_strbuf buf;
	int too_big;
	char api_version[16]; /* the Api-Version header, when sent */
};

static size_t on_header(char *ptr, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = size * n;
	if (len > 13 && strncasecmp(ptr, "Api-Version:", 12) == 0) {
		const char *v = ptr + 12;
		while (*v == ' ')
			v++;
		size_t k = 0;
		while (k + 1 < sizeof(r->api_version) && v + k < ptr + len &&
		       (v[k] == '.' || (v[k] >= '0' && v[k] <= '9'))) {
			r->api_version[k] = v[k];
			k++;
		}
		r->api_version[k] = '\0';
	}
	return len;
}

static size_t on_data(char *ptr, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = size * n;
	if (r->buf.len + len > REPLY_MAX) {
		r->too_big = 1;
		return 0;
	}
	gw_strbuf_add(&r->buf, ptr, len);
	return len;
}

const char *gw_engine_message(const json_t *reply)
{
	const char *m = json_string_value(json_object_get(reply, "message"));
	if (!m)
		m = json_string_value(json_object_get(reply, "cause"));
	return m ? m : "no message";
}

/* libcurl calls this at least once a second: nonzero aborts the call. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return gw_cancel_requested(ud);
}

/* Options of one request to the engine's socket. */
static void setup(CURL *c, struct reply *r, char *ebuf, const char *socket_path, const char *url, const char *method,
		  int64_t timeout_ms, const struct gw_cancel *cancel)
{
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	if (cancel) {
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
	}
}

/* A transfer that failed: err names the engine, the request and the cause. */
static int transfer_error(struct gw_error *err, CURLcode cc, const struct reply *r, const char *ebuf,
			  const char *socket_path, const char *url, const char *method)
{
	int e = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO;
	if (r->too_big)
		gw_error_set(err, -EFBIG, "container engine at %s: reply larger than %u bytes", socket_path, REPLY_MAX);
	else if (cc == CURLE_COULDNT_CONNECT)
		gw_error_set(err, e, "container engine at %s is unreachable (%s)", socket_path, curl_easy_strerror(cc));
	else
		gw_error_set(err, e, "container engine at %s: %s %s: %s", socket_path, method,
			     strchr(url + 7, '/') ? strchr(url + 7, '/') : url,
			     ebuf[0] ? ebuf : curl_easy_strerror(cc));
	return e;
}

static int do_call(json_t **out, long *status, char *api_version, const char *socket_path, const char *url,
		   const char *method, json_t *body, int64_t timeout_ms, const struct gw_cancel *cancel,
		   struct gw_error *err)
{
	CURL *c;
	struct curl_slist *hdr = NULL;
	struct reply r;
	char ebuf[CURL_ERROR_SIZE] = "";
	char *payload = NULL;
	long code = 0;

	pthread_once(&curl_once, curl_init);
	c = curl_easy_init();
	if (!c)
		return gw_error_set(err, -ENOMEM, "cannot create an HTTP client");
	gw_strbuf_init(&r.buf);
	r.too_big = 0;
	r.api_version[0] = '\0';
	setup(c, &r, ebuf, socket_path, url, method, timeout_ms, cancel);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
	}
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdr);
	free(payload);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		gw_strbuf_free(&r.buf);
		return gw_error_set(err, -ECANCELED, "container engine at %s: %s abandoned: the agent is stopping",
				    socket_path, method);
	}
	if (cc != CURLE_OK) {
		int e = transfer_error(err, cc, &r, ebuf, socket_path, url, method);
		gw_strbuf_free(&r.buf);
		return e;
	}
	*status = code;
	if (api_version)
		memcpy(api_version, r.api_version, sizeof(r.api_version));
	*out = r.buf.len ? json_loadb(r.buf.s, r.buf.len, JSON_DECODE_ANY, NULL) : NULL;
	if (r.buf.len && !*out) {
		/* a stream of JSON objects (pull progress): keep the text */
		*out = json_pack("{s:s%}", "stream", r.buf.s, r.buf.len);
	}
	gw_strbuf_free(&r.buf);
	return 0;
}

int gw_engine_call(json_t **out, long *status, const struct gw_engine *e, const char *method, const char *path,
		   json_t *body, int64_t timeout_ms, struct gw_error *err)
{
	char url[8192];
	snprintf(url, sizeof(url), "http://d/v%s%s", e->version, path);
	return do_call(out, status, NULL, e->socket, url, method, body, timeout_ms, e->cancel, err);
}

static int version_cmp(const char *a, const char *b)
{
	unsigned a1 = 0, a2 = 0, b1 = 0, b2 = 0;
	sscanf(a, "%u.%u", &a1, &a2);
	sscanf(b, "%u.%u", &b1, &b2);
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	return a2 < b2 ? -1 : a2 > b2;
}

int gw_engine_connect(struct gw_engine *out, const char *socket_path, int64_t timeout_ms, struct gw_error *err)
{
	json_t *v = NULL;
	long status = 0;
	int rc;
	struct gw_engine e;
	char api[16] = "";
	const char *min = NULL;

	memset(&e, 0, sizeof(e));
	snprintf(e.socket, sizeof(e.socket), "%s", gw_engine_default_socket(socket_path));
	/* /_ping is cheap and names the API version in a header; /version can
	 * take a third of a second on Podman (it asks every runtime binary) */
	rc = do_call(&v, &status, api, e.socket, "http://d/_ping", "GET", NULL, timeout_ms, NULL, err);
	if (rc < 0)
		return rc;
	json_decref(v);
	v = NULL;
	if (status != 200 || !api[0]) {
		rc = do_call(&v, &status, NULL, e.socket, "http://d/version", "GET", NULL, timeout_ms, NULL, err);
		if (rc < 0)
			return rc;
		const char *a = json_string_value(json_object_get(v, "ApiVersion"));
		if (status != 200 || !a) {
			json_decref(v);
			return gw_error_set(err, -EPROTO,
					    "container engine at %s: /version answered HTTP %ld without ApiVersion",
					    e.socket, status);
		}
		snprintf(api, sizeof(api), "%s", a);
		min = json_string_value(json_object_get(v, "MinAPIVersion"));
	}
	if (version_cmp(api, GW_ENGINE_API_MIN) < 0) {
		gw_error_set(err, -EPROTONOSUPPORT, "container engine at %s speaks API %s; gitward needs %s or later",
			     e.socket, api, GW_ENGINE_API_MIN);
		json_decref(v);
		return -EPROTONOSUPPORT;
	}
	/* speak the engine's newest version, up to the newest we know: old
	 * enough for every engine from 1.41 on, new enough for engines that
	 * retire old versions (Docker 29 accepts nothing below 1.44) */
	snprintf(e.version, sizeof(e.version), "%s", version_cmp(api, GW_ENGINE_API_MAX) > 0 ? GW_ENGINE_API_MAX : api);
	if (min && version_cmp(min, e.version) > 0) {
		gw_error_set(err, -EPROTONOSUPPORT,
			     "container engine at %s needs API %s or later; gitward speaks up to %s", e.socket, min,
			     GW_ENGINE_API_MAX);
		json_decref(v);
		return -EPROTONOSUPPORT;
	}
	json_decref(v);
	*out = e;
	return 0;
}

struct stream {
	struct gw_strbuf line;
	int (*on_line)(const char *line, size_t len, void *ud);
	void *ud;
	int stopped;
};

static size_t on_stream(char *ptr, size_t size, size_t n, void *ud)
{
	struct stream *st = ud;
	size_t len = size * n;
	for (size_t i = 0; i < len; i++) {
		if (ptr[i] != '\n') {
			if (st->line.len < REPLY_MAX)
				gw_strbuf_add(&st->line, ptr + i, 1);
			continue;
		}
		if (st->line.len && st->on_line(st->line.s, st->line.len, st->ud) < 0) {
			st->stopped = 1;
			return 0;
		}
		st->line.len = 0;
		if (st->line.s)
			st->line.s[0] = '\0';
	}
	return len;
}

int gw_engine_stream(const struct gw_engine *e, const char *path,
		     int (*on_line)(const char *line, size_t len, void *ud), void *ud, struct gw_error *err)
{
	char url[8192], ebuf[CURL_ERROR_SIZE] = "";
	struct stream st = { .on_line = on_line, .ud = ud };
	CURL *c;

	pthread_once(&curl_once, curl_init);
	c = curl_easy_init();
	if (!c)
		return gw_error_set(err, -ENOMEM, "cannot create an HTTP client");
	gw_strbuf_init(&st.line);
	snprintf(url, sizeof(url), "http://d/v%s%s", e->version, path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, e->socket);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)e->cancel);
	CURLcode cc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	gw_strbuf_free(&st.line);
	if (cc == CURLE_ABORTED_BY_CALLBACK || st.stopped)
		return 0;
	if (cc != CURLE_OK)
		return gw_error_set(err, cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO,
				    "container engine at %s: event stream: %s", e->socket,
				    ebuf[0] ? ebuf : curl_easy_strerror(cc));
	if (code >= 400)
		return gw_error_set(err, -EIO, "container engine at %s: event stream: HTTP %ld", e->socket, code);
	return gw_error_set(err, -EPIPE, "container engine at %s: the event stream ended", e->socket);
}
