/* Untrusted text made safe for output. Git file names, names and messages
 * read back from disk, and libraries' error messages may hold any byte: in
 * text, control characters would forge log lines or drive a terminal; in
 * JSON, bytes that are not UTF-8 make the encoder drop the value. One escape
 * syntax (\n \r \t \xNN \u0085) serves both, so a name reads the same; in
 * text, invisible format characters (bidi overrides, zero-width) show as
 * \u202e and the like. */
#define _GNU_SOURCE
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gitward/util.h"

/* Length of the valid UTF-8 sequence at s (NUL-terminated), 0 if none. */
static size_t utf8_seq(const unsigned char *s, uint32_t *out_cp)
{
	size_t n;
	uint32_t cp, min;

	if (s[0] < 0x80) {
		*out_cp = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0) {
		n = 2;
		min = 0x80;
	} else if ((s[0] & 0xF0) == 0xE0) {
		n = 3;
		min = 0x800;
	} else if ((s[0] & 0xF8) == 0xF0) {
		n = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	cp = s[0] & (0xFFu >> (n + 1));
	for (size_t k = 1; k < n; k++) {
		if ((s[k] & 0xC0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = (cp << 6) | (s[k] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	*out_cp = cp;
	return n;
}

/* Invisible format characters: bidirectional overrides and isolates (the
 * "Trojan Source" U+202E), zero-width characters, line and paragraph
 * separators, the BOM. Shown as \uXXXX so a name reads as it is. */
static bool invisible(uint32_t cp)
{
	return cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
		(cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF;
}

/* Appends s escaped, stopping before the output would exceed max bytes. With
 * controls false only bytes that are not UTF-8 are escaped (for JSON, whose
 * encoder escapes control characters itself). Returns 1 if anything changed. */
static int escape(struct gw_strbuf *sb, const char *s, bool controls, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	int changed = 0;

	while (*p) {
		char esc[8];
		const char *out = esc;
		uint32_t cp;
		size_t n = utf8_seq(p, &cp), outn;

		if (n == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			n = 1;
		} else if (controls && (cp < 0x20 || cp == 0x7F)) {
			if (cp == '\n')
				memcpy(esc, "\\n", 3);
			else if (cp == '\r')
				memcpy(esc, "\\r", 3);
			else if (cp == '\t')
				memcpy(esc, "\\t", 3);
			else
				snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
		} else if (controls && ((cp >= 0x80 && cp <= 0x9F) || invisible(cp))) {
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
		} else {
			out = (const char *)p;
		}
		outn = out == esc ? strlen(esc) : n;
		if (sb->len + outn > max)
			break;
		gw_strbuf_add(sb, out, outn);
		changed |= out == esc;
		p += n;
	}
	return changed;
}

void gw_strbuf_add_escaped(struct gw_strbuf *sb, const char *s)
{
	escape(sb, s ? s : "", true, SIZE_MAX);
}

const char *gw_escape(char *buf, size_t size, const char *s)
{
	struct gw_strbuf sb;

	if (size == 0)
		return buf;
	gw_strbuf_init(&sb);
	escape(&sb, s ? s : "", true, size - 1);
	memcpy(buf, sb.len ? sb.s : "", sb.len);
	buf[sb.len] = '\0';
	gw_strbuf_free(&sb);
	return buf;
}

json_t *gw_json_string(const char *s)
{
	struct gw_strbuf sb;
	json_t *j;

	if (!s)
		return json_null();
	j = json_string(s);
	if (j)
		return j;
	gw_strbuf_init(&sb);
	escape(&sb, s, false, SIZE_MAX);
	j = json_string(sb.len ? sb.s : "");
	gw_strbuf_free(&sb);
	return j;
}

/* Levenshtein distance, case-insensitive; 99 past 40 characters. */
unsigned gw_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 40 || lb > 40)
		return 99;
	unsigned d[41][41];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			unsigned m = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < m)
				m = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < m)
				m = d[i - 1][j - 1] + cost;
			d[i][j] = m;
		}
	return d[la][lb];
}
