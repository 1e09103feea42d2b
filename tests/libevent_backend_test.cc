// What only the libevent backend does: its choice of event method, the eventfd wakeup, the
// timerfd poll timeout (never early, re-armed only when it must be), fd numbers reused after
// close(), and its counters. Backend-neutral behaviour is tested over every backend in net_test.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "backends/libevent_backend.h"
#include "reactor/reactor.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::ms_since;

std::unique_ptr<LibeventBackend> make_backend() {
  absl::StatusOr<std::unique_ptr<LibeventBackend>> b = LibeventBackend::create();
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *std::move(b) : nullptr;
}

uint64_t counter(const Backend& b, std::string_view name) {
  return test::backend_counter(b, name);
}

// Fiber tests need the registry to offer "libevent".
bool registry_offers_libevent() {
  const std::vector<std::string> names = test::available_backends();
  return std::find(names.begin(), names.end(), "libevent") != names.end();
}

#define REQUIRE_LIBEVENT_IN_REGISTRY() \
  if (!registry_offers_libevent()) GTEST_SKIP() << "the registry does not offer libevent"

void run_on_libevent(const std::function<void()>& fn) {
  test::run_fiber(fn, "libevent");
}

TEST(LibeventBackend, UsesAnEdgeTriggeredEpollBase) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->name(), "libevent");
  EXPECT_EQ(b->method(), "epoll");
}

TEST(LibeventBackend, CountersArePrometheusTotals) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  std::vector<Counter> out;
  b->counters(out);
  ASSERT_FALSE(out.empty());
  for (const Counter& c : out) {
    EXPECT_TRUE(c.name.size() > 6 && c.name.substr(c.name.size() - 6) == "_total") << c.name;
  }
}

TEST(LibeventBackend, WakeupFromAnotherThreadEndsABlockingPoll) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  const Deadline start = Clock::now();
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    b->wakeup();
  });
  b->poll(Duration(-1));
  const double waited = ms_since(start);
  waker.join();
  EXPECT_GE(waited, 15);
  EXPECT_LT(waited, 5000);
  EXPECT_EQ(counter(*b, "wakeups_total"), 1u);
}

TEST(LibeventBackend, WakeupBeforePollIsKeptAndCoalesced) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  b->wakeup();
  b->wakeup();  // already pending: no second eventfd write
  const Deadline start = Clock::now();
  b->poll(10s);
  EXPECT_LT(ms_since(start), 1000) << "a wakeup made before poll was lost";
  EXPECT_EQ(counter(*b, "wakeups_total"), 1u);
  // Drained: the next wakeup writes again and ends a blocking poll again.
  b->wakeup();
  b->poll(Duration(-1));
  EXPECT_EQ(counter(*b, "wakeups_total"), 2u);
}

TEST(LibeventBackend, WakeupsFromManyThreadsAllEndPolls) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  std::atomic<bool> done{false};
  std::vector<std::thread> wakers;
  for (int i = 0; i < 4; ++i) {
    wakers.emplace_back([&] {
      while (!done.load()) {
        b->wakeup();
        std::this_thread::yield();
      }
    });
  }
  for (int i = 0; i < 2000; ++i) b->poll(Duration(-1));  // each returns: a wakeup is never lost
  done.store(true);
  for (std::thread& t : wakers) t.join();
  EXPECT_GE(counter(*b, "wakeups_total"), 1u);
}

// The poll timeout is a timerfd: never early, and close to the request. libevent's own timers run
// on CLOCK_MONOTONIC_COARSE (4 ms ticks here): a 1.5 ms one took 4 ms on average.
TEST(LibeventBackend, PollTimeoutIsNeverEarlyAndNotTickLate) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  std::vector<Duration> waited;
  for (int i = 0; i < 21; ++i) {
    const Deadline start = Clock::now();
    b->poll(1500us);
    waited.push_back(Clock::now() - start);
    EXPECT_GE(waited.back(), 1500us) << "iteration " << i;
  }
  std::sort(waited.begin(), waited.end());
  EXPECT_LT(waited[waited.size() / 2], 3ms) << "median poll(1.5 ms)";
  const Deadline start = Clock::now();
  b->poll(0ns);
  EXPECT_LT(ms_since(start), 1000) << "a zero timeout blocked";
}

TEST(LibeventBackend, TimerIsReArmedOnlyWhenTheDeadlineMovesEarlier) {
  auto b = make_backend();
  ASSERT_NE(b, nullptr);
  // A pending wakeup makes each poll return at once, leaving the timerfd armed.
  b->wakeup();
  b->poll(1s);
  EXPECT_EQ(counter(*b, "libevent_timer_arms_total"), 1u);
  b->wakeup();
  b->poll(1s);  // a slightly later deadline: the armed one serves
  EXPECT_EQ(counter(*b, "libevent_timer_arms_total"), 1u);
  const Deadline start = Clock::now();
  b->poll(5ms);  // earlier: re-armed, and it is the earlier deadline that ends the poll
  const double waited = ms_since(start);
  EXPECT_EQ(counter(*b, "libevent_timer_arms_total"), 2u);
  EXPECT_GE(waited, 5);
  EXPECT_LT(waited, 900);
}

