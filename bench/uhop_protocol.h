// File: uhop_protocol.h
//
// The pieces of the U-Hop papers' retrieval protocol (algorithms.md §D.2)
// that the benchmarks, the capacity experiment and the protocol tests share:
// random memories drawn from Fashion-MNIST, the query corruption of the
// authors' code (torch.dropout(x, 0.5): half the pixels zeroed, the rest
// doubled) and their error metric Σ_pixels (clamp(ξ) − clamp(x̂))².
//
//   std::mt19937 rng(seed);
//   std::vector<float> memories = RandomImages(images, 100, rng);
//   std::vector<float> queries(memories.size());
//   UHopDropout(memories, rng, absl::MakeSpan(queries));
#ifndef HOPFIELD_BENCH_UHOP_PROTOCOL_H_
#define HOPFIELD_BENCH_UHOP_PROTOCOL_H_

#include <random>
#include <vector>

#include "absl/types/span.h"

#include "bench/fashion_mnist.h"

namespace hopfield::bench {

// `count` distinct images (rows, row-major): the first `count` of a
// permutation of all of them shuffled with `rng`.
// REQUIRES: count <= images.count.
std::vector<float> RandomImages(const FashionMnist& images, int count,
                                std::mt19937& rng);

// out[i] = 2·in[i] with probability ½, else 0, drawing one Bernoulli per
// value from `rng` in order. REQUIRES: out.size() == in.size().
void UHopDropout(absl::Span<const float> in, std::mt19937& rng,
                 absl::Span<float> out);

// Σ_i (clamp(memory[i], 0, 1) − clamp(retrieved[i], 0, 1))², in double.
// REQUIRES: equal sizes.
double UHopError(absl::Span<const float> memory,
                 absl::Span<const float> retrieved);

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_UHOP_PROTOCOL_H_
