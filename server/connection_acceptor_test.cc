// ConnectionAcceptor tests: a real grpc::Server (health service only) fed
// by the acceptor on loopback. Floods come from a forked client process
// (Flooder), so the server's descriptor table holds only server-side
// sockets, as in production.
#include "server/connection_acceptor.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace hopfield::server {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;

// Polls `done` every few milliseconds until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (done()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// One health Check over a fresh TCP connection to `target` (a channel with
// its own subchannel pool, so no connection of an earlier channel is
// reused). Not wait-for-ready: a refused connection fails at once.
grpc::Status Check(const std::string& target,
                   absl::Duration timeout = absl::Seconds(2)) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  const std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), arguments);
  const std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, HealthCheckRequest(), &response);
  if (status.ok() && response.status() != HealthCheckResponse::SERVING) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "not SERVING");
  }
  return status;
}

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

// A grpc::Server with the default health service, reached only through a
// ConnectionAcceptor. Stops in the documented order: acceptor, then server.
class TestServer {
 public:
  static absl::StatusOr<std::unique_ptr<TestServer>> Start(
      absl::string_view listen, ConnectionLimits limits = {}) {
    grpc::EnableDefaultHealthCheckService(true);
    auto server = std::unique_ptr<TestServer>(new TestServer);
    grpc::ServerBuilder builder;
    absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> acceptor =
        ConnectionAcceptor::Create(&builder, listen, limits);
    if (!acceptor.ok()) return acceptor.status();
    server->acceptor_ = *std::move(acceptor);
    // Some service besides health, or gRPC has no completion queue to poll.
    builder.RegisterCallbackGenericService(&server->unimplemented_);
    server->server_ = builder.BuildAndStart();
    if (server->server_ == nullptr) {
      return absl::InternalError("BuildAndStart failed");
    }
    if (absl::Status started = server->acceptor_->Start(); !started.ok()) {
      return started;
    }
    return server;
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  ~TestServer() { Shutdown(); }

  void Shutdown() {
    if (server_ == nullptr) return;
    acceptor_->Stop();
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  ConnectionAcceptor& acceptor() { return *acceptor_; }
  grpc::Server& server() { return *server_; }
  int port() const { return acceptor_->port(); }
  // Connections the acceptor has decided on (handed over or refused).
  uint64_t decided() const {
    const ConnectionAcceptorStats stats = acceptor_->Stats();
    return stats.accepted + stats.rejected;
  }

 private:
  TestServer() = default;

  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<ConnectionAcceptor> acceptor_;
  std::unique_ptr<grpc::Server> server_;
};

// A forked process holding raw TCP connections (no HTTP/2 spoken, like idle
// clients in a burst). The child makes only system calls, so forking a
// process that runs gRPC threads is safe.
class Flooder {
 public:
  struct Closed {
    int64_t closed = 0;          // connections the server closed or reset
    int64_t max_latency_us = 0;  // from connect to seeing the close
  };

  Flooder() {
    sockets_.assign(kMaxConnections, -1);
    connected_at_us_.assign(kMaxConnections, 0);
    closed_.assign(kMaxConnections, 0);
    polled_.assign(kMaxConnections, pollfd{});
    std::array<int, 2> pair = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.data()) != 0) {
      ADD_FAILURE() << "socketpair: " << errno;
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      control_ = pair[1];
      // Drop every inherited descriptor but our end of the control pair, so
      // no server-side socket stays open in here.
      close_range(3, control_ - 1, 0);
      close_range(control_ + 1, ~0U, 0);
      ChildLoop();
    }
    close(pair[1]);
    control_ = pair[0];
  }

  Flooder(const Flooder&) = delete;
  Flooder& operator=(const Flooder&) = delete;

  ~Flooder() {
    if (pid_ <= 0) return;
    const std::array<int32_t, 3> command = {kExit, 0, 0};
    send(control_, command.data(), sizeof(command), MSG_NOSIGNAL);
    int status = 0;
    waitpid(pid_, &status, 0);
    close(control_);
  }

  // Opens `count` connections to 127.0.0.1:`port`, one after the other;
  // returns how many connected.
  int64_t Connect(int port, int count) {
    return Command(kConnect, port, std::min(count, kMaxConnections))[0];
  }

