/* Manifest parsing and validation: every bad document is refused with the
 * exact position and a message naming what was expected. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gitward/manifest.h"

#define HDR "apiVersion: gitward/v1\n"
#define PROC HDR "kind: Process\nmetadata: {name: p}\n"
#define PROC_NAMED HDR "kind: Process\nmetadata: {name: %s}\n"
#define CONT HDR "kind: Container\nmetadata: {name: c}\n"
#define VMH HDR "kind: VM\nmetadata: {name: v}\n"
#define EXT HDR "kind: External\nmetadata: {name: e}\n"

struct bad {
	const char *yaml;
	unsigned line, col;
	const char *fragment;
};

static const struct bad bad_docs[] = {
	/* document shape */
	{ "- a\n- b\n", 1, 1, "expected a mapping with apiVersion" },
	{ "kind: Process\nmetadata: {name: p}\nspec: {command: [/bin/true]}\n", 1, 1, "apiVersion: required field" },
	{ "apiVersion: gitward/v2\nkind: Process\nmetadata: {name: p}\nspec: {command: [/bin/true]}\n", 1, 13,
	  "apiVersion: expected \"gitward/v1\"" },
	{ HDR "metadata: {name: p}\nspec: {}\n", 1, 1, "kind: required field is missing" },
	{ HDR "kind: Pod\nmetadata: {name: p}\nspec: {}\n", 2, 7,
	  "expected one of Process, Container, VM or External" },
	{ HDR "kind: Proccess\nmetadata: {name: p}\nspec: {}\n", 2, 7,
	  "kind: expected one of Process, Container, VM or External, got \"Proccess\" (did you mean \"Process\"?)" },
	{ HDR "kind: vm\nmetadata: {name: p}\nspec: {}\n", 2, 7,
	  "kind: expected one of Process, Container, VM or External, got \"vm\" (did you mean \"VM\"?)" },
	{ HDR "kind: Process\nspec: {command: [/bin/true]}\n", 1, 1, "metadata: required field is missing" },
	{ HDR "kind: Process\nmetadata: {name: p}\n", 1, 1, "spec: required field is missing" },
	{ PROC "spec: [1]\n", 4, 7, "spec: expected a mapping, got a list" },
	{ PROC "spec: {command: [/bin/true]}\nstatus: {}\n", 5, 1, "status: unknown field" },
	{ PROC "spec: {command: [/bin/true]}\nextra: 1\n", 5, 1, "extra: unknown field" },
	/* names and labels */
	{ HDR "kind: Process\nmetadata: {name: Web}\nspec: {command: [/bin/true]}\n", 3, 18,
	  "metadata.name: expected a name" },
	{ HDR "kind: Process\nmetadata: {name: -web}\nspec: {command: [/bin/true]}\n", 3, 18, "metadata.name" },
	{ HDR "kind: Process\nmetadata: {name: "
	      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}\nspec: {command: [/bin/true]}\n",
	  3, 18, "at most 63 characters" },
	{ HDR "kind: Process\nmetadata: {}\nspec: {command: [/bin/true]}\n", 3, 11, "metadata.name: required field" },
	{ HDR "kind: Process\nmetadata: {name: p, labels: {\"a b\": x}}\nspec: {command: [/bin/true]}\n", 3, 30,
	  "metadata.labels.a b: expected a label key" },
	{ HDR "kind: Process\nmetadata: {name: p, labels: [a]}\nspec: {command: [/bin/true]}\n", 3, 29,
	  "metadata.labels: expected a mapping of strings, got a list" },
	{ HDR "kind: Process\nmetadata: {name: p, owner: me}\nspec: {command: [/bin/true]}\n", 3, 21,
	  "metadata.owner: unknown field" },
	/* common spec fields */
	{ PROC "spec: {command: [/bin/true], restart: sometimes}\n", 4, 39,
	  "expected one of always, on-failure or never" },
	{ PROC "spec: {command: [/bin/true], nodeSelector: [a]}\n", 4, 44, "spec.nodeSelector: expected a mapping" },
	{ PROC "spec: {command: [/bin/true], dependsOn: web}\n", 4, 41, "spec.dependsOn: expected a list of strings" },
	{ PROC "spec: {command: [/bin/true], dependsOn: [Web]}\n", 4, 42, "spec.dependsOn[0]: expected a name" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {}}\n", 4, 43,
	  "expected exactly one of http, tcp or exec, got 0" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {http: {url: \"http://x\"}, tcp: {address: \"a:1\"}}}\n", 4,
	  43, "exactly one of http, tcp or exec, got 2" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {http: {url: \"ftp://x\"}}}\n", 4, 56,
	  "spec.healthCheck.http.url: expected an http:// URL" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {tcp: {address: \"nohost\"}}}\n", 4, 59,
	  "spec.healthCheck.tcp.address: expected \"HOST:PORT\"" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {exec: {command: []}, interval: 1s}}\n", 4, 60,
	  "spec.healthCheck.exec.command: expected a non-empty list" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {http: {}}}\n", 4, 50,
	  "spec.healthCheck.http.url: required field" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {tcp: {address: \"a:1\"}, retries: 0}}\n", 4, 76,
	  "spec.healthCheck.retries: must be between 1 and 100" },
	{ PROC "spec: {command: [/bin/true], healthCheck: {tcp: {address: \"a:1\"}, interval: 1s, timeout: 5s}}\n", 4,
	  90, "spec.healthCheck.timeout: must not exceed the interval" },
	{ PROC "spec: {command: [/bin/true], stopTimeout: ten}\n", 4, 43, "expected a duration like 500ms" },
	{ PROC "spec: {command: [/bin/true], stopTimeout: 2d}\n", 4, 43, "expected a duration" },
	{ PROC "spec: {command: [/bin/true], stopTimeout: 5h}\n", 4, 43, "must be between 0s and 1h" },
	{ PROC "spec: {command: [/bin/true], stopSignal: TERMINATE}\n", 4, 42, "expected a signal name" },
	/* Process */
	{ PROC "spec: {env: {A: b}}\n", 4, 7, "spec.command: required field is missing" },
	{ PROC "spec: {command: []}\n", 4, 17, "spec.command: expected a non-empty list" },
	{ PROC "spec: {command: \"/bin/sh -c true\"}\n", 4, 17,
	  "spec.command: expected a list of strings, got a scalar" },
	{ PROC "spec: {command: [python3]}\n", 4, 18, "spec.command[0]: expected an absolute path" },
	{ PROC "spec: {command: [/bin/true, [x]]}\n", 4, 29, "spec.command[1]: expected a string, got a list" },
	{ PROC "spec: {command: [/bin/true], env: {1A: x}}\n", 4, 36,
	  "spec.env.1A: expected an environment variable name" },
	{ PROC "spec: {command: [/bin/true], env: {A: [x]}}\n", 4, 39, "spec.env.A: expected a string, got a list" },
	{ PROC "spec: {command: [/bin/true], envFiles: [secret.env]}\n", 4, 41,
	  "spec.envFiles[0]: expected an absolute path" },
	{ PROC "spec: {command: [/bin/true], secretEnvFiles: [s/../x.age]}\n", 4, 47,
	  "spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), "
	  "got \"s/../x.age\"" },
	{ PROC "spec: {command: [/bin/true], secretEnvFiles: [/etc/x.age]}\n", 4, 47,
	  "spec.secretEnvFiles[0]: expected a path relative to the repository root" },
	{ PROC "spec: {command: [/bin/true], secretEnvFiles: [\"a//b\"]}\n", 4, 47,
	  "spec.secretEnvFiles[0]: expected a path relative to the repository root" },
	{ PROC "spec: {command: [/bin/true], secretEnvFiles: [s/a.age, s/a.age]}\n", 4, 56,
	  "spec.secretEnvFiles: \"s/a.age\" is listed twice" },
	{ "apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d, secretEnvFiles: [a]}\n", 4, 18,
	  "spec.secretEnvFiles: field is not valid for kind VM" },
	{ PROC "spec: {command: [/bin/true], workingDir: srv}\n", 4, 42, "spec.workingDir: expected an absolute path" },
	{ PROC "spec: {command: [/bin/true], user: \"a b\"}\n", 4, 36, "spec.user: expected a user name" },
	{ PROC "spec: {command: [/bin/true], limits: {openFiles: many}}\n", 4, 50,
	  "spec.limits.openFiles: expected an integer" },
	{ PROC "spec: {command: [/bin/true], limits: {memory: 1Ki}}\n", 4, 47,
	  "spec.limits.memory: must be at least 1Mi" },
	{ PROC "spec: {command: [/bin/true], limits: {cpu: 1}}\n", 4, 39, "spec.limits.cpu: unknown field" },
	{ PROC "spec: {command: [/bin/true], comand: [x]}\n", 4, 30,
	  "spec.comand: unknown field (did you mean \"command\"?)" },
	{ PROC "spec: {command: [/bin/true], image: busybox}\n", 4, 30,
	  "spec.image: field is not valid for kind Process" },
	/* Container */
	{ CONT "spec: {command: [x]}\n", 4, 7, "spec.image: required field is missing" },
	{ CONT "spec: {image: \"a b\"}\n", 4, 15, "spec.image: expected an image reference without spaces" },
	{ CONT "spec: {image: x, ports: [\"80\"]}\n", 4, 26,
	  "spec.ports[0]: expected \"[IP:]HOSTPORT:PORT[/tcp|udp]\"" },
	{ CONT "spec: {image: x, ports: [\"8080:80/sctp\"]}\n", 4, 26, "spec.ports[0]: expected" },
	{ CONT "spec: {image: x, ports: [\"99999:80\"]}\n", 4, 26, "ports 1-65535" },
	{ CONT "spec: {image: x, ports: [\"8080:80\"], network: none}\n", 4, 25, "spec.ports: needs network: bridge" },
	{ CONT "spec: {image: x, volumes: [\"data:/data\"]}\n", 4, 28,
	  "spec.volumes[0]: expected \"/HOST/PATH:/CONTAINER/PATH" },
	{ CONT "spec: {image: x, volumes: [\"/a:/b:rx\"]}\n", 4, 28, "spec.volumes[0]" },
	{ CONT "spec: {image: x, network: user}\n", 4, 27, "expected one of none, bridge or host" },
	{ CONT "spec: {image: x, memory: lots}\n", 4, 26, "spec.memory: expected a size like 512Mi" },
	{ CONT "spec: {image: x, memory: 1Ki}\n", 4, 26, "spec.memory: must be at least 4Mi" },
	{ CONT "spec: {image: x, cpus: 0.0001}\n", 4, 24, "spec.cpus: expected a number of CPUs" },
	{ CONT "spec: {image: x, cpus: -1}\n", 4, 24, "spec.cpus: expected a number of CPUs" },
	{ CONT "spec: {image: x, cpus: 0.001}\n", 4, 24, "spec.cpus: must be between 0.01 and 1024" },
	{ CONT "spec: {image: x, pull: sometimes}\n", 4, 24, "expected one of missing, never or always" },
	{ CONT "spec: {image: x, kernel: /k}\n", 4, 18, "spec.kernel: field is not valid for kind Container" },
	/* VM */
	{ VMH "spec: {memory: 1Gi}\n", 4, 7, "spec: a VM needs a kernel, a disk, or both" },
	{ VMH "spec: {disk: /d.qcow2, initrd: /i}\n", 4, 32, "spec.initrd: needs spec.kernel" },
	{ VMH "spec: {disk: /d.qcow2, cmdline: \"x\"}\n", 4, 33, "spec.cmdline: needs spec.kernel" },
	{ VMH "spec: {kernel: vmlinuz}\n", 4, 16, "spec.kernel: expected an absolute path" },
	{ VMH "spec: {disk: /d, memory: 1Mi}\n", 4, 26, "spec.memory: must be between 16Mi and 1Ti" },
	{ VMH "spec: {disk: /d, cpus: 0.5}\n", 4, 24, "spec.cpus: expected an integer" },
	{ VMH "spec: {disk: /d, cpus: 0}\n", 4, 24, "spec.cpus: must be between 1 and 256" },
	{ VMH "spec: {disk: /d, network: bridge}\n", 4, 27, "expected one of none or user" },
	{ VMH "spec: {disk: /d, network: none, forwards: [\"2222:22\"]}\n", 4, 43,
	  "spec.forwards: needs network: user" },
	{ VMH "spec: {disk: /d, forwards: [\"22\"]}\n", 4, 29, "spec.forwards[0]: expected" },
	{ VMH "spec: {disk: /d, accel: hvf}\n", 4, 25, "expected one of auto, kvm or tcg" },
	{ VMH "spec: {disk: /d, command: [/bin/true]}\n", 4, 18, "spec.command: field is not valid for kind VM" },
	{ VMH "spec: {disk: /d, healthCheck: {exec: {command: [/bin/true]}}}\n", 4, 32,
	  "spec.healthCheck.exec: field is not valid for kind VM" },
	/* hostile YAML */
	{ "a: &x 1\nb: *x\n", 1, 4, "anchors and aliases are not allowed" },
	{ "a: !!str 1\n", 1, 4, "YAML tags are not allowed" },
	{ "a: !custom 1\n", 1, 4, "YAML tags are not allowed" },
	{ "a: [1, 2\n", 2, 1, "YAML syntax error" },
	{ "a: 1\na: 2\n", 2, 1, "duplicate key \"a\" (first at line 1)" },
	{ "? [a]\n: 1\n", 1, 3, "mapping keys must be plain strings" },
	{ "a: \"x\xff\"\n", 1, 6, "invalid UTF-8 byte 0xff" },
	{ "a: \"\xed\xa0\x80\"\n", 1, 5, "invalid UTF-8" },
	{ "a: \"\xc0\xaf\"\n", 1, 5, "invalid UTF-8" },
	{ "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", 1, 35,
	  "nesting deeper than 32 levels" },
	{ "a:\t- 1\n", 1, 4, "YAML syntax error" },
	/* an escaped NUL would cut the C string short: refused at the scalar, key or value */
	{ HDR "kind: Process\nmetadata: {name: \"a\\0b\"}\nspec: {command: [/bin/true]}\n", 3, 18,
	  "NUL character in a string" },
	{ PROC "spec: {command: [/bin/true], user: \"nobody\\0\"}\n", 4, 36, "NUL character in a string" },
	{ PROC "spec: {command: [/bin/true], workingDir: \"/srv\\x00\"}\n", 4, 42, "NUL character in a string" },
	{ PROC "spec: {command: [/bin/true], env: {A: \"x\\0tail\"}}\n", 4, 39, "NUL character in a string" },
	{ PROC "spec: {command: [/bin/true], env: {\"A\\u0000\": x}}\n", 4, 36, "NUL character in a string" },
	{ PROC "spec: {command: [\"/bin/true\\U00000000\"]}\n", 4, 18, "NUL character in a string" },
	{ HDR "kind: Process\nmetadata: {name: p, labels: {a: \"\\0\"}}\nspec: {command: [/bin/true]}\n", 3, 33,
	  "NUL character in a string" },
	{ "\"\\0\": 1\n", 1, 1, "NUL character in a string (escaped as \\0, \\x00 or \\u0000)" },
	/* External */
	{ EXT "spec: {config: {a: 1}}\n", 4, 7, "spec.plugin: required field is missing" },
	{ EXT "spec: {plugin: ../bin/sh}\n", 4, 16, "spec.plugin: expected a plugin name of letters, digits" },
	{ EXT "spec: {plugin: .hidden}\n", 4, 16, "spec.plugin: expected a plugin name" },
	{ EXT "spec: {plugin: files, config: [a]}\n", 4, 31, "spec.config: expected a mapping, got a list" },
	{ EXT "spec: {plugin: files, sources: [../etc/passwd]}\n", 4, 33,
	  "spec.sources[0]: expected a path relative to the repository root (no leading /, no . or .. parts), "
	  "got \"../etc/passwd\"" },
	{ EXT "spec: {plugin: files, sources: [ok, /etc/shadow]}\n", 4, 37,
	  "spec.sources[1]: expected a path relative to the repository root" },
	{ EXT "spec: {plugin: files, sources: [a/./b]}\n", 4, 33, "spec.sources[0]: expected a path relative" },
	/* one file named twice in one list: read once per entry, it was a way to exhaust memory */
	{ EXT "spec: {plugin: files, sources: [a, b, a]}\n", 4, 39, "spec.sources: \"a\" is listed twice" },
	{ EXT "spec: {plugin: files, timeout: 10ms}\n", 4, 32, "spec.timeout: must be between 100ms and 1h" },
	{ EXT "spec: {plugin: files, stopTimeout: 1s}\n", 4, 23,
	  "spec.stopTimeout: field is not valid for kind External" },
	{ EXT "spec: {plugin: files, command: [/bin/true]}\n", 4, 23,
	  "spec.command: field is not valid for kind External" },
	{ PROC "spec: {command: [/bin/true], plugin: files}\n", 4, 30,
	  "spec.plugin: field is not valid for kind Process" },
	/* per-node values: the column of the "$" (characters, after a quote) */
	{ PROC "spec:\n  command: [/bin/true, \"x ${node.lables.role}\"]\n", 5, 27,
	  "spec.command[1]: \"${node.lables.role}\" is not a node value (did you mean \"${node.labels.role}\"?)" },
	{ PROC "spec:\n  command: [/bin/true]\n  env:\n    A: é${node.nmae}\n", 7, 9,
	  "spec.env.A: \"${node.nmae}\" is not a node value (did you mean \"${node.name}\"?)" },
	{ PROC "spec:\n  command: [/bin/true]\n  workingDir: /a/${node.name\n", 6, 18,
	  "spec.workingDir: unterminated \"${\"" },
	{ PROC "spec:\n  command: [/bin/true]\n  user: \"${os.user}\"\n", 6, 10,
	  "spec.user: \"${os.user}\" is not a node value (${node.name} or ${node.labels.KEY}; $${ writes ${)" },
	{ PROC "spec:\n  command: [/bin/true]\n  env: {A: \"${node.labels.-x}\"}\n", 6, 13,
	  "spec.env.A: \"${node.labels.-x}\": expected a label key" },
};

static char *expand(int *rc, const char *s, const struct gw_strmap *labels, size_t *at)
{
	char *out = NULL, msg[256];
	*rc = gw_values_expand(&out, at, msg, sizeof(msg), s, labels);
	return out;
}

static void test_values_put_in_the_node_name_and_labels(void **state)
{
	(void)state;
	struct gw_strmap l = { 0 };
	size_t at = 0;
	int rc;
	gw_strmap_set(&l, "node", "n1");
	gw_strmap_set(&l, "role", "edge");
	char *v = expand(&rc, "é-${node.name}/${node.labels.role}-$${node.name}-$$${x}", &l, &at);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "é-n1/edge-${node.name}-$${x}");
	free(v);
	/* a value holding "${" is not scanned again */
	gw_strmap_set(&l, "role", "${node.name}");
	v = expand(&rc, "${node.labels.role}", &l, &at);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "${node.name}");
	free(v);
	gw_strmap_free(&l);
}

static void test_values_errors_name_the_offset_and_fill_msg_iff_failing(void **state)
{
	(void)state;
	struct gw_strmap l = { 0 };
	char *out = NULL, msg[256] = "";
	size_t at = 99;
	gw_strmap_set(&l, "node", "n1");
	assert_int_equal(gw_values_expand(&out, &at, msg, sizeof(msg), "ab ${node.labels.role}", &l), -ENOENT);
	assert_null(out);
	assert_int_equal(at, 3);
	assert_string_equal(msg, "node \"n1\" has no label \"role\"");
	assert_int_equal(gw_values_expand(&out, &at, msg, sizeof(msg), "x${node.name", &l), -EINVAL);
	assert_int_equal(at, 1);
	assert_non_null(strstr(msg, "unterminated"));
	assert_int_equal(gw_values_expand(&out, &at, msg, sizeof(msg), "${}", NULL), -EINVAL);
	assert_int_equal(gw_values_expand(&out, &at, msg, sizeof(msg), "${node.labels.}", NULL), -EINVAL);
	/* syntax only (no labels): valid, nothing written */
	msg[0] = '\0';
	assert_int_equal(gw_values_expand(&out, &at, msg, sizeof(msg), "${node.labels.role} $${", NULL), 0);
	assert_null(out);
	assert_string_equal(msg, "");
	gw_strmap_free(&l);
}

static void test_values_apply_on_the_node_and_change_the_hash(void **state)
{
	(void)state;
	static const char doc[] = PROC "spec:\n  command: [/bin/sleep, \"${node.labels.t}\"]\n"
				       "  env: {WHO: \"${node.name}\"}\n  nodeSelector: {role: edge}\n";
	struct gw_manifest_set set;
	struct gw_strmap l = { 0 };
	struct gw_resource *v = NULL, *w = NULL;
	struct gw_error err = { 0 };
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "v.yaml", doc, strlen(doc));
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 1);
	gw_strmap_set(&l, "node", "n1");
	gw_strmap_set(&l, "role", "edge");
	gw_strmap_set(&l, "t", "5");
	assert_int_equal(gw_manifest_node_values(&v, set.v[0], &l, &err), 0);
	assert_non_null(v);
	assert_string_equal(v->command.v[1], "5");
	assert_string_equal(gw_strmap_get(&v->env, "WHO"), "n1");
	assert_string_equal(gw_strmap_get(&v->node_selector, "role"), "edge");
	assert_string_not_equal(v->spec_hash, set.v[0]->spec_hash);
	gw_strmap_set(&l, "t", "6");
	assert_int_equal(gw_manifest_node_values(&w, set.v[0], &l, &err), 0);
	assert_string_not_equal(w->spec_hash, v->spec_hash);
	gw_resource_free(w);
	/* a label the node lacks: a copy that carries why */
	gw_strmap_free(&l);
	gw_strmap_set(&l, "node", "n3");
	assert_int_equal(gw_manifest_node_values(&w, set.v[0], &l, &err), -ENOENT);
	assert_non_null(w); /* as declared, for the plan */
	assert_string_equal(w->spec_hash, set.v[0]->spec_hash);
	assert_string_equal(err.msg,
			    "${node.labels.t} in spec.command[1]: node \"n3\" has no label \"t\" (v.yaml:3:18)");
	gw_resource_free(w);
	gw_resource_free(v);
	gw_strmap_free(&l);
	gw_manifest_set_free(&set);
}

