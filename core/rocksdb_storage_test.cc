// The Storage contract (storage.h), checked on RocksDbStorage and on the
// InMemoryStorage fake alike; then what only files can show: reopening,
// damaged records, group commit, checkpoints, an unusable directory.
#include "core/rocksdb_storage.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/storage.h"
#include "core/testing/in_memory_storage.h"
#include "core/testing/recording_metrics_sink.h"
#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A fresh directory under the test's temporary directory.
std::string NewDir(const std::string& name) {
  static std::atomic<int> counter{0};
  std::string dir = absl::StrCat(::testing::TempDir(), "/storage_", name, "_",
                                 getpid(), "_", counter++);
  std::filesystem::remove_all(dir);
  return dir;
}

struct Column {
  uint64_t column;
  uint64_t id;
  std::vector<float> values;
  bool operator==(const Column& o) const {
    return column == o.column && id == o.id && values == o.values;
  }
};

std::vector<Column> Columns(const Storage& storage, BankIncarnation bank) {
  std::vector<Column> out;
  EXPECT_THAT(
      storage.ReadColumns(
          bank,
          [&](uint64_t column, uint64_t id, absl::Span<const float> values) {
            out.push_back(Column{column, id, {values.begin(), values.end()}});
            return absl::OkStatus();
          }),
      IsOk());
  return out;
}

// Applies and waits.
void Write(Storage& storage, const StorageBatch& batch) {
  auto ticket = storage.Apply(batch);
  ASSERT_THAT(ticket, IsOk());
  ASSERT_THAT(storage.WaitDurable(*ticket), IsOk());
}

class StorageContractTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      auto opened = RocksDbStorage::Open(NewDir("contract"));
      ASSERT_THAT(opened, IsOk());
      storage_ = *std::move(opened);
    } else {
      storage_ = std::make_unique<testing::InMemoryStorage>();
    }
  }
  std::unique_ptr<Storage> storage_;
};

TEST_P(StorageContractTest, ANewStoreIsEmpty) {
  auto banks = storage_->ListBanks();
  ASSERT_THAT(banks, IsOk());
  EXPECT_TRUE(banks->empty());
  EXPECT_THAT(storage_->LastIncarnation(), IsOk());
  EXPECT_EQ(*storage_->LastIncarnation(), 0u);
  EXPECT_TRUE(Columns(*storage_, 1).empty());
}

TEST_P(StorageContractTest, BanksColumnsAndBlobsRoundTrip) {
  StorageBatch batch;
  batch.PutBank(3, "faces", "config-3");
  batch.PutColumn(3, 0, 17, std::vector<float>{1.5f, -2.0f});
  batch.PutColumn(3, 1, 18, std::vector<float>{0.25f, 4.0f});
  batch.PutBlob(3, BlobKind::kFeatureMap, std::string("map\0bytes", 9));
  Write(*storage_, batch);

  auto banks = storage_->ListBanks();
  ASSERT_THAT(banks, IsOk());
  ASSERT_EQ(banks->size(), 1u);
  EXPECT_EQ((*banks)[0].incarnation, 3u);
  EXPECT_EQ((*banks)[0].name, "faces");
  EXPECT_EQ((*banks)[0].config, "config-3");
  EXPECT_THAT((*banks)[0].status, IsOk());
  EXPECT_EQ(*storage_->LastIncarnation(), 3u);
  EXPECT_THAT(Columns(*storage_, 3), ElementsAre(Column{0, 17, {1.5f, -2.0f}},
                                                 Column{1, 18, {0.25f, 4.0f}}));
  auto blob = storage_->ReadBlob(3, BlobKind::kFeatureMap);
  ASSERT_THAT(blob, IsOk());
  ASSERT_TRUE(blob->has_value());
  EXPECT_EQ(**blob, std::string("map\0bytes", 9));
  auto missing = storage_->ReadBlob(3, BlobKind::kSeparation);
  ASSERT_THAT(missing, IsOk());
  EXPECT_FALSE(missing->has_value());
}

