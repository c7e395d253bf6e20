/* Option parsing shared by the commands, diagnostics printing, and the log
 * sink (text or JSON lines on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include <unistd.h>

#include "cli.h"
#include "gitward/backend.h"
#include "gitward/pass.h"

static const struct option common[] = {
	{ "repo", required_argument, 0, 0 },
	{ "ref", required_argument, 0, 0 },
	{ "path", required_argument, 0, 0 },
	{ "state-dir", required_argument, 0, 0 },
	{ "run-dir", required_argument, 0, 0 },
	{ "log-dir", required_argument, 0, 0 },
	{ "node", required_argument, 0, 0 },
	{ "label", required_argument, 0, 0 },
	{ "interval", required_argument, 0, 0 },
	{ "no-prune", no_argument, 0, 0 },
	{ "allow-empty", no_argument, 0, 0 },
	{ "allow-rewind", no_argument, 0, 0 },
	{ "listen", required_argument, 0, 0 },
	{ "webhook-secret-file", required_argument, 0, 0 },
	{ "log-format", required_argument, 0, 0 },
	{ "log-level", required_argument, 0, 0 },
	{ "container-socket", required_argument, 0, 0 },
	{ "ca-file", required_argument, 0, 0 },
	{ "insecure-skip-tls-verify", no_argument, 0, 0 },
	{ "known-hosts", required_argument, 0, 0 },
	{ "ssh-key", required_argument, 0, 0 },
	{ "git-username", required_argument, 0, 0 },
	{ "git-password-file", required_argument, 0, 0 },
	{ "git-timeout", required_argument, 0, 0 },
	{ "git-connect-timeout", required_argument, 0, 0 },
	{ "git-deadline", required_argument, 0, 0 },
	{ "verify-signatures", no_argument, 0, 0 },
	{ "allowed-signers", required_argument, 0, 0 },
	{ "gpg-keyring", required_argument, 0, 0 },
	{ "stuck-after", required_argument, 0, 0 },
	{ "header-timeout", required_argument, 0, 0 },
	{ "splay", required_argument, 0, 0 },
	{ "move-to-repo", no_argument, 0, 0 },
	{ "age-identity", required_argument, 0, 0 },
	{ "exclude", required_argument, 0, 0 },
	{ "window", required_argument, 0, 0 },
	{ "plugin-dir", required_argument, 0, 0 },
	{ "mode", required_argument, 0, 0 },
	{ "auto-revert", no_argument, 0, 0 },
	{ "healthy-deadline", required_argument, 0, 0 },
	{ "notify", required_argument, 0, 0 },
	{ "notify-secret-file", required_argument, 0, 0 },
	{ "notify-repeat", required_argument, 0, 0 },
	{ "notify-exec", required_argument, 0, 0 },
	{ "commit-status", required_argument, 0, 0 },
	{ "forge-api", required_argument, 0, 0 },
	{ "forge-repo", required_argument, 0, 0 },
	{ "forge-token-file", required_argument, 0, 0 },
	{ "alertmanager", required_argument, 0, 0 },
	{ "fleet-lock", required_argument, 0, 0 },
	{ "fleet-lock-group", required_argument, 0, 0 },
};
#define NCOMMON (sizeof(common) / sizeof(common[0]))

/* A URL argument's user info (user:password, or a token given as the user)
 * and query (?access_token=...) are starred out in our own argv, so
 * /proc/PID/cmdline and ps never show them. It runs after parsing: the
 * config and the commands' options hold copies of the real values. */
static void scrub_url_credentials(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *auth = strstr(argv[i], "://");
		if (!auth)
			continue;
		auth += 3;
		size_t alen = strcspn(auth, "/?#");
		char *at = NULL;
		for (char *p = auth; p < auth + alen; p++)
			if (*p == '@')
				at = p;
		if (at)
			memset(auth, '*', (size_t)(at - auth));
		char *q = auth + alen + strcspn(auth + alen, "?#");
		if (*q == '?')
			memset(q + 1, '*', strcspn(q + 1, "#"));
	}
}

const char *cli_nearest(const char *word, const char *const *names, size_t n)
{
	const char *best = NULL;
	unsigned bestd = 3;
	size_t wl = strlen(word);

	for (size_t i = 0; i < n; i++) {
		unsigned d = gw_edit_distance(word, names[i]);
		if (wl >= 3 && !strncmp(word, names[i], wl)) /* a start of the name */
			d = 1;
		if (d < bestd && d < wl) {
			bestd = d;
			best = names[i];
		}
	}
	return best;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "gitward: %s\nRun 'gitward %s --help' for its options.\n", msg, cmd);
	else
		fprintf(stderr, "gitward: %s\nRun 'gitward --help' for the commands.\n", msg);
	return EXIT_USAGE;
}

