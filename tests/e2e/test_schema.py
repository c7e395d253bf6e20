"""The checked-in JSON Schema is what `gitward schema` generates, and the
examples satisfy it."""
import glob
import json
import os
import unittest

import jsonschema
import yaml

from gwtest import run

ROOT = os.path.join(os.path.dirname(__file__), "../..")


class Schema(unittest.TestCase):
    def test_checked_in_schema_is_generated(self):
        res = run("schema")
        self.assertEqual(res.rc, 0, res)
        with open(os.path.join(ROOT, "manifests/schema/gitward-v1.schema.json")) as f:
            self.assertEqual(json.loads(res.out), json.load(f),
                             "regenerate with: build/agent/gitward schema > manifests/schema/gitward-v1.schema.json")

    def test_examples_satisfy_the_schema(self):
        schema = json.loads(run("schema").out)
        docs = 0
        for path in sorted(glob.glob(os.path.join(ROOT, "manifests/examples/**/*.yaml"), recursive=True)):
            with open(path) as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        jsonschema.validate(doc, schema)
                        docs += 1
        self.assertGreaterEqual(docs, 5)

    def test_schema_rejects_an_unknown_field(self):
        schema = json.loads(run("schema").out)
        bad = {"apiVersion": "gitward/v1", "kind": "Process", "metadata": {"name": "x"},
               "spec": {"command": ["/bin/true"], "bogus": 1}}
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


if __name__ == "__main__":
    unittest.main()
