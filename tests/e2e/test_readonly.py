"""End to end: read-only commands beside a running agent (no lock, nothing
written), a state dir bound to one repository, and status that tells the
last attempt from the last success."""
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import unittest
import urllib.request

from gwtest import (GITWARD, HDR, LISTEN_ANY, TempDirTest, agent_port, binary_for_anyone, pid_alive, proc_yaml,
                    records, run, stop, wait_for)


def snapshot(root):
    """Every entry under root: type, mode, owner, size, mtime and content (or
    link target). Two equal snapshots mean nothing was written."""
    out = {}
    if not os.path.lexists(root):
        return None
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            entry = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_uid, st.st_size, st.st_mtime_ns)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(p),)
            out[os.path.relpath(p, root)] = entry
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_mtime_ns)
    return out


class Base(TempDirTest):
    def setUp(self):
        super().setUp()
        self.agents = []
        # where a dry-run keeps its private fetch: checked empty afterwards
        self.scratch = os.path.join(self.tmp, "scratch")
        os.makedirs(self.scratch)
        self.env = {"TMPDIR": self.scratch}

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0, state=None):
        res = run("reconcile", "--repo", repo, "--state-dir", state or self.state, "--node", "n1", *args,
                  env=self.env)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def dry(self, repo, *args, state=None):
        return run("reconcile", "--dry-run", "--repo", repo, "--state-dir", state or self.state, "--node", "n1",
                   *args, env=self.env)

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def agent(self, repo, *args):
        with open(os.path.join(self.tmp, "agent.log"), "w") as log:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo, "--state-dir", self.state, "--node", "n1",
                                  "--listen", LISTEN_ANY, *args], stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(p)
        p.port = agent_port(p, os.path.join(self.tmp, "agent.log"))
        return p

    def agent_log(self):
        with open(os.path.join(self.tmp, "agent.log")) as f:
            return f.read()

    def http_json(self, agent, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}{path}", timeout=30) as r:
            return json.loads(r.read().decode())

    def two(self, name="repo", tag="1"):
        r = self.repo(name)
        for n in ("a", "b"):
            r.write(f"{n}.yaml", proc_yaml(f"{n}{name}", extra=f"  env: {{V: \"{tag}\"}}\n  stopTimeout: 2s\n"))
        r.commit()
        return r

    def next_second(self):
        """Status times have a resolution of one second: wait until the
        clock is past the second of what was recorded last."""
        t = int(time.time())
        wait_for(lambda: int(time.time()) > t, timeout=30, step=0.02, what="the next second")


