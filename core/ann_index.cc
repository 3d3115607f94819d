#include "core/ann_index.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <new>
#include <queue>
#include <stdexcept>
#include <thread>
#include <utility>

#if defined(__F16C__) && defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
#define HOPFIELD_HAVE_F16C 1
#else
#define HOPFIELD_HAVE_F16C 0
#endif

#include "Eigen/Dense"
#include "absl/base/dynamic_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "hnswlib/hnswlib.h"

#include "core/status_macros.h"
#include "core/worker_pool.h"

namespace hopfield {
namespace {

using Graph = hnswlib::HierarchicalNSW<float>;

constexpr uint64_t kFirstCapacity = 1024;
// hnswlib's fixed per-index array of update locks.
constexpr uint64_t kUpdateLocks = Graph::max_update_element_locks;
// Bytes of one label_lookup_ entry (an unordered_map node plus its bucket).
constexpr uint64_t kLabelEntryBytes = 48;
// Visited lists kept by hnswlib's pool (one per concurrent search, each
// 2 bytes per entry); two is the steady state of a 2-core server.
constexpr uint64_t kVisitedLists = 2;

#if HOPFIELD_HAVE_F16C
// 1 − ⟨a, b⟩ of two vectors of half floats, dim a multiple of 16 (UsesHalf).
float HalfInnerProductDistance(const void* a, const void* b,
                               const void* param) {
  const size_t dim = *static_cast<const size_t*>(param);
  const auto* x = static_cast<const uint16_t*>(a);
  const auto* y = static_cast<const uint16_t*>(b);
  __m256 even = _mm256_setzero_ps();
  __m256 odd = _mm256_setzero_ps();
  for (size_t i = 0; i < dim; i += 16) {
    even = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(
                               reinterpret_cast<const __m128i*>(x + i))),
                           _mm256_cvtph_ps(_mm_loadu_si128(
                               reinterpret_cast<const __m128i*>(y + i))),
                           even);
    odd = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(
                              reinterpret_cast<const __m128i*>(x + i + 8))),
                          _mm256_cvtph_ps(_mm_loadu_si128(
                              reinterpret_cast<const __m128i*>(y + i + 8))),
                          odd);
  }
  const __m256 sum = _mm256_add_ps(even, odd);
  __m128 half =
      _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  half = _mm_hadd_ps(half, half);
  half = _mm_hadd_ps(half, half);
  return 1.0f - _mm_cvtss_f32(half);
}

// hnswlib's space for half-float vectors under the inner product.
class HalfInnerProductSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit HalfInnerProductSpace(size_t dim) : dim_(dim) {}
  size_t get_data_size() override { return dim_ * sizeof(uint16_t); }
  hnswlib::DISTFUNC<float> get_dist_func() override {
    return &HalfInnerProductDistance;
  }
  void* get_dist_func_param() override { return &dim_; }

 private:
  size_t dim_;
};
#endif

// hnswlib's InnerProductSpace constructor sets its SIMD dispatch pointers
// (namespace-scope globals, always to the same functions for this CPU): two
// indexes created at once race on them, benignly. Annotated once.
// Half floats for `half`.
std::unique_ptr<hnswlib::SpaceInterface<float>> NewSpace(uint32_t dim,
                                                         bool half) {
#if HOPFIELD_HAVE_F16C
  if (half) return std::make_unique<HalfInnerProductSpace>(dim);
#else
  (void)half;
#endif
#if defined(USE_SSE) || defined(USE_AVX) || defined(USE_AVX512)
  static const bool kAnnotated = [] {
    for ([[maybe_unused]] auto* pointer :
         {&hnswlib::InnerProductSIMD16Ext, &hnswlib::InnerProductSIMD4Ext,
          &hnswlib::InnerProductDistanceSIMD16Ext,
          &hnswlib::InnerProductDistanceSIMD4Ext}) {
      ABSL_ANNOTATE_BENIGN_RACE_SIZED(pointer, sizeof(*pointer),
                                      "hnswlib SIMD dispatch");
    }
    return true;
  }();
  (void)kAnnotated;
#endif
  return std::make_unique<hnswlib::InnerProductSpace>(dim);
}

