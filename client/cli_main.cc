// hopfield: the command-line client of hopfieldd.
//
//   hopfield [--server=127.0.0.1:50051] COMMAND [ARGS] [--flags]
//
//   create-bank NAME --dim=N [--similarity=cosine|dot] [--separation=...]
//   banks                          list banks (tab-separated, one per line)
//   bank NAME                      one bank's config and statistics
//   delete-bank NAME
//   store BANK FILE [--offset=R] [--limit=N] [--first_id=ID]
//   get BANK ID...                 patterns as CSV lines "id,v1,v2,..."
//   forget BANK ID...
//   retrieve BANK FILE [--offset=R] [--limit=N] [--mask_fraction=F]
//            [--noise=S] [--expect_first_id=ID] [--output=FIXED_POINTS.csv]
//   train BANK [--mode=separation|uhop_compat] [--feature_dim=D]
//         [--iterations=N] [--learning_rate=L] [--temperature=T]
//         [--final_temperature=T] [--batch_size=B] [--train_seed=S]
//         [--validation_mask_fraction=F] [--validation_noise=S]
//         [--skip_validation]          progress bar, then the result
//   health [SERVICE]
//
// FILE is IDX (gzip or plain; bytes scaled to [0, 1]), CSV or .npy, one
// pattern per row. Results go to stdout as plain text for scripts; a
// progress bar goes to stderr when it is a terminal. The exit status is the
// gRPC status code of the failing call (0 = OK, 3 = INVALID_ARGUMENT,
// 5 = NOT_FOUND, ...), 64 for usage errors.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

#include "client/memory_client.h"
#include "client/pattern_files.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "hopfieldd address host:port");
ABSL_FLAG(double, timeout_seconds, 60, "deadline of each request");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "the server's message limit");
ABSL_FLAG(bool, tls, false,
          "connect over TLS, verifying the server with the system's roots "
          "(implied by any --tls_*_file)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM certificates that verify the server (its CA or its "
          "self-signed certificate); implies TLS");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate chain for mutual TLS (with "
          "--tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "name the server's certificate must carry (default: the host of "
          "--server)");
ABSL_FLAG(std::string, api_key, "",
          "API key sent as 'authorization: Bearer KEY' (default: "
          "$HOPFIELD_API_KEY)");
// create-bank (bank defaults) and retrieve (per-request overrides).
ABSL_FLAG(uint32_t, dim, 0, "create-bank: pattern dimension");
ABSL_FLAG(std::string, similarity, "", "create-bank: cosine (default) or dot");
ABSL_FLAG(std::string, separation, "",
          "softmax (default), softmax1, sparsemax or entmax");
ABSL_FLAG(float, entmax_alpha, 0, "create-bank: α of entmax (0 = 1.5)");
ABSL_FLAG(float, beta, 0, "inverse temperature β (0 = automatic / bank's)");
ABSL_FLAG(uint32_t, max_iterations, 0, "update steps (0 = bank's / 10)");
ABSL_FLAG(float, tolerance, 0,
          "create-bank: weight-change tolerance (0 = 1e-4)");
ABSL_FLAG(std::string, search, "", "auto (default), exact or approximate");
ABSL_FLAG(uint32_t, top_k, 0, "candidates for approximate search (0 = 64)");
ABSL_FLAG(uint32_t, feature_dim, 0, "create-bank / train: feature dimension");
// store / retrieve.
ABSL_FLAG(uint64_t, offset, 0, "first row of FILE to use");
ABSL_FLAG(uint64_t, limit, 0, "rows of FILE to use (0 = all)");
ABSL_FLAG(uint64_t, first_id, 0,
          "store: id of the first row, then consecutive (0 = server assigns)");
ABSL_FLAG(bool, print_ids, false, "store: print every assigned id");
ABSL_FLAG(double, mask_fraction, 0,
          "retrieve: zero this fraction of each query's values");
ABSL_FLAG(double, noise, 0,
          "retrieve: add Gaussian noise of this σ to each value");
ABSL_FLAG(uint64_t, seed, 1, "retrieve: seed for --mask_fraction and --noise");
ABSL_FLAG(
    uint64_t, expect_first_id, 0,
    "retrieve: row r should retrieve id expect_first_id + r; print recall");
