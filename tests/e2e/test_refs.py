"""End to end, how --ref resolves (issue 24, finding 6): as git does, so a
branch can never redirect a pinned node. A full name (refs/...) exactly; a
bare name as a tag, else a branch; a full commit id only as a commit; a name
that is both a tag and a branch, or both a name and the start of a commit
id, is refused with a message (exit 1)."""
import os

from gwtest import TempDirTest, proc_yaml, run


class Refs(TempDirTest):
    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("a.yaml", proc_yaml("alpha"))
        self.a = self.r.commit("alpha")
        self.r.remove("a.yaml")
        self.r.write("b.yaml", proc_yaml("beta"))
        self.b = self.r.commit("beta")
        self.r.git("tag", "v1", self.a)  # the pin: alpha

    def dry(self, *args):
        return run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", self.state, "--node", "n1",
                   *args)

    def assert_plans(self, res, name):
        self.assertEqual(res.rc, 2, res)
        self.assertIn(f"  + Process/{name}", res.out)
        for other in {"alpha", "beta"} - {name}:
            self.assertNotIn(f"Process/{other}", res.out)

    def test_a_tag_is_found_and_a_branch_of_its_name_is_refused_not_followed(self):
        self.assert_plans(self.dry("--ref", "v1"), "alpha")
        self.r.git("branch", "v1", self.b)
        res = self.dry("--ref", "v1")
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f'ref "v1" is ambiguous: {self.r.path} has both a tag and a branch of that name; give '
                      'refs/tags/v1 or refs/heads/v1', res.err)
        self.assertNotIn("Process/beta", res.out)
        # full names say which one exactly
        self.assert_plans(self.dry("--ref", "refs/tags/v1"), "alpha")
        self.assert_plans(self.dry("--ref", "refs/heads/v1"), "beta")

    def test_a_branch_named_refs_tags_does_not_shadow_the_tag(self):
        self.r.git("branch", "refs/tags/v1", self.b)  # refs/heads/refs/tags/v1 on the remote
        self.assert_plans(self.dry("--ref", "refs/tags/v1"), "alpha")
        self.assert_plans(self.dry("--ref", "v1"), "alpha")

    def test_a_branch_named_like_a_short_commit_id_is_refused(self):
        short = self.a[:7]
        self.assert_plans(self.dry("--ref", short), "alpha")
        self.r.git("branch", short, self.b)
        res = self.dry("--ref", short)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f'ref "{short}" is ambiguous: it is a branch of {self.r.path} and also the start of a '
                      f'commit id; give refs/heads/{short} or the full commit id', res.err)
        self.assertNotIn("Process/beta", res.out)
        self.assert_plans(self.dry("--ref", self.a), "alpha")
        self.assert_plans(self.dry("--ref", f"refs/heads/{short}"), "beta")

    def test_a_full_commit_id_is_only_a_commit(self):
        self.r.git("branch", self.a, self.b)  # a branch named like alpha's full id, at beta
        self.assert_plans(self.dry("--ref", self.a), "alpha")

    def test_a_bare_branch_name_and_the_default_branch_resolve_to_branches(self):
        self.r.git("branch", "feature", self.a)
        self.assert_plans(self.dry("--ref", "feature"), "alpha")
        self.r.git("tag", "main", self.a)  # a tag named like the default branch
        self.assert_plans(self.dry(), "beta")  # no --ref: the remote's default branch itself
        res = self.dry("--ref", "main")
        self.assertEqual(res.rc, 1, res)
        self.assertIn('ref "main" is ambiguous', res.err)


if __name__ == "__main__":
    import unittest
    unittest.main()
