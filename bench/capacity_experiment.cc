// File: capacity_experiment.cc
//
// The capacity experiment of issue 14 (the U-Hop papers' kind of figure) on
// Debian's Fashion-MNIST: retrieval accuracy and error against the number
// of stored patterns M, for four feature maps, at two corruptions, over
// several seeds. It drives the engine's own core (MemoryBank, TrainBank,
// Retriever), so what it measures is what the server does.
//
// Per seed s and size M:
//   memories  the first M images of one random permutation of the 60,000
//             training images (nested: the M = 1,000 set holds the M = 500
//             set), pixels / 255, d = 784;
//   queries   min(M, --queries) randomly chosen memories, corrupted
//             - "mask":  the U-Hop code's torch.dropout(x, 0.5): each pixel
//                        zeroed with probability ½, survivors doubled;
//             - "noise": clamp(|x + N(0, σ²)|, 0, 1) per pixel, σ = --noise
//                        (the U-Hop noise-robustness corruption);
//   methods
//     dot         identity map, dot-product scores, β = 1, one update: the
//                 U-Hop scripts' "MHN" baseline (algorithms.md §D.2);
//     uhop        the same bank after Train in TRAIN_MODE_UHOP_COMPAT (the
//                 authors' closest-pair loss, W ∈ ℝ^{d×d}, 1,000 steps of
//                 lr 10 on the first M/2 memories; minibatches of
//                 --uhop_batch above that), β = 1, one update;
//     cosine      identity map, cosine scores, the service's defaults
//                 (automatic β from Δ_min, iterate to convergence);
//     separation  the cosine bank after Train in TRAIN_MODE_SEPARATION
//                 (D_Φ = --feature_dim, the service's defaults otherwise),
//                 same retrieval settings;
//     cosine_b10, separation_b10  the same two banks at a fixed β = 10,
//                 the low-β regime where algorithms.md D6-b saw learning
//                 help.
//   Both trainings publish without the gate (skip_validation) so that every
//   map is measured; the `gate` column says what the gate would have done
//   (GateAccepts on the report's own validation).
//   metrics   accuracy: the retrieved argmax is the query's source;
//             error: the U-Hop metric, Σ_pixels (clamp(ξ) − clamp(x̂))²,
//             averaged over the queries.
//
// Output: one CSV row per (seed, M, method, corruption) on --out; plot and
// table with bench/plot_capacity.py (`make capacity` does both, writing
// docs/capacity.{csv,md,svg}).
//
//   capacity_experiment --sizes=10,100,1000 --seeds=3 --out=capacity.csv
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "bench/fashion_mnist.h"
#include "bench/uhop_protocol.h"
#include "core/bank_training.h"
#include "core/memory_bank.h"
#include "core/retriever.h"

ABSL_FLAG(std::string, sizes, "10,20,50,100,200,500,1000,2000,5000,10000",
          "Comma-separated numbers of stored patterns M");
ABSL_FLAG(int, seeds, 3, "Seeds 1..N (memories, queries and training)");
ABSL_FLAG(int, queries, 500, "Corrupted queries per (seed, M): min(M, this)");
ABSL_FLAG(double, noise, 0.3, "σ of the per-pixel Gaussian noise");
ABSL_FLAG(int, feature_dim, 256, "D_Φ of the separation-trained map");
ABSL_FLAG(int, uhop_batch, 512,
          "Minibatch of the U-Hop-compatible training when M/2 exceeds it");
ABSL_FLAG(std::string, out, "capacity.csv", "CSV output path");

