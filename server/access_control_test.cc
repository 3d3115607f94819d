#include "server/access_control.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield::server {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kWriter = "writer-key-0123456789";
constexpr absl::string_view kReader = "reader-key-0123456789";

ApiKeys TwoKeys() {
  return ApiKeys::Parse(
             absl::StrCat("# comment\n\n", kWriter, " read-write\n\t", kReader,
                          "\tread-only  \n"),
             "keys")
      .value();
}

TEST(RequiredRightTest, HealthIsOpenWritesNeedWriteEverythingElseRead) {
  EXPECT_EQ(RequiredRight("/grpc.health.v1.Health/Check"), Right::kOpen);
  EXPECT_EQ(RequiredRight("/grpc.health.v1.Health/Watch"), Right::kOpen);
  for (const char* write : {"Store", "StoreStream", "Forget", "CreateBank",
                            "DeleteBank", "Train", "Backup"}) {
    EXPECT_EQ(RequiredRight(absl::StrCat("/hopfield.v1.MemoryService/", write)),
              Right::kWrite)
        << write;
  }
  for (const char* read :
       {"GetBank", "ListBanks", "GetPatterns", "Retrieve", "Ping"}) {
    EXPECT_EQ(RequiredRight(absl::StrCat("/hopfield.v1.MemoryService/", read)),
              Right::kRead)
        << read;
  }
  EXPECT_EQ(RequiredRight("/grpc.reflection.v1alpha.ServerReflection/"
                          "ServerReflectionInfo"),
            Right::kRead);
  // A look-alike service or a prefix trick needs a key like anything else.
  EXPECT_EQ(RequiredRight("/grpc.health.v1.Healthz/Check"), Right::kRead);
  EXPECT_EQ(RequiredRight("/other.MemoryService/Store"), Right::kRead);
  EXPECT_EQ(RequiredRight("/hopfield.v1.MemoryService/StoreX"), Right::kRead);
  EXPECT_EQ(RequiredRight(""), Right::kRead);
}

TEST(ApiKeysTest, ParsesRolesSkipsCommentsAndFindsKeys) {
  const ApiKeys keys = TwoKeys();
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.short_keys(), 0u);
  ASSERT_TRUE(keys.Find(kWriter).has_value());
  EXPECT_EQ(keys.Find(kWriter)->role, Role::kReadWrite);
  EXPECT_EQ(keys.Find(kWriter)->key_id, KeyId(kWriter));
  ASSERT_TRUE(keys.Find(kReader).has_value());
  EXPECT_EQ(keys.Find(kReader)->role, Role::kReadOnly);
  EXPECT_FALSE(keys.Find("writer-key-012345678").has_value());  // a prefix
  EXPECT_FALSE(keys.Find("writer-key-01234567890").has_value());
  EXPECT_FALSE(keys.Find("").has_value());
}

TEST(ApiKeysTest, KeyIdIsEightHexDigitsAndHidesTheKey) {
  const std::string id = KeyId(kWriter);
  EXPECT_EQ(id.size(), 8u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(id, KeyId(kReader));
  EXPECT_EQ(KeyId("abc"), "ba7816bf");  // SHA-256("abc") = ba7816bf...
}

TEST(ApiKeysTest, RefusesMalformedFilesNamingTheLine) {
  EXPECT_THAT(ApiKeys::Parse("k1 read-write\nk2\n", "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("f line 2"), HasSubstr("KEY ROLE"))));
  EXPECT_THAT(ApiKeys::Parse("k1 admin\n", "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("f line 1"), HasSubstr("role"))));
  // A swapped line: the message must not quote the key.
  EXPECT_THAT(
      ApiKeys::Parse("read-write s3cret-0123456789abcdef\n", "f").status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("KEY ROLE"), Not(HasSubstr("s3cret")))));
  EXPECT_THAT(ApiKeys::Parse("k1 read-write\nk1 read-only\n", "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2"), HasSubstr("twice"),
                             Not(HasSubstr("k1 ")))));
  EXPECT_THAT(
      ApiKeys::Parse("k\x01y read-write\n", "f").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("visible ASCII")));
  EXPECT_THAT(
      ApiKeys::Parse(std::string(4097, 'k') + " read-only", "f").status(),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      ApiKeys::Parse("# nothing\n\n", "f").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no keys")));
  std::string many;
  for (int i = 0; i <= 10000; ++i)
    absl::StrAppend(&many, "key", i, " read-only\n");
  EXPECT_THAT(ApiKeys::Parse(many, "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than 10000 keys")));
  EXPECT_THAT(ApiKeys::Load("/dev/zero").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a regular file")));
  EXPECT_THAT(ApiKeys::Load("/nonexistent/keys").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("/nonexistent/keys")));
}

