"""An operator's first hour (issue 18): every message names what happened and
what to do next; usage errors exit 64; logs carry timestamps and fields;
read-only commands leave nothing on disk; progress only on a terminal."""
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import unittest

from gwtest import GITWARD, TempDirTest, binary_for_anyone, free_port, proc_yaml, run, wait_for
from test_agent import AgentBase

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
HINT = "Run 'gitward reconcile --help' for its options.\n"


class RepoMessages(TempDirTest):
    def base(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        self.head = r.commit()
        return r

    def dry(self, repo, *args):
        return run("reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state, *args)

    def test_a_folder_that_is_not_a_repository(self):
        plain = os.path.join(self.tmp, "plain")
        os.makedirs(plain)
        res = self.dry(plain)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err, f"gitward: error: {plain} is not a Git repository (no .git or bare layout)\n")
        self.assertNotIn("corrupt", res.err)
        self.assertFalse(os.path.exists(self.state))

    def test_a_path_that_does_not_exist(self):
        for repo in ("/no/such/path", "file:///no/such/path"):
            res = self.dry(repo)
            self.assertEqual(res.rc, 1, res)
            self.assertEqual(res.err, f"gitward: error: {repo}: no such directory (--repo takes a URL or the path of "
                                      "a Git repository)\n")
        f = os.path.join(self.tmp, "file")
        open(f, "w").close()
        res = self.dry(f)
        self.assertEqual(res.err, f"gitward: error: {f} is not a directory (--repo takes a URL or a Git repository)\n")

    def test_a_url_without_scheme_is_said_to_be_read_as_ssh(self):
        port = free_port()  # nothing listens there
        url = f"127.0.0.1:{port}/git/x.git"
        res = self.dry(url)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err, f"gitward: error: {url}: cannot reach the remote: failed to connect to 127.0.0.1: "
                                  f"Connection refused (no scheme: read as scp-like SSH to 127.0.0.1, path "
                                  f"\"{port}/git/x.git\"; give http://{url} for HTTP, or ssh://{url} for SSH on that "
                                  "port)\n")

    def test_ref_head_and_short_commit_ids(self):
        r = self.base()
        for ref, shown in (("HEAD", "main"), (self.head[:7], self.head[:7]), (self.head[:12], self.head[:12])):
            res = self.dry(r.path, "--ref", ref, "--output", "json")
            self.assertEqual(res.rc, 2, res)
            self.assertEqual((res.json()["commit"], res.json()["ref"]), (self.head, shown))
        res = self.dry(r.path, "--ref", "nosuch")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err, f'gitward: error: ref "nosuch" not found in {r.path} (no such branch, tag or '
                                  'commit): give a branch, a tag or a commit id (at least 7 digits)\n')


