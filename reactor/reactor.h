// The reactor (layer 3): one per thread — run queue, timers and an I/O backend — scheduling fibers
// cooperatively. A fiber runs until it reaches a suspension point (I/O, sleep, join, a sync
// primitive, yield); nothing else preempts it.
//
//   reactor::Reactor::run([] {
//     auto a = reactor::spawn("A", [] { reactor::sleep_for(200ms); return 1; });
//     return a->join();
//   });
//
// Thread contracts: methods say who may call them. "Loop thread" means the thread that created the
// reactor; debug and sanitizer builds check it.
#pragma once

#include <sys/types.h>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/backend.h"
#include "reactor/fiber.h"
#include "reactor/loop_clock.h"
#include "reactor/stack.h"
#include "reactor/stats.h"
#include "reactor/task.h"
#include "reactor/thread_check.h"
#include "reactor/timer.h"

namespace reactor {

class Reactor;

// What a loop does when no fiber is runnable and no post is queued (runtime.idle).
enum class IdleMode : uint8_t {
  kBlock,     // wait in the kernel until I/O, the next timer or a post
  kSpin,      // never sleep: poll with a zero timeout until something is runnable or a timer is due
  kAdaptive,  // spin for Options::spin after the last work, then block
};
// "block", "spin", "adaptive". Any thread.
std::string_view idle_mode_name(IdleMode mode);

namespace detail {
// The part of a reactor other threads post to; outlives the reactor while anyone holds it, so a
// late post (an offload finishing after shutdown) is dropped instead of touching freed memory.
class Inbox {
 public:
  explicit Inbox(Backend* backend) : backend_(backend) {}
  // Queues fn to run on the loop thread in scheduler context; false if the reactor is gone.
  // Writes the backend's wakeup only when the loop sleeps (between begin_sleep and end_sleep)
  // and nothing was queued before fn: a loop that is awake takes the queue before it sleeps,
  // and a queue that was not empty has had its wakeup written. `defer_wakeup`: the caller's own
  // loop is about to poll (Backend::wakeup_deferred), as when a fiber parks right after.
  bool post(absl::AnyInvocable<void()> fn, bool defer_wakeup = false);
  // Takes everything queued. Loop thread.
  std::vector<absl::AnyInvocable<void()>> take();
  bool pending() const { return pending_.load(std::memory_order_acquire); }
  // Loop thread, before a wait in the backend that may block: from here on a post wakes it.
  // False, changing nothing, when a post is already queued (then do not block).
  bool begin_sleep();
  // Loop thread, after that wait.
  void end_sleep() { sleeping_.store(false, std::memory_order_relaxed); }
  // How many wakeups posts have written. Any thread.
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }
  void close();

 private:
  std::mutex mu_;
  std::vector<absl::AnyInvocable<void()>> items_;
  // pending_ and sleeping_ are a Dekker pair (sequentially consistent): a post stores pending_
  // then reads sleeping_, the loop stores sleeping_ then reads pending_, so at least one of them
  // sees the other and no post is left asleep in the queue.
  std::atomic<bool> pending_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<uint64_t> wakeups_{0};
  Backend* backend_;  // null once closed
};

// The reactor of this thread, or null (Reactor::current()).
extern constinit thread_local Reactor* t_reactor;
}  // namespace detail

class Reactor {
 public:
  struct Options {
    std::string backend = "auto";  // auto, epoll (io_uring and libevent: see backends/)
    BackendParams backend_params;  // backend-specific settings (io_uring's SQPOLL)
    size_t stack_size = 64 * 1024;
    size_t max_cached_stacks = 1024;
    // Guarded stacks beyond this get a canary; the process-wide budget from vm.max_map_count
    // applies as well.
    size_t max_guarded_stacks = SIZE_MAX;
    IdleMode idle = IdleMode::kBlock;
    Duration spin = std::chrono::microseconds(50);  // how long kAdaptive spins before it blocks
    // A fiber that allowed it (allow_stack_release) and has waited this long for an fd gives its
    // stack's pages back to the kernel (madvise MADV_DONTNEED); the few hundred bytes of its
    // stack still in use wait in a heap copy and are put back when it resumes. Zero: never.
    // Released between one and one and a half times this after it last ran (a sweep every half
    // of it while such a fiber lives).
    Duration release_idle_stacks = Duration::zero();
  };

