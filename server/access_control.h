// File: access_control.h
//
// Who may call what: API keys with roles (--api_keys_file) and the one
// table that maps every RPC to the right it needs.
//
// hopfieldd attaches an AccessControl to its listening port as gRPC's auth
// metadata processor (transport_security.h): each call is admitted or
// refused on its initial metadata, before any handler (MemoryService,
// reflection, Ping, Backup) runs, so no handler checks anything itself.
// Logs name a key by its KeyId, never by the key.
//
//   HOPFIELD_ASSIGN_OR_RETURN(ApiKeys keys, ApiKeys::Load("/etc/keys"));
//   auto access = std::make_shared<AccessControl>(std::move(keys));
//   absl::StatusOr<std::string> key_id =
//       access->Check("/hopfield.v1.MemoryService/Store", "Bearer s3cret");
#ifndef HOPFIELD_SERVER_ACCESS_CONTROL_H_
#define HOPFIELD_SERVER_ACCESS_CONTROL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "core/mutex.h"

namespace hopfield::server {

enum class Role { kReadOnly, kReadWrite };

// What a call needs: nothing (health probes), any valid key, or a
// read-write key.
enum class Right { kOpen, kRead, kWrite };

// The right a call of `method` (its HTTP/2 :path, "/package.Service/Method")
// needs: kOpen for grpc.health.v1.Health; kWrite for MemoryService's Store,
// StoreStream, Forget, CreateBank, DeleteBank, Train and Backup; kRead for
// everything else (GetBank, ListBanks, GetPatterns, Retrieve, Ping,
// reflection, and methods that do not exist, which then fail UNIMPLEMENTED
// only for a caller with a key).
Right RequiredRight(absl::string_view method);

// A key's id: the first 8 hex digits of its SHA-256, what logs name a key
// by (the key itself is never logged).
std::string KeyId(absl::string_view key);

// The key in an `authorization` header value `Bearer KEY` (scheme
// case-insensitive), or nullopt when the value has another form.
std::optional<absl::string_view> BearerToken(absl::string_view authorization);

// A set of API keys with their roles. Immutable after construction;
// thread-safe. Holds SHA-256 digests only, not the keys.
class ApiKeys {
 public:
  // Parses `KEY ROLE` lines: KEY is 1..4096 visible ASCII characters
  // (0x21..0x7E), ROLE is `read-write` or `read-only`, separated by spaces or
  // tabs. Blank lines and lines starting with '#' are skipped. At most
  // 10,000 keys (each call is compared against all of them).
  // Errors: INVALID_ARGUMENT naming `source` and the line (never quoting a
  // key) for a malformed line, an unknown role, a key listed twice or too
  // many keys, and when no key is listed (every call would be refused).
  static absl::StatusOr<ApiKeys> Parse(absl::string_view text,
                                       absl::string_view source);
  // Reads `path` and parses it. Errors: INVALID_ARGUMENT when the file
  // cannot be read, is not a regular file or is over 16 MiB (naming it and
  // the reason), or as Parse.
  static absl::StatusOr<ApiKeys> Load(const std::string& path);

  struct Match {
    Role role;
    std::string key_id;
  };
  // The role of `key`, or nullopt. Hashes `key` and compares the digest with
  // every entry's digest in constant time, so the time taken depends neither
  // on the key nor on which entry (if any) matches.
  std::optional<Match> Find(absl::string_view key) const;

  size_t size() const { return entries_.size(); }
  // Keys shorter than 16 characters (main() warns about them).
  size_t short_keys() const { return short_keys_; }

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    Role role;
    std::string key_id;
  };
  ApiKeys() = default;

  std::vector<Entry> entries_;
  size_t short_keys_ = 0;
};

// Decides every call against the current ApiKeys, which Replace swaps
// (hopfieldd re-reads --api_keys_file on SIGHUP). Thread-safe.
class AccessControl {
 public:
  // Called for each refused call with its :path and code (metrics).
  using RefusalCallback =
      std::function<void(absl::string_view method, absl::StatusCode code)>;

  explicit AccessControl(ApiKeys keys, RefusalCallback on_refusal = {});

  // Admits or refuses a call of `method` (its :path) whose `authorization`
  // header is `authorization` (nullopt when absent). Returns the key id of
  // the admitted caller ("" for an open method called without a key).
  // Errors: UNAUTHENTICATED when the method needs a key and the header is
  // absent, not `Bearer KEY`, or names no known key; PERMISSION_DENIED when
  // a read-only key calls a write method. Messages never contain the key.
  absl::StatusOr<std::string> Check(
      absl::string_view method,
      std::optional<absl::string_view> authorization) const;

  // From now on, calls are checked against `keys`.
  void Replace(ApiKeys keys);

  // Keys in force.
  size_t size() const;

 private:
  mutable Mutex mu_;
  std::shared_ptr<const ApiKeys> keys_ ABSL_GUARDED_BY(mu_);
  const RefusalCallback on_refusal_;
};

}  // namespace hopfield::server

#endif  // HOPFIELD_SERVER_ACCESS_CONTROL_H_
