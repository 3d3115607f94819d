// Add and Remove keep the strong guarantee when an allocation fails (issue
// 13): the bank is exactly as before, for a failure at every allocation the
// call makes. This binary replaces the global operator new with one that
// throws std::bad_alloc at the Nth allocation after arming; its own binary
// because of that replacement.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/memory_bank.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace {

// Allocations left before the failing one; negative: never fail.
std::atomic<int64_t> g_allocations_left{-1};

}  // namespace

// The clang static analyzer (clang-tidy) models malloc inside a replaced
// operator new and then reports leaks in every container.
#ifndef __clang_analyzer__
namespace {

void* Allocate(std::size_t size, std::size_t alignment) {
  if (g_allocations_left.load(std::memory_order_relaxed) >= 0 &&
      g_allocations_left.fetch_sub(1, std::memory_order_relaxed) == 0) {
    throw std::bad_alloc();
  }
  void* p = nullptr;
  if (alignment <= alignof(std::max_align_t)) {
    p = std::malloc(size == 0 ? 1 : size);
  } else if (posix_memalign(&p, alignment, size == 0 ? 1 : size) != 0) {
    p = nullptr;
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t size) {
  return Allocate(size, alignof(std::max_align_t));
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return Allocate(size, static_cast<std::size_t>(alignment));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t /*size*/,
                     std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // __clang_analyzer__

namespace hopfield {
namespace {

using ::hopfield::testing::GaussianPatterns;
using ::hopfield::testing::IsOkAndHolds;

// Everything observable about a bank.
struct Snapshot {
  std::vector<PatternId> ids;
  std::vector<float> values;
  uint64_t pending = 0;
  uint64_t memory_bytes = 0;
  double min_separation = -1;

  bool operator==(const Snapshot& other) const {
    return ids == other.ids && values == other.values &&
           pending == other.pending && memory_bytes == other.memory_bytes &&
           min_separation == other.min_separation;
  }
};

Snapshot Take(const MemoryBank& bank) {
  Snapshot snapshot;
  bank.WithReader([&](const BankView& view) {
    snapshot.ids.assign(view.ids.begin(), view.ids.end());
    snapshot.values.assign(view.patterns.data(),
                           view.patterns.data() + view.patterns.size());
  });
  const BankStats stats = bank.Stats();
  snapshot.pending = stats.separation_pending;
  snapshot.memory_bytes = stats.memory_bytes;
  snapshot.min_separation = stats.min_separation.value_or(-1);
  return snapshot;
}

// Runs bank.Add(ids, values) with a failure injected at the 1st, 2nd, ...
// allocation until it succeeds; after every failure the bank must be as
// before. Returns how many failures were injected.
int AddUnderFailures(MemoryBank& bank, const MemoryBudget& budget,
                     const std::vector<PatternId>& ids,
                     const std::vector<float>& values);

class MemoryBankAllocTest : public ::testing::TestWithParam<SeparationUpdate> {
};

TEST_P(MemoryBankAllocTest, Issue13FailedAllocationInAddChangesNothing) {
  auto budget = MemoryBudget::Create(64 << 20);
  BankOptions options;
  options.dim = 8;
  BankEnvironment env;
  env.separation_update = GetParam();
  env.budget = budget;
  auto bank = MemoryBank::Create("alloc", options, env).value();
  std::mt19937 rng(7);
  // 60 patterns: the next Add of 10 grows the buffers (capacity 64).
  std::vector<PatternId> first(60, 0);
  ASSERT_TRUE(bank->Add(first, GaussianPatterns(rng, 60, 8)).ok());
  // An upsert: three stored ids replaced, seven new patterns.
  const std::vector<PatternId> ids = {5, 0, 17, 0, 0, 42, 0, 0, 0, 0};
  const std::vector<float> values = GaussianPatterns(rng, 10, 8);
  int failures = AddUnderFailures(*bank, *budget, ids, values);
  EXPECT_GT(failures, 5);  // the buffers' growth alone allocates 8 times
  EXPECT_EQ(bank->size(), 67u);
  EXPECT_EQ(bank->Stats().memory_bytes, budget->used());
  // Again after removals (tombstones in the id index), without growth.
  ASSERT_THAT(bank->Remove({1, 2, 3, 4, 6}), IsOkAndHolds(5u));
  failures = AddUnderFailures(*bank, *budget, {7, 0, 0, 0},
                              GaussianPatterns(rng, 4, 8));
  EXPECT_GT(failures, 0);
  EXPECT_EQ(bank->size(), 65u);
}

int AddUnderFailures(MemoryBank& bank, const MemoryBudget& budget,
                     const std::vector<PatternId>& ids,
                     const std::vector<float>& values) {
  const Snapshot before = Take(bank);
  int failures = 0;
  for (int64_t n = 0;; ++n) {
    g_allocations_left.store(n);
    bool threw = false;
    try {
      const auto result = bank.Add(ids, values);
      g_allocations_left.store(-1);
      EXPECT_TRUE(result.ok()) << result.status();
    } catch (const std::bad_alloc&) {
      g_allocations_left.store(-1);
      threw = true;
    }
    if (!threw) break;
    ++failures;
    EXPECT_TRUE(Take(bank) == before)
        << "changed by a failure at allocation " << n;
    EXPECT_EQ(budget.used(), before.memory_bytes);
  }
  return failures;
}

TEST_P(MemoryBankAllocTest, Issue13FailedAllocationInRemoveChangesNothing) {
  BankOptions options;
  options.dim = 4;
  BankEnvironment env;
  env.separation_update = GetParam();
  auto bank = MemoryBank::Create("alloc", options, env).value();
  std::mt19937 rng(8);
  std::vector<PatternId> first(200, 0);
  ASSERT_TRUE(bank->Add(first, GaussianPatterns(rng, 200, 4)).ok());
  std::vector<PatternId> doomed;
  for (PatternId id = 1; id <= 150; ++id) doomed.push_back(id);
  const Snapshot before = Take(*bank);
  for (int64_t n = 0;; ++n) {
    g_allocations_left.store(n);
    try {
      const absl::StatusOr<uint64_t> removed = bank->Remove(doomed);
      g_allocations_left.store(-1);
      // A failure while shrinking afterwards keeps the larger buffers.
      EXPECT_THAT(removed, IsOkAndHolds(150u));
      break;
    } catch (const std::bad_alloc&) {
      g_allocations_left.store(-1);
      ASSERT_TRUE(Take(*bank) == before) << "failure at allocation " << n;
    }
  }
  EXPECT_EQ(bank->size(), 50u);
}

INSTANTIATE_TEST_SUITE_P(
    Updates, MemoryBankAllocTest,
    ::testing::Values(SeparationUpdate::kSynchronous,
                      SeparationUpdate::kDeferred),
    [](const ::testing::TestParamInfo<SeparationUpdate>& update) {
      return update.param == SeparationUpdate::kSynchronous ? "Synchronous"
                                                            : "Deferred";
    });

}  // namespace
}  // namespace hopfield
