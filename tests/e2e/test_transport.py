"""End to end over real Git servers on loopback: smart HTTP, HTTPS (a test
CA), HTTPS with basic auth, and SSH (ssh:// and scp-like), served by nginx +
fcgiwrap + git http-backend and sshd that gitservers.py starts once per
class. Every fetch case, trust and credential option, failure and timeout."""
import json
import os
import re
import shutil
import signal
import subprocess
import socket
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from gitservers import CI, GitServers, SilentServer
from gwtest import GITWARD, LISTEN_ANY, agent_port, Repo, Result, proc_yaml, wait_for, stop

# what a developer's shell may hold that would change how gitward authenticates
SCRUB = ("SSH_AUTH_SOCK", "GITWARD_SSH_KEY", "GITWARD_GIT_USERNAME", "GITWARD_GIT_PASSWORD", "SSL_CERT_FILE",
         "SSL_CERT_DIR")


def run(*args, env=None, timeout=120):
    """gitward with a scrubbed environment plus env."""
    e = {k: v for k, v in os.environ.items() if k not in SCRUB}
    e.update(env or {})
    cp = subprocess.run([GITWARD, *args], capture_output=True, text=True, timeout=timeout, env=e)
    return Result(cp)


class Servers(unittest.TestCase):
    """One set of servers for the class; a temp dir per test."""

    @classmethod
    def setUpClass(cls):
        cls.servers = GitServers()
        cls.servers.start()
        cls.ctmp = tempfile.mkdtemp(prefix="gw-transport-")
        s = cls.servers
        cls.secret = s.password
        cls.pwfile = os.path.join(cls.ctmp, "password")
        with open(cls.pwfile, "w") as f:
            f.write(s.password + "\n")  # the trailing newline is not part of it
        # a HOME without ~/.ssh: no default key, no default known_hosts
        cls.home = os.path.join(cls.ctmp, "home")
        os.makedirs(cls.home)
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        cls.servers.stop()
        shutil.rmtree(cls.ctmp, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="t-", dir=self.ctmp)
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers -----------------------------------------------------------

    def env(self, **extra):
        return {"HOME": self.home, **extra}

    def unique(self, stem):
        type(self).counter += 1
        return f"{stem}{type(self).counter}"

    def publish(self, private=False, name=None):
        """A work repo with one manifest, pushed to a new bare repo on the
        servers: (work Repo, bare path, name, first commit)."""
        name = name or self.unique("r")
        bare = self.servers.bare(name, private=private)
        work = Repo(os.path.join(self.tmp, "work-" + name))
        work.write("apps/a.yaml", proc_yaml("a"))
        work.write("none/README", "a folder without manifests: --path none applies nothing\n")
        c1 = work.commit("init")
        work.git("push", "-q", bare, "main")
        return work, bare, name, c1

    def publish_empty(self, private=False):
        """A repo whose tip has no manifests (for agents: nothing to run)."""
        work, bare, name, _ = self.publish(private=private)
        work.remove("apps")
        work.write("README.md", "nothing here\n")
        c = work.commit("no manifests")
        work.git("push", "-q", bare, "main")
        return name, c

    def url(self, transport, name):
        s = self.servers
        if transport == "http":
            return s.http_url(name)
        if transport in ("https", "https_auth"):
            return s.https_url(name, private=transport == "https_auth")
        if transport == "ssh":
            return s.ssh_url(name)
        if transport == "scp":
            if not s.scp_host:
                msg = "no loopback address with port 22 free for the scp-like URL"
                if CI:
                    self.fail(msg)
                self.skipTest(msg)
            return s.scp_url(name)
        raise ValueError(transport)

    def trust_args(self, transport):
        s = self.servers
        if transport == "https":
            return ["--ca-file", s.ca_file]
        if transport == "https_auth":
            return ["--ca-file", s.ca_file, "--git-username", s.user, "--git-password-file", self.pwfile]
        if transport in ("ssh", "scp"):
            return ["--ssh-key", s.client_key, "--known-hosts", s.known_hosts]
        return []

    def dry(self, url, state, *args, env=None, timeout=120):
        res = run("reconcile", "--dry-run", "--output", "json", "--repo", url, "--state-dir", state, "--node", "n1",
                  *args, env=self.env(**(env or {})), timeout=timeout)
        self.assertNotIn("corrupt", res.err, res)
        self.assertNotIn(self.secret, res.out + res.err, "the password leaked")
        return res

    def fetch_ok(self, url, state, *args, commit=None, ref=None):
        """A real `reconcile` (not a dry-run: that never writes the cache) of a
        folder without manifests: it fetches into the state dir's cache and
        applies nothing."""
        res = run("reconcile", "--output", "json", "--repo", url, "--state-dir", state, "--node", "n1",
                  "--path", "none", *args, env=self.env(), timeout=120)
        self.assertNotIn("corrupt", res.err, res)
        self.assertNotIn(self.secret, res.out + res.err, "the password leaked")
        self.assertEqual(res.rc, 0, res)
        doc = res.json()
        if commit:
            self.assertEqual(doc["commit"], commit, res)
        if ref:
            self.assertEqual(doc["ref"], ref, res)
        return doc

    def ok(self, url, state, *args, commit=None, ref=None, **kw):
        res = self.dry(url, state, *args, **kw)
        self.assertEqual(res.rc, 2, res)
        doc = res.json()
        if commit:
            self.assertEqual(doc["commit"], commit, res)
        if ref:
            self.assertEqual(doc["ref"], ref, res)
        return doc

    def fails(self, url, state, *args, fragments=(), **kw):
        res = self.dry(url, state, *args, **kw)
        self.assertEqual(res.rc, 1, res)
        for frag in fragments:
            self.assertIn(frag, res.err, res)
        return res

    def state_dir(self):
        return os.path.join(self.tmp, self.unique("state"))

    def assert_secret_absent(self, state, *texts, secret=None):
        """The password (or secret) is nowhere: given outputs, every file under
        the state dir (binary-safe), `gitward status` in text and JSON."""
        secret = secret or self.secret
        needle = secret.encode()
        for i, t in enumerate(texts):
            self.assertNotIn(secret, t, f"the password leaked in output {i}")
        for dirpath, _, files in os.walk(state):
            for f in files:
                p = os.path.join(dirpath, f)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as fh:
                        self.assertNotIn(needle, fh.read(), f"the password leaked into {p}")
        for args in (("status",), ("status", "--output", "json")):
            r = run(*args, "--state-dir", state, env=self.env())
            self.assertNotIn(secret, r.out + r.err, f"the password leaked in `gitward {' '.join(args)}`")

    # ---- agent -------------------------------------------------------------

    def agent(self, url, state, *args, env=None):
        log = os.path.join(self.tmp, self.unique("agent") + ".log")
        with open(log, "w") as f:
            p = subprocess.Popen([GITWARD, "agent", "--repo", url, "--state-dir", state, "--node", "n1",
                                  "--listen", LISTEN_ANY, "--interval", "1s", *args],
                                 stdout=f, stderr=subprocess.STDOUT,
                                 env={**{k: v for k, v in os.environ.items() if k not in SCRUB},
                                      **self.env(**(env or {}))})
        self.agents.append(p)
        p.port, p.log = agent_port(p, log), log
        wait_for(lambda: self.http(p, "/healthz") == (200, "ok\n") or p.poll() is not None, timeout=120,
                 what="agent endpoints")
        self.assertIsNone(p.poll(), self.agent_log(p))
        return p

    def http(self, agent, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}{path}", timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def agent_log(self, agent):
        with open(agent.log, errors="replace") as f:
            return f.read()

    def passes(self, agent, result):
        _, text = self.http(agent, "/metrics")
        for line in text.splitlines():
            if line.startswith(f'gitward_sync_total{{result="{result}"}}'):
                return int(line.split()[-1])
        return 0

    def stop_agent(self, agent):
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=120)
        self.assertEqual(agent.returncode, 0, self.agent_log(agent))


