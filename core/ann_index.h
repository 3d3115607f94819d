// File: ann_index.h
//
// AnnIndex: an approximate maximum-inner-product index over unit-norm
// vectors (a bank's normalised keys F̂, algorithms.md §E.5), labelled by
// PatternId. It wraps hnswlib's HierarchicalNSW graph with the
// inner-product space (distance 1 − ⟨a, b⟩), adding what the engine needs
// around it: a reader/writer lock (hnswlib's own locks do not make a search
// safe against a concurrent insertion or resize), growth that reserves from
// the memory budget before it allocates, upserts and deletions by id, and
// errors as absl::Status instead of exceptions.
//
//   HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<AnnIndex> index,
//                             AnnIndex::Create(128, AnnIndexOptions{}));
//   HOPFIELD_RETURN_IF_ERROR(index->Add(ids, unit_vectors));
//   std::vector<AnnIndex::Candidate> top;
//   index->Search(query, /*k=*/32, &top);  // best first
//
// Vectors must be unit-norm (the caller normalises): similarities are then
// cosines in [-1, 1].
//
// Projection. Created with a sample of the vectors it will hold, the index
// fits their principal directions (the eigenvectors of the sample's second
// moment, uncentred: they preserve inner products) and, when the fewest
// leading directions (a multiple of kProjectionStep) that carry
// `projection_energy` of the sample's energy are at most half of dim, the
// graph holds each vector's normalised projection onto them instead of the
// vector. Searches are then several times cheaper (fewer floats per distance,
// a smaller graph, a faster build) and rank by the projected cosine, an
// approximation: a caller that needs the best k fetches CandidatesFor(k) or
// more and re-ranks them by the exact score (on Fashion-MNIST, 784 -> 64 dims
// keeps 93% of the energy and its graph finds the exact top-1 more often than
// the 784-dim graph does). A projected graph holds its vectors as IEEE half
// floats (`half_projected`, where the build targets F16C): half the bytes read
// per hop, and a rounding (2^-11 relative per component) far below the
// projection's own error. Data without such structure (isotropic, or a sample
// smaller than dim) is indexed as given, in float32: that ranking is the exact
// top-k the retriever's certificate assumes. Deleted ids stay in the graph as
// tombstones that searches step over (hnswlib's markDelete); re-adding a
// deleted or stored id replaces its vector in place, and a new id takes a
// tombstone's slot when there is one (relabelled, its vector replaced and its
// neighbourhood repaired with hnswlib's updatePoint, as hnswlib 0.7's
// replace_deleted does), so a stream of deletions and insertions (churn) does
// not grow the graph. Tombstones count in size_with_deleted() and memory.
//
// Thread-safe: Search, Contains and the accessors run concurrently with each
// other; Add and MarkDeleted take the writer lock (a search waits for about
// kAddHold of an Add, see Add; a whole batch of a multi-threaded Add);
// concurrent Adds run one after the other.
#ifndef HOPFIELD_CORE_ANN_INDEX_H_
#define HOPFIELD_CORE_ANN_INDEX_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include "core/memory_budget.h"
#include "core/mutex.h"

namespace hnswlib {
template <typename T>
class SpaceInterface;
template <typename T>
class HierarchicalNSW;
}  // namespace hnswlib

namespace hopfield {

struct AnnIndexOptions {
  // Graph degree (hnswlib M; layer 0 keeps 2M links). REQUIRES: 2..256.
  uint32_t m = 16;
  // Candidate list while inserting. REQUIRES: 1..10000.
  uint32_t ef_construction = 200;
  // Candidate list while searching (a search for k uses max(ef_search, k)).
  // REQUIRES: 1..10000.
  uint32_t ef_search = 64;
  // Seeds the level generator: the same inserts in the same order build the
  // same graph.
  uint64_t seed = 100;
  // The share of a sample's energy the projection keeps (see the file
  // comment); 0 never projects. REQUIRES: [0, 1].
  double projection_energy = 0.92;
  // Whether a new id takes a tombstone's slot (see the file comment), and
  // the share of that slot's old neighbours whose links updatePoint
  // recomputes (hnswlib 0.7's replace_deleted uses 1: all of them, at about
  // 9 insertions' cost; bench/README "Index under churn" measures the
  // trade-off). REQUIRES: reuse_repair in [0, 1].
  bool reuse_deleted = true;
  float reuse_repair = 0.5f;
  // Whether a projected graph holds half floats (see the file comment;
  // bench/README "Half floats in the projected graph"). Ignored, float32
  // kept, when the build's target has no F16C.
  bool half_projected = true;

