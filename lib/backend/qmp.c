/* QMP over a unix socket: line-framed JSON, poll()-bounded reads, events
 * skipped while waiting for a command's reply. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gitward/qmp.h"

struct gw_qmp {
	int fd;
	char *buf;
	size_t len, cap;
	char version[32];
};

void gw_qmp_close(struct gw_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q->buf);
	free(q);
}

const char *gw_qmp_version(const struct gw_qmp *q)
{
	return q->version;
}

/* Next JSON object (one line). */
static int read_msg(json_t **out, struct gw_qmp *q, int64_t deadline, struct gw_error *err)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - q->buf);
			json_error_t je;
			json_t *msg = json_loadb(q->buf, n, 0, &je);
			memmove(q->buf, nl + 1, q->len - n - 1);
			q->len -= n + 1;
			if (!msg || !json_is_object(msg)) {
				const char *why = msg ? "not a JSON object" : je.text;
				json_decref(msg);
				return gw_error_set(err, -EPROTO, "QMP: unreadable message: %s", why);
			}
			*out = msg;
			return 0;
		}
		if (q->len >= GW_QMP_LINE_MAX)
			return gw_error_set(err, -EPROTO, "QMP: message longer than %u bytes", GW_QMP_LINE_MAX);
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0)
			return gw_error_set(err, -ETIMEDOUT, "QMP: no answer in time");
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return gw_error_set(err, -ETIMEDOUT, "QMP: no answer in time");
		if (q->cap - q->len < 4096) {
			q->cap = q->cap ? q->cap * 2 : 8192;
			if (q->cap > GW_QMP_LINE_MAX + 8192)
				q->cap = GW_QMP_LINE_MAX + 8192;
			q->buf = gw_xrealloc(q->buf, q->cap);
		}
		ssize_t n = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return gw_error_set(err, n == 0 ? -ECONNRESET : -errno, "QMP: connection closed");
		q->len += (size_t)n;
	}
}

static int send_msg(struct gw_qmp *q, json_t *msg, struct gw_error *err)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t len = strlen(s), off = 0;
	int rc = 0;
	s = gw_xrealloc(s, len + 2);
	s[len++] = '\n';
	while (off < len) {
		ssize_t n = send(q->fd, s + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = gw_error_set(err, -errno, "QMP: send: %s", strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	free(s);
	return rc;
}

int gw_qmp_execute(json_t **out, struct gw_qmp *q, const char *command, json_t *args, int64_t timeout_ms,
		   struct gw_error *err)
{
	json_t *msg = json_pack("{s:s}", "execute", command);
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	int rc;

	if (args)
		json_object_set(msg, "arguments", args);
	rc = send_msg(q, msg, err);
	json_decref(msg);
	if (rc < 0)
		return rc;
	for (;;) {
		json_t *reply;
		if ((rc = read_msg(&reply, q, deadline, err)) < 0)
			return gw_error_prefix(err, "%s", command);
		if (json_object_get(reply, "event")) {
			json_decref(reply);
			continue;
		}
		json_t *e = json_object_get(reply, "error");
		if (e) {
			const char *cls = json_string_value(json_object_get(e, "class"));
			const char *desc = json_string_value(json_object_get(e, "desc"));
			rc = gw_error_set(err, -EIO, "QMP %s: %s: %s", command, cls ? cls : "Error",
					  desc ? desc : "no description");
			json_decref(reply);
			return rc;
		}
		json_t *ret = json_object_get(reply, "return");
		if (!ret) {
			json_decref(reply);
			return gw_error_set(err, -EPROTO, "QMP %s: reply without return or error", command);
		}
		if (out)
			*out = json_incref(ret);
		json_decref(reply);
		return 0;
	}
}

int gw_qmp_open_fd(struct gw_qmp **out, int fd, int64_t timeout_ms, struct gw_error *err)
{
	struct gw_qmp *q = gw_xcalloc(1, sizeof(*q));
	json_t *greeting = NULL;
	int rc;

	q->fd = fd;
	rc = read_msg(&greeting, q, gw_monotonic_ms() + timeout_ms, err);
	if (rc < 0) {
		gw_qmp_close(q);
		return gw_error_prefix(err, "greeting");
	}
	json_t *ver = json_object_get(json_object_get(json_object_get(greeting, "QMP"), "version"), "qemu");
	if (!json_object_get(greeting, "QMP")) {
		json_decref(greeting);
		gw_qmp_close(q);
		return gw_error_set(err, -EPROTO, "QMP: the peer did not greet as QMP");
	}
	snprintf(q->version, sizeof(q->version), "%lld.%lld.%lld",
		 (long long)json_integer_value(json_object_get(ver, "major")),
		 (long long)json_integer_value(json_object_get(ver, "minor")),
		 (long long)json_integer_value(json_object_get(ver, "micro")));
	json_decref(greeting);
	rc = gw_qmp_execute(NULL, q, "qmp_capabilities", NULL, timeout_ms, err);
	if (rc < 0) {
		gw_qmp_close(q);
		return rc;
	}
	*out = q;
	return 0;
}

int gw_qmp_connect(struct gw_qmp **out, const char *socket_path, int64_t timeout_ms, struct gw_error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return gw_error_set(err, -ENAMETOOLONG, "QMP socket path %s is longer than %zu bytes", socket_path,
				    sizeof(addr.sun_path) - 1);
	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return gw_error_set(err, -errno, "QMP: socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(fd);
		return gw_error_set(err, -e, "QMP: connect %s: %s", socket_path, strerror(e));
	}
	return gw_qmp_open_fd(out, fd, timeout_ms, err);
}
