// The input side the HTTP and RESP parsers share.
//
// ReadBuffer: the parsers' byte buffer, a vector whose resize() leaves new bytes uninitialised.
// prepare() grows it by a whole read chunk before every read and commit() shrinks it back to what
// arrived; a zero-filling resize (std::string's) would clear that chunk on every read, which cost
// more than parsing and answering the request (docs/benchmarks.md, "Comparisons").
//
// ParserInput<Parser>: bytes arrive through feed() or prepare()/commit() and the parser consumes
// them from the front (start_). Before bytes are added the consumed prefix is dropped, and the
// parser's rebase(n) shifts its own offsets into the buffer down by the n bytes dropped.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace reactord {

inline constexpr size_t kBufferPageAlign = 4096;

// Gives the whole pages inside [p, p + n) back to the kernel (madvise MADV_DONTNEED): they read
// as zeros next time and take no memory until then. For buffers whose bytes are no longer needed
// (an idle connection's, Connection::idle_read_until); the partial pages at either end stay.
inline void release_whole_pages(void* p, size_t n) {
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Blocks of kBytes (a read chunk, 16 KiB) for connections' read buffers: page-aligned and with
// no allocator header in the pages before or after them, so that release_whole_pages gives every
// page of an idle connection's buffer back (a block from malloc or an aligned operator new shares
// its first page's neighbour with the allocator's header, which stays: 2 KiB per idle connection,
// measured). Carved from 1 MiB mappings; a freed block goes to a process-wide free list (a mutex,
// taken when a connection takes or frees its buffer) and the mappings stay for the process's life.
// Under AddressSanitizer, plain aligned operator new, so that the fuzzers see overruns. Any
// thread.
class BufferBlocks {
 public:
  static constexpr size_t kBytes = 16 * 1024;
  static void* take();
  static void give(void* p) noexcept;
};

// An allocator that default-initialises (does nothing for char) where std::allocator
// value-initialises (zeroes). A block of BufferBlocks::kBytes comes from BufferBlocks, other blocks
// of a page or more are page-aligned: release_whole_pages can give all of their pages back.
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  using std::allocator<T>::allocator;
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kBufferPageAlign) return std::allocator<T>::allocate(n);
    if (bytes == BufferBlocks::kBytes) return static_cast<T*>(BufferBlocks::take());
    return static_cast<T*>(::operator new(bytes, std::align_val_t(kBufferPageAlign)));
  }
  void deallocate(T* p, size_t n) noexcept {
    const size_t bytes = n * sizeof(T);
    if (bytes < kBufferPageAlign) return std::allocator<T>::deallocate(p, n);
    if (bytes == BufferBlocks::kBytes) return BufferBlocks::give(p);
    ::operator delete(p, std::align_val_t(kBufferPageAlign));
  }
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

// Parser derives from ParserInput<Parser> and has a `void rebase(size_t n)` this class may call.
// Every method: any thread, one call at a time per parser.
template <class Parser>
class ParserInput {
 public:
  // Appends bytes received from the peer.
  void feed(std::string_view bytes) {
    compact();
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  }
  // Zero-copy alternative to feed(): space for up to n bytes, then commit(k) with k <= n to keep
  // the first k of them.
  std::span<char> prepare(size_t n) {
    compact();
    const size_t old = buffer_.size();
    buffer_.resize(old + n);
    pending_ = n;
    return std::span<char>(buffer_.data() + old, n);
  }
  void commit(size_t k) {
    if (k > pending_) k = pending_;
    buffer_.resize(buffer_.size() - pending_ + k);
    pending_ = 0;
  }

  // Bytes buffered and not yet part of a returned request or command.
  size_t buffered() const { return buffer_.size() - start_; }
  // With nothing buffered: gives the buffer's pages back to the kernel, keeping its capacity
  // (an idle connection's, Connection::idle_read_until).
  void release_pages() {
    if (buffered() != 0) return;
    compact();
    release_whole_pages(buffer_.data(), buffer_.capacity());
  }

 protected:
  ReadBuffer buffer_;
  size_t start_ = 0;  // first byte not yet consumed

 private:
  // An emptied buffer larger than this is freed rather than kept for the next request.
  static constexpr size_t kKeepCapacity = 64 * 1024;

  void compact() {
    if (start_ == 0) return;
    if (start_ == buffer_.size() && buffer_.capacity() > kKeepCapacity) {
      // Everything was consumed: give a large buffer (a big body or burst) back.
      ReadBuffer().swap(buffer_);
    } else {
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    }
    static_cast<Parser*>(this)->rebase(start_);
    start_ = 0;
  }

  size_t pending_ = 0;  // bytes reserved by prepare()
};

}  // namespace reactord
