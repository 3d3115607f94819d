// load_generator: hopfieldd end to end over loopback, db_bench-style.
// Scenarios:
// - ping: Ping with --payload_bytes, the transport round trip (baseline).
// - retrieve: Retrieve of one masked Fashion-MNIST image per call, against a
//   bank of --patterns images.
// - inprocess: the same retrievals through core in this process, the
//   engine's share.
// - store: StoreStream of --patterns images in messages of --batch, into a
//   fresh bank.
// - compare: one client alternating ping, retrieve and inprocess call by call
//   on the same query, so drifting machine load hits all three alike; prints
//   each distribution, the paired overhead (retrieve - inprocess) and whether
//   the latency target holds: p50(retrieve) <= 2 * p50(ping) + p50(inprocess).
// - mixed: whether cheap calls stay fast beside heavy ones. A prober client
//   alternates grpc.health.v1 Check (of hopfield.v1.MemoryService) and Ping,
//   first alone (baseline), then while --heavy_clients closed-loop clients
//   each send Retrieves of --heavy_queries masked queries (loaded). Prints
//   both phases' Check and Ping distributions, the heavy calls by status code
//   (RESOURCE_EXHAUSTED is counted, not fatal) and whether the loaded probes
//   meet the target p99 < 50 ms. Not in the default list: it takes two
//   --duration_seconds plus the heavy calls in flight at the end.
// - metrics: the cost of metrics. One client alternates the same Retrieve
//   between --target (a hopfieldd with metrics on) and --compare_target (one
//   started with --metrics_listen= empty), each holding the same bank;
//   prints both distributions and the paired cost. Not in the default list.
// - ingest2: loading two banks alternately. Creates two fresh banks and
//   stores --patterns images into each with unary Store calls of --batch
//   (bank A batch 1, bank B batch 1, A batch 2, ...); prints Store latency
//   p50/p99/max per 10k-pattern segment of bank size and overall, both
//   banks' separation_pending at each segment's end, and how long after the
//   last write both reached separation_pending 0 (at most
//   --catchup_timeout_seconds). --qps paces the Store calls (as a client
//   that pauses between batches); --trace_csv writes every call. Banks
//   loadgen-PID-a and -b, deleted at exit; with --bank=NAME, NAME-a and
//   NAME-b, which must not exist yet and are kept. Not in the default list
//   (minutes: the catch-up of two full banks).
// - tls: the cost of TLS. One client alternates the same Ping, then the
//   same Retrieve, between --target (TLS: --tls_ca_file etc.) and
//   --compare_target (plaintext), each holding the same bank; prints both
//   distributions and the paired cost. With --api_key and no TLS flags, the
//   same against a plaintext server with keys: the cost of the key check.
//   Not in the default list.
// - soak: a bounded soak under mixed Store / Forget / Retrieve /
//   GetPatterns / Train traffic from --soak_writers clients, a reader with
//   --read_only_api_key whose writes must be refused, and the server's
//   memory sampled (--server_pid); every acknowledged pattern checked after
//   (bench/soak.h). Exits 1 when a check or a --soak_* bound fails. Not in
//   the default list.
// TLS and keys: --tls_ca_file (with --tls_cert_file / --tls_key_file for
// mutual TLS) and --api_key (or $HOPFIELD_API_KEY) apply to --target.
//
// --scenarios picks and orders them (default: the first five, store first,
// in one run, so their ratios are comparable). Each latency scenario runs
// --concurrency closed-loop clients for --duration_seconds or --calls calls
// each (or paced to --qps in total) and prints calls, errors, QPS and
// p50/p99/p99.9 latency. With --calls, retrieve and inprocess send the same
// query sequence.
//
// Example:
//   hopfieldd --listen=127.0.0.1:50051 &
//   load_generator --target=127.0.0.1:50051 --patterns=60000
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpcpp/grpcpp.h"

#include "bench/fashion_mnist.h"
#include "bench/soak.h"
#include "client/memory_client.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/status_macros.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "hopfieldd address");
ABSL_FLAG(std::string, compare_target, "",
          "metrics: a second hopfieldd (started with --metrics_listen= empty) "
          "that --target's retrievals are compared with");
ABSL_FLAG(std::string, scenarios, "store,ping,retrieve,inprocess,compare",
          "comma-separated scenarios, run in this order; also available: "
          "mixed, ingest2 (not run by default)");
ABSL_FLAG(int, concurrency, 1, "closed-loop clients per latency scenario");
ABSL_FLAG(double, duration_seconds, 10, "length of each latency scenario");
ABSL_FLAG(double, qps, 0, "total request rate (0 = as fast as the clients go)");
ABSL_FLAG(
    int, calls, 0,
    "calls per client instead of --duration_seconds, so scenarios see the "
    "same query sequence (paired comparisons)");
ABSL_FLAG(int, patterns, 60000, "Fashion-MNIST images in the bank");
ABSL_FLAG(int, batch, 1000,
          "store: patterns per StoreStream message; ingest2: patterns per "
          "unary Store call");
ABSL_FLAG(int, payload_bytes, 3136,
          "ping: payload size (3136 = one 784-float vector)");
ABSL_FLAG(double, mask_fraction, 0.5, "retrieve: pixels zeroed in each query");
ABSL_FLAG(std::string, search, "auto",
          "retrieve, inprocess, compare: search mode, auto (the default: "
          "approximate in banks with an index from 4,096 patterns), exact "
          "or approximate");
ABSL_FLAG(int, heavy_clients, 8,
          "mixed: closed-loop clients sending heavy Retrieves in the loaded "
          "phase");
ABSL_FLAG(int, heavy_queries, 2000,
          "mixed: masked queries per heavy Retrieve, one request (split only "
          "past ~3/4 of the 64 MiB message limit)");
ABSL_FLAG(double, heavy_deadline_seconds, 60,
          "mixed: deadline of each heavy Retrieve and of each probe");
ABSL_FLAG(double, heavy_backoff_ms, 100,
          "mixed: pause of a heavy client after a failed call (e.g. "
          "RESOURCE_EXHAUSTED) before it sends again, as a retrying client "
          "backs off; 0 = resend at once");
