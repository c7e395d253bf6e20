"""Golden canonical forms and spec hashes: one manifest of every kind with
every field (tests/e2e/golden/*.yaml). The canonical form is a fixed point:
the spec hash is the sha256 of it, and a changed hash replaces the workload.
If the canonical form changed by accident, an upgrade would replace every
workload of every node of a fleet at once. A deliberate change updates
golden/expected.json in the same commit and says so in contrib/docs/manifests.md."""
import hashlib
import json
import os
import unittest

from gwtest import run

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


class Golden(unittest.TestCase):
    def test_canonical_forms_and_spec_hashes_are_pinned(self):
        files = [os.path.join(HERE, f) for f in ("process.yaml", "container.yaml", "vm.yaml")]
        res = run("validate", "--output", "json", *files)
        self.assertEqual(res.rc, 0, res)
        got = {f"{r['kind']}/{r['name']}": {"spec": r["spec"], "spec_hash": r["spec_hash"]}
               for r in res.json()["resources"]}
        with open(os.path.join(HERE, "expected.json")) as f:
            want = json.load(f)
        self.assertEqual(sorted(got), sorted(want))
        for key in want:
            self.assertEqual(got[key]["spec"], want[key]["spec"], f"the canonical form of {key} changed")
            self.assertEqual(got[key]["spec_hash"], want[key]["spec_hash"], f"the spec hash of {key} changed")
            # the hash is the sha256 of the canonical text: sorted keys, no spaces
            text = json.dumps(want[key]["spec"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self.assertEqual(hashlib.sha256(text.encode()).hexdigest(), want[key]["spec_hash"])

    def test_defaults_and_spellings_fold_to_the_same_hash(self):
        """Writing a default, or another spelling of a duration or size, is no change."""
        base = ("apiVersion: gitward/v1\nkind: Process\nmetadata: {name: a}\nspec:\n"
                "  command: [/bin/sleep, \"1\"]\n")
        variants = ["", "  restart: always\n", "  stopTimeout: 10s\n", "  stopSignal: TERM\n",
                    "  labels: {}\n".replace("labels", "nodeSelector")]
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gw-golden-{os.getpid()}")
        os.makedirs(tmp, exist_ok=True)
        hashes = set()
        try:
            for i, v in enumerate(variants):
                p = os.path.join(tmp, f"v{i}.yaml")
                with open(p, "w") as f:
                    f.write(base + v)
                res = run("validate", "--output", "json", p)
                self.assertEqual(res.rc, 0, res)
                hashes.add(res.json()["resources"][0]["spec_hash"])
        finally:
            for f in os.listdir(tmp):
                os.remove(os.path.join(tmp, f))
            os.rmdir(tmp)
        self.assertEqual(len(hashes), 1, hashes)


if __name__ == "__main__":
    unittest.main()
