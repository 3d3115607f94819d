#include "core/retriever.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/capacity.h"
#include "core/flush_denormals.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::FreshIds;
using ::hopfield::testing::GaussianPatterns;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::hopfield::testing::UnitPatterns;
using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

std::unique_ptr<MemoryBank> NewBank(uint32_t dim, Similarity similarity,
                                    const std::vector<float>& values) {
  BankOptions options;
  options.dim = dim;
  options.similarity = similarity;
  auto bank = MemoryBank::Create("test", options).value();
  const int count = static_cast<int>(values.size() / dim);
  EXPECT_THAT(bank->Add(FreshIds(count), values), IsOk());
  return bank;
}

// Ξ = I₃ under dot similarity: the §F orthonormal examples.
std::unique_ptr<MemoryBank> IdentityBank() {
  return NewBank(3, Similarity::kDot, {1, 0, 0, 0, 1, 0, 0, 0, 1});
}

double Distance(const std::vector<float>& a, absl::Span<const float> b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += d * d;
  }
  return std::sqrt(sum);
}

// ||T(ξ_μ) - ξ_μ|| = ||Σ_{ν≠μ} p_ν (ξ_ν - ξ_μ)|| for weights summing to one,
// in double from the reported weights. Unlike the float output, this resolves
// errors far below float32's 1e-7 (the small weights carry full relative
// precision), which the §F bounds at large β need.
double OneStepErrorFromWeights(const MemoryBank& bank, PatternId target,
                               const RetrieveResult& result) {
  const std::vector<float> xi = bank.Get(target).value();
  Eigen::VectorXd error =
      Eigen::VectorXd::Zero(static_cast<Eigen::Index>(xi.size()));
  for (const Match& match : result.matches) {
    if (match.id == target) continue;
    const std::vector<float> other = bank.Get(match.id).value();
    for (size_t i = 0; i < xi.size(); ++i) {
      error[static_cast<Eigen::Index>(i)] +=
          static_cast<double>(match.weight) *
          (static_cast<double>(other[i]) - static_cast<double>(xi[i]));
    }
  }
  return error.norm();
}

// algorithms.md §F test 5.
TEST(RetrieverTest, OneStepSoftmaxOnOrthonormalMemories) {
  auto bank = IdentityBank();
  const std::vector<float> e1 = {1, 0, 0};
  struct Case {
    float beta;
    double p1;
    double error;
  };
  for (const Case c : {Case{1, 0.576117, 0.519149}, Case{2, 0.786986, 0.260888},
                       Case{5, 0.986703, 0.016285}}) {
    RetrieveOptions options;
    options.beta = c.beta;
    options.max_iterations = 1;
    options.return_matches = 3;
    HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                  Retriever::Retrieve(*bank, e1, options));
    EXPECT_EQ(result.iterations, 1u);
    EXPECT_EQ(result.nearest_id, 1u);
    EXPECT_NEAR(result.nearest_weight, c.p1, 1e-6) << c.beta;
    const double rest = (1.0 - c.p1) / 2.0;
    EXPECT_NEAR(result.matches[1].weight, rest, 1e-6);
    EXPECT_NEAR(result.matches[2].weight, rest, 1e-6);
    EXPECT_NEAR(Distance(result.pattern, e1), c.error, 1e-6) << c.beta;
  }
  RetrieveOptions options;
  options.beta = 5;
  options.max_iterations = 1;
  options.separation = Separation::kSoftmax1;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                Retriever::Retrieve(*bank, e1, options));
  EXPECT_NEAR(result.nearest_weight, 0.980187, 1e-6);
  EXPECT_NEAR(result.null_mass, 0.006604, 1e-6);
}

