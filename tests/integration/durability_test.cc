// The durability promise (api.md), against the real hopfieldd on a data
// directory that outlives it:
//   - restart: write, stop (SIGTERM), start on the same directory: the same
//     banks, GetPatterns bit-identical, Retrieve identical;
//   - crash: one writer mixes Store, StoreStream, Forget, CreateBank and
//     DeleteBank while the server is SIGKILLed at random moments and
//     restarted, several times; after each restart every acknowledged write
//     is present and identical, nothing forgotten or deleted comes back, and
//     no pattern exists that no request stored, beyond the one request in
//     flight at the kill (which may or may not have landed, all or nothing
//     per message);
//   - a bank trained before the crashes keeps its feature map.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

#include "client/memory_client.h"
#include "core/testing/status_matchers.h"
#include "hopfield/v1/memory_service.grpc.pb.h"
#include "tests/integration/hopfieldd_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace hopfield {
namespace {

using ::hopfield::testing::HopfielddProcess;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint32_t kDim = 8;

// A scratch data directory that outlives the servers started on it.
class DataDir {
 public:
  DataDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/hopfield_data_XXXXXX");
    path_ = mkdtemp(pattern.data());
  }
  ~DataDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string flag() const { return "--data_dir=" + path_ + "/data"; }

 private:
  std::string path_;
};

std::unique_ptr<client::MemoryClient> Connect(const HopfielddProcess& server,
                                              int max_message_bytes) {
  client::ClientOptions options;
  options.target = server.target();
  options.timeout = absl::Seconds(20);
  options.max_message_bytes = max_message_bytes;
  return std::make_unique<client::MemoryClient>(options);
}

std::vector<float> RandomValues(std::mt19937& rng, size_t count) {
  std::normal_distribution<float> normal;
  std::vector<float> values(count * kDim);
  for (float& v : values) v = normal(rng);
  return values;
}

// Row `row` of a row-major buffer of `width`-float patterns.
std::vector<float> Row(const std::vector<float>& values, size_t row,
                       size_t width = kDim) {
  const auto begin = values.begin() + static_cast<std::ptrdiff_t>(row * width);
  return {begin, begin + static_cast<std::ptrdiff_t>(width)};
}

bool SameBits(const v1::Pattern& pattern, const std::vector<float>& values) {
  return static_cast<size_t>(pattern.values_size()) == values.size() &&
         std::memcmp(pattern.values().data(), values.data(),
                     values.size() * sizeof(float)) == 0;
}

