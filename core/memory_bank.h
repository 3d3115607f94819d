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
// Feature space: a bank scores in the space of its feature map Φ
// (feature_map.h; the identity until Train publishes a learned one). Under a
// learned map the bank keeps the keys Φ(ξ_μ) (D_Φ x M, with their inverse
// norms) beside the patterns: scores, separation statistics, automatic β and
// capacity are computed on the keys, outputs on the patterns. Under the
// identity the patterns are the keys (nothing extra is stored).
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
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include "core/ann_index.h"
#include "core/bank_codec.h"
#include "core/bank_options.h"
#include "core/feature_map.h"
#include "core/memory_budget.h"
#include "core/mutex.h"
#include "core/storage.h"

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

// Allocates through the aligned global operator new (64-byte cache lines),
// so tests that replace operator new see every buffer of a bank.
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheAlignedAllocator() = default;
  template <typename U>
  explicit CacheAlignedAllocator(const CacheAlignedAllocator<U>& /*other*/) {}

  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), kAlignment));
  }
  void deallocate(T* p, size_t /*n*/) { ::operator delete(p, kAlignment); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>& /*other*/) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>& /*other*/) const {
    return false;
  }
};

// The most patterns a bank may hold (ids are 64-bit, columns 32-bit).
inline constexpr uint64_t kMaxPatternsPerBank = (uint64_t{1} << 32) - 1;

// What a bank runs in: resources and hooks shared with its registry. Every
// field has a default, so a stand-alone bank needs none.
struct BankEnvironment {
  // When separation statistics are brought up to date. Default:
  // kSynchronous.
  SeparationUpdate separation_update = SeparationUpdate::kSynchronous;
  // Under kDeferred, called each time a write leaves patterns pending, with
  // the bank's writer lock held: it must be quick and must not call into the
  // bank (BankRegistry uses it to wake its refresher instead of polling).
  std::function<void()> on_pending;
  // The account the bank's memory is reserved from before it is allocated
  // (patterns, ids, statistics, the id index). Null: unaccounted.
  std::shared_ptr<MemoryBudget> budget;
  // Add refuses to grow the bank beyond this many patterns.
  // Default and REQUIRES: <= kMaxPatternsPerBank.
  uint64_t max_patterns = kMaxPatternsPerBank;
  // A cosine bank builds its search index (AnnIndex over the unit-norm keys)
  // once it holds this many patterns, and keeps it from then on; below, an
  // index costs more than the scan it would save (hnswlib also holds ~2.6 MB
  // of locks per index). 0: from the first pattern. Default: 4096.
  uint64_t index_min_patterns = 4096;
  // Threads that build a new search index (hnswlib's concurrent insertion,
  // AnnIndex::Add) and run its separation-estimate searches: short-lived
  // threads beside the caller of RefreshIndex. 1 builds on the caller alone,
  // the same graph for the same inserts; more build faster (60,000
  // Fashion-MNIST keys: bench/README.md), a graph that depends on the
  // threads' interleaving. Default: 1. REQUIRES: >= 1.
  uint32_t index_build_threads = 1;
  // Where the bank logs its writes (storage.h), as incarnation
  // `incarnation`. Null: the bank lives in memory only.
  std::shared_ptr<Storage> storage;
  BankIncarnation incarnation = 0;
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
  // The separation the automatic β rule uses, in the units of `similarity`
  // (1 - max cos under cosine): Δ_min over the patterns that are not
  // near-duplicates (capacity.h kDuplicateSeparation), or Δ_min itself when
  // every pattern is one; empty when M < 2.
  std::optional<double> min_separation;
  // m = max_μ ||ξ_μ||, the raw norm (outputs live in pattern space). Under
  // cosine, scores use unit vectors and the β rule uses m = 1.
  double max_norm = 0.0;
  // What scores are taken against: the patterns themselves under the
  // identity map (the default of MakeBankView), else the keys Φ(ξ_μ)
  // (D_Φ x M) and their inverse norms (0 for a zero key).
  Eigen::Map<const Eigen::MatrixXf> keys;
  Eigen::Map<const Eigen::VectorXf> key_inverse_norms;
  // The map a query goes through before scoring. Null means the identity.
  const FeatureMap* feature_map = nullptr;
  // max_μ ||Φ(ξ_μ)|| (= max_norm under the identity): the m of the β rule
  // and of the overflow checks under dot similarity.
  double max_key_norm = 0.0;

