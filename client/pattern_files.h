// File: pattern_files.h
//
// Readers for the files users keep patterns in: IDX (the MNIST family's
// format, gzip or plain; unsigned bytes scaled by 1/255, or float32), CSV
// (one pattern per line, comma-separated numbers, an optional header line)
// and NumPy .npy (1-D or 2-D, C order; float32/float64/uint8/int32/int64).
// Every reader returns the same row-major float matrix. The Read* functions
// read a file whole and hand it to the Parse* function of its format, which
// works on bytes in memory (and is what fuzz/ exercises).
//
// Memory: a parser allocates in proportion to the bytes it is given, never
// to what a header claims. A header's declared size is checked against the
// bytes actually present before anything is allocated for it, and a gzip
// stream is inflated only as far as its IDX header declares, into a buffer
// that grows with what the stream really yields. No file may hold more than
// kMaxPatternFileValues values.
//
//   HOPFIELD_ASSIGN_OR_RETURN(PatternMatrix images,
//                             ReadPatternFile("train-images-idx3-ubyte.gz"));
#ifndef HOPFIELD_CLIENT_PATTERN_FILES_H_
#define HOPFIELD_CLIENT_PATTERN_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hopfield::client {

// `rows` patterns of `cols` floats each; row i is values[i*cols, (i+1)*cols).
struct PatternMatrix {
  size_t rows = 0;
  size_t cols = 0;
  std::vector<float> values;
};

// The most values (rows * cols) one pattern file may hold: 2^30, 4 GiB as
// floats (EMNIST's largest file holds 5.5 x 10^8). A header declaring more
// is refused before anything is allocated: it guards the client against a
// small gzip file that claims, and may really inflate to, gigabytes.
inline constexpr size_t kMaxPatternFileValues = size_t{1} << 30;

// IDX: the first dimension counts patterns, the rest are flattened.
// Errors: NOT_FOUND if unreadable; otherwise as ParseIdx.
absl::StatusOr<PatternMatrix> ReadIdx(const std::string& path);

// IDX from `bytes`, plain or gzip (told by the gzip magic 1f 8b; members
// concatenated as gzip(1) writes them read as one stream). Bytes past the
// payload the header declares are ignored, so a gzip stream is inflated no
// further than that; a stream whose end is never reached is not checksummed.
// `name` prefixes error messages (ReadIdx passes the path).
// Errors: DATA_LOSS for a bad header, an unsupported element type, a corrupt
// gzip stream, or a payload shorter than the header declares (plain input
// must hold it before anything is allocated; gzip input is refused at once
// when it is too short to inflate to it at deflate's best ratio, 1032:1);
// RESOURCE_EXHAUSTED for a header declaring more than kMaxPatternFileValues
// values.
absl::StatusOr<PatternMatrix> ParseIdx(absl::string_view bytes,
                                       absl::string_view name = "IDX");

// Errors: NOT_FOUND if unreadable; otherwise as ParseCsv.
absl::StatusOr<PatternMatrix> ReadCsv(const std::string& path);

// CSV from `bytes`: lines split at '\n' ('\r' and blanks around values are
// trimmed), empty lines skipped, a first line that is not all numbers taken
// for a header. `name` prefixes error messages (ReadCsv passes the path).
// Errors: INVALID_ARGUMENT naming the line and column of a value that is not
// a number, or a line whose length differs from the first.
absl::StatusOr<PatternMatrix> ParseCsv(absl::string_view bytes,
                                       absl::string_view name = "CSV");

// Errors: NOT_FOUND if unreadable; otherwise as ParseNpy.
absl::StatusOr<PatternMatrix> ReadNpy(const std::string& path);

// NumPy .npy from `bytes`. A 1-D array is one pattern. Bytes past the
// payload are ignored. `name` prefixes error messages (ReadNpy passes the
// path).
// Errors: DATA_LOSS for a malformed header, or a header or payload longer
// than the bytes present (checked before anything is allocated);
// INVALID_ARGUMENT for an unsupported dtype, Fortran order or >2 dimensions;
// RESOURCE_EXHAUSTED for a shape of more than kMaxPatternFileValues values.
absl::StatusOr<PatternMatrix> ParseNpy(absl::string_view bytes,
                                       absl::string_view name = "npy");

// Picks the reader by name: *.npy, *.csv, otherwise IDX (e.g. *-ubyte.gz).
// Errors: those of the reader it picks.
absl::StatusOr<PatternMatrix> ReadPatternFile(const std::string& path);

}  // namespace hopfield::client

#endif  // HOPFIELD_CLIENT_PATTERN_FILES_H_
