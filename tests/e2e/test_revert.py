"""--auto-revert (issue 27): a new commit whose created or updated resources
are not running and healthy within --healthy-deadline of its first apply is
reverted — the node goes back to the last commit whose changes ran healthy,
the bad commit is recorded `reverted` and not applied again, across agent
restarts, until the ref moves. Real agent, real processes, real health
checks; the waits are bounds met only on failure."""
import os
import re
import time

from gwtest import pid_alive, proc_yaml, run, stop, wait_for
from test_events import Receiver
from test_operate import OperateBase

BOUND = 120.0
GOOD = "  healthCheck:\n    exec: {command: [\"/bin/true\"]}\n    interval: 1s\n    timeout: 1s\n"
BAD = "  healthCheck:\n    exec: {command: [\"/bin/false\"]}\n    interval: 1s\n    timeout: 1s\n    retries: 1\n"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class RevertBase(OperateBase):
    def web(self, r, seconds, health, msg):
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", seconds), extra=health))
        return r.commit(msg)

    def running(self, seconds):
        """web's pid when it runs /bin/sleep seconds (the spec of one commit)"""
        pid = self.pids().get("web")
        return pid if pid and pid_alive(pid) and seconds.encode() in cmdline(pid) else None

    def state_or_empty(self):
        try:
            return self.state_json()
        except (OSError, ValueError):
            return {}


class AgentRevert(RevertBase):
    def test_a_commit_never_healthy_is_reverted_and_not_tried_again_after_a_restart_until_the_ref_moves(self):
        r = self.repo()
        c1 = self.web(r, "3601", GOOD, "c1")
        rx = Receiver()
        self.addCleanup(rx.close)
        args = ("--path", "apps", "--interval", "1s", "--splay", "0", "--auto-revert", "--healthy-deadline", "4s",
                "--notify", rx.url)
        a = self.agent(r, *args)
        wait_for(lambda: self.state_or_empty().get("rollout", {}).get("good_commit") == c1,
                 timeout=BOUND, what="c1 ran healthy")
        self.assertTrue(self.running("3601"))

        c2 = self.web(r, "3602", BAD, "c2: never healthy")
        t0 = time.monotonic()
        # the agent applies c2 (a new pid running c2's spec), then goes back
        wait_for(lambda: (self.state_or_empty().get("reverted") or {}).get("commit") == c2, timeout=BOUND,
                 what="c2 reverted")
        took = time.monotonic() - t0
        print(f"\nc2 pushed -> reverted: {took:.2f}s (deadline 4s, interval 1s)")
        self.assertIn(f"commit {c2[:12]} reverted: Process/web is", self.log())
        self.assertRegex(self.log(), r"Process/web: update: started")  # c2 was applied first
        pid = wait_for(lambda: self.running("3601"), timeout=BOUND, what="c1's web running again")
        wait_for(lambda: self.state_or_empty().get("commit") == c1, timeout=BOUND, what="c1 in force")

        # said in words: status (text, JSON, /status), the metrics; never converged
        doc = self.status()
        self.assertEqual(doc["commit"], c1)
        self.assertEqual(doc["reverted"]["commit"], c2)
        self.assertIn("Process/web is", doc["reverted"]["reason"])
        self.assertIn("not healthy within 4s", doc["reverted"]["reason"])
        self.assertRegex(doc["reverted"]["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(self.http_status(a)["reverted"]["commit"], c2)
        hist = run("history", "--output", "json", "--state-dir", self.state)
        self.assertEqual(hist.rc, 0, hist)
        entries = [(e["commit"], e["result"], e["trigger"]) for e in hist.json()["history"]]
        self.assertIn((c2, "reverted", "auto-revert"), entries)
        self.assertEqual(entries[0], (c2, "reverted", "auto-revert"), entries)  # newest first
        text = self.status_text()
        self.assertRegex(text, rf"reverted: +{c2} at \S+Z \(Process/web is .*\); not applied again until the ref moves")
        wait_for(lambda: self.status()["last_attempt_result"] == "reverted", timeout=BOUND,
                 what="a poll refused the tip")
        self.assertIn("was reverted", self.status()["last_error"])
        self.assertEqual(self.metric(a, "gitward_reverted"), 1)
        self.assertGreaterEqual(self.metric(a, 'gitward_sync_total{result="reverted"}'), 1)

        # told once, naming the bad commit, while polls (every second) and
        # heal passes (health checks every second) keep refusing it
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, timeout=BOUND, what="four more passes")
        wait_for(lambda: rx.events("reverted"), timeout=BOUND, what="the reverted event")
        reverted = rx.events("reverted")
        self.assertEqual(len(reverted), 1, [e[2] for e in rx.events()])
        self.assertEqual(reverted[0][2]["commit"], c2)
        self.assertIn("Process/web is", reverted[0][2]["message"])
        # the resource may recover (c1's web is healthy), the revert does not
        self.assertEqual([e for e in rx.events("recovered") if e[2]["message"].endswith(" ended")], [],
                         [e[2] for e in rx.events()])

        # not applied again, also by a new agent: polls go on, c1's web stays
        stop(a)
        self.assertEqual(a.returncode, 0)
        a = self.agent(r, *args)
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 4, timeout=BOUND, what="four more passes")
        self.assertEqual(self.running("3601"), pid)
        self.assertNotRegex(self.log(), r"Process/web: update")
        self.assertIn(f"commit {c2[:12]} was reverted", self.log())
        self.assertEqual(self.status()["commit"], c1)
        self.assertEqual(self.metric(a, "gitward_reverted"), 1)

        # the ref moves: the new commit is applied, the refusal ends
        c3 = self.web(r, "3603", GOOD, "c3: fixed")
        wait_for(lambda: self.running("3603"), timeout=BOUND, what="c3's web")
        wait_for(lambda: self.state_or_empty().get("rollout", {}).get("good_commit") == c3, timeout=BOUND,
                 what="c3 ran healthy")
        doc = self.status()
        self.assertEqual(doc["commit"], c3)
        self.assertIsNone(doc["reverted"])
        self.assertEqual(self.metric(a, "gitward_reverted"), 0)
        wait_for(lambda: [e for e in rx.events("applied") if e[2]["commit"] == c3], timeout=BOUND,
                 what="the applied event of c3")
        self.assertTrue([e for e in rx.events("recovered") if e[2]["message"] == "reverted ended"],
                        [e[2] for e in rx.events()])

    def test_without_auto_revert_a_bad_commit_stays_in_force(self):
        r = self.repo()
        c1 = self.web(r, "3601", GOOD, "c1")
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0")
        wait_for(lambda: self.state_or_empty().get("rollout", {}).get("good_commit") == c1,
                 timeout=BOUND, what="c1 ran healthy")
        c2 = self.web(r, "3602", BAD, "c2: never healthy")
        wait_for(lambda: self.running("3602"), timeout=BOUND, what="c2's web")
        seen = self.passes(a)
        wait_for(lambda: self.passes(a) >= seen + 6, timeout=BOUND, what="six more passes")
        doc = self.status()
        self.assertEqual(doc["commit"], c2)
        self.assertIsNone(doc["reverted"])
        self.assertIsNone(doc["healthy_deadline"])
        self.assertNotIn("reverted", self.log())

    def test_a_commit_whose_changes_turn_healthy_before_the_deadline_stays(self):
        r = self.repo()
        c1 = self.web(r, "3601", GOOD, "c1")
        # c2 adds a resource that is healthy: watched until it is, then kept
        r.write("apps/api.yaml", proc_yaml("api", ("/bin/sleep", "3700"), extra=GOOD))
        c2 = r.commit("c2")
        self.assertNotEqual(c1, c2)
        res = self.reconcile(r, "--auto-revert", "--healthy-deadline", "1m")
        self.assertEqual(res.rc, 0, res)
        st = self.state_json()
        self.assertEqual(st["rollout"]["good_commit"], c2)
        self.assertEqual(st["rollout"]["revert_at"], 0)
        self.assertIsNone(st["reverted"])


