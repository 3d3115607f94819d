// Durability of banks and of the registry through the Storage seam, against
// the in-memory fake (RocksDbStorage has its own contract tests, and the
// server's restart and crash tests run the real thing).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/casts.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/bank_codec.h"
#include "core/bank_registry.h"
#include "core/memory_bank.h"
#include "core/retriever.h"
#include "core/testing/in_memory_storage.h"
#include "core/testing/random_patterns.h"
#include "core/testing/recording_metrics_sink.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::GaussianPatterns;
using ::hopfield::testing::InMemoryStorage;
using ::hopfield::testing::IsOk;
using ::hopfield::testing::IsOkAndHolds;
using ::hopfield::testing::RecordingMetricsSink;
using ::hopfield::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kDim = 16;

// Everything a restart must reproduce bit for bit.
struct BankImage {
  std::vector<float> patterns;
  std::vector<float> keys;
  std::vector<PatternId> ids;
  uint32_t map_version = 0;
  std::optional<double> min_separation;
  std::optional<double> min_distinct_separation;
  uint64_t duplicate_count = 0;
  double effective_beta = 0.0;
  uint64_t separation_pending = 0;
};

BankImage Image(const MemoryBank& bank) {
  BankImage image = bank.WithReader([](const BankView& view) {
    BankImage out;
    out.patterns.assign(view.patterns.data(),
                        view.patterns.data() + view.patterns.size());
    out.keys.assign(view.keys.data(), view.keys.data() + view.keys.size());
    out.ids.assign(view.ids.begin(), view.ids.end());
    out.map_version = view.feature_map->version();
    return out;
  });
  const BankStats stats = bank.Stats();
  image.min_separation = stats.min_separation;
  image.min_distinct_separation = stats.min_distinct_separation;
  image.duplicate_count = stats.duplicate_count;
  image.effective_beta = stats.effective_beta;
  image.separation_pending = stats.separation_pending;
  return image;
}

void ExpectSameImage(const BankImage& a, const BankImage& b) {
  ASSERT_EQ(a.patterns.size(), b.patterns.size());
  EXPECT_EQ(std::memcmp(a.patterns.data(), b.patterns.data(),
                        a.patterns.size() * sizeof(float)),
            0)
      << "patterns differ";
  ASSERT_EQ(a.keys.size(), b.keys.size());
  EXPECT_EQ(
      std::memcmp(a.keys.data(), b.keys.data(), a.keys.size() * sizeof(float)),
      0)
      << "keys differ";
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.map_version, b.map_version);
  EXPECT_EQ(a.min_separation, b.min_separation);
  EXPECT_EQ(a.min_distinct_separation, b.min_distinct_separation);
  EXPECT_EQ(a.duplicate_count, b.duplicate_count);
  EXPECT_EQ(a.effective_beta, b.effective_beta);
  EXPECT_EQ(a.separation_pending, b.separation_pending);
}

// Retrieval answers, bit for bit.
void ExpectSameAnswers(const MemoryBank& a, const MemoryBank& b,
                       std::mt19937& rng) {
  for (int q = 0; q < 8; ++q) {
    const std::vector<float> query = GaussianPatterns(rng, 1, kDim);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const RetrieveResult ra,
                                  Retriever::Retrieve(a, query));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(const RetrieveResult rb,
                                  Retriever::Retrieve(b, query));
    EXPECT_EQ(ra.nearest_id, rb.nearest_id);
    EXPECT_EQ(ra.beta, rb.beta);
    EXPECT_EQ(ra.iterations, rb.iterations);
    ASSERT_EQ(ra.pattern.size(), rb.pattern.size());
    EXPECT_EQ(std::memcmp(ra.pattern.data(), rb.pattern.data(),
                          ra.pattern.size() * sizeof(float)),
              0);
  }
}

