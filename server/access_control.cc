#include "server/access_control.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace hopfield::server {
namespace {

constexpr size_t kMaxKeyBytes = 4096;
constexpr size_t kMaxKeys = 10000;
constexpr size_t kMaxFileBytes = 16 << 20;
constexpr size_t kShortKeyBytes = 16;

std::array<uint8_t, 32> Sha256(absl::string_view bytes) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         digest.data());
  return digest;
}

bool VisibleAscii(absl::string_view key) {
  return std::all_of(key.begin(), key.end(),
                     [](char c) { return c >= 0x21 && c <= 0x7E; });
}

// MemoryService's methods that change state (or, Backup, write files).
constexpr std::array<absl::string_view, 7> kWriteMethods = {
    "Store",      "StoreStream", "Forget", "CreateBank",
    "DeleteBank", "Train",       "Backup"};

}  // namespace

Right RequiredRight(absl::string_view method) {
  if (absl::StartsWith(method, "/grpc.health.v1.Health/")) return Right::kOpen;
  if (absl::ConsumePrefix(&method, "/hopfield.v1.MemoryService/")) {
    for (const absl::string_view write : kWriteMethods) {
      if (method == write) return Right::kWrite;
    }
  }
  return Right::kRead;
}

std::string KeyId(absl::string_view key) {
  const std::array<uint8_t, 32> digest = Sha256(key);
  constexpr absl::string_view kHex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    id.push_back(kHex[digest[i] >> 4]);
    id.push_back(kHex[digest[i] & 15]);
  }
  return id;
}

std::optional<absl::string_view> BearerToken(absl::string_view authorization) {
  // The scheme is case-insensitive (RFC 7235).
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()),
                              kScheme)) {
    return std::nullopt;
  }
  return absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view text,
                                       absl::string_view source) {
  ApiKeys keys;
  absl::flat_hash_set<std::string> digests;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat(source, " line ", line_number);
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected `KEY ROLE` (ROLE read-write or read-only), got ",
          fields.size(), " fields"));
    }
    const absl::string_view key = fields[0];
    if (key.size() > kMaxKeyBytes || !VisibleAscii(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": a key is 1..", kMaxKeyBytes,
                       " visible ASCII characters (0x21..0x7E)"));
    }
    Role role;
    if (fields[1] == "read-write") {
      role = Role::kReadWrite;
    } else if (fields[1] == "read-only") {
      role = Role::kReadOnly;
    } else {
      // The field is not quoted: on a line written `ROLE KEY` it is the key.
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": the second field must be the role, read-write or "
                       "read-only (a line is `KEY ROLE`)"));
    }
    Entry entry{Sha256(key), role, KeyId(key)};
    if (!digests.insert(std::string(entry.digest.begin(), entry.digest.end()))
             .second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": key ", entry.key_id, " is listed twice"));
    }
    if (keys.entries_.size() >= kMaxKeys) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": more than ", kMaxKeys,
                       " keys (each call compares against every key)"));
    }
    if (key.size() < kShortKeyBytes) ++keys.short_keys_;
    keys.entries_.push_back(std::move(entry));
  }
  if (keys.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " lists no keys: every call would be refused"));
  }
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& path) {
  // A regular file of bounded size: a FIFO would block the reload (and the
  // signal loop with it), /dev/zero would never end.
  struct stat info = {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read --api_keys_file ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api_keys_file ", path, " is not a regular file"));
  }
  if (static_cast<uint64_t>(info.st_size) > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--api_keys_file ", path, " is over ", kMaxFileBytes, " bytes"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read --api_keys_file ", path));
  }
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read --api_keys_file ", path));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--api_keys_file ", path, " is over ", kMaxFileBytes, " bytes"));
  }
  return Parse(text, absl::StrCat("--api_keys_file ", path));
}

std::optional<ApiKeys::Match> ApiKeys::Find(absl::string_view key) const {
  const std::array<uint8_t, 32> digest = Sha256(key);
  const Entry* found = nullptr;
  // Every entry is compared, in constant time each; only the (secret-free)
  // choice of which pointer to keep depends on the outcome.
  for (const Entry& entry : entries_) {
    const bool equal =
        CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) found = &entry;
  }
  if (found == nullptr) return std::nullopt;
  return Match{found->role, found->key_id};
}

AccessControl::AccessControl(ApiKeys keys, RefusalCallback on_refusal)
    : keys_(std::make_shared<const ApiKeys>(std::move(keys))),
      on_refusal_(std::move(on_refusal)) {}

absl::StatusOr<std::string> AccessControl::Check(
    absl::string_view method,
    std::optional<absl::string_view> authorization) const {
  const Right right = RequiredRight(method);
  std::shared_ptr<const ApiKeys> keys;
  {
    ReaderLock lock(&mu_);
    keys = keys_;
  }
  absl::Status refused;
  std::optional<ApiKeys::Match> match;
  if (authorization.has_value()) {
    if (const std::optional<absl::string_view> key =
            BearerToken(*authorization);
        key.has_value()) {
      match = keys->Find(*key);
    }
  }
  if (right == Right::kOpen) return match.has_value() ? match->key_id : "";
  if (!authorization.has_value()) {
    refused = absl::UnauthenticatedError(
        "this server requires an API key: send metadata "
        "'authorization: Bearer KEY'");
  } else if (!match.has_value()) {
    refused = absl::UnauthenticatedError(
        "invalid API key: metadata 'authorization' must be 'Bearer KEY' with "
        "a key the server knows");
  } else if (right == Right::kWrite && match->role != Role::kReadWrite) {
    refused = absl::PermissionDeniedError(
        absl::StrCat("API key ", match->key_id, " is read-only; ", method,
                     " needs a read-write key"));
  }
  if (!refused.ok()) {
    if (on_refusal_) on_refusal_(method, refused.code());
    return refused;
  }
  return match->key_id;
}

void AccessControl::Replace(ApiKeys keys) {
  auto replacement = std::make_shared<const ApiKeys>(std::move(keys));
  WriterLock lock(&mu_);
  keys_ = std::move(replacement);
}

size_t AccessControl::size() const {
  ReaderLock lock(&mu_);
  return keys_->size();
}

}  // namespace hopfield::server
