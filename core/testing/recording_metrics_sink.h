// File: recording_metrics_sink.h
//
// RecordingMetricsSink: a MetricsSink for tests that keeps every event in
// memory. Thread-safe.
#ifndef HOPFIELD_CORE_TESTING_RECORDING_METRICS_SINK_H_
#define HOPFIELD_CORE_TESTING_RECORDING_METRICS_SINK_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "core/metrics_sink.h"

namespace hopfield::testing {

class RecordingMetricsSink final : public MetricsSink {
 public:
  struct Refresh {
    std::string bank;
    RefreshKind kind = RefreshKind::kSeparation;
    uint64_t patterns = 0;
    absl::Duration took;
  };
  struct Loaded {
    std::string bank;
    uint64_t patterns = 0;
    absl::Duration took;
    absl::Status status;
  };
  struct Sync {
    absl::Duration took;
    bool ok = false;
  };

  void OnRefresh(absl::string_view bank, RefreshKind kind, uint64_t patterns,
                 absl::Duration took) override {
    const std::lock_guard<std::mutex> lock(mu_);
    refreshes_.push_back({std::string(bank), kind, patterns, took});
  }
  void OnBankLoaded(absl::string_view bank, uint64_t patterns,
                    absl::Duration took, const absl::Status& status) override {
    const std::lock_guard<std::mutex> lock(mu_);
    loaded_.push_back({std::string(bank), patterns, took, status});
  }
  void OnStorageSync(absl::Duration took, bool ok) override {
    const std::lock_guard<std::mutex> lock(mu_);
    syncs_.push_back({took, ok});
  }

  std::vector<Refresh> refreshes() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return refreshes_;
  }
  std::vector<Loaded> loaded() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return loaded_;
  }
  std::vector<Sync> syncs() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return syncs_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Refresh> refreshes_;
  std::vector<Loaded> loaded_;
  std::vector<Sync> syncs_;
};

}  // namespace hopfield::testing

#endif  // HOPFIELD_CORE_TESTING_RECORDING_METRICS_SINK_H_
