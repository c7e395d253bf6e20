"""Review in CI: exclusions (.gitwardignore, --exclude), errors at their
cause, `gitward diff` between two commits per node, markdown and github
output, a dry-run against a node's recorded status, and the contrib/ci
commands on a real repository with a branch and a merge base."""
import json
import os
import shutil
import subprocess
import unittest

from gwtest import GITWARD, SLEEP, TempDirTest, proc_yaml, run, wait_for
from test_agent import AgentBase

CONTRIB_CI = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../contrib/ci"))
NODES = "nodes:\n  - name: web-01\n    labels: {role: edge}\n  - name: db-01\n    labels: {role: db}\n"


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
        self.assertEqual(res.out, f"  + Process/keep         create  {SLEEP}\n"
                         f"  + Process/web          create  {SLEEP}\n"
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
        self.assertEqual(res.out, f"  + Process/web          create  {SLEEP}\n"
                         "Plan: 1 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n")
        self.assertFalse(os.path.exists(self.state))

    def test_exclude_is_checked(self):
        res = run("reconcile", "--dry-run", "--repo", self.tmp, "--exclude", "")
        self.assertEqual(res.rc, 64, res)
        self.assertTrue(res.err.startswith("gitward: --exclude: expected a glob like docs/ or ci/*.yml\n"), res.err)


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
                         "::error file=a.yaml,line=8,col=7::spec.dependsOn[1]: \"ghost\" names no resource in "
                         "this commit\n"
                         "::error file=b.yaml,line=6,col=15::spec.dependsOn[0]: dependency cycle: a -> b -> a\n"
                         "::error file=c.yaml,line=6,col=21::spec.dependsOn: \"b\" is listed twice\n"
                         "::error file=d.yaml,line=6,col=15::spec.dependsOn[0]: dependency cycle: d -> d\n")
        r.commit()
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual([(e["file"], e["line"], e["column"]) for e in res.json()["errors"]],
                         [("a.yaml", 8, 7), ("b.yaml", 6, 15), ("c.yaml", 6, 21), ("d.yaml", 6, 15)])

    def test_validate_names_files_as_a_pass_does(self):
        """Repo-relative, no "./": an annotation of validate lands where the
        dry-run's would."""
        r = self.repo()
        r.write("apps/x.yaml", proc_yaml("x", extra="  bogus: 1\n"))
        r.commit()
        want = "::error file=apps/x.yaml,line=6,col=3::spec.bogus: unknown field\n"
        for path in (".", "./", "./apps//", "apps/./x.yaml"):
            res = run("validate", "--output", "github", path, cwd=r.path)
            self.assertEqual((res.rc, res.out), (1, want), path)
        res = run("validate", "--output", "json", ".", cwd=r.path)
        self.assertEqual(res.json()["errors"][0]["file"], "apps/x.yaml")
        res = run("validate", ".", cwd=r.path)
        self.assertEqual(res.err, "apps/x.yaml:6:3: spec.bogus: unknown field\n1 problem found.\n")
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--output", "github")
        self.assertEqual((res.rc, res.out), (1, want))


def review_repo(r):
    """main: web (edge), db, old (db); the branch feature changes web's env,
    drops old, adds worker after db."""
    r.write("web.yaml", proc_yaml("web", extra="  env: {VERSION: \"1\", API_TOKEN: abc}\n  nodeSelector: {role: edge}\n"))
    r.write("db.yaml", proc_yaml("db"))
    r.write("old.yaml", proc_yaml("old", extra="  nodeSelector: {role: db}\n"))
    r.write("gitward-nodes.yaml", NODES)
    r.write(".gitwardignore", "gitward-nodes.yaml\n")
    base = r.commit("base")
    r.git("checkout", "-q", "-b", "feature")
    r.write("web.yaml", proc_yaml("web", extra="  env: {VERSION: \"2\", API_TOKEN: xyz}\n  nodeSelector: {role: edge}\n"))
    r.remove("old.yaml")
    r.write("worker.yaml", proc_yaml("worker", extra="  dependsOn: [db]\n"))
    head = r.commit("feature")
    return base, head


