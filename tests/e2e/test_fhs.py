"""Where things live: the lock, state and the Git cache in the state dir, run
records and QMP sockets in the run dir (which names the state dir it belongs to), workload logs in the log dir — each
movable on its own (--state-dir, --run-dir, --log-dir); with --state-dir
alone the other two stay inside it, as in earlier versions. Supervisors
show in ps as `gitward-shim Process/NAME`."""
import fcntl
import json
import os
import signal
import stat
import subprocess

from gwtest import GITWARD, HDR, binary_for_anyone, TempDirTest, pid_alive, proc_yaml, records, run, wait_for


def read(path):
    with open(path) as f:
        return f.read()


def ps_args(pid):
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True,
                          timeout=30).stdout.strip()


class Layout(TempDirTest):
    def setUp(self):
        super().setUp()
        # RUN ends in run/ so the shared clean-up finds RUN/process too
        self.run_dir = os.path.join(self.tmp, "volatile", "run")
        self.log_dir = os.path.join(self.tmp, "var-log", "gitward")

    def reconcile(self, repo, *args, expect=0, dirs=True, env=None):
        more = ("--run-dir", self.run_dir, "--log-dir", self.log_dir) if dirs else ()
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, *more, "--node", "n1", *args,
                  env=env)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def talker_repo(self, name="app"):
        r = self.repo()
        r.write(f"{name}.yaml", proc_yaml(name, command=("/bin/sh", "-c", "echo hello-fhs; exec sleep 300")))
        r.commit()
        return r

    def assert_private_dir(self, path):
        st = os.lstat(path)
        self.assertTrue(stat.S_ISDIR(st.st_mode), path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, path)

    def test_three_dirs_hold_each_their_own_and_a_crash_is_healed(self):
        r = self.talker_repo()
        self.reconcile(r)
        # the state dir holds its lock, state and clone, nothing else
        self.assertEqual(sorted(os.listdir(self.state)), ["history.json", "lock", "repo.git", "repository", "state.json"])
        # the run dir: the state dir it belongs to, and the records
        self.assert_private_dir(self.run_dir)
        self.assert_private_dir(self.log_dir)
        self.assertEqual(sorted(os.listdir(self.run_dir)), ["owner", "process"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.run_dir, "process"))), ["app.json", "app.lock"])
        rec = records(os.path.dirname(self.run_dir))["app"]
        self.assertTrue(pid_alive(rec["pid"]))
        # the log dir: the workload's output
        log = os.path.join(self.log_dir, "process-app.log")
        wait_for(lambda: os.path.exists(log) and "hello-fhs" in read(log), what="the workload's log")
        self.assertEqual(os.listdir(self.log_dir), ["process-app.log"])

        # kill -9 of the workload: the next pass starts it again
        os.kill(rec["pid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(rec["pid"]), what="the workload to die")
        res = self.reconcile(r)
        self.assertIn("Process/app", res.out)
        again = records(os.path.dirname(self.run_dir))["app"]
        self.assertNotEqual(again["pid"], rec["pid"])
        self.assertTrue(pid_alive(again["pid"]))
        wait_for(lambda: read(log).count("hello-fhs") == 2, what="the second start's output in the same log")
        st = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(st.rc, 0, st)
        self.assertEqual([(x["name"], x["state"], x["pid"]) for x in st.json()["resources"]],
                         [("app", "running", again["pid"])])

        # removal cleans its records, and still nothing lands in the state dir
        r.remove("app.yaml")
        r.commit()
        self.reconcile(r, "--allow-empty")
        self.assertFalse(pid_alive(again["pid"]))
        self.assertEqual(records(os.path.dirname(self.run_dir)), {})
        left = os.listdir(os.path.join(self.run_dir, "process"))
        self.assertFalse([f for f in left if f.endswith((".json", ".exit"))], left)
        self.assertEqual(sorted(os.listdir(self.state)), ["history.json", "lock", "repo.git", "repository", "state.json"])

    def test_supervisor_shows_in_ps_as_gitward_shim_process_name(self):
        r = self.talker_repo("web")
        self.reconcile(r)
        shim = records(os.path.dirname(self.run_dir))["web"]["shim_pid"]
        self.assertEqual(ps_args(shim), f"gitward-shim Process/web {self.run_dir}")
        with open(f"/proc/{shim}/comm") as f:
            self.assertEqual(f.read().strip(), "gitward-shim")
        # a later pass adopts it by that name: nothing restarted
        pid = records(os.path.dirname(self.run_dir))["web"]["pid"]
        res = self.reconcile(r, "--log-level", "debug")
        self.assertNotIn("is not ours", res.err)
        self.assertEqual(records(os.path.dirname(self.run_dir))["web"]["pid"], pid)

    def test_state_dir_alone_keeps_run_and_logs_inside_it(self):
        r = self.talker_repo()
        self.reconcile(r, dirs=False)
        self.assertEqual(sorted(os.listdir(self.state)), ["history.json", "lock", "logs", "repo.git", "repository", "run", "state.json"])
        self.assertIn("app", records(self.state))
        log = os.path.join(self.state, "logs", "process-app.log")
        wait_for(lambda: os.path.exists(log) and "hello-fhs" in read(log), what="the workload's log")
        shim = records(self.state)["app"]["shim_pid"]
        self.assertEqual(ps_args(shim), f"gitward-shim Process/app {self.state}/run")
        self.assertFalse(os.path.exists(self.run_dir))
        self.assertFalse(os.path.exists(self.log_dir))

    def test_run_and_log_dirs_from_the_config_file(self):
        r = self.talker_repo()
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"state-dir: {self.state}\nrun-dir: {self.run_dir}\nlog-dir: {self.log_dir}\n")
        res = run("reconcile", "--repo", r.path, "--config", cfg, "--node", "n1")
        self.assertEqual(res.rc, 0, res)
        self.assertIn("app", records(os.path.dirname(self.run_dir)))
        self.assertTrue(os.path.exists(os.path.join(self.log_dir, "process-app.log")))
        self.assertEqual(sorted(os.listdir(self.state)), ["history.json", "lock", "repo.git", "repository", "state.json"])

    def test_an_earlier_version_holding_the_run_dir_lock_is_named(self):
        r = self.talker_repo()
        os.makedirs(self.run_dir, mode=0o700)
        with open(os.path.join(self.run_dir, "lock"), "w") as f:
            f.write("4242\n")
            f.flush()
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            res = self.reconcile(r, expect=1)
            self.assertIn(f"state dir {self.state} is in use by another gitward (pid 4242), holding "
                          f"{self.run_dir}/lock (the lock of an earlier version)", res.err)
        self.assertEqual(records(os.path.dirname(self.run_dir)), {})

    def test_run_and_log_dirs_must_be_private(self):
        r = self.talker_repo()
        os.makedirs(self.run_dir, mode=0o700)
        os.chmod(self.run_dir, 0o777)
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.run_dir}: run dir is writable by others (mode 0777): chmod go-w it", res.err)
        os.chmod(self.run_dir, 0o700)
        os.makedirs(self.log_dir, mode=0o700)
        os.chmod(self.log_dir, 0o770)
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.log_dir}: log dir is writable by its group (mode 0770): chmod go-w it", res.err)
        os.chmod(self.log_dir, 0o700)
        # records under the run dir: a link there is refused, not followed
        target = os.path.join(self.tmp, "elsewhere")
        os.makedirs(target)
        os.symlink(target, os.path.join(self.run_dir, "process"))
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.run_dir}/process: run dir: not a directory but a symbolic link", res.err)
        self.assertEqual(os.listdir(target), [])
        os.unlink(os.path.join(self.run_dir, "process"))
        if os.geteuid() == 0:
            os.chown(self.log_dir, 65534, 65534)
            res = self.reconcile(r, expect=1)
            self.assertIn(f"{self.log_dir}: log dir is owned by uid 65534, not by this user (uid 0): chown it or "
                          "use another --log-dir", res.err)
            os.chown(self.log_dir, 0, 0)
        self.reconcile(r)

    def test_records_left_in_the_state_dir_are_not_stranded_by_a_new_run_dir(self):
        r = self.talker_repo()
        self.reconcile(r, dirs=False)  # the layout of earlier versions
        pid = records(self.state)["app"]["pid"]
        res = self.reconcile(r, expect=1)
        self.assertIn(f"{self.state}/run/process: holds run records of workloads started with the run dir "
                      f"{self.state}/run: keep managing them with --run-dir {self.state}/run (and --log-dir "
                      f"{self.state}/logs)", res.err)
        self.assertTrue(pid_alive(pid))
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "process")))
        self.reconcile(r, dirs=False)
        self.assertEqual(records(self.state)["app"]["pid"], pid)

    def test_a_run_dir_too_long_for_qmp_sockets_is_named(self):
        self.run_dir = os.path.join(self.tmp, "r" * (120 - len(self.tmp)), "run")
        kernel = os.path.join(self.tmp, "kernel")
        with open(kernel, "w") as f:
            f.write("not booted\n")
        r = self.repo()
        r.write("vm.yaml", f"{HDR}kind: VM\nmetadata: {{name: guest}}\nspec:\n  memory: 64Mi\n  cpus: 1\n"
                f"  kernel: {kernel}\n  network: none\n")
        r.commit()
        res = self.reconcile(r, expect=1, env={"GITWARD_QEMU": "/bin/true"})
        sock = os.path.join(self.run_dir, "vm", "guest.qmp")
        self.assertIn(f"QMP socket path {sock} is {len(sock)} bytes, longer than a unix socket takes (107): "
                      "choose a shorter --run-dir", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "vm")))


