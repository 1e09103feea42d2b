// The reactor's timers: a binary min-heap of intrusive nodes, O(log n) arm and cancel.
// Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "reactor/time.h"

namespace reactor::detail {

struct TimerNode {
  static constexpr size_t kNotArmed = std::numeric_limits<size_t>::max();
  Deadline when{};
  uint64_t seq = 0;  // arming order: equal deadlines fire first-armed first
  size_t heap_index = kNotArmed;
  void (*fire)(TimerNode*) = nullptr;
  void* data = nullptr;  // for `fire`

  bool armed() const { return heap_index != kNotArmed; }
};

class TimerHeap {
 public:
  void arm(TimerNode* node, Deadline when);
  void cancel(TimerNode* node);
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  Deadline next() const { return heap_.empty() ? kNoDeadline : heap_.front()->when; }
  // Unlinks and fires every node due at `now`, in deadline order. Returns how many fired.
  size_t fire_due(Deadline now);

 private:
  bool less(size_t a, size_t b) const;
  void swap_nodes(size_t a, size_t b);
  void sift_up(size_t i);
  void sift_down(size_t i);
  void remove_at(size_t i);

  std::vector<TimerNode*> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace reactor::detail