class Fetch(Servers):
    """Every fetch case over every transport, asserting the commit id."""

    def lifecycle(self, transport):
        work, bare, name, c1 = self.publish(private=transport == "https_auth")
        work.git("tag", "-a", "-m", "v1", "v1")
        work.git("branch", "other")
        work.git("push", "-q", bare, "v1", "other")
        url, args, state = self.url(transport, name), self.trust_args(transport), self.state_dir()

        # a dry-run sees the commit and writes nothing in the state dir
        self.ok(url, state, *args, commit=c1, ref="main")
        self.assertFalse(os.path.exists(state), "a dry-run wrote the state dir")

        # first clone, then an unchanged fetch that fetches (not re-clones)
        self.fetch_ok(url, state, *args, commit=c1, ref="main")
        marker = os.path.join(state, "repo.git", "gitward-marker")
        open(marker, "w").close()
        self.fetch_ok(url, state, *args, commit=c1, ref="main")

        # a new commit
        work.write("apps/b.yaml", proc_yaml("b"))
        c2 = work.commit("b")
        work.git("push", "-q", bare, "main")
        self.fetch_ok(url, state, *args, commit=c2, ref="main")

        # a force-push rewrites history: c2 is gone from main, and c3 does
        # not descend from c2, the commit in force: refused (exit 1, c2
        # stays), then accepted with --allow-rewind
        work.git("reset", "-q", "--hard", c1)
        work.write("apps/c.yaml", proc_yaml("c"))
        c3 = work.commit("c")
        work.git("push", "-q", "-f", bare, "main")
        res = run("reconcile", "--repo", url, "--state-dir", state, "--node", "n1", "--path", "none", *args,
                  env=self.env(), timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"branch main moved from {c2[:12]} to {c3[:12]}, which does not descend from it", res.err)
        self.assertIn("--allow-rewind", res.err)
        with open(os.path.join(state, "state.json")) as f:
            st = json.load(f)
        self.assertEqual((st["commit"], st["last_attempt_result"]), (c2, "rewind"), st)
        self.fetch_ok(url, state, *args, "--allow-rewind", commit=c3, ref="main")

        # pins: an annotated tag, full commit ids
        self.fetch_ok(url, state, *args, "--ref", "v1", commit=c1)
        self.fetch_ok(url, state, *args, "--ref", c3, commit=c3, ref=c3)
        self.fetch_ok(url, state, *args, "--ref", c1, commit=c1, ref=c1)

        # a deleted branch is pruned from the cache; --ref to it fails cleanly
        def cached_gone():
            return subprocess.run(["git", "-C", os.path.join(state, "repo.git"), "for-each-ref",
                                   "refs/remotes/origin/gone"], capture_output=True, text=True, timeout=30).stdout

        work.git("push", "-q", bare, f"{c3}:refs/heads/gone")
        self.fetch_ok(url, state, *args, "--ref", "gone", commit=c3, ref="gone")
        self.assertIn(c3, cached_gone())
        work.git("push", "-q", bare, ":refs/heads/gone")
        res = run("reconcile", "--repo", url, "--state-dir", state, "--node", "n1", "--path", "none", *args,
                  "--ref", "gone", env=self.env(), timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn('ref "gone" not found', res.err, res)
        self.assertEqual(cached_gone(), "", "the deleted branch is still in the cache")

        # the server's default branch changes
        subprocess.run(["git", "-C", bare, "symbolic-ref", "HEAD", "refs/heads/other"], check=True, timeout=30)
        self.fetch_ok(url, state, *args, commit=c1, ref="other")

        self.assertTrue(os.path.exists(marker), "the cache was re-cloned instead of fetched")
        # a dry-run beside that cache borrows it and sees the same commit
        self.ok(url, state, *args, commit=c1, ref="other")
        self.assert_secret_absent(state)

    def test_lifecycle_http(self):
        self.lifecycle("http")

    def test_lifecycle_https(self):
        self.lifecycle("https")

    def test_lifecycle_https_basic_auth(self):
        self.lifecycle("https_auth")

    def test_lifecycle_ssh(self):
        self.lifecycle("ssh")

    def test_lifecycle_scp_like(self):
        self.lifecycle("scp")

    def test_ssh_and_scp_like_urls_share_the_cache(self):
        """The same repo by ssh:// and by scp-like syntax: one cache, the URL
        updated, no re-clone."""
        _, _, name, c1 = self.publish()
        state, args = self.state_dir(), self.trust_args("ssh")
        self.ok(self.url("ssh", name), state, *args, commit=c1)
        self.ok(self.url("scp", name), state, *args, commit=c1)


class Trust(Servers):
    """Certificates, host keys and credentials: verification on by default,
    the options that configure it, and failures that leave nothing corrupt."""

    def test_https_needs_the_ca_and_says_which_option(self):
        _, _, name, c1 = self.publish()
        url, state = self.url("https", name), self.state_dir()
        msg = ("certificate", "--ca-file")
        self.fails(url, state, fragments=msg)  # the system store does not know the test CA
        self.fails(url, state, "--ca-file", self.servers.other_ca_file, fragments=msg)
        # the failed first clones left nothing taken for a corrupt cache
        self.ok(url, state, "--ca-file", self.servers.ca_file, commit=c1)

    def test_insecure_skip_tls_verify_warns(self):
        _, _, name, c1 = self.publish()
        res = self.dry(self.url("https", name), self.state_dir(), "--insecure-skip-tls-verify")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["commit"], c1)
        self.assertIn("TLS verification is OFF", res.err)

    def test_insecure_skip_tls_verify_warns_on_every_agent_pass(self):
        name, _ = self.publish_empty()
        a = self.agent(self.url("https", name), self.state_dir(), "--insecure-skip-tls-verify", "--allow-empty")
        wait_for(lambda: self.passes(a, "success") >= 3 or a.poll() is not None, timeout=180, what="three passes")
        self.stop_agent(a)
        log = self.agent_log(a)
        self.assertGreaterEqual(log.count("TLS verification is OFF"), 3, log)

    def test_unknown_host_key_is_refused_with_the_keyscan_hint(self):
        _, _, name, c1 = self.publish()
        kh = os.path.join(self.tmp, "known_hosts")
        open(kh, "w").close()
        url, state, port = self.url("ssh", name), self.state_dir(), self.servers.ssh_port
        args = ("--ssh-key", self.servers.client_key, "--known-hosts", kh)
        self.fails(url, state, *args, fragments=("is not in", f"ssh-keyscan -p {port} 127.0.0.1 >> {kh}"))
        # trusting it as the hint says (the line built from the host key) fixes it
        with open(kh, "w") as f:
            f.write(self.servers.known_hosts_line())
        self.ok(url, state, *args, commit=c1)

    def test_changed_host_key_is_refused_as_changed(self):
        _, _, name, c1 = self.publish()
        kh = self.servers.write_known_hosts(os.path.join(self.tmp, "known_hosts"), other=True)
        url, state = self.url("ssh", name), self.state_dir()
        args = ("--ssh-key", self.servers.client_key, "--known-hosts", kh)
        self.fails(url, state, *args, fragments=("CHANGED",))
        self.servers.write_known_hosts(kh)
        self.ok(url, state, *args, commit=c1)

    def test_default_known_hosts_and_env_ssh_key(self):
        _, _, name, c1 = self.publish()
        home = os.path.join(self.tmp, "home")
        os.makedirs(os.path.join(home, ".ssh"))
        self.servers.write_known_hosts(os.path.join(home, ".ssh", "known_hosts"))
        self.ok(self.url("ssh", name), self.state_dir(), commit=c1,
                env={"HOME": home, "GITWARD_SSH_KEY": self.servers.client_key})

    def test_ssh_key_not_authorized(self):
        _, _, name, c1 = self.publish()
        stranger = os.path.join(self.tmp, "stranger")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", stranger], check=True, timeout=30)
        url, state, kh = self.url("ssh", name), self.state_dir(), self.servers.known_hosts
        self.fails(url, state, "--ssh-key", stranger, "--known-hosts", kh,
                   fragments=("authentication failed", "refused the ssh key " + stranger))
        missing = os.path.join(self.tmp, "no-such-key")
        self.fails(url, state, "--ssh-key", missing, "--known-hosts", kh,
                   fragments=(f"ssh key {missing}: No such file or directory",))
        # no key at all: no agent, no ~/.ssh/id_*
        self.fails(url, state, "--known-hosts", kh, fragments=("authentication failed", "give --ssh-key FILE"))
        self.ok(url, state, *self.trust_args("ssh"), commit=c1)

    def test_credentials_from_options_env_and_url(self):
        _, _, name, c1 = self.publish(private=True)
        s = self.servers
        url = s.https_url(name, private=True)
        ca = ("--ca-file", s.ca_file)
        st = self.state_dir()
        self.ok(url, st, *ca, "--git-username", s.user, "--git-password-file", self.pwfile, commit=c1)
        self.assert_secret_absent(st)
        st = self.state_dir()
        # the environment: the secret is in this test's env, never in gitward's output or files
        self.ok(url, st, *ca, commit=c1, env={"GITWARD_GIT_USERNAME": s.user, "GITWARD_GIT_PASSWORD": s.password})
        self.assert_secret_absent(st)
        st = self.state_dir()
        userinfo_url = s.https_url(name, private=True, userinfo=f"{s.user}:{s.password}")
        res = self.dry(userinfo_url, st, *ca)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["commit"], c1)
        self.assert_secret_absent(st, res.out, res.err)

    def test_wrong_or_missing_password(self):
        _, _, name, c1 = self.publish(private=True)
        s = self.servers
        url, st = s.https_url(name, private=True), self.state_dir()
        ca = ("--ca-file", s.ca_file)
        bad = os.path.join(self.tmp, "bad-password")
        with open(bad, "w") as f:
            f.write("not-" + s.password + "\n")
        self.fails(url, st, *ca, "--git-username", s.user, "--git-password-file", bad, fragments=("authentication",))
        self.assert_secret_absent(st)
        self.fails(url, st, *ca, fragments=("authentication",))
        # a wrong password in the URL is masked as well
        wrong = s.https_url(name, private=True, userinfo=f"{s.user}:{s.password}x")
        res = self.fails(wrong, st, *ca, fragments=("authentication",))
        self.assert_secret_absent(st, res.out, res.err)
        self.ok(url, st, *ca, "--git-username", s.user, "--git-password-file", self.pwfile, commit=c1)
        self.assert_secret_absent(st)

    def test_closed_port_then_the_right_url(self):
        _, _, name, c1 = self.publish()
        st = self.state_dir()
        # a port bound by this test and never listened on: connections to it are refused
        closed = socket.socket()
        self.addCleanup(closed.close)
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        self.fails(f"http://127.0.0.1:{port}/{name}.git", st, fragments=("cannot reach the remote",))
        self.ok(self.url("http", name), st, commit=c1)
        # the same with runs that keep a cache: the failed first clone leaves none behind
        res = run("reconcile", "--repo", f"http://127.0.0.1:{port}/{name}.git", "--state-dir", st,
                  "--node", "n1", "--path", "none", env=self.env(), timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("cannot reach the remote", res.err)
        self.assertFalse(os.path.exists(os.path.join(st, "repo.git")), "a failed first clone left a cache")
        self.assertFalse(os.path.exists(os.path.join(st, "repo.git.partial")))
        self.fetch_ok(self.url("http", name), st, commit=c1)

    def test_config_file_equivalents(self):
        _, _, name, c1 = self.publish(private=True)
        _, _, pub, p1 = self.publish()
        s = self.servers
        cfg = os.path.join(self.tmp, "https.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {s.https_url(name, private=True)}\nca-file: {s.ca_file}\ngit-username: {s.user}\n"
                    f"git-password-file: {self.pwfile}\ngit-timeout: 20s\n")
        st = self.state_dir()
        res = run("reconcile", "--dry-run", "--output", "json", "--config", cfg, "--state-dir", st, env=self.env())
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["commit"], c1)
        self.assert_secret_absent(st, res.out, res.err)
        cfg = os.path.join(self.tmp, "ssh.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {s.ssh_url(pub)}\nssh-key: {s.client_key}\nknown-hosts: {s.known_hosts}\n")
        res = run("reconcile", "--dry-run", "--output", "json", "--config", cfg, "--state-dir", self.state_dir(),
                  env=self.env())
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["commit"], p1)
        cfg = os.path.join(self.tmp, "insecure.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {s.https_url(pub)}\ninsecure-skip-tls-verify: true\n")
        res = run("reconcile", "--dry-run", "--output", "json", "--config", cfg, "--state-dir", self.state_dir(),
                  env=self.env())
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["commit"], p1)
        self.assertIn("TLS verification is OFF", res.err)

    def test_agent_never_shows_the_password(self):
        """The password in the URL: not in logs, /status, /metrics, /healthz,
        the state dir, `status`, nor the agent's /proc cmdline and environ."""
        name, c2 = self.publish_empty(private=True)
        s, st = self.servers, self.state_dir()
        url = s.https_url(name, private=True, userinfo=f"{s.user}:{s.password}")
        a = self.agent(url, st, "--ca-file", s.ca_file, "--allow-empty")
        wait_for(lambda: self.passes(a, "success") >= 2 or a.poll() is not None, timeout=180, what="two passes")
        self.assertIsNone(a.poll(), self.agent_log(a))
        texts = [self.http(a, p)[1] for p in ("/status", "/metrics", "/healthz")]
        self.assertIn(c2, texts[0])
        for what in ("cmdline", "environ"):
            with open(f"/proc/{a.pid}/{what}", "rb") as f:
                self.assertNotIn(self.secret.encode(), f.read(), f"the password is in /proc/<agent>/{what}")
        self.stop_agent(a)
        self.assert_secret_absent(st, self.agent_log(a), *texts)

    def test_a_token_as_the_user_or_in_the_query_is_never_shown(self):
        """https://TOKEN@host/... authenticates (the token is the user, the
        password empty) and neither it nor a ?access_token= query is in
        /proc/<agent>/cmdline, the log, the state dir, `status`, /status,
        last_error included (a second agent whose fetch fails)."""
        s = self.servers
        query = "SECRETTOKEN456"
        # a one-shot reconcile through both: the cache's config and the
        # recorded repository name neither (libgit2 1.5 sends no query)
        _, _, one, c1 = self.publish(private=True)
        st = self.state_dir()
        self.fetch_ok(s.https_url(one, private=True, userinfo=s.token) + "?access_token=" + query, st, "--ca-file",
                      s.ca_file, commit=c1)
        for token in (s.token, query):
            self.assert_secret_absent(st, secret=token)
        name, c2 = self.publish_empty(private=True)
        good, bad = self.state_dir(), self.state_dir()
        a = self.agent(s.https_url(name, private=True, userinfo=s.token), good, "--ca-file", s.ca_file,
                       "--allow-empty")
        b = self.agent(s.https_url("no-such-repo", private=True, userinfo=s.token) + "?access_token=" + query, bad,
                       "--ca-file", s.ca_file)
        wait_for(lambda: self.passes(a, "success") >= 2 or a.poll() is not None, timeout=180, what="two passes")
        self.assertIsNone(a.poll(), self.agent_log(a))

        def last_error():
            try:
                with open(os.path.join(bad, "state.json")) as f:
                    return json.load(f).get("last_error")
            except (OSError, ValueError):
                return None

        wait_for(lambda: last_error() or b.poll() is not None, timeout=180, what="a failed fetch recorded")
        self.assertIsNone(b.poll(), self.agent_log(b))
        self.assertIn("127.0.0.1", last_error())
        for agent, st in ((a, good), (b, bad)):
            texts = [self.http(agent, "/status")[1]]
            with open(f"/proc/{agent.pid}/cmdline", "rb") as f:
                texts.append(f.read().decode(errors="replace"))
            self.stop_agent(agent)
            texts.append(self.agent_log(agent))
            self.assertIn("agent started: repo https://***@127.0.0.1", texts[-1])
            for token in (s.token, query):
                self.assert_secret_absent(st, *texts, secret=token)
        self.assertIn(c2, self.http_status_commit(good))

    def http_status_commit(self, state):
        with open(os.path.join(state, "state.json")) as f:
            return json.load(f)["commit"] or ""


