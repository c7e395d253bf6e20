/* The VM backend: one service per VM, each its own QEMU process, driven over
 * QMP.
 *
 * QEMU is started with an argv (no shell), daemonized with a pidfile so the
 * VM outlives gitward, its serial console in a log file and its QMP socket in
 * the run dir, and -no-shutdown so a guest that powers off is observed as
 * "stopped" rather than vanishing. The record RUN_DIR/vm/NAME.json is
 * written before QEMU starts (pid 0: pending) and completed from the pidfile,
 * so a gitward killed mid-create still finds the VM; the pid is checked
 * against its start time from /proc/PID/stat, and only a QEMU whose argv
 * names this VM and its QMP socket in our run dir is ever signalled.
 * Stop = system_powerdown, wait stopTimeout, quit, then SIGKILL.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/backend.h"
#include "gitward/paths.h"
#include "gitward/qmp.h"
#include "gitward/schema.h"
#include "gitward/spawn.h"
#include "gitward/state.h"
#include "pidref.h"

#define START_TIMEOUT_MS 60000
#define QMP_TIMEOUT_MS 5000

extern char **environ;

static void vm_path(char *buf, size_t size, const char *run_dir, const char *name, const char *ext)
{
	gw_path_record(buf, size, run_dir, GW_KIND_VM, name, ext);
}

/* start time of pid, or -ESRCH when it is gone */
static long long start_time_of(long long pid)
{
	long long start;
	char state;
	if (gw_proc_stat(&start, &state, pid) < 0 || state == 'Z' || state == 'X')
		return -ESRCH;
	return start;
}

static char *qemu_escape(const char *s);

/* Does pid run QEMU for this VM of this run dir? Its argv must carry
 * `-name gitward-NAME` and `-qmp unix:RUN_DIR/vm/NAME.qmp,...` exactly
 * as build_argv writes them: a pidfile or record naming anything else (a
 * reused pid, a forged file) is not ours. */
static bool is_our_qemu(long long pid, const char *name, const char *run_dir)
{
	char buf[16384], want_name[128], qmp[4096];
	ssize_t n = gw_proc_cmdline(buf, sizeof(buf), pid);
	bool named = false, sock = false;

	if (pid <= 1 || n <= 0)
		return false;
	snprintf(want_name, sizeof(want_name), "gitward-%s", name);
	vm_path(qmp, sizeof(qmp), run_dir, name, "qmp");
	char *e = qemu_escape(qmp);
	struct gw_strbuf want_qmp;
	gw_strbuf_init(&want_qmp);
	gw_strbuf_printf(&want_qmp, "unix:%s,server=on,wait=off", e);
	free(e);
	const char *prev = "";
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		named |= !strcmp(prev, "-name") && !strcmp(buf + i, want_name);
		sock |= !strcmp(prev, "-qmp") && !strcmp(buf + i, want_qmp.s);
		prev = buf + i;
	}
	gw_strbuf_free(&want_qmp);
	return named && sock;
}

static long long read_pidfile(const char *path)
{
	char *data = NULL;
	struct gw_error err;
	if (gw_file_read_nofollow(&data, NULL, path, 64, &err) < 0)
		return 0;
	long long pid = strtoll(data, NULL, 10);
	free(data);
	return pid;
}

/* The run record: the shared fields, the resource's name and QEMU's pid and
 * start time (0 while it starts). */
static int write_record(const char *path, const struct gw_resource *r, long long pid, long long start)
{
	struct gw_observed o;
	gw_observed_start(&o, r);
	json_t *rec = gw_record_new(&o);
	gw_observed_clear(&o);
	json_object_set_new(rec, "pid", json_integer(pid));
	json_object_set_new(rec, "start_time", json_integer(start));
	json_object_set_new(rec, "name", json_string(r->name));
	int rc = gw_record_write(path, rec, NULL);
	json_decref(rec);
	return rc;
}

