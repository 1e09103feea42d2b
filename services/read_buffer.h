// ReadBuffer: the parsers' byte buffer, a vector whose resize() leaves new bytes uninitialised.
// prepare() grows it by a 16 KiB read chunk before every read and commit() shrinks it back to
// what arrived; std::string::resize zero-filled that chunk each time, ~16,400 instructions per
// request, more than the rest of an HTTP request together (callgrind, docs/benchmarks.md,
// "Comparisons").
#pragma once

#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace reactord {

// An allocator that default-initialises (does nothing for char) where std::allocator
// value-initialises (zeroes).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  using std::allocator<T>::allocator;
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using ReadBuffer = std::vector<char, DefaultInitAllocator<char>>;

}  // namespace reactord
