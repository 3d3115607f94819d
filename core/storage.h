// File: storage.h
//
// Storage: the durable home of banks, behind an interface (the leveldb `Env`
// seam, house-style §2.1 rule 4) so that the engine and its tests need no
// database. RocksDbStorage (rocksdb_storage.h, its own target
// hopfield_storage) is the implementation the server uses;
// testing/in_memory_storage.h is the fake for unit tests.
//
// What is stored, per bank incarnation (see BankIncarnation):
//   - a catalog entry: the bank's name and its encoded configuration;
//   - its columns, in column order: column c holds the id and the values of
//     the pattern in column c of the bank's matrix. The bank mirrors its own
//     layout (an append puts column M, a removal moves the last column into
//     the hole and drops the last), so a restart rebuilds the very same
//     matrix, column for column: the same summation order, the same ties,
//     the same answers;
//   - blobs the engine encodes itself (bank_codec.h: the feature map, a
//     snapshot of the separation statistics, the bank's counters), opaque
//     here.
//
// Writes are batches (StorageBatch), applied atomically and in order. A write
// is two steps, so that a bank can log under its writer lock without making
// readers wait for the disk:
//
//   HOPFIELD_ASSIGN_OR_RETURN(uint64_t ticket, storage->Apply(batch));
//   // (the bank's lock may be released here: the batch is ordered and
//   // applied, but may not survive a crash yet)
//   HOPFIELD_RETURN_IF_ERROR(storage->WaitDurable(ticket));
//   // now acknowledge the write
//
// WaitDurable shares one sync among every caller waiting at the time (group
// commit), so throughput does not fall to one write per fsync.
//
// Reading is for start-up (and backups): ListBanks, then each bank's columns
// and blobs. A record that fails its checksum, or a gap in a bank's columns,
// is DATA_LOSS naming the bank and the record; it affects that bank only.
#ifndef HOPFIELD_CORE_STORAGE_H_
#define HOPFIELD_CORE_STORAGE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hopfield {

// One incarnation of a bank: a number the bank registry assigns when a bank
// is created and never gives to another bank while the store lives, so a
// write aimed at a bank that has since been deleted (and perhaps re-created
// under the same name) cannot land in the new one. Storage remembers the
// largest ever used (Storage::LastIncarnation), deleted banks included.
using BankIncarnation = uint64_t;

// Per-bank values the engine encodes itself.
enum class BlobKind : uint8_t {
  kFeatureMap = 1,  // the learned feature map (absent: the identity)
  kSeparation = 2,  // a snapshot of the separation statistics
  kBankState = 3,   // counters kept across restarts (next id, writes)
};

// A bank as the catalog holds it. `status` is DATA_LOSS when the entry
// failed its checksum (name and config are then empty): the bank cannot be
// loaded, the others can.
struct StoredBank {
  BankIncarnation incarnation = 0;
  std::string name;
  std::string config;  // encoded by the engine
  absl::Status status;
};

// A set of changes applied together: all of them or none. Build one per
// engine operation (a Store's appends and replacements, a Forget's moves).
// Plain value type; not thread-safe (one builder at a time).
class StorageBatch {
 public:
  enum class OpKind : uint8_t {
    kPutBank,     // catalog entry (incarnation, name, bytes = config)
    kDeleteBank,  // the catalog entry and every record of the incarnation
    kPutColumn,   // column `column` := (id, values)
    kTruncate,    // drops every column >= `column`
    kPutBlob,     // blob `blob` := bytes
    kDeleteBlob,  // blob `blob` removed
  };
  struct Op {
    OpKind kind = OpKind::kPutBank;
    BankIncarnation bank = 0;
    uint64_t column = 0;
    uint64_t id = 0;  // a PatternId
    BlobKind blob = BlobKind::kFeatureMap;
    std::string name;
    std::string bytes;
    std::vector<float> values;
  };