  // Creates a reactor bound to the calling thread (at most one per thread). Fails if the backend
  // cannot be created, naming why.
  static absl::StatusOr<std::unique_ptr<Reactor>> create(Options options);
  static absl::StatusOr<std::unique_ptr<Reactor>> create() { return create(Options{}); }
  // Loop thread. Fibers still alive are abandoned (their stacks unmapped, destructors not run):
  // use run() or stop fibers first.
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // asyncio.run(): creates a reactor on the calling thread, runs main() in a fiber named "main"
  // until it returns, cancels the fibers still alive and waits for them, then returns main's
  // value (or rethrows its exception). Fails only if the reactor cannot be created.
  template <class F, class R = std::invoke_result_t<F>>
  static auto run(F&& main, Options options = {})
      -> std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>>;

  // The reactor of the calling thread, or null. Any thread.
  static Reactor* current() { return detail::t_reactor; }

  // Starts fn() in a new fiber, runnable at once; the name is copied (only when it differs from
  // the reused fiber record's last one). Fails (ResourceExhausted) only when no stack can be
  // mapped. Loop thread.
  template <class F, class R = std::invoke_result_t<F>>
  absl::StatusOr<Task<R>> spawn(std::string_view name, F&& fn);

  // Runs the loop until done() returns true (asked after each batch; a null done never does) or
  // stop(). Loop thread, outside
  // fibers.
  void run_until(const std::function<bool()>& done);
  void run_until_stopped() { run_until(nullptr); }
  // Makes run_until() return after the current batch. Any thread.
  void stop();

  // Runs fn on this reactor's loop thread in scheduler context (fn must not suspend). False if
  // the reactor is being destroyed. Any thread.
  bool post(absl::AnyInvocable<void()> fn) { return inbox_->post(std::move(fn)); }
  // Runs fn in a new fiber on this reactor. Any thread; wakes the loop.
  bool submit(std::string name, absl::AnyInvocable<void()> fn);
  std::shared_ptr<detail::Inbox> inbox() const { return inbox_; }

