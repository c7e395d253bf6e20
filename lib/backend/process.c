/* The process backend: several services per host as plain OS processes.
 *
 * Each workload runs under a small supervisor, the "shim" (this binary run as
 * `gitward-shim Process/NAME RUN_DIR`, so `ps` tells what it supervises),
 * started with a double fork so it outlives gitward. The
 * shim starts the workload in its own session (argv, clean environment,
 * envFiles, workingDir, user, rlimits), pumps its output into a size-bounded
 * log, writes the record that identifies it — pid plus the start time from
 * /proc/PID/stat, so a reused pid is never taken for ours — and, when it
 * exits, its exit status. The records under RUN_DIR/process are the
 * truth about what runs: a gitward killed at any point leaves no workload
 * unrecorded, and a new gitward adopts them all. A record is believed only
 * while its live supervisor vouches for it (see verify_record): nothing a
 * file names is signalled on the file's word alone.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/backend.h"
#include "gitward/paths.h"
#include "gitward/schema.h"
#include "gitward/spawn.h"
#include "gitward/state.h"
#include "pidref.h"

#define LOG_MAX (10LL << 20) /* bytes per log file before it rotates to .1 */
#define JOB_MAX (4u << 20)
#define REPORT_TIMEOUT_MS 30000
#define INFLIGHT_WAIT_MS 15000 /* a supervisor started by a killed gitward, still starting */
#define EXIT_WAIT_MS 2000 /* a supervisor that has reaped its workload, writing the exit file */

#define SHIM_ARGV0 "gitward-shim"

static void record_path(char *buf, size_t size, const struct gw_backend_config *ctx, const char *name, const char *ext)
{
	gw_path_record(buf, size, ctx->run_dir, GW_KIND_PROCESS, name, ext);
}

/* ---- discover ---- */

static bool lock_held(const char *path);

/* The exit file: "pid code signal"; pid 0 when missing or unreadable. */
static long long read_exit_file(const char *path, int *code, int *sig)
{
	char buf[128];
	long long pid = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (fd >= 0 && !f)
		close(fd);
	if (f) {
		if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%lld %d %d", &pid, code, sig) != 3)
			pid = 0;
		fclose(f);
	}
	return pid;
}

