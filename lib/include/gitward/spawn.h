/* The one way gitward starts a child process: a description (argv, environment,
 * credentials, limits, working directory, descriptors, session) handed to
 * gw_spawn_start, which forks, makes only async-signal-safe calls in the
 * child and reports any failure before the exec back to the caller. */
#ifndef GITWARD_SPAWN_H
#define GITWARD_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "gitward/util.h"

/* The PATH every child gets, and the only place programs named without a
 * slash are looked up (gitward's own PATH is never used). */
#define GW_SPAWN_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define GW_SPAWN_PATH_ENV "PATH=" GW_SPAWN_PATH

#define GW_SPAWN_FDS_MAX 8
/* Values of gw_spawn.fds[i] other than a descriptor of the parent. */
#define GW_SPAWN_FD_CLOSED (-1) /* the child has no descriptor i */
#define GW_SPAWN_FD_NULL (-2) /* /dev/null, read-write */
#define GW_SPAWN_FD_KEEP (-3) /* the parent's own descriptor i, if open */

enum gw_spawn_group {
	GW_SPAWN_GROUP_SAME, /* stays in the caller's process group */
	GW_SPAWN_GROUP_NEW, /* leads a new process group (killed as one) */
	GW_SPAWN_SESSION, /* leads a new session */
	GW_SPAWN_DETACH, /* double fork: a new session whose leader exits at once,
			  * so the child is not the caller's (no zombie, outlives it) */
};

/* Everything a start needs, resolved before the fork. The child gets default
 * signal dispositions and an empty signal mask, descriptors 0..nfds-1 as
 * fds[] says and no other, then limits, credentials, working directory and
 * exec, in that order. */
struct gw_spawn {
	const char *path; /* the program; NULL: argv[0] (a path) */
	char *const *argv;
	char *const *envp; /* NULL: { GW_SPAWN_PATH_ENV } alone */
	int fds[GW_SPAWN_FDS_MAX];
	int nfds;
	enum gw_spawn_group group;
	long long nofile, nproc, as; /* RLIMIT_NOFILE, _NPROC, _AS; 0: unchanged */
	bool set_user;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t ngroups;
	const char *cwd; /* NULL: unchanged */
};

/* Start s. On success *out_pid is the child (0 for GW_SPAWN_DETACH: its
 * intermediate parent is already reaped) and the exec has happened. A failure
 * in the child before the exec fills err with "STAGE WHAT: reason" (stages:
 * fds, session, limits, setgroups, setgid, setuid, workingDir, exec), the
 * child having exited 127 and been reaped; a failure of the parent (pipe,
 * fork) with "cannot create pipes: ..." or "fork: ...". */
int gw_spawn_start(pid_t *out_pid, const struct gw_spawn *s, struct gw_error *err);

/* name (no slash) looked up in the directories of path (a PATH value; NULL:
 * GW_SPAWN_PATH) as execvp would: the first executable regular file.
 * -ENOENT when none. */
int gw_spawn_find(char *out, size_t size, const char *name, const char *path);

#endif
