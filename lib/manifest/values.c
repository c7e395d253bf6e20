/* Per-node values in the strings of a spec: ${node.name} and
 * ${node.labels.KEY} are replaced by the node's name and label values,
 * $${ writes a literal ${. One scan, left to right; a value put in is never
 * scanned again, so a label value holding "${" stays as it is. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"
#include "gitward/schema.h"

#define NAME_REF "node.name"
#define LABEL_REF "node.labels."

/* The closest of the two forms to what was written, or NULL. */
static const char *suggest(char *buf, size_t size, const char *got)
{
	/* the key: what follows the second dot (node.lables.role -> role) */
	const char *dot = strchr(got, '.');
	const char *key = dot ? strchr(dot + 1, '.') : NULL;
	unsigned dn = gw_edit_distance(got, NAME_REF), dl = 99;
	if (key && key[1] && !gw_check_label_key(key + 1)) {
		snprintf(buf, size, LABEL_REF "%s", key + 1);
		dl = gw_edit_distance(got, buf);
	}
	if (dl <= 3 && dl <= dn)
		return buf;
	if (dn <= 3) {
		snprintf(buf, size, NAME_REF);
		return buf;
	}
	return NULL;
}

static int bad_ref(char *msg, size_t size, const char *ref, size_t len)
{
	char got[GW_VALUE_REF_MAX + 1], hint[GW_VALUE_REF_MAX + 16];
	if (len > GW_VALUE_REF_MAX) {
		snprintf(msg, size, "\"${%.*s...}\" is not a node value (${node.name} or ${node.labels.KEY})", 40, ref);
		return -EINVAL;
	}
	memcpy(got, ref, len);
	got[len] = '\0';
	const char *s = suggest(hint, sizeof(hint), got);
	if (s)
		snprintf(msg, size, "\"${%s}\" is not a node value (did you mean \"${%s}\"?)", got, s);
	else
		snprintf(msg, size, "\"${%s}\" is not a node value (${node.name} or ${node.labels.KEY}; $${ writes ${)",
			 got);
	return -EINVAL;
}

/* What ref[0..len) names: *key the label key (NULL: the name). */
static int parse_ref(const char **key, size_t *keylen, char *msg, size_t size, const char *ref, size_t len)
{
	size_t ln = strlen(LABEL_REF);
	if (len == strlen(NAME_REF) && !memcmp(ref, NAME_REF, len)) {
		*key = NULL;
		return 0;
	}
	if (len > ln && len - ln <= 63 && !memcmp(ref, LABEL_REF, ln)) {
		char k[64];
		memcpy(k, ref + ln, len - ln);
		k[len - ln] = '\0';
		const char *want = gw_check_label_key(k);
		if (want) {
			snprintf(msg, size, "\"${%.*s}\": expected %s", (int)len, ref, want);
			return -EINVAL;
		}
		*key = ref + ln;
		*keylen = len - ln;
		return 0;
	}
	return bad_ref(msg, size, ref, len);
}

static const char *node_value(char *msg, size_t size, const struct gw_strmap *labels, const char *key, size_t keylen)
{
	char k[64];
	const char *node = gw_strmap_get(labels, "node");
	if (!key) {
		if (!node)
			snprintf(msg, size, "the node has no name");
		return node;
	}
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	const char *v = gw_strmap_get(labels, k);
	if (!v)
		snprintf(msg, size, "node \"%s\" has no label \"%s\"", node ? node : "", k);
	return v;
}

int gw_values_expand(char **out, size_t *at, char *msg, size_t size, const char *s, const struct gw_strmap *labels)
{
	struct gw_strbuf sb;
	const char *p = s;
	int rc = 0;

	gw_strbuf_init(&sb);
	while (rc == 0) {
		const char *d = strstr(p, "${");
		if (!d) {
			gw_strbuf_puts(&sb, p);
			break;
		}
		if (d > p && d[-1] == '$') { /* $${: a literal ${ */
			gw_strbuf_add(&sb, p, (size_t)(d - p) - 1);
			gw_strbuf_puts(&sb, "${");
			p = d + 2;
			continue;
		}
		gw_strbuf_add(&sb, p, (size_t)(d - p));
		*at = (size_t)(d - s);
		const char *end = strchr(d + 2, '}');
		if (!end) {
			snprintf(msg, size, "unterminated \"${\" (close it with \"}\", or write $${ for a literal ${)");
			rc = -EINVAL;
			break;
		}
		const char *key = NULL;
		size_t keylen = 0;
		rc = parse_ref(&key, &keylen, msg, size, d + 2, (size_t)(end - d - 2));
		if (rc < 0 || !labels) {
			p = end + 1;
			continue;
		}
		const char *v = node_value(msg, size, labels, key, keylen);
		if (!v) {
			rc = -ENOENT;
			break;
		}
		gw_strbuf_puts(&sb, v);
		if (sb.len > GW_VALUE_STRING_MAX) {
			snprintf(msg, size, "longer than %u bytes with the node's values", GW_VALUE_STRING_MAX);
			rc = -E2BIG;
			break;
		}
		p = end + 1;
	}
	if (rc == 0 && labels)
		*out = gw_strbuf_detach(&sb);
	else
		gw_strbuf_free(&sb);
	return rc;
}

int gw_values_field(const char *path)
{
	static const char *const fixed[] = { "nodeSelector", "dependsOn", "secretEnvFiles",
					     "sources",	     "plugin",	  "config" };
	if (strncmp(path, "spec.", 5) != 0)
		return 0;
	path += 5;
	size_t n = strcspn(path, ".[");
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strlen(fixed[i]) == n && !strncmp(path, fixed[i], n))
			return 0;
	return 1;
}
