"""What gitward reads back from its state dir is checked, never trusted: run
records are believed only while their supervisor vouches for them, names
from disk are validated, links are never followed, the dir must be private;
exec health checks run as the workload; a pass after a crash mid-start sees
the supervisor that was still starting."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap

from gwtest import GITWARD, TempDirTest, pid_alive, proc_yaml, records, run, wait_for

HASH = "ab" * 32


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def read(path):
    with open(path) as f:
        return f.read()


class Base(TempDirTest):
    def setUp(self):
        super().setUp()
        self.victims = []
        self.forged = []

    def tearDown(self):
        # the shared clean-up kills what records name: never a forged one
        for path, pid in self.forged:
            try:
                if json.loads(read(path))["pid"] == pid:
                    os.unlink(path)
            except (OSError, ValueError):
                pass
        for p in self.victims:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0, env=None):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", *args, env=env)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def victim(self):
        """A process that is not gitward's, leading its own session."""
        p = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
        self.victims.append(p)
        return p

    def one_resource_repo(self, name="keep"):
        r = self.repo()
        r.write(f"{name}.yaml", proc_yaml(name))
        r.commit()
        return r

    def forge_record(self, name, pid, start, shim_pid=None, shim_start=None):
        d = os.path.join(self.state, "run", "process")
        os.makedirs(d, mode=0o700, exist_ok=True)
        rec = {"pid": pid, "start_time": start, "shim_pid": shim_pid if shim_pid is not None else os.getpid(),
               "shim_start_time": shim_start if shim_start is not None else start_time(os.getpid()),
               "started_at": 1, "spec_hash": HASH, "spec": "{}", "depends_on": [], "restart": "always"}
        path = os.path.join(d, f"{name}.json")
        self.forged.append((path, pid))
        with open(path, "w") as f:
            json.dump(rec, f)


class ForgedRecords(Base):
    def test_forged_record_of_another_process_is_not_ours_and_never_signalled(self):
        r = self.one_resource_repo()
        self.reconcile(r)
        v = self.victim()
        # a record naming the victim, "supervised" by this test process
        self.forge_record("victim", v.pid, start_time(v.pid))
        res = self.reconcile(r)
        self.assertIn("Process/victim", res.err)
        self.assertIn("is not ours", res.err)
        self.assertTrue(pid_alive(v.pid))
        # even a record naming a real gitward supervisor is refused when the
        # victim is not that supervisor's child
        keep = records(self.state)["keep"]
        self.forge_record("victim", v.pid, start_time(v.pid), keep["shim_pid"], keep["shim_start_time"])
        res = self.reconcile(r)
        self.assertIn(f"pid {v.pid} is not a session leader started by supervisor pid {keep['shim_pid']}", res.err)
        self.assertTrue(pid_alive(v.pid))
        # a resource of that name in Git is started afresh beside it, not by killing it
        r.write("victim.yaml", proc_yaml("victim"))
        r.commit()
        self.reconcile(r)
        self.assertTrue(pid_alive(v.pid))
        self.assertNotEqual(records(self.state)["victim"]["pid"], v.pid)
        self.assertTrue(pid_alive(records(self.state)["victim"]["pid"]))

    def test_records_naming_pid_1_0_or_negative_signal_nothing(self):
        # in a PID namespace of its own: pid 1 there is this script, and a
        # kill(-1) would take the sleeper with it
        script = textwrap.dedent(f"""
            import json, os, subprocess, sys
            state, repo = sys.argv[1], sys.argv[2]
            def start(pid):
                with open(f"/proc/{{pid}}/stat") as f:
                    return int(f.read().rsplit(")", 1)[1].split()[19])
            sleeper = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
            d = os.path.join(state, "run", "process")
            os.makedirs(d, mode=0o700, exist_ok=True)
            for name, pid in (("one", 1), ("zero", 0), ("minus", -sleeper.pid), ("minusone", -1)):
                rec = {{"pid": pid, "start_time": start(1) if pid == 1 else 0, "shim_pid": 1,
                       "shim_start_time": start(1), "started_at": 1, "spec_hash": "{HASH}", "spec": "{{}}",
                       "depends_on": [], "restart": "always"}}
                with open(os.path.join(d, name + ".json"), "w") as f:
                    json.dump(rec, f)
            res = subprocess.run(["{GITWARD}", "reconcile", "--repo", repo, "--state-dir", state, "--node", "n1"],
                                 capture_output=True, text=True, timeout=120)
            alive = sleeper.poll() is None
            sleeper.kill()
            print(json.dumps({{"rc": res.returncode, "err": res.stderr, "alive": alive}}))
            """)
        r = self.one_resource_repo()
        os.makedirs(self.state, mode=0o700)
        cp = subprocess.run(["unshare", "-fp", "--mount-proc", sys.executable, "-c", script, self.state, r.path],
                            capture_output=True, text=True, timeout=180)
        # its records name pids of that namespace, gone with it: the shared
        # clean-up must not read them as pids of this one
        shutil.rmtree(os.path.join(self.state, "run"), ignore_errors=True)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        out = json.loads(cp.stdout.strip().splitlines()[-1])
        self.assertTrue(out["alive"], out["err"])
        self.assertEqual(out["rc"], 0, out["err"])
        for name, pid in (("one", 1), ("zero", 0), ("minusone", -1)):
            self.assertIn(f"Process/{name}: run record {self.state}/run/process/{name}.json is not ours: "
                          f"it names pid {pid} and supervisor pid 1; ignored, nothing signalled", out["err"])
        self.assertIn("Process/minus: run record", out["err"])


