#include "server/server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

#include "server/logging.h"

namespace hopfield::server {
namespace {

// Serves `metrics` at http://`address`/metrics.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartExposer(
    const std::string& address,
    const std::shared_ptr<PrometheusMetrics>& metrics) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb's options: 4 serving threads, and a request that has not
    // arrived within 5 s is dropped (civetweb's default, 30 s, would let a
    // few idle connections hold every thread and starve the scrapes).
    exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", address, "num_threads", "4",
                                 "request_timeout_ms", "5000"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on --metrics_listen ", address, ": ", e.what()));
  }
  exposer->RegisterCollectable(metrics->collectable());
  return exposer;
}

// Stops `exposer` promptly. civetweb's accept loop (prometheus-cpp 1.0.1's
// Exposer) notices a stop request only when its poll() returns, which is
// every 2 s when nobody connects: a connection to the metrics port wakes it.
// Each poke is a connect and close, on `host` (the bound address, or
// loopback for a wildcard) while the exposer shuts down.
void StopExposer(std::unique_ptr<prometheus::Exposer> exposer,
                 const std::string& listen, int port) {
  if (exposer == nullptr) return;
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::atomic<bool> stopped{false};
  std::thread poker([&] {
    addrinfo hints = {};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints,
                    &found) != 0) {
      return;
    }
    while (!stopped.load()) {
      const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        (void)connect(fd, found->ai_addr, found->ai_addrlen);
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    freeaddrinfo(found);
  });
  exposer.reset();
  stopped.store(true);
  poker.join();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerConfig& config) {
  if (config.max_message_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be >= 1024, got ", config.max_message_bytes));
  }
  if (config.max_banks < 1) {
    return absl::InvalidArgumentError("max_banks must be >= 1, got 0");
  }
  if (config.memory_budget_bytes < 1) {
    return absl::InvalidArgumentError("memory_budget_bytes must be >= 1");
  }
  if (config.max_patterns_per_bank < 1 ||
      config.max_patterns_per_bank > kMaxPatternsPerBank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_patterns_per_bank must be in 1..", kMaxPatternsPerBank, ", got ",
        config.max_patterns_per_bank));
  }
  if (config.retrieve_threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retrieve_threads must be in 0..256, got ", config.retrieve_threads));
  }
  // TLS files and keys are checked before anything is opened or bound: a
  // typo there stops the start with the flag's name.
  std::unique_ptr<TlsFileMirror> tls;
  if (config.tls.enabled() || !config.tls.client_ca_file.empty()) {
    absl::StatusOr<std::unique_ptr<TlsFileMirror>> mirror =
        TlsFileMirror::Create(config.tls);
    if (!mirror.ok()) return mirror.status();
    tls = *std::move(mirror);
  }
  std::optional<ApiKeys> keys;
  if (!config.api_keys_file.empty()) {
    absl::StatusOr<ApiKeys> loaded = ApiKeys::Load(config.api_keys_file);
    if (!loaded.ok()) return loaded.status();
    keys = *std::move(loaded);
    if (keys->short_keys() > 0) {
      HOPFIELD_LOG(WARNING)
          << config.api_keys_file << " lists " << keys->short_keys()
          << " keys shorter than 16 characters: easy to "
             "guess; use e.g. `openssl rand -hex 32`";
    }
  }
  const uint32_t cpus = std::max(1u, std::thread::hardware_concurrency());
  std::unique_ptr<Server> server(new Server);
  server->budget_ = MemoryBudget::Create(
      config.memory_budget_bytes,
      absl::StrCat("memory budget (--memory_budget_bytes)"));
  WorkerPoolOptions pool_options;
  pool_options.threads =
      config.worker_threads > 0 ? config.worker_threads : cpus;
  pool_options.max_queued = config.max_queued_calls;
  server->pool_ = std::make_unique<WorkerPool>(pool_options);
  RegistryOptions registry_options;
  registry_options.max_banks = config.max_banks;
  registry_options.budget = server->budget_;
  registry_options.max_patterns_per_bank = config.max_patterns_per_bank;
  registry_options.index_min_patterns = config.index_min_patterns;
  // A new search index is built with the worker pool's width (the refresher
  // thread plus short-lived helpers): after a bulk load or a Train, the
  // index (and the separation estimates) arrive that much sooner (core uses
  // at most the hardware's threads).
  registry_options.index_build_threads = pool_options.threads;
  // Store stays O(patterns x dim); exact separation statistics catch up in
  // the background (Bank.separation_pending says how far behind they are).
  registry_options.separation_update = SeparationUpdate::kDeferred;
  if (!config.metrics_listen.empty()) {
    // /metrics answers from here on: through the data directory's opening
    // and loading (process, budget and pool figures), and a taken port
    // stops the start before anything else is opened.
    server->metrics_ = std::make_shared<PrometheusMetrics>();
    registry_options.metrics = server->metrics_;
    MetricsSources sources;
    sources.budget = server->budget_.get();
    sources.pool = server->pool_.get();
    server->metrics_->SetSources(std::move(sources));
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
        StartExposer(config.metrics_listen, server->metrics_);
    if (!exposer.ok()) return exposer.status();
    server->exposer_ = *std::move(exposer);
    const std::vector<int> ports = server->exposer_->GetListeningPorts();
    server->metrics_port_ = ports.empty() ? 0 : ports.front();
    server->metrics_listen_ = config.metrics_listen;
    HOPFIELD_LOG(INFO) << "serving /metrics on port " << server->metrics_port_;
  }
  const absl::Time open_start = absl::Now();
  if (!config.data_dir.empty()) {
    RocksDbStorageOptions storage_options;
    storage_options.sync = config.sync_writes;
    storage_options.metrics = server->metrics_;
    absl::StatusOr<std::unique_ptr<RocksDbStorage>> storage =
        RocksDbStorage::Open(config.data_dir, storage_options);
    if (!storage.ok()) {
      return absl::Status(
          storage.status().code(),
          absl::StrCat("cannot open --data_dir ", config.data_dir, ": ",
                       storage.status().message()));
    }
    server->storage_ = *std::move(storage);
    registry_options.storage = server->storage_;
  }
  server->registry_ = std::make_unique<BankRegistry>(registry_options);
  MemoryServiceOptions service_options;
  service_options.retrieve_threads = config.retrieve_threads > 0
                                         ? config.retrieve_threads
                                         : std::min(cpus, 256u);
  service_options.max_message_bytes =
      static_cast<uint64_t>(config.max_message_bytes);
  service_options.access_log = config.access_log;
  service_options.storage = server->storage_.get();
  service_options.metrics = server->metrics_.get();
  // Each Train holds a worker for its whole run: leave at least one worker
  // for every other call.
  service_options.max_trains = std::max<uint32_t>(
      1, pool_options.threads > 1 ? pool_options.threads - 1 : 1);
  server->service_ = std::make_unique<MemoryService>(
      server->registry_.get(), server->pool_.get(), server->budget_,
      service_options);
  server->service_->SetLoading(true);

  // Touch the generated grpc.health.v1 messages so the linker keeps their
  // descriptors: reflection can then resolve the health service it lists
  // (the default health service itself does not use them).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Our own accept loop instead of AddListeningPort: gRPC 1.51's listener
  // stops for good after EMFILE and has no connection cap.
  ConnectionLimits limits;
  limits.max_descriptors = config.max_descriptors;
  limits.max_connections = config.max_connections;
  if (keys.has_value()) {
    AccessControl::RefusalCallback on_refusal;
    if (server->metrics_ != nullptr) {
      // Refused calls never reach a handler: count them here, under their
      // method and code, with no time spent.
      on_refusal = [metrics = server->metrics_](absl::string_view method,
                                                absl::StatusCode code) {
        if (absl::ConsumePrefix(&method, "/hopfield.v1.MemoryService/")) {
          metrics->RecordRpc(method, code, absl::ZeroDuration());
        }
      };
    }
    server->access_ = std::make_shared<AccessControl>(*std::move(keys),
                                                      std::move(on_refusal));
    server->api_keys_file_ = config.api_keys_file;
  }
  server->tls_ = std::move(tls);
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (server->tls_ != nullptr || server->access_ != nullptr) {
    credentials = MakeServerCredentials(server->tls_.get(), server->access_);
  }
  if (server->tls_ != nullptr) {
    server->tls_reloader_ = std::thread([raw = server.get()] {
      raw->ReloadTlsEvery(raw->tls_->files().reload_interval);
    });
  }
  absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> acceptor =
      ConnectionAcceptor::Create(&builder, config.listen, limits,
                                 std::move(credentials));
  if (!acceptor.ok()) return acceptor.status();
  server->acceptor_ = *std::move(acceptor);
  server->port_ = server->acceptor_->port();
  builder.RegisterService(server->service_.get());
  server->reflection_v1_ =
      std::make_unique<ReflectionV1Service>(std::vector<std::string>{
          std::string(kServiceName), "grpc.health.v1.Health",
          "grpc.reflection.v1alpha.ServerReflection",
          "grpc.reflection.v1.ServerReflection"});
  builder.RegisterService(server->reflection_v1_.get());
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             config.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             config.keepalive_timeout_ms);
  // Let clients keep idle connections alive with pings as often as every
  // 10 s without being disconnected for "too many pings".
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot start the gRPC server for ", config.listen));
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(std::string(kServiceName), false);
  // Only now may connections reach gRPC (before the start they would leak).
  if (absl::Status started = server->acceptor_->Start(); !started.ok()) {
    return started;
  }
  if (server->metrics_ != nullptr) {
    // Calls, connections and the store from now on; the banks once loaded
    // (the load holds the registry).
    server->metrics_->SetSources(server->ScrapeSources());
  }
  if (server->storage_ != nullptr) {
    HOPFIELD_LOG(INFO) << "listening on port " << server->port_
                       << " (NOT_SERVING while loading); loading banks from "
                       << config.data_dir;
  }
  absl::StatusOr<LoadReport> report = server->registry_->Load();
  if (!report.ok()) {
    return absl::Status(
        report.status().code(),
        absl::StrCat("cannot load banks from --data_dir ", config.data_dir,
                     ": ", report.status().message()));
  }
  for (const auto& [name, status] : report->failed) {
    HOPFIELD_LOG(ERROR) << "bank " << PrintableName(name)
                        << " could not be loaded and answers its error until "
                           "deleted or restored from a backup: "
                        << status;
  }
  if (server->storage_ != nullptr) {
    HOPFIELD_LOG(INFO) << "restart: loaded " << report->banks << " banks ("
                       << report->patterns << " patterns, "
                       << report->failed.size() << " failed, "
                       << report->indexes_loaded << " search indexes loaded, "
                       << report->superseded
                       << " interrupted deletions finished) in "
                       << absl::ToDoubleSeconds(absl::Now() - open_start)
                       << " s";
  }
  if (server->metrics_ != nullptr) {
    server->metrics_->SetStartup(absl::Now() - open_start, report->banks,
                                 report->patterns);
    MetricsSources sources = server->ScrapeSources();
    sources.registry = server->registry_.get();
    server->metrics_->SetSources(std::move(sources));
  }
  server->service_->SetLoading(false);
  health->SetServingStatus("", true);
  health->SetServingStatus(std::string(kServiceName), true);
  return server;
}

