/* envFiles: KEY=VALUE lines, blank lines and # comments allowed, an optional
 * "export " prefix and matching quotes around the value. Values are secrets:
 * errors name the file and line only, never a value; a file's content is
 * remembered only as its digest, to tell that it changed. */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/resource.h"
#include "gitward/util.h"

#define ENVFILE_MAX (1u << 20) /* bytes of one file */

int gw_envfile_load(struct gw_strmap *out, const char *path, struct gw_error *err)
{
	struct gw_error e;
	char *data, what[4200];
	size_t len;

	int rc = gw_file_read(&data, &len, path, ENVFILE_MAX, &e);
	if (rc < 0)
		return gw_error_set(err, rc, "envFiles: %s: %s", path, e.msg);
	snprintf(what, sizeof(what), "envFiles: %s", path);
	rc = gw_envfile_parse(out, what, data, err);
	explicit_bzero(data, len);
	free(data);
	return rc;
}

int gw_envfile_digest(char out[65], const char *path, struct gw_error *err)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct gw_error e;
	char *data;
	size_t len;

	int rc = gw_file_read(&data, &len, path, ENVFILE_MAX, &e);
	if (rc < 0)
		return gw_error_set(err, rc, "envFiles: %s: %s", path, e.msg);
	int ok = EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	explicit_bzero(data, len);
	free(data);
	if (!ok || mdlen != 32)
		return gw_error_set(err, -EIO, "envFiles: %s: cannot compute its SHA-256", path);
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
	explicit_bzero(md, sizeof(md));
	return 0;
}

int gw_envfile_parse(struct gw_strmap *out, const char *what, char *data, struct gw_error *err)
{
	unsigned line = 0;
	char *p = data;

	while (p && *p) {
		char *l = p, *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : NULL;
		line++;
		while (*l == ' ' || *l == '\t')
			l++;
		size_t ll = strlen(l);
		if (ll && l[ll - 1] == '\r')
			l[--ll] = '\0';
		if (!*l || *l == '#')
			continue;
		if (strncmp(l, "export ", 7) == 0)
			l += 7;
		char *eq = strchr(l, '=');
		if (!eq || eq == l)
			return gw_error_set(err, -EINVAL, "%s: line %u is not KEY=VALUE", what, line);
		*eq = '\0';
		char *v = eq + 1;
		size_t vl = strlen(v);
		if (vl >= 2 && ((v[0] == '"' && v[vl - 1] == '"') || (v[0] == '\'' && v[vl - 1] == '\''))) {
			v[vl - 1] = '\0';
			v++;
		}
		gw_strmap_set(out, l, v);
	}
	return 0;
}
