#include "core/separation.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hopfield {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

std::vector<double> Apply(Separation separation, double alpha,
                          const std::vector<double>& z) {
  std::vector<double> p(z.size());
  Separate<double>(separation, alpha, z, absl::MakeSpan(p));
  return p;
}

std::vector<double> Scaled(std::vector<double> z, double beta) {
  for (double& v : z) v *= beta;
  return z;
}

// algorithms.md §F test 1.
TEST(SeparationTest, MatchesReferenceValuesOnThreeLogits) {
  const std::vector<double> z = {1.0, 0.8, 0.1};
  EXPECT_THAT(Apply(Separation::kSoftmax, 1.5, z),
              Pointwise(DoubleNear(1e-6), {0.449378, 0.367919, 0.182703}));
  std::vector<double> p(3);
  const double theta = Sparsemax<double>(z, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-6), {0.6, 0.4, 0.0}));
  EXPECT_NEAR(theta, 0.4, 1e-12);
  EXPECT_EQ(SupportSize<double>(Separation::kSparsemax, p), 2);
  const std::vector<double> entmax = {0.529248, 0.393749, 0.077003};
  Entmax15<double>(z, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-6), entmax));
  EntmaxBisect<double>(z, 1.5, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-6), entmax));
}

// algorithms.md §F test 2.
TEST(SeparationTest, EveryNormaliserStaysOnTheSimplex) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> size_dist(2, 50);
  std::uniform_real_distribution<double> scale_dist(0.1, 10.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  double worst_sparse_gap = 0.0;
  double worst_entmax_gap = 0.0;
  for (int trial = 0; trial < 10000; ++trial) {
    const int size = size_dist(rng);
    const double scale = scale_dist(rng);
    std::vector<double> z(static_cast<size_t>(size));
    for (double& v : z) v = scale * normal(rng);
    std::vector<float> zf(z.begin(), z.end());
    for (const Separation separation :
         {Separation::kSoftmax, Separation::kSparsemax, Separation::kEntmax}) {
      const std::vector<double> p = Apply(separation, 1.5, z);
      double sum = 0.0;
      for (const double v : p) {
        ASSERT_GE(v, 0.0);
        sum += v;
      }
      ASSERT_NEAR(sum, 1.0, 1e-12) << SeparationName(separation);
      std::vector<float> pf(zf.size());
      Separate<float>(separation, 1.5, zf, absl::MakeSpan(pf));
      double sum_f = 0.0;
      for (const float v : pf) {
        ASSERT_GE(v, 0.0f);
        sum_f += v;
      }
      ASSERT_NEAR(sum_f, 1.0, 1e-6) << SeparationName(separation);
    }
    // Softmax1 is a sub-probability: Σp = 1 - null mass < 1.
    std::vector<double> p1(z.size());
    const double null_mass = Softmax1<double>(z, absl::MakeSpan(p1));
    double sum1 = 0.0;
    for (const double v : p1) sum1 += v;
    // (Σp rounds to 1 when the null mass is below double resolution.)
    ASSERT_LE(sum1, 1.0 + 1e-12);
    ASSERT_GT(null_mass, 0.0);
    ASSERT_NEAR(sum1 + null_mass, 1.0, 1e-12);

    std::vector<double> bisect(z.size());
    std::vector<double> exact(z.size());
    EntmaxBisect<double>(z, 2.0, absl::MakeSpan(bisect));
    Sparsemax<double>(z, absl::MakeSpan(exact));
    for (size_t i = 0; i < z.size(); ++i) {
      worst_sparse_gap =
          std::max(worst_sparse_gap, std::abs(bisect[i] - exact[i]));
    }
    EntmaxBisect<double>(z, 1.5, absl::MakeSpan(bisect));
    Entmax15<double>(z, absl::MakeSpan(exact));
    for (size_t i = 0; i < z.size(); ++i) {
      worst_entmax_gap =
          std::max(worst_entmax_gap, std::abs(bisect[i] - exact[i]));
    }
  }
  EXPECT_LE(worst_sparse_gap, 1e-10);
  EXPECT_LE(worst_entmax_gap, 1e-10);
}

// algorithms.md §F test 3.
TEST(SeparationTest, SparsemaxSupportFollowsTheGapRule) {
  EXPECT_THAT(Apply(Separation::kSparsemax, 0, {3, 1, 0.2, -1}),
              ElementsAre(1.0, 0.0, 0.0, 0.0));
  EXPECT_THAT(Apply(Separation::kSparsemax, 0, {0.5, 0.5, 0.5}),
              Pointwise(DoubleNear(1e-15), {1.0 / 3, 1.0 / 3, 1.0 / 3}));
  const std::vector<double> e1 = {1, 0, 0};
  EXPECT_THAT(Apply(Separation::kSparsemax, 0, Scaled(e1, 0.5)),
              Pointwise(DoubleNear(1e-12), {2.0 / 3, 1.0 / 6, 1.0 / 6}));
  // β = 1: the gap is exactly 1, the boundary: exactly e₁.
  EXPECT_THAT(Apply(Separation::kSparsemax, 0, Scaled(e1, 1.0)),
              ElementsAre(1.0, 0.0, 0.0));
}