  // The search index over the normalised keys, or null (none yet, a dot
  // bank, a view built by hand). Its vectors were computed under
  // `index_map` (null: the identity), which differs from `feature_map`
  // while a new map's index is being rebuilt. It may hold entries for ids
  // that are gone or whose vector is stale: candidates are looked up in
  // `column_of` (missing ids skipped) and scored against `keys`.
  const AnnIndex* index = nullptr;
  const FeatureMap* index_map = nullptr;
  // The ids whose current keys are not in the index (every id when there
  // is no index): approximate retrieval scores them exactly.
  absl::Span<const PatternId> unindexed;
  // Column of each id.
  const absl::flat_hash_map<PatternId, Eigen::Index>* column_of = nullptr;
  // Per column: the best similarity to any other pattern (Δ_μ = self score
  // minus this), and 1 where that value is provisional (not yet exact).
  // Null in views built by hand.
  const float* nearest_scores = nullptr;
  const char* separation_pending = nullptr;
  // Patterns whose separation is pending (while any is, a stored
  // pattern's nearest score may not yet count it).
  uint64_t separation_pending_count = 0;

  Eigen::Index dim() const { return patterns.rows(); }
  Eigen::Index size() const { return patterns.cols(); }
  Eigen::Index key_dim() const { return keys.rows(); }
  bool learned() const {
    return feature_map != nullptr && !feature_map->is_identity();
  }
};

// Builds a view over caller-owned buffers (tests, benchmarks, reference
// computations). `patterns` is dim x M column-major; `inverse_norms` and
// `ids` have M entries. The keys are the patterns (identity map); statistics
// are left empty.
BankView MakeBankView(const float* patterns, Eigen::Index dim,
                      Eigen::Index size, const float* inverse_norms,
                      absl::Span<const PatternId> ids, Similarity similarity);

// 1/||x|| as a key's inverse norm, from the norm computed in double: 0 for a
// vector too small to normalise (norm < 1e-30; it then scores 0).
float KeyInverseNorm(double norm);

// The largest norm among columns with these inverse norms (0 entries are
// skipped; 0 when none is left).
double MaxNormFromInverse(absl::Span<const float> inverse_norms);

// Point-in-time statistics of a bank.
struct BankStats {
  uint64_t pattern_count = 0;
  // Bytes held for patterns, norms, ids, separation, the id map and the
  // search index: the allocated capacity, which is what the bank has reserved
  // from its budget (growth adds 1/4, so at most ~1/4 above what the patterns
  // need).
  uint64_t memory_bytes = 0;
  // Δ_min over the patterns whose statistics are up to date (empty when
  // fewer than two patterns are stored or none is processed yet).
  std::optional<double> min_separation;
  // Near-duplicates (Δ_μ below kDuplicateSeparation of the self score),
  // and Δ_min over the other patterns: what automatic β and the capacity
  // estimate use (empty when every pattern is a near-duplicate).
  uint64_t duplicate_count = 0;
  std::optional<double> min_distinct_separation;
  // The 1st percentile of Δ_μ over the up-to-date patterns (a robust low
  // value beside the minimum; empty like min_separation).
  std::optional<double> separation_p01;
  // Patterns whose separation statistics still await RefreshSeparation
  // (always 0 under SeparationUpdate::kSynchronous).
  uint64_t separation_pending = 0;
  // Of those, the ones holding an estimate: index-derived (RefreshIndex:
  // the best of the search index's candidates, scored exactly; it may miss
  // a nearer pattern, so Δ_μ may be overstated) or, after a feature-map
  // change, the old neighbour re-scored. The statistics above include them;
  // they are exact when separation_pending is 0.
  uint64_t separation_estimated = 0;
  double max_norm = 0.0;
  // β a retrieval with the bank's defaults uses (the automatic rule when the
  // bank's β is 0).
  double effective_beta = 0.0;
  // ln of the capacity estimate (capacity.h LogCapacity) at effective_beta.
  double log_capacity = 0.0;
  // pattern_count / capacity; above 1 means retrieval errors are expected.
  double capacity_utilization = 0.0;
  // The feature map's version (0 = identity) and D_Φ (dim under identity).
  uint32_t feature_map_version = 0;
  uint32_t feature_dim = 0;
  // max_μ ||Φ(ξ_μ)|| (max_norm under the identity).
  double max_key_norm = 0.0;
  // The search index: live entries (0 when the bank has none), patterns
  // not yet in it (awaiting RefreshIndex), and whether it was built under
  // the current feature map (false while a new map's index is rebuilt).
  uint64_t index_size = 0;
  uint64_t index_pending = 0;
  bool index_current = false;
};

