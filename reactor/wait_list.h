// An intrusive FIFO of parked fibers: the building block of Task::join and the sync primitives.
// Loop thread only.
#pragma once

#include "absl/status/status.h"
#include "reactor/fiber.h"

namespace reactor::detail {

struct Waiter {
  Fiber* fiber = nullptr;
  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  bool linked = false;
};

class WaitList {
 public:
  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;

  bool empty() const { return head_ == nullptr; }

  // Parks the running fiber on this list until woken through it, the deadline passes or (when
  // cancellable) the fiber is cancelled.
  absl::Status wait(Deadline deadline, const char* op, bool cancellable = true);

  // Wakes the first waiter that is still parked (skipping those already woken by a deadline or
  // cancel). True if one was woken: it then returns OK from wait().
  bool wake_one();

  // Wakes every waiter. Returns how many were woken.
  size_t wake_all();

  // The three are defined at the end of reactor.h, inline with the reactor's park and wake (no
  // call of their own per wait or wake); task.h, channel.h and sync.h include it.

 private:
  void push_back(Waiter* w) {
    w->prev = tail_;
    w->next = nullptr;
    (tail_ ? tail_->next : head_) = w;
    tail_ = w;
    w->linked = true;
  }
  // An unlinked waiter's prev and next are left as they were: only `linked` says where it is.
  void remove(Waiter* w) {
    (w->prev ? w->prev->next : head_) = w->next;
    (w->next ? w->next->prev : tail_) = w->prev;
    w->linked = false;
  }
  Waiter* pop_front() {
    Waiter* w = head_;
    if (w == nullptr) return nullptr;
    head_ = w->next;
    (head_ ? head_->prev : tail_) = nullptr;
    w->linked = false;
    return w;
  }

  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

}  // namespace reactor::detail
