/* The error record, a growable string, allocation helpers that abort on
 * exhaustion, and duration/size parsing shared by manifests and flags. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/util.h"

int gw_error_set(struct gw_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		memset(err, 0, sizeof(*err));
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		gw_str_redact_urls(err->msg);
	}
	return code;
}

int gw_error_set_at(struct gw_error *err, int code, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		memset(err, 0, sizeof(*err));
		err->code = code;
		snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
		err->line = line;
		err->col = col;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		gw_str_redact_urls(err->msg);
	}
	return code;
}

int gw_error_prefix(struct gw_error *err, const char *fmt, ...)
{
	char prefix[GW_ERROR_MSG_MAX], old[GW_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	gw_str_redact_urls(err->msg);
	return err->code;
}

const char *gw_error_format(char *buf, size_t size, const struct gw_error *err)
{
	if (err->file[0] && err->line)
		snprintf(buf, size, "%s:%u:%u: %s", err->file, err->line, err->col, err->msg);
	else if (err->file[0])
		snprintf(buf, size, "%s: %s", err->file, err->msg);
	else
		snprintf(buf, size, "%s", err->msg);
	return buf;
}

static void oom(void)
{
	fputs("gitward: out of memory\n", stderr);
	abort();
}

void *gw_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *gw_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *gw_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *gw_xstrdup(const char *s)
{
	return gw_xstrndup(s, strlen(s));
}

char *gw_xstrndup(const char *s, size_t n)
{
	char *p = gw_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void gw_secure_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* The value of hex digit c, or -EINVAL: not one. */
static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -EINVAL;
}

void gw_url_split_password(char **out_url, char **out_password, const char *url)
{
	const char *auth = strstr(url, "://");
	*out_password = NULL;
	if (!auth) {
		*out_url = gw_xstrdup(url);
		return;
	}
	auth += 3;
	size_t alen = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p; /* the last '@' ends the user info */
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon) {
		*out_url = gw_xstrdup(url);
		return;
	}
	size_t plen = (size_t)(at - colon - 1);
	char *pw = gw_xmalloc(plen + 1), *w = pw;
	for (const char *p = colon + 1; p < at; p++) {
		if (*p == '%' && p + 2 < at && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			*w++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "%.*s%s", (int)(colon - url), url, at);
	*out_url = gw_strbuf_detach(&sb);
	*out_password = pw;
}

void gw_str_redact(char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	char *from = s, *hit;
	if (!n)
		return;
	while ((hit = strstr(from, secret)) != NULL) {
		if (n >= 3) {
			memcpy(hit, "***", 3);
			memmove(hit + 3, hit + n, strlen(hit + n) + 1);
			from = hit + 3;
		} else { /* shorter than the mask: starred in place */
			memset(hit, '*', n);
			from = hit + n;
		}
	}
}

/* Ends a URL's authority, path or query in running text. */
static bool url_end(char c, const char *stops)
{
	return !c || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '<' || c == '>' ||
		c == '`' || strchr(stops, c);
}

/* The n bytes at p become "***" (or n stars when shorter), s shrinking;
 * returns where the text after them now is. */
static char *mask_span(char *p, size_t n)
{
	if (n < 3) {
		memset(p, '*', n);
		return p + n;
	}
	memcpy(p, "***", 3);
	memmove(p + 3, p + n, strlen(p + n) + 1);
	return p + 3;
}

void gw_str_redact_urls(char *s)
{
	char *sep;
	for (char *from = s; (sep = strstr(from, "://")) != NULL;) {
		char *auth = sep + 3, *p = auth, *at = NULL;
		for (; !url_end(*p, "/?#"); p++)
			if (*p == '@')
				at = p;
		if (sep == s ||
		    !(isalnum((unsigned char)sep[-1]) || sep[-1] == '+' || sep[-1] == '-' || sep[-1] == '.')) {
			from = auth; /* not a scheme before it */
			continue;
		}
		if (at) {
			p = mask_span(auth, (size_t)(at - auth)); /* any user info is a credential */
			p++; /* the '@' */
			while (!url_end(*p, "/?#"))
				p++;
		}
		while (!url_end(*p, "?#"))
			p++;
		if (*p == '?') {
			char *q = ++p;
			while (!url_end(*p, "#"))
				p++;
			p = mask_span(q, (size_t)(p - q));
		}
		from = p;
	}
}

char *gw_url_without_credentials(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return gw_xstrdup(url);
	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *host = auth;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			host = p + 1;
	const char *path = auth + alen;
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_add(&sb, url, (size_t)(auth - url));
	gw_strbuf_add(&sb, host, (size_t)(path - host));
	gw_strbuf_add(&sb, path, strcspn(path, "?#"));
	return gw_strbuf_detach(&sb);
}

char *gw_url_redacted(const char *url)
{
	char *s = gw_xstrdup(url ? url : "");
	gw_str_redact_urls(s);
	return s;
}

void gw_strbuf_init(struct gw_strbuf *sb)
{
	sb->s = NULL;
	sb->len = sb->cap = 0;
}

void gw_strbuf_free(struct gw_strbuf *sb)
{
	free(sb->s);
	gw_strbuf_init(sb);
}

