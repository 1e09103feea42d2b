// Scenarios every service passes, written once. A service's test file describes its protocol in a
// ServiceScenario and runs them on every available backend with
//   REACTOR_SERVICE_SCENARIOS(Http, kHttp);
// (the prefix, the service's name, keeps test names apart between the files).
#pragma once

#include <functional>
#include <string>
#include <tuple>
#include <utility>

#include "gtest/gtest.h"
#include "tests/service_test_util.h"
#include "tests/test_util.h"

namespace reactor::test {

// How the scenarios speak to one service.
struct ServiceScenario {
  // The service's handler with `idle_timeout` and otherwise default options.
  std::function<reactord::ConnectionHandler(Duration idle_timeout)> handler;
  // One complete request (counted as one by the service) and its answer, checked, on `c`.
  std::function<void(RawClient& c)> exchange;
  // The first part of a request; `finish(c)` sends the rest and checks the answer.
  std::string half;
  std::function<void(RawClient& c)> finish;
};

// Parameters: the service's scenario and a backend's name.
class ServiceScenarioTest
    : public ::testing::TestWithParam<std::tuple<const ServiceScenario*, std::string>> {
 protected:
  const ServiceScenario& scenario() const { return *std::get<0>(GetParam()); }
  template <class F>
  void run(F&& fn) {
    run_fiber(std::forward<F>(fn), std::get<1>(GetParam()));
  }
  // A client of `server` that has made one exchange. Inside run().
  RawClient client_after_exchange(TestServer& server) const {
    RawClient c(server.address());
    scenario().exchange(c);
    return c;
  }
};

// `s` with every available backend.
inline auto scenarios_on_every_backend(const ServiceScenario& s) {
  return ::testing::Combine(::testing::Values(&s), ::testing::ValuesIn(available_backends()));
}

// Test names end in the backend's name (the prefix names the service).
inline std::string scenario_test_name(
    const ::testing::TestParamInfo<ServiceScenarioTest::ParamType>& info) {
  return std::get<1>(info.param);
}

// Instantiates the scenarios for `scenario` (a ServiceScenario with static storage) on every
// available backend; at namespace scope.
#define REACTOR_SERVICE_SCENARIOS(prefix, scenario)                               \
  using ::reactor::test::ServiceScenarioTest;                                     \
  INSTANTIATE_TEST_SUITE_P(prefix, ServiceScenarioTest,                           \
                           ::reactor::test::scenarios_on_every_backend(scenario), \
                           ::reactor::test::scenario_test_name)

// A connection left idle after one exchange is closed by the server, with no bytes.
TEST_P(ServiceScenarioTest, IdleTimeoutCloses) {
  run([this] {
    TestServer server(scenario().handler(std::chrono::milliseconds(100)));
    RawClient c = client_after_exchange(server);
    EXPECT_TRUE(c.at_eof(10s));
    server.wait_closed(1);
    EXPECT_EQ(server.stats().requests.get(), 1u);
  });
}

// Drain with one connection idle between requests and one in the middle of a request: the idle
// one is closed at once; the busy one gets its answer, then the close.
TEST_P(ServiceScenarioTest, DrainClosesIdleAndFinishesInFlight) {
  run([this] {
    TestServer server(scenario().handler(std::chrono::seconds(60)));
    RawClient idle = client_after_exchange(server);
    RawClient busy(server.address());
    ASSERT_TRUE(busy.send(scenario().half));
    // Both connections are being served; wait until the busy one's bytes were read.
    server.wait_bytes_in(idle.sent() + busy.sent());
    ASSERT_EQ(server.live().size(), 2u);
    server.drain_all();
    EXPECT_TRUE(idle.at_eof());
    scenario().finish(busy);
    EXPECT_TRUE(busy.at_eof());
    busy.close();
    server.wait_closed(2);
  });
}

// A connection that has sent nothing when the drain begins (one accepted in its first instant)
// is served its first request, then closed; one that already had a request is closed at once.
TEST_P(ServiceScenarioTest, DrainServesTheFirstRequestOfAFreshConnection) {
  run([this] {
    TestServer server(scenario().handler(std::chrono::seconds(60)));
    RawClient idle = client_after_exchange(server);
    RawClient fresh(server.address());
    const reactor::Deadline until = reactor::deadline_after(5s);
    while (server.live().size() < 2 && reactor::Clock::now() < until) {
      (void)reactor::sleep_for(1ms);
    }
    ASSERT_EQ(server.live().size(), 2u);
    server.drain_all();
    EXPECT_TRUE(idle.at_eof());
    scenario().exchange(fresh);
    EXPECT_TRUE(fresh.at_eof());
    fresh.close();  // the server lingers until the peer closes
    server.wait_closed(2);
    EXPECT_EQ(server.stats().requests.get(), 2u);
  });
}

}  // namespace reactor::test
