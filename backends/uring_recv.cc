// The io_uring backend's lent receives (Options::lent_recv): recv_lent, and recv, readv and
// wait(kRead) on an fd received on that way.
//
// The first recv_lent on an fd creates its Receiver; the first call that finds nothing queued arms
// one multishot RECV (Linux 6.0) selecting buffers from the provided-buffer ring. Each CQE queues
// the buffer it filled on the Receiver and wakes the fiber waiting there, which reads the buffer in
// place; the buffer goes back to the ring at that fiber's next call on the fd. The kernel receives
// whenever data arrives, whether a fiber waits or not, so what a connection has not taken is
// bounded here: at kMaxQueuedChunks the multishot is cancelled (paused), and the next call that
// finds the queue empty arms it again; meanwhile the socket's own buffer fills and TCP's window
// closes, as with recv. A multishot ended for want of buffers (ENOBUFS: the ring is lent out or
// queued on other connections) is followed by one receive into the Receiver's own buffer, then
// armed again, so a connection always makes progress.
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/uring_backend.h"
#include "backends/uring_ops.h"
#include "reactor/error.h"

namespace reactor {
namespace {

using namespace uring_detail;  // NOLINT(build/namespaces): the backend's private tags

// Chunks received and not yet taken at which a receiver's multishot is paused. Eight ring buffers
// (32 KiB by default) per connection; a CQE or two more can arrive before the cancel takes.
constexpr size_t kMaxQueuedChunks = 8;

}  // namespace

void UringBackend::arm_receiver(Receiver* r) {
  use_fixed_file(r->fd);
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, r->fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = UringBufferRing::kGroup;
  mark_fixed(sqe, r->fd);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uintptr_t>(r) | kTagRecv);
  r->armed = true;
  r->cancel_sent = false;
  lent_recv_arms_.add();
}

void UringBackend::recycle_chunk(Receiver* r, uint16_t bid) {
  if (bid == Receiver::kFallback) {
    r->fallback.reset();  // rare: not kept, so a connection that once needed it holds nothing
  } else {
    buffers_->recycle(bid);
  }
}

void UringBackend::handle_recv_cqe(Receiver* r, int32_t res, uint32_t flags) {
  lent_recv_cqes_.add();
  if ((flags & IORING_CQE_F_MORE) == 0) r->armed = false;
  const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
  const uint16_t bid = UringBufferRing::buffer_id(flags);
  if (r->detached) {
    if (has_buffer) recycle_chunk(r, bid);
    destroy_if_done(r);
    return;
  }
  if (res > 0 && has_buffer) {
    r->ready.push_back({bid, 0, static_cast<uint32_t>(res)});
    if (r->queued() >= kMaxQueuedChunks && r->armed && !r->cancel_sent) {
      lent_recv_pauses_.add();
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(r) | kTagRecv, 0);
      io_uring_sqe_set_data64(sqe, kIgnoreData);
      r->cancel_sent = true;
    }
  } else {
    if (has_buffer) recycle_chunk(r, bid);  // not expected with res <= 0
    if (res == 0) {
      r->eof = true;
    } else if (res == -ENOBUFS) {
      r->nobufs = true;
      provided_buffer_enobufs_.add();
    } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN && res < 0) {
      r->error = -res;  // ends the multishot; the next call reports it after the queued chunks
    }
    // ECANCELED (a pause), EINTR, EAGAIN, or a final CQE with data: armed again on demand.
  }
  if (r->waiter != nullptr) (void)detail::wake(r->waiter);
}

bool UringBackend::destroy_if_done(Receiver* r) {
  if (!r->detached || r->armed || r->busy || r->waiter != nullptr) return false;
  destroy_receiver(r);
  return true;
}

UringBackend::Receiver* UringBackend::next_chunk(int fd, Deadline deadline, absl::Status* status,
                                                 bool* eof) {
  for (;;) {
    Receiver* r = receiver_of(fd);
    if (r == nullptr) {
      *status = absl::FailedPreconditionError(closed_message("recv", fd));
      return nullptr;
    }
    if (r->has_chunk()) return r;
    r->ready.clear();
    r->head = 0;
    if (r->error != 0) {
      *status = errno_status(std::exchange(r->error, 0), "recv", fd);
      return nullptr;
    }
    if (r->eof) {
      *eof = true;
      return nullptr;
    }
    if (r->waiter != nullptr || r->busy) {
      *status = absl::FailedPreconditionError(
          absl::StrCat("recv on fd ", fd, ": another fiber is receiving on it"));
      return nullptr;
    }
    if (r->nobufs && !r->armed) {
      // The ring ran dry: one receive into a buffer of the receiver's own, then the multishot
      // again.
      r->nobufs = false;
      lent_recv_fallbacks_.add();
      const size_t len = buffers_->buffer_size();
      auto buf = std::make_unique_for_overwrite<std::byte[]>(len);
      r->busy = true;
      absl::StatusOr<int32_t> n = recv_own_buffer(fd, buf.get(), len, deadline);
      r->busy = false;
      if (r->detached) {
        // close() came while the receive was in flight (n says so); the receiver waited for it.
        destroy_if_done(r);
        *status = n.ok() ? absl::FailedPreconditionError(closed_message("recv", fd)) : n.status();
        return nullptr;
      }
      if (!n.ok() && status_errno(n.status()) == EINTR) continue;
      if (!n.ok()) {
        *status = n.status();
        return nullptr;
      }
      if (*n == 0) {
        r->eof = true;
        continue;
      }
      r->fallback = std::move(buf);
      r->ready.push_back({Receiver::kFallback, 0, static_cast<uint32_t>(*n)});
      return r;
    }
    if (!r->armed) arm_receiver(r);
    const absl::Status s = park_on(r, deadline, "recv");
    if (r->detached) {  // close() came while it waited: the receiver waited for this fiber
      destroy_if_done(r);
      *status = absl::FailedPreconditionError(closed_message("recv", fd));
      return nullptr;
    }
    // A deadline or cancel wins over data that came meanwhile: it stays queued for the next call.
    if (!s.ok()) {
      *status = s;
      return nullptr;
    }
  }
}

