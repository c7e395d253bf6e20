"""End to end: `gitward down` stops and removes every resource the state dir
records, dependents first, under the state dir's lock, and leaves the state
dir usable for the next `reconcile`."""
import json
import os
import re
import shutil
import signal
import subprocess
import unittest

import podman_env
import vm_guest
from gwtest import CI, GITWARD, HDR, TempDirTest, agent_port, pid_alive, proc_yaml, records, run, stop, wait_for


class DownProcesses(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def chain(self):
        """c dependsOn b, b dependsOn a"""
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        r.write("b.yaml", proc_yaml("b", extra="  dependsOn: [a]\n"))
        r.write("c.yaml", proc_yaml("c", extra="  dependsOn: [b]\n"))
        r.commit()
        return r

    def reconcile(self, r):
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", timeout=300)
        self.assertEqual(res.rc, 0, res)
        return res

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def test_down_removes_dependents_first_and_reconcile_recreates(self):
        r = self.chain()
        self.reconcile(r)
        pids = {n: rec["pid"] for n, rec in records(self.state).items()}
        self.assertEqual(sorted(pids), ["a", "b", "c"])
        self.assertTrue(all(pid_alive(p) for p in pids.values()))

        res = run("down", "--state-dir", self.state, timeout=300)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Removed 3 of 3 resources.", res.out)
        for n, p in pids.items():
            wait_for(lambda p=p: not pid_alive(p), what=f"Process/{n} (pid {p}) gone")
        self.assertEqual(records(self.state), {})
        # dependents first: c's deletion ends before b's starts, b's before a's
        lines = res.err.splitlines()

        def at(key, what):
            hits = [i for i, l in enumerate(lines) if f"{key}: {what}" in l]
            self.assertEqual(len(hits), 1, (key, what, res))
            return hits[0]
        self.assertLess(at("Process/c", "deleted"), at("Process/b", "delete: stopping"), res)
        self.assertLess(at("Process/b", "deleted"), at("Process/a", "delete: stopping"), res)

        st = self.status()
        self.assertEqual(st["resources"], [], st)
        self.assertEqual(st["last_attempt_result"], "down", st)
        self.assertIsNone(st.get("commit"), st)
        text = run("status", "--state-dir", self.state)
        self.assertIn("(down)", text.out, text)

        # the state dir stays usable: the same repo brings it all back
        res = self.reconcile(r)
        self.assertIn("3 to create", res.out, res)
        again = {n: rec["pid"] for n, rec in records(self.state).items()}
        self.assertEqual(sorted(again), ["a", "b", "c"])
        self.assertTrue(all(pid_alive(p) for p in again.values()))
        self.assertEqual(sorted(x["name"] for x in self.status()["resources"]), ["a", "b", "c"])

    def test_down_beside_an_agent_refuses_naming_its_pid(self):
        r = self.chain()
        self.reconcile(r)
        pids = {n: rec["pid"] for n, rec in records(self.state).items()}
        log = os.path.join(self.tmp, "agent.log")
        with open(log, "w") as f:
            a = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", "127.0.0.1:0"], stdout=f, stderr=subprocess.STDOUT)
        self.agents.append(a)
        agent_port(a, log)  # it holds the lock from before it listens
        res = run("down", "--state-dir", self.state, timeout=300)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"is in use by another gitward (pid {a.pid})", res.err, res)
        self.assertEqual({n: rec["pid"] for n, rec in records(self.state).items()}, pids)
        self.assertTrue(all(pid_alive(p) for p in pids.values()))
        self.assertEqual(len(self.status()["resources"]), 3)

        # the agent gone (its workloads stay), down takes the node down; an
        # agent on the same state dir then brings it all back
        stop(a)
        self.assertEqual(a.returncode, 0)
        res = run("down", "--state-dir", self.state, timeout=300)
        self.assertEqual(res.rc, 0, res)
        for p in pids.values():
            wait_for(lambda p=p: not pid_alive(p), what=f"pid {p} gone")
        with open(log, "w") as f:
            a = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", "127.0.0.1:0"], stdout=f, stderr=subprocess.STDOUT)
        self.agents.append(a)

        def all_back():
            recs = records(self.state)
            return sorted(recs) == ["a", "b", "c"] and all(pid_alive(x["pid"]) for x in recs.values())
        wait_for(all_back, what="the agent recreating a, b and c")
        self.assertFalse(set(x["pid"] for x in records(self.state).values()) & set(pids.values()))

    def test_down_on_a_missing_state_dir_fails_clearly(self):
        missing = os.path.join(self.tmp, "nowhere")
        res = run("down", "--state-dir", missing)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"gitward: error: {missing}: no such state dir", res.err, res)
        self.assertFalse(os.path.exists(missing))

    def test_down_on_an_empty_node_has_nothing_to_remove(self):
        r = self.repo()
        r.write("README", "nothing for gitward\n")
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", timeout=300)
        self.assertEqual(res.rc, 0, res)
        res = run("down", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.out, "Nothing to remove.\n")
        # and again: down after down
        res = run("down", "--state-dir", self.state)
        self.assertEqual((res.rc, res.out), (0, "Nothing to remove.\n"), res)

    def test_down_help_man_page_and_completion(self):
        res = run("down", "--help")
        self.assertEqual(res.rc, 0, res)
        self.assertIn("usage: gitward down", res.out)
        self.assertIn("dependents first", res.out)
        self.assertIn("  down [--state-dir DIR]", run("--help").out)
        contrib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../contrib")
        cp = subprocess.run(["groff", "-ww", "-man", "-Tutf8", os.path.join(contrib, "man/gitward.1")],
                            capture_output=True, timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"})
        self.assertEqual((cp.returncode, cp.stderr.decode()), (0, ""))
        page = re.sub(r".\x08", "", cp.stdout.decode()).replace("\u2010", "-")
        self.assertRegex(page, r"gitward\s+down\s+\[--state-dir")
        opts = re.findall(r"^  (--[a-z-]+)", res.out, re.M)
        self.assertIn("--container-socket", opts)
        with open(os.path.join(contrib, "completion/gitward.bash")) as f:
            completion = f.read()
        self.assertRegex(completion, r'commands="[^"]*\bdown\b')
        for opt in opts:
            self.assertIn(opt, page, opt)
            self.assertRegex(completion, r"\n\tdown\) [^\n]*" + re.escape(opt) + r"\b", opt)
        # a usage error is one, not a runtime error
        res = run("down", "--state-dir", self.state, "--bogus")
        self.assertEqual(res.rc, 64, res)
        self.assertIn('unknown option "--bogus"', res.err)


class DownExternal(TempDirTest):
    """The contrib files plugin, reached through --plugin-dir as reconcile reaches it."""

    def test_down_removes_an_external_resource_after_its_dependent_process(self):
        plugin = os.path.join(os.path.dirname(os.path.dirname(GITWARD)), "contrib", "plugins", "files")
        self.assertTrue(os.access(plugin, os.X_OK), f"the files plugin is built at {plugin}")
        plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(plugins)
        shutil.copy(plugin, os.path.join(plugins, "files"))
        out = os.path.join(self.tmp, "out", "motd")
        r = self.repo()
        config = json.dumps({"files": [{"path": out, "content": "hello\n"}]})
        r.write("motd.yaml", f"{HDR}kind: External\nmetadata: {{name: motd}}\nspec:\n  plugin: files\n"
                f"  config: {config}\n")
        r.write("web.yaml", proc_yaml("web", extra="  dependsOn: [motd]\n"))
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--plugin-dir", plugins,
                  timeout=300)
        self.assertEqual(res.rc, 0, res)
        self.assertTrue(os.path.exists(out))
        pid = records(self.state)["web"]["pid"]

        res = run("down", "--state-dir", self.state, "--plugin-dir", plugins, timeout=300)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Removed 2 of 2 resources.", res.out)
        self.assertFalse(os.path.exists(out))
        wait_for(lambda: not pid_alive(pid), what=f"Process/web (pid {pid}) gone")
        lines = res.err.splitlines()
        web = [i for i, l in enumerate(lines) if "Process/web: deleted" in l]
        motd = [i for i, l in enumerate(lines) if "External/motd: delete" in l]
        self.assertTrue(web and motd and web[0] < motd[0], res)
        st = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(st.json()["resources"], [], st)


