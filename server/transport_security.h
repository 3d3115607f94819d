// File: transport_security.h
//
// The credentials hopfieldd's port is served with: plaintext or TLS
// (optionally mutual), and, when API keys are configured, an AccessControl
// that admits or refuses every call on its metadata before any handler runs
// (as gRPC's auth metadata processor, called inline on the transport
// thread: it only hashes and compares).
//
// TLS files are watched: gRPC re-reads the certificate chain, the key and
// the client CA every `reload_interval`, so replacing them rotates the
// certificate without a restart (new connections get the new one; a key
// and chain that do not match are not taken, the old pair stays).
//
//   TlsFiles tls{"server.pem", "server.key", ""};
//   HOPFIELD_RETURN_IF_ERROR(CheckTlsFiles(tls));
//   HOPFIELD_ASSIGN_OR_RETURN(auto credentials,
//                             MakeServerCredentials(tls, access));
#ifndef HOPFIELD_SERVER_TRANSPORT_SECURITY_H_
#define HOPFIELD_SERVER_TRANSPORT_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"

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

// Checks `files` now, so that a bad file stops the start with a clear
// error instead of failing every handshake later: the files are readable,
// the chain holds at least one certificate, the key parses and matches the
// chain's first certificate, the client CA file holds at least one
// certificate. OK when TLS is off.
// Errors: INVALID_ARGUMENT naming the flag, the file and what is wrong.
absl::Status CheckTlsFiles(const TlsFiles& files);

// Server credentials for `files` (TLS when enabled, else plaintext), with
// `access` (may be null: no keys) deciding every call.
// REQUIRES: CheckTlsFiles(files) is OK. Thread-safe; the credentials hold a
// reference to `access`.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFiles& files, std::shared_ptr<const AccessControl> access);

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_TRANSPORT_SECURITY_H_