namespace hopfield::bench {
namespace {

constexpr int kDim = 784;

struct Queries {
  std::vector<float> pixels;    // row-major, kDim per query
  std::vector<size_t> sources;  // memory position of each query
};

// `count` distinct memory positions out of `memories`.
std::vector<size_t> PickSources(int memories, int count, std::mt19937& rng) {
  std::vector<size_t> all(static_cast<size_t>(memories));
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(count));
  return all;
}

Queries Mask(const std::vector<float>& memories,
             const std::vector<size_t>& sources, std::mt19937& rng) {
  Queries q{std::vector<float>(sources.size() * kDim), sources};
  for (size_t i = 0; i < sources.size(); ++i) {
    UHopDropout(absl::MakeConstSpan(memories).subspan(sources[i] * kDim, kDim),
                rng, absl::MakeSpan(q.pixels).subspan(i * kDim, kDim));
  }
  return q;
}

Queries Noise(const std::vector<float>& memories,
              const std::vector<size_t>& sources, float sigma,
              std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  Queries q{{}, sources};
  q.pixels.reserve(sources.size() * kDim);
  for (const size_t s : sources) {
    for (int k = 0; k < kDim; ++k) {
      const float x = memories[s * kDim + static_cast<size_t>(k)];
      q.pixels.push_back(std::clamp(std::abs(x + normal(rng)), 0.0f, 1.0f));
    }
  }
  return q;
}

struct Score {
  double accuracy = 0.0;
  double error = 0.0;
  double beta = 0.0;  // mean β used
};

absl::StatusOr<Score> Evaluate(const MemoryBank& bank,
                               const std::vector<PatternId>& ids,
                               const std::vector<float>& memories,
                               const Queries& queries, float beta,
                               uint32_t max_iterations) {
  RetrieveOptions options;
  options.beta = beta;
  options.max_iterations = max_iterations;
  options.return_matches = 1;
  absl::StatusOr<std::vector<RetrieveResult>> results =
      Retriever::RetrieveBatch(bank, queries.pixels, options);
  if (!results.ok()) return results.status();
  Score score;
  const size_t n = queries.sources.size();
  for (size_t q = 0; q < n; ++q) {
    const RetrieveResult& r = (*results)[q];
    const size_t source = queries.sources[q];
    if (r.nearest_id == ids[source]) score.accuracy += 1.0;
    score.error += UHopError(
        absl::MakeConstSpan(memories).subspan(source * kDim, kDim), r.pattern);
    score.beta += static_cast<double>(r.beta);
  }
  score.accuracy /= static_cast<double>(n);
  score.error /= static_cast<double>(n);
  score.beta /= static_cast<double>(n);
  return score;
}

struct Row {
  int seed = 0;
  int size = 0;
  std::string method;
  // Δ_min over the distinct patterns in the bank's feature space (what
  // automatic β uses; in dot units for the dot bank).
  double min_separation = 0.0;
  double train_seconds = 0.0;
  std::string gate;  // "accept", "reject" or "" (untrained)
};

absl::StatusOr<std::unique_ptr<MemoryBank>> NewBank(
    Similarity similarity, float beta, const std::vector<float>& memories,
    int count, std::vector<PatternId>* ids) {
  BankOptions options;
  options.dim = kDim;
  options.similarity = similarity;
  options.beta = beta;
  absl::StatusOr<std::unique_ptr<MemoryBank>> bank =
      MemoryBank::Create("capacity", options);
  if (!bank.ok()) return bank.status();
  absl::StatusOr<std::vector<PatternId>> added = (*bank)->Add(
      std::vector<PatternId>(static_cast<size_t>(count), 0), memories);
  if (!added.ok()) return added.status();
  *ids = *std::move(added);
  return bank;
}

double DistinctSeparation(const MemoryBank& bank) {
  return bank.Stats().min_distinct_separation.value_or(0.0);
}

class Experiment {
 public:
  explicit Experiment(std::FILE* out) : out_(out) {
    std::fprintf(out_,
                 "seed,size,method,corruption,accuracy,error,beta,"
                 "min_separation,train_seconds,gate\n");
  }

  absl::Status Run(const FashionMnist& images, int seed, int size) {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    const std::vector<float> memories = RandomImages(images, size, rng);
    // Queries depend on (seed, M) only, so every method sees the same ones.
    std::mt19937 query_rng(static_cast<uint32_t>(seed * 100003 + size));
    const std::vector<size_t> sources = PickSources(
        size, std::min(size, absl::GetFlag(FLAGS_queries)), query_rng);
    const std::vector<Queries> corrupted = {
        Mask(memories, sources, query_rng),
        Noise(memories, sources, static_cast<float>(absl::GetFlag(FLAGS_noise)),
              query_rng)};

    std::vector<PatternId> ids;
    // The U-Hop protocol: dot scores, β = 1, one step; then its own kernel.
    absl::StatusOr<std::unique_ptr<MemoryBank>> dot =
        NewBank(Similarity::kDot, 1.0f, memories, size, &ids);
    if (!dot.ok()) return dot.status();
    Row row{seed, size, "dot", DistinctSeparation(**dot), 0.0, ""};
    if (auto s = Emit(row, **dot, ids, memories, corrupted, 1.0f, 1); !s.ok())
      return s;
    BankTrainOptions uhop;
    uhop.config.mode = TrainMode::kUHopCompat;
    uhop.config.batch_size =
        static_cast<uint32_t>(absl::GetFlag(FLAGS_uhop_batch));
    absl::StatusOr<Row> trained = Train(**dot, uhop, seed, size, "uhop");
    if (!trained.ok()) return trained.status();
    if (auto s = Emit(*trained, **dot, ids, memories, corrupted, 1.0f, 1);
        !s.ok())
      return s;
    dot->reset();

    // The service's defaults: cosine, automatic β, iterate to convergence.
    absl::StatusOr<std::unique_ptr<MemoryBank>> cosine =
        NewBank(Similarity::kCosine, 0.0f, memories, size, &ids);
    if (!cosine.ok()) return cosine.status();
    row = {seed, size, "cosine", DistinctSeparation(**cosine), 0.0, ""};
    if (auto s = Emit(row, **cosine, ids, memories, corrupted, 0.0f, 0);
        !s.ok())
      return s;
    row.method = "cosine_b10";
    if (auto s = Emit(row, **cosine, ids, memories, corrupted, 10.0f, 0);
        !s.ok())
      return s;
    BankTrainOptions separation;
    separation.config.feature_dim =
        static_cast<uint32_t>(absl::GetFlag(FLAGS_feature_dim));
    trained = Train(**cosine, separation, seed, size, "separation");
    if (!trained.ok()) return trained.status();
    if (auto s = Emit(*trained, **cosine, ids, memories, corrupted, 0.0f, 0);
        !s.ok())
      return s;
    trained->method = "separation_b10";
    return Emit(*trained, **cosine, ids, memories, corrupted, 10.0f, 0);
  }

