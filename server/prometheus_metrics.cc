#include "server/prometheus_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace hopfield::server {

// Set by CMake (server/CMakeLists.txt); "unknown" outside a build.
#ifndef HOPFIELD_VERSION
#define HOPFIELD_VERSION "unknown"
#endif
#ifndef HOPFIELD_COMMIT
#define HOPFIELD_COMMIT "unknown"
#endif
#ifndef HOPFIELD_BUILD_TYPE
#define HOPFIELD_BUILD_TYPE "unknown"
#endif

namespace {

// Iterations go up to max_iterations (default 100, at most 10,000).
const prometheus::Histogram::BucketBoundaries& IterationBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100, 200, 500, 1000};
  return *kBuckets;
}

prometheus::ClientMetric::Label Label(std::string name, std::string value) {
  prometheus::ClientMetric::Label label;
  label.name = std::move(name);
  label.value = std::move(value);
  return label;
}

// A family of one type built at scrape time.
prometheus::MetricFamily Family(std::string name, std::string help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

void AddValue(prometheus::MetricFamily* family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family->type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family->metric.push_back(std::move(metric));
}

// One value, no labels.
prometheus::MetricFamily Single(std::string name, std::string help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily family =
      Family(std::move(name), std::move(help), type);
  AddValue(&family, value);
  return family;
}

// This process, from /proc (Linux): the usual process_* families.
void CollectProcess(std::vector<prometheus::MetricFamily>* out) {
  const int64_t ticks = sysconf(_SC_CLK_TCK);
  const int64_t page = sysconf(_SC_PAGESIZE);
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold
  // spaces: the first is field 3 (state).
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && ticks > 0 && page > 0) {
    std::vector<std::string> fields = absl::StrSplit(
        absl::string_view(stat).substr(paren + 2), ' ', absl::SkipEmpty());
    auto field = [&](size_t number) -> double {
      const size_t index = number - 3;
      return index < fields.size() ? std::strtod(fields[index].c_str(), nullptr)
                                   : 0.0;
    };
    out->push_back(Single(
        "process_cpu_seconds_total", "User and system CPU time spent, seconds.",
        prometheus::MetricType::Counter,
        (field(14) + field(15)) / static_cast<double>(ticks)));
    out->push_back(Single("process_threads", "Threads of the process.",
                          prometheus::MetricType::Gauge, field(20)));
    out->push_back(Single("process_virtual_memory_bytes",
                          "Virtual memory size, bytes.",
                          prometheus::MetricType::Gauge, field(23)));
    out->push_back(Single(
        "process_resident_memory_bytes", "Resident memory size, bytes.",
        prometheus::MetricType::Gauge, field(24) * static_cast<double>(page)));
    // Start time: boot time plus the start in ticks since boot.
    std::ifstream proc_stat("/proc/stat");
    std::string key;
    double boot = 0.0;
    while (proc_stat >> key) {
      if (key == "btime") {
        proc_stat >> boot;
        break;
      }
    }
    if (boot > 0.0) {
      out->push_back(Single("process_start_time_seconds",
                            "Start time of the process since the Unix epoch, "
                            "seconds.",
                            prometheus::MetricType::Gauge,
                            boot + field(22) / static_cast<double>(ticks)));
    }
  }
  uint64_t open = 0;
  if (DIR* dir = opendir("/proc/self/fd"); dir != nullptr) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++open;
    }
    closedir(dir);
    if (open > 0) --open;  // the descriptor of this very listing
  }
  out->push_back(Single("process_open_fds", "Open file descriptors.",
                        prometheus::MetricType::Gauge,
                        static_cast<double>(open)));
  struct rlimit limit = {};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out->push_back(Single("process_max_fds", "The open-file limit (soft).",
                          prometheus::MetricType::Gauge,
                          limit.rlim_cur == RLIM_INFINITY
                              ? 0.0
                              : static_cast<double>(limit.rlim_cur)));
  }
}

}  // namespace

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
          2.5e-2, 5e-2,   0.1,  0.25, 0.5,    1.0,  2.5,  5.0,    10.0};
  return *kBuckets;
}

