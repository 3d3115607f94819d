#include "server/prometheus_metrics.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

#include "core/bank_registry.h"
#include "core/memory_budget.h"
#include "core/testing/status_matchers.h"
#include "core/worker_pool.h"

namespace hopfield::server {
namespace {

using ::hopfield::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const PrometheusMetrics& metrics) {
  return prometheus::TextSerializer().Serialize(
      metrics.collectable()->Collect());
}

BankOptions Dim(uint32_t dim) {
  BankOptions options;
  options.dim = dim;
  return options;
}

TEST(PrometheusMetricsTest, RpcLatencyByMethodAndCode) {
  PrometheusMetrics metrics;
  metrics.RecordRpc("Retrieve", absl::StatusCode::kOk, absl::Microseconds(300));
  metrics.RecordRpc("Retrieve", absl::StatusCode::kOk, absl::Milliseconds(20));
  metrics.RecordRpc("Store", absl::StatusCode::kResourceExhausted,
                    absl::Microseconds(5));
  metrics.RecordRpc("NotAMethod", absl::StatusCode::kOk, absl::Seconds(1));
  const std::string text = Scrape(metrics);
  EXPECT_THAT(text,
              HasSubstr("# TYPE hopfield_rpc_duration_seconds histogram"));
  EXPECT_THAT(text, HasSubstr("hopfield_rpc_duration_seconds_count{code=\"OK\","
                              "method=\"Retrieve\"} 2"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_rpc_duration_seconds_count{code=\"RESOURCE_"
                        "EXHAUSTED\",method=\"Store\"} 1"));
  // Buckets run from 10 µs to 10 s: the 5 µs call is in the first.
  EXPECT_THAT(text,
              HasSubstr("hopfield_rpc_duration_seconds_bucket{code=\"RESOURCE_"
                        "EXHAUSTED\",method=\"Store\",le=\"1e-05\"} 1"));
  EXPECT_THAT(text, HasSubstr("le=\"10\"}"));
  EXPECT_THAT(text, Not(HasSubstr("NotAMethod")));
  // Nothing for codes never seen, but every method's OK series from the
  // start, so its first call counts in rate().
  EXPECT_THAT(text, Not(HasSubstr("code=\"INTERNAL\"")));
  EXPECT_THAT(text, HasSubstr("hopfield_rpc_duration_seconds_count{code=\"OK\","
                              "method=\"Backup\"} 0"));
}

TEST(PrometheusMetricsTest, RetrievalsAndTrainingPerBankGoWithTheBank) {
  BankRegistry registry;
  ASSERT_THAT(registry.Create("a", Dim(4)), IsOk());
  ASSERT_THAT(registry.Create("b", Dim(4)), IsOk());
  PrometheusMetrics metrics;
  MetricsSources sources;
  sources.registry = &registry;
  metrics.SetSources(sources);
  // A held bank's counters exist at 0 before its first event; an unknown
  // Δ_min has no sample.
  std::string before = Scrape(metrics);
  EXPECT_THAT(before, HasSubstr("hopfield_train_runs_total{bank=\"b\","
                                "outcome=\"failed\"} 0"));
  EXPECT_THAT(before,
              HasSubstr("hopfield_retrieve_fallback_total{bank=\"a\"} 0"));
  EXPECT_THAT(before, Not(HasSubstr("hopfield_bank_min_separation{")));
  EXPECT_THAT(before, HasSubstr("hopfield_banks_failed 0"));

  std::vector<RetrieveResult> results(3);
  results[0].iterations = 2;
  results[1].iterations = 3;
  results[1].metastable = true;
  results[2].iterations = 1;
  results[2].fell_back = true;
  results[2].patterns_scored = 40;
  results[0].approximate = true;
  metrics.RecordRetrievals("a", results);
  metrics.RecordRetrievals("b", {results.data(), 1});
  metrics.RecordTrain("a", TrainOutcome::kAccepted);
  metrics.RecordTrain("a", TrainOutcome::kRejected);
  metrics.RecordTrain("a", TrainOutcome::kRejected);

  std::string text = Scrape(metrics);
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_iterations_count{bank=\"a\"} 3"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_iterations_sum{bank=\"a\"} 6"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_metastable_total{bank=\"a\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_fallback_total{bank=\"a\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_approximate_total{bank=\"a\"} 1"));
  EXPECT_THAT(
      text,
      HasSubstr("hopfield_retrieve_patterns_scored_total{bank=\"a\"} 40"));
  EXPECT_THAT(text, HasSubstr("hopfield_train_runs_total{bank=\"a\",outcome="
                              "\"rejected\"} 2"));
  EXPECT_THAT(text, HasSubstr("hopfield_train_runs_total{bank=\"a\",outcome="
                              "\"failed\"} 0"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_retrieve_iterations_count{bank=\"b\"} 1"));
  // Bank gauges, pulled from the registry.
  EXPECT_THAT(text, HasSubstr("hopfield_bank_patterns{bank=\"a\"} 0"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_bank_capacity_utilization{bank=\"b\"}"));
  EXPECT_THAT(text, HasSubstr("hopfield_banks 2"));

  // DeleteBank removes the bank's series at once...
  ASSERT_THAT(registry.Drop("a"), IsOk());
  metrics.BankDeleted("a");
  text = Scrape(metrics);
  EXPECT_THAT(text, Not(HasSubstr("bank=\"a\"")));
  EXPECT_THAT(text, HasSubstr("bank=\"b\""));
  // ...and a call that finished after the deletion leaves nothing behind
  // at the next scrape.
  ASSERT_THAT(registry.Drop("b"), IsOk());
  metrics.RecordRetrievals("b", {results.data(), 1});
  text = Scrape(metrics);
  EXPECT_THAT(text, Not(HasSubstr("bank=\"b\"")));
  EXPECT_THAT(text, HasSubstr("hopfield_banks 0"));
}

TEST(PrometheusMetricsTest, BackgroundEventsAndServerState) {
  PrometheusMetrics metrics;
  metrics.OnRefresh("a", RefreshKind::kIndex, 1024, absl::Milliseconds(250));
  metrics.OnRefresh("a", RefreshKind::kSeparation, 256, absl::Seconds(1));
  metrics.OnStorageSync(absl::Microseconds(800), true);
  metrics.OnStorageSync(absl::Microseconds(900), false);
  metrics.OnBankLoaded("x", 0, absl::Milliseconds(1),
                       absl::DataLossError("damaged"));
  metrics.SetStartup(absl::Milliseconds(2500), 3, 1000000);
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20, "test");
  absl::StatusOr<MemoryReservation> held = budget->Reserve(4096, "held");
  ASSERT_THAT(held, IsOk());
  WorkerPoolOptions pool_options;
  pool_options.threads = 2;
  WorkerPool pool(pool_options);
  MetricsSources sources;
  sources.budget = budget.get();
  sources.pool = &pool;
  sources.in_flight = [] { return uint64_t{7}; };
  sources.storage_failure = [] {
    return absl::ResourceExhaustedError("No space left on device");
  };
  metrics.SetSources(sources);

  const std::string text = Scrape(metrics);
  EXPECT_THAT(text, HasSubstr("hopfield_refresh_patterns_total{kind=\"index\"} "
                              "1024"));
  EXPECT_THAT(text, HasSubstr("hopfield_refresh_duration_seconds_count{kind="
                              "\"separation\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("hopfield_storage_sync_duration_seconds_count 2"));
  EXPECT_THAT(text, HasSubstr("hopfield_storage_sync_failures_total 1"));
  EXPECT_THAT(text, HasSubstr("hopfield_bank_load_failures_total 1"));
  EXPECT_THAT(text, HasSubstr("hopfield_restart_seconds 2.5"));
  EXPECT_THAT(text, HasSubstr("hopfield_restart_patterns 1000000"));
  EXPECT_THAT(text, HasSubstr("hopfield_memory_budget_bytes 1048576"));
  EXPECT_THAT(text, HasSubstr("hopfield_memory_budget_used_bytes 4096"));
  EXPECT_THAT(text, HasSubstr("hopfield_worker_threads 2"));
  EXPECT_THAT(text, HasSubstr("hopfield_worker_queue_depth 0"));
  EXPECT_THAT(text, HasSubstr("hopfield_rpc_in_flight 7"));
  EXPECT_THAT(text, HasSubstr("hopfield_storage_failed 1"));
  EXPECT_THAT(text, HasSubstr("hopfield_build_info{build_type="));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(text, HasSubstr("process_open_fds "));
  EXPECT_THAT(text, HasSubstr("process_start_time_seconds "));
  EXPECT_THAT(text, HasSubstr("process_threads "));
  // No registry given: no bank families.
  EXPECT_THAT(text, Not(HasSubstr("hopfield_banks ")));
}

}  // namespace
}  // namespace hopfield::server
