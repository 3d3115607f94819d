#include "core/memory_bank.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/capacity.h"
#include "core/status_macros.h"
#include "core/worker_pool.h"

namespace hopfield {
namespace {

// Removes the elements of `v` for which pred holds.
template <typename Pred>
void EraseIf(std::vector<PatternId>* v, const Pred& pred) {
  v->erase(std::remove_if(v->begin(), v->end(), pred), v->end());
}

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
// id, pending mark, write stamp, unindexed-list slot and position.
constexpr uint64_t kColumnOverhead =
    sizeof(float) + sizeof(PatternId) + sizeof(float) + sizeof(PatternId) +
    sizeof(char) + sizeof(uint64_t) + sizeof(PatternId) + sizeof(uint32_t);
// Patterns whose keys one block of index work copies under a reader lock.
constexpr size_t kIndexChunk = 1024;
// An index is rebuilt when its tombstones outnumber its live entries (plus
// this slack, so small banks do not rebuild on every few removals).
constexpr uint64_t kTombstoneSlack = 1024;
// Keys a search index's projection is fitted to (at least the key dimension,
// so that the sample spans the space).
constexpr size_t kProjectionSample = 4096;
// Index candidates an index-derived separation estimate looks at.
constexpr size_t kEstimateNeighbours = 8;
// pending_ values: 0 exact; awaiting RefreshSeparation, and either awaiting
// an index-derived estimate or holding one.
constexpr char kAwaitsEstimate = 1;
constexpr char kEstimated = 2;
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

// The largest norm a pattern or key may have: its squared norm (its score
// against itself) must stay finite in float32.
double NormLimit() {
  return std::sqrt(static_cast<double>(std::numeric_limits<float>::max()));
}

// Columns per key product (see ComputeKeys).
constexpr Eigen::Index kKeyColumns = 8;

// The keys Φ(x) of `count` patterns (dim floats each, contiguous) under a
// learned `map`, and their inverse norms (computed in double; 0 for a key too
// small to normalise). Errors: INVALID_ARGUMENT naming the pattern (as
// name(i)) when its key's norm reaches NormLimit().
absl::Status ComputeKeys(const FeatureMap& map, const float* values,
                         size_t count,
                         const std::function<std::string(size_t)>& name,
                         Eigen::MatrixXf* keys,
                         std::vector<float>* inverse_norms) {
  const auto n = static_cast<Eigen::Index>(count);
  const auto d = static_cast<Eigen::Index>(map.input_dim());
  const Eigen::Map<const Eigen::MatrixXf> x(values, d, n);
  keys->resize(static_cast<Eigen::Index>(map.feature_dim()), n);
  // Always products of kKeyColumns columns (the last chunk zero-padded):
  // Eigen's kernels round differently by shape (one column goes through
  // its matrix-vector kernel), and a key must come out bit for bit the
  // same whether its pattern was stored alone, in a batch, re-keyed by a
  // map change or loaded at a restart.
  Eigen::MatrixXf chunk(d, kKeyColumns);
  Eigen::MatrixXf out(keys->rows(), kKeyColumns);
  for (Eigen::Index c = 0; c < n; c += kKeyColumns) {
    const Eigen::Index m = std::min(kKeyColumns, n - c);
    chunk.leftCols(m) = x.middleCols(c, m);
    if (m < kKeyColumns) chunk.rightCols(kKeyColumns - m).setZero();
    map.Apply(chunk, out);
    keys->middleCols(c, m) = out.leftCols(m);
  }
  inverse_norms->resize(count);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double norm = keys->col(i).cast<double>().norm();
    if (!(norm < NormLimit())) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(static_cast<size_t>(i)),
                       ": its feature vector under feature map version ",
                       map.version(), " has norm ", norm, ", expected < ",
                       NormLimit(), " (scores must stay finite in float32)"));
    }
    (*inverse_norms)[static_cast<size_t>(i)] = KeyInverseNorm(norm);
  }
  return absl::OkStatus();
}

// How a batch's errors name pattern i.
std::string BatchName(size_t i) { return absl::StrCat("patterns[", i, "]"); }

// A copy of `v` with capacity `capacity` (>= v.size()).
template <typename Vector>
Vector Reallocated(const Vector& v, size_t capacity) {
  Vector fresh;
  fresh.reserve(capacity);
  fresh.assign(v.begin(), v.end());
  return fresh;
}

}  // namespace

float KeyInverseNorm(double norm) {
  return norm >= 1e-30 ? static_cast<float>(1.0 / norm) : 0.0f;
}

double MaxNormFromInverse(absl::Span<const float> inverse_norms) {
  float min_inverse_norm = std::numeric_limits<float>::infinity();
  for (const float inverse : inverse_norms) {
    if (inverse > 0.0f) min_inverse_norm = std::min(min_inverse_norm, inverse);
  }
  return std::isfinite(min_inverse_norm)
             ? 1.0 / static_cast<double>(min_inverse_norm)
             : 0.0;
}

BankView MakeBankView(const float* patterns, Eigen::Index dim,
                      Eigen::Index size, const float* inverse_norms,
                      absl::Span<const PatternId> ids, Similarity similarity) {
  return BankView{Eigen::Map<const Eigen::MatrixXf>(patterns, dim, size),
                  Eigen::Map<const Eigen::VectorXf>(inverse_norms, size),
                  ids,
                  similarity,
                  std::nullopt,
                  0.0,
                  Eigen::Map<const Eigen::MatrixXf>(patterns, dim, size),
                  Eigen::Map<const Eigen::VectorXf>(inverse_norms, size),
                  nullptr,
                  0.0,
                  nullptr,
                  nullptr,
                  {},
                  nullptr,
                  nullptr,
                  nullptr,
                  0};
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
  if (env.index_build_threads == 0) {
    return absl::InvalidArgumentError("index_build_threads must be >= 1");
  }
  return std::unique_ptr<MemoryBank>(
      new MemoryBank(std::move(name), options.Resolved(), std::move(env)));
}

absl::StatusOr<std::unique_ptr<MemoryBank>> MemoryBank::Load(
    std::string name, const BankOptions& options, BankEnvironment env) {
  if (env.storage == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load bank \"", name, "\": no storage"));
  }
  HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<MemoryBank> bank,
                            Create(std::move(name), options, std::move(env)));
  uint64_t pending = 0;
  {
    WriterLock lock(&bank->mu_);
    if (absl::Status loaded = bank->LoadLocked(); !loaded.ok()) {
      return absl::Status(
          loaded.code(),
          absl::StrCat("bank \"", bank->name(), "\": ", loaded.message()));
    }
    pending = bank->pending_count_ + bank->IndexPendingLocked();
  }
  if (bank->env_.separation_update == SeparationUpdate::kSynchronous) {
    bank->MaintainIndexNow();
  } else if (pending > 0 && bank->env_.on_pending) {
    bank->env_.on_pending();
  }
  return bank;
}

