#include "core/feature_map.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/capacity.h"
#include "core/memory_bank.h"
#include "core/memory_budget.h"
#include "core/retriever.h"
#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::MatrixXf;
using Eigen::VectorXd;
using Eigen::VectorXf;
using ::hopfield::testing::FreshIds;
using ::hopfield::testing::GaussianPatterns;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::IsOkAndHolds;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr uint32_t kDim = 12;
constexpr auto kCosine = Similarity::kCosine;
constexpr auto kDot = Similarity::kDot;

// A learned map Φ(x) = W(x - c) with W of feature_dim x dim drawn from
// N(0, scale² / feature_dim) (so ||Φ(x)|| ≈ scale·||x - c||) and c from
// N(0, 0.3²).
std::shared_ptr<const FeatureMap> RandomMap(std::mt19937& rng,
                                            Index feature_dim, Index dim,
                                            uint32_t version,
                                            float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MatrixXf weights(feature_dim, dim);
  const float w_scale = scale / std::sqrt(static_cast<float>(feature_dim));
  for (Index j = 0; j < dim; ++j) {
    for (Index i = 0; i < feature_dim; ++i) {
      weights(i, j) = w_scale * normal(rng);
    }
  }
  VectorXf center(dim);
  for (Index i = 0; i < dim; ++i) center[i] = 0.3f * normal(rng);
  auto map = FeatureMap::Create(std::move(center), std::move(weights), version,
                                FeatureMapInfo{});
  EXPECT_THAT(map, IsOk());
  return std::move(map).value();
}

std::unique_ptr<MemoryBank> NewBank(
    uint32_t dim, Similarity similarity = kCosine,
    SeparationUpdate update = SeparationUpdate::kSynchronous,
    std::shared_ptr<MemoryBudget> budget = nullptr) {
  BankOptions options;
  options.dim = dim;
  options.similarity = similarity;
  BankEnvironment env;
  env.separation_update = update;
  env.budget = std::move(budget);
  auto bank = MemoryBank::Create("fm", options, std::move(env));
  EXPECT_THAT(bank, IsOk());
  return std::move(bank).value();
}

// Everything a reference computation needs, copied under one reader lock.
struct BankCopy {
  Similarity similarity = kCosine;
  MatrixXd patterns;  // d x M, column order of the bank
  std::vector<PatternId> ids;
  MatrixXf keys;  // as stored (the patterns under the identity)
  VectorXf key_inverse_norms;
  uint32_t version = 0;
  bool learned = false;
  MatrixXd weights;
  VectorXd center;

  // Φ(ξ_μ) for every column, in double, from the map (not from the bank's
  // keys).
  MatrixXd ReferenceKeys() const {
    if (!learned) return patterns;
    return weights * (patterns.colwise() - center);
  }
  Index Column(PatternId id) const {
    const auto it = std::find(ids.begin(), ids.end(), id);
    EXPECT_NE(it, ids.end()) << "id " << id;
    return static_cast<Index>(it - ids.begin());
  }
};

BankCopy CopyBank(const MemoryBank& bank) {
  return bank.WithReader([](const BankView& view) {
    BankCopy copy;
    copy.similarity = view.similarity;
    copy.patterns = view.patterns.cast<double>();
    copy.ids.assign(view.ids.begin(), view.ids.end());
    copy.keys = view.keys;
    copy.key_inverse_norms = view.key_inverse_norms;
    EXPECT_NE(view.feature_map, nullptr);
    if (view.feature_map != nullptr) {
      copy.version = view.feature_map->version();
      copy.learned = !view.feature_map->is_identity();
      if (copy.learned) {
        copy.weights = view.feature_map->weights().cast<double>();
        copy.center = view.feature_map->center().cast<double>();
      }
    }
    return copy;
  });
}

// The stored keys are Φ of the stored patterns under the bank's current map:
// within float rounding of a double computation, so a key computed under an
// older map (or left behind by a moved column) is caught.
void ExpectKeysFollowTheMap(const MemoryBank& bank) {
  const BankCopy copy = CopyBank(bank);
  const MatrixXd reference = copy.ReferenceKeys();
  ASSERT_EQ(copy.keys.rows(), reference.rows());
  ASSERT_EQ(copy.keys.cols(), reference.cols());
  ASSERT_EQ(copy.key_inverse_norms.size(), reference.cols());
  int bad = 0;
  for (Index c = 0; c < reference.cols(); ++c) {
    const double norm = reference.col(c).norm();
    const double error =
        (copy.keys.col(c).cast<double>() - reference.col(c)).norm();
    const double inverse_error =
        std::abs(static_cast<double>(copy.key_inverse_norms[c]) * norm - 1.0);
    if (!(error <= 1e-5 * (1.0 + norm)) || !(inverse_error <= 1e-5)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "key of id " << copy.ids[static_cast<size_t>(c)]
                      << " (column " << c << ") is off by " << error
                      << ", inverse norm by " << inverse_error
                      << ", under map version " << copy.version;
      }
    }
  }
  EXPECT_EQ(bad, 0);
  // The same through the bank's statistics.
  const BankStats stats = bank.Stats();
  EXPECT_EQ(stats.feature_map_version, copy.version);
  EXPECT_EQ(stats.feature_dim, static_cast<uint32_t>(reference.rows()));
  if (reference.cols() > 0) {
    const double max_key_norm = reference.colwise().norm().maxCoeff();
    EXPECT_NEAR(stats.max_key_norm, max_key_norm, 1e-5 * max_key_norm);
  }
}

// Δ_μ and nearest ids by brute force over the keys (in double).
struct SeparationReference {
  std::vector<double> separation;
  std::vector<PatternId> nearest;
  // The best neighbour beats the runner-up by more than float rounding.
  std::vector<bool> clear;
  double min_separation = std::numeric_limits<double>::infinity();
};

SeparationReference BruteForce(const BankCopy& copy) {
  const MatrixXd keys = copy.ReferenceKeys();
  const bool cosine = copy.similarity == kCosine;
  const MatrixXd gram = keys.transpose() * keys;
  const VectorXd norms = keys.colwise().norm().transpose();
  SeparationReference ref;
  const Index size = keys.cols();
  for (Index a = 0; a < size; ++a) {
    double best = -std::numeric_limits<double>::infinity();
    double second = best;
    PatternId best_id = 0;
    for (Index b = 0; b < size; ++b) {
      if (a == b) continue;
      const double score =
          cosine ? gram(a, b) / (norms[a] * norms[b]) : gram(a, b);
      if (score > best) {
        second = best;
        best = score;
        best_id = copy.ids[static_cast<size_t>(b)];
      } else if (score > second) {
        second = score;
      }
    }
    const double self = cosine ? 1.0 : gram(a, a);
    ref.separation.push_back(self - best);
    ref.nearest.push_back(best_id);
    ref.clear.push_back(best - second > 1e-5 * (1.0 + std::abs(best)));
    ref.min_separation = std::min(ref.min_separation, self - best);
  }
  return ref;
}

double SeparationTolerance(double value) {
  return 1e-5 * (1.0 + std::abs(value));
}

// PatternSeparation and Stats().min_separation equal the brute force over
// the keys of the current map.
void ExpectSeparationMatchesBruteForce(const MemoryBank& bank) {
  const BankCopy copy = CopyBank(bank);
  const SeparationReference ref = BruteForce(copy);
  for (size_t i = 0; i < copy.ids.size(); ++i) {
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const MemoryBank::Neighbour neighbour,
                                  bank.PatternSeparation(copy.ids[i]));
    EXPECT_NEAR(neighbour.separation, ref.separation[i],
                SeparationTolerance(ref.separation[i]))
        << "id " << copy.ids[i];
    if (ref.clear[i]) {
      EXPECT_EQ(neighbour.nearest_id, ref.nearest[i]) << "id " << copy.ids[i];
    }
  }
  const BankStats stats = bank.Stats();
  ASSERT_TRUE(stats.min_separation.has_value());
  EXPECT_NEAR(*stats.min_separation, ref.min_separation,
              SeparationTolerance(ref.min_separation));
}

void RefreshAll(MemoryBank& bank) {
  while (bank.RefreshSeparation(37) > 0) {
  }
  ASSERT_EQ(bank.Stats().separation_pending, 0u);
}

// Independent reference separation functions (double).
VectorXd ReferenceSoftmax(const VectorXd& z) {
  const VectorXd e = (z.array() - z.maxCoeff()).exp().matrix();
  return e / e.sum();
}

