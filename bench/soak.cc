#include "bench/soak.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace hopfield::bench {
namespace {

using Clock = std::chrono::steady_clock;

enum Method {
  kStore,
  kForget,
  kRetrieve,
  kGetPatterns,
  kGetBank,
  kTrain,
  kReaderRetrieve,
  kReaderWrite,
  kMethods
};

constexpr std::array<const char*, kMethods> kMethodNames = {
    "Store",
    "Forget",
    "Retrieve",
    "GetPatterns",
    "GetBank",
    "Train",
    "Retrieve(read-only key)",
    "Store(read-only key)"};

// Whether `code` is a reply `method` may get under this load.
bool Expected(Method method, absl::StatusCode code) {
  if (method == kReaderWrite)
    return code == absl::StatusCode::kPermissionDenied;
  if (code == absl::StatusCode::kOk) return true;
  // Load shedding: the worker queue or the memory budget is full.
  if (code == absl::StatusCode::kResourceExhausted) return true;
  return method == kTrain && code == absl::StatusCode::kFailedPrecondition;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The values of pattern `id`: uniform in [-1, 1), from the id alone.
void PatternValues(uint64_t id, uint32_t dim, float* out) {
  for (uint32_t j = 0; j < dim; ++j) {
    const uint64_t bits = Mix(id * 0x100000001B3ULL + j) >> 40;  // 24 bits
    out[j] = static_cast<float>(static_cast<double>(bits) / 8388608.0 - 1.0);
  }
}

std::vector<float> Values(absl::Span<const uint64_t> ids, uint32_t dim) {
  std::vector<float> values(ids.size() * dim);
  for (size_t i = 0; i < ids.size(); ++i) {
    PatternValues(ids[i], dim, &values[i * dim]);
  }
  return values;
}

// What one thread saw.
struct Tally {
  std::array<std::vector<double>, kMethods> latencies_ms;
  std::map<std::pair<int, absl::StatusCode>, uint64_t> codes;
  uint64_t unexpected = 0;
  std::string first_unexpected;
  uint64_t wrong = 0;
  std::string first_wrong;

  void Record(Method method, const absl::Status& status, double ms) {
    latencies_ms[method].push_back(ms);
    ++codes[{method, status.code()}];
    if (!Expected(method, status.code())) {
      ++unexpected;
      if (first_unexpected.empty()) {
        first_unexpected =
            absl::StrCat(kMethodNames[method], ": ", status.ToString());
      }
    }
  }
  void Wrong(const std::string& what) {
    ++wrong;
    if (first_wrong.empty()) first_wrong = what;
  }
};

// Times `call` (returning absl::Status or absl::StatusOr) into `tally`.
template <typename Call>
auto Timed(Tally& tally, Method method, const Call& call) {
  const Clock::time_point t0 = Clock::now();
  auto result = call();
  const double ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if constexpr (std::is_same_v<decltype(result), absl::Status>) {
    tally.Record(method, result, ms);
  } else {
    tally.Record(method, result.status(), ms);
  }
  return result;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(
      sorted.size() - 1,
      static_cast<size_t>(p * static_cast<double>(sorted.size())))];
}

// Resident memory of `pid` in bytes (0 when unreadable).
uint64_t ResidentBytes(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// One writer's patterns: ids (w + 1) << 40 upwards.
struct Writer {
  std::deque<uint64_t> live;
  std::vector<uint64_t> forgotten;  // a sample, for the final check
  uint64_t next_id = 0;
  Tally tally;
};

constexpr size_t kForgottenSample = 2000;

void RunWriter(const SoakOptions& options, client::MemoryClient& client,
               Writer& writer, uint64_t seed, Clock::time_point end) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> choose(0.0, 1.0);
  const uint32_t dim = options.dim;
  std::vector<float> query(dim);
  while (Clock::now() < end) {
    const double u = choose(rng);
    if (u < 0.25) {
      if (writer.live.size() + options.batch > options.working_set) {
        // Full: forget the oldest batch.
        std::vector<uint64_t> ids(
            writer.live.begin(),
            writer.live.begin() + static_cast<std::ptrdiff_t>(std::min(
                                      options.batch, writer.live.size())));
        absl::StatusOr<uint64_t> forgotten = Timed(writer.tally, kForget, [&] {
          return client.Forget(options.bank, ids);
        });
        if (forgotten.ok()) {
          if (*forgotten != ids.size()) {
            writer.tally.Wrong(absl::StrCat("Forget of ", ids.size(),
                                            " stored ids forgot ", *forgotten));
          }
          writer.live.erase(
              writer.live.begin(),
              writer.live.begin() + static_cast<std::ptrdiff_t>(ids.size()));
          for (const uint64_t id : ids) {
            if (writer.forgotten.size() < kForgottenSample) {
              writer.forgotten.push_back(id);
            }
          }
        }
      } else {
        std::vector<uint64_t> ids(options.batch);
        for (uint64_t& id : ids) id = writer.next_id++;
        const std::vector<float> values = Values(ids, dim);
        absl::StatusOr<std::vector<uint64_t>> stored =
            Timed(writer.tally, kStore,
                  [&] { return client.Store(options.bank, dim, values, ids); });
        if (stored.ok()) {
          writer.live.insert(writer.live.end(), ids.begin(), ids.end());
        }
      }
    } else if (u < 0.80 && !writer.live.empty()) {
      // One of its own patterns, exactly: the answer must be its id.
      const uint64_t id = writer.live[std::uniform_int_distribution<size_t>(
          0, writer.live.size() - 1)(rng)];
      PatternValues(id, dim, query.data());
      v1::RetrieveOptions retrieve;
      retrieve.set_omit_pattern(true);
      absl::StatusOr<std::vector<v1::Retrieval>> found = Timed(
          writer.tally, kRetrieve,
          [&] { return client.Retrieve(options.bank, dim, query, retrieve); });
      if (found.ok() &&
          (found->size() != 1 || (*found)[0].nearest_id() != id)) {
        writer.tally.Wrong(
            absl::StrCat("Retrieve of stored pattern ", id, " answered ",
                         found->empty() ? 0 : (*found)[0].nearest_id()));
      }
    } else if (u < 0.95 && !writer.live.empty()) {
      std::vector<uint64_t> ids(4);
      for (uint64_t& id : ids) {
        id = writer.live[std::uniform_int_distribution<size_t>(
            0, writer.live.size() - 1)(rng)];
      }
      absl::StatusOr<std::vector<v1::Pattern>> got =
          Timed(writer.tally, kGetPatterns,
                [&] { return client.GetPatterns(options.bank, ids); });
      if (got.ok()) {
        const std::vector<float> want = Values(ids, dim);
        for (size_t i = 0; i < got->size(); ++i) {
          const v1::Pattern& pattern = (*got)[i];
          if (pattern.id() != ids[i] ||
              static_cast<size_t>(pattern.values_size()) != dim ||
              std::memcmp(pattern.values().data(), &want[i * dim],
                          dim * sizeof(float)) != 0) {
            writer.tally.Wrong(
                absl::StrCat("GetPatterns of ", ids[i], " differs"));
          }
        }
      }
    } else {
      (void)Timed(writer.tally, kGetBank,
                  [&] { return client.GetBank(options.bank); });
    }
  }
}

void RunReader(const SoakOptions& options, client::MemoryClient& client,
               Tally& tally, Clock::time_point end) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> query(options.dim);
  for (uint64_t i = 0; Clock::now() < end; ++i) {
    if (i % 10 == 9) {
      // Must be refused, and store nothing.
      std::vector<uint64_t> ids = {1};
      const std::vector<float> values = Values(ids, options.dim);
      (void)Timed(tally, kReaderWrite, [&] {
        return client.Store(options.bank, options.dim, values, ids);
      });
    } else if (i % 10 == 8) {
      (void)Timed(tally, kGetBank,
                  [&] { return client.GetBank(options.bank); });
    } else {
      for (float& v : query) v = value(rng);
      v1::RetrieveOptions retrieve;
      retrieve.set_omit_pattern(true);
      (void)Timed(tally, kReaderRetrieve, [&] {
        return client.Retrieve(options.bank, options.dim, query, retrieve);
      });
    }
  }
}