TEST(DurabilityTest, RestartGivesBackTheSameBitsAndAnswers) {
  DataDir data;
  std::mt19937 rng(11);
  const std::vector<float> values = RandomValues(rng, 500);
  const std::vector<float> queries = RandomValues(rng, 20);
  std::vector<uint64_t> ids;
  std::vector<v1::Retrieval> before;
  std::vector<v1::Retrieval> before_approximate;
  v1::RetrieveOptions approximate;
  approximate.set_search(v1::SEARCH_MODE_APPROXIMATE);
  approximate.set_top_k(16);
  uint32_t version = 0;
  // Small banks get a search index too, so that its persistence is tested.
  const std::vector<std::string> flags = {data.flag(),
                                          "--index_min_patterns=100"};
  {
    HopfielddProcess server(HOPFIELDD_PATH, flags);
    ASSERT_GT(server.port(), 0);
    auto client = Connect(server, 64 << 20);
    v1::BankConfig config;
    config.set_dim(kDim);
    ASSERT_THAT(client->CreateBank("kept", config), IsOk());
    ASSERT_THAT(client->CreateBank("empty", config), IsOk());
    ASSERT_THAT(client->CreateBank("gone", config), IsOk());
    HOPFIELD_ASSERT_OK_AND_ASSIGN(ids, client->Store("kept", kDim, values));
    ASSERT_THAT(client->Forget("kept", {ids[3], ids[250]}), IsOk());
    ASSERT_THAT(client->DeleteBank("gone"), IsOk());
    v1::TrainOptions train;
    train.set_iterations(20);
    train.set_feature_dim(6);
    train.set_skip_validation(true);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::TrainResult result,
                                  client->Train("kept", train));
    version = result.feature_map_version();
    // Answers once the statistics are exact (automatic β depends on them)
    // and the index holds every pattern.
    for (int i = 0; i < 1000; ++i) {
      HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::Bank bank, client->GetBank("kept"));
      if (bank.separation_pending() == 0 && bank.index_pending() == 0 &&
          bank.index_current()) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    HOPFIELD_ASSERT_OK_AND_ASSIGN(before,
                                  client->Retrieve("kept", kDim, queries));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        before_approximate,
        client->Retrieve("kept", kDim, queries, approximate));
    ASSERT_EQ(server.StopWith(SIGTERM, std::chrono::seconds(30)), 0);
  }
  HopfielddProcess server(HOPFIELDD_PATH, flags);
  ASSERT_GT(server.port(), 0);
  auto client = Connect(server, 64 << 20);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Bank> banks,
                                client->ListBanks());
  ASSERT_EQ(banks.size(), 2u);
  // The saved index was taken back (not rebuilt: nothing pending at once).
  EXPECT_EQ(banks[1].index_size(), 498u);
  EXPECT_EQ(banks[1].index_pending(), 0u);
  EXPECT_TRUE(banks[1].index_current());
  EXPECT_EQ(banks[0].name(), "empty");
  EXPECT_EQ(banks[1].name(), "kept");
  EXPECT_EQ(banks[1].pattern_count(), 498u);
  EXPECT_EQ(banks[1].feature_map_version(), version);
  EXPECT_GE(version, 1u);
  EXPECT_EQ(banks[1].separation_pending(), 0u);  // restored, not recomputed
  EXPECT_THAT(client->GetPatterns("kept", {ids[3]}),
              StatusIs(absl::StatusCode::kNotFound));
  std::vector<uint64_t> kept_ids;
  std::vector<float> kept_values;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i == 3 || i == 250) continue;
    kept_ids.push_back(ids[i]);
    const std::vector<float> row = Row(values, i);
    kept_values.insert(kept_values.end(), row.begin(), row.end());
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> patterns,
                                client->GetPatterns("kept", kept_ids));
  ASSERT_EQ(patterns.size(), kept_ids.size());
  for (size_t i = 0; i < patterns.size(); ++i) {
    ASSERT_TRUE(SameBits(patterns[i], Row(kept_values, i)))
        << "id " << kept_ids[i];
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Retrieval> after,
                                client->Retrieve("kept", kDim, queries));
  ASSERT_EQ(after.size(), before.size());
  for (size_t q = 0; q < after.size(); ++q) {
    EXPECT_EQ(after[q].nearest_id(), before[q].nearest_id()) << q;
    EXPECT_EQ(after[q].energy(), before[q].energy()) << q;
    EXPECT_EQ(after[q].iterations(), before[q].iterations()) << q;
    ASSERT_EQ(after[q].pattern_size(), before[q].pattern_size());
    EXPECT_EQ(std::memcmp(after[q].pattern().data(), before[q].pattern().data(),
                          sizeof(float) * after[q].pattern_size()),
              0)
        << q;
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::vector<v1::Retrieval> after_approximate,
      client->Retrieve("kept", kDim, queries, approximate));
  ASSERT_EQ(after_approximate.size(), before_approximate.size());
  for (size_t q = 0; q < after_approximate.size(); ++q) {
    EXPECT_EQ(after_approximate[q].nearest_id(),
              before_approximate[q].nearest_id())
        << q;
    EXPECT_EQ(after_approximate[q].energy(), before_approximate[q].energy())
        << q;
    EXPECT_EQ(after_approximate[q].truncation_bound(),
              before_approximate[q].truncation_bound())
        << q;
  }
  // Fresh ids continue after the largest ever handed out.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::vector<uint64_t> fresh,
      client->Store("kept", kDim, RandomValues(rng, 1)));
  EXPECT_EQ(fresh[0], ids.back() + 1);
}

