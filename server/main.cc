// hopfieldd: the hopfield associative-memory server. Flags are defined here
// and only here; run `hopfieldd --helpfull` for all of them. Every flag can
// come from the environment with --tryfromenv=listen,... (FLAGS_listen=...).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "server/logging.h"
#include "server/server.h"
#include "server/server_config.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC listen address host:port (port 0 picks a free port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "Prometheus /metrics (HTTP) address host:port (port 0 picks a free "
          "port); empty disables metrics");
ABSL_FLAG(std::string, port_file, "",
          "if set, write the bound ports here once serving "
          "(lines 'grpc_port=N' and 'metrics_port=N'), for tests and "
          "scripts");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "largest request/response message in bytes; larger requests fail "
          "with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, keepalive_time_seconds, 60,
          "ping idle connections after this many seconds");
ABSL_FLAG(int, keepalive_timeout_seconds, 20,
          "drop a connection whose keepalive ping is unanswered this long");
ABSL_FLAG(int, retrieve_threads, 0,
          "threads one multi-query Retrieve may use, 0..256 (0 = number of "
          "CPUs, at most 256)");
ABSL_FLAG(int, max_banks, 1024, "most banks held at once");
ABSL_FLAG(uint64_t, memory_budget_bytes, 0,
          "the most memory all banks and in-flight requests together may "
          "hold; a request that would cross it is RESOURCE_EXHAUSTED and "
          "changes nothing (0 = 75% of physical memory, or of the cgroup "
          "limit when lower)");
ABSL_FLAG(uint64_t, max_patterns_per_bank, 4294967295,
          "most patterns per bank (RESOURCE_EXHAUSTED beyond), 1..2^32-1");
ABSL_FLAG(uint64_t, index_min_patterns, 4096,
          "patterns from which a cosine bank builds its search index "
          "(approximate retrieval), 1..4294967295");
ABSL_FLAG(int, worker_threads, 0,
          "threads that run heavy calls (Store, Retrieve, GetPatterns, "
          "Forget); 0 = number of CPUs");
ABSL_FLAG(int, max_queued_calls, 64,
          "heavy calls that may wait for a worker thread; more are "
          "RESOURCE_EXHAUSTED at once");
ABSL_FLAG(bool, access_log, false, "log one line per RPC");
ABSL_FLAG(std::string, data_dir, "./hopfield-data",
          "where banks are stored (an embedded RocksDB, created if missing; "
          "one server per directory); empty keeps banks in memory only "
          "(nothing survives a restart)");
ABSL_FLAG(bool, sync_writes, true,
          "sync the write-ahead log before acknowledging a write; false "
          "keeps acknowledged writes safe from a server crash but not from a "
          "machine crash or power loss (benchmarks only)");
ABSL_FLAG(uint64_t, max_connections, 10000,
          "most client connections at once (~16 KiB each when idle); more "
          "are reset at once (clients see UNAVAILABLE and may retry). 0 = as "
          "many as the open-file limit allows after --descriptor_reserve");
ABSL_FLAG(uint64_t, descriptor_reserve, 64,
          "open-file descriptors kept from connections, for files, gRPC's "
          "internals and refusing connections; connections may use the "
          "open-file limit (raised to the hard limit at start) minus this");
ABSL_FLAG(double, shutdown_grace_seconds, 5.0,
          "on SIGTERM/SIGINT, let running calls finish for this long");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM server certificate chain: with --tls_key_file, serve TLS only "
          "(no plaintext port)");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file (unencrypted)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: require client certificates they signed "
          "(mutual TLS)");
ABSL_FLAG(int, tls_reload_seconds, 60,
          "re-read the TLS files this often (and on SIGHUP): replacing them "
          "rotates the certificate without a restart (new connections get "
          "it); an incomplete or mismatched set is not taken");
ABSL_FLAG(std::string, api_keys_file, "",
          "`KEY ROLE` lines, ROLE read-write or read-only: every call but "
          "health then needs metadata 'authorization: Bearer KEY'; re-read "
          "on SIGHUP");

