// File: bank_registry.h
//
// BankRegistry: the named memory banks of one engine instance. It owns their
// lifetimes: banks are handed out as shared pointers, so a bank dropped while
// a retrieval still runs on it stays alive until that retrieval ends. With
// SeparationUpdate::kDeferred it also owns one background thread that brings
// the banks' separation statistics and search indexes up to date after
// writes.
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
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "core/bank_options.h"
#include "core/memory_bank.h"
#include "core/memory_budget.h"
#include "core/mutex.h"

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
};

// Thread-safe: any number of concurrent callers.
class BankRegistry {
 public:
  explicit BankRegistry(RegistryOptions options = {});
  // Stops and joins the background refresher, if any.
  ~BankRegistry();
  BankRegistry(const BankRegistry&) = delete;
  BankRegistry& operator=(const BankRegistry&) = delete;

  // Creates an empty bank (its memory reserved from options' budget as it
  // grows).
  // Errors: INVALID_ARGUMENT for a bad name or options; ALREADY_EXISTS if the
  // name is taken; RESOURCE_EXHAUSTED at max_banks.
  absl::StatusOr<std::shared_ptr<MemoryBank>> Create(
      absl::string_view name, const BankOptions& options);

  // Errors: INVALID_ARGUMENT for a malformed name (ValidateBankName: the
  // message shows it escaped and cut); NOT_FOUND naming the bank.
  absl::StatusOr<std::shared_ptr<MemoryBank>> Get(absl::string_view name) const;

  // Removes the bank from the registry and closes it (MemoryBank::Close: a
  // training run on it stops); holders of its pointer keep it alive.
  // Errors: INVALID_ARGUMENT for a malformed name; NOT_FOUND naming the bank.
  absl::Status Drop(absl::string_view name);

  // Every bank, sorted by name.
  std::vector<std::shared_ptr<MemoryBank>> List() const;

  size_t size() const;

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

  const RegistryOptions options_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<MemoryBank>, std::less<>> banks_
      ABSL_GUARDED_BY(mu_);

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
