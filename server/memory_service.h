// File: memory_service.h
//
// MemoryService: hopfield.v1.MemoryService on gRPC's callback API. Each
// handler validates, converts proto -> core (proto_conversion.h), calls the
// engine, converts back and finishes with the api.md status code; a rejected
// request changes nothing and never carries an error inside an OK reply.
//
// Threads: gRPC's callback threads are few and shared by every call, so only
// cheap, bounded work runs on them (CreateBank, GetBank, ListBanks,
// DeleteBank, Ping; health is gRPC's own). Work that grows with the request
// or the bank (Store, each StoreStream message, GetPatterns, Forget,
// Retrieve) is queued on the WorkerPool; a full queue answers
// RESOURCE_EXHAUSTED at once. Long loops poll the call's cancellation and
// deadline, and a call whose deadline passed while queued is not started.
//
// Memory: requests, replies and retrieval scratch are reserved from the
// MemoryBudget before they are built, with sizes estimated from the request;
// replies that would exceed max_message_bytes are refused before any work.
// std::bad_alloc in a handler becomes RESOURCE_EXHAUSTED with a message.
#ifndef HOPFIELD_SERVER_MEMORY_SERVICE_H_
#define HOPFIELD_SERVER_MEMORY_SERVICE_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpcpp/grpcpp.h"

#include "core/bank_registry.h"
#include "core/memory_budget.h"
#include "core/retriever.h"
#include "core/storage.h"
#include "core/worker_pool.h"
#include "hopfield/v1/memory_service.grpc.pb.h"
#include "server/prometheus_metrics.h"

namespace hopfield::server {

struct MemoryServiceOptions {
  // Threads a multi-query Retrieve may use (its matrix products are split).
  // Default: 1. REQUIRES: 1..256.
  uint32_t retrieve_threads = 1;
  // Largest reply, bytes (the server's send limit): replies estimated above
  // it are refused before any work.
  uint64_t max_message_bytes = 64 << 20;
  // One log line per RPC: method, peer, code, latency, bank.
  bool access_log = false;
  // Train calls running at once (each holds a worker for its whole run);
  // more are RESOURCE_EXHAUSTED. Default 1.
  uint32_t max_trains = 1;
  // Where Backup takes its copy from (the registry's storage). Null: Backup
  // is FAILED_PRECONDITION. Not owned; must outlive the service.
  Storage* storage = nullptr;
  // Where finished calls are recorded (latency by method and code, the
  // retrievals' work, training outcomes). Null: nothing is recorded. Not
  // owned; must outlive the service.
  PrometheusMetrics* metrics = nullptr;
};

// Thread-safe. Does not own `registry`, `pool` or `budget`, which must
// outlive it (and every call it has started: see Drain).
class MemoryService final : public v1::MemoryService::CallbackService {
 public:
  MemoryService(BankRegistry* registry, WorkerPool* pool,
                std::shared_ptr<MemoryBudget> budget,
                MemoryServiceOptions options);
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
  grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* context,
                                   const v1::BackupRequest* request,
                                   v1::BackupResponse* response) override;

  // Stops admitting calls (they get UNAVAILABLE) and waits until the calls
  // already started have finished or `grace` has passed. Returns true if
  // none is left. Idempotent.
  bool Drain(absl::Duration grace);

  // While loading, every call is refused with UNAVAILABLE (the server
  // loads its banks with the port already open, so clients and health
  // checks get an answer).
  void SetLoading(bool loading);

  // Calls started and not yet finished.
  uint64_t in_flight() const;

  // The pieces below are shared with the stream reactor; not part of the
  // service's interface.

  // Applies one StoreRequest (all or nothing): appends the ids to `ids`
  // unless null, and sets `pattern_count`. Shared by Store and StoreStream.
  absl::Status ApplyStore(const v1::StoreRequest& request,
                          google::protobuf::RepeatedField<uint64_t>* ids,
                          uint64_t* pattern_count);
  // Admits a call: false (with UNAVAILABLE in `status`) while loading or
  // draining.
  bool Admit(absl::Status* status);
  // Marks an admitted call finished.
  void Release();
  // A call finished with `status`: records its latency (if metrics are on)
  // and writes its access-log line (if enabled).
  void RecordCall(absl::string_view method,
                  grpc::CallbackServerContext* context, absl::string_view bank,
                  const absl::Status& status, absl::Time start) const;
  // Claims one of options.max_trains slots: false when all are taken.
  bool StartTrain();
  void FinishTrain();
  BankRegistry* registry() const { return registry_; }
  uint32_t max_trains() const { return options_.max_trains; }
  WorkerPool* pool() const { return pool_; }
  MemoryBudget* budget() const { return budget_.get(); }
  uint64_t max_message_bytes() const { return options_.max_message_bytes; }
  PrometheusMetrics* metrics() const { return options_.metrics; }

 private:
  // Finishes a unary call with `status`, logs it and releases it.
  grpc::ServerUnaryReactor* Finish(absl::string_view method,
                                   grpc::CallbackServerContext* context,
                                   absl::string_view bank,
                                   const absl::Status& status,
                                   absl::Time start) const;
  // The access-log line of a call that took `took` (if enabled).
  void LogAccess(absl::string_view method, grpc::CallbackServerContext* context,
                 absl::string_view bank, const absl::Status& status,
                 absl::Duration took) const;
  // Runs `work` inline (cheap calls), turning exceptions into statuses.
  grpc::ServerUnaryReactor* RunInline(
      absl::string_view method, grpc::CallbackServerContext* context,
      absl::string_view bank, const std::function<absl::Status()>& work);
  // Queues `work` on the pool and finishes the call when it is done; a full
  // queue or a deadline that passed while queued finishes it at once.
  // `work` may park reservations in its CallMemory: they are held until the
  // reply has been handed to gRPC (serialized), then released; and work to
  // do once the reply is on its way (recording metrics: off the reply's
  // path, where its cache misses after a long call cost the client nothing).
  struct CallMemory {
    std::vector<MemoryReservation> held;
    std::function<void()> after_reply;
  };
  // `request_bytes`: the parsed request's memory, reserved while the call
  // waits and runs.
  grpc::ServerUnaryReactor* RunHeavy(
      absl::string_view method, grpc::CallbackServerContext* context,
      absl::string_view bank, uint64_t request_bytes,
      std::function<absl::Status(CallMemory*)> work);
  // Sets memory->after_reply to record `results` (summarized now) for
  // `bank`, if metrics are on.
  void RecordAfterReply(absl::string_view bank,
                        absl::Span<const RetrieveResult> results,
                        CallMemory* memory) const;

  BankRegistry* const registry_;
  WorkerPool* const pool_;
  const std::shared_ptr<MemoryBudget> budget_;
  const MemoryServiceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable idle_;
  uint64_t in_flight_ = 0;  // guarded by mu_
  uint32_t trains_ = 0;     // guarded by mu_
  bool draining_ = false;   // guarded by mu_
  bool loading_ = false;    // guarded by mu_
};

// Runs `work`, turning std::bad_alloc into RESOURCE_EXHAUSTED and any other
// exception into INTERNAL, each with a message: an exception escaping a
// gRPC 1.51 handler would become UNIMPLEMENTED with no message.
absl::Status RunGuarded(const std::function<absl::Status()>& work);

// `name` fit for an error message or a log line: C-escaped, cut to 64
// bytes, with its length when cut (a client's bank name is untrusted).
std::string PrintableName(absl::string_view name);

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_MEMORY_SERVICE_H_
