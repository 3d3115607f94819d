// File: pattern_matrix_checks.h
//
// What every reader fuzzer checks of a parse (client/pattern_files.h): an
// error carries a message and one of the codes the contract names; a matrix
// is consistent (values.size() == rows * cols, without overflow) and within
// kMaxPatternFileValues. Any breach aborts, which libFuzzer reports.
#ifndef HOPFIELD_FUZZ_PATTERN_MATRIX_CHECKS_H_
#define HOPFIELD_FUZZ_PATTERN_MATRIX_CHECKS_H_

#include <algorithm>
#include <cstddef>
#include <initializer_list>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "client/pattern_files.h"
#include "core/status_macros.h"

namespace hopfield::client {

inline void CheckParse(const absl::StatusOr<PatternMatrix>& parsed,
                       std::initializer_list<absl::StatusCode> codes) {
  if (!parsed.ok()) {
    const absl::Status& status = parsed.status();
    HOPFIELD_CHECK(!status.message().empty());
    HOPFIELD_CHECK(std::find(codes.begin(), codes.end(), status.code()) !=
                   codes.end());
    return;
  }
  size_t count = 0;
  HOPFIELD_CHECK(!__builtin_mul_overflow(parsed->rows, parsed->cols, &count));
  HOPFIELD_CHECK(parsed->values.size() == count);
  HOPFIELD_CHECK(count <= kMaxPatternFileValues);
}

}  // namespace hopfield::client

#endif  // HOPFIELD_FUZZ_PATTERN_MATRIX_CHECKS_H_