/* glibc's getopt_long takes a prefix shared by several options as the first
 * of them when they all take the same kind of argument (--git for
 * --git-username): refuse it, as an ambiguous option, with a usage error. */
static bool prefix_of_several(const struct option *opts, int idx, char **argv)
{
	const char *tok = argv[optind - 1];
	if (optarg && optarg == argv[optind - 1] && optind >= 2)
		tok = argv[optind - 2]; /* "--name value" */
	if (strncmp(tok, "--", 2) != 0)
		return false;
	const char *name = tok + 2;
	size_t len = strcspn(name, "="), n = 0;
	if (len == strlen(opts[idx].name))
		return false; /* exact */
	for (const struct option *o = opts; o->name; o++)
		n += strncmp(o->name, name, len) == 0;
	if (n < 2)
		return false;
	char esc[300], shown[300];
	snprintf(esc, sizeof(esc), "%.*s", (int)(len < 200 ? len : 200), name);
	gw_escape(shown, sizeof(shown), esc);
	cli_usage_error(argv[0], "option \"--%s\" is ambiguous (--%s or another)", shown, opts[idx].name);
	return true;
}

int cli_option_error(const char *cmd, const struct option *opts, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : NULL;
	char esc[300];

	if (!arg || strncmp(arg, "--", 2) != 0) {
		/* a short option: getopt keeps the letter */
		for (const struct option *o = opts; o->name; o++)
			if (optopt && o->val == optopt && o->has_arg == required_argument)
				return cli_usage_error(cmd, "-%c (--%s) needs a value", optopt, o->name);
		if (optopt > ' ' && optopt < 127)
			return cli_usage_error(cmd, "unknown option \"-%c\"", optopt);
		return cli_usage_error(cmd, "unknown option \"%s\"", gw_escape(esc, sizeof(esc), arg ? arg : ""));
	}
	const char *name = arg + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name), n = 0, prefixes = 0;
	const struct option *found = NULL;
	for (const struct option *o = opts; o->name; o++, n++)
		if (!strncmp(o->name, name, len)) {
			if (strlen(o->name) == len) { /* exact */
				found = o;
				prefixes = 1;
				break;
			}
			found = prefixes++ ? found : o;
		}
	if (found && prefixes == 1) {
		if (found->has_arg == required_argument && !eq)
			return cli_usage_error(cmd, "--%s needs a value", found->name);
		if (found->has_arg == no_argument && eq)
			return cli_usage_error(cmd, "--%s takes no value", found->name);
	}
	char shown[300];
	snprintf(esc, sizeof(esc), "%.*s", (int)(len < 200 ? len : 200), name);
	gw_escape(shown, sizeof(shown), esc);
	if (prefixes > 1)
		return cli_usage_error(cmd, "option \"--%s\" is ambiguous (--%s or another)", shown, found->name);
	const char **names = calloc(n ? n : 1, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = opts[i].name;
	const char *near = cli_nearest(esc, names, n);
	int rc;
	if (near)
		rc = cli_usage_error(cmd, "unknown option \"--%s\" (did you mean \"--%s\"?)", shown, near);
	else
		rc = cli_usage_error(cmd, "unknown option \"--%s\"", shown);
	free(names);
	return rc;
}

/* `reconcile dry-run`: a flag without its dashes, or a word too many. */
static void stray_argument(const char *argv0, const struct option *opts, const char *arg)
{
	const char *names[NCOMMON + 32];
	size_t n = 0;
	char esc[300];
	for (const struct option *o = opts; o->name && n < sizeof(names) / sizeof(names[0]); o++)
		names[n++] = o->name;
	const char *near = cli_nearest(arg, names, n);
	gw_escape(esc, sizeof(esc), arg);
	if (near)
		cli_usage_error(argv0, "unexpected argument \"%s\" (did you mean \"--%s\"?)", esc, near);
	else
		cli_usage_error(argv0, "unexpected argument \"%s\"", esc);
}

static void print_diags(const char *prefix, const struct gw_diags *d);

/* --config FILE over the options given so far; its problems printed as
 * gitward's own errors. */