TEST(DurabilityTest, BackupWhileServingRestoresIntoAFreshServer) {
  DataDir data;
  DataDir backups;
  const std::string backup = backups.flag().substr(strlen("--data_dir="));
  std::mt19937 rng(5);
  const std::vector<float> values = RandomValues(rng, 300);
  std::vector<uint64_t> ids;
  {
    HopfielddProcess server(HOPFIELDD_PATH, {data.flag()});
    ASSERT_GT(server.port(), 0);
    auto client = Connect(server, 64 << 20);
    v1::BankConfig config;
    config.set_dim(kDim);
    ASSERT_THAT(client->CreateBank("a", config), IsOk());
    HOPFIELD_ASSERT_OK_AND_ASSIGN(ids, client->Store("a", kDim, values));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::BackupResponse response,
                                  client->Backup(backup));
    EXPECT_EQ(response.banks(), 1u);
    EXPECT_THAT(client->Backup(backup),
                StatusIs(absl::StatusCode::kAlreadyExists));
    EXPECT_THAT(client->Backup("relative/dir"),
                StatusIs(absl::StatusCode::kInvalidArgument));
    // Writes after the backup are not in it.
    ASSERT_THAT(client->Forget("a", {ids[0]}), IsOk());
    ASSERT_THAT(client->CreateBank("later", config), IsOk());
  }
  // Restore: a server on (a copy of) the backup directory.
  HopfielddProcess restored(HOPFIELDD_PATH, {"--data_dir=" + backup});
  ASSERT_GT(restored.port(), 0);
  auto client = Connect(restored, 64 << 20);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Bank> banks,
                                client->ListBanks());
  ASSERT_EQ(banks.size(), 1u);
  EXPECT_EQ(banks[0].pattern_count(), 300u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> patterns,
                                client->GetPatterns("a", ids));
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(SameBits(patterns[i], Row(values, i)));
  }
}

// A free loopback port (bound and released: a race with other processes
// is possible but unlikely on a test machine).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