class BankPersistenceTest : public ::testing::Test {
 protected:
  BankEnvironment Env() const {
    BankEnvironment env;
    env.storage = storage_;
    env.incarnation = 7;
    return env;
  }
  static BankOptions Options() {
    BankOptions options;
    options.dim = kDim;
    return options;
  }
  std::unique_ptr<MemoryBank> Reload() {
    absl::StatusOr<std::unique_ptr<MemoryBank>> bank =
        MemoryBank::Load("b", Options(), Env());
    EXPECT_THAT(bank, IsOk());
    return bank.ok() ? *std::move(bank) : nullptr;
  }
  // Appends, replacements, explicit ids and removals that move columns
  // (the last column, a column moved by an earlier removal of the batch).
  void Write(MemoryBank& bank) {
    ASSERT_THAT(bank.Add(std::vector<PatternId>(40, 0),
                         GaussianPatterns(rng_, 40, kDim)),
                IsOk());
    ASSERT_THAT(bank.Add({3, 1000, 0, 5}, GaussianPatterns(rng_, 4, kDim)),
                IsOk());
    ASSERT_THAT(bank.Remove({1, 1001, 10, 1000, 40, 7}), IsOkAndHolds(6u));
    ASSERT_THAT(bank.Add({0, 0}, GaussianPatterns(rng_, 2, kDim)), IsOk());
    ASSERT_THAT(bank.Remove({2}), IsOkAndHolds(1u));
  }

  std::shared_ptr<InMemoryStorage> storage_ =
      std::make_shared<InMemoryStorage>();
  std::mt19937 rng_{20261207};
};

TEST_F(BankPersistenceTest, ReloadRebuildsTheSameBankColumnForColumn) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  ASSERT_THAT(bank->PersistSeparation(), IsOk());
  std::unique_ptr<MemoryBank> loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  ExpectSameImage(Image(*bank), Image(*loaded));
  ExpectSameAnswers(*bank, *loaded, rng_);
  // Fresh ids continue where they were: an id handed out and forgotten
  // (1000, the largest) is not handed out again.
  const std::vector<float> one = GaussianPatterns(rng_, 1, kDim);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<PatternId> a, bank->Add({0}, one));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<PatternId> b,
                                loaded->Add({0}, one));
  EXPECT_EQ(a, b);
  EXPECT_GT(a[0], 1000u);
}

TEST_F(BankPersistenceTest, RandomRemovalsReloadColumnForColumn) {
  // Removals whose moves chain (a hole filled from the end becomes the end
  // and is moved again), in random batches.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  for (int round = 0; round < 20; ++round) {
    ASSERT_THAT(bank->Add(std::vector<PatternId>(12, 0),
                          GaussianPatterns(rng_, 12, kDim)),
                IsOk());
    std::vector<PatternId> ids = Image(*bank).ids;
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize(ids.size() / 3);
    ASSERT_THAT(bank->Remove(ids), IsOkAndHolds(ids.size()));
    std::unique_ptr<MemoryBank> loaded = Reload();
    ASSERT_NE(loaded, nullptr);
    ASSERT_EQ(Image(*loaded).ids, Image(*bank).ids) << "round " << round;
    ASSERT_EQ(Image(*loaded).patterns, Image(*bank).patterns);
  }
}

// A scratch directory for side files, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "hopfield_side_XXXXXX")
            .string();
    path_ = mkdtemp(pattern.data());
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A deferred bank of 300 Gaussian patterns, indexed from the first pattern,
// whose storage keeps side files (the saved index, `<incarnation>.hnsw`) in
// a scratch directory.
class BankIndexPersistenceTest : public ::testing::Test {
 protected:
  // Creates the bank (env_.incarnation set first) and stores the patterns.
  void CreateBank(uint32_t incarnation) {
    env_.storage = std::make_shared<InMemoryStorage>(side_.path());
    env_.incarnation = incarnation;
    env_.index_min_patterns = 0;
    env_.separation_update = SeparationUpdate::kDeferred;
    options_.dim = kDim;
    HOPFIELD_ASSERT_OK_AND_ASSIGN(bank_,
                                  MemoryBank::Create("b", options_, env_));
    ASSERT_THAT(bank_->Add(std::vector<PatternId>(300, 0),
                           GaussianPatterns(rng_, 300, kDim)),
                IsOk());
  }
  std::string SavedIndexPath() const {
    return side_.path() + "/" + std::to_string(env_.incarnation) + ".hnsw";
  }