class BesideTheAgent(Base):
    def test_dry_run_and_status_beside_a_running_agent(self):
        r = self.two()
        bare = os.path.join(self.tmp, "remote.git")
        subprocess.run(["git", "clone", "-q", "--bare", r.path, bare], check=True, timeout=60)
        url = "file://" + bare
        a = self.agent(url, "--interval", "200ms")
        wait_for(lambda: len(records(self.state)) == 2 and self.status()["last_attempt_result"] == "success",
                 timeout=120, what="first apply")
        # while the agent fetches every 200ms, commits land and read-only
        # commands run, two dry-runs at a time
        head = None
        for i in range(20):
            if i % 5 == 0:
                r.write("a.yaml", proc_yaml("arepo", extra=f"  env: {{V: \"{i}\"}}\n  stopTimeout: 2s\n"))
                head = r.commit(f"v{i}")
                subprocess.run(["git", "-C", r.path, "push", "-q", bare, "main"], check=True, timeout=60)
            env = dict(os.environ, **self.env)
            argv = [GITWARD, "reconcile", "--dry-run", "--repo", url, "--state-dir", self.state, "--node", "n1",
                    "--output", "json"]
            other = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            res = self.dry(url, "--output", "json")
            out, err = other.communicate(timeout=120)
            for rc, text, errs in ((res.rc, res.out, res.err), (other.returncode, out, err)):
                self.assertIn(rc, (0, 2), f"rc={rc}\n{text}\n{errs}")
                self.assertNotIn("in use", errs)
                doc = json.loads(text)
                self.assertRegex(doc["commit"], "^[0-9a-f]{40}$")
                self.assertEqual(doc["errors"], [])
            st = run("status", "--output", "json", "--state-dir", self.state)
            self.assertEqual(st.rc, 0, st)
            self.assertNotIn("in use", st.err)
            self.assertEqual(set(r["name"] for r in st.json()["resources"]), {"arepo", "brepo"})
        # the agent was never disturbed: every fetch of its own worked, it
        # follows the last commit, and no dry-run left anything behind
        wait_for(lambda: self.status()["commit"] == head and self.status()["last_attempt_result"] == "success",
                 timeout=120, what="the agent on the last commit")
        self.assertEqual(a.poll(), None, self.agent_log())
        self.assertNotIn("error", self.agent_log())
        self.assertEqual(os.listdir(self.scratch), [])
        # /status serves the same document as `status`
        doc = self.http_json(a, "/status")
        self.assertEqual(doc["commit"], head)
        self.assertEqual(doc["last_attempt_result"], "success")
        self.assertIsNotNone(doc["last_success"])
        # a dry-run of the commit the agent applied: in sync
        self.assertEqual(self.dry(url).rc, 0)
        # a second writer is still refused, naming the agent
        res = self.reconcile(url, expect=1)
        self.assertIn(f"state dir {self.state} is in use by another gitward (pid {a.pid})", res.err)
        res = run("agent", "--repo", url, "--state-dir", self.state, "--listen", "off", timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"in use by another gitward (pid {a.pid})", res.err)
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)


class WritesNothing(Base):
    def test_dry_run_alone_writes_nothing_in_the_state_dir(self):
        r = self.two()
        self.reconcile(r.path)
        r.write("b.yaml", proc_yaml("brepo", extra="  env: {V: \"2\"}\n  stopTimeout: 2s\n"))
        r.write("c.yaml", proc_yaml("crepo"))
        r.commit("pending")
        before = snapshot(self.state)
        self.next_second()
        res = self.dry(r.path, "--output", "json")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["summary"], {"create": 1, "update": 1, "delete": 0, "restart": 0,
                                                 "unchanged": 1})
        self.assertEqual(run("status", "--state-dir", self.state).rc, 0)
        # not one byte, not even the Git cache (the new commit was fetched
        # into a private repository that is gone now)
        self.assertEqual(snapshot(self.state), before)
        self.assertEqual(os.listdir(self.scratch), [])

    def test_dry_run_on_a_state_dir_that_does_not_exist_creates_nothing(self):
        r = self.two()
        for args in ((), ("--output", "json")):
            res = self.dry(r.path, *args)
            self.assertEqual(res.rc, 2, res)
        self.assertFalse(os.path.lexists(self.state))
        self.assertEqual(os.listdir(self.scratch), [])
        # nor does a failing one
        res = self.dry(os.path.join(self.tmp, "missing"))
        self.assertEqual(res.rc, 1, res)
        self.assertIn("missing: no such directory", res.err)
        self.assertFalse(os.path.lexists(self.state))
        self.assertEqual(os.listdir(self.scratch), [])


