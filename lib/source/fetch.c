/* The bounded fetch. libgit2 1.5 has no network timeouts, so the fetch runs
 * in a child process that reports every sign of progress on a pipe; the
 * parent ends it when the server stays silent too long. The child is a fresh
 * process (`gitward __fetch`, this binary again through /proc/self/exe, its
 * job as JSON on stdin), never a bare fork of the multi-threaded agent:
 * libgit2 allocates, and after a fork only the forking thread exists, so a
 * lock another thread held (the allocator's) would never be released. The child also
 * carries the trust decisions (TLS: system store or --ca-file; SSH: a
 * known_hosts file, checked here with libssh2 so an unknown and a changed
 * key get different answers) and the credentials, which never leave it.
 * Whatever libgit2 allocates while talking to the remote goes away with the
 * child, so a long-running agent does not grow with it.
 *
 * Child -> parent, one line each: "c" connected, "p" progress,
 * "e<kind> <message>" the error (kind: c corrupt cache, n unreachable,
 * f fetch failed, x refused, message complete). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <libssh2.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitward/prof.h"
#include "gitward/spawn.h"
#include "source_int.h"

extern char **environ;

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR "/etc/ssl/certs"
#define SECRET_MAX 4096

struct child {
	const struct gw_source *src;
	int fd;
	int64_t last_note;
	char host[256];
	int port;
	char *password; /* from the URL, the file or the environment */
	const char *username;
	int userpass_tries, key_tries;
	char key_used[PATH_MAX];
	char reason[1024]; /* set by a callback that refused */
};

/* ---- the child ---------------------------------------------------------- */

