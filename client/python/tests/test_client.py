"""hopfield_client against the real hopfieldd (its path in $HOPFIELDD).

ctest runs these through run_package_test.sh, against the package installed
in a fresh venv. By hand, against the source tree:

    cd client/python && HOPFIELDD=../../build/dev/server/hopfieldd \\
        /usr/bin/python3 -m unittest discover -s tests -v

The TLS, mutual TLS and API key tests skip when hopfieldd rejects the flags
they need as unknown (a server built before it had them).
"""
import os
import pickle
import re
import signal
import subprocess
import tempfile
import time
import unittest
from unittest import mock

import grpc
import numpy as np

from hopfield_client import Client, HopfieldError, Match, RetrieveResults, pb

SECURITY_FLAGS = ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "api_keys_file")


class Server:
    """hopfieldd on 127.0.0.1:0 with its own data directory, stopped by pid."""

    def __init__(self, *flags: str):
        binary = os.environ.get("HOPFIELDD")
        if not binary:
            raise RuntimeError("set HOPFIELDD to the hopfieldd binary")
        self.dir = tempfile.TemporaryDirectory()
        ports = os.path.join(self.dir.name, "ports")
        log_path = os.path.join(self.dir.name, "log")
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [binary, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                 "--port_file=" + ports,
                 "--data_dir=" + os.path.join(self.dir.name, "data"), *flags],
                stdout=subprocess.DEVNULL, stderr=log)
        self.port = None
        deadline = time.monotonic() + 15
        while self.port is None and time.monotonic() < deadline:
            if os.path.exists(ports):
                with open(ports) as lines:
                    for line in lines:
                        if line.startswith("grpc_port="):
                            self.port = int(line.split("=", 1)[1])
            if self.port is None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            self.process.kill()
            self.process.wait()
            with open(log_path) as log:
                text = log.read()
            self.dir.cleanup()
            unknown = re.search(r"Unknown command line flag '(\w+)'", text)
            if unknown and unknown.group(1) in SECURITY_FLAGS:
                raise unittest.SkipTest(f"this hopfieldd has no --{unknown.group(1)} yet")
            raise RuntimeError("hopfieldd did not start:\n" + text)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.dir.cleanup()


