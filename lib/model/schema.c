/* The schema of every kind as data: which fields each kind has, their types,
 * bounds, defaults and value checks. lib/manifest walks YAML with it, the
 * canonical form and JSON Schema are generated from it. A new field or kind
 * is a new row here, not a new code path. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/schema.h"

#define OFF(f) offsetof(struct gw_resource, f)
#define KP GW_KMASK(GW_KIND_PROCESS)
#define KC GW_KMASK(GW_KIND_CONTAINER)
#define KV GW_KMASK(GW_KIND_VM)
#define KE GW_KMASK(GW_KIND_EXTERNAL)

static const struct gw_enum_name restart_names[] = {
	{ "always", GW_RESTART_ALWAYS }, { "on-failure", GW_RESTART_ON_FAILURE }, { "never", GW_RESTART_NEVER }, { 0 }
};
static const struct gw_enum_name container_net_names[] = {
	{ "none", GW_NET_NONE }, { "bridge", GW_NET_BRIDGE }, { "host", GW_NET_HOST }, { 0 }
};
static const struct gw_enum_name vm_net_names[] = { { "none", GW_NET_NONE }, { "user", GW_NET_USER }, { 0 } };
static const struct gw_enum_name pull_names[] = {
	{ "missing", GW_PULL_MISSING }, { "never", GW_PULL_NEVER }, { "always", GW_PULL_ALWAYS }, { 0 }
};
static const struct gw_enum_name accel_names[] = {
	{ "auto", GW_ACCEL_AUTO }, { "kvm", GW_ACCEL_KVM }, { "tcg", GW_ACCEL_TCG }, { 0 }
};

const char *gw_enum_name(const struct gw_enum_name *e, int value)
{
	for (; e && e->name; e++)
		if (e->value == value)
			return e->name;
	return "?";
}

const char *gw_check_name(const char *v)
{
	size_t n = strlen(v);
	const char *want = "a name of lowercase letters, digits and '-', starting and ending alphanumeric, "
			   "at most 63 characters";
	if (n == 0 || n > 63)
		return want;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return want;
	}
	if (v[0] == '-' || v[n - 1] == '-')
		return want;
	return NULL;
}

const char *gw_check_label_key(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 63 || !isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("-_./", v[i]))
			goto bad;
	return NULL;
bad:
	return "a label key of letters, digits, '-', '_', '.', '/', at most 63 characters";
}

static const char *check_label_value(const char *v)
{
	size_t n = strlen(v);
	if (n > 63)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("-_.", v[i]))
			goto bad;
	return NULL;
bad:
	return "a label value of letters, digits, '-', '_', '.', at most 63 characters";
}

static const char *check_env_key(const char *v)
{
	if (!*v || !(isalpha((unsigned char)v[0]) || v[0] == '_'))
		goto bad;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			goto bad;
	return NULL;
bad:
	return "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
}

static const char *check_abs_path(const char *v)
{
	return v[0] == '/' ? NULL : "an absolute path";
}

/* A file of the repository, as git names it in a tree: relative to the
 * root, no empty, "." or ".." parts. */
static const char *check_repo_path(const char *v)
{
	const char *want = "a path relative to the repository root (no leading /, no . or .. parts)";
	const char *p = v;
	if (!*v || strlen(v) > 4096)
		return want;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return want;
		p += n;
		if (*p == '/' && !*++p)
			return want;
	}
	return NULL;
}

/* External: a plugin is a file of the plugin directory, never a path. */
static const char *check_plugin_name(const char *v)
{
	const char *want = "a plugin name of letters, digits, '.', '_' and '-', not starting with '.', "
			   "at most 64 characters";
	size_t n = strlen(v);
	if (n == 0 || n > 64 || v[0] == '.')
		return want;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return want;
	return NULL;
}

static const char *check_portmap(const char *v)
{
	struct gw_portmap pm;
	return gw_portmap_parse(&pm, v) == 0 ? NULL : "\"[IP:]HOSTPORT:PORT[/tcp|udp]\" with ports 1-65535";
}

static const char *check_volume(const char *v)
{
	const char *want = "\"/HOST/PATH:/CONTAINER/PATH[:ro|:rw]\"";
	const char *c1 = strchr(v, ':');
	if (!c1 || v[0] != '/' || c1[1] != '/')
		return want;
	const char *c2 = strchr(c1 + 1, ':');
	if (c2 && strcmp(c2, ":ro") != 0 && strcmp(c2, ":rw") != 0)
		return want;
	if ((c2 ? (size_t)(c2 - c1) : strlen(c1)) < 2)
		return want;
	return NULL;
}

