#include "backends/uring_buffer_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "reactor/error.h"

namespace reactor {

absl::StatusOr<std::unique_ptr<UringBufferRing>> UringBufferRing::create(io_uring* ring,
                                                                         unsigned count,
                                                                         unsigned size) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return absl::InvalidArgumentError("io_uring buffer_count must be a power of two <= 32768");
  }
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t ring_bytes = (count * sizeof(io_uring_buf) + page - 1) / page * page;
  const size_t buffers_bytes = static_cast<size_t>(count) * size;
  void* ring_mem =
      ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring_mem == MAP_FAILED) return errno_status(errno, "mmap(buffer ring)");
  void* buf_mem =
      ::mmap(nullptr, buffers_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
                          static_cast<std::byte*>(buf_mem), buffers_bytes, count, size));
  io_uring_buf_ring_init(b->ring_);
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(b->ring_, b->buffers_ + static_cast<size_t>(i) * size, size,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(b->ring_, static_cast<int>(count));
  return b;
}

UringBufferRing::UringBufferRing(io_uring_buf_ring* ring, size_t ring_bytes, std::byte* buffers,
                                 size_t buffers_bytes, unsigned count, unsigned size)
    : ring_(ring),
      ring_bytes_(ring_bytes),
      buffers_(buffers),
      buffers_bytes_(buffers_bytes),
      count_(count),
      size_(size) {}

UringBufferRing::~UringBufferRing() {
  ::munmap(buffers_, buffers_bytes_);
  ::munmap(ring_, ring_bytes_);
}

void UringBufferRing::recycle(uint16_t bid) {
  io_uring_buf_ring_add(ring_, buffers_ + static_cast<size_t>(bid) * size_, size_, bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(ring_, 1);
}

}  // namespace reactor
