// Micro-benchmarks of the fiber runtime (layers 1 and 3): the context switch (ours beside Boost
// Context's fcontext, in the same run), yield, spawn+join, timer arm+cancel, Channel ping-pong,
// cross-thread wakeup and the cross-shard call. perf/run-micro.sh runs them pinned;
// docs/benchmarks.md records the figures.
//
// Reactor benchmarks run the timed loop inside a fiber of a fresh reactor on the epoll backend (a
// fixed backend, so these figures do not move when `auto` starts picking io_uring). Where the
// scheduler is involved they also report the reactor's own counters per operation — backend polls
// and fiber resumes — which is what explains most of the differences between them.
#include <benchmark/benchmark.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "perf/bench_util.h"
#include "reactor/call_on.h"
#include "reactor/channel.h"
#include "reactor/context.h"
#include "reactor/reactor.h"
#include "reactor/stack.h"
#include "reactor/timer.h"

#if defined(REACTOR_BENCH_FCONTEXT)
#include <boost/context/detail/fcontext.hpp>
#endif

#if defined(__x86_64__)
// perf/switch_variants_x86_64.S: same signature and frame as reactor_switch_context.
extern "C" {
void bench_switch_jmp(void** save_sp, void* load_sp);
void bench_switch_nofp(void** save_sp, void* load_sp);
void bench_switch_jmp_nofp(void** save_sp, void* load_sp);
void bench_switch_fp_if_changed(void** save_sp, void* load_sp);
void bench_switch_jmp_fp_if_changed(void** save_sp, void* load_sp);
void bench_switch_fp_early(void** save_sp, void* load_sp);
}
#endif

