// npy_fuzzer: client::ParseNpy on the input. Errors are DATA_LOSS,
// INVALID_ARGUMENT or RESOURCE_EXHAUSTED; a matrix is consistent and holds
// no more values than the input has bytes (the payload must be present).
// Seeds: corpus/npy_fuzzer (each dtype, 1-D and 2-D); dictionary:
// dicts/npy.dict (the header's keys and dtypes).
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "client/pattern_files.h"
#include "core/status_macros.h"

#include "fuzz/pattern_matrix_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace client = hopfield::client;
  const absl::StatusOr<client::PatternMatrix> parsed = client::ParseNpy(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  client::CheckParse(
      parsed, {absl::StatusCode::kDataLoss, absl::StatusCode::kInvalidArgument,
               absl::StatusCode::kResourceExhausted});
  if (parsed.ok()) HOPFIELD_CHECK(parsed->values.size() <= size);
  return 0;
}