static void read_exit(struct gw_observed *o, long long wpid, const struct gw_backend_config *ctx)
{
	char path[4096], lock[4096];
	long long pid;
	int code = -1, sig = 0;

	record_path(path, sizeof(path), ctx, o->name, "exit");
	record_path(lock, sizeof(lock), ctx, o->name, "lock");
	/* the supervisor reaps its workload, then writes the exit file: while
	 * it still holds the lock, the file is a moment away (bounded wait) */
	int64_t deadline = gw_monotonic_ms() + EXIT_WAIT_MS;
	while ((pid = read_exit_file(path, &code, &sig)) != wpid && lock_held(lock) && gw_monotonic_ms() < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (pid == wpid && sig) {
		o->state = GW_STATE_FAILED;
		snprintf(o->detail, sizeof(o->detail), "killed by signal %d (%s)", sig, strsignal(sig));
	} else if (pid == wpid && code == 0) {
		o->state = GW_STATE_STOPPED;
		snprintf(o->detail, sizeof(o->detail), "exited with status 0");
	} else if (pid == wpid) {
		o->state = GW_STATE_FAILED;
		snprintf(o->detail, sizeof(o->detail), "exited with status %d", code);
	} else {
		o->state = GW_STATE_FAILED;
		snprintf(o->detail, sizeof(o->detail), "gone (exit status unknown: its supervisor is gone too)");
	}
}

/* Is pid's executable this gitward binary (or its old file, replaced by an
 * upgrade since)? */
static bool exe_is_self(long long pid, const struct gw_backend_config *ctx)
{
	char exe[4096], want[4200];
	snprintf(want, sizeof(want), "/proc/%lld/exe", pid);
	ssize_t n = readlink(want, exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	snprintf(want, sizeof(want), "%s (deleted)", ctx->self_exe);
	return !strcmp(exe, ctx->self_exe) || !strcmp(exe, want);
}

/* Does argv (n NUL-terminated strings in buf) equal want[0..nwant)? */
static bool argv_is(const char *buf, size_t n, const char *const *want, size_t nwant)
{
	size_t off = 0, i;
	for (i = 0; i < nwant && off < n; i++) {
		if (strcmp(buf + off, want[i]) != 0)
			return false;
		off += strlen(buf + off) + 1;
	}
	return i == nwant && off == n;
}

/* Does pid run this gitward binary as `gitward-shim Process/NAME RUN_DIR`,
 * our supervisor of this resource for this run dir? Supervisors of earlier
 * versions are ours too, so an upgrade adopts them rather than starting
 * duplicates: `gitward __shim NAME STATE_DIR`, and `gitward __shim` alone
 * when it holds this resource's lock. */
static bool is_our_shim(bool *lasting, long long pid, const char *name, const struct gw_backend_config *ctx)
{
	char buf[8192], lock[4096 + 256], key[160];
	ssize_t n = gw_proc_cmdline(buf, sizeof(buf), pid);

	*lasting = false;
	if (n <= 0)
		return false;
	snprintf(key, sizeof(key), "Process/%s", name);
	const char *const now[] = { SHIM_ARGV0, key, ctx->run_dir };
	const char *const before[] = { "__shim", name, ctx->state_dir };
	const char *const legacy[] = { "__shim" };
	size_t argv0 = strlen(buf) + 1; /* the earlier forms' argv[0]: how it was named, not trusted */
	if (argv0 > (size_t)n) /* a cmdline without its final NUL: rewritten, no form of ours */
		return false;
	if (argv_is(buf, (size_t)n, now, 3) || argv_is(buf + argv0, (size_t)n - argv0, before, 3))
		return *lasting = exe_is_self(pid, ctx);
	if (argv_is(buf + argv0, (size_t)n - argv0, legacy, 1)) {
		record_path(lock, sizeof(lock), ctx, name, "lock");
		return exe_is_self(pid, ctx) && lock_held(lock);
	}
	return false;
}

/* Supervisors found ours by is_our_shim, by pid, start time and resource: a
 * supervisor never execs, so while that process lives (the same pid with the
 * same start time) its command line and executable stay what was checked,
 * and the next pass need not read them again. Only the last discover's are
 * kept. The legacy form is not remembered: it is ours only while it holds
 * the lock. */
struct shim_seen {
	long long pid, start;
	char *name;
};

/* Run records parsed by an earlier discover, by path and file identity: a
 * record is only ever replaced by rename (a new inode), so the same inode
 * with the same size and times is the same content. */
struct rec_seen {
	char *path;
	struct stat st;
	json_t *rec;
	bool used;
};

struct shim_memo {
	pthread_mutex_t mu;
	struct shim_seen *v, *next;
	size_t n, nnext;
	struct rec_seen *recs;
	size_t nrecs;
};

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
		a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
		a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static struct rec_seen *rec_find(struct shim_memo *m, const char *path)
{
	for (size_t i = 0; i < m->nrecs; i++)
		if (!strcmp(m->recs[i].path, path))
			return &m->recs[i];
	return NULL;
}

/* gw_record_load, parsing again only a record file that changed. */
static json_t *record_load(struct shim_memo *m, const char *path)
{
	struct stat st, after;
	json_t *rec = NULL;

	if (!m || lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return gw_record_load(path);
	pthread_mutex_lock(&m->mu);
	struct rec_seen *e = rec_find(m, path);
	if (e && same_file(&e->st, &st)) {
		e->used = true;
		rec = json_incref(e->rec);
	}
	pthread_mutex_unlock(&m->mu);
	if (rec)
		return rec;
	rec = gw_record_load(path);
	/* kept only when the file did not change while it was read */
	if (!rec || lstat(path, &after) < 0 || !same_file(&st, &after))
		return rec;
	pthread_mutex_lock(&m->mu);
	e = rec_find(m, path);
	if (!e) {
		m->recs = gw_xrealloc(m->recs, (m->nrecs + 1) * sizeof(*m->recs));
		e = &m->recs[m->nrecs++];
		e->path = gw_xstrdup(path);
	} else {
		json_decref(e->rec);
	}
	e->st = st;
	e->rec = json_incref(rec);
	e->used = true;
	pthread_mutex_unlock(&m->mu);
	return rec;
}

/* Forget the records the last discover did not read (gone, or renamed). */
static void recs_turn(struct shim_memo *m)
{
	size_t k = 0;
	for (size_t i = 0; i < m->nrecs; i++) {
		if (!m->recs[i].used) {
			free(m->recs[i].path);
			json_decref(m->recs[i].rec);
			continue;
		}
		m->recs[i].used = false;
		m->recs[k++] = m->recs[i];
	}
	m->nrecs = k;
}

static void seen_free(struct shim_seen *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

static bool memo_has(struct shim_memo *m, long long pid, long long start, const char *name)
{
	bool found = false;
	if (!m)
		return false;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n && !found; i++)
		found = m->v[i].pid == pid && m->v[i].start == start && !strcmp(m->v[i].name, name);
	pthread_mutex_unlock(&m->mu);
	return found;
}

/* Remember for the next discover (the calling one is still under way). */
static void memo_keep(struct shim_memo *m, long long pid, long long start, const char *name)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->next = gw_xrealloc(m->next, (m->nnext + 1) * sizeof(*m->next));
	m->next[m->nnext++] = (struct shim_seen){ pid, start, gw_xstrdup(name) };
	pthread_mutex_unlock(&m->mu);
}

/* A discover is done: what it vouched for replaces what the one before did. */
static void memo_turn(struct shim_memo *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	seen_free(m->v, m->n);
	m->v = m->next;
	m->n = m->nnext;
	m->next = NULL;
	m->nnext = 0;
	recs_turn(m);
	pthread_mutex_unlock(&m->mu);
}

static int process_init(void **priv, const struct gw_backend *b, struct gw_error *err)
{
	(void)b;
	(void)err;
	struct shim_memo *m = gw_xcalloc(1, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
	*priv = m;
	return 0;
}

static void process_done(void *priv)
{
	struct shim_memo *m = priv;
	if (!m)
		return;
	seen_free(m->v, m->n);
	seen_free(m->next, m->nnext);
	for (size_t i = 0; i < m->nrecs; i++) {
		free(m->recs[i].path);
		json_decref(m->recs[i].rec);
	}
	free(m->recs);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* Is the workload a run record names one that gitward started? The live
 * supervisor is the anchor: it must be this gitward's `gitward-shim` for this
 * resource and run dir with the recorded start time, and the workload its
 * child, leading its own session (so its group is its own to signal).
 * 0: ours and running; -ESRCH: the workload is gone (nothing to signal);
 * -EPERM: not ours, with why. */
static int verify_record(const json_t *rec, const char *name, const struct gw_backend_config *ctx,
			 struct shim_memo *memo, char *why, size_t size)
{
	bool lasting;
	long long pid = json_integer_value(json_object_get(rec, "pid"));
	long long start = json_integer_value(json_object_get(rec, "start_time"));
	long long shim = json_integer_value(json_object_get(rec, "shim_pid"));
	long long shim_start = json_integer_value(json_object_get(rec, "shim_start_time"));
	struct gw_proc_ids w, s;

	if (pid <= 1 || shim <= 1) {
		snprintf(why, size, "it names pid %lld and supervisor pid %lld", pid, shim);
		return -EPERM;
	}
	if (gw_proc_ids(&w, pid) < 0 || w.start_time != start)
		return -ESRCH;
	if (gw_proc_ids(&s, shim) < 0 || s.start_time != shim_start) {
		snprintf(why, size, "pid %lld runs but the supervisor the record names (pid %lld) is gone", pid, shim);
		return -EPERM;
	}
	if (w.ppid != shim || w.sid != pid || w.pgrp != pid) {
		snprintf(why, size, "pid %lld is not a session leader started by supervisor pid %lld", pid, shim);
		return -EPERM;
	}
	if (memo_has(memo, shim, shim_start, name)) {
		memo_keep(memo, shim, shim_start, name);
		return 0;
	}
	if (!is_our_shim(&lasting, shim, name, ctx)) {
		snprintf(why, size, "pid %lld is not gitward's supervisor of Process/%s in %s", shim, name,
			 ctx->run_dir);
		return -EPERM;
	}
	if (lasting)
		memo_keep(memo, shim, shim_start, name);
	return 0;
}

static bool lock_held(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	bool held = false;
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		held = errno == EWOULDBLOCK;
	close(fd); /* drops our shared lock, if taken */
	return held;
}

/* A gitward killed while it started a supervisor leaves that supervisor
 * running on: it holds the resource's lock but has not written its record
 * yet. Wait (bounded) until it has, or let go, so this pass sees the truth
 * rather than planning a second start that would find the lock taken. */
static void settle_inflight(struct shim_memo *memo, const char *run_dir, const char *name)
{
	char lock[4096 + 256], rec[4096 + 256], key[200];
	int64_t deadline = gw_monotonic_ms() + INFLIGHT_WAIT_MS;
	bool said = false;

	snprintf(key, sizeof(key), "Process/%s", name);
	gw_path_record(lock, sizeof(lock), run_dir, GW_KIND_PROCESS, name, "lock");
	gw_path_record(rec, sizeof(rec), run_dir, GW_KIND_PROCESS, name, "json");
	while (lock_held(lock)) {
		json_t *r = record_load(memo, rec);
		long long shim = json_integer_value(json_object_get(r, "shim_pid"));
		long long shim_start = json_integer_value(json_object_get(r, "shim_start_time"));
		json_decref(r);
		if (shim > 1 && gw_proc_alive(shim, shim_start))
			break; /* the holder is the recorded supervisor */
		if (gw_monotonic_ms() >= deadline) {
			gw_log(GW_LOG_WARN, key, "its supervisor did not finish starting within %ds",
			       INFLIGHT_WAIT_MS / 1000);
			break;
		}
		if (!said)
			gw_log(GW_LOG_INFO, key, "waiting for its supervisor to finish starting");
		said = true;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

struct scan {
	const struct gw_backend_config *ctx;
	struct shim_memo *memo;
	struct gw_observed *v;
	size_t n, cap;
};

static int settle_one(const char *name, const char *path, void *ud)
{
	struct scan *sc = ud;
	(void)path;
	settle_inflight(sc->memo, sc->ctx->run_dir, name);
	return 0;
}

static int discover_one(const char *name, const char *path, void *ud)
{
	struct scan *sc = ud;
	char why[300], key[200];

	snprintf(key, sizeof(key), "Process/%s", name);
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 16;
		sc->v = gw_xrealloc(sc->v, sc->cap * sizeof(*sc->v));
	}
	struct gw_observed *o = &sc->v[sc->n];
	json_t *rec = record_load(sc->memo, path);
	if (!rec || gw_record_parse(o, GW_KIND_PROCESS, name, rec) < 0) {
		json_decref(rec);
		gw_log(GW_LOG_WARN, key, "unreadable process record %s: ignored", path);
		return 0;
	}
	long long pid = json_integer_value(json_object_get(rec, "pid"));
	o->handle = gw_pidref__handle(pid, json_integer_value(json_object_get(rec, "start_time")));
	int rc = verify_record(rec, name, sc->ctx, sc->memo, why, sizeof(why));
	json_decref(rec);
	if (rc == -EPERM) {
		gw_log(GW_LOG_WARN, key, "run record %s is not ours: %s; ignored, nothing signalled", path, why);
		gw_observed_clear(o);
		return 0;
	}
	sc->n++;
	if (rc == 0)
		o->state = GW_STATE_RUNNING;
	else
		read_exit(o, pid, sc->ctx);
	return 0;
}

static int process_discover(struct gw_observed **out, size_t *out_n, struct gw_backend *b,
			    const struct gw_backend_call *call, struct gw_error *err)
{
	char dir[4096];
	struct scan sc = { .ctx = &b->cfg, .memo = b->priv };
	int rc;

	(void)call;
	gw_path_kind_dir(dir, sizeof(dir), b->cfg.run_dir, GW_KIND_PROCESS);
	rc = gw_record_scan(dir, ".lock", settle_one, &sc, err);
	if (rc == 0)
		rc = gw_record_scan(dir, ".json", discover_one, &sc, err);
	if (rc == 0)
		memo_turn(sc.memo);
	if (rc < 0) {
		for (size_t i = 0; i < sc.n; i++)
			gw_observed_clear(&sc.v[i]);
		free(sc.v);
		return rc;
	}
	*out = sc.v;
	*out_n = sc.n;
	return 0;
}

/* ---- create: the shim, detached (double fork) ---- */

static json_t *strlist_json(const struct gw_strlist *l)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return a;
}

/* secretEnvFiles travel to the supervisor as ciphertext (base64) with the
 * identity's path: it decrypts them itself, so the plaintext exists only in
 * the process that starts the workload. */
static json_t *secrets_json(const struct gw_resource *r)
{
	json_t *a = json_array();
	for (size_t i = 0; r->secrets && i < r->secret_env_files.n; i++) {
		const struct gw_secret_file *sf = &r->secrets[i];
		char *b64 = gw_xmalloc(4 * ((sf->len + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)(sf->cipher ? sf->cipher : ""),
				(int)sf->len);
		json_array_append_new(a, json_pack("{s:s, s:s}", "path", r->secret_env_files.v[i], "cipher", b64));
		free(b64);
	}
	return a;
}

/* Decrypt the job's secretEnvFiles into env: all or nothing. */
static int secrets_load(struct gw_strmap *env, const json_t *job, char *why, size_t size)
{
	const json_t *list = json_object_get(job, "secrets");
	const char *identity = json_string_value(json_object_get(job, "age_identity"));
	for (size_t i = 0; i < json_array_size(list); i++) {
		const json_t *it = json_array_get(list, i);
		const char *path = json_string_value(json_object_get(it, "path"));
		const char *b64 = json_string_value(json_object_get(it, "cipher"));
		size_t blen = b64 ? strlen(b64) : 0, len;
		if (!path || !b64 || blen % 4) {
			snprintf(why, size, "secretEnvFiles: unreadable job");
			return -EINVAL;
		}
		unsigned char *cipher = gw_xmalloc(blen / 4 * 3 + 1);
		int n = EVP_DecodeBlock(cipher, (const unsigned char *)b64, (int)blen);
		len = n < 0 ? 0 : (size_t)n - (blen && b64[blen - 1] == '=') - (blen > 1 && b64[blen - 2] == '=');
		struct gw_error e;
		int rc = n < 0 ? -EINVAL : gw_secret_env_load(env, identity, path, (const char *)cipher, len, &e);
		if (n < 0)
			snprintf(why, size, "secretEnvFiles: %s: unreadable job", path);
		else if (rc < 0)
			snprintf(why, size, "%s", e.msg);
		free(cipher);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static json_t *job_object(const struct gw_resource *r, const struct gw_backend_config *ctx)
{
	char path[4096];
	json_t *job = json_object(), *env = json_object();

	json_object_set_new(job, "name", json_string(r->name));
	record_path(path, sizeof(path), ctx, r->name, "json");
	json_object_set_new(job, "record", json_string(path));
	record_path(path, sizeof(path), ctx, r->name, "exit");
	json_object_set_new(job, "exit", json_string(path));
	record_path(path, sizeof(path), ctx, r->name, "lock");
	json_object_set_new(job, "lock", json_string(path));
	gw_path_log(path, sizeof(path), ctx->log_dir, GW_KIND_PROCESS, r->name);
	json_object_set_new(job, "log", json_string(path));
	json_object_set_new(job, "log_max", json_integer(LOG_MAX));
	json_object_set_new(job, "argv", strlist_json(&r->command));
	for (size_t i = 0; i < r->env.n; i++)
		json_object_set_new(env, r->env.k[i], json_string(r->env.v[i]));
	json_object_set_new(job, "env", env);
	json_object_set_new(job, "env_files", strlist_json(&r->env_files));
	json_object_set_new(job, "secrets", secrets_json(r));
	if (ctx->age_identity)
		json_object_set_new(job, "age_identity", json_string(ctx->age_identity));
	if (r->working_dir)
		json_object_set_new(job, "working_dir", json_string(r->working_dir));
	if (r->user)
		json_object_set_new(job, "user", json_string(r->user));
	json_object_set_new(job, "open_files", json_integer(r->limit_open_files));
	json_object_set_new(job, "processes", json_integer(r->limit_processes));
	json_object_set_new(job, "memory", json_integer(r->limit_memory));
	json_object_set_new(job, "spec_hash", json_string(r->spec_hash));
	json_object_set_new(job, "spec", json_string(r->canonical));
	json_object_set_new(job, "depends_on", strlist_json(&r->depends_on));
	json_object_set_new(job, "restart", json_string(gw_restart_to_string(r->restart)));
	return job;
}

static char *job_json(const struct gw_resource *r, const struct gw_backend_config *ctx)
{
	json_t *job = job_object(r, ctx);
	char *s = json_dumps(job, JSON_COMPACT);
	json_decref(job);
	return s;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read until EOF or the deadline. */
static ssize_t read_report(int fd, char *buf, size_t size, int64_t timeout_ms)
{
	size_t len = 0;
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	while (len < size - 1) {
		int64_t left = deadline - gw_monotonic_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

static int process_create(struct gw_observed *o, struct gw_backend *b, const struct gw_resource *r,
			  const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_backend_config *ctx = &b->cfg;
	char dir[4096], report[1024], key[160];
	int job[2] = { -1, -1 }, rep[2] = { -1, -1 }, rc;
	pid_t pid;

	if ((rc = gw_mkdir_p(gw_path_kind_dir(dir, sizeof(dir), ctx->run_dir, GW_KIND_PROCESS), 0700, err)) < 0 ||
	    (rc = gw_mkdir_p(ctx->log_dir, 0700, err)) < 0)
		return rc;

	char *payload = job_json(r, ctx);
	/* its name in ps; the resource and run dir in its argv let a later
	 * gitward tell this supervisor from anything a forged record may name */
	snprintf(key, sizeof(key), "Process/%s", r->name);
	char *const argv[] = { SHIM_ARGV0, key, (char *)ctx->run_dir, NULL };
	if (pipe2(job, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
		rc = gw_error_set(err, -errno, "cannot create pipes: %s", strerror(errno));
		goto out;
	}
	struct gw_spawn s = {
		.path = ctx->self_exe,
		.argv = argv,
		.fds = { job[0], GW_SPAWN_FD_NULL, GW_SPAWN_FD_NULL, rep[1] },
		.nfds = 4,
		.group = GW_SPAWN_DETACH,
	};
	struct gw_error serr;
	rc = gw_spawn_start(&pid, &s, &serr);
	close(job[0]);
	job[0] = -1;
	close(rep[1]);
	rep[1] = -1;
	if (rc < 0) {
		rc = gw_error_set(err, rc, "cannot start the process supervisor (%s): %s", ctx->self_exe, serr.msg);
		goto out;
	}
	rc = write_all(job[1], payload, strlen(payload));
	close(job[1]);
	job[1] = -1;
	if (rc < 0) {
		rc = gw_error_set(err, rc, "cannot start the process supervisor (%s): %s", ctx->self_exe,
				  strerror(-rc));
		goto out;
	}
	ssize_t n = read_report(rep[0], report, sizeof(report), REPORT_TIMEOUT_MS);
	if (n < 0) {
		rc = gw_error_set(err, (int)n, "the process supervisor did not report within %ds",
				  REPORT_TIMEOUT_MS / 1000);
		goto out;
	}
	long long wpid = 0, start = 0;
	if (strncmp(report, "OK ", 3) == 0 && sscanf(report + 3, "%lld %lld", &wpid, &start) == 2) {
		gw_observed_start(o, r);
		o->handle = gw_pidref__handle(wpid, start);
		rc = 0;
	} else if (strncmp(report, "ERR ", 4) == 0) {
		report[strcspn(report, "\n")] = '\0';
		rc = gw_error_set(err, -EIO, "%s", report + 4);
	} else {
		rc = gw_error_set(err, -EIO, "the process supervisor failed to start (%s)", ctx->self_exe);
	}
out:
	free(payload);
	for (int i = 0; i < 2; i++) {
		if (job[i] >= 0)
			close(job[i]);
		if (rep[i] >= 0)
			close(rep[i]);
	}
	return rc;
}

/* ---- destroy ---- */

static int process_destroy(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			   const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_backend_config *ctx = &b->cfg;
	char path[4096], why[300] = "no run record names it", key[200];
	long long pid, start;
	int sig = r ? gw_resource_stop_signal(r) : SIGTERM;
	int64_t timeout = r ? gw_resource_stop_timeout_ms(r) : 10000;
	int rc = 0;

	snprintf(key, sizeof(key), "Process/%s", o->name);
	gw_pidref__parse(&pid, &start, o->handle);
	record_path(path, sizeof(path), ctx, o->name, "json");
	json_t *rec = gw_record_load(path);
	long long rec_pid = json_integer_value(json_object_get(rec, "pid"));
	if (gw_proc_alive(pid, start)) {
		/* believe the record of the moment, vouched for by its supervisor */
		if (!rec || rec_pid != pid || verify_record(rec, o->name, ctx, NULL, why, sizeof(why)) != 0) {
			rc = gw_error_set(err, -EPERM, "pid %lld is not a workload gitward started (%s): not signalled",
					  pid, why);
			goto out;
		}
		gw_proc_signal(pid, sig);
		/* a stopped (SIGSTOP, hung) workload acts on it only once it runs
		 * again, as systemd does: else its whole stop timeout is waited */
		if (sig != SIGCONT)
			gw_proc_signal(pid, SIGCONT);
		int w = gw_proc_wait_gone_cancel(pid, start, timeout, call->cancel);
		if (w == -ECANCELED) {
			rc = gw_error_set(err, -ECANCELED, "stop of pid %lld abandoned: the agent is stopping", pid);
			goto out;
		}
		if (w < 0) {
			gw_log(GW_LOG_WARN, key, "did not stop within %lldms of SIG%s: killing", (long long)timeout,
			       gw_signal_to_string(sig));
			gw_proc_signal(pid, SIGKILL);
			if (gw_proc_wait_gone(pid, start, 10000) < 0) {
				rc = gw_error_set(err, -ETIMEDOUT, "pid %lld survived SIGKILL", pid);
				goto out;
			}
		}
	}
	/* forget it, unless a newer instance already took the record */
	if (rec && rec_pid == pid) {
		/* its supervisor exits right after the workload: wait, so the
		 * next instance finds the resource lock free */
		long long shim = json_integer_value(json_object_get(rec, "shim_pid"));
		long long shim_start = json_integer_value(json_object_get(rec, "shim_start_time"));
		if (shim > 1 && gw_proc_wait_gone(shim, shim_start, 5000) < 0)
			gw_log(GW_LOG_WARN, key, "supervisor pid %lld still running", shim);
	}
	json_decref(rec);
	rec = gw_record_load(path);
	if (rec && json_integer_value(json_object_get(rec, "pid")) == pid && unlink(path) < 0 && errno != ENOENT) {
		int e = errno;
		rc = gw_error_set_at(err, -e, path, 0, 0, "cannot remove: %s", strerror(e));
		goto out;
	}
	record_path(path, sizeof(path), ctx, o->name, "exit");
	unlink(path);
out:
	json_decref(rec);
	return rc;
}

/* ---- launch: how a workload, and its exec health check, start ---- */

static void env_put(char ***envp, size_t *n, const char *key, const char *value)
{
	size_t klen = strlen(key);
	char *entry = gw_xmalloc(klen + strlen(value) + 2);
	sprintf(entry, "%s=%s", key, value);
	for (size_t i = 0; i < *n; i++)
		if (strncmp((*envp)[i], key, klen) == 0 && (*envp)[i][klen] == '=') {
			free((*envp)[i]);
			(*envp)[i] = entry;
			return;
		}
	*envp = gw_xrealloc(*envp, (*n + 2) * sizeof(char *));
	(*envp)[(*n)++] = entry;
	(*envp)[*n] = NULL;
}

/* Everything a start needs, resolved from the job before fork so that the
 * child makes only async-signal-safe calls (gitward runs probes on several
 * threads at once). */
struct launch {
	char **envp;
	size_t envn;
	int set_user;
	uid_t uid;
	gid_t gid;
	gid_t groups[256];
	int ngroups;
	char *wd;
	long long nofile, nproc, mem;
};

static void launch_free(struct launch *l)
{
	for (size_t i = 0; i < l->envn; i++)
		free(l->envp[i]);
	free(l->envp);
	free(l->wd);
	memset(l, 0, sizeof(*l));
}

/* The user (name or number), groups and home from the job. */
static int launch_user(struct launch *l, const char **home, char *uname, size_t usize, const char *user, char *why,
		       size_t size)
{
	struct passwd pwbuf, *pw = NULL;
	char buf[16384];

	l->uid = getuid();
	l->gid = getgid();
	if (user) {
		char *end;
		unsigned long num = strtoul(user, &end, 10);
		if (*user && !*end)
			getpwuid_r((uid_t)num, &pwbuf, buf, sizeof(buf), &pw);
		else
			getpwnam_r(user, &pwbuf, buf, sizeof(buf), &pw);
		if (!pw && (!*user || *end)) {
			snprintf(why, size, "user \"%s\" does not exist on this node", user);
			return -ENOENT;
		}
		l->set_user = 1;
		l->uid = pw ? pw->pw_uid : (uid_t)num;
		l->gid = pw ? pw->pw_gid : (gid_t)num;
		l->ngroups = 256;
		if (pw && getgrouplist(pw->pw_name, l->gid, l->groups, &l->ngroups) < 0)
			l->ngroups = 0;
		if (!pw) {
			l->groups[0] = l->gid;
			l->ngroups = 1;
		}
	} else {
		getpwuid_r(l->uid, &pwbuf, buf, sizeof(buf), &pw);
	}
	snprintf(uname, usize, "%s", pw ? pw->pw_name : "");
	*home = "/";
	if (pw && pw->pw_dir)
		*home = gw_xstrdup(pw->pw_dir);
	return 0;
}

/* Credentials, the clean environment (then envFiles, then secretEnvFiles,
 * then env: env wins),
 * workingDir and limits of the job. */
static int launch_prepare(struct launch *l, const json_t *job, char *why, size_t size)
{
	const char *home;
	char uname[256];
	int rc;

	memset(l, 0, sizeof(*l));
	l->envp = gw_xcalloc(1, sizeof(char *));
	if ((rc = launch_user(l, &home, uname, sizeof(uname), json_string_value(json_object_get(job, "user")), why,
			      size)) < 0)
		return rc;
	env_put(&l->envp, &l->envn, "PATH", GW_SPAWN_PATH);
	env_put(&l->envp, &l->envn, "HOME", home);
	if (strcmp(home, "/") != 0)
		free((char *)home);
	if (uname[0]) {
		env_put(&l->envp, &l->envn, "USER", uname);
		env_put(&l->envp, &l->envn, "LOGNAME", uname);
	}
	json_t *files = json_object_get(job, "env_files");
	struct gw_strmap file_env = { 0 };
	struct gw_error e;
	for (size_t i = 0; i < json_array_size(files); i++)
		if (gw_envfile_load(&file_env, json_string_value(json_array_get(files, i)), &e) < 0) {
			snprintf(why, size, "%s", e.msg);
			gw_strmap_free(&file_env);
			return -EINVAL;
		}
	if ((rc = secrets_load(&file_env, job, why, size)) < 0) {
		gw_strmap_free(&file_env);
		return rc;
	}
	for (size_t i = 0; i < file_env.n; i++)
		env_put(&l->envp, &l->envn, file_env.k[i], file_env.v[i]);
	gw_strmap_free(&file_env);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)json_object_get(job, "env"), k, v)
		env_put(&l->envp, &l->envn, k, json_string_value(v));
	const char *wd = json_string_value(json_object_get(job, "working_dir"));
	l->wd = gw_xstrdup(wd ? wd : "/");
	l->nofile = json_integer_value(json_object_get(job, "open_files"));
	l->nproc = json_integer_value(json_object_get(job, "processes"));
	l->mem = json_integer_value(json_object_get(job, "memory"));
	return 0;
}

/* The start of argv as the job says: its session, stdin on /dev/null
 * unless given, limits, credentials, working directory, environment. */
static void launch_spawn(struct gw_spawn *s, const struct launch *l, char *const *argv)
{
	memset(s, 0, sizeof(*s));
	s->argv = argv;
	s->envp = l->envp;
	s->fds[0] = s->fds[1] = s->fds[2] = GW_SPAWN_FD_NULL;
	s->nfds = 3;
	s->group = GW_SPAWN_SESSION;
	s->nofile = l->nofile;
	s->nproc = l->nproc;
	s->as = l->mem;
	s->set_user = l->set_user != 0;
	s->uid = l->uid;
	s->gid = l->gid;
	s->groups = l->groups;
	s->ngroups = (size_t)l->ngroups;
	s->cwd = l->wd;
}

/* ---- exec health checks: as the workload, with its environment ---- */

static int wait_child(int *status, pid_t pid, int64_t deadline)
{
	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (gw_monotonic_ms() >= deadline)
			return -ETIMEDOUT;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static int process_exec_probe(struct gw_backend *b, const struct gw_observed *o, const struct gw_resource *r,
			      int64_t timeout_ms, const struct gw_backend_call *call, struct gw_error *err)
{
	const struct gw_backend_config *ctx = &b->cfg;
	char why[600] = "";
	char *const *argv = r->health_exec_command.v;
	struct launch l;
	int rc, status = 0;
	int64_t deadline = gw_monotonic_ms() + timeout_ms;
	pid_t pid;

	(void)o;
	(void)call;
	json_t *job = job_object(r, ctx);
	rc = launch_prepare(&l, job, why, sizeof(why));
	json_decref(job);
	if (rc < 0) {
		launch_free(&l);
		return gw_error_set(err, rc, "%s", why);
	}
	struct gw_spawn s;
	struct gw_error serr;
	launch_spawn(&s, &l, argv);
	if ((rc = gw_spawn_start(&pid, &s, &serr)) < 0) {
		rc = gw_error_set(err, -EIO, "health check %s", serr.msg);
		goto out;
	}
	rc = wait_child(&status, pid, deadline);
	if (rc == -ETIMEDOUT) {
		gw_proc_signal(pid, SIGKILL);
		waitpid(pid, &status, 0);
		rc = gw_error_set(err, -ETIMEDOUT, "%s: timed out after %lldms", argv[0], (long long)timeout_ms);
	} else if (rc < 0) {
		rc = gw_error_set(err, rc, "wait %s: %s", argv[0], strerror(-rc));
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		rc = gw_error_set(err, -EIO, "%s exited with status %d", argv[0],
				  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
out:
	launch_free(&l);
	return rc;
}

/* ---- the shim ---- */

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		write_all(3, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	close(3);
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
}

static void write_exit(const char *path, long long pid, int status)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "%lld %d %d\n", pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	gw_file_write_atomic(path, buf, (size_t)n, NULL);
}

/* The job from stdin (at most JOB_MAX bytes); then stdin is /dev/null. */
static json_t *shim_read_job(void)
{
	size_t len = 0, cap = 65536;
	char *payload = gw_xmalloc(cap);

	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= JOB_MAX) {
				free(payload);
				report("ERR job too large");
				return NULL;
			}
			cap *= 2;
			payload = gw_xrealloc(payload, cap);
		}
		ssize_t n = read(0, payload + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	payload[len] = '\0';
	json_t *job = json_loads(payload, 0, NULL);
	free(payload);
	if (!job) {
		report("ERR unreadable job");
		return NULL;
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0)
		dup2(devnull, 0);
	return job;
}

/* One supervisor per resource at a time: two gitward processes racing
 * (one killed mid-create, the next one starting over) can never both
 * start the workload. The lock lives as long as this supervisor; an old
 * one being replaced is given a few seconds to finish. */
static int shim_lock(const char *lock_path)
{
	int lockfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (lockfd < 0) {
		int e = errno;
		report("ERR cannot open %s: %s", lock_path, strerror(e));
		return -e;
	}
	int64_t lock_deadline = gw_monotonic_ms() + 10000;
	while (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK || gw_monotonic_ms() >= lock_deadline) {
			report("ERR another supervisor is still running this resource (%s is locked)", lock_path);
			return -EBUSY;
		}
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* The workload, its stdout and stderr on *out_fd; its pid, or a negative
 * errno (reported). */
static pid_t shim_start(int *out_fd, const struct launch *l, char *const *argv)
{
	struct gw_spawn s;
	struct gw_error serr;
	int out[2];
	pid_t child;

	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		report("ERR pipe: %s", strerror(e));
		return -e;
	}
	launch_spawn(&s, l, argv);
	s.fds[0] = GW_SPAWN_FD_KEEP; /* /dev/null already */
	s.fds[1] = s.fds[2] = out[1];
	int rc = gw_spawn_start(&child, &s, &serr);
	close(out[1]);
	if (rc < 0) {
		close(out[0]);
		report("ERR %s", serr.msg);
		return rc;
	}
	*out_fd = out[0];
	return child;
}

/* The workload runs: record it before telling anyone. */
static int shim_record(long long *out_start, const json_t *job, pid_t child)
{
	long long start = 0, shim_start_time = 0;
	char state;

	gw_proc_stat(&start, &state, child);
	struct gw_observed o = { 0 };
	gw_proc_stat(&shim_start_time, &state, getpid());
	/* the job carries the record's shared fields under the same keys */
	gw_record_parse(&o, GW_KIND_PROCESS, json_string_value(json_object_get(job, "name")), job);
	o.started_at = gw_now_ms() / 1000;
	json_t *rec = gw_record_new(&o);
	gw_observed_clear(&o);
	json_object_set_new(rec, "pid", json_integer(child));
	json_object_set_new(rec, "start_time", json_integer(start));
	json_object_set_new(rec, "shim_pid", json_integer(getpid()));
	json_object_set_new(rec, "shim_start_time", json_integer(shim_start_time));
	const char *record = json_string_value(json_object_get(job, "record"));
	int wrc = gw_record_write(record, rec, NULL);
	json_decref(rec);
	if (wrc < 0) {
		kill(-child, SIGKILL);
		report("ERR cannot write %s", record);
		return wrc;
	}
	*out_start = start;
	return 0;
}

/* Pump output into the bounded log until the workload exits; then its exit
 * file. */
static void shim_pump(const json_t *job, pid_t child, int out, int logfd)
{
	const char *log_path = json_string_value(json_object_get(job, "log"));
	long long log_max = json_integer_value(json_object_get(job, "log_max"));
	const char *exit_path = json_string_value(json_object_get(job, "exit"));
	long long written = lseek(logfd, 0, SEEK_END);
	int exited = 0, status = 0, open_out = 1;
	char buf[65536];

	while (!exited || open_out) {
		struct pollfd p = { .fd = out, .events = POLLIN };
		int r = open_out ? poll(&p, 1, exited ? 200 : 1000) : 0;
		if (r > 0) {
			ssize_t n = read(out, buf, sizeof(buf));
			if (n > 0) {
				if (written + n > log_max) {
					char old[4200];
					snprintf(old, sizeof(old), "%s.1", log_path);
					rename(log_path, old);
					close(logfd);
					logfd = open_log(log_path);
					written = 0;
				}
				if (logfd >= 0 && write_all(logfd, buf, (size_t)n) == 0)
					written += n;
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				open_out = 0;
			}
		} else if (exited) {
			break; /* a daemonized grandchild may hold the pipe: stop reading */
		} else if (!open_out) {
			struct timespec ts = { 1, 0 };
			nanosleep(&ts, NULL);
		}
		if (!exited) {
			pid_t w = waitpid(child, &status, open_out ? WNOHANG : 0);
			if (w == child) {
				exited = 1;
				write_exit(exit_path, child, status);
			}
		}
	}
}

int gw_process_shim_main(void)
{
	struct launch l;
	char why[512];
	long long start = 0;
	int out = -1;

	prctl(PR_SET_NAME, SHIM_ARGV0); /* its comm too, for top and pgrep */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	json_t *job = shim_read_job();
	if (!job)
		return 1;
	json_t *jargv = json_object_get(job, "argv");
	size_t argc = json_array_size(jargv);
	char **argv = gw_xcalloc(argc + 1, sizeof(char *));
	for (size_t i = 0; i < argc; i++)
		argv[i] = gw_xstrdup(json_string_value(json_array_get(jargv, i)));
	if (launch_prepare(&l, job, why, sizeof(why)) < 0) {
		report("ERR %s", why);
		return 1;
	}
	if (shim_lock(json_string_value(json_object_get(job, "lock"))) < 0)
		return 1;
	const char *log_path = json_string_value(json_object_get(job, "log"));
	int logfd = open_log(log_path);
	if (logfd < 0) {
		report("ERR cannot open log %s: %s", log_path, strerror(errno));
		return 1;
	}
	pid_t child = shim_start(&out, &l, argv);
	if (child < 0 || shim_record(&start, job, child) < 0)
		return 1;
	report("OK %lld %lld\n", (long long)child, start);
	shim_pump(job, child, out, logfd);
	json_decref(job);
	return 0;
}

const struct gw_backend_ops gw_backend_process = {
	.name = "process",
	.kind = GW_KIND_PROCESS,
	.init = process_init,
	.done = process_done,
	.discover = process_discover,
	.create = process_create,
	.destroy = process_destroy,
	.exec_probe = process_exec_probe,
	.describe = gw_pidref__describe,
	.watch = gw_pidref__watch,
};
