/* The node's history of passes, STATE/history.json: appended by the holder
 * of the state lock, read by `gitward history` and `rollback` without one.
 * Format, bounds and coalescing: see gitward/history.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/history.h"

static const char *const results[] = { "converged", "failed", "reverted", "rolled-back", NULL };
static const char *const triggers[] = { "poll", "webhook", "signal", "rollback", "auto-revert", "restart", NULL };

char *gw_path_history(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/history.json", state_dir);
	return buf;
}

static bool one_of(const char *s, const char *const *words)
{
	for (size_t i = 0; words[i]; i++)
		if (!strcmp(s, words[i]))
			return true;
	return false;
}

static bool valid_commit(const char *s)
{
	size_t n = strlen(s);
	if (n != 0 && n != 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* 2026-12-07T20:28:38.123Z */
static bool valid_time(const char *s)
{
	unsigned y, mo, d, h, mi, sec, ms;
	char z;
	return strlen(s) == 24 &&
		sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u.%3u%c", &y, &mo, &d, &h, &mi, &sec, &ms, &z) == 8 && z == 'Z' &&
		mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && sec < 61;
}

static void now_ms(char *buf, size_t size)
{
	int64_t ms = gw_now_ms();
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* A string field of at most size - 1 bytes without NUL, or false. */
static bool get_str(char *out, size_t size, const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return false;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return true;
}

/* One entry, checked field by field; why names the first field that fails. */
static bool entry_from_json(struct gw_history_entry *e, const json_t *o, const char **why)
{
	const json_t *c = json_object_get(o, "count");
	memset(e, 0, sizeof(*e));
	*why = "not an object";
	if (!json_is_object(o))
		return false;
	*why = "commit";
	if (!get_str(e->commit, sizeof(e->commit), o, "commit") || !valid_commit(e->commit))
		return false;
	*why = "ref";
	if (!get_str(e->ref, sizeof(e->ref), o, "ref"))
		return false;
	*why = "time";
	if (!get_str(e->time, sizeof(e->time), o, "time") || !valid_time(e->time))
		return false;
	*why = "result";
	if (!get_str(e->result, sizeof(e->result), o, "result") || !one_of(e->result, results))
		return false;
	*why = "trigger";
	if (!get_str(e->trigger, sizeof(e->trigger), o, "trigger") || !one_of(e->trigger, triggers))
		return false;
	*why = "message";
	if (!get_str(e->message, sizeof(e->message), o, "message"))
		return false;
	*why = "count";
	if (!json_is_integer(c) || json_integer_value(c) < 1 || json_integer_value(c) > 0x7fffffff)
		return false;
	e->count = (unsigned)json_integer_value(c);
	*why = "last";
	return get_str(e->last, sizeof(e->last), o, "last") && valid_time(e->last);
}

static json_t *entry_to_json(const struct gw_history_entry *e)
{
	return json_pack("{s:s, s:o, s:s, s:s, s:s, s:o, s:I, s:s}", "commit", e->commit, "ref", gw_json_string(e->ref),
			 "time", e->time, "result", e->result, "trigger", e->trigger, "message",
			 gw_json_string(e->message), "count", (json_int_t)e->count, "last", e->last);
}

int gw_history_load(struct gw_history_entry **out, size_t *n, const char *state_dir, struct gw_error *err)
{
	char path[4096], *data = NULL;
	size_t len;
	json_error_t je;
	const char *why = "not {\"version\": 1, \"history\": [...]}";
	struct gw_history_entry *v = NULL;
	size_t i = 0;

	*out = NULL;
	*n = 0;
	gw_path_history(path, sizeof(path), state_dir);
	int rc = gw_file_read_nofollow(&data, &len, path, GW_HISTORY_FILE_MAX, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	free(data);
	if (!doc) {
		json_decref(doc);
		return gw_error_set_at(err, -EBADMSG, path, (unsigned)je.line, (unsigned)je.column,
				       "corrupt history file: %s", je.text);
	}
	const json_t *h = json_object_get(doc, "history"), *ver = json_object_get(doc, "version");
	if (!json_is_object(doc) || !json_is_integer(ver) || json_integer_value(ver) != 1 || !json_is_array(h) ||
	    json_array_size(h) > GW_HISTORY_MAX)
		goto bad;
	v = gw_xcalloc(json_array_size(h) + 1, sizeof(*v));
	for (i = 0; i < json_array_size(h); i++)
		if (!entry_from_json(&v[i], json_array_get(h, i), &why))
			goto bad;
	json_decref(doc);
	*out = v;
	*n = i;
	return 0;
bad:
	json_decref(doc);
	free(v);
	if (v)
		return gw_error_set_at(err, -EBADMSG, path, 0, 0, "corrupt history file: entry %zu: invalid %s", i + 1,
				       why);
	return gw_error_set_at(err, -EBADMSG, path, 0, 0, "corrupt history file: %s (at most %d entries)", why,
			       GW_HISTORY_MAX);
}

static int save(const char *state_dir, const struct gw_history_entry *v, size_t n, struct gw_error *err)
{
	char path[4096];
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, entry_to_json(&v[i]));
	json_t *doc = json_pack("{s:i, s:o}", "version", 1, "history", arr);
	char *s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!s)
		return gw_error_set(err, -ENOMEM, "out of memory");
	size_t len = strlen(s);
	s = gw_xrealloc(s, len + 2);
	s[len++] = '\n';
	int rc = gw_file_write_atomic(gw_path_history(path, sizeof(path), state_dir), s, len, err);
	free(s);
	return rc;
}

int gw_history_append(const char *state_dir, const struct gw_history_entry *e, struct gw_error *err)
{
	struct gw_history_entry *v = NULL, ne = *e;
	size_t n = 0;
	char now[32], path[4096], aside[4200];

	if (!valid_commit(e->commit) || !one_of(e->result, results) || !one_of(e->trigger, triggers))
		return gw_error_set(err, -EINVAL, "history: invalid entry (commit %.41s, result %.16s, trigger %.16s)",
				    e->commit, e->result, e->trigger);
	now_ms(now, sizeof(now));
	int rc = gw_history_load(&v, &n, state_dir, err);
	if (rc == -EBADMSG) {
		gw_path_history(path, sizeof(path), state_dir);
		snprintf(aside, sizeof(aside), "%s.corrupt", path);
		gw_log(GW_LOG_WARN, "", "%s; set aside as %s, a new history begins", err->msg, aside);
		if (rename(path, aside) < 0)
			gw_log(GW_LOG_WARN, "", "%s: cannot set aside: %s", path, strerror(errno));
	} else if (rc < 0) {
		return rc;
	}
	if (n && !strcmp(v[0].commit, e->commit) && !strcmp(v[0].result, e->result) &&
	    !strcmp(v[0].message, e->message)) {
		if (v[0].count < 0x7fffffff)
			v[0].count++;
		snprintf(v[0].last, sizeof(v[0].last), "%s", now);
	} else {
		if (!ne.time[0] || !valid_time(ne.time))
			snprintf(ne.time, sizeof(ne.time), "%s", now);
		ne.count = 1;
		snprintf(ne.last, sizeof(ne.last), "%s", ne.time);
		v = gw_xrealloc(v, (n + 1) * sizeof(*v));
		memmove(v + 1, v, n * sizeof(*v));
		v[0] = ne;
		if (++n > GW_HISTORY_MAX)
			n = GW_HISTORY_MAX;
	}
	rc = save(state_dir, v, n, err);
	free(v);
	return rc;
}
