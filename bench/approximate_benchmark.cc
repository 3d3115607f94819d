// Approximate retrieval (top-k candidates from the bank's hnswlib index, the
// truncation certificate, the dense fallback) against the dense path and
// against raw hnswlib search over the same graph, in the same run.
//
//   BM_BuildTimes             the Fashion-MNIST bank's bulk load: stores,
//                             exact separation statistics, search index
//   BM_Fashion/<mode>/<set>   one retrieval with the bank's defaults
//                             (automatic β, up to 10 iterations), mode
//                             0 exact, 1 approximate, 2 auto; queries: set 0
//                             test images, 1 half-masked training images
//   BM_IndexBuild/<threads>   that bank's index built again on 1 or 2 threads
//   BM_RawSearch/<k>/<full>/<loop>   a search (ef max(64, k); k 160 the
//                             query's own fetch), normalised
//                             query, nothing else: full 0 on the bank's
//                             index (projected to 64 dims on this data),
//                             full 1 on a 784-dim index of the same images,
//                             2 / 3 on projected ones in float32 / half
//                             floats, built alike; loop 0 hnswlib's
//                             searchKnn, 1 the engine's (SearchLoop)
//   BM_Crossover/<M>/<mode>   exact vs approximate on the first M training
//                             images: where AUTO should switch
//   BM_Scaling/<M>/<mode>     synthetic d = 128 unit patterns, queries =
//                             patterns + N(0, 0.03²), β = 64
//   BM_ScalingRaw/<M>/<loop>  a search for 64 on that bank's index: loop 0
//                             hnswlib's searchKnn, 1 the engine's loop
//
// Counters: agreement = share of the set whose nearest_id equals the dense
// path's (over the whole set, computed before timing), fell_back /
// by_separation = shares of the set answered by the dense fallback / proved
// by separation, scored = patterns scored per query, recall10 = raw
// recall@10 against the exact top 10. HOPFIELD_BENCH_PATTERNS shrinks the
// Fashion-MNIST bank; HOPFIELD_BENCH_QUERIES (default 1000) the query sets.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "benchmark/benchmark.h"

#include "bench/bench_data.h"
#include "bench/fashion_mnist.h"
#include "bench/uhop_protocol.h"
#include "core/ann_index.h"
#include "core/memory_bank.h"
#include "core/retriever.h"

namespace hopfield::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int QueryCount() {
  const char* value = std::getenv("HOPFIELD_BENCH_QUERIES");
  const int parsed = value == nullptr ? 0 : std::atoi(value);
  return parsed > 0 ? parsed : 1000;
}

[[noreturn]] void Die(const absl::Status& status, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  std::exit(1);
}

// Queries with the dense path's answers (bank defaults) and their exact
// top 10 by cosine.
struct QuerySet {
  int count = 0;
  int dim = 0;
  std::vector<float> queries;
  std::vector<PatternId> dense_nearest;
  std::vector<std::vector<PatternId>> top10;

  absl::Span<const float> Query(int q) const {
    return absl::MakeConstSpan(queries).subspan(
        static_cast<size_t>(q) * static_cast<size_t>(dim),
        static_cast<size_t>(dim));
  }
};