  ScratchDir side_;
  BankEnvironment env_;
  BankOptions options_;
  std::mt19937 rng_{17};
  std::unique_ptr<MemoryBank> bank_;
};

TEST_F(BankIndexPersistenceTest, ASavedIndexComesBackOnlyWhenCurrent) {
  ASSERT_NO_FATAL_FAILURE(CreateBank(3));
  MemoryBank* bank = bank_.get();
  const BankOptions& options = options_;
  const BankEnvironment& env = env_;
  std::mt19937& rng = rng_;
  ASSERT_THAT(bank->Remove({5, 77}), IsOkAndHolds(2u));  // tombstones
  while (bank->RefreshIndex(1000) > 0) {
  }
  ASSERT_EQ(bank->index_pending(), 0u);
  ASSERT_GT(bank->Stats().index_size, 0u);
  // The statistics too, so that both banks run the same certificates.
  ASSERT_THAT(bank->PersistSeparation(), IsOk());
  ASSERT_THAT(bank->PersistIndex(), IsOk());
  EXPECT_TRUE(std::filesystem::exists(SavedIndexPath()));

  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> loaded,
                                MemoryBank::Load("b", options, env));
  EXPECT_EQ(loaded->index_pending(), 0u);  // taken back, not rebuilt
  EXPECT_EQ(loaded->Stats().index_size, 298u);
  RetrieveOptions approximate;
  approximate.search = SearchMode::kApproximate;
  approximate.top_k = 16;
  for (int q = 0; q < 20; ++q) {
    const std::vector<float> query = GaussianPatterns(rng, 1, kDim);
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        const RetrieveResult a, Retriever::Retrieve(*bank, query, approximate));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(
        const RetrieveResult b,
        Retriever::Retrieve(*loaded, query, approximate));
    EXPECT_TRUE(b.approximate || b.fell_back);
    EXPECT_EQ(a.approximate, b.approximate);
    EXPECT_EQ(a.nearest_id, b.nearest_id);
    EXPECT_EQ(a.index_queries, b.index_queries);
  }

  // A write after the save makes it stale: the index is rebuilt instead.
  ASSERT_THAT(bank->Add({0}, GaussianPatterns(rng, 1, kDim)), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(loaded, MemoryBank::Load("b", options, env));
  EXPECT_EQ(loaded->index_pending(), loaded->size());

  // Saved again, then damaged: ignored.
  while (bank->RefreshIndex(1000) > 0) {
  }
  ASSERT_THAT(bank->PersistIndex(), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(loaded, MemoryBank::Load("b", options, env));
  EXPECT_EQ(loaded->index_pending(), 0u);
  {
    std::fstream file(SavedIndexPath(),
                      std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(200);
    file.put('\x5a');
  }
  HOPFIELD_ASSERT_OK_AND_ASSIGN(loaded, MemoryBank::Load("b", options, env));
  EXPECT_EQ(loaded->index_pending(), loaded->size());
}

TEST_F(BankIndexPersistenceTest, TombstonesOwedByRemovalsAreSavedWithIt) {
  ASSERT_NO_FATAL_FAILURE(CreateBank(4));
  MemoryBank* bank = bank_.get();
  while (bank->RefreshIndex(1000) > 0) {
  }
  // Removed after the index caught up: their tombstones are still owed
  // (the refresher has not run), and the save applies them.
  ASSERT_THAT(bank->Remove({5, 77, 123}), IsOkAndHolds(3u));
  ASSERT_EQ(bank->index_deletions_pending(), 3u);
  ASSERT_THAT(bank->PersistIndex(), IsOk());
  EXPECT_EQ(bank->index_deletions_pending(), 0u);
  EXPECT_TRUE(std::filesystem::exists(SavedIndexPath()));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> loaded,
                                MemoryBank::Load("b", options_, env_));
  EXPECT_EQ(loaded->index_pending(), 0u);  // taken back, not rebuilt
  EXPECT_EQ(loaded->index_size(), 297u);
}

TEST_F(BankPersistenceTest, AStaleSnapshotIsRecomputedNotTrusted) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  ASSERT_THAT(bank->PersistSeparation(), IsOk());
  // Writes after the snapshot: the snapshot no longer describes the bank.
  ASSERT_THAT(bank->Add({0, 0, 0}, GaussianPatterns(rng_, 3, kDim)), IsOk());
  ASSERT_THAT(bank->Remove({4}), IsOkAndHolds(1u));
  std::unique_ptr<MemoryBank> loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  // Synchronous banks recompute exactly: the same statistics.
  const BankStats before = bank->Stats();
  const BankStats after = loaded->Stats();
  ASSERT_TRUE(after.min_separation.has_value());
  EXPECT_NEAR(*after.min_separation, *before.min_separation, 1e-6);
  EXPECT_NEAR(after.effective_beta, before.effective_beta,
              1e-5 * before.effective_beta);
  EXPECT_EQ(after.separation_pending, 0u);
}