static void test_values_are_checked_as_the_node_gives_them(void **state)
{
	(void)state;
	static const char doc[] = PROC "spec:\n  command: [/bin/true]\n  workingDir: \"${node.labels.dir}\"\n";
	struct gw_manifest_set set;
	struct gw_strmap l = { 0 };
	struct gw_resource *v = NULL;
	struct gw_error err;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "v.yaml", doc, strlen(doc));
	assert_int_equal(set.diags.n, 0);
	gw_strmap_set(&l, "node", "n1");
	gw_strmap_set(&l, "dir", "relative");
	assert_int_equal(gw_manifest_node_values(&v, set.v[0], &l, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "spec.workingDir: expected an absolute path"));
	assert_non_null(strstr(err.msg, "node \"n1\""));
	gw_resource_free(v);
	/* no "${" at all: the resource applies as it is */
	static const char plain[] = PROC "spec: {command: [/bin/true]}\n";
	gw_manifest_set_add_file(&set, "p.yaml", plain, strlen(plain));
	assert_int_equal(gw_manifest_node_values(&v, set.v[1], &l, &err), 0);
	assert_null(v);
	gw_strmap_free(&l);
	gw_manifest_set_free(&set);
}

static void test_bad_documents_report_position_and_message(void **state)
{
	(void)state;
	size_t n = sizeof(bad_docs) / sizeof(bad_docs[0]);
	int failures = 0;
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		struct gw_manifest_set set;
		gw_manifest_set_init(&set);
		gw_manifest_set_add_file(&set, "bad.yaml", bad_docs[i].yaml, strlen(bad_docs[i].yaml));
		gw_manifest_set_finish(&set);
		int found = 0;
		for (size_t d = 0; d < set.diags.n; d++) {
			const struct gw_diag *g = &set.diags.v[d];
			if (g->line == bad_docs[i].line && g->col == bad_docs[i].col &&
			    strstr(g->msg, bad_docs[i].fragment))
				found = 1;
		}
		if (!found) {
			fprintf(stderr, "case %zu: wanted %u:%u %s\n", i, bad_docs[i].line, bad_docs[i].col,
				bad_docs[i].fragment);
			for (size_t d = 0; d < set.diags.n; d++)
				fprintf(stderr, "  got %u:%u %s\n", set.diags.v[d].line, set.diags.v[d].col,
					set.diags.v[d].msg);
		}
		failures += !found;
		assert_int_equal(set.n, 0); /* nothing invalid is kept */
		gw_manifest_set_free(&set);
	}
	assert_int_equal(failures, 0);
}

