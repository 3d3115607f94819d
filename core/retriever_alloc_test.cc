// No allocation in the retrieval loop (house style): once a thread has
// retrieved from a bank, retrieving again from it allocates nothing but the
// result. Two checks:
// - Eigen: hopfield_core is built with EIGEN_RUNTIME_NO_MALLOC, so any Eigen
//   heap allocation while set_is_malloc_allowed(false) is an assertion
//   failure (Debug builds; skipped under NDEBUG, where eigen_assert is off).
// - Everything else: this binary replaces the global operator new with a
//   counting one, so std containers are caught too.
// Its own binary because of that replacement.
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "Eigen/Core"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/retriever.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<int> g_allocations{0};

}  // namespace

// The clang static analyzer (clang-tidy) models malloc inside a replaced
// operator new and then reports leaks in every container; it analyses the
// plain allocator instead.
#ifndef __clang_analyzer__
void* operator new(std::size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// GCC cannot see that this operator new is the one allocating with malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // __clang_analyzer__

namespace hopfield {
namespace {

using ::hopfield::testing::FreshIds;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::UnitPatterns;

// Counts operator new calls and forbids Eigen heap allocation in its scope.
class AllocationGuard {
 public:
  AllocationGuard() {
    g_counting = true;
    Eigen::internal::set_is_malloc_allowed(false);
  }
  ~AllocationGuard() {
    Eigen::internal::set_is_malloc_allowed(true);
    g_counting = false;
  }
  AllocationGuard(const AllocationGuard&) = delete;
  AllocationGuard& operator=(const AllocationGuard&) = delete;

  // operator new calls since construction.
  int allocations() const { return g_allocations - start_; }

 private:
  const int start_ = g_allocations;
};

TEST(AllocationGuardTest, CatchesAllocations) {
  {
    AllocationGuard guard;
    auto* vector = new std::vector<int>(100);
    EXPECT_EQ(guard.allocations(), 2);
    delete vector;
  }
#ifdef NDEBUG
  GTEST_SKIP() << "eigen_assert is compiled out under NDEBUG";
#else
  EXPECT_DEATH(
      {
        AllocationGuard guard;
        Eigen::VectorXf v(1000);
        v.setZero();
      },
      "heap allocation is forbidden");
#endif
}

using Case = std::tuple<Separation, Similarity>;

class WarmRetrievalTest : public ::testing::TestWithParam<Case> {};

TEST_P(WarmRetrievalTest, AllocatesOnlyTheResult) {
  const auto [separation, similarity] = GetParam();
  constexpr int kDim = 48;
  constexpr int kPatterns = 1000;  // 8 fused blocks of 128
  BankOptions bank_options;
  bank_options.dim = kDim;
  bank_options.similarity = similarity;
  bank_options.separation = separation;
  bank_options.beta = 8.0f;  // low enough that retrieval takes several steps
  auto bank = MemoryBank::Create("alloc", bank_options).value();
  std::mt19937 rng(17);
  const std::vector<float> patterns = UnitPatterns(rng, kPatterns, kDim);
  ASSERT_THAT(bank->Add(FreshIds(kPatterns), patterns), IsOk());
  const std::vector<float> queries = UnitPatterns(rng, 2, kDim);
  const auto first = absl::MakeConstSpan(queries).first(kDim);
  const auto second = absl::MakeConstSpan(queries).last(kDim);

  // Warms this thread up on `warm_query`, then counts the allocations of
  // retrieving `query` with the same options (and checks it iterated).
  auto warm_allocations = [&bank](const RetrieveOptions& options,
                                  absl::Span<const float> warm_query,
                                  absl::Span<const float> query) {
    EXPECT_THAT(Retriever::Retrieve(*bank, warm_query, options).status(),
                IsOk());
    AllocationGuard guard;
    absl::StatusOr<RetrieveResult> result =
        Retriever::Retrieve(*bank, query, options);
    const int allocations = guard.allocations();
    EXPECT_THAT(result.status(), IsOk());
    EXPECT_GT(result.ok() ? result->iterations : 0u, 1u);
    return allocations;
  };
  RetrieveOptions options;
  options.omit_pattern = true;
  EXPECT_EQ(warm_allocations(options, first, second), 1)
      << "only RetrieveResult::matches";
  // The pattern and three matches: the result grows, nothing else.
  options.omit_pattern = false;
  options.return_matches = 3;
  EXPECT_EQ(warm_allocations(options, second, first), 2)
      << "only RetrieveResult::pattern and ::matches";
}

INSTANTIATE_TEST_SUITE_P(
    AllMaps, WarmRetrievalTest,
    ::testing::Combine(
        ::testing::Values(Separation::kSoftmax, Separation::kSoftmax1,
                          Separation::kSparsemax, Separation::kEntmax),
        ::testing::Values(Similarity::kCosine, Similarity::kDot)),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      return std::string(SeparationName(std::get<0>(param_info.param))) + "_" +
             std::string(SimilarityName(std::get<1>(param_info.param)));
    });

}  // namespace
}  // namespace hopfield
