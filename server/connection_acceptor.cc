#include "server/connection_acceptor.h"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "server/logging.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

namespace hopfield::server {
namespace {

// How long the loop waits after a resource error it cannot shed around.
constexpr std::chrono::milliseconds kBackoff{100};
// Accepts per wake-up before the loop polls again (and so sees Stop()).
constexpr int kMaxAcceptsPerWakeup = 256;
// Trouble (refusals, accept errors) is logged at most this often.
constexpr int64_t kLogIntervalNanos = int64_t{10} * 1000 * 1000 * 1000;

std::string ErrnoText(int error) {
  return std::error_code(error, std::generic_category()).message();
}

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The soft RLIMIT_NOFILE; "infinity" (or an unreadable limit) as INT_MAX,
// the most descriptor numbers there can be.
uint64_t SoftDescriptorLimit() {
  struct rlimit limit = {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 ||
      limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur > static_cast<rlim_t>(INT_MAX)) {
    return INT_MAX;
  }
  return limit.rlim_cur;
}

// The descriptors open in this process, ascending.
std::vector<int> OpenDescriptors() {
  std::vector<int> open;
  DIR* dir = opendir("/proc/self/fd");
  if (dir != nullptr) {
    const int own = dirfd(dir);
    while (const struct dirent* entry = readdir(dir)) {
      int fd = -1;
      if (absl::SimpleAtoi(entry->d_name, &fd) && fd != own) {
        open.push_back(fd);
      }
    }
    closedir(dir);
  } else {
    // No /proc (a bare chroot): probe every number the limit allows.
    const int limit =
        static_cast<int>(std::min<uint64_t>(SoftDescriptorLimit(), 1 << 20));
    for (int fd = 0; fd < limit; ++fd) {
      if (fcntl(fd, F_GETFD) != -1) open.push_back(fd);
    }
  }
  std::sort(open.begin(), open.end());
  return open;
}

// "host:port" / "[v6]:port" -> host (brackets removed) and port.
absl::Status SplitHostPort(absl::string_view listen, std::string* host,
                           int* port) {
  const auto invalid = [listen](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": ", why));
  };
  if (absl::StartsWith(listen, "unix:") ||
      absl::StartsWith(listen, "unix-abstract:")) {
    return invalid("unix sockets are not supported, only host:port");
  }
  absl::string_view port_text;
  if (absl::StartsWith(listen, "[")) {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos || close + 1 >= listen.size() ||
        listen[close + 1] != ':') {
      return invalid("expected [ipv6]:port");
    }
    *host = std::string(listen.substr(1, close - 1));
    port_text = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == absl::string_view::npos) return invalid("expected host:port");
    if (absl::StrContains(listen.substr(0, colon), ':')) {
      return invalid("an IPv6 host needs brackets: [host]:port");
    }
    *host = std::string(listen.substr(0, colon));
    port_text = listen.substr(colon + 1);
  }
  const bool digits = !port_text.empty() && port_text.size() <= 5 &&
                      std::all_of(port_text.begin(), port_text.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || !absl::SimpleAtoi(port_text, port) || *port > 65535) {
    return invalid("the port must be a number in 0..65535");
  }
  return absl::OkStatus();
}

struct Address {
  sockaddr_storage storage = {};
  socklen_t length = 0;
  // An IPv6 wildcard that should take IPv4 too (IPV6_V6ONLY off).
  bool dual_stack = false;
};

void SetPort(Address* address, int port) {
  const auto network_port = htons(static_cast<uint16_t>(port));
  if (address->storage.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&address->storage)->sin6_port =
        network_port;
  } else {
    reinterpret_cast<sockaddr_in*>(&address->storage)->sin_port = network_port;
  }
}

// Creates, binds and listens; returns the descriptor or -errno.
int BindAndListen(const Address& address) {
  const int fd = socket(address.storage.ss_family,
                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int one = 1;
  const int v6_only = address.dual_stack ? 0 : 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (address.storage.ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof(v6_only)) !=
           0) ||
      bind(fd, reinterpret_cast<const sockaddr*>(&address.storage),
           address.length) != 0 ||
      listen(fd, SOMAXCONN) != 0) {
    const int error = errno;
    close(fd);
    return -error;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage bound = {};
  socklen_t length = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return 0;
  }
  return bound.ss_family == AF_INET6
             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

