#include "server/transport_security.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpc/grpc_security.h"

#include "core/status_macros.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace hopfield::server {
namespace {

absl::string_view View(const grpc_slice& slice) {
  return {reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
          GRPC_SLICE_LENGTH(slice)};
}

// gRPC's auth metadata processor: AccessControl::Check on the call's :path
// and authorization header. It adds nothing to the auth context: gRPC 1.51
// hands the processor the connection's context, not the call's, so what
// one call added would be seen by (and pile up over) every later call on
// the connection.
void ProcessMetadata(void* state, grpc_auth_context* /*context*/,
                     const grpc_metadata* metadata, size_t count,
                     grpc_process_auth_metadata_done_cb done, void* user_data) {
  const auto& access =
      *static_cast<std::shared_ptr<const AccessControl>*>(state);
  absl::string_view path;
  std::optional<absl::string_view> authorization;
  for (size_t i = 0; i < count; ++i) {
    const absl::string_view key = View(metadata[i].key);
    if (key == ":path") {
      path = View(metadata[i].value);
    } else if (key == "authorization" && !authorization.has_value()) {
      authorization = View(metadata[i].value);
    }
  }
  const absl::StatusOr<std::string> key_id = access->Check(path, authorization);
  if (!key_id.ok()) {
    const std::string message(key_id.status().message());
    done(user_data, nullptr, 0, nullptr, 0,
         static_cast<grpc_status_code>(key_id.status().code()),
         message.c_str());
    return;
  }
  done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void DestroyState(void* state) {
  delete static_cast<std::shared_ptr<const AccessControl>*>(state);
}

// ServerCredentials that gRPC's C++ API does not offer: an auth metadata
// processor on a plaintext port (InsecureServerCredentials aborts when
// given one), and TLS from watched files with the processor. Built on
// gRPC's C credentials API.
class HopfieldServerCredentials final : public grpc::ServerCredentials {
 public:
  HopfieldServerCredentials(TlsFiles files,
                            std::shared_ptr<const AccessControl> access)
      : files_(std::move(files)), access_(std::move(access)) {}

  // AccessControl decides access; a second processor has no place.
  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/)
      override {
    GPR_ASSERT(false && "hopfieldd's credentials take no other processor");
  }

 private:
  int AddPortToServer(const std::string& address,
                      grpc_server* server) override {
    grpc_server_credentials* credentials =
        files_.enabled() ? TlsCredentials()
                         : grpc_insecure_server_credentials_create();
    if (access_ != nullptr) {
      // The credentials own the state: gRPC calls DestroyState on it when
      // they go (the analyzer cannot see through the C API).
      grpc_server_credentials_set_auth_metadata_processor(
          credentials, grpc_auth_metadata_processor{
                           ProcessMetadata, DestroyState,
                           new std::shared_ptr<const AccessControl>(access_)});
    }
    // NOLINTBEGIN(clang-analyzer-cplusplus.NewDeleteLeaks)
    const int port =
        grpc_server_add_http2_port(server, address.c_str(), credentials);
    // NOLINTEND(clang-analyzer-cplusplus.NewDeleteLeaks)
    grpc_server_credentials_release(credentials);
    return port;
  }

  grpc_server_credentials* TlsCredentials() const {
    const bool mutual = !files_.client_ca_file.empty();
    grpc_tls_certificate_provider* provider =
        grpc_tls_certificate_provider_file_watcher_create(
            files_.key_file.c_str(), files_.cert_file.c_str(),
            mutual ? files_.client_ca_file.c_str() : nullptr,
            // The mirror's in-memory files: reading them is cheap, and a
            // reload reaches gRPC within a second.
            1);
    grpc_tls_credentials_options* options =
        grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(options, provider);
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(options);
    if (mutual) {
      grpc_tls_credentials_options_watch_root_certs(options);
      grpc_tls_credentials_options_set_cert_request_type(
          options, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    } else {
      grpc_tls_credentials_options_set_cert_request_type(
          options, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    }
    grpc_server_credentials* credentials =
        grpc_tls_server_credentials_create(options);  // owns options
    grpc_tls_certificate_provider_release(provider);  // options hold a ref
    return credentials;
  }

  const TlsFiles files_;
  const std::shared_ptr<const AccessControl> access_;
};

// OpenSSL's most recent error, as text.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(google-runtime-int)
  ERR_clear_error();
  if (code == 0) return "no PEM data";
  std::array<char, 256> text{};
  ERR_error_string_n(code, text.data(), text.size());
  return text.data();
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
using Certificate = std::unique_ptr<X509, X509Deleter>;

Bio MemoryBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// No passphrase prompt: an encrypted key is refused, not asked about.
int NoPassphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/,
                 void* /*user*/) {
  return -1;
}

// The PEM certificates in `text`; at least one.
absl::StatusOr<std::vector<Certificate>> ParseCertificates(
    absl::string_view flag, const std::string& path, const std::string& text) {
  Bio bio = MemoryBio(text);
  std::vector<Certificate> certificates;
  ERR_clear_error();
  while (X509* cert =
             PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certificates.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the data reads as an error
  if (certificates.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path,
        " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return certificates;
}

absl::Status CheckTlsConfig(const TlsFiles& files) {
  if (!files.enabled()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file needs --tls_cert_file and --tls_key_file "
          "(mutual TLS is TLS with client certificates)");
    }
    return absl::OkStatus();
  }
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS needs both --tls_cert_file and --tls_key_file; got only ",
        files.cert_file.empty() ? "--tls_key_file" : "--tls_cert_file"));
  }
  if (files.reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS reload interval must be >= 1 s, got ",
                     absl::FormatDuration(files.reload_interval)));
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files) {
  TlsPem pem;
  absl::StatusOr<std::string> chain_text =
      ReadFile("--tls_cert_file", files.cert_file);
  if (!chain_text.ok()) return chain_text.status();
  absl::StatusOr<std::vector<Certificate>> chain =
      ParseCertificates("--tls_cert_file", files.cert_file, *chain_text);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> key_text =
      ReadFile("--tls_key_file", files.key_file);
  if (!key_text.ok()) return key_text.status();
  Bio key_bio = MemoryBio(*key_text);
  ERR_clear_error();
  std::unique_ptr<EVP_PKEY, KeyDeleter> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file ", files.key_file,
        " holds no unencrypted PEM private key: ", OpenSslError()));
  }
  if (X509_check_private_key(chain->front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file ", files.key_file,
        " does not match the first certificate of --tls_cert_file ",
        files.cert_file));
  }
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_text =
        ReadFile("--tls_client_ca_file", files.client_ca_file);
    if (!ca_text.ok()) return ca_text.status();
    absl::StatusOr<std::vector<Certificate>> cas = ParseCertificates(
        "--tls_client_ca_file", files.client_ca_file, *ca_text);
    if (!cas.ok()) return cas.status();
    pem.client_ca = *std::move(ca_text);
  }
  pem.cert_chain = *std::move(chain_text);
  pem.key = *std::move(key_text);
  return pem;
}

