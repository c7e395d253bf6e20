/* The spawn builder: every child gitward starts (process supervisors and
 * their workloads, health checks, QEMU, the Git fetch, helper tools) is
 * described by a struct gw_spawn and started here: fork, async-signal-safe
 * steps only, exec, and any failure before the exec reported back on a
 * close-on-exec pipe. Also gw_spawn_capture, for short-lived tools such as
 * ssh-keygen whose verdict is the exit status plus a line of text. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/spawn.h"

/* ---- the builder ---- */

enum stage { ST_FDS, ST_SESSION, ST_FORK, ST_LIMITS, ST_SETGROUPS, ST_SETGID, ST_SETUID, ST_CWD, ST_EXEC };
static const char *const stage_names[] = { "fds",    "session", "fork",	      "limits", "setgroups",
					   "setgid", "setuid",	"workingDir", "exec" };

/* What a child that failed before its exec writes on the report pipe. */
struct failure {
	int stage, error;
};

static void child_fail(int fd, enum stage stage) __attribute__((noreturn));
static void child_fail(int fd, enum stage stage)
{
	struct failure f = { (int)stage, errno };
	ssize_t n = write(fd, &f, sizeof(f));
	(void)n;
	GW_COVERAGE_DUMP();
	_exit(127);
}

static void child_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Descriptors 0..nfds-1 as asked, the report pipe at nfds (close-on-exec),
 * nothing else. Sources are first copied above nfds so that no target
 * overwrites a source still to be placed. */
static int child_fds(const struct gw_spawn *s, int devnull, int *report)
{
	int hi = s->nfds + 1, src[GW_SPAWN_FDS_MAX];
	int r = fcntl(*report, F_DUPFD_CLOEXEC, hi);
	if (r < 0)
		return -errno;
	*report = r;
	for (int i = 0; i < s->nfds; i++) {
		int f = s->fds[i] == GW_SPAWN_FD_KEEP ? i : s->fds[i] == GW_SPAWN_FD_NULL ? devnull : s->fds[i];
		src[i] = f >= 0 ? fcntl(f, F_DUPFD_CLOEXEC, hi) : -1;
		if (src[i] < 0 && f >= 0 && !(s->fds[i] == GW_SPAWN_FD_KEEP && errno == EBADF))
			return -errno;
	}
	for (int i = 0; i < s->nfds; i++) {
		if (src[i] >= 0 ? dup2(src[i], i) < 0 : close(i) < 0 && errno != EBADF)
			return -errno;
	}
	if (dup3(*report, s->nfds, O_CLOEXEC) < 0)
		return -errno;
	*report = s->nfds;
	close_range((unsigned)s->nfds + 1, ~0U, 0);
	return 0;
}

static int set_limit(int resource, long long value)
{
	struct rlimit rl;
	if (value <= 0)
		return 0;
	rl.rlim_cur = rl.rlim_max = (rlim_t)value;
	return setrlimit(resource, &rl);
}

/* After fork: never returns. */
static void child_run(const struct gw_spawn *s, const char *path, char *const *envp, int devnull, int report)
	__attribute__((noreturn));
static void child_run(const struct gw_spawn *s, const char *path, char *const *envp, int devnull, int report)
{
	child_signals();
	if ((s->group == GW_SPAWN_SESSION || s->group == GW_SPAWN_DETACH) && setsid() < 0)
		child_fail(report, ST_SESSION);
	if (s->group == GW_SPAWN_GROUP_NEW && setpgid(0, 0) < 0)
		child_fail(report, ST_SESSION);
	if (s->group == GW_SPAWN_DETACH) {
		pid_t grandchild = fork();
		if (grandchild < 0)
			child_fail(report, ST_FORK);
		if (grandchild > 0) {
			GW_COVERAGE_DUMP();
			_exit(0);
		}
	}
	if (child_fds(s, devnull, &report) < 0)
		child_fail(report, ST_FDS);
	if (set_limit(RLIMIT_NOFILE, s->nofile) < 0 || set_limit(RLIMIT_NPROC, s->nproc) < 0 ||
	    set_limit(RLIMIT_AS, s->as) < 0)
		child_fail(report, ST_LIMITS);
	if (s->set_user) {
		GW_COVERAGE_DUMP(); /* while it may still write the build tree */
		if (setgroups(s->ngroups, s->groups) < 0)
			child_fail(report, ST_SETGROUPS);
		if (setgid(s->gid) < 0)
			child_fail(report, ST_SETGID);
		if (setuid(s->uid) < 0)
			child_fail(report, ST_SETUID);
	}
	if (s->cwd && chdir(s->cwd) < 0)
		child_fail(report, ST_CWD);
	GW_COVERAGE_DUMP();
	execve(path, s->argv, envp);
	child_fail(report, ST_EXEC);
}

