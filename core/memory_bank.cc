#include "core/memory_bank.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/capacity.h"
#include "core/status_macros.h"

namespace hopfield {
namespace {

// Targets per chunk of the nearest-neighbour update, and the work one block
// of stored patterns may take under one reader lock (multiply-adds): 2^25 is
// a few milliseconds here, the longest a writer waits for a refresh.
constexpr Eigen::Index kTargetChunk = 256;
constexpr uint64_t kMacsPerLockedBlock = uint64_t{1} << 25;
// Buffers grow by capacity / kGrowthDivisor (at least kMinCapacity), so the
// capacity is at most 1/4 above what the patterns need. Each growth copies
// the buffers (old and new coexist for the copy): 1/4 copies ~5x the final
// size over a bulk load (1/8 copied ~9x and made unpaced ingest 3x slower
// than doubling; doubling overstated memory_bytes by up to 2x).
constexpr size_t kGrowthDivisor = 4;
constexpr size_t kMinCapacity = 64;
// Bytes per pattern besides its values: inverse norm, id, nearest score and
// id, pending mark, write stamp.
constexpr uint64_t kColumnOverhead = sizeof(float) + sizeof(PatternId) +
                                     sizeof(float) + sizeof(PatternId) +
                                     sizeof(char) + sizeof(uint64_t);
// One slot of the id index plus its control byte.
constexpr uint64_t kIndexSlotBytes =
    sizeof(std::pair<const PatternId, Eigen::Index>) + 1;

// Steady-clock time in nanoseconds, for the lock-free write/refresh stamps.
int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Slots an absl::flat_hash_map allocates to hold `count` entries without
// rehashing: the next 2^k - 1 at a 7/8 maximum load (an upper bound).
uint64_t IndexSlotsFor(size_t count) {
  if (count == 0) return 0;
  const uint64_t wanted = count + (count - 1) / 7 + 1;
  uint64_t slots = 1;
  while (slots < wanted) slots = slots * 2 + 1;
  return slots;
}

// Sorted copy of the nonzero ids with their batch positions.
std::vector<std::pair<PatternId, size_t>> SortedExplicitIds(
    absl::Span<const PatternId> ids) {
  std::vector<std::pair<PatternId, size_t>> sorted;
  sorted.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] != 0) sorted.emplace_back(ids[i], i);
  }
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

bool SortedContains(const std::vector<PatternId>& sorted, PatternId id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

// Entries the id index is sized for at a bank capacity of `capacity`
// patterns. abseil's flat_hash_map (20220623) reclaims tombstones left by
// erasures in place while size <= 25/32 of its slots, and grows (allocates)
// above that; sizing it for 9/8 of the capacity keeps a full bank below
// 7/9 < 25/32 of the slots, so inserts up to the capacity never allocate.
size_t IndexEntriesFor(size_t capacity) { return capacity + capacity / 8 + 1; }

// Rebuilds `index` with room for `entries`. abseil's flat_hash_map (20220623)
// is not exception-safe when its allocation fails: resize() records the new
// capacity before allocating, and the destructor then frees a wrong pointer.
// So the growth happens in a fresh map that is leaked, never destroyed, if
// its allocation throws (it holds no memory then); `index` stays intact.
template <typename Index>
void RebuildIndex(Index* index, size_t entries) {
  // Failed maps are kept reachable here (never destroyed), so leak checkers
  // do not report them; each is a few dozen bytes holding no memory.
  static std::mutex graveyard_mu;
  static auto* const kGraveyard = new std::vector<void*>();
  auto fresh = std::make_unique<Index>();
  try {
    fresh->reserve(entries);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(graveyard_mu);
      try {
        kGraveyard->push_back(fresh.get());
      } catch (...) {  // out of memory again: leak it instead
      }
    }
    (void)fresh.release();  // NOLINT(bugprone-unused-return-value)
    throw;
  }
  fresh->insert(index->begin(), index->end());  // reserved: no allocation
  index->swap(*fresh);
}

// A copy of `v` with capacity `capacity` (>= v.size()).
template <typename Vector>
Vector Reallocated(const Vector& v, size_t capacity) {
  Vector fresh;
  fresh.reserve(capacity);
  fresh.assign(v.begin(), v.end());
  return fresh;
}

}  // namespace