absl::Status MemoryBank::LoadLocked() {
  const Storage& storage = *env_.storage;
  const BankIncarnation incarnation = env_.incarnation;
  const size_t dim = options_.dim;
  BankState state;
  HOPFIELD_ASSIGN_OR_RETURN(
      std::optional<std::string> bytes,
      storage.ReadBlob(incarnation, BlobKind::kBankState));
  if (bytes.has_value()) {
    HOPFIELD_ASSIGN_OR_RETURN(state, DecodeBankState(*bytes));
  }
  if (state.columns > env_.max_patterns) {
    return absl::ResourceExhaustedError(
        absl::StrCat("it holds ", state.columns, " patterns, the limit is ",
                     env_.max_patterns, " patterns per bank"));
  }
  HOPFIELD_ASSIGN_OR_RETURN(
      bytes, storage.ReadBlob(incarnation, BlobKind::kFeatureMap));
  if (bytes.has_value()) {
    HOPFIELD_ASSIGN_OR_RETURN(std::shared_ptr<const FeatureMap> map,
                              DecodeFeatureMap(*bytes));
    if (map->input_dim() != dim) {
      return absl::DataLossError(
          absl::StrCat("its feature map takes ", map->input_dim(),
                       " inputs, the bank's dim is ", dim));
    }
    feature_map_ = std::move(map);
  }
  // Sized once (keys included): the columns are appended within capacity.
  HOPFIELD_RETURN_IF_ERROR(
      EnsureCapacityLocked(static_cast<size_t>(state.columns)));
  ++write_stamp_;
  const bool cosine = options_.similarity == Similarity::kCosine;
  HOPFIELD_RETURN_IF_ERROR(storage.ReadColumns(
      incarnation,
      [&](uint64_t column, uint64_t id, absl::Span<const float> values)
          ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
            if (column >= state.columns) {
              return absl::DataLossError(absl::StrCat(
                  "column ", column, " is stored but the bank counts ",
                  state.columns, " columns"));
            }
            if (values.size() != dim) {
              return absl::DataLossError(
                  absl::StrCat("column ", column, " holds ", values.size(),
                               " values, expected ", dim));
            }
            if (id == 0 || column_of_.contains(id)) {
              return absl::DataLossError(absl::StrCat(
                  "column ", column, " holds id ", id,
                  id == 0 ? ", which is reserved" : ", stored twice"));
            }
            const Eigen::Map<const Eigen::VectorXf> pattern(
                values.data(), static_cast<Eigen::Index>(dim));
            const double norm = pattern.cast<double>().norm();
            if (!pattern.allFinite() || !(norm < NormLimit()) ||
                (cosine && norm == 0.0)) {
              return absl::DataLossError(absl::StrCat(
                  "column ", column, " (id ", id,
                  ") holds values no write accepts (not finite, or a norm "
                  "of ",
                  norm, ")"));
            }
            values_.insert(values_.end(), values.begin(), values.end());
            inverse_norms_.push_back(norm > 0.0 ? static_cast<float>(1.0 / norm)
                                                : 0.0f);
            ids_.push_back(id);
            nearest_score_.push_back(-std::numeric_limits<float>::infinity());
            nearest_id_.push_back(0);
            pending_.push_back(0);
            stamp_.push_back(write_stamp_);
            column_of_.emplace(id, static_cast<Eigen::Index>(column));
            unindexed_pos_.push_back(kIndexed);
            MarkUnindexedLocked(static_cast<Eigen::Index>(column));
            return absl::OkStatus();
          }));
  const size_t size = ids_.size();
  if (size != state.columns) {
    return absl::DataLossError(
        absl::StrCat("found ", size, " of its ", state.columns, " columns"));
  }
  // Keys under a learned map, in blocks.
  if (const size_t key_dim = StoredKeyDimLocked(); key_dim > 0) {
    Eigen::MatrixXf block_keys;
    std::vector<float> block_inverse_norms;
    constexpr size_t kBlock = 4096;
    for (size_t c = 0; c < size; c += kBlock) {
      const size_t n = std::min(kBlock, size - c);
      absl::Status computed = ComputeKeys(
          *feature_map_, values_.data() + c * dim, n,
          [&](size_t i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return absl::StrCat("pattern id ", ids_[c + i]);
          },
          &block_keys, &block_inverse_norms);
      if (!computed.ok()) return absl::DataLossError(computed.message());
      keys_.insert(keys_.end(), block_keys.data(),
                   block_keys.data() + n * key_dim);
      key_inverse_norms_.insert(key_inverse_norms_.end(),
                                block_inverse_norms.begin(),
                                block_inverse_norms.end());
    }
  }
  next_id_ = state.next_id == 0 ? 1 : state.next_id;
  write_seq_ = state.write_seq;
  // The separation statistics: the snapshot when it is current (a damaged
  // or stale one is only recomputed: it holds nothing a user wrote).
  absl::StatusOr<std::optional<std::string>> snapshot_bytes =
      storage.ReadBlob(incarnation, BlobKind::kSeparation);
  std::optional<SeparationSnapshot> snapshot;
  if (snapshot_bytes.ok() && snapshot_bytes->has_value()) {
    absl::StatusOr<SeparationSnapshot> decoded =
        DecodeSeparationSnapshot(**snapshot_bytes);
    if (decoded.ok() && decoded->write_seq == write_seq_ &&
        decoded->nearest_score.size() == size &&
        std::all_of(decoded->pending.begin(), decoded->pending.end(),
                    [](char p) { return p >= 0 && p <= 2; })) {
      snapshot = *std::move(decoded);
    }
  }
  if (snapshot.has_value()) {
    std::copy(snapshot->nearest_score.begin(), snapshot->nearest_score.end(),
              nearest_score_.begin());
    std::copy(snapshot->nearest_id.begin(), snapshot->nearest_id.end(),
              nearest_id_.begin());
    std::copy(snapshot->pending.begin(), snapshot->pending.end(),
              pending_.begin());
    pending_count_ = static_cast<size_t>(std::count_if(
        pending_.begin(), pending_.end(), [](char p) { return p != 0; }));
    snapshot_at_ = std::make_pair(write_seq_, pending_count_);
  } else {
    std::vector<Eigen::Index> targets(size);
    std::iota(targets.begin(), targets.end(), Eigen::Index{0});
    UpdateOrMarkLocked(targets);
  }
  RefreshSummaryLocked();
  // The saved search index, when it describes this very state.
  (void)LoadIndexLocked();
  return absl::OkStatus();
}

namespace {

// "<dir>/<incarnation>" for a bank's side files.
std::string SideFileBase(const std::string& dir, BankIncarnation incarnation) {
  return absl::StrCat(dir, "/", incarnation);
}

// Writes `bytes` to `path` + ".tmp" and renames it over `path`.
absl::Status ReplaceFile(const std::string& path, absl::string_view bytes) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) {
      return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", temporary, ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MemoryBank::PersistIndex() {
  if (env_.storage == nullptr) return absl::OkStatus();
  const std::string dir = env_.storage->SideFileDirectory();
  if (dir.empty()) return absl::OkStatus();
  {
    // Tombstones owed by removals go in first: they need no new entries,
    // and without them the saved graph would not match the bank.
    WriterLock lock(&mu_);
    if (!closed()) ApplyIndexDeletionsLocked();
  }
  // The reader lock keeps the index as the bank's state describes it: with
  // nothing pending, every change to it (a removal's tombstone, a rebuild's
  // swap) needs the writer lock.
  ReaderLock lock(&mu_);
  if (closed() || index_ == nullptr || index_map_ != feature_map_ ||
      IndexPendingLocked() != 0 || !index_deletions_.empty() ||
      !index_maybe_deletions_.empty()) {
    return absl::OkStatus();
  }
  // The state the files describe must be durable: after a failed sync the
  // last writes may be lost, and a later write would reuse their write
  // count, so a saved index could be taken for a state it never saw.
  HOPFIELD_ASSIGN_OR_RETURN(const uint64_t barrier,
                            env_.storage->Apply(StorageBatch()));
  HOPFIELD_RETURN_IF_ERROR(env_.storage->WaitDurable(barrier));
  const std::string base = SideFileBase(dir, env_.incarnation);
  const std::string graph = base + ".hnsw";
  HOPFIELD_RETURN_IF_ERROR(index_->Save(graph + ".tmp"));
  HOPFIELD_ASSIGN_OR_RETURN(const FileDigest digest,
                            DigestFile(graph + ".tmp"));
  IndexMeta meta;
  meta.write_seq = write_seq_;
  meta.map_version = feature_map_->version();
  meta.built_at = index_built_at_;
  meta.projection = index_->projection();
  meta.file_bytes = digest.bytes;
  meta.file_hash = digest.hash;
  // The graph first: a crash between the renames leaves an old meta whose
  // digest does not match, and the index is rebuilt.
  std::error_code error;
  std::filesystem::rename(graph + ".tmp", graph, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", graph, ".tmp: ", error.message()));
  }
  return ReplaceFile(base + ".meta", EncodeIndexMeta(meta));
}

bool MemoryBank::LoadIndexLocked() {
  const std::string dir = env_.storage->SideFileDirectory();
  if (dir.empty() || !WantsIndexLocked()) return false;
  const std::string base = SideFileBase(dir, env_.incarnation);
  std::string bytes;
  {
    std::ifstream in(base + ".meta", std::ios::binary);
    if (!in) return false;
    bytes.assign(std::istreambuf_iterator<char>(in),
                 std::istreambuf_iterator<char>());
  }
  absl::StatusOr<IndexMeta> meta = DecodeIndexMeta(bytes);
  // Saved at another state of the bank: stale (the refresher rebuilds).
  if (!meta.ok() || meta->write_seq != write_seq_ ||
      meta->map_version != feature_map_->version()) {
    return false;
  }
  const std::string graph = base + ".hnsw";
  absl::StatusOr<FileDigest> digest = DigestFile(graph);
  if (!digest.ok() || digest->bytes != meta->file_bytes ||
      digest->hash != meta->file_hash) {
    return false;
  }
  absl::StatusOr<std::unique_ptr<AnnIndex>> loaded =
      AnnIndex::Load(graph, static_cast<uint32_t>(KeysLocked().rows()),
                     IndexOptions(), env_.budget, std::move(meta->projection));
  if (!loaded.ok() || (*loaded)->size() != ids_.size()) return false;
  for (const PatternId id : ids_) {
    if (!(*loaded)->Contains(id)) return false;
  }
  index_ = *std::move(loaded);
  index_map_ = feature_map_;
  index_built_at_ = static_cast<size_t>(meta->built_at);
  for (Eigen::Index c = 0; c < SizeLocked(); ++c) MarkIndexedLocked(c);
  return true;
}