ABSL_FLAG(uint32_t, return_matches, 1,
          "retrieve: (id, weight) pairs per query");
ABSL_FLAG(uint32_t, batch, 256, "retrieve: queries per request");
ABSL_FLAG(std::string, output, "", "retrieve: write fixed points to this CSV");
// train.
ABSL_FLAG(uint32_t, iterations, 0, "train: optimiser iterations");
ABSL_FLAG(float, learning_rate, 0, "train: learning rate");
ABSL_FLAG(float, temperature, 0, "train: separation-loss temperature τ");
ABSL_FLAG(uint64_t, train_seed, 0, "train: seed");
ABSL_FLAG(std::string, mode, "",
          "train: separation (default) or uhop_compat (the U-Hop protocol)");
ABSL_FLAG(float, final_temperature, 0,
          "train: anneal τ to this (0 = constant τ)");
ABSL_FLAG(uint32_t, batch_size, 0, "train: minibatch size (0 = 1024)");
ABSL_FLAG(float, validation_mask_fraction, 0,
          "train: validation queries zero this fraction of values");
ABSL_FLAG(float, validation_noise, 0,
          "train: validation noise σ relative to the pattern's RMS value "
          "(both 0: mask 0.5)");
ABSL_FLAG(bool, skip_validation, false,
          "train: publish the map without the validation gate");

namespace {

using hopfield::client::ApiKeyFromEnvironment;
using hopfield::client::ClientOptions;
using hopfield::client::MemoryClient;
using hopfield::client::PatternMatrix;
namespace v1 = hopfield::v1;

constexpr int kUsageError = 64;

int Fail(const absl::Status& status) {
  std::cerr << "hopfield: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << "\n";
  return static_cast<int>(status.code());
}

int Usage(const std::string& message) {
  std::cerr << "hopfield: " << message << "\n(see hopfield --help)\n";
  return kUsageError;
}

// A progress bar on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  explicit Progress(std::string what)
      : what_(std::move(what)),
        enabled_(isatty(STDERR_FILENO) == 1),
        start_(absl::Now()) {}
  ~Progress() {
    if (drawn_) std::cerr << "\n";
  }
  void operator()(uint64_t done, uint64_t total) {
    if (!enabled_ || total == 0) return;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    std::cerr << "\r[" << std::string(static_cast<size_t>(filled), '=')
              << std::string(static_cast<size_t>(kWidth - filled), ' ') << "] "
              << done << "/" << total << " " << what_;
    if (seconds > 0) {
      std::cerr << " "
                << static_cast<uint64_t>(static_cast<double>(done) / seconds)
                << "/s";
    }
    std::cerr << std::flush;
    drawn_ = true;
  }

 private:
  const std::string what_;
  const bool enabled_;
  const absl::Time start_;
  bool drawn_ = false;
};

absl::StatusOr<v1::Similarity> ParseSimilarity(const std::string& text) {
  if (text.empty()) return v1::SIMILARITY_UNSPECIFIED;
  if (text == "cosine") return v1::SIMILARITY_COSINE;
  if (text == "dot") return v1::SIMILARITY_DOT;
  return absl::InvalidArgumentError(
      absl::StrCat("--similarity: expected cosine or dot, got \"", text, "\""));
}

absl::StatusOr<v1::Separation> ParseSeparation(const std::string& text) {
  if (text.empty()) return v1::SEPARATION_UNSPECIFIED;
  if (text == "softmax") return v1::SEPARATION_SOFTMAX;
  if (text == "softmax1") return v1::SEPARATION_SOFTMAX1;
  if (text == "sparsemax") return v1::SEPARATION_SPARSEMAX;
  if (text == "entmax") return v1::SEPARATION_ENTMAX;
  return absl::InvalidArgumentError(absl::StrCat(
      "--separation: expected softmax, softmax1, sparsemax or entmax, got \"",
      text, "\""));
}

absl::StatusOr<v1::SearchMode> ParseSearch(const std::string& text) {
  if (text.empty() || text == "auto") return v1::SEARCH_MODE_UNSPECIFIED;
  if (text == "exact") return v1::SEARCH_MODE_EXACT;
  if (text == "approximate") return v1::SEARCH_MODE_APPROXIMATE;
  return absl::InvalidArgumentError(absl::StrCat(
      "--search: expected auto, exact or approximate, got \"", text, "\""));
}