static void grow(struct gw_strbuf *sb, size_t extra)
{
	size_t need = sb->len + extra + 1;
	if (need <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 64;
	while (cap < need)
		cap *= 2;
	sb->s = gw_xrealloc(sb->s, cap);
	sb->cap = cap;
}

void gw_strbuf_add(struct gw_strbuf *sb, const char *data, size_t n)
{
	grow(sb, n);
	memcpy(sb->s + sb->len, data, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

void gw_strbuf_puts(struct gw_strbuf *sb, const char *s)
{
	gw_strbuf_add(sb, s, strlen(s));
}

void gw_strbuf_vprintf(struct gw_strbuf *sb, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	grow(sb, (size_t)n);
	vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
	sb->len += (size_t)n;
}

void gw_strbuf_printf(struct gw_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	gw_strbuf_vprintf(sb, fmt, ap);
	va_end(ap);
}

char *gw_strbuf_detach(struct gw_strbuf *sb)
{
	char *s = sb->s ? sb->s : gw_xstrdup("");
	gw_strbuf_init(sb);
	return s;
}

int gw_duration_parse(int64_t *out_ms, const char *s)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	int64_t total = 0;
	const char *p = s;
	int last_unit = 99; /* units must come in decreasing order, each at most once */

	if (!s || !*s)
		return -EINVAL;
	if (strcmp(s, "0") == 0) {
		*out_ms = 0;
		return 0;
	}
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		int64_t n = 0;
		while (isdigit((unsigned char)*p)) {
			if (n > (INT64_MAX / 10) - 10)
				return -ERANGE;
			n = n * 10 + (*p++ - '0');
		}
		int u = -1;
		/* "ms" before "m" */
		if (p[0] == 'm' && p[1] == 's')
			u = 0;
		else if (p[0] == 's')
			u = 1;
		else if (p[0] == 'm')
			u = 2;
		else if (p[0] == 'h')
			u = 3;
		if (u < 0 || u >= last_unit)
			return -EINVAL;
		last_unit = u;
		p += strlen(units[u].unit);
		if (n > (INT64_MAX - total) / units[u].ms / 2)
			return -ERANGE;
		total += n * units[u].ms;
	}
	*out_ms = total;
	return 0;
}

void gw_duration_format(char *buf, size_t size, int64_t ms)
{
	int64_t h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60, rest = ms % 1000;
	size_t off = 0;

	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	if (rest) { /* keep sub-second durations in one unit, as written */
		snprintf(buf, size, "%lldms", (long long)ms);
		return;
	}
	if (h && off < size)
		off += (size_t)snprintf(buf + off, size - off, "%lldh", (long long)h);
	if (m && off < size)
		off += (size_t)snprintf(buf + off, size - off, "%lldm", (long long)m);
	if (sec && off < size)
		snprintf(buf + off, size - off, "%llds", (long long)sec);
}

int gw_size_parse(int64_t *out_bytes, const char *s)
{
	static const struct {
		const char *suffix;
		int64_t mult;
	} suffixes[] = { { "Ki", 1LL << 10 },	   { "Mi", 1LL << 20 },
			 { "Gi", 1LL << 30 },	   { "Ti", 1LL << 40 },
			 { "k", 1000LL },	   { "K", 1000LL },
			 { "M", 1000000LL },	   { "G", 1000000000LL },
			 { "T", 1000000000000LL }, { "", 1 } };
	const char *p = s;
	int64_t n = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		if (n > (INT64_MAX / 10) - 10)
			return -ERANGE;
		n = n * 10 + (*p++ - '0');
	}
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strcmp(p, suffixes[i].suffix) == 0) {
			if (n > INT64_MAX / suffixes[i].mult)
				return -ERANGE;
			*out_bytes = n * suffixes[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

int64_t gw_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool gw_free_at_exit(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return true;
#endif
#endif
	const char *v = getenv("GW_FREE_AT_EXIT");
	return v && *v && strcmp(v, "0") != 0;
}

int64_t gw_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gw_backoff_ms(int64_t base_ms, int streak, int64_t cap_ms)
{
	int64_t d = base_ms;
	for (int i = 1; i < streak && d > 0 && d < cap_ms; i++)
		d *= 2; /* d < cap_ms: no overflow */
	return d > cap_ms ? cap_ms : d;
}

void gw_time_format_utc(char *buf, size_t size, int64_t unix_seconds)
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void gw_size_format(char *buf, size_t size, int64_t bytes)
{
	static const char *const units[] = { "Ti", "Gi", "Mi", "Ki" };
	for (int i = 0; i < 4; i++) {
		int64_t m = 1LL << (10 * (4 - i));
		if (bytes >= m && bytes % m == 0) {
			snprintf(buf, size, "%lld%s", (long long)(bytes / m), units[i]);
			return;
		}
	}
	snprintf(buf, size, "%lld", (long long)bytes);
}

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	max_align_t data[];
};

struct gw_arena {
	struct arena_block *head;
};

struct gw_arena *gw_arena_new(void)
{
	return gw_xcalloc(1, sizeof(struct gw_arena));
}

void gw_arena_free(struct gw_arena *a)
{
	if (!a)
		return;
	for (struct arena_block *b = a->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	free(a);
}

void *gw_arena_alloc(struct gw_arena *a, size_t n)
{
	const size_t align = sizeof(max_align_t);
	n = (n + align - 1) / align * align;
	struct arena_block *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 16384 ? n : 16384;
		b = gw_xmalloc(sizeof(*b) + cap);
		b->used = 0;
		b->cap = cap;
		b->next = a->head;
		a->head = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	return p;
}

char *gw_arena_strndup(struct gw_arena *a, const char *s, size_t n)
{
	char *p = gw_arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
