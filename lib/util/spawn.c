/* Run a helper program (argv, never a shell) with its input on stdin and its
 * output captured: a clean environment, every other fd closed, output bounded,
 * the whole process group killed at the deadline. For short-lived tools such
 * as ssh-keygen whose verdict is the exit status plus a line of text. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/util.h"

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
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	char path[4096];
	const char *p = getenv("PATH");
	int rc;

	snprintf(path, sizeof(path), "PATH=%s", p && *p ? p : "/usr/local/bin:/usr/bin:/bin");
	char *const envp[] = { path, "LC_ALL=C", NULL };
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out_p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_p[1], 2);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setpgroup(&attr, 0);
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setsigmask(&attr, &none);
	/* the pipes are O_CLOEXEC: only the dup2'd copies reach the child */
	rc = posix_spawnp(out, argv[0], &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0)
		return gw_error_set(err, -rc, "cannot run %s: %s", argv[0], strerror(rc));
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

int gw_spawn_capture(int *out_status, struct gw_strbuf *out, struct gw_strbuf *errout, char *const *argv,
		     const char *in, size_t in_len, size_t max, int64_t timeout_ms, struct gw_error *err)
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
	if (in_len == 0)
		close_pair(in_p);

	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	while (out_p[0] >= 0 || err_p[0] >= 0) {
		struct pollfd p[3] = { { out_p[0], POLLIN, 0 }, { err_p[0], POLLIN, 0 }, { in_p[1], POLLOUT, 0 } };
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			rc = gw_error_set(err, -ETIMEDOUT, "%s: killed after %lldms without an answer", argv[0],
					  (long long)timeout_ms);
			goto out;
		}
		if (poll(p, 3, (int)left) < 0 && errno != EINTR) {
			rc = gw_error_set(err, -errno, "poll: %s", strerror(errno));
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			goto out;
		}
		if (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
			ssize_t n = write_nosigpipe(in_p[1], in + written, in_len - written);
			if (n > 0)
				written += (size_t)n;
			if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == in_len)
				close_pair(in_p); /* all given, or the child stopped reading */
		}
		if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(out_p[0], out, max)) {
			close(out_p[0]);
			out_p[0] = -1;
		}
		if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(err_p[0], errout, max)) {
			close(err_p[0]);
			err_p[0] = -1;
		}
	}
	close_pair(in_p);
	/* output closed; the child may still linger past the deadline */
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			rc = gw_error_set(err, -errno, "wait %s: %s", argv[0], strerror(errno));
			goto out;
		}
		if (gw_monotonic_ms() >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			rc = gw_error_set(err, -ETIMEDOUT, "%s: killed after %lldms without exiting", argv[0],
					  (long long)timeout_ms);
			goto out;
		}
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	*out_status = status;
	rc = 0;
out:
	close_pair(in_p);
	close_pair(out_p);
	close_pair(err_p);
	return rc;
}