namespace {

using reactor::Clock;
using reactor::Reactor;
using reactor::bench::set_per_op;
using reactor::bench::set_time_per_step;

constexpr size_t kStackSize = 64 * 1024;
constexpr const char* kBackend = "epoll";

// Runs body(reactor) as the main fiber of a fresh reactor; marks the benchmark failed if the
// reactor cannot be created.
template <class F>
void run_in_reactor(benchmark::State& state, F&& body) {
  Reactor::Options options;
  options.backend = kBackend;
  absl::Status s = Reactor::run([&] { body(*Reactor::current()); }, options);
  if (!s.ok()) state.SkipWithError(s.ToString().c_str());
}

// Snapshot of the reactor counters that explain a scheduler benchmark.
struct LoopCounters {
  uint64_t polls;
  uint64_t resumes;
  static LoopCounters of(const Reactor& r) {
    return {r.stats().polls(), r.stats().context_switches()};
  }
};

void report_loop_counters(benchmark::State& state, const LoopCounters& before,
                          const LoopCounters& after) {
  set_per_op(state, "polls/op", static_cast<double>(after.polls - before.polls));
  set_per_op(state, "resumes/op", static_cast<double>(after.resumes - before.resumes));
}

// ---- context switch ----

// Two contexts bouncing control: the benchmark's thread context and one on a pooled stack. An
// iteration is a round trip, two switches; `switch` is the time of one.
//
// The floating-point control state matters here. detail::make_context gives a new context the
// control words of the thread making it (as Boost's make_fcontext does), so every load of the
// switch writes the value already there (Words::kMadeByContext, Words::kLive). Words::kDefaults
// instead puts the constants MXCSR 0x1F80 and x87 0x037F in the fiber's frame (what make_context
// did until 2026-12-02): a thread that has done any inexact floating-point operation (Google
// Benchmark has, by the time the loop starts; so has any real program) runs with MXCSR's sticky
// precision flag set, 0x1FA0, so each switch between the two writes MXCSR with a value different
// from the live one, which some CPUs make slow (docs/benchmarks.md).
enum class Words { kMadeByContext, kLive, kDefaults };
struct SwitchPair {
  reactor::detail::Context thread;
  reactor::detail::Context fiber;
};

void label_control_words(benchmark::State& state, const reactor::detail::Context& fiber) {
#if defined(__x86_64__)
  const reactor::detail::FpControl live = reactor::detail::live_fp_control();
  const auto* frame = static_cast<const uint64_t*>(fiber.sp);
  char label[96];
  std::snprintf(label, sizeof label, "MXCSR thread %#x, new fiber %#x", live.mxcsr,
                static_cast<unsigned>(frame[1]));
  state.SetLabel(label);
#else
  (void)state;
  (void)fiber;
#endif
}

// The fiber side through the public wrapper, detail::switch_context (what the scheduler calls
// between fibers that share the floating-point control state), or with kFp
// detail::switch_context_fp (to or from a fiber that owns it: own_fp_control).
template <bool kFp>
void bounce_wrapped(void* arg) {
  auto* p = static_cast<SwitchPair*>(arg);
  reactor::detail::on_context_start(&p->thread);
  for (;;) {
    if constexpr (kFp) {
      reactor::detail::switch_context_fp(&p->fiber, &p->thread);
    } else {
      reactor::detail::switch_context(&p->fiber, &p->thread);
    }
  }
}

void set_words(const reactor::detail::Context& fiber, Words words) {
  // reactor::detail::FpControl{} holds the power-on defaults (0x1F80, 0x037F on x86-64).
  if (words == Words::kLive) {
    reactor::detail::set_frame_fp_control(fiber.sp, reactor::detail::live_fp_control());
  }
  if (words == Words::kDefaults) {
    reactor::detail::set_frame_fp_control(fiber.sp, reactor::detail::FpControl{});
  }
}

template <Words kWords, bool kFp = false>
void BM_switch_reactor(benchmark::State& state) {
  reactor::StackPool pool(kStackSize, 1);
  absl::StatusOr<reactor::Stack> stack = pool.allocate();
  if (!stack.ok()) return state.SkipWithError(stack.status().ToString().c_str());
  SwitchPair p;
  reactor::detail::init_thread_context(&p.thread);
  reactor::detail::make_context(&p.fiber, stack->bottom(), stack->usable_size(),
                                &bounce_wrapped<kFp>, &p);
  set_words(p.fiber, kWords);
  label_control_words(state, p.fiber);
  for (auto _ : state) {
    if constexpr (kFp) {
      reactor::detail::switch_context_fp(&p.thread, &p.fiber);
    } else {
      reactor::detail::switch_context(&p.thread, &p.fiber);
    }
  }
  // The fiber stays suspended in its loop and holds nothing: forgetting it is enough.
  reactor::detail::destroy_context(&p.fiber);
  pool.release(*stack);
  set_time_per_step(state, "switch", 2);
}

// The same ping through a bare assembly routine with reactor_switch_context's signature and frame
// layout: the original, or one of the variants in switch_variants_x86_64.S.
using SwitchFn = void (*)(void**, void*);

template <SwitchFn kSwitch>
void bounce_raw(void* arg) {
  auto* p = static_cast<SwitchPair*>(arg);
  for (;;) kSwitch(&p->fiber.sp, p->thread.sp);
}

template <SwitchFn kSwitch, Words kWords>
void BM_switch_raw(benchmark::State& state) {
  reactor::StackPool pool(kStackSize, 1);
  absl::StatusOr<reactor::Stack> stack = pool.allocate();
  if (!stack.ok()) return state.SkipWithError(stack.status().ToString().c_str());
  SwitchPair p;
  reactor::detail::init_thread_context(&p.thread);
  reactor::detail::make_context(&p.fiber, stack->bottom(), stack->usable_size(),
                                &bounce_raw<kSwitch>, &p);
  set_words(p.fiber, kWords);
  label_control_words(state, p.fiber);
  for (auto _ : state) kSwitch(&p.thread.sp, p.fiber.sp);
  reactor::detail::destroy_context(&p.fiber);
  pool.release(*stack);
  set_time_per_step(state, "switch", 2);
}

#if defined(REACTOR_BENCH_FCONTEXT)
namespace fctx = boost::context::detail;

void fcontext_bounce(fctx::transfer_t t) {
  for (;;) t = fctx::jump_fcontext(t.fctx, nullptr);
}

// Boost's make_fcontext copies the creating thread's MXCSR and x87 control word into the frame.
void BM_switch_fcontext(benchmark::State& state) {
  // Same kind of stack as ours (pooled mmap), so only the switch differs.
  reactor::StackPool pool(kStackSize, 1);
  absl::StatusOr<reactor::Stack> stack = pool.allocate();
  if (!stack.ok()) return state.SkipWithError(stack.status().ToString().c_str());
  fctx::fcontext_t fiber =
      fctx::make_fcontext(stack->top(), stack->usable_size(), &fcontext_bounce);
  for (auto _ : state) fiber = fctx::jump_fcontext(fiber, nullptr).fctx;
  pool.release(*stack);
  set_time_per_step(state, "switch", 2);
}
#endif

// ---- scheduler ----

// Two fibers yielding to each other. An iteration: this fiber yields, the other runs and yields,
// this one runs again (two yields, four switches through the scheduler).
// With kOwn both fibers own their floating-point control state (own_fp_control): every switch
// saves and loads it.
template <bool kOwn>
void BM_yield_round_trip(benchmark::State& state) {
  run_in_reactor(state, [&](Reactor& r) {
    bool stop = false;
    if (kOwn) reactor::own_fp_control();
    auto other = reactor::spawn("yielder", [&] {
      if (kOwn) reactor::own_fp_control();
      while (!stop) reactor::yield();
    });
    if (!other.ok()) return state.SkipWithError(other.status().ToString().c_str());
    reactor::yield();  // let the other fiber start
    const LoopCounters before = LoopCounters::of(r);
    for (auto _ : state) reactor::yield();
    const LoopCounters after = LoopCounters::of(r);
    stop = true;
    other->join();
    report_loop_counters(state, before, after);
  });
}

// One fiber yielding with nobody else runnable: the bare cost of a trip through the scheduler.
void BM_yield_alone(benchmark::State& state) {
  run_in_reactor(state, [&](Reactor& r) {
    const LoopCounters before = LoopCounters::of(r);
    for (auto _ : state) reactor::yield();
    report_loop_counters(state, before, LoopCounters::of(r));
  });
}

// spawn of an empty fiber with a stack from the pool (warmed first), then join.
void BM_spawn_join(benchmark::State& state) {
  run_in_reactor(state, [&](Reactor& r) {
    auto warm = reactor::spawn("w", [] {});
    if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
    warm->join();
    const LoopCounters before = LoopCounters::of(r);
    for (auto _ : state) {
      auto t = reactor::spawn("w", [] {});
      t->join();
    }
    report_loop_counters(state, before, LoopCounters::of(r));
  });
}

// spawn of N empty fibers, then join them all: the per-fiber cost with the scheduler's fixed
// per-batch cost (a backend poll) shared among N. An iteration is N fibers.
void BM_spawn_join_batch(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  run_in_reactor(state, [&](Reactor& r) {
    std::vector<reactor::Task<void>> tasks;
    tasks.reserve(n);
    for (size_t i = 0; i < n; ++i) tasks.push_back(*reactor::spawn("w", [] {}));
    reactor::join_all(tasks);  // fills the stack pool
    tasks.clear();
    const LoopCounters before = LoopCounters::of(r);
    for (auto _ : state) {
      for (size_t i = 0; i < n; ++i) tasks.push_back(*reactor::spawn("w", [] {}));
      reactor::join_all(tasks);
      tasks.clear();
    }
    report_loop_counters(state, before, LoopCounters::of(r));
    set_time_per_step(state, "per_fiber", static_cast<double>(n));
  });
}

// ---- timers ----

// TimerHeap alone, holding `range(0)` other timers with deadlines spread over an hour. Each
// iteration cancels the oldest armed timer and arms it again one hour later — the pattern of a
// per-operation deadline renewed on every I/O — so cancel removes from the top of the heap.
void BM_timer_heap_arm_cancel(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  reactor::detail::TimerHeap heap;
  std::vector<reactor::detail::TimerNode> nodes(n + 1);
  const auto base = Clock::now();
  const auto step = std::chrono::hours(1) / static_cast<int64_t>(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    heap.arm(&nodes[i], base + step * static_cast<int64_t>(i));
  }
  size_t oldest = 0;
  auto next = base + std::chrono::hours(1);
  for (auto _ : state) {
    reactor::detail::TimerNode* node = &nodes[oldest];
    heap.cancel(node);
    heap.arm(node, next);
    next += step;
    oldest = oldest + 1 == nodes.size() ? 0 : oldest + 1;
  }
  benchmark::DoNotOptimize(heap.next());
}

// The same pair through the reactor: a fiber pops from a Channel with a deadline (the timer is
// armed while it waits) and the value arrives first (the timer is cancelled). Compare with
// channel/handoff_no_deadline: the difference is what a deadline costs on a suspension point.
template <bool kDeadline>
void BM_channel_handoff(benchmark::State& state) {
  run_in_reactor(state, [&](Reactor& r) {
    reactor::Channel<int> ch(1);
    bool stop = false;
    auto consumer = reactor::spawn("consumer", [&] {
      while (!stop) {
        reactor::Deadline d =
            kDeadline ? reactor::deadline_after(std::chrono::hours(1)) : reactor::kNoDeadline;
        (void)ch.pop(d);
      }
    });
    if (!consumer.ok()) return state.SkipWithError(consumer.status().ToString().c_str());
    reactor::yield();  // the consumer parks in pop
    const LoopCounters before = LoopCounters::of(r);
    for (auto _ : state) {
      (void)ch.push(1);
      reactor::yield();  // the consumer takes it and parks again
    }
    report_loop_counters(state, before, LoopCounters::of(r));
    stop = true;
    (void)ch.push(0);
    consumer->join();
  });
}

// ---- Channel ----

// Two fibers, two Channels of capacity 1: ping one way, pong back. An iteration is a round trip.
void BM_channel_ping_pong(benchmark::State& state) {
  run_in_reactor(state, [&](Reactor& r) {
    reactor::Channel<int> ping(1), pong(1);
    auto echo = reactor::spawn("pong", [&] {
      for (;;) {
        absl::StatusOr<int> v = ping.pop();
        if (!v.ok() || *v < 0) return;
        (void)pong.push(*v);
      }
    });
    if (!echo.ok()) return state.SkipWithError(echo.status().ToString().c_str());
    const LoopCounters before = LoopCounters::of(r);
    int i = 0;
    for (auto _ : state) {
      (void)ping.push(i++);
      benchmark::DoNotOptimize(pong.pop());
    }
    report_loop_counters(state, before, LoopCounters::of(r));
    (void)ping.push(-1);
    echo->join();
  });
}

// ---- cross-thread wakeup ----

// A reactor on a second thread (CPU 0) sits idle in its backend poll; this thread (CPU 1) posts
// a function (post) or a fiber (submit) to it and spins until it has run. An iteration is that
// round trip: queue, eventfd wakeup, the loop thread waking, running it, and the store seen here.
// `loop_cpu/op` is the loop thread's CPU time per round trip.
// A reactor on `backend` running on a thread of its own, pinned to CPU 0, until stop(): its
// cancelled fibers finish before it goes, and it outlives stop()'s wakeup write (the flag the loop
// sees comes first). reactor() is null if it could not be created; loop_clock() is the thread's
// CPU clock.
class LoopThread {
 public:
  explicit LoopThread(const char* backend)
      : thread_([this, backend] {
          reactor::bench::ScopedPin pin(0);
          Reactor::Options options;
          options.backend = backend;
          absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::create(options);
          if (r.ok()) pthread_getcpuclockid(pthread_self(), &clock_);
          ready_.store(r.ok() ? r->get() : nullptr, std::memory_order_release);
          created_.store(true, std::memory_order_release);
          if (!r.ok()) return;
          (*r)->run_until_stopped();
          (*r)->cancel_all();
          (*r)->run_until([&] { return (*r)->fibers_alive() == 0; });
          while (!stop_returned_.load(std::memory_order_acquire)) std::this_thread::yield();
        }) {
    while (!created_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  ~LoopThread() { stop(); }
  Reactor* reactor() const { return ready_.load(std::memory_order_acquire); }
  clockid_t loop_clock() const { return clock_; }
  void stop() {
    if (!thread_.joinable()) return;
    if (Reactor* r = reactor()) r->stop();
    stop_returned_.store(true, std::memory_order_release);
    thread_.join();
  }

 private:
  std::atomic<Reactor*> ready_{nullptr};
  std::atomic<bool> created_{false}, stop_returned_{false};
  clockid_t clock_ = CLOCK_THREAD_CPUTIME_ID;  // written before created_, read after it
  std::thread thread_;
};

template <bool kSubmit>
void BM_cross_thread(benchmark::State& state) {
  LoopThread loop(kBackend);
  reactor::bench::ScopedPin pin(1);
  Reactor* r = loop.reactor();
  if (r == nullptr) return state.SkipWithError("reactor on the loop thread could not be created");
  const clockid_t loop_clock = loop.loop_clock();
  std::atomic<uint64_t> seen{0};
  uint64_t seq = 0;
  const double loop_cpu0 = reactor::bench::clock_seconds(loop_clock);
  for (auto _ : state) {
    const uint64_t mine = ++seq;
    auto fn = [&seen, mine] { seen.store(mine, std::memory_order_release); };
    if constexpr (kSubmit) {
      r->submit("x", fn);
    } else {
      r->post(fn);
    }
    while (seen.load(std::memory_order_acquire) != mine) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
  }
  // The loop thread's CPU per round trip stays meaningful when other work on the machine delays
  // its wakeups (and with them the round trip's wall time).
  set_per_op(state, "loop_cpu/op", reactor::bench::clock_seconds(loop_clock) - loop_cpu0);
}

// ---- cross-shard call ----

uint64_t backend_counter(const Reactor& r, std::string_view name) {
  std::vector<reactor::Counter> out;
  r.backend().counters(out);
  for (const reactor::Counter& c : out) {
    if (c.name == name) return c.value;
  }
  return 0;
}

// Two shards: a reactor on a second thread (CPU 0) and one on this thread (CPU 1), on the same
// backend. An iteration is call_on(other, fn) from a fiber here, both loops asleep in between:
// the post and the other loop's wakeup, fn, the reply's post and this loop's wakeup. On io_uring
// each loop wakes the other with a message in its own ring (MSG_RING), submitted with the poll it
// makes anyway, unless `kMsgRing` is false (REACTOR_URING_MSG_RING=0: an eventfd write each).
// `loop_cpu/op` is the other loop's CPU per call, the CPU column this one's; `messages/op` and
// `wakeups/op` count both loops' wakeups.
enum class ShardWake { kEpoll, kUringMessage, kUringEventfd };
template <ShardWake kWake>
void BM_cross_shard_call(benchmark::State& state) {
  const char* backend = kWake == ShardWake::kEpoll ? "epoll" : "io_uring";
  if (kWake == ShardWake::kUringEventfd) {
    ::setenv("REACTOR_URING_MSG_RING", "0", 1);
  } else {
    ::unsetenv("REACTOR_URING_MSG_RING");
  }
  LoopThread loop(backend);
  reactor::bench::ScopedPin pin(1);
  Reactor* const other = loop.reactor();
  if (other == nullptr) {
    ::unsetenv("REACTOR_URING_MSG_RING");
    return state.SkipWithError("reactor on the loop thread could not be created");
  }
  const clockid_t loop_clock = loop.loop_clock();
  Reactor::Options options;
  options.backend = backend;
  absl::Status s = Reactor::run(
      [&] {
        Reactor& self = *Reactor::current();
        const uint64_t messages0 = backend_counter(self, "io_uring_wakeup_messages_total") +
                                   backend_counter(*other, "io_uring_wakeup_messages_total");
        const uint64_t wakeups0 =
            backend_counter(self, "wakeups_total") + backend_counter(*other, "wakeups_total");
        const double loop_cpu0 = reactor::bench::clock_seconds(loop_clock);
        for (auto _ : state) {
          absl::StatusOr<int> v = reactor::call_on(*other, [] { return 1; });
          benchmark::DoNotOptimize(v);
        }
        set_per_op(state, "loop_cpu/op", reactor::bench::clock_seconds(loop_clock) - loop_cpu0);
        set_per_op(state, "messages/op",
                   static_cast<double>(backend_counter(self, "io_uring_wakeup_messages_total") +
                                       backend_counter(*other, "io_uring_wakeup_messages_total") -
                                       messages0));
        set_per_op(state, "wakeups/op",
                   static_cast<double>(backend_counter(self, "wakeups_total") +
                                       backend_counter(*other, "wakeups_total") - wakeups0));
      },
      options);
  if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  loop.stop();
  ::unsetenv("REACTOR_URING_MSG_RING");
}

// ---- reference points: what the machine charges for the calls the scheduler makes ----

// epoll_wait with a zero timeout on an epoll set holding one idle eventfd: what a backend poll
// costs the reactor when it has nothing to report.
void BM_epoll_wait_zero(benchmark::State& state) {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  const int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = ev;
  epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e);
  epoll_event out[16];
  for (auto _ : state) benchmark::DoNotOptimize(epoll_wait(ep, out, 16, 0));
  close(ev);
  close(ep);
}

// The reactor's clock (std::chrono::steady_clock: clock_gettime(CLOCK_MONOTONIC) through the
// vDSO), and two cheaper ways to tell time that a hot path could use instead.
void BM_steady_clock_now(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Clock::now());
}

void BM_clock_monotonic_coarse(benchmark::State& state) {
  timespec ts{};
  for (auto _ : state) {
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    benchmark::DoNotOptimize(ts);
  }
}

#if defined(__x86_64__)
void BM_rdtsc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(__builtin_ia32_rdtsc());
}
#endif