BankView MakeBankView(const float* patterns, Eigen::Index dim,
                      Eigen::Index size, const float* inverse_norms,
                      absl::Span<const PatternId> ids, Similarity similarity) {
  return BankView{Eigen::Map<const Eigen::MatrixXf>(patterns, dim, size),
                  Eigen::Map<const Eigen::VectorXf>(inverse_norms, size),
                  ids,
                  similarity,
                  std::nullopt,
                  0.0};
}

absl::StatusOr<std::unique_ptr<MemoryBank>> MemoryBank::Create(
    std::string name, const BankOptions& options, BankEnvironment env) {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  if (env.max_patterns > kMaxPatternsPerBank) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_patterns must be <= ", kMaxPatternsPerBank, ", got ",
                     env.max_patterns));
  }
  return std::unique_ptr<MemoryBank>(
      new MemoryBank(std::move(name), options.Resolved(), std::move(env)));
}

MemoryBank::MemoryBank(std::string name, const BankOptions& options,
                       BankEnvironment env)
    : name_(std::move(name)), options_(options), env_(std::move(env)) {}

absl::StatusOr<std::vector<PatternId>> MemoryBank::Add(
    absl::Span<const PatternId> ids, absl::Span<const float> values) {
  const size_t dim = options_.dim;
  const bool cosine = options_.similarity == Similarity::kCosine;
  if (ids.empty()) {
    return absl::InvalidArgumentError("patterns: empty batch, expected >= 1");
  }
  if (values.size() != ids.size() * dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("patterns: expected ", ids.size(), " x ", dim, " = ",
                     ids.size() * dim, " values, got ", values.size()));
  }
  // Validate everything before touching the bank (all or nothing).
  std::vector<float> inverse_norms(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const Eigen::Map<const Eigen::VectorXf> pattern(
        values.data() + i * dim, static_cast<Eigen::Index>(dim));
    if (!pattern.allFinite()) {
      Eigen::Index bad = 0;
      while (std::isfinite(pattern[bad])) ++bad;
      return absl::InvalidArgumentError(
          absl::StrCat("patterns[", i, "].values[", bad,
                       "]: expected a finite number, got ", pattern[bad]));
    }
    // In double: the float norm of a pattern with huge entries overflows.
    const double norm = pattern.cast<double>().norm();
    if (norm == 0.0 && cosine) {
      return absl::InvalidArgumentError(
          absl::StrCat("patterns[", i,
                       "]: expected a non-zero norm under cosine similarity, "
                       "got the zero vector"));
    }
    // Scores and norms are float32: a pattern's score against itself (its
    // squared norm) must be finite, else its scores (dot) or the norms of
    // states mixing it (cosine) overflow to Inf/NaN.
    const double limit =
        std::sqrt(static_cast<double>(std::numeric_limits<float>::max()));
    if (!(norm < limit)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "patterns[", i, "]: norm ", norm, " is too large, expected < ", limit,
          " (scores must stay finite in float32)"));
    }
    // Under cosine, scores divide by the norm: below 1e-30 the entries
    // reach float32's denormals and 1/norm its limit.
    if (cosine && norm > 0.0 && norm < 1e-30) {
      return absl::InvalidArgumentError(
          absl::StrCat("patterns[", i, "]: norm ", norm,
                       " is too small to score under cosine similarity, "
                       "expected >= 1e-30"));
    }
    inverse_norms[i] = norm > 0.0 ? static_cast<float>(1.0 / norm) : 0.0f;
  }
  // Repeated ids: report the first position that repeats an earlier one.
  const std::vector<std::pair<PatternId, size_t>> explicit_ids =
      SortedExplicitIds(ids);
  size_t repeat = ids.size();
  size_t repeated = 0;
  for (size_t k = 1; k < explicit_ids.size(); ++k) {
    if (explicit_ids[k].first == explicit_ids[k - 1].first &&
        explicit_ids[k].second < repeat &&
        (k < 2 || explicit_ids[k - 2].first != explicit_ids[k].first)) {
      repeat = explicit_ids[k].second;
      repeated = explicit_ids[k - 1].second;
    }
  }
  if (repeat < ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "patterns[", repeat, "].id: id ", ids[repeat], " repeats patterns[",
        repeated, "].id; expected distinct ids within a batch"));
  }
  auto named_in_batch = [&explicit_ids](PatternId id) {
    const auto it = std::lower_bound(explicit_ids.begin(), explicit_ids.end(),
                                     std::pair<PatternId, size_t>(id, 0));
    return it != explicit_ids.end() && it->first == id;
  };

  WriterLock lock(&mu_);
  // Columns of the replaced ids (overwritten in place) and the new count.
  std::vector<Eigen::Index> replaced_column(ids.size(), -1);
  size_t replaced = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == 0) continue;
    const auto it = column_of_.find(ids[i]);
    if (it == column_of_.end()) continue;
    replaced_column[i] = it->second;
    ++replaced;
  }
  const size_t old_size = ids_.size();
  const size_t new_size = old_size + ids.size() - replaced;
  if (new_size > env_.max_patterns) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "bank \"", name_, "\" would hold ", new_size,
        " patterns, the limit is ", env_.max_patterns, " patterns per bank"));
  }
  // Fresh ids: counting up from next_id_, skipping ids in use or named in
  // this batch, wrapping from 2^64 - 1 to 1. A free id exists: the bank
  // holds fewer than 2^32 patterns.
  std::vector<PatternId> assigned(ids.begin(), ids.end());
  PatternId next = next_id_;
  for (const PatternId id : ids) {
    if (id != 0 && id >= next && id != std::numeric_limits<PatternId>::max()) {
      next = id + 1;
    }
  }
  for (PatternId& id : assigned) {
    if (id != 0) continue;
    while (next == 0 || column_of_.contains(next) || named_in_batch(next)) {
      ++next;
    }
    id = next++;
  }
  // Stored patterns whose nearest neighbour is being replaced must look
  // again; so must the replaced and the new patterns. Allocated now, so
  // nothing below can fail half way.
  std::vector<PatternId> replaced_ids;
  replaced_ids.reserve(replaced);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (replaced_column[i] >= 0) replaced_ids.push_back(ids[i]);
  }
  std::sort(replaced_ids.begin(), replaced_ids.end());
  std::vector<Eigen::Index> targets;
  targets.reserve(new_size);
  HOPFIELD_RETURN_IF_ERROR(EnsureCapacityLocked(new_size));

  // Apply: from here on nothing allocates (every buffer has room).
  if (!replaced_ids.empty()) {
    for (size_t c = 0; c < old_size; ++c) {
      if (SortedContains(replaced_ids, nearest_id_[c])) {
        targets.push_back(static_cast<Eigen::Index>(c));
      }
    }
  }
  ++write_stamp_;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* pattern = values.data() + i * dim;
    Eigen::Index column = replaced_column[i];
    if (column >= 0) {
      const auto c = static_cast<size_t>(column);
      std::copy_n(pattern, dim,
                  values_.begin() + static_cast<std::ptrdiff_t>(c * dim));
      inverse_norms_[c] = inverse_norms[i];
      nearest_score_[c] = -std::numeric_limits<float>::infinity();
      nearest_id_[c] = 0;
      stamp_[c] = write_stamp_;
    } else {
      column = static_cast<Eigen::Index>(ids_.size());
      values_.insert(values_.end(), pattern, pattern + dim);
      inverse_norms_.push_back(inverse_norms[i]);
      ids_.push_back(assigned[i]);
      nearest_score_.push_back(-std::numeric_limits<float>::infinity());
      nearest_id_.push_back(0);
      pending_.push_back(0);
      stamp_.push_back(write_stamp_);
      column_of_.emplace(assigned[i], column);
    }
    targets.push_back(column);
  }
  next_id_ = next;
  NoteWrite();
  UpdateOrMarkLocked(targets);
  RefreshSummaryLocked();
  return assigned;
}