/* The child's verdict: 0 once it has exec'd (the report pipe closed empty),
 * else its failure. */
static int read_failure(struct failure *f, int fd)
{
	size_t have = 0;
	while (have < sizeof(*f)) {
		ssize_t n = read(fd, (char *)f + have, sizeof(*f) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	return have == sizeof(*f) ? -1 : 0;
}

int gw_spawn_start(pid_t *out_pid, const struct gw_spawn *s, struct gw_error *err)
{
	static char *const default_env[] = { GW_SPAWN_PATH_ENV, NULL };
	const char *path = s->path ? s->path : s->argv[0];
	char *const *envp = s->envp ? s->envp : default_env;
	int report[2] = { -1, -1 }, devnull = -1, rc = 0, status;
	sigset_t all, old;
	struct failure f;
	pid_t pid;

	for (int i = 0; i < s->nfds && devnull < 0; i++)
		if (s->fds[i] == GW_SPAWN_FD_NULL && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
			return gw_error_set(err, -errno, "cannot create pipes: %s", strerror(errno));
	if (pipe2(report, O_CLOEXEC) < 0) {
		rc = gw_error_set(err, -errno, "cannot create pipes: %s", strerror(errno));
		goto out;
	}
	/* no handler of ours may run in the child before it resets them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		child_run(s, path, envp, devnull, report[1]);
	int fork_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		rc = gw_error_set(err, -fork_errno, "fork: %s", strerror(fork_errno));
		goto out;
	}
	close(report[1]);
	report[1] = -1;
	if (s->group == GW_SPAWN_DETACH)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	if (read_failure(&f, report[0]) < 0) {
		if (s->group != GW_SPAWN_DETACH)
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
		const char *what = f.stage == ST_CWD ? s->cwd : f.stage == ST_EXEC ? path : "";
		const char *stage = f.stage >= 0 && f.stage <= ST_EXEC ? stage_names[f.stage] : "start";
		rc = gw_error_set(err, -f.error, "%s %s: %s", stage, what, strerror(f.error));
		goto out;
	}
	*out_pid = s->group == GW_SPAWN_DETACH ? 0 : pid;
out:
	for (int i = 0; i < 2; i++)
		if (report[i] >= 0)
			close(report[i]);
	if (devnull >= 0)
		close(devnull);
	return rc;
}

int gw_spawn_find(char *out, size_t size, const char *name, const char *path)
{
	struct stat st;
	const char *p = path ? path : GW_SPAWN_PATH;
	while (*p) {
		const char *colon = strchr(p, ':');
		size_t len = colon ? (size_t)(colon - p) : strlen(p);
		if (len > 0 && (size_t)snprintf(out, size, "%.*s/%s", (int)len, p, name) < size &&
		    stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
			return 0;
		p += len + (colon ? 1 : 0);
	}
	return -ENOENT;
}

/* ---- gw_spawn_capture ---- */

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0) {
			close(p[i]);
			p[i] = -1;
		}
}

static int start(pid_t *out, int in[2], int out_p[2], int err_p[2], char *const *argv, struct gw_error *err)
{
	char exe[4096];
	struct gw_error serr;
	int rc;

	/* the fixed PATH, never gitward's own: a program earlier in the PATH
	 * gitward was started with must not stand in for age or ssh-keygen */
	char *const envp[] = { GW_SPAWN_PATH_ENV, "LC_ALL=C", NULL };
	if (strchr(argv[0], '/'))
		snprintf(exe, sizeof(exe), "%s", argv[0]);
	else if (gw_spawn_find(exe, sizeof(exe), argv[0], NULL) < 0)
		return gw_error_set(err, -ENOENT, "cannot run %s: no such program in %s", argv[0], GW_SPAWN_PATH);
	struct gw_spawn s = {
		.path = exe,
		.argv = argv,
		.envp = envp,
		.fds = { in[0], out_p[1], err_p[1] },
		.nfds = 3,
		.group = GW_SPAWN_GROUP_NEW,
	};
	if ((rc = gw_spawn_start(out, &s, &serr)) < 0)
		return gw_error_set(err, rc, "cannot run %s: %s", argv[0], strerror(-rc));
	return 0;
}

/* Write without dying of SIGPIPE when the child has exited: the signal is
 * blocked in this thread for the write and a pending one consumed. */
static ssize_t write_nosigpipe(int fd, const char *data, size_t len)
{
	sigset_t pipe_set, old, pending;
	struct timespec zero = { 0, 0 };
	int was_pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	ssize_t n = write(fd, data, len);
	int saved = errno;
	if (n < 0 && errno == EPIPE && !was_pending)
		sigtimedwait(&pipe_set, NULL, &zero);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return n;
}

/* Append what fd has to sb, keeping at most max bytes. Returns 0 at EOF. */
static int drain(int fd, struct gw_strbuf *sb, size_t max)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	if (sb->len < max)
		gw_strbuf_add(sb, buf, (size_t)n < max - sb->len ? (size_t)n : max - sb->len);
	return 1;
}

/* Has the child exited? Looked at without reaping it: its pid, and so its
 * group's id, stay reserved until the group has been killed. */
static bool exited(pid_t pid)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Kill the child and its process group, and reap it. */
static void kill_reap(pid_t pid, int *status)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/* Is fd of pid the pipe whose inode is ino? */
static bool holds_pipe(const char *link_path, unsigned long long ino)
{
	char target[64], want[64];
	ssize_t n = readlink(link_path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	snprintf(want, sizeof(want), "pipe:[%llu]", ino);
	return strcmp(target, want) == 0;
}

/* The processes still holding the write end of our pipe ino after the child
 * exited escaped its process group (setsid): found by their descriptors in
 * /proc and killed, so that none outlives the call. */
static void kill_holders(unsigned long long ino)
{
	DIR *proc = opendir("/proc");
	struct dirent *d;
	if (!proc)
		return;
	while ((d = readdir(proc))) {
		char fdpath[300], link[600];
		char *end;
		long pid = strtol(d->d_name, &end, 10);
		if (*end || pid <= 1 || pid == (long)getpid())
			continue;
		snprintf(fdpath, sizeof(fdpath), "/proc/%ld/fd", pid);
		DIR *fds = opendir(fdpath);
		if (!fds)
			continue;
		struct dirent *f;
		bool hit = false;
		while (!hit && (f = readdir(fds))) {
			snprintf(link, sizeof(link), "%s/%s", fdpath, f->d_name);
			hit = f->d_name[0] != '.' && holds_pipe(link, ino);
		}
		closedir(fds);
		if (hit)
			kill((pid_t)pid, SIGKILL);
	}
	closedir(proc);
}

/* Append whatever fd has right now (it is non-blocking) to sb, at most max
 * bytes kept; the child has exited, so this is all it wrote. True when the
 * pipe is closed: nothing else holds it. */
static bool drain_now(int fd, struct gw_strbuf *sb, size_t max)
{
	char buf[4096];
	ssize_t n = -1;
	if (fd < 0)
		return true;
	while (sb->len < max && ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)))
		if (n > 0)
			gw_strbuf_add(sb, buf, (size_t)n < max - sb->len ? (size_t)n : max - sb->len);
	return sb->len < max && n == 0;
}

