// The http service in the real daemon through clients nobody here wrote: Python's http.client
// (tests/http_clients_test.py, run with Debian's /usr/bin/python3) and curl. Keep-alive (one
// connection for many requests, counted by the daemon), HEAD, HTTP/1.0 with and without
// keep-alive, and `Expect: 100-continue`, answered with an interim 100 (docs/services.md) so curl
// sends the body without waiting out its timeout.
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"
#include "tests/process_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
namespace test = reactor::test;
using ::testing::HasSubstr;
using ::testing::Not;

class HttpClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::start_daemon(
        d_, test::daemon_config(d_.dir(), "",
                                "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = "
                                "\"127.0.0.1:0\"\n")));
    url_ = "http://" + d_.addresses()["web"];
  }
  void TearDown() override { EXPECT_TRUE(test::stops_cleanly(d_)); }

  // curl with `args`, silent but for errors; fails the test if it did not exit 0.
  test::Ran curl(std::vector<std::string> args) {
    args.insert(args.begin(), {"curl", "-sS", "--max-time", "10"});
    test::Ran r = test::run_process(args, {}, nullptr, 20s);
    EXPECT_EQ(r.code, 0) << test::describe(r);
    return r;
  }
  // The http service's connections accepted so far, from the admin `services` answer.
  int64_t accepted() {
    const nlohmann::json services = nlohmann::json::parse(
        test::admin_query(d_.admin_socket(), "services").value_or(""), nullptr, false);
    if (!services.is_array()) return -1;
    for (const nlohmann::json& s : services) {
      if (s.value("name", "") == "web") return s["connections"].value("accepted", int64_t{-1});
    }
    return -1;
  }

  test::DaemonProcess d_;
  std::string url_;
};

TEST_F(HttpClientsTest, PythonHttpClient) {
  const std::string port = url_.substr(url_.rfind(':') + 1);
  const test::Ran r = test::run_process(
      {"/usr/bin/python3", REACTOR_SOURCE_DIR "/tests/http_clients_test.py", port}, {}, nullptr,
      60s);
  EXPECT_EQ(r.code, 0) << test::describe(r);
  EXPECT_THAT(r.out, HasSubstr("0 failures")) << test::describe(r);
}

TEST_F(HttpClientsTest, CurlKeepAliveServesManyRequestsOnOneConnection) {
  const int64_t before = accepted();
  const test::Ran r = curl({"-v", url_ + "/healthz", url_ + "/", url_ + "/healthz"});
  EXPECT_THAT(r.out, ::testing::MatchesRegex("okHello from reactord, shard [01]\nok"));
  EXPECT_THAT(r.err, HasSubstr("Re-using existing connection")) << r.err;
  EXPECT_EQ(accepted(), before + 1) << r.err;
}

TEST_F(HttpClientsTest, CurlHeadGetsHeadersWithoutBody) {
  const test::Ran r = curl({"-I", url_ + "/healthz"});
  EXPECT_THAT(r.out, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(r.out, HasSubstr("Content-Length: 2\r\n"));
  EXPECT_THAT(r.out, ::testing::EndsWith("\r\n\r\n")) << "HEAD got a body: " << r.out;
  // A HEAD then a GET on one connection: a body after HEAD would be read as the GET's answer.
  const test::Ran both = curl({"-I", url_ + "/healthz", "--next", "-sSv", url_ + "/healthz"});
  EXPECT_THAT(both.err, HasSubstr("Re-using existing connection")) << both.err;
}

TEST_F(HttpClientsTest, CurlHttp10ClosesUnlessAskedToKeepAlive) {
  const int64_t before = accepted();
  const test::Ran plain = curl({"-v", "--http1.0", url_ + "/healthz", url_ + "/healthz"});
  EXPECT_EQ(plain.out, "okok");
  EXPECT_THAT(plain.err, HasSubstr("> GET /healthz HTTP/1.0"));
  EXPECT_THAT(plain.err, Not(HasSubstr("Re-using existing connection"))) << plain.err;
  EXPECT_EQ(accepted(), before + 2);
  const test::Ran kept = curl(
      {"-v", "--http1.0", "-H", "Connection: keep-alive", url_ + "/healthz", url_ + "/healthz"});
  EXPECT_EQ(kept.out, "okok");
  EXPECT_THAT(kept.err, HasSubstr("< Connection: keep-alive"));
  EXPECT_THAT(kept.err, HasSubstr("Re-using existing connection")) << kept.err;
  EXPECT_EQ(accepted(), before + 3);
}

TEST_F(HttpClientsTest, CurlExpect100ContinueGetsAnInterim100) {
  const std::string body_file = d_.dir() + "/body";
  std::ofstream(body_file) << std::string(4000, 'b');
  // The service answers the expectation with an interim 100, so curl sends the body at once
  // instead of after its --expect100-timeout (10 s here).
  const auto t0 = std::chrono::steady_clock::now();
  const test::Ran get =
      curl({"-v", "-X", "GET", "-H", "Expect: 100-continue", "--expect100-timeout", "10",
            "--data-binary", "@" + body_file, url_ + "/healthz"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(get.out, "ok");
  EXPECT_THAT(get.err, HasSubstr("> Expect: 100-continue"));
  EXPECT_THAT(get.err, HasSubstr("< HTTP/1.1 100 Continue")) << get.err;
  EXPECT_THAT(get.err, HasSubstr("< HTTP/1.1 200 OK"));
  EXPECT_LT(seconds, 10);
  // A POST with a body is refused with 405 once its body arrived; the connection goes on.
  const test::Ran post =
      curl({"-v", "-H", "Expect: 100-continue", "--expect100-timeout", "10", "--data-binary",
            "@" + body_file, url_ + "/healthz", "--next", "-sSv", url_ + "/healthz"});
  EXPECT_THAT(post.err, HasSubstr("< HTTP/1.1 100 Continue"));
  EXPECT_THAT(post.err, HasSubstr("< HTTP/1.1 405 Method Not Allowed"));
  EXPECT_THAT(post.err, HasSubstr("< Allow: GET, HEAD"));
  EXPECT_THAT(post.err, HasSubstr("Re-using existing connection")) << post.err;
  EXPECT_THAT(post.out, ::testing::EndsWith("ok"));
}

}  // namespace
}  // namespace reactord