uint64_t MemoryBank::Remove(absl::Span<const PatternId> ids) {
  std::vector<PatternId> removed;
  removed.reserve(ids.size());
  WriterLock lock(&mu_);
  for (const PatternId id : ids) {
    if (column_of_.contains(id)) removed.push_back(id);
  }
  if (removed.empty()) return 0;
  std::sort(removed.begin(), removed.end());
  removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
  std::vector<Eigen::Index> targets;
  targets.reserve(ids_.size());
  // No allocation from here on.
  for (const PatternId id : removed) {
    RemoveColumnLocked(column_of_.find(id)->second);
  }
  NoteWrite();
  for (Eigen::Index c = 0; c < SizeLocked(); ++c) {
    if (SortedContains(removed, nearest_id_[static_cast<size_t>(c)])) {
      targets.push_back(c);
    }
  }
  UpdateOrMarkLocked(targets);
  RefreshSummaryLocked();
  MaybeShrinkLocked();
  return removed.size();
}

absl::Status MemoryBank::EnsureCapacityLocked(size_t count) {
  if (count <= capacity_) return absl::OkStatus();
  const size_t capacity =
      std::max({count, capacity_ + capacity_ / kGrowthDivisor, kMinCapacity});
  const uint64_t before = MemoryBytesLocked();
  const uint64_t after = BytesForCapacity(capacity);
  // While the buffers are copied, old and new ones coexist.
  const std::string what =
      absl::StrCat("bank \"", name_, "\" growing to ", capacity, " patterns");
  if (env_.budget != nullptr && reservation_.bytes() == 0) {
    HOPFIELD_ASSIGN_OR_RETURN(reservation_,
                              env_.budget->Reserve(before + after, what));
  } else if (env_.budget != nullptr) {
    HOPFIELD_RETURN_IF_ERROR(reservation_.Resize(before + after, what));
  }
  try {
    ReallocateLocked(capacity);
  } catch (...) {
    // Some buffers may have grown; account for what is held now.
    (void)reservation_.Resize(MemoryBytesLocked(), what);
    throw;
  }
  if (env_.budget != nullptr) {
    (void)reservation_.Resize(MemoryBytesLocked(), what);  // shrinks
  }
  return absl::OkStatus();
}

