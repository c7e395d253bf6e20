#!/usr/bin/env python3
"""Benchmark, not a test: the largest inputs within the documented limits
(issue 11), `validate` and `reconcile --dry-run` on each, wall time and peak
RSS of gitward:

  files100k   100,000 manifest files in one commit (one Process each)
  chain250k   a dependsOn chain of 250,000 resources (50 files x 5,000 docs)
  keys99k     one mapping of 99,000 keys (spec.env, keys in descending order)
  dups20k     dependsOn: [b, b, ...] with 20,000 entries (refused, capped diagnostics)
  tree64      manifests 64 folders deep (the tree-depth limit)

Repositories are written with `git fast-import` (no file-by-file git calls).

usage: tests/bench/bench_limits.py [BUILD_DIR] [CASE...]   (default: build, every case)
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HDR = "apiVersion: gitward/v1\nkind: Process\n"


def doc(name, extra=""):
    return f"{HDR}metadata: {{name: {name}}}\nspec:\n  command: [/bin/sleep, \"300\"]\n{extra}"


def fast_import(path, files):
    """A repo at path whose main branch holds one commit of files
    ({relative path: text}), written with git fast-import."""
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    chunks = [b"commit refs/heads/main\ncommitter b <b@x> 0 +0000\ndata 5\nbench\n"]
    for rel, text in files.items():
        data = text.encode()
        chunks.append(b"M 100644 inline " + rel.encode() + b"\ndata " + str(len(data)).encode() + b"\n" + data +
                      b"\n")
    chunks.append(b"\n")
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=b"".join(chunks), check=True)
    subprocess.run(["git", "-C", path, "checkout", "-q", "-f", "main"], check=True)


def files100k():
    return {f"s/g{i // 1000:03d}/p{i}.yaml": doc(f"p{i}") for i in range(100000)}


def chain250k():
    files = {}
    for f in range(50):
        docs = []
        for k in range(5000):
            i = f * 5000 + k
            dep = f"  dependsOn: [c{i + 1}]\n" if i + 1 < 250000 else ""
            docs.append(doc(f"c{i}", dep))
        files[f"chain{f:02d}.yaml"] = "---\n".join(docs)
    return files


def b36(i):
    s = ""
    while True:
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[i % 36] + s
        i //= 36
        if not i:
            return s


def keys99k():
    env = ", ".join(f"e{b36(i)}: x" for i in range(99000 - 1, -1, -1))
    return {"keys.yaml": doc("keys", f"  env: {{{env}}}\n")}


def dups20k():
    deps = ", ".join(["b"] * 20000)
    return {"a.yaml": doc("a", f"  dependsOn: [{deps}]\n"), "b.yaml": doc("b")}


def tree64():
    return {"/".join(["d"] * 64) + "/deep.yaml": doc("deep")}


CASES = {"files100k": files100k, "chain250k": chain250k, "keys99k": keys99k, "dups20k": dups20k,
         "tree64": tree64}


def measure(argv):
    """Wall time and peak RSS of one child (a forked wrapper, so
    RUSAGE_CHILDREN holds only this run)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        t0 = time.monotonic()
        cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    gitward = os.path.abspath(os.path.join(build, "agent/gitward"))
    names = sys.argv[2:] or list(CASES)
    tmp = tempfile.mkdtemp(prefix="gw-bench-limits-")
    try:
        print(f"{'case':<10} {'run':<28} {'exit':>4} {'wall s':>8} {'peak MiB':>9}")
        for name in names:
            repo = os.path.join(tmp, name)
            fast_import(repo, CASES[name]())
            dry = [gitward, "reconcile", "--dry-run", "--repo", repo, "--state-dir",
                   os.path.join(tmp, name + ".state"), "--node", "n1"]
            runs = [("validate", [gitward, "validate", repo]),
                    ("reconcile --dry-run (clone)", dry),
                    ("reconcile --dry-run (fetch)", dry)]
            for label, argv in runs:
                rc, dt, rss = measure(argv)
                print(f"{name:<10} {label:<28} {rc:>4} {dt:>8.3f} {rss:>9.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
