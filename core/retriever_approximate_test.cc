// Approximate retrieval (top-k candidates from the bank's search index,
// with a truncation certificate and a dense fallback) against the dense
// path, on banks small enough for Debug and sanitizer builds. The §F 15-16
// protocol sizes run in tests/approximate_protocol_test.cc.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/ann_index.h"
#include "core/feature_map.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/testing/random_patterns.h"
#include "core/testing/retrieval.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::Distance;
using ::hopfield::testing::IsOk;

constexpr int kDim = 16;

std::unique_ptr<MemoryBank> NewBank(
    SeparationUpdate update = SeparationUpdate::kSynchronous,
    Similarity similarity = Similarity::kCosine) {
  BankOptions options;
  options.dim = kDim;
  options.similarity = similarity;
  options.index_ef_construction = 64;
  BankEnvironment env;
  env.separation_update = update;
  env.index_min_patterns = 0;
  auto bank = MemoryBank::Create("approx", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  return *std::move(bank);
}

// Unit patterns and queries: each query a stored pattern plus noise σ.
struct Problem {
  std::vector<float> patterns;
  std::vector<PatternId> ids;
  std::vector<float> queries;
  std::vector<PatternId> sources;
};

Problem Fill(MemoryBank& bank, int count, int queries, float sigma,
             uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  p.patterns = testing::UnitPatterns(rng, count, kDim);
  auto ids = bank.Add(std::vector<PatternId>(static_cast<size_t>(count), 0),
                      p.patterns);
  EXPECT_THAT(ids, IsOk());
  p.ids = *ids;
  std::normal_distribution<float> noise(0.0f, sigma);
  std::uniform_int_distribution<int> pick(0, count - 1);
  for (int q = 0; q < queries; ++q) {
    const auto source = static_cast<size_t>(pick(rng));
    p.sources.push_back(p.ids[source]);
    for (int j = 0; j < kDim; ++j) {
      p.queries.push_back(p.patterns[source * kDim + static_cast<size_t>(j)] +
                          noise(rng));
    }
  }
  return p;
}

absl::Span<const float> Query(const Problem& p, int q) {
  return absl::MakeConstSpan(p.queries).subspan(static_cast<size_t>(q) * kDim,
                                                kDim);
}

RetrieveOptions Options(SearchMode search, float beta, uint32_t top_k = 16,
                        uint32_t iterations = 0) {
  return testing::SearchOptions(search, beta, top_k, iterations);
}

TEST(ApproximateRetrievalTest, CertifiedOneStepIsWithinItsBound) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 3000, 100, 0.05f, 1);
  int approximate = 0;
  for (int q = 0; q < 100; ++q) {
    // β = 80: 16 dimensions crowd 3,000 patterns (nearest cosines ~0.8).
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 80.0f, 16, 1));
    auto approx = Retriever::Retrieve(
        *bank, Query(p, q), Options(SearchMode::kApproximate, 80.0f, 16, 1));
    ASSERT_THAT(dense, IsOk());
    ASSERT_THAT(approx, IsOk());
    EXPECT_TRUE(approx->exact);
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    if (approx->fell_back) continue;
    ++approximate;
    EXPECT_TRUE(approx->approximate);
    EXPECT_LE(Distance(approx->pattern, dense->pattern),
              static_cast<double>(approx->truncation_bound) + 1e-5)
        << "query " << q;
    EXPECT_LT(approx->patterns_scored, 100u);
    EXPECT_EQ(approx->index_queries, 1u);
  }
  EXPECT_GE(approximate, 90);
}

