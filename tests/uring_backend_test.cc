// What only the io_uring backend does: ring set-up levels, opcode probing, counters that show the
// batching, the wakeup eventfd's "one token while pending", wakeups by ring message, multishot
// accept shared by several waiters and throttled, and the provided-buffer recv path.
// Backend-neutral behaviour is in conformance_test.cc and net_test.cc, which run on io_uring too.
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "backends/uring_backend.h"
#include "reactor/call_on.h"
#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/notice.h"
#include "reactor/reactor.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;

bool uring_available() {
  return probe_backend("io_uring").available;
}

#define REQUIRE_URING() \
  if (!uring_available()) GTEST_SKIP() << probe_backend("io_uring").reason

uint64_t counter(const Backend& b, std::string_view name) {
  return test::backend_counter(b, name);
}

// Linux version as major * 100 + minor.
int kernel_version() {
  utsname u{};
  ::uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  return major * 100 + minor;
}

SocketAddress loopback_v4() {
  return *SocketAddress::parse_ip("127.0.0.1:0");
}

void run_uring(const std::function<void()>& fn) {
  test::run_fiber(fn, "io_uring");
}

// A backend asked to start at setup `level`; nullptr only where the kernel may lack that level
// (level 0 before Linux 6.1), a test failure for any other error.
std::unique_ptr<UringBackend> at_level(int level) {
  UringBackend::Options options;
  options.first_setup_level = level;
  auto b = UringBackend::create(options);
  if (!b.ok() && level == 0 && kernel_version() < 601) return nullptr;
  EXPECT_TRUE(b.ok()) << "level " << level << ": " << b.status();
  return b.ok() ? *std::move(b) : nullptr;
}

TEST(UringBackend, SetupLevelsFallBackInOrder) {
  REQUIRE_URING();
  // Each level can be asked for directly; this kernel has them all (6.1+ for the first).
  for (int level = 0; level <= 2; ++level) {
    std::unique_ptr<UringBackend> b = at_level(level);
    if (b == nullptr) continue;
    EXPECT_EQ(static_cast<int>(b->setup_mode()), level);
    EXPECT_EQ(counter(*b, "io_uring_setup_level"), static_cast<uint64_t>(level));
  }
  auto best = UringBackend::create();
  ASSERT_TRUE(best.ok());
  if (kernel_version() >= 601) {
    EXPECT_EQ((*best)->setup_mode(), UringBackend::SetupMode::kSingleIssuerDeferTaskrun);
    EXPECT_THAT((*best)->describe(), ::testing::HasSubstr("SINGLE_ISSUER|DEFER_TASKRUN"));
  }
  if (kernel_version() >= 519) {
    EXPECT_TRUE((*best)->multishot_accept());
  }
}

TEST(UringBackend, EveryLevelWakesUp) {
  REQUIRE_URING();
  // The registry always takes the best level; the lower ones work as well. Each level must be
  // created (only level 0 may be missing, before Linux 6.1, as in SetupLevels).
  int woken = 0;
  for (int level = 0; level <= 2; ++level) {
    std::unique_ptr<UringBackend> b = at_level(level);
    if (b == nullptr) continue;
    ++woken;
    // Exercise it directly: a wakeup token, then a poll that consumes it.
    b->wakeup();
    b->poll(Duration(-1));  // returns because of the token
    EXPECT_EQ(counter(*b, "wakeups_total"), 1u);
  }
  EXPECT_GE(woken, 2);
}

// The ring fd is registered (5.18) so io_uring_enter skips the fd lookup, and reported; turned
// off, the ring enters through its plain fd (and the suites pass: ctest's *_uring_no_ring_fd).
TEST(UringBackend, RegisteredRingFdIsReportedAndCanBeTurnedOff) {
  REQUIRE_URING();
  auto b = UringBackend::create();
  ASSERT_TRUE(b.ok());
  if (kernel_version() >= 518) {
    EXPECT_TRUE((*b)->registered_ring_fd());
    EXPECT_THAT((*b)->describe(), ::testing::HasSubstr("registered ring fd"));
    EXPECT_EQ(counter(**b, "io_uring_feature_registered_ring_fd"), 1u);
  }
  UringBackend::Options options;
  options.register_ring_fd = false;
  auto plain = UringBackend::create(options);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->registered_ring_fd());
  EXPECT_THAT((*plain)->describe(), ::testing::Not(::testing::HasSubstr("registered ring fd")));
  EXPECT_EQ(counter(**plain, "io_uring_feature_registered_ring_fd"), 0u);
  (*plain)->wakeup();
  (*plain)->poll(Duration(-1));  // returns because of the token, through the plain fd
  EXPECT_EQ(counter(**plain, "wakeups_total"), 1u);
}

// Without the SQ index array (6.6) every level still moves SQEs and CQEs; turned off, the ring
// has the array again (and the suites pass: ctest's *_uring_sq_array).
TEST(UringBackend, NoSqArrayIsReportedAndCanBeTurnedOff) {
  REQUIRE_URING();
  for (int level = 0; level <= 2; ++level) {
    std::unique_ptr<UringBackend> b = at_level(level);
    if (b == nullptr) continue;
    SCOPED_TRACE(level);
    if (kernel_version() >= 606) {
      EXPECT_TRUE(b->no_sqarray());
      EXPECT_THAT(b->describe(), ::testing::HasSubstr("no SQ array"));
      EXPECT_EQ(counter(*b, "io_uring_feature_no_sqarray"), 1u);
    }
    b->wakeup();
    b->poll(Duration(-1));
    EXPECT_EQ(counter(*b, "wakeups_total"), 1u);
  }
  UringBackend::Options options;
  options.no_sqarray = false;
  auto with_array = UringBackend::create(options);
  ASSERT_TRUE(with_array.ok());
  EXPECT_FALSE((*with_array)->no_sqarray());
  EXPECT_EQ(counter(**with_array, "io_uring_feature_no_sqarray"), 0u);
}

// Connection sockets go into the ring's fixed-file table (5.19: a sparse table) at their first
// operation, and it is reported; turned off, every SQE names its fd (and the suites pass: ctest's
// *_uring_no_fixed_files).
TEST(UringFixedFiles, AreReportedAndCanBeTurnedOff) {
  REQUIRE_URING();
  auto b = UringBackend::create();
  ASSERT_TRUE(b.ok());
  if (kernel_version() >= 519) {
    EXPECT_GT((*b)->fixed_file_slots(), 0u);
    EXPECT_THAT((*b)->describe(), ::testing::HasSubstr("fixed files"));
    EXPECT_EQ(counter(**b, "io_uring_feature_fixed_files"), 1u);
  }
  UringBackend::Options options;
  options.fixed_files = false;
  auto plain = UringBackend::create(options);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->fixed_file_slots(), 0u);
  EXPECT_THAT((*plain)->describe(), ::testing::Not(::testing::HasSubstr("fixed files")));
  EXPECT_EQ(counter(**plain, "io_uring_feature_fixed_files"), 0u);
}

// The table holds a reference to each socket in it: close() must clear the slot, or the socket
// would stay open and the peer never see its end. Pairs opened and closed one after another reuse
// the same fd numbers, so each round also puts a new socket where the last one's slot was cleared.
TEST(UringFixedFiles, ClosedSocketsReachThePeerAndSlotsAreReused) {
  REQUIRE_URING();
  run_uring([] {
    const auto& b = static_cast<const UringBackend&>(Reactor::current()->backend());
    if (b.fixed_file_slots() == 0) GTEST_SKIP() << "no fixed-file table on this kernel";
    const uint64_t before = counter(b, "io_uring_fixed_file_registrations_total");
    constexpr int kRounds = 30;
    for (int i = 0; i < kRounds; ++i) {
      SCOPED_TRACE(i);
      test::Pair p = test::connected_pair();
      const std::string msg = "round " + std::to_string(i);
      ASSERT_TRUE(p.client.write_all(std::as_bytes(std::span(msg)), deadline_after(5s)).ok());
      std::string got(msg.size(), '\0');
      ASSERT_TRUE(
          p.server.read_exact(std::as_writable_bytes(std::span(got)), deadline_after(5s)).ok());
      EXPECT_EQ(got, msg);
      // The server's side closes with nothing in flight on it: the slot is cleared by the loop's
      // next submit, which the client's read below causes.
      ASSERT_TRUE(p.server.close().ok());
      std::byte buf[16];
      auto n = p.client.read(buf, deadline_after(5s));
      ASSERT_TRUE(n.ok()) << n.status();
      EXPECT_EQ(*n, 0u) << "the peer's close did not arrive";
    }
    // Both ends of every pair went in (the client at its write, the server at its read).
    EXPECT_EQ(counter(b, "io_uring_fixed_file_registrations_total") - before, 2u * kRounds);
    EXPECT_EQ(counter(b, "io_uring_fixed_file_errors_total"), 0u);
  });
}

