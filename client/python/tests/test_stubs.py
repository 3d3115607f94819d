"""The stubs shipped in hopfield_client/_proto match proto/ (regenerated
into a temporary directory by generate_stubs.py --check and compared byte
for byte). $HOPFIELD_PROTO_DIR names proto/ when this tree is a copy."""
import os
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class StubsTest(unittest.TestCase):
    def test_shipped_stubs_match_the_protos(self):
        command = ["/usr/bin/python3", os.path.join(HERE, "..", "generate_stubs.py"), "--check"]
        if os.environ.get("HOPFIELD_PROTO_DIR"):
            command.append("--proto_dir=" + os.environ["HOPFIELD_PROTO_DIR"])
        checked = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        self.assertEqual(checked.returncode, 0, checked.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
