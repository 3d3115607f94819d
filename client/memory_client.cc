#include "client/memory_client.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace hopfield::client {
namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::StatusOr<std::string> ReadFile(absl::string_view what,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ClientOptions& options) {
  if (!options.UsesTls()) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate (mutual TLS) needs both tls_cert_file and "
        "tls_key_file; to trust a server's certificate, use tls_ca_file");
  }
  grpc::SslCredentialsOptions ssl;
  struct Source {
    const char* what;
    const std::string& path;
    std::string* pem;
  };
  for (const Source& source :
       {Source{"tls_ca_file", options.tls_ca_file, &ssl.pem_root_certs},
        Source{"tls_cert_file", options.tls_cert_file, &ssl.pem_cert_chain},
        Source{"tls_key_file", options.tls_key_file, &ssl.pem_private_key}}) {
    if (source.path.empty()) continue;
    absl::StatusOr<std::string> pem = ReadFile(source.what, source.path);
    if (!pem.ok()) return pem.status();
    *source.pem = *std::move(pem);
  }
  return grpc::SslCredentials(ssl);
}

// The channel for `options`; on a bad option (an unreadable TLS file), a
// plaintext channel that is never used and the error in *error.
std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options,
                                           absl::Status* error) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
  arguments.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.own_connection) {
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  if (!options.tls_server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.tls_server_name);
  }
  // gRPC aborts the process on a header value it cannot send (and logs
  // the value): refuse such a key here, without quoting it.
  for (const char c : options.api_key) {
    if (c < 0x21 || c > 0x7E) {
      *error = absl::InvalidArgumentError(
          "api_key holds a character a header cannot carry (only visible "
          "ASCII; a trailing newline or carriage return from a file?)");
      break;
    }
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeCredentials(options);
  if (!credentials.ok()) {
    if (error->ok()) *error = credentials.status();
    credentials = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(options.target, *credentials, arguments);
}

}  // namespace

std::string ApiKeyFromEnvironment() {
  const char* key = std::getenv("HOPFIELD_API_KEY");
  return key == nullptr ? "" : std::string(absl::StripAsciiWhitespace(key));
}

MemoryClient::MemoryClient(const ClientOptions& options)
    : options_(options),
      channel_(MakeChannel(options, &options_error_)),
      stub_(v1::MemoryService::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<MemoryClient>> MemoryClient::Connect(
    const ClientOptions& options) {
  auto client = std::make_unique<MemoryClient>(options);
  if (!client->options_error_.ok()) return client->options_error_;
  return client;
}

MemoryClient::MemoryClient(std::shared_ptr<grpc::Channel> channel,
                           ClientOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::MemoryService::NewStub(channel_)) {}

absl::Status MemoryClient::Prepare(grpc::ClientContext* context) const {
  if (!options_error_.ok()) return options_error_;
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.timeout));
  if (!options_.api_key.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.api_key);
  }
  return absl::OkStatus();
}

size_t MemoryClient::RowsPerRequest(size_t dim) const {
  // float32 values cost 4 bytes each in a packed field, plus ~16 bytes of
  // framing per pattern (id, tags, lengths).
  const size_t budget = static_cast<size_t>(options_.max_message_bytes) * 3 / 4;
  return std::max<size_t>(1, budget / (dim * 4 + 16));
}

absl::StatusOr<v1::Bank> MemoryClient::CreateBank(
    const std::string& name, const v1::BankConfig& config) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::CreateBankRequest request;
  request.set_name(name);
  *request.mutable_config() = config;
  v1::Bank bank;
  absl::Status status = FromGrpc(stub_->CreateBank(&context, request, &bank));
  if (!status.ok()) return status;
  return bank;
}

absl::StatusOr<v1::Bank> MemoryClient::GetBank(const std::string& name) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::GetBankRequest request;
  request.set_name(name);
  v1::Bank bank;
  absl::Status status = FromGrpc(stub_->GetBank(&context, request, &bank));
  if (!status.ok()) return status;
  return bank;
}