// ---- Search ---------------------------------------------------------------
//
// hnswlib's searchKnn (0.6.2), with one change in how it reads memory: when a
// node is expanded, every unvisited neighbour is first marked and its whole
// vector prefetched (its first lines in a graph that fits the cache), and
// only then are their distances computed. hnswlib prefetches one cache line
// of the next neighbour while computing the current one, so in a graph
// larger than the cache each distance waits for the rest of its vector (a
// 128-float vector is 8 lines); issuing all of a node's misses at once
// overlaps them (bench/README "Prefetching the search": random 128-dim unit
// vectors, M = 16, ef 64, a search of 64 1.7x faster at 10^5 and 1.6x at
// 10^6 entries; Fashion-MNIST's projected graph 20-28% faster). The
// visit order, the admissions and the result are hnswlib's (ties in
// distance ordered by label, as searchKnn's result queue orders them), and
// it skips searchKnn's shared metric counters (two atomic increments per
// hop, contended between concurrent searches). Callers hold AnnIndex's
// reader lock, so no insertion runs concurrently.

using Ranked = std::pair<float, hnswlib::tableint>;

struct NearerFirst {
  bool operator()(const Ranked& a, const Ranked& b) const {
    return a.first > b.first;
  }
};
struct FartherFirst {
  bool operator()(const Ranked& a, const Ranked& b) const {
    return a.first < b.first;
  }
};

// Prefetches the cache lines of the `bytes` bytes at `p`, at most
// `max_lines` of them (addresses stay inside the vector: a line 64 bytes on
// from each prefetched one, then the vector's last byte).
inline void PrefetchLines(const char* p, size_t bytes, size_t max_lines) {
  constexpr size_t kLine = 64;
  size_t n = 0;
  for (size_t offset = 0; offset < bytes && n < max_lines;
       offset += kLine, ++n) {
    __builtin_prefetch(p + offset, 0, 3);
  }
  if (n < max_lines && bytes > 0) __builtin_prefetch(p + bytes - 1, 0, 3);
}

// Graphs of at most this many bytes of level 0 (links, vectors, labels) are
// taken to sit in the cache: there, prefetching all of a long vector's lines
// costs more instructions than it saves (measured at 10^4 random 128-dim
// vectors, 6.5 MB: 5-10% slower than hnswlib's loop with every line, the same
// with 4), so each neighbour gets its first kCachedPrefetchLines lines.
constexpr size_t kCacheResidentBytes = size_t{8} << 20;
constexpr size_t kCachedPrefetchLines = 4;

// Scratch of one thread's searches: warm searches allocate nothing.
struct SearchScratch {
  std::vector<Ranked> nearest;     // the ef best so far, worst on top
  std::vector<Ranked> candidates;  // to expand, nearest on top
  std::vector<hnswlib::tableint> batch;
  std::vector<std::pair<float, hnswlib::labeltype>> labelled;
};