TEST_F(BankPersistenceTest, DeferredBankLoadsPendingWithoutASnapshot) {
  BankEnvironment env = Env();
  env.separation_update = SeparationUpdate::kDeferred;
  int woken = 0;
  env.on_pending = [&woken] { ++woken; };
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), env));
  Write(*bank);
  while (bank->RefreshSeparation(1000) > 0) {
  }
  woken = 0;
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> loaded,
                                MemoryBank::Load("b", Options(), env));
  EXPECT_EQ(loaded->separation_pending(), loaded->size());
  EXPECT_GT(woken, 0);  // the refresher is told
  while (loaded->RefreshSeparation(1000) > 0) {
  }
  EXPECT_NEAR(*loaded->Stats().min_separation, *bank->Stats().min_separation,
              1e-6);
  // With a current snapshot, the statistics come back as they were.
  ASSERT_THAT(bank->PersistSeparation(), IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(loaded, MemoryBank::Load("b", Options(), env));
  ExpectSameImage(Image(*bank), Image(*loaded));
}

TEST_F(BankPersistenceTest, LearnedFeatureMapAndItsKeysSurvive) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<const FeatureMap> map,
      FeatureMap::Create(Eigen::VectorXf::Random(kDim),
                         Eigen::MatrixXf::Random(8, kDim), 2, {}));
  ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
  ASSERT_THAT(bank->Add({0}, GaussianPatterns(rng_, 1, kDim)), IsOk());
  ASSERT_THAT(bank->PersistSeparation(), IsOk());
  std::unique_ptr<MemoryBank> loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(loaded->feature_map()->version(), 2u);
  EXPECT_EQ(loaded->feature_map()->weights(), map->weights());
  ExpectSameImage(Image(*bank), Image(*loaded));
  ExpectSameAnswers(*bank, *loaded, rng_);
  // Back to the identity: the stored map is deleted.
  ASSERT_THAT(bank->SetFeatureMap(FeatureMap::Identity(kDim)), IsOk());
  loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  EXPECT_TRUE(loaded->feature_map()->is_identity());
}