class NamesFromDisk(Base):
    def test_state_entry_with_a_path_for_a_name_deletes_nothing(self):
        r = self.one_resource_repo()
        self.reconcile(r)
        x = os.path.join(self.tmp, "x")
        os.makedirs(x)
        precious = os.path.join(x, "precious.exit")
        with open(precious, "w") as f:
            f.write("keep me\n")
        path = os.path.join(self.state, "state.json")
        st = json.loads(read(path))
        # from STATE/run/process/ up to the temp dir, then into x/
        bad = "../../../x/precious"
        st["resources"].append({"kind": "Process", "name": bad, "spec_hash": HASH, "spec": "{}",
                                "state": "failed", "pid": 0, "start_time": 0, "restart": "always"})
        with open(path, "w") as f:
            json.dump(st, f)
        # and a run record whose file name is no resource name
        d = os.path.join(self.state, "run", "process")
        with open(os.path.join(d, "Bad..Name.json"), "w") as f:
            json.dump({"pid": 0, "spec_hash": HASH}, f)
        res = self.reconcile(r)
        self.assertIn(f"{path}: resource 1 has an invalid name", res.err)
        self.assertIn(f"{d}/Bad..Name.json: not a valid resource name: ignored", res.err)
        self.assertEqual(read(precious), "keep me\n")
        self.assertEqual([x["name"] for x in json.loads(read(path))["resources"]], ["keep"])


class Links(Base):
    def victim_file(self):
        p = os.path.join(self.tmp, "victim")
        with open(p, "w") as f:
            f.write("precious\n")
        return p

    def test_lock_link_is_refused_and_its_target_untouched(self):
        r = self.one_resource_repo()
        v = self.victim_file()
        os.makedirs(self.state, mode=0o700)
        os.symlink(v, os.path.join(self.state, "lock"))
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.state}/lock: lock is a symbolic link: remove it", res.err)
        self.assertEqual(read(v), "precious\n")
        # a dry-run never opens the lock
        self.reconcile(r, "--dry-run", expect=2)
        self.assertEqual(read(v), "precious\n")
        self.assertEqual(records(self.state), {})

    def test_log_link_is_refused_and_its_target_gets_nothing(self):
        r = self.repo()
        r.write("talk.yaml", proc_yaml("talk", command=("/bin/sh", "-c", "echo secret-output; exec sleep 300")))
        r.commit()
        v = self.victim_file()
        os.makedirs(os.path.join(self.state, "logs"), mode=0o700)
        os.symlink(v, os.path.join(self.state, "logs", "process-talk.log"))
        res = self.reconcile(r, expect=1)
        self.assertIn(f"cannot open log {self.state}/logs/process-talk.log: Too many levels of symbolic links",
                      res.err)
        self.assertEqual(read(v), "precious\n")
        self.assertNotIn("talk", records(self.state))

    def test_resource_lock_link_creates_nothing(self):
        r = self.one_resource_repo("app")
        target = os.path.join(self.tmp, "created-here")
        d = os.path.join(self.state, "run", "process")
        os.makedirs(d, mode=0o700)
        os.symlink(target, os.path.join(d, "app.lock"))
        res = self.reconcile(r, expect=1)
        self.assertIn(f"cannot open {d}/app.lock: Too many levels of symbolic links", res.err)
        self.assertFalse(os.path.lexists(target))

    def test_world_writable_or_foreign_state_dir_is_refused(self):
        r = self.one_resource_repo()
        os.makedirs(self.state, mode=0o700)
        os.chmod(self.state, 0o777)
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.state}: state dir is writable by others (mode 0777): chmod go-w it", res.err)
        os.chmod(self.state, 0o700)
        os.chown(self.state, 65534, 65534)
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.state}: state dir is owned by uid 65534, not by this user (uid 0): chown it or use "
                      "another --state-dir", res.err)
        self.assertEqual(os.listdir(self.state), [])
        os.chown(self.state, 0, 0)
        self.reconcile(r)