static void say(struct child *c, const char *line)
{
	size_t n = strlen(line), off = 0;
	while (off < n) {
		ssize_t w = write(c->fd, line + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

static void note(struct child *c, int connected)
{
	int64_t now = gw_now_ms();
	if (connected) {
		say(c, "c\n");
	} else if (now - c->last_note >= 100) {
		say(c, "p\n");
	} else {
		return;
	}
	c->last_note = now;
}

static void refuse(struct child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct child *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	git_error_set_str(GIT_ERROR_CALLBACK, c->reason);
}

/* host and port of the URL, for the known_hosts lookup (libgit2 hands the
 * callback the host only) */
static void parse_host(struct child *c, const char *url)
{
	const char *h = strstr(url, "://");
	int scp = 0;
	c->port = 22;
	if (h) {
		h += 3;
	} else {
		h = url;
		scp = 1;
	}
	size_t alen = scp ? strcspn(h, ":") : strcspn(h, "/");
	const char *at = memchr(h, '@', alen);
	if (at) {
		alen -= (size_t)(at + 1 - h);
		h = at + 1;
	}
	size_t hlen = alen;
	if (h[0] == '[') { /* [v6]:port */
		const char *end = memchr(h, ']', alen);
		hlen = end ? (size_t)(end - h - 1) : alen;
		snprintf(c->host, sizeof(c->host), "%.*s", (int)hlen, h + 1);
		if (end && end + 1 < h + alen && end[1] == ':')
			c->port = atoi(end + 2);
		return;
	}
	const char *colon = scp ? NULL : memchr(h, ':', alen);
	if (colon) {
		hlen = (size_t)(colon - h);
		c->port = atoi(colon + 1);
	}
	snprintf(c->host, sizeof(c->host), "%.*s", (int)hlen, h);
}

static const char *known_hosts_file(const struct child *c, char *buf, size_t size)
{
	if (c->src->opts.known_hosts)
		return c->src->opts.known_hosts;
	const char *home = getenv("HOME");
	snprintf(buf, size, "%s/.ssh/known_hosts", home && *home ? home : "/root");
	return buf;
}

static int ssh_key_type(git_cert_ssh_raw_type_t t)
{
	switch (t) {
	case GIT_CERT_SSH_RAW_TYPE_RSA:
		return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case GIT_CERT_SSH_RAW_TYPE_DSS:
		return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case GIT_CERT_SSH_RAW_TYPE_KEY_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default:
		return -ENOTSUP;
	}
}

static int check_host_key(struct child *c, const git_cert_hostkey *cert)
{
	char buf[PATH_MAX], name[300];
	const char *file = known_hosts_file(c, buf, sizeof(buf));
	struct libssh2_knownhost *entry = NULL;
	int type, rc;

	if (c->port == 22)
		snprintf(name, sizeof(name), "%s", c->host);
	else
		snprintf(name, sizeof(name), "[%s]:%d", c->host, c->port);
	if (!(cert->type & GIT_CERT_SSH_RAW) || (type = ssh_key_type(cert->raw_type)) < 0) {
		refuse(c, "the host key of %s is of a type gitward cannot check against %s", name, file);
		return GIT_ECERTIFICATE;
	}
	LIBSSH2_SESSION *session = libssh2_session_init();
	LIBSSH2_KNOWNHOSTS *kh = session ? libssh2_knownhost_init(session) : NULL;
	if (!kh) {
		if (session)
			libssh2_session_free(session);
		refuse(c, "cannot check the host key of %s: out of memory", name);
		return GIT_ECERTIFICATE;
	}
	int loaded = access(file, R_OK) == 0 ? libssh2_knownhost_readfile(kh, file, LIBSSH2_KNOWNHOST_FILE_OPENSSH) : 0;
	rc = libssh2_knownhost_checkp(kh, c->host, c->port, cert->hostkey, cert->hostkey_len,
				      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | type, &entry);
	libssh2_knownhost_free(kh);
	libssh2_session_free(session);
	if (loaded < 0) {
		refuse(c, "%s: not a known_hosts file gitward can read", file);
		return GIT_ECERTIFICATE;
	}
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		return 0;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		refuse(c,
		       "the host key of %s has CHANGED: it is not the key recorded in %s. Someone may be "
		       "intercepting the connection; if the server's key really changed, remove the old entry "
		       "(ssh-keygen -R '%s' -f %s) and add the new one",
		       name, file, name, file);
		return GIT_ECERTIFICATE;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		refuse(c,
		       "the host key of %s is not in %s%s; if this is the right server, trust it with: "
		       "ssh-keyscan -p %d %s >> %s",
		       name, file, access(file, F_OK) == 0 ? "" : " (no such file)", c->port, c->host, file);
		return GIT_ECERTIFICATE;
	default:
		refuse(c, "cannot check the host key of %s against %s", name, file);
		return GIT_ECERTIFICATE;
	}
}

/* Why a server certificate was refused, for the message only: libgit2 (on
 * mbedTLS) says no more than "invalid". OpenSSL reads the certificate; the
 * decision stays libgit2's. */
static void tls_diagnose(char *out, size_t size, const git_cert_x509 *x, const char *host, const char *ca_file)
{
	const unsigned char *p = x->data;
	X509 *crt = d2i_X509(NULL, &p, (long)x->len);
	unsigned char addr[16];
	int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

	if (!crt)
		return;
	int name_ok = is_ip ? X509_check_ip_asc(crt, host, 0) == 1 : X509_check_host(crt, host, 0, 0, NULL) == 1;
	if (X509_cmp_current_time(X509_get0_notAfter(crt)) < 0) {
		snprintf(out, size, ": it has expired");
	} else if (X509_cmp_current_time(X509_get0_notBefore(crt)) > 0) {
		snprintf(out, size, ": it is not valid yet");
	} else if (!name_ok) {
		snprintf(out, size, ": it is not issued for %s", host);
	} else {
		X509_STORE *store = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();
		const char *file = ca_file ? ca_file : SYSTEM_CA_FILE, *dir = ca_file ? NULL : SYSTEM_CA_DIR;
		int ok = store && ctx && X509_STORE_load_locations(store, file, dir) == 1 &&
			X509_STORE_CTX_init(ctx, store, crt, NULL) == 1 && X509_verify_cert(ctx) == 1;
		if (!ok && ctx)
			snprintf(out, size, ": %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		else if (ok && is_ip)
			snprintf(out, size,
				 ": it names %s as an IP address only, which mbedTLS (under Debian's libgit2) cannot "
				 "match; add DNS:%s to its subjectAltName or use a host name",
				 host, host);
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(store);
	}
	X509_free(crt);
}

static int certificate_check(git_cert *cert, int valid, const char *host, void *payload)
{
	struct child *c = payload;
	note(c, 1);
	if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2)
		return check_host_key(c, (const git_cert_hostkey *)cert);
	if (valid)
		return 0;
	if (c->src->opts.insecure_skip_tls_verify)
		return 0;
	char why[400] = "";
	if (cert->cert_type == GIT_CERT_X509)
		tls_diagnose(why, sizeof(why), (const git_cert_x509 *)cert, host, c->src->opts.ca_file);
	if (c->src->opts.ca_file)
		refuse(c,
		       "the TLS certificate of %s does not verify against --ca-file %s%s; give the CA that signed "
		       "the server's certificate",
		       host, c->src->opts.ca_file, why);
	else
		refuse(c,
		       "the TLS certificate of %s does not verify against the system CA store (%s)%s; if the "
		       "server uses a private CA, pass --ca-file with that CA's certificate (PEM)",
		       host, SYSTEM_CA_DIR, why);
	return GIT_ECERTIFICATE;
}

static const char *user_for(const struct child *c, const char *from_url)
{
	if (from_url && *from_url)
		return from_url;
	if (c->username)
		return c->username;
	return "git";
}

/* The user as messages show it: one from the URL is a credential (a token
 * given as the user), never printed. */
static const char *user_shown(const struct child *c, const char *from_url)
{
	return from_url && *from_url ? "***" : user_for(c, from_url);
}

static int ssh_key(git_credential **out, struct child *c, const char *user, const char *priv)
{
	char pub[PATH_MAX];
	if (access(priv, R_OK) < 0) {
		refuse(c, "ssh key %s: %s", priv, strerror(errno));
		return GIT_EUSER;
	}
	snprintf(c->key_used, sizeof(c->key_used), "%s", priv);
	snprintf(pub, sizeof(pub), "%s.pub", priv);
	return git_credential_ssh_key_new(out, user, access(pub, R_OK) == 0 ? pub : NULL, priv, NULL);
}

static int read_password(struct child *c)
{
	const struct gw_source_opts *o = &c->src->opts;
	struct gw_error err;
	if (o->password) {
		c->password = gw_xstrdup(o->password);
	} else if (o->password_file) {
		char *data;
		size_t len;
		if (gw_file_read(&data, &len, o->password_file, SECRET_MAX, &err) < 0) {
			refuse(c, "--git-password-file %s: %s", o->password_file, err.msg);
			return err.code;
		}
		while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
			data[--len] = '\0';
		if (memchr(data, '\0', len) || memchr(data, '\n', len)) {
			gw_secure_free(data);
			refuse(c, "--git-password-file %s: expected one line", o->password_file);
			return -EINVAL;
		}
		c->password = data;
	} else if (getenv("GITWARD_GIT_PASSWORD")) {
		c->password = gw_xstrdup(getenv("GITWARD_GIT_PASSWORD"));
	}
	return 0;
}

static int credentials(git_credential **out, const char *url, const char *username_from_url, unsigned int allowed,
		       void *payload)
{
	(void)url;
	struct child *c = payload;
	const char *user = user_for(c, username_from_url);

	note(c, 1);
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user);
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		/* the configured key alone, or else: ssh-agent, then ~/.ssh/id_* */
		const char *key = c->src->opts.ssh_key ? c->src->opts.ssh_key : getenv("GITWARD_SSH_KEY");
		int n = c->key_tries++;
		if (key && *key) {
			if (n == 0)
				return ssh_key(out, c, user, key);
			refuse(c, "authentication failed: %s@%s refused the ssh key %s",
			       user_shown(c, username_from_url), c->host, key);
			return GIT_EUSER;
		}
		const char *agent = getenv("SSH_AUTH_SOCK");
		if (n == 0 && agent && *agent)
			return git_credential_ssh_key_from_agent(out, user);
		const char *home = getenv("HOME");
		static const char *const names[] = { ".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa" };
		for (int i = 0, seen = agent && *agent ? 1 : 0; home && i < 3; i++) {
			char priv[PATH_MAX];
			snprintf(priv, sizeof(priv), "%s/%s", home, names[i]);
			if (access(priv, R_OK) == 0 && seen++ == n)
				return ssh_key(out, c, user, priv);
		}
		refuse(c,
		       "authentication failed: %s@%s accepted none of the ssh keys tried (ssh-agent, ~/.ssh/id_*); "
		       "give --ssh-key FILE",
		       user_shown(c, username_from_url), c->host);
		return GIT_EUSER;
	}
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
		if (c->userpass_tries == 0 && read_password(c) < 0)
			return GIT_EUSER;
		const char *pw = c->password;
		if (!pw && username_from_url && *username_from_url)
			pw = ""; /* https://TOKEN@host: the token is the user, as GitHub and GitLab take it */
		if (!pw) {
			refuse(c,
			       "authentication required: the server asks for a user name and password; give "
			       "--git-username and --git-password-file");
			return GIT_EUSER;
		}
		if (c->userpass_tries++ > 0) {
			refuse(c, "authentication failed for user %s: the server refused the password or token",
			       user_shown(c, username_from_url));
			return GIT_EUSER;
		}
		return git_credential_userpass_plaintext_new(out, user, pw);
	}
	refuse(c, "authentication failed: the server asks for a kind of credentials gitward cannot give");
	return GIT_EUSER;
}