VectorXd ReferenceSparsemax(const VectorXd& z) {
  std::vector<double> sorted(z.data(), z.data() + z.size());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  double sum = 0.0;
  double threshold = 0.0;
  for (size_t k = 0; k < sorted.size(); ++k) {
    sum += sorted[k];
    const double candidate = (sum - 1.0) / static_cast<double>(k + 1);
    if (sorted[k] > candidate) threshold = candidate;
  }
  return (z.array() - threshold).max(0.0).matrix();
}

struct ReferenceResult {
  VectorXd pattern;  // x_T
  VectorXd weights;  // p_{T-1}
  VectorXd scores;   // s(x_{T-1})
};

// x <- Ξ·Sep(β·s(Φ(Ξ), Φ(x))) for `iterations` updates, all in double.
ReferenceResult ReferenceRetrieve(const BankCopy& copy, const MatrixXd& keys,
                                  Separation separation, double beta,
                                  uint32_t iterations, const VectorXd& query) {
  const bool cosine = copy.similarity == kCosine;
  const VectorXd key_norms = keys.colwise().norm().transpose();
  ReferenceResult result;
  result.pattern = query;
  for (uint32_t t = 0; t < iterations; ++t) {
    const VectorXd feature =
        copy.learned ? VectorXd(copy.weights * (result.pattern - copy.center))
                     : result.pattern;
    result.scores = keys.transpose() * feature;
    if (cosine) {
      result.scores = result.scores.cwiseQuotient(key_norms) / feature.norm();
    }
    const VectorXd logits = beta * result.scores;
    result.weights = separation == Separation::kSoftmax
                         ? ReferenceSoftmax(logits)
                         : ReferenceSparsemax(logits);
    result.pattern = copy.patterns * result.weights;
  }
  return result;
}

// Compares one result with the reference run for the same number of
// updates. Returns true when the reference state is a mixture (max weight
// below 0.99), so callers can check the cases were not all trivial.
bool ExpectMatchesReference(const BankCopy& copy, const MatrixXd& keys,
                            const RetrieveOptions& options,
                            absl::Span<const float> query,
                            const RetrieveResult& result) {
  EXPECT_GE(result.iterations, 1u);
  EXPECT_LE(result.iterations, options.max_iterations);
  const Index dim = copy.patterns.rows();
  const VectorXd x0 =
      Eigen::Map<const VectorXf>(query.data(), dim).cast<double>();
  const ReferenceResult ref = ReferenceRetrieve(
      copy, keys, *options.separation, options.beta, result.iterations, x0);
  EXPECT_EQ(result.beta, options.beta);
  EXPECT_EQ(result.pattern.size(), static_cast<size_t>(dim));  // pattern space
  if (result.pattern.size() != static_cast<size_t>(dim)) return false;
  const VectorXd got =
      Eigen::Map<const VectorXf>(result.pattern.data(), dim).cast<double>();
  EXPECT_LE((got - ref.pattern).norm(),
            1e-4 * std::max(1.0, ref.pattern.norm()))
      << "got " << got.transpose() << "\nwant " << ref.pattern.transpose();
  EXPECT_EQ(result.matches.size(), copy.ids.size());
  for (const Match& match : result.matches) {
    const Index c = copy.Column(match.id);
    const double weight = ref.weights[c];
    EXPECT_NEAR(match.weight, weight, 1e-4 * std::max(std::abs(weight), 0.1))
        << "id " << match.id;
    const double score = ref.scores[c];
    EXPECT_NEAR(match.score, score, 1e-4 * std::max(1.0, std::abs(score)))
        << "id " << match.id;
  }
  // The nearest pattern, unless the reference's top two weights tie.
  Index best = 0;
  ref.weights.maxCoeff(&best);
  double runner_up = 0.0;
  for (Index c = 0; c < ref.weights.size(); ++c) {
    if (c != best) runner_up = std::max(runner_up, ref.weights[c]);
  }
  if (ref.weights[best] - runner_up > 1e-3) {
    EXPECT_EQ(result.nearest_id, copy.ids[static_cast<size_t>(best)]);
    EXPECT_NEAR(result.nearest_weight, ref.weights[best],
                1e-4 * std::max(ref.weights[best], 0.1));
  }
  return ref.weights[best] < 0.99;
}

// True when the n floats at a and b have the same bits (so -0 differs from
// 0; a copy that went through arithmetic would show).
bool SameBits(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t x = 0;
    uint32_t y = 0;
    std::memcpy(&x, a + i, sizeof(x));
    std::memcpy(&y, b + i, sizeof(y));
    if (x != y) return false;
  }
  return true;
}

std::vector<float> StoredPattern(const MemoryBank& bank, PatternId id) {
  auto values = bank.Get(id);
  EXPECT_THAT(values, IsOk());
  return values.ok() ? *values : std::vector<float>();
}

// Bit-for-bit equality of two retrieval results.
void ExpectSameResult(const RetrieveResult& a, const RetrieveResult& b) {
  ASSERT_EQ(a.pattern.size(), b.pattern.size());
  EXPECT_TRUE(SameBits(a.pattern.data(), b.pattern.data(), a.pattern.size()));
  EXPECT_EQ(a.nearest_id, b.nearest_id);
  EXPECT_EQ(a.iterations, b.iterations);
  EXPECT_EQ(a.beta, b.beta);
  ASSERT_EQ(a.matches.size(), b.matches.size());
  for (size_t i = 0; i < a.matches.size(); ++i) {
    EXPECT_EQ(a.matches[i].id, b.matches[i].id);
    EXPECT_EQ(a.matches[i].weight, b.matches[i].weight);
    EXPECT_EQ(a.matches[i].score, b.matches[i].score);
  }
}

// A fixed retrieval (automatic β, so the statistics count too) whose result
// must not change when a SetFeatureMap fails.
RetrieveResult Probe(const MemoryBank& bank, const std::vector<float>& query) {
  RetrieveOptions options;
  options.return_matches = 5;
  auto result = Retriever::Retrieve(bank, query, options);
  EXPECT_THAT(result, IsOk());
  return result.ok() ? *std::move(result) : RetrieveResult{};
}

void ExpectSameStats(const BankStats& a, const BankStats& b) {
  EXPECT_EQ(a.pattern_count, b.pattern_count);
  EXPECT_EQ(a.memory_bytes, b.memory_bytes);
  EXPECT_EQ(a.min_separation, b.min_separation);
  EXPECT_EQ(a.separation_pending, b.separation_pending);
  EXPECT_EQ(a.effective_beta, b.effective_beta);
  EXPECT_EQ(a.feature_map_version, b.feature_map_version);
  EXPECT_EQ(a.feature_dim, b.feature_dim);
  EXPECT_EQ(a.max_key_norm, b.max_key_norm);
}

// Every stored pattern, as a query at high β under cosine, retrieves itself
// (its own key scores 1), and reads back bit for bit.
void ExpectStoredPatternsRetrieveThemselves(
    const MemoryBank& bank,
    const std::map<PatternId, std::vector<float>>& stored) {
  ASSERT_EQ(bank.size(), stored.size());
  std::vector<PatternId> ids;
  std::vector<float> queries;
  for (const auto& [id, values] : stored) {
    ids.push_back(id);
    queries.insert(queries.end(), values.begin(), values.end());
    const std::vector<float> got = StoredPattern(bank, id);
    ASSERT_EQ(got.size(), values.size());
    EXPECT_TRUE(SameBits(got.data(), values.data(), values.size()))
        << "id " << id;
  }
  std::vector<float> many;
  ASSERT_THAT(bank.GetMany(ids, &many), IsOk());
  ASSERT_EQ(many.size(), queries.size());
  EXPECT_TRUE(SameBits(many.data(), queries.data(), queries.size()));
  RetrieveOptions options;
  options.beta = 1000.0f;
  options.max_iterations = 1;
  options.omit_pattern = true;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const std::vector<RetrieveResult> results,
      Retriever::RetrieveBatch(bank, queries, options));
  ASSERT_EQ(results.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(results[i].nearest_id, ids[i]);
  }
}

// ---------------------------------------------------------------------------
// FeatureMap itself.

