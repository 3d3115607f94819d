#!/usr/bin/python3
"""Hardening findings against the real hopfieldd (Debian's python3-grpcio).

One test per finding of the hardening review (memory, malformed input,
head-of-line blocking, StoreStream replies, bank names, dot overflow, ids,
shutdown, deadlines). Every test starts its own server with the flags it
needs, so its peak memory (VmHWM from /proc/<pid>/status) is its own. Run by
ctest with PYTHONPATH pointing at the stubs generated at build time and
HOPFIELDD at the server binary.

Peak memory bounds: a server's VmHWM is compared with

    --memory_budget_bytes + baseline + 64 MiB

where baseline is the server's VmHWM right after start (binary, gRPC's
threads and buffers, the allocator's arenas) and the 64 MiB covers what the
budget does not count by design: gRPC's receive and send buffers and the
parsed request (a few MiB here, up to 64 MiB for the 8 MB GetPatterns of
finding 1), and the free memory glibc's per-thread arenas keep. Every case
below would have gone well past that bound on the old server.
"""
import math
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from hopfield.v1 import memory_service_pb2 as pb
from hopfield.v1 import memory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

MiB = 1 << 20
MARGIN = 64 * MiB  # see the module docstring
# Under ASan (the CI's sanitized run), freed memory sits in a quarantine and
# every allocation carries shadow memory and redzones: resident memory says
# nothing about the budget, so the peak checks are skipped there.
SANITIZED = "ASAN_OPTIONS" in os.environ
BUDGET_ERROR = "memory budget (--memory_budget_bytes)"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    """hopfieldd on 127.0.0.1:0 with extra flags, stopped by pid.

    stderr (the log, and the access log with --access_log) goes to a file
    that log() reads back."""

    def __init__(self, *flags, channel_options=(), wrapper=()):
        self.wrapper = list(wrapper)
        self.dir = tempfile.TemporaryDirectory()
        self.log_path = os.path.join(self.dir.name, "log")
        self.log_file = open(self.log_path, "w")
        self.process = None
        self.channel = None
        try:
            self._start(flags, channel_options)
        except BaseException:
            self.close()
            raise

    def _start(self, flags, channel_options):
        ports = os.path.join(self.dir.name, "ports")
        self.process = subprocess.Popen(
            [*self.wrapper, os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
             "--metrics_listen=127.0.0.1:0",
             "--port_file=" + ports,
             "--data_dir=" + os.path.join(self.dir.name, "data"), *flags],
            stderr=self.log_file)
        self.pid = self.process.pid
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(ports):
                with open(ports) as port_file:
                    for line in port_file:
                        if line.startswith("grpc_port="):
                            self.port = int(line.split("=", 1)[1])
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("hopfieldd did not start:\n" + self.log())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                             options=list(channel_options))
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.stub = pb_grpc.MemoryServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.baseline = self.status_bytes("VmHWM")

    def status_bytes(self, field):
        """VmHWM (peak resident) or VmRSS of the server, in bytes."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self.pid}/status")

    def peak(self):
        return self.status_bytes("VmHWM")

    def reset_peak(self):
        """Resets VmHWM to the current RSS (clear_refs 5), so that a later
        peak() is the peak of what ran since. False if the kernel refuses."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
                clear.write("5")
            return True
        except OSError:
            return False

    def log(self):
        self.log_file.flush()
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def wait_for_log(self, pattern, timeout=10):
        """The first log line matching the regex `pattern`, polled."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals the server, returns its exit status."""
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self):
        """Kills the server if it still runs (by pid); idempotent."""
        if self.channel is not None:
            self.channel.close()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()
        self.dir.cleanup()


def varint(value):
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def raw_get_patterns(bank, ids_wire, count):
    """A serialized GetPatternsRequest whose packed ids field is `count`
    copies of the varint bytes `ids_wire` (built without Python objects per
    id: 8,000,000 ids take milliseconds this way, seconds as a message)."""
    name = bank.encode()
    body = ids_wire * count
    return (b"\x0a" + varint(len(name)) + name +
            b"\x12" + varint(len(body)) + body)


def random_rows(seed, count, dim):
    rng = random.Random(seed)
    return [[rng.random() * 2.0 - 1.0 for _ in range(dim)] for _ in range(count)]


def bad_flag_exit(*flags):
    """Runs hopfieldd with `flags`; returns (exit status, stderr). A server
    that starts anyway is killed (by pid, through subprocess.run) after 10 s."""
    with tempfile.TemporaryDirectory() as scratch:
        return _bad_flag_exit(scratch, *flags)


