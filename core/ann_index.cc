#include "core/ann_index.h"

#include <algorithm>
#include <exception>
#include <mutex>
#include <new>
#include <queue>
#include <stdexcept>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hnswlib/hnswlib.h"

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

absl::Status CheckRange(const char* field, uint64_t value, uint64_t lo,
                        uint64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AnnIndexOptions::Validate() const {
  if (auto s = CheckRange("index_m", m, 2, 256); !s.ok()) return s;
  if (auto s = CheckRange("index_ef_construction", ef_construction, 1, 10000);
      !s.ok())
    return s;
  return CheckRange("index_ef_search", ef_search, 1, 10000);
}

absl::StatusOr<std::unique_ptr<AnnIndex>> AnnIndex::Create(
    uint32_t dim, const AnnIndexOptions& options,
    std::shared_ptr<MemoryBudget> budget) {
  if (auto s = CheckRange("dim", dim, 1, 65536); !s.ok()) return s;
  if (auto s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<AnnIndex>(
      new AnnIndex(dim, options, std::move(budget)));
}

AnnIndex::AnnIndex(uint32_t dim, const AnnIndexOptions& options,
                   std::shared_ptr<MemoryBudget> budget)
    : dim_(dim),
      options_(options),
      budget_(std::move(budget)),
      space_(std::make_unique<hnswlib::InnerProductSpace>(dim)) {}

AnnIndex::~AnnIndex() = default;

uint64_t AnnIndex::BytesForCapacity(uint32_t dim,
                                    const AnnIndexOptions& options,
                                    uint64_t capacity) {
  if (capacity == 0) return 0;
  const uint64_t m = options.m;
  const uint64_t level0 =
      2 * m * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint) +
      uint64_t{dim} * sizeof(float) + sizeof(hnswlib::labeltype);
  const uint64_t upper_links =
      m * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  // Levels above 0: P(level >= l) = m^-l, so 1/(m-1) of them per entry on
  // average; counted twice for slack.
  const uint64_t upper = 2 * upper_links / (m - 1) + 1;
  const uint64_t per_entry = level0 + upper + sizeof(void*) + sizeof(int) +
                             sizeof(std::mutex) + kLabelEntryBytes +
                             kVisitedLists * sizeof(uint16_t);
  return capacity * per_entry + kUpdateLocks * sizeof(std::mutex);
}

absl::Status AnnIndex::EnsureCapacityLocked(uint64_t count) {
  if (graph_ != nullptr && count <= capacity_) return absl::OkStatus();
  const uint64_t capacity =
      std::max({count, kFirstCapacity, capacity_ + capacity_ / 2});
  const uint64_t bytes = BytesForCapacity(dim_, options_, capacity);
  MemoryReservation growth;
  if (budget_ != nullptr) {
    absl::StatusOr<MemoryReservation> reserved =
        budget_->Reserve(bytes - reservation_.bytes(), "the search index");
    if (!reserved.ok()) return reserved.status();
    growth = *std::move(reserved);
  }
  try {
    if (graph_ == nullptr) {
      graph_ = std::make_unique<Graph>(space_.get(), capacity, options_.m,
                                       options_.ef_construction, options_.seed);
      graph_->setEf(options_.ef_search);
    } else {
      graph_->resizeIndex(capacity);
    }
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
                           absl::Span<const float> vectors) {
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
    const uint64_t present = graph_ == nullptr ? 0 : graph_->cur_element_count;
    if (auto s = EnsureCapacityLocked(present + ids.size()); !s.ok()) return s;
  }
  for (size_t begin = 0; begin < ids.size(); begin += kAddSlice) {
    const size_t end = std::min(ids.size(), begin + kAddSlice);
    WriterLock lock(&mu_);
    for (size_t i = begin; i < end; ++i) {
      const auto found = graph_->label_lookup_.find(ids[i]);
      if (found != graph_->label_lookup_.end() &&
          graph_->isMarkedDeleted(found->second)) {
        --deleted_;  // addPoint revives it
      }
      try {
        // Capacity was ensured above (Adds are serialised by add_mu_), so
        // only a failed allocation of upper-layer links can throw.
        graph_->addPoint(vectors.data() + i * dim_, ids[i]);
      } catch (const std::runtime_error& e) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the search index could not insert pattern ", ids[i],
                         ": ", e.what()));
      }
    }
  }
  return absl::OkStatus();
}

bool AnnIndex::MarkDeleted(uint64_t id) {
  WriterLock lock(&mu_);
  if (graph_ == nullptr) return false;
  const auto found = graph_->label_lookup_.find(id);
  if (found == graph_->label_lookup_.end() ||
      graph_->isMarkedDeleted(found->second)) {
    return false;
  }
  graph_->markDeletedInternal(found->second);
  ++deleted_;
  return true;
}

bool AnnIndex::Contains(uint64_t id) const {
  ReaderLock lock(&mu_);
  if (graph_ == nullptr) return false;
  const auto found = graph_->label_lookup_.find(id);
  return found != graph_->label_lookup_.end() &&
         !graph_->isMarkedDeleted(found->second);
}

void AnnIndex::Search(absl::Span<const float> query, size_t k,
                      std::vector<Candidate>* out) const {
  out->clear();
  if (k == 0) return;
  ReaderLock lock(&mu_);
  if (graph_ == nullptr || graph_->cur_element_count == deleted_) return;
  std::priority_queue<std::pair<float, hnswlib::labeltype>> found =
      graph_->searchKnn(query.data(), k);
  out->resize(found.size());
  // The queue pops the largest distance (the worst) first.
  for (size_t i = found.size(); i > 0; --i) {
    (*out)[i - 1] = Candidate{found.top().second, 1.0f - found.top().first};
    found.pop();
  }
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
  return BytesForCapacity(dim_, options_, capacity_);
}

}  // namespace hopfield