class Usage(unittest.TestCase):
    def check(self, args, err, rc=64):
        res = run(*args)
        self.assertEqual(res.rc, rc, res)
        self.assertEqual(res.err, err)
        self.assertEqual(res.out, "")

    def test_did_you_mean_for_commands_and_flags(self):
        self.check(["reconcil"], "gitward: unknown command \"reconcil\" (did you mean \"reconcile\"?)\n"
                                 "Run 'gitward --help' for the commands.\n")
        self.check(["reconcile", "--dryrun", "--repo", "x"],
                   "gitward: unknown option \"--dryrun\" (did you mean \"--dry-run\"?)\n" + HINT)
        self.check(["status", "--outptu", "json"], "gitward: unknown option \"--outptu\" (did you mean \"--output\"?)\n"
                                                   "Run 'gitward status --help' for its options.\n")
        self.check(["reconcile", "dry-run"], "gitward: unexpected argument \"dry-run\" (did you mean \"--dry-run\"?)\n"
                   + HINT)
        self.check(["nosuch"], "gitward: unknown command \"nosuch\"\nRun 'gitward --help' for the commands.\n")
        self.check(["--repo", "x"], "gitward: \"--repo\": give a command first, then its options\n"
                                    "Run 'gitward --help' for the commands.\n")

    def test_a_missing_value_names_the_option(self):
        self.check(["reconcile", "--repo"], "gitward: --repo needs a value\n" + HINT)
        self.check(["agent", "--repo", "x", "--interval"],
                   "gitward: --interval needs a value\nRun 'gitward agent --help' for its options.\n")
        self.check(["status", "-o"], "gitward: -o (--output) needs a value\n"
                                     "Run 'gitward status --help' for its options.\n")
        self.check(["reconcile", "--dry-run=yes"], "gitward: --dry-run takes no value\n" + HINT)

    def test_usage_errors_exit_64_for_every_command(self):
        self.check(["reconcile", "--dry-run"],
                   "gitward: --repo is required: the Git repository to read (URL or local path)\n" + HINT)
        self.check(["reconcile", "--repo", "x", "--interval", "soon"],
                   "gitward: --interval: expected a duration of at least 100ms like 30s, got \"soon\"\n" + HINT)
        self.check(["reconcile", "--repo", "x", "--output", "yaml"],
                   "gitward: --output: expected text, json, markdown or github, got \"yaml\"\n")
        # --config is gitward's own input: its problems are gitward's errors (exit 1)
        self.check(["reconcile", "--repo", "x", "--config", "/nonexistent/gw.yaml"],
                   "gitward: error: --config /nonexistent/gw.yaml: cannot open: No such file or directory\n", rc=1)
        # only the formats the command takes
        self.check(["status", "--output", "yaml"], "gitward: --output: expected text or json, got \"yaml\"\n")
        self.check(["validate", "--output", "yaml", "x"],
                   "gitward: --output: expected text, json or github, got \"yaml\"\n")
        self.check(["validate"], "gitward: validate needs at least one PATH (a manifest file or a folder)\n"
                                 "Run 'gitward validate --help' for its options.\n")
        self.check(["validate", "--bogus", "x"], "gitward: unknown option \"--bogus\"\n"
                                                 "Run 'gitward validate --help' for its options.\n")
        self.check(["status", "extra"], "gitward: unexpected argument \"extra\"\n"
                                        "Run 'gitward status --help' for its options.\n")
        self.check(["version", "foo"], "gitward: unexpected argument \"foo\": version takes none\n"
                                       "Run 'gitward version --help' for its options.\n")
        self.check(["schema", "--pretty"], "gitward: unknown option \"--pretty\"\n"
                                           "Run 'gitward schema --help' for its options.\n")
        res = run()
        self.assertEqual(res.rc, 64)
        self.assertIn("64 usage error", res.err)

    def test_help_is_usage_not_output(self):
        res = run("schema", "--help")
        self.assertEqual((res.rc, res.err), (0, ""))
        self.assertTrue(res.out.startswith("usage: gitward schema\n"), res.out)
        self.assertNotIn("$schema", res.out)
        res = run("version", "--help")
        self.assertEqual(res.rc, 0)
        self.assertTrue(res.out.startswith("usage: gitward version [--output text|json]\n"), res.out)
        self.assertNotIn("libgit2 1", res.out)
        res = run("--help")
        self.assertIn("Exit status: 0 success, 1 error, 2 changes pending (reconcile --dry-run),\n64 usage error",
                      res.out)


