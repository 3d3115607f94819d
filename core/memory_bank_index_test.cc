// The search index a cosine bank keeps beside its patterns (MemoryBank +
// AnnIndex): when it is built, how writes, removals and feature-map changes
// keep it in step, what it costs, and that concurrent writers, index
// refreshes and readers agree.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/feature_map.h"
#include "core/memory_bank.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::IsOkAndHolds;

std::unique_ptr<MemoryBank> NewBank(
    uint32_t dim, uint64_t index_min_patterns,
    SeparationUpdate update = SeparationUpdate::kSynchronous,
    Similarity similarity = Similarity::kCosine,
    std::shared_ptr<MemoryBudget> budget = nullptr,
    uint32_t index_build_threads = 1) {
  BankOptions options;
  options.dim = dim;
  options.similarity = similarity;
  options.index_ef_construction = 64;  // quick in Debug builds
  BankEnvironment env;
  env.separation_update = update;
  env.index_min_patterns = index_min_patterns;
  env.budget = std::move(budget);
  env.index_build_threads = index_build_threads;
  auto bank = MemoryBank::Create("indexed", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  return *std::move(bank);
}

std::vector<PatternId> AddRandom(MemoryBank& bank, int count, uint32_t seed,
                                 std::vector<float>* values = nullptr) {
  std::mt19937 rng(seed);
  std::vector<float> patterns =
      testing::GaussianPatterns(rng, count, static_cast<int>(bank.dim()));
  auto ids =
      bank.Add(std::vector<PatternId>(static_cast<size_t>(count), 0), patterns);
  EXPECT_THAT(ids, IsOk());
  if (values != nullptr) *values = patterns;
  return *ids;
}

// Checks the index invariant of a bank at rest: every stored pattern is
// either on the unindexed list or found by the index as its own best match
// under the bank's current keys.
void ExpectIndexCovers(const MemoryBank& bank) {
  bank.WithReader([&](const BankView& view) {
    ASSERT_NE(view.index, nullptr);
    const std::vector<PatternId> unindexed(view.unindexed.begin(),
                                           view.unindexed.end());
    std::vector<AnnIndex::Candidate> found;
    std::vector<float> unit(static_cast<size_t>(view.key_dim()));
    for (Eigen::Index c = 0; c < view.size(); ++c) {
      const PatternId id = view.ids[static_cast<size_t>(c)];
      if (std::find(unindexed.begin(), unindexed.end(), id) !=
          unindexed.end()) {
        continue;
      }
      Eigen::Map<Eigen::VectorXf>(unit.data(), view.key_dim()) =
          view.keys.col(c) * view.key_inverse_norms[c];
      view.index->Search(unit, 4, &found);
      ASSERT_FALSE(found.empty());
      bool self = false;
      for (const auto& candidate : found) {
        if (candidate.id == id) {
          self = true;
          // A projected graph holds half floats (2^-11 relative rounding
          // per component): a vector's similarity to itself is within
          // about 2 x 2^-11 of 1 at worst (measured up to 2.7e-4 at 16 dims).
          EXPECT_NEAR(candidate.similarity, 1.0f,
                      view.index->half() ? 2e-3f : 1e-4f)
              << "id " << id;
        }
      }
      EXPECT_TRUE(self) << "id " << id << " is indexed but not found";
    }
  });
}

TEST(MemoryBankIndexTest, BuiltOnceTheBankReachesTheThreshold) {
  auto bank = NewBank(16, 100);
  AddRandom(*bank, 99, 1);
  BankStats stats = bank->Stats();
  EXPECT_EQ(stats.index_size, 0u);
  EXPECT_EQ(stats.index_pending, 0u);
  EXPECT_FALSE(stats.index_current);
  const uint64_t without_index = stats.memory_bytes;
  AddRandom(*bank, 1, 2);
  stats = bank->Stats();
  EXPECT_EQ(stats.index_size, 100u);
  EXPECT_EQ(stats.index_pending, 0u);
  EXPECT_TRUE(stats.index_current);
  EXPECT_GT(stats.memory_bytes, without_index + 1000000);  // hnswlib's locks
  ExpectIndexCovers(*bank);
}

TEST(MemoryBankIndexTest, DotBanksKeepNoIndex) {
  auto bank = NewBank(8, 0, SeparationUpdate::kSynchronous, Similarity::kDot);
  AddRandom(*bank, 50, 3);
  EXPECT_EQ(bank->Stats().index_size, 0u);
  EXPECT_EQ(bank->index_pending(), 0u);
  EXPECT_EQ(bank->RefreshIndex(100), 0u);
}

TEST(MemoryBankIndexTest, ReplacementsAndRemovalsKeepItInStep) {
  auto bank = NewBank(16, 0);
  std::vector<float> values;
  const std::vector<PatternId> ids = AddRandom(*bank, 300, 4, &values);
  // Replace 10 patterns with new values, remove 20 others.
  std::mt19937 rng(5);
  const std::vector<float> fresh = testing::GaussianPatterns(rng, 10, 16);
  ASSERT_THAT(bank->Add(absl::MakeConstSpan(ids).first(10), fresh), IsOk());
  EXPECT_THAT(bank->Remove(absl::MakeConstSpan(ids).subspan(100, 20)),
              IsOkAndHolds(20u));
  const BankStats stats = bank->Stats();
  EXPECT_EQ(stats.index_size, 280u);
  EXPECT_EQ(stats.index_pending, 0u);
  ExpectIndexCovers(*bank);
  // The removed ones are gone from the index.
  bank->WithReader([&](const BankView& view) {
    for (size_t i = 100; i < 120; ++i) {
      EXPECT_FALSE(view.index->Contains(ids[i]));
    }
    return 0;
  });
}

TEST(MemoryBankIndexTest, DeferredBanksCatchUpInRefreshes) {
  auto bank = NewBank(16, 0, SeparationUpdate::kDeferred);
  const std::vector<PatternId> ids = AddRandom(*bank, 2500, 6);
  EXPECT_EQ(bank->index_pending(), 2500u);
  EXPECT_EQ(bank->Stats().index_size, 0u);
  // The first refresh builds the index over everything.
  EXPECT_EQ(bank->RefreshIndex(10), 2500u);
  EXPECT_EQ(bank->index_pending(), 0u);
  // Later writes are inserted in batches of at most the requested size.
  AddRandom(*bank, 30, 7);
  EXPECT_EQ(bank->index_pending(), 30u);
  EXPECT_EQ(bank->RefreshIndex(10), 10u);
  EXPECT_EQ(bank->index_pending(), 20u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_EQ(view.unindexed.size(), 20u);
    return 0;
  });
  EXPECT_EQ(bank->RefreshIndex(1000), 20u);
  EXPECT_EQ(bank->RefreshIndex(1000), 0u);
  ExpectIndexCovers(*bank);
}

