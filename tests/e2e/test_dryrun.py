"""End to end: `validate` and `reconcile --dry-run` against real git repos."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import unittest

from gwtest import HDR, SLEEP, TempDirTest, pid_alive, proc_yaml, records, run, wait_for


class DryRun(TempDirTest):
    def base_repo(self, **kw):
        r = self.repo(**kw)
        r.write("apps/web.yaml", proc_yaml("web", extra="  env: {VERSION: \"1\"}\n"))
        r.write("apps/workers.yaml", proc_yaml("queue") + "---\n" +
                proc_yaml("worker", extra="  dependsOn: [queue]\n"))
        r.write("README.md", "not a manifest\n")
        r.commit("init")
        return r

    def dry(self, repo, *args):
        return run("reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state, "--node", "n1", *args)

    def test_fresh_node_plans_creates_and_exits_2(self):
        r = self.base_repo()
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.out,
                         f"  + Process/queue        create  {SLEEP}\n"
                         f"  + Process/web          create  {SLEEP}, env: {{\"VERSION\":\"1\"}}\n"
                         f"  + Process/worker       create  {SLEEP}\n"
                         "Plan: 3 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged.\n")
        # a dry-run only reads: not even the state dir was made
        self.assertFalse(os.path.exists(self.state))
        # the cache an apply makes is bare: no working tree
        self.apply(r.path)
        self.assertTrue(os.path.isfile(os.path.join(self.state, "repo.git", "HEAD")))
        self.assertFalse(os.path.exists(os.path.join(self.state, "repo.git", "apps")))

    def test_json_plan_has_the_spec_shape(self):
        r = self.base_repo()
        head = r.git("rev-parse", "HEAD")
        res = self.dry(r.path, "--output", "json")
        self.assertEqual(res.rc, 2, res)
        doc = res.json()
        self.assertEqual(set(doc), {"commit", "ref", "node", "actions", "summary", "errors"})
        self.assertEqual(doc["commit"], head)
        self.assertEqual(doc["ref"], "main")
        self.assertEqual(doc["node"], "n1")
        self.assertEqual(doc["summary"], {"create": 3, "update": 0, "delete": 0, "restart": 0, "unchanged": 0})
        self.assertEqual(doc["errors"], [])
        self.assertEqual([(a["kind"], a["name"], a["action"]) for a in doc["actions"]],
                         [("Process", "queue", "create"), ("Process", "web", "create"),
                          ("Process", "worker", "create")])

    def write_state_from(self, path, overrides=None):
        """Record in the state dir what `validate` says the manifests are:
        a node that already runs exactly these resources."""
        v = run("validate", "--output", "json", path)
        self.assertEqual(v.rc, 0, v)
        resources = []
        for r in v.json()["resources"]:
            entry = {"kind": r["kind"], "name": r["name"], "spec_hash": r["spec_hash"],
                     "spec": json.dumps(r["spec"], sort_keys=True, separators=(",", ":")),
                     "state": "running", "health": "healthy", "pid": 1, "restarts": 0}
            entry.update((overrides or {}).get(r["name"], {}))
            resources.append(entry)
        os.makedirs(self.state, exist_ok=True)
        with open(os.path.join(self.state, "state.json"), "w") as f:
            json.dump({"version": 1, "node": "n1", "commit": None, "ref": "main", "last_sync": 0,
                       "last_error": None, "resources": resources}, f)

    def apply(self, repo, *args):
        res = run("reconcile", "--repo", repo, "--state-dir", self.state, "--node", "n1", *args)
        self.assertEqual(res.rc, 0, res)
        return res

    def test_in_sync_exits_0_and_env_change_is_an_update(self):
        r = self.base_repo()
        self.apply(r.path)
        res = self.dry(r.path)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Plan: 0 to create, 0 to update, 0 to delete, 0 to restart, 3 unchanged.", res.out)
        r.write("apps/web.yaml", proc_yaml("web", extra="  env: {VERSION: \"2\"}\n"))
        r.commit("bump")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertIn('  ~ Process/web          update  env.VERSION: "1" -> "2"\n', res.out)
        doc = self.dry(r.path, "--output", "json").json()
        self.assertEqual(doc["actions"], [{"kind": "Process", "name": "web", "action": "update",
                                           "changes": [{"path": "spec.env.VERSION", "from": "1", "to": "2"}]}])

    def test_status_reads_the_recorded_state(self):
        r = self.base_repo()
        self.write_state_from(os.path.join(r.path, "apps"))
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        doc = res.json()
        self.assertEqual(set(doc), {"node", "labels", "commit", "ref", "remote_commit", "last_sync", "last_success",
                                    "last_attempt", "last_attempt_result", "last_error", "resources", "mode", "suspended",
                                    "pinned", "pending", "reverted", "healthy_deadline"})
        self.assertEqual((doc["mode"], doc["suspended"], doc["pending"]), ("enforce", None, []))
        self.assertEqual(doc["node"], "n1")
        self.assertEqual(doc["labels"], {})  # a state file written before labels were recorded
        self.assertEqual(sorted(x["name"] for x in doc["resources"]), ["queue", "web", "worker"])
        self.assertEqual(doc["resources"][0]["state"], "running")
        self.assertEqual(doc["resources"][0]["health"], "healthy")
        self.assertEqual(doc["resources"][0]["pid"], 1)
        res = run("status", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn("Process/web", res.out)
        with open(os.path.join(self.state, "state.json"), "w") as f:
            f.write('{"version": 1, "resources": [')
        res = run("status", "--state-dir", self.state)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("state file is corrupt", res.err)

    def test_removed_resource_is_pruned_unless_no_prune(self):
        r = self.base_repo()
        self.apply(r.path)
        r.remove("apps/web.yaml")
        r.commit("drop web")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  - Process/web          delete\n", res.out)
        res = self.dry(r.path, "--no-prune")
        self.assertEqual(res.rc, 0, res)

    def test_empty_commit_refused_without_allow_empty(self):
        r = self.base_repo()
        self.apply(r.path)
        r.remove("apps")
        r.commit("empty")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("--allow-empty", res.err)
        res = self.dry(r.path, "--allow-empty")
        self.assertEqual(res.rc, 2, res)
        self.assertIn("Plan: 0 to create, 0 to update, 3 to delete", res.out)

    def test_dead_workload_plans_restart_per_policy(self):
        r = self.base_repo()
        self.apply(r.path)
        pid = records(self.state)["web"]["pid"]
        os.kill(pid, 9)
        wait_for(lambda: not pid_alive(pid), what="web to die")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  ! Process/web          restart  killed by signal 9 (Killed)\n", res.out)
        self.assertEqual(records(self.state)["web"]["pid"], pid, "a dry-run changes nothing")

    def test_branches_tags_and_commit_ids(self):
        r = self.base_repo()
        first = r.git("rev-parse", "HEAD")
        r.git("tag", "v1")
        r.git("checkout", "-q", "-b", "feature")
        r.write("apps/extra.yaml", proc_yaml("extra"))
        r.commit("extra")
        r.git("checkout", "-q", "main")
        self.assertEqual(self.dry(r.path, "--ref", "feature", "--output", "json").json()["summary"]["create"], 4)
        self.assertEqual(self.dry(r.path, "--ref", "v1", "--output", "json").json()["summary"]["create"], 3)
        doc = self.dry(r.path, "--ref", first, "--output", "json").json()
        self.assertEqual(doc["commit"], first)
        self.assertEqual(doc["ref"], first)
        # the remote's default branch when --ref is absent
        self.assertEqual(self.dry(r.path, "--output", "json").json()["ref"], "main")

    def test_a_deleted_branch_is_pruned_from_the_cache(self):
        r = self.base_repo()
        r.git("branch", "gone")
        self.assertEqual(self.dry(r.path, "--ref", "gone").rc, 2)
        r.git("branch", "-D", "gone")
        res = self.dry(r.path, "--ref", "gone")
        self.assertEqual(res.rc, 1, res)
        self.assertIn('ref "gone" not found', res.err)

    def test_default_branch_follows_the_remote(self):
        r = self.repo(branch="trunk")
        r.write("a.yaml", proc_yaml("a"))
        r.commit()
        doc = self.dry(r.path, "--output", "json").json()
        self.assertEqual(doc["ref"], "trunk")

    def test_bare_remote_over_file_url_and_fetch_not_reclone(self):
        r = self.base_repo()
        bare = os.path.join(self.tmp, "remote.git")
        subprocess.run(["git", "clone", "-q", "--bare", r.path, bare], check=True, timeout=60)
        url = "file://" + bare
        self.assertEqual(self.dry(url).rc, 2)
        self.apply(url)
        marker = os.path.join(self.state, "repo.git", "gitward-marker")
        open(marker, "w").close()
        r.write("apps/new.yaml", proc_yaml("new"))
        r.commit("new")
        subprocess.run(["git", "-C", r.path, "push", "-q", bare, "main"], check=True, timeout=60)
        doc = self.dry(url, "--output", "json").json()
        self.assertEqual(doc["summary"]["create"], 1)
        self.apply(url)
        self.assertTrue(os.path.exists(marker), "the cache was re-cloned instead of fetched")

    def test_relative_local_path(self):
        self.base_repo()
        res = run("reconcile", "--dry-run", "--repo", "repo", "--state-dir", "state", cwd=self.tmp)
        self.assertEqual(res.rc, 2, res)

    def test_path_and_node_selector(self):
        r = self.base_repo()
        r.write("other/edge.yaml", proc_yaml("edge", extra="  nodeSelector: {role: edge}\n"))
        r.write("other/n2.yaml", proc_yaml("only-n2", extra="  nodeSelector: {node: n2}\n"))
        r.commit()
        doc = self.dry(r.path, "--path", "other", "--output", "json").json()
        self.assertEqual(doc["actions"], [])
        doc = self.dry(r.path, "--path", "other", "--label", "role=edge", "--output", "json").json()
        self.assertEqual([a["name"] for a in doc["actions"]], ["edge"])
        doc = run("reconcile", "--dry-run", "--repo", r.path, "--state-dir", self.state, "--node", "n2",
                  "--path", "other/", "--output", "json").json()
        self.assertEqual([a["name"] for a in doc["actions"]], ["only-n2"])
        doc = self.dry(r.path, "--path", "apps", "--path", "other", "--path", "apps/web.yaml",
                       "--label", "role=edge", "--output", "json").json()
        self.assertEqual(doc["summary"]["create"], 4)
        res = self.dry(r.path, "--path", "nope")
        self.assertEqual(res.rc, 1, res)
        self.assertIn("--path nope: no such folder", res.err)

    def test_symlinks_and_hidden_folders_are_skipped(self):
        r = self.base_repo()
        os.symlink("/etc/passwd", os.path.join(r.path, "apps", "evil.yaml"))
        os.symlink("web.yaml", os.path.join(r.path, "apps", "dup.yaml"))
        r.write(".github/ci.yaml", "not: a manifest\n")
        r.write("apps/.hidden/x.yaml", "garbage: [\n")
        r.commit()
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("3 to create", res.out)

    def test_invalid_commit_reports_every_error_and_exits_1(self):
        r = self.base_repo()
        r.write("apps/bad.yaml",
                HDR + "kind: Process\nmetadata: {name: bad}\nspec:\n  command: [/bin/true]\n  restart: maybe\n"
                "  stopTimeout: soon\n")
        r.write("apps/dup.yaml", proc_yaml("web"))
        r.commit("bad")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        self.assertIn("apps/bad.yaml:6:12: spec.restart: expected one of always, on-failure or never, got \"maybe\"",
                      res.err)
        self.assertIn("apps/bad.yaml:7:16: spec.stopTimeout: expected a duration", res.err)
        self.assertIn("apps/web.yaml:3:18: metadata.name: duplicate name \"web\" (first declared as Process at "
                      "apps/dup.yaml:3:18)", res.err)
        doc = self.dry(r.path, "--output", "json").json()
        self.assertEqual(len(doc["errors"]), 3)
        self.assertEqual(doc["actions"], [])
        self.assertEqual(doc["errors"][0], {"file": "apps/bad.yaml", "line": 6, "column": 12,
                                            "message": "spec.restart: expected one of always, on-failure or "
                                                       "never, got \"maybe\""})
        self.assertRegex(doc["commit"], "^[0-9a-f]{40}$")

    def test_unknown_ref_unreachable_remote_corrupt_cache(self):
        r = self.base_repo()
        res = self.dry(r.path, "--ref", "nope")
        self.assertEqual(res.rc, 1, res)
        self.assertIn('ref "nope" not found', res.err)
        res = self.dry(r.path, "--ref", "nope", "--output", "json")
        self.assertEqual(res.rc, 1)
        self.assertIn('ref \\"nope\\" not found', res.out)
        res = run("reconcile", "--dry-run", "--repo", "file://" + os.path.join(self.tmp, "missing.git"),
                  "--state-dir", os.path.join(self.tmp, "s2"))
        self.assertEqual(res.rc, 1, res)
        self.assertIn("missing.git: no such directory", res.err)
        self.assertEqual(res.err.count("\n"), 1, "one clear error line")
        res = run("reconcile", "--dry-run", "--repo", "ssh://git@127.0.0.1:1/none.git",
                  "--state-dir", os.path.join(self.tmp, "s3"), timeout=60)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("cannot reach the remote", res.err)
        # corrupt the cache (a dry-run reads the one an apply made)
        self.apply(r.path)
        with open(os.path.join(self.state, "repo.git", "HEAD"), "w") as f:
            f.write("garbage\n")
        res = self.dry(r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f"{self.state}/repo.git (remove it and gitward clones again): the git cache is corrupt",
                      res.err)

    def test_second_gitward_on_the_state_dir_exits_1_naming_the_pid(self):
        r = self.base_repo()
        os.makedirs(self.state)
        with open(os.path.join(self.state, "lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.write("4242\n")
            f.flush()
            res = run("reconcile", "--repo", r.path, "--state-dir", self.state, "--node", "n1")
            self.assertEqual(res.rc, 1, res)
            self.assertIn("in use by another gitward (pid 4242)", res.err)
            # a dry-run needs no lock
            self.assertEqual(self.dry(r.path).rc, 2)

    def test_config_file_and_flags_win(self):
        r = self.base_repo()
        cfg = os.path.join(self.tmp, "gitward.yaml")
        with open(cfg, "w") as f:
            f.write(f"repo: {r.path}\nstate-dir: {self.state}\nnode: n1\npath: [apps]\nlabel: {{role: edge}}\n")
        res = run("reconcile", "--dry-run", "--config", cfg, "--output", "json")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["node"], "n1")
        res = run("reconcile", "--dry-run", "--config", cfg, "--node", "other", "--output", "json")
        self.assertEqual(res.json()["node"], "other")
        with open(cfg, "w") as f:
            f.write(f"repo: {r.path}\nstatedir: x\n")
        res = run("reconcile", "--dry-run", "--config", cfg)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("gitward.yaml:2:1: statedir: unknown option", res.err)

    def test_the_example_config_file_parses(self):
        r = self.base_repo()
        example = os.path.join(os.path.dirname(__file__), "../../contrib/gitward.yaml.example")
        res = run("reconcile", "--dry-run", "--config", example, "--repo", r.path, "--state-dir", self.state,
                  "--path", "apps", "--output", "json")
        self.assertEqual(res.rc, 2, res)
        self.assertEqual(res.json()["summary"]["create"], 3)

    def test_usage_errors_and_help(self):
        for cmd in ("reconcile", "validate", "status", "version"):
            res = run(cmd, "--help")
            self.assertEqual(res.rc, 0, res)
            # each command's own usage line, first on stdout, nothing on stderr
            self.assertTrue(res.out.startswith(f"usage: gitward {cmd}"), res)
            self.assertEqual(res.err, "", res)
        self.assertEqual(run("reconcile", "--dry-run").rc, 64)
        self.assertEqual(run("reconcile", "--bogus").rc, 64)
        self.assertEqual(run("nosuch").rc, 64)
        # version, the commit built from, the libraries' runtime versions
        self.assertRegex(run("version").out, r"^gitward \d+\.\d+\.\d+\ncommit ([0-9a-f]{7,40}|unknown)\n"
                                             r"libgit2 [\d.]+\nlibcurl [\d.]+\nlibyaml [\d.]+\njansson [\d.]+\n$")
        v = run("version", "--output", "json").json()
        self.assertEqual(set(v), {"version", "commit", "libraries"})
        self.assertEqual(set(v["libraries"]), {"libgit2", "libcurl", "libyaml", "jansson"})
        self.assertEqual(run("version", "--output", "markdown").rc, 64)
        self.assertEqual(run("version", "extra").rc, 64)
        res = run("reconcile", "--dry-run", "--repo", "x", "--interval", "soon")
        self.assertEqual(res.rc, 64)
        self.assertIn("--interval", res.err)
        for bad in ("127.0.0.1", "127.0.0.1:http", "127.0.0.1:99999"):
            res = run("agent", "--repo", "x", "--listen", bad)
            self.assertEqual(res.rc, 64, res)
            self.assertIn("--listen: expected ADDR:PORT", res.err)
        res = run("agent", "--repo", "x", "--label", "novalue")
        self.assertEqual(res.rc, 64)
        self.assertIn("--label: expected K=V", res.err)


class Validate(TempDirTest):
    def test_folder_of_bad_manifests_lists_every_problem(self):
        d = os.path.join(self.tmp, "m")
        os.makedirs(os.path.join(d, "sub"))
        with open(os.path.join(d, "a.yaml"), "w") as f:
            f.write(HDR + "kind: Container\nmetadata: {name: api}\nspec:\n  image: busybox\n"
                    "  ports: [\"80\"]\n  memory: lots\n")
        with open(os.path.join(d, "sub", "b.yml"), "w") as f:
            f.write("a: &x 1\n")
        with open(os.path.join(d, "sub", "c.yaml"), "wb") as f:
            f.write(b"kind: \"\xff\"\n")
        with open(os.path.join(d, "ignored.txt"), "w") as f:
            f.write("garbage")
        res = run("validate", d)
        self.assertEqual(res.rc, 1, res)
        lines = res.err.strip().split("\n")
        self.assertEqual(lines, [
            f"{d}/a.yaml:6:11: spec.ports[0]: expected \"[IP:]HOSTPORT:PORT[/tcp|udp]\" with ports 1-65535, "
            "got \"80\"",
            f"{d}/a.yaml:7:11: spec.memory: expected a size like 512Mi, 2Gi or 1000000, got \"lots\"",
            f"{d}/sub/b.yml:1:4: YAML anchors and aliases are not allowed in manifests",
            f"{d}/sub/c.yaml:1:8: invalid UTF-8 byte 0xff",
            "4 problems found.",
        ])
        doc = run("validate", "--output", "json", d).json()
        self.assertFalse(doc["valid"])
        self.assertEqual(len(doc["errors"]), 4)

    def test_repo_examples_are_valid(self):
        examples = os.path.join(os.path.dirname(__file__), "../../manifests/examples")
        res = run("validate", examples)
        self.assertEqual(res.rc, 0, res)
        self.assertRegex(res.out, r"^\d+ resources in \d+ files: valid.\n$")

    def test_the_demo_plans_the_repository_examples_as_a_commit(self):
        """contrib/demo.sh's dry-run: the examples as a commit of this very
        repository resolve (an External's sources are files of the commit),
        and only the Process examples are for a node without labels."""
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
        res = run("reconcile", "--dry-run", "--repo", root, "--path", "manifests/examples", "--state-dir",
                  os.path.join(self.tmp, "state"), timeout=120)
        self.assertEqual(res.rc, 2, res)
        self.assertRegex(res.out, r"Plan: 3 to create, 0 to update, 0 to delete, 0 to restart, 0 unchanged\.\n$")
        for name in ("Process/queue", "Process/web", "Process/worker"):
            self.assertIn(name, res.out)
        for name in ("External/motd", "Container/", "VM/"):
            self.assertNotIn(name, res.out)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "state")), "a dry-run writes nothing")

    def test_validate_never_needs_referenced_files(self):
        p = os.path.join(self.tmp, "vm.yaml")
        with open(p, "w") as f:
            f.write(HDR + "kind: VM\nmetadata: {name: v}\nspec: {kernel: /no/such/kernel, disk: /no/disk}\n")
        self.assertEqual(run("validate", p).rc, 0)

    def test_missing_path(self):
        res = run("validate", os.path.join(self.tmp, "none"))
        self.assertEqual(res.rc, 1)
        self.assertIn("cannot read", res.err)


if __name__ == "__main__":
    unittest.main()