  void PutBank(BankIncarnation bank, absl::string_view name,
               absl::string_view config);
  void DeleteBank(BankIncarnation bank);
  void PutColumn(BankIncarnation bank, uint64_t column, uint64_t id,
                 absl::Span<const float> values);
  void Truncate(BankIncarnation bank, uint64_t first_dropped_column);
  void PutBlob(BankIncarnation bank, BlobKind kind, absl::string_view bytes);
  void DeleteBlob(BankIncarnation bank, BlobKind kind);

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  // The payload bytes the batch carries (values, names, blobs): what a
  // caller reserves in a memory budget while the batch lives.
  uint64_t PayloadBytes() const { return payload_bytes_; }

 private:
  // Appends an op of `kind` for `bank` and returns it to be filled in.
  Op& Push(OpKind kind, BankIncarnation bank);

  std::vector<Op> ops_;
  uint64_t payload_bytes_ = 0;
};

// Durable storage of banks. Implementations are thread-safe: any number of
// concurrent calls. Errors use absl codes: RESOURCE_EXHAUSTED when the disk
// is full, UNAVAILABLE when the store cannot write (an I/O error, or
// read-only after an earlier failure), DATA_LOSS for corrupt records,
// INVALID_ARGUMENT for a malformed batch (nothing applied).
class Storage {
 public:
  virtual ~Storage() = default;

  // Applies `batch` atomically, ordered after every batch applied before
  // this call began, and returns a ticket for WaitDurable. Does not wait for
  // the disk (cheap enough to call under a bank's writer lock). On error
  // nothing of the batch is applied, and the store refuses later writes
  // (UNAVAILABLE) unless the error was INVALID_ARGUMENT. An empty batch
  // applies nothing and returns a ticket that covers every batch applied
  // before it (WaitDurable on it is a barrier).
  virtual absl::StatusOr<uint64_t> Apply(const StorageBatch& batch) = 0;

  // Blocks until the batch that returned `ticket`, and every batch applied
  // before it, survives a crash of the process or the machine. Concurrent
  // callers share syncs. On error (the sync failed) the batch may or may not
  // survive; the store refuses later writes (UNAVAILABLE).
  virtual absl::Status WaitDurable(uint64_t ticket) = 0;

  // The catalog, in incarnation order (entries that fail their checksum
  // included, with a DATA_LOSS status). Errors: the store cannot be read.
  virtual absl::StatusOr<std::vector<StoredBank>> ListBanks() const = 0;

  // The largest incarnation ever written (0 for a new store), deleted banks
  // included: the registry continues from the next.
  virtual absl::StatusOr<BankIncarnation> LastIncarnation() const = 0;

  // Calls visit(column, id, values) for columns 0, 1, ... of `bank` in
  // order. DATA_LOSS when a record fails its checksum or a column is
  // missing; visit's error is returned as is (and stops the walk).
  virtual absl::Status ReadColumns(
      BankIncarnation bank,
      const std::function<absl::Status(uint64_t column, uint64_t id,
                                       absl::Span<const float> values)>& visit)
      const = 0;

  // The blob, or nullopt if none is stored. DATA_LOSS when it fails its
  // checksum.
  virtual absl::StatusOr<std::optional<std::string>> ReadBlob(
      BankIncarnation bank, BlobKind kind) const = 0;

  // Writes a consistent copy of the store to the new directory `dir` while
  // writes continue (hard links where the file system allows). Every batch
  // made durable before the call is in the copy. ALREADY_EXISTS if `dir`
  // exists; UNIMPLEMENTED for stores without files.
  virtual absl::Status Checkpoint(const std::string& dir) = 0;

  // Where large derived data lives as plain files beside the store (a
  // bank's saved search index: rebuilt when missing or stale, so not worth
  // the log), named "<incarnation>.<suffix>"; empty when the store keeps
  // none. The store deletes a bank's files with the bank (DeleteBank, and
  // files of unknown incarnations at open) and includes them in
  // checkpoints. Writers replace a file by renaming a complete temporary
  // ("<incarnation>.<suffix>.tmp") over it.
  virtual std::string SideFileDirectory() const { return {}; }
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_STORAGE_H_