static const char *check_http_url(const char *v)
{
	if (strncmp(v, "http://", 7) != 0 || !v[7] || strchr(v, ' '))
		return "an http:// URL";
	return NULL;
}

static const char *check_hostport(const char *v)
{
	const char *colon = strrchr(v, ':');
	const char *want = "\"HOST:PORT\"";
	if (!colon || colon == v || !colon[1])
		return want;
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (*end || errno || port < 1 || port > 65535)
		return want;
	return NULL;
}

static const char *check_image(const char *v)
{
	if (!*v)
		return "an image reference";
	for (const char *p = v; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return "an image reference without spaces";
	return NULL;
}

static const char *check_user(const char *v)
{
	if (!*v || strlen(v) > 32)
		return "a user name or numeric uid";
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
			return "a user name or numeric uid";
	return NULL;
}

static const struct gw_field health_http[] = { { .name = "url",
						 .type = GW_F_STR,
						 .offset = OFF(health_http_url),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .check = check_http_url },
					       { 0 } };
static const struct gw_field health_tcp[] = { { .name = "address",
						.type = GW_F_STR,
						.offset = OFF(health_tcp_address),
						.kinds = GW_K_ALL,
						.required_kinds = GW_K_ALL,
						.check = check_hostport },
					      { 0 } };
static const struct gw_field health_exec[] = { { .name = "command",
						 .type = GW_F_STRLIST,
						 .offset = OFF(health_exec_command),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .flags = GW_FF_NONEMPTY },
					       { 0 } };
static const struct gw_field health_fields[] = {
	{ .name = "http", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_http },
	{ .name = "tcp", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_tcp },
	{ .name = "exec", .type = GW_F_OBJECT, .kinds = KP | KC, .sub = health_exec },
	{ .name = "interval",
	  .type = GW_F_DURATION,
	  .offset = OFF(health_interval_ms),
	  .kinds = GW_K_ALL,
	  .min = 100,
	  .max = 86400000,
	  .defval = 10000 },
	{ .name = "timeout",
	  .type = GW_F_DURATION,
	  .offset = OFF(health_timeout_ms),
	  .kinds = GW_K_ALL,
	  .min = 100,
	  .max = 3600000,
	  .defval = 2000 },
	{ .name = "retries",
	  .type = GW_F_INT,
	  .offset = OFF(health_retries),
	  .kinds = GW_K_ALL,
	  .min = 1,
	  .max = 100,
	  .defval = 3 },
	{ 0 }
};
static const struct gw_field limits_fields[] = { { .name = "openFiles",
						   .type = GW_F_INT,
						   .offset = OFF(limit_open_files),
						   .kinds = KP,
						   .min = 1,
						   .max = 1 << 24 },
						 { .name = "processes",
						   .type = GW_F_INT,
						   .offset = OFF(limit_processes),
						   .kinds = KP,
						   .min = 1,
						   .max = 1 << 22 },
						 { .name = "memory",
						   .type = GW_F_SIZE,
						   .offset = OFF(limit_memory),
						   .kinds = KP,
						   .min = 1 << 20,
						   .max = INT64_MAX },
						 { 0 } };

const struct gw_field gw_schema_metadata[] = { { .name = "name",
						 .type = GW_F_STR,
						 .offset = OFF(name),
						 .kinds = GW_K_ALL,
						 .required_kinds = GW_K_ALL,
						 .check = gw_check_name },
					       { .name = "labels",
						 .type = GW_F_STRMAP,
						 .offset = OFF(labels),
						 .kinds = GW_K_ALL,
						 .flags = GW_FF_NOHASH,
						 .check = check_label_value,
						 .key_check = gw_check_label_key },
					       { 0 } };

const struct gw_field gw_schema_spec[] = {
	{ .name = "nodeSelector",
	  .type = GW_F_STRMAP,
	  .offset = OFF(node_selector),
	  .kinds = GW_K_ALL,
	  .flags = GW_FF_NOHASH,
	  .check = check_label_value,
	  .key_check = gw_check_label_key },
	{ .name = "dependsOn",
	  .type = GW_F_STRLIST,
	  .offset = OFF(depends_on),
	  .kinds = GW_K_ALL,
	  .check = gw_check_name },
	{ .name = "restart", .type = GW_F_ENUM, .offset = OFF(restart), .kinds = GW_K_ALL, .enums = restart_names },
	{ .name = "healthCheck", .type = GW_F_OBJECT, .kinds = GW_K_ALL, .sub = health_fields },
	{ .name = "command",
	  .type = GW_F_STRLIST,
	  .offset = OFF(command),
	  .kinds = KP | KC,
	  .required_kinds = KP,
	  .flags = GW_FF_NONEMPTY },
	{ .name = "env", .type = GW_F_STRMAP, .offset = OFF(env), .kinds = KP | KC, .key_check = check_env_key },
	{ .name = "envFiles",
	  .type = GW_F_STRLIST,
	  .offset = OFF(env_files),
	  .kinds = KP | KC,
	  .check = check_abs_path },
	{ .name = "secretEnvFiles",
	  .type = GW_F_STRLIST,
	  .offset = OFF(secret_env_files),
	  .kinds = KP | KC,
	  .check = check_repo_path },
	{ .name = "workingDir", .type = GW_F_STR, .offset = OFF(working_dir), .kinds = KP, .check = check_abs_path },
	{ .name = "user", .type = GW_F_STR, .offset = OFF(user), .kinds = KP, .check = check_user },
	{ .name = "stopSignal", .type = GW_F_SIGNAL, .offset = OFF(stop_signal), .kinds = KP | KC, .defval = SIGTERM },
	{ .name = "stopTimeout",
	  .type = GW_F_DURATION,
	  .offset = OFF(stop_timeout_ms),
	  .kinds = KP | KC | KV,
	  .min = 0,
	  .max = 3600000,
	  .defval = 10000 },
	{ .name = "limits", .type = GW_F_OBJECT, .kinds = KP, .sub = limits_fields },
	{ .name = "image",
	  .type = GW_F_STR,
	  .offset = OFF(image),
	  .kinds = KC,
	  .required_kinds = KC,
	  .check = check_image },
	{ .name = "pull", .type = GW_F_ENUM, .offset = OFF(pull), .kinds = KC, .enums = pull_names },
	{ .name = "ports", .type = GW_F_STRLIST, .offset = OFF(ports), .kinds = KC, .check = check_portmap },
	{ .name = "volumes", .type = GW_F_STRLIST, .offset = OFF(volumes), .kinds = KC, .check = check_volume },
	{ .name = "network",
	  .type = GW_F_ENUM,
	  .offset = OFF(network),
	  .kinds = KC,
	  .enums = container_net_names,
	  .defval = GW_NET_BRIDGE },
	{ .name = "network",
	  .type = GW_F_ENUM,
	  .offset = OFF(network),
	  .kinds = KV,
	  .enums = vm_net_names,
	  .defval = GW_NET_USER },
	{ .name = "memory", .type = GW_F_SIZE, .offset = OFF(memory), .kinds = KC, .min = 4 << 20, .max = INT64_MAX },
	{ .name = "memory",
	  .type = GW_F_SIZE,
	  .offset = OFF(memory),
	  .kinds = KV,
	  .min = 16 << 20,
	  .max = 1LL << 40,
	  .defval = 512LL << 20 },
	{ .name = "cpus", .type = GW_F_CPUS, .offset = OFF(cpus_milli), .kinds = KC, .min = 10, .max = 1024000 },
	{ .name = "cpus", .type = GW_F_INT, .offset = OFF(vcpus), .kinds = KV, .min = 1, .max = 256, .defval = 1 },
	{ .name = "kernel", .type = GW_F_STR, .offset = OFF(kernel), .kinds = KV, .check = check_abs_path },
	{ .name = "initrd", .type = GW_F_STR, .offset = OFF(initrd), .kinds = KV, .check = check_abs_path },
	{ .name = "cmdline", .type = GW_F_STR, .offset = OFF(cmdline), .kinds = KV },
	{ .name = "disk", .type = GW_F_STR, .offset = OFF(disk), .kinds = KV, .check = check_abs_path },
	{ .name = "forwards", .type = GW_F_STRLIST, .offset = OFF(forwards), .kinds = KV, .check = check_portmap },
	{ .name = "accel", .type = GW_F_ENUM, .offset = OFF(accel), .kinds = KV, .enums = accel_names },
	/* External (lib/backend/external.c) */
	{ .name = "plugin",
	  .type = GW_F_STR,
	  .offset = OFF(plugin),
	  .kinds = KE,
	  .required_kinds = KE,
	  .check = check_plugin_name },
	{ .name = "config", .type = GW_F_JSON, .offset = OFF(plugin_config), .kinds = KE },
	{ .name = "sources", .type = GW_F_STRLIST, .offset = OFF(sources), .kinds = KE, .check = check_repo_path },
	{ .name = "timeout",
	  .type = GW_F_DURATION,
	  .offset = OFF(plugin_timeout_ms),
	  .kinds = KE,
	  .flags = GW_FF_NOHASH,
	  .min = 100,
	  .max = 3600000,
	  .defval = 30000 },
	{ 0 }
};
