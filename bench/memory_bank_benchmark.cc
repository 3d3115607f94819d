// Store throughput: building a bank of Fashion-MNIST images from empty, in
// batches, with the exact separation statistics maintained incrementally.
//
//   BM_Store/<patterns>/<batch>   patterns/s to fill a cosine bank of that size
//   BM_CopyBaseline/<patterns>    memcpy of the same bytes: the floor of any
//   store
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"

#include "bench/fashion_mnist.h"
#include "core/memory_bank.h"

namespace hopfield::bench {
namespace {

const FashionMnist& Images() {
  static const FashionMnist* images = [] {
    absl::StatusOr<FashionMnist> data = LoadFashionMnist("train", 60000);
    if (!data.ok()) {
      std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
      std::exit(1);
    }
    return new FashionMnist(*std::move(data));
  }();
  return *images;
}

void BM_Store(benchmark::State& state) {
  const FashionMnist& images = Images();
  const int patterns = std::min(static_cast<int>(state.range(0)), images.count);
  const int batch = static_cast<int>(state.range(1));
  BankOptions options;
  options.dim = static_cast<uint32_t>(images.dim);
  for (auto _ : state) {
    auto bank = MemoryBank::Create("store", options).value();
    for (int first = 0; first < patterns; first += batch) {
      const int count = std::min(batch, patterns - first);
      const std::vector<PatternId> ids(static_cast<size_t>(count), 0);
      const auto added =
          bank->Add(ids, absl::MakeConstSpan(images.pixels)
                             .subspan(static_cast<size_t>(first) *
                                          static_cast<size_t>(images.dim),
                                      static_cast<size_t>(count) *
                                          static_cast<size_t>(images.dim)));
      if (!added.ok()) {
        state.SkipWithError(added.status().ToString().c_str());
        return;
      }
    }
    benchmark::DoNotOptimize(bank->size());
  }
  state.SetItemsProcessed(state.iterations() * patterns);
}
BENCHMARK(BM_Store)
    ->ArgNames({"patterns", "batch"})
    ->Args({1000, 100})
    ->Args({10000, 1000})
    ->Args({60000, 1000})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CopyBaseline(benchmark::State& state) {
  const FashionMnist& images = Images();
  const size_t floats =
      static_cast<size_t>(state.range(0)) * static_cast<size_t>(images.dim);
  std::vector<float> copy(floats);
  for (auto _ : state) {
    std::memcpy(copy.data(), images.pixels.data(), floats * sizeof(float));
    benchmark::DoNotOptimize(copy.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_CopyBaseline)->Arg(60000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hopfield::bench

BENCHMARK_MAIN();