static int on_sideband(const char *str, int len, void *payload)
{
	(void)str;
	(void)len;
	note(payload, 0);
	return 0;
}

static int on_transfer(const git_indexer_progress *stats, void *payload)
{
	(void)stats;
	note(payload, 0);
	return 0;
}

static int on_tip(const char *refname, const git_oid *a, const git_oid *b, void *payload)
{
	(void)refname;
	(void)a;
	(void)b;
	note(payload, 0);
	return 0;
}

static void drop_dangling_head(git_repository *repo)
{
	git_reference *ref = NULL, *resolved = NULL;
	if (git_reference_lookup(&ref, repo, "refs/remotes/origin/HEAD") == 0 &&
	    git_reference_resolve(&resolved, ref) < 0)
		git_reference_remove(repo, "refs/remotes/origin/HEAD");
	git_reference_free(resolved);
	git_reference_free(ref);
	git_error_clear();
}

/* refs/remotes/origin/HEAD -> the remote's default branch, once that branch
 * was fetched: a dangling symref makes libgit2's negotiation (which walks
 * local refs for "have" lines) fail on the smart HTTP and SSH transports. */
static int record_default_branch(git_repository *repo, const char *head)
{
	git_reference *ref = NULL;
	char target[512];

	if (!head || strncmp(head, "refs/heads/", 11) != 0) {
		git_reference_remove(repo, "refs/remotes/origin/HEAD");
		git_error_clear();
		return 0;
	}
	snprintf(target, sizeof(target), "refs/remotes/origin/%s", head + 11);
	if (git_reference_lookup(&ref, repo, target) < 0) {
		git_error_clear();
		git_reference_remove(repo, "refs/remotes/origin/HEAD");
		git_error_clear();
		return 0;
	}
	git_reference_free(ref);
	ref = NULL;
	if (git_reference_symbolic_create(&ref, repo, "refs/remotes/origin/HEAD", target, 1,
					  "gitward: remote default branch") < 0)
		return -EIO;
	git_reference_free(ref);
	return 0;
}

