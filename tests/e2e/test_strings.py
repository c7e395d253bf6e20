"""End to end: hostile strings. Escaped NULs in manifests, Git file names with
control characters or bytes that are not UTF-8, and a byte order mark: text
output keeps one event per line, JSON stays valid and complete."""
import json
import re
import os
import signal
import subprocess
import unittest

from gwtest import GITWARD, HDR, TempDirTest, proc_yaml, run, wait_for

NUL_MSG = "NUL character in a string (escaped as \\0, \\x00 or \\u0000)"
BAD = HDR + "kind: Process\nmetadata: {name: a}\nspec: {command: [/bin/true], bogus: 1}\n"
# a name that would forge a log line and clear a terminal, and one that is not UTF-8
NL_NAME = b"a\ninfo pass done\x1b[2J.yaml"
NL_TEXT = "a\\ninfo pass done\\x1b[2J.yaml"
FF_NAME = b"b\xff.yaml"
FF_TEXT = "b\\xff.yaml"


class Strings(TempDirTest):
    def dry(self, repo, *args):
        return run("reconcile", "--dry-run", "--repo", repo, "--state-dir", self.state, "--node", "n1", *args)

    def hostile_repo(self):
        """Two manifests whose names only Git plumbing can make."""
        r = self.repo()
        blob = subprocess.run(["git", "-C", r.path, "hash-object", "-w", "--stdin"], input=BAD.encode(),
                              capture_output=True, check=True).stdout.strip()
        for name in (NL_NAME, FF_NAME):
            subprocess.run([b"git", b"-C", r.path.encode(), b"update-index", b"--add", b"--cacheinfo",
                            b"100644," + blob + b"," + name], check=True, timeout=60)
        r.git("commit", "-q", "-m", "hostile names")
        return r

    def assert_lines(self, text, prefixes):
        """Every line starts as an event of ours: no forged line."""
        for line in text.splitlines():
            line = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", "", line)  # the timestamp
            self.assertTrue(line.startswith(prefixes), f"unexpected line {line!r} in\n{text}")
        self.assertNotIn("\x1b", text)

    def test_escaped_nul_is_refused_by_validate_dryrun_and_json(self):
        cases = {
            "name.yaml": (HDR + "kind: Process\nmetadata: {name: \"a\\0b\"}\nspec: {command: [/bin/true]}\n", 3, 18),
            "user.yaml": (proc_yaml("u", extra="  user: \"nobody\\0\"\n"), 6, 9),
            "wd.yaml": (proc_yaml("w", extra="  workingDir: \"/srv\\x00\"\n"), 6, 15),
            "env.yaml": (proc_yaml("e", extra="  env: {A: \"x\\u0000tail\"}\n"), 6, 12),
            "key.yaml": (proc_yaml("k", extra="  env: {\"A\\U00000000\": x}\n"), 6, 9),
        }
        d = os.path.join(self.tmp, "m")
        r = self.repo()
        os.makedirs(d)
        for f, (text, _, _) in cases.items():
            with open(os.path.join(d, f), "w") as fh:
                fh.write(text)
            r.write(f, text)
        r.commit()
        want = sorted(f"{f}:{line}:{col}: {NUL_MSG}" for f, (_, line, col) in cases.items())

        res = run("validate", d)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err.splitlines(), [f"{d}/{w}" for w in want] + ["5 problems found."])

        res = run("validate", "--output", "json", d)
        self.assertEqual(res.rc, 1, res)
        doc = res.json()
        self.assertFalse(doc["valid"])
        self.assertEqual(doc["resources"], [])
        self.assertEqual(sorted(f"{os.path.basename(e['file'])}:{e['line']}:{e['column']}: {e['message']}"
                                for e in doc["errors"]), want)

        # the agent's own pass: refused (exit 1), never a crash, nothing planned
        res = self.dry(r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.out, "")
        self.assertEqual(res.err.splitlines()[:5], want)
        self.assertNotIn("runtime error", res.err)
        res = self.dry(r.path, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        doc = res.json()
        self.assertEqual(doc["actions"], [])
        self.assertEqual(sorted(f"{e['file']}:{e['line']}:{e['column']}: {e['message']}" for e in doc["errors"]),
                         want)

    def test_git_file_names_are_escaped_in_text_and_kept_in_json(self):
        r = self.hostile_repo()
        want = [f"{NL_TEXT}:4:30: spec.bogus: unknown field", f"{FF_TEXT}:4:30: spec.bogus: unknown field"]

        res = self.dry(r.path)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err.splitlines()[:2], want)
        self.assert_lines(res.err, tuple(want) + ("gitward: error: 2 problems in the manifests",))

        res = self.dry(r.path, "--output", "json")
        self.assertEqual(res.rc, 1, res)
        errors = res.json()["errors"]
        self.assertEqual([(e["file"], e["line"], e["column"], e["message"]) for e in errors],
                         [(NL_NAME.decode(), 4, 30, "spec.bogus: unknown field"),
                          (FF_TEXT, 4, 30, "spec.bogus: unknown field")])

        # the same on disk, through validate
        d = os.path.join(self.tmp, "m")
        os.makedirs(d)
        for name in (NL_NAME, FF_NAME):
            with open(os.path.join(d.encode(), name), "w") as fh:
                fh.write(BAD)
        res = run("validate", d)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err.splitlines(), [f"{d}/{w}" for w in want] + ["2 problems found."])
        files = sorted(e["file"] for e in run("validate", "--output", "json", d).json()["errors"])
        self.assertEqual(files, [f"{d}/{NL_NAME.decode()}", f"{d}/{FF_TEXT}"])

    def agent_until(self, repo, fmt, needle):
        """Run the agent until its log holds needle, then stop it; its log."""
        log = os.path.join(self.tmp, f"agent-{fmt}.log")
        with open(log, "w") as fh:
            p = subprocess.Popen([GITWARD, "agent", "--repo", repo.path, "--state-dir", self.state, "--node", "n1",
                                  "--listen", "off", "--interval", "1h", "--log-format", fmt],
                                 stdout=fh, stderr=subprocess.STDOUT)
        try:
            def logged():
                with open(log, "rb") as fh:
                    return needle in fh.read()
            wait_for(logged, timeout=60, what=f"{needle!r} in the agent's log")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        with open(log, "rb") as fh:
            return fh.read().decode("utf-8")  # strict: a raw byte that is not UTF-8 fails here

    def test_agent_logs_one_line_per_event_and_valid_json(self):
        r = self.hostile_repo()
        text = self.agent_until(r, "text", b"(first: ")
        self.assertIn(f"error {NL_TEXT}:4:30: spec.bogus: unknown field\n", text)
        self.assertIn(f"error {FF_TEXT}:4:30: spec.bogus: unknown field\n", text)
        self.assert_lines(text, ("info ", "warn ", "error ", "debug "))
        self.assertNotIn(" info pass done", text)

        out = self.agent_until(r, "json", b"(first: ")
        msgs = [json.loads(line)["msg"] for line in out.splitlines()]
        self.assertIn(f"{NL_NAME.decode()}:4:30: spec.bogus: unknown field", msgs)
        self.assertIn(f"{FF_TEXT}:4:30: spec.bogus: unknown field", msgs)

        # the error recorded for status names the first file, escaped in text, kept in JSON
        res = run("status", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assert_lines(res.out, ("node:", "labels:", "commit:", "ref:", "remote:", "last success:", "last attempt:",
                                    "last error:", "mode:"))
        self.assertIn(f"(first: {NL_TEXT}:4:30: spec.bogus: unknown field)", res.out)
        res = run("status", "--output", "json", "--state-dir", self.state)
        self.assertEqual(res.rc, 0, res)
        self.assertIn(f"(first: {NL_NAME.decode()}:4:30:", res.json()["last_error"])

    def test_manifest_with_a_byte_order_mark_is_read(self):
        good = "\ufeff" + proc_yaml("web")
        bad = "\ufeff" + HDR.replace("v1", "v2") + "kind: Process\nmetadata: {name: p}\nspec: {command: [/x]}\n"
        p = os.path.join(self.tmp, "bom.yaml")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(good)
        res = run("validate", p)
        self.assertEqual(res.rc, 0, res)
        self.assertEqual(res.out, "1 resource in 1 file: valid.\n")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(bad)
        res = run("validate", p)
        self.assertEqual(res.rc, 1, res)
        self.assertEqual(res.err.splitlines()[0],
                         f"{p}:1:13: apiVersion: expected \"gitward/v1\", got \"gitward/v2\"")

        r = self.repo()
        r.write("web.yaml", good)
        r.commit()
        res = self.dry(r.path)
        self.assertEqual(res.rc, 2, res)
        self.assertIn("  + Process/web", res.out)


if __name__ == "__main__":
    unittest.main()
