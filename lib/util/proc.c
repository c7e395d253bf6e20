/* Process identity from /proc: a pid together with its start time (field 22
 * of /proc/PID/stat), so a reused pid is never taken for a workload. */
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
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	while (gw_proc_alive(pid, start_time)) {
		if (gw_monotonic_ms() >= deadline)
			return -ETIMEDOUT;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}
