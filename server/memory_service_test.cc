// Handler tests: the real Server, called through an in-process channel.
#include "server/memory_service.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

#include "core/testing/random_patterns.h"
#include "core/testing/status_matchers.h"
#include "hopfield/v1/memory_service.grpc.pb.h"
#include "server/server.h"
#include "server/status_conversion.h"

namespace hopfield::server {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class MemoryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(ServerConfig()); }

  void StartServer(ServerConfig config) {
    config.listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(config);
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = server_->InProcessChannel();
    stub_ = v1::MemoryService::NewStub(channel_);
  }

  absl::Status CreateBank(const std::string& name, uint32_t dim,
                          v1::Similarity similarity = v1::SIMILARITY_COSINE,
                          v1::Bank* bank = nullptr) {
    grpc::ClientContext context;
    v1::CreateBankRequest request;
    request.set_name(name);
    request.mutable_config()->set_dim(dim);
    request.mutable_config()->set_similarity(similarity);
    v1::Bank response;
    absl::Status status =
        FromGrpcStatus(stub_->CreateBank(&context, request, &response));
    if (bank != nullptr) *bank = response;
    return status;
  }

  absl::StatusOr<v1::StoreResponse> Store(
      const std::string& bank, const std::vector<std::vector<float>>& patterns,
      const std::vector<uint64_t>& ids = {}) {
    grpc::ClientContext context;
    v1::StoreRequest request;
    request.set_bank(bank);
    for (size_t i = 0; i < patterns.size(); ++i) {
      v1::Pattern* pattern = request.add_patterns();
      if (i < ids.size()) pattern->set_id(ids[i]);
      pattern->mutable_values()->Assign(patterns[i].begin(), patterns[i].end());
    }
    v1::StoreResponse response;
    absl::Status status =
        FromGrpcStatus(stub_->Store(&context, request, &response));
    if (!status.ok()) return status;
    return response;
  }

  absl::StatusOr<v1::RetrieveResponse> Retrieve(
      const std::string& bank, const std::vector<std::vector<float>>& queries,
      const v1::RetrieveOptions& options = {}) {
    grpc::ClientContext context;
    v1::RetrieveRequest request;
    request.set_bank(bank);
    for (const auto& query : queries) {
      request.add_queries()->mutable_values()->Assign(query.begin(),
                                                      query.end());
    }
    *request.mutable_options() = options;
    v1::RetrieveResponse response;
    absl::Status status =
        FromGrpcStatus(stub_->Retrieve(&context, request, &response));
    if (!status.ok()) return status;
    return response;
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MemoryService::Stub> stub_;
};

TEST_F(MemoryServiceTest, CreateBankReportsResolvedConfig) {
  v1::Bank bank;
  ASSERT_THAT(CreateBank("faces", 784, v1::SIMILARITY_UNSPECIFIED, &bank),
              IsOk());
  EXPECT_EQ(bank.name(), "faces");
  EXPECT_EQ(bank.config().dim(), 784u);
  EXPECT_EQ(bank.config().similarity(), v1::SIMILARITY_COSINE);
  EXPECT_EQ(bank.config().separation(), v1::SEPARATION_SOFTMAX);
  EXPECT_EQ(bank.config().max_iterations(), 10u);
  EXPECT_EQ(bank.config().entmax_alpha(), 1.5f);
  EXPECT_EQ(bank.config().top_k(), 64u);
  EXPECT_EQ(bank.config().feature_dim(), 256u);
  EXPECT_EQ(bank.pattern_count(), 0u);
  EXPECT_EQ(bank.feature_map_version(), 0u);
}

