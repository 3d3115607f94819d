#include "bench/uhop_protocol.h"

#include <algorithm>
#include <cstddef>
#include <numeric>

namespace hopfield::bench {

std::vector<float> RandomImages(const FashionMnist& images, int count,
                                std::mt19937& rng) {
  std::vector<int> order(static_cast<size_t>(images.count));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const auto dim = static_cast<size_t>(images.dim);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(count) * dim);
  for (int i = 0; i < count; ++i) {
    const auto row = static_cast<size_t>(order[static_cast<size_t>(i)]);
    const auto begin =
        images.pixels.begin() + static_cast<std::ptrdiff_t>(row * dim);
    out.insert(out.end(), begin, begin + static_cast<std::ptrdiff_t>(dim));
  }
  return out;
}

void UHopDropout(absl::Span<const float> in, std::mt19937& rng,
                 absl::Span<float> out) {
  std::bernoulli_distribution keep(0.5);
  for (size_t i = 0; i < in.size(); ++i) {
    out[i] = keep(rng) ? 2.0f * in[i] : 0.0f;
  }
}

double UHopError(absl::Span<const float> memory,
                 absl::Span<const float> retrieved) {
  double error = 0.0;
  for (size_t i = 0; i < memory.size(); ++i) {
    const float want = std::clamp(memory[i], 0.0f, 1.0f);
    const float got = std::clamp(retrieved[i], 0.0f, 1.0f);
    error += static_cast<double>((want - got) * (want - got));
  }
  return error;
}

}  // namespace hopfield::bench