absl::Status MemoryBank::PersistSeparation() {
  if (env_.storage == nullptr) return absl::OkStatus();
  // One at a time (the refresher and a shutdown may both call), so the
  // stored snapshot and snapshot_at_ agree.
  const std::lock_guard<std::mutex> persisting(persist_mu_);
  std::pair<uint64_t, size_t> at;
  {
    // Applied under the reader lock: Close (the writer lock) cannot slip
    // between the copy and the write, so nothing lands in a deleted
    // incarnation; writers wait for the copy and one log append.
    ReaderLock lock(&mu_);
    at = std::make_pair(write_seq_, pending_count_);
    if (closed() || snapshot_at_ == at) return absl::OkStatus();
    SeparationSnapshot snapshot;
    snapshot.write_seq = write_seq_;
    snapshot.nearest_score = nearest_score_;
    snapshot.nearest_id = nearest_id_;
    snapshot.pending = pending_;
    StorageBatch batch;
    batch.PutBlob(env_.incarnation, BlobKind::kSeparation,
                  EncodeSeparationSnapshot(snapshot));
    HOPFIELD_RETURN_IF_ERROR(env_.storage->Apply(batch).status());
  }
  WriterLock lock(&mu_);
  snapshot_at_ = at;
  return absl::OkStatus();
}

MemoryBank::MemoryBank(std::string name, const BankOptions& options,
                       BankEnvironment env)
    : name_(std::move(name)), options_(options), env_(std::move(env)) {
  feature_map_ = FeatureMap::Identity(options_.dim);
}

absl::StatusOr<std::vector<PatternId>> MemoryBank::Add(
    absl::Span<const PatternId> ids, absl::Span<const float> values) {
  uint64_t ticket = 0;
  absl::StatusOr<std::vector<PatternId>> added =
      AddUnindexed(ids, values, &ticket);
  if (!added.ok()) return added;
  HOPFIELD_RETURN_IF_ERROR(WaitLogged(ticket));
  if (env_.separation_update == SeparationUpdate::kSynchronous) {
    MaintainIndexNow();
  }
  return added;
}

absl::StatusOr<uint64_t> MemoryBank::LogLocked(StorageBatch* batch,
                                               PatternId next_id,
                                               uint64_t columns) {
  if (closed()) {
    return absl::NotFoundError(
        absl::StrCat("bank \"", name_, "\" was deleted"));
  }
  uint64_t ticket = 0;
  if (env_.storage != nullptr) {
    const BankState state{next_id, write_seq_ + 1, columns};
    batch->PutBlob(env_.incarnation, BlobKind::kBankState,
                   EncodeBankState(state));
    HOPFIELD_ASSIGN_OR_RETURN(ticket, env_.storage->Apply(*batch));
  }
  ++write_seq_;
  return ticket;
}

absl::Status MemoryBank::WaitLogged(uint64_t ticket) const {
  if (env_.storage == nullptr) return absl::OkStatus();
  return env_.storage->WaitDurable(ticket);
}

void MemoryBank::Close() {
  WriterLock lock(&mu_);
  closed_.store(true, std::memory_order_relaxed);
}

void MemoryBank::MaintainIndexNow() {
  try {
    RefreshIndex(std::numeric_limits<size_t>::max());
  } catch (const std::bad_alloc&) {
    // The patterns stay pending; retrieval scores them exactly.
  }
}

absl::StatusOr<std::vector<PatternId>> MemoryBank::AddUnindexed(
    absl::Span<const PatternId> ids, absl::Span<const float> values,
    uint64_t* ticket) {
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
    const double limit = NormLimit();
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
  // Keys under a learned map, computed before the writer lock; a map
  // published in between has them recomputed under it.
  std::shared_ptr<const FeatureMap> map = feature_map();
  Eigen::MatrixXf keys;
  std::vector<float> key_inverse_norms;
  if (!map->is_identity()) {
    HOPFIELD_RETURN_IF_ERROR(ComputeKeys(*map, values.data(), ids.size(),
                                         BatchName, &keys, &key_inverse_norms));
  }
  auto named_in_batch = [&explicit_ids](PatternId id) {
    const auto it = std::lower_bound(explicit_ids.begin(), explicit_ids.end(),
                                     std::pair<PatternId, size_t>(id, 0));
    return it != explicit_ids.end() && it->first == id;
  };

  WriterLock lock(&mu_);
  if (feature_map_ != map) {
    map = feature_map_;
    if (map->is_identity()) {
      keys.resize(0, 0);
    } else {
      HOPFIELD_RETURN_IF_ERROR(ComputeKeys(*map, values.data(), ids.size(),
                                           BatchName, &keys,
                                           &key_inverse_norms));
    }
  }
  const size_t key_dim = StoredKeyDimLocked();
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
  // The columns whose nearest neighbour is replaced (at most old_size), then
  // the batch's own: reserved before the write is logged, since nothing may
  // fail after that.
  targets.reserve(old_size + ids.size());
  HOPFIELD_RETURN_IF_ERROR(EnsureCapacityLocked(new_size));
  {
    // The log record: the columns as they will be (held while it is
    // written, reserved from the budget).
    MemoryReservation batch_memory;
    StorageBatch batch;
    if (env_.storage != nullptr) {
      if (env_.budget != nullptr) {
        HOPFIELD_ASSIGN_OR_RETURN(
            batch_memory,
            env_.budget->Reserve(
                ids.size() * (dim * sizeof(float) + 64),
                absl::StrCat("log record of a write to bank \"", name_, "\"")));
      }
      uint64_t appended = old_size;
      for (size_t i = 0; i < ids.size(); ++i) {
        const uint64_t column = replaced_column[i] >= 0
                                    ? static_cast<uint64_t>(replaced_column[i])
                                    : appended++;
        batch.PutColumn(env_.incarnation, column, assigned[i],
                        values.subspan(i * dim, dim));
      }
    }
    HOPFIELD_ASSIGN_OR_RETURN(*ticket, LogLocked(&batch, next, new_size));
  }

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
      if (key_dim > 0) {
        std::copy_n(keys.col(static_cast<Eigen::Index>(i)).data(), key_dim,
                    keys_.begin() + static_cast<std::ptrdiff_t>(c * key_dim));
        key_inverse_norms_[c] = key_inverse_norms[i];
      }
      nearest_score_[c] = -std::numeric_limits<float>::infinity();
      nearest_id_[c] = 0;
      stamp_[c] = write_stamp_;
      MarkUnindexedLocked(column);
    } else {
      column = static_cast<Eigen::Index>(ids_.size());
      values_.insert(values_.end(), pattern, pattern + dim);
      inverse_norms_.push_back(inverse_norms[i]);
      if (key_dim > 0) {
        const float* key = keys.col(static_cast<Eigen::Index>(i)).data();
        keys_.insert(keys_.end(), key, key + key_dim);
        key_inverse_norms_.push_back(key_inverse_norms[i]);
      }
      ids_.push_back(assigned[i]);
      nearest_score_.push_back(-std::numeric_limits<float>::infinity());
      nearest_id_.push_back(0);
      pending_.push_back(0);
      stamp_.push_back(write_stamp_);
      column_of_.emplace(assigned[i], column);
      unindexed_pos_.push_back(kIndexed);
      MarkUnindexedLocked(column);
    }
    targets.push_back(column);
  }
  next_id_ = next;
  NoteWrite();
  UpdateOrMarkLocked(targets);
  RefreshSummaryLocked();
  return assigned;
}

absl::StatusOr<uint64_t> MemoryBank::Remove(absl::Span<const PatternId> ids) {
  uint64_t ticket = 0;
  HOPFIELD_ASSIGN_OR_RETURN(const uint64_t removed,
                            RemoveUnindexed(ids, &ticket));
  if (removed == 0) return removed;
  HOPFIELD_RETURN_IF_ERROR(WaitLogged(ticket));
  if (env_.separation_update == SeparationUpdate::kSynchronous) {
    MaintainIndexNow();  // rebuilds when tombstones pile up
  }
  return removed;
}