TEST(FeatureMapTest, CreateRejectsMalformedMaps) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* name;
    VectorXf center;
    MatrixXf weights;
    uint32_t version;
    const char* message;
  };
  MatrixXf good = MatrixXf::Ones(3, 2);
  MatrixXf with_nan = good;
  with_nan(2, 1) = nan;
  MatrixXf with_inf = good;
  with_inf(0, 0) = -inf;
  const std::vector<Case> cases = {
      {"no rows", VectorXf::Zero(2), MatrixXf(0, 2), 1, "non-empty"},
      {"no columns", VectorXf(0), MatrixXf(3, 0), 1, "non-empty"},
      {"nothing", VectorXf(0), MatrixXf(0, 0), 1, "non-empty"},
      {"short centre", VectorXf::Zero(1), good, 1, "centre must have 2"},
      {"long centre", VectorXf::Zero(3), good, 1, "centre must have 2"},
      {"NaN weight", VectorXf::Zero(2), with_nan, 1, "finite"},
      {"infinite weight", VectorXf::Zero(2), with_inf, 1, "finite"},
      {"infinite centre", VectorXf::Constant(2, inf), good, 1, "finite"},
      {"NaN centre", VectorXf::Constant(2, nan), good, 1, "finite"},
      {"version 0", VectorXf::Zero(2), good, 0, "version >= 1"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(
        FeatureMap::Create(c.center, c.weights, c.version, {}),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.name;
  }
  // The smallest valid map.
  EXPECT_THAT(
      FeatureMap::Create(VectorXf::Zero(1), MatrixXf::Ones(1, 1), 1, {}),
      IsOk());
}

TEST(FeatureMapTest, ApplyMatchesAHandComputation) {
  MatrixXf w(3, 2);
  w << 1, 2,  //
      3, 4,   //
      5, 6;
  VectorXf c(2);
  c << 1, -1;
  FeatureMapInfo info;
  info.mode = TrainMode::kUHopCompat;
  info.iterations = 17;
  info.seed = 99;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto map, FeatureMap::Create(c, w, 7, info));
  EXPECT_FALSE(map->is_identity());
  EXPECT_EQ(map->version(), 7u);
  EXPECT_EQ(map->input_dim(), 2u);
  EXPECT_EQ(map->feature_dim(), 3u);
  EXPECT_EQ(map->weights(), w);
  EXPECT_EQ(map->center(), c);
  EXPECT_EQ(map->info().mode, TrainMode::kUHopCompat);
  EXPECT_EQ(map->info().iterations, 17u);
  EXPECT_EQ(map->info().seed, 99u);
  // W, c and the cached W·c.
  EXPECT_EQ(map->memory_bytes(), (6u + 2u + 3u) * sizeof(float));

  // Columns x = (2, 3), (1, -1) (= c), (0, 0): x - c = (1, 4), (0, 0),
  // (-1, 1); W(x - c) = (9, 19, 29), 0, (1, 1, 1).
  MatrixXf x(2, 3);
  x << 2, 1, 0,  //
      3, -1, 0;
  MatrixXf want(3, 3);
  want << 9, 0, 1,  //
      19, 0, 1,     //
      29, 0, 1;
  MatrixXf out(3, 3);
  map->Apply(x, out);
  EXPECT_EQ(out, want);
  // One column at a time (the retriever's path) agrees.
  for (Index j = 0; j < 3; ++j) {
    VectorXf column(3);
    map->Apply(x.col(j), column);
    EXPECT_EQ(column, want.col(j)) << "column " << j;
  }
}

TEST(FeatureMapTest, ApplyWiderThanTheInputAgreesWithDouble) {
  std::mt19937 rng(1);
  for (const Index feature_dim : {Index{3}, Index{40}}) {
    auto map = RandomMap(rng, feature_dim, 9, 1);
    const std::vector<float> values = GaussianPatterns(rng, 20, 9);
    const Eigen::Map<const MatrixXf> x(values.data(), 9, 20);
    MatrixXf out(feature_dim, 20);
    map->Apply(x, out);
    const MatrixXd want =
        map->weights().cast<double>() *
        (x.cast<double>().colwise() - map->center().cast<double>());
    EXPECT_LE((out.cast<double>() - want).norm(), 1e-5 * want.norm());
  }
}

TEST(FeatureMapTest, IdentityCopiesItsInput) {
  auto map = FeatureMap::Identity(4);
  EXPECT_TRUE(map->is_identity());
  EXPECT_EQ(map->version(), 0u);
  EXPECT_EQ(map->input_dim(), 4u);
  EXPECT_EQ(map->feature_dim(), 4u);
  EXPECT_EQ(map->weights().size(), 0);
  EXPECT_EQ(map->center().size(), 0);
  EXPECT_EQ(map->memory_bytes(), 0u);
  MatrixXf x(4, 2);
  x << 1, -2,    //
      3e30f, 0,  //
      -0.0f, 5,  //
      1e-38f, 7;
  MatrixXf out = MatrixXf::Constant(4, 2, 42.0f);
  map->Apply(x, out);
  EXPECT_TRUE(SameBits(out.data(), x.data(), 8));
}

// ---------------------------------------------------------------------------
// Retrieval through a learned map.

TEST(FeatureMapRetrievalTest, AgreesWithADoublePrecisionReference) {
  constexpr int kCount = 40;
  constexpr int kQueries = 6;
  int mixtures = 0;
  int full_runs = 0;
  int compared = 0;
  for (const Similarity similarity : {kCosine, kDot}) {
    // 0: the identity (a control for the reference itself); 5 < d; 24 > d.
    for (const Index feature_dim : {Index{0}, Index{5}, Index{24}}) {
      SCOPED_TRACE(::testing::Message()
                   << SimilarityName(similarity) << ", D_Φ " << feature_dim);
      std::mt19937 rng(static_cast<uint32_t>(100 + feature_dim) +
                       (similarity == kDot ? 1u : 0u));
      auto bank = NewBank(kDim, similarity);
      const std::vector<float> values = GaussianPatterns(rng, kCount, kDim);
      ASSERT_THAT(bank->Add(FreshIds(kCount), values), IsOk());
      if (feature_dim > 0) {
        ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, feature_dim, kDim, 1)),
                    IsOk());
      }
      const BankCopy copy = CopyBank(*bank);
      const MatrixXd keys = copy.ReferenceKeys();
      // Noisy copies of stored patterns, a blend of two, a random query.
      std::vector<float> queries;
      std::normal_distribution<float> noise(0.0f, 0.5f);
      for (int q = 0; q < 4; ++q) {
        for (uint32_t i = 0; i < kDim; ++i) {
          queries.push_back(values[static_cast<size_t>(q * 7) * kDim + i] +
                            noise(rng));
        }
      }
      for (uint32_t i = 0; i < kDim; ++i) {
        queries.push_back(0.5f * values[i] + 0.5f * values[kDim + i]);
      }
      const std::vector<float> random = GaussianPatterns(rng, 1, kDim);
      queries.insert(queries.end(), random.begin(), random.end());
      ASSERT_EQ(queries.size(), size_t{kQueries} * kDim);

      for (const Separation separation :
           {Separation::kSoftmax, Separation::kSparsemax}) {
        SCOPED_TRACE(SeparationName(separation));
        RetrieveOptions options;
        options.beta = similarity == kCosine ? 6.0f : 0.3f;
        options.max_iterations = 3;
        options.tolerance = 0.0f;
        options.return_matches = kCount;
        options.separation = separation;
        for (int q = 0; q < kQueries; ++q) {
          const absl::Span<const float> query =
              absl::MakeConstSpan(queries).subspan(
                  static_cast<size_t>(q) * kDim, kDim);
          HOPFIELD_ASSERT_OK_AND_ASSIGN(
              const RetrieveResult result,
              Retriever::Retrieve(*bank, query, options));
          SCOPED_TRACE(::testing::Message() << "query " << q);
          if (ExpectMatchesReference(copy, keys, options, query, result)) {
            ++mixtures;
          }
          if (result.iterations == 3) ++full_runs;
          ++compared;
        }
        HOPFIELD_ASSERT_OK_AND_ASSIGN(
            const std::vector<RetrieveResult> batch,
            Retriever::RetrieveBatch(*bank, queries, options));
        ASSERT_EQ(batch.size(), size_t{kQueries});
        for (int q = 0; q < kQueries; ++q) {
          SCOPED_TRACE(::testing::Message() << "batch query " << q);
          ExpectMatchesReference(copy, keys, options,
                                 absl::MakeConstSpan(queries).subspan(
                                     static_cast<size_t>(q) * kDim, kDim),
                                 batch[static_cast<size_t>(q)]);
        }
      }
    }
  }
  // The comparison was not trivial: mixtures and whole runs occurred.
  EXPECT_GT(mixtures, compared / 4);
  EXPECT_GT(full_runs, compared / 2);
}