TEST(ApiKeysTest, CountsShortKeys) {
  EXPECT_EQ(ApiKeys::Parse("short read-only\n", "f")->short_keys(), 1u);
}

TEST(BearerTokenTest, AcceptsTheBearerSchemeOnly) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer abc "), "abc");
  EXPECT_EQ(BearerToken("BEARER  abc"), "abc");
  EXPECT_FALSE(BearerToken("Basic abc").has_value());
  EXPECT_FALSE(BearerToken("Bearer ").has_value());
  EXPECT_FALSE(BearerToken("abc").has_value());
}

TEST(AccessControlTest, DecidesEveryCaseWithTheRightCode) {
  std::vector<std::pair<std::string, absl::StatusCode>> refusals;
  const AccessControl access(
      TwoKeys(), [&](absl::string_view method, absl::StatusCode code) {
        refusals.emplace_back(std::string(method), code);
      });
  const std::string writer = absl::StrCat("Bearer ", kWriter);
  const std::string reader = absl::StrCat("Bearer ", kReader);
  constexpr absl::string_view kStore = "/hopfield.v1.MemoryService/Store";
  constexpr absl::string_view kRetrieve = "/hopfield.v1.MemoryService/Retrieve";
  constexpr absl::string_view kHealth = "/grpc.health.v1.Health/Check";

  EXPECT_THAT(access.Check(kStore, writer), IsOk());
  EXPECT_EQ(*access.Check(kStore, writer), KeyId(kWriter));
  EXPECT_THAT(access.Check(kRetrieve, writer), IsOk());
  EXPECT_THAT(access.Check(kRetrieve, reader), IsOk());
  EXPECT_THAT(access.Check(kHealth, std::nullopt), IsOk());
  EXPECT_THAT(access.Check(kHealth, "Bearer wrong"), IsOk());
  EXPECT_TRUE(refusals.empty());

  EXPECT_THAT(access.Check(kRetrieve, std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("requires an API key")));
  EXPECT_THAT(
      access.Check(kRetrieve, "Bearer wrong"),
      StatusIs(absl::StatusCode::kUnauthenticated,
               AllOf(HasSubstr("invalid API key"), Not(HasSubstr("wrong")))));
  EXPECT_THAT(access.Check(kRetrieve, kWriter),  // no scheme
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(access.Check(kStore, reader),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("read-only"), HasSubstr(KeyId(kReader)),
                             Not(HasSubstr(std::string(kReader))))));
  ASSERT_EQ(refusals.size(), 4u);
  EXPECT_EQ(refusals[0].first, kRetrieve);
  EXPECT_EQ(refusals[0].second, absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(refusals[3].first, kStore);
  EXPECT_EQ(refusals[3].second, absl::StatusCode::kPermissionDenied);
}

TEST(AccessControlTest, ReplaceTakesEffectForLaterCalls) {
  AccessControl access(TwoKeys());
  const std::string writer = absl::StrCat("Bearer ", kWriter);
  ASSERT_THAT(access.Check("/hopfield.v1.MemoryService/Store", writer), IsOk());
  access.Replace(ApiKeys::Parse("new-key-0123456789 read-only", "f").value());
  EXPECT_EQ(access.size(), 1u);
  EXPECT_THAT(access.Check("/hopfield.v1.MemoryService/Store", writer),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(access.Check("/hopfield.v1.MemoryService/Retrieve",
                           "Bearer new-key-0123456789"),
              IsOk());
}

}  // namespace
}  // namespace hopfield::server