namespace {

using hopfield::server::Server;

// 75% of the memory this process may use: physical memory, or the cgroup
// (v2 memory.max, v1 limit_in_bytes) limit when lower, as in a container.
uint64_t DefaultMemoryBudget() {
  const int64_t pages = sysconf(_SC_PHYS_PAGES);
  const int64_t page_size = sysconf(_SC_PAGE_SIZE);
  uint64_t limit =
      pages > 0 && page_size > 0
          ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size)
          : uint64_t{4} << 30;
  for (const char* path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    uint64_t cgroup = 0;
    if (in >> cgroup && cgroup > 0) limit = std::min(limit, cgroup);
  }
  return limit / 4 * 3;
}

// Raises the soft limit on open files to the hard limit, so a burst of
// connections does not exhaust descriptors at the default 1,024. Returns
// the soft limit in force.
uint64_t RaiseDescriptorLimit() {
  struct rlimit limit = {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    struct rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? ~uint64_t{0} : limit.rlim_cur;
}
using hopfield::server::ServerConfig;

// Writes `contents` to `path` atomically (temporary file + rename), so a
// reader polling for the file never sees it half written.
bool WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << contents;
    if (!out.good()) return false;
  }
  return std::rename(temporary.c_str(), path.c_str()) == 0;
}

// Self-pipe: the handler writes the signal number, main() reads it. Works
// whichever thread the kernel picks to run the handler.
std::array<int, 2> g_signal_pipe = {-1, -1};

void OnShutdownSignal(int signal_number) {
  const char byte = static_cast<char>(signal_number);
  [[maybe_unused]] const ssize_t written = ::write(g_signal_pipe[1], &byte, 1);
}

bool InstallShutdownHandlers() {
  if (::pipe(g_signal_pipe.data()) != 0) return false;
  struct sigaction action = {};
  action.sa_handler = OnShutdownSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  return sigaction(SIGTERM, &action, nullptr) == 0 &&
         sigaction(SIGINT, &action, nullptr) == 0 &&
         sigaction(SIGHUP, &action, nullptr) == 0;
}

