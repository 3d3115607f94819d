#include "client/pattern_files.h"

#include <sys/resource.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield::client {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/hopfield_pf_" + name;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string IdxBytes() {
  // magic 0x00000803 (ubyte, 3 dims), shape 2 x 1 x 2, pixels.
  const std::array<unsigned char, 20> bytes = {
      0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255, 51, 102};
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

TEST(PatternFilesTest, ReadsPlainAndGzipIdx) {
  const std::string plain = TempPath("a.idx");
  WriteBytes(plain, IdxBytes());
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix m, ReadPatternFile(plain));
  EXPECT_EQ(m.rows, 2u);
  EXPECT_EQ(m.cols, 2u);
  EXPECT_THAT(m.values, ElementsAre(0.0f, 1.0f, 0.2f, 0.4f));
  const std::string gz = TempPath("a.idx.gz");
  gzFile file = gzopen(gz.c_str(), "wb");
  const std::string bytes = IdxBytes();
  gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(file);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix g, ReadPatternFile(gz));
  EXPECT_EQ(g.values, m.values);
  WriteBytes(plain, bytes.substr(0, bytes.size() - 1));
  EXPECT_THAT(ReadIdx(plain),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  EXPECT_THAT(ReadIdx(TempPath("missing")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(PatternFilesTest, ReadsCsvWithOptionalHeader) {
  const std::string path = TempPath("a.csv");
  WriteBytes(path, "x,y,z\n1,2,3\n 4.5 , -6 ,1e3\n\n");
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix m, ReadPatternFile(path));
  EXPECT_EQ(m.rows, 2u);
  EXPECT_THAT(m.values, ElementsAre(1, 2, 3, 4.5f, -6, 1000));
  WriteBytes(path, "1,2\n3\n");
  EXPECT_THAT(ReadCsv(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr(":2: expected 2 values")));
  WriteBytes(path, "1,2\n3,abc\n");
  EXPECT_THAT(ReadCsv(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("column 2")));
}

std::string Npy(const std::string& descr, const std::string& shape,
                const std::string& payload) {
  std::string header = "{'descr': '" + descr +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + payload;
}

TEST(PatternFilesTest, ReadsNpy) {
  const std::string path = TempPath("a.npy");
  const std::array<float, 6> values = {1.5f, -2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  WriteBytes(path, Npy("<f4", "(2, 3)",
                       std::string(reinterpret_cast<const char*>(values.data()),
                                   values.size() * sizeof(float))));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix m, ReadPatternFile(path));
  EXPECT_EQ(m.rows, 2u);
  EXPECT_EQ(m.cols, 3u);
  EXPECT_THAT(m.values, ElementsAre(1.5f, -2, 3, 4, 5, 6));
  WriteBytes(path, Npy("|u1", "(4,)", std::string("\x01\x02\x03\x04", 4)));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(m, ReadNpy(path));
  EXPECT_EQ(m.rows, 1u);
  EXPECT_THAT(m.values, ElementsAre(1, 2, 3, 4));
  WriteBytes(path, Npy("<c8", "(1, 1)", std::string(8, '\0')));
  EXPECT_THAT(ReadNpy(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype")));
  WriteBytes(path, Npy("<f4", "(2, 3)", std::string(4, '\0')));
  EXPECT_THAT(ReadNpy(path),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

std::string Gzip(const std::string& bytes) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&stream, bytes.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// An IDX header: element type, then the shape (big-endian uint32s).
std::string IdxHeader(unsigned char type, const std::vector<uint32_t>& shape) {
  std::string out = {0, 0, static_cast<char>(type),
                     static_cast<char>(shape.size())};
  for (const uint32_t extent : shape) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out += static_cast<char>((extent >> shift) & 0xff);
    }
  }
  return out;
}

// The process's peak resident set so far.
int64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// Less than any of the claims below would have cost before the fix.
constexpr int64_t kSmallGrowth = int64_t{64} << 20;

TEST(PatternFilesTest, ParsesFromMemoryAsTheReadersDo) {
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix idx, ParseIdx(IdxBytes()));
  EXPECT_THAT(idx.values, ElementsAre(0.0f, 1.0f, 0.2f, 0.4f));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix gz, ParseIdx(Gzip(IdxBytes())));
  EXPECT_EQ(gz.values, idx.values);
  HOPFIELD_ASSERT_OK_AND_ASSIGN(PatternMatrix csv, ParseCsv("a,b\r\n1,2\r\n"));
  EXPECT_THAT(csv.values, ElementsAre(1, 2));
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      PatternMatrix npy, ParseNpy(Npy("|u1", "(2,)", std::string("\x01\x02"))));
  EXPECT_THAT(npy.values, ElementsAre(1, 2));
  // `name` leads every message.
  EXPECT_THAT(ParseCsv("1\nx\n", "rows.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rows.csv:2: column 1")));
  EXPECT_THAT(ParseIdx("", "empty.idx"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("empty.idx: not an IDX file")));
}

