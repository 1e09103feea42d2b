// The http service's real handler in-process, on every available backend: routes, keep-alive,
// pipelining, each limit, the header timeout, /debug/block, and exact stats; plus the idle
// timeout and drain scenarios of tests/service_scenarios.h.
#include "services/http.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "tests/service_scenarios.h"
#include "tests/service_test_util.h"
#include "tests/test_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
using reactor::test::RawClient;
using reactor::test::TestServer;
using ::testing::HasSubstr;

struct Reply {
  int status = 0;  // 0: no complete response arrived
  std::string head;
  std::string body;
  bool has(std::string_view header_line) const {
    return head.find("\r\n" + std::string(header_line) + "\r\n") != std::string::npos;
  }
};

// Reads one response. HEAD responses carry Content-Length but no body.
Reply read_reply(RawClient& c, bool head_request = false) {
  Reply r;
  size_t end;
  while ((end = c.buffer().find("\r\n\r\n")) == std::string::npos) {
    if (!c.fill(c.buffer().size() + 1)) return r;
  }
  r.head = c.take(end + 4);
  if (r.head.compare(0, 9, "HTTP/1.1 ") != 0) return r;
  const size_t cl = r.head.find("\r\nContent-Length: ");
  if (cl == std::string::npos) return r;
  const size_t length = std::stoul(r.head.substr(cl + 18));
  if (!head_request) {
    if (!c.fill(length)) return r;
    r.body = c.take(length);
  }
  r.status = std::stoi(r.head.substr(9, 3));
  return r;
}

// Sends `request` and reads one response (status 0 if the server closed first).
Reply ask(RawClient& c, std::string_view request, bool head_request = false) {
  EXPECT_TRUE(c.send(request)) << "the server closed before taking " << request.substr(0, 60);
  return read_reply(c, head_request);
}

std::string get(std::string_view path, std::string_view extra = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra) + "\r\n";
}

// One GET /healthz answered 200.
void healthz(RawClient& c) {
  EXPECT_EQ(ask(c, get("/healthz")).status, 200);
}

// Serves with a copy of `o`.
ConnectionHandler handler(HttpOptions o) {
  return [o = std::move(o)](Connection& c) { serve_http(c, o); };
}

class HttpServiceTest : public reactor::test::BackendTest {};

const reactor::test::ServiceScenario kHttp{
    .handler =
        [](reactor::Duration idle) {
          HttpOptions o;
          o.idle_timeout = idle;
          return handler(o);
        },
    .exchange = healthz,
    .half = "GET /healthz HTTP/1.1\r\n",
    .finish =
        [](RawClient& busy) {
          Reply r = ask(busy, "Host: t\r\n\r\n");
          EXPECT_EQ(r.status, 200);
          EXPECT_TRUE(r.has("Connection: close"));
        },
};

REACTOR_SERVICE_SCENARIOS(Http, kHttp);

