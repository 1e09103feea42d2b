// The context switch keeps what each fiber owns of the CPU: the callee-saved registers always;
// MXCSR (SSE rounding and exception masks) and the x87 control word (rounding and precision) for
// a fiber that owns them (own_fp_control), while the others share the loop thread's. Two fibers
// set different values and yield to each other many times; each must find its own values after
// every switch; a new fiber starts with the values of the code that spawned it.
#include <execinfo.h>
#include <fpu_control.h>
#include <signal.h>
#include <ucontext.h>
#include <xmmintrin.h>

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "reactor/context.h"
#include "reactor/fiber_stack.h"
#include "reactor/reactor.h"

#if defined(__x86_64__)

namespace reactor {
namespace {

constexpr int kRounds = 200;

// MXCSR without the six sticky exception flags.
uint32_t mxcsr_control() {
  return _mm_getcsr() & ~0x3Fu;
}

uint16_t x87_control() {
  fpu_control_t cw;
  _FPU_GETCW(cw);
  return static_cast<uint16_t>(cw);
}

void set_x87_control(uint16_t value) {
  fpu_control_t cw = value;
  _FPU_SETCW(cw);
}

// What fibers "a" and "b" saw, a value a round, and the main fiber's state before they ran and
// after.
template <class T>
struct Seen {
  std::vector<T> a, b;
  T main_before{}, main_after{};
};

// On a fresh reactor, fibers "a" and "b" run `fiber(value_a, &seen.a)` and
// `fiber(value_b, &seen.b)`, yielding to each other, each after own_fp_control() if `own`;
// `main()` samples the main fiber's state before and after.
template <class T, class V, class Fiber, class Main>
Seen<T> run_two_fibers(V value_a, V value_b, Fiber fiber, Main main, bool own = true) {
  Seen<T> seen;
  const absl::Status ran = Reactor::run([&] {
    seen.main_before = main();
    auto a = spawn("a", [&] {
      if (own) own_fp_control();
      fiber(value_a, &seen.a);
    });
    auto b = spawn("b", [&] {
      if (own) own_fp_control();
      fiber(value_b, &seen.b);
    });
    ASSERT_TRUE(a.ok() && b.ok());
    a->join();
    b->join();
    seen.main_after = main();
  });
  EXPECT_TRUE(ran.ok()) << ran;
  return seen;
}

// A fiber body for run_two_fibers: `set(value)` once, then `read()` after each of kRounds yields.
template <class Set, class Read>
auto set_then_read_each_round(Set set, Read read) {
  return [=](auto value, auto* seen) {
    set(value);
    for (int i = 0; i < kRounds; ++i) {
      yield();
      seen->push_back(read());
    }
  };
}

// `seen` holds kRounds values and `ok` holds for each; a failure names the first round it fails.
template <class T, class Pred>
::testing::AssertionResult every_round(const std::vector<T>& seen, Pred ok) {
  if (seen.size() != static_cast<size_t>(kRounds)) {
    return ::testing::AssertionFailure() << seen.size() << " rounds, not " << kRounds;
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (!ok(seen[i])) {
      return ::testing::AssertionFailure()
             << "round " << i << " saw 0x" << std::hex << static_cast<uint64_t>(seen[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(ContextSwitch, EachFiberThatOwnsItKeepsItsOwnMxcsr) {
  const Seen<uint32_t> seen = run_two_fibers<uint32_t>(
      0x6000u, 0x2000u,  // round toward zero, round down
      set_then_read_each_round(
          [](uint32_t rounding) { _mm_setcsr((_mm_getcsr() & ~0x6000u) | rounding); },
          mxcsr_control),
      mxcsr_control);
  EXPECT_TRUE(every_round(seen.a, [](uint32_t v) { return (v & 0x6000u) == 0x6000u; }))
      << "fiber a";
  EXPECT_TRUE(every_round(seen.b, [](uint32_t v) { return (v & 0x6000u) == 0x2000u; }))
      << "fiber b";
  // Neither fiber's rounding mode leaked into the main fiber.
  EXPECT_EQ(seen.main_after, seen.main_before);
}

TEST(ContextSwitch, EachFiberThatOwnsItKeepsItsOwnX87ControlWord) {
  // Rounding control is bits 10-11, precision control bits 8-9.
  const uint16_t base = static_cast<uint16_t>(_FPU_DEFAULT & ~0x0F00);
  const uint16_t a_cw = static_cast<uint16_t>(base | 0x0C00 | 0x0000);  // toward zero, single
  const uint16_t b_cw = static_cast<uint16_t>(base | 0x0400 | 0x0200);  // down, double
  const Seen<uint16_t> seen = run_two_fibers<uint16_t>(
      a_cw, b_cw, set_then_read_each_round(set_x87_control, x87_control), x87_control);
  EXPECT_TRUE(every_round(seen.a, [&](uint16_t cw) { return cw == a_cw; })) << "fiber a";
  EXPECT_TRUE(every_round(seen.b, [&](uint16_t cw) { return cw == b_cw; })) << "fiber b";
  EXPECT_EQ(seen.main_after, seen.main_before);
}

// Fibers that do not own it share the loop thread's state: what one sets, the other finds after
// its yields (the plain switch saves and loads none of it), and the main fiber after them.
TEST(ContextSwitch, FibersThatDoNotOwnItShareTheLoopThreadsMxcsr) {
  const uint32_t before = _mm_getcsr();
  Seen<uint32_t> seen = run_two_fibers<uint32_t>(
      0x6000u, 0u,  // a: round toward zero; b: sets nothing (0)
      [](uint32_t rounding, std::vector<uint32_t>* out) {
        if (rounding != 0) _mm_setcsr((_mm_getcsr() & ~0x6000u) | rounding);
        for (int i = 0; i < kRounds; ++i) {
          yield();
          out->push_back(mxcsr_control());
        }
      },
      mxcsr_control, /*own=*/false);
  _mm_setcsr(before);
  EXPECT_TRUE(every_round(seen.a, [](uint32_t v) { return (v & 0x6000u) == 0x6000u; }))
      << "fiber a";
  EXPECT_TRUE(every_round(seen.b, [](uint32_t v) { return (v & 0x6000u) == 0x6000u; }))
      << "fiber b found the shared state not a's";
  EXPECT_EQ(seen.main_after & 0x6000u, 0x6000u);
}

// One fiber owns its state, one shares the thread's, and the main fiber shares it too: the
// owner's rounding reaches neither of the others, and the shared rounding that the sharing fiber
// sets survives every trip through the owner (by hand-off and by the scheduler) and reaches the
// main fiber.
TEST(ContextSwitch, AnOwnersStateNeitherLeaksNorIsOverwritten) {
  const uint32_t before = _mm_getcsr();
  const uint16_t cw_before = x87_control();
  std::vector<uint32_t> owner_seen, sharer_seen;
  std::vector<uint16_t> owner_cw, sharer_cw;
  uint32_t main_after = 0;
  const absl::Status ran = Reactor::run([&] {
    auto owner = spawn("owner", [&] {
      own_fp_control();
      _mm_setcsr((_mm_getcsr() & ~0x6000u) | 0x6000u);                             // toward zero
      set_x87_control(static_cast<uint16_t>((x87_control() & ~0x0C00) | 0x0C00));  // toward zero
      for (int i = 0; i < kRounds; ++i) {
        yield();
        owner_seen.push_back(mxcsr_control());
        owner_cw.push_back(x87_control());
      }
    });
    auto sharer = spawn("sharer", [&] {
      _mm_setcsr((_mm_getcsr() & ~0x6000u) | 0x2000u);                             // down
      set_x87_control(static_cast<uint16_t>((x87_control() & ~0x0C00) | 0x0400));  // down
      for (int i = 0; i < kRounds; ++i) {
        yield();
        sharer_seen.push_back(mxcsr_control());
        sharer_cw.push_back(x87_control());
      }
    });
    ASSERT_TRUE(owner.ok() && sharer.ok());
    owner->join();
    sharer->join();
    main_after = mxcsr_control();
  });
  _mm_setcsr(before);
  set_x87_control(cw_before);
  ASSERT_TRUE(ran.ok()) << ran;
  EXPECT_TRUE(every_round(owner_seen, [](uint32_t v) { return (v & 0x6000u) == 0x6000u; }))
      << "owner";
  EXPECT_TRUE(every_round(owner_cw, [](uint16_t v) { return (v & 0x0C00) == 0x0C00; }))
      << "owner, x87";
  EXPECT_TRUE(every_round(sharer_seen, [](uint32_t v) { return (v & 0x6000u) == 0x2000u; }))
      << "sharer";
  EXPECT_TRUE(every_round(sharer_cw, [](uint16_t v) { return (v & 0x0C00) == 0x0400; }))
      << "sharer, x87";
  EXPECT_EQ(main_after & 0x6000u, 0x2000u) << "the main fiber shares the sharer's";
}

// Two fibers share the thread's state and a third owns its own, all yielding in turn: each time
// the second sharer runs again it finds the rounding mode the first one set last, although the
// owner ran in between and the second one was suspended, with an older value live, by the plain
// switch (which saved nothing).
TEST(ContextSwitch, TheSharedStateReachesEverySharerAcrossAnOwner) {
  const uint32_t before = _mm_getcsr();
  uint32_t last_set = 0;
  std::vector<bool> matched;
  const absl::Status ran = Reactor::run([&] {
    bool stop = false;
    auto setter = spawn("setter", [&] {
      for (int i = 0; i < kRounds; ++i) {
        last_set = (i % 2 == 0) ? 0x6000u : 0x2000u;  // toward zero, down
        _mm_setcsr((_mm_getcsr() & ~0x6000u) | last_set);
        yield();
      }
      stop = true;
    });
    auto owner = spawn("owner", [&] {
      own_fp_control();
      _mm_setcsr((_mm_getcsr() & ~0x6000u) | 0x4000u);  // up: its own
      while (!stop) yield();
    });
    auto reader = spawn("reader", [&] {
      while (!stop) {
        yield();
        if (last_set != 0) matched.push_back((mxcsr_control() & 0x6000u) == last_set);
      }
    });
    ASSERT_TRUE(setter.ok() && owner.ok() && reader.ok());
    setter->join();
    owner->join();
    reader->join();
  });
  _mm_setcsr(before);
  ASSERT_TRUE(ran.ok()) << ran;
  ASSERT_GE(matched.size(), static_cast<size_t>(kRounds / 2));
  for (size_t i = 0; i < matched.size(); ++i) ASSERT_TRUE(matched[i]) << "read " << i;
}

// A fiber starts with the control words live where it was spawned, as a thread does with its
// creator's (make_context copies them into the new frame).
TEST(ContextSwitch, NewFiberStartsWithItsSpawnersControlWords) {
  uint32_t spawner_mxcsr = 0, fiber_mxcsr = 0;
  uint16_t spawner_cw = 0, fiber_cw = 0;
  const absl::Status ran = Reactor::run([&] {
    const uint32_t mxcsr_before = _mm_getcsr();
    const uint16_t cw_before = x87_control();
    _mm_setcsr((mxcsr_before & ~0x6000u) | 0x6000u);                         // round toward zero
    set_x87_control(static_cast<uint16_t>((cw_before & ~0x0C00) | 0x0400));  // round down
    spawner_mxcsr = mxcsr_control();
    spawner_cw = x87_control();
    auto child = spawn("child", [&] {
      fiber_mxcsr = mxcsr_control();
      fiber_cw = x87_control();
    });
    ASSERT_TRUE(child.ok());
    child->join();
    _mm_setcsr(mxcsr_before);
    set_x87_control(cw_before);
  });
  ASSERT_TRUE(ran.ok()) << ran;
  EXPECT_EQ(fiber_mxcsr, spawner_mxcsr);
  EXPECT_EQ(spawner_mxcsr & 0x6000u, 0x6000u);
  EXPECT_EQ(fiber_cw, spawner_cw);
  EXPECT_EQ(spawner_cw & 0x0C00, 0x0400);
}

}  // namespace
}  // namespace reactor

// uint64_t reactor_test_call_keeping(void (*fn)(void*, void*), void* a, void* b, uint64_t seed)
//   Loads rbx, rbp, r12-r15 with values derived from `seed`, calls fn(a, b) (which switches away
//   and back), and returns how many of the six registers no longer hold their value.
extern "C" uint64_t reactor_test_call_keeping(void (*fn)(void*, void*), void* a, void* b,
                                              uint64_t seed);
asm(R"(
        .pushsection .text
        .globl  reactor_test_call_keeping
        .type   reactor_test_call_keeping, @function
reactor_test_call_keeping:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        movq    %rcx, (%rsp)
        movq    %rdi, %rax
        movq    %rsi, %rdi
        movq    %rdx, %rsi
        movq    %rcx, %rbx
        leaq    1(%rcx), %rbp
        leaq    2(%rcx), %r12
        leaq    3(%rcx), %r13
        leaq    4(%rcx), %r14
        leaq    5(%rcx), %r15
        callq   *%rax
        movq    (%rsp), %rsi
        xorl    %eax, %eax
        xorl    %ecx, %ecx
        .macro  count_lost reg, offset      # %rax += (reg != seed + offset)
        leaq    \offset(%rsi), %rdx
        cmpq    %rdx, \reg
        setne   %cl
        addq    %rcx, %rax
        .endm
        count_lost %rbx, 0
        count_lost %rbp, 1
        count_lost %r12, 2
        count_lost %r13, 3
        count_lost %r14, 4
        count_lost %r15, 5
        .purgem count_lost
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        retq
        .size   reactor_test_call_keeping, .-reactor_test_call_keeping
        .popsection
)");

namespace reactor {
namespace {

void suspend_twice(void*, void*) {
  yield();
  yield();
}

// Through the reactor: two fibers suspend with their own register values live.
TEST(ContextSwitch, EachFiberKeepsItsCalleeSavedRegisters) {
  const Seen<uint64_t> lost = run_two_fibers<uint64_t>(
      0x1111000000000000ull, 0x2222000000000000ull,
      [](uint64_t seed, std::vector<uint64_t>* out) {
        for (int i = 0; i < kRounds; ++i) {
          out->push_back(
              reactor_test_call_keeping(&suspend_twice, nullptr, nullptr, seed + 16 * i));
        }
      },
      [] { return uint64_t{0}; });
  EXPECT_TRUE(every_round(lost.a, [](uint64_t n) { return n == 0; })) << "registers fiber a lost";
  EXPECT_TRUE(every_round(lost.b, [](uint64_t n) { return n == 0; })) << "registers fiber b lost";
}

// The switch alone, with no compiled frame between the registers' owner and the switch that
// could save them itself: a bare context made by make_context and the thread's own.
#if !defined(REACTOR_ASAN) && !defined(REACTOR_TSAN)
using SwitchRoutine = void (*)(void**, void*);

struct Bounce {
  SwitchRoutine routine = nullptr;
  void* main_sp = nullptr;
  void* fiber_sp = nullptr;
  std::vector<uint64_t> lost_in_fiber;
};

[[noreturn]] void bounce_entry(void* arg) {
  auto* b = static_cast<Bounce*>(arg);
  for (uint64_t i = 0;; ++i) {
    b->lost_in_fiber.push_back(
        reactor_test_call_keeping(reinterpret_cast<void (*)(void*, void*)>(b->routine),
                                  &b->fiber_sp, b->main_sp, 0x4444000000000000ull + 16 * i));
  }
}

void bounce_and_check_registers(SwitchRoutine routine) {
  alignas(16) static std::byte stack[64 * 1024];
  Bounce b;
  b.routine = routine;
  detail::Context fiber;
  detail::make_context(&fiber, stack, sizeof stack, &bounce_entry, &b);
  b.fiber_sp = fiber.sp;
  std::vector<uint64_t> lost_in_main;
  for (int i = 0; i < kRounds; ++i) {
    lost_in_main.push_back(
        reactor_test_call_keeping(reinterpret_cast<void (*)(void*, void*)>(routine), &b.main_sp,
                                  b.fiber_sp, 0x3333000000000000ull + 16 * i));
  }
  ASSERT_EQ(lost_in_main.size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(b.lost_in_fiber.size(), static_cast<size_t>(kRounds - 1));
  for (int i = 0; i < kRounds; ++i) ASSERT_EQ(lost_in_main[i], 0u) << "main, round " << i;
  for (int i = 0; i < kRounds - 1; ++i) ASSERT_EQ(b.lost_in_fiber[i], 0u) << "fiber, round " << i;
}

TEST(ContextSwitch, TheSwitchItselfKeepsCalleeSavedRegisters) {
  bounce_and_check_registers(&reactor_switch_context);
}

TEST(ContextSwitch, TheFpSwitchItselfKeepsCalleeSavedRegisters) {
  bounce_and_check_registers(&reactor_switch_context_fp);
}

// Every instruction of the switch can be unwound from: the profiler and the watchdog call
// backtrace() from a signal that may land anywhere in it. The test single-steps one switch (the
// trap flag, a SIGTRAP after each instruction), takes a backtrace at each instruction inside
// reactor_switch_context, and checks that the frame after the interrupted one is a return address
// in the runtime: with the pushes undescribed, the unwinder took a saved register for it.
extern "C" char reactor_switch_context_end[];

constexpr int kMaxSteps = 256, kStepFrames = 8;
struct Step {
  uintptr_t rip = 0;
  int n = 0;
  void* pcs[kStepFrames] = {};
};
Step g_steps[kMaxSteps];
int g_step_count = 0;
bool g_stepped_inside = false;

void on_trap(int, siginfo_t*, void* context) {
  auto* uc = static_cast<ucontext_t*>(context);
  const auto rip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  const auto lo = reinterpret_cast<uintptr_t>(&reactor_switch_context);
  const auto hi = reinterpret_cast<uintptr_t>(reactor_switch_context_end);
  if (rip >= lo && rip < hi) {
    g_stepped_inside = true;
    if (g_step_count < kMaxSteps) {
      Step& s = g_steps[g_step_count++];
      s.rip = rip;
      s.n = ::backtrace(s.pcs, kStepFrames);
    }
  } else if (g_stepped_inside) {
    uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;  // out of the switch again: stop stepping
  }
}

[[gnu::noinline]] void set_trap_flag() {
  asm volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::: "memory", "cc");
}

// Single-steps one yield of the main fiber to "other" (both owning their floating-point state if
// `own`: the switch is then reactor_switch_context_fp) and checks every instruction's unwind.
void step_one_switch_and_check_unwinds(bool own) {
  g_step_count = 0;
  g_stepped_inside = false;
  void* warm[4];
  (void)::backtrace(warm, 4);  // loads libgcc's unwinder now, not in the handler
  struct sigaction sa {
  }, old{};
  sa.sa_sigaction = &on_trap;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(::sigaction(SIGTRAP, &sa, &old), 0);
  absl::Status s = Reactor::run([own] {
    if (own) own_fp_control();
    auto other = spawn("other", [own] {
      if (own) own_fp_control();
      for (int i = 0; i < 3; ++i) yield();
    });
    ASSERT_TRUE(other.ok());
    yield();  // "other" starts and parks in yield(): the stepped switch resumes a real frame
    set_trap_flag();
    yield();  // one switch single-stepped; the handler stops stepping once it is left
    other->join();
  });
  ::sigaction(SIGTRAP, &old, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_GE(g_step_count, 20) << "the switch was not stepped through";
  FrameSymbolizer symbolizer;
  for (int i = 0; i < g_step_count; ++i) {
    const Step& st = g_steps[i];
    int k = 0;  // the interrupted frame: the handler and the signal trampoline come first
    while (k < st.n && reinterpret_cast<uintptr_t>(st.pcs[k]) != st.rip) ++k;
    ASSERT_LT(k + 1, st.n) << "no frame after the switch at offset "
                           << st.rip - reinterpret_cast<uintptr_t>(&reactor_switch_context);
    const std::string& caller = symbolizer.name(st.pcs[k + 1]);
    EXPECT_TRUE(absl::StrContains(caller, "reactor::"))
        << "at offset " << st.rip - reinterpret_cast<uintptr_t>(&reactor_switch_context)
        << " the caller is " << caller;
  }
}

TEST(ContextSwitch, EveryInstructionOfTheSwitchUnwinds) {
  step_one_switch_and_check_unwinds(false);
}

TEST(ContextSwitch, EveryInstructionOfTheFpSwitchUnwinds) {
  step_one_switch_and_check_unwinds(true);
}
#else
TEST(ContextSwitch, TheSwitchItselfKeepsCalleeSavedRegisters) {
  GTEST_SKIP() << "a bare switch without the sanitizers' fiber annotations confuses ASan and "
                  "TSan; the debug suite runs it";
}
TEST(ContextSwitch, EveryInstructionOfTheSwitchUnwinds) {
  GTEST_SKIP() << "single-stepping (a SIGTRAP per instruction) through the sanitizers' switch "
                  "hooks and signal interception tests them, not the switch; the debug suite "
                  "runs it";
}
TEST(ContextSwitch, TheFpSwitchItselfKeepsCalleeSavedRegisters) {
  GTEST_SKIP() << "as TheSwitchItselfKeepsCalleeSavedRegisters: the debug suite runs it";
}
TEST(ContextSwitch, EveryInstructionOfTheFpSwitchUnwinds) {
  GTEST_SKIP() << "as EveryInstructionOfTheSwitchUnwinds: the debug suite runs it";
}
#endif

}  // namespace
}  // namespace reactor

#else
TEST(ContextSwitch, KeepsRegistersAndFloatingPointControl) {
  GTEST_SKIP() << "these checks are written for x86-64; the aarch64 switch is not tested here";
}
#endif  // __x86_64__
