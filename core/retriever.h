// File: retriever.h
//
// Retriever: associative recall by modern-Hopfield dynamics. Starting from a
// query x_0 it iterates
//
//     x_{t+1} = Ξ · Sep(β · s(Ξ, x_t))
//
// where Ξ holds the stored patterns as columns, s is the bank's similarity
// (cosine: s_μ = cos(ξ_μ, x); dot: s_μ = ξ_μᵀx), β the inverse temperature
// and Sep one of the normalisers of separation.h (Ramsauer et al. 2020; Hu et
// al. 2023; Wu et al. 2024; Hu et al. 2024 for Softmax₁). Similarity is
// measured on normalised vectors under cosine, but outputs are always in
// pattern space (x_{t+1} is a weighted sum of the raw stored patterns).
//
// Each step scores the current state x_t (weights p_t, energy E(x_t)) and
// updates x_{t+1} = Ξ p_t. The loop stops as converged when the weights
// settle (||p_t - p_{t-1}||_2 <= tolerance, the ml-jku rule) or the state does
// (||x_{t+1} - x_t|| <= 1e-6·||x_{t+1}||), or unconverged when
// `max_iterations` updates have been applied. No extra scoring pass is spent
// on the final state: the result reports x_T and the weights that produced it,
// x_T = Σ_μ p_μ ξ_μ with p = p_{T-1} (`matches`, `nearest_*`,
// `support_size`, `metastable` and `null_mass` all describe that p, with the
// scores behind it), and `energy` = E(x_{T-1}), the energy of the state those
// weights scored. At a converged state x_T ≈ x_{T-1}, so this is the fixed
// point's energy to the tolerance. `iterations` counts updates:
// max_iterations = 1 is the papers' one-step retrieval
// x_1 = Ξ·Sep(β s(x_0)), reported with the query's own weights and energy.
//
// Energy (algorithms.md §A.2, §A.5), with u = x (dot) or x/||x|| (cosine):
//   softmax:   E = ½||u||² - β⁻¹ ln Σ_μ e^{β s_μ}
//   softmax1:  E = ½||u||² - β⁻¹ ln(1 + Σ_μ e^{β s_μ})
//   sparse:    E = ½||u||² - ⟨p, s⟩ - H_α(p)/β   (Tsallis entropy H_α)
// Under dot similarity the iteration is the CCCP step of E, which therefore
// never increases; under cosine the state is renormalised each step, so
// monotonicity is an empirical property, not a guarantee.
//
// Work per update is one pass over Ξ: softmax and softmax1 fuse scoring and
// output in a single streaming pass (an online, max-rescaled softmax over
// cache-sized blocks of patterns, exact up to float rounding); the sparse maps
// score in one pass and then touch only the patterns in the support. Batches
// of queries use matrix-matrix products.
//
// Search modes. kExact scans every pattern as above. kApproximate (and
// kAuto in banks of at least kAutoApproximateMinPatterns) restricts each
// update of a cosine bank that has a search index (AnnIndex, see
// MemoryBank::RefreshIndex) to candidates: the index's top_k for the
// current state plus every pattern not yet indexed. Each update carries a
// truncation certificate (retriever.cc, "Approximate retrieval"): a proof
// from the bank's exact separation statistics that the winner is the global
// argmax and the tail mass is below 1e-4, or the bound 2m(M−k)e^{−β(s_1−s_k)}
// "certified under exact top-k". An update no certificate covers sends the
// query to the dense scan (RetrieveResult::fell_back). Dot banks and banks
// without an index are always scanned.
#ifndef HOPFIELD_CORE_RETRIEVER_H_
#define HOPFIELD_CORE_RETRIEVER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include "core/bank_options.h"
#include "core/memory_bank.h"
#include "core/memory_budget.h"
#include "core/worker_pool.h"