  // The backend: for I/O on the loop thread; name() and counters() from any thread.
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }
  const ReactorStats& stats() const { return stats_; }
  const StackPool& stacks() const { return stacks_; }
  // Fixed at creation. Any thread.
  IdleMode idle_mode() const { return options_.idle; }
  // Fibers spawned and not yet ended. Loop thread.
  size_t fibers_alive() const { return alive_count_; }

  // Cancels every fiber alive but the calling one. Loop thread.
  void cancel_all();

  // ---- observability ----
  struct FiberInfo {
    uint64_t id;
    std::string name;
    std::string_view state;       // "running", "runnable", "waiting"
    std::string_view waiting_on;  // the suspension point, while waiting
    double age_seconds;
    int64_t last_slice_ns;
    uint64_t slices;
    size_t stack_used;  // bytes between the stack's top and its saved stack pointer
    size_t stack_size;
    bool stack_released = false;  // its pages given back while it waits (release_idle_stacks)
    // With max_frames > 0: the return addresses of its stack, innermost first (fiber_stack.h).
    std::vector<void*> frames;
    size_t frames_omitted = 0;
  };
  // Fibers alive, newest first, at most `max_fibers`, each with up to `max_frames` return
  // addresses (0: no stack walk, which costs nothing). Loop thread (the daemon publishes it as a
  // snapshot for other threads).
  std::vector<FiberInfo> fibers_snapshot(size_t max_fibers = SIZE_MAX, size_t max_frames = 0) const;
  // Slices over the slow-slice threshold, by fiber name without its "#N" suffix. Loop thread.
  std::vector<std::pair<std::string, uint64_t>> slow_slices_by_name() const;
  // Slices longer than this are counted as slow. Any thread.
  void set_slow_slice_threshold(Duration d) {
    slow_slice_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(),
                         std::memory_order_relaxed);
  }

  // What the loop is doing now, read without a lock (the watchdog). Any thread.
  struct CurrentSlice {
    bool in_slice = false;  // a fiber is running
    bool in_poll = false;   // waiting in poll
    int64_t start_ns = 0;   // CLOCK_MONOTONIC, when the fiber was resumed
    uint64_t fiber_id = 0;
    std::string fiber_name;
  };
  CurrentSlice current_slice() const;
  // What the loop thread is doing at this instant, for a signal handler running on that thread (a
  // sampling profiler): the running fiber, or the scheduler's own work, the backend's wait or an
  // idle spin. Lock-free relaxed loads only, so async-signal-safe. Loop thread (its signal
  // handlers included).
  struct Activity {
    enum class Kind : uint8_t { kScheduler, kFiber, kPoll, kSpin };
    Kind kind = Kind::kScheduler;
    const detail::Fiber* fiber = nullptr;  // kFiber: its record, whose packed_name names it
  };
  Activity activity() const {
    if (slice_start_ns_.load(std::memory_order_acquire) != 0) {
      return {Activity::Kind::kFiber, slice_fiber_.load(std::memory_order_relaxed)};
    }
    switch (in_poll_.load(std::memory_order_relaxed)) {
      case kInPoll:
        return {Activity::Kind::kPoll, nullptr};
      case kInSpin:
        return {Activity::Kind::kSpin, nullptr};
      default:
        return {};
    }
  }
  // The last slice that ran past the slow-slice threshold: when it started and how long it ran
  // (the watchdog uses it to report a stall's total). Any thread.
  struct LongSlice {
    int64_t start_ns = 0;
    int64_t duration_ns = 0;
  };
  LongSlice last_long_slice() const {
    LongSlice l;
    l.start_ns = long_slice_start_ns_.load(std::memory_order_acquire);
    l.duration_ns = long_slice_ns_.load(std::memory_order_relaxed);
    return l;
  }
  // The loop thread's kernel thread id and pthread handle. Any thread.
  pid_t thread_id() const { return tid_; }
  pthread_t thread_handle() const { return thread_handle_; }
  // The loop thread's own stack, [lo, hi) (pthread_getattr_np when the reactor was created; both 0
  // if it failed): where the scheduler and the poll run. Any thread.
  uintptr_t thread_stack_lo() const { return thread_stack_lo_; }
  uintptr_t thread_stack_hi() const { return thread_stack_hi_; }

  // Scheduling hooks (see fiber.h). Loop thread.
  detail::Fiber* current_fiber() const { return current_; }
  // Inline: the path without a deadline or a pending cancel is the one every wait for an fd takes.
  absl::Status park(Deadline deadline, const char* op, bool cancellable, bool releasable = false);
  bool wake(detail::Fiber* fiber, absl::Status status);
  // wake(fiber, OkStatus()) without touching the status: a parked fiber's is always OK (park()
  // leaves it so), which makes this the few instructions every readiness edge pays.
  bool wake_ok(detail::Fiber* fiber);
  // The running fiber's stack may be released while it waits for an fd (Options::
  // release_idle_stacks; nothing if that is zero). Its code promises that nothing outside the
  // fiber points into its stack while it waits: what others read or write (a connection's state,
  // a wait-list node) lives on the heap. Loop thread, inside a fiber.
  void allow_stack_release();
  // From now on the running fiber owns its floating-point control state (x86-64: MXCSR and the
  // x87 control word, so rounding mode, exception masks, flush-to-zero; AArch64: FPCR): what it
  // sets stays its own across its suspensions and does not reach other fibers, as with a thread.
  // Fibers that have not called it share the loop thread's state, as callbacks of one event loop
  // do: a switch between two of them saves and loads none of it (it costs about half the switch:
  // docs/benchmarks.md), so a fiber that changes it without this call changes it for every such
  // fiber. Does nothing outside a fiber. Loop thread, inside a fiber.
  void own_fp_control();
  // Stacks released now, in all. Loop thread (the stats: any thread).
  size_t stacks_released() const { return stacks_released_; }
  // How long a fiber that allowed it waits for an fd before its stack is released: zero when
  // stacks are never released (Options::release_idle_stacks zero, or the kernel refused). A fiber
  // whose receive holds a buffer (a completion backend) may give the buffer up after a while and
  // wait for readability instead, so that its stack can go too (services/echo.cc). Loop thread.
  // The loop's time as it last read it (at the end of the last slice or poll: at most the running
  // slice's length ago), without reading the clock. Loop thread.
  Deadline last_clock() const { return last_clock_; }
  Duration stack_release_after() const {
    return release_refused_ ? Duration::zero() : options_.release_idle_stacks;
  }
  void cancel(detail::Fiber* fiber);
  // Puts the running fiber at the back of the run queue. Loop thread, inside a fiber.
  void yield();
  // Yields the running fiber: its I/O budget is spent (detail::yield_if_io_budget_spent).
  // Loop thread.
  void spend_io_budget();
  static constexpr uint32_t kIoBudget = 32;
  // Sleeps until the deadline: OK, or Cancelled. Loop thread, inside a fiber.
  absl::Status sleep_until(Deadline deadline);
  detail::TimerHeap& timers() { return timers_; }

 private:
  explicit Reactor(Options options, std::unique_ptr<Backend> backend);
  // Takes `body` only on success; null on failure, with *error saying why.
  detail::Fiber* new_fiber(std::string_view name, detail::FiberBody* body, absl::Status* error);
  // new_fiber's rare parts, out of its line so that its fast path saves few registers: a stack
  // mapped because the pool's cache is empty (false, with *error, when that fails), a new fiber
  // record, a name other than the record's last one.
  [[gnu::cold, gnu::noinline]] bool map_stack(Stack* stack, std::string_view name,
                                              absl::Status* error);
  [[gnu::cold, gnu::noinline]] detail::Fiber* new_fiber_record();
  [[gnu::cold, gnu::noinline]] static void set_name(detail::Fiber* f, std::string_view name);
  static void fiber_entry(void* arg);
  void make_runnable(detail::Fiber* fiber);
  // Scheduler context: runs `fiber` (its slice, and the hand-offs that follow it).
  void resume(detail::Fiber* fiber);
  // Start and end of a fiber's slice: the statistics, the watchdog's view, the canary check.
  // Inline in resume() and suspend(), the only callers: no frame of their own. begin_slice's
  // fiber has its stack (suspend never hands off to a fiber whose stack is released).
  [[gnu::always_inline]] void begin_slice(detail::Fiber* fiber);
  // Ends the running fiber's (current_'s) slice.
  [[gnu::always_inline]] void end_slice();
  // end_slice's rare part: a slow slice, or a canary stack to check.
  [[gnu::cold, gnu::noinline]] void end_slice_cold(const detail::Fiber* f, int64_t slice);
  [[gnu::cold, gnu::noinline]] void note_slow_slice(const detail::Fiber* f, int64_t slice,
                                                    Deadline start);
  // The running fiber (current_) stops running — its state says why: parked, runnable again, or
  // done (then it never returns) — and switches to the next runnable fiber when the loop would run
  // that one next anyway (hand_off_target), else to the scheduler. Returns when it runs again.
  void suspend();
  [[gnu::always_inline]] detail::Fiber* hand_off_target();
  // The switch from `from` to `to`; `from_own`, `to_own`: whether each side owns its
  // floating-point control state (the scheduler never does). Between two that share it, the
  // plain switch; otherwise switch_fp.
  [[gnu::always_inline]] void switch_to(detail::Context* from, bool from_own, detail::Context* to,
                                        bool to_own, bool finishing = false) {
    if (!(from_own | to_own)) [[likely]] {
      detail::switch_context(from, to, finishing);
    } else {
      switch_fp(from, from_own, to, to_own, finishing);
    }
  }
  // The shared state is kept in shared_fp_ while a fiber that owns its own runs.
  [[gnu::cold, gnu::noinline]] void switch_fp(detail::Context* from, bool from_own,
                                              detail::Context* to, bool to_own, bool finishing);
  // park() with a deadline, a cancel to check, or outside a fiber (which aborts).
  absl::Status park_slow(Deadline deadline, const char* op, bool cancellable, bool releasable);
  // Where a switch lands (scheduler or fiber): frees the fiber that ended and switched here.
  void landed() {
    if (finished_ != nullptr) [[unlikely]]
      destroy_fiber(std::exchange(finished_, nullptr));
  }
  void destroy_fiber(detail::Fiber* fiber);
  // destroy_fiber's rare part: an armed deadline, a released stack, a body (abandoned fibers).
  [[gnu::cold, gnu::noinline]] void destroy_fiber_cold(detail::Fiber* fiber);
  void run_ready_batch();
  void drain_inbox();
  void poll_once(Duration timeout);
  void idle_wait(Deadline start, Duration timeout);
  // The release sweep (release_timer_): releases the stacks of fibers parked releasably for at
  // least Options::release_idle_stacks, at most kReleasesPerSweep at a time.
  static void fire_release_sweep(detail::TimerNode* node);
  void release_idle_stacks();
  void release_stack(detail::Fiber* f);
  [[gnu::cold, gnu::noinline]] void restore_stack(detail::Fiber* f);
  static constexpr size_t kReleasesPerSweep = 256;

  Options options_;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<detail::Inbox> inbox_;
  StackPool stacks_;
  detail::TimerHeap timers_;
  detail::FramePool frames_;  // freed task frames (task.h)
  detail::Context scheduler_context_;
  detail::Fiber* current_ = nullptr;
  detail::Fiber* ready_head_ = nullptr;
  detail::Fiber* ready_tail_ = nullptr;
  size_t ready_count_ = 0;
  // Fibers at the head of the run queue still to run in the current batch: until it reaches zero a
  // suspending fiber hands off to the head at once, exactly what the scheduler would do next.
  size_t batch_left_ = 0;
  Deadline slice_start_{};                  // when the running fiber's slice began
  detail::Context* switch_from_ = nullptr;  // the context the last switch left
  // The floating-point control state the fibers without their own share: taken when one of them
  // (or the scheduler) switches to a fiber that owns its own, given back when the switch returns.
  detail::FpControl shared_fp_;
  detail::Fiber* finished_ = nullptr;  // ended, switched away, not yet destroyed
  detail::Fiber* alive_head_ = nullptr;
  size_t alive_count_ = 0;
  uint64_t next_fiber_id_ = 1;
  std::atomic<bool> stop_requested_{false};
  LoopThreadCheck loop_thread_{"reactor"};  // the creating thread
  pthread_t thread_handle_;
  pid_t tid_;
  uintptr_t thread_stack_lo_ = 0, thread_stack_hi_ = 0;
  ReactorStats stats_;
  // Fiber records are reused and freed only with the reactor, so a published pointer to the
  // running fiber stays readable from other threads.
  std::vector<std::unique_ptr<detail::Fiber>> fiber_records_;
  detail::Fiber* free_fibers_ = nullptr;  // records not in use, linked through next_free
  // The current slice, published with relaxed stores (two per switch).
  std::atomic<int64_t> slice_start_ns_{0};
  std::atomic<detail::Fiber*> slice_fiber_{nullptr};
  // kNotInPoll, kInPoll (the backend's wait) or kInSpin (idle_wait's zero-timeout polls).
  static constexpr uint8_t kNotInPoll = 0, kInPoll = 1, kInSpin = 2;
  std::atomic<uint8_t> in_poll_{kNotInPoll};
  std::atomic<int64_t> slow_slice_ns_{10'000'000};
  std::atomic<int64_t> long_slice_start_ns_{0};
  std::atomic<int64_t> long_slice_ns_{0};
  LoopClock clock_;        // read at every slice's end: cheap (loop_clock.h)
  Deadline last_clock_{};  // the last time read on the loop
  static constexpr uint32_t kResumesPerPoll = 61;
  uint32_t resumes_since_poll_ = 0;
  Deadline last_poll_end_{};
  std::unordered_map<std::string, uint64_t> slow_by_name_;
  detail::TimerNode release_timer_;  // the sweep: armed while a fiber that allowed release lives
  size_t releasable_fibers_ = 0;     // alive fibers that allowed release
  bool release_refused_ = false;     // madvise failed once: releasing is off from then on
  size_t stacks_released_ = 0;
};

