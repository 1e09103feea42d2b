// The real reactord binary: exit codes, bad configs, echo through shards, sd_notify, SIGHUP
// reload, socket activation and drain on SIGTERM. Ports are picked by the OS; the daemon reports
// them in its STATUS= notification.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"
#include "tests/seccomp_util.h"
#include "tests/test_util.h"

namespace reactord {
namespace {

namespace test = reactor::test;

using namespace std::chrono_literals;
using test::DaemonProcess;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

std::string config_with(const std::string& dir, const std::string& services,
                        const std::string& extra = "") {
  return "[runtime]\nshards = 2\n\n[log]\nlevel = \"info\"\nformat = \"text\"\n\n[admin]\nsocket = "
         "\"" +
         dir + "/admin.sock\"\n\n[shutdown]\ndrain_timeout_ms = 10000\n\n" + extra + services;
}

const char kEchoService[] =
    "[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n";

// Echoes `payload` through addr with a blocking client; returns what came back. Connecting is
// retried for 5 s: a socket-activated listener may not exist yet.
std::string echo_through(const std::string& host_port, const std::string& payload) {
  return test::echo_through(host_port, payload, 10s, 5s);
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + seed * 13 + i / 97) & 0xff);
  return s;
}

// ---- exit codes ----

TEST(DaemonExit, BadFlagIs64) {
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--no-such-flag"}, &out), 64);
  EXPECT_THAT(out, HasSubstr("unknown flag '--no-such-flag'"));
  EXPECT_EQ(DaemonProcess::run_to_exit({"stray"}, &out), 64);
  EXPECT_THAT(out, HasSubstr("unexpected argument 'stray'"));
}

TEST(DaemonExit, BadFlagValueIs64) {
  DaemonProcess d;
  d.write_config(config_with(d.dir(), kEchoService));
  std::string out;
  EXPECT_EQ(
      DaemonProcess::run_to_exit({"--config=" + d.dir() + "/reactord.toml", "--shards=many"}, &out),
      64);
  EXPECT_THAT(out, HasSubstr("--shards"));
  EXPECT_EQ(DaemonProcess::run_to_exit(
                {"--config=" + d.dir() + "/reactord.toml", "--backend=kqueue"}, &out),
            64);
  EXPECT_THAT(out, HasSubstr("kqueue"));
}

TEST(DaemonExit, MissingConfigIs66) {
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=/nonexistent/reactord.toml"}, &out), 66);
  EXPECT_THAT(out, HasSubstr("/nonexistent/reactord.toml"));
}

TEST(DaemonExit, InvalidConfigIs78) {
  DaemonProcess d;
  d.write_config("[runtime]\nshards = -1\n" + std::string(kEchoService));
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + d.dir() + "/reactord.toml"}, &out), 78);
  EXPECT_THAT(out, HasSubstr("runtime.shards"));
}

TEST(DaemonExit, UnavailableBackendIs69) {
  DaemonProcess d;
  d.write_config(config_with(d.dir(), kEchoService));
  std::string out;
  const int code = DaemonProcess::run_to_exit(
      {"--config=" + d.dir() + "/reactord.toml", "--backend=io_uring"}, &out,
      [] { reactor::test::fail_syscall_with(__NR_io_uring_setup, EPERM); });
  EXPECT_EQ(code, 69) << out;
  EXPECT_THAT(out, HasSubstr("io_uring"));
}

TEST(DaemonExit, PortInUseIs71) {
  // Hold a port without SO_REUSEPORT: the daemon's bind to it must fail.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  DaemonProcess d;
  d.write_config(config_with(
      d.dir(),
      "[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"127.0.0.1:" + port + "\"\n"));
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + d.dir() + "/reactord.toml"}, &out), 71)
      << out;
  EXPECT_THAT(out, HasSubstr("127.0.0.1:" + port));
  ::close(fd);
}

TEST(DaemonExit, VersionHelpCheckConfigListBackends) {
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--version"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("reactord 0."));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--help"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("--check-config"));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--list-backends"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("epoll"));
  DaemonProcess d;
  d.write_config(config_with(d.dir(), kEchoService));
  EXPECT_EQ(DaemonProcess::run_to_exit(
                {"--check-config", "--config", d.dir() + "/reactord.toml", "--shards=3"}, &out),
            0);
  EXPECT_THAT(out, HasSubstr("shards = 3"));
  EXPECT_THAT(out, HasSubstr("[[service]]"));
}