// Per-bank series, created together on a bank's first recorded event.
struct PrometheusMetrics::BankSeries {
  std::string name;
  uint64_t generation = 0;  // PrometheusMetrics::generation_ at creation
  prometheus::Histogram* iterations = nullptr;
  prometheus::Counter* metastable = nullptr;
  prometheus::Counter* fallback = nullptr;
  prometheus::Counter* approximate = nullptr;
  prometheus::Counter* scored = nullptr;
  std::array<prometheus::Counter*, 3> train{};  // by TrainOutcome
};

// Serves the registry's families plus the ones built at scrape time.
class PrometheusMetrics::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(PrometheusMetrics* metrics) : metrics_(metrics) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    metrics_->SyncBankSeries();
    std::vector<prometheus::MetricFamily> out = metrics_->registry_->Collect();
    MetricsSources sources;
    std::optional<Startup> startup;
    {
      const std::lock_guard<std::mutex> lock(metrics_->sources_mu_);
      sources = metrics_->sources_;
      startup = metrics_->startup_;
    }
    CollectProcess(&out);
    using prometheus::MetricType;
    if (startup.has_value()) {
      out.push_back(Single("hopfield_restart_seconds",
                           "Seconds the last start took to load the data "
                           "directory (listening, NOT_SERVING meanwhile).",
                           MetricType::Gauge, startup->seconds));
      out.push_back(Single("hopfield_restart_banks",
                           "Banks loaded at the last start.", MetricType::Gauge,
                           static_cast<double>(startup->banks)));
      out.push_back(Single(
          "hopfield_restart_patterns", "Patterns loaded at the last start.",
          MetricType::Gauge, static_cast<double>(startup->patterns)));
    }
    if (sources.registry != nullptr) {
      CollectBanks(*sources.registry, &out);
    }
    if (sources.budget != nullptr) {
      out.push_back(Single("hopfield_memory_budget_bytes",
                           "The memory budget (--memory_budget_bytes): the "
                           "most banks and in-flight requests may hold.",
                           MetricType::Gauge,
                           static_cast<double>(sources.budget->limit())));
      out.push_back(Single("hopfield_memory_budget_used_bytes",
                           "Bytes reserved from the memory budget now.",
                           MetricType::Gauge,
                           static_cast<double>(sources.budget->used())));
      out.push_back(Single("hopfield_memory_budget_peak_bytes",
                           "Most bytes reserved from the memory budget at "
                           "once since the start.",
                           MetricType::Gauge,
                           static_cast<double>(sources.budget->peak())));
    }
    if (sources.pool != nullptr) {
      const WorkerPoolStats pool = sources.pool->Stats();
      out.push_back(Single("hopfield_worker_threads",
                           "Threads of the worker pool (--worker_threads).",
                           MetricType::Gauge,
                           static_cast<double>(pool.threads)));
      out.push_back(Single("hopfield_worker_queue_depth",
                           "Heavy calls waiting for a worker thread.",
                           MetricType::Gauge,
                           static_cast<double>(pool.queued)));
      out.push_back(Single("hopfield_worker_busy",
                           "Worker threads running a call.", MetricType::Gauge,
                           static_cast<double>(pool.running)));
      out.push_back(Single("hopfield_worker_rejected_total",
                           "Heavy calls refused with RESOURCE_EXHAUSTED "
                           "because the worker queue was full.",
                           MetricType::Counter,
                           static_cast<double>(pool.rejected)));
    }
    if (sources.in_flight) {
      out.push_back(Single(
          "hopfield_rpc_in_flight", "Calls started and not yet finished.",
          MetricType::Gauge, static_cast<double>(sources.in_flight())));
    }
    if (sources.connections_accepted) {
      out.push_back(
          Single("hopfield_connections_accepted_total",
                 "Client connections handed to gRPC.", MetricType::Counter,
                 static_cast<double>(sources.connections_accepted())));
    }
    if (sources.storage_failure) {
      out.push_back(Single(
          "hopfield_storage_failed",
          "1 once a write or sync of the data directory failed (disk full, "
          "I/O error): writes are refused until the server is restarted.",
          MetricType::Gauge, sources.storage_failure().ok() ? 0.0 : 1.0));
    }
    if (sources.connections_rejected) {
      out.push_back(
          Single("hopfield_connections_rejected_total",
                 "Client connections reset at once (over "
                 "--max_connections or out of descriptors).",
                 MetricType::Counter,
                 static_cast<double>(sources.connections_rejected())));
    }
    return out;
  }

 private:
  static void CollectBanks(const BankRegistry& registry,
                           std::vector<prometheus::MetricFamily>* out) {
    using prometheus::MetricType;
    auto patterns =
        Family("hopfield_bank_patterns", "Patterns stored.", MetricType::Gauge);
    auto memory = Family("hopfield_bank_memory_bytes",
                         "Bytes held for the bank (patterns, features, "
                         "statistics, index).",
                         MetricType::Gauge);
    auto separation = Family(
        "hopfield_bank_min_separation",
        "Delta_min in feature space (cosine): the smallest gap between a "
        "pattern's self-similarity and its nearest other pattern (absent "
        "until two patterns have statistics).",
        MetricType::Gauge);
    auto utilization = Family(
        "hopfield_bank_capacity_utilization",
        "Stored patterns / the capacity the feature dimension and separation "
        "support; above 1 retrieval errors are expected.",
        MetricType::Gauge);
    auto pending = Family("hopfield_bank_separation_pending",
                          "Patterns whose separation statistics await the "
                          "background refresh.",
                          MetricType::Gauge);
    auto index_size =
        Family("hopfield_bank_index_size",
               "Patterns in the bank's search index.", MetricType::Gauge);
    auto index_pending = Family("hopfield_bank_index_pending",
                                "Patterns not yet in the search index "
                                "(scored exactly until they are).",
                                MetricType::Gauge);
    auto beta = Family("hopfield_bank_effective_beta",
                       "The inverse temperature a retrieval with the bank's "
                       "defaults uses.",
                       MetricType::Gauge);
    auto version = Family("hopfield_bank_feature_map_version",
                          "The bank's feature map version (0 = identity).",
                          MetricType::Gauge);
    const std::vector<std::shared_ptr<MemoryBank>> banks = registry.List();
    for (const std::shared_ptr<MemoryBank>& bank : banks) {
      const BankStats stats = bank->Stats(MemoryBank::StatsDetail::kSummary);
      const std::vector<prometheus::ClientMetric::Label> labels = {
          Label("bank", bank->name())};
      AddValue(&patterns, static_cast<double>(stats.pattern_count), labels);
      AddValue(&memory, static_cast<double>(stats.memory_bytes), labels);
      // Unknown (fewer than two patterns with statistics): no sample, so
      // neither a graph nor an alert mistakes it for near-duplicates.
      if (stats.min_separation.has_value()) {
        AddValue(&separation, *stats.min_separation, labels);
      }
      AddValue(&utilization, stats.capacity_utilization, labels);
      AddValue(&pending, static_cast<double>(stats.separation_pending), labels);
      AddValue(&index_size, static_cast<double>(stats.index_size), labels);
      AddValue(&index_pending, static_cast<double>(stats.index_pending),
               labels);
      AddValue(&beta, stats.effective_beta, labels);
      AddValue(&version, stats.feature_map_version, labels);
    }
    out->push_back(Single("hopfield_banks", "Banks held.", MetricType::Gauge,
                          static_cast<double>(banks.size())));
    out->push_back(Single("hopfield_banks_failed",
                          "Banks that could not be loaded at start and "
                          "answer DATA_LOSS until restored or deleted.",
                          MetricType::Gauge,
                          static_cast<double>(registry.failed_size())));
    for (auto* family :
         {&patterns, &memory, &separation, &utilization, &pending, &index_size,
          &index_pending, &beta, &version}) {
      out->push_back(std::move(*family));
    }
  }

  PrometheusMetrics* const metrics_;
};

