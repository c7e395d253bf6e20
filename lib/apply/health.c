/* Health probes run from the host: HTTP GET (libcurl), TCP connect, or a
 * command (the spawn builder, killed at the timeout; a backend that knows how its
 * workload runs, as whom, where and with what environment, runs it itself).
 * Each is bounded by the check's timeout, ends early (-ECANCELED) on a stop
 * request, and is safe to run from several threads. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/apply.h"
#include "gitward/backend.h"
#include "gitward/spawn.h"

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * n;
}

/* libcurl calls this about once a second and more often while data flows:
 * a nonzero answer aborts the transfer. */
static int http_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return gw_cancel_requested(ud);
}

static int probe_http(const char *url, int64_t timeout_ms, const struct gw_cancel *cancel, struct gw_error *err)
{
	CURL *c = curl_easy_init();
	char ebuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	int rc;

	if (!c)
		return gw_error_set(err, -ENOMEM, "cannot create an HTTP client");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, http_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
	CURLcode cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (cc == CURLE_ABORTED_BY_CALLBACK)
		return gw_error_set(err, -ECANCELED, "GET %s: abandoned, the agent is stopping", url);
	if (cc != CURLE_OK)
		return gw_error_set(err, -EIO, "GET %s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(cc));
	rc = code >= 200 && code < 400 ? 0 : gw_error_set(err, -EIO, "GET %s: HTTP %ld", url, code);
	return rc;
}

/* Wait for a non-blocking connect in slices, so a stop request ends it. */
static int connect_wait(int fd, int64_t timeout_ms, const struct gw_cancel *cancel)
{
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (gw_cancel_requested(cancel))
			return -ECANCELED;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r = poll(&p, 1, (int)(left > 50 ? 50 : left));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0) {
			int soerr = 0;
			socklen_t len = sizeof(soerr);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
			return soerr ? -soerr : 0;
		}
	}
}

static int probe_tcp(const char *address, int64_t timeout_ms, const struct gw_cancel *cancel, struct gw_error *err)
{
	char host[256];
	const char *colon = strrchr(address, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc = -ECONNREFUSED;

	snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return gw_error_set(err, -EHOSTUNREACH, "tcp %s: cannot resolve", address);
	for (struct addrinfo *a = ai; a && rc < 0 && rc != -ECANCELED; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			rc = 0;
		} else if (errno == EINPROGRESS) {
			rc = connect_wait(fd, timeout_ms, cancel);
		} else {
			rc = -errno;
		}
		close(fd);
	}
	freeaddrinfo(ai);
	if (rc == -ECANCELED)
		return gw_error_set(err, rc, "tcp %s: abandoned, the agent is stopping", address);
	if (rc < 0)
		return gw_error_set(err, rc, "tcp %s: %s", address, strerror(-rc));
	return 0;
}

/* Run argv with stdin/stdout/stderr on /dev/null and a clean environment
 * (gitward's own may hold credentials); kill it at the timeout. */
int gw_run_command(int *out_status, char *const *argv, int64_t timeout_ms, struct gw_error *err)
{
	return gw_run_command_cancel(out_status, argv, timeout_ms, NULL, err);
}

int gw_run_command_cancel(int *out_status, char *const *argv, int64_t timeout_ms, const struct gw_cancel *cancel,
			  struct gw_error *err)
{
	struct gw_spawn s = {
		.argv = argv,
		.fds = { GW_SPAWN_FD_NULL, GW_SPAWN_FD_NULL, GW_SPAWN_FD_NULL },
		.nfds = 3,
		.group = GW_SPAWN_GROUP_NEW,
	};
	struct gw_error serr;
	pid_t pid;
	int status = 0, rc;

	if ((rc = gw_spawn_start(&pid, &s, &serr)) < 0)
		return gw_error_set(err, rc, "exec %s: %s", argv[0], strerror(-rc));
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			return gw_error_set(err, -errno, "wait %s: %s", argv[0], strerror(errno));
		}
		int cancelled = gw_cancel_requested(cancel);
		if (cancelled || gw_monotonic_ms() >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			if (cancelled)
				return gw_error_set(err, -ECANCELED, "%s: abandoned, the agent is stopping", argv[0]);
			return gw_error_set(err, -ETIMEDOUT, "%s: timed out after %lldms", argv[0],
					    (long long)timeout_ms);
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	*out_status = status;
	return 0;
}

int gw_health_probe(const struct gw_observed *o, const struct gw_resource *r, struct gw_backend *b,
		    const struct gw_cancel *cancel, struct gw_error *err)
{
	int64_t timeout = r->health_timeout_ms ? r->health_timeout_ms : 2000;
	switch (r->health_type) {
	case GW_CHECK_HTTP:
		return probe_http(r->health_http_url, timeout, cancel, err);
	case GW_CHECK_TCP:
		return probe_tcp(r->health_tcp_address, timeout, cancel, err);
	case GW_CHECK_EXEC: {
		if (b && b->ops->exec_probe) {
			struct gw_backend_call call = { .cancel = cancel };
			return b->ops->exec_probe(b, o, r, timeout, &call, err);
		}
		int status;
		int rc = gw_run_command_cancel(&status, r->health_exec_command.v, timeout, cancel, err);
		if (rc < 0)
			return rc;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return gw_error_set(err, -EIO, "%s exited with status %d", r->health_exec_command.v[0],
					    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return 0;
	}
	case GW_CHECK_NONE:
		break;
	}
	return 0;
}