MARKDOWN = """### gitward plan

Commit <code>{head}</code> (<code>feature</code>) against <code>{base}</code>.

**web-01**: 1 to create, 1 to update, 0 to delete, 0 to restart, 1 unchanged.

| | Resource | Action | Detail |
|:-:|---|---|---|
| ~ | Process/web | update | 2 fields changed |
| + | Process/worker | create | command <code>&#91;"/bin/sleep","300"]</code> |

<details><summary>Field changes on web-01</summary>

| Resource | Field | From | To |
|---|---|---|---|
| Process/web | <code>env.API_TOKEN</code> | <code>"&#42;&#42;&#42;"</code> | <code>"&#42;&#42;&#42;"</code> |
| Process/web | <code>env.VERSION</code> | <code>"1"</code> | <code>"2"</code> |

</details>

**db-01**: 1 to create, 0 to update, 1 to delete, 0 to restart, 1 unchanged.

| | Resource | Action | Detail |
|:-:|---|---|---|
| + | Process/worker | create | command <code>&#91;"/bin/sleep","300"]</code> |
| - | Process/old | delete |  |
"""


class DiffTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.base, self.head = review_repo(self.r)
        self.nodes = os.path.join(self.r.path, "gitward-nodes.yaml")

    def diff(self, *args):
        return run("diff", "--repo", self.r.path, "--state-dir", self.state, *args)

    def test_text_per_node_of_an_inventory_and_nothing_written(self):
        res = self.diff("--base", "main", "--ref", "feature", "--nodes", self.nodes)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "Node web-01:\n"
                         "  ~ Process/web          update  env.API_TOKEN: \"abc\" -> \"xyz\", env.VERSION: \"1\" -> \"2\"\n"
                         f"  + Process/worker       create  {SLEEP}\n"
                         "Plan: 1 to create, 1 to update, 0 to delete, 0 to restart, 1 unchanged.\n"
                         "\nNode db-01:\n"
                         f"  + Process/worker       create  {SLEEP}\n"
                         "  - Process/old          delete\n"
                         "Plan: 1 to create, 0 to update, 1 to delete, 0 to restart, 1 unchanged.\n")
        self.assertEqual(res.err, "")
        self.assertFalse(os.path.exists(self.state))

    def test_json_of_one_node_and_exit_codes(self):
        res = self.diff("--base", self.base, "--head", self.head, "--node", "n1", "--label", "role=db",
                        "--output", "json")
        self.assertEqual(res.rc, 2, res)
        doc = res.json()
        self.assertEqual((doc["commit"], doc["base"], doc["node"]), (self.head, self.base, "n1"))
        self.assertEqual([(a["name"], a["action"]) for a in doc["actions"]], [("worker", "create"), ("old", "delete")])
        self.assertEqual(doc["summary"], {"create": 1, "update": 0, "delete": 1, "restart": 0, "unchanged": 1})
        res = self.diff("--base", "main", "--head", "main", "--node", "n1")
        self.assertEqual((res.rc, res.out), (0, "Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, "
                                                 "1 unchanged.\n"), res)
        res = self.diff("--base", "nosuch", "--ref", "feature")
        self.assertEqual(res.rc, 1, res)
        self.assertIn("gitward: error: --base: ref \"nosuch\" not found in ", res.err)
        res = self.diff("--ref", "feature")
        self.assertEqual(res.rc, 64, res)
        self.assertTrue(res.err.startswith("gitward: --base is required: the commit to compare with"), res.err)

    def test_markdown_and_github(self):
        res = self.diff("--base", "main", "--ref", "feature", "--nodes", self.nodes, "--output", "markdown")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, MARKDOWN.format(head=self.head[:12], base=self.base[:12]))
        self.assertNotIn("xyz", res.out)
        res = self.diff("--base", "main", "--ref", "feature", "--nodes", self.nodes, "--output", "github")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "::notice title=gitward plan::web-01: 1 to create, 1 to update, 0 to delete, 0 to "
                         "restart, 1 unchanged.\n::notice title=gitward plan::db-01: 1 to create, 0 to update, 1 "
                         "to delete, 0 to restart, 1 unchanged.\n")
        # a problem in head: an annotation at its cause, exit 1
        self.r.write("worker.yaml", proc_yaml("worker", extra="  dependsOn: [db, ghost]\n"))
        self.r.commit("broken")
        res = self.diff("--base", "main", "--ref", "feature", "--nodes", self.nodes, "--output", "github")
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "::error file=worker.yaml,line=6,col=19::spec.dependsOn[1]: \"ghost\" names no "
                         "resource in this commit\n")
        res = self.diff("--base", "main", "--ref", "feature", "--nodes", self.nodes, "--output", "markdown")
        self.assertEqual(res.rc, 1, res)
        head = self.r.git("rev-parse", "HEAD")
        self.assertEqual(res.out, "### gitward plan\n\nCommit <code>%s</code> (<code>feature</code>) against "
                         "<code>%s</code>.\n\n**Errors** (nothing of this commit would be applied):\n\n"
                         "- <code>worker.yaml:6:19</code> spec.dependsOn&#91;1]: \"ghost\" names no resource in this "
                         "commit\n" % (head[:12], self.base[:12]))

    def test_inventory_problems_at_their_position(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("nodes:\n  - name: a\n    labels: {role: [x]}\n  - name: a\n  - {nmae: b}\n")
        res = self.diff("--base", "main", "--nodes", bad)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err, f"{bad}:3:14: labels.role: expected a string\n"
                         f"{bad}:4:11: name: node \"a\" is listed twice\n"
                         f"{bad}:5:6: nmae: unknown field (name, labels)\n"
                         f"{bad}:5:5: name: expected the node's name\n")


