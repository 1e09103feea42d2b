// Channel<T>: a bounded FIFO between fibers of one reactor (asyncio.Queue with a maxsize).
// push waits while full, pop waits while empty; both take a deadline and are cancellable.
// close() wakes everyone: pushes then fail, pops drain what is left and then fail. Loop thread
// only.
#pragma once

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/reactor.h"  // WaitList's wait and wakes (wait_list.h)
#include "reactor/wait_list.h"

namespace reactor {

template <class T>
class Channel {
 public:
  // capacity >= 1.
  explicit Channel(size_t capacity)
      : slots_(capacity == 0 ? 1 : capacity), capacity_(slots_.size()) {}

  // OK, DeadlineExceeded, Cancelled, or FailedPrecondition once closed. `value` is consumed.
  absl::Status push(T value, Deadline deadline = kNoDeadline) {
    while (size_ == capacity_ && !closed_) {
      absl::Status s = not_full_.wait(deadline, "Channel::push");
      if (!s.ok()) return s;
    }
    if (closed_) return absl::FailedPreconditionError("Channel::push: channel closed");
    put(std::move(value));
    return absl::OkStatus();
  }

  // The oldest value; DeadlineExceeded, Cancelled, or OutOfRange once closed and drained.
  absl::StatusOr<T> pop(Deadline deadline = kNoDeadline) {
    while (size_ == 0 && !closed_) {
      absl::Status s = not_empty_.wait(deadline, "Channel::pop");
      if (!s.ok()) return s;
    }
    if (size_ == 0) return absl::OutOfRangeError("Channel::pop: channel closed");
    return take();
  }

  bool try_push(T& value) {
    if (closed_ || size_ == capacity_) return false;
    put(std::move(value));
    return true;
  }
  std::optional<T> try_pop() {
    if (size_ == 0) return std::nullopt;
    return take();
  }

  void close() {
    closed_ = true;
    not_empty_.wake_all();
    not_full_.wake_all();
  }
  bool closed() const { return closed_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

 private:
  // Ring indices by compare and subtract: a division costs more than the rest of a push.
  size_t wrap(size_t i) const { return i >= capacity_ ? i - capacity_ : i; }
  void put(T&& value) {
    slots_[wrap(head_ + size_)].emplace(std::move(value));
    ++size_;
    not_empty_.wake_one();
  }
  T take() {
    std::optional<T>& slot = slots_[head_];
    T value = std::move(*slot);
    slot.reset();
    head_ = wrap(head_ + 1);
    --size_;
    not_full_.wake_one();
    return value;
  }

  std::vector<std::optional<T>> slots_;
  size_t capacity_;  // slots_.size(), kept: the vector's size is a subtraction and a shift
  size_t head_ = 0;
  size_t size_ = 0;
  bool closed_ = false;
  detail::WaitList not_empty_;
  detail::WaitList not_full_;
};

}  // namespace reactor