 private:
  // Trains `bank` with `options` and `seed`, publishing the map without the
  // gate (so that every map is measured), and returns the row describing
  // it, with what the gate would have decided.
  static absl::StatusOr<Row> Train(MemoryBank& bank, BankTrainOptions options,
                                   int seed, int size, const char* method) {
    options.config.seed = static_cast<uint64_t>(seed);
    options.skip_validation = true;
    absl::StatusOr<TrainReport> report = TrainBank(bank, options);
    if (!report.ok()) return report.status();
    return Row{seed,
               size,
               method,
               DistinctSeparation(bank),
               report->seconds,
               GateAccepts(*report) ? "accept" : "reject"};
  }

  absl::Status Emit(const Row& row, const MemoryBank& bank,
                    const std::vector<PatternId>& ids,
                    const std::vector<float>& memories,
                    const std::vector<Queries>& corrupted, float beta,
                    uint32_t max_iterations) {
    static constexpr const char* kCorruptions[] = {"mask", "noise"};
    for (size_t c = 0; c < corrupted.size(); ++c) {
      absl::StatusOr<Score> score =
          Evaluate(bank, ids, memories, corrupted[c], beta, max_iterations);
      if (!score.ok()) return score.status();
      std::fprintf(out_, "%d,%d,%s,%s,%.4f,%.4f,%.4g,%.5f,%.2f,%s\n", row.seed,
                   row.size, row.method.c_str(), kCorruptions[c],
                   score->accuracy, score->error, score->beta,
                   row.min_separation, row.train_seconds, row.gate.c_str());
      const std::string training =
          row.gate.empty() ? ""
                           : absl::StrCat(" train ", row.train_seconds,
                                          " s, gate: ", row.gate);
      std::fprintf(stderr,
                   "seed %d M %5d %-14s %-5s acc %.3f err %8.3f β %.3g "
                   "Δ_min %.4f%s\n",
                   row.seed, row.size, row.method.c_str(), kCorruptions[c],
                   score->accuracy, score->error, score->beta,
                   row.min_separation, training.c_str());
    }
    std::fflush(out_);
    return absl::OkStatus();
  }

  std::FILE* out_;
};

int Main() {
  std::vector<int> sizes;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',', absl::SkipEmpty())) {
    int size = 0;
    if (!absl::SimpleAtoi(part, &size) || size < 2 || size > 60000) {
      std::fprintf(stderr, "--sizes: want integers in 2..60000, got '%s'\n",
                   std::string(part).c_str());
      return 2;
    }
    sizes.push_back(size);
  }
  const int seeds = absl::GetFlag(FLAGS_seeds);
  if (sizes.empty() || seeds < 1 || absl::GetFlag(FLAGS_queries) < 1 ||
      absl::GetFlag(FLAGS_feature_dim) < 1 ||
      absl::GetFlag(FLAGS_uhop_batch) < 2 ||
      !(absl::GetFlag(FLAGS_noise) >= 0)) {
    std::fprintf(stderr,
                 "want --sizes non-empty, --seeds >= 1, --queries >= 1, "
                 "--feature_dim >= 1, --uhop_batch >= 2, --noise >= 0\n");
    return 2;
  }
  absl::StatusOr<FashionMnist> images = LoadFashionMnist("train", 60000);
  if (!images.ok()) {
    std::fprintf(stderr, "%s\n", images.status().ToString().c_str());
    return 1;
  }
  const std::string path = absl::GetFlag(FLAGS_out);
  std::FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return 1;
  }
  Experiment experiment(out);
  const absl::Time start = absl::Now();
  for (int seed = 1; seed <= seeds; ++seed) {
    for (const int size : sizes) {
      if (absl::Status s = experiment.Run(*images, seed, size); !s.ok()) {
        std::fprintf(stderr, "seed %d, M %d: %s\n", seed, size,
                     s.ToString().c_str());
        std::fclose(out);
        return 1;
      }
    }
  }
  std::fclose(out);
  std::fprintf(stderr, "wrote %s in %.0f s\n", path.c_str(),
               absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}

}  // namespace
}  // namespace hopfield::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "The capacity experiment: retrieval accuracy and error against the "
      "number of stored Fashion-MNIST patterns for dot, U-Hop-compatible, "
      "cosine and separation-trained maps (see the file comment).");
  absl::ParseCommandLine(argc, argv);
  return hopfield::bench::Main();
}
