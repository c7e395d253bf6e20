#define _GNU_SOURCE
/* Canonical form and spec hash: stable under formatting, key order and
 * explicit defaults; sensitive to every real change. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gitward/resource.h"
#include "gitward/util.h"
#include "helpers.h"

#define P "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: web}\n"

static void expect_same_hash(const char *a, const char *b)
{
	struct gw_resource *x = parse_one(a), *y = parse_one(b);
	assert_non_null(x);
	assert_non_null(y);
	assert_string_equal(x->canonical, y->canonical);
	assert_string_equal(x->spec_hash, y->spec_hash);
	gw_resource_free(x);
	gw_resource_free(y);
}

static void expect_other_hash(const char *a, const char *b)
{
	struct gw_resource *x = parse_one(a), *y = parse_one(b);
	assert_non_null(x);
	assert_non_null(y);
	assert_string_not_equal(x->spec_hash, y->spec_hash);
	gw_resource_free(x);
	gw_resource_free(y);
}

static void test_canonical_form_is_exact(void **state)
{
	(void)state;
	struct gw_resource *r = parse_one(P "spec:\n  env: {B: \"2\", A: \"1\"}\n  command: [/bin/sleep, \"5\"]\n"
					    "  stopTimeout: 90s\n  limits: {memory: 268435456}\n"
					    "  healthCheck: {http: {url: \"http://127.0.0.1/\"}, interval: 10s}\n");
	assert_non_null(r);
	assert_string_equal(
		r->canonical,
		"{\"kind\":\"Process\",\"spec\":{\"command\":[\"/bin/sleep\",\"5\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},"
		"\"healthCheck\":{\"http\":{\"url\":\"http://127.0.0.1/\"}},\"limits\":{\"memory\":\"256Mi\"},"
		"\"stopTimeout\":\"1m30s\"}}");
	assert_int_equal(strlen(r->spec_hash), 64);
	gw_resource_free(r);
}

static void test_hash_ignores_formatting_order_and_defaults(void **state)
{
	(void)state;
	expect_same_hash(P "spec: {command: [/bin/true], env: {A: x, B: y}}\n",
			 P "spec:\n  env:\n    B: 'y'\n    A: \"x\"\n  command:\n    - /bin/true\n");
	/* explicit defaults are the same as leaving them out */
	expect_same_hash(P "spec: {command: [/bin/true]}\n",
			 P "spec: {command: [/bin/true], restart: always, stopTimeout: 10s, stopSignal: TERM}\n");
	expect_same_hash(P "spec: {command: [/bin/true], stopTimeout: 90s}\n",
			 P "spec: {command: [/bin/true], stopTimeout: 1m30s}\n");
	/* placement and metadata labels are not part of the spec */
	expect_same_hash(P "spec: {command: [/bin/true]}\n",
			 "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: web, labels: {a: b}}\n"
			 "spec: {command: [/bin/true], nodeSelector: {role: edge}}\n");
	expect_same_hash("apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d, memory: 512Mi}\n",
			 "apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d, network: user}\n");
}

static void test_hash_changes_with_the_spec(void **state)
{
	(void)state;
	expect_other_hash(P "spec: {command: [/bin/true], env: {V: \"1\"}}\n",
			  P "spec: {command: [/bin/true], env: {V: \"2\"}}\n");
	expect_other_hash(P "spec: {command: [/bin/true, a]}\n", P "spec: {command: [/bin/true, b]}\n");
	expect_other_hash(P "spec: {command: [/bin/true], restart: never}\n", P "spec: {command: [/bin/true]}\n");
	expect_other_hash(P "spec: {command: [/bin/true], envFiles: [/a]}\n",
			  P "spec: {command: [/bin/true], envFiles: [/b]}\n");
	expect_other_hash("apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d, memory: 512Mi}\n",
			  "apiVersion: gitward/v1\nkind: VM\nmetadata: {name: v}\nspec: {disk: /d, memory: 1Gi}\n");
}

/* The blob id of a secret file is part of the hash and the canonical form;
 * its content never is. */
