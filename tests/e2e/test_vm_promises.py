"""VM promises with real QEMU (TCG) booting a one-sector disk (vm_disk.py):
boot from a disk image alone, `network: none` leaves the guest without a NIC,
stop = ACPI power button (the guest sees it and powers off) then `quit` after
stopTimeout for a guest that ignores it, then SIGKILL for a QEMU that does not
quit; a guest that powers off is "stopped" and restarted only per policy; a
pending record left by a crash is adopted or, with nothing behind it,
started again. The guest boots in well under a second, so each test starts
its own QEMU."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import vm_disk
from gwtest import CI, HDR, TempDirTest, pid_alive, proc_yaml, run, wait_for

DISKS = {}
TMP = None


def setUpModule():
    global TMP
    missing = [b for b in ("qemu-system-x86_64", "as", "ld") if not shutil.which(b)]
    if missing:
        if CI:
            raise RuntimeError(f"{', '.join(missing)} missing (contrib/install-deps.sh test installs them)")
        raise unittest.SkipTest(f"{', '.join(missing)} not installed")
    TMP = tempfile.mkdtemp(prefix="gw-vm-disks-")
    os.chmod(TMP, 0o755)
    DISKS["acpi"] = vm_disk.build(TMP, True)
    DISKS["deaf"] = vm_disk.build(TMP, False)


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def qmp(sock, command, arguments=None):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)  # QEMU under TCG on a loaded machine
    s.connect(sock)
    f = s.makefile("rw")
    json.loads(f.readline())
    for cmd, args in (("qmp_capabilities", None), (command, arguments)):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "event" not in reply:
                break
    s.close()
    return reply["return"]


def argv_of(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


class VMPromises(TempDirTest):
    def tearDown(self):
        for pid in self.pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        super().tearDown()

    def pids(self):
        """name -> the QEMU pid of each VM record (its pidfile while the record is pending)."""
        d = os.path.join(self.state, "run", "vm")
        out = {}
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.endswith(".json"):
                    with open(os.path.join(d, f)) as fh:
                        pid = json.load(fh)["pid"]
                    if not pid and os.path.exists(os.path.join(d, f[:-5] + ".pid")):
                        with open(os.path.join(d, f[:-5] + ".pid")) as fh:
                            pid = int(fh.read().strip() or 0)
                    if pid:
                        out[f[:-5]] = pid
        return out

    def disk_vm(self, name, disk="acpi", stop="2s", extra=""):
        """A VM booting its own copy of a disk (QEMU locks an image to one VM)."""
        path = os.path.join(self.tmp, f"{name}.img")
        shutil.copy(DISKS[disk], path)
        return (f"{HDR}kind: VM\nmetadata: {{name: {name}}}\nspec:\n  memory: 64Mi\n  cpus: 1\n"
                f"  disk: {path}\n  network: none\n  accel: tcg\n  stopTimeout: {stop}\n{extra}")

    def path(self, name, ext):
        return os.path.join(self.state, "run", "vm", f"{name}.{ext}")

    def console(self, name):
        try:
            with open(os.path.join(self.state, "logs", f"vm-{name}.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def booted(self, name):
        wait_for(lambda: vm_disk.BOOTED in self.console(name), timeout=300, what=f"{name} to boot from its disk")

    def reconcile(self, repo, *args, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", *args, timeout=300)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return {x["name"]: x for x in res.json()["resources"]}

    def remove_all(self, repo):
        """Take every VM out of Git (a process stays, so the commit is not empty)."""
        for f in os.listdir(repo.path):
            if f.endswith(".yaml"):
                repo.remove(f)
        repo.write("keep.yaml", proc_yaml("keep"))
        repo.commit()

    def test_boots_from_a_disk_image_alone_with_no_nic_under_network_none(self):
        r = self.repo()
        r.write("vm.yaml", self.disk_vm("disk"))
        r.commit()
        res = self.reconcile(r)
        self.assertIn("  + VM/disk              create", res.out)
        self.booted("disk")
        pid = self.pids()["disk"]
        argv = argv_of(pid)
        self.assertNotIn("-kernel", argv)
        self.assertEqual(argv[argv.index("-drive") + 1], f"file={self.tmp}/disk.img,if=virtio,format=raw")
        self.assertEqual(argv[argv.index("-nic") + 1], "none")
        self.assertNotIn("-netdev", argv)
        sock = self.path("disk", "qmp")
        self.assertEqual(qmp(sock, "query-status")["status"], "running")
        # the guest's PCI bus: the virtio disk, and no network controller at all
        classes = [d["class_info"]["class"] for bus in qmp(sock, "query-pci") for d in bus["devices"]]
        self.assertNotIn(0x0200, classes, "an Ethernet controller is in a network: none guest")
        self.assertEqual([c for c in classes if c >> 8 == 0x02], [])
        vendors = [(d["id"]["vendor"], d["id"]["device"]) for bus in qmp(sock, "query-pci") for d in bus["devices"]]
        self.assertIn((0x1AF4, 0x1001), vendors, "the virtio block device carrying the disk")
        self.assertEqual(qmp(sock, "human-monitor-command", {"command-line": "info network"}).strip(), "")
        st = self.status()["disk"]
        self.assertEqual((st["state"], st["pid"]), ("running", pid))

    def test_stop_presses_the_power_button_and_the_guest_powers_off(self):
        r = self.repo()
        r.write("vm.yaml", self.disk_vm("acpi", stop="10m"))
        r.commit()
        self.reconcile(r)
        self.booted("acpi")
        pid = self.pids()["acpi"]
        self.remove_all(r)
        t0 = time.monotonic()
        res = self.reconcile(r)
        took = time.monotonic() - t0
        self.assertIn("  - VM/acpi              delete", res.out)
        self.assertIn(vm_disk.BUTTON, self.console("acpi"), "the guest never saw the power button")
        # far under the 10-minute stopTimeout, with a loaded machine's margin
        self.assertLess(took, 120, "the guest powered off at once: no wait for the 10 m stopTimeout")
        self.assertNotIn("did not quit", res.err)
        wait_for(lambda: not pid_alive(pid), timeout=60, what="QEMU to quit")
        for ext in ("json", "pid", "qmp"):
            self.assertFalse(os.path.exists(self.path("acpi", ext)), ext)

    def test_a_guest_that_ignores_the_button_is_quit_after_stop_timeout(self):
        r = self.repo()
        r.write("vm.yaml", self.disk_vm("deaf", disk="deaf", stop="2s"))
        r.commit()
        self.reconcile(r)
        self.booted("deaf")
        pid = self.pids()["deaf"]
        self.remove_all(r)
        t0 = time.monotonic()
        res = self.reconcile(r)
        took = time.monotonic() - t0
        self.assertIn("  - VM/deaf              delete", res.out)
        self.assertGreaterEqual(took, 2.0, "quit before stopTimeout ran out")
        self.assertLess(took, 120)  # bounded: 2 s, then quit over QMP, on a loaded machine
        self.assertNotIn(vm_disk.BUTTON, self.console("deaf"))
        self.assertNotIn("did not quit", res.err, "quit over QMP was enough: no SIGKILL")
        wait_for(lambda: not pid_alive(pid), timeout=60, what="QEMU to quit")
        self.assertEqual(self.pids(), {})

    def test_a_qemu_that_does_not_quit_is_killed(self):
        r = self.repo()
        r.write("vm.yaml", self.disk_vm("stuck", disk="deaf", stop="1s"))
        r.commit()
        self.reconcile(r)
        self.booted("stuck")
        pid = self.pids()["stuck"]
        os.kill(pid, signal.SIGSTOP)  # answers nothing: no QMP greeting, SIGTERM stays pending
        try:
            self.remove_all(r)
            res = self.reconcile(r)
        finally:
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)
        self.assertIn("  - VM/stuck             delete", res.out)
        self.assertIn(f"QEMU pid {pid} did not quit: killing", res.err)
        wait_for(lambda: not pid_alive(pid), timeout=60, what="QEMU to be killed")
        self.assertEqual(self.pids(), {})
        self.assertNotIn("stuck", self.status())

    def test_a_guest_that_powers_off_is_stopped_and_restarted_only_per_policy(self):
        r = self.repo()
        r.write("a.yaml", self.disk_vm("again"))
        r.write("b.yaml", self.disk_vm("calm", extra="  restart: on-failure\n"))
        r.commit()
        self.reconcile(r)
        self.booted("again")
        self.booted("calm")
        first = self.pids()
        for name in ("again", "calm"):  # the power button, pressed from outside gitward
            qmp(self.path(name, "qmp"), "system_powerdown")
        for name in ("again", "calm"):
            wait_for(lambda: qmp(self.path(name, "qmp"), "query-status")["status"] == "shutdown", timeout=120,
                     what=f"{name} to power off")
            self.assertIn(vm_disk.BUTTON, self.console(name))
        res = self.reconcile(r)
        self.assertIn("  ! VM/again             restart  the guest powered off", res.out)
        self.assertNotIn("VM/calm", res.out)
        self.assertIn("1 to restart, 1 unchanged", res.out)
        after = self.pids()
        self.assertNotEqual(after["again"], first["again"])
        self.assertFalse(pid_alive(first["again"]))
        self.assertEqual(after["calm"], first["calm"], "a powered-off guest under on-failure is left off")
        self.assertTrue(pid_alive(first["calm"]))
        st = self.status()
        self.assertEqual((st["again"]["state"], st["again"]["restarts"]), ("running", 1))
        self.assertEqual((st["calm"]["state"], st["calm"]["detail"]), ("stopped", "the guest powered off"))
        self.booted("again")
        with open(os.path.join(self.state, "logs", "vm-again.log.1"), errors="replace") as f:
            self.assertIn(vm_disk.BUTTON, f.read(), "the powered-off boot's console is kept")

    def test_a_pending_record_is_adopted_or_started_again(self):
        r = self.repo()
        r.write("vm.yaml", self.disk_vm("pend", disk="deaf", stop="1s"))
        r.commit()
        self.reconcile(r)
        self.booted("pend")
        rec_path = self.path("pend", "json")
        with open(rec_path) as f:
            rec = json.load(f)
        qemu = rec["pid"]
        self.assertGreater(qemu, 1)

        def leave_pending():  # what a gitward killed between launch and "running" leaves
            with open(rec_path) as f:
                cur = json.load(f)
            cur["pid"], cur["start_time"] = 0, 0
            with open(rec_path, "w") as f:
                json.dump(cur, f)
            os.remove(os.path.join(self.state, "state.json"))

        # QEMU came up and wrote its pidfile: the next gitward adopts it, nothing restarted
        leave_pending()
        res = self.reconcile(r)
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 1 unchanged.", res.out)
        self.assertTrue(pid_alive(qemu))
        st = self.status()["pend"]
        self.assertEqual((st["state"], st["pid"]), ("running", qemu))

        # nothing behind the record (QEMU gone), and its pidfile names someone else's process:
        # that process is never signalled, and the VM is started again
        other = subprocess.Popen(["/bin/sleep", "300"])
        try:
            os.kill(qemu, signal.SIGKILL)
            wait_for(lambda: not pid_alive(qemu), what="QEMU to die")
            leave_pending()
            with open(self.path("pend", "pid"), "w") as f:
                f.write(f"{other.pid}\n")
            res = self.reconcile(r)
            self.assertIn("  ! VM/pend              restart  QEMU never started", res.out)
            self.assertIsNone(other.poll(), "a process the pidfile named was signalled")
        finally:
            other.kill()
            other.wait(timeout=10)
        again = self.pids()["pend"]
        self.assertNotIn(again, (qemu, other.pid))
        self.assertTrue(pid_alive(again))
        with open(rec_path) as f:
            self.assertEqual(json.load(f)["pid"], again)
        self.booted("pend")


if __name__ == "__main__":
    unittest.main()
