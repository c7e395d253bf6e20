/* The operator's pin, STATE/control/pin: see gitward/pin.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitward/pin.h"
#include "gitward/state.h"

#define PIN_FILE_MAX 4096

static char *pin_path(char *buf, size_t size, const char *state_dir)
{
	snprintf(buf, size, "%s/control/pin", state_dir);
	return buf;
}

static bool hex40(const char *s, bool empty_ok)
{
	size_t n = strlen(s);
	if (n == 0)
		return empty_ok;
	if (n != 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool valid_time(const char *s)
{
	unsigned y, mo, d, h, mi, sec;
	char z;
	return strlen(s) == 20 && sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u%c", &y, &mo, &d, &h, &mi, &sec, &z) == 7 &&
		z == 'Z';
}

int gw_pin_write(const char *state_dir, const char *commit, const char *tip, const char *reason, struct gw_error *err)
{
	char path[4096], since[32];
	if (strlen(reason) >= GW_CONTROL_REASON_MAX)
		return gw_error_set(err, -EINVAL, "--reason: at most %d bytes", GW_CONTROL_REASON_MAX - 1);
	if (!hex40(commit, false) || !hex40(tip, true))
		return gw_error_set(err, -EINVAL, "pin: not a full commit id");
	int rc = gw_control_dirs(state_dir, err);
	if (rc < 0)
		return rc;
	gw_time_format_utc(since, sizeof(since), gw_now_ms() / 1000);
	json_t *doc = json_pack("{s:s, s:o, s:s, s:s}", "commit", commit, "reason", gw_json_string(reason), "since",
				since, "tip", tip);
	char *s = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(doc);
	if (!s)
		return gw_error_set(err, -ENOMEM, "out of memory");
	size_t len = strlen(s);
	s = gw_xrealloc(s, len + 2);
	s[len++] = '\n';
	rc = gw_file_write_atomic(pin_path(path, sizeof(path), state_dir), s, len, err);
	free(s);
	return rc;
}

int gw_pin_clear(const char *state_dir, bool *was, struct gw_error *err)
{
	char path[4096];
	*was = false;
	if (unlink(pin_path(path, sizeof(path), state_dir)) == 0) {
		*was = true;
		return 0;
	}
	if (errno == ENOENT || errno == ENOTDIR)
		return 0;
	return gw_error_set_at(err, -errno, path, 0, 0, "cannot remove: %s", strerror(errno));
}

static bool get_str(char *out, size_t size, const json_t *doc, const char *key)
{
	const json_t *v = json_object_get(doc, key);
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return false;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return true;
}

int gw_pin_read(struct gw_pin *out, const char *state_dir, struct gw_error *err)
{
	char path[4096], *data = NULL;
	size_t len;
	memset(out, 0, sizeof(*out));
	int rc = gw_file_read_nofollow(&data, &len, pin_path(path, sizeof(path), state_dir), PIN_FILE_MAX, err);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return 0;
	if (rc < 0)
		return rc;
	json_error_t je;
	json_t *doc = json_loadb(data, len, 0, &je);
	free(data);
	bool ok = json_is_object(doc) && get_str(out->commit, sizeof(out->commit), doc, "commit") &&
		hex40(out->commit, false) && get_str(out->tip, sizeof(out->tip), doc, "tip") && hex40(out->tip, true) &&
		get_str(out->reason, sizeof(out->reason), doc, "reason") &&
		get_str(out->since, sizeof(out->since), doc, "since") && valid_time(out->since);
	json_decref(doc);
	if (!ok) {
		memset(out, 0, sizeof(*out));
		return gw_error_set_at(err, -EBADMSG, path, 0, 0,
				       "not a pin ({\"commit\", \"reason\", \"since\", \"tip\"}): ignored, the node "
				       "follows its ref");
	}
	out->on = true;
	return 0;
}

void gw_pin_overlay(struct gw_state_file *st, const char *state_dir)
{
	struct gw_pin pin;
	struct gw_error err;
	free(st->pinned_commit);
	free(st->pinned_reason);
	free(st->pinned_since);
	free(st->pinned_tip);
	st->pinned_commit = st->pinned_reason = st->pinned_since = st->pinned_tip = NULL;
	if (gw_pin_read(&pin, state_dir, &err) < 0 || !pin.on)
		return;
	st->pinned_commit = gw_xstrdup(pin.commit);
	st->pinned_reason = gw_xstrdup(pin.reason);
	st->pinned_since = gw_xstrdup(pin.since);
	st->pinned_tip = gw_xstrdup(pin.tip);
}
