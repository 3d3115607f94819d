#include "core/rocksdb_storage.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"

#include "core/status_macros.h"

namespace hopfield {
namespace {

constexpr char kCatalog = 'c';
constexpr char kColumn = 'p';
constexpr char kBlob = 'x';
constexpr absl::string_view kLastIncarnationKey = "mlast_inc";
constexpr size_t kCrcBytes = 4;

rocksdb::Slice AsSlice(absl::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

void AppendBigEndian(uint64_t value, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian(const char* p) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value = (value << 8) | static_cast<unsigned char>(p[i]);
  }
  return value;
}

void AppendLittle(uint64_t value, size_t bytes, std::string* out) {
  for (size_t i = 0; i < bytes; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

uint64_t ReadLittle(const char* p, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return value;
}

std::string BankPrefix(char tag, BankIncarnation bank) {
  std::string key(1, tag);
  AppendBigEndian(bank, &key);
  return key;
}

std::string ColumnKey(BankIncarnation bank, uint64_t column) {
  std::string key = BankPrefix(kColumn, bank);
  AppendBigEndian(column, &key);
  return key;
}

std::string BlobKey(BankIncarnation bank, BlobKind kind) {
  std::string key = BankPrefix(kBlob, bank);
  key.push_back(static_cast<char>(kind));
  return key;
}

uint32_t Crc(absl::string_view key, absl::string_view payload) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(key.data()),
              static_cast<uInt>(key.size()));
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data()),
              static_cast<uInt>(payload.size()));
  return static_cast<uint32_t>(crc);
}

// Appends the CRC of key and *value to *value.
void Seal(absl::string_view key, std::string* value) {
  const uint32_t crc = Crc(key, *value);
  AppendLittle(crc, kCrcBytes, value);
}

// The payload of a sealed value, or DATA_LOSS naming what() (called only
// then: loading a bank unseals every record).
absl::StatusOr<absl::string_view> Unseal(
    absl::string_view key, absl::string_view value,
    absl::FunctionRef<std::string()> what) {
  if (value.size() < kCrcBytes) {
    return absl::DataLossError(
        absl::StrCat(what(), " is corrupt: ", value.size(), " bytes"));
  }
  const absl::string_view payload = value.substr(0, value.size() - kCrcBytes);
  const auto stored = static_cast<uint32_t>(
      ReadLittle(value.data() + payload.size(), kCrcBytes));
  if (stored != Crc(key, payload)) {
    return absl::DataLossError(
        absl::StrCat(what(), " is corrupt (checksum mismatch)"));
  }
  return payload;
}

absl::Status ToStatus(const rocksdb::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message =
      absl::StrCat("storage ", what, " failed: ", status.ToString());
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::UnavailableError(message);
}

// Deletes the records of incarnations with no catalog entry: writes that
// reached a bank after its deletion (a Store that looked the bank up just
// before a DeleteBank). One seek per incarnation present; best effort past
// a damaged block.
absl::Status DropOrphans(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* records,
                         rocksdb::ColumnFamilyHandle* catalog) {
  rocksdb::WriteBatch drop;
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions(), records));
  for (const char tag : {kColumn, kBlob}) {
    const std::string prefix(1, tag);
    it->Seek(prefix);
    while (it->Valid() && it->key().starts_with(prefix) &&
           it->key().size() >= 9) {
      const BankIncarnation bank = ReadBigEndian(it->key().data() + 1);
      std::string ignored;
      const rocksdb::Status listed =
          db->Get(rocksdb::ReadOptions(), catalog, BankPrefix(kCatalog, bank),
                  &ignored);
      if (listed.IsNotFound()) {
        drop.DeleteRange(records, BankPrefix(tag, bank),
                         BankPrefix(tag, bank + 1));
      } else if (!listed.ok()) {
        return ToStatus(listed, "open");
      }
      if (bank == ~BankIncarnation{0}) break;
      it->Seek(BankPrefix(tag, bank + 1));
    }
    // A damaged block ends the sweep (its bank reports DATA_LOSS when it is
    // read); the store still opens.
    if (!it->status().ok()) break;
  }
  if (drop.Count() == 0) return absl::OkStatus();
  rocksdb::WriteOptions write;
  write.sync = true;
  return ToStatus(db->Write(write, &drop), "open");
}

