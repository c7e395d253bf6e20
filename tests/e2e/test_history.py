"""History and rollback (issue 27, items 1 and 2): `gitward history` lists
the passes that applied something or failed, newest first; `gitward
rollback` pins the node to an earlier commit until the ref moves or
`rollback --clear`, beside a real agent running real processes. The pin is a
file in STATE/control the agent watches (inotify), so the waits below are
bounded generously and only met on failure."""
import json
import os
import signal

from gwtest import pid_alive, proc_yaml, run, stop, wait_for
from test_agent import AgentBase

# seconds: only met on failure (the agent acts within a second or a poll)
BOUND = 90.0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class HistoryBase(AgentBase):
    def version_repo(self):
        r = self.repo()
        ids = []
        for v in (1, 2, 3):
            r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", f"360{v}")))
            ids.append(r.commit(f"web v{v}"))
        return r, ids

    def reconcile_at(self, repo, commit):
        res = run("reconcile", "--repo", repo.path, "--ref", commit, "--path", "apps", "--state-dir", self.state,
                  "--node", "n1")
        self.assertEqual(res.rc, 0, res)

    def history(self):
        res = run("history", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def running(self):
        """The version of web that runs now (1, 2, 3 ...), or None."""
        rec = self.pids()
        pid = rec.get("web")
        if not pid or not pid_alive(pid):
            return None
        for a in cmdline(pid):
            if a.startswith(b"360") and len(a) == 4:
                return int(a[3:])
        return None

    def wait_version(self, v, what=""):
        wait_for(lambda: self.running() == v, timeout=BOUND, step=0.05, what=f"web v{v} running {what}")

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def http_json(self, agent, path):
        code, body = self.http(agent, path)
        self.assertEqual(code, 200, body)
        return json.loads(body)

    def passes_over(self, commit, since=0):
        """Passes the agent logged (at debug) over commit, after offset since."""
        return self.log()[since:].count("done: commit " + commit[:12])


class History(HistoryBase):
    def test_history_lists_applied_commits_newest_first_and_skips_no_op_passes(self):
        r, (c1, c2, c3) = self.version_repo()
        for c in (c1, c2, c3):
            self.reconcile_at(r, c)
        self.reconcile_at(r, c3)  # nothing to do: not history
        doc = self.history()
        self.assertEqual(doc["node"], "n1")
        h = doc["history"]
        self.assertEqual([e["commit"] for e in h], [c3, c2, c1])
        self.assertEqual({e["result"] for e in h}, {"converged"})
        self.assertEqual({e["trigger"] for e in h}, {"poll"})
        self.assertEqual(h[2]["message"], "1 created, 0 updated, 0 deleted, 0 restarted")
        self.assertEqual(h[0]["message"], "0 created, 1 updated, 0 deleted, 0 restarted")
        for e in h:
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        text = run("history", "--state-dir", self.state)
        self.assertEqual(text.rc, 0, text)
        lines = text.out.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertIn(c3[:12], lines[0])
        self.assertIn("converged", lines[0])

    def test_a_failure_repeated_is_one_entry_with_its_count(self):
        r, (c1, _, _) = self.version_repo()
        self.reconcile_at(r, c1)
        r.write("apps/bad.yaml", "apiVersion: gitward.dev/v1\nkind: Process\nmetadata: {name: bad}\nspec: {}\n")
        bad = r.commit("bad")
        for _ in range(3):
            res = run("reconcile", "--repo", r.path, "--ref", bad, "--path", "apps", "--state-dir", self.state,
                      "--node", "n1")
            self.assertNotEqual(res.rc, 0, res)
        h = self.history()["history"]
        self.assertEqual(len(h), 2, h)
        self.assertEqual((h[0]["commit"], h[0]["result"], h[0]["count"]), (bad, "failed", 3))
        self.assertIn("problem", h[0]["message"])

    def test_the_history_keeps_the_last_100_entries(self):
        r = self.repo()
        ids = []
        for v in range(105):
            r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", str(4000 + v))))
            ids.append(r.commit(f"v{v}"))
        for c in ids:
            self.reconcile_at(r, c)
        h = self.history()["history"]
        self.assertEqual(len(h), 100)
        self.assertEqual(h[0]["commit"], ids[-1])
        self.assertEqual(h[-1]["commit"], ids[5])
        self.assertLess(os.path.getsize(os.path.join(self.state, "history.json")), 64 * 1024)

    def test_a_corrupt_history_is_refused_and_said_not_trusted(self):
        r, (c1, _, _) = self.version_repo()
        self.reconcile_at(r, c1)
        path = os.path.join(self.state, "history.json")
        with open(path) as f:
            doc = json.load(f)
        doc["history"][0]["commit"] = "../../etc/passwd"
        with open(path, "w") as f:
            json.dump(doc, f)
        res = run("history", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("history.json", res.err)
        self.assertIn("corrupt history file: entry 1: invalid commit", res.err)
        st = run("status", "--state-dir", self.state)
        self.assertEqual(st.rc, 0, st)
        self.assertIn("corrupt history file", st.err)
        # rollback reads the history: it refuses too
        rb = run("rollback", "--state-dir", self.state)
        self.assertEqual(rb.rc, 1, rb)
        self.assertIn("corrupt history file", rb.err)
        with open(path, "w") as f:
            f.write("{\"version\": 1, \"history\": [" + "{}," * 200 + "{}]}")
        res = run("history", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("at most 100 entries", res.err)

    def test_history_of_an_unknown_state_dir_exits_1(self):
        res = run("history", "--state-dir", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(res.rc, 1, res)
        self.assertIn("nowhere", res.err)

    def test_the_agent_records_why_a_pass_ran(self):
        r, (c1, c2, c3) = self.version_repo()
        r.git("reset", "-q", "--hard", c1)
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--splay", "0")
        self.wait_version(1)
        r.git("reset", "-q", "--hard", c2)
        a.send_signal(signal.SIGHUP)
        self.wait_version(2, "after SIGHUP")
        pid = self.pids()["web"]
        res = run("restart", "Process/web", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        wait_for(lambda: self.pids().get("web") not in (None, pid), timeout=BOUND, what="web restarted")
        h = wait_for(lambda: (h := self.history()["history"]) and len(h) >= 3 and h, timeout=BOUND,
                     what="three entries")
        self.assertEqual([(e["commit"], e["trigger"]) for e in h], [(c2, "restart"), (c2, "signal"), (c1, "poll")])
        self.assertEqual(h[0]["message"], "0 created, 0 updated, 0 deleted, 1 restarted")


class Rollback(HistoryBase):
    def test_rollback_pins_the_running_agent_until_the_ref_moves(self):
        r, (c1, c2, c3) = self.version_repo()
        for c in (c1, c2, c3):
            self.reconcile_at(r, c)
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--log-level", "debug")
        self.wait_version(3)

        res = run("rollback", "--reason", "v3 leaks", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn(c2, res.out)
        self.wait_version(2, "after rollback")
        pinned = self.status()["pinned"]
        self.assertEqual((pinned["commit"], pinned["reason"], pinned["tip"]), (c2, "v3 leaks", c3))
        self.assertEqual(self.http_json(a, "/status")["pinned"]["commit"], c2)
        self.assertIn("gitward_pinned 1\n", self.http(a, "/metrics")[1])
        self.assertIn("pinned:", run("status", "--state-dir", self.state).out)
        h = wait_for(lambda: [e for e in self.history()["history"] if e["result"] == "rolled-back"],
                     timeout=BOUND, what="the rollback in the history")
        self.assertEqual((h[0]["commit"], h[0]["trigger"]), (c2, "rollback"))

        # further polls keep it, and so does a restart of the agent
        mark = len(self.log())
        wait_for(lambda: self.passes_over(c2, mark) >= 3, timeout=BOUND, what="more polls over c2")
        self.assertEqual(self.running(), 2)
        stop(a)
        self.agents.remove(a)
        a = self.agent(r, "--path", "apps", "--interval", "1s", "--splay", "0", "--log-level", "debug")
        wait_for(lambda: self.passes_over(c2) >= 2, timeout=BOUND, what="the restarted agent's passes over c2")
        mark = len(self.log())
        a.send_signal(signal.SIGHUP)  # a full pass at once: fetches, the tip is still c3
        wait_for(lambda: "pass requested" in self.log()[mark:] and self.passes_over(c2, mark) >= 1,
                 timeout=BOUND, what="the SIGHUP pass over c2")
        self.assertEqual(self.running(), 2)
        self.assertNotIn("done: commit " + c3[:12], self.log())
        self.assertIn("gitward_pinned 1\n", self.http(a, "/metrics")[1])
        self.assertEqual(self.status()["pinned"]["commit"], c2)

        # the ref moves: the pin ends and the new tip runs
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3604")))
        c4 = r.commit("web v4")
        self.wait_version(4, "after the ref moved")
        wait_for(lambda: self.status()["pinned"] is None, timeout=BOUND, what="the pin ended")
        self.assertIn("pin to " + c2[:12] + " ended", self.log())
        self.assertEqual(self.history()["history"][0]["commit"], c4)
        self.assertIn("gitward_pinned 0\n", self.http(a, "/metrics")[1])

        # rollback to a named commit, then --clear: back to the tip
        res = run("rollback", c1[:7], "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.wait_version(1, "after rollback to c1")
        res = run("rollback", "--clear", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("pin cleared", res.out)
        self.wait_version(4, "after rollback --clear")
        self.assertIsNone(self.status()["pinned"])

    def test_rollback_to_an_unknown_commit_or_state_dir_exits_1(self):
        r, (c1, _, _) = self.version_repo()
        self.reconcile_at(r, c1)
        res = run("rollback", "deadbeef" * 5, "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("commit deadbeefdeadbeefdeadbeefdeadbeefdeadbeef is not in this node's Git cache", res.err)
        res = run("rollback", "abc", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("not a commit id (7 to 40 hex digits)", res.err)
        # c1 is the only commit applied: no earlier one to default to
        res = run("rollback", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("no commit before the one in force converged", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.state, "control", "pin")))
        res = run("rollback", "--state-dir", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(res.rc, 1, res)

    def test_reconcile_follows_a_pin_and_a_bad_pin_file_is_ignored(self):
        r, (c1, c2, c3) = self.version_repo()
        for c in (c1, c2, c3):
            self.reconcile_at(r, c)
        res = run("rollback", c1, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        res = run("reconcile", "--repo", r.path, "--path", "apps", "--state-dir", self.state, "--node", "n1")
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.running(), 1)
        h = self.history()["history"][0]
        self.assertEqual((h["commit"], h["result"], h["trigger"]), (c1, "rolled-back", "rollback"))
        # a pin file that is not one is said and ignored: the ref's tip again
        with open(os.path.join(self.state, "control", "pin"), "w") as f:
            f.write('{"commit": "../x", "reason": "", "since": "x", "tip": ""}')
        res = run("reconcile", "--repo", r.path, "--path", "apps", "--state-dir", self.state, "--node", "n1")
        self.assertEqual(res.rc, 0, res)
        self.assertIn("not a pin", res.err)
        self.assertEqual(self.running(), 3)


class RollbackOverServers(HistoryBase):
    """The pin over real remotes: nginx + git http-backend (HTTPS, own CA)
    and sshd, from gitservers.py. The pinned commit is read from the Git
    cache; the next fetch that sees the ref moved ends the pin."""

    @classmethod
    def setUpClass(cls):
        from gitservers import GitServers
        cls.servers = GitServers()
        cls.servers.start()

    @classmethod
    def tearDownClass(cls):
        cls.servers.stop()

    def check_transport(self, url, trust, name):
        s = self.servers
        bare = s.bare(name)
        work = self.repo("work-" + name)
        ids = []
        for v in (1, 2):
            work.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", f"360{v}")))
            ids.append(work.commit(f"v{v}"))
            work.git("push", "-q", bare, "main")
            res = run("reconcile", "--repo", url, *trust, "--path", "apps", "--state-dir", self.state, "--node", "n1",
                      env={"HOME": self.tmp})
            self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.running(), 2)
        res = run("rollback", "--reason", "over " + name, "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn(ids[0], res.out)
        res = run("reconcile", "--repo", url, *trust, "--path", "apps", "--state-dir", self.state, "--node", "n1",
                  env={"HOME": self.tmp})
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.running(), 1)
        self.assertEqual(self.status()["pinned"]["tip"], ids[1])
        work.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3603")))
        c3 = work.commit("v3")
        work.git("push", "-q", bare, "main")
        res = run("reconcile", "--repo", url, *trust, "--path", "apps", "--state-dir", self.state, "--node", "n1",
                  env={"HOME": self.tmp})
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.running(), 3)
        self.assertIsNone(self.status()["pinned"])
        h = self.history()["history"]
        self.assertEqual([(e["commit"], e["result"]) for e in h[:4]],
                         [(c3, "converged"), (ids[0], "rolled-back"), (ids[1], "converged"), (ids[0], "converged")])

    def test_rollback_over_https(self):
        s = self.servers
        self.check_transport(s.https_url("hist-https"), ["--ca-file", s.ca_file], "hist-https")

    def test_rollback_over_ssh(self):
        s = self.servers
        self.check_transport(s.ssh_url("hist-ssh"), ["--ssh-key", s.client_key, "--known-hosts", s.known_hosts],
                             "hist-ssh")