// Shorthands for the reactor of the calling thread. Loop thread, inside a fiber.
template <class F, class R = std::invoke_result_t<F>>
absl::StatusOr<Task<R>> spawn(std::string_view name, F&& fn) {
  return Reactor::current()->spawn(name, std::forward<F>(fn));
}
inline void yield() {
  Reactor::current()->yield();
}
// OK after the time passed, Cancelled if the fiber was cancelled first.
inline absl::Status sleep_until(Deadline deadline) {
  return Reactor::current()->sleep_until(deadline);
}
inline absl::Status sleep_for(Duration d) {
  return sleep_until(deadline_after(d));
}
// True once the running fiber has been asked to stop.
bool cancelled();
// Reactor::allow_stack_release for the running fiber. Loop thread, inside a fiber.
inline void allow_stack_release() {
  Reactor::current()->allow_stack_release();
}
// Reactor::own_fp_control for the running fiber. Loop thread, inside a fiber.
inline void own_fp_control() {
  Reactor::current()->own_fp_control();
}

// Runs fn in a new fiber on `target`, from any thread; wakes its loop. False if it is shutting
// down.
inline bool submit_to(Reactor& target, std::string name, absl::AnyInvocable<void()> fn) {
  return target.submit(std::move(name), std::move(fn));
}

