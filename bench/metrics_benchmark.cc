// What recording a call costs (PrometheusMetrics, server/prometheus_metrics.h)
// and what a scrape costs: the per-call figures bound the metrics' share of
// a Retrieve from above, independent of the machine's noise (the end-to-end
// A/B is load_generator's `metrics` scenario; both in bench/README.md).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "prometheus/text_serializer.h"

#include "core/bank_registry.h"
#include "core/retriever.h"
#include "server/prometheus_metrics.h"

namespace hopfield::server {
namespace {

// One finished Retrieve as MemoryService records it: the latency by method
// and code, then the answer's work for its bank (of `banks` in the map).
void BM_RecordRetrieveCall(benchmark::State& state) {
  const auto banks = static_cast<int>(state.range(0));
  PrometheusMetrics metrics;
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(banks));
  for (int b = 0; b < banks; ++b) names.push_back(absl::StrCat("bank-", b));
  RetrieveResult result;
  result.iterations = 3;
  result.approximate = true;
  result.patterns_scored = 400;
  size_t i = 0;
  for (auto _ : state) {
    metrics.RecordRpc("Retrieve", absl::StatusCode::kOk,
                      absl::Microseconds(250));
    metrics.RecordRetrievals(names[i++ % names.size()], {&result, 1});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordRetrieveCall)->ArgName("banks")->Arg(1)->Arg(100);

// The same from two threads at once (a 2-core server's workers).
void BM_RecordRetrieveCallContended(benchmark::State& state) {
  static PrometheusMetrics* metrics = nullptr;
  if (state.thread_index() == 0) metrics = new PrometheusMetrics;
  RetrieveResult result;
  result.iterations = 3;
  for (auto _ : state) {
    metrics->RecordRpc("Retrieve", absl::StatusCode::kOk,
                       absl::Microseconds(250));
    metrics->RecordRetrievals("bank", {&result, 1});
  }
  if (state.thread_index() == 0) {
    delete metrics;
    metrics = nullptr;
  }
}
BENCHMARK(BM_RecordRetrieveCallContended)->Threads(2)->UseRealTime();

// A whole scrape (collect and serialise) with `banks` banks of 1,000
// patterns each.
void BM_Scrape(benchmark::State& state) {
  const auto banks = static_cast<int>(state.range(0));
  BankRegistry registry;
  RetrieveResult result;
  result.iterations = 2;
  PrometheusMetrics metrics;
  std::vector<float> values(size_t{1000} * 16);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>((i * 7919) % 1009) - 500.0f;
  }
  for (int b = 0; b < banks; ++b) {
    BankOptions options;
    options.dim = 16;
    auto bank = registry.Create(absl::StrCat("bank-", b), options);
    if (!bank.ok() ||
        !(*bank)->Add(std::vector<PatternId>(1000, 0), values).ok()) {
      state.SkipWithError("cannot build the banks");
      return;
    }
    metrics.RecordRetrievals((*bank)->name(), {&result, 1});
  }
  MetricsSources sources;
  sources.registry = &registry;
  metrics.SetSources(sources);
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string text = prometheus::TextSerializer().Serialize(
        metrics.collectable()->Collect());
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape)->ArgName("banks")->Arg(1)->Arg(100)->Unit(
    benchmark::kMillisecond);

}  // namespace
}  // namespace hopfield::server

BENCHMARK_MAIN();