// The side-file directory of the store in `dir`.
std::string SideFiles(const std::string& dir) { return dir + "/indexes"; }

// The incarnation a side file belongs to ("<incarnation>.<suffix>"), or 0
// for a name of another form.
BankIncarnation SideFileOwner(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  const size_t dot = name.find('.');
  uint64_t incarnation = 0;
  if (dot == std::string::npos || dot == 0 ||
      !absl::SimpleAtoi(absl::string_view(name).substr(0, dot), &incarnation)) {
    return 0;
  }
  return incarnation;
}

// Removes the side files of `bank` (best effort: they are derived data).
void RemoveSideFiles(const std::string& dir, BankIncarnation bank) {
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(SideFiles(dir), error)) {
    if (SideFileOwner(entry.path()) == bank) {
      std::filesystem::remove(entry.path(), error);
    }
  }
}

// RocksDB's diagnostics, warnings and worse, on stderr instead of a LOG file
// in the data directory: a full disk would fail the LOG file's writes too,
// and Debian's RocksDB (built with assertions) aborts on the next line
// logged through a writer that has seen an error. stderr is where the
// server's own log goes (and a container's log collector reads).
class StderrLogger final : public rocksdb::Logger {
 public:
  StderrLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::array<char, 1024> line{};
    const int n = std::vsnprintf(line.data(), line.size(), format, ap);
    if (n < 0) return;
    std::fprintf(stderr, "rocksdb: %s\n", line.data());
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStorage>> RocksDbStorage::Open(
    const std::string& dir, RocksDbStorageOptions options) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create the data directory ", dir, ": ", error.message()));
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // paranoid_checks stays on (the default): a failed log write or sync then
  // stops all writes instead of appending after a torn record, and log
  // recovery reports damage instead of skipping it. Table files are checked
  // block by block as they are read (ReadOptions::verify_checksums), so a
  // damaged record is DATA_LOSS for its bank when read, not for the store.
  db_options.paranoid_checks = true;
  // Replay the log up to its first inconsistency: every acknowledged batch
  // was synced before it was acknowledged, so what a crash can leave
  // inconsistent is the unsynced tail (writes nobody was told are
  // durable), torn or garbled after a power cut.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // The catalog family is written rarely and pins old log files until it
  // is flushed: cap the log so that recovery stays short.
  db_options.max_total_wal_size = 128ull << 20;
  db_options.IncreaseParallelism(2);
  db_options.info_log = std::make_shared<StderrLogger>();
  rocksdb::ColumnFamilyOptions family;
  // Patterns are floats: compression costs time and saves little.
  family.compression = rocksdb::kNoCompression;
  // The catalog and the incarnation count live in a family of their own, so
  // that no block of theirs also holds a bank's records.
  const std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, family}, {"catalog", family}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened =
      rocksdb::DB::Open(db_options, dir, families, &handles, &raw);
  if (!opened.ok()) {
    if (opened.IsCorruption()) return ToStatus(opened, "open");
    return absl::UnavailableError(absl::StrCat(
        "cannot open the data directory ", dir, ": ", opened.ToString()));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::ColumnFamilyHandle> records(handles[0]);
  std::unique_ptr<rocksdb::ColumnFamilyHandle> catalog(handles[1]);
  BankIncarnation last = 0;
  std::string value;
  const rocksdb::Status got = db->Get(rocksdb::ReadOptions(), catalog.get(),
                                      AsSlice(kLastIncarnationKey), &value);
  if (got.ok()) {
    auto payload = Unseal(kLastIncarnationKey, value,
                          [] { return std::string("the incarnation count"); });
    if (!payload.ok()) return payload.status();
    if (payload->size() != 8) {
      return absl::DataLossError("the incarnation count is corrupt");
    }
    last = ReadLittle(payload->data(), 8);
  } else if (!got.IsNotFound()) {
    return ToStatus(got, "open");
  }
  HOPFIELD_RETURN_IF_ERROR(DropOrphans(db.get(), records.get(), catalog.get()));
  // Side files: their directory, without files of deleted banks.
  std::filesystem::create_directories(SideFiles(dir), error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", SideFiles(dir), ": ", error.message()));
  }
  for (const auto& entry :
       std::filesystem::directory_iterator(SideFiles(dir), error)) {
    const BankIncarnation owner = SideFileOwner(entry.path());
    std::string ignored;
    if (owner == 0 || db->Get(rocksdb::ReadOptions(), catalog.get(),
                              BankPrefix(kCatalog, owner), &ignored)
                          .IsNotFound()) {
      std::filesystem::remove(entry.path(), error);
    }
  }
  return std::unique_ptr<RocksDbStorage>(
      new RocksDbStorage(dir, std::move(options), std::move(db),
                         std::move(records), std::move(catalog), last));
}

