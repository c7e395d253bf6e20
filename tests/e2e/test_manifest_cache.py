"""The manifest cache (STATE/repo.git/gitward-manifests.cache), written by
the holder of the state lock and read by dry-runs beside it: an unchanged
commit is not parsed again, a new commit parses only the files that changed,
the output is the same byte for byte, and a cache file that is corrupt,
truncated or foreign is said so, ignored, and rebuilt by the next
reconcile."""
import hashlib
import hmac
import json
import os
import re
import struct
import unittest

from gwtest import HDR, TempDirTest, proc_yaml, run


def profile(err):
    """phase -> calls, from GW_PROFILE=1 lines on stderr"""
    out = {}
    for m in re.finditer(r"^gitward profile: (.+?)\s+([0-9.]+)\s+([0-9]+)$", err, re.M):
        out[m.group(1)] = int(m.group(3))
    return out


class ManifestCache(TempDirTest):
    N = 6

    def setUp(self):
        super().setUp()
        self.r = self.repo()
        for i in range(self.N):
            self.r.write(f"apps/p{i}.yaml", self.manifest(i))
        self.r.commit("apps")
        self.cache = os.path.join(self.state, "repo.git", "gitward-manifests.cache")

    @staticmethod
    def manifest(i, extra=""):
        return proc_yaml(f"p{i}", extra="  nodeSelector: {node: web}\n" + ("  dependsOn: [p0]\n" if i else "")
                         + extra)

    def reconcile(self):
        """A reconcile on a node the manifests do not select: it reads them all
        (and writes the cache) and starts nothing."""
        res = run("reconcile", "--repo", self.r.path, "--state-dir", self.state, "--node", "elsewhere",
                  env={"GW_PROFILE": "1"})
        self.assertEqual(res.rc, 0, res)
        return res

    def dry(self, *extra):
        return run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", self.state, "--node", "web",
                   "--output", "json", *extra, env={"GW_PROFILE": "1"})

    def fresh(self):
        """what a run without any cache prints (a state dir of its own)"""
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", os.path.join(self.tmp, "other"),
                  "--node", "web", "--output", "json")
        self.assertIn(res.rc, (1, 2), res)
        return res

    def test_unchanged_commit_is_not_parsed_and_prints_the_same(self):
        first = self.reconcile()
        self.assertEqual(profile(first.err).get("parse"), self.N)
        with open(self.cache, "rb") as f:
            self.assertEqual(f.read(8), b"GWMCACHE")
        again = self.reconcile()
        self.assertNotIn("parse", profile(again.err))
        self.assertEqual(again.out, first.out)
        dry = self.dry()
        self.assertEqual(dry.rc, 2, dry)
        p = profile(dry.err)
        self.assertNotIn("parse", p)
        self.assertEqual(p.get("cache hits"), self.N)
        self.assertEqual(dry.out, self.fresh().out)

    def test_dry_run_reads_the_cache_and_writes_nothing(self):
        self.reconcile()
        before = os.stat(self.cache)
        self.r.write("apps/p3.yaml", self.manifest(3, extra="  env: {V: \"2\"}\n"))
        self.r.commit("p3")
        for _ in range(2):  # the new file is parsed each time: a dry-run saves nothing
            res = self.dry()
            self.assertEqual(res.rc, 2, res)
            p = profile(res.err)
            self.assertEqual(p.get("parse"), 1)
            self.assertEqual(p.get("cache hits"), self.N - 1)
            self.assertNotIn("cache save", p)
        after = os.stat(self.cache)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
        self.assertEqual(res.out, self.fresh().out)

    def test_new_commit_parses_only_the_changed_file(self):
        self.reconcile()
        self.r.write("apps/p3.yaml", self.manifest(3, extra="  env: {V: \"2\"}\n"))
        self.r.commit("p3")
        p = profile(self.reconcile().err)
        self.assertEqual(p.get("parse"), 1)
        self.assertEqual(p.get("cache hits"), self.N - 1)
        self.assertIn("cache save", p)
        p = profile(self.reconcile().err)
        self.assertNotIn("parse", p)
        self.assertEqual(p.get("cache hits"), self.N)

    def test_problems_come_out_the_same_from_a_warm_cache(self):
        self.r.write("apps/bad.yaml", HDR + "kind: Process\nmetadata: {name: bad}\nspec: {command: [/bin/true], "
                     "bogus: 1}\n")
        self.r.write("apps/p1.yaml", proc_yaml("p1", extra="  dependsOn: [nowhere]\n"))
        self.r.commit("bad")
        self.reconcile_bad = run("reconcile", "--repo", self.r.path, "--state-dir", self.state, "--node", "elsewhere")
        self.assertEqual(self.reconcile_bad.rc, 1, self.reconcile_bad)  # the clean files are cached all the same
        self.assertTrue(os.path.exists(self.cache))
        cold = self.fresh()
        warm = self.dry()
        self.assertEqual(cold.rc, 1, cold)
        self.assertEqual(warm.rc, 1, warm)
        self.assertIn("apps/bad.yaml:4:30: spec.bogus: unknown field", warm.err)
        self.assertIn("apps/p1.yaml:6:15: spec.dependsOn[0]: \"nowhere\" names no resource", warm.err)
        self.assertEqual(warm.out, cold.out)
        strip = lambda e: "\n".join(l for l in e.splitlines() if not l.startswith("gitward profile:"))  # noqa: E731
        self.assertEqual(strip(warm.err), strip(cold.err))
        p = profile(warm.err)
        self.assertEqual(p.get("cache hits"), self.N)  # every clean file, p1 too
        self.assertEqual(p.get("parse"), 1)  # bad.yaml, with its problem, every time

    def damaged(self, how, reason):
        self.reconcile()
        first = self.dry()
        self.assertEqual(first.rc, 2, first)
        with open(self.cache, "rb") as f:
            data = f.read()
        with open(self.cache, "wb") as f:
            f.write(how(data))
        for cmd in (self.dry, self.reconcile):
            res = cmd()
            self.assertIn(f"manifest cache ignored: {self.cache}: {reason}; every manifest is parsed", res.err)
            self.assertEqual(profile(res.err).get("parse"), self.N)
        self.assertEqual(self.dry().out, first.out)
        # rewritten whole by the reconcile: trusted again
        again = self.dry()
        self.assertNotIn("manifest cache", again.err)
        self.assertEqual(profile(again.err).get("cache hits"), self.N)
        self.assertEqual(again.out, first.out)

    def test_corrupt_cache_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: d[:len(d) // 2] + bytes([d[len(d) // 2] ^ 1]) + d[len(d) // 2 + 1:],
                     "digest mismatch (truncated, corrupt or not written by this agent)")

    def test_truncated_cache_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: d[:len(d) - 10], "digest mismatch (truncated, corrupt or not written by this agent)")

    def test_foreign_file_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: b"not a cache\n" * 20, "not a manifest cache")

    @staticmethod
    def escape(entry):
        """p1's entry with a second resource named ../../../x"""
        res = entry[8:]
        extra = res[:8] + struct.pack("<Q", 10) + b"../../../x" + res[18:]
        return struct.pack("<Q", 2) + res + extra

    def forge(self, seal, mutate=None):
        """The cache as the last reconcile wrote it, with the entry of
        apps/p1.yaml changed by mutate (default: a second resource named
        ../../../x, which the signed commit does not hold), sealed by
        seal(body) -> digest."""
        self.reconcile()
        with open(self.cache, "rb") as f:
            data = f.read()
        body, pos = bytearray(data[:48]), 48  # magic + 5 u64 (the last: the count)
        u64 = lambda at: struct.unpack_from("<Q", data, at)[0]  # noqa: E731
        forged = False
        for _ in range(u64(40)):
            idlen, blen = u64(pos), u64(pos + 8)
            ident = data[pos + 16:pos + 16 + idlen]
            dlen = u64(pos + 16 + idlen)
            entry = data[pos + 24 + idlen:pos + 24 + idlen + dlen]
            pos += 24 + idlen + dlen
            name = b"p1"
            if struct.unpack_from("<Q", entry, 0)[0] == 1 and entry[16:26] == struct.pack("<Q", 2) + name:
                entry = (mutate or self.escape)(entry)
                forged = True
            body += struct.pack("<QQ", idlen, blen) + ident + struct.pack("<Q", len(entry)) + entry
        self.assertTrue(forged)
        body = bytes(body)
        with open(self.cache, "wb") as f:
            f.write(body + seal(body))
        os.chmod(self.cache, 0o600)

    def assert_rebuilt(self, first_out):
        self.reconcile()
        again = self.dry()
        self.assertNotIn("manifest cache", again.err)
        self.assertEqual(profile(again.err).get("cache hits"), self.N)
        self.assertEqual(again.out, first_out)

    def test_forged_entry_with_an_unkeyed_digest_is_refused(self):
        # issue 24: the digest was a plain SHA-256, so anyone who could write
        # the file could add a resource the signed commit does not have
        first = self.dry()
        self.forge(lambda body: hashlib.sha256(body).digest())
        res = self.dry()
        self.assertIn(f"manifest cache ignored: {self.cache}: digest mismatch (truncated, corrupt or not written "
                      "by this agent); every manifest is parsed", res.err)
        self.assertNotIn("../../../x", res.out + res.err)
        self.assertEqual(res.out, first.out)
        self.assert_rebuilt(first.out)

    def test_forged_entry_with_the_key_is_validated_and_not_applied(self):
        # even sealed with the agent's own key, an entry obeys the rules of a
        # parsed manifest: a name that is a path outside the run dir is refused
        first = self.dry()
        self.reconcile()  # the first write makes the key
        with open(self.cache + ".key", "rb") as f:
            key = f.read()
        self.assertEqual(len(key), 32)
        self.assertEqual(os.stat(self.cache + ".key").st_mode & 0o777, 0o600)
        self.forge(lambda body: hmac.new(key, body, hashlib.sha256).digest())
        res = self.dry()
        self.assertIn("manifest cache: the entry for apps/p1.yaml does not decode or breaks the rules of a "
                      "manifest; it is parsed again", res.err)
        self.assertNotIn("../../../x", res.out)
        self.assertEqual(profile(res.err).get("parse"), 1)
        self.assertEqual(res.out, first.out)
        self.assert_rebuilt(first.out)

    def test_sealed_entry_whose_fields_differ_from_its_canonical_form_is_not_applied(self):
        # the command a backend would run changed, the canonical form and
        # spec hash (what the plan shows and compares) left as they were
        first = self.dry()
        self.reconcile()
        with open(self.cache + ".key", "rb") as f:
            key = f.read()
        self.forge(lambda body: hmac.new(key, body, hashlib.sha256).digest(),
                   mutate=lambda e: e.replace(b"/bin/sleep", b"/bin/evil!", 1))
        res = self.dry()
        self.assertIn("manifest cache: the entry for apps/p1.yaml does not decode or breaks the rules of a "
                      "manifest; it is parsed again", res.err)
        self.assertEqual(profile(res.err).get("parse"), 1)
        self.assertEqual(res.out, first.out)
        self.assert_rebuilt(first.out)

    def test_cache_writable_by_others_is_refused(self):
        self.reconcile()
        first = self.dry()
        os.chmod(self.cache, 0o666)
        res = self.dry()
        self.assertIn(f"manifest cache ignored: {self.cache}: writable by group or others (mode 0666); every "
                      "manifest is parsed", res.err)
        self.assertEqual(profile(res.err).get("parse"), self.N)
        self.assertEqual(res.out, first.out)
        self.reconcile()  # written anew, by this user, 0600
        self.assertEqual(os.stat(self.cache).st_mode & 0o777, 0o600)
        self.assert_rebuilt(first.out)