static void qmp_status(struct gw_observed *o, const char *sock)
{
	struct gw_qmp *q;
	struct gw_error err;
	json_t *st = NULL;
	if (gw_qmp_connect(&q, sock, QMP_TIMEOUT_MS, &err) < 0) {
		o->state = GW_STATE_RUNNING;
		snprintf(o->detail, sizeof(o->detail), "QEMU runs, QMP unreachable: %s", err.msg);
		return;
	}
	if (gw_qmp_execute(&st, q, "query-status", NULL, QMP_TIMEOUT_MS, &err) < 0) {
		o->state = GW_STATE_RUNNING;
		snprintf(o->detail, sizeof(o->detail), "%s", err.msg);
	} else {
		const char *s = json_string_value(json_object_get(st, "status"));
		if (json_is_true(json_object_get(st, "running"))) {
			o->state = GW_STATE_RUNNING;
		} else if (s && !strcmp(s, "shutdown")) {
			o->state = GW_STATE_STOPPED;
			snprintf(o->detail, sizeof(o->detail), "the guest powered off");
		} else if (s && (!strcmp(s, "prelaunch") || !strcmp(s, "inmigrate"))) {
			o->state = GW_STATE_PENDING;
			snprintf(o->detail, sizeof(o->detail), "QEMU status %s", s);
		} else {
			o->state = GW_STATE_FAILED;
			snprintf(o->detail, sizeof(o->detail), "QEMU status %s", s ? s : "unknown");
		}
		json_decref(st);
	}
	gw_qmp_close(q);
}

struct scan {
	const struct gw_backend_config *ctx;
	struct gw_observed *v;
	size_t n, cap;
};

static int discover_one(const char *name, const char *path, void *ud)
{
	struct scan *sc = ud;
	const struct gw_backend_config *ctx = sc->ctx;
	json_t *rec = gw_record_load(path);
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 8;
		sc->v = gw_xrealloc(sc->v, sc->cap * sizeof(*sc->v));
	}
	struct gw_observed *o = &sc->v[sc->n];
	if (!rec || gw_record_parse(o, GW_KIND_VM, name, rec) < 0) {
		json_decref(rec);
		gw_log(GW_LOG_WARN, name, "unreadable VM record %s: ignored", path);
		return 0;
	}
	long long pid = json_integer_value(json_object_get(rec, "pid"));
	long long start = json_integer_value(json_object_get(rec, "start_time"));
	json_decref(rec);
	if (pid == 0) {
		/* pending: a gitward was killed while starting it */
		char pidfile[4096];
		vm_path(pidfile, sizeof(pidfile), ctx->run_dir, name, "pid");
		long long p = read_pidfile(pidfile);
		if (p > 1 && is_our_qemu(p, name, ctx->run_dir)) {
			pid = p;
			start = start_time_of(p);
		}
	}
	if (gw_proc_alive(pid, start) && !is_our_qemu(pid, name, ctx->run_dir)) {
		gw_log(GW_LOG_WARN, name,
		       "run record %s names pid %lld, which is not QEMU running this VM: not ours, ignored", path, pid);
		gw_observed_clear(o);
		return 0;
	}
	sc->n++;
	o->handle = gw_pidref__handle(pid, start);
	if (gw_proc_alive(pid, start)) {
		char sock[4096];
		vm_path(sock, sizeof(sock), ctx->run_dir, name, "qmp");
		qmp_status(o, sock);
	} else {
		o->state = GW_STATE_FAILED;
		snprintf(o->detail, sizeof(o->detail), pid ? "QEMU exited" : "QEMU never started");
	}
	return 0;
}

static int vm_discover(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
		       const struct gw_backend_call *call, struct gw_error *err)
{
	char dir[4096];
	struct scan sc = { .ctx = &b->cfg };
	int rc;

	(void)call;
	gw_path_kind_dir(dir, sizeof(dir), b->cfg.run_dir, GW_KIND_VM);
	if ((rc = gw_record_scan(dir, ".json", discover_one, &sc, err)) < 0) {
		for (size_t i = 0; i < sc.n; i++)
			gw_observed_clear(&sc.v[i]);
		free(sc.v);
		return rc;
	}
	*out = sc.v;
	*out_n = sc.n;
	return 0;
}

/* The QEMU binary: $GITWARD_QEMU, else qemu-system-x86_64 on PATH. */
static int find_qemu(char *out, size_t size, const struct gw_backend_config *ctx, struct gw_error *err)
{
	const char *want = ctx->qemu_binary && *ctx->qemu_binary ? ctx->qemu_binary : "qemu-system-x86_64";
	if (strchr(want, '/')) {
		if (access(want, X_OK) == 0) {
			snprintf(out, size, "%s", want);
			return 0;
		}
		return gw_error_set(err, -ENOENT, "QEMU binary %s: %s", want, strerror(errno));
	}
	if (gw_spawn_find(out, size, want, NULL) == 0)
		return 0;
	return gw_error_set(err, -ENOENT, "QEMU binary %s not found (install qemu-system-x86)", want);
}

static int vm_supported(struct gw_backend *b, struct gw_error *err)
{
	char bin[4096];
	return find_qemu(bin, sizeof(bin), &b->cfg, err);
}

struct argv {
	char **v;
	size_t n;
};