TEST_P(HttpServiceTest, RoutesKeepAliveAndExactStats) {
  run([] {
    TestServer server(handler({}));
    RawClient c(server.address());

    Reply r = ask(c, get("/"));
    EXPECT_EQ(r.status, 200);
    EXPECT_THAT(r.body, HasSubstr("reactord"));
    EXPECT_FALSE(r.has("Connection: close"));

    r = ask(c, get("/healthz"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");

    r = ask(c, "HEAD /healthz HTTP/1.1\r\nHost: test\r\n\r\n", /*head_request=*/true);
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.has("Content-Length: 2"));

    EXPECT_EQ(ask(c, get("/nope")).status, 404);

    EXPECT_EQ(ask(c, get("/metrics")).status, 404);  // no metrics_text: not found

    r = ask(c, "DELETE /healthz HTTP/1.1\r\nHost: test\r\n\r\n");
    EXPECT_EQ(r.status, 405);
    EXPECT_TRUE(r.has("Allow: GET, HEAD"));

    // A body within the limit is read and the connection goes on.
    EXPECT_EQ(ask(c, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello").status,
              405);

    r = ask(c, get("/healthz", "Connection: close\r\n"));
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.has("Connection: close"));
    EXPECT_TRUE(c.at_eof());
    c.close();
    server.wait_closed(1);
    EXPECT_TRUE(server.totals_are(8, c.sent(), c.received()));
    EXPECT_EQ(server.stats().connections_accepted.get(), 1u);
    EXPECT_EQ(server.stats().connections_active.get(), 0u);
  });
}

TEST_P(HttpServiceTest, Metrics) {
  run([] {
    TestServer server(handler({.metrics_text = [] { return std::string("reactord_up 1\n"); }}));
    RawClient c(server.address());
    Reply r = ask(c, get("/metrics"));
    EXPECT_EQ(r.status, 200);
    EXPECT_THAT(r.head, HasSubstr("Content-Type: text/plain; version=0.0.4"));
    EXPECT_EQ(r.body, "reactord_up 1\n");
  });
}

TEST_P(HttpServiceTest, PipelinedRequestsAnsweredInOrder) {
  run([] {
    TestServer server(handler({}));
    RawClient c(server.address());
    std::string burst;
    const int kRequests = 50;
    for (int i = 0; i < kRequests; ++i) {
      burst += get(i % 3 == 0 ? "/healthz" : (i % 3 == 1 ? "/missing" : "/"));
    }
    burst += get("/healthz", "Connection: close\r\n");
    ASSERT_TRUE(c.send(burst));
    for (int i = 0; i < kRequests; ++i) {
      Reply r = read_reply(c);
      ASSERT_EQ(r.status, i % 3 == 1 ? 404 : 200) << "response " << i;
      if (i % 3 == 0) {
        EXPECT_EQ(r.body, "ok");
      }
    }
    Reply last = read_reply(c);
    EXPECT_EQ(last.status, 200);
    EXPECT_TRUE(last.has("Connection: close"));
    EXPECT_TRUE(c.at_eof());
    c.close();
    server.wait_closed(1);
    EXPECT_TRUE(server.totals_are(kRequests + 1, c.sent(), c.received()));
  });
}

TEST_P(HttpServiceTest, BodySplitAcrossWritesThenPipelinedRequest) {
  run([] {
    TestServer server(handler({}));
    RawClient c(server.address());
    const std::string body(50000, 'b');
    ASSERT_TRUE(c.send("POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n"));
    ASSERT_TRUE(c.send(body.substr(0, 20000)));
    ASSERT_TRUE(reactor::sleep_for(5ms).ok());
    EXPECT_EQ(ask(c, body.substr(20000) + get("/healthz")).status, 405);
    Reply r = read_reply(c);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
  });
}

TEST_P(HttpServiceTest, Http10ClosesUnlessKeepAlive) {
  run([] {
    TestServer server(handler({}));
    {
      RawClient c(server.address());
      Reply r = ask(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      EXPECT_EQ(r.status, 200);
      EXPECT_TRUE(r.has("Connection: keep-alive"));
      r = ask(c, "GET /healthz HTTP/1.0\r\n\r\n");
      EXPECT_EQ(r.status, 200);
      EXPECT_TRUE(r.has("Connection: close"));
      EXPECT_TRUE(c.at_eof());
    }
    server.wait_closed(1);
  });
}

// Each refused request: its status, `Connection: close`, then the server closes.
struct LimitCase {
  std::string request;
  int status;
};

TEST_P(HttpServiceTest, LimitsAndMalformedRequestsCloseWithStatus) {
  run([] {
    HttpOptions o;
    o.max_header_bytes = 1024;
    o.max_body_bytes = 100;
    TestServer server(handler(o));
    const std::vector<LimitCase> cases = {
        {"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400},
        {"BROKEN\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},  // no Host
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n", 431},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
        {"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505},
    };
    reactor::test::expect_each_case_closes(server, cases, 2, [](RawClient& c, const LimitCase& lc) {
      // A good request first: the error must not lose it.
      EXPECT_EQ(ask(c, get("/healthz") + lc.request).status, 200);
      Reply r = read_reply(c);
      EXPECT_EQ(r.status, lc.status) << lc.request.substr(0, 60);
      EXPECT_TRUE(r.has("Connection: close"));
      EXPECT_FALSE(r.body.empty());
      EXPECT_TRUE(c.at_eof()) << lc.request.substr(0, 60);
    });
  });
}

TEST_P(HttpServiceTest, HeaderTimeoutAgainstSlowClients) {
  run([] {
    HttpOptions o;
    o.header_timeout = 100ms;
    o.idle_timeout = 30s;
    TestServer server(handler(o));
    {
      // Half a header, then nothing.
      RawClient c(server.address());
      Reply r = ask(c, "GET / HTTP/1.1\r\nHost: t\r\n");
      EXPECT_EQ(r.status, 408);
      EXPECT_TRUE(r.has("Connection: close"));
      EXPECT_TRUE(c.at_eof());
    }
    {
      // A header trickling in, a line every 20 ms: the limit runs from the first byte, so
      // steady progress does not extend it.
      RawClient c(server.address());
      ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: t\r\n"));
      auto writer = reactor::spawn("trickle", [&c] {
        for (int i = 0; i < 500; ++i) {
          if (!reactor::sleep_for(20ms).ok() || !c.send("X-Slow: yes\r\n")) return;
        }
      });
      ASSERT_TRUE(writer.ok());
      Reply r = read_reply(c, false);
      EXPECT_EQ(r.status, 408);
      writer->cancel();
      writer->join();
    }
    {
      // After a complete request, an idle keep-alive wait is bounded by idle_timeout, not by
      // header_timeout.
      RawClient c(server.address());
      EXPECT_EQ(ask(c, get("/healthz")).status, 200);
      ASSERT_TRUE(reactor::sleep_for(300ms).ok());
      EXPECT_EQ(ask(c, get("/healthz")).status, 200);
    }
  });
}

TEST_P(HttpServiceTest, DebugBlockOnlyWhenEnabled) {
  run([] {
    TestServer server_off(handler({}));
    RawClient a(server_off.address());
    EXPECT_EQ(ask(a, get("/debug/block?ms=1")).status, 404);

    HttpOptions on;
    on.debug_routes = true;
    TestServer server_on(handler(on));
    RawClient b(server_on.address());
    const reactor::Deadline start = reactor::Clock::now();
    Reply r = ask(b, get("/debug/block?ms=30"));
    EXPECT_EQ(r.status, 200);
    EXPECT_THAT(r.body, HasSubstr("30 ms"));
    EXPECT_GE(reactor::test::ms_since(start), 29);  // it really slept
    EXPECT_EQ(ask(b, get("/debug/block?ms=60001")).status, 400);
    EXPECT_EQ(ask(b, get("/debug/block?ms=abc")).status, 400);
    EXPECT_EQ(ask(b, get("/debug/block")).status, 400);
    EXPECT_EQ(ask(b, "POST /debug/block?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n").status, 405);
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, HttpServiceTest,
                         ::testing::ValuesIn(reactor::test::available_backends()),
                         reactor::test::backend_test_name);

}  // namespace
}  // namespace reactord
