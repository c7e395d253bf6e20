"""Host-side promises of the docs (contrib/docs/) that no other module pins: limits,
the clean environment, the SIGKILL fallback after a stopSignal, dependents
waiting for health, the pid-reuse check, a dry-run over a corrupt state
file, journald priority prefixes, SIGINT to the agent and the pass counts
of /metrics by result."""
import base64
import http.client
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from gwtest import (GITWARD, LISTEN_ANY, SLEEP, TempDirTest, agent_port, pid_alive, proc_yaml, records, run, stop,
                    wait_for)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)


def limits_of(pid):
    """{name: (soft, hard)} from /proc/<pid>/limits."""
    out = {}
    for line in read(f"/proc/{pid}/limits").splitlines()[1:]:
        m = re.match(r"^(.+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class Host(TempDirTest):
    def setUp(self):
        super().setUp()
        self.victims = []

    def tearDown(self):
        for p in self.victims:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        super().tearDown()

    def reconcile(self, r, *args, expect=0, env=None):
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", *args, env=env)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def pids(self):
        return {n: rec["pid"] for n, rec in records(self.state).items()}

    def test_limits_are_the_workloads_rlimits(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra="  limits: {openFiles: 4096, processes: 777, memory: 256Mi}\n"))
        r.write("b.yaml", proc_yaml("b"))  # no limits: the agent's own
        r.commit()
        self.reconcile(r)
        lim = limits_of(self.pids()["a"])
        self.assertEqual(lim["Max open files"], ("4096", "4096"))
        self.assertEqual(lim["Max processes"], ("777", "777"))
        self.assertEqual(lim["Max address space"], ("268435456", "268435456"))
        mine = limits_of(os.getpid())
        other = limits_of(self.pids()["b"])
        self.assertEqual(other["Max address space"], mine["Max address space"])
        self.assertEqual(other["Max processes"], mine["Max processes"])

    def test_the_workload_gets_a_clean_environment(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra="  env: {MODE: prod, PATH: /opt/bin}\n"))
        r.write("b.yaml", proc_yaml("b"))
        r.commit()
        # what the agent's caller holds never reaches a workload
        leak = {"LEAK_TOKEN": "s3cr3t", "NOTIFY_SOCKET": "/nonexistent", "JOURNAL_STREAM": "1:2", "LD_PRELOAD": "",
                "HOME": "/root/elsewhere", "GIT_DIR": "/tmp/x", "LANG": "C.UTF-8"}
        self.reconcile(r, env=leak)
        pids = self.pids()
        # the user it runs as (the agent's, without `user`) from the user database; env wins, even over PATH
        me = pwd.getpwuid(os.geteuid())
        who = {"HOME": me.pw_dir, "USER": me.pw_name, "LOGNAME": me.pw_name}
        self.assertEqual(environ_of(pids["a"]), {"PATH": "/opt/bin", **who, "MODE": "prod"})
        self.assertEqual(environ_of(pids["b"]), {"PATH": PATH, **who})
        # and the supervisor's environment holds none of it either
        shim = records(self.state)["b"]["shim_pid"]
        self.assertEqual(set(environ_of(shim)) & set(leak), set())

    def test_a_workload_ignoring_its_stop_signal_is_killed_after_its_stop_timeout(self):
        r = self.repo()
        script = "trap '' INT; trap 'exit 0' TERM; while :; do sleep 0.1; done"
        r.write("a.yaml", proc_yaml("a", command=("/bin/sh", "-c", script),
                                    extra="  stopSignal: INT\n  stopTimeout: 1s\n"))
        r.write("keep.yaml", proc_yaml("keep"))
        r.commit()
        self.reconcile(r)
        old = self.pids()["a"]
        r.remove("a.yaml")
        r.commit()
        t0 = time.monotonic()
        res = self.reconcile(r)
        took = time.monotonic() - t0
        # INT ignored, TERM never sent (it would have ended it at once): KILL after the second
        self.assertIn("Process/a: did not stop within 1000ms of SIGINT: killing\n", res.err)
        self.assertGreaterEqual(took, 1.0)
        self.assertFalse(pid_alive(old))
        self.assertEqual(sorted(records(self.state)), ["keep"])

    def test_dependents_wait_until_their_dependency_is_healthy(self):
        r = self.repo()
        flag = os.path.join(self.tmp, "ready")
        seen = os.path.join(self.tmp, "seen")
        # a is healthy once it made the flag, over a second after its start;
        # probed every 200 ms for interval x retries + timeout = 155 s at most,
        # each probe allowed 5 s on a loaded machine
        r.write("a.yaml", proc_yaml("a", command=("/bin/sh", "-c", f"sleep 1.5; : > {flag}; exec sleep 300"),
                                    extra=f"  healthCheck:\n    exec: {{command: [/usr/bin/test, -e, {flag}]}}\n"
                                          "    interval: 5s\n    timeout: 5s\n    retries: 30\n"))
        # b writes whether the flag was there when it started
        r.write("b.yaml", proc_yaml("b", command=("/bin/sh", "-c",
                                                  f"if test -e {flag}; then echo after; else echo before; fi > {seen};"
                                                  " exec sleep 300"), extra="  dependsOn: [a]\n"))
        r.commit()
        self.reconcile(r)
        wait_for(lambda: os.path.exists(seen) and read(seen), what="b's start")
        self.assertEqual(read(seen), "after\n")

    def test_dependents_of_an_unhealthy_resource_are_never_started(self):
        r = self.repo()
        # the detail is /bin/false's status: a probe timeout a loaded machine
        # cannot trip, or the detail would be the timeout
        r.write("a.yaml", proc_yaml("a", extra="  healthCheck:\n    exec: {command: [/bin/false]}\n"
                                               "    interval: 5s\n    timeout: 5s\n    retries: 2\n"))
        r.write("b.yaml", proc_yaml("b", extra="  dependsOn: [a]\n"))
        r.write("c.yaml", proc_yaml("c", extra="  dependsOn: [b]\n"))
        r.write("d.yaml", proc_yaml("d"))
        r.commit()
        res = self.reconcile(r, "--output", "json", expect=1)
        doc = res.json()
        self.assertEqual(doc["result"], {"converged": False, "ok": 1, "failed": 1, "waiting": 2, "held": 0}, res)
        self.assertEqual(sorted(self.pids()), ["a", "d"])
        st = {x["name"]: x for x in run("status", "--output", "json", "--state-dir", self.state).json()["resources"]}
        self.assertEqual((st["a"]["state"], st["a"]["health"]), ("running", "unhealthy"))
        self.assertEqual(st["a"]["detail"], "unhealthy: /bin/false exited with status 1")
        for name, dep in (("b", "a"), ("c", "b")):
            self.assertEqual((st[name]["state"], st[name]["pid"], st[name]["detail"]),
                             ("pending", None, f"waiting for Process/{dep}"))

    def test_a_record_whose_pid_was_reused_is_never_signalled(self):
        r = self.repo()
        r.write("keep.yaml", proc_yaml("keep"))
        r.commit()
        self.reconcile(r)
        # the record of a workload that died, whose pid now belongs to another process
        v = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
        self.victims.append(v)
        keep = records(self.state)["keep"]
        rec = dict(keep, pid=v.pid, start_time=start_time(v.pid) - 1)
        with open(os.path.join(self.state, "run", "process", "gone.json"), "w") as f:
            json.dump(rec, f)
        res = self.reconcile(r, "--dry-run", expect=2)
        self.assertIn("  - Process/gone         delete\n", res.out)
        # its deletion forgets the record and signals nothing
        self.reconcile(r)
        self.assertTrue(pid_alive(v.pid))
        self.assertEqual(sorted(records(self.state)), ["keep"])
        self.assertEqual(self.pids()["keep"], keep["pid"])
        # in Git under that name, it is started afresh beside the stranger
        with open(os.path.join(self.state, "run", "process", "gone.json"), "w") as f:
            json.dump(rec, f)
        r.write("gone.yaml", proc_yaml("gone"))
        r.commit()
        res = self.reconcile(r)
        self.assertTrue(pid_alive(v.pid))
        fresh = self.pids()["gone"]
        self.assertNotEqual(fresh, v.pid)
        self.assertTrue(pid_alive(fresh))

    def test_unreadable_records_and_records_whose_supervisor_is_gone_signal_nothing(self):
        r = self.repo()
        r.write("keep.yaml", proc_yaml("keep"))
        r.commit()
        self.reconcile(r)
        d = os.path.join(self.state, "run", "process")
        with open(os.path.join(d, "junk.json"), "w") as f:
            f.write("{not json")
        # a live process with its true start time, "supervised" by a pid that is gone
        v = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
        self.victims.append(v)
        gone = subprocess.Popen(["/bin/true"])
        gone.wait(timeout=10)
        rec = dict(records(self.state)["keep"], pid=v.pid, start_time=start_time(v.pid), shim_pid=gone.pid,
                   shim_start_time=1)
        orphan = os.path.join(d, "orphan.json")
        with open(orphan, "w") as f:
            json.dump(rec, f)
        try:
            res = self.reconcile(r)
            self.assertIn(f"warn Process/junk: unreadable process record {d}/junk.json: ignored\n", res.err)
            self.assertIn(f"warn Process/orphan: run record {orphan} is not ours: pid {v.pid} runs but the supervisor "
                          f"the record names (pid {gone.pid}) is gone; ignored, nothing signalled\n", res.err)
            self.assertTrue(pid_alive(v.pid))
            st = run("status", "--output", "json", "--state-dir", self.state).json()
            self.assertEqual([x["name"] for x in st["resources"]], ["keep"])
            # left for a person to look at, never deleted
            self.assertEqual(sorted(os.listdir(d)), ["junk.json", "keep.json", "keep.lock", "orphan.json"])
        finally:
            os.unlink(orphan)  # the teardown signals what records name: not a stranger's pids

    def test_a_dry_run_over_a_corrupt_state_file_reports_it_and_writes_nothing(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        self.reconcile(r)
        before = self.pids()
        path = os.path.join(self.state, "state.json")
        bad = b'{"version": 1, "resources": [{"kind": "Proc'
        with open(path, "wb") as f:
            f.write(bad)
        mtime = os.stat(path).st_mtime_ns
        r.write("b.yaml", proc_yaml("b"))
        r.commit()
        res = self.reconcile(r, "--dry-run", expect=1)
        self.assertIn(f"{path}:1:43: state file is corrupt: premature end of input near '\"Proc'; "
                      "observing the node without it\n", res.err)
        # the plan is still made, against what runs
        self.assertIn(f"  + Process/b            create  {SLEEP}\n", res.out)
        self.assertNotIn("Process/a", res.out)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), bad)
        self.assertEqual(os.stat(path).st_mtime_ns, mtime)
        self.assertEqual(self.pids(), before)
        self.assertTrue(pid_alive(before["a"]))

    def test_journald_prefixes_only_when_stderr_is_the_journal(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", command=("/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"),
                                    extra="  stopTimeout: 1s\n"))
        r.write("bad.yaml", proc_yaml("bad", command=("/nonexistent/program",), extra="  restart: never\n"))
        r.commit()
        err_path = os.path.join(self.tmp, "stderr")

        def reconcile_into_file(stream):
            with open(err_path, "w") as err:
                st = os.fstat(err.fileno())
                env = dict(os.environ, JOURNAL_STREAM=stream(st))
                p = subprocess.run([GITWARD, "reconcile", "--repo", r.path, "--state-dir", self.state],
                                   stdout=subprocess.PIPE, stderr=err, env=env, timeout=120, text=True)
            return p.returncode, read(err_path)

        # the variable names this very stream: sd-daemon priorities, no timestamps
        rc, err = reconcile_into_file(lambda st: f"{st.st_dev}:{st.st_ino}")
        self.assertEqual(rc, 1, err)
        pid = self.pids()["a"]
        self.assertIn(f"<6>info Process/a: create: started pid {pid}\n", err)
        self.assertIn("<3>error Process/bad: create failed: exec /nonexistent/program: No such file or directory\n",
                      err)
        r.remove("a.yaml")
        r.commit()
        rc, err = reconcile_into_file(lambda st: f"{st.st_dev}:{st.st_ino}")
        self.assertIn("<4>warn Process/a: did not stop within 1000ms of SIGTERM: killing\n", err)
        self.assertTrue(all(re.match(r"^<[3-7]>[a-z]+ ", line) for line in err.splitlines()), err)
        # inherited from a unit but stderr went elsewhere (another inode), or not DEV:INO: plain text lines
        for n, stream in enumerate((lambda st: f"{st.st_dev}:{st.st_ino + 1}", lambda st: "not-a-stream",
                                    lambda st: f"{st.st_dev}:{st.st_ino}x")):
            r.write(f"c{n}.yaml", proc_yaml(f"c{n}"))
            r.commit()
            rc, err = reconcile_into_file(stream)
            self.assertRegex(err, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info Process/c%d: create: started pid "
                                  r"%d\n$" % (n, self.pids()[f"c{n}"]))


