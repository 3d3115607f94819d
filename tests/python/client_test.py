#!/usr/bin/python3
"""hopfield.v1 from Python (Debian's python3-grpcio) against the real hopfieldd.

Covers every RPC, every status code of the api.md table that can be provoked
here, health and reflection. Run by ctest with PYTHONPATH pointing at the
stubs generated at build time and HOPFIELDD at the server binary.
"""
import math
import os
import random
import signal
import subprocess
import tempfile
import time
import unittest

import grpc

from hopfield.v1 import memory_service_pb2 as pb
from hopfield.v1 import memory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1 import reflection_pb2 as reflection_v1_pb2
from grpc_reflection.v1 import reflection_pb2_grpc as reflection_v1_pb2_grpc


class Server:
    """hopfieldd on 127.0.0.1:0, stopped by pid."""

    def __init__(self, *flags):
        self.dir = tempfile.TemporaryDirectory()
        ports = os.path.join(self.dir.name, "ports")
        self.log = open(os.path.join(self.dir.name, "log"), "w")
        self.process = subprocess.Popen(
            [os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
             "--metrics_listen=127.0.0.1:0",
             "--port_file=" + ports,
             "--data_dir=" + os.path.join(self.dir.name, "data"), *flags],
            stderr=self.log)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(ports):
                with open(ports) as lines:
                    for line in lines:
                        if line.startswith("grpc_port="):
                            self.port = int(line.split("=", 1)[1])
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("hopfieldd did not start")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=10)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.channel.close()
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.log.close()
            self.dir.cleanup()


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.stub = pb_grpc.MemoryServiceStub(cls.server.channel)

    @classmethod
    def tearDownClass(cls):
        cls.assertEqual(unittest.TestCase(), cls.server.stop(), 0)

    def assertCode(self, code, call, *args, contains=None):
        with self.assertRaises(grpc.RpcError) as raised:
            call(*args, timeout=10)
        self.assertEqual(raised.exception.code(), code, raised.exception.details())
        if contains:
            self.assertIn(contains, raised.exception.details())

    def create(self, name, dim, **config):
        return self.stub.CreateBank(
            pb.CreateBankRequest(name=name, config=pb.BankConfig(dim=dim, **config)),
            timeout=10)

    def store(self, bank, rows, ids=None):
        patterns = [pb.Pattern(id=(ids[i] if ids else 0), values=row)
                    for i, row in enumerate(rows)]
        return self.stub.Store(pb.StoreRequest(bank=bank, patterns=patterns), timeout=10)

    def test_bank_lifecycle(self):
        bank = self.create("py-life", 4, separation=pb.SEPARATION_SPARSEMAX)
        self.assertEqual(bank.config.dim, 4)
        self.assertEqual(bank.config.separation, pb.SEPARATION_SPARSEMAX)
        self.assertEqual(bank.config.max_iterations, 10)
        self.assertEqual(self.stub.GetBank(pb.GetBankRequest(name="py-life"), timeout=10).name,
                         "py-life")
        names = [b.name for b in self.stub.ListBanks(pb.ListBanksRequest(), timeout=10).banks]
        self.assertIn("py-life", names)
        self.assertEqual(names, sorted(names))
        self.stub.DeleteBank(pb.DeleteBankRequest(name="py-life"), timeout=10)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetBank,
                        pb.GetBankRequest(name="py-life"), contains="py-life")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.DeleteBank,
                        pb.DeleteBankRequest(name="py-life"))

    def test_create_bank_codes(self):
        self.create("py-dup", 2)
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateBank,
                        pb.CreateBankRequest(name="py-dup", config=pb.BankConfig(dim=2)))
        for name, config, field in [
                ("Py Bad", pb.BankConfig(dim=2), "[a-z0-9_-]"),
                ("py-nodim", pb.BankConfig(), "dim"),
                ("py-beta", pb.BankConfig(dim=2, beta=-1), "beta"),
                ("py-alpha", pb.BankConfig(dim=2, entmax_alpha=3), "entmax_alpha"),
                ("py-iter", pb.BankConfig(dim=2, max_iterations=5000), "max_iterations")]:
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateBank,
                            pb.CreateBankRequest(name=name, config=config), contains=field)

    def test_store_get_forget(self):
        self.create("py-store", 3)
        response = self.store("py-store", [[1, 2, 3], [0.1, -0.0, 1e-38]], ids=[0, 7])
        self.assertEqual(list(response.ids), [8, 7])
        self.assertEqual(response.pattern_count, 2)
        got = self.stub.GetPatterns(pb.GetPatternsRequest(bank="py-store", ids=[7, 8]),
                                    timeout=10).patterns
        self.assertEqual([p.id for p in got], [7, 8])
        self.assertEqual(list(got[1].values), [1, 2, 3])
        self.assertTrue(math.copysign(1.0, got[0].values[1]) < 0)  # -0.0 kept
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetPatterns,
                        pb.GetPatternsRequest(bank="py-store", ids=[7, 404]), contains="404")
        forgotten = self.stub.Forget(pb.ForgetRequest(bank="py-store", ids=[7, 404]),
                                     timeout=10).forgotten
        self.assertEqual(forgotten, 1)

    def test_rejected_store_changes_nothing(self):
        self.create("py-reject", 2)
        for rows, field in [([[1, 0], [1]], "patterns[1].values"),
                            ([[1, 0], [float("nan"), 1]], "nan"),
                            ([[float("inf"), 1]], "inf"),
                            ([[0, 0]], "zero")]:
            with self.assertRaises(grpc.RpcError) as raised:
                self.store("py-reject", rows)
            self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(field, raised.exception.details())
        self.assertEqual(
            self.stub.GetBank(pb.GetBankRequest(name="py-reject"), timeout=10).pattern_count, 0)
        with self.assertRaises(grpc.RpcError) as raised:
            self.store("py-missing", [[1, 0]])
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_store_stream(self):
        self.create("py-stream", 2)
        requests = [pb.StoreRequest(bank="py-stream" if i == 0 else "",
                                    patterns=[pb.Pattern(values=[i + 1.0, j + 1.0])
                                              for j in range(100)])
                    for i in range(10)]
        response = self.stub.StoreStream(iter(requests), timeout=10)
        self.assertEqual(len(response.ids), 1000)
        self.assertEqual(response.pattern_count, 1000)

    def test_retrieve(self):
        self.create("py-recall", 3)
        self.store("py-recall", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
        response = self.stub.Retrieve(pb.RetrieveRequest(
            bank="py-recall",
            queries=[pb.Query(values=[0.9, 0.2, 0]), pb.Query(values=[0, 0.1, 1])],
            options=pb.RetrieveOptions(return_matches=3, return_energy_trace=True)),
            timeout=10)
        self.assertEqual([r.nearest_id for r in response.results], [1, 3])
        first = response.results[0]
        self.assertEqual(len(first.matches), 3)
        self.assertGreaterEqual(first.matches[0].weight, first.matches[1].weight)
        self.assertTrue(first.converged)
        self.assertTrue(first.exact)
        self.assertEqual(len(first.energy_trace), first.iterations)
        self.assertAlmostEqual(first.pattern[0], 1.0, places=3)
        sparse = self.stub.Retrieve(pb.RetrieveRequest(
            bank="py-recall", queries=[pb.Query(values=[1, 0, 0])],
            options=pb.RetrieveOptions(separation=pb.SEPARATION_SPARSEMAX, beta=10,
                                       omit_pattern=True)), timeout=10).results[0]
        self.assertEqual(sparse.support_size, 1)
        self.assertFalse(sparse.metastable)
        self.assertEqual(len(sparse.pattern), 0)

    def test_retrieve_codes(self):
        self.create("py-rcodes", 2)
        ask = lambda *rows, **options: self.stub.Retrieve(pb.RetrieveRequest(
            bank="py-rcodes", queries=[pb.Query(values=r) for r in rows],
            options=pb.RetrieveOptions(**options)), timeout=10)
        with self.assertRaises(grpc.RpcError) as raised:
            ask([1, 0])
        self.assertEqual(raised.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.store("py-rcodes", [[1, 0]])
        for args, options, field in [((), {}, "queries"),
                                     (([1, 0, 0],), {}, "queries[0].values"),
                                     (([0, 0],), {}, "zero"),
                                     (([1, 0],), {"beta": -1}, "beta")]:
            with self.assertRaises(grpc.RpcError) as raised:
                ask(*args, **options)
            self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(field, raised.exception.details())
        # Work that outlasts its deadline: 256 queries x 4,000 patterns x 256
        # dims, up to 100 iterations, against a 20 ms deadline.
        self.create("py-slow", 256)
        rows = [[math.sin(i * 0.37 + j) for j in range(256)] for i in range(4000)]
        self.stub.StoreStream(iter(pb.StoreRequest(bank="py-slow", patterns=[
            pb.Pattern(values=r) for r in rows[k:k + 500]]) for k in range(0, 4000, 500)),
            timeout=60)
        with self.assertRaises(grpc.RpcError) as raised:
            self.stub.Retrieve(pb.RetrieveRequest(
                bank="py-slow", queries=[pb.Query(values=r) for r in rows[:256]],
                options=pb.RetrieveOptions(beta=1, max_iterations=100)), timeout=0.02)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_cancelled_retrieve_leaves_the_server_healthy(self):
        self.create("py-cancel", 256)
        rows = [[math.cos(i * 0.11 + j) for j in range(256)] for i in range(4000)]
        self.stub.StoreStream(iter(pb.StoreRequest(bank="py-cancel", patterns=[
            pb.Pattern(values=r) for r in rows[k:k + 500]]) for k in range(0, 4000, 500)),
            timeout=60)
        # 1,000 queries x 4,000 patterns x 256 dims over several iterations,
        # cancelled 10 ms in (retried in case a run finishes first). The
        # server notices between iterations, so one iteration must stay short
        # even in Debug builds, or the server's shutdown waits for it.
        request = pb.RetrieveRequest(
            bank="py-cancel", queries=[pb.Query(values=r) for r in rows[:1000]],
            options=pb.RetrieveOptions(beta=1, max_iterations=100, omit_pattern=True))
        for _ in range(5):
            call = self.stub.Retrieve.future(request, timeout=60)
            time.sleep(0.01)
            if call.cancel():
                break
        else:
            self.fail("every Retrieve finished before it could be cancelled")
        with self.assertRaises(grpc.FutureCancelledError):
            call.result()
        self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
        # The server dropped the work and still answers.
        ok = self.stub.Retrieve(pb.RetrieveRequest(
            bank="py-cancel", queries=[pb.Query(values=rows[0])]), timeout=10)
        self.assertEqual(len(ok.results), 1)

    def test_train_streams_progress_and_publishes(self):
        self.create("py-train", 16)
        rng = random.Random(7)
        rows = []
        for _ in range(64):
            row = [rng.gauss(0, 1) * 0.7 ** k for k in range(16)]
            norm = sum(v * v for v in row) ** 0.5
            rows.append([v / norm for v in row])
        self.stub.Store(pb.StoreRequest(
            bank="py-train",
            patterns=[pb.Pattern(values=row) for row in rows]), timeout=10)
        messages = list(self.stub.Train(pb.TrainRequest(
            bank="py-train",
            options=pb.TrainOptions(iterations=40, validation_noise=0.01)),
            timeout=60))
        self.assertGreaterEqual(len(messages), 2)
        self.assertTrue(all(not m.done for m in messages[:-1]))
        self.assertTrue(all(m.total_iterations == 40 for m in messages))
        last = messages[-1]
        self.assertTrue(last.done)
        self.assertTrue(last.result.accepted)
        self.assertEqual(last.result.feature_map_version, 1)
        self.assertGreater(last.result.min_separation_after,
                           last.result.min_separation_before)
        bank = self.stub.GetBank(pb.GetBankRequest(name="py-train"), timeout=10)
        self.assertEqual(bank.feature_map_version, 1)
        self.assertEqual(bank.feature_map.iterations, 40)
        # Retrieval goes through the learned map: rows find themselves.
        result = self.stub.Retrieve(pb.RetrieveRequest(
            bank="py-train", queries=[pb.Query(values=rows[5])]), timeout=10)
        self.assertEqual(result.results[0].nearest_id, 6)

    def test_train_errors(self):
        self.create("py-train-empty", 2)
        cases = [
            ("py-train-empty", pb.TrainOptions(),
             grpc.StatusCode.FAILED_PRECONDITION),
            ("py-nope", pb.TrainOptions(), grpc.StatusCode.NOT_FOUND),
            ("py-train-empty", pb.TrainOptions(learning_rate=-1),
             grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for bank, options, code in cases:
            with self.subTest(bank=bank, code=code):
                with self.assertRaises(grpc.RpcError) as raised:
                    list(self.stub.Train(
                        pb.TrainRequest(bank=bank, options=options), timeout=10))
                self.assertEqual(raised.exception.code(), code)
                self.assertTrue(raised.exception.details())

    def test_health(self):
        health = health_pb2_grpc.HealthStub(self.server.channel)
        for service in ["", "hopfield.v1.MemoryService"]:
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            self.assertEqual(status.status, health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_reflection(self):
        from google.protobuf import descriptor_pb2
        for version, module, stub_module in [
                ("v1alpha", reflection_pb2, reflection_pb2_grpc),
                ("v1", reflection_v1_pb2, reflection_v1_pb2_grpc)]:
            reflection = stub_module.ServerReflectionStub(self.server.channel)
            def ask(**request):
                return list(reflection.ServerReflectionInfo(
                    iter([module.ServerReflectionRequest(**request)]), timeout=10))[0]
            services = {s.name for s in ask(list_services="").list_services_response.service}
            self.assertIn("hopfield.v1.MemoryService", services, version)
            self.assertIn("grpc.health.v1.Health", services, version)
            # Every listed service resolves to a file (tools that walk the
            # list, like buf curl --list-methods, need this).
            for service in services:
                answer = ask(file_containing_symbol=service)
                self.assertTrue(answer.HasField("file_descriptor_response"),
                                f"{version} {service}")
            files = ask(file_by_filename="hopfield/v1/memory_service.proto")
            first = descriptor_pb2.FileDescriptorProto.FromString(
                files.file_descriptor_response.file_descriptor_proto[0])
            self.assertEqual(first.package, "hopfield.v1", version)
            self.assertIn("MemoryService", [s.name for s in first.service])
            missing = ask(file_containing_symbol="no.such.Symbol")
            self.assertEqual(missing.error_response.error_code,
                             grpc.StatusCode.NOT_FOUND.value[0], version)

    def test_oversized_message_is_resource_exhausted(self):
        server = Server("--max_message_bytes=65536")
        try:
            stub = pb_grpc.MemoryServiceStub(server.channel)
            stub.CreateBank(pb.CreateBankRequest(name="big", config=pb.BankConfig(dim=4)),
                            timeout=10)
            with self.assertRaises(grpc.RpcError) as raised:
                stub.Store(pb.StoreRequest(bank="big", patterns=[
                    pb.Pattern(values=[1, 2, 3, 4]) for _ in range(8192)]), timeout=10)
            self.assertEqual(raised.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_each_search_mode(self):
        """EXACT, APPROXIMATE and AUTO (UNSPECIFIED) chosen per bank and per
        request; the index reports itself in GetBank."""
        server = Server("--index_min_patterns=256")
        try:
            stub = pb_grpc.MemoryServiceStub(server.channel)
            dim, count = 16, 1000
            stub.CreateBank(pb.CreateBankRequest(name="modes", config=pb.BankConfig(
                dim=dim, search=pb.SEARCH_MODE_APPROXIMATE, top_k=16,
                index_ef_search=48)), timeout=10)
            rng = random.Random(16)
            patterns = []
            for _ in range(count):
                v = [rng.gauss(0, 1) for _ in range(dim)]
                n = math.sqrt(sum(x * x for x in v))
                patterns.append([x / n for x in v])
            stub.Store(pb.StoreRequest(bank="modes", patterns=[
                pb.Pattern(values=v) for v in patterns]), timeout=30)
            deadline = time.monotonic() + 30
            while True:
                bank = stub.GetBank(pb.GetBankRequest(name="modes"), timeout=10)
                if bank.index_size == count and bank.index_pending == 0:
                    break
                self.assertLess(time.monotonic(), deadline, str(bank))
                time.sleep(0.05)
            self.assertTrue(bank.index_current)
            self.assertEqual(bank.config.search, pb.SEARCH_MODE_APPROXIMATE)
            self.assertEqual(bank.config.index_ef_search, 48)
            self.assertEqual(bank.config.index_m, 16)
            queries = [pb.Query(values=[x + rng.gauss(0, 0.05) for x in patterns[i]])
                       for i in range(0, count, 40)]

            def run(mode=None):
                options = pb.RetrieveOptions(beta=40, omit_pattern=True)
                if mode is not None:
                    options.search = mode
                return stub.Retrieve(pb.RetrieveRequest(
                    bank="modes", queries=queries, options=options), timeout=30).results

            exact = run(pb.SEARCH_MODE_EXACT)
            approximate = run(pb.SEARCH_MODE_APPROXIMATE)
            bank_default = run()  # the bank's APPROXIMATE
            for e, a, d in zip(exact, approximate, bank_default):
                self.assertFalse(e.approximate)
                self.assertTrue(e.exact)
                self.assertTrue(a.exact)  # certified, or fell back
                self.assertTrue(a.approximate or a.fell_back)
                self.assertGreaterEqual(a.index_queries, 1)
                self.assertEqual(a.nearest_id, e.nearest_id)
                self.assertEqual(d.approximate, a.approximate)
                self.assertEqual(d.nearest_id, e.nearest_id)
            self.assertGreater(sum(a.approximate for a in approximate), len(queries) // 2)
            # AUTO on a bank below its threshold (4,096 patterns) scans densely.
            stub.CreateBank(pb.CreateBankRequest(name="auto", config=pb.BankConfig(
                dim=dim)), timeout=10)
            stub.Store(pb.StoreRequest(bank="auto", patterns=[
                pb.Pattern(values=v) for v in patterns]), timeout=30)
            auto = stub.Retrieve(pb.RetrieveRequest(bank="auto", queries=queries),
                                 timeout=30).results
            self.assertFalse(any(r.approximate for r in auto))
            self.assertEqual([r.nearest_id for r in auto],
                             [r.nearest_id for r in exact])
        finally:
            self.assertEqual(server.stop(), 0)

    def test_sigterm_reports_not_serving_then_exits_zero(self):
        server = Server()
        self.assertEqual(server.stop(signal.SIGTERM), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