// A Forget in a bank of 3 removes column 0: the last column moves into the
// hole and the last is dropped, as the bank's matrix does.
TEST_P(StorageContractTest, MovesAndTruncationMirrorTheBanksLayout) {
  StorageBatch load;
  load.PutBank(1, "b", "");
  for (uint64_t c = 0; c < 3; ++c) {
    load.PutColumn(1, c, 100 + c, std::vector<float>{static_cast<float>(c)});
  }
  Write(*storage_, load);
  StorageBatch forget;
  forget.PutColumn(1, 0, 102, std::vector<float>{2.0f});
  forget.Truncate(1, 2);
  Write(*storage_, forget);
  EXPECT_THAT(Columns(*storage_, 1),
              ElementsAre(Column{0, 102, {2.0f}}, Column{1, 101, {1.0f}}));
}

TEST_P(StorageContractTest, DeletingABankLeavesTheOthersAndItsNumber) {
  StorageBatch batch;
  batch.PutBank(1, "a", "");
  batch.PutColumn(1, 0, 1, std::vector<float>{1.0f});
  batch.PutBlob(1, BlobKind::kSeparation, "s");
  batch.PutBank(2, "b", "");
  batch.PutColumn(2, 0, 1, std::vector<float>{2.0f});
  Write(*storage_, batch);
  StorageBatch drop;
  drop.DeleteBank(2);
  Write(*storage_, drop);

  auto banks = storage_->ListBanks();
  ASSERT_THAT(banks, IsOk());
  ASSERT_EQ(banks->size(), 1u);
  EXPECT_EQ((*banks)[0].name, "a");
  EXPECT_TRUE(Columns(*storage_, 2).empty());
  EXPECT_THAT(Columns(*storage_, 1), ElementsAre(Column{0, 1, {1.0f}}));
  EXPECT_TRUE(storage_->ReadBlob(1, BlobKind::kSeparation)->has_value());
  // The deleted bank's number is never given out again.
  EXPECT_EQ(*storage_->LastIncarnation(), 2u);
}

// A bank re-created under the same name is a new incarnation: writes aimed
// at the old one land nowhere visible.
TEST_P(StorageContractTest, IncarnationsOfOneNameAreApart) {
  StorageBatch first;
  first.PutBank(1, "same", "");
  first.PutColumn(1, 0, 5, std::vector<float>{1.0f});
  Write(*storage_, first);
  StorageBatch recreate;
  recreate.DeleteBank(1);
  recreate.PutBank(2, "same", "");
  Write(*storage_, recreate);
  StorageBatch late;  // a Store that looked the old bank up
  late.PutColumn(1, 1, 6, std::vector<float>{9.0f});
  Write(*storage_, late);
  EXPECT_TRUE(Columns(*storage_, 2).empty());
  auto banks = storage_->ListBanks();
  ASSERT_EQ(banks->size(), 1u);
  EXPECT_EQ((*banks)[0].incarnation, 2u);
}

TEST_P(StorageContractTest, AGapInTheColumnsIsDataLoss) {
  StorageBatch batch;
  batch.PutBank(1, "gap", "");
  batch.PutColumn(1, 0, 1, std::vector<float>{1.0f});
  batch.PutColumn(1, 2, 3, std::vector<float>{3.0f});
  Write(*storage_, batch);
  EXPECT_THAT(storage_->ReadColumns(
                  1, [](uint64_t, uint64_t,
                        absl::Span<const float>) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("column 1")));
}

