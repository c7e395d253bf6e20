/* The typed model of one resource, its canonical JSON form and spec hash,
 * and the kind/enum <-> string tables. */
#ifndef GITWARD_RESOURCE_H
#define GITWARD_RESOURCE_H

#include <stddef.h>
#include <stdint.h>

struct gw_error; /* gitward/util.h */

enum gw_kind { GW_KIND_PROCESS, GW_KIND_CONTAINER, GW_KIND_VM, GW_KIND_EXTERNAL, GW_KIND_MAX };
enum gw_restart { GW_RESTART_ALWAYS, GW_RESTART_ON_FAILURE, GW_RESTART_NEVER };
enum gw_check_type { GW_CHECK_NONE, GW_CHECK_HTTP, GW_CHECK_TCP, GW_CHECK_EXEC };
enum gw_net { GW_NET_DEFAULT, GW_NET_NONE, GW_NET_BRIDGE, GW_NET_HOST, GW_NET_USER };
enum gw_pull { GW_PULL_MISSING, GW_PULL_NEVER, GW_PULL_ALWAYS };
enum gw_accel { GW_ACCEL_AUTO, GW_ACCEL_KVM, GW_ACCEL_TCG };

const char *gw_kind_to_string(enum gw_kind k);
int gw_kind_from_string(enum gw_kind *out, const char *s);
const char *gw_restart_to_string(enum gw_restart r);
/* "never", "on-failure"; anything else (and NULL) is always, the default. */
enum gw_restart gw_restart_from_string(const char *s);

struct gw_strlist {
	char **v;
	size_t n;
};

/* Kept sorted by key. */
struct gw_strmap {
	char **k;
	char **v;
	size_t n;
};

const char *gw_strmap_get(const struct gw_strmap *m, const char *key);
void gw_strmap_set(struct gw_strmap *m, const char *key, const char *value);
void gw_strmap_free(struct gw_strmap *m);
void gw_strlist_free(struct gw_strlist *l);

/* Read an envFiles file into out (later keys win). Fails (negative errno)
 * with err naming the file and line, never a value. */
int gw_envfile_load(struct gw_strmap *out, const char *path, struct gw_error *err);

/* The SHA-256 of an envFiles file's content, as 64 hex digits and a NUL in
 * out (set only on success), so a change can be told without keeping a
 * value. Fails like gw_envfile_load when the file cannot be read. */
int gw_envfile_digest(char out[65], const char *path, struct gw_error *err);

/* Parse envFiles text (KEY=VALUE lines) from memory into out; what names it
 * in err (e.g. "secretEnvFiles: secrets/web.env.age"). Never a value in
 * err. -EINVAL on a line that is not KEY=VALUE. */
int gw_envfile_parse(struct gw_strmap *out, const char *what, char *data, struct gw_error *err);

/* The content of one blob of a commit, read once and shared (reference
 * counted, thread-safe) by every list entry of every resource naming it. */
struct gw_bytes;
/* A copy of data[0..len), NUL-terminated, with one reference. */
struct gw_bytes *gw_bytes_new(const void *data, size_t len);
struct gw_bytes *gw_bytes_ref(struct gw_bytes *b);
const char *gw_bytes_data(const struct gw_bytes *b);
void gw_bytes_unref(struct gw_bytes *b); /* NULL: a no-op */

/* One entry of secretEnvFiles, resolved against the commit by the source
 * (lib/source/git.c): its blob id (part of the spec hash, never the
 * content) and the ciphertext, which the backends decrypt at start. The
 * content is read only for the resources selected for the node: cipher is
 * NULL (blob set) for the others. */
#define GW_SECRET_FILE_MAX (64u << 10) /* bytes of one encrypted file */
/* Bytes all entries of a commit's resources selected for the node may
 * name, each entry counted (a blob named twice counts twice: each is handed
 * to a backend). */
#define GW_REFERENCED_BYTES_MAX (128u << 20)
struct gw_secret_file {
	unsigned line, col; /* of the list entry in the manifest */
	char blob[41]; /* "" until resolved */
	const char *cipher; /* in bytes, or NULL */
	size_t len;
	struct gw_bytes *bytes; /* shared, one reference held */
};

/* Decrypt one secretEnvFiles file (path: its name in the repository, for
 * messages) with the age identity file and add its KEY=VALUE lines to out:
 * all of them or, on failure, none. Fails (negative errno) with err naming
 * the file and the cause, never a value. */
int gw_secret_env_load(struct gw_strmap *out, const char *identity, const char *path, const char *cipher, size_t len,
		       struct gw_error *err);

