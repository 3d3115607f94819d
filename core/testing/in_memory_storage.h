// File: testing/in_memory_storage.h
//
// InMemoryStorage: a Storage (core/storage.h) held in memory, for unit tests
// of the engine's durability logic (leveldb's memenv idea). It keeps every
// applied batch in order and answers reads by replaying them, so it can also
// play a crash: CrashAndLoseUnsynced() forgets every batch no WaitDurable
// covered. FailWritesWith(status) makes the next Apply or WaitDurable fail
// with it and later ones UNAVAILABLE, as a full or broken disk would.
//
// Thread-safe (one mutex); meant for small test banks, not for speed.
#ifndef HOPFIELD_CORE_TESTING_IN_MEMORY_STORAGE_H_
#define HOPFIELD_CORE_TESTING_IN_MEMORY_STORAGE_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

#include "core/mutex.h"
#include "core/status_macros.h"
#include "core/storage.h"

namespace hopfield::testing {

class InMemoryStorage final : public Storage {
 public:
  // `side_files`: the directory SideFileDirectory() names (empty: none).
  // The fake neither deletes nor checkpoints its files.
  explicit InMemoryStorage(std::string side_files = {})
      : side_files_(std::move(side_files)) {}

  std::string SideFileDirectory() const override { return side_files_; }

  absl::StatusOr<uint64_t> Apply(const StorageBatch& batch) override {
    WriterLock lock(&mu_);
    for (const StorageBatch::Op& op : batch.ops()) {
      if (op.bank == 0 || op.bank == ~BankIncarnation{0}) {
        return absl::InvalidArgumentError(
            absl::StrCat("bank incarnation ", op.bank, " is reserved"));
      }
    }
    HOPFIELD_RETURN_IF_ERROR(FailureLocked());
    if (batch.empty()) return last_ticket_;  // a barrier
    batches_.emplace_back(++last_ticket_, batch);
    return last_ticket_;
  }

  absl::Status WaitDurable(uint64_t ticket) override {
    WriterLock lock(&mu_);
    HOPFIELD_RETURN_IF_ERROR(FailureLocked());
    durable_ = std::max(durable_, std::min(ticket, last_ticket_));
    ++syncs_;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<StoredBank>> ListBanks() const override {
    WriterLock lock(&mu_);
    const State state = Replay();
    std::vector<StoredBank> banks;
    for (const auto& [incarnation, bank] : state.catalog) {
      banks.push_back(bank);
    }
    return banks;
  }

  absl::StatusOr<BankIncarnation> LastIncarnation() const override {
    WriterLock lock(&mu_);
    return Replay().last_incarnation;
  }

  absl::Status ReadColumns(
      BankIncarnation bank,
      const std::function<absl::Status(
          uint64_t, uint64_t, absl::Span<const float>)>& visit) const override {
    State state;
    {
      WriterLock lock(&mu_);
      if (std::find(corrupt_.begin(), corrupt_.end(), bank) != corrupt_.end()) {
        return absl::DataLossError(absl::StrCat(
            "bank incarnation ", bank, ": a column record fails its checksum"));
      }
      state = Replay();
    }
    const auto it = state.columns.find(bank);
    if (it == state.columns.end()) return absl::OkStatus();
    uint64_t expected = 0;
    for (const auto& [column, record] : it->second) {
      if (column != expected) {
        return absl::DataLossError(absl::StrCat(
            "bank incarnation ", bank, ": column ", expected, " is missing"));
      }
      ++expected;
      const absl::Status status = visit(column, record.first, record.second);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<std::string>> ReadBlob(
      BankIncarnation bank, BlobKind kind) const override {
    WriterLock lock(&mu_);
    const State state = Replay();
    const auto it = state.blobs.find({bank, kind});
    if (it == state.blobs.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }

  absl::Status Checkpoint(const std::string&) override {
    return absl::UnimplementedError("an in-memory store has no files");
  }

  // Forgets every batch that no WaitDurable call covered. Tickets go on
  // counting from where they were.
  void CrashAndLoseUnsynced() {
    WriterLock lock(&mu_);
    while (!batches_.empty() && batches_.back().first > durable_) {
      batches_.pop_back();
    }
  }

  // The next Apply or WaitDurable returns `status` (not OK) and every later
  // one UNAVAILABLE, as a store does after a failed write or sync.
  void FailWritesWith(absl::Status status) {
    WriterLock lock(&mu_);
    failure_ = std::move(status);
  }

  // ReadColumns of `bank` fails as for a record that fails its checksum
  // (DATA_LOSS), as RocksDbStorage reports damaged bytes.
  void CorruptColumns(BankIncarnation bank) {
    WriterLock lock(&mu_);
    corrupt_.push_back(bank);
  }

  // WaitDurable calls so far.
  uint64_t syncs() const {
    WriterLock lock(&mu_);
    return syncs_;
  }

 private:
  struct State {
    std::map<BankIncarnation, StoredBank> catalog;
    std::map<BankIncarnation,
             std::map<uint64_t, std::pair<uint64_t, std::vector<float>>>>
        columns;
    std::map<std::pair<BankIncarnation, BlobKind>, std::string> blobs;
    BankIncarnation last_incarnation = 0;
  };

  absl::Status FailureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (failure_.ok()) return absl::OkStatus();
    if (!failure_returned_) {
      failure_returned_ = true;
      return failure_;
    }
    return absl::UnavailableError(absl::StrCat(
        "storage refuses writes after a failure: ", failure_.message()));
  }

  State Replay() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    State state;
    for (const auto& [ticket, batch] : batches_) {
      for (const StorageBatch::Op& op : batch.ops()) {
        switch (op.kind) {
          case StorageBatch::OpKind::kPutBank:
            state.catalog[op.bank] =
                StoredBank{op.bank, op.name, op.bytes, absl::OkStatus()};
            state.last_incarnation = std::max(state.last_incarnation, op.bank);
            break;
          case StorageBatch::OpKind::kDeleteBank: {
            state.catalog.erase(op.bank);
            state.columns.erase(op.bank);
            state.blobs.erase(
                state.blobs.lower_bound({op.bank, BlobKind{}}),
                state.blobs.lower_bound({op.bank + 1, BlobKind{}}));
            break;
          }
          case StorageBatch::OpKind::kPutColumn:
            state.columns[op.bank][op.column] = {op.id, op.values};
            break;
          case StorageBatch::OpKind::kTruncate: {
            auto& columns = state.columns[op.bank];
            columns.erase(columns.lower_bound(op.column), columns.end());
            break;
          }
          case StorageBatch::OpKind::kPutBlob:
            state.blobs[{op.bank, op.blob}] = op.bytes;
            break;
          case StorageBatch::OpKind::kDeleteBlob:
            state.blobs.erase({op.bank, op.blob});
            break;
        }
      }
    }
    return state;
  }

  mutable Mutex mu_;
  // Applied batches with their tickets (1, 2, ...; 0 means "nothing").
  std::vector<std::pair<uint64_t, StorageBatch>> batches_ ABSL_GUARDED_BY(mu_);
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool failure_returned_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<BankIncarnation> corrupt_ ABSL_GUARDED_BY(mu_);
  const std::string side_files_;
};

}  // namespace hopfield::testing

#endif  // HOPFIELD_CORE_TESTING_IN_MEMORY_STORAGE_H_
