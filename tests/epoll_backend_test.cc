// What only the epoll backend does: one epoll_ctl per fd for its whole life (an fd epoll cannot
// poll is remembered, not asked about again), the read it skips after a short one, its counters
// and its loop-thread check. Backend-neutral behaviour is in conformance_test.cc and net_test.cc,
// which run on epoll too.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "backends/epoll_backend.h"
#include "reactor/reactor.h"
#include "reactor/thread_check.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;

uint64_t counter(const Backend& b, std::string_view name) {
  return test::backend_counter(b, name);
}

Backend& backend() {
  return Reactor::current()->backend();
}

void run_on_epoll(const std::function<void()>& fn) {
  test::run_fiber(fn, "epoll");
}

TEST(EpollBackend, CountersArePrometheusTotals) {
  absl::StatusOr<std::unique_ptr<EpollBackend>> b = EpollBackend::create();
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<Counter> out;
  (*b)->counters(out);
  ASSERT_FALSE(out.empty());
  for (const Counter& c : out) {
    EXPECT_TRUE(c.name.size() > 6 && c.name.substr(c.name.size() - 6) == "_total") << c.name;
  }
}

// A socket is added at its first wait and deleted at close: no epoll_ctl for the waits between.
TEST(EpollBackend, RegistersEachFdOnce) {
  run_on_epoll([] {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    const uint64_t before = counter(backend(), "epoll_ctl_calls_total");
    for (int i = 0; i < 5; ++i) {
      const char c = 'x';
      ASSERT_EQ(::send(sv[1], &c, 1, MSG_NOSIGNAL), 1);  // a new edge for each wait
      EXPECT_TRUE(backend().wait(sv[0], Interest::kRead, deadline_after(1s)).ok());
      char got;
      ASSERT_EQ(::recv(sv[0], &got, 1, 0), 1);
    }
    EXPECT_EQ(counter(backend(), "epoll_ctl_calls_total"), before + 1) << "one EPOLL_CTL_ADD";
    EXPECT_TRUE(backend().close(sv[0]).ok());
    EXPECT_EQ(counter(backend(), "epoll_ctl_calls_total"), before + 2) << "and one EPOLL_CTL_DEL";
    EXPECT_TRUE(backend().close(sv[1]).ok());
  });
}

// A regular file and /dev/null cannot be polled (epoll_ctl fails with EPERM): every wait returns
// at once, and epoll is asked only at the first; close() has nothing to delete.
TEST(EpollBackend, RemembersAnFdItCannotPoll) {
  run_on_epoll([] {
    char path[] = "/tmp/reactor-epoll-XXXXXX";
    const int file = ::mkstemp(path);
    ASSERT_GE(file, 0);
    ::unlink(path);
    const int null = ::open("/dev/null", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(null, 0);
    for (const int fd : {file, null}) {
      const uint64_t before = counter(backend(), "epoll_ctl_calls_total");
      for (int i = 0; i < 4; ++i) {
        const Interest interest = i % 2 == 0 ? Interest::kRead : Interest::kWrite;
        const absl::Status s = backend().wait(fd, interest, deadline_after(1s));
        EXPECT_TRUE(s.ok()) << "fd " << fd << ", wait " << i << ": " << s;
      }
      EXPECT_EQ(counter(backend(), "epoll_ctl_calls_total"), before + 1)
          << "fd " << fd << ": epoll_ctl asked again after it refused the fd";
      EXPECT_TRUE(backend().close(fd).ok());
      EXPECT_EQ(counter(backend(), "epoll_ctl_calls_total"), before + 1)
          << "fd " << fd << ": close() deleted an fd that was never added";
    }
  });
}

// In a 64-byte ping-pong with 4 KiB reads every read is short, so every read after the first
// waits for its edge first instead of failing with EAGAIN.
TEST(EpollBackend, SkipsTheReadThatMustFailAfterAShortRead) {
  uint64_t skipped = 0;
  run_on_epoll([&] {
    constexpr int kRounds = 100;
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    auto server = spawn("server", [&] {
      std::byte buf[4096];
      for (int r = 0; r < kRounds; ++r) {
        absl::StatusOr<size_t> n = backend().recv(sv[1], std::span(buf), deadline_after(10s));
        ASSERT_TRUE(n.ok() && *n > 0) << n.status();
        absl::StatusOr<size_t> w =
            backend().send(sv[1], std::span<const std::byte>(buf, *n), deadline_after(10s));
        ASSERT_TRUE(w.ok() && *w == *n) << w.status();
      }
    });
    ASSERT_TRUE(server.ok());
    const std::vector<std::byte> msg(64, std::byte{0x5a});
    for (int r = 0; r < kRounds; ++r) {
      absl::StatusOr<size_t> w = backend().send(sv[0], std::span(msg), deadline_after(10s));
      ASSERT_TRUE(w.ok() && *w == msg.size()) << w.status();
      // Asks for exactly what comes back, so the client's reads are not short.
      std::vector<std::byte> back(64);
      for (size_t got = 0; got < back.size();) {
        absl::StatusOr<size_t> n =
            backend().recv(sv[0], std::span(back).subspan(got), deadline_after(10s));
        ASSERT_TRUE(n.ok() && *n > 0) << n.status();
        got += *n;
      }
      ASSERT_EQ(back, msg);
    }
    server->join();
    skipped = counter(backend(), "epoll_reads_skipped_total");
    EXPECT_TRUE(backend().close(sv[0]).ok());
    EXPECT_TRUE(backend().close(sv[1]).ok());
  });
  // Most of the server's reads after its first; an edge that came in before a read makes that one
  // try first.
  EXPECT_GE(skipped, 50u);
}

// The loop-thread methods check their caller in debug and sanitizer builds.
TEST(EpollBackendDeathTest, PollFromAnotherThreadAborts) {
  if (!kCheckThreads) GTEST_SKIP() << "release build: thread checks compiled out";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        absl::StatusOr<std::unique_ptr<EpollBackend>> b = EpollBackend::create();
        if (!b.ok()) std::abort();
        std::thread other([&] { (*b)->poll(Duration::zero()); });
        other.join();
      },
      "epoll backend used from a thread other than its loop's");
}

}  // namespace
}  // namespace reactor
