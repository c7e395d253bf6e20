"""End to end on real processes: `reconcile` and `agent` converge, replace,
prune, restart, adopt, and survive being killed themselves."""
import hashlib
import hmac
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.request

from gwtest import agent_port, LISTEN_ANY, GITWARD, HDR, TempDirTest, pid_alive, proc_yaml, records, run, wait_for, stop



def environ_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def cmdline_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def pids_with_env(marker):
    """Every live process whose environment holds marker."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and marker.encode() in environ_of(int(d)).split(b"\0") and pid_alive(int(d)):
            out.append(int(d))
    return out


class Base(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", *args)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def pids(self):
        return {n: r["pid"] for n, r in records(self.state).items()}

    def agent(self, repo, *args):
        with open(os.path.join(self.tmp, "agent.log"), "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", LISTEN_ANY, *args], stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(p)
        p.port = agent_port(p, os.path.join(self.tmp, "agent.log"))
        wait_for(lambda: self.http(p, "/healthz") == (200, "ok\n"), what="agent endpoints")
        return p

    def http(self, agent, path, data=None, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{agent.port}{path}", data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def passes(self, agent):
        """Passes the agent has finished, whatever their result (/metrics)."""
        code, body = self.http(agent, "/metrics")
        self.assertEqual(code, 200)
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in body.splitlines()
                   if line.startswith("gitward_sync_total{"))

    def agent_log(self):
        with open(os.path.join(self.tmp, "agent.log")) as f:
            return f.read()

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()


class Reconcile(Base):
    def three(self):
        """Three processes; WHO names them uniquely on this host (other
        suites may run alongside)."""
        r = self.repo()
        self.tag = os.path.basename(self.tmp)
        for n in ("a", "b", "c"):
            r.write(f"{n}.yaml", proc_yaml(n, extra=f"  env: {{WHO: {n}-{self.tag}, V: \"1\"}}\n"
                                                    "  stopTimeout: 2s\n"))
        r.commit()
        return r

    def test_apply_three_then_a_second_pass_keeps_every_pid(self):
        r = self.three()
        res = self.reconcile(r, "--output", "json")
        doc = res.json()
        self.assertEqual(doc["summary"]["create"], 3)
        self.assertEqual(doc["result"], {"converged": True, "ok": 3, "failed": 0, "waiting": 0, "held": 0})
        res = self.reconcile(r, "--dry-run", expect=0)
        self.assertIn("3 unchanged", res.out)
        first = self.pids()
        self.assertEqual(sorted(first), ["a", "b", "c"])
        self.assertTrue(all(pid_alive(p) for p in first.values()))
        res = self.reconcile(r)
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 3 unchanged.", res.out)
        self.assertEqual(self.pids(), first)
        st = self.status()
        self.assertEqual(st["commit"], r.git("rev-parse", "HEAD"))
        self.assertEqual({x["name"]: x["pid"] for x in st["resources"]}, first)
        self.assertTrue(all(x["state"] == "running" for x in st["resources"]))

    def test_env_change_replaces_only_that_resource(self):
        r = self.three()
        self.reconcile(r)
        before = self.pids()
        r.write("b.yaml", proc_yaml("b", extra=f"  env: {{WHO: b-{self.tag}, V: \"2\"}}\n  stopTimeout: 2s\n"))
        r.commit()
        res = self.reconcile(r)
        self.assertIn('  ~ Process/b            update  env.V: "1" -> "2"', res.out)
        after = self.pids()
        self.assertEqual(after["a"], before["a"])
        self.assertEqual(after["c"], before["c"])
        self.assertNotEqual(after["b"], before["b"])
        self.assertFalse(pid_alive(before["b"]))
        self.assertIn(b"V=2", environ_of(after["b"]).split(b"\0"))

    def test_removed_resource_is_pruned_or_kept_with_no_prune(self):
        r = self.three()
        self.reconcile(r)
        before = self.pids()
        r.remove("c.yaml")
        r.commit()
        res = self.reconcile(r, "--no-prune")
        self.assertTrue(pid_alive(before["c"]))
        self.assertIn("c", self.pids())
        res = self.reconcile(r)
        self.assertIn("  - Process/c            delete", res.out)
        wait_for(lambda: not pid_alive(before["c"]), what="c to stop")
        self.assertEqual(sorted(self.pids()), ["a", "b"])
        self.assertEqual(sorted(x["name"] for x in self.status()["resources"]), ["a", "b"])

    def test_deletion_cycle_from_recorded_dependencies_terminates(self):
        """Issue 11, finding 1: records a -> b and b -> a (the second kept
        by --no-prune) once made the deleting pass wait forever."""
        r = self.repo()
        tag = os.path.basename(self.tmp)
        extra = f"  env: {{WHO: %s-{tag}}}\n  stopTimeout: 2s\n"
        r.write("a.yaml", proc_yaml("a", extra=extra % "a" + "  dependsOn: [b]\n"))
        r.write("b.yaml", proc_yaml("b", extra=extra % "b"))
        r.write("c.yaml", proc_yaml("c", extra=extra % "c"))
        r.commit()
        self.reconcile(r)
        first = self.pids()
        r.write("a.yaml", proc_yaml("a", extra=extra % "a" + "  nodeSelector: {role: other}\n"))
        r.write("b.yaml", proc_yaml("b", extra=extra % "b" + "  dependsOn: [a]\n"))
        r.commit()
        self.reconcile(r, "--no-prune")
        self.assertEqual(records(self.state)["a"]["depends_on"], ["b"])
        self.assertEqual(records(self.state)["b"]["depends_on"], ["a"])
        before = self.pids()
        r.remove("a.yaml")
        r.remove("b.yaml")
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", timeout=60)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("  - Process/a            delete  dependency cycle among deletions (recorded dependsOn): "
                      "deleted first by name", res.out)
        self.assertIn("  - Process/b            delete", res.out)
        self.assertLess(res.out.index("Process/a "), res.out.index("Process/b "))
        wait_for(lambda: not pid_alive(before["a"]) and not pid_alive(before["b"]), what="a and b to stop")
        self.assertEqual(sorted(self.pids()), ["c"])
        self.assertEqual(self.pids()["c"], first["c"])
        self.assertTrue(pid_alive(first["c"]))

    def test_empty_commit_is_refused_without_allow_empty(self):
        r = self.three()
        self.reconcile(r)
        before = self.pids()
        for n in ("a", "b", "c"):
            r.remove(f"{n}.yaml")
        r.commit("everything gone")
        res = self.reconcile(r, expect=1)
        self.assertIn("--allow-empty", res.err)
        self.assertEqual(self.pids(), before)
        self.assertTrue(all(pid_alive(p) for p in before.values()))
        self.reconcile(r, "--allow-empty")
        self.assertEqual(self.pids(), {})
        for p in before.values():
            wait_for(lambda: not pid_alive(p), what="workloads to stop")

    def test_killed_workload_is_restarted_but_restart_never_stays_down(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("keep"))
        r.write("b.yaml", proc_yaml("once", extra="  restart: never\n"))
        r.write("c.yaml", proc_yaml("onfail", command=("/bin/sh", "-c", "exit 0"), extra="  restart: on-failure\n"))
        r.commit()
        # converged: onfail's clean exit is what on-failure leaves stopped
        self.reconcile(r, expect=0)
        st = {x["name"]: x for x in self.status()["resources"]}
        self.assertEqual(st["onfail"]["state"], "stopped", st)
        self.assertEqual(st["onfail"]["detail"], "exited with status 0", st)
        pids = self.pids()
        for name in ("keep", "once"):
            os.kill(pids[name], signal.SIGKILL)
            wait_for(lambda: not pid_alive(pids[name]), what=f"{name} to die")
        res = self.reconcile(r, expect=None)
        self.assertIn("  ! Process/keep         restart  killed by signal 9", res.out)
        self.assertNotIn("Process/once", res.out.split("Plan:")[0])
        self.assertNotIn("Process/onfail", res.out.split("Plan:")[0])
        after = self.pids()
        self.assertNotEqual(after["keep"], pids["keep"])
        self.assertTrue(pid_alive(after["keep"]))
        self.assertFalse(pid_alive(after["once"]))
        st = {x["name"]: x for x in self.status()["resources"]}
        self.assertEqual(st["keep"]["restarts"], 1)
        self.assertEqual(st["once"]["state"], "failed")
        self.assertEqual(st["onfail"]["state"], "stopped")
        self.assertEqual(res.rc, 1, "a workload that stays down is not converged")

    def test_crash_loop_backs_off(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("crash", command=("/bin/sh", "-c", "exit 3")))
        r.commit()
        res = self.reconcile(r, expect=None)
        self.assert_rc_matches_state(res, "crash")
        waited = None
        # a loaded machine may reach a pass only after a step's backoff is over:
        # enough attempts for a later step (up to 128 s) to hold one back
        for attempt in range(8):
            wait_for(lambda: not pid_alive(self.pids()["crash"]), what="the crash")
            res = self.reconcile(r, expect=None)
            self.assert_rc_matches_state(res, "crash")
            if "restart backoff" in res.err:
                waited = res
                break
        self.assertIsNotNone(waited, "a crash loop is never held back")
        self.assertEqual(waited.rc, 1)
        # the steps, the cap and the reset are unit_plan's
        # test_restart_backoff_steps_cap_and_reset; here the first step shows
        # (or a later one, when a loaded machine's passes came after the first
        # steps were over): what is left of it, at most its whole length
        m = re.search(r"exited with status 3; restart backoff, next try in ([0-9]+)s", waited.err)
        self.assertIsNotNone(m, waited.err)
        self.assertTrue(1 <= int(m.group(1)) <= 2 ** (attempt + 1), waited.err)
        st = {x["name"]: x for x in self.status()["resources"]}
        self.assertLessEqual(st["crash"]["restarts"], attempt)
        self.assertIn("exited with status 3", self.status_detail("crash"))

    def assert_rc_matches_state(self, res, name):
        """A pass exits 0 exactly when name ends it running (a crash right
        after the start may or may not have happened by its final look)."""
        state = {x["name"]: x for x in self.status()["resources"]}[name]["state"]
        self.assertEqual(res.rc, 0 if state == "running" else 1, (state, res))

    def status_detail(self, name):
        with open(os.path.join(self.state, "state.json")) as f:
            for x in json.load(f)["resources"]:
                if x["name"] == name:
                    return x["detail"]
        return ""

    def test_invalid_commit_changes_nothing_and_status_keeps_the_last_good_commit(self):
        r = self.three()
        self.reconcile(r)
        good = r.git("rev-parse", "HEAD")
        before = self.pids()
        r.write("b.yaml", proc_yaml("b", extra="  restart: sometimes\n"))
        r.write("d.yaml", proc_yaml("d"))
        r.commit("bad")
        res = self.reconcile(r, expect=1)
        self.assertIn("b.yaml:6:12: spec.restart: expected one of always, on-failure or never", res.err)
        self.assertEqual(self.pids(), before)
        st = self.status()
        self.assertEqual(st["commit"], good)
        self.assertIn("problem", st["last_error"])

    def test_stop_timeout_kills_a_process_that_ignores_sigterm(self):
        r = self.repo()
        script = "trap '' TERM; while :; do sleep 0.1; done"
        r.write("a.yaml", proc_yaml("stubborn", command=("/bin/sh", "-c", script),
                                    extra="  stopTimeout: 1s\n  env: {V: \"1\"}\n"))
        r.commit()
        self.reconcile(r)
        old = self.pids()["stubborn"]
        r.write("a.yaml", proc_yaml("stubborn", command=("/bin/sh", "-c", script),
                                    extra="  stopTimeout: 1s\n  env: {V: \"2\"}\n"))
        r.commit()
        t0 = time.monotonic()
        res = self.reconcile(r)
        took = time.monotonic() - t0
        self.assertFalse(pid_alive(old))
        self.assertGreaterEqual(took, 1.0)
        self.assertIn("did not stop within 1000ms of SIGTERM: killing", res.err)

    def test_user_and_working_dir_take_effect(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        os.chmod(out, 0o777)
        os.chmod(self.tmp, 0o755)
        r = self.repo()
        r.write("a.yaml", proc_yaml("who", command=("/bin/sh", "-c", f"id -un > {out}/id; pwd > {out}/pwd; "
                                                                     "exec sleep 300"),
                                    extra=f"  user: nobody\n  workingDir: {out}\n"))
        r.commit()
        self.reconcile(r)
        wait_for(lambda: os.path.exists(f"{out}/pwd") and os.path.getsize(f"{out}/pwd"), what="output")
        with open(f"{out}/id") as f:
            self.assertEqual(f.read().strip(), "nobody")
        with open(f"{out}/pwd") as f:
            self.assertEqual(f.read().strip(), out)
        pid = self.pids()["who"]
        with open(f"/proc/{pid}/status") as f:
            uid_line = [l for l in f if l.startswith("Uid:")][0]
        self.assertEqual(int(uid_line.split()[1]), 65534)
        # a user that does not exist is an apply-time error of that resource only
        r.write("b.yaml", proc_yaml("ghost", extra="  user: no-such-user-here\n"))
        r.write("c.yaml", proc_yaml("fine"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn('user "no-such-user-here" does not exist', res.err)
        self.assertIn("fine", self.pids())
        self.assertTrue(pid_alive(self.pids()["fine"]))

    def test_missing_program_is_an_error_of_that_resource_only(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("broken", command=("/no/such/program",)))
        r.write("b.yaml", proc_yaml("after", extra="  dependsOn: [broken]\n"))
        r.write("c.yaml", proc_yaml("independent"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("exec /no/such/program: No such file or directory", res.err)
        self.assertEqual(sorted(self.pids()), ["independent"])
        st = {x["name"]: x for x in self.status()["resources"]}
        self.assertEqual(st["broken"]["state"], "failed")
        self.assertEqual(st["after"]["state"], "pending")
        self.assertIn("waiting for Process/broken", st["after"]["detail"])
        self.assertEqual(st["independent"]["state"], "running")

    def test_secret_from_env_files_reaches_the_workload_and_nothing_else(self):
        secret = "s3cr3t-" + os.urandom(8).hex()
        envfile = os.path.join(self.tmp, "secret.env")
        with open(envfile, "w") as f:
            f.write(f"# a comment\n\nTOKEN={secret}\nMODE=from-file\n")
        out = os.path.join(self.tmp, "env.out")
        r = self.repo()
        r.write("a.yaml", proc_yaml("app", command=("/bin/sh", "-c", f"env > {out}; exec sleep 300"),
                                    extra=f"  envFiles: [{envfile}]\n  env: {{MODE: from-git}}\n"))
        r.commit()
        res = self.reconcile(r, "--log-level", "debug")
        wait_for(lambda: os.path.exists(out) and os.path.getsize(out), what="env dump")
        with open(out) as f:
            env = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        self.assertEqual(env["TOKEN"], secret)
        self.assertEqual(env["MODE"], "from-git", "env wins over envFiles")
        dry = run("reconcile", "--dry-run", "--output", "json", "--repo", r.path, "--state-dir", self.state)
        for text in (res.out, res.err, dry.out, dry.err, run("status", "--state-dir", self.state).out):
            self.assertNotIn(secret, text)
        for dirpath, _, files in os.walk(self.state):
            for fn in files:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    self.assertNotIn(secret.encode(), f.read(), os.path.join(dirpath, fn))
        shim = records(self.state)["app"]["shim_pid"]
        self.assertNotIn(secret.encode(), environ_of(shim))
        self.assertNotIn(secret.encode(), cmdline_of(shim))
        self.assertIn(secret.encode(), environ_of(self.pids()["app"]))
        os.remove(envfile)
        r.write("a.yaml", proc_yaml("app", extra=f"  envFiles: [{envfile}]\n"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn(f"envFiles: {envfile}", res.err)

    def test_corrupt_state_file_is_reported_and_no_duplicate_starts(self):
        r = self.three()
        self.reconcile(r)
        before = self.pids()
        with open(os.path.join(self.state, "state.json"), "w") as f:
            f.write('{"version": 1, "resources": [{"kind": "Proc')
        res = self.reconcile(r)
        self.assertIn("state file is corrupt", res.err)
        self.assertEqual(self.pids(), before)
        for name, pid in before.items():
            self.assertEqual(len(pids_with_env(f"WHO={name}-{self.tag}")), 1)
        self.assertEqual(self.status()["commit"], r.git("rev-parse", "HEAD"))

    def test_a_new_gitward_adopts_running_workloads(self):
        r = self.three()
        self.reconcile(r)
        before = self.pids()
        os.remove(os.path.join(self.state, "state.json"))
        res = self.reconcile(r)
        self.assertIn("3 unchanged", res.out)
        self.assertEqual(self.pids(), before)

    def test_json_logs_are_one_object_per_line(self):
        r = self.three()
        res = self.reconcile(r, "--log-format", "json")
        lines = [json.loads(l) for l in res.err.splitlines()]
        self.assertTrue(lines)
        for l in lines:
            self.assertEqual(set(l) - {"resource", "kind", "name", "action", "commit", "duration_ms"},
                             {"time", "level", "msg"})
            self.assertRegex(l["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        started = [l for l in lines if l.get("resource") == "Process/a" and "started pid" in l["msg"]]
        self.assertEqual(len(started), 1)
        self.assertEqual(started[0]["level"], "info")
        self.assertEqual((started[0]["kind"], started[0]["name"], started[0]["action"]), ("Process", "a", "create"))
        self.assertEqual(started[0]["commit"], r.git("rev-parse", "HEAD"))
        self.assertGreaterEqual(started[0]["duration_ms"], 0)

    def test_logs_are_written_per_resource(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("talker", command=("/bin/sh", "-c", "echo hello-out; echo hello-err >&2; "
                                                                        "exec sleep 300")))
        r.commit()
        self.reconcile(r)
        log = os.path.join(self.state, "logs", "process-talker.log")
        def text():
            with open(log) as f:
                return f.read()
        wait_for(lambda: os.path.exists(log) and "hello-err" in text(), what="log lines")
        self.assertIn("hello-out", text())

    def test_logs_are_bounded(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("chatty", command=("/bin/sh", "-c", "head -c 12000000 /dev/zero | tr '\\0' x; "
                                                                       "echo; echo done-talking; exec sleep 300")))
        r.commit()
        self.reconcile(r)
        log = os.path.join(self.state, "logs", "process-chatty.log")

        def done():
            try:
                with open(log) as f:
                    return "done-talking" in f.read()
            except OSError:
                return False
        wait_for(done, timeout=120, what="the output")
        self.assertTrue(os.path.exists(log + ".1"))
        self.assertLessEqual(os.path.getsize(log), 10 << 20)
        self.assertLessEqual(os.path.getsize(log + ".1"), 10 << 20)
        self.assertEqual(os.path.getsize(log) + os.path.getsize(log + ".1"), 12000000 + len("\ndone-talking\n"))

    def test_kill_9_of_gitward_mid_apply_never_duplicates_or_orphans(self):
        mark = "GWMARK" + os.urandom(4).hex()
        r = self.repo()

        def commit(v):
            for i in range(30):
                r.write(f"s{i:02d}.yaml", proc_yaml(f"s{i:02d}", extra=f"  env: {{{mark}: s{i:02d}, V: \"{v}\"}}\n"
                                                                      "  stopTimeout: 2s\n"))
            r.commit(f"v{v}")

        commit(0)
        rng = random.Random(42)
        for it in range(20):
            if it % 5 == 4:
                commit(it)
            p = subprocess.Popen([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.15))
            p.kill()
            p.wait(timeout=30)
        # a workload killed mid-replacement may wait out its restart backoff
        # (which doubles with each restart in a row, up to 5 minutes)
        last = []

        def converged():
            last[:] = [self.reconcile(r, expect=None)]
            return last[0].rc == 0
        try:
            wait_for(converged, timeout=300, step=1, what="a converged reconcile")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{last[0]}") from None
        res = last[0]
        recs = self.pids()
        self.assertEqual(len(recs), 30)
        for i in range(30):
            name = f"s{i:02d}"
            running = pids_with_env(f"{mark}={name}")
            self.assertEqual(running, [recs[name]], f"{name}: processes {running}, recorded {recs[name]}")
        # and nothing else of ours runs: every marked process is recorded
        everything = [p for p in os.listdir("/proc") if p.isdigit()
                      and any(e.startswith(mark.encode()) for e in environ_of(int(p)).split(b"\0"))
                      and pid_alive(int(p))]
        self.assertEqual(sorted(map(int, everything)), sorted(recs.values()))

    def test_second_gitward_on_the_same_state_dir_exits_1(self):
        r = self.three()
        a = self.agent(r, "--interval", "1h")
        res = self.reconcile(r, expect=1)
        self.assertIn(f"in use by another gitward (pid {a.pid})", res.err)
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)


class OneLockPerStateDir(Base):
    """The lock belongs to the state dir wherever --run-dir points, and a run
    dir holds the records of one state dir only (SPEC)."""

    def setUp(self):
        super().setUp()
        # RUN ends in run/ so the shared clean-up finds RUN/process too
        self.run_dir = os.path.join(self.tmp, "volatile", "run")
        self.mark = f"GW_ONE={os.path.basename(self.tmp)}"

    def one_app(self):
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra=f"  env: {{GW_ONE: {self.mark.split('=')[1]}}}\n"))
        r.commit()
        return r

    def app_pid(self):
        return records(os.path.dirname(self.run_dir)).get("app", {}).get("pid")

    def state_bytes(self):
        with open(os.path.join(self.state, "state.json"), "rb") as f:
            return f.read()

    def assert_one_workload(self, pid):
        self.assertTrue(pid_alive(pid))
        self.assertEqual(pids_with_env(self.mark), [pid])

    def test_state_dir_without_run_dir_beside_an_agent_with_one_exits_1(self):
        r = self.one_app()
        a = self.agent(r, "--interval", "1h", "--run-dir", self.run_dir)
        pid = wait_for(self.app_pid, what="the agent's first apply")
        wait_for(lambda: [x.get("pid") for x in self.status()["resources"]] == [pid], what="the pass recorded")
        before = self.state_bytes()
        res = self.reconcile(r, expect=1)  # --state-dir alone: run dir STATE/run
        self.assertIn(f"state dir {self.state} is in use by another gitward (pid {a.pid})", res.err)
        self.assert_one_workload(pid)
        self.assertEqual(self.state_bytes(), before)
        self.assertEqual(records(self.state), {})
        stop(a)
        self.assertEqual(a.returncode, 0, self.agent_log())

    def test_another_state_dir_naming_an_owned_run_dir_exits_1_and_deletes_nothing(self):
        r = self.one_app()
        empty = self.repo("empty")
        empty.write("README", "no manifests\n")
        empty.commit()
        other = os.path.join(self.tmp, "other-state")
        a = self.agent(r, "--interval", "1h", "--run-dir", self.run_dir)
        pid = wait_for(self.app_pid, what="the agent's first apply")
        want = (f"run dir {self.run_dir} belongs to state dir {self.state}: use --state-dir {self.state}, or "
                "another --run-dir")
        for running in (True, False):  # beside the agent, and after it stopped
            res = run("reconcile", "--repo", empty.path, "--state-dir", other, "--run-dir", self.run_dir,
                      "--node", "n1", "--allow-empty")
            self.assertEqual(res.rc, 1, res)
            self.assertIn(want, res.err)
            self.assert_one_workload(pid)
            self.assertEqual(self.app_pid(), pid)
            self.assertFalse(os.path.exists(os.path.join(other, "state.json")))
            if running:
                stop(a)
                self.assertEqual(a.returncode, 0, self.agent_log())
        # the owner itself goes on: adopted, not restarted
        res = self.reconcile(r, "--run-dir", self.run_dir)
        self.assertIn("1 unchanged", res.out)
        self.assert_one_workload(pid)

    def test_a_node_whose_lock_was_in_the_run_dir_keeps_working(self):
        """Upgrade: an earlier version locked RUN/lock and recorded no owner.
        While an agent of that version still runs, a new gitward is refused
        naming it; once it stopped, the new one adopts its workloads and the
        run dir becomes the state dir's."""
        r = self.one_app()
        self.reconcile(r, "--run-dir", self.run_dir)
        pid = self.app_pid()
        # as the earlier version left it: RUN/lock, no RUN/owner, no STATE/lock
        for made_now in (os.path.join(self.run_dir, "owner"), os.path.join(self.state, "lock")):
            if os.path.exists(made_now):
                os.unlink(made_now)
        old = os.path.join(self.run_dir, "lock")
        with open(old, "w") as f:
            f.write("1\n")
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             "f = open(sys.argv[1], 'r+'); fcntl.flock(f, fcntl.LOCK_EX); f.truncate(0); "
             "f.write(f'{os.getpid()}\\n'); f.flush(); print('held', flush=True); time.sleep(600)", old],
            stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(holder.stdout.readline(), "held\n")
            res = self.reconcile(r, "--run-dir", self.run_dir, expect=1)
            self.assertIn(f"state dir {self.state} is in use by another gitward (pid {holder.pid}), holding {old} "
                          "(the lock of an earlier version)", res.err)
            self.assertFalse(os.path.exists(os.path.join(self.run_dir, "owner")))
            self.assert_one_workload(pid)
        finally:
            holder.kill()
            holder.wait(timeout=60)
        res = self.reconcile(r, "--run-dir", self.run_dir)
        self.assertIn("1 unchanged", res.out)
        self.assert_one_workload(pid)
        with open(os.path.join(self.run_dir, "owner")) as f:
            self.assertEqual(f.read(), f"{self.state}\n")
        # from now on the run dir is this state dir's
        res = run("reconcile", "--repo", r.path, "--state-dir", os.path.join(self.tmp, "x"), "--run-dir",
                  self.run_dir, "--node", "n1")
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"run dir {self.run_dir} belongs to state dir {self.state}", res.err)
        self.assert_one_workload(pid)