// A memfd holding `text` (close-on-exec), or -1.
int MemoryFile(const char* name, const std::string& text) {
  const int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote <= 0) {
      if (wrote < 0 && errno == EINTR) continue;
      ::close(fd);
      return -1;
    }
    done += static_cast<size_t>(wrote);
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsFileMirror>> TlsFileMirror::Create(
    const TlsFiles& files) {
  HOPFIELD_RETURN_IF_ERROR(CheckTlsConfig(files));
  if (!files.enabled()) {
    return absl::InvalidArgumentError("TlsFileMirror: TLS is off");
  }
  HOPFIELD_ASSIGN_OR_RETURN(TlsPem pem, ReadTlsFiles(files));
  std::unique_ptr<TlsFileMirror> mirror(new TlsFileMirror(files));
  WriterLock lock(&mirror->mu_);
  HOPFIELD_RETURN_IF_ERROR(mirror->InstallLocked(pem));
  return mirror;
}

TlsFileMirror::TlsFileMirror(TlsFiles files) : files_(std::move(files)) {}

TlsFileMirror::~TlsFileMirror() {
  for (const int fd : {cert_fd_, key_fd_, ca_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

std::string TlsFileMirror::cert_path() const {
  return absl::StrCat("/proc/self/fd/", cert_fd_);
}
std::string TlsFileMirror::key_path() const {
  return absl::StrCat("/proc/self/fd/", key_fd_);
}
std::string TlsFileMirror::client_ca_path() const {
  return ca_fd_ < 0 ? "" : absl::StrCat("/proc/self/fd/", ca_fd_);
}

absl::Status TlsFileMirror::InstallLocked(const TlsPem& pem) {
  const int cert = MemoryFile("hopfield-tls-cert", pem.cert_chain);
  const int key = MemoryFile("hopfield-tls-key", pem.key);
  const int ca = files_.client_ca_file.empty()
                     ? -2
                     : MemoryFile("hopfield-tls-ca", pem.client_ca);
  if (cert < 0 || key < 0 || ca == -1) {
    const int error = errno;
    for (const int fd : {cert, key, ca}) {
      if (fd >= 0) ::close(fd);
    }
    return absl::UnavailableError(
        absl::StrCat("cannot hold the TLS files in memory (memfd_create): ",
                     std::strerror(error)));
  }
  // First install: these descriptors are the mirror's for good. Later: each
  // takes the place of the old one in one dup3, so the fixed path
  // /proc/self/fd/N names the new contents from then on.
  auto place = [](int* slot, int fresh) {
    if (fresh < 0) return;
    if (*slot < 0) {
      *slot = fresh;
      return;
    }
    ::dup3(fresh, *slot, O_CLOEXEC);
    ::close(fresh);
  };
  place(&key_fd_, key);
  place(&cert_fd_, cert);
  place(&ca_fd_, ca);
  installed_ = pem;
  return absl::OkStatus();
}

absl::StatusOr<bool> TlsFileMirror::Reload() {
  WriterLock lock(&mu_);
  absl::StatusOr<TlsPem> pem = ReadTlsFiles(files_);
  if (!pem.ok()) return pem.status();
  if (pem->cert_chain == installed_.cert_chain && pem->key == installed_.key &&
      pem->client_ca == installed_.client_ca) {
    return false;
  }
  HOPFIELD_RETURN_IF_ERROR(InstallLocked(*pem));
  return true;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFileMirror* tls, std::shared_ptr<const AccessControl> access) {
  TlsFiles paths;
  if (tls != nullptr) {
    paths.cert_file = tls->cert_path();
    paths.key_file = tls->key_path();
    paths.client_ca_file = tls->client_ca_path();
  }
  return std::make_shared<HopfieldServerCredentials>(paths, std::move(access));
}

}  // namespace hopfield::server
