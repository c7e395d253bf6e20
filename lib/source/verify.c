/* Signed commits (--verify-signatures): the commit's gpgsig header is checked
 * before any manifest of it is read. SSH signatures go to OpenSSH's
 * ssh-keygen -Y (as git itself does), OpenPGP signatures to GnuPG through
 * gpgme; no cryptography is done here. Only the commit itself is checked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <gpgme.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitward/source.h"
#include "source_int.h"

#define SIGNATURE_MAX (64u << 10) /* an armored signature, far above any real one */
#define SIGNED_DATA_MAX (16u << 20) /* the commit object without its signature */
#define KEYRING_FILE_MAX (16u << 20)
#define TOOL_OUTPUT_MAX (16u << 10)
#define TOOL_TIMEOUT_MS 10000
#define PRINCIPALS_MAX 16

static const char ssh_armor[] = "-----BEGIN SSH SIGNATURE-----";
static const char pgp_armor[] = "-----BEGIN PGP SIGNATURE-----";

/* A refusal: -EPERM and "commit 1a2b3c4d5e6f <why>". */
static int refuse(struct gw_error *err, const char *commit, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(struct gw_error *err, const char *commit, const char *fmt, ...)
{
	char what[220];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return gw_error_set(err, -EPERM, "commit %.12s %s", commit, what);
}

/* The first line of a tool's complaint, for a message. */
static void first_line(char *buf, size_t size, const struct gw_strbuf *a, const struct gw_strbuf *b)
{
	const char *s = a->len ? a->s : b->len ? b->s : "no output";
	size_t n = strcspn(s, "\r\n");
	snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), s);
}

/* ---- SSH: ssh-keygen -Y ------------------------------------------------ */

struct ssh_run {
	int status;
	struct gw_strbuf out, err;
};

static int keygen(struct ssh_run *r, char *const *argv, const char *data, size_t len, struct gw_error *err)
{
	gw_strbuf_init(&r->out);
	gw_strbuf_init(&r->err);
	int rc = gw_spawn_capture(&r->status, &r->out, &r->err, argv, data, len, TOOL_OUTPUT_MAX, TOOL_TIMEOUT_MS, err);
	if (rc < 0) {
		gw_strbuf_free(&r->out);
		gw_strbuf_free(&r->err);
		gw_error_prefix(err, "verifying an SSH signature");
	}
	return rc;
}

static int keygen_ok(const struct ssh_run *r)
{
	return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static void keygen_free(struct ssh_run *r)
{
	gw_strbuf_free(&r->out);
	gw_strbuf_free(&r->err);
}

/* "SHA256:..." from ssh-keygen's "Good "git" signature with ED25519 key SHA256:...". */
static void fingerprint(char *buf, size_t size, const struct ssh_run *r)
{
	const char *p = r->out.len ? strstr(r->out.s, "SHA256:") : NULL;
	if (!p && r->err.len)
		p = strstr(r->err.s, "SHA256:");
	if (!p) {
		snprintf(buf, size, "unknown key");
		return;
	}
	size_t n = strcspn(p, " \t\r\n");
	snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p);
}

/* The signature goes to a private temp file (ssh-keygen reads it by name),
 * the signed data to stdin. */
static int write_sigfile(char *path, size_t size, const char *dir, const char *sig, size_t len, struct gw_error *err)
{
	snprintf(path, size, "%s/verify-XXXXXX", dir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return gw_error_set(err, -errno, "%s: %s", path, strerror(errno));
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, sig + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = errno ? errno : EIO;
			close(fd);
			unlink(path);
			return gw_error_set(err, -e, "%s: %s", path, strerror(e));
		}
		off += (size_t)n;
	}
	close(fd);
	return 0;
}

static int ssh_check(const char *commit, const char *sigfile, const char *data, size_t len, const char *signers,
		     struct gw_error *err)
{
	struct ssh_run r;
	char fpr[128], why[200];
	int rc;

	/* 1. is the signature itself good, and by which key */
	char *const check[] = { "ssh-keygen", "-Y", "check-novalidate", "-n", "git", "-s", (char *)sigfile, NULL };
	if ((rc = keygen(&r, check, data, len, err)) < 0)
		return rc;
	if (!keygen_ok(&r)) {
		first_line(why, sizeof(why), &r.err, &r.out);
		keygen_free(&r);
		return refuse(err, commit, "has a bad signature (ssh-keygen: %s)", why);
	}
	fingerprint(fpr, sizeof(fpr), &r);
	keygen_free(&r);
	if (!signers)
		return refuse(err, commit, "is signed by a key that is not allowed (SSH key %s; no --allowed-signers)",
			      fpr);