void MemoryBank::MaybeShrinkLocked() {
  const size_t size = ids_.size();
  if (capacity_ <= kMinCapacity || size >= capacity_ / 2) return;
  const size_t capacity = std::max(size + size / kGrowthDivisor, kMinCapacity);
  try {
    const std::string what = absl::StrCat("bank \"", name_, "\" shrinking");
    if (env_.budget != nullptr &&
        !reservation_
             .Resize(MemoryBytesLocked() + BytesForCapacity(capacity), what)
             .ok()) {
      return;  // no room for the copy now; try after a later removal
    }
    ReallocateLocked(capacity);
  } catch (const std::bad_alloc&) {
    // Keep the larger buffers; the contents are intact.
  }
  if (env_.budget != nullptr) {
    (void)reservation_.Resize(MemoryBytesLocked(), "");  // shrinks
  }
}

void MemoryBank::ReallocateLocked(size_t capacity) {
  // Copies first, swaps after: a bad_alloc while copying leaves every
  // buffer as it was; swapping cannot fail.
  auto values = Reallocated(values_, capacity * options_.dim);
  auto inverse_norms = Reallocated(inverse_norms_, capacity);
  auto ids = Reallocated(ids_, capacity);
  auto nearest_score = Reallocated(nearest_score_, capacity);
  auto nearest_id = Reallocated(nearest_id_, capacity);
  auto pending = Reallocated(pending_, capacity);
  auto stamp = Reallocated(stamp_, capacity);
  RebuildIndex(&column_of_, IndexEntriesFor(capacity));
  values_.swap(values);
  inverse_norms_.swap(inverse_norms);
  ids_.swap(ids);
  nearest_score_.swap(nearest_score);
  nearest_id_.swap(nearest_id);
  pending_.swap(pending);
  stamp_.swap(stamp);
  capacity_ = capacity;
}

uint64_t MemoryBank::BytesForCapacity(size_t capacity) const {
  return capacity * (uint64_t{options_.dim} * sizeof(float) + kColumnOverhead) +
         IndexSlotsFor(IndexEntriesFor(capacity)) * kIndexSlotBytes;
}

void MemoryBank::NoteWrite() {
  last_write_nanos_.store(SteadyNanos(), std::memory_order_relaxed);
}

uint64_t MemoryBank::separation_pending() const {
  ReaderLock lock(&mu_);
  return pending_count_;
}

