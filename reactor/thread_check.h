// The one check behind every "Loop thread." contract: an object that may be used by one thread
// only holds a LoopThreadCheck, taken on that thread, and calls check() at each entry point.
// Debug and sanitizer builds compare the caller's thread with the owner's and abort with the
// object's name; release builds compile the check away.
#pragma once

#include <pthread.h>

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
  // Owned by the calling thread; `what` names the object in the abort message (a literal).
  explicit LoopThreadCheck(const char* what) : what_(what), owner_(pthread_self()) {}

  // Aborts unless called on the owner's thread. Any thread.
  void check() const {
    if (kCheckThreads && !pthread_equal(owner_, pthread_self())) {
      std::fprintf(stderr, "reactor: %s used from a thread other than its loop's\n", what_);
      std::abort();
    }
  }
  pthread_t owner() const { return owner_; }

 private:
  const char* what_;
  pthread_t owner_;
};

}  // namespace reactor
