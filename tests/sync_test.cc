// Event, Mutex, Semaphore, WaitGroup and Channel between fibers of one reactor.
#include <string>
#include <vector>

#include "reactor/channel.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::run_fiber;

// Runs `workers` fibers that each, `rounds` times, enter with `enter()` (which must succeed), stay
// inside for `hold` and leave with `leave()`; returns the most fibers that were inside at once.
// Inside a fiber.
template <class Enter, class Leave>
int most_inside(int workers, int rounds, Duration hold, Enter enter, Leave leave) {
  int inside = 0, most = 0;
  std::vector<Task<void>> tasks;
  for (int i = 0; i < workers; ++i) {
    auto t = spawn("worker", [&] {
      for (int j = 0; j < rounds; ++j) {
        ASSERT_TRUE(enter().ok());
        most = std::max(most, ++inside);
        (void)sleep_for(hold);
        --inside;
        leave();
      }
    });
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) tasks.push_back(*std::move(t));
  }
  join_all(tasks);
  return most;
}

TEST(Event, SetWakesAllWaiters) {
  int woken = 0;
  run_fiber([&] {
    Event e;
    std::vector<Task<void>> waiters;
    for (int i = 0; i < 5; ++i) {
      auto t = spawn("waiter", [&] {
        ASSERT_TRUE(e.wait().ok());
        ++woken;
      });
      ASSERT_TRUE(t.ok());
      waiters.push_back(*std::move(t));
    }
    yield();
    EXPECT_EQ(woken, 0);
    e.set();
    join_all(waiters);
    EXPECT_TRUE(e.wait().ok());  // stays set
  });
  EXPECT_EQ(woken, 5);
}

TEST(Event, WaitDeadline) {
  absl::Status s;
  run_fiber([&] {
    Event e;
    s = e.wait(deadline_after(5ms));
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
}

TEST(Mutex, ExcludesAcrossSuspension) {
  int most = 0;
  run_fiber([&] {
    Mutex mu;
    most = most_inside(
        4, 3, 1ms, [&] { return mu.lock(); }, [&] { mu.unlock(); });
    EXPECT_FALSE(mu.locked());
  });
  EXPECT_EQ(most, 1);
}

TEST(Mutex, LockTimesOutAndLeavesQueue) {
  absl::Status timed_out;
  bool later_got_it = false;
  run_fiber([&] {
    Mutex mu;
    ASSERT_TRUE(mu.lock().ok());
    auto t = spawn("impatient", [&] { timed_out = mu.lock(deadline_after(5ms)); });
    ASSERT_TRUE(t.ok());
    t->join();
    mu.unlock();
    // The timed-out waiter must not have taken the hand-off.
    later_got_it = mu.try_lock();
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(timed_out)) << timed_out;
  EXPECT_TRUE(later_got_it);
}

TEST(Semaphore, BoundsConcurrency) {
  int most = 0;
  run_fiber([&] {
    Semaphore sem(2);
    most = most_inside(
        6, 1, 2ms, [&] { return sem.acquire(); }, [&] { sem.release(); });
    EXPECT_EQ(sem.available(), 2u);
  });
  EXPECT_EQ(most, 2);
}

TEST(Semaphore, CancelledWaiterDoesNotSwallowPermit) {
  bool second_acquired = false;
  run_fiber([&] {
    Semaphore sem(0);
    auto cancelled_waiter =
        spawn("cancelled", [&] { EXPECT_TRUE(absl::IsCancelled(sem.acquire())); });
    ASSERT_TRUE(cancelled_waiter.ok());
    yield();
    cancelled_waiter->cancel();
    sem.release();  // the cancelled fiber is still queued but must not take this permit
    cancelled_waiter->join();
    second_acquired = sem.try_acquire();
  });
  EXPECT_TRUE(second_acquired);
}

TEST(WaitGroup, WaitsForAll) {
  int finished = 0;
  run_fiber([&] {
    WaitGroup wg;
    for (int i = 1; i <= 3; ++i) {
      wg.add();
      auto t = spawn("job", [&, i] {
        (void)sleep_for(std::chrono::milliseconds(i));
        ++finished;
        wg.done();
      });
      ASSERT_TRUE(t.ok());
    }
    ASSERT_TRUE(wg.wait(deadline_after(5s)).ok());
    EXPECT_EQ(finished, 3);
  });
}

TEST(Channel, BoundedPushWaitsForPop) {
  std::vector<std::string> trace;
  run_fiber([&] {
    Channel<int> ch(2);
    auto producer = spawn("producer", [&] {
      for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(ch.push(i).ok());
        trace.push_back("push " + std::to_string(i));
      }
      ch.close();
    });
    ASSERT_TRUE(producer.ok());
    yield();  // producer fills the two slots, then waits
    trace.push_back("consumer starts");
    for (int i = 0; i < 4; ++i) {
      auto v = ch.pop();
      ASSERT_TRUE(v.ok());
      EXPECT_EQ(*v, i);
    }
    auto end = ch.pop();
    EXPECT_TRUE(absl::IsOutOfRange(end.status())) << end.status();
    producer->join();
  });
  ASSERT_GE(trace.size(), 3u);
  EXPECT_EQ(trace[0], "push 0");
  EXPECT_EQ(trace[1], "push 1");
  EXPECT_EQ(trace[2], "consumer starts");
}

TEST(Channel, PopDeadline) {
  absl::Status s;
  run_fiber([&] {
    Channel<std::string> ch(1);
    s = ch.pop(deadline_after(5ms)).status();
  });
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
}

TEST(Channel, PushAfterCloseFails) {
  absl::Status s;
  run_fiber([&] {
    Channel<int> ch(1);
    ch.close();
    s = ch.push(1);
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
}

TEST(Channel, MoveOnlyValues) {
  int got = 0;
  run_fiber([&] {
    Channel<std::unique_ptr<int>> ch(1);
    ASSERT_TRUE(ch.push(std::make_unique<int>(5)).ok());
    auto v = ch.pop();
    ASSERT_TRUE(v.ok());
    got = **v;
  });
  EXPECT_EQ(got, 5);
}

}  // namespace
}  // namespace reactor
