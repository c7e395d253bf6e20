#!/usr/bin/env python3
"""Benchmark, not a test: every row of the performance table in ONE run, each
beside its floor and its peer, as the markdown table of contrib/docs/benchmarks.md
(with WRITE_DOCS=1 it also writes the table there, between its markers).

Rows (gitward figure | floor | peer):
  dry-run, 10,000 manifests, cold (clone)   | git clone --bare file://; read + libyaml | -
  dry-run, 10,000 manifests, nothing changed| git fetch (unchanged)                    | -
  dry-run, 10,000 manifests, one file changed| git fetch (one new commit)              | -
  agent pass, 100 processes, nothing changed (CPU per pass) | -                      | supervisord idle CPU per second
  one-shot reconcile, 100 processes, no-op  | -                                        | supervisorctl update (no change)
  cold converge, 50 processes               | fork+exec of 50 sleeps (python)          | supervisorctl update adding 50
  teardown, 50 processes                    | SIGTERM + wait of 50 sleeps              | supervisorctl update removing 50
  agent pass, 100/500/2,000 processes (CPU per pass); agent and supervisors' private memory (smaps_rollup)
  cold converge, 20 containers              | raw Engine API create+start, parallel (and sequential) | podman kube play; podman-compose up -d

Each figure is the median of RUNS runs (default 5) with its spread (min-max);
the ratio is gitward's median over the floor's. gitward and floor runs
alternate (gitward, floor, gitward, floor...), so a change of the machine's
load falls on both. Each row with a goal (GOALS, as data) says `met` or
`NOT MET`, computed from the median; rows without one say `—`. The dry-run rows run gitward
with GW_PROFILE=1 and print the phase breakdown of their last run (fetch,
tree walk and blob reads, parse, validate + canonical form + hash, cache,
cross-file checks, plan, output, free).

usage: tests/bench/run_all.py [BUILD_DIR]   (default: build; needs root for the container row)
env:   RUNS=5            runs per figure
       SLOW_RUNS=3       runs of a peer that takes tens of seconds (supervisord adding and
                         removing 50, podman-compose up): the default run stays near 10 min
       BENCH_ROWS=a,b    only these rows: dryrun, process, scale, container
       SCALE=100,500,2000  Processes of the scale rows (idle pass CPU, agent and supervisor memory)
       IDLE_INTERVAL=100ms IDLE_WINDOW=10  the agent's --interval and the seconds of one CPU sample
                         (many passes per sample: the CPU per pass is resolved to 2 ticks / passes)
       MANIFESTS=10000   size of the dry-run repository
       WRITE_DOCS=1      replace the table between the markers of contrib/docs/benchmarks.md
                         (only for a run of every row: a partial table would drop rows)
"""
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from gwtest import fast_import, free_port  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))
yaml_floor = os.path.abspath(os.path.join(build, "tests/bench_yaml_floor"))
RUNS = int(os.environ.get("RUNS", "5"))
SLOW_RUNS = int(os.environ.get("SLOW_RUNS", "3"))
MANIFESTS = int(os.environ.get("MANIFESTS", "10000"))
ONLY = set(filter(None, os.environ.get("BENCH_ROWS", "").split(",")))

rows = []  # table cells: figure, gitward, floor, peer, ratio, goal, met
resolutions = []  # ms CPU per pass that one tick pair resolves, per idle measurement

# Goals as data: (op, value, unit) against gitward's median, or against its
# ratio to the floor (unit "× floor"). A row without a goal shows "—".
GOALS = {
    "dry-run cold": ("<", 0.4, "s"),
    "dry-run RSS": ("<", 64, "MiB"),
    "dry-run unchanged": ("<", 0.050, "s"),
    "dry-run one file": ("<", 0.060, "s"),
    "cold converge 50": ("<", 0.25, "s"),
    "teardown 50": ("<", 0.5, "s"),
    "one-shot no-op 100": ("<", 0.010, "s"),
    "idle pass CPU 100": ("<", 2, "ms CPU"),
    "cold converge 20 containers": ("≤", 1.1, "× floor"),
    "supervisor private per process": ("<", 256, "KiB"),
}