absl::StatusOr<uint64_t> MemoryBank::RemoveUnindexed(
    absl::Span<const PatternId> ids, uint64_t* ticket) {
  std::vector<PatternId> removed;
  removed.reserve(ids.size());
  WriterLock lock(&mu_);
  for (const PatternId id : ids) {
    if (column_of_.contains(id)) removed.push_back(id);
  }
  if (removed.empty()) return 0;
  std::sort(removed.begin(), removed.end());
  removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
  // Allocated before the write is logged: nothing may fail after that.
  std::vector<Eigen::Index> targets;
  targets.reserve(ids_.size());
  if (index_ != nullptr) {
    index_deletions_.reserve(index_deletions_.size() + removed.size());
    index_maybe_deletions_.reserve(index_maybe_deletions_.size() +
                                   removed.size());
  }
  {
    // The log record: the columns RemoveColumnLocked will leave, found by
    // replaying its moves (each removal moves the last column into the
    // hole) on a map of the columns that change.
    StorageBatch batch;
    size_t size = ids_.size();
    if (env_.storage != nullptr) {
      absl::flat_hash_map<size_t, size_t> holds;     // column -> source
      absl::flat_hash_map<PatternId, size_t> moved;  // id -> its new column
      auto source = [&holds](size_t column) {
        const auto it = holds.find(column);
        return it == holds.end() ? column : it->second;
      };
      for (const PatternId id : removed) {
        const auto it = moved.find(id);
        const size_t column = it != moved.end()
                                  ? it->second
                                  : static_cast<size_t>(column_of_.at(id));
        const size_t last = size - 1;
        if (column != last) {
          const size_t from = source(last);
          holds[column] = from;
          moved[ids_[from]] = column;
        }
        holds.erase(last);
        --size;
      }
      std::vector<std::pair<size_t, size_t>> changed(holds.begin(),
                                                     holds.end());
      std::sort(changed.begin(), changed.end());
      const size_t dim = options_.dim;
      for (const auto& [column, from] : changed) {
        batch.PutColumn(env_.incarnation, column, ids_[from],
                        absl::MakeConstSpan(values_).subspan(from * dim, dim));
      }
      batch.Truncate(env_.incarnation, size);
    } else {
      size -= removed.size();
    }
    HOPFIELD_ASSIGN_OR_RETURN(*ticket, LogLocked(&batch, next_id_, size));
  }
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
  return uint64_t{removed.size()};
}

absl::Status MemoryBank::EnsureCapacityLocked(size_t count) {
  if (count <= capacity_) return absl::OkStatus();
  const size_t capacity =
      std::max({count, capacity_ + capacity_ / kGrowthDivisor, kMinCapacity});
  const uint64_t before = MemoryBytesLocked();
  const uint64_t after = BytesForCapacity(capacity, StoredKeyDimLocked());
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
             .Resize(MemoryBytesLocked() +
                         BytesForCapacity(capacity, StoredKeyDimLocked()),
                     what)
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
  const size_t key_dim = StoredKeyDimLocked();
  auto keys = Reallocated(keys_, capacity * key_dim);
  auto key_inverse_norms =
      Reallocated(key_inverse_norms_, key_dim > 0 ? capacity : 0);
  auto ids = Reallocated(ids_, capacity);
  auto nearest_score = Reallocated(nearest_score_, capacity);
  auto nearest_id = Reallocated(nearest_id_, capacity);
  auto pending = Reallocated(pending_, capacity);
  auto stamp = Reallocated(stamp_, capacity);
  auto unindexed = Reallocated(unindexed_, capacity);
  auto unindexed_pos = Reallocated(unindexed_pos_, capacity);
  RebuildIndex(&column_of_, IndexEntriesFor(capacity));
  values_.swap(values);
  inverse_norms_.swap(inverse_norms);
  keys_.swap(keys);
  key_inverse_norms_.swap(key_inverse_norms);
  ids_.swap(ids);
  nearest_score_.swap(nearest_score);
  nearest_id_.swap(nearest_id);
  pending_.swap(pending);
  stamp_.swap(stamp);
  unindexed_.swap(unindexed);
  unindexed_pos_.swap(unindexed_pos);
  capacity_ = capacity;
}

uint64_t MemoryBank::BytesForCapacity(size_t capacity, size_t key_dim) const {
  const uint64_t key_bytes =
      key_dim > 0 ? (uint64_t{key_dim} + 1) * sizeof(float) : 0;
  return capacity * (uint64_t{options_.dim} * sizeof(float) + kColumnOverhead +
                     key_bytes) +
         IndexSlotsFor(IndexEntriesFor(capacity)) * kIndexSlotBytes;
}

void MemoryBank::NoteWrite() {
  last_write_nanos_.store(SteadyNanos(), std::memory_order_relaxed);
}

uint64_t MemoryBank::separation_pending() const {
  ReaderLock lock(&mu_);
  return pending_count_;
}

uint64_t MemoryBank::index_pending() const {
  ReaderLock lock(&mu_);
  return IndexPendingLocked();
}

uint64_t MemoryBank::index_size() const {
  ReaderLock lock(&mu_);
  return IndexSizeLocked();
}

uint64_t MemoryBank::IndexSizeLocked() const {
  // Each id awaiting its tombstone is a live entry of index_.
  if (index_ == nullptr) return 0;
  const uint64_t entries = index_->size();
  const uint64_t owed = index_deletions_.size();
  return entries > owed ? entries - owed : 0;
}

uint64_t MemoryBank::index_deletions_pending() const {
  ReaderLock lock(&mu_);
  return index_deletions_.size() + index_maybe_deletions_.size();
}

uint64_t MemoryBank::IndexPendingLocked() const {
  if (!WantsIndexLocked()) return 0;
  if (index_ == nullptr || index_map_ != feature_map_) return ids_.size();
  return unindexed_.size();
}

bool MemoryBank::WantsIndexLocked() const {
  return options_.similarity == Similarity::kCosine && !ids_.empty() &&
         (index_ != nullptr || ids_.size() >= env_.index_min_patterns);
}

AnnIndexOptions MemoryBank::IndexOptions() const {
  AnnIndexOptions index;
  index.m = options_.index_m;
  index.ef_construction = options_.index_ef_construction;
  index.ef_search = options_.index_ef_search;
  return index;
}

void MemoryBank::CopyUnitKeyLocked(Eigen::Index column, float* out) const {
  const Eigen::Map<const Eigen::MatrixXf> keys = KeysLocked();
  const float scale = KeyInverseNormsLocked()[column];
  Eigen::Map<Eigen::VectorXf>(out, keys.rows()) = keys.col(column) * scale;
}

void MemoryBank::MarkUnindexedLocked(Eigen::Index column) {
  const auto c = static_cast<size_t>(column);
  if (unindexed_pos_[c] != kIndexed) return;
  unindexed_pos_[c] = static_cast<uint32_t>(unindexed_.size());
  unindexed_.push_back(ids_[c]);  // within capacity_: no allocation
}

void MemoryBank::MarkIndexedLocked(Eigen::Index column) {
  const auto c = static_cast<size_t>(column);
  const uint32_t pos = unindexed_pos_[c];
  if (pos == kIndexed) return;
  const PatternId last = unindexed_.back();
  if (last != ids_[c]) {
    unindexed_pos_[static_cast<size_t>(column_of_.find(last)->second)] = pos;
    unindexed_[pos] = last;
  }
  unindexed_.pop_back();
  unindexed_pos_[c] = kIndexed;
}