static void test_hash_covers_the_blob_id_of_each_secret_file(void **state)
{
	(void)state;
	struct gw_resource *r = parse_one(P "spec: {command: [/bin/true], secretEnvFiles: [s/a.env.age]}\n");
	assert_non_null(r);
	assert_non_null(r->secrets);
	assert_int_equal(r->secrets[0].line, 4);
	assert_int_equal(r->secrets[0].col, 47);
	assert_string_equal(r->canonical,
			    "{\"kind\":\"Process\",\"spec\":{\"command\":[\"/bin/true\"],"
			    "\"secretEnvFiles\":[\"s/a.env.age\"]}}");
	char before[65];
	snprintf(before, sizeof(before), "%s", r->spec_hash);
	snprintf(r->secrets[0].blob, sizeof(r->secrets[0].blob), "%040d", 1);
	r->secrets[0].bytes = gw_bytes_new("TOKEN=never-hashed", 18); /* freed with r */
	r->secrets[0].cipher = gw_bytes_data(r->secrets[0].bytes);
	r->secrets[0].len = 18;
	gw_resource_finalize(r);
	assert_string_not_equal(r->spec_hash, before);
	assert_non_null(
		strstr(r->canonical, "\"secrets\":{\"s/a.env.age\":\"0000000000000000000000000000000000000001\"}"));
	assert_null(strstr(r->canonical, "never-hashed"));
	snprintf(before, sizeof(before), "%s", r->spec_hash);
	r->secrets[0].blob[39] = '2';
	gw_resource_finalize(r);
	assert_string_not_equal(r->spec_hash, before);
	gw_resource_free(r);
}

static void test_hash_is_stable_across_runs(void **state)
{
	(void)state;
	/* a fixed input has a fixed hash: a silent change here would replace
	 * every workload on upgrade */
	struct gw_resource *r = parse_one(P "spec: {command: [/bin/true]}\n");
	assert_non_null(r);
	assert_string_equal(r->canonical, "{\"kind\":\"Process\",\"spec\":{\"command\":[\"/bin/true\"]}}");
	gw_resource_free(r);
}

static void test_portmap_parse(void **state)
{
	(void)state;
	struct gw_portmap pm;
	assert_int_equal(gw_portmap_parse(&pm, "127.0.0.1:8081:80/tcp"), 0);
	assert_string_equal(pm.host_ip, "127.0.0.1");
	assert_int_equal(pm.host_port, 8081);
	assert_int_equal(pm.port, 80);
	assert_string_equal(pm.proto, "tcp");
	assert_int_equal(gw_portmap_parse(&pm, "53:53/udp"), 0);
	assert_string_equal(pm.host_ip, "");
	assert_string_equal(pm.proto, "udp");
	assert_true(gw_portmap_parse(&pm, "80") < 0);
	assert_true(gw_portmap_parse(&pm, "0:80") < 0);
	assert_true(gw_portmap_parse(&pm, ":80:80") < 0);
	assert_true(gw_portmap_parse(&pm, "1:2:3:4") < 0);
}

static void test_kind_and_signal_tables_round_trip(void **state)
{
	(void)state;
	for (int k = 0; k < GW_KIND_MAX; k++) {
		enum gw_kind back;
		assert_int_equal(gw_kind_from_string(&back, gw_kind_to_string((enum gw_kind)k)), 0);
		assert_int_equal(back, k);
	}
	int sig;
	assert_int_equal(gw_signal_from_string(&sig, "SIGQUIT"), 0);
	assert_string_equal(gw_signal_to_string(sig), "QUIT");
	assert_true(gw_signal_from_string(&sig, "NOPE") < 0);
}

/* envFiles: what each line form gives, and the first bad line named by
 * number, never by its value. */