class Agent(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def agent(self, r, *args):
        self.log_path = os.path.join(self.tmp, "agent.log")
        with open(self.log_path, "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--interval", "1h", "--listen", LISTEN_ANY, *args],
                                 stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(p)
        p.port = agent_port(p, self.log_path)
        return p

    def metrics(self, a):
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        try:
            c.request("GET", "/metrics")
            resp = c.getresponse()
            self.assertEqual(resp.status, 200)
            body = resp.read().decode()
        finally:
            c.close()
        return {m.group(1): float(m.group(2))
                for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) ([-+0-9.e]+)$", body, re.M)}

    def test_sigint_stops_the_agent_with_exit_0_and_workloads_keep_running(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        a = self.agent(r)
        wait_for(lambda: "a" in records(self.state) and "pass done" in read(self.log_path), what="the first pass")
        pid = records(self.state)["a"]["pid"]
        a.send_signal(signal.SIGINT)
        self.assertEqual(a.wait(timeout=120), 0, read(self.log_path))
        self.assertIn("agent stopping; workloads keep running", read(self.log_path))
        self.assertTrue(pid_alive(pid))
        self.assertEqual(records(self.state)["a"]["pid"], pid)

    def test_metrics_count_an_invalid_commit_and_keep_the_good_one(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        good = r.commit()
        a = self.agent(r)
        wait_for(lambda: self.metrics(a).get('gitward_sync_total{result="success"}') == 1, what="the first pass")
        r.write("b.yaml", "apiVersion: gitward/v1\nkind: Process\nmetadata: {name: b}\nspec: {comand: [x]}\n")
        r.commit()
        a.send_signal(signal.SIGHUP)
        m = wait_for(lambda: (lambda m: m if m.get('gitward_sync_total{result="invalid"}') == 1 else None)(
            self.metrics(a)), what="the invalid pass counted")
        self.assertEqual(m['gitward_sync_total{result="success"}'], 1)
        for result in ("not_converged", "git_error", "error", "unverified"):
            self.assertEqual(m[f'gitward_sync_total{{result="{result}"}}'], 0, result)
        info = [k for k in m if k.startswith("gitward_commit_info{")]
        self.assertEqual(len(info), 1, info)
        self.assertTrue(info[0].startswith(f'gitward_commit_info{{commit="{good}",'), info)
        self.assertEqual(m[info[0]], 1)
        self.assertEqual(m['gitward_resources{kind="Process",state="running"}'], 1)
        self.assertEqual(m['gitward_resource_converged{kind="Process",name="a"}'], 1)
        self.assertGreaterEqual(m["gitward_last_attempt_timestamp_seconds"],
                                m["gitward_last_success_timestamp_seconds"])
        self.assertEqual(m["gitward_pass_duration_seconds_count"], 2)
        self.assertNotIn("b", records(self.state))


class AskingForAPassword(http.server.BaseHTTPRequestHandler):
    """A Git server that answers every request with 401 Basic, remembering
    the Authorization headers it was sent."""
    auths = []

    def do_GET(self):
        AskingForAPassword.auths.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Fetch(TempDirTest):
    """How the fetch process refuses before or while it talks to a remote:
    each a clear error, exit 1, nothing cached, nothing run."""

    def dry_run(self, repo, *args):
        res = run("reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state, *args, timeout=60)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        self.assertFalse(os.path.exists(os.path.join(self.state, "repo.git")), "a failed clone left a cache")
        return res.err

    def test_a_missing_ca_file_is_refused_before_connecting(self):
        err = self.dry_run("https://127.0.0.1:1/x.git", "--ca-file", "/nonexistent/ca.pem")
        self.assertEqual(err, "gitward: error: https://127.0.0.1:1/x.git: --ca-file /nonexistent/ca.pem: "
                              "No such file or directory\n")

    def test_a_bracketed_ipv6_remote_that_refuses(self):
        try:
            closed = socket.socket(socket.AF_INET6)
            closed.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback here")
        self.addCleanup(closed.close)
        url = f"http://[::1]:{closed.getsockname()[1]}/x.git"
        err = self.dry_run(url)
        self.assertEqual(err, f"gitward: error: {url}: cannot reach the remote: failed to connect to ::1: "
                              "Connection refused\n")

    def test_a_repo_that_is_a_file(self):
        path = os.path.join(self.tmp, "file")
        with open(path, "w") as f:
            f.write("x\n")
        err = self.dry_run(path)
        self.assertEqual(err, f"gitward: error: {path} is not a directory (--repo takes a URL or a Git "
                              "repository)\n")

    def test_password_files_and_a_refused_password(self):
        AskingForAPassword.auths = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AskingForAPassword)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/x.git"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITWARD_")}
        missing = os.path.join(self.tmp, "missing")

        def refused(*args):
            res = run("reconcile", "--dry-run", "--repo", url, "--state-dir", self.state, "--git-username", "ops",
                      *args, timeout=60, env=env)
            self.assertEqual(res.rc, 1, res)
            return res.err

        self.assertEqual(refused("--git-password-file", missing),
                         f"gitward: error: {url}: --git-password-file {missing}: cannot open: No such file or "
                         "directory\n")
        two = os.path.join(self.tmp, "two-lines")
        with open(two, "w") as f:
            f.write("first\nsecond\n")
        self.assertEqual(refused("--git-password-file", two),
                         f"gitward: error: {url}: --git-password-file {two}: expected one line\n")
        self.assertEqual(AskingForAPassword.auths, [None, None])  # nothing sent from a bad file
        good = os.path.join(self.tmp, "token")
        with open(good, "w") as f:
            f.write("t0ken-\u00e9\r\n")
        err = refused("--git-password-file", good)
        self.assertEqual(err, f"gitward: error: {url}: authentication failed for user ops: the server refused the "
                              "password or token\n")
        self.assertNotIn("t0ken", err)
        sent = "Basic " + base64.b64encode("ops:t0ken-\u00e9".encode()).decode()
        self.assertEqual(AskingForAPassword.auths[2:], [None, sent])  # once, without the line end


class Outputs(TempDirTest):
    """The machine-readable outputs of diff and reconcile --dry-run on
    errors and per node, and the formats a command does not print."""

    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("a.yaml", proc_yaml("a"))
        self.base = self.r.commit("a")
        self.r.git("checkout", "-q", "-b", "feature")
        self.r.write("b.yaml", proc_yaml("b"))
        self.head = self.r.commit("b")
        self.nodes = os.path.join(self.tmp, "nodes.yaml")
        with open(self.nodes, "w") as f:
            f.write("nodes:\n  - name: web-01\n    labels: {role: edge}\n  - name: db-01\n")
        self.missing = (f'ref "nosuch" not found in {self.r.path} (no such branch, tag or commit): give a branch, '
                        "a tag or a commit id (at least 7 digits)")

    def gw(self, *args, expect):
        res = run(*args, timeout=60)
        self.assertEqual(res.rc, expect, res)
        return res

    def diff(self, *args, expect):
        return self.gw("diff", "--repo", self.r.path, "--state-dir", self.state, *args, expect=expect)

    def dry_run(self, *args, expect):
        return self.gw("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", self.state, "--node", "n1",
                       *args, expect=expect)

    def test_diff_errors_in_json_and_github(self):
        res = self.diff("--base", "nosuch", "--ref", "feature", "--output", "json", expect=1)
        doc = res.json()
        self.assertEqual((doc["commit"], doc["ref"], doc["actions"]), (self.head, "feature", []))
        self.assertEqual(doc["errors"], [{"file": None, "line": None, "column": None,
                                          "message": "--base: " + self.missing}])
        self.assertEqual(res.err, f"gitward: error: --base: {self.missing}\n")
        res = self.diff("--base", "nosuch", "--ref", "feature", "--output", "github", expect=1)
        self.assertEqual(res.out, f"::error::--base: {self.missing}\n")

    def test_diff_json_per_node_of_an_inventory(self):
        res = self.diff("--base", "main", "--ref", "feature", "--output", "json", "--nodes", self.nodes, expect=2)
        doc = res.json()
        self.assertEqual({k: doc[k] for k in ("commit", "base", "ref", "errors")},
                         {"commit": self.head, "base": self.base, "ref": "feature", "errors": []})
        self.assertEqual([n["node"] for n in doc["nodes"]], ["web-01", "db-01"])
        for n in doc["nodes"]:
            self.assertEqual([(a["name"], a["action"]) for a in n["actions"]], [("b", "create")])
            self.assertEqual(n["summary"], {"create": 1, "update": 0, "delete": 0, "restart": 0, "unchanged": 1})
        self.assertFalse(os.path.exists(self.state))

    def test_diff_warns_of_a_base_with_problems_and_compares_its_valid_resources(self):
        self.r.git("checkout", "-q", "main")
        self.r.write("bad.yaml", proc_yaml("bad", extra="  restart: sometimes\n"))
        base = self.r.commit("a broken base")
        res = self.diff("--base", base, "--ref", "feature", expect=2)
        self.assertEqual(res.err, f"gitward: warning: the base commit {base[:12]} has 1 problem; its valid "
                                  "resources are compared\n")
        self.assertEqual(res.out, f"  + Process/b            create  {SLEEP}\n"
                                  "Plan: 1 to create, 0 to update, 0 to delete, 0 to restart, 1 unchanged.\n")

    def test_markdown_escapes_values_and_masks_secret_keys(self):
        self.r.write("a.yaml", proc_yaml("a", extra="  env: {API_TOKEN: s3cr3t, MODE: \"<b>|&`x`\"}\n"
                                                     "  workingDir: /srv\n"))
        self.r.write("long.yaml", proc_yaml("a-rather-long-resource-name-here"))
        head = self.r.commit("c")
        res = self.diff("--base", "main", "--ref", "feature", "--node", "n1", "--output", "markdown", expect=2)
        self.assertEqual(res.out, (
            "### gitward plan\n\n"
            f"Commit <code>{head[:12]}</code> (<code>feature</code>) against <code>{self.base[:12]}</code>.\n\n"
            "**n1**: 2 to create, 1 to update, 0 to delete, 0 to restart, 0 unchanged.\n\n"
            "| | Resource | Action | Detail |\n|:-:|---|---|---|\n"
            "| ~ | Process/a | update | 2 fields changed |\n"
            "| + | Process/a-rather-long-resource-name-here | create | command <code>&#91;\"/bin/sleep\",\"300\"]</code> |\n"
            "| + | Process/b | create | command <code>&#91;\"/bin/sleep\",\"300\"]</code> |\n\n"
            "<details><summary>Field changes on n1</summary>\n\n"
            "| Resource | Field | From | To |\n|---|---|---|---|\n"
            "| Process/a | <code>env</code> | <code>(unset)</code> | "
            "<code>{\"API_TOKEN\":\"&#42;&#42;&#42;\",\"MODE\":\"&lt;b&gt;&#124;&amp;&#96;x&#96;\"}</code> |\n"
            "| Process/a | <code>workingDir</code> | <code>(unset)</code> | <code>\"/srv\"</code> |\n\n"
            "</details>\n"))
        self.assertNotIn("s3cr3t", res.out)
        # the text plan, for people at a terminal, widens its column to the longest name
        res = self.diff("--base", "main", "--ref", "feature", "--node", "n1", expect=2)
        self.assertIn(f"  + Process/a-rather-long-resource-name-here create  {SLEEP}\n", res.out)
        self.assertIn(f"  + Process/b                                create  {SLEEP}\n", res.out)

    def test_dry_run_errors_and_plans_in_github_and_markdown(self):
        res = self.dry_run("--ref", "nosuch", "--output", "github", expect=1)
        self.assertEqual(res.out, f"::error::{self.missing}\n")
        res = self.dry_run("--ref", "nosuch", "--output", "markdown", expect=1)
        self.assertEqual(res.out, "### gitward plan\n\nThe commit could not be planned.\n\n**Errors** (nothing of "
                                  f"this commit would be applied):\n\n- {self.missing}\n")
        res = self.dry_run("--ref", "feature", "--output", "github", expect=2)
        self.assertEqual(res.out, "::notice title=gitward plan::n1: 2 to create, 0 to update, 0 to delete, 0 to "
                                  "restart, 0 unchanged.\n")

    def test_formats_a_command_does_not_print_are_usage_errors(self):
        res = self.gw("status", "--output", "markdown", "--state-dir", self.state, expect=64)
        self.assertEqual(res.err, "gitward: --output: status prints text or json\n")
        res = self.gw("validate", "--output", "markdown", self.r.path, expect=64)
        self.assertEqual(res.err, "gitward: --output: validate prints text, json or github\n")
        res = self.diff("--base", "main", "--bogus", expect=64)
        self.assertIn('gitward: unknown option "--bogus"', res.err)
        self.assertEqual(res.out, "")


class Listening(TempDirTest):
    """--listen and --webhook-secret-file: what an agent accepts, what it
    refuses before it applies anything."""

    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("a.yaml", proc_yaml("a"))
        self.r.commit()

    def refused(self, *args):
        res = run("agent", "--repo", self.r.path, "--state-dir", self.state, "--interval", "1h", *args, timeout=60)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(records(self.state), {}, "an agent that refused its options applied something")
        return res.err

    def test_bad_listen_host_and_webhook_secrets_exit_1_before_any_pass(self):
        self.assertEqual(self.refused("--listen", "nothost:1"),
                         "gitward: error: --listen nothost:1: expected an IPv4 address and a port\n")
        missing = os.path.join(self.tmp, "missing.secret")
        self.assertIn(f"{missing}: --webhook-secret-file: cannot open: No such file or directory",
                      self.refused("--listen", LISTEN_ANY, "--webhook-secret-file", missing))
        empty = os.path.join(self.tmp, "empty.secret")
        with open(empty, "w") as f:
            f.write("\n")
        self.assertEqual(self.refused("--listen", LISTEN_ANY, "--webhook-secret-file", empty),
                         f"gitward: error: --webhook-secret-file {empty} is empty\n")

    def test_json_logs_of_the_agent_name_the_bound_address(self):
        log_path = os.path.join(self.tmp, "agent.log")
        with open(log_path, "w") as log:
            a = subprocess.Popen([GITWARD, "agent", "--repo", self.r.path, "--state-dir", self.state, "--interval", "1h",
                                  "--listen", LISTEN_ANY, "--log-format", "json"], stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            port = agent_port(a, log_path)
            wait_for(lambda: "a" in records(self.state), what="the first pass")
        finally:
            stop(a)
        self.assertEqual(a.returncode, 0, read(log_path))
        lines = [json.loads(line) for line in read(log_path).splitlines()]
        endpoints = [x for x in lines if x["msg"].startswith("endpoints on ")]
        self.assertEqual([{k: v for k, v in x.items() if k != "time"} for x in endpoints],
                         [{"level": "info", "msg": f"endpoints on http://127.0.0.1:{port}/ (healthz, metrics, status)"}])
        started = [x for x in lines if x.get("resource") == "Process/a"]
        self.assertEqual((started[0]["kind"], started[0]["name"], started[0]["action"]), ("Process", "a", "create"))

    def test_localhost_names_the_address_it_bound(self):
        # (loopback only: "*" would listen on every interface of this machine)
        for listen, shown in (("localhost:0", "127.0.0.1"),):
            log_path = os.path.join(self.tmp, "agent.log")
            with open(log_path, "w") as log:
                a = subprocess.Popen([GITWARD, "agent", "--repo", self.r.path, "--state-dir", self.state,
                                      "--interval", "1h", "--listen", listen], stdout=log, stderr=subprocess.STDOUT)
            try:
                m = wait_for(lambda: re.search(r"endpoints on http://([0-9.]+):([0-9]+)/ \(healthz, metrics, "
                                               r"status\)\n", read(log_path)) or a.poll() is not None,
                             what="the endpoints line")
                self.assertIsNot(m, True, read(log_path))
                self.assertEqual(m.group(1), shown)
                c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=30)
                c.request("GET", "/healthz")
                self.assertEqual(c.getresponse().status, 200)
                c.close()
            finally:
                stop(a)
            self.assertEqual(a.returncode, 0, read(log_path))


class Usage(TempDirTest):
    """Usage errors exit 64 with their cause, before anything is read or run."""

    def usage(self, *args, message):
        res = run(*args, timeout=60)
        self.assertEqual(res.rc, 64, res)
        self.assertEqual(res.out, "")
        self.assertEqual(res.err.splitlines()[0], "gitward: " + message)
        self.assertFalse(os.path.exists(self.state), "a usage error created the state dir")
        return res

    def test_usage_errors(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        self.usage("agent", "--state-dir", self.state,
                   message="--repo is required: the Git repository to read (URL or local path)")
        self.usage("status", "--state-dir", self.state, "stray", message='unexpected argument "stray"')
        self.usage("validate", "-q", r.path, message='unknown option "-q"')
        self.usage("validate", "-o", message="-o (--output) needs a value")
        self.usage("validate", "--output", "xml", r.path,
                   message='--output: expected text, json or github, got "xml"')
        self.usage("status", "--output", "xml", "--state-dir", self.state,
                   message='--output: expected text or json, got "xml"')
        self.usage("validate", "--exclude", "", r.path, message="--exclude: expected a glob like docs/ or ci/*.yml")
        self.usage("reconcile", "--dry-run=yes", message="--dry-run takes no value")
        self.usage("reconcile", "--repo", message="--repo needs a value")
        self.usage("reconcile", "--bogus=1", message='unknown option "--bogus"')
        # a prefix of several options is none of them (glibc took the first one)
        for args in (("--git", "x"), ("--git=x",)):
            self.usage("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, *args,
                       message='option "--git" is ambiguous (--git-username or another)')
        # a prefix of one option is that option
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--no-pr", "--nod", "n1",
                  "--output", "text", timeout=60)
        self.assertEqual((res.rc, res.out), (2, f"  + Process/a            create  {SLEEP}\nPlan: 1 to create, 0 to update, "
                                                "0 to delete, 0 to restart, 0 unchanged.\n"), res)

    def test_version_flag_is_the_version_command(self):
        a, b = run("--version"), run("version")
        self.assertEqual((a.rc, b.rc), (0, 0))
        self.assertRegex(a.out, r"^gitward \d+\.\d+\.\d+\n")
        self.assertEqual(a.out, b.out)

    def test_github_annotations_escape_their_properties_and_data(self):
        d = os.path.join(self.tmp, "m")
        os.makedirs(d)
        with open(os.path.join(d, "a,b:c%.yaml"), "w") as f:
            f.write(proc_yaml("a", extra="  restart: \"50%x\"\n"))
        res = run("validate", "--output", "github", d)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, f"::error file={d}/a%2Cb%3Ac%25.yaml,line=6,col=12::spec.restart: expected one "
                                  "of always, on-failure or never, got \"50%25x\"\n")


