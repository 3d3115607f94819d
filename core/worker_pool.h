// File: worker_pool.h
//
// WorkerPool: the threads that do an engine instance's CPU work, started
// once. Work arrives two ways:
//
// * Tasks (TrySubmit): whole requests (a Retrieve, a Store, a Train, an
//   index build). At most `max_queued` tasks wait for a thread; one more is
//   refused at once with RESOURCE_EXHAUSTED (admission control), so a burst
//   of heavy calls queues boundedly instead of piling up threads or memory.
// * Parallel loops (ParallelFor): the phases of one task split into parts.
//   The calling thread runs parts itself and idle workers help; help runs
//   before queued tasks, because it finishes work already admitted. The
//   caller never waits for a part that nobody has started, so a task may
//   call ParallelFor from a worker thread without deadlock, however busy the
//   pool is.
//
//   WorkerPool pool(WorkerPoolOptions{/*threads=*/4, /*max_queued=*/64});
//   HOPFIELD_RETURN_IF_ERROR(pool.TrySubmit([] { ... }));
//   pool.ParallelFor(8, [&](size_t part) { ... });
#ifndef HOPFIELD_CORE_WORKER_POOL_H_
#define HOPFIELD_CORE_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace hopfield {

struct WorkerPoolOptions {
  // Worker threads, started by the constructor. REQUIRES: >= 1.
  uint32_t threads = 1;
  // Tasks that may wait for a thread; TrySubmit refuses beyond. 0 admits a
  // task only when a thread is idle. Default: 64.
  uint32_t max_queued = 64;
};

// Point-in-time counters of a pool.
struct WorkerPoolStats {
  uint32_t threads = 0;
  // Tasks waiting for a thread, and tasks running.
  uint64_t queued = 0;
  uint64_t running = 0;
  // Tasks refused by TrySubmit since the start.
  uint64_t rejected = 0;
};

// Thread-safe: any number of concurrent callers. The destructor runs the
// tasks still queued, then joins the threads.
class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task` to run on a worker thread.
  // REQUIRES: `task` does not throw (wrap the work and report errors
  // through your own channel); an escaping exception terminates the process.
  // Errors: RESOURCE_EXHAUSTED when max_queued tasks already wait (the task
  // is dropped, not run); the message gives the queue length and limit.
  absl::Status TrySubmit(std::function<void()> task);

  // Runs fn(part) for every part in [0, parts) and returns when all have
  // run. The calling thread takes parts itself; up to threads() - 1 idle
  // workers help. If fn throws, the remaining parts are skipped and the
  // first exception is rethrown on the calling thread after every started
  // part has ended (no std::terminate, no part left running).
  void ParallelFor(size_t parts, absl::FunctionRef<void(size_t)> fn);

  uint32_t threads() const { return static_cast<uint32_t>(threads_.size()); }
  WorkerPoolStats Stats() const;

 private:
  struct Loop;

  void WorkerMain();

  const WorkerPoolOptions options_;

  // std primitives (the waits need a condition variable); everything below
  // up to threads_ is guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  // Help for running ParallelFor loops: served before tasks.
  std::deque<std::shared_ptr<Loop>> help_;
  std::deque<std::function<void()>> tasks_;
  uint64_t running_ = 0;
  uint64_t idle_ = 0;
  uint64_t rejected_ = 0;
  bool stopping_ = false;

  std::vector<std::thread> threads_;
};

// Runs fn(part) for every part in [0, parts): on `pool` when given, else on
// the calling thread plus parts - 1 short-lived threads. Either way an
// exception from fn is rethrown on the calling thread after every part has
// ended.
void RunParts(WorkerPool* pool, size_t parts,
              absl::FunctionRef<void(size_t)> fn);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_WORKER_POOL_H_