def git(repo, *args, **kw):
    return subprocess.run(["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@x", *args], check=True,
                          capture_output=True, text=True, **kw).stdout


def stat(values, unit="s"):
    return (statistics.median(values), min(values), max(values), unit, len(values))


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    med, lo, hi, unit, n = v
    if unit == "s" and hi < 0.1:
        return f"{med * 1000:.1f} ms ({lo * 1000:.1f}–{hi * 1000:.1f}, n={n})"
    if unit == "s":
        return f"{med:.3f} s ({lo:.3f}–{hi:.3f}, n={n})"
    if unit == "ms CPU":
        return f"{med:.2f} ms CPU ({lo:.2f}–{hi:.2f}, n={n})"
    return f"{med:.1f} {unit} ({lo:.1f}–{hi:.1f}, n={n})"


def named(name, v):
    return f"{name}: {fmt(v)}" if name and v is not None else fmt(v)


def ratio_of(gw, floor):
    if isinstance(gw, tuple) and isinstance(floor, tuple) and floor[0] > 0:
        return f"{gw[0] / floor[0]:.1f}×"
    return "—"


def goal_text(goal):
    if goal is None:
        return "—"
    op, value, unit = goal
    if unit == "s" and value < 0.1:
        return f"{op} {value * 1000:g} ms"
    return f"{op} {value:g} {unit}" if unit != "× floor" else f"{op} {value:g} × floor"


def met(gw, floor, goal):
    """"met" / "NOT MET" of gitward's median against goal; "—" without a goal
    or a figure to judge."""
    if goal is None or not isinstance(gw, tuple):
        return "—"
    op, value, unit = goal
    if unit == "× floor":
        if not isinstance(floor, tuple) or floor[0] <= 0:
            return "—"
        got = gw[0] / floor[0]
    else:
        if gw[3] != unit:
            raise SystemExit(f"goal in {unit}, figure in {gw[3]}")
        got = gw[0]
    ok = got < value if op == "<" else got <= value
    return "met" if ok else "NOT MET"


def row(figure, gw, floor=None, peer=None, goal=None, floor_name="", peer_name=""):
    """goal: a key of GOALS (or None)"""
    g = GOALS[goal] if goal else None
    verdict = met(gw, floor, g)
    rows.append((figure, fmt(gw), named(floor_name, floor), named(peer_name, peer), ratio_of(gw, floor),
                 goal_text(g), verdict))
    print(f"  {figure}: gitward {fmt(gw)} | floor {named(floor_name, floor)} | peer {named(peer_name, peer)} | "
          f"ratio {ratio_of(gw, floor)} | goal {goal_text(g)}: {verdict}", flush=True)


def timed(argv, ok=(0,), **kw):
    """(wall s, peak RSS MiB, stderr) of one child, forked so RUSAGE_CHILDREN is only its own."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.monotonic()
        cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
        dt = time.monotonic() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        err = cp.stderr.decode(errors="replace")[-20000:]
        os.write(w, json.dumps([cp.returncode, dt, rss, err]).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    rc, dt, rss, err = json.loads(b"".join(chunks))
    if rc not in ok:
        raise SystemExit(f"{' '.join(argv[:4])}: exit {rc}: {err[-2000:]}")
    return dt, rss / 1024.0, err


def profile_lines(err):
    return [l for l in err.splitlines() if l.startswith("gitward profile:")]


# ---- dry-run -------------------------------------------------------------

DOC = """apiVersion: gitward/v1
kind: Process
metadata:
  name: svc-{i}
  labels: {{tier: t{t}}}
spec:
  command: ["/usr/bin/python3", "-m", "http.server", "{port}"]
  env: {{MODE: prod, INDEX: "{i}", V: "{v}"}}
  workingDir: /srv/svc-{i}
  restart: always
  nodeSelector: {{node: web}}
  dependsOn: [{dep}]
  healthCheck:
    http: {{url: "http://127.0.0.1:{port}/healthz"}}
    interval: 10s
  stopTimeout: 5s
  limits: {{openFiles: 4096, memory: 256Mi}}
