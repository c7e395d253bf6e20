/* The endpoints on libmicrohttpd's own thread: this file only moves bytes
 * (bounded bodies, bounded slow clients) between the socket and
 * gw_endpoints_handle; a signed webhook only wakes the loop. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

/* Slow clients: a connection idle this long is closed (one that stopped in
 * the middle of its headers too); one that trickles its headers, never idle
 * that long, is cut --header-timeout (HEADER_DEADLINE_MS) after its request began (a body, once
 * the headers are in, is held to the idle rule only). One address holds at
 * most PER_IP connections, 127.0.0.1 (where the host's own probes come
 * from) HOST_MAX, which no other address can take: all the others together
 * hold at most CONNECTIONS - HOST_MAX (gw_admit). So
 * /healthz and /metrics answer 127.0.0.1 however many other addresses
 * trickle headers (it takes 30 to fill their share), and one address,
 * 127.0.0.1 too, never holds them all. epoll: not bounded by
 * select's FD_SETSIZE. */
#define IDLE_TIMEOUT_S 10u
#define HEADER_DEADLINE_MS 30000 /* --header-timeout by default */
#define PER_IP 16u
#define HOST_MAX 32u
#define CONNECTIONS 512u
/* A body past the limit is read and dropped up to here, then cut. */
#define DISCARD_MAX (8 * (size_t)GW_HOOK_BODY_MAX)

struct gw_http {
	struct MHD_Daemon *d;
	struct gw_endpoints ep;
	char *secret;
	size_t secret_len;
	void (*trigger)(void *);
	void *ud;
	pthread_mutex_t mu;
	struct gw_admit admit; /* under mu */
	struct gw_headers headers; /* under mu */
	pthread_cond_t wake; /* the sweeper's, with mu */
	bool stopping; /* under mu */
	int64_t header_deadline_ms; /* --header-timeout */
	pthread_t sweeper;
};

/* One connection's socket context: its admission and header clock slots. */
struct conn {
	struct gw_admit_peer *peer;
	struct gw_headers_conn *clock;
};

/* The client's IPv4 address, network order (0 for another family: the
 * socket is IPv4, so none comes). */
static uint32_t client_addr(const struct sockaddr *sa, socklen_t len)
{
	if (!sa || sa->sa_family != AF_INET || len < (socklen_t)sizeof(struct sockaddr_in))
		return 0;
	return ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct gw_http *h = cls;
	pthread_mutex_lock(&h->mu);
	bool ok = gw_admit_may(&h->admit, client_addr(sa, len));
	pthread_mutex_unlock(&h->mu);
	return ok ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct gw_http *h = cls;

	pthread_mutex_lock(&h->mu);
	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		/* libmicrohttpd notifies this before it closes the socket: once
		 * the slot is freed here, under mu, the sweeper no longer knows
		 * the fd, so it never shuts down a reused one */
		struct conn *k = *socket_context;
		if (k) {
			gw_admit_close(&h->admit, k->peer);
			gw_headers_close(k->clock);
			free(k);
		}
		*socket_context = NULL;
	} else {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct conn *k = gw_xcalloc(1, sizeof(*k));
		k->peer = gw_admit_open(&h->admit, ci ? client_addr(ci->client_addr, sizeof(struct sockaddr_in)) : 0);
		if (fi)
			k->clock = gw_headers_open(&h->headers, fi->connect_fd, gw_monotonic_ms());
		*socket_context = k;
	}
	pthread_mutex_unlock(&h->mu);
}

/* The connection's header clock: its request's headers are in (got), or
 * the next request's are awaited from now. */
static void header_clock(struct gw_http *h, struct MHD_Connection *c, bool got)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *k = ci ? ci->socket_context : NULL;
	if (!k)
		return;
	pthread_mutex_lock(&h->mu);
	if (got)
		gw_headers_got(k->clock);
	else
		gw_headers_wait(k->clock, gw_monotonic_ms());
	pthread_mutex_unlock(&h->mu);
}

