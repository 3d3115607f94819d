// File: proto_conversion.h
//
// Pure functions between hopfield.v1 messages and core value types: the only
// place where protobuf and core types meet. "0 / UNSPECIFIED = default" of the
// wire contract is resolved here; core sees concrete values.
//
// Errors are INVALID_ARGUMENT naming the field (as the client spelled it),
// the expected and the actual value.
#ifndef HOPFIELD_SERVER_PROTO_CONVERSION_H_
#define HOPFIELD_SERVER_PROTO_CONVERSION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/repeated_ptr_field.h"

#include "core/bank_options.h"
#include "core/bank_training.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "hopfield/v1/memory_service.pb.h"

namespace hopfield::server {

// BankConfig -> BankOptions with defaults resolved; not yet validated
// (BankOptions::Validate() does that). Errors: unknown enum values.
absl::StatusOr<BankOptions> BankOptionsFromProto(const v1::BankConfig& config);

// BankOptions -> BankConfig, every field explicit.
void BankOptionsToProto(const BankOptions& options, v1::BankConfig* config);

// Name, resolved config and statistics of `bank`.
void BankToProto(const MemoryBank& bank, v1::Bank* out);

// RetrieveOptions (wire) -> RetrieveOptions (core). Errors: unknown enums.
absl::StatusOr<RetrieveOptions> RetrieveOptionsFromProto(
    const v1::RetrieveOptions& options);

void RetrieveResultToProto(const RetrieveResult& result, v1::Retrieval* out);

// TrainOptions -> BankTrainOptions; 0 fields stay 0 (TrainBank resolves
// them). Errors: unknown TrainMode.
absl::StatusOr<BankTrainOptions> TrainOptionsFromProto(
    const v1::TrainOptions& options);
// One progress message per optimiser step.
void TrainStepToProto(const TrainStep& step, v1::TrainProgress* out);
// The final message: done, the result, and the last step's numbers.
void TrainReportToProto(const TrainReport& report, v1::TrainProgress* out);

// Concatenates the patterns' values for MemoryBank::Add and collects their
// ids. Errors: a pattern whose value count is not `dim`, naming it
// ("patterns[3].values: expected 784 values (the bank's dim), got 783").
absl::Status FlattenPatterns(
    const google::protobuf::RepeatedPtrField<v1::Pattern>& patterns,
    uint32_t dim, std::vector<PatternId>* ids, std::vector<float>* values);

// Checks that every pattern has `dim` values, without copying anything.
// Errors: an empty list; a pattern of the wrong size, naming it.
absl::Status CheckPatternShapes(
    const google::protobuf::RepeatedPtrField<v1::Pattern>& patterns,
    uint32_t dim);

// Checks that every query has `dim` values, without copying anything.
// Errors: an empty list; a query of the wrong size, naming it.
absl::Status CheckQueryShapes(
    const google::protobuf::RepeatedPtrField<v1::Query>& queries, uint32_t dim);

// The ids of a GetPatterns or Forget request, viewed in place (valid while
// the request lives). Errors: an empty list.
absl::StatusOr<absl::Span<const PatternId>> IdsFromProto(
    const google::protobuf::RepeatedField<uint64_t>& ids);

// Concatenates the queries' values for Retriever::RetrieveBatch. Errors: an
// empty list; a query whose value count is not `dim`, naming it.
absl::Status FlattenQueries(
    const google::protobuf::RepeatedPtrField<v1::Query>& queries, uint32_t dim,
    std::vector<float>* values);

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_PROTO_CONVERSION_H_
