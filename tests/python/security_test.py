#!/usr/bin/python3
"""TLS, mutual TLS and API keys against the real hopfieldd (issue 18).

Certificates are made at test time with the openssl CLI (a throwaway CA, a
server certificate for localhost / 127.0.0.1, a client certificate), so
nothing in the repository expires. Run by ctest with PYTHONPATH pointing at
the stubs generated at build time, HOPFIELDD at the server and HOPFIELD_CLI
at the command line.
"""
import os
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc

from hopfield.v1 import memory_service_pb2 as pb
from hopfield.v1 import memory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

WRITER = "rw-3b0f7d1c9a5e4f20b8c6"
READER = "ro-7e2a91c4d05b3f68a1d9"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(directory, name):
    """A CA certificate and key: NAME.pem, NAME.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", cwd=directory)


def make_leaf(directory, name, ca, san=None):
    """A certificate NAME.pem (and NAME.key) signed by CA."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=directory)
    extensions = os.path.join(directory, f"{name}.ext")
    with open(extensions, "w") as out:
        out.write(f"subjectAltName={san}\n" if san else
                  "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
            "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
            "-extfile", extensions, "-out", f"{name}.pem", cwd=directory)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Server:
    """hopfieldd on 127.0.0.1:0 with `flags`, stopped by pid."""

    def __init__(self, directory, *flags, expect_start=True):
        self.dir = tempfile.mkdtemp(dir=directory)
        ports = os.path.join(self.dir, "ports")
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
             "--metrics_listen=127.0.0.1:0", "--port_file=" + ports,
             "--data_dir=" + os.path.join(self.dir, "data"), *flags],
            stderr=self.log)
        self.port = self.metrics_port = None
        if not expect_start:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(ports):
                with open(ports) as lines:
                    for line in lines:
                        key, _, value = line.strip().partition("=")
                        if key == "grpc_port":
                            self.port = int(value)
                        elif key == "metrics_port":
                            self.metrics_port = int(value)
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("hopfieldd did not start: " + self.output())

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait(self, timeout=20):
        """Exit code of a server expected to stop on its own."""
        return self.process.wait(timeout=timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.log.close()


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.d = cls.tmp.name
        make_ca(cls.d, "ca")
        make_leaf(cls.d, "server", "ca", san="DNS:localhost,IP:127.0.0.1")
        make_leaf(cls.d, "client", "ca")
        make_ca(cls.d, "other_ca")
        make_leaf(cls.d, "stranger", "other_ca")
        cls.keys = os.path.join(cls.d, "keys")
        with open(cls.keys, "w") as out:
            out.write(f"# test keys\n{WRITER} read-write\n{READER} read-only\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.d, name)

    def start(self, *flags, **kwargs):
        server = Server(self.d, *flags, **kwargs)
        self.addCleanup(server.stop)
        return server

    def tls_flags(self):
        return ["--tls_cert_file=" + self.path("server.pem"),
                "--tls_key_file=" + self.path("server.key")]

    def tls_channel(self, server, client_cert=None, ca="ca.pem"):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(self.path(ca)),
            private_key=read(self.path(client_cert + ".key"))
            if client_cert else None,
            certificate_chain=read(self.path(client_cert + ".pem"))
            if client_cert else None)
        channel = grpc.secure_channel(f"127.0.0.1:{server.port}", credentials)
        self.addCleanup(channel.close)
        return channel

    def plain_channel(self, server):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.addCleanup(channel.close)
        return channel

    def assertCode(self, code, call, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as raised:
            call(*args, timeout=10, **kwargs)
        self.assertEqual(raised.exception.code(), code,
                         raised.exception.details())
        return raised.exception.details()

    # Every MemoryService RPC, with a request valid enough to reach the
    # handler (so that what refuses it is the key check, not the request).
    def calls(self, stub, bank="b"):
        store = pb.StoreRequest(
            bank=bank, patterns=[pb.Pattern(values=[1.0, 0.0, 0.0, 0.0])])
        return {
            "CreateBank": (stub.CreateBank, pb.CreateBankRequest(
                name=bank + "2", config=pb.BankConfig(dim=4))),
            "GetBank": (stub.GetBank, pb.GetBankRequest(name=bank)),
            "ListBanks": (stub.ListBanks, pb.ListBanksRequest()),
            "Store": (stub.Store, store),
            "StoreStream": (stub.StoreStream, iter([store])),
            "GetPatterns": (stub.GetPatterns,
                            pb.GetPatternsRequest(bank=bank, ids=[1])),
            "Retrieve": (stub.Retrieve, pb.RetrieveRequest(
                bank=bank, queries=[pb.Query(values=[1.0, 0.0, 0.0, 0.0])])),
            "Forget": (stub.Forget, pb.ForgetRequest(bank=bank, ids=[1])),
            "Train": (lambda request, **kw: list(stub.Train(request, **kw)),
                      pb.TrainRequest(bank=bank)),
            "Ping": (stub.Ping, pb.PingRequest()),
            "Backup": (stub.Backup, pb.BackupRequest(
                dir=os.path.join(self.d, "backup-never"))),
            "DeleteBank": (stub.DeleteBank, pb.DeleteBankRequest(name=bank)),
        }

    def test_keys_refuse_without_a_valid_key_and_read_only_cannot_write(self):
        server = self.start(*self.tls_flags(), "--api_keys_file=" + self.keys,
                            "--access_log")
        channel = self.tls_channel(server)
        stub = pb_grpc.MemoryServiceStub(channel)
        writer = [("authorization", "Bearer " + WRITER)]
        reader = [("authorization", "Bearer " + READER)]
        stub.CreateBank(pb.CreateBankRequest(
            name="b", config=pb.BankConfig(dim=4)), metadata=writer)
        stub.Store(pb.StoreRequest(bank="b", patterns=[
            pb.Pattern(id=1, values=[1.0, 0.0, 0.0, 0.0]),
            pb.Pattern(id=2, values=[0.0, 1.0, 0.0, 0.0])]), metadata=writer)

        # Health stays open for probes.
        health = health_pb2_grpc.HealthStub(channel)
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest()).status,
                         health_pb2.HealthCheckResponse.SERVING)

        # No key, a wrong key, a key without the scheme: every RPC but
        # health is UNAUTHENTICATED, reflection included.
        for metadata in (None, [("authorization", "Bearer wrong-key")],
                         [("authorization", WRITER)]):
            for name, (call, request) in self.calls(stub).items():
                with self.subTest(method=name, metadata=metadata):
                    details = self.assertCode(
                        grpc.StatusCode.UNAUTHENTICATED, call, request,
                        metadata=metadata)
                    self.assertNotIn(WRITER, details)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            with self.assertRaises(grpc.RpcError) as raised:
                list(reflection.ServerReflectionInfo(iter(
                    [reflection_pb2.ServerReflectionRequest(list_services="")]),
                    metadata=metadata, timeout=10))
            self.assertEqual(raised.exception.code(),
                             grpc.StatusCode.UNAUTHENTICATED)

        # A read-only key reads ...
        self.assertEqual(stub.GetBank(pb.GetBankRequest(name="b"),
                                      metadata=reader).pattern_count, 2)
        self.assertEqual(len(stub.ListBanks(pb.ListBanksRequest(),
                                            metadata=reader).banks), 1)
        got = stub.GetPatterns(pb.GetPatternsRequest(bank="b", ids=[2]),
                               metadata=reader)
        self.assertEqual(list(got.patterns[0].values), [0.0, 1.0, 0.0, 0.0])
        found = stub.Retrieve(pb.RetrieveRequest(
            bank="b", queries=[pb.Query(values=[0.1, 0.9, 0.0, 0.0])]),
            metadata=reader)
        self.assertEqual(found.results[0].nearest_id, 2)
        stub.Ping(pb.PingRequest(), metadata=reader)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listed = list(reflection.ServerReflectionInfo(iter(
            [reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=reader, timeout=10))
        self.assertIn("hopfield.v1.MemoryService",
                      [s.name for s in listed[0].list_services_response.service])

        # ... and is refused every write, which changes nothing.
        writes = ("CreateBank", "Store", "StoreStream", "Forget", "Train",
                  "Backup", "DeleteBank")
        for name, (call, request) in self.calls(stub).items():
            if name not in writes:
                continue
            with self.subTest(method=name):
                details = self.assertCode(grpc.StatusCode.PERMISSION_DENIED,
                                          call, request, metadata=reader)
                self.assertIn("read-only", details)
                self.assertNotIn(READER, details)
        bank = stub.GetBank(pb.GetBankRequest(name="b"), metadata=writer)
        self.assertEqual(bank.pattern_count, 2)
        self.assertEqual(bank.feature_map_version, 0)
        self.assertEqual([b.name for b in stub.ListBanks(
            pb.ListBanksRequest(), metadata=writer).banks], ["b"])
        self.assertFalse(os.path.exists(os.path.join(self.d, "backup-never")))
        got = stub.GetPatterns(pb.GetPatternsRequest(bank="b", ids=[1]),
                               metadata=writer)
        self.assertEqual(list(got.patterns[0].values), [1.0, 0.0, 0.0, 0.0])

        # The access log names keys by id, never the key itself.
        log = server.output()
        self.assertNotIn(WRITER, log)
        self.assertNotIn(READER, log)
        self.assertRegex(log, r"rpc method=GetBank .*key=[0-9a-f]{8} code=OK")

        # Refusals are counted under their method and code.
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{server.metrics_port}/metrics",
            timeout=10).read().decode()
        self.assertRegex(
            metrics, r'hopfield_rpc_duration_seconds_count\{code="'
            r'UNAUTHENTICATED",method="Store"\} [3-9]')
        self.assertRegex(
            metrics, r'hopfield_rpc_duration_seconds_count\{code="'
            r'PERMISSION_DENIED",method="Store"\} 1')

    def test_keys_work_over_plaintext_too(self):
        server = self.start("--api_keys_file=" + self.keys)
        stub = pb_grpc.MemoryServiceStub(self.plain_channel(server))
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, stub.ListBanks,
                        pb.ListBanksRequest())
        stub.ListBanks(pb.ListBanksRequest(), timeout=10,
                       metadata=[("authorization", "bearer " + READER)])
        self.assertIn("API keys over plaintext", server.output())

    def test_sighup_reloads_the_keys(self):
        keys = os.path.join(self.d, "reloaded_keys")
        with open(keys, "w") as out:
            out.write(f"{WRITER} read-write\n")
        server = self.start("--api_keys_file=" + keys)
        stub = pb_grpc.MemoryServiceStub(self.plain_channel(server))
        old = [("authorization", "Bearer " + WRITER)]
        new = [("authorization", "Bearer new-0123456789abcdef0123")]
        stub.ListBanks(pb.ListBanksRequest(), metadata=old, timeout=10)
        with open(keys, "w") as out:
            out.write("new-0123456789abcdef0123 read-only\n")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded 1 API keys" not in server.output():
            self.assertLess(time.monotonic(), deadline, server.output())
            time.sleep(0.05)
        self.assertCode(grpc.StatusCode.UNAUTHENTICATED, stub.ListBanks,
                        pb.ListBanksRequest(), metadata=old)
        stub.ListBanks(pb.ListBanksRequest(), metadata=new, timeout=10)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, stub.CreateBank,
                        pb.CreateBankRequest(name="x", config=pb.BankConfig(
                            dim=2)), metadata=new)
        # A broken file on reload keeps the keys in force.
        with open(keys, "w") as out:
            out.write("half-written\n")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "keeping the API keys in force" not in server.output():
            self.assertLess(time.monotonic(), deadline, server.output())
            time.sleep(0.05)
        stub.ListBanks(pb.ListBanksRequest(), metadata=new, timeout=10)

    def test_tls_serves_no_plaintext(self):
        server = self.start(*self.tls_flags())
        stub = pb_grpc.MemoryServiceStub(self.tls_channel(server))
        stub.ListBanks(pb.ListBanksRequest(), timeout=10)
        self.assertCode(grpc.StatusCode.UNAVAILABLE,
                        pb_grpc.MemoryServiceStub(
                            self.plain_channel(server)).ListBanks,
                        pb.ListBanksRequest())
        # A client that does not trust the server's CA is refused too.
        self.assertCode(grpc.StatusCode.UNAVAILABLE,
                        pb_grpc.MemoryServiceStub(self.tls_channel(
                            server, ca="other_ca.pem")).ListBanks,
                        pb.ListBanksRequest())

    def test_mutual_tls_refuses_clients_without_a_certificate(self):
        server = self.start(*self.tls_flags(), "--tls_client_ca_file=" +
                            self.path("ca.pem"))
        pb_grpc.MemoryServiceStub(self.tls_channel(
            server, client_cert="client")).ListBanks(pb.ListBanksRequest(),
                                                     timeout=10)
        self.assertCode(grpc.StatusCode.UNAVAILABLE, pb_grpc.MemoryServiceStub(
            self.tls_channel(server)).ListBanks, pb.ListBanksRequest())
        self.assertCode(grpc.StatusCode.UNAVAILABLE, pb_grpc.MemoryServiceStub(
            self.tls_channel(server, client_cert="stranger")).ListBanks,
            pb.ListBanksRequest())
        # Health, too, needs the handshake: mutual TLS is transport-level.
        self.assertCode(grpc.StatusCode.UNAVAILABLE, health_pb2_grpc.HealthStub(
            self.tls_channel(server)).Check, health_pb2.HealthCheckRequest())

    def rotating_server(self, *flags):
        """A TLS server on copies of server.{pem,key} in a directory of its
        own (returned), which the test may rewrite."""
        rotating = tempfile.mkdtemp(dir=self.d)
        for suffix in ("pem", "key"):
            with open(os.path.join(rotating, "server." + suffix), "wb") as f:
                f.write(read(self.path("server." + suffix)))
        server = self.start(
            "--tls_cert_file=" + os.path.join(rotating, "server.pem"),
            "--tls_key_file=" + os.path.join(rotating, "server.key"), *flags)
        return server, rotating

    def serves(self, server, ca):
        """Whether a new connection trusting `ca` gets through."""
        try:
            pb_grpc.MemoryServiceStub(self.tls_channel(server, ca=ca)).ListBanks(
                pb.ListBanksRequest(), timeout=5)
            return True
        except grpc.RpcError:
            return False

    def wait_until_serves(self, server, ca, seconds=15):
        deadline = time.monotonic() + seconds
        while not self.serves(server, ca):
            self.assertLess(time.monotonic(), deadline, server.output())
            time.sleep(0.2)

    def test_certificate_rotation_without_restart(self):
        server, rotating = self.rotating_server("--tls_reload_seconds=1")
        self.assertTrue(self.serves(server, "ca.pem"))
        cert = os.path.join(rotating, "server.pem")
        key = os.path.join(rotating, "server.key")
        make_leaf(self.d, "rotated", "other_ca", san="IP:127.0.0.1")
        # Half way through a rotation: an empty certificate, then a new key
        # beside the old certificate. Neither is taken (gRPC itself would
        # abort on the first and serve the second): the old pair serves on.
        with open(cert, "wb"):
            pass
        time.sleep(2.5)
        self.assertTrue(self.serves(server, "ca.pem"), server.output())
        self.assertIsNone(server.process.poll())
        with open(cert, "wb") as f:
            f.write(read(self.path("server.pem")))
        with open(key, "wb") as f:
            f.write(read(self.path("rotated.key")))
        time.sleep(2.5)
        self.assertTrue(self.serves(server, "ca.pem"), server.output())
        self.assertIn("does not match", server.output())
        # The certificate follows: the new pair is taken.
        with open(cert, "wb") as f:
            f.write(read(self.path("rotated.pem")))
        self.wait_until_serves(server, "other_ca.pem")
        self.assertFalse(self.serves(server, "ca.pem"))
        self.assertIn("TLS files changed", server.output())

    def test_sighup_reloads_the_certificate_at_once(self):
        server, rotating = self.rotating_server("--tls_reload_seconds=3600")
        make_leaf(self.d, "hup", "other_ca", san="IP:127.0.0.1")
        for suffix in ("key", "pem"):
            staged = os.path.join(rotating, "staged." + suffix)
            with open(staged, "wb") as f:
                f.write(read(self.path("hup." + suffix)))
            os.replace(staged, os.path.join(rotating, "server." + suffix))
        self.assertTrue(self.serves(server, "ca.pem"))  # not before SIGHUP
        server.process.send_signal(signal.SIGHUP)
        self.wait_until_serves(server, "other_ca.pem", seconds=5)

    def test_bad_files_stop_the_start_naming_the_flag(self):
        cases = [
            (["--tls_cert_file=" + self.path("server.pem")],
             "--tls_cert_file and --tls_key_file"),
            (["--tls_cert_file=" + self.path("server.pem"),
              "--tls_key_file=" + self.path("client.key")], "does not match"),
            (["--tls_cert_file=" + self.path("missing.pem"),
              "--tls_key_file=" + self.path("server.key")],
             "cannot read --tls_cert_file"),
            (["--tls_cert_file=" + self.keys,
              "--tls_key_file=" + self.path("server.key")],
             "no PEM certificate"),
            (["--tls_client_ca_file=" + self.path("ca.pem")],
             "--tls_client_ca_file needs"),
            (["--api_keys_file=" + self.path("missing_keys")],
             "cannot read --api_keys_file"),
            (["--api_keys_file=" + self.path("server.pem")], "line 1: the second field must be the role"),
        ]
        for flags, message in cases:
            with self.subTest(flags=flags):
                server = self.start(*flags, expect_start=False)
                self.assertNotEqual(server.wait(), 0)
                self.assertIn(message, server.output())

    def test_cli_with_tls_and_keys(self):
        server = self.start(*self.tls_flags(), "--api_keys_file=" + self.keys)
        cli = [os.environ["HOPFIELD_CLI"], f"--server=127.0.0.1:{server.port}",
               "--tls_ca_file=" + self.path("ca.pem")]
        env = dict(os.environ)
        env.pop("HOPFIELD_API_KEY", None)

        def run(*args, key=None):
            run_env = dict(env)
            if key:
                run_env["HOPFIELD_API_KEY"] = key
            return subprocess.run([*cli, *args], env=run_env,
                                  capture_output=True, text=True, timeout=60)

        self.assertEqual(run("health").stdout.strip(), "SERVING")
        refused = run("banks")
        self.assertEqual(refused.returncode, 16, refused.stderr)  # UNAUTH.
        self.assertIn("UNAUTHENTICATED", refused.stderr)
        self.assertEqual(run("create-bank", "c", "--dim=3",
                             key=READER).returncode, 7)  # PERMISSION_DENIED
        made = run("create-bank", "c", "--dim=3", key=WRITER)
        self.assertEqual(made.returncode, 0, made.stderr)
        with_flag = run("banks", "--api_key=" + READER)
        self.assertEqual(with_flag.returncode, 0, with_flag.stderr)
        self.assertIn("c\t3", with_flag.stdout)
        # `export HOPFIELD_API_KEY=$(cat crlf-file)`: the CR is stripped.
        self.assertEqual(run("banks", key=READER + "\r").returncode, 0)
        # A key a header cannot carry is a usage error that does not quote it
        # (gRPC would abort the process and print the key).
        bad = run("banks", "--api_key=" + READER + "\r")
        self.assertEqual(bad.returncode, 64, bad.stderr)
        self.assertNotIn(READER, bad.stderr + bad.stdout)
        # Without --tls_ca_file the plaintext attempt fails; a missing file
        # is a usage error naming it.
        plain = subprocess.run(
            [os.environ["HOPFIELD_CLI"], f"--server=127.0.0.1:{server.port}",
             "--timeout_seconds=5", "health"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(plain.returncode, 14, plain.stderr)  # UNAVAILABLE
        missing = run("health", "--tls_ca_file=" + self.path("nope.pem"))
        self.assertEqual(missing.returncode, 64)
        self.assertIn("nope.pem", missing.stderr)


if __name__ == "__main__":
    unittest.main()