TEST(DurabilityTest, WhileLoadingHealthIsNotServingAndCallsAreUnavailable) {
  DataDir data;
  // ~50 MB: a load of a second or more in the dev build (less in release;
  // the prober sees even a 50 ms window several times).
  constexpr size_t kCount = 100000;
  constexpr size_t kDimension = 128;
  {
    HopfielddProcess server(HOPFIELDD_PATH, {data.flag()});
    ASSERT_GT(server.port(), 0);
    auto client = Connect(server, 64 << 20);
    v1::BankConfig config;
    config.set_dim(kDimension);
    ASSERT_THAT(client->CreateBank("big", config), IsOk());
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> uniform(0.1f, 1.0f);
    std::vector<float> values(kCount * kDimension);
    for (float& v : values) v = uniform(rng);
    ASSERT_THAT(client->Store("big", kDimension, values), IsOk());
    ASSERT_EQ(server.StopWith(SIGTERM, std::chrono::seconds(60)), 0);
  }
  const int port = FreePort();
  ASSERT_GT(port, 0);
  // Poll from before the process starts until it serves.
  std::atomic<bool> serving{false};
  int not_serving = 0;
  int unavailable_calls = 0;
  std::vector<std::string> wrong;
  std::thread prober([&] {
    client::ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port);
    options.timeout = absl::Seconds(2);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      // A fresh channel each time: a channel whose first connection was
      // refused (the port not bound yet) backs off for a second or more,
      // longer than the loading window.
      client::MemoryClient client(options);
      absl::StatusOr<bool> health = client.Health();
      if (health.ok() && *health) {
        serving.store(true);
        return;
      }
      if (health.ok()) {
        ++not_serving;
        absl::StatusOr<v1::Bank> bank = client.GetBank("big");
        if (absl::IsUnavailable(bank.status())) {
          ++unavailable_calls;
        } else if (!bank.ok() || bank->pattern_count() != kCount) {
          // Serving calls before health says so, or a partial registry.
          wrong.push_back(bank.status().ToString());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  HopfielddProcess server(
      HOPFIELDD_PATH, {data.flag(), absl::StrCat("--listen=127.0.0.1:", port)});
  prober.join();
  ASSERT_GT(server.port(), 0);
  EXPECT_TRUE(serving.load());
  EXPECT_GT(not_serving, 0) << "never saw the loading state";
  EXPECT_GT(unavailable_calls, 0);
  EXPECT_THAT(wrong, ::testing::IsEmpty());
  auto client = Connect(server, 64 << 20);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::Bank bank, client->GetBank("big"));
  EXPECT_EQ(bank.pattern_count(), kCount);
}

TEST(DurabilityTest, AnUnusableDataDirectoryStopsTheStart) {
  HopfielddProcess server(HOPFIELDD_PATH, {"--data_dir=/proc/hopfield-data"});
  EXPECT_EQ(server.port(), 0);
}

TEST(DurabilityTest, SecondServerOnTheSameDirectoryIsRefused) {
  DataDir data;
  HopfielddProcess first(HOPFIELDD_PATH, {data.flag()});
  ASSERT_GT(first.port(), 0);
  HopfielddProcess second(HOPFIELDD_PATH, {data.flag()});
  EXPECT_EQ(second.port(), 0) << "two servers share one data directory";
}

// Stores `count` patterns of `dim` floats, every value `marker` except the
// first (the pattern's index), so the stored bytes are easy to find.
std::vector<float> MarkedValues(size_t count, size_t dim, float marker) {
  std::vector<float> values(count * dim, marker);
  for (size_t i = 0; i < count; ++i) values[i * dim] = static_cast<float>(i);
  return values;
}

TEST(DurabilityTest, ADamagedBankIsDataLossAndTheOthersServe) {
  DataDir data;
  constexpr size_t kWide = 4096;  // each bank's records in blocks of their own
  const std::vector<float> damaged = MarkedValues(3, kWide, 1234.5f);
  const std::vector<float> intact = MarkedValues(3, kWide, -7.25f);
  {
    HopfielddProcess server(HOPFIELDD_PATH, {data.flag()});
    ASSERT_GT(server.port(), 0);
    auto client = Connect(server, 64 << 20);
    v1::BankConfig config;
    config.set_dim(kWide);
    ASSERT_THAT(client->CreateBank("damaged", config), IsOk());
    ASSERT_THAT(client->CreateBank("intact", config), IsOk());
    ASSERT_THAT(client->Store("damaged", kWide, damaged), IsOk());
    ASSERT_THAT(client->Store("intact", kWide, intact), IsOk());
    // A clean stop flushes the records into table files.
    ASSERT_EQ(server.StopWith(SIGTERM, std::chrono::seconds(30)), 0);
  }
  // Flip one byte in the middle of the damaged bank's values.
  const float marker = 1234.5f;
  std::string needle(sizeof(float) * 64, '\0');
  for (size_t i = 0; i < 64; ++i) {
    std::memcpy(&needle[i * sizeof(float)], &marker, sizeof(float));
  }
  bool flipped = false;
  const std::string dir = data.flag().substr(strlen("--data_dir="));
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".sst") continue;
    std::fstream file(entry.path(),
                      std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)),
                      std::istreambuf_iterator<char>());
    const size_t at = bytes.find(needle);
    if (at == std::string::npos) continue;
    file.seekp(static_cast<std::streamoff>(at + needle.size() / 2));
    file.put(static_cast<char>(bytes[at + needle.size() / 2] ^ 0x5a));
    flipped = true;
  }
  ASSERT_TRUE(flipped) << "no table file holds the damaged bank's values";

  HopfielddProcess server(HOPFIELDD_PATH, {data.flag()});
  ASSERT_GT(server.port(), 0) << "one damaged bank must not stop the server";
  auto client = Connect(server, 64 << 20);
  EXPECT_THAT(client->GetBank("damaged"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("damaged")));
  EXPECT_THAT(client->Store("damaged", kWide, intact),
              StatusIs(absl::StatusCode::kDataLoss));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> patterns,
                                client->GetPatterns("intact", {1, 2, 3}));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(SameBits(patterns[i], Row(intact, i, kWide)));
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Bank> banks,
                                client->ListBanks());
  ASSERT_EQ(banks.size(), 1u);
  EXPECT_EQ(banks[0].name(), "intact");
  // Deleting the damaged bank gives its name back.
  ASSERT_THAT(client->DeleteBank("damaged"), IsOk());
  v1::BankConfig config;
  config.set_dim(kWide);
  EXPECT_THAT(client->CreateBank("damaged", config), IsOk());
}

// A small file system of its own (tmpfs; needs root), unmounted at the end.
class SmallFileSystem {
 public:
  explicit SmallFileSystem(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    mounted_ = geteuid() == 0 &&
               RunQuiet("mount -t tmpfs -o size=12m tmpfs " + dir_) == 0;
  }
  ~SmallFileSystem() {
    if (mounted_) RunQuiet("umount -l " + dir_);
  }
  bool mounted() const { return mounted_; }
  bool Grow() const {
    return RunQuiet("mount -o remount,size=256m tmpfs " + dir_) == 0;
  }