class Defaults(TempDirTest):
    def test_nothing_given_as_a_user_takes_the_xdg_dirs(self):
        """As a user (nobody, when the tests run as root): the state under
        $HOME/.local/state (with the lock), the run dir under $XDG_RUNTIME_DIR
        recorded as the state dir's — never /var/lib,
        /run or /var/log (the root defaults are unit-tested with an injected
        root, see unit_state)."""
        home, rt = os.path.join(self.tmp, "home"), os.path.join(self.tmp, "rt")
        os.chmod(self.tmp, 0o755)
        os.makedirs(home)
        os.makedirs(rt, mode=0o700)
        cmd = [GITWARD, "reconcile", "--repo", os.path.join(self.tmp, "no-repo")]
        if os.geteuid() == 0:
            cmd[0] = binary_for_anyone(self.tmp)
            for d in (home, rt):
                os.chown(d, 65534, 65534)
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/",
                            env={"PATH": os.environ["PATH"], "HOME": home, "XDG_RUNTIME_DIR": rt})
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("no-repo: no such directory (--repo takes a URL or the path of a Git repository)", cp.stderr)
        state = os.path.join(home, ".local", "state", "gitward")
        # the attempt is recorded; a first clone that failed leaves no cache behind
        self.assertEqual(sorted(os.listdir(state)), ["history.json", "lock", "repository", "state.json"])
        self.assertEqual(os.listdir(os.path.join(rt, "gitward")), ["owner"])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(rt, "gitward")).st_mode), 0o700)

