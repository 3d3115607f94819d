#include "core/bank_registry.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "core/bank_codec.h"
#include "core/status_macros.h"

namespace hopfield {

BankRegistry::BankRegistry(RegistryOptions options)
    : options_(std::move(options)),
      metrics_(options_.metrics != nullptr
                   ? options_.metrics
                   : std::make_shared<NullMetricsSink>()) {
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
      auto turn = [&](RefreshKind kind, uint64_t pending, const auto& refresh) {
        if (pending == 0) return false;
        size_t done = 0;
        const absl::Time start = absl::Now();
        try {
          done = refresh();
        } catch (const std::bad_alloc&) {
          // Out of memory: the patterns stay pending; retry later.
        }
        if (done == 0) {
          bank_busy = true;
          return false;
        }
        progress = true;
        metrics_->OnRefresh(bank->name(), kind, done, absl::Now() - start);
        return true;
      };
      const bool indexed =
          turn(RefreshKind::kIndex,
               bank->index_pending() + bank->index_deletions_pending(), [&] {
                 return bank->RefreshIndex(
                     std::max<size_t>(1, options_.index_batch), &stopping_);
               });
      // While the index takes patterns in (~0.25 s per 1,024 at 60k x 784,
      // estimates included), the exact turn (256 patterns against the whole
      // bank, seconds at that size) waits: a bulk load has estimates for
      // every pattern first.
      if (!indexed) {
        turn(RefreshKind::kSeparation, bank->separation_pending(), [&] {
          return bank->RefreshSeparation(
              std::max<size_t>(1, options_.refresh_batch), &stopping_);
        });
      }
      // Statistics caught up on a quiet bank: store them, so a restart
      // restores them instead of recomputing (a no-op when the stored
      // snapshot is current; a failure only costs that recomputation).
      // Not under sustained writes: at 10^6 patterns a snapshot is 13 MB.
      if (options_.storage != nullptr && bank->separation_pending() == 0 &&
          !bank->WrittenWithin(options_.refresh_quiet_period)) {
        (void)bank->PersistSeparation();
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

BankEnvironment BankRegistry::MakeEnvironment(
    BankIncarnation incarnation) const {
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
  env.storage = options_.storage;
  env.incarnation = options_.storage != nullptr ? incarnation : 0;
  return env;
}

absl::StatusOr<LoadReport> BankRegistry::Load() {
  LoadReport report;
  if (options_.storage == nullptr) return report;
  Storage& storage = *options_.storage;
  HOPFIELD_ASSIGN_OR_RETURN(const BankIncarnation last,
                            storage.LastIncarnation());
  HOPFIELD_ASSIGN_OR_RETURN(std::vector<StoredBank> stored,
                            storage.ListBanks());
  // Per name, the newest incarnation (ListBanks is in incarnation order);
  // an older one is a deletion a crash interrupted.
  std::map<std::string, size_t, std::less<>> newest;
  StorageBatch superseded;
  for (size_t i = 0; i < stored.size(); ++i) {
    if (!stored[i].status.ok()) continue;
    auto [it, inserted] = newest.try_emplace(stored[i].name, i);
    if (!inserted) {
      superseded.DeleteBank(stored[it->second].incarnation);
      it->second = i;
      ++report.superseded;
    }
  }
  if (!superseded.empty()) {
    HOPFIELD_ASSIGN_OR_RETURN(const uint64_t ticket, storage.Apply(superseded));
    HOPFIELD_RETURN_IF_ERROR(storage.WaitDurable(ticket));
  }
  // Told to the sink once the registry's lock is released.
  struct Loaded {
    std::string name;
    uint64_t patterns = 0;
    absl::Duration took;
    absl::Status status;
  };
  std::vector<Loaded> loaded;
  {
    WriterLock lock(&mu_);
    next_incarnation_ = last + 1;
    for (size_t i = 0; i < stored.size(); ++i) {
      const StoredBank& entry = stored[i];
      absl::Status status = entry.status;
      const absl::Time start = absl::Now();
      if (status.ok()) {
        if (newest.at(entry.name) != i) continue;
        absl::StatusOr<BankOptions> options = DecodeBankOptions(entry.config);
        if (options.ok()) {
          absl::StatusOr<std::unique_ptr<MemoryBank>> bank = MemoryBank::Load(
              entry.name, *options, MakeEnvironment(entry.incarnation));
          if (bank.ok()) {
            const uint64_t patterns = (*bank)->size();
            report.patterns += patterns;
            if (patterns > 0 && (*bank)->index_pending() == 0 &&
                (*bank)->index_size() > 0) {
              ++report.indexes_loaded;
            }
            ++report.banks;
            loaded.push_back(
                {entry.name, patterns, absl::Now() - start, absl::OkStatus()});
            banks_.emplace(entry.name, *std::move(bank));
            continue;
          }
          status = bank.status();
        } else {
          status =
              absl::Status(options.status().code(),
                           absl::StrCat("bank \"", entry.name,
                                        "\": ", options.status().message()));
        }
      }
      // A damaged catalog entry has no name: it is reported under its
      // incarnation and cannot be reached by name (an operator restores a
      // backup or deletes the data directory).
      const std::string name = entry.name.empty()
                                   ? absl::StrCat("#", entry.incarnation)
                                   : entry.name;
      loaded.push_back({name, 0, absl::Now() - start, status});
      report.failed.emplace_back(name, status);
      if (!entry.name.empty()) {
        failed_[entry.name] = FailedBank{entry.incarnation, status};
      }
    }
  }
  for (const Loaded& bank : loaded) {
    metrics_->OnBankLoaded(bank.name, bank.patterns, bank.took, bank.status);
  }
  return report;
}

absl::StatusOr<std::shared_ptr<MemoryBank>> BankRegistry::Create(
    absl::string_view name, const BankOptions& options) {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  HOPFIELD_RETURN_IF_ERROR(options.Validate());
  const std::string config = EncodeBankOptions(options.Resolved());
  uint64_t ticket = 0;
  std::shared_ptr<MemoryBank> bank;
  {
    WriterLock lock(&mu_);
    if (banks_.find(name) != banks_.end() ||
        failed_.find(name) != failed_.end()) {
      return absl::AlreadyExistsError(
          absl::StrCat("bank \"", name, "\" already exists"));
    }
    if (banks_.size() + failed_.size() >= options_.max_banks) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot create bank \"", name, "\": the limit is ",
                       options_.max_banks, " banks"));
    }
    const BankIncarnation incarnation = next_incarnation_;
    HOPFIELD_ASSIGN_OR_RETURN(std::unique_ptr<MemoryBank> created,
                              MemoryBank::Create(std::string(name), options,
                                                 MakeEnvironment(incarnation)));
    if (options_.storage != nullptr) {
      StorageBatch batch;
      batch.PutBank(incarnation, name, config);
      batch.PutBlob(incarnation, BlobKind::kBankState,
                    EncodeBankState(BankState{}));
      HOPFIELD_ASSIGN_OR_RETURN(ticket, options_.storage->Apply(batch));
    }
    ++next_incarnation_;
    bank = std::move(created);
    banks_.emplace(name, bank);
  }
  if (options_.storage != nullptr) {
    if (absl::Status durable = options_.storage->WaitDurable(ticket);
        !durable.ok()) {
      // Not created after all (writes to it fail: the store is latched).
      WriterLock lock(&mu_);
      const auto it = banks_.find(name);
      if (it != banks_.end() && it->second == bank) banks_.erase(it);
      return durable;
    }
  }
  return bank;
}