static void test_nul_byte_is_refused_with_position(void **state)
{
	(void)state;
	static const char doc[] = "a: 1\nb: x\0y\n";
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "nul.yaml", doc, sizeof(doc) - 1);
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, 2);
	assert_int_equal(set.diags.v[0].col, 5);
	assert_string_equal(set.diags.v[0].msg, "NUL byte in manifest");
	gw_manifest_set_free(&set);
}

static void test_escaped_nul_drops_only_its_document(void **state)
{
	(void)state;
	static const char doc[] = PROC "spec: {command: [/bin/true]}\n---\n" HDR
				       "kind: Process\nmetadata: {name: \"q\\0\"}\nspec: {command: [/bin/true]}\n";
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "nul.yaml", doc, sizeof(doc) - 1);
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, 8);
	assert_int_equal(set.diags.v[0].col, 18);
	assert_string_equal(set.diags.v[0].msg, "NUL character in a string (escaped as \\0, \\x00 or \\u0000)");
	assert_int_equal(set.n, 1);
	assert_string_equal(set.v[0]->name, "p");
	gw_manifest_set_free(&set);
}

static void test_leading_bom_is_skipped(void **state)
{
	(void)state;
	static const char good[] = "\xEF\xBB\xBF" PROC "spec: {command: [/bin/true]}\n";
	static const char bad[] =
		"\xEF\xBB\xBF"
		"apiVersion: gitward/v2\nkind: Process\nmetadata: {name: p}\nspec: {command: [/bin/true]}\n";
	static const char nul[] = "\xEF\xBB\xBF"
				  "a: \"\\0\"\n";
	struct gw_manifest_set set;

	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "bom.yaml", good, sizeof(good) - 1);
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 1);
	assert_string_equal(set.v[0]->name, "p");
	gw_manifest_set_free(&set);

	/* positions count from after the mark, as an editor shows them */
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "bom.yaml", bad, sizeof(bad) - 1);
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, 1);
	assert_int_equal(set.diags.v[0].col, 13);
	assert_non_null(strstr(set.diags.v[0].msg, "apiVersion: expected \"gitward/v1\""));
	gw_manifest_set_free(&set);

	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "bom.yaml", nul, sizeof(nul) - 1);
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, 1);
	assert_int_equal(set.diags.v[0].col, 4);
	gw_manifest_set_free(&set);
}