class Upgrade(TempDirTest):
    """Supervisors started by an earlier version (`gitward __shim NAME
    STATE_DIR`) are adopted, not doubled, and only for their own state dir."""

    def previous_shim(self, rec, state_arg):
        """Start a supervisor as the previous version did, on the job it was given."""
        d = os.path.join(self.state, "run", "process")
        job = {"name": "app", "record": os.path.join(d, "app.json"), "exit": os.path.join(d, "app.exit"),
               "lock": os.path.join(d, "app.lock"), "log": os.path.join(self.state, "logs", "process-app.log"),
               "log_max": 1 << 20, "argv": ["/bin/sleep", "300"], "env": {}, "env_files": [],
               "spec_hash": rec["spec_hash"], "spec": rec["spec"], "depends_on": [], "restart": "always"}
        job_r, job_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.dup2(job_r, 0)
                os.dup2(rep_w, 3)
                os.execv(GITWARD, ["gitward", "__shim", "app", state_arg])
            finally:
                os._exit(127)
        os.close(job_r)
        os.close(rep_w)
        os.write(job_w, json.dumps(job).encode())
        os.close(job_w)
        with os.fdopen(rep_r) as f:
            report = f.read()
        self.assertTrue(report.startswith("OK "), report)
        self.shims.append(pid)
        return pid, int(report.split()[1])

    def setUp(self):
        super().setUp()
        self.shims = []

    def tearDown(self):
        super().tearDown()
        for pid in self.shims:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass

    def reconcile(self, repo, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(res.rc, expect, res)
        return res

    def test_previous_supervisor_is_adopted_only_for_its_state_dir(self):
        r = self.repo()
        r.write("app.yaml", proc_yaml("app"))
        r.commit()
        self.reconcile(r)
        rec = records(self.state)["app"]
        # replace today's supervisor by one the previous version started
        os.kill(rec["shim_pid"], signal.SIGKILL)
        os.kill(-rec["pid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(rec["pid"]) and not pid_alive(rec["shim_pid"]), what="the old pair to go")
        shim, workload = self.previous_shim(rec, self.state)
        self.assertEqual(records(self.state)["app"]["pid"], workload)
        res = self.reconcile(r)
        self.assertNotIn("is not ours", res.err)
        self.assertEqual(records(self.state)["app"]["pid"], workload)
        self.assertTrue(pid_alive(workload))
        # the same argv naming another state dir vouches for nothing: its
        # workload is not signalled, and no second one starts beside it
        os.kill(-workload, signal.SIGKILL)
        wait_for(lambda: os.waitpid(shim, os.WNOHANG)[0] == shim, what="the supervisor to exit")
        self.shims.remove(shim)
        shim, workload = self.previous_shim(rec, self.state + "-other")
        res = self.reconcile(r, expect=1)
        self.assertIn(f"Process/app: run record {self.state}/run/process/app.json is not ours: pid {shim} is not "
                      f"gitward's supervisor of Process/app in {self.state}/run", res.err)
        self.assertIn("Process/app: create failed: another supervisor is still running this resource", res.err)
        self.assertTrue(pid_alive(workload))
        self.assertEqual(records(self.state)["app"]["pid"], workload)