// algorithms.md §F test 6.
TEST(RetrieverTest, SparseMapsStoreWellSeparatedPatternsExactly) {
  std::mt19937 rng(6);
  auto bank = NewBank(16, Similarity::kDot, UnitPatterns(rng, 40, 16));
  int exact_cases = 0;
  int mixture_cases = 0;
  for (const auto& [separation, alpha] :
       {std::pair{Separation::kSparsemax, 2.0},
        std::pair{Separation::kEntmax, 1.5}}) {
    for (const float beta : {0.5f, 1.0f, 2.0f, 4.0f, 8.0f}) {
      for (PatternId id = 1; id <= 40; ++id) {
        const double delta = bank->PatternSeparation(id).value().separation;
        const double gap = beta * delta * (alpha - 1.0);
        if (std::abs(gap - 1.0) < 1e-4) continue;  // float can't decide
        RetrieveOptions options;
        options.beta = beta;
        options.separation = separation;
        options.max_iterations = 1;
        const std::vector<float> xi = bank->Get(id).value();
        HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                      Retriever::Retrieve(*bank, xi, options));
        if (gap > 1.0) {
          ++exact_cases;
          EXPECT_EQ(result.support_size, 1u);
          EXPECT_LE(Distance(result.pattern, xi), 1e-12);
        } else {
          ++mixture_cases;
          EXPECT_GT(result.support_size, 1u);
        }
      }
    }
  }
  // The grid must exercise both sides of the threshold.
  EXPECT_GT(exact_cases, 20);
  EXPECT_GT(mixture_cases, 20);
}

// algorithms.md §F test 7.
TEST(RetrieverTest, OneStepErrorRespectsRamsauersBound) {
  constexpr int kCount = 100;
  std::mt19937 rng(7);
  auto bank = NewBank(64, Similarity::kDot, UnitPatterns(rng, kCount, 64));
  const double min_separation = bank->Stats().min_separation.value();
  // Smallest β with Δ_min >= 2/(βM) + ln(2(M-1)Mβ)/β (bisection: the right
  // side decreases in β in this range).
  auto condition = [&](double beta) {
    return min_separation >=
           2.0 / (beta * kCount) +
               std::log(2.0 * (kCount - 1) * kCount * beta) / beta;
  };
  double lo = 1.0;
  double hi = 1000.0;
  ASSERT_FALSE(condition(lo));
  ASSERT_TRUE(condition(hi));
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (condition(mid) ? hi : lo) = mid;
  }
  const double beta = hi;
  std::array<double, 2> worst_error = {0.0, 0.0};
  for (int doubled = 0; doubled < 2; ++doubled) {
    const double b = doubled == 1 ? 2.0 * beta : beta;
    RetrieveOptions options;
    options.beta = static_cast<float>(b);
    options.max_iterations = 1;
    options.return_matches = kCount;
    for (PatternId id = 1; id <= kCount; ++id) {
      const std::vector<float> xi = bank->Get(id).value();
      HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                    Retriever::Retrieve(*bank, xi, options));
      const double error = OneStepErrorFromWeights(*bank, id, result);
      const double delta = bank->PatternSeparation(id).value().separation;
      const double bound =
          2.0 * (kCount - 1) * std::exp(-b * (delta - 2.0 / (b * kCount)));
      EXPECT_LE(error, bound) << "id " << id << " beta " << b;
      worst_error[static_cast<size_t>(doubled)] =
          std::max(worst_error[static_cast<size_t>(doubled)], error);
    }
  }
  RecordProperty("beta", std::to_string(beta));
  RecordProperty("worst_error", std::to_string(worst_error[0]));
  RecordProperty("worst_error_2beta", std::to_string(worst_error[1]));
  EXPECT_GT(worst_error[0], 0.0);
  EXPECT_LE(worst_error[1], worst_error[0] * 1e-4);
}

