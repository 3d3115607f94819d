#include "core/retriever.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <iterator>
#include <limits>
#include <numeric>
#include <thread>
#include <utility>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"

#include "core/capacity.h"
#include "core/flush_denormals.h"
#include "core/separation.h"
#include "core/status_macros.h"
#include "core/worker_pool.h"

namespace hopfield {
namespace {

using Eigen::Index;
using Eigen::MatrixXf;
using Eigen::VectorXf;

// Patterns per block of the fused softmax pass: 128 columns of 784 floats are
// 400 KB, read once from memory for the scores and again from cache for the
// output.
constexpr Index kFusedBlock = 128;
// Relative state change below which the iteration counts as converged.
constexpr double kStateTolerance = 1e-6;
// Batch output skips softmax weights below kDropMass / M: the skipped mass is
// then < kDropMass, below float32 resolution, so ||Δx|| < 1e-7·m.
constexpr double kDropMass = 1e-7;
constexpr uint32_t kMaxReturnMatches = 65536;
constexpr uint32_t kMaxThreads = 256;

bool IsDense(Separation separation) {
  return separation == Separation::kSoftmax ||
         separation == Separation::kSoftmax1;
}

absl::Status ValidateQuery(absl::Span<const float> query, const BankView& view,
                           const RetrievalParams& params,
                           const std::string& name) {
  const Index dim = view.dim();
  if (static_cast<Index>(query.size()) != dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected ", dim, " values (the bank's dim), got ",
                     query.size()));
  }
  for (size_t i = 0; i < query.size(); ++i) {
    if (!std::isfinite(query[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ".values[", i, "]: expected a finite number, got ", query[i]));
    }
  }
  const Eigen::Map<const VectorXf> x(query.data(), dim);
  double norm = x.cast<double>().norm();
  if (view.learned()) {
    // Scores are taken against Φ(x): check it instead (in double).
    const FeatureMap& map = *view.feature_map;
    norm = (map.weights().cast<double>() * (x - map.center()).cast<double>())
               .norm();
    if (params.similarity == Similarity::kCosine && !(norm > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": expected a query whose feature vector under feature map "
          "version ",
          map.version(), " is non-zero, got the zero vector"));
    }
  }
  if (params.similarity == Similarity::kCosine) {
    if (norm == 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": expected a non-zero norm under cosine similarity, got the zero "
          "vector"));
    }
    if (!(norm < std::numeric_limits<float>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": norm ", norm, " overflows float32, expected a finite norm"));
    }
    return absl::OkStatus();
  }
  // Dot: scores ξᵀx are bounded by ||x||·m for the query and m² for later
  // states (which are mixtures of stored patterns), logits by β times that;
  // both must stay finite in float32. Under a learned map the same holds
  // for Φ(x) and the keys (Φ is affine: Φ of a mixture is the mixture of
  // the keys).
  const double m = view.max_key_norm;
  const double bound =
      std::max(1.0, static_cast<double>(params.beta)) * std::max(norm, m) * m;
  if (!(bound < std::numeric_limits<float>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": scores would overflow float32 under dot similarity: max(beta ",
        params.beta, ", 1) x query norm ", norm, " x largest stored norm ", m,
        " = ", bound, ", expected < ", std::numeric_limits<float>::max(),
        "; scale the query or the patterns down, or use a smaller beta"));
  }
  return absl::OkStatus();
}

template <typename Vector>
absl::Span<const float> AsSpan(const Vector& v) {
  return absl::Span<const float>(v.data(), static_cast<size_t>(v.size()));
}

// The first n entries of a scratch buffer.
absl::Span<const float> Head(const VectorXf& v, Index n) {
  return absl::Span<const float>(v.data(), static_cast<size_t>(n));
}

// Energy of a state whose scores, logits and weights are given (see the file
// comment of retriever.h). `half_sq_norm` is ½||u||².
double StateEnergy(const RetrievalParams& params, double half_sq_norm,
                   absl::Span<const float> scores,
                   absl::Span<const float> logits,
                   absl::Span<const float> weights) {
  const double beta = params.beta;
  switch (params.separation) {
    case Separation::kSoftmax:
      return half_sq_norm - LogSumExp(logits) / beta;
    case Separation::kSoftmax1:
      return half_sq_norm - LogOnePlusSumExp(logits) / beta;
    case Separation::kSparsemax:
    case Separation::kEntmax: {
      double inner = 0.0;
      for (size_t i = 0; i < weights.size(); ++i) {
        if (weights[i] > 0.0f) {
          inner +=
              static_cast<double>(weights[i]) * static_cast<double>(scores[i]);
        }
      }
      const double alpha =
          SeparationAlpha(params.separation, params.entmax_alpha);
      return half_sq_norm - inner - TsallisEntropy(weights, alpha) / beta;
    }
  }
  return 0.0;
}

double HalfSquaredNorm(const RetrievalParams& params,
                       const Eigen::Ref<const VectorXf>& x) {
  if (params.similarity == Similarity::kCosine) return 0.5;
  return 0.5 * x.cast<double>().squaredNorm();  // in double: no overflow
}

// Writes x / ||x|| into `unit`, computed in double, so that neither a huge
// nor a tiny x over- or underflows float (scores are then taken against a
// unit vector); all zero when x is.
template <typename In, typename Out>
void Normalize(const In& x, Out&& unit) {
  const double norm = x.template cast<double>().norm();
  if (norm > 0.0) {
    unit = (x.template cast<double>() * (1.0 / norm)).template cast<float>();
  } else {
    unit.setZero();
  }
}

// True when every entry of `x` is zero.
template <typename Vector>
bool AllZero(const Vector& x) {
  return (x.array() == 0.0f).all();
}

