// File: memory_bank.h
//
// MemoryBank: a named, fixed-dimension store of patterns ξ_μ (float32) with
// uint64 ids, and the statistics retrieval needs: per-pattern separation Δ_μ,
// the minimum Δ_min, the largest norm m and a capacity estimate.
//
// Layout (stated once for the engine): patterns are the columns of a
// `dim x size()` column-major float matrix Ξ, each column contiguous, so one
// retrieval pass streams memory front to back. Column order is an
// implementation detail (removal moves the last column into the hole); ids
// are the stable names.
//
// Separation is kept up to date incrementally: processing n new patterns in a
// bank of M costs one blocked matrix product of O(n·M·dim) (each new pattern
// against every stored one), never a recomputation over all pairs; removing a
// pattern rescans only the patterns whose nearest neighbour it was. With
// SeparationUpdate::kSynchronous that work happens inside Add and Remove; with
// kDeferred they only mark patterns pending (Add is then O(n·dim) plus an
// O(M) pass over per-pattern scalars for the summary statistics) and
// RefreshSeparation, called by a background worker, catches up.
//
//   HOPFIELD_ASSIGN_OR_RETURN(auto bank, MemoryBank::Create("faces", options));
//   HOPFIELD_ASSIGN_OR_RETURN(std::vector<PatternId> ids,
//                             bank->Add({0, 0}, two_patterns));  // assigns ids
#ifndef HOPFIELD_CORE_MEMORY_BANK_H_
#define HOPFIELD_CORE_MEMORY_BANK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include "core/bank_options.h"
#include "core/mutex.h"

namespace hopfield {

// Stable name of a stored pattern. 0 is reserved for "assign one".
using PatternId = uint64_t;

// When a bank brings its separation statistics up to date.
enum class SeparationUpdate {
  // Inside Add/Remove: statistics are always exact; Add costs O(n·M·dim).
  kSynchronous,
  // In RefreshSeparation: Add costs O(n·dim + M); until the refresh catches up,
  // Δ_min covers the processed patterns only (an upper bound).
  kDeferred,
};

// Read-only view of a bank's contents, valid only while the bank's reader
// lock is held (inside `MemoryBank::WithReader`) or, for views built by hand
// in tests and benchmarks, while the viewed buffers live.
struct BankView {
  // dim x M, column μ is ξ_μ.
  Eigen::Map<const Eigen::MatrixXf> patterns;
  // M entries, 1/||ξ_μ|| (0 for a zero pattern, which cosine banks reject).
  Eigen::Map<const Eigen::VectorXf> inverse_norms;
  // M entries, the id of each column.
  absl::Span<const PatternId> ids;
  Similarity similarity = Similarity::kCosine;
  // Δ_min in the units of `similarity` (1 - max cos under cosine); empty
  // when M < 2.
  std::optional<double> min_separation;
  // m = max_μ ||ξ_μ||, the raw norm (outputs live in pattern space). Under
  // cosine, scores use unit vectors and the β rule uses m = 1.
  double max_norm = 0.0;