// algorithms.md §F test 9, spot values (Ξ = I₃, x₀ = (0.6, 0.8, 0), β = 2).
TEST(RetrieverTest, EnergyTraceMatchesSpotValues) {
  auto bank = IdentityBank();
  struct Case {
    Separation separation;
    std::vector<double> trace;
  };
  const std::vector<Case> cases = {
      {Separation::kSoftmax, {-0.613562, -0.699508, -0.709887, -0.713345}},
      {Separation::kSparsemax, {-0.345, -0.415, -0.49, -0.5}},
      {Separation::kEntmax, {-0.409333, -0.455286, -0.462192, -0.470836}},
      {Separation::kSoftmax1, {-0.664767, -0.781315, -0.794039, -0.797357}},
  };
  for (const Case& c : cases) {
    RetrieveOptions options;
    options.beta = 2;
    options.separation = c.separation;
    options.max_iterations = 4;  // scores x_0..x_3
    options.tolerance = 0.0f;
    options.return_energy_trace = true;
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        RetrieveResult result,
        Retriever::Retrieve(*bank, std::vector<float>{0.6f, 0.8f, 0.0f},
                            options));
    EXPECT_THAT(result.energy_trace, Pointwise(DoubleNear(2e-6), c.trace))
        << SeparationName(c.separation);
    EXPECT_EQ(result.energy, result.energy_trace.back());
  }
}

// algorithms.md §F test 9, monotonicity. The engine is float32 (half the
// memory traffic of double), so energies are compared at float resolution:
// the §F double-precision tolerance of 1e-12 becomes 1e-5 relative here.
TEST(RetrieverTest, EnergyNeverIncreasesUnderDotSimilarity) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> beta_dist(0.5f, 20.0f);
  std::uniform_real_distribution<float> norm_dist(0.5f, 2.0f);
  double worst_increase = -std::numeric_limits<double>::infinity();
  for (const Separation separation :
       {Separation::kSoftmax, Separation::kSoftmax1, Separation::kSparsemax,
        Separation::kEntmax}) {
    for (int problem = 0; problem < 200; ++problem) {
      std::vector<float> patterns = UnitPatterns(rng, 50, 16);
      for (size_t i = 0; i < patterns.size(); i += 16) {
        const float norm = norm_dist(rng);
        for (size_t j = i; j < i + 16; ++j) patterns[j] *= norm;
      }
      auto bank = NewBank(16, Similarity::kDot, patterns);
      RetrieveOptions options;
      options.beta = beta_dist(rng);
      options.separation = separation;
      options.max_iterations = 30;
      options.tolerance = 0.0f;
      options.return_energy_trace = true;
      HOPFIELD_ASSERT_OK_AND_ASSIGN(
          RetrieveResult result,
          Retriever::Retrieve(*bank, GaussianPatterns(rng, 1, 16), options));
      const std::vector<double>& trace = result.energy_trace;
      for (size_t t = 1; t < trace.size(); ++t) {
        const double increase = trace[t] - trace[t - 1];
        worst_increase = std::max(worst_increase, increase);
        ASSERT_LE(increase, 1e-5 * (1.0 + std::abs(trace[t - 1])))
            << SeparationName(separation) << " problem " << problem << " step "
            << t;
      }
    }
  }
  RecordProperty("worst_increase", std::to_string(worst_increase));
}

// algorithms.md §F test 10, second part.
TEST(RetrieverTest, Softmax1SendsUnrelatedQueriesToZero) {
  std::mt19937 rng(10);
  std::vector<float> patterns = GaussianPatterns(rng, 20, 8);
  for (size_t i = 0; i < patterns.size(); i += 8) {
    patterns[i] = 10.0f;  // all patterns lean along +e₁
  }
  auto bank = NewBank(8, Similarity::kCosine, patterns);
  RetrieveOptions options;
  options.separation = Separation::kSoftmax1;
  options.beta = 40.0f;
  options.max_iterations = 1;
  options.return_matches = 20;
  std::vector<float> query(8, 0.0f);
  query[0] = -1.0f;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                Retriever::Retrieve(*bank, query, options));
  for (const Match& match : result.matches) {
    ASSERT_LE(options.beta * match.score, -30.0f);
  }
  const double m = bank->Stats().max_norm;
  double norm = 0.0;
  for (const float v : result.pattern) norm += static_cast<double>(v) * v;
  EXPECT_LE(std::sqrt(norm), 20.0 * std::exp(-30.0) * m);
  EXPECT_GT(result.null_mass, 0.999999f);
}