TEST(BankKeysTest, LearnedKeysAreTheSameWhateverTheBatchShape) {
  // Keys computed one pattern at a time, in a batch, by a feature-map
  // change and by a load must agree bit for bit (the same answers after a
  // restart).
  constexpr uint32_t kWide = 200;
  auto storage = std::make_shared<InMemoryStorage>();
  BankEnvironment env;
  env.storage = storage;
  env.incarnation = 5;
  BankOptions options;
  options.dim = kWide;
  std::mt19937 rng(23);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("k", options, env));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<const FeatureMap> map,
      FeatureMap::Create(Eigen::VectorXf::Random(kWide),
                         Eigen::MatrixXf::Random(64, kWide), 1, {}));
  const std::vector<float> values = GaussianPatterns(rng, 40, kWide);
  // Half before the map (keys computed by SetFeatureMap), half after: one
  // at a time, then the rest in one batch.
  ASSERT_THAT(bank->Add(std::vector<PatternId>(20, 0),
                        absl::MakeConstSpan(values).first(size_t{20} * kWide)),
              IsOk());
  ASSERT_THAT(bank->SetFeatureMap(map), IsOk());
  for (size_t i = 20; i < 25; ++i) {
    ASSERT_THAT(
        bank->Add({0}, absl::MakeConstSpan(values).subspan(i * kWide, kWide)),
        IsOk());
  }
  ASSERT_THAT(
      bank->Add(std::vector<PatternId>(15, 0),
                absl::MakeConstSpan(values).subspan(size_t{25} * kWide)),
      IsOk());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> loaded,
                                MemoryBank::Load("k", options, env));
  const BankImage a = Image(*bank);
  const BankImage b = Image(*loaded);
  ASSERT_EQ(a.keys.size(), b.keys.size());
  for (size_t i = 0; i < a.keys.size(); ++i) {
    ASSERT_EQ(absl::bit_cast<uint32_t>(a.keys[i]),
              absl::bit_cast<uint32_t>(b.keys[i]))
        << "key float " << i << ": " << a.keys[i] << " vs " << b.keys[i];
  }
}

TEST_F(BankPersistenceTest, AFailedLogWriteChangesNothing) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  const BankImage before = Image(*bank);
  storage_->FailWritesWith(absl::ResourceExhaustedError("disk full"));
  EXPECT_THAT(bank->Add({0, 3}, GaussianPatterns(rng_, 2, kDim)),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(bank->Remove({3, 4}), StatusIs(absl::StatusCode::kUnavailable));
  ExpectSameImage(before, Image(*bank));
  // What was acknowledged is all there.
  std::unique_ptr<MemoryBank> loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(Image(*loaded).ids, before.ids);
}

TEST_F(BankPersistenceTest, ACrashKeepsEveryAcknowledgedWrite) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  storage_->CrashAndLoseUnsynced();
  std::unique_ptr<MemoryBank> loaded = Reload();
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(Image(*loaded).patterns, Image(*bank).patterns);
  EXPECT_EQ(Image(*loaded).ids, Image(*bank).ids);
}

TEST_F(BankPersistenceTest, AClosedBankRefusesWrites) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  bank->Close();
  EXPECT_THAT(bank->Add({0}, GaussianPatterns(rng_, 1, kDim)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("deleted")));
  EXPECT_THAT(bank->Remove({3}), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(BankPersistenceTest, MissingColumnsAreDataLoss) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryBank> bank,
                                MemoryBank::Create("b", Options(), Env()));
  Write(*bank);
  StorageBatch lose_tail;
  lose_tail.Truncate(7, bank->size() - 2);
  ASSERT_THAT(storage_->Apply(lose_tail), IsOk());
  EXPECT_THAT(
      MemoryBank::Load("b", Options(), Env()),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bank \"b\": found")));
  storage_->CorruptColumns(7);
  EXPECT_THAT(MemoryBank::Load("b", Options(), Env()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));
}

class RegistryPersistenceTest : public ::testing::Test {
 protected:
  std::unique_ptr<BankRegistry> Open() {
    RegistryOptions options;
    options.storage = storage_;
    sink_ = std::make_shared<RecordingMetricsSink>();
    options.metrics = sink_;
    auto registry = std::make_unique<BankRegistry>(options);
    absl::StatusOr<LoadReport> report = registry->Load();
    EXPECT_THAT(report, IsOk());
    if (report.ok()) report_ = *std::move(report);
    return registry;
  }
  static BankOptions Options() {
    BankOptions options;
    options.dim = kDim;
    return options;
  }