class AgainstTest(AgentBase):
    def test_dry_run_against_a_running_agents_status(self):
        r = self.repo()
        base, head = review_repo(r)
        r.git("checkout", "-q", "main")
        a = self.agent(r, "--ref", "main", "--label", "role=edge", "--interval", "1h")
        wait_for(lambda: self.http(a, "/status")[1].count('"state":"running"') == 2, what="two running")
        status = os.path.join(self.tmp, "status.json")
        with open(status, "w") as f:
            f.write(self.http(a, "/status")[1])
        ci_state = os.path.join(self.tmp, "ci-state")
        for against in (f"http://127.0.0.1:{a.port}/status", status):
            res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "feature",
                      "--label", "role=edge", "--against", against)
            self.assertEqual(res.rc, 2, res)
            self.assertEqual(res.out, "  ~ Process/web          update  env.API_TOKEN: \"abc\" -> \"xyz\", "
                             f"env.VERSION: \"1\" -> \"2\"\n  + Process/worker       create  {SLEEP}\n"
                             "Plan: 1 to create, 1 to update, 0 to delete, 0 to restart, 1 unchanged.\n")
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "main",
                  "--label", "role=edge", "--against", f"http://127.0.0.1:{a.port}/status", "--output", "markdown")
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.out, "### gitward plan\n\nCommit <code>%s</code> against the recorded status of node "
                         "<code>n1</code>.\n\n**n1**: no changes (2 unchanged).\n" % base[:12])
        self.assertFalse(os.path.exists(ci_state))
        res = run("reconcile", "--dry-run", "--repo", r.path, "--against", f"http://127.0.0.1:{a.port}/nosuch")
        self.assertEqual((res.rc, res.err), (1, f"gitward: error: --against http://127.0.0.1:{a.port}/nosuch: "
                                                "HTTP status 404\n"), res)
        res = run("reconcile", "--repo", r.path, "--against", status)
        self.assertEqual(res.rc, 64, res)
        self.assertTrue(res.err.startswith("gitward: --against needs --dry-run\n"), res.err)


    def test_the_readme_example_plans_with_the_labels_of_the_status(self):
        """`gitward reconcile --dry-run --repo URL --ref feature --against
        http://web-01:9420/status` as contrib/docs/ci.md writes it (no --node, no
        --label) against a node whose workloads have a nodeSelector: the
        node's name and labels come from its status, so web is an update,
        never a false delete. Flags override them."""
        r = self.repo()
        review_repo(r)
        r.git("checkout", "-q", "main")
        a = self.agent(r, "--ref", "main", "--label", "role=edge", "--interval", "1h")
        wait_for(lambda: self.http(a, "/status")[1].count('"state":"running"') == 2, what="two running")
        code, body = self.http(a, "/status")
        self.assertEqual(code, 200)
        self.assertEqual((json.loads(body)["node"], json.loads(body)["labels"]), ("n1", {"role": "edge"}))
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual((res.rc, res.json()["labels"]), (0, {"role": "edge"}), res)
        res = run("status", "--state-dir", self.state)
        self.assertIn("node:         n1\nlabels:       role=edge\n", res.out)
        ci_state = os.path.join(self.tmp, "ci-state")  # the CI runner's: no gitward there
        url = f"http://127.0.0.1:{a.port}/status"
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "feature",
                  "--against", url)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out, "  ~ Process/web          update  env.API_TOKEN: \"abc\" -> \"xyz\", "
                         "env.VERSION: \"1\" -> \"2\"\n  + Process/worker       create  command: [\"/bin/sleep\",\"300\"]\n"
                         "Plan: 1 to create, 1 to update, 0 to delete, 0 to restart, 1 unchanged.\n")
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "feature",
                  "--against", url, "--output", "json")
        self.assertEqual((res.rc, res.json()["node"], res.json()["summary"]["delete"]), (2, "n1", 0), res)
        # --label overrides the status's labels (the label node stays the name)
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "feature",
                  "--against", url, "--label", "role=db")
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  - Process/web          delete\n", res.out)
        # a status of an earlier version names no labels: said, not guessed
        doc = json.loads(body)
        del doc["labels"]
        old = os.path.join(self.tmp, "old-status.json")
        with open(old, "w") as f:
            json.dump(doc, f)
        res = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", ci_state, "--ref", "feature",
                  "--against", old)
        self.assertEqual(res.rc, 2, res)
        self.assertIn(f"{old} names no labels (an agent of an earlier version): the plan selects by --label, "
                      "none given", res.err)
        self.assertFalse(os.path.exists(ci_state))