	/* 2. which principals of the allowed signers hold that key */
	char *const find[] = {
		"ssh-keygen", "-Y", "find-principals", "-s", (char *)sigfile, "-f", (char *)signers, NULL
	};
	if ((rc = keygen(&r, find, NULL, 0, err)) < 0)
		return rc;
	if (!keygen_ok(&r) || !r.out.len) {
		keygen_free(&r);
		return refuse(err, commit, "is signed by a key that is not allowed (%s)", fpr);
	}

	/* 3. verify as each principal until one is accepted (namespaces and
	 * validity windows of the allowed-signers line apply) */
	struct gw_strbuf principals = r.out;
	gw_strbuf_free(&r.err);
	why[0] = '\0';
	rc = -EPERM;
	char *save = NULL;
	int tried = 0;
	for (char *p = strtok_r(principals.s, "\n", &save); p && tried < PRINCIPALS_MAX && rc == -EPERM;
	     p = strtok_r(NULL, "\n", &save)) {
		if (!*p)
			continue;
		tried++;
		char *const verify[] = { "ssh-keygen",	  "-Y", "verify",	 "-n", "git", "-I", p, "-f",
					 (char *)signers, "-s", (char *)sigfile, NULL };
		struct ssh_run v;
		int vr = keygen(&v, verify, data, len, err);
		if (vr < 0) {
			rc = vr;
		} else if (keygen_ok(&v)) {
			rc = 0;
		} else {
			first_line(why, sizeof(why), &v.err, &v.out);
		}
		if (vr == 0)
			keygen_free(&v);
	}
	gw_strbuf_free(&principals);
	if (rc == -EPERM) {
		char detail[360];
		snprintf(detail, sizeof(detail), "%s%s%s", fpr, why[0] ? ": " : "", why);
		return refuse(err, commit, "is signed by a key that is not allowed (%s)", detail);
	}
	return rc;
}

static int verify_ssh(const char *commit, const char *sig, size_t siglen, const char *data, size_t len,
		      const struct gw_verify_opts *opts, struct gw_error *err)
{
	char sigfile[4096];
	int rc;

	if (opts->allowed_signers && access(opts->allowed_signers, R_OK) < 0)
		return gw_error_set(err, -errno, "--allowed-signers %s: %s", opts->allowed_signers, strerror(errno));
	rc = write_sigfile(sigfile, sizeof(sigfile), opts->state_dir, sig, siglen, err);
	if (rc < 0)
		return rc;
	rc = ssh_check(commit, sigfile, data, len, opts->allowed_signers, err);
	unlink(sigfile);
	return rc;
}

/* ---- OpenPGP: gpgme -------------------------------------------------- */

static int gpg_fail(struct gw_error *err, gpgme_error_t e, const char *what)
{
	return gw_error_set(err, -EIO, "%s: %s", what, gpgme_strerror(e));
}

static int gpg_ctx(gpgme_ctx_t *out, const char *home, struct gw_error *err)
{
	static int initialized;
	gpgme_error_t e;

	if (!initialized) {
		gpgme_check_version(NULL);
		initialized = 1;
	}
	e = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
	if (e)
		return gpg_fail(err, e, "OpenPGP signatures need GnuPG (gpg)");
	e = gpgme_new(out);
	if (!e)
		e = gpgme_set_protocol(*out, GPGME_PROTOCOL_OpenPGP);
	if (!e)
		e = gpgme_ctx_set_engine_info(*out, GPGME_PROTOCOL_OpenPGP, NULL, home);
	if (e) {
		gpgme_release(*out);
		*out = NULL;
		return gpg_fail(err, e, "gpgme");
	}
	gpgme_set_offline(*out, 1); /* never ask a keyserver: the keyring is the allow list */
	return 0;
}

static void sha256_hex(char out[65], const char *data, size_t len)
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The private home mirrors the key file exactly: rebuilt (keyring files
 * removed, keys imported) whenever the file's digest changes, so a key taken
 * out of the file is no longer accepted. */