// The addresses `host` stands for; a wildcard is one dual-stack IPv6 address
// followed by the IPv4 fallback, used only when IPv6 cannot be bound.
absl::StatusOr<std::vector<Address>> Resolve(absl::string_view listen,
                                             const std::string& host,
                                             bool* wildcard) {
  *wildcard = host.empty() || host == "0.0.0.0" || host == "::";
  std::vector<Address> addresses;
  if (*wildcard) {
    Address v6;
    v6.storage.ss_family = AF_INET6;
    v6.length = sizeof(sockaddr_in6);
    v6.dual_stack = true;
    addresses.push_back(v6);
    Address v4;
    v4.storage.ss_family = AF_INET;
    reinterpret_cast<sockaddr_in*>(&v4.storage)->sin_addr.s_addr =
        htonl(INADDR_ANY);
    v4.length = sizeof(sockaddr_in);
    addresses.push_back(v4);
    return addresses;
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  const int error = getaddrinfo(host.c_str(), "0", &hints, &results);
  if (error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", gai_strerror(error)));
  }
  for (const addrinfo* result = results; result != nullptr;
       result = result->ai_next) {
    if ((result->ai_family != AF_INET && result->ai_family != AF_INET6) ||
        result->ai_addrlen > sizeof(sockaddr_storage)) {
      continue;
    }
    Address address;
    std::memcpy(&address.storage, result->ai_addr, result->ai_addrlen);
    address.length = result->ai_addrlen;
    const bool seen = std::any_of(
        addresses.begin(), addresses.end(), [&address](const Address& other) {
          return other.length == address.length &&
                 std::memcmp(&other.storage, &address.storage,
                             address.length) == 0;
        });
    if (!seen) addresses.push_back(address);
  }
  freeaddrinfo(results);
  if (addresses.empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": no IPv4 or IPv6 address"));
  }
  return addresses;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::Create(
    grpc::ServerBuilder* builder, absl::string_view listen,
    ConnectionLimits limits,
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (builder == nullptr) {
    return absl::InvalidArgumentError("ConnectionAcceptor needs a builder");
  }
  std::string host;
  int requested_port = 0;
  if (absl::Status split = SplitHostPort(listen, &host, &requested_port);
      !split.ok()) {
    return split;
  }
  const uint64_t soft_limit = SoftDescriptorLimit();
  uint64_t max_descriptors = limits.max_descriptors;
  if (max_descriptors == 0) {
    if (limits.descriptor_reserve >= soft_limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("descriptor_reserve ", limits.descriptor_reserve,
                       " leaves nothing of the open-file limit ", soft_limit));
    }
    max_descriptors = soft_limit - limits.descriptor_reserve;
  }

  bool wildcard = false;
  absl::StatusOr<std::vector<Address>> addresses =
      Resolve(listen, host, &wildcard);
  if (!addresses.ok()) return addresses.status();

  // From here on the destructor closes whatever is open on an error return.
  std::unique_ptr<ConnectionAcceptor> acceptor(new ConnectionAcceptor);
  acceptor->max_descriptors_ = max_descriptors;
  acceptor->max_connections_ = limits.max_connections;
  acceptor->descriptor_cap_.store(max_descriptors, std::memory_order_relaxed);
  int port = requested_port;
  int first_error = 0;
  for (Address& address : *addresses) {
    if (wildcard && !acceptor->listen_fds_.empty()) break;  // IPv6 took it
    // Names that resolve to several addresses bind each without dual-stack
    // (so ::1 and 127.0.0.1 do not collide), on the port the first one got.
    SetPort(&address, port);
    const int fd = BindAndListen(address);
    if (fd < 0) {
      if (first_error == 0) first_error = -fd;
      continue;
    }
    acceptor->listen_fds_.push_back(fd);
    if (port == 0) port = BoundPort(fd);
  }
  if (acceptor->listen_fds_.empty() || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ",
                     ErrnoText(first_error != 0 ? first_error : EINVAL)));
  }
  acceptor->port_ = port;

  acceptor->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (acceptor->wake_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("ConnectionAcceptor: eventfd: ", ErrnoText(errno)));
  }
  // Without a spare the loop still works; it backs off instead of shedding.
  acceptor->spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);

  const uint64_t open_now = OpenDescriptors().size();
  if (max_descriptors <= open_now) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_descriptors ", max_descriptors,
        " admits no connection: ", open_now, " descriptors are open already"));
  }

  if (credentials == nullptr) credentials = grpc::InsecureServerCredentials();
  acceptor->acceptor_ = builder->experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
      std::move(credentials));
  return acceptor;
}

