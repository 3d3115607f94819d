#include "server/memory_service.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <new>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"

#include "core/bank_training.h"
#include "core/retriever.h"
#include "core/status_macros.h"
#include "server/access_control.h"
#include "server/logging.h"
#include "server/proto_conversion.h"
#include "server/status_conversion.h"

namespace hopfield::server {
namespace {

// The most ids a StoreStream reply lists: gRPC's default receive limit
// (4 MiB), so any client with default settings can read the reply.
constexpr uint64_t kStreamReplyLimitBytes = 4 << 20;
// Wire bytes of a Retrieval besides its pattern and matches (scalars and
// tags), and of one Match (id, weight, score, tags, length).
constexpr uint64_t kRetrievalFixedWireBytes = 64;
constexpr uint64_t kMatchWireBytes = 24;
// A parsed proto message takes about its wire size in memory for packed
// floats, more for small messages; replies are reserved at twice their wire
// size: the message plus the serialized copy gRPC makes when sending.
constexpr uint64_t kReplyMemoryFactor = 2;

// Polled by long loops in core: the call's cancellation and deadline.
std::function<absl::Status()> CallWatch(grpc::CallbackServerContext* context) {
  return [context]() -> absl::Status {
    // The deadline first: gRPC also marks a call whose deadline passed as
    // cancelled, and the cause matters to the log and to metrics.
    if (std::chrono::system_clock::now() > context->deadline()) {
      return absl::DeadlineExceededError("the call's deadline passed");
    }
    if (context->IsCancelled()) {
      return absl::CancelledError("the client cancelled the call");
    }
    return absl::OkStatus();
  };
}

// Memory a parsed request holds (gRPC parsed it before the handler ran):
// packed floats 4 bytes each, packed ids 8 (1 to 10 on the wire), plus
// per-message overhead.
uint64_t ParsedBytes(const google::protobuf::RepeatedPtrField<v1::Pattern>& p) {
  uint64_t bytes = 64;
  for (const v1::Pattern& pattern : p) {
    bytes += 48 + static_cast<uint64_t>(pattern.values_size()) * sizeof(float);
  }
  return bytes;
}
uint64_t ParsedBytes(const google::protobuf::RepeatedPtrField<v1::Query>& q) {
  uint64_t bytes = 64;
  for (const v1::Query& query : q) {
    bytes += 48 + static_cast<uint64_t>(query.values_size()) * sizeof(float);
  }
  return bytes;
}
uint64_t ParsedBytes(const google::protobuf::RepeatedField<uint64_t>& ids) {
  return 64 + static_cast<uint64_t>(ids.size()) * sizeof(uint64_t);
}

absl::Status ReplyTooLarge(uint64_t reply_bytes, uint64_t limit,
                           absl::string_view what, absl::string_view advice) {
  return absl::ResourceExhaustedError(
      absl::StrCat("the reply would be about ", reply_bytes, " bytes (", what,
                   "), above the ", limit,
                   "-byte message limit (--max_message_bytes); ", advice));
}

// Reads a client stream of StoreRequests, applying each on the worker pool
// as it arrives.
class StoreStreamReactor final
    : public grpc::ServerReadReactor<v1::StoreRequest> {
 public:
  StoreStreamReactor(MemoryService* service,
                     grpc::CallbackServerContext* context,
                     v1::StoreResponse* response)
      : service_(service),
        context_(context),
        response_(response),
        start_(absl::Now()),
        reply_limit_(
            std::min(kStreamReplyLimitBytes, service->max_message_bytes())) {
    absl::Status status;
    if (!service_->Admit(&status)) {
      service_->RecordCall("StoreStream", context_, "", status, start_);
      Finish(ToGrpcStatus(status));
      return;
    }
    admitted_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed, or the call ended
      if (context_->IsCancelled()) {
        FinishWith(absl::CancelledError(
            absl::StrCat("the client cancelled the stream after ", stored_,
                         " patterns were stored")));
      } else if (messages_ == 0) {
        FinishWith(absl::InvalidArgumentError(
            "StoreStream: no messages, expected >= 1"));
      } else {
        response_->set_pattern_count(pattern_count_);
        response_->set_stored(stored_);
        FinishWith(absl::OkStatus());
      }
      return;
    }
    absl::StatusOr<MemoryReservation> held = service_->budget()->Reserve(
        ParsedBytes(request_.patterns()), "the parsed message");
    if (!held.ok()) {
      FinishWith(MessageError(held.status()));
      return;
    }
    message_memory_ = *std::move(held);
    const absl::Status queued =
        service_->pool()->TrySubmit([this] { ApplyMessage(); });
    if (!queued.ok()) FinishWith(MessageError(queued));
  }