std::string SimilarityName(v1::Similarity s) {
  return s == v1::SIMILARITY_DOT ? "dot" : "cosine";
}

std::string SeparationName(v1::Separation s) {
  switch (s) {
    case v1::SEPARATION_SOFTMAX1:
      return "softmax1";
    case v1::SEPARATION_SPARSEMAX:
      return "sparsemax";
    case v1::SEPARATION_ENTMAX:
      return "entmax";
    default:
      return "softmax";
  }
}

void PrintBank(const v1::Bank& bank) {
  const v1::BankConfig& c = bank.config();
  std::cout << "name=" << bank.name() << " dim=" << c.dim()
            << " similarity=" << SimilarityName(c.similarity())
            << " separation=" << SeparationName(c.separation()) << " beta="
            << (c.beta() == 0 ? std::string("auto") : absl::StrCat(c.beta()))
            << " effective_beta=" << bank.effective_beta()
            << " max_iterations=" << c.max_iterations()
            << " patterns=" << bank.pattern_count()
            << " memory_bytes=" << bank.memory_bytes()
            << " min_separation=" << bank.min_separation()
            << " min_separation_distinct=" << bank.min_separation_distinct()
            << " separation_p01=" << bank.separation_p01()
            << " duplicate_count=" << bank.duplicate_count()
            << " capacity_utilization=" << bank.capacity_utilization()
            << " separation_pending=" << bank.separation_pending()
            << " separation_estimated=" << bank.separation_estimated()
            << " feature_map_version=" << bank.feature_map_version()
            << " feature_dim=" << bank.feature_dim()
            << " index_size=" << bank.index_size()
            << " index_pending=" << bank.index_pending()
            << " index_current=" << (bank.index_current() ? "true" : "false")
            << "\n";
}

// Rows [--offset, --offset + --limit) of FILE.
absl::StatusOr<PatternMatrix> ReadRows(const std::string& path) {
  absl::StatusOr<PatternMatrix> matrix =
      hopfield::client::ReadPatternFile(path);
  if (!matrix.ok()) return matrix.status();
  const uint64_t offset = absl::GetFlag(FLAGS_offset);
  uint64_t limit = absl::GetFlag(FLAGS_limit);
  if (offset > matrix->rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--offset=", offset, " is past the ", matrix->rows, " rows of ", path));
  }
  if (limit == 0 || offset + limit > matrix->rows)
    limit = matrix->rows - offset;
  PatternMatrix rows;
  rows.rows = limit;
  rows.cols = matrix->cols;
  rows.values.assign(
      matrix->values.begin() +
          static_cast<std::ptrdiff_t>(offset * matrix->cols),
      matrix->values.begin() +
          static_cast<std::ptrdiff_t>((offset + limit) * matrix->cols));
  return rows;
}

absl::StatusOr<std::vector<uint64_t>> ParseIds(const std::vector<char*>& args,
                                               size_t first) {
  std::vector<uint64_t> ids;
  for (size_t i = first; i < args.size(); ++i) {
    uint64_t id = 0;
    if (!absl::SimpleAtoi(args[i], &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a numeric id, got \"", args[i], "\""));
    }
    ids.push_back(id);
  }
  if (ids.empty())
    return absl::InvalidArgumentError("expected at least one id");
  return ids;
}

int CreateBank(MemoryClient& client, const std::string& name) {
  v1::BankConfig config;
  config.set_dim(absl::GetFlag(FLAGS_dim));
  absl::StatusOr<v1::Similarity> similarity =
      ParseSimilarity(absl::GetFlag(FLAGS_similarity));
  absl::StatusOr<v1::Separation> separation =
      ParseSeparation(absl::GetFlag(FLAGS_separation));
  absl::StatusOr<v1::SearchMode> search =
      ParseSearch(absl::GetFlag(FLAGS_search));
  for (const absl::Status& s :
       {similarity.status(), separation.status(), search.status()}) {
    if (!s.ok()) return Usage(std::string(s.message()));
  }
  config.set_similarity(*similarity);
  config.set_separation(*separation);
  config.set_search(*search);
  config.set_entmax_alpha(absl::GetFlag(FLAGS_entmax_alpha));
  config.set_beta(absl::GetFlag(FLAGS_beta));
  config.set_max_iterations(absl::GetFlag(FLAGS_max_iterations));
  config.set_tolerance(absl::GetFlag(FLAGS_tolerance));
  config.set_top_k(absl::GetFlag(FLAGS_top_k));
  config.set_feature_dim(absl::GetFlag(FLAGS_feature_dim));
  absl::StatusOr<v1::Bank> bank = client.CreateBank(name, config);
  if (!bank.ok()) return Fail(bank.status());
  PrintBank(*bank);
  return 0;
}