// A named bank of patterns. Not copyable.
//
// Memory: the bank reserves its buffers from `BankEnvironment::budget`
// before allocating them (growth by 1/4 of the capacity at a time, while the
// old and new buffers coexist), gives memory back when removals leave it less
// than half full, and holds the reservation until it is destroyed.
//
// Exceptions: none are thrown except std::bad_alloc from a failed
// allocation, and then the strong guarantee holds: the bank is as it was
// before the call (Add and Remove allocate everything they need before
// changing anything).
//
// Durability (with BankEnvironment::storage): every write (Add, Remove,
// SetFeatureMap) is logged as one StorageBatch that mirrors what it does to
// the columns: an append puts column M, a replacement rewrites its column,
// a removal moves the last column into the hole and truncates, so the
// stored columns are the matrix, column for column (the same summation
// order and ties after a restart). Ids are assigned and replacements found
// under the writer lock, so the batch is applied there (Storage::Apply
// orders and logs it without syncing, microseconds); the lock is released
// before the write waits for the sync (Storage::WaitDurable, shared with
// every writer waiting at the time), so readers never wait for the disk.
// The write returns only once durable. Consequences: a reader may see a
// write that a crash then loses (it was never acknowledged); a write whose
// Apply fails changes nothing; a write whose sync fails has changed the
// bank in memory but reports UNAVAILABLE (the store then refuses every
// later write until the server restarts). Every batch also rewrites the
// bank's counters (BankState: the next fresh id, the write count, the
// column count), so ids handed out are never reused after a restart and a
// load can tell a snapshot of the separation statistics is current
// (PersistSeparation).
//
// Thread-safe: any number of concurrent readers (Get, Stats, WithReader), one
// writer (Add, Remove) at a time; writers wait for readers.
class MemoryBank {
 public:
  // Creates an empty bank.
  // Errors: INVALID_ARGUMENT if `name` breaks ValidateBankName, `options`
  // fails BankOptions::Validate(), env.max_patterns is above
  // kMaxPatternsPerBank or env.index_build_threads is 0.
  static absl::StatusOr<std::unique_ptr<MemoryBank>> Create(
      std::string name, const BankOptions& options, BankEnvironment env = {});

  // Rebuilds the bank stored as env.incarnation in env.storage: its columns
  // in their order, its ids and counters, its feature map (keys recomputed)
  // and, when a snapshot taken after its last write is stored, its
  // separation statistics exactly as they were (else every pattern is
  // pending, as after a bulk load). The search index saved by PersistIndex
  // is taken back when it was saved at this very state (same write count
  // and map version, intact file); otherwise RefreshIndex rebuilds it as
  // after any write. Reserves from env.budget.
  // Errors: as Create; INVALID_ARGUMENT without env.storage; DATA_LOSS
  // naming the bank and the record when a record fails its checksum, a
  // column is missing, or the stored values contradict each other (a
  // repeated or zero id, a non-finite value, a map of another dimension);
  // RESOURCE_EXHAUSTED when the budget or env.max_patterns cannot hold it;
  // the storage's read errors.
  static absl::StatusOr<std::unique_ptr<MemoryBank>> Load(
      std::string name, const BankOptions& options, BankEnvironment env);

  MemoryBank(const MemoryBank&) = delete;
  MemoryBank& operator=(const MemoryBank&) = delete;

  const std::string& name() const { return name_; }
  // Options as created, with defaults resolved (BankOptions::Resolved()).
  const BankOptions& options() const { return options_; }
  uint32_t dim() const { return options_.dim; }
  // The bank's incarnation in its storage (0 without storage).
  BankIncarnation incarnation() const { return env_.incarnation; }

