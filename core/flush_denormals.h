// File: flush_denormals.h
//
// ScopedFlushDenormals: while alive, the calling thread's SSE/AVX float
// arithmetic flushes denormal results to zero (the MXCSR FTZ bit); the
// destructor restores the previous mode. Denormal inputs are still read as
// they are (DAZ stays off): a query or pattern of tiny values keeps its
// direction.
//
// Why: Hopfield dynamics at the β clean retrieval needs (hundreds to
// thousands) drive most softmax weights e^{β(s − s₁)} below FLT_MIN, and on
// Intel cores every operation that produces or consumes such a denormal
// takes a microcode assist of ~100 cycles. Measured on a Xeon
// (bench/README.md): one exact retrieval over 20,000 Fashion-MNIST images
// took 258 ms with denormals and 10.5 ms without; an approximate one 493 µs
// and 223 µs. Flushing changes only terms below 1.2e-38, far under a
// float's resolution of any sum they join, with one exception: when every
// term is that small (Softmax₁ for a query far from every pattern, whose
// weights all fall below FLT_MIN), the update flushes to the zero vector
// and the dynamics stop there, where they would have kept a tiny vector's
// direction.
//
//   {
//     ScopedFlushDenormals flush;
//     ... retrieval on this thread ...
//   }
//
// Thread-compatible: it acts on the calling thread only (each thread has its
// own MXCSR), so parallel parts take one each. Not copyable or movable: the
// restore belongs to the scope that set it. A no-op where SSE is not the
// float unit.
#ifndef HOPFIELD_CORE_FLUSH_DENORMALS_H_
#define HOPFIELD_CORE_FLUSH_DENORMALS_H_

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace hopfield {

class ScopedFlushDenormals {
 public:
#if defined(__SSE__)
  ScopedFlushDenormals() : saved_(_MM_GET_FLUSH_ZERO_MODE()) {
    if (saved_ != _MM_FLUSH_ZERO_ON) _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  }
  ~ScopedFlushDenormals() {
    if (saved_ != _MM_FLUSH_ZERO_ON) _MM_SET_FLUSH_ZERO_MODE(saved_);
  }
#else
  ScopedFlushDenormals() = default;
  ~ScopedFlushDenormals() = default;
#endif
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

 private:
#if defined(__SSE__)
  unsigned saved_;
#endif
};

}  // namespace hopfield

#endif  // HOPFIELD_CORE_FLUSH_DENORMALS_H_
