// Helpers shared by the test suites.
#pragma once

#include <string>
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

// The backends this machine can run, for TEST_P suites: every backend-neutral test runs on each.
inline std::vector<std::string> available_backends() {
  std::vector<std::string> names;
  for (const BackendInfo& b : list_backends()) {
    if (b.available) names.push_back(b.name);
  }
  return names;
}

inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

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