// algorithms.md §F test 19: with automatic β every stored pattern is
// retrieved with error <= ε·m.
TEST(RetrieverTest, AutomaticBetaMeetsItsErrorTarget) {
  constexpr int kCount = 2000;
  std::mt19937 rng(19);
  auto bank = NewBank(64, Similarity::kCosine, UnitPatterns(rng, kCount, 64));
  const BankStats stats = bank->Stats();
  EXPECT_NEAR(stats.effective_beta,
              AutoBeta(kCount, stats.min_separation.value()), 1e-9);
  RetrieveOptions options;
  options.max_iterations = 1;
  options.return_matches = 64;
  std::vector<float> queries;
  for (PatternId id = 1; id <= 1000; ++id) {
    const std::vector<float> xi = bank->Get(id).value();
    queries.insert(queries.end(), xi.begin(), xi.end());
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      auto results, Retriever::RetrieveBatch(*bank, queries, options));
  for (PatternId id = 1; id <= 1000; ++id) {
    const RetrieveResult& result = results[id - 1];
    ASSERT_EQ(result.nearest_id, id);
    EXPECT_NEAR(result.beta, stats.effective_beta, 1e-3);
    // The weights beyond the 64 returned are bounded by the 64th; count them.
    const double tail = (kCount - 64) * result.matches.back().weight;
    EXPECT_LE(OneStepErrorFromWeights(*bank, id, result) + 2.0 * tail,
              kAutoBetaEpsilon);
  }
}

// algorithms.md §F test 20.
TEST(RetrieverTest, FlagsMetastableMixtures) {
  constexpr size_t kDim = 64;
  std::mt19937 rng(20);
  // Four unit memories at mutual cosine 0.99: b + ε e_i with e_i ⟂ b and
  // ε² = 1/0.99 - 1.
  const double epsilon = std::sqrt(1.0 / 0.99 - 1.0);
  std::vector<float> patterns(4 * kDim, 0.0f);
  for (size_t i = 0; i < 4; ++i) {
    patterns[i * kDim] = 1.0f;
    patterns[i * kDim + 1 + i] = static_cast<float>(epsilon);
  }
  const std::vector<float> others =
      UnitPatterns(rng, 100, static_cast<int>(kDim));
  patterns.insert(patterns.end(), others.begin(), others.end());
  auto bank =
      NewBank(static_cast<uint32_t>(kDim), Similarity::kCosine, patterns);
  {
    const std::vector<float> a = bank->Get(1).value();
    const std::vector<float> b = bank->Get(2).value();
    const Eigen::Map<const Eigen::VectorXf> va(a.data(),
                                               static_cast<Eigen::Index>(kDim));
    const Eigen::Map<const Eigen::VectorXf> vb(b.data(),
                                               static_cast<Eigen::Index>(kDim));
    ASSERT_NEAR(va.dot(vb) / (va.norm() * vb.norm()), 0.99, 1e-6);
  }
  std::vector<float> mean(kDim, 0.0f);
  for (size_t i = 0; i < 4; ++i) {
    for (size_t j = 0; j < kDim; ++j) mean[j] += patterns[i * kDim + j] / 4;
  }
  RetrieveOptions options;
  options.beta = 5.0f;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                Retriever::Retrieve(*bank, mean, options));
  EXPECT_GE(result.support_size, 4u);
  EXPECT_TRUE(result.metastable);
  options.beta = 500.0f;
  for (PatternId id = 1; id <= 4; ++id) {
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        result, Retriever::Retrieve(*bank, bank->Get(id).value(), options));
    EXPECT_EQ(result.support_size, 1u);
    EXPECT_FALSE(result.metastable);
    EXPECT_EQ(result.nearest_id, id);
  }
}

