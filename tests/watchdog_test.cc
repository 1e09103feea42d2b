// The watchdog: a spinning fiber is reported as cpu with its frames, a fiber blocked in a system
// call as blocking with the call named, short slices are not reported, re-reports double and are
// rate limited, thresholds change at run time, abort_after aborts, and reactors come and go
// cleanly while stalls are being reported.
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.h"
#include "reactor/watchdog.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Collects reports from the watchdog thread.
class Collector {
 public:
  Watchdog::Sink sink() {
    return [this](const StallReport& r) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(r);
    };
  }
  std::vector<StallReport> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }
  bool any(StallReport::Phase phase) {
    for (const auto& r : reports()) {
      if (r.phase == phase) return true;
    }
    return false;
  }
  size_t count(StallReport::Phase phase) {
    size_t n = 0;
    for (const auto& r : reports()) n += r.phase == phase;
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<StallReport> reports_;
};

// Runs `body` as the main fiber of a reactor watched by `dog` as shard 0.
template <class F>
void run_watched(Watchdog& dog, F&& body) {
  absl::Status s = Reactor::run([&] {
    dog.watch(Reactor::current(), 0);
    body();
    dog.unwatch(Reactor::current());
  });
  ASSERT_TRUE(s.ok()) << s;
}

WatchdogOptions options(Duration threshold) {
  WatchdogOptions o;
  o.threshold = threshold;
  o.reports_per_minute = 1000;
  return o;
}

// Spins (calling clock_gettime, so TSan delivers the signal) until `done` or 5 s.
__attribute__((noinline)) void spin_until_reported(const std::function<bool()>& done) {
  const auto give_up = Clock::now() + 5s;
  while (!done() && Clock::now() < give_up) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
  }
}

TEST(Watchdog, SpinningFiberIsCpuWithFrames) {
  Collector c;
  Watchdog dog(options(50ms), c.sink());
  dog.start();
  run_watched(dog, [&] {
    auto t = spawn("spinner#1", [&] {
      spin_until_reported([&] { return c.any(StallReport::Phase::kFrames); });
    });
    ASSERT_TRUE(t.ok());
    t->join();
  });
  dog.stop();
  std::vector<StallReport> reports = c.reports();
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.front().phase, StallReport::Phase::kStarted);
  EXPECT_EQ(reports.front().fiber_name, "spinner#1");
  EXPECT_EQ(reports.front().kind, "cpu");
  EXPECT_GE(reports.front().wall, 50ms);
  bool named = false;
  for (const auto& r : reports) {
    if (r.phase != StallReport::Phase::kFrames) continue;
    for (const auto& f : r.frames) named |= f.find("spin_until_reported") != std::string::npos;
  }
  EXPECT_TRUE(named) << "no frame names the spinning function";
  EXPECT_TRUE(c.any(StallReport::Phase::kEnded));
}

TEST(Watchdog, FiberBlockedInSyscallIsBlockingWithSyscallNamed) {
  Collector c;
  Watchdog dog(options(50ms), c.sink());
  dog.start();
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  // Released once the watchdog has reported (or after 5 s).
  std::thread releaser([&] {
    const auto give_up = Clock::now() + 5s;
    while (!c.any(StallReport::Phase::kStarted) && Clock::now() < give_up)
      std::this_thread::sleep_for(5ms);
    char b = 'x';
    (void)::write(pipefd[1], &b, 1);
  });
  run_watched(dog, [&] {
    auto t = spawn("reader#1", [&] {
      char b;
      (void)::read(pipefd[0], &b, 1);  // blocks the loop: what the watchdog is for
    });
    ASSERT_TRUE(t.ok());
    t->join();
  });
  releaser.join();
  dog.stop();
  ::close(pipefd[0]);
  ::close(pipefd[1]);
  std::vector<StallReport> reports = c.reports();
  ASSERT_FALSE(reports.empty());
  const StallReport& r = reports.front();
  EXPECT_EQ(r.fiber_name, "reader#1");
  EXPECT_EQ(r.kind, "blocking");
  EXPECT_EQ(r.syscall, "read");
  EXPECT_EQ(r.thread_state, 'S');
}

