/* The FleetLock client: one bounded POST per request (libcurl; connect and
 * total timeouts, given up at once on a stop request, the answer read up to
 * GW_FLEETLOCK_BODY_MAX), its result counted, and the state dir's marker of
 * a slot this node may hold. Messages show the URL without credentials. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/fleetlock.h"
#include "gitward/pass.h"
#include "gitward/paths.h"

#define DEFAULT_TIMEOUT_MS 30000

static const char *const op_names[GW_FLEETLOCK_OP_MAX] = { "pre-reboot", "steady-state" };
static const char *const result_names[GW_FLEETLOCK_RESULT_MAX] = { "granted", "refused", "error" };

const char *gw_fleetlock_op_to_string(enum gw_fleetlock_op op)
{
	return op_names[op];
}

const char *gw_fleetlock_result_to_string(enum gw_fleetlock_result r)
{
	return result_names[r];
}

struct body {
	char buf[GW_FLEETLOCK_BODY_MAX + 1];
	size_t len;
};

/* what does not fit is dropped, not refused: the status decides */
static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
	struct body *b = ud;
	size_t len = sz * n, room = GW_FLEETLOCK_BODY_MAX - b->len;
	memcpy(b->buf + b->len, p, len < room ? len : room);
	b->len += len < room ? len : room;
	b->buf[b->len] = '\0';
	return len;
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

static char *request_body(const char *id, const char *group)
{
	json_t *doc = json_pack("{s:{s:s,s:s}}", "client_params", "id", id, "group", group);
	char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return s;
}

/* The protocol's error document {"kind": ..., "value": ...}, shown escaped
 * and shortened; "" when the body is not one. */
static void server_reason(char *out, size_t size, const struct body *b)
{
	char esc[300];
	json_t *doc = json_loadb(b->buf, b->len, 0, NULL);
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *value = json_string_value(json_object_get(doc, "value"));
	out[0] = '\0';
	if (kind) {
		int n = snprintf(out, size, ": %s", gw_escape(esc, sizeof(esc), kind));
		if (value && n > 0 && (size_t)n < size)
			snprintf(out + n, size - (size_t)n, " (%s)", gw_escape(esc, sizeof(esc), value));
	}
	json_decref(doc);
}

