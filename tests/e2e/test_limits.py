"""End to end, hostile sizes from one commit (issue 11): folder trees deeper
than the stack, the tree-depth limit at and one past, huge mappings and
repeated dependsOn lists. Every run is bounded by a subprocess timeout: a
hang or a quadratic blow-up fails the test instead of stalling the suite."""
import os
import resource
import subprocess

from gwtest import GITWARD, Result, TempDirTest, fast_import, proc_yaml, run

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


# RLIMIT_AS of a dry-run reading a hostile commit: below the 128 MiB budget,
# so the files within it fit only when read once and shared (a dry-run of
# them needs about 32 MiB of address space)
AS_CAP = 112 << 20
BLOB = 64 << 10  # GW_SECRET_FILE_MAX
BUDGET = 128 << 20  # GW_REFERENCED_BYTES_MAX


def asan_build():
    """ASan reserves terabytes of address space: its build runs without the cap (and only that)."""
    with open(GITWARD, "rb") as f:
        return b"__asan_init" in f.read()


def one_blob_repo(path, names, manifest, size=BLOB):
    """A repository whose one commit holds the same blob of size bytes under
    each of names (written once, with git fast-import marks) and m.yaml."""
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True, timeout=60)
    blob = os.urandom(size // 2).hex().encode()
    m = manifest.encode()
    chunks = [b"blob\nmark :1\ndata " + str(len(blob)).encode() + b"\n" + blob + b"\n",
              b"commit refs/heads/main\ncommitter t <t@example.com> 0 +0000\ndata 4\ngen\n"]
    chunks += [b"M 100644 :1 " + n.encode() + b"\n" for n in names]
    chunks.append(b"M 100644 inline m.yaml\ndata " + str(len(m)).encode() + b"\n" + m + b"\n\n")
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=b"".join(chunks), check=True, timeout=300)


class ReferencedFiles(TempDirTest):
    """Issue 24, finding 1: a commit naming one blob 20,000 times from a
    140 KB manifest took 1.29 GB and 20 s on every node, selected or not.
    Now each blob is read once, only for this node's resources, a list may
    not repeat an entry, and the entries add up to at most 128 MiB. Each
    dry-run runs under a 112 MiB address-space cap: the old code is killed
    by it, and 128 MiB of entries pass it only as one shared copy."""

    def capped(self, repo, timeout=120):
        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))
        cp = subprocess.run([GITWARD, "reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state,
                             "--node", "n1"], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=None if asan_build() else cap)
        return Result(cp)

    def secret_proc(self, names, selector):
        flow = ", ".join(names)
        return (proc_yaml("big", extra=f"  nodeSelector: {{node: {selector}}}\n  secretEnvFiles: [{flow}]\n") +
                "---\n" + proc_yaml("top"))

    def test_one_file_listed_20000_times_is_refused_as_a_repeat(self):
        for selector in ("n2", "n1"):  # not this node's, and this node's
            repo = os.path.join(self.tmp, f"rep-{selector}")
            manifest = self.secret_proc(["s/b.age"] * 20000, selector)
            self.assertGreater(len(manifest), 140_000)
            one_blob_repo(repo, ["s/b.age"], manifest)
            res = self.capped(repo)
            self.assertEqual(res.rc, 1, res)
            self.assertIn('m.yaml:7:29: spec.secretEnvFiles: "s/b.age" is listed twice\n', res.err)
            self.assertNotIn("Process/top", res.out)

    def test_20000_names_of_one_blob_on_another_node_cost_nothing(self):
        names = [f"s/{i:05}.age" for i in range(20000)]
        repo = os.path.join(self.tmp, "other")
        one_blob_repo(repo, names, self.secret_proc(names, "n2"))
        res = self.capped(repo)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  + Process/top", res.out)
        self.assertNotIn("Process/big", res.out)

    def test_20000_names_of_one_blob_on_this_node_pass_the_budget_and_are_refused(self):
        names = [f"s/{i:05}.age" for i in range(20000)]
        repo = os.path.join(self.tmp, "this")
        one_blob_repo(repo, names, self.secret_proc(names, "n1"))
        res = self.capped(repo)
        self.assertEqual(res.rc, 1, res)
        col = 20 + sum(len(n) + 2 for n in names[:BUDGET // BLOB])
        self.assertIn(f"m.yaml:7:{col}: spec.secretEnvFiles[{BUDGET // BLOB}]: s/{BUDGET // BLOB:05}.age: the "
                      "files this commit's resources for this node name add up to more than 128 MiB, the limit "
                      "per commit (each entry counted)\n", res.err)
        self.assertNotIn("Process/top", res.out)

    def test_40_externals_linking_one_mib_64_times_each(self):
        # the 18 KB of YAML that took 2.5 GB: 64 names x 40 resources of one 1 MiB blob
        names = [f"l/{i:02}" for i in range(64)]
        flow = ", ".join(names)
        for selector, rc in (("n2", 2), ("n1", 1)):
            docs = [f"apiVersion: gitward/v1\nkind: External\nmetadata: {{name: e{i:02}}}\nspec:\n"
                    f"  plugin: files\n  nodeSelector: {{node: {selector}}}\n  sources: [{flow}]\n"
                    for i in range(40)]
            repo = os.path.join(self.tmp, f"ext-{selector}")
            one_blob_repo(repo, names, "---\n".join(docs + [proc_yaml("top")]), size=1 << 20)
            res = self.capped(repo)
            self.assertEqual(res.rc, rc, res)
            if rc == 2:
                self.assertIn("  + Process/top", res.out)
                self.assertNotIn("External/", res.out)
            else:  # the third resource passes 128 MiB: 2 x 64 MiB fit
                self.assertIn("m.yaml:23:13: spec.sources[0]: l/00: the files this commit's resources for this "
                              "node name add up to more than 128 MiB", res.err)

    def test_referenced_bytes_at_the_budget_and_one_file_past(self):
        for n, rc in ((BUDGET // BLOB, 2), (BUDGET // BLOB + 1, 1)):
            names = [f"s/{i:05}.age" for i in range(n)]
            repo = os.path.join(self.tmp, f"at{n}")
            one_blob_repo(repo, names, self.secret_proc(names, "n1"))
            res = self.capped(repo)
            self.assertEqual(res.rc, rc, res)
            if rc == 2:
                self.assertIn("  + Process/big", res.out)
            else:
                self.assertIn("add up to more than 128 MiB, the limit per commit", res.err)


if __name__ == "__main__":
    import unittest
    unittest.main()