// A socket closed while a fiber waits in a receive on it: the waiter is told it was closed, and
// the peer sees the end, with the socket in the fixed-file table.
TEST(UringFixedFiles, CloseWithAReceivePendingEndsBoth) {
  REQUIRE_URING();
  run_uring([] {
    test::Pair p = test::connected_pair();
    std::byte warm[1] = {std::byte{1}};
    ASSERT_TRUE(p.client.write_all(warm, deadline_after(5s)).ok());
    ASSERT_TRUE(p.server.read_exact(warm, deadline_after(5s)).ok());  // the server's socket is in
    absl::Status waited;
    const int fd = p.server.fd();
    auto reader = spawn("reader", [&] {
      std::byte buf[8];
      waited = Reactor::current()->backend().recv(fd, buf, deadline_after(5s)).status();
    });
    ASSERT_TRUE(reader.ok());
    yield();  // the receive is in the ring
    ASSERT_TRUE(p.server.close().ok());
    reader->join();
    EXPECT_TRUE(absl::IsFailedPrecondition(waited)) << waited;
    std::byte buf[8];
    auto n = p.client.read(buf, deadline_after(5s));
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(counter(Reactor::current()->backend(), "io_uring_fixed_file_errors_total"), 0u);
  });
}

// wakeup() writes the eventfd only when no token is pending: a burst from another thread costs one
// write, and the next poll clears it.
TEST(UringBackend, WakeupWritesOnceWhilePending) {
  REQUIRE_URING();
  auto b = UringBackend::create();
  ASSERT_TRUE(b.ok());
  UringBackend& backend = **b;
  backend.poll(Duration::zero());  // submits the eventfd read
  std::thread t([&] {
    for (int i = 0; i < 1000; ++i) backend.wakeup();
  });
  t.join();
  EXPECT_EQ(counter(backend, "wakeups_total"), 1u);
  const Deadline start = Clock::now();
  backend.poll(std::chrono::seconds(10));  // the token ends it at once
  EXPECT_LT(test::ms_since(start), 5000);
  backend.wakeup();
  EXPECT_EQ(counter(backend, "wakeups_total"), 2u);
  backend.poll(Duration(-1));
}

// Every poll is one io_uring_enter; with many connections busy, one enter carries many SQEs.
struct BatchingCounters {
  uint64_t sqes = 0, cqes = 0, enters = 0, direct_sends = 0;
};

// 50 connections x 20 round trips of 64 bytes, both sides on one io_uring reactor.
BatchingCounters ping_pong_counters() {
  BatchingCounters n;
  run_uring([&] {
    constexpr int kConnections = 50;
    constexpr int kRounds = 20;
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    auto addr = listener->local_address();
    std::vector<Task<void>> tasks;
    for (int i = 0; i < kConnections; ++i) {
      auto server = spawn("server", [&] {
        auto c = listener->accept(deadline_after(10s));
        ASSERT_TRUE(c.ok()) << c.status();
        char buf[64];
        for (int r = 0; r < kRounds; ++r) {
          ASSERT_TRUE(
              c->read_exact(std::as_writable_bytes(std::span(buf)), deadline_after(10s)).ok());
          ASSERT_TRUE(c->write_all(std::string_view(buf, sizeof buf), deadline_after(10s)).ok());
        }
      });
      auto client = spawn("client", [&] {
        auto c = TcpStream::connect(*addr, deadline_after(10s));
        ASSERT_TRUE(c.ok()) << c.status();
        char buf[64] = {};
        for (int r = 0; r < kRounds; ++r) {
          ASSERT_TRUE(c->write_all(std::string_view(buf, sizeof buf), deadline_after(10s)).ok());
          ASSERT_TRUE(
              c->read_exact(std::as_writable_bytes(std::span(buf)), deadline_after(10s)).ok());
        }
      });
      ASSERT_TRUE(server.ok() && client.ok());
      tasks.push_back(*std::move(server));
      tasks.push_back(*std::move(client));
    }
    join_all(tasks);
    const Backend& b = Reactor::current()->backend();
    n.sqes = counter(b, "sqes_submitted_total");
    n.cqes = counter(b, "cqes_reaped_total");
    n.enters = counter(b, "io_uring_enter_calls_total");
    n.direct_sends = counter(b, "io_uring_direct_sends_total");
  });
  std::printf("sqes %llu, cqes %llu, enters %llu (%.1f SQEs per enter), direct sends %llu\n",
              static_cast<unsigned long long>(n.sqes), static_cast<unsigned long long>(n.cqes),
              static_cast<unsigned long long>(n.enters), static_cast<double>(n.sqes) / n.enters,
              static_cast<unsigned long long>(n.direct_sends));
  return n;
}

TEST(UringBackend, CountersShowBatching) {
  REQUIRE_URING();
  // send_first as the only send path: async_send (tested below) would queue every send.
  ASSERT_EQ(::setenv("REACTOR_URING_ASYNC_SEND", "0", 1), 0);
  const BatchingCounters n = ping_pong_counters();
  ::unsetenv("REACTOR_URING_ASYNC_SEND");
  // 50 x 20 round trips on each side: 2,000 receives through the ring; 2,000 sends of 64 bytes
  // into sockets with room, each sent at once (send_first).
  EXPECT_GE(n.sqes, 2000u);
  EXPECT_GE(n.cqes, 2000u);
  EXPECT_EQ(n.direct_sends, 2000u);
  EXPECT_GT(n.sqes, n.enters) << "no batching: " << n.sqes << " SQEs in " << n.enters << " enters";
}

TEST(UringBackend, SendsGoThroughTheRingWithoutSendFirst) {
  REQUIRE_URING();
  ASSERT_EQ(::setenv("REACTOR_URING_SEND_FIRST", "0", 1), 0);
  const BatchingCounters n = ping_pong_counters();
  ::unsetenv("REACTOR_URING_SEND_FIRST");
  // Every send and receive went through the ring: at least 4,000 SQEs.
  EXPECT_GE(n.sqes, 4000u);
  EXPECT_GE(n.cqes, 4000u);
  EXPECT_EQ(n.direct_sends, 0u);
  EXPECT_GT(n.sqes, n.enters);
}