static void trust_store(struct child *c)
{
	const char *file = c->src->opts.ca_file;
	const char *dir = NULL;
	if (!file) {
		file = getenv("SSL_CERT_FILE");
		dir = getenv("SSL_CERT_DIR");
		if (!file && !dir) {
			file = access(SYSTEM_CA_FILE, R_OK) == 0 ? SYSTEM_CA_FILE : NULL;
			dir = SYSTEM_CA_DIR;
		}
	}
	git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, file, dir);
}

/* The error line, secrets masked. */
static void fail(struct child *c, char kind, const char *what)
{
	const git_error *e = git_error_last();
	char msg[1400];
	if (c->reason[0])
		snprintf(msg, sizeof(msg), "e%c %s", kind, c->reason);
	else
		snprintf(msg, sizeof(msg), "e%c %s: %s", kind, what, e && e->message ? e->message : "unknown error");
	gw_str_redact(msg, c->password);
	gw_str_redact(msg, c->src->opts.password);
	gw_str_redact_urls(msg); /* libgit2 and libcurl quote the URL */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	strcat(msg, "\n");
	say(c, msg);
}

static int child_main(struct child *c, const char *path, int fresh)
{
	const struct gw_source *src = c->src;
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
	git_remote_callbacks cbs = GIT_REMOTE_CALLBACKS_INIT;
	git_buf head = GIT_BUF_INIT;
	int rc;

	parse_host(c, src->url);
	c->username = src->opts.username ? src->opts.username : getenv("GITWARD_GIT_USERNAME");
	if (src->opts.ca_file && !strncmp(src->url, "https://", 8) && access(src->opts.ca_file, R_OK) < 0) {
		refuse(c, "--ca-file %s: %s", src->opts.ca_file, strerror(errno));
		fail(c, 'x', "");
		return 1;
	}
	/* the CA store is parsed for HTTPS only: reading every certificate of
	 * /etc/ssl/certs was most of an idle pass's CPU over plain HTTP */
	if (!strncmp(src->url, "https://", 8))
		trust_store(c);
	rc = fresh ? git_repository_init(&repo, path, 1) : git_repository_open_bare(&repo, path);
	if (rc < 0) {
		fail(c, fresh ? 'f' : 'c', fresh ? "cannot create the git cache" : "the git cache is corrupt");
		return 1;
	}
	/* the cache's config names the remote without user info or query (a
	 * token in either is a credential, not written to disk); this fetch
	 * connects to the URL as given */
	char *stored = gw_url_without_credentials(src->url);
	rc = git_remote_lookup(&remote, repo, "origin");
	if (rc == GIT_ENOTFOUND) {
		rc = git_remote_create_with_fetchspec(&remote, repo, "origin", stored,
						      "+refs/heads/*:refs/remotes/origin/*");
		if (rc == 0)
			rc = git_remote_add_fetch(repo, "origin", "+refs/tags/*:refs/tags/*");
	} else if (rc == 0 && strcmp(git_remote_url(remote), stored) != 0) {
		rc = git_remote_set_url(repo, "origin", stored);
		git_remote_free(remote);
		remote = NULL;
		if (rc == 0)
			rc = git_remote_lookup(&remote, repo, "origin");
	}
	if (rc == 0 && strcmp(stored, src->url) != 0)
		rc = git_remote_set_instance_url(remote, src->url);
	if (rc < 0) {
		fail(c, 'c', "cannot configure the remote");
		return 1;
	}
	cbs.credentials = credentials;
	cbs.certificate_check = certificate_check;
	cbs.sideband_progress = on_sideband;
	cbs.transfer_progress = on_transfer;
	cbs.update_tips = on_tip;
	cbs.payload = c;
	rc = git_remote_connect(remote, GIT_DIRECTION_FETCH, &cbs, NULL, NULL);
	if (rc < 0) {
		fail(c, !c->reason[0] && gw_source__cache_fault() ? 'c' : 'n', "cannot reach the remote");
		return 1;
	}
	note(c, 1);
	/* one connection for the default branch and the fetch itself: one ssh
	 * handshake per pass */
	git_remote_default_branch(&head, remote);
	drop_dangling_head(repo);
	opts.callbacks = cbs;
	opts.prune = GIT_FETCH_PRUNE;
	opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
	rc = git_remote_download(remote, NULL, &opts);
	if (rc == 0)
		rc = git_remote_update_tips(remote, &cbs, 0, GIT_REMOTE_DOWNLOAD_TAGS_ALL, "gitward fetch");
	if (rc == 0)
		rc = git_remote_prune(remote, &cbs);
	if (rc == 0)
		rc = record_default_branch(repo, head.ptr);
	if (rc < 0)
		fail(c, !c->reason[0] && gw_source__cache_fault() ? 'c' : 'f', "fetch failed");
	/* no frees: the process ends here and the kernel takes it all back */
	return rc < 0 ? 1 : 0;
}