def openssl(directory: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(directory: str) -> None:
    """ca.pem/ca.key, server.pem/server.key for localhost and 127.0.0.1,
    client.pem/client.key signed by the same CA, and other-ca.pem with
    other-client.pem/other-client.key: a CA nobody trusts and its client."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl(directory, "req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem",
                "-days", "2", "-subj", f"/CN=hopfield-client test {ca}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaves = [("server", "ca", "localhost",
               "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
              ("client", "ca", "hopfield-test-client", "extendedKeyUsage=clientAuth\n"),
              ("other-client", "other-ca", "hopfield-test-client",
               "extendedKeyUsage=clientAuth\n")]
    for serial, (name, ca, common_name, extensions) in enumerate(leaves, start=2):
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    + extensions)
        openssl(directory, "req", "-new", *ec, "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", "/CN=" + common_name)
        openssl(directory, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
                "-CAkey", ca + ".key", "-set_serial", str(serial), "-days", "2",
                "-extfile", name + ".ext", "-out", name + ".pem")


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class HopfieldTestCase(unittest.TestCase):
    def assertCode(self, code: grpc.StatusCode, call, *args, contains: str = None,
                   **kwargs) -> HopfieldError:
        with self.assertRaises(HopfieldError) as raised:
            call(*args, **kwargs)
        self.assertEqual(raised.exception.code, code, raised.exception.details)
        if contains:
            self.assertIn(contains, raised.exception.details)
        return raised.exception


class ClientTest(HopfieldTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.client = Client(cls.server.target, api_key="", timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        assert cls.server.stop() == 0

    def test_round_trip_is_bit_exact(self):
        rng = np.random.default_rng(1)
        rows = rng.standard_normal((50, 33)).astype(np.float32)
        rows[0, :4] = [-0.0, 1e-40, 1e18, np.finfo(np.float32).tiny]  # signed zero, subnormal
        self.client.create_bank("round-trip", 33, similarity="dot")
        ids = self.client.store("round-trip", rows)
        self.assertEqual(ids.dtype, np.uint64)
        self.assertEqual(len(np.unique(ids)), 50)
        got = self.client.get_patterns("round-trip", ids[::-1])
        self.assertEqual(got.dtype, np.float32)
        self.assertEqual(got.shape, (50, 33))
        np.testing.assert_array_equal(got.view(np.uint32), rows[::-1].view(np.uint32))
        self.assertEqual(self.client.get_patterns("round-trip", []).shape, (0, 33))

    def test_ids_given_and_assigned(self):
        self.client.create_bank("ids", 3)
        given = self.client.store("ids", [[1, 0, 0], [0, 1, 0], [0, 0, 1]], ids=[10, 20, 30])
        self.assertEqual(given.tolist(), [10, 20, 30])
        assigned = self.client.store("ids", np.float64([[1, 1, 0], [0, 1, 1]]))
        self.assertEqual(len(set(assigned.tolist()) | {10, 20, 30}), 5)
        # One pattern as a 1-D array and its id as a scalar: an upsert.
        self.assertEqual(self.client.store("ids", [0, 2, 0], ids=20).tolist(), [20])
        self.assertEqual(self.client.get_bank("ids").pattern_count, 5)
        self.assertEqual(self.client.get_patterns("ids", 20).tolist(), [[0, 2, 0]])
        self.assertEqual(self.client.forget("ids", [10, 404]), 1)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.store, "ids",
                        [[1, 0, 0]], ids=[1, 2], contains="ids")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.store, "ids",
                        [[1, 0, 0]], ids=[-1])

    def test_bank_lifecycle(self):
        bank = self.client.create_bank("life", 4, separation="sparsemax", search="exact",
                                       beta=8, max_iterations=20)
        self.assertIsInstance(bank, pb.Bank)
        self.assertEqual((bank.name, bank.config.dim), ("life", 4))
        self.assertEqual(bank.config.separation, pb.SEPARATION_SPARSEMAX)
        self.assertEqual(bank.config.search, pb.SEARCH_MODE_EXACT)
        self.assertEqual(bank.config.similarity, pb.SIMILARITY_COSINE)  # resolved default
        self.assertEqual(bank.config.max_iterations, 20)
        self.assertEqual(self.client.get_bank("life").config.beta, 8)
        self.assertIn("life", [b.name for b in self.client.list_banks()])
        self.client.delete_bank("life")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.client.get_bank, "life",
                        contains="life")
        with self.assertRaises(TypeError):
            self.client.create_bank("life", 4, no_such_field=1)

    def test_retrieve_masked_patterns(self):
        rng = np.random.default_rng(2)
        rows = np.sign(rng.standard_normal((32, 64))).astype(np.float32)
        self.client.create_bank("masked", 64)
        ids = self.client.store("masked", rows)
        queries = rows.copy()
        queries[:, 32:] = 0  # the second half masked
        results = self.client.retrieve("masked", queries, return_matches=3)
        self.assertIsInstance(results, RetrieveResults)
        self.assertEqual(len(results), 32)
        np.testing.assert_array_equal(results.nearest_ids, ids)
        self.assertEqual(results.nearest_ids.dtype, np.uint64)
        self.assertEqual(results.patterns.shape, (32, 64))
        self.assertEqual(results.patterns.dtype, np.float32)
        np.testing.assert_allclose(results.patterns, rows, atol=0.05)  # completed
        for field, dtype in [("nearest_weights", np.float32), ("iterations", np.uint32),
                             ("converged", bool), ("exact", bool), ("energy", np.float64),
                             ("truncation_bound", np.float32), ("metastable", bool)]:
            self.assertEqual(getattr(results, field).dtype, dtype, field)
            self.assertEqual(getattr(results, field).shape, (32,), field)
        self.assertTrue(results.converged.all())
        self.assertTrue(results.exact.all())
        self.assertFalse(results.metastable.any())
        self.assertEqual(len(results.matches[0]), 3)
        self.assertIsInstance(results.matches[0][0], Match)
        self.assertEqual(results.matches[0][0].id, ids[0])
        # One query as a 1-D array; options; no pattern back.
        one = self.client.retrieve("masked", queries[5], beta=50, search="exact",
                                   omit_pattern=True, return_energy_trace=True)
        self.assertEqual(one.nearest_ids.tolist(), [ids[5]])
        self.assertIsNone(one.patterns)
        self.assertEqual(len(one.energy_traces[0]), one.iterations[0])
        self.assertAlmostEqual(float(one.beta[0]), 50)
        progress = []
        self.client.retrieve("masked", queries, batch=10,
                             progress=lambda done, total: progress.append((done, total)))
        self.assertEqual(progress, [(10, 32), (20, 32), (30, 32), (32, 32)])

    def test_errors_carry_the_status_code(self):
        code = grpc.StatusCode
        self.client.create_bank("errors", 2)
        self.assertCode(code.NOT_FOUND, self.client.store, "no-bank", [[1, 0]])
        self.assertCode(code.FAILED_PRECONDITION, self.client.retrieve, "errors", [1, 0])
        self.assertCode(code.ALREADY_EXISTS, self.client.create_bank, "errors", 2)
        self.assertCode(code.INVALID_ARGUMENT, self.client.create_bank, "Bad Name", 2)
        self.assertCode(code.INVALID_ARGUMENT, self.client.create_bank, "bad-enum", 2,
                        separation="nope", contains="separation")
        self.assertCode(code.INVALID_ARGUMENT, self.client.store, "errors", [[1, 0, 0]],
                        contains="values")
        self.assertCode(code.INVALID_ARGUMENT, self.client.store, "errors",
                        [[1, 0], [np.nan, 1]], contains="nan")
        self.assertEqual(self.client.get_bank("errors").pattern_count, 0)  # all or nothing
        ids = self.client.store("errors", [[1, 0]])
        self.assertCode(code.NOT_FOUND, self.client.get_patterns, "errors", [ids[0], 404],
                        contains="404")
        self.assertCode(code.INVALID_ARGUMENT, self.client.retrieve, "errors",
                        np.zeros((0, 2)), contains="queries")
        self.assertCode(code.INVALID_ARGUMENT, self.client.retrieve, "errors", [1, 0],
                        beta=-1, contains="beta")
        # Arrays the server cannot be sent fail the same way, client-side.
        error = self.assertCode(code.INVALID_ARGUMENT, self.client.retrieve, "errors",
                                np.zeros((2, 2, 2)))
        self.assertIn("shape (2, 2, 2)", str(error))
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual((copy.code, copy.details), (error.code, error.details))

    def test_deadline_exceeded(self):
        # 256 queries x 4,000 patterns x 256 dims, up to 100 iterations,
        # against a 20 ms deadline.
        rows = unit_rows(np.random.default_rng(3), 4000, 256)
        self.client.create_bank("slow", 256)
        self.client.store("slow", rows)
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, self.client.retrieve, "slow",
                        rows[:256], beta=1, max_iterations=100, timeout=0.02)
        self.assertEqual(len(self.client.retrieve("slow", rows[0], timeout=None)), 1)

    def test_train_reports_progress(self):
        rng = np.random.default_rng(7)
        rows = rng.standard_normal((64, 16)) * 0.7 ** np.arange(16)
        rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
        self.client.create_bank("train", 16)
        ids = self.client.store("train", rows)
        messages = []
        result = self.client.train("train", iterations=40, validation_noise=0.01, seed=1,
                                   progress=messages.append)
        self.assertIsInstance(result, pb.TrainResult)
        self.assertGreaterEqual(len(messages), 1)
        self.assertTrue(messages[-1].done)
        self.assertTrue(all(m.total_iterations == 40 for m in messages))
        self.assertTrue(result.accepted)
        self.assertEqual(result.feature_map_version, 1)
        self.assertEqual(self.client.get_bank("train").feature_map_version, 1)
        self.assertEqual(self.client.retrieve("train", rows[5]).nearest_ids[0], ids[5])
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.client.train, "no-bank")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.train, "train",
                        learning_rate=-1)

    def test_train_stops_when_progress_raises(self):
        rows = unit_rows(np.random.default_rng(8), 64, 16)
        self.client.create_bank("train-cancel", 16)
        self.client.store("train-cancel", rows)

        def stop(message):
            raise KeyError("stop")

        with self.assertRaises(KeyError):
            self.client.train("train-cancel", iterations=1000, progress=stop)
        self.assertTrue(self.client.health())

    def test_health_and_ping(self):
        self.assertTrue(self.client.health())
        self.assertTrue(self.client.health("hopfield.v1.MemoryService"))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.client.health, "nope")
        self.assertEqual(self.client.ping(b"\x00echo"), b"\x00echo")

    def test_context_manager(self):
        with Client(self.server.target, timeout=10) as client:
            self.assertTrue(client.health())
        with self.assertRaises(ValueError):  # grpc: closed channel
            client.ping()


class SplittingTest(HopfieldTestCase):
    """A server whose messages are at most 64 KiB: arrays several times
    larger go in several requests, in order."""

    LIMIT = 65536

    @classmethod
    def setUpClass(cls):
        cls.server = Server(f"--max_message_bytes={cls.LIMIT}")

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def test_large_calls_are_split(self):
        rows = unit_rows(np.random.default_rng(4), 400, 256)  # 400 KiB, 6x the limit
        with Client(self.server.target, max_message_bytes=self.LIMIT) as client:
            client.create_bank("split", 256)
            progress = []
            ids = client.store("split", rows,
                               progress=lambda done, total: progress.append((done, total)))
            self.assertGreaterEqual(len(progress), 6)
            self.assertEqual(progress[-1], (400, 400))
            self.assertEqual(len(np.unique(ids)), 400)
            self.assertEqual(client.get_bank("split").pattern_count, 400)
            got = client.get_patterns("split", ids)
            np.testing.assert_array_equal(got.view(np.uint32), rows.view(np.uint32))
            queries = rows + np.float32(0.02) * unit_rows(np.random.default_rng(5), 400, 256)
            results = client.retrieve("split", queries, batch=100000, beta=50)
            np.testing.assert_array_equal(results.nearest_ids, ids)
            self.assertEqual(results.patterns.shape, (400, 256))
            self.assertEqual(client.forget("split", ids), 400)

    def test_unsplit_call_is_refused(self):
        rows = unit_rows(np.random.default_rng(6), 400, 256)
        with Client(self.server.target, max_message_bytes=64 << 20) as client:
            client.create_bank("unsplit", 256)
            self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, client.store, "unsplit", rows)
            self.assertEqual(client.get_bank("unsplit").pattern_count, 0)


class PkiTestCase(HopfieldTestCase):
    """Certificates made with the openssl CLI in a temporary directory."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.TemporaryDirectory()
        make_pki(cls.pki.name)

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    @classmethod
    def path(cls, name: str) -> str:
        return os.path.join(cls.pki.name, name)

    def assertRefused(self, client: Client) -> None:
        with client:
            self.assertCode(grpc.StatusCode.UNAVAILABLE, client.ping, timeout=10)


class TlsTest(PkiTestCase):
    """--tls_cert_file/--tls_key_file: TLS only, verified against our CA."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.server = Server("--tls_cert_file=" + cls.path("server.pem"),
                                "--tls_key_file=" + cls.path("server.key"))
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.server.stop() == 0
        finally:
            super().tearDownClass()

    def test_tls_with_the_ca(self):
        with open(self.path("ca.pem"), "rb") as f:
            ca = f.read()
        for target, root in [(f"localhost:{self.server.port}", self.path("ca.pem")),
                             (self.server.target, ca)]:
            with Client(target, root_certificates=root, timeout=10) as client:
                self.assertEqual(client.ping(b"tls"), b"tls")
                self.assertTrue(client.health())
        with Client(self.server.target, root_certificates=ca, timeout=10) as client:
            client.create_bank("tls", 2)
            ids = client.store("tls", [[1, 0], [0, 1]])
            self.assertEqual(client.retrieve("tls", [[0.9, 0.1], [0, 1]]).nearest_ids.tolist(),
                             ids.tolist())

    def test_server_name_override(self):
        with Client(self.server.target, root_certificates=self.path("ca.pem"),
                    server_name_override="localhost", timeout=10) as client:
            self.assertTrue(client.health())

    def test_untrusted_or_plaintext_is_refused(self):
        self.assertRefused(Client(self.server.target, tls=True))  # system roots
        self.assertRefused(Client(self.server.target,
                                  root_certificates=self.path("other-ca.pem")))
        self.assertRefused(Client(self.server.target))  # plaintext


class MutualTlsTest(PkiTestCase):
    """--tls_client_ca_file: clients must show a certificate from our CA."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.server = Server("--tls_cert_file=" + cls.path("server.pem"),
                                "--tls_key_file=" + cls.path("server.key"),
                                "--tls_client_ca_file=" + cls.path("ca.pem"))
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.server.stop() == 0
        finally:
            super().tearDownClass()

    def test_client_certificate_accepted(self):
        with Client(self.server.target, root_certificates=self.path("ca.pem"),
                    certificate_chain=self.path("client.pem"),
                    private_key=self.path("client.key"), timeout=10) as client:
            client.create_bank("mtls", 2)
            self.assertEqual(client.store("mtls", [1, 0]).tolist(), [1])

    def test_missing_or_foreign_certificate_refused(self):
        self.assertRefused(Client(self.server.target, root_certificates=self.path("ca.pem")))
        self.assertRefused(Client(self.server.target, root_certificates=self.path("ca.pem"),
                                  certificate_chain=self.path("other-client.pem"),
                                  private_key=self.path("other-client.key")))


