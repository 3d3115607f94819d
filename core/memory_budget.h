// File: memory_budget.h
//
// MemoryBudget: one account of the bytes an engine instance may hold. Every
// allocation whose size a client controls (a bank's growth, a batch's
// scratch, a reply, a training run, an index) first reserves its size here
// and gives it back when the memory is freed. A reservation that would take
// the account over its limit fails with RESOURCE_EXHAUSTED naming the budget,
// before anything is allocated, so the request that asked changes nothing.
//
//   auto budget = MemoryBudget::Create(8ull << 30, "--memory_budget_bytes");
//   HOPFIELD_ASSIGN_OR_RETURN(MemoryReservation scratch,
//                             budget->Reserve(bytes, "retrieval scratch"));
//   ... allocate and use `bytes` ...
//   // `scratch` gives the bytes back when it goes out of scope.
//
// The account is only as good as the estimates reserved: callers reserve
// what they are about to allocate, computed from the request, and keep the
// reservation for as long as the memory lives.
#ifndef HOPFIELD_CORE_MEMORY_BUDGET_H_
#define HOPFIELD_CORE_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hopfield {

class MemoryReservation;

// A byte account with a fixed limit. Created once per engine instance and
// shared (reservations keep it alive).
//
// Thread-safe: any number of concurrent Reserve/release calls (lock-free).
class MemoryBudget : public std::enable_shared_from_this<MemoryBudget> {
 public:
  // No limit: reservations always succeed but are still counted.
  static constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

  // A budget of `limit_bytes`. `name` is how error messages refer to it
  // (e.g. the flag that sets it).
  static std::shared_ptr<MemoryBudget> Create(
      uint64_t limit_bytes, std::string name = "memory budget");

  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Reserves `bytes` for `what` (a short noun phrase for the error message,
  // e.g. "bank \"faces\" growth"). The reservation gives them back when
  // destroyed. A reservation of 0 bytes always succeeds.
  // Errors: RESOURCE_EXHAUSTED when used() + bytes would exceed limit(); the
  // message names the budget, its limit, what is in use and what was asked.
  absl::StatusOr<MemoryReservation> Reserve(uint64_t bytes,
                                            absl::string_view what);

  uint64_t limit() const { return limit_; }
  const std::string& name() const { return name_; }
  // Bytes currently reserved.
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  // limit() - used(), or 0 when over (never, by construction).
  uint64_t available() const;
  // The most bytes ever reserved at once.
  uint64_t peak() const { return peak_.load(std::memory_order_relaxed); }

  // The error a failed reservation returns, for callers that size work
  // against available() themselves.
  absl::Status ExhaustedError(uint64_t bytes, absl::string_view what) const;

 private:
  friend class MemoryReservation;

  MemoryBudget(uint64_t limit_bytes, std::string name);

  // Adds `bytes` if the limit allows. Returns false otherwise.
  bool TryTake(uint64_t bytes);
  void Give(uint64_t bytes);

  const uint64_t limit_;
  const std::string name_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> peak_{0};
};

// Bytes held against a MemoryBudget; gives them back when destroyed. Move
// only. An empty (default-constructed) reservation holds nothing.
//
// Thread-compatible: one owner at a time.
class MemoryReservation {
 public:
  MemoryReservation() = default;
  MemoryReservation(MemoryReservation&& other) noexcept;
  MemoryReservation& operator=(MemoryReservation&& other) noexcept;
  MemoryReservation(const MemoryReservation&) = delete;
  MemoryReservation& operator=(const MemoryReservation&) = delete;
  ~MemoryReservation();

  uint64_t bytes() const { return bytes_; }

  // Changes the reservation to `bytes`: growing takes the difference from
  // the budget, shrinking gives it back. On error nothing changes.
  // REQUIRES: the reservation came from a budget (not default-constructed),
  // or `bytes` == 0.
  // Errors: RESOURCE_EXHAUSTED as MemoryBudget::Reserve, for the growth.
  absl::Status Resize(uint64_t bytes, absl::string_view what);

  // Gives everything back now; the reservation is then empty.
  void Release();
  // Takes over `other`'s bytes (without touching the budget), leaving it
  // empty: memory reserved ahead of a change becomes part of what the
  // change keeps. REQUIRES: both come from the same budget, or one is empty.
  void Absorb(MemoryReservation&& other);

 private:
  friend class MemoryBudget;
  MemoryReservation(std::shared_ptr<MemoryBudget> budget, uint64_t bytes)
      : budget_(std::move(budget)), bytes_(bytes) {}

  std::shared_ptr<MemoryBudget> budget_;
  uint64_t bytes_ = 0;
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_MEMORY_BUDGET_H_
