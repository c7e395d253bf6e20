#!/usr/bin/env python3
"""Benchmark, not a test: crash -> running again under `gitward agent
--interval 1h`, per backend (median and max). The interval is an hour, so
only the agent's own wake-ups (a pidfd per process and QEMU, the engine's
event stream for containers) can bring a workload back. Each kill is a first
crash: N workloads, each killed once (a second crash within 60 s would be
held back by the crash-loop backoff, 1 s, 2 s, 4 s, ... by design).

Beside it, the peers measured in the same run: supervisord (autorestart) and
`podman run --restart=always` (conmon) when installed.

usage: tests/bench/bench_heal.py [BUILD_DIR] [KILLS]   (needs root; podman and QEMU for those rows)
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../e2e"))
import gwtest  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../build")
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
GITWARD = os.path.abspath(os.path.join(BUILD, "agent/gitward"))


def alive(pid):
    return gwtest.pid_alive(pid)


def wait(pred, timeout=60, step=0.005, what="the workload"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    log = os.environ.get("GW_BENCH_LOG")
    tail = open(log).read()[-3000:] if log and os.path.exists(log) else ""
    raise SystemExit(f"timed out waiting for {what}\n{tail}")


def agent(tmp, r, *extra):
    state = os.path.join(tmp, "state")
    log = open(os.path.join(tmp, "agent.log"), "w")
    p = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", state, "--interval", "1h",
                          "--listen", "off", *extra], stdout=log, stderr=subprocess.STDOUT)
    os.environ["GW_BENCH_LOG"] = log.name
    return p, state


def measure(kill, current, n, label):
    """For each of n workloads: kill() it (current(i) gives its id), time
    until it runs again with another id."""
    times = []
    for i in range(n):
        old = wait(lambda: current(i), timeout=180, what=f"workload {i} to run")
        t0 = time.monotonic()
        kill(old)
        wait(lambda: (c := current(i)) and c != old and c, what=f"workload {i} to run again")
        times.append(time.monotonic() - t0)
    ordered = sorted(times)
    print(f"{label:<44} median {statistics.median(ordered) * 1000:7.0f} ms   max {ordered[-1] * 1000:7.0f} ms"
          f"   ({len(times)} kills)", flush=True)


def repo_of(tmp, texts):
    r = gwtest.Repo(os.path.join(tmp, "repo"))
    for i, t in enumerate(texts):
        r.write(f"w{i:02}.yaml", t)
    r.commit()
    return r


def process_row(tmp):
    r = repo_of(tmp, [gwtest.proc_yaml(f"w{i:02}", ("/bin/sleep", "3600")) for i in range(KILLS)])
    p, state = agent(tmp, r)
    try:
        def cur(i):
            pid = gwtest.records(state).get(f"w{i:02}", {}).get("pid")
            return pid if pid and alive(pid) else None
        measure(lambda pid: os.kill(pid, signal.SIGKILL), cur, KILLS, "gitward agent: Process (kill -9)")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        gwtest.kill_workloads(tmp)


def supervisord_row(tmp):
    if not shutil.which("supervisord"):
        print(f"{'supervisord (autorestart)':<44} not installed (contrib/install-deps.sh bench)")
        return
    d = os.path.join(tmp, "sv")
    os.makedirs(d)
    conf = os.path.join(d, "s.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={d}/sd.log\npidfile={d}/sd.pid\n"
                f"[unix_http_server]\nfile={d}/sock\n[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                f"[supervisorctl]\nserverurl=unix://{d}/sock\n")
        for i in range(KILLS):
            f.write(f"[program:w{i:02}]\ncommand=/bin/sleep 3600\nautorestart=true\nstartsecs=0\n"
                    f"stdout_logfile={d}/w{i:02}.log\n")
    sd = subprocess.Popen(["supervisord", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def cur(i):
            r = subprocess.run(["supervisorctl", "-c", conf, "pid", f"w{i:02}"], capture_output=True, text=True)
            try:
                pid = int(r.stdout.strip())
            except ValueError:
                return None
            return pid if pid > 0 and alive(pid) else None
        measure(lambda pid: os.kill(pid, signal.SIGKILL), cur, KILLS, "supervisord (autorestart)")
    finally:
        subprocess.run(["supervisorctl", "-c", conf, "shutdown"], capture_output=True, timeout=60)
        sd.wait(timeout=60)


def vm_row(tmp):
    if not shutil.which("qemu-system-x86_64"):
        print(f"{'gitward agent: VM':<44} QEMU not installed")
        return
    import vm_guest
    kernel, initrd = vm_guest.build()
    n = KILLS  # one guest per kill, each killed once (a first crash), 128 MiB each under TCG
    r = repo_of(tmp, [f"{gwtest.HDR}kind: VM\nmetadata: {{name: w{i:02}}}\nspec:\n  memory: 128Mi\n  cpus: 1\n"
                      f"  kernel: {kernel}\n  initrd: {initrd}\n  cmdline: \"console=ttyS0 quiet panic=-1\"\n"
                      f"  network: none\n  accel: tcg\n  stopTimeout: 1s\n" for i in range(n)])
    p, state = agent(tmp, r)
    try:
        def cur(i):
            try:
                with open(os.path.join(state, "run", "vm", f"w{i:02}.json")) as f:
                    pid = json.load(f)["pid"]
            except (OSError, ValueError, KeyError):
                return None
            return pid if pid and alive(pid) else None
        # every guest booted first (its console says so): kills are measured on a settled machine,
        # not against twenty TCG boots at once
        def booted(i):
            try:
                with open(os.path.join(state, "logs", f"vm-w{i:02}.log"), errors="replace") as f:
                    return "GUEST-READY" in f.read()
            except OSError:
                return False
        wait(lambda: all(booted(i) for i in range(n)), timeout=600, what="every guest booted")
        measure(lambda pid: os.kill(pid, signal.SIGKILL), cur, n, "gitward agent: VM (kill -9 QEMU)")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        for i in range(n):
            pid = cur(i)
            if pid:
                os.kill(pid, signal.SIGKILL)


def container_rows(tmp):
    if not shutil.which("podman"):
        print(f"{'gitward agent: Container':<44} podman not installed")
        return
    import podman_env
    pm = podman_env.Podman()
    pm.start()
    try:
        r = repo_of(tmp, [f"{gwtest.HDR}kind: Container\nmetadata: {{name: w{i:02}}}\nspec:\n"
                          f"  image: {podman_env.IMAGE}\n  command: [/bin/sleep, \"3600\"]\n  network: none\n"
                          f"  stopTimeout: 1s\n" for i in range(KILLS)])
        p, state = agent(tmp, r, "--container-socket", pm.socket)
        try:
            def cur(i):
                out = pm.podman("ps", "-q", "--no-trunc", "--filter", f"label=gitward.state-dir={state}",
                                "--filter", f"label=gitward.name=w{i:02}", "--filter", "status=running", check=False)
                return out.split()[0] if out else None
            measure(lambda cid: pm.podman("kill", cid, check=False), cur, KILLS,
                    "gitward agent: Container (podman kill)")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
            ids = pm.podman("ps", "-aq", "--filter", f"label=gitward.state-dir={state}", check=False)
            if ids:
                pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        for i in range(KILLS):
            pm.podman("run", "-d", "--name", f"peer{i:02}", "--restart=always", "--network", "none",
                      podman_env.IMAGE, "/bin/sleep", "3600")

        def peer(i):
            out = pm.podman("inspect", f"peer{i:02}", "--format", "{{.State.Pid}} {{.State.Running}}", check=False)
            parts = out.split()
            return parts[0] if len(parts) == 2 and parts[1] == "true" and parts[0] != "0" else None
        measure(lambda pid: os.kill(int(pid), signal.SIGKILL), peer, KILLS, "podman --restart=always (conmon)")
    finally:
        pm.stop()


def main():
    print(f"crash -> running again, {KILLS} kills each; gitward agent with --interval 1h")
    rows = (process_row, supervisord_row, container_rows, vm_row)
    only = os.environ.get("BENCH_ROWS")
    for row in rows:
        if only and row.__name__ not in only.split(","):
            continue
        tmp = tempfile.mkdtemp(prefix="gw-bench-heal-")
        try:  # noqa
            row(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
