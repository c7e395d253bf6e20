/* The mirrors of the repository (several --repo), as the fetches found them:
 * STATE/remotes.json, one entry per remote with its last error, its last
 * success and how many fetches from it failed. Written by the holder of the
 * state lock after each fetch; read by status, GET /status and /metrics. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gitward/paths.h"
#include "gitward/state.h"

#define REMOTES_MAX_BYTES (64u << 10)

void gw_remotes_free(struct gw_remote_status *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free(r[i].url);
		free(r[i].last_error);
	}
	free(r);
}

int gw_remotes_load(struct gw_remote_status **out, size_t *n, const char *dir, struct gw_error *err)
{
	char path[4096], *data;
	size_t len;
	json_error_t jerr;

	*out = NULL;
	*n = 0;
	gw_path_remotes(path, sizeof(path), dir);
	int rc = gw_file_read_nofollow(&data, &len, path, REMOTES_MAX_BYTES, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	json_t *root = json_loadb(data, len, 0, &jerr), *arr = json_object_get(root, "remotes");
	free(data);
	if (!json_is_array(arr)) {
		json_decref(root);
		return gw_error_set_at(err, -EBADMSG, path, (unsigned)jerr.line, (unsigned)jerr.column,
				       "not a record of remotes: remove it, the next fetch writes it again");
	}
	size_t cnt = json_array_size(arr), k = 0;
	struct gw_remote_status *r = gw_xcalloc(cnt ? cnt : 1, sizeof(*r));
	for (size_t i = 0; i < cnt; i++) {
		json_t *e = json_array_get(arr, i);
		const char *url = json_string_value(json_object_get(e, "url"));
		if (!url)
			continue;
		const char *le = json_string_value(json_object_get(e, "last_error"));
		r[k].url = gw_url_without_credentials(url);
		r[k].last_error = le ? gw_url_redacted(le) : NULL;
		r[k].last_success = json_integer_value(json_object_get(e, "last_success"));
		r[k].errors = (unsigned long long)json_integer_value(json_object_get(e, "errors"));
		k++;
	}
	json_decref(root);
	*out = r;
	*n = k;
	return 0;
}

int gw_remotes_save(const char *dir, const struct gw_remote_status *r, size_t n, struct gw_error *err)
{
	char path[4096];
	json_t *root = json_object(), *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_object();
		char *url = gw_url_without_credentials(r[i].url);
		json_object_set_new(e, "url", gw_json_string(url));
		free(url);
		if (r[i].last_error) {
			char *le = gw_url_redacted(r[i].last_error);
			json_object_set_new(e, "last_error", gw_json_string(le));
			free(le);
		} else {
			json_object_set_new(e, "last_error", json_null());
		}
		json_object_set_new(e, "last_success", json_integer(r[i].last_success));
		json_object_set_new(e, "errors", json_integer((json_int_t)r[i].errors));
		json_array_append_new(arr, e);
	}
	json_object_set_new(root, "remotes", arr);
	char *data = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	gw_path_remotes(path, sizeof(path), dir);
	int rc = gw_file_write_atomic(path, data, strlen(data), err);
	free(data);
	return rc;
}