// Two fibers waiting in accept on one listener share its multishot accept; each gets its own
// connection.
TEST(UringBackend, MultishotAcceptServesSeveralWaiters) {
  REQUIRE_URING();
  run_uring([] {
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    auto addr = listener->local_address();
    absl::StatusOr<int> a1 = -1, a2 = -1;
    auto t1 = spawn("acceptor1", [&] {
      a1 = Reactor::current()->backend().accept(listener->fd(), nullptr, deadline_after(5s));
    });
    auto t2 = spawn("acceptor2", [&] {
      a2 = Reactor::current()->backend().accept(listener->fd(), nullptr, deadline_after(5s));
    });
    ASSERT_TRUE(t1.ok() && t2.ok());
    yield();
    auto c1 = TcpStream::connect(*addr, deadline_after(5s));
    auto c2 = TcpStream::connect(*addr, deadline_after(5s));
    ASSERT_TRUE(c1.ok() && c2.ok());
    t1->join();
    t2->join();
    ASSERT_TRUE(a1.ok()) << a1.status();
    ASSERT_TRUE(a2.ok()) << a2.status();
    EXPECT_NE(*a1, *a2);
    FileDescriptor f1(*a1), f2(*a2);
    // Peer address comes from getpeername for a multishot accept.
    sockaddr_storage peer{};
    auto c3 = TcpStream::connect(*addr, deadline_after(5s));
    ASSERT_TRUE(c3.ok());
    auto a3 = Reactor::current()->backend().accept(listener->fd(), &peer, deadline_after(5s));
    ASSERT_TRUE(a3.ok()) << a3.status();
    FileDescriptor f3(*a3);
    EXPECT_EQ(peer.ss_family, AF_INET);
    EXPECT_EQ(SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&peer), sizeof peer).port(),
              c3->local_address()->port());
    if (static_cast<UringBackend&>(Reactor::current()->backend()).multishot_accept()) {
      EXPECT_GE(counter(Reactor::current()->backend(), "io_uring_accept_multishot_cqes_total"), 3u);
    }
  });
}

// More connections arrive than the multishot accept queues (it stops at 64 and re-arms later):
// every one is still accepted, none lost.
TEST(UringBackend, MultishotAcceptThrottlesAndLosesNoConnection) {
  REQUIRE_URING();
  run_uring([] {
    constexpr int kClients = 200;
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    auto addr = listener->local_address();
    // Arm the multishot with one accept, then connect everyone while nobody accepts.
    auto first = spawn("first", [&] { ASSERT_TRUE(listener->accept(deadline_after(5s)).ok()); });
    ASSERT_TRUE(first.ok());
    yield();
    std::vector<TcpStream> clients;
    for (int i = 0; i < kClients; ++i) {
      auto c = TcpStream::connect(*addr, deadline_after(5s));
      ASSERT_TRUE(c.ok()) << i << ": " << c.status();
      clients.push_back(*std::move(c));
    }
    first->join();
    ASSERT_TRUE(sleep_for(20ms).ok());
    std::vector<TcpStream> accepted;
    for (int i = 1; i < kClients; ++i) {
      auto s = listener->accept(deadline_after(5s));
      ASSERT_TRUE(s.ok()) << i << ": " << s.status();
      accepted.push_back(*std::move(s));
    }
    auto none = listener->accept(deadline_after(20ms));
    EXPECT_TRUE(absl::IsDeadlineExceeded(none.status())) << none.status();
  });
}

// Closing a listener closes the connections its multishot accepted but nobody took.
TEST(UringBackend, ClosingListenerClosesQueuedConnections) {
  REQUIRE_URING();
  run_uring([] {
    auto listener = TcpListener::bind(loopback_v4());
    ASSERT_TRUE(listener.ok());
    auto addr = listener->local_address();
    auto arm = spawn("arm", [&] { (void)listener->accept(deadline_after(1ms)); });
    ASSERT_TRUE(arm.ok());
    arm->join();
    auto c1 = TcpStream::connect(*addr, deadline_after(5s));
    auto c2 = TcpStream::connect(*addr, deadline_after(5s));
    ASSERT_TRUE(c1.ok() && c2.ok());
    ASSERT_TRUE(sleep_for(10ms).ok());  // accepted into the queue by the multishot
    ASSERT_TRUE(listener->close().ok());
    for (TcpStream* c : {&*c1, &*c2}) {
      std::byte b[1];
      auto n = c->read(b, deadline_after(5s));
      // End of stream, or a reset: either way the server side is gone, not leaked.
      EXPECT_TRUE((n.ok() && *n == 0) || status_errno(n.status()) == ECONNRESET) << n.status();
    }
  });
}

class ProvidedBuffers : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_URING(); }
  void TearDown() override { ::unsetenv("REACTOR_URING_PROVIDED_BUFFERS"); }
};

std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1103515245u + 12345u;
    b = std::byte(static_cast<uint8_t>(x >> 16));
  }
  return v;
}

// recv through the provided-buffer ring, copied into the caller's span: byte-exact, including
// spans smaller and larger than a buffer, and a cancelled recv.
TEST_F(ProvidedBuffers, RecvCopiesByteExact) {
  ::setenv("REACTOR_URING_PROVIDED_BUFFERS", "1", 1);
  run_uring([] {
    auto& b = static_cast<UringBackend&>(Reactor::current()->backend());
    ASSERT_TRUE(b.provided_buffers()) << b.describe();
    auto listener = TcpListener::bind(loopback_v4());
    auto addr = listener->local_address();
    auto client = TcpStream::connect(*addr, deadline_after(5s));
    auto server = listener->accept(deadline_after(5s));
    ASSERT_TRUE(client.ok() && server.ok());
    // A cancelled recv gives its buffer back.
    auto reader = spawn("reader", [&] {
      std::byte buf[100];
      EXPECT_TRUE(absl::IsCancelled(client->read(buf).status()));
    });
    ASSERT_TRUE(reader.ok());
    ASSERT_TRUE(sleep_for(2ms).ok());
    reader->cancel();
    reader->join();
    const std::vector<std::byte> data = pattern(3 << 20, 4);
    auto writer =
        spawn("writer", [&] { ASSERT_TRUE(server->write_all(data, deadline_after(20s)).ok()); });
    ASSERT_TRUE(writer.ok());
    std::vector<std::byte> got;
    size_t span = 1;
    while (got.size() < data.size()) {
      std::vector<std::byte> buf(span);
      auto n = client->read(buf, deadline_after(20s));
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_GT(*n, 0u);
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
      span = span * 3 % 70000 + 1;  // 1 byte up to past the 16 KiB buffer size
    }
    writer->join();
    EXPECT_TRUE(got == data);
    EXPECT_GT(counter(b, "io_uring_provided_buffer_recvs_total"), 0u);
  });
}

// With fewer buffers than receivers, a recv that finds none falls back to the caller's span.
TEST_F(ProvidedBuffers, ExhaustedRingFallsBackToSpan) {
  ::setenv("REACTOR_URING_PROVIDED_BUFFERS", "2", 1);
  run_uring([] {
    auto& b = static_cast<UringBackend&>(Reactor::current()->backend());
    ASSERT_TRUE(b.provided_buffers());
    constexpr int kPairs = 20;
    auto listener = TcpListener::bind(loopback_v4());
    auto addr = listener->local_address();
    std::vector<TcpStream> clients, servers;
    for (int i = 0; i < kPairs; ++i) {
      auto c = TcpStream::connect(*addr, deadline_after(5s));
      auto s = listener->accept(deadline_after(5s));
      ASSERT_TRUE(c.ok() && s.ok());
      clients.push_back(*std::move(c));
      servers.push_back(*std::move(s));
    }
    std::vector<std::string> got(kPairs);
    std::vector<Task<void>> readers;
    for (int i = 0; i < kPairs; ++i) {
      auto t = spawn("reader", [&, i] {
        char buf[32];
        auto n = clients[static_cast<size_t>(i)].read(std::as_writable_bytes(std::span(buf)),
                                                      deadline_after(10s));
        ASSERT_TRUE(n.ok()) << n.status();
        got[static_cast<size_t>(i)].assign(buf, *n);
      });
      ASSERT_TRUE(t.ok());
      readers.push_back(*std::move(t));
    }
    yield();
    // Every recv is pending with the kernel now; all their data arrives before the next poll (plain
    // send(2), not through the ring), so the completions compete for the two buffers.
    for (int i = 0; i < kPairs; ++i) {
      const std::string msg = "msg" + std::to_string(i);
      ASSERT_EQ(::send(servers[static_cast<size_t>(i)].fd(), msg.data(), msg.size(), 0),
                static_cast<ssize_t>(msg.size()));
    }
    join_all(readers);
    for (int i = 0; i < kPairs; ++i)
      EXPECT_EQ(got[static_cast<size_t>(i)], "msg" + std::to_string(i));
    EXPECT_GT(counter(b, "io_uring_provided_buffer_enobufs_total"), 0u);
  });
}