TEST(FeatureMapRetrievalTest, AutomaticBetaAndCapacityUseFeatureSpace) {
  for (const Similarity similarity : {kCosine, kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    std::mt19937 rng(7);
    auto bank = NewBank(kDim, similarity);
    ASSERT_THAT(bank->Add(FreshIds(60), GaussianPatterns(rng, 60, kDim)),
                IsOk());
    const BankStats before = bank->Stats();
    // Scaled by 0.5: key norms are about half the pattern norms, so a rule
    // that used the patterns' m or Δ under dot would be caught.
    auto map = RandomMap(rng, 20, kDim, 3, 0.5f);
    ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
    const BankCopy copy = CopyBank(*bank);
    const SeparationReference ref = BruteForce(copy);
    const BankStats stats = bank->Stats();
    EXPECT_EQ(stats.feature_map_version, 3u);
    EXPECT_EQ(stats.feature_dim, 20u);
    EXPECT_EQ(stats.max_norm, before.max_norm);  // patterns unchanged
    const double max_key_norm =
        copy.ReferenceKeys().colwise().norm().maxCoeff();
    EXPECT_NEAR(stats.max_key_norm, max_key_norm, 1e-5 * max_key_norm);
    EXPECT_LT(stats.max_key_norm, 0.8 * stats.max_norm);
    const double rule_norm = similarity == kCosine ? 1.0 : max_key_norm;
    const double beta = AutoBeta(60, ref.min_separation, rule_norm);
    EXPECT_NEAR(stats.effective_beta, beta, 1e-3 * beta);
    EXPECT_NEAR(
        stats.log_capacity,
        LogCapacity(stats.effective_beta, 20, *stats.min_separation, rule_norm),
        1e-9);
    // A retrieval with the bank's defaults uses that β.
    const std::vector<float> query = StoredPattern(*bank, 9);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const RetrieveResult result,
                                  Retriever::Retrieve(*bank, query));
    EXPECT_FLOAT_EQ(result.beta, static_cast<float>(stats.effective_beta));
  }
}

// ---------------------------------------------------------------------------
// Separation statistics in feature space.

TEST(FeatureMapSeparationTest, SynchronousBankIsExactAfterSetFeatureMap) {
  for (const Similarity similarity : {kCosine, kDot}) {
    for (const Index feature_dim : {Index{5}, Index{30}}) {
      SCOPED_TRACE(::testing::Message()
                   << SimilarityName(similarity) << ", D_Φ " << feature_dim);
      std::mt19937 rng(static_cast<uint32_t>(20 + feature_dim));
      auto bank = NewBank(kDim, similarity);
      ASSERT_THAT(bank->Add(FreshIds(80), GaussianPatterns(rng, 80, kDim)),
                  IsOk());
      ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, feature_dim, kDim, 1)),
                  IsOk());
      EXPECT_EQ(bank->Stats().separation_pending, 0u);
      ExpectSeparationMatchesBruteForce(*bank);
      ExpectKeysFollowTheMap(*bank);
      // Incremental updates stay in feature space: appends, upserts, and
      // removing a nearest neighbour (which forces rescans).
      ASSERT_THAT(bank->Add(FreshIds(7), GaussianPatterns(rng, 7, kDim)),
                  IsOk());
      ASSERT_THAT(bank->Add({4, 40, 0}, GaussianPatterns(rng, 3, kDim)),
                  IsOk());
      ExpectSeparationMatchesBruteForce(*bank);
      HOPFIELD_ASSERT_OK_AND_ASSIGN(const auto neighbour,
                                    bank->PatternSeparation(1));
      EXPECT_THAT(bank->Remove({neighbour.nearest_id, 2, 3}), IsOkAndHolds(3u));
      ExpectSeparationMatchesBruteForce(*bank);
      // A second map replaces the first.
      ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 8, kDim, 2)), IsOk());
      ExpectSeparationMatchesBruteForce(*bank);
      ExpectKeysFollowTheMap(*bank);
    }
  }
}

TEST(FeatureMapSeparationTest,
     DeferredBankIsPendingAndProvisionalIsAnUpperBound) {
  for (const Similarity similarity : {kCosine, kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    std::mt19937 rng(31);
    auto bank = NewBank(kDim, similarity, SeparationUpdate::kDeferred);
    ASSERT_THAT(bank->Add(FreshIds(90), GaussianPatterns(rng, 90, kDim)),
                IsOk());
    RefreshAll(*bank);
    ExpectSeparationMatchesBruteForce(*bank);
    const std::vector<PatternId> ids = CopyBank(*bank).ids;
    std::map<PatternId, PatternId> old_nearest;
    for (const PatternId id : ids) {
      old_nearest[id] = bank->PatternSeparation(id).value().nearest_id;
    }

    ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 6, kDim, 1)), IsOk());
    BankStats stats = bank->Stats();
    EXPECT_EQ(stats.separation_pending, 90u);
    EXPECT_EQ(stats.feature_map_version, 1u);
    ExpectKeysFollowTheMap(*bank);
    SeparationReference ref = BruteForce(CopyBank(*bank));
    // Provisional: each pattern's old neighbour re-scored under the keys,
    // so Δ_μ and Δ_min are upper bounds of the exact values.
    ASSERT_TRUE(stats.min_separation.has_value());
    EXPECT_GE(*stats.min_separation,
              ref.min_separation - SeparationTolerance(ref.min_separation));
    int strictly_above = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      HOPFIELD_ASSERT_OK_AND_ASSIGN(const auto neighbour,
                                    bank->PatternSeparation(ids[i]));
      EXPECT_EQ(neighbour.nearest_id, old_nearest[ids[i]]);
      EXPECT_GE(neighbour.separation,
                ref.separation[i] - SeparationTolerance(ref.separation[i]))
          << "id " << ids[i];
      if (neighbour.separation > ref.separation[i] + 1e-3) ++strictly_above;
    }
    // The map changed the geometry: many old neighbours are not the new ones.
    EXPECT_GT(strictly_above, 10);

    // A partial refresh keeps the bound; writes meanwhile are pending too.
    EXPECT_EQ(bank->RefreshSeparation(25), 25u);
    ASSERT_THAT(bank->Add({0, 0, 17}, GaussianPatterns(rng, 3, kDim)), IsOk());
    EXPECT_THAT(bank->Remove({ids[40], ids[41]}), IsOkAndHolds(2u));
    stats = bank->Stats();
    EXPECT_GT(stats.separation_pending, 0u);
    ref = BruteForce(CopyBank(*bank));
    ASSERT_TRUE(stats.min_separation.has_value());
    EXPECT_GE(*stats.min_separation,
              ref.min_separation - SeparationTolerance(ref.min_separation));

    RefreshAll(*bank);
    ExpectSeparationMatchesBruteForce(*bank);
    ExpectKeysFollowTheMap(*bank);
  }
}

TEST(FeatureMapSeparationTest,
     DeferredBankWithNothingProcessedHasNoProvisional) {
  std::mt19937 rng(32);
  auto bank = NewBank(kDim, kCosine, SeparationUpdate::kDeferred);
  ASSERT_THAT(bank->Add(FreshIds(30), GaussianPatterns(rng, 30, kDim)), IsOk());
  ASSERT_FALSE(bank->Stats().min_separation.has_value());
  ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 9, kDim, 1)), IsOk());
  // No pattern had a neighbour to re-score: nothing to report yet.
  EXPECT_FALSE(bank->Stats().min_separation.has_value());
  EXPECT_EQ(bank->Stats().separation_pending, 30u);
  RefreshAll(*bank);
  ExpectSeparationMatchesBruteForce(*bank);
}

// ---------------------------------------------------------------------------
// Writes under a learned map.