// Weights of at most 1e-9 are left out of the update; the bound says so.
// With every pattern in the set (no tail) it is m times their sum: above 0,
// at most m·M·1e-9, and it covers the gap to the dense update.
TEST(ApproximateRetrievalTest, LeftOutNegligibleWeightsAreBounded) {
  auto bank = NewBank();
  constexpr int kCount = 300;
  const Problem p = Fill(*bank, kCount, 20, 0.05f, 12);
  for (int q = 0; q < 20; ++q) {
    // β = 40 on 16-dim unit patterns: most weights lie in (e^{-87}, 1e-9].
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 40.0f, 16, 1));
    auto approx = Retriever::Retrieve(
        *bank, Query(p, q), Options(SearchMode::kApproximate, 40.0f, 512, 1));
    ASSERT_THAT(dense, IsOk());
    ASSERT_THAT(approx, IsOk());
    ASSERT_TRUE(approx->approximate);
    ASSERT_FALSE(approx->fell_back);
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    EXPECT_GT(approx->truncation_bound, 0.0f) << "query " << q;
    EXPECT_LE(approx->truncation_bound, kCount * 1e-9f) << "query " << q;
    EXPECT_LE(Distance(approx->pattern, dense->pattern),
              static_cast<double>(approx->truncation_bound) + 1e-6)
        << "query " << q;
  }
}

// Too few candidates to certify: the set is fetched again, wider, before
// the dense scan is considered.
TEST(ApproximateRetrievalTest, AnUncertifiedSetIsWidenedFirst) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 3000, 100, 0.05f, 9);
  int widened = 0;
  for (int q = 0; q < 100; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 80.0f, 2, 1));
    auto approx = Retriever::Retrieve(
        *bank, Query(p, q), Options(SearchMode::kApproximate, 80.0f, 2, 1));
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    if (approx->fell_back) continue;
    EXPECT_LE(Distance(approx->pattern, dense->pattern),
              static_cast<double>(approx->truncation_bound) + 1e-5);
    // One iteration: more than one search means a wider set.
    if (approx->index_queries > 1) ++widened;
  }
  EXPECT_GE(widened, 20);  // the others are proved by separation
}

TEST(ApproximateRetrievalTest, LowBetaFallsBackToTheDenseScan) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 3000, 20, 0.05f, 2);
  for (int q = 0; q < 20; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 2.0f));
    auto approx = Retriever::Retrieve(*bank, Query(p, q),
                                      Options(SearchMode::kApproximate, 2.0f));
    ASSERT_THAT(approx, IsOk());
    // At β = 2 the tail of 3,000 patterns carries real mass: no certificate.
    EXPECT_TRUE(approx->fell_back);
    EXPECT_FALSE(approx->approximate);
    EXPECT_EQ(approx->pattern, dense->pattern);
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
  }
}

TEST(ApproximateRetrievalTest, IteratesToTheDenseFixedPoint) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 3000, 50, 0.1f, 3);
  int approximate = 0;
  for (int q = 0; q < 50; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 60.0f));
    auto approx = Retriever::Retrieve(*bank, Query(p, q),
                                      Options(SearchMode::kApproximate, 60.0f));
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    EXPECT_EQ(approx->nearest_id, p.sources[static_cast<size_t>(q)]);
    EXPECT_LE(Distance(approx->pattern, dense->pattern), 1e-4);
    EXPECT_TRUE(approx->converged);
    if (!approx->fell_back) {
      ++approximate;
      EXPECT_GE(approx->index_queries, 1u);
      EXPECT_LE(approx->index_queries, approx->iterations);
    }
  }
  EXPECT_GE(approximate, 40);
}

// Without separation statistics (all pending) a set fetched for the query
// is kept for later states while the exact top-k bound, widened by how far
// the state moved since, still certifies it: fewer index searches than
// iterations, and still the dense answer.
TEST(ApproximateRetrievalTest, ASetIsKeptWhileTheStateStaysNearItsAnchor) {
  auto bank = NewBank(SeparationUpdate::kDeferred);
  const Problem p = Fill(*bank, 3000, 50, 0.02f, 8);
  ASSERT_EQ(bank->separation_pending(), 3000u);
  ASSERT_TRUE(testing::IndexEverything(*bank));
  int reused = 0;
  for (int q = 0; q < 50; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 80.0f));
    auto approx = Retriever::Retrieve(*bank, Query(p, q),
                                      Options(SearchMode::kApproximate, 80.0f));
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    EXPECT_LE(Distance(approx->pattern, dense->pattern), 1e-4);
    if (approx->fell_back) continue;
    EXPECT_FALSE(approx->certified_by_separation);
    if (approx->index_queries < approx->iterations) ++reused;
  }
  EXPECT_GE(reused, 40);
}

