#include "core/feature_map_trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield {
namespace {

template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
using Eigen::Index;

constexpr double kMinFeatureNorm = 1e-12;
// U-Hop's uniformity temperature t in -t·||a - b||² = 2t·cos - 2t.
constexpr double kUHopT = 2.0;

// Unit feature vectors U (D x B) of F = W·X and the norms of F's columns.
template <typename Scalar>
void UnitFeatures(const Matrix<Scalar>& weights, const Matrix<Scalar>& centred,
                  Matrix<Scalar>* unit, Vector<Scalar>* norms) {
  unit->noalias() = weights * centred;
  *norms = unit->colwise().norm().transpose();
  for (Index i = 0; i < norms->size(); ++i) {
    (*norms)[i] = std::max((*norms)[i], static_cast<Scalar>(kMinFeatureNorm));
    unit->col(i) /= (*norms)[i];
  }
}

// ∂L/∂W from ∂L/∂U (the gradient with respect to the unit vectors): back
// through the normalisation, g_f = (I - u uᵀ) g_u / ||f||, then G_f Xᵀ.
template <typename Scalar>
void BackToWeights(const Matrix<Scalar>& unit, const Vector<Scalar>& norms,
                   const Matrix<Scalar>& centred, Matrix<Scalar>* unit_grad,
                   Matrix<Scalar>* gradient) {
  for (Index i = 0; i < unit.cols(); ++i) {
    const Scalar along = unit.col(i).dot(unit_grad->col(i));
    unit_grad->col(i) = (unit_grad->col(i) - along * unit.col(i)) / norms[i];
  }
  gradient->noalias() = *unit_grad * centred.transpose();
}

}  // namespace

template <typename Scalar>
double SeparationLoss(const Matrix<Scalar>& weights,
                      const Matrix<Scalar>& centred, double temperature,
                      Matrix<Scalar>* gradient, double* min_separation) {
  const Index b = centred.cols();
  Matrix<Scalar> unit;
  Vector<Scalar> norms;
  UnitFeatures(weights, centred, &unit, &norms);
  Matrix<Scalar> cosines = unit.transpose() * unit;  // B x B
  // Row μ: softmax over ν ≠ μ of cos_μν / τ, and τ·logsumexp of the same.
  double loss = 0.0;
  double max_cos = -std::numeric_limits<double>::infinity();
  const Scalar inverse_tau = static_cast<Scalar>(1.0 / temperature);
  Matrix<Scalar>& w = cosines;  // overwritten row by row with the weights
  for (Index mu = 0; mu < b; ++mu) {
    Scalar row_max = -std::numeric_limits<Scalar>::infinity();
    for (Index nu = 0; nu < b; ++nu) {
      if (nu != mu) row_max = std::max(row_max, w(nu, mu));
    }
    max_cos = std::max(max_cos, static_cast<double>(row_max));
    double sum = 0.0;
    for (Index nu = 0; nu < b; ++nu) {
      if (nu == mu) continue;
      const Scalar e = std::exp((w(nu, mu) - row_max) * inverse_tau);
      w(nu, mu) = e;
      sum += static_cast<double>(e);
    }
    w(mu, mu) = 0;
    loss += static_cast<double>(row_max) + temperature * std::log(sum);
    w.col(mu) *= static_cast<Scalar>(1.0 / sum);  // column μ holds w_μ·
  }
  loss /= static_cast<double>(b);
  if (min_separation != nullptr) *min_separation = 1.0 - max_cos;
  if (gradient != nullptr) {
    // C = (w + wᵀ)/B, g_u = U C (C symmetric).
    const Matrix<Scalar> c =
        (w + w.transpose()) * static_cast<Scalar>(1.0 / static_cast<double>(b));
    Matrix<Scalar> unit_grad = unit * c;
    BackToWeights(unit, norms, centred, &unit_grad, gradient);
  }
  return loss;
}