size_t MemoryBank::RefreshIndex(size_t max_patterns,
                                const std::atomic<bool>* stop) {
  size_t applied = 0;
  std::vector<PatternId> ids;
  std::vector<uint64_t> stamps;
  std::vector<float> vectors;
  bool deletions_owed = false;
  {
    ReaderLock lock(&mu_);
    deletions_owed =
        !index_deletions_.empty() || !index_maybe_deletions_.empty();
  }
  if (deletions_owed) {
    // Removals' tombstones first: a removed id re-added since is then
    // revived by its insertion below, not deleted after it. (Checked under
    // the reader lock first: most turns owe none, and the writer lock
    // would stall the bank's readers for nothing.)
    WriterLock lock(&mu_);
    ApplyIndexDeletionsLocked();
  }
  while (applied < max_patterns) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) break;
    std::shared_ptr<AnnIndex> index;
    {
      ReaderLock lock(&mu_);
      if (!WantsIndexLocked()) break;
      // No index, one in an old space, or one mostly tombstones: `index`
      // stays null and a new one is built below.
      const bool rebuild =
          index_ == nullptr || index_map_ != feature_map_ ||
          index_->size_with_deleted() > 2 * index_->size() + kTombstoneSlack ||
          ((index_->projected() ||
            index_built_at_ < static_cast<size_t>(KeysLocked().rows())) &&
           ids_.size() >= 4 * index_built_at_);
      if (!rebuild) {
        if (unindexed_.empty()) break;
        index = index_;
        const size_t n =
            std::min({max_patterns - applied, unindexed_.size(), kIndexChunk});
        const auto key_dim = static_cast<size_t>(KeysLocked().rows());
        ids.assign(unindexed_.begin(),
                   unindexed_.begin() + static_cast<std::ptrdiff_t>(n));
        stamps.resize(n);
        vectors.resize(n * key_dim);
        for (size_t i = 0; i < n; ++i) {
          const Eigen::Index c = column_of_.find(ids[i])->second;
          stamps[i] = stamp_[static_cast<size_t>(c)];
          CopyUnitKeyLocked(c, vectors.data() + i * key_dim);
        }
      }
    }
    if (index == nullptr) {
      const size_t rebuilt = BuildSearchIndex(stop);
      if (rebuilt == 0) break;
      applied += rebuilt;
      {
        ReaderLock lock(&mu_);
        index = index_;
      }
      EstimatePendingFromIndex(index, stop);
      continue;
    }
    if (!index->Add(ids, vectors).ok()) break;  // budget: stay pending
    {
      WriterLock lock(&mu_);
      if (index_ != index) break;  // rebuilt meanwhile
      // The entries are the patterns' now (or are deleted right here): a
      // tombstone still owed to an earlier incarnation of an id (removed,
      // stored again) must not delete it.
      if (!index_deletions_.empty() || !index_maybe_deletions_.empty()) {
        std::vector<PatternId> inserted(ids.begin(), ids.end());
        std::sort(inserted.begin(), inserted.end());
        const auto is_inserted = [&inserted](PatternId id) {
          return std::binary_search(inserted.begin(), inserted.end(), id);
        };
        EraseIf(&index_deletions_, is_inserted);
        EraseIf(&index_maybe_deletions_, is_inserted);
      }
      for (size_t i = 0; i < ids.size(); ++i) {
        const auto it = column_of_.find(ids[i]);
        if (it == column_of_.end()) {
          index_->MarkDeleted(ids[i]);  // removed while it was inserted
        } else if (stamp_[static_cast<size_t>(it->second)] == stamps[i]) {
          MarkIndexedLocked(it->second);
          ++applied;
        }
      }
    }
    EstimateFromIndex(index, ids, stamps, vectors);
  }
  return applied;
}

void MemoryBank::ApplyIndexDeletionsLocked() {
  if (index_ == nullptr) {
    index_deletions_.clear();
    index_maybe_deletions_.clear();
    return;
  }
  // Only ids the bank no longer holds: one stored again since keeps its
  // entry (a refresh may have put its new vector there already) and its
  // place in the set until a refresh inserts it (which drops it) or it is
  // removed again.
  std::vector<PatternId> deletions;
  try {
    deletions.reserve(index_deletions_.size() + index_maybe_deletions_.size());
  } catch (const std::bad_alloc&) {
    return;  // still owed; the next refresh tries again
  }
  // Lambdas are opaque to the lock analysis: they get the map.
  const auto* const column_of = &column_of_;
  const auto gone = [column_of](PatternId id) {
    return !column_of->contains(id);
  };
  for (const auto* owed : {&index_deletions_, &index_maybe_deletions_}) {
    for (const PatternId id : *owed) {
      if (gone(id)) deletions.push_back(id);
    }
  }
  index_->MarkDeleted(deletions);
  EraseIf(&index_deletions_, gone);
  EraseIf(&index_maybe_deletions_, gone);
}

bool MemoryBank::NeedsEstimateLocked(size_t column) const {
  return pending_[column] == kAwaitsEstimate;
}

void MemoryBank::EstimateFromIndex(const std::shared_ptr<AnnIndex>& index,
                                   absl::Span<const PatternId> ids,
                                   absl::Span<const uint64_t> stamps,
                                   absl::Span<const float> unit_keys) {
  const size_t key_dim = index->dim();
  std::vector<size_t> targets;  // positions in ids
  {
    ReaderLock lock(&mu_);
    if (index_ != index) return;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto it = column_of_.find(ids[i]);
      if (it != column_of_.end() &&
          stamp_[static_cast<size_t>(it->second)] == stamps[i] &&
          NeedsEstimateLocked(static_cast<size_t>(it->second))) {
        targets.push_back(i);
      }
    }
  }
  if (targets.empty()) return;
  // The candidates of each target (kEstimateNeighbours + 1: the target
  // finds itself) in slots of `per`, 0 where a search returned fewer; the
  // searches run on env_.index_build_threads threads.
  const size_t per = index->CandidatesFor(kEstimateNeighbours + 1);
  std::vector<PatternId> candidates(targets.size() * per, 0);
  const size_t threads =
      std::min<size_t>({env_.index_build_threads, targets.size(),
                        std::max(1u, std::thread::hardware_concurrency())});
  RunParts(nullptr, threads, [&](size_t part) {
    std::vector<AnnIndex::Candidate> found;
    for (size_t t = part; t < targets.size(); t += threads) {
      index->Search(unit_keys.subspan(targets[t] * key_dim, key_dim), per,
                    &found);
      for (size_t j = 0; j < found.size(); ++j) {
        candidates[t * per + j] = found[j].id;
      }
    }
  });
  WriterLock lock(&mu_);
  if (index_ != index || index_map_ != feature_map_) return;
  const Eigen::Map<const Eigen::MatrixXf> keys = KeysLocked();
  const float* const inverse = KeyInverseNormsLocked();
  for (size_t t = 0; t < targets.size(); ++t) {
    const size_t i = targets[t];
    const auto it = column_of_.find(ids[i]);
    if (it == column_of_.end()) continue;
    const Eigen::Index c = it->second;
    const auto col = static_cast<size_t>(c);
    if (stamp_[col] != stamps[i] || !NeedsEstimateLocked(col)) continue;
    float best = -std::numeric_limits<float>::infinity();
    PatternId best_id = 0;
    for (size_t j = t * per; j < (t + 1) * per; ++j) {
      if (candidates[j] == 0 || candidates[j] == ids[i]) continue;
      const auto other = column_of_.find(candidates[j]);
      if (other == column_of_.end()) continue;
      const Eigen::Index o = other->second;
      const float score =
          keys.col(c).dot(keys.col(o)) * inverse[col] * inverse[o];
      if (score > best) {
        best = score;
        best_id = candidates[j];
      }
      // The candidate learns its score to the target (a pending one as an
      // estimate; an exact one as RefreshSeparation would, exactly).
      if (score > nearest_score_[static_cast<size_t>(o)]) {
        nearest_score_[static_cast<size_t>(o)] = score;
        nearest_id_[static_cast<size_t>(o)] = ids[i];
      }
    }
    // Merged with what it holds (a candidate's or a re-scored old
    // neighbour's score, also a real neighbour's).
    if (best_id != 0 && best > nearest_score_[col]) {
      nearest_score_[col] = best;
      nearest_id_[col] = best_id;
    }
    pending_[col] = kEstimated;
  }
  RefreshSummaryLocked();
}

void MemoryBank::EstimatePendingFromIndex(
    const std::shared_ptr<AnnIndex>& index, const std::atomic<bool>* stop) {
  std::vector<PatternId> ids;
  std::vector<uint64_t> stamps;
  std::vector<float> vectors;
  size_t next = 0;  // column cursor (columns may move: best effort)
  while (stop == nullptr || !stop->load(std::memory_order_relaxed)) {
    {
      ReaderLock lock(&mu_);
      if (index_ != index) return;
      const auto key_dim = static_cast<size_t>(KeysLocked().rows());
      ids.clear();
      stamps.clear();
      vectors.clear();
      for (; next < ids_.size() && ids.size() < kIndexChunk; ++next) {
        if (!NeedsEstimateLocked(next) || unindexed_pos_[next] != kIndexed) {
          continue;
        }
        ids.push_back(ids_[next]);
        stamps.push_back(stamp_[next]);
        vectors.resize(ids.size() * key_dim);
        CopyUnitKeyLocked(static_cast<Eigen::Index>(next),
                          vectors.data() + (ids.size() - 1) * key_dim);
      }
    }
    if (ids.empty()) return;
    EstimateFromIndex(index, ids, stamps, vectors);
  }
}

