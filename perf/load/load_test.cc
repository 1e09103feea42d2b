// reactord-load checks what it measures: its parsers on bytes split every way, its histogram, and
// the binary end to end against a small blocking server in this test (loopback, a port the OS
// picks): exact request counts give exact verified-byte counts, and a server that corrupts one
// byte must be caught. Runs in a few seconds; asserts nothing about speed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "perf/load/histogram.h"
#include "perf/load/protocol.h"

namespace reactor::load {
namespace {

TEST(LoadProtocol, EchoAcceptsItsOwnBytesInAnySplit) {
  ProtocolOptions o;
  o.size = 1000;
  auto p = Protocol::create(o, 3);
  std::string sent;
  for (int i = 0; i < 70; ++i) p->append_request(sent);  // 70,000 bytes: wraps the pattern
  int64_t complete = 0;
  for (size_t at = 0, step = 1; at < sent.size(); at += step, step = step * 2 % 4093 + 1) {
    const size_t n = std::min(step, sent.size() - at);
    const int64_t c = p->consume(sent.data() + at, n);
    ASSERT_GE(c, 0) << p->error();
    complete += c;
  }
  EXPECT_EQ(complete, 70);
  EXPECT_EQ(p->verified_bytes(), sent.size());
  EXPECT_EQ(p->consume("x", 1), -1);  // more than was sent
}

TEST(LoadProtocol, EchoCatchesAChangedByteAndAnotherConnectionsBytes) {
  ProtocolOptions o;
  o.size = 64;
  auto p = Protocol::create(o, 1);
  std::string sent;
  p->append_request(sent);
  std::string bad = sent;
  bad[17] = static_cast<char>(bad[17] ^ 1);
  EXPECT_EQ(p->consume(bad.data(), bad.size()), -1);
  EXPECT_NE(p->error().find("byte 17"), std::string::npos) << p->error();

  auto q = Protocol::create(o, 2);
  std::string other;
  q->append_request(other);
  EXPECT_EQ(q->consume(sent.data(), sent.size()), -1);  // connection 1's payload on connection 2
}

TEST(LoadProtocol, HttpFramesResponsesByContentLengthInAnySplit) {
  ProtocolOptions o;
  o.mode = Mode::kHttp;
  o.path = "/x";
  auto p = Protocol::create(o, 0);
  std::string req;
  p->append_request(req);
  EXPECT_EQ(req, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string one =
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  const std::string empty = "HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 0\r\n\r\n";
  const std::string stream = one + empty + one;
  int64_t complete = 0;
  for (char c : stream) {
    const int64_t n = p->consume(&c, 1);
    ASSERT_GE(n, 0) << p->error();
    complete += n;
  }
  EXPECT_EQ(complete, 3);
  EXPECT_EQ(p->verified_bytes(), stream.size());

  auto q = Protocol::create(o, 0);
  const std::string missing = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(q->consume(missing.data(), missing.size()), -1);
  auto r = Protocol::create(o, 0);
  const std::string unframed = "HTTP/1.1 200 OK\r\n\r\n";
  EXPECT_EQ(r->consume(unframed.data(), unframed.size()), -1);
}

TEST(LoadProtocol, RespWantsPong) {
  ProtocolOptions o;
  o.mode = Mode::kResp;
  auto p = Protocol::create(o, 0);
  const std::string two = "+PONG\r\n+PO";
  EXPECT_EQ(p->consume(two.data(), two.size()), 1);
  EXPECT_EQ(p->consume("NG\r\n", 4), 1);
  EXPECT_EQ(p->verified_bytes(), 14u);
  EXPECT_EQ(p->consume("-ERR\r\n", 6), -1);
}

TEST(LoadHistogram, QuantilesWithinABucketOfTheTruth) {
  LatencyHistogram h;
  for (int64_t v = 1; v <= 100000; ++v) h.record(v * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000u * 1000);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double truth = q * 100000 * 1000;
    EXPECT_GE(static_cast<double>(h.quantile(q)), truth * 0.999) << q;
    EXPECT_LE(static_cast<double>(h.quantile(q)), truth * 1.0625) << q;
  }
  EXPECT_EQ(h.quantile(1.0), h.max());
  for (uint64_t v : {0ull, 15ull, 16ull, 17ull, 1000ull, 123456789ull, ~0ull}) {
    const int i = LatencyHistogram::index_of(v);
    ASSERT_LT(i, LatencyHistogram::kBuckets);
    EXPECT_LE(v, LatencyHistogram::upper_bound(i));
    if (i > 0) {
      EXPECT_GT(v, LatencyHistogram::upper_bound(i - 1));
    }
  }
}

// A blocking thread-per-connection server on 127.0.0.1 and a port the OS picks.
class TestServer {
 public:
  static constexpr char kHttpResponse[] =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nhi\n";