PrometheusMetrics::PrometheusMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      rpc_duration_(prometheus::BuildHistogram()
                        .Name("hopfield_rpc_duration_seconds")
                        .Help("Server-side latency of every RPC, by method "
                              "and status code.")
                        .Register(*registry_)),
      retrieve_iterations_(prometheus::BuildHistogram()
                               .Name("hopfield_retrieve_iterations")
                               .Help("Updates each retrieval applied to reach "
                                     "its fixed point.")
                               .Register(*registry_)),
      retrieve_metastable_(prometheus::BuildCounter()
                               .Name("hopfield_retrieve_metastable_total")
                               .Help("Retrievals that ended in a mixture of "
                                     "patterns (a metastable state).")
                               .Register(*registry_)),
      retrieve_fallback_(prometheus::BuildCounter()
                             .Name("hopfield_retrieve_fallback_total")
                             .Help("Approximate retrievals whose certificate "
                                   "failed, answered by the exact scan.")
                             .Register(*registry_)),
      retrieve_approximate_(prometheus::BuildCounter()
                                .Name("hopfield_retrieve_approximate_total")
                                .Help("Retrievals answered from the search "
                                      "index's candidates (certified).")
                                .Register(*registry_)),
      retrieve_scored_(prometheus::BuildCounter()
                           .Name("hopfield_retrieve_patterns_scored_total")
                           .Help("Pattern scores computed by retrievals (the "
                                 "work: M per state of an exact scan).")
                           .Register(*registry_)),
      train_runs_(prometheus::BuildCounter()
                      .Name("hopfield_train_runs_total")
                      .Help("Feature-map trainings by outcome: accepted "
                            "(published), rejected (the validation gate kept "
                            "the old map), failed (an error).")
                      .Register(*registry_)),
      refresh_seconds_(prometheus::BuildHistogram()
                           .Name("hopfield_refresh_duration_seconds")
                           .Help("Background refresh turns (kind separation: "
                                 "exact statistics; index: search-index "
                                 "insertions), by kind.")
                           .Register(*registry_)),
      refresh_patterns_(prometheus::BuildCounter()
                            .Name("hopfield_refresh_patterns_total")
                            .Help("Patterns processed by background refresh "
                                  "turns, by kind.")
                            .Register(*registry_)),
      sync_seconds_(prometheus::BuildHistogram()
                        .Name("hopfield_storage_sync_duration_seconds")
                        .Help("Syncs of the write-ahead log (each one makes "
                              "every write applied before it durable).")
                        .Register(*registry_)),
      sync_failures_(prometheus::BuildCounter()
                         .Name("hopfield_storage_sync_failures_total")
                         .Help("Failed log syncs (the store then refuses "
                               "writes until restarted).")
                         .Register(*registry_)),
      load_failures_(prometheus::BuildCounter()
                         .Name("hopfield_bank_load_failures_total")
                         .Help("Banks that could not be loaded at start-up "
                               "(kept aside with their error).")
                         .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("hopfield_build_info")
                      .Help("Always 1; the labels say which build runs.")
                      .Register(*registry_)) {
  collectable_ = std::make_shared<Collector>(this);
  // Every method's OK series from the start (at 0), so the first call
  // counts in rate() and the error ratio has a denominator; other codes
  // appear when they first occur.
  for (const absl::string_view method : kRpcMethods) {
    RpcSeries(method, absl::StatusCode::kOk);
  }
  for (RefreshKind kind : {RefreshKind::kSeparation, RefreshKind::kIndex}) {
    const std::string label =
        kind == RefreshKind::kSeparation ? "separation" : "index";
    const auto i = static_cast<size_t>(kind);
    refresh_seconds_series_[i] =
        &refresh_seconds_.Add({{"kind", label}}, LatencyBuckets());
    refresh_patterns_series_[i] = &refresh_patterns_.Add({{"kind", label}});
  }
  sync_seconds_series_ = &sync_seconds_.Add({}, LatencyBuckets());
  sync_failures_series_ = &sync_failures_.Add({});
  load_failures_series_ = &load_failures_.Add({});
  build_info_
      .Add({{"version", HOPFIELD_VERSION},
            {"commit", HOPFIELD_COMMIT},
            {"build_type", HOPFIELD_BUILD_TYPE}})
      .Set(1.0);
}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::SetSources(MetricsSources sources) {
  const std::lock_guard<std::mutex> lock(sources_mu_);
  sources_ = std::move(sources);
}

