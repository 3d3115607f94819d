// File: bench_data.h
//
// The shared benchmark fixture: a cosine bank of Fashion-MNIST training
// images (Debian's dataset-fashion-mnist), built once per process, and
// queries made from stored images by the U-Hop protocol's corruption (50%
// dropout, survivors doubled).
//
// HOPFIELD_BENCH_PATTERNS (environment) sets the bank size; default 60000,
// the whole training set. The ctest smoke run sets it small.
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
  double build_seconds = 0.0;
};

inline constexpr int kQueries = 256;

// Builds the fixture on first use (aborts with a message if the dataset is
// missing). Thread-compatible: call from benchmark bodies only.
const BenchData& GetBenchData();

// Bank size from HOPFIELD_BENCH_PATTERNS, default 60000.
int BenchPatternCount();

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_BENCH_DATA_H_
