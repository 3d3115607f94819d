#include "core/memory_bank.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/capacity.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::FreshIds;
using ::hopfield::testing::GaussianPatterns;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::IsOkAndHolds;
using ::hopfield::testing::StatusIs;
using ::hopfield::testing::UnitPatterns;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<MemoryBank> NewBank(
    uint32_t dim, Similarity similarity = Similarity::kCosine,
    SeparationUpdate update = SeparationUpdate::kSynchronous) {
  BankOptions options;
  options.dim = dim;
  options.similarity = similarity;
  BankEnvironment env;
  env.separation_update = update;
  auto bank = MemoryBank::Create("test", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  return std::move(bank).value();
}

// Reference Δ_μ and nearest id by brute force over all pairs.
struct Reference {
  std::vector<double> separation;
  std::vector<PatternId> nearest;
  double min_separation = std::numeric_limits<double>::infinity();
};
Reference BruteForce(const MemoryBank& bank) {
  return bank.WithReader([](const BankView& view) {
    Reference ref;
    const bool cosine = view.similarity == Similarity::kCosine;
    for (Eigen::Index a = 0; a < view.size(); ++a) {
      double best = -std::numeric_limits<double>::infinity();
      PatternId best_id = 0;
      const Eigen::VectorXd xa = view.patterns.col(a).cast<double>();
      for (Eigen::Index b = 0; b < view.size(); ++b) {
        if (a == b) continue;
        double score = xa.dot(view.patterns.col(b).cast<double>());
        if (cosine)
          score /= xa.norm() * view.patterns.col(b).cast<double>().norm();
        if (score > best) {
          best = score;
          best_id = view.ids[static_cast<size_t>(b)];
        }
      }
      const double self = cosine ? 1.0 : xa.squaredNorm();
      ref.separation.push_back(self - best);
      ref.nearest.push_back(best_id);
      ref.min_separation = std::min(ref.min_separation, self - best);
    }
    return ref;
  });
}

void ExpectSeparationMatchesBruteForce(const MemoryBank& bank) {
  const Reference ref = BruteForce(bank);
  const std::vector<PatternId> ids = bank.WithReader([](const BankView& view) {
    return std::vector<PatternId>(view.ids.begin(), view.ids.end());
  });
  for (size_t i = 0; i < ids.size(); ++i) {
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const MemoryBank::Neighbour neighbour,
                                  bank.PatternSeparation(ids[i]));
    EXPECT_NEAR(neighbour.separation, ref.separation[i],
                1e-5 * (1.0 + std::abs(ref.separation[i])))
        << "id " << ids[i];
  }
  const BankStats stats = bank.Stats();
  ASSERT_TRUE(stats.min_separation.has_value());
  EXPECT_NEAR(*stats.min_separation, ref.min_separation,
              1e-5 * (1.0 + std::abs(ref.min_separation)));
}

