"""End to end: --verify-signatures. Commits are signed by git itself, with
SSH keys made by ssh-keygen and throw-away OpenPGP keys made by gpg in
temporary homes; a refused commit is applied not at all."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.request

from gwtest import GITWARD, SLEEP, TempDirTest, agent_port, LISTEN_ANY, pid_alive, proc_yaml, records, run, wait_for, stop

TOOLS = [t for t in ("ssh-keygen", "gpg", "gpgconf") if not shutil.which(t)]
CI = bool(os.environ.get("CI"))  # under CI a missing tool fails, never skips


def sh(*args, env=None, input=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(list(args), capture_output=True, text=input is None or isinstance(input, str),
                       timeout=60, env=e, input=input)
    if r.returncode != 0:
        raise RuntimeError(f"{args}: {r.stderr}")
    return r.stdout


def kill_gpg(home):
    """gpg-agent (and dirmngr) started for a home are ours to stop."""
    if os.path.isdir(home):
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, timeout=30)


@unittest.skipIf(TOOLS and not CI, f"missing {TOOLS}")
class Signatures(TempDirTest):
    @classmethod
    def setUpClass(cls):
        if TOOLS:
            raise AssertionError(f"CI needs {TOOLS} (contrib/install-deps.sh)")
        cls.keys = tempfile.mkdtemp(prefix="gw-sig-")
        cls.homes = []
        # SSH: an allowed key and another one
        for name in ("ssh_good", "ssh_other"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", os.path.join(cls.keys, name))
        with open(os.path.join(cls.keys, "ssh_good.pub")) as f:
            cls.ssh_good_pub = f.read().strip()
        cls.allowed = os.path.join(cls.keys, "allowed_signers")
        with open(cls.allowed, "w") as f:
            f.write(f'ops@example.com namespaces="git" {cls.ssh_good_pub}\n')
        cls.ssh_other_fpr = sh("ssh-keygen", "-l", "-f", os.path.join(cls.keys, "ssh_other.pub")).split()[1]
        # OpenPGP: two throw-away keys, each in its own home, no passphrase
        cls.gpg = {}
        for name in ("pgp_good", "pgp_other"):
            home = os.path.join(cls.keys, name)
            os.mkdir(home, 0o700)
            cls.homes.append(home)
            sh("gpg", "--batch", "--homedir", home, "--passphrase", "", "--pinentry-mode", "loopback",
               "--quick-gen-key", f"{name} <{name}@example.com>", "ed25519", "sign", "1y")
            fpr = [line.split(":")[9] for line in
                   sh("gpg", "--batch", "--homedir", home, "--with-colons", "--list-keys").splitlines()
                   if line.startswith("fpr:")][0]
            cls.gpg[name] = (home, fpr)
        home, fpr = cls.gpg["pgp_good"]
        cls.pgp_asc = os.path.join(cls.keys, "good.asc")
        with open(cls.pgp_asc, "w") as f:
            f.write(sh("gpg", "--batch", "--homedir", home, "--armor", "--export", fpr))
        cls.pgp_bin = os.path.join(cls.keys, "good.gpg")
        with open(cls.pgp_bin, "wb") as f:
            f.write(subprocess.run(["gpg", "--batch", "--homedir", home, "--export", fpr], capture_output=True,
                                   check=True, timeout=60).stdout)
        home, fpr = cls.gpg["pgp_other"]
        cls.pgp_other_asc = os.path.join(cls.keys, "other.asc")
        with open(cls.pgp_other_asc, "w") as f:
            f.write(sh("gpg", "--batch", "--homedir", home, "--armor", "--export", fpr))

    @classmethod
    def tearDownClass(cls):
        for home in cls.homes:
            kill_gpg(home)
        shutil.rmtree(cls.keys, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            stop(a)
        kill_gpg(os.path.join(self.state, "gnupg"))
        super().tearDown()

    # -- helpers ----------------------------------------------------------

    def commit(self, repo, msg, key=None, allow_empty=True):
        """Commit everything; key: "ssh_good", "pgp_good", ... or None (unsigned)."""
        repo.git("add", "-A")
        args, env = [], {}
        if key and key.startswith("ssh"):
            args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={os.path.join(self.keys, key)}"]
        elif key:
            home, fpr = self.gpg[key]
            args = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}"]
            env = {"GNUPGHOME": home}
        sh("git", "-C", repo.path, *args, "commit", "-q", "--allow-empty", "-m", msg, *(["-S"] if key else []),
           env=env)
        return repo.git("rev-parse", "HEAD")

    def tamper(self, repo, commit, old, new):
        """A copy of commit with old replaced by new in its raw object (the
        gpgsig header kept), written with git hash-object; main points at it."""
        raw = sh("git", "-C", repo.path, "cat-file", "commit", commit)
        self.assertIn(old, raw)
        forged = sh("git", "-C", repo.path, "hash-object", "-t", "commit", "-w", "--stdin",
                    input=raw.replace(old, new, 1)).strip()
        repo.git("update-ref", "refs/heads/main", forged)
        return forged

    def base(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        return r

    def dry(self, repo, *args):
        return run("reconcile", "--dry-run", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                   "--verify-signatures", *args)

    def assert_accepted(self, res):
        self.assertEqual(res.rc, 2, res)
        self.assertIn(f"  + Process/a            create  {SLEEP}\n", res.out)

    def assert_refused(self, res, fragment):
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "", res)
        self.assertIn(f"gitward: error: {fragment}", res.err)

    # -- options ----------------------------------------------------------

    def test_verify_without_keys_is_a_usage_error(self):
        r = self.base()
        self.commit(r, "a", "ssh_good")
        res = self.dry(r)
        self.assertEqual(res.rc, 64, res)
        self.assertIn("gitward: --verify-signatures needs the keys to accept: --allowed-signers FILE (SSH) "
                      "and/or --gpg-keyring PATH (OpenPGP)\n", res.err)
        self.assertFalse(os.path.exists(os.path.join(self.state, "repo.git")))

    def test_usage_lists_the_options(self):
        for cmd in ("reconcile", "agent"):
            res = run(cmd, "--help")
            self.assertEqual(res.rc, 0, res)
            for opt in ("--verify-signatures", "--allowed-signers FILE", "--gpg-keyring PATH"):
                self.assertIn(opt, res.out)

    def test_options_from_the_config_file(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_good")
        conf = os.path.join(self.tmp, "gitward.yaml")
        with open(conf, "w") as f:
            f.write(f"verify-signatures: true\nallowed-signers: {self.allowed}\n")
        self.assert_accepted(run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state,
                                 "--config", conf))
        self.commit(r, "b")
        self.assert_refused(run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state,
                                "--config", conf), f"commit {r.git('rev-parse', 'HEAD')[:12]} is not signed\n")
        with open(conf, "w") as f:
            f.write(f"verify-signatures: yes\ngpg-keyring: {self.pgp_asc}\n")
        r.git("reset", "-q", "--hard", head)
        self.commit(r, "c", "pgp_good")
        self.assert_accepted(run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state,
                                 "--config", conf))

    # -- SSH --------------------------------------------------------------

    def test_ssh_good_signature_is_accepted(self):
        r = self.base()
        self.commit(r, "a", "ssh_good")
        self.assert_accepted(self.dry(r, "--allowed-signers", self.allowed))

    def test_unsigned_commit_is_refused_before_its_manifests_are_read(self):
        r = self.base()
        r.write("broken.yaml", "kind: [\n")
        head = self.commit(r, "a")
        res = self.dry(r, "--allowed-signers", self.allowed)
        self.assert_refused(res, f"commit {head[:12]} is not signed\n")
        self.assertNotIn("broken.yaml", res.err)
        # JSON output carries the same error
        res = self.dry(r, "--allowed-signers", self.allowed, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"commit {head[:12]} is not signed", json.dumps(res.json()["errors"]))

    def test_ssh_signature_by_another_key_is_refused(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_other")
        self.assert_refused(self.dry(r, "--allowed-signers", self.allowed),
                            f"commit {head[:12]} is signed by a key that is not allowed ({self.ssh_other_fpr})\n")

    def test_ssh_signature_without_allowed_signers_is_refused(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_good")
        self.assert_refused(self.dry(r, "--gpg-keyring", self.pgp_asc),
                            f"commit {head[:12]} is signed by a key that is not allowed (SSH key SHA256:")

    def test_ssh_namespace_restriction_of_allowed_signers_applies(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_good")
        only_files = os.path.join(self.tmp, "allowed_file_ns")
        with open(only_files, "w") as f:
            f.write(f'ops@example.com namespaces="file" {self.ssh_good_pub}\n')
        res = self.dry(r, "--allowed-signers", only_files)
        self.assert_refused(res, f"commit {head[:12]} is signed by a key that is not allowed (SHA256:")

    def test_ssh_tampered_commit_has_a_bad_signature(self):
        r = self.base()
        head = self.commit(r, "deploy v1", "ssh_good")
        forged = self.tamper(r, head, "deploy v1", "deploy v2")
        self.assert_refused(self.dry(r, "--allowed-signers", self.allowed),
                            f"commit {forged[:12]} has a bad signature (ssh-keygen: Signature verification "
                            "failed: incorrect signature)\n")

    def test_ssh_corrupted_signature_is_a_bad_signature(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_good")
        raw = sh("git", "-C", r.path, "cat-file", "commit", head)
        line = raw.splitlines()[raw.splitlines().index(" -----END SSH SIGNATURE-----") - 2]
        forged = self.tamper(r, head, line, line[:5] + ("A" if line[5] != "A" else "B") + line[6:])
        res = self.dry(r, "--allowed-signers", self.allowed)
        self.assert_refused(res, f"commit {forged[:12]} has a bad signature (ssh-keygen: ")

    def test_missing_allowed_signers_file_is_an_error(self):
        r = self.base()
        self.commit(r, "a", "ssh_good")
        missing = os.path.join(self.tmp, "nope")
        self.assert_refused(self.dry(r, "--allowed-signers", missing),
                            f"--allowed-signers {missing}: No such file or directory\n")

    def test_an_ssh_keygen_earlier_in_gitwards_path_is_never_run(self):
        # an impostor that would call every signature good and leave a mark:
        # gitward looks ssh-keygen up in its fixed PATH only, so the real one
        # refuses the other key and the impostor never runs
        r = self.base()
        head = self.commit(r, "a", "ssh_other")
        fake_dir, marker = os.path.join(self.tmp, "impostor"), os.path.join(self.tmp, "impostor-ran")
        os.makedirs(fake_dir)
        fake = os.path.join(fake_dir, "ssh-keygen")
        with open(fake, "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}\necho 'Good \"git\" signature for ops@example.com'\nexit 0\n")
        os.chmod(fake, 0o755)
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--verify-signatures", "--allowed-signers", self.allowed,
                  env={"PATH": fake_dir + ":" + os.environ["PATH"]})
        self.assert_refused(res, f"commit {head[:12]} is signed by a key that is not allowed ({self.ssh_other_fpr})\n")
        self.assertFalse(os.path.exists(marker), "the ssh-keygen in gitward's PATH ran")

    # -- OpenPGP ----------------------------------------------------------

    def test_openpgp_good_signature_with_a_keyring_directory(self):
        r = self.base()
        self.commit(r, "a", "pgp_good")
        self.assert_accepted(self.dry(r, "--gpg-keyring", self.gpg["pgp_good"][0]))
        self.assertFalse(os.path.exists(os.path.join(self.state, "gnupg")))

    def test_a_gpg_earlier_in_gitwards_path_is_never_run(self):
        # impostors of gpg and gpgconf that leave a mark and hand on to the
        # real ones: gpgme is pointed at the programs of the fixed PATH
        r = self.base()
        self.commit(r, "a", "pgp_good")
        fake_dir, marker = os.path.join(self.tmp, "impostor"), os.path.join(self.tmp, "impostor-ran")
        os.makedirs(fake_dir)
        for name in ("gpg", "gpgconf", "gpgsm", "gpg-agent"):
            real = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            fake = os.path.join(fake_dir, name)
            with open(fake, "w") as f:
                f.write(f"#!/bin/sh\necho {name} >> {marker}\nexec {real} \"$@\"\n")
            os.chmod(fake, 0o755)
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--verify-signatures", "--gpg-keyring", self.gpg["pgp_good"][0],
                  env={"PATH": fake_dir + ":" + os.environ["PATH"]})
        self.assert_accepted(res)
        self.assertFalse(os.path.exists(marker), os.path.exists(marker) and open(marker).read())

    def test_openpgp_good_signature_with_exported_key_files(self):
        r = self.base()
        self.commit(r, "a", "pgp_good")
        before = sorted(os.listdir(self.gpg["pgp_good"][0]))
        for keyfile in (self.pgp_asc, self.pgp_bin):
            res = self.dry(r, "--gpg-keyring", keyfile)
            self.assert_accepted(res)
            self.assertIn(f"OpenPGP keys of {keyfile} imported (1 key)", res.err)
            # a dry-run imports into a private home of its own: nothing in the state dir
            self.assertFalse(os.path.exists(self.state))
            self.assertEqual(sorted(os.listdir(self.gpg["pgp_good"][0])), before)
        # an apply imports into gitward's own home under the state dir, not the user's
        for keyfile in (self.pgp_asc, self.pgp_bin):
            res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                      "--verify-signatures", "--gpg-keyring", keyfile)
            self.assertEqual(res.rc, 0, res)
            self.assertIn(f"OpenPGP keys of {keyfile} imported (1 key)", res.err)
            self.assertTrue(os.path.isfile(os.path.join(self.state, "gnupg", "pubring.kbx")))
            self.assertEqual(sorted(os.listdir(self.gpg["pgp_good"][0])), before)
        # unchanged key file: not imported again
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--verify-signatures", "--gpg-keyring", self.pgp_bin)
        self.assertEqual(res.rc, 0, res)
        self.assertNotIn("imported", res.err)

    def test_openpgp_key_taken_out_of_the_file_is_no_longer_accepted(self):
        r = self.base()
        head = self.commit(r, "a", "pgp_good")
        keys = os.path.join(self.tmp, "keys.asc")
        shutil.copy(self.pgp_asc, keys)
        self.assert_accepted(self.dry(r, "--gpg-keyring", keys))
        shutil.copy(self.pgp_other_asc, keys)
        self.assert_refused(self.dry(r, "--gpg-keyring", keys),
                            f"commit {head[:12]} is signed by a key that is not allowed "
                            f"(OpenPGP key {self.gpg['pgp_good'][1]})\n")

    def test_openpgp_signature_by_another_key_is_refused(self):
        r = self.base()
        head = self.commit(r, "a", "pgp_other")
        for keyring in (self.pgp_asc, self.gpg["pgp_good"][0]):
            self.assert_refused(self.dry(r, "--gpg-keyring", keyring),
                                f"commit {head[:12]} is signed by a key that is not allowed "
                                f"(OpenPGP key {self.gpg['pgp_other'][1]})\n")

    def test_openpgp_signature_without_a_keyring_is_refused(self):
        r = self.base()
        head = self.commit(r, "a", "pgp_good")
        self.assert_refused(self.dry(r, "--allowed-signers", self.allowed),
                            f"commit {head[:12]} is signed by a key that is not allowed "
                            "(an OpenPGP signature; no --gpg-keyring)\n")

    def test_openpgp_tampered_commit_has_a_bad_signature(self):
        r = self.base()
        head = self.commit(r, "deploy v1", "pgp_good")
        forged = self.tamper(r, head, "deploy v1", "deploy v2")
        self.assert_refused(self.dry(r, "--gpg-keyring", self.pgp_asc),
                            f"commit {forged[:12]} has a bad signature "
                            f"(OpenPGP key {self.gpg['pgp_good'][1][-16:]}: Bad signature)\n")

    def test_key_file_without_keys_is_an_error(self):
        r = self.base()
        self.commit(r, "a", "pgp_good")
        self.assert_refused(self.dry(r, "--gpg-keyring", self.allowed),
                            f"--gpg-keyring {self.allowed}: no OpenPGP public key in it\n")

    def test_either_format_is_accepted_when_both_are_given(self):
        r = self.base()
        self.commit(r, "a", "ssh_good")
        self.assert_accepted(self.dry(r, "--allowed-signers", self.allowed, "--gpg-keyring", self.pgp_asc))
        self.commit(r, "b", "pgp_good")
        self.assert_accepted(self.dry(r, "--allowed-signers", self.allowed, "--gpg-keyring", self.pgp_asc))

    # -- every command that reads a commit ------------------------------------

    def test_diff_and_against_refuse_an_unsigned_head_like_a_dry_run(self):
        """One pass, one decision: `diff` and `--dry-run --against` verify the
        commit they plan, as `reconcile --dry-run` does; a signed head passes."""
        r = self.base()
        base = self.commit(r, "a", "ssh_good")
        r.write("b.yaml", proc_yaml("b"))
        head = self.commit(r, "b")  # unsigned
        keys = ("--verify-signatures", "--allowed-signers", self.allowed)
        res = run("diff", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--base", base, *keys)
        self.assert_refused(res, f"commit {head[:12]} is not signed\n")
        status = os.path.join(self.tmp, "status.json")
        with open(status, "w") as f:
            json.dump({"node": "n1", "commit": base, "resources": []}, f)
        res = self.dry(r, "--allowed-signers", self.allowed, "--against", status)
        self.assert_refused(res, f"commit {head[:12]} is not signed\n")
        # without the option both plan the unsigned head
        res = run("diff", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--base", base)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("Process/b", res.out)
        # a signed head passes both
        self.commit(r, "b signed", "ssh_good")
        res = run("diff", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--base", base, *keys)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("Process/b", res.out)
        res = self.dry(r, "--allowed-signers", self.allowed, "--against", status)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("Process/b", res.out)

    # -- reconcile and agent ------------------------------------------------

    def test_reconcile_applies_nothing_from_a_refused_commit(self):
        r = self.base()
        head = self.commit(r, "a", "ssh_other")
        res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1", "--verify-signatures",
                  "--allowed-signers", self.allowed)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"gitward: error: commit {head[:12]} is signed by a key that is not allowed", res.err)
        self.assertEqual(records(self.state), {})
        st = run("status", "--output", "json", "--state-dir", self.state)
        self.assertIn(f"commit {head[:12]} is signed by a key that is not allowed", st.json()["last_error"])

    def http(self, agent, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent.port}{path}", timeout=30) as resp:
                return resp.status, resp.read().decode()
        except OSError:
            return None, ""

    def status(self):
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def test_agent_keeps_the_last_signed_commit_in_force(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a"))
        good = self.commit(r, "A", "ssh_good")
        log_path = os.path.join(self.tmp, "agent.log")
        with open(log_path, "w") as log:
            a = subprocess.Popen([GITWARD, "agent", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", LISTEN_ANY, "--interval", "1s", "--verify-signatures",
                                  "--allowed-signers", self.allowed], stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(a)
        a.port = agent_port(a, log_path)

        def agent_log():
            with open(log_path) as f:
                return f.read()

        wait_for(lambda: "a" in records(self.state) and self.status()["commit"] == good, timeout=120,
                 what="commit A applied")
        pid = records(self.state)["a"]["pid"]
        # B: unsigned, adds a resource -> nothing of it applied, A stays in force
        r.write("b.yaml", proc_yaml("b"))
        unsigned = self.commit(r, "B")
        reason = f"commit {unsigned[:12]} is not signed"
        wait_for(lambda: self.status()["last_error"] == reason, timeout=120, what="last_error of B")
        self.assertEqual(self.status()["commit"], good)
        wait_for(lambda: re.search(r'gitward_sync_total\{result="unverified"\} [1-9]', self.http(a, "/metrics")[1]),
                 timeout=120, what="the unverified metric")
        code, body = self.http(a, "/status")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["last_error"], reason)
        self.assertEqual(json.loads(body)["commit"], good)
        self.assertNotIn("b", records(self.state))
        self.assertEqual(records(self.state)["a"]["pid"], pid)
        self.assertTrue(pid_alive(pid))
        log = agent_log()
        self.assertIn(f"error {reason}\n", log)
        self.assertIn(f"commit refused; keeping the last good commit {good[:12]} in force", log)
        text = run("status", "--state-dir", self.state)
        self.assertIn(reason, text.out + text.err)
        # the last good commit is still reconciled: a dead workload comes back
        os.kill(pid, signal.SIGKILL)
        def healed():
            new = records(self.state).get("a", {}).get("pid")
            return new not in (None, pid) and pid_alive(new)

        wait_for(healed, timeout=120, what="self-heal under a refused head")
        # C: signed on top of B -> applied, B's resource included
        signed = self.commit(r, "C", "ssh_good")
        wait_for(lambda: self.status()["commit"] == signed and "b" in records(self.state), timeout=120,
                 what="commit C applied")
        wait_for(lambda: self.status()["last_error"] is None, timeout=120, what="last_error cleared")
        a.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(timeout=120), 0)

    def test_a_pin_to_a_commit_never_applied_is_verified_at_the_pass(self):
        """gitward rollback accepts a commit of the Git cache the node never
        applied; with --verify-signatures the pass refuses it like an unsigned
        tip: nothing changes, the pin stays, the error is in status and history."""
        r = self.base()
        self.commit(r, "signed", "ssh_good")
        r.write("b.yaml", proc_yaml("b"))
        unsigned = self.commit(r, "unsigned")
        r.write("c.yaml", proc_yaml("c"))
        tip = self.commit(r, "signed tip", "ssh_good")

        def reconcile():
            return run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                       "--verify-signatures", "--allowed-signers", self.allowed)

        self.assertEqual(reconcile().rc, 0)
        self.assertEqual(set(records(self.state)), {"a", "b", "c"})
        res = run("rollback", unsigned[:10], "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        res = reconcile()
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"commit {unsigned[:12]} is not signed", res.err)
        st = json.loads(run("status", "--output", "json", "--state-dir", self.state).out)
        self.assertEqual((st["commit"], st["pinned"]["commit"]), (tip, unsigned))
        self.assertIn("is not signed", st["last_error"])
        self.assertEqual(set(records(self.state)), {"a", "b", "c"})  # nothing of it applied
        h = json.loads(run("history", "--output", "json", "--state-dir", self.state).out)["history"][0]
        self.assertEqual((h["commit"], h["result"]), (unsigned, "failed"))


if __name__ == "__main__":
    unittest.main()