const std::byte* UringBackend::chunk_data(const Receiver* r, uint16_t bid) const {
  return bid == Receiver::kFallback ? r->fallback.get() : buffers_->buffer(bid);
}

void UringBackend::give_back_lent(Receiver* r) {
  if (r->lent < 0) return;
  recycle_chunk(r, static_cast<uint16_t>(r->lent));
  r->lent = -1;
}

absl::StatusOr<std::span<const std::byte>> UringBackend::recv_lent(int fd, Deadline deadline) {
  loop_thread_.check();
  if (!lend_) return Backend::recv_lent(fd, deadline);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("recv on invalid fd ", fd));
  if (Receiver* r = receiver_of(fd)) give_back_lent(r);
  // The caller holds nothing of ours now: the place to yield if it used up its I/O budget (a peer
  // that always has data queued cannot hold the loop).
  detail::yield_if_io_budget_spent();
  FdState& st = fd_state(fd);
  if (st.receiver == nullptr) {
    auto* r = new Receiver;
    r->fd = fd;
    r->next = receivers_;
    if (receivers_ != nullptr) receivers_->prev = r;
    receivers_ = r;
    st.receiver = r;
  }
  absl::Status status;
  bool eof = false;
  const bool was_queued = st.receiver->has_chunk();
  Receiver* r = next_chunk(fd, deadline, &status, &eof);
  if (r == nullptr) {
    if (eof) return std::span<const std::byte>();
    return status;
  }
  if (was_queued) detail::count_io();  // returned without suspending
  const Receiver::Chunk c = r->ready[r->head++];
  r->lent = c.bid;
  return std::span<const std::byte>(chunk_data(r, c.bid) + c.begin, c.end - c.begin);
}

void UringBackend::release_lent(int fd) {
  loop_thread_.check();
  if (Receiver* r = receiver_of(fd)) give_back_lent(r);
}

absl::StatusOr<size_t> UringBackend::recv_copy(int fd, std::span<const iovec> iov,
                                               Deadline deadline) {
  Receiver* r = receiver_of(fd);
  give_back_lent(r);
  size_t room = 0;
  for (const iovec& v : iov) room += v.iov_len;
  if (room == 0) return size_t{0};
  absl::Status status;
  bool eof = false;
  r = next_chunk(fd, deadline, &status, &eof);
  if (r == nullptr) {
    if (eof) return size_t{0};
    return status;
  }
  size_t total = 0;
  for (const iovec& v : iov) {
    size_t off = 0;
    while (off < v.iov_len && r->has_chunk()) {
      Receiver::Chunk& c = r->ready[r->head];
      const size_t n = std::min<size_t>(v.iov_len - off, c.end - c.begin);
      std::memcpy(static_cast<std::byte*>(v.iov_base) + off, chunk_data(r, c.bid) + c.begin, n);
      c.begin += static_cast<uint32_t>(n);
      off += n;
      total += n;
      if (c.begin == c.end) {
        recycle_chunk(r, c.bid);
        ++r->head;
      }
    }
  }
  return total;
}

absl::Status UringBackend::wait_receiver(int fd, Deadline deadline) {
  Receiver* r = receiver_of(fd);
  // Readable: a chunk, the end of the stream or an error is there for the next call. With the
  // ring dry, the next receive goes into the receiver's own buffer: report readable (a wait may
  // return spuriously) and let it wait.
  if (r->has_chunk() || r->eof || r->error != 0 || (r->nobufs && !r->armed)) {
    return absl::OkStatus();
  }
  if (r->waiter != nullptr || r->busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("wait on fd ", fd, ": another fiber is receiving on it"));
  }
  if (!r->armed) arm_receiver(r);
  const absl::Status s = park_on(r, deadline, "wait for readable fd");
  if (r->detached) {
    destroy_if_done(r);
    return absl::FailedPreconditionError(closed_message("wait for readable fd", fd));
  }
  return s;
}

absl::Status UringBackend::park_on(Receiver* r, Deadline deadline, const char* what) {
  // The waiter is the receiver's own field, not a node on the fiber's stack: the kernel and the
  // backend hold nothing of the fiber's while it waits, so its stack may be released
  // (Reactor::allow_stack_release). The receiver stays alive until the fiber is back.
  r->waiter = detail::current_fiber();
  const absl::Status s = detail::park(deadline, what, /*cancellable=*/true, /*releasable=*/true);
  r->waiter = nullptr;
  return s;
}

bool UringBackend::detach_receiver(Receiver* r) {
  r->detached = true;
  // The waiter (if it has not woken for its deadline already) reports the close; either way it
  // finds the receiver detached when it runs, and destroys it if nothing else is pending.
  if (r->waiter != nullptr) (void)detail::wake(r->waiter);
  give_back_lent(r);
  for (size_t i = r->head; i < r->ready.size(); ++i) recycle_chunk(r, r->ready[i].bid);
  r->ready.clear();
  r->head = 0;
  const bool armed = r->armed;
  destroy_if_done(r);
  return armed;
}

void UringBackend::destroy_receiver(Receiver* r) {
  (r->prev ? r->prev->next : receivers_) = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
  delete r;
}

}  // namespace reactor
