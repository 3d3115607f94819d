// File: transport_security.h
//
// The credentials hopfieldd's port is served with: plaintext or TLS
// (optionally mutual), and, when API keys are configured, an AccessControl
// that admits or refuses every call on its metadata before any handler runs
// (as gRPC's auth metadata processor, called inline on the transport
// thread: it only hashes and compares).
//
// TLS files are served to gRPC from validated copies in memory
// (TlsFileMirror): a certificate, key or CA file that is empty, unreadable,
// unparsable or does not match is never handed to gRPC (gRPC 1.51 aborts on
// an empty one and takes a mismatched pair), so a rotation caught half way
// changes nothing; the previous set keeps serving.
//
//   TlsFiles tls{"server.pem", "server.key", ""};
//   HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<TlsFileMirror> mirror,
//                             TlsFileMirror::Create(tls));
//   auto credentials = MakeServerCredentials(mirror.get(), access);
//   ... later, on a timer or SIGHUP: mirror->Reload();
#ifndef HOPFIELD_SERVER_TRANSPORT_SECURITY_H_
#define HOPFIELD_SERVER_TRANSPORT_SECURITY_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"

#include "core/mutex.h"
#include "server/access_control.h"

namespace hopfield::server {

struct TlsFiles {
  // PEM certificate chain and private key (--tls_cert_file,
  // --tls_key_file): both or neither; neither means plaintext.
  std::string cert_file;
  std::string key_file;
  // PEM CA certificates (--tls_client_ca_file): when set, a client must
  // present a certificate they signed (mutual TLS). Needs cert_file.
  std::string client_ca_file;
  // How often the files are re-read. REQUIRES: >= 1 s.
  absl::Duration reload_interval = absl::Seconds(60);

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// The contents of a validated set of TLS files.
struct TlsPem {
  std::string cert_chain;
  std::string key;
  std::string client_ca;  // empty without mutual TLS
};

// Validated copies of the TLS files in memory (memfds), at fixed paths
// (/proc/self/fd/N) that gRPC's file-watching certificate provider reads
// every second. Reload re-reads the configured files and swaps the copies
// (each in one dup3, so a path never names a half-written file) only when
// they changed and pass Create's checks. Thread-safe. Must outlive
// the credentials made from it.
class TlsFileMirror {
 public:
  // Reads and checks the files, so that a bad one stops the start with a
  // clear error instead of failing every handshake later: readable, the
  // chain holds a certificate, the key is an unencrypted PEM key matching
  // the chain's first certificate, the client CA file holds a certificate.
  // Errors: INVALID_ARGUMENT naming the flag, the file and what is wrong,
  // for an inconsistent config, or when TLS is off; UNAVAILABLE when
  // memfd_create fails.
  static absl::StatusOr<std::unique_ptr<TlsFileMirror>> Create(
      const TlsFiles& files);
  TlsFileMirror(const TlsFileMirror&) = delete;
  TlsFileMirror& operator=(const TlsFileMirror&) = delete;
  ~TlsFileMirror();

  // Re-reads the files: true when a new set was installed (gRPC serves it
  // to new connections within a second), false when nothing changed.
  // Errors: as Create (the set in force stays).
  absl::StatusOr<bool> Reload();

  const TlsFiles& files() const { return files_; }
  std::string cert_path() const;
  std::string key_path() const;
  std::string client_ca_path() const;  // "" without mutual TLS

 private:
  explicit TlsFileMirror(TlsFiles files);
  absl::Status InstallLocked(const TlsPem& pem)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  Mutex mu_;
  TlsPem installed_ ABSL_GUARDED_BY(mu_);
  // Fixed once Create returns; their contents change by dup3 under mu_.
  int cert_fd_ = -1;
  int key_fd_ = -1;
  int ca_fd_ = -1;
};

// Server credentials: TLS from `tls`'s files when it is non-null, else
// plaintext; `access` (may be null: no keys) decides every call.
// Thread-safe; the credentials hold a reference to `access`.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFileMirror* tls, std::shared_ptr<const AccessControl> access);

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_TRANSPORT_SECURITY_H_