// Fills nearest/matches/support from the weights and scores of the final
// state.
void Summarise(absl::Span<const PatternId> ids, const RetrievalParams& params,
               absl::Span<const float> scores, absl::Span<const float> weights,
               double null_mass, RetrieveResult* result) {
  const size_t size = weights.size();
  const size_t k = std::min<size_t>(params.return_matches, size);
  // Better = larger weight, then larger score, then lower column.
  auto better = [&](size_t a, size_t b) {
    if (weights[a] != weights[b]) return weights[a] > weights[b];
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  };
  // A heap of the k best with the worst on top.
  // Reused per thread: a warm retrieval allocates only its result.
  thread_local std::vector<size_t> heap;
  heap.clear();
  heap.reserve(k + 1);
  for (size_t i = 0; i < size; ++i) {
    if (heap.size() < k) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(i, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = i;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  result->matches.clear();
  result->matches.reserve(heap.size());
  for (const size_t i : heap) {
    result->matches.push_back(Match{ids[i], weights[i], scores[i]});
  }
  result->nearest_id = result->matches.front().id;
  result->nearest_weight = result->matches.front().weight;
  result->support_size =
      static_cast<uint32_t>(SupportSize(params.separation, weights));
  result->metastable = result->support_size > 1;
  result->null_mass = static_cast<float>(null_mass);
  result->exact = true;
  result->truncation_bound = 0.0f;
  result->beta = params.beta;
}

// Scratch and outputs of evaluating one state. The buffers hold at least the
// bank's M entries; only the first M are meaningful.
struct StateEval {
  VectorXf scores;
  VectorXf logits;
  VectorXf weights;
  double energy = 0.0;
  double null_mass = 0.0;
};

// Working memory of single-query retrieval: 6·M + 2·d + kFusedBlock floats.
// One per thread, reused from call to call, so that a warm retrieval makes no
// heap allocation (house style; checked by retriever_alloc_test).
struct Scratch {
  std::array<StateEval, 2> evals;  // x_t and x_{t-1}
  VectorXf block_weights = VectorXf(kFusedBlock);
  VectorXf x;        // the state, first d entries
  VectorXf update;   // Ξp, first d entries
  VectorXf feature;  // Φ(x) under a learned map, first D_Φ entries
  VectorXf unit;     // the scored vector / its norm under cosine, first D_Φ
};

// Makes `v` hold at least n entries. It reallocates only when `v` is smaller,
// or over 4× larger (so a thread that served a huge bank lets the memory go
// when it next serves a small one); banks of similar sizes share buffers.
void EnsureSize(VectorXf* v, Index n) {
  if (v->size() < n || v->size() > 4 * n) v->resize(n);
}

// This thread's scratch, sized for `size` patterns of `dim` floats. x and
// update always have equal sizes, so swapping them swaps the states.
Scratch& ThreadScratch(Index size, Index dim, Index key_dim) {
  thread_local Scratch scratch;
  for (StateEval& eval : scratch.evals) {
    EnsureSize(&eval.scores, size);
    EnsureSize(&eval.logits, size);
    EnsureSize(&eval.weights, size);
  }
  EnsureSize(&scratch.x, dim);
  EnsureSize(&scratch.update, dim);
  EnsureSize(&scratch.feature, key_dim);
  EnsureSize(&scratch.unit, key_dim);
  return scratch;
}

// Computes scores, logits, weights and energy at `x` and writes the update
// x' = Ξp into `update`. Softmax and softmax1 do it in one streaming pass
// over the patterns (online softmax with max rescaling); the sparse maps
// score in one pass and then add up only their support. Allocates nothing:
// `eval` holds >= M entries, `block_weights` kFusedBlock. Polls
// check_continue every params.check_every_macs of scoring and returns its
// error.
absl::Status Evaluate(const BankView& view, const RetrievalParams& params,
                      const Eigen::Ref<const VectorXf>& x,
                      VectorXf* block_weights, StateEval* eval,
                      Eigen::Ref<VectorXf> update,
                      // Written through Apply's own Ref: a view, by value.
                      // NOLINTNEXTLINE(performance-unnecessary-value-param)
                      Eigen::Ref<VectorXf> feature, Eigen::Ref<VectorXf> unit) {
  const Index size = view.size();
  // Patterns scored between two polls: whole fused blocks.
  const Index poll_blocks = std::max<Index>(
      1, static_cast<Index>(params.check_every_macs /
                            static_cast<uint64_t>(kFusedBlock * view.dim())));
  const Index poll_every = poll_blocks * kFusedBlock;
  auto poll = [&params](Index start) -> absl::Status {
    if (start == 0 || !params.check_continue) return absl::OkStatus();
    return params.check_continue();
  };
  const bool cosine = params.similarity == Similarity::kCosine;
  // Under cosine, scores are taken against x / ||x||.
  // Under a learned map scores are taken against Φ(x) (and the keys).
  if (view.learned()) view.feature_map->Apply(x, feature);
  const Eigen::Ref<const VectorXf> mapped =
      view.learned() ? Eigen::Ref<const VectorXf>(feature) : x;
  if (cosine) Normalize(mapped, unit);
  const Eigen::Ref<const VectorXf> probe =
      cosine ? Eigen::Ref<const VectorXf>(unit) : mapped;
  const float beta = params.beta;
  auto all_scores = eval->scores.head(size);
  auto all_logits = eval->logits.head(size);
  auto all_weights = eval->weights.head(size);
  if (IsDense(params.separation)) {
    const bool softmax1 = params.separation == Separation::kSoftmax1;
    // softmax1 shifts by max(0, max z), so the running max starts at 0.
    float running_max =
        softmax1 ? 0.0f : -std::numeric_limits<float>::infinity();
    double sum = 0.0;
    update.setZero();
    for (Index start = 0; start < size; start += kFusedBlock) {
      if (start % poll_every == 0) HOPFIELD_RETURN_IF_ERROR(poll(start));
      const Index count = std::min(kFusedBlock, size - start);
      const auto block = view.patterns.middleCols(start, count);
      auto scores = all_scores.segment(start, count);
      scores.noalias() = view.keys.middleCols(start, count).transpose() * probe;
      if (cosine) {
        scores =
            scores.cwiseProduct(view.key_inverse_norms.segment(start, count));
      }
      auto logits = all_logits.segment(start, count);
      logits = beta * scores;
      const float block_max = logits.maxCoeff();
      if (block_max > running_max) {
        const float rescale = std::exp(running_max - block_max);
        update *= rescale;
        sum *= static_cast<double>(rescale);
        running_max = block_max;
      }
      auto weights = block_weights->head(count);
      weights = (logits.array() - running_max).exp().matrix();
      sum += weights.template cast<double>().sum();
      update.noalias() += block * weights;
    }
    const double denominator =
        sum + (softmax1 ? std::exp(-static_cast<double>(running_max)) : 0.0);
    const auto inverse = static_cast<float>(1.0 / denominator);
    update *= inverse;
    // Weights, null mass and energy from the pass's own max and sum (no
    // second normalisation): p = e^{z - m} / D, and the log-partition
    // ln Σ e^z (softmax) or ln(1 + Σ e^z) (softmax1) is m + ln D.
    all_weights = ((all_logits.array() - running_max).exp() * inverse).matrix();
    eval->null_mass =
        softmax1 ? std::exp(-static_cast<double>(running_max)) / denominator
                 : 0.0;
    const double log_partition =
        static_cast<double>(running_max) + std::log(denominator);
    eval->energy = HalfSquaredNorm(params, mapped) - log_partition / beta;
    return absl::OkStatus();
  }
  // Sparse maps: score, separate, then add up the support only.
  for (Index start = 0; start < size; start += poll_every) {
    HOPFIELD_RETURN_IF_ERROR(poll(start));
    const Index count = std::min(poll_every, size - start);
    all_scores.segment(start, count).noalias() =
        view.keys.middleCols(start, count).transpose() * probe;
  }
  if (cosine) {
    all_scores = all_scores.cwiseProduct(view.key_inverse_norms);
  }
  all_logits = beta * all_scores;
  eval->null_mass = Separate(
      params.separation, params.entmax_alpha, AsSpan(all_logits),
      absl::Span<float>(all_weights.data(), static_cast<size_t>(size)));
  update.setZero();
  for (Index i = 0; i < size; ++i) {
    if (all_weights[i] > 0.0f) {
      update.noalias() += all_weights[i] * view.patterns.col(i);
    }
  }
  eval->energy =
      StateEnergy(params, HalfSquaredNorm(params, mapped), AsSpan(all_scores),
                  AsSpan(all_logits), AsSpan(all_weights));
  return absl::OkStatus();
}

absl::StatusOr<RetrieveResult> RetrieveOne(const BankView& view,
                                           const RetrievalParams& params,
                                           absl::Span<const float> query) {
  const Index dim = view.dim();
  const Index size = view.size();
  const Index key_dim = view.key_dim();
  Scratch& scratch = ThreadScratch(size, dim, key_dim);
  scratch.x.head(dim) = Eigen::Map<const VectorXf>(query.data(), dim);
  // evals[current] describes x_t; evals[1 - current] describes x_{t-1}.
  std::array<StateEval, 2>& evals = scratch.evals;
  int current = 0;
  RetrieveResult result;
  uint32_t t = 0;
  while (true) {
    if (t > 0 && params.check_continue) {
      HOPFIELD_RETURN_IF_ERROR(params.check_continue());
    }
    StateEval& now = evals[static_cast<size_t>(current)];
    const StateEval& before = evals[static_cast<size_t>(1 - current)];
    // p_t, E(x_t), Ξ p_t
    HOPFIELD_RETURN_IF_ERROR(
        Evaluate(view, params, scratch.x.head(dim), &scratch.block_weights,
                 &now, scratch.update.head(dim), scratch.feature.head(key_dim),
                 scratch.unit.head(key_dim)));
    result.patterns_scored += static_cast<uint64_t>(view.size());
    result.energy = now.energy;
    if (params.return_energy_trace) result.energy_trace.push_back(now.energy);
    const bool weights_settled =
        t > 0 && (now.weights.head(size) - before.weights.head(size)).norm() <=
                     params.tolerance;
    const auto x = scratch.x.head(dim);
    const auto update = scratch.update.head(dim);
    // In double: a state of huge patterns would overflow float norms.
    const bool state_settled = (update - x).cast<double>().norm() <=
                               kStateTolerance * update.cast<double>().norm();
    scratch.x.swap(scratch.update);  // x_{t+1} = Ξ p_t
    ++t;
    if (weights_settled || state_settled) {
      result.converged = true;
      break;
    }
    if (t >= params.max_iterations) break;
    if (params.similarity == Similarity::kCosine &&
        AllZero(scratch.x.head(dim))) {
      // Every weight underflowed (softmax1 far from all patterns): the state
      // vanished and has no cosine scores; report it as it is.
      break;
    }
    current = 1 - current;
  }
  result.iterations = t;
  if (!params.omit_pattern) {
    result.pattern.assign(scratch.x.data(), scratch.x.data() + dim);
  }
  const StateEval& producer = evals[static_cast<size_t>(current)];
  Summarise(view.ids, params, Head(producer.scores, size),
            Head(producer.weights, size), producer.null_mass, &result);
  return result;
}

// ---- Approximate retrieval: top-k candidates with a certificate ----------
//
// Each update is restricted to a candidate set S: the index's top_k for the
// current state, plus every pattern not yet in the index (scored exactly,
// so S covers the bank). With p the full weights, ε = Σ_{ν∉S} p_ν and m the
// largest pattern norm, ||T(x) − T_S(x)|| <= 2m·ε (algorithms.md §E.5), and
// ε <= (M − |S|)·e^{−β(s_1 − s_out)} for any bound s_out on the scores
// outside S. Two bounds are used:
//   - separation (a proof): with w the best candidate and s_1 = cos(x̂, ξ̂_w)
//     its score, every other pattern ν has cos(ξ̂_w, ξ̂_ν) <= 1 − Δ_w, w's
//     nearest-neighbour score from the bank's exact separation statistics,
//     so s_ν <= SphericalCosineBound(1 − Δ_w, s_1) (capacity.h: angles on
//     the sphere obey the triangle inequality; tighter than the chordal
//     (1 − Δ_w) + ||x̂ − ξ̂_w||, which at s_1 = 0.999 adds 0.045 where the
//     angle adds 0.013 to a neighbour at 0.95). When s_1 exceeds that bound,
//     w is the global argmax and the tail bound holds whatever the index
//     returned. It needs no separation pending.
//   - exact top-k (conditional): s_out = s_k, the lowest score among the
//     index's candidates, valid if they are the true top-k ("certified under
//     exact top-k"); only for a set fetched from an index built under the
//     current feature map.
// Sparse maps give the tail no weight at all when (α−1)·β·s_out is at most
// the threshold of Sep over S; softmax and softmax₁ need ε <= kTailMass.
// A set fetched for an earlier state is kept while a bound certifies it for
// the current one (no index query): the separation bound, or the exact top-k
// bound of the state it was fetched for widened by the angle the state has
// turned since (SphericalCosineBound); otherwise the index is queried again.
// When neither bound certifies a freshly fetched set even after widening it
// (kWidening), the query falls back to the dense scan
// (RetrieveResult::fell_back).
constexpr double kTailMass = 1e-4;
// Weights of S at most kNegligibleWeight are left out of T_S(x) (at β = 1000
// most of a set's weights are e^{-20} or less, and each costs a read of a
// pattern): their total w moves the update by at most m·w, which the
// certificate's bound includes.
constexpr float kNegligibleWeight = 1e-9f;
// A fresh set that fails both bounds is fetched again with kWidening times
// as many candidates (a lower s_k), up to an eighth of the bank; then the
// dense scan answers.
constexpr size_t kWidening = 4;

bool UseApproximate(const BankView& view, const RetrievalParams& params) {
  if (params.search == SearchMode::kExact) return false;
  if (view.index == nullptr || view.column_of == nullptr ||
      params.similarity != Similarity::kCosine) {
    return false;
  }
  return params.search == SearchMode::kApproximate ||
         static_cast<uint64_t>(view.size()) >= kAutoApproximateMinPatterns;
}

struct ApproxScratch {
  std::vector<AnnIndex::Candidate> found;
  std::vector<Index> columns;
  std::vector<Index> previous_columns;
  std::vector<Index> sorted_indexed;
  std::vector<Index> order;  // re-ranking a projected index's candidates
  // A re-ranked fetch, best first, and its exact scores; `spare` while
  // s.columns holds only its k best.
  std::vector<Index> fetched;
  VectorXf fetched_scores;
  bool spare = false;
  // The first `prescored` entries of `scores` hold the exact scores of the
  // first columns at the state being evaluated (from the re-ranking).
  Index prescored = 0;
  std::vector<PatternId> ids;
  VectorXf scores, logits, weights, previous_weights;
  VectorXf x, update, feature, unit, index_feature, index_unit;
  // The unit state the set was fetched for, and the lowest score of its
  // indexed candidates there (s_k): under exact top-k, every pattern outside
  // S scored at most s_k at that state.
  VectorXf anchor_unit;
  double anchor_lowest = 0.0;
  bool anchored = false;  // anchor_* hold for the current set
  // The first `indexed` columns came from the index (still stored).
  Index indexed = 0;
  bool full_k = false;  // the index returned top_k candidates
  bool fresh = false;   // fetched for the state being evaluated
};

// The exact score of column c at the unit state `unit` (cosine banks).
float ExactScore(const BankView& view, Index c,
                 const Eigen::Ref<const VectorXf>& unit) {
  return view.keys.col(c).dot(unit) * view.key_inverse_norms[c];
}

// Writes the exact scores at `unit` of columns[i] for i in [from, to) into
// scores[i]. A candidate set's keys lie scattered over the bank (a 784-float
// key is 49 cache lines), so each column starts with a cache miss and, in a
// big bank, a TLB miss: the loop prefetches kPrefetchColumns columns ahead (4:
// measured 9-14% faster retrieval than none at 60,000 x 784, 2 and 1 in
// between), overlapping those misses with the arithmetic.
constexpr Index kPrefetchColumns = 4;
void ScoreColumns(const BankView& view, absl::Span<const Index> columns,
                  Index from, Index to, const Eigen::Ref<const VectorXf>& unit,
                  float* scores) {
  const Index key_dim = view.key_dim();
  auto prefetch = [&](Index i) {
    const float* key = view.keys.col(columns[static_cast<size_t>(i)]).data();
    for (Index f = 0; f < key_dim; f += 16) __builtin_prefetch(key + f);
  };
  for (Index i = from; i < std::min(to, from + kPrefetchColumns); ++i) {
    prefetch(i);
  }
  for (Index i = from; i < to; ++i) {
    if (i + kPrefetchColumns < to) prefetch(i + kPrefetchColumns);
    scores[i] = ExactScore(view, columns[static_cast<size_t>(i)], unit);
  }
}

// Marks s.columns as the indexed prefix and appends the patterns not in the
// index; a replaced one may also have come from the index (under its old
// vector): one copy is kept.
void AppendUnindexed(const BankView& view, ApproxScratch* s) {
  s->indexed = static_cast<Index>(s->columns.size());
  s->sorted_indexed.assign(s->columns.begin(), s->columns.end());
  std::sort(s->sorted_indexed.begin(), s->sorted_indexed.end());
  for (const PatternId id : view.unindexed) {
    const Index c = view.column_of->find(id)->second;
    if (!std::binary_search(s->sorted_indexed.begin(), s->sorted_indexed.end(),
                            c)) {
      s->columns.push_back(c);
    }
  }
}

// Fetches S for the state `x` (unit feature `unit`) into s.columns: the
// index's top_k, or with `deep` the top_k by the exact score among the best
// k + e/2 of a search k + 3e/2 deep, e = CandidatesFor(k) - k (projected
// index: the best 1.5k of a 2.5k-deep search, 96 of 160 for the default 64;
// otherwise e = 0). Then the unindexed patterns.
void GatherCandidates(const BankView& view, size_t top_k, bool deep,
                      const Eigen::Ref<const VectorXf>& x,
                      const Eigen::Ref<const VectorXf>& unit,
                      ApproxScratch* s) {
  const bool current = view.index_map == view.feature_map;
  absl::Span<const float> probe = AsSpan(unit);
  if (!current) {
    // The index was built under an earlier map: search in its space.
    const auto index_dim = static_cast<Index>(view.index->dim());
    EnsureSize(&s->index_feature, index_dim);
    EnsureSize(&s->index_unit, index_dim);
    if (view.index_map != nullptr && !view.index_map->is_identity()) {
      view.index_map->Apply(x, s->index_feature.head(index_dim));
      Normalize(s->index_feature.head(index_dim),
                s->index_unit.head(index_dim));
    } else {
      Normalize(x, s->index_unit.head(index_dim));
    }
    probe = Head(s->index_unit, index_dim);
  }
  const size_t k = std::min<size_t>(top_k, static_cast<size_t>(view.size()));
  size_t fetch = k;
  size_t rerank = k;
  if (deep) {
    const size_t excess = view.index->CandidatesFor(k) - k;
    rerank = k + excess / 2;
    fetch = std::min<size_t>(k + excess + excess / 2,
                             static_cast<size_t>(view.size()));
  }
  view.index->Search(probe, fetch, &s->found);
  // The deep search's beam (fetch, its ef) is what finds the true top k;
  // re-ranking only its best `rerank` by the projected score reads 40% fewer
  // keys (3 KB each at d = 784) for the same answers (5,000 Fashion-MNIST
  // queries: agreement with the dense path 99.80% / 99.70% for test / masked
  // images against 99.82% / 99.82% re-ranking all 160).
  if (s->found.size() > rerank && rerank > k) s->found.resize(rerank);
  s->full_k = s->found.size() >= k;
  s->columns.clear();
  for (const AnnIndex::Candidate& candidate : s->found) {
    const auto it = view.column_of->find(candidate.id);
    if (it != view.column_of->end()) s->columns.push_back(it->second);
  }
  s->spare = false;
  if (s->columns.size() > k) {
    // A projected index ranks approximately: rank the fetched candidates by
    // the exact score at this state and keep the k best; the rest stay at
    // hand (ExpandToFetched) for a set that does not certify.
    const auto fetched = static_cast<Index>(s->columns.size());
    EnsureSize(&s->scores, fetched);
    ScoreColumns(view, s->columns, 0, fetched, unit, s->scores.data());
    s->order.resize(s->columns.size());
    std::iota(s->order.begin(), s->order.end(), Index{0});
    std::sort(s->order.begin(), s->order.end(), [&](Index a, Index b) {
      return s->scores[a] > s->scores[b] ||
             (s->scores[a] == s->scores[b] && a < b);
    });
    EnsureSize(&s->fetched_scores, fetched);
    s->fetched.resize(s->columns.size());
    for (Index i = 0; i < fetched; ++i) {
      const Index from = s->order[static_cast<size_t>(i)];
      s->fetched_scores[i] = s->scores[from];
      s->fetched[static_cast<size_t>(i)] =
          s->columns[static_cast<size_t>(from)];
    }
    s->columns.assign(s->fetched.begin(),
                      s->fetched.begin() + static_cast<std::ptrdiff_t>(k));
    s->scores.head(static_cast<Index>(k)) =
        s->fetched_scores.head(static_cast<Index>(k));
    s->prescored = static_cast<Index>(k);  // EvaluateSet need not rescore
    s->spare = true;
  }
  AppendUnindexed(view, s);
}

// Replaces the k best of a re-ranked fetch with all of it (already scored):
// a lower s_k without another index query.
void ExpandToFetched(const BankView& view, ApproxScratch* s) {
  const auto n = static_cast<Index>(s->fetched.size());
  s->columns.assign(s->fetched.begin(), s->fetched.end());
  if (s->scores.size() < n) s->scores.conservativeResize(n);
  s->scores.head(n) = s->fetched_scores.head(n);
  s->prescored = n;
  s->spare = false;
  AppendUnindexed(view, s);
}

struct Certificate {
  bool held = false;
  bool by_separation = false;
  double bound = 0.0;  // on ||T(x) − T_S(x)||
};

// Scores S at the state whose normalised feature is `unit`, separates,
// writes T_S(x) into `update` and returns the certificate.
Certificate EvaluateSet(const BankView& view, const RetrievalParams& params,
                        const Eigen::Ref<const VectorXf>& unit,
                        ApproxScratch* s, Eigen::Ref<VectorXf> update,
                        double* null_mass) {
  const auto n = static_cast<Index>(s->columns.size());
  // Keeps the prescored entries.
  if (s->scores.size() < n) s->scores.conservativeResize(n);
  EnsureSize(&s->logits, n);
  EnsureSize(&s->weights, n);
  auto scores = s->scores.head(n);
  auto logits = s->logits.head(n);
  auto weights = s->weights.head(n);
  ScoreColumns(view, s->columns, s->prescored, n, unit, s->scores.data());
  Index best = 0;
  for (Index i = 0; i < n; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  s->prescored = 0;
  logits = params.beta * scores;
  const double beta = params.beta;
  double threshold = 0.0;
  *null_mass = 0.0;
  const absl::Span<const float> z = Head(s->logits, n);
  const absl::Span<float> p(s->weights.data(), static_cast<size_t>(n));
  switch (params.separation) {
    case Separation::kSoftmax:
    case Separation::kSoftmax1:
      *null_mass = Separate(params.separation, params.entmax_alpha, z, p);
      break;
    case Separation::kSparsemax:
      threshold = Sparsemax(z, p);
      break;
    case Separation::kEntmax:
      threshold = params.entmax_alpha == 1.5
                      ? Entmax15(z, p)
                      : EntmaxBisect(z, params.entmax_alpha, p);
      break;
  }
  const double m = view.max_norm;
  double left_out = 0.0;
  update.setZero();
  for (Index i = 0; i < n; ++i) {
    if (weights[i] > kNegligibleWeight) {
      update.noalias() +=
          weights[i] * view.patterns.col(s->columns[static_cast<size_t>(i)]);
    } else {
      left_out += static_cast<double>(weights[i]);
    }
  }
  const double left_out_bound = m * left_out;

  const uint64_t tail =
      static_cast<uint64_t>(view.size()) - static_cast<uint64_t>(n);
  if (tail == 0) return Certificate{true, false, left_out_bound};
  const double s1 = scores[best];
  const double alpha = SeparationAlpha(params.separation, params.entmax_alpha);
  // Whether a bound `outside` on the scores outside S certifies the update,
  // and the bound on ||T(x) − T_S(x)|| it gives.
  auto check = [&](double outside, Certificate* out) {
    if (!IsDense(params.separation)) {
      out->held = (alpha - 1.0) * beta * outside <= threshold;
      out->bound = left_out_bound;
      return out->held;
    }
    const double mass =
        static_cast<double>(tail) * std::exp(-beta * (s1 - outside));
    out->held = mass <= kTailMass;
    out->bound = 2.0 * m * mass + left_out_bound;
    return out->held;
  };
  // A set fetched for this state from an index built under the current
  // map anchors the exact top-k bound (below) for later states.
  const bool top_k_valid =
      s->full_k && s->indexed > 0 && view.index_map == view.feature_map;
  if (s->fresh && top_k_valid) {
    double lowest = s1;
    for (Index i = 0; i < s->indexed; ++i) {
      lowest = std::min(lowest, static_cast<double>(scores[i]));
    }
    EnsureSize(&s->anchor_unit, unit.size());
    s->anchor_unit.head(unit.size()) = unit;
    s->anchor_lowest = lowest;
    s->anchored = true;
  }
  Certificate certificate;
  // The separation proof first: it holds whatever the index returned.
  const Index w = s->columns[static_cast<size_t>(best)];
  if (view.nearest_scores != nullptr && view.separation_pending_count == 0 &&
      view.key_inverse_norms[w] > 0.0f &&
      std::isfinite(view.nearest_scores[w])) {
    const double outside =
        SphericalCosineBound(static_cast<double>(view.nearest_scores[w]), s1);
    if (s1 > outside && check(outside, &certificate)) {
      certificate.by_separation = true;
      return certificate;
    }
  }
  // Then "certified under exact top-k", for a set fetched from an index
  // built under the current map: for this very state, s_out = s_k; for an
  // earlier (anchor) state u₀, every pattern ν outside S has
  // ⟨k̂_ν, u₀⟩ <= s_k(u₀), hence ⟨k̂_ν, u⟩ <= SphericalCosineBound(s_k(u₀),
  // ⟨u, u₀⟩) (angles obey the triangle inequality), the same assumption
  // about the same index answer.
  if (s->anchored && top_k_valid) {
    const double outside =
        s->fresh ? s->anchor_lowest
                 : SphericalCosineBound(
                       s->anchor_lowest,
                       unit.cast<double>().dot(
                           s->anchor_unit.head(unit.size()).cast<double>()));
    check(outside, &certificate);
    return certificate;
  }
  certificate.held = false;
  return certificate;
}

// The energy of the state the last EvaluateSet scored, over its set.
double SetEnergy(const RetrievalParams& params, const ApproxScratch& s) {
  const auto n = static_cast<Index>(s.columns.size());
  return StateEnergy(params, 0.5, Head(s.scores, n), Head(s.logits, n),
                     Head(s.weights, n));
}

absl::StatusOr<RetrieveResult> RetrieveApproximate(
    const BankView& view, const RetrievalParams& params,
    absl::Span<const float> query) {
  thread_local ApproxScratch s;
  const Index dim = view.dim();
  const Index key_dim = view.key_dim();
  EnsureSize(&s.x, dim);
  EnsureSize(&s.update, dim);
  EnsureSize(&s.feature, key_dim);
  EnsureSize(&s.unit, key_dim);
  s.x.head(dim) = Eigen::Map<const VectorXf>(query.data(), dim);
  RetrieveResult result;
  result.approximate = true;
  s.anchored = false;
  s.prescored = 0;
  s.spare = false;
  bool have_set = false;
  size_t top_k = params.top_k;
  Certificate last;
  double null_mass = 0.0;
  uint32_t t = 0;
  while (true) {
    if (t > 0 && params.check_continue) {
      HOPFIELD_RETURN_IF_ERROR(params.check_continue());
    }
    const auto x = s.x.head(dim);
    if (view.learned()) view.feature_map->Apply(x, s.feature.head(key_dim));
    const Eigen::Ref<const VectorXf> mapped =
        view.learned() ? Eigen::Ref<const VectorXf>(s.feature.head(key_dim))
                       : Eigen::Ref<const VectorXf>(x);
    Normalize(mapped, s.unit.head(key_dim));
    const auto unit = s.unit.head(key_dim);
    s.previous_columns.swap(s.columns);
    const auto previous_n = static_cast<Index>(s.previous_columns.size());
    EnsureSize(&s.previous_weights, std::max<Index>(previous_n, 1));
    if (previous_n > 0) {
      s.previous_weights.head(previous_n) = s.weights.head(previous_n);
    }
    auto evaluate = [&] {
      last =
          EvaluateSet(view, params, unit, &s, s.update.head(dim), &null_mass);
      result.patterns_scored += s.columns.size();
    };
    if (have_set) {
      s.columns = s.previous_columns;  // try the same set first
      s.fresh = false;
      evaluate();
    }
    // A fresh set that does not certify is widened (k x4) while that stays
    // well below a scan of the bank.
    while (!have_set || !last.held) {
      if (have_set && s.fresh && s.spare) {
        // First the rest of the re-ranked fetch (no index query).
        ExpandToFetched(view, &s);
        s.anchored = false;
        evaluate();
        continue;
      }
      if (have_set && s.fresh) {
        if (top_k * kWidening > static_cast<size_t>(view.size()) / 8) break;
        top_k *= kWidening;
      }
      s.anchored = false;
      // The query itself, often off the patterns' manifold (masked, noisy),
      // is where a projected index ranks worst: its fetch is re-ranked from
      // a deeper one. Later states sit near stored patterns, where the
      // projected ranking holds up (and the answer is mostly settled): their
      // top_k comes straight from the index, scored exactly (measured 7-12%
      // faster per retrieval than re-ranking 2k, the same agreement).
      const bool deep = t == 0 && top_k == params.top_k;
      GatherCandidates(view, top_k, deep, x, unit, &s);
      s.fresh = true;
      have_set = true;
      ++result.index_queries;
      evaluate();
    }
    if (!last.held) {
      // Not certified: the dense scan answers.
      HOPFIELD_ASSIGN_OR_RETURN(RetrieveResult dense,
                                RetrieveOne(view, params, query));
      dense.fell_back = true;
      dense.index_queries = result.index_queries;
      dense.patterns_scored += result.patterns_scored;
      return dense;
    }
    if (params.return_energy_trace) {
      result.energy_trace.push_back(SetEnergy(params, s));
    }
    const auto n = static_cast<Index>(s.columns.size());
    const bool weights_settled =
        t > 0 && s.columns == s.previous_columns &&
        (s.weights.head(n) - s.previous_weights.head(n)).norm() <=
            params.tolerance;
    const auto update = s.update.head(dim);
    const bool state_settled = (update - x).cast<double>().norm() <=
                               kStateTolerance * update.cast<double>().norm();
    s.x.swap(s.update);
    ++t;
    if (weights_settled || state_settled) {
      result.converged = true;
      break;
    }
    if (t >= params.max_iterations) break;
    if (AllZero(s.x.head(dim))) break;
  }
  result.iterations = t;
  result.energy = SetEnergy(params, s);
  if (!params.omit_pattern) {
    result.pattern.assign(s.x.data(), s.x.data() + dim);
  }
  const auto n = static_cast<Index>(s.columns.size());
  s.ids.resize(static_cast<size_t>(n));
  for (Index i = 0; i < n; ++i) {
    s.ids[static_cast<size_t>(i)] =
        view.ids[static_cast<size_t>(s.columns[static_cast<size_t>(i)])];
  }
  Summarise(s.ids, params, Head(s.scores, n), Head(s.weights, n), null_mass,
            &result);
  result.exact = true;
  result.truncation_bound = static_cast<float>(last.bound);
  result.certified_by_separation = last.by_separation;
  return result;
}

// Dispatches one query to the approximate or the dense path.
absl::StatusOr<RetrieveResult> RetrieveSingle(const BankView& view,
                                              const RetrievalParams& params,
                                              absl::Span<const float> query) {
  if (UseApproximate(view, params)) {
    return RetrieveApproximate(view, params, query);
  }
  return RetrieveOne(view, params, query);
}

// The number of parts ParallelFor splits [0, n) into.
Index PartCount(uint32_t threads, Index n) {
  return std::max<Index>(1, std::min<Index>(threads, n));
}

// Runs fn(part, begin, end) over [0, n) split into PartCount(threads, n)
// contiguous ranges: on params.pool when set (the calling thread takes parts
// and idle workers help), else on the calling thread plus one short-lived
// thread per extra part. An exception from fn (std::bad_alloc) is rethrown
// here after every part has ended.
template <typename Fn>
void ParallelFor(const RetrievalParams& params, Index n, const Fn& fn) {
  const Index parts = PartCount(params.threads, n);
  RunParts(params.pool, static_cast<size_t>(parts), [&](size_t part_index) {
    const ScopedFlushDenormals flush;  // on the helping thread too
    const auto part = static_cast<Index>(part_index);
    fn(part, n * part / parts, n * (part + 1) / parts);
  });
}

// ParallelFor over [0, n) in which every part walks its range in steps of
// `step` and the calling thread polls params.check_continue between its
// steps; once a poll fails, every part stops after its current step and the
// poll's error is returned.
template <typename Fn>
absl::Status ParallelForChecked(const RetrievalParams& params, Index n,
                                Index step, const Fn& fn) {
  std::atomic<bool> abort{false};
  absl::Status status;
  ParallelFor(params, n, [&](Index part, Index begin, Index end) {
    for (Index first = begin; first < end; first += step) {
      if (abort.load(std::memory_order_relaxed)) return;
      if (part == 0 && first > begin && params.check_continue) {
        status = params.check_continue();
        if (!status.ok()) {
          abort.store(true, std::memory_order_relaxed);
          return;
        }
      }
      fn(part, first, std::min(end, first + step));
    }
  });
  return status;
}

// Batch retrieval of the columns of `queries` (dim x n). Each step is three
// phases, each split over params.threads: scores S = ΞᵀX (split over
// patterns, so every thread runs a full-width matrix product), then the
// normaliser, energy and bookkeeping per query (split over queries), then the
// output X' = ΞP (split over patterns with partial sums, or sparse per query
// when few weights matter).
absl::StatusOr<std::vector<RetrieveResult>> RetrieveMany(
    const BankView& view, const RetrievalParams& params,
    const Eigen::Map<const MatrixXf>& queries) {
  const ScopedFlushDenormals flush;  // (ParallelFor's parts take their own)
  const Index dim = view.dim();
  if (UseApproximate(view, params)) {
    // Above the threshold each query takes the per-query top-k path
    // (parallel over queries); there is no shared pass over the bank.
    const Index n = queries.cols();
    std::vector<RetrieveResult> results(static_cast<size_t>(n));
    std::vector<absl::Status> failures(static_cast<size_t>(n));
    ParallelFor(params, n, [&](Index, Index begin, Index end) {
      for (Index k = begin; k < end; ++k) {
        absl::StatusOr<RetrieveResult> one = RetrieveApproximate(
            view, params,
            absl::Span<const float>(queries.col(k).data(),
                                    static_cast<size_t>(dim)));
        if (one.ok()) {
          results[static_cast<size_t>(k)] = *std::move(one);
        } else {
          failures[static_cast<size_t>(k)] = one.status();
        }
      }
    });
    for (const absl::Status& failure : failures) {
      HOPFIELD_RETURN_IF_ERROR(failure);
    }
    return results;
  }
  const Index size = view.size();
  const Index count = queries.cols();
  const bool cosine = params.similarity == Similarity::kCosine;
  std::vector<RetrieveResult> results(static_cast<size_t>(count));
  // Unfinished queries, compacted: x (dim x n), their result slots, and the
  // weights of the previous step for the convergence test.
  MatrixXf x = queries;
  std::vector<Index> active(static_cast<size_t>(count));
  for (Index k = 0; k < count; ++k) active[static_cast<size_t>(k)] = k;
  const Index key_dim = view.key_dim();
  MatrixXf features;  // learned map: Φ of the states
  MatrixXf unit;      // cosine: the scored vectors scaled to unit norm
  MatrixXf scores;
  MatrixXf weights;
  MatrixXf weights_prev;
  MatrixXf update;
  const float drop_below =
      IsDense(params.separation)
          ? static_cast<float>(kDropMass / static_cast<double>(size))
          : 0.0f;
  uint32_t t = 0;
  while (!active.empty()) {
    if (t > 0 && params.check_continue) {
      HOPFIELD_RETURN_IF_ERROR(params.check_continue());
    }
    const auto n = static_cast<Index>(active.size());
    // Under cosine, scores are taken against the unit states (computed in
    // double: huge or tiny states neither over- nor underflow). A state can
    // only vanish under softmax1 when every weight underflows; it scores as
    // all-zero.
    if (view.learned()) {
      features.resize(key_dim, n);
      view.feature_map->Apply(x, features);
    }
    const MatrixXf& mapped = view.learned() ? features : x;
    if (cosine) {
      unit.resize(key_dim, n);
      for (Index k = 0; k < n; ++k) Normalize(mapped.col(k), unit.col(k));
    }
    const MatrixXf& probe = cosine ? unit : mapped;
    // Patterns per step between polls: ~check_every_macs multiply-adds, but
    // never so few that the matrix products lose their efficiency.
    const Index step = std::max<Index>(
        256, static_cast<Index>(
                 params.check_every_macs /
                 std::max<uint64_t>(1, static_cast<uint64_t>(n * key_dim))));
    scores.resize(size, n);
    HOPFIELD_RETURN_IF_ERROR(ParallelForChecked(
        params, size, step, [&](Index, Index begin, Index end) {
          auto block = scores.middleRows(begin, end - begin);
          block.noalias() =
              view.keys.middleCols(begin, end - begin).transpose() * probe;
          if (cosine) {
            block = view.key_inverse_norms.segment(begin, end - begin)
                        .asDiagonal() *
                    block;
          }
        }));
    weights.resize(size, n);
    std::vector<double> null_mass(static_cast<size_t>(n));
    std::vector<Index> significant(static_cast<size_t>(n));
    // Queries per step between polls of the normaliser phase (O(M) each,
    // a few operations per entry).
    const Index query_step = std::max<Index>(
        1, static_cast<Index>(params.check_every_macs /
                              (8 * static_cast<uint64_t>(size))));
    HOPFIELD_RETURN_IF_ERROR(ParallelForChecked(
        params, n, query_step, [&](Index, Index begin, Index end) {
          VectorXf logits(size);
          for (Index k = begin; k < end; ++k) {
            const auto kk = static_cast<size_t>(k);
            RetrieveResult& result = results[static_cast<size_t>(active[kk])];
            logits = params.beta * scores.col(k);
            null_mass[kk] =
                Separate(params.separation, params.entmax_alpha, AsSpan(logits),
                         absl::Span<float>(weights.col(k).data(),
                                           static_cast<size_t>(size)));
            result.energy = StateEnergy(
                params, HalfSquaredNorm(params, mapped.col(k)),
                AsSpan(scores.col(k)), AsSpan(logits), AsSpan(weights.col(k)));
            if (params.return_energy_trace) {
              result.energy_trace.push_back(result.energy);
            }
            result.patterns_scored += static_cast<uint64_t>(size);
            significant[kk] = (weights.col(k).array() > drop_below).count();
          }
        }));
    // x_{t+1} = Ξ p_t, touching only the weights that matter when few do.
    Index total_significant = 0;
    for (const Index s : significant) total_significant += s;
    update.resize(dim, n);
    if (total_significant * 16 <= size * n) {
      HOPFIELD_RETURN_IF_ERROR(ParallelForChecked(
          params, n, query_step, [&](Index, Index begin, Index end) {
            for (Index k = begin; k < end; ++k) {
              auto column = update.col(k);
              column.setZero();
              for (Index i = 0; i < size; ++i) {
                const float w = weights(i, k);
                if (w > drop_below) {
                  column.noalias() += w * view.patterns.col(i);
                }
              }
            }
          }));
    } else {
      std::vector<MatrixXf> partial(
          static_cast<size_t>(PartCount(params.threads, size)),
          MatrixXf::Zero(dim, n));
      HOPFIELD_RETURN_IF_ERROR(ParallelForChecked(
          params, size, step, [&](Index part, Index begin, Index end) {
            partial[static_cast<size_t>(part)].noalias() +=
                view.patterns.middleCols(begin, end - begin) *
                weights.middleRows(begin, end - begin);
          }));
      update = partial[0];
      for (size_t part = 1; part < partial.size(); ++part) {
        update += partial[part];
      }
    }
    // Finish converged queries and those out of budget (in parallel, polled:
    // O(M) per query); compact the rest.
    std::vector<char> finished(static_cast<size_t>(n), 0);
    HOPFIELD_RETURN_IF_ERROR(ParallelForChecked(
        params, n, query_step, [&](Index, Index begin, Index end) {
          for (Index k = begin; k < end; ++k) {
            const auto kk = static_cast<size_t>(k);
            RetrieveResult& result = results[static_cast<size_t>(active[kk])];
            const bool weights_settled =
                t > 0 && (weights.col(k) - weights_prev.col(k)).norm() <=
                             params.tolerance;
            const bool state_settled =
                (update.col(k) - x.col(k)).cast<double>().norm() <=
                kStateTolerance * update.col(k).cast<double>().norm();
            const bool vanished = cosine && AllZero(update.col(k));
            if (!(weights_settled || state_settled || vanished ||
                  t + 1 >= params.max_iterations)) {
              continue;
            }
            finished[kk] = 1;
            result.converged = weights_settled || state_settled;
            result.iterations = t + 1;
            if (!params.omit_pattern) {
              result.pattern.assign(update.col(k).data(),
                                    update.col(k).data() + dim);
            }
            Summarise(view.ids, params, AsSpan(scores.col(k)),
                      AsSpan(weights.col(k)), null_mass[kk], &result);
          }
        }));
    std::vector<Index> keep;
    for (Index k = 0; k < n; ++k) {
      if (finished[static_cast<size_t>(k)] == 0) keep.push_back(k);
    }
    if (keep.empty()) break;
    const auto m = static_cast<Index>(keep.size());
    MatrixXf next_x(dim, m);
    MatrixXf next_weights_prev(size, m);
    std::vector<Index> next_active(keep.size());
    for (Index j = 0; j < m; ++j) {
      const Index k = keep[static_cast<size_t>(j)];
      next_x.col(j) = update.col(k);
      next_weights_prev.col(j) = weights.col(k);
      next_active[static_cast<size_t>(j)] = active[static_cast<size_t>(k)];
    }
    x = std::move(next_x);
    weights_prev = std::move(next_weights_prev);
    active = std::move(next_active);
    ++t;
  }
  return results;
}

}  // namespace

absl::Status RetrieveOptions::Validate() const {
  if (!(beta == 0.0f || (beta >= kMinBeta && beta <= kMaxBeta))) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.beta must be 0 (bank default) or in [", kMinBeta,
                     ", ", kMaxBeta, "], got ", beta));
  }
  if (max_iterations > kMaxIterationsLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.max_iterations must be 0 (bank default) or in 1..",
        kMaxIterationsLimit, ", got ", max_iterations));
  }
  if (tolerance.has_value() && !(*tolerance >= 0.0f && *tolerance < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.tolerance must be in [0, 1), got ", *tolerance));
  }
  if (top_k > kMaxTopK) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.top_k must be 0 (bank default) or in 1..",
                     kMaxTopK, ", got ", top_k));
  }
  if (return_matches > kMaxReturnMatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.return_matches must be in 0..", kMaxReturnMatches,
                     ", got ", return_matches));
  }
  if (threads < 1 || threads > kMaxThreads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.threads must be in 1..", kMaxThreads, ", got ", threads));
  }
  return absl::OkStatus();
}

