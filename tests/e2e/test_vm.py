"""End to end with real QEMU (TCG) and a tiny Debian-kernel guest that serves
HTTP: create, QMP, forwards, keep, adopt, replace, restart, remove, faults."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest
import urllib.request

import vm_guest
from gwtest import GITWARD, free_port, CI, HDR, TempDirTest, pid_alive, proc_yaml, records, run, wait_for

GUEST = None


def setUpModule():
    global GUEST
    if not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox"):
        if CI:
            raise RuntimeError("qemu-system-x86_64 or busybox missing (contrib/install-deps.sh test installs them)")
        raise unittest.SkipTest("QEMU not installed")
    GUEST = vm_guest.build()



def qmp(sock, command):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)  # QEMU under TCG on a loaded machine
    s.connect(sock)
    f = s.makefile("rw")
    json.loads(f.readline())
    for cmd in ("qmp_capabilities", command):
        f.write(json.dumps({"execute": cmd}) + "\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "event" not in msg:
                break
    s.close()
    return msg["return"]


def vm_yaml(name, port, memory="256Mi", extra="", health=True):
    kernel, initrd = GUEST
    # a TCG boot on a loaded machine: the start waits up to interval x retries
    # + timeout (capped at 5 minutes), and a probe through the user network's
    # forward gets 10 s, so the last look of a pass never finds a healthy
    # guest "unknown"
    check = (f"  healthCheck: {{http: {{url: \"http://127.0.0.1:{port}/\"}}, interval: 10s, timeout: 10s, "
             "retries: 30}\n" if health else "")
    return (f"{HDR}kind: VM\nmetadata: {{name: {name}}}\nspec:\n  memory: {memory}\n  cpus: 1\n"
            f"  kernel: {kernel}\n  initrd: {initrd}\n  cmdline: \"console=ttyS0 quiet panic=-1\"\n"
            f"  network: user\n  forwards: [\"127.0.0.1:{port}:80/tcp\"]\n  accel: tcg\n  stopTimeout: 2s\n"
            f"{check}{extra}")


def vm_pids(state):
    d = os.path.join(state, "run", "vm")
    out = {}
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    out[f[:-5]] = json.load(fh)["pid"]
    return out


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


class VMs(TempDirTest):
    def tearDown(self):
        for pid in vm_pids(self.state).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        super().tearDown()

    def reconcile(self, repo, *args, expect=0, env=None):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", *args, timeout=600,
                  env=env)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        return {x["name"]: x for x in res.json()["resources"]}

    def test_lifecycle_create_keep_adopt_replace_restart_remove(self):
        port = free_port()
        r = self.repo()
        r.write("vm.yaml", vm_yaml("guest", port))
        r.commit()
        res = self.reconcile(r)
        self.assertIn("  + VM/guest             create", res.out)
        pid = vm_pids(self.state)["guest"]
        self.assertTrue(pid_alive(pid))
        sock = os.path.join(self.state, "run", "vm", "guest.qmp")
        self.assertEqual(qmp(sock, "query-status")["status"], "running")
        self.assertEqual(get(f"http://127.0.0.1:{port}/"), "hello from the guest\n")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        self.assertIn(b"tcg", argv)
        self.assertIn(b"gitward-guest", argv)
        st = self.status()["guest"]
        self.assertEqual((st["state"], st["health"], st["pid"]), ("running", "healthy", pid))
        with open(os.path.join(self.state, "logs", "vm-guest.log"), errors="replace") as f:
            self.assertIn("GUEST-READY", f.read())

        # a second pass keeps the same QEMU
        res = self.reconcile(r)
        self.assertIn("1 unchanged", res.out)
        self.assertEqual(vm_pids(self.state)["guest"], pid)

        # a new gitward process adopts it through the record and QMP
        os.remove(os.path.join(self.state, "state.json"))
        res = self.reconcile(r)
        self.assertIn("1 unchanged", res.out)
        self.assertEqual(vm_pids(self.state)["guest"], pid)

        # a memory change replaces it
        r.write("vm.yaml", vm_yaml("guest", port, memory="320Mi"))
        r.commit()
        res = self.reconcile(r)
        self.assertIn('  ~ VM/guest             update  memory: "256Mi" -> "320Mi"', res.out)
        new = vm_pids(self.state)["guest"]
        self.assertNotEqual(new, pid)
        self.assertFalse(pid_alive(pid))
        self.assertEqual(get(f"http://127.0.0.1:{port}/"), "hello from the guest\n")
        with open(f"/proc/{new}/cmdline", "rb") as f:
            self.assertIn(b"320", f.read().split(b"\0"))

        # QEMU killed: restarted
        os.kill(new, signal.SIGKILL)
        wait_for(lambda: not pid_alive(new), what="QEMU to die")
        res = self.reconcile(r)
        self.assertIn("  ! VM/guest             restart  QEMU exited", res.out)
        again = vm_pids(self.state)["guest"]
        self.assertTrue(pid_alive(again))
        self.assertEqual(self.status()["guest"]["restarts"], 1)
        with open(os.path.join(self.state, "logs", "vm-guest.log.1"), errors="replace") as f:
            self.assertIn("GUEST-READY", f.read(), "the previous boot's console is kept")

        # removal stops it cleanly and forgets it
        r.remove("vm.yaml")
        r.write("p.yaml", proc_yaml("keep"))
        r.commit()
        t0 = time.monotonic()
        res = self.reconcile(r)
        self.assertIn("  - VM/guest             delete", res.out)
        wait_for(lambda: not pid_alive(again), timeout=60, what="QEMU to quit")
        self.assertEqual(vm_pids(self.state), {})
        self.assertFalse(os.path.exists(sock))
        # stopTimeout 2 s, then quit over QMP: bounded, with a loaded machine's margin
        self.assertLess(time.monotonic() - t0, 120)

    def test_agent_restarts_a_killed_qemu_at_once(self):
        r = self.repo()
        r.write("vm.yaml", vm_yaml("guest", free_port(), health=False))
        r.commit()
        log = open(os.path.join(self.tmp, "agent.log"), "w")
        agent = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--interval", "1h", "--listen", "off"], stdout=log, stderr=subprocess.STDOUT)
        try:
            pid = wait_for(lambda: (p := vm_pids(self.state).get("guest")) and pid_alive(p) and p, timeout=300,
                           what="QEMU started")
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            # the interval is an hour: within minutes, only the pidfd can have
            # woken the agent; the bound leaves a loaded machine its time
            again = wait_for(lambda: (p := vm_pids(self.state).get("guest")) and p != pid and pid_alive(p) and p,
                             timeout=300, step=0.05, what="QEMU restarted")
            took = time.monotonic() - t0
            print(f"\nQEMU killed -> running again: {took:.2f}s")
            self.assertNotEqual(again, pid)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=120)
            log.close()
        with open(os.path.join(self.tmp, "agent.log")) as f:
            text = f.read()
        self.assertIn("heal pass done", text)
        self.assertEqual(agent.returncode, 0, text[-3000:])

    def test_faults_stay_with_their_resource(self):
        bad_disk = os.path.join(self.tmp, "bad.qcow2")
        with open(bad_disk, "w") as f:
            f.write("not a qcow2 image\n")
        r = self.repo()
        r.write("a.yaml", f"{HDR}kind: VM\nmetadata: {{name: nokernel}}\nspec: {{kernel: /no/such/vmlinuz, "
                          "accel: tcg, network: none}\n")
        r.write("b.yaml", f"{HDR}kind: VM\nmetadata: {{name: baddisk}}\nspec: {{disk: {bad_disk}, accel: tcg, "
                          "network: none}\n")
        r.write("c.yaml", proc_yaml("fine"))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("VM/nokernel: create failed: kernel /no/such/vmlinuz: No such file or directory", res.err)
        self.assertIn("VM/baddisk: create failed: QEMU exited at start (status 1): ", res.err)
        self.assertIn("Image is not in qcow2 format", res.err)
        self.assertTrue(pid_alive(records(self.state)["fine"]["pid"]))
        st = self.status()
        self.assertEqual(st["nokernel"]["state"], "failed")
        self.assertEqual(st["baddisk"]["state"], "failed")
        self.assertEqual(st["fine"]["state"], "running")
        self.assertEqual(vm_pids(self.state), {})
        # no QEMU binary at all: a clear error for the VMs, the process stays
        res = self.reconcile(r, expect=1, env={"GITWARD_QEMU": "/nonexistent/qemu-system-x86_64"})
        self.assertIn("QEMU binary /nonexistent/qemu-system-x86_64: No such file or directory", res.err)
        self.assertTrue(pid_alive(records(self.state)["fine"]["pid"]))


if __name__ == "__main__":
    unittest.main()
