/* `gitward agent`: poll and converge until stopped. Signal handlers only set
 * flags and wake the loop through a pipe; one poll() waits for the next pass,
 * a signal, or a webhook. Stopping the agent never stops the workloads. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gitward/apply.h"
#include "http.h"

static const char agent_usage[] =
	"usage: gitward agent [OPTIONS]\n"
	"\n"
	"Poll the repository and converge the node until stopped: every --interval a\n"
	"full pass (fetch, plan, apply, record) runs, even when the commit did not\n"
	"change, so dead or unhealthy workloads are healed. SIGHUP runs a pass now;\n"
	"SIGTERM/SIGINT stop the agent (exit 0) and leave every workload running.\n"
	"\n"
	"  --repo URL|PATH            https://, ssh://, user@host:path, file:// or a local path (required)\n"
	"  --ref REF                  branch, tag or full commit id (default: the remote's default branch)\n"
	"  --path DIR                 folder in the repo holding manifests (repeatable; default: root)\n"
	"  --interval DUR             time between passes (default 30s)\n"
	"  --state-dir DIR            clone, state and logs (default /var/lib/gitward as root)\n"
	"  --node NAME                this node's name (default: hostname)\n"
	"  --label K=V                node label for nodeSelector (repeatable)\n"
	"  --no-prune                 never delete resources that left Git\n"
	"  --allow-empty              let a commit with nothing for this node delete everything\n"
	"  --listen ADDR:PORT         HTTP endpoints /healthz /metrics /status (default 127.0.0.1:9420; \"off\")\n"
	"  --webhook-secret-file F    enables POST /hooks/git (X-Hub-Signature-256 checked)\n"
	"  --log-format text|json     logging on stderr\n"
	"  --log-level LEVEL          debug, info, warn, error\n"
	"  --container-socket PATH    Docker Engine API socket\n"
	"  --ca-file FILE             PEM CA bundle for HTTPS remotes (replaces the system store)\n"
	"  --insecure-skip-tls-verify do not check the HTTPS server (warned on every fetch)\n"
	"  --known-hosts FILE         SSH host keys to trust (default ~/.ssh/known_hosts)\n"
	"  --ssh-key FILE             SSH private key (default $GITWARD_SSH_KEY, ssh-agent, ~/.ssh/id_*)\n"
	"  --git-username USER        user name for HTTPS (default: the URL's, $GITWARD_GIT_USERNAME)\n"
	"  --git-password-file FILE   password or token for HTTPS, one line (never printed)\n"
	"  --git-timeout DUR          end a fetch after this long without progress (default 60s)\n"
	"  --git-connect-timeout DUR  end a fetch the server does not answer (default 15s)\n"
	"  --verify-signatures        apply only commits signed by a key of --allowed-signers\n"
	"                             or --gpg-keyring (the commit itself; not its ancestors)\n"
	"  --allowed-signers FILE     SSH keys, in the format of git's gpg.ssh.allowedSignersFile\n"
	"  --gpg-keyring PATH         OpenPGP keys: a GnuPG home directory or a file of public keys\n"
	"  --move-to-repo             use a state dir recorded for another repository with this one\n"
	"                             (what this repository does not declare is deleted)\n"
	"  --config FILE              YAML file with the options above (flags win)\n";

static int wake[2] = { -1, -1 };
static volatile sig_atomic_t want_stop, want_pass;

static void on_signal(int sig)
{
	int saved = errno;
	if (sig == SIGHUP)
		want_pass = 1;
	else
		want_stop = 1;
	if (wake[1] >= 0)
		(void)!write(wake[1], "x", 1);
	errno = saved;
}

static void trigger(void *ud)
{
	(void)ud;
	want_pass = 1;
	if (wake[1] >= 0)
		(void)!write(wake[1], "w", 1);
}

static int on_extra(int id, const char *arg, void *ud)
{
	(void)id;
	(void)arg;
	(void)ud;
	return 0;
}

/* Capped exponential backoff with jitter for an unreachable remote. */
static int64_t retry_delay(int64_t interval, int streak)
{
	int64_t d = interval;
	for (int i = 1; i < streak && d < 300000; i++)
		d *= 2;
	if (d > 300000)
		d = 300000;
	return d + (int64_t)(random() % (d / 5 + 1)); /* + up to 20% */
}

