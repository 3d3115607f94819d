#include "core/capacity.h"

#include <array>
#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hopfield {
namespace {

// algorithms.md §F test 8.
TEST(CapacityTest, RamsauerConstantMatchesThePaperExamples) {
  EXPECT_NEAR(RamsauerC(1.0, 3.0, 20.0, 1e-3), 3.1546, 5e-5);
  EXPECT_NEAR(RamsauerC(1.0, 1.0, 75.0, 1e-3), 1.3719, 5e-5);
  EXPECT_NEAR(RamsauerCapacity(1.0, 3.0, 20.0, 1e-3), 7.41, 5e-3);
  EXPECT_NEAR(RamsauerCapacity(1.0, 1.0, 75.0, 1e-3), 10.97, 5e-3);
  EXPECT_NEAR(RamsauerCapacity(1.0, 3.0, 64.0, 1e-3) / 1.66e6, 1.0, 5e-3);
}

TEST(CapacityTest, LambertWSolvesItsEquation) {
  for (const double log_x : {-20.0, -1.0, 0.0, 1.0, 5.0, 100.0, 700.0, 1e5}) {
    const double w = LambertW0OfExp(log_x);
    EXPECT_NEAR(w + std::log(w), log_x, 1e-12 * std::max(1.0, std::abs(log_x)))
        << log_x;
  }
  EXPECT_NEAR(LambertW0OfExp(1.0), 1.0, 1e-14);  // W(e) = 1
}

// algorithms.md §F test 19 (the formula part; the retrieval part is in
// retriever_test.cc).
TEST(CapacityTest, AutoBetaFollowsTheRule) {
  EXPECT_NEAR(AutoBeta(1000000, 0.3), 107.1, 0.05);
  EXPECT_EQ(AutoBeta(0, 0.3), kAutoBetaMin);
  EXPECT_EQ(AutoBeta(1, 0.3), kAutoBetaMin);
  EXPECT_EQ(AutoBeta(2, 1.9), kAutoBetaMin);           // well separated: floor
  EXPECT_EQ(AutoBeta(1000, 0.05), kAutoBetaMax);       // Δ_min <= 2R
  EXPECT_EQ(AutoBeta(1000, 0.1000001), kAutoBetaMax);  // clamped
  // Dot similarity: the radius and margin scale with the norm.
  EXPECT_NEAR(AutoBeta(1000000, 0.3 * 4.0, 2.0), 107.1 / 4.0, 0.05);
}

// Spot values of the U-Hop+ Prop. 3.1 table (algorithms.md §B.6, d = 3).
TEST(CapacityTest, SphericalCodeBoundsMatchTheTable) {
  EXPECT_NEAR(SphericalCodeSeparationLowerBound(4, 3), 0.1667, 5e-5);
  EXPECT_NEAR(SphericalCodeSeparationUpperBound(4, 3), 2.0000, 5e-5);
  EXPECT_NEAR(SphericalCodeSeparationLowerBound(100, 3), 0.0067, 5e-5);
  EXPECT_NEAR(SphericalCodeSeparationUpperBound(100, 3), 0.4000, 5e-5);
  EXPECT_NEAR(SphericalCodeSeparationUpperBound(130, 3), 0.3508, 5e-5);
  EXPECT_NEAR(SphericalCodeSeparationLowerBound(100, 16), 0.254, 5e-4);
  EXPECT_NEAR(SphericalCodeSeparationLowerBound(1e6, 64), 0.311, 5e-4);
  EXPECT_NEAR(SphericalCodeSeparationLowerBound(1e4, 256), 0.458, 5e-4);
}

TEST(CapacityTest, CapacityGrowsWithSeparationAndBeta) {
  const double base = LogCapacity(32.0, 64.0, 0.4);
  EXPECT_GT(LogCapacity(32.0, 64.0, 0.5), base);
  EXPECT_GT(LogCapacity(64.0, 64.0, 0.4), base);
  // Crowded banks: capacity 1, so utilisation equals the pattern count.
  EXPECT_EQ(LogCapacity(32.0, 64.0, 0.05), 0.0);
  EXPECT_NEAR(CapacityUtilization(500, 0.0), 500.0, 1e-9);
  // The dimension caps what any separation can give: in 3 dimensions at
  // β = 32, an optimal code stays storable only up to ~120 points.
  EXPECT_LT(LogCapacity(32.0, 3.0, 1.9), std::log(200.0));
  EXPECT_EQ(CapacityUtilization(0, 1.0), 0.0);
}

TEST(CapacityTest, CapacityMatchesTheStorageCondition) {
  // At the capacity M*, Δ = β⁻¹ ln(2(M*-1)/R) + 2R holds with equality.
  const double beta = 40.0;
  const double separation = 0.45;
  const double log_capacity = LogCapacity(beta, 4096.0, separation);
  const double m = std::exp(log_capacity);
  EXPECT_NEAR(std::log(2.0 * (m - 1.0) / kAutoBetaRadius) / beta +
                  2.0 * kAutoBetaRadius,
              separation, 1e-9);
}

TEST(CapacityTest, SphericalCosineBoundHoldsIsTightAndBeatsTheChord) {
  // Random unit triples in 8 dimensions: cos(x, u) never exceeds the bound
  // from cos(x, v) and cos(u, v), which never exceeds the chordal bound.
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  auto unit = [&] {
    std::array<double, 8> x{};
    double norm = 0.0;
    for (double& e : x) {
      e = normal(rng);
      norm += e * e;
    }
    for (double& e : x) e /= std::sqrt(norm);
    return x;
  };
  auto dot = [](const std::array<double, 8>& a,
                const std::array<double, 8>& b) {
    double sum = 0.0;
    for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
    return sum;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    const auto x = unit();
    const auto u = unit();
    auto v = unit();
    if (trial % 2 == 1) {
      // Keep u and v close, as a retrieval's successive states are.
      for (size_t i = 0; i < v.size(); ++i) v[i] = u[i] + 0.1 * v[i];
      const double norm = std::sqrt(dot(v, v));
      for (double& e : v) e /= norm;
    }
    const double a = dot(x, v);
    const double c = dot(u, v);
    const double bound = SphericalCosineBound(a, c);
    EXPECT_LE(dot(x, u), bound + 1e-12) << trial;
    EXPECT_LE(bound, std::min(1.0, a + std::sqrt(2.0 - 2.0 * c)) + 1e-12)
        << trial;
  }
  // Tight in the plane: x at 60° from v, u at 20° from v towards x.
  const double pi = std::acos(-1.0);
  EXPECT_NEAR(SphericalCosineBound(std::cos(pi / 3), std::cos(pi / 9)),
              std::cos(2 * pi / 9), 1e-12);
  // A state near its anchor barely loosens the bound; the chord loosens it
  // by ‖u − v‖ (0.045 at cos 0.999).
  EXPECT_NEAR(SphericalCosineBound(0.95, 0.999), 0.9630, 1e-4);
  EXPECT_EQ(SphericalCosineBound(0.5, 0.4), 1.0);   // x may coincide with u
  EXPECT_EQ(SphericalCosineBound(2.0, -3.0), 1.0);  // clamped
  EXPECT_NEAR(SphericalCosineBound(-1.0, 1.0), -1.0, 1e-12);
}

}  // namespace
}  // namespace hopfield
