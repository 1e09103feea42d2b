// Helpers for the in-process service tests: a server that runs a real connection handler on a
// loopback listener of the current reactor (each accepted connection wrapped in a Connection, as a
// shard does), and a raw-byte client that counts what it sends and receives.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "reactor/task.h"
#include "services/connection.h"

namespace reactor::test {

using namespace std::chrono_literals;

// Serves connections accepted on 127.0.0.1:<OS-picked port> with `handler`, one fiber each.
// Loop thread of the reactor that created it; the destructor cancels and joins every fiber.
class TestServer {
 public:
  TestServer(reactord::ConnectionHandler handler, reactord::ShardView view)
      : handler_(std::move(handler)), view_(std::move(view)) {
    auto listener = reactor::TcpListener::bind(*reactor::SocketAddress::parse_ip("127.0.0.1:0"));
    EXPECT_TRUE(listener.ok()) << listener.status();
    if (!listener.ok()) return;
    listener_ = *std::move(listener);
    address_ = *listener_.local_address();
    auto acceptor = reactor::spawn("test-acceptor", [this] { accept_loop(); });
    EXPECT_TRUE(acceptor.ok());
    if (acceptor.ok()) acceptor_ = *std::move(acceptor);
  }
  // A single-shard view of the current reactor.
  explicit TestServer(reactord::ConnectionHandler handler)
      : TestServer(std::move(handler), reactord::ShardView{0, 1, {reactor::Reactor::current()}}) {}

  ~TestServer() {
    if (acceptor_.valid()) {
      acceptor_.cancel();
      acceptor_.join();
    }
    for (reactor::Task<void>& t : connections_) {
      t.cancel();
      t.join();
    }
  }

  const reactor::SocketAddress& address() const { return address_; }
  reactord::ServiceStats& stats() { return stats_; }
  // Connections being served now.
  const std::vector<reactord::Connection*>& live() const { return live_; }

  // Waits until `n` connections have been closed by the server (handler returned).
  void wait_closed(uint64_t n) {
    const reactor::Deadline until = reactor::deadline_after(10s);
    while (stats_.connections_closed.get() < n && reactor::Clock::now() < until) {
      (void)reactor::sleep_for(1ms);
    }
    EXPECT_EQ(stats_.connections_closed.get(), n);
  }

  // Waits (up to 5 s) until the server has read `n` bytes in all: what the clients sent arrived.
  void wait_bytes_in(uint64_t n) {
    const reactor::Deadline until = reactor::deadline_after(5s);
    while (stats_.bytes_in.get() < n && reactor::Clock::now() < until) {
      (void)reactor::sleep_for(1ms);
    }
  }

  // Drains every connection being served now, as a shard's shutdown does.
  void drain_all() {
    for (reactord::Connection* c : std::vector<reactord::Connection*>(live_)) c->drain();
  }

  // Whether the server counted exactly `requests` requests, `bytes_in` bytes read and `bytes_out`
  // bytes written.
  ::testing::AssertionResult totals_are(uint64_t requests, uint64_t bytes_in, uint64_t bytes_out) {
    const uint64_t r = stats_.requests.get(), in = stats_.bytes_in.get(),
                   out = stats_.bytes_out.get();
    if (r == requests && in == bytes_in && out == bytes_out) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "requests " << r << " (want " << requests << "), bytes in " << in << " (want "
           << bytes_in << "), bytes out " << out << " (want " << bytes_out << ")";
  }

 private:
  void accept_loop() {
    for (;;) {
      auto stream = listener_.accept();
      if (!stream.ok()) return;  // cancelled
      auto task = reactor::spawn("test-conn", [this, s = *std::move(stream)]() mutable {
        reactord::Connection conn(std::move(s), stats_, view_);
        reactor::detail::Fiber* self = reactor::detail::current_fiber();
        conn.set_cancel([self] { reactor::Reactor::current()->cancel(self); });
        live_.push_back(&conn);
        handler_(conn);
        live_.erase(std::find(live_.begin(), live_.end(), &conn));
      });
      EXPECT_TRUE(task.ok());
      if (task.ok()) connections_.push_back(*std::move(task));
    }
  }

  reactord::ConnectionHandler handler_;
  reactord::ShardView view_;
  reactord::ServiceStats stats_;
  reactor::TcpListener listener_;
  reactor::SocketAddress address_;
  reactor::Task<void> acceptor_;
  std::vector<reactor::Task<void>> connections_;
  std::vector<reactord::Connection*> live_;
};

// A client speaking raw bytes, counting them. Loop thread, inside a fiber.
class RawClient {
 public:
  explicit RawClient(const reactor::SocketAddress& address) {
    auto s = reactor::TcpStream::connect(address, reactor::deadline_after(5s));
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) stream_ = *std::move(s);
  }

  // Sends everything; false if the server closed.
  bool send(std::string_view bytes) {
    absl::Status s = stream_.write_all(bytes, reactor::deadline_after(5s));
    if (s.ok()) sent_ += bytes.size();
    return s.ok();
  }

  // Reads until `buffer()` holds at least n bytes; false on end of stream or timeout.
  bool fill(size_t n, reactor::Duration timeout = 5s) {
    const reactor::Deadline until = reactor::deadline_after(timeout);
    char chunk[4096];
    while (buffer_.size() < n) {
      auto got = stream_.read(std::as_writable_bytes(std::span(chunk)), until);
      if (!got.ok() || *got == 0) return false;
      buffer_.append(chunk, *got);
      received_ += *got;
    }
    return true;
  }

  // Takes exactly n bytes (what arrived within the timeout if fewer).
  std::string take(size_t n, reactor::Duration timeout = 5s) {
    (void)fill(n, timeout);
    std::string out = buffer_.substr(0, std::min(n, buffer_.size()));
    buffer_.erase(0, out.size());
    return out;
  }

  // True once the server closed with nothing more buffered; false on timeout or extra bytes.
  bool at_eof(reactor::Duration timeout = 5s) {
    if (!buffer_.empty()) return false;
    char chunk[4096];
    auto got =
        stream_.read(std::as_writable_bytes(std::span(chunk)), reactor::deadline_after(timeout));
    if (!got.ok()) return false;
    if (*got > 0) {
      buffer_.append(chunk, *got);
      received_ += *got;
      return false;
    }
    return true;
  }

  std::string& buffer() { return buffer_; }
  reactor::TcpStream& stream() { return stream_; }
  uint64_t sent() const { return sent_; }
  uint64_t received() const { return received_; }
  void close() { (void)stream_.close(); }

 private:
  reactor::TcpStream stream_;
  std::string buffer_;
  uint64_t sent_ = 0;
  uint64_t received_ = 0;
};

// Each service's test file runs the same scenarios: tests/service_scenarios.h holds those that
// need no more than one request; this one checks a table of refused requests.
// Each of `cases` on a fresh connection, checked by `check(c, case)` (which expects the server to
// close it); then the server's totals are `requests_per_case` requests a case and exactly the
// bytes the clients sent and received.
template <class Case, class Check>
void expect_each_case_closes(TestServer& server, const std::vector<Case>& cases,
                             uint64_t requests_per_case, Check check) {
  uint64_t sent = 0, received = 0;
  for (const Case& k : cases) {
    RawClient c(server.address());
    check(c, k);
    sent += c.sent();
    received += c.received();
  }
  server.wait_closed(cases.size());
  EXPECT_TRUE(server.totals_are(requests_per_case * cases.size(), sent, received));
}

}  // namespace reactor::test
