"""Container promises on a real Podman API service, each asserted on what the
engine itself reports: volumes mounted and readable inside, memory and cpus
in HostConfig, an image pulled from a registry on loopback (Debian's
docker-registry), dependsOn order in create and delete, two state dirs on one
engine that never see each other's containers, and a failing health check
that replaces the container after `retries` failed probes."""
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import gitservers
import podman_env
from gwtest import CI, HDR, TempDirTest, run, wait_for

PODMAN = None
REGISTRY = None


class Registry:
    """Debian's docker-registry (the CNCF distribution registry) on
    127.0.0.1, plain HTTP, its storage in a temp dir. The port comes from
    the registry itself: a busy port makes it exit, and it is retried."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gw-registry-")
        self.proc = None
        self.log = None
        self.port = None

    def start(self):
        for _ in range(10):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            conf = os.path.join(self.dir, "config.yml")
            with open(conf, "w") as f:
                f.write(f"version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem:\n"
                        f"    rootdirectory: {self.dir}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
                        f"  secret: gitward-test\n")
            self.log = open(os.path.join(self.dir, "registry.log"), "w")
            self.proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=self.log,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120  # a loaded machine starts it slowly
            while time.monotonic() < deadline and self.proc.poll() is None:
                r = subprocess.run(["curl", "-sf", "--max-time", "30", f"http://127.0.0.1:{port}/v2/"],
                                   capture_output=True, timeout=60)
                if r.returncode == 0:
                    self.port = port
                    return
                time.sleep(0.1)
            self.stop_proc()
        raise RuntimeError("docker-registry did not come up: " + self.text()[-2000:])

    def text(self):
        with open(os.path.join(self.dir, "registry.log")) as f:
            return f.read()

    def stop_proc(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log:
            self.log.close()

    def stop(self):
        self.stop_proc()
        shutil.rmtree(self.dir, ignore_errors=True)


class PodmanWithRegistry(podman_env.Podman):
    """The shared test Podman, told that the loopback registry speaks plain
    HTTP (registries.conf `insecure`), as a node with a private registry
    would be configured."""

    def __init__(self, registry_port):
        super().__init__()
        conf = os.path.join(self.dir, "registries.conf")
        with open(conf, "w") as f:
            f.write(f'[[registry]]\nlocation = "127.0.0.1:{registry_port}"\ninsecure = true\n')
        self.env["CONTAINERS_REGISTRIES_CONF"] = conf


def setUpModule():
    global PODMAN, REGISTRY
    if not podman_env.available() or not shutil.which("docker-registry"):
        if CI:
            raise RuntimeError("podman, runc, curl, /bin/busybox or docker-registry missing "
                               "(install them: contrib/install-deps.sh test)")
        raise unittest.SkipTest("podman, runc, busybox or docker-registry not installed")
    REGISTRY = Registry()
    REGISTRY.start()
    PODMAN = PodmanWithRegistry(REGISTRY.port)
    try:
        PODMAN.start()
    except Exception:
        PODMAN.stop()
        REGISTRY.stop()
        raise


def tearDownModule():
    if PODMAN:
        PODMAN.stop()
    if REGISTRY:
        REGISTRY.stop()


def cont_yaml(name, command=("/bin/sleep", "300"), extra="", image=podman_env.IMAGE):
    cmd = ", ".join(json.dumps(c) for c in command)
    return (f"{HDR}kind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n"
            f"  command: [{cmd}]\n  network: none\n  stopTimeout: 1s\n{extra}")


def ns(stamp):
    """Go's RFC 3339 time with nanoseconds (podman inspect) -> integer ns since the epoch."""
    date, frac = stamp.split(".", 1) if "." in stamp else (stamp, "0Z")
    digits = "".join(c for c in frac if c.isdigit())
    tz = frac[len(digits):]
    base = datetime.datetime.fromisoformat(date + ("+00:00" if tz in ("Z", "") else tz))
    return int(base.timestamp()) * 10**9 + int((digits + "000000000")[:9])