TEST(MemoryBankIndexTest, RemovalsLeaveTheirTombstonesToTheRefresh) {
  auto bank = NewBank(16, 0, SeparationUpdate::kDeferred);
  const std::vector<PatternId> ids = AddRandom(*bank, 300, 21);
  ASSERT_EQ(bank->RefreshIndex(1000), 300u);
  // A removal does not touch the index (it never waits for its lock): the
  // entries stay live in the graph until the next refresh, but the bank
  // reports them gone.
  ASSERT_THAT(bank->Remove(absl::MakeConstSpan(ids).first(50)),
              IsOkAndHolds(50u));
  EXPECT_EQ(bank->index_deletions_pending(), 50u);
  EXPECT_EQ(bank->index_size(), 250u);
  EXPECT_EQ(bank->Stats().index_size, 250u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_TRUE(view.index->Contains(ids[0]));
    EXPECT_EQ(view.index->size(), 300u);
    return 0;
  });
  // A removed id stored again before the refresh is revived, not deleted.
  std::mt19937 rng(22);
  const std::vector<float> again = testing::GaussianPatterns(rng, 1, 16);
  ASSERT_THAT(bank->Add({ids[0]}, again), IsOk());
  // Then the refresh: tombstones first, then the insertion.
  EXPECT_EQ(bank->RefreshIndex(1000), 1u);
  EXPECT_EQ(bank->index_deletions_pending(), 0u);
  EXPECT_EQ(bank->index_size(), 251u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_TRUE(view.index->Contains(ids[0]));
    for (size_t i = 1; i < 50; ++i) EXPECT_FALSE(view.index->Contains(ids[i]));
    EXPECT_EQ(view.index->size(), 251u);
    return 0;
  });
  ExpectIndexCovers(*bank);
  // Replaced (their old entries still in the index), then removed before a
  // refresh inserted the new values: the old entries are tombstoned too.
  const auto replaced = absl::MakeConstSpan(ids).subspan(50, 5);
  ASSERT_THAT(bank->Add(replaced, testing::GaussianPatterns(rng, 5, 16)),
              IsOk());
  ASSERT_THAT(bank->Remove(replaced), IsOkAndHolds(5u));
  EXPECT_EQ(bank->index_deletions_pending(), 5u);
  EXPECT_EQ(bank->RefreshIndex(1000), 0u);
  EXPECT_EQ(bank->index_deletions_pending(), 0u);
  EXPECT_EQ(bank->index_size(), 246u);
  bank->WithReader([&](const BankView& view) {
    for (const PatternId id : replaced) EXPECT_FALSE(view.index->Contains(id));
    EXPECT_EQ(view.index->size(), 246u);
    return 0;
  });
  // New patterns take the tombstones' slots: the graph does not grow.
  AddRandom(*bank, 54, 23);
  EXPECT_EQ(bank->RefreshIndex(1000), 54u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_EQ(view.index->size(), 300u);
    EXPECT_EQ(view.index->size_with_deleted(), 300u);
    return 0;
  });
  ExpectIndexCovers(*bank);
}

