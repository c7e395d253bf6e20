"""A private Podman API service for the container tests: podman + runc with a
containers.conf that works on this machine, its own storage root, a busybox
image made locally with `podman import`, and `podman system service` on a
private socket. Started once per test module, and everything it started is
removed afterwards. Under CI=true a missing podman fails instead of skipping."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from gwtest import CI

IMAGE = "localhost/busybox:latest"
APPLETS = ["sh", "sleep", "httpd", "true", "false", "echo", "cat", "env", "id", "ls", "nc", "wget", "ps", "kill"]


class Podman:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gw-podman-")
        self.socket = os.path.join(self.dir, "podman.sock")
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024","nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.base = ["podman", "--root", os.path.join(self.dir, "root"), "--runroot",
                     os.path.join(self.dir, "runroot"), "--storage-driver", "vfs"]
        self.service = None

    def podman(self, *args, check=True, timeout=120):
        r = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {r.stderr}")
        return r.stdout.strip()

    def start(self):
        rootfs = os.path.join(self.dir, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        os.makedirs(os.path.join(rootfs, "www"))
        os.makedirs(os.path.join(rootfs, "tmp"))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
        for a in APPLETS:
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
        with open(os.path.join(rootfs, "www", "index.html"), "w") as f:
            f.write("hello from busybox\n")
        tar = os.path.join(self.dir, "busybox.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        self.podman("import", "--change", 'CMD=["/bin/sh"]', tar, IMAGE)
        self.log = open(os.path.join(self.dir, "service.log"), "w")
        self.service = subprocess.Popen([*self.base, "system", "service", "--time=0", f"unix://{self.socket}"],
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180  # podman starts slowly on a loaded machine
        while time.monotonic() < deadline:
            if os.path.exists(self.socket):
                r = subprocess.run(["curl", "-sf", "--max-time", "30", "--unix-socket", self.socket, "http://d/_ping"],
                                   capture_output=True, text=True, timeout=60)
                if r.returncode == 0:
                    return
            if self.service.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("podman system service did not come up: " + open(self.log.name).read()[-2000:])

    def stop(self):
        try:
            self.podman("rm", "-a", "-f", "-t", "0", check=False, timeout=120)
        finally:
            if self.service and self.service.poll() is None:
                self.service.terminate()
                try:
                    self.service.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.service.kill()
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def available():
    return all(shutil.which(b) for b in ("podman", "runc", "curl")) and os.path.exists("/bin/busybox") \
        and os.geteuid() == 0


PODMAN = None


def setup_module():
    global PODMAN
    if not available():
        if CI:
            raise RuntimeError("podman, runc, curl or /bin/busybox missing (install them: contrib/install-deps.sh test)")
        raise unittest.SkipTest("podman, runc or busybox not installed")
    PODMAN = Podman()
    PODMAN.start()
    return PODMAN


def teardown_module():
    global PODMAN
    if PODMAN:
        PODMAN.stop()
        PODMAN = None