ConnectionAcceptor::~ConnectionAcceptor() { Stop(); }

absl::Status ConnectionAcceptor::Start() {
  WriterLock lock(&mu_);
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        state_ == State::kRunning ? "ConnectionAcceptor already started"
                                  : "ConnectionAcceptor already stopped");
  }
  // One scan now; the loop then decides by descriptor number alone. Since
  // the kernel hands out the lowest free number, "the new descriptor is
  // below first_refused_fd_" means "a slot below it was free", i.e. at most
  // `cap` descriptors are open below it once the connection is admitted.
  const std::vector<int> open = OpenDescriptors();
  const uint64_t open_now = open.size();
  uint64_t cap = max_descriptors_;
  if (max_connections_ > 0) cap = std::min(cap, open_now + max_connections_);
  if (cap <= open_now) {
    return absl::FailedPreconditionError(
        absl::StrCat("ConnectionAcceptor: ", open_now,
                     " descriptors are open, at or above the cap of ", cap,
                     "; no connection could be admitted"));
  }
  // The smallest first_refused with first_refused - |{fd < first_refused}|
  // == cap - open_now: exactly that many free numbers lie below it.
  int64_t first_refused = static_cast<int64_t>(cap - open_now);
  for (const int fd : open) {
    if (fd >= first_refused) break;
    ++first_refused;
  }
  first_refused_fd_ = std::min<int64_t>(first_refused, INT_MAX);
  descriptor_cap_.store(cap, std::memory_order_relaxed);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& error) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "ConnectionAcceptor: cannot start the accept thread: ", error.what()));
  }
  state_ = State::kRunning;
  return absl::OkStatus();
}

void ConnectionAcceptor::Stop() {
  WriterLock lock(&mu_);
  if (state_ == State::kStopped) return;
  state_ = State::kStopped;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of overflow; the loop polls it.
    [[maybe_unused]] const ssize_t written = write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  for (const int fd : listen_fds_) close(fd);
  listen_fds_.clear();
  for (int* fd : {&wake_fd_, &spare_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

ConnectionAcceptorStats ConnectionAcceptor::Stats() const {
  ConnectionAcceptorStats stats;
  stats.accepted = accepted_.load(std::memory_order_relaxed);
  stats.rejected = rejected_.load(std::memory_order_relaxed);
  stats.accept_errors = accept_errors_.load(std::memory_order_relaxed);
  return stats;
}

uint64_t ConnectionAcceptor::CountOpenDescriptors() {
  return OpenDescriptors().size();
}

void ConnectionAcceptor::Run() {
  std::vector<pollfd> fds;
  fds.push_back(pollfd{wake_fd_, POLLIN, 0});
  for (const int fd : listen_fds_) fds.push_back(pollfd{fd, POLLIN, 0});
  while (true) {
    for (pollfd& entry : fds) entry.revents = 0;
    if (poll(fds.data(), fds.size(), MaybeLogTrouble()) < 0) {
      if (errno != EINTR) Backoff();  // ENOMEM: nothing better to do
      continue;
    }
    if (fds[0].revents != 0) return;  // Stop()
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) AcceptPending(fds[i].fd);
    }
  }
}

void ConnectionAcceptor::AcceptPending(int listen_fd) {
  for (int i = 0; i < kMaxAcceptsPerWakeup; ++i) {
    // gRPC's endpoints need non-blocking sockets (its own accept4 sets it).
    const int fd =
        accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Admit(listen_fd, fd);
      continue;
    }
    const int error = errno;
    switch (error) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
        continue;
      // The pending connection's own trouble (Linux passes network errors
      // of the new socket to accept): skip it.
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
        accept_errors_.fetch_add(1, std::memory_order_relaxed);
        last_errno_ = error;
        continue;
      case EMFILE:
      case ENFILE:
        accept_errors_.fetch_add(1, std::memory_order_relaxed);
        last_errno_ = error;
        switch (ShedWithSpare(listen_fd)) {
          case Shed::kShed:
            continue;
          case Shed::kNothingPending:
            return;
          case Shed::kFailed:
            Backoff();
            return;
        }
        return;
      default:  // ENOBUFS, ENOMEM, or something unexpected: wait, go on
        accept_errors_.fetch_add(1, std::memory_order_relaxed);
        last_errno_ = error;
        Backoff();
        return;
    }
  }
}