class DownContainer(TempDirTest):
    """A real Podman API service (tests/e2e/podman_env.py)."""

    @classmethod
    def setUpClass(cls):
        podman_env.setup_module()

    @classmethod
    def tearDownClass(cls):
        podman_env.teardown_module()

    def tearDown(self):
        pm = podman_env.PODMAN
        ids = pm.podman("ps", "-a", "-q", "--filter", f"label=gitward.state-dir={self.state}", check=False)
        if ids:
            pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        super().tearDown()

    def engine_names(self):
        out = podman_env.PODMAN.podman("ps", "-a", "--filter", f"label=gitward.state-dir={self.state}",
                                       "--format", "json")
        return sorted(c["Labels"]["gitward.name"] for c in json.loads(out or "[]"))

    def test_down_removes_the_container_from_the_engine(self):
        sock = podman_env.PODMAN.socket
        r = self.repo()
        r.write("web.yaml", f"{HDR}kind: Container\nmetadata: {{name: web}}\nspec:\n  image: {podman_env.IMAGE}\n"
                "  command: [\"/bin/sleep\", \"300\"]\n  network: none\n  stopTimeout: 1s\n")
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--container-socket",
                  sock, timeout=300)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.engine_names(), ["web"])

        # the engine out of reach: nothing removed, exit 1 naming what is left
        res = run("down", "--state-dir", self.state, "--container-socket", os.path.join(self.tmp, "no.sock"),
                  timeout=300)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("gitward: error: Container/web could not be removed", res.err, res)
        self.assertEqual(self.engine_names(), ["web"])

        res = run("down", "--state-dir", self.state, "--container-socket", sock, timeout=300)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Removed 1 of 1 resources.", res.out)
        self.assertEqual(self.engine_names(), [])
        st = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(st.json()["resources"], [], st)


