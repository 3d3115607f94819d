// File: reflection_v1.h
//
// ReflectionV1Service: grpc.reflection.v1.ServerReflection, which gRPC 1.51
// does not ship (it serves only v1alpha, toolchain.md P9). Newer grpcurl,
// Postman and buf try v1 first. Answers come from the process's generated
// descriptor pool, exactly like the library's v1alpha service: the listed
// services, files by name, the file defining a symbol or an extension, and
// extension numbers, each file sent with its not-yet-sent dependencies.
#ifndef HOPFIELD_SERVER_REFLECTION_V1_H_
#define HOPFIELD_SERVER_REFLECTION_V1_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace hopfield::server {

// Thread-safe; immutable after construction.
class ReflectionV1Service final
    : public grpc::reflection::v1::ServerReflection::CallbackService {
 public:
  // `services`: the fully-qualified names list_services reports.
  explicit ReflectionV1Service(std::vector<std::string> services);

  grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                          grpc::reflection::v1::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

  // Answers one request; `sent_files` (per stream) keeps files already sent
  // out of later answers.
  void Answer(const grpc::reflection::v1::ServerReflectionRequest& request,
              std::vector<std::string>* sent_files,
              grpc::reflection::v1::ServerReflectionResponse* response) const;

 private:
  const std::vector<std::string> services_;
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_REFLECTION_V1_H_