  void OnDone() override { delete this; }

 private:
  // On a worker: applies request_, then reads the next message or finishes.
  void ApplyMessage() {
    const absl::Status status = RunGuarded([this]() -> absl::Status {
      HOPFIELD_RETURN_IF_ERROR(CallWatch(context_)());
      if (messages_ == 0) {
        bank_ = request_.bank();
        omit_ids_ = request_.omit_ids();
      } else if (!request_.bank().empty() && request_.bank() != bank_) {
        return absl::InvalidArgumentError(
            absl::StrCat("bank: expected \"", PrintableName(bank_),
                         "\" as in the first message, got \"",
                         PrintableName(request_.bank()), "\""));
      } else {
        request_.set_bank(bank_);
      }
      // The reply must stay readable: check before storing, not after.
      uint64_t added_bytes = 0;
      if (!omit_ids_) {
        for (const v1::Pattern& pattern : request_.patterns()) {
          added_bytes +=
              pattern.id() == 0
                  ? 10
                  : google::protobuf::io::CodedOutputStream::VarintSize64(
                        pattern.id());
        }
        if (reply_bytes_ + added_bytes + 64 > reply_limit_) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "the reply would list more ids than fit in ", reply_limit_,
              " bytes (gRPC's default receive limit); set omit_ids on the "
              "first message, or store the rest in a new stream"));
        }
      }
      const int before = response_->ids_size();
      HOPFIELD_RETURN_IF_ERROR(service_->ApplyStore(
          request_, omit_ids_ ? nullptr : response_->mutable_ids(),
          &pattern_count_));
      for (int i = before; i < response_->ids_size(); ++i) {
        reply_bytes_ += google::protobuf::io::CodedOutputStream::VarintSize64(
            response_->ids(i));
      }
      stored_ += static_cast<uint64_t>(request_.patterns_size());
      return absl::OkStatus();
    });
    message_memory_.Release();
    if (!status.ok()) {
      FinishWith(MessageError(status));
      return;
    }
    ++messages_;
    StartRead(&request_);
  }

  // Earlier messages stay stored; say how far the stream got.
  absl::Status MessageError(const absl::Status& status) const {
    return absl::Status(
        status.code(),
        absl::StrCat("message ", messages_, " (after ", stored_,
                     " patterns were stored): ", status.message()));
  }

  void FinishWith(const absl::Status& status) {
    service_->RecordCall("StoreStream", context_, bank_, status, start_);
    // OnDone may delete this reactor as soon as Finish is called: nothing
    // of `this` may be touched after it.
    MemoryService* const service = service_;
    const bool admitted = admitted_;
    Finish(ToGrpcStatus(status));
    if (admitted) service->Release();
  }

  MemoryService* const service_;
  grpc::CallbackServerContext* const context_;
  v1::StoreResponse* const response_;
  const absl::Time start_;
  const uint64_t reply_limit_;
  bool admitted_ = false;
  v1::StoreRequest request_;
  std::string bank_;
  bool omit_ids_ = false;
  uint64_t messages_ = 0;
  uint64_t stored_ = 0;
  uint64_t pattern_count_ = 0;
  uint64_t reply_bytes_ = 0;          // wire bytes of the ids listed so far
  MemoryReservation message_memory_;  // of request_ while it is applied
};

