#include "core/bank_training.h"

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/retriever.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::AnisotropicUnitPatterns;
using ::hopfield::testing::FreshIds;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::hopfield::testing::UnitPatterns;
using ::testing::HasSubstr;

constexpr int kDim = 16;
constexpr int kCount = 64;

std::vector<float> Anisotropic(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  return AnisotropicUnitPatterns(rng, count, kDim);
}

std::shared_ptr<MemoryBank> NewBank(float beta, BankEnvironment env = {}) {
  BankOptions options;
  options.dim = kDim;
  options.beta = beta;
  auto bank = MemoryBank::Create("trained", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  return std::move(bank).value();
}

BankTrainOptions Defaults() {
  BankTrainOptions options;
  options.validation_noise = 0.01f;  // 0.05 isotropic swamps the minor axes
  return options;
}

TEST(BankTrainingTest, AcceptsAMapThatSpreadsTheAnisotropicSet) {
  auto bank = NewBank(20.0f);
  ASSERT_THAT(bank->Add(FreshIds(kCount), Anisotropic(1, kCount)), IsOk());
  int steps = 0;
  TrainHooks hooks;
  hooks.on_step = [&](const TrainStep&) {
    ++steps;
    return absl::OkStatus();
  };
  auto report = TrainBank(*bank, Defaults(), hooks);
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(report->accepted);
  EXPECT_EQ(report->feature_map_version, 1u);
  EXPECT_EQ(steps, 300);
  EXPECT_EQ(report->iterations, 300u);
  EXPECT_EQ(report->training_patterns, static_cast<uint64_t>(kCount));
  EXPECT_TRUE(report->min_separation_exact);
  EXPECT_GT(report->min_separation_after, 5 * report->min_separation_before);
  EXPECT_LT(report->validation_error_after, report->validation_error_before);
  // The bank's own statistics agree with the report (exact over the bank).
  const BankStats stats = bank->Stats();
  EXPECT_EQ(stats.feature_map_version, 1u);
  EXPECT_EQ(stats.feature_dim, static_cast<uint32_t>(kDim));
  EXPECT_NEAR(*stats.min_separation, report->min_separation_after, 1e-4);
  EXPECT_NEAR(*stats.min_separation, report->min_separation_after, 1e-4);
}

TEST(BankTrainingTest, GateRejectsAMapThatLosesInformation) {
  auto bank = NewBank(50.0f);
  std::mt19937 rng(2);
  ASSERT_THAT(bank->Add(FreshIds(kCount), UnitPatterns(rng, kCount, kDim)),
              IsOk());
  BankTrainOptions options = Defaults();
  options.config.feature_dim = 2;  // a 2-d projection cannot keep 64 apart
  options.config.iterations = 1;
  auto report = TrainBank(*bank, options);
  ASSERT_THAT(report, IsOk());
  EXPECT_FALSE(report->accepted);
  EXPECT_EQ(report->feature_map_version, 0u);
  EXPECT_GT(report->validation_error_after, report->validation_error_before);
  EXPECT_GT(report->validation_accuracy_before,
            report->validation_accuracy_after);
  EXPECT_EQ(bank->Stats().feature_map_version, 0u);
  // skip_validation publishes it anyway.
  options.skip_validation = true;
  report = TrainBank(*bank, options);
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(report->accepted);
  EXPECT_EQ(bank->Stats().feature_map_version, 1u);
  EXPECT_EQ(bank->Stats().feature_dim, 2u);
}

TEST(BankTrainingTest, RefusesTinyBanksAndBadOptions) {
  auto bank = NewBank(0.0f);
  EXPECT_THAT(
      TrainBank(*bank, Defaults()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("at least 2")));
  ASSERT_THAT(bank->Add(FreshIds(1), std::vector<float>(kDim, 1.0f)), IsOk());
  EXPECT_THAT(TrainBank(*bank, Defaults()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  BankTrainOptions options;
  options.validation_mask_fraction = 1.0f;
  EXPECT_THAT(TrainBank(*bank, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("TrainOptions.validation_mask_fraction")));
  options = Defaults();
  options.config.learning_rate = -1.0f;
  EXPECT_THAT(TrainBank(*bank, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("TrainOptions.learning_rate")));
}

TEST(BankTrainingTest, OneTrainingPerBankAtATime) {
  auto bank = NewBank(20.0f);
  ASSERT_THAT(bank->Add(FreshIds(kCount), Anisotropic(3, kCount)), IsOk());
  TrainHooks hooks;
  bool checked = false;
  hooks.on_step = [&](const TrainStep& step) -> absl::Status {
    if (step.iteration == 1) {
      EXPECT_THAT(TrainBank(*bank, Defaults()),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("already training")));
      checked = true;
    }
    return absl::OkStatus();
  };
  BankTrainOptions options = Defaults();
  options.config.iterations = 5;
  ASSERT_THAT(TrainBank(*bank, options, hooks), IsOk());
  EXPECT_TRUE(checked);
  // Free again afterwards.
  EXPECT_THAT(TrainBank(*bank, options), IsOk());
}

TEST(BankTrainingTest, ClosingTheBankCancelsAndChangesNothing) {
  auto bank = NewBank(20.0f);
  ASSERT_THAT(bank->Add(FreshIds(kCount), Anisotropic(4, kCount)), IsOk());
  TrainHooks hooks;
  hooks.on_step = [&](const TrainStep& step) {
    if (step.iteration == 3) bank->Close();
    return absl::OkStatus();
  };
  EXPECT_THAT(TrainBank(*bank, Defaults(), hooks),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("deleted")));
  EXPECT_EQ(bank->Stats().feature_map_version, 0u);
}

TEST(BankTrainingTest, WorkingMemoryComesFromTheBudget) {
  auto budget = MemoryBudget::Create(1 << 20, "--memory_budget_bytes");
  BankEnvironment env;
  env.budget = budget;
  auto bank = NewBank(20.0f, env);
  ASSERT_THAT(bank->Add(FreshIds(kCount), Anisotropic(5, kCount)), IsOk());
  const uint64_t held = budget->used();
  BankTrainOptions options = Defaults();
  options.config.batch_size = 1024;
  TrainHooks hooks;
  hooks.budget = budget.get();
  // Fits: the report comes back and the working memory is returned.
  ASSERT_THAT(TrainBank(*bank, options, hooks), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  EXPECT_GT(budget->used(), held);  // the keys now live in the bank
  // A budget that cannot hold it: RESOURCE_EXHAUSTED, nothing changed.
  auto tiny = MemoryBudget::Create(1024, "--memory_budget_bytes");
  hooks.budget = tiny.get();
  EXPECT_THAT(TrainBank(*bank, options, hooks),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("--memory_budget_bytes")));
  EXPECT_EQ(bank->Stats().feature_map_version, 1u);
}

TEST(BankTrainingTest, PatternsStoredDuringTrainingAreMappedOnPublish) {
  auto bank = NewBank(200.0f);
  ASSERT_THAT(bank->Add(FreshIds(kCount), Anisotropic(6, kCount)), IsOk());
  const std::vector<float> late = Anisotropic(7, 8);
  std::vector<uint64_t> late_ids;
  TrainHooks hooks;
  hooks.on_step = [&](const TrainStep& step) -> absl::Status {
    if (step.iteration == 10) {
      auto ids = bank->Add(FreshIds(8), late);
      EXPECT_THAT(ids, IsOk());
      late_ids = *ids;
    }
    return absl::OkStatus();
  };
  BankTrainOptions options = Defaults();
  options.skip_validation = true;
  ASSERT_THAT(TrainBank(*bank, options, hooks), IsOk());
  ASSERT_EQ(bank->Stats().feature_map_version, 1u);
  EXPECT_EQ(bank->size(), static_cast<uint64_t>(kCount + 8));
  // Each late pattern retrieves itself through the new map.
  for (size_t i = 0; i < late_ids.size(); ++i) {
    const std::vector<float> query(
        late.begin() + static_cast<std::ptrdiff_t>(i * kDim),
        late.begin() + static_cast<std::ptrdiff_t>((i + 1) * kDim));
    auto result = Retriever::Retrieve(*bank, query);
    ASSERT_THAT(result, IsOk());
    EXPECT_EQ(result->nearest_id, late_ids[i]);
  }
}

}  // namespace
}  // namespace hopfield