static int load_config_file(struct gw_config *cfg, const char *path)
{
	struct gw_diags d;
	gw_diags_init(&d);
	int rc = gw_config_load_file(cfg, path, &d);
	if (rc < 0)
		print_diags("gitward: error: --config ", &d);
	gw_diags_free(&d);
	return rc;
}

int cli_parse_common(struct gw_config *cfg, int argc, char **argv, const struct cli_extra *extra,
		     int (*on_extra)(int id, const char *arg, void *ud), void *ud, const char *usage)
{
	size_t nextra = 0;
	while (extra && extra[nextra].name)
		nextra++;
	struct option *opts = calloc(NCOMMON + nextra + 3, sizeof(*opts));
	const char *config_file = NULL;
	struct gw_error err;
	int idx, c, rc = 0;

	memcpy(opts, common, sizeof(common));
	for (size_t i = 0; i < nextra; i++)
		opts[NCOMMON + i] = (struct option){ extra[i].name, extra[i].has_arg, 0, 0 };
	opts[NCOMMON + nextra] = (struct option){ "config", required_argument, 0, 0 };
	opts[NCOMMON + nextra + 1] = (struct option){ "help", no_argument, 0, 'h' };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			rc = -1; /* exit 0 */
			goto out;
		}
		if (c == '?') {
			cli_option_error(argv[0], opts, argv);
			rc = CLI_STOP_USAGE;
			goto out;
		}
		if (prefix_of_several(opts, idx, argv)) {
			rc = CLI_STOP_USAGE;
			goto out;
		}
		if ((size_t)idx < NCOMMON) {
			if (gw_config_set(cfg, opts[idx].name, optarg ? optarg : "true", &err) < 0) {
				cli_usage_error(argv[0], "%s", err.msg);
				rc = CLI_STOP_USAGE;
				goto out;
			}
		} else if ((size_t)idx < NCOMMON + nextra) {
			int r = on_extra(extra[idx - NCOMMON].id, optarg, ud);
			if (r < 0) {
				rc = r;
				goto out;
			}
		} else {
			config_file = optarg;
		}
	}
	scrub_url_credentials(argc, argv);
	if (optind < argc) {
		stray_argument(argv[0], opts, argv[optind]);
		rc = CLI_STOP_USAGE;
		goto out;
	}
	if (config_file && load_config_file(cfg, config_file) < 0) {
		rc = -2;
		goto out;
	}
	if (gw_config_finish(cfg, &err) < 0) {
		cli_usage_error(argv[0], "%s", err.msg);
		rc = CLI_STOP_USAGE;
	}
out:
	free(opts);
	return rc;
}

/* FILE:LINE:COL: MESSAGE per diagnostic, after prefix */
static void print_diags(const char *prefix, const struct gw_diags *d)
{
	struct gw_strbuf file, msg;
	gw_strbuf_init(&file);
	gw_strbuf_init(&msg);
	for (size_t i = 0; i < d->n; i++) {
		/* file names come from Git, messages quote the manifest */
		file.len = msg.len = 0;
		gw_strbuf_add_escaped(&file, d->v[i].file);
		gw_strbuf_add_escaped(&msg, d->v[i].msg);
		gw_strbuf_add(&file, "", 0);
		gw_strbuf_add(&msg, "", 0);
		if (d->v[i].line)
			fprintf(stderr, "%s%s:%u:%u: %s\n", prefix, file.s, d->v[i].line, d->v[i].col, msg.s);
		else if (!d->v[i].file[0])
			fprintf(stderr, "%s%s\n", prefix, msg.s);
		else
			fprintf(stderr, "%s%s: %s\n", prefix, file.s, msg.s);
	}
	gw_strbuf_free(&file);
	gw_strbuf_free(&msg);
}

/* a manifest's problems read like a compiler's: no prefix */
void cli_print_diags(const struct gw_diags *d)
{
	print_diags("", d);
}

void cli_warn_empty(const struct gw_manifest_set *set)
{
	char buf[1024], esc[4096];
	if (gw_manifest_set_empty_warning(buf, sizeof(buf), set))
		fprintf(stderr, "gitward: warning: %s\n", gw_escape(esc, sizeof(esc), buf));
}

void cli_print_error(const char *prefix, const struct gw_error *err)
{
	char buf[600], esc[2400];
	gw_error_format(buf, sizeof(buf), err);
	fprintf(stderr, "gitward: %s%s\n", prefix, gw_escape(esc, sizeof(esc), buf));
}

