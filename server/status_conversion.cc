#include "server/status_conversion.h"

#include <string>

namespace hopfield::server {
namespace {

#define HOPFIELD_SAME_CODE(absl_code, grpc_code)                   \
  static_assert(static_cast<int>(absl::StatusCode::absl_code) ==   \
                    static_cast<int>(grpc::StatusCode::grpc_code), \
                #absl_code " and " #grpc_code " must share a number")

HOPFIELD_SAME_CODE(kOk, OK);
HOPFIELD_SAME_CODE(kCancelled, CANCELLED);
HOPFIELD_SAME_CODE(kUnknown, UNKNOWN);
HOPFIELD_SAME_CODE(kInvalidArgument, INVALID_ARGUMENT);
HOPFIELD_SAME_CODE(kDeadlineExceeded, DEADLINE_EXCEEDED);
HOPFIELD_SAME_CODE(kNotFound, NOT_FOUND);
HOPFIELD_SAME_CODE(kAlreadyExists, ALREADY_EXISTS);
HOPFIELD_SAME_CODE(kPermissionDenied, PERMISSION_DENIED);
HOPFIELD_SAME_CODE(kResourceExhausted, RESOURCE_EXHAUSTED);
HOPFIELD_SAME_CODE(kFailedPrecondition, FAILED_PRECONDITION);
HOPFIELD_SAME_CODE(kAborted, ABORTED);
HOPFIELD_SAME_CODE(kOutOfRange, OUT_OF_RANGE);
HOPFIELD_SAME_CODE(kUnimplemented, UNIMPLEMENTED);
HOPFIELD_SAME_CODE(kInternal, INTERNAL);
HOPFIELD_SAME_CODE(kUnavailable, UNAVAILABLE);
HOPFIELD_SAME_CODE(kDataLoss, DATA_LOSS);
HOPFIELD_SAME_CODE(kUnauthenticated, UNAUTHENTICATED);

#undef HOPFIELD_SAME_CODE

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace hopfield::server
