// What the reliability and soak suites check of a daemon after load: no stall of the daemon's
// own making, and no warning in its log. Test thread.
#pragma once

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"

namespace reactor::test {

// The watchdog's lines in the log: judged by no_stalls_of_its_own, from the stall log, which
// tells whether the loop or the machine took the time.
inline const std::vector<std::string> kStallLines = {" stalled ", " stall in fiber ",
                                                     " stall report"};

// No stall of the daemon's own making: `stalls_total` counts only stalls in which the loop thread
// was runnable (state R, whatever the syscall it last made) but ran under half of the stall's
// wall time: the machine did not run it (a loaded 2-core machine, a sanitizer's own threads). Any
// other stall fails, as does a count the kept reports do not cover.
inline ::testing::AssertionResult no_stalls_of_its_own(const std::string& admin_socket) {
  const std::optional<std::string> text = admin_query(admin_socket, "stalls");
  if (!text) return ::testing::AssertionFailure() << "the stalls query failed";
  const nlohmann::json s = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!s.is_object() || !s["reports"].is_array()) {
    return ::testing::AssertionFailure() << "stalls answered " << *text;
  }
  const int64_t total = s.value("stalls_total", int64_t{-1});
  if (total != static_cast<int64_t>(s["reports"].size())) {
    return ::testing::AssertionFailure()
           << total << " stalls, " << s["reports"].size() << " reports kept: " << *text;
  }
  for (const nlohmann::json& r : s["reports"]) {
    const bool machine = r.value("thread_state", "") == "R" &&
                         r.value("cpu_seconds", 1.0) < 0.5 * r.value("wall_seconds", 0.0);
    if (!machine) return ::testing::AssertionFailure() << "the loop stalled: " << r.dump();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace reactor::test