ABSL_FLAG(double, catchup_timeout_seconds, 900,
          "ingest2: longest wait after the last write for both banks' "
          "separation_pending to reach 0 (reported as not caught up after)");
ABSL_FLAG(std::string, trace_csv, "",
          "ingest2: also write every Store call to this CSV file (bank, "
          "patterns before the call, start in seconds since the first call, "
          "latency in ms)");
ABSL_FLAG(std::string, bank, "",
          "bank to use, kept at exit and reused as is (no store) when it "
          "already exists; empty = a fresh loadgen-PID bank, deleted at exit. "
          "ingest2 uses NAME-a and NAME-b, which must not exist yet");

ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM certificates verifying --target's TLS certificate (TLS on)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate for mutual TLS (with --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "name --target's certificate must carry (default: its host)");
ABSL_FLAG(std::string, api_key, "",
          "read-write API key for --target (default: $HOPFIELD_API_KEY)");
ABSL_FLAG(std::string, read_only_api_key, "",
          "soak: a read-only key for the reader client (empty: no reader)");
ABSL_FLAG(int, server_pid, 0,
          "soak: the server's process id, to sample its resident memory");
ABSL_FLAG(int, soak_writers, 8, "soak: writer clients");
ABSL_FLAG(int, soak_dim, 64, "soak: pattern dimension");
ABSL_FLAG(int, soak_working_set, 2000, "soak: patterns each writer keeps");
ABSL_FLAG(double, soak_train_seconds, 15,
          "soak: run Train this often (0: never)");
ABSL_FLAG(double, soak_settle_seconds, 600,
          "soak: wait up to this long after the fill for the search index to "
          "hold every pattern before the clock starts (0: no wait)");
ABSL_FLAG(double, soak_p99_ms, 0,
          "soak: fail when any serving method's p99 is over this (0: report)");
ABSL_FLAG(double, soak_max_rss_growth, 0,
          "soak: fail when the server's resident memory grows by more than "
          "this fraction after the warm-up (0: report)");

namespace hopfield::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Report {
  std::string name;
  uint64_t calls = 0;
  uint64_t errors = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;
  std::string first_error;
};

double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index =
      std::min(sorted.size() - 1,
               static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[index];
}

// Sorts the latencies and prints one line; `with_max` adds the slowest call.
void Print(Report& report, bool with_max = false) {
  std::sort(report.latencies_ms.begin(), report.latencies_ms.end());
  std::printf(
      "%-10s calls=%-8llu errors=%-4llu qps=%-9.1f p50=%.3fms p99=%.3fms "
      "p99.9=%.3fms",
      report.name.c_str(), static_cast<unsigned long long>(report.calls),
      static_cast<unsigned long long>(report.errors),
      static_cast<double>(report.calls) / report.seconds,
      Percentile(report.latencies_ms, 0.50),
      Percentile(report.latencies_ms, 0.99),
      Percentile(report.latencies_ms, 0.999));
  if (with_max) {
    std::printf(" max=%.3fms",
                report.latencies_ms.empty() ? 0.0 : report.latencies_ms.back());
  }
  std::printf("\n");
  if (!report.first_error.empty())
    std::printf("  first error: %s\n", report.first_error.c_str());
  std::fflush(stdout);
}

// Times one call into `report` (latency, count, errors); returns its
// latency in milliseconds.
template <typename Call>
double TimedCall(Report& report, const Call& call) {
  const Clock::time_point t0 = Clock::now();
  const absl::Status status = call();
  const double ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ++report.calls;
  report.latencies_ms.push_back(ms);
  if (!status.ok()) {
    ++report.errors;
    if (report.first_error.empty()) report.first_error = status.ToString();
  }
  return ms;
}

// Runs `call(client_index, call_index)` from --concurrency threads for
// --duration_seconds, optionally paced to --qps in total.
template <typename Call>
Report RunLoad(const std::string& name, const Call& call) {
  const int clients = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const auto duration =
      std::chrono::duration<double>(absl::GetFlag(FLAGS_duration_seconds));
  const double qps = absl::GetFlag(FLAGS_qps);
  std::vector<Report> parts(static_cast<size_t>(clients));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start + std::chrono::duration_cast<Clock::duration>(duration);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Report& part = parts[static_cast<size_t>(c)];
      const auto interval = qps > 0
                                ? std::chrono::duration<double>(clients / qps)
                                : std::chrono::duration<double>(0);
      Clock::time_point next = Clock::now();
      const auto calls =
          static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_calls)));
      for (uint64_t i = 0; calls > 0 ? i < calls : Clock::now() < end; ++i) {
        if (qps > 0) {
          std::this_thread::sleep_until(next);
          next += std::chrono::duration_cast<Clock::duration>(interval);
        }
        TimedCall(part, [&] { return call(c, i); });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  Report total;
  total.name = name;
  total.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (Report& part : parts) {
    total.calls += part.calls;
    total.errors += part.errors;
    total.latencies_ms.insert(total.latencies_ms.end(),
                              part.latencies_ms.begin(),
                              part.latencies_ms.end());
    if (total.first_error.empty()) total.first_error = part.first_error;
  }
  return total;
}

// One closed-loop client alternating ping, remote and local retrieval of the
// same query, for --calls rounds (or --duration_seconds). Pairing the calls
// cancels the machine's slow load drift out of the overhead figure.
template <typename Ping, typename Remote, typename Local>
void Compare(const Ping& ping, const Remote& remote, const Local& local) {
  std::array<Report, 3> reports;
  reports[0].name = "ping";
  reports[1].name = "retrieve";
  reports[2].name = "inprocess";
  std::vector<double> overhead_ms;
  const auto calls =
      static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_calls)));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start +
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(absl::GetFlag(FLAGS_duration_seconds)));
  for (uint64_t i = 0; calls > 0 ? i < calls : Clock::now() < end; ++i) {
    TimedCall(reports[0], ping);
    const double remote_ms = TimedCall(reports[1], [&] { return remote(i); });
    const double local_ms = TimedCall(reports[2], [&] { return local(i); });
    overhead_ms.push_back(remote_ms - local_ms);
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  std::array<double, 3> p50{};
  for (size_t r = 0; r < reports.size(); ++r) {
    reports[r].seconds = seconds;
    Print(reports[r]);
    p50[r] = Percentile(reports[r].latencies_ms, 0.5);  // sorted by Print
  }
  std::sort(overhead_ms.begin(), overhead_ms.end());
  std::printf(
      "%-10s retrieve-inprocess per query: p10=%.3fms p50=%.3fms "
      "p90=%.3fms\n",
      "overhead", Percentile(overhead_ms, 0.1), Percentile(overhead_ms, 0.5),
      Percentile(overhead_ms, 0.9));
  const double allowed = 2 * p50[0] + p50[2];
  uint64_t errors = 0;
  for (const Report& report : reports) errors += report.errors;
  std::printf(
      "%-10s p50(retrieve)=%.3fms %s 2*p50(ping)+p50(inprocess)=%.3fms: %s\n",
      "target", p50[1], p50[1] <= allowed ? "<=" : ">", allowed,
      errors > 0          ? "invalid (calls failed)"
      : p50[1] <= allowed ? "met"
                          : "missed");
  std::fflush(stdout);
}

