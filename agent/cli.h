/* The binary's commands and their shared option parsing. No logic lives in
 * agent/: each command wires options to the library and maps results to exit
 * codes. */
#ifndef GITWARD_AGENT_CLI_H
#define GITWARD_AGENT_CLI_H

#include <stdio.h>

#include "gitward/config.h"
#include "gitward/manifest.h"

/* set by CMake (GW_VERSION, GW_COMMIT: `gitward version`) */
#ifndef GW_VERSION
#define GW_VERSION "0.0.0"
#endif
#ifndef GW_COMMIT
#define GW_COMMIT "unknown"
#endif

enum output_format { OUTPUT_TEXT, OUTPUT_JSON, OUTPUT_MARKDOWN, OUTPUT_GITHUB };

/* Usage errors (unknown command or flag, missing or bad value, unexpected
 * argument) exit 64 like sysexits.h's EX_USAGE, apart from runtime errors (1). */

/* Help lines of the options the commands that read a repository share,
 * written once (string literals, pasted into each command's usage). */
#define CLI_HELP_SOURCE                                                                                                \
	"  --repo URL|PATH            https://, ssh://, user@host:path, file:// or a local path (required)\n"          \
	"  --ref REF                  branch, tag or full commit id (default: the remote's default branch)\n"          \
	"  --path DIR                 folder in the repo holding manifests (repeatable; default: root)\n"              \
	"  --exclude GLOB             leave matching files out (repeatable; gitignore syntax, after\n"                 \
	"                             the repository's .gitwardignore)\n"

#define CLI_HELP_DIRS                                                                                                  \
	"  --state-dir DIR            state and Git cache (default /var/lib/gitward as root)\n"                        \
	"  --run-dir DIR              lock, run records, QMP sockets (default /run/gitward as root;\n"                 \
	"                             STATE-DIR/run when --state-dir is given)\n"                                      \
	"  --log-dir DIR              workload logs (default /var/log/gitward as root;\n"                              \
	"                             STATE-DIR/logs when --state-dir is given)\n"                                     \
	"  --node NAME                this node's name (default: hostname)\n"                                          \
	"  --label K=V                node label for nodeSelector (repeatable)\n"                                      \
	"  --no-prune                 never delete resources that left Git\n"                                          \
	"  --allow-empty              let a commit with nothing for this node delete everything\n"                     \
	"  --allow-rewind             accept a branch moving to a commit that does not descend from\n"                 \
	"                             the commit in force (a force-push backwards or sideways)\n"

#define CLI_HELP_GIT                                                                                                   \
	"  --ca-file FILE             PEM CA bundle for HTTPS remotes (replaces the system store)\n"                   \
	"  --insecure-skip-tls-verify do not check the HTTPS server (warned on every fetch)\n"                         \
	"  --known-hosts FILE         SSH host keys to trust (default ~/.ssh/known_hosts)\n"                           \
	"  --ssh-key FILE             SSH private key (default $GITWARD_SSH_KEY, ssh-agent, ~/.ssh/id_*)\n"            \
	"  --git-username USER        user name for HTTPS (default: the URL's, $GITWARD_GIT_USERNAME)\n"               \
	"  --git-password-file FILE   password or token for HTTPS, one line (never printed)\n"                         \
	"  --git-timeout DUR          end a fetch after this long without progress (default 60s)\n"                    \
	"  --git-connect-timeout DUR  end a fetch the server does not answer (default 15s)\n"                          \
	"  --git-deadline DUR         end a fetch that runs longer, progress or not (default 5m)\n"

#define CLI_HELP_REST                                                                                                  \
	"  --mode enforce|observe     observe: plan every pass and publish it as pending; apply\n"                     \
	"                             and heal nothing (default enforce)\n"                                            \
	"  --auto-revert              go back to the last commit that converged when what a new\n"                     \
	"                             commit created or updated is not running and healthy in time\n"                  \
	"  --healthy-deadline DUR     that time, from the commit's first apply (default 2m)\n"                         \
	"  --window SPEC              maintenance window for updates and deletes, e.g. \"mon-fri\n"                    \
	"                             02:00-04:00 UTC\" (repeatable; outside every one they are held)\n"               \
	"  --fleet-lock URL           a FleetLock server: update and delete wait for a slot (POST\n"                   \
	"                             URL/v1/pre-reboot), given back once converged healthy\n"                         \
	"  --fleet-lock-group G       the node's group on that server (default \"default\")\n"                         \
	"  --log-format text|json     logging on stderr\n"                                                             \
	"  --log-level LEVEL          debug, info, warn, error\n"                                                      \
	"  --container-socket PATH    Docker Engine API socket\n" CLI_HELP_GIT                                         \
	"  --verify-signatures        apply only commits signed by a key of --allowed-signers\n"                       \
	"                             or --gpg-keyring (the commit itself; not its ancestors)\n"                       \
	"  --allowed-signers FILE     SSH keys, in the format of git's gpg.ssh.allowedSignersFile\n"                   \
	"  --gpg-keyring PATH         OpenPGP keys: a GnuPG home directory or a file of public keys\n"                 \
	"  --age-identity FILE        the node's age identity: decrypts secretEnvFiles when a workload starts\n"       \
	"  --plugin-dir DIR           External resources' plugins (default PREFIX/lib/gitward/plugins)\n"              \
	"  --move-to-repo             use a state dir recorded for another repository with this one\n"                 \
	"                             (what this repository does not declare is deleted)\n"                            \
	"  --config FILE              YAML file with the options above (flags win)\n"