class Status(Base):
    def test_missing_or_unreadable_state_dir_exits_1(self):
        res = run("status", "--state-dir", "/no/such/dir")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        self.assertEqual(res.err, "gitward: error: /no/such/dir: no such state dir: no gitward has used it (give "
                                  "the --state-dir of the node's agent)\n")
        res = run("status", "--output", "json", "--state-dir", "/no/such/dir")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        path = os.path.join(self.tmp, "file")
        open(path, "w").close()
        res = run("status", "--state-dir", path)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"{path}: state dir is not a directory", res.err)
        # a state dir this user cannot read
        os.makedirs(self.state, mode=0o700)
        preexec = None
        if os.geteuid() == 0:
            os.chmod(self.tmp, 0o755)
            preexec = lambda: os.setuid(65534)  # noqa: E731 (nobody)
        else:
            os.chmod(self.state, 0)
        binary = binary_for_anyone(self.tmp) if os.geteuid() == 0 else GITWARD
        cp = subprocess.run([binary, "status", "--state-dir", self.state], capture_output=True, text=True,
                            timeout=120, preexec_fn=preexec, cwd="/")
        os.chmod(self.state, 0o700)
        self.assertEqual(cp.returncode, 1, cp)
        self.assertEqual(cp.stdout, "")
        self.assertIn(f"{self.state}: cannot read the state dir: Permission denied", cp.stderr)
        # an existing state dir no pass has written yet is no error
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIsNone(res.json()["last_attempt"])

    def test_last_attempt_and_last_success_are_apart(self):
        r = self.two()
        self.reconcile(r.path)
        st = self.status()
        self.assertEqual(st["last_attempt_result"], "success")
        self.assertIsNotNone(st["last_success"])
        self.assertEqual(st["last_success"], st["last_attempt"])
        self.assertEqual(st["last_sync"], st["last_success"])
        success = st["last_success"]
        # git unreachable: an attempt, not a success
        self.next_second()
        moved = r.path + "-away"
        os.rename(r.path, moved)
        self.reconcile(r.path, expect=1)
        st = self.status()
        self.assertEqual(st["last_attempt_result"], "git_error")
        self.assertGreater(st["last_attempt"], success)
        self.assertEqual(st["last_success"], success)
        self.assertEqual(st["last_sync"], success)
        res = run("status", "--state-dir", self.state)
        self.assertIn(f"last success: {success}\n", res.out)
        self.assertIn(f"last attempt: {st['last_attempt']} (git_error)\n", res.out)
        os.rename(moved, r.path)
        # an invalid commit
        self.next_second()
        r.write("bad.yaml", HDR + "kind: Process\nmetadata: {name: bad}\nspec: {command: [/bin/true], x: 1}\n")
        r.commit("bad")
        self.reconcile(r.path, expect=1)
        st = self.status()
        self.assertEqual(st["last_attempt_result"], "invalid")
        self.assertEqual(st["last_success"], success)
        # applied but not converged: a program that does not exist
        self.next_second()
        r.remove("bad.yaml")
        r.write("c.yaml", proc_yaml("missing", command=(os.path.join(self.tmp, "no-such-program"),)))
        r.commit("missing program")
        self.reconcile(r.path, expect=1)
        st = self.status()
        self.assertEqual(st["last_attempt_result"], "not_converged")
        self.assertEqual(st["last_success"], success)
        self.assertEqual(st["commit"], r.git("rev-parse", "HEAD"))
        # converged again: a success
        self.next_second()
        r.remove("c.yaml")
        r.commit("fixed")
        self.reconcile(r.path)
        st = self.status()
        self.assertEqual(st["last_attempt_result"], "success")
        self.assertGreater(st["last_success"], success)
        self.assertEqual(st["last_success"], st["last_attempt"])


