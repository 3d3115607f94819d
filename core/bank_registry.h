// File: bank_registry.h
//
// BankRegistry: the named memory banks of one engine instance. It owns their
// lifetimes: banks are handed out as shared pointers, so a bank dropped while
// a retrieval still runs on it stays alive until that retrieval ends. With
// SeparationUpdate::kDeferred it also owns one background thread that brings
// the banks' separation statistics and search indexes up to date after
// writes.
//
// Durability (RegistryOptions::storage): every bank is an incarnation in the
// storage (storage.h), numbered on from Storage::LastIncarnation, so a
// write that reached a bank after its deletion, or a bank re-created under
// the same name, can never be confused with the new one. Create and Drop log
// their catalog change and return once it is durable; the registry lock is
// held only to apply the log record (microseconds), never across a sync or
// the release of a bank's memory, so deleting a large bank stalls no other
// call. Drop closes the bank first (MemoryBank::Close waits for a write in
// progress), so nothing is logged to a deleted incarnation afterwards. Load
// rebuilds the stored banks; a bank that cannot be loaded (DATA_LOSS, or a
// budget too small for it) is kept aside under its name: Get answers its
// error, Drop deletes it, Create refuses the name. If a crash lands between a
// Drop and the re-creation of its name, both incarnations are in the
// catalog: the newer wins and the older is deleted at load.
//
//   BankRegistry registry;
//   HOPFIELD_ASSIGN_OR_RETURN(auto bank, registry.Create("faces", options));
//   HOPFIELD_ASSIGN_OR_RETURN(bank, registry.Get("faces"));
#ifndef HOPFIELD_CORE_BANK_REGISTRY_H_
#define HOPFIELD_CORE_BANK_REGISTRY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "core/bank_options.h"
#include "core/memory_bank.h"
#include "core/memory_budget.h"
#include "core/metrics_sink.h"
#include "core/mutex.h"
#include "core/storage.h"

namespace hopfield {

// Limits of a registry.
struct RegistryOptions {
  // Most banks held at once (bounds metric label cardinality too).
  // Default: 1024. REQUIRES: >= 1.
  uint32_t max_banks = 1024;
  // How the banks keep their separation statistics. kDeferred makes Store
  // O(n·dim + M) and starts the background refresher. Default: kSynchronous.
  SeparationUpdate separation_update = SeparationUpdate::kSynchronous;
  // Patterns the refresher processes per bank per turn. A turn scores them
  // against the whole bank under the reader lock (retrievals proceed, writers
  // wait): 256 x 60,000 x 784 is ~0.25 s here. Larger turns use the matrix
  // product better. 0 is taken as 1. Default: 256.
  size_t refresh_batch = 256;
  // The refresher prefers banks not written within this period, so bulk
  // ingest runs at full speed and the statistics catch up right after it...
  // Default: 200 ms.
  std::chrono::milliseconds refresh_quiet_period{200};
  // ...but a bank with pending statistics gets a turn at least this often
  // even under sustained writes (a turn holds the bank's reader lock for a
  // few milliseconds at a time, so writers barely notice). Default: 1 s.
  std::chrono::milliseconds refresh_max_delay{1000};
  // Patterns the refresher inserts into a bank's search index per turn
  // (each insertion holds the index's writer lock briefly; searches wait
  // for at most one slice of AnnIndex::kAddSlice). 0 is taken as 1.
  // Default: 1024.
  size_t index_batch = 1024;
  // BankEnvironment::index_min_patterns of every bank. Default: 4096.
  uint64_t index_min_patterns = 4096;
  // BankEnvironment::index_build_threads of every bank (0 is taken as 1).
  // Default: 1.
  uint32_t index_build_threads = 1;
  // The account every bank's memory is reserved from. Null: unaccounted.
  std::shared_ptr<MemoryBudget> budget;
  // Most patterns per bank (RESOURCE_EXHAUSTED beyond).
  // Default and REQUIRES: <= kMaxPatternsPerBank.
  uint64_t max_patterns_per_bank = kMaxPatternsPerBank;
  // Where banks are stored (Load reads them back). Null: in memory only.
  std::shared_ptr<Storage> storage;
  // Told of the refresher's turns and of the banks Load rebuilds (outside
  // the registry's locks). Null: events are dropped.
  std::shared_ptr<MetricsSink> metrics;
};

// What BankRegistry::Load found.
struct LoadReport {
  uint64_t banks = 0;     // loaded
  uint64_t patterns = 0;  // in the loaded banks
  // Banks whose saved search index was current and taken back (the others
  // that want one rebuild it in the background).
  uint64_t indexes_loaded = 0;
  // Banks that could not be loaded, with why (kept aside: see the class
  // comment).
  std::vector<std::pair<std::string, absl::Status>> failed;
  // Older incarnations of a name deleted at load (a crash between a Drop
  // and the re-creation of its name).
  uint64_t superseded = 0;
};

// Thread-safe: any number of concurrent callers.
class BankRegistry {
 public:
  explicit BankRegistry(RegistryOptions options = {});
  // Stops and joins the background refresher, if any.
  ~BankRegistry();
  BankRegistry(const BankRegistry&) = delete;
  BankRegistry& operator=(const BankRegistry&) = delete;

