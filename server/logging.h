// File: logging.h
//
// A small leveled logger for the server (Debian's abseil 20220623 has no
// absl/log). One line per event on stderr: RFC 3339 UTC time, level,
// file:line, message (control characters escaped as \xNN). Shaped like ABSL_LOG
// so a later move is a search-and-replace.
//
//   HOPFIELD_LOG(INFO) << "listening on " << address;
#ifndef HOPFIELD_SERVER_LOGGING_H_
#define HOPFIELD_SERVER_LOGGING_H_

#include <sstream>

#include "absl/base/log_severity.h"

namespace hopfield::server {

// Accumulates one log line and writes it (atomically, one write) when
// destroyed. Thread-safe.
class LogMessage {
 public:
  LogMessage(absl::LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Sends gRPC's own log lines (gpr_log) through LogMessage: the same format,
// and control characters escaped (gRPC logs unparsable header values
// verbatim, newlines included). Call once, before the server starts.
void RouteGrpcLogs();

inline constexpr absl::LogSeverity kLogSeverityINFO = absl::LogSeverity::kInfo;
inline constexpr absl::LogSeverity kLogSeverityWARNING =
    absl::LogSeverity::kWarning;
inline constexpr absl::LogSeverity kLogSeverityERROR =
    absl::LogSeverity::kError;

}  // namespace hopfield::server

#define HOPFIELD_LOG(severity)                                               \
  ::hopfield::server::LogMessage(::hopfield::server::kLogSeverity##severity, \
                                 __FILE__, __LINE__)                         \
      .stream()

#endif  // HOPFIELD_SERVER_LOGGING_H_
