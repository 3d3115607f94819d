// request_fuzzer: what the server does with a request before (and as) it
// reaches core: proto -> core conversion and validation
// (server/proto_conversion.h, BankOptions::Validate, RetrieveOptions::
// Validate, ValidateBankName), then the core call the handler would make, on
// a tiny bank so each input stays cheap.
//
// The first input byte picks the message; the rest is parsed as that message
// (an input that does not parse is skipped):
//   0  CreateBankRequest   name check; BankOptionsFromProto, Validate,
//                          Resolved, the BankConfig round trip; Create and
//                          BankToProto
//   1  StoreRequest        CheckPatternShapes + FlattenPatterns at dim 4,
//                          at the first pattern's size (at most 64) and at
//                          kMaxDim; Add to a fresh bank of the first two
//                          dims, cosine and dot
//   2  RetrieveRequest     RetrieveOptionsFromProto + Validate;
//                          CheckQueryShapes + FlattenQueries at those dims;
//                          Retrieve / RetrieveBatch on a fixed 9-pattern bank
//                          of dim 4, cosine and dot
//   3  GetPatternsRequest  IdsFromProto; GetMany on the fixed bank
//   4  (the bytes)         ValidateBankName against a reference rule
//
// Beyond "no crash, no sanitizer report": every error is an absl::Status
// with a code the contract names; outputs have the promised sizes; and a
// conversion's buffers grow with the request, never with the dim it is
// checked against (the server's dim can be 65536).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/stubs/logging.h"

#include "core/bank_options.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/status_macros.h"
#include "hopfield/v1/memory_service.pb.h"
#include "server/proto_conversion.h"

namespace hopfield {
namespace {

constexpr uint32_t kBankDim = 4;
constexpr uint32_t kMaxDerivedDim = 64;

bool HasCode(const absl::Status& status,
             std::initializer_list<absl::StatusCode> codes) {
  return !status.ok() && !status.message().empty() &&
         std::find(codes.begin(), codes.end(), status.code()) != codes.end();
}

bool IsInvalid(const absl::Status& status) {
  return HasCode(status, {absl::StatusCode::kInvalidArgument});
}

// The rule of bank_options.h, written out independently.
bool ReferenceNameValid(absl::string_view name) {
  return !name.empty() && name.size() <= kMaxBankNameLength &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
         });
}

bool CheckName(absl::string_view name) {
  const absl::Status status = ValidateBankName(name);
  HOPFIELD_CHECK(status.ok() == ReferenceNameValid(name));
  HOPFIELD_CHECK(status.ok() || IsInvalid(status));
  return status.ok();
}

bool SameOptions(const BankOptions& a, const BankOptions& b) {
  return a.dim == b.dim && a.similarity == b.similarity &&
         a.separation == b.separation && a.entmax_alpha == b.entmax_alpha &&
         a.beta == b.beta && a.max_iterations == b.max_iterations &&
         a.tolerance == b.tolerance && a.search == b.search &&
         a.top_k == b.top_k && a.feature_dim == b.feature_dim;
}

std::unique_ptr<MemoryBank> NewBank(uint32_t dim, Similarity similarity) {
  BankOptions options;
  options.dim = dim;
  options.similarity = similarity;
  absl::StatusOr<std::unique_ptr<MemoryBank>> bank =
      MemoryBank::Create("fuzz", options);
  HOPFIELD_CHECK(bank.ok());
  return *std::move(bank);
}

// Nine fixed patterns of dim 4, ids 1..9.
const MemoryBank* MakeFixedBank(Similarity similarity) {
  const std::vector<PatternId> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<float> values = {
      1,  0, 0,    0, 0,     1,     0,     0,  0,   0,    1,  0,
      0,  0, 0,    1, 1,     1,     0,     0,  0,   1,    1,  0,
      -1, 0, 0.5f, 0, 0.25f, -0.5f, 0.75f, -1, 100, -100, 50, 3};
  std::unique_ptr<MemoryBank> bank = NewBank(kBankDim, similarity);
  HOPFIELD_CHECK(bank->Add(ids, values).ok());
  return bank.release();
}

// Built once, then only read (never freed: inputs run until exit).
const MemoryBank& FixedBank(Similarity similarity) {
  static const MemoryBank* const kCosineBank =
      MakeFixedBank(Similarity::kCosine);
  static const MemoryBank* const kDotBank = MakeFixedBank(Similarity::kDot);
  return similarity == Similarity::kDot ? *kDotBank : *kCosineBank;
}

