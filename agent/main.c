/* gitward: dispatch to a command, nothing else. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gitward/backend.h"
#include "gitward/source.h"
#include "gitward/spawn.h"
#include "gitward/util.h"

static const char usage[] =
	"usage: gitward COMMAND [OPTIONS]\n"
	"\n"
	"commands:\n"
	"  reconcile [--dry-run] [--output text|json] [OPTIONS]   one pass, then exit\n"
	"  agent [OPTIONS]                                         poll and converge until stopped\n"
	"  validate [--output text|json] PATH...                   check manifests on disk\n"
	"  status [--output text|json] [--state-dir DIR]           what the node runs, as last recorded\n"
	"  diff --base REF [--head REF] [--output ...] [OPTIONS]   two commits compared per node (CI review)\n"
	"  suspend [--reason TEXT] [--state-dir DIR]               stop applying and healing until resume\n"
	"  resume [--state-dir DIR]                                apply and heal again\n"
	"  restart KIND/NAME [--state-dir DIR]                     replace one managed resource now\n"
	"  history [--output text|json] [--state-dir DIR]          the passes that applied something or failed\n"
	"  rollback [COMMIT|--clear] [--reason TEXT] [--state-dir DIR]  pin the node to an earlier commit\n"
	"  down [--state-dir DIR] [--run-dir DIR] [OPTIONS]        stop and remove everything this node manages\n"
	"  version                                                 print the version\n"
	"  schema                                                  print the manifests' JSON Schema\n"
	"\n"
	"Run 'gitward COMMAND --help' for the options of a command.\n"
	"Exit status: 0 success, 1 error, 2 changes pending (reconcile --dry-run),\n"
	"64 usage error (unknown command or option, missing or bad value). See gitward(1).\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} commands[] = {
		{ "reconcile", cmd_reconcile }, { "agent", cmd_agent },	    { "validate", cmd_validate },
		{ "status", cmd_status },	{ "version", cmd_version }, { "schema", cmd_schema },
		{ "diff", cmd_diff },		{ "suspend", cmd_suspend }, { "resume", cmd_resume },
		{ "restart", cmd_restart },	{ "down", cmd_down },	    { "history", cmd_history },
		{ "rollback", cmd_rollback },
	};

	/* gitward's own PATH is the fixed one too: libraries that start
	 * programs themselves (gpgme's gpgconf and gpg) look them up in it, and
	 * an impostor earlier in the PATH gitward was started with must not run */
	setenv("PATH", GW_SPAWN_PATH, 1);

	/* the process backend's supervisor: `gitward-shim Process/NAME RUN_DIR` */
	const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
	if (argc > 0 && !strcmp(base ? base + 1 : argv[0], "gitward-shim"))
		return gw_process_shim_main();
	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "__shim")) /* the same, as earlier versions started it */
		return gw_process_shim_main();
	if (!strcmp(argv[1], "__fetch")) /* the Git fetch's fresh child process */
		return gw_source_fetch_main();
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	const char *names[sizeof(commands) / sizeof(commands[0])];
	char esc[300];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		names[i] = commands[i].name;
	const char *near = cli_nearest(argv[1], names, sizeof(names) / sizeof(names[0]));
	gw_escape(esc, sizeof(esc), argv[1]);
	if (argv[1][0] == '-')
		return cli_usage_error(NULL, "\"%s\": give a command first, then its options", esc);
	if (near)
		return cli_usage_error(NULL, "unknown command \"%s\" (did you mean \"%s\"?)", esc, near);
	return cli_usage_error(NULL, "unknown command \"%s\"", esc);
}
