#include "server/proto_conversion.h"

#include <string>

#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield::server {
namespace {

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": unknown value ", value));
}

absl::StatusOr<Similarity> SimilarityFromProto(v1::Similarity similarity) {
  switch (similarity) {
    case v1::SIMILARITY_UNSPECIFIED:
    case v1::SIMILARITY_COSINE:
      return Similarity::kCosine;
    case v1::SIMILARITY_DOT:
      return Similarity::kDot;
    default:
      return UnknownEnum("config.similarity", similarity);
  }
}

v1::Similarity SimilarityToProto(Similarity similarity) {
  return similarity == Similarity::kDot ? v1::SIMILARITY_DOT
                                        : v1::SIMILARITY_COSINE;
}

// UNSPECIFIED maps to nullopt (the caller's default).
absl::StatusOr<std::optional<Separation>> SeparationFromProto(
    v1::Separation separation, absl::string_view field) {
  switch (separation) {
    case v1::SEPARATION_UNSPECIFIED:
      return std::optional<Separation>();
    case v1::SEPARATION_SOFTMAX:
      return Separation::kSoftmax;
    case v1::SEPARATION_SOFTMAX1:
      return Separation::kSoftmax1;
    case v1::SEPARATION_SPARSEMAX:
      return Separation::kSparsemax;
    case v1::SEPARATION_ENTMAX:
      return Separation::kEntmax;
    default:
      return UnknownEnum(field, separation);
  }
}

v1::TrainMode TrainModeToProto(TrainMode mode) {
  switch (mode) {
    case TrainMode::kSeparation:
      return v1::TRAIN_MODE_SEPARATION;
    case TrainMode::kUHopCompat:
      return v1::TRAIN_MODE_UHOP_COMPAT;
  }
  return v1::TRAIN_MODE_UNSPECIFIED;
}

v1::Separation SeparationToProto(Separation separation) {
  switch (separation) {
    case Separation::kSoftmax:
      return v1::SEPARATION_SOFTMAX;
    case Separation::kSoftmax1:
      return v1::SEPARATION_SOFTMAX1;
    case Separation::kSparsemax:
      return v1::SEPARATION_SPARSEMAX;
    case Separation::kEntmax:
      return v1::SEPARATION_ENTMAX;
  }
  return v1::SEPARATION_UNSPECIFIED;
}

absl::StatusOr<std::optional<SearchMode>> SearchModeFromProto(
    v1::SearchMode search, absl::string_view field) {
  switch (search) {
    case v1::SEARCH_MODE_UNSPECIFIED:
      return std::optional<SearchMode>();
    case v1::SEARCH_MODE_EXACT:
      return SearchMode::kExact;
    case v1::SEARCH_MODE_APPROXIMATE:
      return SearchMode::kApproximate;
    default:
      return UnknownEnum(field, search);
  }
}

v1::SearchMode SearchModeToProto(SearchMode search) {
  switch (search) {
    case SearchMode::kAuto:
      return v1::SEARCH_MODE_UNSPECIFIED;
    case SearchMode::kExact:
      return v1::SEARCH_MODE_EXACT;
    case SearchMode::kApproximate:
      return v1::SEARCH_MODE_APPROXIMATE;
  }
  return v1::SEARCH_MODE_UNSPECIFIED;
}

}  // namespace

absl::StatusOr<BankOptions> BankOptionsFromProto(const v1::BankConfig& config) {
  BankOptions options;  // defaults
  options.dim = config.dim();
  HOPFIELD_ASSIGN_OR_RETURN(options.similarity,
                            SimilarityFromProto(config.similarity()));
  HOPFIELD_ASSIGN_OR_RETURN(
      const std::optional<Separation> separation,
      SeparationFromProto(config.separation(), "config.separation"));
  options.separation = separation.value_or(Separation::kSoftmax);
  HOPFIELD_ASSIGN_OR_RETURN(
      const std::optional<SearchMode> search,
      SearchModeFromProto(config.search(), "config.search"));
  options.search = search.value_or(SearchMode::kAuto);
  if (config.entmax_alpha() != 0.0f)
    options.entmax_alpha = config.entmax_alpha();
  options.beta = config.beta();
  if (config.max_iterations() != 0) {
    options.max_iterations = config.max_iterations();
  }
  if (config.tolerance() != 0.0f) options.tolerance = config.tolerance();
  if (config.top_k() != 0) options.top_k = config.top_k();
  options.feature_dim = config.feature_dim();
  if (config.index_m() != 0) options.index_m = config.index_m();
  if (config.index_ef_construction() != 0) {
    options.index_ef_construction = config.index_ef_construction();
  }
  if (config.index_ef_search() != 0) {
    options.index_ef_search = config.index_ef_search();
  }
  return options;
}

