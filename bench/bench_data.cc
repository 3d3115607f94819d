#include "bench/bench_data.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

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
    d->bank = MemoryBank::Create("fashion", options).value();
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
    d->build_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::fprintf(stderr, "bank: %d Fashion-MNIST images x %d built in %.1f s\n",
                 d->patterns, d->dim, d->build_seconds);
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
