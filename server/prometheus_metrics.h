// File: prometheus_metrics.h
//
// PrometheusMetrics: every metric hopfieldd exports (api.md "Metrics" plus
// the additions listed in the README's "Monitoring" section), on a
// prometheus::Registry that a prometheus::Exposer serves at /metrics.
//
// Three channels feed it (house-style §2.8):
//   1. per-call results, recorded by MemoryService when a call finishes
//      (RecordRpc, RecordRetrievals, RecordTrain): the retrieval hot loop
//      makes no metrics call and takes no metrics lock;
//   2. core's background events through the MetricsSink interface (refresher
//      turns, banks loaded at start-up, storage syncs);
//   3. state pulled at scrape time (SetSources): per-bank gauges from the
//      registry, the memory budget, the worker pool, connections, process
//      statistics from /proc. A deleted bank is absent from the next scrape:
//      its gauges are never stored, and its counters are removed by
//      BankDeleted and, for a call that finished after the deletion, by the
//      scrape itself (series of banks the registry no longer holds). Each
//      bank the registry holds has its counters from the first scrape on,
//      at 0 before its first event, so rate() and increase() see that event.
//
//   auto metrics = std::make_shared<PrometheusMetrics>();
//   metrics->SetSources({...});
//   exposer.RegisterCollectable(metrics->collectable());
//
// Thread-safe: every method may be called from any thread at once.
#ifndef HOPFIELD_SERVER_PROMETHEUS_METRICS_H_
#define HOPFIELD_SERVER_PROMETHEUS_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

#include "core/bank_registry.h"
#include "core/memory_budget.h"
#include "core/metrics_sink.h"
#include "core/retriever.h"
#include "core/worker_pool.h"

namespace hopfield::server {

// The RPC methods hopfieldd serves (the `method` label), in a fixed order.
inline constexpr std::array<absl::string_view, 12> kRpcMethods = {
    "CreateBank",  "GetBank", "ListBanks", "DeleteBank", "Store", "StoreStream",
    "GetPatterns", "Forget",  "Retrieve",  "Train",      "Ping",  "Backup"};

// Where scrape-time state comes from. Every source may be null (then its
// metrics are not exported); each must outlive the scrapes, i.e. stay valid
// until the Exposer serving this registry is destroyed.
struct MetricsSources {
  const BankRegistry* registry = nullptr;
  const MemoryBudget* budget = nullptr;
  const WorkerPool* pool = nullptr;
  // Calls started and not finished (MemoryService::in_flight).
  std::function<uint64_t()> in_flight;
  // Connections handed to gRPC, and refused (ConnectionAcceptorStats).
  std::function<uint64_t()> connections_accepted;
  std::function<uint64_t()> connections_rejected;
  // The storage's latched failure (RocksDbStorage::failure): not OK once a
  // log write or sync failed and writes are refused.
  std::function<absl::Status()> storage_failure;
};

// What Train's outcome was (the `outcome` label of hopfield_train_runs_total).
enum class TrainOutcome { kAccepted, kRejected, kFailed };

class PrometheusMetrics final : public MetricsSink {
 public:
  // Creates every family. Throws std::invalid_argument on a bad metric name
  // (a programming error: caught by the unit test).
  PrometheusMetrics();
  ~PrometheusMetrics() override;
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  // What an Exposer serves: the families above plus the scrape-time ones.
  std::shared_ptr<prometheus::Collectable> collectable() const {
    return collectable_;
  }

  // Sets the scrape-time sources (once, before the first scrape matters;
  // a scrape before it exports only the recorded families).
  void SetSources(MetricsSources sources);

  // The start-up's load (hopfield_restart_seconds, _banks, _patterns);
  // exported from the first call on.
  void SetStartup(absl::Duration took, uint64_t banks, uint64_t patterns);

  // One finished call: hopfield_rpc_duration_seconds{method, code}.
  // `method` must be one of kRpcMethods (others are dropped).
  void RecordRpc(absl::string_view method, absl::StatusCode code,
                 absl::Duration took);

