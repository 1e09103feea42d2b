// The io_uring backend's provided-buffer ring: `count` buffers of `size` bytes registered as one
// buffer group, from which the kernel picks a buffer for a receive submitted with
// IOSQE_BUFFER_SELECT. The CQE names the buffer (IORING_CQE_F_BUFFER); the backend copies out of
// it and hands it back with recycle() at once (provided_buffers), or lends it to the caller until
// its next call on the fd (recv_lent, uring_recv.cc). liburing 2.3 has no io_uring_setup_buf_ring,
// so the ring is mapped page-aligned here and registered by hand (io_uring_register_buf_ring, Linux
// 5.19). docs/backends.md says why the backend leaves it off by default.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace reactor {

class UringBufferRing {
 public:
  static constexpr uint16_t kGroup = 0;  // the buffer group receives select (sqe->buf_group)

  // Maps the ring and the buffers and registers them with `ring`. `count` must be a power of two
  // up to 32768. Loop thread.
  static absl::StatusOr<std::unique_ptr<UringBufferRing>> create(io_uring* ring, unsigned count,
                                                                 unsigned size);
  // Unmaps; the ring it was registered with must be gone (io_uring_queue_exit unregisters it).
  // Loop thread.
  ~UringBufferRing();
  UringBufferRing(const UringBufferRing&) = delete;
  UringBufferRing& operator=(const UringBufferRing&) = delete;

  // Bytes per buffer. Any thread.
  unsigned buffer_size() const { return size_; }
  // Buffers in the ring (its entries may be a few more: see create()).
  unsigned buffer_count() const { return in_use_; }
  // The buffer a CQE with IORING_CQE_F_BUFFER in `cqe_flags` filled. Loop thread.
  static uint16_t buffer_id(uint32_t cqe_flags) {
    return static_cast<uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
  }
  const std::byte* buffer(uint16_t bid) const {
    return buffers_ + static_cast<size_t>(bid) * stride_of(size_);
  }
  // Buffers lie a cache line more than their size apart. The kernel writes each receive at the
  // start of a buffer, and buffer starts a page-multiple apart all fall into the same few cache
  // sets (a 4 KiB stride uses 1/64 of a 1 MiB 8-way L2's sets): with 1,024 buffers taken in ring
  // order, nearly every receive missed the cache (the kernel's copy into the ring took three times
  // the profile share of a copy into a connection's own buffer, docs/backends.md). Shifted by a
  // line each, consecutive buffers' starts cycle through the sets.
  static size_t stride_of(unsigned size) { return static_cast<size_t>(size) + 64; }
  // Hands buffer `bid` back to the kernel. Loop thread.
  void recycle(uint16_t bid);

 private:
  UringBufferRing(io_uring_buf_ring* ring, size_t ring_bytes, std::byte* buffers,
                  size_t buffers_bytes, unsigned count, unsigned in_use, unsigned size);

  io_uring_buf_ring* ring_;
  size_t ring_bytes_;
  std::byte* buffers_;
  size_t buffers_bytes_;
  unsigned count_;   // ring entries (a power of two)
  unsigned in_use_;  // buffers registered in it
  unsigned size_;
};

}  // namespace reactor