static void test_billion_laughs_fails_fast(void **state)
{
	(void)state;
	const char *doc = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
			  "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
			  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
			  "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
			  "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
			  "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
			  "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "lol.yaml", doc, strlen(doc));
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, 1);
	assert_int_equal(set.diags.v[0].col, 4);
	assert_non_null(strstr(set.diags.v[0].msg, "anchors and aliases"));
	gw_manifest_set_free(&set);
}

static void test_oversized_file_is_refused(void **state)
{
	(void)state;
	size_t len = GW_MANIFEST_FILE_MAX + 1;
	char *big = malloc(len);
	memset(big, '#', len);
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "big.yaml", big, len);
	assert_int_equal(set.diags.n, 1);
	assert_non_null(strstr(set.diags.v[0].msg, "larger than the limit"));
	gw_manifest_set_free(&set);
	free(big);
}

static void test_too_many_documents_refused(void **state)
{
	(void)state;
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	for (unsigned i = 0; i <= GW_MANIFEST_DOCS_MAX; i++)
		gw_strbuf_puts(&sb, "---\n");
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "many.yaml", sb.s, sb.len);
	assert_int_equal(set.diags.n, 1);
	assert_non_null(strstr(set.diags.v[0].msg, "documents in one file"));
	gw_manifest_set_free(&set);
	gw_strbuf_free(&sb);
}

static void test_commit_bounds_on_files_and_bytes(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	for (unsigned i = 0; i < GW_MANIFEST_FILES_MAX; i++)
		gw_manifest_set_add_file(&set, "empty.yaml", "", 0);
	assert_int_equal(set.diags.n, 0); /* at the limit: fine */
	for (unsigned i = 0; i < 5; i++)
		gw_manifest_set_add_file(&set, "empty.yaml", "", 0);
	assert_int_equal(set.diags.n, 1);
	assert_non_null(strstr(set.diags.v[0].msg, "more than 100000 manifest files"));
	gw_manifest_set_free(&set);

	size_t len = GW_MANIFEST_FILE_MAX;
	char *big = malloc(len);
	memset(big, 'x', len);
	big[0] = '#';
	gw_manifest_set_init(&set);
	for (unsigned i = 0; i < GW_MANIFEST_COMMIT_MAX / GW_MANIFEST_FILE_MAX; i++)
		gw_manifest_set_add_file(&set, "big.yaml", big, len);
	assert_int_equal(set.bytes, GW_MANIFEST_COMMIT_MAX); /* at the limit: fine */
	assert_int_equal(set.diags.n, 0);
	gw_manifest_set_add_file(&set, "one-more.yaml", "#", 1);
	assert_int_equal(set.diags.n, 1);
	assert_non_null(strstr(set.diags.v[0].msg, "manifests exceed 134217728 bytes in total"));
	gw_manifest_set_free(&set);
	free(big);
}