class Logs(TempDirTest):
    def test_text_logs_carry_millisecond_timestamps_unless_under_journald(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        head = r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        pid = records(self.state)["a"]["pid"]
        self.assertRegex(res.err, rf"^{TS} info Process/a: create: started pid {pid}\n$")
        # replace it: the stop names the pid
        r.write("a.yaml", proc_yaml("a", extra="  env: {V: \"2\"}\n"))
        r.commit()
        # under journald: JOURNAL_STREAM names stderr's device and inode
        err_path = os.path.join(self.tmp, "journal")
        with open(err_path, "w") as err:
            st = os.fstat(err.fileno())
            env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            rc = subprocess.run([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, timeout=120).returncode
        with open(err_path) as f:
            err = f.read()
        self.assertEqual(rc, 0, err)
        self.assertIn(f"<6>info Process/a: update: stopping pid {pid}\n", err)
        self.assertNotRegex(err, TS)
        del head

    def test_json_logs_have_milliseconds_and_fields(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        head = r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--log-format", "json")
        self.assertEqual(res.rc, 0, res)
        line = json.loads(res.err)
        self.assertRegex(line["time"], rf"^{TS}$")
        pid = records(self.state)["a"]["pid"]
        self.assertEqual({k: v for k, v in line.items() if k not in ("time", "duration_ms")},
                         {"level": "info", "resource": "Process/a", "kind": "Process", "name": "a",
                          "action": "create", "commit": head, "msg": f"create: started pid {pid}"})
        self.assertIsInstance(line["duration_ms"], int)

    def test_health_failures_never_count_past_retries(self):
        r = self.repo()
        # the lines are /bin/false's status: a probe timeout a loaded machine
        # cannot trip, or they would tell the timeout
        r.write("h.yaml", proc_yaml("h", extra="  healthCheck:\n    exec: {command: [\"/bin/false\"]}\n"
                                    "    interval: 5s\n    timeout: 5s\n    retries: 2\n"))
        r.commit()
        log = os.path.join(self.tmp, "agent.log")
        with open(log, "w") as fh:
            p = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--listen", "off",
                                  "--interval", "300ms", "--splay", "0"], stderr=fh, stdout=fh)
        try:
            def text():
                with open(log) as fh:
                    return fh.read()
            wait_for(lambda: text().count("health check failed (2 of 2, unhealthy)") >= 2, timeout=180,
                     what="two passes past the retries")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        out = text()
        self.assertRegex(out, rf"\n{TS} warn Process/h: health check failed \(2 of 2, unhealthy\): /bin/false exited "
                              "with status 1\n")
        self.assertNotIn("(3 of 2", out)

    def test_a_taken_port_is_told_once_with_the_next_step(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            res = run("agent", "--repo", r.path, "--state-dir", self.state, "--listen", f"127.0.0.1:{port}",
                      "--log-level", "debug", timeout=60)
        finally:
            s.close()
        self.assertEqual(res.rc, 1, res)
        self.assertNotIn("Failed to bind", res.err)
        self.assertTrue(res.err.endswith(
            f"gitward: error: --listen 127.0.0.1:{port}: the port is in use (another gitward agent?); choose "
            "another ADDR:PORT or \"off\"\n"), res.err)


class DefaultStateDir(TempDirTest):
    def test_an_error_naming_the_default_state_dir_says_so(self):
        """As a user (nobody, when the tests run as root) whose $HOME does
        not exist, like system users': the error names the folder, says
        that it comes from the default state dir and how to choose one."""
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        cmd = [GITWARD]
        if os.geteuid() == 0:
            os.chmod(self.tmp, 0o755)
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary_for_anyone(self.tmp)]
        env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"}
        rule = ("/nonexistent/.local/state/gitward is the default state dir for a user other than root: "
                "$HOME/.local/state/gitward, or $XDG_STATE_HOME/gitward when set")
        cp = subprocess.run(cmd + ["reconcile", "--repo", r.path], capture_output=True, text=True, timeout=60,
                            cwd="/", env=env)
        self.assertEqual((cp.returncode, cp.stderr), (1, "gitward: error: /nonexistent: cannot create directory: "
                                                         f"Permission denied ({rule}; choose one with --state-dir "
                                                         "DIR)\n"))
        cp = subprocess.run(cmd + ["status"], capture_output=True, text=True, timeout=60, cwd="/", env=env)
        self.assertEqual((cp.returncode, cp.stderr), (1, "gitward: error: /nonexistent/.local/state/gitward: no such "
                                                         "state dir: no gitward has used it (give the --state-dir of "
                                                         f"the node's agent) ({rule})\n"))
        # a state dir someone chose is not the default
        cp = subprocess.run(cmd + ["status", "--state-dir", "/nonexistent/x"], capture_output=True, text=True,
                            timeout=60, cwd="/", env=env)
        self.assertEqual(cp.stderr, "gitward: error: /nonexistent/x: no such state dir: no gitward has used it (give "
                                    "the --state-dir of the node's agent)\n")


class NoManifest(AgentBase):
    """No quiet success on nothing: a repository or --path without any
    manifest is warned about by every command that reads it, and reconcile's
    summary says so (exit codes unchanged)."""
    WARN = "gitward: warning: no manifest in {} (no *.yaml or *.yml file)\n"

    def test_every_command_warns_and_reconcile_says_so(self):
        r = self.repo()
        r.write("README.md", "no manifest here\n")
        r.write("docs/notes.txt", "nor here\n")
        head = r.commit()
        res = run("validate", r.path)
        self.assertEqual((res.rc, res.out, res.err), (0, "0 resources in 0 files: valid.\n", self.WARN.format(r.path)))
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state)
        self.assertEqual((res.rc, res.err), (0, self.WARN.format("the repository")), res)
        res = run("diff", "--repo", r.path, "--state-dir", self.state, "--base", head)
        self.assertEqual((res.rc, res.err), (0, self.WARN.format("the repository")), res)
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state)
        self.assertEqual((res.rc, res.err), (0, self.WARN.format("the repository")), res)
        self.assertEqual(res.out, "Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n"
                                  "Applied: 0 ok, 0 failed, 0 waiting. Converged, but no manifest in the repository "
                                  "(no *.yaml or *.yml file).\n")
        # one --path of two is empty: that one is named
        r.write("apps/a.yaml", proc_yaml("a"))
        r.commit()
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--path", "apps",
                  "--path", "./docs/")
        self.assertEqual((res.rc, res.err), (2, self.WARN.format("--path docs")), res)
        # everything left out by an exclusion: said so
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--exclude", "apps/")
        self.assertEqual(res.err, "gitward: warning: no manifest in the repository (no *.yaml or *.yml file that "
                                  ".gitwardignore and --exclude keep)\n", res)
        # a repository with manifests: no warning
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state)
        self.assertEqual((res.rc, res.err), (2, ""), res)

    def test_the_agent_warns_once_per_commit(self):
        r = self.repo()
        r.write("README.md", "no manifest here\n")
        head = r.commit()
        a = self.agent(r, "--interval", "1h")
        line = f" warn commit {head[:12]}: no manifest in the repository (no *.yaml or *.yml file)\n"
        wait_for(lambda: line in self.log(), what="the warning")
        a.send_signal(signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= 2, what="a second pass")
        self.assertEqual(self.log().count(line), 1, self.log())


