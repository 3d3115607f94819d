#include "server/logging.h"

#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"

namespace hopfield::server {

LogMessage::LogMessage(absl::LogSeverity severity, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  stream_ << absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(),
                              absl::UTCTimeZone())
          << ' ' << absl::LogSeverityName(severity) << ' '
          << (base != nullptr ? base + 1 : file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  // Control characters are escaped, so that nothing a client sends (gRPC
  // logs the values of headers it cannot parse) can start a line of its
  // own and pass for a log entry.
  std::string line;
  for (const char c : stream_.str()) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      static constexpr char kHex[] = "0123456789abcdef";  // NOLINT
      line += "\\x";
      line += kHex[byte >> 4];
      line += kHex[byte & 15];
    } else {
      line += c;
    }
  }
  line += '\n';
  // One write(2) per line keeps lines from different threads whole.
  [[maybe_unused]] const ssize_t written =
      ::write(STDERR_FILENO, line.data(), line.size());
}

namespace {

void GrpcLog(gpr_log_func_args* args) {
  absl::LogSeverity severity = absl::LogSeverity::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    severity = absl::LogSeverity::kError;
  }
  LogMessage(severity, args->file != nullptr ? args->file : "grpc", args->line)
          .stream()
      << "grpc: " << (args->message != nullptr ? args->message : "");
}

}  // namespace

void RouteGrpcLogs() { gpr_set_log_function(GrpcLog); }

}  // namespace hopfield::server
