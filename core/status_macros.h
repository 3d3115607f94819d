// File: status_macros.h
//
// Early-return helpers for `absl::Status` / `absl::StatusOr<T>`. Debian's
// abseil 20220623 ships none, and newer abseil names its own `ABSL_...`, so
// ours carry the `HOPFIELD_` prefix and can never clash after an upgrade.
//
//   HOPFIELD_RETURN_IF_ERROR(options.Validate());
//   HOPFIELD_ASSIGN_OR_RETURN(auto bank, MemoryBank::Create(options));
#ifndef HOPFIELD_CORE_STATUS_MACROS_H_
#define HOPFIELD_CORE_STATUS_MACROS_H_

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an `absl::Status`) and returns it from the enclosing
// function if it is not OK.
#define HOPFIELD_RETURN_IF_ERROR(expr)                \
  do {                                                \
    ::absl::Status hopfield_status_ = (expr);         \
    if (ABSL_PREDICT_FALSE(!hopfield_status_.ok())) { \
      return hopfield_status_;                        \
    }                                                 \
  } while (false)

#define HOPFIELD_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define HOPFIELD_STATUS_MACROS_CONCAT_(x, y) \
  HOPFIELD_STATUS_MACROS_CONCAT_INNER_(x, y)

// Evaluates `rexpr` (an `absl::StatusOr<T>`); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration).
#define HOPFIELD_ASSIGN_OR_RETURN(lhs, rexpr)                            \
  HOPFIELD_ASSIGN_OR_RETURN_IMPL_(                                       \
      HOPFIELD_STATUS_MACROS_CONCAT_(hopfield_statusor_, __LINE__), lhs, \
      rexpr)

#define HOPFIELD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)         \
  auto statusor = (rexpr); /* NOLINT(bugprone-macro-parentheses) */   \
  if (ABSL_PREDICT_FALSE(                                             \
          !statusor.ok())) { /* NOLINT(bugprone-macro-parentheses) */ \
    return std::move(statusor)                                        \
        .status(); /* NOLINT(bugprone-macro-parentheses) */           \
  }                                                                   \
  lhs = std::move(statusor).value()  // NOLINT(bugprone-macro-parentheses)

// Aborts with a message when an internal invariant is broken. For bugs only:
// user errors are statuses.
#define HOPFIELD_CHECK(cond)                                               \
  do {                                                                     \
    if (ABSL_PREDICT_FALSE(!(cond))) {                                     \
      std::fprintf(stderr, "%s:%d: HOPFIELD_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                       \
      std::abort();                                                        \
    }                                                                      \
  } while (false)

#endif  // HOPFIELD_CORE_STATUS_MACROS_H_
