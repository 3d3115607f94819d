// The fake's own powers: losing unsynced batches in a "crash", failing
// writes on demand. (Its Storage contract is checked beside RocksDB's in
// core/rocksdb_storage_test.cc.)
#include "core/testing/in_memory_storage.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield::testing {
namespace {

using ::testing::HasSubstr;

StorageBatch Blob(const char* bytes) {
  StorageBatch batch;
  batch.PutBlob(1, BlobKind::kSeparation, bytes);
  return batch;
}

TEST(InMemoryStorageTest, ACrashLosesWhatNoWaitCovered) {
  InMemoryStorage storage;
  auto first = storage.Apply(Blob("synced"));
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(storage.WaitDurable(*first), IsOk());
  ASSERT_THAT(storage.Apply(Blob("unsynced")), IsOk());
  EXPECT_EQ(**storage.ReadBlob(1, BlobKind::kSeparation), "unsynced");
  storage.CrashAndLoseUnsynced();
  EXPECT_EQ(**storage.ReadBlob(1, BlobKind::kSeparation), "synced");
}

TEST(InMemoryStorageTest, AnInjectedFailureRefusesEveryLaterWrite) {
  InMemoryStorage storage;
  storage.FailWritesWith(absl::ResourceExhaustedError("disk full"));
  EXPECT_THAT(storage.Apply(Blob("x")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(storage.ReadBlob(1, BlobKind::kSeparation)->has_value());
  EXPECT_THAT(storage.Apply(Blob("y")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk full")));
  EXPECT_THAT(storage.WaitDurable(1), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(InMemoryStorageTest, TicketsNeverRepeatAcrossACrash) {
  InMemoryStorage storage;
  auto first = storage.Apply(Blob("a"));
  ASSERT_THAT(storage.WaitDurable(*first), IsOk());
  auto lost = storage.Apply(Blob("b"));
  storage.CrashAndLoseUnsynced();
  auto next = storage.Apply(Blob("c"));
  ASSERT_THAT(next, IsOk());
  EXPECT_GT(*next, *lost);
}

}  // namespace
}  // namespace hopfield::testing