// Provided buffers are optional: a ring that cannot be registered (here an invalid count) leaves
// recv copying into the caller's span, and says so through the notice sink, not on stderr.
std::vector<std::string> g_notices;
void collect_notice(std::string_view message) {
  g_notices.emplace_back(message);
}

TEST_F(ProvidedBuffers, UnavailableRingIsANotice) {
  g_notices.clear();
  set_notice_sink(&collect_notice);
  UringBackend::Options options;
  options.provided_buffers = true;
  options.buffer_count = 3;  // not a power of two
  absl::StatusOr<std::unique_ptr<UringBackend>> b = UringBackend::create(options);
  set_notice_sink(nullptr);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE((*b)->provided_buffers());
  ASSERT_EQ(g_notices.size(), 1u);
  EXPECT_THAT(g_notices[0], ::testing::HasSubstr("io_uring provided buffers unavailable"));
  EXPECT_THAT(g_notices[0], ::testing::HasSubstr("power of two"));
}

// ---- lent_recv: multishot receives into the buffer ring (backends/uring_recv.cc) ----

TEST(UringLentRecv, IsReportedAndCanBeTurnedOff) {
  REQUIRE_URING();
  if (kernel_version() < 600) GTEST_SKIP() << "multishot receive needs Linux 6.0";
  UringBackend::Options asked;
  asked.lent_recv = true;  // the default, but under TSan (uring_backend.h)
  auto on = UringBackend::create(asked);
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE((*on)->lends_buffers());
  EXPECT_THAT((*on)->describe(), ::testing::HasSubstr("recv_lent via multishot receive"));
  EXPECT_EQ(counter(**on, "io_uring_feature_lent_recv"), 1u);
  UringBackend::Options options;
  options.lent_recv = false;
  auto off = UringBackend::create(options);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE((*off)->lends_buffers());
  EXPECT_THAT((*off)->describe(), ::testing::Not(::testing::HasSubstr("recv_lent")));
  EXPECT_EQ(counter(**off, "io_uring_feature_lent_recv"), 0u);
}

// A reader that stops taking: its multishot is paused once a few buffers wait, so the ring is not
// drained into one connection, and when it reads again every byte comes, in order.
TEST(UringLentRecv, SlowReaderPausesTheMultishotAndLosesNothing) {
  REQUIRE_URING();
  ::setenv("REACTOR_URING_LENT_RECV", "1", 1);  // on under TSan too
  run_uring([] {
    Backend& b = Reactor::current()->backend();
    if (!b.lends_buffers()) GTEST_SKIP() << "no multishot receive on this kernel";
    test::Pair p = test::connected_pair();
    const int fd = p.client.fd();
    const std::vector<std::byte> data = pattern(1 << 20, 31);
    auto writer =
        spawn("writer", [&] { ASSERT_TRUE(p.server.write_all(data, deadline_after(20s)).ok()); });
    ASSERT_TRUE(writer.ok());
    std::vector<std::byte> got;
    const uint64_t pauses = counter(b, "io_uring_lent_recv_pauses_total");
    const uint64_t cqes = counter(b, "io_uring_lent_recv_cqes_total");
    auto first = b.recv_lent(fd, deadline_after(5s));
    ASSERT_TRUE(first.ok()) << first.status();
    got.insert(got.end(), first->begin(), first->end());
    ASSERT_TRUE(sleep_for(50ms).ok());  // the writer fills the socket; nobody takes
    EXPECT_GT(counter(b, "io_uring_lent_recv_pauses_total"), pauses);
    // Paused at 8 waiting buffers; what the kernel received before the cancel was issued (at the
    // next submit: up to a loop iteration's sends, 256 KiB, here) comes on top. Unpaused, the
    // multishot would have taken the whole MiB that the writer got into the socket meanwhile (256
    // buffers of the 1,024), and it would go on taking while nobody reads.
    const uint64_t taken = counter(b, "io_uring_lent_recv_cqes_total") - cqes;
    EXPECT_LT(taken, 256u) << "the whole transfer went into ring buffers while nobody read";
    ASSERT_TRUE(sleep_for(50ms).ok());
    EXPECT_EQ(counter(b, "io_uring_lent_recv_cqes_total") - cqes, taken) << "still receiving";
    while (got.size() < data.size()) {
      auto r = b.recv_lent(fd, deadline_after(20s));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_FALSE(r->empty());
      got.insert(got.end(), r->begin(), r->end());
    }
    writer->join();
    EXPECT_TRUE(got == data);
  });
  ::unsetenv("REACTOR_URING_LENT_RECV");
}

// With fewer ring buffers than connections receiving, a multishot that finds none ends, and its
// reader receives into a buffer of its own once, then goes on: nobody starves.
TEST(UringLentRecv, DryRingFallsBackToTheReceiversOwnBuffer) {
  REQUIRE_URING();
  ::setenv("REACTOR_URING_LENT_RECV", "1", 1);         // on under TSan too
  ::setenv("REACTOR_URING_PROVIDED_BUFFERS", "2", 1);  // a ring of two buffers
  run_uring([] {
    Backend& b = Reactor::current()->backend();
    if (!b.lends_buffers()) GTEST_SKIP() << "no multishot receive on this kernel";
    constexpr int kPairs = 20;
    std::vector<test::Pair> pairs;
    for (int i = 0; i < kPairs; ++i) pairs.push_back(test::connected_pair());
    std::vector<std::string> got(kPairs);
    std::vector<Task<void>> readers;
    for (int i = 0; i < kPairs; ++i) {
      auto t = spawn("reader", [&, i] {
        const int fd = pairs[static_cast<size_t>(i)].client.fd();
        std::string& g = got[static_cast<size_t>(i)];
        while (g.size() < 8) {
          auto r = b.recv_lent(fd, deadline_after(10s));
          ASSERT_TRUE(r.ok()) << r.status();
          ASSERT_FALSE(r->empty());
          g.append(reinterpret_cast<const char*>(r->data()), r->size());
          // Holds the buffer across a yield, as a service handling a request does.
          yield();
        }
        b.release_lent(fd);
      });
      ASSERT_TRUE(t.ok());
      readers.push_back(*std::move(t));
    }
    yield();
    // Every reader's multishot is armed now; all the data arrives before the next poll, so the
    // completions compete for the two buffers.
    for (int i = 0; i < kPairs; ++i) {
      const std::string msg = absl::StrCat("msg", i + 10, "xyz");
      ASSERT_EQ(::send(pairs[static_cast<size_t>(i)].server.fd(), msg.data(), msg.size(), 0),
                static_cast<ssize_t>(msg.size()));
    }
    join_all(readers);
    for (int i = 0; i < kPairs; ++i) {
      EXPECT_EQ(got[static_cast<size_t>(i)], absl::StrCat("msg", i + 10, "xyz"));
    }
    EXPECT_GT(counter(b, "io_uring_lent_recv_fallbacks_total"), 0u);
  });
  ::unsetenv("REACTOR_URING_PROVIDED_BUFFERS");
  ::unsetenv("REACTOR_URING_LENT_RECV");
}

// ---- send_lent: sends from the lent ring buffer itself ----

