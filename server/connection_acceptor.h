// File: connection_acceptor.h
//
// ConnectionAcceptor: hopfieldd's own TCP accept loop in front of gRPC, so
// that a burst of connections can neither exhaust the process's descriptors
// nor stop the server from accepting.
//
// Why: in gRPC 1.51 the posix listener stops for good after accept4 fails
// with EMFILE/ENFILE (it never re-arms; fixed upstream in 2023, #33656), and
// 1.51 has no connection cap. ConnectionAcceptor binds the listening sockets
// itself, accepts on its own thread and hands each admitted connection to
// gRPC through ServerBuilder's ExternalConnectionAcceptor (FROM_FD). gRPC
// then serves it like one of its own (same credentials path, same
// keepalive, closed by Server::Shutdown).
//
// Admission: a connection is admitted only while the process holds fewer
// than the descriptor cap (see ConnectionLimits); over it, the connection is
// accepted and reset at once, so its client fails fast (UNAVAILABLE) instead
// of hanging in the backlog. The check is O(1): the kernel gives a new
// socket the lowest free descriptor number, so the accepted descriptor's
// number alone tells whether a slot below the cap was free. Start()
// translates the cap into that number once, from one /proc/self/fd scan.
// When accept4 fails for lack of descriptors (EMFILE/ENFILE) the loop sheds
// the pending connection with a spare descriptor it keeps for that purpose;
// on other resource errors it backs off for 100 ms. It never stops
// accepting until Stop().
//
// Order of use (gRPC requires the acceptor to be registered before the
// server is built, and to receive connections only while it runs):
//
//   grpc::ServerBuilder builder;
//   HOPFIELD_ASSIGN_OR_RETURN(
//       std::unique_ptr<ConnectionAcceptor> acceptor,
//       ConnectionAcceptor::Create(&builder, "0.0.0.0:50051", limits));
//   ... register services; no builder.AddListeningPort for this address ...
//   std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
//   HOPFIELD_RETURN_IF_ERROR(acceptor->Start());  // only if server != null
//   ...
//   acceptor->Stop();                 // always before server->Shutdown()
//   server->Shutdown(deadline);
#ifndef HOPFIELD_SERVER_CONNECTION_ACCEPTOR_H_
#define HOPFIELD_SERVER_CONNECTION_ACCEPTOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/server_builder.h"

#include "core/mutex.h"

namespace hopfield::server {

// How many connections ConnectionAcceptor admits. The cap is the smaller
// of `max_descriptors` and (descriptors open at Start() + `max_connections`):
// a connection is refused when admitting it would leave more than `cap`
// descriptors open in the process.
//
// Precisely: Start() counts the open descriptors once and finds the number N
// below which exactly (cap - open) numbers are free; from then on a
// connection is admitted iff its descriptor number is below N. The kernel
// hands out the lowest free number, so whatever else the process opens later
// also counts against the cap. The count can pass the cap only by
// descriptors numbered N or more, which exist only if something opened them
// while every number below N was taken (at most the reserve, for the soft
// limit stops them there).
struct ConnectionLimits {
  // The most descriptors the process may hold with a newly admitted
  // connection counted. 0 = the soft RLIMIT_NOFILE read by Create() minus
  // `descriptor_reserve`. Keep it below the soft limit: the difference is
  // what the rest of the process (files, gRPC's internals, client channels)
  // and the momentary descriptor of a refused connection can still use.
  uint64_t max_descriptors = 0;
  // Used only when max_descriptors is 0. REQUIRES: < the soft limit.
  uint64_t descriptor_reserve = 64;
  // 0 = no cap beyond max_descriptors. Otherwise the process may hold at
  // most this many descriptors more than it held at Start() (before the
  // first connection). gRPC 1.51 uses one descriptor per server connection
  // and reports no closes, so this caps connections plus whatever else the
  // process opened since Start().
  uint64_t max_connections = 0;
};

// Counters since Create(); each is monotonic.
struct ConnectionAcceptorStats {
  // Connections handed to gRPC.
  uint64_t accepted = 0;
  // Connections accepted and reset at once: over the cap, or shed while the
  // process had no descriptor to spare (EMFILE/ENFILE).
  uint64_t rejected = 0;
  // accept4 failures other than EAGAIN/EINTR: EMFILE, ENFILE, ENOBUFS,
  // ENOMEM (the loop sheds or backs off, then goes on) and errors of a
  // single connection such as ECONNABORTED (the loop goes on at once).
  uint64_t accept_errors = 0;
};

// Owns its listening sockets, the accept thread and the gRPC
// ExternalConnectionAcceptor handle; does not own the ServerBuilder or the
// grpc::Server. Thread-safe: every method may be called from any thread
// (Start and Stop serialize on an internal lock). Not copyable or movable.
//
// Interaction with grpc::Server (gRPC 1.51):
// * A connection handed over before the server started, or after
//   grpc::Server::Shutdown began, is not served and its descriptor leaks
//   (gRPC logs "NOT handling external connection" and never closes it).
//   Hence: Start() only after BuildAndStart() succeeded, and Stop() before
//   grpc::Server::Shutdown().
// * Connections already handed over are gRPC's: Shutdown() closes them
//   like the ones it accepts itself. Stop() does not touch them.
// * InProcessChannel() does not go through this class and is unaffected.
class ConnectionAcceptor {
 public:
  // Binds and listens on `listen` ("host:port"; port 0 picks a free one) and
  // registers with `builder` (AddExternalConnectionAcceptor with
  // `credentials`, insecure when null). Connections queue in the backlog
  // until Start(). The host may be an IPv4 literal, a bracketed IPv6 literal
  // ("[::1]:0"), a name (every address it resolves to is bound, as gRPC
  // does), or a wildcard ("", "0.0.0.0", "[::]"), which, as in gRPC, means
  // every interface: dual-stack IPv6 where available, else IPv4.
  // SO_REUSEADDR is set; SO_REUSEPORT is not (unlike gRPC's own listener),
  // so a second process on the same port fails instead of sharing it.
  // REQUIRES: `builder` outlives this call and has not been built yet.
  // Errors (the builder is unchanged on any error): INVALID_ARGUMENT for a
  // null builder, an address that is not host:port (unix: addresses are not
  // supported), a port outside 0..65535, or limits that admit nothing
  // (max_descriptors not above the descriptors already open, a reserve not
  // below the soft limit); UNAVAILABLE when no address can be bound (in
  // use, not local, name does not resolve), or the descriptors for the loop
  // cannot be created.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> Create(
      grpc::ServerBuilder* builder, absl::string_view listen,
      ConnectionLimits limits = {},
      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);