Server::~Server() {
  Shutdown(absl::ZeroDuration());
  // A start that failed after the exposer was up (Shutdown had no server).
  StopExposer(std::move(exposer_), metrics_listen_, metrics_port_);
}

absl::StatusOr<bool> Server::ReloadTls() {
  if (tls_ == nullptr) {
    return absl::FailedPreconditionError("TLS is off: nothing to reload");
  }
  absl::StatusOr<bool> reloaded = tls_->Reload();
  WriterLock lock(&tls_log_mu_);
  if (reloaded.ok()) {
    if (*reloaded) {
      HOPFIELD_LOG(INFO) << "TLS files changed: new connections get the new "
                            "certificate";
    }
    tls_last_error_.clear();
  } else if (std::string error(reloaded.status().message());
             error != tls_last_error_) {
    // Once per distinct problem, not every interval.
    HOPFIELD_LOG(WARNING) << "TLS files not taken, the previous ones keep "
                             "serving: "
                          << error;
    tls_last_error_ = std::move(error);
  }
  return reloaded;
}

void Server::ReloadTlsEvery(absl::Duration interval) {
  while (!tls_stop_.WaitForNotificationWithTimeout(interval)) {
    (void)ReloadTls();
  }
}

absl::Status Server::ReloadApiKeys() {
  if (access_ == nullptr) {
    return absl::FailedPreconditionError(
        "no --api_keys_file: the server was started without keys");
  }
  absl::StatusOr<ApiKeys> keys = ApiKeys::Load(api_keys_file_);
  if (!keys.ok()) return keys.status();
  access_->Replace(*std::move(keys));
  return absl::OkStatus();
}

