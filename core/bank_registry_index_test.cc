// The background refresher and the search index (BankRegistry +
// MemoryBank::RefreshIndex): its own file because the tests that grow
// hnswlib graphs run without TSan's lock-order detection (core/CMakeLists.txt).
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/bank_registry.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;

BankOptions Dim(uint32_t dim) {
  BankOptions options;
  options.dim = dim;
  return options;
}

// The refresher's index turns give every pattern an index-derived
// separation estimate as it joins the index (the exact turns take one
// pattern each here).
TEST(BankRegistryTest, IndexTurnsGiveEstimatesBeforeExactStatistics) {
  RegistryOptions options;
  options.separation_update = SeparationUpdate::kDeferred;
  options.refresh_batch = 1;
  options.index_min_patterns = 100;
  options.refresh_quiet_period = std::chrono::milliseconds(0);
  BankRegistry registry(options);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto bank,
                                registry.Create("estimated", Dim(16)));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(size_t{2000} * 16);
  for (float& v : values) v = normal(rng);
  ASSERT_THAT(bank->Add(std::vector<PatternId>(2000, 0), values), IsOk());
  // Within a bounded wait, every pattern holds an estimate or its exact
  // statistics (the index turn that builds the index estimates them all
  // before any exact turn runs).
  BankStats stats = bank->Stats();
  for (int i = 0;
       i < 1000 && !(stats.index_size == 2000 &&
                     stats.separation_pending == stats.separation_estimated);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    stats = bank->Stats();
  }
  EXPECT_EQ(stats.index_size, 2000u);
  EXPECT_EQ(stats.separation_pending, stats.separation_estimated);
  EXPECT_TRUE(stats.min_separation.has_value());
}

}  // namespace
}  // namespace hopfield