TEST(MemoryBankIndexTest, AFeatureMapChangeRebuildsTheIndexInTheNewSpace) {
  auto bank = NewBank(16, 0, SeparationUpdate::kDeferred);
  AddRandom(*bank, 400, 8);
  ASSERT_EQ(bank->RefreshIndex(1000), 400u);
  std::mt19937 rng(9);
  const std::vector<float> entries = testing::GaussianPatterns(rng, 16, 8);
  const Eigen::MatrixXf w =
      Eigen::Map<const Eigen::MatrixXf>(entries.data(), 8, 16);
  auto map = FeatureMap::Create(Eigen::VectorXf::Zero(16), w, 1, {});
  ASSERT_THAT(map, IsOk());
  ASSERT_THAT(bank->SetFeatureMap(*std::move(map)), IsOk());
  BankStats stats = bank->Stats();
  // The old index keeps serving (old space) until the new one is swapped in.
  EXPECT_FALSE(stats.index_current);
  EXPECT_EQ(stats.index_size, 400u);
  EXPECT_EQ(stats.index_pending, 400u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_EQ(view.index->dim(), 16u);
    EXPECT_NE(view.index_map, view.feature_map);
    return 0;
  });
  EXPECT_EQ(bank->RefreshIndex(1), 400u);
  stats = bank->Stats();
  EXPECT_TRUE(stats.index_current);
  EXPECT_EQ(stats.index_pending, 0u);
  bank->WithReader([&](const BankView& view) {
    EXPECT_EQ(view.index->dim(), 8u);
    EXPECT_EQ(view.index_map, view.feature_map);
    return 0;
  });
  ExpectIndexCovers(*bank);
}

