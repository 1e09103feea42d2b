// Execution contexts and the switch between them (layer 1).
//
// A Context is a suspended stack: its saved stack pointer plus what the sanitizers need to follow
// a switch (ASan's stack bounds and fake stack, TSan's fiber handle). The switch itself is the
// hand-written assembly in switch_{x86_64,aarch64}.S: callee-saved registers, no system call; and
// with switch_context_fp the floating-point control state as well. Everything here is used by one
// thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {
void reactor_switch_context(void** save_sp, void* load_sp);
void reactor_switch_context_fp(void** save_sp, void* load_sp);
void reactor_fiber_trampoline();
}

namespace reactor::detail {

struct Context {
  void* sp = nullptr;
  // Stack bounds for ASan: lowest usable address and size. Unknown (null) for a thread's own stack
  // until the first switch away from it reports them.
  const void* stack_bottom = nullptr;
  size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;
};

// The floating-point control state that switch_context_fp saves and loads: x86-64's MXCSR (SSE
// rounding, exception masks and sticky flags) and x87 control word, AArch64's FPCR.
struct FpControl {
#if defined(__x86_64__)
  uint32_t mxcsr = 0x1F80;
  uint16_t x87 = 0x037F;
#else
  uint64_t fpcr = 0;
#endif
};

// The running thread's.
inline FpControl live_fp_control() {
  FpControl c;
#if defined(__x86_64__)
  asm volatile("stmxcsr %0" : "=m"(c.mxcsr));
  asm volatile("fnstcw %0" : "=m"(c.x87));
#elif defined(__aarch64__)
  asm volatile("mrs %0, fpcr" : "=r"(c.fpcr));
#endif
  return c;
}

// Writes `c` into the frame of a context suspended at `sp` (by either switch, or made by
// make_context), where switch_context_fp loads it from when it resumes that context.
inline void set_frame_fp_control(void* sp, const FpControl& c) {
  auto* frame = static_cast<uint64_t*>(sp);
#if defined(__x86_64__)
  frame[0] = c.x87;    // fldcw reads the low 16 bits
  frame[1] = c.mxcsr;  // ldmxcsr the low 32
#elif defined(__aarch64__)
  frame[20] = c.fpcr;  // byte 160 of the 176-byte frame
#endif
}

// The frame reactor_switch_context pops on the first switch to a new stack [bottom, bottom+size),
// written at its top: returns the stack pointer to save. Inline: every spawn builds one.
inline void* initial_frame(void* bottom, size_t size, void (*entry)(void*), void* arg) {
  auto top = reinterpret_cast<uintptr_t>(bottom) + size;
  top &= ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top);
#if defined(__x86_64__)
  // Mirrors the frame reactor_switch_context pops, from the new sp upwards: x87 control word,
  // MXCSR, r15, r14, r13, r12, rbx, rbp, return address. After `ret` the stack is 16-byte aligned
  // as the trampoline's call requires.
  frame -= 9;
  // The control words of the thread making the context (as pthread_create and Boost's
  // make_fcontext give them), for switch_context_fp, which loads them unconditionally: writing
  // MXCSR with a value other than the live one is slow on some CPUs (docs/benchmarks.md).
  // switch_context leaves them alone.
  uint32_t mxcsr = 0;
  uint16_t x87 = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87));
  frame[0] = x87;                                // x87 control word
  frame[1] = mxcsr;                              // MXCSR
  frame[2] = 0;                                  // r15
  frame[3] = 0;                                  // r14
  frame[4] = reinterpret_cast<uint64_t>(entry);  // r13
  frame[5] = reinterpret_cast<uint64_t>(arg);    // r12
  frame[6] = 0;                                  // rbx
  frame[7] = 0;                                  // rbp: ends frame-pointer walks
  frame[8] = reinterpret_cast<uint64_t>(&reactor_fiber_trampoline);
#elif defined(__aarch64__)
  // The 176-byte frame of switch_aarch64.S: x19..x30, d8..d15, FPCR (the creating thread's, as
  // above).
  frame -= 22;
  std::memset(frame, 0, 22 * sizeof(uint64_t));
  asm volatile("mrs %0, fpcr" : "=r"(frame[20]));
  frame[0] = reinterpret_cast<uint64_t>(arg);                         // x19
  frame[1] = reinterpret_cast<uint64_t>(entry);                       // x20
  frame[11] = reinterpret_cast<uint64_t>(&reactor_fiber_trampoline);  // x30
#else
#error "reactor: no context switch for this architecture (x86-64 and aarch64 are supported)"
#endif
  return frame;
}

// Prepares `ctx` so that the first switch to it runs entry(arg) on the stack [bottom, bottom+size).
// `entry` must never return: it ends by switching away with switch_context(..., finishing=true).
// Inline where no sanitizer needs to hear of the new stack.
#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
void make_context(Context* ctx, void* bottom, size_t size, void (*entry)(void*), void* arg);
#else
inline void make_context(Context* ctx, void* bottom, size_t size, void (*entry)(void*), void* arg) {
  ctx->sp = initial_frame(bottom, size, entry, arg);
  ctx->stack_bottom = bottom;
  ctx->stack_size = size;
}
#endif

// Makes `ctx` describe the calling thread's own stack (the scheduler context).
void init_thread_context(Context* ctx);

// Saves the running context into `from` and resumes `to`. With finishing=true, `from` is never
// resumed again (ASan frees its fake stack). Without sanitizers it is the assembly routine itself,
// inline, so that the switch lands straight in its caller's code (no wrapper frame to return
// through on the other stack). The floating-point control state stays as it is: both sides share
// it.
//
// switch_context_fp: the same, and it also saves the live floating-point control state in
// `from`'s frame and loads the one in `to`'s (FpControl; set_frame_fp_control writes it). Either
// resumes a context suspended by either.
#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
void switch_context(Context* from, Context* to, bool finishing = false);
void switch_context_fp(Context* from, Context* to, bool finishing = false);
#else
inline void switch_context(Context* from, Context* to, bool /*finishing*/ = false) {
  reactor_switch_context(&from->sp, to->sp);
}
inline void switch_context_fp(Context* from, Context* to, bool /*finishing*/ = false) {
  reactor_switch_context_fp(&from->sp, to->sp);
}
#endif

// Releases sanitizer state of a context made by make_context that will not run again. Inline
// without TSan: nothing to release (a spawn and an end pay no call for it).
#if defined(REACTOR_TSAN)
void destroy_context(Context* ctx);
#else
inline void destroy_context(Context* ctx) {
  *ctx = Context{};
}
#endif

// Called first thing on a new context, to complete the switch that started it. Inline and empty
// without ASan.
#if defined(REACTOR_ASAN)
void on_context_start(Context* from);
#else
inline void on_context_start(Context* /*from*/) {}
#endif

}  // namespace reactor::detail
