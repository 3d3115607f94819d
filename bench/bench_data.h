// File: bench_data.h
//
// The shared benchmark fixture: a cosine bank of Fashion-MNIST training
// images (Debian's dataset-fashion-mnist), built once per process, and
// queries made from stored images by the U-Hop protocol's corruption (50%
// dropout, survivors doubled).
//
// HOPFIELD_BENCH_PATTERNS (environment) sets the bank size; default 60000,
// the whole training set. The ctest smoke run sets it small.
// HOPFIELD_BENCH_EF_SEARCH and HOPFIELD_BENCH_INDEX_M override the bank's
// index_ef_search and index_m (defaults otherwise).
#ifndef HOPFIELD_BENCH_BENCH_DATA_H_
#define HOPFIELD_BENCH_BENCH_DATA_H_

#include <memory>
#include <vector>

#include "core/memory_bank.h"

namespace hopfield::bench {

struct BenchData {
  int patterns = 0;
  int dim = 0;
  std::unique_ptr<MemoryBank> bank;
  // Raw pixels of the stored images, row i = id i + 1.
  std::vector<float> pixels;
  // kQueries masked stored images (row-major) and the id each came from.
  std::vector<float> queries;
  std::vector<PatternId> sources;
  // The bank is built as the server builds it: stores (deferred
  // statistics), then the exact separation statistics, then the search
  // index (every pattern indexed; cosine, so AUTO retrieval above
  // kAutoApproximateMinPatterns uses it).
  double build_seconds = 0.0;
  double store_seconds = 0.0;
  double separation_seconds = 0.0;
  double index_seconds = 0.0;
};

inline constexpr int kQueries = 256;

// Builds the fixture on first use (aborts with a message if the dataset is
// missing). Thread-compatible: call from benchmark bodies only.
const BenchData& GetBenchData();

// Bank size from HOPFIELD_BENCH_PATTERNS, default 60000.
int BenchPatternCount();

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_BENCH_DATA_H_