class DownVM(TempDirTest):
    """Real QEMU (TCG) booting tests/e2e/vm_guest.py's guest."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox"):
            if CI:
                raise RuntimeError("qemu-system-x86_64 or busybox missing (contrib/install-deps.sh test)")
            raise unittest.SkipTest("QEMU not installed")
        cls.guest = vm_guest.build()

    def qemu_pids(self):
        d = os.path.join(self.state, "run", "vm")
        out = {}
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    out[f[:-5]] = json.load(fh)["pid"]
        return out

    def tearDown(self):
        for pid in self.qemu_pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        super().tearDown()

    def test_down_stops_the_vm(self):
        kernel, initrd = self.guest
        r = self.repo()
        r.write("vm.yaml", f"{HDR}kind: VM\nmetadata: {{name: guest}}\nspec:\n  memory: 256Mi\n  cpus: 1\n"
                f"  kernel: {kernel}\n  initrd: {initrd}\n  cmdline: \"console=ttyS0 quiet panic=-1\"\n"
                "  network: none\n  accel: tcg\n  stopTimeout: 2s\n")
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", timeout=600)
        self.assertEqual(res.rc, 0, res)
        pid = self.qemu_pids()["guest"]
        self.assertTrue(pid_alive(pid))

        res = run("down", "--state-dir", self.state, timeout=600)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Removed 1 of 1 resources.", res.out)
        wait_for(lambda: not pid_alive(pid), what=f"QEMU (pid {pid}) gone")
        self.assertEqual(self.qemu_pids(), {})
        st = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(st.json()["resources"], [], st)