class RevokedKey(TempDirTest):
    """A commit signed by a key that has been revoked since is refused,
    though its signature is good."""

    def gpg(self, *args, env=None):
        r = subprocess.run(["gpg", "--batch", "--homedir", self.home, *args], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_a_commit_signed_by_a_key_revoked_since_is_refused(self):
        if not (shutil.which("gpg") and shutil.which("gpgconf")):
            self.fail("gpg is needed (contrib/install-deps.sh)")
        self.home = os.path.join(self.tmp, "gnupg-ops")
        os.mkdir(self.home, 0o700)
        for home in (self.home, os.path.join(self.state, "gnupg")):
            self.addCleanup(subprocess.run, ["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True,
                            timeout=30)
        self.gpg("--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", "ops <ops@example.com>",
                 "ed25519", "sign", "1y")
        fpr = [line.split(":")[9] for line in self.gpg("--with-colons", "--list-keys").splitlines()
               if line.startswith("fpr:")][0]
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.git("add", "-A")
        signed = subprocess.run(["git", "-C", r.path, "-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}",
                                 "commit", "-q", "-S", "-m", "signed"], capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, GNUPGHOME=self.home))
        self.assertEqual(signed.returncode, 0, signed.stderr)
        keys = os.path.join(self.tmp, "keys.asc")

        def dry_run():
            with open(keys, "w") as f:
                f.write(self.gpg("--armor", "--export", fpr))
            return run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                       "--verify-signatures", "--gpg-keyring", keys, timeout=60)

        res = dry_run()
        self.assertEqual(res.rc, 2, res)
        self.assertIn(f"  + Process/a            create  {SLEEP}\n", res.out)
        # the revocation certificate gpg made with the key, imported: the key is revoked
        with open(os.path.join(self.home, "openpgp-revocs.d", f"{fpr}.rev")) as f:
            cert = f.read().replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        rev = os.path.join(self.tmp, "revoke.asc")
        with open(rev, "w") as f:
            f.write(cert)
        self.gpg("--import", rev)
        res = dry_run()
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        self.assertIn("is signed by a revoked key", res.err)
        self.assertIn(fpr[-16:], res.err.upper())


