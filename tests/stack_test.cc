// Fiber stacks: overflow reports (guard page and canary), pooling, and 100,000 fibers at once.
#include <cstring>
#include <vector>

#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;

// Recurses with 512-byte frames until the stack runs out (the limit only keeps the compiler from
// calling the recursion infinite; 1 GiB of frames is never reached).
volatile int g_depth_limit = 1 << 21;
__attribute__((noinline)) int recurse(int depth) {
  volatile char frame[512];
  std::memset(const_cast<char*>(frame), depth & 0xff, sizeof frame);
  if (depth >= g_depth_limit) return frame[0];
  return recurse(depth + 1) + frame[depth % sizeof frame];
}

void overflow_in_fiber(Reactor::Options options) {
  (void)Reactor::run(
      [] {
        auto t = spawn("deep", [] { return recurse(0); });
        if (t.ok()) (void)t->join();
      },
      options);
}

TEST(StackDeathTest, GuardPageOverflowNamesFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(overflow_in_fiber({}), "fiber 'deep' overflowed its 64 KiB stack");
}

TEST(StackDeathTest, GuardPageOverflowReportsConfiguredSize) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Reactor::Options o;
  o.stack_size = 128 * 1024;
  EXPECT_DEATH(overflow_in_fiber(o), "fiber 'deep' overflowed its 128 KiB stack");
}

// A stack without a guard page gets a canary in its lowest bytes; the switch away from a fiber
// that broke it reports the overflow. (The write below stands in for a frame that reached it.)
TEST(StackDeathTest, BrokenCanaryIsReportedAtTheNextSwitch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Reactor::Options o;
  o.max_guarded_stacks = 0;
  EXPECT_DEATH((void)Reactor::run(
                   [] {
                     auto t = spawn("canary-breaker", [] {
                       detail::Fiber* self = detail::current_fiber();
                       EXPECT_FALSE(self->stack.guarded);
                       std::memset(self->stack.bottom(), 0, 16);
                       yield();
                     });
                     if (t.ok()) t->join();
                   },
                   o),
               "fiber 'canary-breaker' overflowed its 64 KiB stack");
}

TEST(Stack, PoolReusesStacks) {
  size_t cached_after = 0;
  uint64_t created = 0;
  ASSERT_TRUE(Reactor::run([&] {
                for (int i = 0; i < 100; ++i) {
                  auto t = spawn("short", [] {});
                  ASSERT_TRUE(t.ok());
                  t->join();
                }
                Reactor* r = Reactor::current();
                cached_after = r->stacks().cached();
                created = r->stats().fibers_created.get();
              }).ok());
  EXPECT_EQ(created, 101u);  // main + 100
  // Each short fiber's stack went back to the pool and was taken again by the next.
  EXPECT_LE(cached_after, 2u);
  EXPECT_GE(cached_after, 1u);
}

TEST(Stack, GuardLimitSwitchesToCanaries) {
  Reactor::Options o;
  o.max_guarded_stacks = 3;
  size_t guarded = 0, canary = 0;
  ASSERT_TRUE(Reactor::run(
                  [&] {
                    Event release;
                    std::vector<Task<void>> tasks;
                    for (int i = 0; i < 10; ++i) {
                      auto t = spawn("w", [&] { (void)release.wait(); });
                      ASSERT_TRUE(t.ok());
                      tasks.push_back(*std::move(t));
                    }
                    yield();
                    guarded = Reactor::current()->stacks().guarded_in_use();
                    canary = Reactor::current()->stacks().canary_in_use();
                    release.set();
                    join_all(tasks);
                  },
                  o)
                  .ok());
  EXPECT_EQ(guarded, 3u);       // main + 2 workers
  EXPECT_EQ(canary, 11u - 3u);  // the rest
}

// 100,000 fibers alive at once, each sleeping; every spawn succeeds and the two kinds of stack add
// up. With the default vm.max_map_count only about 32,700 of them can have a guard page.
TEST(Stack, HundredThousandFibersAlive) {
#if defined(REACTOR_TSAN)
  constexpr int kFibers = 5'000;  // TSan allots each fiber thread state; 100k exhausts it
#else
  constexpr int kFibers = 100'000;
#endif
  size_t guarded = 0, canary = 0, alive = 0;
  int finished = 0;
  Reactor::Options o;
  o.max_cached_stacks = 64;
  ASSERT_TRUE(Reactor::run(
                  [&] {
                    Event release;
                    std::vector<Task<void>> tasks;
                    tasks.reserve(kFibers);
                    for (int i = 0; i < kFibers; ++i) {
                      auto t = spawn("sleeper", [&] {
                        ASSERT_TRUE(release.wait(deadline_after(60s)).ok());
                        ++finished;
                      });
                      ASSERT_TRUE(t.ok()) << "spawn " << i << ": " << t.status();
                      tasks.push_back(*std::move(t));
                    }
                    ASSERT_TRUE(sleep_for(1ms).ok());  // every fiber has run and now waits
                    Reactor* r = Reactor::current();
                    alive = r->fibers_alive();
                    guarded = r->stacks().guarded_in_use();
                    canary = r->stacks().canary_in_use();
                    EXPECT_EQ(r->stats().stacks_guarded.get() + r->stats().stacks_canary.get(),
                              static_cast<uint64_t>(kFibers + 1));
                    release.set();
                    join_all(tasks);
                  },
                  o)
                  .ok());
  EXPECT_EQ(finished, kFibers);
  EXPECT_EQ(alive, static_cast<size_t>(kFibers + 1));
  EXPECT_EQ(guarded + canary, static_cast<size_t>(kFibers + 1));
  EXPECT_GT(guarded, 0u);
  EXPECT_LE(guarded, guarded_stack_budget());
}

}  // namespace
}  // namespace reactor
