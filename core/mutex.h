// File: mutex.h
//
// An annotated reader/writer mutex for core. It wraps `std::shared_mutex` so
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

#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace hopfield {

// A reader/writer lock. Not copyable or movable. Thread-safe.
class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
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
