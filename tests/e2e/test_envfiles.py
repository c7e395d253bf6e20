"""Node-side envFiles are watched: an edit of a file's content restarts its
workload (Process, Container) at the next pass — `reconcile`, or an agent's
pass asked for with SIGHUP — planned as `restart  envFile PATH changed`; the
workload then sees the new value; an unchanged file restarts nothing; no
value, nor the digest gitward keeps of it, shows in a plan, log or status."""
import hashlib
import json
import os
import re
import signal

from gwtest import HDR, TempDirTest, proc_yaml, records, run, wait_for
from test_process import Base


def write_atomic(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.replace(path + ".new", path)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ProcessEnvFiles(Base):
    def env_seen(self, out):
        """The workload's environment, as it wrote it at start."""
        try:
            with open(out) as f:
                return dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        except OSError:
            return {}

    def assert_hidden(self, values, *texts):
        for v in values:
            for t in texts:
                self.assertNotIn(v, t)

    def test_edited_env_file_restarts_at_the_next_reconcile_and_agent_pass(self):
        tag = os.urandom(6).hex()
        app_env = os.path.join(self.tmp, "app.env")
        shared = os.path.join(self.tmp, "shared.env")
        write_atomic(shared, "REGION=eu\n")
        write_atomic(app_env, f"# the app\nGREETING=first-{tag}\n")
        out = os.path.join(self.tmp, "env.out")
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", command=("/bin/sh", "-c", f"env > {out}.tmp; mv {out}.tmp {out}; "
                                                      "exec sleep 300"),
                                      extra=f"  envFiles: [{shared}, {app_env}]\n  stopTimeout: 2s\n"))
        r.write("plain.yaml", proc_yaml("plain", extra=f"  envFiles: [{shared}]\n  stopTimeout: 2s\n"))
        r.commit()
        self.reconcile(r)
        wait_for(lambda: self.env_seen(out).get("GREETING") == f"first-{tag}", what="first env dump")
        first = self.pids()

        # an unchanged file restarts nothing
        dry = self.reconcile(r, "--dry-run")
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 2 unchanged.", dry.out)
        self.reconcile(r)
        self.assertEqual(self.pids(), first)

        # edited (the second of two files): planned, then restarted, the other workload left alone
        write_atomic(app_env, f"# the app\nGREETING=second-{tag}\n")
        dry = self.reconcile(r, "--dry-run", expect=2)
        self.assertIn(f"restart  envFile {app_env} changed\n", dry.out)
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 1 to restart, 1 unchanged.", dry.out)
        dry_json = self.reconcile(r, "--dry-run", "--output", "json", expect=2)
        acts = {a["name"]: a for a in dry_json.json()["actions"]}
        self.assertEqual(acts["app"]["reason"], f"envFile {app_env} changed")
        self.assertNotIn("plain", acts)
        self.assertEqual(self.pids(), first, "a dry-run restarts nothing")
        res = self.reconcile(r)
        self.assertIn(f"restart  envFile {app_env} changed", res.out)
        second = self.pids()
        self.assertNotEqual(second["app"], first["app"])
        self.assertEqual(second["plain"], first["plain"])
        wait_for(lambda: self.env_seen(out).get("GREETING") == f"second-{tag}", what="the new value")
        self.assertEqual(self.env_seen(out)["REGION"], "eu")
        self.assertIn("0 to restart", self.reconcile(r, "--dry-run").out)

        # values and digests stay out of every output; the digest is kept in the state file alone
        digest = sha256_of(app_env)
        with open(os.path.join(self.state, "state.json")) as f:
            self.assertIn(digest, f.read())
        status = run("status", "--state-dir", self.state)
        status_json = run("status", "--output", "json", "--state-dir", self.state)
        self.assert_hidden([f"first-{tag}", f"second-{tag}", digest, digest[:12]], dry.out, dry.err, dry_json.out,
                           res.out, res.err, status.out, status_json.out)

        # an agent started on that state restarts nothing (the digests came through the state file);
        # the next edit restarts the workload at the pass SIGHUP asks for
        a = self.agent(r, "--interval", "1h")
        wait_for(lambda: self.passes(a) == 1, what="the agent's first pass")
        self.assertEqual(self.pids(), second)
        write_atomic(app_env, f"GREETING=third-{tag}\n")
        a.send_signal(signal.SIGHUP)
        wait_for(lambda: self.passes(a) == 2, what="the SIGHUP pass")
        wait_for(lambda: self.env_seen(out).get("GREETING") == f"third-{tag}", what="the value after SIGHUP")
        third = self.pids()
        self.assertEqual(self.passes(a), 2, "restarted by the one pass SIGHUP asked for")
        self.assertNotEqual(third["app"], second["app"])
        self.assertEqual(third["plain"], first["plain"])
        log = self.agent_log()
        self.assertIn(f"Process/app: planned restart: envFile {app_env} changed", log)
        code, body = self.http(a, "/status")
        self.assertEqual(code, 200)
        self.assert_hidden([f"third-{tag}", sha256_of(app_env)], log, body)

    def test_a_state_file_without_digests_restarts_nothing(self):
        """As an earlier version left it: the next pass records the digests
        and restarts nothing; an edit after that is seen."""
        app_env = os.path.join(self.tmp, "app.env")
        write_atomic(app_env, "V=1\n")
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra=f"  envFiles: [{app_env}]\n  stopTimeout: 2s\n"))
        r.commit()
        self.reconcile(r)
        first = self.pids()
        path = os.path.join(self.state, "state.json")
        with open(path) as f:
            st = json.load(f)
        for e in st["resources"]:
            self.assertEqual(list(e.pop("env_digests")), [app_env])
        with open(path, "w") as f:
            json.dump(st, f)
        write_atomic(app_env, "V=2\n")  # changed while no digest was kept: unknowable, no restart
        self.assertIn("0 to restart", self.reconcile(r).out)
        self.assertEqual(self.pids(), first)
        with open(path) as f:
            self.assertEqual(json.load(f)["resources"][0]["env_digests"], {app_env: sha256_of(app_env)})
        write_atomic(app_env, "V=3\n")
        self.assertIn(f"restart  envFile {app_env} changed", self.reconcile(r).out)
        self.assertNotEqual(self.pids()["app"], first["app"])

    def test_a_removed_env_file_keeps_the_workload_running(self):
        """Gone is no new content: the workload keeps what it read, a warning
        says so at each pass; back unchanged restarts nothing, back changed
        restarts it."""
        app_env = os.path.join(self.tmp, "app.env")
        write_atomic(app_env, "V=1\n")
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra=f"  envFiles: [{app_env}]\n  stopTimeout: 2s\n"))
        r.commit()
        self.reconcile(r)
        first = self.pids()
        os.remove(app_env)
        res = self.reconcile(r)
        self.assertIn("0 to restart", res.out)
        self.assertIn(f"warn Process/app: envFiles: {app_env}: cannot open: No such file or directory; not "
                      "restarted: it keeps the values it read when it started", res.err)
        self.assertEqual(self.pids(), first)
        write_atomic(app_env, "V=1\n")
        self.assertIn("0 to restart", self.reconcile(r).out)
        self.assertEqual(self.pids(), first)
        write_atomic(app_env, "V=2\n")
        self.assertIn(f"restart  envFile {app_env} changed", self.reconcile(r).out)
        self.assertNotEqual(self.pids()["app"], first["app"])


