// Dense retrieval on Fashion-MNIST (60,000 x 784 by default), against plain
// Eigen baselines over the same matrix measured in the same run.
//
//   BM_ScoresMatVec               s = Ξᵀx: one pass over the bank, the
//   memory-bandwidth floor BM_TwoPassMatVec              s = Ξᵀx, then y = Ξs:
//   the "one pass for scores, one for output" reference
//   BM_Retrieve/<sep>/<iters>/<β> one query, max_iterations = iters, tolerance
//   0 (β 0 = automatic) BM_ScoresGemm/<threads>       S = ΞᵀQ for 64 queries,
//   split over threads: exact search as FAISS does it
//   BM_RetrieveBatch/<threads>/<β> 64 queries, one-step retrieval
//   (max_iterations = 1), matrix products
//
// Counters: evaluations = states scored per query (= iterations, one pass
// each); recall = fraction of masked queries whose nearest_id is their source
// image. Queries are stored images with half the pixels dropped (U-Hop
// protocol). Set HOPFIELD_BENCH_PATTERNS to shrink the bank.
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "benchmark/benchmark.h"

#include "bench/bench_data.h"
#include "core/retriever.h"

namespace hopfield::bench {
namespace {

constexpr int kBatch = 64;

Eigen::Map<const Eigen::MatrixXf> Patterns(const BenchData& data) {
  return Eigen::Map<const Eigen::MatrixXf>(data.pixels.data(), data.dim,
                                           data.patterns);
}

void BM_ScoresMatVec(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  const auto patterns = Patterns(data);
  const Eigen::Map<const Eigen::VectorXf> x(data.queries.data(), data.dim);
  Eigen::VectorXf scores(data.patterns);
  for (auto _ : state) {
    scores.noalias() = patterns.transpose() * x;
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * data.patterns * data.dim * 4);
}
BENCHMARK(BM_ScoresMatVec)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TwoPassMatVec(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  const auto patterns = Patterns(data);
  const Eigen::Map<const Eigen::VectorXf> x(data.queries.data(), data.dim);
  Eigen::VectorXf scores(data.patterns);
  Eigen::VectorXf y(data.dim);
  for (auto _ : state) {
    scores.noalias() = patterns.transpose() * x;
    y.noalias() = patterns * scores;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TwoPassMatVec)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Retrieve(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  RetrieveOptions options;
  options.search =
      SearchMode::kExact;  // the dense path (approximate_benchmark)
  options.separation = static_cast<Separation>(state.range(0));
  options.max_iterations = static_cast<uint32_t>(state.range(1));
  options.beta = static_cast<float>(state.range(2));
  // Below 10 iterations the count is fixed (tolerance 0) to measure the cost
  // per iteration; the 10-iteration case runs the bank's stopping rule.
  if (options.max_iterations < 10) options.tolerance = 0.0f;
  options.omit_pattern = true;
  size_t q = 0;
  double evaluations = 0.0;
  int hits = 0;
  for (auto _ : state) {
    const auto query = absl::MakeConstSpan(data.queries)
                           .subspan(q * static_cast<size_t>(data.dim),
                                    static_cast<size_t>(data.dim));
    absl::StatusOr<RetrieveResult> result =
        Retriever::Retrieve(*data.bank, query, options);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    evaluations += static_cast<double>(result->patterns_scored) / data.patterns;
    hits += result->nearest_id == data.sources[q];
    q = (q + 1) % kQueries;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["evaluations"] =
      evaluations / static_cast<double>(state.iterations());
  state.counters["recall"] =
      static_cast<double>(hits) / static_cast<double>(state.iterations());
  state.SetLabel(std::string(SeparationName(*options.separation)));
}
BENCHMARK(BM_Retrieve)
    ->ArgNames({"sep", "iters", "beta"})
    ->Args({static_cast<int>(Separation::kSoftmax), 1, 0})
    ->Args({static_cast<int>(Separation::kSoftmax), 10, 0})
    ->Args({static_cast<int>(Separation::kSoftmax), 1, 32})
    ->Args({static_cast<int>(Separation::kSoftmax), 2, 32})
    ->Args({static_cast<int>(Separation::kSoftmax), 4, 32})
    ->Args({static_cast<int>(Separation::kSoftmax1), 1, 32})
    ->Args({static_cast<int>(Separation::kSparsemax), 1, 32})
    ->Args({static_cast<int>(Separation::kSparsemax), 4, 32})
    ->Args({static_cast<int>(Separation::kEntmax), 1, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_ScoresGemm(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  const auto patterns = Patterns(data);
  const int threads = static_cast<int>(state.range(0));
  const Eigen::Map<const Eigen::MatrixXf> queries(data.queries.data(), data.dim,
                                                  kBatch);
  std::vector<Eigen::MatrixXf> scores(static_cast<size_t>(threads));
  for (auto _ : state) {
    auto run = [&](int t) {
      const int first = data.patterns * t / threads;
      const int last = data.patterns * (t + 1) / threads;
      scores[static_cast<size_t>(t)].noalias() =
          patterns.middleCols(first, last - first).transpose() * queries;
    };
    std::vector<std::thread> workers;
    for (int t = 1; t < threads; ++t) workers.emplace_back(run, t);
    run(0);
    for (std::thread& worker : workers) worker.join();
    benchmark::DoNotOptimize(scores[0].data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_ScoresGemm)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_RetrieveBatch(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  RetrieveOptions options;
  options.search = SearchMode::kExact;
  options.threads = static_cast<uint32_t>(state.range(0));
  options.beta = static_cast<float>(state.range(1));
  options.max_iterations = 1;
  options.omit_pattern = true;
  const auto queries = absl::MakeConstSpan(data.queries)
                           .subspan(0, static_cast<size_t>(kBatch * data.dim));
  int hits = 0;
  for (auto _ : state) {
    absl::StatusOr<std::vector<RetrieveResult>> results =
        Retriever::RetrieveBatch(*data.bank, queries, options);
    if (!results.ok()) {
      state.SkipWithError(results.status().ToString().c_str());
      break;
    }
    for (int q = 0; q < kBatch; ++q) {
      hits += (*results)[static_cast<size_t>(q)].nearest_id ==
              data.sources[static_cast<size_t>(q)];
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["recall"] = static_cast<double>(hits) /
                             static_cast<double>(state.iterations() * kBatch);
}
BENCHMARK(BM_RetrieveBatch)
    ->ArgNames({"threads", "beta"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({2, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hopfield::bench

BENCHMARK_MAIN();