#define JOB_MAX (1u << 20)

static const char *job_str(const json_t *job, const char *key)
{
	return json_string_value(json_object_get(job, key));
}

/* The job from stdin: the source and where to fetch it. */
static json_t *read_job(void)
{
	struct gw_strbuf sb;
	char buf[4096];
	gw_strbuf_init(&sb);
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || sb.len + (size_t)n > JOB_MAX)
			break;
		gw_strbuf_add(&sb, buf, (size_t)n);
	}
	json_t *job = sb.s ? json_loads(sb.s, 0, NULL) : NULL;
	if (sb.s)
		explicit_bzero(sb.s, sb.len); /* it holds the password */
	gw_strbuf_free(&sb);
	return job;
}

int gw_source_fetch_main(void)
{
	struct gw_source src = { 0 };
	struct child c = { .src = &src, .fd = 3 };

	signal(SIGPIPE, SIG_IGN);
	json_t *job = read_job();
	if (!job || !job_str(job, "url") || !job_str(job, "path")) {
		say(&c, "ef the fetch job is unreadable\n");
		GW_COVERAGE_DUMP();
		_exit(1);
	}
	src.url = (char *)job_str(job, "url");
	src.opts.ca_file = job_str(job, "ca_file");
	src.opts.insecure_skip_tls_verify = json_is_true(json_object_get(job, "insecure_skip_tls_verify"));
	src.opts.known_hosts = job_str(job, "known_hosts");
	src.opts.ssh_key = job_str(job, "ssh_key");
	src.opts.username = job_str(job, "username");
	src.opts.password_file = job_str(job, "password_file");
	src.opts.password = job_str(job, "password");
	git_libgit2_init();
	/* the cache is ours alone; skip the ownership check of safe.directory */
	git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
	int code = child_main(&c, job_str(job, "path"), json_is_true(json_object_get(job, "fresh")));
	GW_COVERAGE_DUMP();
	_exit(code); /* no frees, no exit handlers: the kernel takes it all back */
}

/* ---- the parent --------------------------------------------------------- */

static void job_set(json_t *job, const char *key, const char *value)
{
	if (value)
		json_object_set_new(job, key, json_string(value));
}

static char *job_json(const struct gw_source *src, const char *path, int fresh)
{
	const struct gw_source_opts *o = &src->opts;
	json_t *job = json_object();
	job_set(job, "url", src->url);
	job_set(job, "path", path);
	json_object_set_new(job, "fresh", json_boolean(fresh));
	job_set(job, "ca_file", o->ca_file);
	json_object_set_new(job, "insecure_skip_tls_verify", json_boolean(o->insecure_skip_tls_verify));
	job_set(job, "known_hosts", o->known_hosts);
	job_set(job, "ssh_key", o->ssh_key);
	job_set(job, "username", o->username);
	job_set(job, "password_file", o->password_file);
	job_set(job, "password", o->password);
	char *s = json_dumps(job, JSON_COMPACT);
	json_decref(job);
	return s;
}

/* Start `gitward __fetch` with the job on its stdin (a socket: a child gone
 * early gives EPIPE, never SIGPIPE) and its reports on fd 3 = report. It
 * keeps gitward's environment (credentials, HOME, SSL_CERT_*, SSH_AUTH_SOCK),
 * stdout, stderr and process group. */
static int start_child(pid_t *out, int report, const struct gw_source *src, const char *path, int fresh,
		       struct gw_error *err)
{
	static char *const argv[] = { "gitward", "__fetch", NULL };
	int job[2];
	struct gw_error serr;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, job) < 0)
		return gw_error_set(err, -errno, "pipe: %s", strerror(errno));
	struct gw_spawn s = {
		.path = "/proc/self/exe",
		.argv = argv,
		.envp = environ,
		.fds = { job[1], GW_SPAWN_FD_KEEP, GW_SPAWN_FD_KEEP, report },
		.nfds = 4,
		.group = GW_SPAWN_GROUP_SAME,
	};
	int rc = gw_spawn_start(out, &s, &serr);
	close(job[1]);
	if (rc < 0) {
		close(job[0]);
		return gw_error_set(err, rc, "cannot start the fetch process: %s", serr.msg);
	}
	char *payload = job_json(src, path, fresh);
	size_t len = strlen(payload), off = 0;
	while (off < len) {
		ssize_t n = send(job[0], payload + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the child is gone: its exit status tells */
		off += (size_t)n;
	}
	explicit_bzero(payload, len);
	free(payload);
	close(job[0]);
	return 0;
}

static time_t fetch_started;

/* Lock files and pack temporaries a killed fetch left in the cache. Only
 * ours: the state dir's cache is written by the holder of the state lock
 * alone (a read-only source fetches into its private repository), so
 * whatever is newer than this fetch there is this fetch's. */
