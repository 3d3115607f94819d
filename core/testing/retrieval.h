// File: testing/retrieval.h
//
// Helpers for tests that compare retrievals: options for a given search
// mode, the distance between two retrieved patterns, and a bank whose
// search index holds every pattern.
#ifndef HOPFIELD_CORE_TESTING_RETRIEVAL_H_
#define HOPFIELD_CORE_TESTING_RETRIEVAL_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/memory_bank.h"
#include "core/retriever.h"

namespace hopfield::testing {

// Options with the given search mode, β, candidates (top_k) and iteration
// cap (0 = the default), everything else at its default.
inline RetrieveOptions SearchOptions(SearchMode search, float beta,
                                     uint32_t top_k, uint32_t iterations = 0) {
  RetrieveOptions options;
  options.search = search;
  options.beta = beta;
  options.top_k = top_k;
  options.max_iterations = iterations;
  return options;
}

// Euclidean distance between two equally long vectors, in double.
inline double Distance(const std::vector<float>& a,
                       const std::vector<float>& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += d * d;
  }
  return std::sqrt(sum);
}

// Refreshes the bank's search index until every pattern is in it. False if
// a refresh makes no progress.
inline bool IndexEverything(MemoryBank& bank) {
  while (bank.index_pending() > 0) {
    if (bank.RefreshIndex(1 << 20, nullptr) == 0) return false;
  }
  return true;
}

}  // namespace hopfield::testing

#endif  // HOPFIELD_CORE_TESTING_RETRIEVAL_H_