// ---- implementation ----

inline void Reactor::make_runnable(detail::Fiber* f) {
  f->state = detail::FiberState::kRunnable;
  f->ready_at = last_clock_;
  f->next_ready = nullptr;
  (ready_tail_ ? ready_tail_->next_ready : ready_head_) = f;
  ready_tail_ = f;
  ++ready_count_;
}

inline absl::Status Reactor::park(Deadline deadline, const char* op, bool cancellable,
                                  bool releasable) {
  detail::Fiber* const f = current_;
  if (f == nullptr || deadline != kNoDeadline || (cancellable && f->cancel_requested))
      [[unlikely]] {
    return park_slow(deadline, op, cancellable, releasable);
  }
  f->state = detail::FiberState::kParked;
  f->park_op = op;
  f->park_cancellable = cancellable;
  f->park_releasable = releasable;  // the sweep reads it with ready_at (release_idle_stacks)
  suspend();
  f->park_op = nullptr;
  if (f->wake_status.ok()) [[likely]] {
    return absl::OkStatus();
  }
  return std::exchange(f->wake_status, absl::OkStatus());
}

inline void Reactor::yield() {
  make_runnable(current_);
  suspend();
}

inline bool Reactor::wake_ok(detail::Fiber* f) {
  if (f->state != detail::FiberState::kParked) return false;
  assert(f->wake_status.ok());
  make_runnable(f);
  return true;
}