TEST(RetrieverTest, RecallsStoredPatternsFromNoisyQueries) {
  constexpr int kCount = 1000;
  constexpr int kDim = 64;
  std::mt19937 rng(21);
  auto bank =
      NewBank(kDim, Similarity::kCosine, UnitPatterns(rng, kCount, kDim));
  std::normal_distribution<float> noise(0.0f, 0.05f);
  for (const Separation separation :
       {Separation::kSoftmax, Separation::kSoftmax1, Separation::kSparsemax,
        Separation::kEntmax}) {
    RetrieveOptions options;
    options.separation = separation;
    for (PatternId id = 1; id <= 50; ++id) {
      const std::vector<float> xi = bank->Get(id).value();
      std::vector<float> query = xi;
      for (float& v : query) v += noise(rng);
      HOPFIELD_ASSERT_OK_AND_ASSIGN(RetrieveResult result,
                                    Retriever::Retrieve(*bank, query, options));
      EXPECT_EQ(result.nearest_id, id) << SeparationName(separation);
      EXPECT_TRUE(result.converged);
      EXPECT_LE(Distance(result.pattern, xi), 1e-3)
          << SeparationName(separation);
    }
  }
}

TEST(RetrieverTest, PatternIsTheWeightedSumOfTheReportedMatches) {
  std::mt19937 rng(22);
  auto bank = NewBank(8, Similarity::kCosine, GaussianPatterns(rng, 30, 8));
  RetrieveOptions options;
  options.beta = 3.0f;  // a genuine mixture
  options.return_matches = 30;
  options.return_energy_trace = true;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      RetrieveResult result,
      Retriever::Retrieve(*bank, GaussianPatterns(rng, 1, 8), options));
  ASSERT_EQ(result.matches.size(), 30u);
  std::vector<double> sum(8, 0.0);
  for (size_t i = 0; i < result.matches.size(); ++i) {
    if (i > 0) {
      EXPECT_GE(result.matches[i - 1].weight, result.matches[i].weight);
    }
    const std::vector<float> xi = bank->Get(result.matches[i].id).value();
    for (size_t j = 0; j < 8; ++j) sum[j] += result.matches[i].weight * xi[j];
  }
  for (size_t j = 0; j < 8; ++j) EXPECT_NEAR(result.pattern[j], sum[j], 1e-5);
  EXPECT_EQ(result.energy_trace.size(), result.iterations);
  EXPECT_EQ(result.energy, result.energy_trace.back());
  EXPECT_EQ(result.patterns_scored, 30u * result.iterations);
  EXPECT_EQ(result.nearest_id, result.matches[0].id);
}

TEST(RetrieverTest, BatchAgreesWithSingleQueries) {
  constexpr int kDim = 32;
  std::mt19937 rng(23);
  auto bank = NewBank(kDim, Similarity::kCosine, UnitPatterns(rng, 500, kDim));
  std::vector<float> queries = GaussianPatterns(rng, 20, kDim);
  for (PatternId id = 1; id <= 20; ++id) {  // and 20 noisy stored patterns
    std::vector<float> xi = bank->Get(id).value();
    for (float& v : xi) v += 0.05f * std::normal_distribution<float>()(rng);
    queries.insert(queries.end(), xi.begin(), xi.end());
  }
  for (const Separation separation :
       {Separation::kSoftmax, Separation::kSoftmax1, Separation::kSparsemax,
        Separation::kEntmax}) {
    for (const float beta : {4.0f, 40.0f}) {
      RetrieveOptions options;
      options.separation = separation;
      options.beta = beta;
      options.max_iterations = 5;
      options.return_matches = 3;
      options.threads = 3;
      HOPFIELD_ASSERT_OK_AND_ASSIGN(
          auto batch, Retriever::RetrieveBatch(*bank, queries, options));
      ASSERT_EQ(batch.size(), 40u);
      for (size_t q = 0; q < 40; ++q) {
        HOPFIELD_ASSERT_OK_AND_ASSIGN(
            RetrieveResult single,
            Retriever::Retrieve(
                *bank, absl::MakeConstSpan(queries).subspan(q * kDim, kDim),
                options));
        SCOPED_TRACE(::testing::Message()
                     << SeparationName(separation) << " beta " << beta
                     << " query " << q);
        EXPECT_EQ(batch[q].nearest_id, single.nearest_id);
        EXPECT_NEAR(batch[q].nearest_weight, single.nearest_weight, 1e-4);
        EXPECT_LE(std::abs(static_cast<int>(batch[q].iterations) -
                           static_cast<int>(single.iterations)),
                  1);
        EXPECT_LE(Distance(batch[q].pattern, single.pattern), 1e-3);
        if (batch[q].iterations == single.iterations) {
          EXPECT_NEAR(batch[q].energy, single.energy, 1e-4);
        }
      }
    }
  }
}

