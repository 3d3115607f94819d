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

TEST(InMemoryStorageTest, InjectedFailuresRefuseWritesUntilCleared) {
  InMemoryStorage storage;
  storage.FailWritesWith(absl::ResourceExhaustedError("disk full"));
  EXPECT_THAT(storage.Apply(Blob("x")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(storage.ReadBlob(1, BlobKind::kSeparation)->has_value());
  storage.FailWritesWith(absl::OkStatus());
  EXPECT_THAT(storage.Apply(Blob("x")), IsOk());
}

}  // namespace
}  // namespace hopfield::testing