  // Waits up to `timeout_ms` until `expected` connections were closed by
  // the server, then 100 ms more for any further (unexpected) closes.
  Closed AwaitClosed(int64_t expected, int timeout_ms) {
    const std::array<int64_t, 2> reply =
        Command(kAwaitClosed, static_cast<int>(expected), timeout_ms);
    return Closed{reply[0], reply[1]};
  }

  // Closes every connection.
  void Release() { Command(kRelease, 0, 0); }

 private:
  static constexpr int kMaxConnections = 2048;
  enum Op : int32_t { kConnect, kAwaitClosed, kRelease, kExit };

  std::array<int64_t, 2> Command(int32_t op, int32_t a, int32_t b) const {
    std::array<int64_t, 2> reply = {-1, -1};
    const std::array<int32_t, 3> command = {op, a, b};
    if (send(control_, command.data(), sizeof(command), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(sizeof(command)) ||
        recv(control_, reply.data(), sizeof(reply), MSG_WAITALL) !=
            static_cast<ssize_t>(sizeof(reply))) {
      ADD_FAILURE() << "flooder process gone";
    }
    return reply;
  }

  static int64_t NowMicros() {
    timespec now = {};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return int64_t{now.tv_sec} * 1'000'000 + now.tv_nsec / 1000;
  }

  // Child only: async-signal-safe calls on memory allocated before fork().
  [[noreturn]] void ChildLoop() {
    while (true) {
      std::array<int32_t, 3> command = {};
      if (recv(control_, command.data(), sizeof(command), MSG_WAITALL) !=
          static_cast<ssize_t>(sizeof(command))) {
        _exit(0);
      }
      std::array<int64_t, 2> reply = {0, 0};
      switch (command[0]) {
        case kConnect:
          reply[0] = ChildConnect(command[1], command[2]);
          break;
        case kAwaitClosed:
          ChildAwaitClosed(command[1], command[2], &reply);
          break;
        case kRelease:
          for (int i = 0; i < count_; ++i) {
            if (sockets_[i] >= 0) close(sockets_[i]);
            sockets_[i] = -1;
          }
          count_ = 0;
          break;
        default:
          _exit(0);
      }
      send(control_, reply.data(), sizeof(reply), MSG_NOSIGNAL);
    }
  }

  int64_t ChildConnect(int port, int count) {
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int64_t connected = 0;
    for (int i = 0; i < count && count_ < kMaxConnections; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      if (connect(fd, reinterpret_cast<const sockaddr*>(&address),
                  sizeof(address)) != 0) {
        close(fd);
        continue;
      }
      sockets_[count_] = fd;
      connected_at_us_[count_] = NowMicros();
      closed_[count_] = 0;
      ++count_;
      ++connected;
    }
    return connected;
  }

  // Marks connections whose peer closed or reset them; returns the total.
  int64_t ChildSweep(int64_t* max_latency_us) {
    int64_t closed = 0;
    for (int i = 0; i < count_; ++i) {
      if (closed_[i] == 0) {
        std::array<char, 256> buffer = {};
        const ssize_t got =
            recv(sockets_[i], buffer.data(), buffer.size(), MSG_DONTWAIT);
        // Data (gRPC's SETTINGS on an admitted connection) means open.
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                         errno != EINTR)) {
          closed_[i] = NowMicros() - connected_at_us_[i];
        }
      }
      if (closed_[i] != 0) {
        ++closed;
        *max_latency_us = std::max(*max_latency_us, closed_[i]);
      }
    }
    return closed;
  }

  void ChildAwaitClosed(int64_t expected, int timeout_ms,
                        std::array<int64_t, 2>* reply) {
    const int64_t deadline = NowMicros() + int64_t{timeout_ms} * 1000;
    int64_t max_latency_us = 0;
    while (ChildSweep(&max_latency_us) < expected && NowMicros() < deadline) {
      for (int i = 0; i < count_; ++i) {
        polled_[i] = pollfd{sockets_[i], POLLIN | POLLRDHUP, 0};
      }
      poll(polled_.data(), static_cast<nfds_t>(count_), 10);
    }
    poll(nullptr, 0, 100);  // let unexpected closes show up too
    max_latency_us = 0;
    (*reply)[0] = ChildSweep(&max_latency_us);
    (*reply)[1] = max_latency_us;
  }

  pid_t pid_ = -1;
  int control_ = -1;
  int count_ = 0;
  std::vector<int> sockets_;
  std::vector<int64_t> connected_at_us_;
  std::vector<int64_t> closed_;  // 0 = open, else latency (>= 1 us)
  std::vector<pollfd> polled_;
};

