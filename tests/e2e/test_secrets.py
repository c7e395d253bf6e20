"""secretEnvFiles end to end with real age keys: the workload (Process and
Container) sees the decrypted variables and nothing else ever shows them; a
rotated file replaces the workload with a plan line that names the file only;
a file this node cannot decrypt fails its own resource alone; validate and
dry-run need no identity."""
import json
import os
import shutil
import subprocess
import unittest
import urllib.error
import urllib.request

from gwtest import CI, GITWARD, HDR, SLEEP, TempDirTest, agent_port, LISTEN_ANY, proc_yaml, records, run, wait_for, stop


def need_age():
    if shutil.which("age") and shutil.which("age-keygen"):
        return
    if CI:
        raise AssertionError("age and age-keygen are needed (Debian package age)")
    raise unittest.SkipTest("age not installed")


def keygen(path):
    """A new age identity at path; its recipient."""
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True, timeout=30)
    return subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


def encrypt(text, recipients, out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    args = ["age", "-o", out]
    for r in recipients:
        args += ["-r", r]
    subprocess.run(args, input=text.encode(), check=True, timeout=30)


def read_proc(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def env_of(pid):
    return dict(e.split(b"=", 1) for e in read_proc(pid, "environ").split(b"\0") if b"=" in e)


class Keys(TempDirTest):
    def setUp(self):
        need_age()
        super().setUp()
        self.agents = []
        self.key = os.path.join(self.tmp, "node.key")
        self.other_key = os.path.join(self.tmp, "other.key")
        self.recipient = keygen(self.key)
        self.other = keygen(self.other_key)
        self.secret = "s3cr3t-" + os.urandom(8).hex()
        self.leaked = "l3ak-" + os.urandom(8).hex()  # only ever in files that fail

    def tearDown(self):
        for a in self.agents:
            stop(a)
        super().tearDown()

    def assert_nowhere(self, value, *texts):
        for t in texts:
            self.assertNotIn(value, t if isinstance(t, str) else t.decode(errors="replace"))
        for dirpath, _, files in os.walk(self.state):
            for fn in files:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    self.assertNotIn(value.encode(), f.read(), os.path.join(dirpath, fn))


class ProcessSecrets(Keys):
    def reconcile(self, repo, *args, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1", *args)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def http(self, port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def commit_three(self):
        """app: decrypts; wrongkey: encrypted to another node only; clear:
        committed without encryption (malformed); plain: no secrets."""
        r = self.repo()
        encrypt(f"# db\nTOKEN={self.secret}\nMODE=from-secret\nONLY_SECRET=yes\n", [self.recipient, self.other],
                os.path.join(r.path, "secrets/web.env.age"))
        encrypt(f"TOKEN={self.leaked}\n", [self.other], os.path.join(r.path, "secrets/other.env.age"))
        r.write("secrets/clear.env.age", f"TOKEN={self.leaked}\n")
        r.write("app.yaml", proc_yaml("app", extra="  secretEnvFiles: [secrets/web.env.age]\n"
                                      "  env: {MODE: from-git}\n"))
        r.write("wrongkey.yaml", proc_yaml("wrongkey", extra="  secretEnvFiles: [secrets/other.env.age]\n"))
        r.write("clear.yaml", proc_yaml("clear", extra="  secretEnvFiles: [secrets/clear.env.age]\n"))
        r.write("plain.yaml", proc_yaml("plain"))
        r.commit()
        return r

    def test_workload_sees_the_secrets_nothing_else_shows_them_rotation_replaces_it(self):
        r = self.commit_three()
        res = self.reconcile(r, "--age-identity", self.key, "--log-level", "debug", expect=1)
        self.assertIn("error Process/wrongkey: create failed: secretEnvFiles: secrets/other.env.age: does not "
                      f"decrypt with this node's age identity {self.key}", res.err)
        self.assertIn("error Process/clear: create failed: secretEnvFiles: secrets/clear.env.age: not an "
                      "age-encrypted file (age-encryption.org/v1)", res.err)
        recs = records(self.state)
        self.assertEqual(sorted(recs), ["app", "plain"], "nothing started with half an environment")
        env = env_of(recs["app"]["pid"])
        self.assertEqual(env[b"TOKEN"], self.secret.encode())
        self.assertEqual(env[b"ONLY_SECRET"], b"yes")
        self.assertEqual(env[b"MODE"], b"from-git", "env wins over secretEnvFiles")
        st = run("status", "--state-dir", self.state)
        stj = run("status", "--output", "json", "--state-dir", self.state)
        states = {x["name"]: x["state"] for x in stj.json()["resources"]}
        self.assertEqual(states, {"app": "running", "plain": "running", "wrongkey": "failed", "clear": "failed"})
        shim = recs["app"]["shim_pid"]
        for v in (self.secret, self.leaked):
            self.assert_nowhere(v, res.out, res.err, st.out, st.err, stj.out, read_proc(shim, "cmdline"),
                                read_proc(shim, "environ"))

        # the agent: its endpoints, argv, environment and log
        log = os.path.join(self.tmp, "agent.log")
        with open(log, "w") as f:
            a = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--interval", "1h", "--listen", LISTEN_ANY, "--age-identity", self.key,
                                  "--log-level", "debug"], stdout=f, stderr=subprocess.STDOUT)
        self.agents.append(a)
        port = agent_port(a, log)
        wait_for(lambda: self.http(port, "/healthz")[0] in (200, 503), what="agent endpoints")
        def logged():
            with open(log) as f:
                return "secrets/other.env.age" in f.read()
        wait_for(logged, what="the agent's pass to retry")
        code, status = self.http(port, "/status")
        self.assertEqual(code, 200)
        self.assertIn("secrets/clear.env.age: not an age-encrypted file", status)
        _, metrics = self.http(port, "/metrics")
        self.assertIn("gitward_", metrics)
        with open(log) as f:
            agent_log = f.read()
        for v in (self.secret, self.leaked):
            self.assert_nowhere(v, status, metrics, agent_log, read_proc(a.pid, "cmdline"),
                                read_proc(a.pid, "environ"))
        stop(a)

        # rotation: a new file replaces the workload, the plan names the file only
        old_pid = recs["app"]["pid"]
        rotated = "r0tated-" + os.urandom(8).hex()
        encrypt(f"TOKEN={rotated}\n", [self.recipient], os.path.join(r.path, "secrets/web.env.age"))
        r.commit("rotate")
        dry = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1")
        self.assertIn("  ~ Process/app          update  secret secrets/web.env.age changed\n", dry.out)
        dryj = run("reconcile", "--dry-run", "--output", "json", "--repo", r.path, "--state-dir", self.state,
                   "--node", "n1")
        app = [x for x in dryj.json()["actions"] if x["name"] == "app"][0]
        self.assertEqual(app["action"], "update")
        self.assertEqual([c["path"] for c in app["changes"]], ["spec.secrets.secrets/web.env.age"])
        res = self.reconcile(r, "--age-identity", self.key, expect=1)
        self.assertIn("  ~ Process/app          update  secret secrets/web.env.age changed\n", res.out)
        new = records(self.state)["app"]
        self.assertNotEqual(new["pid"], old_pid)
        self.assertEqual(env_of(new["pid"])[b"TOKEN"], rotated.encode())
        for v in (self.secret, self.leaked, rotated):
            self.assert_nowhere(v, res.out, res.err, dry.out, dry.err, dryj.out)

    def test_missing_identity_fails_only_that_resource_validate_and_dry_run_need_none(self):
        r = self.repo()
        encrypt(f"TOKEN={self.secret}\n", [self.recipient], os.path.join(r.path, "secrets/web.env.age"))
        r.write("app.yaml", proc_yaml("app", extra="  secretEnvFiles: [secrets/web.env.age]\n"))
        r.write("plain.yaml", proc_yaml("plain"))
        r.commit()
        val = run("validate", os.path.join(r.path, "app.yaml"), os.path.join(r.path, "plain.yaml"))
        self.assertEqual(val.rc, 0, val)
        dry = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(dry.rc, 2, dry)  # changes pending
        self.assertIn(f"  + Process/app          create  {SLEEP}\n", dry.out)
        res = self.reconcile(r, expect=1)
        self.assertIn("error Process/app: create failed: secretEnvFiles: secrets/web.env.age: no age identity on "
                      "this node (--age-identity FILE)", res.err)
        self.assertEqual(sorted(records(self.state)), ["plain"])
        res2 = self.reconcile(r, "--age-identity", os.path.join(self.tmp, "nope.key"), expect=1)
        self.assertIn("secretEnvFiles: secrets/web.env.age: cannot read the age identity "
                      f"{os.path.join(self.tmp, 'nope.key')}: No such file or directory", res2.err)
        self.assertEqual(sorted(records(self.state)), ["plain"])
        self.assert_nowhere(self.secret, res.out, res.err, res2.out, res2.err, dry.out)
        # with the identity, it starts
        self.reconcile(r, "--age-identity", self.key)
        self.assertEqual(env_of(records(self.state)["app"]["pid"])[b"TOKEN"], self.secret.encode())

    def test_reencrypt_helper_moves_every_secret_file_to_a_new_recipient_list(self):
        r = self.repo()
        third_key = os.path.join(self.tmp, "third.key")
        third = keygen(third_key)
        encrypt(f"TOKEN={self.secret}\n", [self.other], os.path.join(r.path, "secrets/a.env.age"))
        encrypt("B=2\n", [self.other], os.path.join(r.path, "group1/b.env.age"))
        r.write("app.yaml", proc_yaml("app", extra="  secretEnvFiles: [secrets/a.env.age, group1/b.env.age]\n"))
        r.commit()
        res = self.reconcile(r, "--age-identity", self.key, expect=1)
        self.assertIn("secrets/a.env.age: does not decrypt with this node's age identity", res.err)
        rec = os.path.join(self.tmp, "recipients.txt")
        with open(rec, "w") as f:
            f.write(f"# nodes of group 1\n{self.recipient}\n{third}\n")
        helper = os.path.join(os.path.dirname(__file__), "../../contrib/gitward-reencrypt")
        cp = subprocess.run([helper, "-i", self.other_key, "-R", rec], cwd=r.path, capture_output=True, text=True,
                            timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("2 file(s) re-encrypted to 2 recipient(s)", cp.stdout)
        self.assertNotIn(self.secret, cp.stdout + cp.stderr)
        r.commit("re-encrypt")
        for k in (self.key, third_key):  # both new recipients read it, the old one no longer does
            out = subprocess.run(["age", "-d", "-i", k, os.path.join(r.path, "secrets/a.env.age")],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, f"TOKEN={self.secret}\n")
        old = subprocess.run(["age", "-d", "-i", self.other_key, os.path.join(r.path, "secrets/a.env.age")],
                             capture_output=True, timeout=30)
        self.assertNotEqual(old.returncode, 0)
        self.reconcile(r, "--age-identity", self.key)
        env = env_of(records(self.state)["app"]["pid"])
        self.assertEqual((env[b"TOKEN"], env[b"B"]), (self.secret.encode(), b"2"))
        # a file the identity cannot read stops the helper and is left as it was
        before = read_file(os.path.join(r.path, "group1/b.env.age"))
        cp = subprocess.run([helper, "-i", self.other_key, "-R", rec, "group1/b.env.age"], cwd=r.path,
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("group1/b.env.age: not re-encrypted (left as it was)", cp.stderr)
        self.assertEqual(read_file(os.path.join(r.path, "group1/b.env.age")), before)

    def test_a_file_missing_from_the_commit_is_an_error_at_its_entry(self):
        r = self.repo()
        r.write("app.yaml", proc_yaml("app", extra="  secretEnvFiles:\n    - secrets/a.env.age\n    - ../x\n"))
        r.commit()
        val = run("validate", os.path.join(r.path, "app.yaml"))
        self.assertEqual(val.rc, 1, val)
        self.assertIn('app.yaml:8:7: spec.secretEnvFiles[1]: expected a path relative to the repository root '
                      '(no leading /, no . or .. parts), got "../x"', val.err)
        r.write("app.yaml", proc_yaml("app", extra="  secretEnvFiles:\n    - secrets/a.env.age\n"))
        head = r.commit()
        dry = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(dry.rc, 1, dry)
        self.assertIn(f"app.yaml:7:7: spec.secretEnvFiles[0]: secrets/a.env.age does not exist in commit "
                      f"{head[:12]}", dry.err)


def podman_module():
    import podman_env
    return podman_env


class ContainerSecrets(Keys):
    @classmethod
    def setUpClass(cls):
        need_age()
        cls.podman_env = podman_module()
        cls.podman_env.setup_module()

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

    def cont_yaml(self, name, extra=""):
        return (f"{HDR}kind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {self.podman_env.IMAGE}\n"
                f"  command: [/bin/sleep, \"300\"]\n  network: none\n  stopTimeout: 1s\n{extra}")

    def reconcile(self, repo, *args, expect=0):
        res = run("reconcile", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                  "--container-socket", self.pm.socket, *args, timeout=300)
        if expect is not None:
            self.assertEqual(res.rc, expect, res)
        return res

    def ids(self):
        out = self.pm.podman("ps", "-a", "--filter", f"label=gitward.state-dir={self.state}", "--format", "json")
        return {c["Labels"]["gitward.name"]: c["Id"][:12] for c in json.loads(out or "[]")}

    def test_container_gets_the_secrets_failures_stay_local_rotation_replaces_it(self):
        r = self.repo()
        encrypt(f"TOKEN={self.secret}\nMODE=from-secret\n", [self.recipient],
                os.path.join(r.path, "secrets/api.env.age"))
        encrypt(f"TOKEN={self.leaked}\n", [self.other], os.path.join(r.path, "secrets/other.env.age"))
        r.write("api.yaml", self.cont_yaml("api", "  secretEnvFiles: [secrets/api.env.age]\n  env: {MODE: git}\n"))
        r.write("wrong.yaml", self.cont_yaml("wrong", "  secretEnvFiles: [secrets/other.env.age]\n"))
        r.write("plain.yaml", self.cont_yaml("plain"))
        r.commit()
        dry = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--container-socket", self.pm.socket)
        self.assertEqual(dry.rc, 2, dry)  # changes pending, no identity needed
        res = self.reconcile(r, "--age-identity", self.key, expect=1)
        self.assertIn("error Container/wrong: create failed: secretEnvFiles: secrets/other.env.age: does not "
                      f"decrypt with this node's age identity {self.key}", res.err)
        self.assertEqual(sorted(self.ids()), ["api", "plain"], "nothing created with half an environment")
        # the engine keeps the env in the container's config: inspect shows it (documented)
        env = json.loads(self.pm.podman("inspect", "gitward-api", "--format", "{{json .Config.Env}}"))
        self.assertIn(f"TOKEN={self.secret}", env)
        self.assertIn("MODE=git", env)
        out = self.pm.podman("exec", "gitward-api", "/bin/env")
        self.assertIn(f"TOKEN={self.secret}", out.splitlines())
        st = run("status", "--output", "json", "--state-dir", self.state)
        for v in (self.secret, self.leaked):
            self.assert_nowhere(v, res.out, res.err, dry.out, st.out)
        labels = self.pm.podman("inspect", "gitward-api", "--format", "{{json .Config.Labels}}")
        self.assertNotIn(self.secret, labels)
        # rotation
        first = self.ids()["api"]
        rotated = "r0tated-" + os.urandom(8).hex()
        encrypt(f"TOKEN={rotated}\n", [self.recipient], os.path.join(r.path, "secrets/api.env.age"))
        r.commit("rotate")
        res = self.reconcile(r, "--age-identity", self.key, expect=1)
        self.assertIn("  ~ Container/api        update  secret secrets/api.env.age changed\n", res.out)
        self.assertNotEqual(self.ids()["api"], first)
        env = json.loads(self.pm.podman("inspect", "gitward-api", "--format", "{{json .Config.Env}}"))
        self.assertIn(f"TOKEN={rotated}", env)
        for v in (self.secret, self.leaked, rotated):
            self.assert_nowhere(v, res.out, res.err)


if __name__ == "__main__":
    unittest.main()