size_t MemoryBank::BuildSearchIndex(const std::atomic<bool>* stop) {
  std::shared_ptr<const FeatureMap> map;
  std::vector<PatternId> all;
  Eigen::Index key_dim = 0;
  std::vector<float> sample;  // unit keys the projection is fitted to
  MemoryReservation sample_bytes;
  {
    ReaderLock lock(&mu_);
    map = feature_map_;
    all.assign(ids_.begin(), ids_.end());
    key_dim = KeysLocked().rows();
    const size_t dim = static_cast<size_t>(key_dim);
    const size_t count =
        std::min(all.size(), std::max(kProjectionSample, 2 * dim));
    absl::StatusOr<MemoryReservation> reserved =
        env_.budget == nullptr
            ? MemoryReservation()
            : env_.budget->Reserve(count * dim * sizeof(float),
                                   "the search index projection sample");
    if (count >= dim && reserved.ok()) {
      sample_bytes = *std::move(reserved);
      sample.resize(count * dim);
      for (size_t i = 0; i < count; ++i) {
        CopyUnitKeyLocked(static_cast<Eigen::Index>(i * all.size() / count),
                          sample.data() + i * dim);
      }
    }
  }
  absl::StatusOr<std::unique_ptr<AnnIndex>> created = AnnIndex::Create(
      static_cast<uint32_t>(key_dim), IndexOptions(), env_.budget, sample);
  sample = {};
  sample_bytes = MemoryReservation();
  if (!created.ok()) return 0;
  const std::shared_ptr<AnnIndex> index = *std::move(created);
  // The write stamp each inserted pattern had when its key was copied.
  absl::flat_hash_map<PatternId, uint64_t> inserted;
  inserted.reserve(all.size());
  std::vector<PatternId> ids;
  std::vector<float> vectors;
  for (size_t begin = 0; begin < all.size(); begin += kIndexChunk) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) return 0;
    const size_t end = std::min(all.size(), begin + kIndexChunk);
    ids.clear();
    vectors.resize((end - begin) * static_cast<size_t>(key_dim));
    {
      ReaderLock lock(&mu_);
      if (feature_map_ != map) return 0;  // another map: start again later
      for (size_t k = begin; k < end; ++k) {
        const auto it = column_of_.find(all[k]);
        if (it == column_of_.end()) continue;
        CopyUnitKeyLocked(
            it->second,
            vectors.data() + ids.size() * static_cast<size_t>(key_dim));
        inserted[all[k]] = stamp_[static_cast<size_t>(it->second)];
        ids.push_back(all[k]);
      }
    }
    vectors.resize(ids.size() * static_cast<size_t>(key_dim));
    if (!index->Add(ids, vectors, env_.index_build_threads).ok()) {
      return 0;  // budget
    }
  }
  WriterLock lock(&mu_);
  if (feature_map_ != map) return 0;
  for (const auto& [id, stamp] : inserted) {
    if (!column_of_.contains(id)) index->MarkDeleted(id);
  }
  index_ = index;
  // The old index's (the loop above did these).
  index_deletions_.clear();
  index_maybe_deletions_.clear();
  index_map_ = map;
  index_built_at_ = all.size();
  unindexed_.clear();
  size_t covered = 0;
  for (Eigen::Index c = 0; c < SizeLocked(); ++c) {
    const auto col = static_cast<size_t>(c);
    unindexed_pos_[col] = kIndexed;
    const auto it = inserted.find(ids_[col]);
    if (it != inserted.end() && it->second == stamp_[col]) {
      ++covered;
    } else {
      MarkUnindexedLocked(c);
    }
  }
  return covered;
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
  Eigen::Index key_dim = 0;  // of the keys the targets were copied from
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
          targets.size() * (static_cast<uint64_t>(KeysLocked().rows()) + 16) *
              sizeof(float);
      if (env_.budget != nullptr) {
        absl::StatusOr<MemoryReservation> reserved =
            env_.budget->Reserve(scratch_bytes, "separation refresh");
        if (!reserved.ok()) return 0;  // try again when memory frees up
        scratch = std::move(reserved).value();
      }
      stamps.assign(stamp_.begin(), stamp_.end());
      CopyTargetsLocked(targets, &target_values, &target_scale);
      key_dim = KeysLocked().rows();
      update.Reset(targets.size(), ids_.size());
      generation = layout_generation_;
      next_row = 0;
    }
    // Columns appended since the targets were picked are pending and will
    // score against the targets themselves: scan the columns seen then.
    const auto rows_known = static_cast<Eigen::Index>(stamps.size());
    if (next_row >= rows_known) break;
    const auto rows = static_cast<Eigen::Index>(std::max<uint64_t>(
        64, kMacsPerLockedBlock /
                (static_cast<uint64_t>(key_dim) * targets.size())));
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

std::shared_ptr<const FeatureMap> MemoryBank::feature_map() const {
  ReaderLock lock(&mu_);
  return feature_map_;
}

absl::Status MemoryBank::SetFeatureMap(
    std::shared_ptr<const FeatureMap> map,
    const std::function<absl::Status()>& check_continue) {
  uint64_t ticket = 0;
  HOPFIELD_RETURN_IF_ERROR(
      SetFeatureMapUnindexed(std::move(map), check_continue, &ticket));
  HOPFIELD_RETURN_IF_ERROR(WaitLogged(ticket));
  if (env_.separation_update == SeparationUpdate::kSynchronous) {
    MaintainIndexNow();
  }
  return absl::OkStatus();
}

