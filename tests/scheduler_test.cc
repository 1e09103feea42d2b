// The scheduler: the seed's two examples, spawn/join, exceptions, cancel, yield, sleep, submit_to,
// offload, and many fibers at once.
#include <atomic>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "reactor/call_on.h"
#include "reactor/channel.h"
#include "reactor/offload.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::ms_since;
using test::run_fiber;

// Seed example 1: A sleeps 400 ms, B 200 ms, joined together: the sleeps overlap.
TEST(Seed, SleepingWorkersOverlap) {
  std::vector<std::string> log;
  double elapsed = 0;
  run_fiber([&] {
    const Deadline start = Clock::now();
    auto worker = [&](std::string name, Duration d) {
      log.push_back(name + " starting");
      ASSERT_TRUE(sleep_for(d).ok());
      log.push_back(name + " done");
    };
    auto a = spawn("A", [&] { worker("A", 400ms); });
    auto b = spawn("B", [&] { worker("B", 200ms); });
    ASSERT_TRUE(a.ok() && b.ok());
    join_all(*a, *b);
    elapsed = ms_since(start);
  });
  EXPECT_EQ(log, (std::vector<std::string>{"A starting", "B starting", "B done", "A done"}));
  EXPECT_GE(elapsed, 395);
  EXPECT_LT(elapsed, 550) << "sleeps ran one after the other";
}

// Seed example 2: a fiber that spins without suspending delays a 10 ms timer until it stops.
TEST(Seed, SpinningFiberDelaysTimer) {
  double timer_ran_at = 0, spin_ended_at = 0;
  run_fiber([&] {
    const Deadline start = Clock::now();
    auto timer = spawn("timer", [&] {
      ASSERT_TRUE(sleep_for(10ms).ok());
      timer_ran_at = ms_since(start);
    });
    auto spinner = spawn("spinner", [&] {
      while (Clock::now() - start < 100ms) {
      }
      spin_ended_at = ms_since(start);
    });
    ASSERT_TRUE(timer.ok() && spinner.ok());
    join_all(*timer, *spinner);
  });
  EXPECT_GE(spin_ended_at, 100);
  EXPECT_GE(timer_ran_at, spin_ended_at) << "the timer fiber ran while another fiber held the loop";
}

TEST(Task, JoinReturnsValue) {
  int got = 0;
  run_fiber([&] {
    auto t = spawn("answer", [] { return 42; });
    ASSERT_TRUE(t.ok());
    got = t->join();
  });
  EXPECT_EQ(got, 42);
}

TEST(Task, RunReturnsMainValue) {
  absl::StatusOr<std::string> r = Reactor::run([] { return std::string("main's value"); });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "main's value");
}

