#include "reactor/reactor.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "reactor/fiber_stack.h"
#include "reactor/net.h"
#include "reactor/profiler.h"

namespace reactor {
constinit thread_local Reactor* detail::t_reactor = nullptr;
using detail::t_reactor;

namespace {

int64_t to_ns(Duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}
int64_t since_epoch_ns(Deadline t) {
  return to_ns(t.time_since_epoch());
}

// False in a build configured with -DREACTOR_WATCHDOG_HOOKS=OFF (benchmarks only): the loop no
// longer publishes its current slice, so the watchdog sees nothing; measures what publishing costs.
#ifdef REACTOR_NO_WATCHDOG_HOOKS
constexpr bool kWatchdogHooks = false;
#else
constexpr bool kWatchdogHooks = true;
#endif

// For the overflow handler (stack.h): the fiber running on this thread. Async-signal-safe.
bool running_fiber(const char** name, const Stack** stack) {
  const Reactor* r = t_reactor;
  const detail::Fiber* f = r != nullptr ? r->current_fiber() : nullptr;
  if (f == nullptr) return false;
  *name = f->name.c_str();
  *stack = &f->stack;
  return true;
}

void fire_fiber_deadline(detail::TimerNode* node) {
  auto* fiber = static_cast<detail::Fiber*>(node->data);
  fiber->reactor->wake(
      fiber, absl::DeadlineExceededError(
                 absl::StrCat(fiber->park_op ? fiber->park_op : "wait", ": deadline exceeded")));
}

// Copies a parked fiber's live stack bytes (word-aligned, a multiple of a word) to or from its
// heap copy. Not through memcpy: the sanitizers' poisoned redzones in the stack's frames are
// copied as the plain bytes they are, and the volatile source keeps the loop from becoming a
// memcpy call they would check.
__attribute__((no_sanitize_address, no_sanitize_thread)) void copy_words(std::byte* to,
                                                                         const std::byte* from,
                                                                         size_t bytes) {
  auto* dst = reinterpret_cast<uintptr_t*>(to);
  const auto* src = reinterpret_cast<const volatile uintptr_t*>(from);
  for (size_t i = 0; i < bytes / sizeof(uintptr_t); ++i) dst[i] = src[i];
}

size_t page_bytes() {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}
}  // namespace

std::string_view idle_mode_name(IdleMode mode) {
  switch (mode) {
    case IdleMode::kBlock:
      return "block";
    case IdleMode::kSpin:
      return "spin";
    case IdleMode::kAdaptive:
      return "adaptive";
  }
  return "?";
}

// ---- Inbox ----

bool detail::Inbox::post(absl::AnyInvocable<void()> fn, bool defer_wakeup) {
  std::lock_guard<std::mutex> lock(mu_);
  if (backend_ == nullptr) return false;
  const bool first = items_.empty();
  items_.push_back(std::move(fn));
  pending_.store(true, std::memory_order_seq_cst);
  if (first && sleeping_.load(std::memory_order_seq_cst)) {
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    if (defer_wakeup) {
      backend_->wakeup_deferred();
    } else {
      backend_->wakeup();
    }
  }
  return true;
}

bool detail::Inbox::begin_sleep() {
  sleeping_.store(true, std::memory_order_seq_cst);
  if (!pending_.load(std::memory_order_seq_cst)) return true;
  sleeping_.store(false, std::memory_order_relaxed);
  return false;
}

std::vector<absl::AnyInvocable<void()>> detail::Inbox::take() {
  std::vector<absl::AnyInvocable<void()>> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(items_);
  pending_.store(false, std::memory_order_relaxed);
  return out;
}

void detail::Inbox::close() {
  std::vector<absl::AnyInvocable<void()>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  backend_ = nullptr;
  dropped.swap(items_);
  pending_.store(false, std::memory_order_relaxed);
}

// ---- scheduling hooks ----

detail::Fiber* detail::current_fiber() {
  return t_reactor ? t_reactor->current_fiber() : nullptr;
}

absl::Status detail::park(Deadline deadline, const char* op, bool cancellable, bool releasable) {
  return t_reactor->park(deadline, op, cancellable, releasable);
}

bool detail::wake(Fiber* fiber, absl::Status status) {
  return fiber->reactor->wake(fiber, std::move(status));
}

bool detail::wake(Fiber* fiber) {
  return fiber->reactor->wake_ok(fiber);
}

constinit thread_local Backend* detail::t_loop_backend = nullptr;
constinit thread_local detail::FramePool* detail::t_frame_pool = nullptr;
constinit thread_local uint32_t detail::t_io_budget = Reactor::kIoBudget;

void detail::io_budget_spent() {
  if (t_reactor != nullptr) {
    t_reactor->spend_io_budget();
  } else {
    t_io_budget = Reactor::kIoBudget;
  }
}

void detail::cancel_fiber(Fiber* fiber) {
  fiber->reactor->cancel(fiber);
}

bool cancelled() {
  detail::Fiber* f = detail::current_fiber();
  return f != nullptr && f->cancel_requested;
}

// ---- Reactor ----

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::create(Options options) {
  if (t_reactor != nullptr) {
    return absl::FailedPreconditionError("this thread already runs a reactor (one per thread)");
  }
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      create_backend(options.backend, options.backend_params);
  if (!backend.ok()) return backend.status();
  install_overflow_handler();
  set_running_fiber_lookup(&running_fiber);
  return std::unique_ptr<Reactor>(new Reactor(std::move(options), *std::move(backend)));
}

Reactor::Reactor(Options options, std::unique_ptr<Backend> backend)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      inbox_(std::make_shared<detail::Inbox>(backend_.get())),
      stacks_(options_.stack_size, options_.max_cached_stacks, options_.max_guarded_stacks),
      thread_handle_(pthread_self()),
      tid_(static_cast<pid_t>(::gettid())) {
  detail::init_thread_context(&scheduler_context_);
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
      thread_stack_lo_ = reinterpret_cast<uintptr_t>(addr);
      thread_stack_hi_ = thread_stack_lo_ + size;
    }
    pthread_attr_destroy(&attr);
  }
  stats_.fibers_alive.bind_difference(&stats_.fibers_created, &stats_.fibers_finished);
  stats_.stacks_guarded.bind(&stacks_.guarded_in_use_count());
  stats_.stacks_canary.bind(&stacks_.canary_in_use_count());
  last_clock_ = last_poll_end_ = clock_.sync();
  release_timer_.fire = &fire_release_sweep;
  release_timer_.data = this;
  t_reactor = this;
  detail::t_loop_backend = backend_.get();
  detail::t_frame_pool = &frames_;
}