void PrometheusMetrics::SetStartup(absl::Duration took, uint64_t banks,
                                   uint64_t patterns) {
  const std::lock_guard<std::mutex> lock(sources_mu_);
  startup_ = Startup{absl::ToDoubleSeconds(took), banks, patterns};
}

void PrometheusMetrics::RecordRpc(absl::string_view method,
                                  absl::StatusCode code, absl::Duration took) {
  prometheus::Histogram* series = RpcSeries(method, code);
  if (series != nullptr) series->Observe(absl::ToDoubleSeconds(took));
}

prometheus::Histogram* PrometheusMetrics::RpcSeries(absl::string_view method,
                                                    absl::StatusCode code) {
  const auto* const it =
      std::find(kRpcMethods.begin(), kRpcMethods.end(), method);
  const auto code_index = static_cast<size_t>(code);
  if (it == kRpcMethods.end() || code_index >= kCodes) return nullptr;
  const size_t slot =
      static_cast<size_t>(it - kRpcMethods.begin()) * kCodes + code_index;
  prometheus::Histogram* series =
      rpc_series_[slot].load(std::memory_order_acquire);
  if (series == nullptr) {
    const std::lock_guard<std::mutex> lock(rpc_mu_);
    series = rpc_series_[slot].load(std::memory_order_relaxed);
    if (series == nullptr) {
      series = &rpc_duration_.Add({{"method", std::string(method)},
                                   {"code", absl::StatusCodeToString(code)}},
                                  LatencyBuckets());
      rpc_series_[slot].store(series, std::memory_order_release);
    }
  }
  return series;
}