TEST(Watchdog, ShortSlicesAreNotReported) {
  Collector c;
  Watchdog dog(options(250ms), c.sink());
  dog.start();
  run_watched(dog, [&] {
    for (int i = 0; i < 1000; ++i) {
      const auto end = Clock::now() + 1ms;
      while (Clock::now() < end) {
      }
      yield();
    }
  });
  dog.stop();
  EXPECT_TRUE(c.reports().empty());
}

TEST(Watchdog, ReReportsDoubleAndAreRateLimited) {
  Collector c;
  WatchdogOptions o = options(20ms);
  o.reports_per_minute = 3;
  o.backtrace = BacktraceWhen::kNever;
  Watchdog dog(o, c.sink());
  dog.start();
  run_watched(dog, [&] {
    auto t = spawn("sleeper#1", [] {
      // 450 ms in one slice: reports due at 20, 40, 80, 160 and 320 ms.
      const auto end = Clock::now() + 450ms;
      while (Clock::now() < end) ::usleep(10'000);
    });
    ASSERT_TRUE(t.ok());
    t->join();
  });
  dog.stop();
  EXPECT_EQ(c.count(StallReport::Phase::kStarted), 1u);
  EXPECT_EQ(c.count(StallReport::Phase::kOngoing), 2u);  // 40 and 80 ms; the limit is 3 a minute
  EXPECT_EQ(dog.suppressed(), 2u);                       // 160 and 320 ms
  ASSERT_EQ(c.count(StallReport::Phase::kEnded), 1u);    // the summary is never suppressed
  const StallReport end = c.reports().back();
  EXPECT_EQ(end.phase, StallReport::Phase::kEnded);
  EXPECT_GE(end.wall, 450ms);
  EXPECT_EQ(end.suppressed, 2u);
}

TEST(Watchdog, ThresholdChangesAtRunTime) {
  Collector c;
  WatchdogOptions o = options(2s);
  o.backtrace = BacktraceWhen::kNever;
  Watchdog dog(o, c.sink());
  dog.start();
  auto block = [](Duration d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) ::usleep(5'000);
  };
  run_watched(dog, [&] {
    block(200ms);
    EXPECT_TRUE(c.reports().empty());
    o.threshold = 50ms;
    dog.set_options(o);
    block(300ms);
  });
  dog.stop();
  EXPECT_TRUE(c.any(StallReport::Phase::kStarted));
}

TEST(WatchdogDeathTest, AbortAfterAbortsWithAReport) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        WatchdogOptions o = options(20ms);
        o.abort_after = 100ms;
        o.backtrace = BacktraceWhen::kNever;
        Watchdog dog(o, nullptr);
        dog.start();
        (void)Reactor::run([&] {
          dog.watch(Reactor::current(), 3);
          const auto end = Clock::now() + 5s;
          while (Clock::now() < end) ::usleep(10'000);
        });
      },
      "shard 3 stalled .* ms in fiber 'main'; aborting");
}

// Reactors and fibers come and go while stalls are reported: clean under ASan and TSan.
TEST(Watchdog, ReactorsEndDuringReports) {
  Collector c;
  Watchdog dog(options(10ms), c.sink());
  dog.start();
  for (int round = 0; round < 5; ++round) {
    std::thread t([&] {
      run_watched(dog, [&] {
        for (int i = 0; i < 3; ++i) {
          auto f = spawn("brief#" + std::to_string(i), [] {
            spin_until_reported([t0 = Clock::now()] { return Clock::now() - t0 > 25ms; });
          });
          ASSERT_TRUE(f.ok());
          f->join();
        }
      });
    });
    t.join();
  }
  dog.stop();
  EXPECT_GE(c.count(StallReport::Phase::kStarted), 1u);
}

}  // namespace
}  // namespace reactor
