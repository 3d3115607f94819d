#include "client/pattern_files.h"

#include <zlib.h>

#include <array>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hopfield::client {
namespace {

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};

bool ReadExactly(gzFile file, void* buffer, size_t size) {
  auto* out = static_cast<char*>(buffer);
  while (size > 0) {
    const auto chunk = static_cast<unsigned>(std::min<size_t>(size, 1u << 30));
    const int got = gzread(file, out, chunk);
    if (got <= 0) return false;
    out += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

uint32_t BigEndian32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
         (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

}  // namespace

absl::StatusOr<PatternMatrix> ReadIdx(const std::string& path) {
  // gzopen reads plain files transparently.
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::array<uint8_t, 4> magic{};
  if (!ReadExactly(file.get(), magic.data(), 4) || magic[0] != 0 ||
      magic[1] != 0 || magic[3] == 0) {
    return absl::DataLossError(absl::StrCat(path, ": not an IDX file"));
  }
  const uint8_t type = magic[2];
  if (type != 0x08 && type != 0x0D) {
    return absl::DataLossError(
        absl::StrCat(path, ": IDX element type 0x", absl::Hex(type),
                     " unsupported, expected 0x08 (ubyte) or 0x0D (float)"));
  }
  std::vector<uint32_t> shape;
  for (int i = 0; i < magic[3]; ++i) {
    std::array<uint8_t, 4> be{};
    if (!ReadExactly(file.get(), be.data(), 4)) {
      return absl::DataLossError(absl::StrCat(path, ": truncated header"));
    }
    shape.push_back(BigEndian32(be.data()));
  }
  PatternMatrix matrix;
  matrix.rows = shape[0];
  matrix.cols = 1;
  for (size_t i = 1; i < shape.size(); ++i) matrix.cols *= shape[i];
  const size_t count = matrix.rows * matrix.cols;
  matrix.values.resize(count);
  if (type == 0x08) {
    std::vector<uint8_t> bytes(count);
    if (!ReadExactly(file.get(), bytes.data(), count)) {
      return absl::DataLossError(absl::StrCat(
          path, ": truncated payload, expected ", count, " bytes"));
    }
    for (size_t i = 0; i < count; ++i) {
      matrix.values[i] = static_cast<float>(bytes[i]) / 255.0f;
    }
  } else {
    std::vector<uint8_t> bytes(count * 4);
    if (!ReadExactly(file.get(), bytes.data(), bytes.size())) {
      return absl::DataLossError(absl::StrCat(
          path, ": truncated payload, expected ", bytes.size(), " bytes"));
    }
    for (size_t i = 0; i < count; ++i) {
      const uint32_t bits = BigEndian32(&bytes[i * 4]);
      std::memcpy(&matrix.values[i], &bits, 4);
    }
  }
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  PatternMatrix matrix;
  std::string line;
  size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(trimmed, ',');
    std::vector<float> row;
    row.reserve(fields.size());
    bool numeric = true;
    size_t bad_column = 0;
    for (size_t c = 0; c < fields.size(); ++c) {
      float value = 0.0f;
      if (!absl::SimpleAtof(absl::StripAsciiWhitespace(fields[c]), &value)) {
        numeric = false;
        bad_column = c;
        break;
      }
      row.push_back(value);
    }
    if (!numeric) {
      if (matrix.rows == 0 && line_number == 1) continue;  // a header line
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": column ", bad_column + 1,
                       " is not a number: \"", fields[bad_column], "\""));
    }
    if (matrix.rows == 0) {
      matrix.cols = row.size();
    } else if (row.size() != matrix.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": expected ", matrix.cols,
                       " values as on the first line, got ", row.size()));
    }
    matrix.values.insert(matrix.values.end(), row.begin(), row.end());
    ++matrix.rows;
  }
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::array<char, 8> magic{};
  if (!in.read(magic.data(), 8) ||
      std::memcmp(magic.data(), "\x93NUMPY", 6) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a .npy file"));
  }
  size_t header_length = 0;
  if (magic[6] == 1) {
    std::array<unsigned char, 2> len{};
    in.read(reinterpret_cast<char*>(len.data()), 2);
    header_length = len[0] | (size_t{len[1]} << 8);
  } else {
    std::array<unsigned char, 4> len{};
    in.read(reinterpret_cast<char*>(len.data()), 4);
    header_length = len[0] | (size_t{len[1]} << 8) | (size_t{len[2]} << 16) |
                    (size_t{len[3]} << 24);
  }
  std::string header(header_length, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_length))) {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  auto field = [&header](absl::string_view key) -> std::string {
    const size_t at = header.find(absl::StrCat("'", key, "'"));
    if (at == std::string::npos) return "";
    const size_t colon = header.find(':', at);
    size_t end = colon + 1;
    int depth = 0;
    while (end < header.size()) {
      const char c = header[end];
      if (c == '(') ++depth;
      if (c == ')') --depth;
      if (c == ',' && depth == 0) break;
      if (c == '}' && depth == 0) break;
      ++end;
    }
    return std::string(absl::StripAsciiWhitespace(
        absl::string_view(header).substr(colon + 1, end - colon - 1)));
  };
  const std::string descr = field("descr");
  if (field("fortran_order") == "True") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Fortran-order arrays are not supported"));
  }
  std::string shape_text = field("shape");
  absl::string_view shape_view = absl::StripAsciiWhitespace(shape_text);
  if (!absl::ConsumePrefix(&shape_view, "(") ||
      !absl::ConsumeSuffix(&shape_view, ")")) {
    return absl::DataLossError(absl::StrCat(path, ": malformed shape"));
  }
  std::vector<size_t> shape;
  for (absl::string_view part :
       absl::StrSplit(shape_view, ',', absl::SkipWhitespace())) {
    size_t extent = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &extent)) {
      return absl::DataLossError(absl::StrCat(path, ": malformed shape"));
    }
    shape.push_back(extent);
  }
  if (shape.empty() || shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a 1-D or 2-D array, got ", shape.size(),
                     " dimensions"));
  }
  PatternMatrix matrix;
  matrix.rows = shape.size() == 2 ? shape[0] : 1;
  matrix.cols = shape.back();
  const size_t count = matrix.rows * matrix.cols;
  matrix.values.resize(count);
  auto read_as = [&](auto sample) -> absl::Status {
    using T = decltype(sample);
    std::vector<T> raw(count);
    if (!in.read(reinterpret_cast<char*>(raw.data()),
                 static_cast<std::streamsize>(count * sizeof(T)))) {
      return absl::DataLossError(absl::StrCat(path, ": truncated payload"));
    }
    for (size_t i = 0; i < count; ++i) {
      matrix.values[i] = static_cast<float>(raw[i]);
    }
    return absl::OkStatus();
  };
  absl::Status status;
  if (descr == "'<f4'") {
    status = read_as(float{});
  } else if (descr == "'<f8'") {
    status = read_as(double{});
  } else if (descr == "'|u1'") {
    status = read_as(uint8_t{});
  } else if (descr == "'<i4'") {
    status = read_as(int32_t{});
  } else if (descr == "'<i8'") {
    status = read_as(int64_t{});
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": dtype ", descr,
        " unsupported, expected <f4, <f8, |u1, <i4 or <i8 (little-endian)"));
  }
  if (!status.ok()) return status;
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadPatternFile(const std::string& path) {
  if (absl::EndsWith(path, ".npy")) return ReadNpy(path);
  if (absl::EndsWith(path, ".csv")) return ReadCsv(path);
  return ReadIdx(path);
}

}  // namespace hopfield::client
