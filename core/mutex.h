// File: mutex.h
//
// An annotated reader/writer mutex for core. It wraps a pthread rwlock so
// that clang's `-Wthread-safety` checks every access to an
// `ABSL_GUARDED_BY(mu_)` member at compile time (leveldb's `port::Mutex`
// trick). Core avoids `absl::Mutex` because Debian's abseil is not built with
// TSan instrumentation and produces false reports under `-fsanitize=thread`.
//
//   Mutex mu_;
//   int value_ ABSL_GUARDED_BY(mu_);
//   { WriterLock lock(&mu_); value_ = 1; }
//   { ReaderLock lock(&mu_); return value_; }
#ifndef HOPFIELD_CORE_MUTEX_H_
#define HOPFIELD_CORE_MUTEX_H_

#include <pthread.h>

#include <cstdlib>

#include "absl/base/thread_annotations.h"

namespace hopfield {

// A reader/writer lock (a pthread rwlock, as std::shared_mutex is). Not
// copyable or movable. Thread-safe.
//
// kReaders (the default, glibc's default and std::shared_mutex's): a reader
// never waits for a waiting writer, so a thread may take the reader lock
// again while holding it; a writer can wait as long as readers overlap.
// kWriters: a waiting writer holds off new readers, so it cannot starve
// behind a stream of overlapping readers; a thread must then never take the
// reader lock twice (it would deadlock behind a waiting writer).
class ABSL_LOCKABLE Mutex {
 public:
  enum class Preference { kReaders, kWriters };

  explicit Mutex(Preference preference = Preference::kReaders) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(
        &attr, preference == Preference::kWriters
                   ? PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
                   : PTHREAD_RWLOCK_PREFER_READER_NP);
    if (pthread_rwlock_init(&mu_, &attr) != 0) std::abort();
    pthread_rwlockattr_destroy(&attr);
  }
  ~Mutex() { pthread_rwlock_destroy(&mu_); }
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { pthread_rwlock_wrlock(&mu_); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&mu_); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { pthread_rwlock_rdlock(&mu_); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&mu_); }

 private:
  pthread_rwlock_t mu_{};
};

// Holds `mu` exclusively for its lifetime.
class ABSL_SCOPED_LOCKABLE WriterLock {
 public:
  explicit WriterLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~WriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  Mutex* const mu_;
};

// Holds `mu` shared for its lifetime.
class ABSL_SCOPED_LOCKABLE ReaderLock {
 public:
  explicit ReaderLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_MUTEX_H_
