// File: bank_training.h
//
// TrainBank: Stage I of the kernelized Hopfield model for one bank
// (algorithms.md §E.2). It copies the bank's patterns (all of them, or a
// random sample when the bank is larger than max_training_patterns), learns
// a feature map with FeatureMapTrainer, and then gates it:
//
//   1. separation before and after: Δ_min in feature space over the sample
//      (exact over the sample when it holds at most 8,192 patterns; above,
//      over 4,096 random anchors against the whole sample, an upper bound);
//   2. validation: corrupted copies of up to 256 sampled patterns (a random
//      fraction of coordinates zeroed and/or Gaussian noise) are retrieved
//      from the sample under the current map and under the candidate, with
//      the bank's retrieval settings (β: the bank's, or automatic from each
//      map's Δ_min); the candidate is accepted only if it improves: its
//      mean retrieval error Σ_i ||x̂ - ξ||² / n is lower, or equal (to 1e-9
//      relative, e.g. both retrieve exactly) with no lower argmax accuracy
//      and a larger Δ_min. Error decides rather than accuracy because it
//      counts both wrong basins and blurred mixtures (algorithms.md D6-b:
//      accuracy alone hides the metastable regime where learning helps);
//   3. on acceptance (or with skip_validation) the map is published to the
//      bank (MemoryBank::SetFeatureMap) as version current + 1.
//
// Store, Forget and Retrieve on the bank keep working throughout: training
// reads a private copy; publishing blocks writers only for its short final
// swap. Patterns stored meanwhile are mapped when the map is published.
//
// Thread-safe: any number of concurrent calls on different banks; on the same
// bank a second call fails FAILED_PRECONDITION while one runs.
#ifndef HOPFIELD_CORE_BANK_TRAINING_H_
#define HOPFIELD_CORE_BANK_TRAINING_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "core/feature_map_trainer.h"
#include "core/memory_bank.h"
#include "core/memory_budget.h"

namespace hopfield {

// What to train and how to validate. Zero fields mean "the default".
struct BankTrainOptions {
  // Resolved with ResolveTrainConfig against the bank.
  TrainConfig config;
  // Validation corruption: the fraction of coordinates set to 0, and the
  // standard deviation of Gaussian noise relative to the pattern's RMS
  // entry (σ·||ξ||/√d per coordinate). Both 0: masking 0.5.
  // REQUIRES: 0 <= validation_mask_fraction < 1, 0 <= validation_noise <= 10.
  float validation_mask_fraction = 0.0f;
  float validation_noise = 0.0f;
  // Publish the map without the gate (accuracy and error still reported).
  bool skip_validation = false;
  // Patterns corrupted for validation. REQUIRES: 1..65536. Default 256.
  uint32_t validation_queries = 256;
  // Most patterns copied for training (a random sample above).
  // REQUIRES: >= 2. Default 65,536.
  uint64_t max_training_patterns = 65536;

  // INVALID_ARGUMENT naming the field, the range and the value.
  absl::Status Validate() const;
};

// Hooks into the caller's environment. Every field may be empty.
struct TrainHooks {
  // After every optimiser step (a non-OK status stops the run).
  std::function<absl::Status(const TrainStep&)> on_step;
  // Polled every step and between phases; CANCELLED / DEADLINE_EXCEEDED.
  std::function<absl::Status()> check_continue;
  // Working memory (sample, keys, validation) is reserved here first.
  // Not owned.
  MemoryBudget* budget = nullptr;
  // The caller already holds the bank's training claim
  // (MemoryBank::TryStartTraining succeeded) and releases it itself.
  bool claimed = false;
};

struct TrainReport {
  bool accepted = false;
  uint32_t feature_map_version = 0;  // the bank's after the call
  double min_separation_before = 0.0;
  double min_separation_after = 0.0;
  // True when Δ_min was computed over every pattern of the bank (the
  // sample was the whole bank and held at most 8,192 patterns).
  bool min_separation_exact = false;
  double validation_accuracy_before = 0.0;
  double validation_accuracy_after = 0.0;
  double validation_error_before = 0.0;
  double validation_error_after = 0.0;
  uint32_t validation_queries = 0;
  uint64_t training_patterns = 0;
  uint32_t iterations = 0;
  double loss = 0.0;
  double seconds = 0.0;
  TrainConfig config;  // as resolved
};

// The FAILED_PRECONDITION of a second training of `bank`.
absl::Status AlreadyTrainingError(const MemoryBank& bank);

// The gate's rule on a report's validation and separation fields (step 2 of
// the file comment): true when the candidate improves on the current map.
// TrainBank publishes when this holds or skip_validation is set; a caller
// that skipped validation can still ask what the gate would have decided.
bool GateAccepts(const TrainReport& report);

// Trains, validates and (if accepted) publishes a feature map for `bank`.
// Errors: INVALID_ARGUMENT from the options; FAILED_PRECONDITION when the
// bank holds fewer than two patterns or another training of it runs;
// CANCELLED when the bank is closed (deleted) meanwhile;
// RESOURCE_EXHAUSTED when the budget cannot hold the working memory; what
// the hooks return. On error the bank's map is unchanged.
absl::StatusOr<TrainReport> TrainBank(MemoryBank& bank,
                                      const BankTrainOptions& options,
                                      const TrainHooks& hooks = {});

}  // namespace hopfield

#endif  // HOPFIELD_CORE_BANK_TRAINING_H_