  // corrupt_at: in echo mode, flip one bit of this byte of each connection's stream (0: never).
  // burn: in echo mode, spin this much of the serving thread's CPU time for each `block` bytes of
  // a stream received, before echoing them: a server whose CPU cost is known.
  TestServer(Mode mode, size_t corrupt_at = 0, std::chrono::nanoseconds burn = {}, size_t block = 0)
      : mode_(mode), corrupt_at_(corrupt_at), burn_(burn), block_(block) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 128), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() {
    stop_ = true;
    acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (int c : conns_) shutdown(c, SHUT_RDWR);
    }
    for (auto& t : handlers_) t.join();
    for (int c : conns_) close(c);
    close(fd_);
  }
  int port() const { return port_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::lock_guard lock(mu_);
      conns_.push_back(c);
      handlers_.emplace_back([this, c] { serve(c); });
    }
  }

  void serve(int c) {
    char buf[16384];
    std::string pending;
    size_t offset = 0;
    for (;;) {
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return;
      std::string reply;
      if (mode_ == Mode::kEcho) {
        reply.assign(buf, static_cast<size_t>(n));
        if (corrupt_at_ > 0 && offset < corrupt_at_ && corrupt_at_ <= offset + n) {
          char& b = reply[corrupt_at_ - 1 - offset];
          b = static_cast<char>(b ^ 0x10);
        }
        if (block_ > 0) spin((offset + static_cast<size_t>(n)) / block_ - offset / block_);
        offset += static_cast<size_t>(n);
      } else {
        pending.append(buf, static_cast<size_t>(n));
        const std::string end = mode_ == Mode::kHttp ? "\r\n\r\n" : "PING\r\n";
        for (size_t at; (at = pending.find(end)) != std::string::npos;) {
          pending.erase(0, at + end.size());
          reply += mode_ == Mode::kHttp ? kHttpResponse : "+PONG\r\n";
        }
      }
      for (size_t done = 0; done < reply.size();) {
        const ssize_t w = write(c, reply.data() + done, reply.size() - done);
        if (w <= 0) return;
        done += static_cast<size_t>(w);
      }
    }
  }

  // Spins `blocks` times burn_ of this thread's CPU time.
  void spin(size_t blocks) const {
    auto cpu = [] {
      timespec ts{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
    };
    const auto until = cpu() + burn_ * static_cast<int64_t>(blocks);
    while (cpu() < until) {
    }
  }

  const Mode mode_;
  const size_t corrupt_at_;
  const std::chrono::nanoseconds burn_;
  const size_t block_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> handlers_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
};

