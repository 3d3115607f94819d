// File: status_conversion.h
//
// The one place absl::Status becomes grpc::Status (and back, for clients
// and tests). The code enums share numbers; status_conversion.cc asserts it.
#ifndef HOPFIELD_SERVER_STATUS_CONVERSION_H_
#define HOPFIELD_SERVER_STATUS_CONVERSION_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace hopfield::server {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_STATUS_CONVERSION_H_