// Ten kinds of bad config: each exits 78 and names the key and its line.
TEST(DaemonExit, TenBadConfigsNameKeyAndLine) {
  struct Case {
    std::string toml;
    std::string key;
    std::string line;  // ":N:" of the offending line
  };
  const std::string svc = kEchoService;
  const std::vector<Case> cases = {
      {"[runtime]\nbogus = 1\n" + svc, "bogus", ":2:"},
      {"[runtime]\nshards = \"two\"\n" + svc, "runtime.shards", ":2:"},
      {"[runtime]\nstack_size_kib = 3\n" + svc, "runtime.stack_size_kib", ":2:"},
      {"[runtime]\nbackend = \"kqueue\"\n" + svc, "runtime.backend", ":2:"},
      {"[log]\nlevel = \"loud\"\n" + svc, "log.level", ":2:"},
      {"[watchdog]\nthreshold_ms = 0\n" + svc, "watchdog.threshold_ms", ":2:"},
      {svc + "max_connections = 0\n", "max_connections", ":5:"},
      {svc + svc, "name", ":6:"},
      {"[[service]]\nname = \"web\"\nkind = \"ftp\"\nlisten = \"127.0.0.1:0\"\n", "kind", ":3:"},
      {"[[service]]\nname = \"web\"\nkind = \"echo\"\nlisten = \"nowhere\"\n", "listen", ":4:"},
      {"[[service]]\nname = \"web\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\nmax_bulk_bytes = "
       "5\n",
       "max_bulk_bytes", ":5:"},
  };
  for (const Case& c : cases) {
    DaemonProcess d;
    d.write_config(c.toml);
    std::string out;
    EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + d.dir() + "/reactord.toml"}, &out), 78)
        << c.toml << "\n"
        << out;
    EXPECT_THAT(out, HasSubstr(c.key)) << c.toml;
    EXPECT_THAT(out, HasSubstr("reactord.toml" + c.line)) << c.toml;
  }
}

// ---- running ----

TEST(Daemon, EchoByteExactThroughShards) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kEchoService)));
  const std::string addr = d.addresses()["echo"];
  ASSERT_FALSE(addr.empty()) << d.log();
  for (int i = 0; i < 4; ++i) {  // several connections, so both shards likely serve one
    const std::string payload = pattern(256 * 1024, i);
    EXPECT_TRUE(echo_through(addr, payload) == payload) << "connection " << i;
  }
  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(Daemon, NotifiesReadyReloadingStopping) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kEchoService)));
  d.signal(SIGHUP);
  auto reloading = d.wait_notify("RELOADING=1", 10s);
  ASSERT_TRUE(reloading.has_value()) << d.log();
  EXPECT_THAT(*reloading, HasSubstr("MONOTONIC_USEC="));
  EXPECT_TRUE(d.wait_notify("READY=1", 10s).has_value());
  d.signal(SIGTERM);
  EXPECT_TRUE(d.wait_notify("STOPPING=1", 10s).has_value());
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Daemon, SighupChangesLogLevel) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kEchoService)));
  std::string cfg = config_with(d.dir(), kEchoService);
  cfg.replace(cfg.find("\"info\""), 6, "\"debug\"");
  d.write_config(cfg);
  d.signal(SIGHUP);
  EXPECT_TRUE(d.wait_log("log level debug", 10s)) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0);
}

TEST(Daemon, InvalidFileOnSighupKeepsServing) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kEchoService)));
  d.write_config("[runtime\nthis is not toml");
  d.signal(SIGHUP);
  EXPECT_TRUE(d.wait_log("keeping the running configuration", 10s)) << d.log();
  EXPECT_EQ(echo_through(d.addresses()["echo"], "still here"), "still here");
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0);
}

TEST(Daemon, SocketActivation) {
  // Pick a free port, then let systemd-socket-activate bind it and pass it as "echo".
  const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(probe);
  const std::string addr = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  DaemonProcess d;
  // The configured address is never bound: the activated socket replaces it.
  d.write_config(config_with(d.dir(), kEchoService));
  // systemd-socket-activate passes on only the variables named with -E.
  std::vector<std::string> activate = {"systemd-socket-activate", "-l", addr,
                                       "--fdname=echo",           "-E", "NOTIFY_SOCKET"};
  for (const char* var : {"TSAN_OPTIONS", "ASAN_OPTIONS", "UBSAN_OPTIONS"}) {
    if (std::getenv(var) != nullptr) {
      activate.push_back("-E");
      activate.push_back(var);
    }
  }
  d.start({}, nullptr, activate);
  // systemd-socket-activate starts the daemon at the first connection: connect first.
  std::string echoed;
  std::thread client([&] { echoed = echo_through(addr, "activated hello"); });
  const bool ready = d.wait_ready();
  client.join();
  ASSERT_TRUE(ready) << d.log();
  EXPECT_EQ(echoed, "activated hello");
  EXPECT_THAT(d.addresses()["echo"], HasSubstr("activated"));
  EXPECT_EQ(echo_through(addr, "second connection"), "second connection");
  EXPECT_TRUE(test::stops_cleanly(d));
}

