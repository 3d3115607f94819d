// File: memory_client.h
//
// MemoryClient: a C++ client for hopfield.v1.MemoryService. It owns the
// stub, gives every call a deadline, returns absl::StatusOr (the server's
// gRPC code, one to one), and splits large Store and Retrieve calls into
// requests under the message-size limit.
//
//   ClientOptions options;
//   options.target = "127.0.0.1:50051";
//   MemoryClient client(options);
//   HOPFIELD_ASSIGN_OR_RETURN(v1::Bank bank, client.CreateBank("faces",
//   config)); HOPFIELD_ASSIGN_OR_RETURN(std::vector<uint64_t> ids,
//                             client.Store("faces", 784, values));
#ifndef HOPFIELD_CLIENT_MEMORY_CLIENT_H_
#define HOPFIELD_CLIENT_MEMORY_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpcpp/grpcpp.h"

#include "hopfield/v1/memory_service.grpc.pb.h"

namespace hopfield::client {

struct ClientOptions {
  // host:port of hopfieldd.
  std::string target = "127.0.0.1:50051";
  // Deadline of each RPC (each request of a split call has its own).
  absl::Duration timeout = absl::Seconds(60);
  // The server's message limit; split calls keep each request at most
  // ~3/4 of it.
  int max_message_bytes = 64 << 20;

  // TLS: used when `tls` is true or any tls_* file is set.
  bool tls = false;
  // PEM certificates that verify the server (its CA, or its self-signed
  // certificate); empty: the system's roots.
  std::string tls_ca_file;
  // PEM client certificate chain and its key, for mutual TLS: both or
  // neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry; empty: the target's host.
  std::string tls_server_name;
  // Sent as `authorization: Bearer KEY` on every call; empty: none.
  std::string api_key;
  // A connection of its own, as a separate process would have (gRPC
  // otherwise shares one among the channels of a process to the same
  // target with the same options): load generators.
  bool own_connection = false;

  // Whether the channel uses TLS: `tls` or any tls_* option set (a server
  // name is only ever checked over TLS, so it turns TLS on too).
  bool UsesTls() const {
    return tls || !tls_ca_file.empty() || !tls_cert_file.empty() ||
           !tls_key_file.empty() || !tls_server_name.empty();
  }
};

// $HOPFIELD_API_KEY without surrounding whitespace (a CRLF file's
// `$(cat keys)` leaves a CR); "" when unset. The environment keeps a key out
// of `ps` and shell history.
std::string ApiKeyFromEnvironment();

// Called after each request of a split call with (done, total) items.
using ProgressCallback = std::function<void(uint64_t done, uint64_t total)>;

// Thread-safe: any number of concurrent calls.
class MemoryClient {
 public:
  // Connects lazily to options.target, over TLS when options.UsesTls().
  // The TLS files are read now; when one cannot be read (or only one of
  // tls_cert_file and tls_key_file is set) every call returns that
  // INVALID_ARGUMENT error: Connect reports it at once instead.
  explicit MemoryClient(const ClientOptions& options);
  // As the constructor. Errors: INVALID_ARGUMENT naming an unreadable TLS
  // file or a client certificate without its key (or the reverse), or for
  // an api_key with a character a header cannot carry (only visible ASCII;
  // the message never quotes the key).
  static absl::StatusOr<std::unique_ptr<MemoryClient>> Connect(
      const ClientOptions& options);
  // Uses an existing channel (in-process servers, custom credentials).
  MemoryClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);
  MemoryClient(const MemoryClient&) = delete;
  MemoryClient& operator=(const MemoryClient&) = delete;

  absl::StatusOr<v1::Bank> CreateBank(const std::string& name,
                                      const v1::BankConfig& config);
  absl::StatusOr<v1::Bank> GetBank(const std::string& name);
  absl::StatusOr<std::vector<v1::Bank>> ListBanks();
  absl::Status DeleteBank(const std::string& name);

  // Stores rows of `values` (dim floats each) with `ids` (empty, or one per
  // row; 0 = assign). Split into requests under the message limit, sent in
  // order over StoreStreams of at most ~300,000 patterns (so each reply,
  // which lists the ids, stays under the server's 4 MiB reply limit); each
  // request is all or nothing. Returns the ids in row order. On error, the
  // message says how many patterns were stored before it.
  absl::StatusOr<std::vector<uint64_t>> Store(
      const std::string& bank, size_t dim, absl::Span<const float> values,
      absl::Span<const uint64_t> ids = {},
      const ProgressCallback& progress = {});

  // One StoreStream of all of `values` (Store splits into several).
  absl::StatusOr<std::vector<uint64_t>> StoreStream(
      const std::string& bank, size_t dim, absl::Span<const float> values,
      absl::Span<const uint64_t> ids, const ProgressCallback& progress);

  absl::StatusOr<std::vector<v1::Pattern>> GetPatterns(
      const std::string& bank, absl::Span<const uint64_t> ids);
  // Returns how many of `ids` were stored.
  absl::StatusOr<uint64_t> Forget(const std::string& bank,
                                  absl::Span<const uint64_t> ids);

  // Retrieves rows of `queries` (dim floats each), split into requests under
  // the message limit (and at most `batch` queries per request). Results in
  // query order.
  absl::StatusOr<std::vector<v1::Retrieval>> Retrieve(
      const std::string& bank, size_t dim, absl::Span<const float> queries,
      const v1::RetrieveOptions& options = {}, size_t batch = 256,
      const ProgressCallback& progress = {});

  // Runs Train, calling `on_progress` for each streamed message; returns the
  // final result.
  absl::StatusOr<v1::TrainResult> Train(
      const std::string& bank, const v1::TrainOptions& options,
      const std::function<void(const v1::TrainProgress&)>& on_progress = {});

  // Round trip of a Ping carrying `payload_bytes` bytes (the transport
  // baseline).
  absl::Status Ping(size_t payload_bytes = 0);

  // Backup: a consistent copy of the server's data directory written to
  // `dir` (absolute, on the server's machine, must not exist).
  absl::StatusOr<v1::BackupResponse> Backup(const std::string& dir);

  // grpc.health.v1 Check of `service` ("" = the whole server): true when
  // SERVING.
  absl::StatusOr<bool> Health(const std::string& service = "");

 private:
  // Deadline and API key; the options' error, if any.
  absl::Status Prepare(grpc::ClientContext* context) const;
  // Rows of `dim` floats that fit in one request.
  size_t RowsPerRequest(size_t dim) const;

  const ClientOptions options_;
  // A bad option (an unreadable TLS file): every call returns it.
  absl::Status options_error_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MemoryService::Stub> stub_;
};

}  // namespace hopfield::client

#endif  // HOPFIELD_CLIENT_MEMORY_CLIENT_H_
