#include "core/bank_options.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

#include "core/ann_index.h"
#include "core/status_macros.h"

namespace hopfield {

absl::string_view SimilarityName(Similarity similarity) {
  switch (similarity) {
    case Similarity::kCosine:
      return "cosine";
    case Similarity::kDot:
      return "dot";
  }
  return "unknown";
}

absl::string_view SeparationName(Separation separation) {
  switch (separation) {
    case Separation::kSoftmax:
      return "softmax";
    case Separation::kSoftmax1:
      return "softmax1";
    case Separation::kSparsemax:
      return "sparsemax";
    case Separation::kEntmax:
      return "entmax";
  }
  return "unknown";
}

absl::string_view SearchModeName(SearchMode search) {
  switch (search) {
    case SearchMode::kAuto:
      return "auto";
    case SearchMode::kExact:
      return "exact";
    case SearchMode::kApproximate:
      return "approximate";
  }
  return "unknown";
}

absl::Status BankOptions::Validate() const {
  if (dim < 1 || dim > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("dim must be in 1..", kMaxDim, ", got ", dim));
  }
  if (!(entmax_alpha > 1.0f && entmax_alpha <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("entmax_alpha must be in (1, 2], got ", entmax_alpha));
  }
  if (!(beta == 0.0f || (beta >= kMinBeta && beta <= kMaxBeta))) {
    return absl::InvalidArgumentError(
        absl::StrCat("beta must be 0 (automatic) or in [", kMinBeta, ", ",
                     kMaxBeta, "], got ", beta));
  }
  if (max_iterations < 1 || max_iterations > kMaxIterationsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_iterations must be in 1..", kMaxIterationsLimit,
                     ", got ", max_iterations));
  }
  if (!(tolerance >= 0.0f && tolerance < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tolerance must be in [0, 1), got ", tolerance));
  }
  if (top_k < 1 || top_k > kMaxTopK) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be in 1..", kMaxTopK, ", got ", top_k));
  }
  AnnIndexOptions index;
  index.m = index_m;
  index.ef_construction = index_ef_construction;
  index.ef_search = index_ef_search;
  HOPFIELD_RETURN_IF_ERROR(index.Validate());
  if (feature_dim > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature_dim must be 0 (default) or in 1..", kMaxDim,
                     ", got ", feature_dim));
  }
  return absl::OkStatus();
}

BankOptions BankOptions::Resolved() const {
  BankOptions resolved = *this;
  if (resolved.feature_dim == 0) resolved.feature_dim = std::min(dim, 256u);
  return resolved;
}

absl::Status ValidateBankName(absl::string_view name) {
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  if (name.empty() || name.size() > kMaxBankNameLength || !valid_chars) {
    return absl::InvalidArgumentError(
        absl::StrCat("bank name must be 1..", kMaxBankNameLength,
                     " characters of [a-z0-9_-], got \"",
                     absl::CHexEscape(name.substr(0, 2 * kMaxBankNameLength)),
                     "\" (", name.size(), " characters)"));
  }
  return absl::OkStatus();
}

}  // namespace hopfield