class ExecChecks(Base):
    def test_exec_check_runs_as_the_workload_with_its_environment(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        os.chmod(out, 0o777)
        os.chmod(self.tmp, 0o755)
        envfile = os.path.join(self.tmp, "app.env")
        with open(envfile, "w") as f:
            f.write("FROM_FILE=file-value\n")
        check = json.dumps(["/bin/sh", "-c", f"id -u > {out}/uid.tmp; id -G > {out}/groups; pwd > {out}/pwd; "
                                             f"env > {out}/env; mv {out}/uid.tmp {out}/uid"])
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra=f"  user: nobody\n  workingDir: {out}\n"
                                                  f"  env: {{MODE: prod}}\n  envFiles: [{envfile}]\n"
                                                  f"  healthCheck:\n    exec: {{command: {check}}}\n"
                                                  # five programs per probe: a timeout a loaded
                                                  # machine cannot trip (the default is 2 s)
                                                  "    interval: 10s\n    timeout: 10s\n"))
        r.commit()
        self.reconcile(r, env={"GITWARD_GIT_PASSWORD": "hunter2-secret", "GITWARD_TEST_MARK": "x"})
        self.assertEqual(read(f"{out}/uid").strip(), "65534")
        self.assertEqual(read(f"{out}/groups").split(), ["65534"])
        self.assertEqual(read(f"{out}/pwd").strip(), out)
        env = read(f"{out}/env")
        self.assertNotIn("GITWARD_", env)
        self.assertNotIn("hunter2-secret", env)
        lines = set(env.splitlines())
        self.assertTrue({"MODE=prod", "FROM_FILE=file-value", "HOME=/nonexistent", "USER=nobody"} <= lines, env)
        # the workload saw the very same environment
        with open(f"/proc/{records(self.state)['app']['pid']}/environ", "rb") as f:
            workload = set(f.read().decode().split("\0")) - {""}
        self.assertEqual({l for l in lines if not l.startswith(("PWD=", "SHLVL=", "_=", "OLDPWD="))}, workload)


class CrashMidStart(Base):
    def test_pass_after_a_crash_mid_update_waits_for_the_supervisor_still_starting(self):
        mark = "GWMARK" + os.urandom(4).hex()
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra=f"  env: {{{mark}: \"1\"}}\n  stopTimeout: 2s\n"))
        r.commit()
        self.reconcile(r)
        old = records(self.state)["app"]
        # the log is a FIFO: the next supervisor, once it holds the resource
        # lock, blocks opening it until someone reads — a slow start, made
        # deterministic
        log = os.path.join(self.state, "logs", "process-app.log")
        os.unlink(log)
        os.mkfifo(log, 0o600)
        lock = os.path.join(self.state, "run", "process", "app.lock")
        r.write("app.yaml", proc_yaml("app", extra=f"  env: {{{mark}: \"2\"}}\n  stopTimeout: 2s\n"))
        r.commit()
        a = subprocess.Popen([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def new_supervisor_holds_the_lock():
            if pid_alive(old["shim_pid"]):
                return False
            with open(lock) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return False
                except BlockingIOError:
                    return True
        wait_for(new_supervisor_holds_the_lock, timeout=120, what="the new supervisor to take the lock")
        a.kill()  # kill -9 in the middle of the update
        a.wait(timeout=30)
        errlog = os.path.join(self.tmp, "b.err")
        with open(errlog, "w") as ef:
            b = subprocess.Popen([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state, "--node",
                                  "n1"], stdout=subprocess.DEVNULL, stderr=ef)
        reader = None
        try:
            wait_for(lambda: "waiting for its supervisor to finish starting" in read(errlog) or b.poll() is not None,
                     timeout=60, what="the recovering pass to notice the supervisor")
            self.assertIn("app: waiting for its supervisor to finish starting", read(errlog))
            reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)  # the supervisor goes on
            self.assertEqual(b.wait(timeout=60), 0, read(errlog))
        finally:
            if b.poll() is None:
                b.kill()
            if reader is None:  # let a supervisor left blocked go on, to be cleaned up
                reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
            os.close(reader)
        rec = records(self.state)["app"]
        running = [int(p) for p in os.listdir("/proc") if p.isdigit() and pid_alive(int(p))
                   and f"{mark}=2".encode() in open_environ(int(p))]
        self.assertEqual(running, [rec["pid"]])
        st = json.loads(read(os.path.join(self.state, "state.json")))
        self.assertEqual([(x["name"], x["pid"], x["state"]) for x in st["resources"]], [("app", rec["pid"], "running")])
        self.assertNotIn("another supervisor", read(errlog))


def open_environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []
