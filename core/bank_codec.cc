#include "core/bank_codec.h"

#include <array>
#include <cstring>
#include <fstream>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include "core/status_macros.h"

namespace hopfield {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the encodings are the host's little-endian bytes");

constexpr uint8_t kFormat = 1;

// Appends trivially copyable values and arrays.
class Writer {
 public:
  template <typename T>
  void Put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  template <typename T>
  void PutArray(const T* data, size_t count) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (count == 0) return;  // data may be null (an empty vector's)
    out_.append(reinterpret_cast<const char*>(data), count * sizeof(T));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what Writer wrote; every read checks the length left.
class Reader {
 public:
  Reader(absl::string_view bytes, absl::string_view what)
      : bytes_(bytes), what_(what) {}

  template <typename T>
  absl::Status Get(T* value) {
    return GetArray(value, 1);
  }
  template <typename T>
  absl::Status GetArray(T* data, size_t count) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (count > bytes_.size() / sizeof(T)) return Short();
    if (count == 0) return absl::OkStatus();  // data may be null
    std::memcpy(data, bytes_.data(), count * sizeof(T));
    bytes_.remove_prefix(count * sizeof(T));
    return absl::OkStatus();
  }
  // The format byte: DATA_LOSS unless it is one this build reads.
  absl::Status Format() {
    uint8_t format = 0;
    HOPFIELD_RETURN_IF_ERROR(Get(&format));
    if (format != kFormat) {
      return absl::DataLossError(absl::StrCat(what_, ": format ", format,
                                              " unknown, expected ", kFormat));
    }
    return absl::OkStatus();
  }
  // DATA_LOSS unless every byte was read.
  absl::Status Done() const {
    if (bytes_.empty()) return absl::OkStatus();
    return absl::DataLossError(
        absl::StrCat(what_, ": ", bytes_.size(), " bytes left over"));
  }
  absl::Status Bad(absl::string_view why) const {
    return absl::DataLossError(absl::StrCat(what_, ": ", why));
  }

 private:
  absl::Status Short() const {
    return absl::DataLossError(absl::StrCat(what_, ": truncated"));
  }

  absl::string_view bytes_;
  const absl::string_view what_;
};

}  // namespace

std::string EncodeBankOptions(const BankOptions& options) {
  Writer w;
  w.Put(kFormat);
  w.Put(options.dim);
  w.Put(static_cast<uint8_t>(options.similarity));
  w.Put(static_cast<uint8_t>(options.separation));
  w.Put(options.entmax_alpha);
  w.Put(options.beta);
  w.Put(options.max_iterations);
  w.Put(options.tolerance);
  w.Put(static_cast<uint8_t>(options.search));
  w.Put(options.top_k);
  w.Put(options.index_m);
  w.Put(options.index_ef_construction);
  w.Put(options.index_ef_search);
  w.Put(options.feature_dim);
  return w.Take();
}

absl::StatusOr<BankOptions> DecodeBankOptions(absl::string_view bytes) {
  Reader r(bytes, "bank config");
  HOPFIELD_RETURN_IF_ERROR(r.Format());
  BankOptions options;
  uint8_t similarity = 0;
  uint8_t separation = 0;
  uint8_t search = 0;
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.dim));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&similarity));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&separation));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.entmax_alpha));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.beta));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.max_iterations));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.tolerance));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&search));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.top_k));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.index_m));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.index_ef_construction));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.index_ef_search));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&options.feature_dim));
  HOPFIELD_RETURN_IF_ERROR(r.Done());
  if (similarity > static_cast<uint8_t>(Similarity::kDot) ||
      separation > static_cast<uint8_t>(Separation::kEntmax) ||
      search > static_cast<uint8_t>(SearchMode::kApproximate)) {
    return r.Bad("an enum value out of range");
  }
  options.similarity = static_cast<Similarity>(similarity);
  options.separation = static_cast<Separation>(separation);
  options.search = static_cast<SearchMode>(search);
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    return r.Bad(valid.message());
  }
  return options;
}

std::string EncodeFeatureMap(const FeatureMap& map) {
  Writer w;
  w.Put(kFormat);
  w.Put(map.input_dim());
  w.Put(map.feature_dim());
  w.Put(map.version());
  const FeatureMapInfo& info = map.info();
  w.Put(static_cast<uint8_t>(info.mode));
  w.Put(info.iterations);
  w.Put(info.learning_rate);
  w.Put(info.temperature);
  w.Put(info.batch_size);
  w.Put(info.seed);
  w.Put(info.training_patterns);
  w.Put(info.loss);
  w.PutArray(map.center().data(), static_cast<size_t>(map.center().size()));
  w.PutArray(map.weights().data(), static_cast<size_t>(map.weights().size()));
  return w.Take();
}

absl::StatusOr<std::shared_ptr<const FeatureMap>> DecodeFeatureMap(
    absl::string_view bytes) {
  Reader r(bytes, "feature map");
  HOPFIELD_RETURN_IF_ERROR(r.Format());
  uint32_t input_dim = 0;
  uint32_t feature_dim = 0;
  uint32_t version = 0;
  uint8_t mode = 0;
  FeatureMapInfo info;
  HOPFIELD_RETURN_IF_ERROR(r.Get(&input_dim));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&feature_dim));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&version));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&mode));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.iterations));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.learning_rate));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.temperature));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.batch_size));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.seed));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.training_patterns));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&info.loss));
  if (mode > static_cast<uint8_t>(TrainMode::kUHopCompat)) {
    return r.Bad("training mode out of range");
  }
  info.mode = static_cast<TrainMode>(mode);
  if (input_dim == 0 || input_dim > kMaxDim || feature_dim == 0 ||
      feature_dim > kMaxDim) {
    return r.Bad(absl::StrCat("dimensions ", feature_dim, " x ", input_dim,
                              " out of range"));
  }
  Eigen::VectorXf center(input_dim);
  Eigen::MatrixXf weights(feature_dim, input_dim);
  HOPFIELD_RETURN_IF_ERROR(r.GetArray(center.data(), input_dim));
  HOPFIELD_RETURN_IF_ERROR(
      r.GetArray(weights.data(), static_cast<size_t>(weights.size())));
  HOPFIELD_RETURN_IF_ERROR(r.Done());
  absl::StatusOr<std::shared_ptr<const FeatureMap>> map =
      FeatureMap::Create(std::move(center), std::move(weights), version, info);
  if (!map.ok()) return r.Bad(map.status().message());
  return map;
}

std::string EncodeBankState(const BankState& state) {
  Writer w;
  w.Put(kFormat);
  w.Put(state.next_id);
  w.Put(state.write_seq);
  w.Put(state.columns);
  return w.Take();
}

absl::StatusOr<BankState> DecodeBankState(absl::string_view bytes) {
  Reader r(bytes, "bank state");
  HOPFIELD_RETURN_IF_ERROR(r.Format());
  BankState state;
  HOPFIELD_RETURN_IF_ERROR(r.Get(&state.next_id));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&state.write_seq));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&state.columns));
  HOPFIELD_RETURN_IF_ERROR(r.Done());
  return state;
}

std::string EncodeSeparationSnapshot(const SeparationSnapshot& snapshot) {
  const uint64_t count = snapshot.nearest_score.size();
  Writer w;
  w.Put(kFormat);
  w.Put(snapshot.write_seq);
  w.Put(count);
  w.PutArray(snapshot.nearest_score.data(), count);
  w.PutArray(snapshot.nearest_id.data(), count);
  w.PutArray(snapshot.pending.data(), count);
  return w.Take();
}

absl::StatusOr<SeparationSnapshot> DecodeSeparationSnapshot(
    absl::string_view bytes) {
  Reader r(bytes, "separation snapshot");
  HOPFIELD_RETURN_IF_ERROR(r.Format());
  SeparationSnapshot snapshot;
  uint64_t count = 0;
  HOPFIELD_RETURN_IF_ERROR(r.Get(&snapshot.write_seq));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&count));
  // 13 bytes per column must be there before anything is allocated.
  if (count > bytes.size() / 13) return r.Bad("count exceeds the bytes");
  snapshot.nearest_score.resize(count);
  snapshot.nearest_id.resize(count);
  snapshot.pending.resize(count);
  HOPFIELD_RETURN_IF_ERROR(r.GetArray(snapshot.nearest_score.data(), count));
  HOPFIELD_RETURN_IF_ERROR(r.GetArray(snapshot.nearest_id.data(), count));
  HOPFIELD_RETURN_IF_ERROR(r.GetArray(snapshot.pending.data(), count));
  HOPFIELD_RETURN_IF_ERROR(r.Done());
  return snapshot;
}

