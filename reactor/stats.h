// Per-reactor counters: written by the loop thread alone, read from any thread. A counter is a
// relaxed atomic updated with load+store (one writer), so an increment costs no locked instruction.
#pragma once

#include <atomic>
#include <cstddef>
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
  // add() with a release store: a reader that loads the new value with acquire also sees every
  // store the loop made before it (DerivedGauge's difference).
  void add_release(uint64_t n = 1) {
    if constexpr (!kStatsEnabled) return;
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  // Any thread.
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }
  uint64_t get_acquire() const { return value_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A gauge the loop stores nothing for: read from a count its owner keeps anyway (the stack pool's
// stacks in use), or as the difference of two counters (fibers alive = created - finished), so
// spawning and ending a fiber pay no gauge stores. Bound once by the reactor. Any thread reads it.
class DerivedGauge {
 public:
  void bind(const std::atomic<size_t>* value) { value_ = value; }
  void bind_difference(const RelaxedCounter* plus, const RelaxedCounter* minus) {
    plus_ = plus;
    minus_ = minus;
  }
  uint64_t get() const {
    if constexpr (!kStatsEnabled) return 0;
    if (value_ != nullptr) return value_->load(std::memory_order_relaxed);
    if (plus_ == nullptr) return 0;
    // `minus` first, with acquire (its writer adds with release after the matching `plus` add):
    // every fiber counted as finished is then counted as created, and the difference is never
    // negative. Exact whenever the loop is between two spawns or ends.
    const uint64_t minus = minus_->get_acquire();
    const uint64_t plus = plus_->get();
    return plus >= minus ? plus - minus : 0;
  }

 private:
  const std::atomic<size_t>* value_ = nullptr;
  const RelaxedCounter* plus_ = nullptr;
  const RelaxedCounter* minus_ = nullptr;
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
  DerivedGauge fibers_alive;       // gauge: fibers_created - fibers_finished
  RelaxedCounter fibers_runnable;  // gauge: run-queue depth at the last poll
  RelaxedCounter timers_armed;     // gauge
  RelaxedCounter timers_fired;
  RelaxedCounter timers_cancelled;
  DerivedGauge stacks_guarded;     // gauge: guarded stacks in use by fibers (the pool's count)
  DerivedGauge stacks_canary;      // gauge: canary stacks in use by fibers (the pool's count)
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