static void arg(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct argv *a, const char *fmt, ...)
{
	struct gw_strbuf sb;
	va_list ap;
	gw_strbuf_init(&sb);
	va_start(ap, fmt);
	gw_strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	a->v = gw_xrealloc(a->v, (a->n + 2) * sizeof(char *));
	a->v[a->n++] = gw_strbuf_detach(&sb);
	a->v[a->n] = NULL;
}

static void argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

/* QEMU's option values separate with commas: a comma in a path is doubled. */
static char *qemu_escape(const char *s)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	for (; *s; s++) {
		gw_strbuf_add(&sb, s, 1);
		if (*s == ',')
			gw_strbuf_add(&sb, ",", 1);
	}
	return gw_strbuf_detach(&sb);
}

static int use_kvm(const struct gw_resource *r)
{
	if (r->accel == GW_ACCEL_KVM)
		return 1;
	if (r->accel == GW_ACCEL_TCG)
		return 0;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static void build_argv(struct argv *a, const char *qemu, const struct gw_resource *r, const char *log, const char *qmp,
		       const char *pidfile)
{
	int64_t mem = r->memory ? r->memory : 512LL << 20;
	char *e;
	arg(a, "%s", qemu);
	arg(a, "-name");
	arg(a, "gitward-%s", r->name);
	arg(a, "-m");
	arg(a, "%lld", (long long)((mem + (1 << 20) - 1) >> 20));
	arg(a, "-smp");
	arg(a, "%lld", (long long)(r->vcpus ? r->vcpus : 1));
	arg(a, "-accel");
	arg(a, "%s", use_kvm(r) ? "kvm" : "tcg");
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-display");
	arg(a, "none");
	arg(a, "-no-shutdown");
	e = qemu_escape(log);
	arg(a, "-serial");
	arg(a, "file:%s", e);
	free(e);
	e = qemu_escape(qmp);
	arg(a, "-qmp");
	arg(a, "unix:%s,server=on,wait=off", e);
	free(e);
	arg(a, "-pidfile");
	arg(a, "%s", pidfile);
	arg(a, "-daemonize");
	if (r->kernel) {
		arg(a, "-kernel");
		arg(a, "%s", r->kernel);
		if (r->initrd) {
			arg(a, "-initrd");
			arg(a, "%s", r->initrd);
		}
		if (r->cmdline) {
			arg(a, "-append");
			arg(a, "%s", r->cmdline);
		}
	}
	if (r->disk) {
		size_t dl = strlen(r->disk);
		e = qemu_escape(r->disk);
		arg(a, "-drive");
		arg(a, "file=%s,if=virtio,format=%s", e,
		    dl > 6 && !strcmp(r->disk + dl - 6, ".qcow2") ? "qcow2" : "raw");
		free(e);
	}
	if (r->network == GW_NET_NONE) {
		arg(a, "-nic");
		arg(a, "none");
	} else {
		struct gw_strbuf nd;
		gw_strbuf_init(&nd);
		gw_strbuf_puts(&nd, "user,id=net0");
		for (size_t i = 0; i < r->forwards.n; i++) {
			struct gw_portmap pm;
			if (gw_portmap_parse(&pm, r->forwards.v[i]) == 0)
				gw_strbuf_printf(&nd, ",hostfwd=%s:%s:%u-:%u", pm.proto, pm.host_ip, pm.host_port,
						 pm.port);
		}
		arg(a, "-netdev");
		arg(a, "%s", nd.s);
		gw_strbuf_free(&nd);
		arg(a, "-device");
		arg(a, "virtio-net-pci,netdev=net0");
	}
}

static int check_file(const char *what, const char *path, struct gw_error *err)
{
	if (path && access(path, R_OK) < 0)
		return gw_error_set(err, -errno, "%s %s: %s", what, path, strerror(errno));
	return 0;
}

static void forget(const struct gw_backend_config *ctx, const char *name)
{
	static const char *const exts[] = { "json", "pid", "qmp" };
	char path[4096];
	for (size_t i = 0; i < 3; i++) {
		vm_path(path, sizeof(path), ctx->run_dir, name, exts[i]);
		unlink(path);
	}
}

/* The foreground QEMU exits once the daemon is up (or failed): collect its
 * words (the tail, for the error) and its status; -ETIMEDOUT, QEMU killed,
 * when it does not exit in time. */
static int wait_foreground(int *status, char *out, size_t size, pid_t pid, int fd)
{
	size_t outlen = 0;
	int exited = 0, eof = 0;
	int64_t deadline = gw_monotonic_ms() + START_TIMEOUT_MS;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - gw_monotonic_ms();
		if (left <= 0)
			break;
		int pr = eof ? 0 : poll(&p, 1, (int)(left > 100 ? 100 : left));
		if (eof) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (pr > 0) {
			char chunk[1024];
			ssize_t n = read(fd, chunk, sizeof(chunk));
			if (n <= 0)
				eof = 1;
			if (n > 0) {
				/* keep the tail */
				if (outlen + (size_t)n > size - 1) {
					size_t drop = outlen + (size_t)n - (size - 1);
					if (drop > outlen)
						drop = outlen;
					memmove(out, out + drop, outlen - drop);
					outlen -= drop;
				}
				size_t take = (size_t)n < size - 1 ? (size_t)n : size - 1;
				memcpy(out + outlen, chunk + n - take, take);
				outlen += take;
			}
		}
		if (!exited && waitpid(pid, status, WNOHANG) == pid)
			exited = 1;
		if (exited && (pr <= 0 || eof))
			break; /* drained (the daemon may keep the pipe: do not wait for it) */
	}
	out[outlen] = '\0';
	if (!exited) {
		kill(pid, SIGKILL);
		waitpid(pid, status, 0);
		return -ETIMEDOUT;
	}
	return 0;
}

