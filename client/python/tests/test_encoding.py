"""The Store requests the client encodes itself match protobuf's serializer."""
import unittest

import numpy as np

from hopfield_client import pb
from hopfield_client._client import _encode_store


class EncodingTest(unittest.TestCase):
    def test_store_request_is_byte_identical_to_protobuf(self):
        rng = np.random.default_rng(1)
        cases = [(3, 4, [0, 1, 2**64 - 1]), (6, 784, [0, 127, 128, 300, 2**35, 5]),
                 (1, 1, [7]), (0, 3, [])]
        for n, dim, ids in cases:
            with self.subTest(n=n, dim=dim):
                rows = rng.standard_normal((n, dim)).astype(np.float32)
                ids = np.array(ids, np.uint64)
                mine = _encode_store("bänk-1", ids, rows)
                reference = pb.StoreRequest(bank="bänk-1", patterns=[
                    pb.Pattern(id=int(i), values=r.tolist()) for i, r in zip(ids, rows)])
                self.assertEqual(mine, reference.SerializeToString())
                parsed = pb.StoreRequest.FromString(mine)
                self.assertEqual([p.id for p in parsed.patterns], ids.tolist())

    def test_values_come_back_bit_exact(self):
        rows = np.array([[1.5, -0.0, np.float32(1e-45), 3.4028235e38]], np.float32)
        parsed = pb.StoreRequest.FromString(_encode_store("b", np.zeros(1, np.uint64), rows))
        got = np.array(parsed.patterns[0].values, np.float32)
        self.assertEqual(got.tobytes(), rows[0].tobytes())


if __name__ == "__main__":
    unittest.main()
