"""Helpers for end-to-end tests: temp dirs, real git repos, running the built
gitward binary with bounded waits."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import gitservers

GITWARD = os.path.abspath(os.environ.get("GITWARD_BIN") or
                          os.path.join(os.path.dirname(__file__), "../../build/agent/gitward"))
# under CI (any non-empty value, as CI systems set it) a missing real component fails
CI = bool(os.environ.get("CI"))

HDR = "apiVersion: gitward/v1\n"


# how a text plan shows the create of a proc_yaml with its default command
SLEEP = 'command: ["/bin/sleep","300"]'


def proc_yaml(name, command=("/bin/sleep", "300"), extra=""):
    cmd = ", ".join(json.dumps(c) for c in command)
    return f"{HDR}kind: Process\nmetadata: {{name: {name}}}\nspec:\n  command: [{cmd}]\n{extra}"


class Repo:
    """A real git repository in a temp dir, committed to with the git CLI."""

    def __init__(self, path, branch="main", bare_remote=False):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.git("init", "-q", "-b", branch)
        self.git("config", "user.email", "t@example.com")
        self.git("config", "user.name", "t")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args, check=True):
        r = subprocess.run(["git", "-C", self.path, *args], capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"git {args}: {r.stderr}")
        return r.stdout.strip()

    def write(self, rel, text):
        p = os.path.join(self.path, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)

    def remove(self, rel):
        self.git("rm", "-q", "-r", rel)

    def commit(self, msg="change", allow_empty=False):
        self.git("add", "-A")
        args = ["commit", "-q", "-m", msg]
        if allow_empty:
            args.append("--allow-empty")
        self.git(*args)
        return self.git("rev-parse", "HEAD")


class Result:
    def __init__(self, cp):
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def run(*args, timeout=120, env=None, input=None, cwd=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    cp = subprocess.run([GITWARD, *args], capture_output=True, text=True, timeout=timeout, env=e, input=input,
                        cwd=cwd)
    return Result(cp)


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="gw-e2e-")
        self.state = os.path.join(self.tmp, "state")

    def tearDown(self):
        kill_workloads(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def repo(self, name="repo", **kw):
        return Repo(os.path.join(self.tmp, name), **kw)


def wait_for(pred, timeout=120.0, step=0.1, what="condition"):
    """Poll with a deadline instead of fixed sleeps. The deadline is only
    met on failure: generous by default, for a loaded machine running an
    ASan build 5-10 times slower than usual."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def records(state_dir):
    """The process records gitward keeps: name -> record."""
    out = {}
    d = os.path.join(state_dir, "run", "process")
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.endswith(".json"):
                try:
                    with open(os.path.join(d, f)) as fh:
                        out[f[:-5]] = json.load(fh)
                except (OSError, ValueError):
                    pass
    return out


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _started_at(pid):
    """The start time of pid in clock ticks (/proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kill_workloads(root, grace=3.0):
    """Stop every workload (and its supervisor) recorded under root: tests
    clean up only what they started. Gently first: SIGTERM to each workload's
    process group lets its supervisor see the exit and leave normally (a
    coverage build then writes the supervisor's counts); whatever still runs
    after `grace` seconds gets SIGKILL. A pid whose start time no longer
    matches its record is someone else's and is left alone."""
    pids = []
    for dirpath, dirnames, _ in os.walk(root):
        if dirpath.endswith(os.path.join("run", "process")):
            for rec in records(os.path.dirname(os.path.dirname(dirpath))).values():
                for pid, start in ((rec.get("pid"), rec.get("start_time")),
                                   (rec.get("shim_pid"), rec.get("shim_start_time"))):
                    if pid and (not start or _started_at(pid) in (None, start)):
                        pids.append(pid)
    if not pids:
        return
    for pid in pids:  # a supervisor ignores SIGTERM and waits for its workload
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass


def stop(proc, timeout=60):
    """End a gitward process a test started: SIGTERM, so it leaves through
    its normal exit (and a coverage build writes its counts), then SIGKILL
    if it has not gone within timeout seconds (generous: callers assert its
    exit status, and an ASan build on a loaded machine leaves slowly)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def binary_for_anyone(tmp):
    """A copy of the built binary that another user (nobody) can run: the
    checkout may sit under a home only root can enter (/root on a fresh
    machine, and in CI). tmp must be a folder everyone can enter."""
    d = os.path.join(tmp, "bin-for-anyone")
    os.makedirs(d, exist_ok=True)
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    path = os.path.join(d, "gitward")
    if not os.path.exists(path):
        shutil.copy2(GITWARD, path)
        os.chmod(path, 0o755)
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free when asked: another process may
    take it before the caller binds it. Agents bind port 0 themselves
    (LISTEN_ANY, agent_port); a server a test starts on a port of its
    choosing goes through retry_port.
    Chosen below the kernel's ephemeral range, so no outgoing connection is
    given it as its source port in between (gitservers.free_port)."""
    return gitservers.free_port()


# an agent's --listen: any free port, bound by the agent itself and read back with agent_port
LISTEN_ANY = "127.0.0.1:0"
_ENDPOINTS = re.compile(r"endpoints on http://127\.0\.0\.1:([0-9]+)/")


def agent_port(proc, log_path, timeout=120.0):
    """The port an agent started with --listen LISTEN_ANY bound, as its log
    tells it ("endpoints on http://127.0.0.1:PORT/"). Fails at once, with
    the log, if the agent exits first."""
    def bound():
        with open(log_path, errors="replace") as f:
            text = f.read()
        m = _ENDPOINTS.search(text)
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"the agent exited with {proc.returncode} before listening:\n{text[-3000:]}")
        return None
    return wait_for(bound, timeout=timeout, step=0.05, what=f"the agent's endpoints line in {log_path}")


def retry_port(start, attempts=5):
    """start(port) on a port free a moment ago; start returns its result, or
    None when the port was taken in between (its server could not bind):
    then again on another port, at most `attempts` times."""
    for _ in range(attempts):
        port = free_port()
        got = start(port)
        if got is not None:
            return port, got
    raise AssertionError(f"no free port could be bound in {attempts} attempts")


def fast_import(path, files, branch="main"):
    """A repository at path whose branch holds one commit of files ({relative
    path: text}), written with one `git fast-import` (large trees in
    seconds, not one git call per file)."""
    subprocess.run(["git", "init", "-q", "-b", branch, path], check=True, timeout=60)
    chunks = [f"commit refs/heads/{branch}\ncommitter t <t@example.com> 0 +0000\ndata 4\ngen\n".encode()]
    for rel, text in files.items():
        data = text.encode()
        chunks.append(b"M 100644 inline " + rel.encode() + b"\ndata " + str(len(data)).encode() + b"\n" + data +
                      b"\n")
    chunks.append(b"\n")
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=b"".join(chunks), check=True, timeout=300)
    return subprocess.run(["git", "-C", path, "rev-parse", branch], capture_output=True, text=True,
                          check=True).stdout.strip()