std::string EncodeIndexMeta(const IndexMeta& meta) {
  Writer w;
  w.Put(kFormat);
  w.Put(meta.write_seq);
  w.Put(meta.map_version);
  w.Put(meta.built_at);
  w.Put(static_cast<uint64_t>(meta.projection.size()));
  w.PutArray(meta.projection.data(), meta.projection.size());
  w.Put(meta.file_bytes);
  w.Put(meta.file_hash);
  std::string bytes = w.Take();
  const uint64_t hash = HashBytes(bytes);
  bytes.append(reinterpret_cast<const char*>(&hash), sizeof(hash));
  return bytes;
}

absl::StatusOr<IndexMeta> DecodeIndexMeta(absl::string_view bytes) {
  // Its own hash last: a meta is small and unchecked by any store.
  uint64_t hash = 0;
  if (bytes.size() < sizeof(hash)) {
    return absl::DataLossError("search index meta: truncated");
  }
  std::memcpy(&hash, bytes.data() + bytes.size() - sizeof(hash), sizeof(hash));
  bytes.remove_suffix(sizeof(hash));
  if (HashBytes(bytes) != hash) {
    return absl::DataLossError("search index meta: hash mismatch");
  }
  Reader r(bytes, "search index meta");
  HOPFIELD_RETURN_IF_ERROR(r.Format());
  IndexMeta meta;
  uint64_t floats = 0;
  HOPFIELD_RETURN_IF_ERROR(r.Get(&meta.write_seq));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&meta.map_version));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&meta.built_at));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&floats));
  if (floats > bytes.size() / sizeof(float)) {
    return r.Bad("projection size exceeds the bytes");
  }
  meta.projection.resize(floats);
  HOPFIELD_RETURN_IF_ERROR(r.GetArray(meta.projection.data(), floats));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&meta.file_bytes));
  HOPFIELD_RETURN_IF_ERROR(r.Get(&meta.file_hash));
  HOPFIELD_RETURN_IF_ERROR(r.Done());
  return meta;
}

namespace {

constexpr uint64_t kFnvBasis = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

// FNV-1a over 8-byte words (`size` a multiple of 8), with a shift mixing
// high bits down.
uint64_t HashWords(uint64_t hash, const char* data, size_t size) {
  for (size_t i = 0; i < size; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, data + i, 8);
    hash = (hash ^ word) * kFnvPrime;
    hash ^= hash >> 29;
  }
  return hash;
}

}  // namespace

uint64_t HashBytes(absl::string_view bytes) {
  const size_t whole = bytes.size() / 8 * 8;
  uint64_t hash = HashWords(kFnvBasis, bytes.data(), whole);
  std::array<char, 8> tail{};
  std::memcpy(tail.data(), bytes.data() + whole, bytes.size() - whole);
  hash = HashWords(hash, tail.data(), tail.size());
  return (hash ^ bytes.size()) * kFnvPrime;
}

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(absl::StrCat("cannot read ", path));
  }
  FileDigest digest;
  // HashWords over 1 MiB chunks (the last one zero-padded to 8 bytes), the
  // length mixed in at the end.
  uint64_t hash = kFnvBasis;
  std::vector<char> buffer(size_t{1} << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    const size_t padded = (got + 7) / 8 * 8;
    std::memset(buffer.data() + got, 0, padded - got);
    hash = HashWords(hash, buffer.data(), padded);
    digest.bytes += got;
  }
  if (in.bad()) {
    return absl::UnavailableError(absl::StrCat("cannot read ", path));
  }
  digest.hash = (hash ^ digest.bytes) * kFnvPrime;
  return digest;
}

}  // namespace hopfield
