// File: server_config.h
//
// Everything hopfieldd is configured with, filled from flags in main.cc and
// passed down as a value (tests build one literally).
#ifndef HOPFIELD_SERVER_SERVER_CONFIG_H_
#define HOPFIELD_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>

#include "core/memory_bank.h"
#include "server/transport_security.h"

namespace hopfield::server {

struct ServerConfig {
  // host:port for gRPC; port 0 picks a free one (Server::port() tells).
  std::string listen = "127.0.0.1:50051";
  // host:port for Prometheus' /metrics (HTTP); port 0 picks a free one
  // (Server::metrics_port() tells). Empty: no metrics are kept or served.
  std::string metrics_listen;
  // Largest request or response message, bytes. Larger requests fail with
  // RESOURCE_EXHAUSTED before they reach a handler.
  int max_message_bytes = 64 << 20;
  // HTTP/2 keepalive: ping an idle connection after this long, drop it when
  // the ping is not answered within the timeout.
  int keepalive_time_ms = 60'000;
  int keepalive_timeout_ms = 20'000;
  // Threads one multi-query Retrieve may use; 0 = the number of CPUs
  // (at most 256). REQUIRES: <= 256.
  uint32_t retrieve_threads = 0;
  // Most banks at once.
  uint32_t max_banks = 1024;
  // The most bytes banks, in-flight requests, replies and scratch may hold
  // together (RESOURCE_EXHAUSTED beyond). REQUIRES: >= 1.
  uint64_t memory_budget_bytes = uint64_t{1} << 30;
  // Most patterns per bank. REQUIRES: 1..2^32 - 1.
  uint64_t max_patterns_per_bank = kMaxPatternsPerBank;
  // A cosine bank gets its search index (approximate retrieval) once it
  // holds this many patterns; it keeps it while it shrinks.
  // REQUIRES: 1..2^32 - 1.
  uint64_t index_min_patterns = 4096;
  // Threads of the worker pool that runs heavy calls (Store, Retrieve, ...);
  // 0 = the number of CPUs.
  uint32_t worker_threads = 0;
  // Heavy calls that may wait for a worker; more are RESOURCE_EXHAUSTED.
  uint32_t max_queued_calls = 64;
  // One log line per RPC.
  bool access_log = false;
  // Where banks are stored (RocksDbStorage; created if missing). Empty:
  // banks live in memory only (in-process tests).
  std::string data_dir;
  // Sync the write-ahead log before acknowledging a write. false: an
  // acknowledged write survives a crash of the server but not of the
  // machine (benchmarks; never for the durability promise).
  bool sync_writes = true;
  // Connection admission (ConnectionAcceptor): a connection is reset at once
  // when admitting it would leave more than this many descriptors open.
  // 0 = the soft RLIMIT_NOFILE minus 64.
  uint64_t max_descriptors = 0;
  // At most this many connections (descriptors opened after start) on top;
  // 0 = only max_descriptors caps them.
  uint64_t max_connections = 0;
  // TLS on the gRPC port (no plaintext then); off when its files are empty.
  TlsFiles tls;
  // `KEY ROLE` lines (access_control.h): when set, every call but health
  // needs `authorization: Bearer KEY`. Empty: no keys, every call admitted.
  std::string api_keys_file;
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_SERVER_CONFIG_H_