/* Does err name dir or a folder above it (as its file, or first in its message)? */
static bool names_dir(const struct gw_error *err, const char *dir)
{
	const char *p = err->file[0] ? err->file : err->msg;
	size_t n = err->file[0] ? strlen(p) : strcspn(p, ": ");
	while (n > 1 && p[n - 1] == '/')
		n--;
	return n > 0 && p[0] == '/' && !strncmp(dir, p, n) && (dir[n] == '/' || dir[n] == '\0' || n == 1);
}

void cli_print_state_error(const struct gw_error *err, const char *state_dir)
{
	char buf[600], note[1024], esc[2400], nesc[4096];
	const char *why = state_dir && names_dir(err, state_dir)
		? gw_state_default_dir_note(note, sizeof(note), state_dir)
		: NULL;
	gw_error_format(buf, sizeof(buf), err);
	fprintf(stderr, "gitward: error: %s%s%s%s%s\n", gw_escape(esc, sizeof(esc), buf), why ? " (" : "",
		why ? gw_escape(nesc, sizeof(nesc), why) : "",
		/* the way out, unless the message gives it already */
		why && !strstr(err->msg, "--state-dir") ? "; choose one with --state-dir DIR" : "", why ? ")" : "");
}

int cli_parse_output(enum output_format *out, const char *arg, const char *cmd, unsigned takes)
{
	static const char *const names[] = { "text", "json", "markdown", "github" };
	const size_t n = sizeof(names) / sizeof(names[0]);
	char list[64] = "", esc[300];
	size_t listed = 0, total = 0;

	for (size_t i = 0; i < n; i++)
		total += (takes >> i) & 1;
	for (size_t i = 0; i < n; i++) { /* "text, json or github": what cmd takes */
		if (!((takes >> i) & 1))
			continue;
		listed++;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
			 listed == 1		   ? ""
				 : listed == total ? " or "
						   : ", ",
			 names[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(arg, names[i]) != 0)
			continue;
		if (!((takes >> i) & 1)) {
			fprintf(stderr, "gitward: --output: %s prints %s\n", cmd, list);
			return -EINVAL;
		}
		*out = (enum output_format)i;
		return 0;
	}
	fprintf(stderr, "gitward: --output: expected %s, got \"%s\"\n", list, gw_escape(esc, sizeof(esc), arg));
	return -EINVAL;
}

/* Workflow command data: '%', CR and LF are escaped; in a property also ':'
 * and ','. Untrusted text is made printable first. */
static void add_workflow(struct gw_strbuf *sb, const char *s, int property)
{
	struct gw_strbuf esc;
	gw_strbuf_init(&esc);
	gw_strbuf_add_escaped(&esc, s);
	for (size_t i = 0; i < esc.len; i++) {
		char c = esc.s[i];
		if (c == '%')
			gw_strbuf_puts(sb, "%25");
		else if (c == '\r')
			gw_strbuf_puts(sb, "%0D");
		else if (c == '\n')
			gw_strbuf_puts(sb, "%0A");
		else if (property && c == ':')
			gw_strbuf_puts(sb, "%3A");
		else if (property && c == ',')
			gw_strbuf_puts(sb, "%2C");
		else
			gw_strbuf_add(sb, &c, 1);
	}
	gw_strbuf_free(&esc);
}

static void print_annotation(FILE *f, const char *file, unsigned line, unsigned col, const char *msg)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_puts(&sb, "::error");
	if (file && *file) {
		gw_strbuf_puts(&sb, " file=");
		add_workflow(&sb, file, 1);
		if (line)
			gw_strbuf_printf(&sb, ",line=%u,col=%u", line, col);
	}
	gw_strbuf_puts(&sb, "::");
	add_workflow(&sb, msg, 0);
	fprintf(f, "%s\n", sb.s);
	gw_strbuf_free(&sb);
}

void cli_print_github(FILE *f, const struct gw_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		print_annotation(f, d->v[i].file, d->v[i].line, d->v[i].col, d->v[i].msg);
}

void cli_print_github_error(FILE *f, const struct gw_error *err)
{
	print_annotation(f, err->file, err->line, err->col, err->msg);
}