TEST(PatternFilesTest, GzipIdxReadsConcatenatedMembersAndStopsAtThePayload) {
  const std::string bytes = IdxBytes();
  // Two members, as `cat a.gz b.gz` writes them.
  HOPFIELD_ASSERT_OK_AND_ASSIGN(
      PatternMatrix two,
      ParseIdx(Gzip(bytes.substr(0, 9)) + Gzip(bytes.substr(9))));
  EXPECT_THAT(two.values, ElementsAre(0.0f, 1.0f, 0.2f, 0.4f));
  // Whatever follows the declared payload is never inflated.
  EXPECT_THAT(ParseIdx(Gzip(bytes + std::string(1 << 20, 'x'))), IsOk());
  EXPECT_THAT(ParseIdx(Gzip(bytes) + "trailing"), IsOk());
  const std::string gz = Gzip(bytes);
  EXPECT_THAT(ParseIdx(gz.substr(0, gz.size() / 2)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  std::string corrupt = gz;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0xff);
  EXPECT_THAT(ParseIdx(corrupt), StatusIs(absl::StatusCode::kDataLoss));
}

// Regression (fuzz/regressions/idx_fuzzer/shape-product-wraps-to-zero): four
// extents of 65536 multiply to 2^64, which wrapped to 0: the reader returned
// OK with rows = 65536, cols = 2^48 and no values, and the CLI then sliced
// past the end of them.
TEST(PatternFilesTest, IdxShapeTooLargeIsRefused) {
  const std::string header = IdxHeader(0x08, {65536, 65536, 65536, 65536});
  EXPECT_THAT(ParseIdx(header), StatusIs(absl::StatusCode::kResourceExhausted,
                                         HasSubstr("too large")));
  EXPECT_THAT(ParseIdx(Gzip(header)),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(ParseIdx(IdxHeader(0x08, {0, 65536, 65536, 65536})),
              StatusIs(absl::StatusCode::kResourceExhausted));
  // Regression (.../header-claims-65536x65536): 4 Gi values, over the cap.
  EXPECT_THAT(ParseIdx(IdxHeader(0x0D, {65536, 65536})),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

// Regression (fuzz/regressions/idx_fuzzer/header-claims-16384x16384-payload-
// absent, gzip-header-claims-512mib-payload-absent): the reader sized its
// buffers from the header before reading, so a 12-byte file cost 1.25 GB
// (zero-filled) before failing as truncated, and 20 bytes claiming 65536 x
// 65536 cost 20 GB.
TEST(PatternFilesTest, IdxHeaderClaimingAbsentPayloadAllocatesNothing) {
  const int64_t before = PeakRssBytes();
  EXPECT_THAT(ParseIdx(IdxHeader(0x08, {16384, 16384})),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("expected 268435456 bytes, 0 present")));
  EXPECT_THAT(ParseIdx(IdxHeader(0x0D, {1, 1 << 27}) + "abc"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  // 30 bytes of gzip cannot inflate to 512 MiB: refused at once.
  EXPECT_THAT(ParseIdx(Gzip(IdxHeader(0x08, {1, 1 << 29}))),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("more than the gzip stream can hold")));
  // A stream that could (1 MiB of zeros ahead of a long claim) is inflated,
  // and found short, without sizing anything by the claim.
  EXPECT_THAT(ParseIdx(Gzip(IdxHeader(0x08, {1, 1 << 29}) +
                            std::string(1 << 20, '\0'))),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  EXPECT_LT(PeakRssBytes() - before, kSmallGrowth);
}

// Regression (fuzz/regressions/npy_fuzzer/shape-product-wraps-to-zero):
// (2^32, 2^32) wrapped to 0 values and read as OK.
TEST(PatternFilesTest, NpyShapeTooLargeIsRefused) {
  EXPECT_THAT(
      ParseNpy(Npy("<f4", "(4294967296, 4294967296)", "")),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("too large")));
  EXPECT_THAT(ParseNpy(Npy("<f4", "(0, 4294967296)", "")),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

// Regression (fuzz/regressions/npy_fuzzer/header-length-4gib-absent): a
// 12-byte file declaring a 4 GiB header had the reader allocate (and zero)
// 4 GiB before failing; a shape's payload was likewise allocated unread.
TEST(PatternFilesTest, NpyHeaderOrPayloadBeyondTheFileAllocatesNothing) {
  const int64_t before = PeakRssBytes();
  EXPECT_THAT(
      ParseNpy(std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated header")));
  EXPECT_THAT(
      ParseNpy(std::string("\x93NUMPY\x01\x00\xff", 9)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated header")));
  EXPECT_THAT(ParseNpy(Npy("<f8", "(16384, 16384)", std::string(8, '\0'))),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("expected 2147483648 bytes, 8 present")));
  EXPECT_LT(PeakRssBytes() - before, kSmallGrowth);
  // A key without a value is malformed, not a read past the header.
  EXPECT_THAT(ParseNpy(Npy("<f4", "(1,)", "").substr(0, 10) + "'shape'"),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace hopfield::client