  // Upserts a batch: pattern i is values[i*dim, (i+1)*dim) with id ids[i]; id
  // 0 asks for a fresh id; a stored id is replaced in place. Fresh ids count
  // up from one above the largest id stored or assigned so far, skipping ids
  // in use; after 2^64 - 1 they wrap to the smallest unused ids. All or
  // nothing: on error (and on std::bad_alloc) the bank is unchanged.
  // Returns the ids in input order.
  // Errors: INVALID_ARGUMENT for an empty batch, values.size() != ids.size() *
  // dim, a NaN/Inf value, a zero-norm pattern in a cosine bank, a pattern
  // whose squared norm overflows float32 (its scores would be Inf) or whose
  // key under a learned map does, or an id repeated within the batch;
  // RESOURCE_EXHAUSTED when the bank would exceed env.max_patterns, or its
  // growth does not fit in the memory budget; NOT_FOUND when the bank was
  // closed (deleted from its registry); the storage's errors (unchanged
  // bank, except after a failed sync: see the class comment).
  absl::StatusOr<std::vector<PatternId>> Add(absl::Span<const PatternId> ids,
                                             absl::Span<const float> values);

  // Removes the patterns with these ids; ids not stored are skipped. Returns
  // how many were removed. When the bank is left less than half full its
  // buffers shrink and the memory goes back to the budget (skipped, with no
  // error, if the budget cannot hold the copy meanwhile).
  // Errors: NOT_FOUND when the bank was closed; the storage's errors (as
  // Add).
  absl::StatusOr<uint64_t> Remove(absl::Span<const PatternId> ids);

  // Stores a snapshot of the per-pattern separation statistics, so that a
  // restart restores them exactly instead of recomputing them (O(M²·D_Φ)
  // for exact values). Skipped (OK) without storage or when the stored
  // snapshot is current. Copies the statistics under the reader lock
  // (13 bytes a pattern), writes outside it; not synced (the next write's
  // sync, or the store's Close, covers it; a lost snapshot costs only the
  // recomputation). Errors: the storage's.
  absl::Status PersistSeparation();

  // Saves the search index (a cosine bank's, when it holds every pattern
  // under the current map) as files in the storage's SideFileDirectory,
  // with the bank's write count, so that a Load of this very state takes
  // it back instead of rebuilding it (a stale or damaged file is ignored:
  // the index is rebuilt as after any load). Holds the reader lock while it
  // writes (writers wait): for a shutdown. OK and nothing written without
  // storage, side files or a complete index. Errors: UNAVAILABLE when the
  // files cannot be written.
  absl::Status PersistIndex();

  // Brings the separation statistics of up to `max_patterns` pending patterns
  // up to date (each scored against every stored pattern, which in turn learn
  // of it). The scoring runs in blocks of stored patterns, each under a
  // reader lock held for about 2^25 multiply-adds (milliseconds), so
  // retrievals proceed and writers wait at most one block. Writes between
  // blocks are allowed: appended patterns are pending themselves, replaced
  // ones are recognised by their write stamp and left pending, and a removal
  // (which moves columns) restarts the scan. The result is applied under a
  // short writer lock. Returns the number of patterns brought up to date; 0
  // when none is pending. A set `stop` (polled between blocks) abandons the
  // work: returns 0 and leaves everything pending.
  size_t RefreshSeparation(size_t max_patterns,
                           const std::atomic<bool>* stop = nullptr);

  // Patterns awaiting RefreshSeparation (0 under kSynchronous).
  uint64_t separation_pending() const;

  // Brings the search index of a cosine bank up to date, as
  // RefreshSeparation does the statistics. First it tombstones the entries
  // of patterns removed since (index_deletions_pending; their slots go to
  // later insertions, so churn does not grow the index); then:
  //   - no index yet and at least env.index_min_patterns patterns, or the
  //     feature map changed since the index was built, or tombstones
  //     outnumber the live entries, or the bank has grown fourfold since
  //     the index was built and its projection (ann_index.h; fitted to up
  //     to max(4096, 2·D_Φ) keys evenly spaced over the columns) either
  //     applies or had too few keys to fit: builds a new index over every
  //     pattern
  //     (privately, copying keys in blocks under short reader locks), then
  //     swaps it in under a short writer lock; the old index (if any)
  //     serves retrievals meanwhile;
  //   - else inserts up to `max_patterns` of the patterns written since
  //     (their keys copied under the reader lock, inserted outside it: the
  //     bank's readers and writers never wait for hnswlib).
  // Patterns written meanwhile stay pending (a replaced one is recognised
  // by its write stamp). Patterns the index now holds whose separation
  // statistics await RefreshSeparation and hold no estimate get one from
  // the index (BankStats::separation_estimated): one search each for
  // 9 candidates (18 from a projected index; one is the pattern itself),
  // re-scored exactly; the candidates learn their score to it as well. So
  // after a bulk load Δ statistics are
  // available within seconds, long before the exact refresh (O(M²·D_Φ))
  // completes. Returns the patterns brought into the index; 0
  // when there is nothing to do, when `stop` (polled between blocks) is
  // set, or when the budget cannot hold the index's growth (everything
  // stays pending; retrieval still covers every pattern).
  // Under SeparationUpdate::kSynchronous, Add, Remove and SetFeatureMap
  // call it themselves before returning.
  size_t RefreshIndex(size_t max_patterns,
                      const std::atomic<bool>* stop = nullptr);

