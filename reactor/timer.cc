#include "reactor/timer.h"

#include <utility>

namespace reactor::detail {

bool TimerHeap::less(size_t a, size_t b) const {
  const TimerNode* x = heap_[a];
  const TimerNode* y = heap_[b];
  return x->when < y->when || (x->when == y->when && x->seq < y->seq);
}

void TimerHeap::swap_nodes(size_t a, size_t b) {
  std::swap(heap_[a], heap_[b]);
  heap_[a]->heap_index = a;
  heap_[b]->heap_index = b;
}

void TimerHeap::sift_up(size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!less(i, parent)) break;
    swap_nodes(i, parent);
    i = parent;
  }
}

void TimerHeap::sift_down(size_t i) {
  const size_t n = heap_.size();
  for (;;) {
    size_t smallest = i;
    size_t l = 2 * i + 1, r = l + 1;
    if (l < n && less(l, smallest)) smallest = l;
    if (r < n && less(r, smallest)) smallest = r;
    if (smallest == i) return;
    swap_nodes(i, smallest);
    i = smallest;
  }
}

void TimerHeap::arm(TimerNode* node, Deadline when) {
  if (node->armed()) cancel(node);
  node->when = when;
  node->seq = next_seq_++;
  node->heap_index = heap_.size();
  heap_.push_back(node);
  sift_up(node->heap_index);
}

void TimerHeap::remove_at(size_t i) {
  TimerNode* node = heap_[i];
  const size_t last = heap_.size() - 1;
  if (i != last) {
    swap_nodes(i, last);
    heap_.pop_back();
    sift_down(i);
    sift_up(i);
  } else {
    heap_.pop_back();
  }
  node->heap_index = TimerNode::kNotArmed;
}

void TimerHeap::cancel(TimerNode* node) {
  if (node->armed()) remove_at(node->heap_index);
}

size_t TimerHeap::fire_due(Deadline now) {
  size_t fired = 0;
  while (!heap_.empty() && heap_.front()->when <= now) {
    TimerNode* node = heap_.front();
    remove_at(0);
    node->fire(node);
    ++fired;
  }
  return fired;
}

}  // namespace reactor::detail
