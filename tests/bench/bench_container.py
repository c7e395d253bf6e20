#!/usr/bin/env python3
"""Benchmark, not a test: 20 containers on a private Podman API service.

  gitward: cold converge, no-op pass, one-container change (`reconcile` wall time)
  podman kube play: the same 20 containers as 20 pods (cold, and --replace)
  podman-compose: the same, when installed
  floor: the raw API calls alone (POST create + POST start per container)

usage: tests/bench/bench_container.py [BUILD_DIR]   (default: build; needs root, podman, runc)
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../e2e"))
import podman_env  # noqa: E402

N = 20
build = sys.argv[1] if len(sys.argv) > 1 else "build"
gitward = os.path.abspath(os.path.join(build, "agent/gitward"))


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("d", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, path, body=None):
    c = UnixHTTP(sock)
    c.request(method, "/v1.41" + path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def timed(argv, **kw):
    t0 = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True, **kw)
    dt = time.monotonic() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])}: {cp.stderr[-2000:]}")
    return dt


def git(repo, *args):
    subprocess.run(["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@x", *args], check=True,
                   capture_output=True)


def main():
    pm = podman_env.setup_module()
    tmp = tempfile.mkdtemp(prefix="gw-bench-")
    try:
        repo, state = os.path.join(tmp, "repo"), os.path.join(tmp, "state")
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)

        def write(v7=0):
            for i in range(N):
                v = v7 if i == 7 else 0
                with open(os.path.join(repo, f"c{i:02d}.yaml"), "w") as f:
                    f.write(f"apiVersion: gitward/v1\nkind: Container\nmetadata: {{name: c{i:02d}}}\nspec:\n"
                            f"  image: {podman_env.IMAGE}\n  command: [/bin/sleep, \"3600\"]\n  network: none\n"
                            f"  env: {{V: \"{v}\"}}\n  stopTimeout: 1s\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", f"v{v7}")

        gw = [gitward, "reconcile", "--repo", repo, "--state-dir", state, "--container-socket", pm.socket]
        write()
        print(f"{'gitward: cold converge, 20 containers':<46} {timed(gw):7.3f} s")
        print(f"{'gitward: no-op pass, 20 containers':<46} {timed(gw):7.3f} s")
        write(v7=1)
        print(f"{'gitward: one container changed':<46} {timed(gw):7.3f} s")
        for f in os.listdir(repo):
            if f.endswith(".yaml"):
                os.remove(os.path.join(repo, f))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "empty")
        timed(gw + ["--allow-empty"])

        kube = os.path.join(tmp, "kube.yaml")
        with open(kube, "w") as f:
            for i in range(N):
                f.write(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: k{i:02d}}}\nspec:\n  containers:\n"
                        f"  - name: main\n    image: {podman_env.IMAGE}\n    command: [/bin/sleep, \"3600\"]\n"
                        f"    env: [{{name: V, value: \"0\"}}]\n")
        base = pm.base
        env = pm.env
        print(f"{'podman kube play: cold, 20 pods':<46} {timed([*base, 'kube', 'play', '--network', 'none', kube], env=env):7.3f} s")
        print(f"{'podman kube play --replace (no change)':<46} {timed([*base, 'kube', 'play', '--replace', '--network', 'none', kube], env=env):7.3f} s")
        timed([*base, "kube", "down", kube], env=env)
        timed([*base, "pod", "rm", "-a", "-f"], env=env)

        if shutil.which("podman-compose"):
            comp = os.path.join(tmp, "compose")
            os.makedirs(comp)
            with open(os.path.join(comp, "docker-compose.yml"), "w") as f:
                f.write("services:\n")
                for i in range(N):
                    f.write(f"  s{i:02d}:\n    image: {podman_env.IMAGE}\n    command: [/bin/sleep, \"3600\"]\n"
                            f"    network_mode: none\n")
            pc = ["podman-compose", "--podman-args", " ".join(base[1:])]
            print(f"{'podman-compose up -d: cold, 20 services':<46} {timed([*pc, 'up', '-d'], cwd=comp, env=env):7.3f} s")
            print(f"{'podman-compose up -d: no change':<46} {timed([*pc, 'up', '-d'], cwd=comp, env=env):7.3f} s")
            timed([*pc, "down", "-t", "0"], cwd=comp, env=env)
        else:
            print(f"{'podman-compose':<46} not installed")

        t0 = time.monotonic()
        ids = []
        for i in range(N):
            st, data = api(pm.socket, "POST", f"/containers/create?name=raw{i:02d}",
                           {"Image": podman_env.IMAGE, "Cmd": ["/bin/sleep", "3600"],
                            "HostConfig": {"NetworkMode": "none"}})
            cid = json.loads(data)["Id"]
            ids.append(cid)
            st, _ = api(pm.socket, "POST", f"/containers/{cid}/start")
            assert st in (204, 304), st
        print(f"{'floor: raw API create + start, 20 containers':<46} {time.monotonic() - t0:7.3f} s")
        for cid in ids:
            api(pm.socket, "DELETE", f"/containers/{cid}?force=true")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        podman_env.teardown_module()


if __name__ == "__main__":
    main()