// 100 clients each stream 1 MiB in chunks; SIGTERM arrives once all got their first chunk back;
// every byte still comes back and the daemon exits 0.
TEST(Daemon, DrainFinishesStreamingClients) {
#if defined(REACTOR_TSAN)
  constexpr int kClients = 20;  // TSan is ~10x slower; the shape of the test is the same
#else
  constexpr int kClients = 100;
#endif
  constexpr size_t kTotal = 1 << 20, kChunk = 16 * 1024;
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kEchoService)));
  const std::string addr = d.addresses()["echo"];
  int complete = 0;
  absl::Status s = reactor::Reactor::run([&] {
    reactor::WaitGroup first_chunk;
    first_chunk.add(kClients);
    std::vector<reactor::Task<void>> clients;
    for (int i = 0; i < kClients; ++i) {
      auto t = reactor::spawn("client", [&, i] {
        const std::string data = pattern(kTotal, i);
        auto c = reactor::TcpStream::connect(*reactor::SocketAddress::parse_ip(addr),
                                             reactor::deadline_after(10s));
        if (!c.ok()) {
          first_chunk.done();
          return;
        }
        std::string got;
        got.reserve(kTotal);
        std::vector<std::byte> buf(kChunk);
        bool counted = false;
        for (size_t off = 0; off < kTotal; off += kChunk) {
          if (!c->write_all(std::string_view(data).substr(off, kChunk),
                            reactor::deadline_after(30s))
                   .ok())
            break;
          // Read this chunk back before sending the next: a slow, steady stream.
          while (got.size() < off + kChunk) {
            auto n = c->read(buf, reactor::deadline_after(30s));
            if (!n.ok() || *n == 0) break;
            got.append(reinterpret_cast<char*>(buf.data()), *n);
          }
          if (!counted) {
            counted = true;
            first_chunk.done();
          }
          if (got.size() < off + kChunk) break;
          if (off % (kChunk * 8) == 0) (void)reactor::sleep_for(1ms);
        }
        if (!counted) first_chunk.done();
        if (got == data) ++complete;
      });
      ASSERT_TRUE(t.ok());
      clients.push_back(*std::move(t));
    }
    ASSERT_TRUE(first_chunk.wait(reactor::deadline_after(60s)).ok());
    d.signal(SIGTERM);
    reactor::join_all(clients);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(complete, kClients);
  EXPECT_EQ(d.wait_exit(60s), 0) << d.log();
  EXPECT_THAT(d.log(), HasSubstr("draining"));
}

using test::BlockingClient;

const char kHttpService[] =
    "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n"
    "header_timeout_ms = 300\nmax_header_bytes = 1024\ndebug_routes = true\n";

TEST(DaemonHttp, KeepAlivePipeliningLimitsAndHeaderTimeout) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, config_with(d.dir(), kHttpService)));
  const std::string addr = d.addresses()["web"];
  {
    BlockingClient c(addr, 5s);
    ASSERT_TRUE(c.connected());
    c.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_THAT(c.recv_until("ok"), HasSubstr("HTTP/1.1 200"));
    c.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");  // the same connection: keep-alive
    EXPECT_THAT(c.recv_until("ok"), HasSubstr("HTTP/1.1 200"));
  }
  {
    BlockingClient c(addr, 5s);
    c.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string both = c.recv_until("HTTP/1.1", 2);
    const size_t first = both.find("HTTP/1.1 200"), second = both.find("HTTP/1.1 404");
    EXPECT_NE(first, std::string::npos) << both;
    EXPECT_NE(second, std::string::npos) << both;
    EXPECT_LT(first, second) << "pipelined answers out of order";
  }
  {
    BlockingClient c(addr, 5s);
    c.send_all("GET / HTTP/1.1\r\nX-Big: " + std::string(2048, 'a') + "\r\n\r\n");
    EXPECT_THAT(c.recv_until("\r\n"), HasSubstr("431"));
  }
  {
    BlockingClient c(addr, 5s);
    c.send_all("NOT A REQUEST\r\n\r\n");
    EXPECT_THAT(c.recv_until("\r\n"), HasSubstr("400"));
  }
  {
    BlockingClient c(addr, 5s);
    c.send_all("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    EXPECT_THAT(c.recv_until("\r\n"), HasSubstr("413"));
  }
  {
    BlockingClient c(addr, 5s);  // a slow client: half a header, then nothing
    const auto sent = std::chrono::steady_clock::now();
    c.send_all("GET / HTTP/1.1\r\nHost: x\r\n");
    // Closed 300 ms after that byte, within 1.5 s more; not before.
    EXPECT_TRUE(c.closed_within(1800ms)) << "the header timeout (300 ms) did not close it in time";
    EXPECT_GE(std::chrono::steady_clock::now() - sent, 300ms);
  }
  EXPECT_TRUE(test::stops_cleanly(d));
}

