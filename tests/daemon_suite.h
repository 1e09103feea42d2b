// The base of the reliability and soak suites: a daemon on each backend (the test's parameter),
// its services' addresses and statistics, its open fds once idle, and what they check after load:
// no stall of the daemon's own making, and no warning in its log. Test thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"
#include "tests/reliability_util.h"

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

inline constexpr int64_t kMiB = 1 << 20;

class BackendDaemonTest : public ::testing::TestWithParam<std::string> {
 protected:
  using Json = nlohmann::json;

  // Starts the daemon with `toml` on this test's backend; `before_exec` runs in its child.
  ::testing::AssertionResult start_on_backend(const std::string& toml,
                                              std::function<void()> before_exec = nullptr) {
    return start_daemon(d_, toml, {"--backend=" + GetParam()}, std::move(before_exec),
                        std::chrono::seconds(60));
  }
  std::string addr(const std::string& service) { return d_.addresses()[service]; }
  std::string admin_socket() const { return d_.admin_socket(); }

  // The admin command's JSON answer; null if the query failed, discarded if it is not JSON.
  Json query_json(const std::string& cmd) {
    std::optional<std::string> s = admin_query(admin_socket(), cmd);
    return s ? Json::parse(*s, nullptr, /*allow_exceptions=*/false) : Json();
  }
  // `stats`; an empty object if the query failed.
  Json stats() {
    Json s = query_json("stats");
    return s.is_object() ? s : Json::object();
  }
  // One service of `services`; an empty object if it is not there.
  Json service_stats(const std::string& name) {
    Json services = query_json("services");
    if (services.is_array()) {
      for (const Json& s : services) {
        if (s.value("name", "") == name) return s;
      }
    }
    return Json::object();
  }

  // The daemon's open fds once no connection of any service is open (waits up to 30 s for that).
  int idle_fds() {
    using Clock = std::chrono::steady_clock;
    for (auto end = Clock::now() + std::chrono::seconds(30); Clock::now() < end;
         std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
      const Json services = query_json("services");
      if (!services.is_array()) continue;
      int64_t active = 0;
      for (const Json& s : services) {
        active += s.value("connections", Json::object()).value("active", 0);
      }
      if (active == 0) break;
    }
    return settled_fds(d_.pid());
  }

  // While the daemon runs: no stall of its own making, no line logged at warning level or worse
  // but the watchdog's on those, and no sanitizer report.
  void expect_clean_log() {
    EXPECT_TRUE(no_stalls_of_its_own(admin_socket()));
    const std::string log = d_.log();
    EXPECT_THAT(unexpected_log_lines(log, kStallLines), ::testing::IsEmpty()) << log;
  }

  DaemonProcess d_;
};

}  // namespace reactor::test
