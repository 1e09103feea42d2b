#include "reactor/context.h"

#include <cstdint>
#include <cstring>

#if defined(REACTOR_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(REACTOR_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace reactor::detail {

void make_context(Context* ctx, void* bottom, size_t size, void (*entry)(void*), void* arg) {
#if defined(REACTOR_ASAN)
  // A pooled stack keeps the poisoned redzones of the fiber that used it last.
  __asan_unpoison_memory_region(bottom, size);
#endif
  auto top = reinterpret_cast<uintptr_t>(bottom) + size;
  top &= ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top);
#if defined(__x86_64__)
  // Mirrors the frame reactor_switch_context pops, from the new sp upwards: x87 control word,
  // MXCSR, r15, r14, r13, r12, rbx, rbp, return address. After `ret` the stack is 16-byte aligned
  // as the trampoline's call requires.
  frame -= 9;
  // The control words of the thread making the context (as pthread_create and Boost's
  // make_fcontext give them): the switch loads them unconditionally, and writing MXCSR with a
  // value other than the live one is slow on some CPUs (docs/benchmarks.md).
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
  // The 176-byte frame of switch_aarch64.S: x19..x30, d8..d15, FPCR.
  frame -= 22;
  std::memset(frame, 0, 22 * sizeof(uint64_t));
  frame[0] = reinterpret_cast<uint64_t>(arg);                         // x19
  frame[1] = reinterpret_cast<uint64_t>(entry);                       // x20
  frame[11] = reinterpret_cast<uint64_t>(&reactor_fiber_trampoline);  // x30
#else
#error "reactor: no context switch for this architecture (x86-64 and aarch64 are supported)"
#endif
  ctx->sp = frame;
  ctx->stack_bottom = bottom;
  ctx->stack_size = size;
#if defined(REACTOR_TSAN)
  ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
}

void init_thread_context(Context* ctx) {
  *ctx = Context{};
#if defined(REACTOR_TSAN)
  ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
void switch_context(Context* from, Context* to, bool finishing) {
#if defined(REACTOR_ASAN)
  __sanitizer_start_switch_fiber(finishing ? nullptr : &from->asan_fake_stack, to->stack_bottom,
                                 to->stack_size);
#else
  (void)finishing;
#endif
#if defined(REACTOR_TSAN)
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  reactor_switch_context(&from->sp, to->sp);
  // Resumed: whoever switched to us was running on some other context.
#if defined(REACTOR_ASAN)
  const void* old_bottom = nullptr;
  size_t old_size = 0;
  __sanitizer_finish_switch_fiber(from->asan_fake_stack, &old_bottom, &old_size);
#endif
}
#endif

#if defined(REACTOR_ASAN)
void on_context_start(Context* from) {
  // Learns the bounds of the stack we came from (the thread's own stack on the first switch).
  __sanitizer_finish_switch_fiber(nullptr, &from->stack_bottom, &from->stack_size);
}
#endif

#if defined(REACTOR_TSAN)
void destroy_context(Context* ctx) {
  if (ctx->tsan_fiber != nullptr) __tsan_destroy_fiber(ctx->tsan_fiber);
  *ctx = Context{};
}
#endif

}  // namespace reactor::detail
