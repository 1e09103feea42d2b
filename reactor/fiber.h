// Fibers (layer 1) and the scheduling hooks the layers above use: park the running fiber, make a
// parked one runnable. A fiber runs only on the thread of the reactor that spawned it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "reactor/context.h"
#include "reactor/stack.h"
#include "reactor/time.h"
#include "reactor/timer.h"

namespace reactor {
class Reactor;
}

namespace reactor::detail {

enum class FiberState : uint8_t { kRunnable, kRunning, kParked, kDone };

// What a fiber runs. The reactor calls run() once on the fiber: it runs the body and ends with what
// release() does (one virtual call per fiber, not two). A fiber abandoned with its reactor before
// run() returned gets release() instead. Either ends the reactor's use of the body.
struct FiberBody {
  virtual ~FiberBody() = default;
  virtual void run() = 0;
  virtual void release() = 0;
};

// The fiber's name packed in atomic words, for threads that read a running fiber's name without
// a lock (the watchdog): fiber records are reused, never freed while their reactor lives.
class PackedName {
 public:
  static constexpr size_t kWords = 6;  // 47 characters and a terminator
  void set(const std::string& name);
  std::string get() const;
  // The name, NUL-terminated, without allocating: async-signal-safe. Any thread.
  void copy(char (&out)[kWords * 8]) const;

 private:
  std::atomic<uint64_t> words_[kWords] = {};
};

// Laid out for the cache: what waking, resuming and parking a fiber touch lies in its first two
// lines (a request on a connection's fiber touches no other line of its record), the rest after.
// At 1,000 connections each request's fiber record is cold; callgrind's cache simulation counted
// the record's lines among the misses per request (docs/benchmarks.md).
struct alignas(64) Fiber {
  // Line 0: wake (state, reactor, next_ready, ready_at, wake_status), resume (saved_stack),
  // park (the flags, park_op, wake_status) and the slice's length.
  FiberState state = FiberState::kRunnable;
  bool cancel_requested = false;
  bool park_cancellable = true;
  // Its code allows its stack's pages to be released while it waits for an fd
  // (allow_stack_release), and the reactor releases idle stacks.
  bool stack_releasable = false;
  bool park_releasable = false;  // parked in a wait that lets its stack be released (an fd's)
  // Its floating-point control state is its own (own_fp_control): switches to and from it save
  // and load it. Others share the loop thread's.
  bool own_fp_control = false;
  Reactor* reactor = nullptr;
  Fiber* next_ready = nullptr;
  Deadline ready_at{};               // when it last became runnable
  std::byte* saved_stack = nullptr;  // released: the live part [context.sp, stack.top()), copied
  absl::Status wake_status;
  const char* park_op = nullptr;  // what the fiber is waiting for, while parked
  int64_t last_slice_ns = 0;
  // Line 1: the slice's end (stack.guarded, slices) and the switch (context.sp; the context's
  // other fields serve the sanitizers only).
  Stack stack;
  uint64_t slices = 0;
  Context context;
  // The rest: spawn, the watchdog's snapshots, deadlines, the end.
  std::atomic<uint64_t> id{0};  // read by the watchdog to check a snapshot is consistent
  std::string name;
  PackedName packed_name;
  TimerNode deadline;          // armed while parked with a deadline
  Fiber* next_free = nullptr;  // on the reactor's list of records not in use
  Fiber* prev_alive = nullptr;
  Fiber* next_alive = nullptr;
  Deadline created{};         // the loop's clock when it was spawned (the spawning slice's start)
  FiberBody* body = nullptr;  // owned: released when the fiber ends
};
static_assert(offsetof(Fiber, stack) == 64, "the first line holds what a wake and a park touch");
static_assert(offsetof(Fiber, context) + sizeof(void*) <= 128, "context.sp in the second line");

// The fiber running on this thread, or null in scheduler context. Loop thread.
Fiber* current_fiber();

// Suspends the running fiber until wake() or, with a deadline, until it passes (DeadlineExceeded)
// or, if cancellable, until the fiber is cancelled (Cancelled; at once if already cancelled).
// `op` names the wait in error messages. `releasable`: nothing but the fiber itself touches its
// stack during this wait (the wait for an fd's readiness: the kernel writes nothing there), so the
// reactor may release the stack's pages if the fiber allowed it (allow_stack_release). Loop
// thread, inside a fiber.
absl::Status park(Deadline deadline, const char* op, bool cancellable = true,
                  bool releasable = false);

// Makes a parked fiber runnable; park() returns `status`. False, doing nothing, if the fiber was
// not parked (already woken by its deadline or a cancel). Loop thread of the fiber's reactor.
bool wake(Fiber* fiber, absl::Status status);
// wake(fiber, absl::OkStatus()) in fewer instructions: a parked fiber's status is OK already.
bool wake(Fiber* fiber);

// What is left of the running fiber's I/O budget; the reactor refills it at every resume.
extern constinit thread_local uint32_t t_io_budget;
// The budget ran out: yields the running fiber (nothing outside a fiber). Loop thread.
void io_budget_spent();

// An I/O call of the running fiber completed without suspending: it spends one unit of the
// fiber's budget (Reactor::kIoBudget per slice). Inline: every I/O call that completes pays it.
// Loop thread.
inline void count_io() {
  if (t_io_budget > 0) --t_io_budget;
}

// A fiber whose budget is spent goes to the back of the run queue and the loop polls next, so a
// peer that always has data ready cannot hold the loop. Called only where the caller's buffer is
// not in use: before an input call (before the kernel writes it), after an output call that took
// all of it; never between a recv and its return (the echo service reads every connection of a
// shard into one buffer on the readiness backends). Loop thread.
inline void yield_if_io_budget_spent() {
  if (t_io_budget == 0) [[unlikely]]
    io_budget_spent();
}

// count_io() and, if that spent the budget, the yield at once: for calls after which the caller
// holds nothing the kernel wrote (sends). Loop thread.
inline void spend_io_budget() {
  count_io();
  yield_if_io_budget_spent();
}

}  // namespace reactor::detail
