#!/usr/bin/env python3
"""Benchmark, not a test: the process backend.

  1. cold converge of 50 processes (`reconcile` wall time)
  2. no-op pass with 100 managed processes (wall and CPU time of `reconcile`)
  3. commit -> converged latency of a one-resource change under `agent --interval 1s`

usage: tests/bench/bench_process.py [BUILD_DIR]   (default: build)
"""
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))


def git(repo, *args):
    subprocess.run(["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@x", *args], check=True,
                   capture_output=True)


def write(repo, n, version=0, only=None):
    os.makedirs(repo, exist_ok=True)
    for i in range(n):
        if only is not None and i != only:
            continue
        with open(os.path.join(repo, f"p{i:03d}.yaml"), "w") as f:
            f.write(f"apiVersion: gitward/v1\nkind: Process\nmetadata: {{name: p{i:03d}}}\n"
                    f"spec:\n  command: [/bin/sleep, \"3600\"]\n  env: {{V: \"{version}\"}}\n  stopTimeout: 2s\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"v{version}")


def timed(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if cp.returncode != 0:
        raise SystemExit(f"{argv[1]} failed: {cp.stderr}")
    return wall, cpu


def records(state):
    d = os.path.join(state, "run", "process")
    out = {}
    for f in os.listdir(d):
        if f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                out[f[:-5]] = json.load(fh)
    return out


def cleanup(repo, state):
    for f in os.listdir(repo):
        if f.endswith(".yaml"):
            os.remove(os.path.join(repo, f))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "empty")
    subprocess.run([gitward, "reconcile", "--repo", repo, "--state-dir", state, "--allow-empty"], capture_output=True)


def main():
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    try:
        repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
        write(repo, 50)
        wall, cpu = timed([gitward, "reconcile", "--repo", repo, "--state-dir", state])
        print(f"cold converge, 50 processes:          wall {wall:.3f} s, cpu {cpu:.3f} s")

        write(repo, 100)
        timed([gitward, "reconcile", "--repo", repo, "--state-dir", state])
        walls, cpus = [], []
        for _ in range(5):
            w, c = timed([gitward, "reconcile", "--repo", repo, "--state-dir", state])
            walls.append(w)
            cpus.append(c)
        print(f"no-op pass, 100 managed processes:    wall {statistics.median(walls):.3f} s, "
              f"cpu {statistics.median(cpus):.3f} s (median of 5)")

        agent = subprocess.Popen([gitward, "agent", "--repo", repo, "--state-dir", state, "--interval", "1s",
                                  "--listen", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            lat = []
            for v in range(1, 6):
                old = records(state)["p007"]["pid"]
                write(repo, 100, version=v, only=7)
                t0 = time.monotonic()
                while True:
                    r = records(state).get("p007")
                    if r and r["pid"] != old and f'"V":"{v}"' in r["spec"]:
                        break
                    if time.monotonic() - t0 > 30:
                        raise SystemExit("agent did not converge within 30 s")
                    time.sleep(0.005)
                lat.append(time.monotonic() - t0)
            print(f"commit -> converged, agent 1s:        median {statistics.median(lat):.3f} s, "
                  f"max {max(lat):.3f} s (5 changes)")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
        cleanup(repo, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