H = "apiVersion: gitward/v1\n"


def _p(name, extra, cmd='["/bin/true"]'):
    return f"{H}kind: Process\nmetadata: {{name: {name}}}\nspec:\n  command: {cmd}\n{extra}"


def _c(name, extra, image="localhost/x:1"):
    return f"{H}kind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n{extra}"


def _v(name, extra):
    return f"{H}kind: VM\nmetadata: {{name: {name}}}\nspec:\n{extra}"


def _meta(name, labels):
    return f"{H}kind: Process\nmetadata: {{name: {name}, labels: {labels}}}\nspec:\n  command: [/bin/true]\n"


# one problem each: every check of a field's value, at its line and column
BAD = {
    "n01": _p("a" * 64, ""), "n02": _p("Web", ""), "n03": _p("-web", ""), "n04": _p("web-", ""),
    "l01": _meta("l1", '{"bad key": x}'), "l02": _meta("l2", '{k: "' + "v" * 64 + '"}'),
    "l03": _meta("l3", '{k: "a b"}'),
    "e01": _p("e1", "  env: {1BAD: x}\n"), "e02": _p("e2", "  env: {A-B: x}\n"),
    "w02": _p("w2", '  envFiles: [""]\n'),
    "c01": _p("c1", "", cmd="[]"), "c02": _p("c2", "", cmd='[sleep, "1"]'),
    "s01": _p("s1", "  stopSignal: FOO\n"), "s02": _p("s2", "  stopTimeout: soon\n"),
    "m01": _p("m1", "  limits: {memory: 12Q}\n"), "m02": _p("m2", "  limits: {openFiles: x}\n"),
    "h01": _p("h1", '  healthCheck:\n    http: {url: "ftp://x/"}\n'),
    "h02": _p("h2", "  healthCheck:\n    tcp: {address: nohost}\n"),
    "h03": _p("h3", '  healthCheck:\n    tcp: {address: "h:70000"}\n'),
    "h04": _p("h4", '  healthCheck:\n    tcp: {address: ":80"}\n'),
    "h05": _p("h5", '  healthCheck:\n    tcp: {address: "h:1"}\n    http: {url: "http://h/"}\n'),
    "h06": _p("h6", "  healthCheck:\n    interval: 1s\n"),
    "h07": _p("h7", '  healthCheck:\n    http: {url: "http://a b/"}\n'),
    "u01": _p("u1", '  user: "a b"\n'),
    "k01": _c("k1", '  ports: ["127.0.0.1:80"]\n'),
    "k02": _c("k2", '  network: none\n  ports: ["127.0.0.1:8080:80/tcp"]\n'),
    "k03": _c("k3", '  volumes: ["relative:/data"]\n'), "k04": _c("k4", '  volumes: ["/a:/b:rx"]\n'),
    "k06": _c("k6", "  cpus: 1.5.2\n"), "k07": _c("k7", "  cpus: abc\n"),
    "k08": _c("k8", '  ports: ["127.0.0.1:0:80/tcp"]\n'),
    "i01": _c("i1", "", image='"bad image"'),
    "v01": _v("v1", "  memory: 512Mi\n"), "v02": _v("v2", '  disk: /d\n  forwards: ["2222:22"]\n'),
    "v03": _v("v3", "  disk: /d\n  network: bridge\n"),
    "a01": "apiVersion: gitward/v2\nkind: Process\nmetadata: {name: a1}\nspec: {command: [/bin/true]}\n",
    "a02": f"{H}metadata: {{name: a2}}\nspec: {{command: [/bin/true]}}\n",
    "a03": f"{H}kind: Pod\nmetadata: {{name: a3}}\nspec: {{command: [/bin/true]}}\n",
    "a04": f"{H}kind: Process\nmetadata: [a4]\nspec: {{command: [/bin/true]}}\n",
    "a05": f"{H}kind: Process\nmetadata: {{name: a5}}\n",
    "d01": _p("d1", "  dependsOn: [n02x, n02x]\n"),
    "x01": _p("x1", '  nodeSelector: {role: "a b"}\n'),
    "zz": _p("n02x", ""),
    "l04": _meta("l4", '{"-k": x}'), "l05": _meta("l5", '{"' + "k" * 64 + '": x}'),
    "p01": _p("p1", '  secretEnvFiles: ["../x.age"]\n'), "p02": _p("p2", '  secretEnvFiles: ["a//b.age"]\n'),
    "p03": _p("p3", '  secretEnvFiles: ["a/./b.age"]\n'), "p04": _p("p4", '  secretEnvFiles: ["a/"]\n'),
    "p05": _p("p5", '  secretEnvFiles: [""]\n'),
    "k09": _c("k9", '  volumes: ["/a"]\n'), "k10": _c("k10", '  volumes: ["/a:rel"]\n'),
    "k11": _c("k11", '  volumes: ["/a:"]\n'), "k12": _c("k12", "", image='""'),
    "h08": _p("h8", '  healthCheck:\n    http: {url: "http://"}\n'),
    "h09": _p("h9", '  healthCheck:\n    tcp: {address: "h:0"}\n'),
    "h10": _p("h10", '  healthCheck:\n    tcp: {address: "h:abc"}\n'),
    "u02": _p("u2", '  user: ""\n'), "u03": _p("u3", '  user: "' + "u" * 33 + '"\n'),
    "u04": _p("u4", '  user: "a\\tb"\n'),
}

