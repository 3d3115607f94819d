// File: testing/status_matchers.h
//
// gmock matchers for absl::Status and absl::StatusOr<T> (Debian's abseil
// 20220623 ships none):
//
//   EXPECT_THAT(bank->Add(ids, values), IsOk());
//   EXPECT_THAT(bank->Get(7), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
//                                HasSubstr("dim")));
#ifndef HOPFIELD_CORE_TESTING_STATUS_MATCHERS_H_
#define HOPFIELD_CORE_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace hopfield::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.ok();
}

MATCHER_P(StatusIs, code,
          "has code " +
              absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " +
               absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(status.message()), result_listener);
}

// An OK StatusOr whose value matches `value_matcher`.
MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace hopfield::testing

#define HOPFIELD_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  HOPFIELD_ASSERT_OK_AND_ASSIGN_IMPL_(            \
      HOPFIELD_TESTING_CONCAT_(hopfield_statusor_, __LINE__), lhs, rexpr)
#define HOPFIELD_TESTING_CONCAT_INNER_(x, y) x##y
#define HOPFIELD_TESTING_CONCAT_(x, y) HOPFIELD_TESTING_CONCAT_INNER_(x, y)
#define HOPFIELD_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                        \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString();     \
  lhs = std::move(statusor).value()

#endif  // HOPFIELD_CORE_TESTING_STATUS_MATCHERS_H_
