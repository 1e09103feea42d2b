// Loop statistics: the histogram, the reactor's counters, the fiber snapshot and the current
// slice as another thread sees it.
#include <atomic>
#include <thread>

#include "reactor/histogram.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::run_fiber;

TEST(Histogram, BucketBoundariesAreDecadeAligned) {
  EXPECT_EQ(Histogram::bucket_of(0), 0u);
  EXPECT_EQ(Histogram::bucket_of(999), 0u);
  EXPECT_EQ(Histogram::bucket_of(1000), 1u);  // [1 us, 2 us)
  EXPECT_EQ(Histogram::bucket_of(1999), 1u);
  EXPECT_EQ(Histogram::bucket_of(2000), 2u);
  EXPECT_EQ(Histogram::bucket_of(9999), 9u);    // [9 us, 10 us)
  EXPECT_EQ(Histogram::bucket_of(10000), 10u);  // [10 us, 20 us)
  EXPECT_EQ(Histogram::bucket_of(int64_t{100} * 1000 * 1000 * 1000), Histogram::kBuckets - 1);
  // Every power of ten from 1 us to 100 s is an upper bound of some bucket.
  int64_t p = 1000;
  for (int d = 0; d <= Histogram::kDecades; ++d, p *= 10) {
    bool found = false;
    for (size_t i = 0; i < Histogram::kBuckets; ++i) found |= Histogram::upper_bound_ns(i) == p;
    EXPECT_TRUE(found) << p;
  }
}

// bucket_of (bit scan, table, a short scan) agrees with the bucket bounds on both sides of every
// boundary, on powers of two and on large and negative values.
TEST(Histogram, BucketOfAgreesWithTheBoundsEverywhere) {
  auto by_bounds = [](int64_t ns) {
    size_t i = 0;
    while (i + 1 < Histogram::kBuckets && ns >= Histogram::upper_bound_ns(i)) ++i;
    return i;
  };
  for (size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    const int64_t ub = Histogram::upper_bound_ns(i);
    for (int64_t ns : {ub - 1, ub, ub + 1})
      EXPECT_EQ(Histogram::bucket_of(ns), by_bounds(ns)) << ns;
  }
  for (int b = 0; b < 63; ++b) {
    const int64_t p = int64_t{1} << b;
    for (int64_t ns : {p - 1, p, p + 1}) EXPECT_EQ(Histogram::bucket_of(ns), by_bounds(ns)) << ns;
  }
  EXPECT_EQ(Histogram::bucket_of(-5), 0u);
  EXPECT_EQ(Histogram::bucket_of(INT64_MAX), Histogram::kBuckets - 1);
}

