"""contrib/check-layers catches what it promises: an upward include, a file
or header of no layer, a symbol defined in another layer than its header's,
rooms in a circle; and passes a clean tree. Each case runs the script on a
small tree in a temporary directory (and one on a copy of the real lib/)."""
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
                               '"gitward/extra.h")'])

    def test_real_tree_with_a_planted_upward_include_fails(self):
        for d in ("lib", "agent"):
            shutil.copytree(os.path.join(TOP, d), os.path.join(self.root, "real", d))
        os.makedirs(os.path.join(self.root, "real", "contrib"))
        shutil.copy(os.path.join(TOP, "contrib", "layers.txt"), os.path.join(self.root, "real", "contrib"))
        root = os.path.join(self.root, "real")
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
