// The one check behind every "Loop thread." contract. An object that only its loop thread may use
// holds a LoopThreadCheck and calls check() at each entry point: debug and sanitizer builds
// compare the caller's thread with the owner's and abort naming the object; release builds
// compile the check away.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace reactor {

#if !defined(NDEBUG) || defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
inline constexpr bool kCheckThreads = true;
#else
inline constexpr bool kCheckThreads = false;
#endif

class LoopThreadCheck {
 public:
  struct FirstUse {};

  // Owned by the constructing thread. `what` names the object in the abort message (a literal).
  explicit LoopThreadCheck(const char* what) : what_(what), owner_(pthread_self()), bound_(true) {}
  // Owned by the first thread that calls check(): for an object built on one thread and then
  // handed to the loop that owns it.
  LoopThreadCheck(const char* what, FirstUse) : what_(what) {}

  // Aborts unless called on the owner's thread. Any thread.
  void check() const {
    if constexpr (kCheckThreads) {
      const pthread_t self = pthread_self();
      if (!bound_.load(std::memory_order_acquire)) {
        bool expected = false;
        if (claiming_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
          owner_ = self;
          bound_.store(true, std::memory_order_release);
          return;
        }
        while (!bound_.load(std::memory_order_acquire)) {
        }
      }
      if (!pthread_equal(owner_, self)) {
        std::fprintf(stderr, "reactor: %s used from a thread other than its loop's\n", what_);
        std::abort();
      }
    }
  }

 private:
  const char* what_;
  mutable pthread_t owner_{};
  mutable std::atomic<bool> bound_{false};
  mutable std::atomic<bool> claiming_{false};
};

}  // namespace reactor