static void test_all_errors_of_a_file_are_reported(void **state)
{
	(void)state;
	const char *doc = PROC "spec: {command: [x], restart: maybe, stopTimeout: soon}\n"
			       "---\n" CONT "spec: {image: x, ports: [bad]}\n";
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	gw_manifest_set_add_file(&set, "m.yaml", doc, strlen(doc));
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 4);
	gw_manifest_set_free(&set);
}

static void add(struct gw_manifest_set *set, const char *file, const char *yaml)
{
	gw_manifest_set_add_file(set, file, yaml, strlen(yaml));
}

static void test_duplicate_names_across_files(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	add(&set, "a.yaml", HDR "kind: Process\nmetadata: {name: web}\nspec: {command: [/bin/true]}\n");
	add(&set, "b.yaml", HDR "kind: Container\nmetadata:\n  name: web\nspec: {image: x}\n");
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 1);
	assert_string_equal(set.diags.v[0].file, "b.yaml");
	assert_int_equal(set.diags.v[0].line, 4);
	assert_int_equal(set.diags.v[0].col, 9);
	assert_non_null(
		strstr(set.diags.v[0].msg, "duplicate name \"web\" (first declared as Process at a.yaml:3:18)"));
	assert_int_equal(set.n, 1);
	gw_manifest_set_free(&set);
}

static void test_ignore_follows_gitignore_rules(void **state)
{
	(void)state;
	static const char text[] = "# comment\n"
				   "\n"
				   "docs/\n"
				   "*.yml\n"
				   "!apps/**/*.yml\n"
				   "/top.yaml\n"
				   "build/**\n"
				   "a/**/z.yaml   \n"
				   "\\#hash.yaml\n";
	struct gw_ignore *ig = gw_ignore_new();
	gw_ignore_add_text(ig, ".gitwardignore", text, sizeof(text) - 1);
	gw_ignore_add_pattern(ig, "apps/x/drop.yml");
	/* folder patterns match folders only, at any depth; nothing inside comes back */
	assert_string_equal(gw_ignore_match(ig, "docs", true), ".gitwardignore:3: docs/");
	assert_string_equal(gw_ignore_match(ig, "sub/docs", true), ".gitwardignore:3: docs/");
	assert_null(gw_ignore_match(ig, "docs", false));
	assert_string_equal(gw_ignore_match(ig, "docs/apps/b/c.yml", false), ".gitwardignore:3: docs/");
	/* the last rule that matches wins: a negation re-includes */
	assert_string_equal(gw_ignore_match(ig, "ci.yml", false), ".gitwardignore:4: *.yml");
	assert_null(gw_ignore_match(ig, "apps/b/c.yml", false));
	assert_null(gw_ignore_match(ig, "apps/c.yml", false));
	assert_string_equal(gw_ignore_match(ig, "apps/x/drop.yml", false), "--exclude apps/x/drop.yml");
	/* anchored at the root */
	assert_string_equal(gw_ignore_match(ig, "top.yaml", false), ".gitwardignore:6: /top.yaml");
	assert_null(gw_ignore_match(ig, "sub/top.yaml", false));
	/* a last "**": what is inside, not the folder */
	assert_null(gw_ignore_match(ig, "build", true));
	assert_string_equal(gw_ignore_match(ig, "build/x/y.yaml", false), ".gitwardignore:7: build/**");
	/* a middle "**": zero or more folders; trailing spaces dropped */
	assert_string_equal(gw_ignore_match(ig, "a/z.yaml", false), ".gitwardignore:8: a/**/z.yaml   ");
	assert_non_null(gw_ignore_match(ig, "a/b/c/z.yaml", false));
	assert_null(gw_ignore_match(ig, "b/a/z.yaml", false));
	assert_non_null(gw_ignore_match(ig, "#hash.yaml", false));
	gw_ignore_free(ig);
	gw_ignore_free(NULL);
}

/* Literal rules go through an index, rules with wildcards are tried one by
 * one: the last matching rule must still decide, whatever its kind. */
static void test_ignore_last_rule_decides_across_literal_and_wildcard_rules(void **state)
{
	(void)state;
	static const char text[] = "web.yaml\n" /* 1: by name */
				   "!/apps/web.yaml\n" /* 2: by path, re-includes */
				   "/apps/db.yaml\n" /* 3: by path */
				   "!db.yaml\n" /* 4: by name, re-includes */
				   "*.yml\n" /* 5: wildcard */
				   "!keep.yml\n" /* 6: by name, after the wildcard */
				   "logs/\n" /* 7: folders only */
				   "x/y\n" /* 8: anchored by the slash */
				   "cache\n" /* 9 */
				   "!cache/\n"; /* 10: a folder comes back, a file not */
	struct gw_ignore *ig = gw_ignore_new();
	gw_ignore_add_text(ig, ".gitwardignore", text, sizeof(text) - 1);
	assert_string_equal(gw_ignore_match(ig, "web.yaml", false), ".gitwardignore:1: web.yaml");
	assert_string_equal(gw_ignore_match(ig, "other/web.yaml", false), ".gitwardignore:1: web.yaml");
	assert_null(gw_ignore_match(ig, "apps/web.yaml", false));
	assert_null(gw_ignore_match(ig, "apps/db.yaml", false));
	assert_null(gw_ignore_match(ig, "db.yaml", false));
	assert_string_equal(gw_ignore_match(ig, "a/b.yml", false), ".gitwardignore:5: *.yml");
	assert_null(gw_ignore_match(ig, "a/keep.yml", false));
	assert_string_equal(gw_ignore_match(ig, "a/logs/x.yaml", false), ".gitwardignore:7: logs/");
	assert_null(gw_ignore_match(ig, "a/logs", false));
	assert_string_equal(gw_ignore_match(ig, "x/y", false), ".gitwardignore:8: x/y");
	assert_string_equal(gw_ignore_match(ig, "x/y/z.yaml", false), ".gitwardignore:8: x/y");
	assert_null(gw_ignore_match(ig, "a/x/y", false));
	assert_null(gw_ignore_match(ig, "cache", true));
	assert_string_equal(gw_ignore_match(ig, "cache", false), ".gitwardignore:9: cache");
	/* an entry of a kept folder: only its own name is matched */
	assert_string_equal(gw_ignore_match_entry(ig, "a/b.yml", false), ".gitwardignore:5: *.yml");
	assert_null(gw_ignore_match_entry(ig, "logs/x.yaml", false));
	gw_ignore_free(ig);
}

/* Issue 24: 159,700 rules x 4,000 files took 64 s per pass (every rule for
 * every prefix of every path, two callocs per try); with these 7-deep paths
 * the old matcher needs ~6 minutes in a release build. The ctest TIMEOUT
 * (120 s) is far beyond what indexed rules need (~0.5 s), even under ASan. */
