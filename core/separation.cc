#include "core/separation.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>

#include "Eigen/Core"

namespace hopfield {
namespace {

template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

template <typename T>
ConstArrayMap<T> AsArray(absl::Span<const T> v) {
  return ConstArrayMap<T>(v.data(), static_cast<Eigen::Index>(v.size()));
}
template <typename T>
ArrayMap<T> AsArray(absl::Span<T> v) {
  return ArrayMap<T>(v.data(), static_cast<Eigen::Index>(v.size()));
}

// Σ exp(z_i - shift), each term in T and the sum in double. The exps run
// through Eigen's vectorised exp in stack-sized chunks: written as one
// expression with the cast to double, Eigen falls back to scalar std::exp,
// whose underflow path (errno) made this a few percent of a retrieval.
template <typename T>
double SumExpShifted(ConstArrayMap<T> z, T shift) {
  constexpr Eigen::Index kChunk = 256;
  Eigen::Array<T, kChunk, 1> terms;
  double sum = 0.0;
  for (Eigen::Index start = 0; start < z.size(); start += kChunk) {
    const Eigen::Index count = std::min(kChunk, z.size() - start);
    terms.head(count) = (z.segment(start, count) - shift).exp();
    sum += terms.head(count).template cast<double>().sum();
  }
  return sum;
}

// Shifted values (scale * (z_i - max z)) of the entries whose shifted value
// exceeds -1, i.e. the only entries that can be in the support of a sparse
// map whose threshold is at least -1 in these coordinates; sorted descending.
// The result lives in a per-thread buffer that the next call on this thread
// reuses, so a warm retrieval allocates nothing here.
template <typename T>
const std::vector<double>& SortedCandidates(absl::Span<const T> z, double max_z,
                                            double scale) {
  thread_local std::vector<double> candidates;
  candidates.clear();
  // Sized once per bank size, so any query fits; a buffer over 4x too large
  // (left by a much larger bank) is let go, as the retriever's scratch is.
  if (candidates.capacity() > 4 * z.size()) candidates.shrink_to_fit();
  candidates.reserve(z.size());
  for (const T value : z) {
    const double shifted = scale * (static_cast<double>(value) - max_z);
    if (shifted > -1.0) candidates.push_back(shifted);
  }
  std::sort(candidates.begin(), candidates.end(), std::greater<>());
  return candidates;
}

}  // namespace

template <typename T>
void Softmax(absl::Span<const T> z, absl::Span<T> p) {
  auto zz = AsArray(z);
  auto pp = AsArray(p);
  const T max_z = zz.maxCoeff();
  pp = (zz - max_z).exp();
  const double sum = pp.template cast<double>().sum();  // >= 1: max term is 1
  pp *= static_cast<T>(1.0 / sum);
}

template <typename T>
double Softmax1(absl::Span<const T> z, absl::Span<T> p) {
  auto zz = AsArray(z);
  auto pp = AsArray(p);
  // Shift by max(0, max z): e^{-shift} then stays in (0, 1] and every
  // numerator in [0, 1], so neither overflows (algorithms.md §A.5).
  const T shift = std::max(T{0}, zz.maxCoeff());
  pp = (zz - shift).exp();
  const double null_term = std::exp(-static_cast<double>(shift));
  const double denominator = null_term + pp.template cast<double>().sum();
  pp *= static_cast<T>(1.0 / denominator);
  return null_term / denominator;
}

template <typename T>
double Sparsemax(absl::Span<const T> z, absl::Span<T> p) {
  const double max_z = static_cast<double>(AsArray(z).maxCoeff());
  // In coordinates u = z - max z the threshold is >= -1 (the top entry alone
  // already carries mass 1 at θ = -1), so only u > -1 can be in the support.
  const std::vector<double>& u = SortedCandidates(z, max_z, 1.0);
  double cumulative = 0.0;
  double theta = -1.0;
  for (size_t k = 1; k <= u.size(); ++k) {
    cumulative += u[k - 1];
    const double kd = static_cast<double>(k);
    if (1.0 + kd * u[k - 1] > cumulative) theta = (cumulative - 1.0) / kd;
  }
  for (size_t i = 0; i < z.size(); ++i) {
    const double value = static_cast<double>(z[i]) - max_z - theta;
    p[i] = static_cast<T>(value > 0.0 ? value : 0.0);
  }
  return theta + max_z;
}

template <typename T>
double Entmax15(absl::Span<const T> z, absl::Span<T> p) {
  const double max_z = static_cast<double>(AsArray(z).maxCoeff());
  // p_i = [y_i - θ]_+² with y = (z - max z)/2; θ >= -1, so y > -1 suffices.
  const std::vector<double>& u = SortedCandidates(z, max_z, 0.5);
  double sum = 0.0;
  double sum_sq = 0.0;
  double theta = -1.0;
  for (size_t k = 1; k <= u.size(); ++k) {
    const double kd = static_cast<double>(k);
    sum += u[k - 1];
    sum_sq += u[k - 1] * u[k - 1];
    const double mean = sum / kd;
    const double ss = kd * (sum_sq / kd - mean * mean);
    const double delta = (1.0 - ss) / kd;
    const double tau = mean - std::sqrt(std::max(delta, 0.0));
    // The support is every k whose τ_k lies below its own entry (Peters et
    // al.); the condition holds for a prefix of k.
    if (tau <= u[k - 1]) theta = tau;
  }
  for (size_t i = 0; i < z.size(); ++i) {
    const double value = 0.5 * (static_cast<double>(z[i]) - max_z) - theta;
    p[i] = static_cast<T>(value > 0.0 ? value * value : 0.0);
  }
  return theta + 0.5 * max_z;
}

template <typename T>
double EntmaxBisect(absl::Span<const T> z, double alpha, absl::Span<T> p,
                    int iterations) {
  if (iterations <= 0) iterations = std::is_same_v<T, double> ? 50 : 30;
  const double max_z = static_cast<double>(AsArray(z).maxCoeff());
  // y = (α-1)(z - max z) has max 0; the threshold lies in [-1, -k^{1-α}]
  // where k counts the entries with y > -1 (the only possible support).
  const std::vector<double>& y = SortedCandidates(z, max_z, alpha - 1.0);
  const double exponent = 1.0 / (alpha - 1.0);
  auto power = [exponent](double x) {
    if (exponent == 1.0) return x;
    if (exponent == 2.0) return x * x;
    return std::pow(x, exponent);
  };
  auto mass = [&](double theta) {
    double total = 0.0;
    for (const double value : y) {
      if (value <= theta) break;  // sorted descending
      total += power(value - theta);
    }
    return total;
  };
  double lo = -1.0;
  double hi = -std::pow(static_cast<double>(y.size()), 1.0 - alpha);
  for (int i = 0; i < iterations; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mass(mid) >= 1.0) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const double total = mass(lo);
  for (size_t i = 0; i < z.size(); ++i) {
    const double value =
        (alpha - 1.0) * (static_cast<double>(z[i]) - max_z) - lo;
    p[i] = static_cast<T>(value > 0.0 ? power(value) / total : 0.0);
  }
  return lo + (alpha - 1.0) * max_z;
}

template <typename T>
double Separate(Separation separation, double alpha, absl::Span<const T> z,
                absl::Span<T> p) {
  switch (separation) {
    case Separation::kSoftmax:
      Softmax(z, p);
      return 0.0;
    case Separation::kSoftmax1:
      return Softmax1(z, p);
    case Separation::kSparsemax:
      Sparsemax(z, p);
      return 0.0;
    case Separation::kEntmax:
      if (alpha == 1.5) {
        Entmax15(z, p);
      } else {
        EntmaxBisect(z, alpha, p);
      }
      return 0.0;
  }
  return 0.0;
}

template <typename T>
double LogSumExp(absl::Span<const T> z) {
  auto zz = AsArray(z);
  const T max_z = zz.maxCoeff();
  return static_cast<double>(max_z) + std::log(SumExpShifted(zz, max_z));
}

template <typename T>
double LogOnePlusSumExp(absl::Span<const T> z) {
  auto zz = AsArray(z);
  const T shift = std::max(T{0}, zz.maxCoeff());
  const double sum =
      std::exp(-static_cast<double>(shift)) + SumExpShifted(zz, shift);
  return static_cast<double>(shift) + std::log(sum);
}

template <typename T>
double TsallisEntropy(absl::Span<const T> p, double alpha) {
  if (alpha == 1.0) {
    double entropy = 0.0;
    for (const T value : p) {
      if (value > T{0}) {
        const double v = static_cast<double>(value);
        entropy -= v * std::log(v);
      }
    }
    return entropy;
  }
  double sum = 0.0;
  for (const T value : p) {
    if (value > T{0}) {
      const double v = static_cast<double>(value);
      sum += alpha == 2.0 ? v * v : std::pow(v, alpha);
    }
  }
  return (1.0 - sum) / (alpha * (alpha - 1.0));
}

double SeparationAlpha(Separation separation, double entmax_alpha) {
  switch (separation) {
    case Separation::kSoftmax:
    case Separation::kSoftmax1:
      return 1.0;
    case Separation::kSparsemax:
      return 2.0;
    case Separation::kEntmax:
      return entmax_alpha;
  }
  return 1.0;
}

template <typename T>
int SupportSize(Separation separation, absl::Span<const T> p) {
  const bool dense =
      separation == Separation::kSoftmax || separation == Separation::kSoftmax1;
  const T threshold = dense ? static_cast<T>(0.01) : T{0};
  return static_cast<int>(std::count_if(
      p.begin(), p.end(), [threshold](T v) { return v > threshold; }));
}

#define HOPFIELD_INSTANTIATE_SEPARATION(T)                                    \
  template void Softmax<T>(absl::Span<const T>, absl::Span<T>);               \
  template double Softmax1<T>(absl::Span<const T>, absl::Span<T>);            \
  template double Sparsemax<T>(absl::Span<const T>, absl::Span<T>);           \
  template double Entmax15<T>(absl::Span<const T>, absl::Span<T>);            \
  template double EntmaxBisect<T>(absl::Span<const T>, double, absl::Span<T>, \
                                  int);                                       \
  template double Separate<T>(Separation, double, absl::Span<const T>,        \
                              absl::Span<T>);                                 \
  template double LogSumExp<T>(absl::Span<const T>);                          \
  template double LogOnePlusSumExp<T>(absl::Span<const T>);                   \
  template double TsallisEntropy<T>(absl::Span<const T>, double);             \
  template int SupportSize<T>(Separation, absl::Span<const T>)

HOPFIELD_INSTANTIATE_SEPARATION(float);
HOPFIELD_INSTANTIATE_SEPARATION(double);

#undef HOPFIELD_INSTANTIATE_SEPARATION

}  // namespace hopfield
