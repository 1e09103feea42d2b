#include "backends/uring_buffer_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "reactor/error.h"

namespace reactor {
namespace {

constexpr size_t kHugePage = 2 << 20;

// The buffers' mapping. The kernel takes buffers in ring order, so in time every buffer is used
// and each receive writes a page the TLB likely lacks: of 4 MiB in 4 KiB pages, 1,024 of them.
// A mapping of 2 MiB or more is aligned to 2 MiB and asked for transparent huge pages
// (MADV_HUGEPAGE; honoured where THP is "madvise" or "always"), two TLB entries for the ring.
// REACTOR_URING_RING_THP=0 leaves it in small pages, for measurement.
void* map_buffers(size_t bytes) {
  const char* thp = std::getenv("REACTOR_URING_RING_THP");
  if (bytes < kHugePage || (thp != nullptr && *thp == '0')) {
    return ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  const size_t span = bytes + kHugePage;
  void* m = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return m;
  const auto base = reinterpret_cast<uintptr_t>(m);
  const uintptr_t aligned = (base + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > base) ::munmap(m, aligned - base);
  const uintptr_t end = base + span;
  if (end > aligned + bytes)
    ::munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  (void)::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

absl::StatusOr<std::unique_ptr<UringBufferRing>> UringBufferRing::create(io_uring* ring,
                                                                         unsigned count,
                                                                         unsigned size) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return absl::InvalidArgumentError("io_uring buffer_count must be a power of two <= 32768");
  }
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t ring_bytes = (count * sizeof(io_uring_buf) + page - 1) / page * page;
  // A mapping of huge pages (map_buffers) is kept to `count` buffers' worth (4 MiB by default: two
  // huge pages exactly, where one line more per buffer would take a third); with the line of
  // spacing, a few fewer buffers than ring entries fit in it (1,008 of 1,024). A smaller mapping
  // holds all `count`.
  const size_t plain = static_cast<size_t>(count) * size;
  const size_t buffers_bytes =
      plain >= kHugePage ? plain
                         : (static_cast<size_t>(count) * stride_of(size) + page - 1) / page * page;
  const auto in_use =
      static_cast<unsigned>(std::min<size_t>(count, buffers_bytes / stride_of(size)));
  void* ring_mem =
      ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring_mem == MAP_FAILED) return errno_status(errno, "mmap(buffer ring)");
  void* buf_mem = map_buffers(buffers_bytes);
  if (buf_mem == MAP_FAILED) {
    absl::Status s = errno_status(errno, "mmap(buffers)");
    ::munmap(ring_mem, ring_bytes);
    return s;
  }
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(ring_mem);
  reg.ring_entries = count;
  reg.bgid = kGroup;
  const int r = io_uring_register_buf_ring(ring, &reg, 0);
  if (r < 0) {
    ::munmap(buf_mem, buffers_bytes);
    ::munmap(ring_mem, ring_bytes);
    return errno_status(-r, "io_uring_register_buf_ring (Linux 5.19)");
  }
  std::unique_ptr<UringBufferRing> b(
      new UringBufferRing(static_cast<io_uring_buf_ring*>(ring_mem), ring_bytes,
                          static_cast<std::byte*>(buf_mem), buffers_bytes, count, in_use, size));
  io_uring_buf_ring_init(b->ring_);
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < in_use; ++i) {
    io_uring_buf_ring_add(b->ring_, const_cast<std::byte*>(b->buffer(static_cast<uint16_t>(i))),
                          size, static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(b->ring_, static_cast<int>(in_use));
  return b;
}

UringBufferRing::UringBufferRing(io_uring_buf_ring* ring, size_t ring_bytes, std::byte* buffers,
                                 size_t buffers_bytes, unsigned count, unsigned in_use,
                                 unsigned size)
    : ring_(ring),
      ring_bytes_(ring_bytes),
      buffers_(buffers),
      buffers_bytes_(buffers_bytes),
      count_(count),
      in_use_(in_use),
      size_(size) {}

UringBufferRing::~UringBufferRing() {
  ::munmap(buffers_, buffers_bytes_);
  ::munmap(ring_, ring_bytes_);
}

void UringBufferRing::recycle(uint16_t bid) {
  io_uring_buf_ring_add(ring_, const_cast<std::byte*>(buffer(bid)), size_, bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(ring_, 1);
}

}  // namespace reactor
