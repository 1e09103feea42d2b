#include "services/read_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace reactord {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPooled = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kPooled = false;
#else
constexpr bool kPooled = true;
#endif
#else
constexpr bool kPooled = true;
#endif

constexpr size_t kMappingBytes = 1024 * 1024;

struct Pool {
  std::mutex mu;
  std::vector<void*> free;    // blocks given back
  std::byte* next = nullptr;  // the rest of the newest mapping
  std::byte* end = nullptr;
};

Pool& pool() {
  static Pool* const p = new Pool;  // never destroyed: blocks may be given back at exit
  return *p;
}

}  // namespace

void* BufferBlocks::take() {
  if (!kPooled) return ::operator new(kBytes, std::align_val_t(kBufferPageAlign));
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  if (!p.free.empty()) {
    void* const b = p.free.back();
    p.free.pop_back();
    return b;
  }
  if (p.next == p.end) {
    void* const m =
        ::mmap(nullptr, kMappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    p.next = static_cast<std::byte*>(m);
    p.end = p.next + kMappingBytes;
  }
  void* const b = p.next;
  p.next += kBytes;
  return b;
}

void BufferBlocks::give(void* b) noexcept {
  if (b == nullptr) return;
  if (!kPooled) return ::operator delete(b, std::align_val_t(kBufferPageAlign));
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  try {
    p.free.push_back(b);
  } catch (const std::bad_alloc&) {
    // The block is lost to the pool (its pages stay mapped); nothing else depends on it.
  }
}

}  // namespace reactord
