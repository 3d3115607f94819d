// idx_fuzzer: client::ParseIdx on the input, and on the input gzip-compressed
// when it is not gzip already: the two must agree (status code, shape and
// every value bit), since plain and gzip IDX differ only in transport.
// Seeds: corpus/idx_fuzzer (ubyte and float IDX, plain and gzip).
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

#include "client/pattern_files.h"
#include "core/status_macros.h"

#include "fuzz/pattern_matrix_checks.h"

namespace hopfield::client {
namespace {

// The bytes as one gzip member (what gzip(1) writes).
std::string Gzip(absl::string_view bytes) {
  z_stream stream{};
  HOPFIELD_CHECK(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
                              Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in =
      reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));  // NOLINT
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  HOPFIELD_CHECK(deflate(&stream, Z_FINISH) == Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

void FuzzIdx(absl::string_view bytes) {
  const absl::StatusOr<PatternMatrix> parsed = ParseIdx(bytes);
  CheckParse(parsed, {absl::StatusCode::kDataLoss,
                      absl::StatusCode::kResourceExhausted});
  if (absl::StartsWith(bytes, "\x1f\x8b")) return;
  // Plain: the result is never larger than the input (1 byte per value at
  // least).
  if (parsed.ok()) HOPFIELD_CHECK(parsed->values.size() <= bytes.size());
  const absl::StatusOr<PatternMatrix> unzipped = ParseIdx(Gzip(bytes));
  HOPFIELD_CHECK(unzipped.status().code() == parsed.status().code());
  if (!parsed.ok()) return;
  HOPFIELD_CHECK(unzipped->rows == parsed->rows);
  HOPFIELD_CHECK(unzipped->cols == parsed->cols);
  HOPFIELD_CHECK(unzipped->values.size() == parsed->values.size());
  HOPFIELD_CHECK(parsed->values.empty() ||
                 std::memcmp(unzipped->values.data(), parsed->values.data(),
                             parsed->values.size() * sizeof(float)) == 0);
}

}  // namespace
}  // namespace hopfield::client

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hopfield::client::FuzzIdx(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
