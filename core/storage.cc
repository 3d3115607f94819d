#include "core/storage.h"

#include <string>
#include <utility>

namespace hopfield {

void StorageBatch::PutBank(BankIncarnation bank, absl::string_view name,
                           absl::string_view config) {
  Op op;
  op.kind = OpKind::kPutBank;
  op.bank = bank;
  op.name = std::string(name);
  op.bytes = std::string(config);
  payload_bytes_ += name.size() + config.size();
  ops_.push_back(std::move(op));
}

void StorageBatch::DeleteBank(BankIncarnation bank) {
  Op op;
  op.kind = OpKind::kDeleteBank;
  op.bank = bank;
  ops_.push_back(std::move(op));
}

void StorageBatch::PutColumn(BankIncarnation bank, uint64_t column, uint64_t id,
                             absl::Span<const float> values) {
  Op op;
  op.kind = OpKind::kPutColumn;
  op.bank = bank;
  op.column = column;
  op.id = id;
  op.values.assign(values.begin(), values.end());
  payload_bytes_ += values.size() * sizeof(float);
  ops_.push_back(std::move(op));
}

void StorageBatch::Truncate(BankIncarnation bank,
                            uint64_t first_dropped_column) {
  Op op;
  op.kind = OpKind::kTruncate;
  op.bank = bank;
  op.column = first_dropped_column;
  ops_.push_back(std::move(op));
}

void StorageBatch::PutBlob(BankIncarnation bank, BlobKind kind,
                           absl::string_view bytes) {
  Op op;
  op.kind = OpKind::kPutBlob;
  op.bank = bank;
  op.blob = kind;
  op.bytes = std::string(bytes);
  payload_bytes_ += bytes.size();
  ops_.push_back(std::move(op));
}

void StorageBatch::DeleteBlob(BankIncarnation bank, BlobKind kind) {
  Op op;
  op.kind = OpKind::kDeleteBlob;
  op.bank = bank;
  op.blob = kind;
  ops_.push_back(std::move(op));
}

}  // namespace hopfield
