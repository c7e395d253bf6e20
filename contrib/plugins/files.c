/* gitward plugin "files": files of the repository (or inline text) written
 * on the host, for `kind: External` resources with `plugin: files`.
 *
 *   spec:
 *     plugin: files
 *     sources: [etc/motd]              # files of the commit, read by gitward
 *     config:
 *       files:
 *         - path: /etc/motd            # where, absolute
 *           source: etc/motd           # one of spec.sources ...
 *           mode: "0644"               # optional (default 0644)
 *           owner: root                # optional user name or uid
 *           group: root                # optional group name or gid
 *         - path: /etc/app/flag
 *           content: "on\n"            # ... or inline text
 *
 * create writes every file atomically (temporary file, fsync, rename; missing
 * parent folders made 0755) and answers a handle that records, per path, the
 * sha256, mode, uid and gid it wrote. observe compares the files with it:
 * another content, mode or owner is drift, a missing file too (all missing:
 * absent). destroy removes the files of the handle (never a folder, never
 * through a symbolic link). Paths are walked one folder at a time from "/"
 * and a symbolic link among the parent folders is refused, never followed
 * (open_parent). Speaks protocol 1 (PROTOCOL.md beside this file).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES_MAX 256
#define CONTENT_MAX (1u << 20)

static char problem[1024];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	return -1;
}

static void answer(json_t *reply)
{
	json_object_set_new(reply, "protocol", json_integer(1));
	json_dumpf(reply, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(reply);
}

/* One file of the config, resolved. */
struct file {
	const char *path;
	unsigned char *data;
	size_t len;
	mode_t mode;
	uid_t uid;
	gid_t gid;
};

/* Absolute, no empty, "." or ".." parts, not "/" itself. */
static int path_ok(const char *p)
{
	if (p[0] != '/' || !p[1] || strlen(p) >= PATH_MAX)
		return 0;
	for (const char *s = p + 1; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		s += n;
		if (*s == '/' && !*++s)
			return 0;
	}
	return 1;
}

static int decode_base64(unsigned char **out, size_t *out_len, const char *b64)
{
	size_t n = strlen(b64);
	if (n % 4)
		return -1;
	unsigned char *buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -1;
	int len = n ? EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n) : 0;
	if (len < 0) {
		free(buf);
		return -1;
	}
	if (n && b64[n - 1] == '=')
		len--;
	if (n > 1 && b64[n - 2] == '=')
		len--;
	*out = buf;
	*out_len = (size_t)len;
	return 0;
}

static int parse_id(long *out, const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < 0 || v > 0x7fffffffL)
		return -1;
	*out = v;
	return 0;
}

static int resolve_file(struct file *f, size_t i, const json_t *item, const json_t *sources)
{
	const char *path = json_string_value(json_object_get(item, "path"));
	const char *source = json_string_value(json_object_get(item, "source"));
	const char *content = json_string_value(json_object_get(item, "content"));
	const char *mode = json_string_value(json_object_get(item, "mode"));
	const char *owner = json_string_value(json_object_get(item, "owner"));
	const char *group = json_string_value(json_object_get(item, "group"));
	const char *key;
	json_t *v;

	if (!json_is_object(item))
		return fail("config.files[%zu]: expected a mapping", i);
	json_object_foreach((json_t *)item, key, v)
	{
		if (strcmp(key, "path") && strcmp(key, "source") && strcmp(key, "content") && strcmp(key, "mode") &&
		    strcmp(key, "owner") && strcmp(key, "group"))
			return fail("config.files[%zu].%s: unknown field", i, key);
	}
	if (!path || !path_ok(path))
		return fail("config.files[%zu].path: expected an absolute path without . or .. parts", i);
	f->path = path;
	if (!!source == !!content)
		return fail("config.files[%zu]: expected exactly one of source or content", i);
	if (source) {
		const char *b64 = json_string_value(json_object_get(sources, source));
		if (!b64)
			return fail("config.files[%zu].source: %s is not listed in spec.sources", i, source);
		if (decode_base64(&f->data, &f->len, b64) < 0)
			return fail("config.files[%zu].source: %s: content is not base64", i, source);
	} else {
		f->len = strlen(content);
		if (f->len > CONTENT_MAX)
			return fail("config.files[%zu].content: larger than %u bytes", i, CONTENT_MAX);
		f->data = (unsigned char *)strdup(content);
	}
	f->mode = 0644;
	if (mode) {
		char *end;
		long m = strtol(mode, &end, 8);
		if (!*mode || *end || m < 0 || m > 07777)
			return fail("config.files[%zu].mode: expected an octal mode like \"0644\", got \"%.40s\"", i,
				    mode);
		f->mode = (mode_t)m;
	}
	f->uid = geteuid();
	f->gid = getegid();
	if (owner) {
		long id;
		struct passwd *pw = getpwnam(owner);
		if (pw)
			f->uid = pw->pw_uid;
		else if (parse_id(&id, owner) == 0)
			f->uid = (uid_t)id;
		else
			return fail("config.files[%zu].owner: no user \"%.40s\"", i, owner);
	}
	if (group) {
		long id;
		struct group *gr = getgrnam(group);
		if (gr)
			f->gid = gr->gr_gid;
		else if (parse_id(&id, group) == 0)
			f->gid = (gid_t)id;
		else
			return fail("config.files[%zu].group: no group \"%.40s\"", i, group);
	}
	return 0;
}

