// The loop's clock: Clock::now() (steady_clock) read cheaply where the loop reads it most, at the
// end of every slice. On this machine steady_clock::now() costs ~33 ns (the vDSO's ordered TSC
// read, its sequence lock, the conversion and two calls) and a plain `rdtsc` ~13 ns; a slice that
// yields at once costs ~70 ns in all, so the clock was almost half of it (docs/architecture.md,
// "The loop's clock").
//
// LoopClock::now() extends the last real reading (sync(), which the loop calls after every poll)
// by the TSC ticks since, at a rate measured against steady_clock itself over the loop's whole life
// so far (or another loop's longer one). It is used only once that span is at least kCalibration
// long, and only where the kernel
// itself keeps time with the TSC (clocksource "tsc": it found the TSC invariant and synchronised
// across CPUs); otherwise, on other architectures, or with REACTOR_LOOP_CLOCK=steady, now() is
// Clock::now(). Its error is the rate's error (parts per million, measured over the span; at most
// 500 ppm while NTP slews steady_clock) times the time since the last poll: under a microsecond
// for slices of a millisecond, half a millisecond for a slice of a second, so deadlines, timers,
// slice histograms and the watchdog's slice start, which all compare it with Clock::now(), see the
// same time. Never earlier than the last sync(). One per loop thread; not thread-safe.
#pragma once

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <ratio>
#include <type_traits>

#include "reactor/time.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace reactor {

class LoopClock {
 public:
  // The span of real readings the TSC rate is measured over before now() uses it.
  static constexpr Duration kCalibration = std::chrono::milliseconds(100);

  LoopClock();

  // Clock::now() without its call into libstdc++: the same clock_gettime(CLOCK_MONOTONIC) that
  // steady_clock::now() makes on Linux, inline.
  static Deadline steady_now() {
    static_assert(std::is_same_v<Duration::period, std::nano>);
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return Deadline(Duration(int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec));
  }

  // A real reading (Clock::now()), which also anchors and calibrates the TSC path.
  Deadline sync() {
    const Deadline t = steady_now();
    if (!tsc_) return t;
    const uint64_t c = ticks();
    if (first_ticks_ == 0) {
      first_ticks_ = c;
      first_ = t;
      mult_ = shared_mult();  // another loop's, until this one has its own
    } else if (t - first_ >= next_calibration_ && c > first_ticks_) {
      // ns per tick as a 32.32 fixed-point number, over everything since the first reading; again
      // when that span has doubled, and at least every second (a division is not free).
      const Duration span = t - first_;
      mult_ = static_cast<uint64_t>((static_cast<unsigned __int128>(span.count()) << 32) /
                                    (c - first_ticks_));
      next_calibration_ = std::min(span * 2, span + std::chrono::seconds(1));
      share_mult(mult_, span);
    }
    anchor_ticks_ = c;
    anchor_ = t;
    return t;
  }

  // Now: the last sync() plus the TSC ticks since, or Clock::now() (see above).
  Deadline now() const {
    if (mult_ == 0) return steady_now();
    const int64_t ticks_since = static_cast<int64_t>(ticks() - anchor_ticks_);
    if (ticks_since <= 0) return anchor_;  // an earlier read of a CPU whose TSC is a tick behind
    const auto ns =
        static_cast<int64_t>((static_cast<unsigned __int128>(ticks_since) * mult_) >> 32);
    return anchor_ + Duration(ns);
  }

  // Whether now() reads the TSC (calibrated, on a TSC clocksource).
  bool uses_tsc() const { return mult_ != 0; }

 private:
  // The rate measured over the longest span any loop of this process has, so a new loop (a
  // test's, a benchmark's) needs no calibration of its own; 0 before the first.
  static uint64_t shared_mult();
  static void share_mult(uint64_t mult, Duration span);

  static uint64_t ticks() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return 0;
#endif
  }

  bool tsc_ = false;  // the TSC may be used (decided once per process)
  uint64_t first_ticks_ = 0;
  Deadline first_{};
  Duration next_calibration_ = kCalibration;  // since first_
  uint64_t anchor_ticks_ = 0;
  Deadline anchor_{};
  uint64_t mult_ = 0;  // 0: not calibrated (now() is Clock::now())
};

}  // namespace reactor