inline bool Reactor::wake(detail::Fiber* f, absl::Status status) {
  if (f->state != detail::FiberState::kParked) return false;
  f->wake_status = std::move(status);
  make_runnable(f);
  return true;
}

inline absl::Status detail::WaitList::wait(Deadline deadline, const char* op, bool cancellable) {
  Reactor* const r = Reactor::current();
  Waiter w;
  w.fiber = r->current_fiber();
  push_back(&w);
  absl::Status s = r->park(deadline, op, cancellable);
  if (w.linked) remove(&w);
  return s;
}

inline bool detail::WaitList::wake_one() {
  while (Waiter* w = pop_front()) {
    if (w->fiber->reactor->wake_ok(w->fiber)) return true;
  }
  return false;
}

inline size_t detail::WaitList::wake_all() {
  size_t n = 0;
  while (Waiter* w = pop_front()) n += w->fiber->reactor->wake_ok(w->fiber) ? 1 : 0;
  return n;
}

template <class F, class R>
absl::StatusOr<Task<R>> Reactor::spawn(std::string_view name, F&& fn) {
  loop_thread_.check();
  using Fn = std::decay_t<F>;
  // One allocation for the task's state and the callable (task.h).
  auto* frame = new detail::TaskFrame<R, Fn>(Fn(std::forward<F>(fn)));
  absl::Status error;
  detail::Fiber* const fiber = new_fiber(name, frame, &error);
  if (fiber == nullptr) [[unlikely]] {
    frame->release();
    return error;
  }
  frame->fiber = fiber;
  return Task<R>(frame, fiber->id);
}

template <class F, class R>
auto Reactor::run(F&& main, Options options)
    -> std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>> {
  absl::StatusOr<std::unique_ptr<Reactor>> reactor = create(std::move(options));
  if (!reactor.ok()) return reactor.status();
  Reactor& r = **reactor;
  absl::StatusOr<Task<R>> task = r.spawn("main", std::forward<F>(main));
  if (!task.ok()) return task.status();
  r.run_until([&] { return task->done(); });
  r.cancel_all();
  r.run_until([&] { return r.fibers_alive() == 0; });
  if constexpr (std::is_void_v<R>) {
    task->join();
    return absl::OkStatus();
  } else {
    return task->join();
  }
}

}  // namespace reactor
