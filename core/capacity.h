// File: capacity.h
//
// Closed-form quantities from the modern-Hopfield theory that the engine uses
// to pick β and to report how full a bank is (algorithms.md §A.1, §B.6, §E.4):
//
//   - the automatic β rule  β = max(8, ln(2(M-1)/ε) / (Δ_min - 2R·m²)),
//   - Ramsauer et al.'s capacity constant c(β, K, d, p) (Theorem 3), with the
//     principal Lambert-W branch by Newton's method,
//   - the spherical-code bounds on the best achievable separation of M points
//     on the unit sphere in D dimensions (U-Hop+ Proposition 3.1),
//   - a capacity estimate for the `capacity_utilization` metric.
//
// All functions are pure and thread-safe.
#ifndef HOPFIELD_CORE_CAPACITY_H_
#define HOPFIELD_CORE_CAPACITY_H_

#include <cstdint>

namespace hopfield {

// Defaults of the β rule: basin radius R (relative to the pattern norm) and
// target retrieval error ε (relative to the pattern norm).
inline constexpr double kAutoBetaRadius = 0.05;
inline constexpr double kAutoBetaEpsilon = 1e-3;
inline constexpr double kAutoBetaMin = 8.0;
// When the bank is too crowded for any β to meet the rule (Δ_min <= 2R·m²,
// e.g. near-duplicate patterns), automatic β saturates here: retrieval is
// then nearest-pattern-like, the sharpest setting that stays meaningful.
inline constexpr double kAutoBetaMax = 1000.0;

// A pattern whose separation Δ_μ is below this fraction of its own score
// (1 under cosine: cos > 0.999 to its nearest neighbour) is a near-duplicate:
// retrieval cannot tell it from its neighbour at any β, and a mixture of the
// two differs from either by less than ~sqrt(2·1e-3)·m ≈ 4.5% of the norm.
// Banks count such patterns and leave them out of the separation the β rule
// and the capacity estimate use, so that a few duplicates (raw
// Fashion-MNIST holds pairs at Δ ≈ 2e-4) do not push β to its cap and the
// utilisation to M.
inline constexpr double kDuplicateSeparation = 1e-3;

// True if a pattern of self score `self_score` (1 under cosine, ||ξ||² under
// dot) with separation `separation` is a near-duplicate.
inline bool IsNearDuplicate(double separation, double self_score) {
  return separation < kDuplicateSeparation * self_score;
}

// The automatic inverse temperature for a bank of `pattern_count` patterns
// whose smallest separation is `min_separation` (Δ_min, in the units of the
// scores) and largest pattern norm `max_norm` (1 under cosine similarity):
//   β = ln(2(M-1)/ε) / (Δ_min - 2·R·m²), clamped to [8, 1000];
// 8 for M < 2, 1000 when Δ_min <= 2·R·m². With this β a query within R·m of
// a stored pattern retrieves it with error <= ε·m (algorithms.md §B.6).
double AutoBeta(uint64_t pattern_count, double min_separation,
                double max_norm = 1.0, double radius = kAutoBetaRadius,
                double epsilon = kAutoBetaEpsilon);

// Principal branch W0 of the Lambert W function evaluated at e^{log_x}, i.e.
// the w > 0 with w + ln w = log_x. Taking the logarithm avoids overflow for
// the huge arguments of RamsauerC. Accurate to about 1e-14 relative.
double LambertW0OfExp(double log_x);

// Ramsauer et al. (2020) Theorem 3 constant c for inverse temperature β,
// pattern radius K·sqrt(d-1), dimension d >= 2 and failure probability p:
//   a = 2/(d-1)·(1 + ln(2βK²p(d-1))),  b = 2K²β/5,  c = b / W0(e^{a + ln b}).
// RamsauerC(1, 3, 20, 1e-3) = 3.1546; RamsauerC(1, 1, 75, 1e-3) = 1.3719.
double RamsauerC(double beta, double k, double dim, double failure_probability);

// The storable number of patterns that Theorem 3 guarantees with probability
// 1-p: √p · c^{(d-1)/4}; 0 when the theorem's condition c >= (2/√p)^{4/(d-1)}
// does not hold.
double RamsauerCapacity(double beta, double k, double dim,
                        double failure_probability);

// Bounds on Δ*_min(M, D), the best achievable minimum separation 1 - cos θ of
// M >= 2 points on the unit sphere in D >= 2 dimensions (U-Hop+ Prop. 3.1):
//   lower: ½·((√π/M)·Γ((D+1)/2)/Γ(D/2+1))^{2/(D-1)}
//   upper: 2·((2√π/M)·Γ((D+1)/2)/Γ(D/2))^{1/(D-1)}
double SphericalCodeSeparationLowerBound(double pattern_count, double dim);
double SphericalCodeSeparationUpperBound(double pattern_count, double dim);

// Natural logarithm of the number of patterns a bank can hold without
// expected retrieval errors, at inverse temperature β, for patterns of
// dimension `dim` (D_Φ once a feature map is trained) with observed minimum
// separation Δ_min and largest norm m (1 under cosine). It is the smaller of
//   - ln M_sep: the largest M for which the observed Δ_min still meets the
//     storage condition Δ_min >= β⁻¹ ln(2(M-1)/R) + 2R·m² (algorithms.md
//     §B.6), i.e. 1 + (R/2)·e^{β(Δ_min - 2R·m²)};
//   - ln M_dim: the largest M for which even an optimal spherical code in
//     `dim` dimensions (the Prop. 3.1 upper bound) meets that condition.
// Returns 0 (capacity 1) when Δ_min <= 2R·m².
double LogCapacity(double beta, double dim, double min_separation,
                   double max_norm = 1.0, double radius = kAutoBetaRadius);

// pattern_count / capacity, computed in log space (never overflows). Above 1
// means retrieval errors are expected.
double CapacityUtilization(uint64_t pattern_count, double log_capacity);

// The largest cos(x, u) over unit vectors x with cos(x, v) <= a, where u and v
// are unit vectors with cos(u, v) = c: angles on the sphere obey the triangle
// inequality, ∠(x, u) >= ∠(x, v) − ∠(u, v), so
//   cos(x, u) <= cos(arccos a − arccos c) = a·c + √(1−a²)·√(1−c²)  (a < c),
// and 1 when a >= c. Tight (x in the plane of u and v), and never above the
// chordal bound a + ‖u − v‖ = a + √(2 − 2c): the retriever bounds the scores
// of patterns it did not score with it (algorithms.md §E.5). Arguments are
// clamped to [−1, 1].
double SphericalCosineBound(double a, double c);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_CAPACITY_H_