absl::StatusOr<RetrievalParams> ResolveRetrieval(
    const BankOptions& bank, const BankView& view,
    const RetrieveOptions& options) {
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  RetrievalParams params;
  params.similarity = bank.similarity;
  params.separation = options.separation.value_or(bank.separation);
  params.entmax_alpha = bank.entmax_alpha;
  if (options.beta > 0.0f) {
    params.beta = options.beta;
  } else if (bank.beta > 0.0f) {
    params.beta = bank.beta;
  } else {
    const double rule_norm =
        bank.similarity == Similarity::kCosine ? 1.0 : view.max_key_norm;
    params.beta = static_cast<float>(
        AutoBeta(static_cast<uint64_t>(view.size()),
                 view.min_separation.value_or(0.0), rule_norm));
  }
  params.max_iterations =
      options.max_iterations > 0 ? options.max_iterations : bank.max_iterations;
  params.tolerance = options.tolerance.value_or(bank.tolerance);
  params.return_matches = std::max(1u, options.return_matches);
  params.omit_pattern = options.omit_pattern;
  params.return_energy_trace = options.return_energy_trace;
  params.threads = options.threads;
  params.pool = options.pool;
  params.check_continue = options.check_continue;
  params.search = options.search.value_or(bank.search);
  params.top_k = options.top_k > 0 ? options.top_k : bank.top_k;
  return params;
}