  ConnectionAcceptor(const ConnectionAcceptor&) = delete;
  ConnectionAcceptor& operator=(const ConnectionAcceptor&) = delete;
  // Calls Stop().
  ~ConnectionAcceptor();

  // The bound port (the same on every bound address). Never 0.
  int port() const { return port_; }

  // Computes the admission cap from the descriptors open now and starts the
  // accept thread. REQUIRES: the grpc::Server built from the builder passed
  // to Create() has started (BuildAndStart returned non-null).
  // Errors: FAILED_PRECONDITION when already started or stopped, or when
  // the process already holds max_descriptors descriptors (nothing could be
  // admitted); RESOURCE_EXHAUSTED when the thread cannot be created.
  absl::Status Start();

  // Stops accepting: wakes and joins the accept thread and closes the
  // listening sockets (new connections are then refused by the kernel).
  // Connections already handed to gRPC stay open. Idempotent; returns once
  // the thread has exited, also when another thread is stopping. Call it
  // before grpc::Server::Shutdown (see the class comment).
  void Stop();

  // The cap in force: at most this many descriptors are open once a
  // connection is admitted. Before Start(), the configured max_descriptors.
  uint64_t descriptor_cap() const {
    return descriptor_cap_.load(std::memory_order_relaxed);
  }

  // A snapshot of the counters. Never fails.
  ConnectionAcceptorStats Stats() const;

  // The number of descriptors this process has open (a /proc/self/fd scan,
  // O(descriptors); with no /proc, a probe of every descriptor number below
  // the soft limit). For logs and tests, not for a hot path.
  static uint64_t CountOpenDescriptors();

 private:
  ConnectionAcceptor() = default;

  void Run();
  // Accepts what is pending on `listen_fd`. Returns after EAGAIN, a batch,
  // or a back-off.
  void AcceptPending(int listen_fd);
  // Hands `fd` to gRPC or resets it, by its number.
  void Admit(int listen_fd, int fd);
  void Reject(int fd);
  // On EMFILE/ENFILE: gives up the spare descriptor to accept one pending
  // connection and reset it, then takes the spare back.
  enum class Shed { kShed, kNothingPending, kFailed };
  Shed ShedWithSpare(int listen_fd);
  // Waits `kBackoff` or until Stop(); reopens the spare descriptor.
  void Backoff();
  // Logs refusals and accept errors not yet reported, at most once per
  // 10 s. Returns the poll timeout (ms) after which the rest is due, or -1.
  int MaybeLogTrouble();

  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  std::vector<int> listen_fds_;
  int wake_fd_ = -1;   // eventfd written by Stop()
  int spare_fd_ = -1;  // /dev/null, given up to shed under EMFILE; -1 = none
  int port_ = 0;
  uint64_t max_descriptors_ = 0;
  uint64_t max_connections_ = 0;
  // Written by Start() before the thread starts, then read-only: admit a
  // connection iff its descriptor number is below this.
  int64_t first_refused_fd_ = 0;
  std::atomic<uint64_t> descriptor_cap_{0};

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> accept_errors_{0};
  // Accept thread only: what the last trouble log line reported.
  uint64_t logged_rejected_ = 0;
  uint64_t logged_errors_ = 0;
  int64_t last_log_nanos_ = 0;
  int last_errno_ = 0;

  enum class State { kCreated, kRunning, kStopped };
  Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kCreated;
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_CONNECTION_ACCEPTOR_H_
