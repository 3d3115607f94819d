// File: feature_map_trainer.h
//
// FeatureMapTrainer: learns the weights W of a feature map Φ(x) = W·(x - c)
// that spreads a set of patterns apart on the unit sphere in feature space
// (Stage I of the kernelized Hopfield model; algorithms.md §B.3-§B.5, §E.2).
//
// Two modes:
//   - kSeparation (the default, U-Hop+ style): c = the patterns' mean, W of
//     D_Φ x d drawn from N(0, 1/d), then Adam on the symmetric separation
//     loss of §B.3(5)
//         L_τ(W) = (1/B) Σ_μ τ · ln Σ_{ν≠μ} exp(cos_μν / τ)
//     over minibatches of B patterns (all of them when there are no more
//     than B): half drawn at random, half their current nearest neighbours
//     (the hard pairs), with the gradient clipped at Frobenius norm 10 and τ
//     optionally annealed geometrically to a final temperature.
//   - kUHopCompat (the authors' U-Hop protocol, §B.4/§D.2, to set results
//     beside theirs): c = 0, W of D_Φ x d (D_Φ = d by default) from N(0, 1),
//     plain SGD with a constant learning rate on the closest-pair loss
//         L(W) = 2t · max_{μ<ν} cos_μν - 2t,   t = 2
//     (its subgradient through the argmax pair), trained on the first half
//     of the patterns (by position: callers pass them sorted by id).
//
// Deterministic: the same patterns, config and seed give the same W (single
// threaded, fixed summation order).
//
//   TrainConfig config;
//   config.feature_dim = 256;
//   HOPFIELD_ASSIGN_OR_RETURN(TrainedWeights trained,
//                             FeatureMapTrainer::Train(patterns, {}, config,
//                                                      progress, check));
//
// Thread-safe: stateless; any number of concurrent calls.
#ifndef HOPFIELD_CORE_FEATURE_MAP_TRAINER_H_
#define HOPFIELD_CORE_FEATURE_MAP_TRAINER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "Eigen/Core"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "core/feature_map.h"

namespace hopfield {

// Settings of one training run. Fields that are 0 stand for the mode's
// default until ResolveTrainConfig fills them; Validate() and Train() need
// them resolved. A plain value type.
struct TrainConfig {
  TrainMode mode = TrainMode::kSeparation;
  // D_Φ. REQUIRES: 1 <= feature_dim <= 65536.
  uint32_t feature_dim = 0;
  // Optimiser steps (kUHopCompat: epochs, one full pass each).
  // REQUIRES: 1 <= iterations <= 100000.
  uint32_t iterations = 0;
  // REQUIRES: 0 < learning_rate <= 1000.
  float learning_rate = 0.0f;
  // τ of the separation loss (unused by kUHopCompat).
  // REQUIRES: 1e-3 <= temperature <= 10.
  float temperature = 0.0f;
  // Anneal τ geometrically from `temperature` to this over the run; 0 keeps
  // τ constant. REQUIRES: 0 or 1e-3 <= final_temperature <= temperature.
  float final_temperature = 0.0f;
  // Patterns per minibatch. REQUIRES: 2 <= batch_size <= 16384.
  uint32_t batch_size = 0;
  uint64_t seed = 0;
  // Adam: gradients are clipped to this Frobenius norm (kSeparation only).
  float gradient_clip = 10.0f;

  // INVALID_ARGUMENT naming the field (as TrainOptions.<field>), the allowed
  // range and the value.
  absl::Status Validate() const;
};

// Requested settings, 0 meaning "the default": fills the mode's defaults
// (kSeparation: 300 iterations, lr 0.01, τ 0.1, batch 1024; kUHopCompat:
// 1000 epochs, lr 10, batch 1024, D_Φ = dim) and D_Φ from the bank
// (`bank_feature_dim`, already resolved) when 0.
TrainConfig ResolveTrainConfig(const TrainConfig& requested, uint32_t dim,
                               uint32_t bank_feature_dim);

// Reported after each step.
struct TrainStep {
  uint32_t iteration = 0;  // 1-based
  uint32_t total_iterations = 0;
  double loss = 0.0;
  // 1 - max cos over the pairs of the step's minibatch (an upper bound on
  // the bank's Δ_min in feature space).
  double min_separation = 0.0;
};

struct TrainedWeights {
  Eigen::VectorXf center;   // d
  Eigen::MatrixXf weights;  // D_Φ x d
  double loss = 0.0;        // of the last step
  uint32_t iterations = 0;
  uint64_t training_patterns = 0;
};

class FeatureMapTrainer {
 public:
  // Trains on the columns of `patterns` (d x M, M >= 2). `nearest[i]`, when
  // not empty, is the column of pattern i's nearest neighbour or -1 (hard
  // pairs for the minibatches). `on_step` (may be empty) is called after
  // every step; a non-OK status it or `check_continue` (polled every step)
  // returns stops the run and is returned.
  // Errors: INVALID_ARGUMENT from config.Validate() or when M < 2 or
  // nearest has the wrong size; what the callbacks return.
  static absl::StatusOr<TrainedWeights> Train(
      const Eigen::Ref<const Eigen::MatrixXf>& patterns,
      const std::vector<Eigen::Index>& nearest, const TrainConfig& config,
      const std::function<absl::Status(const TrainStep&)>& on_step,
      const std::function<absl::Status()>& check_continue);
};

// The losses and their gradients with respect to W, on the columns of
// `centred` (d x B, already centred), for any Scalar (double for gradient
// checks). `min_separation` (may be null) receives 1 - max off-diagonal
// cosine. A feature vector of norm below 1e-12 is treated as having norm
// 1e-12.
template <typename Scalar>
double SeparationLoss(
    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& weights,
    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& centred,
    double temperature,
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>* gradient,
    double* min_separation);

template <typename Scalar>
double ClosestPairLoss(
    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& weights,
    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& centred,
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>* gradient,
    double* min_separation);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_FEATURE_MAP_TRAINER_H_
