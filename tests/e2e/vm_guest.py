"""A tiny guest for the VM tests, built from Debian packages: the kernel of
the package behind linux-image-amd64 (`apt-get download`, `dpkg -x`) and a
busybox initramfs that loads the virtio-net modules, configures the user
network and serves HTTP on port 80. Built once into a cache directory."""
import os
import shutil
import stat
import subprocess
import tempfile

CACHE = os.environ.get("GITWARD_TEST_CACHE", "/var/cache/gitward-test")
MODULES = ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "failover",
           "net_failover", "virtio_net"]
APPLETS = ["sh", "mount", "insmod", "ip", "httpd", "sleep", "echo", "cat", "poweroff", "halt", "mkdir", "ls"]

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /www
echo "hello from the guest" > /www/index.html
httpd -p 80 -h /www
echo GUEST-READY
while :; do sleep 3600; done
"""


def package_name():
    r = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
    if r.returncode != 0 or "Depends:" not in r.stdout:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
        r = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                           check=True)
    out = r.stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1]
    raise RuntimeError("cannot find the package behind linux-image-amd64")


def _cpio_newc(entries, out_path):
    """Write a newc cpio archive of (name, mode, data|None for dirs, link target)."""
    ino = 1
    with open(out_path, "wb") as f:
        def put(name, mode, data=b""):
            nonlocal ino
            nb = name.encode() + b"\0"
            hdr = "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X" % (
                ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
            ino += 1
            f.write(hdr.encode() + nb)
            f.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
            f.write(data)
            f.write(b"\0" * ((4 - len(data) % 4) % 4))
        for name, mode, data in entries:
            put(name, mode, data)
        put("TRAILER!!!", 0)


def build():
    """Return (kernel, initrd) paths, building them once."""
    pkg = package_name()
    out = os.path.join(CACHE, pkg)
    kernel, initrd = os.path.join(out, "vmlinuz"), os.path.join(out, "initrd.img")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="gw-guest-")
    try:
        subprocess.run(["apt-get", "download", pkg], cwd=work, check=True, capture_output=True, timeout=900)
        deb = [f for f in os.listdir(work) if f.endswith(".deb")][0]
        x = os.path.join(work, "x")
        subprocess.run(["dpkg", "-x", os.path.join(work, deb), x], check=True, timeout=600)
        vmlinuz = [f for f in os.listdir(os.path.join(x, "boot")) if f.startswith("vmlinuz")][0]
        kmods = {}
        for root, _, files in os.walk(os.path.join(x, "lib", "modules")):
            for fn in files:
                if fn.endswith(".ko") and fn[:-3] in MODULES:
                    kmods[fn[:-3]] = os.path.join(root, fn)
        missing = [m for m in MODULES if m not in kmods]
        if missing:
            raise RuntimeError(f"modules not found in {pkg}: {missing}")
        with open("/bin/busybox", "rb") as f:
            bb = f.read()
        entries = [(d, stat.S_IFDIR | 0o755, b"") for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules", "www",
                                                           "tmp")]
        entries.append(("bin/busybox", stat.S_IFREG | 0o755, bb))
        for a in APPLETS:
            entries.append((f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox"))
        for m in MODULES:
            with open(kmods[m], "rb") as f:
                entries.append((f"lib/modules/{m}.ko", stat.S_IFREG | 0o644, f.read()))
        entries.append(("init", stat.S_IFREG | 0o755, INIT.format(modules=" ".join(MODULES)).encode()))
        tmp_initrd = initrd + ".tmp"
        _cpio_newc(entries, tmp_initrd)
        shutil.copy(os.path.join(x, "boot", vmlinuz), kernel + ".tmp")
        os.rename(kernel + ".tmp", kernel)
        os.rename(tmp_initrd, initrd)
        return kernel, initrd
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(build())