#define EXIT_USAGE 64
/* cli_parse_common's and on_extra's "stop with exit code 64" */
#define CLI_STOP_USAGE (-EXIT_USAGE - 1)

int cmd_validate(int argc, char **argv);
int cmd_reconcile(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_schema(int argc, char **argv);
int cmd_suspend(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_rollback(int argc, char **argv);

/* Parse the options shared by reconcile and agent (and --config); extra
 * long options of the command go in `extra` and are reported through
 * on_extra. Returns 0, or an exit code to stop with (help printed: 0,
 * --config unreadable: 1, usage error: 64) as a negative number minus one:
 * the caller returns -rc - 1. */
struct cli_extra {
	const char *name;
	int has_arg;
	int id;
};
int cli_parse_common(struct gw_config *cfg, int argc, char **argv, const struct cli_extra *extra,
		     int (*on_extra)(int id, const char *arg, void *ud), void *ud, const char *usage);

/* "gitward: MSG" and where to read the command's options, on stderr; returns
 * EXIT_USAGE. cmd is the command's name, NULL for the binary's commands. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct option;
/* After getopt_long (opterr = 0) returned '?': says which option is wrong and
 * how (unknown, with the nearest known name; needs a value; takes none;
 * ambiguous), returns EXIT_USAGE. */
int cli_option_error(const char *cmd, const struct option *opts, char **argv);
/* The name nearest to word (edit distance at most 2, or a prefix), or NULL. */
const char *cli_nearest(const char *word, const char *const *names, size_t n);

void cli_print_diags(const struct gw_diags *d);
/* "gitward: PREFIXfile:line:col: msg" on stderr, escaped like every untrusted text. */
void cli_print_error(const char *prefix, const struct gw_error *err);
/* cli_print_error("error: ", err), and when err names state_dir (or a
 * folder above it) and state_dir is the default, which nobody may have
 * chosen: says so, and how to choose one. */
void cli_print_state_error(const struct gw_error *err, const char *state_dir);
/* "gitward: warning: no manifest in ..." when a place read held none */
void cli_warn_empty(const struct gw_manifest_set *set);
struct gw_backend_set;
/* The backend instances, built from the options (close with
 * gw_backend_set_close); self is a buffer for this binary's path, size
 * bytes. */
void cli_backends_open(struct gw_backend_set *set, const struct gw_config *cfg, char *self, size_t size);
struct gw_pass_opts;
/* What a pass needs of the options, built once (borrows from cfg). */
void cli_pass_opts(struct gw_pass_opts *out, const struct gw_config *cfg);
void cli_install_logging(const struct gw_config *cfg);
/* --output ARG of cmd, which takes the formats of the mask takes (bit
 * OUTPUT_X); a format cmd does not take, or none, is said on stderr with the
 * ones it takes. */
#define OUTPUT_BIT(f) (1u << (f))
#define OUTPUTS_ALL                                                                                                    \
	(OUTPUT_BIT(OUTPUT_TEXT) | OUTPUT_BIT(OUTPUT_JSON) | OUTPUT_BIT(OUTPUT_MARKDOWN) | OUTPUT_BIT(OUTPUT_GITHUB))
int cli_parse_output(enum output_format *out, const char *arg, const char *cmd, unsigned takes);
/* The options of the commands that only read a state dir (status,
 * history): --output text|json, --state-dir DIR, --help. Returns -1 to go
 * on with *fmt and *dir (the default state dir when not given; caller
 * frees), else the exit code (0 after --help, 64 on a usage error). */
int cli_parse_state_reader(enum output_format *fmt, char **dir, int argc, char **argv, const char *cmd,
			   const char *usage);
/* GitHub Actions workflow annotations, one "::error file=F,line=L,col=C::MSG"
 * per problem (err: one more, when not NULL). */
void cli_print_github(FILE *f, const struct gw_diags *d);
void cli_print_github_error(FILE *f, const struct gw_error *err);
struct gw_plan;
/* The ::notice line of a node's plan, the node name escaped as workflow data. */
void cli_print_github_plan(FILE *f, const char *node, const struct gw_plan *p);
/* "skipped PATH (RULE)" per file or folder left out by the exclusions. */
void cli_print_skipped(FILE *f, const struct gw_manifest_set *set);
/* "applying: N of M resources done" on stderr, rewritten in place (a
 * terminal only: the caller checks); log lines clear it first. done ==
 * total ends the line. */
void cli_progress(size_t done, size_t total, void *ud);

#endif
