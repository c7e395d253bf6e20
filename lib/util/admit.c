/* Who may open one more connection, by client address, and which open ones
 * are late with their request headers (an endpoint's policy against clients
 * that hold connections open): see gitward/util.h. */
#include <stdlib.h>

#include "gitward/util.h"

void gw_admit_init(struct gw_admit *a, uint32_t host, unsigned per_addr, unsigned host_max, unsigned others_max)
{
	*a = (struct gw_admit){ .host = host, .per_addr = per_addr, .host_max = host_max, .others_max = others_max };
	/* every admitted connection has a slot: no more addresses than that */
	a->n_peers = (size_t)host_max + others_max;
	a->peers = gw_xcalloc(a->n_peers, sizeof(*a->peers));
}

void gw_admit_free(struct gw_admit *a)
{
	free(a->peers);
	a->peers = NULL;
}

static struct gw_admit_peer *find(const struct gw_admit *a, uint32_t addr)
{
	for (size_t i = 0; i < a->n_peers; i++)
		if (a->peers[i].n && a->peers[i].addr == addr)
			return &a->peers[i];
	return NULL;
}

bool gw_admit_may(const struct gw_admit *a, uint32_t addr)
{
	const struct gw_admit_peer *p = find(a, addr);
	unsigned n = p ? p->n : 0;
	if (addr == a->host)
		return n < a->host_max;
	return n < a->per_addr && a->others < a->others_max;
}

struct gw_admit_peer *gw_admit_open(struct gw_admit *a, uint32_t addr)
{
	struct gw_admit_peer *p = find(a, addr);
	for (size_t i = 0; !p && i < a->n_peers; i++)
		if (!a->peers[i].n) {
			p = &a->peers[i];
			p->addr = addr;
		}
	if (!p)
		return NULL; /* admitted past gw_admit_may: not counted */
	p->n++;
	if (addr != a->host)
		a->others++;
	return p;
}

void gw_admit_close(struct gw_admit *a, struct gw_admit_peer *p)
{
	if (!p || !p->n)
		return;
	p->n--;
	if (p->addr != a->host)
		a->others--;
}

void gw_headers_init(struct gw_headers *h, size_t n)
{
	h->n = n;
	h->conns = gw_xcalloc(n, sizeof(*h->conns));
	for (size_t i = 0; i < n; i++)
		h->conns[i].fd = -1;
}

void gw_headers_free(struct gw_headers *h)
{
	free(h->conns);
	h->conns = NULL;
	h->n = 0;
}

struct gw_headers_conn *gw_headers_open(struct gw_headers *h, int fd, int64_t now_ms)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->conns[i].fd < 0) {
			h->conns[i] = (struct gw_headers_conn){ .fd = fd, .waiting = true, .since_ms = now_ms };
			return &h->conns[i];
		}
	return NULL;
}

void gw_headers_got(struct gw_headers_conn *c)
{
	if (c)
		c->waiting = false;
}

void gw_headers_wait(struct gw_headers_conn *c, int64_t now_ms)
{
	if (c) {
		c->waiting = true;
		c->since_ms = now_ms;
	}
}

void gw_headers_close(struct gw_headers_conn *c)
{
	if (c)
		*c = (struct gw_headers_conn){ .fd = -1 };
}

size_t gw_headers_overdue(int *fds, size_t max, const struct gw_headers *h, int64_t now_ms, int64_t deadline_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < h->n && n < max; i++) {
		const struct gw_headers_conn *c = &h->conns[i];
		if (c->fd >= 0 && c->waiting && now_ms - c->since_ms >= deadline_ms)
			fds[n++] = c->fd;
	}
	return n;
}
