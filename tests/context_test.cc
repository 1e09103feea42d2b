// The context switch keeps what each fiber owns of the CPU: the callee-saved registers, MXCSR
// (SSE rounding and exception masks) and the x87 control word (rounding and precision). Two
// fibers set different values and yield to each other many times; each must find its own values
// after every switch. The switch skips loading MXCSR / the control word when they are equal, so
// the tests also check that a value that differs is loaded.
#include <fpu_control.h>
#include <xmmintrin.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/context.h"
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

TEST(ContextSwitch, EachFiberKeepsItsOwnMxcsr) {
  std::vector<uint32_t> seen_a, seen_b;
  uint32_t scheduler_before = 0, scheduler_after = 0;
  const absl::Status ran = Reactor::run([&] {
    scheduler_before = mxcsr_control();
    auto fiber = [&](uint32_t rounding, std::vector<uint32_t>* seen) {
      const uint32_t mine = (_mm_getcsr() & ~0x6000u) | rounding;
      _mm_setcsr(mine);
      for (int i = 0; i < kRounds; ++i) {
        yield();
        seen->push_back(mxcsr_control());
      }
    };
    auto a = spawn("a", [&] { fiber(0x6000u, &seen_a); });  // round toward zero
    auto b = spawn("b", [&] { fiber(0x2000u, &seen_b); });  // round down
    ASSERT_TRUE(a.ok() && b.ok());
    a->join();
    b->join();
    scheduler_after = mxcsr_control();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  ASSERT_EQ(seen_a.size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(seen_b.size(), static_cast<size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(seen_a[i] & 0x6000u, 0x6000u) << "fiber a, round " << i;
    ASSERT_EQ(seen_b[i] & 0x6000u, 0x2000u) << "fiber b, round " << i;
  }
  // Neither fiber's rounding mode leaked into the main fiber.
  EXPECT_EQ(scheduler_after, scheduler_before);
}

TEST(ContextSwitch, EachFiberKeepsItsOwnX87ControlWord) {
  std::vector<uint16_t> seen_a, seen_b;
  uint16_t main_before = 0, main_after = 0;
  // Rounding control is bits 10-11, precision control bits 8-9.
  const uint16_t base = static_cast<uint16_t>(_FPU_DEFAULT & ~0x0F00);
  const uint16_t a_cw = static_cast<uint16_t>(base | 0x0C00 | 0x0000);  // toward zero, single
  const uint16_t b_cw = static_cast<uint16_t>(base | 0x0400 | 0x0200);  // down, double
  const absl::Status ran = Reactor::run([&] {
    main_before = x87_control();
    auto fiber = [&](uint16_t cw, std::vector<uint16_t>* seen) {
      set_x87_control(cw);
      for (int i = 0; i < kRounds; ++i) {
        yield();
        seen->push_back(x87_control());
      }
    };
    auto a = spawn("a", [&] { fiber(a_cw, &seen_a); });
    auto b = spawn("b", [&] { fiber(b_cw, &seen_b); });
    ASSERT_TRUE(a.ok() && b.ok());
    a->join();
    b->join();
    main_after = x87_control();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  ASSERT_EQ(seen_a.size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(seen_b.size(), static_cast<size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(seen_a[i], a_cw) << "fiber a, round " << i;
    ASSERT_EQ(seen_b[i], b_cw) << "fiber b, round " << i;
  }
  EXPECT_EQ(main_after, main_before);
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
        cmpq    %rsi, %rbx
        setne   %cl
        addq    %rcx, %rax
        leaq    1(%rsi), %rdx
        cmpq    %rdx, %rbp
        setne   %cl
        addq    %rcx, %rax
        leaq    2(%rsi), %rdx
        cmpq    %rdx, %r12
        setne   %cl
        addq    %rcx, %rax
        leaq    3(%rsi), %rdx
        cmpq    %rdx, %r13
        setne   %cl
        addq    %rcx, %rax
        leaq    4(%rsi), %rdx
        cmpq    %rdx, %r14
        setne   %cl
        addq    %rcx, %rax
        leaq    5(%rsi), %rdx
        cmpq    %rdx, %r15
        setne   %cl
        addq    %rcx, %rax
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
  std::vector<uint64_t> lost_a, lost_b;
  const absl::Status ran = Reactor::run([&] {
    auto fiber = [&](uint64_t seed, std::vector<uint64_t>* lost) {
      for (int i = 0; i < kRounds; ++i) {
        lost->push_back(reactor_test_call_keeping(&suspend_twice, nullptr, nullptr, seed + 16 * i));
      }
    };
    auto a = spawn("a", [&] { fiber(0x1111000000000000ull, &lost_a); });
    auto b = spawn("b", [&] { fiber(0x2222000000000000ull, &lost_b); });
    ASSERT_TRUE(a.ok() && b.ok());
    a->join();
    b->join();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  ASSERT_EQ(lost_a.size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(lost_b.size(), static_cast<size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(lost_a[i], 0u) << "fiber a lost registers in round " << i;
    ASSERT_EQ(lost_b[i], 0u) << "fiber b lost registers in round " << i;
  }
}

// The switch alone, with no compiled frame between the registers' owner and the switch that
// could save them itself: a bare context made by make_context and the thread's own.
#if !defined(REACTOR_ASAN) && !defined(REACTOR_TSAN)
struct Bounce {
  void* main_sp = nullptr;
  void* fiber_sp = nullptr;
  std::vector<uint64_t> lost_in_fiber;
};

[[noreturn]] void bounce_entry(void* arg) {
  auto* b = static_cast<Bounce*>(arg);
  for (uint64_t i = 0;; ++i) {
    b->lost_in_fiber.push_back(
        reactor_test_call_keeping(reinterpret_cast<void (*)(void*, void*)>(&reactor_switch_context),
                                  &b->fiber_sp, b->main_sp, 0x4444000000000000ull + 16 * i));
  }
}

TEST(ContextSwitch, TheSwitchItselfKeepsCalleeSavedRegisters) {
  alignas(16) static std::byte stack[64 * 1024];
  Bounce b;
  detail::Context fiber;
  detail::make_context(&fiber, stack, sizeof stack, &bounce_entry, &b);
  b.fiber_sp = fiber.sp;
  std::vector<uint64_t> lost_in_main;
  for (int i = 0; i < kRounds; ++i) {
    lost_in_main.push_back(
        reactor_test_call_keeping(reinterpret_cast<void (*)(void*, void*)>(&reactor_switch_context),
                                  &b.main_sp, b.fiber_sp, 0x3333000000000000ull + 16 * i));
  }
  ASSERT_EQ(lost_in_main.size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(b.lost_in_fiber.size(), static_cast<size_t>(kRounds - 1));
  for (int i = 0; i < kRounds; ++i) ASSERT_EQ(lost_in_main[i], 0u) << "main, round " << i;
  for (int i = 0; i < kRounds - 1; ++i) ASSERT_EQ(b.lost_in_fiber[i], 0u) << "fiber, round " << i;
}
#else
TEST(ContextSwitch, TheSwitchItselfKeepsCalleeSavedRegisters) {
  GTEST_SKIP() << "a bare switch without the sanitizers' fiber annotations confuses ASan and "
                  "TSan; the debug suite runs it";
}
#endif

}  // namespace
}  // namespace reactor

#else
TEST(ContextSwitch, KeepsRegistersAndFloatingPointControl) {
  GTEST_SKIP() << "these checks are written for x86-64; the aarch64 switch is not tested here";
}
#endif  // __x86_64__
