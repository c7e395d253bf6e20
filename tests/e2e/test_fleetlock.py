"""--fleet-lock (issue 29 item 2): a FleetLock server (Zincati's protocol,
tests/e2e/fleetlock_server.py, a real HTTP server on loopback with a
semaphore of slots per group) is asked for a slot before a pass's update
or delete; without one they are held (pending, held "fleet-lock") while
creates and healing go on; the slot is given back once the pass converged
healthy. Two agents in one group with one slot never replace at once. The
waits are bounds met only on failure."""
import json
import os
import signal
import subprocess
import time

from fleetlock_server import FleetLockServer
from gwtest import (GITWARD, HDR, LISTEN_ANY, TempDirTest, agent_port, pid_alive, records, run, stop,
                    wait_for)

# seconds: only met on failure
BOUND = 120.0


def slow_stop_yaml(name, log, version):
    """A process that logs its start and the start of its stop (with its
    pid and the time), and takes a second to stop: a replacement spans a
    measurable interval of wall time. It is healthy once it has logged its
    start (its ready file, per node by ${node.name}, is written after the
    line and removed first thing on TERM): a pass converges, and gives its
    slot back, only after the new workload's start is in the log."""
    ready = os.path.join(os.path.dirname(log), "ready.${node.name}")
    script = (f'echo "start $$ $(date +%s.%N)" >> {log}; echo $$ > {ready}; '
              f'trap \'rm -f {ready}; echo "stop $$ $(date +%s.%N)" >> {log}; sleep 1; exit 0\' TERM; '
              'while :; do sleep 0.2; done')
    return (f"{HDR}kind: Process\nmetadata: {{name: {name}}}\nspec:\n"
            f"  command: [\"/bin/sh\", \"-c\", {json.dumps(script)}]\n"
            f"  env: {{VERSION: \"{version}\"}}\n  stopTimeout: 30s\n"
            f"  healthCheck:\n    exec: {{command: [\"/usr/bin/test\", \"-s\", {json.dumps(ready)}]}}\n"
            "    interval: 1s\n    timeout: 1s\n    retries: 10\n")


class FleetLockBase(TempDirTest):
    def setUp(self):
        super().setUp()
        self.server = FleetLockServer(slots=1)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            stop(p)
        self.server.close()
        super().tearDown()

    def agent(self, repo, node, *args):
        state = os.path.join(self.tmp, "state-" + node)
        log_path = os.path.join(self.tmp, f"agent-{node}.log")
        with open(log_path, "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo.path, "--state-dir", state, "--node", node,
                                  "--listen", LISTEN_ANY, "--fleet-lock", self.server.url, *args],
                                 stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        p.state, p.log_path, p.node = state, log_path, node
        p.port = agent_port(p, log_path)
        return p

    def status(self, a):
        res = run("status", "--output", "json", "--state-dir", a.state)
        return res.json() if res.rc == 0 else {}

    def pending(self, a):
        return {(p["name"], p["action"], p.get("held")) for p in self.status(a).get("pending", [])}

    def pids(self, a):
        return {n: r["pid"] for n, r in records(a.state).items()}

    def log(self, a):
        with open(a.log_path, errors="replace") as f:
            return f.read()

    def metrics(self, a):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        try:
            c.request("GET", "/metrics")
            return c.getresponse().read().decode()
        finally:
            c.close()


