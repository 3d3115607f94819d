// Durable ingest through the Storage seam alone (no bank, no gRPC): how many
// patterns per second RocksDbStorage makes durable, by batch size, with the
// log synced or not, and with several writers sharing syncs (group commit).
// Each iteration is one batch: Apply (the ordered, unsynced write a bank
// makes under its lock) then WaitDurable (the wait before acknowledging).
//
// The store lives under $HOPFIELD_BENCH_DIR (default: the system temporary
// directory); fsync cost is the disk's, so say which disk in the results.
//
//   build/release/bench/storage_benchmark --benchmark_min_time=2
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"

#include "core/rocksdb_storage.h"
#include "core/storage.h"

namespace hopfield::bench {
namespace {

constexpr uint32_t kDim = 128;

std::string BenchDir() {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("HOPFIELD_BENCH_DIR");
  return absl::StrCat(base != nullptr
                          ? std::string(base)
                          : std::filesystem::temp_directory_path().string(),
                      "/hopfield_storage_bench_", getpid(), "_", counter++);
}

// One store per benchmark run, shared by its threads.
struct Store {
  std::string dir;
  std::unique_ptr<RocksDbStorage> storage;
  std::atomic<uint64_t> next_column{0};
};

Store* g_store = nullptr;

void BM_DurableIngest(benchmark::State& state) {
  const auto batch_size = static_cast<uint64_t>(state.range(0));
  const bool sync = state.range(1) != 0;
  if (state.thread_index() == 0) {
    g_store = new Store;
    g_store->dir = BenchDir();
    RocksDbStorageOptions options;
    options.sync = sync;
    auto opened = RocksDbStorage::Open(g_store->dir, options);
    if (!opened.ok()) {
      state.SkipWithError(opened.status().ToString().c_str());
    } else {
      g_store->storage = *std::move(opened);
      StorageBatch create;
      create.PutBank(1, "bench", "");
      auto ticket = g_store->storage->Apply(create);
      if (ticket.ok()) (void)g_store->storage->WaitDurable(*ticket);
    }
  }
  // Other threads touch g_store only inside the timing loop, which Google
  // Benchmark starts (and ends) on every thread together.
  std::mt19937 rng(static_cast<uint32_t>(state.thread_index()) + 1);
  std::normal_distribution<float> normal;
  std::vector<float> values(kDim);
  for (float& v : values) v = normal(rng);
  const uint64_t syncs_before =
      state.thread_index() == 0 && g_store->storage != nullptr
          ? g_store->storage->syncs()
          : 0;
  for (auto _ : state) {
    StorageBatch batch;
    const uint64_t first = g_store->next_column.fetch_add(batch_size);
    for (uint64_t i = 0; i < batch_size; ++i) {
      batch.PutColumn(1, first + i, first + i + 1, values);
    }
    auto ticket = g_store->storage->Apply(batch);
    if (!ticket.ok() || !g_store->storage->WaitDurable(*ticket).ok()) {
      state.SkipWithError("write failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(batch_size));
  if (state.thread_index() == 0) {
    const uint64_t batches = g_store->next_column.load() / batch_size;
    state.counters["syncs_per_batch"] =
        batches == 0
            ? 0.0
            : static_cast<double>(g_store->storage->syncs() - syncs_before) /
                  static_cast<double>(batches);
    const std::string dir = g_store->dir;
    delete g_store;
    g_store = nullptr;
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_DurableIngest)
    ->ArgNames({"batch", "sync"})
    ->ArgsProduct({{1, 64, 1000}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
// Several writers (a StoreStream per client) sharing syncs.
BENCHMARK(BM_DurableIngest)
    ->ArgNames({"batch", "sync"})
    ->Args({64, 1})
    ->Args({1, 1})
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace hopfield::bench

BENCHMARK_MAIN();