// The k nearest live entries to `probe` (in the graph's encoding), nearest
// first, as hnswlib's searchKnn with ef = max(graph.ef_, k) finds them.
void SearchGraph(const Graph& graph, const void* probe, size_t k,
                 std::vector<AnnIndex::Candidate>* out) {
  thread_local SearchScratch s;
  const size_t bytes = graph.data_size_;
  const size_t lines = graph.cur_element_count * graph.size_data_per_element_ >
                               kCacheResidentBytes
                           ? bytes
                           : kCachedPrefetchLines;
  const auto distance = [&](hnswlib::tableint id) {
    return graph.fstdistfunc_(probe, graph.getDataByInternalId(id),
                              graph.dist_func_param_);
  };
  // Greedy descent through the upper layers.
  hnswlib::tableint current = graph.enterpoint_node_;
  float current_distance = distance(current);
  for (int level = graph.maxlevel_; level > 0; --level) {
    bool changed = true;
    while (changed) {
      changed = false;
      hnswlib::linklistsizeint* list = graph.get_linklist(current, level);
      const size_t size = graph.getListCount(list);
      const auto* ids = reinterpret_cast<const hnswlib::tableint*>(list + 1);
      for (size_t i = 0; i < size; ++i) {
        PrefetchLines(graph.getDataByInternalId(ids[i]), bytes, lines);
      }
      for (size_t i = 0; i < size; ++i) {
        const float d = distance(ids[i]);
        if (d < current_distance) {
          current_distance = d;
          current = ids[i];
          changed = true;
        }
      }
    }
  }
  // The beam search of layer 0 (hnswlib's searchBaseLayerST).
  const size_t ef = std::max(graph.ef_, k);
  const bool deletions = graph.num_deleted_ != 0;
  hnswlib::VisitedList* visited_list =
      graph.visited_list_pool_->getFreeVisitedList();
  hnswlib::vl_type* visited = visited_list->mass;
  const hnswlib::vl_type tag = visited_list->curV;
  std::vector<Ranked>& nearest = s.nearest;
  std::vector<Ranked>& candidates = s.candidates;
  nearest.clear();
  candidates.clear();
  float bound = std::numeric_limits<float>::max();
  if (!deletions || !graph.isMarkedDeleted(current)) {
    bound = current_distance;
    nearest.emplace_back(current_distance, current);
  }
  candidates.emplace_back(current_distance, current);
  visited[current] = tag;
  while (!candidates.empty()) {
    const Ranked next = candidates.front();
    if (next.first > bound && (nearest.size() == ef || !deletions)) break;
    std::pop_heap(candidates.begin(), candidates.end(), NearerFirst{});
    candidates.pop_back();
    hnswlib::linklistsizeint* list = graph.get_linklist0(next.second);
    const size_t size = graph.getListCount(list);
    const auto* ids = reinterpret_cast<const hnswlib::tableint*>(list + 1);
    s.batch.clear();
    for (size_t j = 0; j < size; ++j) {
      const hnswlib::tableint id = ids[j];
      if (visited[id] == tag) continue;
      visited[id] = tag;
      s.batch.push_back(id);
      PrefetchLines(graph.getDataByInternalId(id), bytes, lines);
    }
    for (const hnswlib::tableint id : s.batch) {
      const float d = distance(id);
      // hnswlib's test as written (NaN-faithful).
      if (!(nearest.size() < ef || bound > d)) continue;
      candidates.emplace_back(d, id);
      std::push_heap(candidates.begin(), candidates.end(), NearerFirst{});
      __builtin_prefetch(graph.get_linklist0(candidates.front().second), 0, 3);
      if (!deletions || !graph.isMarkedDeleted(id)) {
        nearest.emplace_back(d, id);
        std::push_heap(nearest.begin(), nearest.end(), FartherFirst{});
        if (nearest.size() > ef) {
          std::pop_heap(nearest.begin(), nearest.end(), FartherFirst{});
          nearest.pop_back();
        }
      }
      if (!nearest.empty()) bound = nearest.front().first;
    }
  }
  graph.visited_list_pool_->releaseVisitedList(visited_list);
  // Down to k as searchKnn does it (popping the farthest: among entries tied
  // at the k-th distance the heap, not the label, decides which stay), then
  // nearest first, equal distances by label (searchKnn's result order).
  while (nearest.size() > k) {
    std::pop_heap(nearest.begin(), nearest.end(), FartherFirst{});
    nearest.pop_back();
  }
  std::vector<std::pair<float, hnswlib::labeltype>>& labelled = s.labelled;
  labelled.clear();
  for (const Ranked& r : nearest) {
    labelled.emplace_back(r.first, graph.getExternalLabel(r.second));
  }
  std::sort(labelled.begin(), labelled.end());
  out->clear();
  for (const auto& [d, label] : labelled) {
    out->push_back(AnnIndex::Candidate{label, 1.0f - d});
  }
}

absl::Status CheckRange(const char* field, uint64_t value, uint64_t lo,
                        uint64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// The leading principal directions of `sample` (ann_index.h), dim x r
// column-major, or empty when no projection applies. The second moment is
// uncentred: projecting onto its eigenvectors preserves inner products best.
std::vector<float> FitProjection(uint32_t dim, double energy,
                                 absl::Span<const float> sample,
                                 MemoryBudget* budget) {
  const size_t n = sample.size() / dim;
  if (energy <= 0.0 || n < dim || dim > AnnIndex::kMaxProjectedDim ||
      dim < 2 * AnnIndex::kProjectionStep) {
    return {};
  }
  // Transient: the moment matrix and the solver's (about three of them).
  MemoryReservation scratch;
  if (budget != nullptr) {
    absl::StatusOr<MemoryReservation> reserved =
        budget->Reserve(3 * uint64_t{dim} * dim * sizeof(float),
                        "fitting the search index projection");
    if (!reserved.ok()) return {};
    scratch = *std::move(reserved);
  }
  const Eigen::Map<const Eigen::MatrixXf> vectors(sample.data(), dim,
                                                  static_cast<Eigen::Index>(n));
  Eigen::MatrixXf moment = Eigen::MatrixXf::Zero(dim, dim);
  moment.selfadjointView<Eigen::Lower>().rankUpdate(vectors);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXf> solver(moment);
  if (solver.info() != Eigen::Success) return {};
  // Ascending eigenvalues: the leading directions are the last columns.
  const Eigen::VectorXd values =
      solver.eigenvalues().cast<double>().cwiseMax(0.0);
  const double total = values.sum();
  if (!(total > 0.0)) return {};
  uint32_t kept_dims = 0;
  double kept = 0.0;
  for (uint32_t i = 0; i < dim; ++i) {
    kept += values[dim - 1 - i];
    if ((i + 1) % AnnIndex::kProjectionStep == 0 && kept >= energy * total) {
      kept_dims = i + 1;
      break;
    }
  }
  if (kept_dims == 0 || kept_dims > dim / 2) return {};
  std::vector<float> projection(size_t{dim} * kept_dims);
  Eigen::Map<Eigen::MatrixXf>(projection.data(), dim, kept_dims) =
      solver.eigenvectors().rightCols(kept_dims).rowwise().reverse();
  return projection;
}

}  // namespace