// Each echo goes out from the ring buffer it came in (no copy), and the buffer returns to the ring
// once sent: with a ring of two buffers, 300 round trips and the close after a last send find a
// buffer every time (a buffer kept would dry the ring within two, and the receives would fall
// back to a buffer of their own, whose bytes send_lent copies).
TEST(UringLentSend, EchoesFromTheRingBufferAndGivesItBack) {
  REQUIRE_URING();
  ::setenv("REACTOR_URING_LENT_RECV", "1", 1);         // on under TSan too
  ::setenv("REACTOR_URING_PROVIDED_BUFFERS", "2", 1);  // a ring of two buffers
  run_uring([] {
    Backend& b = Reactor::current()->backend();
    if (!b.lends_buffers()) GTEST_SKIP() << "no multishot receive on this kernel";
    const uint64_t lent_sends = counter(b, "io_uring_lent_sends_total");
    const uint64_t fallbacks = counter(b, "io_uring_lent_recv_fallbacks_total");
    constexpr int kRounds = 300;
    for (int pass = 0; pass < 2; ++pass) {  // the second on a new pair, after a close
      test::Pair p = test::connected_pair();
      for (int i = 0; i < kRounds; ++i) {
        const std::vector<std::byte> msg = pattern(64, static_cast<uint32_t>(pass * kRounds + i));
        ASSERT_TRUE(p.server.write_all(msg, deadline_after(5s)).ok());
        std::vector<std::byte> got;
        while (got.size() < msg.size()) {
          auto r = b.recv_lent(p.client.fd(), deadline_after(5s));
          ASSERT_TRUE(r.ok()) << r.status();
          ASSERT_FALSE(r->empty());
          got.insert(got.end(), r->begin(), r->end());
          auto n = b.send_lent(p.client.fd(), *r, deadline_after(5s));
          ASSERT_TRUE(n.ok()) << n.status();
          ASSERT_EQ(*n, r->size());
        }
        std::vector<std::byte> back(msg.size());
        ASSERT_TRUE(p.server.read_exact(back, deadline_after(5s)).ok());
        ASSERT_TRUE(back == msg) << "round " << i;
      }
      // The last send may still be in the ring: close sends it first, and the buffer comes back.
      const std::vector<std::byte> last = pattern(64, 7);
      ASSERT_TRUE(p.server.write_all(last, deadline_after(5s)).ok());
      auto r = b.recv_lent(p.client.fd(), deadline_after(5s));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(b.send_lent(p.client.fd(), *r, deadline_after(5s)).ok());
      ASSERT_TRUE(p.client.close().ok());
      std::vector<std::byte> back(r->size());
      ASSERT_TRUE(p.server.read_exact(back, deadline_after(5s)).ok());
    }
    EXPECT_GE(counter(b, "io_uring_lent_sends_total") - lent_sends, 2u * (kRounds + 1));
    EXPECT_EQ(counter(b, "io_uring_lent_recv_fallbacks_total"), fallbacks) << "a buffer was kept";
  });
  ::unsetenv("REACTOR_URING_PROVIDED_BUFFERS");
  ::unsetenv("REACTOR_URING_LENT_RECV");
}

// Behind bytes already queued on the fd the lent bytes are copied into the queue, after them: the
// peer gets both in order.
TEST(UringLentSend, BehindQueuedBytesItCopiesInOrder) {
  REQUIRE_URING();
  ::setenv("REACTOR_URING_LENT_RECV", "1", 1);  // on under TSan too
  run_uring([] {
    Backend& b = Reactor::current()->backend();
    if (!b.lends_buffers()) GTEST_SKIP() << "no multishot receive on this kernel";
    test::Pair p = test::connected_pair();
    const std::vector<std::byte> in = pattern(64, 3);
    ASSERT_TRUE(p.server.write_all(in, deadline_after(5s)).ok());
    std::vector<std::byte> got;
    std::span<const std::byte> lent;
    while (got.size() < in.size()) {
      auto r = b.recv_lent(p.client.fd(), deadline_after(5s));
      ASSERT_TRUE(r.ok()) << r.status();
      got.insert(got.end(), r->begin(), r->end());
      lent = *r;
    }
    const std::vector<std::byte> first = pattern(100, 4);
    ASSERT_TRUE(b.send(p.client.fd(), first, deadline_after(5s)).ok());  // queued, not yet sent
    const uint64_t lent_sends = counter(b, "io_uring_lent_sends_total");
    auto n = b.send_lent(p.client.fd(), lent, deadline_after(5s));
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, lent.size());
    EXPECT_EQ(counter(b, "io_uring_lent_sends_total"), lent_sends) << "sent past queued bytes";
    std::vector<std::byte> want = first;
    want.insert(want.end(), lent.begin(), lent.end());
    std::vector<std::byte> back(want.size());
    ASSERT_TRUE(p.server.read_exact(back, deadline_after(5s)).ok());
    EXPECT_TRUE(back == want) << "out of order";
  });
  ::unsetenv("REACTOR_URING_LENT_RECV");
}

// ---- batched waits: min_wait_usec (Options::min_wait_us) ----

// A waiting poll asks for as many completions as the previous poll reaped. After a poll that
// reaped 8, eight arrivals 1 ms apart, all within the min wait, are reaped by one enter: without
// batched waits each arrival ends a wait of its own (9 enters).
TEST(UringMinWait, OneEnterGathersAsManyCompletionsAsTheLastPollReaped) {
  REQUIRE_URING();
  if (kernel_version() < 612) GTEST_SKIP() << "min_wait_usec needs Linux 6.12";
  ::setenv("REACTOR_URING_MIN_WAIT_US", "100000", 1);  // 100 ms
  run_uring([] {
    auto& b = static_cast<UringBackend&>(Reactor::current()->backend());
    ASSERT_EQ(b.min_wait_us(), 100000u) << b.describe();
    EXPECT_THAT(b.describe(), ::testing::HasSubstr("batched waits (as many completions as the "
                                                   "last poll, up to 32, or 100000 us)"));
    EXPECT_EQ(counter(b, "io_uring_feature_min_wait"), 1u);
    constexpr int kPairs = 8;
    std::vector<test::Pair> pairs;
    for (int i = 0; i < kPairs; ++i) pairs.push_back(test::connected_pair());
    auto read_all = [&] {
      std::vector<Task<void>> readers;
      for (int i = 0; i < kPairs; ++i) {
        auto t = spawn("reader", [&, i] {
          std::byte one[1];
          auto n = pairs[static_cast<size_t>(i)].client.read(one, deadline_after(10s));
          ASSERT_TRUE(n.ok()) << n.status();
          EXPECT_EQ(*n, 1u);
        });
        EXPECT_TRUE(t.ok()) << t.status();
        if (t.ok()) readers.push_back(*std::move(t));
      }
      return readers;
    };
    // Round one: every byte is there before the readers run, so one poll reaps all eight.
    for (int i = 0; i < kPairs; ++i) {
      ASSERT_EQ(::send(pairs[static_cast<size_t>(i)].server.fd(), "x", 1, 0), 1);
    }
    std::vector<Task<void>> first = read_all();
    join_all(first);
    // Round two: the bytes arrive one by one.
    std::vector<Task<void>> readers = read_all();
    yield();  // every receive is prepared
    const uint64_t enters = counter(b, "io_uring_enter_calls_total");
    const uint64_t batched = counter(b, "io_uring_batched_waits_total");
    const uint64_t short_waits = counter(b, "io_uring_batched_waits_short_total");
    std::thread writer([&] {
      for (int i = 0; i < kPairs; ++i) {
        std::this_thread::sleep_for(1ms);  // 8 ms in all, well inside the 100 ms
        EXPECT_EQ(::send(pairs[static_cast<size_t>(i)].server.fd(), "x", 1, 0), 1);
      }
    });
    join_all(readers);
    writer.join();
    // The enter that submits the receives and waits, perhaps one more if a timer of the loop
    // ended it early, and the one after the readers ran.
    EXPECT_LE(counter(b, "io_uring_enter_calls_total") - enters, 3u);
    // The counters say so: a batched wait (asking for eight), short at most once (that timer).
    EXPECT_GE(counter(b, "io_uring_batched_waits_total") - batched, 1u);
    EXPECT_LE(counter(b, "io_uring_batched_waits_short_total") - short_waits, 1u);
  });
  ::unsetenv("REACTOR_URING_MIN_WAIT_US");
}

