#!/usr/bin/env python3
"""A fleet of gitward agents on one machine, one Git server, one Prometheus.

N agents (200 by default, 1,000 with --full, 30 with --quick for CI), each
with its own state dir, node name, label ring=canary|a|b and --listen
address, poll one smart-HTTP Git server on loopback (nginx + fcgiwrap +
git http-backend, tests/e2e/gitservers.py) with --splay. Each ring follows
its own branch (canary, ring-a, ring-b); every node runs a real Process
(/bin/sleep). A real Prometheus scrapes every agent through a file_sd list
and evaluates a copy of contrib/prometheus/gitward.rules.yml whose `for:`
and windows are shortened to the run's interval.

Phases, each printed with its figures, each with bounded waits:
  1. start: every node converged on the first commit; Prometheus sees N up
  2. idle: Git server CPU and requests per unchanged poll round, agent CPU
     per idle pass, private memory per agent (smaps_rollup)
  3. a change touching every node, then one touching ring a only
     (nodeSelector): commit -> node converged latency p50/p99/max
  4. staged rollout canary -> ring a -> ring b by fast-forward pushes, gated
     on the ring before converging (and Prometheus agreeing): its timeline
  5. Git server down (60s; --quick: 15s; longer until the GitwardGitStale
     alert fired): workloads keep running, the alert fires; back up: request
     rate per second
  6. ring b broken on purpose (a Process that exits at once): the
     GitwardCrashLoop and GitwardNotConverged alerts fire for ring b only
  7. one agent stopped: GitwardAgentDown fires for that node

Convergence is read from each node's state.json: the agent rewrites it
atomically at the end of every pass, so its mtime is the time of the pass
that recorded the commit (nanosecond clock, no polling error).

Exit 0 when every check held, 1 otherwise; figures go to stdout (and, with
--json FILE, to a file). Everything runs in one temp dir and is removed,
workloads included (--keep leaves the dir).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from gitservers import HTTP_BACKEND, GitServers, _which, free_port, require_tools  # noqa: E402
from gwtest import GITWARD, kill_workloads, pid_alive, records  # noqa: E402

RULES = os.path.join(HERE, "..", "..", "contrib", "prometheus", "gitward.rules.yml")
DASHBOARD = os.path.join(HERE, "..", "..", "contrib", "grafana", "gitward-fleet.json")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
TICK = os.sysconf("SC_CLK_TCK")
RINGS = ("canary", "a", "b")
BRANCH = {"canary": "canary", "a": "ring-a", "b": "ring-b"}
HDR = "apiVersion: gitward/v1\n"

PROFILES = {
    # agents, interval, splay, scrape, outage (seconds). quick scrapes every
    # 2 s: a scrape is bounded by its interval, and a loaded machine can miss
    # 1 s twice in a row (for: is 2 scrapes), firing GitwardAgentDown for a
    # node that runs
    "quick": dict(agents=30, interval=3, splay=2, scrape=2, outage=15),
    "default": dict(agents=200, interval=15, splay=5, scrape=5, outage=60),
    "full": dict(agents=1000, interval=30, splay=10, scrape=10, outage=90),
}


class Failed(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def dur(s):
    return f"{int(s * 1000)}ms" if s < 10 else f"{int(s)}s"


# ---- /proc accounting ----------------------------------------------------

def proc_table():
    """pid -> (ppid, own cpu ticks, reaped children's cpu ticks)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))
    return out


def tree_cpu(roots, table=None):
    """CPU seconds of the process trees under roots: every live process's own
    time plus what it reaped (an exited child counts once, in its parent)."""
    table = table or proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, [r for r in roots if r in table], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += table[pid][1] + table[pid][2]
        todo.extend(kids.get(pid, ()))
    return total / TICK


def private_kb(pid):
    """Private_Clean + Private_Dirty and Pss of a process, in KiB."""
    priv = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, v = line.split(":", 1)
                if k in ("Private_Clean", "Private_Dirty"):
                    priv += int(v.split()[0])
                elif k == "Pss":
                    pss = int(v.split()[0])
    except OSError:
        return None
    return priv, pss


# ---- the Git server --------------------------------------------------------

class FleetGit(GitServers):
    """GitServers' nginx + fcgiwrap + git http-backend alone (no sshd), sized
    for a fleet (fcgiwrap workers, nginx connections), that can go down and
    come back on the same port."""

    def __init__(self, tmp, workers=2):
        super().__init__(tmp)
        self.workers = workers

    def start(self):
        require_tools()
        os.makedirs(self.srv, exist_ok=True)
        self._make_tls()  # the shared nginx config also listens with TLS
        self.http_port, self.https_port = free_port(), free_port()
        self.up()
        self.bare("gitward-probe")
        cp = subprocess.run(["git", "ls-remote", self.http_url("gitward-probe")], capture_output=True, text=True,
                            timeout=30, env=self.git_env())
        if cp.returncode != 0:
            raise Failed(f"git ls-remote on the fleet's server: {cp.stderr.strip()}\n{self.log('nginx')}")
        return self

    def git_env(self, known_hosts=None):
        env = dict(os.environ)
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
        return env

    def up(self):
        os.makedirs(os.path.join(self.tmp, "nginx"), exist_ok=True)
        sock = os.path.join(self.tmp, "fcgi.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        self._spawn("fcgiwrap", [_which("fcgiwrap"), "-c", str(self.workers), "-s", "unix:" + sock])
        self._wait("fcgiwrap", lambda: os.path.exists(sock))
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self._nginx_conf().replace("worker_connections 128;", "worker_connections 4096;"))
        self._spawn("nginx", [_which("nginx"), "-p", self.tmp + "/", "-e", self.tmp + "/nginx-error.log", "-c", conf,
                              "-g", "daemon off;"])

        def ready():
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                    return True
            except OSError:
                return False
        self._wait("nginx", ready)

    def down(self):
        for name in ("nginx", "fcgiwrap"):
            p = self.procs.pop(name)
            if name == "fcgiwrap":
                # `fcgiwrap -c N` leaves its prefork workers running when
                # the master ends: signal the whole group (its own session)
                os.killpg(p.pid, signal.SIGTERM)
            else:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
            self.logs.pop(name).close()

    def stop(self):
        if "nginx" in self.procs:
            self.down()
        super().stop()

    def cpu(self, table=None):
        return tree_cpu([p.pid for p in self.procs.values()], table)

    def requests_since(self, offset):
        """(new access log lines, new offset)."""
        try:
            with open(self.access_log) as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return [], offset
        end = data.rfind("\n") + 1
        return data[:end].splitlines(), offset + len(data[:end].encode())


# ---- Prometheus ------------------------------------------------------------

class Prometheus:
    def __init__(self, tmp, scrape, rules_text):
        self.dir = os.path.join(tmp, "prometheus")
        os.makedirs(self.dir)
        self.targets = os.path.join(self.dir, "targets.json")
        rules = os.path.join(self.dir, "rules.yml")
        with open(rules, "w") as f:
            f.write(rules_text)
        ev = max(1, scrape // 2)
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write(f"global:\n  scrape_interval: {scrape}s\n  scrape_timeout: {scrape}s\n"
                    f"  evaluation_interval: {ev}s\n"
                    f"rule_files: [{rules}]\n"
                    "scrape_configs:\n  - job_name: gitward\n"
                    f"    file_sd_configs:\n      - files: [{self.targets}]\n        refresh_interval: 5s\n")
        self.conf = conf
        self.proc = None

    def write_targets(self, agents):
        doc = [{"targets": [a.listen], "labels": {"node": a.node, "ring": a.ring}} for a in agents]
        tmp = self.targets + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, self.targets)

    def start(self):
        if not os.access(PROMETHEUS, os.X_OK):
            raise Failed("prometheus is not installed (Debian package prometheus)")
        for _ in range(5):
            self.port = free_port()
            self.logf = open(os.path.join(self.dir, "prometheus.log"), "w")
            self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={self.conf}",
                                          f"--storage.tsdb.path={self.dir}/data",
                                          f"--web.listen-address=127.0.0.1:{self.port}"],
                                         stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.get("/-/ready") is not None:
                    return
                time.sleep(0.2)
            self.stop()
        raise Failed("prometheus did not start:\n" + open(os.path.join(self.dir, "prometheus.log")).read()[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc:
            self.logf.close()
        self.proc = None

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            return body if r.status == 200 else None
        except OSError:
            return None
        finally:
            c.close()

    def query(self, q):
        body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        if body is None:
            return None
        doc = json.loads(body)
        return doc["data"]["result"] if doc.get("status") == "success" else None

    def scalar(self, q):
        r = self.query(q)
        return float(r[0]["value"][1]) if r else None

    def alerts(self, name=None, state="firing"):
        body = self.get("/api/v1/alerts")
        if body is None:
            return []
        return [a for a in json.loads(body)["data"]["alerts"]
                if (name is None or a["labels"]["alertname"] == name) and a["state"] == state]


def test_rules(interval, splay, scrape):
    """contrib/prometheus/gitward.rules.yml with `for:`, windows and the
    staleness threshold scaled to this run (every substitution must apply:
    a rule file that changed shape fails here, not silently)."""
    with open(RULES) as f:
        text = f.read()
    stale = interval + splay + scrape + 5
    # long enough that nodes whose crash loops started one poll cycle apart
    # all hold 2 restarts in it at once (the restart backoff doubles)
    window = max(60, 4 * scrape, 3 * (interval + splay))
    subs = [("for: 15m", f"for: {2 * scrape}s"), ("for: 5m", f"for: {2 * scrape}s"),
            ("[15m]", f"[{window}s]"), ("[5m]", f"[{window}s]"),
            ("gitward_git_last_fetch_success_timestamp_seconds > 900",
             f"gitward_git_last_fetch_success_timestamp_seconds > {stale}")]
    for old, new in subs:
        if old not in text:
            raise Failed(f"{RULES}: expected {old!r} to shorten for the test copy")
        text = text.replace(old, new)
    return text, stale


# ---- the agents ------------------------------------------------------------

class Agent:
    def __init__(self, root, i, n, addr, port):
        self.node = f"node-{i:04d}"
        ncanary = max(1, n // 20)
        self.ring = "canary" if i < ncanary else ("a" if (i - ncanary) % 2 == 0 else "b")
        self.dir = os.path.join(root, self.node)
        self.state = os.path.join(self.dir, "state")
        self.listen = f"{addr}:{port}"
        self.proc = None
        self.mtime = 0
        self.passes = 0
        self.doc = {}
        # commit -> (mtime of the first pass that recorded it, converged, passes seen then)
        self.seen = {}

    def start(self, url, interval, splay):
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "agent.log"), "ab") as logf:
            self.proc = subprocess.Popen(
                [GITWARD, "agent", "--repo", url, "--ref", BRANCH[self.ring], "--state-dir", self.state,
                 "--node", self.node, "--label", f"ring={self.ring}", "--interval", f"{interval}s",
                 "--splay", f"{splay}s", "--listen", self.listen],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
        if self.proc:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def scan(self):
        """Read state.json if a pass rewrote it since the last look."""
        p = os.path.join(self.state, "state.json")
        try:
            m = os.stat(p).st_mtime_ns
        except OSError:
            return
        if m == self.mtime:
            return
        try:
            with open(p) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return  # replaced while read: the next look sees it
        self.mtime = m
        self.passes += 1
        self.doc = doc
        c = doc.get("commit")
        ok = doc.get("last_attempt_result") == "success"
        if c and (c not in self.seen or (ok and not self.seen[c][1])):
            self.seen[c] = (m / 1e9, ok, self.passes)

    def log_tail(self, n=5):
        try:
            with open(os.path.join(self.dir, "agent.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def listen_addresses(n):
    """n loopback addresses 127.77.x.y sharing one port (no port race with
    anything else on 127.0.0.1), each checked bindable."""
    port = free_port("127.77.0.1")
    out, i = [], 0
    while len(out) < n:
        addr = f"127.77.{i // 250}.{i % 250 + 1}"
        i += 1
        s = socket.socket()
        try:
            s.bind((addr, port))
            out.append((addr, port))
        except OSError:
            pass
        finally:
            s.close()
    return out


class Fleet:
    def __init__(self, args):
        self.a = args
        self.tmp = tempfile.mkdtemp(prefix="gw-fleet-")
        self.git = FleetGit(os.path.join(self.tmp, "git"), workers=args.fcgi_workers)
        self.agents = []
        self.prom = None
        self.figures = {"agents": args.agents, "interval_s": args.interval, "splay_s": args.splay}
        self.failures = []
        self.work = os.path.join(self.tmp, "work")
        self.log_offset = 0

    # -- helpers --

    def check(self, cond, msg):
        if cond:
            log(f"  ok: {msg}")
        else:
            log(f"  FAIL: {msg}")
            self.failures.append(msg)
        return cond

    def git_work(self, *args):
        cp = subprocess.run(["git", "-C", self.work, *args], capture_output=True, text=True, timeout=120)
        if cp.returncode != 0:
            raise Failed(f"git {' '.join(args)}: {cp.stderr.strip()}")
        return cp.stdout.strip()

    def commit(self, files, msg, remove=()):
        for rel, text in files.items():
            with open(os.path.join(self.work, rel), "w") as f:
                f.write(text)
        for rel in remove:
            self.git_work("rm", "-q", rel)
        self.git_work("add", "-A")
        self.git_work("commit", "-q", "-m", msg)
        return self.git_work("rev-parse", "HEAD")

    def push(self, commit, rings):
        """Fast-forward the rings' branches to commit (a plain push: a
        non-fast-forward is refused); the wall-clock time it landed."""
        self.git_work("push", "-q", "origin", *[f"{commit}:refs/heads/{BRANCH[r]}" for r in rings])
        return time.time()

    def passes_now(self):
        """Each node's passes seen so far, read right after a push: the pass
        that records the pushed commit is at most the second one after this
        (the one in flight may have fetched before the push)."""
        self.scan()
        return {x.node: x.passes for x in self.agents}

    def scan(self):
        for a in self.agents:
            a.scan()

    def wait(self, pred, timeout, what, step=0.25):
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            v = pred()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise Failed(f"timed out after {int(timeout)}s waiting for {what}")
            time.sleep(step)

    def cycle(self):
        return self.a.interval + self.a.splay

    def converge_latency(self, commit, t0, p0, agents, what):
        """Wait until every agent of agents recorded commit converged; print
        and return the commit -> converged latencies. p0: passes_now() just
        after the push."""
        def done():
            return all(commit in a.seen and a.seen[commit][1] for a in agents)
        try:
            self.wait(done, 3 * self.cycle() + 120, f"{what}: {len(agents)} nodes to converge")
        except Failed as e:
            late = [a for a in agents if not (commit in a.seen and a.seen[commit][1])]
            self.check(False, f"{e} ({len(late)} did not; e.g. {late[0].node}: {late[0].log_tail(3)!r})")
            return None
        lat = [a.seen[commit][0] - t0 for a in agents]
        fig = {"nodes": len(lat), "p50_s": round(pct(lat, 50), 3), "p99_s": round(pct(lat, 99), 3),
               "max_s": round(max(lat), 3)}
        log(f"  {what}: {len(lat)} nodes converged, commit -> converged p50 {fig['p50_s']:.2f}s, "
            f"p99 {fig['p99_s']:.2f}s, max {fig['max_s']:.2f}s (interval {self.a.interval}s + splay "
            f"{self.a.splay}s)")
        # the promise is the next poll, counted in passes: wall time would also
        # count how long a loaded machine takes over each pass
        after = [a.seen[commit][2] - p0[a.node] for a in agents]
        fig["passes_max"] = max(after)
        self.check(max(after) <= 2, f"{what}: every node converged by its first pass that began after the push "
                   f"(at most {max(after)} passes, counting the one in flight)")
        return fig

    # -- phases --

    def start(self):
        a = self.a
        log(f"== start: {a.agents} agents (interval {a.interval}s, splay {a.splay}s), Git over smart HTTP, "
            f"temp dir {self.tmp}")
        self.git.start()
        self.git.bare("fleet")
        subprocess.run(["git", "init", "-q", "-b", "main", self.work], check=True, timeout=60)
        for k, v in (("user.email", "fleet@example.com"), ("user.name", "fleet"), ("commit.gpgsign", "false")):
            self.git_work("config", k, v)
        self.git_work("remote", "add", "origin", self.git.repo_path("fleet"))
        c0 = self.commit({"sleeper.yaml": self.sleeper("1")}, "every node runs a sleeper")
        self.push(c0, RINGS)
        url = self.git.http_url("fleet")
        addrs = listen_addresses(a.agents)
        root = os.path.join(self.tmp, "agents")
        self.agents = [Agent(root, i, a.agents, *addrs[i]) for i in range(a.agents)]
        t0 = time.monotonic()
        for i, ag in enumerate(self.agents):
            ag.start(url, a.interval, a.splay)
            # a gentle ramp: each first pass is a clone
            time.sleep(1.0 / a.ramp)
            if i % 50 == 0:
                self.scan()
        ramp = time.monotonic() - t0
        try:
            self.wait(lambda: all(c0 in x.seen and x.seen[c0][1] for x in self.agents), 2 * self.cycle() + 120,
                      "every node to converge on the first commit")
        except Failed:
            dead = [x for x in self.agents if x.proc.poll() is not None]
            late = [x for x in self.agents if c0 not in x.seen]
            raise Failed(f"{len(late)} nodes never converged, {len(dead)} agents exited; e.g. "
                         f"{(dead or late)[0].node}: {(dead or late)[0].log_tail()}")
        took = time.monotonic() - t0
        log(f"  started {a.agents} agents in {ramp:.1f}s (ramp {a.ramp}/s); all converged after {took:.1f}s")
        self.figures["start_all_converged_s"] = round(took, 1)
        rings = {r: sum(1 for x in self.agents if x.ring == r) for r in RINGS}
        log(f"  rings: " + ", ".join(f"{r}={n}" for r, n in rings.items()))
        self.figures["rings"] = rings

        if not a.no_prometheus:
            rules, self.stale = test_rules(a.interval, a.splay, a.scrape)
            self.prom = Prometheus(self.tmp, a.scrape, rules)
            self.prom.write_targets(self.agents)
            self.prom.start()
            t = time.monotonic()
            try:
                n = self.wait(lambda: (self.prom.scalar('count(up{job="gitward"} == 1)') or 0) == a.agents and
                              self.prom.scalar('count(up{job="gitward"} == 1)'), 3 * a.scrape + 120,
                              f"Prometheus to see {a.agents} agents up", step=1)
                self.check(n == a.agents, f"Prometheus sees all {a.agents} agents up "
                           f"(count(up{{job=\"gitward\"}} == 1) = {int(n)}, after {time.monotonic() - t:.1f}s)")
            except Failed as e:
                last = self.prom.scalar('count(up{job="gitward"} == 1)')
                self.check(False, f"{e} (last count {last})")

    def sleeper(self, version, crash=False):
        return (f"{HDR}kind: Process\nmetadata: {{name: sleeper}}\nspec:\n  command: [/bin/sleep, \"100000\"]\n"
                f"  env: {{VERSION: \"{version}\"}}\n")

    def idle(self):
        a = self.a
        window = max(2 * self.cycle(), 10)
        log(f"== idle: {window}s of unchanged poll rounds")
        self.scan()
        _, self.log_offset = self.git.requests_since(0)
        table = proc_table()
        srv0 = self.git.cpu(table)
        pids = [x.proc.pid for x in self.agents]
        ag0 = sum(table[p][1] + table[p][2] for p in pids if p in table)
        each0 = {x.node: x.passes for x in self.agents}
        p0 = sum(each0.values())
        t0 = time.monotonic()
        # the window lasts until every agent has polled in it too: counted, so
        # a loaded machine's slower rounds only make it longer
        try:
            self.wait(lambda: time.monotonic() - t0 >= window and all(x.passes > each0[x.node] for x in self.agents),
                      window + 120, "the idle window with a poll of every agent", step=0.5)
        except Failed as e:
            self.check(False, str(e))
        table = proc_table()
        srv = self.git.cpu(table) - srv0
        ag = (sum(table[p][1] + table[p][2] for p in pids if p in table) - ag0) / TICK
        passes = sum(x.passes for x in self.agents) - p0
        lines, self.log_offset = self.git.requests_since(self.log_offset)
        el = time.monotonic() - t0
        gets = sum(1 for ln in lines if '"GET ' in ln)
        posts = sum(1 for ln in lines if '"POST ' in ln)
        mem = [private_kb(x.proc.pid) for x in self.agents]
        mem = [m for m in mem if m]
        shims, sleepers = [], []
        for x in self.agents:
            for rec in records(x.state).values():
                m = private_kb(rec.get("shim_pid") or 0)
                if m:
                    shims.append(m[0])
                m = private_kb(rec.get("pid") or 0)
                if m:
                    sleepers.append(m[0])
        fig = {
            "window_s": round(el, 1), "passes": passes, "requests": len(lines), "get": gets, "post": posts,
            "requests_per_pass": round(len(lines) / passes, 3) if passes else None,
            "requests_per_s": round(len(lines) / el, 2),
            "server_cpu_s": round(srv, 2), "server_cpu_ms_per_pass": round(1000 * srv / passes, 2) if passes else None,
            "server_cpu_share": round(srv / el, 3),
            "agent_cpu_s": round(ag, 2), "agent_cpu_ms_per_pass": round(1000 * ag / passes, 2) if passes else None,
            "agent_cpu_share_all": round(ag / el, 3),
            "agent_private_kib_p50": pct([m[0] for m in mem], 50), "agent_private_kib_max": max(m[0] for m in mem),
            "agent_pss_kib_p50": pct([m[1] for m in mem], 50),
            "shim_private_kib_p50": pct(shims, 50) if shims else None,
            "sleeper_private_kib_p50": pct(sleepers, 50) if sleepers else None,
        }
        self.figures["idle"] = fig
        log(f"  {passes} passes in {el:.1f}s ({passes / el:.1f}/s): {len(lines)} requests ({gets} GET, {posts} POST) "
            f"= {fig['requests_per_pass']} per pass, {fig['requests_per_s']}/s")
        log(f"  Git server CPU {srv:.2f}s = {fig['server_cpu_ms_per_pass']}ms per pass, "
            f"{100 * srv / el:.1f}% of one core")
        log(f"  agent CPU {ag:.2f}s for all agents = {fig['agent_cpu_ms_per_pass']}ms per idle pass "
            f"(1s heartbeats included), {100 * ag / el:.1f}% of one core")
        log(f"  private memory per agent p50 {fig['agent_private_kib_p50']} KiB, max "
            f"{fig['agent_private_kib_max']} KiB (Pss p50 {fig['agent_pss_kib_p50']} KiB); per workload: shim "
            f"{fig['shim_private_kib_p50']} KiB, /bin/sleep {fig['sleeper_private_kib_p50']} KiB")
        self.check(all(x.passes > each0[x.node] for x in self.agents),
                   f"every agent polled in the window ({passes} passes)")
        self.check(posts == 0, "an unchanged round fetches nothing: no POST to git-upload-pack")

    def changes(self):
        log("== a change touching every node")
        c1 = self.commit({"sleeper.yaml": self.sleeper("2")}, "sleeper v2 everywhere")
        t0 = self.push(c1, RINGS)
        self.figures["change_all"] = self.converge_latency(c1, t0, self.passes_now(), self.agents, "every node")
        log("== a change touching ring a only (nodeSelector ring=a)")
        ring_a = [x for x in self.agents if x.ring == "a"]
        c2 = self.commit({"ring-a.yaml": f"{HDR}kind: Process\nmetadata: {{name: ring-a-task}}\nspec:\n"
                          "  command: [/bin/sleep, \"100001\"]\n  nodeSelector: {ring: a}\n"}, "a task for ring a")
        t0 = self.push(c2, RINGS)
        self.figures["change_ring_a"] = self.converge_latency(c2, t0, self.passes_now(), ring_a, "ring a")
        others = [x for x in self.agents if x.ring != "a"]
        self.wait(lambda: all(c2 in x.seen for x in others), 3 * self.cycle() + 120, "the other rings to see it")
        started = sum(1 for x in others if "ring-a-task" in records(x.state))
        self.check(started == 0 and all("ring-a-task" in records(x.state) for x in ring_a),
                   f"ring-a-task runs on the {len(ring_a)} nodes of ring a and on none of the {len(others)} others")

    def rollout(self):
        log("== staged rollout: canary -> ring a -> ring b, each a fast-forward of the ring's branch")
        c3 = self.commit({"sleeper.yaml": self.sleeper("3")}, "sleeper v3, rolled out ring by ring")
        timeline, start = [], time.time()

        def mark(what):
            t = time.time() - start
            timeline.append((round(t, 2), what))
            log(f"  t={t:7.2f}s  {what}")
        for ring in RINGS:
            members = [x for x in self.agents if x.ring == ring]
            self.push(c3, [ring])
            mark(f"push {BRANCH[ring]} -> {c3[:12]} (fast-forward)")
            untouched = [x for x in self.agents if x.ring not in RINGS[:RINGS.index(ring) + 1]]
            self.wait(lambda: all(c3 in x.seen and x.seen[c3][1] for x in members), 3 * self.cycle() + 120,
                      f"ring {ring} to converge on the rollout commit")
            mark(f"ring {ring}: {len(members)}/{len(members)} nodes converged on {c3[:12]}")
            self.check(all(c3 not in x.seen for x in untouched),
                       f"rings after {ring} still run the previous commit")
            if self.prom:
                # the gate a real pipeline would use: Prometheus agrees the ring is healthy
                q = f'gitward:ring_nodes_converged:sum{{ring="{ring}"}}'
                try:
                    self.wait(lambda: self.prom.scalar(q) == len(members), 3 * self.a.scrape + 120,
                              f"{q} == {len(members)}", step=1)
                    firing = [al for al in self.prom.alerts() if al["labels"].get("ring") == ring]
                    names = sorted({al["labels"]["alertname"] for al in firing})
                    if self.check(not firing, f"gate: Prometheus has ring {ring} converged, no alert firing"
                                  + (f" ({len(firing)} firing: {', '.join(names)})" if firing else "")):
                        mark(f"gate passed: {q} = {len(members)}, no alert for ring {ring}")
                except Failed as e:
                    self.check(False, str(e))
        # a promotion that is not a fast-forward is refused by a plain push
        self.git_work("checkout", "-q", "-b", "hotfix", c3 + "~1")
        hot = self.commit({"hotfix.yaml": f"{HDR}kind: Process\nmetadata: {{name: hotfix}}\nspec:\n"
                           "  command: [/bin/sleep, \"100002\"]\n"}, "a commit beside the rollout")
        cp = subprocess.run(["git", "-C", self.work, "push", "origin", f"{hot}:refs/heads/ring-b"],
                            capture_output=True, text=True, timeout=60)
        self.git_work("checkout", "-q", "main")
        self.check(cp.returncode != 0 and "non-fast-forward" in cp.stderr,
                   "promoting a commit that is not a descendant is refused (non-fast-forward)")
        self.figures["rollout_timeline"] = timeline

    def outage(self):
        a = self.a
        log(f"== Git server down for {a.outage}s (or until GitwardGitStale fired), then back")
        self.scan()
        p0 = {x.node: x.passes for x in self.agents}
        self.git.down()
        t_down = time.time()
        fired = None
        # down for the outage, and on until GitwardGitStale fired (bounded): its
        # threshold, for: and evaluation nearly fill the outage, and a loaded
        # machine's Prometheus evaluates late
        while True:
            down = time.time() - t_down
            if down >= a.outage and (fired is not None or not self.prom or down >= a.outage + 120):
                break
            self.scan()
            if self.prom and fired is None and self.prom.alerts("GitwardGitStale"):
                fired = time.time() - t_down
            time.sleep(0.5)
        down = time.time() - t_down
        attempts = sum(x.passes - p0[x.node] for x in self.agents)
        errs = sum(1 for x in self.agents if x.doc.get("last_attempt_result") == "git_error")
        alive = sum(1 for x in self.agents for r in records(x.state).values() if pid_alive(r.get("pid") or 0))
        want = sum(len(records(x.state)) for x in self.agents)
        idle = self.figures["idle"]
        log(f"  while down: {attempts} fetch attempts by {len(self.agents)} agents in {down:.1f}s "
            f"({attempts / down:.1f}/s; up, it was {idle['passes'] / idle['window_s']:.1f}/s), "
            f"{errs} agents recorded a git error")
        self.check(alive == want, f"all {want} workloads kept running while Git was down")
        if self.prom:
            self.check(fired is not None, f"GitwardGitStale fired while Git was down (threshold {self.stale}s; "
                       f"after {fired:.1f}s)" if fired else f"GitwardGitStale fired (threshold {self.stale}s)")
        self.git.up()
        t_up = time.time()
        _, self.log_offset = self.git.requests_since(self.log_offset)
        per_s = []
        back = lambda: sum(1 for x in self.agents if x.doc.get("last_attempt_result") == "success" and
                           x.mtime / 1e9 > t_up)
        # the retry backoff grew over the time down (doubling, +20% jitter)
        limit = 2.4 * max(down, a.interval) + a.interval + 120
        while back() < len(self.agents) and time.time() - t_up < limit:
            t = time.time()
            self.scan()
            time.sleep(max(0, 1 - (time.time() - t)))
            lines, self.log_offset = self.git.requests_since(self.log_offset)
            per_s.append(len(lines))
        took = time.time() - t_up
        n_back = back()
        self.check(n_back == len(self.agents), f"{n_back}/{len(self.agents)} agents fetched again, "
                   f"the last {took:.1f}s after the server came back")
        steady = self.figures["idle"]["requests_per_s"]
        peak = max(per_s) if per_s else 0
        # the rate per second, ten seconds a line
        for i in range(0, len(per_s), 10):
            log(f"  +{i:3d}s requests/s: " + " ".join(f"{v:3d}" for v in per_s[i:i + 10]))
        log(f"  back up: peak {peak} requests/s, steady state {steady}/s; all agents back after {took:.1f}s")
        self.figures["outage"] = {"down_s": round(down, 1), "attempts_while_down": attempts,
                                  "stale_alert_after_s": round(fired, 1) if fired else None,
                                  "requests_per_s_after": per_s, "peak_requests_per_s": peak,
                                  "steady_requests_per_s": steady, "all_back_after_s": round(took, 1)}
        self.check(peak <= max(2 * len(self.agents) // 3, 3 * steady + 5),
                   f"no thundering herd: peak {peak}/s is not the whole fleet at once ({len(self.agents)})")

    def broken_ring(self):
        if not self.prom:
            return
        log("== ring b broken on purpose: a Process that exits at once")
        self.git_work("checkout", "-q", "main")
        cb = self.commit({"crasher.yaml": f"{HDR}kind: Process\nmetadata: {{name: crasher}}\nspec:\n"
                          "  command: [/bin/false]\n  restart: always\n  nodeSelector: {ring: b}\n"},
                         "a broken workload, ring b only")
        t0 = self.push(cb, ["b"])
        ring_b = [x for x in self.agents if x.ring == "b"]
        names = ("GitwardCrashLoop", "GitwardNotConverged")
        got, other = {}, {}

        def firing():
            for name in names:
                if name in got:
                    continue
                al = self.prom.alerts(name)
                other[name] = [x for x in al if x["labels"].get("ring") != "b"]
                if len({x["labels"].get("node") for x in al if x["labels"].get("ring") == "b"}) == len(ring_b):
                    got[name] = round(time.time() - t0, 1)
            return len(got) == len(names)
        try:
            self.wait(firing, 3 * self.cycle() + 180, "the alerts for every node of ring b", step=1)
        except Failed:
            pass
        for name in names:
            n = len({x["labels"].get("node") for x in self.prom.alerts(name) if x["labels"].get("ring") == "b"})
            self.check(name in got and not other.get(name),
                       f"{name} fires for all {len(ring_b)} nodes of ring b ({n} now), {got.get(name)}s after "
                       f"the push, and for no other ring ({len(other.get(name, []))})")
        self.figures["broken_ring_alerts_after_s"] = got
        self.dashboard()

    def dashboard(self):
        """Every query of contrib/grafana/gitward-fleet.json answers with data
        from this fleet (Grafana's variables set as "All ring" would)."""
        with open(DASHBOARD) as f:
            dash = json.load(f)
        window = f"{max(30, 4 * self.a.scrape)}s"
        empty = []
        n = 0
        for p in dash["panels"]:
            for t in p["targets"]:
                q = t["expr"].replace("$ring", ".*").replace("$__rate_interval", window)
                n += 1
                r = self.prom.query(q)
                if not r:
                    empty.append(f"{p['title']}: {q} -> {r}")
        self.check(not empty, f"the {n} queries of the Grafana dashboard answer with data"
                   + "".join(f"\n      {e}" for e in empty))

    def agent_down(self):
        if not self.prom:
            return
        log("== one agent stopped")
        victim = next(x for x in self.agents if x.ring == "a")
        victim.stop()
        t0 = time.time()
        try:
            al = self.wait(lambda: self.prom.alerts("GitwardAgentDown"), 6 * self.a.scrape + 120,
                           "GitwardAgentDown", step=1)
            nodes = sorted({x["labels"].get("node") for x in al})
            self.check(nodes == [victim.node], f"GitwardAgentDown fires for {victim.node} alone, "
                       f"{time.time() - t0:.1f}s after it stopped")
            self.figures["agent_down_alert_after_s"] = round(time.time() - t0, 1)
        except Failed as e:
            self.check(False, str(e))

    def teardown(self):
        for x in self.agents:
            if x.proc and x.proc.poll() is None:
                x.proc.terminate()
        for x in self.agents:
            x.stop()
        kill_workloads(os.path.join(self.tmp, "agents"))
        if self.prom:
            self.prom.stop()
        self.git.stop()  # stops what is still up; keeps the dir (ours)
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self):
        t = time.monotonic()
        try:
            self.start()
            self.idle()
            self.changes()
            self.rollout()
            self.outage()
            self.broken_ring()
            self.agent_down()
        except Failed as e:
            self.failures.append(str(e))
            log(f"  FAIL: {e}")
        finally:
            self.teardown()
        self.figures["wall_s"] = round(time.monotonic() - t, 1)
        self.figures["failures"] = self.failures
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump(self.figures, f, indent=1)
        log(f"== {'PASS' if not self.failures else 'FAIL'} in {self.figures['wall_s']}s"
            + "".join(f"\n  - {m}" for m in self.failures))
        return 0 if not self.failures else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="30 agents, short waits (CI: ctest fleet_quick)")
    g.add_argument("--full", action="store_true", help="1,000 agents")
    ap.add_argument("--agents", type=int)
    ap.add_argument("--interval", type=int, help="agent --interval, seconds")
    ap.add_argument("--splay", type=int, help="agent --splay, seconds")
    ap.add_argument("--scrape", type=int, help="Prometheus scrape interval, seconds")
    ap.add_argument("--outage", type=int, help="seconds the Git server is down")
    ap.add_argument("--ramp", type=float, default=25.0, help="agents started per second")
    ap.add_argument("--fcgi-workers", type=int, default=2, help="fcgiwrap worker processes")
    ap.add_argument("--no-prometheus", action="store_true")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    prof = PROFILES["quick" if args.quick else "full" if args.full else "default"]
    for k, v in prof.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not os.access(GITWARD, os.X_OK):
        print(f"fleet: {GITWARD} is not built (set GITWARD_BIN)", file=sys.stderr)
        return 1
    if not os.access(HTTP_BACKEND, os.X_OK):
        print("fleet: git http-backend is missing (Debian package git)", file=sys.stderr)
        return 1
    fleet = Fleet(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    return fleet.run()


if __name__ == "__main__":
    sys.exit(main())
