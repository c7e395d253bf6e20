/* secretEnvFiles: env files encrypted with age, decrypted on the node by the
 * Debian `age` program (argv, ciphertext on stdin, plaintext captured in
 * memory, bounded time and size) and parsed like envFiles. No crypto of our
 * own. The plaintext never reaches argv, an environment, a file or a message:
 * errors name the file and the cause only, never age's text (which may quote
 * a file committed in clear). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitward/resource.h"
#include "gitward/util.h"

#define AGE_TIMEOUT_MS 10000

static int is_age_file(const char *cipher, size_t len)
{
	static const char bin[] = "age-encryption.org/v1\n", armor[] = "-----BEGIN AGE ENCRYPTED FILE-----";
	return (len >= sizeof(bin) - 1 && memcmp(cipher, bin, sizeof(bin) - 1) == 0) ||
		(len >= sizeof(armor) - 1 && memcmp(cipher, armor, sizeof(armor) - 1) == 0);
}

int gw_secret_env_load(struct gw_strmap *out, const char *identity, const char *path, const char *cipher, size_t len,
		       struct gw_error *err)
{
	struct gw_strbuf plain, errout;
	struct gw_error e;
	char what[4200];
	int status = 0, rc;

	snprintf(what, sizeof(what), "secretEnvFiles: %s", path);
	if (!identity || !*identity)
		return gw_error_set(err, -ENOKEY, "%s: no age identity on this node (--age-identity FILE)", what);
	if (access(identity, R_OK) < 0) {
		int en = errno;
		return gw_error_set(err, -en, "%s: cannot read the age identity %s: %s", what, identity, strerror(en));
	}
	if (!cipher || !is_age_file(cipher, len)) {
		return gw_error_set(err, -EINVAL, "%s: not an age-encrypted file (age-encryption.org/v1)", what);
	}
	char *const argv[] = { "age", "--decrypt", "-i", (char *)identity, NULL };
	gw_strbuf_init(&plain);
	gw_strbuf_init(&errout);
	{ /* sized once: a growing buffer would leave copies of the plaintext behind */
		static const char zeros[1024];
		for (size_t n = 0; n < GW_SECRET_FILE_MAX + 2; n += sizeof(zeros))
			gw_strbuf_add(&plain, zeros, sizeof(zeros));
		plain.len = 0;
		plain.s[0] = '\0';
	}
	rc = gw_spawn_capture(&status, &plain, &errout, argv, cipher, len, GW_SECRET_FILE_MAX + 1, AGE_TIMEOUT_MS, &e);
	if (rc == -EMSGSIZE) {
		rc = gw_error_set(err, -EFBIG, "%s: decrypts to more than %u bytes", what, GW_SECRET_FILE_MAX);
	} else if (rc < 0) {
		gw_error_set(err, rc, "%s: %s", what, e.msg);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (errout.s && strstr(errout.s, "no identity matched"))
			rc = gw_error_set(err, -EBADMSG, "%s: does not decrypt with this node's age identity %s", what,
					  identity);
		else if (errout.s && strstr(errout.s, "header"))
			rc = gw_error_set(err, -EBADMSG, "%s: malformed age file (its header does not parse)", what);
		else
			rc = gw_error_set(err, -EBADMSG, "%s: age could not decrypt it (exit status %d)", what,
					  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	} else if (plain.len > GW_SECRET_FILE_MAX) {
		rc = gw_error_set(err, -EFBIG, "%s: decrypts to more than %u bytes", what, GW_SECRET_FILE_MAX);
	} else {
		/* whole or nothing: a bad line leaves out untouched */
		struct gw_strmap env = { 0 };
		rc = gw_envfile_parse(&env, what, plain.s ? plain.s : (char *)"", err);
		for (size_t i = 0; rc == 0 && i < env.n; i++)
			gw_strmap_set(out, env.k[i], env.v[i]);
		for (size_t i = 0; i < env.n; i++)
			explicit_bzero(env.v[i], strlen(env.v[i]));
		gw_strmap_free(&env);
	}
	if (plain.s)
		explicit_bzero(plain.s, plain.cap);
	gw_strbuf_free(&plain);
	gw_strbuf_free(&errout);
	return rc;
}