"""


def manifest(i, v=0):
    return DOC.format(i=i, t=i % 7, port=10000 + i, dep=f"svc-{i - 1}" if i % 10 else "", v=v)


def dryrun_rows(tmp):
    n = MANIFESTS
    repo = os.path.join(tmp, "repo")
    files = {f"services/g{i // 500:03d}/svc-{i}.yaml": manifest(i) for i in range(n)}
    fast_import(repo, files)
    git(repo, "config", "receive.denyCurrentBranch", "ignore")  # gitward reads refs, never the work tree
    work = os.path.join(tmp, "work")  # a work tree to commit one-file changes from
    subprocess.run(["git", "clone", "-q", repo, work], check=True)
    tree = os.path.join(tmp, "tree")  # the floor of parsing: the same bytes on disk
    subprocess.run(["git", "clone", "-q", repo, tree], check=True)
    dry = [gitward, "reconcile", "--dry-run", "--repo", repo, "--node", "web", "--output", "json"]
    label = f"{n:,}"

    # cold: a state dir without a Git cache; the clone is made aside each time
    walls, rss, prof, clone = [], [], None, []
    for k in range(RUNS):  # interleaved: gitward, floor, gitward, floor...
        dt, mem, err = timed([*dry, "--state-dir", os.path.join(tmp, f"cold{k}")], ok=(2,),
                             env=dict(os.environ, GW_PROFILE="1"))
        walls.append(dt)
        rss.append(mem)
        prof = profile_lines(err)
        t0 = time.monotonic()
        subprocess.run(["git", "clone", "-q", "--bare", f"file://{repo}", os.path.join(tmp, f"bare{k}")], check=True)
        clone.append(time.monotonic() - t0)
    parse = [timed([yaml_floor, os.path.join(tree, "services")])[0] for _ in range(RUNS)]
    row(f"dry-run, {label} manifests, cold (clone)", stat(walls), stat(clone), None, "dry-run cold",
        "`git clone --bare file://`")
    row(f"  peak RSS of that dry-run", stat(rss, "MiB"), None, None, "dry-run RSS")
    row(f"  read + libyaml parse of the same {label} files (floor of parsing)", stat(parse))
    print("  profile of the last cold run:\n    " + "\n    ".join(prof), flush=True)

    # warm: the state dir's Git and manifest caches, as the agent of a node the
    # manifests do not select leaves them (a dry-run only reads them)
    state = os.path.join(tmp, "state")
    timed([gitward, "reconcile", "--repo", repo, "--state-dir", state, "--node", "elsewhere"])
    bare = os.path.join(tmp, "bare0")
    def beside_fetch(before=lambda k: None):
        """RUNS dry-runs, each followed by the floor: a `git fetch` of the
        same change into a bare clone. (walls, fetches, last profile)"""
        walls, fetch, prof = [], [], []
        for k in range(RUNS):
            before(k)
            dt, _, err = timed([*dry, "--state-dir", state], ok=(2,), env=dict(os.environ, GW_PROFILE="1"))
            walls.append(dt)
            prof = profile_lines(err)
            t0 = time.monotonic()
            git(bare, "fetch", "-q", "origin", "+refs/heads/*:refs/heads/*")
            fetch.append(time.monotonic() - t0)
        return walls, fetch, prof

    walls, fetch, prof = beside_fetch()
    row(f"dry-run, {label} manifests, nothing changed", stat(walls), stat(fetch), None, "dry-run unchanged",
        "`git fetch`, unchanged")
    print("  profile of the last unchanged run:\n    " + "\n    ".join(prof), flush=True)

    def change_one_file(k):
        with open(os.path.join(work, "services/g000/svc-3.yaml"), "w") as f:
            f.write(manifest(3, v=k + 1))
        git(work, "commit", "-qam", f"v{k + 1}")
        git(work, "push", "-q", "origin", "main")

    walls, fetch, prof = beside_fetch(change_one_file)
    row(f"dry-run, {label} manifests, one file changed", stat(walls), stat(fetch), None, "dry-run one file",
        "`git fetch` of that commit")
    print("  profile of the last one-file run:\n    " + "\n    ".join(prof), flush=True)


# ---- processes -------------------------------------------------------------

def write_procs(repo, n, version=0):
    for f in os.listdir(repo):
        if f.endswith(".yaml"):
            os.remove(os.path.join(repo, f))
    for i in range(n):
        with open(os.path.join(repo, f"p{i:03d}.yaml"), "w") as f:
            f.write(f"apiVersion: gitward/v1\nkind: Process\nmetadata: {{name: p{i:03d}}}\n"
                    f"spec:\n  command: [/bin/sleep, \"3600\"]\n  env: {{V: \"{version}\"}}\n  stopTimeout: 2s\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"{n} v{version}")


def proc_cpu(pid):
    """utime + stime of pid and its waited-for children, in seconds"""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick


def private_kib(pid):
    """Private_Clean + Private_Dirty (+ Private_Hugetlb) of pid, KiB, from /proc/PID/smaps_rollup."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(l.split()[1]) for l in f if l.startswith("Private_"))


