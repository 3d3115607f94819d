#include "core/memory_bank.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

#include "core/capacity.h"
#include "core/status_macros.h"

namespace hopfield {
namespace {

// Block sizes of the nearest-neighbour update: targets per chunk and stored
// columns per block, so a block of scores (kRowBlock x kTargetChunk floats,
// 1 MiB) stays in cache, and a background refresh notices a stop request
// after at most one block.
constexpr Eigen::Index kTargetChunk = 256;
constexpr Eigen::Index kRowBlock = 1024;
constexpr uint64_t kMaxPatterns = std::numeric_limits<uint32_t>::max();

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
    std::string name, const BankOptions& options, SeparationUpdate update,
    std::function<void()> on_pending) {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  return std::unique_ptr<MemoryBank>(new MemoryBank(
      std::move(name), options.Resolved(), update, std::move(on_pending)));
}

MemoryBank::MemoryBank(std::string name, const BankOptions& options,
                       SeparationUpdate update,
                       std::function<void()> on_pending)
    : name_(std::move(name)),
      options_(options),
      update_(update),
      on_pending_(std::move(on_pending)) {}

absl::StatusOr<std::vector<PatternId>> MemoryBank::Add(
    absl::Span<const PatternId> ids, absl::Span<const float> values) {
  const size_t dim = options_.dim;
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
    const float norm = pattern.norm();
    if (!std::isfinite(norm)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "patterns[", i, "]: norm overflows float32, expected a finite norm"));
    }
    if (norm == 0.0f && options_.similarity == Similarity::kCosine) {
      return absl::InvalidArgumentError(
          absl::StrCat("patterns[", i,
                       "]: expected a non-zero norm under cosine similarity, "
                       "got the zero vector"));
    }
    inverse_norms[i] = norm > 0.0f ? 1.0f / norm : 0.0f;
  }
  absl::flat_hash_map<PatternId, size_t> first_index;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == 0) continue;
    const auto [it, inserted] = first_index.emplace(ids[i], i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "patterns[", i, "].id: id ", ids[i], " repeats patterns[", it->second,
          "].id; expected distinct ids within a batch"));
    }
  }

  WriterLock lock(&mu_);
  size_t replaced = 0;
  for (const PatternId id : ids)
    if (id != 0 && column_of_.contains(id)) ++replaced;
  if (ids_.size() - replaced + ids.size() > kMaxPatterns) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "bank \"", name_, "\" would hold ", ids_.size() - replaced + ids.size(),
        " patterns, the limit is ", kMaxPatterns));
  }
  // Assign fresh ids: one above the largest ever stored or given. next == 0
  // means the id space is used up (an id of 2^64 - 1 was stored).
  std::vector<PatternId> assigned(ids.begin(), ids.end());
  PatternId next = next_id_;
  for (const PatternId id : ids) {
    if (id != 0 && next != 0 && id >= next) next = id + 1;  // may wrap to 0
  }
  for (PatternId& id : assigned) {
    if (id != 0) continue;
    if (next == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "bank \"", name_,
          "\": no free id above the largest stored id; pass explicit ids"));
    }
    id = next++;
  }

  // Apply. Replaced patterns leave first; then the batch is appended and the
  // separation statistics updated in one pass.
  absl::flat_hash_set<PatternId> removed;
  for (const PatternId id : ids) {
    if (id == 0) continue;
    const auto it = column_of_.find(id);
    if (it == column_of_.end()) continue;
    RemoveColumnLocked(it->second);
    removed.insert(id);
  }
  const Eigen::Index first_new = SizeLocked();
  values_.insert(values_.end(), values.begin(), values.end());
  inverse_norms_.insert(inverse_norms_.end(), inverse_norms.begin(),
                        inverse_norms.end());
  for (const PatternId id : assigned) {
    column_of_[id] = static_cast<Eigen::Index>(ids_.size());
    ids_.push_back(id);
  }
  nearest_score_.resize(ids_.size(), -std::numeric_limits<float>::infinity());
  nearest_id_.resize(ids_.size(), 0);
  pending_.resize(ids_.size(), 0);
  NoteWrite();
  next_id_ = next;

  std::vector<Eigen::Index> targets;
  for (Eigen::Index c = 0; c < first_new && !removed.empty(); ++c) {
    if (removed.contains(nearest_id_[static_cast<size_t>(c)])) {
      targets.push_back(c);
    }
  }
  for (Eigen::Index c = first_new; c < SizeLocked(); ++c) targets.push_back(c);
  UpdateOrMarkLocked(targets);
  RefreshSummaryLocked();
  return assigned;
}

uint64_t MemoryBank::Remove(absl::Span<const PatternId> ids) {
  WriterLock lock(&mu_);
  absl::flat_hash_set<PatternId> removed;
  for (const PatternId id : ids) {
    const auto it = column_of_.find(id);
    if (it == column_of_.end()) continue;
    RemoveColumnLocked(it->second);
    removed.insert(id);
  }
  if (removed.empty()) return 0;
  NoteWrite();
  std::vector<Eigen::Index> targets;
  for (Eigen::Index c = 0; c < SizeLocked(); ++c) {
    if (removed.contains(nearest_id_[static_cast<size_t>(c)])) {
      targets.push_back(c);
    }
  }
  UpdateOrMarkLocked(targets);
  RefreshSummaryLocked();
  return removed.size();
}