// Runs a Train on the worker pool and streams its progress: one message per
// optimiser step while the client keeps up (a step that finds a write still
// in flight only replaces the pending one, so a slow client sees fewer
// messages, never a backlog), then the final message with the result.
//
// Lifetime: gRPC calls OnDone once Finish has been called and every write
// has completed; OnDone deletes the reactor. Finish is called exactly once,
// by whichever thread sees the last write done with the outcome known, and
// nothing touches the reactor after that call (the decision is made under
// mu_, the gRPC call happens after unlocking).
class TrainReactor final : public grpc::ServerWriteReactor<v1::TrainProgress> {
 public:
  TrainReactor(MemoryService* service, grpc::CallbackServerContext* context,
               const v1::TrainRequest* request)
      : service_(service),
        context_(context),
        bank_name_(request->bank()),
        start_(absl::Now()) {
    absl::Status status;
    if (!service_->Admit(&status)) {
      FinishEarly(status);
      return;
    }
    admitted_ = true;
    absl::StatusOr<BankTrainOptions> options =
        TrainOptionsFromProto(request->options());
    absl::StatusOr<std::shared_ptr<MemoryBank>> bank =
        options.ok() ? service_->registry()->Get(request->bank())
                     : options.status();
    if (!bank.ok()) {
      FinishEarly(bank.status());
      return;
    }
    // The bank first: a second Train of it is FAILED_PRECONDITION whatever
    // else runs.
    if (!(*bank)->TryStartTraining()) {
      FinishEarly(AlreadyTrainingError(**bank));
      return;
    }
    bank_ = *std::move(bank);
    if (!service_->StartTrain()) {
      bank_->FinishTraining();
      FinishEarly(absl::ResourceExhaustedError(absl::StrCat(
          "the server already runs ", service_->max_trains(),
          " Train calls (the most at once, so that other calls keep a "
          "worker); retry when one has finished")));
      return;
    }
    training_ = true;
    options_ = *std::move(options);
    const absl::Status queued =
        service_->pool()->TrySubmit([this] { RunTraining(); });
    if (!queued.ok()) FinishEarly(queued);
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) client_gone_ = true;
      action = NextLocked();
    }
    Perform(action);
  }

  void OnDone() override {
    if (training_) {
      bank_->FinishTraining();
      service_->FinishTrain();
    }
    if (admitted_) service_->Release();
    delete this;
  }

 private:
  // What to do once mu_ is released.
  enum class Action { kNone, kWrite, kFinish };

  // On a worker.
  void RunTraining() {
    TrainHooks hooks;
    hooks.budget = service_->budget();
    hooks.claimed = true;
    hooks.check_continue = CallWatch(context_);
    hooks.on_step = [this](const TrainStep& step) {
      Action action;
      {
        std::lock_guard<std::mutex> lock(mu_);
        TrainStepToProto(step, &pending_);
        has_pending_ = true;
        action = NextLocked();
      }
      Perform(action);
      return absl::OkStatus();
    };
    absl::StatusOr<TrainReport> report = absl::InternalError("not run");
    const absl::Status status = RunGuarded([&]() -> absl::Status {
      report = TrainBank(*bank_, options_, hooks);
      return report.status();
    });
    // Free the bank and the slot before the result goes out, so a client
    // that trains again right after reading it is not refused.
    bank_->FinishTraining();
    service_->FinishTrain();
    training_ = false;
    if (service_->metrics() != nullptr) {
      service_->metrics()->RecordTrain(
          bank_->name(), !status.ok()       ? TrainOutcome::kFailed
                         : report->accepted ? TrainOutcome::kAccepted
                                            : TrainOutcome::kRejected);
    }
    service_->RecordCall("Train", context_, bank_name_, status, start_);
    Action action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      outcome_ = status;
      outcome_known_ = true;
      if (status.ok()) {
        TrainReportToProto(*report, &pending_);
        has_pending_ = true;
        final_pending_ = true;
      } else {
        has_pending_ = false;
      }
      action = NextLocked();
    }
    Perform(action);  // may end the call: nothing of `this` after it
  }

  // Decides the next step; the caller performs it after unlocking.
  Action NextLocked() {
    if (writing_ || finished_) return Action::kNone;
    if (client_gone_) {
      if (!outcome_known_) return Action::kNone;  // training notices itself
      finished_ = true;
      if (outcome_.ok()) {
        outcome_ = absl::CancelledError(
            "the client went away before the result was sent");
      }
      return Action::kFinish;
    }
    if (has_pending_) {
      // Intermediate messages go out only until the outcome is known.
      if (!outcome_known_ || final_pending_) {
        writing_ = true;
        has_pending_ = false;
        if (final_pending_) final_written_ = true;
        sending_.Swap(&pending_);
        return Action::kWrite;
      }
    }
    if (outcome_known_ && (!outcome_.ok() || final_written_)) {
      finished_ = true;
      return Action::kFinish;
    }
    return Action::kNone;
  }

  void Perform(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        StartWrite(&sending_);
        return;
      case Action::kFinish:
        Finish(ToGrpcStatus(outcome_));
        return;
    }
  }

  void FinishEarly(const absl::Status& status) {
    service_->RecordCall("Train", context_, bank_name_, status, start_);
    Finish(ToGrpcStatus(status));
  }

  MemoryService* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string bank_name_;
  const absl::Time start_;
  bool admitted_ = false;
  bool training_ = false;  // holds a train slot
  std::shared_ptr<MemoryBank> bank_;
  BankTrainOptions options_;

  std::mutex mu_;
  v1::TrainProgress pending_;  // guarded by mu_
  v1::TrainProgress sending_;  // owned by gRPC while writing_
  bool has_pending_ = false;   // guarded by mu_
  bool final_pending_ = false;
  bool final_written_ = false;
  bool writing_ = false;
  bool client_gone_ = false;
  bool finished_ = false;
  bool outcome_known_ = false;
  absl::Status outcome_;
};

}  // namespace

