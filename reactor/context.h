// Execution contexts and the switch between them (layer 1).
//
// A Context is a suspended stack: its saved stack pointer plus what the sanitizers need to follow
// a switch (ASan's stack bounds and fake stack, TSan's fiber handle). The switch itself is the
// hand-written assembly in switch_{x86_64,aarch64}.S: callee-saved registers and the floating-point
// control state, no system call. Everything here is used by one thread at a time.
#pragma once

#include <cstddef>

extern "C" {
void reactor_switch_context(void** save_sp, void* load_sp);
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

// Prepares `ctx` so that the first switch to it runs entry(arg) on the stack [bottom, bottom+size).
// `entry` must never return: it ends by switching away with switch_context(..., finishing=true).
void make_context(Context* ctx, void* bottom, size_t size, void (*entry)(void*), void* arg);

// Makes `ctx` describe the calling thread's own stack (the scheduler context).
void init_thread_context(Context* ctx);

// Saves the running context into `from` and resumes `to`. With finishing=true, `from` is never
// resumed again (ASan frees its fake stack). Without sanitizers it is the assembly routine itself,
// inline, so that the switch lands straight in its caller's code (no wrapper frame to return
// through on the other stack).
#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
void switch_context(Context* from, Context* to, bool finishing = false);
#else
inline void switch_context(Context* from, Context* to, bool /*finishing*/ = false) {
  reactor_switch_context(&from->sp, to->sp);
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