absl::StatusOr<std::shared_ptr<MemoryBank>> BankRegistry::Get(
    absl::string_view name) const {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  ReaderLock lock(&mu_);
  const auto it = banks_.find(name);
  if (it == banks_.end()) {
    const auto failed = failed_.find(name);
    if (failed != failed_.end()) return failed->second.status;
    return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
  }
  return it->second;
}

absl::Status BankRegistry::Drop(absl::string_view name) {
  HOPFIELD_RETURN_IF_ERROR(ValidateBankName(name));
  std::shared_ptr<MemoryBank> bank;
  BankIncarnation incarnation = 0;
  {
    WriterLock lock(&mu_);
    const auto it = banks_.find(name);
    if (it != banks_.end()) {
      bank = std::move(it->second);
      incarnation = bank->incarnation();
      banks_.erase(it);
    } else if (const auto failed = failed_.find(name);
               failed != failed_.end()) {
      incarnation = failed->second.incarnation;
      failed_.erase(failed);
    } else {
      return absl::NotFoundError(absl::StrCat("bank \"", name, "\" not found"));
    }
  }
  // Outside the registry lock: Close waits for a write in progress, and the
  // bank's memory (when this is the last holder) is released below.
  if (bank != nullptr) bank->Close();  // later writes fail; training stops
  bank.reset();
  if (options_.storage == nullptr) return absl::OkStatus();
  StorageBatch batch;
  batch.DeleteBank(incarnation);
  HOPFIELD_ASSIGN_OR_RETURN(const uint64_t ticket,
                            options_.storage->Apply(batch));
  return options_.storage->WaitDurable(ticket);
}

absl::Status BankRegistry::PersistIndexes() const {
  absl::Status first;
  for (const std::shared_ptr<MemoryBank>& bank : List()) {
    first.Update(bank->PersistIndex());
  }
  return first;
}

absl::Status BankRegistry::PersistSeparation() const {
  absl::Status first;
  for (const std::shared_ptr<MemoryBank>& bank : List()) {
    first.Update(bank->PersistSeparation());
  }
  return first;
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

size_t BankRegistry::failed_size() const {
  ReaderLock lock(&mu_);
  return failed_.size();
}

}  // namespace hopfield