static int drop_leftover(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *base = path + ftw->base;
	size_t n = strlen(base);
	if (flag == FTW_F && st->st_mtime >= fetch_started - 1 &&
	    ((n > 5 && !strcmp(base + n - 5, ".lock")) || !strncmp(base, "pack_git2_", 10) ||
	     !strncmp(base, "tmp_", 4)))
		unlink(path);
	return 0;
}

/* "127.0.0.1:8080/git/x.git" has no scheme: git reads it scp-like, as SSH
 * to 127.0.0.1 and the path "8080/git/x.git". A port where the path starts
 * means a URL without its scheme: said with the failure, "" otherwise. */
static const char *scp_hint(char *buf, size_t size, const char *url)
{
	const char *colon = strchr(url, ':');
	buf[0] = '\0';
	if (strstr(url, "://") || gw_source__local_path(url) || !colon)
		return buf;
	size_t digits = strspn(colon + 1, "0123456789");
	if (digits == 0 || (colon[1 + digits] != '/' && colon[1 + digits] != '\0'))
		return buf;
	const char *host = memchr(url, '@', (size_t)(colon - url));
	host = host ? host + 1 : url;
	snprintf(buf, size,
		 " (no scheme: read as scp-like SSH to %.*s, path \"%s\"; give http://%s for HTTP, or ssh://%s for SSH "
		 "on that port)",
		 (int)(colon - host), host, colon + 1, host, url);
	return buf;
}

static int parent_fail(struct gw_error *err, const struct gw_source *src, const char *line)
{
	char kind = line[1], hint[600];
	const char *msg = line[2] ? line + 3 : "unknown error";
	scp_hint(hint, sizeof(hint), src->url);
	switch (kind) {
	case 'c':
		gw_error_set(err, -EIO, "%s", msg);
		return gw_error_prefix(err, "%s (remove it and gitward clones again)", gw_source__cache_name(src));
	case 'n':
		gw_error_set(err, -EHOSTUNREACH, "%s%s", msg, hint);
		return gw_error_prefix(err, "%s", src->url);
	case 'x':
		gw_error_set(err, -EACCES, "%s%s", msg, hint);
		return gw_error_prefix(err, "%s", src->url);
	default:
		gw_error_set(err, -EIO, "%s%s", msg, hint);
		return gw_error_prefix(err, "%s", src->url);
	}
}

/* A local repository is checked here, before the child runs: libgit2 reports
 * a missing folder as an unsupported URL and a folder that is not a
 * repository like a broken cache. */
static int check_local(const struct gw_source *src, struct gw_error *err)
{
	const char *path = gw_source__local_path(src->url);
	struct stat st;

	if (!path)
		return 0;
	if (stat(path, &st) < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			return gw_error_set(
				err, -ENOENT,
				"%s: no such directory (--repo takes a URL or the path of a Git repository)", src->url);
		return gw_error_set(err, -e, "%s: %s", src->url, strerror(e));
	}
	if (!S_ISDIR(st.st_mode))
		return gw_error_set(err, -ENOTDIR, "%s is not a directory (--repo takes a URL or a Git repository)",
				    src->url);
	int rc = git_repository_open_ext(NULL, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (rc == GIT_ENOTFOUND)
		return gw_error_set(err, -ENOENT, "%s is not a Git repository (no .git or bare layout)", src->url);
	if (rc < 0) {
		const git_error *e = git_error_last();
		return gw_error_set(err, -EIO, "%s: cannot open the repository: %s", src->url,
				    e && e->message ? e->message : "unknown libgit2 error");
	}
	return 0;
}

/* ---- a local repository the cache already mirrors: no fetch process ---- */

/* Does every ref of remote under prefix have its copy in cache (prefix
 * renamed to into) with the same target? Counts them in *n; false on a
 * symbolic ref or any error. */
static bool refs_copied(size_t *n, git_repository *remote, git_repository *cache, const char *prefix, const char *into)
{
	git_reference_iterator *it = NULL;
	git_reference *ref;
	char glob[64], name[1024];
	bool same = true;
	size_t plen = strlen(prefix);

	snprintf(glob, sizeof(glob), "%s*", prefix);
	if (git_reference_iterator_glob_new(&it, remote, glob) < 0)
		return false;
	while (same && git_reference_next(&ref, it) == 0) {
		git_reference *copy = NULL;
		const git_oid *want = git_reference_target(ref);
		snprintf(name, sizeof(name), "%s%s", into, git_reference_name(ref) + plen);
		same = want && git_reference_lookup(&copy, cache, name) == 0 && git_reference_target(copy) &&
			git_oid_equal(want, git_reference_target(copy));
		git_reference_free(copy);
		git_reference_free(ref);
		(*n)++;
	}
	git_reference_iterator_free(it);
	return same;
}

/* How many refs of repo match glob, skip excepted; SIZE_MAX on an error. */
static size_t refs_count(git_repository *repo, const char *glob, const char *skip)
{
	git_reference_iterator *it = NULL;
	git_reference *ref;
	size_t n = 0;
	int rc;

	if (git_reference_iterator_glob_new(&it, repo, glob) < 0)
		return SIZE_MAX;
	while ((rc = git_reference_next(&ref, it)) == 0) {
		n += strcmp(git_reference_name(ref), skip) != 0;
		git_reference_free(ref);
	}
	git_reference_iterator_free(it);
	return rc == GIT_ITEROVER ? n : SIZE_MAX;
}

/* Is refs/remotes/origin/HEAD what the fetch would leave: the remote's
 * default branch when the cache has it, else absent? False when the
 * remote's HEAD is detached (the fetch guesses then). */
static bool head_recorded(git_repository *remote, git_repository *cache)
{
	git_reference *head = NULL, *ours = NULL, *branch = NULL;
	char want[512] = "";
	bool same = false;

	if (git_reference_lookup(&head, remote, "HEAD") < 0 || !git_reference_symbolic_target(head))
		goto out;
	const char *t = git_reference_symbolic_target(head);
	if (!strncmp(t, "refs/heads/", 11)) {
		snprintf(want, sizeof(want), "refs/remotes/origin/%s", t + 11);
		if (git_reference_lookup(&branch, cache, want) < 0)
			want[0] = '\0';
	}
	int rc = git_reference_lookup(&ours, cache, "refs/remotes/origin/HEAD");
	if (!want[0])
		same = rc == GIT_ENOTFOUND;
	else
		same = rc == 0 && git_reference_symbolic_target(ours) &&
			!strcmp(git_reference_symbolic_target(ours), want);
out:
	git_reference_free(head);
	git_reference_free(ours);
	git_reference_free(branch);
	return same;
}

/* The remote as the cache's configuration names it, read entry by entry:
 * git_remote_lookup would match url.*.insteadOf with a regular expression,
 * and libgit2 1.5 with PCRE2 leaks 20 KiB per match, every pass of an agent. */
struct origin_cfg {
	char *url;
	char *fetch[3];
	size_t nfetch;
	bool rewrites; /* url.<base>.insteadOf: the fetch would go elsewhere */
};

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n >= t && !strcasecmp(s + n - t, tail);
}

