// Per-reactor counters: written by the loop thread alone, read from any thread. A counter is a
// relaxed atomic updated with load+store (one writer), so an increment costs no locked instruction.
#pragma once

#include <atomic>
#include <cstdint>

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

struct ReactorStats {
  RelaxedCounter loop_iterations;
  RelaxedCounter polls;
  RelaxedCounter context_switches;
  RelaxedCounter fibers_created;
  RelaxedCounter fibers_finished;
  RelaxedCounter timers_fired;
  RelaxedCounter stacks_guarded;  // gauge: guarded stacks in use by fibers
  RelaxedCounter stacks_canary;   // gauge: canary stacks in use by fibers
  RelaxedCounter spawn_failures;
};

}  // namespace reactor
