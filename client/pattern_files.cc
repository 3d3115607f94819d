#include "client/pattern_files.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hopfield::client {
namespace {

// Payloads are converted this many bytes at a time (a multiple of every
// element size).
constexpr size_t kChunkBytes = size_t{1} << 16;

// Deflate's best ratio: a 258-byte match in 2 bits.
constexpr uint64_t kMaxDeflateRatio = 1032;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string bytes;
  std::array<char, kChunkBytes> chunk{};
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) ||
         in.gcount() > 0) {
    bytes.append(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return bytes;
}

// rows * cols, or nullopt when it (or cols alone) exceeds the cap.
std::optional<size_t> CheckedCount(size_t rows, size_t cols) {
  if (cols > kMaxPatternFileValues) return std::nullopt;
  if (cols != 0 && rows > kMaxPatternFileValues / cols) return std::nullopt;
  return rows * cols;
}

absl::Status TooManyValues(absl::string_view name, absl::string_view shape) {
  return absl::ResourceExhaustedError(
      absl::StrCat(name, ": shape ", shape, " is too large: a file may hold ",
                   kMaxPatternFileValues, " values at most"));
}

// IDX bytes in order, plain or inflated from gzip. Not copyable.
class ByteStream {
 public:
  explicit ByteStream(absl::string_view bytes)
      : rest_(bytes), gzip_(absl::StartsWith(bytes, "\x1f\x8b")) {}
  ~ByteStream() {
    if (inflating_) inflateEnd(&stream_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // An upper bound on the bytes still to come.
  uint64_t MaxRemaining() const {
    if (!gzip_) return rest_.size();
    const uint64_t compressed = rest_.size() + stream_.avail_in;
    return compressed * kMaxDeflateRatio + 1024;  // + what zlib holds back
  }

  // Fills out[0, size) and returns true; false if the input ends first.
  // Errors: DATA_LOSS for a corrupt gzip stream.
  absl::StatusOr<bool> Read(uint8_t* out, size_t size) {
    if (!gzip_) {
      if (rest_.size() < size) return false;
      std::memcpy(out, rest_.data(), size);
      rest_.remove_prefix(size);
      return true;
    }
    while (size > 0) {
      if (!inflating_) {
        if (inflateInit2(&stream_, 15 + 16) != Z_OK) {
          return absl::InternalError("inflateInit2 failed");
        }
        inflating_ = true;
      }
      if (stream_.avail_in == 0) {
        if (rest_.empty()) return false;
        const size_t feed = std::min<size_t>(rest_.size(), UINT_MAX);
        stream_.next_in = reinterpret_cast<Bytef*>(  // zlib takes non-const
            const_cast<char*>(rest_.data()));        // NOLINT
        stream_.avail_in = static_cast<uInt>(feed);
        rest_.remove_prefix(feed);
      }
      const auto want = static_cast<uInt>(std::min<size_t>(size, UINT_MAX));
      stream_.next_out = out;
      stream_.avail_out = want;
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      const size_t got = want - stream_.avail_out;
      out += got;
      size -= got;
      if (rc == Z_STREAM_END) {
        // Another member may follow (gzip a b > ab.gz); anything else ends
        // the stream, as gzread treats it.
        inflateEnd(&stream_);
        inflating_ = false;
        if (stream_.avail_in > 0) {
          rest_ =
              absl::string_view(reinterpret_cast<const char*>(stream_.next_in),
                                stream_.avail_in + rest_.size());
          stream_.avail_in = 0;
        }
        if (!absl::StartsWith(rest_, "\x1f\x8b")) {
          rest_ = {};
          return size == 0;
        }
      } else if (rc == Z_BUF_ERROR) {
        return false;  // no progress possible: the stream ends early
      } else if (rc != Z_OK) {
        return absl::DataLossError(
            stream_.msg != nullptr ? stream_.msg : "corrupt gzip stream");
      }
    }
    return true;
  }

  bool gzip() const { return gzip_; }

 private:
  // Bytes not yet handed to zlib (all of them for plain input).
  absl::string_view rest_;
  const bool gzip_;
  bool inflating_ = false;
  z_stream stream_{};
};

uint32_t BigEndian32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
         (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

// Adds `name` and DATA_LOSS context to a ByteStream::Read failure.
absl::Status ReadOrLoss(ByteStream& stream, uint8_t* out, size_t size,
                        absl::string_view name, absl::string_view truncated) {
  const absl::StatusOr<bool> read = stream.Read(out, size);
  if (!read.ok()) {
    return absl::DataLossError(
        absl::StrCat(name, ": bad gzip stream: ", read.status().message()));
  }
  if (!*read) return absl::DataLossError(absl::StrCat(name, ": ", truncated));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PatternMatrix> ParseIdx(absl::string_view bytes,
                                       absl::string_view name) {
  ByteStream stream(bytes);
  std::array<uint8_t, 4> magic{};
  if (absl::Status status =
          ReadOrLoss(stream, magic.data(), 4, name, "not an IDX file");
      !status.ok()) {
    return status;
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[3] == 0) {
    return absl::DataLossError(absl::StrCat(name, ": not an IDX file"));
  }
  const uint8_t type = magic[2];
  if (type != 0x08 && type != 0x0D) {
    return absl::DataLossError(
        absl::StrCat(name, ": IDX element type 0x", absl::Hex(type),
                     " unsupported, expected 0x08 (ubyte) or 0x0D (float)"));
  }
  std::vector<uint32_t> shape;
  for (int i = 0; i < magic[3]; ++i) {
    std::array<uint8_t, 4> be{};
    if (absl::Status status =
            ReadOrLoss(stream, be.data(), 4, name, "truncated header");
        !status.ok()) {
      return status;
    }
    shape.push_back(BigEndian32(be.data()));
  }
  // rows = shape[0], cols = the product of the rest, each checked.
  size_t cols = 1;
  bool too_many = false;
  for (size_t i = 1; i < shape.size() && !too_many; ++i) {
    const std::optional<size_t> product = CheckedCount(cols, shape[i]);
    too_many = !product.has_value();
    cols = product.value_or(0);
  }
  const std::optional<size_t> count =
      too_many ? std::nullopt : CheckedCount(shape[0], cols);
  if (!count.has_value()) {
    return TooManyValues(name,
                         absl::StrCat("(", absl::StrJoin(shape, ", "), ")"));
  }
  const size_t element_size = type == 0x08 ? 1 : 4;
  const size_t payload = *count * element_size;
  if (payload > stream.MaxRemaining()) {
    return absl::DataLossError(absl::StrCat(
        name, ": truncated payload, expected ", payload, " bytes, ",
        stream.gzip() ? "more than the gzip stream can hold"
                      : absl::StrCat(stream.MaxRemaining(), " present")));
  }
  PatternMatrix matrix;
  matrix.rows = shape[0];
  matrix.cols = cols;
  // Plain input holds the payload (checked above); gzip input grows the
  // matrix as the stream yields it.
  matrix.values.reserve(stream.gzip() ? std::min(*count, kChunkBytes) : *count);
  std::vector<uint8_t> chunk(std::min(payload, kChunkBytes));
  const std::string truncated =
      absl::StrCat("truncated payload, expected ", payload, " bytes");
  for (size_t done = 0; done < payload;) {
    const size_t size = std::min(payload - done, chunk.size());
    if (absl::Status status =
            ReadOrLoss(stream, chunk.data(), size, name, truncated);
        !status.ok()) {
      return status;
    }
    if (type == 0x08) {
      for (size_t i = 0; i < size; ++i) {
        matrix.values.push_back(static_cast<float>(chunk[i]) / 255.0f);
      }
    } else {
      for (size_t i = 0; i < size; i += 4) {
        const uint32_t bits = BigEndian32(&chunk[i]);
        float value = 0.0f;
        std::memcpy(&value, &bits, 4);
        matrix.values.push_back(value);
      }
    }
    done += size;
  }
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadIdx(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseIdx(*bytes, path);
}

absl::StatusOr<PatternMatrix> ParseCsv(absl::string_view bytes,
                                       absl::string_view name) {
  PatternMatrix matrix;
  size_t line_number = 0;
  for (const absl::string_view line : absl::StrSplit(bytes, '\n')) {
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
          absl::StrCat(name, ":", line_number, ": column ", bad_column + 1,
                       " is not a number: \"", fields[bad_column], "\""));
    }
    if (matrix.rows == 0) {
      matrix.cols = row.size();
    } else if (row.size() != matrix.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line_number, ": expected ", matrix.cols,
                       " values as on the first line, got ", row.size()));
    }
    matrix.values.insert(matrix.values.end(), row.begin(), row.end());
    ++matrix.rows;
  }
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadCsv(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseCsv(*bytes, path);
}

absl::StatusOr<PatternMatrix> ParseNpy(absl::string_view bytes,
                                       absl::string_view name) {
  if (bytes.size() < 8 || !absl::StartsWith(bytes, "\x93NUMPY")) {
    return absl::DataLossError(absl::StrCat(name, ": not a .npy file"));
  }
  // Version 1.0 has a 2-byte header length, later ones 4 (little-endian).
  const size_t length_bytes = bytes[6] == 1 ? 2 : 4;
  if (bytes.size() < 8 + length_bytes) {
    return absl::DataLossError(absl::StrCat(name, ": truncated header"));
  }
  size_t header_length = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    header_length |= size_t{static_cast<uint8_t>(bytes[8 + i])} << (8 * i);
  }
  absl::string_view rest = bytes.substr(8 + length_bytes);
  if (rest.size() < header_length) {
    return absl::DataLossError(absl::StrCat(name, ": truncated header"));
  }
  const absl::string_view header = rest.substr(0, header_length);
  rest.remove_prefix(header_length);
  auto field = [header](absl::string_view key) -> absl::string_view {
    const size_t at = header.find(absl::StrCat("'", key, "'"));
    if (at == absl::string_view::npos) return "";
    const size_t colon = header.find(':', at);
    if (colon == absl::string_view::npos) return "";
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
    return absl::StripAsciiWhitespace(
        header.substr(colon + 1, end - colon - 1));
  };
  const absl::string_view descr = field("descr");
  if (field("fortran_order") == "True") {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": Fortran-order arrays are not supported"));
  }
  const absl::string_view shape_text = field("shape");
  absl::string_view shape_view = shape_text;
  if (!absl::ConsumePrefix(&shape_view, "(") ||
      !absl::ConsumeSuffix(&shape_view, ")")) {
    return absl::DataLossError(absl::StrCat(name, ": malformed shape"));
  }
  std::vector<size_t> shape;
  for (absl::string_view part :
       absl::StrSplit(shape_view, ',', absl::SkipWhitespace())) {
    size_t extent = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &extent)) {
      return absl::DataLossError(absl::StrCat(name, ": malformed shape"));
    }
    shape.push_back(extent);
  }
  if (shape.empty() || shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a 1-D or 2-D array, got ", shape.size(),
                     " dimensions"));
  }
  PatternMatrix matrix;
  matrix.rows = shape.size() == 2 ? shape[0] : 1;
  matrix.cols = shape.back();
  const std::optional<size_t> count = CheckedCount(matrix.rows, matrix.cols);
  if (!count.has_value()) return TooManyValues(name, shape_text);
  // The payload must be present before anything is allocated for it.
  auto read_as = [&](auto sample) -> absl::Status {
    using T = decltype(sample);
    if (rest.size() / sizeof(T) < *count) {
      return absl::DataLossError(absl::StrCat(
          name, ": truncated payload, expected ", *count * sizeof(T),
          " bytes, ", rest.size(), " present"));
    }
    matrix.values.resize(*count);
    for (size_t i = 0; i < *count; ++i) {
      T value{};
      std::memcpy(&value, rest.data() + i * sizeof(T), sizeof(T));
      matrix.values[i] = static_cast<float>(value);
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
        name, ": dtype ", descr,
        " unsupported, expected <f4, <f8, |u1, <i4 or <i8 (little-endian)"));
  }
  if (!status.ok()) return status;
  return matrix;
}

absl::StatusOr<PatternMatrix> ReadNpy(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseNpy(*bytes, path);
}

absl::StatusOr<PatternMatrix> ReadPatternFile(const std::string& path) {
  if (absl::EndsWith(path, ".npy")) return ReadNpy(path);
  if (absl::EndsWith(path, ".csv")) return ReadCsv(path);
  return ReadIdx(path);
}

}  // namespace hopfield::client
