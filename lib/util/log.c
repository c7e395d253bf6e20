/* The library's only global: the log sink. The agent installs a handler that
 * formats text or JSON lines; without one, lines go to stderr as text. Either
 * way a handler escapes key and msg (gw_escape, gw_json_string): they carry
 * untrusted text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <errno.h>

#include "gitward/util.h"

static gw_log_fn log_fn;
static void *log_ud;
static enum gw_log_level log_min = GW_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

const char *gw_log_level_name(enum gw_log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "info";
}

int gw_log_level_parse(enum gw_log_level *out, const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum gw_log_level)i;
			return 0;
		}
	if (strcasecmp(s, "warning") == 0) {
		*out = GW_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

void gw_log_set_handler(gw_log_fn fn, void *ud, enum gw_log_level min)
{
	log_fn = fn;
	log_ud = ud;
	log_min = min;
}

static void emit(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *fmt,
		 va_list ap) __attribute__((format(printf, 4, 0)));
static void emit(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *fmt,
		 va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	gw_str_redact_urls(msg); /* a URL's user info or query is a credential */
	if (log_fn) {
		log_fn(level, key, fields, msg, log_ud);
	} else {
		char k[512], m[4096];
		if (key && *key)
			fprintf(stderr, "%s %s: %s\n", gw_log_level_name(level), gw_escape(k, sizeof(k), key),
				gw_escape(m, sizeof(m), msg));
		else
			fprintf(stderr, "%s %s\n", gw_log_level_name(level), gw_escape(m, sizeof(m), msg));
	}
}

void gw_log(enum gw_log_level level, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	emit(level, key, NULL, fmt, ap);
	va_end(ap);
}

void gw_log_with(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *fmt, ...)
{
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	emit(level, key, fields, fmt, ap);
	va_end(ap);
}

bool gw_log_limit_take(struct gw_log_limit *l, int64_t now_ms, int64_t period_ms, unsigned long long *dropped)
{
	if (l->started && now_ms < l->next_ms) {
		l->dropped++;
		return false;
	}
	*dropped = l->dropped;
	l->dropped = 0;
	l->started = true;
	l->next_ms = now_ms + period_ms;
	return true;
}