absl::Status RunGuarded(const std::function<absl::Status()>& work) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "out of memory: an allocation failed while serving the call; the "
        "call changed nothing");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "unexpected exception while serving the call: ", e.what()));
  } catch (...) {
    return absl::InternalError("unexpected exception while serving the call");
  }
}

std::string PrintableName(absl::string_view name) {
  constexpr size_t kShown = 64;
  if (name.size() <= kShown) return absl::CHexEscape(name);
  return absl::StrCat(absl::CHexEscape(name.substr(0, kShown)), "...(",
                      name.size(), " bytes)");
}

MemoryService::MemoryService(BankRegistry* registry, WorkerPool* pool,
                             std::shared_ptr<MemoryBudget> budget,
                             MemoryServiceOptions options)
    : registry_(registry),
      pool_(pool),
      budget_(std::move(budget)),
      options_(options) {}

void MemoryService::SetLoading(bool loading) {
  std::lock_guard<std::mutex> lock(mu_);
  loading_ = loading;
}

bool MemoryService::Admit(absl::Status* status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (loading_) {
    *status = absl::UnavailableError(
        "the server is starting up: loading its banks from the data "
        "directory; retry shortly");
    return false;
  }
  if (draining_) {
    *status = absl::UnavailableError(
        "the server is shutting down; retry on another instance");
    return false;
  }
  ++in_flight_;
  return true;
}

void MemoryService::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_.notify_all();
}

uint64_t MemoryService::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

bool MemoryService::Drain(absl::Duration grace) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  return idle_.wait_for(lock, absl::ToChronoNanoseconds(grace),
                        [this] { return in_flight_ == 0; });
}

