// csv_fuzzer: client::ParseCsv on the input. Errors are INVALID_ARGUMENT; a
// matrix is consistent, has a column per row, and holds no more values
// than the input has bytes (each value takes one character at least).
// Seeds: corpus/csv_fuzzer.
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
  const absl::StatusOr<client::PatternMatrix> parsed = client::ParseCsv(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  client::CheckParse(parsed, {absl::StatusCode::kInvalidArgument});
  if (parsed.ok()) {
    HOPFIELD_CHECK(parsed->rows == 0 || parsed->cols >= 1);
    HOPFIELD_CHECK(parsed->values.size() <= size);
  }
  return 0;
}