TEST(ConnectionAcceptorTest, ServesHealthCheckOverTcp) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0"));
  ASSERT_GT(server->port(), 0);
  const grpc::Status status = Check(Loopback(server->port()));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(server->acceptor().Stats().accepted, 1u);
  EXPECT_EQ(server->acceptor().Stats().rejected, 0u);
}

TEST(ConnectionAcceptorTest, InProcessChannelStillWorks) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0"));
  const std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(
          server->server().InProcessChannel(grpc::ChannelArguments()));
  grpc::ClientContext context;
  HealthCheckResponse response;
  EXPECT_TRUE(stub->Check(&context, HealthCheckRequest(), &response).ok());
  EXPECT_EQ(server->acceptor().Stats().accepted, 0u);
}

// max_connections: connections beyond it are reset at once, the server
// keeps serving, and accepts again once the flood is gone.
TEST(ConnectionAcceptorTest, RefusesConnectionsOverMaxConnectionsFast) {
  Flooder flooder;
  ConnectionLimits limits;
  limits.max_connections = 4;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0", limits));
  const uint64_t open_before = ConnectionAcceptor::CountOpenDescriptors();

  const int64_t connected = flooder.Connect(server->port(), 40);
  ASSERT_EQ(connected, 40);
  ASSERT_TRUE(Eventually(
      [&] { return server->decided() == static_cast<uint64_t>(connected); },
      absl::Seconds(5)));
  const ConnectionAcceptorStats stats = server->acceptor().Stats();
  EXPECT_LE(stats.accepted, 4u);
  EXPECT_GE(stats.accepted, 1u);
  EXPECT_EQ(stats.rejected, static_cast<uint64_t>(connected) - stats.accepted);
  EXPECT_LE(ConnectionAcceptor::CountOpenDescriptors(), open_before + 4);
  // Every refused client sees the reset within a second; admitted ones stay.
  const Flooder::Closed closed = flooder.AwaitClosed(
      static_cast<int64_t>(stats.rejected), /*timeout_ms=*/1000);
  EXPECT_EQ(closed.closed, static_cast<int64_t>(stats.rejected));
  EXPECT_LT(closed.max_latency_us, 1'000'000);

  flooder.Release();
  EXPECT_TRUE(Eventually([&] { return Check(Loopback(server->port())).ok(); },
                         absl::Seconds(5)));
}

// max_descriptors: the process never holds more than the cap, however many
// connections arrive; then it serves again.
TEST(ConnectionAcceptorTest, KeepsOpenDescriptorsUnderMaxDescriptors) {
  Flooder flooder;
  ConnectionLimits limits;
  limits.max_descriptors = ConnectionAcceptor::CountOpenDescriptors() + 100;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0", limits));
  EXPECT_EQ(server->acceptor().descriptor_cap(), limits.max_descriptors);

  const int64_t connected = flooder.Connect(server->port(), 300);
  ASSERT_EQ(connected, 300);
  ASSERT_TRUE(Eventually(
      [&] { return server->decided() == static_cast<uint64_t>(connected); },
      absl::Seconds(5)));
  const ConnectionAcceptorStats stats = server->acceptor().Stats();
  EXPECT_GE(stats.rejected, 200u);
  EXPECT_GE(stats.accepted, 1u);
  EXPECT_LE(ConnectionAcceptor::CountOpenDescriptors(), limits.max_descriptors);
  const Flooder::Closed closed = flooder.AwaitClosed(
      static_cast<int64_t>(stats.rejected), /*timeout_ms=*/1000);
  EXPECT_EQ(closed.closed, static_cast<int64_t>(stats.rejected));
  EXPECT_LT(closed.max_latency_us, 1'000'000);

  flooder.Release();
  EXPECT_TRUE(Eventually([&] { return Check(Loopback(server->port())).ok(); },
                         absl::Seconds(5)));
}