/* Run QEMU (it daemonizes) in its own session, stdin on /dev/null and its
 * output on a pipe; 0 once the foreground QEMU exited 0. */
static int start_qemu(const char *qemu, char *const *argv, struct gw_error *err)
{
	char out[4096];
	int pipefd[2], status = 0, rc;
	struct gw_error serr;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return gw_error_set(err, -errno, "pipe: %s", strerror(errno));
	struct gw_spawn s = {
		.path = qemu,
		.argv = argv,
		.fds = { GW_SPAWN_FD_NULL, pipefd[1], pipefd[1] },
		.nfds = 3,
		.group = GW_SPAWN_SESSION,
	};
	rc = gw_spawn_start(&pid, &s, &serr);
	close(pipefd[1]);
	if (rc < 0) {
		close(pipefd[0]);
		return gw_error_set(err, rc, "exec %s: %s", qemu, strerror(-rc));
	}
	rc = wait_foreground(&status, out, sizeof(out), pid, pipefd[0]);
	close(pipefd[0]);
	if (rc < 0)
		return gw_error_set(err, -ETIMEDOUT, "QEMU did not start within %ds", START_TIMEOUT_MS / 1000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		size_t outlen = strlen(out);
		char *t = out + outlen;
		while (t > out && (t[-1] == '\n' || t[-1] == '\r'))
			*--t = '\0';
		char *last = out;
		if (strlen(out) > 300)
			last = out + strlen(out) - 300;
		return gw_error_set(err, -EIO, "QEMU exited at start (status %d): %s",
				    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				    *last ? last : "no message");
	}
	return 0;
}

static int vm_create(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
		     const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_backend_config *ctx = &b->cfg;
	char qemu[4096], rec[4096], pidfile[4096], qmp[4096], log[4096], dir[4096];
	struct argv a = { 0 };
	int rc;

	if ((rc = find_qemu(qemu, sizeof(qemu), ctx, err)) < 0)
		return rc;
	if ((rc = check_file("kernel", r->kernel, err)) < 0 || (rc = check_file("initrd", r->initrd, err)) < 0 ||
	    (rc = check_file("disk", r->disk, err)) < 0)
		return rc;
	vm_path(qmp, sizeof(qmp), ctx->run_dir, r->name, "qmp");
	if (strlen(qmp) > GW_SOCKET_PATH_MAX)
		return gw_error_set(err, -ENAMETOOLONG,
				    "QMP socket path %s is %zu bytes, longer than a unix socket takes (%d): choose a "
				    "shorter --run-dir",
				    qmp, strlen(qmp), GW_SOCKET_PATH_MAX);
	if ((rc = gw_mkdir_p(gw_path_kind_dir(dir, sizeof(dir), ctx->run_dir, GW_KIND_VM), 0700, err)) < 0 ||
	    (rc = gw_mkdir_p(ctx->log_dir, 0700, err)) < 0)
		return rc;
	vm_path(rec, sizeof(rec), ctx->run_dir, r->name, "json");
	vm_path(pidfile, sizeof(pidfile), ctx->run_dir, r->name, "pid");
	gw_path_log(log, sizeof(log), ctx->log_dir, GW_KIND_VM, r->name);
	unlink(pidfile);
	unlink(qmp);
	/* keep the previous boot's console (a crash's last words) as .1 */
	char old[4200];
	snprintf(old, sizeof(old), "%s.1", log);
	rename(log, old);
	/* pending record first: a gitward killed from here on still finds it */
	(void)call;
	if ((rc = write_record(rec, r, 0, 0)) < 0)
		return gw_error_set_at(err, rc, rec, 0, 0, "cannot write the VM record");

	build_argv(&a, qemu, r, log, qmp, pidfile);
	rc = start_qemu(qemu, a.v, err);
	argv_free(&a);
	if (rc < 0)
		goto fail;
	long long qpid = read_pidfile(pidfile);
	long long start = qpid > 0 ? start_time_of(qpid) : -1;
	if (qpid <= 0 || start < 0) {
		rc = gw_error_set(err, -ESRCH, "QEMU started but is gone (see %s)", log);
		goto fail;
	}
	write_record(rec, r, qpid, start);
	gw_observed_start(o, r);
	o->handle = gw_pidref__handle(qpid, start);
	qmp_status(o, qmp);
	if (o->state != GW_STATE_RUNNING) {
		gw_log(GW_LOG_WARN, r->name, "QEMU started but reports: %s", o->detail);
		o->state = GW_STATE_RUNNING;
	}
	return 0;
fail:
	forget(ctx, r->name);
	return rc;
}