  // INVALID_ARGUMENT naming the field, the range and the value.
  absl::Status Validate() const;
};

class AnnIndex {
 public:
  // Creates an empty index for `dim`-float vectors. `budget` (may be null:
  // unaccounted) is charged for the graph before every allocation and for
  // the projection fit's transient matrices. `sample` (unit vectors, dim
  // floats each, contiguous; may be empty) is what a projection is fitted to
  // (see the file comment); none is fitted when the sample holds fewer than
  // dim vectors, dim exceeds kMaxProjectedDim, or the budget refuses the fit.
  // Errors: INVALID_ARGUMENT for dim outside 1..65536, bad options, or a
  // sample that is not a whole number of vectors.
  static constexpr uint32_t kProjectionStep = 16;
  static constexpr uint32_t kMaxProjectedDim = 2048;
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Create(
      uint32_t dim, const AnnIndexOptions& options,
      std::shared_ptr<MemoryBudget> budget = nullptr,
      absl::Span<const float> sample = {});

  ~AnnIndex();
  AnnIndex(const AnnIndex&) = delete;
  AnnIndex& operator=(const AnnIndex&) = delete;

  uint32_t dim() const { return dim_; }
  const AnnIndexOptions& options() const { return options_; }
  // The dimension the graph searches in: dim() unless projected.
  uint32_t search_dim() const { return search_dim_; }
  bool projected() const { return search_dim_ != dim_; }
  // Whether the graph holds half floats (projected, half_projected, F16C).
  bool half() const { return half_; }
  // Bytes of one vector as the graph holds it.
  uint64_t vector_bytes() const { return VectorBytes(search_dim_, half_); }
  // How many candidates to fetch so that re-ranking them by the exact score
  // yields the best k: 2k when projected, else k.
  size_t CandidatesFor(size_t k) const { return projected() ? 2 * k : k; }

  // Inserts (or replaces) vectors: column i of `vectors` (dim floats each,
  // contiguous, `ids.size()` columns, unit norm) under ids[i]. Grows the
  // graph first when it is full (by 1/2, at least to hold the batch),
  // reserving the growth from the budget (new ids first take tombstones'
  // slots, see the file comment). Insertion holds the writer lock for about
  // kAddHold at a time (at least one insertion; a slot's repair costs about
  // two insertions), so concurrent searches wait that long, not for the
  // batch; a search in between sees a prefix of the batch. Ids repeated
  // within the batch: the last vector wins.
  // Errors: INVALID_ARGUMENT when vectors.size() != ids.size() * dim or an
  // id is 0; RESOURCE_EXHAUSTED when the growth does not fit the budget
  // (nothing of the batch is inserted) or, rarely, when hnswlib fails to
  // allocate an entry's upper-layer links (a prefix of the batch is in; with
  // threads > 1 some of the batch).
  //
  // threads > 1 inserts the batch's new ids from that many threads (at most
  // the hardware's; hnswlib's
  // concurrent insertion; ids already present or repeated in the batch are
  // then inserted one by one, in order) and holds the writer lock for the
  // whole batch, taking no tombstone's slot: meant for building an index
  // that nothing searches yet. The
  // graph then depends on the threads' interleaving (not reproducible from
  // the seed), and hnswlib's level generator is shared by the threads
  // unlocked (a benign race: two entries may draw the same level).
  static constexpr size_t kAddSlice = 64;  // vectors projected at a time
  static constexpr std::chrono::microseconds kAddHold{500};
  absl::Status Add(absl::Span<const uint64_t> ids,
                   absl::Span<const float> vectors, uint32_t threads = 1);

  // Tombstones `id` (searches no longer return it; its slot goes to a later
  // new id). Unknown or already deleted ids are ignored. Returns true if a
  // live entry was deleted. Never allocates.
  bool MarkDeleted(uint64_t id);
  // The same for every id of `ids` under one hold of the writer lock;
  // returns the live entries deleted.
  size_t MarkDeleted(absl::Span<const uint64_t> ids);

  // True if `id` is in the index and not deleted.
  bool Contains(uint64_t id) const;

  struct Candidate {
    uint64_t id = 0;
    // ⟨query, vector⟩, or the projections' cosine when projected().
    float similarity = 0.0f;
  };
  // How Search walks the graph. kPrefetchBatch (the default): hnswlib's
  // search algorithm, with each expanded node's unvisited neighbours
  // prefetched (whole vectors once the graph outgrows the cache, their first
  // lines before) before any of their distances is computed: faster once the
  // graph outgrows the cache, the same candidates. kHnswlib: hnswlib's own
  // searchKnn, for comparison (benchmarks, tests).
  enum class SearchLoop { kPrefetchBatch, kHnswlib };
  // The (approximately) `k` most similar live vectors to `query` (dim
  // floats, unit norm), best first (equal similarities by id), into `out`
  // (cleared first; fewer when the index holds fewer). A thread's warm
  // searches allocate nothing with kPrefetchBatch (hnswlib's searchKnn
  // allocates its queues).
  void Search(absl::Span<const float> query, size_t k,
              std::vector<Candidate>* out,
              SearchLoop loop = SearchLoop::kPrefetchBatch) const;