TEST(FeatureMapBankTest, WritesKeepKeysBesideTheirPatterns) {
  constexpr Index kFeatureDim = 20;
  std::mt19937 rng(41);
  auto bank = NewBank(kDim);
  std::map<PatternId, std::vector<float>> stored;
  auto add = [&](const std::vector<PatternId>& ids) {
    const std::vector<float> values =
        GaussianPatterns(rng, static_cast<int>(ids.size()), kDim);
    auto assigned = bank->Add(ids, values);
    ASSERT_THAT(assigned, IsOk());
    for (size_t i = 0; i < assigned->size(); ++i) {
      stored[(*assigned)[i]].assign(
          values.begin() + static_cast<std::ptrdiff_t>(i * kDim),
          values.begin() + static_cast<std::ptrdiff_t>((i + 1) * kDim));
    }
  };
  auto remove = [&](const std::vector<PatternId>& ids) {
    uint64_t expected = 0;
    for (const PatternId id : ids) expected += stored.erase(id);
    EXPECT_THAT(bank->Remove(ids), IsOkAndHolds(expected));
  };
  add(FreshIds(100));
  const uint64_t before = bank->Stats().memory_bytes;
  auto map = RandomMap(rng, kFeatureDim, kDim, 1);
  ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
  // About D_Φ + 1 floats per pattern (keys and their inverse norms, at the
  // bank's capacity, 100..125 + slack), plus the map.
  const uint64_t grown = bank->Stats().memory_bytes - before;
  EXPECT_GE(grown,
            100 * (kFeatureDim + 1) * sizeof(float) + map->memory_bytes());
  EXPECT_LE(grown,
            128 * (kFeatureDim + 1) * sizeof(float) + map->memory_bytes());
  EXPECT_EQ(bank->feature_map(), map);
  ExpectKeysFollowTheMap(*bank);
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);

  // Appends (the buffers grow, keys with them) and upserts.
  add(FreshIds(60));
  add({5, 50, 100, 0});
  ExpectKeysFollowTheMap(*bank);
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);
  ExpectSeparationMatchesBruteForce(*bank);

  // Removal moves the last column into the hole: its key must move with it.
  // Remove the last column itself, middle ones and an unknown id.
  const PatternId last = CopyBank(*bank).ids.back();
  const PatternId second_last = CopyBank(*bank).ids[stored.size() - 2];
  remove({7});
  ExpectKeysFollowTheMap(*bank);
  remove({last, 8, 999999, 9});
  ExpectKeysFollowTheMap(*bank);
  EXPECT_FALSE(bank->Contains(last));
  ASSERT_TRUE(bank->Contains(second_last));
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);
  ExpectSeparationMatchesBruteForce(*bank);

  // Most patterns go: the buffers shrink (keys too) and stay consistent.
  const uint64_t full = bank->Stats().memory_bytes;
  std::vector<PatternId> doomed;
  for (const auto& [id, values] : stored) {
    if (id % 8 != 0) doomed.push_back(id);
  }
  remove(doomed);
  const BankStats shrunk = bank->Stats();
  EXPECT_LT(shrunk.memory_bytes, full / 2);
  EXPECT_GE(shrunk.memory_bytes,
            stored.size() * (kDim + kFeatureDim + 1) * sizeof(float));
  ExpectKeysFollowTheMap(*bank);
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);
  ExpectSeparationMatchesBruteForce(*bank);

  // Emptied and refilled under the map.
  std::vector<PatternId> rest;
  rest.reserve(stored.size());
  for (const auto& [id, values] : stored) rest.push_back(id);
  remove(rest);
  EXPECT_EQ(bank->size(), 0u);
  add(FreshIds(12));
  ExpectKeysFollowTheMap(*bank);
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);
  ExpectSeparationMatchesBruteForce(*bank);
}

TEST(FeatureMapBankTest, MapSetOnAnEmptyBankAppliesToLaterAdds) {
  std::mt19937 rng(42);
  auto bank = NewBank(kDim, kDot);
  ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 15, kDim, 4)), IsOk());
  BankStats stats = bank->Stats();
  EXPECT_EQ(stats.feature_map_version, 4u);
  EXPECT_EQ(stats.feature_dim, 15u);
  EXPECT_EQ(stats.pattern_count, 0u);
  EXPECT_FALSE(stats.min_separation.has_value());
  ASSERT_THAT(bank->Add(FreshIds(1), GaussianPatterns(rng, 1, kDim)), IsOk());
  EXPECT_FALSE(bank->Stats().min_separation.has_value());
  ASSERT_THAT(bank->Add(FreshIds(30), GaussianPatterns(rng, 30, kDim)), IsOk());
  ExpectKeysFollowTheMap(*bank);
  ExpectSeparationMatchesBruteForce(*bank);
}

TEST(FeatureMapBankTest, BudgetHoldsTheKeysAndRefusalChangesNothing) {
  auto budget = MemoryBudget::Create(1 << 20, "test budget");
  std::mt19937 rng(43);
  auto bank = NewBank(16, kCosine, SeparationUpdate::kSynchronous, budget);
  ASSERT_THAT(bank->Add(FreshIds(200), GaussianPatterns(rng, 200, 16)), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  const uint64_t identity_bytes = bank->Stats().memory_bytes;
  const std::vector<float> query = GaussianPatterns(rng, 1, 16);

  auto v1 = RandomMap(rng, 8, 16, 1);
  ASSERT_THAT(bank->SetFeatureMap(v1), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  EXPECT_GT(budget->used(), identity_bytes + uint64_t{200} * 8 * sizeof(float));

  // Leave ~1 KB free: the keys of a 64-dimensional map (~50 KB) do not fit
  // beside the current ones.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      MemoryReservation squeeze,
      budget->Reserve(budget->available() - 1000, "squeeze"));
  const BankStats stats_before = bank->Stats();
  const RetrieveResult probe_before = Probe(*bank, query);
  const uint64_t used_before = budget->used();
  EXPECT_THAT(
      bank->SetFeatureMap(RandomMap(rng, 64, 16, 2)),
      StatusIs(absl::StatusCode::kResourceExhausted,
               AllOf(HasSubstr("test budget"), HasSubstr("bank \"fm\""))));
  EXPECT_EQ(bank->feature_map(), v1);
  ExpectSameStats(bank->Stats(), stats_before);
  ExpectSameResult(Probe(*bank, query), probe_before);
  EXPECT_EQ(budget->used(), used_before);
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes + squeeze.bytes());
  ExpectKeysFollowTheMap(*bank);

  // Adds under the learned map reserve the keys' growth as well.
  EXPECT_THAT(bank->Add(FreshIds(100), GaussianPatterns(rng, 100, 16)),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(bank->size(), 200u);

  squeeze.Release();
  auto v2 = RandomMap(rng, 64, 16, 2);
  ASSERT_THAT(bank->SetFeatureMap(v2), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  ASSERT_THAT(bank->Add(FreshIds(100), GaussianPatterns(rng, 100, 16)), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  ExpectKeysFollowTheMap(*bank);
  std::vector<PatternId> doomed;
  for (PatternId id = 1; id <= 250; ++id) doomed.push_back(id);
  EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(250u));
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  ExpectKeysFollowTheMap(*bank);

  // Back to the identity: the keys' memory goes back to the budget.
  const uint64_t learned_bytes = bank->Stats().memory_bytes;
  ASSERT_THAT(bank->SetFeatureMap(FeatureMap::Identity(16)), IsOk());
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
  EXPECT_LT(bank->Stats().memory_bytes + uint64_t{50} * 64 * sizeof(float),
            learned_bytes);
  bank.reset();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(FeatureMapBankTest, BudgetRefusesTheFirstLearnedMapToo) {
  auto budget = MemoryBudget::Create(1 << 20, "test budget");
  std::mt19937 rng(44);
  auto bank = NewBank(16, kDot, SeparationUpdate::kDeferred, budget);
  ASSERT_THAT(bank->Add(FreshIds(100), GaussianPatterns(rng, 100, 16)), IsOk());
  RefreshAll(*bank);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      MemoryReservation squeeze,
      budget->Reserve(budget->available() - 100, "squeeze"));
  const BankStats stats_before = bank->Stats();
  const std::vector<float> query = GaussianPatterns(rng, 1, 16);
  const RetrieveResult probe_before = Probe(*bank, query);
  EXPECT_THAT(bank->SetFeatureMap(RandomMap(rng, 4, 16, 1)),
              StatusIs(absl::StatusCode::kResourceExhausted));
  ExpectSameStats(bank->Stats(), stats_before);
  EXPECT_EQ(bank->Stats().separation_pending, 0u);  // nothing marked
  ExpectSameResult(Probe(*bank, query), probe_before);
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes + squeeze.bytes());
}

// The bank shrinks (a removal) while phase 1 holds keys sized for the old
// capacity, and the budget fills up meanwhile: whatever the outcome, what the
// bank holds stays reserved (used() == memory_bytes + the squeeze).
TEST(FeatureMapBankTest, BudgetStaysExactWhenTheBankShrinksDuringPublication) {
  auto budget = MemoryBudget::Create(1 << 20, "test budget");
  std::mt19937 rng(45);
  auto bank = NewBank(16, kCosine, SeparationUpdate::kSynchronous, budget);
  ASSERT_THAT(bank->Add(FreshIds(200), GaussianPatterns(rng, 200, 16)), IsOk());
  std::vector<PatternId> doomed;
  for (PatternId id = 1; id <= 180; ++id) doomed.push_back(id);
  const uint64_t full_bytes = bank->Stats().memory_bytes;
  MemoryReservation squeeze;
  int poll = 0;
  auto map = RandomMap(rng, 64, 16, 1);
  const absl::Status status = bank->SetFeatureMap(map, [&] {
    if (++poll == 1) {
      EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(180u));
      EXPECT_LT(bank->Stats().memory_bytes, full_bytes / 2);  // shrunk
      auto reserved = budget->Reserve(budget->available(), "squeeze");
      EXPECT_THAT(reserved, IsOk());
      if (reserved.ok()) squeeze = std::move(reserved).value();
    }
    return absl::OkStatus();
  });
  EXPECT_THAT(status,
              AnyOf(IsOk(), StatusIs(absl::StatusCode::kResourceExhausted)));
  if (status.ok()) {
    EXPECT_EQ(bank->feature_map(), map);
  } else {
    EXPECT_TRUE(bank->feature_map()->is_identity());
  }
  EXPECT_EQ(budget->used(), bank->Stats().memory_bytes + squeeze.bytes());
  ExpectKeysFollowTheMap(*bank);
  squeeze.Release();
  bank.reset();
  EXPECT_EQ(budget->used(), 0u);
}