  // Patterns not yet in the search index (0 for a bank that keeps none:
  // dot similarity, or fewer than env.index_min_patterns patterns and no
  // index built yet).
  uint64_t index_pending() const;
  // Live entries of the search index (0 while the bank has none), not
  // counting removed patterns whose entries await their tombstone.
  uint64_t index_size() const;
  // Removed patterns whose index entries RefreshIndex has yet to tombstone
  // (Remove leaves that to it, so it never waits for the index's lock).
  uint64_t index_deletions_pending() const;

  // True if Add or Remove changed the bank within the last `period` (steady
  // clock). The background refresher leaves such banks alone, so a bulk
  // ingest is not slowed by refresh turns that make its writes wait.
  bool WrittenWithin(std::chrono::nanoseconds period) const;
  // True if RefreshSeparation applied work within the last `period`.
  bool RefreshedWithin(std::chrono::nanoseconds period) const;

  // Copies pattern `id` into a new vector.
  // Errors: NOT_FOUND naming the id.
  absl::StatusOr<std::vector<float>> Get(PatternId id) const;

  // Copies the patterns with `ids`, in order, into `out` (resized to
  // ids.size() * dim). All or nothing.
  // Errors: NOT_FOUND naming the first missing id.
  absl::Status GetMany(absl::Span<const PatternId> ids,
                       std::vector<float>* out) const;

  // Calls fn(i, values of pattern ids[i]) for every i in order, under the
  // reader lock, after checking that every id is stored (so fn sees all or
  // none). Lets a caller copy patterns straight into its own buffers.
  // `fn` must not call the bank's writers.
  // Errors: NOT_FOUND naming the first missing id (fn not called).
  absl::Status VisitPatterns(
      absl::Span<const PatternId> ids,
      const std::function<void(size_t, absl::Span<const float>)>& fn) const;

  // True if `id` is stored.
  bool Contains(PatternId id) const;

  // The current feature map (never null; version 0 is the identity). A
  // snapshot: a later SetFeatureMap does not change it.
  std::shared_ptr<const FeatureMap> feature_map() const;

  // Publishes `map`: computes the keys of every stored pattern under it (in
  // blocks, each under a reader lock, so retrievals proceed and writers wait
  // at most one block), then swaps keys and map in under a short writer lock
  // (keys of patterns written meanwhile are computed there). Retrievals see
  // the old map or the new one, never a mix. Separation statistics restart
  // in the new space: every pattern's nearest neighbour is re-scored under
  // the new keys as a provisional value (an upper bound on its Δ_μ) and
  // marked pending until RefreshSeparation (or, under kSynchronous, this
  // call) finds the exact one.
  // Errors: INVALID_ARGUMENT when map->input_dim() != dim() or a stored
  // pattern's key overflows float32 (under dot); RESOURCE_EXHAUSTED when
  // the budget cannot hold the new keys beside the old ones; whatever
  // `check_continue` (polled between blocks) returns. On error nothing
  // changes.
  absl::Status SetFeatureMap(
      std::shared_ptr<const FeatureMap> map,
      const std::function<absl::Status()>& check_continue = {});

  // A copy of up to `max_count` patterns for training: all of them when the
  // bank holds no more, else a uniform random sample drawn with `seed`;
  // sorted by id either way (so a bank written in the same order samples the
  // same way). `nearest[i]` is the sample position of pattern i's current
  // nearest neighbour, or -1 when it is not in the sample or unknown.
  struct PatternSample {
    Eigen::MatrixXf patterns;  // dim x n
    std::vector<PatternId> ids;
    std::vector<Eigen::Index> nearest;
  };
  PatternSample Sample(size_t max_count, uint64_t seed) const;