// REACTOR_BENCH_ITERATIONS=N runs every benchmark for exactly N iterations, once: with two values
// of N under `valgrind --tool=callgrind`, the difference of the instruction counts divided by the
// difference of N is the exact count of one iteration (see perf/callgrind-ops.sh).
void fixed_iterations(benchmark::internal::Benchmark* b) {
  if (const char* n = std::getenv("REACTOR_BENCH_ITERATIONS")) b->Iterations(std::atoll(n));
}

benchmark::internal::Benchmark* add(const char* name, void (*fn)(benchmark::State&)) {
  return benchmark::RegisterBenchmark(name, fn)->Apply(fixed_iterations);
}

void register_benchmarks() {
  using enum Words;
  add("switch/reactor/switch_context", BM_switch_reactor<kMadeByContext>);
  add("switch/reactor/switch_context/default_fp_control", BM_switch_reactor<kDefaults>);
  add("switch/reactor/asm_only", BM_switch_raw<&reactor_switch_context, kMadeByContext>);
  // The switch to and from a fiber that owns its floating-point control state.
  add("switch/reactor/switch_context_fp", BM_switch_reactor<kMadeByContext, true>);
  add("switch/reactor/asm_only_fp", BM_switch_raw<&reactor_switch_context_fp, kMadeByContext>);
#if defined(REACTOR_BENCH_FCONTEXT)
  add("switch/boost_fcontext", BM_switch_fcontext);
#else
  std::fprintf(stderr,
               "runtime_bench: built without Boost.Context (libboost-context-dev): "
               "switch/boost_fcontext skipped\n");
#endif
#if defined(__x86_64__)
  // The variants with the constant control words, as they were first measured, and some with
  // the live ones.
  add("switch/variant/jmp_return", BM_switch_raw<&bench_switch_jmp, kDefaults>);
  add("switch/variant/jmp_return/live_fp_control", BM_switch_raw<&bench_switch_jmp, kLive>);
  add("switch/variant/no_fp_control", BM_switch_raw<&bench_switch_nofp, kDefaults>);
  add("switch/variant/jmp_return_no_fp_control", BM_switch_raw<&bench_switch_jmp_nofp, kDefaults>);
  add("switch/variant/fp_control_if_changed",
      BM_switch_raw<&bench_switch_fp_if_changed, kDefaults>);
  add("switch/variant/fp_control_if_changed/live_fp_control",
      BM_switch_raw<&bench_switch_fp_if_changed, kLive>);
  add("switch/variant/jmp_return_fp_control_if_changed",
      BM_switch_raw<&bench_switch_jmp_fp_if_changed, kDefaults>);
  add("switch/variant/fp_control_stored_early", BM_switch_raw<&bench_switch_fp_early, kDefaults>);
#endif
  add("yield/round_trip_two_fibers", BM_yield_round_trip<false>);
  add("yield/round_trip_two_fibers/own_fp_control", BM_yield_round_trip<true>);
  add("yield/alone", BM_yield_alone);
  add("spawn_join/pooled_stack", BM_spawn_join);
  add("spawn_join/batch", BM_spawn_join_batch)->Arg(100);
  add("timer/heap_arm_cancel", BM_timer_heap_arm_cancel)->Arg(0)->Arg(1000)->Arg(100000);
  add("channel/handoff_with_deadline", BM_channel_handoff<true>);
  add("channel/handoff_no_deadline", BM_channel_handoff<false>);
  add("channel/ping_pong", BM_channel_ping_pong);
  add("cross_thread/post_round_trip", BM_cross_thread<false>)->UseRealTime();
  add("cross_thread/submit_round_trip", BM_cross_thread<true>)->UseRealTime();
  add("cross_shard/call_on/epoll", BM_cross_shard_call<ShardWake::kEpoll>)->UseRealTime();
  add("cross_shard/call_on/io_uring", BM_cross_shard_call<ShardWake::kUringMessage>)->UseRealTime();
  add("cross_shard/call_on/io_uring_eventfd", BM_cross_shard_call<ShardWake::kUringEventfd>)
      ->UseRealTime();
  add("reference/epoll_wait_timeout_0", BM_epoll_wait_zero);
  add("reference/steady_clock_now", BM_steady_clock_now);
  add("reference/clock_monotonic_coarse", BM_clock_monotonic_coarse);
#if defined(__x86_64__)
  add("reference/rdtsc", BM_rdtsc);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  return reactor::bench::run_main(argc, argv, register_benchmarks);
}