TEST(MemoryBankTest, CreateValidatesNameAndOptions) {
  BankOptions options;
  options.dim = 4;
  EXPECT_THAT(MemoryBank::Create("Bad Name", options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.dim = 0;
  EXPECT_THAT(MemoryBank::Create("ok", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dim")));
}

TEST(MemoryBankTest, AddAssignsIdsAndGetReturnsTheSameBits) {
  auto bank = NewBank(3);
  const std::vector<float> values = {1, 2, 3, -4, 5.5f, 1e-30f};
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto ids, bank->Add({0, 0}, values));
  EXPECT_THAT(ids, ElementsAre(1, 2));
  EXPECT_EQ(bank->size(), 2u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto second, bank->Get(2));
  EXPECT_THAT(second, ElementsAre(-4.0f, 5.5f, 1e-30f));
  std::vector<float> both;
  EXPECT_THAT(bank->GetMany({2, 1}, &both), IsOk());
  EXPECT_THAT(both, ElementsAre(-4.0f, 5.5f, 1e-30f, 1.0f, 2.0f, 3.0f));
  // Explicit ids move the fresh-id counter above them.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(ids, bank->Add({100, 0}, values));
  EXPECT_THAT(ids, ElementsAre(100, 101));
}

TEST(MemoryBankTest, UpsertReplacesAStoredId) {
  auto bank = NewBank(2);
  ASSERT_THAT(bank->Add({7, 8}, {1, 0, 0, 1}), IsOk());
  ASSERT_THAT(bank->Add({7}, {0.5f, 0.5f}), IsOk());
  EXPECT_EQ(bank->size(), 2u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto seven, bank->Get(7));
  EXPECT_THAT(seven, ElementsAre(0.5f, 0.5f));
}

TEST(MemoryBankTest, RejectedBatchChangesNothing) {
  auto bank = NewBank(2);
  ASSERT_THAT(bank->Add({1}, {1, 0}), IsOk());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THAT(bank->Add({}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(
      bank->Add({0, 0}, {1, 2, 3}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("expected 2 x 2 = 4"), HasSubstr("got 3"))));
  EXPECT_THAT(
      bank->Add({1, 0}, {9, 9, 1, nan}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("patterns[1].values[1]"), HasSubstr("nan"))));
  EXPECT_THAT(bank->Add({0}, {inf, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inf")));
  EXPECT_THAT(bank->Add({1, 0}, {9, 9, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("patterns[1]"), HasSubstr("zero"))));
  EXPECT_THAT(bank->Add({5, 5}, {1, 1, 2, 2}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("repeats patterns[0].id")));
  EXPECT_THAT(bank->Add({0}, {3e38f, 3e38f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("norm")));
  EXPECT_EQ(bank->size(), 1u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto one, bank->Get(1));
  EXPECT_THAT(one, ElementsAre(1.0f, 0.0f));
}

TEST(MemoryBankTest, DotBanksAcceptZeroPatterns) {
  auto bank = NewBank(2, Similarity::kDot);
  EXPECT_THAT(bank->Add({0}, {0, 0}), IsOk());
}

TEST(MemoryBankTest, GetUnknownIdIsNotFoundNamingIt) {
  auto bank = NewBank(2);
  ASSERT_THAT(bank->Add({1}, {1, 0}), IsOk());
  EXPECT_THAT(bank->Get(42),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("42")));
  std::vector<float> out = {5};
  EXPECT_THAT(bank->GetMany({1, 43}, &out),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("43")));
  EXPECT_THAT(out, ElementsAre(5.0f));  // untouched
}

TEST(MemoryBankTest, RemoveSkipsUnknownIds) {
  auto bank = NewBank(2);
  ASSERT_THAT(bank->Add({1, 2, 3}, {1, 0, 0, 1, 1, 1}), IsOk());
  EXPECT_THAT(bank->Remove({2, 99, 2}), IsOkAndHolds(1u));
  EXPECT_EQ(bank->size(), 2u);
  EXPECT_FALSE(bank->Contains(2));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto three, bank->Get(3));
  EXPECT_THAT(three, ElementsAre(1.0f, 1.0f));
  EXPECT_THAT(bank->Remove({1, 3}), IsOkAndHolds(2u));
  EXPECT_EQ(bank->size(), 0u);
  EXPECT_FALSE(bank->Stats().min_separation.has_value());
}

// Issue 13: storing id 2^64 - 1 used to switch off id assignment for the
// whole bank.
TEST(MemoryBankTest, Issue13LargestIdKeepsIdAssignmentWorking) {
  auto bank = NewBank(1);
  constexpr PatternId kTop = std::numeric_limits<PatternId>::max();
  ASSERT_THAT(bank->Add({kTop}, {1}), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto ids, bank->Add({0, 0}, {1, 2}));
  EXPECT_THAT(ids, ElementsAre(1, 2));
  // Ids just below the top push the counter to the top, then it wraps and
  // skips the ids in use.
  ASSERT_THAT(bank->Add({kTop - 1}, {1}), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(ids, bank->Add({0, 0}, {3, 4}));
  EXPECT_THAT(ids, ElementsAre(3, 4));
  EXPECT_EQ(bank->size(), 6u);
}

// Issue 13 (and fuzz/regressions): scores and norms are float32, so a
// pattern whose squared norm overflows (dot scores, cosine states), or under
// cosine whose norm underflows, is refused.
TEST(MemoryBankTest, PatternsWhoseScoresWouldOverflowAreRefused) {
  for (const Similarity similarity : {Similarity::kDot, Similarity::kCosine}) {
    SCOPED_TRACE(SimilarityName(similarity));
    auto bank = NewBank(2, similarity);
    // 1e19 * 1e19 = 1e38 fits float32; 3e19 squared overflows.
    EXPECT_THAT(
        bank->Add({0}, {3e19f, 0}),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("patterns[0]"), HasSubstr("too large"))));
    EXPECT_THAT(bank->Add({0}, {1e19f, 1e19f}), IsOk());
    EXPECT_EQ(bank->size(), 1u);
  }
  auto cosine = NewBank(2, Similarity::kCosine);
  EXPECT_THAT(
      cosine->Add({0}, {1e-35f, 0}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too small")));
  EXPECT_THAT(cosine->Add({0}, {1e-20f, 1e-20f}), IsOk());
}

TEST(MemoryBankTest, MaxPatternsIsEnforcedBeforeAnythingChanges) {
  BankOptions options;
  options.dim = 2;
  BankEnvironment env;
  env.max_patterns = 3;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto bank,
                                MemoryBank::Create("small", options, env));
  ASSERT_THAT(bank->Add({1, 2}, {1, 0, 0, 1}), IsOk());
  EXPECT_THAT(bank->Add({0, 0}, {1, 1, 1, 2}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("would hold 4"),
                             HasSubstr("limit is 3 patterns per bank"))));
  EXPECT_EQ(bank->size(), 2u);
  // Replacing stored ids does not grow the bank.
  EXPECT_THAT(bank->Add({1, 2, 0}, {1, 1, 1, 2, 2, 1}), IsOk());
  EXPECT_EQ(bank->size(), 3u);
  env.max_patterns = kMaxPatternsPerBank + 1;
  EXPECT_THAT(MemoryBank::Create("big", options, env),
              StatusIs(absl::StatusCode::kInvalidArgument));
  env.max_patterns = 3;
  env.index_build_threads = 0;
  EXPECT_THAT(MemoryBank::Create("idle", options, env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("index_build_threads")));
}

TEST(MemoryBankTest, GrowthIsReservedFromTheBudgetAndForgetGivesItBack) {
  auto budget = MemoryBudget::Create(2 << 20, "test budget");
  BankOptions options;
  options.dim = 64;
  BankEnvironment env;
  env.budget = budget;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto bank,
                                MemoryBank::Create("budgeted", options, env));
  std::mt19937 rng(3);
  // 256 B of values + ~33 B per pattern, and growth needs the old and new
  // buffers at once: 2,000 fit in 2 MiB, 5,000 do not.
  for (int i = 0; i < 10; ++i) {
    ASSERT_THAT(bank->Add(FreshIds(200), GaussianPatterns(rng, 200, 64)),
                IsOk());
    EXPECT_EQ(bank->Stats().memory_bytes, budget->used());
  }
  const uint64_t held = budget->used();
  EXPECT_GE(held, uint64_t{2000} * (64 * 4 + 33));
  EXPECT_LE(held, uint64_t{2000} * (64 * 4 + 33) * 5 / 4 + 100000);
  // Growth beyond the budget is refused, naming it, and changes nothing.
  EXPECT_THAT(bank->Add(FreshIds(3000), GaussianPatterns(rng, 3000, 64)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("test budget"),
                             HasSubstr("bank \"budgeted\""))));
  EXPECT_EQ(bank->size(), 2000u);
  EXPECT_EQ(budget->used(), held);
  // Forgetting most patterns shrinks the buffers and returns memory.
  std::vector<PatternId> doomed;
  for (PatternId id = 1; id <= 1900; ++id) doomed.push_back(id);
  EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(1900u));
  EXPECT_LT(budget->used(), held / 4);
  EXPECT_EQ(bank->Stats().memory_bytes, budget->used());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto kept, bank->Get(2000));
  EXPECT_EQ(kept.size(), 64u);
  bank.reset();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBankTest, SeparationIsTrackedIncrementallyThroughEdits) {
  for (const Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    auto bank = NewBank(8, similarity);
    std::mt19937 rng(11);
    // Batches of varying size, upserts, removals.
    ASSERT_THAT(bank->Add(FreshIds(5), GaussianPatterns(rng, 5, 8)), IsOk());
    ExpectSeparationMatchesBruteForce(*bank);
    ASSERT_THAT(bank->Add(FreshIds(300), GaussianPatterns(rng, 300, 8)),
                IsOk());
    ExpectSeparationMatchesBruteForce(*bank);
    ASSERT_THAT(bank->Add({3, 17, 0}, GaussianPatterns(rng, 3, 8)), IsOk());
    ExpectSeparationMatchesBruteForce(*bank);
    std::vector<PatternId> doomed;
    for (PatternId id = 2; id < 300; id += 3) doomed.push_back(id);
    EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(doomed.size()));
    ExpectSeparationMatchesBruteForce(*bank);
    // Remove each pattern's nearest neighbour, the case that forces rescans.
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const auto neighbour,
                                  bank->PatternSeparation(1));
    EXPECT_THAT(bank->Remove({neighbour.nearest_id}), IsOkAndHolds(1u));
    ExpectSeparationMatchesBruteForce(*bank);
  }
}