TEST_F(MemoryServiceTest, BankManagementCodes) {
  ASSERT_THAT(CreateBank("b", 2), IsOk());
  ASSERT_THAT(CreateBank("a", 2), IsOk());
  EXPECT_THAT(CreateBank("a", 2), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(
      CreateBank("Bad Name", 2),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[a-z0-9_-]")));
  EXPECT_THAT(CreateBank("c", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dim")));
  {
    grpc::ClientContext context;
    v1::CreateBankRequest request;
    request.set_name("d");
    request.mutable_config()->set_dim(2);
    request.mutable_config()->set_separation(static_cast<v1::Separation>(9));
    v1::Bank response;
    EXPECT_THAT(FromGrpcStatus(stub_->CreateBank(&context, request, &response)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("config.separation")));
  }
  {
    grpc::ClientContext context;
    v1::ListBanksResponse response;
    ASSERT_TRUE(stub_->ListBanks(&context, {}, &response).ok());
    ASSERT_EQ(response.banks_size(), 2);
    EXPECT_EQ(response.banks(0).name(), "a");
    EXPECT_EQ(response.banks(1).name(), "b");
  }
  {
    grpc::ClientContext context;
    v1::DeleteBankRequest request;
    request.set_name("a");
    v1::DeleteBankResponse response;
    EXPECT_TRUE(stub_->DeleteBank(&context, request, &response).ok());
  }
  for (const char* name : {"a", "zzz"}) {
    grpc::ClientContext context;
    v1::GetBankRequest request;
    request.set_name(name);
    v1::Bank response;
    EXPECT_THAT(FromGrpcStatus(stub_->GetBank(&context, request, &response)),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr(name)));
  }
  {
    grpc::ClientContext context;
    v1::DeleteBankRequest request;
    request.set_name("a");
    v1::DeleteBankResponse response;
    EXPECT_THAT(FromGrpcStatus(stub_->DeleteBank(&context, request, &response)),
                StatusIs(absl::StatusCode::kNotFound));
  }
}

TEST_F(MemoryServiceTest, StoreGetForgetRoundTrip) {
  ASSERT_THAT(CreateBank("m", 3), IsOk());
  const float tiny = std::numeric_limits<float>::denorm_min();
  absl::StatusOr<v1::StoreResponse> stored =
      Store("m", {{1, 2, 3}, {tiny, -0.0f, 7}}, {0, 42});
  ASSERT_THAT(stored, IsOk());
  EXPECT_THAT(stored->ids(), ElementsAre(43, 42));  // fresh id above 42
  EXPECT_EQ(stored->pattern_count(), 2u);
  {
    grpc::ClientContext context;
    v1::GetPatternsRequest request;
    request.set_bank("m");
    request.add_ids(42);
    request.add_ids(43);
    v1::GetPatternsResponse response;
    ASSERT_TRUE(stub_->GetPatterns(&context, request, &response).ok());
    ASSERT_EQ(response.patterns_size(), 2);
    EXPECT_EQ(response.patterns(0).id(), 42u);
    EXPECT_EQ(response.patterns(0).values(0), tiny);  // the same bits
    EXPECT_TRUE(std::signbit(response.patterns(0).values(1)));
    EXPECT_THAT(response.patterns(1).values(), ElementsAre(1, 2, 3));
  }
  {
    grpc::ClientContext context;
    v1::GetPatternsRequest request;
    request.set_bank("m");
    request.add_ids(42);
    request.add_ids(77);
    v1::GetPatternsResponse response;
    EXPECT_THAT(
        FromGrpcStatus(stub_->GetPatterns(&context, request, &response)),
        StatusIs(absl::StatusCode::kNotFound, HasSubstr("77")));
  }
  {
    grpc::ClientContext context;
    v1::ForgetRequest request;
    request.set_bank("m");
    request.add_ids(42);
    request.add_ids(1000);
    v1::ForgetResponse response;
    ASSERT_TRUE(stub_->Forget(&context, request, &response).ok());
    EXPECT_EQ(response.forgotten(), 1u);
  }
  {
    grpc::ClientContext context;
    v1::ForgetRequest request;
    request.set_bank("m");
    v1::ForgetResponse response;
    EXPECT_THAT(FromGrpcStatus(stub_->Forget(&context, request, &response)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ids")));
  }
}

TEST_F(MemoryServiceTest, RejectedStoreStoresNothing) {
  ASSERT_THAT(CreateBank("m", 2), IsOk());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(Store("m", {{1, 0}, {1}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("patterns[1].values"),
                             HasSubstr("expected 2"), HasSubstr("got 1"))));
  EXPECT_THAT(Store("m", {{1, 0}, {nan, 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nan")));
  EXPECT_THAT(Store("m", {{0, 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zero")));
  EXPECT_THAT(Store("m", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(Store("nope", {{1, 0}}), StatusIs(absl::StatusCode::kNotFound));
  grpc::ClientContext context;
  v1::GetBankRequest request;
  request.set_name("m");
  v1::Bank bank;
  ASSERT_TRUE(stub_->GetBank(&context, request, &bank).ok());
  EXPECT_EQ(bank.pattern_count(), 0u);
}

TEST_F(MemoryServiceTest, StoreStreamAppliesEveryMessage) {
  ASSERT_THAT(CreateBank("s", 2), IsOk());
  grpc::ClientContext context;
  v1::StoreResponse response;
  auto writer = stub_->StoreStream(&context, &response);
  for (int m = 0; m < 5; ++m) {
    v1::StoreRequest request;
    if (m == 0) request.set_bank("s");  // later messages may omit it
    for (int i = 0; i < 10; ++i) {
      v1::Pattern* pattern = request.add_patterns();
      pattern->add_values(static_cast<float>(m * 10 + i + 1));
      pattern->add_values(1.0f);
    }
    ASSERT_TRUE(writer->Write(request));
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(response.ids_size(), 50);
  EXPECT_EQ(response.pattern_count(), 50u);
  EXPECT_EQ(response.ids(49), 50u);
}

TEST_F(MemoryServiceTest, StoreStreamStopsAtTheFirstBadMessage) {
  ASSERT_THAT(CreateBank("s", 2), IsOk());
  ASSERT_THAT(CreateBank("t", 2), IsOk());
  grpc::ClientContext context;
  v1::StoreResponse response;
  auto writer = stub_->StoreStream(&context, &response);
  v1::StoreRequest good;
  good.set_bank("s");
  v1::Pattern* pattern = good.add_patterns();
  pattern->add_values(1.0f);
  pattern->add_values(2.0f);
  writer->Write(good);
  v1::StoreRequest other = good;
  other.set_bank("t");
  writer->Write(other);
  writer->WritesDone();
  EXPECT_THAT(FromGrpcStatus(writer->Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("message 1"), HasSubstr("\"s\""))));
  grpc::ClientContext empty_context;
  auto empty = stub_->StoreStream(&empty_context, &response);
  empty->WritesDone();
  EXPECT_THAT(
      FromGrpcStatus(empty->Finish()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no messages")));
}

TEST_F(MemoryServiceTest, RetrieveSingleAndBatch) {
  ASSERT_THAT(CreateBank("r", 3), IsOk());
  ASSERT_THAT(Store("r", {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}), IsOk());
  v1::RetrieveOptions options;
  options.set_return_matches(2);
  options.set_return_energy_trace(true);
  absl::StatusOr<v1::RetrieveResponse> one =
      Retrieve("r", {{0.9f, 0.1f, 0.0f}}, options);
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ(one->results_size(), 1);
  const v1::Retrieval& result = one->results(0);
  EXPECT_EQ(result.nearest_id(), 1u);
  EXPECT_EQ(result.matches_size(), 2);
  EXPECT_EQ(result.pattern_size(), 3);
  EXPECT_NEAR(result.pattern(0), 1.0f, 1e-3);
  EXPECT_TRUE(result.converged());
  EXPECT_TRUE(result.exact());
  EXPECT_EQ(result.energy_trace_size(), static_cast<int>(result.iterations()));
  EXPECT_GT(result.beta(), 0.0f);
  options.set_omit_pattern(true);
  absl::StatusOr<v1::RetrieveResponse> many = Retrieve(
      "r", {{0.1f, 0.9f, 0.0f}, {0.0f, 0.2f, 0.9f}, {1, 0, 0}}, options);
  ASSERT_THAT(many, IsOk());
  ASSERT_EQ(many->results_size(), 3);
  EXPECT_EQ(many->results(0).nearest_id(), 2u);
  EXPECT_EQ(many->results(1).nearest_id(), 3u);
  EXPECT_EQ(many->results(2).nearest_id(), 1u);
  EXPECT_EQ(many->results(0).pattern_size(), 0);
}

// Each search mode over gRPC: APPROXIMATE answers from the index (certified
// or fallen back, exact either way), EXACT and AUTO below its threshold
// scan densely, and all three agree; the index settings round-trip and the
// bank reports its index.
TEST_F(MemoryServiceTest, SearchModesAgreeAndReportTheIndex) {
  server_.reset();
  ServerConfig config;
  config.index_min_patterns = 256;
  StartServer(config);
  constexpr int kDim = 16;
  constexpr int kCount = 600;
  {
    grpc::ClientContext context;
    v1::CreateBankRequest request;
    request.set_name("modes");
    request.mutable_config()->set_dim(kDim);
    request.mutable_config()->set_index_m(8);
    request.mutable_config()->set_index_ef_search(32);
    v1::Bank bank;
    ASSERT_TRUE(stub_->CreateBank(&context, request, &bank).ok());
    EXPECT_EQ(bank.config().index_m(), 8u);
    EXPECT_EQ(bank.config().index_ef_construction(), 200u);
    EXPECT_EQ(bank.config().index_ef_search(), 32u);
    EXPECT_EQ(bank.index_size(), 0u);
  }
  {
    grpc::ClientContext context;
    v1::CreateBankRequest request;
    request.set_name("bad-index");
    request.mutable_config()->set_dim(kDim);
    request.mutable_config()->set_index_m(1);
    v1::Bank bank;
    const grpc::Status status = stub_->CreateBank(&context, request, &bank);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr("index_m"));
  }
  std::mt19937 rng(15);
  const std::vector<float> flat = testing::UnitPatterns(rng, kCount, kDim);
  std::vector<std::vector<float>> patterns;
  patterns.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    const auto first = static_cast<std::ptrdiff_t>(i) * kDim;
    patterns.emplace_back(flat.begin() + first, flat.begin() + first + kDim);
  }
  ASSERT_THAT(Store("modes", patterns), IsOk());
  // The index is built in the background.
  v1::Bank bank;
  for (int i = 0; i < 1000; ++i) {
    grpc::ClientContext context;
    v1::GetBankRequest request;
    request.set_name("modes");
    ASSERT_TRUE(stub_->GetBank(&context, request, &bank).ok());
    if (bank.index_size() == kCount && bank.index_pending() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(bank.index_size(), static_cast<uint64_t>(kCount));
  EXPECT_EQ(bank.index_pending(), 0u);
  EXPECT_TRUE(bank.index_current());
  // Estimates are a subset of what awaits the exact refresh.
  EXPECT_LE(bank.separation_estimated(), bank.separation_pending());

  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<std::vector<float>> queries;
  for (int q = 0; q < 50; ++q) {
    std::vector<float> query = patterns[static_cast<size_t>(q) * 7];
    for (float& v : query) v += noise(rng);
    queries.push_back(query);
  }
  auto run = [&](v1::SearchMode mode) {
    v1::RetrieveOptions options;
    options.set_search(mode);
    options.set_top_k(16);
    options.set_omit_pattern(true);
    options.set_beta(40.0f);
    return Retrieve("modes", queries, options);
  };
  absl::StatusOr<v1::RetrieveResponse> exact = run(v1::SEARCH_MODE_EXACT);
  absl::StatusOr<v1::RetrieveResponse> approximate =
      run(v1::SEARCH_MODE_APPROXIMATE);
  absl::StatusOr<v1::RetrieveResponse> automatic =
      run(v1::SEARCH_MODE_UNSPECIFIED);
  ASSERT_THAT(exact, IsOk());
  ASSERT_THAT(approximate, IsOk());
  ASSERT_THAT(automatic, IsOk());
  ASSERT_EQ(approximate->results_size(), 50);
  for (int q = 0; q < 50; ++q) {
    SCOPED_TRACE(q);
    const v1::Retrieval& dense = exact->results(q);
    const v1::Retrieval& indexed = approximate->results(q);
    EXPECT_FALSE(dense.approximate());
    EXPECT_EQ(dense.index_queries(), 0u);
    EXPECT_TRUE(indexed.approximate());
    EXPECT_GE(indexed.index_queries(), 1u);
    // Certified or fell back: the answer is exact either way.
    EXPECT_TRUE(indexed.exact());
    EXPECT_LE(indexed.truncation_bound(), 1e-3f);
    EXPECT_EQ(indexed.nearest_id(), dense.nearest_id());
    EXPECT_NEAR(indexed.nearest_weight(), dense.nearest_weight(), 1e-3f);
    // 600 patterns is below AUTO's threshold: the dense path.
    EXPECT_FALSE(automatic->results(q).approximate());
    EXPECT_EQ(automatic->results(q).nearest_id(), dense.nearest_id());
  }
}

TEST_F(MemoryServiceTest, RetrieveCodes) {
  ASSERT_THAT(CreateBank("r", 3), IsOk());
  EXPECT_THAT(
      Retrieve("r", {{1, 0, 0}}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty")));
  ASSERT_THAT(Store("r", {{1, 0, 0}}), IsOk());
  EXPECT_THAT(Retrieve("r", {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("queries")));
  EXPECT_THAT(
      Retrieve("r", {{1, 0}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("queries[0].values"), HasSubstr("expected 3"))));
  EXPECT_THAT(Retrieve("r", {{0, 0, 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zero")));
  EXPECT_THAT(
      Retrieve("r", {{1, 0, 0}, {1, std::nanf(""), 0}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queries[1]")));
  v1::RetrieveOptions options;
  options.set_beta(-2.0f);
  EXPECT_THAT(Retrieve("r", {{1, 0, 0}}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beta")));
  EXPECT_THAT(Retrieve("missing", {{1, 0, 0}}),
              StatusIs(absl::StatusCode::kNotFound));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() -
                       std::chrono::seconds(1));
  v1::RetrieveRequest request;
  request.set_bank("r");
  v1::Query* query = request.add_queries();
  query->add_values(1.0f);
  query->add_values(0.0f);
  query->add_values(0.0f);
  v1::RetrieveResponse response;
  EXPECT_EQ(stub_->Retrieve(&context, request, &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

// Unit patterns of dim 16, crowded along the leading axes (separation
// training spreads them).
std::vector<std::vector<float>> CrowdedPatterns(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<float> values =
      hopfield::testing::AnisotropicUnitPatterns(rng, count, 16);
  std::vector<std::vector<float>> patterns;
  for (size_t i = 0; i < values.size(); i += 16) {
    patterns.emplace_back(values.begin() + static_cast<std::ptrdiff_t>(i),
                          values.begin() + static_cast<std::ptrdiff_t>(i + 16));
  }
  return patterns;
}

struct TrainOutcome {
  grpc::Status status;
  std::vector<v1::TrainProgress> messages;
};

TrainOutcome RunTrain(v1::MemoryService::Stub* stub, const std::string& bank,
                      const v1::TrainOptions& options,
                      const std::function<void(int)>& after_message = {}) {
  grpc::ClientContext context;
  v1::TrainRequest request;
  request.set_bank(bank);
  *request.mutable_options() = options;
  auto reader = stub->Train(&context, request);
  TrainOutcome outcome;
  v1::TrainProgress progress;
  while (reader->Read(&progress)) {
    outcome.messages.push_back(progress);
    if (after_message) after_message(static_cast<int>(outcome.messages.size()));
  }
  outcome.status = reader->Finish();
  return outcome;
}

TEST_F(MemoryServiceTest, TrainStreamsProgressThenTheResultAndPublishes) {
  ASSERT_THAT(CreateBank("t", 16), IsOk());
  ASSERT_THAT(Store("t", CrowdedPatterns(64, 1)), IsOk());
  v1::TrainOptions options;
  options.set_iterations(50);
  options.set_validation_noise(0.01f);
  const TrainOutcome outcome = RunTrain(stub_.get(), "t", options);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_GE(outcome.messages.size(), 2u);
  for (size_t i = 0; i + 1 < outcome.messages.size(); ++i) {
    EXPECT_FALSE(outcome.messages[i].done());
    EXPECT_EQ(outcome.messages[i].total_iterations(), 50u);
    EXPECT_GE(outcome.messages[i].iteration(), 1u);
  }
  const v1::TrainProgress& last = outcome.messages.back();
  ASSERT_TRUE(last.done());
  EXPECT_TRUE(last.result().accepted());
  EXPECT_EQ(last.result().feature_map_version(), 1u);
  EXPECT_GT(last.result().min_separation_after(),
            last.result().min_separation_before());
  EXPECT_LE(last.result().validation_error_after(),
            last.result().validation_error_before());
  EXPECT_EQ(last.result().training_patterns(), 64u);
  EXPECT_EQ(last.result().iterations(), 50u);
  EXPECT_GT(last.result().seconds(), 0.0);
  // GetBank shows the new map.
  grpc::ClientContext context;
  v1::GetBankRequest request;
  request.set_name("t");
  v1::Bank bank;
  ASSERT_TRUE(stub_->GetBank(&context, request, &bank).ok());
  EXPECT_EQ(bank.feature_map_version(), 1u);
  EXPECT_EQ(bank.feature_dim(), 16u);
  EXPECT_EQ(bank.feature_map().mode(), v1::TRAIN_MODE_SEPARATION);
  EXPECT_EQ(bank.feature_map().iterations(), 50u);
  // Retrieval through the map: each stored pattern finds itself.
  const auto patterns = CrowdedPatterns(64, 1);
  absl::StatusOr<v1::RetrieveResponse> retrieved =
      Retrieve("t", {patterns[0], patterns[1]});
  ASSERT_THAT(retrieved, IsOk());
  EXPECT_EQ(retrieved->results(0).nearest_id(), 1u);
  EXPECT_EQ(retrieved->results(1).nearest_id(), 2u);
}

TEST_F(MemoryServiceTest, TrainErrorsHaveTheirCodes) {
  ASSERT_THAT(CreateBank("empty", 16), IsOk());
  ASSERT_THAT(CreateBank("full", 16), IsOk());
  ASSERT_THAT(Store("full", CrowdedPatterns(8, 2)), IsOk());
  v1::TrainOptions options;
  EXPECT_EQ(RunTrain(stub_.get(), "nope", options).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(RunTrain(stub_.get(), "empty", options).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  options.set_temperature(-1.0f);
  const TrainOutcome bad = RunTrain(stub_.get(), "full", options);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.status.error_message(),
              HasSubstr("TrainOptions.temperature"));
  options.set_temperature(0.0f);
  options.set_mode(static_cast<v1::TrainMode>(42));
  EXPECT_EQ(RunTrain(stub_.get(), "full", options).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(MemoryServiceTest, SecondTrainOfABankIsRefusedAndDeleteCancels) {
  ASSERT_THAT(CreateBank("long", 16), IsOk());
  ASSERT_THAT(Store("long", CrowdedPatterns(64, 3)), IsOk());
  v1::TrainOptions options;
  options.set_iterations(100000);  // far longer than the test
  TrainOutcome second;
  grpc::Status deleted;
  const TrainOutcome first =
      RunTrain(stub_.get(), "long", options, [&](int message) {
        if (message != 1) return;
        // Running now: another Train of the bank is refused...
        second = RunTrain(stub_.get(), "long", options);
        // ...Store and Retrieve keep working...
        EXPECT_THAT(Store("long", CrowdedPatterns(2, 4)), IsOk());
        EXPECT_THAT(Retrieve("long", {CrowdedPatterns(1, 3)[0]}), IsOk());
        // ...and DeleteBank cancels the run.
        grpc::ClientContext context;
        v1::DeleteBankRequest request;
        request.set_name("long");
        v1::DeleteBankResponse response;
        deleted = stub_->DeleteBank(&context, request, &response);
      });
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(second.status.error_message(), HasSubstr("already training"));
  EXPECT_TRUE(deleted.ok());
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(first.status.error_message(), HasSubstr("deleted"));
}

TEST_F(MemoryServiceTest, WritesDuringATrainLandAndAreMappedOnPublish) {
  ASSERT_THAT(CreateBank("w", 16), IsOk());
  absl::StatusOr<v1::StoreResponse> first = Store("w", CrowdedPatterns(64, 6));
  ASSERT_THAT(first, IsOk());
  const uint64_t forgotten = first->ids(0);
  const std::vector<std::vector<float>> late = CrowdedPatterns(3, 7);
  v1::TrainOptions options;
  options.set_iterations(1000);
  options.set_skip_validation(true);
  std::vector<uint64_t> late_ids;
  bool wrote = false;
  const TrainOutcome outcome =
      RunTrain(stub_.get(), "w", options, [&](int message) {
        if (message != 1) return;
        // The run is under way: a Store, a Forget and a Retrieve go through.
        absl::StatusOr<v1::StoreResponse> stored = Store("w", late);
        ASSERT_THAT(stored, IsOk());
        late_ids.assign(stored->ids().begin(), stored->ids().end());
        grpc::ClientContext context;
        v1::ForgetRequest request;
        request.set_bank("w");
        request.add_ids(forgotten);
        v1::ForgetResponse response;
        ASSERT_TRUE(stub_->Forget(&context, request, &response).ok());
        EXPECT_EQ(response.forgotten(), 1u);
        EXPECT_THAT(Retrieve("w", {late[0]}), IsOk());
        wrote = true;
      });
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_TRUE(wrote);
  ASSERT_FALSE(outcome.messages.front().done());
  ASSERT_TRUE(outcome.messages.back().done());
  EXPECT_EQ(outcome.messages.back().result().feature_map_version(), 1u);

  grpc::ClientContext context;
  v1::GetBankRequest request;
  request.set_name("w");
  v1::Bank bank;
  ASSERT_TRUE(stub_->GetBank(&context, request, &bank).ok());
  EXPECT_EQ(bank.pattern_count(), 64u + 3u - 1u);
  EXPECT_EQ(bank.feature_map_version(), 1u);
  EXPECT_EQ(bank.feature_map().iterations(), 1000u);
  // The patterns stored during the run have keys under the published map:
  // each one retrieves itself.
  absl::StatusOr<v1::RetrieveResponse> found = Retrieve("w", late);
  ASSERT_THAT(found, IsOk());
  ASSERT_EQ(found->results_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(found->results(i).nearest_id(), late_ids[static_cast<size_t>(i)]);
  }
  // The forgotten one is gone for good.
  grpc::ClientContext get_context;
  v1::GetPatternsRequest get;
  get.set_bank("w");
  get.add_ids(forgotten);
  v1::GetPatternsResponse patterns;
  EXPECT_THAT(FromGrpcStatus(stub_->GetPatterns(&get_context, get, &patterns)),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MemoryServiceTest, TrainStopsAtTheDeadline) {
  ASSERT_THAT(CreateBank("slow", 16), IsOk());
  ASSERT_THAT(Store("slow", CrowdedPatterns(64, 5)), IsOk());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(300));
  v1::TrainRequest request;
  request.set_bank("slow");
  request.mutable_options()->set_iterations(100000);
  auto reader = stub_->Train(&context, request);
  v1::TrainProgress progress;
  while (reader->Read(&progress)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The bank is free again once the server's run notices (the client gave
  // up at its deadline; the run stops at its next step).
  v1::TrainOptions options;
  options.set_iterations(5);
  options.set_skip_validation(true);
  TrainOutcome again = RunTrain(stub_.get(), "slow", options);
  for (int i = 0; i < 100 && again.status.error_code() ==
                                 grpc::StatusCode::FAILED_PRECONDITION;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    again = RunTrain(stub_.get(), "slow", options);
  }
  EXPECT_TRUE(again.status.ok())
      << again.status.error_code() << " " << again.status.error_message();
}

TEST_F(MemoryServiceTest, PingEchoesItsPayload) {
  grpc::ClientContext context;
  v1::PingRequest request;
  request.set_payload(std::string("\0hop\xff", 5));
  v1::PingResponse response;
  ASSERT_TRUE(stub_->Ping(&context, request, &response).ok());
  EXPECT_EQ(response.payload(), request.payload());
}

TEST_F(MemoryServiceTest, HealthReportsServing) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string& service :
       {std::string(), std::string(kServiceName)}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(MemoryServiceTest, OversizedMessagesAreResourceExhausted) {
  server_.reset();
  ServerConfig config;
  config.max_message_bytes = 64 * 1024;
  StartServer(config);
  ASSERT_THAT(CreateBank("big", 4), IsOk());
  std::vector<std::vector<float>> patterns(8192,
                                           std::vector<float>{1, 2, 3, 4});
  EXPECT_THAT(Store("big", patterns),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace hopfield::server

namespace hopfield::server {
namespace {

// Issue 13: a malformed bank name was NOT_FOUND on every RPC but
// CreateBank, and the error echoed it raw (an 8 KB name overflowed the
// client's metadata limit).
TEST_F(MemoryServiceTest, Issue13MalformedBankNamesAreInvalidArgument) {
  const std::string long_name(8192, 'x');
  for (const std::string& name :
       {std::string("Bad Name"), std::string("a\nforged log line"),
        long_name}) {
    SCOPED_TRACE(name.substr(0, 16));
    grpc::ClientContext c1;
    v1::GetBankRequest get;
    get.set_name(name);
    v1::Bank bank;
    const grpc::Status status = stub_->GetBank(&c1, get, &bank);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_LT(status.error_message().size(), 400u);
    EXPECT_EQ(status.error_message().find('\n'), std::string::npos);
    EXPECT_THAT(Store(name, {{1, 0}}),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(Retrieve(name, {{1, 0}}),
                StatusIs(absl::StatusCode::kInvalidArgument));
    grpc::ClientContext c2;
    v1::DeleteBankRequest drop;
    drop.set_name(name);
    v1::DeleteBankResponse dropped;
    EXPECT_EQ(stub_->DeleteBank(&c2, drop, &dropped).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext c3;
    v1::GetPatternsRequest patterns;
    patterns.set_bank(name);
    patterns.add_ids(1);
    v1::GetPatternsResponse got;
    EXPECT_EQ(stub_->GetPatterns(&c3, patterns, &got).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

// Issue 13: replies were built before their size was checked (a 5 KB
// GetPatterns on a 65,536-d bank built 1.3 GB).
TEST_F(MemoryServiceTest, Issue13OversizedRepliesAreRefusedBeforeWork) {
  server_.reset();
  ServerConfig config;
  config.max_message_bytes = 256 * 1024;
  StartServer(config);
  ASSERT_THAT(CreateBank("wide", 4096), IsOk());
  ASSERT_THAT(Store("wide", {std::vector<float>(4096, 1.0f)}), IsOk());
  const uint64_t peak = server_->budget().peak();
  grpc::ClientContext context;
  v1::GetPatternsRequest request;
  request.set_bank("wide");
  for (int i = 0; i < 100; ++i) request.add_ids(1);  // 100 x 16 KiB
  v1::GetPatternsResponse response;
  const grpc::Status status = stub_->GetPatterns(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_message_bytes"));
  // Only the parsed request (100 ids) was reserved, not the 3 MB reply.
  EXPECT_LT(server_->budget().peak(), peak + 4096);
  // 12 queries of 16 KiB fit in a request; their replies with 1,000-entry
  // energy traces do not.
  v1::RetrieveOptions traced;
  traced.set_return_energy_trace(true);
  traced.set_max_iterations(1000);
  const std::vector<std::vector<float>> queries(12,
                                                std::vector<float>(4096, 1.0f));
  EXPECT_THAT(Retrieve("wide", queries, traced),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("omit_pattern")));
  // The parsed queries were reserved (192 KiB), not the ~600 KiB reply.
  EXPECT_LT(server_->budget().peak(), peak + size_t{12} * 4096 * 4 + 4096);
  traced.set_omit_pattern(true);
  EXPECT_THAT(Retrieve("wide", queries, traced), IsOk());
}

// Issue 13: no memory limit at all. Stores are refused once the bank's
// growth would cross the budget, naming it, and store nothing.
TEST_F(MemoryServiceTest, Issue13StoresStopAtTheMemoryBudget) {
  server_.reset();
  ServerConfig config;
  config.memory_budget_bytes = 4 << 20;
  StartServer(config);
  ASSERT_THAT(CreateBank("full", 256), IsOk());
  const std::vector<std::vector<float>> batch(500,
                                              std::vector<float>(256, 0.5f));
  uint64_t acknowledged = 0;
  absl::Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    absl::StatusOr<v1::StoreResponse> stored = Store("full", batch);
    if (stored.ok()) {
      acknowledged += 500;
    } else {
      refused = stored.status();
    }
  }
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("memory budget (--memory_budget_bytes)"),
                             HasSubstr("4194304"))));
  grpc::ClientContext context;
  v1::GetBankRequest get;
  get.set_name("full");
  v1::Bank bank;
  ASSERT_TRUE(stub_->GetBank(&context, get, &bank).ok());
  EXPECT_EQ(bank.pattern_count(), acknowledged);
  EXPECT_GE(bank.memory_bytes(), acknowledged * 256 * 4);
  EXPECT_LE(server_->budget().peak(), config.memory_budget_bytes);
}

// Issue 13: heavy calls ran inline on gRPC's few callback threads. Now they
// queue on the worker pool; a full queue answers at once, and cheap calls
// never wait behind heavy ones.
TEST_F(MemoryServiceTest,
       Issue13FullQueueIsResourceExhaustedAndPingStillWorks) {
  server_.reset();
  ServerConfig config;
  config.worker_threads = 1;
  config.max_queued_calls = 0;
  StartServer(config);
  ASSERT_THAT(CreateBank("slow", 64), IsOk());
  std::vector<std::vector<float>> patterns;
  for (int i = 0; i < 4000; ++i) {
    std::vector<float> p(64, 0.0f);
    p[static_cast<size_t>(i % 64)] = 1.0f;
    p[static_cast<size_t>((i * 7) % 64)] +=
        0.5f + 0.001f * static_cast<float>(i);
    patterns.push_back(p);
  }
  ASSERT_THAT(Store("slow", patterns), IsOk());
  // A Train long enough to keep the only worker busy until cancelled (a
  // heavy batch Retrieve may converge, and end, before the next call). The
  // Store's task may still be finishing on the worker: wait for it first.
  for (int i = 0; i < 5000 && server_->pool().Stats().running != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  grpc::ClientContext heavy_context;
  std::atomic<bool> started{false};
  std::thread heavy([&] {
    v1::TrainRequest request;
    request.set_bank("slow");
    request.mutable_options()->set_iterations(100000);
    request.mutable_options()->set_batch_size(64);
    auto reader = stub_->Train(&heavy_context, request);
    v1::TrainProgress progress;
    while (reader->Read(&progress)) started.store(true);
    (void)reader->Finish();
  });
  for (int i = 0; i < 5000 && !started.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(started.load());
  ASSERT_EQ(server_->pool().Stats().running, 1u);
  EXPECT_THAT(
      Retrieve("slow", {patterns[0]}),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("server busy")));
  grpc::ClientContext ping_context;
  v1::PingRequest ping;
  v1::PingResponse pong;
  EXPECT_TRUE(stub_->Ping(&ping_context, ping, &pong).ok());
  heavy_context.TryCancel();
  heavy.join();
}

// Issue 13: a StoreStream's reply listing every id could outgrow the message
// limits after everything was stored. The limit is checked before a message
// is stored; omit_ids lifts it.
TEST_F(MemoryServiceTest, Issue13StoreStreamChecksItsReplyBeforeStoring) {
  server_.reset();
  ServerConfig config;
  config.max_message_bytes = 4096;  // the reply limit: 4 KiB, ~400 ids
  StartServer(config);
  ASSERT_THAT(CreateBank("s", 2), IsOk());
  auto stream = [&](bool omit_ids, int messages, v1::StoreResponse* response) {
    grpc::ClientContext context;
    auto writer = stub_->StoreStream(&context, response);
    for (int m = 0; m < messages; ++m) {
      v1::StoreRequest request;
      request.set_bank("s");
      request.set_omit_ids(omit_ids && m == 0);
      for (int i = 0; i < 100; ++i) {
        v1::Pattern* pattern = request.add_patterns();
        pattern->add_values(static_cast<float>(i + 1));
        pattern->add_values(1.0f);
      }
      if (!writer->Write(request)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  };
  v1::StoreResponse response;
  const grpc::Status refused = stream(false, 50, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("patterns were stored"), HasSubstr("omit_ids")));
  grpc::ClientContext context;
  v1::GetBankRequest get;
  get.set_name("s");
  v1::Bank bank;
  ASSERT_TRUE(stub_->GetBank(&context, get, &bank).ok());
  EXPECT_EQ(bank.pattern_count() % 100, 0u);  // whole messages only
  EXPECT_GT(bank.pattern_count(), 0u);
  EXPECT_LT(bank.pattern_count(), 5000u);
  EXPECT_THAT(refused.error_message(),
              HasSubstr(absl::StrCat("after ", bank.pattern_count(),
                                     " patterns were stored")));
  v1::StoreResponse unlimited;
  ASSERT_TRUE(stream(true, 50, &unlimited).ok());
  EXPECT_EQ(unlimited.ids_size(), 0);
  EXPECT_EQ(unlimited.stored(), 5000u);
  EXPECT_EQ(unlimited.pattern_count(), bank.pattern_count() + 5000);
}

}  // namespace
}  // namespace hopfield::server

namespace hopfield::server {
namespace {

// The parsed request counts against the budget while its call waits and
// runs, so queued calls cannot hold requests beyond it.
TEST_F(MemoryServiceTest, ParsedRequestsCountAgainstTheBudget) {
  server_.reset();
  ServerConfig config;
  config.memory_budget_bytes = 1 << 20;
  StartServer(config);
  ASSERT_THAT(CreateBank("b", 1024), IsOk());
  const std::vector<std::vector<float>> big(300,
                                            std::vector<float>(1024, 1.0f));
  EXPECT_THAT(Store("b", big), StatusIs(absl::StatusCode::kResourceExhausted,
                                        HasSubstr("the parsed request")));
  EXPECT_EQ(server_->budget().used(), 0u);
  const std::vector<std::vector<float>> small(10,
                                              std::vector<float>(1024, 1.0f));
  EXPECT_THAT(Store("b", small), IsOk());
}

}  // namespace
}  // namespace hopfield::server

namespace hopfield::server {
namespace {

// Issue 13: an exception escaping a gRPC 1.51 handler became UNIMPLEMENTED
// with an empty message. Every handler's work runs through RunGuarded.
TEST(RunGuardedTest, ExceptionsBecomeStatusesWithMessages) {
  const absl::Status out_of_memory =
      RunGuarded([]() -> absl::Status { throw std::bad_alloc(); });
  EXPECT_THAT(out_of_memory, StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("out of memory")));
  const absl::Status other = RunGuarded(
      []() -> absl::Status { throw std::runtime_error("broken invariant"); });
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kInternal,
                              HasSubstr("broken invariant")));
  EXPECT_THAT(RunGuarded([] { return absl::NotFoundError("x"); }),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(PrintableNameTest, EscapesAndCutsUntrustedNames) {
  EXPECT_EQ(PrintableName("faces"), "faces");
  EXPECT_EQ(PrintableName("a\nb"), "a\\nb");
  const std::string shown = PrintableName(std::string(8192, 'x'));
  EXPECT_LT(shown.size(), 100u);
  EXPECT_THAT(shown, HasSubstr("(8192 bytes)"));
}

}  // namespace
}  // namespace hopfield::server