void MemoryService::RecordCall(absl::string_view method,
                               grpc::CallbackServerContext* context,
                               absl::string_view bank,
                               const absl::Status& status,
                               absl::Time start) const {
  if (options_.metrics == nullptr && !options_.access_log) return;
  const absl::Duration took = absl::Now() - start;
  if (options_.metrics != nullptr) {
    options_.metrics->RecordRpc(method, status.code(), took);
  }
  LogAccess(method, context, bank, status, took);
}

void MemoryService::LogAccess(absl::string_view method,
                              grpc::CallbackServerContext* context,
                              absl::string_view bank,
                              const absl::Status& status,
                              absl::Duration took) const {
  if (!options_.access_log) return;
  // The caller's key by its id (access_control.h), never the key; "-"
  // without one.
  std::string key = "-";
  const auto header = context->client_metadata().find("authorization");
  if (header != context->client_metadata().end()) {
    const std::optional<absl::string_view> token = BearerToken(
        absl::string_view(header->second.data(), header->second.size()));
    if (token.has_value()) key = KeyId(*token);
  }
  HOPFIELD_LOG(INFO) << "rpc method=" << method << " peer=" << context->peer()
                     << " key=" << key
                     << " code=" << absl::StatusCodeToString(status.code())
                     << " latency_ms=" << absl::ToDoubleMilliseconds(took)
                     << " bank=" << PrintableName(bank);
}

void MemoryService::RecordAfterReply(absl::string_view bank,
                                     absl::Span<const RetrieveResult> results,
                                     CallMemory* memory) const {
  if (options_.metrics == nullptr) return;
  memory->after_reply = [metrics = options_.metrics, bank = std::string(bank),
                         summary = PrometheusMetrics::Summarize(results)] {
    metrics->RecordRetrievals(bank, summary);
  };
}

