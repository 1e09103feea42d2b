// Fiber stacks: mmap'd, pooled per reactor, guarded while the process has mappings to spare.
//
// A guarded stack costs two memory mappings (the PROT_NONE guard page and the stack), and
// vm.max_map_count (65530 by default) caps a process at about 32,700 of them. Past the guard
// budget a stack gets a canary in its lowest bytes instead, checked at every switch away from its
// fiber. Either kind of overflow ends the process with `fiber 'NAME' overflowed its N KiB stack`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace reactor {

// The system's page size (sysconf), read once at start-up.
extern const size_t kPageBytes;

struct Stack {
  std::byte* mapping = nullptr;  // start of the mmap'd region (the guard or canary page)
  size_t mapping_size = 0;
  bool guarded = false;

  std::byte* top() const { return mapping + mapping_size; }
  // Lowest usable address: above the guard page; the canary sits in the page below it too.
  std::byte* bottom() const { return mapping + kPageBytes; }
  size_t usable_size() const { return mapping_size - kPageBytes; }
  // Inline for guarded stacks: the scheduler asks at every switch away from a fiber.
  bool canary_intact() const { return guarded || canary_words_intact(); }
  bool canary_words_intact() const;
};

class StackPool {
 public:
  // `stack_size` is the usable size, rounded up to whole pages. `max_guarded` bounds this pool's
  // guarded stacks on top of the process-wide budget derived from vm.max_map_count.
  StackPool(size_t stack_size, size_t max_cached, size_t max_guarded = SIZE_MAX);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // A stack from the cache, or a new mapping. Fails (ResourceExhausted, with errno) only when the
  // kernel refuses the mapping. Owner thread only.
  absl::StatusOr<Stack> allocate();
  // allocate()'s common case inline, without a StatusOr: a stack from the cache, false (changing
  // nothing) when the cache is empty. Owner thread only.
  bool take_cached(Stack* out) {
    if (cached_ == 0) return false;
    *out = cache_[--cached_];
    bump(out->guarded ? guarded_in_use_ : canary_in_use_, 1);
    return true;
  }
  // Returns a stack to the cache, or unmaps it when the cache is full. Owner thread only.
  void release(Stack stack) {
    bump(stack.guarded ? guarded_in_use_ : canary_in_use_, static_cast<size_t>(-1));
    if (cached_ < slots_) [[likely]] {
      cache_[cached_++] = stack;
    } else {
      release_slow(stack);
    }
  }

  size_t stack_size() const { return stack_size_; }
  // Stacks in use by kind. Any thread (relaxed loads: a reading, exact at the owner's last
  // allocate or release).
  size_t guarded_in_use() const { return guarded_in_use_.load(std::memory_order_relaxed); }
  size_t canary_in_use() const { return canary_in_use_.load(std::memory_order_relaxed); }
  // The counts themselves, for the reactor's gauges (stats.h: DerivedGauge).
  const std::atomic<size_t>& guarded_in_use_count() const { return guarded_in_use_; }
  const std::atomic<size_t>& canary_in_use_count() const { return canary_in_use_; }
  size_t cached() const { return cached_; }

 private:
  void unmap(const Stack& stack);
  // release() with every slot of the cache taken: more slots (up to max_cached), or unmap.
  [[gnu::noinline]] void release_slow(Stack stack);

  size_t stack_size_;
  size_t max_cached_;
  size_t max_guarded_;
  // One writer (the owner thread): updated with a relaxed load and store, no locked instruction.
  static void bump(std::atomic<size_t>& n, size_t delta) {
    n.store(n.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  std::atomic<size_t> guarded_in_use_{0};
  std::atomic<size_t> canary_in_use_{0};
  size_t guarded_owned_ = 0;  // guarded stacks mapped by this pool, in use or cached
  // The cache: cache_[0, cached_) of slots_ slots, grown by release_slow (a plain array, so that
  // release's fast path has no reallocation in its line).
  std::unique_ptr<Stack[]> cache_;
  size_t slots_ = 0;
  size_t cached_ = 0;
};

// The process-wide guard budget: how many guarded stacks may exist at once, derived once from
// vm.max_map_count and the mappings in use at first call. Any thread.
size_t guarded_stack_budget();

// Installs the SIGSEGV/SIGBUS handler that reports a fiber's guard-page hit (once per process) and
// an alternate signal stack for the calling thread (once per thread). Any thread.
void install_overflow_handler();

// How the overflow handler learns which fiber runs on the faulting thread: its name and stack, or
// false outside a fiber. Called in the signal handler: async-signal-safe. The scheduler installs
// it, so a switch costs nothing for the overflow watch.
using RunningFiberLookup = bool (*)(const char** fiber_name, const Stack** stack);
// Any thread; the last one installed wins (there is one scheduler).
void set_running_fiber_lookup(RunningFiberLookup lookup);

// Writes `fiber 'NAME' overflowed its N KiB stack` to stderr and aborts. Async-signal-safe.
[[noreturn]] void report_overflow(const char* fiber_name, size_t stack_size);

}  // namespace reactor