namespace hopfield {

// Per-request overrides of a bank's retrieval settings. 0 / empty means "the
// bank's setting". A plain value type.
struct RetrieveOptions {
  // Inverse temperature β. 0: the bank's (automatic when the bank's is 0).
  // REQUIRES: 0, or kMinBeta <= beta <= 1e6 (bank_options.h).
  float beta = 0.0f;
  // REQUIRES: max_iterations <= 1000 (0: the bank's).
  uint32_t max_iterations = 0;
  // Weight-change tolerance (see BankOptions::tolerance). Empty: the bank's.
  std::optional<float> tolerance;
  std::optional<Separation> separation;
  std::optional<SearchMode> search;
  // Candidates for approximate search. 0: the bank's.
  uint32_t top_k = 0;
  // Number of (id, weight, score) matches returned, by weight descending
  // (fewer when the bank holds fewer patterns). 0 means 1.
  // REQUIRES: return_matches <= 65536.
  uint32_t return_matches = 1;
  // Leave RetrieveResult::pattern empty (saves copying d floats per query).
  bool omit_pattern = false;
  // Fill RetrieveResult::energy_trace with E(x_0), ..., E(x_{T-1}).
  bool return_energy_trace = false;
  // Threads for a batch: its matrix products are split over this many
  // threads (the calling thread is one of them) by blocks of patterns, its
  // per-query work by queries. Single-query retrieval ignores it (a latency
  // path; parallelise across requests). Core starts no threads otherwise.
  // Default 1. REQUIRES: 1 <= threads <= 256.
  uint32_t threads = 1;
  // Where a batch's parallel phases run: the calling thread takes parts and
  // idle workers of this pool help (no thread is created). Null: the extra
  // parts run on short-lived threads. Not owned; must outlive the call.
  WorkerPool* pool = nullptr;
  // The account a retrieval's memory is reserved from before it is
  // allocated: its results, and its scratch (single query: 6·M + 2·d + 2·D_Φ
  // floats; batch: about 4·M + (4 + threads)·d + 2·D_Φ floats per query plus
  // threads·M).
  // A batch whose scratch does not fit at once runs in chunks of queries
  // that do, each under its own reader lock (so writes may land between
  // chunks; every query still sees one consistent bank). Null: unaccounted,
  // one chunk. Not owned; must outlive the call.
  MemoryBudget* budget = nullptr;
  // Polled between iterations and every few milliseconds of work within
  // one (RetrievalParams::check_every_macs), from the calling thread; a
  // non-OK status (CANCELLED, DEADLINE_EXCEEDED, ...) aborts the retrieval
  // and is returned. Empty: never abort.
  std::function<absl::Status()> check_continue;

