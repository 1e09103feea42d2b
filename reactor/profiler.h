// A sampling CPU profiler over reactor threads (`reactorctl profile`): each profiled loop thread
// gets a POSIX timer on its own CPU-time clock (pthread_getcpuclockid) that sends a real-time
// signal of its own (not the watchdog's) to that thread alone (SIGEV_THREAD_ID) every `interval`
// of CPU time the thread uses. The handler records, into a ring preallocated per thread, what the
// loop was doing (Reactor::activity: the running fiber and its name, or the scheduler, the
// backend's wait, an idle spin) and the return addresses of the interrupted code (its frame
// chain, walk_interrupted_stack in fiber_stack.h): no allocation, no lock, no unwinder. Another
// thread drains the rings while the profile runs and names the frames (FrameSymbolizer), off the
// loops.
//
// Nothing is armed while no profile runs: the loops pay nothing but the stores the watchdog's
// current slice already makes. A thread that uses no CPU (blocked in the backend's wait) gets no
// samples: the profile shows where CPU time goes, not where wall time goes. Under TSan the signal
// waits for the thread's next intercepted call (a pure arithmetic loop is never sampled inside).
// A build without the watchdog's hooks (-DREACTOR_WATCHDOG_HOOKS=OFF, benchmarks only) publishes
// no slice: every sample is then rooted at the scheduler.
// The signal may cut a non-restartable sleep of the loop thread short (nanosleep, poll); it
// arrives only while the thread uses CPU, so a thread blocked in a wait is not interrupted.
#pragma once

#include <time.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "reactor/reactor.h"
#include "reactor/time.h"

namespace reactor {

// One sample as the signal handler recorded it.
struct ProfileSample {
  static constexpr int kMaxFrames = 64;
  Reactor::Activity::Kind kind = Reactor::Activity::Kind::kScheduler;
  uint32_t weight = 1;  // CPU periods it stands for: 1 plus the timer's overruns before it
  char fiber[detail::PackedName::kWords * 8] = {};  // kFiber: the fiber's name
  int depth = 0;
  // pcs[0] is the interrupted pc, then return addresses, innermost first.
  void* pcs[kMaxFrames];
};

class Profiler {
 public:
  // How many reactors one profile samples at most.
  static constexpr size_t kMaxThreads = 256;
  struct Ring;  // one thread's samples (profiler.cc)

  // What the interval is counted in. kThreadCpu (profiles): the thread's CPU time, so a thread
  // gets samples in proportion to the CPU it uses; the kernel checks such a timer at the scheduler
  // tick (250 Hz here), so a shorter interval arrives as one signal with overruns. kMonotonic
  // (measurement only, perf/profile_signal_cost.cc): wall time, an hrtimer, so a sample's cost can
  // be measured at rates a CPU-time timer cannot reach; a blocked thread is then woken for it.
  enum class Clock { kThreadCpu, kMonotonic };

  // Starts sampling the loop thread of each of `reactors` every `interval` of that thread's CPU
  // time (or of wall time: `clock`). FailedPrecondition while another profile runs in this
  // process (one at a time); InvalidArgument for a bad interval or too many reactors; the errno
  // when a timer cannot be made. The reactors must be alive when it starts; one destroyed while
  // it is sampled stops being sampled (~Reactor calls forget()). Any thread.
  static absl::StatusOr<std::unique_ptr<Profiler>> start(std::vector<const Reactor*> reactors,
                                                         Duration interval,
                                                         Clock clock = Clock::kThreadCpu);
  ~Profiler();  // stop(), then lets the next profile start
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Hands each sample recorded since the last call to fn(index into `reactors`, sample). The
  // thread that started the profile.
  void drain(const std::function<void(size_t, const ProfileSample&)>& fn);
  // Disarms the timers; what was recorded before can still be drained. The thread that started
  // the profile; idempotent.
  void stop();
  // Samples lost because a thread's ring was full (drain not called often enough). Any thread.
  uint64_t dropped() const;
  // Stops sampling `reactor` in any profile: a signal that arrives later records nothing. Called
  // first thing by ~Reactor on its loop thread, where the profile's signals are delivered, so no
  // handler can be reading the reactor as it goes. Loop thread of `reactor`.
  static void forget(const Reactor* reactor);

 private:
  struct Armed {
    Ring* ring = nullptr;
    timer_t timer{};
    bool armed = false;  // `timer` exists
  };
  Profiler() = default;

  std::vector<Armed> threads_;
  uint32_t epoch_ = 0;
};

}  // namespace reactor