// One client alternating the same query between --target (A, metrics on)
// and --compare_target (B, metrics off), A first on even rounds and B first
// on odd ones, for --calls rounds (or --duration_seconds): prints both
// distributions and A's paired cost over B (A - B per round), absolute and
// as a share of B's median.
template <typename A, typename B>
void CompareServers(const A& on, const B& off, const char* label = "metrics",
                    const char* on_name = "metrics_on",
                    const char* off_name = "metrics_off") {
  std::array<Report, 2> reports;
  reports[0].name = on_name;
  reports[1].name = off_name;
  std::vector<double> cost_ms;
  const auto calls =
      static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_calls)));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start +
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(absl::GetFlag(FLAGS_duration_seconds)));
  for (uint64_t i = 0; calls > 0 ? i < calls : Clock::now() < end; ++i) {
    double on_ms = 0.0;
    double off_ms = 0.0;
    if (i % 2 == 0) {
      on_ms = TimedCall(reports[0], [&] { return on(i); });
      off_ms = TimedCall(reports[1], [&] { return off(i); });
    } else {
      off_ms = TimedCall(reports[1], [&] { return off(i); });
      on_ms = TimedCall(reports[0], [&] { return on(i); });
    }
    cost_ms.push_back(on_ms - off_ms);
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  std::array<double, 2> p50{};
  for (size_t r = 0; r < reports.size(); ++r) {
    reports[r].seconds = seconds;
    Print(reports[r]);
    p50[r] = Percentile(reports[r].latencies_ms, 0.5);  // sorted by Print
  }
  std::sort(cost_ms.begin(), cost_ms.end());
  const double median_cost = Percentile(cost_ms, 0.5);
  std::printf(
      "%-10s on-off per query: p25=%.4fms p50=%.4fms p75=%.4fms; "
      "p50(on)/p50(off)=%.4f; median paired cost = %.2f%% of p50(off)%s\n",
      label, Percentile(cost_ms, 0.25), median_cost, Percentile(cost_ms, 0.75),
      p50[0] / p50[1], 100.0 * median_cost / p50[1],
      reports[0].errors + reports[1].errors > 0 ? " (invalid: calls failed)"
                                                : "");
  std::fflush(stdout);
}

// A channel with a connection of its own (gRPC otherwise shares one
// subchannel among channels to the same target with the same arguments), as
// a separate process would have.
std::shared_ptr<grpc::Channel> OwnChannel(
    const client::ClientOptions& options) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
  arguments.SetMaxSendMessageSize(options.max_message_bytes);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(
      options.target, grpc::InsecureChannelCredentials(), arguments);
}

// One client alternating Check of MemoryService and Ping, for --calls rounds
// or --duration_seconds, paced to --qps calls in total when set. A Check
// answering anything but SERVING counts as an error.
void Probe(client::MemoryClient& prober, Report& check, Report& ping) {
  const std::string service = v1::MemoryService::service_full_name();
  const auto bytes = static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes));
  const auto calls =
      static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_calls)));
  const double qps = absl::GetFlag(FLAGS_qps);
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(qps > 0 ? 1 / qps : 0));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start +
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(absl::GetFlag(FLAGS_duration_seconds)));
  Clock::time_point next = start;
  auto pace = [&] {
    if (qps <= 0) return;
    std::this_thread::sleep_until(next);
    next += interval;
  };
  for (uint64_t i = 0; calls > 0 ? i < calls : Clock::now() < end; ++i) {
    pace();
    TimedCall(check, [&]() -> absl::Status {
      absl::StatusOr<bool> serving = prober.Health(service);
      if (!serving.ok()) return serving.status();
      return *serving ? absl::OkStatus()
                      : absl::UnavailableError("NOT_SERVING");
    });
    pace();
    TimedCall(ping, [&] { return prober.Ping(bytes); });
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  check.seconds = seconds;
  ping.seconds = seconds;
}

// The heavy clients' calls in the loaded phase, by status code.
struct HeavyReport {
  uint64_t calls = 0;
  uint64_t ok = 0;
  std::map<absl::StatusCode, uint64_t> failed;
  std::vector<double> latencies_ms;
  std::string first_error;  // the first that is not RESOURCE_EXHAUSTED
};