  // INVALID_ARGUMENT naming the field, the allowed range and the value.
  absl::Status Validate() const;
};

// One (pattern, weight) pair of a retrieval.
struct Match {
  PatternId id = 0;
  float weight = 0.0f;  // p_μ at the returned state
  float score = 0.0f;   // similarity s_μ at the returned state
};

// The outcome of retrieving one query.
struct RetrieveResult {
  // The state x_T in pattern space (dim floats); empty when omit_pattern.
  std::vector<float> pattern;
  // argmax_μ p_μ (ties: the higher score) and its weight.
  PatternId nearest_id = 0;
  float nearest_weight = 0.0f;
  // The `return_matches` largest weights, descending.
  std::vector<Match> matches;
  // Updates applied (1..max_iterations) and whether the stopping rule was
  // met within that budget.
  uint32_t iterations = 0;
  bool converged = false;
  // E(x_{T-1}), the energy of the last scored state (see the file comment);
  // energy_trace holds E(x_0), ..., E(x_{T-1}) on request.
  double energy = 0.0;
  std::vector<double> energy_trace;
  // Weights in the support: p > 0.01 for softmax/softmax1, p > 0 for the
  // sparse maps. metastable: support_size > 1 (a mixture of patterns).
  uint32_t support_size = 0;
  bool metastable = false;
  // Softmax1 only: 1 - Σp = 1/(1 + Σ e^{β s}), the "nothing matches" mass.
  float null_mass = 0.0f;
  // True for a dense scan, or an approximate one whose truncation certificate
  // held (always, here: an uncertified query falls back to the dense scan).
  // truncation_bound bounds ||T(x) − T_S(x)|| for the final update (0 when
  // dense or when a sparse map gives the tail no weight).
  bool exact = true;
  float truncation_bound = 0.0f;
  // The answer came from top-k candidates (approximate search).
  bool approximate = false;
  // Approximate search was tried and its certificate failed: the dense scan
  // answered (approximate is then false).
  bool fell_back = false;
  // The final update's certificate was the separation proof (the winner is
  // the global argmax whatever the index returned), not "certified under
  // exact top-k".
  bool certified_by_separation = false;
  // Index searches made (approximate search).
  uint32_t index_queries = 0;
  // The β actually used (resolves "automatic").
  float beta = 0.0f;
  // Work done: pattern scores computed (M per evaluated state).
  uint64_t patterns_scored = 0;
};

// SearchMode::kAuto searches approximately in banks of at least this many
// patterns that have a search index, exactly below. Measured
// (bench/README.md, BM_Crossover and BM_Scaling): the approximate path is
// already 2.5x faster at 1,000 Fashion-MNIST images (5x at 4,096-5,000) and
// 5x faster at 10,000 random 128-dim patterns, agreeing with the dense path
// on every query up to 10,000; the floor is the default
// --index_min_patterns, below which a bank has no index anyway.
inline constexpr uint64_t kAutoApproximateMinPatterns = 4096;

// Settings of one retrieval after resolving request, bank and automatic β.
struct RetrievalParams {
  Similarity similarity = Similarity::kCosine;
  Separation separation = Separation::kSoftmax;
  double entmax_alpha = 1.5;
  float beta = 1.0f;
  uint32_t max_iterations = 10;
  float tolerance = 1e-4f;
  uint32_t return_matches = 1;
  bool omit_pattern = false;
  bool return_energy_trace = false;
  uint32_t threads = 1;
  WorkerPool* pool = nullptr;
  std::function<absl::Status()> check_continue;
  SearchMode search = SearchMode::kExact;
  uint32_t top_k = 64;
  // Work between two polls of check_continue inside an iteration, in
  // multiply-adds of the scoring pass and the batch output product (it is
  // also polled between iterations): 2^24 is a few milliseconds here, so a
  // deadline is met about that closely even when one iteration of a large
  // batch takes seconds. The per-query phases of a batch poll every
  // check_every_macs / (8·M) queries.
  uint64_t check_every_macs = uint64_t{1} << 24;
};

// Combines bank defaults, the view's statistics (for automatic β) and the
// request. Errors: INVALID_ARGUMENT from RetrieveOptions::Validate().
absl::StatusOr<RetrievalParams> ResolveRetrieval(
    const BankOptions& bank, const BankView& view,
    const RetrieveOptions& options);

// Bytes a retrieval's result takes for `params` in a bank of `size`
// patterns of `dim` floats (for sizing replies and budgets).
uint64_t ResultBytes(const RetrievalParams& params, uint64_t size,
                     uint64_t dim);

// Stateless entry points. Thread-safe: any number of concurrent calls.
class Retriever {
 public:
  // Retrieves one query (dim floats) from `bank` under its reader lock.
  // Errors: FAILED_PRECONDITION if the bank is empty; INVALID_ARGUMENT for a
  // query of the wrong dimension, with NaN/Inf, or of zero norm under cosine,
  // or (dot) whose scores would overflow float32 (max(β, 1)·max(||x||, m)·m),
  // or bad
  // options; RESOURCE_EXHAUSTED when options.budget cannot hold its memory;
  // whatever `check_continue` returns.
  static absl::StatusOr<RetrieveResult> Retrieve(
      const MemoryBank& bank, absl::Span<const float> query,
      const RetrieveOptions& options = {});

  // Retrieves n = queries.size() / dim queries (row i = query i, contiguous)
  // with matrix-matrix products, split over options.threads threads. Results
  // are in query order and agree with Retrieve() up to float rounding.
  // Errors: as Retrieve, plus INVALID_ARGUMENT for an empty list or a size
  // that is not a multiple of dim (the message names the query index), and
  // RESOURCE_EXHAUSTED when options.budget cannot hold the results plus the
  // scratch of one query.
  static absl::StatusOr<std::vector<RetrieveResult>> RetrieveBatch(
      const MemoryBank& bank, absl::Span<const float> queries,
      const RetrieveOptions& options = {});

  // The same on a view with resolved parameters (tests, reference runs).
  // REQUIRES: view.size() >= 1.
  static absl::StatusOr<RetrieveResult> Retrieve(const BankView& view,
                                                 const RetrievalParams& params,
                                                 absl::Span<const float> query);
  static absl::StatusOr<std::vector<RetrieveResult>> RetrieveBatch(
      const BankView& view, const RetrievalParams& params,
      absl::Span<const float> queries);
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_RETRIEVER_H_