class ApiKeyTest(HopfieldTestCase):
    """--api_keys_file: `authorization: Bearer KEY` on every call but health."""

    WRITER, READER = "writer-key-0123456789", "reader-key-0123456789"

    @classmethod
    def setUpClass(cls):
        cls.keys = tempfile.NamedTemporaryFile("w", suffix=".keys")
        cls.keys.write(f"{cls.WRITER} read-write\n{cls.READER} read-only\n")
        cls.keys.flush()
        try:
            cls.server = Server("--api_keys_file=" + cls.keys.name)
        except BaseException:
            cls.keys.close()
            raise
        with Client(cls.server.target, api_key=cls.WRITER, timeout=10) as client:
            client.create_bank("keys", 2)
            client.store("keys", [[1, 0], [0, 1]])

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.server.stop() == 0
        finally:
            cls.keys.close()

    def client(self, key: str) -> Client:
        return Client(self.server.target, api_key=key, timeout=10)

    def test_missing_or_unknown_key_is_unauthenticated(self):
        with mock.patch.dict(os.environ, {"HOPFIELD_API_KEY": ""}):
            for key in ["", "not-a-key", self.WRITER + "x"]:
                with self.client(key) as client:
                    self.assertCode(grpc.StatusCode.UNAUTHENTICATED, client.list_banks)
                    self.assertCode(grpc.StatusCode.UNAUTHENTICATED, client.retrieve,
                                    "keys", [1, 0])
                    self.assertTrue(client.health())  # health needs no key

    def test_read_only_key_reads_but_cannot_write(self):
        denied = grpc.StatusCode.PERMISSION_DENIED
        with self.client(self.READER) as client:
            self.assertEqual(client.get_bank("keys").pattern_count, 2)
            self.assertEqual(client.retrieve("keys", [0.9, 0.1]).nearest_ids.tolist(), [1])
            self.assertEqual(client.get_patterns("keys", [2]).tolist(), [[0, 1]])
            self.assertCode(denied, client.create_bank, "keys-ro", 2)
            self.assertCode(denied, client.store, "keys", [1, 1])
            self.assertCode(denied, client.forget, "keys", [1])
            self.assertCode(denied, client.train, "keys", iterations=1)
            self.assertCode(denied, client.delete_bank, "keys")
            self.assertCode(denied, client.backup, os.path.join(tempfile.gettempdir(),
                                                                "hopfield-denied-backup"))
        with self.client(self.WRITER) as client:
            self.assertEqual(client.get_bank("keys").pattern_count, 2)

    def test_read_write_key(self):
        with self.client(self.WRITER) as client:
            client.create_bank("keys-rw", 2)
            self.assertEqual(client.store("keys-rw", [[1, 0]], ids=[5]).tolist(), [5])
            self.assertEqual(client.forget("keys-rw", [5]), 1)
            client.delete_bank("keys-rw")

    def test_key_from_the_environment(self):
        with mock.patch.dict(os.environ, {"HOPFIELD_API_KEY": self.WRITER}):
            with Client(self.server.target, timeout=10) as client:
                self.assertIn("keys", [b.name for b in client.list_banks()])
        # A CRLF file's `$(cat keys)` leaves a CR: stripped from the variable.
        with mock.patch.dict(os.environ, {"HOPFIELD_API_KEY": self.WRITER + "\r\n"}):
            with Client(self.server.target, timeout=10) as client:
                self.assertIn("keys", [b.name for b in client.list_banks()])

    def test_unsendable_key_is_refused_without_quoting_it(self):
        with self.assertRaises(HopfieldError) as raised:
            Client(self.server.target, api_key="s3cret-key\r")
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertNotIn("s3cret", str(raised.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
