"""A short soak of the agent: hundreds of passes over 100 managed processes,
fetching from a real repository every pass. Memory and descriptors must stay
flat after warm-up (the long version is tests/bench/bench_soak.py)."""
import os
import re
import subprocess
import time
import unittest
import urllib.request

from gwtest import GITWARD, LISTEN_ANY, TempDirTest, agent_port, proc_yaml, stop, wait_for

N = 100
WARMUP = 60
PASSES = 300


def passes(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
    except OSError:
        return 0
    return sum(int(v) for v in re.findall(r'^gitward_sync_total\{result="[a-z_]+"\} (\d+)$', text, re.M))


def open_fds(pid):
    """Descriptors other than the pidfds the agent holds, one per running
    workload, dropped and made anew around every pass."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[pidfd]"
        except OSError:
            pass
    return n


def memory(pid, port):
    """(RSS KiB, private dirty KiB, open fds) of pid. The fd count is the least
    of samples taken every 20 ms while two passes end: a pass in flight holds
    a pipe or a scrape's socket, and the gap between two passes, where it
    holds neither, is sampled however long a pass takes on a loaded machine."""
    fds = []
    end = passes(port) + 2
    deadline = time.monotonic() + 300
    while True:  # bursts of 20: the count's own scrape has closed for most of a burst
        for _ in range(20):
            fds.append(open_fds(pid))
            time.sleep(0.02)
        if passes(port) >= end or time.monotonic() > deadline:
            break
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    # dirty pages, private or (while a fetch process forked from the agent
    # lives) shared with it: the sum does not depend on when the sample falls
    dirty = sum(int(re.search(rf"^{f}:\s+(\d+)", text, re.M).group(1)) for f in ("Private_Dirty", "Shared_Dirty"))
    return rss, dirty, min(fds)


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


class Soak(TempDirTest):
    def test_memory_and_fds_flat_over_hundreds_of_passes(self):
        r = self.repo()
        for i in range(N):
            r.write(f"apps/p{i:03}.yaml", proc_yaml(f"p{i:03}", ("/bin/sleep", "3600")))
        r.commit("100 processes")
        log_path = os.path.join(self.tmp, "agent.log")
        with open(log_path, "w") as log:
            agent = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--path", "apps", "--state-dir", self.state,
                                      "--interval", "100ms", "--listen", LISTEN_ANY],
                                     stdout=subprocess.DEVNULL, stderr=log)
        try:
            port = agent_port(agent, log_path)
            # ~45 s in all in a normal build; the bounds leave an ASan build on a
            # loaded machine (10x and more) its time
            wait_for(lambda: passes(port) >= WARMUP, timeout=600, step=0.2, what=f"{WARMUP} passes")
            rss0, dirty0, fds0 = memory(agent.pid, port)
            t0 = time.monotonic()
            wait_for(lambda: passes(port) >= PASSES, timeout=1200, step=0.5, what=f"{PASSES} passes")
            rss1, dirty1, fds1 = memory(agent.pid, port)
            took = time.monotonic() - t0
            asan = sanitized(agent.pid)
            print(f"\nsoak: {PASSES - WARMUP} passes in {took:.1f}s; RSS {rss0} -> {rss1} KiB, "
                  f"private dirty {dirty0} -> {dirty1} KiB, fds {fds0} -> {fds1}" + (" (ASan)" if asan else ""))
            self.assertEqual(fds1, fds0, "open descriptors changed over the soak")
            if not asan:  # ASan's quarantine holds freed memory; LeakSanitizer judges that build at exit
                self.assertLess(rss1 - rss0, 1024, "RSS grew by 1 MiB or more after warm-up")
                self.assertLess(dirty1 - dirty0, 1024, "private memory grew by 1 MiB or more after warm-up")
        finally:
            stop(agent, timeout=60)
            with open(log_path, errors="replace") as f:
                err = f.read()
        self.assertEqual(agent.returncode, 0, err[-3000:])
        self.assertNotIn("LeakSanitizer", err)


if __name__ == "__main__":
    unittest.main()