absl::Status MemoryBank::SetFeatureMapUnindexed(
    std::shared_ptr<const FeatureMap> map,
    const std::function<absl::Status()>& check_continue, uint64_t* ticket) {
  if (map == nullptr) {
    return absl::InvalidArgumentError("feature map: expected a map, got null");
  }
  if (map->input_dim() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature map: expected input dimension ", options_.dim,
                     " (the bank's dim), got ", map->input_dim()));
  }
  const size_t dim = options_.dim;
  const size_t key_dim = map->is_identity() ? 0 : map->feature_dim();
  const FeatureMap& new_map = *map;
  // Called only with mu_ held (inside ComputeKeys below).
  auto name_column = [this](size_t column) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return absl::StrCat("pattern id ", ids_[column]);
  };
  // Phase 1, without blocking writers for long: the keys of every column
  // present now, block by block under reader locks. Columns written
  // meanwhile (their stamp changes) or appended are done in phase 2; if
  // columns move (a removal), phase 2 redoes the rest.
  std::vector<float, CacheAlignedAllocator<float>> keys;
  std::vector<float> key_inverse_norms;
  std::vector<uint64_t> stamps;
  uint64_t generation = 0;
  size_t computed = 0;
  MemoryReservation reserved;
  auto reserve = [&](size_t capacity) -> absl::Status {
    if (env_.budget == nullptr) return absl::OkStatus();
    // Keys and inverse norms at `capacity`, the stamps, the map.
    const uint64_t bytes =
        capacity * ((key_dim + 1) * sizeof(float) + sizeof(uint64_t)) +
        new_map.memory_bytes();
    const std::string what =
        absl::StrCat("feature map keys of bank \"", name_, "\"");
    if (reserved.bytes() == 0) {
      HOPFIELD_ASSIGN_OR_RETURN(reserved, env_.budget->Reserve(bytes, what));
      return absl::OkStatus();
    }
    return reserved.Resize(bytes, what);
  };
  if (key_dim > 0) {
    size_t known = 0;
    size_t capacity = 0;
    {
      ReaderLock lock(&mu_);
      generation = layout_generation_;
      known = ids_.size();
      capacity = capacity_;
    }
    HOPFIELD_RETURN_IF_ERROR(reserve(capacity));
    keys.reserve(capacity * key_dim);
    key_inverse_norms.reserve(capacity);
    keys.resize(known * key_dim);
    key_inverse_norms.resize(known);
    stamps.resize(known);
    const size_t block = std::max<size_t>(
        64, static_cast<size_t>(kMacsPerLockedBlock / (dim * key_dim)));
    Eigen::MatrixXf block_keys;
    std::vector<float> block_inverse_norms;
    while (computed < known) {
      if (check_continue) HOPFIELD_RETURN_IF_ERROR(check_continue());
      ReaderLock lock(&mu_);
      if (layout_generation_ != generation || ids_.size() < known) break;
      const size_t end = std::min(known, computed + block);
      HOPFIELD_RETURN_IF_ERROR(ComputeKeys(
          new_map, values_.data() + computed * dim, end - computed,
          [&](size_t i) { return name_column(computed + i); }, &block_keys,
          &block_inverse_norms));
      std::copy_n(
          block_keys.data(), (end - computed) * key_dim,
          keys.begin() + static_cast<std::ptrdiff_t>(computed * key_dim));
      std::copy(
          block_inverse_norms.begin(), block_inverse_norms.end(),
          key_inverse_norms.begin() + static_cast<std::ptrdiff_t>(computed));
      std::copy_n(stamp_.begin() + static_cast<std::ptrdiff_t>(computed),
                  end - computed,
                  stamps.begin() + static_cast<std::ptrdiff_t>(computed));
      computed = end;
    }
  }
  if (check_continue) HOPFIELD_RETURN_IF_ERROR(check_continue());
  // The log record (encoded outside the lock).
  StorageBatch batch;
  if (env_.storage != nullptr) {
    if (new_map.is_identity()) {
      batch.DeleteBlob(env_.incarnation, BlobKind::kFeatureMap);
    } else {
      batch.PutBlob(env_.incarnation, BlobKind::kFeatureMap,
                    EncodeFeatureMap(new_map));
    }
  }

  // Phase 2, under the writer lock: finish, then swap.
  WriterLock lock(&mu_);
  const size_t size = ids_.size();
  if (key_dim > 0) {
    if (layout_generation_ != generation) computed = 0;
    HOPFIELD_RETURN_IF_ERROR(reserve(capacity_));
    keys.reserve(capacity_ * key_dim);
    key_inverse_norms.reserve(capacity_);
    keys.resize(size * key_dim);
    key_inverse_norms.resize(size);
    Eigen::MatrixXf column_keys;
    std::vector<float> column_inverse_norms;
    for (size_t c = 0; c < size; ++c) {
      if (c < computed && stamp_[c] == stamps[c]) continue;
      // Consecutive columns that need keys go in one product.
      size_t end = c + 1;
      while (end < size && (end >= computed || stamp_[end] != stamps[end])) {
        ++end;
      }
      HOPFIELD_RETURN_IF_ERROR(ComputeKeys(
          new_map, values_.data() + c * dim, end - c,
          [&](size_t i) { return name_column(c + i); }, &column_keys,
          &column_inverse_norms));
      std::copy_n(column_keys.data(), (end - c) * key_dim,
                  keys.begin() + static_cast<std::ptrdiff_t>(c * key_dim));
      std::copy(column_inverse_norms.begin(), column_inverse_norms.end(),
                key_inverse_norms.begin() + static_cast<std::ptrdiff_t>(c));
      c = end - 1;
    }
  }
  HOPFIELD_ASSIGN_OR_RETURN(*ticket, LogLocked(&batch, next_id_, size));
  // Nothing below fails (the provisional scores below allocate nothing;
  // the synchronous recomputation falls back to pending on bad_alloc).
  keys_.swap(keys);
  key_inverse_norms_.swap(key_inverse_norms);
  feature_map_ = std::move(map);
  ++layout_generation_;  // a refresh in flight scored the old keys
  NoteWrite();
  // Provisional separation: each column's old nearest neighbour re-scored
  // in the new space (a lower bound on its new nearest score).
  const Eigen::Map<const Eigen::MatrixXf> new_keys = KeysLocked();
  const float* const inverse = KeyInverseNormsLocked();
  const bool cosine = options_.similarity == Similarity::kCosine;
  std::vector<Eigen::Index> targets;
  try {
    targets.reserve(size);
  } catch (const std::bad_alloc&) {
  }
  for (size_t c = 0; c < size; ++c) {
    float score = -std::numeric_limits<float>::infinity();
    const auto it = column_of_.find(nearest_id_[c]);
    if (nearest_id_[c] != 0 && it != column_of_.end()) {
      const auto n = it->second;
      const auto cc = static_cast<Eigen::Index>(c);
      score = new_keys.col(cc).dot(new_keys.col(n));
      if (cosine) score *= inverse[cc] * inverse[n];
    }
    nearest_score_[c] = score;
    if (pending_[c] == 0) ++pending_count_;
    pending_[c] = kAwaitsEstimate;
    if (targets.capacity() == size) {
      targets.push_back(static_cast<Eigen::Index>(c));
    }
  }
  if (env_.separation_update == SeparationUpdate::kSynchronous &&
      targets.size() == size) {
    UpdateOrMarkLocked(targets);
  } else if (size > 0 && env_.on_pending) {
    env_.on_pending();
  }
  RefreshSummaryLocked();
  reservation_.Absorb(std::move(reserved));
  if (env_.budget != nullptr) {
    (void)reservation_.Resize(MemoryBytesLocked(), "");  // shrinks
  }
  return absl::OkStatus();
}

MemoryBank::PatternSample MemoryBank::Sample(size_t max_count,
                                             uint64_t seed) const {
  ReaderLock lock(&mu_);
  const size_t size = ids_.size();
  std::vector<size_t> columns(size);
  for (size_t c = 0; c < size; ++c) columns[c] = c;
  if (max_count < size) {
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < max_count; ++i) {
      std::uniform_int_distribution<size_t> pick(i, size - 1);
      std::swap(columns[i], columns[pick(rng)]);
    }
    columns.resize(max_count);
  }
  const PatternId* const ids = ids_.data();
  std::sort(columns.begin(), columns.end(),
            [ids](size_t a, size_t b) { return ids[a] < ids[b]; });
  const size_t dim = options_.dim;
  PatternSample sample;
  const auto n = static_cast<Eigen::Index>(columns.size());
  sample.patterns.resize(static_cast<Eigen::Index>(dim), n);
  sample.ids.resize(columns.size());
  absl::flat_hash_map<PatternId, Eigen::Index> position;
  position.reserve(columns.size());
  for (Eigen::Index i = 0; i < n; ++i) {
    const size_t c = columns[static_cast<size_t>(i)];
    sample.patterns.col(i) = Eigen::Map<const Eigen::VectorXf>(
        values_.data() + c * dim, static_cast<Eigen::Index>(dim));
    sample.ids[static_cast<size_t>(i)] = ids_[c];
    position.emplace(ids_[c], i);
  }
  sample.nearest.assign(columns.size(), -1);
  for (size_t i = 0; i < columns.size(); ++i) {
    const auto it = position.find(nearest_id_[columns[i]]);
    if (it != position.end()) sample.nearest[i] = it->second;
  }
  return sample;
}

bool MemoryBank::Contains(PatternId id) const {
  ReaderLock lock(&mu_);
  return column_of_.contains(id);
}

uint64_t MemoryBank::size() const {
  ReaderLock lock(&mu_);
  return ids_.size();
}