Reactor::~Reactor() {
  Profiler::forget(this);  // before anything a profile's signal handler reads goes
  inbox_->close();
  while (alive_head_ != nullptr) destroy_fiber(alive_head_);
  slice_fiber_.store(nullptr, std::memory_order_relaxed);
  if (t_reactor == this) {
    t_reactor = nullptr;
    detail::t_loop_backend = nullptr;
    detail::t_frame_pool = nullptr;
  }
}

bool Reactor::map_stack(Stack* stack, std::string_view name, absl::Status* error) {
  absl::StatusOr<Stack> mapped = stacks_.allocate();
  if (!mapped.ok()) {
    stats_.spawn_failures.add();
    *error = absl::ResourceExhaustedError(
        absl::StrCat("spawn '", std::string(name), "': ", mapped.status().message()));
    return false;
  }
  *stack = *mapped;
  return true;
}

// A record belongs to this reactor for the reactor's life: what never changes is set once here.
detail::Fiber* Reactor::new_fiber_record() {
  fiber_records_.push_back(std::make_unique<detail::Fiber>());
  detail::Fiber* f = fiber_records_.back().get();
  f->reactor = this;
  f->deadline.fire = &fire_fiber_deadline;
  f->deadline.data = f;
  return f;
}

void Reactor::set_name(detail::Fiber* f, std::string_view name) {
  f->name.assign(name);
  f->packed_name.set(f->name);
}