// Issue 13: a batch's scratch (n x M floats several times over) used to be
// allocated whatever its size. With a budget it runs in chunks that fit, on
// a worker pool, with the same answers; a budget too small for one query is
// RESOURCE_EXHAUSTED naming it.
TEST(RetrieverTest, Issue13BudgetedBatchRunsInChunksOnThePool) {
  constexpr int kDim = 16;
  std::mt19937 rng(31);
  auto bank = NewBank(kDim, Similarity::kCosine, UnitPatterns(rng, 2000, kDim));
  const std::vector<float> queries = GaussianPatterns(rng, 300, kDim);
  RetrieveOptions options;
  options.return_matches = 2;
  options.threads = 2;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const auto whole, Retriever::RetrieveBatch(*bank, queries, options));
  WorkerPool pool(WorkerPoolOptions{2});
  // Room for the results and ~20 queries' scratch (4·M floats each).
  auto budget = MemoryBudget::Create(300 * 400 + 20 * 40000, "test budget");
  options.pool = &pool;
  options.budget = budget.get();
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const auto chunked, Retriever::RetrieveBatch(*bank, queries, options));
  ASSERT_EQ(chunked.size(), whole.size());
  for (size_t q = 0; q < whole.size(); ++q) {
    EXPECT_EQ(chunked[q].nearest_id, whole[q].nearest_id) << q;
    EXPECT_LE(Distance(chunked[q].pattern, whole[q].pattern), 1e-5) << q;
  }
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_GT(budget->peak(), 300u * 400);
  auto tiny = MemoryBudget::Create(40000, "tiny budget");
  options.budget = tiny.get();
  EXPECT_THAT(
      Retriever::RetrieveBatch(*bank, queries, options),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("tiny budget")));
  EXPECT_THAT(Retriever::Retrieve(
                  *bank, absl::MakeConstSpan(queries).first(kDim), options),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("retrieval scratch")));
  EXPECT_EQ(tiny->used(), 0u);
}

// Issue 13: finite values whose dot scores overflow (1e19 · 1e19 · β) gave
// NaN/Inf in an OK reply.
TEST(RetrieverTest, Issue13DotScoresThatWouldOverflowAreRefused) {
  auto bank = NewBank(2, Similarity::kDot, {1e19f, 0, 0, 1e19f});
  RetrieveOptions options;  // automatic β >= 8: 8 · 1e19 · 1e19 > 3.4e38
  const std::vector<float> query = {1e19f, 1e18f};
  EXPECT_THAT(Retriever::Retrieve(*bank, query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("query"), HasSubstr("overflow"))));
  EXPECT_THAT(
      Retriever::RetrieveBatch(*bank, {1, 0, 1e19f, 1e18f}, options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queries[0]")));
  // Scaled down, the same data retrieves with finite numbers.
  auto small = NewBank(2, Similarity::kDot, {1e9f, 0, 0, 1e9f});
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const RetrieveResult result,
      Retriever::Retrieve(*small, std::vector<float>{1e9f, 1e8f}, options));
  EXPECT_TRUE(std::isfinite(result.energy));
  EXPECT_TRUE(std::isfinite(result.matches[0].score));
}

