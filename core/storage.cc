#include "core/storage.h"

#include <string>

namespace hopfield {

StorageBatch::Op& StorageBatch::Push(OpKind kind, BankIncarnation bank) {
  Op& op = ops_.emplace_back();
  op.kind = kind;
  op.bank = bank;
  return op;
}

void StorageBatch::PutBank(BankIncarnation bank, absl::string_view name,
                           absl::string_view config) {
  Op& op = Push(OpKind::kPutBank, bank);
  op.name = std::string(name);
  op.bytes = std::string(config);
  payload_bytes_ += name.size() + config.size();
}

void StorageBatch::DeleteBank(BankIncarnation bank) {
  Push(OpKind::kDeleteBank, bank);
}

void StorageBatch::PutColumn(BankIncarnation bank, uint64_t column, uint64_t id,
                             absl::Span<const float> values) {
  Op& op = Push(OpKind::kPutColumn, bank);
  op.column = column;
  op.id = id;
  op.values.assign(values.begin(), values.end());
  payload_bytes_ += values.size() * sizeof(float);
}

void StorageBatch::Truncate(BankIncarnation bank,
                            uint64_t first_dropped_column) {
  Op& op = Push(OpKind::kTruncate, bank);
  op.column = first_dropped_column;
}

void StorageBatch::PutBlob(BankIncarnation bank, BlobKind kind,
                           absl::string_view bytes) {
  Op& op = Push(OpKind::kPutBlob, bank);
  op.blob = kind;
  op.bytes = std::string(bytes);
  payload_bytes_ += bytes.size();
}

void StorageBatch::DeleteBlob(BankIncarnation bank, BlobKind kind) {
  Op& op = Push(OpKind::kDeleteBlob, bank);
  op.blob = kind;
}

}  // namespace hopfield
