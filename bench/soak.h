// File: soak.h
//
// RunSoak: a bounded soak of one hopfieldd under mixed traffic, the
// `soak` scenario of load_generator.
//
// Writer clients (each on a connection of its own, with a read-write key)
// keep a working set of patterns each in one bank: they Store batches of new
// patterns (values derived from the id, so they can be checked), Forget their
// oldest batch once the working set is full (the bank's size, hence its
// memory, stays level), Retrieve their own stored patterns (the answer must
// be the pattern's own id), and read patterns back (bit-exact). A reader
// client with a read-only key retrieves and tries to write (each write must
// be PERMISSION_DENIED). A trainer runs Train on the bank every few
// seconds (OK, or FAILED_PRECONDITION while another runs). The clock starts
// once the search index holds the filled bank; the server's resident memory
// and the index's backlog are sampled once a second.
//
// Every reply must be OK or a code the call may expect (RESOURCE_EXHAUSTED
// under overload for any call; FAILED_PRECONDITION for Train;
// PERMISSION_DENIED for the reader's writes); anything else counts as an
// unexpected reply. Afterwards every acknowledged pattern that was not
// forgotten must read back bit-exact, forgotten ones must be NOT_FOUND, and
// the bank must hold exactly the acknowledged count.
//
// Not thread-safe: one RunSoak at a time per process.
#ifndef HOPFIELD_BENCH_SOAK_H_
#define HOPFIELD_BENCH_SOAK_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include "client/memory_client.h"

namespace hopfield::bench {

struct SoakOptions {
  // The writers' and the trainer's connection (a read-write key when the
  // server has keys).
  client::ClientOptions writer;
  // The reader's; empty api_key: no reader client.
  client::ClientOptions reader;
  // A fresh bank (created, deleted at the end).
  std::string bank = "soak";
  int writers = 8;
  absl::Duration duration = absl::Seconds(60);
  uint32_t dim = 64;
  // Patterns each writer keeps (the bank holds writers x this).
  size_t working_set = 2000;
  size_t batch = 16;
  // Train every this long (0: no trainer).
  absl::Duration train_every = absl::Seconds(15);
  // After the fill, wait up to this long for the search index to hold
  // every pattern before the clock starts (0: start at once). The index's
  // backlog (index_pending) is then sampled once a second with memory.
  absl::Duration settle_timeout = absl::Minutes(10);
  // The server's process id, for its resident memory (0: not sampled).
  int server_pid = 0;
  // Pass bounds (0: reported only): p99 of any RPC method, milliseconds;
  // growth of resident memory from the end of the warm-up (the first third
  // of the run) to the end, as a fraction.
  double p99_bound_ms = 0;
  double max_rss_growth = 0;
};

// Runs the soak and prints its report (requests, replies by code, p50/p99
// per method, resident memory over time, the final check). Returns OK when
// every check and bound held. Errors: FAILED_PRECONDITION naming the first
// failed check; the bank could not be created or filled: its error.
absl::Status RunSoak(const SoakOptions& options);

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_SOAK_H_