// Structured keys (near a 20-dimensional subspace of 128): the bank's
// index projects them (32 dimensions) and ranks by the projected cosine, so
// the best 1.5k of the query's 2.5k-deep fetch are re-ranked by the exact
// score; answers stay the dense path's, each certified or answered by the
// dense scan.
TEST(ApproximateRetrievalTest, AProjectedIndexIsReRankedToTheDenseAnswer) {
  constexpr int kWide = 128;
  constexpr int kCount = 3000;
  BankOptions options;
  options.dim = kWide;
  options.index_ef_construction = 64;
  BankEnvironment env;
  env.index_min_patterns = 0;
  auto created = MemoryBank::Create("projected", options, std::move(env));
  ASSERT_THAT(created, IsOk());
  MemoryBank& bank = **created;
  std::mt19937 rng(12);
  const std::vector<float> patterns =
      testing::LowRankUnitPatterns(rng, kCount, kWide, 20, 0.05f);
  auto ids = bank.Add(std::vector<PatternId>(static_cast<size_t>(kCount), 0),
                      patterns);
  ASSERT_THAT(ids, IsOk());
  ASSERT_TRUE(testing::IndexEverything(bank));
  const uint32_t search_dim = bank.WithReader([](const BankView& view) {
    return view.index == nullptr ? 0u : view.index->search_dim();
  });
  ASSERT_EQ(search_dim, 32u);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  int approximate = 0;
  int agree = 0;
  for (int q = 0; q < 100; ++q) {
    const auto source = static_cast<size_t>(q) * 29;
    std::vector<float> query(
        patterns.begin() + static_cast<std::ptrdiff_t>(source * kWide),
        patterns.begin() + static_cast<std::ptrdiff_t>((source + 1) * kWide));
    for (float& v : query) v += noise(rng);
    auto dense =
        Retriever::Retrieve(bank, query, Options(SearchMode::kExact, 100.0f));
    auto approx = Retriever::Retrieve(
        bank, query, Options(SearchMode::kApproximate, 100.0f, 16));
    ASSERT_THAT(dense, IsOk());
    ASSERT_THAT(approx, IsOk());
    EXPECT_TRUE(approx->exact);
    if (approx->nearest_id == dense->nearest_id) ++agree;
    if (approx->fell_back) continue;
    ++approximate;
    EXPECT_EQ(approx->nearest_id, (*ids)[source]) << "query " << q;
    EXPECT_LE(Distance(approx->pattern, dense->pattern), 1e-3) << "query " << q;
    // The energy over the set misses at most the certified tail's mass.
    EXPECT_NEAR(approx->energy, dense->energy, 1e-4) << "query " << q;
    EXPECT_LT(approx->patterns_scored, static_cast<uint64_t>(kCount));
  }
  EXPECT_GE(agree, 99);
  EXPECT_GE(approximate, 90);
}

TEST(ApproximateRetrievalTest, SparsemaxTailsCarryNoWeight) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 2000, 30, 0.05f, 4);
  int approximate = 0;
  for (int q = 0; q < 30; ++q) {
    RetrieveOptions o = Options(SearchMode::kApproximate, 20.0f);
    o.separation = Separation::kSparsemax;
    RetrieveOptions d = o;
    d.search = SearchMode::kExact;
    auto approx = Retriever::Retrieve(*bank, Query(p, q), o);
    auto dense = Retriever::Retrieve(*bank, Query(p, q), d);
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    if (approx->fell_back) continue;
    ++approximate;
    EXPECT_EQ(approx->truncation_bound, 0.0f);
    EXPECT_LE(Distance(approx->pattern, dense->pattern), 1e-5);
  }
  EXPECT_GE(approximate, 20);
}