template <typename Scalar>
double ClosestPairLoss(const Matrix<Scalar>& weights,
                       const Matrix<Scalar>& centred, Matrix<Scalar>* gradient,
                       double* min_separation) {
  const Index b = centred.cols();
  Matrix<Scalar> unit;
  Vector<Scalar> norms;
  UnitFeatures(weights, centred, &unit, &norms);
  const Matrix<Scalar> cosines = unit.transpose() * unit;
  Index best_a = 0;
  Index best_b = 1;
  for (Index nu = 0; nu < b; ++nu) {
    for (Index mu = 0; mu < nu; ++mu) {
      if (cosines(mu, nu) > cosines(best_a, best_b)) {
        best_a = mu;
        best_b = nu;
      }
    }
  }
  const double max_cos = static_cast<double>(cosines(best_a, best_b));
  if (min_separation != nullptr) *min_separation = 1.0 - max_cos;
  if (gradient != nullptr) {
    Matrix<Scalar> unit_grad = Matrix<Scalar>::Zero(unit.rows(), b);
    const auto scale = static_cast<Scalar>(2.0 * kUHopT);
    unit_grad.col(best_a) = scale * unit.col(best_b);
    unit_grad.col(best_b) = scale * unit.col(best_a);
    BackToWeights(unit, norms, centred, &unit_grad, gradient);
  }
  return 2.0 * kUHopT * max_cos - 2.0 * kUHopT;
}

template double SeparationLoss<float>(const Matrix<float>&,
                                      const Matrix<float>&, double,
                                      Matrix<float>*, double*);
template double SeparationLoss<double>(const Matrix<double>&,
                                       const Matrix<double>&, double,
                                       Matrix<double>*, double*);
template double ClosestPairLoss<float>(const Matrix<float>&,
                                       const Matrix<float>&, Matrix<float>*,
                                       double*);
template double ClosestPairLoss<double>(const Matrix<double>&,
                                        const Matrix<double>&, Matrix<double>*,
                                        double*);

absl::Status TrainConfig::Validate() const {
  if (feature_dim < 1 || feature_dim > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.feature_dim must be in 1..65536, got ", feature_dim));
  }
  if (iterations < 1 || iterations > 100000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.iterations must be in 1..100000, got ", iterations));
  }
  if (!(learning_rate > 0.0f && learning_rate <= 1000.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainOptions.learning_rate must be in (0, 1000], got ",
                     learning_rate));
  }
  if (!(temperature >= 1e-3f && temperature <= 10.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.temperature must be in [0.001, 10], got ", temperature));
  }
  if (!(final_temperature == 0.0f ||
        (final_temperature >= 1e-3f && final_temperature <= temperature))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.final_temperature must be 0 (no annealing) or in "
        "[0.001, temperature = ",
        temperature, "], got ", final_temperature));
  }
  if (batch_size < 2 || batch_size > 16384) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TrainOptions.batch_size must be in 2..16384, got ", batch_size));
  }
  if (!(gradient_clip > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient_clip must be positive, got ", gradient_clip));
  }
  return absl::OkStatus();
}

TrainConfig ResolveTrainConfig(const TrainConfig& requested, uint32_t dim,
                               uint32_t bank_feature_dim) {
  TrainConfig config = requested;
  const bool compat = config.mode == TrainMode::kUHopCompat;
  if (config.feature_dim == 0)
    config.feature_dim = compat ? dim : bank_feature_dim;
  if (config.iterations == 0) config.iterations = compat ? 1000 : 300;
  if (config.learning_rate == 0.0f)
    config.learning_rate = compat ? 10.0f : 0.01f;
  if (config.temperature == 0.0f) config.temperature = 0.1f;
  if (config.batch_size == 0) config.batch_size = 1024;
  return config;
}

