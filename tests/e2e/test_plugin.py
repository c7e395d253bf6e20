"""kind: External end to end: resources handled by a plugin over the JSON
protocol of contrib/plugins/PROTOCOL.md. The contrib `files` plugin writes
files of the repository (and inline text) on the host, a drifted file is
replaced, a changed source file updates it, a resource that leaves Git takes
its files with it. A plugin that hangs, crashes, exits non-zero, answers
garbage, too much or another protocol fails its own resources only, with a
message naming the plugin and the problem, in bounded time, with no process
left behind; the others converge. Paths that leave the repository are refused
by validation, at their file:line:col."""
import json
import os
import pwd
import shutil
import stat
import subprocess
import time
import unittest

import signal

from gwtest import CI, GITWARD, HDR, TempDirTest, pid_alive, proc_yaml, records, run, wait_for
from test_agent import AgentBase

HERE = os.path.dirname(os.path.abspath(__file__))
FILES_PLUGIN = os.path.join(os.path.dirname(os.path.dirname(GITWARD)), "contrib", "plugins", "files")


def external(name, plugin, config, extra=""):
    return (f"{HDR}kind: External\nmetadata: {{name: {name}}}\nspec:\n  plugin: {plugin}\n"
            f"  config: {json.dumps(config)}\n{extra}")


def read(path):
    with open(path) as f:
        return f.read()


class PluginTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.assertTrue(os.access(FILES_PLUGIN, os.X_OK), f"the files plugin is built at {FILES_PLUGIN}")
        self.plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(self.plugins)
        shutil.copy(FILES_PLUGIN, os.path.join(self.plugins, "files"))
        shutil.copy(os.path.join(HERE, "plugins", "misbehave"), os.path.join(self.plugins, "misbehave"))
        self.out = os.path.join(self.tmp, "out")

    def reconcile(self, repo, *args, expect=0, timeout=120):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", "--plugin-dir",
                  self.plugins, *args, timeout=timeout)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return {x["name"]: x for x in res.json()["resources"]}

    def external_records(self):
        d = os.path.join(self.state, "external")
        return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []


