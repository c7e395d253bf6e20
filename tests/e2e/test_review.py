"""Review in CI: exclusions (.gitwardignore, --exclude), errors at their
cause, `gitward diff` between two commits per node, markdown and github
output, a dry-run against a node's recorded status, and the contrib/ci
commands on a real repository with a branch and a merge base."""
import json
import os
import unittest

from gwtest import HDR, TempDirTest, proc_yaml, run


def web(extra=""):
    return proc_yaml("web", ("/bin/sleep", "300"), extra)


class ExcludeTest(TempDirTest):
    def tree(self):
        r = self.repo()
        r.write("docs/mkdocs.yml", "site_name: x\nnav: [a]\n")
        r.write(".gitlab-ci.yml", "stages: [a]\n")
        r.write("ci/deploy.yml", "steps: [a]\n")
        r.write("apps/web.yaml", web())
        r.write("apps/extra/keep.yml", proc_yaml("keep"))
        r.write("apps/extra/drop.yml", proc_yaml("drop"))
        r.write(".gitwardignore", "# not manifests\ndocs/\n*.yml\n!apps/**/*.yml\napps/extra/drop.yml\n")
        return r

    def test_validate_skips_what_gitwardignore_and_exclude_name(self):
        r = self.tree()
        res = run("validate", "--verbose", r.path, cwd=self.tmp)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.out,
                         f"skipped {r.path}/apps/extra/drop.yml (.gitwardignore:5: apps/extra/drop.yml)\n"
                         f"skipped {r.path}/ci/deploy.yml (.gitwardignore:3: *.yml)\n"
                         f"skipped {r.path}/docs (.gitwardignore:2: docs/)\n"
                         "2 resources in 2 files: valid.\n")
        res = run("validate", "--exclude", "apps/extra/", "--output", "json", "repo/apps", cwd=self.tmp)
        self.assertEqual(res.rc, 0, res)
        doc = res.json()
        self.assertEqual([x["name"] for x in doc["resources"]], ["web"])
        self.assertEqual(doc["skipped"], [{"path": "repo/apps/extra", "rule": "--exclude apps/extra/"}])
        # without the rules, the CI files are manifests and invalid
        os.remove(os.path.join(r.path, ".gitwardignore"))
        res = run("validate", "repo", cwd=self.tmp)
        self.assertEqual(res.rc, 1)
        self.assertIn("repo/ci/deploy.yml:1:1: steps: unknown field\n", res.err)

    def test_dry_run_reads_no_excluded_file_of_the_commit(self):
        r = self.tree()
        r.commit()
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "  + Process/keep         create\n  + Process/web          create\n"
                         "Plan: 2 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n")
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--exclude", "keep.yml", "--exclude", "/apps/web.yaml", "--allow-empty")
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.out, "Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n")
        # --exclude in --config, and a negation that cannot re-include inside an excluded folder
        cfg = os.path.join(self.tmp, "gw.yaml")
        with open(cfg, "w") as f:
            f.write("exclude: [apps/extra/, '!apps/extra/keep.yml']\n")
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n1",
                  "--config", cfg)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "  + Process/web          create\n"
                         "Plan: 1 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n")
        self.assertFalse(os.path.exists(self.state))

    def test_exclude_is_checked(self):
        res = run("reconcile", "--dry-run", "--repo", self.tmp, "--exclude", "")
        self.assertNotEqual(res.rc, 0)
        self.assertEqual(res.err, "gitward: --exclude: expected a glob like docs/ or ci/*.yml\n")


class PositionTest(TempDirTest):
    def test_depends_on_problems_point_at_the_entry(self):
        r = self.repo()
        r.write("a.yaml", proc_yaml("a", extra="  dependsOn:\n    - b\n    - ghost\n"))
        r.write("b.yaml", proc_yaml("b", extra="  dependsOn: [a]\n"))
        r.write("c.yaml", proc_yaml("c", extra="  dependsOn: [b, a, b]\n"))
        r.write("d.yaml", proc_yaml("d", extra="  dependsOn: [d]\n"))
        res = run("validate", "--output", "github", ".", cwd=r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out,
                         "::error file=./a.yaml,line=8,col=7::spec.dependsOn[1]: \"ghost\" names no resource in "
                         "this commit\n"
                         "::error file=./b.yaml,line=6,col=15::spec.dependsOn[0]: dependency cycle: a -> b -> a\n"
                         "::error file=./c.yaml,line=6,col=21::spec.dependsOn: \"b\" is listed twice\n"
                         "::error file=./d.yaml,line=6,col=15::spec.dependsOn[0]: dependency cycle: d -> d\n")
        r.commit()
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual([(e["file"], e["line"], e["column"]) for e in res.json()["errors"]],
                         [("a.yaml", 8, 7), ("b.yaml", 6, 15), ("c.yaml", 6, 21), ("d.yaml", 6, 15)])


if __name__ == "__main__":
    unittest.main()
