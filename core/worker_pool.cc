#include "core/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield {

// One ParallelFor call: parts are claimed with an atomic counter by the
// caller and by helpers. Shared with the helpers, so a helper that arrives
// after the loop ended finds no part left and touches nothing else (`fn`
// is called only for claimed parts, while the caller still waits).
struct WorkerPool::Loop {
  Loop(size_t part_count, absl::FunctionRef<void(size_t)> function)
      : fn(function), parts(part_count) {}

  // Claims and runs parts until none is left.
  void Work() {
    while (true) {
      const size_t part = next.fetch_add(1, std::memory_order_relaxed);
      if (part >= parts) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          fn(part);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (++finished == parts) done.notify_all();
    }
  }

  // Waits until every part has ended; rethrows the first exception.
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    done.wait(lock, [this] { return finished == parts; });
    if (error) std::rethrow_exception(error);
  }

  const absl::FunctionRef<void(size_t)> fn;
  const size_t parts;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::condition_variable done;
  size_t finished = 0;       // guarded by mu: parts run or skipped
  std::exception_ptr error;  // guarded by mu
};

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(options) {
  HOPFIELD_CHECK(options_.threads >= 1);
  threads_.reserve(options_.threads);
  for (uint32_t i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { WorkerMain(); });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void WorkerPool::WorkerMain() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!help_.empty()) {
      const std::shared_ptr<Loop> loop = std::move(help_.front());
      help_.pop_front();
      lock.unlock();
      loop->Work();
      lock.lock();
      continue;
    }
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      ++running_;
      lock.unlock();
      task();
      task = nullptr;  // destroy captures outside the lock
      lock.lock();
      --running_;
      continue;
    }
    if (stopping_) return;
    ++idle_;
    wake_.wait(lock);
    --idle_;
  }
}

absl::Status WorkerPool::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return absl::UnavailableError("the worker pool is shutting down");
    }
    // Idle workers take a task at once: it does not count as waiting.
    if (tasks_.size() >= idle_ + options_.max_queued) {
      ++rejected_;
      return absl::ResourceExhaustedError(
          absl::StrCat("server busy: ", running_, " heavy calls running and ",
                       tasks_.size(), " queued, the queue limit is ",
                       options_.max_queued, "; retry with backoff"));
    }
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
  return absl::OkStatus();
}

void WorkerPool::ParallelFor(size_t parts, absl::FunctionRef<void(size_t)> fn) {
  if (parts == 0) return;
  if (parts == 1) {
    fn(0);
    return;
  }
  const auto loop = std::make_shared<Loop>(parts, fn);
  const size_t helpers = std::min(parts - 1, threads_.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < helpers; ++i) help_.push_back(loop);
  }
  for (size_t i = 0; i < helpers; ++i) wake_.notify_one();
  loop->Work();
  loop->Wait();
}

WorkerPoolStats WorkerPool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  WorkerPoolStats stats;
  stats.threads = static_cast<uint32_t>(threads_.size());
  stats.queued = tasks_.size();
  stats.running = running_;
  stats.rejected = rejected_;
  return stats;
}

void RunParts(WorkerPool* pool, size_t parts,
              absl::FunctionRef<void(size_t)> fn) {
  if (pool != nullptr) {
    pool->ParallelFor(parts, fn);
    return;
  }
  if (parts == 0) return;
  std::vector<std::exception_ptr> errors(parts);
  auto guarded = [&](size_t part) {
    try {
      fn(part);
    } catch (...) {
      errors[part] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  try {
    threads.reserve(parts - 1);
    for (size_t part = 1; part < parts; ++part) {
      threads.emplace_back(guarded, part);
    }
  } catch (...) {
    // Could not start every thread: run the rest here.
    for (size_t part = threads.size() + 1; part < parts; ++part) {
      guarded(part);
    }
  }
  guarded(0);
  for (std::thread& thread : threads) thread.join();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace hopfield
