// File: metrics_sink.h
//
// MetricsSink: the events core reports that no caller gets back in a result
// (house-style §2.8, channel 2): background work of the registry's refresher,
// banks loaded at start-up, the storage's shared syncs. Per-call work comes
// back in results (RetrieveResult, TrainReport) and state is pulled at
// scrape time (BankRegistry::List, MemoryBank::Stats, MemoryBudget,
// WorkerPool::Stats), so neither goes through here.
//
// Core calls a sink outside its own locks, from whichever thread did the
// work (the refresher, the loading thread, a writer that led a group
// commit); an implementation must be thread-safe and cheap (it runs on
// those threads: count, do not block).
//
//   RegistryOptions options;
//   options.metrics = std::make_shared<MyPrometheusSink>(...);
#ifndef HOPFIELD_CORE_METRICS_SINK_H_
#define HOPFIELD_CORE_METRICS_SINK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hopfield {

// Which background refresh a turn did.
enum class RefreshKind {
  // RefreshSeparation: exact separation statistics of pending patterns.
  kSeparation,
  // RefreshIndex: patterns inserted into the search index (or an index
  // built), with their index-derived estimates.
  kIndex,
};

// Thread-safe: every method may be called from any thread at once.
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;

  // One refresher turn on `bank` processed `patterns` (> 0) in `took`.
  virtual void OnRefresh(absl::string_view bank, RefreshKind kind,
                         uint64_t patterns, absl::Duration took) = 0;

  // BankRegistry::Load rebuilt `bank` (`patterns` of them) in `took`, or
  // failed with `status` (the bank is kept aside with that error).
  virtual void OnBankLoaded(absl::string_view bank, uint64_t patterns,
                            absl::Duration took,
                            const absl::Status& status) = 0;

  // One shared sync of the storage's log (a group commit: every write
  // applied before it started) took `took`; `ok` false when it failed (the
  // store then fails every later write: see storage.h).
  virtual void OnStorageSync(absl::Duration took, bool ok) = 0;
};

// Ignores every event: the default where no sink is given.
class NullMetricsSink final : public MetricsSink {
 public:
  void OnRefresh(absl::string_view /*bank*/, RefreshKind /*kind*/,
                 uint64_t /*patterns*/, absl::Duration /*took*/) override {}
  void OnBankLoaded(absl::string_view /*bank*/, uint64_t /*patterns*/,
                    absl::Duration /*took*/,
                    const absl::Status& /*status*/) override {}
  void OnStorageSync(absl::Duration /*took*/, bool /*ok*/) override {}
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_METRICS_SINK_H_