  // Persistence (a bank keeps its index across restarts, memory_bank.h):
  // Save writes the graph (hnswlib's format: vectors as searched, links,
  // labels, tombstones) to `path` under the reader lock; the projection
  // (projection()) is the caller's to store beside it. Errors:
  // FAILED_PRECONDITION for an index that has no graph yet; UNAVAILABLE when
  // the file cannot be written.
  absl::Status Save(const std::string& path) const;
  // Reads what Save wrote, with the same dim, options (m in particular) and
  // projection, reserving its memory from `budget`. The file must be whole
  // (the caller checks a checksum first: hnswlib trusts its input).
  // Errors: DATA_LOSS when the file is not a graph of that shape;
  // RESOURCE_EXHAUSTED when the budget cannot hold it.
  static absl::StatusOr<std::unique_ptr<AnnIndex>> Load(
      const std::string& path, uint32_t dim, const AnnIndexOptions& options,
      std::shared_ptr<MemoryBudget> budget, std::vector<float> projection);
  // dim x search_dim floats, column-major; empty when not projected.
  const std::vector<float>& projection() const { return projection_; }

  // Live entries; entries including tombstones.
  uint64_t size() const;
  uint64_t size_with_deleted() const;
  // Bytes the index holds (its reservation against the budget): vectors,
  // links, labels, locks, at the current capacity, and the projection.
  uint64_t memory_bytes() const;

  // Bytes an index of `capacity` entries of `vector_bytes` each (see
  // vector_bytes()) takes with these options (what Add reserves; an
  // estimate of hnswlib's layout, upper layers at their expected size).
  static uint64_t BytesForCapacity(uint64_t vector_bytes,
                                   const AnnIndexOptions& options,
                                   uint64_t capacity);
  // Bytes of a `search_dim` vector in float32, or half floats with `half`.
  static uint64_t VectorBytes(uint32_t search_dim, bool half) {
    return uint64_t{search_dim} * (half ? 2 : 4);
  }

 private:
  AnnIndex(uint32_t dim, const AnnIndexOptions& options,
           std::shared_ptr<MemoryBudget> budget, std::vector<float> projection,
           MemoryReservation projection_bytes);
  // Writes the normalised projection of `vector` (dim floats) into `out`
  // (search_dim floats).
  void Project(const float* vector, float* out) const;
  // Writes the graph's form of `vector` (dim floats; projected() only)
  // into `out` (vector_bytes()): its normalised projection, in half floats
  // when half().
  void EncodeProjected(const float* vector, char* out) const;
  // Whether an index with these options and `search_dim` (of `dim`) holds
  // half floats.
  static bool UsesHalf(uint32_t dim, uint32_t search_dim,
                       const AnnIndexOptions& options);
  // Inserts one vector (vector_bytes(), the graph's form) under `id`:
  // replaces a present id's vector, else takes a free slot, else a new one
  // (capacity ensured). Errors: RESOURCE_EXHAUSTED when hnswlib fails to
  // allocate.
  absl::Status InsertLocked(const char* vector, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lists every tombstone in free_slots_ once (drops revived slots).
  void CollectFreeSlotsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Add with threads > 1 (capacity ensured, add_mu_ held).
  absl::Status AddParallel(absl::Span<const uint64_t> ids,
                           absl::Span<const float> vectors, uint32_t threads)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(add_mu_);
  // Grows the graph to hold `count` entries in all (writer lock held).
  absl::Status EnsureCapacityLocked(uint64_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t dim_;
  AnnIndexOptions options_;
  const std::shared_ptr<MemoryBudget> budget_;
  // dim x search_dim_, column-major (the leading principal directions);
  // empty when not projected. Immutable.
  const std::vector<float> projection_;
  const uint32_t search_dim_;
  const bool half_;
  const MemoryReservation projection_bytes_;
  std::unique_ptr<hnswlib::SpaceInterface<float>> space_;

  // Held through a whole Add (capacity, then the slices), outside mu_.
  Mutex add_mu_;
  // Writer-preferring: a stream of searches must not starve insertion.
  mutable Mutex mu_{Mutex::Preference::kWriters};
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph_ ABSL_GUARDED_BY(mu_);
  uint64_t capacity_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t deleted_ ABSL_GUARDED_BY(mu_) = 0;
  // Slots of tombstones, for new ids (InsertLocked); may list a slot
  // revived since (skipped when taken). Capacity reserved with the graph.
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  MemoryReservation reservation_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_ANN_INDEX_H_