class CiTest(TempDirTest):
    def test_the_contrib_ci_script_on_a_branch_with_a_merge_base(self):
        origin = self.repo("origin")
        base, _ = review_repo(origin)
        origin.git("checkout", "-q", "main")
        origin.write("unrelated.txt", "main moved on after the branch\n")
        origin.commit("main moves")
        work = os.path.join(self.tmp, "work")
        subprocess.run(["git", "clone", "-q", origin.path, work], check=True, timeout=60)
        subprocess.run(["git", "-C", work, "checkout", "-q", "--detach", "origin/feature"], check=True, timeout=60)
        os.makedirs(os.path.join(work, "ci"))
        shutil.copy(os.path.join(CONTRIB_CI, "gitward-plan.sh"), os.path.join(work, "ci"))
        env = dict(os.environ, GITWARD=GITWARD, GITWARD_STATE_DIR=os.path.join(self.tmp, "ci-state"),
                   GITWARD_VALIDATE_OUTPUT="github")
        cp = subprocess.run(["ci/gitward-plan.sh", "origin/main", "plan.md"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, "")
        head = subprocess.run(["git", "-C", work, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        with open(os.path.join(work, "plan.md")) as f:
            self.assertEqual(f.read(), MARKDOWN.format(head=head[:12], base=base[:12]).replace(
                "(<code>feature</code>)", "(<code>gitward-ci-head</code>)"))
        # a broken manifest: annotations, exit 1
        with open(os.path.join(work, "db.yaml"), "a") as f:
            f.write("  restart: sometimes\n")
        cp = subprocess.run(["ci/gitward-plan.sh", "origin/main", "plan.md"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(cp.returncode, 1)
        self.assertTrue(cp.stdout.startswith("::error file=db.yaml,line=6,col=12::spec.restart: "), cp.stdout)

    def test_the_ci_files_run_the_script(self):
        for name in ("github-actions.yml", "gitlab-ci.yml"):
            with open(os.path.join(CONTRIB_CI, name)) as f:
                self.assertIn("ci/gitward-plan.sh \"origin/", f.read())


if __name__ == "__main__":
    unittest.main()