class TwoNodes(FleetLockBase):
    def test_two_agents_with_one_slot_never_replace_at_once(self):
        wlog = os.path.join(self.tmp, "workloads.log")
        r = self.repo()
        r.write("db.yaml", slow_stop_yaml("db", wlog, "1"))
        r.commit("db v1")
        a1 = self.agent(r, "n1", "--interval", "1s", "--splay", "0")
        a2 = self.agent(r, "n2", "--interval", "1s", "--splay", "0")
        old = {a.node: wait_for(lambda a=a: self.pids(a).get("db"), timeout=BOUND, what=f"db created on {a.node}")
               for a in (a1, a2)}
        # creates ask for no slot
        self.assertEqual(self.server.requests(), [])
        # a third holder takes the only slot: both nodes must hold the update
        self.server.handle("/v1/pre-reboot", {"fleet-lock-protocol": "true"},
                           json.dumps({"client_params": {"id": "other", "group": "default"}}).encode())
        r.write("db.yaml", slow_stop_yaml("db", wlog, "2"))
        r.commit("db v2")
        for a in (a1, a2):
            wait_for(lambda a=a: ("db", "update", "fleet-lock") in self.pending(a), timeout=BOUND,
                     what=f"{a.node} publishes the update held by the fleet lock")
            self.assertEqual(self.pids(a)["db"], old[a.node])
            self.assertTrue(pid_alive(old[a.node]))
            self.assertEqual(self.status(a).get("last_attempt_result"), "held")
        for n in ("n1", "n2"):
            refused = self.server.requests("pre-reboot", n, 409)
            self.assertTrue(refused, n)
            self.assertEqual(refused[0]["group"], "default")
            self.assertEqual(refused[0]["header"], "true")
        self.assertIn("HTTP 409: failed_lock", self.log(a1))
        self.assertRegex(self.metrics(a1),
                         r'gitward_fleet_lock_requests_total\{op="pre-reboot",result="refused"\} [1-9]')
        t_free = time.time()
        self.server.handle("/v1/steady-state", {"fleet-lock-protocol": "true"},
                           json.dumps({"client_params": {"id": "other", "group": "default"}}).encode())
        new = {a.node: wait_for(lambda a=a: (p := self.pids(a).get("db")) and p != old[a.node] and p,
                                timeout=BOUND, what=f"db replaced on {a.node}") for a in (a1, a2)}
        for a in (a1, a2):
            wait_for(lambda a=a: self.status(a).get("last_attempt_result") == "success" and
                     not self.status(a).get("pending"), timeout=BOUND, what=f"{a.node} converged")
            wait_for(lambda a=a: self.server.requests("steady-state", a.node, 200), timeout=BOUND,
                     what=f"{a.node} released its slot")
            self.assertTrue(pid_alive(new[a.node]))
            self.assertFalse(os.path.exists(os.path.join(a.state, "fleet-lock")))
        self.assertEqual(self.server.holding(), [])
        # each node's replacement (the old workload's stop to the new one's
        # start) lies inside its own slot, and the slots never overlap
        events = {}
        with open(wlog) as f:
            for line in f:
                what, pid, t = line.split()
                events[(what, int(pid))] = float(t)
        span = {}
        for n in ("n1", "n2"):
            granted = [x["t"] for x in self.server.requests("pre-reboot", n, 200) if x["t"] >= t_free]
            released = [x["t"] for x in self.server.requests("steady-state", n, 200)]
            self.assertTrue(granted, n)
            g = granted[0]
            rel = min(t for t in released if t > g)
            s, e = events[("stop", old[n])], events[("start", new[n])]
            self.assertTrue(g <= s < e <= rel, (n, g, s, e, rel))
            span[n] = (g, rel)
        first, second = sorted(span.values())
        self.assertLessEqual(first[1], second[0], span)


class Bounded(FleetLockBase):
    def test_hanging_then_failing_server_holds_updates_creates_and_heals_run(self):
        r = self.repo()
        r.write("a.yaml", f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n"
                          "  command: [\"/bin/sleep\", \"3600\"]\n  env: {V: \"1\"}\n")
        r.commit("a")
        self.server.mode = "hang"
        ag = self.agent(r, "n1", "--interval", "2s", "--splay", "0", "--git-timeout", "2s")
        pid_a = wait_for(lambda: self.pids(ag).get("a"), timeout=BOUND, what="a created")
        # an update of a and a create of b: b runs, a's update is held
        r.write("a.yaml", f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n"
                          "  command: [\"/bin/sleep\", \"3600\"]\n  env: {V: \"2\"}\n")
        r.write("b.yaml", f"{HDR}kind: Process\nmetadata: {{name: b}}\nspec:\n"
                          "  command: [\"/bin/sleep\", \"3600\"]\n")
        r.commit("a v2, b")
        # the pass that asked a hanging server ends (bounded by --git-timeout)
        wait_for(lambda: ("a", "update", "fleet-lock") in self.pending(ag), timeout=BOUND,
                 what="a's update held while the lock server hangs")
        pid_b = wait_for(lambda: self.pids(ag).get("b"), timeout=BOUND, what="b created")
        self.assertEqual(self.pids(ag)["a"], pid_a)
        self.assertTrue(self.server.requests("pre-reboot", "n1", None))
        self.assertIn("fleet lock pre-reboot at http://127.0.0.1", self.log(ag))
        self.assertRegex(self.metrics(ag),
                         r'gitward_fleet_lock_requests_total\{op="pre-reboot",result="error"\} [1-9]')
        # healing goes on while the server hangs
        os.kill(pid_b, signal.SIGKILL)
        wait_for(lambda: (p := self.pids(ag).get("b")) and p != pid_b and pid_alive(p), timeout=BOUND,
                 what="b restarted while the lock server hangs")
        self.assertEqual(self.pids(ag)["a"], pid_a)
        # a server that answers 500: still held, retried each pass
        self.server.mode = "error"
        wait_for(lambda: self.server.requests("pre-reboot", "n1", 500), timeout=BOUND, what="a 500 answer")
        n500 = len(self.server.requests("pre-reboot", "n1", 500))
        wait_for(lambda: len(self.server.requests("pre-reboot", "n1", 500)) > n500, timeout=BOUND,
                 what="the lock asked again next pass")
        self.assertIn(("a", "update", "fleet-lock"), self.pending(ag))
        self.assertEqual(self.pids(ag)["a"], pid_a)
        self.assertIn("HTTP 500: internal_error (told to fail)", self.log(ag))
        # granted: applied, then released
        self.server.mode = "normal"
        wait_for(lambda: (p := self.pids(ag).get("a")) and p != pid_a and pid_alive(p), timeout=BOUND,
                 what="a's update applied once the slot is granted")
        wait_for(lambda: self.server.requests("steady-state", "n1", 200), timeout=BOUND, what="slot released")
        self.assertEqual(self.server.holding(), [])
        wait_for(lambda: not self.status(ag).get("pending"), timeout=BOUND, what="nothing pending")