void BankOptionsToProto(const BankOptions& options, v1::BankConfig* config) {
  config->set_dim(options.dim);
  config->set_similarity(SimilarityToProto(options.similarity));
  config->set_separation(SeparationToProto(options.separation));
  config->set_entmax_alpha(options.entmax_alpha);
  config->set_beta(options.beta);
  config->set_max_iterations(options.max_iterations);
  config->set_tolerance(options.tolerance);
  config->set_search(SearchModeToProto(options.search));
  config->set_top_k(options.top_k);
  config->set_feature_dim(options.feature_dim);
  config->set_index_m(options.index_m);
  config->set_index_ef_construction(options.index_ef_construction);
  config->set_index_ef_search(options.index_ef_search);
}

void BankToProto(const MemoryBank& bank, v1::Bank* out) {
  const BankStats stats = bank.Stats();
  out->set_name(bank.name());
  BankOptionsToProto(bank.options(), out->mutable_config());
  out->set_pattern_count(stats.pattern_count);
  out->set_memory_bytes(stats.memory_bytes);
  out->set_duplicate_count(stats.duplicate_count);
  out->set_min_separation_distinct(
      static_cast<float>(stats.min_distinct_separation.value_or(
          stats.min_separation.value_or(0.0))));
  out->set_separation_p01(
      static_cast<float>(stats.separation_p01.value_or(0.0)));
  out->set_feature_map_version(stats.feature_map_version);
  out->set_feature_dim(stats.feature_dim);
  const std::shared_ptr<const FeatureMap> map = bank.feature_map();
  if (!map->is_identity()) {
    const FeatureMapInfo& info = map->info();
    v1::FeatureMapInfo* proto = out->mutable_feature_map();
    proto->set_mode(TrainModeToProto(info.mode));
    proto->set_iterations(info.iterations);
    proto->set_learning_rate(info.learning_rate);
    proto->set_temperature(info.temperature);
    proto->set_batch_size(info.batch_size);
    proto->set_seed(info.seed);
    proto->set_training_patterns(info.training_patterns);
    proto->set_loss(info.loss);
  }
  out->set_min_separation(
      static_cast<float>(stats.min_separation.value_or(0.0)));
  out->set_capacity_utilization(static_cast<float>(stats.capacity_utilization));
  out->set_effective_beta(static_cast<float>(stats.effective_beta));
  out->set_separation_pending(stats.separation_pending);
  out->set_separation_estimated(stats.separation_estimated);
  out->set_index_size(stats.index_size);
  out->set_index_pending(stats.index_pending);
  out->set_index_current(stats.index_current);
}

absl::StatusOr<BankTrainOptions> TrainOptionsFromProto(
    const v1::TrainOptions& options) {
  BankTrainOptions out;
  switch (options.mode()) {
    case v1::TRAIN_MODE_UNSPECIFIED:
    case v1::TRAIN_MODE_SEPARATION:
      out.config.mode = TrainMode::kSeparation;
      break;
    case v1::TRAIN_MODE_UHOP_COMPAT:
      out.config.mode = TrainMode::kUHopCompat;
      break;
    default:
      return UnknownEnum("options.mode", options.mode());
  }
  out.config.feature_dim = options.feature_dim();
  out.config.iterations = options.iterations();
  out.config.learning_rate = options.learning_rate();
  out.config.temperature = options.temperature();
  out.config.final_temperature = options.final_temperature();
  out.config.batch_size = options.batch_size();
  out.config.seed = options.seed();
  out.validation_mask_fraction = options.validation_mask_fraction();
  out.validation_noise = options.validation_noise();
  out.skip_validation = options.skip_validation();
  if (options.validation_queries() != 0) {
    out.validation_queries = options.validation_queries();
  }
  if (options.max_training_patterns() != 0) {
    out.max_training_patterns = options.max_training_patterns();
  }
  return out;
}

void TrainStepToProto(const TrainStep& step, v1::TrainProgress* out) {
  out->set_iteration(step.iteration);
  out->set_total_iterations(step.total_iterations);
  out->set_loss(step.loss);
  out->set_min_separation(static_cast<float>(step.min_separation));
}

void TrainReportToProto(const TrainReport& report, v1::TrainProgress* out) {
  out->set_iteration(report.iterations);
  out->set_total_iterations(report.config.iterations);
  out->set_loss(report.loss);
  out->set_min_separation(static_cast<float>(report.min_separation_after));
  out->set_done(true);
  v1::TrainResult* result = out->mutable_result();
  result->set_accepted(report.accepted);
  result->set_min_separation_before(
      static_cast<float>(report.min_separation_before));
  result->set_min_separation_after(
      static_cast<float>(report.min_separation_after));
  result->set_validation_accuracy_before(
      static_cast<float>(report.validation_accuracy_before));
  result->set_validation_accuracy_after(
      static_cast<float>(report.validation_accuracy_after));
  result->set_feature_map_version(report.feature_map_version);
  result->set_seconds(report.seconds);
  result->set_validation_error_before(report.validation_error_before);
  result->set_validation_error_after(report.validation_error_after);
  result->set_validation_queries(report.validation_queries);
  result->set_min_separation_exact(report.min_separation_exact);
  result->set_training_patterns(report.training_patterns);
  result->set_iterations(report.iterations);
  result->set_loss(report.loss);
}

