/* Process identity from /proc: a pid together with its start time (field 22
 * of /proc/PID/stat), so a reused pid is never taken for a workload; and the
 * one place gitward signals a process, which refuses the pids that mean
 * "everything" to kill(2).
 * A wait for a process to go ends early on a stop request. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gitward/util.h"

/* Fields 3 (state) to 22 (start time) of /proc/PID/stat. */
static int read_stat(char *state, long long fields[23], long long pid)
{
	char path[64], buf[1024];
	int fd;
	ssize_t n;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
	if (!p || p[1] != ' ')
		return -EINVAL;
	p += 2;
	*state = *p;
	for (int field = 4; field <= 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
		fields[field] = strtoll(p, NULL, 10);
	}
	return 0;
}

int gw_proc_stat(long long *start, char *state, long long pid)
{
	long long f[23];
	char st;
	int rc = read_stat(&st, f, pid);
	if (rc < 0)
		return rc;
	*start = f[22];
	*state = st;
	return 0;
}

int gw_proc_ids(struct gw_proc_ids *out, long long pid)
{
	long long f[23];
	char st;
	int rc = read_stat(&st, f, pid);
	if (rc < 0)
		return rc;
	if (st == 'Z' || st == 'X')
		return -ESRCH;
	out->ppid = f[4];
	out->pgrp = f[5];
	out->sid = f[6];
	out->start_time = f[22];
	return 0;
}

ssize_t gw_proc_cmdline(char *buf, size_t size, long long pid)
{
	char path[64];
	size_t len = 0;
	int fd;

	if (pid <= 0 || size < 2)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%lld/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
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

int gw_proc_signal(long long pid, int sig)
{
	/* kill(0) is our own group, kill(-1) everything we may signal, kill(1)
	 * init: no record or pidfile may ever lead there */
	if (pid <= 1 || pid > INT_MAX || pid == (long long)getpid())
		return -EPERM;
	pid_t target = (pid_t)pid;
	if (getpgid(target) == target)
		target = -target; /* it leads its own group: signal all of it */
	if (kill(target, sig) < 0)
		return -errno;
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
