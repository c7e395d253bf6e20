#!/usr/bin/env python3
"""Benchmark, not a test: `reconcile --dry-run` on repos of 1,000 and 10,000
manifests, wall time and peak RSS, beside the floor (the same bytes read from
disk and parsed by libyaml alone). Goal: 10,000 manifests in < 1 s, < 64 MiB.

usage: tests/bench/bench_dryrun.py [BUILD_DIR]   (default: build)
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))
floor = os.path.abspath(os.path.join(build, "tests/bench_yaml_floor"))

DOC = """apiVersion: gitward/v1
kind: Process
metadata:
  name: svc-{i}
  labels: {{tier: t{t}}}
spec:
  command: ["/usr/bin/python3", "-m", "http.server", "{port}"]
  env: {{MODE: prod, INDEX: "{i}"}}
  workingDir: /srv/svc-{i}
  restart: always
  dependsOn: [{dep}]
  healthCheck:
    http: {{url: "http://127.0.0.1:{port}/healthz"}}
    interval: 10s
  stopTimeout: 5s
  limits: {{openFiles: 4096, memory: 256Mi}}
"""


def make_repo(path, n):
    os.makedirs(path)
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    for i in range(n):
        d = os.path.join(path, "services", f"g{i // 500:03d}")
        os.makedirs(d, exist_ok=True)
        dep = f"svc-{i - 1}" if i % 10 else ""
        with open(os.path.join(d, f"svc-{i}.yaml"), "w") as f:
            f.write(DOC.format(i=i, t=i % 7, port=10000 + i, dep=dep))
    subprocess.run(["git", "-C", path, "add", "-A"], check=True)
    subprocess.run(["git", "-C", path, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "bench"],
                   check=True)


def measure(argv, **kw):
    """Wall time and peak RSS of one child (fork+exec via a wrapper so
    RUSAGE_CHILDREN holds only this run)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.monotonic()
        cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
        dt = time.monotonic() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        os.write(w, f"{cp.returncode} {dt} {rss}".encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 200).decode()
    os.waitpid(pid, 0)
    rc, dt, rss = data.split()
    return int(rc), float(dt), int(rss) / 1024.0


def main():
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    try:
        print(f"{'manifests':>9}  {'run':<22} {'wall s':>8} {'peak MiB':>9}")
        for n in (1000, 10000):
            repo = os.path.join(tmp, f"repo{n}")
            make_repo(repo, n)
            state = os.path.join(tmp, f"state{n}")
            args = [gitward, "reconcile", "--dry-run", "--repo", repo, "--state-dir", state, "--output", "json"]
            rc, dt, rss = measure(args)
            assert rc == 2, f"dry-run exit {rc}"
            print(f"{n:>9}  {'dry-run (cold clone)':<22} {dt:>8.3f} {rss:>9.1f}")
            best = None
            for _ in range(3):
                rc, dt, rss = measure(args)
                assert rc == 2
                best = (dt, rss) if best is None or dt < best[0] else best
            print(f"{n:>9}  {'dry-run (fetch only)':<22} {best[0]:>8.3f} {best[1]:>9.1f}")
            rc, dt, rss = measure([floor, os.path.join(repo, "services")])
            print(f"{n:>9}  {'floor: read + libyaml':<22} {dt:>8.3f} {rss:>9.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