absl::Status AnnIndexOptions::Validate() const {
  if (auto s = CheckRange("index_m", m, 2, 256); !s.ok()) return s;
  if (auto s = CheckRange("index_ef_construction", ef_construction, 1, 10000);
      !s.ok())
    return s;
  if (!(projection_energy >= 0.0 && projection_energy <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "projection_energy must be in [0, 1], got ", projection_energy));
  }
  if (!(reuse_repair >= 0.0f && reuse_repair <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reuse_repair must be in [0, 1], got ", reuse_repair));
  }
  return CheckRange("index_ef_search", ef_search, 1, 10000);
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Create(
    uint32_t dim, const AnnIndexOptions& options,
    std::shared_ptr<MemoryBudget> budget, absl::Span<const float> sample) {
  if (auto s = CheckRange("dim", dim, 1, 65536); !s.ok()) return s;
  if (auto s = options.Validate(); !s.ok()) return s;
  if (sample.size() % dim != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the projection sample holds ", sample.size(),
                     " floats, not a whole number of ", dim, "-float vectors"));
  }
  std::vector<float> projection =
      FitProjection(dim, options.projection_energy, sample, budget.get());
  MemoryReservation projection_bytes;
  if (!projection.empty() && budget != nullptr) {
    absl::StatusOr<MemoryReservation> reserved = budget->Reserve(
        projection.size() * sizeof(float), "the search index projection");
    if (reserved.ok()) {
      projection_bytes = *std::move(reserved);
    } else {
      projection.clear();  // index as given
    }
  }
  return std::unique_ptr<AnnIndex>(new AnnIndex(dim, options, std::move(budget),
                                                std::move(projection),
                                                std::move(projection_bytes)));
}

AnnIndex::AnnIndex(uint32_t dim, const AnnIndexOptions& options,
                   std::shared_ptr<MemoryBudget> budget,
                   std::vector<float> projection,
                   MemoryReservation projection_bytes)
    : dim_(dim),
      options_(options),
      budget_(std::move(budget)),
      projection_(std::move(projection)),
      search_dim_(projection_.empty()
                      ? dim
                      : static_cast<uint32_t>(projection_.size() / dim)),
      half_(UsesHalf(dim, search_dim_, options)),
      projection_bytes_(std::move(projection_bytes)),
      space_(NewSpace(search_dim_, half_)) {}

bool AnnIndex::UsesHalf(uint32_t dim, uint32_t search_dim,
                        const AnnIndexOptions& options) {
  return HOPFIELD_HAVE_F16C && options.half_projected && search_dim != dim &&
         search_dim % 16 == 0;
}

void AnnIndex::EncodeProjected(const float* vector, char* out) const {
  thread_local std::vector<float> scratch;
  scratch.resize(search_dim_);
  Project(vector, scratch.data());
  if (!half_) {
    std::memcpy(out, scratch.data(), search_dim_ * sizeof(float));
    return;
  }
#if HOPFIELD_HAVE_F16C
  for (size_t i = 0; i < search_dim_; i += 8) {  // search_dim_ % 16 == 0
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(scratch.data() + i),
                                     _MM_FROUND_TO_NEAREST_INT));
  }
#endif
}

void AnnIndex::Project(const float* vector, float* out) const {
  const Eigen::Map<const Eigen::MatrixXf> directions(projection_.data(), dim_,
                                                     search_dim_);
  Eigen::Map<Eigen::VectorXf> projected(out, search_dim_);
  projected.noalias() =
      directions.transpose() * Eigen::Map<const Eigen::VectorXf>(vector, dim_);
  const float norm = projected.norm();
  if (norm > 0.0f) projected /= norm;
}