static int origin_entry(const git_config_entry *e, void *ud)
{
	struct origin_cfg *o = ud;
	if (!strcmp(e->name, "remote.origin.url")) {
		free(o->url);
		o->url = gw_xstrdup(e->value);
	} else if (!strcmp(e->name, "remote.origin.fetch") && o->nfetch < 3) {
		o->fetch[o->nfetch++] = gw_xstrdup(e->value);
	} else if (!strncasecmp(e->name, "url.", 4) &&
		   (ends_with(e->name, ".insteadof") || ends_with(e->name, ".pushinsteadof"))) {
		o->rewrites = true;
	}
	return 0;
}

/* Is the cache's remote the one the fetch sets up: src->url (as stored),
 * unrewritten, with the two refspecs? A dry-run's private repository has
 * none yet (its refs are copied from the cache): the fetch would only name
 * it in a config that goes away with it. */
static bool origin_as_fetched(const struct gw_source *src)
{
	struct origin_cfg o = { 0 };
	git_config *cfg = NULL;
	char *stored = gw_url_without_credentials(src->url);
	bool same = false;

	if (git_repository_config_snapshot(&cfg, src->repo) < 0 || git_config_foreach(cfg, origin_entry, &o) < 0)
		goto out;
	if (o.rewrites)
		same = false;
	else if (!o.url && !o.nfetch)
		same = src->scratch != NULL;
	else
		same = o.url && !strcmp(o.url, stored) && o.nfetch == 2 &&
			!strcmp(o.fetch[0], "+refs/heads/*:refs/remotes/origin/*") &&
			!strcmp(o.fetch[1], "+refs/tags/*:refs/tags/*");
out:
	free(stored);
	free(o.url);
	for (size_t i = 0; i < o.nfetch; i++)
		free(o.fetch[i]);
	git_config_free(cfg);
	return same;
}

/* A local repository (a path or file://) whose branches, tags and default
 * branch the cache already holds, under the remote and refspecs the fetch
 * sets: the fetch would change nothing, so it is not run. Reading a few refs
 * costs well under a millisecond; a fetch process about 10 ms of CPU, most
 * of it loading this binary's shared libraries. Anything unexpected: fetch. */
