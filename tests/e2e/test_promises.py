"""Promises of the docs (contrib/docs/) that no other module tests: stopSignal reaches the
workload, a numeric uid runs it (known to the user database or not), tcp and
http health checks of a Process (healthy, and refused), the agent with
--listen off listens nowhere, and an agent whose --listen address is taken
exits 1 naming it."""
import http.server
import os
import socket
import subprocess
import threading
import unittest

from gwtest import CI, GITWARD, TempDirTest, pid_alive, proc_yaml, records, run, stop, wait_for

# stops on INT or TERM, saying which it got
TRAP = ("trap 'echo INT > {out}; exit 0' INT; trap 'echo TERM > {out}; exit 0' TERM; "
        "while :; do sleep 0.1; done")


class Quiet(http.server.BaseHTTPRequestHandler):
    """200 to every GET, remembering the paths asked, logging nothing."""
    paths = []

    def do_GET(self):
        Quiet.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def read(path):
    with open(path) as f:
        return f.read()


def proc_ids(pid):
    """Real uid, gid and supplementary groups of pid from /proc."""
    ids = {}
    for line in read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("Uid", "Gid"):
            ids[k] = int(v.split()[0])
        elif k == "Groups":
            ids[k] = sorted(int(g) for g in v.split())
    return ids


class Workloads(TempDirTest):
    def reconcile(self, r, *args, expect=0):
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, *args)
        self.assertEqual(res.rc, expect, res)
        return res

    def test_stop_signal_is_the_one_the_workload_gets(self):
        r = self.repo()
        outs = {n: os.path.join(self.tmp, f"{n}.out") for n in ("int", "term")}
        r.write("int.yaml", proc_yaml("int", command=("/bin/sh", "-c", TRAP.format(out=outs["int"])),
                                      extra="  stopSignal: INT\n"))
        r.write("term.yaml", proc_yaml("term", command=("/bin/sh", "-c", TRAP.format(out=outs["term"]))))
        r.write("keep.yaml", proc_yaml("keep"))
        r.commit()
        self.reconcile(r)
        pids = {n: rec["pid"] for n, rec in records(self.state).items()}
        r.remove("int.yaml")
        r.remove("term.yaml")
        r.commit()
        self.reconcile(r)
        for n in ("int", "term"):
            wait_for(lambda: not pid_alive(pids[n]), what=f"{n} to stop")
        self.assertEqual(read(outs["int"]), "INT\n")
        self.assertEqual(read(outs["term"]), "TERM\n")  # the default
        self.assertEqual(sorted(records(self.state)), ["keep"])

    def test_numeric_uid_known_and_unknown(self):
        if os.geteuid() != 0:
            if CI:
                self.fail("running a workload as another uid needs root")
            raise unittest.SkipTest("running a workload as another uid needs root")
        r = self.repo()
        # 65534 is nobody in the user database; 54321 is no one: uid = gid = 54321
        r.write("known.yaml", proc_yaml("known", extra="  user: \"65534\"\n"))
        r.write("unknown.yaml", proc_yaml("unknown", extra="  user: \"54321\"\n"))
        r.commit()
        self.reconcile(r)
        recs = records(self.state)
        known, unknown = proc_ids(recs["known"]["pid"]), proc_ids(recs["unknown"]["pid"])
        self.assertEqual(known["Uid"], 65534)
        self.assertEqual(known["Gid"], 65534)  # nobody's primary group (nogroup)
        self.assertEqual(unknown, {"Uid": 54321, "Gid": 54321, "Groups": [54321]})
        st = {x["name"]: x for x in run("status", "--output", "json", "--state-dir", self.state).json()["resources"]}
        self.assertEqual(st["unknown"]["state"], "running")

    def health_of(self, name):
        st = run("status", "--output", "json", "--state-dir", self.state).json()
        return {x["name"]: x for x in st["resources"]}[name]

    def test_tcp_and_http_health_checks_of_a_process(self):
        # the servers the checks probe are this test's, on ports they bound themselves
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        tcp_port = listening.getsockname()[1]
        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        self.addCleanup(web.server_close)
        self.addCleanup(web.shutdown)
        http_port = web.server_address[1]
        r = self.repo()
        # the reconcile's last look probes once more, and one failure is no
        # longer "healthy": a timeout a loaded machine (this test's Python
        # server among it) cannot trip, not the default 2 s
        r.write("bytcp.yaml", proc_yaml("bytcp", extra=f"  healthCheck:\n    tcp: {{address: \"127.0.0.1:{tcp_port}\"}}\n"
                                                       "    interval: 10s\n    timeout: 10s\n    retries: 20\n"))
        r.write("byhttp.yaml", proc_yaml("byhttp", extra="  dependsOn: [bytcp]\n  healthCheck:\n"
                                                         f"    http: {{url: \"http://127.0.0.1:{http_port}/ok\"}}\n"
                                                         "    interval: 10s\n    timeout: 10s\n    retries: 20\n"))
        r.commit()
        self.reconcile(r)
        self.assertEqual(self.health_of("bytcp")["health"], "healthy")
        self.assertEqual(self.health_of("byhttp")["health"], "healthy")
        self.assertIn("/ok", Quiet.paths)

    def test_a_refused_tcp_check_is_unhealthy(self):
        # a bound socket that does not listen: connections to it are refused
        closed = socket.socket()
        self.addCleanup(closed.close)
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra=f"  healthCheck:\n    tcp: {{address: \"127.0.0.1:{port}\"}}\n"
                                               "    interval: 1s\n    timeout: 1s\n    retries: 2\n"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn(f"started but unhealthy: tcp 127.0.0.1:{port}: Connection refused", res.err)
        self.assertEqual(self.health_of("a")["health"], "unhealthy")


def listening_inodes():
    """Inodes of the TCP sockets in LISTEN state on this host (IPv4 and IPv6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = read(table).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A":
                out.add(f[9])
    return out


def socket_inodes(pid):
    out = set()
    d = f"/proc/{pid}/fd"
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


class Listen(TempDirTest):
    def test_listen_off_listens_nowhere(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        log_path = os.path.join(self.tmp, "agent.log")
        with open(log_path, "w") as log:
            a = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--interval", "1h",
                                  "--listen", "off"], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop, a)
        wait_for(lambda: "a" in records(self.state) and "converged" in read(log_path), what="the first pass")
        self.assertIsNone(a.poll(), read(log_path))
        self.assertEqual(socket_inodes(a.pid) & listening_inodes(), set(), "an agent with --listen off listens")
        self.assertNotIn("endpoints on", read(log_path))
        stop(a)
        self.assertEqual(a.returncode, 0, read(log_path))

    def test_a_used_listen_address_exits_1_naming_it(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        res = run("agent", "--repo", r.path, "--state-dir", self.state, "--interval", "1h", "--listen", addr,
                  timeout=60)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"--listen {addr}: the port is in use (another gitward agent?); choose another ADDR:PORT "
                      "or \"off\"", res.err)
        self.assertEqual(records(self.state), {}, "an agent that cannot listen applied something")


if __name__ == "__main__":
    unittest.main()
