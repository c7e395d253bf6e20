"""A Git server that always progresses and never finishes: after "NAK" it
sends one sideband progress line a second, forever (TricklingServer, smart
HTTP relayed to `git http-backend` until it starts trickling). The idle
--git-timeout never fires on it; --git-deadline ends the fetch however much
it progresses, and while the fetch is held the agent goes on healing from the
commit in force, and SIGTERM still stops it at once."""
import os
import re
import signal
import subprocess
import time
import types
import unittest

from gitservers import CI, HTTP_BACKEND, TricklingServer
from gwtest import pid_alive, proc_yaml, stop, wait_for
from test_agent import AgentBase


class Trickle(AgentBase):
    def setUp(self):
        super().setUp()
        if not os.access(HTTP_BACKEND, os.X_OK):
            if CI:
                self.fail(f"{HTTP_BACKEND} is missing (install git)")
            self.skipTest(f"{HTTP_BACKEND} is missing")
        self.r = self.repo()
        self.r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        self.r.commit("web")
        root = os.path.join(self.tmp, "srv")
        os.makedirs(root)
        self.bare = os.path.join(root, "r.git")
        subprocess.run(["git", "clone", "-q", "--bare", self.r.path, self.bare], check=True, timeout=60)
        self.server = TricklingServer(root)
        self.url = types.SimpleNamespace(path=self.server.url("r.git"))

    def tearDown(self):
        super().tearDown()  # the agents first: their fetches end with them
        self.server.stop()

    def git_errors(self, a):
        _, body = self.http(a, "/metrics")
        m = re.search(r'^gitward_sync_total\{result="git_error"\} (\d+)$', body, re.M)
        return int(m.group(1)) if m else 0

    def test_a_trickling_fetch_ends_at_the_deadline(self):
        self.server.trickle = True
        a = self.agent(self.url, "--path", "apps", "--interval", "1h", "--git-timeout", "5s",
                       "--git-deadline", "10s")
        wait_for(lambda: self.server.trickled >= 1, what="a fetch held by the trickling server")
        t0 = time.monotonic()
        # the deadline, not the idle timeout (which the trickle resets every second)
        wait_for(lambda: "fetch exceeded --git-deadline of 10s" in self.log() or a.poll() is not None,
                 what="the fetch ended by its deadline")
        print(f"\ntrickle begun -> deadline error logged: {time.monotonic() - t0:.2f}s")
        self.assertIsNone(a.poll(), self.log())
        self.assertNotIn("no progress from the server", self.log())
        # counted and backed off like any Git failure, and recorded as the error
        wait_for(lambda: self.git_errors(a) >= 1, timeout=60, what="the git_error pass counted")
        self.assertIn("next try in", self.log())
        st = wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")) and self.state_json(),
                      timeout=60, what="the state file")
        self.assertIn("fetch exceeded --git-deadline of 10s", st.get("last_error") or "", st)
        self.assertEqual(st.get("last_attempt_result"), "git_error", st)
        # the fetch's connection was dropped
        wait_for(lambda: self.server.trickling == 0, timeout=60, what="the trickled connection closed")
        stop(a)
        self.assertEqual(a.returncode, 0, self.log())

    def test_heals_go_on_while_a_fetch_trickles_and_sigterm_ends_it(self):
        # no --git-deadline: its default (minutes) outlasts the test, as the old
        # code's unbounded fetch did
        a = self.agent(self.url, "--path", "apps", "--interval", "2s", "--splay", "0", "--git-timeout", "5s")
        pid = wait_for(lambda: self.pids().get("web"), what="web started")
        wait_for(lambda: os.path.exists(os.path.join(self.state, "state.json")), what="the first pass recorded")
        # a new commit to fetch, served by the trickle (set first: no fetch can
        # get the commit in between; a fetch with nothing new never asks)
        self.server.trickle = True
        self.r.write("apps/other.yaml", proc_yaml("other"))
        self.r.commit("other")
        self.r.git("push", "-q", self.bare, "HEAD:main")
        wait_for(lambda: self.server.trickling >= 1, what="a fetch held by the trickling server")
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        new = wait_for(lambda: (p := self.pids().get("web")) and p != pid and pid_alive(p) and p, timeout=60,
                       what="web restarted while the fetch is held")
        print(f"\nkilled -> running again, during a held fetch: {time.monotonic() - t0:.2f}s")
        # healed during that same fetch, from the commit in force
        self.assertEqual((self.server.trickling, self.server.trickled), (1, 1), self.log())
        self.assertNotIn("other", self.pids())
        self.assertTrue(pid_alive(new))
        self.assertIn("heal pass done", self.log())
        # SIGTERM ends the held fetch and the agent; the workload stays
        t0 = time.monotonic()
        stop(a, timeout=60)
        print(f"SIGTERM -> exited, during a held fetch: {time.monotonic() - t0:.2f}s")
        self.assertEqual(a.returncode, 0, self.log())
        self.assertIn("fetch abandoned: the agent is stopping", self.log())
        wait_for(lambda: self.server.trickling == 0, timeout=60, what="the trickled connection closed")
        self.assertTrue(pid_alive(new))


if __name__ == "__main__":
    unittest.main()