void RefreshAll(MemoryBank& bank) {
  while (bank.RefreshSeparation(37) > 0) {
  }
  ASSERT_EQ(bank.Stats().separation_pending, 0u);
}

TEST(MemoryBankTest, DeferredSeparationCatchesUpToBruteForce) {
  for (const Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    auto bank = NewBank(8, similarity, SeparationUpdate::kDeferred);
    std::mt19937 rng(12);
    ASSERT_THAT(bank->Add(FreshIds(300), GaussianPatterns(rng, 300, 8)),
                IsOk());
    BankStats stats = bank->Stats();
    EXPECT_EQ(stats.separation_pending, 300u);
    EXPECT_FALSE(stats.min_separation.has_value());
    EXPECT_EQ(bank->RefreshSeparation(50), 50u);
    EXPECT_EQ(bank->Stats().separation_pending, 250u);
    EXPECT_TRUE(bank->Stats().min_separation.has_value());
    // Edits between refreshes: appends, upserts, removals.
    ASSERT_THAT(bank->Add(FreshIds(40), GaussianPatterns(rng, 40, 8)), IsOk());
    ASSERT_THAT(bank->Add({3, 17, 0}, GaussianPatterns(rng, 3, 8)), IsOk());
    EXPECT_GT(bank->RefreshSeparation(64), 0u);
    std::vector<PatternId> doomed;
    for (PatternId id = 2; id < 300; id += 5) doomed.push_back(id);
    EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(doomed.size()));
    RefreshAll(*bank);
    ExpectSeparationMatchesBruteForce(*bank);
    // Removing a nearest neighbour marks its dependants pending.
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const auto neighbour,
                                  bank->PatternSeparation(1));
    EXPECT_THAT(bank->Remove({neighbour.nearest_id}), IsOkAndHolds(1u));
    EXPECT_GT(bank->Stats().separation_pending, 0u);
    RefreshAll(*bank);
    ExpectSeparationMatchesBruteForce(*bank);
  }
}