// Fills dense_nearest (RetrieveBatch, exact, `options`) and top10
// (`patterns` are the bank's rows, ids 1..n).
void Answer(const MemoryBank& bank, const std::vector<float>& patterns,
            RetrieveOptions options, QuerySet* set) {
  const Eigen::Index dim = set->dim;
  options.search = SearchMode::kExact;
  options.omit_pattern = true;
  options.threads = 2;
  constexpr int kChunk = 64;
  for (int first = 0; first < set->count; first += kChunk) {
    const int n = std::min(kChunk, set->count - first);
    auto results = Retriever::RetrieveBatch(
        bank,
        absl::MakeConstSpan(set->queries)
            .subspan(static_cast<size_t>(first) * static_cast<size_t>(dim),
                     static_cast<size_t>(n) * static_cast<size_t>(dim)),
        options);
    if (!results.ok()) Die(results.status(), "dense answers");
    for (const RetrieveResult& r : *results) {
      set->dense_nearest.push_back(r.nearest_id);
    }
  }
  const Eigen::Index count = static_cast<Eigen::Index>(patterns.size()) / dim;
  Eigen::MatrixXf keys =
      Eigen::Map<const Eigen::MatrixXf>(patterns.data(), dim, count);
  keys.colwise().normalize();
  for (int first = 0; first < set->count; first += 256) {
    const int n = std::min(256, set->count - first);
    Eigen::MatrixXf q = Eigen::Map<const Eigen::MatrixXf>(
        set->queries.data() + static_cast<size_t>(first) * dim, dim, n);
    q.colwise().normalize();
    const Eigen::MatrixXf scores = keys.transpose() * q;
    for (int j = 0; j < n; ++j) {
      std::vector<std::pair<float, PatternId>> column;
      column.reserve(static_cast<size_t>(count));
      for (Eigen::Index i = 0; i < count; ++i) {
        column.emplace_back(scores(i, j), static_cast<PatternId>(i + 1));
      }
      const size_t top = std::min<size_t>(10, column.size());
      std::partial_sort(column.begin(), column.begin() + top, column.end(),
                        [](const auto& a, const auto& b) { return a > b; });
      std::vector<PatternId> ids;
      for (size_t i = 0; i < top; ++i) ids.push_back(column[i].second);
      set->top10.push_back(std::move(ids));
    }
  }
}

// Test images (set 0) and half-masked training images (set 1) against the
// Fashion-MNIST bench bank.
const QuerySet& FashionSet(int which) {
  static const std::vector<QuerySet>* const kSets = [] {
    const BenchData& data = GetBenchData();
    auto* sets = new std::vector<QuerySet>(2);
    const int count = QueryCount();
    auto test = LoadFashionMnist("t10k", count);
    if (!test.ok()) Die(test.status(), "test images");
    (*sets)[0].queries = std::move(test->pixels);
    (*sets)[0].count = test->count;
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> pick(0, data.patterns - 1);
    const auto dim = static_cast<size_t>(data.dim);
    (*sets)[1].queries.resize(static_cast<size_t>(count) * dim);
    (*sets)[1].count = count;
    for (int q = 0; q < count; ++q) {
      const auto source = static_cast<size_t>(pick(rng));
      UHopDropout(absl::MakeConstSpan(data.pixels).subspan(source * dim, dim),
                  rng,
                  absl::MakeSpan((*sets)[1].queries)
                      .subspan(static_cast<size_t>(q) * dim, dim));
    }
    const auto start = Clock::now();
    for (QuerySet& set : *sets) {
      set.dim = data.dim;
      Answer(*data.bank, data.pixels, RetrieveOptions(), &set);
    }
    std::fprintf(stderr, "query sets: 2 x %d, dense answers in %.1f s\n", count,
                 Since(start));
    return sets;
  }();
  return (*kSets)[static_cast<size_t>(which)];
}

constexpr SearchMode kModes[] = {SearchMode::kExact, SearchMode::kApproximate,
                                 SearchMode::kAuto};

// Agreement with the dense path over the whole set, and how the
// approximate path answered (counters).
void SetCounters(benchmark::State& state, const MemoryBank& bank,
                 const QuerySet& set, const RetrieveOptions& options) {
  if (options.search == SearchMode::kExact) return;  // the reference itself
  double agree = 0, fell_back = 0, by_separation = 0, approximate = 0;
  double scored = 0, index_queries = 0;
  for (int q = 0; q < set.count; ++q) {
    auto result = Retriever::Retrieve(bank, set.Query(q), options);
    if (!result.ok()) Die(result.status(), "retrieve");
    agree += result->nearest_id == set.dense_nearest[static_cast<size_t>(q)];
    fell_back += result->fell_back;
    by_separation += result->certified_by_separation;
    approximate += result->approximate;
    scored += static_cast<double>(result->patterns_scored);
    index_queries += result->index_queries;
  }
  const double n = set.count;
  state.counters["agreement"] = agree / n;
  state.counters["approximate"] = approximate / n;
  state.counters["fell_back"] = fell_back / n;
  state.counters["by_separation"] = by_separation / n;
  state.counters["scored"] = scored / n;
  state.counters["index_queries"] = index_queries / n;
}

