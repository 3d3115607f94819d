// The real hopfieldd, over TCP on loopback, through MemoryClient.
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "client/memory_client.h"
#include "core/testing/status_matchers.h"
#include "tests/integration/hopfieldd_process.h"

namespace hopfield {
namespace {

using ::hopfield::testing::HopfielddProcess;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<HopfielddProcess>(HOPFIELDD_PATH);
    ASSERT_GT(server_->port(), 0) << "hopfieldd did not start";
    client::ClientOptions options;
    options.target = server_->target();
    options.timeout = absl::Seconds(30);
    // A small limit forces Store and Retrieve to split.
    options.max_message_bytes = 256 * 1024;
    client_ = std::make_unique<client::MemoryClient>(options);
  }

  std::unique_ptr<HopfielddProcess> server_;
  std::unique_ptr<client::MemoryClient> client_;
};

TEST_F(ServerTest, HealthIsServing) {
  for (const char* service : {"", "hopfield.v1.MemoryService"}) {
    absl::StatusOr<bool> serving = client_->Health(service);
    ASSERT_THAT(serving, IsOk());
    EXPECT_TRUE(*serving) << service;
  }
  EXPECT_THAT(client_->Health("unknown"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ServerTest, StoreSplitsAndRetrievesEveryPattern) {
  constexpr size_t kDim = 64;
  constexpr size_t kCount = 3000;  // 768 KB of floats: several requests
  v1::BankConfig config;
  config.set_dim(kDim);
  ASSERT_THAT(client_->CreateBank("unit", config), IsOk());
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> values(kDim * kCount);
  for (float& v : values) v = normal(rng);
  uint64_t reported_total = 0;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::vector<uint64_t> ids,
      client_->Store("unit", kDim, values, {},
                     [&](uint64_t done, uint64_t total) {
                       EXPECT_LE(done, total);
                       reported_total = total;
                     }));
  ASSERT_EQ(ids.size(), kCount);
  EXPECT_EQ(reported_total, kCount);
  EXPECT_EQ(ids.front(), 1u);
  EXPECT_EQ(ids.back(), kCount);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::Bank bank, client_->GetBank("unit"));
  EXPECT_EQ(bank.pattern_count(), kCount);
  // Same bits back.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto patterns,
                                client_->GetPatterns("unit", {7}));
  ASSERT_EQ(patterns.size(), 1u);
  for (size_t j = 0; j < kDim; ++j) {
    ASSERT_EQ(patterns[0].values(static_cast<int>(j)), values[6 * kDim + j]);
  }
  // Noisy copies of every 10th pattern are recalled.
  std::vector<float> queries;
  for (size_t i = 0; i < kCount; i += 10) {
    for (size_t j = 0; j < kDim; ++j) {
      queries.push_back(values[i * kDim + j] + 0.1f * normal(rng));
    }
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      auto results, client_->Retrieve("unit", kDim, queries, {}, 64));
  ASSERT_EQ(results.size(), kCount / 10);
  for (size_t q = 0; q < results.size(); ++q) {
    EXPECT_EQ(results[q].nearest_id(), q * 10 + 1);
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(uint64_t forgotten,
                                client_->Forget("unit", {1, 2, 99999}));
  EXPECT_EQ(forgotten, 2u);
  EXPECT_THAT(client_->DeleteBank("unit"), IsOk());
  EXPECT_THAT(client_->GetBank("unit"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ServerTest, ErrorsKeepTheirCodesOverTheWire) {
  v1::BankConfig config;
  config.set_dim(4);
  ASSERT_THAT(client_->CreateBank("e", config), IsOk());
  EXPECT_THAT(client_->CreateBank("e", config),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(client_->Retrieve("e", 4, std::vector<float>{1, 0, 0, 0}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(client_->Store("e", 3, std::vector<float>{1, 2, 3}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected 4 values")));
  v1::TrainOptions train;
  EXPECT_THAT(
      client_->Train("e", train),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("at least 2")));
}

TEST_F(ServerTest, SigtermDrainsAndExitsZero) {
  v1::BankConfig config;
  config.set_dim(2);
  ASSERT_THAT(client_->CreateBank("s", config), IsOk());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server_->StopWith(SIGTERM, std::chrono::seconds(10)), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_THAT(client_->GetBank("s"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ServerTest, SigintAlsoStopsCleanly) {
  EXPECT_EQ(server_->StopWith(SIGINT, std::chrono::seconds(10)), 0);
}

TEST(ServerStartTest, BadListenAddressFails) {
  HopfielddProcess process(HOPFIELDD_PATH, {"--listen=not-an-address"});
  EXPECT_EQ(process.port(), 0);
}

}  // namespace
}  // namespace hopfield
