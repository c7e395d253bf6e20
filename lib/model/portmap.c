/* Port maps, "[IP:]HOSTPORT:PORT[/tcp|udp]": the syntax of a Container's
 * ports and a VM's forwards. The schema checks values with it, the backends
 * read them with it; it depends on nothing else of the model. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "gitward/resource.h"

static int parse_port(unsigned *out, const char *s, size_t n)
{
	unsigned v = 0;
	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = v;
	return 0;
}

int gw_portmap_parse(struct gw_portmap *out, const char *s)
{
	struct gw_portmap pm;
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	const char *last = NULL, *prev = NULL;

	memset(&pm, 0, sizeof(pm));
	strcpy(pm.proto, "tcp");
	if (slash) {
		if (strcmp(slash + 1, "tcp") != 0 && strcmp(slash + 1, "udp") != 0)
			return -EINVAL;
		strcpy(pm.proto, slash + 1);
	}
	for (const char *p = s; p < s + len; p++)
		if (*p == ':') {
			prev = last;
			last = p;
		}
	if (!last)
		return -EINVAL;
	if (parse_port(&pm.port, last + 1, (size_t)(s + len - last - 1)) < 0)
		return -EINVAL;
	const char *hp = prev ? prev + 1 : s;
	if (parse_port(&pm.host_port, hp, (size_t)(last - hp)) < 0)
		return -EINVAL;
	if (prev) {
		size_t iplen = (size_t)(prev - s);
		if (iplen == 0 || iplen >= sizeof(pm.host_ip))
			return -EINVAL;
		for (size_t i = 0; i < iplen; i++)
			if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || (s[i] >= 'a' && s[i] <= 'z')))
				return -EINVAL;
		memcpy(pm.host_ip, s, iplen);
	}
	*out = pm;
	return 0;
}
