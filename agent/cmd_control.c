/* `gitward suspend`, `resume`, `restart`: a request written into the state
 * dir (gitward/control.h). No lock: a running agent sees the file through
 * inotify and acts within a second; without one, the next reconcile or
 * agent acts on it. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gitward/control.h"
#include "gitward/paths.h"
#include "gitward/state.h"

static const char suspend_usage[] =
	"usage: gitward suspend [--reason TEXT] [--state-dir DIR]\n"
	"\n"
	"Stop applying and healing on this node until `gitward resume`: passes still fetch\n"
	"and plan, and the plan is published as pending (status, /status, metrics). A\n"
	"running agent sees it within a second; it survives restarts of the agent.\n"
	"Exit 1 when the state dir does not exist or cannot be read.\n";
static const char resume_usage[] = "usage: gitward resume [--state-dir DIR]\n"
				   "\n"
				   "End a suspension: the next pass (at once with an agent running) applies\n"
				   "what is pending and heals again.\n";
static const char restart_usage[] =
	"usage: gitward restart KIND/NAME [--state-dir DIR]\n"
	"\n"
	"Replace one managed resource (stopped, started, health-gated, its dependents\n"
	"waiting, as for an update) even though nothing changed. A running agent does it\n"
	"within a second; without one, the next reconcile or agent does. Suspended or in\n"
	"observe mode it stays pending. Exit 1 when the state dir or the resource is unknown.\n";

/* --state-dir and, for suspend, --reason; the rest must be empty but for
 * nargs positional arguments. Returns -1 to go on, else the exit code. */
static int parse(const char *cmd, const char *usage, int argc, char **argv, char **dir, char **reason, char **args,
		 int nargs)
{
	static const struct option opts[] = { { "state-dir", required_argument, 0, 's' },
					      { "reason", required_argument, 0, 'r' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	static const struct option no_reason[] = { { "state-dir", required_argument, 0, 's' },
						   { "help", no_argument, 0, 'h' },
						   { 0, 0, 0, 0 } };
	const struct option *o = reason ? opts : no_reason;
	char esc[300];
	int c, got = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", o, NULL)) != -1 || optind < argc) {
		if (c == -1) { /* a positional argument; options may follow */
			if (got == nargs)
				return cli_usage_error(cmd, "unexpected argument \"%s\"",
						       gw_escape(esc, sizeof(esc), argv[optind]));
			args[got++] = argv[optind++];
			continue;
		}
		switch (c) {
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 's':
			free(*dir);
			*dir = gw_xstrdup(optarg);
			break;
		case 'r':
			free(*reason);
			*reason = gw_xstrdup(optarg);
			break;
		default:
			return cli_option_error(cmd, o, argv);
		}
	}
	if (got < nargs)
		return cli_usage_error(cmd, "KIND/NAME is required (e.g. Process/web)");
	if (!*dir)
		*dir = gw_state_default_dir();
	return -1;
}

static int state_dir_ok(const char *dir)
{
	struct gw_error err;
	if (gw_state_dir_readable(dir, &err) < 0) {
		cli_print_state_error(&err, dir);
		return -1;
	}
	return 0;
}

int cmd_suspend(int argc, char **argv)
{
	char *dir = NULL, *reason = NULL, esc[2048];
	struct gw_error err;
	struct gw_suspend s;
	int rc = parse("suspend", suspend_usage, argc, argv, &dir, &reason, NULL, 0);
	if (rc < 0) {
		rc = 1;
		if (state_dir_ok(dir) < 0) {
			/* said */
		} else if (gw_control_suspend(dir, reason ? reason : "", &err) < 0 ||
			   gw_control_suspend_read(&s, dir, &err) < 0) {
			cli_print_error("error: ", &err);
		} else {
			printf("suspended since %s (%s): nothing is applied or healed until gitward resume\n", s.since,
			       gw_escape(esc, sizeof(esc), s.reason));
			rc = 0;
		}
	}
	free(dir);
	free(reason);
	return rc;
}

int cmd_resume(int argc, char **argv)
{
	char *dir = NULL;
	struct gw_error err;
	bool was;
	int rc = parse("resume", resume_usage, argc, argv, &dir, NULL, NULL, 0);
	if (rc < 0) {
		rc = 1;
		if (state_dir_ok(dir) < 0) {
			/* said */
		} else if (gw_control_resume(dir, &was, &err) < 0) {
			cli_print_error("error: ", &err);
		} else {
			puts(was ? "resumed: the next pass applies what is pending and heals again" : "not suspended");
			rc = 0;
		}
	}
	free(dir);
	return rc;
}

/* KIND/NAME among the resources of the state file, or a did-you-mean */
static int find_resource(const struct gw_state_file *st, const char *want)
{
	const char **names = gw_xcalloc(st->n + 1, sizeof(*names));
	char **own = gw_xcalloc(st->n + 1, sizeof(*own)), esc[300];
	int found = 0;
	for (size_t i = 0; i < st->n; i++) {
		if (asprintf(&own[i], "%s/%s", gw_kind_to_string(st->res[i].kind), st->res[i].name) < 0)
			abort();
		names[i] = own[i];
		found |= !strcmp(own[i], want);
	}
	if (!found) {
		const char *near = cli_nearest(want, names, st->n);
		char near_esc[300];
		gw_escape(esc, sizeof(esc), want);
		if (near)
			fprintf(stderr, "gitward: error: restart: no resource %s on this node (did you mean %s?)\n",
				esc, gw_escape(near_esc, sizeof(near_esc), near));
		else
			fprintf(stderr, "gitward: error: restart: no resource %s on this node (see gitward status)\n",
				esc);
	}
	for (size_t i = 0; i < st->n; i++)
		free(own[i]);
	free(own);
	free(names);
	return found ? 0 : -1;
}

int cmd_restart(int argc, char **argv)
{
	char *dir = NULL, *args[1] = { NULL }, path[4096], esc[300];
	struct gw_state_file st;
	struct gw_error err;
	int rc = parse("restart", restart_usage, argc, argv, &dir, NULL, args, 1);
	if (rc >= 0) {
		free(dir);
		return rc;
	}
	const char *slash = strchr(args[0], '/');
	char kind[32];
	enum gw_kind k;
	if (!slash || (size_t)(slash - args[0]) >= sizeof(kind)) {
		free(dir);
		return cli_usage_error("restart", "expected KIND/NAME (e.g. Process/web), got \"%s\"",
				       gw_escape(esc, sizeof(esc), args[0]));
	}
	memcpy(kind, args[0], (size_t)(slash - args[0]));
	kind[slash - args[0]] = '\0';
	rc = 1;
	gw_path_state_file(path, sizeof(path), dir);
	if (state_dir_ok(dir) < 0 || gw_state_load(&st, path, &err) < 0) {
		if (err.code)
			cli_print_state_error(&err, dir);
		free(dir);
		return 1;
	}
	if (find_resource(&st, args[0]) == 0) {
		if (gw_kind_from_string(&k, kind) < 0 || gw_control_restart_request(dir, k, slash + 1, &err) < 0) {
			cli_print_error("error: ", &err);
		} else {
			printf("restart of %s requested: a running agent replaces it within a second; without one, "
			       "the next reconcile or agent does (suspended or in observe mode it stays pending)\n",
			       gw_escape(esc, sizeof(esc), args[0]));
			rc = 0;
		}
	}
	gw_state_file_free(&st);
	free(dir);
	return rc;
}
