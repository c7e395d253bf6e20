"""End to end, hostile sizes from one commit (issue 11): folder trees deeper
than the stack, the tree-depth limit at and one past, huge mappings and
repeated dependsOn lists. Every run is bounded by a subprocess timeout: a
hang or a quadratic blow-up fails the test instead of stalling the suite."""
import os

from gwtest import TempDirTest, fast_import, proc_yaml, run

LIMIT = 64  # GW_MANIFEST_TREE_DEPTH_MAX


def nested(depth, leaf="p.yaml"):
    """A path depth folders deep ("d/d/.../leaf")."""
    return "/".join(["d"] * depth + [leaf])


class Limits(TempDirTest):
    def dry(self, repo, *args, timeout=120):
        return run("reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state, "--node", "n1", *args,
                   timeout=timeout)

    def test_git_tree_thousands_of_folders_deep_is_refused_not_a_crash(self):
        repo = os.path.join(self.tmp, "deep")
        fast_import(repo, {nested(3000): proc_yaml("deep"), "top.yaml": proc_yaml("top")})
        res = self.dry(repo, timeout=60)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"{'/'.join(['d'] * (LIMIT + 1))}: folders nested deeper than 64 levels\n", res.err)
        self.assertNotIn("Process/top", res.out)  # nothing planned from an invalid commit

    def test_git_tree_depth_at_the_limit_and_one_past(self):
        at = os.path.join(self.tmp, "at")
        fast_import(at, {nested(LIMIT): proc_yaml("deep")})
        res = self.dry(at)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  + Process/deep", res.out)
        past = os.path.join(self.tmp, "past")
        fast_import(past, {nested(LIMIT + 1): proc_yaml("deep")})
        res = self.dry(past)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"{'/'.join(['d'] * (LIMIT + 1))}: folders nested deeper than 64 levels\n", res.err)
        # --path counts from the top of the tree, not from the path
        res = self.dry(past, "--path", "/".join(["d"] * 10))
        self.assertEqual(res.rc, 1, res)
        self.assertIn("folders nested deeper than 64 levels", res.err)

    def test_folder_depth_on_disk_at_the_limit_and_one_past(self):
        for depth, rc in ((LIMIT, 0), (LIMIT + 1, 1)):
            top = os.path.join(self.tmp, f"disk{depth}")
            path = os.path.join(top, nested(depth))
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as f:
                f.write(proc_yaml("deep"))
            res = run("validate", top, timeout=60)
            self.assertEqual(res.rc, rc, res)
            if rc:
                self.assertEqual(res.err, f"{top}/{'/'.join(['d'] * depth)}: folders nested deeper than 64 "
                                 "levels\n1 problem found.\n")

    def test_mapping_of_99000_keys_validates_in_time(self):
        # keys in descending order: inserting them one by one into a sorted
        # array was quadratic, and so was the duplicate-key check (13 s+)
        env = ", ".join(f"E{i:x}: x" for i in range(99000, 0, -1))
        p = os.path.join(self.tmp, "keys.yaml")
        with open(p, "w") as f:
            f.write(proc_yaml("keys", extra=f"  env: {{{env}}}\n"))
        self.assertLess(os.path.getsize(p), 1 << 20)
        # half a second in a normal build, a few seconds under ASan: 60 s
        # leaves a loaded machine its factor of 10 and still stops a blow-up
        res = run("validate", "--output", "json", p, timeout=60)
        self.assertEqual(res.rc, 0, res)
        doc = res.json()
        self.assertEqual(len(doc["resources"][0]["spec"]["spec"]["env"]), 99000)

    def test_dependson_repeated_20000_times_is_refused_in_time(self):
        p = os.path.join(self.tmp, "dups.yaml")
        deps = ", ".join(["b"] * 20000)
        with open(p, "w") as f:
            f.write(proc_yaml("a", extra=f"  dependsOn: [{deps}]\n") + "---\n" + proc_yaml("b"))
        res = run("validate", p, timeout=60)
        self.assertEqual(res.rc, 1, res)
        lines = res.err.splitlines()
        self.assertEqual(len(lines), 102)
        self.assertEqual(lines[0], f"{p}:6:18: spec.dependsOn: \"b\" is listed twice")
        self.assertEqual(lines[100], f"{p}: \u2026 and 19899 more problems in this file (at most 100 are reported)")
        self.assertEqual(lines[101], "19999 problems found.")


    def test_gitwardignore_of_160000_rules_over_4000_files_in_time(self):
        # issue 24: 159,700 rules x 4,000 files, every rule tried for every
        # folder of every path: 64 s per pass (minutes with these 7-deep
        # paths); indexed literal rules make it a fraction of a second
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        names = ["".join(digits[(i // 36 ** k) % 36] for k in range(4)) for i in range(159998)]
        text = "\n".join(names) + "\nm3.yaml\n/apps/a/b/c/d/e/m5.yaml\n"
        self.assertLessEqual(len(text), 1 << 20)  # within GW_MANIFEST_FILE_MAX
        files = {".gitwardignore": text}
        for i in range(3990):
            files[f"apps/a/b/c/d/e/f{i}.txt"] = "x\n"
        for i in range(10):
            files[f"apps/a/b/c/d/e/m{i}.yaml"] = proc_yaml(f"m{i}")
        repo = os.path.join(self.tmp, "ignore")
        fast_import(repo, files)
        res = self.dry(repo, timeout=120)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  + Process/m0 ", res.out)
        self.assertIn("  + Process/m9 ", res.out)
        self.assertNotIn("Process/m3 ", res.out)
        self.assertNotIn("Process/m5 ", res.out)
        self.assertIn("Plan: 8 to create,", res.out)

    def test_gitwardignore_past_1000_wildcard_rules_is_refused_at_its_line(self):
        text = "# generated\n" + "".join(f"*.x{i}\n" for i in range(1001))
        repo = os.path.join(self.tmp, "globs")
        fast_import(repo, {".gitwardignore": text, "p.yaml": proc_yaml("p")})
        res = self.dry(repo, timeout=120)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(".gitwardignore:1002:1: more than 1000 rules with wildcards (*, ?, [ or \\); rules without "
                      "them have no such limit\n", res.err)
        self.assertNotIn("Process/p", res.out)


if __name__ == "__main__":
    import unittest
    unittest.main()
