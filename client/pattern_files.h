// File: pattern_files.h
//
// Readers for the files users keep patterns in: IDX (the MNIST family's
// format, gzip or plain; unsigned bytes scaled by 1/255, or float32), CSV
// (one pattern per line, comma-separated numbers, an optional header line)
// and NumPy .npy (1-D or 2-D, C order; float32/float64/uint8/int32/int64).
// Every reader returns the same row-major float matrix.
//
//   HOPFIELD_ASSIGN_OR_RETURN(PatternMatrix images,
//                             ReadPatternFile("train-images-idx3-ubyte.gz"));
#ifndef HOPFIELD_CLIENT_PATTERN_FILES_H_
#define HOPFIELD_CLIENT_PATTERN_FILES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hopfield::client {

// `rows` patterns of `cols` floats each; row i is values[i*cols, (i+1)*cols).
struct PatternMatrix {
  size_t rows = 0;
  size_t cols = 0;
  std::vector<float> values;
};

// IDX: the first dimension counts patterns, the rest are flattened.
// Errors: NOT_FOUND if unreadable; DATA_LOSS for a bad header, an unsupported
// element type or a truncated payload.
absl::StatusOr<PatternMatrix> ReadIdx(const std::string& path);

// Errors: NOT_FOUND; INVALID_ARGUMENT naming the line and column of a value
// that is not a number, or a line whose length differs from the first.
absl::StatusOr<PatternMatrix> ReadCsv(const std::string& path);

// Errors: NOT_FOUND; DATA_LOSS for a malformed header or payload;
// INVALID_ARGUMENT for an unsupported dtype, Fortran order or >2 dimensions.
absl::StatusOr<PatternMatrix> ReadNpy(const std::string& path);

// Picks the reader by name: *.npy, *.csv, otherwise IDX (e.g. *-ubyte.gz).
absl::StatusOr<PatternMatrix> ReadPatternFile(const std::string& path);

}  // namespace hopfield::client

#endif  // HOPFIELD_CLIENT_PATTERN_FILES_H_
