// The loop's clock (reactor/loop_clock.h): the same time as steady_clock, read from the TSC once
// it is calibrated where the kernel keeps time with the TSC, and steady_clock itself otherwise.
#include "reactor/loop_clock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace reactor {
namespace {

using namespace std::chrono_literals;

bool tsc_clocksource() {
  std::ifstream in("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string s;
  return in && std::getline(in, s) && s == "tsc";
}

int64_t ns(Duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// Syncs as a loop does (after each poll) for `span`, every `every`.
void run_loop(LoopClock& c, Duration span, Duration every) {
  const Deadline end = Clock::now() + span;
  while (Clock::now() < end) {
    (void)c.sync();
    std::this_thread::sleep_for(every);
  }
  (void)c.sync();
}

TEST(LoopClock, CalibratesOnATscClocksourceAndAgreesWithSteadyClock) {
  LoopClock c;
  (void)c.sync();
  if (!tsc_clocksource() || std::getenv("REACTOR_LOOP_CLOCK") != nullptr) {
    run_loop(c, LoopClock::kCalibration + 20ms, 5ms);
    EXPECT_FALSE(c.uses_tsc()) << "the TSC is used with clocksource not tsc";
    GTEST_SKIP() << "clocksource is not tsc (or REACTOR_LOOP_CLOCK is set): steady_clock only";
  }
  run_loop(c, LoopClock::kCalibration + 20ms, 5ms);
  ASSERT_TRUE(c.uses_tsc());
  // Bracketed by two steady_clock readings, at intervals from the last sync: the TSC-extended time
  // lies between them, within the rate's error (up to 500 ppm of the interval while NTP slews
  // steady_clock) and a TSC read's skew.
  for (Duration gap : {0ms, 1ms, 20ms, 200ms}) {
    (void)c.sync();
    std::this_thread::sleep_for(gap);
    const Deadline before = Clock::now();
    const Deadline t = c.now();
    const Deadline after = Clock::now();
    EXPECT_GE(ns(t - before), -2'000 - ns(gap) / 2000) << "gap " << ns(gap) << " ns";
    EXPECT_LE(ns(t - after), 2'000 + ns(gap) / 2000) << "gap " << ns(gap) << " ns";
  }
}

TEST(LoopClock, NeverEarlierThanTheLastSync) {
  LoopClock c;
  run_loop(c, LoopClock::kCalibration + 20ms, 5ms);
  for (int i = 0; i < 100'000; ++i) {
    const Deadline s = c.sync();
    ASSERT_GE(c.now(), s);
  }
}

// A new clock takes the rate another one measured: no calibration of its own first.
TEST(LoopClock, ANewClockUsesTheRateAlreadyMeasured) {
  if (!tsc_clocksource() || std::getenv("REACTOR_LOOP_CLOCK") != nullptr) {
    GTEST_SKIP() << "clocksource is not tsc (or REACTOR_LOOP_CLOCK is set)";
  }
  LoopClock first;
  run_loop(first, LoopClock::kCalibration + 20ms, 5ms);
  ASSERT_TRUE(first.uses_tsc());
  LoopClock second;
  (void)second.sync();
  EXPECT_TRUE(second.uses_tsc());
}

}  // namespace
}  // namespace reactor
