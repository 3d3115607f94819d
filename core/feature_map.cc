#include "core/feature_map.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hopfield {

absl::string_view TrainModeName(TrainMode mode) {
  switch (mode) {
    case TrainMode::kSeparation:
      return "separation";
    case TrainMode::kUHopCompat:
      return "uhop_compat";
  }
  return "unknown";
}

std::shared_ptr<const FeatureMap> FeatureMap::Identity(uint32_t dim) {
  return std::shared_ptr<const FeatureMap>(new FeatureMap(
      dim, dim, 0, Eigen::VectorXf(), Eigen::MatrixXf(), FeatureMapInfo{}));
}

absl::StatusOr<std::shared_ptr<const FeatureMap>> FeatureMap::Create(
    Eigen::VectorXf center, Eigen::MatrixXf weights, uint32_t version,
    FeatureMapInfo info) {
  if (weights.rows() == 0 || weights.cols() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature map weights must be non-empty, got ",
                     weights.rows(), " x ", weights.cols()));
  }
  if (center.size() != weights.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature map centre must have ", weights.cols(),
                     " entries (the input dimension), got ", center.size()));
  }
  if (!weights.allFinite() || !center.allFinite()) {
    return absl::InvalidArgumentError(
        "feature map weights and centre must be finite");
  }
  if (version == 0) {
    return absl::InvalidArgumentError(
        "a learned feature map needs version >= 1 (0 is the identity)");
  }
  const auto input_dim = static_cast<uint32_t>(weights.cols());
  const auto feature_dim = static_cast<uint32_t>(weights.rows());
  return std::shared_ptr<const FeatureMap>(
      new FeatureMap(input_dim, feature_dim, version, std::move(center),
                     std::move(weights), info));
}

FeatureMap::FeatureMap(uint32_t input_dim, uint32_t feature_dim,
                       uint32_t version, Eigen::VectorXf center,
                       Eigen::MatrixXf weights, FeatureMapInfo info)
    : input_dim_(input_dim),
      feature_dim_(feature_dim),
      version_(version),
      center_(std::move(center)),
      weights_(std::move(weights)),
      offset_(weights_.size() > 0 ? Eigen::VectorXf(weights_ * center_)
                                  : Eigen::VectorXf()),
      info_(info) {}

void FeatureMap::Apply(const Eigen::Ref<const Eigen::MatrixXf>& x,
                       Eigen::Ref<Eigen::MatrixXf> out) const {
  if (is_identity()) {
    out = x;
    return;
  }
  out.noalias() = weights_ * x;
  out.colwise() -= offset_;
}

uint64_t FeatureMap::memory_bytes() const {
  return static_cast<uint64_t>(weights_.size() + center_.size() +
                               offset_.size()) *
         sizeof(float);
}

}  // namespace hopfield