// Runs in a child process (a death test), whose RLIMIT_NOFILE it lowers:
// with no cap below the limit, accept4 fails with EMFILE; the acceptor sheds
// the excess fast and serves again once descriptors are free. Exits 0 when
// every step held; otherwise prints the failed step and exits 1.
[[noreturn]] void RunEmfileScenario() {
  const auto require = [](bool ok, const std::string& what) {
    if (ok) return;
    std::fprintf(stderr, "emfile scenario failed: %s\n", what.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  };
  Flooder flooder;  // forked first, with the normal limit
  ConnectionLimits limits;
  limits.max_descriptors = uint64_t{1} << 30;  // no cap: let EMFILE happen
  absl::StatusOr<std::unique_ptr<TestServer>> started =
      TestServer::Start("127.0.0.1:0", limits);
  require(started.ok(), started.status().ToString());
  TestServer& server = **started;
  const std::string target = Loopback(server.port());
  require(Check(target).ok(), "first Check");

  struct rlimit limit = {};
  getrlimit(RLIMIT_NOFILE, &limit);
  const struct rlimit original = limit;
  limit.rlim_cur = ConnectionAcceptor::CountOpenDescriptors() + 20;
  require(setrlimit(RLIMIT_NOFILE, &limit) == 0, "setrlimit");

  // A burst far past the limit: the first ~20 fill the table, the rest are
  // shed (accepted with the spare descriptor and reset).
  const int64_t connected = flooder.Connect(server.port(), 200);
  require(connected == 200, absl::StrCat("connected ", connected));
  const bool all_decided = Eventually(
      [&] { return server.decided() >= 1 + static_cast<uint64_t>(connected); },
      absl::Seconds(5));
  const ConnectionAcceptorStats stats = server.acceptor().Stats();
  require(stats.accept_errors >= 1, "no EMFILE seen");
  require(stats.rejected >= 100,
          absl::StrCat("rejected ", stats.rejected, " accepted ",
                       stats.accepted, " all decided ", all_decided));
  const Flooder::Closed closed =
      flooder.AwaitClosed(static_cast<int64_t>(stats.rejected), 1000);
  require(closed.closed == static_cast<int64_t>(stats.rejected) &&
              closed.max_latency_us < 1'000'000,
          absl::StrCat("closed ", closed.closed, " of ", stats.rejected,
                       ", slowest after ", closed.max_latency_us, " us"));

  // All closed: the server accepts again, within a couple of seconds.
  flooder.Release();
  require(Eventually([&] { return Check(target).ok(); }, absl::Seconds(2)),
          "no Check after the burst");

  // Descriptors taken by something else (not connections): new connections
  // are shed, and served again once those are released.
  std::vector<int> hogs;
  while (true) {
    const int fd = dup(STDERR_FILENO);
    if (fd < 0) break;
    hogs.push_back(fd);
  }
  const ConnectionAcceptorStats before = server.acceptor().Stats();
  require(flooder.Connect(server.port(), 10) == 10, "second burst");
  require(Eventually(
              [&] {
                return server.decided() >=
                       before.accepted + before.rejected + 10;
              },
              absl::Seconds(2)),
          "second burst not decided");
  // A descriptor gRPC frees meanwhile (a closing connection) may admit one.
  const uint64_t shed = server.acceptor().Stats().rejected - before.rejected;
  require(shed >= 8, absl::StrCat("second burst: shed only ", shed));
  flooder.Release();
  for (const int fd : hogs) close(fd);
  require(Eventually([&] { return Check(target).ok(); }, absl::Seconds(2)),
          "no Check after the hogs left");

  setrlimit(RLIMIT_NOFILE, &original);
  std::fprintf(stderr, "emfile scenario: ok\n");
  std::fflush(stderr);
  std::_Exit(0);
}

TEST(ConnectionAcceptorDeathTest, KeepsAcceptingAfterEmfile) {
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan+UBSan the re-executed child fails UBSan's vptr check inside
  // libstdc++'s basic_ios once its descriptors run out (seen in CI, not yet
  // understood; the plain builds pass, and hardening_test covers EMFILE
  // against the sanitized hopfieldd).
  GTEST_SKIP() << "not under sanitizers: see the comment";
#endif
  // Re-executes the binary for the child, so it starts without gRPC state.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(RunEmfileScenario(), ::testing::ExitedWithCode(0),
              "emfile scenario: ok");
}