TEST(MemoryBankTest, SynchronousBanksHaveNothingPending) {
  auto bank = NewBank(4);
  std::mt19937 rng(13);
  ASSERT_THAT(bank->Add(FreshIds(20), GaussianPatterns(rng, 20, 4)), IsOk());
  EXPECT_EQ(bank->Stats().separation_pending, 0u);
  EXPECT_EQ(bank->RefreshSeparation(10), 0u);
}

// A refresher racing writers and readers: results computed before a removal
// are dropped, never applied to moved columns. Run under TSan in CI.
TEST(MemoryBankTest, DeferredRefreshRacesWithWritersAndReaders) {
  auto bank = NewBank(16, Similarity::kCosine, SeparationUpdate::kDeferred);
  std::atomic<bool> done{false};
  std::thread refresher([&] {
    while (!done.load()) bank->RefreshSeparation(16);
  });
  std::thread reader([&] {
    while (!done.load()) {
      (void)bank->Stats();
      bank->WithReader([](const BankView& view) { return view.size(); });
    }
  });
  std::mt19937 rng(14);
  for (int round = 0; round < 40; ++round) {
    ASSERT_THAT(bank->Add(FreshIds(25), GaussianPatterns(rng, 25, 16)), IsOk());
    // Upserts replace columns in place while a refresh may be scoring them.
    ASSERT_THAT(bank->Add({static_cast<PatternId>(round * 10 + 3)},
                          GaussianPatterns(rng, 1, 16)),
                IsOk());
    if (round % 3 == 2) {
      EXPECT_THAT(bank->Remove({static_cast<PatternId>(round * 10 + 1),
                                static_cast<PatternId>(round * 10 + 7)}),
                  IsOk());
    }
  }
  done.store(true);
  refresher.join();
  reader.join();
  RefreshAll(*bank);
  ExpectSeparationMatchesBruteForce(*bank);
}

