#!/usr/bin/env python3
"""Benchmark, not a test: time from `gitward reconcile` start to the guest
answering HTTP through its forward, beside the floor of launching the same
QEMU command by hand (TCG, the busybox guest of tests/e2e/vm_guest.py).

usage: tests/bench/bench_vm.py [BUILD_DIR]   (default: build; needs root and qemu-system-x86)
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../e2e"))
import vm_guest  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))
RUNS = 3


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def until_http(port, t0, limit=120):
    while time.monotonic() - t0 < limit:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.02)
    raise SystemExit("the guest never answered")


def main():
    kernel, initrd = vm_guest.build()
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    gw_times, floor_times = [], []
    try:
        for i in range(RUNS):
            port = free_port()
            repo, state = os.path.join(tmp, f"repo{i}"), os.path.join(tmp, f"state{i}")
            subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
            with open(os.path.join(repo, "vm.yaml"), "w") as f:
                f.write(f"apiVersion: gitward/v1\nkind: VM\nmetadata: {{name: guest}}\nspec:\n  memory: 256Mi\n"
                        f"  kernel: {kernel}\n  initrd: {initrd}\n  cmdline: \"console=ttyS0 quiet panic=-1\"\n"
                        f"  forwards: [\"127.0.0.1:{port}:80/tcp\"]\n  accel: tcg\n  stopTimeout: 1s\n")
            subprocess.run(["git", "-C", repo, "add", "-A"], check=True)
            subprocess.run(["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "vm"],
                           check=True)
            t0 = time.monotonic()
            p = subprocess.Popen([gitward, "reconcile", "--repo", repo, "--state-dir", state],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            gw_times.append(until_http(port, t0))
            p.wait(timeout=60)
            # the same QEMU command, by hand
            with open(os.path.join(state, "run", "vm", "guest.pid")) as f:
                pid = int(f.read())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
            port2 = free_port()
            hand = os.path.join(tmp, f"hand{i}")
            os.makedirs(hand)
            argv = [a.replace(f"127.0.0.1:{port}-", f"127.0.0.1:{port2}-").replace(state, hand) for a in argv]
            os.makedirs(os.path.join(hand, "run", "vm"))
            os.makedirs(os.path.join(hand, "logs"))
            t0 = time.monotonic()
            subprocess.run(argv, check=True)
            floor_times.append(until_http(port2, t0))
            with open(os.path.join(hand, "run", "vm", "guest.pid")) as f:
                os.kill(int(f.read()), signal.SIGKILL)
        print(f"gitward reconcile -> guest answers through its forward: median {statistics.median(gw_times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in gw_times)})")
        print(f"floor: the same QEMU command by hand -> guest answers:   median {statistics.median(floor_times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in floor_times)})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