  uint64_t size() const;
  // What Stats computes. kFull: every field, O(M) (the percentile and the
  // estimate count scan every pattern). kSummary: O(1) under the reader
  // lock, for frequent polling (metrics scrapes): separation_p01 stays
  // empty and separation_estimated 0.
  enum class StatsDetail { kFull, kSummary };
  BankStats Stats(StatsDetail detail = StatsDetail::kFull) const;

  // Separation Δ_μ of pattern `id` and the id of its nearest other pattern
  // (the argmax of the similarity).
  // Errors: NOT_FOUND for an unknown id; FAILED_PRECONDITION when the bank
  // holds fewer than two patterns.
  struct Neighbour {
    double separation = 0.0;
    PatternId nearest_id = 0;
  };
  absl::StatusOr<Neighbour> PatternSeparation(PatternId id) const;

  // Marks the bank as dropped from its registry: later writes fail with
  // NOT_FOUND, and long operations on it (training) stop at their next poll
  // with CANCELLED. Takes the writer lock, so a write that began before
  // has been logged when it returns and none is logged after. Idempotent.
  void Close();
  bool closed() const { return closed_.load(std::memory_order_relaxed); }

  // At most one training run per bank: true if this caller may train (and
  // must call FinishTraining when done), false while another run holds it.
  bool TryStartTraining() {
    return !training_.exchange(true, std::memory_order_acq_rel);
  }
  void FinishTraining() { training_.store(false, std::memory_order_release); }

  // Calls `fn(const BankView&)` under the reader lock and returns its result.
  // The view must not escape `fn`. `fn` must not call the bank's writers.
  template <typename Fn>
  auto WithReader(Fn&& fn) const {
    ReaderLock lock(&mu_);
    return fn(ViewLocked());
  }

 private:
  MemoryBank(std::string name, const BankOptions& options, BankEnvironment env);

  // Nearest-neighbour scores computed for some targets: each target's best
  // (score, id) over all other columns, and for every column scored the
  // best score any target gave it (keyed by column, checked against the
  // column's write stamp when applied).
  struct NearestUpdate {
    // Sizes the vectors for `targets` targets and `rows` columns (the only
    // allocation; applying the update allocates nothing).
    void Reset(size_t targets, size_t rows);

    std::vector<float> target_score;
    std::vector<PatternId> target_id;
    std::vector<float> row_score;
    std::vector<PatternId> row_id;
    // Scratch of ApplyNearestLocked: 1 for targets whose result held.
    std::vector<char> applied;
  };

