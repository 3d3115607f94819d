#include "core/worker_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;

// A latch the test opens to let blocked tasks finish.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(WorkerPoolTest, RunsSubmittedTasks) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(WorkerPoolOptions{2, 100});
    for (int i = 0; i < 50; ++i) {
      ASSERT_THAT(pool.TrySubmit([&ran] { ran.fetch_add(1); }), IsOk());
    }
  }  // the destructor runs what is queued
  EXPECT_EQ(ran.load(), 50);
}

TEST(WorkerPoolTest, RefusesBeyondTheQueueLimit) {
  // The gate outlives the pool: a worker may still be inside Wait() after
  // Open() returns, until the pool's destructor joins it.
  Gate gate;
  std::promise<void> started;
  WorkerPool pool(WorkerPoolOptions{1, 2});
  ASSERT_THAT(pool.TrySubmit([&] {
    started.set_value();
    gate.Wait();
  }),
              IsOk());
  started.get_future().wait();  // the only worker is now busy
  ASSERT_THAT(pool.TrySubmit([] {}), IsOk());
  ASSERT_THAT(pool.TrySubmit([] {}), IsOk());
  EXPECT_THAT(pool.TrySubmit([] {}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("the queue limit is 2")));
  EXPECT_EQ(pool.Stats().rejected, 1u);
  EXPECT_EQ(pool.Stats().queued, 2u);
  EXPECT_EQ(pool.Stats().running, 1u);
  gate.Open();
}

TEST(WorkerPoolTest, ZeroQueueAdmitsOnlyWhenAThreadIsIdle) {
  // Declared before the pool so that they outlive its worker (see above).
  Gate gate;
  std::promise<void> started;
  WorkerPool pool(WorkerPoolOptions{1, 0});
  // Until the worker reaches its idle wait, a zero queue refuses everything;
  // a refused task is destroyed without running, so the promise stays unset.
  while (!pool.TrySubmit([&] {
                started.set_value();
                gate.Wait();
              })
              .ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  started.get_future().wait();
  EXPECT_THAT(pool.TrySubmit([] {}),
              StatusIs(absl::StatusCode::kResourceExhausted));
  gate.Open();
}

TEST(WorkerPoolTest, ParallelForRunsEveryPartOnce) {
  WorkerPool pool(WorkerPoolOptions{3});
  std::vector<std::atomic<int>> hits(1000);
  pool.ParallelFor(hits.size(), [&](size_t part) { hits[part].fetch_add(1); });
  for (const auto& hit : hits) EXPECT_EQ(hit.load(), 1);
}

TEST(WorkerPoolTest, ParallelForFromEveryBusyWorkerDoesNotDeadlock) {
  // Every worker runs a task that itself runs a ParallelFor: nobody is idle
  // to help, so the callers must do all the parts themselves.
  WorkerPool pool(WorkerPoolOptions{2, 8});
  std::atomic<int> total{0};
  std::atomic<int> done{0};
  for (int t = 0; t < 6; ++t) {
    ASSERT_THAT(pool.TrySubmit([&] {
      pool.ParallelFor(64, [&](size_t) { total.fetch_add(1); });
      done.fetch_add(1);
    }),
                IsOk());
  }
  while (done.load() < 6) std::this_thread::yield();
  EXPECT_EQ(total.load(), 6 * 64);
}

TEST(WorkerPoolTest, ParallelForRethrowsOnTheCaller) {
  WorkerPool pool(WorkerPoolOptions{2});
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.ParallelFor(100,
                                [&](size_t part) {
                                  ran.fetch_add(1);
                                  if (part == 3) throw std::bad_alloc();
                                }),
               std::bad_alloc);
  EXPECT_LT(ran.load(), 100 + 1);
  // The pool still works.
  std::atomic<int> after{0};
  pool.ParallelFor(10, [&](size_t) { after.fetch_add(1); });
  EXPECT_EQ(after.load(), 10);
}

TEST(WorkerPoolTest, RunPartsWithoutAPoolRethrowsAfterJoining) {
  std::atomic<int> ran{0};
  EXPECT_THROW(RunParts(nullptr, 4,
                        [&](size_t part) {
                          ran.fetch_add(1);
                          if (part == 2) throw std::runtime_error("boom");
                        }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 4);
}

}  // namespace
}  // namespace hopfield