void ConnectionAcceptor::Admit(int listen_fd, int fd) {
  if (fd >= first_refused_fd_) {
    Reject(fd);
    return;
  }
  // Low latency, like gRPC's own connections (it sets TCP_NODELAY on its
  // listening socket, which accepted sockets inherit).
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters
      params;
  params.listener_fd = listen_fd;
  params.fd = fd;
  // Counted before the hand-off: once gRPC has the connection, its first
  // call can complete (and a caller read Stats()) before this thread runs
  // on.
  accepted_.fetch_add(1, std::memory_order_relaxed);
  acceptor_->HandleNewConnection(&params);  // gRPC owns fd from here
}

void ConnectionAcceptor::Reject(int fd) {
  // Reset rather than FIN: the client fails at once whatever it sent, and no
  // TIME_WAIT is left behind on our side per refused connection.
  const struct linger reset = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  close(fd);
  rejected_.fetch_add(1, std::memory_order_relaxed);
}

ConnectionAcceptor::Shed ConnectionAcceptor::ShedWithSpare(int listen_fd) {
  if (spare_fd_ < 0) return Shed::kFailed;
  close(spare_fd_);
  const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  const int error = errno;
  if (fd >= 0) Reject(fd);
  // Another thread may have taken the slot meanwhile; then there is no
  // spare until a back-off reopens it.
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return Shed::kShed;
  if (error == EAGAIN || error == EWOULDBLOCK) return Shed::kNothingPending;
  return Shed::kFailed;
}

void ConnectionAcceptor::Backoff() {
  pollfd wake = {wake_fd_, POLLIN, 0};
  poll(&wake, 1, static_cast<int>(kBackoff.count()));
  if (spare_fd_ < 0) spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int ConnectionAcceptor::MaybeLogTrouble() {
  const uint64_t rejected = rejected_.load(std::memory_order_relaxed);
  const uint64_t errors = accept_errors_.load(std::memory_order_relaxed);
  if (rejected == logged_rejected_ && errors == logged_errors_) return -1;
  const int64_t now = SteadyNanos();
  if (last_log_nanos_ != 0 && now - last_log_nanos_ < kLogIntervalNanos) {
    return static_cast<int>((last_log_nanos_ + kLogIntervalNanos - now) /
                            1'000'000) +
           1;
  }
  HOPFIELD_LOG(WARNING)
      << "port " << port_ << ": refused " << rejected - logged_rejected_
      << " connections (descriptor cap " << descriptor_cap()
      << ", open-file limit " << SoftDescriptorLimit() << "), "
      << errors - logged_errors_ << " accept errors"
      << (errors != logged_errors_
              ? absl::StrCat(" (last: ", ErrnoText(last_errno_), ")")
              : std::string())
      << (last_log_nanos_ == 0 ? "" : " since the last report");
  logged_rejected_ = rejected;
  logged_errors_ = errors;
  last_log_nanos_ = now;
  return -1;
}

}  // namespace hopfield::server
