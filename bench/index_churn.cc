// index_churn: what the search index costs and how well it searches under
// churn (issue 18's soak: a bank whose patterns are forgotten and replaced
// at a steady size), for each way AnnIndex can take the churn.
//
//   index_churn [--patterns=40000] [--churn=20000] [--dim=128]
//               [--queries=1000] [--configs=tombstones,1,0.5,0.2,0]
//
// Builds an index over --patterns random unit vectors (the hardest case for
// a graph: no low-dimensional structure), then --churn times tombstones the
// oldest entry and adds a new vector, one at a time as a bank's refresh
// does. Configurations: `tombstones` (AnnIndexOptions::reuse_deleted off:
// the graph grows by every insertion until a rebuild) and, for each number
// p, slots reused with reuse_repair = p. Reports the build's and the
// churn's time per operation, the graph's size, and against an exact scan
// of the live vectors: recall@10 and top-1 agreement of --queries noisy
// copies of live vectors (ef_search 64, the default). Single-threaded;
// deterministic data (seed 1).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

#include "core/ann_index.h"
#include "core/testing/random_patterns.h"

ABSL_FLAG(int, patterns, 40000, "vectors indexed before the churn");
ABSL_FLAG(int, churn, 20000, "vectors replaced one by one");
ABSL_FLAG(int, dim, 128, "dimension");
ABSL_FLAG(int, queries, 1000, "queries for recall and top-1");
ABSL_FLAG(std::string, configs, "tombstones,1,0.5,0.2,0",
          "tombstones, or a reuse_repair value per configuration");

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Run(const std::string& config) {
  const auto n = static_cast<size_t>(absl::GetFlag(FLAGS_patterns));
  const auto churn = static_cast<size_t>(absl::GetFlag(FLAGS_churn));
  const auto dim = static_cast<size_t>(absl::GetFlag(FLAGS_dim));
  const auto queries = static_cast<size_t>(absl::GetFlag(FLAGS_queries));
  hopfield::AnnIndexOptions options;
  if (config == "tombstones") {
    options.reuse_deleted = false;
  } else if (!absl::SimpleAtof(config, &options.reuse_repair)) {
    std::fprintf(stderr, "bad configuration %s\n", config.c_str());
    return 2;
  }
  std::mt19937 rng(1);
  const std::vector<float> base = hopfield::testing::UnitPatterns(
      rng, static_cast<int>(n), static_cast<int>(dim));
  const std::vector<float> fresh = hopfield::testing::UnitPatterns(
      rng, static_cast<int>(churn), static_cast<int>(dim));
  auto created =
      hopfield::AnnIndex::Create(static_cast<uint32_t>(dim), options);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  hopfield::AnnIndex& index = **created;
  Clock::time_point start = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    const uint64_t id = i + 1;
    if (!index.Add({&id, 1}, {base.data() + i * dim, dim}).ok()) return 1;
  }
  const double build = Seconds(start);
  start = Clock::now();
  for (size_t c = 0; c < churn; ++c) {
    index.MarkDeleted(uint64_t{c % n + 1});
    const uint64_t id = n + c + 1;
    if (!index.Add({&id, 1}, {fresh.data() + c * dim, dim}).ok()) return 1;
  }
  const double churned = Seconds(start);
  // The live vectors: the last n - churn of `base` and the churned ones.
  std::vector<std::pair<uint64_t, const float*>> live;
  for (size_t i = std::min(churn, n); i < n; ++i) {
    live.emplace_back(i + 1, base.data() + i * dim);
  }
  for (size_t c = churn > n ? churn - n : 0; c < churn; ++c) {
    live.emplace_back(n + c + 1, fresh.data() + c * dim);
  }
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<float> query(dim);
  std::vector<std::pair<float, uint64_t>> exact(live.size());
  std::vector<hopfield::AnnIndex::Candidate> found;
  size_t hits = 0;
  size_t top1 = 0;
  double search = 0;
  for (size_t q = 0; q < queries; ++q) {
    const float* source = live[(q * 7919) % live.size()].second;
    float norm = 0;
    for (size_t j = 0; j < dim; ++j) {
      query[j] = source[j] + noise(rng);
      norm += query[j] * query[j];
    }
    for (float& x : query) x /= std::sqrt(norm);
    for (size_t i = 0; i < live.size(); ++i) {
      float dot = 0;
      for (size_t j = 0; j < dim; ++j) dot += query[j] * live[i].second[j];
      exact[i] = {-dot, live[i].first};
    }
    std::partial_sort(exact.begin(), exact.begin() + 10, exact.end());
    start = Clock::now();
    index.Search(query, 10, &found);
    search += Seconds(start);
    for (size_t k = 0; k < 10; ++k) {
      const bool hit =
          std::any_of(found.begin(), found.end(),
                      [&](const auto& c) { return c.id == exact[k].second; });
      hits += hit ? 1 : 0;
    }
    const bool first =
        !found.empty() && found.front().id == exact.front().second;
    top1 += first ? 1 : 0;
  }
  std::printf("| %s | %.0f | %.0f | %llu | %.3f | %.3f | %.0f |\n",
              config.c_str(), 1e6 * build / static_cast<double>(n),
              1e6 * churned / static_cast<double>(std::max<size_t>(churn, 1)),
              static_cast<unsigned long long>(index.size_with_deleted()),
              static_cast<double>(hits) / (10.0 * static_cast<double>(queries)),
              static_cast<double>(top1) / static_cast<double>(queries),
              1e6 * search / static_cast<double>(queries));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::printf(
      "patterns=%d churn=%d dim=%d queries=%d\n"
      "| configuration | build us/insert | churn us/op | graph entries | "
      "recall@10 | top-1 | search us |\n| --- | --- | --- | --- | --- | --- | "
      "--- |\n",
      absl::GetFlag(FLAGS_patterns), absl::GetFlag(FLAGS_churn),
      absl::GetFlag(FLAGS_dim), absl::GetFlag(FLAGS_queries));
  const std::vector<std::string> configs =
      absl::StrSplit(absl::GetFlag(FLAGS_configs), ',', absl::SkipEmpty());
  for (const std::string& config : configs) {
    if (int rc = Run(config); rc != 0) return rc;
  }
  return 0;
}