void cli_print_github_plan(FILE *f, const char *node, const struct gw_plan *p)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	add_workflow(&sb, node ? node : "", 0); /* a node name from --against's status: untrusted */
	fprintf(f,
		"::notice title=gitward plan::%s: %zu to create, %zu to update, %zu to delete, %zu to restart, "
		"%zu unchanged.\n",
		sb.s ? sb.s : "", p->count[GW_ACTION_CREATE], p->count[GW_ACTION_UPDATE], p->count[GW_ACTION_DELETE],
		p->count[GW_ACTION_RESTART], p->count[GW_ACTION_NONE]);
	gw_strbuf_free(&sb);
}

void cli_print_skipped(FILE *f, const struct gw_manifest_set *set)
{
	char path[1024], rule[1024];
	for (size_t i = 0; i < set->skipped.n; i++)
		fprintf(f, "skipped %s (%s)\n", gw_escape(path, sizeof(path), set->skipped.k[i]),
			gw_escape(rule, sizeof(rule), set->skipped.v[i]));
	if (set->skipped_more)
		fprintf(f, "skipped %zu more\n", set->skipped_more);
}

static atomic_int progress_shown; /* a progress line is on the terminal */

void cli_progress(size_t done, size_t total, void *ud)
{
	(void)ud;
	fprintf(stderr, "\r\033[Kapplying: %zu of %zu resources done%s", done, total, done == total ? "\n" : "");
	atomic_store(&progress_shown, done < total);
}

/* RFC 3339, UTC, milliseconds: 2024-05-01T12:00:00.123Z */
static void timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void log_text(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *msg,
		     void *ud)
{
	static const int prio[] = { 7, 6, 4, 3 };
	const int *journald = ud;
	struct gw_strbuf sb;
	char ts[40];
	(void)fields; /* the text says it */
	/* one event, one line: nothing in key or msg may start another */
	gw_strbuf_init(&sb);
	if (atomic_load(&progress_shown))
		gw_strbuf_puts(&sb, "\r\033[K"); /* over the progress line, which comes back */
	if (*journald) { /* the journal stamps each line itself */
		gw_strbuf_printf(&sb, "<%d>", prio[level]);
	} else {
		timestamp(ts, sizeof(ts));
		gw_strbuf_printf(&sb, "%s ", ts);
	}
	gw_strbuf_printf(&sb, "%s ", gw_log_level_name(level));
	if (key && *key) {
		gw_strbuf_add_escaped(&sb, key);
		gw_strbuf_puts(&sb, ": ");
	}
	gw_strbuf_add_escaped(&sb, msg);
	gw_strbuf_puts(&sb, "\n");
	fputs(sb.s, stderr);
	gw_strbuf_free(&sb);
}

static void log_json(enum gw_log_level level, const char *key, const struct gw_log_fields *fields, const char *msg,
		     void *ud)
{
	(void)ud;
	char ts[40];
	json_t *o = json_object();
	timestamp(ts, sizeof(ts));
	json_object_set_new(o, "time", json_string(ts));
	json_object_set_new(o, "level", json_string(gw_log_level_name(level)));
	if (key && *key) {
		/* "Kind/name": the key whole, and its parts */
		const char *slash = strchr(key, '/');
		json_object_set_new(o, "resource", gw_json_string(key));
		if (slash) {
			char kind[64];
			snprintf(kind, sizeof(kind), "%.*s", (int)(slash - key), key);
			json_object_set_new(o, "kind", gw_json_string(kind));
			json_object_set_new(o, "name", gw_json_string(slash + 1));
		}
	}
	if (fields && fields->action)
		json_object_set_new(o, "action", json_string(fields->action));
	if (fields && fields->commit && fields->commit[0])
		json_object_set_new(o, "commit", gw_json_string(fields->commit));
	if (fields && fields->duration_ms >= 0)
		json_object_set_new(o, "duration_ms", json_integer(fields->duration_ms));
	json_object_set_new(o, "msg", gw_json_string(msg));
	char *s = json_dumps(o, JSON_COMPACT);
	fprintf(stderr, "%s\n", s);
	free(s);
	json_decref(o);
}

/* stderr is the journal itself: JOURNAL_STREAM names its device and inode
 * ("DEV:INO"), as systemd sets it. A child whose stderr went elsewhere (a
 * file, a pipe) inherits the variable but not the stream: no prefixes there. */