def _bad_flag_exit(scratch, *flags):
    try:
        done = subprocess.run(
            [os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
             "--metrics_listen=127.0.0.1:0",
             "--data_dir=" + os.path.join(scratch, "data"), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
    except subprocess.TimeoutExpired:
        return None, "still running after 10 s"
    return done.returncode, done.stderr.decode(errors="replace")


class HardeningTestCase(unittest.TestCase):
    """Helpers shared by the tests."""

    def start(self, *flags, **kwargs):
        server = Server(*flags, **kwargs)
        self.addCleanup(server.close)
        return server

    def assertCode(self, code, call, *args, contains=None, timeout=10):
        with self.assertRaises(grpc.RpcError) as raised:
            call(*args, timeout=timeout)
        error = raised.exception
        self.assertEqual(error.code(), code, error.details())
        if contains:
            self.assertIn(contains, error.details())
        return error

    def assertAlive(self, server):
        """Ping and both health checks answer."""
        self.assertEqual(server.stub.Ping(pb.PingRequest(payload=b"alive"),
                                          timeout=10).payload, b"alive")
        for service in ["", "hopfield.v1.MemoryService"]:
            self.assertEqual(server.health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=10).status,
                SERVING)

    def assertPeakWithin(self, server, budget, what):
        peak = server.peak()
        if SANITIZED:
            return peak
        bound = budget + server.baseline + MARGIN
        self.assertLessEqual(
            peak, bound,
            f"{what}: VmHWM {peak / MiB:.1f} MiB above the budget "
            f"{budget / MiB:.0f} MiB + baseline {server.baseline / MiB:.1f} MiB "
            f"+ margin {MARGIN / MiB:.0f} MiB")
        return peak

    def create(self, server, name, dim, **config):
        return server.stub.CreateBank(
            pb.CreateBankRequest(name=name, config=pb.BankConfig(dim=dim, **config)),
            timeout=10)

    def bank(self, server, name):
        return server.stub.GetBank(pb.GetBankRequest(name=name), timeout=10)

    def stream_rows(self, server, bank, rows, per_message=5000, timeout=120):
        """Stores rows with StoreStream (omit_ids); returns the response."""
        messages = (pb.StoreRequest(
            bank=bank, omit_ids=(k == 0),
            patterns=[pb.Pattern(values=r) for r in rows[k:k + per_message]])
            for k in range(0, len(rows), per_message))
        response = server.stub.StoreStream(messages, timeout=timeout)
        self.assertEqual(response.stored, len(rows))
        return response


class MemoryTest(HardeningTestCase):
    """Findings 1 to 3: no request may take memory beyond the budget."""

    def test_1_get_patterns_repeating_one_id_8m_times_is_refused(self):
        # Old: 8,000,000 x dim floats allocated for the reply, OOM kill.
        budget = 128 * MiB
        server = self.start(f"--memory_budget_bytes={budget}", channel_options=[
            ("grpc.max_send_message_length", 64 * MiB)])
        self.create(server, "repeat", 64)
        stored = server.stub.Store(pb.StoreRequest(bank="repeat", patterns=[
            pb.Pattern(values=r) for r in random_rows(1, 4, 64)]), timeout=10)
        request = raw_get_patterns("repeat", varint(stored.ids[0]), 8_000_000)
        self.assertGreater(len(request), 8_000_000)
        get_raw = server.channel.unary_unary(
            "/hopfield.v1.MemoryService/GetPatterns",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.GetPatternsResponse.FromString)
        started = time.monotonic()
        error = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, get_raw, request,
                                timeout=60)
        self.assertTrue("--max_message_bytes" in error.details() or
                        BUDGET_ERROR in error.details(), error.details())
        self.assertIn("8000000", error.details())
        self.assertLess(time.monotonic() - started, 30)
        self.assertPeakWithin(server, budget, "GetPatterns of 8,000,000 ids")
        self.assertAlive(server)
        # Nothing lost: the bank still answers with its patterns.
        got = server.stub.GetPatterns(pb.GetPatternsRequest(
            bank="repeat", ids=list(stored.ids)), timeout=10)
        self.assertEqual([p.id for p in got.patterns], list(stored.ids))
        self.assertEqual(server.stop(), 0)

    def test_1_wide_get_patterns_is_refused_before_the_reply_is_built(self):
        # Old: a 5 KB request built a 1.3 GB reply before its size check.
        budget = 256 * MiB
        server = self.start(f"--memory_budget_bytes={budget}")
        dim = 65536
        self.create(server, "wide", dim)
        stored = server.stub.Store(pb.StoreRequest(bank="wide", patterns=[
            pb.Pattern(values=r) for r in random_rows(2, 4, dim)]), timeout=30)
        ids = list(stored.ids) * 150  # 600 ids: a ~157 MB reply
        request = pb.GetPatternsRequest(bank="wide", ids=ids)
        self.assertLess(request.ByteSize(), 5000)
        resettable = server.reset_peak()
        before = server.status_bytes("VmRSS")
        error = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                server.stub.GetPatterns, request,
                                contains="--max_message_bytes")
        self.assertIn("600 patterns of 65536 floats", error.details())
        if resettable:
            # Refused before building: the peak barely moves (the reply
            # would have been ~157 MB, twice that with gRPC's copy).
            if not SANITIZED:
                self.assertLess(server.peak() - before, 16 * MiB)
        self.assertPeakWithin(server, budget, "GetPatterns of 600 65,536-d patterns")
        self.assertAlive(server)
        self.assertEqual(self.bank(server, "wide").pattern_count, 4)
        self.assertEqual(server.stop(), 0)

    @unittest.expectedFailure
    def test_1_parsed_request_memory_is_outside_the_budget(self):
        if SANITIZED:
            raise AssertionError("peak checks are meaningless under ASan")
        # KNOWN LIMIT (kept as an expected failure): gRPC parses a request
        # before any handler runs, and packed uint64 ids grow up to 8x when
        # parsed (1-byte varints become 8-byte uint64s). The server counts a
        # parsed request against --memory_budget_bytes from the moment its
        # handler runs until the call ends (so queued calls cannot pile up
        # requests beyond the budget), but the parse itself happens first:
        # a 16 MiB GetPatterns (well under the 64 MiB --max_message_bytes)
        # peaks at 128 MiB of ids before the handler refuses it, so a
        # 64 MiB budget is crossed by ~2x for that moment. Bounding it needs
        # a receive limit tied to the budget (README, Limits).
        budget = 64 * MiB
        server = self.start(f"--memory_budget_bytes={budget}", channel_options=[
            ("grpc.max_send_message_length", 64 * MiB)])
        self.create(server, "parse", 4)
        stored = server.stub.Store(pb.StoreRequest(bank="parse", patterns=[
            pb.Pattern(values=[1, 2, 3, 4])]), timeout=10)
        get_raw = server.channel.unary_unary(
            "/hopfield.v1.MemoryService/GetPatterns",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.GetPatternsResponse.FromString)
        request = raw_get_patterns("parse", varint(stored.ids[0]), 16 * MiB)
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, get_raw, request, timeout=60)
        self.assertAlive(server)
        self.assertPeakWithin(server, budget, "GetPatterns of a 16 MiB request")

    def test_2_many_queries_against_a_large_bank_run_in_chunks(self):
        # Old: scratch grew as queries x bank size (1,000 dim-4 queries
        # against 100k patterns peaked at 801 MB, ~8 bytes per query and
        # pattern). 150 queries here (the Debug build takes ~0.1 s each)
        # would need ~120 MB of scratch at once, twice the 64 MiB budget:
        # the server must run them in chunks (each chunk's scratch reserved
        # from the budget first) or refuse; it should run them.
        budget = 64 * MiB
        server = self.start(f"--memory_budget_bytes={budget}", channel_options=[
            ("grpc.max_receive_message_length", 64 * MiB)])
        dim, size, queries = 4, 100_000, 150
        self.create(server, "big", dim)
        rows = random_rows(3, size, dim)
        self.stream_rows(server, "big", rows, per_message=50_000)
        picked = list(range(0, size, size // queries))
        resettable = server.reset_peak()
        before = server.status_bytes("VmRSS")
        # One step from a stored pattern: its own id has the highest weight
        # (in 4-d, 100k random patterns are too dense for the dynamics to
        # stay on one of them over ten iterations, so one step is asked).
        started = time.monotonic()
        response = server.stub.Retrieve(pb.RetrieveRequest(
            bank="big", queries=[pb.Query(values=rows[i]) for i in picked],
            options=pb.RetrieveOptions(max_iterations=1, omit_pattern=True)),
            timeout=120)
        elapsed = time.monotonic() - started
        self.assertEqual(len(response.results), len(picked))
        # Ids are assigned 1, 2, ... in store order.
        self.assertEqual([r.nearest_id for r in response.results],
                         [i + 1 for i in picked])
        if resettable:
            # The call's own peak: its scratch comes from the budget (less
            # the ~7 MB bank); the requests and replies here are tiny, so
            # 16 MiB covers the rest. Unchunked it would be ~120 MB.
            growth = server.peak() - before
            self.assertLess(growth if not SANITIZED else 0, budget + 16 * MiB,
                            f"Retrieve of {queries} queries grew RSS by "
                            f"{growth / MiB:.1f} MiB ({elapsed:.1f} s)")
        self.assertPeakWithin(server, budget, f"Retrieve of {queries} queries "
                              f"against {size} patterns ({elapsed:.1f} s)")

        # 100 queries x 65,536 matches: a ~157 MB reply, refused up front.
        error = self.assertCode(
            grpc.StatusCode.RESOURCE_EXHAUSTED, server.stub.Retrieve,
            pb.RetrieveRequest(bank="big", queries=[pb.Query(values=rows[i])
                                                    for i in picked[:100]],
                               options=pb.RetrieveOptions(return_matches=65536,
                                                          max_iterations=1,
                                                          omit_pattern=True)))
        self.assertTrue("--max_message_bytes" in error.details() or
                        BUDGET_ERROR in error.details(), error.details())
        # 3 queries x 65,536 matches (~4.7 MB): served within the budget.
        served = server.stub.Retrieve(pb.RetrieveRequest(
            bank="big", queries=[pb.Query(values=rows[i]) for i in picked[:3]],
            options=pb.RetrieveOptions(return_matches=65536, max_iterations=1,
                                       omit_pattern=True)), timeout=60)
        for i, result in zip(picked, served.results):
            self.assertEqual(len(result.matches), 65536)
            self.assertEqual(result.matches[0].id, i + 1)
            weights = [m.weight for m in result.matches[:1000]]
            self.assertEqual(weights, sorted(weights, reverse=True))
        self.assertPeakWithin(server, budget, "Retrieve with 65,536 matches")
        self.assertAlive(server)
        self.assertEqual(self.bank(server, "big").pattern_count, size)
        self.assertEqual(server.stop(), 0)

    def test_3_stores_stop_at_the_budget_and_forget_gives_memory_back(self):
        # Old: no limit, RSS grew until the kernel intervened.
        budget = 64 * MiB
        server = self.start(f"--memory_budget_bytes={budget}")
        dim, batch = 256, 2048  # 2 MiB of floats per Store
        self.create(server, "fill", dim)
        pool = [pb.Pattern(values=r) for r in random_rows(4, batch, dim)]
        acknowledged = []
        refusal = None
        for _ in range(125):  # 250 MiB: far past the budget
            try:
                response = server.stub.Store(
                    pb.StoreRequest(bank="fill", patterns=pool), timeout=10)
            except grpc.RpcError as error:
                refusal = error
                break
            self.assertEqual(len(response.ids), batch)
            acknowledged.extend(response.ids)
            self.assertEqual(response.pattern_count, len(acknowledged))
        self.assertIsNotNone(refusal, "the budget never refused a Store")
        self.assertEqual(refusal.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                         refusal.details())
        self.assertIn(BUDGET_ERROR, refusal.details())
        self.assertGreater(len(acknowledged), 0)
        self.assertEqual(len(set(acknowledged)), len(acknowledged))
        # Nothing acknowledged lost, nothing of the refused Store kept.
        bank = self.bank(server, "fill")
        self.assertEqual(bank.pattern_count, len(acknowledged))
        data = len(acknowledged) * dim * 4
        self.assertGreaterEqual(bank.memory_bytes, data)
        self.assertLessEqual(bank.memory_bytes, data * 1.5 + 1 * MiB,
                             f"{bank.memory_bytes} bytes for {data} bytes of patterns")
        self.assertLessEqual(bank.memory_bytes, budget)
        for i in [0, len(acknowledged) - 1]:
            got = server.stub.GetPatterns(pb.GetPatternsRequest(
                bank="fill", ids=[acknowledged[i]]), timeout=10).patterns[0]
            self.assertEqual(list(got.values), list(pool[i % batch].values))
        self.assertPeakWithin(server, budget, "Stores up to the budget")
        self.assertAlive(server)

        # Forget 90%: the bank shrinks and gives the memory back.
        kept = len(acknowledged) // 10
        forgotten = server.stub.Forget(pb.ForgetRequest(
            bank="fill", ids=acknowledged[kept:]), timeout=30).forgotten
        self.assertEqual(forgotten, len(acknowledged) - kept)
        after = self.bank(server, "fill")
        self.assertEqual(after.pattern_count, kept)
        self.assertLess(after.memory_bytes, bank.memory_bytes / 2,
                        f"memory_bytes {bank.memory_bytes} -> {after.memory_bytes}")
        again = server.stub.Store(pb.StoreRequest(bank="fill", patterns=pool),
                                  timeout=10)
        self.assertEqual(again.pattern_count, kept + batch)
        self.assertPeakWithin(server, budget, "Stores, Forget and Store again")
        self.assertEqual(server.stop(), 0)


class MalformedRequestTest(HardeningTestCase):
    """Finding 4: every error has its code and a message."""

    def test_4_malformed_requests_get_codes_and_messages(self):
        server = self.start()
        stub = server.stub
        self.create(server, "cos", 3)
        self.create(server, "dot", 3, similarity=pb.SIMILARITY_DOT)
        stub.Store(pb.StoreRequest(bank="cos", patterns=[
            pb.Pattern(id=5, values=[1, 0, 0]), pb.Pattern(values=[0, 1, 0])]),
            timeout=10)
        nan, inf = float("nan"), float("inf")
        store = lambda *patterns, bank="cos": (stub.Store, pb.StoreRequest(
            bank=bank, patterns=list(patterns)))
        retrieve = lambda *rows, **options: (stub.Retrieve, pb.RetrieveRequest(
            bank="cos", queries=[pb.Query(values=r) for r in rows],
            options=pb.RetrieveOptions(**options)))
        create = lambda name, **config: (stub.CreateBank, pb.CreateBankRequest(
            name=name, config=pb.BankConfig(**config)))
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        cases = [
            ("dim 0", create("c-dim0", dim=0), invalid),
            ("dim 65537", create("c-dim-big", dim=65537), invalid),
            ("unknown similarity", create("c-sim", dim=2, similarity=99), invalid),
            ("unknown separation", create("c-sep", dim=2, separation=99), invalid),
            ("unknown search mode", create("c-search", dim=2, search=99), invalid),
            ("NaN beta", create("c-beta", dim=2, beta=nan), invalid),
            ("store wrong dim", store(pb.Pattern(values=[1, 2])), invalid),
            ("store NaN", store(pb.Pattern(values=[1, nan, 0])), invalid),
            ("store Inf", store(pb.Pattern(values=[inf, 0, 0])), invalid),
            ("store no patterns", store(), invalid),
            ("store zero norm under cosine", store(pb.Pattern(values=[0, 0, 0])),
             invalid),
            ("store repeated ids", store(pb.Pattern(id=9, values=[1, 1, 0]),
                                         pb.Pattern(id=9, values=[0, 1, 1])), invalid),
            ("store unknown bank", store(pb.Pattern(values=[1, 0, 0]), bank="nope"),
             grpc.StatusCode.NOT_FOUND),
            ("get no ids", (stub.GetPatterns, pb.GetPatternsRequest(bank="cos")),
             invalid),
            ("get unknown id", (stub.GetPatterns, pb.GetPatternsRequest(
                bank="cos", ids=[5, 404])), grpc.StatusCode.NOT_FOUND),
            ("forget no ids", (stub.Forget, pb.ForgetRequest(bank="cos")), invalid),
            ("retrieve no queries", retrieve(), invalid),
            ("retrieve wrong dim", retrieve([1, 0]), invalid),
            ("retrieve NaN", retrieve([nan, 1, 0]), invalid),
            ("retrieve Inf", retrieve([1, -inf, 0]), invalid),
            ("retrieve zero norm under cosine", retrieve([0, 0, 0]), invalid),
            ("retrieve unknown separation", retrieve([1, 0, 0], separation=99),
             invalid),
            ("retrieve unknown search mode", retrieve([1, 0, 0], search=99), invalid),
            ("retrieve negative beta", retrieve([1, 0, 0], beta=-1), invalid),
            ("retrieve NaN beta", retrieve([1, 0, 0], beta=nan), invalid),
            ("retrieve too many matches", retrieve([1, 0, 0], return_matches=1 << 20),
             invalid),
            ("retrieve too many iterations", retrieve([1, 0, 0],
                                                      max_iterations=1 << 30), invalid),
            ("retrieve empty bank", (stub.Retrieve, pb.RetrieveRequest(
                bank="dot", queries=[pb.Query(values=[1, 0, 0])])),
             grpc.StatusCode.FAILED_PRECONDITION),
            ("stream without messages", (stub.StoreStream, iter([])), invalid),
            ("stream switching banks", (stub.StoreStream, iter([
                pb.StoreRequest(bank="cos", patterns=[pb.Pattern(values=[1, 1, 1])]),
                pb.StoreRequest(bank="dot", patterns=[pb.Pattern(values=[1, 1, 1])])])),
             invalid),
        ]
        for what, (call, request), code in cases:
            with self.subTest(what):
                with self.assertRaises(grpc.RpcError) as raised:
                    call(request, timeout=10)
                error = raised.exception
                self.assertNotEqual(error.code(), grpc.StatusCode.UNIMPLEMENTED, what)
                self.assertEqual(error.code(), code, f"{what}: {error.details()}")
                self.assertTrue(error.details(), f"{what}: empty message")
        # Train with a bad option or on an empty bank says why.
        for bank, options, code in [
                ("cos", pb.TrainOptions(temperature=-1),
                 grpc.StatusCode.INVALID_ARGUMENT),
                ("dot", pb.TrainOptions(), grpc.StatusCode.FAILED_PRECONDITION),
                ("cos", pb.TrainOptions(mode=99), grpc.StatusCode.INVALID_ARGUMENT)]:
            with self.assertRaises(grpc.RpcError) as raised:
                list(stub.Train(pb.TrainRequest(bank=bank, options=options),
                                timeout=10))
            self.assertEqual(raised.exception.code(), code)
            self.assertTrue(raised.exception.details())
        # Failed requests changed nothing (the second stream's first
        # message was valid and stays: StoreStream applies as it reads).
        self.assertEqual(self.bank(server, "cos").pattern_count, 3)
        self.assertEqual(self.bank(server, "dot").pattern_count, 0)
        self.assertNotIn("c-dim0", [b.name for b in stub.ListBanks(
            pb.ListBanksRequest(), timeout=10).banks])
        self.assertAlive(server)
        self.assertEqual(server.stop(), 0)


class HeavyCallTest(HardeningTestCase):
    """Findings 5 and 9(g) on one server with a 20k x 64 bank."""

    DIM, SIZE = 64, 20_000

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--worker_threads=2", "--access_log")
        try:
            cls.rows = random_rows(5, cls.SIZE, cls.DIM)
            messages = (pb.StoreRequest(
                bank="heavy" if k == 0 else "", omit_ids=(k == 0),
                patterns=[pb.Pattern(values=r) for r in cls.rows[k:k + 10000]])
                for k in range(0, cls.SIZE, 10000))
            cls.server.stub.CreateBank(pb.CreateBankRequest(
                name="heavy", config=pb.BankConfig(dim=cls.DIM)), timeout=10)
            cls.server.stub.StoreStream(messages, timeout=120)
        except BaseException:
            cls.server.close()
            raise

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        if status != 0:
            raise AssertionError(f"hopfieldd exited {status}")

    def heavy_request(self, queries, offset=0):
        return pb.RetrieveRequest(
            bank="heavy",
            queries=[pb.Query(values=self.rows[(offset + i) % self.SIZE])
                     for i in range(queries)],
            options=pb.RetrieveOptions(omit_pattern=True))

    def test_5_health_and_ping_answer_beside_heavy_retrieves(self):
        # Old: with the gRPC threads busy in Retrieve, a health Check took
        # 5.5-6.4 s. Now heavy calls run on the worker pool.
        server = self.server
        heavy = [server.stub.Retrieve.future(self.heavy_request(100, 1000 * k),
                                             timeout=120) for k in range(2)]
        time.sleep(0.3)  # both are on the workers
        self.assertFalse(any(call.done() for call in heavy),
                         "the heavy Retrieves finished before the probes")
        timings = {}
        for name, probe in [
                ("Check", lambda: server.health.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2)),
                ("Ping", lambda: server.stub.Ping(pb.PingRequest(payload=b"p"),
                                                  timeout=2)),
                ("Check MemoryService", lambda: server.health.Check(
                    health_pb2.HealthCheckRequest(
                        service="hopfield.v1.MemoryService"), timeout=2))]:
            started = time.monotonic()
            probe()  # raises DEADLINE_EXCEEDED past 2 s
            timings[name] = time.monotonic() - started
        still_running = [not call.done() for call in heavy]
        for name, seconds in timings.items():
            self.assertLess(seconds, 2.0, f"{name} took {seconds:.2f} s")
        self.assertTrue(all(still_running),
                        f"a heavy Retrieve finished before the probes: {timings}")
        for k, call in enumerate(heavy):
            results = call.result().results
            self.assertEqual(len(results), 100)
            self.assertEqual(results[0].nearest_id, 1000 * k + 1)

    def timed_out_retrieve_log_line(self):
        """Sends 1,000 queries (seconds of work) with a 200 ms deadline;
        returns the server's access-log line for the call and how long after
        the call it was written."""
        server = self.server
        before = len(server.log().splitlines())
        started = time.monotonic()
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, server.stub.Retrieve,
                        self.heavy_request(1000), timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [line for line in server.log().splitlines()[before:]
                     if "rpc method=Retrieve " in line]
            if lines:
                return lines[0], time.monotonic() - started
            time.sleep(0.02)
        self.fail("no Retrieve line in the access log 10 s after the call")

    def test_9g_batch_retrieve_stops_soon_after_its_deadline(self):
        # Old: a Debug build ran ~3 s past a 200 ms deadline. The client's
        # own deadline ends the call at 200 ms whatever the server does, so
        # the server's side is read from its access log: the call's latency
        # there is when the server stopped working on it.
        line, logged_after = self.timed_out_retrieve_log_line()
        self.assertRegex(line, r"code=(DEADLINE_EXCEEDED|CANCELLED) ")
        latency_ms = float(re.search(r"latency_ms=([0-9.e+]+)", line).group(1))
        self.assertLess(latency_ms, 1200, line)
        self.assertLess(logged_after, 1.5, line)
        self.assertAlive(self.server)

    def test_9g_access_log_names_a_passed_deadline(self):
        # A call whose deadline passed is logged DEADLINE_EXCEEDED, not
        # CANCELLED (gRPC marks such a call cancelled too; the server checks
        # the deadline first). Two calls: both must be logged so.
        for _ in range(2):
            line, _ = self.timed_out_retrieve_log_line()
            self.assertIn("code=DEADLINE_EXCEEDED ", line)


class FlagTest(HardeningTestCase):
    """Flags out of range exit with status 2 and say why."""

    def test_5_retrieve_threads_above_256_exits_2(self):
        status, stderr = bad_flag_exit("--retrieve_threads=300")
        self.assertEqual(status, 2, stderr)
        self.assertIn("--retrieve_threads", stderr)
        self.assertIn("300", stderr)

    def test_index_min_patterns_out_of_range_exits_2(self):
        for value in ["0", "4294967296"]:
            with self.subTest(value):
                status, stderr = bad_flag_exit(f"--index_min_patterns={value}")
                self.assertEqual(status, 2, stderr)
                self.assertIn("--index_min_patterns", stderr)
                self.assertIn(value, stderr)

    def test_9f_bad_shutdown_grace_exits_2(self):
        for value in ["inf", "nan", "-1"]:
            with self.subTest(value):
                status, stderr = bad_flag_exit(f"--shutdown_grace_seconds={value}")
                self.assertEqual(status, 2, stderr)
                self.assertIn("--shutdown_grace_seconds", stderr)


class SeparationTest(HardeningTestCase):
    def test_6_separation_catches_up_after_sustained_stores(self):
        # Timing (writes stalled behind the refresher) is measured by the
        # benchmarks; here: statistics catch up once the writes stop.
        server = self.start()
        dim = 16
        self.create(server, "steady", dim)
        rng = random.Random(6)
        stored = 0
        stop_at = time.monotonic() + 1.5
        while time.monotonic() < stop_at:
            response = server.stub.Store(pb.StoreRequest(bank="steady", patterns=[
                pb.Pattern(values=[rng.gauss(0, 1) for _ in range(dim)])
                for _ in range(8)]), timeout=10)
            stored += 8
            self.assertEqual(response.pattern_count, stored)
            time.sleep(0.004)
        self.assertGreater(stored, 80)
        deadline = time.monotonic() + 30
        bank = self.bank(server, "steady")
        while bank.separation_pending > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            bank = self.bank(server, "steady")
        self.assertEqual(bank.separation_pending, 0,
                         f"still pending 30 s after {stored} stored patterns")
        self.assertEqual(bank.pattern_count, stored)
        self.assertGreater(bank.min_separation, 0)
        self.assertEqual(server.stop(), 0)


class StoreStreamTest(HardeningTestCase):
    def test_7_stream_refuses_the_message_whose_ids_would_not_fit(self):
        # Old: the stream stored everything, then failed to send its reply.
        # With --max_message_bytes=65536 the reply may list 64 KiB of ids:
        # ~16,000 fresh ids (the server counts 10 bytes for each id it is
        # yet to assign). A message of 4,000 2-d patterns is ~48 KB.
        server = self.start("--max_message_bytes=65536")
        self.create(server, "ingest", 2)
        per_message = 4000
        rng = random.Random(7)

        def messages(count, omit_ids=False):
            for k in range(count):
                yield pb.StoreRequest(
                    bank="ingest", omit_ids=omit_ids and k == 0,
                    patterns=[pb.Pattern(values=[rng.uniform(0.1, 1), rng.uniform(-1, 1)])
                              for _ in range(per_message)])

        error = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                server.stub.StoreStream, messages(50), timeout=60)
        found = re.search(r"after (\d+) patterns were stored", error.details())
        self.assertIsNotNone(found, error.details())
        stored = int(found.group(1))
        self.assertEqual(stored % per_message, 0)
        self.assertGreaterEqual(stored, 2 * per_message)  # thousands of ids fit
        self.assertLess(stored, 65536)  # ids take a byte or more each
        # Exactly the messages before the refused one are stored.
        self.assertEqual(self.bank(server, "ingest").pattern_count, stored)

        # With omit_ids on the first message there is no limit.
        count = 12
        response = server.stub.StoreStream(messages(count, omit_ids=True), timeout=60)
        self.assertEqual(response.stored, count * per_message)
        self.assertGreater(response.stored, 2 * stored)
        self.assertEqual(len(response.ids), 0)
        self.assertEqual(response.pattern_count, stored + count * per_message)
        self.assertEqual(self.bank(server, "ingest").pattern_count,
                         stored + count * per_message)
        self.assertAlive(server)
        self.assertEqual(server.stop(), 0)

    def test_7_cancelled_stream_is_logged_cancelled(self):
        server = self.start("--access_log")
        self.create(server, "cancel", 2)
        release = threading.Event()

        def messages():
            for k in range(2):
                yield pb.StoreRequest(bank="cancel", patterns=[
                    pb.Pattern(values=[1, k + j + 1.0]) for j in range(10)])
            release.wait(30)  # the stream stays open until cancelled

        call = server.stub.StoreStream.future(messages(), timeout=60)
        try:
            deadline = time.monotonic() + 10
            while (self.bank(server, "cancel").pattern_count < 20 and
                   time.monotonic() < deadline):
                time.sleep(0.02)
            self.assertEqual(self.bank(server, "cancel").pattern_count, 20)
            self.assertTrue(call.cancel())
        finally:
            release.set()
        line = server.wait_for_log(r"method=StoreStream ", timeout=10)
        self.assertIsNotNone(line, "no StoreStream line in the access log")
        self.assertIn("code=CANCELLED", line)
        self.assertNotIn("code=OK", line)
        self.assertAlive(server)
        self.assertEqual(server.stop(), 0)