static void setup(CURL *c, const struct gw_fleetlock_opts *o, const char *url, const char *payload, void *headers,
		  struct body *b, char *ebuf, const struct gw_cancel *cancel)
{
	int64_t total = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	int64_t conn = o->connect_timeout_ms > 0 && o->connect_timeout_ms < total ? o->connect_timeout_ms : total;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)total);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)conn);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
	if (o->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
	if (o->insecure_skip_tls_verify) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

static int finish(enum gw_fleetlock_result *result, const struct gw_fleetlock_opts *o, enum gw_fleetlock_op op,
		  enum gw_fleetlock_result r, int rc)
{
	*result = r;
	if (o->counts)
		atomic_fetch_add(&o->counts->n[op][r], 1);
	return rc;
}

int gw_fleetlock_request(enum gw_fleetlock_result *result, const struct gw_fleetlock_opts *o, enum gw_fleetlock_op op,
			 const char *id, const struct gw_cancel *cancel, struct gw_error *err)
{
	char ebuf[CURL_ERROR_SIZE] = "", why[700];
	struct body *b = gw_xcalloc(1, sizeof(*b));
	size_t ulen = strlen(o->url);
	char *url = NULL, *payload = request_body(id, o->group ? o->group : "default");
	char *shown = gw_url_redacted(o->url);
	struct curl_slist *headers = NULL;
	long code = 0;
	int rc;

	url = gw_xcalloc(1, ulen + 32);
	snprintf(url, ulen + 32, "%s%sv1/%s", o->url, ulen && o->url[ulen - 1] == '/' ? "" : "/", op_names[op]);
	headers = curl_slist_append(headers, "fleet-lock-protocol: true");
	headers = headers ? curl_slist_append(headers, "Content-Type: application/json") : NULL;
	CURL *c = url && payload && headers ? curl_easy_init() : NULL;
	if (!c) {
		rc = finish(result, o, op, GW_FLEETLOCK_ERROR,
			    gw_error_set(err, -ENOMEM, "fleet lock %s: cannot start a request", shown ? shown : ""));
		goto out;
	}
	setup(c, o, url, payload, headers, b, ebuf, cancel);
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (cc != CURLE_OK && gw_cancel_requested(cancel)) {
		rc = finish(result, o, op, GW_FLEETLOCK_ERROR,
			    gw_error_set(err, -ECANCELED, "fleet lock %s at %s: stopped", op_names[op], shown));
	} else if (cc != CURLE_OK) {
		char *msg = gw_url_redacted(ebuf[0] ? ebuf : curl_easy_strerror(cc)); /* may quote the URL */
		rc = finish(
			result, o, op, GW_FLEETLOCK_ERROR,
			gw_error_set(err, -EIO, "fleet lock %s at %s: %s", op_names[op], shown, msg ? msg : "failed"));
		free(msg);
	} else if (code != 200) {
		server_reason(why, sizeof(why), b);
		rc = finish(
			result, o, op, GW_FLEETLOCK_REFUSED,
			gw_error_set(err, -EAGAIN, "fleet lock %s at %s: HTTP %ld%s", op_names[op], shown, code, why));
	} else {
		rc = finish(result, o, op, GW_FLEETLOCK_GRANTED, 0);
	}
out:
	curl_slist_free_all(headers);
	free(url);
	free(payload);
	free(shown);
	free(b);
	return rc;
}

bool gw_fleetlock_marked(const char *state_dir)
{
	char path[4096];
	gw_path_fleet_lock(path, sizeof(path), state_dir);
	return access(path, F_OK) == 0;
}

int gw_fleetlock_mark(const char *state_dir, bool held, struct gw_error *err)
{
	char path[4096];
	gw_path_fleet_lock(path, sizeof(path), state_dir);
	if (held)
		return gw_file_write_atomic(path, "held\n", 5, err);
	if (unlink(path) < 0 && errno != ENOENT)
		return gw_error_set(err, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

static bool disruptive(const struct gw_pass *pass)
{
	return pass->plan.count[GW_ACTION_UPDATE] + pass->plan.count[GW_ACTION_DELETE] > 0;
}

bool gw_pass__fleet_lock_before(const struct gw_pass *pass, const struct gw_pass_opts *opts)
{
	const struct gw_fleetlock_opts *o = &opts->fleet_lock;
	enum gw_fleetlock_result r;
	struct gw_error err = { 0 };

	if (!o->url || pass->hold || pass->held || !disruptive(pass))
		return true;
	if (pass->probe_due_only) {
		gw_log(GW_LOG_INFO, "",
		       "fleet lock: a heal pass asks for no slot; update and delete wait for the next pass");
		return false;
	}
	if (gw_fleetlock_request(&r, o, GW_FLEETLOCK_PRE_REBOOT, opts->node, pass->cancel, &err) < 0) {
		gw_log(GW_LOG_WARN, "", "%s; update and delete held until a slot is granted", err.msg);
		return false;
	}
	gw_log(GW_LOG_INFO, "", "fleet lock: slot granted to %s in group %s", opts->node,
	       o->group ? o->group : "default");
	if (gw_fleetlock_mark(opts->state_dir, true, &err) < 0)
		gw_log(GW_LOG_WARN, "", "fleet lock: the slot is not remembered across a restart: %s", err.msg);
	return true;
}

void gw_pass__fleet_lock_after(const struct gw_pass *pass, const struct gw_pass_opts *opts, bool converged)
{
	const struct gw_fleetlock_opts *o = &opts->fleet_lock;
	enum gw_fleetlock_result r;
	struct gw_error err = { 0 };

	if (!o->url || pass->hold || pass->held || !converged || !gw_fleetlock_marked(opts->state_dir))
		return;
	if (gw_fleetlock_request(&r, o, GW_FLEETLOCK_STEADY_STATE, opts->node, pass->cancel, &err) < 0) {
		gw_log(GW_LOG_WARN, "", "%s; the slot is given back after the next pass that converges", err.msg);
		return;
	}
	gw_log(GW_LOG_INFO, "", "fleet lock: slot released by %s (converged healthy)", opts->node);
	if (gw_fleetlock_mark(opts->state_dir, false, &err) < 0)
		gw_log(GW_LOG_WARN, "", "fleet lock: %s", err.msg);
}
