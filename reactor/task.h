// Task<T>: the handle spawn() returns — join for the value (or the fiber's exception), wait with a
// deadline, cancel. A Task belongs to the reactor that spawned it: loop thread only.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "reactor/fiber.h"
#include "reactor/wait_list.h"

namespace reactor {

namespace detail {

struct TaskStateBase {
  bool done = false;
  std::exception_ptr error;
  Fiber* fiber = nullptr;  // null once done
  WaitList joiners;
};

template <class T>
struct TaskState : TaskStateBase {
  std::optional<T> value;
};
template <>
struct TaskState<void> : TaskStateBase {};

void cancel_fiber(Fiber* fiber);

// Runs `fn` in the fiber and records its result or exception in `state`.
template <class T, class F>
struct TaskBody final : FiberBody {
  TaskBody(std::shared_ptr<TaskState<T>> s, F&& f) : state(std::move(s)), fn(std::move(f)) {}
  void run() override {
    try {
      if constexpr (std::is_void_v<T>) {
        fn();
      } else {
        state->value.emplace(fn());
      }
    } catch (...) {
      state->error = std::current_exception();
    }
    state->done = true;
    state->fiber = nullptr;
    state->joiners.wake_all();
  }
  std::shared_ptr<TaskState<T>> state;
  F fn;
};

}  // namespace detail

template <class T>
class Task {
 public:
  Task() = default;
  explicit Task(std::shared_ptr<detail::TaskState<T>> state, uint64_t id)
      : state_(std::move(state)), id_(id) {}

  uint64_t id() const { return id_; }
  bool valid() const { return state_ != nullptr; }
  bool done() const { return state_->done; }

  // Waits until the fiber ends, then returns its value or rethrows its exception. The wait itself
  // is not cancellable (use wait() for that). Call once for a value: it is moved out.
  T join() {
    while (!state_->done) (void)state_->joiners.wait(kNoDeadline, "join", /*cancellable=*/false);
    if (state_->error) std::rethrow_exception(state_->error);
    if constexpr (!std::is_void_v<T>) return std::move(*state_->value);
  }

  // Waits until the fiber ends: OK, DeadlineExceeded or Cancelled (the caller was cancelled).
  absl::Status wait(Deadline deadline = kNoDeadline) {
    while (!state_->done) {
      absl::Status s = state_->joiners.wait(deadline, "join");
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Asks the fiber to stop: its pending suspension point, and every later one, returns Cancelled.
  // No effect once the fiber has ended.
  void cancel() {
    if (!state_->done && state_->fiber != nullptr) detail::cancel_fiber(state_->fiber);
  }

 private:
  std::shared_ptr<detail::TaskState<T>> state_;
  uint64_t id_ = 0;
};

// Waits for every task, then rethrows the first exception (in argument order), if any.
template <class... Ts>
void join_all(Task<Ts>&... tasks) {
  std::exception_ptr first;
  auto one = [&](auto& t) {
    try {
      t.join();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  };
  (one(tasks), ...);
  if (first) std::rethrow_exception(first);
}

// The same over a vector of tasks.
template <class T>
void join_all(std::vector<Task<T>>& tasks) {
  std::exception_ptr first;
  for (auto& t : tasks) {
    try {
      t.join();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace reactor