struct TrainerTally {
  Tally tally;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
};

void RunTrainer(const SoakOptions& options, client::MemoryClient& client,
                TrainerTally& trainer, Clock::time_point end) {
  Clock::time_point next =
      Clock::now() + absl::ToChronoMilliseconds(options.train_every);
  while (next < end) {
    std::this_thread::sleep_until(next);
    v1::TrainOptions train;
    // Short trainings: the soak is about serving beside them.
    train.set_iterations(10);
    train.set_batch_size(256);
    train.set_seed(next.time_since_epoch().count() & 0xFFFF);
    absl::StatusOr<v1::TrainResult> result = Timed(trainer.tally, kTrain, [&] {
      return client.Train(options.bank, train);
    });
    if (result.ok())
      ++(result->accepted() ? trainer.accepted : trainer.rejected);
    next = std::max(Clock::now(),
                    next + absl::ToChronoMilliseconds(options.train_every));
  }
}

// Every live pattern reads back bit-exact, every sampled forgotten one is
// NOT_FOUND, and the bank holds exactly the live count. Returns the first
// failure ("" when all held) and prints the counts.
std::string FinalCheck(const SoakOptions& options, client::MemoryClient& client,
                       const std::vector<std::unique_ptr<Writer>>& writers) {
  uint64_t live = 0;
  uint64_t intact = 0;
  uint64_t forgotten_checked = 0;
  uint64_t not_found = 0;
  std::string failure;
  for (const auto& writer : writers) {
    const std::vector<uint64_t> ids(writer->live.begin(), writer->live.end());
    live += ids.size();
    for (size_t first = 0; first < ids.size(); first += 512) {
      const absl::Span<const uint64_t> chunk =
          absl::MakeConstSpan(ids).subspan(first, 512);
      absl::StatusOr<std::vector<v1::Pattern>> got =
          client.GetPatterns(options.bank, chunk);
      if (!got.ok()) {
        if (failure.empty()) {
          failure = absl::StrCat("reading back acknowledged patterns: ",
                                 got.status().ToString());
        }
        continue;
      }
      const std::vector<float> want = Values(chunk, options.dim);
      for (size_t i = 0; i < got->size(); ++i) {
        const v1::Pattern& pattern = (*got)[i];
        if (pattern.id() == chunk[i] &&
            static_cast<size_t>(pattern.values_size()) == options.dim &&
            std::memcmp(pattern.values().data(), &want[i * options.dim],
                        options.dim * sizeof(float)) == 0) {
          ++intact;
        } else if (failure.empty()) {
          failure = absl::StrCat("pattern ", chunk[i], " read back different");
        }
      }
    }
    for (const uint64_t id : writer->forgotten) {
      ++forgotten_checked;
      const uint64_t ids_one[] = {id};
      absl::StatusOr<std::vector<v1::Pattern>> got =
          client.GetPatterns(options.bank, ids_one);
      if (got.status().code() == absl::StatusCode::kNotFound) {
        ++not_found;
      } else if (failure.empty()) {
        failure = absl::StrCat("forgotten pattern ", id, " answered ",
                               got.status().ToString());
      }
    }
  }
  absl::StatusOr<v1::Bank> bank = client.GetBank(options.bank);
  const uint64_t count = bank.ok() ? bank->pattern_count() : 0;
  if (failure.empty() && (!bank.ok() || count != live)) {
    failure = absl::StrCat("the bank holds ", count, " patterns, ", live,
                           " acknowledged and not forgotten");
  }
  std::printf(
      "soak final: acknowledged and kept=%llu read back bit-exact=%llu; "
      "forgotten checked=%llu NOT_FOUND=%llu; bank pattern_count=%llu\n",
      static_cast<unsigned long long>(live),
      static_cast<unsigned long long>(intact),
      static_cast<unsigned long long>(forgotten_checked),
      static_cast<unsigned long long>(not_found),
      static_cast<unsigned long long>(count));
  return failure;
}

}  // namespace