static void sha256_hex(char out[65], const unsigned char *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A link among the parents is followed only when root made it and no one
 * else could have: the link is root's and the folder holding it is root's
 * and writable by no one else (Debian's /lib, /bin, /var/run). Any other
 * link is refused. */
static int trusted_link(int dir, const char *comp)
{
	struct stat ls, ds;
	if (fstatat(dir, comp, &ls, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(ls.st_mode) || ls.st_uid != 0)
		return 0;
	if (fstat(dir, &ds) < 0 || ds.st_uid != 0 || (ds.st_mode & (S_IWGRP | S_IWOTH)))
		return 0;
	return 1;
}

/* The folder that holds path, opened one component at a time from "/"
 * with O_NOFOLLOW: a symbolic link among the parents is refused and named,
 * never followed, so a user owning a parent folder cannot point it at a
 * folder of root's -- unless root made it (trusted_link): then the walk
 * starts again from "/" on the path the link names, every component of it
 * checked the same way (at most 40 links). With create, missing folders
 * are made 0755 relative to the folder already held. On success *out is a
 * descriptor of the parent folder and *leaf points into path at the last
 * component; on failure problem says why (-1), or -ENOENT is answered
 * when a parent is missing and create is 0 (nothing written). */
static int open_parent(int *out, const char **leaf, const char *path, int create)
{
	static char walked[2][PATH_MAX];
	char prefix[PATH_MAX];
	const char *s = path + 1, *cur = path;
	int links = 0, which = 0;
	int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return fail("%s: cannot open /: %s", path, strerror(errno));
	for (;;) {
		size_t n = strcspn(s, "/");
		char comp[NAME_MAX + 1];
		if (n == 0 && s[0] == '/') { /* "a//b" after a link's "x/" */
			s++;
			continue;
		}
		if (!s[n]) {
			*out = dir;
			*leaf = s;
			return 0;
		}
		if (n > NAME_MAX) {
			close(dir);
			return fail("%s: a part of the path is longer than %d bytes", path, NAME_MAX);
		}
		memcpy(comp, s, n);
		comp[n] = '\0';
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(s + n - cur), cur);
		int next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(dir, comp, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(dir);
				return fail("%s: cannot make folder %s: %s", path, prefix, strerror(e));
			}
			next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			int e = errno;
			struct stat st;
			int is_link = fstatat(dir, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
			if (is_link && trusted_link(dir, comp)) {
				/* root's own link: walk again from "/" on what it names */
				char target[PATH_MAX];
				ssize_t tn = readlinkat(dir, comp, target, sizeof(target) - 1);
				close(dir);
				if (tn <= 0 || ++links > 40)
					return fail("%s: %s: too many or unreadable symbolic links", path, prefix);
				target[tn] = '\0';
				char *w = walked[which];
				which ^= 1;
				int len;
				if (target[0] == '/')
					len = snprintf(w, PATH_MAX, "%s/%s", target, s + n + 1);
				else
					len = snprintf(w, PATH_MAX, "%.*s/%s/%s", (int)(s - cur - 1), cur, target,
						       s + n + 1);
				if (len < 0 || len >= PATH_MAX)
					return fail("%s: the path through %s is too long", path, prefix);
				cur = w;
				s = w + 1;
				dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (dir < 0)
					return fail("%s: cannot open /: %s", path, strerror(errno));
				continue;
			}
			close(dir);
			if (is_link)
				return fail("%s: %s is a symbolic link: refused (never followed)", path, prefix);
			if (e == ENOENT && !create)
				return -ENOENT;
			return fail("%s: cannot open folder %s: %s", path, prefix, strerror(e));
		}
		close(dir);
		dir = next;
		s += n + 1;
	}
}

static int write_file(const struct file *f)
{
	char tmp[NAME_MAX + 32];
	const char *leaf;
	struct stat st;
	int dir, fd = -1;
	if (open_parent(&dir, &leaf, f->path, 1) < 0)
		return -1;
	if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		close(dir);
		return fail("%s: is a folder", f->path);
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.gitward-%ld", leaf, (long)getpid()) >= sizeof(tmp) ||
	    strlen(tmp) > NAME_MAX) {
		close(dir);
		return fail("%s: the file name is too long", f->path);
	}
	fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;
		close(dir);
		return fail("%s.gitward-%ld: cannot create: %s", f->path, (long)getpid(), strerror(e));
	}
	size_t done = 0;
	while (done < f->len) {
		ssize_t n = write(fd, f->data + done, f->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto bad;
		done += (size_t)n;
	}
	if (fchown(fd, f->uid, f->gid) < 0 || fchmod(fd, f->mode) < 0 || fsync(fd) < 0)
		goto bad;
	if (close(fd) < 0) {
		fd = -1;
		goto bad;
	}
	fd = -1;
	/* renameat replaces whatever is at leaf, a link included, never its target */
	if (renameat(dir, tmp, dir, leaf) < 0)
		goto bad;
	close(dir);
	return 0;
bad:
	fail("%s: cannot write: %s", f->path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlinkat(dir, tmp, 0);
	close(dir);
	return -1;
}

/* Remove a file we wrote: missing is fine, a folder is never touched, nor
 * anything reached through a symbolic link among the parents. */
static int remove_file(const char *path)
{
	struct stat st;
	const char *leaf;
	int dir, rc = open_parent(&dir, &leaf, path, 0);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return -1;
	if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		rc = errno == ENOENT ? 0 : fail("%s: %s", path, strerror(errno));
	else if (S_ISDIR(st.st_mode))
		rc = fail("%s: is a folder now: left alone", path);
	else if (unlinkat(dir, leaf, 0) < 0 && errno != ENOENT)
		rc = fail("%s: cannot remove: %s", path, strerror(errno));
	close(dir);
	return rc;
}

/* The handle: {"files": {path: {"sha256", "mode", "uid", "gid"}}}. */
static json_t *handle_parse(const json_t *req)
{
	const char *h = json_string_value(json_object_get(req, "handle"));
	json_t *j = h ? json_loads(h, 0, NULL) : NULL;
	json_t *files = json_object_get(j, "files");
	if (!json_is_object(files)) {
		json_decref(j);
		fail("the handle is not one this plugin made");
		return NULL;
	}
	json_incref(files);
	json_decref(j);
	return files;
}

/* A JSON string of text that may not be UTF-8 (a path, an error). */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	return j ? j : json_string("(text that is not UTF-8)");
}

/* json_string of a malloc'd string, freed here. */
static json_t *json_string_own(char *s)
{
	json_t *j = text(s ? s : "");
	free(s);
	return j;
}

static int op_create(json_t *reply, const json_t *req)
{
	const json_t *spec = json_object_get(req, "spec");
	const json_t *list = json_object_get(json_object_get(spec, "config"), "files");
	const json_t *sources = json_object_get(req, "sources");
	size_t n = json_array_size(list), written = 0;
	struct file *f = calloc(n + 1, sizeof(*f));
	json_t *files = json_object();
	int rc = 0;

	if (!json_is_array(list) || n == 0 || n > FILES_MAX)
		rc = fail("config.files: expected a list of 1 to %d files", FILES_MAX);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = resolve_file(&f[i], i, json_array_get(list, i), sources);
		for (size_t j = 0; rc == 0 && j < i; j++)
			if (!strcmp(f[i].path, f[j].path))
				rc = fail("config.files[%zu].path: %s is listed twice", i, f[i].path);
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char hex[65];
		if ((rc = write_file(&f[i])) < 0)
			break;
		written++;
		sha256_hex(hex, f[i].data, f[i].len);
		json_object_set_new(files, f[i].path,
				    json_pack("{s:s, s:I, s:I, s:I}", "sha256", hex, "mode", (json_int_t)f[i].mode,
					      "uid", (json_int_t)f[i].uid, "gid", (json_int_t)f[i].gid));
	}
	if (rc < 0) /* nothing left behind */
		for (size_t i = 0; i < written; i++)
			remove_file(f[i].path);
	for (size_t i = 0; i < n; i++)
		free(f[i].data);
	free(f);
	if (rc == 0) {
		json_t *h = json_pack("{s:o}", "files", files);
		json_object_set_new(reply, "handle", json_string_own(json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS)));
		json_decref(h);
	} else {
		json_decref(files);
	}
	return rc;
}

