/* The container backend's request bodies and its reading of recorded
 * Engine API replies (captured from Podman 4.3's Docker-compatible API). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "gitward/backend.h"
#include "gitward/container.h"
#include "gitward/engine.h"
#include "helpers.h"

static json_t *load(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", GW_TEST_DATA, name);
	json_t *j = json_load_file(path, JSON_DECODE_ANY, NULL);
	assert_non_null(j);
	return j;
}

static void test_create_body_carries_spec_labels_and_limits(void **state)
{
	(void)state;
	struct gw_resource *r =
		parse_one("apiVersion: gitward/v1\nkind: Container\nmetadata: {name: api}\n"
			  "spec:\n  image: localhost/api:1.4\n  command: [/bin/api, --port, \"80\"]\n"
			  "  env: {MODE: prod, SHARED: from-git}\n  envFiles: [/etc/api.env]\n"
			  "  ports: [\"127.0.0.1:8081:80/tcp\", \"53:53/udp\"]\n  volumes: [\"/srv/data:/data:ro\"]\n"
			  "  memory: 256Mi\n  cpus: 0.5\n  stopSignal: QUIT\n  stopTimeout: 1500ms\n  dependsOn: [db]\n"
			  "  restart: on-failure\n");
	assert_non_null(r);
	struct gw_strmap file_env = { 0 };
	gw_strmap_set(&file_env, "TOKEN", "secret-value");
	gw_strmap_set(&file_env, "SHARED", "from-file");
	json_t *b = gw_container_create_body(r, &file_env, "/var/lib/gitward");
	gw_strmap_free(&file_env);

	assert_string_equal(json_string_value(json_object_get(b, "Image")), "localhost/api:1.4");
	json_t *cmd = json_object_get(b, "Cmd");
	assert_int_equal(json_array_size(cmd), 3);
	assert_string_equal(json_string_value(json_array_get(cmd, 2)), "80");
	json_t *env = json_object_get(b, "Env");
	assert_int_equal(json_array_size(env), 3);
	assert_string_equal(json_string_value(json_array_get(env, 0)), "MODE=prod");
	assert_string_equal(json_string_value(json_array_get(env, 1)), "SHARED=from-git"); /* env wins */
	assert_string_equal(json_string_value(json_array_get(env, 2)), "TOKEN=secret-value");
	json_t *labels = json_object_get(b, "Labels");
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.managed")), "true");
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.name")), "api");
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.spec-hash")), r->spec_hash);
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.spec")), r->canonical);
	assert_null(strstr(r->canonical, "secret-value")); /* the spec never holds envFiles values */
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.state-dir")), "/var/lib/gitward");
	assert_string_equal(json_string_value(json_object_get(labels, "gitward.depends-on")), "db");
	assert_string_equal(json_string_value(json_object_get(b, "StopSignal")), "SIGQUIT");
	assert_int_equal(json_integer_value(json_object_get(b, "StopTimeout")), 2);
	assert_non_null(json_object_get(json_object_get(b, "ExposedPorts"), "80/tcp"));
	assert_non_null(json_object_get(json_object_get(b, "ExposedPorts"), "53/udp"));
	json_t *host = json_object_get(b, "HostConfig");
	assert_string_equal(json_string_value(json_object_get(host, "NetworkMode")), "bridge");
	json_t *bind = json_array_get(json_object_get(json_object_get(host, "PortBindings"), "80/tcp"), 0);
	assert_string_equal(json_string_value(json_object_get(bind, "HostIp")), "127.0.0.1");
	assert_string_equal(json_string_value(json_object_get(bind, "HostPort")), "8081");
	assert_string_equal(json_string_value(json_array_get(json_object_get(host, "Binds"), 0)), "/srv/data:/data:ro");
	assert_int_equal(json_integer_value(json_object_get(host, "Memory")), 256 << 20);
	assert_int_equal(json_integer_value(json_object_get(host, "NanoCpus")), 500000000);
	assert_string_equal(json_string_value(json_object_get(json_object_get(host, "RestartPolicy"), "Name")), "no");
	json_decref(b);
	gw_resource_free(r);
}

static void test_network_none_and_defaults(void **state)
{
	(void)state;
	struct gw_resource *r = parse_one("apiVersion: gitward/v1\nkind: Container\nmetadata: {name: c}\n"
					  "spec: {image: busybox, network: none}\n");
	json_t *b = gw_container_create_body(r, NULL, "/s");
	json_t *host = json_object_get(b, "HostConfig");
	assert_string_equal(json_string_value(json_object_get(host, "NetworkMode")), "none");
	assert_null(json_object_get(b, "Cmd"));
	assert_null(json_object_get(host, "Memory"));
	assert_string_equal(json_string_value(json_object_get(b, "StopSignal")), "SIGTERM");
	assert_int_equal(json_integer_value(json_object_get(b, "StopTimeout")), 10);
	char name[64];
	assert_string_equal(gw_container_name(name, sizeof(name), "c"), "gitward-c");
	json_decref(b);
	gw_resource_free(r);
}