// check_continue is polled without the bank's lock held, between the blocks
// of phase 1 and before phase 2: writes made there land between the phases
// of the publication. Whatever they are, the keys must end up under the new
// map, and synchronous statistics exact.
TEST(FeatureMapBankTest, WritesDuringPublicationGetKeysUnderTheNewMap) {
  struct Write {
    const char* name;
    std::function<void(MemoryBank&, std::mt19937&)> apply;
  };
  const std::vector<Write> writes = {
      {"upsert",
       [](MemoryBank& bank, std::mt19937& rng) {
         EXPECT_THAT(bank.Add({3, 30}, GaussianPatterns(rng, 2, kDim)), IsOk());
       }},
      {"append",
       [](MemoryBank& bank, std::mt19937& rng) {
         EXPECT_THAT(bank.Add(FreshIds(3), GaussianPatterns(rng, 3, kDim)),
                     IsOk());
       }},
      {"remove a middle column",
       [](MemoryBank& bank, std::mt19937&) {
         EXPECT_THAT(bank.Remove({5}), IsOkAndHolds(1u));
       }},
      {"remove the last column",
       [](MemoryBank& bank, std::mt19937&) {
         const PatternId last = CopyBank(bank).ids.back();
         EXPECT_THAT(bank.Remove({last}), IsOkAndHolds(1u));
       }},
      {"remove, then append back to the same size",
       [](MemoryBank& bank, std::mt19937& rng) {
         EXPECT_THAT(bank.Remove({6, 7}), IsOkAndHolds(2u));
         EXPECT_THAT(bank.Add({6, 0}, GaussianPatterns(rng, 2, kDim)), IsOk());
       }},
      {"grow past the capacity",
       [](MemoryBank& bank, std::mt19937& rng) {
         EXPECT_THAT(bank.Add(FreshIds(70), GaussianPatterns(rng, 70, kDim)),
                     IsOk());
       }},
      {"another map",
       [](MemoryBank& bank, std::mt19937& rng) {
         EXPECT_THAT(bank.SetFeatureMap(RandomMap(rng, 7, kDim, 2)), IsOk());
       }},
      {"the identity",
       [](MemoryBank& bank, std::mt19937&) {
         EXPECT_THAT(bank.SetFeatureMap(FeatureMap::Identity(kDim)), IsOk());
       }},
  };
  for (const SeparationUpdate update :
       {SeparationUpdate::kSynchronous, SeparationUpdate::kDeferred}) {
    for (const Write& write : writes) {
      // How often the publication polls (at least: before phase 2).
      int polls = 0;
      {
        std::mt19937 rng(50);
        auto bank = NewBank(kDim, kCosine, update);
        ASSERT_THAT(bank->Add(FreshIds(60), GaussianPatterns(rng, 60, kDim)),
                    IsOk());
        ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 20, kDim, 1),
                                        [&polls] {
                                          ++polls;
                                          return absl::OkStatus();
                                        }),
                    IsOk());
        ASSERT_GE(polls, 1);
      }
      for (int at = 1; at <= polls; ++at) {
        SCOPED_TRACE(
            ::testing::Message()
            << write.name << " at poll " << at << " of " << polls
            << (update == SeparationUpdate::kDeferred ? ", deferred" : ""));
        std::mt19937 rng(50);
        auto bank = NewBank(kDim, kCosine, update);
        ASSERT_THAT(bank->Add(FreshIds(60), GaussianPatterns(rng, 60, kDim)),
                    IsOk());
        if (update == SeparationUpdate::kDeferred) RefreshAll(*bank);
        auto map = RandomMap(rng, 20, kDim, 1);
        int poll = 0;
        ASSERT_THAT(bank->SetFeatureMap(map,
                                        [&] {
                                          if (++poll == at)
                                            write.apply(*bank, rng);
                                          return absl::OkStatus();
                                        }),
                    IsOk());
        // The publication finishing last wins.
        EXPECT_EQ(bank->feature_map(), map);
        ExpectKeysFollowTheMap(*bank);
        if (update == SeparationUpdate::kDeferred) RefreshAll(*bank);
        EXPECT_EQ(bank->Stats().separation_pending, 0u);
        ExpectSeparationMatchesBruteForce(*bank);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Concurrency: writers, publications and readers at once (run under TSan).

void RaceWritersPublicationsAndReaders(SeparationUpdate update) {
  constexpr uint32_t kRaceDim = 16;
  constexpr int kPublications = 40;
  auto bank = NewBank(kRaceDim, kCosine, update);
  std::mt19937 setup_rng(60);
  std::map<PatternId, std::vector<float>> stored;
  {
    const std::vector<float> values =
        GaussianPatterns(setup_rng, 150, kRaceDim);
    auto ids = bank->Add(FreshIds(150), values);
    ASSERT_THAT(ids, IsOk());
    for (size_t i = 0; i < ids->size(); ++i) {
      stored[(*ids)[i]].assign(
          values.begin() + static_cast<std::ptrdiff_t>(i * kRaceDim),
          values.begin() + static_cast<std::ptrdiff_t>((i + 1) * kRaceDim));
    }
  }
  // Versions 1, 2, 3, ... of various widths; every fifth publication is the
  // identity (the keys go away and come back); the last is learned.
  std::vector<std::shared_ptr<const FeatureMap>> maps;
  uint32_t version = 0;
  for (int i = 0; i < kPublications; ++i) {
    if (i % 5 == 3) {
      maps.push_back(FeatureMap::Identity(kRaceDim));
    } else {
      const std::array<Index, 3> widths = {4, 16, 40};
      maps.push_back(RandomMap(setup_rng, widths[static_cast<size_t>(i % 3)],
                               kRaceDim, ++version));
    }
  }
  ASSERT_FALSE(maps.back()->is_identity());
  std::map<uint32_t, uint32_t> width_of;  // read-only once the threads start
  for (const auto& map : maps) width_of[map->version()] = map->feature_dim();

  std::atomic<bool> done{false};
  std::atomic<int> writes{0};
  std::atomic<int> reads{0};
  std::thread writer([&] {
    std::mt19937 rng(61);
    // Only this thread changes `stored` until it is joined.
    while (!done.load() || writes.load() < 20) {
      std::vector<PatternId> live;
      live.reserve(stored.size());
      for (const auto& [id, values] : stored) live.push_back(id);
      std::uniform_int_distribution<size_t> pick(0, live.size() - 1);
      std::vector<PatternId> ids = {0, 0, 0, live[pick(rng)], live[pick(rng)]};
      if (ids[3] == ids[4]) ids.pop_back();
      const std::vector<float> values =
          GaussianPatterns(rng, static_cast<int>(ids.size()), kRaceDim);
      auto assigned = bank->Add(ids, values);
      EXPECT_THAT(assigned, IsOk());
      if (!assigned.ok()) break;
      for (size_t i = 0; i < assigned->size(); ++i) {
        stored[(*assigned)[i]].assign(
            values.begin() + static_cast<std::ptrdiff_t>(i * kRaceDim),
            values.begin() + static_cast<std::ptrdiff_t>((i + 1) * kRaceDim));
      }
      const std::vector<PatternId> doomed = {live[pick(rng)], live[pick(rng)],
                                             live[pick(rng)]};
      uint64_t expected = 0;
      for (const PatternId id : doomed) expected += stored.erase(id);
      EXPECT_THAT(bank->Remove(doomed), IsOkAndHolds(expected));
      writes.fetch_add(1);
    }
  });
  std::thread reader([&] {
    std::mt19937 rng(62);
    while (!done.load() || reads.load() < 20) {
      const std::vector<float> queries = GaussianPatterns(rng, 3, kRaceDim);
      RetrieveOptions options;
      options.max_iterations = 2;
      auto one = Retriever::Retrieve(
          *bank, absl::MakeConstSpan(queries).subspan(0, kRaceDim), options);
      EXPECT_THAT(one, IsOk());
      auto batch = Retriever::RetrieveBatch(*bank, queries, options);
      EXPECT_THAT(batch, IsOk());
      if (batch.ok()) {
        for (const RetrieveResult& result : *batch) {
          EXPECT_EQ(result.pattern.size(), size_t{kRaceDim});
        }
      }
      // Under one reader lock the map and the keys agree: never a mix.
      const int mismatched = bank->WithReader([](const BankView& view) {
        const FeatureMap& map = *view.feature_map;
        if (view.keys.rows() != static_cast<Index>(map.feature_dim()) ||
            view.keys.cols() != view.size()) {
          return -1;
        }
        MatrixXf fresh(map.feature_dim(), view.size());
        map.Apply(view.patterns, fresh);
        int bad = 0;
        for (Index c = 0; c < view.size(); ++c) {
          const float norm = fresh.col(c).norm();
          if (!((view.keys.col(c) - fresh.col(c)).norm() <=
                1e-5f * (1.0f + norm))) {
            ++bad;
          }
        }
        return bad;
      });
      EXPECT_EQ(mismatched, 0);
      const BankStats stats = bank->Stats();
      // Version and width come from one map (versions are unique here).
      EXPECT_EQ(stats.feature_dim, width_of.at(stats.feature_map_version));
      reads.fetch_add(1);
    }
  });
  std::thread refresher;
  if (update == SeparationUpdate::kDeferred) {
    refresher = std::thread([&] {
      while (!done.load()) bank->RefreshSeparation(32);
    });
  }
  for (const auto& map : maps) {
    // Yield at every poll so writes slip in between the phases.
    EXPECT_THAT(bank->SetFeatureMap(map,
                                    [] {
                                      std::this_thread::yield();
                                      return absl::OkStatus();
                                    }),
                IsOk());
    EXPECT_EQ(bank->feature_map(), map);
  }
  done.store(true);
  writer.join();
  reader.join();
  if (refresher.joinable()) refresher.join();

  EXPECT_EQ(bank->feature_map(), maps.back());
  ExpectKeysFollowTheMap(*bank);
  if (update == SeparationUpdate::kDeferred) RefreshAll(*bank);
  EXPECT_EQ(bank->Stats().separation_pending, 0u);
  ExpectSeparationMatchesBruteForce(*bank);
  ExpectStoredPatternsRetrieveThemselves(*bank, stored);
}

TEST(FeatureMapConcurrencyTest, PublicationsRaceWritersAndReaders) {
  RaceWritersPublicationsAndReaders(SeparationUpdate::kSynchronous);
}

TEST(FeatureMapConcurrencyTest, PublicationsRaceWritersReadersAndRefresher) {
  RaceWritersPublicationsAndReaders(SeparationUpdate::kDeferred);
}

// ---------------------------------------------------------------------------
// Error paths.

TEST(FeatureMapErrorTest, SetFeatureMapRejectsTheWrongInputDimension) {
  std::mt19937 rng(70);
  auto bank = NewBank(kDim);
  ASSERT_THAT(bank->Add(FreshIds(10), GaussianPatterns(rng, 10, kDim)), IsOk());
  EXPECT_THAT(
      bank->SetFeatureMap(RandomMap(rng, 5, kDim + 1, 1)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("input dimension 12"), HasSubstr("13"))));
  EXPECT_THAT(bank->SetFeatureMap(FeatureMap::Identity(kDim - 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(bank->SetFeatureMap(nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(bank->feature_map()->is_identity());
  ExpectKeysFollowTheMap(*bank);
}

TEST(FeatureMapErrorTest, KeyNormOverflowIsRefusedNamingThePattern) {
  // W = s·I: keys are s·x. Pattern 7 has norm ~1e3, the others ~2.
  for (const float scale : {1e17f, 1e36f}) {
    SCOPED_TRACE(scale);
    std::mt19937 rng(71);
    auto bank = NewBank(4, kDot);
    ASSERT_THAT(bank->Add(FreshIds(10), GaussianPatterns(rng, 10, 4)), IsOk());
    ASSERT_THAT(bank->Add({7}, {1e3f, 2.0f, -3.0f, 1.0f}), IsOk());
    const BankStats stats_before = bank->Stats();
    const std::vector<float> query = {0.5f, -1.0f, 0.25f, 2.0f};
    const RetrieveResult probe_before = Probe(*bank, query);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        auto map, FeatureMap::Create(VectorXf::Zero(4),
                                     scale * MatrixXf::Identity(4, 4), 1, {}));
    if (scale < 1e18f) {
      EXPECT_THAT(bank->SetFeatureMap(map),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           AllOf(HasSubstr("pattern id 7"),
                                 HasSubstr("feature map version 1"))));
    } else {
      // Keys overflow to Inf in float for every pattern: the first is named.
      EXPECT_THAT(bank->SetFeatureMap(map),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           HasSubstr("pattern id ")));
    }
    EXPECT_TRUE(bank->feature_map()->is_identity());
    ExpectSameStats(bank->Stats(), stats_before);
    ExpectSameResult(Probe(*bank, query), probe_before);
  }
}

TEST(FeatureMapErrorTest, AddRefusesAPatternWhoseKeyOverflows) {
  std::mt19937 rng(72);
  auto bank = NewBank(4, kDot);
  ASSERT_THAT(bank->Add(FreshIds(5), GaussianPatterns(rng, 5, 4)), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      auto map, FeatureMap::Create(VectorXf::Zero(4),
                                   1e17f * MatrixXf::Identity(4, 4), 1, {}));
  ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
  const BankStats stats_before = bank->Stats();
  EXPECT_THAT(
      bank->Add({0, 3}, {0.1f, 0.2f, 0.3f, 0.4f, 1e3f, 0, 0, 0}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("patterns[1]")));
  ExpectSameStats(bank->Stats(), stats_before);
  ExpectKeysFollowTheMap(*bank);
}

TEST(FeatureMapErrorTest, QueryWithAZeroFeatureVectorIsRefusedUnderCosine) {
  // Φ reads only the first two coordinates of x - c: a non-zero query that
  // agrees with c there has the zero feature vector.
  MatrixXf w = MatrixXf::Zero(2, 4);
  w(0, 0) = 1.0f;
  w(1, 1) = 1.0f;
  VectorXf c(4);
  c << 0.5f, -0.5f, 0.0f, 0.0f;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto map, FeatureMap::Create(c, w, 1, {}));
  const std::vector<float> patterns = {1, 0, 0, 0, 0, 1, 0, 0, -1, -1, 1, 1};
  const std::vector<float> blind = {0.5f, -0.5f, 3.0f, 4.0f};
  const std::vector<float> center = {0.5f, -0.5f, 0.0f, 0.0f};
  const std::vector<float> fine = {1.0f, 1.0f, 0.0f, 0.0f};
  for (const Similarity similarity : {kCosine, kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    auto bank = NewBank(4, similarity);
    ASSERT_THAT(bank->Add(FreshIds(3), patterns), IsOk());
    ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
    RetrieveOptions options;
    options.beta = 2.0f;
    options.max_iterations = 1;  // the query's own weights
    options.return_matches = 3;
    if (similarity == kCosine) {
      for (const auto& query : {blind, center}) {
        EXPECT_THAT(Retriever::Retrieve(*bank, query, options),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("feature vector")));
      }
      std::vector<float> batch = fine;
      batch.insert(batch.end(), blind.begin(), blind.end());
      EXPECT_THAT(Retriever::RetrieveBatch(*bank, batch, options),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           HasSubstr("queries[1]")));
      EXPECT_THAT(Retriever::Retrieve(*bank, fine, options), IsOk());
    } else {
      // Under dot a zero feature vector scores 0 everywhere: uniform weights.
      HOPFIELD_ASSERT_OK_AND_ASSIGN(const RetrieveResult result,
                                    Retriever::Retrieve(*bank, blind, options));
      for (const Match& match : result.matches) {
        EXPECT_NEAR(match.weight, 1.0 / 3.0, 1e-6);
        EXPECT_EQ(match.score, 0.0f);
      }
    }
  }
}

