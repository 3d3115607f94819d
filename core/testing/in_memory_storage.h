// File: testing/in_memory_storage.h
//
// InMemoryStorage: a Storage (core/storage.h) held in memory, for unit tests
// of the engine's durability logic (leveldb's memenv idea). It keeps every
// applied batch in order and answers reads by replaying them, so it can also
// play a crash: CrashAndLoseUnsynced() forgets every batch no WaitDurable
// covered. FailWritesWith(status) makes later Apply and WaitDurable calls
// fail as a full or broken disk would.
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
#include "core/storage.h"

namespace hopfield::testing {

class InMemoryStorage final : public Storage {
 public:
  absl::StatusOr<uint64_t> Apply(const StorageBatch& batch) override {
    WriterLock lock(&mu_);
    if (!failure_.ok()) return failure_;
    if (batch.empty()) return durable_;
    batches_.push_back(batch);
    return first_ticket_ + batches_.size() - 1;
  }

  absl::Status WaitDurable(uint64_t ticket) override {
    WriterLock lock(&mu_);
    if (!failure_.ok()) return failure_;
    durable_ = std::max(durable_, ticket);
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

  // Forgets every batch that no WaitDurable call covered.
  void CrashAndLoseUnsynced() {
    WriterLock lock(&mu_);
    const uint64_t keep = durable_ + 1 - first_ticket_;
    if (keep < batches_.size()) batches_.resize(keep);
  }

  // Later Apply and WaitDurable calls return `status` (OK restores them).
  void FailWritesWith(absl::Status status) {
    WriterLock lock(&mu_);
    failure_ = std::move(status);
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

  State Replay() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    State state;
    for (const StorageBatch& batch : batches_) {
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
            state.blobs.erase({op.bank, BlobKind::kFeatureMap});
            state.blobs.erase({op.bank, BlobKind::kSeparation});
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
  std::vector<StorageBatch> batches_ ABSL_GUARDED_BY(mu_);
  // The ticket of batches_[0] (tickets start at 1; 0 means "nothing").
  const uint64_t first_ticket_ = 1;
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hopfield::testing

#endif  // HOPFIELD_CORE_TESTING_IN_MEMORY_STORAGE_H_
