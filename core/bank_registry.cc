#include "core/bank_registry.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield {

BankRegistry::BankRegistry(RegistryOptions options)
    : options_(std::move(options)) {
  if (options_.separation_update == SeparationUpdate::kDeferred) {
    refresher_ = std::thread([this] { RefreshLoop(); });
  }
}

BankRegistry::~BankRegistry() {
  {
    std::lock_guard<std::mutex> lock(signal_->mu);
    stopping_.store(true);
  }
  signal_->wake.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

void BankRegistry::RefreshLoop() {
  RefreshSignal& signal = *signal_;
  std::unique_lock<std::mutex> lock(signal.mu);
  while (!stopping_.load()) {
    // Writes from here on set `work` again, so none is missed by the wait.
    signal.work = false;
    lock.unlock();
    bool progress = false;   // refreshed something: go again at once
    bool bank_busy = false;  // pending work left for later
    for (const std::shared_ptr<MemoryBank>& bank : List()) {
      if (stopping_.load()) break;
      // A bank being written is left alone for a while (lock-free check
      // first), but never longer than refresh_max_delay.
      if (bank->WrittenWithin(options_.refresh_quiet_period) &&
          bank->RefreshedWithin(options_.refresh_max_delay)) {
        bank_busy = true;
        continue;
      }
      // The search index first: its turn also gives new patterns
      // index-derived separation estimates, where the exact statistics
      // (automatic β depends on them) take O(M·D_Φ) per pattern.
      // A turn that does nothing while work is pending
      // (out of budget or memory, or a removal raced its end) leaves the
      // bank for after a pause rather than spin.
      auto turn = [&](uint64_t pending, const auto& refresh) {
        if (pending == 0) return false;
        size_t done = 0;
        try {
          done = refresh();
        } catch (const std::bad_alloc&) {
          // Out of memory: the patterns stay pending; retry later.
        }
        (done > 0 ? progress : bank_busy) = true;
        return done > 0;
      };
      const bool indexed = turn(bank->index_pending(), [&] {
        return bank->RefreshIndex(std::max<size_t>(1, options_.index_batch),
                                  &stopping_);
      });
      // While the index takes patterns in (~0.25 s per 1,024 at 60k x 784,
      // estimates included), the exact turn (256 patterns against the whole
      // bank, seconds at that size) waits: a bulk load has estimates for
      // every pattern first.
      if (!indexed) {
        turn(bank->separation_pending(), [&] {
          return bank->RefreshSeparation(
              std::max<size_t>(1, options_.refresh_batch), &stopping_);
        });
      }
    }
    refresh_turns_.fetch_add(1);
    lock.lock();
    if (progress) continue;
    if (bank_busy) {
      // Come back when a busy bank may have gone quiet or is due.
      signal.wake.wait_for(lock, options_.refresh_quiet_period,
                           [this] { return stopping_.load(); });
    } else {
      // Nothing pending anywhere: sleep until a write marks patterns.
      signal.wake.wait(lock, [&] { return stopping_.load() || signal.work; });
    }
  }
}

absl::StatusOr<std::shared_ptr<MemoryBank>> BankRegistry::Create(
    absl::string_view name, const BankOptions& options) {
  BankEnvironment env;
  env.separation_update = options_.separation_update;
  env.budget = options_.budget;
  env.max_patterns = options_.max_patterns_per_bank;
  env.index_min_patterns = options_.index_min_patterns;
  env.index_build_threads = std::max<uint32_t>(1, options_.index_build_threads);
  if (options_.separation_update == SeparationUpdate::kDeferred) {
    env.on_pending = [signal = signal_] {
      {
        std::lock_guard<std::mutex> lock(signal->mu);
        signal->work = true;
      }
      signal->wake.notify_one();
    };
  }
  HOPFIELD_ASSIGN_OR_RETURN(
      std::unique_ptr<MemoryBank> created,
      MemoryBank::Create(std::string(name), options, std::move(env)));
  std::shared_ptr<MemoryBank> bank = std::move(created);
  WriterLock lock(&mu_);
  if (banks_.find(name) != banks_.end()) {
    return absl::AlreadyExistsError(
        absl::StrCat("bank \"", name, "\" already exists"));
  }
  if (banks_.size() >= options_.max_banks) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot create bank \"", name, "\": the limit is ",
                     options_.max_banks, " banks"));
  }
  banks_.emplace(name, bank);
  return bank;
}

absl::StatusOr<std::shared_ptr<MemoryBank>> BankRegistry::Get(
    absl::string_view name) const {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  ReaderLock lock(&mu_);
  const auto it = banks_.find(name);
  if (it == banks_.end()) {
    return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
  }
  return it->second;
}

absl::Status BankRegistry::Drop(absl::string_view name) {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  WriterLock lock(&mu_);
  const auto it = banks_.find(name);
  if (it == banks_.end()) {
    return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
  }
  it->second->Close();  // a training run on it stops
  banks_.erase(it);
  return absl::OkStatus();
}

std::vector<std::shared_ptr<MemoryBank>> BankRegistry::List() const {
  ReaderLock lock(&mu_);
  std::vector<std::shared_ptr<MemoryBank>> banks;
  banks.reserve(banks_.size());
  for (const auto& [name, bank] : banks_) banks.push_back(bank);
  return banks;
}

size_t BankRegistry::size() const {
  ReaderLock lock(&mu_);
  return banks_.size();
}

}  // namespace hopfield