TEST(SeparationTest, EntmaxSupportFollowsTheGapRule) {
  const std::vector<double> e1 = {1, 0, 0};
  EXPECT_THAT(Apply(Separation::kEntmax, 1.5, Scaled(e1, 1.0)),
              Pointwise(DoubleNear(1e-6), {0.740253, 0.129873, 0.129873}));
  // β = 2: gap · (α - 1) = 1, exactly e₁ from both algorithms.
  EXPECT_THAT(Apply(Separation::kEntmax, 1.5, Scaled(e1, 2.0)),
              ElementsAre(1.0, 0.0, 0.0));
  std::vector<double> p(3);
  EntmaxBisect<double>(Scaled(e1, 2.0), 1.5, absl::MakeSpan(p));
  EXPECT_THAT(p, ElementsAre(1.0, 0.0, 0.0));
}

// algorithms.md §F test 4.
TEST(SeparationTest, Softmax1HandlesNullMassAndExtremes) {
  std::vector<double> p(2);
  double null_mass = Softmax1<double>({0.0, 0.0}, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-15), {1.0 / 3, 1.0 / 3}));
  EXPECT_NEAR(null_mass, 1.0 / 3, 1e-15);
  Softmax1<double>({-10.0, -10.0}, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-8), {4.54e-5, 4.54e-5}));
  Softmax1<double>({1000.0, 999.0}, absl::MakeSpan(p));
  EXPECT_THAT(p, Pointwise(DoubleNear(1e-6), {0.731059, 0.268941}));
  null_mass = Softmax1<double>({-1000.0, -1001.0}, absl::MakeSpan(p));
  EXPECT_THAT(p, ElementsAre(0.0, 0.0));
  EXPECT_EQ(null_mass, 1.0);
  std::vector<float> pf(2);
  Softmax1<float>({1000.0f, 999.0f}, absl::MakeSpan(pf));
  EXPECT_THAT(pf, Pointwise(FloatNear(1e-6f), {0.731059f, 0.268941f}));
  Softmax1<float>({-1000.0f, -1001.0f}, absl::MakeSpan(pf));
  EXPECT_THAT(pf, ElementsAre(0.0f, 0.0f));
}

TEST(SeparationTest, Softmax1NullMassMatchesClosedForm) {
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0.0, 3.0);
  for (int trial = 0; trial < 1000; ++trial) {
    std::vector<double> z(10);
    double sum_exp = 0.0;
    for (double& v : z) {
      v = normal(rng);
      sum_exp += std::exp(v);
    }
    std::vector<double> p(z.size());
    const double null_mass = Softmax1<double>(z, absl::MakeSpan(p));
    double sum = 0.0;
    for (const double v : p) sum += v;
    EXPECT_LT(sum, 1.0);
    EXPECT_NEAR(null_mass, 1.0 / (1.0 + sum_exp), 1e-12);
  }
}

TEST(SeparationTest, SoftmaxIsStableForHugeLogits) {
  std::vector<float> p(3);
  Softmax<float>({1e30f, -1e30f, 1e30f}, absl::MakeSpan(p));
  EXPECT_THAT(p, ElementsAre(0.5f, 0.0f, 0.5f));
  EXPECT_NEAR(LogSumExp<double>({1000.0, 1000.0}), 1000.0 + std::log(2.0),
              1e-12);
  EXPECT_NEAR(LogOnePlusSumExp<double>({-1000.0}), 0.0, 1e-12);
  EXPECT_NEAR(LogOnePlusSumExp<double>({1000.0}), 1000.0, 1e-12);
}

// Sparse maps sort only the entries within reach of the threshold; on a long
// vector the answer must equal a brute-force projection onto the simplex.
TEST(SeparationTest, SparsemaxOnLongVectorMatchesBruteForce) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 0.5);
  std::vector<double> z(60000);
  for (double& v : z) v = normal(rng);
  std::vector<double> p(z.size());
  Sparsemax<double>(z, absl::MakeSpan(p));
  // Brute force: full sort, Martins & Astudillo.
  std::vector<double> sorted = z;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  double cumulative = 0.0;
  double theta = 0.0;
  for (size_t k = 1; k <= sorted.size(); ++k) {
    cumulative += sorted[k - 1];
    if (1.0 + static_cast<double>(k) * sorted[k - 1] > cumulative) {
      theta = (cumulative - 1.0) / static_cast<double>(k);
    }
  }
  for (size_t i = 0; i < z.size(); ++i) {
    ASSERT_NEAR(p[i], std::max(z[i] - theta, 0.0), 1e-12);
  }
}

TEST(SeparationTest, TsallisEntropyLimits) {
  const std::vector<double> uniform = {0.25, 0.25, 0.25, 0.25};
  EXPECT_NEAR(TsallisEntropy<double>(uniform, 1.0), std::log(4.0), 1e-15);
  EXPECT_NEAR(TsallisEntropy<double>(uniform, 2.0), (1.0 - 0.25) / 2.0, 1e-15);
  EXPECT_NEAR(TsallisEntropy<double>({1.0, 0.0}, 1.5), 0.0, 1e-15);
  EXPECT_EQ(SeparationAlpha(Separation::kSoftmax1, 1.5), 1.0);
  EXPECT_EQ(SeparationAlpha(Separation::kSparsemax, 1.5), 2.0);
  EXPECT_EQ(SeparationAlpha(Separation::kEntmax, 1.25), 1.25);
}

TEST(SeparationTest, SupportSizeUsesTheDenseThreshold) {
  EXPECT_EQ(SupportSize<double>(Separation::kSoftmax, {0.98, 0.011, 0.009}), 2);
  EXPECT_EQ(SupportSize<double>(Separation::kSparsemax, {0.98, 0.011, 0.009}),
            3);
}

}  // namespace
}  // namespace hopfield