AnnIndex::~AnnIndex() = default;

uint64_t AnnIndex::BytesForCapacity(uint64_t vector_bytes,
                                    const AnnIndexOptions& options,
                                    uint64_t capacity) {
  if (capacity == 0) return 0;
  const uint64_t m = options.m;
  const uint64_t level0 = 2 * m * sizeof(hnswlib::tableint) +
                          sizeof(hnswlib::linklistsizeint) + vector_bytes +
                          sizeof(hnswlib::labeltype);
  const uint64_t upper_links =
      m * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  // Levels above 0: P(level >= l) = m^-l, so 1/(m-1) of them per entry on
  // average; counted twice for slack.
  const uint64_t upper = 2 * upper_links / (m - 1) + 1;
  const uint64_t per_entry = level0 + upper + sizeof(void*) + sizeof(int) +
                             sizeof(std::mutex) + kLabelEntryBytes +
                             kVisitedLists * sizeof(uint16_t) +
                             sizeof(hnswlib::tableint);  // free_slots_
  return capacity * per_entry + kUpdateLocks * sizeof(std::mutex);
}

absl::Status AnnIndex::EnsureCapacityLocked(uint64_t count) {
  if (graph_ != nullptr && count <= capacity_) return absl::OkStatus();
  const uint64_t capacity =
      std::max({count, kFirstCapacity, capacity_ + capacity_ / 2});
  const uint64_t bytes = BytesForCapacity(vector_bytes(), options_, capacity);
  MemoryReservation growth;
  if (budget_ != nullptr) {
    absl::StatusOr<MemoryReservation> reserved =
        budget_->Reserve(bytes - reservation_.bytes(), "the search index");
    if (!reserved.ok()) return reserved.status();
    growth = *std::move(reserved);
  }
  try {
    // One entry per slot, so MarkDeleted never allocates.
    free_slots_.reserve(capacity);
    if (graph_ == nullptr) {
      graph_ = std::make_unique<Graph>(space_.get(), capacity, options_.m,
                                       options_.ef_construction, options_.seed);
      graph_->setEf(options_.ef_search);
      // hnswlib's concurrent insertion (AddParallel) reads the entry point
      // without its lock (a stale one is still a valid start: it only
      // gains levels) and shares the level generator unlocked (two entries
      // may draw the same level). Benign by its design; everything else
      // stays checked. Annotated once per graph (a resize keeps the object).
      ABSL_ANNOTATE_BENIGN_RACE_SIZED(&graph_->enterpoint_node_,
                                      sizeof(graph_->enterpoint_node_),
                                      "hnswlib entry point");
      ABSL_ANNOTATE_BENIGN_RACE_SIZED(&graph_->level_generator_,
                                      sizeof(graph_->level_generator_),
                                      "hnswlib level generator");
    } else {
      graph_->resizeIndex(capacity);
    }
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the search index could not grow to ", capacity, " entries"));
  } catch (const std::runtime_error& e) {
    // hnswlib reports a failed malloc/realloc this way (the old graph is
    // intact).
    return absl::ResourceExhaustedError(
        absl::StrCat("the search index could not grow to ", capacity,
                     " entries: ", e.what()));
  }
  capacity_ = capacity;
  reservation_.Absorb(std::move(growth));
  return absl::OkStatus();
}

