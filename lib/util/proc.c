/* Process identity from /proc: a pid together with its start time (field 22
 * of /proc/PID/stat), so a reused pid is never taken for a workload; and the
 * waits for a process to go, which a stop request ends early. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>

#include "gitward/util.h"

int gw_proc_stat(long long *start, char *state, long long pid)
{
	char path[64], buf[1024];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
	if (!p || p[1] != ' ')
		return -EINVAL;
	p += 2;
	char st = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	*start = strtoll(p, NULL, 10);
	*state = st;
	return 0;
}

bool gw_proc_alive(long long pid, long long start_time)
{
	long long st;
	char state;
	if (pid <= 0 || gw_proc_stat(&st, &state, pid) < 0)
		return false;
	return st == start_time && state != 'Z' && state != 'X';
}

int gw_proc_wait_gone(long long pid, long long start_time, int64_t timeout_ms)
{
	return gw_proc_wait_gone_cancel(pid, start_time, timeout_ms, NULL);
}

int gw_proc_wait_gone_cancel(long long pid, long long start_time, int64_t timeout_ms, const struct gw_cancel *c)
{
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	while (gw_proc_alive(pid, start_time)) {
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (gw_cancel_sleep(c, left < 20 ? left : 20) < 0)
			return -ECANCELED;
	}
	return 0;
}

/* ---- stop requests ---- */

void gw_cancel_request(struct gw_cancel *c)
{
	atomic_store(&c->requested, 1);
}

bool gw_cancel_requested(const struct gw_cancel *c)
{
	/* a relaxed load through a non-const pointer: C11 has no const atomic_load */
	return c && atomic_load_explicit((atomic_int *)&c->requested, memory_order_relaxed) != 0;
}

int gw_cancel_sleep(const struct gw_cancel *c, int64_t ms)
{
	int64_t deadline = gw_monotonic_ms() + ms;
	for (;;) {
		if (gw_cancel_requested(c))
			return -ECANCELED;
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0)
			return 0;
		if (left > 50)
			left = 50;
		struct timespec ts = { left / 1000, (left % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
}