class Timeouts(Servers):
    """A server that accepts the connection and never answers."""

    def setUp(self):
        super().setUp()
        self.silent = SilentServer()

    def tearDown(self):
        self.silent.stop()
        super().tearDown()

    def test_a_silent_server_times_out(self):
        port = self.silent.port
        for url, args in ((f"http://127.0.0.1:{port}/r.git", ()),
                          (f"https://127.0.0.1:{port}/r.git", ("--ca-file", self.servers.ca_file)),
                          (f"ssh://root@127.0.0.1:{port}/srv/r.git",
                           ("--ssh-key", self.servers.client_key, "--known-hosts", self.servers.known_hosts))):
            with self.subTest(url=url):
                t0 = time.monotonic()
                res = self.dry(url, self.state_dir(), "--git-timeout", "3s", *args, timeout=120)
                took = time.monotonic() - t0
                self.assertEqual(res.rc, 1, res)
                self.assertIn("timed out", res.err, res)
                # the 3 s idle bound, not a transport's own default of minutes;
                # the rest of the bound is a loaded machine's
                self.assertLess(took, 60, res)

    def test_the_deadline_bounds_a_fetch_on_every_transport(self):
        """--git-deadline is kept by the agent's side of the fetch, whatever
        the transport: with the idle and connect timeouts at an hour, a
        silent server's fetch ends at the 3 s deadline."""
        port = self.silent.port
        for url, args in ((f"http://127.0.0.1:{port}/r.git", ()),
                          (f"https://127.0.0.1:{port}/r.git", ("--ca-file", self.servers.ca_file)),
                          (f"ssh://root@127.0.0.1:{port}/srv/r.git",
                           ("--ssh-key", self.servers.client_key, "--known-hosts", self.servers.known_hosts))):
            with self.subTest(url=url):
                res = self.dry(url, self.state_dir(), "--git-timeout", "1h", "--git-connect-timeout", "1h",
                               "--git-deadline", "3s", *args, timeout=120)
                self.assertEqual(res.rc, 1, res)
                self.assertIn("fetch exceeded --git-deadline of 3s (the server never answered)", res.err, res)

    def test_the_agent_keeps_going_and_stays_healthy(self):
        a = self.agent(f"http://127.0.0.1:{self.silent.port}/r.git", self.state_dir(), "--git-timeout", "3s")
        # /healthz answers while a pass is stuck on the server
        wait_for(lambda: self.silent.accepted >= 1, timeout=120, what="the first connection")
        self.assertEqual(self.http(a, "/healthz"), (200, "ok\n"))
        wait_for(lambda: self.agent_log(a).count("timed out") >= 2 or a.poll() is not None, timeout=180,
                 what="two passes that timed out")
        self.assertIsNone(a.poll(), self.agent_log(a))
        # the failure is logged before the pass is counted: wait for the count
        wait_for(lambda: self.passes(a, "git_error") >= 2, timeout=60, what="two git_error passes counted")
        self.assertEqual(self.http(a, "/healthz"), (200, "ok\n"))
        self.stop_agent(a)

    def test_the_fetch_is_a_fresh_gitward_process_that_sigterm_ends(self):
        """The fetch child is gitward exec'd again (`gitward __fetch`), not a
        fork of the threaded agent: its cmdline, its exe and its single
        thread say so; SIGTERM to the agent ends it at once."""
        a = self.agent(f"http://127.0.0.1:{self.silent.port}/r.git", self.state_dir(), "--git-timeout", "1m")
        wait_for(lambda: self.silent.accepted >= 1, timeout=120, what="the first connection")

        def fetch_children():
            kids = set()
            for task in os.listdir(f"/proc/{a.pid}/task"):
                with open(f"/proc/{a.pid}/task/{task}/children") as f:
                    kids.update(int(x) for x in f.read().split())
            return sorted(kids)
        kids = wait_for(fetch_children, timeout=60, what="the fetch child")
        self.assertEqual(len(kids), 1, kids)
        child = kids[0]
        with open(f"/proc/{child}/cmdline", "rb") as f:
            self.assertEqual(f.read(), b"gitward\0__fetch\0")
        self.assertEqual(os.readlink(f"/proc/{child}/exe"), os.path.realpath(GITWARD))
        with open(f"/proc/{child}/status") as f:
            self.assertIn("\nThreads:\t1\n", f.read())
        with open(f"/proc/{a.pid}/status") as f:
            threads = int(re.search(r"\nThreads:\t(\d+)\n", f.read()).group(1))
        self.assertGreater(threads, 1, "the agent has threads: a bare fork of it would be unsafe")
        # at once, not at the end of the fetch's minute without progress: the
        # bound is well under that minute, and leaves a loaded machine its time
        t0 = time.monotonic()
        self.stop_agent(a)
        self.assertLess(time.monotonic() - t0, 30, self.agent_log(a))
        wait_for(lambda: not os.path.exists(f"/proc/{child}"), timeout=30, what="the fetch child gone")
        self.assertIn("fetch abandoned: the agent is stopping", self.agent_log(a))


if __name__ == "__main__":
    unittest.main()
