#include "reactor/loop_clock.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace reactor {
namespace {

// Whether the kernel keeps time with the TSC (it then found it invariant and synchronised across
// CPUs), and REACTOR_LOOP_CLOCK is not "steady". Once per process.
bool tsc_usable() {
#if defined(__x86_64__)
  static const bool usable = [] {
    if (const char* v = std::getenv("REACTOR_LOOP_CLOCK");
        v != nullptr && std::strcmp(v, "steady") == 0) {
      return false;
    }
    std::ifstream in("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    std::string source;
    return in && std::getline(in, source) && source == "tsc";
  }();
  return usable;
#else
  return false;
#endif
}

std::atomic<uint64_t> g_mult{0};
std::atomic<int64_t> g_span_ns{0};

}  // namespace

LoopClock::LoopClock() : tsc_(tsc_usable()) {}

uint64_t LoopClock::shared_mult() {
  return g_mult.load(std::memory_order_relaxed);
}

void LoopClock::share_mult(uint64_t mult, Duration span) {
  // Two loops racing may leave the shorter span's rate: both are calibrated, either will do.
  if (span.count() <= g_span_ns.load(std::memory_order_relaxed)) return;
  g_span_ns.store(span.count(), std::memory_order_relaxed);
  g_mult.store(mult, std::memory_order_relaxed);
}

}  // namespace reactor