class FilesPlugin(PluginTest):
    def commit_motd(self, repo, motd="hello from git\n", mode="0640"):
        repo.write("etc/motd", motd)
        repo.write("motd.yaml", external("motd", "files", {"files": [
            {"path": f"{self.out}/motd", "source": "etc/motd", "mode": mode},
            {"path": f"{self.out}/app/flag", "content": "on\n"}]}, "  sources: [etc/motd]\n"))
        return repo.commit()

    def test_files_are_written_drift_is_replaced_updates_follow_git_and_delete_removes_them(self):
        r = self.repo()
        r.write("keep.yaml", proc_yaml("keep"))
        self.commit_motd(r)
        res = self.reconcile(r)
        self.assertIn("+ External/motd", res.out)
        self.assertEqual(read(f"{self.out}/motd"), "hello from git\n")
        self.assertEqual(stat.S_IMODE(os.stat(f"{self.out}/motd").st_mode), 0o640)
        self.assertEqual(read(f"{self.out}/app/flag"), "on\n")
        st = self.status()["motd"]
        self.assertEqual(st["state"], "running")
        # the plugin's handle, opaque to gitward, shown as it is
        self.assertEqual(json.loads(st["handle"])["files"][f"{self.out}/app/flag"]["mode"], 0o644)
        self.assertIn('External/motd', run("status", "--state-dir", self.state).out)
        self.assertIn('handle {"files":', run("status", "--state-dir", self.state).out)
        self.assertEqual(self.external_records(), ["motd"])
        ino = os.stat(f"{self.out}/motd").st_ino

        # nothing changed: nothing rewritten
        res = self.reconcile(r)
        self.assertIn("0 to restart, 2 unchanged", res.out)
        self.assertEqual(os.stat(f"{self.out}/motd").st_ino, ino)

        # drift of content, mode and presence: each replaced, the reason in the
        # plan; replacements in a row back off like restarts of a crashing process
        for tamper, why in ((lambda p: open(p, "w").write("edited by hand\n"), "content changed"),
                            (lambda p: os.chmod(p, 0o666), "mode 0666, not 0640"),
                            (os.unlink, "missing")):
            tamper(f"{self.out}/motd")
            res = self.reconcile(r, expect=None)
            self.assertIn(f"! External/motd        restart  drifted: {self.out}/motd: {why}", res.out)
            # each replacement in a row backs off longer (1 s, 2 s, 4 s, ...), and
            # every poll is a whole reconcile: the bound allows a loaded machine
            wait_for(lambda: self.reconcile(r, expect=None).rc == 0, timeout=120, what="motd replaced")
            self.assertEqual(read(f"{self.out}/motd"), "hello from git\n")
            self.assertEqual(stat.S_IMODE(os.stat(f"{self.out}/motd").st_mode), 0o640)
            self.assertIn("0 to restart, 2 unchanged", self.reconcile(r).out)

        # all of them gone: absent, recreated
        os.unlink(f"{self.out}/motd")
        os.unlink(f"{self.out}/app/flag")
        res = self.reconcile(r, expect=None)
        self.assertIn(f"restart  gone: {self.out}/app/flag: missing", res.out)  # the first path, sorted
        wait_for(lambda: self.reconcile(r, expect=None).rc == 0, timeout=120, what="motd recreated")
        self.assertEqual(read(f"{self.out}/app/flag"), "on\n")

        # the source file changes in Git: the spec hash changes, the file follows
        self.commit_motd(r, motd="second version\n")
        res = self.reconcile(r)
        self.assertIn("~ External/motd", res.out)
        self.assertIn("update  sources.etc/motd: \"", res.out)  # the blob ids, never the content
        self.assertEqual(read(f"{self.out}/motd"), "second version\n")

        # the resource leaves Git: its files and its record go, the folder stays
        r.remove("motd.yaml")
        r.commit()
        res = self.reconcile(r)
        self.assertIn("- External/motd", res.out)
        self.assertFalse(os.path.exists(f"{self.out}/motd"))
        self.assertFalse(os.path.exists(f"{self.out}/app/flag"))
        self.assertTrue(os.path.isdir(f"{self.out}/app"))
        self.assertEqual(self.external_records(), [])
        self.assertEqual(sorted(self.status()), ["keep"])

    def test_the_minimal_plugin_of_the_protocol_page_works(self):
        with open(os.path.join(HERE, "../../contrib/plugins/PROTOCOL.md")) as f:
            text = f.read()
        sh = text.split("```sh\n", 1)[1].split("```", 1)[0]
        path = os.path.join(self.plugins, "nothing")
        with open(path, "w") as f:
            f.write(sh)
        os.chmod(path, 0o755)
        r = self.repo()
        r.write("n.yaml", f"{HDR}kind: External\nmetadata: {{name: n}}\nspec: {{plugin: nothing}}\n")
        r.commit()
        self.assertIn("+ External/n", self.reconcile(r).out)
        self.assertIn("1 unchanged", self.reconcile(r).out)
        self.assertEqual(self.status()["n"]["handle"], "nothing")

    def test_a_plugin_sees_the_fixed_path_whatever_gitwards_path_is(self):
        seen = os.path.join(self.tmp, "plugin-env")
        path = os.path.join(self.plugins, "envdump")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nenv > {seen}\ncat > /dev/null\n"
                    "echo '{\"protocol\":1,\"ok\":true,\"handle\":\"h\",\"state\":\"present\"}'\n")
        os.chmod(path, 0o755)
        r = self.repo()
        r.write("e.yaml", f"{HDR}kind: External\nmetadata: {{name: e}}\nspec: {{plugin: envdump}}\n")
        r.commit()
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--plugin-dir",
                  self.plugins, env={"PATH": os.path.join(self.tmp, "elsewhere") + ":" + os.environ["PATH"]})
        self.assertIn("Applied: 1 ok, 0 failed", res.out, res)
        lines = read(seen).splitlines()
        self.assertIn("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", lines)
        self.assertIn("LC_ALL=C", lines)
        self.assertEqual([x for x in lines if "elsewhere" in x], [])

    def test_config_file_key_and_a_missing_plugin(self):
        r = self.repo()
        r.write("a.yaml", external("a", "files", {"files": [{"path": f"{self.out}/a", "content": "a\n"}]}))
        r.write("b.yaml", external("b", "nosuch", {}))
        r.commit()
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"plugin-dir: {self.plugins}\n")
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--config", cfg)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"error External/b: create failed: plugin nosuch: no such plugin in {self.plugins} "
                      "(--plugin-dir)", res.err)
        self.assertEqual(read(f"{self.out}/a"), "a\n")
        st = self.status()
        self.assertEqual((st["a"]["state"], st["b"]["state"]), ("running", "failed"))

    def test_the_plugin_checks_its_config(self):
        r = self.repo()
        r.write("a.yaml", external("a", "files", {"files": [{"path": "relative/x", "content": "a\n"}]}))
        r.write("b.yaml", external("b", "files", {"files": [{"path": f"{self.out}/b", "source": "etc/x"}]}))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("error External/a: create failed: plugin files create: config.files[0].path: expected an "
                      "absolute path without . or .. parts", res.err)
        self.assertIn("error External/b: create failed: plugin files create: config.files[0].source: etc/x is "
                      "not listed in spec.sources", res.err)
        self.assertEqual(self.external_records(), [])