/* Output closed; the child may still linger past the deadline. Once it has
 * exited, what is left of its group goes with it. */
static int reap(int *status, pid_t pid, int64_t deadline, int64_t timeout_ms, const struct gw_cancel *cancel,
		const char *what, struct gw_error *err)
{
	for (;;) {
		if (exited(pid)) {
			kill_reap(pid, status);
			return 0;
		}
		if (gw_cancel_requested(cancel)) {
			kill_reap(pid, status);
			return gw_error_set(err, -ECANCELED, "%s: stopped: the agent is stopping", what);
		}
		if (gw_monotonic_ms() >= deadline) {
			kill_reap(pid, status);
			return gw_error_set(err, -ETIMEDOUT, "%s: killed after %lldms without exiting", what,
					    (long long)timeout_ms);
		}
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* The child has exited while something it left behind still holds its
 * output open: take what it wrote (all there is in the pipes by now), end
 * its group and any escaped holder of the pipes, and stop reading. */
static void finish_exited(int *status, pid_t pid, int out_fd, int err_fd, struct gw_strbuf *out,
			  struct gw_strbuf *errout, size_t max)
{
	struct stat st;
	bool out_closed = drain_now(out_fd, out, max), err_closed = drain_now(err_fd, errout, max);
	kill_reap(pid, status);
	if (!out_closed && fstat(out_fd, &st) == 0)
		kill_holders((unsigned long long)st.st_ino);
	if (!err_closed && fstat(err_fd, &st) == 0)
		kill_holders((unsigned long long)st.st_ino);
}

int gw_spawn_capture(int *out_status, struct gw_strbuf *out, struct gw_strbuf *errout, char *const *argv,
		     const char *in, size_t in_len, size_t max, int64_t timeout_ms, struct gw_error *err)
{
	return gw_spawn_capture_cancel(out_status, out, errout, argv, in, in_len, max, timeout_ms, NULL, err);
}

int gw_spawn_capture_cancel(int *out_status, struct gw_strbuf *out, struct gw_strbuf *errout, char *const *argv,
			    const char *in, size_t in_len, size_t max, int64_t timeout_ms,
			    const struct gw_cancel *cancel, struct gw_error *err)
{
	int in_p[2] = { -1, -1 }, out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 };
	int status = 0, rc;
	size_t written = 0;
	pid_t pid;

	if (pipe2(in_p, O_CLOEXEC) < 0 || pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0) {
		rc = gw_error_set(err, -errno, "pipe: %s", strerror(errno));
		goto out;
	}
	rc = start(&pid, in_p, out_p, err_p, argv, err);
	if (rc < 0)
		goto out;
	close(in_p[0]);
	close(out_p[1]);
	close(err_p[1]);
	in_p[0] = out_p[1] = err_p[1] = -1;
	fcntl(in_p[1], F_SETFL, O_NONBLOCK);
	fcntl(out_p[0], F_SETFL, O_NONBLOCK);
	fcntl(err_p[0], F_SETFL, O_NONBLOCK);
	if (in_len == 0)
		close_pair(in_p);

	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	while (out_p[0] >= 0 || err_p[0] >= 0) {
		struct pollfd p[3] = { { out_p[0], POLLIN, 0 }, { err_p[0], POLLIN, 0 }, { in_p[1], POLLOUT, 0 } };
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0) {
			kill_reap(pid, &status);
			rc = gw_error_set(err, -ETIMEDOUT, "%s: killed after %lldms without an answer", argv[0],
					  (long long)timeout_ms);
			goto out;
		}
		if (gw_cancel_requested(cancel)) {
			kill_reap(pid, &status);
			rc = gw_error_set(err, -ECANCELED, "%s: stopped: the agent is stopping", argv[0]);
			goto out;
		}
		/* woken at least every 50 ms: a stop request, or a child that
		 * exited with its output still held open by what it left */
		int n = poll(p, 3, (int)(left < 50 ? left : 50));
		if (n < 0 && errno != EINTR) {
			rc = gw_error_set(err, -errno, "poll: %s", strerror(errno));
			kill_reap(pid, &status);
			goto out;
		}
		if (exited(pid)) {
			finish_exited(&status, pid, out_p[0], err_p[0], out, errout, max);
			if (out->len >= max) {
				rc = gw_error_set(err, -EMSGSIZE, "%s: more than %zu bytes of output: killed", argv[0],
						  max - 1);
				goto out;
			}
			*out_status = status;
			rc = 0;
			goto out;
		}
		if (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
			ssize_t w = write_nosigpipe(in_p[1], in + written, in_len - written);
			if (w > 0)
				written += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == in_len)
				close_pair(in_p); /* all given, or the child stopped reading */
		}
		if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(out_p[0], out, max)) {
			close(out_p[0]);
			out_p[0] = -1;
		}
		if (out->len >= max) {
			/* the cap is counted, not timed: stop the writer at once */
			kill_reap(pid, &status);
			rc = gw_error_set(err, -EMSGSIZE, "%s: more than %zu bytes of output: killed", argv[0],
					  max - 1);
			goto out;
		}
		if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(err_p[0], errout, max)) {
			close(err_p[0]);
			err_p[0] = -1;
		}
	}
	close_pair(in_p);
	rc = reap(&status, pid, deadline, timeout_ms, cancel, argv[0], err);
	if (rc < 0)
		goto out;
	*out_status = status;
	rc = 0;
out:
	close_pair(in_p);
	close_pair(out_p);
	close_pair(err_p);
	return rc;
}
