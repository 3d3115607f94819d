// File: server.h
//
// Server: hopfieldd's gRPC server. Owns the bank registry, the
// MemoryService, the standard health service (overall "" and
// "hopfield.v1.MemoryService": NOT_SERVING until ready and while draining),
// server reflection (grpc.reflection.v1alpha from the library, v1 from
// ReflectionV1Service) and the Prometheus /metrics endpoint
// (PrometheusMetrics, served from the start, through loading and draining).
//
//   HOPFIELD_ASSIGN_OR_RETURN(auto server, Server::Start(config));
//   ... server->port() ...
//   server->Shutdown(absl::Seconds(5));
#ifndef HOPFIELD_SERVER_SERVER_H_
#define HOPFIELD_SERVER_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/exposer.h"

#include "core/bank_registry.h"
#include "core/memory_budget.h"
#include "core/rocksdb_storage.h"
#include "core/worker_pool.h"
#include "server/access_control.h"
#include "server/connection_acceptor.h"
#include "server/memory_service.h"
#include "server/prometheus_metrics.h"
#include "server/reflection_v1.h"
#include "server/server_config.h"
#include "server/transport_security.h"

namespace hopfield::server {

// The name health reports the service under.
inline constexpr absl::string_view kServiceName = "hopfield.v1.MemoryService";

// Thread-safe. Not copyable.
class Server {
 public:
  // Opens the data directory (config.data_dir), binds `config.listen` and
  // starts answering: health NOT_SERVING and every MemoryService call
  // UNAVAILABLE while the stored banks load (logged: banks, patterns,
  // seconds; each bank that cannot be loaded on an ERROR line, kept aside
  // with its DATA_LOSS), then SERVING. Returns once serving.
  // Errors: INVALID_ARGUMENT for a bad config (including a TLS file or an
  // API keys file that cannot be read or is malformed); UNAVAILABLE when an
  // address (gRPC or metrics) cannot be bound or the data directory cannot be
  // opened (another server holds it, no permission); DATA_LOSS when the
  // store is damaged beyond a torn last record.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerConfig& config);

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // The bound gRPC port.
  int port() const { return port_; }
  // The bound /metrics port (0 when metrics are off).
  int metrics_port() const { return metrics_port_; }

  // Re-reads config.api_keys_file and checks every later call against the
  // keys it lists (hopfieldd does this on SIGHUP). Calls already admitted
  // are not affected. Errors: FAILED_PRECONDITION when the server was
  // started without keys; as ApiKeys::Load, and then the keys in force stay.
  absl::Status ReloadApiKeys();
  // Re-reads the TLS files now (also done every config.tls.reload_interval):
  // true when a new set was taken. A set that is incomplete, unparsable or
  // mismatched is not taken (logged once as a WARNING); the previous one
  // keeps serving. Errors: FAILED_PRECONDITION with TLS off; as
  // TlsFileMirror::Reload.
  absl::StatusOr<bool> ReloadTls();

  // API keys in force (0 without --api_keys_file).
  size_t api_keys() const { return access_ == nullptr ? 0 : access_->size(); }

  // A channel to this server that bypasses the network and the keys
  // (tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Drains: reports NOT_SERVING (the port stays open, so health checks see
  // it), answers new MemoryService calls UNAVAILABLE, lets running calls
  // finish for up to `grace`, then cancels the rest and closes every
  // connection (idle ones included, after ~200 ms for clients to take the
  // GOAWAY). Then stores the banks' separation statistics (so a restart
  // need not recompute them) and closes the data directory. Idempotent.
  void Shutdown(absl::Duration grace);

  // The memory account and the worker pool (tests, metrics).
  const MemoryBudget& budget() const { return *budget_; }
  const WorkerPool& pool() const { return *pool_; }

  // Connection admission: counters, and the descriptor cap in force.
  ConnectionAcceptorStats connection_stats() const {
    return acceptor_->Stats();
  }
  uint64_t descriptor_cap() const { return acceptor_->descriptor_cap(); }

 private:
  Server() = default;

  void ReloadTlsEvery(absl::Duration interval);
  void StopTlsReloader();

  // The scrape-time sources but the registry (set once it has loaded).
  MetricsSources ScrapeSources() const;

  std::shared_ptr<RocksDbStorage> storage_;  // null without a data_dir
  std::shared_ptr<MemoryBudget> budget_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<BankRegistry> registry_;
  std::unique_ptr<MemoryService> service_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;
  // Decides every call when keys are configured (null otherwise); the
  // port's credentials hold a reference too.
  std::shared_ptr<AccessControl> access_;
  std::string api_keys_file_;
  // The TLS files gRPC reads (null with TLS off), and the thread that
  // re-reads them; both outlive server_.
  std::unique_ptr<TlsFileMirror> tls_;
  std::thread tls_reloader_;
  absl::Notification tls_stop_;
  Mutex tls_log_mu_;
  std::string tls_last_error_ ABSL_GUARDED_BY(tls_log_mu_);
  std::unique_ptr<ConnectionAcceptor> acceptor_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<PrometheusMetrics> metrics_;  // null when metrics are off
  // Serves metrics_ (its scrapes read the registry, the pool and the
  // budget): declared last, so it stops first.
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string metrics_listen_;  // as configured
  bool shut_down_ = false;
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_SERVER_H_