  // Rebuilds every stored bank (MemoryBank::Load). Call once, before any
  // other call, on a registry with storage. Errors: the storage cannot be
  // read (a single bank's failure is in the report instead).
  absl::StatusOr<LoadReport> Load();

  // Creates an empty bank (its memory reserved from options' budget as it
  // grows), durably when the registry has storage.
  // Errors: INVALID_ARGUMENT for a bad name or options; ALREADY_EXISTS if the
  // name is taken; RESOURCE_EXHAUSTED at max_banks; the storage's errors
  // (no bank created).
  absl::StatusOr<std::shared_ptr<MemoryBank>> Create(
      absl::string_view name, const BankOptions& options);

  // Errors: INVALID_ARGUMENT for a malformed name (ValidateBankName: the
  // message shows it escaped and cut); NOT_FOUND naming the bank; a bank
  // that failed to load: its load error (DATA_LOSS naming the record, ...).
  absl::StatusOr<std::shared_ptr<MemoryBank>> Get(absl::string_view name) const;

  // Removes the bank from the registry and closes it (MemoryBank::Close:
  // later writes fail, a training run on it stops), then deletes it from
  // storage; holders of its pointer keep its memory alive. Also deletes a
  // bank that failed to load.
  // Errors: INVALID_ARGUMENT for a malformed name; NOT_FOUND naming the
  // bank; the storage's errors (the bank is gone from the registry, and
  // from storage unless the sync failed).
  absl::Status Drop(absl::string_view name);

  // MemoryBank::PersistSeparation on every bank (for a shutdown: a restart
  // then needs no recomputation). Returns the first error.
  absl::Status PersistSeparation() const;
  // MemoryBank::PersistIndex on every bank (for a shutdown). Returns the
  // first error.
  absl::Status PersistIndexes() const;

  // Every bank, sorted by name.
  std::vector<std::shared_ptr<MemoryBank>> List() const;

  size_t size() const;
  // Banks that failed to load and are still kept aside (until deleted).
  size_t failed_size() const;

  // Passes the background refresher has made over the banks (0 without
  // one). It sleeps while no bank has pending statistics, so this stays put
  // on an idle server. For tests and metrics.
  uint64_t refresh_turns() const { return refresh_turns_.load(); }

 private:
  // Wakes the refresher. Shared with every bank's on_pending hook, so a bank
  // that outlives the registry never touches freed memory.
  struct RefreshSignal {
    std::mutex mu;
    std::condition_variable wake;
    bool work = false;  // guarded by mu: a write left patterns pending
  };

  // The background refresher: round-robin RefreshSeparation over the banks
  // that have pending patterns and have been quiet for refresh_quiet_period
  // (or waited refresh_max_delay); asleep while no bank has pending work
  // (woken by the banks' hooks).
  void RefreshLoop();

  // The environment of a bank of incarnation `incarnation`.
  BankEnvironment MakeEnvironment(BankIncarnation incarnation) const;

  // A bank that failed to load.
  struct FailedBank {
    BankIncarnation incarnation = 0;
    absl::Status status;
  };

  const RegistryOptions options_;
  // options_.metrics, or a NullMetricsSink.
  const std::shared_ptr<MetricsSink> metrics_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<MemoryBank>, std::less<>> banks_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, FailedBank, std::less<>> failed_ ABSL_GUARDED_BY(mu_);
  // The incarnation the next Create takes.
  BankIncarnation next_incarnation_ ABSL_GUARDED_BY(mu_) = 1;

  // Refresher state (std primitives: the wait needs a condition variable).
  const std::shared_ptr<RefreshSignal> signal_ =
      std::make_shared<RefreshSignal>();
  // Set once by the destructor; also polled inside a refresh turn, so
  // shutdown never waits for a whole turn.
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> refresh_turns_{0};
  std::thread refresher_;
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_BANK_REGISTRY_H_