/* Every second, shut down the sockets whose request headers are overdue;
 * libmicrohttpd then reads their end and closes them on its own thread.
 * shutdown, not close: the fd stays libmicrohttpd's; and under mu, so the
 * CLOSED notification (taken under mu before the close) cannot free the
 * fd between the listing and the shutdown. */
static void *sweep(void *arg)
{
	struct gw_http *h = arg;
	int fds[CONNECTIONS];

	pthread_mutex_lock(&h->mu);
	while (!h->stopping) {
		size_t n = gw_headers_overdue(fds, CONNECTIONS, &h->headers, gw_monotonic_ms(), h->header_deadline_ms);
		for (size_t i = 0; i < n; i++)
			shutdown(fds[i], SHUT_RDWR);
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += 1;
		pthread_cond_timedwait(&h->wake, &h->mu, &at);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

struct upload {
	struct gw_strbuf body;
	bool keep; /* POST /hooks/git: the body is needed */
	bool too_big;
	size_t received;
};

static const char *mhd_header(void *ud, const char *name)
{
	return MHD_lookup_connection_value(ud, MHD_HEADER_KIND, name);
}

static enum MHD_Result respond(struct gw_http *h, struct MHD_Connection *c, const char *method, const char *url,
			       struct upload *u)
{
	struct gw_http_request req = { .method = method,
				       .url = url,
				       .header = mhd_header,
				       .header_ud = c,
				       .body = u->body.s,
				       .body_len = u->body.len,
				       .body_too_large = u->too_big };
	struct gw_http_response res;

	gw_endpoints_handle(&res, &h->ep, &req);
	if (res.trigger)
		h->trigger(h->ud);
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(res.body), res.body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", res.content_type);
	enum MHD_Result ret = MHD_queue_response(c, res.status, r);
	MHD_destroy_response(r);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	struct upload *u = *con_cls;
	header_clock(cls, c, false); /* keep-alive: the next request's */
	if (u) {
		gw_strbuf_free(&u->body);
		free(u);
		*con_cls = NULL;
	}
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct gw_http *h = cls;
	struct upload *u = *con_cls;
	(void)version;

	if (!u) {
		u = gw_xcalloc(1, sizeof(*u));
		gw_strbuf_init(&u->body);
		u->keep = !strcmp(method, "POST") && !strcmp(url, "/hooks/git");
		*con_cls = u;
		header_clock(h, c, true); /* a body is held to the idle rule */
		/* A declared body over the limit is refused before it is read
		 * when the client waits for "100 Continue" or the body is
		 * absurd; otherwise it is read and dropped, since closing on
		 * unread data resets the connection before the 413 arrives. */
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
		unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
		if (u->keep && declared > GW_HOOK_BODY_MAX && (expect || declared > DISCARD_MAX)) {
			u->too_big = true;
			return respond(h, c, method, url, u);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		u->received += *upload_size;
		if (u->received > DISCARD_MAX)
			return MHD_NO; /* an endless body: close the connection */
		if (u->received > GW_HOOK_BODY_MAX)
			u->too_big = true;
		else if (u->keep)
			gw_strbuf_add(&u->body, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	return respond(h, c, method, url, u);
}

/* libmicrohttpd's own messages (refused connections under load, bad
 * requests) at debug level: a flood of clients must not flood the log. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[300];
	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	gw_log(GW_LOG_DEBUG, "", "http: %s", buf);
}

/* --webhook-secret-file: one line, its line ending dropped, never empty. */
static int read_secret(struct gw_http *h, const char *path, struct gw_error *err)
{
	size_t len;
	if (gw_file_read(&h->secret, &len, path, 65536, err) < 0)
		return gw_error_prefix(err, "--webhook-secret-file");
	while (len && (h->secret[len - 1] == '\n' || h->secret[len - 1] == '\r'))
		h->secret[--len] = '\0';
	if (!len) {
		free(h->secret);
		h->secret = NULL;
		return gw_error_set(err, -EINVAL, "--webhook-secret-file %s is empty", path);
	}
	h->secret_len = len;
	return 0;
}

/* A listening socket on addr, or a negative errno with the cause in err
 * (bound here, so a taken port is told with its cause, once). */
static int listen_on(const struct sockaddr_in *addr, const char *listen_arg, struct gw_error *err)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	    bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 && listen(fd, 64) == 0)
		return fd;
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (e == EADDRINUSE)
		return gw_error_set(err, -e,
				    "--listen %s: the port is in use (another gitward agent?); choose another "
				    "ADDR:PORT or \"off\"",
				    listen_arg);
	return gw_error_set(err, -e, "--listen %s: cannot listen: %s", listen_arg, strerror(e));
}

/* What gw_http_start set up, once the daemon and sweeper are gone. */
static void free_http(struct gw_http *h)
{
	gw_headers_free(&h->headers);
	gw_admit_free(&h->admit);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->mu);
	if (h->secret)
		OPENSSL_cleanse(h->secret, h->secret_len);
	free(h->secret);
	free(h);
}

int gw_http_start(struct gw_http **out, struct gw_metrics *m, const struct gw_config *cfg, void (*trigger)(void *),
		  void *ud, struct gw_error *err)
{
	struct gw_http *h = gw_xcalloc(1, sizeof(*h));
	struct sockaddr_in addr = { .sin_family = AF_INET };
	h->header_deadline_ms = cfg->header_timeout_ms ? cfg->header_timeout_ms : HEADER_DEADLINE_MS;
	char host[256];
	const char *colon = strrchr(cfg->listen, ':');

	snprintf(host, sizeof(host), "%.*s", (int)(colon - cfg->listen), cfg->listen);
	if (!*host || !strcmp(host, "*"))
		strcpy(host, "0.0.0.0");
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		free(h);
		return gw_error_set(err, -EINVAL, "--listen %s: expected an IPv4 address and a port", cfg->listen);
	}
	addr.sin_port = htons((uint16_t)atoi(colon + 1));
	h->trigger = trigger;
	h->ud = ud;
	if (cfg->webhook_secret_file) {
		int rc = read_secret(h, cfg->webhook_secret_file, err);
		if (rc < 0) {
			free(h);
			return rc;
		}
	}
	h->ep.m = m;
	h->ep.secret = h->secret;
	h->ep.secret_len = h->secret_len;
	int fd = listen_on(&addr, cfg->listen, err);
	if (fd < 0) {
		free(h->secret);
		free(h);
		return fd;
	}
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->wake, &ca);
	pthread_condattr_destroy(&ca);
	gw_admit_init(&h->admit, htonl(INADDR_LOOPBACK), PER_IP, HOST_MAX, CONNECTIONS - HOST_MAX);
	gw_headers_init(&h->headers, CONNECTIONS);
	h->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, accept_policy, h, handle, h,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
				h, MHD_OPTION_CONNECTION_LIMIT, CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
				IDLE_TIMEOUT_S, MHD_OPTION_END);
	int rc = h->d ? pthread_create(&h->sweeper, NULL, sweep, h) : EIO;
	if (rc) {
		if (h->d)
			MHD_stop_daemon(h->d); /* closes fd too */
		else
			close(fd);
		free_http(h);
		return gw_error_set(err, -rc, "--listen %s: the HTTP server did not start", cfg->listen);
	}
	/* the address bound, so port 0 (any free port) tells which one it got */
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	char ip[INET_ADDRSTRLEN] = "?";
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
		inet_ntop(AF_INET, &bound.sin_addr, ip, sizeof(ip));
	else
		bound.sin_port = addr.sin_port;
	gw_log(GW_LOG_INFO, "", "endpoints on http://%s:%u/ (healthz, metrics, status%s)", ip,
	       (unsigned)ntohs(bound.sin_port), cfg->webhook_secret_file ? ", hooks/git" : "");
	*out = h;
	return 0;
}

void gw_http_stop(struct gw_http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->sweeper, NULL);
	MHD_stop_daemon(h->d);
	free_http(h);
}

void gw_notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

uint64_t gw_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

void gw_notify_ready(void)
{
	sd_notify(0, "READY=1");
}