  Eigen::Index dim() const { return patterns.rows(); }
  Eigen::Index size() const { return patterns.cols(); }
};

// Builds a view over caller-owned buffers (tests, benchmarks, reference
// computations). `patterns` is dim x M column-major; `inverse_norms` and
// `ids` have M entries. Statistics are left empty.
BankView MakeBankView(const float* patterns, Eigen::Index dim,
                      Eigen::Index size, const float* inverse_norms,
                      absl::Span<const PatternId> ids, Similarity similarity);

// Point-in-time statistics of a bank.
struct BankStats {
  uint64_t pattern_count = 0;
  // Bytes held for patterns, norms, ids, separation and the id index.
  uint64_t memory_bytes = 0;
  // Δ_min over the patterns whose statistics are up to date (empty when
  // fewer than two patterns are stored or none is processed yet).
  std::optional<double> min_separation;
  // Patterns whose separation statistics still await RefreshSeparation
  // (always 0 under SeparationUpdate::kSynchronous).
  uint64_t separation_pending = 0;
  double max_norm = 0.0;
  // β a retrieval with the bank's defaults uses (the automatic rule when the
  // bank's β is 0).
  double effective_beta = 0.0;
  // ln of the capacity estimate (capacity.h LogCapacity) at effective_beta.
  double log_capacity = 0.0;
  // pattern_count / capacity; above 1 means retrieval errors are expected.
  double capacity_utilization = 0.0;
};

// A named bank of patterns. Not copyable.
//
// Thread-safe: any number of concurrent readers (Get, Stats, WithReader), one
// writer (Add, Remove) at a time; writers wait for readers.
class MemoryBank {
 public:
  // Creates an empty bank. Under kDeferred, `on_pending` (if set) is called
  // each time a write leaves patterns pending, with the bank's writer lock
  // held: it must be quick and must not call into the bank (BankRegistry
  // uses it to wake its refresher instead of polling).
  // Errors: INVALID_ARGUMENT if `name` breaks ValidateBankName or `options`
  // fails BankOptions::Validate().
  static absl::StatusOr<std::unique_ptr<MemoryBank>> Create(
      std::string name, const BankOptions& options,
      SeparationUpdate update = SeparationUpdate::kSynchronous,
      std::function<void()> on_pending = {});

  MemoryBank(const MemoryBank&) = delete;
  MemoryBank& operator=(const MemoryBank&) = delete;

  const std::string& name() const { return name_; }
  // Options as created, with defaults resolved (BankOptions::Resolved()).
  const BankOptions& options() const { return options_; }
  uint32_t dim() const { return options_.dim; }

  // Upserts a batch: pattern i is values[i*dim, (i+1)*dim) with id ids[i]; id
  // 0 asks for a fresh id (one above the largest id ever stored); a stored id
  // is replaced. All or nothing: on error the bank is unchanged.
  // Returns the ids in input order.
  // Errors: INVALID_ARGUMENT for an empty batch, values.size() != ids.size() *
  // dim, a NaN/Inf value, a zero-norm (or norm-overflowing) pattern in a
  // cosine bank, or an id repeated within the batch; RESOURCE_EXHAUSTED when
  // the bank would exceed 2^32 - 1 patterns or the id space is used up.
  absl::StatusOr<std::vector<PatternId>> Add(absl::Span<const PatternId> ids,
                                             absl::Span<const float> values);

  // Removes the patterns with these ids; ids not stored are skipped. Returns
  // how many were removed.
  uint64_t Remove(absl::Span<const PatternId> ids);

  // Brings the separation statistics of up to `max_patterns` pending patterns
  // up to date (each scored against every stored pattern, which in turn learn
  // of it). The scoring runs under the reader lock, so retrievals proceed;
  // the result is applied under a short writer lock, or dropped when a
  // removal moved columns meanwhile (the patterns stay pending). Returns the
  // number of patterns brought up to date; 0 when none is pending. A set
  // `stop` (polled between blocks of patterns) abandons the work: returns 0
  // and leaves everything pending.
  size_t RefreshSeparation(size_t max_patterns,
                           const std::atomic<bool>* stop = nullptr);

  // Patterns awaiting RefreshSeparation (0 under kSynchronous).
  uint64_t separation_pending() const;

  // True if Add or Remove changed the bank within the last `period` (steady
  // clock). The background refresher leaves such banks alone, so a bulk
  // ingest is not slowed by refresh turns that make its writes wait.
  bool WrittenWithin(std::chrono::nanoseconds period) const;

  // Copies pattern `id` into a new vector.
  // Errors: NOT_FOUND naming the id.
  absl::StatusOr<std::vector<float>> Get(PatternId id) const;