TEST_P(StorageContractTest, AVisitorsErrorStopsTheWalk) {
  StorageBatch batch;
  batch.PutBank(1, "v", "");
  for (uint64_t c = 0; c < 4; ++c) {
    batch.PutColumn(1, c, c + 1, std::vector<float>{0.0f});
  }
  Write(*storage_, batch);
  int visited = 0;
  EXPECT_THAT(storage_->ReadColumns(
                  1,
                  [&](uint64_t, uint64_t, absl::Span<const float>) {
                    return ++visited == 2 ? absl::CancelledError("stop")
                                          : absl::OkStatus();
                  }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(visited, 2);
}

// An empty batch is a barrier: its ticket covers the batches before it.
TEST_P(StorageContractTest, AnEmptyBatchIsABarrier) {
  StorageBatch batch;
  batch.PutBank(1, "b", "");
  auto applied = storage_->Apply(batch);
  ASSERT_THAT(applied, IsOk());
  auto barrier = storage_->Apply(StorageBatch());
  ASSERT_THAT(barrier, IsOk());
  EXPECT_GE(*barrier, *applied);
  EXPECT_THAT(storage_->WaitDurable(*barrier), IsOk());
}

TEST_P(StorageContractTest, ReservedIncarnationsAreRefused) {
  for (const BankIncarnation reserved :
       {BankIncarnation{0}, ~BankIncarnation{0}}) {
    StorageBatch batch;
    batch.PutBank(reserved, "reserved", "");
    EXPECT_THAT(storage_->Apply(batch),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  // Refused, not failed: the store still writes.
  StorageBatch fine;
  fine.PutBank(1, "fine", "");
  EXPECT_THAT(storage_->Apply(fine), IsOk());
}

// Deleting or truncating a bank between two others leaves both whole.
TEST_P(StorageContractTest, RangeDeletionsStopAtTheNextBank) {
  StorageBatch batch;
  for (BankIncarnation b = 1; b <= 3; ++b) {
    batch.PutBank(b, absl::StrCat("bank", b), "");
    for (uint64_t c = 0; c < 3; ++c) {
      batch.PutColumn(b, c, c + 1, std::vector<float>{static_cast<float>(b)});
    }
    batch.PutBlob(b, BlobKind::kFeatureMap, absl::StrCat("map", b));
    batch.PutBlob(b, BlobKind::kSeparation, absl::StrCat("sep", b));
  }
  Write(*storage_, batch);
  StorageBatch change;
  change.DeleteBank(2);
  change.Truncate(1, 1);
  Write(*storage_, change);
  EXPECT_EQ(Columns(*storage_, 1).size(), 1u);
  EXPECT_TRUE(Columns(*storage_, 2).empty());
  EXPECT_FALSE(storage_->ReadBlob(2, BlobKind::kFeatureMap)->has_value());
  EXPECT_FALSE(storage_->ReadBlob(2, BlobKind::kSeparation)->has_value());
  EXPECT_EQ(Columns(*storage_, 3).size(), 3u);
  EXPECT_EQ(**storage_->ReadBlob(1, BlobKind::kSeparation), "sep1");
  EXPECT_EQ(**storage_->ReadBlob(3, BlobKind::kFeatureMap), "map3");
  EXPECT_EQ(storage_->ListBanks()->size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Stores, StorageContractTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& store) {
                           return store.param ? "RocksDb" : "InMemory";
                         });

TEST(RocksDbStorageTest, EverythingSurvivesAReopen) {
  const std::string dir = NewDir("reopen");
  {
    auto storage = RocksDbStorage::Open(dir);
    ASSERT_THAT(storage, IsOk());
    StorageBatch batch;
    batch.PutBank(7, "kept", "cfg");
    batch.PutColumn(7, 0, 70, std::vector<float>{0.1f, 0.2f, 0.3f});
    batch.PutBlob(7, BlobKind::kFeatureMap, "phi");
    Write(**storage, batch);
  }
  auto storage = RocksDbStorage::Open(dir);
  ASSERT_THAT(storage, IsOk());
  auto banks = (*storage)->ListBanks();
  ASSERT_THAT(banks, IsOk());
  ASSERT_EQ(banks->size(), 1u);
  EXPECT_EQ((*banks)[0].name, "kept");
  EXPECT_EQ(*(*storage)->LastIncarnation(), 7u);
  EXPECT_THAT(Columns(**storage, 7),
              ElementsAre(Column{0, 70, {0.1f, 0.2f, 0.3f}}));
  EXPECT_EQ(*(*storage)->ReadBlob(7, BlobKind::kFeatureMap).value(), "phi");
}

// A copy of the directory taken while the store is open, as a crash of the
// process would leave it (the log not flushed into table files).
std::string CrashImage(const std::string& dir) {
  std::string image = NewDir("image");
  std::filesystem::copy(dir, image, std::filesystem::copy_options::recursive);
  return image;
}

// Several threads apply and wait at once: every batch is in a crash image
// taken after the waits returned, and the waiters shared syncs.
TEST(RocksDbStorageTest, ConcurrentWaitersShareSyncs) {
  const std::string dir = NewDir("group");
  // The sink is told of each sync while it runs (before waiters are woken):
  // sleeping there makes every sync take 2 ms, as on a slow disk, so the
  // writers that arrive meanwhile must share the next one (on a fast disk
  // eight threads may never overlap a sync).
  class SlowDiskSink final : public MetricsSink {
   public:
    void OnRefresh(absl::string_view /*bank*/, RefreshKind /*kind*/,
                   uint64_t /*patterns*/, absl::Duration /*took*/) override {}
    void OnBankLoaded(absl::string_view /*bank*/, uint64_t /*patterns*/,
                      absl::Duration /*took*/,
                      const absl::Status& /*status*/) override {}
    void OnStorageSync(absl::Duration took, bool ok) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      recorded_.OnStorageSync(took, ok);
    }
    std::vector<testing::RecordingMetricsSink::Sync> syncs() const {
      return recorded_.syncs();
    }

   private:
    testing::RecordingMetricsSink recorded_;
  };
  RocksDbStorageOptions options;
  auto sink = std::make_shared<SlowDiskSink>();
  options.metrics = sink;
  auto storage = RocksDbStorage::Open(dir, options);
  ASSERT_THAT(storage, IsOk());
  constexpr int kThreads = 8;
  constexpr int kWrites = 50;
  StorageBatch create;
  for (int t = 0; t < kThreads; ++t) {
    create.PutBank(static_cast<BankIncarnation>(t) + 1, absl::StrCat("g", t),
                   "");
  }
  Write(**storage, create);
  const uint64_t syncs_before = (*storage)->syncs();
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int w = 0; w < kWrites; ++w) {
        StorageBatch batch;
        batch.PutColumn(static_cast<BankIncarnation>(t) + 1,
                        static_cast<uint64_t>(w), static_cast<uint64_t>(w) + 1,
                        std::vector<float>{static_cast<float>(t * 1000 + w)});
        auto ticket = (*storage)->Apply(batch);
        if (!ticket.ok() || !(*storage)->WaitDurable(*ticket).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t syncs = (*storage)->syncs() - syncs_before;
  EXPECT_LT(syncs, static_cast<uint64_t>(kThreads * kWrites));
  // The sink heard of every sync, each successful.
  const std::vector<testing::RecordingMetricsSink::Sync> heard = sink->syncs();
  EXPECT_EQ(heard.size(), (*storage)->syncs());
  for (const auto& sync : heard) {
    EXPECT_TRUE(sync.ok);
    EXPECT_GE(sync.took, absl::ZeroDuration());
  }
  std::printf("%d durable writes on %d threads took %llu syncs\n",
              kThreads * kWrites, kThreads,
              static_cast<unsigned long long>(syncs));

  auto recovered = RocksDbStorage::Open(CrashImage(dir));
  ASSERT_THAT(recovered, IsOk());
  for (int t = 0; t < kThreads; ++t) {
    const std::vector<Column> columns =
        Columns(**recovered, static_cast<BankIncarnation>(t) + 1);
    ASSERT_EQ(columns.size(), static_cast<size_t>(kWrites)) << "bank " << t;
    EXPECT_EQ(columns.back().values[0],
              static_cast<float>(t * 1000 + kWrites - 1));
  }
}

// A crash that tore the log's last record (a batch applied but never
// waited for): the store opens with every batch before it.
TEST(RocksDbStorageTest, ATornLastLogRecordIsDropped) {
  const std::string dir = NewDir("torn");
  auto storage = RocksDbStorage::Open(dir);
  ASSERT_THAT(storage, IsOk());
  StorageBatch acknowledged;
  acknowledged.PutBank(1, "t", "");
  acknowledged.PutColumn(1, 0, 1, std::vector<float>(32, 1.0f));
  Write(**storage, acknowledged);
  StorageBatch unacknowledged;
  unacknowledged.PutColumn(1, 1, 2, std::vector<float>(32, 2.0f));
  ASSERT_THAT((*storage)->Apply(unacknowledged), IsOk());
  const std::string image = CrashImage(dir);
  std::filesystem::path newest_log;
  for (const auto& entry : std::filesystem::directory_iterator(image)) {
    if (entry.path().extension() == ".log" &&
        (newest_log.empty() ||
         entry.path().filename().string() > newest_log.filename().string())) {
      newest_log = entry.path();
    }
  }
  ASSERT_FALSE(newest_log.empty());
  const auto size = std::filesystem::file_size(newest_log);
  ASSERT_GT(size, 40u);
  std::filesystem::resize_file(newest_log, size - 40);

  auto recovered = RocksDbStorage::Open(image);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(Columns(**recovered, 1),
              ElementsAre(Column{0, 1, std::vector<float>(32, 1.0f)}));
}

// Records written to an incarnation after its deletion are dropped when
// the store opens.
TEST(RocksDbStorageTest, OrphanRecordsAreDroppedAtOpen) {
  const std::string dir = NewDir("orphan");
  {
    auto storage = RocksDbStorage::Open(dir);
    ASSERT_THAT(storage, IsOk());
    StorageBatch create;
    create.PutBank(1, "gone", "");
    create.PutBank(2, "kept", "");
    create.PutColumn(2, 0, 1, std::vector<float>{2.0f});
    Write(**storage, create);
    StorageBatch drop;
    drop.DeleteBank(1);
    Write(**storage, drop);
    StorageBatch late;
    late.PutColumn(1, 0, 9, std::vector<float>{9.0f});
    late.PutBlob(1, BlobKind::kFeatureMap, "late");
    Write(**storage, late);
    ASSERT_EQ(Columns(**storage, 1).size(), 1u);  // there until reopened
  }
  auto storage = RocksDbStorage::Open(dir);
  ASSERT_THAT(storage, IsOk());
  EXPECT_TRUE(Columns(**storage, 1).empty());
  EXPECT_FALSE((*storage)->ReadBlob(1, BlobKind::kFeatureMap)->has_value());
  EXPECT_THAT(Columns(**storage, 2), ElementsAre(Column{0, 1, {2.0f}}));
}

// Bytes flipped inside one bank's stored records: that bank's read is
// DATA_LOSS naming it; the catalog and the other bank read whole.
TEST(RocksDbStorageTest, ADamagedRecordIsDataLossForItsBankOnly) {
  const std::string dir = NewDir("damage");
  // Large records, so that each bank's sit in their own data blocks; bank
  // 1's values are a recognisable float.
  constexpr size_t kValues = 4096;
  {
    auto storage = RocksDbStorage::Open(dir);
    ASSERT_THAT(storage, IsOk());
    StorageBatch batch;
    batch.PutBank(1, "damaged", "");
    batch.PutBank(2, "intact", "");
    for (uint64_t c = 0; c < 3; ++c) {
      batch.PutColumn(1, c, c + 1, std::vector<float>(kValues, 1234.5f));
      batch.PutColumn(2, c, c + 1, std::vector<float>(kValues, -7.25f));
    }
    Write(**storage, batch);
  }  // closing flushes the records into an SST file
  // Flip one byte in the middle of bank 1's values.
  bool flipped = false;
  const float marker = 1234.5f;
  std::string needle(sizeof(float) * 16, '\0');
  for (size_t i = 0; i < 16; ++i) {
    std::memcpy(&needle[i * sizeof(float)], &marker, sizeof(float));
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".sst") continue;
    std::fstream file(entry.path(),
                      std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)),
                      std::istreambuf_iterator<char>());
    // Bank 1's first column (whose block would hold the catalog, were it
    // not a family of its own) and its last (beside bank 2's first).
    for (const size_t at : {bytes.find(needle), bytes.rfind(needle)}) {
      if (at == std::string::npos) continue;
      file.seekp(static_cast<std::streamoff>(at + needle.size() / 2));
      file.put(static_cast<char>(bytes[at + needle.size() / 2] ^ 0x5a));
      flipped = true;
    }
  }
  ASSERT_TRUE(flipped) << "no SST file holds bank 1's values";

  auto storage = RocksDbStorage::Open(dir);
  ASSERT_THAT(storage, IsOk());
  auto banks = (*storage)->ListBanks();
  ASSERT_THAT(banks, IsOk());
  EXPECT_EQ(banks->size(), 2u);
  EXPECT_THAT(
      (*storage)->ReadColumns(1,
                              [](uint64_t, uint64_t, absl::Span<const float>) {
                                return absl::OkStatus();
                              }),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("incarnation 1")));
  const std::vector<Column> intact = Columns(**storage, 2);
  ASSERT_EQ(intact.size(), 3u);
  EXPECT_EQ(intact[2].values, std::vector<float>(kValues, -7.25f));
}