static void test_ignore_160000_rules_4000_paths_stay_cheap(void **state)
{
	(void)state;
	struct gw_strbuf text, path;
	gw_strbuf_init(&text);
	gw_strbuf_init(&path);
	for (int i = 0; i < 160000; i++) {
		if (i % 2)
			gw_strbuf_printf(&text, "/apps/g%d/a/b/c/d/f%d.yaml\n", i % 40, i);
		else
			gw_strbuf_printf(&text, "%sname-%d.yaml\n", i % 1000 == 0 ? "!" : "", i);
	}
	gw_strbuf_puts(&text, "*.tmp\n/scratch/**\n");
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	struct gw_ignore *ig = gw_manifest_ignore_new(&set, text.s, text.len);
	assert_int_equal(set.diags.n, 0);
	size_t excluded = 0;
	for (int f = 0; f < 4000; f++) {
		gw_strbuf_free(&path);
		gw_strbuf_init(&path);
		gw_strbuf_printf(&path, "apps/g%d/a/b/c/d/f%d.yaml", f % 40, f);
		const char *by = gw_ignore_match(ig, path.s, false);
		excluded += by != NULL;
		/* odd f: "/apps/gN/a/b/c/d/fN.yaml" names it exactly */
		assert_true((by != NULL) == (f % 2 == 1));
	}
	assert_int_equal(excluded, 2000);
	assert_string_equal(gw_ignore_match(ig, "deep/er/name-2.yaml", false), ".gitwardignore:3: name-2.yaml");
	assert_null(gw_ignore_match(ig, "name-2000.yaml", false)); /* "!name-2000.yaml" comes after */
	assert_non_null(gw_ignore_match(ig, "a/b.tmp", false));
	assert_non_null(gw_ignore_match(ig, "scratch/x.yaml", false));
	gw_ignore_free(ig);
	gw_manifest_set_free(&set);
	gw_strbuf_free(&text);
	gw_strbuf_free(&path);
}

/* Rules with wildcards are tried one by one: more than the limit is a
 * problem of the commit at the line past it, not a slow pass. */
static void test_ignore_too_many_wildcard_rules_is_a_problem_at_its_line(void **state)
{
	(void)state;
	struct gw_strbuf text;
	gw_strbuf_init(&text);
	gw_strbuf_puts(&text, "# generated\nplain.yaml\n");
	for (unsigned i = 0; i <= GW_IGNORE_GLOBS_MAX; i++)
		gw_strbuf_printf(&text, "*.x%u\n", i);
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	struct gw_ignore *ig = gw_manifest_ignore_new(&set, text.s, text.len);
	assert_int_equal(set.diags.n, 1);
	assert_string_equal(set.diags.v[0].file, ".gitwardignore");
	assert_int_equal(set.diags.v[0].line, GW_IGNORE_GLOBS_MAX + 3);
	assert_string_equal(
		set.diags.v[0].msg,
		"more than 1000 rules with wildcards (*, ?, [ or \\); rules without them have no such limit");
	gw_manifest_ignore_check(&set, ig);
	assert_int_equal(set.diags.n, 2); /* the same problem for rules kept from an earlier pass */
	gw_ignore_free(ig);
	gw_manifest_set_free(&set);
	gw_strbuf_free(&text);
}

static void test_ignore_many_stars_stay_cheap(void **state)
{
	(void)state;
	struct gw_strbuf pat, path;
	gw_strbuf_init(&pat);
	gw_strbuf_init(&path);
	for (int i = 0; i < 200; i++)
		gw_strbuf_puts(&pat, "**/a*/");
	gw_strbuf_puts(&pat, "nomatch");
	for (int i = 0; i < 64; i++)
		gw_strbuf_puts(&path, "aaaa/");
	gw_strbuf_puts(&path, "x.yaml");
	struct gw_ignore *ig = gw_ignore_new();
	gw_ignore_add_pattern(ig, pat.s);
	assert_null(gw_ignore_match(ig, path.s, false));
	gw_ignore_free(ig);
	gw_strbuf_free(&pat);
	gw_strbuf_free(&path);
}

static void test_depends_on_unknown_and_cycles(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	add(&set, "a.yaml",
	    HDR "kind: Process\nmetadata: {name: a}\nspec: {command: [/bin/true], dependsOn: [b]}\n---\n" HDR
		"kind: Process\nmetadata: {name: b}\nspec: {command: [/bin/true], dependsOn: [c]}\n---\n" HDR
		"kind: Process\nmetadata: {name: c}\nspec: {command: [/bin/true], dependsOn: [a, ghost]}\n---\n" HDR
		"kind: Process\nmetadata: {name: d}\nspec: {command: [/bin/true], dependsOn: [d]}\n");
	gw_manifest_set_finish(&set);
	int cycle_abc = 0, cycle_d = 0, ghost = 0;
	for (size_t i = 0; i < set.diags.n; i++) {
		/* each at the dependsOn entry that closes it */
		if (!strcmp(set.diags.v[i].msg, "spec.dependsOn[0]: dependency cycle: a -> b -> c -> a") &&
		    set.diags.v[i].line == 14 && set.diags.v[i].col == 42)
			cycle_abc = 1;
		if (!strcmp(set.diags.v[i].msg, "spec.dependsOn[0]: dependency cycle: d -> d") &&
		    set.diags.v[i].line == 19 && set.diags.v[i].col == 42)
			cycle_d = 1;
		if (strstr(set.diags.v[i].msg, "\"ghost\" names no resource in this commit") &&
		    set.diags.v[i].line == 14 && set.diags.v[i].col == 45)
			ghost = 1;
	}
	assert_true(cycle_abc);
	assert_true(cycle_d);
	assert_true(ghost);
	assert_int_equal(set.diags.n, 3);
	gw_manifest_set_free(&set);
}

/* Parse only: the problems of one file. */
static size_t parse_diags(struct gw_diags *d, const char *data, size_t len)
{
	struct gw_arena *arena = gw_arena_new();
	struct gw_ynode **docs;
	size_t ndocs;
	gw_diags_init(d);
	gw_yaml_parse(&docs, &ndocs, arena, "l.yaml", data, len, d);
	gw_arena_free(arena);
	return d->n;
}

static void test_limits_at_the_limit_are_fine(void **state)
{
	(void)state;
	struct gw_diags d;
	struct gw_strbuf sb;

	/* a file of exactly GW_MANIFEST_FILE_MAX bytes */
	char *big = malloc(GW_MANIFEST_FILE_MAX);
	memset(big, '#', GW_MANIFEST_FILE_MAX);
	assert_int_equal(parse_diags(&d, big, GW_MANIFEST_FILE_MAX), 0);
	gw_diags_free(&d);
	free(big);

	/* GW_MANIFEST_DOCS_MAX documents */
	gw_strbuf_init(&sb);
	for (unsigned i = 0; i < GW_MANIFEST_DOCS_MAX; i++)
		gw_strbuf_puts(&sb, "---\n");
	assert_int_equal(parse_diags(&d, sb.s, sb.len), 0);
	gw_diags_free(&d);
	gw_strbuf_free(&sb);

	/* GW_MANIFEST_NODES_MAX nodes (a list and its items), then one more */
	for (unsigned extra = 0; extra < 2; extra++) {
		gw_strbuf_init(&sb);
		gw_strbuf_puts(&sb, "[");
		for (unsigned i = 0; i < GW_MANIFEST_NODES_MAX - 1 + extra; i++)
			gw_strbuf_puts(&sb, i ? ",1" : "1");
		gw_strbuf_puts(&sb, "]\n");
		assert_int_equal(parse_diags(&d, sb.s, sb.len), extra);
		if (extra)
			assert_string_equal(d.v[0].msg, "more than 200000 YAML nodes in one file");
		gw_diags_free(&d);
		gw_strbuf_free(&sb);
	}

	/* GW_MANIFEST_DEPTH_MAX nested collections, then one more */
	for (unsigned extra = 0; extra < 2; extra++) {
		gw_strbuf_init(&sb);
		for (unsigned i = 0; i < GW_MANIFEST_DEPTH_MAX + extra; i++)
			gw_strbuf_puts(&sb, "[");
		for (unsigned i = 0; i < GW_MANIFEST_DEPTH_MAX + extra; i++)
			gw_strbuf_puts(&sb, "]");
		assert_int_equal(parse_diags(&d, sb.s, sb.len), extra);
		if (extra) {
			assert_string_equal(d.v[0].msg, "nesting deeper than 32 levels");
			assert_int_equal(d.v[0].col, GW_MANIFEST_DEPTH_MAX + 1);
		}
		gw_diags_free(&d);
		gw_strbuf_free(&sb);
	}
}