EXPECTED = [
    'a01.yaml:1:13: apiVersion: expected "gitward/v1", got "gitward/v2"',
    'a02.yaml:1:1: kind: required field is missing',
    'a03.yaml:2:7: kind: expected one of Process, Container, VM or External, got "Pod"',
    'a04.yaml:3:11: metadata: expected a mapping, got a list',
    'a05.yaml:1:1: spec: required field is missing',
    'c01.yaml:5:12: spec.command: expected a non-empty list',
    'c02.yaml:5:13: spec.command[0]: expected an absolute path to the program (argv is executed directly, no shell, no PATH search), got "sleep"',
    'd01.yaml:6:21: spec.dependsOn: "n02x" is listed twice',
    'e01.yaml:6:9: spec.env.1BAD: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)',
    'e02.yaml:6:9: spec.env.A-B: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)',
    'h01.yaml:7:17: spec.healthCheck.http.url: expected an http:// URL, got "ftp://x/"',
    'h02.yaml:7:20: spec.healthCheck.tcp.address: expected "HOST:PORT", got "nohost"',
    'h03.yaml:7:20: spec.healthCheck.tcp.address: expected "HOST:PORT", got "h:70000"',
    'h04.yaml:7:20: spec.healthCheck.tcp.address: expected "HOST:PORT", got ":80"',
    'h05.yaml:7:5: spec.healthCheck: expected exactly one of http, tcp or exec, got 2',
    'h06.yaml:7:5: spec.healthCheck: expected exactly one of http, tcp or exec, got 0',
    'h07.yaml:7:17: spec.healthCheck.http.url: expected an http:// URL, got "http://a b/"',
    'h08.yaml:7:17: spec.healthCheck.http.url: expected an http:// URL, got "http://"',
    'h09.yaml:7:20: spec.healthCheck.tcp.address: expected "HOST:PORT", got "h:0"',
    'h10.yaml:7:20: spec.healthCheck.tcp.address: expected "HOST:PORT", got "h:abc"',
    'i01.yaml:5:10: spec.image: expected an image reference without spaces, got "bad image"',
    'k01.yaml:6:11: spec.ports[0]: expected "[IP:]HOSTPORT:PORT[/tcp|udp]" with ports 1-65535, got "127.0.0.1:80"',
    'k02.yaml:7:10: spec.ports: needs network: bridge (ports are not published on none)',
    'k03.yaml:6:13: spec.volumes[0]: expected "/HOST/PATH:/CONTAINER/PATH[:ro|:rw]", got "relative:/data"',
    'k04.yaml:6:13: spec.volumes[0]: expected "/HOST/PATH:/CONTAINER/PATH[:ro|:rw]", got "/a:/b:rx"',
    'k06.yaml:6:9: spec.cpus: expected a number of CPUs like 0.5 or 2, got "1.5.2"',
    'k07.yaml:6:9: spec.cpus: expected a number of CPUs like 0.5 or 2, got "abc"',
    'k08.yaml:6:11: spec.ports[0]: expected "[IP:]HOSTPORT:PORT[/tcp|udp]" with ports 1-65535, got "127.0.0.1:0:80/tcp"',
    'k09.yaml:6:13: spec.volumes[0]: expected "/HOST/PATH:/CONTAINER/PATH[:ro|:rw]", got "/a"',
    'k10.yaml:6:13: spec.volumes[0]: expected "/HOST/PATH:/CONTAINER/PATH[:ro|:rw]", got "/a:rel"',
    'k11.yaml:6:13: spec.volumes[0]: expected "/HOST/PATH:/CONTAINER/PATH[:ro|:rw]", got "/a:"',
    'k12.yaml:5:10: spec.image: expected an image reference, got ""',
    "l01.yaml:3:31: metadata.labels.bad key: expected a label key of letters, digits, '-', '_', '.', '/', at most 63 characters",
    'l02.yaml:3:34: metadata.labels.k: expected a label value of letters, digits, \'-\', \'_\', \'.\', at most 63 characters, got "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv..."',
    'l03.yaml:3:34: metadata.labels.k: expected a label value of letters, digits, \'-\', \'_\', \'.\', at most 63 characters, got "a b"',
    "l04.yaml:3:31: metadata.labels.-k: expected a label key of letters, digits, '-', '_', '.', '/', at most 63 characters",
    "l05.yaml:3:31: metadata.labels.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk: expected a label key of letters, digits, '-', '_', '.', '/', at most 63 characters",
    'm01.yaml:6:20: spec.limits.memory: expected a size like 512Mi, 2Gi or 1000000, got "12Q"',
    'm02.yaml:6:23: spec.limits.openFiles: expected an integer, got "x"',
    'n01.yaml:3:18: metadata.name: expected a name of lowercase letters, digits and \'-\', starting and ending alphanumeric, at most 63 characters, got "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."',
    'n02.yaml:3:18: metadata.name: expected a name of lowercase letters, digits and \'-\', starting and ending alphanumeric, at most 63 characters, got "Web"',
    'n03.yaml:3:18: metadata.name: expected a name of lowercase letters, digits and \'-\', starting and ending alphanumeric, at most 63 characters, got "-web"',
    'n04.yaml:3:18: metadata.name: expected a name of lowercase letters, digits and \'-\', starting and ending alphanumeric, at most 63 characters, got "web-"',
    'p01.yaml:6:20: spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), got "../x.age"',
    'p02.yaml:6:20: spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), got "a//b.age"',
    'p03.yaml:6:20: spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), got "a/./b.age"',
    'p04.yaml:6:20: spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), got "a/"',
    'p05.yaml:6:20: spec.secretEnvFiles[0]: expected a path relative to the repository root (no leading /, no . or .. parts), got ""',
    's01.yaml:6:15: spec.stopSignal: expected a signal name like TERM, INT, QUIT, HUP, KILL, got "FOO"',
    's02.yaml:6:16: spec.stopTimeout: expected a duration like 500ms, 10s, 1m30s or 2h, got "soon"',
    'u01.yaml:6:9: spec.user: expected a user name or numeric uid, got "a b"',
    'u02.yaml:6:9: spec.user: expected a user name or numeric uid, got ""',
    'u03.yaml:6:9: spec.user: expected a user name or numeric uid, got "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"',
    'u04.yaml:6:9: spec.user: expected a user name or numeric uid, got "a\\tb"',
    'v01.yaml:5:3: spec: a VM needs a kernel, a disk, or both',
    'v03.yaml:6:12: spec.network: expected one of none or user, got "bridge"',
    'w02.yaml:6:14: spec.envFiles[0]: expected an absolute path, got ""',
    'x01.yaml:6:24: spec.nodeSelector.role: expected a label value of letters, digits, \'-\', \'_\', \'.\', at most 63 characters, got "a b"',
]