RunResult run_load(const std::string& args) {
  RunResult r;
  const std::string cmd = std::string(REACTORD_LOAD_BINARY) + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  const int status = pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// reactord-load with `args` against `server`.
RunResult run_against(const TestServer& server, const std::string& args) {
  return run_load("--port " + std::to_string(server.port()) + " " + args);
}

// The number after "key": in the JSON output, or -1.
double json_number(const std::string& out, const std::string& key) {
  const size_t at = out.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtod(out.c_str() + at + key.size() + 3, nullptr);
}

TEST(LoadEndToEnd, EchoVerifiesEveryByteOfExactlyTheRequestedMessages) {
  TestServer server(Mode::kEcho);
  const RunResult r =
      run_against(server, "--connections 8 --threads 2 --size 100 --requests 2001 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json_number(r.out, "requests"), 2001) << r.out;
  EXPECT_EQ(json_number(r.out, "verified_bytes"), 200100) << r.out;
  EXPECT_EQ(json_number(r.out, "errors"), 0) << r.out;
  EXPECT_EQ(json_number(r.out, "connected"), 8) << r.out;
  EXPECT_GT(json_number(r.out, "p50"), 0) << r.out;
}

// The server (this process) spins 5 ms of CPU for each 5,000-byte message: 60 of them cost it
// 0.3 s, which the server-CPU figures must show.
TEST(LoadEndToEnd, EchoWithSourceAddressesAndServerCpu) {
  constexpr int kRequests = 60;
  constexpr double kBurnSeconds = 0.005;
  TestServer server(Mode::kEcho, 0, std::chrono::microseconds(5000), 5000);
  const RunResult r =
      run_against(server, "--connections 6 --source-addrs 3 --size 5000 --requests " +
                              std::to_string(kRequests) + " --server-pid " +
                              std::to_string(getpid()) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json_number(r.out, "verified_bytes"), 300000) << r.out;
  // /proc counts CPU in clock ticks (10 ms): each end of the window may lose one. Above the
  // burn: the server's own reads and writes and this process's other threads, which are idle.
  const double burnt = kRequests * kBurnSeconds;
  const double cpu = json_number(r.out, "server_cpu_s");
  EXPECT_GE(cpu, burnt - 0.02) << r.out;
  EXPECT_LE(cpu, burnt + 0.1) << r.out;
  EXPECT_NEAR(json_number(r.out, "server_cpu_per_request_us"), cpu * 1e6 / kRequests, 1) << r.out;
  // Utilization is that CPU over the measured window (both printed to 3 decimals).
  const double window = json_number(r.out, "window_s");
  ASSERT_GT(window, 0) << r.out;
  EXPECT_NEAR(json_number(r.out, "server_utilization"), cpu / window, 0.002 + 0.001 / window)
      << r.out;
}

TEST(LoadEndToEnd, CatchesACorruptedByte) {
  TestServer server(Mode::kEcho, /*corrupt_at=*/1000);
  const RunResult r = run_against(server, "--connections 2 --size 64 --requests 100 --json");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(json_number(r.out, "errors_verify"), 2) << r.out;
  EXPECT_NE(r.out.find("byte 999 of the stream differs"), std::string::npos) << r.out;
}

TEST(LoadEndToEnd, HttpAndRespCountWholeResponses) {
  TestServer http(Mode::kHttp);
  RunResult r = run_against(http, "--mode http --connections 3 --requests 300 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json_number(r.out, "verified_bytes"), 300 * (sizeof TestServer::kHttpResponse - 1))
      << r.out;

  TestServer resp(Mode::kResp);
  r = run_against(resp, "--mode resp --connections 3 --requests 300 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json_number(r.out, "verified_bytes"), 300 * 7) << r.out;
}

TEST(LoadEndToEnd, OpenLoopSendsAtTheRateAndMeasuresAWindow) {
  TestServer server(Mode::kEcho);
  const RunResult r =
      run_against(server, "--connections 4 --rate 2000 --warmup 0.2 --duration 0.5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // 1,000 requests are due in the window; a loaded machine may finish some of them late.
  EXPECT_GT(json_number(r.out, "requests"), 500) << r.out;
  EXPECT_LE(json_number(r.out, "requests"), 1002) << r.out;
  EXPECT_EQ(json_number(r.out, "errors"), 0) << r.out;
  EXPECT_NE(r.out.find("\"loop\":\"open\""), std::string::npos) << r.out;
}

TEST(LoadEndToEnd, RefusesBadUsage) {
  EXPECT_EQ(run_load("--connections 3").exit_code, 64);  // no port
  EXPECT_EQ(run_load("--port 1 --mode ftp").exit_code, 64);
  EXPECT_EQ(run_load("--port 1 --size x").exit_code, 64);
}

}  // namespace
}  // namespace reactor::load
