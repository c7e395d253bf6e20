"""Per-node values: ${node.name} and ${node.labels.KEY} in the strings of a
spec, put in on each node (SPEC "Manifests"), seen in the real environment
of the processes started; a label a node lacks fails that resource there
alone; a label change replaces the workload; validate checks the syntax;
diff --nodes shows each node's values."""
import json
import os

from gwtest import HDR, TempDirTest, pid_alive, proc_yaml, records, run, wait_for

WEB = f"""{HDR}kind: Process
metadata:
  name: web
spec:
  command: ["/bin/sleep", "300"]
  env:
    WHO: "${{node.name}}"
    ROLE: ${{node.labels.role}}
    LIT: "$${{HOME}} x"
"""


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)


class NodeValues(TempDirTest):
    def setUp(self):
        super().setUp()
        self.r = self.repo()
        self.r.write("other.yaml", proc_yaml("other"))
        self.base = self.r.commit("other")
        self.r.write("web.yaml", WEB)
        self.head = self.r.commit("web")

    def reconcile(self, state, node, *labels, expect=0):
        args = ["reconcile", "--repo", self.r.path, "--state-dir", state, "--node", node]
        for lab in labels:
            args += ["--label", lab]
        res = run(*args)
        self.assertEqual(res.rc, expect, res)
        return res

    def pid(self, state, name):
        return records(state)[name]["pid"]

    def status(self, state):
        res = run("status", "--state-dir", state, "--output", "json")
        self.assertEqual(res.rc, 0, res)
        return res.json()

    def test_each_node_gets_its_values_and_a_label_change_replaces(self):
        s1, s2 = os.path.join(self.tmp, "s1"), os.path.join(self.tmp, "s2")
        self.reconcile(s1, "n1", "role=edge")
        self.reconcile(s2, "n2", "role=core")
        e1, e2 = environ_of(self.pid(s1, "web")), environ_of(self.pid(s2, "web"))
        self.assertEqual((e1[b"WHO"], e1[b"ROLE"]), (b"n1", b"edge"))
        self.assertEqual((e2[b"WHO"], e2[b"ROLE"]), (b"n2", b"core"))
        self.assertEqual(e1[b"LIT"], b"${HOME} x")  # $${ is a literal ${, not substituted further
        h1, h2 = (next(r["spec_hash"] for r in self.status(s)["resources"] if r["name"] == "web") for s in (s1, s2))
        self.assertNotEqual(h1, h2)
        # the same node again: nothing changes
        old = self.pid(s1, "web")
        res = self.reconcile(s1, "n1", "role=edge")
        self.assertIn("0 to update", res.out)
        self.assertEqual(self.pid(s1, "web"), old)
        # another label value: another spec hash, the workload is replaced
        res = self.reconcile(s1, "n1", "role=core")
        self.assertIn("Process/web", res.out)
        self.assertIn("1 to update", res.out)
        new = self.pid(s1, "web")
        self.assertNotEqual(new, old)
        wait_for(lambda: not pid_alive(old), what="the old workload gone")
        self.assertEqual(environ_of(new)[b"ROLE"], b"core")
        # the label gone: web fails on this node, what runs is kept untouched
        res = self.reconcile(s1, "n1", expect=1)
        self.assertEqual(self.pid(s1, "web"), new)
        self.assertTrue(pid_alive(new))
        st = self.status(s1)
        self.assertIn('node "n1" has no label "role"', st["last_error"])
        web = next(r for r in st["resources"] if r["name"] == "web")
        self.assertEqual(web["state"], "running")
        self.assertIn("${node.labels.role} in spec.env.ROLE", web["detail"])

    def test_node_without_the_label_fails_that_resource_only(self):
        s3 = os.path.join(self.tmp, "s3")
        res = self.reconcile(s3, "n3", expect=1)
        self.assertIn("1 ok, 1 failed", res.out)
        st = self.status(s3)
        self.assertEqual(st["last_error"],
                         'Process/web: ${node.labels.role} in spec.env.ROLE: node "n3" has no label "role" '
                         "(web.yaml:4:9)")
        by = {r["name"]: r for r in st["resources"]}
        self.assertEqual(by["web"]["state"], "failed")
        self.assertIsNone(by["web"]["pid"])
        self.assertEqual(by["other"]["state"], "running")
        self.assertTrue(pid_alive(self.pid(s3, "other")))

    def test_validate_reports_syntax_with_position(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(WEB.replace("${node.labels.role}", "${node.lables.role}") + '    UN: "é ${node.name"\n')
        res = run("validate", bad)
        self.assertEqual(res.rc, 1, res)
        self.assertIn(f'{bad}:9:11: spec.env.ROLE: "${{node.lables.role}}" is not a node value '
                      '(did you mean "${node.labels.role}"?)', res.out + res.err)
        self.assertIn(f'{bad}:11:12: spec.env.UN: unterminated "${{"', res.out + res.err)
        # the good one: valid without any node
        good = os.path.join(self.r.path, "web.yaml")
        res = run("validate", good)
        self.assertEqual(res.rc, 0, res)
        # not in nodeSelector: a value there is an ordinary invalid label
        sel = os.path.join(self.tmp, "sel.yaml")
        with open(sel, "w") as f:
            f.write(proc_yaml("s", extra="  nodeSelector: {role: \"${node.name}\"}\n"))
        res = run("validate", sel)
        self.assertEqual(res.rc, 1, res)
        self.assertIn("spec.nodeSelector.role: expected a label value", res.out + res.err)

    def test_diff_nodes_and_against_show_each_nodes_values(self):
        inv = os.path.join(self.tmp, "inv.yaml")
        with open(inv, "w") as f:
            f.write("nodes:\n  - name: n1\n    labels: {role: edge}\n  - name: n2\n    labels: {role: core}\n")
        res = run("diff", "--repo", self.r.path, "--state-dir", os.path.join(self.tmp, "d"), "--base", self.base,
                  "--nodes", inv)
        self.assertEqual(res.rc, 2, res)
        n1, n2 = res.out.split("Node n2:")
        self.assertIn('"ROLE":"edge","WHO":"n1"', n1)
        self.assertIn('"ROLE":"core","WHO":"n2"', n2)
        # base and head both with values: a commit that changes nothing in
        # web shows no change on either node
        self.r.write("third.yaml", proc_yaml("third"))
        third = self.r.commit("third")
        res = run("diff", "--repo", self.r.path, "--state-dir", os.path.join(self.tmp, "d"), "--base", self.head,
                  "--head", third, "--nodes", inv, "--output", "json")
        self.assertEqual(res.rc, 2, res)
        self.assertNotIn("Process/web", res.out.replace('"name":"web","action":"none"', ""))
        # --against: the node and labels from its status; a flag overrides
        s1 = os.path.join(self.tmp, "s1")
        self.reconcile(s1, "n1", "role=edge")
        st = os.path.join(self.tmp, "st.json")
        with open(st, "w") as f:
            json.dump(self.status(s1), f)
        sx = os.path.join(self.tmp, "sx")
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", sx, "--against", st)
        self.assertEqual(res.rc, 0, res)
        res = run("reconcile", "--dry-run", "--repo", self.r.path, "--state-dir", sx, "--against", st, "--label",
                  "role=core")
        self.assertEqual(res.rc, 2, res)
        self.assertIn("Process/web", res.out)


if __name__ == "__main__":
    import unittest
    unittest.main()