static void test_envfile_forms_and_a_bad_line(void **state)
{
	(void)state;
	struct gw_strmap m = { 0 };
	struct gw_error err;
	char data[] = "# a comment\n"
		      "\n"
		      "  PLAIN=one\n"
		      "\tTABBED=two\r\n"
		      "export EXPORTED=three\n"
		      "DQ=\"four five\"\n"
		      "SQ='six'\n"
		      "MIXED=\"seven'\n"
		      "EMPTY=\n"
		      "ONE=\"\n"
		      "EQ=a=b\n"
		      "PLAIN=last wins";
	assert_int_equal(gw_envfile_parse(&m, "envFiles: f", data, &err), 0);
	assert_string_equal(gw_strmap_get(&m, "PLAIN"), "last wins");
	assert_string_equal(gw_strmap_get(&m, "TABBED"), "two");
	assert_string_equal(gw_strmap_get(&m, "EXPORTED"), "three");
	assert_string_equal(gw_strmap_get(&m, "DQ"), "four five");
	assert_string_equal(gw_strmap_get(&m, "SQ"), "six");
	assert_string_equal(gw_strmap_get(&m, "MIXED"), "\"seven'");
	assert_string_equal(gw_strmap_get(&m, "EMPTY"), "");
	assert_string_equal(gw_strmap_get(&m, "ONE"), "\"");
	assert_string_equal(gw_strmap_get(&m, "EQ"), "a=b");
	assert_null(gw_strmap_get(&m, "export EXPORTED"));
	gw_strmap_free(&m);
	char bad[] = "A=1\nsecret-value-without-equals\n";
	assert_int_equal(gw_envfile_parse(&m, "envFiles: f", bad, &err), -EINVAL);
	assert_string_equal(err.msg, "envFiles: f: line 2 is not KEY=VALUE");
	gw_strmap_free(&m);
	char noname[] = "=value\n";
	assert_int_equal(gw_envfile_parse(&m, "envFiles: f", noname, &err), -EINVAL);
	assert_string_equal(err.msg, "envFiles: f: line 1 is not KEY=VALUE");
	gw_strmap_free(&m);
	assert_int_equal(gw_envfile_load(&m, "/nonexistent/secret.env", &err), -ENOENT);
	assert_string_equal(err.msg, "envFiles: /nonexistent/secret.env: cannot open: No such file or directory");
	gw_strmap_free(&m);
}

/* Run argv (feeding in), return its stdout; the test fails if it does not exit 0. */
static char *run_tool(char *const *argv, const char *in, size_t inlen, size_t *outlen)
{
	struct gw_strbuf out, errout;
	struct gw_error e;
	int status = -1;
	gw_strbuf_init(&out);
	gw_strbuf_init(&errout);
	assert_int_equal(gw_spawn_capture(&status, &out, &errout, argv, in, inlen, 1u << 20, 30000, &e), 0);
	assert_int_equal(status, 0);
	gw_strbuf_free(&errout);
	if (outlen)
		*outlen = out.len;
	if (!out.s)
		return calloc(1, 1);
	return out.s;
}

/* secretEnvFiles through the real age: armored and binary files, the kinds
 * of failure told apart, a plaintext over the bound, a bad line leaving the
 * environment untouched. */