int cmd_agent(int argc, char **argv)
{
	struct gw_config cfg;
	struct gw_backend_ctx ctx;
	struct gw_error err;
	struct gw_metrics metrics;
	struct gw_http *http = NULL;
	char self[4096];
	int lock_fd = -1, rc, git_streak = 0;

	gw_config_init(&cfg);
	rc = cli_parse_common(&cfg, argc, argv, NULL, on_extra, NULL, agent_usage);
	if (rc < 0) {
		gw_config_free(&cfg);
		return rc == -1 ? 0 : 1;
	}
	cli_install_logging(&cfg);
	if (!cfg.repo) {
		fprintf(stderr, "gitward: --repo is required\n\n%s", agent_usage);
		gw_config_free(&cfg);
		return 1;
	}
	cli_backend_ctx(&ctx, &cfg, self, sizeof(self));
	/* another repository's state dir is refused before anything is touched */
	if (gw_pass_check_repo(&cfg, false, &err) < 0 || gw_mkdir_p(cfg.state_dir, 0700, &err) < 0 ||
	    gw_state_lock(&lock_fd, cfg.state_dir, &err) < 0 || gw_pass_check_repo(&cfg, true, &err) < 0) {
		cli_print_error("error: ", &err);
		if (lock_fd >= 0)
			close(lock_fd);
		gw_config_free(&cfg);
		return 1;
	}
	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		fprintf(stderr, "gitward: error: pipe: %s\n", strerror(errno));
		close(lock_fd);
		gw_config_free(&cfg);
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)(getpid() ^ gw_now_ms()));

	gw_metrics_init(&metrics, &cfg);
	if (strcmp(cfg.listen, "off") != 0) {
		rc = gw_http_start(&http, &metrics, &cfg, trigger, NULL, &err);
		if (rc < 0) {
			cli_print_error("error: ", &err);
			close(lock_fd);
			gw_config_free(&cfg);
			return 1;
		}
	}
	gw_log(GW_LOG_INFO, "", "agent started: repo %s, node %s, interval %llds, state dir %s", cfg.repo, cfg.node,
	       (long long)(cfg.interval_ms / 1000), cfg.state_dir);
	gw_notify_ready();

	while (!want_stop) {
		struct gw_run_summary sum;
		int64_t t0 = gw_monotonic_ms();
		want_pass = 0;
		gw_pass_run(&sum, &cfg, &ctx);
		int64_t took = gw_monotonic_ms() - t0;
		gw_metrics_record(&metrics, &sum, took, &cfg);
		switch (sum.result) {
		case GW_RUN_CONVERGED:
			/* a quiet node gives quiet logs: no-op passes only at debug */
			gw_log(sum.count[GW_ACTION_NONE] == sum.report.ok && !sum.report.failed ? GW_LOG_DEBUG
												: GW_LOG_INFO,
			       "", "pass done: commit %.12s, converged (%lldms)", sum.commit, (long long)took);
			break;
		case GW_RUN_NOT_CONVERGED:
			gw_log(GW_LOG_WARN, "",
			       "pass done: commit %.12s, not converged: %zu failed, %zu waiting (%lldms)", sum.commit,
			       sum.report.failed, sum.report.waiting, (long long)took);
			break;
		default:
			break;
		}
		int64_t delay = cfg.interval_ms;
		if (sum.result == GW_RUN_GIT_ERROR) {
			git_streak++;
			delay = retry_delay(cfg.interval_ms, git_streak);
			gw_log(GW_LOG_WARN, "", "next try in %lldms", (long long)delay);
		} else {
			git_streak = 0;
		}
		int64_t deadline = gw_monotonic_ms() + delay;
		while (!want_stop && !want_pass) {
			int64_t left = deadline - gw_monotonic_ms();
			if (left <= 0)
				break;
			struct pollfd p = { .fd = wake[0], .events = POLLIN };
			if (poll(&p, 1, (int)(left > 60000 ? 60000 : left)) > 0) {
				char drain[64];
				while (read(wake[0], drain, sizeof(drain)) > 0)
					;
			}
			gw_metrics_heartbeat(&metrics);
		}
		if (want_pass && !want_stop)
			gw_log(GW_LOG_INFO, "", "pass requested (SIGHUP or webhook)");
	}
	gw_log(GW_LOG_INFO, "", "agent stopping; workloads keep running");
	gw_http_stop(http);
	gw_metrics_free(&metrics);
	close(lock_fd);
	close(wake[0]);
	close(wake[1]);
	gw_config_free(&cfg);
	return 0;
}