class OneRepository(Base):
    def record(self):
        with open(os.path.join(self.state, "repository")) as f:
            return f.read()

    def test_same_repository_in_other_spellings_is_accepted(self):
        r = self.two()
        res = run("reconcile", "--repo", "repo", "--state-dir", self.state, "--node", "n1", cwd=self.tmp)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.record(), os.path.realpath(r.path) + "\n")
        link = os.path.join(self.tmp, "link")
        os.symlink(r.path, link)
        for spelling in (r.path, r.path + "/", r.path + "//", "file://" + r.path, "file://" + r.path + "/",
                         os.path.join(r.path, ".git"), link, "./repo/"):
            for dry in ((), ("--dry-run",)):
                res = run("reconcile", *dry, "--repo", spelling, "--state-dir", self.state, "--node", "n1",
                          cwd=self.tmp, env=self.env)
                self.assertEqual(res.rc, 0, f"{spelling}: {res}")
        self.assertEqual(self.record(), os.path.realpath(r.path) + "\n")

    def test_another_repository_is_refused_unless_moved(self):
        a = self.two("one")
        b = self.two("two")
        self.reconcile(a.path)
        pids = {n: rec["pid"] for n, rec in records(self.state).items()}
        self.assertEqual(set(pids), {"aone", "bone"})
        before = snapshot(self.state)
        want = (f"gitward: error: state dir {self.state} belongs to repository {a.path}, not {b.path}: use "
                f"another --state-dir for {b.path}, or pass --move-to-repo to move this state dir and its "
                "resources to it (what it does not declare is then deleted)\n")
        for cmd in (("reconcile",), ("reconcile", "--dry-run")):
            res = run(*cmd, "--repo", b.path, "--state-dir", self.state, "--node", "n1", env=self.env)
            self.assertEqual(res.rc, 1, res)
            self.assertEqual(res.err, want)
        res = run("agent", "--repo", b.path, "--state-dir", self.state, "--listen", "off", timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(want.split("error: ")[1], res.err)
        # nothing applied, nothing deleted, nothing written
        self.assertEqual({n: rec["pid"] for n, rec in records(self.state).items()}, pids)
        self.assertTrue(all(pid_alive(p) for p in pids.values()))
        self.assertEqual(snapshot(self.state), before)
        # a dry-run of the move shows it, and still writes nothing
        res = self.dry(b.path, "--move-to-repo", "--output", "json")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(sorted((x["name"], x["action"]) for x in res.json()["actions"]),
                         [("aone", "delete"), ("atwo", "create"), ("bone", "delete"), ("btwo", "create")])
        self.assertEqual(snapshot(self.state), before)
        # the move itself
        res = self.reconcile(b.path, "--move-to-repo")
        self.assertIn(f"state dir {self.state} moved from repository {a.path} to {b.path} (--move-to-repo)",
                      res.err)
        self.assertEqual(set(records(self.state)), {"atwo", "btwo"})
        self.assertFalse(any(pid_alive(p) for p in pids.values()))
        self.assertEqual(self.record(), b.path + "\n")
        self.assertEqual(self.status()["commit"], b.git("rev-parse", "HEAD"))
        # now the first one is the stranger; the option works from --config too
        self.assertEqual(self.reconcile(a.path, expect=1).rc, 1)
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {a.path}\nstate-dir: {self.state}\nnode: n1\nmove-to-repo: true\n")
        res = run("reconcile", "--config", cfg)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(self.record(), a.path + "\n")
        self.assertEqual(set(records(self.state)), {"aone", "bone"})

    def test_state_dir_of_an_earlier_version_adopts_the_repository(self):
        a = self.two("one")
        b = self.two("two")
        self.reconcile(a.path)
        os.unlink(os.path.join(self.state, "repository"))
        self.reconcile(a.path)
        self.assertEqual(self.record(), a.path + "\n")
        self.reconcile(b.path, expect=1)

    def test_a_first_repository_that_never_fetched_claims_nothing(self):
        r = self.two()
        url = "https://u:SECRET@127.0.0.1:1/Team/Repo.git/"
        res = self.reconcile(url, "--git-connect-timeout", "2s", expect=1)
        self.assertNotIn("SECRET", res.err)
        self.assertEqual(self.record(), "https://127.0.0.1:1/Team/Repo\n")
        for dirpath, _, files in os.walk(self.state):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    self.assertNotIn(b"SECRET", f.read(), os.path.join(dirpath, name))
        # nothing was applied from it: another repository may take the state dir
        self.reconcile(r.path)
        self.assertEqual(self.record(), r.path + "\n")


if __name__ == "__main__":
    unittest.main()