class Validate(TempDirTest):
    def test_github_annotations_escape_invisible_characters(self):
        """A file name with a U+202E bidi override (a pull request can name
        one) is an annotation property shown as \\u202e, never raw."""
        d = os.path.join(self.tmp, "m")
        os.makedirs(d)
        with open(os.path.join(d, "a\u202egpj.yaml"), "w") as f:
            f.write("apiVersion: gitward/v1\nkind: Process\nmetadata: {name: a}\nspec: {bogus: 1}\n")
        res = run("validate", "--output", "github", "m", cwd=self.tmp)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("::error file=m/a\\u202egpj.yaml,line=", res.out)
        self.assertNotIn("\u202e", res.out + res.err)

    def test_every_field_check_names_its_place_and_what_it_expected(self):
        d = os.path.join(self.tmp, "m")
        os.makedirs(d)
        for name, text in BAD.items():
            with open(os.path.join(d, f"{name}.yaml"), "w") as f:
                f.write(text)
        res = run("validate", d)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        got = [line[len(d) + 1:] if line.startswith(d + "/") else line for line in res.err.splitlines()]
        self.assertEqual(got, EXPECTED + [f"{len(EXPECTED)} problems found."])


class ReviewInputs(TempDirTest):
    """diff --nodes and reconcile --dry-run --against read files a CI job
    hands them: each problem named at its place, exit 1, no plan."""

    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("a.yaml", proc_yaml("a"))
        self.r.commit("a")

    def test_inventory_problems(self):
        inv = os.path.join(self.tmp, "inv.yaml")
        cases = [
            ("- a", "1:1: expected one document with \"nodes:\", a list of {name, labels}"),
            ("nodes: []", "1:8: expected one document with \"nodes:\", a list of {name, labels}"),
            ("nodes: [x]", "1:9: nodes: expected a mapping with name and labels"),
            ("nodes: [{labels: {}}]", "1:9: name: expected the node's name"),
            ("nodes: [{name: 'a b'}]", "1:16: name: --node: expected letters, digits, '-', '_', '.', got \"a b\""),
            ("nodes: [{name: a, labels: [x]}]", "1:27: labels: expected a mapping of label: value"),
            ("nodes: [{name: a, labels: {k: [x]}}]", "1:28: labels.k: expected a string"),
            ("nodes: [{name: a, labels: {node: b}}]",
             "1:28: labels.node: expected a string (and not \"node\", which is the name)"),
        ]
        for text, want in cases:
            with open(inv, "w") as f:
                f.write(text + "\n")
            res = run("diff", "--repo", self.r.path, "--base", "main", "--nodes", inv, "--state-dir", self.state)
            self.assertEqual((res.rc, res.out), (1, ""), res)
            self.assertEqual(res.err, f"{inv}:{want}\n", text)

    def test_against_files_that_are_not_a_status(self):
        st = os.path.join(self.tmp, "status.json")
        head = f"gitward: error: {st}: not the JSON of `gitward status --output json`: "
        cases = [
            ("not json", "'[' or '{' expected near 'not'"),
            ("[1]", 'no "resources" list'),
            ('{"resources": 3}', 'no "resources" list'),
            ('{"node": "n1", "resources": [{"kind": "Pod", "name": "a", "state": "running"}]}',
             "resources[0]: expected kind, name and a spec_hash of 64 hex"),
        ]
        for text, want in cases:
            with open(st, "w") as f:
                f.write(text + "\n")
            res = run("reconcile", "--dry-run", "--repo", self.r.path, "--against", st, "--state-dir", self.state)
            self.assertEqual((res.rc, res.out), (1, ""), res)
            self.assertEqual(res.err, head + want + "\n", text)
        missing = os.path.join(self.tmp, "missing.json")
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--against", missing, "--state-dir", self.state)
        self.assertEqual((res.rc, res.err), (1, f"gitward: error: {missing}: --against: cannot open: No such file "
                                                "or directory\n"), res)
        # an agent's /status that answers 404, and one that is not there
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AskingForAPassword)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/status"
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--against", url, "--state-dir", self.state)
        self.assertEqual((res.rc, res.err), (1, f"gitward: error: --against {url}: HTTP status 401\n"), res)

    def test_against_sends_the_urls_password_and_github_output_escapes_the_node(self):
        """--against http://user:pw@host/status is requested with the real
        password (argv is starred only after parsing), and a node name from
        that status is workflow data: its "%0A" stays text, not a new line."""
        node = "n1%0A::error::x"
        body = json.dumps({"node": node, "labels": {}, "resources": []}).encode()

        class StatusBehindBasicAuth(http.server.BaseHTTPRequestHandler):
            auths = []

            def do_GET(self):
                StatusBehindBasicAuth.auths.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"ci:pw-S3CRET").decode():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="status"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusBehindBasicAuth)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://ci:pw-S3CRET@127.0.0.1:{server.server_address[1]}/status"
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--against", url, "--state-dir", self.state,
                  "--output", "github")
        self.assertIn("Basic " + base64.b64encode(b"ci:pw-S3CRET").decode(), StatusBehindBasicAuth.auths)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "::notice title=gitward plan::n1%250A::error::x: 1 to create, 0 to update, "
                         "0 to delete, 0 to restart, 0 unchanged.\n")
        self.assertNotIn("S3CRET", res.err)


