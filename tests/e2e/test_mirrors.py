"""End to end with several --repo (mirrors of one repository): each fetch
tries them in order until one answers. The first remote is a closed
loopback port, with credentials in its URL that must never show; the second
a file:// mirror, or a real nginx + git http-backend over HTTPS. Per-remote
errors in /metrics and status; the state dir's ownership follows the
recorded remotes (reordering is not a move, another repository is refused)."""
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

from gitservers import CI, GitServers
from gwtest import GITWARD, LISTEN_ANY, TempDirTest, agent_port, proc_yaml, run, stop, wait_for

USER, PASSWORD = "mirroruser", "s3cretMirrorPw"


def closed_port():
    """A loopback port nothing listens on: bound, read back, closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class Mirrors(TempDirTest):
    def setUp(self):
        super().setUp()
        self.port = closed_port()
        self.down = f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}/repo.git"
        self.down_shown = f"http://127.0.0.1:{self.port}/repo.git"  # as metrics and status name it
        self.down_logged = f"127.0.0.1:{self.port}/repo.git"  # messages mask the user info as ***@
        self.work = self.repo("work")
        self.work.write("a.yaml", proc_yaml("a"))
        self.c1 = self.work.commit("init")
        self.mirror = os.path.join(self.tmp, "mirror.git")
        subprocess.run(["git", "clone", "-q", "--bare", self.work.path, self.mirror], check=True, timeout=60)
        self.mirror_url = "file://" + self.mirror
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def assert_no_credentials(self, text, where):
        self.assertNotIn(PASSWORD, text, f"the password shows in {where}")
        self.assertNotIn(USER, text, f"the user shows in {where}")

    def status_json(self):
        r = run("status", "--state-dir", self.state, "--output", "json")
        self.assertEqual(r.rc, 0, r)
        self.assert_no_credentials(r.out + r.err, "status --output json")
        return r.json()

    def test_reconcile_falls_through_to_the_mirror(self):
        # a dry-run too: changes pending (exit 2), and it writes nothing but the Git cache
        r = run("reconcile", "--dry-run", "--repo", self.down, "--repo", self.mirror_url, "--state-dir", self.state,
                "--node", "n1")
        self.assertEqual(r.rc, 2, r)
        self.assertIn("+ Process/a", r.out, r)
        self.assertFalse(os.path.exists(os.path.join(self.state, "remotes.json")))
        r = run("reconcile", "--repo", self.down, "--repo", self.mirror_url, "--state-dir", self.state,
                "--node", "n1")
        self.assertEqual(r.rc, 0, r)
        self.assert_no_credentials(r.out + r.err, "reconcile's output")
        self.assertRegex(r.err, rf"warn remote 1 of 2 failed, trying the next: http://(\*+@)?{self.down_logged}: "
                                 r"cannot reach the remote")
        st = self.status_json()
        self.assertEqual(st["commit"], self.c1)
        self.assertEqual([x["url"] for x in st["remotes"]], [self.down_shown, self.mirror_url])
        self.assertIn(self.down_logged, st["remotes"][0]["last_error"])
        self.assertIsNone(st["remotes"][0]["last_success"])
        self.assertIsNone(st["remotes"][1]["last_error"])
        self.assertRegex(st["remotes"][1]["last_success"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        text = run("status", "--state-dir", self.state)
        self.assertRegex(text.out, rf"remote error: http://(\*+@)?{self.down_logged}: cannot reach", text)
        self.assert_no_credentials(text.out, "status")
        for name in os.listdir(self.state):
            p = os.path.join(self.state, name)
            if os.path.isfile(p):
                with open(p, errors="replace") as f:
                    self.assert_no_credentials(f.read(), p)

    def test_all_remotes_down_is_a_git_error_naming_each(self):
        other = closed_port()
        r = run("reconcile", "--repo", self.down, "--repo", f"http://127.0.0.1:{other}/x.git", "--state-dir",
                self.state, "--node", "n1")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("every remote failed", r.err, r)
        self.assertIn(self.down_logged, r.err)
        self.assertIn(f"127.0.0.1:{other}/x.git", r.err)
        self.assert_no_credentials(r.out + r.err, "reconcile's output")

    def test_config_file_takes_a_list(self):
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo:\n  - {self.down}\n  - {self.mirror_url}\nnode: n1\n")
        r = run("reconcile", "--config", cfg, "--state-dir", self.state)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.status_json()["commit"], self.c1)
        with open(cfg, "w") as f:
            f.write("repo:\n  - [nested]\n")
        r = run("reconcile", "--config", cfg, "--state-dir", self.state)
        self.assertEqual(r.rc, 1, r)
        self.assertIn(f"{cfg}:2:5: repo: expected a string", r.err, r)

    def test_agent_converges_and_applies_a_push_to_the_mirror(self):
        log = os.path.join(self.tmp, "agent.log")
        with open(log, "w") as f:
            a = subprocess.Popen([GITWARD, "agent", "--repo", self.down, "--repo", self.mirror_url, "--state-dir",
                                  self.state, "--node", "n1", "--listen", LISTEN_ANY, "--interval", "1s"],
                                 stdout=f, stderr=subprocess.STDOUT)
        self.agents.append(a)
        port = agent_port(a, log)
        wait_for(lambda: self.status_json()["commit"] == self.c1, what="the first commit applied")
        self.work.write("b.yaml", proc_yaml("b"))
        c2 = self.work.commit("add b")
        self.work.git("push", "-q", self.mirror, "main")
        wait_for(lambda: self.status_json()["commit"] == c2, what="the commit pushed to the mirror applied")

        def errors():
            _, body = get(port, "/metrics")
            for line in body.splitlines():
                if line.startswith(f'gitward_git_fetch_errors_total{{remote="{self.down_shown}"}} '):
                    return int(line.split()[-1]) >= 2 and body
            return None
        body = wait_for(errors, what="the first remote's fetch errors counted")
        self.assertIn(f'gitward_git_fetch_errors_total{{remote="{self.mirror_url}"}} 0', body)
        self.assert_no_credentials(body, "/metrics")
        # the {remote} series beside the passes' own: still valid exposition text
        promtool = shutil.which("promtool")
        if promtool or CI:
            self.assertIsNotNone(promtool, "promtool is not installed (Debian package prometheus); CI needs it")
            r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        code, st = get(port, "/status")
        self.assertEqual(code, 200)
        self.assert_no_credentials(st, "GET /status")
        self.assertEqual([x["url"] for x in json.loads(st)["remotes"]], [self.down_shown, self.mirror_url])
        stop(a)
        with open(log, errors="replace") as f:
            text = f.read()
        self.assertRegex(text, rf"trying the next: http://(\*+@)?{self.down_logged}")
        self.assert_no_credentials(text, "the agent's log")

    def test_reordering_is_not_a_move_another_repository_is_refused(self):
        r = run("reconcile", "--repo", self.mirror_url, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(r.rc, 0, r)
        # a state dir of the single-URL format: one line
        with open(os.path.join(self.state, "repository")) as f:
            self.assertEqual(f.read(), self.mirror + "\n")
        # adding a mirror in front, then reordering: the same repository
        r = run("reconcile", "--repo", self.down, "--repo", self.mirror_url, "--state-dir", self.state,
                "--node", "n1")
        self.assertEqual(r.rc, 0, r)
        r = run("reconcile", "--repo", self.mirror_url, "--repo", self.down, "--state-dir", self.state,
                "--node", "n1")
        self.assertEqual(r.rc, 0, r)
        with open(os.path.join(self.state, "repository")) as f:
            self.assertEqual(f.read(), f"{self.mirror}\n{self.down_shown[:-4]}\n")
        # a completely different repository: refused, nothing touched
        other = self.repo("other")
        other.write("z.yaml", proc_yaml("z"))
        other.commit("other")
        r = run("reconcile", "--repo", other.path, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("belongs to repository", r.err, r)
        self.assertIn("--move-to-repo", r.err, r)
        r = run("reconcile", "--repo", other.path, "--state-dir", self.state, "--node", "n1", "--move-to-repo")
        self.assertEqual(r.rc, 0, r)


class HttpsMirror(TempDirTest):
    """The first remote down, the second a real nginx + git http-backend."""

    def test_https_mirror_serves_when_the_first_is_down(self):
        try:
            servers = GitServers()
            servers.start()
        except Exception as e:  # noqa: BLE001 - the tools may be missing
            if CI:
                raise
            self.skipTest(f"git servers unavailable: {e}")
        try:
            work = self.repo("work")
            work.write("a.yaml", proc_yaml("a"))
            c1 = work.commit("init")
            work.git("push", "-q", servers.bare("m"), "main")
            down = f"http://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}/repo.git"
            r = run("reconcile", "--repo", down, "--repo", servers.https_url("m"), "--ca-file", servers.ca_file,
                    "--state-dir", self.state, "--node", "n1", env={"HOME": self.tmp})
            self.assertEqual(r.rc, 0, r)
            self.assertNotIn(PASSWORD, r.out + r.err)
            st = run("status", "--state-dir", self.state, "--output", "json").json()
            self.assertEqual(st["commit"], c1)
            self.assertIsNone(st["remotes"][1]["last_error"])
            self.assertIsNotNone(st["remotes"][0]["last_error"])
        finally:
            servers.stop()
