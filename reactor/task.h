// Task<T>: the handle spawn() returns — join for the value (or the fiber's exception), wait with a
// deadline, cancel. A Task belongs to the reactor that spawned it: loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "reactor/fiber.h"
#include "reactor/wait_list.h"

namespace reactor {

namespace detail {

// Freed task frames kept by the reactor of the thread for the next spawn, in size classes of
// kGranule bytes up to kClasses * kGranule; larger frames come from operator new. Every block of
// a class is allocated with the class's full size, so a block allocated without a pool (or freed
// after its reactor is gone) can be cached or freed by anyone. Loop thread.
struct FramePool {
  static constexpr size_t kGranule = 32;
  static constexpr size_t kClasses = 16;
  static constexpr uint32_t kMaxPerClass = 1024;
  struct Free {
    Free* next;
  };
  Free* lists[kClasses] = {};
  uint32_t counts[kClasses] = {};

  FramePool() = default;
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;
  ~FramePool() {
    for (Free* b : lists) {
      while (b != nullptr) ::operator delete(std::exchange(b, b->next));
    }
  }
};
// The pool of the reactor running on this thread (null without one). Set by the reactor.
extern constinit thread_local FramePool* t_frame_pool;

// ASan builds cache nothing, so that every use of a freed frame is reported.
#if defined(REACTOR_ASAN)
inline constexpr bool kPoolFrames = false;
#else
inline constexpr bool kPoolFrames = true;
#endif

inline void* alloc_frame(size_t size) {
  const size_t c = (size - 1) / FramePool::kGranule;
  if (!kPoolFrames || c >= FramePool::kClasses) return ::operator new(size);
  if (FramePool* pool = t_frame_pool) {
    if (FramePool::Free* b = pool->lists[c]) {
      pool->lists[c] = b->next;
      --pool->counts[c];
      return b;
    }
  }
  return ::operator new((c + 1) * FramePool::kGranule);
}

inline void free_frame(void* p, size_t size) {
  const size_t c = (size - 1) / FramePool::kGranule;
  FramePool* pool = t_frame_pool;
  if (kPoolFrames && pool != nullptr && c < FramePool::kClasses &&
      pool->counts[c] < FramePool::kMaxPerClass) {
    auto* b = static_cast<FramePool::Free*>(p);
    b->next = pool->lists[c];
    pool->lists[c] = b;
    ++pool->counts[c];
    return;
  }
  ::operator delete(p);
}

// What a Task and its fiber share, in one allocation with the fiber's callable (TaskFrame): the
// result, the joiners, and a count of the two owners, the Task handles and the fiber. Loop thread
// only, so the count is a plain integer.
struct TaskStateBase : FiberBody {
  static void* operator new(size_t size) { return alloc_frame(size); }
  static void operator delete(void* p, size_t size) { free_frame(p, size); }

  bool done = false;
  uint32_t refs = 1;  // the fiber's reference; each Task handle adds one
  std::exception_ptr error;
  Fiber* fiber = nullptr;  // null once done
  WaitList joiners;

  void ref() { ++refs; }
  void unref() {
    if (--refs == 0) delete this;
  }
};

template <class T>
struct TaskState : TaskStateBase {
  std::optional<T> value;
};
template <>
struct TaskState<void> : TaskStateBase {};

void cancel_fiber(Fiber* fiber);

// The task state with the fiber's callable beside it. run() records fn's result or exception, wakes
// the joiners, then releases; release() destroys fn (when the fiber ends, or is abandoned) and
// drops the fiber's reference.
template <class T, class F>
struct TaskFrame final : TaskState<T> {
  static_assert(alignof(F) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__,
                "spawn: an over-aligned callable is not supported");
  explicit TaskFrame(F&& f) : fn(std::move(f)) {}
  ~TaskFrame() override {
    if (fn_alive) fn.~F();
  }
  void run() override {
    try {
      if constexpr (std::is_void_v<T>) {
        fn();
      } else {
        this->value.emplace(fn());
      }
    } catch (...) {
      this->error = std::current_exception();
    }
    this->done = true;
    this->fiber = nullptr;
    this->joiners.wake_all();
    release();  // non-virtual here: TaskFrame is final
  }
  void release() override {
    if (fn_alive) {
      fn_alive = false;
      fn.~F();
    }
    this->unref();
  }
  // In a union so that it can end with the fiber while the state lives on with the Task.
  union {
    F fn;
  };
  bool fn_alive = true;
};

}  // namespace detail

template <class T>
class Task {
 public:
  Task() = default;
  // Adds a reference to `state` (the fiber holds its own).
  Task(detail::TaskState<T>* state, uint64_t id) : state_(state), id_(id) { state_->ref(); }
  Task(const Task& o) : state_(o.state_), id_(o.id_) {
    if (state_ != nullptr) state_->ref();
  }
  Task(Task&& o) noexcept : state_(std::exchange(o.state_, nullptr)), id_(o.id_) {}
  Task& operator=(Task o) noexcept {
    std::swap(state_, o.state_);
    id_ = o.id_;
    return *this;
  }
  ~Task() {
    if (state_ != nullptr) state_->unref();
  }

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
  detail::TaskState<T>* state_ = nullptr;
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

// WaitList's wait and wakes, inline with the reactor's (wait_list.h). At the end: reactor.h needs
// Task, so a file that includes this one first still sees it complete there.
#include "reactor/reactor.h"  // IWYU pragma: keep