static void test_secret_env_files_through_age(void **state)
{
	(void)state;
	char dir[] = "/tmp/gw-age-XXXXXX", id[300];
	struct gw_error err;
	assert_non_null(mkdtemp(dir));
	snprintf(id, sizeof(id), "%s/id.txt", dir);
	char *const keygen[] = { "age-keygen", "-o", id, NULL };
	free(run_tool(keygen, NULL, 0, NULL));
	char *const pub[] = { "age-keygen", "-y", id, NULL };
	char *recipient = run_tool(pub, NULL, 0, NULL);
	recipient[strcspn(recipient, "\n")] = '\0';
	char *const armor[] = { "age", "-a", "-r", recipient, NULL };
	char *const binary[] = { "age", "-r", recipient, NULL };
	struct gw_strmap m = { 0 };
	size_t len;

	char *c = run_tool(armor, "A=1\nB='two'\n", 12, &len);
	assert_int_equal(gw_secret_env_load(&m, id, "s/a.env.age", c, len, &err), 0);
	assert_string_equal(gw_strmap_get(&m, "A"), "1");
	assert_string_equal(gw_strmap_get(&m, "B"), "two");
	free(c);
	gw_strmap_free(&m);

	/* a bad line: nothing of the file is taken */
	gw_strmap_set(&m, "KEEP", "k");
	c = run_tool(binary, "C=3\nnot a pair\n", 15, &len);
	assert_int_equal(gw_secret_env_load(&m, id, "s/b.env.age", c, len, &err), -EINVAL);
	assert_string_equal(err.msg, "secretEnvFiles: s/b.env.age: line 2 is not KEY=VALUE");
	assert_null(gw_strmap_get(&m, "C"));
	assert_string_equal(gw_strmap_get(&m, "KEEP"), "k");
	/* cut short: the payload does not authenticate */
	assert_int_equal(gw_secret_env_load(&m, id, "s/b.env.age", c, len - 5, &err), -EBADMSG);
	assert_string_equal(err.msg, "secretEnvFiles: s/b.env.age: age could not decrypt it (exit status 1)");
	free(c);

	static const char header[] = "age-encryption.org/v1\n-> X25519 garbage\n---\n";
	assert_int_equal(gw_secret_env_load(&m, id, "s/c.env.age", header, strlen(header), &err), -EBADMSG);
	assert_string_equal(err.msg, "secretEnvFiles: s/c.env.age: malformed age file (its header does not parse)");
	assert_int_equal(gw_secret_env_load(&m, id, "s/d.env", "A=1\n", 4, &err), -EINVAL);
	assert_string_equal(err.msg, "secretEnvFiles: s/d.env: not an age-encrypted file (age-encryption.org/v1)");

	/* over the bound once decrypted */
	size_t big = GW_SECRET_FILE_MAX + 100;
	char *plain = malloc(big);
	memset(plain, 'a', big);
	memcpy(plain, "X=", 2);
	c = run_tool(binary, plain, big, &len);
	assert_int_equal(gw_secret_env_load(&m, id, "s/e.env.age", c, len, &err), -EFBIG);
	snprintf(plain, big, "secretEnvFiles: s/e.env.age: decrypts to more than %u bytes", GW_SECRET_FILE_MAX);
	assert_string_equal(err.msg, plain);
	free(plain);

	/* an age earlier in gitward's own PATH is never run: the real one
	 * (found in the fixed PATH) decrypts, the impostor leaves no marker */
	char fake[400], marker[400], script[900];
	snprintf(fake, sizeof(fake), "%s/age", dir);
	snprintf(marker, sizeof(marker), "%s/fake-age-ran", dir);
	snprintf(script, sizeof(script), "#!/bin/sh\ntouch %s\necho X=fake\n", marker);
	FILE *fp = fopen(fake, "w");
	assert_non_null(fp);
	fputs(script, fp);
	fclose(fp);
	assert_int_equal(chmod(fake, 0755), 0);
	char *small = run_tool(binary, "Y=real\n", 7, &len);
	char *path = strdup(getenv("PATH"));
	char *front = malloc(strlen(dir) + strlen(path) + 2);
	sprintf(front, "%s:%s", dir, path);
	setenv("PATH", front, 1);
	free(front);
	struct gw_strmap only = { 0 };
	int rc = gw_secret_env_load(&only, id, "s/y.env.age", small, len, &err);
	setenv("PATH", path, 1);
	free(path);
	free(small);
	assert_int_equal(rc, 0);
	assert_int_equal(access(marker, F_OK), -1);
	assert_int_equal(only.n, 1);
	assert_string_equal(gw_strmap_get(&only, "Y"), "real");
	gw_strmap_free(&only);
	free(c);

	assert_int_equal(gw_secret_env_load(&m, NULL, "s/f.env.age", "x", 1, &err), -ENOKEY);
	assert_string_equal(err.msg, "secretEnvFiles: s/f.env.age: no age identity on this node (--age-identity FILE)");
	assert_int_equal(gw_secret_env_load(&m, "/nonexistent/id", "s/f.env.age", "x", 1, &err), -ENOENT);
	assert_string_equal(err.msg,
			    "secretEnvFiles: s/f.env.age: cannot read the age identity /nonexistent/id: No such "
			    "file or directory");
	assert_int_equal(m.n, 1);
	gw_strmap_free(&m);
	free(recipient);
	assert_int_equal(gw_rm_rf(dir), 0);
}