static bool local_up_to_date(const struct gw_source *src)
{
	const char *path = gw_source__local_path(src->url);
	git_repository *remote = NULL;
	size_t n = 0;
	bool same = false;

	if (!path || !src->repo || !origin_as_fetched(src))
		goto out;
	if (git_repository_open_ext(&remote, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0)
		goto out;
	if (!refs_copied(&n, remote, src->repo, "refs/heads/", "refs/remotes/origin/") || n == 0)
		goto out; /* an empty remote: the fetch says what it makes of it */
	size_t heads = n;
	n = 0;
	if (!refs_copied(&n, remote, src->repo, "refs/tags/", "refs/tags/"))
		goto out;
	/* nothing the prune would remove */
	same = refs_count(src->repo, "refs/remotes/origin/*", "refs/remotes/origin/HEAD") == heads &&
		refs_count(src->repo, "refs/tags/*", "") == n && head_recorded(remote, src->repo);
out:
	git_repository_free(remote);
	git_error_clear();
	return same;
}

/* What the child said: whether it reached the server, and its error line. */
struct reports {
	int connected;
	char line[1600];
	size_t have;
};

/* Read the child's lines until it is done (0), or it stays silent past the
 * connect or idle timeout (-ETIMEDOUT), or it runs past the deadline however
 * much it progresses (-ETIME: a server that trickles), or a stop is requested
 * (-ECANCELED). */
static int follow(struct reports *r, int fd, int64_t connect, int64_t idle, int64_t deadline,
		  const struct gw_cancel *cancel)
{
	int64_t last = gw_now_ms(), end = gw_monotonic_ms() + deadline; /* a clock step cannot move it */
	for (;;) {
		int64_t left = last + (r->connected ? idle : connect) - gw_now_ms(), to_end = end - gw_monotonic_ms();
		if (to_end <= 0)
			return -ETIME;
		if (left <= 0)
			return -ETIMEDOUT;
		if (to_end < left)
			left = to_end;
		if (gw_cancel_requested(cancel))
			return -ECANCELED;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, (int)(left > 50 ? 50 : left));
		if (pr <= 0)
			continue;
		char buf[512];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0; /* the child is done */
		last = gw_now_ms();
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (r->have + 1 < sizeof(r->line))
					r->line[r->have++] = buf[i];
				continue;
			}
			r->line[r->have] = '\0';
			if (r->line[0] == 'c')
				r->connected = 1;
			if (r->line[0] != 'e')
				r->have = 0; /* keep an error line once read */
		}
	}
}

int gw_source_fetch(struct gw_source *src, struct gw_error *err)
{
	const struct gw_source_opts *o = &src->opts;
	int64_t idle = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 60000;
	int64_t connect = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 15000;
	int64_t deadline = o->deadline_ms > 0 ? o->deadline_ms : 300000;
	int fresh = src->repo == NULL, fds[2], status = 0, timed_out, cancelled;
	struct reports r = { 0 };
	char partial[PATH_MAX];
	pid_t pid;

	int connect_is_idle = connect >= idle; /* which option to name in a timeout */
	if (connect > idle)
		connect = idle;
	if (o->insecure_skip_tls_verify && !strncmp(src->url, "https://", 8))
		gw_log(GW_LOG_WARN, "",
		       "TLS verification is OFF (--insecure-skip-tls-verify): anyone between this node and %s can "
		       "change what it runs",
		       src->url);
	if (check_local(src, err) < 0)
		return err->code;
	if (local_up_to_date(src))
		return 0;
	snprintf(partial, sizeof(partial), "%s.partial", src->cache_dir);
	if (fresh)
		gw_rm_rf(partial);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return gw_error_set(err, -errno, "pipe: %s", strerror(errno));
	fetch_started = time(NULL);
	GW_PROF_BEGIN(child);
	if (start_child(&pid, fds[1], src, fresh ? partial : src->cache_dir, fresh, err) < 0) {
		close(fds[0]);
		close(fds[1]);
		return err->code;
	}
	close(fds[1]);
	int ended = follow(&r, fds[0], connect, idle, deadline, o->cancel);
	timed_out = ended == -ETIMEDOUT || ended == -ETIME;
	cancelled = ended == -ECANCELED;
	close(fds[0]);
	if (timed_out || cancelled)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	GW_PROF_END(child, "  fetch process");
	if (timed_out || cancelled || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (fresh)
			gw_rm_rf(partial);
		else
			nftw(src->cache_dir, drop_leftover, 16, FTW_PHYS | FTW_MOUNT);
	}
	if (cancelled)
		return gw_error_set(err, -ECANCELED, "%s: fetch abandoned: the agent is stopping", src->url);
	if (ended == -ETIME) {
		char d[32];
		gw_duration_format(d, sizeof(d), deadline);
		return gw_error_set(err, -ETIMEDOUT, "%s: fetch exceeded --git-deadline of %s (the server %s)",
				    src->url, d, r.connected ? "was still sending" : "never answered");
	}
	if (timed_out) {
		char d[32];
		gw_duration_format(d, sizeof(d), r.connected ? idle : connect);
		return gw_error_set(err, -ETIMEDOUT, "%s: timed out: %s for %s (--git-%stimeout)", src->url,
				    r.connected ? "no progress from the server" : "no answer from the server", d,
				    r.connected || connect_is_idle ? "" : "connect-");
	}
	if (!WIFEXITED(status))
		return gw_error_set(err, -EIO, "%s: the fetch process died (signal %d)", src->url,
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	if (WEXITSTATUS(status) != 0) {
		r.line[r.have] = '\0';
		if (r.line[0] != 'e')
			return gw_error_set(err, -EIO, "%s: the fetch failed (exit %d)", src->url, WEXITSTATUS(status));
		return parent_fail(err, src, r.line);
	}
	if (fresh && rename(partial, src->cache_dir) < 0) {
		int e = errno;
		gw_rm_rf(partial);
		return gw_error_set(err, -e, "%s: cannot move the new clone into place: %s", src->cache_dir,
				    strerror(e));
	}
	return gw_source__reopen(src, err);
}
