// Time on the loop: one monotonic clock, and deadlines as absolute points on it.
//
// Every suspension point takes a Deadline. kNoDeadline waits without limit; a deadline already in
// the past makes the operation return DeadlineExceeded without waiting (after trying it once, for
// I/O that can complete at once).
#pragma once

#include <chrono>

namespace reactor {

using Clock = std::chrono::steady_clock;
using Duration = Clock::duration;
using Deadline = Clock::time_point;

inline constexpr Deadline kNoDeadline = Deadline::max();
// A deadline that has always passed (the clock's epoch): I/O is tried once and returns
// DeadlineExceeded instead of suspending the fiber.
inline constexpr Deadline kPastDeadline = Deadline{};

// The deadline `d` from now, saturating instead of overflowing. Any thread.
inline Deadline deadline_after(Duration d) {
  const Deadline now = Clock::now();
  if (d >= kNoDeadline - now) return kNoDeadline;
  return now + d;
}

}  // namespace reactor
