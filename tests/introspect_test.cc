// Looking inside a running reactord through reactorctl (issue 17): `fibers --stacks` shows where
// each connection's fiber waits; `conns` lists the test's own connections with their exact byte
// counts; `stalls --folded` weights two stalls of known length by their duration, and
// `stalls --svg` writes a flame graph that parses as XML and names the stalled function; each
// command answers while a shard is blocked (the http service's /debug/block route).
//
// Loopback only, ports the OS picks, wide time margins; no speed is asserted.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/daemon_harness.h"
#include "tests/process_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
namespace test = reactor::test;
using Json = nlohmann::json;
using test::DaemonProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

std::string config_for(const std::string& dir) {
  return absl::StrCat(
      "[runtime]\nshards = 2\n\n[log]\nlevel = \"info\"\nformat = \"text\"\n\n[admin]\nsocket = \"",
      dir,
      "/admin.sock\"\n\n[shutdown]\ndrain_timeout_ms = 2000\n\n"
      "[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n\n"
      "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n"
      "debug_routes = true\n");
}

using test::describe;
using test::Ran;

// reactorctl --socket DIR/admin.sock ARGS, its output captured.
Ran ctl(const DaemonProcess& d, std::vector<std::string> args) {
  args.insert(args.begin(), {"--socket", d.dir() + "/admin.sock"});
  return test::run_reactorctl(std::move(args));
}

Json json_of(const Ran& r) {
  return Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
}

::testing::AssertionResult start(DaemonProcess& d) {
  d.write_config(config_for(d.dir()));
  d.start();
  if (!d.wait_ready()) return ::testing::AssertionFailure() << "not ready:\n" << d.log();
  return ::testing::AssertionSuccess();
}