class StateFile(TempDirTest):
    """status over state files of another shape: refused whole with the
    file named, or a bad entry left out, never a crash or a guess."""

    def status(self, doc):
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        with open(os.path.join(self.state, "state.json"), "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return run("status", "--state-dir", self.state)

    def test_state_files_of_another_shape(self):
        path = os.path.join(self.state, "state.json")
        for doc in ({"version": 2, "resources": []}, {"version": 1, "resources": {}}, []):
            res = self.status(doc)
            self.assertEqual((res.rc, res.out), (1, ""), res)
            self.assertEqual(res.err, f"gitward: error: {path}: state file is corrupt: not a gitward state v1\n")
        one = {"kind": "Process", "name": "a", "state": "running", "health": "healthy", "spec_hash": "a" * 64}
        res = self.status({"version": 1, "resources": [dict(one, kind="Pod")]})
        self.assertEqual((res.rc, res.err), (1, f"gitward: error: {path}: state file is corrupt: resource 0\n"))
        # a name that could be a path is left out, said once
        res = self.status({"version": 1, "resources": [dict(one, name="../x"), dict(one, name="b")]})
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.err, f"warn {path}: resource 0 has an invalid name (a name of lowercase letters, digits "
                                  "and '-', starting and ending alphanumeric, at most 63 characters): ignored\n")
        self.assertRegex(res.out, r"\n  Process/b +running +healthy +restarts 0 +pid 0\n$")
        self.assertNotIn("../x", res.out)
        # states and healths of another version read as the least they can mean
        res = self.status({"version": 1, "resources": [dict(one, state="dancing"), dict(one, name="b", health="so-so")]})
        self.assertEqual(res.rc, 0, res)
        self.assertRegex(res.out, r"\n  Process/a +pending +healthy +restarts 0 +pid 0\n  Process/b +running +unknown +restarts 0 "
                                  r"+pid 0\n$")


if __name__ == "__main__":
    unittest.main()