// polls, the time waiting in poll and context switches are read from the histograms.
TEST(Histogram, CountAndSum) {
  Histogram h;
  h.record(500);
  h.record(3'000);
  h.record(-7);  // counted, adds nothing to the sum
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.sum_ns(), 3'500u);
}

TEST(Histogram, QuantilesAndMerge) {
  Histogram a, b;
  for (int i = 0; i < 90; ++i) a.record(5'000);       // 5 us
  for (int i = 0; i < 10; ++i) b.record(50'000'000);  // 50 ms
  Histogram::Snapshot s = a.snapshot();
  s.merge(b.snapshot());
  EXPECT_EQ(s.count(), 100u);
  EXPECT_EQ(s.sum_ns, 90u * 5'000 + 10u * 50'000'000);
  const int64_t p50 = s.quantile_ns(0.5), p99 = s.quantile_ns(0.99);
  EXPECT_GE(p50, 5'000);
  EXPECT_LT(p50, 6'000);
  EXPECT_GE(p99, 50'000'000);
  EXPECT_LT(p99, 60'000'000);
  Histogram::Snapshot d = s.minus(a.snapshot());
  EXPECT_EQ(d.count(), 10u);
}

TEST(ReactorStats, CountsSwitchesSlicesAndFibers) {
  uint64_t switches = 0, slices = 0, created = 0, finished = 0, sched = 0;
  run_fiber([&] {
    Reactor* r = Reactor::current();
    const uint64_t switches0 = r->stats().context_switches();
    auto t = spawn("yielder", [] {
      for (int i = 0; i < 10; ++i) yield();
    });
    ASSERT_TRUE(t.ok());
    t->join();
    switches = r->stats().context_switches() - switches0;
    slices = r->stats().slice.snapshot().count();
    sched = r->stats().sched_latency.snapshot().count();
    created = r->stats().fibers_created.get();
    finished = r->stats().fibers_finished.get();
  });
  EXPECT_GE(switches, 11u);  // the yielder's 11 slices, plus main's
  EXPECT_EQ(slices + 1, sched) << "every resume records one latency; the running slice is not done";
  EXPECT_EQ(created, 2u);
  EXPECT_EQ(finished, 1u);
}

TEST(ReactorStats, FiberSnapshotShowsStatesAndStack) {
  std::vector<Reactor::FiberInfo> fibers;
  run_fiber([&] {
    Event never;
    auto waiter = spawn("waiter#7", [&] { (void)never.wait(); });
    ASSERT_TRUE(waiter.ok());
    yield();
    fibers = Reactor::current()->fibers_snapshot();
    waiter->cancel();
    waiter->join();
  });
  ASSERT_EQ(fibers.size(), 2u);
  bool saw_main = false, saw_waiter = false;
  for (const auto& f : fibers) {
    if (f.name == "main") {
      saw_main = true;
      EXPECT_EQ(f.state, "running");
    }
    if (f.name == "waiter#7") {
      saw_waiter = true;
      EXPECT_EQ(f.state, "waiting");
      EXPECT_EQ(f.waiting_on, "Event::wait");
      EXPECT_GT(f.stack_used, 0u);
      EXPECT_LT(f.stack_used, f.stack_size);
    }
  }
  EXPECT_TRUE(saw_main && saw_waiter);
}

// Another thread sees the running fiber's name and slice start while it spins, and sees no slice
// while the loop waits in poll.
TEST(ReactorStats, CurrentSliceVisibleFromAnotherThread) {
  std::atomic<Reactor*> reactor{nullptr};
  std::atomic<bool> spinning{false}, seen{false}, observer_done{false};
  std::string name_seen;
  bool idle_seen = false;
  std::thread observer([&] {
    while (reactor.load() == nullptr) std::this_thread::yield();
    const auto give_up = Clock::now() + 10s;
    while (!spinning.load() && Clock::now() < give_up) std::this_thread::yield();
    while (Clock::now() < give_up) {
      Reactor::CurrentSlice c = reactor.load()->current_slice();
      if (c.in_slice && c.fiber_name == "spinner#1") {
        name_seen = c.fiber_name;
        break;
      }
    }
    seen = true;
    while (Clock::now() < give_up) {
      Reactor::CurrentSlice c = reactor.load()->current_slice();
      if (!c.in_slice && c.in_poll) {
        idle_seen = true;
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    observer_done = true;  // the reactor may go only after this: its fibers' records go with it
  });
  run_fiber([&] {
    reactor = Reactor::current();
    auto spinner = spawn("spinner#1", [&] {
      spinning = true;
      const auto give_up = Clock::now() + 10s;
      while (!seen.load() && Clock::now() < give_up) {
      }
    });
    ASSERT_TRUE(spinner.ok());
    spinner->join();
    // Idle in poll while the observer looks, until it is done reading this reactor.
    const auto give_up = Clock::now() + 10s;
    while (!observer_done.load() && Clock::now() < give_up) (void)sleep_for(5ms);
  });
  observer.join();
  EXPECT_EQ(name_seen, "spinner#1");
  EXPECT_TRUE(idle_seen);
}

TEST(ReactorStats, SlowSlicesCountedByBaseName) {
  std::vector<std::pair<std::string, uint64_t>> slow;
  run_fiber([&] {
    Reactor::current()->set_slow_slice_threshold(5ms);
    for (int i = 0; i < 2; ++i) {
      auto t = spawn("slow#" + std::to_string(i), [] {
        const auto end = Clock::now() + 8ms;
        while (Clock::now() < end) {
        }
      });
      ASSERT_TRUE(t.ok());
      t->join();
    }
    slow = Reactor::current()->slow_slices_by_name();
  });
  uint64_t count = 0;
  for (const auto& [name, n] : slow) {
    if (name == "slow") count = n;
  }
  EXPECT_EQ(count, 2u);
}

}  // namespace
}  // namespace reactor
