#include "core/memory_budget.h"

#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(MemoryBudgetTest, ReservationsCountAndGiveBack) {
  auto budget = MemoryBudget::Create(1000, "test budget");
  {
    HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation a,
                                  budget->Reserve(600, "a"));
    EXPECT_EQ(a.bytes(), 600u);
    EXPECT_EQ(budget->used(), 600u);
    EXPECT_EQ(budget->available(), 400u);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation b,
                                  budget->Reserve(400, "b"));
    EXPECT_EQ(budget->used(), 1000u);
  }
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_EQ(budget->peak(), 1000u);
}

TEST(MemoryBudgetTest, RefusalNamesTheBudgetAndChangesNothing) {
  auto budget = MemoryBudget::Create(1000, "--memory_budget_bytes");
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation a, budget->Reserve(700, "a"));
  EXPECT_THAT(budget->Reserve(301, "the reply"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("the reply needs 301 bytes"),
                             HasSubstr("--memory_budget_bytes of 1000 bytes"),
                             HasSubstr("300 left"))));
  EXPECT_EQ(budget->used(), 700u);
  // Sizes near the top of uint64 must not wrap around the limit.
  EXPECT_THAT(budget->Reserve(~uint64_t{0}, "huge"),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(budget->used(), 700u);
}

TEST(MemoryBudgetTest, ResizeGrowsWithinTheLimitAndShrinks) {
  auto budget = MemoryBudget::Create(1000);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation r, budget->Reserve(100, "r"));
  EXPECT_THAT(r.Resize(900, "r"), IsOk());
  EXPECT_EQ(budget->used(), 900u);
  EXPECT_THAT(r.Resize(1001, "r"),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(r.bytes(), 900u);
  EXPECT_THAT(r.Resize(50, "r"), IsOk());
  EXPECT_EQ(budget->used(), 50u);
  r.Release();
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_EQ(r.bytes(), 0u);
}

TEST(MemoryBudgetTest, MovedReservationGivesBackOnce) {
  auto budget = MemoryBudget::Create(1000);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation a, budget->Reserve(300, "a"));
  MemoryReservation b = std::move(a);
  EXPECT_EQ(budget->used(), 300u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation c, budget->Reserve(200, "c"));
  b = std::move(c);  // gives back b's 300
  EXPECT_EQ(budget->used(), 200u);
  b.Release();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBudgetTest, AbsorbMergesWithoutTouchingTheBudget) {
  auto budget = MemoryBudget::Create(1000);
  MemoryReservation empty;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation a, budget->Reserve(300, "a"));
  empty.Absorb(std::move(a));
  EXPECT_EQ(empty.bytes(), 300u);
  EXPECT_EQ(a.bytes(), 0u);  // NOLINT(bugprone-use-after-move)
  HOPFIELD_ASSERT_OK_AND_ASSIGN(MemoryReservation b, budget->Reserve(200, "b"));
  empty.Absorb(std::move(b));
  EXPECT_EQ(empty.bytes(), 500u);
  EXPECT_EQ(budget->used(), 500u);
  ASSERT_THAT(empty.Resize(100, "shrink"), IsOk());
  EXPECT_EQ(budget->used(), 100u);
  empty.Release();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MemoryBudgetTest, ReservationKeepsTheBudgetAlive) {
  MemoryReservation r;
  {
    auto budget = MemoryBudget::Create(10);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(r, budget->Reserve(5, "r"));
  }
  r.Release();  // no use after free (ASan would say)
}

TEST(MemoryBudgetTest, ConcurrentReservationsNeverExceedTheLimit) {
  auto budget = MemoryBudget::Create(1000);
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&budget] {
      for (int i = 0; i < 20000; ++i) {
        auto r = budget->Reserve(300, "r");
        if (r.ok()) {
          EXPECT_LE(budget->used(), 1000u);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_LE(budget->peak(), 900u);
}

}  // namespace
}  // namespace hopfield