RocksDbStorage::RocksDbStorage(
    std::string dir, RocksDbStorageOptions options,
    std::unique_ptr<rocksdb::DB> db,
    std::unique_ptr<rocksdb::ColumnFamilyHandle> records,
    std::unique_ptr<rocksdb::ColumnFamilyHandle> catalog, BankIncarnation last)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      db_(std::move(db)),
      records_(std::move(records)),
      catalog_(std::move(catalog)),
      last_incarnation_(last) {}

RocksDbStorage::~RocksDbStorage() { Close().IgnoreError(); }

absl::Status RocksDbStorage::Close() {
  if (closed_) return absl::OkStatus();
  closed_ = true;
  absl::Status status;
  {
    const std::lock_guard<std::mutex> lock(sync_mu_);
    status = failure_;
  }
  // After a failed write or sync nothing more is written (RocksDB's log
  // writer must not be flushed again: Debian's build asserts); what was
  // acknowledged is in the synced log.
  if (status.ok()) {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    status = ToStatus(db_->Flush(flush, {records_.get(), catalog_.get()}),
                      "flush at close");
    const absl::Status synced = ToStatus(db_->SyncWAL(), "log sync at close");
    if (status.ok()) status = synced;
  }
  // Handles go before the database.
  records_.reset();
  catalog_.reset();
  const absl::Status closed = ToStatus(db_->Close(), "close");
  if (status.ok()) status = closed;
  return status;
}

absl::StatusOr<uint64_t> RocksDbStorage::Apply(const StorageBatch& batch) {
  {
    const std::lock_guard<std::mutex> lock(sync_mu_);
    if (!failure_.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "storage refuses writes after a failure: ", failure_.message()));
    }
  }
  if (batch.empty()) {
    return db_->GetLatestSequenceNumber();
  }
  rocksdb::WriteBatch out;
  BankIncarnation highest = 0;
  for (const StorageBatch::Op& op : batch.ops()) {
    if (op.bank == 0 || op.bank == ~BankIncarnation{0}) {
      return absl::InvalidArgumentError(
          absl::StrCat("bank incarnation ", op.bank, " is reserved"));
    }
    switch (op.kind) {
      case StorageBatch::OpKind::kPutBank: {
        const std::string key = BankPrefix(kCatalog, op.bank);
        std::string value;
        AppendLittle(op.name.size(), 4, &value);
        value += op.name;
        value += op.bytes;
        Seal(key, &value);
        out.Put(catalog_.get(), key, value);
        highest = std::max(highest, op.bank);
        break;
      }
      case StorageBatch::OpKind::kDeleteBank:
        out.Delete(catalog_.get(), BankPrefix(kCatalog, op.bank));
        out.DeleteRange(BankPrefix(kColumn, op.bank),
                        BankPrefix(kColumn, op.bank + 1));
        out.DeleteRange(BankPrefix(kBlob, op.bank),
                        BankPrefix(kBlob, op.bank + 1));
        break;
      case StorageBatch::OpKind::kPutColumn: {
        const std::string key = ColumnKey(op.bank, op.column);
        std::string value;
        value.reserve(8 + op.values.size() * sizeof(float) + kCrcBytes);
        AppendLittle(op.id, 8, &value);
        value.append(reinterpret_cast<const char*>(op.values.data()),
                     op.values.size() * sizeof(float));
        Seal(key, &value);
        out.Put(key, value);
        break;
      }
      case StorageBatch::OpKind::kTruncate:
        out.DeleteRange(ColumnKey(op.bank, op.column),
                        BankPrefix(kColumn, op.bank + 1));
        break;
      case StorageBatch::OpKind::kPutBlob: {
        const std::string key = BlobKey(op.bank, op.blob);
        std::string value = op.bytes;
        Seal(key, &value);
        out.Put(key, value);
        break;
      }
      case StorageBatch::OpKind::kDeleteBlob:
        out.Delete(BlobKey(op.bank, op.blob));
        break;
    }
  }
  WriterLock lock(&apply_mu_);
  if (highest > last_incarnation_) {
    std::string value;
    AppendLittle(highest, 8, &value);
    Seal(kLastIncarnationKey, &value);
    out.Put(catalog_.get(), AsSlice(kLastIncarnationKey), value);
  }
  rocksdb::WriteOptions write;
  write.sync = false;  // WaitDurable syncs, shared among waiters
  const rocksdb::Status status = db_->Write(write, &out);
  if (!status.ok()) {
    absl::Status failed = ToStatus(status, "write");
    // RocksDB stops writing after a failed log write (paranoid_checks), and
    // so does this store, with the cause in its message.
    const std::lock_guard<std::mutex> sync_lock(sync_mu_);
    if (failure_.ok()) failure_ = failed;
    return failed;
  }
  last_incarnation_ = std::max(last_incarnation_, highest);
  for (const StorageBatch::Op& op : batch.ops()) {
    if (op.kind == StorageBatch::OpKind::kDeleteBank) {
      RemoveSideFiles(dir_, op.bank);
    }
  }
  return db_->GetLatestSequenceNumber();
}

