// File: rocksdb_storage.h
//
// RocksDbStorage: the Storage (storage.h) of a server, an embedded RocksDB
// under one directory (`--data_dir`). Its own CMake target,
// hopfield_storage, so that the engine and its tests need no RocksDB.
//
//   HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStorage> storage,
//                             RocksDbStorage::Open("/var/lib/hopfield"));
//
// Layout (integers big-endian in keys so that RocksDB's order is numeric
// order). Column family "catalog", apart so that damage to a bank's records
// never shares a block with it:
//   'c' inc            -> catalog entry: u32 name length, name, config
//   'm' "last_inc"     -> u64, the largest incarnation ever written
// Column family "default":
//   'p' inc column     -> column record: u64 id, dim float32 values
//   'x' inc kind       -> blob bytes
// Side files (SideFileDirectory): DIR/indexes/<incarnation>.<suffix>, the
// saved search indexes; deleted with their bank (and at Open when their
// bank is unknown), linked into checkpoints.
// Every value ends with a CRC-32 (zlib) of its key and payload, so a record
// that is damaged, or copied under another key, is DATA_LOSS on read, beside
// RocksDB's own block and WAL checksums. A bank's records sort together:
// deleting a bank or truncating its columns is one range deletion.
//
// Durability: Apply writes the batch to the write-ahead log without syncing
// (one ordered write, a few microseconds, safe under a bank's lock);
// WaitDurable syncs the log, and one sync serves every caller that waits
// while it runs (group commit: a waiter arriving during a sync waits for the
// next, which covers it). Recovery replays the log up to its first
// inconsistency (RocksDB's point-in-time recovery): every acknowledged batch
// was synced first, so what it can drop is the unsynced tail a crash left.
// Open also deletes records of incarnations the catalog no longer lists
// (writes that reached a bank after its deletion). Close flushes the
// memtables, so that a stopped store is its table files alone.
//
// RocksDB's diagnostics (warnings and errors) go to stderr, never to a LOG
// file in the directory: on a full disk that file's writes fail too, and
// Debian's RocksDB (built with assertions) aborts on the next line logged
// through a file writer that has seen an error. For the same reason nothing
// is flushed or synced after a failed write or sync, Close included.
//
// Errors from RocksDB map to: no space -> RESOURCE_EXHAUSTED; corruption ->
// DATA_LOSS; other I/O errors -> UNAVAILABLE. After a failed write or sync
// RocksDB stops writing, and so does this store (UNAVAILABLE until reopened).
//
// Thread-safe: any number of concurrent calls.
#ifndef HOPFIELD_CORE_ROCKSDB_STORAGE_H_
#define HOPFIELD_CORE_ROCKSDB_STORAGE_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "core/metrics_sink.h"
#include "core/mutex.h"
#include "core/storage.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace hopfield {

struct RocksDbStorageOptions {
  // Whether WaitDurable syncs the log. false keeps every acknowledged write
  // safe from a process crash but not from a machine crash: for benchmarks
  // and tests, never for the durability promise. Default: true.
  bool sync = true;
  // Told of every log sync (outside the store's locks). Null: not told.
  std::shared_ptr<MetricsSink> metrics;
};

class RocksDbStorage final : public Storage {
 public:
  // Opens (creating if missing) the store in directory `dir`. Errors:
  // UNAVAILABLE (the directory cannot be created or locked, e.g. another
  // server holds it), DATA_LOSS (the log or the files are damaged beyond a
  // torn last record).
  static absl::StatusOr<std::unique_ptr<RocksDbStorage>> Open(
      const std::string& dir, RocksDbStorageOptions options = {});

  // Close(), its error ignored.
  ~RocksDbStorage() override;

  // Flushes the memtables, syncs the log and closes the store, so that a
  // stopped store is its table files alone (a fast open). Returns the first
  // failure (UNAVAILABLE, RESOURCE_EXHAUSTED); acknowledged writes are in
  // the synced log either way. Later calls return OK and do nothing; no
  // other method may be called after it.
  absl::Status Close();

  RocksDbStorage(const RocksDbStorage&) = delete;
  RocksDbStorage& operator=(const RocksDbStorage&) = delete;

  absl::StatusOr<uint64_t> Apply(const StorageBatch& batch) override;
  absl::Status WaitDurable(uint64_t ticket) override;
  absl::StatusOr<std::vector<StoredBank>> ListBanks() const override;
  absl::StatusOr<BankIncarnation> LastIncarnation() const override;
  absl::Status ReadColumns(
      BankIncarnation bank,
      const std::function<absl::Status(uint64_t column, uint64_t id,
                                       absl::Span<const float> values)>& visit)
      const override;
  absl::StatusOr<std::optional<std::string>> ReadBlob(
      BankIncarnation bank, BlobKind kind) const override;
  absl::Status Checkpoint(const std::string& dir) override;
  // DIR/indexes.
  std::string SideFileDirectory() const override;

  // The directory the store lives in.
  const std::string& dir() const { return dir_; }
  // Log syncs so far (for tests and benchmarks of group commit).
  uint64_t syncs() const;
  // The failure that latched the store (a failed log write or sync: every
  // later write fails with it until the store is reopened); OK while
  // healthy. For health reporting (metrics).
  absl::Status failure() const;

 private:
  RocksDbStorage(std::string dir, RocksDbStorageOptions options,
                 std::unique_ptr<rocksdb::DB> db,
                 std::unique_ptr<rocksdb::ColumnFamilyHandle> records,
                 std::unique_ptr<rocksdb::ColumnFamilyHandle> catalog,
                 BankIncarnation last);

  const std::string dir_;
  const RocksDbStorageOptions options_;
  const std::unique_ptr<rocksdb::DB> db_;
  bool closed_ = false;
  // Column families: bank records and blobs ("default"); the catalog and
  // the incarnation count ("catalog"). Released before db_ closes.
  std::unique_ptr<rocksdb::ColumnFamilyHandle> records_;
  std::unique_ptr<rocksdb::ColumnFamilyHandle> catalog_;

  // Serialises Apply: batches reach the log in the order Apply returns.
  mutable Mutex apply_mu_;
  BankIncarnation last_incarnation_ ABSL_GUARDED_BY(apply_mu_);

  // Group commit: the fields below are guarded by sync_mu_ (a std::mutex,
  // for its condition variable; pthread-based, so TSan sees it).
  mutable std::mutex sync_mu_;
  std::condition_variable sync_done_;
  uint64_t synced_ = 0;   // every ticket up to this is durable
  bool syncing_ = false;  // a thread is in SyncWAL
  uint64_t syncs_ = 0;
  absl::Status failure_;  // a failed sync: later writes are refused
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_ROCKSDB_STORAGE_H_