namespace {
// a == b, without a call to memcmp for the short names most fibers have.
bool same_name(const std::string& a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (b.size() > 16) return a == b;
  for (size_t i = 0; i < b.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}
}  // namespace

detail::Fiber* Reactor::new_fiber(std::string_view name, detail::FiberBody* body,
                                  absl::Status* error) {
  detail::Fiber* f = free_fibers_;
  if (f != nullptr) [[likely]] {
    free_fibers_ = f->next_free;
  } else {
    f = new_fiber_record();
  }
  // Straight into the record (nothing reads a record's stack before it is alive).
  if (!stacks_.take_cached(&f->stack)) [[unlikely]] {
    if (!map_stack(&f->stack, name, error)) {
      f->next_free = free_fibers_;
      free_fibers_ = f;
      return nullptr;
    }
  }
  f->id.store(next_fiber_id_++, std::memory_order_relaxed);
  // A record keeps its last fiber's name (destroy_fiber): a fiber spawned under the same name, as
  // a service's connections and a loop's workers are, need not copy and pack it again.
  if (!same_name(f->name, name)) [[unlikely]] {
    set_name(f, name);
  }
  f->state = detail::FiberState::kRunnable;
  f->cancel_requested = false;
  f->stack_releasable = false;
  f->park_releasable = false;
  f->own_fp_control = false;
  f->park_op = nullptr;
  // OK already unless the record's last fiber was abandoned while woken with a status.
  if (!f->wake_status.ok()) [[unlikely]] {
    f->wake_status = absl::OkStatus();
  }
  f->prev_alive = nullptr;
  f->last_slice_ns = 0;
  f->slices = 0;
  f->body = body;
  // The loop's last clock reading: the start of the spawning slice (or the end of the last poll),
  // not a clock read of its own per spawn.
  f->created = last_clock_;
  detail::make_context(&f->context, f->stack.bottom(), f->stack.usable_size(), &fiber_entry, f);
  f->next_alive = alive_head_;
  if (alive_head_ != nullptr) alive_head_->prev_alive = f;
  alive_head_ = f;
  ++alive_count_;
  stats_.fibers_created.add();  // the gauges (alive, stacks in use) are derived: stats.h
  make_runnable(f);
  return f;
}

void Reactor::fiber_entry(void* arg) {
  auto* f = static_cast<detail::Fiber*>(arg);
  Reactor* r = f->reactor;
  // Started by the scheduler or by a fiber's hand-off.
  detail::on_context_start(r->switch_from_);
  r->landed();
  f->body->run();  // releases the body as well
  f->body = nullptr;
  f->state = detail::FiberState::kDone;  // suspend() then never returns
  r->suspend();
  __builtin_unreachable();
}

void Reactor::destroy_fiber(detail::Fiber* f) {
  (f->prev_alive ? f->prev_alive->next_alive : alive_head_) = f->next_alive;
  if (f->next_alive != nullptr) f->next_alive->prev_alive = f->prev_alive;
  --alive_count_;
  if (f->deadline.armed() || f->saved_stack != nullptr || f->body != nullptr) [[unlikely]] {
    destroy_fiber_cold(f);
  }
  if (f->stack_releasable) --releasable_fibers_;
  stacks_.release(f->stack);
  detail::destroy_context(&f->context);
  stats_.fibers_finished.add_release();       // after fibers_created's add: DerivedGauge
  f->id.store(0, std::memory_order_relaxed);  // the name stays, for the next fiber (new_fiber)
  f->next_free = free_fibers_;
  free_fibers_ = f;
}

void Reactor::destroy_fiber_cold(detail::Fiber* f) {
  if (f->deadline.armed()) timers_.cancel(&f->deadline);
  if (f->saved_stack != nullptr) {  // abandoned while released
    std::free(std::exchange(f->saved_stack, nullptr));
    stats_.stacks_released.set(--stacks_released_);
  }
  if (f->body != nullptr) std::exchange(f->body, nullptr)->release();  // abandoned
}

inline void Reactor::begin_slice(detail::Fiber* f) {
  // On the scheduler's stack or the previous fiber's, never f's own.
  current_ = f;
  f->state = detail::FiberState::kRunning;
  // The last clock reading is the end of the previous slice or poll: nothing waits in between.
  const Deadline start = last_clock_;
  slice_start_ = start;
  stats_.sched_latency.record(std::max<int64_t>(0, to_ns(start - f->ready_at)));
  ++resumes_since_poll_;
  detail::t_io_budget = kIoBudget;
  if constexpr (kWatchdogHooks) {
    slice_fiber_.store(f, std::memory_order_relaxed);
    slice_start_ns_.store(since_epoch_ns(start), std::memory_order_release);
  }
}

// On the fiber's own stack, before it switches away. Every field is read after the clock's read
// (a call when the TSC is not in use), and nothing computed before a call is used after it: the
// only register suspend() keeps across a call is `this`, one saved register in its frame.
inline void Reactor::end_slice() {
  if constexpr (kWatchdogHooks) slice_start_ns_.store(0, std::memory_order_release);
  const Deadline now = clock_.now();
  last_clock_ = now;
  detail::Fiber* const f = current_;
  // Not below 0: a poll's real reading may be a microsecond before a TSC-extended one.
  const int64_t slice = std::max<int64_t>(0, to_ns(now - slice_start_));
  stats_.slice.record(slice);
  f->last_slice_ns = slice;
  ++f->slices;
  if (slice > slow_slice_ns_.load(std::memory_order_relaxed) || !f->stack.guarded) [[unlikely]] {
    end_slice_cold(f, slice);
  }
}

void Reactor::end_slice_cold(const detail::Fiber* f, int64_t slice) {
  if (slice > slow_slice_ns_.load(std::memory_order_relaxed))
    note_slow_slice(f, slice, slice_start_);
  if (!f->stack.canary_intact()) report_overflow(f->name.c_str(), f->stack.usable_size());
}

// Out of end_slice's line, so its fast path saves no registers for the map look-up.
void Reactor::note_slow_slice(const detail::Fiber* f, int64_t slice, Deadline start) {
  long_slice_ns_.store(slice, std::memory_order_relaxed);
  long_slice_start_ns_.store(since_epoch_ns(start), std::memory_order_release);
  stats_.slow_slices.add();
  ++slow_by_name_[f->name.substr(0, f->name.find('#'))];
}

void Reactor::resume(detail::Fiber* f) {
  if (f->saved_stack != nullptr) [[unlikely]] {
    restore_stack(f);
  }
  begin_slice(f);
  switch_from_ = &scheduler_context_;
  switch_to(&scheduler_context_, false, &f->context, f->own_fp_control);
  // Back from whichever fiber ended the chain of slices this one began.
  landed();
}

// The scheduler would next resume the run queue's head, with nothing in between, when the
// current batch still has fibers to run; after the batch it would first poll (when due), fire due
// timers, run posts and return on stop(), so a new batch begins here only when none of that is
// due (run_until's `done` is then asked after this batch instead). Each hand-off counts as a
// resume, so a chain of them still ends for a poll after kResumesPerPoll.
inline detail::Fiber* Reactor::hand_off_target() {
  detail::Fiber* next = ready_head_;
  if (next == nullptr || next == current_) return nullptr;
  // A released stack is restored by resume(): the scheduler runs that fiber next, as it would.
  if (next->saved_stack != nullptr) [[unlikely]] {
    return nullptr;
  }
  if (batch_left_ == 0) {
    if (resumes_since_poll_ >= kResumesPerPoll || inbox_->pending() ||
        stop_requested_.load(std::memory_order_acquire) ||
        (!timers_.empty() && timers_.next() <= last_clock_)) {
      return nullptr;
    }
    stats_.loop_iterations.add();
    batch_left_ = ready_count_;
  }
  --batch_left_;
  ready_head_ = next->next_ready;
  if (ready_head_ == nullptr) ready_tail_ = nullptr;
  --ready_count_;
  return next;
}

// Not inline, and one switch in it: every suspended fiber then waits at the same return address,
// which lets the switch return to it with a predicted `ret` on a hand-off (switch_x86_64.S).
__attribute__((noinline)) void Reactor::suspend() {
  end_slice();
  detail::Fiber* const self = current_;
  const bool finishing = self->state == detail::FiberState::kDone;
  detail::Fiber* const next = hand_off_target();
  if (finishing) finished_ = self;
  switch_from_ = &self->context;
  detail::Context* to = &scheduler_context_;
  bool to_own = false;
  if (next != nullptr) {
    begin_slice(next);
    to = &next->context;
    to_own = next->own_fp_control;
  } else {
    current_ = nullptr;
  }
  switch_to(&self->context, self->own_fp_control, to, to_own, finishing);
  landed();
}

void Reactor::switch_fp(detail::Context* from, bool from_own, detail::Context* to, bool to_own,
                        bool finishing) {
  // Leaving the shared state: keep it for whoever shares it next.
  if (!from_own) shared_fp_ = detail::live_fp_control();
  // Going back to it: the resumed frame holds what its side shares now, not what was live when
  // it was suspended (another fiber sharing it may have changed it since).
  if (!to_own) detail::set_frame_fp_control(to->sp, shared_fp_);
  detail::switch_context_fp(from, to, finishing);
}

void Reactor::own_fp_control() {
  if (current_ == nullptr || current_->own_fp_control) return;
  // What it runs with now is the shared state: the state it keeps starts from there.
  shared_fp_ = detail::live_fp_control();
  current_->own_fp_control = true;
}

absl::Status Reactor::park_slow(Deadline deadline, const char* op, bool cancellable,
                                bool releasable) {
  detail::Fiber* f = current_;
  if (f == nullptr) {
    std::fprintf(stderr, "reactor: '%s' would suspend outside a fiber\n", op);
    std::abort();
  }
  if (cancellable && f->cancel_requested) {
    return absl::CancelledError(absl::StrCat(op, ": cancelled"));
  }
  if (deadline != kNoDeadline) {
    if (deadline <= clock_.now()) {
      return absl::DeadlineExceededError(absl::StrCat(op, ": deadline exceeded"));
    }
    timers_.arm(&f->deadline, deadline);
  }
  f->state = detail::FiberState::kParked;
  f->park_op = op;
  f->park_cancellable = cancellable;
  f->park_releasable = releasable;  // the sweep reads it with ready_at (release_idle_stacks)
  suspend();
  if (f->deadline.armed()) {
    timers_.cancel(&f->deadline);
    stats_.timers_cancelled.add();
  }
  f->park_op = nullptr;
  if (f->wake_status.ok()) [[likely]] {
    return absl::OkStatus();
  }
  return std::exchange(f->wake_status, absl::OkStatus());
}

void Reactor::allow_stack_release() {
  if (current_ == nullptr || options_.release_idle_stacks <= Duration::zero() ||
      current_->stack_releasable || release_refused_) {
    return;
  }
  current_->stack_releasable = true;
  ++releasable_fibers_;
  if (!release_timer_.armed())
    timers_.arm(&release_timer_, last_clock_ + options_.release_idle_stacks);
}

void Reactor::fire_release_sweep(detail::TimerNode* node) {
  static_cast<Reactor*>(node->data)->release_idle_stacks();
}

// Every half of release_idle_stacks while a fiber that allowed it lives, a scan of every fiber: a
// few loads each. A fiber is released once it has been parked releasably since at least that long
// after it last became runnable (ready_at: its last slice began moments later), so between one and
// one and a half periods after it last ran.
void Reactor::release_idle_stacks() {
  if (releasable_fibers_ == 0 || release_refused_) return;  // allow_stack_release re-arms it
  const Deadline now = last_clock_;
  const Duration after = options_.release_idle_stacks;
  size_t released = 0;
  bool more = false;
  for (detail::Fiber* f = alive_head_; f != nullptr; f = f->next_alive) {
    if (f->state != detail::FiberState::kParked || !f->park_releasable || !f->stack_releasable ||
        f->saved_stack != nullptr || f->ready_at + after > now) {
      continue;
    }
    if (released == kReleasesPerSweep) {
      more = true;
      break;
    }
    release_stack(f);
    if (release_refused_) return;
    ++released;
  }
  // The rest of a full sweep after the next poll: the loop serves I/O in between.
  timers_.arm(&release_timer_, more ? now : now + after / 2);
}

void Reactor::release_stack(detail::Fiber* f) {
  std::byte* const sp = static_cast<std::byte*>(f->context.sp);
  std::byte* const top = f->stack.top();
  if (sp < f->stack.bottom() || sp >= top) return;
  const auto live = static_cast<size_t>(top - sp);
  auto* copy = static_cast<std::byte*>(std::malloc(live));
  if (copy == nullptr) return;
  copy_words(copy, sp, live);
  // A canary stack keeps the page that holds its canary.
  std::byte* const from = f->stack.guarded ? f->stack.bottom() : f->stack.bottom() + page_bytes();
  if (from < top && ::madvise(from, static_cast<size_t>(top - from), MADV_DONTNEED) != 0) {
    // The stack stays as it was. A kernel or filter that refuses it (EPERM from a seccomp rule)
    // would refuse every time: no more sweeps.
    std::free(copy);
    release_refused_ = true;
    return;
  }
  f->saved_stack = copy;
  stats_.stacks_released.set(++stacks_released_);
  stats_.stack_releases.add();
}

void Reactor::restore_stack(detail::Fiber* f) {
  std::byte* const sp = static_cast<std::byte*>(f->context.sp);
  copy_words(sp, f->saved_stack, static_cast<size_t>(f->stack.top() - sp));
  std::free(std::exchange(f->saved_stack, nullptr));
  stats_.stacks_released.set(--stacks_released_);
}

void Reactor::cancel(detail::Fiber* f) {
  loop_thread_.check();
  f->cancel_requested = true;
  if (f->state == detail::FiberState::kParked && f->park_cancellable) {
    wake(f, absl::CancelledError(absl::StrCat(f->park_op ? f->park_op : "wait", ": cancelled")));
  }
}

void Reactor::cancel_all() {
  loop_thread_.check();
  for (detail::Fiber* f = alive_head_; f != nullptr; f = f->next_alive) {
    if (f != current_) cancel(f);
  }
}

void Reactor::spend_io_budget() {
  // Called once the thread's budget reached zero (detail::spend_io_budget counts it down).
  if (current_ == nullptr) {  // outside a fiber: nothing to yield
    detail::t_io_budget = kIoBudget;
    return;
  }
  detail::t_io_budget = kIoBudget;
  stats_.io_budget_yields.add();
  resumes_since_poll_ = kResumesPerPoll;  // poll before the next batch: others may wait on I/O
  yield();
}

absl::Status Reactor::sleep_until(Deadline deadline) {
  absl::Status s = park(deadline, "sleep", /*cancellable=*/true);
  if (absl::IsDeadlineExceeded(s)) return absl::OkStatus();
  return s;
}

bool Reactor::submit(std::string name, absl::AnyInvocable<void()> fn) {
  return post([this, name = std::move(name), fn = std::move(fn)]() mutable {
    (void)spawn(name, std::move(fn));
  });
}

void Reactor::stop() {
  stop_requested_.store(true, std::memory_order_release);
  backend_->wakeup();
}

void Reactor::run_ready_batch() {
  // Fibers made runnable while it runs wait for the next batch (after the poll, timers and posts),
  // unless a hand-off begins a new batch (hand_off_target).
  batch_left_ = ready_count_;
  while (batch_left_ > 0 && ready_head_ != nullptr) {
    --batch_left_;
    detail::Fiber* f = ready_head_;
    ready_head_ = f->next_ready;
    if (ready_head_ == nullptr) ready_tail_ = nullptr;
    --ready_count_;
    resume(f);
  }
  batch_left_ = 0;
}

void Reactor::drain_inbox() {
  if (!inbox_->pending()) return;
  for (auto& fn : inbox_->take()) fn();
}

void Reactor::run_until(const std::function<bool()>& done) {
  loop_thread_.check();
  struct EndRun {
    Backend* backend;
    ~EndRun() { backend->end_run(); }
  } end_run{backend_.get()};
  last_clock_ = clock_.sync();
  for (;;) {
    stats_.loop_iterations.add();
    run_ready_batch();
    if (done && done()) return;
    if (stop_requested_.load(std::memory_order_acquire)) {
      stop_requested_.store(false, std::memory_order_relaxed);
      return;
    }
    // With fibers still runnable, poll only every kResumesPerPoll resumes: a poll with nothing to
    // wait for costs a system call, and runnable fibers are work already known.
    const bool inbox = inbox_->pending();
    if (ready_count_ == 0 || inbox || resumes_since_poll_ >= kResumesPerPoll) {
      Duration timeout{-1};
      if (ready_count_ > 0 || inbox) {
        timeout = Duration::zero();
      } else if (!timers_.empty()) {
        timeout = std::max(Duration::zero(), timers_.next() - last_clock_);
      }
      poll_once(timeout);
    }
    stats_.timers_fired.add(timers_.fire_due(last_clock_));
    stats_.timers_armed.set(timers_.size());
    drain_inbox();
  }
}

void Reactor::poll_once(Duration timeout) {
  const size_t before = ready_count_;
  detail::Fiber* const tail_before = ready_tail_;
  stats_.fibers_runnable.set(ready_count_);
  resumes_since_poll_ = 0;
  const Deadline start = last_clock_;
  stats_.busy_ns.add(static_cast<uint64_t>(std::max<int64_t>(0, to_ns(start - last_poll_end_))));
  // A spinning loop is in poll for the watchdog as well: idle, not a slice.
  if (timeout == Duration::zero() || options_.idle == IdleMode::kBlock) {
    if constexpr (kWatchdogHooks) in_poll_.store(kInPoll, std::memory_order_relaxed);
    // A wait that may block announces itself to posters; a post queued since the loop last
    // looked makes it a poll without waiting.
    const bool sleep = timeout != Duration::zero() && inbox_->begin_sleep();
    backend_->poll(sleep ? timeout : Duration::zero());
    if (sleep) inbox_->end_sleep();
  } else {
    if constexpr (kWatchdogHooks) in_poll_.store(kInSpin, std::memory_order_relaxed);
    idle_wait(start, timeout);
  }
  if constexpr (kWatchdogHooks) in_poll_.store(kNotInPoll, std::memory_order_relaxed);
  last_clock_ = last_poll_end_ = clock_.sync();
  const int64_t waited = std::max<int64_t>(0, to_ns(last_clock_ - start));
  stats_.poll_wait.record(waited);
  // Fibers the poll woke are runnable from its end, not from before its wait.
  if (ready_count_ > before) {
    stats_.poll_wakeups.add(ready_count_ - before);
    for (detail::Fiber* f = tail_before ? tail_before->next_ready : ready_head_; f != nullptr;
         f = f->next_ready) {
      f->ready_at = last_clock_;
    }
  }
}

// Nothing is runnable and no post is queued (`timeout`: until the next timer, negative without
// one). Spins on zero-timeout polls until a fiber becomes runnable, a post or stop() arrives or the
// next timer is due; kAdaptive spins at most options_.spin from `start` (the end of the last work)
// and then blocks for what is left of `timeout`. Spinning counts as waiting in poll.
void Reactor::idle_wait(Deadline start, Duration timeout) {
  const Deadline timer = timeout < Duration::zero() ? kNoDeadline : start + timeout;
  const Deadline until =
      options_.idle == IdleMode::kAdaptive ? std::min(timer, start + options_.spin) : timer;
  const size_t before = ready_count_;
  Deadline now = start;
  bool work = false;
  while (!work && now < until) {
    backend_->poll(Duration::zero());
    const Deadline prev = now;
    now = clock_.now();
    // Counted as it goes, so stats show a spin that has not ended yet.
    stats_.spin_polls.add();
    stats_.spin_ns.add(static_cast<uint64_t>(std::max<int64_t>(0, to_ns(now - prev))));
    work = ready_count_ > before || inbox_->pending() ||
           stop_requested_.load(std::memory_order_acquire);
  }
  if (work || now >= timer || !inbox_->begin_sleep()) return;
  if constexpr (kWatchdogHooks) in_poll_.store(kInPoll, std::memory_order_relaxed);
  backend_->poll(timer == kNoDeadline ? Duration{-1} : timer - now);  // kAdaptive, spin over
  inbox_->end_sleep();
}

Reactor::CurrentSlice Reactor::current_slice() const {
  CurrentSlice c;
  c.in_poll = in_poll_.load(std::memory_order_relaxed) != kNotInPoll;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const int64_t start = slice_start_ns_.load(std::memory_order_acquire);
    if (start == 0) return c;
    const detail::Fiber* f = slice_fiber_.load(std::memory_order_relaxed);
    if (f == nullptr) return c;
    const uint64_t id = f->id.load(std::memory_order_relaxed);
    std::string name = f->packed_name.get();
    // Consistent if the same slice is still running and the record still holds the same fiber.
    if (slice_start_ns_.load(std::memory_order_acquire) == start &&
        f->id.load(std::memory_order_relaxed) == id) {
      c.in_slice = true;
      c.start_ns = start;
      c.fiber_id = id;
      c.fiber_name = std::move(name);
      return c;
    }
  }
  return c;
}