  // Copies the patterns with `ids`, in order, into `out` (resized to
  // ids.size() * dim). All or nothing.
  // Errors: NOT_FOUND naming the first missing id.
  absl::Status GetMany(absl::Span<const PatternId> ids,
                       std::vector<float>* out) const;

  // True if `id` is stored.
  bool Contains(PatternId id) const;

  uint64_t size() const;
  BankStats Stats() const;

  // Separation Δ_μ of pattern `id` and the id of its nearest other pattern
  // (the argmax of the similarity).
  // Errors: NOT_FOUND for an unknown id; FAILED_PRECONDITION when the bank
  // holds fewer than two patterns.
  struct Neighbour {
    double separation = 0.0;
    PatternId nearest_id = 0;
  };
  absl::StatusOr<Neighbour> PatternSeparation(PatternId id) const;

  // Calls `fn(const BankView&)` under the reader lock and returns its result.
  // The view must not escape `fn`. `fn` must not call the bank's writers.
  template <typename Fn>
  auto WithReader(Fn&& fn) const {
    ReaderLock lock(&mu_);
    return fn(ViewLocked());
  }

 private:
  MemoryBank(std::string name, const BankOptions& options,
             SeparationUpdate update, std::function<void()> on_pending);

  // Nearest-neighbour scores computed for some target columns: each target's
  // best (score, id) over all other columns, and for every column the best
  // score any target gave it.
  struct NearestUpdate {
    std::vector<float> target_score;
    std::vector<PatternId> target_id;
    std::vector<float> row_score;
    std::vector<PatternId> row_id;
  };

  BankView ViewLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Eigen::Index SizeLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return static_cast<Eigen::Index>(ids_.size());
  }
  // Moves the last column into `column` and shrinks by one.
  void RemoveColumnLocked(Eigen::Index column)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Scores the `targets` against all columns (one blocked matrix product).
  // Returns false if `stop` was set meanwhile (the update is then partial).
  bool ComputeNearestLocked(const std::vector<Eigen::Index>& targets,
                            const std::atomic<bool>* stop,
                            NearestUpdate* out) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sets the targets' nearest neighbours and lets them improve every other
  // up-to-date column's; clears the targets' pending marks.
  void ApplyNearestLocked(const std::vector<Eigen::Index>& targets,
                          const NearestUpdate& update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings `targets` up to date now (synchronous mode) or marks them pending.
  void UpdateOrMarkLocked(const std::vector<Eigen::Index>& targets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshSummaryLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteWrite();
  double SelfScoreLocked(Eigen::Index column) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t MemoryBytesLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Immutable after construction.
  const std::string name_;
  const BankOptions options_;
  const SeparationUpdate update_;
  const std::function<void()> on_pending_;

  mutable Mutex mu_;
  // Guarded by mu_.
  // dim * M floats, column-major.
  std::vector<float, Eigen::aligned_allocator<float>> values_
      ABSL_GUARDED_BY(mu_);
  std::vector<float> inverse_norms_ ABSL_GUARDED_BY(mu_);
  std::vector<PatternId> ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PatternId, Eigen::Index> column_of_ ABSL_GUARDED_BY(mu_);
  // Per column: max over other columns of the similarity, and its id.
  std::vector<float> nearest_score_ ABSL_GUARDED_BY(mu_);
  std::vector<PatternId> nearest_id_ ABSL_GUARDED_BY(mu_);
  // 1 for columns whose nearest neighbour awaits RefreshSeparation.
  std::vector<char> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped whenever columns move or change (removal, replacement), so a
  // refresh computed before that is not applied to the wrong columns.
  uint64_t layout_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<double> min_separation_ ABSL_GUARDED_BY(mu_);
  double max_norm_ ABSL_GUARDED_BY(mu_) = 0.0;
  PatternId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Steady-clock time of the last Add/Remove, in nanoseconds (lock-free).
  std::atomic<int64_t> last_write_nanos_{0};
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_MEMORY_BANK_H_