def fetches(err):
    """how many fetch processes a run started, from its GW_PROFILE=1 lines"""
    m = re.search(r"^gitward profile:\s+fetch process\s+[0-9.]+\s+([0-9]+)$", err, re.M)
    return int(m.group(1)) if m else 0


class LocalUpToDate(TempDirTest):
    """A local repository whose branches, tags and default branch the Git
    cache already mirrors is not fetched (no fetch process); any change to
    them is."""

    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("apps/p0.yaml", proc_yaml("p0", extra="  nodeSelector: {node: web}\n"))
        self.head = self.r.commit("apps")

    def reconcile(self, *extra):
        res = run("reconcile", "--repo", self.r.path, "--state-dir", self.state, "--node", "elsewhere", *extra,
                  env={"GW_PROFILE": "1"})
        self.assertEqual(res.rc, 0, res)
        return res

    def commit_of_state(self):
        with open(os.path.join(self.state, "state.json")) as f:
            return json.load(f)["commit"]

    def test_fetch_only_what_changed(self):
        self.assertEqual(fetches(self.reconcile().err), 1)  # the clone
        self.assertEqual(fetches(self.reconcile().err), 0)
        self.assertEqual(self.commit_of_state(), self.head)
        dry = run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", self.state, "--node", "web",
                  env={"GW_PROFILE": "1"})
        self.assertEqual(dry.rc, 2, dry)
        self.assertEqual(fetches(dry.err), 0)
        self.assertIn("Process/p0", dry.out)
        # a new tag alone: fetched, and usable as the ref
        self.r.git("tag", "v1")
        self.assertEqual(fetches(self.reconcile("--ref", "v1").err), 1)
        self.assertEqual(fetches(self.reconcile("--ref", "v1").err), 0)
        # a tag gone: fetched (pruned), so the ref no longer resolves
        self.r.git("tag", "-d", "v1")
        gone = run("reconcile", "--repo", self.r.path, "--state-dir", self.state, "--node", "elsewhere", "--ref",
                   "v1", env={"GW_PROFILE": "1"})
        self.assertNotEqual(gone.rc, 0, gone)
        self.assertEqual(fetches(gone.err), 1)
        # a new branch, then a new commit on the default branch
        self.r.git("branch", "other")
        self.assertEqual(fetches(self.reconcile("--ref", "other").err), 1)
        self.r.write("apps/p1.yaml", proc_yaml("p1", extra="  nodeSelector: {node: web}\n"))
        head = self.r.commit("p1")
        self.assertEqual(fetches(self.reconcile().err), 1)
        self.assertEqual(self.commit_of_state(), head)
        # the default branch changed on the remote
        self.r.git("symbolic-ref", "HEAD", "refs/heads/other")
        self.assertEqual(fetches(self.reconcile().err), 1)
        self.assertEqual(fetches(self.reconcile().err), 0)


if __name__ == "__main__":
    unittest.main()