// A blocking loopback TCP client with 30 s timeouts.
class Client {
 public:
  explicit Client(const std::string& host_port) {
    int port = 0;
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) return;
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{30, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  // Our end as the daemon sees its peer: "127.0.0.1:PORT".
  std::string local() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return absl::StrCat("127.0.0.1:", ntohs(a.sin_port));
  }
  bool send(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads exactly n bytes.
  std::string read_n(size_t n) {
    std::string got;
    char buf[16384];
    while (got.size() < n) {
      const ssize_t k = ::recv(fd_, buf, std::min(sizeof buf, n - got.size()), 0);
      if (k <= 0) break;
      got.append(buf, static_cast<size_t>(k));
    }
    return got;
  }
  // One HTTP response with a Content-Length, headers and body.
  std::string read_http_response() {
    std::string got;
    while (got.find("\r\n\r\n") == std::string::npos) {
      std::string c = read_n(1);
      if (c.empty()) return got;
      got += c;
    }
    size_t length = 0;
    for (absl::string_view line : absl::StrSplit(got, "\r\n")) {
      if (absl::StartsWithIgnoreCase(line, "content-length:")) {
        (void)absl::SimpleAtoi(line.substr(15), &length);
      }
    }
    return got + read_n(length);
  }

 private:
  int fd_ = -1;
};

// The connection whose peer is `peer` in a `conns --json` answer, or null.
const Json* find_conn(const Json& conns, const std::string& peer) {
  for (const Json& c : conns["connections"]) {
    if (c.value("peer", "") == peer) return &c;
  }
  return nullptr;
}

// Polls `stalls --json` until `n` reports have ended.
Json wait_stalls_ended(const DaemonProcess& d, size_t n) {
  Json last;
  for (auto until = Clock::now() + 15s; Clock::now() < until; std::this_thread::sleep_for(100ms)) {
    last = json_of(ctl(d, {"--json", "stalls"}));
    size_t ended = 0;
    if (last.is_object()) {
      for (const Json& r : last["reports"]) ended += r.value("ended", false) ? 1 : 0;
    }
    if (ended >= n) return last;
  }
  return last;
}

TEST(Introspect, FiberStacksShowWhereAConnectionWaits) {
  DaemonProcess d;
  ASSERT_TRUE(start(d));
  Client c(d.addresses()["web"]);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_THAT(c.read_http_response(), ::testing::StartsWith("HTTP/1.1 200"));
  // Its fiber now waits for the next request, in a read under HttpConnection::run: Connection::read
  // in a debug build, where the inline read calls stay; the backend's recv where they are inlined.
  Ran r = ctl(d, {"--json", "fibers", "--stacks"});
  ASSERT_EQ(r.code, 0) << describe(r);
  Json shards = json_of(r);
  ASSERT_TRUE(shards.is_array()) << r.out;
  std::vector<std::string> stack;
  for (const Json& s : shards) {
    EXPECT_TRUE(s.value("stacks", false)) << s.dump();
    for (const Json& f : s["fibers"]) {
      if (absl::StartsWith(f.value("name", ""), "web#")) stack = f["stack"];
    }
  }
  ASSERT_FALSE(stack.empty()) << r.out;
  int read = -1, run = -1;
  for (size_t i = 0; i < stack.size(); ++i) {
    if (read < 0 && (absl::StrContains(stack[i], "Connection::read") ||
                     absl::StrContains(stack[i], "Backend::recv()"))) {
      read = static_cast<int>(i);
    }
    if (run < 0 && absl::StrContains(stack[i], "HttpConnection::run")) run = static_cast<int>(i);
  }
  EXPECT_GE(read, 0) << r.out;
  EXPECT_GT(run, read) << r.out;
  EXPECT_FALSE(absl::StrContains(stack.front(), "switch_context")) << r.out;

  // The human view lists frames under each fiber.
  r = ctl(d, {"fibers", "--stacks"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("HttpConnection::run"));
  EXPECT_THAT(r.out, HasSubstr("      #0 "));

  // Limits: one fiber per shard, two frames per fiber, and counts of what was left out.
  r = ctl(d, {"--json", "fibers", "0", "--stacks", "--max-fibers", "1", "--max-frames", "2"});
  ASSERT_EQ(r.code, 0) << describe(r);
  shards = json_of(r);
  ASSERT_EQ(shards.size(), 1u) << r.out;
  ASSERT_EQ(shards[0]["fibers"].size(), 1u) << r.out;
  EXPECT_GE(shards[0].value("fibers_omitted", 0), 1) << r.out;  // accept loops, snapshot
  EXPECT_EQ(shards[0]["fibers"][0]["stack"].size(), 2u) << r.out;
  EXPECT_GT(shards[0]["fibers"][0].value("frames_omitted", 0), 0) << r.out;
  r = ctl(d, {"fibers", "--max-frames", "2"});
  EXPECT_EQ(r.code, 64) << describe(r);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Introspect, ConnsListsTheTestsConnectionsWithExactByteCounts) {
  DaemonProcess d;
  ASSERT_TRUE(start(d));
  Client echo(d.addresses()["echo"]);
  Client web(d.addresses()["web"]);
  ASSERT_TRUE(echo.ok() && web.ok());
  const std::string payload(1500, 'x');
  ASSERT_TRUE(echo.send(payload));
  ASSERT_EQ(echo.read_n(payload.size()).size(), payload.size());
  const std::string request = "GET / HTTP/1.1\r\nHost: introspect\r\n\r\n";
  size_t web_out = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(web.send(request));
    web_out += web.read_http_response().size();
  }
  Ran r = ctl(d, {"--json", "conns"});
  ASSERT_EQ(r.code, 0) << describe(r);
  Json conns = json_of(r);
  ASSERT_TRUE(conns.is_object()) << r.out;
  EXPECT_EQ(conns.value("omitted", -1), 0) << r.out;
  const Json* e = find_conn(conns, echo.local());
  const Json* w = find_conn(conns, web.local());
  ASSERT_TRUE(e != nullptr && w != nullptr) << r.out;
  EXPECT_EQ((*e)["service"], "echo");
  EXPECT_EQ((*e)["bytes_in"], payload.size());
  EXPECT_EQ((*e)["bytes_out"], payload.size());
  EXPECT_EQ((*w)["service"], "web");
  EXPECT_EQ((*w)["bytes_in"], 2 * request.size());
  EXPECT_EQ((*w)["bytes_out"], web_out);
  EXPECT_EQ((*w)["requests"], 2);
  EXPECT_EQ((*w)["state"], "idle");
  EXPECT_GT((*w).value("fiber_id", 0), 0);
  // The fiber id is the connection's fiber in `fibers`.
  bool found = false;
  for (const Json& s : json_of(ctl(d, {"--json", "fibers", "--stacks"}))) {
    for (const Json& f : s["fibers"]) {
      found = found || (s["shard"] == (*w)["shard"] && f["id"] == (*w)["fiber_id"] &&
                        absl::StartsWith(f.value("name", ""), "web#"));
    }
  }
  EXPECT_TRUE(found) << r.out;

  // One service only; an unknown one is a usage error; the table shows the peer.
  r = ctl(d, {"--json", "conns", "echo"});
  ASSERT_EQ(r.code, 0) << describe(r);
  conns = json_of(r);
  ASSERT_EQ(conns["connections"].size(), 1u) << r.out;
  EXPECT_EQ(conns["connections"][0]["peer"], echo.local());
  r = ctl(d, {"conns", "nope"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("ERR usage: no service 'nope'"));
  r = ctl(d, {"conns"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr(web.local()));
  EXPECT_THAT(r.out, HasSubstr("PEER"));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

// Splits a folded line into its stack and weight.
std::optional<std::pair<std::string, long>> folded_line(const std::string& out,
                                                        const std::string& needle) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (!absl::StrContains(line, needle)) continue;
    const size_t sp = line.rfind(' ');
    long w = 0;
    if (sp == absl::string_view::npos || !absl::SimpleAtoi(line.substr(sp + 1), &w)) return {};
    return std::make_pair(std::string(line.substr(0, sp)), w);
  }
  return std::nullopt;
}

TEST(Introspect, StallsFoldedWeighsStallsByDurationAndDrawsAnSvg) {
  DaemonProcess d;
  ASSERT_TRUE(start(d));
  // Long enough that a watchdog thread kept off the CPU by a loaded machine still sees each one
  // (it checks every 25 ms with the default 100 ms threshold).
  for (int ms : {500, 1000}) {
    Client c(d.addresses()["web"]);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send(absl::StrCat("GET /debug/block?ms=", ms, " HTTP/1.1\r\nHost: t\r\n\r\n")));
    ASSERT_THAT(c.read_http_response(), ::testing::StartsWith("HTTP/1.1 200"));
  }
  Json stalls = wait_stalls_ended(d, 2);
  ASSERT_EQ(stalls["reports"].size(), 2u) << stalls.dump();
  double wall_ms = 0;
  for (const Json& rep : stalls["reports"]) wall_ms += rep.value("wall_seconds", 0.0) * 1000;
  Ran r = ctl(d, {"stalls", "--folded"});
  ASSERT_EQ(r.code, 0) << describe(r);
  // Both stalls have one stack: one line, weighted by their total time (ms), not their count.
#if defined(REACTOR_TSAN)
  // TSan defers the watchdog's backtrace signal until the stalled thread makes an intercepted
  // call, which the sleeping block never does: there the reports carry no frames.
  const char* const kStallFrame = "[no frames]";
#else
  const char* const kStallFrame = "block_loop_thread";
#endif
  auto line = folded_line(r.out, kStallFrame);
  ASSERT_TRUE(line.has_value()) << r.out;
  EXPECT_TRUE(absl::StartsWith(line->first, "web;")) << r.out;  // the fiber's name is the root
  EXPECT_NEAR(static_cast<double>(line->second), wall_ms, 2.0) << r.out;
  // A slice lasts at least its block; a loaded machine may add to it, never take away.
  EXPECT_GE(line->second, 1490) << r.out;
  EXPECT_LE(line->second, 3000) << r.out;

  const std::string svg = d.dir() + "/stalls.svg";
  r = ctl(d, {"stalls", "--svg", svg});
  ASSERT_EQ(r.code, 0) << describe(r);
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr(kStallFrame));
  EXPECT_THAT(text, HasSubstr("2 stalls, 100.00%"));
  EXPECT_THAT(text, Not(HasSubstr("<script")));
  const std::string check =
      ::access("/usr/bin/xmllint", X_OK) == 0
          ? absl::StrCat("/usr/bin/xmllint --noout ", svg)
          : absl::StrCat(
                "/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E; "
                "E.parse(sys.argv[1])' ",
                svg);
  EXPECT_EQ(std::system(check.c_str()), 0) << text;
  r = ctl(d, {"stalls", "--svg", d.dir() + "/no/such/dir/x.svg"});
  EXPECT_EQ(r.code, 73) << describe(r);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Introspect, EveryCommandAnswersWhileAShardIsBlocked) {
  DaemonProcess d;
  ASSERT_TRUE(start(d));
  Client blocker(d.addresses()["web"]);
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE(blocker.send("GET /debug/block?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n"));
  // Wait (bounded) until a shard is seen inside the long slice.
  std::optional<size_t> blocked;
  for (auto until = Clock::now() + 10s; !blocked && Clock::now() < until;) {
    Json shards = json_of(ctl(d, {"--json", "shards"}));
    for (const Json& s : shards) {
      const Json& c = s["current_slice"];
      if (c.value("running", false) && c.value("seconds", 0.0) > 0.2) blocked = s["shard"];
    }
    if (!blocked) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(blocked.has_value()) << "no shard seen blocked";
  const auto start = Clock::now();
  Ran r = ctl(d, {"--json", "fibers", "--stacks"});
  ASSERT_EQ(r.code, 0) << describe(r);
  for (const Json& s : json_of(r)) {
    if (s["shard"] == *blocked) {
      EXPECT_THAT(s.value("stacks_error", ""), HasSubstr("did not answer")) << r.out;
      EXPECT_FALSE(s.value("stacks", true)) << r.out;
    } else {
      EXPECT_TRUE(s.value("stacks", false)) << r.out;
    }
  }
  r = ctl(d, {"fibers", "--stacks"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("no stacks: shard"));
  r = ctl(d, {"--json", "conns"});
  ASSERT_EQ(r.code, 0) << describe(r);
  Json conns = json_of(r);
  ASSERT_EQ(conns["unavailable_shards"].size(), 1u) << r.out;
  EXPECT_EQ(conns["unavailable_shards"][0]["shard"], *blocked);
  r = ctl(d, {"stalls", "--folded"});
  EXPECT_EQ(r.code, 0) << describe(r);
  // Four commands that each wait at most 1 s for the blocked shard, well within the 10 s block
  // (a margin for a loaded machine: each answer above also shows the shard was still blocked).
  EXPECT_LT(Clock::now() - start, 9s);
  EXPECT_THAT(blocker.read_http_response(), ::testing::StartsWith("HTTP/1.1 200"));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

}  // namespace
}  // namespace reactord