absl::Status RocksDbStorage::WaitDurable(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(sync_mu_);
  while (true) {
    if (!failure_.ok()) return failure_;
    if (synced_ >= ticket) return absl::OkStatus();
    if (syncing_) {
      // The running sync may have started before this ticket's write: wait
      // for it to end and look again.
      sync_done_.wait(lock, [this] { return !syncing_; });
      continue;
    }
    syncing_ = true;
    // Every batch Apply has returned is in the log file by now.
    const uint64_t target = db_->GetLatestSequenceNumber();
    lock.unlock();
    const absl::Time start = absl::Now();
    const rocksdb::Status status =
        options_.sync ? db_->SyncWAL() : rocksdb::Status::OK();
    if (options_.sync && options_.metrics != nullptr) {
      options_.metrics->OnStorageSync(absl::Now() - start, status.ok());
    }
    lock.lock();
    syncing_ = false;
    ++syncs_;
    if (!status.ok()) {
      failure_ = ToStatus(status, "sync");
    } else {
      synced_ = std::max(synced_, target);
    }
    sync_done_.notify_all();
  }
}

absl::Status RocksDbStorage::failure() const {
  const std::lock_guard<std::mutex> lock(sync_mu_);
  return failure_;
}

uint64_t RocksDbStorage::syncs() const {
  const std::lock_guard<std::mutex> lock(sync_mu_);
  return syncs_;
}

absl::StatusOr<std::vector<StoredBank>> RocksDbStorage::ListBanks() const {
  std::vector<StoredBank> banks;
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, catalog_.get()));
  const std::string prefix(1, kCatalog);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    StoredBank bank;
    if (key.size() != 9) {
      bank.status = absl::DataLossError(
          absl::StrCat("a catalog key is corrupt (", key.size(), " bytes)"));
      banks.push_back(std::move(bank));
      continue;
    }
    bank.incarnation = ReadBigEndian(key.data() + 1);
    auto what = [&bank] {
      return absl::StrCat("the catalog entry of bank incarnation ",
                          bank.incarnation);
    };
    auto payload = Unseal(
        key, absl::string_view(it->value().data(), it->value().size()), what);
    if (payload.ok() && payload->size() >= 4) {
      const uint64_t name_size = ReadLittle(payload->data(), 4);
      if (name_size <= payload->size() - 4) {
        bank.name = std::string(payload->substr(4, name_size));
        bank.config = std::string(payload->substr(4 + name_size));
      } else {
        payload = absl::DataLossError(absl::StrCat(what(), " is corrupt"));
      }
    } else if (payload.ok()) {
      payload = absl::DataLossError(absl::StrCat(what(), " is corrupt"));
    }
    bank.status = payload.status();
    banks.push_back(std::move(bank));
  }
  if (!it->status().ok()) return ToStatus(it->status(), "catalog read");
  return banks;
}

absl::StatusOr<BankIncarnation> RocksDbStorage::LastIncarnation() const {
  ReaderLock lock(&apply_mu_);
  return last_incarnation_;
}