absl::Status AnnIndex::Add(absl::Span<const uint64_t> ids,
                           absl::Span<const float> vectors, uint32_t threads) {
  if (vectors.size() != ids.size() * dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", ids.size(), " x ", dim_, " = ",
                     ids.size() * dim_, " floats, got ", vectors.size()));
  }
  for (const uint64_t id : ids) {
    if (id == 0) return absl::InvalidArgumentError("index ids must not be 0");
  }
  if (ids.empty()) return absl::OkStatus();
  WriterLock add_lock(&add_mu_);
  {
    WriterLock lock(&mu_);
    // New ids take tombstones' slots first (see InsertLocked); ids already
    // present (live or deleted) keep theirs.
    uint64_t fresh = 0;
    uint64_t revived = 0;
    if (graph_ != nullptr) {
      for (const uint64_t id : ids) {
        const auto found = graph_->label_lookup_.find(id);
        if (found == graph_->label_lookup_.end()) {
          ++fresh;
        } else if (graph_->isMarkedDeleted(found->second)) {
          ++revived;
        }
      }
    } else {
      fresh = ids.size();
    }
    const uint64_t present = graph_ == nullptr ? 0 : graph_->cur_element_count;
    const uint64_t reusable = threads > 1 || !options_.reuse_deleted
                                  ? 0
                                  : deleted_ - std::min(deleted_, revived);
    const uint64_t growth = fresh - std::min(fresh, reusable);
    if (auto s = EnsureCapacityLocked(present + growth); !s.ok()) return s;
  }
  if (threads > 1 && ids.size() > 1) return AddParallel(ids, vectors, threads);
  const size_t bytes = vector_bytes();
  std::vector<char> encoded;
  for (size_t begin = 0; begin < ids.size(); begin += kAddSlice) {
    const size_t end = std::min(ids.size(), begin + kAddSlice);
    const char* slice =
        reinterpret_cast<const char*>(vectors.data() + begin * dim_);
    if (projected()) {  // outside the lock
      encoded.resize((end - begin) * bytes);
      for (size_t i = begin; i < end; ++i) {
        EncodeProjected(vectors.data() + i * dim_,
                        encoded.data() + (i - begin) * bytes);
      }
      slice = encoded.data();
    }
    // The writer lock is held for kAddHold at a time (at least one
    // insertion), so a search waits about that long, not for the slice.
    for (size_t i = begin; i < end;) {
      WriterLock lock(&mu_);
      const auto until = std::chrono::steady_clock::now() + kAddHold;
      do {
        if (auto s = InsertLocked(slice + (i - begin) * bytes, ids[i]);
            !s.ok()) {
          return s;
        }
        ++i;
      } while (i < end && std::chrono::steady_clock::now() < until);
    }
  }
  return absl::OkStatus();
}

absl::Status AnnIndex::InsertLocked(const char* vector, uint64_t id) {
  try {
    const auto found = graph_->label_lookup_.find(id);
    if (found != graph_->label_lookup_.end()) {
      // Replaced in place (a deleted entry is revived first).
      if (graph_->isMarkedDeleted(found->second)) --deleted_;
      graph_->addPoint(vector, id);
      return absl::OkStatus();
    }
    while (options_.reuse_deleted && !free_slots_.empty()) {
      const hnswlib::tableint slot = free_slots_.back();
      free_slots_.pop_back();
      if (!graph_->isMarkedDeleted(slot)) continue;  // revived since
      // A new id takes a tombstone's slot (what hnswlib 0.7's
      // replace_deleted does): relabelled, undeleted, its vector replaced
      // and its neighbourhood repaired by updatePoint, so churn does not
      // grow the graph.
      const hnswlib::labeltype old = graph_->getExternalLabel(slot);
      try {
        graph_->label_lookup_.emplace(id, slot);  // id is not present
      } catch (const std::bad_alloc&) {
        free_slots_.push_back(slot);  // where it was popped from
        throw;
      }
      // The old label maps here unless it was stored again elsewhere.
      if (const auto was = graph_->label_lookup_.find(old);
          was != graph_->label_lookup_.end() && was->second == slot) {
        graph_->label_lookup_.erase(was);
      }
      graph_->setExternalLabel(slot, id);
      graph_->unmarkDeletedInternal(slot);
      --deleted_;
      graph_->updatePoint(vector, slot, options_.reuse_repair);
      return absl::OkStatus();
    }
    // Capacity was ensured by Add (Adds are serialised by add_mu_), so
    // only a failed allocation of upper-layer links can throw.
    graph_->addPoint(vector, id);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the search index could not insert pattern ", id, ": out of memory"));
  } catch (const std::runtime_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the search index could not insert pattern ", id, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status AnnIndex::AddParallel(absl::Span<const uint64_t> ids,
                                   absl::Span<const float> vectors,
                                   uint32_t threads) {
  const size_t n = ids.size();
  // More threads than cores (or than vectors) only add contention.
  threads = static_cast<uint32_t>(std::min<size_t>(
      {threads, n, std::max(1u, std::thread::hardware_concurrency())}));
  const size_t bytes = vector_bytes();
  std::vector<char> encoded;
  const char* data = reinterpret_cast<const char*>(vectors.data());
  if (projected()) {  // outside the lock
    encoded.resize(n * bytes);
    RunParts(nullptr, threads, [&](size_t part) {
      for (size_t i = part * n / threads; i < (part + 1) * n / threads; ++i) {
        EncodeProjected(vectors.data() + i * dim_, encoded.data() + i * bytes);
      }
    });
    data = encoded.data();
  }
  WriterLock lock(&mu_);
  // New ids go in concurrently; replacements (and repeats) after them, in
  // order, one by one: hnswlib's concurrent insertion is for distinct new
  // labels.
  std::vector<size_t> fresh;
  std::vector<size_t> serial;
  fresh.reserve(n);
  {
    absl::flat_hash_set<uint64_t> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (graph_->label_lookup_.count(ids[i]) != 0 ||
          !seen.insert(ids[i]).second) {
        serial.push_back(i);
      } else {
        fresh.push_back(i);
      }
    }
  }
  // Lambdas are opaque to the lock analysis: they get the graph, not graph_.
  Graph* const graph = graph_.get();
  auto insert = [&](size_t i) { graph->addPoint(data + i * bytes, ids[i]); };
  try {
    // Interleaved parts: neighbouring (often similar) vectors go to
    // different threads, which then contend less for the same link lists.
    RunParts(nullptr, threads, [&](size_t part) {
      for (size_t j = part; j < fresh.size(); j += threads) insert(fresh[j]);
    });
    for (const size_t i : serial) {
      const auto found = graph_->label_lookup_.find(ids[i]);
      if (found != graph_->label_lookup_.end() &&
          graph_->isMarkedDeleted(found->second)) {
        --deleted_;  // addPoint revives it
      }
      insert(i);
    }
  } catch (const std::runtime_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the search index could not insert a pattern: ", e.what()));
  }
  return absl::OkStatus();
}

