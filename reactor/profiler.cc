#include "reactor/profiler.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"
#include "reactor/fiber_stack.h"

namespace reactor {
namespace {

// The profiler's own signal; the watchdog's frames signal is SIGRTMIN + 7.
int profile_signal() {
  return SIGRTMIN + 8;
}

std::atomic<bool> g_running{false};  // one profile per process

}  // namespace

// One loop thread's samples: the signal handler on that thread writes at head, the draining
// thread reads from tail (single producer, single consumer). Allocated at the first profile that
// needs it and never freed, so a signal still queued after its timer was deleted finds memory.
struct Profiler::Ring {
  static constexpr size_t kCapacity = 512;  // 0.5 s at the highest rate between two drains
  struct Slot {
    uint32_t epoch = 0;  // the profile that recorded it; a late signal's sample is skipped
    ProfileSample sample;
  };
  std::atomic<const Reactor*> reactor{nullptr};  // null: not sampling
  std::atomic<uint32_t> epoch{0};
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> tail{0};
  std::atomic<uint64_t> dropped{0};
  Slot slots[kCapacity];
};

namespace {

// Allocated by start(), under g_running; read by forget() on loop threads.
std::atomic<Profiler::Ring*> g_rings[Profiler::kMaxThreads];

// Async-signal-safe: atomics, a frame-pointer walk bounded by the stack, plain stores.
// Not inlined: perf/profile-cost.sh counts the handler's calls by its calls of this function.
[[gnu::noinline]] void profile_record(Profiler::Ring& ring, const Reactor& reactor, int overrun,
                                      void* uctx) {
  const uint64_t head = ring.head.load(std::memory_order_relaxed);
  if (head - ring.tail.load(std::memory_order_acquire) >= Profiler::Ring::kCapacity) {
    ring.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  Profiler::Ring::Slot& slot = ring.slots[head % Profiler::Ring::kCapacity];
  slot.epoch = ring.epoch.load(std::memory_order_relaxed);
  ProfileSample& s = slot.sample;
  const Reactor::Activity a = reactor.activity();
  s.kind = a.kind;
  if (a.fiber != nullptr) {
    a.fiber->packed_name.copy(s.fiber);
  } else {
    s.fiber[0] = '\0';
  }
  s.weight = 1 + static_cast<uint32_t>(std::max(0, overrun));
  // The frame chain of whichever stack the signal interrupted: the running fiber's, else the
  // loop thread's (the scheduler, the poll; or a fiber caught mid-switch).
  uintptr_t lo = reactor.thread_stack_lo(), hi = reactor.thread_stack_hi();
  if (a.fiber != nullptr && a.fiber->stack.mapping != nullptr) {
    const auto flo = reinterpret_cast<uintptr_t>(a.fiber->stack.bottom());
    const auto fhi = reinterpret_cast<uintptr_t>(a.fiber->stack.top());
    const uintptr_t sp = interrupted_sp(uctx);
    if (sp >= flo && sp < fhi) lo = flo, hi = fhi;
  }
  s.depth = walk_interrupted_stack(uctx, lo, hi, s.pcs, ProfileSample::kMaxFrames);
  ring.head.store(head + 1, std::memory_order_release);
}

void profile_handler(int, siginfo_t* si, void* uctx) {
  const int saved_errno = errno;
  if (si != nullptr && si->si_code == SI_TIMER) {
    auto* ring = static_cast<Profiler::Ring*>(si->si_value.sival_ptr);
    const Reactor* r = ring != nullptr ? ring->reactor.load(std::memory_order_acquire) : nullptr;
    if (r != nullptr) profile_record(*ring, *r, si->si_overrun, uctx);
  }
  errno = saved_errno;
}

void install_profile_handler() {
  static std::once_flag once;
  std::call_once(once, [] { install_backtrace_handler(profile_signal(), &profile_handler); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Profiler>> Profiler::start(std::vector<const Reactor*> reactors,
                                                          Duration interval, Clock clock_kind) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count();
  if (ns < 1000) return absl::InvalidArgumentError("profile: the interval must be at least 1 us");
  if (reactors.empty() || reactors.size() > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile: 1 to ", kMaxThreads, " threads, not ", reactors.size()));
  }
  bool expected = false;
  if (!g_running.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    return absl::FailedPreconditionError("a profile is already running (one at a time)");
  }
  install_profile_handler();
  std::unique_ptr<Profiler> p(new Profiler());
  static uint32_t epoch = 0;  // under g_running
  p->epoch_ = ++epoch;
  const timespec period{static_cast<time_t>(ns / 1'000'000'000),
                        static_cast<long>(ns % 1'000'000'000)};
  for (size_t i = 0; i < reactors.size(); ++i) {
    if (g_rings[i].load(std::memory_order_acquire) == nullptr) {
      g_rings[i].store(new Ring(), std::memory_order_release);
    }
    Ring& ring = *g_rings[i].load(std::memory_order_relaxed);
    ring.epoch.store(p->epoch_, std::memory_order_relaxed);
    ring.tail.store(ring.head.load(std::memory_order_acquire), std::memory_order_release);
    ring.dropped.store(0, std::memory_order_relaxed);
    ring.reactor.store(reactors[i], std::memory_order_release);
    Armed& a = p->threads_.emplace_back();
    a.ring = &ring;
    clockid_t clock = CLOCK_MONOTONIC;
    if (clock_kind == Clock::kThreadCpu) {
      if (int e = pthread_getcpuclockid(reactors[i]->thread_handle(), &clock); e != 0) {
        return errno_status(e, "pthread_getcpuclockid");  // ~Profiler disarms what was armed
      }
    }
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = profile_signal();
    sev.sigev_value.sival_ptr = &ring;
    sev._sigev_un._tid = reactors[i]->thread_id();
    if (::timer_create(clock, &sev, &a.timer) != 0) return errno_status(errno, "timer_create");
    a.armed = true;
    const itimerspec spec{period, period};
    if (::timer_settime(a.timer, 0, &spec, nullptr) != 0) {
      return errno_status(errno, "timer_settime");
    }
  }
  return p;
}

Profiler::~Profiler() {
  stop();
  g_running.store(false, std::memory_order_release);
}

void Profiler::stop() {
  for (Armed& a : threads_) {
    a.ring->reactor.store(nullptr, std::memory_order_release);
    if (a.armed) ::timer_delete(a.timer);
    a.armed = false;
  }
}

void Profiler::drain(const std::function<void(size_t, const ProfileSample&)>& fn) {
  for (size_t i = 0; i < threads_.size(); ++i) {
    Ring& ring = *threads_[i].ring;
    const uint64_t head = ring.head.load(std::memory_order_acquire);
    uint64_t tail = ring.tail.load(std::memory_order_relaxed);
    for (; tail < head; ++tail) {
      const Ring::Slot& slot = ring.slots[tail % Ring::kCapacity];
      if (slot.epoch == epoch_) fn(i, slot.sample);
    }
    ring.tail.store(tail, std::memory_order_release);
  }
}

void Profiler::forget(const Reactor* reactor) {
  for (std::atomic<Ring*>& slot : g_rings) {
    Ring* const ring = slot.load(std::memory_order_acquire);
    if (ring == nullptr) continue;
    const Reactor* expected = reactor;
    ring->reactor.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
  }
}

uint64_t Profiler::dropped() const {
  uint64_t n = 0;
  for (const Armed& a : threads_) n += a.ring->dropped.load(std::memory_order_relaxed);
  return n;
}

}  // namespace reactor
