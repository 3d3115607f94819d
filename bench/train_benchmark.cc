// Learned feature maps on Fashion-MNIST (60,000 x 784 by default; set
// HOPFIELD_BENCH_PATTERNS to shrink the bank):
//
//   BM_Train                 TrainBank with D_Φ = 256 and the defaults (300
//                            Adam steps on minibatches of 1,024 with hard
//                            pairs, the validation gate, publishing the keys):
//                            one run, its seconds and Δ_min before/after
//   BM_RetrieveStep/<map>    one single-query iteration (softmax, β = 32,
//                            tolerance 0) through the identity map (0) and a
//                            learned 256 x 784 map (1) on the same patterns:
//                            the learned one streams the keys for scores and
//                            the patterns for the output
//
// Targets (issue 14): Train under 60 s on 2 cores; a learned-map iteration
// within 1.5x of the identity's.
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"

#include "bench/bench_data.h"
#include "core/bank_training.h"
#include "core/feature_map.h"
#include "core/retriever.h"

namespace hopfield::bench {
namespace {

constexpr uint32_t kFeatureDim = 256;

std::unique_ptr<MemoryBank> CopyBank(const BenchData& data) {
  BankOptions options;
  options.dim = static_cast<uint32_t>(data.dim);
  options.beta = 32.0f;
  auto bank = MemoryBank::Create("train_bench", options).value();
  std::vector<PatternId> ids(static_cast<size_t>(data.patterns));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
  (void)bank->Add(ids, data.pixels).value();
  return bank;
}

void BM_Train(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<MemoryBank> bank = CopyBank(data);
    state.ResumeTiming();
    BankTrainOptions options;
    options.config.feature_dim = kFeatureDim;
    absl::StatusOr<TrainReport> report = TrainBank(*bank, options);
    if (!report.ok()) {
      state.SkipWithError(report.status().ToString().c_str());
      break;
    }
    state.counters["min_sep_before"] = report->min_separation_before;
    state.counters["min_sep_after"] = report->min_separation_after;
    state.counters["val_err_before"] = report->validation_error_before;
    state.counters["val_err_after"] = report->validation_error_after;
    state.counters["accepted"] = report->accepted ? 1 : 0;
    state.counters["train_seconds"] = report->seconds;
  }
}
BENCHMARK(BM_Train)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

void BM_RetrieveStep(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  static std::unique_ptr<MemoryBank> bank;
  if (!bank) bank = CopyBank(data);
  const bool learned = state.range(0) == 1;
  if (learned) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(
        0.0f, 1.0f / std::sqrt(static_cast<float>(data.dim)));
    Eigen::MatrixXf w(kFeatureDim, data.dim);
    for (Eigen::Index j = 0; j < w.cols(); ++j) {
      for (Eigen::Index i = 0; i < w.rows(); ++i) w(i, j) = normal(rng);
    }
    const Eigen::Map<const Eigen::MatrixXf> x(data.pixels.data(), data.dim,
                                              data.patterns);
    auto map = FeatureMap::Create(x.rowwise().mean(), w, 1, {}).value();
    (void)bank->SetFeatureMap(map);
  } else {
    (void)bank->SetFeatureMap(FeatureMap::Identity(data.dim));
  }
  RetrieveOptions options;
  options.max_iterations = 1;
  options.tolerance = 0.0f;
  options.omit_pattern = true;
  size_t q = 0;
  for (auto _ : state) {
    const auto query = absl::MakeConstSpan(data.queries)
                           .subspan(q * static_cast<size_t>(data.dim),
                                    static_cast<size_t>(data.dim));
    absl::StatusOr<RetrieveResult> result =
        Retriever::Retrieve(*bank, query, options);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(result->nearest_id);
    q = (q + 1) % kQueries;
  }
  state.SetLabel(learned ? "learned 256x784" : "identity");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RetrieveStep)
    ->ArgName("map")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hopfield::bench

BENCHMARK_MAIN();
