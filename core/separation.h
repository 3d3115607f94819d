// File: separation.h
//
// Separation functions: the normalisers Sep that turn logits z = β·s into the
// weights p of a modern-Hopfield update x <- Ξ·Sep(z), plus the entropies and
// log-partition functions that their energies need (algorithms.md §A.2-A.5).
//
//   softmax    p_i = e^{z_i} / Σ_j e^{z_j}
//   softmax1   p_i = e^{z_i} / (1 + Σ_j e^{z_j})   (null mass 1/(1 + Σ e^z))
//   sparsemax  p = argmin_{q ∈ simplex} ||q - z||²  (sort-based, exact)
//   α-entmax   p_i = [(α-1) z_i - θ]_+^{1/(α-1)}    (exact for α = 1.5,
//                                                   bisection otherwise)
//
// All are numerically stable for any finite z: softmax shifts by max z,
// softmax1 by max(0, max z), the sparse maps by max z. Sums accumulate in
// double. Sparse maps only sort the entries within reach of the threshold
// (z_i > max z - 1/(α-1)), so their cost is O(M) plus a sort of the
// candidates, not O(M log M).
//
// Conventions for every function: `z` and `p` have the same size M >= 1 and
// must not overlap; `z` holds finite values (checked by the caller). Functions
// are pure and thread-safe. Instantiated for float and double.
#ifndef HOPFIELD_CORE_SEPARATION_H_
#define HOPFIELD_CORE_SEPARATION_H_

#include <vector>

#include "absl/types/span.h"

#include "core/bank_options.h"

namespace hopfield {

// p = softmax(z).
template <typename T>
void Softmax(absl::Span<const T> z, absl::Span<T> p);

// p = softmax1(z). Returns the null mass 1 - Σp = 1 / (1 + Σ e^{z}).
template <typename T>
double Softmax1(absl::Span<const T> z, absl::Span<T> p);

// p = sparsemax(z). Returns the threshold θ (p_i = max(z_i - θ, 0)).
template <typename T>
double Sparsemax(absl::Span<const T> z, absl::Span<T> p);

// p = 1.5-entmax(z) by the exact sort-based algorithm of Peters et al. 2019.
// Returns the threshold θ (p_i = max(z_i/2 - θ, 0)²).
template <typename T>
double Entmax15(absl::Span<const T> z, absl::Span<T> p);

// p = α-entmax(z) by bisection on the threshold, 1 < α. `iterations` 0 picks
// 50 for double and 30 for float (algorithms.md §E.6). The result is
// renormalised to sum to 1. Returns the threshold θ on (α-1)·z.
template <typename T>
double EntmaxBisect(absl::Span<const T> z, double alpha, absl::Span<T> p,
                    int iterations = 0);

// Applies `separation` (with `alpha` for kEntmax: 1.5 uses the exact
// algorithm, other values bisection). Returns the null mass for kSoftmax1 and
// 0 otherwise.
template <typename T>
double Separate(Separation separation, double alpha, absl::Span<const T> z,
                absl::Span<T> p);

// log Σ_i e^{z_i}, shifted by max z; double accumulation.
template <typename T>
double LogSumExp(absl::Span<const T> z);

// log(1 + Σ_i e^{z_i}), shifted by max(0, max z); double accumulation.
template <typename T>
double LogOnePlusSumExp(absl::Span<const T> z);

// Tsallis α-entropy H_α(p) = (1 - Σ p_i^α) / (α(α-1)); Shannon entropy
// -Σ p_i ln p_i when alpha == 1.
template <typename T>
double TsallisEntropy(absl::Span<const T> p, double alpha);

// The α of the Tsallis entropy that `separation` maximises: 1 for softmax and
// softmax1, 2 for sparsemax, `entmax_alpha` for entmax.
double SeparationAlpha(Separation separation, double entmax_alpha);

// Number of weights that count as "in the support": p_i > 0.01 for the dense
// maps (softmax, softmax1; the U-Hop+ convention), p_i > 0 for the sparse ones.
template <typename T>
int SupportSize(Separation separation, absl::Span<const T> p);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_SEPARATION_H_
