"""A branch that moves to a commit which does not descend from the commit in
force (a force-push backwards or sideways) is refused like an invalid commit:
the commit in force stays, `status` says why and names --allow-rewind, the
metric counts result "rewind"; --allow-rewind (flag or config) accepts it.
Pins (--ref COMMIT, --ref TAG) are always allowed. Locally for `reconcile`
and its dry-runs, over a real HTTPS server for the agent."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from gitservers import GitServers
from test_events import Receiver
from gwtest import (GITWARD, LISTEN_ANY, Repo, TempDirTest, agent_port, kill_workloads, pid_alive, proc_yaml, records,
                    run, stop, wait_for)

REFUSED = "which does not descend from it (a force-push backwards or sideways): refused; the commit in force stays. " \
    "Pass --allow-rewind to accept it"


def pids(state):
    return {n: r["pid"] for n, r in records(state).items()}


def state_file(state):
    with open(os.path.join(state, "state.json")) as f:
        return json.load(f)


class Reconcile(TempDirTest):
    def two(self):
        """main at c2 (a, b) over c1 (a), applied: (repo, c1, c2)."""
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        c1 = r.commit("a")
        r.write("b.yaml", proc_yaml("b"))
        c2 = r.commit("b")
        self.assertEqual(self.reconcile(r).rc, 0)
        self.assertEqual(state_file(self.state)["commit"], c2)
        return r, c1, c2

    def reconcile(self, r, *args):
        return run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", *args)

    def dry(self, r, *args):
        return run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1", *args)

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def assert_refused(self, res, old, new):
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"branch main moved from {old[:12]} to {new[:12]}, {REFUSED}", res.err)

    def test_branch_reset_to_an_older_commit_is_refused_then_applied_with_allow_rewind(self):
        r, c1, c2 = self.two()
        before = pids(self.state)
        r.git("reset", "-q", "--hard", c1)
        # a dry-run says so (exit 1, as for an invalid commit) and plans nothing
        res = self.dry(r, "--output", "json")
        self.assert_refused(res, c2, c1)
        doc = res.json()
        self.assertEqual((doc["commit"], doc["actions"]), (c1, []), res)
        self.assertIn(REFUSED, doc["errors"][0]["message"])
        self.assert_refused(self.reconcile(r), c2, c1)
        doc = self.status()
        self.assertEqual((doc["commit"], doc["last_attempt_result"]), (c2, "rewind"), doc)
        self.assertIn(f"branch main moved from {c2[:12]} to {c1[:12]}, {REFUSED}", doc["last_error"])
        # the workloads of the commit in force keep running, untouched
        self.assertEqual(pids(self.state), before)
        self.assertTrue(all(pid_alive(p) for p in before.values()))
        # refused again at the next pass: the refusal is not a one-off
        self.assert_refused(self.reconcile(r), c2, c1)
        # the operator accepts it: a dry-run plans the deletion of b, then it is applied
        self.assertEqual(self.dry(r, "--allow-rewind").rc, 2)
        res = self.reconcile(r, "--allow-rewind")
        self.assertEqual(res.rc, 0, res)
        doc = self.status()
        self.assertEqual((doc["commit"], doc["last_attempt_result"]), (c1, "success"), doc)
        self.assertEqual(sorted(pids(self.state)), ["a"])
        self.assertFalse(pid_alive(before["b"]))

    def test_sideways_force_push_is_refused_and_allow_rewind_in_the_config_accepts_it(self):
        r, c1, c2 = self.two()
        r.git("reset", "-q", "--hard", c1)
        r.write("c.yaml", proc_yaml("c"))
        c3 = r.commit("c, beside b")
        self.assert_refused(self.reconcile(r), c2, c3)
        self.assertEqual(sorted(pids(self.state)), ["a", "b"])
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {r.path}\nstate-dir: {self.state}\nnode: n1\nallow-rewind: true\n")
        res = run("reconcile", "--config", cfg)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual((state_file(self.state)["commit"], sorted(pids(self.state))), (c3, ["a", "c"]))

    def test_pins_are_always_allowed_and_a_branch_moving_forward_is_accepted(self):
        r, c1, c2 = self.two()
        r.git("tag", "v1", c1)
        # an older full commit id, and a tag: the operator's choice
        res = self.reconcile(r, "--ref", c1)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(state_file(self.state)["commit"], c1)
        self.assertEqual(self.reconcile(r).rc, 0)  # back to main: another ref, c2 again
        self.assertEqual(state_file(self.state)["commit"], c2)
        res = self.reconcile(r, "--ref", "v1")
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(state_file(self.state)["commit"], c1)
        # main moving forward past the commit in force, from main at c2
        self.assertEqual(self.reconcile(r).rc, 0)
        r.write("d.yaml", proc_yaml("d"))
        c4 = r.commit("d")
        res = self.reconcile(r)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(state_file(self.state)["commit"], c4)

    def test_dry_run_against_a_nodes_status_refuses_its_rewind_not_another_branch(self):
        r, c1, c2 = self.two()
        st = os.path.join(self.tmp, "status.json")
        with open(st, "w") as f:
            f.write(self.status_text())
        r.git("branch", "feature", c1)  # a pull request's branch, behind the node's main
        r.git("reset", "-q", "--hard", c1)
        other = os.path.join(self.tmp, "other-state")  # a CI machine: no state of the node
        res = run("reconcile", "--dry-run", "--against", st, "--repo", r.path, "--state-dir", other)
        self.assert_refused(res, c2, c1)
        res = run("reconcile", "--dry-run", "--against", st, "--repo", r.path, "--state-dir", other,
                  "--ref", "feature")
        self.assertEqual(res.rc, 2, res)

    def status_text(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.out

    def test_commit_in_force_missing_from_a_new_cache_is_refused(self):
        r, c1, c2 = self.two()
        r.git("reset", "-q", "--hard", c1)
        r.git("reflog", "expire", "--expire=now", "--all")
        r.git("gc", "-q", "--prune=now")
        shutil.rmtree(os.path.join(self.state, "repo.git"))  # the cache made anew: c2 is nowhere
        res = self.reconcile(r)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"branch main moved from {c2[:12]} to {c1[:12]}, and the commit in force is not in the Git "
                      "cache to tell whether it descends from it: refused", res.err)
        self.assertEqual(sorted(pids(self.state)), ["a", "b"])


class Agent(unittest.TestCase):
    """The agent over HTTPS (nginx + git http-backend on loopback)."""

    @classmethod
    def setUpClass(cls):
        cls.servers = GitServers()
        cls.servers.start()

    @classmethod
    def tearDownClass(cls):
        cls.servers.stop()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="gw-rewind-")
        self.state = os.path.join(self.tmp, "state")
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        kill_workloads(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def agent(self, url, *args):
        log = os.path.join(self.tmp, f"agent{len(self.agents)}.log")
        with open(log, "w") as f:
            p = subprocess.Popen([GITWARD, "agent", "--repo", url, "--state-dir", self.state, "--node", "n1",
                                  "--listen", LISTEN_ANY, "--interval", "1s", "--ca-file", self.servers.ca_file,
                                  *args], stdout=f, stderr=subprocess.STDOUT,
                                 env={**os.environ, "HOME": self.tmp})
        self.agents.append(p)
        p.port, p.log = agent_port(p, log), log
        return p

    def metric(self, agent, series):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=30) as r:
                text = r.read().decode()
        except (OSError, urllib.error.HTTPError):
            return None
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        return res.json() if res.rc == 0 else {}

    def test_agent_refuses_a_force_push_backwards_over_https_then_allow_rewind_applies_it(self):
        bare = self.servers.bare("rewind")
        work = Repo(os.path.join(self.tmp, "work"))
        work.write("apps/a.yaml", proc_yaml("a"))
        c1 = work.commit("a")
        work.write("apps/b.yaml", proc_yaml("b"))
        c2 = work.commit("b")
        work.git("push", "-q", bare, "main")
        url = self.servers.https_url("rewind")

        rx = Receiver()
        self.addCleanup(rx.close)
        a = self.agent(url, "--path", "apps", "--notify", rx.url)
        wait_for(lambda: self.status().get("commit") == c2 and sorted(pids(self.state)) == ["a", "b"],
                 what="c2 applied")
        before = pids(self.state)
        work.git("reset", "-q", "--hard", c1)
        work.git("push", "-q", "-f", bare, "main")
        wait_for(lambda: (self.metric(a, 'gitward_sync_total{result="rewind"}') or 0) >= 1,
                 what="a pass counted as rewind")
        doc = wait_for(lambda: (d := self.status()).get("last_attempt_result") == "rewind" and d, what="status")
        self.assertEqual(doc["commit"], c2)
        self.assertIn(f"branch main moved from {c2[:12]} to {c1[:12]}, {REFUSED}", doc["last_error"])
        self.assertEqual(doc["remote_commit"], c1)
        self.assertEqual(self.metric(a, 'gitward_remote_commit_invalid{ref="main"}'), 1.0)
        # refused on every pass, and the commit in force is still healed
        wait_for(lambda: (self.metric(a, 'gitward_sync_total{result="rewind"}') or 0) >= 3,
                 what="three passes refused")
        self.assertEqual(pids(self.state), before)
        self.assertTrue(all(pid_alive(p) for p in before.values()))
        # told once, naming the refused tip, not once per pass
        refused = wait_for(lambda: rx.events("rewind-refused"), what="the rewind-refused event")
        self.assertEqual(len(refused), 1, [e[2] for e in rx.events()])
        self.assertEqual(refused[0][2]["commit"], c1)
        self.assertIn("--allow-rewind", refused[0][2]["message"])
        stop(a)

        a = self.agent(url, "--path", "apps", "--allow-rewind")
        wait_for(lambda: self.status().get("commit") == c1 and sorted(pids(self.state)) == ["a"],
                 what="c1 applied with --allow-rewind")
        self.assertEqual(pids(self.state)["a"], before["a"])
        self.assertFalse(pid_alive(before["b"]))
        self.assertEqual(self.metric(a, 'gitward_sync_total{result="rewind"}'), 0.0)


if __name__ == "__main__":
    unittest.main()
