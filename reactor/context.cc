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

#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
void make_context(Context* ctx, void* bottom, size_t size, void (*entry)(void*), void* arg) {
#if defined(REACTOR_ASAN)
  // A pooled stack keeps the poisoned redzones of the fiber that used it last.
  __asan_unpoison_memory_region(bottom, size);
#endif
  ctx->sp = initial_frame(bottom, size, entry, arg);
  ctx->stack_bottom = bottom;
  ctx->stack_size = size;
#if defined(REACTOR_TSAN)
  ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
}
#endif

void init_thread_context(Context* ctx) {
  *ctx = Context{};
#if defined(REACTOR_TSAN)
  ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

#if defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
namespace {

// Tells the sanitizers, then switches with `routine` (one of the two assembly switches).
void annotated_switch(void (*routine)(void**, void*), Context* from, Context* to, bool finishing) {
#if defined(REACTOR_ASAN)
  __sanitizer_start_switch_fiber(finishing ? nullptr : &from->asan_fake_stack, to->stack_bottom,
                                 to->stack_size);
#else
  (void)finishing;
#endif
#if defined(REACTOR_TSAN)
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  routine(&from->sp, to->sp);
  // Resumed: whoever switched to us was running on some other context.
#if defined(REACTOR_ASAN)
  const void* old_bottom = nullptr;
  size_t old_size = 0;
  __sanitizer_finish_switch_fiber(from->asan_fake_stack, &old_bottom, &old_size);
#endif
}

}  // namespace

void switch_context(Context* from, Context* to, bool finishing) {
  annotated_switch(&reactor_switch_context, from, to, finishing);
}

void switch_context_fp(Context* from, Context* to, bool finishing) {
  annotated_switch(&reactor_switch_context_fp, from, to, finishing);
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
