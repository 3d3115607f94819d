// File: bank_options.h
//
// Per-bank configuration of a memory bank and the enums shared by the engine:
// how patterns are compared (`Similarity`), which normaliser turns scores into
// weights (`Separation`), and how candidates are searched (`SearchMode`).
// Symbols follow ../shared/docs/algorithms.md (β, Δ, Ξ).
//
//   BankOptions options;
//   options.dim = 784;
//   options.separation = Separation::kSparsemax;
//   HOPFIELD_RETURN_IF_ERROR(options.Validate());
#ifndef HOPFIELD_CORE_BANK_OPTIONS_H_
#define HOPFIELD_CORE_BANK_OPTIONS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hopfield {

// How a query is scored against a stored pattern.
enum class Similarity {
  // s_μ = cos(ξ_μ, x): both sides L2-normalised, scores in [-1, 1]. Bounded
  // logits make β meaningful across datasets; the measured default.
  kCosine,
  // s_μ = ξ_μᵀx: the raw modern-Hopfield score (Ramsauer et al.).
  kDot,
};

// The normaliser Sep that maps logits z = β·s to weights p.
enum class Separation {
  kSoftmax,    // dense; never exactly one-hot
  kSoftmax1,   // e^{z_i} / (1 + Σ e^{z_j}): Σp < 1, null mass = 1 - Σp
  kSparsemax,  // Euclidean projection onto the simplex (α = 2)
  kEntmax,     // α-entmax, 1 < α ≤ 2 (exact sort-based for α = 1.5)
};

// How Retrieve finds the patterns that carry weight.
enum class SearchMode {
  kAuto,         // exact until the bank is large enough for an index
  kExact,        // dense scan of every pattern
  kApproximate,  // top-k candidates from an ANN index, with a certificate
};

absl::string_view SimilarityName(Similarity similarity);
absl::string_view SeparationName(Separation separation);
absl::string_view SearchModeName(SearchMode search);

// Limits shared by validation and the public contract.
inline constexpr uint32_t kMaxDim = 65536;
inline constexpr uint32_t kMaxIterationsLimit = 1000;
inline constexpr uint32_t kMaxTopK = 1 << 20;
inline constexpr float kMaxBeta = 1e6f;
// The smallest positive β: the smallest normal float. Retrieval flushes
// denormal results to zero (flush_denormals.h); a denormal β would reach
// the energy's 1/β as 0 (−inf energy). A normal β this small still gives
// flat weights (β·s flushes to 0), which is what such a β means.
inline constexpr float kMinBeta = 1.17549435e-38f;
inline constexpr size_t kMaxBankNameLength = 64;

// Per-bank retrieval settings. A plain value type; copyable.
struct BankOptions {
  // Parameters that define the bank (fixed at creation).

  // Dimension d of every stored pattern and query.
  // REQUIRES: 1 <= dim <= 65536.
  uint32_t dim = 0;

  // Score function. Default: kCosine.
  Similarity similarity = Similarity::kCosine;

  // Parameters of retrieval (per-request overrides exist in RetrieveOptions).

  // Normaliser Sep. Default: kSoftmax.
  Separation separation = Separation::kSoftmax;

  // α of α-entmax (used only when separation == kEntmax).
  // Default: 1.5. REQUIRES: 1 < entmax_alpha <= 2.
  float entmax_alpha = 1.5f;

  // Inverse temperature β. 0 means automatic: chosen per retrieval from the
  // bank's separation Δ_min and size M by the §A.1 β rule
  // (see `AutoBeta` in capacity.h). Default: 0.
  // REQUIRES: 0 (automatic) or kMinBeta <= beta <= 1e6.
  float beta = 0.0f;

  // Upper bound on update steps x <- Ξ·Sep(β·s(x)). Default: 10.
  // REQUIRES: 1 <= max_iterations <= 1000.
  uint32_t max_iterations = 10;

  // Convergence tolerance on the weights: stop when ||p_t - p_{t-1}||_2 <=
  // tolerance (the ml-jku default). Default: 1e-4. REQUIRES: 0 <= tolerance
  // < 1 (0 runs every iteration).
  float tolerance = 1e-4f;

  // Candidate search. Default: kAuto (approximate above a size threshold,
  // see Retriever).
  SearchMode search = SearchMode::kAuto;

  // Candidates fetched per step by approximate search. Default: 64.
  // REQUIRES: 1 <= top_k <= 2^20.
  uint32_t top_k = 64;

  // The search index (AnnIndex, hnswlib HNSW) of a cosine bank: graph degree
  // M, candidate lists while inserting and while searching (a search for
  // top_k candidates uses max(index_ef_search, top_k)). Fixed at creation.
  // Defaults: 16, 200, 64. REQUIRES: 2..256, 1..10000, 1..10000.
  uint32_t index_m = 16;
  uint32_t index_ef_construction = 200;
  uint32_t index_ef_search = 64;

  // Dimension D_Φ of the learned feature map. 0 means min(dim, 256).
  // Default: 0. REQUIRES: feature_dim <= 65536.
  uint32_t feature_dim = 0;

  // Returns OK, or INVALID_ARGUMENT naming the field, what is allowed and the
  // value given.
  absl::Status Validate() const;

  // Returns a copy with every "0 = default" field resolved to the value it
  // stands for (feature_dim). beta stays 0 when automatic: its value depends
  // on the bank's contents at retrieval time.
  BankOptions Resolved() const;
};

// Returns OK if `name` is 1..64 characters of [a-z0-9_-], INVALID_ARGUMENT
// naming the rule and the offending value otherwise.
absl::Status ValidateBankName(absl::string_view name);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_BANK_OPTIONS_H_
