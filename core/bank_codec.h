// File: bank_codec.h
//
// The byte encodings of what a bank persists through Storage (storage.h)
// beside its columns: its options (the catalog entry's config), its learned
// feature map, its counters, and a snapshot of its separation statistics.
// Each encoding starts with a format byte, so a later version can read an
// earlier one; integers and floats are little-endian (the host order:
// x86-64 and aarch64). Storage checksums every record, so a decode error
// here means bytes an incompatible version wrote: DATA_LOSS naming what
// failed.
//
// Plain functions; thread-safe.
#ifndef HOPFIELD_CORE_BANK_CODEC_H_
#define HOPFIELD_CORE_BANK_CODEC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "core/bank_options.h"
#include "core/feature_map.h"

namespace hopfield {

// BankOptions as created (every field; Decode validates them).
std::string EncodeBankOptions(const BankOptions& options);
absl::StatusOr<BankOptions> DecodeBankOptions(absl::string_view bytes);

// A learned feature map (W, c, version and FeatureMapInfo). The identity is
// never stored (no blob means the identity).
// REQUIRES (Encode): !map.is_identity().
std::string EncodeFeatureMap(const FeatureMap& map);
absl::StatusOr<std::shared_ptr<const FeatureMap>> DecodeFeatureMap(
    absl::string_view bytes);

// The counters a bank keeps across restarts (BlobKind::kBankState),
// rewritten with every write:
//   next_id   where the search for a fresh id starts (so an id handed out
//             and then forgotten is not handed out again after a restart);
//   write_seq the bank's writes so far (Add, Remove, SetFeatureMap), which
//             tells whether a separation snapshot is current;
//   columns   the patterns stored, so a load notices missing trailing
//             columns (a gap in the middle is the storage's DATA_LOSS).
struct BankState {
  uint64_t next_id = 1;
  uint64_t write_seq = 0;
  uint64_t columns = 0;
};
std::string EncodeBankState(const BankState& state);
absl::StatusOr<BankState> DecodeBankState(absl::string_view bytes);

// Per-column separation statistics as the bank holds them
// (BlobKind::kSeparation), taken at write `write_seq`: valid on load only
// if the bank's state shows the same write_seq (no write since).
struct SeparationSnapshot {
  uint64_t write_seq = 0;
  std::vector<float> nearest_score;
  std::vector<uint64_t> nearest_id;
  std::vector<char> pending;  // MemoryBank's pending_ marks (0, 1, 2)
};
std::string EncodeSeparationSnapshot(const SeparationSnapshot& snapshot);
absl::StatusOr<SeparationSnapshot> DecodeSeparationSnapshot(
    absl::string_view bytes);

// What a bank stores beside its saved search index (the graph itself is
// hnswlib's file): valid on load only if the bank's state shows the same
// write_seq and feature map version, and the file the same size and hash.
struct IndexMeta {
  uint64_t write_seq = 0;
  uint32_t map_version = 0;
  uint64_t built_at = 0;  // MemoryBank's index_built_at_
  std::vector<float> projection;
  uint64_t file_bytes = 0;
  uint64_t file_hash = 0;
};
std::string EncodeIndexMeta(const IndexMeta& meta);
absl::StatusOr<IndexMeta> DecodeIndexMeta(absl::string_view bytes);

// A 64-bit hash of a file's bytes (not cryptographic: it catches damage),
// and its size. Errors: UNAVAILABLE when the file cannot be read.
struct FileDigest {
  uint64_t bytes = 0;
  uint64_t hash = 0;
};
absl::StatusOr<FileDigest> DigestFile(const std::string& path);
// The same kind of hash over bytes in memory (an IndexMeta's own check).
uint64_t HashBytes(absl::string_view bytes);

}  // namespace hopfield

#endif  // HOPFIELD_CORE_BANK_CODEC_H_