TEST(MemoryBankIndexTest, TombstonesTriggerARebuild) {
  auto bank = NewBank(8, 0);
  const std::vector<PatternId> ids = AddRandom(*bank, 4000, 10);
  ASSERT_THAT(bank->Remove(absl::MakeConstSpan(ids).first(3000)),
              IsOkAndHolds(3000u));
  // 4,000 entries against 1,000 live ones (2x + 1,024 slack): rebuilt.
  bank->WithReader([&](const BankView& view) {
    EXPECT_EQ(view.index->size(), 1000u);
    EXPECT_EQ(view.index->size_with_deleted(), 1000u);
    return 0;
  });
  ExpectIndexCovers(*bank);
}

TEST(MemoryBankIndexTest, AProjectedIndexIsRefittedAsTheBankGrows) {
  constexpr int kDim = 64;
  auto bank = NewBank(kDim, 0);
  std::mt19937 rng(11);
  const std::vector<float> data =
      testing::LowRankUnitPatterns(rng, 800, kDim, 8, 0.02f);
  auto add = [&](size_t first, size_t count) {
    ASSERT_THAT(bank->Add(std::vector<PatternId>(count, 0),
                          absl::MakeConstSpan(data).subspan(first * kDim,
                                                            count * kDim)),
                IsOk());
  };
  auto index = [&] {
    return bank->WithReader([](const BankView& view) { return view.index; });
  };
  add(0, 200);  // fitted to these 200
  const AnnIndex* const first = index();
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->projected());
  EXPECT_EQ(first->search_dim(), 16u);
  add(200, 599);  // 799 patterns: less than 4 x 200
  EXPECT_EQ(index(), first);
  add(799, 1);  // fourfold: rebuilt (and refitted) over all 800
  EXPECT_NE(index(), first);
  EXPECT_TRUE(index()->projected());
  EXPECT_EQ(bank->Stats().index_size, 800u);
  ExpectIndexCovers(*bank);
}

// The index built (and the estimates searched) on one thread or on two.
class MemoryBankIndexBuildTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(MemoryBankIndexBuildTest, DeferredBanksGetIndexDerivedStatisticsFirst) {
  auto bank = NewBank(32, 0, SeparationUpdate::kDeferred, Similarity::kCosine,
                      nullptr, /*index_build_threads=*/GetParam());
  const std::vector<PatternId> ids = AddRandom(*bank, 3000, 12);
  BankStats stats = bank->Stats();
  EXPECT_EQ(stats.separation_pending, 3000u);
  EXPECT_EQ(stats.separation_estimated, 0u);
  EXPECT_FALSE(stats.min_separation.has_value());
  // The index turn estimates every pattern's nearest neighbour.
  EXPECT_EQ(bank->RefreshIndex(std::numeric_limits<size_t>::max()), 3000u);
  ExpectIndexCovers(*bank);
  stats = bank->Stats();
  EXPECT_EQ(stats.separation_pending, 3000u);
  EXPECT_EQ(stats.separation_estimated, 3000u);
  ASSERT_TRUE(stats.min_separation.has_value());
  const double estimated_min = *stats.min_separation;
  std::vector<MemoryBank::Neighbour> estimates;
  for (const PatternId id : ids) {
    auto neighbour = bank->PatternSeparation(id);
    ASSERT_THAT(neighbour, IsOk());
    estimates.push_back(*neighbour);
  }
  // Then the exact refresh replaces the estimates.
  EXPECT_EQ(bank->RefreshSeparation(std::numeric_limits<size_t>::max()), 3000u);
  stats = bank->Stats();
  EXPECT_EQ(stats.separation_pending, 0u);
  EXPECT_EQ(stats.separation_estimated, 0u);
  ASSERT_TRUE(stats.min_separation.has_value());
  // An estimate scores a real neighbour exactly: it never understates Δ.
  EXPECT_GE(estimated_min, *stats.min_separation - 1e-6);
  int same = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto exact = bank->PatternSeparation(ids[i]);
    ASSERT_THAT(exact, IsOk());
    EXPECT_GE(estimates[i].separation, exact->separation - 1e-5);
    if (estimates[i].nearest_id == exact->nearest_id) ++same;
  }
  // Fixed seeds (two threads: measured over repeated runs); 3000/3000.
  EXPECT_GE(same, 2900);
}