static int private_home(char *home, size_t size, const struct gw_verify_opts *opts, struct gw_error *err)
{
	static const char *const keyring_files[] = { "pubring.kbx", "pubring.kbx~", "pubring.gpg", "pubring.gpg~",
						     "trustdb.gpg" };
	static const char conf[] = "no-autostart\nno-auto-key-retrieve\ntrust-model always\n";
	char *keys = NULL, *stamp = NULL, digest[65], path[4200];
	size_t keys_len = 0, stamp_len = 0;
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t d = NULL;
	gpgme_error_t e;
	int rc;

	if (!opts->gnupg_home)
		return gw_error_set(err, -EINVAL, "--gpg-keyring %s: no GnuPG home to import it into",
				    opts->gpg_keyring);
	snprintf(home, size, "%s", opts->gnupg_home);
	rc = gw_file_read(&keys, &keys_len, opts->gpg_keyring, KEYRING_FILE_MAX, err);
	if (rc < 0) {
		gw_error_prefix(err, "--gpg-keyring");
		goto out;
	}
	sha256_hex(digest, keys, keys_len);
	snprintf(path, sizeof(path), "%s/gitward-keyring.sha256", home);
	if (gw_file_read(&stamp, &stamp_len, path, 100, err) == 0 && stamp_len >= 64 && !memcmp(stamp, digest, 64))
		goto out; /* rc = 0: up to date */
	rc = gw_mkdir_p(home, 0700, err);
	if (rc < 0)
		goto out;
	unlink(path);
	for (size_t i = 0; i < sizeof(keyring_files) / sizeof(keyring_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", home, keyring_files[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/gpg.conf", home);
	if ((rc = gw_file_write_atomic(path, conf, sizeof(conf) - 1, err)) < 0)
		goto out;
	if ((rc = gpg_ctx(&ctx, home, err)) < 0)
		goto out;
	e = gpgme_data_new_from_mem(&d, keys, keys_len, 0);
	if (!e)
		e = gpgme_op_import(ctx, d);
	if (e) {
		rc = gpg_fail(err, e, "importing --gpg-keyring");
		goto out;
	}
	gpgme_import_result_t res = gpgme_op_import_result(ctx);
	if (!res || res->imported + res->unchanged == 0) {
		rc = gw_error_set(err, -EINVAL, "--gpg-keyring %s: no OpenPGP public key in it", opts->gpg_keyring);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/gitward-keyring.sha256", home);
	char line[66];
	snprintf(line, sizeof(line), "%s\n", digest);
	rc = gw_file_write_atomic(path, line, 65, err);
	if (rc == 0)
		gw_log(GW_LOG_INFO, "", "OpenPGP keys of %s imported (%d key%s)", opts->gpg_keyring,
		       res->imported + res->unchanged, res->imported + res->unchanged == 1 ? "" : "s");
out:
	gpgme_data_release(d);
	gpgme_release(ctx);
	free(keys);
	free(stamp);
	return rc;
}

static int keyring_home(char *home, size_t size, const struct gw_verify_opts *opts, struct gw_error *err)
{
	struct stat st;
	if (stat(opts->gpg_keyring, &st) < 0)
		return gw_error_set(err, -errno, "--gpg-keyring %s: %s", opts->gpg_keyring, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		snprintf(home, size, "%s", opts->gpg_keyring);
		return 0;
	}
	return private_home(home, size, opts, err);
}

enum verdict { GOOD, NOT_ALLOWED, BAD };

/* One signature's verdict; err is filled unless GOOD. */
static enum verdict judge(const char *commit, gpgme_signature_t s, struct gw_error *err)
{
	char key[200];
	snprintf(key, sizeof(key), "OpenPGP key %s", s->fpr ? s->fpr : "unknown");
	switch (gpg_err_code(s->status)) {
	case GPG_ERR_NO_ERROR:
		if (s->summary & GPGME_SIGSUM_KEY_REVOKED) {
			refuse(err, commit, "is signed by a revoked key (%s)", key);
			return NOT_ALLOWED;
		}
		if (s->summary & GPGME_SIGSUM_KEY_EXPIRED) {
			refuse(err, commit, "is signed by an expired key (%s)", key);
			return NOT_ALLOWED;
		}
		if (s->summary & (GPGME_SIGSUM_SIG_EXPIRED | GPGME_SIGSUM_RED)) {
			refuse(err, commit, "has a bad signature (%s)", key);
			return BAD;
		}
		return GOOD;
	case GPG_ERR_NO_PUBKEY:
		refuse(err, commit, "is signed by a key that is not allowed (%s)", key);
		return NOT_ALLOWED;
	case GPG_ERR_KEY_EXPIRED:
		refuse(err, commit, "is signed by an expired key (%s)", key);
		return NOT_ALLOWED;
	case GPG_ERR_CERT_REVOKED:
		refuse(err, commit, "is signed by a revoked key (%s)", key);
		return NOT_ALLOWED;
	default:
		refuse(err, commit, "has a bad signature (%s: %s)", key, gpgme_strerror(s->status));
		return BAD;
	}
}

static int verify_pgp(const char *commit, const char *sig, size_t siglen, const char *data, size_t len,
		      const struct gw_verify_opts *opts, struct gw_error *err)
{
	char home[4200];
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t dsig = NULL, dtext = NULL;
	gpgme_error_t e;
	int rc;

	if (!opts->gpg_keyring)
		return refuse(err, commit,
			      "is signed by a key that is not allowed (an OpenPGP signature; no --gpg-keyring)");
	if ((rc = keyring_home(home, sizeof(home), opts, err)) < 0)
		return rc;
	if ((rc = gpg_ctx(&ctx, home, err)) < 0)
		return rc;
	e = gpgme_data_new_from_mem(&dsig, sig, siglen, 0);
	if (!e)
		e = gpgme_data_new_from_mem(&dtext, data, len, 0);
	if (e) {
		rc = gpg_fail(err, e, "gpgme");
		goto out;
	}
	e = gpgme_op_verify(ctx, dsig, dtext, NULL);
	gpgme_verify_result_t res = e ? NULL : gpgme_op_verify_result(ctx);
	if (!res || !res->signatures) {
		rc = refuse(err, commit, "has a bad signature (%s)", e ? gpgme_strerror(e) : "no OpenPGP signature");
		goto out;
	}
	/* any bad signature refuses the commit; otherwise one good one accepts it */
	int good = 0;
	struct gw_error first = { 0 };
	rc = 0;
	for (gpgme_signature_t s = res->signatures; s; s = s->next) {
		struct gw_error one;
		enum verdict v = judge(commit, s, &one);
		if (v == GOOD) {
			good = 1;
		} else if (v == BAD) {
			*err = one;
			rc = -EPERM;
			goto out;
		} else if (!first.code) {
			first = one;
		}
	}
	if (!good) {
		*err = first;
		rc = -EPERM;
	}
out:
	gpgme_data_release(dsig);
	gpgme_data_release(dtext);
	gpgme_release(ctx);
	return rc;
}

/* ---- the commit ---------------------------------------------------- */

int gw_source_verify_commit(struct gw_source *src, const char *commit, const struct gw_verify_opts *opts,
			    struct gw_error *err)
{
	git_buf sig = GIT_BUF_INIT, data = GIT_BUF_INIT;
	git_oid oid;
	int rc;

	if (git_oid_fromstr(&oid, commit) < 0)
		return gw_error_set(err, -EINVAL, "\"%s\" is not a commit id", commit);
	rc = git_commit_extract_signature(&sig, &data, gw_source__repo(src), &oid, NULL);
	if (rc == GIT_ENOTFOUND) {
		git_error_clear();
		return refuse(err, commit, "is not signed");
	}
	if (rc < 0) {
		const git_error *e = git_error_last();
		return gw_error_set(err, -EIO, "commit %.12s: %s", commit,
				    e && e->message ? e->message : "cannot read the commit");
	}
	if (sig.size > SIGNATURE_MAX || data.size > SIGNED_DATA_MAX)
		rc = refuse(err, commit, "has a bad signature (larger than gitward reads)");
	else if (sig.size >= sizeof(ssh_armor) - 1 && !memcmp(sig.ptr, ssh_armor, sizeof(ssh_armor) - 1))
		rc = verify_ssh(commit, sig.ptr, sig.size, data.ptr, data.size, opts, err);
	else if (sig.size >= sizeof(pgp_armor) - 1 && !memcmp(sig.ptr, pgp_armor, sizeof(pgp_armor) - 1))
		rc = verify_pgp(commit, sig.ptr, sig.size, data.ptr, data.size, opts, err);
	else
		rc = refuse(err, commit, "is signed in a format gitward does not verify (only SSH and OpenPGP)");
	git_buf_dispose(&sig);
	git_buf_dispose(&data);
	return rc;
}