class Agent(Base):
    def test_agent_applies_new_commits_handles_sighup_and_sigterm(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra="  env: {V: \"1\"}\n"))
        r.commit()
        a = self.agent(r, "--interval", "1s")
        wait_for(lambda: "a" in self.pids(), what="first apply")
        first = self.pids()["a"]
        # a new commit is applied within a few intervals
        r.write("a.yaml", proc_yaml("a", extra="  env: {V: \"2\"}\n"))
        head = r.commit()
        wait_for(lambda: self.status()["commit"] == head and self.pids().get("a") not in (None, first),
                 timeout=120, what="the new commit")
        # self-heal every interval even without a new commit
        killed = self.pids()["a"]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: self.pids().get("a") != killed and pid_alive(self.pids().get("a", 0)), timeout=120,
                 what="self-heal")
        # endpoints
        code, body = self.http(a, "/status")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["commit"], head)
        code, body = self.http(a, "/metrics")
        self.assertEqual(code, 200)
        self.assertRegex(body, r'gitward_sync_total\{result="success"\} [1-9]')
        self.assertIn('gitward_resources{kind="Process",state="running"} 1', body)
        self.assertIn("gitward_last_sync_timestamp_seconds ", body)
        self.assertIn("gitward_reconcile_duration_seconds ", body)
        self.assertEqual(self.http(a, "/hooks/git", data=b"{}")[0], 404)
        # SIGTERM: exit 0, workloads keep running
        pid = self.pids()["a"]
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)
        self.assertTrue(pid_alive(pid), self.agent_log())
        self.assertIn("agent stopping; workloads keep running", self.agent_log())

    def test_sighup_and_webhook_trigger_a_pass_now(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        secret = os.path.join(self.tmp, "hook.secret")
        with open(secret, "w") as f:
            f.write("topsecret\n")
        a = self.agent(r, "--interval", "1h", "--webhook-secret-file", secret)
        wait_for(lambda: "a" in self.pids(), what="first apply")
        wait_for(lambda: self.passes(a) == 1, what="the first pass counted")
        # with --interval 1h, the new commit is applied by the one pass SIGHUP
        # asks for and no other: no bare sleep, the pass count tells
        r.write("b.yaml", proc_yaml("b"))
        r.commit()
        self.assertNotIn("b", self.pids())
        a.send_signal(signal.SIGHUP)
        wait_for(lambda: "b" in self.pids() and self.passes(a) > 1, timeout=120, what="SIGHUP pass")
        self.assertEqual(self.passes(a), 2)
        self.assertEqual(self.agent_log().count("pass requested (SIGHUP or webhook)"), 1, self.agent_log())
        r.write("c.yaml", proc_yaml("c"))
        r.commit()
        body = b'{"ref": "refs/heads/main"}'
        self.assertEqual(self.http(a, "/hooks/git", data=body, headers={"X-Hub-Signature-256": "sha256=00"})[0], 401)
        self.assertEqual(self.http(a, "/hooks/git", data=body)[0], 401)
        # a webhook asks for its pass before it answers: a refused one has
        # asked for nothing by the time its 401 is read
        self.assertNotIn("webhook from", self.agent_log())
        self.assertNotIn("c", self.pids())
        sig = "sha256=" + hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
        self.assertEqual(self.http(a, "/hooks/git", data=body, headers={"X-Hub-Signature-256": sig})[0], 202)
        self.assertEqual(self.agent_log().count("webhook from"), 1, self.agent_log())
        wait_for(lambda: "c" in self.pids() and self.passes(a) > 2, timeout=120, what="webhook pass")
        self.assertEqual(self.passes(a), 3)

    def test_unreachable_remote_never_touches_workloads(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        a = self.agent(r, "--interval", "1s")
        wait_for(lambda: "a" in self.pids(), what="first apply")
        pid = self.pids()["a"]
        os.rename(r.path, r.path + ".away")
        wait_for(lambda: "next try in" in self.agent_log(), timeout=120, what="a failed fetch")
        wait_for(lambda: (self.status()["last_error"] or "").find(": no such directory") >= 0,
                 timeout=120, what="last_error")
        self.assertEqual(self.pids()["a"], pid)
        self.assertTrue(pid_alive(pid))
        self.assertEqual(self.status()["resources"][0]["state"], "running")
        os.rename(r.path + ".away", r.path)
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)

    def test_invalid_commit_keeps_the_last_good_commit_in_force(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        good = r.commit()
        a = self.agent(r, "--interval", "1s")
        wait_for(lambda: "a" in self.pids(), what="first apply")
        r.write("b.yaml", proc_yaml("b", extra="  stopTimeout: soon\n"))
        r.commit("bad")
        wait_for(lambda: "problem" in (self.status()["last_error"] or ""), timeout=120, what="the error")
        self.assertEqual(self.status()["commit"], good)
        self.assertNotIn("b", self.pids())
        # the last good commit is still reconciled: a dead workload comes back
        pid = self.pids()["a"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.pids().get("a") != pid and pid_alive(self.pids().get("a", 0)), timeout=120,
                 what="self-heal under an invalid head")
        self.assertIn("b.yaml:6:16: spec.stopTimeout", self.agent_log())
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)


if __name__ == "__main__":
    import unittest
    unittest.main()
