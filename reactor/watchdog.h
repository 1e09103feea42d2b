// The watchdog: one thread that watches every registered reactor's current slice and reports a
// fiber that holds its loop past a threshold — while it still holds it.
//
// Each check (every threshold/4) reads a reactor's published slice (start time, fiber) without a
// lock. A slice past the threshold becomes a stall: its wall time so far, the loop thread's CPU
// time over the slice (pthread_getcpuclockid), the kind — "cpu" when CPU time is at least half the
// wall time or the thread is runnable in user space (a hog kept off the CPU by other processes is
// still a hog), else "blocking" — the thread's state and current system call from
// /proc/self/task/TID/{stat,syscall}, and its stack. The stack comes from a real-time signal sent
// to that thread once per stall, whose handler only records return addresses (glibc backtrace()
// walks through the signal frame into the stalled code) into a preallocated slot; symbols are
// looked up on the watchdog thread. The watchdog never waits for the handler: a thread in
// uninterruptible sleep runs it only when its system call ends, so frames are added to a report
// when they arrive. Note that the signal interrupts a non-restartable sleep (nanosleep, poll)
// early, once per stall; restartable calls (read, futex) resume.
//
// A stall is reported when its slice passes the threshold, then again each time its wall time
// reaches the next doubling (2x, 4x, 8x, ... the threshold; doublings passed between two checks
// get one report), and once more when its slice ends. Reports beyond `reports_per_minute` are
// counted as suppressed. With abort_after set, a stall that long ends the process (abort) after a
// final report.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reactor/time.h"

namespace reactor {

class Reactor;

enum class BacktraceWhen : uint8_t { kAlways, kCpuOnly, kNever };

struct WatchdogOptions {
  bool enabled = true;
  Duration threshold = std::chrono::milliseconds(100);
  int reports_per_minute = 10;
  Duration abort_after = Duration::zero();  // zero: never abort
  BacktraceWhen backtrace = BacktraceWhen::kAlways;
};

struct StallReport {
  enum class Phase : uint8_t { kStarted, kOngoing, kFrames, kEnded, kAborting };
  Phase phase = Phase::kStarted;
  uint64_t stall_id = 0;  // the same for every report of one stall
  size_t shard = 0;
  uint64_t fiber_id = 0;
  std::string fiber_name;
  Duration wall{};          // so far (or in all, for kEnded)
  Duration cpu{};           // thread CPU time over the slice (estimated from the watched part)
  std::string kind;         // "cpu" or "blocking"
  char thread_state = '?';  // from /proc: R running, S sleeping, D uninterruptible, ...
  std::string syscall;      // by name, "running" when in user space, or "" if unknown
  std::vector<std::string> frames;  // symbolised, innermost first (empty until they arrive)
  uint64_t suppressed = 0;  // reports dropped by the rate limit since the last one delivered
};

class Watchdog {
 public:
  using Sink = std::function<void(const StallReport&)>;

  // Loads the unwinder and the symbolizer up front (they must not load inside a signal handler).
  // Any thread.
  Watchdog(WatchdogOptions options, Sink sink);
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Watches `reactor` as shard `shard`. Before start(), or any thread while running.
  void watch(Reactor* reactor, size_t shard);
  // Stops watching (call before the reactor is destroyed). Any thread.
  void unwatch(Reactor* reactor);

  void start();
  void stop();
  // Takes effect at the next check. Any thread.
  void set_options(WatchdogOptions options);
  WatchdogOptions options() const;

  // Reports delivered and suppressed so far. Any thread.
  uint64_t reports() const { return reports_.load(std::memory_order_relaxed); }
  uint64_t suppressed() const { return suppressed_total_.load(std::memory_order_relaxed); }

  // The name of system call `nr` on this architecture ("syscall N" when unknown). Any thread.
  static std::string syscall_name(long nr);

 private:
  struct Watched;
  void run();
  void check(Watched& w, Deadline now);
  void end_stall(Watched& w, Deadline now);
  void deliver(StallReport report, bool rate_limited);
  bool allow_report(Deadline now);

  Sink sink_;
  mutable std::mutex mu_;  // guards options_ and watched_
  std::condition_variable cv_;
  WatchdogOptions options_;
  std::vector<std::unique_ptr<Watched>> watched_;
  bool stop_ = false;
  bool options_changed_ = false;
  std::thread thread_;
  std::vector<Deadline> recent_reports_;  // watchdog thread: for the per-minute limit
  uint64_t suppressed_pending_ = 0;       // watchdog thread
  std::atomic<uint64_t> reports_{0};
  std::atomic<uint64_t> suppressed_total_{0};
  uint64_t next_stall_id_ = 1;  // watchdog thread
};

}  // namespace reactor