PrometheusMetrics::BankSeries& PrometheusMetrics::SeriesLocked(
    absl::string_view bank) {
  auto [it, inserted] = banks_.try_emplace(bank);
  if (inserted) {
    auto series = std::make_unique<BankSeries>();
    series->name = std::string(bank);
    series->generation = generation_;
    const prometheus::Labels labels = {{"bank", series->name}};
    series->iterations = &retrieve_iterations_.Add(labels, IterationBuckets());
    series->metastable = &retrieve_metastable_.Add(labels);
    series->fallback = &retrieve_fallback_.Add(labels);
    series->approximate = &retrieve_approximate_.Add(labels);
    series->scored = &retrieve_scored_.Add(labels);
    const std::array<const char*, 3> outcomes = {"accepted", "rejected",
                                                 "failed"};
    for (size_t i = 0; i < outcomes.size(); ++i) {
      series->train[i] =
          &train_runs_.Add({{"bank", series->name}, {"outcome", outcomes[i]}});
    }
    it->second = std::move(series);
  }
  return *it->second;
}

void PrometheusMetrics::RemoveSeriesLocked(BankSeries& series) {
  retrieve_iterations_.Remove(series.iterations);
  retrieve_metastable_.Remove(series.metastable);
  retrieve_fallback_.Remove(series.fallback);
  retrieve_approximate_.Remove(series.approximate);
  retrieve_scored_.Remove(series.scored);
  for (prometheus::Counter* counter : series.train) train_runs_.Remove(counter);
}