BankStats MemoryBank::Stats(StatsDetail detail) const {
  ReaderLock lock(&mu_);
  BankStats stats;
  stats.pattern_count = ids_.size();
  stats.memory_bytes = MemoryBytesLocked();
  stats.min_separation = min_separation_;
  stats.min_distinct_separation = min_distinct_separation_;
  stats.duplicate_count = duplicate_count_;
  const bool full = detail == StatsDetail::kFull;
  if (full) {
    std::vector<double> separations;
    separations.reserve(ids_.size());
    for (Eigen::Index c = 0; c < SizeLocked(); ++c) {
      const float nearest = nearest_score_[static_cast<size_t>(c)];
      if (std::isfinite(nearest)) {
        separations.push_back(SelfScoreLocked(c) -
                              static_cast<double>(nearest));
      }
    }
    if (ids_.size() >= 2 && !separations.empty()) {
      const auto rank = static_cast<std::ptrdiff_t>(
          static_cast<double>(separations.size() - 1) * 0.01);
      std::nth_element(separations.begin(), separations.begin() + rank,
                       separations.end());
      stats.separation_p01 = separations[static_cast<size_t>(rank)];
    }
  }
  const std::optional<double> rule_separation = RuleSeparationLocked();
  stats.separation_pending = pending_count_;
  for (size_t c = 0; full && c < ids_.size() && pending_count_ > 0; ++c) {
    if (pending_[c] != 0 && std::isfinite(nearest_score_[c])) {
      ++stats.separation_estimated;
    }
  }
  stats.max_norm = max_norm_;
  stats.max_key_norm = max_key_norm_;
  stats.feature_map_version = feature_map_->version();
  stats.feature_dim = feature_map_->feature_dim();
  if (index_ != nullptr) {
    stats.index_size = IndexSizeLocked();
    stats.memory_bytes += index_->memory_bytes();
  }
  stats.index_pending = IndexPendingLocked();
  stats.index_current = index_ != nullptr && index_map_ == feature_map_;
  const double rule_norm =
      options_.similarity == Similarity::kCosine ? 1.0 : max_key_norm_;
  stats.effective_beta =
      options_.beta > 0.0f ? static_cast<double>(options_.beta)
                           : AutoBeta(stats.pattern_count,
                                      rule_separation.value_or(0.0), rule_norm);
  if (rule_separation.has_value()) {
    stats.log_capacity =
        LogCapacity(stats.effective_beta, feature_map_->feature_dim(),
                    *rule_separation, rule_norm);
  } else {
    // With fewer than two patterns nothing competes: report the capacity the
    // dimension alone allows (an optimal code) so utilisation stays small.
    stats.log_capacity =
        LogCapacity(stats.effective_beta, feature_map_->feature_dim(), 2.0);
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
  view.min_separation = RuleSeparationLocked();
  view.max_norm = max_norm_;
  new (&view.keys) Eigen::Map<const Eigen::MatrixXf>(KeysLocked());
  new (&view.key_inverse_norms)
      Eigen::Map<const Eigen::VectorXf>(KeyInverseNormsLocked(), SizeLocked());
  view.feature_map = feature_map_.get();
  view.max_key_norm = max_key_norm_;
  view.index = index_.get();
  view.index_map = index_map_.get();
  view.unindexed = unindexed_;
  view.column_of = &column_of_;
  view.nearest_scores = nearest_score_.data();
  view.separation_pending = pending_.data();
  view.separation_pending_count = pending_count_;
  return view;
}

std::optional<double> MemoryBank::RuleSeparationLocked() const {
  return min_distinct_separation_.has_value() ? min_distinct_separation_
                                              : min_separation_;
}

size_t MemoryBank::StoredKeyDimLocked() const {
  return feature_map_->is_identity() ? 0 : feature_map_->feature_dim();
}

Eigen::Map<const Eigen::MatrixXf> MemoryBank::KeysLocked() const {
  if (feature_map_->is_identity()) {
    return Eigen::Map<const Eigen::MatrixXf>(values_.data(), options_.dim,
                                             SizeLocked());
  }
  return Eigen::Map<const Eigen::MatrixXf>(
      keys_.data(), feature_map_->feature_dim(), SizeLocked());
}

const float* MemoryBank::KeyInverseNormsLocked() const {
  return feature_map_->is_identity() ? inverse_norms_.data()
                                     : key_inverse_norms_.data();
}

void MemoryBank::RemoveColumnLocked(Eigen::Index column) {
  const size_t dim = options_.dim;
  const auto col = static_cast<size_t>(column);
  const size_t last = ids_.size() - 1;
  if (unindexed_pos_[col] != kIndexed) {
    MarkIndexedLocked(column);  // off the list
    // An older version may be in the index (replaced, or inserted by a
    // refresh that lost a race): tombstoned if so.
    if (index_ != nullptr) index_maybe_deletions_.push_back(ids_[col]);
  } else if (index_ != nullptr) {
    // Tombstoned by the next RefreshIndex: a removal never waits for the
    // index (an insertion may hold its lock). Meanwhile searches may still
    // return the id; retrieval skips ids the bank no longer holds.
    index_deletions_.push_back(ids_[col]);  // reserved by RemoveUnindexed
  }
  column_of_.erase(ids_[col]);
  ++layout_generation_;
  if (pending_[col] != 0) --pending_count_;
  if (col != last) {
    std::copy_n(values_.begin() + static_cast<std::ptrdiff_t>(last * dim), dim,
                values_.begin() + static_cast<std::ptrdiff_t>(col * dim));
    inverse_norms_[col] = inverse_norms_[last];
    const size_t key_dim = StoredKeyDimLocked();
    if (key_dim > 0) {
      std::copy_n(keys_.begin() + static_cast<std::ptrdiff_t>(last * key_dim),
                  key_dim,
                  keys_.begin() + static_cast<std::ptrdiff_t>(col * key_dim));
      key_inverse_norms_[col] = key_inverse_norms_[last];
    }
    ids_[col] = ids_[last];
    nearest_score_[col] = nearest_score_[last];
    nearest_id_[col] = nearest_id_[last];
    pending_[col] = pending_[last];
    stamp_[col] = stamp_[last];
    unindexed_pos_[col] = unindexed_pos_[last];
    column_of_[ids_[col]] = column;  // an existing key: no allocation
  }
  values_.resize(last * dim);
  inverse_norms_.pop_back();
  if (!key_inverse_norms_.empty()) {
    keys_.resize(last * StoredKeyDimLocked());
    key_inverse_norms_.pop_back();
  }
  ids_.pop_back();
  nearest_score_.pop_back();
  nearest_id_.pop_back();
  pending_.pop_back();
  stamp_.pop_back();
  unindexed_pos_.pop_back();
}

void MemoryBank::ScoreRowsLocked(absl::Span<const Eigen::Index> targets,
                                 size_t first_target,
                                 const Eigen::MatrixXf& target_values,
                                 const Eigen::VectorXf& target_scale,
                                 Eigen::Index begin, Eigen::Index end,
                                 NearestUpdate* out) const {
  const bool cosine = options_.similarity == Similarity::kCosine;
  const Eigen::Map<const Eigen::MatrixXf> keys = KeysLocked();
  const float* const key_inverse_norms = KeyInverseNormsLocked();
  const auto t = static_cast<Eigen::Index>(targets.size());
  // Blocks of rows x targets scores of ~1 MiB stay in cache.
  const Eigen::Index row_block = std::max<Eigen::Index>(
      64, (Eigen::Index{1} << 18) / std::max<Eigen::Index>(1, t));
  Eigen::MatrixXf scores;
  for (Eigen::Index row = begin; row < end; row += row_block) {
    const Eigen::Index rows = std::min(row_block, end - row);
    scores.noalias() = keys.middleCols(row, rows).transpose() * target_values;
    if (cosine) {
      const Eigen::Map<const Eigen::VectorXf> inverse_norms(
          key_inverse_norms + row, rows);
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
    // Its nearest neighbour changed or went: what is recorded no longer
    // bounds its separation.
    nearest_score_[static_cast<size_t>(c)] =
        -std::numeric_limits<float>::infinity();
    nearest_id_[static_cast<size_t>(c)] = 0;
    char& pending = pending_[static_cast<size_t>(c)];
    if (pending == 0) ++pending_count_;
    pending = kAwaitsEstimate;
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
  const Eigen::Map<const Eigen::MatrixXf> keys = KeysLocked();
  const float* const key_inverse_norms = KeyInverseNormsLocked();
  const auto t = static_cast<Eigen::Index>(targets.size());
  values->resize(keys.rows(), t);
  scale->resize(t);
  for (Eigen::Index k = 0; k < t; ++k) {
    const Eigen::Index c = targets[static_cast<size_t>(k)];
    values->col(k) = keys.col(c);
    (*scale)[k] = options_.similarity == Similarity::kCosine
                      ? key_inverse_norms[c]
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
  max_norm_ = MaxNormFromInverse(inverse_norms_);
  max_key_norm_ = feature_map_->is_identity()
                      ? max_norm_
                      : MaxNormFromInverse(key_inverse_norms_);
  duplicate_count_ = 0;
  if (size < 2) {
    min_separation_.reset();
    min_distinct_separation_.reset();
    return;
  }
  // Pending columns count when they hold a provisional score (after a map
  // change: their old neighbour re-scored, a lower bound on the true
  // nearest score); fresh ones hold -inf and are skipped.
  double min_separation = std::numeric_limits<double>::infinity();
  double min_distinct = std::numeric_limits<double>::infinity();
  for (Eigen::Index c = 0; c < size; ++c) {
    if (!std::isfinite(nearest_score_[static_cast<size_t>(c)])) continue;
    const double self = SelfScoreLocked(c);
    const double separation =
        self - static_cast<double>(nearest_score_[static_cast<size_t>(c)]);
    min_separation = std::min(min_separation, separation);
    if (IsNearDuplicate(separation, self)) {
      ++duplicate_count_;
    } else {
      min_distinct = std::min(min_distinct, separation);
    }
  }
  if (std::isfinite(min_separation)) {
    min_separation_ = min_separation;
  } else {
    min_separation_.reset();  // nothing processed yet
  }
  if (std::isfinite(min_distinct)) {
    min_distinct_separation_ = min_distinct;
  } else {
    min_distinct_separation_.reset();
  }
}

double MemoryBank::SelfScoreLocked(Eigen::Index column) const {
  if (options_.similarity == Similarity::kCosine) return 1.0;
  const auto inverse = static_cast<double>(KeyInverseNormsLocked()[column]);
  return inverse > 0.0 ? 1.0 / (inverse * inverse) : 0.0;
}

uint64_t MemoryBank::MemoryBytesLocked() const {
  return values_.capacity() * sizeof(float) +
         inverse_norms_.capacity() * sizeof(float) +
         ids_.capacity() * sizeof(PatternId) +
         nearest_score_.capacity() * sizeof(float) +
         nearest_id_.capacity() * sizeof(PatternId) + pending_.capacity() +
         keys_.capacity() * sizeof(float) +
         key_inverse_norms_.capacity() * sizeof(float) +
         feature_map_->memory_bytes() + stamp_.capacity() * sizeof(uint64_t) +
         unindexed_.capacity() * sizeof(PatternId) +
         unindexed_pos_.capacity() * sizeof(uint32_t) +
         (column_of_.capacity() > 0 ? column_of_.capacity() * kIndexSlotBytes
                                    : 0);
}

}  // namespace hopfield