// The request_fuzzer regressions (fuzz/regressions/request_fuzzer/retrieve-*):
// queries whose float norms over- or underflow, or whose dot scores overflow
// before β, used to be answered OK with NaN/Inf. Now every answer is finite
// or INVALID_ARGUMENT.
TEST(RetrieverTest, FuzzRegressionsAnswerFiniteNumbersOrInvalidArgument) {
  const std::vector<float> stored = {1, 0, 0, 0, 0, 1, 0, 0, 100, -100, 50, 3};
  struct Case {
    const char* name;
    Similarity similarity;
    std::vector<float> queries;
    float beta;
  };
  const std::vector<Case> cases = {
      {"retrieve-batch-cosine-query-norm-overflows",
       Similarity::kCosine,
       {-2.3e38f, 0, 0, 0, 1, 0, 0, 0},
       0.0f},
      {"retrieve-cosine-tiny-query-norm-underflows",
       Similarity::kCosine,
       {2.2e-41f, 0, 4.6e-28f, 3.5e-38f},
       0.0f},
      {"retrieve-dot-energy-norm-overflows",
       Similarity::kDot,
       {-6.5e32f, 1e-30f, 0, 1},
       4.0f},
      {"retrieve-dot-score-overflows-small-beta",
       Similarity::kDot,
       {-1.78e38f, 0, 0, 0},
       5.8e-11f},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto bank = NewBank(4, c.similarity, stored);
    RetrieveOptions options;
    options.beta = c.beta;
    options.return_matches = 3;
    options.return_energy_trace = true;
    const auto results = Retriever::RetrieveBatch(*bank, c.queries, options);
    if (!results.ok()) {
      EXPECT_THAT(results, StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("overflow")));
      continue;
    }
    for (const RetrieveResult& result : *results) {
      EXPECT_TRUE(std::isfinite(result.energy));
      for (const double e : result.energy_trace) EXPECT_TRUE(std::isfinite(e));
      for (const float v : result.pattern) EXPECT_TRUE(std::isfinite(v));
      for (const Match& m : result.matches) {
        EXPECT_TRUE(std::isfinite(m.weight) && std::isfinite(m.score));
      }
      EXPECT_GT(result.matches[0].weight, 0.0f);
    }
  }
  // The tiny cosine query is a direction like any other: it retrieves.
  auto cosine = NewBank(4, Similarity::kCosine, stored);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const RetrieveResult tiny,
      Retriever::Retrieve(*cosine, std::vector<float>{1e-40f, 0, 1e-39f, 0}));
  EXPECT_TRUE(std::isfinite(tiny.matches[0].score));
}

#if defined(__SSE__)
// Retrieval flushes denormal results on its threads and leaves each
// thread's float mode as it found it, on success and on error.
TEST(RetrieverTest, RetrievalLeavesTheThreadsFloatModeAsItFoundIt) {
  ASSERT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_OFF);
  volatile float tiny = 1e-30f;    // volatile: computed at run time
  EXPECT_GT(tiny * 1e-10f, 0.0f);  // a denormal, kept
  {
    const ScopedFlushDenormals flush;
    EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_ON);
    EXPECT_EQ(tiny * 1e-10f, 0.0f);  // flushed
    {
      const ScopedFlushDenormals nested;
      EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_ON);
    }
    EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_ON);
  }
  EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_OFF);

  auto bank = IdentityBank();
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0, 0}), IsOk());
  EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_OFF);
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_OFF);
  RetrieveOptions options;
  options.threads = 2;
  EXPECT_THAT(Retriever::RetrieveBatch(
                  *bank, std::vector<float>{1, 0, 0, 0, 1, 0}, options),
              IsOk());
  EXPECT_EQ(_MM_GET_FLUSH_ZERO_MODE(), _MM_FLUSH_ZERO_OFF);
}
#endif