// The parsers' size limits come from the config file, and /debug/block is not served unless
// debug_routes is set (its default is false).
TEST(DaemonSecurity, ConfiguredLimitsAndNoDebugRoutesByDefault) {
  DaemonProcess d;
  d.write_config(
      config_with(d.dir(),
                  "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n"
                  "max_body_bytes = 16\n\n"
                  "[[service]]\nname = \"kv\"\nkind = \"resp\"\nlisten = \"127.0.0.1:0\"\n"
                  "max_inline_bytes = 32\nmax_command_bytes = 1024\n"));
  d.start();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string web = d.addresses()["web"], kv = d.addresses()["kv"];
  {
    BlockingClient c(web, 5s);
    c.send_all("GET /debug/block?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_THAT(c.recv_until("\r\n"), HasSubstr("HTTP/1.1 404"));
  }
  {
    BlockingClient c(web, 5s);
    c.send_all("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n" + std::string(16, 'b'));
    EXPECT_THAT(c.recv_until("\r\n"), ::testing::Not(HasSubstr("413")));
  }
  {
    BlockingClient c(web, 5s);
    c.send_all("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n");
    EXPECT_THAT(c.recv_until("\r\n"), HasSubstr("HTTP/1.1 413"));
  }
  {
    BlockingClient c(kv, 5s);
    c.send_all("ECHO " + std::string(26, 'v') + "\r\n");  // 32 bytes with the CR: fits
    EXPECT_EQ(c.recv_until("\r\n", 2), "$26\r\n" + std::string(26, 'v') + "\r\n");
    c.send_all("ECHO " + std::string(27, 'v') + "\r\n");
    EXPECT_EQ(c.recv_until("\r\n"), "-ERR Protocol error: too big inline request\r\n");
    EXPECT_TRUE(c.closed_within(5s));
  }
  {
    // *3 SET k V: 20 bytes, then "$990\r\n" and 992: 1018 of the 1024 allowed.
    BlockingClient c(kv, 5s);
    c.send_all("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$990\r\n" + std::string(990, 'v') + "\r\n");
    EXPECT_EQ(c.recv_until("\r\n"), "+OK\r\n");
    c.send_all("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n");  // refused before the value
    EXPECT_EQ(c.recv_until("\r\n"), "-ERR Protocol error: command larger than 1024 bytes\r\n");
    EXPECT_TRUE(c.closed_within(5s));
  }
  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(DaemonResp, RedisCliFromSeveralShards) {
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(
      d, config_with(d.dir(),
                     "[[service]]\nname = \"kv\"\nkind = \"resp\"\nlisten = \"127.0.0.1:0\"\n")));
  const std::string addr = d.addresses()["kv"];
  const std::string port = addr.substr(addr.rfind(':') + 1);
  auto cli = [&](const std::string& args) {
    std::string out;
    FILE* p = ::popen(("redis-cli -p " + port + " " + args + " 2>&1").c_str(), "r");
    if (p == nullptr) return out;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  };
  EXPECT_EQ(cli("PING"), "PONG");
  // Each redis-cli is a new connection, landing on either shard; each key lives on one shard.
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(cli("SET key" + std::to_string(i) + " value" + std::to_string(i)), "OK");
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(cli("GET key" + std::to_string(i)), "value" + std::to_string(i));
  EXPECT_EQ(cli("DBSIZE"), "12");
  EXPECT_EQ(cli("INCR counter"), "1");
  EXPECT_EQ(cli("INCR counter"), "2");
  EXPECT_TRUE(test::stops_cleanly(d));
}

// WATCHDOG_USEC = 2 s: pings every second while idle; none in the middle of a 6 s block of one
// shard (it has been inside one slice longer than the period); they resume after. The block may
// start up to a second after the request is sent on a loaded machine: the window checked, 3 to
// 5.5 s in, leaves that margin and still spans two ping intervals.
TEST(DaemonWatchdog, SystemdPingsPauseWhileAShardIsBlocked) {
  DaemonProcess d;
  d.write_config(config_with(d.dir(), kHttpService));
  d.start({}, [] { ::setenv("WATCHDOG_USEC", "2000000", 1); });
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto pings = [](const auto& msgs) {
    std::vector<std::chrono::steady_clock::time_point> t;
    for (const auto& [when, m] : msgs) {
      if (m.find("WATCHDOG=1") != std::string::npos) t.push_back(when);
    }
    return t;
  };
  EXPECT_GE(pings(d.collect_notify(2500ms)).size(), 2u) << "no pings while idle";
  const auto block_start = std::chrono::steady_clock::now();
  std::thread blocker([&] {
    BlockingClient c(d.addresses()["web"], 5s);
    c.send_all("GET /debug/block?ms=6000 HTTP/1.1\r\nHost: x\r\n\r\n");
    (void)c.recv_until("\r\n\r\n");
  });
  const auto during = pings(d.collect_notify(6000ms));
  blocker.join();
  const auto after = pings(d.collect_notify(2500ms));
  for (const auto& t : during) {
    const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(t - block_start);
    EXPECT_FALSE(at > 3000ms && at < 5500ms) << "a ping " << at.count() << " ms into the block";
  }
  EXPECT_GE(after.size(), 1u) << "pings did not resume";
  EXPECT_TRUE(test::stops_cleanly(d));
}

}  // namespace
}  // namespace reactord

