// reactor/profiler.h on a bare reactor: a fiber spinning in a known function owns its thread's
// samples under its name, with that function in their frames; an idle spinning loop samples as
// kSpin; one profile at a time per process. Counts follow from CPU time, not wall time.
#include "reactor/profiler.h"

#include <time.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "reactor/fiber_stack.h"
#include "reactor/reactor.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using Kind = Reactor::Activity::Kind;

int64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Burns `ns` of the thread's CPU time without suspending. Reads the CPU clock between bursts (an
// intercepted call, where TSan delivers the profiler's signal).
[[gnu::noinline]] void burn_in_known_function(int64_t ns) {
  const int64_t until = thread_cpu_ns() + ns;
  volatile uint64_t sink = 0;
  while (thread_cpu_ns() < until) {
    uint64_t x = sink;
    for (int i = 0; i < 2000; ++i) x = x * 6364136223846793005u + 1442695040888963407u;
    sink = x;
  }
}

struct Tally {
  uint64_t total = 0, burner = 0, in_function = 0, spin = 0;
};

// Drains `p` into `t` until `stop()` is true or 30 s passed, then stops and drains once more.
void collect(Profiler& p, Tally& t, const std::function<bool()>& stop) {
  FrameSymbolizer symbolizer;
  auto take = [&] {
    p.drain([&](size_t, const ProfileSample& s) {
      t.total += s.weight;
      if (s.kind == Kind::kSpin) t.spin += s.weight;
      if (s.kind != Kind::kFiber || std::strcmp(s.fiber, "burner") != 0) return;
      t.burner += s.weight;
      for (int i = 0; i < s.depth; ++i) {
        void* pc = i == 0 ? static_cast<char*>(s.pcs[0]) + 1 : s.pcs[i];
        if (absl::StrContains(symbolizer.name(pc), "burn_in_known_function")) {
          t.in_function += s.weight;
          break;
        }
      }
    });
  };
  for (auto until = std::chrono::steady_clock::now() + 30s;
       !stop() && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(20ms);
    take();
  }
  p.stop();
  take();
}

TEST(Profiler, ASpinningFiberOwnsItsThreadsSamples) {
  std::atomic<Reactor*> loop{nullptr};
  std::atomic<bool> started{false}, finished{false};
  std::thread t([&] {
    absl::Status s = Reactor::run([&] {
      loop = Reactor::current();
      while (!started) (void)sleep_for(1ms);
      auto burner = spawn("burner", [] { burn_in_known_function(200'000'000); });
      burner->join();
      finished = true;
    });
    EXPECT_TRUE(s.ok()) << s;
  });
  while (loop == nullptr) std::this_thread::sleep_for(1ms);
  absl::StatusOr<std::unique_ptr<Profiler>> p = Profiler::start({loop.load()}, 1ms);
  ASSERT_TRUE(p.ok()) << p.status();
  // One at a time.
  absl::StatusOr<std::unique_ptr<Profiler>> second = Profiler::start({loop.load()}, 1ms);
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  started = true;
  Tally tally;
  collect(**p, tally, [&] { return finished.load(); });
  t.join();
  EXPECT_EQ((*p)->dropped(), 0u);
  // 200 ms of CPU at 1 kHz: 200 periods (the kernel counts the periods a late signal missed).
  EXPECT_GE(tally.burner, 180u) << tally.total;
  EXPECT_GT(tally.burner, tally.total * 8 / 10) << tally.total;
#if !defined(REACTOR_TSAN)
  // Under TSan the handler runs from TSan's own frames at the clock read; the root is the same.
  EXPECT_GT(tally.in_function, tally.burner * 8 / 10) << tally.burner;
#endif
  p->reset();
  EXPECT_TRUE(Profiler::start({}, 1ms).status().code() == absl::StatusCode::kInvalidArgument);
}

// A reactor destroyed while it is profiled stops being sampled: the signals that still arrive on
// its thread record nothing (and read nothing of the freed reactor: ASan would say so).
TEST(Profiler, AReactorDestroyedWhileProfiledIsNoLongerSampled) {
  std::atomic<Reactor*> loop{nullptr};
  std::atomic<bool> started{false}, destroyed{false}, stop{false};
  std::thread t([&] {
    {
      absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::create({});
      ASSERT_TRUE(r.ok()) << r.status();
      loop = r->get();
      while (!started) std::this_thread::yield();
      r->reset();  // while the profile's timer still fires
    }
    destroyed = true;
    while (!stop) std::this_thread::yield();  // the thread lives on and is still signalled
  });
  while (loop == nullptr) std::this_thread::sleep_for(1ms);
  absl::StatusOr<std::unique_ptr<Profiler>> p =
      Profiler::start({loop.load()}, 100us, Profiler::Clock::kMonotonic);
  ASSERT_TRUE(p.ok()) << p.status();
  std::this_thread::sleep_for(20ms);  // samples of the live reactor
  started = true;
  while (!destroyed) std::this_thread::sleep_for(1ms);
  size_t before = 0;
  (*p)->drain([&](size_t, const ProfileSample&) { ++before; });
  std::this_thread::sleep_for(50ms);  // 500 periods after it was destroyed
  size_t after = 0;
  (*p)->drain([&](size_t, const ProfileSample&) { ++after; });
  (*p)->stop();
  stop = true;
  t.join();
  EXPECT_GT(before, 0u);
  EXPECT_EQ(after, 0u);
}

TEST(Profiler, AnIdleSpinningLoopSamplesAsSpin) {
  std::atomic<Reactor*> loop{nullptr};
  std::atomic<bool> done{false};
  std::thread t([&] {
    Reactor::Options o;
    o.idle = IdleMode::kSpin;
    absl::Status s = Reactor::run(
        [&] {
          loop = Reactor::current();
          while (!done) (void)sleep_for(5ms);  // nothing runnable between: the loop spins
        },
        o);
    EXPECT_TRUE(s.ok()) << s;
  });
  while (loop == nullptr) std::this_thread::sleep_for(1ms);
  absl::StatusOr<std::unique_ptr<Profiler>> p = Profiler::start({loop.load()}, 1ms);
  ASSERT_TRUE(p.ok()) << p.status();
  Tally tally;
  collect(**p, tally, [&] { return tally.total >= 50; });
  done = true;
  t.join();
  EXPECT_GE(tally.total, 50u);
  // Nearly all its CPU goes to the spin; the scheduler's timer work and the main fiber's wake-ups
  // take a little.
  EXPECT_GT(tally.spin, tally.total * 8 / 10) << tally.total;
}

}  // namespace
}  // namespace reactor