// After a poll that reaped one completion the wait is a plain one: a lone connection's byte
// wakes its reader at once, not after the 100 ms min wait.
TEST(UringMinWait, ALoneCompletionIsNotHeldForTheMinWait) {
  REQUIRE_URING();
  if (kernel_version() < 612) GTEST_SKIP() << "min_wait_usec needs Linux 6.12";
  ::setenv("REACTOR_URING_MIN_WAIT_US", "100000", 1);  // 100 ms
  run_uring([] {
    auto& b = static_cast<UringBackend&>(Reactor::current()->backend());
    ASSERT_EQ(b.min_wait_us(), 100000u) << b.describe();
    test::Pair p = test::connected_pair();
    // Round 0 follows the polls of the set-up, which may have reaped several completions (and
    // then may wait the min wait, as designed); each later one follows a poll that reaped one.
    uint64_t batched = 0;
    for (int round = 0; round < 5; ++round) {
      if (round == 1) batched = counter(b, "io_uring_batched_waits_total");
      std::thread writer([&] {
        std::this_thread::sleep_for(2ms);
        EXPECT_EQ(::send(p.server.fd(), "x", 1, 0), 1);
      });
      const auto start = std::chrono::steady_clock::now();
      std::byte one[1];
      auto n = p.client.read(one, deadline_after(10s));
      const auto took = std::chrono::steady_clock::now() - start;
      writer.join();
      ASSERT_TRUE(n.ok()) << n.status();
      // Held for the min wait it would take 100 ms or more.
      if (round > 0) {
        EXPECT_LT(took, 100ms) << "round " << round;
      }
    }
    EXPECT_EQ(counter(b, "io_uring_batched_waits_total"), batched) << "rounds 1-4 waited plainly";
  });
  ::unsetenv("REACTOR_URING_MIN_WAIT_US");
}

// ---- async_send: sends that do not wait (backends/uring_send.cc) ----

std::vector<std::byte> numbered_bytes(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 7 + i / 251) & 0xff);
  return v;
}

// A fiber's sends return without a system call or a suspension, and those of one loop iteration
// leave in one SEND (fewer than Reactor::kIoBudget sends, so the fiber keeps its slice).
TEST(UringAsyncSend, SendsReturnAtOnceAndCoalesce) {
  REQUIRE_URING();
  run_uring([] {
    test::Pair p = test::connected_pair();
    const Backend& b = Reactor::current()->backend();
    ASSERT_EQ(counter(b, "io_uring_feature_async_send"), 1u);
    constexpr size_t kSends = Reactor::kIoBudget - 2;
    const std::vector<std::byte> data = numbered_bytes(kSends * 64);
    const uint64_t enters = counter(b, "io_uring_enter_calls_total");
    const uint64_t send_sqes = counter(b, "io_uring_send_sqes_total");
    for (size_t i = 0; i < kSends; ++i) {
      auto n = Reactor::current()->backend().send(p.client.fd(),
                                                  std::span(data).subspan(i * 64, 64), kNoDeadline);
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_EQ(*n, 64u);
    }
    EXPECT_EQ(counter(b, "io_uring_enter_calls_total"), enters) << "a send entered the kernel";
    EXPECT_EQ(counter(b, "io_uring_send_sqes_total"), send_sqes) << "submitted before the poll";
    std::vector<std::byte> got(data.size());
    ASSERT_TRUE(p.server.read_exact(got, deadline_after(5s)).ok());
    EXPECT_TRUE(got == data) << "bytes reordered or changed";
    EXPECT_EQ(counter(b, "io_uring_send_sqes_total"), send_sqes + 1) << "not coalesced";
    EXPECT_EQ(counter(b, "io_uring_direct_sends_total"), 0u);
  });
}