TEST(FeatureMapErrorTest, CancelledPublicationChangesNothing) {
  auto budget = MemoryBudget::Create(1 << 20, "test budget");
  std::mt19937 rng(73);
  auto bank = NewBank(kDim, kCosine, SeparationUpdate::kDeferred, budget);
  ASSERT_THAT(bank->Add(FreshIds(70), GaussianPatterns(rng, 70, kDim)), IsOk());
  RefreshAll(*bank);
  const std::vector<float> query = GaussianPatterns(rng, 1, kDim);
  // From the identity, then from a learned map.
  for (const bool learned : {false, true}) {
    SCOPED_TRACE(learned ? "from a learned map" : "from the identity");
    if (learned) {
      ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 6, kDim, 1)), IsOk());
      RefreshAll(*bank);
    }
    const std::shared_ptr<const FeatureMap> current = bank->feature_map();
    auto next = RandomMap(rng, 30, kDim, 2);
    int polls = 0;
    {
      // Count the polls on a twin bank, so this one stays untouched.
      auto twin = NewBank(kDim, kCosine, SeparationUpdate::kDeferred);
      ASSERT_THAT(twin->Add(FreshIds(70), GaussianPatterns(rng, 70, kDim)),
                  IsOk());
      ASSERT_THAT(twin->SetFeatureMap(next,
                                      [&polls] {
                                        ++polls;
                                        return absl::OkStatus();
                                      }),
                  IsOk());
    }
    ASSERT_GE(polls, 1);
    for (int at = 1; at <= polls; ++at) {
      for (const absl::StatusCode code :
           {absl::StatusCode::kCancelled,
            absl::StatusCode::kDeadlineExceeded}) {
        SCOPED_TRACE(::testing::Message() << "poll " << at << " returns "
                                          << absl::StatusCodeToString(code));
        const BankStats stats_before = bank->Stats();
        const RetrieveResult probe_before = Probe(*bank, query);
        const uint64_t used_before = budget->used();
        int poll = 0;
        EXPECT_THAT(bank->SetFeatureMap(
                        next,
                        [&] {
                          return ++poll == at ? absl::Status(code, "stop")
                                              : absl::OkStatus();
                        }),
                    StatusIs(code, HasSubstr("stop")));
        EXPECT_EQ(bank->feature_map(), current);
        ExpectSameStats(bank->Stats(), stats_before);
        ExpectSameResult(Probe(*bank, query), probe_before);
        EXPECT_EQ(budget->used(), used_before);
        EXPECT_EQ(budget->used(), bank->Stats().memory_bytes);
        ExpectKeysFollowTheMap(*bank);
      }
    }
  }
  // Cancelling the switch back to the identity keeps the learned map.
  const std::shared_ptr<const FeatureMap> learned = bank->feature_map();
  const uint64_t used_before = budget->used();
  EXPECT_THAT(bank->SetFeatureMap(FeatureMap::Identity(kDim),
                                  [] { return absl::CancelledError("stop"); }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(bank->feature_map(), learned);
  EXPECT_EQ(budget->used(), used_before);
  ExpectKeysFollowTheMap(*bank);
}

TEST(FeatureMapErrorTest, SwitchingBackToTheIdentityRestoresTheBank) {
  std::mt19937 rng(74);
  for (const Similarity similarity : {kCosine, kDot}) {
    SCOPED_TRACE(SimilarityName(similarity));
    auto bank = NewBank(kDim, similarity);
    ASSERT_THAT(bank->Add(FreshIds(50), GaussianPatterns(rng, 50, kDim)),
                IsOk());
    const std::shared_ptr<const FeatureMap> identity = bank->feature_map();
    EXPECT_TRUE(identity->is_identity());
    const BankStats stats_before = bank->Stats();
    EXPECT_EQ(stats_before.max_key_norm, stats_before.max_norm);
    const std::vector<float> query = GaussianPatterns(rng, 1, kDim);
    const RetrieveResult probe_before = Probe(*bank, query);

    ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 33, kDim, 1)), IsOk());
    EXPECT_GT(bank->Stats().memory_bytes,
              stats_before.memory_bytes + uint64_t{50} * 33 * sizeof(float));
    // The snapshot taken before does not change.
    EXPECT_TRUE(identity->is_identity());

    ASSERT_THAT(bank->SetFeatureMap(FeatureMap::Identity(kDim)), IsOk());
    const BankStats stats = bank->Stats();
    EXPECT_EQ(stats.feature_map_version, 0u);
    EXPECT_EQ(stats.feature_dim, kDim);
    EXPECT_EQ(stats.memory_bytes, stats_before.memory_bytes);  // keys freed
    EXPECT_EQ(stats.max_key_norm, stats.max_norm);
    EXPECT_EQ(stats.max_norm, stats_before.max_norm);
    ASSERT_TRUE(stats.min_separation.has_value());
    EXPECT_NEAR(*stats.min_separation, *stats_before.min_separation, 1e-6);
    ExpectKeysFollowTheMap(*bank);
    ExpectSeparationMatchesBruteForce(*bank);
    // Retrieval is again the identity's, bit for bit (automatic β within
    // float rounding of the recomputed Δ_min).
    const RetrieveResult probe = Probe(*bank, query);
    EXPECT_EQ(probe.nearest_id, probe_before.nearest_id);
    RetrieveOptions options;
    options.beta = 5.0f;
    options.return_matches = 50;
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const RetrieveResult fixed,
                                  Retriever::Retrieve(*bank, query, options));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto twin_bank,
                                  MemoryBank::Create("twin", bank->options()));
    std::vector<PatternId> ids = CopyBank(*bank).ids;
    std::vector<float> values;
    ASSERT_THAT(bank->GetMany(ids, &values), IsOk());
    ASSERT_THAT(twin_bank->Add(ids, values), IsOk());
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        const RetrieveResult twin,
        Retriever::Retrieve(*twin_bank, query, options));
    ExpectSameResult(fixed, twin);
  }
}