absl::StatusOr<TrainedWeights> FeatureMapTrainer::Train(
    const Eigen::Ref<const Eigen::MatrixXf>& patterns,
    const std::vector<Index>& nearest, const TrainConfig& config,
    const std::function<absl::Status(const TrainStep&)>& on_step,
    const std::function<absl::Status()>& check_continue) {
  HOPFIELD_RETURN_IF_ERROR(config.Validate());
  const bool compat = config.mode == TrainMode::kUHopCompat;
  const Index dim = patterns.rows();
  // U-Hop trains on the first half of the memories.
  const Index count = compat ? (patterns.cols() + 1) / 2 : patterns.cols();
  if (count < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training needs at least two patterns, got ", count,
        compat ? " (the first half of the bank, in the U-Hop protocol)" : ""));
  }
  if (!nearest.empty() &&
      static_cast<Index>(nearest.size()) != patterns.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("nearest: expected ", patterns.cols(), " entries, got ",
                     nearest.size()));
  }
  std::mt19937_64 rng(config.seed);
  TrainedWeights out;
  out.training_patterns = static_cast<uint64_t>(count);
  const Index feature_dim = config.feature_dim;
  if (compat) {
    out.center = Eigen::VectorXf::Zero(dim);
  } else {
    out.center = patterns.rowwise().mean();
  }
  // Initial W: N(0, 1) (U-Hop) or N(0, 1/d) (measured in algorithms.md D6).
  std::normal_distribution<float> normal(
      0.0f, compat ? 1.0f : 1.0f / std::sqrt(static_cast<float>(dim)));
  Eigen::MatrixXf& w = out.weights;
  w.resize(feature_dim, dim);
  for (Index j = 0; j < dim; ++j) {
    for (Index i = 0; i < feature_dim; ++i) w(i, j) = normal(rng);
  }
  const Index batch = std::min<Index>(config.batch_size, count);
  const bool full_batch = batch == count;
  Eigen::MatrixXf centred(dim, batch);
  if (full_batch) {
    centred = patterns.leftCols(count).colwise() - out.center;
  }
  // Adam state.
  Eigen::MatrixXf m1 = Eigen::MatrixXf::Zero(feature_dim, dim);
  Eigen::MatrixXf m2 = Eigen::MatrixXf::Zero(feature_dim, dim);
  constexpr double kBeta1 = 0.9;
  constexpr double kBeta2 = 0.999;
  constexpr float kAdamEpsilon = 1e-8f;
  double beta1_power = 1.0;
  double beta2_power = 1.0;
  Eigen::MatrixXf gradient;
  std::vector<Index> chosen;
  std::vector<char> taken(static_cast<size_t>(count), 0);
  std::uniform_int_distribution<Index> pick(0, count - 1);
  const double anneal =
      config.final_temperature > 0.0f && config.iterations > 1
          ? std::log(static_cast<double>(config.final_temperature) /
                     static_cast<double>(config.temperature)) /
                static_cast<double>(config.iterations - 1)
          : 0.0;
  for (uint32_t it = 0; it < config.iterations; ++it) {
    if (check_continue) HOPFIELD_RETURN_IF_ERROR(check_continue());
    if (!full_batch) {
      // Half random anchors, half their nearest neighbours (hard pairs),
      // topped up at random; no pattern twice.
      chosen.clear();
      auto add = [&](Index i) {
        if (i < 0 || i >= count || taken[static_cast<size_t>(i)] != 0) return;
        taken[static_cast<size_t>(i)] = 1;
        chosen.push_back(i);
      };
      while (static_cast<Index>(chosen.size()) < batch / 2) add(pick(rng));
      const size_t anchors = chosen.size();
      if (!nearest.empty()) {
        for (size_t k = 0; k < anchors; ++k) {
          if (static_cast<Index>(chosen.size()) >= batch) break;
          add(nearest[static_cast<size_t>(chosen[k])]);
        }
      }
      while (static_cast<Index>(chosen.size()) < batch) add(pick(rng));
      for (Index k = 0; k < batch; ++k) {
        const Index i = chosen[static_cast<size_t>(k)];
        centred.col(k) = patterns.col(i) - out.center;
        taken[static_cast<size_t>(i)] = 0;
      }
    }
    double min_separation = 0.0;
    double loss = 0.0;
    if (compat) {
      loss = ClosestPairLoss<float>(w, centred, &gradient, &min_separation);
      w -= config.learning_rate * gradient;
    } else {
      const double tau = static_cast<double>(config.temperature) *
                         std::exp(anneal * static_cast<double>(it));
      loss = SeparationLoss<float>(w, centred, tau, &gradient, &min_separation);
      const float norm = gradient.norm();
      if (norm > config.gradient_clip) gradient *= config.gradient_clip / norm;
      beta1_power *= kBeta1;
      beta2_power *= kBeta2;
      m1 = static_cast<float>(kBeta1) * m1 +
           static_cast<float>(1.0 - kBeta1) * gradient;
      m2 = static_cast<float>(kBeta2) * m2 +
           static_cast<float>(1.0 - kBeta2) * gradient.cwiseAbs2();
      const auto step = static_cast<float>(
          static_cast<double>(config.learning_rate) / (1.0 - beta1_power));
      const auto correction = static_cast<float>(1.0 / (1.0 - beta2_power));
      w.array() -=
          step * m1.array() / ((m2.array() * correction).sqrt() + kAdamEpsilon);
    }
    if (!w.allFinite()) {
      return absl::InvalidArgumentError(
          absl::StrCat("training diverged at iteration ", it + 1,
                       " (weights not finite); use a smaller learning_rate"));
    }
    out.loss = loss;
    out.iterations = it + 1;
    if (on_step) {
      HOPFIELD_RETURN_IF_ERROR(
          on_step(TrainStep{it + 1, config.iterations, loss, min_separation}));
    }
  }
  return out;
}

}  // namespace hopfield
