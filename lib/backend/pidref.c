/* Handles of workloads that are one host process: pid plus start time,
 * serialised as JSON, shown as "pid N", watched through a pidfd. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidref.h"

char *gw_pidref__handle(long long pid, long long start_time)
{
	if (pid <= 0)
		return NULL;
	json_t *h = json_pack("{s:I, s:I}", "pid", (json_int_t)pid, "start_time", (json_int_t)start_time);
	char *s = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(h);
	return s;
}

void gw_pidref__parse(long long *pid, long long *start_time, const char *handle)
{
	json_t *h = handle ? json_loads(handle, 0, NULL) : NULL;
	*pid = json_integer_value(json_object_get(h, "pid"));
	*start_time = json_integer_value(json_object_get(h, "start_time"));
	if (*pid < 0)
		*pid = *start_time = 0;
	json_decref(h);
}

void gw_pidref__describe(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle)
{
	long long pid, start;
	(void)b;
	gw_pidref__parse(&pid, &start, handle);
	json_object_set_new(fields, "pid", pid ? json_integer(pid) : json_null());
	if (size)
		snprintf(text, size, "pid %lld", pid);
}

int gw_pidref__watch(int *out_fd, struct gw_backend *b, const struct gw_observed *o)
{
	long long pid, start;
	(void)b;
	gw_pidref__parse(&pid, &start, o->handle);
	if (pid <= 1)
		return -EINVAL;
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (fd < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	/* the pid may have been reused since: the start time tells */
	if (start && !gw_proc_alive(pid, start)) {
		close(fd);
		return -ESRCH;
	}
	*out_fd = fd;
	return 0;
}
