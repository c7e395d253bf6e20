/* Commit statuses on a forge (--commit-status): a sink of the events
 * thread that takes only GW_EVENT_COMMIT_STATUS and POSTs it the way the
 * forge documents. GitHub and Gitea: POST {api}/repos/OWNER/NAME/statuses/SHA
 * {"state","context","description"}; GitLab: POST
 * {api}/projects/ID/statuses/SHA {"state","name","description"} (failure is
 * "failed" there). The token goes in a header only: never in a URL, a log
 * line or an error. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/notify.h"

enum forge_kind { FORGE_GITHUB, FORGE_GITLAB, FORGE_GITEA };

struct forge {
	struct gw_notify_sink base;
	enum forge_kind kind;
	char *base_url; /* {api}/repos/OWNER/NAME/statuses/ or {api}/projects/ID/statuses/ */
	char *auth; /* the header that carries the token */
};

#define DESCRIPTION_MAX 140

/* s cut to at most max bytes, never inside a UTF-8 sequence */
static void cut_utf8(char *s, size_t max)
{
	size_t len = strlen(s);
	if (len <= max)
		return;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	s[max] = '\0';
}

static int forge_deliver(struct gw_notify_sink *s, const struct gw_event *ev, const struct gw_cancel *stop,
			 struct gw_error *err)
{
	struct forge *f = (struct forge *)s;
	char context[300], desc[DESCRIPTION_MAX + 1];
	const char *state = ev->body;
	snprintf(context, sizeof(context), "gitward/%s", ev->node);
	snprintf(desc, sizeof(desc), "%s", ev->message);
	cut_utf8(desc, DESCRIPTION_MAX);
	if (f->kind == FORGE_GITLAB && !strcmp(state, "failure"))
		state = "failed";
	json_t *o = json_pack("{s:s, s:s, s:s}", "state", state, f->kind == FORGE_GITLAB ? "name" : "context", context,
			      "description", desc);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	char *url = NULL;
	if (!body || asprintf(&url, "%s%s", f->base_url, ev->commit) < 0) {
		free(body);
		return gw_error_set(err, -ENOMEM, "out of memory");
	}
	struct curl_slist *h = NULL, *t;
	const char *headers[] = { "Content-Type: application/json", f->auth,
				  f->kind == FORGE_GITHUB ? "Accept: application/vnd.github+json" : NULL,
				  f->kind == FORGE_GITHUB ? "X-GitHub-Api-Version: 2022-11-28" : NULL };
	int rc = 0;
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]) && rc == 0; i++) {
		if (!headers[i])
			continue;
		if (!(t = curl_slist_append(h, headers[i])))
			rc = gw_error_set(err, -ENOMEM, "out of memory");
		else
			h = t;
	}
	if (rc == 0) {
		char shown[4096];
		snprintf(shown, sizeof(shown), "%s (commit status %s)", url, ev->body);
		rc = gw_notify__post(shown, url, body, h, stop, err);
	}
	curl_slist_free_all(h); /* a header holds the token: freed, not kept */
	free(url);
	free(body);
	return rc;
}

static void forge_free(struct gw_notify_sink *s)
{
	struct forge *f = (struct forge *)s;
	free(f->base_url);
	if (f->auth) {
		OPENSSL_cleanse(f->auth, strlen(f->auth));
		free(f->auth);
	}
}

static const struct gw_notify_sink_ops forge_ops = { .deliver = forge_deliver,
						     .free = forge_free,
						     .commit_status = true };

int gw_notify_forge_new(struct gw_notify_sink **out, const char *forge, const char *api, const char *repo, char *token,
			struct gw_error *err)
{
	struct forge *f = calloc(1, sizeof(*f));
	size_t alen = strlen(api);
	int rc = 0;
	if (!f) {
		rc = gw_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	f->base.ops = &forge_ops;
	snprintf(f->base.label, sizeof(f->base.label), "commit-status");
	f->kind = !strcmp(forge, "gitlab") ? FORGE_GITLAB : !strcmp(forge, "gitea") ? FORGE_GITEA : FORGE_GITHUB;
	while (alen && api[alen - 1] == '/')
		alen--;
	if (f->kind == FORGE_GITLAB) {
		char *id = curl_easy_escape(NULL, repo, 0); /* OWNER/NAME: owner%2Fname */
		if (!id || asprintf(&f->base_url, "%.*s/projects/%s/statuses/", (int)alen, api, id) < 0)
			f->base_url = NULL;
		curl_free(id);
		if (asprintf(&f->auth, "PRIVATE-TOKEN: %s", token) < 0)
			f->auth = NULL;
	} else {
		if (asprintf(&f->base_url, "%.*s/repos/%s/statuses/", (int)alen, api, repo) < 0)
			f->base_url = NULL;
		if (asprintf(&f->auth, "Authorization: %s %s", f->kind == FORGE_GITEA ? "token" : "Bearer", token) < 0)
			f->auth = NULL;
	}
	f->base.shown = gw_url_redacted(f->base_url ? f->base_url : "");
	if (!f->base_url || !f->auth || !f->base.shown) {
		forge_free(&f->base);
		free(f->base.shown);
		free(f);
		rc = gw_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	*out = &f->base;
out:
	if (token) {
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	return rc;
}
