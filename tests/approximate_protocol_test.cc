// Approximate retrieval (top-k candidates from the bank's hnswlib index, the
// truncation certificate, the dense fallback) at the sizes of algorithms.md
// §F tests 15 and 16, and agreement between the search modes on
// Fashion-MNIST:
//
//   15. D = 64, M = 20,000 random unit memories, queries = memories plus
//       N(0, 0.05²) per coordinate (cos ≈ 0.93), exact top-k with k = 16,
//       one update step. At β = 40, for every query
//       ‖T_full − T_k‖ ≤ 2·tail_mass ≤ 2(M−k)·e^{−β(s₁−s_{k+1})}
//       (computed here in double, independently of the engine), and the
//       engine's approximate answer is certified and within its reported
//       bound of the dense answer. At β = 10 the certificate fails
//       (2·tail ≈ 1.7) and every query falls back to the dense scan.
//   16. The same memories with ef_search = 16 (deliberately poor): whatever
//       the index misses, the final argmax equals the dense argmax on 100%
//       of 1,000 queries.
//   Modes on Fashion-MNIST: 20,000 training images stored; test images and
//   50%-masked training images as queries; APPROXIMATE agrees with EXACT on
//   nearest_id for >= 99.5% of them.
//
// Heavy (GFLOPs and index builds): label `protocol`, run from the release
// build (`ctest --preset protocol`, part of `make test`).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "bench/fashion_mnist.h"
#include "bench/uhop_protocol.h"
#include "core/ann_index.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/testing/random_patterns.h"
#include "core/testing/retrieval.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::Distance;
using ::hopfield::testing::IsOk;

constexpr int kDim = 64;
constexpr int kCount = 20000;
constexpr int kQueries = 1000;
constexpr uint32_t kTopK = 16;

struct Problem {
  std::vector<float> patterns;  // kCount x kDim, unit rows
  std::vector<float> queries;   // kQueries x kDim
};

const Problem& RandomProblem() {
  static const Problem* const kProblem = [] {
    auto* p = new Problem;
    std::mt19937 rng(1516);
    p->patterns = testing::UnitPatterns(rng, kCount, kDim);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    std::uniform_int_distribution<int> pick(0, kCount - 1);
    for (int q = 0; q < kQueries; ++q) {
      const size_t source = static_cast<size_t>(pick(rng));
      for (size_t j = 0; j < kDim; ++j) {
        p->queries.push_back(p->patterns[source * kDim + j] + noise(rng));
      }
    }
    return p;
  }();
  return *kProblem;
}

absl::Span<const float> Row(const std::vector<float>& rows, int i, int dim) {
  return absl::MakeConstSpan(rows).subspan(static_cast<size_t>(i) * dim,
                                           static_cast<size_t>(dim));
}

// A cosine bank over `patterns` whose index holds every pattern.
std::unique_ptr<MemoryBank> IndexedBank(const std::vector<float>& patterns,
                                        uint32_t dim, uint32_t ef_search) {
  BankOptions options;
  options.dim = dim;
  options.index_ef_search = ef_search;
  BankEnvironment env;
  // Statistics exact in the background would cost O(M²·d) here; the tests
  // pass β explicitly.
  env.separation_update = SeparationUpdate::kDeferred;
  auto bank = MemoryBank::Create("protocol", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  const size_t count = patterns.size() / dim;
  EXPECT_THAT((*bank)->Add(std::vector<PatternId>(count, 0), patterns), IsOk());
  EXPECT_TRUE(testing::IndexEverything(**bank))
      << "the index makes no progress";
  return *std::move(bank);
}

RetrieveOptions Options(SearchMode search, float beta, uint32_t iterations) {
  return testing::SearchOptions(search, beta, kTopK, iterations);
}

// One softmax step from `query` over all memories and over the exact
// top-k, in double: ‖T_full − T_k‖, the tail mass outside the top k, and
// the certificate 2(M−k)·e^{−β(s₁−s_{k+1})} (m = 1: unit memories).
struct Truncation {
  double error = 0.0;
  double tail = 0.0;
  double certificate = 0.0;
};

Truncation OneStep(const std::vector<float>& patterns,
                   absl::Span<const float> query, double beta) {
  double norm = 0.0;
  for (float v : query) norm += static_cast<double>(v) * v;
  norm = std::sqrt(norm);
  std::vector<double> scores(kCount);
  for (int mu = 0; mu < kCount; ++mu) {
    double dot = 0.0;
    for (int j = 0; j < kDim; ++j) {
      dot += static_cast<double>(patterns[static_cast<size_t>(mu) * kDim +
                                          static_cast<size_t>(j)]) *
             query[static_cast<size_t>(j)];
    }
    scores[static_cast<size_t>(mu)] = dot / norm;
  }
  std::vector<int> order(kCount);
  for (int mu = 0; mu < kCount; ++mu) order[static_cast<size_t>(mu)] = mu;
  std::partial_sort(
      order.begin(), order.begin() + kTopK + 1, order.end(), [&](int a, int b) {
        return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)];
      });
  const double top = scores[static_cast<size_t>(order[0])];
  std::vector<double> weights(kCount);
  double total = 0.0;
  for (int mu = 0; mu < kCount; ++mu) {
    weights[static_cast<size_t>(mu)] =
        std::exp(beta * (scores[static_cast<size_t>(mu)] - top));
    total += weights[static_cast<size_t>(mu)];
  }
  double head = 0.0;
  for (uint32_t i = 0; i < kTopK; ++i) {
    head += weights[static_cast<size_t>(order[i])];
  }
  std::vector<double> full(kDim, 0.0);
  std::vector<double> truncated(kDim, 0.0);
  for (int mu = 0; mu < kCount; ++mu) {
    const double p = weights[static_cast<size_t>(mu)] / total;
    for (int j = 0; j < kDim; ++j) {
      full[static_cast<size_t>(j)] +=
          p * patterns[static_cast<size_t>(mu) * kDim + static_cast<size_t>(j)];
    }
  }
  for (uint32_t i = 0; i < kTopK; ++i) {
    const size_t mu = static_cast<size_t>(order[i]);
    const double p = weights[mu] / head;
    for (size_t j = 0; j < kDim; ++j) {
      truncated[j] += p * patterns[mu * kDim + j];
    }
  }
  Truncation out;
  for (size_t j = 0; j < kDim; ++j) {
    out.error += (full[j] - truncated[j]) * (full[j] - truncated[j]);
  }
  out.error = std::sqrt(out.error);
  out.tail = 1.0 - head / total;
  out.certificate =
      2.0 * (kCount - kTopK) *
      std::exp(-beta * (top - scores[static_cast<size_t>(order[kTopK])]));
  return out;
}