class SmallerFindingsTest(HardeningTestCase):
    def test_9a_malformed_bank_names_are_invalid_argument(self):
        server = self.start("--access_log")
        stub = server.stub
        self.create(server, "ok", 2)
        stub.Store(pb.StoreRequest(bank="ok", patterns=[pb.Pattern(values=[1, 0])]),
                   timeout=10)
        calls = {
            "GetBank": lambda name: (stub.GetBank, pb.GetBankRequest(name=name)),
            "DeleteBank": lambda name: (stub.DeleteBank, pb.DeleteBankRequest(name=name)),
            "Store": lambda name: (stub.Store, pb.StoreRequest(
                bank=name, patterns=[pb.Pattern(values=[1, 0])])),
            "Retrieve": lambda name: (stub.Retrieve, pb.RetrieveRequest(
                bank=name, queries=[pb.Query(values=[1, 0])])),
            "GetPatterns": lambda name: (stub.GetPatterns, pb.GetPatternsRequest(
                bank=name, ids=[1])),
            "Forget": lambda name: (stub.Forget, pb.ForgetRequest(bank=name, ids=[1])),
        }
        forged = "FORGED 2000-01-01T00:00:00.000000Z INFO x] rpc method=DeleteBank code=OK"
        names = ["", "Upper", "a b", "a/b", "x" * 65, "x\n" + forged, "x" * 8192]
        for method, build in calls.items():
            for name in names:
                with self.subTest(method=method, name=name[:20]):
                    call, request = build(name)
                    with self.assertRaises(grpc.RpcError) as raised:
                        call(request, timeout=10)
                    error = raised.exception
                    self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                     error.details()[:200])
                    self.assertIn("bank name", error.details())
                    self.assertLess(len(error.details()), 1024)
        # The 8 KB name: escaped and cut in the message the client got.
        with self.assertRaises(grpc.RpcError) as raised:
            stub.GetBank(pb.GetBankRequest(name="\x01" * 8192), timeout=10)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertLess(len(raised.exception.details()), 1024)
        self.assertIn("\\x01", raised.exception.details())
        self.assertIn("8192", raised.exception.details())
        # The newline did not forge an access-log line; it is printed \n.
        self.assertIsNotNone(server.wait_for_log(r"method=Forget .*bank=x\\nFORGED"))
        log = server.log()
        self.assertFalse([line for line in log.splitlines()
                          if line.startswith("FORGED")], log[-2000:])
        self.assertEqual(self.bank(server, "ok").pattern_count, 1)
        self.assertAlive(server)
        self.assertEqual(server.stop(), 0)

    def test_9b_dot_scores_that_overflow_float32_are_invalid_argument(self):
        server = self.start()
        stub = server.stub
        self.create(server, "huge", 2, similarity=pb.SIMILARITY_DOT)
        stub.Store(pb.StoreRequest(bank="huge", patterns=[
            pb.Pattern(values=[1e19, 0]), pb.Pattern(values=[0, 1e19])]), timeout=10)
        ask = lambda rows, options, timeout=10: stub.Retrieve(pb.RetrieveRequest(
            bank="huge", queries=[pb.Query(values=r) for r in rows],
            options=pb.RetrieveOptions(return_matches=2, return_energy_trace=True,
                                       **options)), timeout=timeout)
        # beta x 1e19 x 1e19 past float32's 3.4e38 (the bank's automatic
        # beta is past 3.4 here): refused, one query or a batch.
        for rows, options in [([[1e19, 0]], {}), ([[1e19, 0], [0, 1e19]], {}),
                              ([[1e19, 0]], {"beta": 100}),
                              ([[1e19, 1e19]], {"beta": 3})]:
            with self.subTest(rows=rows, **options):
                error = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, ask, rows,
                                        options)
                self.assertIn("overflow", error.details())
        # Near the edge (scores up to 3e38): refused, or answered with
        # finite numbers only; never an OK reply carrying NaN or Inf.
        for rows, options in [([[1e19, 0]], {"beta": 1}), ([[1e19, 0]], {"beta": 3}),
                              ([[1e19, 1e19]], {"beta": 2}),
                              ([[-1e19, 1e19], [1e19, 0]], {"beta": 2})]:
            with self.subTest(rows=rows, **options):
                try:
                    response = ask(rows, options)
                except grpc.RpcError as error:
                    self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                     error.details())
                    self.assertIn("overflow", error.details())
                    continue
                for result in response.results:
                    numbers = (list(result.pattern) + list(result.energy_trace) +
                               [result.energy, result.nearest_weight] +
                               [m.weight for m in result.matches] +
                               [m.score for m in result.matches])
                    self.assertTrue(all(math.isfinite(x) for x in numbers), result)
                    self.assertIn(result.nearest_id, [1, 2])
        # A pattern whose squared norm overflows float32 is refused.
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, stub.Store, pb.StoreRequest(
            bank="huge", patterns=[pb.Pattern(values=[3e19, 0])]), contains="norm")
        self.assertEqual(self.bank(server, "huge").pattern_count, 2)
        self.assertAlive(server)
        self.assertEqual(server.stop(), 0)

    def test_9c_fresh_ids_after_the_largest_id(self):
        server = self.start()
        stub = server.stub
        top = (1 << 64) - 1
        self.create(server, "ids", 2)
        first = stub.Store(pb.StoreRequest(bank="ids", patterns=[
            pb.Pattern(id=top, values=[1, 0])]), timeout=10)
        self.assertEqual(list(first.ids), [top])
        fresh = []
        for _ in range(2):
            fresh += stub.Store(pb.StoreRequest(bank="ids", patterns=[
                pb.Pattern(values=[1, k + 1.0]) for k in range(3)]), timeout=10).ids
        self.assertEqual(len(fresh), 6)
        self.assertEqual(len(set(fresh)), 6, fresh)
        self.assertNotIn(0, fresh)
        self.assertNotIn(top, fresh)
        self.assertEqual(self.bank(server, "ids").pattern_count, 7)
        got = stub.GetPatterns(pb.GetPatternsRequest(bank="ids", ids=[top] + fresh),
                               timeout=10).patterns
        self.assertEqual(list(got[0].values), [1, 0])  # not overwritten
        self.assertEqual([p.id for p in got], [top] + fresh)
        self.assertEqual(server.stop(), 0)

    def test_9d_sigterm_with_an_idle_connection_exits_promptly(self):
        server = self.start("--shutdown_grace_seconds=5")
        idle = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            pb_grpc.MemoryServiceStub(idle).Ping(pb.PingRequest(payload=b"x"),
                                                 timeout=10)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            status = server.process.wait(timeout=10)
            elapsed = time.monotonic() - started
        finally:
            idle.close()
        self.assertEqual(status, 0)
        self.assertLess(elapsed, 2.0, f"exit took {elapsed:.2f} s")
        self.assertEqual(server.stop(), 0)

    def test_9e_drain_reports_not_serving_and_finishes_running_calls(self):
        server = self.start("--shutdown_grace_seconds=60")
        dim, size = 64, 10_000
        self.create(server, "drain", dim)
        rows = random_rows(9, size, dim)
        self.stream_rows(server, "drain", rows)
        # Long enough on any build (β small and 1,000 iterations: no early
        # convergence).
        running = server.stub.Retrieve.future(pb.RetrieveRequest(
            bank="drain", queries=[pb.Query(values=rows[i]) for i in range(200)],
            options=pb.RetrieveOptions(omit_pattern=True, beta=0.5,
                                       max_iterations=1000)), timeout=120)
        time.sleep(0.3)
        self.assertFalse(running.done(), "the Retrieve finished before SIGTERM")
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            status = server.health.Check(health_pb2.HealthCheckRequest(service=""),
                                         timeout=2).status
            if status == NOT_SERVING:
                break
            time.sleep(0.01)
        self.assertEqual(status, NOT_SERVING)
        self.assertEqual(server.health.Check(health_pb2.HealthCheckRequest(
            service="hopfield.v1.MemoryService"), timeout=2).status, NOT_SERVING)
        # The port stays open: a new connection sees NOT_SERVING too.
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as fresh:
            self.assertEqual(health_pb2_grpc.HealthStub(fresh).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2).status,
                NOT_SERVING)
        self.assertCode(grpc.StatusCode.UNAVAILABLE, server.stub.Store,
                        pb.StoreRequest(bank="drain", patterns=[
                            pb.Pattern(values=rows[0])]))
        self.assertFalse(running.done(), "the Retrieve finished during the probes")
        self.assertIsNone(server.process.poll())
        results = running.result().results  # finishes OK
        self.assertEqual(len(results), 200)  # all answered (β 0.5: mixtures)
        self.assertEqual(server.process.wait(timeout=20), 0)
        self.assertEqual(server.stop(), 0)




