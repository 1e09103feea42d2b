// The input side the HTTP and RESP parsers share.
//
// ReadBuffer: the parsers' byte buffer, a vector whose resize() leaves new bytes uninitialised.
// prepare() grows it by a whole read chunk before every read and commit() shrinks it back to what
// arrived; a zero-filling resize (std::string's) would clear that chunk on every read, which cost
// more than parsing and answering the request (docs/benchmarks.md, "Comparisons").
//
// ParserInput<Parser>: bytes arrive through feed() or prepare()/commit() and the parser consumes
// them from the front (start_). Before bytes are added the consumed prefix is dropped, and the
// parser's rebase(n) shifts its own offsets into the buffer down by the n bytes dropped. Bytes a
// backend lends (Backend::recv_lent) can instead be parsed where they lie (parse_in_place):
// while nothing else is buffered the parser reads the lent bytes themselves, and settle() copies
// only what no request consumed — a partial request's tail — into the buffer before they go back.
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
    settle();
    compact();
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  }
  // Bytes that stay valid until settle(): parsed where they lie if nothing is buffered (the
  // requests parsed from them point into them), else appended as feed() does. The caller calls
  // settle() before the bytes go away. Returns whether they are parsed in place.
  bool parse_in_place(std::string_view bytes) {
    if (buffered() != 0 || bytes.empty()) {
      feed(bytes);
      return false;
    }
    settle();
    compact();  // drops the consumed prefix (rebases the parser's offsets to 0)
    lent_ = bytes.data();
    lent_size_ = bytes.size();
    return true;
  }
  // Ends parsing in place: the bytes no request consumed move into the parser's own buffer, at
  // offset 0 (the parser's offsets rebased by what was consumed). Requests parsed from the lent
  // bytes are invalid from here. Nothing to do when the parser reads its own buffer.
  void settle() {
    if (lent_ == nullptr) return;
    const char* lent = lent_;
    const size_t size = lent_size_;
    lent_ = nullptr;
    lent_size_ = 0;
    buffer_.assign(lent + start_, lent + size);
    static_cast<Parser*>(this)->rebase(start_);
    start_ = 0;
  }
  // Zero-copy alternative to feed(): space for up to n bytes, then commit(k) with k <= n to keep
  // the first k of them.
  std::span<char> prepare(size_t n) {
    settle();
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

  // Bytes buffered (or lent and parsed in place) and not yet part of a returned request or
  // command.
  size_t buffered() const { return size() - start_; }
  // With nothing buffered: gives the buffer's pages back to the kernel, keeping its capacity
  // (an idle connection's, Connection::idle_read_until).
  void release_pages() {
    if (buffered() != 0) return;
    settle();
    compact();
    release_whole_pages(buffer_.data(), buffer_.capacity());
  }

 protected:
  // The bytes the parser reads: the lent ones while parsing in place, else the buffer's. Offsets
  // (start_ and the parser's own) index into them.
  const char* data() const { return lent_ != nullptr ? lent_ : buffer_.data(); }
  size_t size() const { return lent_ != nullptr ? lent_size_ : buffer_.size(); }

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

  size_t pending_ = 0;          // bytes reserved by prepare()
  const char* lent_ = nullptr;  // parse_in_place's bytes, until settle()
  size_t lent_size_ = 0;
};

}  // namespace reactord