// Blocks until SIGTERM, SIGINT or SIGHUP arrives; returns its number.
int WaitForSignal() {
  char byte = 0;
  while (true) {
    const ssize_t got = ::read(g_signal_pipe[0], &byte, 1);
    if (got == 1) return byte;
    if (got < 0 && errno == EINTR) continue;
    return SIGTERM;  // the pipe broke: treat as a stop request
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hopfieldd: associative memory over gRPC (hopfield.v1.MemoryService).\n"
      "Usage: hopfieldd [--listen=127.0.0.1:50051] [--port_file=PATH] ...\n"
      "All flags: hopfieldd --helpfull");
  absl::ParseCommandLine(argc, argv);
  hopfield::server::RouteGrpcLogs();

  ServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.keepalive_time_ms = absl::GetFlag(FLAGS_keepalive_time_seconds) * 1000;
  config.keepalive_timeout_ms =
      absl::GetFlag(FLAGS_keepalive_timeout_seconds) * 1000;
  const int retrieve_threads = absl::GetFlag(FLAGS_retrieve_threads);
  const int max_banks = absl::GetFlag(FLAGS_max_banks);
  const int worker_threads = absl::GetFlag(FLAGS_worker_threads);
  const int max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  const uint64_t max_patterns = absl::GetFlag(FLAGS_max_patterns_per_bank);
  const uint64_t index_min_patterns = absl::GetFlag(FLAGS_index_min_patterns);
  const double grace_seconds = absl::GetFlag(FLAGS_shutdown_grace_seconds);
  // Every flag is checked before anything starts; a bad one exits with 2.
  std::string bad;
  if (retrieve_threads < 0 || retrieve_threads > 256) {
    bad = absl::StrCat("--retrieve_threads must be in 0..256, got ",
                       retrieve_threads);
  } else if (max_banks < 1) {
    bad = absl::StrCat("--max_banks must be >= 1, got ", max_banks);
  } else if (worker_threads < 0 || worker_threads > 4096) {
    bad = absl::StrCat("--worker_threads must be in 0..4096, got ",
                       worker_threads);
  } else if (max_queued_calls < 0) {
    bad =
        absl::StrCat("--max_queued_calls must be >= 0, got ", max_queued_calls);
  } else if (max_patterns < 1 || max_patterns > 4294967295u) {
    bad = absl::StrCat("--max_patterns_per_bank must be in 1..4294967295, got ",
                       max_patterns);
  } else if (index_min_patterns < 1 || index_min_patterns > 4294967295u) {
    bad = absl::StrCat("--index_min_patterns must be in 1..4294967295, got ",
                       index_min_patterns);
  } else if (absl::GetFlag(FLAGS_tls_reload_seconds) < 1) {
    bad = absl::StrCat("--tls_reload_seconds must be >= 1, got ",
                       absl::GetFlag(FLAGS_tls_reload_seconds));
  } else if (!(grace_seconds >= 0.0 && grace_seconds <= 86400.0)) {
    bad = absl::StrCat(
        "--shutdown_grace_seconds must be a number of seconds in 0..86400, "
        "got ",
        grace_seconds);
  }
  if (!bad.empty()) {
    HOPFIELD_LOG(ERROR) << bad;
    return 2;
  }
  config.retrieve_threads = static_cast<uint32_t>(retrieve_threads);
  config.max_banks = static_cast<uint32_t>(max_banks);
  config.worker_threads = static_cast<uint32_t>(worker_threads);
  config.max_queued_calls = static_cast<uint32_t>(max_queued_calls);
  config.max_patterns_per_bank = max_patterns;
  config.index_min_patterns = index_min_patterns;
  config.memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  if (config.memory_budget_bytes == 0) {
    config.memory_budget_bytes = DefaultMemoryBudget();
  }
  config.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  config.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  config.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  config.tls.reload_interval =
      absl::Seconds(absl::GetFlag(FLAGS_tls_reload_seconds));
  config.api_keys_file = absl::GetFlag(FLAGS_api_keys_file);
  config.access_log = absl::GetFlag(FLAGS_access_log);
  config.data_dir = absl::GetFlag(FLAGS_data_dir);
  config.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  if (config.data_dir.empty()) {
    HOPFIELD_LOG(WARNING) << "--data_dir is empty: banks live in memory only "
                             "and a restart loses them";
  }
  const uint64_t descriptors = RaiseDescriptorLimit();
  const uint64_t descriptor_reserve = absl::GetFlag(FLAGS_descriptor_reserve);
  if (descriptor_reserve >= descriptors) {
    HOPFIELD_LOG(ERROR) << "--descriptor_reserve must be below the open-file "
                           "limit "
                        << descriptors << ", got " << descriptor_reserve;
    return 2;
  }
  config.max_descriptors = descriptors - descriptor_reserve;
  config.max_connections = absl::GetFlag(FLAGS_max_connections);

  if (!InstallShutdownHandlers()) {
    HOPFIELD_LOG(ERROR) << "cannot install signal handlers: "
                        << std::strerror(errno);
    return 1;
  }

  HOPFIELD_LOG(INFO) << "config listen=" << config.listen
                     << " metrics_listen=" << config.metrics_listen;
  HOPFIELD_LOG(INFO) << "config max_message_bytes=" << config.max_message_bytes;
  HOPFIELD_LOG(INFO) << "config keepalive_time_ms=" << config.keepalive_time_ms
                     << " keepalive_timeout_ms=" << config.keepalive_timeout_ms;
  HOPFIELD_LOG(INFO) << "config retrieve_threads=" << config.retrieve_threads
                     << " (0 = number of CPUs)";
  HOPFIELD_LOG(INFO) << "config max_banks=" << config.max_banks;
  HOPFIELD_LOG(INFO) << "config memory_budget_bytes="
                     << config.memory_budget_bytes;
  HOPFIELD_LOG(INFO) << "config max_patterns_per_bank="
                     << config.max_patterns_per_bank
                     << " index_min_patterns=" << config.index_min_patterns;
  HOPFIELD_LOG(INFO) << "config worker_threads=" << config.worker_threads
                     << " (0 = number of CPUs) max_queued_calls="
                     << config.max_queued_calls;
  HOPFIELD_LOG(INFO) << "open file limit=" << descriptors
                     << " max_descriptors=" << config.max_descriptors
                     << " max_connections=" << config.max_connections
                     << " (0 = no cap beyond max_descriptors)";
  HOPFIELD_LOG(INFO) << "config access_log=" << config.access_log;
  HOPFIELD_LOG(INFO) << "config tls="
                     << (config.tls.enabled()
                             ? (config.tls.client_ca_file.empty() ? "on"
                                                                  : "mutual")
                             : "off")
                     << " api_keys_file="
                     << (config.api_keys_file.empty() ? "(none: no keys needed)"
                                                      : config.api_keys_file);
  if (!config.tls.enabled() && !config.api_keys_file.empty()) {
    HOPFIELD_LOG(WARNING) << "API keys over plaintext: anyone on the network "
                             "path can read them; add --tls_cert_file and "
                             "--tls_key_file";
  }
  HOPFIELD_LOG(INFO) << "config data_dir=" << config.data_dir
                     << " sync_writes=" << config.sync_writes;

  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(config);
  if (!server.ok()) {
    HOPFIELD_LOG(ERROR) << "cannot start: " << server.status();
    return 1;
  }
  HOPFIELD_LOG(INFO) << "serving hopfield.v1.MemoryService on port "
                     << (*server)->port() << "; connections refused beyond "
                     << (*server)->descriptor_cap() << " open descriptors";
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty() &&
      !WriteFileAtomically(
          port_file,
          absl::StrCat("grpc_port=", (*server)->port(),
                       "\nmetrics_port=", (*server)->metrics_port(), "\n"))) {
    HOPFIELD_LOG(ERROR) << "cannot write --port_file " << port_file << ": "
                        << std::strerror(errno);
    (*server)->Shutdown(absl::ZeroDuration());
    return 1;
  }

  int received = WaitForSignal();
  for (; received == SIGHUP; received = WaitForSignal()) {
    if (config.api_keys_file.empty() && !config.tls.enabled()) {
      HOPFIELD_LOG(INFO) << "received SIGHUP: nothing to reload (no "
                            "--api_keys_file, no TLS)";
      continue;
    }
    if (!config.api_keys_file.empty()) {
      if (absl::Status reloaded = (*server)->ReloadApiKeys(); reloaded.ok()) {
        HOPFIELD_LOG(INFO) << "received SIGHUP: reloaded "
                           << (*server)->api_keys() << " API keys from "
                           << config.api_keys_file;
      } else {
        HOPFIELD_LOG(ERROR)
            << "received SIGHUP: keeping the API keys in force: " << reloaded;
      }
    }
    if (config.tls.enabled()) {
      // Logs a change or a problem itself.
      const absl::StatusOr<bool> reloaded = (*server)->ReloadTls();
      if (reloaded.ok() && !*reloaded) {
        HOPFIELD_LOG(INFO) << "received SIGHUP: the TLS files are unchanged";
      }
    }
  }
  const absl::Duration grace = absl::Seconds(grace_seconds);
  HOPFIELD_LOG(INFO) << "received "
                     << (received == SIGTERM ? "SIGTERM" : "SIGINT")
                     << ", draining for up to " << grace;
  (*server)->Shutdown(grace);
  HOPFIELD_LOG(INFO) << "stopped";
  return 0;
}