namespace reactord {
namespace {

// How often `needle` occurs in `text`.
size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The CPU time (utime + stime, from /proc/PID/task/TID/stat) of the daemon's thread named `name`
// (e.g. "shard-0") and the time it has waited on a run queue (schedstat), in seconds; nullopt if
// there is no such thread.
struct ThreadTimes {
  double cpu = 0;
  double queued = 0;
};
std::optional<ThreadTimes> thread_times(pid_t pid, const std::string& name) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(task.c_str());
  if (dir == nullptr) return std::nullopt;
  std::optional<ThreadTimes> times;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string base = task + "/" + e->d_name;
    std::ifstream stat(base + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    if (line.substr(open + 1, close - open - 1) != name) continue;
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> f;
    for (std::string field; rest >> field;) f.push_back(field);
    if (f.size() <= 12) continue;
    ThreadTimes t;
    t.cpu = (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    std::ifstream schedstat(base + "/schedstat");
    double on_cpu_ns = 0, queued_ns = 0;
    if (schedstat >> on_cpu_ns >> queued_ns) t.queued = queued_ns / 1e9;
    times = t;
  }
  ::closedir(dir);
  return times;
}

// reactorctl's output for `args` against the daemon in `dir`.
std::string reactorctl(const std::string& dir, const std::string& args) {
  std::string out;
  FILE* p = ::popen(
      (std::string(REACTORCTL_BINARY) + " --socket " + dir + "/admin.sock " + args + " 2>&1")
          .c_str(),
      "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

// runtime.idle = "spin": no start-up warning; the shard threads burn CPU while idle (block: they
// do not), stats and /metrics name the mode and count the spin, systemd's watchdog keeps pinging
// (a spinning loop is not a stalled one), and a reload that changes the mode says it needs a
// restart.
TEST(DaemonIdle, SpinningShardsAreIdleAndHealthy) {
  DaemonProcess d;
  const std::string config = d.dir() + "/reactord.toml";
  // config_with() opens [runtime] itself: add the keys to it.
  auto with_runtime = [&](const std::string& keys) {
    std::string cfg = config_with(d.dir(), kEchoService);
    return cfg.replace(cfg.find("shards = 2\n"), 11, "shards = 2\n" + keys);
  };
  std::string out;
  d.write_config(with_runtime("idle = \"spin\"\nspin_us = 200\n"));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--check-config", "--config=" + config}, &out), 0);
  EXPECT_THAT(out, ::testing::Not(HasSubstr("warning")));
  EXPECT_THAT(out, HasSubstr("idle = \"spin\""));

  d.start({}, [] { ::setenv("WATCHDOG_USEC", "1000000", 1); });
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::this_thread::sleep_for(200ms);
  // The machine is shared: CPU time against the time the thread could run (not queued). Read
  // from outside, a wait on a run queue counts only once it ends, so a window may come out short
  // on a loaded machine (never long): the best of three is taken.
  double best_share = 0;
  std::string windows;
  size_t pings = 0;
  for (int attempt = 0; attempt < 3 && best_share <= 0.7; ++attempt) {
    const std::optional<ThreadTimes> t0 = thread_times(d.pid(), "shard-0");
    ASSERT_TRUE(t0.has_value());
    const auto start = std::chrono::steady_clock::now();
    // Pings every half period while the shards spin.
    for (const auto& [when, m] : d.collect_notify(1500ms)) {
      if (m.find("WATCHDOG=1") != std::string::npos) ++pings;
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const ThreadTimes t1 = thread_times(d.pid(), "shard-0").value_or(ThreadTimes{});
    const double cpu = t1.cpu - t0->cpu;
    const double runnable = std::max(1e-3, wall - (t1.queued - t0->queued));
    best_share = std::max(best_share, cpu / runnable);
    windows += absl::StrCat(cpu, " CPU-s over ", wall, " s, ", runnable, " s runnable; ");
  }
  EXPECT_GE(pings, 2u) << "the spinning shards count as unhealthy";
  EXPECT_GT(best_share, 0.7) << windows;

  const std::string stats = reactorctl(d.dir(), "--json stats");
  EXPECT_THAT(stats, HasSubstr("\"idle\":\"spin\"")) << stats;
  EXPECT_THAT(stats, HasSubstr("\"spin_seconds\"")) << stats;
  const std::string metrics = reactorctl(d.dir(), "metrics");
  EXPECT_THAT(metrics, HasSubstr("reactord_shard_idle_mode{shard=\"1\",mode=\"spin\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("reactord_shard_spin_seconds_total{shard=\"0\"}"));
  EXPECT_THAT(reactorctl(d.dir(), "stats"), HasSubstr("spin"));

  d.write_config(with_runtime("idle = \"block\"\n"));
  d.signal(SIGHUP);
  EXPECT_TRUE(d.wait_log("runtime.idle changed; it takes effect after a restart", 10s)) << d.log();
  EXPECT_THAT(reactorctl(d.dir(), "--json stats"), HasSubstr("\"idle\":\"spin\""));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  EXPECT_THAT(d.log(), ::testing::Not(HasSubstr("has no effect")));

  // The default, block: the shards sleep while idle.
  DaemonProcess b;
  b.write_config(config_with(b.dir(), kEchoService));
  b.start();
  ASSERT_TRUE(b.wait_ready()) << b.log();
  std::this_thread::sleep_for(200ms);
  const std::optional<ThreadTimes> idle0 = thread_times(b.pid(), "shard-0");
  ASSERT_TRUE(idle0.has_value());
  std::this_thread::sleep_for(1s);
  EXPECT_LT(thread_times(b.pid(), "shard-0").value_or(ThreadTimes{}).cpu - idle0->cpu, 0.1);
  EXPECT_THAT(reactorctl(b.dir(), "--json stats"), HasSubstr("\"idle\":\"block\""));
  b.signal(SIGTERM);
  EXPECT_EQ(b.wait_exit(), 0) << b.log();
}

// runtime.io_uring_sqpoll: each shard's ring gets an SQ thread (the stats say so) and echo is
// byte-exact; a CPU the kernel cannot pin the thread to is a start-up error (69) naming SQPOLL,
// never a run without it, and the key with epoll is a config error (78).
TEST(DaemonSqpoll, ShardsRunWithSqpollAndRefusalsAreStartupErrors) {
  if (!reactor::probe_backend("io_uring").available) GTEST_SKIP() << "no io_uring here";
  auto with_runtime = [](DaemonProcess& d, const std::string& keys) {
    std::string cfg = config_with(d.dir(), kEchoService);
    return cfg.replace(cfg.find("shards = 2\n"), 11, "shards = 2\n" + keys);
  };
  const std::string sqpoll = "io_uring_sqpoll = true\nio_uring_sqpoll_idle_ms = 50\n";
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(d, with_runtime(d, "backend = \"auto\"\n" + sqpoll)));
  const std::string addr = d.addresses()["echo"];
  ASSERT_FALSE(addr.empty()) << d.log();
  for (int i = 0; i < 3; ++i) {
    const std::string payload = pattern(128 * 1024, i);
    EXPECT_TRUE(echo_through(addr, payload) == payload) << "connection " << i;
  }
  const std::string stats = reactorctl(d.dir(), "--json stats");
  EXPECT_THAT(stats, HasSubstr("\"io_uring_feature_sqpoll\":1")) << stats;
  EXPECT_THAT(stats, Not(HasSubstr("\"io_uring_feature_sqpoll\":0"))) << stats;
  EXPECT_TRUE(test::stops_cleanly(d));

  std::string out;
  DaemonProcess bad;
  bad.write_config(with_runtime(bad, sqpoll + "io_uring_sqpoll_cpu = 4095\n"));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + bad.dir() + "/reactord.toml"}, &out), 69)
      << out;
  EXPECT_THAT(out, HasSubstr("io_uring_setup(SQPOLL|SQ_AFF)"));
  EXPECT_THAT(out, HasSubstr("io_uring_sqpoll_cpu"));
  EXPECT_THAT(out, Not(HasSubstr("using epoll")));

  DaemonProcess epoll;
  epoll.write_config(with_runtime(epoll, "backend = \"epoll\"\n" + sqpoll));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + epoll.dir() + "/reactord.toml"}, &out), 78)
      << out;
  EXPECT_THAT(out, HasSubstr("runtime.io_uring_sqpoll = true needs backend"));
}