static void test_list_keeps_only_our_containers(void **state)
{
	(void)state;
	json_t *list = load("podman-list.json");
	/* an unlabelled container and one of another gitward (state dir) */
	json_array_append_new(
		list, json_pack("{s:s, s:{s:s}, s:s}", "Id", "aaaa", "Labels", "app", "mine", "State", "running"));
	json_t *other = json_deep_copy(json_array_get(list, 0));
	json_object_set_new(json_object_get(other, "Labels"), "gitward.state-dir", json_string("/elsewhere"));
	json_array_append_new(list, other);
	/* ours by its labels, but a name that would become a path: ignored */
	json_t *bad = json_deep_copy(json_array_get(list, 0));
	json_object_set_new(json_object_get(bad, "Labels"), "gitward.name", json_string("../../etc/x"));
	json_array_append_new(list, bad);
	struct gw_observed *v;
	size_t n;
	assert_int_equal(gw_container_parse_list(&v, &n, list, "/var/lib/gitward"), 0);
	assert_int_equal(n, 2);
	int web = !strcmp(v[0].name, "web") ? 0 : 1;
	assert_string_equal(v[web].name, "web");
	assert_int_equal(v[web].kind, GW_KIND_CONTAINER);
	assert_int_equal(v[web].state, GW_STATE_RUNNING);
	assert_int_equal(strlen(v[web].spec_hash), 64);
	assert_non_null(v[web].canonical);
	char id[80];
	assert_int_equal(strlen(gw_container_id(id, sizeof(id), v[web].handle)), 64);
	for (size_t i = 0; i < n; i++)
		gw_observed_clear(&v[i]);
	free(v);
	json_decref(list);
	json_t *notalist = json_object();
	assert_true(gw_container_parse_list(&v, &n, notalist, "/x") < 0);
	json_decref(notalist);
}

static void test_inspect_gives_state_and_exit_code(void **state)
{
	(void)state;
	struct gw_observed o = { 0 };
	json_t *killed = load("podman-inspect-killed.json"), *running = load("podman-inspect-running.json");
	gw_container_apply_inspect(&o, killed);
	assert_int_equal(o.state, GW_STATE_FAILED);
	assert_string_equal(o.detail, "exited with status 137");
	gw_container_apply_inspect(&o, running);
	assert_int_equal(o.state, GW_STATE_RUNNING);
	assert_string_equal(o.detail, "");
	json_t *clean = json_pack("{s:{s:s, s:b, s:i}}", "State", "Status", "exited", "Running", 0, "ExitCode", 0);
	gw_container_apply_inspect(&o, clean);
	assert_int_equal(o.state, GW_STATE_STOPPED);
	json_t *oom = json_pack("{s:{s:s, s:b, s:b, s:i}}", "State", "Status", "exited", "Running", 0, "OOMKilled", 1,
				"ExitCode", 137);
	gw_container_apply_inspect(&o, oom);
	assert_string_equal(o.detail, "killed: out of memory");
	json_decref(killed);
	json_decref(running);
	json_decref(clean);
	json_decref(oom);
}

static void test_engine_messages(void **state)
{
	(void)state;
	json_t *nf = load("podman-inspect-404.json");
	assert_string_equal(gw_engine_message(nf),
			    "no container with name or ID \"nonexistent\" found: no such container");
	json_decref(nf);
	assert_string_equal(gw_engine_default_socket("/x.sock"), "/x.sock");
}

/* What status and the logs call a container: its short id, and nothing
 * at all without one (a log said "restart: stopping id "). */
static void test_describe_names_the_id_or_nothing(void **state)
{
	(void)state;
	char text[64] = "x";
	json_t *fields = json_object();
	gw_backend_container.describe(fields, text, sizeof(text), NULL, "{\"id\":\"0123456789abcdef0123\"}");
	assert_string_equal(text, "id 0123456789ab");
	assert_string_equal(json_string_value(json_object_get(fields, "id")), "0123456789abcdef0123");
	json_object_clear(fields);
	gw_backend_container.describe(fields, text, sizeof(text), NULL, "{\"id\":\"\"}");
	assert_string_equal(text, "");
	assert_true(json_is_null(json_object_get(fields, "id")));
	gw_backend_container.describe(fields, text, sizeof(text), NULL, NULL);
	assert_string_equal(text, "");
	json_decref(fields);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_body_carries_spec_labels_and_limits),
		cmocka_unit_test(test_network_none_and_defaults),
		cmocka_unit_test(test_list_keeps_only_our_containers),
		cmocka_unit_test(test_inspect_gives_state_and_exit_code),
		cmocka_unit_test(test_engine_messages),
		cmocka_unit_test(test_describe_names_the_id_or_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