class Restart(FleetLockBase):
    def test_a_slot_taken_before_a_restart_is_released_after_it(self):
        flag = os.path.join(self.tmp, "healthy")
        open(flag, "w").close()

        def a_yaml(v):
            return (f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n"
                    f"  command: [\"/bin/sleep\", \"3600\"]\n  env: {{V: \"{v}\"}}\n"
                    f"  healthCheck:\n    exec: {{command: [\"/usr/bin/test\", \"-e\", \"{flag}\"]}}\n"
                    "    interval: 1s\n    timeout: 1s\n    retries: 1\n")
        r = self.repo()
        r.write("a.yaml", a_yaml("1"))
        r.commit("a")
        ag = self.agent(r, "n1", "--interval", "1s", "--splay", "0")
        wait_for(lambda: self.status(ag).get("last_attempt_result") == "success", timeout=BOUND, what="a healthy")
        # the update takes the slot but does not run healthy: the slot stays taken
        os.unlink(flag)
        r.write("a.yaml", a_yaml("2"))
        r.commit("a v2")
        wait_for(lambda: self.server.requests("pre-reboot", "n1", 200), timeout=BOUND, what="slot granted")
        wait_for(lambda: os.path.exists(os.path.join(ag.state, "fleet-lock")), timeout=BOUND, what="slot marked")
        stop(ag)
        self.assertEqual(self.server.holding(), ["n1"])
        self.assertEqual(self.server.requests("steady-state"), [])
        # healthy again, with nothing left to update: the restarted agent gives the slot back
        open(flag, "w").close()
        ag = self.agent(r, "n1", "--interval", "1s", "--splay", "0")
        wait_for(lambda: self.server.requests("steady-state", "n1", 200), timeout=BOUND,
                 what="the slot released after the restart")
        self.assertEqual(self.server.holding(), [])
        wait_for(lambda: not os.path.exists(os.path.join(ag.state, "fleet-lock")), timeout=BOUND,
                 what="the marker removed")


class Options(TempDirTest):
    def test_bad_fleet_lock_url_is_a_usage_error(self):
        r = self.repo()
        r.write("a.yaml", f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n  command: [\"/bin/true\"]\n")
        r.commit()
        for cmd in ("agent", "reconcile"):
            res = run(cmd, "--repo", r.path, "--state-dir", self.state, "--fleet-lock", "ftp://127.0.0.1/")
            self.assertEqual(res.rc, 64, res)
            self.assertIn("--fleet-lock: expected an http:// or https:// URL", res.err)
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {r.path}\nfleet-lock: 127.0.0.1:8080\n")
        # a bad value in the file is a configuration error (exit 1, as for every option) at file:line:col
        res = run("reconcile", "--config", cfg, "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"{cfg}:2:13: --fleet-lock: expected an http:// or https:// URL", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.state, "state.json")))

    def test_reconcile_with_the_lock_from_the_config_file_takes_and_releases_a_slot(self):
        server = FleetLockServer(slots=1)
        self.addCleanup(server.close)
        r = self.repo()
        r.write("a.yaml", f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n"
                          "  command: [\"/bin/sleep\", \"3600\"]\n  env: {V: \"1\"}\n")
        r.commit()
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {r.path}\nnode: n7\nfleet-lock: {server.url}/\nfleet-lock-group: workers\n")
        res = run("reconcile", "--config", cfg, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(server.requests(), [])  # a create asks for no slot
        r.write("a.yaml", f"{HDR}kind: Process\nmetadata: {{name: a}}\nspec:\n"
                          "  command: [\"/bin/sleep\", \"3600\"]\n  env: {V: \"2\"}\n")
        r.commit()
        res = run("reconcile", "--config", cfg, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual([(x["op"], x["id"], x["group"], x["status"]) for x in server.requests()],
                         [("pre-reboot", "n7", "workers", 200), ("steady-state", "n7", "workers", 200)])
        self.assertEqual(server.holding("workers"), [])


if __name__ == "__main__":
    import unittest
    unittest.main()
