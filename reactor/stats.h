// Per-reactor counters: written by the loop thread alone, read from any thread. A counter is a
// relaxed atomic updated with load+store (one writer), so an increment costs no locked instruction.
#pragma once

#include <atomic>
#include <cstdint>

#include "reactor/histogram.h"

namespace reactor {

class RelaxedCounter {
 public:
  // Loop thread (the single writer).
  void add(uint64_t n = 1) {
    if constexpr (!kStatsEnabled) return;
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(uint64_t v) {
    if constexpr (kStatsEnabled) value_.store(v, std::memory_order_relaxed);
  }
  // Any thread.
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Names follow the Prometheus metrics they become (reactord_<name>{shard="N"}).
struct ReactorStats {
  RelaxedCounter loop_iterations;  // loop_iterations_total
  RelaxedCounter poll_wakeups;     // fibers made runnable by polls (events, in fiber terms)
  RelaxedCounter busy_ns;          // time outside poll: running fibers, timers, posts
  RelaxedCounter spin_ns;          // part of the poll wait spent spinning (runtime.idle)
  RelaxedCounter spin_polls;       // zero-timeout polls made while spinning
  RelaxedCounter fibers_created;
  RelaxedCounter fibers_finished;
  RelaxedCounter fibers_alive;     // gauge
  RelaxedCounter fibers_runnable;  // gauge: run-queue depth at the last poll
  RelaxedCounter timers_armed;     // gauge
  RelaxedCounter timers_fired;
  RelaxedCounter timers_cancelled;
  RelaxedCounter stacks_guarded;   // gauge: guarded stacks in use by fibers
  RelaxedCounter stacks_canary;    // gauge: canary stacks in use by fibers
  RelaxedCounter stacks_released;  // gauge: parked fibers' stacks whose pages are released
  RelaxedCounter stack_releases;   // stack_releases_total
  RelaxedCounter spawn_failures;
  RelaxedCounter slow_slices;       // slices longer than the slow-slice threshold
  RelaxedCounter io_budget_yields;  // fibers sent to the back after kIoBudget ready I/O calls
  Histogram slice;                  // resume to next suspension
  Histogram sched_latency;          // runnable to running
  Histogram poll_wait;              // each poll's wait (a spinning idle period counts as one)

  // Derived from the histograms rather than kept twice on the loop's hot path.
  uint64_t polls() const { return poll_wait.count(); }          // polls_total
  uint64_t poll_wait_ns() const { return poll_wait.sum_ns(); }  // time waiting in poll
  uint64_t context_switches() const { return slice.count(); }   // fiber resumes
};

}  // namespace reactor
