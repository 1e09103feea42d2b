// A real Prometheus server (Debian's `prometheus`) scrapes the daemon: the http service's
// /metrics, and the admin socket's `metrics` answer served to it over loopback HTTP by this test.
// Queried over its HTTP API, the counters it stored must equal the traffic the test sent. The
// server runs on a free loopback port with its data in the test's directory, scraping every 1 s.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

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
using Clock = std::chrono::steady_clock;

// A loopback listener on a port the OS picks; -1 if it could not be made.
int listen_loopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 16) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// Serves the admin socket's `metrics` answer as a Prometheus target at /metrics on a loopback
// port, one request per connection, until destroyed. Its own thread.
class AdminMetricsExporter {
 public:
  explicit AdminMetricsExporter(std::string admin_socket)
      : admin_(std::move(admin_socket)), fd_(listen_loopback(&port_)) {
    if (fd_ >= 0) thread_ = std::thread([this] { serve(); });
  }
  ~AdminMetricsExporter() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  uint16_t port() const { return fd_ >= 0 ? port_ : 0; }
  int scrapes() const { return scrapes_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string request;
      char buf[4096];
      ssize_t n;
      while (request.find("\r\n\r\n") == std::string::npos &&
             (n = ::recv(c, buf, sizeof buf, 0)) > 0) {
        request.append(buf, static_cast<size_t>(n));
      }
      const std::string body = test::admin_query(admin_, "metrics").value_or("");
      const std::string response =
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      for (size_t sent = 0; sent < response.size();) {
        const ssize_t w = ::send(c, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += static_cast<size_t>(w);
      }
      ::close(c);
      ++scrapes_;
    }
  }

  std::string admin_;
  uint16_t port_ = 0;
  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> scrapes_{0};
  std::thread thread_;
};

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '_') {
      out += static_cast<char>(ch);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", ch);
      out += hex;
    }
  }
  return out;
}

// The body of an HTTP/1.0 request to 127.0.0.1:port; "" if it failed.
std::string http_request(uint16_t port, const std::string& method, const std::string& target) {
  test::BlockingClient c("127.0.0.1:" + std::to_string(port), 5s);
  if (!c.connected() || !c.send_all(method + " " + target + " HTTP/1.0\r\nHost: x\r\n\r\n")) {
    return "";
  }
  std::string got;
  c.recv_to_eof(&got);
  const size_t head = got.find("\r\n\r\n");
  return head == std::string::npos ? "" : got.substr(head + 4);
}

// job → value of an instant query whose result has one series per job.
std::map<std::string, std::string> query_by_job(uint16_t port, const std::string& promql) {
  std::map<std::string, std::string> out;
  const nlohmann::json j = nlohmann::json::parse(
      http_request(port, "GET", "/api/v1/query?query=" + url_encode(promql)), nullptr, false);
  if (!j.is_object() || j.value("status", "") != "success") return out;
  for (const nlohmann::json& r : j["data"]["result"]) {
    out[r["metric"].value("job", "")] = r["value"][1].get<std::string>();
  }
  return out;
}

TEST(PrometheusTest, ScrapesBothEndpointsAndStoresTheTrafficSent) {
  test::DaemonProcess d;
  ASSERT_TRUE(test::start_daemon(
      d, test::daemon_config(d.dir(), "",
                             std::string(test::kEchoService) +
                                 "\n[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = "
                                 "\"127.0.0.1:0\"\n")));
  // The traffic: 7 echo connections of 500, 1000, ... 3500 bytes, 14,000 in all.
  int64_t bytes = 0;
  for (int i = 1; i <= 7; ++i) {
    const std::string payload(500 * i, static_cast<char>('a' + i));
    ASSERT_EQ(test::echo_through(d.addresses()["echo"], payload), payload);
    bytes += static_cast<int64_t>(payload.size());
  }
  // The daemon counts a connection's bytes as it serves them: wait until `services` shows them.
  for (auto end = Clock::now() + 10s; Clock::now() < end; std::this_thread::sleep_for(20ms)) {
    const nlohmann::json services = nlohmann::json::parse(
        test::admin_query(d.admin_socket(), "services").value_or(""), nullptr, false);
    if (services.is_array() && !services.empty() && services[0].value("bytes_in", 0) == bytes &&
        services[0]["connections"].value("active", -1) == 0) {
      break;
    }
  }

  AdminMetricsExporter admin(d.admin_socket());
  ASSERT_NE(admin.port(), 0);
  uint16_t prom_port = 0;
  const int probe = listen_loopback(&prom_port);  // a free port, released for Prometheus
  ASSERT_GE(probe, 0);
  ::close(probe);
  const std::string config = d.dir() + "/prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        << "scrape_configs:\n"
                        << "  - job_name: reactord_http\n    static_configs:\n"
                        << "      - targets: ['" << d.addresses()["web"] << "']\n"
                        << "  - job_name: reactord_admin\n    static_configs:\n"
                        << "      - targets: ['127.0.0.1:" << admin.port() << "']\n";
  test::Ran prom;
  std::thread server([&] {
    prom = test::run_process(
        {"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + d.dir() + "/tsdb",
         "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--web.enable-lifecycle",
         "--log.level=warn"},
        {}, nullptr, 60s);
  });

  // Both targets scraped once with the traffic in place: each job has its series.
  const std::string bytes_q = "sum by (job) (reactord_received_bytes_total{service=\"echo\"})";
  const std::string accepted_q =
      "sum by (job) (reactord_connections_accepted_total{service=\"echo\"})";
  std::map<std::string, std::string> got_bytes, got_accepted;
  for (auto end = Clock::now() + 30s; Clock::now() < end; std::this_thread::sleep_for(200ms)) {
    got_bytes = query_by_job(prom_port, bytes_q);
    got_accepted = query_by_job(prom_port, accepted_q);
    if (got_bytes.size() == 2 && got_accepted.size() == 2) break;
  }
  const std::map<std::string, std::string> want_bytes = {{"reactord_admin", std::to_string(bytes)},
                                                         {"reactord_http", std::to_string(bytes)}};
  const std::map<std::string, std::string> want_accepted = {{"reactord_admin", "7"},
                                                            {"reactord_http", "7"}};
  EXPECT_EQ(got_bytes, want_bytes);
  EXPECT_EQ(got_accepted, want_accepted);
  // Prometheus judged both targets healthy.
  const std::map<std::string, std::string> up = query_by_job(prom_port, "up");
  EXPECT_EQ(up,
            (std::map<std::string, std::string>{{"reactord_admin", "1"}, {"reactord_http", "1"}}));
  EXPECT_GT(admin.scrapes(), 0);

  http_request(prom_port, "POST", "/-/quit");
  server.join();
  EXPECT_EQ(prom.code, 0) << test::describe(prom);
  EXPECT_TRUE(test::stops_cleanly(d));
}

}  // namespace
}  // namespace reactord
