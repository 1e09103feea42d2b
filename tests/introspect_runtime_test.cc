// The frame walk behind `fibers --stacks`: a fiber parked in Channel::pop shows pop and the
// function that called it; the running fiber's own stack; a corrupt frame chain never leads the
// walk outside the stack it was given.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "reactor/channel.h"
#include "reactor/fiber_stack.h"
#include "reactor/reactor.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using test::run_fiber;

// Named, not inlined, so that its frame shows under Channel::pop.
__attribute__((noinline)) int wait_in_channel_pop(Channel<int>& ch) {
  absl::StatusOr<int> v = ch.pop();
  return v.ok() ? *v : -1;
}

__attribute__((noinline)) std::vector<Reactor::FiberInfo> snapshot_from_here() {
  return Reactor::current()->fibers_snapshot(SIZE_MAX, 32);
}

const Reactor::FiberInfo* find(const std::vector<Reactor::FiberInfo>& fibers,
                               const std::string& name) {
  for (const auto& f : fibers) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// The index of the first frame containing `needle`, or -1.
int frame_index(const std::vector<std::string>& frames, const std::string& needle) {
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].find(needle) != std::string::npos) return static_cast<int>(i);
  }
  return -1;
}

TEST(FiberStack, ParkedInChannelPopShowsPopAndItsCaller) {
  std::vector<std::string> frames;
  size_t omitted = 99;
  run_fiber([&] {
    Channel<int> ch(1);
    auto consumer = spawn("consumer", [&] { return wait_in_channel_pop(ch); });
    ASSERT_TRUE(consumer.ok());
    yield();  // the consumer runs and parks in pop
    std::vector<Reactor::FiberInfo> fibers = snapshot_from_here();
    const Reactor::FiberInfo* f = find(fibers, "consumer");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->waiting_on, "Channel::pop");
    FrameSymbolizer symbolizer;
    frames = symbolizer.names(f->frames);
    omitted = f->frames_omitted;
    ASSERT_TRUE(ch.push(7).ok());
    EXPECT_EQ(consumer->join(), 7);
  });
  const std::string all = absl::StrJoin(frames, "\n");
  const int pop = frame_index(frames, "Channel<>::pop");
  const int caller = frame_index(frames, "wait_in_channel_pop");
  ASSERT_GE(pop, 0) << all;
  ASSERT_GT(caller, pop) << all;  // below it: innermost first
  // Starts at the suspension point: the parking machinery above pop is dropped.
  EXPECT_LE(pop, 1) << all;
  EXPECT_FALSE(absl::StrContains(frames.front(), "switch_context")) << all;
  EXPECT_EQ(omitted, 0u) << all;
}

TEST(FiberStack, RunningFiberWalksItsOwnStack) {
  std::vector<std::string> frames;
  run_fiber([&] {
    std::vector<Reactor::FiberInfo> fibers = snapshot_from_here();
    const Reactor::FiberInfo* self = nullptr;
    for (const auto& f : fibers) {
      if (f.state == "running") self = &f;
    }
    ASSERT_NE(self, nullptr);
    FrameSymbolizer symbolizer;
    frames = symbolizer.names(self->frames);
  });
  EXPECT_GE(frame_index(frames, "snapshot_from_here"), 0) << absl::StrJoin(frames, "\n");
}

TEST(FiberStack, FrameLimitCountsWhatIsLeftOut) {
  run_fiber([&] {
    Channel<int> ch(1);
    auto consumer = spawn("consumer", [&] { return wait_in_channel_pop(ch); });
    ASSERT_TRUE(consumer.ok());
    yield();
    const auto all = Reactor::current()->fibers_snapshot(SIZE_MAX, 64);
    const auto two = Reactor::current()->fibers_snapshot(SIZE_MAX, 2);
    const Reactor::FiberInfo* a = find(all, "consumer");
    const Reactor::FiberInfo* b = find(two, "consumer");
    ASSERT_TRUE(a && b);
    ASSERT_GT(a->frames.size(), 2u);
    EXPECT_EQ(b->frames.size(), 2u);
    EXPECT_EQ(b->frames_omitted, a->frames.size() + a->frames_omitted - 2);
    EXPECT_EQ(Reactor::current()->fibers_snapshot(1, 0).size(), 1u);
    EXPECT_TRUE(Reactor::current()->fibers_snapshot(SIZE_MAX, 0)[0].frames.empty());
    ASSERT_TRUE(ch.push(1).ok());
    (void)consumer->join();
  });
}

TEST(FiberStack, CorruptChainStaysInsideTheStack) {
  // A fake stack of 64 words; frame records at words 8 and 20.
  std::vector<uintptr_t> stack(64, 0);
  const auto lo = reinterpret_cast<uintptr_t>(stack.data());
  const auto hi = lo + stack.size() * sizeof(uintptr_t);
  auto at = [&](size_t w) { return lo + w * sizeof(uintptr_t); };
  // A proper chain ending with fp 0.
  stack[8] = at(20);
  stack[9] = 0x1111;
  stack[20] = 0;
  stack[21] = 0x2222;
  FrameWalk w = walk_frame_chain(at(8), reinterpret_cast<void*>(0x1000), lo, hi, 16);
  EXPECT_EQ(w.pcs,
            (std::vector<void*>{reinterpret_cast<void*>(0x1000), reinterpret_cast<void*>(0x1111),
                                reinterpret_cast<void*>(0x2222)}));
  // A cycle (pointing back down) ends the walk.
  stack[20] = at(8);
  w = walk_frame_chain(at(8), nullptr, lo, hi, 16);
  EXPECT_EQ(w.pcs.size(), 2u);
  // A pointer out of the bounds, above or below, is never read.
  stack[20] = hi + 64;
  EXPECT_EQ(walk_frame_chain(at(8), nullptr, lo, hi, 16).pcs.size(), 2u);
  stack[20] = at(62);  // its return address word would be the last one: still inside
  stack[63] = 0x3333;
  EXPECT_EQ(walk_frame_chain(at(8), nullptr, lo, hi, 16).pcs.size(), 3u);
  stack[20] = at(63);  // the record would straddle the top
  EXPECT_EQ(walk_frame_chain(at(8), nullptr, lo, hi, 16).pcs.size(), 2u);
  EXPECT_TRUE(walk_frame_chain(lo - 64, nullptr, lo, hi, 16).pcs.empty());
  EXPECT_TRUE(walk_frame_chain(at(8) + 1, nullptr, lo, hi, 16).pcs.empty());  // misaligned
  // A saved stack pointer outside the stack gives nothing.
  EXPECT_TRUE(
      walk_parked_stack(reinterpret_cast<void*>(hi), stack.data(), reinterpret_cast<void*>(hi), 16)
          .pcs.empty());
}

}  // namespace
}  // namespace reactor