// A peer that does not read: the sender's queue stops at its bound (then the send waits until
// its deadline), and every byte the sends accepted arrives in order once the peer reads.
TEST(UringAsyncSend, SlowReaderBoundsQueuedBytes) {
  REQUIRE_URING();
  run_uring([] {
    test::Pair p = test::connected_pair();
    const int size = 64 * 1024;
    ::setsockopt(p.client.fd(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ::setsockopt(p.server.fd(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    const std::vector<std::byte> data = numbered_bytes(8 << 20);
    size_t sent = 0;
    for (;;) {
      ASSERT_LT(sent, data.size()) << "the queue never filled up";
      auto n = Reactor::current()->backend().send(p.client.fd(), std::span(data).subspan(sent),
                                                  deadline_after(50ms));
      if (!n.ok()) {
        ASSERT_TRUE(absl::IsDeadlineExceeded(n.status())) << n.status();
        break;
      }
      sent += *n;
    }
    const Backend& b = Reactor::current()->backend();
    EXPECT_GT(counter(b, "io_uring_send_queue_waits_total"), 0u);
    // The kernel's two buffers (twice what was set, as the kernel doubles it, and the receive side
    // may take somewhat more than its nominal size) plus the queue's bound of 256 KiB.
    EXPECT_LE(sent, 8u * size + UringBackend::Options{}.send_queue_bytes);
    std::vector<std::byte> got(sent);
    ASSERT_TRUE(p.server.read_exact(got, deadline_after(10s)).ok());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin())) << "bytes lost or reordered";
  });
}

// close() of a connection whose writer is done sends the queued bytes first (the peer gets them
// all, then the end of stream), and shutdown_write() waits for them too.
TEST(UringAsyncSend, CloseAndShutdownSendQueuedBytesFirst) {
  REQUIRE_URING();
  for (const bool use_shutdown : {false, true}) {
    run_uring([use_shutdown] {
      test::Pair p = test::connected_pair();
      const int size = 64 * 1024;
      ::setsockopt(p.client.fd(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
      ::setsockopt(p.server.fd(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
      const std::vector<std::byte> data = numbered_bytes(2 << 20);
      std::vector<std::byte> got;
      auto reader = spawn("reader", [&] {
        std::vector<std::byte> buf(16 * 1024);
        for (;;) {
          ASSERT_TRUE(sleep_for(1ms).ok());  // slower than the writer
          auto n = p.server.read(buf, deadline_after(10s));
          ASSERT_TRUE(n.ok()) << n.status();
          if (*n == 0) return;
          got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
        }
      });
      ASSERT_TRUE(reader.ok());
      ASSERT_TRUE(p.client.write_all(data, deadline_after(10s)).ok());
      const Backend& b = Reactor::current()->backend();
      EXPECT_GT(counter(b, "io_uring_queued_sends_total"), 0u);
      if (use_shutdown) {
        ASSERT_TRUE(p.client.shutdown_write().ok());
      } else {
        ASSERT_TRUE(p.client.close().ok());
      }
      reader->join();
      EXPECT_EQ(got.size(), data.size()) << (use_shutdown ? "shutdown_write" : "close");
      EXPECT_TRUE(got == data) << "bytes lost or reordered";
    });
  }
}

// A queued send that fails (the peer reset the connection) reports its error on the next send and,
// when none comes, at close.
TEST(UringAsyncSend, ErrorSurfacesOnNextSendAndAtClose) {
  REQUIRE_URING();
  for (const bool at_close : {false, true}) {
    run_uring([at_close] {
      test::Pair p = test::connected_pair();
      const linger reset{1, 0};  // close sends RST
      ::setsockopt(p.server.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ASSERT_TRUE(p.server.close().ok());
      std::byte one[1];
      (void)p.client.read(one, deadline_after(5s));  // ECONNRESET: the RST is there
      const std::vector<std::byte> data = numbered_bytes(1000);
      auto n = Reactor::current()->backend().send(p.client.fd(), data, kNoDeadline);
      ASSERT_TRUE(n.ok()) << "queued, so no error yet: " << n.status();
      ASSERT_TRUE(sleep_for(5ms).ok());  // a poll submits it; its CQE carries the error
      const absl::Status s =
          at_close ? p.client.close()
                   : Reactor::current()->backend().send(p.client.fd(), data, kNoDeadline).status();
      const int err = status_errno(s);
      EXPECT_TRUE(err == EPIPE || err == ECONNRESET) << s;
    });
  }
}

// ---- POLL_FIRST from IORING_CQE_F_SOCK_NONEMPTY ----

// Three full receives of 100 bytes out of 300 waiting: with the kernel's hint the third one is
// known to have emptied the socket, so the next receive arms its poll first; the short-receive
// guess (hint off) sees only full receives and never asks for it.
uint64_t poll_first_after_full_reads() {
  uint64_t poll_firsts = 0;
  run_uring([&] {
    test::Pair p = test::connected_pair();
    const Backend& b = Reactor::current()->backend();
    ASSERT_TRUE(p.client.write_all(std::string(300, 'x'), deadline_after(5s)).ok());
    ASSERT_TRUE(b.name() == "io_uring");
    ASSERT_TRUE(Reactor::current()
                    ->backend()
                    .wait(p.server.fd(), Interest::kRead, deadline_after(5s))
                    .ok());
    ASSERT_TRUE(sleep_for(5ms).ok());  // all 300 bytes are there
    std::byte buf[100];
    const uint64_t before = counter(b, "io_uring_poll_first_recvs_total");
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.server.read_exact(buf, deadline_after(5s)).ok());
    EXPECT_EQ(counter(b, "io_uring_poll_first_recvs_total"), before) << "socket had data";
    auto later = spawn("writer", [&] {
      ASSERT_TRUE(sleep_for(5ms).ok());
      ASSERT_TRUE(p.client.write_all(std::string(100, 'y'), deadline_after(5s)).ok());
    });
    ASSERT_TRUE(later.ok());
    ASSERT_TRUE(p.server.read_exact(buf, deadline_after(5s)).ok());
    later->join();
    poll_firsts = counter(b, "io_uring_poll_first_recvs_total") - before;
  });
  return poll_firsts;
}

TEST(UringSockNonempty, HintTellsAFullReceiveThatEmptiedTheSocket) {
  REQUIRE_URING();
  if (kernel_version() < 519) GTEST_SKIP() << "IORING_CQE_F_SOCK_NONEMPTY needs Linux 5.19";
  EXPECT_EQ(poll_first_after_full_reads(), 1u);
  ASSERT_EQ(::setenv("REACTOR_URING_SOCK_NONEMPTY", "0", 1), 0);
  const uint64_t without = poll_first_after_full_reads();
  ::unsetenv("REACTOR_URING_SOCK_NONEMPTY");
  EXPECT_EQ(without, 0u) << "the short-receive guess asked for POLL_FIRST after full receives";
}

// ---- wakeups by ring message (Options::msg_ring) ----

// A ring on a thread of its own (a ring belongs to the thread that created it). With `wait`, it
// then waits in one poll of up to 10 s, as a loop with nothing to do does; waited_ms() says how
// long that took. The ring is destroyed, on its thread, by destroy() or the destructor.
class RingThread {
 public:
  explicit RingThread(bool wait, UringBackend::Options options = {})
      : thread_([this, wait, options] {
          auto b = UringBackend::create(options);
          if (b.ok()) {
            ring_ = *std::move(b);
            ring_->poll(Duration::zero());  // submits the eventfd read
          }
          ready_.count_down();
          if (ring_ != nullptr && wait) {
            const Deadline start = Clock::now();
            ring_->poll(10s);
            waited_ms_ = test::ms_since(start);
          }
          polled_.count_down();
          release_.wait();
          ring_.reset();
        }) {
    ready_.wait();
  }
  ~RingThread() { destroy(); }
  UringBackend* ring() { return ring_.get(); }
  int64_t waited_ms() {
    polled_.wait();
    return waited_ms_;
  }
  void destroy() {
    if (!thread_.joinable()) return;
    release_.count_down();
    thread_.join();
  }

 private:
  std::unique_ptr<UringBackend> ring_;
  int64_t waited_ms_ = -1;
  std::latch ready_{1}, polled_{1}, release_{1};
  std::thread thread_;
};

bool msg_ring_expected() {
  return kernel_version() >= 518;  // IORING_OP_MSG_RING
}

// A thread running an io_uring loop wakes another ring with a message through its own ring,
// submitted at once: no eventfd write, and the woken ring's CQE clears its pending wakeup.
TEST(UringWakeupMessage, WakesAnotherRingAtOnce) {
  REQUIRE_URING();
  if (!msg_ring_expected()) GTEST_SKIP() << "IORING_OP_MSG_RING came with Linux 5.18";
  RingThread target(/*wait=*/true);
  ASSERT_NE(target.ring(), nullptr);
  std::thread([&] {
    auto sender = UringBackend::create();
    ASSERT_TRUE(sender.ok());
    ASSERT_TRUE((*sender)->msg_ring());
    EXPECT_THAT((*sender)->describe(), ::testing::HasSubstr("MSG_RING"));
    EXPECT_EQ(counter(**sender, "io_uring_feature_msg_ring"), 1u);
    (*sender)->poll(Duration::zero());  // the loop on this thread: it sends wakeups from now on
    const uint64_t enters = counter(**sender, "io_uring_enter_calls_total");
    target.ring()->wakeup();  // no poll of the sender's after it
    EXPECT_EQ(counter(**sender, "io_uring_wakeup_messages_total"), 1u);
    EXPECT_EQ(counter(**sender, "io_uring_enter_calls_total"), enters + 1);  // its submission
    EXPECT_EQ(counter(*target.ring(), "wakeups_total"), 1u);
    EXPECT_LT(target.waited_ms(), 5000) << "the message did not end the target's poll";
    EXPECT_EQ(counter(**sender, "io_uring_wakeup_message_errors_total"), 0u);
  }).join();
  // The message's CQE cleared the pending flag: the next wakeup, from a thread without a ring
  // (this one), writes the eventfd.
  target.ring()->wakeup();
  EXPECT_EQ(counter(*target.ring(), "wakeups_total"), 2u);
}

// A deferred wakeup (call_on's request and reply) is a message left in the sender's ring: no
// system call of its own, submitted with the sender's next poll.
TEST(UringWakeupMessage, ADeferredWakeupGoesWithTheSendersNextPoll) {
  REQUIRE_URING();
  if (!msg_ring_expected()) GTEST_SKIP() << "IORING_OP_MSG_RING came with Linux 5.18";
  RingThread target(/*wait=*/true);
  ASSERT_NE(target.ring(), nullptr);
  std::thread([&] {
    auto sender = UringBackend::create();
    ASSERT_TRUE(sender.ok());
    (*sender)->poll(Duration::zero());
    const uint64_t enters = counter(**sender, "io_uring_enter_calls_total");
    target.ring()->wakeup_deferred();
    EXPECT_EQ(counter(**sender, "io_uring_wakeup_messages_total"), 1u);
    EXPECT_EQ(counter(**sender, "io_uring_enter_calls_total"), enters);
    (*sender)->poll(Duration::zero());  // submits it
    EXPECT_EQ(counter(**sender, "io_uring_enter_calls_total"), enters + 1);
    EXPECT_LT(target.waited_ms(), 5000) << "the message did not end the target's poll";
  }).join();
}

// A deferred message left when the sender's run ends goes out then (end_run), though the sender
// never polls again.
TEST(UringWakeupMessage, EndRunSubmitsADeferredWakeup) {
  REQUIRE_URING();
  if (!msg_ring_expected()) GTEST_SKIP() << "IORING_OP_MSG_RING came with Linux 5.18";
  RingThread target(/*wait=*/true);
  ASSERT_NE(target.ring(), nullptr);
  std::thread([&] {
    auto sender = UringBackend::create();
    ASSERT_TRUE(sender.ok());
    (*sender)->poll(Duration::zero());
    target.ring()->wakeup_deferred();
    (*sender)->end_run();
    EXPECT_LT(target.waited_ms(), 5000) << "the deferred message was not submitted";
  }).join();
}

// call_on between two io_uring loops: each call's request and reply wake the other loop by
// deferred message, so the caller makes one io_uring_enter per call (its wait, which submits the
// request), not two.
TEST(UringWakeupMessage, CallOnBetweenLoopsMakesOneEnterPerCall) {
  REQUIRE_URING();
  if (!msg_ring_expected()) GTEST_SKIP() << "IORING_OP_MSG_RING came with Linux 5.18";
  Reactor* other = nullptr;
  std::latch created(1), stopped(1);
  std::thread t([&] {
    Reactor::Options options;
    options.backend = "io_uring";
    auto r = Reactor::create(options);
    other = r.ok() ? r->get() : nullptr;
    created.count_down();
    if (!r.ok()) return;
    (*r)->run_until_stopped();
    stopped.wait();  // until stop() has returned: it still writes the wakeup after the flag
  });
  created.wait();
  ASSERT_NE(other, nullptr);
  constexpr int kCalls = 1000;
  run_uring([&] {
    const Backend& b = Reactor::current()->backend();
    ASSERT_TRUE(reactor::sleep_for(1ms).ok());  // a poll: this thread's loop sends messages
    const uint64_t enters = counter(b, "io_uring_enter_calls_total");
    const uint64_t messages = counter(b, "io_uring_wakeup_messages_total");
    int sum = 0;
    for (int i = 0; i < kCalls; ++i) {
      absl::StatusOr<int> v = call_on(
          *other, [i] { return i; }, deadline_after(5s));
      ASSERT_TRUE(v.ok()) << v.status();
      sum += *v == i ? 1 : 0;
    }
    EXPECT_EQ(sum, kCalls);
    const uint64_t used = counter(b, "io_uring_enter_calls_total") - enters;
    std::printf(
        "%d calls: %llu enters, %llu messages sent\n", kCalls,
        static_cast<unsigned long long>(used),
        static_cast<unsigned long long>(counter(b, "io_uring_wakeup_messages_total") - messages));
    EXPECT_LT(used, kCalls * 3 / 2);
    EXPECT_GT(counter(b, "io_uring_wakeup_messages_total"), messages);
  });
  other->stop();
  stopped.count_down();
  t.join();
}

// Off, every wakeup writes the eventfd, from any thread.
TEST(UringWakeupMessage, CanBeTurnedOff) {
  REQUIRE_URING();
  RingThread target(/*wait=*/true);
  ASSERT_NE(target.ring(), nullptr);
  std::thread([&] {
    UringBackend::Options options;
    options.msg_ring = false;
    auto sender = UringBackend::create(options);
    ASSERT_TRUE(sender.ok());
    EXPECT_FALSE((*sender)->msg_ring());
    EXPECT_THAT((*sender)->describe(), ::testing::Not(::testing::HasSubstr("MSG_RING")));
    EXPECT_EQ(counter(**sender, "io_uring_feature_msg_ring"), 0u);
    (*sender)->poll(Duration::zero());
    target.ring()->wakeup();
    EXPECT_EQ(counter(**sender, "io_uring_wakeup_messages_total"), 0u);
    EXPECT_LT(target.waited_ms(), 5000) << "the eventfd did not end the target's poll";
  }).join();
}

// A fiber that posts to another loop and then blocks its thread until that loop has reacted (as
// a shutdown's join does) is answered: the message does not wait for this loop's next poll.
TEST(UringWakeupMessage, APostFollowedByABlockingWaitIsDelivered) {
  REQUIRE_URING();
  Reactor* other = nullptr;
  std::latch created(1), done(1);
  std::atomic<bool> reacted{false};
  std::thread t([&] {
    Reactor::Options options;
    options.backend = "io_uring";
    auto r = Reactor::create(options);
    other = r.ok() ? r->get() : nullptr;
    created.count_down();
    if (!r.ok()) return;
    (*r)->run_until_stopped();
    done.wait();
  });
  created.wait();
  ASSERT_NE(other, nullptr);
  run_uring([&] {
    // This loop polls (so its thread wakes others by message from now on), and the other loop is
    // asleep in its poll by then, mostly.
    ASSERT_TRUE(reactor::sleep_for(20ms).ok());
    other->post([&] {
      reacted = true;
      Reactor::current()->stop();
    });
    // Blocks this loop's thread, polling nothing, for up to 5 s.
    const Deadline start = Clock::now();
    while (!reacted.load() && test::ms_since(start) < 5000) std::this_thread::sleep_for(1ms);
    EXPECT_TRUE(reacted.load()) << "the post's wakeup waited for this loop's next poll";
    if (msg_ring_expected()) {
      EXPECT_EQ(counter(Reactor::current()->backend(), "io_uring_wakeup_messages_total"), 1u);
    }
  });
  if (!reacted.load()) other->stop();
  done.count_down();
  t.join();
}

struct PostPingPong {
  uint64_t rounds = 0, messages = 0, errors = 0, wakeups = 0;
};

// Two io_uring reactors on two threads pass a post back and forth `rounds` times, each loop
// asleep in between, so each post must wake the other loop.
PostPingPong post_ping_pong(int rounds) {
  PostPingPong out;
  Reactor* reactors[2] = {nullptr, nullptr};
  std::latch created(2), ran(2);
  std::atomic<int> count{0};
  std::function<void(int, int)> bounce = [&](int side, int n) {
    count.fetch_add(1, std::memory_order_relaxed);
    if (n == rounds) {  // the last round stops both loops; nothing posts after it
      reactors[1 - side]->stop();
      reactors[side]->stop();
      return;
    }
    reactors[1 - side]->post([&bounce, side, n] { bounce(1 - side, n + 1); });
  };
  std::vector<Counter> totals[2];
  auto loop = [&](int side) {
    Reactor::Options options;
    options.backend = "io_uring";
    auto r = Reactor::create(options);
    reactors[side] = r.ok() ? r->get() : nullptr;
    created.count_down();
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      ran.count_down();
      return;
    }
    created.wait();
    if (reactors[1 - side] == nullptr) {
      ran.count_down();
      return;
    }
    if (side == 0) bounce(0, 1);
    (*r)->run_until_stopped();
    // Each run's last wakeup message (the stop of the other loop) is submitted when it ends; the
    // other loop outlives it.
    ran.arrive_and_wait();
    (*r)->backend().counters(totals[side]);
  };
  std::thread a(loop, 0), b(loop, 1);
  a.join();
  b.join();
  out.rounds = static_cast<uint64_t>(count.load());
  for (const std::vector<Counter>& t : totals) {
    for (const Counter& c : t) {
      if (c.name == "io_uring_wakeup_messages_total") out.messages += c.value;
      if (c.name == "io_uring_wakeup_message_errors_total") out.errors += c.value;
      if (c.name == "wakeups_total") out.wakeups += c.value;
    }
  }
  return out;
}

TEST(UringWakeupMessage, LoopsWakeEachOtherByMessage) {
  REQUIRE_URING();
  if (!msg_ring_expected()) GTEST_SKIP() << "IORING_OP_MSG_RING came with Linux 5.18";
  constexpr int kRounds = 2000;
  const PostPingPong p = post_ping_pong(kRounds);
  EXPECT_EQ(p.rounds, static_cast<uint64_t>(kRounds));
  EXPECT_GT(p.messages, 0u);
  EXPECT_LE(p.messages, p.wakeups);
  EXPECT_EQ(p.errors, 0u);
  std::printf("%llu wakeups, %llu by message\n", static_cast<unsigned long long>(p.wakeups),
              static_cast<unsigned long long>(p.messages));
}

TEST(UringWakeupMessage, LoopsWakeEachOtherByEventfdWhenTurnedOff) {
  REQUIRE_URING();
  ::setenv("REACTOR_URING_MSG_RING", "0", 1);
  constexpr int kRounds = 2000;
  const PostPingPong p = post_ping_pong(kRounds);
  ::unsetenv("REACTOR_URING_MSG_RING");
  EXPECT_EQ(p.rounds, static_cast<uint64_t>(kRounds));
  EXPECT_GT(p.wakeups, 0u);
  EXPECT_EQ(p.messages, 0u);
}

}  // namespace
}  // namespace reactor