bool AnnIndex::MarkDeleted(uint64_t id) {
  return MarkDeleted(absl::MakeConstSpan(&id, 1)) == 1;
}

size_t AnnIndex::MarkDeleted(absl::Span<const uint64_t> ids) {
  WriterLock lock(&mu_);
  if (graph_ == nullptr) return 0;
  size_t deleted = 0;
  for (const uint64_t id : ids) {
    const auto found = graph_->label_lookup_.find(id);
    if (found == graph_->label_lookup_.end() ||
        graph_->isMarkedDeleted(found->second)) {
      continue;
    }
    // Full only of stale entries: the tombstones so far fit (fewer than
    // the capacity), and this one after them.
    if (free_slots_.size() == free_slots_.capacity()) CollectFreeSlotsLocked();
    graph_->markDeletedInternal(found->second);
    ++deleted_;
    ++deleted;
    free_slots_.push_back(found->second);
  }
  return deleted;
}

void AnnIndex::CollectFreeSlotsLocked() {
  // Entries of slots revived since they were listed: list each tombstone
  // once (fewer than the capacity reserved, so no allocation).
  free_slots_.clear();
  for (hnswlib::tableint i = 0; i < graph_->cur_element_count; ++i) {
    if (graph_->isMarkedDeleted(i)) free_slots_.push_back(i);
  }
}

bool AnnIndex::Contains(uint64_t id) const {
  ReaderLock lock(&mu_);
  if (graph_ == nullptr) return false;
  const auto found = graph_->label_lookup_.find(id);
  return found != graph_->label_lookup_.end() &&
         !graph_->isMarkedDeleted(found->second);
}

void AnnIndex::Search(absl::Span<const float> query, size_t k,
                      std::vector<Candidate>* out, SearchLoop loop) const {
  out->clear();
  if (k == 0) return;
  const void* probe = query.data();
  if (projected()) {
    thread_local std::vector<char> buffer;
    buffer.resize(vector_bytes());
    EncodeProjected(query.data(), buffer.data());
    probe = buffer.data();
  }
  ReaderLock lock(&mu_);
  if (graph_ == nullptr || graph_->cur_element_count == deleted_) return;
  if (loop == SearchLoop::kPrefetchBatch) {
    SearchGraph(*graph_, probe, k, out);
    return;
  }
  std::priority_queue<std::pair<float, hnswlib::labeltype>> found =
      graph_->searchKnn(probe, k);
  out->resize(found.size());
  // The queue pops the largest distance (the worst) first.
  for (size_t i = found.size(); i > 0; --i) {
    (*out)[i - 1] = Candidate{found.top().second, 1.0f - found.top().first};
    found.pop();
  }
}

