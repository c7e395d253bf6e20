/* One gitward changes a state dir at a time: the lock is STATE/lock wherever
 * the run dir is, and a run dir records the state dir that owns it
 * (RUN/owner), so a second state dir naming it is refused instead of adopting
 * (and pruning) the first one's workloads. The lock earlier versions took in a
 * run dir of its own (RUN/lock) is taken too while it exists: an agent of
 * that version still running during an upgrade is never doubled. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitward/paths.h"
#include "gitward/state.h"

#define OWNER_MAX 4096

static int found_one(const char *name, const char *path, void *ud)
{
	(void)name;
	(void)path;
	(void)ud;
	return -EEXIST; /* one is enough */
}

/* Run records an earlier version left in STATE/run while the run dir is now
 * elsewhere: their workloads would be started a second time. */
static int check_no_stranded_records(const char *state_dir, const char *run_dir, struct gw_error *err)
{
	static const enum gw_kind kinds[] = { GW_KIND_PROCESS, GW_KIND_VM };
	char old[4096], logs[4096], dir[4200];
	if (gw_dirs_run_is_legacy(state_dir, run_dir))
		return 0;
	gw_path_state_run(old, sizeof(old), state_dir);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct gw_error serr;
		gw_path_kind_dir(dir, sizeof(dir), old, kinds[i]);
		if (gw_record_scan(dir, ".json", found_one, NULL, &serr) == -EEXIST)
			return gw_error_set_at(err, -EEXIST, dir, 0, 0,
					       "holds run records of workloads started with the run dir %s: keep "
					       "managing them with --run-dir %s (and --log-dir %s)",
					       old, old, gw_path_state_logs(logs, sizeof(logs), state_dir));
	}
	return 0;
}

/* Open a lock file of our own (never through a link); with !create a
 * missing one is no error: *out_fd = -1. */
static int open_lock(int *out_fd, const char *path, bool create, struct gw_error *err)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (create ? O_CREAT : 0), 0600);
	if (fd < 0 && errno == ENOENT && !create) {
		*out_fd = -1;
		return 0;
	}
	if (fd < 0 && errno == ELOOP)
		return gw_error_set_at(err, -ELOOP, path, 0, 0, "lock is a symbolic link: remove it");
	if (fd < 0)
		return gw_error_set_at(err, -errno, path, 0, 0, "cannot open lock: %s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return gw_error_set_at(err, -EINVAL, path, 0, 0, "lock is not a plain file of its own: remove it");
	}
	*out_fd = fd;
	return 0;
}

/* Take the open lock fd or fail at once naming the holder's pid (what it
 * wrote there); then write ours, for the next one to name. */
static int take(int fd, const char *path, const char *state_dir, const char *whose, struct gw_error *err)
{
	char buf[32];
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			return gw_error_set(err, -EBUSY, "state dir %s is in use by another gitward (pid %s)%s",
					    state_dir, buf[0] ? buf : "unknown", whose);
		return gw_error_set_at(err, -e, path, 0, 0, "cannot lock: %s", strerror(e));
	}
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return gw_error_set_at(err, -errno, path, 0, 0, "cannot write lock: %s", strerror(errno));
	return 0;
}

/* The state dir RUN/owner names (*out NULL: none recorded). */
static int owner_read(char **out, const char *path, struct gw_error *err)
{
	char *data;
	size_t len;
	int rc = gw_file_read_nofollow(&data, &len, path, OWNER_MAX, err);
	if (rc == -ENOENT) {
		*out = NULL;
		return 0;
	}
	if (rc < 0)
		return rc;
	while (len > 0 && data[len - 1] == '\n')
		data[--len] = '\0';
	if (len == 0 || data[0] != '/' || memchr(data, '\0', len) || memchr(data, '\n', len)) {
		free(data);
		return gw_error_set_at(err, -EBADMSG, path, 0, 0,
				       "not one line naming a state dir: remove it and the next gitward to lock the "
				       "run dir owns it");
	}
	*out = data;
	return 0;
}