/* A valid Process document with n unknown top-level fields: n problems. */
static char *unknown_fields(const char *name, unsigned n)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, PROC_NAMED "spec: {command: [/bin/true]}\n", name);
	for (unsigned i = 0; i < n; i++)
		gw_strbuf_printf(&sb, "z%u: 1\n", i);
	return gw_strbuf_detach(&sb);
}

static void test_diagnostics_are_capped_per_file(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	char *at = unknown_fields("a", GW_DIAGS_FILE_MAX), *past = unknown_fields("b", GW_DIAGS_FILE_MAX + 1);

	gw_manifest_set_init(&set);
	add(&set, "at.yaml", at);
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, GW_DIAGS_FILE_MAX);
	assert_int_equal(gw_diags_count(&set.diags), GW_DIAGS_FILE_MAX);
	assert_string_equal(set.diags.v[GW_DIAGS_FILE_MAX - 1].msg, "z99: unknown field");
	gw_manifest_set_free(&set);

	gw_manifest_set_init(&set);
	add(&set, "past.yaml", past);
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, GW_DIAGS_FILE_MAX + 1);
	assert_int_equal(gw_diags_count(&set.diags), GW_DIAGS_FILE_MAX + 1);
	const struct gw_diag *last = &set.diags.v[GW_DIAGS_FILE_MAX];
	assert_string_equal(last->file, "past.yaml");
	assert_int_equal(last->line, 0);
	assert_string_equal(last->msg, "\u2026 and 1 more problem in this file (at most 100 are reported)");
	gw_manifest_set_free(&set);
	free(at);
	free(past);
}

static void test_diagnostics_are_capped_per_commit(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	char file[32], *doc = unknown_fields("a", GW_DIAGS_FILE_MAX);

	gw_manifest_set_init(&set);
	for (unsigned i = 0; i < GW_DIAGS_COMMIT_MAX / GW_DIAGS_FILE_MAX; i++) {
		snprintf(file, sizeof(file), "f%02u.yaml", i);
		add(&set, file, doc);
	}
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, GW_DIAGS_COMMIT_MAX); /* at the limit: every one */
	add(&set, "g.yaml", doc); /* one past: summarised */
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, GW_DIAGS_COMMIT_MAX + 1);
	assert_int_equal(gw_diags_count(&set.diags), GW_DIAGS_COMMIT_MAX + GW_DIAGS_FILE_MAX);
	const struct gw_diag *last = &set.diags.v[GW_DIAGS_COMMIT_MAX];
	assert_string_equal(last->file, "");
	assert_string_equal(last->msg, "\u2026 and 100 more problems in this commit (at most 1000 are reported)");
	gw_manifest_set_free(&set);
	free(doc);
}

static void test_repeated_depends_on_is_linear_and_capped(void **state)
{
	(void)state;
	/* issue 11: 3,000 repeats gave 4.5 million diagnostics */
	struct gw_strbuf sb;
	struct gw_manifest_set set;
	gw_strbuf_init(&sb);
	gw_strbuf_puts(&sb, PROC "spec:\n  command: [/bin/true]\n  dependsOn: [b");
	for (unsigned i = 1; i < 3000; i++)
		gw_strbuf_puts(&sb, ", b");
	gw_strbuf_puts(&sb, "]\n");
	gw_manifest_set_init(&set);
	add(&set, "dups.yaml", sb.s);
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, GW_DIAGS_FILE_MAX + 1);
	assert_int_equal(gw_diags_count(&set.diags), 2999);
	assert_string_equal(set.diags.v[0].msg, "spec.dependsOn: \"b\" is listed twice");
	assert_int_equal(set.diags.v[0].line, 6);
	assert_int_equal(set.diags.v[0].col, 18); /* the second b */
	assert_string_equal(set.diags.v[GW_DIAGS_FILE_MAX].msg,
			    "\u2026 and 2899 more problems in this file (at most 100 are reported)");
	gw_manifest_set_free(&set);
	gw_strbuf_free(&sb);
}

static void test_duplicate_keys_in_a_large_mapping(void **state)
{
	(void)state;
	/* keys in descending order with two repeats: each reported once, at the
	 * repeat, naming the first */
	struct gw_strbuf sb;
	struct gw_diags d;
	gw_strbuf_init(&sb);
	for (unsigned i = 50000; i > 0; i--)
		gw_strbuf_printf(&sb, "k%u: 1\n", i);
	gw_strbuf_puts(&sb, "k7: 2\nk49999: 2\n");
	assert_int_equal(parse_diags(&d, sb.s, sb.len), 2);
	gw_diags_sort(&d);
	assert_string_equal(d.v[0].msg, "duplicate key \"k7\" (first at line 49994)");
	assert_int_equal(d.v[0].line, 50001);
	assert_string_equal(d.v[1].msg, "duplicate key \"k49999\" (first at line 2)");
	gw_diags_free(&d);
	gw_strbuf_free(&sb);
}

/* A chain c0 -> c1 -> ... -> c249999 -> c0 built without YAML, so the cycle
 * search alone is under test (it recursed once per link). */
static void test_long_dependency_chain_is_searched_without_recursion(void **state)
{
	(void)state;
	const size_t n = 250000;
	struct gw_manifest_set set;
	char name[32];
	gw_manifest_set_init(&set);
	set.v = calloc(n, sizeof(*set.v));
	set.cap = n;
	for (size_t i = 0; i < n; i++) {
		struct gw_resource *r = calloc(1, sizeof(*r));
		snprintf(name, sizeof(name), "c%zu", i);
		r->name = gw_xstrdup(name);
		r->file = gw_xstrdup("chain.yaml");
		r->line = (unsigned)i + 1;
		r->col = 1;
		r->depends_on.v = calloc(2, sizeof(char *));
		snprintf(name, sizeof(name), "c%zu", (i + 1) % n);
		r->depends_on.v[0] = gw_xstrdup(name);
		r->depends_on.n = 1;
		set.v[set.n++] = r;
	}
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 1);
	assert_int_equal(set.diags.v[0].line, n);
	assert_string_equal(set.diags.v[0].msg,
			    "spec.dependsOn[0]: dependency cycle: c0 -> c1 -> c2 -> c3 -> c4 -> c5 -> c6 -> c7 -> "
			    "(249983 more) -> c249991 -> c249992 -> c249993 -> c249994 -> c249995 -> c249996 -> "
			    "c249997 -> c249998 -> c249999 -> c0");
	gw_manifest_set_free(&set);
}