static int stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	int end = 0;
	struct stat st;

	if (!v || sscanf(v, "%llu:%llu%n", &dev, &ino, &end) != 2 || v[end] != '\0' || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void cli_install_logging(const struct gw_config *cfg)
{
	enum gw_log_level min = GW_LOG_INFO;
	if (cfg->log_level)
		gw_log_level_parse(&min, cfg->log_level);
	static int journald;
	journald = stderr_is_journal(); /* under systemd: sd-daemon priority prefixes */
	gw_log_set_handler(cfg->log_format && !strcmp(cfg->log_format, "json") ? log_json : log_text, &journald, min);
}

void cli_pass_opts(struct gw_pass_opts *out, const struct gw_config *cfg)
{
	*out = (struct gw_pass_opts){
		.repo = cfg->repo,
		.repos = (const char *const *)cfg->repos.v,
		.passwords = (const char *const *)cfg->repo_passwords,
		.nrepos = cfg->repos.n,
		.ref = cfg->ref,
		.paths = (const char *const *)cfg->paths.v,
		.npaths = cfg->paths.n,
		.excludes = &cfg->excludes,
		.windows = cfg->windows,
		.nwindows = cfg->nwindows,
		.node = cfg->node,
		.labels = &cfg->labels,
		.state_dir = cfg->state_dir,
		.prune = !cfg->no_prune,
		.allow_empty = cfg->allow_empty,
		.allow_rewind = cfg->allow_rewind,
		.move_to_repo = cfg->move_to_repo,
		.source = { .ca_file = cfg->ca_file,
			    .insecure_skip_tls_verify = cfg->insecure_skip_tls_verify,
			    .known_hosts = cfg->known_hosts,
			    .ssh_key = cfg->ssh_key,
			    .username = cfg->git_username,
			    .password_file = cfg->git_password_file,
			    .password = cfg->repo_password,
			    .connect_timeout_ms = cfg->git_connect_timeout_ms,
			    .idle_timeout_ms = cfg->git_timeout_ms,
			    .deadline_ms = cfg->git_deadline_ms },
		.verify_signatures = cfg->verify_signatures,
		.allowed_signers = cfg->allowed_signers,
		.gpg_keyring = cfg->gpg_keyring,
		.observe = cfg->observe,
		.auto_revert_ms = cfg->auto_revert ? cfg->healthy_deadline_ms : 0,
		.fleet_lock = { .url = cfg->fleet_lock,
				.group = cfg->fleet_lock_group,
				.ca_file = cfg->ca_file,
				.insecure_skip_tls_verify = cfg->insecure_skip_tls_verify,
				.timeout_ms = cfg->git_timeout_ms < 30000 ? cfg->git_timeout_ms : 30000,
				.connect_timeout_ms = cfg->git_connect_timeout_ms },
	};
}

void cli_backends_open(struct gw_backend_set *set, const struct gw_config *cfg, char *self, size_t size)
{
	struct gw_backend_config bc = { 0 };
	struct gw_error err;
	ssize_t n = readlink("/proc/self/exe", self, size - 1);
	self[n > 0 ? n : 0] = '\0';
	bc.state_dir = cfg->state_dir;
	bc.run_dir = cfg->run_dir;
	bc.log_dir = cfg->log_dir;
	bc.container_socket = cfg->container_socket;
	bc.self_exe = self;
	bc.qemu_binary = getenv("GITWARD_QEMU");
	bc.age_identity = cfg->age_identity;
	bc.plugin_dir = cfg->plugin_dir;
	gw_backend_set_open(set, NULL, &bc, &err); /* a backend that cannot start fails its resources only */
}

int cli_parse_state_reader(enum output_format *fmt, char **dir, int argc, char **argv, const char *cmd,
			   const char *usage)
{
	static const struct option opts[] = { { "output", required_argument, 0, 'o' },
					      { "state-dir", required_argument, 0, 's' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	int c;

	*fmt = OUTPUT_TEXT;
	*dir = NULL;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage, stdout);
			free(*dir);
			return 0;
		case 'o':
			if (cli_parse_output(fmt, optarg, cmd, OUTPUT_BIT(OUTPUT_TEXT) | OUTPUT_BIT(OUTPUT_JSON)) < 0) {
				free(*dir);
				return EXIT_USAGE;
			}
			break;
		case 's':
			free(*dir);
			*dir = gw_xstrdup(optarg);
			break;
		default:
			free(*dir);
			return cli_option_error(cmd, opts, argv);
		}
	}
	if (optind < argc) {
		char esc[300];
		free(*dir);
		return cli_usage_error(cmd, "unexpected argument \"%s\"", gw_escape(esc, sizeof(esc), argv[optind]));
	}
	if (!*dir)
		*dir = gw_state_default_dir();
	return -1;
}