def shim_pids(state):
    d = os.path.join(state, "run", "process")
    out = []
    for f in os.listdir(d) if os.path.isdir(d) else ():
        if f.endswith(".json"):
            try:
                with open(os.path.join(d, f)) as fh:
                    pid = json.load(fh).get("shim_pid")
            except (OSError, ValueError):
                continue
            if pid:
                out.append(pid)
    return out


IDLE_INTERVAL = os.environ.get("IDLE_INTERVAL", "100ms")
IDLE_WINDOW = float(os.environ.get("IDLE_WINDOW", "10"))


def agent_idle(repo, state, sv=None):
    """An agent over repo (converged already) polling every IDLE_INTERVAL:
    its CPU per pass over RUNS windows of IDLE_WINDOW seconds each (agent
    and its waited-for fetch children, /proc/PID/stat ticks, divided by the
    passes its counter says were made: many passes per window, so one tick
    is a small part of a pass), supervisord's CPU per second in the same
    windows, and the private memory of the agent and of the supervisors."""
    port = free_port()
    agent = subprocess.Popen([gitward, "agent", "--repo", repo, "--state-dir", state, "--interval", IDLE_INTERVAL,
                              "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    tick = os.sysconf("SC_CLK_TCK")
    try:
        t0 = time.monotonic()
        while True:
            try:
                if metric(port, "gitward_pass_duration_seconds_count") >= 3:
                    break
            except OSError:
                pass
            if agent.poll() is not None or time.monotonic() - t0 > 600:
                raise SystemExit("agent made no pass")
            time.sleep(0.05)
        per, sd, passes = [], [], []
        for _ in range(RUNS):
            p0, c0 = metric(port, "gitward_pass_duration_seconds_count"), proc_cpu(agent.pid)
            s0 = proc_cpu(sv.proc.pid) if sv else 0
            t0 = time.monotonic()
            time.sleep(IDLE_WINDOW)
            p1, c1 = metric(port, "gitward_pass_duration_seconds_count"), proc_cpu(agent.pid)
            s1 = proc_cpu(sv.proc.pid) if sv else 0
            if p1 <= p0:
                raise SystemExit("agent passes stalled")
            per.append((c1 - c0) * 1000 / (p1 - p0))
            sd.append((s1 - s0) * 1000 / (time.monotonic() - t0))
            passes.append(p1 - p0)
        shims = [private_kib(p) for p in shim_pids(state) if os.path.exists(f"/proc/{p}")]
        resolutions.append(2000.0 / tick / min(passes))
        return {"per": per, "sd": sd, "passes": min(passes), "res": resolutions[-1],
                "agent_kib": private_kib(agent.pid), "shims_kib": shims}
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


class Supervisord:
    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(d, "s.conf")
        self.progs = os.path.join(d, "progs")
        os.makedirs(self.progs, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/sd.log\npidfile={d}/sd.pid\n"
                    f"[unix_http_server]\nfile={d}/sock\n[rpcinterface:supervisor]\n"
                    "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                    f"[supervisorctl]\nserverurl=unix://{d}/sock\n[include]\nfiles = {self.progs}/*.conf\n")
        self.proc = subprocess.Popen(["supervisord", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while self.ctl("pid").returncode != 0:
            if time.monotonic() - t0 > 30:
                raise SystemExit("supervisord did not start")
            time.sleep(0.05)

    def ctl(self, *args):
        return subprocess.run(["supervisorctl", "-c", self.conf, *args], capture_output=True, text=True, timeout=600)

    def programs(self, n):
        for f in os.listdir(self.progs):
            os.remove(os.path.join(self.progs, f))
        for i in range(n):
            with open(os.path.join(self.progs, f"w{i:03d}.conf"), "w") as f:
                f.write(f"[program:w{i:03d}]\ncommand=/bin/sleep 3600\nautorestart=true\nstartsecs=0\n"
                        f"stdout_logfile={self.d}/w{i:03d}.log\n")

    def running(self):
        out = self.ctl("status").stdout
        return sum(1 for l in out.splitlines() if " RUNNING " in l)

    def update(self, n, want_running):
        """Time of `supervisorctl update` after the config holds n programs,
        until want_running of them run."""
        self.programs(n)
        t0 = time.monotonic()
        self.ctl("update")
        while self.running() != want_running:
            if time.monotonic() - t0 > 600:
                raise SystemExit("supervisord did not settle")
            time.sleep(0.01)
        return time.monotonic() - t0

    def close(self):
        self.ctl("shutdown")
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def spawn_floor(n):
    """fork+exec n sleeps, then SIGTERM and reap them: the floor of both"""
    t0 = time.monotonic()
    ps = [subprocess.Popen(["/bin/sleep", "3600"], start_new_session=True) for _ in range(n)]
    up = time.monotonic() - t0
    t0 = time.monotonic()
    for p in ps:
        p.send_signal(signal.SIGTERM)
    for p in ps:
        p.wait()
    return up, time.monotonic() - t0


def process_rows(tmp):
    repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
    subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
    gw = [gitward, "reconcile", "--repo", repo, "--state-dir", state]
    sv = Supervisord(os.path.join(tmp, "sv"))
    try:
        up, down, f_up, f_down, s_up, s_down = [], [], [], [], [], []
        for k in range(RUNS):
            write_procs(repo, 50, version=k)
            up.append(timed(gw)[0])
            write_procs(repo, 0)
            down.append(timed([*gw, "--allow-empty"])[0])
            a, b = spawn_floor(50)
            f_up.append(a)
            f_down.append(b)
        for k in range(SLOW_RUNS):
            s_up.append(sv.update(50, 50))
            s_down.append(sv.update(0, 0))
        row("cold converge, 50 processes", stat(up), stat(f_up), stat(s_up), "cold converge 50", "fork+exec of 50",
            "supervisord `update` adding 50")
        row("teardown, 50 processes", stat(down), stat(f_down), stat(s_down), "teardown 50", "SIGTERM + reap of 50",
            "supervisord `update` removing 50")

        write_procs(repo, 100)
        timed(gw)
        walls = []
        for _ in range(RUNS):
            walls.append(timed(gw)[0])
        sv.update(100, 100)
        s_noop = []
        for _ in range(RUNS):
            t0 = time.monotonic()
            sv.ctl("update")
            s_noop.append(time.monotonic() - t0)
        row("one-shot `reconcile`, 100 processes, no-op", stat(walls), None, stat(s_noop), "one-shot no-op 100", "",
            "`supervisorctl update`, no change")

        # the agent: CPU per unchanged pass, many passes per window
        idle = agent_idle(repo, state, sv)
        row("agent pass, 100 processes, nothing changed (CPU per pass)", stat(idle["per"], "ms CPU"), None,
            stat(idle["sd"], "ms CPU"), "idle pass CPU 100", "", "supervisord idle, per second")
        print(f"    (resolution ±{idle['res']:.2f} ms CPU per pass: {idle['passes']:.0f} passes per window at"
              f" --interval {IDLE_INTERVAL}; agent + its fetch children from /proc/PID/stat, including its"
              " /metrics answers; peer: supervisord's CPU per second of wall time, 100 programs, idle)",
              flush=True)
        write_procs(repo, 0)
        timed([*gw, "--allow-empty"])
    finally:
        sv.close()


# ---- one node at scale ------------------------------------------------------

SCALE = [int(x) for x in os.environ.get("SCALE", "100,500,2000").split(",") if x]


def scale_rows(tmp):
    """Idle pass CPU and private memory of the agent and of the supervisors
    at 100, 500 and 2,000 Processes (issue 31 item 4). The agent raises its
    soft RLIMIT_NOFILE itself: no limit is set here."""
    repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
    subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
    gw = [gitward, "reconcile", "--repo", repo, "--state-dir", state]
    try:
        for n in SCALE:
            write_procs(repo, n)
            up = timed(gw)[0]
            idle = agent_idle(repo, state)
            shims = idle["shims_kib"]
            print(f"  {n} processes: converged in {up:.1f} s; {len(shims)} supervisors found; resolution"
                  f" ±{idle['res']:.2f} ms CPU per pass ({idle['passes']:.0f} passes per window)", flush=True)
            row(f"agent pass, {n:,} processes, nothing changed (CPU per pass)", stat(idle["per"], "ms CPU"),
                None, None, "idle pass CPU 100" if n == 100 else None)
            row(f"  agent private memory, {n:,} processes", stat([idle["agent_kib"] / 1024.0], "MiB"))
            if shims:
                row(f"  supervisors' private memory, {n:,} processes, total", stat([sum(shims) / 1024.0], "MiB"))
                row(f"  supervisor private memory per process, {n:,} processes (mean)",
                    stat([sum(shims) / len(shims)], "KiB"), None, None, "supervisor private per process")
    finally:
        write_procs(repo, 0)
        timed([*gw, "--allow-empty"])


# ---- containers --------------------------------------------------------------

from bench_container import api  # noqa: E402  (the raw Engine API calls, one place)


def raw_create_start(sock, image, n, parallel):
    def one(i, ids):
        st, data = api(sock, "POST", f"/containers/create?name=raw{i:02d}",
                       {"Image": image, "Cmd": ["/bin/sleep", "3600"], "HostConfig": {"NetworkMode": "none"}})
        assert st == 201, (st, data)
        cid = json.loads(data)["Id"]
        st, _ = api(sock, "POST", f"/containers/{cid}/start")
        assert st in (204, 304), st
        ids[i] = cid

    ids = [None] * n
    t0 = time.monotonic()
    if parallel:
        ts = [threading.Thread(target=one, args=(i, ids)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        for i in range(n):
            one(i, ids)
    dt = time.monotonic() - t0
    for cid in ids:
        api(sock, "DELETE", f"/containers/{cid}?force=true")
    return dt


def container_rows(tmp):
    import podman_env
    n = 20
    pm = podman_env.setup_module()
    try:
        repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)

        def write(count, v=0):
            for f in os.listdir(repo):
                if f.endswith(".yaml"):
                    os.remove(os.path.join(repo, f))
            for i in range(count):
                with open(os.path.join(repo, f"c{i:02d}.yaml"), "w") as f:
                    f.write(f"apiVersion: gitward/v1\nkind: Container\nmetadata: {{name: c{i:02d}}}\nspec:\n"
                            f"  image: {podman_env.IMAGE}\n  command: [/bin/sleep, \"3600\"]\n  network: none\n"
                            f"  env: {{V: \"{v}\"}}\n  stopTimeout: 1s\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", f"{count} v{v}")

        gw = [gitward, "reconcile", "--repo", repo, "--state-dir", state, "--container-socket", pm.socket]
        cold, par, seq = [], [], []
        for k in range(RUNS):  # interleaved: gitward, floor (parallel), floor (sequential), gitward...
            write(n, v=k)
            cold.append(timed(gw)[0])
            write(0)
            timed([*gw, "--allow-empty"])
            par.append(raw_create_start(pm.socket, podman_env.IMAGE, n, True))
            seq.append(raw_create_start(pm.socket, podman_env.IMAGE, n, False))

        kube = os.path.join(tmp, "kube.yaml")
        with open(kube, "w") as f:
            for i in range(n):
                f.write(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: k{i:02d}}}\nspec:\n  containers:\n"
                        f"  - name: main\n    image: {podman_env.IMAGE}\n    command: [/bin/sleep, \"3600\"]\n")
        kp = []
        for _ in range(RUNS):
            kp.append(timed([*pm.base, "kube", "play", "--network", "none", kube], env=pm.env)[0])
            timed([*pm.base, "kube", "down", kube], env=pm.env)
            timed([*pm.base, "pod", "rm", "-a", "-f"], env=pm.env)
        comp = os.path.join(tmp, "compose")
        os.makedirs(comp)
        with open(os.path.join(comp, "docker-compose.yml"), "w") as f:
            f.write("services:\n")
            for i in range(n):
                f.write(f"  s{i:02d}:\n    image: {podman_env.IMAGE}\n    command: [/bin/sleep, \"3600\"]\n"
                        f"    network_mode: none\n")
        pc = ["podman-compose", "--podman-args", " ".join(pm.base[1:])]
        cp = []
        for _ in range(SLOW_RUNS):  # about 50 s each on the 2-core machine
            cp.append(timed([*pc, "up", "-d"], cwd=comp, env=pm.env)[0])
            timed([*pc, "down", "-t", "0"], cwd=comp, env=pm.env)
        row("cold converge, 20 containers", stat(cold), stat(par), stat(kp), "cold converge 20 containers",
            "raw API create+start, 20 in parallel", "`podman kube play`")
        row("  same, beside the sequential raw API calls", stat(cold), stat(seq), stat(cp), None,
            "raw API, 20 one after another", "podman-compose `up -d`")
    finally:
        podman_env.teardown_module()


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            model = m.group(1) if m else model
    except OSError:
        pass
    return f"{platform.node()}: {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    print(f"machine: {machine()}; gitward {gitward}; RUNS={RUNS}", flush=True)
    sections = (("dryrun", dryrun_rows), ("process", process_rows), ("scale", scale_rows),
                ("container", container_rows))
    for name, fn in sections:
        if ONLY and name not in ONLY:
            continue
        tmp = tempfile.mkdtemp(prefix=f"gw-bench-{name}-")
        t0 = time.monotonic()
        try:
            print(f"[{name}]", flush=True)
            fn(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"[{name}] {time.monotonic() - t0:.0f} s", flush=True)
    table = "\n".join([f"Measured on {machine()}: median (min–max, n runs) of `tests/bench/run_all.py`.", "",
                       f"CPU per agent pass: /proc ticks of the agent and its fetch children over windows of"
                       f" {IDLE_WINDOW:g} s of passes every {IDLE_INTERVAL}: resolution"
                       f" ±{max(resolutions or [0]):.2f} ms CPU per pass or better (2 ticks over the passes of a"
                       " window)."
                       " `met` / `NOT MET`: gitward's median against the goal (or its ratio to the floor);"
                       " `—`: no goal.", "",
                       "| figure | gitward | floor | peer | gitward / floor | goal | met |",
                       "|---|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows])
    print()
    print(table)
    if os.environ.get("WRITE_DOCS"):
        write_docs(table)


DOCS = os.path.join(HERE, "..", "..", "contrib", "docs", "benchmarks.md")
BEGIN, END = "<!-- tests/bench/run_all.py: begin", "<!-- tests/bench/run_all.py: end -->"


def write_docs(table):
    """The table of benchmarks.md is this script's output: replace what lies between its markers."""
    if ONLY:
        sys.exit("WRITE_DOCS: not with BENCH_ROWS (the table would lose the rows not run)")
    with open(DOCS) as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"WRITE_DOCS: no {BEGIN} ... {END} markers in {DOCS}")
    start = text.index("\n", start) + 1
    with open(DOCS + ".tmp", "w") as f:
        f.write(text[:start] + table + "\n\n" + text[end:])
    os.replace(DOCS + ".tmp", DOCS)
    print(f"written to {os.path.relpath(DOCS)}", flush=True)


if __name__ == "__main__":
    main()