std::vector<Reactor::FiberInfo> Reactor::fibers_snapshot(size_t max_fibers,
                                                         size_t max_frames) const {
  loop_thread_.check();
  std::vector<FiberInfo> out;
  out.reserve(std::min(alive_count_, max_fibers));
  const Deadline now = Clock::now();
  for (const detail::Fiber* f = alive_head_; f != nullptr && out.size() < max_fibers;
       f = f->next_alive) {
    FiberInfo i;
    i.id = f->id.load(std::memory_order_relaxed);
    i.name = f->name;
    i.state = f->state == detail::FiberState::kRunning    ? "running"
              : f->state == detail::FiberState::kRunnable ? "runnable"
                                                          : "waiting";
    i.waiting_on = f->state == detail::FiberState::kParked && f->park_op ? f->park_op : "";
    i.age_seconds = std::chrono::duration<double>(now - f->created).count();
    i.last_slice_ns = f->last_slice_ns;
    i.slices = f->slices;
    i.stack_size = f->stack.usable_size();
    const auto top = reinterpret_cast<uintptr_t>(f->stack.top());
    const auto sp = f == current_ ? reinterpret_cast<uintptr_t>(__builtin_frame_address(0))
                                  : reinterpret_cast<uintptr_t>(f->context.sp);
    i.stack_used = sp != 0 && sp <= top ? top - sp : 0;
    i.stack_released = f->saved_stack != nullptr;
    if (max_frames > 0) {
      FrameWalk w = f == current_ ? walk_own_stack(f->stack.bottom(), f->stack.top(), max_frames)
                                  : walk_parked_stack(f->context.sp, f->stack.bottom(),
                                                      f->stack.top(), max_frames, f->saved_stack);
      i.frames = std::move(w.pcs);
      i.frames_omitted = w.omitted;
    }
    out.push_back(std::move(i));
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> Reactor::slow_slices_by_name() const {
  loop_thread_.check();
  return {slow_by_name_.begin(), slow_by_name_.end()};
}

void detail::PackedName::set(const std::string& name) {
  char buf[kWords * 8] = {};
  name.copy(buf, sizeof buf - 1);
  for (size_t i = 0; i < kWords; ++i) {
    uint64_t w;
    std::memcpy(&w, buf + i * 8, 8);
    words_[i].store(w, std::memory_order_relaxed);
  }
}

void detail::PackedName::copy(char (&out)[kWords * 8]) const {
  for (size_t i = 0; i < kWords; ++i) {
    const uint64_t w = words_[i].load(std::memory_order_relaxed);
    std::memcpy(out + i * 8, &w, 8);
  }
  out[sizeof out - 1] = '\0';
}

std::string detail::PackedName::get() const {
  char buf[kWords * 8];
  copy(buf);
  return std::string(buf);
}

}  // namespace reactor
