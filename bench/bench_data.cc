#include "bench/bench_data.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "bench/fashion_mnist.h"
#include "bench/uhop_protocol.h"

namespace hopfield::bench {

int BenchPatternCount() {
  const char* value = std::getenv("HOPFIELD_BENCH_PATTERNS");
  if (value == nullptr) return 60000;
  const int parsed = std::atoi(value);
  return parsed > 0 ? parsed : 60000;
}

const BenchData& GetBenchData() {
  static const BenchData* data = [] {
    auto* d = new BenchData;
    absl::StatusOr<FashionMnist> train =
        LoadFashionMnist("train", BenchPatternCount());
    if (!train.ok()) {
      std::fprintf(stderr, "benchmark data: %s\n",
                   train.status().ToString().c_str());
      std::exit(1);
    }
    d->patterns = train->count;
    d->dim = train->dim;
    d->pixels = std::move(train->pixels);
    BankOptions options;
    options.dim = static_cast<uint32_t>(d->dim);
    if (const char* ef = std::getenv("HOPFIELD_BENCH_EF_SEARCH")) {
      options.index_ef_search = static_cast<uint32_t>(std::atoi(ef));
    }
    if (const char* m = std::getenv("HOPFIELD_BENCH_INDEX_M")) {
      options.index_m = static_cast<uint32_t>(std::atoi(m));
    }
    // Statistics and index built after the stores, each timed: the bulk
    // load as the server sees it (stores return at once, the rest follows).
    BankEnvironment env;
    env.separation_update = SeparationUpdate::kDeferred;
    env.index_min_patterns = 0;
    // As hopfieldd builds indexes: with the worker pool's width (one thread
    // per CPU).
    env.index_build_threads = std::max(1u, std::thread::hardware_concurrency());
    d->bank = MemoryBank::Create("fashion", options, std::move(env)).value();
    const auto start = std::chrono::steady_clock::now();
    constexpr int kBatch = 1000;
    for (int first = 0; first < d->patterns; first += kBatch) {
      const int count = std::min(kBatch, d->patterns - first);
      std::vector<PatternId> ids(static_cast<size_t>(count));
      for (int i = 0; i < count; ++i) {
        ids[static_cast<size_t>(i)] = static_cast<PatternId>(first + i + 1);
      }
      const auto offset =
          static_cast<size_t>(first) * static_cast<size_t>(d->dim);
      const auto status =
          d->bank->Add(ids, absl::MakeConstSpan(d->pixels).subspan(
                                offset, static_cast<size_t>(count) *
                                            static_cast<size_t>(d->dim)));
      if (!status.ok()) {
        std::fprintf(stderr, "benchmark bank: %s\n",
                     status.status().ToString().c_str());
        std::exit(1);
      }
    }
    auto since = [](std::chrono::steady_clock::time_point t) {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
          .count();
    };
    d->store_seconds = since(start);
    auto phase = std::chrono::steady_clock::now();
    while (d->bank->separation_pending() > 0) {
      d->bank->RefreshSeparation(4096, nullptr);
    }
    d->separation_seconds = since(phase);
    phase = std::chrono::steady_clock::now();
    while (d->bank->index_pending() > 0) {
      if (d->bank->RefreshIndex(size_t{1} << 20, nullptr) == 0) {
        std::fprintf(stderr, "benchmark bank: the index makes no progress\n");
        std::exit(1);
      }
    }
    d->index_seconds = since(phase);
    d->build_seconds = since(start);
    std::fprintf(stderr,
                 "bank: %d Fashion-MNIST images x %d built in %.1f s (stores "
                 "%.1f s, exact separation statistics %.1f s, search index "
                 "%.1f s)\n",
                 d->patterns, d->dim, d->build_seconds, d->store_seconds,
                 d->separation_seconds, d->index_seconds);
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> pick(0, d->patterns - 1);
    const auto dim = static_cast<size_t>(d->dim);
    d->queries.resize(size_t{kQueries} * dim);
    for (int q = 0; q < kQueries; ++q) {
      const int source = pick(rng);
      d->sources.push_back(static_cast<PatternId>(source + 1));
      UHopDropout(absl::MakeConstSpan(d->pixels).subspan(
                      static_cast<size_t>(source) * dim, dim),
                  rng,
                  absl::MakeSpan(d->queries)
                      .subspan(static_cast<size_t>(q) * dim, dim));
    }
    return d;
  }();
  return *data;
}

}  // namespace hopfield::bench