bool MemoryBank::WrittenWithin(std::chrono::nanoseconds period) const {
  return SteadyNanos() - last_write_nanos_.load(std::memory_order_relaxed) <
         period.count();
}

bool MemoryBank::RefreshedWithin(std::chrono::nanoseconds period) const {
  return SteadyNanos() - last_refresh_nanos_.load(std::memory_order_relaxed) <
         period.count();
}

size_t MemoryBank::RefreshSeparation(size_t max_patterns,
                                     const std::atomic<bool>* stop) {
  if (max_patterns == 0) return 0;
  const Eigen::Index dim = options_.dim;
  std::vector<Eigen::Index> targets;
  std::vector<uint64_t> stamps;  // of every column when first scored
  Eigen::MatrixXf target_values;
  Eigen::VectorXf target_scale;
  NearestUpdate update;
  uint64_t generation = 0;
  MemoryReservation scratch;
  // Pick the targets and copy their values, so the scan can release the
  // lock between blocks. A removal moves columns: start again.
  bool restart = true;
  Eigen::Index next_row = 0;
  while (true) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) return 0;
    ReaderLock lock(&mu_);
    if (restart || layout_generation_ != generation) {
      restart = false;
      targets.clear();
      for (Eigen::Index c = 0;
           c < SizeLocked() && targets.size() < max_patterns; ++c) {
        if (pending_[static_cast<size_t>(c)] != 0) targets.push_back(c);
      }
      if (targets.empty()) return 0;
      // The scratch below: stamps, the update, the targets' values.
      const uint64_t scratch_bytes =
          ids_.size() * (sizeof(uint64_t) + sizeof(float) + sizeof(PatternId) +
                         sizeof(char)) +
          targets.size() * (uint64_t{options_.dim} + 16) * sizeof(float);
      if (env_.budget != nullptr) {
        absl::StatusOr<MemoryReservation> reserved =
            env_.budget->Reserve(scratch_bytes, "separation refresh");
        if (!reserved.ok()) return 0;  // try again when memory frees up
        scratch = std::move(reserved).value();
      }
      stamps.assign(stamp_.begin(), stamp_.end());
      CopyTargetsLocked(targets, &target_values, &target_scale);
      update.Reset(targets.size(), ids_.size());
      generation = layout_generation_;
      next_row = 0;
    }
    // Columns appended since the targets were picked are pending and will
    // score against the targets themselves: scan the columns seen then.
    const auto rows_known = static_cast<Eigen::Index>(stamps.size());
    if (next_row >= rows_known) break;
    const auto rows = static_cast<Eigen::Index>(std::max<uint64_t>(
        64,
        kMacsPerLockedBlock / (static_cast<uint64_t>(dim) * targets.size())));
    const Eigen::Index end = std::min(rows_known, next_row + rows);
    ScoreRowsLocked(targets, 0, target_values, target_scale, next_row, end,
                    &update);
    next_row = end;
  }
  WriterLock lock(&mu_);
  if (layout_generation_ != generation) return 0;  // moved just now
  ApplyNearestLocked(targets, stamps, &update);
  size_t refreshed = 0;
  for (const Eigen::Index c : targets) {
    if (update.applied[static_cast<size_t>(c)] != 0) ++refreshed;
  }
  RefreshSummaryLocked();
  last_refresh_nanos_.store(SteadyNanos(), std::memory_order_relaxed);
  return refreshed;
}

absl::StatusOr<std::vector<float>> MemoryBank::Get(PatternId id) const {
  std::vector<float> out;
  HOPFIELD_RETURN_IF_ERROR(GetMany({id}, &out));
  return out;
}