void RunRetrievals(benchmark::State& state, const MemoryBank& bank,
                   const QuerySet& set, const RetrieveOptions& options) {
  int q = 0;
  for (auto _ : state) {
    auto result = Retriever::Retrieve(bank, set.Query(q), options);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(result->nearest_id);
    q = (q + 1) % set.count;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_BuildTimes(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  for (auto _ : state) benchmark::DoNotOptimize(data.patterns);
  const BankStats stats = data.bank->Stats();
  state.counters["patterns"] = data.patterns;
  state.counters["store_s"] = data.store_seconds;
  state.counters["separation_s"] = data.separation_seconds;
  state.counters["index_s"] = data.index_seconds;
  state.counters["bytes_per_pattern"] =
      static_cast<double>(stats.memory_bytes) / data.patterns;
  state.counters["beta"] = stats.effective_beta;
  data.bank->WithReader([&](const BankView& view) {
    state.counters["index_dim"] = view.index->search_dim();
    return 0;
  });
}
BENCHMARK(BM_BuildTimes)->Iterations(1);

void BM_Fashion(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  const QuerySet& set = FashionSet(static_cast<int>(state.range(1)));
  RetrieveOptions options;
  options.search = kModes[state.range(0)];
  options.omit_pattern = true;
  SetCounters(state, *data.bank, set, options);
  RunRetrievals(state, *data.bank, set, options);
}
BENCHMARK(BM_Fashion)
    ->ArgNames({"mode", "set"})
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The Fashion-MNIST bank's index built again from its unit keys as a bank
// rebuild does (projection fitted to 4,096 keys, insertion in batches of
// 1,024) on `threads` threads: AnnIndex::Add's concurrent insertion against
// one thread, in the same run.
void BM_IndexBuild(benchmark::State& state) {
  const BenchData& data = GetBenchData();
  const auto threads = static_cast<uint32_t>(state.range(0));
  const auto dim = static_cast<size_t>(data.dim);
  Eigen::MatrixXf unit = Eigen::Map<const Eigen::MatrixXf>(
      data.pixels.data(), data.dim, data.patterns);
  unit.colwise().normalize();
  const size_t count = static_cast<size_t>(data.patterns);
  constexpr size_t kSample = 4096;
  std::vector<float> sample;
  for (size_t i = 0; i < kSample; ++i) {
    const float* key =
        unit.col(static_cast<Eigen::Index>(i * count / kSample)).data();
    sample.insert(sample.end(), key, key + dim);
  }
  std::vector<uint64_t> ids(count);
  for (size_t i = 0; i < count; ++i) ids[i] = i + 1;
  for (auto _ : state) {
    auto index = AnnIndex::Create(static_cast<uint32_t>(dim), AnnIndexOptions(),
                                  nullptr, sample);
    if (!index.ok()) Die(index.status(), "index");
    constexpr size_t kBatch = 1024;
    for (size_t first = 0; first < count; first += kBatch) {
      const size_t n = std::min(kBatch, count - first);
      const absl::Status added =
          (*index)->Add(absl::MakeConstSpan(ids).subspan(first, n),
                        absl::MakeConstSpan(unit.data(), unit.size())
                            .subspan(first * dim, n * dim),
                        threads);
      if (!added.ok()) Die(added, "index");
    }
    state.counters["search_dim"] = (*index)->search_dim();
  }
  state.counters["patterns"] = static_cast<double>(count);
}
BENCHMARK(BM_IndexBuild)
    ->ArgNames({"threads"})
    ->Arg(1)
    ->Arg(2)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

// hnswlib over the full-dimension unit images (no projection), with the
// bank's index options: the raw baseline on the same data.
const AnnIndex& FullDimensionIndex() {
  static const AnnIndex* const kIndex = [] {
    const BenchData& data = GetBenchData();
    AnnIndexOptions options;
    options.projection_energy = 0.0;
    auto index = AnnIndex::Create(static_cast<uint32_t>(data.dim), options);
    if (!index.ok()) Die(index.status(), "full-dimension index");
    Eigen::MatrixXf unit = Eigen::Map<const Eigen::MatrixXf>(
        data.pixels.data(), data.dim, data.patterns);
    unit.colwise().normalize();
    std::vector<uint64_t> ids(static_cast<size_t>(data.patterns));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
    const auto start = Clock::now();
    const absl::Status added = (*index)->Add(
        ids,
        absl::MakeConstSpan(unit.data(), static_cast<size_t>(unit.size())));
    if (!added.ok()) Die(added, "full-dimension index");
    std::fprintf(stderr, "full-dimension hnswlib index built in %.1f s\n",
                 Since(start));
    return index->release();
  }();
  return *kIndex;
}

// Projected indexes over the same unit images, fitted to their first 4,096,
// holding float32 (`half` false) or half floats: the two encodings side by
// side, built alike (the bank's own index is fitted to its own sample).
const AnnIndex& ProjectedIndex(bool half) {
  static const std::array<const AnnIndex*, 2> kIndexes = [] {
    const BenchData& data = GetBenchData();
    Eigen::MatrixXf unit = Eigen::Map<const Eigen::MatrixXf>(
        data.pixels.data(), data.dim, data.patterns);
    unit.colwise().normalize();
    std::vector<uint64_t> ids(static_cast<size_t>(data.patterns));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
    const auto sample = absl::MakeConstSpan(
        unit.data(),
        static_cast<size_t>(data.dim) *
            std::min<size_t>(4096, static_cast<size_t>(data.patterns)));
    std::array<const AnnIndex*, 2> built{};
    for (const bool halved : {false, true}) {
      AnnIndexOptions options;
      options.half_projected = halved;
      auto index = AnnIndex::Create(static_cast<uint32_t>(data.dim), options,
                                    nullptr, sample);
      if (!index.ok()) Die(index.status(), "projected index");
      const absl::Status added = (*index)->Add(
          ids,
          absl::MakeConstSpan(unit.data(), static_cast<size_t>(unit.size())),
          2);
      if (!added.ok()) Die(added, "projected index");
      std::fprintf(
          stderr, "projected index: %u dims, half %d, %.0f B/entry\n",
          (*index)->search_dim(), (*index)->half() ? 1 : 0,
          static_cast<double>((*index)->memory_bytes()) / data.patterns);
      built[halved ? 1 : 0] = index->release();
    }
    return built;
  }();
  return *kIndexes[half ? 1 : 0];
}

AnnIndex::SearchLoop Loop(int64_t arg) {
  return arg == 0 ? AnnIndex::SearchLoop::kHnswlib
                  : AnnIndex::SearchLoop::kPrefetchBatch;
}

// A search for k candidates of each normalised query of `set`, nothing
// else, by `loop` (hnswlib's own searchKnn, or the engine's default
// prefetching loop over the same graph): on `index`, or on `bank`'s own
// index when `index` is null; with its recall@10 against the set's exact
// top 10.
void RunRawSearch(benchmark::State& state, const QuerySet& set,
                  const AnnIndex* index, const MemoryBank& bank, size_t k,
                  AnnIndex::SearchLoop loop) {
  Eigen::MatrixXf unit =
      Eigen::Map<const Eigen::MatrixXf>(set.queries.data(), set.dim, set.count);
  unit.colwise().normalize();
  std::vector<AnnIndex::Candidate> found;
  auto search = [&](int q) {
    const absl::Span<const float> query =
        absl::MakeConstSpan(unit.col(q).data(), static_cast<size_t>(set.dim));
    if (index != nullptr) {
      index->Search(query, k, &found, loop);
      return;
    }
    bank.WithReader([&](const BankView& view) {
      view.index->Search(query, k, &found, loop);
      return 0;
    });
  };
  double hits = 0;
  for (int q = 0; q < set.count; ++q) {
    search(q);
    const auto& top = set.top10[static_cast<size_t>(q)];
    for (size_t i = 0; i < std::min<size_t>(10, found.size()); ++i) {
      hits += std::find(top.begin(), top.end(), found[i].id) != top.end();
    }
  }
  state.counters["recall10"] = hits / (10.0 * set.count);
  int q = 0;
  for (auto _ : state) {
    search(q);
    benchmark::DoNotOptimize(found.data());
    q = (q + 1) % set.count;
  }
  state.SetItemsProcessed(state.iterations());
}

// The test images: on the bank's own index (range 1 = 0; projected when the
// bank's keys allow it), the full-dimension one (1), or a projected one in
// float32 (2) or half floats (3); range 2: 0 hnswlib's searchKnn, 1 the
// engine's loop (AnnIndex::SearchLoop).
void BM_RawSearch(benchmark::State& state) {
  const AnnIndex* index = nullptr;
  switch (state.range(1)) {
    case 1:
      index = &FullDimensionIndex();
      break;
    case 2:
    case 3:
      index = &ProjectedIndex(state.range(1) == 3);
      break;
    default:
      break;
  }
  RunRawSearch(state, FashionSet(0), index, *GetBenchData().bank,
               static_cast<size_t>(state.range(0)), Loop(state.range(2)));
}
BENCHMARK(BM_RawSearch)
    ->ArgNames({"k", "full", "loop"})
    ->ArgsProduct({{10, 64, 160, 192}, {0, 1, 2, 3}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// A bank built like the bench bank (stores, exact statistics, index) over
// `patterns`, with the build times.
struct Built {
  std::unique_ptr<MemoryBank> bank;
  std::vector<float> patterns;
  QuerySet set;
  double separation_seconds = 0.0;
  double index_seconds = 0.0;
};

void Build(uint32_t dim, bool exact_statistics, Built* b) {
  BankOptions options;
  options.dim = dim;
  BankEnvironment env;
  env.separation_update = SeparationUpdate::kDeferred;
  env.index_min_patterns = 0;
  env.index_build_threads = std::max(1u, std::thread::hardware_concurrency());
  auto bank = MemoryBank::Create("bench", options, std::move(env));
  if (!bank.ok()) Die(bank.status(), "bank");
  b->bank = *std::move(bank);
  const size_t count = b->patterns.size() / dim;
  constexpr size_t kBatch = 10000;
  for (size_t first = 0; first < count; first += kBatch) {
    const size_t n = std::min(kBatch, count - first);
    auto added = b->bank->Add(
        std::vector<PatternId>(n, 0),
        absl::MakeConstSpan(b->patterns).subspan(first * dim, n * dim));
    if (!added.ok()) Die(added.status(), "store");
  }
  auto start = Clock::now();
  if (exact_statistics) {
    while (b->bank->separation_pending() > 0) {
      b->bank->RefreshSeparation(4096, nullptr);
    }
  }
  b->separation_seconds = Since(start);
  start = Clock::now();
  while (b->bank->index_pending() > 0) {
    if (b->bank->RefreshIndex(size_t{1} << 20, nullptr) == 0) {
      std::fprintf(stderr, "the index makes no progress\n");
      std::exit(1);
    }
  }
  b->index_seconds = Since(start);
}

const Built& CrossoverBank(int count) {
  static auto* const kBanks = new std::map<int, std::unique_ptr<Built>>;
  auto& slot = (*kBanks)[count];
  if (slot != nullptr) return *slot;
  const BenchData& data = GetBenchData();
  slot = std::make_unique<Built>();
  Built& b = *slot;
  count = std::min(count, data.patterns);
  const auto dim = static_cast<size_t>(data.dim);
  b.patterns.assign(data.pixels.begin(),
                    data.pixels.begin() + static_cast<ptrdiff_t>(count * dim));
  Build(static_cast<uint32_t>(dim), /*exact_statistics=*/true, &b);
  b.set.dim = data.dim;
  b.set.count = std::min(QueryCount(), 200);
  b.set.queries.resize(static_cast<size_t>(b.set.count) * dim);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> pick(0, count - 1);
  for (int q = 0; q < b.set.count; ++q) {
    UHopDropout(absl::MakeConstSpan(b.patterns)
                    .subspan(static_cast<size_t>(pick(rng)) * dim, dim),
                rng,
                absl::MakeSpan(b.set.queries)
                    .subspan(static_cast<size_t>(q) * dim, dim));
  }
  Answer(*b.bank, b.patterns, RetrieveOptions(), &b.set);
  return b;
}

void BM_Crossover(benchmark::State& state) {
  const Built& b = CrossoverBank(static_cast<int>(state.range(0)));
  RetrieveOptions options;
  options.search = kModes[state.range(1)];
  options.omit_pattern = true;
  SetCounters(state, *b.bank, b.set, options);
  state.counters["index_s"] = b.index_seconds;
  RunRetrievals(state, *b.bank, b.set, options);
}
BENCHMARK(BM_Crossover)
    ->ArgNames({"M", "mode"})
    ->ArgsProduct({{1000, 2000, 5000, 10000, 20000}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

constexpr int kScalingDim = 128;
constexpr float kScalingBeta = 64.0f;

const Built& ScalingBank(int count) {
  static auto* const kBanks = new std::map<int, std::unique_ptr<Built>>;
  auto& slot = (*kBanks)[count];
  if (slot != nullptr) return *slot;
  slot = std::make_unique<Built>();
  Built& b = *slot;
  std::mt19937 rng(static_cast<uint32_t>(count));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto dim = static_cast<size_t>(kScalingDim);
  b.patterns.resize(static_cast<size_t>(count) * dim);
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    double norm = 0.0;
    for (size_t j = 0; j < dim; ++j) {
      const float v = normal(rng);
      b.patterns[i * dim + j] = v;
      norm += static_cast<double>(v) * v;
    }
    const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
    for (size_t j = 0; j < dim; ++j) b.patterns[i * dim + j] *= scale;
  }
  // Exact statistics are O(M²·d): left pending (β is explicit).
  Build(kScalingDim, /*exact_statistics=*/false, &b);
  std::fprintf(stderr, "scaling bank: %d x %d, index built in %.1f s\n", count,
               kScalingDim, b.index_seconds);
  b.set.dim = kScalingDim;
  b.set.count = std::min(QueryCount(), 200);
  std::normal_distribution<float> noise(0.0f, 0.03f);
  std::uniform_int_distribution<int> pick(0, count - 1);
  for (int q = 0; q < b.set.count; ++q) {
    const auto source = static_cast<size_t>(pick(rng));
    for (size_t j = 0; j < dim; ++j) {
      b.set.queries.push_back(b.patterns[source * dim + j] + noise(rng));
    }
  }
  RetrieveOptions options;
  options.beta = kScalingBeta;
  Answer(*b.bank, b.patterns, options, &b.set);
  return b;
}

void BM_Scaling(benchmark::State& state) {
  const Built& b = ScalingBank(static_cast<int>(state.range(0)));
  RetrieveOptions options;
  options.search = kModes[state.range(1)];
  options.beta = kScalingBeta;
  options.omit_pattern = true;
  SetCounters(state, *b.bank, b.set, options);
  state.counters["index_s"] = b.index_seconds;
  state.counters["bytes_per_pattern"] =
      static_cast<double>(b.bank->Stats().memory_bytes) /
      static_cast<double>(state.range(0));
  RunRetrievals(state, *b.bank, b.set, options);
}
BENCHMARK(BM_Scaling)
    ->ArgNames({"M", "mode"})
    ->ArgsProduct({{10000, 100000, 1000000}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The scaling bank's own index searched for top_k (64) candidates of the
// normalised query, nothing else (the approximate path's per-state search),
// by hnswlib's searchKnn (loop 0) or the engine's loop (1), with its
// recall@10 against the exact top 10.
void BM_ScalingRaw(benchmark::State& state) {
  const Built& b = ScalingBank(static_cast<int>(state.range(0)));
  RunRawSearch(state, b.set, nullptr, *b.bank, 64, Loop(state.range(1)));
}
BENCHMARK(BM_ScalingRaw)
    ->ArgNames({"M", "loop"})
    ->ArgsProduct({{10000, 100000, 1000000}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace hopfield::bench

BENCHMARK_MAIN();