MetricsSources Server::ScrapeSources() const {
  MetricsSources sources;
  sources.budget = budget_.get();
  sources.pool = pool_.get();
  const MemoryService* service = service_.get();
  sources.in_flight = [service] { return service->in_flight(); };
  const ConnectionAcceptor* acceptor = acceptor_.get();
  sources.connections_accepted = [acceptor] {
    return acceptor->Stats().accepted;
  };
  sources.connections_rejected = [acceptor] {
    return acceptor->Stats().rejected;
  };
  if (storage_ != nullptr) {
    const RocksDbStorage* storage = storage_.get();
    sources.storage_failure = [storage] { return storage->failure(); };
  }
  return sources;
}

std::shared_ptr<grpc::Channel> Server::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

void Server::StopTlsReloader() {
  if (tls_reloader_.joinable()) {
    tls_stop_.Notify();
    tls_reloader_.join();
  }
}

void Server::Shutdown(absl::Duration grace) {
  StopTlsReloader();
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  // The port stays open while running calls finish: health checks see
  // NOT_SERVING, new calls get UNAVAILABLE.
  const bool drained = service_->Drain(grace);
  // Refuse new connections before gRPC shuts down: gRPC 1.51 never closes a
  // connection handed to it after Shutdown began.
  acceptor_->Stop();
  // gRPC's shutdown waits for every connection to close, and a client that
  // never answers the GOAWAY ping holds it for 20 s (gRPC 1.51): give
  // well-behaved clients a moment, then cancel everything left (nothing,
  // when drained) and close the connections.
  const absl::Duration linger =
      drained ? absl::Milliseconds(200) : absl::ZeroDuration();
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMicroseconds(linger));
  server_->Wait();
  // Scrapes read the pool and the registry: stop serving them first.
  StopExposer(std::move(exposer_), metrics_listen_, metrics_port_);
  pool_.reset();  // runs nothing more: every call has finished
  if (storage_ != nullptr) {
    if (absl::Status persisted = registry_->PersistSeparation();
        !persisted.ok()) {
      HOPFIELD_LOG(WARNING) << "separation statistics not stored (a restart "
                               "recomputes them): "
                            << persisted;
    }
    if (absl::Status saved = registry_->PersistIndexes(); !saved.ok()) {
      HOPFIELD_LOG(WARNING) << "search indexes not saved (a restart rebuilds "
                               "them): "
                            << saved;
    }
    // The refresher stops before the store closes.
    registry_.reset();
    if (absl::Status closed = storage_->Close(); !closed.ok()) {
      HOPFIELD_LOG(ERROR) << "closing --data_dir: " << closed
                          << " (acknowledged writes are in its synced log)";
    }
  }
}

}  // namespace hopfield::server