absl::StatusOr<std::vector<v1::Bank>> MemoryClient::ListBanks() {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::ListBanksResponse response;
  absl::Status status = FromGrpc(stub_->ListBanks(&context, {}, &response));
  if (!status.ok()) return status;
  return std::vector<v1::Bank>(response.banks().begin(),
                               response.banks().end());
}

absl::Status MemoryClient::DeleteBank(const std::string& name) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::DeleteBankRequest request;
  request.set_name(name);
  v1::DeleteBankResponse response;
  return FromGrpc(stub_->DeleteBank(&context, request, &response));
}

absl::StatusOr<std::vector<uint64_t>> MemoryClient::Store(
    const std::string& bank, size_t dim, absl::Span<const float> values,
    absl::Span<const uint64_t> ids, const ProgressCallback& progress) {
  if (dim == 0 || values.size() % dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "values: expected a multiple of dim ", dim, ", got ", values.size()));
  }
  const size_t rows = values.size() / dim;
  if (!ids.empty() && ids.size() != rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ids: expected one per pattern (", rows, "), got ", ids.size()));
  }
  // Streams of at most rows_per_stream patterns, so that each reply (which
  // lists the stream's ids, up to 10 bytes each) stays under the server's
  // reply limit: 4 MiB, or the message limit when smaller.
  const size_t reply_limit = std::min<size_t>(
      size_t{4} << 20, static_cast<size_t>(options_.max_message_bytes));
  const size_t rows_per_stream = std::max<size_t>(1, reply_limit * 3 / 40);
  std::vector<uint64_t> stored;
  stored.reserve(rows);
  size_t first = 0;
  do {
    const size_t count = std::min(rows_per_stream, rows - first);
    absl::StatusOr<std::vector<uint64_t>> part =
        StoreStream(bank, dim, values.subspan(first * dim, count * dim),
                    ids.empty() ? ids : ids.subspan(first, count),
                    [&](size_t done, size_t /*total*/) {
                      if (progress) progress(first + done, rows);
                    });
    if (!part.ok()) {
      if (first == 0) return part.status();
      return absl::Status(
          part.status().code(),
          absl::StrCat("after ", first,
                       " patterns were stored: ", part.status().message()));
    }
    stored.insert(stored.end(), part->begin(), part->end());
    first += count;
  } while (first < rows);
  return stored;
}

absl::StatusOr<std::vector<uint64_t>> MemoryClient::StoreStream(
    const std::string& bank, size_t dim, absl::Span<const float> values,
    absl::Span<const uint64_t> ids, const ProgressCallback& progress) {
  const size_t rows = values.size() / dim;
  grpc::ClientContext context;
  // One stream per call: its deadline scales with the size.
  const size_t per_request = RowsPerRequest(dim);
  const size_t requests =
      std::max<size_t>(1, (rows + per_request - 1) / per_request);
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(
                           options_.timeout * static_cast<double>(requests)));
  v1::StoreResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::StoreRequest>> writer =
      stub_->StoreStream(&context, &response);
  size_t first = 0;
  do {
    const size_t count = std::min(per_request, rows - first);
    v1::StoreRequest request;
    request.set_bank(bank);
    for (size_t r = first; r < first + count; ++r) {
      v1::Pattern* pattern = request.add_patterns();
      if (!ids.empty()) pattern->set_id(ids[r]);
      pattern->mutable_values()->Assign(
          values.begin() + static_cast<std::ptrdiff_t>(r * dim),
          values.begin() + static_cast<std::ptrdiff_t>((r + 1) * dim));
    }
    if (!writer->Write(request)) break;  // the server ended the stream
    if (progress) progress(first + count, rows);
    first += count;
  } while (first < rows);
  writer->WritesDone();
  absl::Status status = FromGrpc(writer->Finish());
  if (!status.ok()) return status;
  return std::vector<uint64_t>(response.ids().begin(), response.ids().end());
}

