"""Operator controls without a Git commit (issue 26): `gitward suspend` /
`resume`, `agent --mode observe|enforce` and `gitward restart KIND/NAME`,
against a real agent and real processes. A request is a file in
STATE/control; the agent watches that dir with inotify and acts on it at
once (a heal pass, no fetch), so the waits below are bounded generously and
only met on failure."""
import json
import os
import re
import signal
import time

from gwtest import pid_alive, proc_yaml, run, wait_for
from test_agent import AgentBase

# seconds: only met on failure (the agent acts within a second)
BOUND = 60.0


class OperateBase(AgentBase):
    def web_repo(self, names=("web",)):
        r = self.repo()
        for n in names:
            r.write(f"apps/{n}.yaml", proc_yaml(n, ("/bin/sleep", "3600")))
        r.commit("web")
        return r

    def status_web(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        return next((x for x in res.json()["resources"] if x["name"] == "web"), {}) if res.rc == 0 else {}

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def status_text(self):
        res = run("status", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.out

    def http_status(self, agent):
        code, body = self.http(agent, "/status")
        self.assertEqual(code, 200, body)
        return json.loads(body)

    def metric(self, agent, series):
        _, body = self.http(agent, "/metrics")
        m = re.search("^" + re.escape(series) + r" (\S+)$", body, re.M)
        return float(m.group(1)) if m else None

    def pending(self, doc):
        return {(p["kind"], p["name"], p["action"]) for p in doc.get("pending", [])}

    def new_pid(self, old, bound=BOUND):
        return wait_for(lambda: (p := self.pids().get("web")) and p != old and pid_alive(p) and p,
                        timeout=bound, step=0.02, what="web replaced by a new pid")

    def reconcile(self, repo, *args):
        res = run("reconcile", "--repo", repo.path, "--path", "apps", "--state-dir", self.state, "--node", "n1",
                  *args)
        return res


class Suspend(OperateBase):
    def test_a_suspended_agent_heals_nothing_also_after_its_restart_and_resume_heals_at_once(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0")
        pid = wait_for(lambda: self.pids().get("web"), what="web started")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")), what="first pass recorded")

        res = run("suspend", "--reason", "disk swap \x1b[31m", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("suspended since", res.out)
        self.assertNotIn("\x1b", res.out)  # the reason is escaped when printed
        # the agent saw it: its next pass records it
        wait_for(lambda: self.state_json().get("suspended"), timeout=BOUND, what="the agent recorded the suspension")
        self.assertEqual(self.state_json()["suspended"]["reason"], "disk swap \x1b[31m")

        # across a restart of the agent: the request is a file
        from gwtest import stop
        stop(a)
        self.assertEqual(a.returncode, 0)
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0")
        wait_for(lambda: self.passes(a) >= 1, what="a pass of the new agent")
        self.assertTrue(pid_alive(pid))
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), what="web dead")
        seen = self.passes(a)
        # several passes (full ones every second, heal passes between) and no heal
        wait_for(lambda: self.passes(a) >= seen + 5, what="five more passes")
        self.assertEqual(self.pids().get("web"), pid, self.log())
        self.assertFalse(pid_alive(pid))
        self.assertNotRegex(self.log(), r"Process/web: restart: started")
        self.assertIn("suspended (gitward suspend)", self.log())

        # published: status, /status, metrics
        doc = self.status()
        self.assertEqual(doc["suspended"]["reason"], "disk swap \x1b[31m")
        self.assertRegex(doc["suspended"]["since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(doc["mode"], "enforce")
        self.assertIn(("Process", "web", "restart"), self.pending(doc))
        self.assertIsNone(doc["pinned"])
        hs = self.http_status(a)
        self.assertEqual(hs["suspended"]["reason"], "disk swap \x1b[31m")
        self.assertIn(("Process", "web", "restart"), self.pending(hs))
        text = self.status_text()
        self.assertRegex(text, r"suspended: +since \S+Z \(disk swap \\x1b\[31m\)")
        self.assertRegex(text, r"pending: +restart Process/web")
        self.assertEqual(self.metric(a, "gitward_suspended"), 1)
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="restart"}'), 1)
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="create"}'), 0)

        t0 = time.monotonic()
        res = run("resume", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        new = self.new_pid(pid)
        took = time.monotonic() - t0
        print(f"\nresume -> web running again: {took:.2f}s")
        self.assertLess(took, BOUND)
        wait_for(lambda: self.state_json().get("suspended") is None and not self.state_json().get("pending"),
                 what="resumed and nothing pending")
        self.assertEqual(self.metric(a, "gitward_suspended"), 0)
        wait_for(lambda: "resumed (gitward resume)" in self.log(), what="the resume logged")
        self.assertTrue(pid_alive(new))
        self.assertEqual(run("resume", "--state-dir", self.state).out.strip(), "not suspended")

    def test_control_files_are_checked_when_read_back(self):
        """A suspend file that is not one still suspends (the safe side),
        shown for what it is; a restart request through a symlink or with a
        bad name is ignored."""
        r = self.web_repo()
        self.assertEqual(self.reconcile(r).rc, 0)
        pid = self.pids()["web"]
        ctl = os.path.join(self.state, "control")
        os.makedirs(os.path.join(ctl, "restart"), mode=0o700, exist_ok=True)
        with open(os.path.join(ctl, "suspend"), "w") as f:
            f.write('{"reason": 42, "since": "\x1b[2J"}')
        doc = self.status()
        self.assertEqual(doc["suspended"], {"reason": "invalid suspend file", "since": None})
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), what="web dead")
        res = self.reconcile(r)
        self.assertIn("not a suspend record", res.err)
        self.assertEqual(self.pids()["web"], pid)  # held: not restarted
        os.unlink(os.path.join(ctl, "suspend"))
        self.assertEqual(self.reconcile(r).rc, 0)
        new = self.pids()["web"]
        self.assertTrue(pid_alive(new))
        # a symlinked request and a request with a bad name: ignored, said so
        with open(os.path.join(self.tmp, "elsewhere"), "w") as f:
            f.write("{}")
        os.symlink(os.path.join(self.tmp, "elsewhere"), os.path.join(ctl, "restart", "Process.web"))
        for bad in ("Process.-x", "Bogus.web"):
            with open(os.path.join(ctl, "restart", bad), "w") as f:
                f.write("{}")
        res = self.reconcile(r)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.pids()["web"], new)
        self.assertIn("not a restart request (KIND.NAME): ignored", res.err)
        for bad in ("Process.web", "Process.-x", "Bogus.web"):
            self.assertIn(f"/control/restart/{bad}: not a restart request", res.err)

    def test_usage_and_unknown_state_dir(self):
        res = run("suspend", "--reasn", "x", "--state-dir", self.state)
        self.assertEqual(res.rc, 64, res)
        self.assertIn("did you mean", res.err)
        res = run("suspnd")
        self.assertEqual(res.rc, 64, res)
        self.assertIn('did you mean "suspend"', res.err)
        res = run("suspend", "--state-dir", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(res.rc, 1, res)
        self.assertIn("no such state dir", res.err)
        res = run("resume", "--state-dir", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(res.rc, 1, res)
        res = run("restart", "--state-dir", self.state)
        self.assertEqual(res.rc, 64, res)


class Observe(OperateBase):
    def test_observe_starts_nothing_and_publishes_the_create_enforce_creates_it(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--mode", "observe")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")) and self.state_json().get("pending"),
                 what="the first pass published pending")
        doc = self.status()
        self.assertEqual(doc["mode"], "observe")
        self.assertIsNone(doc["suspended"])
        self.assertEqual(self.pending(doc), {("Process", "web", "create")})
        self.assertEqual(self.pending(self.http_status(a)), {("Process", "web", "create")})
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="create"}'), 1)
        self.assertEqual(self.metric(a, 'gitward_mode{mode="observe"}'), 1)
        self.assertEqual(self.metric(a, 'gitward_mode{mode="enforce"}'), 0)
        text = self.status_text()
        self.assertRegex(text, r"mode: +observe")
        self.assertRegex(text, r"pending: +create Process/web")
        # a few more passes: still nothing started
        seen = self.passes(a)
        os.kill(a.pid, signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= seen + 1, what="another pass")
        self.assertEqual(self.pids(), {})
        self.assertNotIn("create: started", self.log())
        self.assertIn("mode observe (nothing is applied or healed)", self.log())

        from gwtest import stop
        stop(a)
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--mode", "enforce")
        pid = wait_for(lambda: self.pids().get("web"), what="web created in enforce mode")
        self.assertTrue(pid_alive(pid))
        wait_for(lambda: self.state_json().get("mode") == "enforce" and self.state_json().get("pending") == [],
                 what="enforce recorded, nothing pending")
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="create"}'), 0)

    def test_reconcile_in_observe_mode_applies_nothing(self):
        r = self.web_repo()
        res = self.reconcile(r, "--mode", "observe")
        self.assertEqual(res.rc, 1, res)  # not converged: the create is held
        self.assertIn("pending (observe mode): not applied", res.err)
        self.assertEqual(self.pids(), {})
        self.assertEqual(self.pending(self.status()), {("Process", "web", "create")})
        res = self.reconcile(r)
        self.assertEqual(res.rc, 0, res)
        self.assertTrue(pid_alive(self.pids()["web"]))
        self.assertEqual(self.status()["pending"], [])

    def test_a_bad_mode_is_a_usage_error(self):
        r = self.web_repo()
        res = run("agent", "--repo", r.path, "--state-dir", self.state, "--mode", "watch")
        self.assertEqual(res.rc, 64, res)
        self.assertIn("enforce or observe", res.err)