 private:
  static int RunQuiet(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str());
  }
  std::string dir_;
  bool mounted_ = false;
};

TEST(DurabilityTest, AFullDiskFailsTheWriteAndLosesNothingAcknowledged) {
  DataDir data;
  const std::string root = data.flag().substr(strlen("--data_dir=")) + "fs";
  SmallFileSystem small(root);
  if (!small.mounted()) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  const std::string flag = "--data_dir=" + root + "/data";
  constexpr size_t kWide = 1024;
  std::mt19937 rng(3);
  std::vector<std::vector<float>> acknowledged;
  std::vector<float> refused;
  {
    HopfielddProcess server(HOPFIELDD_PATH, {flag});
    ASSERT_GT(server.port(), 0);
    auto client = Connect(server, 64 << 20);
    v1::BankConfig config;
    config.set_dim(kWide);
    ASSERT_THAT(client->CreateBank("full", config), IsOk());
    absl::Status failure;
    for (int batch = 0; batch < 200 && failure.ok(); ++batch) {
      std::normal_distribution<float> normal;
      std::vector<float> values(50 * kWide);
      for (float& v : values) v = normal(rng);
      failure = client->Store("full", kWide, values).status();
      if (failure.ok()) {
        acknowledged.push_back(values);
      } else {
        refused = values;
      }
    }
    ASSERT_FALSE(failure.ok()) << "12 MB held 10 MB of patterns and more";
    EXPECT_THAT(failure, StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("space")));
    // Later writes are refused too, with a reason; reads still work.
    EXPECT_THAT(client->Store("full", kWide, refused),
                StatusIs(absl::StatusCode::kUnavailable));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> first,
                                  client->GetPatterns("full", {1}));
    EXPECT_TRUE(SameBits(first[0], Row(acknowledged[0], 0, kWide)));
    kill(server.pid(), SIGKILL);
    server.StopWith(SIGKILL, std::chrono::seconds(10));
  }
  // With room again, a restart holds every acknowledged pattern.
  ASSERT_TRUE(small.Grow());
  HopfielddProcess server(HOPFIELDD_PATH, {flag});
  ASSERT_GT(server.port(), 0);
  auto client = Connect(server, 64 << 20);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::Bank bank, client->GetBank("full"));
  const uint64_t expected = acknowledged.size() * 50;
  // The refused batch failed before it was applied, or at its sync (then it
  // may have reached the log): never partly.
  EXPECT_TRUE(bank.pattern_count() == expected ||
              bank.pattern_count() == expected + 50)
      << bank.pattern_count();
  std::vector<uint64_t> ids(expected);
  for (uint64_t i = 0; i < expected; ++i) ids[i] = i + 1;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> patterns,
                                client->GetPatterns("full", ids));
  for (uint64_t i = 0; i < expected; ++i) {
    const std::vector<float>& batch = acknowledged[i / 50];
    const size_t row = i % 50;
    ASSERT_TRUE(SameBits(patterns[i], Row(batch, row, kWide)))
        << "id " << i + 1;
  }
}

// What the writer knows: every acknowledged write, and the request in
// flight when the server died.
struct Model {
  std::map<std::string, std::map<uint64_t, std::vector<float>>> banks;
  std::map<std::string, std::set<uint64_t>> forgotten;
  uint64_t next_id = 1;
  int next_bank = 0;

  struct InFlight {
    std::string bank;
    std::map<uint64_t, std::vector<float>> stores;
    std::vector<uint64_t> forgets;
    std::string created;
    std::string deleted;
  };
  std::optional<InFlight> in_flight;
};