TEST(ConnectionAcceptorTest, ServerShutdownClosesHandedOverConnections) {
  Flooder flooder;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0"));
  ASSERT_EQ(flooder.Connect(server->port(), 3), 3);
  ASSERT_TRUE(
      Eventually([&] { return server->acceptor().Stats().accepted == 3; },
                 absl::Seconds(5)));
  EXPECT_EQ(flooder.AwaitClosed(1, /*timeout_ms=*/0).closed, 0);
  server->Shutdown();
  const Flooder::Closed closed = flooder.AwaitClosed(3, /*timeout_ms=*/2000);
  EXPECT_EQ(closed.closed, 3);
}

TEST(ConnectionAcceptorTest, StopRefusesNewConnectionsAndIsIdempotent) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("127.0.0.1:0"));
  const int port = server->port();
  EXPECT_THAT(server->acceptor().Start(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  server->acceptor().Stop();
  server->acceptor().Stop();
  EXPECT_THAT(server->acceptor().Start(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  const grpc::Status status = Check(Loopback(port));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(ConnectionAcceptorTest, StopWithoutStart) {
  grpc::ServerBuilder builder;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ConnectionAcceptor> acceptor,
      ConnectionAcceptor::Create(&builder, "127.0.0.1:0"));
  const uint64_t open = ConnectionAcceptor::CountOpenDescriptors();
  acceptor->Stop();
  // The listening socket, the wake eventfd and the spare descriptor.
  EXPECT_EQ(ConnectionAcceptor::CountOpenDescriptors(), open - 3);
  acceptor->Stop();
}

TEST(ConnectionAcceptorTest, ServesIpv6Loopback) {
  absl::StatusOr<std::unique_ptr<TestServer>> server =
      TestServer::Start("[::1]:0");
  if (absl::IsUnavailable(server.status())) {
    GTEST_SKIP() << "no IPv6 loopback: " << server.status();
  }
  ASSERT_THAT(server, IsOk());
  EXPECT_TRUE(Check(absl::StrCat("[::1]:", (*server)->port())).ok());
}

TEST(ConnectionAcceptorTest, WildcardServesIpv4AndIpv6) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("0.0.0.0:0"));
  EXPECT_TRUE(Check(Loopback(server->port())).ok());
  const int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 v6 = {};
  v6.sin6_family = AF_INET6;
  v6.sin6_addr = in6addr_loopback;
  const bool has_ipv6 =
      probe >= 0 &&
      bind(probe, reinterpret_cast<const sockaddr*>(&v6), sizeof(v6)) == 0;
  if (probe >= 0) close(probe);
  if (has_ipv6) {
    EXPECT_TRUE(Check(absl::StrCat("[::1]:", server->port())).ok());
  }
}

TEST(ConnectionAcceptorTest, RejectsMalformedAddresses) {
  for (const char* listen :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:80x", "::1:80", "[::1", "[::1]80", "unix:/tmp/socket"}) {
    grpc::ServerBuilder builder;
    EXPECT_THAT(ConnectionAcceptor::Create(&builder, listen),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << listen;
  }
  EXPECT_THAT(ConnectionAcceptor::Create(nullptr, "127.0.0.1:0"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ConnectionAcceptorTest, RejectsLimitsThatAdmitNothing) {
  grpc::ServerBuilder builder;
  ConnectionLimits limits;
  limits.max_descriptors = 3;
  EXPECT_THAT(ConnectionAcceptor::Create(&builder, "127.0.0.1:0", limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_descriptors")));
  limits.max_descriptors = 0;
  limits.descriptor_reserve = uint64_t{1} << 40;
  EXPECT_THAT(ConnectionAcceptor::Create(&builder, "127.0.0.1:0", limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("descriptor_reserve")));
}

TEST(ConnectionAcceptorTest, PortInUseIsUnavailable) {
  grpc::ServerBuilder first_builder;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<ConnectionAcceptor> first,
      ConnectionAcceptor::Create(&first_builder, "127.0.0.1:0"));
  grpc::ServerBuilder builder;
  EXPECT_THAT(ConnectionAcceptor::Create(&builder, Loopback(first->port())),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("in use")));
}

// A name binds every address it resolves to ("localhost" comes from
// /etc/hosts, no DNS involved).
TEST(ConnectionAcceptorTest, ServesOnAName) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                                TestServer::Start("localhost:0"));
  EXPECT_TRUE(Check(Loopback(server->port())).ok());
}

}  // namespace
}  // namespace hopfield::server