TEST(MemoryBankTest, PatternSeparationErrors) {
  auto bank = NewBank(2);
  ASSERT_THAT(bank->Add({1}, {1, 0}), IsOk());
  EXPECT_THAT(bank->PatternSeparation(1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(bank->PatternSeparation(2),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(bank->Add({2}, {0, 1}), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(const auto neighbour,
                                bank->PatternSeparation(1));
  EXPECT_NEAR(neighbour.separation, 1.0, 1e-7);  // orthogonal: 1 - cos = 1
  EXPECT_EQ(neighbour.nearest_id, 2u);
}

TEST(MemoryBankTest, StatsReportSizeMemoryAndCapacity) {
  auto bank = NewBank(16);
  std::mt19937 rng(5);
  ASSERT_THAT(bank->Add(FreshIds(200), UnitPatterns(rng, 200, 16)), IsOk());
  const BankStats stats = bank->Stats();
  EXPECT_EQ(stats.pattern_count, 200u);
  EXPECT_GE(stats.memory_bytes, uint64_t{200} * 16 * sizeof(float));
  EXPECT_NEAR(stats.max_norm, 1.0, 1e-6);
  ASSERT_TRUE(stats.min_separation.has_value());
  // Automatic β follows the rule for the observed separation.
  EXPECT_GE(stats.effective_beta, 8.0);
  EXPECT_GT(stats.capacity_utilization, 0.0);
  // A crowded pair (cos ≈ 0.995, not a near-duplicate) pushes utilisation
  // above 1: errors are expected.
  std::vector<float> twin = bank->Get(1).value();
  for (size_t k = 0; k < twin.size(); ++k) {
    twin[k] += 0.1f * (k % 2 == 0 ? 0.25f : -0.25f);
  }
  ASSERT_THAT(bank->Add({0}, twin), IsOk());
  EXPECT_EQ(bank->Stats().duplicate_count, 0u);
  EXPECT_GT(bank->Stats().capacity_utilization, 1.0);
}

TEST(MemoryBankTest, NearDuplicatesAreCountedAndLeftOutOfTheBetaRule) {
  constexpr int kDim = 32;
  constexpr int kCount = 200;
  std::mt19937 rng(77);
  std::vector<float> values = UnitPatterns(rng, kCount, kDim);
  auto bank = NewBank(kDim);
  ASSERT_THAT(bank->Add(FreshIds(kCount), values), IsOk());
  const BankStats clean = bank->Stats();
  EXPECT_EQ(clean.duplicate_count, 0u);
  ASSERT_TRUE(clean.min_distinct_separation.has_value());
  EXPECT_DOUBLE_EQ(*clean.min_distinct_separation, *clean.min_separation);
  ASSERT_TRUE(clean.separation_p01.has_value());
  EXPECT_GE(*clean.separation_p01, *clean.min_separation);
  // A near copy of pattern 0 (cos ≈ 1 - 5e-7): both become near-duplicates.
  std::vector<float> copy(values.begin(), values.begin() + kDim);
  copy[0] += 1e-3f;
  ASSERT_THAT(bank->Add(FreshIds(1), copy), IsOk());
  const BankStats stats = bank->Stats();
  EXPECT_EQ(stats.duplicate_count, 2u);
  EXPECT_LT(*stats.min_separation, 1e-5);
  // Δ_min over the others: the clean bank's unless pattern 0 held it.
  ASSERT_TRUE(stats.min_distinct_separation.has_value());
  EXPECT_GE(*stats.min_distinct_separation, *clean.min_separation - 1e-6);
  // Automatic β follows the distinct separation, not the duplicate pair.
  EXPECT_LT(stats.effective_beta, kAutoBetaMax);
  EXPECT_NEAR(stats.effective_beta,
              AutoBeta(kCount + 1, *stats.min_distinct_separation), 1e-6);
  EXPECT_LT(stats.capacity_utilization, 1.0);
  // A bank of nothing but copies falls back to Δ_min (β at its cap).
  auto copies = NewBank(kDim);
  std::vector<float> twice(copy);
  twice.insert(twice.end(), values.begin(), values.begin() + kDim);
  ASSERT_THAT(copies->Add(FreshIds(2), twice), IsOk());
  EXPECT_EQ(copies->Stats().duplicate_count, 2u);
  EXPECT_FALSE(copies->Stats().min_distinct_separation.has_value());
  EXPECT_DOUBLE_EQ(copies->Stats().effective_beta, kAutoBetaMax);
}

TEST(MemoryBankTest, SummaryStatsAreTheFullOnesWithoutTheScans) {
  std::mt19937 rng(5);
  BankOptions options;
  options.dim = 8;
  BankEnvironment env;
  env.separation_update = SeparationUpdate::kDeferred;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto bank,
                                MemoryBank::Create("summary", options, env));
  ASSERT_THAT(bank->Add(FreshIds(200), GaussianPatterns(rng, 200, 8)), IsOk());
  ASSERT_GT(bank->RefreshSeparation(150), 0u);  // some pending remain
  const BankStats full = bank->Stats();
  const BankStats summary = bank->Stats(MemoryBank::StatsDetail::kSummary);
  EXPECT_TRUE(full.separation_p01.has_value());
  EXPECT_FALSE(summary.separation_p01.has_value());
  EXPECT_EQ(summary.separation_estimated, 0u);
  EXPECT_EQ(summary.pattern_count, full.pattern_count);
  EXPECT_EQ(summary.memory_bytes, full.memory_bytes);
  EXPECT_EQ(summary.min_separation, full.min_separation);
  EXPECT_EQ(summary.separation_pending, full.separation_pending);
  EXPECT_GT(summary.separation_pending, 0u);
  EXPECT_EQ(summary.capacity_utilization, full.capacity_utilization);
  EXPECT_EQ(summary.effective_beta, full.effective_beta);
  EXPECT_EQ(summary.index_pending, full.index_pending);
}

}  // namespace
}  // namespace hopfield