// Writes until a call fails (the server was killed); returns the calls
// acknowledged.
int WriteUntilKilled(v1::MemoryService::Stub* stub,
                     client::MemoryClient* client, Model* model,
                     std::mt19937* rng) {
  v1::BankConfig config;
  config.set_dim(kDim);
  int acknowledged = 0;
  while (true) {
    Model::InFlight op;
    std::vector<std::string> names;
    for (const auto& [name, patterns] : model->banks) names.push_back(name);
    const int roll = static_cast<int>((*rng)() % 100);
    absl::Status status;
    if (names.empty() || roll < 8) {
      op.created = absl::StrCat("b", model->next_bank++);
      status = client->CreateBank(op.created, config).status();
    } else if (roll < 12 && names.size() > 1) {
      op.deleted = names[(*rng)() % names.size()];
      status = client->DeleteBank(op.deleted);
    } else {
      op.bank = names[(*rng)() % names.size()];
      std::map<uint64_t, std::vector<float>>& stored = model->banks[op.bank];
      std::vector<uint64_t> existing;
      existing.reserve(stored.size());
      for (const auto& [id, values] : stored) existing.push_back(id);
      if (roll < 30 && !existing.empty()) {
        for (int k = 0; k < 1 + static_cast<int>((*rng)() % 20); ++k) {
          op.forgets.push_back(existing[(*rng)() % existing.size()]);
        }
        op.forgets.push_back(model->next_id + 1000000);  // never stored
        status = client->Forget(op.bank, op.forgets).status();
      } else {
        // New ids and replacements of stored ones, one request (unary) or
        // a stream of several messages.
        const size_t count =
            roll < 60 ? 1 + (*rng)() % 30 : 50 + (*rng)() % 400;
        std::vector<uint64_t> ids;
        for (size_t i = 0; i < count; ++i) {
          uint64_t id = 0;
          if (!existing.empty() && (*rng)() % 4 == 0) {
            id = existing[(*rng)() % existing.size()];
          }
          if (id == 0 || op.stores.count(id) > 0) id = model->next_id++;
          ids.push_back(id);
          op.stores[id];
        }
        const std::vector<float> values = RandomValues(*rng, count);
        for (size_t i = 0; i < count; ++i) {
          op.stores[ids[i]] = Row(values, i);
        }
        if (roll < 60) {
          v1::StoreRequest request;
          request.set_bank(op.bank);
          for (size_t i = 0; i < count; ++i) {
            v1::Pattern* pattern = request.add_patterns();
            pattern->set_id(ids[i]);
            const std::vector<float> row = Row(values, i);
            pattern->mutable_values()->Add(row.begin(), row.end());
          }
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(20));
          v1::StoreResponse response;
          const grpc::Status grpc_status =
              stub->Store(&context, request, &response);
          status = grpc_status.ok()
                       ? absl::OkStatus()
                       : absl::UnavailableError(grpc_status.error_message());
        } else {
          status = client->StoreStream(op.bank, kDim, values, ids, {}).status();
        }
      }
    }
    if (!status.ok()) {
      model->in_flight = std::move(op);
      return acknowledged;
    }
    ++acknowledged;
    if (!op.created.empty()) model->banks[op.created];
    if (!op.deleted.empty()) model->banks.erase(op.deleted);
    for (auto& [id, values] : op.stores) model->banks[op.bank][id] = values;
    for (const uint64_t id : op.forgets) {
      if (model->banks[op.bank].erase(id) > 0) {
        model->forgotten[op.bank].insert(id);
      }
    }
  }
}

// Checks the restarted server against the model and settles the in-flight
// request from what the server holds.
void CheckAndSettle(client::MemoryClient* client, Model* model) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Bank> banks,
                                client->ListBanks());
  std::set<std::string> names;
  std::map<std::string, uint64_t> counts;
  for (const v1::Bank& bank : banks) {
    names.insert(bank.name());
    counts[bank.name()] = bank.pattern_count();
  }
  names.erase("trained");
  const Model::InFlight op = model->in_flight.value_or(Model::InFlight{});
  // Banks: the acknowledged ones, give or take the one in flight.
  if (!op.created.empty() && names.count(op.created) > 0) {
    model->banks[op.created];
  }
  if (!op.deleted.empty() && names.count(op.deleted) == 0) {
    model->banks.erase(op.deleted);
  }
  std::set<std::string> expected;
  for (const auto& [name, patterns] : model->banks) expected.insert(name);
  ASSERT_EQ(names, expected);

  for (auto& [name, stored] : model->banks) {
    // The in-flight request's ids: settled from the server, each message all
    // or nothing (checked below through the values).
    if (name == op.bank) {
      for (const auto& [id, values] : op.stores) {
        absl::StatusOr<std::vector<v1::Pattern>> got =
            client->GetPatterns(name, {id});
        if (!got.ok()) {
          ASSERT_THAT(got, StatusIs(absl::StatusCode::kNotFound));
          ASSERT_EQ(stored.count(id), 0u)
              << "acknowledged id " << id << " of " << name << " is gone";
          continue;
        }
        const bool new_bits = SameBits((*got)[0], values);
        const bool old_bits =
            stored.count(id) > 0 && SameBits((*got)[0], stored[id]);
        ASSERT_TRUE(new_bits || old_bits)
            << "id " << id << " of " << name << " holds values no write sent";
        stored[id] = values;
        if (!new_bits)
          stored[id].assign((*got)[0].values().begin(),
                            (*got)[0].values().end());
      }
      for (const uint64_t id : op.forgets) {
        if (stored.count(id) == 0) continue;
        if (!client->GetPatterns(name, {id}).ok()) {
          stored.erase(id);
          model->forgotten[name].insert(id);
        }
      }
    }
    ASSERT_EQ(counts[name], stored.size())
        << name << ": patterns beyond the acknowledged writes";
    std::vector<uint64_t> ids;
    for (const auto& [id, values] : stored) ids.push_back(id);
    if (!ids.empty()) {
      HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Pattern> patterns,
                                    client->GetPatterns(name, ids));
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_TRUE(SameBits(patterns[i], stored[ids[i]]))
            << "id " << ids[i] << " of " << name << " changed";
      }
    }
    for (const uint64_t id : model->forgotten[name]) {
      ASSERT_THAT(client->GetPatterns(name, {id}),
                  StatusIs(absl::StatusCode::kNotFound))
          << "forgotten id " << id << " of " << name << " came back";
    }
  }
  model->in_flight.reset();
}