  // What one Retrieve's answers add to their bank's series: iterations
  // (counts per histogram bucket and their sum), metastable, fallbacks,
  // approximate answers, patterns scored. Summarize is cheap and touches
  // only the results, so a handler can take it while they are in cache and
  // record it after the reply has gone.
  struct RetrievalSummary {
    std::vector<double> iteration_buckets;  // one per bound, then +Inf
    double iterations = 0.0;
    uint64_t metastable = 0;
    uint64_t fallback = 0;
    uint64_t approximate = 0;
    uint64_t scored = 0;
  };
  static RetrievalSummary Summarize(absl::Span<const RetrieveResult> results);
  void RecordRetrievals(absl::string_view bank,
                        const RetrievalSummary& summary);
  void RecordRetrievals(absl::string_view bank,
                        absl::Span<const RetrieveResult> results) {
    RecordRetrievals(bank, Summarize(results));
  }

  // One Train run on `bank` that reached the engine.
  void RecordTrain(absl::string_view bank, TrainOutcome outcome);

  // Removes `bank`'s series (DeleteBank succeeded).
  void BankDeleted(absl::string_view bank);

  // MetricsSink.
  void OnRefresh(absl::string_view bank, RefreshKind kind, uint64_t patterns,
                 absl::Duration took) override;
  void OnBankLoaded(absl::string_view bank, uint64_t patterns,
                    absl::Duration took, const absl::Status& status) override;
  void OnStorageSync(absl::Duration took, bool ok) override;

 private:
  class Collector;
  struct BankSeries;

  // The (method, code) series, created on first use; null for a method
  // not in kRpcMethods.
  prometheus::Histogram* RpcSeries(absl::string_view method,
                                   absl::StatusCode code);
  // `bank`'s series, created on first use. REQUIRES: banks_mu_ held.
  BankSeries& SeriesLocked(absl::string_view bank);
  void RemoveSeriesLocked(BankSeries& series);
  // At scrape: creates the series of every bank the registry holds and
  // removes those of banks it no longer holds (only series that existed
  // before the registry was listed: a bank created meanwhile keeps its).
  void SyncBankSeries();

  const std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> collectable_;  // a Collector

  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Histogram>& retrieve_iterations_;
  prometheus::Family<prometheus::Counter>& retrieve_metastable_;
  prometheus::Family<prometheus::Counter>& retrieve_fallback_;
  prometheus::Family<prometheus::Counter>& retrieve_approximate_;
  prometheus::Family<prometheus::Counter>& retrieve_scored_;
  prometheus::Family<prometheus::Counter>& train_runs_;
  prometheus::Family<prometheus::Histogram>& refresh_seconds_;
  prometheus::Family<prometheus::Counter>& refresh_patterns_;
  prometheus::Family<prometheus::Histogram>& sync_seconds_;
  prometheus::Family<prometheus::Counter>& sync_failures_;
  prometheus::Family<prometheus::Counter>& load_failures_;
  prometheus::Family<prometheus::Gauge>& build_info_;

  // Per (method, code): created on first use (gRPC has 17 codes).
  static constexpr size_t kCodes = 17;
  std::array<std::atomic<prometheus::Histogram*>, kRpcMethods.size() * kCodes>
      rpc_series_{};
  std::mutex rpc_mu_;  // serialises creation of rpc_series_ entries

  std::mutex banks_mu_;
  // guarded by banks_mu_: the series by bank, and the scrape generation
  // (SyncBankSeries) a new series is stamped with.
  absl::flat_hash_map<std::string, std::unique_ptr<BankSeries>> banks_;
  uint64_t generation_ = 0;

  std::array<prometheus::Histogram*, 2> refresh_seconds_series_{};
  std::array<prometheus::Counter*, 2> refresh_patterns_series_{};
  prometheus::Histogram* sync_seconds_series_ = nullptr;
  prometheus::Counter* sync_failures_series_ = nullptr;
  prometheus::Counter* load_failures_series_ = nullptr;

  struct Startup {
    double seconds = 0.0;
    uint64_t banks = 0;
    uint64_t patterns = 0;
  };
  mutable std::mutex sources_mu_;
  MetricsSources sources_;          // guarded by sources_mu_
  std::optional<Startup> startup_;  // guarded by sources_mu_
};

// The buckets of every latency histogram: 10 µs to 10 s, 1-2.5-5 per decade.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_PROMETHEUS_METRICS_H_