int Store(MemoryClient& client, const std::string& bank,
          const std::string& path) {
  absl::StatusOr<PatternMatrix> rows = ReadRows(path);
  if (!rows.ok()) return Fail(rows.status());
  std::vector<uint64_t> ids;
  if (const uint64_t first = absl::GetFlag(FLAGS_first_id); first != 0) {
    for (uint64_t r = 0; r < rows->rows; ++r) ids.push_back(first + r);
  }
  absl::StatusOr<std::vector<uint64_t>> stored = [&] {
    Progress progress("patterns stored");
    return client.Store(
        bank, rows->cols, rows->values, ids,
        [&progress](uint64_t done, uint64_t total) { progress(done, total); });
  }();
  if (!stored.ok()) return Fail(stored.status());
  if (absl::GetFlag(FLAGS_print_ids)) {
    for (const uint64_t id : *stored) std::cout << id << "\n";
  }
  std::cout << "stored=" << stored->size();
  if (!stored->empty()) {
    std::cout << " first_id=" << stored->front()
              << " last_id=" << stored->back();
  }
  std::cout << "\n";
  return 0;
}

int Retrieve(MemoryClient& client, const std::string& bank,
             const std::string& path) {
  absl::StatusOr<PatternMatrix> rows = ReadRows(path);
  if (!rows.ok()) return Fail(rows.status());
  const double mask = absl::GetFlag(FLAGS_mask_fraction);
  const double noise = absl::GetFlag(FLAGS_noise);
  if (mask < 0 || mask > 1 || noise < 0) {
    return Usage("--mask_fraction must be in [0, 1] and --noise >= 0");
  }
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::bernoulli_distribution drop(mask);
  // (σ must be positive even when unused: σ = 0 is undefined behaviour.)
  std::normal_distribution<float> gaussian(
      0.0f, noise > 0 ? static_cast<float>(noise) : 1.0f);
  for (float& v : rows->values) {
    if (mask > 0 && drop(rng)) v = 0.0f;
    if (noise > 0) v += gaussian(rng);
  }
  v1::RetrieveOptions options;
  absl::StatusOr<v1::Separation> separation =
      ParseSeparation(absl::GetFlag(FLAGS_separation));
  absl::StatusOr<v1::SearchMode> search =
      ParseSearch(absl::GetFlag(FLAGS_search));
  if (!separation.ok())
    return Usage(std::string(separation.status().message()));
  if (!search.ok()) return Usage(std::string(search.status().message()));
  options.set_separation(*separation);
  options.set_search(*search);
  options.set_beta(absl::GetFlag(FLAGS_beta));
  options.set_max_iterations(absl::GetFlag(FLAGS_max_iterations));
  options.set_top_k(absl::GetFlag(FLAGS_top_k));
  options.set_return_matches(absl::GetFlag(FLAGS_return_matches));
  const std::string output = absl::GetFlag(FLAGS_output);
  options.set_omit_pattern(output.empty());
  absl::StatusOr<std::vector<v1::Retrieval>> results = [&] {
    Progress progress("queries retrieved");
    return client.Retrieve(
        bank, rows->cols, rows->values, options, absl::GetFlag(FLAGS_batch),
        [&progress](uint64_t done, uint64_t total) { progress(done, total); });
  }();
  if (!results.ok()) return Fail(results.status());
  std::cout << "query\tnearest_id\tnearest_weight\titerations\tconverged\t"
               "metastable\tsupport_size\tenergy\tmatches\n";
  const uint64_t expect = absl::GetFlag(FLAGS_expect_first_id);
  uint64_t hits = 0;
  std::ofstream fixed_points;
  if (!output.empty()) {
    fixed_points.open(output, std::ios::trunc);
    if (!fixed_points) {
      return Fail(
          absl::PermissionDeniedError(absl::StrCat("cannot write ", output)));
    }
  }
  for (size_t q = 0; q < results->size(); ++q) {
    const v1::Retrieval& r = (*results)[q];
    std::vector<std::string> matches;
    for (const v1::Match& m : r.matches()) {
      matches.push_back(absl::StrCat(m.id(), ":", m.weight()));
    }
    std::cout << absl::GetFlag(FLAGS_offset) + q << "\t" << r.nearest_id()
              << "\t" << r.nearest_weight() << "\t" << r.iterations() << "\t"
              << (r.converged() ? "true" : "false") << "\t"
              << (r.metastable() ? "true" : "false") << "\t" << r.support_size()
              << "\t" << r.energy() << "\t" << absl::StrJoin(matches, ",")
              << "\n";
    if (expect != 0 && r.nearest_id() == expect + q) ++hits;
    if (fixed_points.is_open()) {
      fixed_points << absl::StrJoin(r.pattern(), ",") << "\n";
    }
  }
  if (expect != 0 && !results->empty()) {
    std::cerr << "recall="
              << static_cast<double>(hits) /
                     static_cast<double>(results->size())
              << " (" << hits << "/" << results->size() << ")\n";
  }
  return 0;
}

