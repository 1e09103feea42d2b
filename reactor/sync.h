// Synchronisation between fibers of one reactor: Event, Mutex, Semaphore, WaitGroup.
// Like asyncio's, they are not thread-safe: loop thread only (cross-thread: submit_to).
// Every wait takes a deadline and is cancellable: OK, DeadlineExceeded or Cancelled.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "reactor/reactor.h"  // WaitList's wait and wakes (wait_list.h)
#include "reactor/wait_list.h"

namespace reactor {

// A flag fibers wait for; set() wakes them all and lets later waits pass until clear().
class Event {
 public:
  void set() {
    set_ = true;
    waiters_.wake_all();
  }
  void clear() { set_ = false; }
  bool is_set() const { return set_; }
  absl::Status wait(Deadline deadline = kNoDeadline) {
    while (!set_) {
      absl::Status s = waiters_.wait(deadline, "Event::wait");
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  bool set_ = false;
  detail::WaitList waiters_;
};

// Counts permits; acquire() waits for one. Waiters are served first come, first served: a
// release hands its permit straight to the oldest waiter.
class Semaphore {
 public:
  explicit Semaphore(size_t permits) : permits_(permits) {}
  absl::Status acquire(Deadline deadline = kNoDeadline) {
    // A parked waiter exists only while permits_ == 0: release() hands permits to waiters first.
    if (permits_ > 0) {
      --permits_;
      return absl::OkStatus();
    }
    return waiters_.wait(deadline, "Semaphore::acquire");  // OK: a release handed us its permit
  }
  bool try_acquire() {
    if (permits_ == 0) return false;
    --permits_;
    return true;
  }
  void release() {
    if (!waiters_.wake_one()) ++permits_;
  }
  size_t available() const { return permits_; }

 private:
  size_t permits_;
  detail::WaitList waiters_;
};

// A mutual-exclusion lock between fibers (hold it across suspension points if you must; a
// std::mutex held across one would deadlock the loop). FIFO hand-off on unlock.
class Mutex {
 public:
  absl::Status lock(Deadline deadline = kNoDeadline) { return sem_.acquire(deadline); }
  bool try_lock() { return sem_.try_acquire(); }
  void unlock() { sem_.release(); }
  bool locked() const { return sem_.available() == 0; }

 private:
  Semaphore sem_{1};
};

// Waits for a count of work items to reach zero (Go's sync.WaitGroup).
class WaitGroup {
 public:
  void add(size_t n = 1) { count_ += n; }
  void done() {
    if (count_ > 0 && --count_ == 0) waiters_.wake_all();
  }
  size_t count() const { return count_; }
  absl::Status wait(Deadline deadline = kNoDeadline) {
    while (count_ > 0) {
      absl::Status s = waiters_.wait(deadline, "WaitGroup::wait");
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  size_t count_ = 0;
  detail::WaitList waiters_;
};

}  // namespace reactor
