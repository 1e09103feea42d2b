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
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(uint64_t v) { value_.store(v, std::memory_order_relaxed); }
  // Any thread.
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Names follow the Prometheus metrics they become (reactord_<name>{shard="N"}).
struct ReactorStats {
  RelaxedCounter loop_iterations;   // loop_iterations_total
  RelaxedCounter polls;             // polls_total
  RelaxedCounter poll_wakeups;      // fibers made runnable by polls (events, in fiber terms)
  RelaxedCounter poll_wait_ns;      // time inside poll (waiting), for utilization
  RelaxedCounter busy_ns;           // time outside poll: running fibers, timers, posts
  RelaxedCounter context_switches;  // resumes of a fiber
  RelaxedCounter fibers_created;
  RelaxedCounter fibers_finished;
  RelaxedCounter fibers_alive;     // gauge
  RelaxedCounter fibers_runnable;  // gauge: run-queue depth at the last poll
  RelaxedCounter timers_armed;     // gauge
  RelaxedCounter timers_fired;
  RelaxedCounter timers_cancelled;
  RelaxedCounter stacks_guarded;  // gauge: guarded stacks in use by fibers
  RelaxedCounter stacks_canary;   // gauge: canary stacks in use by fibers
  RelaxedCounter spawn_failures;
  RelaxedCounter slow_slices;  // slices longer than the slow-slice threshold
  Histogram slice;             // resume to next suspension
  Histogram sched_latency;     // runnable to running
  Histogram poll_wait;         // each poll's wait
};

}  // namespace reactor