int Train(MemoryClient& client, const std::string& bank) {
  v1::TrainOptions options;
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "uhop_compat") {
    options.set_mode(v1::TRAIN_MODE_UHOP_COMPAT);
  } else if (mode == "separation") {
    options.set_mode(v1::TRAIN_MODE_SEPARATION);
  } else if (!mode.empty()) {
    return Usage(absl::StrCat(
        "--mode must be separation or uhop_compat, got \"", mode, "\""));
  }
  options.set_feature_dim(absl::GetFlag(FLAGS_feature_dim));
  options.set_iterations(absl::GetFlag(FLAGS_iterations));
  options.set_learning_rate(absl::GetFlag(FLAGS_learning_rate));
  options.set_temperature(absl::GetFlag(FLAGS_temperature));
  options.set_final_temperature(absl::GetFlag(FLAGS_final_temperature));
  options.set_batch_size(absl::GetFlag(FLAGS_batch_size));
  options.set_seed(absl::GetFlag(FLAGS_train_seed));
  options.set_validation_mask_fraction(
      absl::GetFlag(FLAGS_validation_mask_fraction));
  options.set_validation_noise(absl::GetFlag(FLAGS_validation_noise));
  options.set_skip_validation(absl::GetFlag(FLAGS_skip_validation));
  Progress progress("iterations");
  absl::StatusOr<v1::TrainResult> result =
      client.Train(bank, options, [&](const v1::TrainProgress& p) {
        progress(p.iteration(), p.total_iterations());
      });
  if (!result.ok()) return Fail(result.status());
  std::cout << "accepted=" << (result->accepted() ? "true" : "false")
            << " feature_map_version=" << result->feature_map_version()
            << " min_separation_before=" << result->min_separation_before()
            << " min_separation_after=" << result->min_separation_after()
            << " min_separation_exact="
            << (result->min_separation_exact() ? "true" : "false")
            << " validation_accuracy_before="
            << result->validation_accuracy_before()
            << " validation_accuracy_after="
            << result->validation_accuracy_after()
            << " validation_error_before=" << result->validation_error_before()
            << " validation_error_after=" << result->validation_error_after()
            << " validation_queries=" << result->validation_queries()
            << " training_patterns=" << result->training_patterns()
            << " iterations=" << result->iterations()
            << " loss=" << result->loss() << " seconds=" << result->seconds()
            << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the hopfield command-line client.\n"
      "  hopfield [--server=HOST:PORT] COMMAND [ARGS] [--flags]\n"
      "commands: create-bank NAME --dim=N | banks | bank NAME | delete-bank "
      "NAME |\n"
      "  store BANK FILE | get BANK ID... | forget BANK ID... |\n"
      "  retrieve BANK FILE | train BANK | backup DIR | health [SERVICE]\n"
      "FILE: IDX (.gz or plain), CSV or .npy, one pattern per row.\n"
      "Exit status: the gRPC code of a failed call; 64 for usage errors.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage("expected a command");
  const std::string command = args[1];
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.tls = absl::GetFlag(FLAGS_tls);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty()) options.api_key = ApiKeyFromEnvironment();
  absl::StatusOr<std::unique_ptr<MemoryClient>> connected =
      MemoryClient::Connect(options);
  if (!connected.ok()) return Usage(std::string(connected.status().message()));
  MemoryClient& client = **connected;
  auto need = [&](size_t count, const char* shape) -> bool {
    if (args.size() >= count + 2) return true;
    Usage(absl::StrCat("usage: hopfield ", command, " ", shape));
    return false;
  };

  if (command == "create-bank") {
    if (!need(1, "NAME --dim=N")) return kUsageError;
    return CreateBank(client, args[2]);
  }
  if (command == "banks") {
    absl::StatusOr<std::vector<v1::Bank>> banks = client.ListBanks();
    if (!banks.ok()) return Fail(banks.status());
    std::cout << "name\tdim\tpatterns\tmemory_bytes\tmin_separation\tcapacity_"
                 "utilization\n";
    for (const v1::Bank& bank : *banks) {
      std::cout << bank.name() << "\t" << bank.config().dim() << "\t"
                << bank.pattern_count() << "\t" << bank.memory_bytes() << "\t"
                << bank.min_separation() << "\t" << bank.capacity_utilization()
                << "\n";
    }
    return 0;
  }
  if (command == "bank") {
    if (!need(1, "NAME")) return kUsageError;
    absl::StatusOr<v1::Bank> bank = client.GetBank(args[2]);
    if (!bank.ok()) return Fail(bank.status());
    PrintBank(*bank);
    return 0;
  }
  if (command == "delete-bank") {
    if (!need(1, "NAME")) return kUsageError;
    absl::Status status = client.DeleteBank(args[2]);
    if (!status.ok()) return Fail(status);
    std::cout << "deleted=" << args[2] << "\n";
    return 0;
  }
  if (command == "store") {
    if (!need(2, "BANK FILE")) return kUsageError;
    return Store(client, args[2], args[3]);
  }
  if (command == "get" || command == "forget") {
    if (!need(2, "BANK ID...")) return kUsageError;
    absl::StatusOr<std::vector<uint64_t>> ids = ParseIds(args, 3);
    if (!ids.ok()) return Usage(std::string(ids.status().message()));
    if (command == "forget") {
      absl::StatusOr<uint64_t> forgotten = client.Forget(args[2], *ids);
      if (!forgotten.ok()) return Fail(forgotten.status());
      std::cout << "forgotten=" << *forgotten << "\n";
      return 0;
    }
    absl::StatusOr<std::vector<v1::Pattern>> patterns =
        client.GetPatterns(args[2], *ids);
    if (!patterns.ok()) return Fail(patterns.status());
    for (const v1::Pattern& p : *patterns) {
      std::cout << p.id() << "," << absl::StrJoin(p.values(), ",") << "\n";
    }
    return 0;
  }
  if (command == "retrieve") {
    if (!need(2, "BANK FILE")) return kUsageError;
    return Retrieve(client, args[2], args[3]);
  }
  if (command == "train") {
    if (!need(1, "BANK")) return kUsageError;
    return Train(client, args[2]);
  }
  if (command == "backup") {
    if (!need(1, "DIR")) return kUsageError;
    // The server writes the copy: a relative DIR means the caller's
    // working directory (the CLI usually runs on the server's machine).
    std::string dir = args[2];
    if (!dir.empty() && dir.front() != '/') {
      std::error_code error;
      const std::filesystem::path absolute =
          std::filesystem::absolute(dir, error);
      if (!error) dir = absolute.string();
    }
    absl::StatusOr<v1::BackupResponse> backup = client.Backup(dir);
    if (!backup.ok()) return Fail(backup.status());
    std::cout << "backup=" << backup->dir() << " banks=" << backup->banks()
              << " seconds=" << backup->seconds() << "\n";
    return 0;
  }
  if (command == "health") {
    const std::string service = args.size() > 2 ? args[2] : "";
    absl::StatusOr<bool> serving = client.Health(service);
    if (!serving.ok()) return Fail(serving.status());
    std::cout << (*serving ? "SERVING" : "NOT_SERVING") << "\n";
    return *serving ? 0 : static_cast<int>(absl::StatusCode::kUnavailable);
  }
  return Usage(absl::StrCat("unknown command \"", command, "\""));
}