absl::StatusOr<std::vector<v1::Pattern>> MemoryClient::GetPatterns(
    const std::string& bank, absl::Span<const uint64_t> ids) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::GetPatternsRequest request;
  request.set_bank(bank);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::GetPatternsResponse response;
  absl::Status status =
      FromGrpc(stub_->GetPatterns(&context, request, &response));
  if (!status.ok()) return status;
  return std::vector<v1::Pattern>(response.patterns().begin(),
                                  response.patterns().end());
}

absl::StatusOr<uint64_t> MemoryClient::Forget(const std::string& bank,
                                              absl::Span<const uint64_t> ids) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::ForgetRequest request;
  request.set_bank(bank);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  v1::ForgetResponse response;
  absl::Status status = FromGrpc(stub_->Forget(&context, request, &response));
  if (!status.ok()) return status;
  return response.forgotten();
}

absl::StatusOr<std::vector<v1::Retrieval>> MemoryClient::Retrieve(
    const std::string& bank, size_t dim, absl::Span<const float> queries,
    const v1::RetrieveOptions& options, size_t batch,
    const ProgressCallback& progress) {
  if (dim == 0 || queries.size() % dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "queries: expected a multiple of dim ", dim, ", got ", queries.size()));
  }
  const size_t rows = queries.size() / dim;
  // Responses carry the pattern (dim floats) plus the matches per query.
  const size_t per_request = std::max<size_t>(
      1, std::min({batch, RowsPerRequest(dim + size_t{3} *
                                                   options.return_matches())}));
  std::vector<v1::Retrieval> results;
  results.reserve(rows);
  size_t first = 0;
  do {
    const size_t count = std::min(per_request, rows - first);
    grpc::ClientContext context;
    if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
    v1::RetrieveRequest request;
    request.set_bank(bank);
    *request.mutable_options() = options;
    for (size_t r = first; r < first + count; ++r) {
      request.add_queries()->mutable_values()->Assign(
          queries.begin() + static_cast<std::ptrdiff_t>(r * dim),
          queries.begin() + static_cast<std::ptrdiff_t>((r + 1) * dim));
    }
    v1::RetrieveResponse response;
    absl::Status status =
        FromGrpc(stub_->Retrieve(&context, request, &response));
    if (!status.ok()) {
      if (first == 0 || status.message().empty()) return status;
      return absl::Status(
          status.code(),
          absl::StrCat("queries from row ", first, ": ", status.message()));
    }
    for (v1::Retrieval& result : *response.mutable_results()) {
      results.push_back(std::move(result));
    }
    if (progress) progress(first + count, rows);
    first += count;
  } while (first < rows);
  return results;
}

absl::StatusOr<v1::TrainResult> MemoryClient::Train(
    const std::string& bank, const v1::TrainOptions& options,
    const std::function<void(const v1::TrainProgress&)>& on_progress) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::TrainRequest request;
  request.set_bank(bank);
  *request.mutable_options() = options;
  std::unique_ptr<grpc::ClientReader<v1::TrainProgress>> reader =
      stub_->Train(&context, request);
  v1::TrainProgress message;
  v1::TrainResult result;
  while (reader->Read(&message)) {
    if (on_progress) on_progress(message);
    if (message.done()) result = message.result();
  }
  absl::Status status = FromGrpc(reader->Finish());
  if (!status.ok()) return status;
  return result;
}

absl::Status MemoryClient::Ping(size_t payload_bytes) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::PingRequest request;
  request.set_payload(std::string(payload_bytes, 'x'));
  v1::PingResponse response;
  return FromGrpc(stub_->Ping(&context, request, &response));
}

absl::StatusOr<v1::BackupResponse> MemoryClient::Backup(
    const std::string& dir) {
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  v1::BackupRequest request;
  request.set_dir(dir);
  v1::BackupResponse response;
  absl::Status status = FromGrpc(stub_->Backup(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<bool> MemoryClient::Health(const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  if (absl::Status ready = Prepare(&context); !ready.ok()) return ready;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = FromGrpc(health->Check(&context, request, &response));
  if (!status.ok()) return status;
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace hopfield::client