static void test_envfile_errors_are_negative_errno_and_name_the_line(void **state)
{
	(void)state;
	struct gw_strmap m = { 0 };
	struct gw_error err = { 0 };
	char good[] = "# c\nexport A=1\nB='two'\n", bad[] = "A=1\nnot a pair\n";

	assert_int_equal(gw_envfile_parse(&m, "envFiles: e", good, &err), 0);
	assert_string_equal(gw_strmap_get(&m, "A"), "1");
	assert_string_equal(gw_strmap_get(&m, "B"), "two");
	assert_int_equal(gw_envfile_parse(&m, "envFiles: e", bad, &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "envFiles: e: line 2 is not KEY=VALUE");
	assert_int_equal(gw_envfile_load(&m, "/nonexistent/gitward.env", &err), -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_non_null(strstr(err.msg, "envFiles: /nonexistent/gitward.env: "));
	gw_strmap_free(&m);
}

/* Fails without decrypting anything, out untouched, err naming the file and
 * the cause */
static void test_secret_env_errors_fill_err_and_leave_out_untouched(void **state)
{
	(void)state;
	struct gw_strmap m = { 0 };
	struct gw_error err = { 0 };
	const char clear[] = "TOKEN=in-clear\n";

	assert_int_equal(gw_secret_env_load(&m, NULL, "s/a.env.age", clear, sizeof(clear) - 1, &err), -ENOKEY);
	assert_int_equal(err.code, -ENOKEY);
	assert_string_equal(err.msg, "secretEnvFiles: s/a.env.age: no age identity on this node (--age-identity FILE)");
	assert_int_equal(gw_secret_env_load(&m, "/nonexistent/key", "s/a.env.age", clear, sizeof(clear) - 1, &err),
			 -ENOENT);
	assert_string_equal(err.msg,
			    "secretEnvFiles: s/a.env.age: cannot read the age identity /nonexistent/key: "
			    "No such file or directory");
	assert_int_equal(gw_secret_env_load(&m, "/dev/null", "s/a.env.age", clear, sizeof(clear) - 1, &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "secretEnvFiles: s/a.env.age: not an age-encrypted file (age-encryption.org/v1)");
	assert_int_equal(m.n, 0);
	gw_strmap_free(&m);
}

/* Every way a port mapping is refused, and the names of out-of-range values. */
static void test_portmap_refusals_and_table_edges(void **state)
{
	(void)state;
	struct gw_portmap pm;
	static const char *const bad[] = {
		"8080:80/sctp", /* protocol */
		"8080:", /* no container port */
		"123456:80", /* six digits */
		"80a:80", /* not a number */
		"70000:80", /* past 65535 */
		"8080:0", /* port 0 */
		":8080:80", /* an empty address */
		"Host!:8080:80", /* not an address */
		"1234567890123456789012345678901234567890123456789012345678901234567890:1:2", /* too long */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gw_portmap_parse(&pm, bad[i]) != -EINVAL)
			fail_msg("%s: accepted", bad[i]);
	assert_int_equal(gw_portmap_parse(&pm, "db.local:65535:1/udp"), 0);
	assert_string_equal(pm.host_ip, "db.local");
	assert_int_equal(pm.host_port, 65535);
	assert_int_equal(pm.port, 1);
	assert_string_equal(pm.proto, "udp");

	assert_string_equal(gw_kind_to_string((enum gw_kind)77), "?");
	assert_string_equal(gw_signal_to_string(12345), "?");
	int sig = 0;
	assert_int_equal(gw_signal_from_string(&sig, "winch"), 0);
	assert_string_equal(gw_signal_to_string(sig), "WINCH");
	assert_int_equal(gw_restart_from_string(NULL), GW_RESTART_ALWAYS);
	assert_int_equal(gw_restart_from_string("on-failure"), GW_RESTART_ON_FAILURE);
	assert_int_equal(gw_restart_from_string("never"), GW_RESTART_NEVER);
	assert_int_equal(gw_restart_from_string("sometimes"), GW_RESTART_ALWAYS);
	assert_string_equal(gw_restart_to_string(GW_RESTART_ON_FAILURE), "on-failure");
	assert_string_equal(gw_restart_to_string(GW_RESTART_NEVER), "never");
	assert_string_equal(gw_restart_to_string(GW_RESTART_ALWAYS), "always");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_envfile_forms_and_a_bad_line),
		cmocka_unit_test(test_secret_env_files_through_age),
		cmocka_unit_test(test_canonical_form_is_exact),
		cmocka_unit_test(test_envfile_errors_are_negative_errno_and_name_the_line),
		cmocka_unit_test(test_secret_env_errors_fill_err_and_leave_out_untouched),
		cmocka_unit_test(test_hash_ignores_formatting_order_and_defaults),
		cmocka_unit_test(test_hash_changes_with_the_spec),
		cmocka_unit_test(test_hash_covers_the_blob_id_of_each_secret_file),
		cmocka_unit_test(test_hash_is_stable_across_runs),
		cmocka_unit_test(test_portmap_parse),
		cmocka_unit_test(test_kind_and_signal_tables_round_trip),
		cmocka_unit_test(test_portmap_refusals_and_table_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