TEST(RetrieverTest, RejectsBadInputWithoutSideEffects) {
  auto bank = IdentityBank();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("expected 3"), HasSubstr("got 2"))));
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, nan, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("values[1]"), HasSubstr("nan"))));
  EXPECT_THAT(Retriever::RetrieveBatch(*bank, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(Retriever::RetrieveBatch(*bank, std::vector<float>{1, 0, 0, 1}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("queries[1]"), HasSubstr("got 1"))));
  EXPECT_THAT(
      Retriever::RetrieveBatch(*bank, std::vector<float>{1, 0, 0, 0, nan, 0}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queries[1]")));
  RetrieveOptions bad;
  bad.beta = -1.0f;
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0, 0}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beta")));
  bad.beta = 1e-39f;  // denormal: β·s would flush to 0
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0, 0}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beta")));
  bad = RetrieveOptions();
  bad.max_iterations = 5000;
  EXPECT_THAT(Retriever::Retrieve(*bank, std::vector<float>{1, 0, 0}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_iterations")));

  BankOptions options;
  options.dim = 3;
  auto cosine = MemoryBank::Create("cosine", options).value();
  EXPECT_THAT(
      Retriever::Retrieve(*cosine, std::vector<float>{1, 0, 0}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty")));
  ASSERT_THAT(cosine->Add({0}, {1, 2, 3}), IsOk());
  EXPECT_THAT(Retriever::Retrieve(*cosine, std::vector<float>{0, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zero")));
}

TEST(RetrieverTest, CheckContinueAbortsLongRetrievals) {
  std::mt19937 rng(24);
  auto bank = NewBank(8, Similarity::kCosine, GaussianPatterns(rng, 50, 8));
  RetrieveOptions options;
  options.beta = 1.0f;
  options.tolerance = 0.0f;
  options.max_iterations = 100;
  int polls = 0;
  options.check_continue = [&polls]() {
    return ++polls >= 3 ? absl::CancelledError("client went away")
                        : absl::OkStatus();
  };
  EXPECT_THAT(Retriever::Retrieve(*bank, GaussianPatterns(rng, 1, 8), options),
              StatusIs(absl::StatusCode::kCancelled));
  polls = 0;
  EXPECT_THAT(
      Retriever::RetrieveBatch(*bank, GaussianPatterns(rng, 4, 8), options),
      StatusIs(absl::StatusCode::kCancelled));
}

// One iteration of a large batch can take seconds, so check_continue is
// also polled inside an iteration, every check_every_macs of work.
TEST(RetrieverTest, CheckContinueIsPolledWithinAnIteration) {
  std::mt19937 rng(25);
  auto bank = NewBank(8, Similarity::kCosine, GaussianPatterns(rng, 2000, 8));
  const std::vector<float> queries = GaussianPatterns(rng, 4, 8);
  const auto one_query = absl::MakeConstSpan(queries).first(8);
  for (const Separation separation :
       {Separation::kSoftmax, Separation::kSparsemax}) {
    SCOPED_TRACE(static_cast<int>(separation));
    RetrieveOptions options;
    options.max_iterations = 1;  // no poll between iterations
    options.separation = separation;
    int polls = 0;
    options.check_continue = [&polls] {
      ++polls;
      return absl::DeadlineExceededError("the call's deadline passed");
    };
    bank->WithReader([&](const BankView& view) {
      HOPFIELD_ASSERT_OK_AND_ASSIGN(
          RetrievalParams params,
          ResolveRetrieval(bank->options(), view, options));
      // The default budget covers this small bank in one go: no poll.
      EXPECT_THAT(Retriever::Retrieve(view, params, one_query), IsOk());
      EXPECT_THAT(Retriever::RetrieveBatch(view, params, queries), IsOk());
      EXPECT_EQ(polls, 0);
      params.check_every_macs = 1024;  // one 128-pattern block of 8 floats
      EXPECT_THAT(Retriever::Retrieve(view, params, one_query),
                  StatusIs(absl::StatusCode::kDeadlineExceeded));
      EXPECT_THAT(Retriever::RetrieveBatch(view, params, queries),
                  StatusIs(absl::StatusCode::kDeadlineExceeded));
      EXPECT_EQ(polls, 2);
    });
  }
}

TEST(RetrieverTest, ApproximateSearchIsAnsweredExactly) {
  auto bank = IdentityBank();
  RetrieveOptions options;
  options.search = SearchMode::kApproximate;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      RetrieveResult result,
      Retriever::Retrieve(*bank, std::vector<float>{1, 0, 0}, options));
  EXPECT_TRUE(result.exact);
  EXPECT_EQ(result.truncation_bound, 0.0f);
}

}  // namespace
}  // namespace hopfield