static int vm_destroy(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
		      const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_backend_config *ctx = &b->cfg;
	char sock[4096];
	int64_t timeout = r ? gw_resource_stop_timeout_ms(r) : 10000;
	long long pid, start;

	gw_pidref__parse(&pid, &start, o->handle);

	if (gw_proc_alive(pid, start) && !is_our_qemu(pid, o->name, ctx->run_dir))
		return gw_error_set(err, -EPERM, "pid %lld is not QEMU running this VM: not signalled", pid);
	if (gw_proc_alive(pid, start)) {
		struct gw_qmp *q = NULL;
		struct gw_error qerr;
		vm_path(sock, sizeof(sock), ctx->run_dir, o->name, "qmp");
		if (gw_qmp_connect(&q, sock, QMP_TIMEOUT_MS, &qerr) == 0) {
			/* graceful first: ACPI power button, until stopTimeout */
			if (gw_qmp_execute(NULL, q, "system_powerdown", NULL, QMP_TIMEOUT_MS, &qerr) == 0) {
				int64_t deadline = gw_monotonic_ms() + timeout;
				while (gw_proc_alive(pid, start) && gw_monotonic_ms() < deadline) {
					json_t *st = NULL;
					if (gw_cancel_requested(call->cancel)) {
						gw_qmp_close(q);
						return gw_error_set(err, -ECANCELED,
								    "power-down abandoned: the agent is stopping");
					}
					if (gw_qmp_execute(&st, q, "query-status", NULL, QMP_TIMEOUT_MS, &qerr) < 0)
						break;
					const char *s = json_string_value(json_object_get(st, "status"));
					int off = s && !strcmp(s, "shutdown");
					json_decref(st);
					if (off)
						break;
					(void)gw_cancel_sleep(call->cancel, 100); /* a stop request is seen above */
				}
			}
			gw_qmp_execute(NULL, q, "quit", NULL, QMP_TIMEOUT_MS, &qerr);
			gw_qmp_close(q);
		} else {
			gw_proc_signal(pid, SIGTERM); /* QEMU treats it as quit */
		}
		if (gw_proc_wait_gone(pid, start, 5000) < 0) {
			gw_log(GW_LOG_WARN, o->name, "QEMU pid %lld did not quit: killing", pid);
			gw_proc_signal(pid, SIGKILL);
			if (gw_proc_wait_gone(pid, start, 10000) < 0)
				return gw_error_set(err, -ETIMEDOUT, "QEMU pid %lld survived SIGKILL", pid);
		}
	}
	/* forget it, unless a newer instance took the record */
	char rec[4096];
	vm_path(rec, sizeof(rec), ctx->run_dir, o->name, "json");
	json_t *cur = gw_record_load(rec);
	long long cur_pid = json_integer_value(json_object_get(cur, "pid"));
	json_decref(cur);
	if (!cur || cur_pid == pid || cur_pid == 0)
		forget(ctx, o->name);
	return 0;
}

const struct gw_backend_ops gw_backend_vm = {
	.name = "vm",
	.kind = GW_KIND_VM,
	.supported = vm_supported,
	.discover = vm_discover,
	.create = vm_create,
	.destroy = vm_destroy,
	.describe = gw_pidref__describe,
	.watch = gw_pidref__watch,
};
