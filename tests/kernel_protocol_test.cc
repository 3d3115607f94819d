// The kernelized-Hopfield protocols of algorithms.md §F tests 13 and 14 on
// Debian's Fashion-MNIST, through the engine's own Train path (TrainBank):
//
//   13. U-Hop-compatible mode (the authors' protocol, §D.2): M = 100 random
//       training images, 5 seeds, queries with half the pixels dropped and
//       the rest doubled (torch.dropout), one update step at β = 1 on the
//       unnormalised kernel (a dot bank), the U-Hop error Σ_pixels
//       (clamp(ξ) - clamp(x̂))² and argmax accuracy. Trained: error <= 15 and
//       accuracy >= 0.85; the dot-product baseline: error >= 100, accuracy
//       <= 0.3.
//   14. The validation gate: M = 500, D_Φ = 256, cosine, 50% masking. At
//       β = 200 the gate rejects the separation-trained map (the raw cosine
//       map retrieves better); at β = 10 it accepts it.
//
// Heavy (tens of GMAC): registered with the `protocol` label and run from
// the release build (`ctest --preset protocol`, part of `make test`).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "bench/fashion_mnist.h"
#include "bench/uhop_protocol.h"
#include "core/bank_training.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;

constexpr int kDim = 784;

const bench::FashionMnist& Images() {
  static const bench::FashionMnist* const kImages = [] {
    auto loaded = bench::LoadFashionMnist("train", 60000);
    EXPECT_THAT(loaded, IsOk());
    return new bench::FashionMnist(std::move(loaded).value());
  }();
  return *kImages;
}

// `count` distinct random images (rows), drawn with `seed`.
std::vector<float> RandomImages(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  return bench::RandomImages(Images(), count, rng);
}

// torch.dropout(x, 0.5): each pixel zeroed with probability ½, survivors x2.
std::vector<float> Dropout(const std::vector<float>& patterns, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> out(patterns.size());
  bench::UHopDropout(patterns, rng, absl::MakeSpan(out));
  return out;
}

struct Score {
  double error = 0.0;     // mean over queries of the U-Hop metric
  double accuracy = 0.0;  // nearest_id == the query's source
};

Score Evaluate(const MemoryBank& bank, const std::vector<uint64_t>& ids,
               const std::vector<float>& memories,
               const std::vector<float>& queries, float beta,
               uint32_t iterations) {
  RetrieveOptions options;
  options.beta = beta;
  options.max_iterations = iterations;
  auto results = Retriever::RetrieveBatch(bank, queries, options);
  EXPECT_THAT(results, IsOk());
  Score score;
  for (size_t q = 0; q < ids.size(); ++q) {
    const RetrieveResult& r = (*results)[q];
    if (r.nearest_id == ids[q]) score.accuracy += 1.0;
    score.error += bench::UHopError(
        absl::MakeConstSpan(memories).subspan(q * kDim, kDim), r.pattern);
  }
  score.error /= static_cast<double>(ids.size());
  score.accuracy /= static_cast<double>(ids.size());
  return score;
}

std::unique_ptr<MemoryBank> NewBank(Similarity similarity, float beta) {
  BankOptions options;
  options.dim = kDim;
  options.similarity = similarity;
  options.beta = beta;
  auto bank = MemoryBank::Create("protocol", options);
  EXPECT_THAT(bank, IsOk());
  return std::move(bank).value();
}

// §F test 13.
TEST(KernelProtocolTest, UHopCompatibleModeReproducesTheAuthorsNumbers) {
  constexpr int kCount = 100;
  constexpr int kSeeds = 5;
  Score baseline;
  Score trained;
  for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
    const std::vector<float> memories = RandomImages(kCount, seed);
    const std::vector<float> queries = Dropout(memories, 1000 + seed);
    auto bank = NewBank(Similarity::kDot, 1.0f);
    auto ids = bank->Add(std::vector<PatternId>(kCount, 0), memories);
    ASSERT_THAT(ids, IsOk());
    const Score before = Evaluate(*bank, *ids, memories, queries, 1.0f, 1);
    BankTrainOptions options;
    options.config.mode = TrainMode::kUHopCompat;
    options.config.iterations = 1000;
    options.config.seed = seed;
    options.skip_validation = true;  // the authors' protocol has no gate
    auto report = TrainBank(*bank, options);
    ASSERT_THAT(report, IsOk());
    ASSERT_TRUE(report->accepted);
    const Score after = Evaluate(*bank, *ids, memories, queries, 1.0f, 1);
    std::printf(
        "seed %u: dot error %.1f acc %.2f | U-Hop error %.1f acc %.2f "
        "(Δ_min %.3f -> %.3f)\n",
        seed, before.error, before.accuracy, after.error, after.accuracy,
        report->min_separation_before, report->min_separation_after);
    baseline.error += before.error / kSeeds;
    baseline.accuracy += before.accuracy / kSeeds;
    trained.error += after.error / kSeeds;
    trained.accuracy += after.accuracy / kSeeds;
  }
  std::printf("mean: dot %.1f / %.2f, U-Hop %.1f / %.2f\n", baseline.error,
              baseline.accuracy, trained.error, trained.accuracy);
  // algorithms.md D6-a: 140.5 / 0.15 and 7.5 ± 4.3 / 0.93.
  EXPECT_GE(baseline.error, 100.0);
  EXPECT_LE(baseline.accuracy, 0.3);
  EXPECT_LE(trained.error, 15.0);
  EXPECT_GE(trained.accuracy, 0.85);
}

// §F test 14.
TEST(KernelProtocolTest, ValidationGateRejectsAtHighBetaAndAcceptsAtLow) {
  constexpr int kCount = 500;
  const std::vector<float> memories = RandomImages(kCount, 14);
  for (const auto& [beta, accept] :
       {std::pair{200.0f, false}, std::pair{10.0f, true}}) {
    auto bank = NewBank(Similarity::kCosine, beta);
    ASSERT_THAT(bank->Add(std::vector<PatternId>(kCount, 0), memories), IsOk());
    BankTrainOptions options;
    options.config.feature_dim = 256;
    options.config.seed = 14;
    options.validation_mask_fraction = 0.5f;
    options.validation_queries = kCount;
    auto report = TrainBank(*bank, options);
    ASSERT_THAT(report, IsOk());
    std::printf(
        "β = %.0f: error %.2f -> %.2f, accuracy %.3f -> %.3f, Δ_min %.3f -> "
        "%.3f: %s (%.1f s)\n",
        static_cast<double>(beta), report->validation_error_before,
        report->validation_error_after, report->validation_accuracy_before,
        report->validation_accuracy_after, report->min_separation_before,
        report->min_separation_after,
        report->accepted ? "accepted" : "rejected", report->seconds);
    EXPECT_EQ(report->accepted, accept) << "β = " << beta;
    EXPECT_EQ(bank->Stats().feature_map_version, accept ? 1u : 0u);
  }
}

}  // namespace
}  // namespace hopfield