TEST(DurabilityTest, EveryAcknowledgedWriteSurvivesSigkill) {
  DataDir data;
  std::mt19937 rng(20261207);
  Model model;
  const std::vector<float> queries = RandomValues(rng, 10);
  std::vector<uint64_t> trained_answers;
  uint32_t trained_version = 0;
  int total_acknowledged = 0;
  constexpr int kKills = 6;
  for (int round = 0; round <= kKills; ++round) {
    HopfielddProcess server(HOPFIELDD_PATH, {data.flag()});
    ASSERT_GT(server.port(), 0) << "restart " << round << " failed";
    auto client = Connect(server, 64 << 20);
    // The writer's StoreStreams carry many small messages.
    auto writer_client = Connect(server, 16 << 10);
    if (round == 0) {
      v1::BankConfig config;
      config.set_dim(kDim);
      ASSERT_THAT(client->CreateBank("trained", config), IsOk());
      ASSERT_THAT(client->Store("trained", kDim, RandomValues(rng, 300)),
                  IsOk());
      v1::TrainOptions train;
      train.set_iterations(10);
      train.set_skip_validation(true);
      HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::TrainResult result,
                                    client->Train("trained", train));
      trained_version = result.feature_map_version();
    }
    HOPFIELD_ASSERT_OK_AND_ASSIGN(v1::Bank trained, client->GetBank("trained"));
    EXPECT_EQ(trained.feature_map_version(), trained_version);
    EXPECT_EQ(trained.pattern_count(), 300u);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<v1::Retrieval> answers,
                                  client->Retrieve("trained", kDim, queries));
    std::vector<uint64_t> nearest;
    nearest.reserve(answers.size());
    for (const v1::Retrieval& answer : answers) {
      nearest.push_back(answer.nearest_id());
    }
    if (round == 0) trained_answers = nearest;
    EXPECT_EQ(nearest, trained_answers) << "after restart " << round;

    ASSERT_NO_FATAL_FAILURE(CheckAndSettle(client.get(), &model))
        << "after restart " << round;
    if (round == kKills) break;

    // A writer, and a SIGKILL at a random moment.
    auto channel = grpc::CreateChannel(server.target(),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::MemoryService::NewStub(channel);
    const auto alive =
        std::chrono::milliseconds(200 + static_cast<int>(rng() % 800));
    std::thread writer([&] {
      total_acknowledged +=
          WriteUntilKilled(stub.get(), writer_client.get(), &model, &rng);
    });
    std::this_thread::sleep_for(alive);
    kill(server.pid(), SIGKILL);
    writer.join();
    server.StopWith(SIGKILL, std::chrono::seconds(10));  // reaps it
  }
  // The writer got real work done between the kills.
  EXPECT_GT(total_acknowledged, kKills * 5);
  RecordProperty("acknowledged_writes", total_acknowledged);
}

}  // namespace
}  // namespace hopfield