class ConnectionTest(HardeningTestCase):
    """Finding 8: with 1,024 descriptors, 1,100 idle TCP connections made
    accept4 fail with EMFILE, and gRPC 1.51 never accepted again. Now the
    server accepts connections itself, caps them below its descriptor limit
    (resetting the ones over the cap at once) and keeps accepting."""

    def flood(self, port, count):
        """Opens `count` idle TCP connections; returns them."""
        sockets = []
        for _ in range(count):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port),
                                                        timeout=5))
            except OSError:
                pass
        return sockets

    def assertServesOnNewConnection(self, server):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            health = health_pb2_grpc.HealthStub(channel)
            response = health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5,
                wait_for_ready=True)
            self.assertEqual(response.status, SERVING)
        finally:
            channel.close()

    def test_8_a_burst_past_the_descriptor_limit_does_not_stop_accepting(self):
        # A hard limit of 256 descriptors: the server cannot raise it, and
        # caps connections at 256 - 64 (--descriptor_reserve).
        server = self.start(wrapper=["prlimit", "--nofile=256:256", "--"])
        sockets = self.flood(server.port, 300)
        self.assertIsNone(server.process.poll())
        for sock in sockets:
            sock.close()
        # Accepting again at once, and still a while later.
        self.assertServesOnNewConnection(server)
        time.sleep(1)
        self.assertServesOnNewConnection(server)
        self.assertAlive(server)

    def test_8_max_connections_resets_the_ones_over_the_cap(self):
        server = self.start("--max_connections=20")
        sockets = self.flood(server.port, 40)
        # The ones over the cap are closed by the server within a second.
        closed = 0
        for sock in sockets:
            sock.settimeout(1.0)
            try:
                if sock.recv(1) == b"":
                    closed += 1
            except socket.timeout:
                pass
            except OSError:
                closed += 1  # reset
        self.assertGreaterEqual(closed, 15)
        self.assertLess(closed, 40)
        for sock in sockets:
            sock.close()
        self.assertServesOnNewConnection(server)


if __name__ == "__main__":
    unittest.main(verbosity=2)