class Restart(OperateBase):
    def test_restart_with_an_agent_replaces_it_at_once(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1h")
        pid = wait_for(lambda: self.pids().get("web"), what="web started")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")), what="first pass recorded")
        t0 = time.monotonic()
        res = run("restart", "Process/web", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        new = self.new_pid(pid)
        print(f"\nrestart -> new pid: {time.monotonic() - t0:.2f}s")
        wait_for(lambda: not pid_alive(pid), what="the old pid gone (or a zombie)")
        self.assertTrue(pid_alive(new))
        # the run record shows the new pid a moment before the agent logs it
        wait_for(lambda: re.search(r"Process/web: planned restart: requested by gitward restart\n(.*\n)*.*"
                                   r"Process/web: restart: started pid %d\n" % new, self.log()),
                 what="the restart logged")
        # done: the request is gone, and it is not done twice
        ctl = os.path.join(self.state, "control", "restart")
        wait_for(lambda: os.listdir(ctl) == [], what="the request removed")
        last = wait_for(lambda: (self.status_web().get("last_action") or {}).get("trigger") == "restart"
                        and self.status_web()["last_action"], what="the restart recorded with its trigger")
        self.assertEqual(last["action"], "restart")
        self.assertEqual(oct(os.stat(os.path.join(self.state, "control")).st_mode & 0o777), "0o700")
        # the count is read before the signal: a quick pass after it would be missed
        seen = self.passes(a)
        os.kill(a.pid, signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= seen + 1, what="another pass")
        self.assertEqual(self.pids().get("web"), new)

    def test_restart_without_an_agent_is_done_by_the_next_reconcile(self):
        r = self.web_repo(("web", "db"))
        res = self.reconcile(r)
        self.assertEqual(res.rc, 0, res)
        pid = self.pids()["web"]
        db = self.pids()["db"]
        res = run("restart", "Process/web", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("next reconcile", res.out)
        self.assertEqual(os.listdir(os.path.join(self.state, "control", "restart")), ["Process.web"])
        self.assertEqual(self.pids()["web"], pid)  # recorded only
        res = self.reconcile(r)
        self.assertEqual(res.rc, 0, res)
        self.assertRegex(res.out, r"Process/web +restart +requested by gitward restart")
        new = self.pids()["web"]
        self.assertNotEqual(new, pid)
        self.assertTrue(pid_alive(new))
        self.assertEqual(self.pids()["db"], db)  # only the one asked for
        self.assertEqual(os.listdir(os.path.join(self.state, "control", "restart")), [])
        # recorded with its trigger: status shows why each was last touched
        st = {x["name"]: x for x in json.loads(run("status", "--output", "json", "--state-dir", self.state).out)
              ["resources"]}
        self.assertEqual({k: st["web"]["last_action"][k] for k in ("action", "trigger")},
                         {"action": "restart", "trigger": "restart"}, st["web"])
        self.assertRegex(st["web"]["last_action"]["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual({k: st["db"]["last_action"][k] for k in ("action", "trigger")},
                         {"action": "create", "trigger": "commit"}, st["db"])
        with open(os.path.join(self.state, "state.json")) as f:
            rec = {x["name"]: x for x in json.load(f)["resources"]}
        self.assertEqual(rec["web"]["last_action"]["trigger"], "restart")
        self.assertIsInstance(rec["web"]["last_action"]["at"], int)
        res = self.reconcile(r)
        self.assertEqual(self.pids()["web"], new)

    def test_an_unknown_resource_is_refused_with_a_did_you_mean(self):
        r = self.web_repo()
        self.assertEqual(self.reconcile(r).rc, 0)
        res = run("restart", "Process/wbe", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("did you mean Process/web", res.err)
        res = run("restart", "web", "--state-dir", self.state)
        self.assertEqual(res.rc, 64, res)
        self.assertFalse(os.listdir(os.path.join(self.state, "control", "restart"))
                         if os.path.isdir(os.path.join(self.state, "control", "restart")) else [])

    def test_a_restart_while_suspended_stays_pending_until_resume(self):
        r = self.web_repo()
        a = self.agent(r, "--path", "apps", "--interval", "1h")
        pid = wait_for(lambda: self.pids().get("web"), what="web started")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")), what="first pass recorded")
        self.assertEqual(run("suspend", "--state-dir", self.state).rc, 0)
        wait_for(lambda: self.state_json().get("suspended"), what="suspension recorded")
        self.assertEqual(run("restart", "Process/web", "--state-dir", self.state).rc, 0)
        wait_for(lambda: ("Process", "web", "restart") in self.pending(self.state_json()),
                 what="the restart published as pending")
        seen = self.passes(a)
        os.kill(a.pid, signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= seen + 1, what="another pass")
        self.assertEqual(self.pids()["web"], pid)
        self.assertTrue(pid_alive(pid))
        self.assertEqual(self.metric(a, 'gitward_pending_actions{action="restart"}'), 1)
        self.assertEqual(run("resume", "--state-dir", self.state).rc, 0)
        new = self.new_pid(pid)
        self.assertTrue(pid_alive(new))
        wait_for(lambda: not self.state_json().get("pending"), what="nothing pending")


class Container(OperateBase):
    """Real Podman (podman_env), one private service for the class."""

    @classmethod
    def setUpClass(cls):
        import podman_env
        cls.env = podman_env
        cls.pm = podman_env.setup_module()

    @classmethod
    def tearDownClass(cls):
        cls.env.teardown_module()

    def tearDown(self):
        ids = self.pm.podman("ps", "-a", "-q", "--filter", f"label=gitward.state-dir={self.state}", check=False)
        for a in self.agents:
            from gwtest import stop
            stop(a)
        if ids:
            self.pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        super().tearDown()

    def ctr(self):
        """(id, state) of container web, or None."""
        out = self.pm.podman("ps", "-a", "--filter", f"label=gitward.state-dir={self.state}", "--format", "json")
        got = {c["Labels"]["gitward.name"]: (c["Id"][:12], c["State"]) for c in json.loads(out or "[]")}
        return got.get("web")

    def test_restart_replaces_a_container_and_suspend_stops_healing_it(self):
        from gwtest import HDR
        r = self.repo()
        r.write("apps/web.yaml", f"{HDR}kind: Container\nmetadata: {{name: web}}\nspec:\n"
                f"  image: {self.env.IMAGE}\n  command: [\"/bin/sleep\", \"3600\"]\n  network: none\n"
                "  stopTimeout: 1s\n")
        r.commit("web")
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--container-socket", self.pm.socket)
        first = wait_for(lambda: (x := self.ctr()) and x[1] == "running" and x[0], timeout=300,
                         what="container web running")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")), what="first pass recorded")

        t0 = time.monotonic()
        self.assertEqual(run("restart", "Container/web", "--state-dir", self.state).rc, 0)
        second = wait_for(lambda: (x := self.ctr()) and x[1] == "running" and x[0] != first and x[0],
                          timeout=300, what="container web replaced")
        print(f"\nrestart Container/web -> new container: {time.monotonic() - t0:.2f}s")
        wait_for(lambda: os.listdir(os.path.join(self.state, "control", "restart")) == [],
                 what="the request removed")

        res = run("suspend", "--reason", "engine upgrade", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        wait_for(lambda: self.state_json().get("suspended"), what="the suspension recorded")
        self.pm.podman("kill", "gitward-web")
        wait_for(lambda: (x := self.ctr()) and x[1] != "running", timeout=120, what="web killed")
        # the engine's event and the heal passes it causes: none restarts it
        wait_for(lambda: ("Container", "web", "restart") in self.pending(self.state_json()), timeout=300,
                 what="the heal published as pending")
        seen = self.passes(a)
        os.kill(a.pid, signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= seen + 2, timeout=300, what="two more passes")
        x = self.ctr()
        self.assertEqual(x[0], second)
        self.assertNotEqual(x[1], "running")
        self.assertEqual(self.http_status(a)["suspended"]["reason"], "engine upgrade")

        self.assertEqual(run("resume", "--state-dir", self.state).rc, 0)
        wait_for(lambda: (x := self.ctr()) and x[1] == "running", timeout=300, what="web healed after resume")


class VM(OperateBase):
    """Real QEMU under TCG (vm_guest): a tiny guest that boots in seconds."""

    @classmethod
    def setUpClass(cls):
        import shutil
        import unittest
        import test_vm
        import vm_guest
        from gwtest import CI
        if not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox"):
            if CI:
                raise RuntimeError("qemu-system-x86_64 or busybox missing")
            raise unittest.SkipTest("QEMU not installed")
        test_vm.GUEST = vm_guest.build()
        cls.vm = test_vm

    def tearDown(self):
        for a in self.agents:
            from gwtest import stop
            stop(a)
        for pid in self.vm.vm_pids(self.state).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        super().tearDown()

    def qemu(self):
        return self.vm.vm_pids(self.state).get("guest")

    def test_restart_replaces_a_vm_and_suspend_stops_healing_it(self):
        from gwtest import free_port
        r = self.repo()
        r.write("apps/guest.yaml", self.vm.vm_yaml("guest", free_port()))
        r.commit("guest")
        a = self.agent(r, "--path", "apps", "--interval", "1h")
        pid = wait_for(lambda: (p := self.qemu()) and pid_alive(p) and p, timeout=300, what="QEMU started")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")) and
                 self.state_json()["resources"][0]["health"] == "healthy", timeout=600, what="guest healthy")

        t0 = time.monotonic()
        self.assertEqual(run("restart", "VM/guest", "--state-dir", self.state).rc, 0)
        new = wait_for(lambda: (p := self.qemu()) and p != pid and pid_alive(p) and p, timeout=600,
                       what="a new QEMU")
        wait_for(lambda: not pid_alive(pid), timeout=120, what="the old QEMU gone")
        print(f"\nrestart VM/guest -> new QEMU pid: {time.monotonic() - t0:.2f}s")
        wait_for(lambda: os.listdir(os.path.join(self.state, "control", "restart")) == [], timeout=600,
                 what="the request removed (the guest healthy again)")

        self.assertEqual(run("suspend", "--state-dir", self.state).rc, 0)
        wait_for(lambda: self.state_json().get("suspended"), what="the suspension recorded")
        os.kill(new, signal.SIGKILL)
        wait_for(lambda: ("VM", "guest", "restart") in self.pending(self.state_json()), timeout=300,
                 what="the heal published as pending")
        seen = self.passes(a)
        os.kill(a.pid, signal.SIGHUP)
        wait_for(lambda: self.passes(a) >= seen + 2, timeout=300, what="two more passes")
        self.assertEqual(self.qemu(), new)
        self.assertFalse(pid_alive(new))

        self.assertEqual(run("resume", "--state-dir", self.state).rc, 0)
        wait_for(lambda: (p := self.qemu()) and p != new and pid_alive(p), timeout=600, what="healed after resume")


if __name__ == "__main__":
    import unittest
    unittest.main()