TEST(Task, ExceptionCrossesJoin) {
  std::string what;
  run_fiber([&] {
    auto t = spawn("thrower", []() -> int {
      (void)sleep_for(1ms);
      throw std::runtime_error("boom in fiber");
    });
    ASSERT_TRUE(t.ok());
    try {
      (void)t->join();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
  });
  EXPECT_EQ(what, "boom in fiber");
}

TEST(Task, ExceptionFromMainIsRethrownByRun) {
  EXPECT_THROW((void)Reactor::run([] { throw std::logic_error("main failed"); }), std::logic_error);
}

TEST(Task, JoinAllRethrowsFirstExceptionAfterAllFinish) {
  bool slow_finished = false;
  std::string what;
  run_fiber([&] {
    auto fails = spawn("fails", [] { throw std::runtime_error("first"); });
    auto slow = spawn("slow", [&] {
      (void)sleep_for(20ms);
      slow_finished = true;
    });
    ASSERT_TRUE(fails.ok() && slow.ok());
    try {
      join_all(*fails, *slow);
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
  });
  EXPECT_EQ(what, "first");
  EXPECT_TRUE(slow_finished);
}

TEST(Cancel, SleepReturnsCancelled) {
  absl::Status sleep_status;
  double elapsed = 0;
  run_fiber([&] {
    auto sleeper = spawn("sleeper", [&] { sleep_status = sleep_for(10s); });
    ASSERT_TRUE(sleeper.ok());
    ASSERT_TRUE(sleep_for(5ms).ok());
    const Deadline cancelled = Clock::now();
    sleeper->cancel();
    sleeper->join();
    elapsed = ms_since(cancelled);
  });
  EXPECT_TRUE(absl::IsCancelled(sleep_status)) << sleep_status;
  EXPECT_LT(elapsed, 1500);  // at once after the cancel, not at the 10 s deadline
}

TEST(Cancel, IsStickyForLaterSuspensionPoints) {
  absl::Status first, second;
  run_fiber([&] {
    auto t = spawn("t", [&] {
      first = sleep_for(10s);
      second = sleep_for(1ms);
    });
    ASSERT_TRUE(t.ok());
    yield();
    t->cancel();
    t->join();
  });
  EXPECT_TRUE(absl::IsCancelled(first));
  EXPECT_TRUE(absl::IsCancelled(second));
}

TEST(Cancel, ChannelPopReturnsCancelled) {
  absl::Status pop_status;
  run_fiber([&] {
    Channel<int> ch(4);
    auto reader = spawn("reader", [&] { pop_status = ch.pop().status(); });
    ASSERT_TRUE(reader.ok());
    ASSERT_TRUE(sleep_for(2ms).ok());
    reader->cancel();
    reader->join();
    // The cancelled reader left the channel's wait list: a later push/pop pair works.
    ASSERT_TRUE(ch.push(7).ok());
    auto v = ch.pop();
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, 7);
  });
  EXPECT_TRUE(absl::IsCancelled(pop_status)) << pop_status;
}

TEST(Cancel, RunCancelsFibersLeftWhenMainReturns) {
  absl::Status orphan_status;
  run_fiber([&] {
    auto orphan = spawn("orphan", [&] { orphan_status = sleep_for(1h); });
    ASSERT_TRUE(orphan.ok());
    yield();
  });
  EXPECT_TRUE(absl::IsCancelled(orphan_status));
}

TEST(Deadline, SleepUntilPastDeadlineReturnsAtOnce) {
  absl::Status s;
  run_fiber([&] { s = sleep_until(Clock::now() - 1s); });
  EXPECT_TRUE(s.ok());
}

TEST(Deadline, TaskWaitTimesOut) {
  absl::Status s;
  run_fiber([&] {
    auto slow = spawn("slow", [] { (void)sleep_for(200ms); });
    ASSERT_TRUE(slow.ok());
    s = slow->wait(deadline_after(10ms));
    slow->cancel();
    slow->join();
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
}

TEST(Scheduler, YieldInterleavesFibers) {
  std::string trace;
  run_fiber([&] {
    auto f = [&](char c) {
      for (int i = 0; i < 3; ++i) {
        trace += c;
        yield();
      }
    };
    auto a = spawn("a", [&] { f('a'); });
    auto b = spawn("b", [&] { f('b'); });
    ASSERT_TRUE(a.ok() && b.ok());
    join_all(*a, *b);
  });
  EXPECT_EQ(trace, "ababab");
}

TEST(Scheduler, TimersFireInDeadlineOrder) {
  std::vector<int> order;
  run_fiber([&] {
    std::vector<Task<void>> tasks;
    for (int ms : {30, 10, 20, 5, 25}) {
      auto t = spawn("sleeper", [&order, ms] {
        ASSERT_TRUE(sleep_for(std::chrono::milliseconds(ms)).ok());
        order.push_back(ms);
      });
      ASSERT_TRUE(t.ok());
      tasks.push_back(*std::move(t));
    }
    join_all(tasks);
  });
  EXPECT_EQ(order, (std::vector<int>{5, 10, 20, 25, 30}));
}

// 10,000 fibers in a ring, each passing a token on through a channel.
TEST(Scheduler, TenThousandFibersPassTokensThroughChannels) {
#if defined(REACTOR_TSAN)
  // TSan maps about 270 KiB of state per fiber and runs out of mappings near 10,000 fibers.
  constexpr int kFibers = 2'000;
#else
  constexpr int kFibers = 10'000;
#endif
  constexpr int kRounds = 3;
  int64_t final_token = -1;
  run_fiber([&] {
    std::vector<std::unique_ptr<Channel<int64_t>>> links;
    for (int i = 0; i <= kFibers; ++i) links.push_back(std::make_unique<Channel<int64_t>>(1));
    std::vector<Task<void>> tasks;
    for (int i = 0; i < kFibers; ++i) {
      auto t = spawn("relay", [&, i] {
        for (int r = 0; r < kRounds; ++r) {
          auto v = links[i]->pop();
          ASSERT_TRUE(v.ok()) << v.status();
          ASSERT_TRUE(links[i + 1]->push(*v + 1).ok());
        }
      });
      ASSERT_TRUE(t.ok());
      tasks.push_back(*std::move(t));
    }
    int64_t token = 0;
    for (int r = 0; r < kRounds; ++r) {
      ASSERT_TRUE(links[0]->push(token).ok());
      auto v = links[kFibers]->pop();
      ASSERT_TRUE(v.ok());
      token = *v;
    }
    join_all(tasks);
    final_token = token;
  });
  EXPECT_EQ(final_token, int64_t{kFibers} * kRounds);
}

TEST(CrossThread, SubmitToRunsOnTargetLoop) {
  std::atomic<Reactor*> target{nullptr};
  std::atomic<Event*> event{nullptr};
  std::thread::id loop_thread, ran_on;
  absl::Status waited;
  std::thread loop([&] {
    run_fiber([&] {
      loop_thread = std::this_thread::get_id();
      Event got;
      event = &got;
      target = Reactor::current();
      waited = got.wait(deadline_after(5s));
    });
  });
  while (target.load() == nullptr) std::this_thread::yield();
  ASSERT_TRUE(submit_to(*target.load(), "submitted", [&] {
    ran_on = std::this_thread::get_id();
    (void)sleep_for(1ms);  // a submitted function runs in a fiber: it may suspend
    event.load()->set();
  }));
  loop.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_EQ(ran_on, loop_thread);
}

// A post writes the backend's wakeup only to a loop that sleeps: while a fiber keeps the loop
// busy (it yields, so the loop polls without waiting), 1,000 posts write none, and each still runs.
// Then the loop sleeps in a wait of 10 s, and a post wakes it: the wait ends by the post.
TEST(CrossThread, PostsToABusyLoopWriteNoWakeup) {
  constexpr int kPosts = 1000;
  std::atomic<Reactor*> target{nullptr};
  std::atomic<Event*> event{nullptr};
  std::atomic<bool> busy{false};
  std::atomic<int> ran{0};
  uint64_t wakeups_busy = 0;
  absl::Status waited;
  std::thread loop([&] {
    run_fiber([&] {
      Event done;
      event = &done;
      auto spinner = spawn("busy", [&] {
        busy = true;
        while (ran.load() < kPosts) yield();
      });
      ASSERT_TRUE(spinner.ok());
      target = Reactor::current();
      spinner->join();
      wakeups_busy = Reactor::current()->inbox()->wakeups();
      waited = done.wait(deadline_after(10s));
    });
  });
  while (target.load() == nullptr || !busy.load()) std::this_thread::yield();
  Reactor& r = *target.load();
  const uint64_t before = r.inbox()->wakeups();
  for (int i = 0; i < kPosts; ++i) ASSERT_TRUE(r.post([&] { ran.fetch_add(1); }));
  while (ran.load() < kPosts) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // the loop goes to sleep in done.wait
  ASSERT_TRUE(r.post([&] { event.load()->set(); }));
  loop.join();
  EXPECT_EQ(wakeups_busy, before) << "posts to the busy loop wrote wakeups";
  EXPECT_TRUE(waited.ok()) << "the post did not wake the sleeping loop: " << waited;
}

TEST(CrossThread, CallOnRunsOnTargetAndReturnsValue) {
  std::atomic<Reactor*> target{nullptr};
  std::atomic<bool> finished{false};
  std::thread::id target_thread, ran_on;
  int owned_value = 0;  // belongs to the target loop
  std::thread other([&] {
    run_fiber([&] {
      target_thread = std::this_thread::get_id();
      owned_value = 41;
      target = Reactor::current();
      while (!finished.load()) (void)sleep_for(1ms);
    });
  });
  while (target.load() == nullptr) std::this_thread::yield();
  absl::StatusOr<int> got;
  run_fiber([&] {
    got = call_on(
        *target.load(),
        [&] {
          ran_on = std::this_thread::get_id();
          return ++owned_value;
        },
        deadline_after(5s));
  });
  finished = true;
  other.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 42);
  EXPECT_EQ(ran_on, target_thread);
}

// The offloaded function blocks on a latch that only a timer fiber on the loop releases: if
// offload blocked the loop, the latch would never open (the job gives up after 5 s).
TEST(Offload, DoesNotBlockTheLoop) {
  int ticks = 0;
  absl::StatusOr<bool> opened = false;
  run_fiber([&] {
    std::latch latch(1);
    auto ticker = spawn("ticker", [&] {
      for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(sleep_for(2ms).ok());
        ++ticks;
      }
      latch.count_down();
    });
    ASSERT_TRUE(ticker.ok());
    opened = offload([&] {
      const auto give_up = Clock::now() + 5s;
      while (!latch.try_wait()) {
        if (Clock::now() > give_up) return false;
        std::this_thread::sleep_for(1ms);
      }
      return true;
    });
    ticker->join();
  });
  ASSERT_TRUE(opened.ok());
  EXPECT_TRUE(*opened) << "the loop stalled while the offloaded function ran";
  EXPECT_EQ(ticks, 5);
}

TEST(Offload, ReturnsValueAndRethrows) {
  int v = 0;
  bool threw = false;
  run_fiber([&] {
    auto r = offload([] { return 6 * 7; });
    ASSERT_TRUE(r.ok());
    v = *r;
    try {
      (void)offload([]() -> int { throw std::runtime_error("in pool"); });
    } catch (const std::runtime_error&) {
      threw = true;
    }
  });
  EXPECT_EQ(v, 42);
  EXPECT_TRUE(threw);
}

TEST(Offload, DeadlineReturnsWhileJobRuns) {
  absl::Status s;
  // Shared with the job, which still runs (and reads it) after this test has returned.
  auto release = std::make_shared<std::atomic<bool>>(false);
  run_fiber([&] {
    s = offload(
            [release] {
              while (!release->load()) std::this_thread::sleep_for(1ms);
              return 1;
            },
            deadline_after(20ms))
            .status();
  });
  *release = true;
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
}

TEST(Reactor, OnePerThread) {
  run_fiber([] {
    auto second = Reactor::create();
    EXPECT_FALSE(second.ok());
    EXPECT_THAT(std::string(second.status().message()),
                ::testing::HasSubstr("already runs a reactor"));
  });
}

TEST(Reactor, UnknownBackendIsAClearError) {
  Reactor::Options o;
  o.backend = "kqueue";
  auto r = Reactor::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("unknown backend 'kqueue'"));
}

}  // namespace
}  // namespace reactor
