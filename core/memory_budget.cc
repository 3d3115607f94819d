#include "core/memory_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace hopfield {

std::shared_ptr<MemoryBudget> MemoryBudget::Create(uint64_t limit_bytes,
                                                   std::string name) {
  return std::shared_ptr<MemoryBudget>(
      new MemoryBudget(limit_bytes, std::move(name)));
}

MemoryBudget::MemoryBudget(uint64_t limit_bytes, std::string name)
    : limit_(limit_bytes), name_(std::move(name)) {}

uint64_t MemoryBudget::available() const {
  const uint64_t in_use = used();
  return in_use >= limit_ ? 0 : limit_ - in_use;
}

absl::Status MemoryBudget::ExhaustedError(uint64_t bytes,
                                          absl::string_view what) const {
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " needs ", bytes, " bytes, but the ", name_, " of ", limit_,
      " bytes has ", available(), " left (", used(), " in use)"));
}

bool MemoryBudget::TryTake(uint64_t bytes) {
  uint64_t in_use = used_.load(std::memory_order_relaxed);
  uint64_t next = 0;
  do {
    if (bytes > limit_ || in_use > limit_ - bytes) return false;
    next = in_use + bytes;
  } while (
      !used_.compare_exchange_weak(in_use, next, std::memory_order_relaxed));
  uint64_t peak = peak_.load(std::memory_order_relaxed);
  while (next > peak &&
         !peak_.compare_exchange_weak(peak, next, std::memory_order_relaxed)) {
  }
  return true;
}

void MemoryBudget::Give(uint64_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

absl::StatusOr<MemoryReservation> MemoryBudget::Reserve(
    uint64_t bytes, absl::string_view what) {
  if (!TryTake(bytes)) return ExhaustedError(bytes, what);
  return MemoryReservation(shared_from_this(), bytes);
}

MemoryReservation::MemoryReservation(MemoryReservation&& other) noexcept
    : budget_(std::move(other.budget_)),
      bytes_(std::exchange(other.bytes_, 0)) {}

MemoryReservation& MemoryReservation::operator=(
    MemoryReservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::move(other.budget_);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

MemoryReservation::~MemoryReservation() { Release(); }

absl::Status MemoryReservation::Resize(uint64_t bytes, absl::string_view what) {
  if (bytes == bytes_) return absl::OkStatus();
  if (bytes < bytes_) {
    budget_->Give(bytes_ - bytes);
  } else if (!budget_->TryTake(bytes - bytes_)) {
    return budget_->ExhaustedError(bytes - bytes_, what);
  }
  bytes_ = bytes;
  return absl::OkStatus();
}

void MemoryReservation::Absorb(MemoryReservation&& other) {
  if (other.bytes_ == 0) return;
  if (budget_ == nullptr) budget_ = other.budget_;
  bytes_ += std::exchange(other.bytes_, 0);
}

void MemoryReservation::Release() {
  if (budget_ != nullptr && bytes_ > 0) budget_->Give(bytes_);
  bytes_ = 0;
}

}  // namespace hopfield
