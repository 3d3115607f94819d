#include "core/bank_codec.h"

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;

BankOptions SomeOptions() {
  BankOptions options;
  options.dim = 784;
  options.similarity = Similarity::kDot;
  options.separation = Separation::kEntmax;
  options.entmax_alpha = 1.75f;
  options.beta = 12.5f;
  options.max_iterations = 7;
  options.tolerance = 1e-3f;
  options.search = SearchMode::kApproximate;
  options.top_k = 96;
  options.index_m = 24;
  options.index_ef_construction = 120;
  options.index_ef_search = 80;
  options.feature_dim = 128;
  return options;
}

TEST(BankCodecTest, OptionsRoundTripEveryField) {
  const BankOptions options = SomeOptions();
  HOPFIELD_ASSERT_OK_AND_ASSIGN(const BankOptions decoded,
                                DecodeBankOptions(EncodeBankOptions(options)));
  EXPECT_EQ(decoded.dim, options.dim);
  EXPECT_EQ(decoded.similarity, options.similarity);
  EXPECT_EQ(decoded.separation, options.separation);
  EXPECT_EQ(decoded.entmax_alpha, options.entmax_alpha);
  EXPECT_EQ(decoded.beta, options.beta);
  EXPECT_EQ(decoded.max_iterations, options.max_iterations);
  EXPECT_EQ(decoded.tolerance, options.tolerance);
  EXPECT_EQ(decoded.search, options.search);
  EXPECT_EQ(decoded.top_k, options.top_k);
  EXPECT_EQ(decoded.index_m, options.index_m);
  EXPECT_EQ(decoded.index_ef_construction, options.index_ef_construction);
  EXPECT_EQ(decoded.index_ef_search, options.index_ef_search);
  EXPECT_EQ(decoded.feature_dim, options.feature_dim);
}

TEST(BankCodecTest, DamagedBytesAreDataLossNamingTheRecord) {
  const std::string bytes = EncodeBankOptions(SomeOptions());
  EXPECT_THAT(DecodeBankOptions(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bank config")));
  EXPECT_THAT(DecodeBankOptions(bytes + "x"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("left over")));
  std::string unknown_format = bytes;
  unknown_format[0] = 9;
  EXPECT_THAT(DecodeBankOptions(unknown_format),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format 9")));
  // Well-formed bytes whose options fail validation (dim 0).
  std::string invalid = bytes;
  std::memset(&invalid[1], 0, 4);
  EXPECT_THAT(DecodeBankOptions(invalid),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("dim")));
  std::string bad_enum = bytes;
  bad_enum[5] = 7;  // similarity
  EXPECT_THAT(DecodeBankOptions(bad_enum),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("enum")));
}

TEST(BankCodecTest, FeatureMapRoundTripsBitForBit) {
  Eigen::VectorXf center = Eigen::VectorXf::Random(5);
  Eigen::MatrixXf weights = Eigen::MatrixXf::Random(3, 5);
  FeatureMapInfo info;
  info.mode = TrainMode::kUHopCompat;
  info.iterations = 300;
  info.learning_rate = 0.01f;
  info.temperature = 0.5f;
  info.batch_size = 64;
  info.seed = 42;
  info.training_patterns = 1000;
  info.loss = 0.125;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<const FeatureMap> map,
      FeatureMap::Create(center, weights, /*version=*/3, info));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::shared_ptr<const FeatureMap> decoded,
                                DecodeFeatureMap(EncodeFeatureMap(*map)));
  EXPECT_EQ(decoded->version(), 3u);
  EXPECT_EQ(decoded->input_dim(), 5u);
  EXPECT_EQ(decoded->feature_dim(), 3u);
  EXPECT_EQ(decoded->center(), center);
  EXPECT_EQ(decoded->weights(), weights);
  EXPECT_EQ(decoded->info().mode, info.mode);
  EXPECT_EQ(decoded->info().iterations, info.iterations);
  EXPECT_EQ(decoded->info().learning_rate, info.learning_rate);
  EXPECT_EQ(decoded->info().temperature, info.temperature);
  EXPECT_EQ(decoded->info().batch_size, info.batch_size);
  EXPECT_EQ(decoded->info().seed, info.seed);
  EXPECT_EQ(decoded->info().training_patterns, info.training_patterns);
  EXPECT_EQ(decoded->info().loss, info.loss);
  const std::string bytes = EncodeFeatureMap(*map);
  EXPECT_THAT(DecodeFeatureMap(bytes.substr(0, bytes.size() - 4)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("feature map")));
}

TEST(BankCodecTest, StateAndSnapshotRoundTrip) {
  const BankState state{1234, 56, 78};
  HOPFIELD_ASSERT_OK_AND_ASSIGN(const BankState decoded,
                                DecodeBankState(EncodeBankState(state)));
  EXPECT_EQ(decoded.next_id, 1234u);
  EXPECT_EQ(decoded.write_seq, 56u);
  EXPECT_EQ(decoded.columns, 78u);

  SeparationSnapshot snapshot;
  snapshot.write_seq = 9;
  snapshot.nearest_score = {0.5f, -1.0f, 0.25f};
  snapshot.nearest_id = {2, 3, 1};
  snapshot.pending = {0, 1, 2};
  const std::string bytes = EncodeSeparationSnapshot(snapshot);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(const SeparationSnapshot back,
                                DecodeSeparationSnapshot(bytes));
  EXPECT_EQ(back.write_seq, 9u);
  EXPECT_EQ(back.nearest_score, snapshot.nearest_score);
  EXPECT_EQ(back.nearest_id, snapshot.nearest_id);
  EXPECT_EQ(back.pending, snapshot.pending);
  // A count larger than the bytes can hold is refused before allocating.
  std::string huge = bytes;
  const uint64_t count = uint64_t{1} << 60;
  std::memcpy(&huge[9], &count, 8);
  EXPECT_THAT(DecodeSeparationSnapshot(huge),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("count")));
  EXPECT_THAT(DecodeSeparationSnapshot(bytes), IsOk());
  // An empty bank's snapshot and a map-less index meta (empty vectors,
  // whose data() may be null).
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      const SeparationSnapshot empty,
      DecodeSeparationSnapshot(EncodeSeparationSnapshot({})));
  EXPECT_TRUE(empty.nearest_score.empty());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(const IndexMeta meta,
                                DecodeIndexMeta(EncodeIndexMeta({})));
  EXPECT_TRUE(meta.projection.empty());
}

}  // namespace
}  // namespace hopfield