class ContainerPromises(TempDirTest):
    def setUp(self):
        super().setUp()
        self.pm = PODMAN
        self.states = [self.state]

    def tearDown(self):
        for st in self.states:  # what this test's gitwards created, nothing else
            ids = self.pm.podman("ps", "-a", "-q", "--filter", f"label=gitward.state-dir={st}", check=False)
            if ids:
                self.pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0, state=None):
        res = run("reconcile", "--repo", repo.path, "--state-dir", state or self.state, "--node", "n1",
                  "--container-socket", self.pm.socket, *args, timeout=300)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def ids(self, state=None):
        """name -> (full id, state) of the containers one state dir owns."""
        out = self.pm.podman("ps", "-a", "--filter", f"label=gitward.state-dir={state or self.state}",
                             "--format", "json")
        return {c["Labels"]["gitward.name"]: (c["Id"], c["State"]) for c in json.loads(out or "[]")}

    def inspect(self, name):
        return json.loads(self.pm.podman("inspect", name))[0]

    def status(self, state=None):
        res = run("status", "--output", "json", "--state-dir", state or self.state)
        self.assertEqual(res.rc, 0, res)
        return {x["name"]: x for x in res.json()["resources"]}

    def logs(self, name):
        """The container's output, stdout and stderr as one text."""
        return subprocess.run([*self.pm.base, "logs", name], env=self.pm.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60).stdout

    def test_volumes_are_mounted_and_read_inside_read_only_when_asked(self):
        # What the container sees is shown by its own PID 1 (its log), never
        # by `podman exec`: under runc without pivot_root (a chroot) an exec
        # lands in the host's root, not the container's.
        data = os.path.join(self.tmp, "data")
        os.makedirs(data)
        word = "volume-" + os.urandom(4).hex()
        with open(os.path.join(data, "word.txt"), "w") as f:
            f.write(word + "\n")
        r = self.repo()
        ro = ("/bin/sh", "-c", "cat /data/word.txt; echo x > /data/new || echo WRITE-REFUSED; exec sleep 300")
        rw = ("/bin/sh", "-c", "echo from-inside > /data/rw-new; echo WRITTEN; exec sleep 300")
        r.write("v.yaml", cont_yaml("vol", command=ro, extra=f"  volumes: [\"{data}:/data:ro\"]\n"))
        r.write("w.yaml", cont_yaml("rw", command=rw, extra=f"  volumes: [\"{data}:/data\"]\n"))
        r.commit()
        self.reconcile(r)
        wait_for(lambda: "WRITE-REFUSED" in self.logs("gitward-vol"), timeout=120, what="the ro container's log")
        out = self.logs("gitward-vol")
        self.assertEqual(out.splitlines()[0], word)
        self.assertIn("Read-only file system", out)
        mounts = {m["Destination"]: m for m in self.inspect("gitward-vol")["Mounts"]}
        self.assertEqual(mounts["/data"]["Source"], data)
        self.assertFalse(mounts["/data"]["RW"])
        # without :ro the container writes through to the host; with :ro nothing reached it
        wait_for(lambda: "WRITTEN" in self.logs("gitward-rw"), timeout=120, what="the rw container's log")
        with open(os.path.join(data, "rw-new")) as f:
            self.assertEqual(f.read(), "from-inside\n")
        self.assertEqual(sorted(os.listdir(data)), ["rw-new", "word.txt"])
        self.assertTrue({m["Destination"]: m for m in self.inspect("gitward-rw")["Mounts"]}["/data"]["RW"])

    def test_memory_and_cpus_reach_the_engine_and_a_change_replaces(self):
        r = self.repo()
        r.write("a.yaml", cont_yaml("lim", extra="  memory: 64Mi\n  cpus: 0.5\n"))
        r.commit()
        self.reconcile(r)
        host = self.inspect("gitward-lim")["HostConfig"]
        self.assertEqual(host["Memory"], 64 * 1024 * 1024)
        self.assertEqual(host["NanoCpus"], 500_000_000)
        first = self.ids()["lim"][0]
        r.write("a.yaml", cont_yaml("lim", extra="  memory: 96Mi\n  cpus: 1.5\n"))
        r.commit()
        res = self.reconcile(r)
        self.assertIn('  ~ Container/lim        update  cpus: "0.5" -> "1.5", memory: "64Mi" -> "96Mi"', res.out)
        host = self.inspect("gitward-lim")["HostConfig"]
        self.assertEqual(host["Memory"], 96 * 1024 * 1024)
        self.assertEqual(host["NanoCpus"], 1_500_000_000)
        self.assertNotEqual(self.ids()["lim"][0], first)

    def test_an_image_is_pulled_from_a_registry_on_loopback(self):
        image = f"127.0.0.1:{REGISTRY.port}/gw/pulled:1"
        self.pm.podman("push", "--tls-verify=false", podman_env.IMAGE, image)
        self.pm.podman("rmi", "-f", image, check=False)
        self.assertNotEqual(subprocess.run([*self.pm.base, "image", "exists", image], env=self.pm.env).returncode, 0)
        before = REGISTRY.text().count("/v2/gw/pulled/manifests/1")
        r = self.repo()
        r.write("p.yaml", cont_yaml("pulled", image=image))
        r.commit()
        res = self.reconcile(r)
        self.assertIn("  + Container/pulled     create", res.out)
        self.assertEqual(self.ids()["pulled"][1], "running")
        self.assertEqual(self.inspect("gitward-pulled")["ImageName"], image)
        self.assertEqual(subprocess.run([*self.pm.base, "image", "exists", image], env=self.pm.env).returncode, 0)
        pulls = REGISTRY.text().count("/v2/gw/pulled/manifests/1")
        self.assertGreater(pulls, before, "the registry saw no manifest request")
        # pull: always asks the registry again even though the image is here
        r.write("p.yaml", cont_yaml("pulled", image=image, extra="  pull: always\n"))
        r.commit()
        self.reconcile(r)
        self.assertGreater(REGISTRY.text().count("/v2/gw/pulled/manifests/1"), pulls)
        self.assertEqual(self.ids()["pulled"][1], "running")
        # a tag the registry does not have: the registry's own answer, the rest converges
        r.write("q.yaml", cont_yaml("missing", image=image.replace(":1", ":404")))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn(f"Container/missing: create failed: pull {image.replace(':1', ':404')}: ", res.err)
        self.assertIn("manifest unknown", res.err)
        self.assertEqual(sorted(self.ids()), ["pulled"])

    def test_depends_on_orders_create_and_delete_on_the_engine(self):
        r = self.repo()
        # names sort against the dependency: without dependsOn "app" would go first
        r.write("app.yaml", cont_yaml("app", extra="  dependsOn: [zdb]\n"))
        # app's sleep, pid 1, ignores SIGTERM: its stop takes its whole stopTimeout (1 s); zdb's
        # stopSignal KILL ends it at once, so deleting both together would remove zdb first.
        # Its probe must pass: a timeout a loaded machine's `podman exec` cannot trip
        # (the interval, at least the timeout, only sizes the wait at the start)
        r.write("db.yaml", cont_yaml("zdb", extra="  stopSignal: KILL\n"
                                                 "  healthCheck: {exec: {command: [/bin/true]}, interval: 30s, "
                                                 "timeout: 30s}\n"))
        r.commit()
        since = int(time.time()) - 1
        self.reconcile(r)
        app, db = self.inspect("gitward-app"), self.inspect("gitward-zdb")
        self.assertEqual(app["Config"]["Labels"]["gitward.depends-on"], "zdb")
        # the dependency was started (and probed healthy) before the dependent was even created
        self.assertLess(ns(db["State"]["StartedAt"]), ns(app["Created"]))
        # deletion goes the other way: the dependent is removed before what it names
        r.remove("app.yaml")
        r.remove("db.yaml")
        r.commit()
        res = self.reconcile(r, "--allow-empty")
        self.assertIn("  - Container/app        delete", res.out)
        self.assertIn("  - Container/zdb        delete", res.out)
        self.assertEqual(self.ids(), {})
        out = self.pm.podman("events", "--since", str(since), "--stream=false", "--filter", "event=remove",
                             "--filter", "type=container", "--format", "json")
        removed = [json.loads(line) for line in out.splitlines() if line.strip()]
        order = [e["Name"] for e in sorted(removed, key=lambda e: ns(e["Time"]))
                 if e["Name"] in ("gitward-app", "gitward-zdb")]
        self.assertEqual(order, ["gitward-app", "gitward-zdb"])

    def test_two_state_dirs_on_one_engine_never_see_or_touch_each_other(self):
        other = os.path.join(self.tmp, "state-two")
        self.states.append(other)
        r1, r2 = self.repo("one"), self.repo("two")
        r1.write("a.yaml", cont_yaml("alpha"))
        r1.commit()
        r2.write("b.yaml", cont_yaml("beta"))
        r2.commit()
        self.reconcile(r1)
        self.reconcile(r2, state=other)
        mine, theirs = self.ids(), self.ids(other)
        self.assertEqual(sorted(mine), ["alpha"])
        self.assertEqual(sorted(theirs), ["beta"])
        self.assertEqual(self.inspect("gitward-alpha")["Config"]["Labels"]["gitward.state-dir"], self.state)
        self.assertEqual(self.inspect("gitward-beta")["Config"]["Labels"]["gitward.state-dir"], other)
        self.assertEqual(sorted(self.status()), ["alpha"])
        self.assertEqual(sorted(self.status(other)), ["beta"])
        # each sees only its own: a second pass of each changes nothing
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 1 unchanged.",
                      self.reconcile(r1).out)
        self.assertEqual(self.ids(other), theirs)
        # the second one asking for the first one's name: a clash, never a takeover
        r2.write("a.yaml", cont_yaml("alpha"))
        r2.commit()
        res = self.reconcile(r2, state=other, expect=1)
        self.assertIn("a container named gitward-alpha exists and is not managed by this gitward", res.err)
        self.assertEqual(self.ids(), mine)
        # the second one pruning everything removes its own and nothing of the first
        r2.remove("a.yaml")
        r2.remove("b.yaml")
        r2.commit()
        res = self.reconcile(r2, "--allow-empty", state=other)
        # alpha is only its own failed attempt, never created: forgotten, the engine untouched
        self.assertIn("  - Container/alpha      delete", res.out)
        self.assertIn("  - Container/beta       delete", res.out)
        self.assertEqual(self.ids(other), {})
        self.assertEqual(self.ids(), mine)
        self.assertEqual(mine["alpha"][1], "running")

    @staticmethod
    def kill_httpd(port):
        """SIGKILL the container's httpd serving port (seen from the host)."""
        mark = f"127.0.0.1:{port}".encode()
        killed = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"httpd") for a in argv[:1]) and mark in argv:
                os.kill(int(pid), 9)
                killed += 1
        assert killed == 1, f"{killed} httpd processes serve {mark}"

    def test_a_failing_health_check_replaces_the_container_after_retries(self):
        r = self.repo()
        # healthy while the container's httpd answers on the host network
        # (probed from the host: no `podman exec`, which under runc in a
        # chroot runs in the host's root); each new container starts its own.
        # A killed httpd refuses at once, so the failures are counted whatever
        # the timeout; a generous one (and an interval that sizes the wait for
        # a new container's httpd to 70 s) keeps a loaded machine from failing
        # a probe that should pass
        port = gitservers.free_port()
        cmd = json.dumps(f"echo ok > /tmp/index.html; httpd -f -p 127.0.0.1:{port} -h /tmp & exec sleep 300")
        r.write("h.yaml", f"{HDR}kind: Container\nmetadata: {{name: sick}}\nspec:\n  image: {podman_env.IMAGE}\n"
                          f"  command: [/bin/sh, -c, {cmd}]\n  network: host\n  stopTimeout: 1s\n"
                          f"  healthCheck: {{http: {{url: \"http://127.0.0.1:{port}/index.html\"}}, interval: 30s, "
                          "timeout: 10s, retries: 2}\n")
        r.commit()
        self.reconcile(r)
        first = self.ids()["sick"][0]
        self.assertEqual(self.status()["sick"]["health"], "healthy")
        self.kill_httpd(port)
        # one failed probe of two: counted, not yet unhealthy, nothing replaced
        res = self.reconcile(r)
        self.assertIn("1 unchanged", res.out)
        self.assertIn("health check failed (1 of 2)", res.err)
        self.assertEqual(self.ids()["sick"][0], first)
        self.assertEqual(self.status()["sick"]["health"], "unknown")
        # the second in a row: unhealthy, and the container is replaced
        res = self.reconcile(r)
        self.assertIn("health check failed (2 of 2, unhealthy)", res.err)
        self.assertIn("  ! Container/sick       restart  unhealthy: ", res.out)
        new_id, new_state = self.ids()["sick"]
        self.assertNotEqual(new_id, first)
        self.assertEqual(new_state, "running")
        st = self.status()["sick"]
        self.assertEqual((st["health"], st["restarts"], st["state"]), ("healthy", 1, "running"))
        self.assertTrue(new_id.startswith(st["id"][:12]))
        # the replacement is healthy: the next pass keeps it
        res = self.reconcile(r)
        self.assertIn("1 unchanged", res.out)
        self.assertEqual(self.ids()["sick"][0], new_id)


if __name__ == "__main__":
    unittest.main()