absl::Status MemoryBank::GetMany(absl::Span<const PatternId> ids,
                                 std::vector<float>* out) const {
  const size_t dim = options_.dim;
  std::vector<float> result(ids.size() * dim);
  HOPFIELD_RETURN_IF_ERROR(
      VisitPatterns(ids, [&](size_t i, absl::Span<const float> values) {
        std::copy(values.begin(), values.end(),
                  result.begin() + static_cast<std::ptrdiff_t>(i * dim));
      }));
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status MemoryBank::VisitPatterns(
    absl::Span<const PatternId> ids,
    const std::function<void(size_t, absl::Span<const float>)>& fn) const {
  const size_t dim = options_.dim;
  ReaderLock lock(&mu_);
  for (const PatternId id : ids) {
    if (!column_of_.contains(id)) {
      return absl::NotFoundError(absl::StrCat(
          "pattern id ", id, " not found in bank \"", name_, "\""));
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto column = static_cast<size_t>(column_of_.find(ids[i])->second);
    fn(i, absl::Span<const float>(values_.data() + column * dim, dim));
  }
  return absl::OkStatus();
}

bool MemoryBank::Contains(PatternId id) const {
  ReaderLock lock(&mu_);
  return column_of_.contains(id);
}

uint64_t MemoryBank::size() const {
  ReaderLock lock(&mu_);
  return ids_.size();
}

BankStats MemoryBank::Stats() const {
  ReaderLock lock(&mu_);
  BankStats stats;
  stats.pattern_count = ids_.size();
  stats.memory_bytes = MemoryBytesLocked();
  stats.min_separation = min_separation_;
  stats.separation_pending = pending_count_;
  stats.max_norm = max_norm_;
  const double rule_norm =
      options_.similarity == Similarity::kCosine ? 1.0 : max_norm_;
  stats.effective_beta =
      options_.beta > 0.0f ? static_cast<double>(options_.beta)
                           : AutoBeta(stats.pattern_count,
                                      min_separation_.value_or(0.0), rule_norm);
  if (min_separation_.has_value()) {
    stats.log_capacity = LogCapacity(stats.effective_beta, options_.dim,
                                     *min_separation_, rule_norm);
  } else {
    // With fewer than two patterns nothing competes: report the capacity the
    // dimension alone allows (an optimal code) so utilisation stays small.
    stats.log_capacity = LogCapacity(stats.effective_beta, options_.dim, 2.0);
  }
  stats.capacity_utilization =
      CapacityUtilization(stats.pattern_count, stats.log_capacity);
  return stats;
}

absl::StatusOr<MemoryBank::Neighbour> MemoryBank::PatternSeparation(
    PatternId id) const {
  ReaderLock lock(&mu_);
  const auto it = column_of_.find(id);
  if (it == column_of_.end()) {
    return absl::NotFoundError(
        absl::StrCat("pattern id ", id, " not found in bank \"", name_, "\""));
  }
  if (ids_.size() < 2) {
    return absl::FailedPreconditionError(
        "separation needs at least two stored patterns");
  }
  const auto column = static_cast<size_t>(it->second);
  return Neighbour{SelfScoreLocked(it->second) - nearest_score_[column],
                   nearest_id_[column]};
}

BankView MemoryBank::ViewLocked() const {
  BankView view =
      MakeBankView(values_.data(), options_.dim, SizeLocked(),
                   inverse_norms_.data(), ids_, options_.similarity);
  view.min_separation = min_separation_;
  view.max_norm = max_norm_;
  return view;
}

void MemoryBank::RemoveColumnLocked(Eigen::Index column) {
  const size_t dim = options_.dim;
  const auto col = static_cast<size_t>(column);
  const size_t last = ids_.size() - 1;
  column_of_.erase(ids_[col]);
  ++layout_generation_;
  if (pending_[col] != 0) --pending_count_;
  if (col != last) {
    std::copy_n(values_.begin() + static_cast<std::ptrdiff_t>(last * dim), dim,
                values_.begin() + static_cast<std::ptrdiff_t>(col * dim));
    inverse_norms_[col] = inverse_norms_[last];
    ids_[col] = ids_[last];
    nearest_score_[col] = nearest_score_[last];
    nearest_id_[col] = nearest_id_[last];
    pending_[col] = pending_[last];
    stamp_[col] = stamp_[last];
    column_of_[ids_[col]] = column;  // an existing key: no allocation
  }
  values_.resize(last * dim);
  inverse_norms_.pop_back();
  ids_.pop_back();
  nearest_score_.pop_back();
  nearest_id_.pop_back();
  pending_.pop_back();
  stamp_.pop_back();
}

void MemoryBank::ScoreRowsLocked(absl::Span<const Eigen::Index> targets,
                                 size_t first_target,
                                 const Eigen::MatrixXf& target_values,
                                 const Eigen::VectorXf& target_scale,
                                 Eigen::Index begin, Eigen::Index end,
                                 NearestUpdate* out) const {
  const Eigen::Index dim = options_.dim;
  const bool cosine = options_.similarity == Similarity::kCosine;
  const Eigen::Map<const Eigen::MatrixXf> patterns(values_.data(), dim,
                                                   SizeLocked());
  const auto t = static_cast<Eigen::Index>(targets.size());
  // Blocks of rows x targets scores of ~1 MiB stay in cache.
  const Eigen::Index row_block = std::max<Eigen::Index>(
      64, (Eigen::Index{1} << 18) / std::max<Eigen::Index>(1, t));
  Eigen::MatrixXf scores;
  for (Eigen::Index row = begin; row < end; row += row_block) {
    const Eigen::Index rows = std::min(row_block, end - row);
    scores.noalias() =
        patterns.middleCols(row, rows).transpose() * target_values;
    if (cosine) {
      const Eigen::Map<const Eigen::VectorXf> inverse_norms(
          inverse_norms_.data() + row, rows);
      scores = inverse_norms.asDiagonal() * scores * target_scale.asDiagonal();
    }
    for (Eigen::Index k = 0; k < t; ++k) {
      const Eigen::Index target = targets[static_cast<size_t>(k)];
      const size_t kk = first_target + static_cast<size_t>(k);
      const PatternId target_id = ids_[static_cast<size_t>(target)];
      for (Eigen::Index r = 0; r < rows; ++r) {
        const Eigen::Index other = row + r;
        if (other == target) continue;
        const float score = scores(r, k);
        const auto o = static_cast<size_t>(other);
        if (score > out->target_score[kk]) {
          out->target_score[kk] = score;
          out->target_id[kk] = ids_[o];
        }
        if (score > out->row_score[o]) {
          out->row_score[o] = score;
          out->row_id[o] = target_id;
        }
      }
    }
  }
}

void MemoryBank::ApplyNearestLocked(const std::vector<Eigen::Index>& targets,
                                    const std::vector<uint64_t>& stamps,
                                    NearestUpdate* update_in) {
  const NearestUpdate& update = *update_in;
  // A column is current if it was not replaced since it was scored.
  const uint64_t* const stamp = stamp_.data();
  auto current = [&stamps, stamp](size_t c) {
    return stamps.empty() || (c < stamps.size() && stamp[c] == stamps[c]);
  };
  // Targets whose result holds: not replaced, and their best neighbour not
  // replaced either (else they stay pending and are scored again).
  std::vector<char>& applied = update_in->applied;
  std::fill(applied.begin(), applied.end(), 0);
  for (size_t k = 0; k < targets.size(); ++k) {
    const auto c = static_cast<size_t>(targets[k]);
    if (!current(c)) continue;
    if (update.target_id[k] != 0) {
      const auto it = column_of_.find(update.target_id[k]);
      if (it == column_of_.end() || !current(static_cast<size_t>(it->second))) {
        continue;
      }
    }
    applied[c] = 1;
    nearest_score_[c] = update.target_score[k];
    nearest_id_[c] = update.target_id[k];
    if (pending_[c] != 0) {
      pending_[c] = 0;
      --pending_count_;
    }
  }
  // The targets may be nearer to other up-to-date columns than their current
  // nearest neighbours (a pending column learns everything when processed).
  for (size_t o = 0; o < update.row_score.size(); ++o) {
    if (applied[o] != 0 || pending_[o] != 0 || !current(o) ||
        !(update.row_score[o] > nearest_score_[o])) {
      continue;
    }
    const auto it = column_of_.find(update.row_id[o]);
    if (it == column_of_.end() ||
        applied[static_cast<size_t>(it->second)] == 0) {
      continue;  // the target's own result did not hold
    }
    nearest_score_[o] = update.row_score[o];
    nearest_id_[o] = update.row_id[o];
  }
}

void MemoryBank::MarkPendingLocked(const std::vector<Eigen::Index>& targets) {
  for (const Eigen::Index c : targets) {
    char& pending = pending_[static_cast<size_t>(c)];
    if (pending == 0) {
      pending = 1;
      ++pending_count_;
    }
  }
  if (!targets.empty() && env_.on_pending) env_.on_pending();
}

void MemoryBank::UpdateOrMarkLocked(const std::vector<Eigen::Index>& targets) {
  if (env_.separation_update == SeparationUpdate::kSynchronous &&
      !targets.empty()) {
    try {
      NearestUpdate update;
      update.Reset(targets.size(), ids_.size());
      Eigen::MatrixXf values;
      Eigen::VectorXf scale;
      // Chunks of targets, so the copy of their values stays small.
      for (size_t chunk = 0; chunk < targets.size();
           chunk += static_cast<size_t>(kTargetChunk)) {
        const absl::Span<const Eigen::Index> part =
            absl::MakeConstSpan(targets).subspan(
                chunk, static_cast<size_t>(kTargetChunk));
        CopyTargetsLocked(part, &values, &scale);
        ScoreRowsLocked(part, chunk, values, scale, 0, SizeLocked(), &update);
      }
      ApplyNearestLocked(targets, {}, &update);
      return;
    } catch (const std::bad_alloc&) {
      // The write itself is complete; its statistics wait for
      // RefreshSeparation instead (separation_pending says so).
    }
  }
  MarkPendingLocked(targets);
}

void MemoryBank::CopyTargetsLocked(absl::Span<const Eigen::Index> targets,
                                   Eigen::MatrixXf* values,
                                   Eigen::VectorXf* scale) const {
  const Eigen::Index dim = options_.dim;
  const auto t = static_cast<Eigen::Index>(targets.size());
  values->resize(dim, t);
  scale->resize(t);
  for (Eigen::Index k = 0; k < t; ++k) {
    const Eigen::Index c = targets[static_cast<size_t>(k)];
    values->col(k) =
        Eigen::Map<const Eigen::VectorXf>(values_.data() + c * dim, dim);
    (*scale)[k] = options_.similarity == Similarity::kCosine
                      ? inverse_norms_[static_cast<size_t>(c)]
                      : 1.0f;
  }
}

void MemoryBank::NearestUpdate::Reset(size_t targets, size_t rows) {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  target_score.assign(targets, kNone);
  target_id.assign(targets, 0);
  row_score.assign(rows, kNone);
  row_id.assign(rows, 0);
  applied.assign(rows, 0);
}

void MemoryBank::RefreshSummaryLocked() {
  const Eigen::Index size = SizeLocked();
  float min_inverse_norm = std::numeric_limits<float>::infinity();
  for (const float inverse : inverse_norms_) {
    if (inverse > 0.0f) min_inverse_norm = std::min(min_inverse_norm, inverse);
  }
  max_norm_ = size > 0 && std::isfinite(min_inverse_norm)
                  ? 1.0 / static_cast<double>(min_inverse_norm)
                  : 0.0;
  if (size < 2) {
    min_separation_.reset();
    return;
  }
  double min_separation = std::numeric_limits<double>::infinity();
  for (Eigen::Index c = 0; c < size; ++c) {
    if (pending_[static_cast<size_t>(c)] != 0) continue;
    min_separation = std::min(
        min_separation,
        SelfScoreLocked(c) -
            static_cast<double>(nearest_score_[static_cast<size_t>(c)]));
  }
  if (std::isfinite(min_separation)) {
    min_separation_ = min_separation;
  } else {
    min_separation_.reset();  // nothing processed yet
  }
}

double MemoryBank::SelfScoreLocked(Eigen::Index column) const {
  if (options_.similarity == Similarity::kCosine) return 1.0;
  const auto inverse =
      static_cast<double>(inverse_norms_[static_cast<size_t>(column)]);
  return inverse > 0.0 ? 1.0 / (inverse * inverse) : 0.0;
}

uint64_t MemoryBank::MemoryBytesLocked() const {
  return values_.capacity() * sizeof(float) +
         inverse_norms_.capacity() * sizeof(float) +
         ids_.capacity() * sizeof(PatternId) +
         nearest_score_.capacity() * sizeof(float) +
         nearest_id_.capacity() * sizeof(PatternId) + pending_.capacity() +
         stamp_.capacity() * sizeof(uint64_t) +
         (column_of_.capacity() > 0 ? column_of_.capacity() * kIndexSlotBytes
                                    : 0);
}

}  // namespace hopfield