  std::shared_ptr<InMemoryStorage> storage_ =
      std::make_shared<InMemoryStorage>();
  std::shared_ptr<RecordingMetricsSink> sink_;
  LoadReport report_;
  std::mt19937 rng_{7};
};

TEST_F(RegistryPersistenceTest, BanksComeBackAndIncarnationsAreNeverReused) {
  BankIncarnation first_a = 0;
  {
    std::unique_ptr<BankRegistry> registry = Open();
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto a, registry->Create("a", Options()));
    first_a = a->incarnation();
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto b, registry->Create("b", Options()));
    ASSERT_THAT(b->Add({0, 0, 0}, GaussianPatterns(rng_, 3, kDim)), IsOk());
    ASSERT_THAT(a->Add({0}, GaussianPatterns(rng_, 1, kDim)), IsOk());
    ASSERT_THAT(registry->Drop("a"), IsOk());
    // A write through a pointer taken before the deletion is refused.
    EXPECT_THAT(a->Add({0}, GaussianPatterns(rng_, 1, kDim)),
                StatusIs(absl::StatusCode::kNotFound));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(a, registry->Create("a", Options()));
    EXPECT_GT(a->incarnation(), b->incarnation());
  }
  std::unique_ptr<BankRegistry> registry = Open();
  EXPECT_EQ(report_.banks, 2u);
  EXPECT_EQ(report_.patterns, 3u);
  EXPECT_THAT(report_.failed, IsEmpty());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto a, registry->Get("a"));
  EXPECT_EQ(a->size(), 0u);  // the re-created bank, not the deleted one
  EXPECT_NE(a->incarnation(), first_a);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto b, registry->Get("b"));
  EXPECT_EQ(b->size(), 3u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto c, registry->Create("c", Options()));
  EXPECT_GT(c->incarnation(), a->incarnation());
  EXPECT_EQ(b->options().dim, kDim);
}