grpc::ServerUnaryReactor* MemoryService::Finish(
    absl::string_view method, grpc::CallbackServerContext* context,
    absl::string_view bank, const absl::Status& status,
    absl::Time start) const {
  RecordCall(method, context, bank, status, start);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* MemoryService::RunInline(
    absl::string_view method, grpc::CallbackServerContext* context,
    absl::string_view bank, const std::function<absl::Status()>& work) {
  const absl::Time start = absl::Now();
  absl::Status status;
  if (!Admit(&status)) return Finish(method, context, bank, status, start);
  status = RunGuarded(work);
  grpc::ServerUnaryReactor* reactor =
      Finish(method, context, bank, status, start);
  Release();
  return reactor;
}

grpc::ServerUnaryReactor* MemoryService::RunHeavy(
    absl::string_view method, grpc::CallbackServerContext* context,
    absl::string_view bank, uint64_t request_bytes,
    std::function<absl::Status(CallMemory*)> work) {
  const absl::Time start = absl::Now();
  absl::Status status;
  if (!Admit(&status)) return Finish(method, context, bank, status, start);
  // The parsed request is held while the call waits and runs: count it, so
  // queued calls cannot pile up requests beyond the budget.
  absl::StatusOr<MemoryReservation> request_memory =
      budget_->Reserve(request_bytes, "the parsed request");
  if (!request_memory.ok()) {
    grpc::ServerUnaryReactor* reactor =
        Finish(method, context, bank, request_memory.status(), start);
    Release();
    return reactor;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // std::function needs a copyable task: share the move-only reservation.
  auto held = std::make_shared<MemoryReservation>(*std::move(request_memory));
  auto task = [this, method, context, reactor, start, bank = std::string(bank),
               work = std::move(work), held] {
    // A call whose deadline passed (or that was cancelled) while queued
    // does no work.
    CallMemory memory;  // released once gRPC has the reply
    absl::Status result = CallWatch(context)();
    if (result.ok()) result = RunGuarded([&] { return work(&memory); });
    // The access log reads the context, which ends with the call; metrics
    // are recorded after the reply has gone.
    const absl::Duration took = absl::Now() - start;
    LogAccess(method, context, bank, result, took);
    reactor->Finish(ToGrpcStatus(result));
    if (options_.metrics != nullptr) {
      options_.metrics->RecordRpc(method, result.code(), took);
    }
    if (memory.after_reply) memory.after_reply();
    memory.held.clear();
    held->Release();
    Release();
  };
  status = pool_->TrySubmit(std::move(task));
  if (!status.ok()) {
    RecordCall(method, context, bank, status, start);
    reactor->Finish(ToGrpcStatus(status));
    Release();
  }
  return reactor;
}

grpc::ServerUnaryReactor* MemoryService::CreateBank(
    grpc::CallbackServerContext* context, const v1::CreateBankRequest* request,
    v1::Bank* response) {
  return RunInline(
      "CreateBank", context, request->name(), [&]() -> absl::Status {
        HOPFIELD_ASSIGN_OR_RETURN(const BankOptions options,
                                  BankOptionsFromProto(request->config()));
        HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                                  registry_->Create(request->name(), options));
        BankToProto(*bank, response);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* MemoryService::GetBank(
    grpc::CallbackServerContext* context, const v1::GetBankRequest* request,
    v1::Bank* response) {
  return RunInline("GetBank", context, request->name(), [&]() -> absl::Status {
    HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                              registry_->Get(request->name()));
    BankToProto(*bank, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MemoryService::ListBanks(
    grpc::CallbackServerContext* context,
    const v1::ListBanksRequest* /*request*/, v1::ListBanksResponse* response) {
  return RunInline("ListBanks", context, "", [&]() -> absl::Status {
    for (const std::shared_ptr<MemoryBank>& bank : registry_->List()) {
      BankToProto(*bank, response->add_banks());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MemoryService::DeleteBank(
    grpc::CallbackServerContext* context, const v1::DeleteBankRequest* request,
    v1::DeleteBankResponse* /*response*/) {
  return RunInline("DeleteBank", context, request->name(), [&] {
    absl::Status status = registry_->Drop(request->name());
    if (status.ok() && options_.metrics != nullptr) {
      options_.metrics->BankDeleted(request->name());
    }
    return status;
  });
}

absl::Status MemoryService::ApplyStore(
    const v1::StoreRequest& request,
    google::protobuf::RepeatedField<uint64_t>* ids, uint64_t* pattern_count) {
  HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                            registry_->Get(request.bank()));
  // Shapes first, so a malformed request reserves nothing.
  HOPFIELD_RETURN_IF_ERROR(CheckPatternShapes(request.patterns(), bank->dim()));
  const auto count = static_cast<uint64_t>(request.patterns_size());
  HOPFIELD_ASSIGN_OR_RETURN(
      const MemoryReservation copy,
      budget_->Reserve(
          count * (uint64_t{bank->dim()} * sizeof(float) + sizeof(PatternId)),
          absl::StrCat("the copy of ", count, " patterns")));
  std::vector<PatternId> requested;
  std::vector<float> values;
  HOPFIELD_RETURN_IF_ERROR(
      FlattenPatterns(request.patterns(), bank->dim(), &requested, &values));
  HOPFIELD_ASSIGN_OR_RETURN(const std::vector<PatternId> stored,
                            bank->Add(requested, values));
  if (ids != nullptr) ids->Add(stored.begin(), stored.end());
  *pattern_count = bank->size();
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* MemoryService::Store(
    grpc::CallbackServerContext* context, const v1::StoreRequest* request,
    v1::StoreResponse* response) {
  return RunHeavy(
      "Store", context, request->bank(), ParsedBytes(request->patterns()),
      [this, request, response](CallMemory*) -> absl::Status {
        uint64_t pattern_count = 0;
        HOPFIELD_RETURN_IF_ERROR(
            ApplyStore(*request, response->mutable_ids(), &pattern_count));
        response->set_pattern_count(pattern_count);
        response->set_stored(static_cast<uint64_t>(request->patterns_size()));
        return absl::OkStatus();
      });
}

grpc::ServerReadReactor<v1::StoreRequest>* MemoryService::StoreStream(
    grpc::CallbackServerContext* context, v1::StoreResponse* response) {
  return new StoreStreamReactor(this, context, response);
}

grpc::ServerUnaryReactor* MemoryService::GetPatterns(
    grpc::CallbackServerContext* context, const v1::GetPatternsRequest* request,
    v1::GetPatternsResponse* response) {
  return RunHeavy(
      "GetPatterns", context, request->bank(), ParsedBytes(request->ids()),
      [this, request, response](CallMemory* memory) -> absl::Status {
        HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                                  registry_->Get(request->bank()));
        HOPFIELD_ASSIGN_OR_RETURN(const absl::Span<const PatternId> ids,
                                  IdsFromProto(request->ids()));
        // Sized from the request before anything is built.
        const auto count = static_cast<uint64_t>(request->ids_size());
        const uint64_t dim = bank->dim();
        const uint64_t wire = count * (dim * sizeof(float) + 24);
        if (wire > options_.max_message_bytes) {
          return ReplyTooLarge(
              wire, options_.max_message_bytes,
              absl::StrCat(count, " patterns of ", dim, " floats"),
              "ask for fewer ids per call");
        }
        HOPFIELD_ASSIGN_OR_RETURN(
            MemoryReservation reply,
            budget_->Reserve(
                kReplyMemoryFactor * wire,
                absl::StrCat("the reply of ", count, " patterns")));
        memory->held.push_back(std::move(reply));
        response->mutable_patterns()->Reserve(request->ids_size());
        HOPFIELD_RETURN_IF_ERROR(bank->VisitPatterns(
            ids, [&](size_t i, absl::Span<const float> values) {
              v1::Pattern* pattern = response->add_patterns();
              pattern->set_id(ids[i]);
              pattern->mutable_values()->Add(values.begin(), values.end());
            }));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* MemoryService::Forget(
    grpc::CallbackServerContext* context, const v1::ForgetRequest* request,
    v1::ForgetResponse* response) {
  return RunHeavy(
      "Forget", context, request->bank(), ParsedBytes(request->ids()),
      [this, request, response](CallMemory*) -> absl::Status {
        HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                                  registry_->Get(request->bank()));
        HOPFIELD_ASSIGN_OR_RETURN(const absl::Span<const PatternId> ids,
                                  IdsFromProto(request->ids()));
        HOPFIELD_ASSIGN_OR_RETURN(const uint64_t forgotten, bank->Remove(ids));
        response->set_forgotten(forgotten);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* MemoryService::Retrieve(
    grpc::CallbackServerContext* context, const v1::RetrieveRequest* request,
    v1::RetrieveResponse* response) {
  return RunHeavy(
      "Retrieve", context, request->bank(), ParsedBytes(request->queries()),
      [this, context, request, response](CallMemory* memory) -> absl::Status {
        HOPFIELD_ASSIGN_OR_RETURN(const std::shared_ptr<MemoryBank> bank,
                                  registry_->Get(request->bank()));
        HOPFIELD_ASSIGN_OR_RETURN(RetrieveOptions options,
                                  RetrieveOptionsFromProto(request->options()));
        HOPFIELD_RETURN_IF_ERROR(options.Validate());
        HOPFIELD_RETURN_IF_ERROR(
            CheckQueryShapes(request->queries(), bank->dim()));
        // The reply's size, from the request and the bank, before any work.
        const auto count = static_cast<uint64_t>(request->queries_size());
        const uint64_t dim = bank->dim();
        const uint64_t matches =
            std::min<uint64_t>(std::max(1u, options.return_matches),
                               std::max<uint64_t>(1, bank->size()));
        const uint32_t iterations = options.max_iterations > 0
                                        ? options.max_iterations
                                        : bank->options().max_iterations;
        const uint64_t per_query =
            kRetrievalFixedWireBytes + matches * kMatchWireBytes +
            (options.omit_pattern ? 0 : dim * sizeof(float) + 8) +
            (options.return_energy_trace ? uint64_t{iterations} * 9 : 0);
        if (count * per_query > options_.max_message_bytes) {
          return ReplyTooLarge(
              count * per_query, options_.max_message_bytes,
              absl::StrCat(count, " results with ", matches, " matches",
                           options.omit_pattern ? "" : " and a pattern",
                           " each"),
              "send fewer queries per call, ask for fewer return_matches, or "
              "set "
              "omit_pattern");
        }
        HOPFIELD_ASSIGN_OR_RETURN(
            MemoryReservation reply,
            budget_->Reserve(
                kReplyMemoryFactor * count * per_query +
                    count * dim * sizeof(float),
                absl::StrCat("the queries and reply of ", count, " queries")));
        memory->held.push_back(std::move(reply));
        options.threads = options_.retrieve_threads;
        options.pool = pool_;
        options.budget = budget_.get();
        options.check_continue = CallWatch(context);
        std::vector<float> queries;
        HOPFIELD_RETURN_IF_ERROR(
            FlattenQueries(request->queries(), bank->dim(), &queries));
        if (request->queries_size() == 1) {
          HOPFIELD_ASSIGN_OR_RETURN(
              const RetrieveResult result,
              Retriever::Retrieve(*bank, queries, options));
          RecordAfterReply(bank->name(), {&result, 1}, memory);
          RetrieveResultToProto(result, response->add_results());
          return absl::OkStatus();
        }
        HOPFIELD_ASSIGN_OR_RETURN(
            const std::vector<RetrieveResult> results,
            Retriever::RetrieveBatch(*bank, queries, options));
        RecordAfterReply(bank->name(), results, memory);
        response->mutable_results()->Reserve(static_cast<int>(results.size()));
        for (const RetrieveResult& result : results) {
          RetrieveResultToProto(result, response->add_results());
        }
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::TrainProgress>* MemoryService::Train(
    grpc::CallbackServerContext* context, const v1::TrainRequest* request) {
  return new TrainReactor(this, context, request);
}

bool MemoryService::StartTrain() {
  std::lock_guard<std::mutex> lock(mu_);
  if (trains_ >= options_.max_trains) return false;
  ++trains_;
  return true;
}

void MemoryService::FinishTrain() {
  std::lock_guard<std::mutex> lock(mu_);
  --trains_;
}

grpc::ServerUnaryReactor* MemoryService::Backup(
    grpc::CallbackServerContext* context, const v1::BackupRequest* request,
    v1::BackupResponse* response) {
  return RunHeavy(
      "Backup", context, "", 0,
      [this, request, response](CallMemory*) -> absl::Status {
        if (options_.storage == nullptr) {
          return absl::FailedPreconditionError(
              "this server keeps no data directory (--data_dir) to back up");
        }
        const std::string& dir = request->dir();
        if (dir.empty() || dir.front() != '/') {
          return absl::InvalidArgumentError(absl::StrCat(
              "dir: expected an absolute path on the server's machine, got \"",
              absl::CEscape(dir.substr(0, 256)), "\""));
        }
        const absl::Time start = absl::Now();
        const uint64_t banks = registry_->size();
        HOPFIELD_RETURN_IF_ERROR(options_.storage->Checkpoint(dir));
        response->set_dir(dir);
        response->set_banks(banks);
        response->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
        HOPFIELD_LOG(INFO) << "backup of " << banks << " banks written to "
                           << absl::CEscape(dir) << " in "
                           << response->seconds() << " s";
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* MemoryService::Ping(
    grpc::CallbackServerContext* context, const v1::PingRequest* request,
    v1::PingResponse* response) {
  return RunInline("Ping", context, "", [&] {
    response->set_payload(request->payload());
    return absl::OkStatus();
  });
}

}  // namespace hopfield::server
