#!/usr/bin/python3
"""hopfieldd's /metrics against api.md, promtool and a real Prometheus.

- A live scrape after traffic of every kind passes `promtool check metrics`
  and holds every family of api.md's table with its type and labels; a
  deleted bank's series are gone from the next scrape.
- deploy/: `promtool check config`, `check rules`, `test rules`.
- Debian's Prometheus on loopback scrapes the server (with deploy/'s alerting
  rules loaded) until the target is up, and a PromQL query of
  hopfield_rpc_duration_seconds returns data; every rule evaluates without
  error.
- Every PromQL expression of the Grafana dashboard and of the rules parses
  and runs on that Prometheus, and every metric it names is one the server
  exports.

Run by ctest with PYTHONPATH at the generated stubs, HOPFIELDD at the server
binary and DEPLOY at the deploy/ directory. Every process is stopped by pid.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import grpc
import yaml

from hopfield.v1 import memory_service_pb2 as pb
from hopfield.v1 import memory_service_pb2_grpc as pb_grpc

DEPLOY = os.environ["DEPLOY"]

# api.md "Metrics": family -> (type, labels of every series).
REQUIRED = {
    "hopfield_rpc_duration_seconds": ("histogram", {"method", "code"}),
    "hopfield_bank_patterns": ("gauge", {"bank"}),
    "hopfield_bank_memory_bytes": ("gauge", {"bank"}),
    "hopfield_bank_min_separation": ("gauge", {"bank"}),
    "hopfield_bank_capacity_utilization": ("gauge", {"bank"}),
    "hopfield_retrieve_iterations": ("histogram", {"bank"}),
    "hopfield_retrieve_metastable_total": ("counter", {"bank"}),
    "hopfield_retrieve_fallback_total": ("counter", {"bank"}),
    "hopfield_train_runs_total": ("counter", {"bank", "outcome"}),
}
# The process and server families (README "Monitoring").
ALSO = ["process_resident_memory_bytes", "process_threads", "process_open_fds",
        "process_start_time_seconds", "hopfield_build_info",
        "hopfield_memory_budget_bytes", "hopfield_memory_budget_used_bytes",
        "hopfield_worker_queue_depth", "hopfield_restart_seconds"]

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """-> ({family: type}, [(name, {label: value}, value)])"""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            labels = dict(LABEL.findall(match.group(3) or ""))
            samples.append((match.group(1), labels, float(match.group(4))))
    return types, samples


def family_of(name, types):
    for suffix in ("_bucket", "_count", "_sum", ""):
        if suffix and name.endswith(suffix) and name[:-len(suffix)] in types:
            return name[:-len(suffix)]
    return name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Server:
    """hopfieldd on 127.0.0.1:0 with /metrics on a free port; stopped by pid."""

    def __init__(self, scratch, *flags):
        ports = os.path.join(scratch, "ports")
        self.log = open(os.path.join(scratch, "hopfieldd.log"), "w")
        self.process = subprocess.Popen(
            [os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
             "--metrics_listen=127.0.0.1:0", "--port_file=" + ports,
             "--data_dir=" + os.path.join(scratch, "data"), *flags],
            stderr=self.log)
        self.port = self.metrics_port = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.port is None:
            if os.path.exists(ports):
                with open(ports) as lines:
                    values = dict(line.strip().split("=", 1)
                                  for line in lines if "=" in line)
                self.port = int(values["grpc_port"])
                self.metrics_port = int(values["metrics_port"])
            elif self.process.poll() is not None:
                break
            else:
                time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("hopfieldd did not start")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.MemoryServiceStub(self.channel)

    def scrape(self):
        return get(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self):
        self.channel.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()


def traffic(stub):
    """Calls of every kind: successes, client errors, approximate retrievals,
    a training run, a deleted bank."""
    rng = random.Random(11)
    rows = [[rng.gauss(0, 1) for _ in range(16)] for _ in range(400)]
    stub.CreateBank(pb.CreateBankRequest(name="m-main",
                                         config=pb.BankConfig(dim=16)), timeout=10)
    stub.Store(pb.StoreRequest(bank="m-main", patterns=[
        pb.Pattern(values=r) for r in rows]), timeout=30)
    # Wait for the search index (--index_min_patterns=64), then search it.
    deadline = time.monotonic() + 60
    while True:
        bank = stub.GetBank(pb.GetBankRequest(name="m-main"), timeout=10)
        if bank.index_size == 400 and bank.index_pending == 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no search index after 60 s: {bank}")
        time.sleep(0.1)
    for mode in (pb.SEARCH_MODE_EXACT, pb.SEARCH_MODE_APPROXIMATE):
        stub.Retrieve(pb.RetrieveRequest(
            bank="m-main",
            queries=[pb.Query(values=[v + rng.gauss(0, 0.3) for v in r])
                     for r in rows[:20]],
            options=pb.RetrieveOptions(search=mode)), timeout=30)
    list(stub.Train(pb.TrainRequest(
        bank="m-main", options=pb.TrainOptions(iterations=5,
                                               skip_validation=True)),
        timeout=60))
    with unittest.TestCase().assertRaises(grpc.RpcError):
        stub.GetBank(pb.GetBankRequest(name="m-missing"), timeout=10)
    stub.CreateBank(pb.CreateBankRequest(name="m-gone",
                                         config=pb.BankConfig(dim=4)), timeout=10)
    stub.Store(pb.StoreRequest(bank="m-gone", patterns=[
        pb.Pattern(values=[1, 0, 0, 0])]), timeout=10)
    stub.Retrieve(pb.RetrieveRequest(bank="m-gone", queries=[
        pb.Query(values=[1, 0, 0, 0])]), timeout=10)
    stub.DeleteBank(pb.DeleteBankRequest(name="m-gone"), timeout=10)
    stub.Ping(pb.PingRequest(), timeout=10)


def promql_expressions():
    """(where, expression) of every PromQL expression in deploy/."""
    found = []
    with open(os.path.join(DEPLOY, "grafana", "dashboards",
                           "hopfield.json")) as f:
        dashboard = json.load(f)

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((f"panel '{panel['title']}'", target["expr"]))
            walk(panel.get("panels", []))
    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.*), *\w+\)", query)
        found.append((f"variable '{variable['name']}'",
                      match.group(1) if match else query))
    with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    return found


def as_query(expression):
    """Grafana's variables replaced by what they hold at "All"."""
    return (expression.replace("$__rate_interval", "1m")
            .replace('=~"$instance"', '=~".*"').replace('=~"$bank"', '=~".*"'))


PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg",
    "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "count", "le", "offset", "bool", "label_values", "topk"}


def metric_names(expression):
    """Metric names an expression selects (words outside braces and strings,
    not functions, keywords or label names)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
        word = match.group(0)
        after = stripped[match.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]?|e\d*", word):
            continue
        names.add(word)
    return names


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="hopfield_metrics_")
        cls.server = Server(cls.scratch, "--index_min_patterns=64")
        grpc.channel_ready_future(cls.server.channel).result(timeout=10)
        traffic(cls.server.stub)
        # A refresher turn and a call are recorded just after their work is
        # visible: scrape until the last call (Ping) and the index turn
        # have landed.
        deadline = time.monotonic() + 30
        while True:
            cls.text = cls.server.scrape()
            cls.types, cls.samples = parse(cls.text)
            landed = {(name, labels.get("method"), labels.get("code"),
                       labels.get("kind")): v for name, labels, v in cls.samples}
            if (landed.get(("hopfield_rpc_duration_seconds_count", "Ping", "OK", None), 0) >= 1
                    and landed.get(("hopfield_refresh_patterns_total", None, None, "index"), 0) > 0):
                break
            if time.monotonic() > deadline:
                raise AssertionError("the traffic's metrics never landed")
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def test_promtool_accepts_a_live_scrape(self):
        done = subprocess.run(["promtool", "check", "metrics"],
                              input=self.text.encode(), capture_output=True,
                              timeout=30)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(done.stdout.strip(), b"", done.stdout)

    def test_every_api_family_with_its_type_and_labels(self):
        for family, (kind, labels) in REQUIRED.items():
            with self.subTest(family=family):
                self.assertEqual(self.types.get(family), kind)
                series = [s for s in self.samples
                          if family_of(s[0], self.types) == family]
                self.assertTrue(series, f"no series of {family}")
                for name, have, _ in series:
                    expected = labels | ({"le"} if name.endswith("_bucket") else set())
                    self.assertEqual(set(have), expected, name)
        for family in ALSO:
            with self.subTest(family=family):
                self.assertIn(family, self.types)

    def test_values_follow_the_traffic(self):
        def value(name, **labels):
            for sample_name, have, v in self.samples:
                if sample_name == name and all(have.get(k) == x for k, x in labels.items()):
                    return v
            return None
        self.assertEqual(value("hopfield_bank_patterns", bank="m-main"), 400)
        self.assertEqual(value("hopfield_retrieve_iterations_count", bank="m-main"), 40)
        self.assertGreater(value("hopfield_retrieve_approximate_total", bank="m-main")
                           + value("hopfield_retrieve_fallback_total", bank="m-main"), 0)
        self.assertEqual(value("hopfield_train_runs_total", bank="m-main",
                               outcome="accepted"), 1)
        self.assertEqual(value("hopfield_rpc_duration_seconds_count",
                               method="GetBank", code="NOT_FOUND"), 1)
        self.assertEqual(value("hopfield_rpc_duration_seconds_count",
                               method="Store", code="OK"), 2)
        self.assertEqual(value("hopfield_rpc_duration_seconds_count",
                               method="Train", code="OK"), 1)
        self.assertGreater(value("hopfield_storage_sync_duration_seconds_count"), 0)
        self.assertGreater(value("hopfield_refresh_patterns_total", kind="index"), 0)
        self.assertGreater(value("process_resident_memory_bytes"), 1e6)
        # The deleted bank left nothing behind.
        self.assertNotIn('bank="m-gone"', self.text)

    def test_deploy_files_pass_promtool(self):
        prometheus_dir = os.path.join(DEPLOY, "prometheus")
        for args in (["check", "config", "prometheus.yml"],
                     ["check", "rules", "alerts.yml"],
                     ["test", "rules", "alerts_test.yml"]):
            with self.subTest(args=args):
                done = subprocess.run(["promtool", *args], cwd=prometheus_dir,
                                      capture_output=True, timeout=60)
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_dashboard_and_rules_name_exported_metrics(self):
        exported = set(self.types) | {"up"}
        for where, expression in promql_expressions():
            for name in metric_names(expression):
                with self.subTest(where=where, metric=name):
                    self.assertIn(family_of(name, self.types), exported)

    def test_prometheus_scrapes_the_server_and_runs_every_expression(self):
        work = tempfile.mkdtemp(prefix="prometheus_", dir=self.scratch)
        shutil.copy(os.path.join(DEPLOY, "prometheus", "alerts.yml"), work)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{
                "job_name": "hopfield",
                "static_configs": [{"targets": [
                    f"127.0.0.1:{self.server.metrics_port}"]}]}],
        }
        with open(os.path.join(work, "prometheus.yml"), "w") as out:
            yaml.safe_dump(config, out)
        port = free_port()
        log = open(os.path.join(work, "log"), "w")
        prometheus = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(work, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(work, "data"),
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=log)
        api = f"http://127.0.0.1:{port}/api/v1"
        try:
            # The target comes up within seconds (first scrape).
            up = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not up:
                try:
                    targets = json.loads(get(f"{api}/targets"))["data"]["activeTargets"]
                    up = any(t["health"] == "up" for t in targets)
                except OSError:
                    pass
                if not up:
                    time.sleep(0.5)
            self.assertTrue(up, "Prometheus never saw the target up")
            # More traffic, then the series arrive.
            self.server.stub.Ping(pb.PingRequest(), timeout=10)
            result = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not result:
                query = urllib.parse.quote("hopfield_rpc_duration_seconds_count")
                result = json.loads(get(f"{api}/query?query={query}"))["data"]["result"]
                if not result:
                    time.sleep(0.5)
            self.assertTrue(result)
            methods = {r["metric"]["method"] for r in result}
            self.assertLessEqual({"Store", "Retrieve", "Ping"}, methods)
            # Every dashboard and rule expression runs (parses, types check).
            for where, expression in promql_expressions():
                with self.subTest(where=where):
                    query = urllib.parse.quote(as_query(expression))
                    answer = json.loads(get(f"{api}/query?query={query}"))
                    self.assertEqual(answer["status"], "success", answer)
            # The rules loaded and evaluate without error.
            deadline = time.monotonic() + 30
            rules = []
            while time.monotonic() < deadline:
                groups = json.loads(get(f"{api}/rules"))["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                if rules and all(r.get("lastEvaluation", "").startswith("2") and
                                 not r["lastEvaluation"].startswith("0001")
                                 for r in rules):
                    break
                time.sleep(0.5)
            self.assertEqual(len(rules), 9)
            for rule in rules:
                with self.subTest(rule=rule["name"]):
                    self.assertEqual(rule["health"], "ok", rule.get("lastError"))
        finally:
            prometheus.send_signal(signal.SIGTERM)
            try:
                prometheus.wait(timeout=20)
            finally:
                if prometheus.poll() is None:
                    prometheus.kill()
                    prometheus.wait()
                log.close()


class MetricsFlagTest(unittest.TestCase):
    def test_empty_metrics_listen_serves_no_metrics(self):
        with tempfile.TemporaryDirectory() as scratch:
            server = Server(scratch, "--metrics_listen=")
            try:
                self.assertEqual(server.metrics_port, 0)
                server.stub.Ping(pb.PingRequest(), timeout=10)
            finally:
                server.stop()
            with open(os.path.join(scratch, "hopfieldd.log")) as log:
                self.assertNotIn("serving /metrics", log.read())

    def test_a_taken_metrics_port_stops_the_start(self):
        with tempfile.TemporaryDirectory() as scratch, socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = subprocess.run(
                [os.environ["HOPFIELDD"], "--listen=127.0.0.1:0",
                 f"--metrics_listen=127.0.0.1:{port}",
                 "--data_dir=" + os.path.join(scratch, "data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(done.returncode, 1)
            self.assertIn(f"cannot serve metrics on --metrics_listen 127.0.0.1:{port}",
                          done.stderr.decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