TEST(ApproximateRetrievalTest, PatternsNotYetIndexedAreStillFound) {
  auto bank = NewBank(SeparationUpdate::kDeferred);
  const Problem p = Fill(*bank, 2000, 0, 0.01f, 5);
  while (bank->RefreshIndex(100000) > 0) {
  }
  while (bank->RefreshSeparation(100000) > 0) {
  }
  // New patterns: in the bank, not in the index.
  std::mt19937 rng(6);
  const std::vector<float> fresh = testing::UnitPatterns(rng, 5, kDim);
  auto ids = bank->Add(std::vector<PatternId>(5, 0), fresh);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(bank->index_pending(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    auto found = Retriever::Retrieve(
        *bank, absl::MakeConstSpan(fresh).subspan(i * kDim, kDim),
        Options(SearchMode::kApproximate, 50.0f));
    ASSERT_THAT(found, IsOk());
    EXPECT_EQ(found->nearest_id, (*ids)[i]);
    EXPECT_TRUE(found->approximate);
  }
}

TEST(ApproximateRetrievalTest, AStaleIndexAfterAMapChangeStaysCorrect) {
  auto bank = NewBank(SeparationUpdate::kDeferred);
  const Problem p = Fill(*bank, 2000, 30, 0.05f, 7);
  while (bank->RefreshIndex(100000) > 0) {
  }
  std::mt19937 rng(8);
  const std::vector<float> entries = testing::GaussianPatterns(rng, kDim, 12);
  auto map = FeatureMap::Create(
      Eigen::VectorXf::Zero(kDim),
      Eigen::Map<const Eigen::MatrixXf>(entries.data(), 12, kDim), 1, {});
  ASSERT_THAT(map, IsOk());
  ASSERT_THAT(bank->SetFeatureMap(*std::move(map)), IsOk());
  ASSERT_FALSE(bank->Stats().index_current);
  for (int q = 0; q < 30; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 40.0f));
    auto approx = Retriever::Retrieve(*bank, Query(p, q),
                                      Options(SearchMode::kApproximate, 40.0f));
    ASSERT_THAT(approx, IsOk());
    // Separation is pending after the map change and the index is in the
    // old space: nothing certifies, so the dense scan answers.
    EXPECT_TRUE(approx->fell_back);
    EXPECT_EQ(approx->pattern, dense->pattern);
  }
  while (bank->RefreshSeparation(100000) > 0) {
  }
  while (bank->RefreshIndex(100000) > 0) {
  }
  ASSERT_TRUE(bank->Stats().index_current);
  int approximate = 0;
  for (int q = 0; q < 30; ++q) {
    auto dense = Retriever::Retrieve(*bank, Query(p, q),
                                     Options(SearchMode::kExact, 100.0f));
    auto approx = Retriever::Retrieve(
        *bank, Query(p, q), Options(SearchMode::kApproximate, 100.0f));
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    if (!approx->fell_back) ++approximate;
  }
  EXPECT_GE(approximate, 20);
}

TEST(ApproximateRetrievalTest, BatchesTakeThePerQueryPath) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 2000, 40, 0.05f, 9);
  RetrieveOptions options = Options(SearchMode::kApproximate, 40.0f);
  options.threads = 2;
  auto batch = Retriever::RetrieveBatch(*bank, p.queries, options);
  ASSERT_THAT(batch, IsOk());
  ASSERT_EQ(batch->size(), 40u);
  for (int q = 0; q < 40; ++q) {
    auto one = Retriever::Retrieve(*bank, Query(p, q), options);
    ASSERT_THAT(one, IsOk());
    const RetrieveResult& b = (*batch)[static_cast<size_t>(q)];
    EXPECT_EQ(b.pattern, one->pattern);
    EXPECT_EQ(b.nearest_id, one->nearest_id);
    EXPECT_EQ(b.approximate, one->approximate);
  }
}

TEST(ApproximateRetrievalTest, ModesAndBanksWithoutAnIndexScanDensely) {
  auto bank = NewBank();
  const Problem p = Fill(*bank, 500, 1, 0.05f, 10);
  // AUTO below kAutoApproximateMinPatterns: dense.
  auto automatic = Retriever::Retrieve(*bank, Query(p, 0),
                                       Options(SearchMode::kAuto, 40.0f));
  ASSERT_THAT(automatic, IsOk());
  EXPECT_FALSE(automatic->approximate);
  EXPECT_FALSE(automatic->fell_back);
  // A dot bank keeps no index: APPROXIMATE scans densely, and says so.
  auto dot = NewBank(SeparationUpdate::kSynchronous, Similarity::kDot);
  Fill(*dot, 500, 0, 0.01f, 11);
  auto scanned = Retriever::Retrieve(*dot, Query(p, 0),
                                     Options(SearchMode::kApproximate, 4.0f));
  ASSERT_THAT(scanned, IsOk());
  EXPECT_FALSE(scanned->approximate);
  EXPECT_EQ(scanned->patterns_scored, 500u * scanned->iterations);
}