/* What differs between path and what the handle says was written there.
 * Read through the same walk as writes: a parent that became a symbolic
 * link is drift, never followed. */
static int drift(char *why, size_t size, const char *path, const json_t *want)
{
	struct stat st;
	char hex[65];
	const char *leaf;
	int dir, rc;
	if (!path_ok(path)) {
		snprintf(why, size, "the handle names %s, not an absolute path", path);
		return 1;
	}
	rc = open_parent(&dir, &leaf, path, 0);
	if (rc == -ENOENT) {
		snprintf(why, size, "%s: missing", path);
		return 2;
	}
	if (rc < 0) {
		snprintf(why, size, "%s", problem);
		return 1;
	}
	if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		close(dir);
		snprintf(why, size, "%s: missing", path);
		return 2;
	}
	if (!S_ISREG(st.st_mode)) {
		close(dir);
		snprintf(why, size, "%s: not a regular file", path);
		return 1;
	}
	if ((json_int_t)(st.st_mode & 07777) != json_integer_value(json_object_get(want, "mode"))) {
		close(dir);
		snprintf(why, size, "%s: mode %04o, not %04o", path, (unsigned)(st.st_mode & 07777),
			 (unsigned)json_integer_value(json_object_get(want, "mode")));
		return 1;
	}
	if ((json_int_t)st.st_uid != json_integer_value(json_object_get(want, "uid")) ||
	    (json_int_t)st.st_gid != json_integer_value(json_object_get(want, "gid"))) {
		close(dir);
		snprintf(why, size, "%s: owner changed", path);
		return 1;
	}
	int fd = openat(dir, leaf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	close(dir);
	if (fd < 0) {
		snprintf(why, size, "%s: %s", path, strerror(errno));
		return 1;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536], out[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	ssize_t got;
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(md, buf, (size_t)got);
	EVP_DigestFinal_ex(md, out, &n);
	EVP_MD_CTX_free(md);
	close(fd);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", out[i]);
	if (strcmp(hex, json_string_value(json_object_get(want, "sha256")) ?: "")) {
		snprintf(why, size, "%s: content changed", path);
		return 1;
	}
	return 0;
}

static int op_observe(json_t *reply, const json_t *req, int probe)
{
	json_t *files = handle_parse(req), *want;
	const char *path;
	size_t missing = 0, total = 0;
	char why[PATH_MAX + 64] = "", first[PATH_MAX + 64] = "";
	int drifted = 0;

	if (!files)
		return -1;
	json_object_foreach(files, path, want)
	{
		int d = drift(why, sizeof(why), path, want);
		total++;
		missing += d == 2;
		if (d && !first[0])
			snprintf(first, sizeof(first), "%s", why);
		drifted |= d != 0;
	}
	json_decref(files);
	if (probe) {
		json_object_set_new(reply, "healthy", json_boolean(!drifted));
		if (drifted)
			json_object_set_new(reply, "detail", text(first));
		return 0;
	}
	json_object_set_new(reply, "state",
			    json_string(!drifted		   ? "present"
						: missing == total ? "absent"
								   : "drifted"));
	if (drifted)
		json_object_set_new(reply, "detail", text(first));
	return 0;
}

static int op_destroy(const json_t *req)
{
	json_t *files = handle_parse(req), *want;
	const char *path;
	int rc = 0;
	if (!files)
		return -1;
	json_object_foreach(files, path, want)
	{
		if (!path_ok(path))
			rc = fail("the handle names %s, not an absolute path", path);
		else if (remove_file(path) < 0)
			rc = -1;
	}
	json_decref(files);
	return rc;
}

int main(int argc, char **argv)
{
	json_error_t jerr;
	json_t *req = json_loadf(stdin, 0, &jerr), *reply = json_object();
	const char *op = json_string_value(json_object_get(req, "op"));
	int rc;

	(void)argc;
	(void)argv;
	umask(022);
	if (!req) {
		rc = fail("the request is not JSON: %s", jerr.text);
	} else if (json_integer_value(json_object_get(req, "protocol")) != 1) {
		rc = fail("protocol %lld is not spoken here (1 is)",
			  (long long)json_integer_value(json_object_get(req, "protocol")));
	} else if (!op) {
		rc = fail("the request has no op");
	} else if (!strcmp(op, "create")) {
		rc = op_create(reply, req);
	} else if (!strcmp(op, "observe")) {
		rc = op_observe(reply, req, 0);
	} else if (!strcmp(op, "probe")) {
		rc = op_observe(reply, req, 1);
	} else if (!strcmp(op, "destroy")) {
		rc = op_destroy(req);
	} else {
		rc = fail("unknown op \"%.40s\"", op);
	}
	json_object_set_new(reply, "ok", json_boolean(rc == 0));
	if (rc < 0)
		json_object_set_new(reply, "error", text(problem));
	answer(reply);
	json_decref(req);
	return 0;
}
