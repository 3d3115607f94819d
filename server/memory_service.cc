#include "server/memory_service.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "core/retriever.h"
#include "core/status_macros.h"
#include "server/logging.h"
#include "server/proto_conversion.h"
#include "server/status_conversion.h"

namespace hopfield::server {
namespace {

// Polled by long loops in core: the call's cancellation and deadline.
std::function<absl::Status()> CallWatch(grpc::CallbackServerContext* context) {
  return [context]() -> absl::Status {
    if (context->IsCancelled()) {
      return absl::CancelledError("the client cancelled the call");
    }
    if (std::chrono::system_clock::now() > context->deadline()) {
      return absl::DeadlineExceededError("the call's deadline passed");
    }
    return absl::OkStatus();
  };
}

// Reads a client stream of StoreRequests, applying each as it arrives.
class StoreStreamReactor final
    : public grpc::ServerReadReactor<v1::StoreRequest> {
 public:
  StoreStreamReactor(MemoryService* service,
                     grpc::CallbackServerContext* context,
                     v1::StoreResponse* response)
      : service_(service),
        context_(context),
        response_(response),
        start_(absl::Now()) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed: done
      if (messages_ == 0) {
        FinishWith(absl::InvalidArgumentError(
            "StoreStream: no messages, expected >= 1"));
        return;
      }
      response_->set_pattern_count(pattern_count_);
      FinishWith(absl::OkStatus());
      return;
    }
    if (messages_ == 0) {
      bank_ = request_.bank();
    } else if (!request_.bank().empty() && request_.bank() != bank_) {
      FinishWith(absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_, ": bank: expected \"", bank_,
          "\" as in the first message, got \"", request_.bank(), "\"")));
      return;
    } else {
      request_.set_bank(bank_);
    }
    const absl::Status status = service_->ApplyStore(
        request_, response_->mutable_ids(), &pattern_count_);
    if (!status.ok()) {
      // Earlier messages stay stored; say how far the stream got.
      FinishWith(absl::Status(
          status.code(),
          absl::StrCat("message ", messages_, " (after ", response_->ids_size(),
                       " patterns were stored): ", status.message())));
      return;
    }
    ++messages_;
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void FinishWith(const absl::Status& status) {
    service_->LogCall("StoreStream", context_, bank_, status, start_);
    Finish(ToGrpcStatus(status));
  }

  MemoryService* const service_;
  grpc::CallbackServerContext* const context_;
  v1::StoreResponse* const response_;
  const absl::Time start_;
  v1::StoreRequest request_;
  std::string bank_;
  uint64_t messages_ = 0;
  uint64_t pattern_count_ = 0;
};

// Train is not available in this version: finish at once.
class UnimplementedTrainReactor final
    : public grpc::ServerWriteReactor<v1::TrainProgress> {
 public:
  explicit UnimplementedTrainReactor(const grpc::Status& status) {
    Finish(status);
  }
  void OnDone() override { delete this; }
};

}  // namespace

MemoryService::MemoryService(BankRegistry* registry,
                             MemoryServiceOptions options)
    : registry_(registry), options_(options) {}

void MemoryService::LogCall(absl::string_view method,
                            grpc::CallbackServerContext* context,
                            absl::string_view bank, const absl::Status& status,
                            absl::Time start) const {
  if (!options_.access_log) return;
  HOPFIELD_LOG(INFO) << "rpc method=" << method << " peer=" << context->peer()
                     << " code=" << absl::StatusCodeToString(status.code())
                     << " latency_ms="
                     << absl::ToDoubleMilliseconds(absl::Now() - start)
                     << " bank=" << bank;
}

grpc::ServerUnaryReactor* MemoryService::Finish(
    absl::string_view method, grpc::CallbackServerContext* context,
    absl::string_view bank, const absl::Status& status,
    absl::Time start) const {
  LogCall(method, context, bank, status, start);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* MemoryService::CreateBank(
    grpc::CallbackServerContext* context, const v1::CreateBankRequest* request,
    v1::Bank* response) {
  const absl::Time start = absl::Now();
  const absl::Status status = [&]() -> absl::Status {
    HOPFIELD_ASSIGN_OR_RETURN(const BankOptions options,
                              BankOptionsFromProto(request->config()));
    HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                              registry_->Create(request->name(), options));
    BankToProto(*bank, response);
    return absl::OkStatus();
  }();
  return Finish("CreateBank", context, request->name(), status, start);
}

grpc::ServerUnaryReactor* MemoryService::GetBank(
    grpc::CallbackServerContext* context, const v1::GetBankRequest* request,
    v1::Bank* response) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<MemoryBank>> bank =
      registry_->Get(request->name());
  if (bank.ok()) BankToProto(**bank, response);
  return Finish("GetBank", context, request->name(), bank.status(), start);
}

grpc::ServerUnaryReactor* MemoryService::ListBanks(
    grpc::CallbackServerContext* context,
    const v1::ListBanksRequest* /*request*/, v1::ListBanksResponse* response) {
  const absl::Time start = absl::Now();
  for (const std::shared_ptr<MemoryBank>& bank : registry_->List()) {
    BankToProto(*bank, response->add_banks());
  }
  return Finish("ListBanks", context, "", absl::OkStatus(), start);
}

grpc::ServerUnaryReactor* MemoryService::DeleteBank(
    grpc::CallbackServerContext* context, const v1::DeleteBankRequest* request,
    v1::DeleteBankResponse* /*response*/) {
  const absl::Time start = absl::Now();
  return Finish("DeleteBank", context, request->name(),
                registry_->Drop(request->name()), start);
}

