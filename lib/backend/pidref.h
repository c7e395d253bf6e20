/* The handle of a workload that is one host process (a Process's workload,
 * a VM's QEMU): its pid plus its start time from /proc/PID/stat, so a reused
 * pid is never taken for ours (systemd's PidRef). Shared by process.c and
 * vm.c; the core never reads it. */
#ifndef GITWARD_BACKEND_PIDREF_H
#define GITWARD_BACKEND_PIDREF_H

#include "gitward/backend.h"

/* {"pid":N,"start_time":S} (caller frees); NULL when pid <= 0. */
char *gw_pidref__handle(long long pid, long long start_time);
/* The pid and start time a handle names; 0 and 0 for NULL or a handle that
 * is not one of these. */
void gw_pidref__parse(long long *pid, long long *start_time, const char *handle);
/* The describe op: "pid" (null without one), text "pid N". */
void gw_pidref__describe(json_t *fields, char *text, size_t size, const struct gw_backend *b, const char *handle);
/* The watch op: a pidfd of the workload, -ESRCH when it has ended. */
int gw_pidref__watch(int *out_fd, struct gw_backend *b, const struct gw_observed *o);

#endif
