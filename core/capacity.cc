#include "core/capacity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hopfield {
namespace {

const double kLogSqrtPi = 0.5 * std::log(M_PI);

// β⁻¹ ln(2(M-1)/R) + 2R·m²: the separation each pattern needs (storage
// condition, algorithms.md §A.1 with the radius relative to the norm).
double RequiredSeparation(double log_m, double beta, double max_norm,
                          double radius) {
  // ln(M-1) = ln M + ln(1 - 1/M), evaluated stably for large M.
  const double log_m_minus_1 = log_m + std::log1p(-std::exp(-log_m));
  return (std::log(2.0 / radius) + log_m_minus_1) / beta +
         2.0 * radius * max_norm * max_norm;
}

double UpperBoundFromLog(double log_m, double dim) {
  const double log_term = std::log(2.0) + kLogSqrtPi - log_m +
                          std::lgamma((dim + 1.0) / 2.0) -
                          std::lgamma(dim / 2.0);
  return 2.0 * std::exp(log_term / (dim - 1.0));
}

}  // namespace

double AutoBeta(uint64_t pattern_count, double min_separation, double max_norm,
                double radius, double epsilon) {
  if (pattern_count < 2) return kAutoBetaMin;
  const double margin = min_separation - 2.0 * radius * max_norm * max_norm;
  if (!(margin > 0.0)) return kAutoBetaMax;
  const double beta =
      std::log(2.0 * static_cast<double>(pattern_count - 1) / epsilon) / margin;
  return std::clamp(beta, kAutoBetaMin, kAutoBetaMax);
}

double LambertW0OfExp(double log_x) {
  // Solve f(w) = w + ln w - log_x = 0 for w > 0 (equivalent to w e^w = x).
  double w = log_x > 1.0 ? log_x - std::log(log_x) : std::exp(log_x) / 2.0;
  if (!(w > 0.0)) w = std::numeric_limits<double>::min();
  for (int i = 0; i < 100; ++i) {
    const double f = w + std::log(w) - log_x;
    const double next = w - f / (1.0 + 1.0 / w);
    const double updated = next > 0.0 ? next : w / 2.0;
    if (std::abs(updated - w) <= 1e-15 * std::max(1.0, std::abs(w))) {
      return updated;
    }
    w = updated;
  }
  return w;
}

double RamsauerC(double beta, double k, double dim,
                 double failure_probability) {
  const double a =
      2.0 / (dim - 1.0) *
      (1.0 + std::log(2.0 * beta * k * k * failure_probability * (dim - 1.0)));
  const double b = 2.0 * k * k * beta / 5.0;
  return b / LambertW0OfExp(a + std::log(b));
}

double RamsauerCapacity(double beta, double k, double dim,
                        double failure_probability) {
  const double c = RamsauerC(beta, k, dim, failure_probability);
  const double root_p = std::sqrt(failure_probability);
  if (c < std::pow(2.0 / root_p, 4.0 / (dim - 1.0))) return 0.0;
  return root_p * std::pow(c, (dim - 1.0) / 4.0);
}

double SphericalCodeSeparationLowerBound(double pattern_count, double dim) {
  const double log_term = kLogSqrtPi - std::log(pattern_count) +
                          std::lgamma((dim + 1.0) / 2.0) -
                          std::lgamma(dim / 2.0 + 1.0);
  return 0.5 * std::exp(2.0 * log_term / (dim - 1.0));
}

double SphericalCodeSeparationUpperBound(double pattern_count, double dim) {
  return UpperBoundFromLog(std::log(pattern_count), dim);
}

double LogCapacity(double beta, double dim, double min_separation,
                   double max_norm, double radius) {
  const double margin = min_separation - 2.0 * radius * max_norm * max_norm;
  if (!(margin > 0.0) || !(beta > 0.0)) return 0.0;
  // ln(1 + (R/2)·e^{β·margin}), stably.
  const double exponent = beta * margin + std::log(radius / 2.0);
  const double log_m_sep =
      exponent > 30.0 ? exponent : std::log1p(std::exp(exponent));
  if (dim < 2.0) return log_m_sep;
  // Largest M whose optimal code could still be stored: the upper bound on
  // the separation falls and the requirement rises with M, so bisect ln M.
  // Separations are in cosine units here (the bound is for unit vectors).
  auto feasible = [&](double log_m) {
    return UpperBoundFromLog(log_m, dim) >=
           RequiredSeparation(log_m, beta, 1.0, radius);
  };
  double lo = std::log(2.0);
  if (!feasible(lo)) return std::min(log_m_sep, lo);
  double hi = 1e4;
  if (feasible(hi)) return std::min(log_m_sep, hi);
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (feasible(mid)) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return std::min(log_m_sep, lo);
}

double CapacityUtilization(uint64_t pattern_count, double log_capacity) {
  if (pattern_count == 0) return 0.0;
  return std::exp(std::log(static_cast<double>(pattern_count)) - log_capacity);
}

double SphericalCosineBound(double a, double c) {
  a = std::clamp(a, -1.0, 1.0);
  c = std::clamp(c, -1.0, 1.0);
  if (a >= c) return 1.0;
  return std::min(1.0, a * c + std::sqrt((1.0 - a * a) * (1.0 - c * c)));
}

}  // namespace hopfield
