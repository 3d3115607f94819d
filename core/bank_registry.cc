#include "core/bank_registry.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield {

BankRegistry::BankRegistry(RegistryOptions options) : options_(options) {
  if (options_.separation_update == SeparationUpdate::kDeferred) {
    refresher_ = std::thread([this] { RefreshLoop(); });
  }
}

BankRegistry::~BankRegistry() {
  {
    std::lock_guard<std::mutex> lock(refresh_mu_);
    stopping_.store(true);
  }
  refresh_wake_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

void BankRegistry::RefreshLoop() {
  std::unique_lock<std::mutex> lock(refresh_mu_);
  while (!stopping_.load()) {
    lock.unlock();
    size_t refreshed = 0;
    for (const std::shared_ptr<MemoryBank>& bank : List()) {
      if (stopping_.load()) break;
      if (bank->WrittenWithin(options_.refresh_quiet_period)) continue;
      refreshed += bank->RefreshSeparation(options_.refresh_batch, &stopping_);
    }
    lock.lock();
    // Idle: poll again shortly (writers do not signal; a 20 ms nap costs
    // nothing and bounds how stale statistics get after a burst of writes).
    if (refreshed == 0) {
      refresh_wake_.wait_for(lock, std::chrono::milliseconds(20),
                             [this] { return stopping_.load(); });
    }
  }
}

absl::StatusOr<std::shared_ptr<MemoryBank>> BankRegistry::Create(
    absl::string_view name, const BankOptions& options) {
  HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<MemoryBank> created,
                            MemoryBank::Create(std::string(name), options,
                                               options_.separation_update));
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
  ReaderLock lock(&mu_);
  const auto it = banks_.find(name);
  if (it == banks_.end()) {
    return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
  }
  return it->second;
}

absl::Status BankRegistry::Drop(absl::string_view name) {
  WriterLock lock(&mu_);
  const auto it = banks_.find(name);
  if (it == banks_.end()) {
    return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
  }
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