PrometheusMetrics::RetrievalSummary PrometheusMetrics::Summarize(
    absl::Span<const RetrieveResult> results) {
  // Counted here, then added to the series in one step each (a batch's
  // queries do not each take the histogram's lock).
  const prometheus::Histogram::BucketBoundaries& bounds = IterationBuckets();
  RetrievalSummary summary;
  summary.iteration_buckets.assign(bounds.size() + 1, 0.0);
  for (const RetrieveResult& result : results) {
    const auto value = static_cast<double>(result.iterations);
    // The bucket Histogram::Observe picks: the first bound >= value.
    summary.iteration_buckets[static_cast<size_t>(
        std::lower_bound(bounds.begin(), bounds.end(), value) -
        bounds.begin())] += 1.0;
    summary.iterations += value;
    summary.metastable += result.metastable ? 1 : 0;
    summary.fallback += result.fell_back ? 1 : 0;
    summary.approximate += result.approximate ? 1 : 0;
    summary.scored += result.patterns_scored;
  }
  return summary;
}

void PrometheusMetrics::RecordRetrievals(absl::string_view bank,
                                         const RetrievalSummary& summary) {
  const std::lock_guard<std::mutex> lock(banks_mu_);
  BankSeries& series = SeriesLocked(bank);
  series.iterations->ObserveMultiple(summary.iteration_buckets,
                                     summary.iterations);
  if (summary.metastable > 0) {
    series.metastable->Increment(static_cast<double>(summary.metastable));
  }
  if (summary.fallback > 0) {
    series.fallback->Increment(static_cast<double>(summary.fallback));
  }
  if (summary.approximate > 0) {
    series.approximate->Increment(static_cast<double>(summary.approximate));
  }
  if (summary.scored > 0) {
    series.scored->Increment(static_cast<double>(summary.scored));
  }
}

void PrometheusMetrics::RecordTrain(absl::string_view bank,
                                    TrainOutcome outcome) {
  const std::lock_guard<std::mutex> lock(banks_mu_);
  SeriesLocked(bank).train[static_cast<size_t>(outcome)]->Increment();
}

void PrometheusMetrics::BankDeleted(absl::string_view bank) {
  const std::lock_guard<std::mutex> lock(banks_mu_);
  const auto it = banks_.find(bank);
  if (it == banks_.end()) return;
  RemoveSeriesLocked(*it->second);
  banks_.erase(it);
}

void PrometheusMetrics::SyncBankSeries() {
  const BankRegistry* registry = nullptr;
  {
    const std::lock_guard<std::mutex> lock(sources_mu_);
    registry = sources_.registry;
  }
  if (registry == nullptr) return;
  // Series created from here on carry a newer generation than `listed`.
  uint64_t listed = 0;
  {
    const std::lock_guard<std::mutex> lock(banks_mu_);
    listed = generation_++;
  }
  absl::flat_hash_set<std::string> held;
  for (const std::shared_ptr<MemoryBank>& bank : registry->List()) {
    held.insert(bank->name());
  }
  const std::lock_guard<std::mutex> lock(banks_mu_);
  for (const std::string& name : held) SeriesLocked(name);
  for (auto it = banks_.begin(); it != banks_.end();) {
    if (held.contains(it->first) || it->second->generation > listed) {
      ++it;
      continue;
    }
    RemoveSeriesLocked(*it->second);
    banks_.erase(it++);
  }
}

void PrometheusMetrics::OnRefresh(absl::string_view /*bank*/, RefreshKind kind,
                                  uint64_t patterns, absl::Duration took) {
  const auto i = static_cast<size_t>(kind);
  refresh_seconds_series_[i]->Observe(absl::ToDoubleSeconds(took));
  refresh_patterns_series_[i]->Increment(static_cast<double>(patterns));
}

void PrometheusMetrics::OnBankLoaded(absl::string_view /*bank*/,
                                     uint64_t /*patterns*/,
                                     absl::Duration /*took*/,
                                     const absl::Status& status) {
  if (!status.ok()) load_failures_series_->Increment();
}

void PrometheusMetrics::OnStorageSync(absl::Duration took, bool ok) {
  sync_seconds_series_->Observe(absl::ToDoubleSeconds(took));
  if (!ok) sync_failures_series_->Increment();
}

}  // namespace hopfield::server
