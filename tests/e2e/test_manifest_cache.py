"""The manifest cache (STATE/repo.git/gitward-manifests.cache): an unchanged
commit is not parsed again, a new commit parses only the files that changed,
the output is the same byte for byte, and a cache file that is corrupt,
truncated or foreign is said so, ignored and rebuilt."""
import os
import re
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
            self.r.write(f"apps/p{i}.yaml", proc_yaml(f"p{i}", extra="  dependsOn: [p0]\n" if i else ""))
        self.r.write("empty/README", "no manifests here\n")
        self.r.commit("apps")
        # the state dir's Git cache, with nothing applied (no manifest under empty/)
        res = run("reconcile", "--repo", self.r.path, "--state-dir", self.state, "--path", "empty")
        self.assertEqual(res.rc, 0, res)
        self.cache = os.path.join(self.state, "repo.git", "gitward-manifests.cache")
        self.assertFalse(os.path.exists(self.cache))

    def dry(self, *extra):
        return run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", self.state, "--output", "json",
                   *extra, env={"GW_PROFILE": "1"})

    def test_unchanged_commit_is_not_parsed_and_prints_the_same(self):
        first = self.dry()
        self.assertEqual(first.rc, 2, first)
        self.assertEqual(profile(first.err).get("parse"), self.N)
        with open(self.cache, "rb") as f:
            self.assertEqual(f.read(8), b"GWMCACHE")
        second = self.dry()
        self.assertEqual(second.rc, 2, second)
        p = profile(second.err)
        self.assertNotIn("parse", p)
        self.assertEqual(p.get("cache hits"), self.N)
        self.assertEqual(second.out, first.out)

    def test_new_commit_parses_only_the_changed_file(self):
        first = self.dry()
        self.r.write("apps/p3.yaml", proc_yaml("p3", command=("/bin/sleep", "301")))
        self.r.commit("p3")
        res = self.dry()
        self.assertEqual(res.rc, 2, res)
        p = profile(res.err)
        self.assertEqual(p.get("parse"), 1)
        self.assertEqual(p.get("cache hits"), self.N - 1)
        self.assertNotEqual(res.out, first.out)
        # what a run without any cache prints (a state dir of its own)
        fresh = run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", os.path.join(self.tmp, "other"),
                    "--output", "json")
        self.assertEqual(fresh.rc, 2, fresh)
        self.assertEqual(res.out, fresh.out)

    def test_problems_come_out_the_same_from_a_warm_cache(self):
        self.r.write("apps/bad.yaml", HDR + "kind: Process\nmetadata: {name: bad}\nspec: {command: [/bin/true], "
                     "bogus: 1}\n")
        self.r.write("apps/p1.yaml", proc_yaml("p1", extra="  dependsOn: [nowhere]\n"))
        self.r.commit("bad")
        cold = self.dry()
        warm = self.dry()
        self.assertEqual(cold.rc, 1, cold)
        self.assertEqual(warm.rc, 1, warm)
        self.assertIn("apps/bad.yaml:4:30: spec.bogus: unknown field", warm.err)
        self.assertIn("apps/p1.yaml:6:15: spec.dependsOn[0]: \"nowhere\" names no resource", warm.err)
        self.assertEqual(warm.out, cold.out)
        strip = lambda e: "\n".join(l for l in e.splitlines() if not l.startswith("gitward profile:"))  # noqa: E731
        self.assertEqual(strip(warm.err), strip(cold.err))
        self.assertGreaterEqual(profile(warm.err).get("cache hits", 0), self.N - 2)

    def damaged(self, how, reason):
        first = self.dry()
        self.assertEqual(first.rc, 2, first)
        with open(self.cache, "rb") as f:
            data = f.read()
        with open(self.cache, "wb") as f:
            f.write(how(data))
        res = self.dry()
        self.assertEqual(res.rc, 2, res)
        self.assertIn("manifest cache ignored: ", res.err)
        self.assertIn(reason, res.err)
        self.assertIn("; rebuilt", res.err)
        self.assertEqual(profile(res.err).get("parse"), self.N)
        self.assertEqual(res.out, first.out)
        # rewritten whole: the next run trusts it again
        again = self.dry()
        self.assertNotIn("manifest cache", again.err)
        self.assertEqual(profile(again.err).get("cache hits"), self.N)
        self.assertEqual(again.out, first.out)

    def test_corrupt_cache_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: d[:len(d) // 2] + bytes([d[len(d) // 2] ^ 1]) + d[len(d) // 2 + 1:],
                     "digest mismatch (truncated or corrupt)")

    def test_truncated_cache_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: d[:len(d) - 10], "digest mismatch (truncated or corrupt)")

    def test_foreign_file_is_ignored_and_rebuilt(self):
        self.damaged(lambda d: b"not a cache\n" * 20, "not a manifest cache")


if __name__ == "__main__":
    unittest.main()