absl::Status AnnIndex::Save(const std::string& path) const {
  ReaderLock lock(&mu_);
  if (graph_ == nullptr) {
    return absl::FailedPreconditionError("an empty index has no graph to save");
  }
  try {
    graph_->saveIndex(path);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot write the search index to ", path, ": ", e.what()));
  }
  std::error_code error;
  if (std::filesystem::file_size(path, error) == 0 || error) {
    return absl::UnavailableError(
        absl::StrCat("cannot write the search index to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Load(
    const std::string& path, uint32_t dim, const AnnIndexOptions& options,
    std::shared_ptr<MemoryBudget> budget, std::vector<float> projection) {
  if (auto s = CheckRange("dim", dim, 1, 65536); !s.ok()) return s;
  if (auto s = options.Validate(); !s.ok()) return s;
  if (projection.size() % dim != 0) {
    return absl::DataLossError(absl::StrCat("search index projection of ",
                                            projection.size(),
                                            " floats for dim ", dim));
  }
  // hnswlib's header: offsetLevel0, max_elements, cur_element_count.
  std::array<uint64_t, 3> header = {0, 0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in.read(
            reinterpret_cast<char*>(header.data()),
            static_cast<std::streamsize>(sizeof(uint64_t) * header.size()))) {
      return absl::DataLossError(
          absl::StrCat("search index file ", path, " is truncated"));
    }
  }
  const uint64_t count = header[2];
  const uint64_t capacity = std::max<uint64_t>(count, 1);
  const auto search_dim =
      projection.empty() ? dim : static_cast<uint32_t>(projection.size() / dim);
  MemoryReservation projection_bytes;
  MemoryReservation reserved;
  if (budget != nullptr) {
    if (!projection.empty()) {
      HOPFIELD_ASSIGN_OR_RETURN(
          projection_bytes, budget->Reserve(projection.size() * sizeof(float),
                                            "the search index projection"));
    }
    HOPFIELD_ASSIGN_OR_RETURN(
        reserved,
        budget->Reserve(
            BytesForCapacity(
                VectorBytes(search_dim, UsesHalf(dim, search_dim, options)),
                options, capacity),
            "the search index"));
  }
  std::unique_ptr<AnnIndex> index(new AnnIndex(dim, options, std::move(budget),
                                               std::move(projection),
                                               std::move(projection_bytes)));
  WriterLock lock(&index->mu_);
  try {
    index->graph_ = std::make_unique<Graph>(index->space_.get(), path,
                                            /*nmslib=*/false, capacity);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("search index file ", path,
                                            " cannot be read: ", e.what()));
  }
  Graph& graph = *index->graph_;
  const uint64_t expected_element =
      2 * uint64_t{options.m} * sizeof(hnswlib::tableint) +
      sizeof(hnswlib::linklistsizeint) + index->vector_bytes() +
      sizeof(hnswlib::labeltype);
  if (graph.cur_element_count != count || graph.M_ != options.m ||
      graph.maxM0_ != 2 * size_t{options.m} ||
      graph.size_data_per_element_ != expected_element) {
    return absl::DataLossError(absl::StrCat(
        "search index file ", path, " holds a graph of another shape (M ",
        graph.M_, ", ", graph.size_data_per_element_,
        " bytes per entry, expected M ", options.m, ", ", expected_element,
        ")"));
  }
  graph.setEf(options.ef_search);
  ABSL_ANNOTATE_BENIGN_RACE_SIZED(&graph.enterpoint_node_,
                                  sizeof(graph.enterpoint_node_),
                                  "hnswlib entry point");
  ABSL_ANNOTATE_BENIGN_RACE_SIZED(&graph.level_generator_,
                                  sizeof(graph.level_generator_),
                                  "hnswlib level generator");
  // hnswlib 0.6.2's loading constructor never zeroes num_deleted_ before
  // counting the tombstones into it: count them here.
  uint64_t deleted = 0;
  for (hnswlib::tableint i = 0; i < graph.cur_element_count; ++i) {
    if (graph.isMarkedDeleted(i)) ++deleted;
  }
  graph.num_deleted_ = deleted;
  index->capacity_ = capacity;
  index->deleted_ = deleted;
  index->reservation_ = std::move(reserved);
  try {
    index->free_slots_.reserve(capacity);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "the search index's free-slot list could not be allocated");
  }
  index->CollectFreeSlotsLocked();
  return index;
}

uint64_t AnnIndex::size() const {
  ReaderLock lock(&mu_);
  return graph_ == nullptr ? 0 : graph_->cur_element_count - deleted_;
}

uint64_t AnnIndex::size_with_deleted() const {
  ReaderLock lock(&mu_);
  return graph_ == nullptr ? 0 : graph_->cur_element_count;
}

uint64_t AnnIndex::memory_bytes() const {
  ReaderLock lock(&mu_);
  return BytesForCapacity(vector_bytes(), options_, capacity_) +
         projection_.size() * sizeof(float);
}

}  // namespace hopfield
