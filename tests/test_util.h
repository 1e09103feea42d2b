// Helpers shared by the test suites.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "backends/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reactor/net.h"
#include "reactor/reactor.h"

namespace reactor::test {

// Runs fn as the main fiber of a fresh reactor on `backend` and fails the test if the reactor
// cannot be created.
template <class F>
void run_fiber(F&& fn, std::string backend = "auto") {
  Reactor::Options options;
  options.backend = std::move(backend);
  absl::Status s = Reactor::run(std::forward<F>(fn), options);
  ASSERT_TRUE(s.ok()) << s;
}

// The backends named in REACTORD_REQUIRED_BACKENDS (comma-separated; .ci/run names every backend
// its machine must have), or none when it is unset.
inline std::vector<std::string> required_backends() {
  std::vector<std::string> names;
  const char* env = std::getenv("REACTORD_REQUIRED_BACKENDS");
  std::string_view rest = env ? env : "";
  while (!rest.empty()) {
    const size_t comma = std::min(rest.find(','), rest.size());
    if (comma > 0) names.emplace_back(rest.substr(0, comma));
    rest.remove_prefix(std::min(comma + 1, rest.size()));
  }
  return names;
}

// The backends this machine can run, for TEST_P suites: every backend-neutral test runs on each.
// A required backend (above) that is unavailable is listed too, so that its tests fail rather than
// drop out; conformance_test's BackendPresence says why it is missing, or skips with the reason
// where it is not required.
inline std::vector<std::string> available_backends() {
  std::vector<std::string> names;
  for (const BackendInfo& b : list_backends()) {
    if (b.available) names.push_back(b.name);
  }
  for (const std::string& r : required_backends()) {
    if (std::find(names.begin(), names.end(), r) == names.end()) names.push_back(r);
  }
  return names;
}

inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

// The fixture of a suite whose every test runs on each available backend, its parameter:
// INSTANTIATE_TEST_SUITE_P(Backends, X, ValuesIn(available_backends()), backend_test_name).
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs fn as the main fiber of a fresh reactor on this test's backend.
  template <class F>
  void run(F&& fn) {
    run_fiber(std::forward<F>(fn), GetParam());
  }
};

// One of a backend's counters by name; fails the test if the backend has no such counter.
inline uint64_t backend_counter(const Backend& b, std::string_view name) {
  std::vector<Counter> out;
  b.counters(out);
  for (const Counter& c : out) {
    if (c.name == name) return c.value;
  }
  ADD_FAILURE() << "no counter " << name;
  return 0;
}

inline double ms_since(Deadline start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// How a read of up to 16 bytes from `s` by `deadline` ends, for tests that care only about that.
// Loop thread, inside a fiber.
inline absl::Status read_status(Stream& s, Deadline deadline = kNoDeadline) {
  std::byte buf[16];
  return s.read(buf, deadline).status();
}

// How long `op` takes to run, in milliseconds.
template <class F>
double ms_taken(F&& op) {
  const Deadline start = Clock::now();
  std::forward<F>(op)();
  return ms_since(start);
}

// Runs `op` on a fiber named `name`, gives it `settle` to reach its suspension point, then runs
// `interrupt` with its task (to cancel it, close its fd, reset its peer, ...) and joins it.
// Returns the milliseconds from the start of `interrupt` to the end of `op`. Loop thread, inside a
// fiber.
template <class Op, class Interrupt>
double interrupt_pending(std::string name, Op&& op, Interrupt&& interrupt,
                         Duration settle = std::chrono::milliseconds(2)) {
  auto task = spawn(name, std::forward<Op>(op));
  if (!task.ok()) {
    ADD_FAILURE() << "spawn " << name << ": " << task.status();
    return -1;
  }
  EXPECT_TRUE(sleep_for(settle).ok());
  return ms_taken([&] {
    std::forward<Interrupt>(interrupt)(*task);
    task->join();
  });
}

// Both ends of a loopback TCP connection.
struct Pair {
  TcpStream client;
  TcpStream server;
};

// A fresh connected pair on 127.0.0.1; fails the test if it cannot be made. Loop thread, inside a
// fiber.
inline Pair connected_pair() {
  using namespace std::chrono_literals;
  auto listener = TcpListener::bind(*SocketAddress::parse_ip("127.0.0.1:0"));
  EXPECT_TRUE(listener.ok()) << listener.status();
  auto addr = listener->local_address();
  auto client = TcpStream::connect(*addr, deadline_after(5s));
  EXPECT_TRUE(client.ok()) << client.status();
  auto server = listener->accept(deadline_after(5s));
  EXPECT_TRUE(server.ok()) << server.status();
  return Pair{*std::move(client), *std::move(server)};
}

}  // namespace reactor::test
