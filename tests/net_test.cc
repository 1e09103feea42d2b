// Sockets on fibers, on every available backend: echo, cancel and deadlines on accept and recv,
// close with a recv pending.
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::connected_pair;
using test::interrupt_pending;
using test::ms_taken;
using test::Pair;
using test::read_status;

class NetTest : public test::BackendTest {};

SocketAddress loopback_v4() {
  return *SocketAddress::parse_ip("127.0.0.1:0");
}

std::vector<std::byte> pattern(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>((i * 131 + i / 251) & 0xff));
  return v;
}

// Serves one connection: echoes until end of stream, then closes.
void echo_one(TcpListener& listener) {
  auto conn = listener.accept(deadline_after(10s));
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::vector<std::byte> buf(16 * 1024);
  for (;;) {
    auto n = conn->read(buf, deadline_after(10s));
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    ASSERT_TRUE(conn->write_all(std::span(buf.data(), *n), deadline_after(10s)).ok());
  }
}

void echo_round_trip(const SocketAddress& bind_addr, size_t bytes) {
  auto listener = TcpListener::bind(bind_addr);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto addr = listener->local_address();
  ASSERT_TRUE(addr.ok());
  auto server = spawn("echo-server", [&] { echo_one(*listener); });
  ASSERT_TRUE(server.ok());

  auto client = TcpStream::connect(*addr, deadline_after(5s));
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<std::byte> sent = pattern(bytes);
  // Write from one fiber while this one reads, so neither side's buffer fills up and stalls.
  auto writer = spawn("writer", [&] {
    ASSERT_TRUE(client->write_all(sent, deadline_after(10s)).ok());
    ASSERT_TRUE(client->shutdown_write().ok());
  });
  ASSERT_TRUE(writer.ok());
  std::vector<std::byte> got(bytes);
  ASSERT_TRUE(client->read_exact(got, deadline_after(10s)).ok());
  std::byte extra[1];
  auto eof = client->read(extra, deadline_after(5s));
  ASSERT_TRUE(eof.ok()) << eof.status();
  EXPECT_EQ(*eof, 0u);
  EXPECT_TRUE(got == sent) << "echoed bytes differ";
  writer->join();
  server->join();
}

TEST_P(NetTest, TcpEchoOneMebibyteByteExact) {
  run([] { echo_round_trip(loopback_v4(), 1 << 20); });
}

TEST_P(NetTest, TcpEchoOverIpv6) {
  run([] {
    auto addr = SocketAddress::parse_ip("[::1]:0");
    ASSERT_TRUE(addr.ok());
    auto probe = TcpListener::bind(*addr);
    if (!probe.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << probe.status();
    (void)probe->close();
    echo_round_trip(*addr, 64 * 1024);
  });
}

TEST_P(NetTest, UnixStreamEcho) {
  run([] {
    char dir[] = "/tmp/reactor-net-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/s.sock";
    auto addr = SocketAddress::unix_path(path);
    ASSERT_TRUE(addr.ok());
    auto listener = UnixListener::bind(*addr);
    ASSERT_TRUE(listener.ok()) << listener.status();
    auto server = spawn("unix-server", [&] {
      auto conn = listener->accept(deadline_after(5s));
      ASSERT_TRUE(conn.ok()) << conn.status();
      char buf[5];
      ASSERT_TRUE(
          conn->read_exact(std::as_writable_bytes(std::span(buf)), deadline_after(5s)).ok());
      ASSERT_TRUE(conn->write_all(std::string_view(buf, 5)).ok());
    });
    ASSERT_TRUE(server.ok());
    auto client = UnixStream::connect(*addr, deadline_after(5s));
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE(client->write_all("hello").ok());
    char reply[5];
    ASSERT_TRUE(
        client->read_exact(std::as_writable_bytes(std::span(reply)), deadline_after(5s)).ok());
    EXPECT_EQ(std::string(reply, 5), "hello");
    server->join();
    ::unlink(path.c_str());
    ::rmdir(dir);
  });
}

TEST_P(NetTest, AcceptDeadline) {
  absl::Status s;
  run([&] {
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    s = listener->accept(deadline_after(10ms)).status();
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
}

TEST_P(NetTest, AcceptCancel) {
  absl::Status s;
  run([&] {
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    interrupt_pending(
        "acceptor", [&] { s = listener->accept().status(); }, [](Task<void>& t) { t.cancel(); });
    // The listener still works after the cancelled accept.
    auto addr = listener->local_address();
    ASSERT_TRUE(addr.ok());
    auto client = TcpStream::connect(*addr, deadline_after(5s));
    ASSERT_TRUE(client.ok());
    auto conn = listener->accept(deadline_after(5s));
    EXPECT_TRUE(conn.ok()) << conn.status();
  });
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
}

TEST_P(NetTest, RecvDeadline) {
  absl::Status s;
  double waited_ms = 0;
  run([&] {
    Pair p = connected_pair();
    waited_ms = ms_taken([&] { s = read_status(p.client, deadline_after(20ms)); });
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_GE(waited_ms, 19);
}

TEST_P(NetTest, RecvCancel) {
  absl::Status s;
  run([&] {
    Pair p = connected_pair();
    interrupt_pending(
        "reader", [&] { s = read_status(p.client); }, [](Task<void>& t) { t.cancel(); });
    // The stream still works: a later read gets data sent afterwards.
    ASSERT_TRUE(p.server.write_all("x").ok());
    std::byte b[1];
    auto n = p.client.read(b, deadline_after(5s));
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 1u);
  });
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
}

TEST_P(NetTest, CloseResumesPendingRecvWithError) {
  absl::Status s;
  run([&] {
    Pair p = connected_pair();
    const double ms = interrupt_pending(
        "reader",
        [&] {
          std::byte buf[16];
          s = Reactor::current()->backend().recv(p.client.fd(), buf, deadline_after(10s)).status();
        },
        [&](Task<void>&) { ASSERT_TRUE(p.client.close().ok()); });
    EXPECT_LT(ms, 5000) << "recv waited for its deadline instead";
  });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("closed"));
}

TEST_P(NetTest, ConnectRefusedIsAnErrnoStatus) {
  absl::Status s;
  run([&] {
    // Bind a port, close it, and connect to it: nobody listens there now.
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    auto addr = listener->local_address();
    ASSERT_TRUE(listener->close().ok());
    s = TcpStream::connect(*addr, deadline_after(5s)).status();
  });
  EXPECT_EQ(status_errno(s), ECONNREFUSED) << s;
}

TEST(SocketAddress, ParsesAndPrints) {
  EXPECT_EQ(SocketAddress::parse_ip("127.0.0.1:80")->to_string(), "127.0.0.1:80");
  EXPECT_EQ(SocketAddress::parse_ip("[::1]:8080")->to_string(), "[::1]:8080");
  EXPECT_EQ(SocketAddress::parse_ip("[::1]:8080")->port(), 8080);
  EXPECT_FALSE(SocketAddress::parse_ip("localhost:80").ok());
  EXPECT_FALSE(SocketAddress::parse_ip("127.0.0.1").ok());
  EXPECT_FALSE(SocketAddress::parse_ip("127.0.0.1:70000").ok());
  EXPECT_FALSE(SocketAddress::parse_ip("[::1:80").ok());
  EXPECT_FALSE(SocketAddress::unix_path(std::string(200, 'x')).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::ValuesIn(test::available_backends()),
                         test::backend_test_name);

}  // namespace
}  // namespace reactor