class ReconcileRevert(RevertBase):
    def test_reconcile_reverts_and_exits_1_then_refuses_the_commit_until_the_ref_moves(self):
        r = self.repo()
        c1 = self.web(r, "3601", GOOD, "c1")
        res = self.reconcile(r, "--auto-revert", "--healthy-deadline", "3s")
        self.assertEqual(res.rc, 0, res)
        pid1 = self.running("3601")
        self.assertTrue(pid1)

        c2 = self.web(r, "3602", BAD, "c2: never healthy")
        res = self.reconcile(r, "--auto-revert", "--healthy-deadline", "3s")
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"Reverted: commit {c2[:12]} reverted: Process/web is", res.out)
        self.assertNotIn("Converged.", res.out.split("Reverted:")[1])
        self.assertTrue(wait_for(lambda: self.running("3601"), timeout=BOUND, what="c1's web"))
        st = self.state_json()
        self.assertEqual(st["commit"], c1)
        self.assertEqual(st["reverted"]["commit"], c2)
        self.assertEqual(st["last_attempt_result"], "reverted")
        pid = self.running("3601")

        # again: refused at once, nothing applied, exit 1, said why
        res = self.reconcile(r, "--auto-revert", "--healthy-deadline", "3s")
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"commit {c2[:12]} was reverted", res.err)
        self.assertIn("not applied again until the ref moves", res.err)
        self.assertEqual(self.running("3601"), pid)
        self.assertEqual(self.state_json()["commit"], c1)
        # also without --auto-revert: the decision is the node's, recorded
        res = self.reconcile(r)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(self.running("3601"), pid)

        c3 = self.web(r, "3603", GOOD, "c3")
        res = self.reconcile(r, "--auto-revert", "--healthy-deadline", "3s")
        self.assertEqual(res.rc, 0, res)
        self.assertTrue(self.running("3603"))
        self.assertIsNone(self.state_json()["reverted"])
        self.assertEqual(self.state_json()["commit"], c3)

    def test_healthy_deadline_is_checked(self):
        r = self.repo()
        self.web(r, "3601", GOOD, "c1")
        for bad in ("0s", "soon", "25h"):
            res = self.reconcile(r, "--auto-revert", "--healthy-deadline", bad)
            self.assertEqual(res.rc, 64, res)
            self.assertIn("--healthy-deadline", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.state, "state.json")))