class FilesThroughSymlinks(PluginTest):
    """A user who owns a parent folder of a managed file cannot make the
    files plugin (run as root) write or delete in a folder of root's by
    turning a component into a symbolic link: not before the first pass, not
    between passes. The plugin refuses and names the link; root's folder is
    left as it was."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            if CI:
                self.fail("a symlink planted by another user needs root to set up")
            raise unittest.SkipTest("a symlink planted by another user needs root to set up")
        pw = pwd.getpwnam("nobody")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chmod(self.tmp, 0o755)
        # root's folder, with a file of root's in it
        self.rootdir = os.path.join(self.tmp, "rootdir")
        os.makedirs(self.rootdir, mode=0o755)
        with open(os.path.join(self.rootdir, "file"), "w") as f:
            f.write("root's own\n")
        # the user's folder, where the managed file lives
        self.userdir = os.path.join(self.tmp, "userdir")
        os.makedirs(self.userdir, mode=0o755)
        os.chown(self.userdir, self.uid, self.gid)

    def as_user(self, *argv):
        """Run argv as nobody (setpriv, no supplementary groups)."""
        cp = subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *argv],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp)

    def root_folder(self):
        """What root's folder holds: names, contents, modes and owners."""
        out = {}
        for name in sorted(os.listdir(self.rootdir)):
            p = os.path.join(self.rootdir, name)
            st = os.lstat(p)
            body = sorted(os.listdir(p)) if stat.S_ISDIR(st.st_mode) else read(p)
            out[name] = (body, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        return out

    def manage(self, repo, content):
        repo.write("f.yaml", external("f", "files", {"files": [
            {"path": f"{self.userdir}/sub/file", "content": content, "mode": "0600"}]}))
        return repo.commit()

    def test_a_symlinked_parent_planted_before_the_first_pass_is_refused(self):
        before = self.root_folder()
        self.as_user("ln", "-s", self.rootdir, os.path.join(self.userdir, "sub"))
        r = self.repo()
        self.manage(r, "written by gitward\n")
        res = self.reconcile(r, expect=None)
        self.assertNotEqual(res.rc, 0, res)
        self.assertIn(f"{self.userdir}/sub/file: {self.userdir}/sub is a symbolic link: refused (never followed)",
                      res.out + res.err)
        self.assertEqual(self.root_folder(), before)
        self.assertEqual(os.readlink(os.path.join(self.userdir, "sub")), self.rootdir)
        # the resource leaves Git: nothing to delete, root's folder still untouched
        r.remove("f.yaml")
        r.commit()
        self.reconcile(r, "--allow-empty", expect=None)
        self.assertEqual(self.root_folder(), before)

    def test_a_parent_swapped_for_a_symlink_between_passes_is_refused(self):
        before = self.root_folder()
        # the user makes sub a real folder: the file is written there
        self.as_user("mkdir", os.path.join(self.userdir, "sub"))
        r = self.repo()
        self.manage(r, "first\n")
        self.reconcile(r)
        self.assertEqual(read(f"{self.userdir}/sub/file"), "first\n")
        # then swaps it for a link to root's folder
        self.as_user("mv", os.path.join(self.userdir, "sub"), os.path.join(self.userdir, "old"))
        self.as_user("ln", "-s", self.rootdir, os.path.join(self.userdir, "sub"))
        want = f"{self.userdir}/sub is a symbolic link: refused (never followed)"
        # observe sees it as drift, never reads through it; the replacement is refused
        res = self.reconcile(r, expect=None)
        self.assertNotEqual(res.rc, 0, res)
        self.assertIn(f"drifted: {self.userdir}/sub/file: {want}", res.out)
        self.assertIn(want, res.err)
        self.assertEqual(self.root_folder(), before)
        # so is the update
        self.manage(r, "second\n")
        res = self.reconcile(r, expect=None)
        self.assertNotEqual(res.rc, 0, res)
        self.assertIn(want, res.out + res.err)
        self.assertEqual(self.root_folder(), before)
        # the resource leaves Git: the delete is refused, root's file stays
        r.remove("f.yaml")
        r.commit()
        res = self.reconcile(r, "--allow-empty", expect=None)
        self.assertNotEqual(res.rc, 0, res)
        self.assertIn(want, res.out + res.err)
        self.assertEqual(self.root_folder(), before)
        self.assertEqual(read(os.path.join(self.rootdir, "file")), "root's own\n")
        # the user's old folder is not gitward's to clean up through the link either
        self.assertEqual(read(f"{self.userdir}/old/file"), "first\n")

    def test_a_link_root_made_in_a_folder_of_roots_is_followed(self):
        """Debian's /lib, /bin and /var/run are links root made: a path through
        one is written where it points, each folder on the way checked again.
        The same link in the user's folder is refused: the user could swap it."""
        os.symlink(self.rootdir, os.path.join(self.tmp, "abs"))           # absolute target
        os.symlink("rootdir", os.path.join(self.tmp, "rel"))              # relative target
        os.symlink(f"{self.tmp}/abs/", os.path.join(self.tmp, "chain"))   # a link to a link
        os.symlink(self.rootdir, os.path.join(self.userdir, "rootlink"))  # root's link, user's folder
        r = self.repo()
        r.write("f.yaml", external("f", "files", {"files": [
            {"path": f"{self.tmp}/abs/a", "content": "a\n", "mode": "0600"},
            {"path": f"{self.tmp}/rel/sub/b", "content": "b\n", "mode": "0600"},
            {"path": f"{self.tmp}/chain/c", "content": "c\n", "mode": "0600"}]}))
        r.commit()
        self.reconcile(r)
        self.assertEqual(read(os.path.join(self.rootdir, "a")), "a\n")
        self.assertEqual(read(os.path.join(self.rootdir, "sub", "b")), "b\n")
        self.assertEqual(read(os.path.join(self.rootdir, "c")), "c\n")
        # unchanged on the next pass: observe reads through the same links
        res = self.reconcile(r)
        self.assertIn("0 to create, 0 to update, 0 to delete, 0 to restart, 1 unchanged", res.out)
        before = self.root_folder()
        r.write("g.yaml", external("g", "files", {"files": [
            {"path": f"{self.userdir}/rootlink/g", "content": "g\n", "mode": "0600"}]}))
        r.commit()
        res = self.reconcile(r, expect=None)
        self.assertNotEqual(res.rc, 0, res)
        self.assertIn(f"{self.userdir}/rootlink is a symbolic link: refused (never followed)", res.out + res.err)
        self.assertEqual(self.root_folder(), before)


class Validation(PluginTest):
    def test_paths_that_leave_the_repository_are_refused_at_their_position(self):
        d = os.path.join(self.tmp, "m")
        os.makedirs(d)
        with open(os.path.join(d, "x.yaml"), "w") as f:
            f.write(external("x", "files", {}, "  sources: [ok.txt, ../../etc/shadow, /etc/passwd]\n"))
        with open(os.path.join(d, "y.yaml"), "w") as f:
            f.write(external("y", "../../bin/sh", {}))
        res = run("validate", d)
        self.assertEqual(res.rc, 1, res)
        want_path = "expected a path relative to the repository root (no leading /, no . or .. parts)"
        self.assertIn(f"x.yaml:7:21: spec.sources[1]: {want_path}, got \"../../etc/shadow\"", res.out + res.err)
        self.assertIn(f"x.yaml:7:39: spec.sources[2]: {want_path}, got \"/etc/passwd\"", res.out + res.err)
        self.assertIn("y.yaml:5:11: spec.plugin: expected a plugin name of letters, digits, '.', '_' and '-', "
                      "not starting with '.', at most 64 characters, got \"../../bin/sh\"", res.out + res.err)

    def test_a_source_missing_from_the_commit_or_too_large_refuses_the_commit(self):
        r = self.repo()
        r.write("big.bin", "x" * ((1 << 20) + 1))
        r.write("x.yaml", external("x", "files", {}, "  sources: [etc/none, big.bin, etc]\n"))
        r.write("etc/keep", "")
        head = r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn(f"x.yaml:7:13: spec.sources[0]: etc/none does not exist in commit {head[:12]}", res.err)
        self.assertIn("x.yaml:7:23: spec.sources[1]: big.bin is 1048577 bytes, larger than the limit of 1048576",
                      res.err)
        self.assertIn(f"x.yaml:7:32: spec.sources[2]: etc is not a file in commit {head[:12]}", res.err)
        self.assertEqual(self.external_records(), [])


class Isolation(PluginTest):
    HOW = ("hang", "crash", "garbage", "huge", "exit", "protocol", "refuse")

    def test_misbehaving_plugins_fail_their_own_resources_only(self):
        r = self.repo()
        pidfile = os.path.join(self.tmp, "hang.pid")
        for how in self.HOW:
            cfg = {"how": how, "when": "create", "pidfile": pidfile}
            # only the hanging plugin needs a short spec.timeout: its kill is the
            # effect tested, and 5 s leaves it time to start and write its pidfile
            # on a loaded machine. The others fail by what they answer, not by
            # time: a generous timeout, so a slow Python start is never taken
            # for a hang. "huge" too: the reply cap is enforced by byte count,
            # whatever the time the plugin takes to write its 2 MiB.
            timeout = "5s" if how == "hang" else "60s"
            r.write(f"{how}.yaml", external(how, "misbehave", cfg, f"  timeout: {timeout}\n"))
        r.write("good.yaml", external("good", "files", {"files": [{"path": f"{self.out}/good", "content": "ok\n"}]}))
        r.write("proc.yaml", proc_yaml("proc"))
        r.write("after.yaml", external("after", "misbehave", {}, "  dependsOn: [good]\n"))
        r.commit()
        # the hanging plugin's child holds its stdout for 600 s: the reconcile
        # ends within the run's bound only because both were killed at
        # spec.timeout (the message below says so), not at the child's exit
        res = self.reconcile(r, expect=1, timeout=300)
        pre = "create failed: plugin misbehave create: "
        for how, msg in (("hang", "no answer within 5s (spec.timeout): killed"),
                         ("crash", "killed by signal 11"),
                         ("garbage", "answered something other than one JSON object ("),
                         ("huge", "answered more than 1048576 bytes"),
                         ("exit", "exited with status 3: misbehave: out of cheese"),
                         ("protocol", "answered in protocol 2, gitward speaks 1"),
                         ("refuse", "refused on purpose")):
            self.assertIn(f"error External/{how}: {pre}{msg}", res.err)
        st = self.status()
        for how in self.HOW:
            self.assertEqual(st[how]["state"], "failed", how)
        self.assertEqual((st["good"]["state"], st["proc"]["state"], st["after"]["state"]),
                         ("running", "running", "running"))
        self.assertEqual(read(f"{self.out}/good"), "ok\n")
        self.assertIn("proc", records(self.state))
        self.assertEqual(self.external_records(), ["after", "good"], "nothing recorded for a failed create")
        # the hanging plugin and the child holding its stdout were killed
        plugin_pid, child_pid = map(int, read(pidfile).split())
        for pid in (plugin_pid, child_pid):
            wait_for(lambda: not os.path.exists(f"/proc/{pid}") or " Z " in read(f"/proc/{pid}/stat"),
                     timeout=60, what=f"pid {pid} gone")

    def test_hanging_observes_are_waited_for_together(self):
        r = self.repo()
        for i in range(6):
            r.write(f"h{i}.yaml", external(f"h{i}", "misbehave", {"how": "hang", "when": "observe"},
                                           "  timeout: 5s\n"))
        r.write("good.yaml", external("good", "misbehave", {}))
        r.commit()
        self.reconcile(r, expect=1)
        t0 = time.monotonic()
        res = self.reconcile(r, expect=1)
        took = time.monotonic() - t0
        for i in range(6):
            self.assertIn(f"! External/h{i}          restart  plugin misbehave observe: no answer within 5s "
                          "(spec.timeout): killed", res.out)
        # 6 hanging calls of 5 s at each of the pass's two looks: one after the
        # other they take at least 60 s of wall clock however fast the machine;
        # together about 10 s, leaving the rest of the bound to a loaded machine
        self.assertLess(took, 60, res)
        self.assertEqual(self.status()["good"]["state"], "running")

    def test_a_plugin_failing_at_observe_has_its_resource_replaced(self):
        r = self.repo()
        log = os.path.join(self.tmp, "calls.log")
        r.write("flaky.yaml", external("flaky", "misbehave", {"log": log, "how": "crash", "when": "observe"}))
        r.write("good.yaml", external("good", "misbehave", {}))
        r.commit()
        res = self.reconcile(r, expect=1)
        self.assertIn("Applied: 2 ok, 0 failed, 0 waiting. Not converged.", res.out)
        st = self.status()
        self.assertEqual((st["flaky"]["state"], st["flaky"]["detail"]),
                         ("failed", "plugin misbehave observe: killed by signal 11"))
        self.assertEqual(st["good"]["state"], "running")
        res = self.reconcile(r, expect=1)
        self.assertIn("! External/flaky       restart  plugin misbehave observe: killed by signal 11", res.out)
        self.assertIn("1 to restart, 1 unchanged", res.out)
        # replaced (after the restart backoff): destroyed with the recorded
        # spec and handle, then created again
        wait_for(lambda: self.reconcile(r, expect=None) and "destroy flaky" in read(log), timeout=120,
                 what="flaky replaced")
        calls = read(log).split("\n")
        self.assertEqual(calls[:2], ["create flaky", "observe flaky"])
        self.assertEqual(calls[calls.index("destroy flaky") + 1], "create flaky")
        self.assertEqual(self.status()["good"]["state"], "running")


def group_members(pgid):
    """The live (not zombie) processes of process group pgid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(d))
    return out


class Escape(PluginTest):
    def test_an_answer_left_behind_by_a_setsid_child_is_taken_and_the_child_killed(self):
        """The plugin answers, leaves a child in a session of its own holding
        its stdout for an hour, and exits: its answer is taken at its exit
        (before, the call waited for the pipe's end and failed at spec.timeout
        with "no answer"), and the child, found by the pipe it holds, is killed."""
        r = self.repo()
        pidfile = os.path.join(self.tmp, "escapee.pid")
        r.write("esc.yaml", external("esc", "misbehave", {"how": "escape", "when": "create", "pidfile": pidfile},
                                     "  timeout: 60s\n"))
        r.commit()
        escapee = None
        try:
            res = self.reconcile(r, expect=None, timeout=300)
            escapee = int(read(pidfile))
            self.assertEqual(res.rc, 0, res)
            self.assertNotIn("no answer", res.err)
            self.assertEqual(self.status()["esc"]["state"], "running")
            self.assertEqual(self.external_records(), ["esc"])
            wait_for(lambda: not pid_alive(escapee), timeout=60, what="the escaped child killed")
        finally:
            if escapee and pid_alive(escapee):
                os.kill(escapee, signal.SIGKILL)


class SlowPlugin(AgentBase):
    def test_a_plugin_asleep_in_observe_holds_neither_the_heal_nor_a_stop(self):
        """A plugin whose observe sleeps an hour, under spec.timeout: 1h. A
        killed process is restarted while the plugin still sleeps, and
        SIGTERM ends the agent with its plugin's process group. Before,
        the pass waited for every observe (an hour) and nothing could
        cancel a plugin call. The bounds are only met on failure."""
        plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(plugins)
        shutil.copy(os.path.join(HERE, "plugins", "misbehave"), os.path.join(plugins, "misbehave"))
        pidfile = os.path.join(self.tmp, "observe.pid")
        r = self.repo()
        r.write("apps/web.yaml", proc_yaml("web", ("/bin/sleep", "3600")))
        r.write("apps/slow.yaml", external("slow", "misbehave", {"how": "hang", "when": "observe", "seconds": 3600,
                                                                 "pidfile": pidfile}, "  timeout: 1h\n"))
        r.commit()
        a = self.agent(r, "--path", "apps", "--interval", "1h", "--plugin-dir", plugins)
        plugin = child = None
        try:
            web = wait_for(lambda: self.pids().get("web"), what="web started")
            plugin, child = wait_for(lambda: os.path.exists(pidfile) and tuple(map(int, read(pidfile).split())),
                                     what="the plugin asleep in observe")
            os.kill(web, signal.SIGKILL)
            wait_for(lambda: (p := self.pids().get("web")) and p != web and pid_alive(p), timeout=60,
                     what="web restarted while the plugin sleeps")
            self.assertTrue(pid_alive(plugin), "the plugin still sleeps: the heal did not wait for it")
            a.send_signal(signal.SIGTERM)
            self.assertEqual(a.wait(timeout=60), 0, self.log())
            wait_for(lambda: not group_members(plugin), timeout=60, what="the plugin's process group gone")
            self.assertFalse(pid_alive(child))
        finally:
            for pid in (plugin, child):
                if pid and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    unittest.main()