// §F 15 at β = 40: the error chain holds for every query, and the engine
// certifies its one-step answers within the bound it reports.
TEST(ApproximateProtocolTest, Test15CertificateHoldsAtBeta40) {
  const Problem& p = RandomProblem();
  auto bank = IndexedBank(p.patterns, kDim, 200);
  double max_error = 0.0, max_tail = 0.0, max_certificate = 0.0;
  double max_gap = 0.0, max_reported = 0.0;
  int certified = 0;
  for (int q = 0; q < kQueries; ++q) {
    SCOPED_TRACE(q);
    const absl::Span<const float> query = Row(p.queries, q, kDim);
    const Truncation t = OneStep(p.patterns, query, 40.0);
    EXPECT_LE(t.error, 2.0 * t.tail + 1e-12);
    EXPECT_LE(2.0 * t.tail, t.certificate);
    max_error = std::max(max_error, t.error);
    max_tail = std::max(max_tail, 2.0 * t.tail);
    max_certificate = std::max(max_certificate, t.certificate);

    auto dense =
        Retriever::Retrieve(*bank, query, Options(SearchMode::kExact, 40, 1));
    auto approx = Retriever::Retrieve(*bank, query,
                                      Options(SearchMode::kApproximate, 40, 1));
    ASSERT_THAT(dense, IsOk());
    ASSERT_THAT(approx, IsOk());
    EXPECT_TRUE(approx->exact);
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    if (approx->fell_back) continue;
    ++certified;
    EXPECT_TRUE(approx->approximate);
    const double gap = Distance(approx->pattern, dense->pattern);
    // float arithmetic on both sides: 1e-5 of slack.
    EXPECT_LE(gap, static_cast<double>(approx->truncation_bound) + 1e-5);
    max_gap = std::max(max_gap, gap);
    max_reported =
        std::max(max_reported, static_cast<double>(approx->truncation_bound));
  }
  std::printf(
      "[ protocol ] §F15 β=40: max ‖T_full−T_k‖ %.2g ≤ max 2·tail %.2g ≤ "
      "max certificate %.2g; engine certified %d/%d, max gap %.2g ≤ max "
      "reported bound %.2g\n",
      max_error, max_tail, max_certificate, certified, kQueries, max_gap,
      max_reported);
  // algorithms.md measured 3.6e-8 ≤ 1.0e-7 ≤ 7e-5 on its draw (this one:
  // 7.4e-8 ≤ 2.0e-7 ≤ 1.9e-4): truncation costs nothing measurable. The
  // engine certifies a one-step answer when the tail mass bound is <= 1e-4,
  // which a query or two of the thousand miss (they fall back).
  EXPECT_LE(max_error, 1e-6);
  EXPECT_LE(max_certificate, 1e-3);
  EXPECT_GE(certified, kQueries * 99 / 100);
}