namespace {

// Steady-clock time in nanoseconds, for the lock-free last-write stamp.
int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

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

size_t MemoryBank::RefreshSeparation(size_t max_patterns,
                                     const std::atomic<bool>* stop) {
  std::vector<Eigen::Index> targets;
  uint64_t generation = 0;
  NearestUpdate update;
  {
    ReaderLock lock(&mu_);
    if (pending_count_ == 0 || max_patterns == 0) return 0;
    for (Eigen::Index c = 0; c < SizeLocked() && targets.size() < max_patterns;
         ++c) {
      if (pending_[static_cast<size_t>(c)] != 0) targets.push_back(c);
    }
    generation = layout_generation_;
    if (!ComputeNearestLocked(targets, stop, &update)) return 0;
  }
  WriterLock lock(&mu_);
  // Appends since the scoring leave these columns in place (the new columns
  // are pending and will teach the targets about themselves); removals move
  // columns, so the result would land on the wrong ones: drop it.
  if (layout_generation_ != generation) return 0;
  size_t refreshed = 0;
  for (const Eigen::Index c : targets) {
    if (pending_[static_cast<size_t>(c)] != 0) ++refreshed;
  }
  ApplyNearestLocked(targets, update);
  RefreshSummaryLocked();
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
  ReaderLock lock(&mu_);
  std::vector<float> result(ids.size() * dim);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto it = column_of_.find(ids[i]);
    if (it == column_of_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "pattern id ", ids[i], " not found in bank \"", name_, "\""));
    }
    const auto offset = static_cast<size_t>(it->second) * dim;
    std::copy_n(values_.begin() + static_cast<std::ptrdiff_t>(offset), dim,
                result.begin() + static_cast<std::ptrdiff_t>(i * dim));
  }
  *out = std::move(result);
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
    column_of_[ids_[col]] = column;
  }
  values_.resize(last * dim);
  inverse_norms_.pop_back();
  ids_.pop_back();
  nearest_score_.pop_back();
  nearest_id_.pop_back();
  pending_.pop_back();
}

bool MemoryBank::ComputeNearestLocked(const std::vector<Eigen::Index>& targets,
                                      const std::atomic<bool>* stop,
                                      NearestUpdate* out) const {
  const Eigen::Index size = SizeLocked();
  const Eigen::Index dim = options_.dim;
  const bool cosine = options_.similarity == Similarity::kCosine;
  const Eigen::Map<const Eigen::MatrixXf> patterns(values_.data(), dim, size);
  const Eigen::Map<const Eigen::VectorXf> inverse_norms(inverse_norms_.data(),
                                                        size);
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  NearestUpdate& update = *out;
  update.target_score.assign(targets.size(), kNone);
  update.target_id.assign(targets.size(), 0);
  update.row_score.assign(static_cast<size_t>(size), kNone);
  update.row_id.assign(static_cast<size_t>(size), 0);
  Eigen::MatrixXf chunk_patterns;
  Eigen::MatrixXf scores;
  for (size_t chunk = 0; chunk < targets.size();
       chunk += static_cast<size_t>(kTargetChunk)) {
    const size_t count =
        std::min(targets.size() - chunk, static_cast<size_t>(kTargetChunk));
    const auto t = static_cast<Eigen::Index>(count);
    chunk_patterns.resize(dim, t);
    Eigen::VectorXf target_scale(t);
    for (Eigen::Index k = 0; k < t; ++k) {
      const Eigen::Index c = targets[chunk + static_cast<size_t>(k)];
      chunk_patterns.col(k) = patterns.col(c);
      target_scale[k] = cosine ? inverse_norms[c] : 1.0f;
    }
    for (Eigen::Index row = 0; row < size; row += kRowBlock) {
      if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
        return false;
      }
      const Eigen::Index rows = std::min(kRowBlock, size - row);
      scores.noalias() =
          patterns.middleCols(row, rows).transpose() * chunk_patterns;
      if (cosine) {
        scores = inverse_norms.segment(row, rows).asDiagonal() * scores *
                 target_scale.asDiagonal();
      }
      for (Eigen::Index k = 0; k < t; ++k) {
        const size_t kk = chunk + static_cast<size_t>(k);
        const Eigen::Index target = targets[kk];
        const PatternId target_id = ids_[static_cast<size_t>(target)];
        for (Eigen::Index r = 0; r < rows; ++r) {
          const Eigen::Index other = row + r;
          if (other == target) continue;
          const float score = scores(r, k);
          const auto o = static_cast<size_t>(other);
          if (score > update.target_score[kk]) {
            update.target_score[kk] = score;
            update.target_id[kk] = ids_[o];
          }
          if (score > update.row_score[o]) {
            update.row_score[o] = score;
            update.row_id[o] = target_id;
          }
        }
      }
    }
  }
  return true;
}

void MemoryBank::ApplyNearestLocked(const std::vector<Eigen::Index>& targets,
                                    const NearestUpdate& update) {
  std::vector<char> is_target(update.row_score.size(), 0);
  for (size_t k = 0; k < targets.size(); ++k) {
    const auto c = static_cast<size_t>(targets[k]);
    is_target[c] = 1;
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
    if (is_target[o] == 0 && pending_[o] == 0 &&
        update.row_score[o] > nearest_score_[o]) {
      nearest_score_[o] = update.row_score[o];
      nearest_id_[o] = update.row_id[o];
    }
  }
}

void MemoryBank::UpdateOrMarkLocked(const std::vector<Eigen::Index>& targets) {
  if (update_ == SeparationUpdate::kSynchronous) {
    NearestUpdate update;
    ComputeNearestLocked(targets, nullptr, &update);
    ApplyNearestLocked(targets, update);
    return;
  }
  for (const Eigen::Index c : targets) {
    char& pending = pending_[static_cast<size_t>(c)];
    if (pending == 0) {
      pending = 1;
      ++pending_count_;
    }
  }
  if (!targets.empty() && on_pending_) on_pending_();
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
         column_of_.capacity() *
             (sizeof(std::pair<PatternId, Eigen::Index>) + 1);
}

}  // namespace hopfield