absl::Status RocksDbStorage::ReadColumns(
    BankIncarnation bank,
    const std::function<absl::Status(uint64_t, uint64_t,
                                     absl::Span<const float>)>& visit) const {
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  read.fill_cache = false;  // read once, at start-up
  const std::string prefix = BankPrefix(kColumn, bank);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read));
  std::vector<float> values;
  uint64_t expected = 0;
  // Seek to the first column's full key, not to the bank's prefix: RocksDB
  // may read the block before a shortened index separator, which holds the
  // previous bank's last record (damage there must not fail this bank).
  for (it->Seek(ColumnKey(bank, 0));
       it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    // Messages are built only on failure (this runs once per record).
    auto where = [&] {
      return absl::StrCat("bank incarnation ", bank, ": column ", expected);
    };
    if (key.size() != 17) {
      return absl::DataLossError(absl::StrCat(where(), ": a key is corrupt"));
    }
    const uint64_t column = ReadBigEndian(key.data() + 9);
    if (column != expected) {
      return absl::DataLossError(absl::StrCat(where(), " is missing"));
    }
    auto payload =
        Unseal(key, absl::string_view(it->value().data(), it->value().size()),
               [&] { return absl::StrCat(where(), "'s record"); });
    if (!payload.ok()) return payload.status();
    if (payload->size() < 8 || (payload->size() - 8) % sizeof(float) != 0) {
      return absl::DataLossError(absl::StrCat(where(), "'s record is corrupt (",
                                              payload->size(), " bytes)"));
    }
    const uint64_t id = ReadLittle(payload->data(), 8);
    values.resize((payload->size() - 8) / sizeof(float));
    std::memcpy(values.data(), payload->data() + 8,
                values.size() * sizeof(float));
    absl::Status status = visit(column, id, values);
    if (!status.ok()) return status;
    ++expected;
  }
  if (!it->status().ok()) {
    return ToStatus(it->status(),
                    absl::StrCat("read of bank incarnation ", bank));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> RocksDbStorage::ReadBlob(
    BankIncarnation bank, BlobKind kind) const {
  const std::string key = BlobKey(bank, kind);
  std::string value;
  rocksdb::ReadOptions read;
  read.verify_checksums = true;
  const rocksdb::Status got = db_->Get(read, key, &value);
  if (got.IsNotFound()) return std::optional<std::string>();
  if (!got.ok()) return ToStatus(got, "blob read");
  auto payload = Unseal(key, value, [&] {
    return absl::StrCat("bank incarnation ", bank, ": blob ",
                        static_cast<int>(kind));
  });
  if (!payload.ok()) return payload.status();
  return std::optional<std::string>(std::string(*payload));
}

absl::Status RocksDbStorage::Checkpoint(const std::string& dir) {
  std::error_code error;
  const bool exists = std::filesystem::exists(dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        "cannot check the backup directory ", dir, ": ", error.message()));
  }
  if (exists) {
    return absl::AlreadyExistsError(
        absl::StrCat("backup directory ", dir, " already exists"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  {
    const rocksdb::Status created =
        rocksdb::Checkpoint::Create(db_.get(), &raw);
    if (!created.ok()) return ToStatus(created, "checkpoint");
  }
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  HOPFIELD_RETURN_IF_ERROR(
      ToStatus(checkpoint->CreateCheckpoint(dir), "checkpoint"));
  // Side files (saved indexes): linked, or copied across file systems. A
  // file replaced meanwhile is a stale or whole one either way (replacement
  // is a rename), and a stale one is ignored at load.
  std::filesystem::create_directories(SideFiles(dir), error);
  for (const auto& entry :
       std::filesystem::directory_iterator(SideFiles(dir_), error)) {
    if (entry.path().extension() == ".tmp") continue;
    const std::filesystem::path target =
        std::filesystem::path(SideFiles(dir)) / entry.path().filename();
    std::error_code link_error;
    std::filesystem::create_hard_link(entry.path(), target, link_error);
    if (link_error) {
      std::filesystem::copy_file(entry.path(), target, link_error);
    }
  }
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        "cannot copy the search indexes into ", dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

std::string RocksDbStorage::SideFileDirectory() const {
  return SideFiles(dir_);
}

}  // namespace hopfield
