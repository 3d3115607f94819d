#include "server/proto_conversion.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield::server {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProtoConversionTest, ZeroFieldsMeanDefaults) {
  v1::BankConfig config;
  config.set_dim(784);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(BankOptions options,
                                BankOptionsFromProto(config));
  const BankOptions defaults;
  EXPECT_EQ(options.dim, 784u);
  EXPECT_EQ(options.similarity, Similarity::kCosine);
  EXPECT_EQ(options.separation, Separation::kSoftmax);
  EXPECT_EQ(options.entmax_alpha, defaults.entmax_alpha);
  EXPECT_EQ(options.beta, 0.0f);
  EXPECT_EQ(options.max_iterations, defaults.max_iterations);
  EXPECT_EQ(options.tolerance, defaults.tolerance);
  EXPECT_EQ(options.top_k, defaults.top_k);
  EXPECT_EQ(options.search, SearchMode::kAuto);
  EXPECT_EQ(options.index_m, defaults.index_m);
  EXPECT_EQ(options.index_ef_construction, defaults.index_ef_construction);
  EXPECT_EQ(options.index_ef_search, defaults.index_ef_search);
}

TEST(ProtoConversionTest, ConfigRoundTrips) {
  v1::BankConfig config;
  config.set_dim(16);
  config.set_similarity(v1::SIMILARITY_DOT);
  config.set_separation(v1::SEPARATION_ENTMAX);
  config.set_entmax_alpha(1.25f);
  config.set_beta(12.5f);
  config.set_max_iterations(3);
  config.set_tolerance(1e-3f);
  config.set_search(v1::SEARCH_MODE_EXACT);
  config.set_top_k(8);
  config.set_feature_dim(16);
  config.set_index_m(8);
  config.set_index_ef_construction(50);
  config.set_index_ef_search(12);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(BankOptions options,
                                BankOptionsFromProto(config));
  v1::BankConfig back;
  BankOptionsToProto(options, &back);
  EXPECT_EQ(back.SerializeAsString(), config.SerializeAsString());
}

TEST(ProtoConversionTest, UnknownEnumsAreInvalidArguments) {
  v1::BankConfig config;
  config.set_dim(4);
  config.set_separation(static_cast<v1::Separation>(42));
  EXPECT_THAT(BankOptionsFromProto(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("config.separation"), HasSubstr("42"))));
  v1::RetrieveOptions options;
  options.set_search(static_cast<v1::SearchMode>(7));
  EXPECT_THAT(RetrieveOptionsFromProto(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("options.search")));
}

TEST(ProtoConversionTest, RetrieveOptionsUnspecifiedStayUnset) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      RetrieveOptions options, RetrieveOptionsFromProto(v1::RetrieveOptions()));
  EXPECT_FALSE(options.separation.has_value());
  EXPECT_FALSE(options.search.has_value());
  EXPECT_EQ(options.beta, 0.0f);
}

TEST(ProtoConversionTest, FlattenPatternsNamesTheBadPattern) {
  v1::StoreRequest request;
  v1::Pattern* first = request.add_patterns();
  first->set_id(5);
  first->add_values(1);
  first->add_values(2);
  v1::Pattern* second = request.add_patterns();
  second->add_values(3);
  std::vector<PatternId> ids;
  std::vector<float> values;
  EXPECT_THAT(FlattenPatterns(request.patterns(), 2, &ids, &values),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("patterns[1].values"),
                             HasSubstr("expected 2"), HasSubstr("got 1"))));
  second->add_values(4);
  EXPECT_THAT(FlattenPatterns(request.patterns(), 2, &ids, &values), IsOk());
  EXPECT_THAT(ids, ElementsAre(5, 0));
  EXPECT_THAT(values, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(FlattenPatterns({}, 2, &ids, &values),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(ProtoConversionTest, FlattenQueriesNamesTheBadQuery) {
  v1::RetrieveRequest request;
  request.add_queries()->add_values(1);
  std::vector<float> values;
  EXPECT_THAT(
      FlattenQueries(request.queries(), 3, &values),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("queries[0].values"), HasSubstr("expected 3"))));
  EXPECT_THAT(FlattenQueries({}, 3, &values),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

// Regression (fuzz/regressions/request_fuzzer/store-empty-pattern-reserves-
// dim): sizes are checked before anything is reserved. Reserving patterns x
// dim first let a request of empty patterns (2 bytes each on the wire) ask
// for 2 x 10^5 times its own size at dim 65536: a 64 MiB Store came to
// petabytes, and the bad_alloc in the handler ended the server.
TEST(ProtoConversionTest, FlattenReservesNothingForAMismatchedRequest) {
  v1::StoreRequest store;
  v1::RetrieveRequest retrieve;
  for (int i = 0; i < 1000; ++i) {
    store.add_patterns();
    retrieve.add_queries();
  }
  std::vector<PatternId> ids;
  std::vector<float> values;
  EXPECT_THAT(FlattenPatterns(store.patterns(), kMaxDim, &ids, &values),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("patterns[0].values")));
  EXPECT_EQ(ids.capacity(), 0u);
  EXPECT_EQ(values.capacity(), 0u);
  EXPECT_THAT(FlattenQueries(retrieve.queries(), kMaxDim, &values),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("queries[0].values")));
  EXPECT_EQ(values.capacity(), 0u);
  // 1000 x (2^32 - 1) floats could not even be allocated.
  const uint32_t huge_dim = std::numeric_limits<uint32_t>::max();
  EXPECT_THAT(FlattenPatterns(store.patterns(), huge_dim, &ids, &values),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(FlattenQueries(retrieve.queries(), huge_dim, &values),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ProtoConversionTest, RetrieveResultCarriesEveryField) {
  RetrieveResult result;
  result.pattern = {1, 2};
  result.nearest_id = 9;
  result.nearest_weight = 0.75f;
  result.matches = {Match{9, 0.75f, 0.9f}, Match{3, 0.25f, 0.5f}};
  result.iterations = 2;
  result.converged = true;
  result.energy = -1.5;
  result.energy_trace = {-1.0, -1.5};
  result.support_size = 2;
  result.metastable = true;
  result.null_mass = 0.125f;
  result.beta = 8.0f;
  result.exact = false;
  result.truncation_bound = 0.25f;
  result.approximate = true;
  result.fell_back = true;
  result.certified_by_separation = true;
  result.index_queries = 3;
  v1::Retrieval out;
  RetrieveResultToProto(result, &out);
  EXPECT_THAT(out.pattern(), ElementsAre(1, 2));
  EXPECT_EQ(out.nearest_id(), 9u);
  ASSERT_EQ(out.matches_size(), 2);
  EXPECT_EQ(out.matches(1).id(), 3u);
  EXPECT_EQ(out.matches(1).score(), 0.5f);
  EXPECT_TRUE(out.converged());
  EXPECT_THAT(out.energy_trace(), ElementsAre(-1.0, -1.5));
  EXPECT_TRUE(out.metastable());
  EXPECT_EQ(out.null_mass(), 0.125f);
  EXPECT_FALSE(out.exact());
  EXPECT_EQ(out.truncation_bound(), 0.25f);
  EXPECT_EQ(out.beta(), 8.0f);
  EXPECT_TRUE(out.approximate());
  EXPECT_TRUE(out.fell_back());
  EXPECT_TRUE(out.certified_by_separation());
  EXPECT_EQ(out.index_queries(), 3u);
}

}  // namespace
}  // namespace hopfield::server
