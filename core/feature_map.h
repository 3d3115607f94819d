// File: feature_map.h
//
// FeatureMap: the kernel feature map Φ(x) = W·(x - c) of the kernelized
// Hopfield model (U-Hop / U-Hop+, algorithms.md §B.1), with W of D_Φ x d and
// a centring vector c of d entries. A bank scores in feature space (cosine or
// dot between Φ(ξ_μ) and Φ(x), per the bank's similarity) and returns outputs
// in pattern space. Version 0 is the identity map (Φ(x) = x, no W stored),
// which every bank starts with; Train publishes learned maps with increasing
// versions.
//
//   std::shared_ptr<const FeatureMap> map = FeatureMap::Identity(784);
//   HOPFIELD_ASSIGN_OR_RETURN(map, FeatureMap::Create(center, weights, 1,
//   info)); Eigen::MatrixXf features(map->feature_dim(), n);
//   map->Apply(patterns, features);
//
// Immutable after construction, so a shared_ptr<const FeatureMap> is a
// snapshot any number of threads may read without locking.
#ifndef HOPFIELD_CORE_FEATURE_MAP_H_
#define HOPFIELD_CORE_FEATURE_MAP_H_

#include <cstdint>
#include <memory>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hopfield {

// How a feature map was learned (TrainOptions.mode).
enum class TrainMode {
  // The recommended symmetric separation loss (§B.3(5)) with Adam.
  kSeparation,
  // The authors' U-Hop protocol (§B.4, §D.2): W d x d from N(0, 1), no
  // centring, closest-pair loss, plain SGD, trained on the first half of the
  // patterns.
  kUHopCompat,
};

absl::string_view TrainModeName(TrainMode mode);

// What produced a learned map (reported by GetBank, persisted with the map).
struct FeatureMapInfo {
  TrainMode mode = TrainMode::kSeparation;
  uint32_t iterations = 0;
  float learning_rate = 0.0f;
  float temperature = 0.0f;
  uint32_t batch_size = 0;
  uint64_t seed = 0;
  // Patterns the map was trained on.
  uint64_t training_patterns = 0;
  // Final training loss.
  double loss = 0.0;
};

class FeatureMap {
 public:
  // The identity map of dimension `dim` (version 0). REQUIRES: dim >= 1.
  static std::shared_ptr<const FeatureMap> Identity(uint32_t dim);

  // A learned map: Φ(x) = weights·(x - center). `version` >= 1.
  // Errors: INVALID_ARGUMENT when weights has no rows or columns, center
  // does not have weights.cols() entries, any entry is not finite, or
  // version is 0.
  static absl::StatusOr<std::shared_ptr<const FeatureMap>> Create(
      Eigen::VectorXf center, Eigen::MatrixXf weights, uint32_t version,
      FeatureMapInfo info);

  // True for version 0 (Φ(x) = x): banks then score the patterns themselves.
  bool is_identity() const { return version_ == 0; }
  uint32_t version() const { return version_; }
  // d, the pattern dimension.
  uint32_t input_dim() const { return input_dim_; }
  // D_Φ (d for the identity).
  uint32_t feature_dim() const { return feature_dim_; }
  // Empty for the identity.
  const Eigen::VectorXf& center() const { return center_; }
  const Eigen::MatrixXf& weights() const { return weights_; }
  const FeatureMapInfo& info() const { return info_; }

  // out = Φ(x) column by column: x is d x n, out D_Φ x n (resized by the
  // caller; Eigen::Ref cannot resize). Allocates nothing for the identity;
  // a learned map computes W·x - (W·c) with one matrix product.
  // REQUIRES: x.rows() == input_dim(), out has feature_dim() x x.cols().
  void Apply(const Eigen::Ref<const Eigen::MatrixXf>& x,
             Eigen::Ref<Eigen::MatrixXf> out) const;

  // Bytes the map holds (W and c).
  uint64_t memory_bytes() const;

 private:
  FeatureMap(uint32_t input_dim, uint32_t feature_dim, uint32_t version,
             Eigen::VectorXf center, Eigen::MatrixXf weights,
             FeatureMapInfo info);

  const uint32_t input_dim_;
  const uint32_t feature_dim_;
  const uint32_t version_;
  const Eigen::VectorXf center_;
  const Eigen::MatrixXf weights_;
  // W·c, subtracted after the product.
  const Eigen::VectorXf offset_;
  const FeatureMapInfo info_;
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_FEATURE_MAP_H_
