"""The documentation stays true to the tree: README.md is a front page (at most
200 lines, opening with the two commands), every relative link of README.md and
contrib/docs/*.md reaches a file (and a heading, for `#anchor`, by GitHub's
anchor rules), and every long option the built binary's --help lists for any
command is in the man page (contrib/man/gitward.1), which stays the option
reference."""
import os
import re
import subprocess
import unittest

from gwtest import GITWARD

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "contrib", "docs")
MAN = os.path.join(ROOT, "contrib", "man", "gitward.1")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages():
    return [README] + sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))


def prose(path):
    """(line number, text) of the lines outside fenced code, inline code spans removed"""
    fence = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            if not fence:
                yield n, re.sub(r"`[^`]*`", "", line)


def anchor(heading):
    """GitHub's rule: lowercase, drop punctuation but '-' and '_', spaces to '-'"""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    fence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            m = None if fence else re.match(r"^#{1,6} (.*?)#*\s*$", line)
            if m:
                a = anchor(m.group(1))
                n = seen.get(a, 0)
                seen[a] = n + 1
                out.add(a if n == 0 else f"{a}-{n}")
    return out


class Docs(unittest.TestCase):
    def test_readme_is_a_front_page_opening_with_the_two_commands(self):
        with open(README, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertLessEqual(len(lines), 200, "README.md is the front page: move detail to contrib/docs/")
        self.assertEqual(lines[0], "# gitward")
        self.assertTrue(lines[2].startswith("```"), lines[2])
        self.assertTrue(lines[3].startswith("contrib/demo.sh "), lines[3])
        self.assertTrue(lines[4].startswith("contrib/test.sh "), lines[4])
        self.assertEqual(lines[5], "```")
        self.assertIn("`.ci/run` calls\n`contrib/test.sh`", "\n".join(lines[6:12]))

    def test_anchor_rules(self):
        self.assertEqual(anchor("Applying: `reconcile` and `agent`"), "applying-reconcile-and-agent")
        self.assertEqual(anchor("Taking a node down: `down`"), "taking-a-node-down-down")
        self.assertEqual(anchor("Secrets in Git: `secretEnvFiles`"), "secrets-in-git-secretenvfiles")

    def test_every_relative_link_reaches_a_file_and_its_heading(self):
        bad = []
        checked = 0
        for page in pages():
            for n, line in prose(page):
                for target in LINK.findall(line):
                    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                        continue
                    checked += 1
                    path, _, frag = target.partition("#")
                    dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
                    where = f"{os.path.relpath(page, ROOT)}:{n}: {target}"
                    if not os.path.exists(dest):
                        bad.append(f"{where}: no file {os.path.relpath(dest, ROOT)}")
                    elif frag and dest.endswith(".md") and frag not in anchors(dest):
                        bad.append(f"{where}: no heading #{frag} in {os.path.relpath(dest, ROOT)}")
        self.assertGreater(checked, 20)
        self.assertEqual(bad, [], "\n".join(bad))

    def test_every_docs_page_is_linked_from_the_readme(self):
        with open(README, encoding="utf-8") as f:
            text = f.read()
        for page in pages()[1:]:
            rel = os.path.relpath(page, ROOT)
            self.assertIn(f"]({rel}", text, f"README.md links no {rel}")

    def test_every_long_option_of_the_help_is_in_the_man_page(self):
        top = subprocess.run([GITWARD, "--help"], capture_output=True, text=True, check=True).stdout
        commands = re.findall(r"^  ([a-z]+)\b", top.split("commands:", 1)[1], re.M)
        self.assertIn("agent", commands)
        with open(MAN, encoding="utf-8") as f:
            man = f.read().replace("\\-", "-")
        man = re.sub(r"\\f[BIRP]", "", man)
        missing, seen = [], set()
        for cmd in commands:
            res = subprocess.run([GITWARD, cmd, "--help"], capture_output=True, text=True)
            out = res.stdout + res.stderr
            for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", top + out))):
                if opt == "--help":
                    continue
                seen.add(opt)
                if not re.search(re.escape(opt) + r"(?![a-z0-9-])", man):
                    missing.append(f"{cmd}: {opt}")
        self.assertGreater(len(seen), 40, sorted(seen))
        self.assertEqual(missing, [], "options in --help but not in contrib/man/gitward.1:\n" + "\n".join(missing))


if __name__ == "__main__":
    unittest.main()
