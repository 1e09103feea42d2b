// Helpers shared by the benchmark programs in perf/: thread pinning, CPU clocks and per-operation
// counters. Benchmark code only; nothing here is part of libreactor.
#pragma once

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cstdint>

namespace reactor::bench {

// Pins the calling thread to one CPU for its lifetime and restores the previous mask afterwards.
// Does nothing (pinned() is false) when the CPU does not exist or the kernel refuses. Any thread.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return;
    if (pthread_getaffinity_np(pthread_self(), sizeof previous_, &previous_) != 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pinned_ = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
  }
  ~ScopedPin() {
    if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof previous_, &previous_);
  }
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;

  bool pinned() const { return pinned_; }

 private:
  cpu_set_t previous_{};
  bool pinned_ = false;
};

// The main() of every benchmark program: Google Benchmark's flags, then the benchmarks that
// `register_benchmarks` adds, run and reported. Returns 1 on an unknown flag. Main thread.
inline int run_main(int argc, char** argv, void (*register_benchmarks)()) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// Seconds on a POSIX clock (CLOCK_PROCESS_CPUTIME_ID, a thread's CPU clock, CLOCK_MONOTONIC).
inline double clock_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Reports `total` divided by the iteration count, under `name`.
inline void set_per_op(benchmark::State& state, const char* name, double total) {
  state.counters[name] = benchmark::Counter(total, benchmark::Counter::kAvgIterations);
}

// Reports the time of one of `per_iteration` equal steps of an iteration (seconds; the console
// prints it with an SI prefix, e.g. 2.1n).
inline void set_time_per_step(benchmark::State& state, const char* name, double per_iteration) {
  state.counters[name] = benchmark::Counter(
      per_iteration, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace reactor::bench