TEST_F(RegistryPersistenceTest, ADamagedBankIsKeptAsideAndTheOthersLoad) {
  BankIncarnation damaged = 0;
  {
    std::unique_ptr<BankRegistry> registry = Open();
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto a, registry->Create("a", Options()));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto b, registry->Create("b", Options()));
    ASSERT_THAT(a->Add({0, 0}, GaussianPatterns(rng_, 2, kDim)), IsOk());
    ASSERT_THAT(b->Add({0, 0}, GaussianPatterns(rng_, 2, kDim)), IsOk());
    damaged = b->incarnation();
  }
  storage_->CorruptColumns(damaged);
  std::unique_ptr<BankRegistry> registry = Open();
  EXPECT_EQ(report_.banks, 1u);
  ASSERT_THAT(report_.failed, SizeIs(1));
  EXPECT_EQ(report_.failed[0].first, "b");
  // The sink hears of each bank, loaded or not.
  const std::vector<RecordingMetricsSink::Loaded> loaded = sink_->loaded();
  ASSERT_THAT(loaded, SizeIs(2));
  EXPECT_EQ(loaded[0].bank, "a");
  EXPECT_EQ(loaded[0].patterns, 2u);
  EXPECT_THAT(loaded[0].status, IsOk());
  EXPECT_EQ(loaded[1].bank, "b");
  EXPECT_THAT(loaded[1].status, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(registry->Get("a"), IsOk());
  EXPECT_THAT(registry->Get("b"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bank \"b\"")));
  EXPECT_THAT(registry->List(), SizeIs(1));
  EXPECT_THAT(registry->Create("b", Options()),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // Deleting it is how an operator gives the name back.
  ASSERT_THAT(registry->Drop("b"), IsOk());
  EXPECT_THAT(registry->Get("b"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry->Create("b", Options()), IsOk());
}

TEST_F(RegistryPersistenceTest, ConcurrentWritesSnapshotsAndDeletion) {
  // Writers, a snapshotting thread and a deletion race; afterwards the
  // store holds exactly what the surviving bank acknowledged, and nothing
  // of the deleted one.
  RegistryOptions options;
  options.storage = storage_;
  options.separation_update = SeparationUpdate::kDeferred;
  options.refresh_quiet_period = std::chrono::milliseconds(1);
  std::map<PatternId, std::vector<float>> acknowledged;
  {
    BankRegistry registry(options);
    ASSERT_THAT(registry.Load(), IsOk());
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto kept,
                                  registry.Create("kept", Options()));
    HOPFIELD_ASSERT_OK_AND_ASSIGN(auto doomed,
                                  registry.Create("doomed", Options()));
    std::atomic<bool> stop{false};
    std::mutex acknowledged_mu;
    std::vector<std::thread> threads;
    threads.reserve(3);
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 rng(static_cast<uint32_t>(t));
        for (int i = 0; i < 60; ++i) {
          const std::vector<float> values = GaussianPatterns(rng, 4, kDim);
          const PatternId base = PatternId{1} +
                                 static_cast<PatternId>(t) * 1000 +
                                 static_cast<PatternId>(i) * 4;
          const std::vector<PatternId> ids = {base, base + 1, base + 2,
                                              base + 3};
          (void)doomed->Add(ids, values);  // NOT_FOUND once deleted
          if (!kept->Add(ids, values).ok()) continue;
          std::lock_guard<std::mutex> lock(acknowledged_mu);
          for (size_t k = 0; k < ids.size(); ++k) {
            const absl::Span<const float> row =
                absl::MakeConstSpan(values).subspan(k * kDim, kDim);
            acknowledged[ids[k]].assign(row.begin(), row.end());
          }
          if (i % 7 == 3) {
            const std::vector<PatternId> gone = {base + 1};
            if (kept->Remove(gone).ok()) acknowledged.erase(base + 1);
          }
        }
      });
    }
    threads.emplace_back([&] {
      while (!stop.load()) {
        (void)kept->PersistSeparation();
        (void)doomed->PersistSeparation();
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_THAT(registry.Drop("doomed"), IsOk());
    for (size_t t = 0; t < 2; ++t) threads[t].join();
    stop.store(true);
    threads[2].join();
  }
  std::unique_ptr<BankRegistry> registry = Open();
  EXPECT_EQ(report_.banks, 1u);
  EXPECT_THAT(registry->Get("doomed"), StatusIs(absl::StatusCode::kNotFound));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto kept, registry->Get("kept"));
  ASSERT_EQ(kept->size(), acknowledged.size());
  for (const auto& [id, values] : acknowledged) {
    HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<float> stored, kept->Get(id));
    ASSERT_EQ(stored, values) << id;
  }
}

TEST_F(RegistryPersistenceTest, AnInterruptedDeletionIsFinishedAtLoad) {
  // Both incarnations of "x" in the catalog: a crash between Drop's
  // registry change and its log record, after the name was re-created.
  StorageBatch batch;
  batch.PutBank(1, "x", EncodeBankOptions(Options()));
  batch.PutBank(2, "x", EncodeBankOptions(Options()));
  ASSERT_THAT(storage_->Apply(batch), IsOk());
  std::unique_ptr<BankRegistry> registry = Open();
  EXPECT_EQ(report_.superseded, 1u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(auto x, registry->Get("x"));
  EXPECT_EQ(x->incarnation(), 2u);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(std::vector<StoredBank> stored,
                                storage_->ListBanks());
  ASSERT_THAT(stored, SizeIs(1));
  EXPECT_EQ(stored[0].incarnation, 2u);
}

TEST_F(RegistryPersistenceTest, ACreateThatCannotBeLoggedCreatesNothing) {
  std::unique_ptr<BankRegistry> registry = Open();
  storage_->FailWritesWith(absl::UnavailableError("I/O error"));
  EXPECT_THAT(registry->Create("a", Options()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(registry->Get("a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry->List(), IsEmpty());
}

}  // namespace
}  // namespace hopfield