// The mixed scenario (see the header). `rows` holds --heavy_queries +
// `pool` - 1 query rows of `dim` floats; a heavy call sends --heavy_queries
// consecutive rows starting at one of the first `pool`.
void Mixed(const client::ClientOptions& base, const std::string& bank,
           size_t dim, absl::Span<const float> rows, size_t pool,
           const v1::RetrieveOptions& retrieve_options) {
  client::ClientOptions options = base;
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_heavy_deadline_seconds));
  const int heavy_clients = std::max(0, absl::GetFlag(FLAGS_heavy_clients));
  const auto heavy_queries =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_heavy_queries)));
  const auto backoff = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(
          absl::GetFlag(FLAGS_heavy_backoff_ms)));
  client::MemoryClient prober(OwnChannel(options), options);
  // Connect before timing anything.
  (void)prober.Health();
  (void)prober.Ping();

  // Phase 1: the prober alone.
  std::array<Report, 2> baseline;
  baseline[0].name = "check";
  baseline[1].name = "ping";
  std::printf("%-10s baseline: one client alternating Check and Ping\n",
              "mixed");
  Probe(prober, baseline[0], baseline[1]);
  for (Report& report : baseline) Print(report, /*with_max=*/true);

  // Phase 2: the same prober once every heavy client has sent its first call.
  std::printf(
      "%-10s loaded: the same, beside %d clients each sending Retrieves of "
      "%zu queries (deadline %gs)\n",
      "mixed", heavy_clients, heavy_queries,
      absl::GetFlag(FLAGS_heavy_deadline_seconds));
  std::fflush(stdout);
  std::vector<std::unique_ptr<client::MemoryClient>> heavy;
  heavy.reserve(static_cast<size_t>(heavy_clients));
  for (int c = 0; c < heavy_clients; ++c) {
    heavy.push_back(
        std::make_unique<client::MemoryClient>(OwnChannel(options), options));
  }
  std::vector<HeavyReport> parts(static_cast<size_t>(heavy_clients));
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(heavy_clients));
  for (int c = 0; c < heavy_clients; ++c) {
    threads.emplace_back([&, c] {
      HeavyReport& part = parts[static_cast<size_t>(c)];
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        if (i == 0) started.fetch_add(1);
        const size_t first = (static_cast<size_t>(c) * 7919 + i * 211) % pool;
        const Clock::time_point t0 = Clock::now();
        const absl::Status status =
            heavy[static_cast<size_t>(c)]
                ->Retrieve(bank, dim,
                           rows.subspan(first * dim, heavy_queries * dim),
                           retrieve_options, heavy_queries)
                .status();
        part.latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0)
                .count());
        ++part.calls;
        if (status.ok()) {
          ++part.ok;
          continue;
        }
        ++part.failed[status.code()];
        if (part.first_error.empty() &&
            status.code() != absl::StatusCode::kResourceExhausted) {
          part.first_error = status.ToString();
        }
        std::this_thread::sleep_for(backoff);
      }
    });
  }
  while (started.load() < heavy_clients) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::array<Report, 2> loaded;
  loaded[0].name = "check";
  loaded[1].name = "ping";
  Probe(prober, loaded[0], loaded[1]);
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  for (Report& report : loaded) Print(report, /*with_max=*/true);

  HeavyReport total;
  for (HeavyReport& part : parts) {
    total.calls += part.calls;
    total.ok += part.ok;
    for (const auto& [code, count] : part.failed) total.failed[code] += count;
    total.latencies_ms.insert(total.latencies_ms.end(),
                              part.latencies_ms.begin(),
                              part.latencies_ms.end());
    if (total.first_error.empty()) total.first_error = part.first_error;
  }
  std::sort(total.latencies_ms.begin(), total.latencies_ms.end());
  std::string failed;
  for (const auto& [code, count] : total.failed) {
    absl::StrAppend(&failed, " ", absl::StatusCodeToString(code), "=", count);
  }
  std::printf(
      "%-10s calls=%llu ok=%llu%s queries_per_second=%.0f p50=%.3fms "
      "p99=%.3fms max=%.3fms (%.2fs, until the last call in flight "
      "returned)\n",
      "heavy", static_cast<unsigned long long>(total.calls),
      static_cast<unsigned long long>(total.ok), failed.c_str(),
      static_cast<double>(total.ok * heavy_queries) / seconds,
      Percentile(total.latencies_ms, 0.50),
      Percentile(total.latencies_ms, 0.99),
      total.latencies_ms.empty() ? 0.0 : total.latencies_ms.back(), seconds);
  if (!total.first_error.empty())
    std::printf("  first error: %s\n", total.first_error.c_str());

  constexpr double kTargetMs = 50;
  const double check_p99 = Percentile(loaded[0].latencies_ms, 0.99);
  const double ping_p99 = Percentile(loaded[1].latencies_ms, 0.99);
  const uint64_t probe_errors = loaded[0].errors + loaded[1].errors;
  std::string verdict =
      check_p99 < kTargetMs && ping_p99 < kTargetMs ? "met" : "missed";
  if (probe_errors > 0) {
    verdict = absl::StrCat("missed (", probe_errors, " probe calls failed)");
  } else if (total.ok == 0) {
    verdict = "invalid (no heavy Retrieve succeeded)";
  }
  std::printf("mixed: baseline Check p99 %.3f ms, Ping p99 %.3f ms\n",
              Percentile(baseline[0].latencies_ms, 0.99),
              Percentile(baseline[1].latencies_ms, 0.99));
  std::printf(
      "mixed: Check p99 %.3f ms, Ping p99 %.3f ms while heavy: target "
      "(p99 < %g ms) %s\n",
      check_p99, ping_p99, kTargetMs, verdict.c_str());
  std::fflush(stdout);
}

// One unary Store call of the ingest2 scenario.
struct StoreCall {
  size_t bank = 0;           // 0 = A, 1 = B
  uint64_t size_before = 0;  // patterns in that bank before the call
  double start_seconds = 0;  // since the first call began
  double ms = 0;
};

// Both banks' separation_pending after `written` patterns per bank.
struct PendingSample {
  uint64_t written = 0;
  std::array<uint64_t, 2> pending{};
};

absl::Status FromGrpc(const grpc::Status& status) {
  return {static_cast<absl::StatusCode>(status.error_code()),
          status.error_message()};
}

// `value` with `digits` decimals.
std::string Fixed(double value, int digits) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.*f", digits, value);
  return text.data();
}

// Prints p50/p99/max of `ms` (sorted here) after `label`.
void PrintLatencies(const std::string& label, std::vector<double>& ms,
                    const std::string& suffix) {
  std::sort(ms.begin(), ms.end());
  std::printf("%-10s %-13s calls=%-4zu p50=%.3fms p99=%.3fms max=%.3fms%s\n",
              "ingest2", label.c_str(), ms.size(), Percentile(ms, 0.50),
              Percentile(ms, 0.99), ms.empty() ? 0.0 : ms.back(),
              suffix.c_str());
}

