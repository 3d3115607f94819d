// File: memory_service.h
//
// MemoryService: hopfield.v1.MemoryService on gRPC's callback API. Each
// handler validates, converts proto -> core (proto_conversion.h), calls the
// engine, converts back and finishes with the api.md status code; a rejected
// request changes nothing and never carries an error inside an OK reply.
// Store and Retrieve run inline on the callback thread (short, CPU-bound);
// long loops poll the call's cancellation and deadline.
#ifndef HOPFIELD_SERVER_MEMORY_SERVICE_H_
#define HOPFIELD_SERVER_MEMORY_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"

#include "core/bank_registry.h"
#include "hopfield/v1/memory_service.grpc.pb.h"

namespace hopfield::server {

struct MemoryServiceOptions {
  // Threads a multi-query Retrieve may use (its matrix products are split).
  // Default: 1.
  uint32_t retrieve_threads = 1;
  // One log line per RPC: method, peer, code, latency, bank.
  bool access_log = false;
};

// Thread-safe. Does not own `registry`, which must outlive it.
class MemoryService final : public v1::MemoryService::CallbackService {
 public:
  MemoryService(BankRegistry* registry, MemoryServiceOptions options);
  MemoryService(const MemoryService&) = delete;
  MemoryService& operator=(const MemoryService&) = delete;

  grpc::ServerUnaryReactor* CreateBank(grpc::CallbackServerContext* context,
                                       const v1::CreateBankRequest* request,
                                       v1::Bank* response) override;
  grpc::ServerUnaryReactor* GetBank(grpc::CallbackServerContext* context,
                                    const v1::GetBankRequest* request,
                                    v1::Bank* response) override;
  grpc::ServerUnaryReactor* ListBanks(grpc::CallbackServerContext* context,
                                      const v1::ListBanksRequest* request,
                                      v1::ListBanksResponse* response) override;
  grpc::ServerUnaryReactor* DeleteBank(
      grpc::CallbackServerContext* context,
      const v1::DeleteBankRequest* request,
      v1::DeleteBankResponse* response) override;
  grpc::ServerUnaryReactor* Store(grpc::CallbackServerContext* context,
                                  const v1::StoreRequest* request,
                                  v1::StoreResponse* response) override;
  grpc::ServerReadReactor<v1::StoreRequest>* StoreStream(
      grpc::CallbackServerContext* context,
      v1::StoreResponse* response) override;
  grpc::ServerUnaryReactor* GetPatterns(
      grpc::CallbackServerContext* context,
      const v1::GetPatternsRequest* request,
      v1::GetPatternsResponse* response) override;
  grpc::ServerUnaryReactor* Forget(grpc::CallbackServerContext* context,
                                   const v1::ForgetRequest* request,
                                   v1::ForgetResponse* response) override;
  grpc::ServerUnaryReactor* Retrieve(grpc::CallbackServerContext* context,
                                     const v1::RetrieveRequest* request,
                                     v1::RetrieveResponse* response) override;
  grpc::ServerWriteReactor<v1::TrainProgress>* Train(
      grpc::CallbackServerContext* context,
      const v1::TrainRequest* request) override;
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context,
                                 const v1::PingRequest* request,
                                 v1::PingResponse* response) override;

  // Applies one StoreRequest (all or nothing): appends the ids to `ids` and
  // sets `pattern_count`. Shared by Store and StoreStream.
  absl::Status ApplyStore(const v1::StoreRequest& request,
                          google::protobuf::RepeatedField<uint64_t>* ids,
                          uint64_t* pattern_count);

  // Writes the access-log line for a finished call (if enabled).
  void LogCall(absl::string_view method, grpc::CallbackServerContext* context,
               absl::string_view bank, const absl::Status& status,
               absl::Time start) const;

 private:
  // Finishes a unary call with `status` and logs it.
  grpc::ServerUnaryReactor* Finish(absl::string_view method,
                                   grpc::CallbackServerContext* context,
                                   absl::string_view bank,
                                   const absl::Status& status,
                                   absl::Time start) const;

  BankRegistry* const registry_;
  const MemoryServiceOptions options_;
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_MEMORY_SERVICE_H_
