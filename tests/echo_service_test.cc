// The echo service's real handler in-process, on every available backend. On a readiness backend
// every connection of a shard reads into one shared buffer: a reply that cannot go out at once
// must not be overwritten by another connection's read while it waits.
#include "services/echo.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "tests/service_test_util.h"
#include "tests/test_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
using reactor::test::RawClient;
using reactor::test::TestServer;

class EchoServiceTest : public ::testing::TestWithParam<std::string> {
 protected:
  template <class F>
  void run(F&& fn) {
    reactor::test::run_fiber(std::forward<F>(fn), GetParam());
  }
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

TEST_P(EchoServiceTest, BlockedReplyKeepsItsBytesWhileOthersRead) {
  run([] {
    TestServer server([](Connection& c) { serve_echo(c, EchoOptions{}); });
    // A sends far more than the sockets between it and the server buffer, and reads nothing yet:
    // the server's reply to A blocks with bytes unsent while B's requests go through the same
    // shard. Smaller buffers than the defaults (but several loopback segments, so that the
    // transfer stays fast) make sure of it.
    RawClient a(server.address());
    const int rcvbuf = 256 * 1024, sndbuf = 64 * 1024;
    ASSERT_EQ(::setsockopt(a.stream().fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    for (int i = 0; i < 1000 && server.live().empty(); ++i) (void)reactor::sleep_for(1ms);
    ASSERT_EQ(server.live().size(), 1u);
    const int server_fd = server.live()[0]->stream().fd();
    ASSERT_EQ(::setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    const std::string big = pattern(16 << 20);
    bool written = false;
    auto writer = reactor::spawn("a-writer", [&] {
      EXPECT_TRUE(a.stream().write_all(big, reactor::deadline_after(30s)).ok());
      written = true;
    });
    ASSERT_TRUE(writer.ok());
    (void)reactor::sleep_for(50ms);  // A's echo fills the buffers and blocks

    RawClient b(server.address());
    for (int i = 0; i < 200; ++i) {
      const std::string msg(static_cast<size_t>(1 + i * 97 % 16000),
                            static_cast<char>('A' + i % 26));
      ASSERT_TRUE(b.send(msg));
      ASSERT_EQ(b.take(msg.size()), msg) << "request " << i;
    }
    EXPECT_FALSE(written) << "A's reply never blocked: the test did not exercise the wait";

    EXPECT_TRUE(a.fill(big.size(), 30s));
    writer->join();
    ASSERT_EQ(a.buffer().size(), big.size());
    EXPECT_TRUE(a.buffer() == big)
        << "A's echo differs at byte "
        << std::mismatch(big.begin(), big.end(), a.buffer().begin()).first - big.begin();
    a.close();
    b.close();
    server.wait_closed(2);
    EXPECT_EQ(server.stats().bytes_in.get(), a.sent() + big.size() + b.sent());
    EXPECT_EQ(server.stats().bytes_out.get(), server.stats().bytes_in.get());
  });
}

// Connections whose data is always ready spend their I/O budget and yield to each other; a yield
// must never fall between a read into the shared buffer and the reply taking its bytes (the
// budget yields at the start of an I/O call, detail::yield_if_io_budget_spent). Several streams
// with different bytes, on one shard, each writer and reader a fiber of its own.
TEST_P(EchoServiceTest, StreamsThatSpendTheirBudgetKeepTheirOwnBytes) {
  run([] {
    TestServer server([](Connection& c) { serve_echo(c, EchoOptions{}); });
    constexpr int kStreams = 6;
    constexpr size_t kBytes = 8 << 20;
    std::vector<std::unique_ptr<RawClient>> clients;
    std::vector<std::string> blobs;
    std::vector<reactor::Task<void>> writers;  // and readers
    for (int i = 0; i < kStreams; ++i) {
      clients.push_back(std::make_unique<RawClient>(server.address()));
      std::string blob = pattern(kBytes);
      for (size_t j = 0; j < blob.size(); j += 101) blob[j] = static_cast<char>('0' + i);
      blobs.push_back(std::move(blob));
    }
    for (int i = 0; i < kStreams; ++i) {
      auto w = reactor::spawn("writer", [&, i] {
        EXPECT_TRUE(clients[i]->stream().write_all(blobs[i], reactor::deadline_after(60s)).ok());
      });
      ASSERT_TRUE(w.ok());
      writers.push_back(*std::move(w));
    }
    for (int i = 0; i < kStreams; ++i) {
      auto r =
          reactor::spawn("reader", [&, i] { EXPECT_TRUE(clients[i]->fill(kBytes, 60s)) << i; });
      ASSERT_TRUE(r.ok());
      writers.push_back(*std::move(r));
    }
    for (auto& w : writers) w.join();
    for (int i = 0; i < kStreams; ++i) {
      const std::string& got = clients[i]->buffer();
      ASSERT_EQ(got.size(), kBytes);
      EXPECT_TRUE(got == blobs[i])
          << "stream " << i << " differs at byte "
          << std::mismatch(blobs[i].begin(), blobs[i].end(), got.begin()).first - blobs[i].begin();
    }
    // The shared buffer, and with it the hazard, is the readiness backends' only.
    if (!reactor::Reactor::current()->backend().recv_holds_buffer()) {
      EXPECT_GT(reactor::Reactor::current()->stats().io_budget_yields.get(), 0u)
          << "no fiber spent its budget: the test did not exercise the yield";
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, EchoServiceTest,
                         ::testing::ValuesIn(reactor::test::available_backends()),
                         reactor::test::backend_test_name);

}  // namespace
}  // namespace reactord