// §F 15 at β = 10: the tail carries real mass; nothing is certified and
// every query is answered by the dense scan.
TEST(ApproximateProtocolTest, Test15NotCertifiedAtBeta10) {
  const Problem& p = RandomProblem();
  auto bank = IndexedBank(p.patterns, kDim, 200);
  double mean_tail = 0.0;
  for (int q = 0; q < kQueries; ++q) {
    SCOPED_TRACE(q);
    const absl::Span<const float> query = Row(p.queries, q, kDim);
    const Truncation t = OneStep(p.patterns, query, 10.0);
    EXPECT_LE(t.error, 2.0 * t.tail + 1e-12);
    mean_tail += 2.0 * t.tail / kQueries;
    auto dense =
        Retriever::Retrieve(*bank, query, Options(SearchMode::kExact, 10, 1));
    auto approx = Retriever::Retrieve(*bank, query,
                                      Options(SearchMode::kApproximate, 10, 1));
    ASSERT_THAT(approx, IsOk());
    EXPECT_TRUE(approx->fell_back);
    EXPECT_FALSE(approx->approximate);
    EXPECT_TRUE(approx->exact);
    EXPECT_EQ(approx->pattern, dense->pattern);
  }
  std::printf(
      "[ protocol ] §F15 β=10: mean 2·tail %.3f, every query fell back\n",
      mean_tail);
  // algorithms.md: 2·tail ≈ 1.7.
  EXPECT_GT(mean_tail, 1.0);
}

// §F 16: a deliberately poor index (ef_search = 16) misses true top-1s;
// the certificate catches every miss and the dense fallback answers.
TEST(ApproximateProtocolTest, Test16PoorIndexStillGivesTheDenseArgmax) {
  const Problem& p = RandomProblem();
  auto bank = IndexedBank(p.patterns, kDim, 16);
  for (const float beta : {40.0f, 20.0f}) {
    int agree = 0, fell_back = 0, index_missed = 0;
    for (int q = 0; q < kQueries; ++q) {
      const absl::Span<const float> query = Row(p.queries, q, kDim);
      auto dense = Retriever::Retrieve(*bank, query,
                                       Options(SearchMode::kExact, beta, 0));
      auto approx = Retriever::Retrieve(
          *bank, query, Options(SearchMode::kApproximate, beta, 0));
      ASSERT_THAT(dense, IsOk());
      ASSERT_THAT(approx, IsOk());
      agree += approx->nearest_id == dense->nearest_id;
      fell_back += approx->fell_back;
      // What the raw index returns for the query: its top-1 against the
      // exact one (the dense path's first-step winner is the top score).
      auto one = Retriever::Retrieve(*bank, query,
                                     Options(SearchMode::kExact, 1000, 1));
      ASSERT_THAT(one, IsOk());
      std::vector<float> unit(query.begin(), query.end());
      double norm = 0.0;
      for (float v : unit) norm += static_cast<double>(v) * v;
      for (float& v : unit) v = static_cast<float>(v / std::sqrt(norm));
      std::vector<AnnIndex::Candidate> hits;
      bank->WithReader([&](const BankView& view) {
        if (view.index != nullptr) view.index->Search(unit, kTopK, &hits);
        return 0;
      });
      index_missed += hits.empty() || hits[0].id != one->nearest_id;
    }
    std::printf(
        "[ protocol ] §F16 ef_search=16 β=%.0f: index top-1 wrong on %d/%d, "
        "fell back %d, final argmax = dense on %d/%d\n",
        beta, index_missed, kQueries, fell_back, agree, kQueries);
    EXPECT_EQ(agree, kQueries) << "β = " << beta;
  }
}

// The three modes on Fashion-MNIST: 20,000 training images; queries are
// test images and half-masked training images.
TEST(ApproximateProtocolTest, ModesAgreeOnFashionMnist) {
  constexpr int kImages = 20000;
  constexpr int kPixels = 784;
  auto train = bench::LoadFashionMnist("train", kImages);
  auto test = bench::LoadFashionMnist("t10k", 500);
  ASSERT_THAT(train, IsOk());
  ASSERT_THAT(test, IsOk());
  auto bank = IndexedBank(train->pixels, kPixels, 128);
  std::vector<float> queries = test->pixels;
  std::mt19937 rng(7);
  std::vector<float> masked(500 * kPixels);
  bench::UHopDropout(
      absl::MakeConstSpan(train->pixels).subspan(0, masked.size()), rng,
      absl::MakeSpan(masked));
  queries.insert(queries.end(), masked.begin(), masked.end());
  const int count = static_cast<int>(queries.size() / kPixels);
  for (const float beta : {0.0f, 50.0f}) {
    int agree = 0, fell_back = 0, by_separation = 0;
    for (int q = 0; q < count; ++q) {
      const absl::Span<const float> query = Row(queries, q, kPixels);
      RetrieveOptions exact;
      exact.search = SearchMode::kExact;
      exact.beta = beta;
      RetrieveOptions approximate = exact;
      approximate.search = SearchMode::kApproximate;
      auto dense = Retriever::Retrieve(*bank, query, exact);
      auto approx = Retriever::Retrieve(*bank, query, approximate);
      ASSERT_THAT(dense, IsOk());
      ASSERT_THAT(approx, IsOk());
      agree += approx->nearest_id == dense->nearest_id;
      fell_back += approx->fell_back;
      by_separation += approx->certified_by_separation;
    }
    std::printf(
        "[ protocol ] Fashion-MNIST 20k, β=%s: nearest_id agrees on %d/%d, "
        "fell back %d, certified by separation %d\n",
        beta == 0.0f ? "auto" : "50", agree, count, fell_back, by_separation);
    EXPECT_GE(agree, count * 995 / 1000) << "β = " << beta;
  }
}

}  // namespace
}  // namespace hopfield