// runtime.io_uring_min_wait_us: each shard's ring waits in batches (the stats say so, where the
// kernel has min_wait_usec) and echo is byte-exact; the key with epoll is a config error (78).
TEST(DaemonMinWait, ShardsWaitInBatchesAndTheKeyNeedsIoUring) {
  if (!reactor::probe_backend("io_uring").available) GTEST_SKIP() << "no io_uring here";
  auto with_runtime = [](DaemonProcess& d, const std::string& keys) {
    std::string cfg = config_with(d.dir(), kEchoService);
    return cfg.replace(cfg.find("shards = 2\n"), 11, "shards = 2\n" + keys);
  };
  DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(
      d, with_runtime(d, "backend = \"io_uring\"\nio_uring_min_wait_us = 20\n")));
  const std::string addr = d.addresses()["echo"];
  ASSERT_FALSE(addr.empty()) << d.log();
  for (int i = 0; i < 3; ++i) {
    const std::string payload = pattern(64 * 1024, i);
    EXPECT_TRUE(echo_through(addr, payload) == payload) << "connection " << i;
  }
  const std::string stats = reactorctl(d.dir(), "--json stats");
  utsname u{};
  ::uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  const char* want = major * 100 + minor >= 612 ? "\"io_uring_feature_min_wait\":1"
                                                : "\"io_uring_feature_min_wait\":0";
  EXPECT_THAT(stats, HasSubstr(want)) << stats;
  EXPECT_TRUE(test::stops_cleanly(d));

  std::string out;
  DaemonProcess epoll;
  epoll.write_config(with_runtime(epoll, "backend = \"epoll\"\nio_uring_min_wait_us = 20\n"));
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + epoll.dir() + "/reactord.toml"}, &out), 78)
      << out;
  EXPECT_THAT(out, HasSubstr("runtime.io_uring_min_wait_us = 20 needs backend"));
}