void FuzzCreateBank(const v1::CreateBankRequest& request) {
  const bool name_ok = CheckName(request.name());
  const absl::StatusOr<BankOptions> options =
      server::BankOptionsFromProto(request.config());
  if (!options.ok()) {
    HOPFIELD_CHECK(IsInvalid(options.status()));
    return;
  }
  const absl::Status valid = options->Validate();
  if (!valid.ok()) {
    HOPFIELD_CHECK(IsInvalid(valid));
    return;
  }
  // What a Bank reply carries converts back to the same options.
  const BankOptions resolved = options->Resolved();
  HOPFIELD_CHECK(resolved.Validate().ok());
  v1::BankConfig config;
  server::BankOptionsToProto(resolved, &config);
  const absl::StatusOr<BankOptions> back = server::BankOptionsFromProto(config);
  HOPFIELD_CHECK(back.ok() && SameOptions(*back, resolved));
  if (!name_ok) return;
  absl::StatusOr<std::unique_ptr<MemoryBank>> bank =
      MemoryBank::Create(request.name(), *options);
  HOPFIELD_CHECK(bank.ok());
  v1::Bank reply;
  server::BankToProto(**bank, &reply);
  HOPFIELD_CHECK(reply.name() == request.name());
  HOPFIELD_CHECK(reply.config().dim() == options->dim);
}

// The dims a request is checked against: the fixed bank's, the request's own
// (its first entry's size, at most kMaxDerivedDim) and the largest allowed.
template <typename Entries>
std::vector<uint32_t> DimsFor(const Entries& entries) {
  std::vector<uint32_t> dims = {kBankDim, kMaxDim};
  if (!entries.empty()) {
    dims.push_back(std::clamp<uint32_t>(
        static_cast<uint32_t>(entries[0].values_size()), 1, kMaxDerivedDim));
  }
  return dims;
}

template <typename Entries>
size_t TotalValues(const Entries& entries) {
  size_t total = 0;
  for (const auto& entry : entries) {
    total += static_cast<size_t>(entry.values_size());
  }
  return total;
}

void FuzzStore(const v1::StoreRequest& request) {
  CheckName(request.bank());
  const size_t total = TotalValues(request.patterns());
  const auto count = static_cast<size_t>(request.patterns_size());
  for (const uint32_t dim : DimsFor(request.patterns())) {
    std::vector<PatternId> ids;
    std::vector<float> values;
    const absl::Status status =
        server::FlattenPatterns(request.patterns(), dim, &ids, &values);
    HOPFIELD_CHECK(server::CheckPatternShapes(request.patterns(), dim).ok() ==
                   status.ok());
    HOPFIELD_CHECK(values.capacity() <= total);
    HOPFIELD_CHECK(ids.capacity() <= count);
    if (!status.ok()) {
      HOPFIELD_CHECK(IsInvalid(status));
      continue;
    }
    HOPFIELD_CHECK(ids.size() == count);
    HOPFIELD_CHECK(values.size() == count * dim);
    if (dim > kMaxDerivedDim) continue;
    for (const Similarity similarity :
         {Similarity::kCosine, Similarity::kDot}) {
      std::unique_ptr<MemoryBank> bank = NewBank(dim, similarity);
      const absl::StatusOr<std::vector<PatternId>> stored =
          bank->Add(ids, values);
      if (!stored.ok()) {
        HOPFIELD_CHECK(
            HasCode(stored.status(), {absl::StatusCode::kInvalidArgument,
                                      absl::StatusCode::kResourceExhausted}));
        HOPFIELD_CHECK(bank->size() == 0);
        continue;
      }
      HOPFIELD_CHECK(stored->size() == count);
      HOPFIELD_CHECK(bank->size() == count);
      v1::Bank reply;
      server::BankToProto(*bank, &reply);
      HOPFIELD_CHECK(reply.pattern_count() == count);
    }
  }
}

void CheckResult(const RetrieveResult& result, const RetrieveOptions& options,
                 size_t bank_size) {
  HOPFIELD_CHECK(result.pattern.size() ==
                 (options.omit_pattern ? 0 : kBankDim));
  const size_t wanted = std::max<uint32_t>(options.return_matches, 1);
  HOPFIELD_CHECK(result.matches.size() <= std::min(wanted, bank_size));
  HOPFIELD_CHECK(result.iterations >= 1 &&
                 result.iterations <= kMaxIterationsLimit);
  HOPFIELD_CHECK(result.energy_trace.size() ==
                 (options.return_energy_trace ? result.iterations : 0));
  HOPFIELD_CHECK(std::isfinite(result.energy));
  HOPFIELD_CHECK(std::isfinite(result.nearest_weight));
  for (const float value : result.pattern) HOPFIELD_CHECK(std::isfinite(value));
  for (size_t i = 0; i < result.matches.size(); ++i) {
    HOPFIELD_CHECK(result.matches[i].id >= 1 && result.matches[i].id <= 9);
    HOPFIELD_CHECK(std::isfinite(result.matches[i].weight) &&
                   result.matches[i].weight >= 0.0f &&
                   result.matches[i].weight <= 1.0f + 1e-5f);
    HOPFIELD_CHECK(std::isfinite(result.matches[i].score));
    if (i > 0) {
      HOPFIELD_CHECK(result.matches[i].weight <= result.matches[i - 1].weight);
    }
  }
}

