#!/usr/bin/env python3
"""Soak benchmark: `gitward agent` with 100 managed processes at a short
interval for 2,000+ passes; prints RSS, PSS, private dirty memory and open
fds at pass 100 and at the end, and the idle footprint beside supervisord
managing the same 100 programs (measured in the same run when installed).

usage: tests/bench/bench_soak.py [BUILD_DIR] [PASSES]"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../build")
PASSES = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
GITWARD = os.path.join(BUILD, "agent/gitward")

# the same readings as the CI soak (tests/e2e/test_soak.py): passes from /metrics,
# descriptors without the per-workload pidfds
sys.path.insert(0, os.path.join(HERE, "../e2e"))
from gwtest import free_port  # noqa: E402
from test_soak import open_fds, passes  # noqa: E402

N = 100


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout








def footprint(pid):
    """KiB: RSS, PSS, private (clean + dirty), dirty (private + shared: pages
    shared only with a fetch process forked for a moment count too); and fds
    (least of samples, pidfds aside)."""
    fds = []
    for _ in range(20):
        fds.append(open_fds(pid))
        time.sleep(0.02)
    best = {}
    for _ in range(10):  # the most of each over samples: never one taken while a fetch is forked
        with open(f"/proc/{pid}/smaps_rollup") as f:
            t = f.read()

        def field(name):
            return int(re.search(rf"^{name}:\s+(\d+)", t, re.M).group(1))
        m = {"rss": field("Rss"), "pss": field("Pss"), "private": field("Private_Clean") + field("Private_Dirty"),
             "dirty": field("Private_Dirty") + field("Shared_Dirty")}
        for k, v in m.items():
            best[k] = max(best.get(k, 0), v)
        time.sleep(0.05)
    best["fds"] = min(fds)
    return best


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def row(label, m):
    print(f"{label:<34} {m['rss'] / 1024:7.1f} {m['pss'] / 1024:7.1f} {m['private'] / 1024:8.1f} "
          f"{m['dirty'] / 1024:8.1f} {m['fds']:4}")


def supervisord(tmp):
    if not shutil.which("supervisord"):
        print("supervisord: not installed (contrib/install-deps.sh bench)")
        return
    d = os.path.join(tmp, "sv")
    os.makedirs(d)
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/sd.log\npidfile={d}/sd.pid\nchildlogdir={d}\n"
                f"[unix_http_server]\nfile={d}/sock\n[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                f"[supervisorctl]\nserverurl=unix://{d}/sock\n")
        for i in range(N):
            f.write(f"[program:p{i:03}]\ncommand=/bin/sleep 3600\nautorestart=true\n"
                    f"stdout_logfile={d}/p{i:03}.log\nredirect_stderr=true\n")
    p = subprocess.Popen(["supervisord", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = subprocess.run(["supervisorctl", "-c", conf, "status"], capture_output=True, text=True)
            if r.stdout.count("RUNNING") == N:
                break
            time.sleep(0.5)
        time.sleep(2)
        row("supervisord, 100 programs, idle", footprint(p.pid))
    finally:
        subprocess.run(["supervisorctl", "-c", conf, "shutdown"], capture_output=True, timeout=120)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    tmp = tempfile.mkdtemp(prefix="gw-soak-")
    repo = os.path.join(tmp, "repo")
    state = os.path.join(tmp, "state")
    os.makedirs(os.path.join(repo, "apps"))
    sh("git", "-C", repo, "init", "-q", "-b", "main")
    for i in range(N):
        with open(os.path.join(repo, "apps", f"p{i:03}.yaml"), "w") as f:
            f.write(f"apiVersion: gitward/v1\nkind: Process\nmetadata: {{name: p{i:03}}}\n"
                    "spec:\n  command: [/bin/sleep, \"3600\"]\n")
    sh("git", "-C", repo, "add", "-A")
    sh("git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "100")
    port = free_port()
    agent = subprocess.Popen([GITWARD, "agent", "--repo", repo, "--path", "apps", "--state-dir", state,
                              "--interval", "100ms", "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        print(f"gitward agent, {N} processes, --interval 100ms, {PASSES} passes; KiB shown as MiB")
        print(f"{'':<34} {'RSS':>7} {'PSS':>7} {'private':>8} {'dirty':>8} {'fds':>4}")
        while passes(port) < 100:
            time.sleep(0.2)
        m0 = footprint(agent.pid)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        row("gitward agent at pass 100", m0)
        done = 100
        while done < PASSES:
            time.sleep(1)
            done = passes(port)
        m1 = footprint(agent.pid)
        cpu = cpu_seconds(agent.pid) - c0
        row(f"gitward agent at pass {done}", m1)
        print(f"growth after warm-up: RSS {m1['rss'] - m0['rss']:+d} KiB, private dirty "
              f"{m1['dirty'] - m0['dirty']:+d} KiB, fds {m1['fds'] - m0['fds']:+d}; "
              f"CPU per pass {1000 * cpu / (done - 100):.2f} ms over {time.monotonic() - t0:.0f} s")
        supervisord(tmp)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
        for rec in os.listdir(os.path.join(state, "run", "process")) if os.path.isdir(
                os.path.join(state, "run", "process")) else []:
            if rec.endswith(".json"):
                import json
                try:
                    with open(os.path.join(state, "run", "process", rec)) as f:
                        r = json.load(f)
                    for pid in (r.get("pid"), r.get("shim_pid")):
                        if pid:
                            os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