absl::Status RunSoak(const SoakOptions& options) {
  client::ClientOptions writer_options = options.writer;
  writer_options.own_connection = true;
  client::MemoryClient control(writer_options);
  v1::BankConfig config;
  config.set_dim(options.dim);
  if (absl::StatusOr<v1::Bank> made = control.CreateBank(options.bank, config);
      !made.ok()) {
    return made.status();
  }
  const int writer_count = std::max(1, options.writers);
  std::vector<std::unique_ptr<Writer>> writers;
  std::vector<std::unique_ptr<client::MemoryClient>> clients;
  // The working sets first (the bank at its steady size).
  const Clock::time_point fill_start = Clock::now();
  for (int w = 0; w < writer_count; ++w) {
    auto writer = std::make_unique<Writer>();
    writer->next_id = (static_cast<uint64_t>(w) + 1) << 40;
    std::vector<uint64_t> ids(options.working_set);
    for (uint64_t& id : ids) id = writer->next_id++;
    absl::StatusOr<std::vector<uint64_t>> stored =
        control.Store(options.bank, options.dim, Values(ids, options.dim), ids);
    if (!stored.ok()) {
      (void)control.DeleteBank(options.bank);
      return stored.status();
    }
    writer->live.assign(ids.begin(), ids.end());
    writers.push_back(std::move(writer));
    clients.push_back(std::make_unique<client::MemoryClient>(writer_options));
  }
  std::printf(
      "soak bank=%s dim=%u patterns=%zu (%d writers x %zu) filled in %.1f s; "
      "duration=%.0f s, reader=%s, train every %.0f s\n",
      options.bank.c_str(), options.dim,
      static_cast<size_t>(writer_count) * options.working_set, writer_count,
      options.working_set,
      std::chrono::duration<double>(Clock::now() - fill_start).count(),
      absl::ToDoubleSeconds(options.duration),
      options.reader.api_key.empty() ? "no" : "yes (read-only key)",
      absl::ToDoubleSeconds(options.train_every));
  std::fflush(stdout);
  // The steady state: the search index holds the working sets (the churn
  // then runs against a built index, as in a server that has been up).
  if (options.settle_timeout > absl::ZeroDuration()) {
    const Clock::time_point settle_start = Clock::now();
    const Clock::time_point give_up =
        settle_start + absl::ToChronoMilliseconds(options.settle_timeout);
    absl::StatusOr<v1::Bank> bank = control.GetBank(options.bank);
    while (bank.ok() && bank->index_pending() > 0 && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      bank = control.GetBank(options.bank);
    }
    std::printf(
        "soak index settled: index_size=%llu index_pending=%llu after %.1f "
        "s\n",
        bank.ok() ? static_cast<unsigned long long>(bank->index_size()) : 0,
        bank.ok() ? static_cast<unsigned long long>(bank->index_pending()) : 0,
        std::chrono::duration<double>(Clock::now() - settle_start).count());
    std::fflush(stdout);
  }

  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start + absl::ToChronoMilliseconds(options.duration);
  std::vector<std::pair<double, uint64_t>> rss;  // (seconds, bytes)
  // (seconds, index_pending): whether the index keeps up with the churn.
  std::vector<std::pair<double, uint64_t>> backlog;
  std::atomic<bool> done{false};
  client::MemoryClient sampler_client(writer_options);
  std::thread sampler([&] {
    while (!done.load()) {
      const double at =
          std::chrono::duration<double>(Clock::now() - start).count();
      if (options.server_pid > 0) {
        rss.emplace_back(at, ResidentBytes(options.server_pid));
      }
      if (absl::StatusOr<v1::Bank> bank = sampler_client.GetBank(options.bank);
          bank.ok()) {
        backlog.emplace_back(at, bank->index_pending());
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < writer_count; ++w) {
    threads.emplace_back([&, w] {
      RunWriter(options, *clients[static_cast<size_t>(w)],
                *writers[static_cast<size_t>(w)],
                static_cast<uint64_t>(w) * 7919 + 1, end);
    });
  }
  Tally reader_tally;
  client::ClientOptions reader_options = options.reader;
  reader_options.own_connection = true;
  client::MemoryClient reader(reader_options);
  if (!options.reader.api_key.empty()) {
    threads.emplace_back(
        [&] { RunReader(options, reader, reader_tally, end); });
  }
  TrainerTally trainer;
  client::MemoryClient trainer_client(writer_options);
  if (options.train_every > absl::ZeroDuration()) {
    threads.emplace_back(
        [&] { RunTrainer(options, trainer_client, trainer, end); });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  done.store(true);
  sampler.join();

  // The report.
  Tally all;
  auto merge = [&all](Tally& part) {
    for (int m = 0; m < kMethods; ++m) {
      all.latencies_ms[m].insert(all.latencies_ms[m].end(),
                                 part.latencies_ms[m].begin(),
                                 part.latencies_ms[m].end());
    }
    for (const auto& [key, count] : part.codes) all.codes[key] += count;
    all.unexpected += part.unexpected;
    if (all.first_unexpected.empty())
      all.first_unexpected = part.first_unexpected;
    all.wrong += part.wrong;
    if (all.first_wrong.empty()) all.first_wrong = part.first_wrong;
  };
  for (auto& writer : writers) merge(writer->tally);
  merge(reader_tally);
  merge(trainer.tally);
  uint64_t requests = 0;
  double worst_p99 = 0;
  std::string worst_method;
  for (int m = 0; m < kMethods; ++m) {
    std::vector<double>& latencies = all.latencies_ms[m];
    if (latencies.empty()) continue;
    std::sort(latencies.begin(), latencies.end());
    requests += latencies.size();
    std::string codes;
    for (const auto& [key, count] : all.codes) {
      if (key.first == m) {
        absl::StrAppend(&codes, " ", absl::StatusCodeToString(key.second), "=",
                        count);
      }
    }
    const double p99 = Percentile(latencies, 0.99);
    // Train's time is the training's; the bound is for the serving calls.
    if (m != kTrain && p99 > worst_p99) {
      worst_p99 = p99;
      worst_method = kMethodNames[m];
    }
    std::printf("soak %-24s calls=%-8zu p50=%.2fms p99=%.2fms max=%.2fms%s\n",
                kMethodNames[m], latencies.size(), Percentile(latencies, 0.5),
                p99, latencies.back(), codes.c_str());
  }
  if (options.train_every > absl::ZeroDuration()) {
    std::printf("soak Train outcomes: accepted=%llu rejected=%llu\n",
                static_cast<unsigned long long>(trainer.accepted),
                static_cast<unsigned long long>(trainer.rejected));
  }
  std::printf(
      "soak requests=%llu in %.1f s (%.0f/s) unexpected replies=%llu%s%s "
      "wrong answers=%llu%s%s\n",
      static_cast<unsigned long long>(requests), seconds,
      static_cast<double>(requests) / seconds,
      static_cast<unsigned long long>(all.unexpected),
      all.first_unexpected.empty() ? "" : " first: ",
      all.first_unexpected.c_str(), static_cast<unsigned long long>(all.wrong),
      all.first_wrong.empty() ? "" : " first: ", all.first_wrong.c_str());
  double growth = 0;
  if (!rss.empty()) {
    // Warm-up: the first third of the run.
    const auto warm = std::find_if(rss.begin(), rss.end(), [&](const auto& s) {
      return s.first >= seconds / 3;
    });
    const uint64_t warm_bytes =
        warm != rss.end() ? warm->second : rss.front().second;
    const uint64_t end_bytes = rss.back().second;
    uint64_t max_bytes = 0;
    for (const auto& sample : rss)
      max_bytes = std::max(max_bytes, sample.second);
    growth = warm_bytes > 0 ? (static_cast<double>(end_bytes) -
                               static_cast<double>(warm_bytes)) /
                                  static_cast<double>(warm_bytes)
                            : 0;
    std::printf(
        "soak server rss: start=%.1fMiB warm(t=%.0fs)=%.1fMiB end=%.1fMiB "
        "max=%.1fMiB growth(warm->end)=%+.2f%%\n",
        static_cast<double>(rss.front().second) / 1048576.0,
        warm != rss.end() ? warm->first : 0.0,
        static_cast<double>(warm_bytes) / 1048576.0,
        static_cast<double>(end_bytes) / 1048576.0,
        static_cast<double>(max_bytes) / 1048576.0, 100.0 * growth);
    // The curve, one sample in ~10: a plateau or a slope.
    std::string curve;
    const size_t every = std::max<size_t>(1, rss.size() / 10);
    for (size_t i = 0; i < rss.size(); i += every) {
      absl::StrAppend(
          &curve, " ", static_cast<int>(rss[i].first), "s:",
          static_cast<int>(static_cast<double>(rss[i].second) / 1048576.0));
    }
    std::printf("soak server rss MiB over time:%s\n", curve.c_str());
  }
  if (!backlog.empty()) {
    uint64_t most = 0;
    for (const auto& sample : backlog) most = std::max(most, sample.second);
    std::string curve;
    const size_t every = std::max<size_t>(1, backlog.size() / 10);
    for (size_t i = 0; i < backlog.size(); i += every) {
      absl::StrAppend(&curve, " ", static_cast<int>(backlog[i].first),
                      "s:", backlog[i].second);
    }
    std::printf("soak index_pending: max=%llu end=%llu; over time:%s\n",
                static_cast<unsigned long long>(most),
                static_cast<unsigned long long>(backlog.back().second),
                curve.c_str());
  }
  std::fflush(stdout);
  std::string failure = FinalCheck(options, control, writers);
  (void)control.DeleteBank(options.bank);
  if (failure.empty() && all.unexpected > 0) {
    failure = absl::StrCat(
        all.unexpected, " unexpected replies, first: ", all.first_unexpected);
  }
  if (failure.empty() && all.wrong > 0) {
    failure =
        absl::StrCat(all.wrong, " wrong answers, first: ", all.first_wrong);
  }
  if (failure.empty() && options.p99_bound_ms > 0 &&
      worst_p99 > options.p99_bound_ms) {
    failure = absl::StrCat(worst_method, " p99 ", worst_p99, " ms is over ",
                           options.p99_bound_ms, " ms");
  }
  if (failure.empty() && options.max_rss_growth > 0 &&
      growth > options.max_rss_growth) {
    failure = absl::StrCat("server memory grew ", 100 * growth,
                           "% after the warm-up, over ",
                           100 * options.max_rss_growth, "%");
  }
  std::printf("soak result: %s\n",
              failure.empty() ? "PASS" : ("FAIL: " + failure).c_str());
  std::fflush(stdout);
  if (!failure.empty()) return absl::FailedPreconditionError(failure);
  return absl::OkStatus();
}

}  // namespace hopfield::bench
