/* The POST of the HTTP sinks (the webhook, the forges' commit statuses):
 * libcurl, bounded by its timeouts, given up soon after the events thread
 * is stopped; errors name the sink as shown (URLs redacted, no header). */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>

#include "gitward/notify.h"

#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 10000L

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

/* libcurl calls this about once a second, also while it connects */
static int progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return gw_cancel_requested(ud) ? 1 : 0;
}

int gw_notify__post(const char *shown, const char *url, const char *body, void *headers, const struct gw_cancel *stop,
		    struct gw_error *err)
{
	char ebuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	CURL *c = curl_easy_init();
	if (!c)
		return gw_error_set(err, -ENOMEM, "%s: cannot start a request", shown);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)stop);
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (cc != CURLE_OK) {
		/* the error text may quote the URL: redacted */
		char *why = gw_url_redacted(ebuf[0] ? ebuf : curl_easy_strerror(cc));
		gw_error_set(err, -EIO, "POST %s: %s", shown, why ? why : "failed");
		free(why);
		return -EIO;
	}
	if (code < 200 || code >= 300)
		return gw_error_set(err, -EIO, "POST %s: HTTP %ld", shown, code);
	return 0;
}