uint64_t ResultBytes(const RetrievalParams& params, uint64_t size,
                     uint64_t dim) {
  uint64_t bytes =
      sizeof(RetrieveResult) +
      std::min<uint64_t>(params.return_matches, size) * sizeof(Match);
  if (!params.omit_pattern) bytes += dim * sizeof(float);
  if (params.return_energy_trace) {
    bytes += uint64_t{params.max_iterations} * sizeof(double);
  }
  return bytes;
}

absl::StatusOr<RetrieveResult> Retriever::Retrieve(
    const BankView& view, const RetrievalParams& params,
    absl::Span<const float> query) {
  HOPFIELD_RETURN_IF_ERROR(ValidateQuery(query, view, params, "query"));
  const ScopedFlushDenormals flush;
  return RetrieveSingle(view, params, query);
}

namespace {

// Every check of a batch before any work: a non-empty list, whole queries,
// each valid. Errors name the query.
absl::Status RetrieveBatchCheck(const BankView& view,
                                const RetrievalParams& params,
                                absl::Span<const float> queries) {
  const Index dim = view.dim();
  if (queries.empty()) {
    return absl::InvalidArgumentError("queries: empty list, expected >= 1");
  }
  const size_t n = queries.size() / static_cast<size_t>(dim);
  for (size_t i = 0; i < n; ++i) {
    HOPFIELD_RETURN_IF_ERROR(ValidateQuery(
        queries.subspan(i * static_cast<size_t>(dim), static_cast<size_t>(dim)),
        view, params, absl::StrCat("queries[", i, "]")));
  }
  if (queries.size() % static_cast<size_t>(dim) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries[", n, "]: expected ", dim, " values (the bank's dim), got ",
        queries.size() % static_cast<size_t>(dim)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<RetrieveResult>> Retriever::RetrieveBatch(
    const BankView& view, const RetrievalParams& params,
    absl::Span<const float> queries) {
  HOPFIELD_RETURN_IF_ERROR(RetrieveBatchCheck(view, params, queries));
  const ScopedFlushDenormals flush;
  const Index dim = view.dim();
  const Eigen::Map<const MatrixXf> matrix(
      queries.data(), dim,
      static_cast<Index>(queries.size() / static_cast<size_t>(dim)));
  return RetrieveMany(view, params, matrix);
}

namespace {

// Runs `retrieve(view, params)` under the bank's reader lock after the checks
// both entry points share: valid options, a non-empty bank.
template <typename Retrieve>
auto RetrieveFromBank(const MemoryBank& bank, const RetrieveOptions& options,
                      const Retrieve& retrieve)
    -> decltype(retrieve(std::declval<const BankView&>(),
                         std::declval<const RetrievalParams&>())) {
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  return bank.WithReader(
      [&](const BankView& view)
          -> decltype(retrieve(view, std::declval<const RetrievalParams&>())) {
        if (view.size() == 0) {
          return absl::FailedPreconditionError(absl::StrCat(
              "bank \"", bank.name(), "\" is empty; Store patterns first"));
        }
        HOPFIELD_ASSIGN_OR_RETURN(
            RetrievalParams params,
            ResolveRetrieval(bank.options(), view, options));
        return retrieve(view, params);
      });
}

}  // namespace

absl::StatusOr<RetrieveResult> Retriever::Retrieve(
    const MemoryBank& bank, absl::Span<const float> query,
    const RetrieveOptions& options) {
  return RetrieveFromBank(
      bank, options,
      [query, &options](const BankView& view, const RetrievalParams& params)
          -> absl::StatusOr<RetrieveResult> {
        MemoryReservation memory;
        if (options.budget != nullptr) {
          const auto size = static_cast<uint64_t>(view.size());
          const auto dim = static_cast<uint64_t>(view.dim());
          const auto key_dim = static_cast<uint64_t>(view.key_dim());
          HOPFIELD_ASSIGN_OR_RETURN(
              memory, options.budget->Reserve(
                          (6 * size + 2 * dim + 2 * key_dim) * sizeof(float) +
                              ResultBytes(params, size, dim),
                          "retrieval scratch"));
        }
        return Retrieve(view, params, query);
      });
}

absl::StatusOr<std::vector<RetrieveResult>> Retriever::RetrieveBatch(
    const MemoryBank& bank, absl::Span<const float> queries,
    const RetrieveOptions& options) {
  if (options.budget == nullptr) {
    return RetrieveFromBank(
        bank, options,
        [queries](const BankView& view, const RetrievalParams& params) {
          return RetrieveBatch(view, params, queries);
        });
  }
  // Budgeted: the results for every query first, then chunks of queries
  // whose scratch fits what is left, each under its own reader lock.
  const size_t dim = bank.dim();
  if (queries.empty()) {
    return absl::InvalidArgumentError("queries: empty list, expected >= 1");
  }
  const size_t n = (queries.size() + dim - 1) / dim;
  std::vector<RetrieveResult> results;
  MemoryReservation results_memory;
  size_t done = 0;
  while (done < n) {
    const absl::Span<const float> rest = queries.subspan(done * dim);
    absl::Status status = RetrieveFromBank(
        bank, options,
        [&](const BankView& view,
            const RetrievalParams& params) -> absl::Status {
          const ScopedFlushDenormals flush;
          const auto size = static_cast<uint64_t>(view.size());
          const auto parts =
              static_cast<uint64_t>(PartCount(params.threads, view.size()));
          if (done == 0) {
            // Validate every query before any work (all or nothing).
            HOPFIELD_RETURN_IF_ERROR(RetrieveBatchCheck(view, params, queries));
            HOPFIELD_ASSIGN_OR_RETURN(
                results_memory,
                options.budget->Reserve(
                    n * ResultBytes(params, size, dim),
                    absl::StrCat("results of ", n, " queries")));
            results.reserve(n);
          }
          const uint64_t per_query =
              (4 * size + (4 + parts) * dim +
               2 * static_cast<uint64_t>(view.key_dim())) *
                  sizeof(float) +
              64;
          const uint64_t fixed = parts * size * sizeof(float);
          const uint64_t available = options.budget->available();
          const uint64_t fit =
              available > fixed ? (available - fixed) / per_query : 0;
          const size_t chunk = std::min<size_t>(n - done, fit);
          if (chunk == 0) {
            return options.budget->ExhaustedError(
                fixed + per_query,
                absl::StrCat("retrieval scratch for queries[", done, "]"));
          }
          HOPFIELD_ASSIGN_OR_RETURN(
              MemoryReservation scratch,
              options.budget->Reserve(fixed + chunk * per_query,
                                      "retrieval scratch"));
          const Eigen::Map<const MatrixXf> matrix(
              rest.data(), static_cast<Index>(dim), static_cast<Index>(chunk));
          HOPFIELD_ASSIGN_OR_RETURN(std::vector<RetrieveResult> part,
                                    RetrieveMany(view, params, matrix));
          std::move(part.begin(), part.end(), std::back_inserter(results));
          done += chunk;
          return absl::OkStatus();
        });
    HOPFIELD_RETURN_IF_ERROR(status);
  }
  return results;
}

}  // namespace hopfield