// ---------------------------------------------------------------------------
// Sample: the training copy.

TEST(FeatureMapBankTest, SampleCopiesPatternsWithTheirNearestPositions) {
  std::mt19937 rng(80);
  auto bank = NewBank(kDim, kCosine);
  ASSERT_THAT(bank->Add(FreshIds(50), GaussianPatterns(rng, 50, kDim)), IsOk());
  EXPECT_THAT(bank->Remove({3, 17}),
              IsOkAndHolds(2u));  // column order != id order
  ASSERT_THAT(bank->SetFeatureMap(RandomMap(rng, 10, kDim, 1)), IsOk());

  const MemoryBank::PatternSample all = bank->Sample(1000, 1);
  ASSERT_EQ(all.ids.size(), 48u);
  ASSERT_EQ(all.patterns.rows(), Index{kDim});
  ASSERT_EQ(all.patterns.cols(), 48);
  EXPECT_TRUE(std::is_sorted(all.ids.begin(), all.ids.end()));
  for (size_t i = 0; i < all.ids.size(); ++i) {
    const std::vector<float> want = StoredPattern(*bank, all.ids[i]);
    EXPECT_TRUE(SameBits(all.patterns.col(static_cast<Index>(i)).data(),
                         want.data(), kDim));
    // The nearest neighbour in feature space, by position in the sample.
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const MemoryBank::Neighbour neighbour,
                                  bank->PatternSeparation(all.ids[i]));
    const PatternId nearest = neighbour.nearest_id;
    ASSERT_GE(all.nearest[i], 0);
    EXPECT_EQ(all.ids[static_cast<size_t>(all.nearest[i])], nearest);
  }

  const MemoryBank::PatternSample some = bank->Sample(10, 7);
  ASSERT_EQ(some.ids.size(), 10u);
  EXPECT_TRUE(std::is_sorted(some.ids.begin(), some.ids.end()));
  EXPECT_EQ(std::adjacent_find(some.ids.begin(), some.ids.end()),
            some.ids.end());
  for (size_t i = 0; i < some.ids.size(); ++i) {
    const std::vector<float> want = StoredPattern(*bank, some.ids[i]);
    EXPECT_TRUE(SameBits(some.patterns.col(static_cast<Index>(i)).data(),
                         want.data(), kDim));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const MemoryBank::Neighbour neighbour,
                                  bank->PatternSeparation(some.ids[i]));
    const PatternId nearest = neighbour.nearest_id;
    const auto it = std::find(some.ids.begin(), some.ids.end(), nearest);
    if (it == some.ids.end()) {
      EXPECT_EQ(some.nearest[i], -1);
    } else {
      EXPECT_EQ(some.nearest[i], it - some.ids.begin());
    }
  }
  // Deterministic for a seed.
  EXPECT_EQ(bank->Sample(10, 7).ids, some.ids);
  EXPECT_EQ(bank->Sample(10, 7).patterns, some.patterns);
  EXPECT_NE(bank->Sample(10, 8).ids, some.ids);
  EXPECT_TRUE(bank->Sample(0, 7).ids.empty());
}

}  // namespace
}  // namespace hopfield
