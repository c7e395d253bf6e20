/* `gitward history` and `gitward rollback`: the node's history of passes
 * (gitward/history.h) and the operator's pin to an earlier commit
 * (gitward/pin.h). Both only read or write files in the state dir: no lock,
 * beside a running agent. */
#define _GNU_SOURCE
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gitward/history.h"
#include "gitward/pass.h"
#include "gitward/paths.h"
#include "gitward/pin.h"
#include "gitward/state.h"

static const char history_usage[] = "usage: gitward history [--output text|json] [--state-dir DIR]\n"
				    "\n"
				    "The passes of this node that applied something or failed, newest first (the\n"
				    "last 100; a pass repeating the newest entry's commit, result and message counts\n"
				    "in it). Exit 1 when the state dir is unknown or its history is corrupt.\n";

static void print_text(const struct gw_history_entry *v, size_t n)
{
	char ref[600], msg[2100];
	if (!n)
		puts("no history yet: no pass applied anything or failed");
	for (size_t i = 0; i < n; i++) {
		printf("%s  %-11s  %-11s  %.12s  %s  %s", v[i].time, v[i].result, v[i].trigger,
		       v[i].commit[0] ? v[i].commit : "-", gw_escape(ref, sizeof(ref), v[i].ref[0] ? v[i].ref : "-"),
		       gw_escape(msg, sizeof(msg), v[i].message));
		if (v[i].count > 1)
			printf(" (%u times, last %s)", v[i].count, v[i].last);
		putchar('\n');
	}
}

static void print_json(const struct gw_history_entry *v, size_t n, const char *node)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr,
				      json_pack("{s:s, s:o, s:s, s:s, s:s, s:o, s:I, s:s}", "commit", v[i].commit,
						"ref", gw_json_string(v[i].ref), "time", v[i].time, "result",
						v[i].result, "trigger", v[i].trigger, "message",
						gw_json_string(v[i].message), "count", (json_int_t)v[i].count, "last",
						v[i].last));
	json_t *doc = json_pack("{s:o, s:o}", "node", gw_json_string(node ? node : ""), "history", arr);
	char *s = json_dumps(doc, JSON_COMPACT);
	puts(s);
	free(s);
	json_decref(doc);
}

int cmd_history(int argc, char **argv)
{
	enum output_format fmt;
	struct gw_state_file st;
	struct gw_history_entry *v = NULL;
	size_t n = 0;
	struct gw_error err = { 0 };
	char *dir = NULL, path[4096];
	int rc = 1;

	int code = cli_parse_state_reader(&fmt, &dir, argc, argv, "history", history_usage);
	if (code >= 0)
		return code;
	gw_path_state_file(path, sizeof(path), dir);
	if (gw_state_dir_readable(dir, &err) < 0 || gw_state_load(&st, path, &err) < 0) {
		cli_print_state_error(&err, dir);
		free(dir);
		return 1;
	}
	if (gw_history_load(&v, &n, dir, &err) < 0) {
		cli_print_error("error: ", &err);
	} else {
		if (fmt == OUTPUT_JSON)
			print_json(v, n, st.node);
		else
			print_text(v, n);
		rc = 0;
	}
	free(v);
	gw_state_file_free(&st);
	free(dir);
	return rc;
}

static const char rollback_usage[] =
	"usage: gitward rollback [COMMIT] [--reason TEXT] [--state-dir DIR]\n"
	"       gitward rollback --clear [--state-dir DIR]\n"
	"\n"
	"Pin this node to COMMIT (a full id or a prefix of at least 7 hex digits, in the\n"
	"node's Git cache; default: the last commit before the one in force that\n"
	"converged, from gitward history). A running agent applies it within a second;\n"
	"without one, the next reconcile or agent does. The pin survives restarts and ends\n"
	"when a fetch sees the ref at another commit than its tip when pinned, or on\n"
	"--clear. With --verify-signatures the pinned commit must be signed like any.\n"
	"Exit 1 when the state dir or the commit is unknown.\n";

/* Options of rollback; -1 to go on, else the exit code. */
static int rollback_parse(int argc, char **argv, char **dir, char **reason, const char **id, bool *clear)
{
	static const struct option opts[] = { { "state-dir", required_argument, 0, 's' },
					      { "reason", required_argument, 0, 'r' },
					      { "clear", no_argument, 0, 'c' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	char esc[300];
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1 || optind < argc) {
		if (c == -1) {
			if (*id)
				return cli_usage_error("rollback", "unexpected argument \"%s\"",
						       gw_escape(esc, sizeof(esc), argv[optind]));
			*id = argv[optind++];
			continue;
		}
		switch (c) {
		case 'h':
			fputs(rollback_usage, stdout);
			return 0;
		case 's':
			free(*dir);
			*dir = gw_xstrdup(optarg);
			break;
		case 'r':
			free(*reason);
			*reason = gw_xstrdup(optarg);
			break;
		case 'c':
			*clear = true;
			break;
		default:
			return cli_option_error("rollback", opts, argv);
		}
	}
	if (*clear && (*id || *reason))
		return cli_usage_error("rollback", "--clear takes no COMMIT nor --reason");
	if (!*dir)
		*dir = gw_state_default_dir();
	return -1;
}

int cmd_rollback(int argc, char **argv)
{
	char *dir = NULL, *reason = NULL, esc[2048];
	const char *id = NULL;
	bool clear = false, was;
	struct gw_error err = { 0 };
	struct gw_pin pin;
	int rc = rollback_parse(argc, argv, &dir, &reason, &id, &clear);
	if (rc >= 0)
		goto out;
	rc = 1;
	if (gw_state_dir_readable(dir, &err) < 0) {
		cli_print_state_error(&err, dir);
	} else if (clear) {
		if (gw_pin_clear(dir, &was, &err) < 0) {
			cli_print_error("error: ", &err);
		} else {
			puts(was ? "pin cleared: the node follows its ref again (a running agent within a second)"
				 : "not pinned");
			rc = 0;
		}
	} else if (gw_pass_rollback(&pin, dir, id, reason, &err) < 0) {
		cli_print_error("error: rollback: ", &err);
	} else {
		printf("pinned to %s since %s (%s): a running agent applies it within a second; the pin ends "
		       "when the ref moves from %.12s, or on gitward rollback --clear\n",
		       pin.commit, pin.since, gw_escape(esc, sizeof(esc), pin.reason), pin.tip[0] ? pin.tip : "?");
		rc = 0;
	}
out:
	free(dir);
	free(reason);
	return rc;
}