// Store, Forget, feature-map publication (what Train does at its end),
// background refreshes and approximate retrievals at once (run under ASan
// and TSan by the sanitizer presets): every retrieval succeeds and is
// exact, and at rest the approximate path agrees with the dense one.
TEST(ApproximateRetrievalTest, StoreForgetTrainAndRetrieveConcurrently) {
  auto bank = NewBank(SeparationUpdate::kDeferred);
  Fill(*bank, 600, 0, 0.01f, 21);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::mt19937 rng(22);
    for (int round = 0; round < 30; ++round) {
      const std::vector<float> values = testing::UnitPatterns(rng, 20, kDim);
      auto ids = bank->Add(std::vector<PatternId>(20, 0), values);
      ASSERT_THAT(ids, IsOk());
      // Replace a few, forget a few (some before they are ever indexed).
      EXPECT_THAT(
          bank->Add(absl::MakeConstSpan(*ids).first(2),
                    absl::MakeConstSpan(values).first(size_t{2} * kDim)),
          IsOk());
      EXPECT_THAT(bank->Remove(absl::MakeConstSpan(*ids).subspan(5, 4)),
                  IsOk());
    }
  });
  std::thread trainer([&] {
    std::mt19937 rng(23);
    for (uint32_t version = 1; version <= 4; ++version) {
      const std::vector<float> entries =
          testing::GaussianPatterns(rng, kDim, kDim);
      auto map = FeatureMap::Create(
          Eigen::VectorXf::Zero(kDim),
          Eigen::Map<const Eigen::MatrixXf>(entries.data(), kDim, kDim),
          version, {});
      ASSERT_THAT(map, IsOk());
      EXPECT_THAT(bank->SetFeatureMap(*std::move(map)), IsOk());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::thread refresher([&] {
    while (!done) {
      bank->RefreshSeparation(64);
      bank->RefreshIndex(64);
    }
  });
  auto read = [&](uint32_t seed) {
    std::mt19937 rng(seed);
    int count = 0;
    while (!done || count < 20) {
      const std::vector<float> query = testing::UnitPatterns(rng, 1, kDim);
      auto result = Retriever::Retrieve(
          *bank, query, Options(SearchMode::kApproximate, 40.0f));
      ASSERT_THAT(result, IsOk());
      EXPECT_TRUE(result->exact);
      EXPECT_GE(result->nearest_weight, 0.0f);
      EXPECT_LE(result->nearest_weight, 1.0f + 1e-6f);
      ++count;
    }
  };
  std::thread reader1(read, 24u);
  std::thread reader2(read, 25u);
  writer.join();
  trainer.join();
  done = true;
  refresher.join();
  reader1.join();
  reader2.join();
  while (bank->RefreshIndex(1 << 20) > 0) {
  }
  while (bank->RefreshSeparation(1 << 20) > 0) {
  }
  EXPECT_EQ(bank->index_pending(), 0u);
  std::mt19937 rng(26);
  for (int q = 0; q < 20; ++q) {
    const std::vector<float> query = testing::UnitPatterns(rng, 1, kDim);
    auto dense =
        Retriever::Retrieve(*bank, query, Options(SearchMode::kExact, 40.0f));
    auto approx = Retriever::Retrieve(*bank, query,
                                      Options(SearchMode::kApproximate, 40.0f));
    ASSERT_THAT(approx, IsOk());
    EXPECT_EQ(approx->nearest_id, dense->nearest_id);
    EXPECT_LE(Distance(approx->pattern, dense->pattern), 1e-4);
  }
}

}  // namespace
}  // namespace hopfield