class ContainerEnvFiles(TempDirTest):
    @classmethod
    def setUpClass(cls):
        import podman_env
        cls.podman_env = podman_env
        podman_env.setup_module()

    @classmethod
    def tearDownClass(cls):
        cls.podman_env.teardown_module()

    def setUp(self):
        super().setUp()
        self.pm = self.podman_env.PODMAN

    def tearDown(self):
        ids = self.pm.podman("ps", "-a", "-q", "--filter", f"label=gitward.state-dir={self.state}", check=False)
        if ids:
            self.pm.podman("rm", "-f", "-t", "0", *ids.split(), check=False)
        super().tearDown()

    def reconcile(self, repo, *args, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                  "--container-socket", self.pm.socket, *args, timeout=300)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def container(self, name):
        """(id, env) of gitward's container name."""
        out = self.pm.podman("inspect", f"gitward-{name}", "--format", "{{.Id}} {{json .Config.Env}}")
        cid, env = out.split(" ", 1)
        return cid, json.loads(env)

    def test_edited_env_file_restarts_the_container(self):
        tag = os.urandom(6).hex()
        api_env = os.path.join(self.tmp, "api.env")
        write_atomic(api_env, f"GREETING=first-{tag}\n")
        r = self.repo()
        r.write("api.yaml", f"{HDR}kind: Container\nmetadata: {{name: api}}\nspec:\n"
                            f"  image: {self.podman_env.IMAGE}\n  command: [/bin/sleep, \"300\"]\n"
                            f"  network: none\n  stopTimeout: 1s\n  envFiles: [{api_env}]\n")
        r.commit()
        self.reconcile(r)
        cid, env = self.container("api")
        self.assertIn(f"GREETING=first-{tag}", env)
        self.assertIn("0 to restart", self.reconcile(r).out)
        self.assertEqual(self.container("api")[0], cid)
        write_atomic(api_env, f"GREETING=second-{tag}\n")
        dry = self.reconcile(r, "--dry-run", expect=2)
        self.assertRegex(dry.out, f"! Container/api +restart  envFile {re.escape(api_env)} changed\n")
        res = self.reconcile(r)
        new_cid, env = self.container("api")
        self.assertNotEqual(new_cid, cid)
        self.assertIn(f"GREETING=second-{tag}", env)
        self.assertIn("0 to restart", self.reconcile(r).out)
        for t in (dry.out, dry.err, res.out, res.err):
            self.assertNotIn(f"second-{tag}", t)
            self.assertNotIn(sha256_of(api_env), t)