INSTANTIATE_TEST_SUITE_P(Threads, MemoryBankIndexBuildTest,
                         ::testing::Values(1u, 2u));

TEST(MemoryBankIndexTest, AnIndexTheBudgetCannotHoldStaysPending) {
  // Room for the patterns but not for hnswlib's 2.6 MB of locks.
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20, "small");
  auto bank = NewBank(16, 0, SeparationUpdate::kSynchronous,
                      Similarity::kCosine, budget);
  AddRandom(*bank, 200, 11);  // Add itself succeeds
  const BankStats stats = bank->Stats();
  EXPECT_EQ(stats.pattern_count, 200u);
  EXPECT_EQ(stats.index_size, 0u);
  EXPECT_EQ(stats.index_pending, 200u);
  EXPECT_EQ(budget->used(), stats.memory_bytes);
}

TEST(MemoryBankIndexTest, WritersRefreshersAndReadersAgree) {
  auto bank = NewBank(8, 0, SeparationUpdate::kDeferred);
  AddRandom(*bank, 500, 12);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::mt19937 rng(13);
    std::vector<PatternId> previous;
    for (int round = 0; round < 40; ++round) {
      std::vector<PatternId> ids =
          AddRandom(*bank, 25, 100u + static_cast<uint32_t>(round));
      // Replace a few, remove a few (some before they are ever indexed).
      const std::vector<float> fresh = testing::GaussianPatterns(rng, 3, 8);
      EXPECT_THAT(bank->Add(absl::MakeConstSpan(ids).first(3), fresh), IsOk());
      EXPECT_THAT(bank->Remove(absl::MakeConstSpan(ids).subspan(10, 5)),
                  IsOk());
      // Remove a few of the last round's (likely indexed by now) and store
      // them again under the same ids: their owed tombstones must not
      // delete the new entries.
      if (!previous.empty()) {
        const auto again = absl::MakeConstSpan(previous).subspan(20, 3);
        EXPECT_THAT(bank->Remove(again), IsOk());
        EXPECT_THAT(bank->Add(again, testing::GaussianPatterns(rng, 3, 8)),
                    IsOk());
      }
      previous = ids;
      bank->RefreshSeparation(64);
    }
    done = true;
  });
  // Two refreshers: one's owed tombstones must not delete what the other
  // just inserted for an id stored again.
  std::thread refresher([&] {
    while (!done) bank->RefreshIndex(64);
  });
  std::thread second_refresher([&] {
    while (!done) bank->RefreshIndex(16);
  });
  std::thread reader([&] {
    std::vector<AnnIndex::Candidate> found;
    std::vector<float> query(8, 0.5f);
    while (!done) {
      bank->WithReader([&](const BankView& view) {
        if (view.index == nullptr) return 0;
        view.index->Search(query, 8, &found);
        for (const auto& candidate : found) {
          // Ids the index returns may be gone; those stored have a column.
          const auto it = view.column_of->find(candidate.id);
          if (it != view.column_of->end()) {
            EXPECT_EQ(view.ids[static_cast<size_t>(it->second)], candidate.id);
          }
        }
        return 0;
      });
    }
  });
  writer.join();
  refresher.join();
  second_refresher.join();
  reader.join();
  while (bank->RefreshIndex(1000) > 0) {
  }
  EXPECT_EQ(bank->index_pending(), 0u);
  EXPECT_EQ(bank->Stats().index_size, bank->size());
  ExpectIndexCovers(*bank);
}

}  // namespace
}  // namespace hopfield