TEST(LibeventBackend, WaitOnARegularFileIsReadyAtOnce) {
  REQUIRE_LIBEVENT_IN_REGISTRY();
  absl::Status read_status, write_status;
  run_on_libevent([&] {
    char path[] = "/tmp/reactor-levent-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::unlink(path);
    Backend& b = Reactor::current()->backend();
    read_status = b.wait(fd, Interest::kRead, deadline_after(1s));
    write_status = b.wait(fd, Interest::kWrite, deadline_after(1s));
    EXPECT_TRUE(b.close(fd).ok());
  });
  EXPECT_TRUE(read_status.ok()) << read_status;
  EXPECT_TRUE(write_status.ok()) << write_status;
}

// close() frees the fd's record and event: a new file that gets the same number is registered
// afresh and its readiness arrives.
TEST(LibeventBackend, FdNumberReusedAfterCloseWorks) {
  REQUIRE_LIBEVENT_IN_REGISTRY();
  run_on_libevent([] {
    Backend& b = Reactor::current()->backend();
    for (int round = 0; round < 3; ++round) {
      int sv[2];
      ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
      auto writer = spawn("writer", [&] {
        ASSERT_TRUE(sleep_for(2ms).ok());
        const char c = 'x';
        ASSERT_TRUE(b.send(sv[1], std::as_bytes(std::span(&c, 1)), deadline_after(1s)).ok());
      });
      ASSERT_TRUE(writer.ok());
      std::byte got[1];
      auto n = b.recv(sv[0], got, deadline_after(5s));
      ASSERT_TRUE(n.ok()) << "round " << round << ": " << n.status();
      EXPECT_EQ(*n, 1u);
      writer->join();
      EXPECT_TRUE(b.close(sv[0]).ok());
      EXPECT_TRUE(b.close(sv[1]).ok());
    }
  });
}

// A waiter woken by a deadline or a cancel gives up the fd: another fiber may wait on it next.
TEST(LibeventBackend, TimedOutAndCancelledWaitersLeaveTheFd) {
  REQUIRE_LIBEVENT_IN_REGISTRY();
  run_on_libevent([] {
    Backend& b = Reactor::current()->backend();
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    EXPECT_TRUE(absl::IsDeadlineExceeded(b.wait(sv[0], Interest::kRead, deadline_after(2ms))));
    absl::Status cancelled;
    auto first = spawn("first", [&] { cancelled = b.wait(sv[0], Interest::kRead, kNoDeadline); });
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE(sleep_for(2ms).ok());
    first->cancel();
    first->join();
    EXPECT_TRUE(absl::IsCancelled(cancelled)) << cancelled;
    auto second = spawn("second", [&] {
      std::byte got[1];
      auto n = b.recv(sv[0], got, deadline_after(5s));
      EXPECT_TRUE(n.ok()) << n.status();
    });
    ASSERT_TRUE(second.ok());
    ASSERT_TRUE(sleep_for(2ms).ok());
    const char c = 'y';
    ASSERT_TRUE(b.send(sv[1], std::as_bytes(std::span(&c, 1)), deadline_after(1s)).ok());
    second->join();
    EXPECT_GT(counter(b, "libevent_events_total"), 0u);
    EXPECT_TRUE(b.close(sv[0]).ok());
    EXPECT_TRUE(b.close(sv[1]).ok());
  });
}

// close() with both a reader and a writer parked resumes both with the "closed" error.
TEST(LibeventBackend, CloseResumesReaderAndWriter) {
  REQUIRE_LIBEVENT_IN_REGISTRY();
  absl::Status read_status, write_status;
  run_on_libevent([&] {
    Backend& b = Reactor::current()->backend();
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    // Fill the send buffer so that a writer must wait.
    std::vector<std::byte> chunk(64 * 1024);
    while (::send(sv[0], chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0) {
    }
    auto reader = spawn("reader", [&] {
      std::byte got[1];
      read_status = b.recv(sv[0], got, deadline_after(10s)).status();
    });
    auto writer =
        spawn("writer", [&] { write_status = b.send(sv[0], chunk, deadline_after(10s)).status(); });
    ASSERT_TRUE(reader.ok() && writer.ok());
    ASSERT_TRUE(sleep_for(2ms).ok());
    EXPECT_TRUE(b.close(sv[0]).ok());
    reader->join();
    writer->join();
    EXPECT_TRUE(b.close(sv[1]).ok());
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(read_status)) << read_status;
  EXPECT_TRUE(absl::IsFailedPrecondition(write_status)) << write_status;
  EXPECT_THAT(std::string(read_status.message()), ::testing::HasSubstr("closed"));
  EXPECT_THAT(std::string(write_status.message()), ::testing::HasSubstr("closed"));
}

}  // namespace
}  // namespace reactor
