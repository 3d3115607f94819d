#include "client/pattern_files.h"

#include <zlib.h>

#include <array>
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

}  // namespace
}  // namespace hopfield::client