  // Index-derived separation estimates (see RefreshIndex) for those of
  // `ids` (unit keys `unit_keys`, write stamps `stamps` when copied) still
  // pending without an estimate: searches `index` outside the lock, applies
  // under a short writer lock (nothing if the index was replaced).
  void EstimateFromIndex(const std::shared_ptr<AnnIndex>& index,
                         absl::Span<const PatternId> ids,
                         absl::Span<const uint64_t> stamps,
                         absl::Span<const float> unit_keys);
  // EstimateFromIndex over every such pattern, in chunks (after a build).
  void EstimatePendingFromIndex(const std::shared_ptr<AnnIndex>& index,
                                const std::atomic<bool>* stop);
  // Whether column c awaits RefreshSeparation without an estimate.
  bool NeedsEstimateLocked(size_t column) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  BankView ViewLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Δ_min over the non-duplicates, else Δ_min (see BankView).
  std::optional<double> RuleSeparationLocked() const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // D_Φ of the keys buffer: 0 under the identity map (the patterns are the
  // keys), else the learned map's feature dimension.
  size_t StoredKeyDimLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The keys (key_dim x M) and their inverse norms: the patterns under the
  // identity map.
  Eigen::Map<const Eigen::MatrixXf> KeysLocked() const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const float* KeyInverseNormsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Eigen::Index SizeLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return static_cast<Eigen::Index>(ids_.size());
  }
  // Makes room for `count` patterns: reserves the growth from the budget and
  // grows every buffer, or does nothing when they are large enough. Changes
  // no content, so a failure (status or bad_alloc) leaves the bank as is.
  absl::Status EnsureCapacityLocked(size_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies `batch` plus the bank's counters after the write (`next_id`,
  // write_seq_ + 1, `columns`) to the storage and returns its ticket (0
  // without storage); bumps write_seq_ on success. Errors: NOT_FOUND when
  // closed; the storage's.
  absl::StatusOr<uint64_t> LogLocked(StorageBatch* batch, PatternId next_id,
                                     uint64_t columns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until `ticket` (from LogLocked) is durable; OK without storage.
  absl::Status WaitLogged(uint64_t ticket) const;
  // Load's body under the writer lock of a new bank.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the saved search index back when it describes the loaded state;
  // false (nothing changed) otherwise.
  bool LoadIndexLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Add, Remove and SetFeatureMap without the synchronous index
  // maintenance.
  absl::StatusOr<uint64_t> RemoveUnindexed(absl::Span<const PatternId> ids,
                                           uint64_t* ticket);
  // Add and Remove set `ticket` to what their log record must wait for
  // (WaitLogged), after the lock is released.
  absl::StatusOr<std::vector<PatternId>> AddUnindexed(
      absl::Span<const PatternId> ids, absl::Span<const float> values,
      uint64_t* ticket);
  absl::Status SetFeatureMapUnindexed(
      std::shared_ptr<const FeatureMap> map,
      const std::function<absl::Status()>& check_continue, uint64_t* ticket);
  // Builds a new index over every pattern and swaps it in (RefreshIndex).
  size_t BuildSearchIndex(const std::atomic<bool>* stop);
  // Under kSynchronous: RefreshIndex over everything, a failed allocation
  // leaving the patterns pending.
  void MaintainIndexNow();
  uint64_t IndexPendingLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t IndexSizeLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Tombstones the ids of index_deletions_ and index_maybe_deletions_ that
  // the bank no longer holds and drops them from the sets (on a failed
  // allocation, none: they stay owed).
  void ApplyIndexDeletionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AnnIndexOptions IndexOptions() const;
  // Whether the bank keeps an index now (cosine, and one exists or the
  // bank is large enough for one).
  bool WantsIndexLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Copies the normalised key of `column` (key_dim floats) to `out`.
  void CopyUnitKeyLocked(Eigen::Index column, float* out) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Puts `column` on / takes it off the unindexed list (no allocation).
  void MarkUnindexedLocked(Eigen::Index column)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkIndexedLocked(Eigen::Index column)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Shrinks the buffers when the bank is less than half full (best effort).
  void MaybeShrinkLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reallocates every buffer to hold exactly `capacity` patterns.
  void ReallocateLocked(size_t capacity) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bytes the buffers take at `capacity` patterns with keys of `key_dim`
  // floats (0: identity map) (an upper bound for the id index, whose
  // capacity is rounded up).
  uint64_t BytesForCapacity(size_t capacity, size_t key_dim) const;
  // Moves the last column into `column` and shrinks by one. No allocation.
  void RemoveColumnLocked(Eigen::Index column)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies the targets' keys (key_dim x t) and score scales (1/||Φ(x)||
  // under cosine, else 1).
  void CopyTargetsLocked(absl::Span<const Eigen::Index> targets,
                         Eigen::MatrixXf* values, Eigen::VectorXf* scale) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Scores `targets` (values and scales from CopyTargetsLocked) against
  // columns [begin, end) and folds the results into `out`, whose target
  // entries for targets[k] sit at first_target + k.
  void ScoreRowsLocked(absl::Span<const Eigen::Index> targets,
                       size_t first_target,
                       const Eigen::MatrixXf& target_values,
                       const Eigen::VectorXf& target_scale, Eigen::Index begin,
                       Eigen::Index end, NearestUpdate* out) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Sets the targets' nearest neighbours and lets them improve every other
  // up-to-date column's; clears the targets' pending marks. Columns whose
  // write stamp differs from `stamps` (replaced since the scoring) are left
  // alone; `stamps` empty means "scored under this lock".
  void ApplyNearestLocked(const std::vector<Eigen::Index>& targets,
                          const std::vector<uint64_t>& stamps,
                          NearestUpdate* update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings `targets` up to date now (synchronous mode; if that runs out of
  // memory they are marked pending instead) or marks them pending.
  void UpdateOrMarkLocked(const std::vector<Eigen::Index>& targets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkPendingLocked(const std::vector<Eigen::Index>& targets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshSummaryLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteWrite();
  double SelfScoreLocked(Eigen::Index column) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t MemoryBytesLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Immutable after construction.
  const std::string name_;
  const BankOptions options_;
  const BankEnvironment env_;

  mutable Mutex mu_;
  // Guarded by mu_. Every per-column vector has capacity capacity_ (values_
  // capacity_ * dim); appends within it never allocate.
  // dim * M floats, column-major.
  std::vector<float, CacheAlignedAllocator<float>> values_ ABSL_GUARDED_BY(mu_);
  std::vector<float> inverse_norms_ ABSL_GUARDED_BY(mu_);
  // Under a learned map: D_Φ * M floats, column-major, and M inverse norms
  // (empty under the identity).
  std::vector<float, CacheAlignedAllocator<float>> keys_ ABSL_GUARDED_BY(mu_);
  std::vector<float> key_inverse_norms_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const FeatureMap> feature_map_ ABSL_GUARDED_BY(mu_);
  std::vector<PatternId> ids_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PatternId, Eigen::Index> column_of_ ABSL_GUARDED_BY(mu_);
  // Per column: max over other columns of the similarity, and its id.
  std::vector<float> nearest_score_ ABSL_GUARDED_BY(mu_);
  std::vector<PatternId> nearest_id_ ABSL_GUARDED_BY(mu_);
  // Non-zero for columns whose nearest neighbour awaits RefreshSeparation:
  // 1 until their own index-derived estimate is applied, then 2.
  std::vector<char> pending_ ABSL_GUARDED_BY(mu_);
  // Per column: the write that last set its values (from write_stamp_), so
  // a refresh scored before a replacement is not applied to the new values.
  std::vector<uint64_t> stamp_ ABSL_GUARDED_BY(mu_);
  // The search index (null until WantsIndexLocked and RefreshIndex builds
  // one), the map its vectors were computed under, the ids whose current
  // keys it lacks (capacity capacity_), and per column the position in
  // unindexed_ or kIndexed.
  static constexpr uint32_t kIndexed = UINT32_MAX;
  std::shared_ptr<AnnIndex> index_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const FeatureMap> index_map_ ABSL_GUARDED_BY(mu_);
  // Patterns stored when index_'s build began (its projection's population).
  size_t index_built_at_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<PatternId> unindexed_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> unindexed_pos_ ABSL_GUARDED_BY(mu_);
  // Removed ids whose entries RefreshIndex has yet to tombstone: live
  // entries of index_ (removed while indexed), and ids that may have one
  // (removed while awaiting insertion: replaced, or inserted by a refresh
  // that lost a race). Cleared when index_ is replaced; an id is dropped
  // when RefreshIndex inserts it again (stored again since); an id stored
  // again is not tombstoned (ApplyIndexDeletionsLocked).
  // Vectors reserved before a removal is logged (push_back never
  // allocates there); index_deletions_ holds no id twice (an id is indexed
  // again only by a refresh, which drops it, or a rebuild, which clears).
  std::vector<PatternId> index_deletions_ ABSL_GUARDED_BY(mu_);
  std::vector<PatternId> index_maybe_deletions_ ABSL_GUARDED_BY(mu_);
  size_t capacity_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t write_stamp_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped whenever columns move (removal), so a refresh scanning between
  // writes knows its column positions went stale.
  uint64_t layout_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<double> min_separation_ ABSL_GUARDED_BY(mu_);
  std::optional<double> min_distinct_separation_ ABSL_GUARDED_BY(mu_);
  uint64_t duplicate_count_ ABSL_GUARDED_BY(mu_) = 0;
  double max_norm_ ABSL_GUARDED_BY(mu_) = 0.0;
  double max_key_norm_ ABSL_GUARDED_BY(mu_) = 0.0;
  // Where the search for a fresh id starts.
  PatternId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Writes logged so far (BankState::write_seq), and what the stored
  // separation snapshot was taken at (write count and pending count; the
  // refresher changes statistics without writes).
  uint64_t write_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<std::pair<uint64_t, size_t>> snapshot_at_ ABSL_GUARDED_BY(mu_);
  // Serialises PersistSeparation (taken before mu_).
  std::mutex persist_mu_;
  // What the buffers hold against env_.budget (MemoryBytesLocked()).
  MemoryReservation reservation_ ABSL_GUARDED_BY(mu_);
  // Steady-clock times of the last Add/Remove and the last applied refresh,
  // in nanoseconds (lock-free).
  std::atomic<int64_t> last_write_nanos_{0};
  std::atomic<int64_t> last_refresh_nanos_{0};
  std::atomic<bool> closed_{false};
  std::atomic<bool> training_{false};
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_MEMORY_BANK_H_
