#!/usr/bin/env python3
"""Benchmark, not a test: what an UNCHANGED poll costs on a real Git server.

Per transport (smart HTTP, HTTPS, SSH), with the servers of
tests/e2e/gitservers.py (nginx + git http-backend, sshd) on loopback and a
counting TCP relay in front of each: an unchanged `gitward reconcile
--dry-run` pass (after its first clone), beside `git ls-remote` and an
unchanged `git fetch` against the same server in the same run. Figures are
medians of RUNS runs: HTTP requests and bytes (nginx access log: request
length in, bytes sent out), TCP connections and bytes each way (the relay:
TLS and SSH framing included), and wall time (informational only).

usage: tests/bench/bench_git.py [BUILD_DIR] [RUNS]   (default: build 7)
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from gitservers import CountingForwarder, GitServers  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))

MANIFEST = ("apiVersion: gitward/v1\nkind: Process\nmetadata: {{name: svc-{i}}}\n"
            "spec:\n  command: [/bin/sleep, \"300\"]\n  env: {{INDEX: \"{i}\"}}\n")


def git(*args, env=None, cwd=None):
    subprocess.run(["git", *args], check=True, capture_output=True, timeout=120, env=env, cwd=cwd)


def make_repo(tmp, bare):
    """100 manifests over 20 commits, 3 branches, 5 tags."""
    work = os.path.join(tmp, "work")
    git("init", "-q", "-b", "main", work)
    for c in range(20):
        for i in range(c * 5, c * 5 + 5):
            os.makedirs(os.path.join(work, "apps"), exist_ok=True)
            with open(os.path.join(work, "apps", f"svc-{i}.yaml"), "w") as f:
                f.write(MANIFEST.format(i=i))
        git("-C", work, "add", "-A")
        git("-C", work, "-c", "user.name=b", "-c", "user.email=b@x", "-c", "commit.gpgsign=false", "commit", "-q",
            "-m", f"c{c}")
        if c % 4 == 3:
            git("-C", work, "tag", f"v{c // 4}")
    git("-C", work, "branch", "staging")
    git("-C", work, "branch", "canary")
    git("-C", work, "push", "-q", bare, "--all")
    git("-C", work, "push", "-q", bare, "--tags")


def main():
    if not os.access(gitward, os.X_OK):
        sys.exit(f"no gitward binary at {gitward} (give the build dir)")
    servers = GitServers()
    servers.start()
    tmp = tempfile.mkdtemp(prefix="gw-bench-git-")
    fwd = {}
    try:
        bare = servers.bare("bench")
        make_repo(tmp, bare)
        fwd = {"HTTP": CountingForwarder(servers.http_port), "HTTPS": CountingForwarder(servers.https_port),
               "SSH": CountingForwarder(servers.ssh_port)}
        home = os.path.join(tmp, "home")
        os.makedirs(os.path.join(home, ".ssh"))
        kh = servers.write_known_hosts(os.path.join(home, ".ssh", "known_hosts"), ports=[fwd["SSH"].port])
        urls = {"HTTP": servers.http_url("bench", port=fwd["HTTP"].port),
                "HTTPS": servers.https_url("bench", port=fwd["HTTPS"].port),
                "SSH": servers.ssh_url("bench", port=fwd["SSH"].port)}
        genv = dict(servers.git_env(kh), HOME=home)
        wenv = dict(os.environ, HOME=home, SSH_AUTH_SOCK="")
        rows = []
        for t, url in urls.items():
            state = os.path.join(tmp, "state-" + t)
            extra = {"HTTPS": ["--ca-file", servers.ca_file],
                     "SSH": ["--ssh-key", servers.client_key, "--known-hosts", kh]}.get(t, [])
            clone = os.path.join(tmp, "clone-" + t)
            clients = {
                "gitward pass": [gitward, "reconcile", "--dry-run", "--repo", url, "--state-dir", state, "--node", "n1",
                                 *extra],
                "git ls-remote": ["git", "ls-remote", url],
                "git fetch": ["git", "-C", clone, "fetch", "-q", "origin"],
            }
            # first clones, not measured
            first = subprocess.run(clients["gitward pass"], capture_output=True, text=True, env=wenv, timeout=300)
            gitward_ok = first.returncode in (0, 2)
            if not gitward_ok:
                print(f"# {t}: gitward cannot fetch here: {first.stderr.strip()}", file=sys.stderr)
            git("clone", "-q", "--no-checkout", url, clone, env=genv)
            for name, argv in clients.items():
                if name == "gitward pass" and not gitward_ok:
                    rows.append((t, name) + (None,) * 7)
                    continue
                env = wenv if name == "gitward pass" else genv
                samples = []
                for _ in range(runs):
                    f = fwd[t]
                    f.idle()
                    f.reset()
                    log0 = len(servers.access_lines())
                    t0 = time.monotonic()
                    cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
                    wall = (time.monotonic() - t0) * 1000
                    if cp.returncode not in (0, 2):
                        sys.exit(f"{name} over {t} failed: {cp.stderr}")
                    f.idle()
                    lines = servers.access_lines()[log0:] if t != "SSH" else []
                    samples.append((len(lines), sum(x[3] for x in lines), sum(x[4] for x in lines), f.connections,
                                    f.bytes_up, f.bytes_down, wall))
                med = [statistics.median(col) for col in zip(*samples)]
                rows.append((t, name, *med))
        print(f"Unchanged poll against a real server on loopback (repo: 100 manifests, 20 commits, 3 branches, "
              f"5 tags; medians of {runs} runs)\n")
        hdr = (f"| {'transport':<9} | {'client':<13} | {'HTTP requests':>13} | {'HTTP bytes in/out':>17} | "
               f"{'TCP conns':>9} | {'TCP bytes up/down':>17} | {'wall ms':>7} |")
        print(hdr)
        print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
        for t, name, req, rin, rout, conns, up, down, wall in rows:
            if req is None:
                print(f"| {t:<9} | {name:<13} | {'n/a':>13} | {'n/a':>17} | {'n/a':>9} | {'n/a':>17} | {'n/a':>7} |")
                continue
            http_req = f"{req:.0f}" if t != "SSH" else "-"
            http_b = f"{rin:.0f} / {rout:.0f}" if t != "SSH" else "-"
            print(f"| {t:<9} | {name:<13} | {http_req:>13} | {http_b:>17} | {conns:>9.0f} | "
                  f"{f'{up:.0f} / {down:.0f}':>17} | {wall:>7.0f} |")
        print("\nHTTP bytes: nginx's $request_length / $bytes_sent (headers included); TCP bytes: what crossed "
              "the relay, client to server / server to client (TLS and SSH framing included). "
              "git is the git CLI (protocol v2); libgit2 1.5 speaks protocol v0.")
    finally:
        for f in fwd.values():
            f.stop()
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