static void test_valid_kinds_parse_into_typed_fields(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	add(&set, "ok.yaml",
	    PROC "spec:\n  command: [/bin/sleep, \"10\"]\n  env: {B: \"2\", A: 1}\n  envFiles: [/etc/x.env]\n"
		 "  workingDir: /srv\n  user: nobody\n  stopSignal: SIGINT\n  stopTimeout: 1m30s\n"
		 "  limits: {openFiles: 1024, memory: 256Mi}\n  restart: on-failure\n"
		 "  healthCheck: {tcp: {address: \"127.0.0.1:80\"}, interval: 5s}\n"
		 "---\n" CONT "spec: {image: busybox, ports: [\"127.0.0.1:8081:80/udp\"], cpus: 0.5, memory: 64Mi}\n"
		 "---\n" VMH
		 "spec: {kernel: /k, initrd: /i, cmdline: console=ttyS0, cpus: 2, forwards: [\"2222:22\"]}\n");
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 3);
	/* sorted by name: c, p, v */
	struct gw_resource *c = set.v[0], *p = set.v[1], *v = set.v[2];
	assert_int_equal(p->kind, GW_KIND_PROCESS);
	assert_int_equal(p->command.n, 2);
	assert_string_equal(gw_strmap_get(&p->env, "A"), "1");
	assert_string_equal(p->env.k[0], "A");
	assert_int_equal(p->stop_timeout_ms, 90000);
	assert_int_equal(p->stop_signal, 2);
	assert_int_equal(p->limit_memory, 256 << 20);
	assert_int_equal(p->restart, GW_RESTART_ON_FAILURE);
	assert_int_equal(p->health_type, GW_CHECK_TCP);
	assert_int_equal(p->health_interval_ms, 5000);
	assert_int_equal(c->cpus_milli, 500);
	assert_int_equal(c->memory, 64 << 20);
	assert_int_equal(v->vcpus, 2);
	assert_int_equal(v->memory, 0); /* the default 512Mi is folded away */
	assert_int_equal(set.v[1]->line, 3);
	gw_manifest_set_free(&set);
}

/* External: config is free-form, handed on as canonical JSON (sorted keys,
 * scalars as strings, null as null); the timeout is not part of the hash. */
static void test_external_config_is_canonical_json(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	add(&set, "e.yaml",
	    EXT "spec:\n  plugin: files\n  timeout: 5s\n  sources: [etc/motd]\n  dependsOn: [p]\n"
		"  config:\n    z: [1, true, ~, {b: x, a: \"y\"}]\n    a: {deep: {er: 0644}}\n"
		"---\n" PROC "spec: {command: [/bin/true]}\n");
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 2);
	struct gw_resource *e = set.v[0];
	assert_int_equal(e->kind, GW_KIND_EXTERNAL);
	assert_string_equal(e->plugin, "files");
	assert_int_equal(e->plugin_timeout_ms, 5000);
	assert_string_equal(
		e->plugin_config,
		"{\"a\":{\"deep\":{\"er\":\"0644\"}},\"z\":[\"1\",\"true\",null,{\"a\":\"y\",\"b\":\"x\"}]}");
	assert_non_null(strstr(e->canonical, "\"kind\":\"External\""));
	assert_non_null(strstr(e->canonical, "\"config\":{\"a\":{\"deep\":{\"er\":\"0644\"}}"));
	assert_null(strstr(e->canonical, "timeout"));
	assert_int_equal(e->sources.n, 1);
	assert_non_null(e->source_files);
	assert_int_equal(e->source_files[0].line, 7);
	char hash[65];
	memcpy(hash, e->spec_hash, sizeof(hash));
	e->plugin_timeout_ms = 60000;
	gw_resource_finalize(e);
	assert_string_equal(hash, e->spec_hash);
	gw_manifest_set_free(&set);
}

static void test_explicit_null_and_empty_documents_are_fine(void **state)
{
	(void)state;
	struct gw_manifest_set set;
	gw_manifest_set_init(&set);
	add(&set, "n.yaml",
	    "# only a comment\n---\n---\n" PROC "spec: {command: [/bin/true], env: ~, dependsOn: null}\n");
	gw_manifest_set_finish(&set);
	assert_int_equal(set.diags.n, 0);
	assert_int_equal(set.n, 1);
	gw_manifest_set_free(&set);
}

/* The parser's result is 0 or the negative errno of its first problem, and a
 * diagnostic says what it was. */
static int parse_rc(struct gw_diags *d, const char *data, size_t len)
{
	struct gw_arena *arena = gw_arena_new();
	struct gw_ynode **docs;
	size_t ndocs;
	gw_diags_init(d);
	int rc = gw_yaml_parse(&docs, &ndocs, arena, "r.yaml", data, len, d);
	gw_arena_free(arena);
	return rc;
}

static void test_parse_returns_negative_errno_with_a_diagnostic(void **state)
{
	(void)state;
	struct gw_diags d;
	static const char deep[] =
		"a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n";

	assert_int_equal(parse_rc(&d, "a: 1\n---\nb: 2\n", 14), 0);
	assert_int_equal(d.n, 0);
	gw_diags_free(&d);

	assert_int_equal(parse_rc(&d, "a: [1\n", 6), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "YAML syntax error"));
	gw_diags_free(&d);

	assert_int_equal(parse_rc(&d, "a: 1\na: 2\n", 10), -EINVAL);
	assert_string_equal(d.v[0].msg, "duplicate key \"a\" (first at line 1)");
	gw_diags_free(&d);

	assert_int_equal(parse_rc(&d, "a: \xff\n", 5), -EINVAL);
	assert_string_equal(d.v[0].msg, "invalid UTF-8 byte 0xff");
	gw_diags_free(&d);

	assert_int_equal(parse_rc(&d, deep, sizeof(deep) - 1), -E2BIG);
	assert_string_equal(d.v[0].msg, "nesting deeper than 32 levels");
	gw_diags_free(&d);

	char *big = calloc(1, GW_MANIFEST_FILE_MAX + 1);
	assert_int_equal(parse_rc(&d, big, GW_MANIFEST_FILE_MAX + 1), -EFBIG);
	assert_int_equal(d.n, 1);
	gw_diags_free(&d);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_documents_report_position_and_message),
		cmocka_unit_test(test_escaped_nul_drops_only_its_document),
		cmocka_unit_test(test_leading_bom_is_skipped),
		cmocka_unit_test(test_nul_byte_is_refused_with_position),
		cmocka_unit_test(test_billion_laughs_fails_fast),
		cmocka_unit_test(test_oversized_file_is_refused),
		cmocka_unit_test(test_too_many_documents_refused),
		cmocka_unit_test(test_commit_bounds_on_files_and_bytes),
		cmocka_unit_test(test_all_errors_of_a_file_are_reported),
		cmocka_unit_test(test_duplicate_names_across_files),
		cmocka_unit_test(test_depends_on_unknown_and_cycles),
		cmocka_unit_test(test_ignore_follows_gitignore_rules),
		cmocka_unit_test(test_ignore_many_stars_stay_cheap),
		cmocka_unit_test(test_ignore_last_rule_decides_across_literal_and_wildcard_rules),
		cmocka_unit_test(test_ignore_160000_rules_4000_paths_stay_cheap),
		cmocka_unit_test(test_ignore_too_many_wildcard_rules_is_a_problem_at_its_line),
		cmocka_unit_test(test_limits_at_the_limit_are_fine),
		cmocka_unit_test(test_diagnostics_are_capped_per_file),
		cmocka_unit_test(test_diagnostics_are_capped_per_commit),
		cmocka_unit_test(test_repeated_depends_on_is_linear_and_capped),
		cmocka_unit_test(test_duplicate_keys_in_a_large_mapping),
		cmocka_unit_test(test_long_dependency_chain_is_searched_without_recursion),
		cmocka_unit_test(test_valid_kinds_parse_into_typed_fields),
		cmocka_unit_test(test_explicit_null_and_empty_documents_are_fine),
		cmocka_unit_test(test_external_config_is_canonical_json),
		cmocka_unit_test(test_parse_returns_negative_errno_with_a_diagnostic),
		cmocka_unit_test(test_values_put_in_the_node_name_and_labels),
		cmocka_unit_test(test_values_errors_name_the_offset_and_fill_msg_iff_failing),
		cmocka_unit_test(test_values_apply_on_the_node_and_change_the_hash),
		cmocka_unit_test(test_values_are_checked_as_the_node_gives_them),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
