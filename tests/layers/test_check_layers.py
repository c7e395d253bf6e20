"""contrib/check-layers catches what it promises: an upward include, a file
or header of no layer, a symbol defined in another layer than its header's,
rooms in a circle, files in a circle (unless allowed, and an allowance whose
circle is gone); and passes a clean tree and a one-way dependency. Each case
runs the script on a small tree in a temporary directory (and some on a copy
of the real lib/)."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
SCRIPT = os.path.join(TOP, "contrib", "check-layers")

TABLE = """\
util   lib/util/   gitward/util.h
model  lib/model/  lib/extra/  gitward/resource.h gitward/extra.h
agent  agent/
"""


class CheckLayers(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="check-layers-")
        self.addCleanup(shutil.rmtree, self.root)
        self.write("contrib/layers.txt", TABLE)
        self.write("lib/include/gitward/util.h", "int gw_util_one(void);\n")
        self.write("lib/include/gitward/resource.h", '#include "gitward/util.h"\nint gw_resource_one(void);\n')
        self.write("lib/util/util.c", '#include "gitward/util.h"\n\nint gw_util_one(void)\n{\n\treturn 1;\n}\n')
        self.write("lib/model/resource.c",
                   '#include "gitward/resource.h"\n\nint gw_resource_one(void)\n{\n\treturn gw_util_one();\n}\n')
        self.write("agent/main.c", '#include "gitward/resource.h"\n\nint main(void)\n{\n\treturn 0;\n}\n')

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))

    def run_check(self, root=None):
        p = subprocess.run([sys.executable, SCRIPT, "--root", root or self.root], capture_output=True, text=True,
                           timeout=60)
        return p.returncode, p.stdout.splitlines(), p.stderr

    def test_clean_tree_passes(self):
        rc, out, err = self.run_check()
        self.assertEqual((rc, out, err), (0, [], ""))

    def test_upward_include_fails_with_file_line_and_include(self):
        self.write("lib/util/util.c", '#include "gitward/util.h"\n#include "gitward/resource.h"\n')
        rc, out, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ['lib/util/util.c:2: #include "gitward/resource.h": util must not include model (upward)'])
        self.assertIn("1 problem(s); the layers, lowest first: util < model < agent", err)

    def test_upward_include_in_a_header_fails(self):
        self.write("lib/include/gitward/util.h", '#include "gitward/resource.h"\nint gw_util_one(void);\n')
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('lib/include/gitward/util.h:1: #include "gitward/resource.h": util must not include model '
                      '(upward)', out)

    def test_commented_include_is_ignored(self):
        self.write("lib/util/util.c", '#include "gitward/util.h"\n/* #include "gitward/resource.h" */\n')
        self.assertEqual(self.run_check()[0], 0)

    def test_comment_marks_inside_strings_hide_nothing(self):
        # "/*" in a string is no comment: the definition after it is still seen
        self.write("lib/include/gitward/resource.h", "int gw_resource_one(void);\nint gw_envfile_load(int x);\n")
        self.write("lib/util/env.c", '#include "gitward/util.h"\nstatic const char *glob = "dir/*";\n'
                   "int gw_envfile_load(int x)\n{\n\treturn x; /* */\n}\n")
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/util/env.c:3: gw_envfile_load is declared in gitward/resource.h (model) but "
                               "defined in util: move one of them"])

    def test_file_and_header_of_no_layer_fail(self):
        self.write("lib/newroom/x.c", '#include "gitward/nowhere.h"\n')
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/newroom/x.c:1: not in any layer of the table: add its room or header"])
        self.write("lib/util/util.c", '#include "gitward/nowhere.h"\n')
        self.assertIn('lib/util/util.c:1: #include "gitward/nowhere.h": a header of no layer in the table',
                      self.run_check()[1])

    def test_symbol_defined_below_its_header_fails(self):
        # a model function implemented in util/: the envfile case
        self.write("lib/include/gitward/resource.h", "int gw_resource_one(void);\nint gw_envfile_load(int x);\n")
        self.write("lib/util/env.c", '#include "gitward/util.h"\nint gw_envfile_load(int x)\n{\n\treturn x;\n}\n')
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/util/env.c:2: gw_envfile_load is declared in gitward/resource.h (model) but "
                               "defined in util: move one of them"])

    def test_rooms_in_a_circle_fail(self):
        # two rooms of one layer, each including what the other defines
        self.write("lib/include/gitward/extra.h", "int gw_extra_one(void);\n")
        self.write("lib/extra/extra.c",
                   '#include "gitward/extra.h"\n#include "gitward/resource.h"\n\nint gw_extra_one(void)\n{\n'
                   "\treturn gw_resource_one();\n}\n")
        self.write("lib/model/resource.c",
                   '#include "gitward/extra.h"\n#include "gitward/resource.h"\n\nint gw_resource_one(void)\n{\n'
                   "\treturn gw_extra_one();\n}\n")
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ['lib/extra/extra.c:2: rooms in a circle: lib/extra/ -> lib/model/ -> lib/extra/ '
                               '(lib/extra/extra.c:2 includes "gitward/resource.h"; lib/model/resource.c:1 includes '
                               '"gitward/extra.h")',
                               "lib/extra/extra.c:6: files in a circle: lib/extra/extra.c -> lib/model/resource.c -> "
                               "lib/extra/extra.c (lib/extra/extra.c:6 calls gw_resource_one; lib/model/resource.c:6 "
                               "calls gw_extra_one)"])

    # circles of files (issue 25): util.h is implemented by several files, so
    # including it names none of them; the calls make the edges
    def two_files(self, a_calls_b=True, b_calls_a=True):
        self.write("lib/include/gitward/util.h", "int gw_util_one(void);\nint gw_a(void);\nint gw_b(void);\n")
        self.write("lib/util/a.c", '#include "gitward/util.h"\n\nint gw_a(void)\n{\n\treturn %s;\n}\n'
                   % ("gw_b()" if a_calls_b else "0"))
        self.write("lib/util/b.c", '#include "gitward/util.h"\n\nint gw_b(void)\n{\n\treturn %s;\n}\n'
                   % ("gw_a()" if b_calls_a else "0"))

    def test_two_files_of_one_room_in_a_circle_fail(self):
        self.two_files()
        rc, out, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/util/a.c:5: files in a circle: lib/util/a.c -> lib/util/b.c -> lib/util/a.c "
                               "(lib/util/a.c:5 calls gw_b; lib/util/b.c:5 calls gw_a)"])
        self.assertIn("1 problem(s)", err)

    def test_three_files_in_a_circle_fail_an_include_is_a_hop(self):
        # a -> b by a call, b -> c by a call, c -> a by including the header
        # beside the code that only a.c implements
        self.write("lib/include/gitward/util.h", "int gw_util_one(void);\nint gw_b(void);\nint gw_c(void);\n")
        self.write("lib/util/a_int.h", "int gw_a__one(void);\n")
        self.write("lib/util/a.c", '#include "a_int.h"\n#include "gitward/util.h"\n\nint gw_a__one(void)\n{\n'
                   "\treturn gw_b();\n}\n")
        self.write("lib/util/b.c", '#include "gitward/util.h"\n\nint gw_b(void)\n{\n\treturn gw_c();\n}\n')
        self.write("lib/util/c.c", '#include "a_int.h"\n#include "gitward/util.h"\n\nint gw_c(void)\n{\n'
                   "\treturn 3;\n}\n")
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/util/a.c:6: files in a circle: lib/util/a.c -> lib/util/b.c -> lib/util/c.c -> "
                               "lib/util/a.c (lib/util/a.c:6 calls gw_b; lib/util/b.c:5 calls gw_c; lib/util/c.c:1 "
                               'includes "lib/util/a_int.h")'])

    def test_one_way_dependency_passes(self):
        self.two_files(b_calls_a=False)
        # neither a member, a string, a comment nor a static of its own is a use of gw_a
        self.write("lib/util/b.c", '#include "gitward/util.h"\nstruct s { int gw_a; };\nstatic int gw_a(void);\n'
                   'int gw_b(void)\n{\n\tstruct s v = { 0 };\n\t/* gw_a() */\n\treturn v.gw_a + !"gw_a()";\n}\n')
        self.assertEqual(self.run_check(), (0, [], ""))

    def test_allowed_circle_passes_and_a_stale_one_fails(self):
        self.two_files()
        self.write("contrib/layers.txt", TABLE + "allow-circle lib/util/b.c lib/util/a.c  # being undone\n")
        rc, out, err = self.run_check()
        self.assertEqual((rc, out), (0, []))
        self.assertEqual(err, "contrib/layers.txt:4: allowed: files in a circle: lib/util/a.c -> lib/util/b.c -> "
                         "lib/util/a.c (lib/util/a.c:5 calls gw_b; lib/util/b.c:5 calls gw_a)\n")
        # undone: the line must go
        self.two_files(b_calls_a=False)
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["contrib/layers.txt:4: allow-circle lib/util/b.c lib/util/a.c: no such circle any more: "
                               "delete the line"])
        # a circle of other files than listed is not allowed
        self.two_files()
        self.write("lib/util/c.c", '#include "gitward/util.h"\n\nint gw_c(void)\n{\n\treturn gw_a();\n}\n')
        self.write("lib/util/a.c", '#include "gitward/util.h"\n\nint gw_a(void)\n{\n\treturn gw_b() + gw_c();\n}\n')
        rc, out, _ = self.run_check()
        self.assertEqual(rc, 1)
        self.assertEqual(out, ["lib/util/a.c:5: files in a circle: lib/util/a.c -> lib/util/c.c -> lib/util/a.c "
                               "(lib/util/a.c:5 calls gw_c; lib/util/c.c:5 calls gw_a)"])

    def real_tree(self):
        for d in ("lib", "agent"):
            shutil.copytree(os.path.join(TOP, d), os.path.join(self.root, "real", d))
        os.makedirs(os.path.join(self.root, "real", "contrib"))
        shutil.copy(os.path.join(TOP, "contrib", "layers.txt"), os.path.join(self.root, "real", "contrib"))
        return os.path.join(self.root, "real")

    def test_real_tree_with_a_planted_circle_of_files_fails(self):
        root = self.real_tree()
        self.assertEqual(self.run_check(root)[:2], (0, []))
        # secretenv.c reads env files through envfile.c; envfile.c now calls back
        with open(os.path.join(root, "lib", "model", "envfile.c"), "a") as f:
            f.write("\nint gw_planted(void)\n{\n\treturn gw_secret_env_load(0, 0, 0, 0, 0, 0);\n}\n")
        with open(os.path.join(root, "contrib", "layers.txt"), "a") as f:
            f.write("allow-circle lib/util/fs.c lib/util/text.c  # no such circle\n")
        rc, out, _ = self.run_check(root)
        self.assertEqual(rc, 1)
        self.assertEqual(len(out), 2, out)
        self.assertRegex(out[0], r"^lib/model/envfile\.c:\d+: files in a circle: lib/model/envfile\.c -> "
                         r"lib/model/secretenv\.c -> lib/model/envfile\.c \(lib/model/envfile\.c:\d+ calls "
                         r"gw_secret_env_load; lib/model/secretenv\.c:\d+ calls gw_envfile_\w+\)$")
        self.assertRegex(out[1], r"^contrib/layers\.txt:\d+: allow-circle lib/util/fs\.c lib/util/text\.c: no such "
                         "circle any more: delete the line$")

    def test_real_tree_with_a_planted_upward_include_fails(self):
        root = self.real_tree()
        self.assertEqual(self.run_check(root)[:2], (0, []))
        path = os.path.join(root, "lib", "model", "resource.c")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write('#include "gitward/state.h"\n' + text)
        rc, out, _ = self.run_check(root)
        self.assertEqual(rc, 1)
        self.assertEqual(out[0], 'lib/model/resource.c:1: #include "gitward/state.h": model must not include state '
                         '(upward)')
        # and state includes the model: the two rooms now form a circle
        self.assertEqual(len(out), 2)
        self.assertTrue(out[1].startswith("lib/model/resource.c:1: rooms in a circle: lib/model/ -> lib/state/ -> "
                                          'lib/model/ (lib/model/resource.c:1 includes "gitward/state.h"; '
                                          "lib/state/"), out[1])


if __name__ == "__main__":
    unittest.main()