// Loads banks `names` alternately and reports (see the header); the banks
// are deleted at exit unless `keep_banks`, and always on failure.
absl::Status IngestTwo(client::MemoryClient& client,
                       const client::ClientOptions& options,
                       const std::array<std::string, 2>& names, bool keep_banks,
                       size_t dim, absl::Span<const float> pixels) {
  const size_t count = pixels.size() / dim;
  const auto batch =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_batch)));
  constexpr uint64_t kSegment = 10000;
  std::vector<std::string> created;
  auto drop_created = [&] {
    for (const std::string& name : created) (void)client.DeleteBank(name);
  };
  for (const std::string& name : names) {
    absl::StatusOr<v1::Bank> existing = client.GetBank(name);
    if (existing.ok()) {
      drop_created();
      return absl::FailedPreconditionError(
          absl::StrCat("ingest2 needs fresh banks and ", name,
                       " exists; delete it or pick another --bank"));
    }
    v1::BankConfig config;
    config.set_dim(static_cast<uint32_t>(dim));
    absl::StatusOr<v1::Bank> bank = client.CreateBank(name, config);
    if (!bank.ok()) {
      drop_created();
      return bank.status();
    }
    created.push_back(name);
  }
  std::printf(
      "%-10s banks %s and %s: %zu patterns each, unary Store of %zu, "
      "alternating\n",
      "ingest2", names[0].c_str(), names[1].c_str(), count, batch);
  std::fflush(stdout);

  std::unique_ptr<v1::MemoryService::Stub> stub =
      v1::MemoryService::NewStub(OwnChannel(options));
  std::vector<StoreCall> calls;
  std::vector<PendingSample> samples;
  auto sample_pending = [&](uint64_t written) -> absl::Status {
    PendingSample sample;
    sample.written = written;
    for (size_t b = 0; b < names.size(); ++b) {
      absl::StatusOr<v1::Bank> state = client.GetBank(names[b]);
      if (!state.ok()) return state.status();
      sample.pending[b] = state->separation_pending();
    }
    samples.push_back(sample);
    return absl::OkStatus();
  };
  Clock::time_point start;
  auto store = [&](size_t b, size_t first, size_t rows) -> absl::Status {
    v1::StoreRequest request;
    request.set_bank(names[b]);
    request.mutable_patterns()->Reserve(static_cast<int>(rows));
    for (size_t r = first; r < first + rows; ++r) {
      const absl::Span<const float> row = pixels.subspan(r * dim, dim);
      request.add_patterns()->mutable_values()->Add(row.begin(), row.end());
    }
    v1::StoreResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options.timeout));
    const Clock::time_point t0 = Clock::now();
    const grpc::Status status = stub->Store(&context, request, &response);
    const double ms =
        std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!status.ok()) return FromGrpc(status);
    if (response.pattern_count() != first + rows) {
      return absl::InternalError(
          absl::StrCat(names[b], " holds ", response.pattern_count(),
                       " patterns after a Store, expected ", first + rows));
    }
    calls.push_back(
        {b, first, std::chrono::duration<double>(t0 - start).count(), ms});
    return absl::OkStatus();
  };
  // With --qps, one Store every 1/qps seconds: a client that pauses
  // between writes (reading, decoding) leaves each bank quiet in between.
  const double qps = absl::GetFlag(FLAGS_qps);
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(qps > 0 ? 1 / qps : 0));
  start = Clock::now();
  Clock::time_point next = start;
  for (size_t first = 0; first < count; first += batch) {
    const size_t rows = std::min(batch, count - first);
    for (size_t b = 0; b < names.size(); ++b) {
      if (qps > 0) {
        std::this_thread::sleep_until(next);
        next += interval;
      }
      if (absl::Status s = store(b, first, rows); !s.ok()) {
        drop_created();
        return absl::Status(s.code(),
                            absl::StrCat("Store into ", names[b], " at ", first,
                                         " patterns: ", s.message()));
      }
    }
    const uint64_t written = first + rows;
    // Untimed, between two Stores: does the refresher get a turn?
    if (written % kSegment == 0 || written == count) {
      if (absl::Status s = sample_pending(written); !s.ok()) {
        drop_created();
        return s;
      }
    }
  }
  const Clock::time_point last_write = Clock::now();
  const double write_seconds =
      std::chrono::duration<double>(last_write - start).count();

  // Catch-up: poll until both banks' statistics are exact again.
  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
          absl::GetFlag(FLAGS_catchup_timeout_seconds)));
  std::array<double, 2> caught_up_seconds{-1, -1};
  std::array<v1::Bank, 2> after_writes;
  std::array<v1::Bank, 2> state;
  Clock::time_point next_progress = last_write + std::chrono::seconds(10);
  for (bool first_poll = true;; first_poll = false) {
    const double since =
        std::chrono::duration<double>(Clock::now() - last_write).count();
    bool done = true;
    for (size_t b = 0; b < names.size(); ++b) {
      if (caught_up_seconds[b] >= 0) continue;
      absl::StatusOr<v1::Bank> polled = client.GetBank(names[b]);
      if (!polled.ok()) {
        drop_created();
        return polled.status();
      }
      state[b] = *std::move(polled);
      if (first_poll) after_writes[b] = state[b];
      if (state[b].separation_pending() == 0) {
        caught_up_seconds[b] = since;
      } else {
        done = false;
      }
    }
    if (done || Clock::now() - last_write > timeout) break;
    if (Clock::now() >= next_progress) {
      std::printf(
          "%-10s %.0f s after the last write: pending A=%llu B=%llu\n",
          "ingest2", since,
          static_cast<unsigned long long>(state[0].separation_pending()),
          static_cast<unsigned long long>(state[1].separation_pending()));
      std::fflush(stdout);
      next_progress += std::chrono::seconds(10);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  // Latency per segment of bank size (both banks' calls together).
  std::map<uint64_t, std::vector<double>> segments;
  std::vector<double> overall;
  for (const StoreCall& call : calls) {
    segments[call.size_before / kSegment].push_back(call.ms);
    overall.push_back(call.ms);
  }
  std::printf(
      "%-10s Store latency by bank size before the call (A and B calls "
      "together); separation_pending A/B at the segment's end\n",
      "ingest2");
  for (auto& [segment, ms] : segments) {
    const uint64_t end = std::min<uint64_t>((segment + 1) * kSegment, count);
    std::string pending;
    for (const PendingSample& sample : samples) {
      if (sample.written == end) {
        pending = absl::StrCat(" pending=", sample.pending[0], "/",
                               sample.pending[1]);
      }
    }
    PrintLatencies(
        absl::StrCat("[", segment * kSegment / 1000, "k,", end / 1000, "k)"),
        ms, pending);
  }
  PrintLatencies(
      "overall", overall,
      absl::StrCat(
          " patterns_per_second=",
          static_cast<uint64_t>(static_cast<double>(2 * count) / write_seconds),
          " (", Fixed(write_seconds, 2), " s)"));
  std::vector<StoreCall> slowest = calls;
  const size_t shown = std::min<size_t>(5, slowest.size());
  std::partial_sort(
      slowest.begin(), slowest.begin() + static_cast<std::ptrdiff_t>(shown),
      slowest.end(),
      [](const StoreCall& a, const StoreCall& b) { return a.ms > b.ms; });
  std::string listed;
  for (size_t i = 0; i < shown; ++i) {
    absl::StrAppend(&listed, " ", slowest[i].bank == 0 ? "A" : "B", "@",
                    slowest[i].size_before, "=", Fixed(slowest[i].ms, 1), "ms");
  }
  std::printf("%-10s slowest (bank@size before):%s\n", "ingest2",
              listed.c_str());
  if (const std::string path = absl::GetFlag(FLAGS_trace_csv); !path.empty()) {
    std::FILE* csv = std::fopen(path.c_str(), "w");
    if (csv == nullptr) {
      std::fprintf(stderr, "ingest2: cannot write %s\n", path.c_str());
    } else {
      std::fprintf(csv, "bank,size_before,start_seconds,ms\n");
      for (const StoreCall& call : calls) {
        std::fprintf(csv, "%c,%llu,%.4f,%.3f\n", call.bank == 0 ? 'A' : 'B',
                     static_cast<unsigned long long>(call.size_before),
                     call.start_seconds, call.ms);
      }
      std::fclose(csv);
    }
  }
  for (size_t b = 0; b < names.size(); ++b) {
    const std::string then =
        caught_up_seconds[b] >= 0
            ? absl::StrCat("exact ", Fixed(caught_up_seconds[b], 2),
                           " s after it:")
            : absl::StrCat("still pending=", state[b].separation_pending(),
                           " at the timeout:");
    std::printf(
        "%-10s %s: at the last write pending=%llu min_separation=%g "
        "effective_beta=%g; %s min_separation=%g effective_beta=%g\n",
        "ingest2", b == 0 ? "A" : "B",
        static_cast<unsigned long long>(after_writes[b].separation_pending()),
        after_writes[b].min_separation(), after_writes[b].effective_beta(),
        then.c_str(), state[b].min_separation(), state[b].effective_beta());
  }
  const double both = std::max(caught_up_seconds[0], caught_up_seconds[1]);
  if (caught_up_seconds[0] >= 0 && caught_up_seconds[1] >= 0) {
    std::printf(
        "ingest2: separation_pending 0 in both banks %.2f s after the last "
        "write\n",
        both);
  } else {
    std::printf(
        "ingest2: separation_pending not 0 in both banks %g s after the last "
        "write (timeout)\n",
        absl::GetFlag(FLAGS_catchup_timeout_seconds));
  }
  std::fflush(stdout);
  if (!keep_banks) drop_created();
  return absl::OkStatus();
}

int Main() {
  const std::vector<std::string> scenarios =
      absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty());
  client::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.timeout = absl::Seconds(600);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty())
    options.api_key = client::ApiKeyFromEnvironment();
  client::MemoryClient client(options);
  absl::StatusOr<bool> serving = client.Health();
  if (!serving.ok() || !*serving) {
    std::fprintf(
        stderr, "hopfieldd at %s is not serving: %s\n", options.target.c_str(),
        serving.ok() ? "NOT_SERVING" : serving.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<FashionMnist> images =
      LoadFashionMnist("train", absl::GetFlag(FLAGS_patterns));
  if (!images.ok()) {
    std::fprintf(stderr, "%s\n", images.status().ToString().c_str());
    return 1;
  }
  const auto dim = static_cast<size_t>(images->dim);
  // Queries: masked copies of stored images (the U-Hop corruption).
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> pick(0, images->count - 1);
  std::bernoulli_distribution drop(absl::GetFlag(FLAGS_mask_fraction));
  constexpr int kQueries = 512;
  std::vector<float> queries;
  for (int q = 0; q < kQueries; ++q) {
    const size_t source = static_cast<size_t>(pick(rng));
    for (size_t j = 0; j < dim; ++j) {
      queries.push_back(drop(rng) ? 0.0f : images->pixels[source * dim + j]);
    }
  }
  auto query = [&](uint64_t i) {
    return absl::MakeConstSpan(queries).subspan((i % kQueries) * dim, dim);
  };
  const std::string bank = absl::GetFlag(FLAGS_bank).empty()
                               ? absl::StrCat("loadgen-", getpid())
                               : absl::GetFlag(FLAGS_bank);
  // A bank the user named is theirs: reused when it exists, kept at exit.
  const bool keep_bank = !absl::GetFlag(FLAGS_bank).empty();
  std::printf(
      "target=%s patterns=%d dim=%zu concurrency=%d duration=%gs qps=%s\n",
      options.target.c_str(), images->count, dim,
      absl::GetFlag(FLAGS_concurrency), absl::GetFlag(FLAGS_duration_seconds),
      absl::GetFlag(FLAGS_qps) > 0
          ? absl::StrCat(absl::GetFlag(FLAGS_qps)).c_str()
          : "unpaced");
  bool bank_loaded = false;
  // Latency scenarios must not race the server's background separation
  // refresh for the two cores (and automatic β needs exact statistics):
  // wait until it has caught up.
  auto wait_for_refresh = [&](client::MemoryClient& server) -> absl::Status {
    for (;;) {
      absl::StatusOr<v1::Bank> state = server.GetBank(bank);
      if (!state.ok()) return state.status();
      // Exact statistics (the automatic β) and a complete search index.
      if (state->separation_pending() == 0 && state->index_pending() == 0) {
        return absl::OkStatus();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };
  // Loads the bank into the server that `server` talks to (once: *loaded).
  auto load_into = [&](client::MemoryClient& server,
                       const client::ClientOptions& server_options,
                       bool* loaded) -> absl::Status {
    if (*loaded) return absl::OkStatus();
    if (!absl::GetFlag(FLAGS_bank).empty()) {
      absl::StatusOr<v1::Bank> existing = server.GetBank(bank);
      if (existing.ok()) {
        // Only a twin of the in-process bank makes the comparison fair: the
        // same images, the default configuration.
        const v1::BankConfig& config = existing->config();
        if (config.dim() != dim ||
            existing->pattern_count() != static_cast<uint64_t>(images->count) ||
            config.similarity() != v1::SIMILARITY_COSINE ||
            config.separation() != v1::SEPARATION_SOFTMAX ||
            config.beta() != 0.0f) {
          return absl::FailedPreconditionError(absl::StrCat(
              "--bank=", bank, ": expected ", images->count,
              " patterns of dim ", dim,
              " with the default configuration (cosine, softmax, automatic "
              "beta), got ",
              existing->pattern_count(), " of dim ", config.dim(),
              "; delete it or pick another name"));
        }
        std::printf("%-10s reusing bank %s (%llu patterns), kept at exit\n",
                    "store", bank.c_str(),
                    static_cast<unsigned long long>(existing->pattern_count()));
        HOPFIELD_RETURN_IF_ERROR(wait_for_refresh(server));
        *loaded = true;
        return absl::OkStatus();
      }
      if (existing.status().code() != absl::StatusCode::kNotFound) {
        return existing.status();
      }
    }
    v1::BankConfig config;
    config.set_dim(static_cast<uint32_t>(dim));
    absl::StatusOr<v1::Bank> created = server.CreateBank(bank, config);
    if (!created.ok()) return created.status();
    const Clock::time_point t0 = Clock::now();
    // Messages of --batch patterns: the StoreStream the CLI would send.
    client::ClientOptions store_options = server_options;
    store_options.max_message_bytes = static_cast<int>(
        std::max<size_t>(1024, static_cast<size_t>(absl::GetFlag(FLAGS_batch)) *
                                   (dim * 4 + 16) * 4 / 3));
    client::MemoryClient store_client(store_options);
    absl::StatusOr<std::vector<uint64_t>> ids =
        store_client.Store(bank, dim, images->pixels);
    if (!ids.ok()) {
      (void)server.DeleteBank(bank);  // never leave a partial bank behind
      return ids.status();
    }
    const double seconds =
        std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf(
        "%-10s patterns=%zu seconds=%.2f patterns_per_second=%.0f (batch %d)\n",
        "store", ids->size(), seconds,
        static_cast<double>(ids->size()) / seconds, absl::GetFlag(FLAGS_batch));
    std::fflush(stdout);
    HOPFIELD_RETURN_IF_ERROR(wait_for_refresh(server));
    std::printf(
        "%-10s separation statistics exact %.2f s after the store began\n",
        "refresh", std::chrono::duration<double>(Clock::now() - t0).count());
    std::fflush(stdout);
    *loaded = true;
    return absl::OkStatus();
  };
  auto load_bank = [&] { return load_into(client, options, &bank_loaded); };
  // The bank into --target's server and into `other`'s (paired scenarios);
  // false (after saying why) when either fails.
  auto load_both = [&](client::MemoryClient& other,
                       const client::ClientOptions& other_options) {
    auto load = [&](client::MemoryClient& target,
                    const client::ClientOptions& target_options, bool* loaded) {
      if (absl::Status s = load_into(target, target_options, loaded); !s.ok()) {
        std::fprintf(stderr, "store into %s: %s\n",
                     target_options.target.c_str(), s.ToString().c_str());
        return false;
      }
      return true;
    };
    bool other_loaded = false;
    return load(client, options, &bank_loaded) &&
           load(other, other_options, &other_loaded);
  };

  // The in-process twin of the server's bank, built on first use.
  std::unique_ptr<MemoryBank> local;
  auto local_bank = [&]() -> const MemoryBank& {
    if (local != nullptr) return *local;
    BankOptions bank_options;
    bank_options.dim = static_cast<uint32_t>(dim);
    local = MemoryBank::Create("inprocess", bank_options).value();
    for (size_t first = 0; first < static_cast<size_t>(images->count);
         first += 1000) {
      const size_t count =
          std::min<size_t>(1000, static_cast<size_t>(images->count) - first);
      std::vector<PatternId> ids(count);
      for (size_t r = 0; r < count; ++r) ids[r] = first + r + 1;
      (void)local->Add(ids, absl::MakeConstSpan(images->pixels)
                                .subspan(first * dim, count * dim));
    }
    return *local;
  };
  v1::RetrieveOptions remote_options;
  remote_options.set_omit_pattern(true);
  RetrieveOptions local_options;
  local_options.omit_pattern = true;
  const std::string search = absl::GetFlag(FLAGS_search);
  if (search == "exact") {
    remote_options.set_search(v1::SEARCH_MODE_EXACT);
    local_options.search = SearchMode::kExact;
  } else if (search == "approximate") {
    remote_options.set_search(v1::SEARCH_MODE_APPROXIMATE);
    local_options.search = SearchMode::kApproximate;
  } else if (search != "auto") {
    std::cerr << "--search must be auto, exact or approximate, got " << search
              << "\n";
    return 2;
  }
  auto remote_retrieve = [&](uint64_t i) {
    return client.Retrieve(bank, dim, query(i), remote_options).status();
  };
  auto local_retrieve = [&](uint64_t i) {
    return Retriever::Retrieve(local_bank(), query(i), local_options).status();
  };

  for (const std::string& scenario : scenarios) {
    if (scenario == "store") {
      if (absl::Status s = load_bank(); !s.ok()) {
        std::fprintf(stderr, "store: %s\n", s.ToString().c_str());
        return 1;
      }
    } else if (scenario == "ping") {
      const auto bytes =
          static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes));
      Report report =
          RunLoad("ping", [&](int, uint64_t) { return client.Ping(bytes); });
      Print(report);
    } else if (scenario == "retrieve") {
      if (absl::Status s = load_bank(); !s.ok()) {
        std::fprintf(stderr, "store: %s\n", s.ToString().c_str());
        return 1;
      }
      Report report = RunLoad("retrieve", [&](int c, uint64_t i) {
        return remote_retrieve(i + static_cast<uint64_t>(c) * 7919);
      });
      Print(report);
    } else if (scenario == "inprocess") {
      (void)local_bank();
      Report report = RunLoad("inprocess", [&](int c, uint64_t i) {
        return local_retrieve(i + static_cast<uint64_t>(c) * 7919);
      });
      Print(report);
    } else if (scenario == "compare") {
      if (absl::Status s = load_bank(); !s.ok()) {
        std::fprintf(stderr, "store: %s\n", s.ToString().c_str());
        return 1;
      }
      (void)local_bank();
      Compare(
          [&] {
            return client.Ping(
                static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes)));
          },
          remote_retrieve, local_retrieve);
    } else if (scenario == "mixed") {
      if (absl::Status s = load_bank(); !s.ok()) {
        std::fprintf(stderr, "store: %s\n", s.ToString().c_str());
        return 1;
      }
      // The query pool repeated, so that a window of --heavy_queries rows
      // may start at any of its first kQueries rows.
      const size_t pool = kQueries;
      const size_t rows =
          static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_heavy_queries))) +
          pool - 1;
      std::vector<float> heavy_rows;
      heavy_rows.reserve(rows * dim);
      for (size_t r = 0; r < rows; ++r) {
        const absl::Span<const float> row = query(r);
        heavy_rows.insert(heavy_rows.end(), row.begin(), row.end());
      }
      Mixed(options, bank, dim, heavy_rows, pool, remote_options);
    } else if (scenario == "metrics") {
      client::ClientOptions other_options = options;
      other_options.target = absl::GetFlag(FLAGS_compare_target);
      if (other_options.target.empty()) {
        std::fprintf(stderr, "metrics: needs --compare_target\n");
        return 2;
      }
      client::MemoryClient other(other_options);
      if (!load_both(other, other_options)) return 1;
      auto other_retrieve = [&](uint64_t i) {
        return other.Retrieve(bank, dim, query(i), remote_options).status();
      };
      CompareServers(remote_retrieve, other_retrieve);
      if (!keep_bank) (void)other.DeleteBank(bank);
    } else if (scenario == "tls") {
      // --target over TLS (the --tls_* flags) against --compare_target in
      // plaintext, each holding the same bank: Ping and Retrieve paired.
      // Without TLS flags but with --api_key, the same pairs measure the
      // key check instead (a plaintext server with keys against one
      // without).
      client::ClientOptions plain_options = options;
      plain_options.target = absl::GetFlag(FLAGS_compare_target);
      plain_options.tls = false;
      plain_options.tls_ca_file.clear();
      plain_options.tls_cert_file.clear();
      plain_options.tls_key_file.clear();
      plain_options.api_key.clear();
      if (plain_options.target.empty() ||
          (!options.UsesTls() && options.api_key.empty())) {
        std::fprintf(stderr,
                     "tls: needs --compare_target and --tls_ca_file or "
                     "--api_key\n");
        return 2;
      }
      const bool tls = options.UsesTls();
      client::MemoryClient plain(plain_options);
      if (!load_both(plain, plain_options)) return 1;
      const auto bytes =
          static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes));
      CompareServers([&](uint64_t) { return client.Ping(bytes); },
                     [&](uint64_t) { return plain.Ping(bytes); },
                     tls ? "tls_ping" : "key_ping",
                     tls ? "ping_tls" : "ping_key", "ping_plain");
      CompareServers(
          remote_retrieve,
          [&](uint64_t i) {
            return plain.Retrieve(bank, dim, query(i), remote_options).status();
          },
          tls ? "tls_retr" : "key_retr", tls ? "retr_tls" : "retr_key",
          "retr_plain");
      if (!keep_bank) (void)plain.DeleteBank(bank);
    } else if (scenario == "soak") {
      SoakOptions soak;
      soak.writer = options;
      soak.writer.timeout = absl::Seconds(60);
      soak.reader = soak.writer;
      soak.reader.api_key = absl::GetFlag(FLAGS_read_only_api_key);
      soak.bank = absl::StrCat(bank, "-soak");
      soak.writers = absl::GetFlag(FLAGS_soak_writers);
      soak.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_seconds));
      soak.dim =
          static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_soak_dim)));
      soak.working_set = static_cast<size_t>(
          std::max(16, absl::GetFlag(FLAGS_soak_working_set)));
      soak.train_every = absl::Seconds(absl::GetFlag(FLAGS_soak_train_seconds));
      soak.settle_timeout =
          absl::Seconds(absl::GetFlag(FLAGS_soak_settle_seconds));
      soak.server_pid = absl::GetFlag(FLAGS_server_pid);
      soak.p99_bound_ms = absl::GetFlag(FLAGS_soak_p99_ms);
      soak.max_rss_growth = absl::GetFlag(FLAGS_soak_max_rss_growth);
      if (absl::Status s = RunSoak(soak); !s.ok()) {
        std::fprintf(stderr, "soak: %s\n", s.ToString().c_str());
        return 1;
      }
    } else if (scenario == "ingest2") {
      if (absl::Status s =
              IngestTwo(client, options,
                        {absl::StrCat(bank, "-a"), absl::StrCat(bank, "-b")},
                        keep_bank, dim, images->pixels);
          !s.ok()) {
        std::fprintf(stderr, "ingest2: %s\n", s.ToString().c_str());
        return 1;
      }
    } else {
      std::fprintf(stderr, "unknown scenario \"%s\"\n", scenario.c_str());
      return 2;
    }
  }
  if (bank_loaded && !keep_bank) (void)client.DeleteBank(bank);
  return 0;
}

}  // namespace
}  // namespace hopfield::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "load generator for hopfieldd (see the header of load_generator.cc)");
  absl::ParseCommandLine(argc, argv);
  return hopfield::bench::Main();
}