absl::Status MemoryService::ApplyStore(
    const v1::StoreRequest& request,
    google::protobuf::RepeatedField<uint64_t>* ids, uint64_t* pattern_count) {
  HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                            registry_->Get(request.bank()));
  std::vector<PatternId> requested;
  std::vector<float> values;
  HOPFIELD_RETURN_IF_ERROR(
      FlattenPatterns(request.patterns(), bank->dim(), &requested, &values));
  HOPFIELD_ASSIGN_OR_RETURN(const std::vector<PatternId> stored,
                            bank->Add(requested, values));
  ids->Add(stored.begin(), stored.end());
  *pattern_count = bank->size();
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* MemoryService::Store(
    grpc::CallbackServerContext* context, const v1::StoreRequest* request,
    v1::StoreResponse* response) {
  const absl::Time start = absl::Now();
  uint64_t pattern_count = 0;
  const absl::Status status =
      ApplyStore(*request, response->mutable_ids(), &pattern_count);
  response->set_pattern_count(pattern_count);
  return Finish("Store", context, request->bank(), status, start);
}

grpc::ServerReadReactor<v1::StoreRequest>* MemoryService::StoreStream(
    grpc::CallbackServerContext* context, v1::StoreResponse* response) {
  return new StoreStreamReactor(this, context, response);
}

grpc::ServerUnaryReactor* MemoryService::GetPatterns(
    grpc::CallbackServerContext* context, const v1::GetPatternsRequest* request,
    v1::GetPatternsResponse* response) {
  const absl::Time start = absl::Now();
  const absl::Status status = [&]() -> absl::Status {
    HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                              registry_->Get(request->bank()));
    HOPFIELD_ASSIGN_OR_RETURN(const std::vector<PatternId> ids,
                              IdsFromProto(request->ids()));
    std::vector<float> values;
    HOPFIELD_RETURN_IF_ERROR(bank->GetMany(ids, &values));
    const size_t dim = bank->dim();
    for (size_t i = 0; i < ids.size(); ++i) {
      v1::Pattern* pattern = response->add_patterns();
      pattern->set_id(ids[i]);
      pattern->mutable_values()->Assign(
          values.begin() + static_cast<std::ptrdiff_t>(i * dim),
          values.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
    }
    return absl::OkStatus();
  }();
  return Finish("GetPatterns", context, request->bank(), status, start);
}

grpc::ServerUnaryReactor* MemoryService::Forget(
    grpc::CallbackServerContext* context, const v1::ForgetRequest* request,
    v1::ForgetResponse* response) {
  const absl::Time start = absl::Now();
  const absl::Status status = [&]() -> absl::Status {
    HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                              registry_->Get(request->bank()));
    HOPFIELD_ASSIGN_OR_RETURN(const std::vector<PatternId> ids,
                              IdsFromProto(request->ids()));
    response->set_forgotten(bank->Remove(ids));
    return absl::OkStatus();
  }();
  return Finish("Forget", context, request->bank(), status, start);
}

grpc::ServerUnaryReactor* MemoryService::Retrieve(
    grpc::CallbackServerContext* context, const v1::RetrieveRequest* request,
    v1::RetrieveResponse* response) {
  const absl::Time start = absl::Now();
  const absl::Status status = [&]() -> absl::Status {
    HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                              registry_->Get(request->bank()));
    HOPFIELD_ASSIGN_OR_RETURN(RetrieveOptions options,
                              RetrieveOptionsFromProto(request->options()));
    options.threads = options_.retrieve_threads;
    options.check_continue = CallWatch(context);
    std::vector<float> queries;
    HOPFIELD_RETURN_IF_ERROR(
        FlattenQueries(request->queries(), bank->dim(), &queries));
    if (request->queries_size() == 1) {
      HOPFIELD_ASSIGN_OR_RETURN(const RetrieveResult result,
                                Retriever::Retrieve(*bank, queries, options));
      RetrieveResultToProto(result, response->add_results());
      return absl::OkStatus();
    }
    HOPFIELD_ASSIGN_OR_RETURN(
        const std::vector<RetrieveResult> results,
        Retriever::RetrieveBatch(*bank, queries, options));
    response->mutable_results()->Reserve(static_cast<int>(results.size()));
    for (const RetrieveResult& result : results) {
      RetrieveResultToProto(result, response->add_results());
    }
    return absl::OkStatus();
  }();
  return Finish("Retrieve", context, request->bank(), status, start);
}

grpc::ServerWriteReactor<v1::TrainProgress>* MemoryService::Train(
    grpc::CallbackServerContext* context, const v1::TrainRequest* request) {
  const absl::Time start = absl::Now();
  absl::Status status = registry_->Get(request->bank()).status();
  if (status.ok()) {
    status = absl::UnimplementedError(
        "Train: learning a feature map is not available in this version of "
        "hopfieldd; retrieval uses the identity map (cosine or dot scores)");
  }
  LogCall("Train", context, request->bank(), status, start);
  return new UnimplementedTrainReactor(ToGrpcStatus(status));
}

grpc::ServerUnaryReactor* MemoryService::Ping(
    grpc::CallbackServerContext* context, const v1::PingRequest* request,
    v1::PingResponse* response) {
  const absl::Time start = absl::Now();
  response->set_payload(request->payload());
  return Finish("Ping", context, "", absl::OkStatus(), start);
}

}  // namespace hopfield::server