// A [::] listener is dual-stack: the same service answers over IPv6 and IPv4 loopback.
TEST(DaemonDualStack, AnyIpv6AddressAlsoTakesIpv4) {
  DaemonProcess d;
  d.write_config(
      config_with(d.dir(), "[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"[::]:0\"\n"));
  d.start();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string addr = d.addresses()["echo"];
  ASSERT_EQ(addr.rfind("[::]:", 0), 0u) << addr;
  const std::string port = addr.substr(addr.rfind(':') + 1);
  for (int i = 0; i < 4; ++i) {  // several connections, so both shards likely serve each family
    const std::string payload = pattern(64 * 1024, i);
    EXPECT_TRUE(echo_through("[::1]:" + port, payload) == payload) << "IPv6, connection " << i;
    EXPECT_TRUE(echo_through("127.0.0.1:" + port, payload) == payload) << "IPv4, connection " << i;
  }
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

// Socket activation as systemd does it (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES from fd 3): an
// activated admin socket is served and not reported; a named fd nothing uses is reported once.
TEST(DaemonSocketActivation, AdminFdIsNotReportedAndAnUnusedFdIsReportedOnce) {
  DaemonProcess d;
  d.write_config(config_with(d.dir(), kEchoService));
  // The admin socket is passed under another path than the configured one, so it is plain which
  // socket answers.
  const std::string admin_path = d.dir() + "/activated-admin.sock";
  sockaddr_un admin_addr{};
  admin_addr.sun_family = AF_UNIX;
  ASSERT_LT(admin_path.size(), sizeof admin_addr.sun_path);
  std::memcpy(admin_addr.sun_path, admin_path.c_str(), admin_path.size() + 1);
  // Runs in the child between fork and exec: system calls only, no allocation.
  d.start({}, [&admin_addr] {
    const int admin = ::socket(AF_UNIX, SOCK_STREAM, 0);
    const int stray = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(admin, reinterpret_cast<const sockaddr*>(&admin_addr), sizeof admin_addr) != 0 ||
        ::listen(admin, 8) != 0 ||
        ::bind(stray, reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0 ||
        ::listen(stray, 8) != 0) {
      ::_exit(126);
    }
    // Move both above 4 first, so placing them at 3 and 4 closes neither.
    const int a = ::fcntl(admin, F_DUPFD, 10);
    const int b = ::fcntl(stray, F_DUPFD, 10);
    ::dup2(a, 3);
    ::dup2(b, 4);
    ::close(a);
    ::close(b);
    if (admin != 3 && admin != 4) ::close(admin);
    if (stray != 3 && stray != 4) ::close(stray);
    char pid[24];
    std::snprintf(pid, sizeof pid, "%d", static_cast<int>(::getpid()));
    ::setenv("LISTEN_PID", pid, 1);
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_FDNAMES", "admin:stray", 1);
  });
  ASSERT_TRUE(d.wait_ready()) << d.log();

  // The activated socket is the admin server's.
  const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ASSERT_EQ(::connect(c, reinterpret_cast<const sockaddr*>(&admin_addr), sizeof admin_addr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::send(c, "ping\n", 5, MSG_NOSIGNAL), 5);
  std::string answer;
  char buf[256];
  while (answer.find("\n.\n") == std::string::npos) {
    const ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(c);
  EXPECT_EQ(answer, "pong\n.\n");
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  // Logging is asynchronous: the whole log is there once the daemon has exited.
  const std::string log = d.log();
  EXPECT_THAT(log, HasSubstr("admin socket (activated)"));
  EXPECT_EQ(count_of(log, "named 'admin'"), 0u) << log;
  EXPECT_EQ(count_of(log, "named 'stray'"), 1u) << log;
  EXPECT_EQ(count_of(log, "socket activation passed"), 1u) << log;
}

// ---- idle connections' stacks ----

// The sum over shards of a count in `stats --json`'s "stacks" objects.
uint64_t stacks_count(const std::string& stats_json, const std::string& key) {
  uint64_t sum = 0;
  const std::string needle = "\"" + key + "\":";
  for (size_t at = stats_json.find(needle); at != std::string::npos;
       at = stats_json.find(needle, at + 1)) {
    sum += std::strtoull(stats_json.c_str() + at + needle.size(), nullptr, 10);
  }
  return sum;
}

// runtime.release_idle_stacks_ms: connections idle past it give their stacks' pages back (stats,
// /metrics and `fibers` say so), and each answers exactly as before afterwards. A connection that
// waits in a receive holding a buffer (io_uring; http and resp on every backend) first gives it up
// after half the option, then waits for readability, which lets its stack go: released 150-200 ms
// after its last request there, 100-150 ms where the wait needs no buffer (echo on epoll).
struct IdleService {
  const char* kind;
  const char* handler;  // a frame every released connection's stack shows
  std::string request;
  std::string reply_end;  // what the reply ends with
};

std::string recv_until_ends_with(test::BlockingClient& c, const std::string& end) {
  std::string got;
  while (!absl::EndsWith(got, end) && c.recv_some(&got) > 0) {
  }
  return got;
}

void idle_connections_give_their_stacks_back(const std::string& backend, const IdleService& svc) {
  if (backend == "io_uring") {
    const std::vector<std::string> backends = reactor::test::available_backends();
    if (std::find(backends.begin(), backends.end(), "io_uring") == backends.end())
      GTEST_SKIP() << "no io_uring here (and REACTORD_REQUIRED_BACKENDS does not name it)";
  }
  DaemonProcess d;
  std::string cfg = config_with(d.dir(), absl::StrCat("[[service]]\nname = \"svc\"\nkind = \"",
                                                      svc.kind, "\"\nlisten = \"127.0.0.1:0\"\n"));
  cfg.replace(
      cfg.find("shards = 2\n"), 11,
      absl::StrCat("shards = 2\nbackend = \"", backend, "\"\nrelease_idle_stacks_ms = 100\n"));
  d.write_config(cfg);
  d.start();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string addr = d.addresses()["svc"];
  constexpr int kConns = 20;
  std::vector<test::BlockingClient> clients;
  for (int i = 0; i < kConns; ++i) {
    clients.emplace_back(addr);
    ASSERT_TRUE(clients.back().connected());
    ASSERT_TRUE(clients.back().send_all(svc.request));
    ASSERT_THAT(recv_until_ends_with(clients.back(), svc.reply_end), EndsWith(svc.reply_end));
  }
  // Wait as long as a release may take and a margin.
  std::string stats;
  const auto until = std::chrono::steady_clock::now() + 200ms + 2s;
  do {
    std::this_thread::sleep_for(50ms);
    stats = reactorctl(d.dir(), "--json stats");
  } while (stacks_count(stats, "released") < kConns && std::chrono::steady_clock::now() < until);
  EXPECT_EQ(stacks_count(stats, "released"), static_cast<uint64_t>(kConns)) << stats;
  EXPECT_GE(stacks_count(stats, "releases_total"), static_cast<uint64_t>(kConns)) << stats;
  // --stacks: a snapshot taken now, walked from the copies.
  const std::string fibers = reactorctl(d.dir(), "--json fibers --stacks");
  EXPECT_THAT(fibers, HasSubstr("\"stack_released\":true")) << fibers;
  EXPECT_THAT(fibers, HasSubstr(svc.handler)) << fibers;
  EXPECT_THAT(reactorctl(d.dir(), "metrics"), HasSubstr("reactord_stack_releases_total{shard="));
  for (int i = 0; i < kConns; ++i) {
    test::BlockingClient& c = clients[static_cast<size_t>(i)];
    if (std::string_view(svc.kind) == "echo") {
      const std::string payload = pattern(3000, i);
      ASSERT_TRUE(c.send_all(payload));
      EXPECT_EQ(c.recv_exact(payload.size()), payload) << i;
    } else {
      ASSERT_TRUE(c.send_all(svc.request));
      EXPECT_THAT(recv_until_ends_with(c, svc.reply_end), EndsWith(svc.reply_end)) << i;
    }
  }
  clients.clear();
  EXPECT_TRUE(test::stops_cleanly(d));
  EXPECT_THAT(test::unexpected_log_lines(d.log()), ::testing::IsEmpty());
}

const IdleService kIdleEcho{"echo", "serve_echo", "hello", "hello"};
const IdleService kIdleHttp{"http", "HttpConnection::run",
                            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", "\r\n\r\nok"};
const IdleService kIdleResp{"resp", "RespConnection::run", "PING\r\n", "+PONG\r\n"};

TEST(DaemonStacks, IdleEchoConnectionsGiveTheirStacksBackOnEpoll) {
  idle_connections_give_their_stacks_back("epoll", kIdleEcho);
}

TEST(DaemonStacks, IdleEchoConnectionsGiveTheirStacksBackOnIoUring) {
  idle_connections_give_their_stacks_back("io_uring", kIdleEcho);
}

TEST(DaemonStacks, IdleHttpConnectionsGiveTheirStacksBackOnEpoll) {
  idle_connections_give_their_stacks_back("epoll", kIdleHttp);
}

TEST(DaemonStacks, IdleHttpConnectionsGiveTheirStacksBackOnIoUring) {
  idle_connections_give_their_stacks_back("io_uring", kIdleHttp);
}

TEST(DaemonStacks, IdleRespConnectionsGiveTheirStacksBackOnIoUring) {
  idle_connections_give_their_stacks_back("io_uring", kIdleResp);
}

}  // namespace
}  // namespace reactord
