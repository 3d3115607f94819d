#include "core/bank_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "core/capacity.h"
#include "core/retriever.h"
#include "core/status_macros.h"

namespace hopfield {
namespace {

using Eigen::Index;
using Eigen::MatrixXf;
using Eigen::VectorXf;

// Δ_min over all pairs up to this many patterns; above, over kAnchors
// random anchors against every pattern.
constexpr Index kExactSeparationLimit = 8192;
constexpr Index kAnchors = 4096;
constexpr Index kAnchorChunk = 256;
constexpr double kDefaultMask = 0.5;

// A sample in one feature space: its keys (the patterns themselves under
// the identity) and their inverse norms.
struct Space {
  const FeatureMap* map = nullptr;
  MatrixXf keys;  // empty under the identity: the patterns are the keys
  VectorXf inverse_norms;
  double max_key_norm = 0.0;
  double min_separation = 0.0;
  // Over the non-duplicates (what the β rule uses; see capacity.h).
  double rule_separation = 0.0;
};

VectorXf InverseNorms(const MatrixXf& m) {
  VectorXf inverse(m.cols());
  for (Index i = 0; i < m.cols(); ++i) {
    inverse[i] = KeyInverseNorm(m.col(i).cast<double>().norm());
  }
  return inverse;
}

double MaxNorm(const VectorXf& inverse) {
  return MaxNormFromInverse(absl::Span<const float>(
      inverse.data(), static_cast<size_t>(inverse.size())));
}

// Δ_min over the columns of `keys` (see the file comment), in the units of
// the bank's similarity, and (in *distinct) over the non-duplicates, or
// Δ_min when all are. Sets *exact when every pair was scored.
double MinSeparation(const MatrixXf& keys, const VectorXf& inverse, bool cosine,
                     uint64_t seed, bool* exact, double* distinct,
                     const std::function<absl::Status()>& check,
                     absl::Status* status) {
  const Index n = keys.cols();
  std::vector<Index> anchors(static_cast<size_t>(n));
  for (Index i = 0; i < n; ++i) anchors[static_cast<size_t>(i)] = i;
  *exact = n <= kExactSeparationLimit;
  if (!*exact) {
    std::mt19937_64 rng(seed);
    std::shuffle(anchors.begin(), anchors.end(), rng);
    anchors.resize(static_cast<size_t>(kAnchors));
  }
  double min_separation = std::numeric_limits<double>::infinity();
  double min_distinct = std::numeric_limits<double>::infinity();
  MatrixXf chunk_keys;
  MatrixXf scores;
  for (size_t first = 0; first < anchors.size();
       first += static_cast<size_t>(kAnchorChunk)) {
    if (check) {
      *status = check();
      if (!status->ok()) return 0.0;
    }
    const auto count = static_cast<Index>(
        std::min(anchors.size() - first, static_cast<size_t>(kAnchorChunk)));
    chunk_keys.resize(keys.rows(), count);
    for (Index k = 0; k < count; ++k) {
      chunk_keys.col(k) = keys.col(anchors[first + static_cast<size_t>(k)]);
    }
    scores.noalias() = keys.transpose() * chunk_keys;  // n x count
    for (Index k = 0; k < count; ++k) {
      const Index a = anchors[first + static_cast<size_t>(k)];
      double best = -std::numeric_limits<double>::infinity();
      for (Index i = 0; i < n; ++i) {
        if (i == a) continue;
        double s = scores(i, k);
        if (cosine) {
          s *=
              static_cast<double>(inverse[i]) * static_cast<double>(inverse[a]);
        }
        best = std::max(best, s);
      }
      const double self =
          cosine ? 1.0 : keys.col(a).cast<double>().squaredNorm();
      min_separation = std::min(min_separation, self - best);
      if (!IsNearDuplicate(self - best, self)) {
        min_distinct = std::min(min_distinct, self - best);
      }
    }
  }
  *distinct = std::isfinite(min_distinct) ? min_distinct : min_separation;
  return min_separation;
}

// A view of the sample scored in `space`.
BankView SampleView(const MemoryBank::PatternSample& sample,
                    const VectorXf& pattern_inverse, double max_norm,
                    Similarity similarity, const Space& space) {
  BankView view = MakeBankView(sample.patterns.data(), sample.patterns.rows(),
                               sample.patterns.cols(), pattern_inverse.data(),
                               sample.ids, similarity);
  view.max_norm = max_norm;
  view.min_separation = space.rule_separation;
  if (space.map != nullptr && !space.map->is_identity()) {
    new (&view.keys) Eigen::Map<const MatrixXf>(
        space.keys.data(), space.keys.rows(), space.keys.cols());
    new (&view.key_inverse_norms) Eigen::Map<const VectorXf>(
        space.inverse_norms.data(), space.inverse_norms.size());
  }
  view.feature_map = space.map;
  view.max_key_norm = space.max_key_norm;
  return view;
}

struct Validation {
  double accuracy = 0.0;
  double error = 0.0;
};

absl::StatusOr<Validation> Validate(
    const BankView& view, const BankOptions& bank,
    const std::vector<float>& queries, const std::vector<Index>& sources,
    const std::function<absl::Status()>& check) {
  RetrieveOptions options;
  options.check_continue = check;
  HOPFIELD_ASSIGN_OR_RETURN(RetrievalParams params,
                            ResolveRetrieval(bank, view, options));
  HOPFIELD_ASSIGN_OR_RETURN(std::vector<RetrieveResult> results,
                            Retriever::RetrieveBatch(view, params, queries));
  Validation out;
  const Index dim = view.dim();
  for (size_t q = 0; q < results.size(); ++q) {
    const Index source = sources[q];
    if (results[q].nearest_id == view.ids[static_cast<size_t>(source)]) {
      out.accuracy += 1.0;
    }
    const Eigen::Map<const VectorXf> got(results[q].pattern.data(), dim);
    out.error += (got - view.patterns.col(source)).cast<double>().squaredNorm();
  }
  out.accuracy /= static_cast<double>(results.size());
  out.error /= static_cast<double>(results.size());
  return out;
}

}  // namespace

bool GateAccepts(const TrainReport& report) {
  // An improvement: lower retrieval error; or, when both maps retrieve
  // equally well (e.g. both exactly), no lower accuracy and a larger Δ_min.
  const double error_tolerance = 1e-9 * (1.0 + report.validation_error_before);
  const bool lower_error = report.validation_error_after <
                           report.validation_error_before - error_tolerance;
  const bool tie_but_better_separated =
      report.validation_error_after <=
          report.validation_error_before + error_tolerance &&
      report.validation_accuracy_after >= report.validation_accuracy_before &&
      report.min_separation_after > report.min_separation_before;
  return lower_error || tie_but_better_separated;
}

absl::Status AlreadyTrainingError(const MemoryBank& bank) {
  return absl::FailedPreconditionError(
      absl::StrCat("bank \"", bank.name(),
                   "\" is already training; wait for that Train to end"));
}

absl::Status BankTrainOptions::Validate() const {
  if (!(validation_mask_fraction >= 0.0f && validation_mask_fraction < 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.validation_mask_fraction must be in [0, 1), got ",
        validation_mask_fraction));
  }
  if (!(validation_noise >= 0.0f && validation_noise <= 10.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainOptions.validation_noise must be in [0, 10], got ",
                     validation_noise));
  }
  if (validation_queries < 1 || validation_queries > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        "validation_queries must be in 1..65536, got ", validation_queries));
  }
  if (max_training_patterns < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_training_patterns must be >= 2, got ", max_training_patterns));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainReport> TrainBank(MemoryBank& bank,
                                      const BankTrainOptions& options,
                                      const TrainHooks& hooks) {
  const auto start = std::chrono::steady_clock::now();
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  const BankOptions& bank_options = bank.options();
  const uint32_t dim = bank_options.dim;
  TrainReport report;
  report.config =
      ResolveTrainConfig(options.config, dim, bank_options.feature_dim);
  HOPFIELD_RETURN_IF_ERROR(report.config.Validate());
  if (!hooks.claimed && !bank.TryStartTraining()) {
    return AlreadyTrainingError(bank);
  }
  struct Finish {
    MemoryBank& bank;
    bool release;
    ~Finish() {
      if (release) bank.FinishTraining();
    }
  } finish{bank, !hooks.claimed};
  const std::function<absl::Status()> check = [&]() -> absl::Status {
    if (bank.closed()) {
      return absl::CancelledError(
          absl::StrCat("bank \"", bank.name(), "\" was deleted"));
    }
    return hooks.check_continue ? hooks.check_continue() : absl::OkStatus();
  };
  const uint64_t size = bank.size();
  if (size < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("bank \"", bank.name(), "\" holds ", size,
                     " patterns; Train needs at least 2"));
  }
  // Working memory, reserved before anything is allocated: the sample, its
  // keys in two spaces, the validation batch and the optimiser.
  const uint64_t n = std::min<uint64_t>(size, options.max_training_patterns);
  const uint64_t key_dim = report.config.feature_dim;
  const uint64_t queries_count =
      std::min<uint64_t>(options.validation_queries, n);
  const uint64_t batch = std::min<uint64_t>(report.config.batch_size, n);
  const uint64_t d = dim;
  const uint64_t bytes =
      sizeof(float) * (n * (d + 2 * (std::max<uint64_t>(key_dim, d) + 2) + 6) +
                       queries_count * (4 * n + 8 * d + 4 * key_dim) +
                       2 * batch * batch + 5 * key_dim * d + 2 * d * batch);
  MemoryReservation reserved;
  if (hooks.budget != nullptr) {
    HOPFIELD_ASSIGN_OR_RETURN(
        reserved, hooks.budget->Reserve(
                      bytes, absl::StrCat("training of bank \"", bank.name(),
                                          "\" (", n, " patterns)")));
  }
  const uint64_t seed = report.config.seed;
  const MemoryBank::PatternSample sample =
      bank.Sample(static_cast<size_t>(n), seed);
  report.training_patterns = static_cast<uint64_t>(sample.patterns.cols());
  HOPFIELD_RETURN_IF_ERROR(check());

  // Learn W.
  HOPFIELD_ASSIGN_OR_RETURN(
      TrainedWeights trained,
      FeatureMapTrainer::Train(sample.patterns, sample.nearest, report.config,
                               hooks.on_step, check));
  report.iterations = trained.iterations;
  report.loss = trained.loss;
  const std::shared_ptr<const FeatureMap> current = bank.feature_map();
  FeatureMapInfo info;
  info.mode = report.config.mode;
  info.iterations = trained.iterations;
  info.learning_rate = report.config.learning_rate;
  info.temperature = report.config.temperature;
  info.batch_size = report.config.batch_size;
  info.seed = seed;
  info.training_patterns = trained.training_patterns;
  info.loss = trained.loss;
  HOPFIELD_ASSIGN_OR_RETURN(
      std::shared_ptr<const FeatureMap> candidate,
      FeatureMap::Create(std::move(trained.center), std::move(trained.weights),
                         current->version() + 1, info));

  // Both spaces over the sample.
  const bool cosine = bank_options.similarity == Similarity::kCosine;
  const VectorXf pattern_inverse = InverseNorms(sample.patterns);
  const double max_norm = MaxNorm(pattern_inverse);
  Space before;
  Space after;
  before.map = current.get();
  after.map = candidate.get();
  absl::Status status;
  for (Space* space : {&before, &after}) {
    const MatrixXf* keys = &sample.patterns;
    const VectorXf* inverse = &pattern_inverse;
    if (!space->map->is_identity()) {
      space->keys.resize(space->map->feature_dim(), sample.patterns.cols());
      space->map->Apply(sample.patterns, space->keys);
      if (!space->keys.allFinite()) {
        return absl::InvalidArgumentError(
            "the trained feature map overflows float32 on the bank's "
            "patterns; scale the patterns down");
      }
      space->inverse_norms = InverseNorms(space->keys);
      keys = &space->keys;
      inverse = &space->inverse_norms;
    }
    space->max_key_norm = MaxNorm(*inverse);
    space->min_separation = MinSeparation(
        *keys, *inverse, cosine, seed, &report.min_separation_exact,
        &space->rule_separation, check, &status);
    HOPFIELD_RETURN_IF_ERROR(status);
  }
  report.min_separation_before = before.min_separation;
  report.min_separation_after = after.min_separation;
  report.min_separation_exact =
      report.min_separation_exact && report.training_patterns == size;

  // Validation queries: corrupted copies of sampled patterns.
  const float mask = options.validation_mask_fraction == 0.0f &&
                             options.validation_noise == 0.0f
                         ? static_cast<float>(kDefaultMask)
                         : options.validation_mask_fraction;
  std::mt19937_64 rng(seed ^ 0x5eed5eedULL);
  std::vector<Index> order(static_cast<size_t>(sample.patterns.cols()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Index>(i);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<Index> coordinates(dim);
  for (uint32_t i = 0; i < dim; ++i) coordinates[i] = static_cast<Index>(i);
  const auto masked = static_cast<size_t>(
      std::lround(static_cast<double>(mask) * static_cast<double>(dim)));
  std::normal_distribution<float> normal;
  std::vector<float> queries;
  std::vector<Index> sources;
  queries.reserve(queries_count * dim);
  for (const Index source : order) {
    if (sources.size() >= queries_count) break;
    VectorXf query = sample.patterns.col(source);
    if (masked > 0) {
      std::shuffle(coordinates.begin(), coordinates.end(), rng);
      for (size_t k = 0; k < masked; ++k) query[coordinates[k]] = 0.0f;
    }
    if (options.validation_noise > 0.0f) {
      const float sigma = options.validation_noise *
                          sample.patterns.col(source).norm() /
                          std::sqrt(static_cast<float>(dim));
      for (uint32_t k = 0; k < dim; ++k) query[k] += sigma * normal(rng);
    }
    if (cosine && query.isZero(0.0f)) continue;  // nothing left to score
    queries.insert(queries.end(), query.data(), query.data() + dim);
    sources.push_back(source);
  }
  report.validation_queries = static_cast<uint32_t>(sources.size());
  if (!sources.empty()) {
    const BankView before_view = SampleView(sample, pattern_inverse, max_norm,
                                            bank_options.similarity, before);
    const BankView after_view = SampleView(sample, pattern_inverse, max_norm,
                                           bank_options.similarity, after);
    HOPFIELD_ASSIGN_OR_RETURN(
        const Validation was,
        Validate(before_view, bank_options, queries, sources, check));
    HOPFIELD_ASSIGN_OR_RETURN(
        const Validation is,
        Validate(after_view, bank_options, queries, sources, check));
    report.validation_accuracy_before = was.accuracy;
    report.validation_accuracy_after = is.accuracy;
    report.validation_error_before = was.error;
    report.validation_error_after = is.error;
  }
  report.accepted =
      options.skip_validation || (!sources.empty() && GateAccepts(report));
  if (report.accepted) {
    HOPFIELD_RETURN_IF_ERROR(check());
    HOPFIELD_RETURN_IF_ERROR(bank.SetFeatureMap(candidate, check));
  }
  report.feature_map_version = bank.feature_map()->version();
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return report;
}

}  // namespace hopfield