static bool same_dir(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The run dir belongs to state_dir, or to no one yet: then, with claim, it
 * is recorded as state_dir's (under a lock of the run dir itself, so two
 * state dirs claiming it at once cannot both win). A run dir that does not
 * exist yet (STATE/run before its first record) is claimed later. */
static int run_dir_owned(const char *state_dir, const char *run_dir, bool claim, struct gw_error *err)
{
	char path[4096], *owner = NULL, line[4200];
	int dfd, rc;

	dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0
				       : gw_error_set_at(err, -errno, run_dir, 0, 0, "run dir: %s", strerror(errno));
	if (claim && flock(dfd, LOCK_EX) < 0) {
		rc = gw_error_set_at(err, -errno, run_dir, 0, 0, "cannot lock the run dir: %s", strerror(errno));
		goto out;
	}
	gw_path_run_owner(path, sizeof(path), run_dir);
	if ((rc = owner_read(&owner, path, err)) < 0)
		goto out;
	if (owner && !same_dir(owner, state_dir)) {
		struct stat st;
		bool gone = stat(owner, &st) < 0 && errno == ENOENT;
		rc = gw_error_set(err, -EBUSY, "run dir %s belongs to state dir %s%s%s%s", run_dir, owner,
				  gone ? ", which no longer exists: remove " : ": use --state-dir ",
				  gone ? path : owner,
				  gone ? " to give the run dir to another state dir" : ", or another --run-dir");
		goto out;
	}
	if (claim && !owner) {
		snprintf(line, sizeof(line), "%s\n", state_dir);
		rc = gw_file_write_atomic(path, line, strlen(line), err);
	}
out:
	free(owner);
	close(dfd); /* and with it the run dir's lock */
	return rc;
}

void gw_lock_init(struct gw_lock *lock)
{
	lock->fd = -1;
	lock->old_fd = -1;
}

void gw_state_unlock(struct gw_lock *lock)
{
	if (lock->fd >= 0)
		close(lock->fd);
	if (lock->old_fd >= 0)
		close(lock->old_fd);
	gw_lock_init(lock);
}

/* RUN/lock of an earlier version, when the run dir is not STATE/run and
 * the file is there: held by such an agent, the state dir is in use. */
static int take_old_lock(int *out_fd, const char *state_dir, const char *run_dir, struct gw_error *err)
{
	char path[4096], whose[4200];
	int rc;

	*out_fd = -1;
	if (gw_dirs_run_is_legacy(state_dir, run_dir))
		return 0;
	gw_path_old_run_lock(path, sizeof(path), run_dir);
	if ((rc = open_lock(out_fd, path, false, err)) < 0 || *out_fd < 0)
		return rc;
	snprintf(whose, sizeof(whose), ", holding %s (the lock of an earlier version)", path);
	if ((rc = take(*out_fd, path, state_dir, whose, err)) < 0) {
		close(*out_fd);
		*out_fd = -1;
	}
	return rc;
}

int gw_state_lock(struct gw_lock *out, const char *state_dir, const char *run_dir, const char *log_dir,
		  struct gw_error *err)
{
	struct gw_lock l;
	char path[4096];
	int rc;

	gw_lock_init(&l);
	if ((rc = gw_state_dir_check(state_dir, run_dir, log_dir, err)) < 0 ||
	    (rc = check_no_stranded_records(state_dir, run_dir, err)) < 0)
		goto out;
	gw_path_lock(path, sizeof(path), state_dir);
	if ((rc = open_lock(&l.fd, path, true, err)) < 0 || (rc = take(l.fd, path, state_dir, "", err)) < 0)
		goto out;
	/* another state dir's run dir: refused before its old lock is asked,
	 * so the message names the owner; claimed only once all is held */
	if ((rc = run_dir_owned(state_dir, run_dir, false, err)) < 0 ||
	    (rc = take_old_lock(&l.old_fd, state_dir, run_dir, err)) < 0 ||
	    (rc = run_dir_owned(state_dir, run_dir, true, err)) < 0)
		goto out;
	*out = l;
	gw_lock_init(&l); /* now owned by *out */
out:
	gw_state_unlock(&l);
	return rc;
}