absl::StatusOr<RetrieveOptions> RetrieveOptionsFromProto(
    const v1::RetrieveOptions& options) {
  RetrieveOptions out;
  out.beta = options.beta();
  out.max_iterations = options.max_iterations();
  HOPFIELD_ASSIGN_OR_RETURN(
      out.separation,
      SeparationFromProto(options.separation(), "options.separation"));
  HOPFIELD_ASSIGN_OR_RETURN(
      out.search, SearchModeFromProto(options.search(), "options.search"));
  out.top_k = options.top_k();
  out.return_matches = options.return_matches();
  out.omit_pattern = options.omit_pattern();
  out.return_energy_trace = options.return_energy_trace();
  return out;
}

void RetrieveResultToProto(const RetrieveResult& result, v1::Retrieval* out) {
  out->mutable_pattern()->Assign(result.pattern.begin(), result.pattern.end());
  out->set_nearest_id(result.nearest_id);
  out->set_nearest_weight(result.nearest_weight);
  out->mutable_matches()->Reserve(static_cast<int>(result.matches.size()));
  for (const Match& match : result.matches) {
    v1::Match* m = out->add_matches();
    m->set_id(match.id);
    m->set_weight(match.weight);
    m->set_score(match.score);
  }
  out->set_iterations(result.iterations);
  out->set_converged(result.converged);
  out->set_energy(result.energy);
  out->mutable_energy_trace()->Assign(result.energy_trace.begin(),
                                      result.energy_trace.end());
  out->set_support_size(result.support_size);
  out->set_metastable(result.metastable);
  out->set_null_mass(result.null_mass);
  out->set_exact(result.exact);
  out->set_truncation_bound(result.truncation_bound);
  out->set_beta(result.beta);
  out->set_approximate(result.approximate);
  out->set_fell_back(result.fell_back);
  out->set_certified_by_separation(result.certified_by_separation);
  out->set_index_queries(result.index_queries);
}

namespace {

// Every item (a Pattern or a Query) must hold `dim` values; `field` names
// the list in errors.
template <typename Item>
absl::Status CheckShapes(const google::protobuf::RepeatedPtrField<Item>& items,
                         uint32_t dim, absl::string_view field) {
  if (items.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": empty list, expected >= 1"));
  }
  for (int i = 0; i < items.size(); ++i) {
    if (static_cast<uint32_t>(items[i].values_size()) != dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "].values: expected ", dim,
          " values (the bank's dim), got ", items[i].values_size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPatternShapes(
    const google::protobuf::RepeatedPtrField<v1::Pattern>& patterns,
    uint32_t dim) {
  return CheckShapes(patterns, dim, "patterns");
}

absl::Status CheckQueryShapes(
    const google::protobuf::RepeatedPtrField<v1::Query>& queries,
    uint32_t dim) {
  return CheckShapes(queries, dim, "queries");
}

absl::Status FlattenPatterns(
    const google::protobuf::RepeatedPtrField<v1::Pattern>& patterns,
    uint32_t dim, std::vector<PatternId>* ids, std::vector<float>* values) {
  HOPFIELD_RETURN_IF_ERROR(CheckPatternShapes(patterns, dim));
  ids->clear();
  values->clear();
  ids->reserve(static_cast<size_t>(patterns.size()));
  values->reserve(static_cast<size_t>(patterns.size()) * dim);
  for (const v1::Pattern& pattern : patterns) {
    ids->push_back(pattern.id());
    values->insert(values->end(), pattern.values().begin(),
                   pattern.values().end());
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const PatternId>> IdsFromProto(
    const google::protobuf::RepeatedField<uint64_t>& ids) {
  if (ids.empty()) {
    return absl::InvalidArgumentError("ids: empty list, expected >= 1");
  }
  return absl::Span<const PatternId>(ids.data(),
                                     static_cast<size_t>(ids.size()));
}

absl::Status FlattenQueries(
    const google::protobuf::RepeatedPtrField<v1::Query>& queries, uint32_t dim,
    std::vector<float>* values) {
  HOPFIELD_RETURN_IF_ERROR(CheckQueryShapes(queries, dim));
  values->clear();
  values->reserve(static_cast<size_t>(queries.size()) * dim);
  for (const v1::Query& query : queries) {
    values->insert(values->end(), query.values().begin(), query.values().end());
  }
  return absl::OkStatus();
}

}  // namespace hopfield::server