def records(state):
    d = os.path.join(state, "run", "process")
    out = {}
    for f in os.listdir(d):
        if f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                out[f[:-5]] = json.load(fh)
    return out


class ReadOnly(TempDirTest):
    def test_read_only_commands_create_nothing(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        tree = os.path.join(self.tmp, "empty")
        os.makedirs(tree)
        env = {"HOME": os.path.join(tree, "home"), "XDG_STATE_HOME": os.path.join(tree, "xdg-state"),
               "XDG_RUNTIME_DIR": os.path.join(tree, "xdg-run"), "XDG_CACHE_HOME": os.path.join(tree, "xdg-cache"),
               "XDG_CONFIG_HOME": os.path.join(tree, "xdg-config"), "TMPDIR": tree}
        defaults = [d for d in ("/var/lib/gitward", "/run/gitward", "/var/log/gitward") if not os.path.exists(d)]
        sd = os.path.join(tree, "sd")
        for args, rc in ((["validate", r.path], 0), (["status"], 1), (["status", "--state-dir", sd], 1),
                         (["version"], 0), (["schema"], 0), (["reconcile", "--dry-run", "--repo", r.path], 2),
                         (["reconcile", "--dry-run", "--repo", r.path, "--state-dir", sd], 2),
                         (["reconcile", "--dry-run", "--repo", r.path, "--output", "json"], 2)):
            res = run(*args, env=env, cwd=tree)
            self.assertEqual(res.rc, rc, (args, res))
            self.assertEqual(os.listdir(tree), [], args)
            for d in defaults:
                self.assertFalse(os.path.exists(d), (args, d))


MAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../contrib/man")


class ManPages(unittest.TestCase):
    def render(self, page):
        cp = subprocess.run(["groff", "-ww", "-man", "-Tutf8", os.path.join(MAN, page)], capture_output=True,
                            timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"})
        self.assertEqual((cp.returncode, cp.stderr.decode()), (0, ""), page)
        return re.sub(r".\x08", "", cp.stdout.decode())  # overstrike bold and underline

    def test_pages_render_without_warnings(self):
        self.render("gitward-manifests.5")
        text = self.render("gitward.1")
        for section in ("COMMANDS", "OPTIONS", "EXIT STATUS", "SIGNALS", "FILES", "ENVIRONMENT", "EXAMPLES"):
            self.assertRegex(text, rf"\n{section}\n", section)
        self.assertIn("gitward-manifests(5)", text)

    def test_every_option_of_the_usage_is_in_the_page(self):
        text = self.render("gitward.1").replace("\u2010", "-")
        for cmd in ("reconcile", "agent", "validate", "status"):
            for opt in re.findall(r"^  (--[a-z-]+)", run(cmd, "--help").out, re.M):
                self.assertIn(opt, text, f"{cmd} {opt}")
        for cmd in ("reconcile", "agent", "validate", "status", "schema", "version"):
            self.assertIn(f"gitward {cmd}", text)


class Progress(TempDirTest):
    def five(self):
        r = self.repo()
        for n in "abcde":
            r.write(f"{n}.yaml", proc_yaml(n))
        r.commit()
        return r

    def test_progress_on_a_terminal(self):
        r = self.five()
        master, slave = pty.openpty()
        p = subprocess.Popen([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state],
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        out = p.stdout.read().decode()
        p.stdout.close()
        self.assertEqual(p.wait(timeout=60), 0, err)
        os.close(master)
        err = err.decode()
        self.assertIn("applying: 5 of 5 resources done\r\n", err)
        self.assertIn("\r\x1b[Kapplying: 1 of 5 resources done", err)
        self.assertNotIn("resources done", out)

    def test_no_progress_in_pipes_or_json(self):
        r = self.five()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertNotIn("resources done", res.err + res.out)
        self.assertNotIn("\x1b", res.err + res.out)


if __name__ == "__main__":
    unittest.main()
