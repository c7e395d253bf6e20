/* Small shared pieces: the error record every layer fills, a growable string,
 * duration and size parsing, and the log sink the agent installs. */
#ifndef GITWARD_UTIL_H
#define GITWARD_UTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GW_ERROR_MSG_MAX 1024

/* A child that leaves by execve or _exit never runs gcov's exit handler:
 * under GW_COVERAGE it writes its counts first (a no-op otherwise). */
#ifdef GW_COVERAGE
void __gcov_dump(void);
#define GW_COVERAGE_DUMP() __gcov_dump()
#else
#define GW_COVERAGE_DUMP() ((void)0)
#endif

/* Filled where a failure happens, iff the call fails; passed up untouched
 * with at most one context prefix per layer. */
struct gw_error {
	int code; /* negative errno */
	char file[256];
	unsigned line, col; /* 0 when not tied to a position */
	char msg[GW_ERROR_MSG_MAX];
};

int gw_error_set(struct gw_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int gw_error_set_at(struct gw_error *err, int code, const char *file, unsigned line, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Prefix the message with "ctx: " (one layer of context). Returns err->code. */
int gw_error_prefix(struct gw_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "file:line:col: msg" or "msg" into buf. */
const char *gw_error_format(char *buf, size_t size, const struct gw_error *err);

/* Growable NUL-terminated byte string. Allocation failure aborts: a daemon that
 * cannot allocate a few bytes has nothing sane left to do. */
struct gw_strbuf {
	char *s;
	size_t len, cap;
};
void gw_strbuf_init(struct gw_strbuf *sb);
void gw_strbuf_free(struct gw_strbuf *sb);
void gw_strbuf_add(struct gw_strbuf *sb, const char *data, size_t n);
void gw_strbuf_puts(struct gw_strbuf *sb, const char *s);
void gw_strbuf_printf(struct gw_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_strbuf_vprintf(struct gw_strbuf *sb, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Returns the string and resets the buffer; caller frees. */
char *gw_strbuf_detach(struct gw_strbuf *sb);

/* Untrusted text (Git file names, anything read back from disk, libraries'
 * error messages) made safe for output. Text: control characters and bytes
 * that are not UTF-8 become \n \r \t \xNN \u0085, so a string can neither
 * start a line of its own nor drive a terminal. JSON: only bytes that are
 * not UTF-8 become \xNN (the encoder escapes the rest), so a value is never
 * dropped; NULL gives JSON null. */
void gw_strbuf_add_escaped(struct gw_strbuf *sb, const char *s);
/* Into buf, cut at a character or escape boundary to fit; returns buf. */
const char *gw_escape(char *buf, size_t size, const char *s);
/* Case-insensitive edit distance for "did you mean" (99 when either is past
 * 40 characters). */
unsigned gw_edit_distance(const char *a, const char *b);
struct json_t;
struct json_t *gw_json_string(const char *s);

void *gw_xmalloc(size_t n);
void *gw_xcalloc(size_t n, size_t size);
void *gw_xrealloc(void *p, size_t n);
char *gw_xstrdup(const char *s);
char *gw_xstrndup(const char *s, size_t n);
/* Wipe a secret string before freeing it. */
void gw_secure_free(char *s);

/* Split "scheme://user:password@host/path" into the URL without the password
 * ("scheme://user@host/path") and the password (percent-decoded; NULL when
 * there is none). Both are the caller's. Other URLs come back unchanged. */
void gw_url_split_password(char **out_url, char **out_password, const char *url);
/* Replace every occurrence of secret (if non-empty) in s by "***", in place. */
void gw_str_redact(char *s, const char *secret);

/* Every URL in s ("scheme://..." up to a space, quote or '<>`') loses its
 * user info (a user alone is a token too: "https://TOKEN@host") and its
 * query ("?access_token=...") to "***", in place (s only shrinks). Every
 * printer of a URL or of a message that may quote one (libgit2, libcurl)
 * goes through it: errors, log lines, last_error, status. */
void gw_str_redact_urls(char *s);
/* A copy of url (or of text holding URLs) as gw_str_redact_urls shows it. */
char *gw_url_redacted(const char *url);
/* url without its user info, query and fragment: what is written to disk. */
char *gw_url_without_credentials(const char *url);

/* "500ms", "10s", "1m30s", "2h" -> milliseconds. */
int gw_duration_parse(int64_t *out_ms, const char *s);
void gw_duration_format(char *buf, size_t size, int64_t ms);
/* "512Mi", "2Gi", "1000000", "10k", "1G" -> bytes. */
int gw_size_parse(int64_t *out_bytes, const char *s);
void gw_size_format(char *buf, size_t size, int64_t bytes);

/* A bump allocator: one parsed file's nodes are freed with one call. */
struct gw_arena;
struct gw_arena *gw_arena_new(void);
void gw_arena_free(struct gw_arena *a);
void *gw_arena_alloc(struct gw_arena *a, size_t n);
char *gw_arena_strndup(struct gw_arena *a, const char *s, size_t n);

/* Read a whole regular file, at most max bytes (-EFBIG beyond). */
int gw_file_read(char **out, size_t *out_len, const char *path, size_t max, struct gw_error *err);
/* The same for files in the state dir: a symbolic link is refused (-ELOOP),
 * never followed, and a FIFO never blocks. */
int gw_file_read_nofollow(char **out, size_t *out_len, const char *path, size_t max, struct gw_error *err);
/* Write atomically: temp file, fsync, rename, fsync of the directory. */
int gw_file_write_atomic(const char *path, const char *data, size_t len, struct gw_error *err);
int gw_mkdir_p(const char *path, unsigned mode, struct gw_error *err);
/* Remove path and everything under it, never following symlinks (0 when absent). */
int gw_rm_rf(const char *path);

/* Process identity: pid + start time (/proc/PID/stat field 22). */
int gw_proc_stat(long long *start, char *state, long long pid);
bool gw_proc_alive(long long pid, long long start_time);
int gw_proc_wait_gone(long long pid, long long start_time, int64_t timeout_ms);
/* Run argv (a name without a slash looked up in GW_SPAWN_PATH only, never
 * the caller's PATH; environment PATH=GW_SPAWN_PATH and LC_ALL=C only) with in on
 * stdin; stdout and stderr appended to out and errout. Standard output
 * that reaches max bytes has the process group killed at once (-EMSGSIZE,
 * counted as the bytes arrive, never timed: pass a limit + 1); standard
 * error keeps at most max bytes, the rest read and dropped. The process
 * group is killed at timeout_ms (-ETIMEDOUT). *out_status is the wait
 * status. The call ends when the child has exited: what it wrote by then is
 * the output, its process group is killed, and so is any process that still
 * holds its stdout or stderr open (one that left the group with setsid, found
 * by its descriptors in /proc) — nothing it started outlives the call. */
int gw_spawn_capture(int *out_status, struct gw_strbuf *out, struct gw_strbuf *errout, char *const *argv,
		     const char *in, size_t in_len, size_t max, int64_t timeout_ms, struct gw_error *err);
/* The same, ended within 50 ms of a stop request (the process group
 * killed, -ECANCELED). cancel NULL: never. */
struct gw_cancel;
int gw_spawn_capture_cancel(int *out_status, struct gw_strbuf *out, struct gw_strbuf *errout, char *const *argv,
			    const char *in, size_t in_len, size_t max, int64_t timeout_ms,
			    const struct gw_cancel *cancel, struct gw_error *err);
/* Parent, process group, session and start time of a live pid (-ESRCH when
 * it is gone or a zombie). */
struct gw_proc_ids {
	long long ppid, pgrp, sid, start_time;
};
int gw_proc_ids(struct gw_proc_ids *out, long long pid);
/* /proc/PID/cmdline: NUL-separated arguments, NUL-terminated; the length. */
ssize_t gw_proc_cmdline(char *buf, size_t size, long long pid);
/* The one way gitward signals a process: refuses pid <= 1, pids beyond
 * pid_t and itself (-EPERM); signals pid's whole group only when pid leads
 * it, else pid alone. 0 or negative errno from kill(2). */
int gw_proc_signal(long long pid, int sig);

/* A stop request shared by the agent's loop and a running pass. The agent
 * sets it once (from a signal handler too: the store is lock-free); every
 * long wait of a pass (health waits, stop timeouts, probes) looks at it at
 * least every 50 ms and ends early with -ECANCELED. NULL: never requested. */
struct gw_cancel {
	atomic_int requested;
};
void gw_cancel_request(struct gw_cancel *c);
bool gw_cancel_requested(const struct gw_cancel *c);
/* Sleep ms: 0 after the whole sleep, -ECANCELED as soon as c is requested. */
int gw_cancel_sleep(const struct gw_cancel *c, int64_t ms);
/* gw_proc_wait_gone that gives up with -ECANCELED when c is requested. */
int gw_proc_wait_gone_cancel(long long pid, long long start_time, int64_t timeout_ms, const struct gw_cancel *c);

/* Wall-clock and monotonic time. */
int64_t gw_now_ms(void);
int64_t gw_monotonic_ms(void);
/* The one backoff (restarts, Git retries, idle heal passes): base_ms at
 * streak 1 (and below), doubled per step after it, capped at cap_ms (and
 * base_ms itself capped). Pure; never overflows for cap_ms up to INT64_MAX / 2. */
int64_t gw_backoff_ms(int64_t base_ms, int streak, int64_t cap_ms);
/* Does a one-shot command free what it built before it exits? Yes under
 * AddressSanitizer (its leak check must see every allocation ended) and with
 * GW_FREE_AT_EXIT=1 in the environment (valgrind); otherwise the kernel takes
 * it all back at once, 20 ms sooner for 10,000 resources. */
bool gw_free_at_exit(void);
void gw_time_format_utc(char *buf, size_t size, int64_t unix_seconds);

/* Admission of connections by client address (IPv4, network order), so that
 * clients holding connections open cannot take an endpoint from everyone:
 * one address holds at most per_addr; the host's own address (127.0.0.1,
 * where local probes come from) up to host_max, kept back from all others;
 * all other addresses together at most others_max, so it takes
 * others_max / per_addr addresses to fill them and the host's share stays
 * free. Ask gw_admit_may before accepting, gw_admit_open once accepted,
 * gw_admit_close with its result when the connection ends. No lock:
 * callers serialize. */
struct gw_admit_peer {
	uint32_t addr;
	unsigned n; /* connections open; 0: a free slot */
};
struct gw_admit {
	uint32_t host;
	unsigned per_addr, host_max, others_max;
	unsigned others; /* connections open from other addresses than host */
	size_t n_peers;
	struct gw_admit_peer *peers;
};
void gw_admit_init(struct gw_admit *a, uint32_t host, unsigned per_addr, unsigned host_max, unsigned others_max);
void gw_admit_free(struct gw_admit *a);
bool gw_admit_may(const struct gw_admit *a, uint32_t addr);
struct gw_admit_peer *gw_admit_open(struct gw_admit *a, uint32_t addr);
void gw_admit_close(struct gw_admit *a, struct gw_admit_peer *p);

/* A deadline for each request's headers, whole, not per byte: a client that
 * trickles them (one byte every few seconds, never idle for long) would
 * otherwise hold its connection, and its admission slot, for ever. One slot
 * per open connection, by its socket: gw_headers_open when it is accepted
 * (its first request's headers are awaited from then), gw_headers_got when
 * a request's headers are complete, gw_headers_wait when the next request's
 * are awaited (keep-alive), gw_headers_close when it ends. gw_headers_overdue
 * lists the sockets whose awaited headers are late: pure, the caller cuts
 * them. No lock: callers serialize. */
struct gw_headers_conn {
	int fd; /* -1: a free slot */
	bool waiting; /* headers awaited since since_ms */
	int64_t since_ms;
};
struct gw_headers {
	size_t n;
	struct gw_headers_conn *conns;
};
void gw_headers_init(struct gw_headers *h, size_t n);
void gw_headers_free(struct gw_headers *h);
/* NULL when all n slots are taken (that connection has no deadline) */
struct gw_headers_conn *gw_headers_open(struct gw_headers *h, int fd, int64_t now_ms);
void gw_headers_got(struct gw_headers_conn *c);
void gw_headers_wait(struct gw_headers_conn *c, int64_t now_ms);
void gw_headers_close(struct gw_headers_conn *c);
/* Up to max sockets awaited for deadline_ms or longer at now_ms, into fds;
 * returns how many. */
size_t gw_headers_overdue(int *fds, size_t max, const struct gw_headers *h, int64_t now_ms, int64_t deadline_ms);

/* Logging: the library calls the installed sink; the agent decides the format. */
enum gw_log_level { GW_LOG_DEBUG, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };
/* What a line is about, beside its text, for JSON lines to carry as fields:
 * NULL or a negative duration when not known. */
struct gw_log_fields {
	const char *action; /* create, update, delete, restart */
	const char *commit;
	long long duration_ms;
};
typedef void (*gw_log_fn)(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *msg,
			  void *ud);
void gw_log_set_handler(gw_log_fn fn, void *ud, enum gw_log_level min);
void gw_log(enum gw_log_level level, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* gw_log with structured fields (fields may be NULL) */
void gw_log_with(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
const char *gw_log_level_name(enum gw_log_level level);
/* A line that can come in floods (one per refused request): at most one per
 * period. gw_log_limit_take says whether to write it now and, when so, how
 * many were left out since the last one written; callers serialize calls on
 * one limit. A zeroed struct is a limit that has written nothing yet. */
struct gw_log_limit {
	int64_t next_ms; /* monotonic ms: lines before it are left out */
	bool started;
	unsigned long long dropped;
};
bool gw_log_limit_take(struct gw_log_limit *l, int64_t now_ms, int64_t period_ms, unsigned long long *dropped);
int gw_log_level_parse(enum gw_log_level *out, const char *s);

#endif