void FuzzRetrieve(const v1::RetrieveRequest& request) {
  CheckName(request.bank());
  const size_t total = TotalValues(request.queries());
  const auto count = static_cast<size_t>(request.queries_size());
  std::vector<float> queries;  // flattened at kBankDim
  bool queries_ok = false;
  for (const uint32_t dim : DimsFor(request.queries())) {
    std::vector<float> values;
    const absl::Status status =
        server::FlattenQueries(request.queries(), dim, &values);
    HOPFIELD_CHECK(server::CheckQueryShapes(request.queries(), dim).ok() ==
                   status.ok());
    HOPFIELD_CHECK(values.capacity() <= total);
    if (!status.ok()) {
      HOPFIELD_CHECK(IsInvalid(status));
      continue;
    }
    HOPFIELD_CHECK(values.size() == count * dim);
    if (dim == kBankDim) {
      queries = std::move(values);
      queries_ok = true;
    }
  }
  const absl::StatusOr<RetrieveOptions> options =
      server::RetrieveOptionsFromProto(request.options());
  if (!options.ok()) {
    HOPFIELD_CHECK(IsInvalid(options.status()));
    return;
  }
  const absl::Status valid = options->Validate();
  if (!valid.ok()) {
    HOPFIELD_CHECK(IsInvalid(valid));
    return;
  }
  if (!queries_ok) return;
  for (const Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    const MemoryBank& bank = FixedBank(similarity);
    if (count == 1) {
      const absl::StatusOr<RetrieveResult> result =
          Retriever::Retrieve(bank, queries, *options);
      if (!result.ok()) {
        HOPFIELD_CHECK(IsInvalid(result.status()));
        continue;
      }
      CheckResult(*result, *options, bank.size());
    } else {
      const absl::StatusOr<std::vector<RetrieveResult>> results =
          Retriever::RetrieveBatch(bank, queries, *options);
      if (!results.ok()) {
        HOPFIELD_CHECK(IsInvalid(results.status()));
        continue;
      }
      HOPFIELD_CHECK(results->size() == count);
      for (const RetrieveResult& result : *results) {
        CheckResult(result, *options, bank.size());
      }
    }
  }
}

void FuzzGetPatterns(const v1::GetPatternsRequest& request) {
  CheckName(request.bank());
  const absl::StatusOr<absl::Span<const PatternId>> ids =
      server::IdsFromProto(request.ids());
  if (!ids.ok()) {
    HOPFIELD_CHECK(IsInvalid(ids.status()));
    HOPFIELD_CHECK(request.ids().empty());
    return;
  }
  HOPFIELD_CHECK(ids->size() == static_cast<size_t>(request.ids_size()));
  std::vector<float> values;
  const absl::Status status =
      FixedBank(Similarity::kCosine).GetMany(*ids, &values);
  if (!status.ok()) {
    HOPFIELD_CHECK(HasCode(status, {absl::StatusCode::kNotFound}));
    return;
  }
  HOPFIELD_CHECK(values.size() == ids->size() * kBankDim);
}

template <typename Message>
bool Parse(absl::Span<const uint8_t> bytes, Message* message) {
  return message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace
}  // namespace hopfield

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Invalid UTF-8 in a string field fails the parse with a log line per
  // input; drop those (FATAL still aborts).
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v1 = hopfield::v1;
  if (size == 0) return 0;
  const absl::Span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      v1::CreateBankRequest request;
      if (hopfield::Parse(rest, &request)) hopfield::FuzzCreateBank(request);
      break;
    }
    case 1: {
      v1::StoreRequest request;
      if (hopfield::Parse(rest, &request)) hopfield::FuzzStore(request);
      break;
    }
    case 2: {
      v1::RetrieveRequest request;
      if (hopfield::Parse(rest, &request)) hopfield::FuzzRetrieve(request);
      break;
    }
    case 3: {
      v1::GetPatternsRequest request;
      if (hopfield::Parse(rest, &request)) hopfield::FuzzGetPatterns(request);
      break;
    }
    default:
      hopfield::CheckName(absl::string_view(
          reinterpret_cast<const char*>(rest.data()), rest.size()));
      break;
  }
  return 0;
}