/* One entry of an External resource's sources: a file of the commit read
 * by the source like a secret file, its content handed to the plugin. */
#define GW_SOURCE_FILE_MAX (1u << 20) /* bytes of one file */
#define GW_SOURCES_MAX 64u /* entries of one resource */

/* "[IP:]HOSTPORT:PORT[/proto]" as used by ports and forwards (lib/model/portmap.c). */
struct gw_portmap {
	char host_ip[64];
	unsigned host_port, port;
	char proto[4]; /* "tcp" | "udp" */
};
int gw_portmap_parse(struct gw_portmap *out, const char *s);

/* Fields are flat: every kind uses a subset, the schema tables in
 * lib/model/schema.c say which. Durations in ms, sizes in bytes;
 * 0 / NULL / empty means "not set" (the default applies). */
struct gw_resource {
	enum gw_kind kind;
	char *name;
	struct gw_strmap labels;
	char *file; /* where it was declared */
	unsigned line, col;

	/* every kind */
	struct gw_strmap node_selector;
	struct gw_strlist depends_on;
	unsigned (*depends_on_pos)[2]; /* line, col of each entry in its file (NULL: unknown) */
	enum gw_restart restart;
	enum gw_check_type health_type;
	char *health_http_url;
	char *health_tcp_address;
	struct gw_strlist health_exec_command;
	int64_t health_interval_ms, health_timeout_ms, health_retries;
	int64_t stop_timeout_ms;
	int stop_signal; /* 0 = default for the kind */

	/* Process (and Container for command/env/envFiles) */
	struct gw_strlist command;
	struct gw_strmap env;
	struct gw_strlist env_files;
	struct gw_strlist secret_env_files; /* paths in the repository */
	struct gw_secret_file *secrets; /* one per secret_env_files entry */
	char *working_dir;
	char *user;
	int64_t limit_open_files, limit_processes, limit_memory;

	/* Container */
	char *image;
	struct gw_strlist ports;
	struct gw_strlist volumes;
	enum gw_net network; /* DEFAULT: bridge for Container, user for VM */
	int64_t memory; /* Container and VM */
	int64_t cpus_milli; /* Container: 0.5 -> 500 */
	int64_t vcpus; /* VM */
	enum gw_pull pull;

	/* VM */
	char *kernel, *initrd, *cmdline, *disk;
	struct gw_strlist forwards;
	enum gw_accel accel;

	/* External: handled by an executable plugin (contrib/plugins/PROTOCOL.md) */
	char *plugin; /* its file name in the plugin directory */
	char *plugin_config; /* spec.config as canonical JSON (NULL: none) */
	struct gw_strlist sources; /* files of the repository handed to the plugin */
	struct gw_secret_file *source_files; /* one per sources entry: blob id and content */
	int64_t plugin_timeout_ms; /* per plugin call; 0: the default */

	/* derived */
	/* canonical JSON of kind + spec (no secrets: envFiles are paths, and
	 * secretEnvFiles add {"secrets": {path: blob id}}, sources add
	 * {"sources": {path: blob id}}) */
	char *canonical;
	char spec_hash[65]; /* sha256 hex of canonical */
};

void gw_resource_free(struct gw_resource *r);
/* "Process/web" into buf. */
const char *gw_resource_key(char *buf, size_t size, const struct gw_resource *r);
/* Compute canonical and spec_hash from the typed fields (and the blob ids of
 * resolved secrets). */
void gw_resource_finalize(struct gw_resource *r);
/* The two ways to that canonical form, for the test that they agree (the
 * fast one gives NULL where it leaves the decision to jansson). */
char *gw_resource__canonical_jansson(const struct gw_resource *r);
char *gw_resource__canonical_fast(const struct gw_resource *r);

/* Effective defaults where the manifest leaves a field unset. */
int64_t gw_resource_stop_timeout_ms(const struct gw_resource *r);
int gw_resource_stop_signal(const struct gw_resource *r);
/* What the canonical form folds away: the default of the field at path
 * ("spec.restart", "spec.healthCheck.interval") of kind, as compact JSON the
 * way the canonical form writes a value (caller frees). NULL when path names
 * no field of kind or the field has no default (left out, it is absent). */
char *gw_resource_default_json(enum gw_kind kind, const char *path);
/* The health check's interval; 0 when r has no health check. */
int64_t gw_resource_health_interval_ms(const struct gw_resource *r);

int gw_signal_from_string(int *out, const char *s);
const char *gw_signal_to_string(int sig);

#endif