TEST(RocksDbStorageTest, ACheckpointIsACompleteStore) {
  const std::string dir = NewDir("live");
  const std::string backup = NewDir("backup");
  auto storage = RocksDbStorage::Open(dir);
  ASSERT_THAT(storage, IsOk());
  StorageBatch batch;
  batch.PutBank(4, "snap", "c");
  batch.PutColumn(4, 0, 40, std::vector<float>{4.0f});
  Write(**storage, batch);
  ASSERT_THAT((*storage)->Checkpoint(backup), IsOk());
  EXPECT_THAT((*storage)->Checkpoint(backup),
              StatusIs(absl::StatusCode::kAlreadyExists));
  StorageBatch after;  // not in the backup
  after.PutColumn(4, 1, 41, std::vector<float>{5.0f});
  Write(**storage, after);

  auto restored = RocksDbStorage::Open(backup);
  ASSERT_THAT(restored, IsOk());
  EXPECT_THAT(Columns(**restored, 4), ElementsAre(Column{0, 40, {4.0f}}));
  EXPECT_EQ((*(*restored)->ListBanks())[0].name, "snap");
}

// Side files (saved indexes) live and die with their banks, and travel in
// checkpoints.
TEST(RocksDbStorageTest, SideFilesFollowTheirBanks) {
  const std::string dir = NewDir("side");
  const std::string backup = NewDir("side_backup");
  auto touch = [](const std::string& path) {
    std::ofstream(path) << "graph";
    return std::filesystem::exists(path);
  };
  {
    auto storage = RocksDbStorage::Open(dir);
    ASSERT_THAT(storage, IsOk());
    const std::string side = (*storage)->SideFileDirectory();
    EXPECT_EQ(side, dir + "/indexes");
    StorageBatch batch;
    batch.PutBank(1, "kept", "c");
    batch.PutBank(2, "dropped", "c");
    Write(**storage, batch);
    ASSERT_TRUE(touch(side + "/1.hnsw"));
    ASSERT_TRUE(touch(side + "/1.meta"));
    ASSERT_TRUE(touch(side + "/2.hnsw"));
    ASSERT_TRUE(touch(side + "/7.hnsw"));  // no such bank
    ASSERT_TRUE(touch(side + "/junk"));
    StorageBatch drop;
    drop.DeleteBank(2);
    Write(**storage, drop);
    EXPECT_FALSE(std::filesystem::exists(side + "/2.hnsw"));
    EXPECT_TRUE(std::filesystem::exists(side + "/1.hnsw"));
    ASSERT_THAT((*storage)->Checkpoint(backup), IsOk());
  }
  EXPECT_TRUE(std::filesystem::exists(backup + "/indexes/1.hnsw"));
  EXPECT_TRUE(std::filesystem::exists(backup + "/indexes/1.meta"));
  auto reopened = RocksDbStorage::Open(dir);
  ASSERT_THAT(reopened, IsOk());
  EXPECT_TRUE(std::filesystem::exists(dir + "/indexes/1.hnsw"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/indexes/7.hnsw"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/indexes/junk"));
}

TEST(RocksDbStorageTest, AStoreInUseCannotBeOpenedTwice) {
  const std::string dir = NewDir("locked");
  auto first = RocksDbStorage::Open(dir);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(RocksDbStorage::Open(dir),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(dir)));
}

TEST(RocksDbStorageTest, AnUnusableDirectoryIsUnavailable) {
  const std::string file = NewDir("file");
  std::ofstream(file) << "not a directory";
  EXPECT_THAT(RocksDbStorage::Open(file + "/store"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(file)));
}

}  // namespace
}  // namespace hopfield
