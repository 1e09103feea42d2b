// The io_uring backend's output side: send and writev, the send_first attempt, and the per-socket
// outgoing queues of async_send (sends that do not wait for their completion). See uring_ops.h
// for SendQueue and uring_backend.h for the options.
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/uring_backend.h"
#include "backends/uring_ops.h"
#include "reactor/error.h"

namespace reactor {

using namespace uring_detail;  // NOLINT(build/namespaces): the backend's private tags

namespace {

// A queue keeps at most this much buffer capacity while free, so one large burst does not pin
// memory for the life of the loop.
constexpr size_t kKeptCapacity = 64 * 1024;

size_t iov_total(std::span<const iovec> iov) {
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

}  // namespace

bool UringBackend::output_in_flight(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return false;
  const FdState& st = fds_[static_cast<size_t>(fd)];
  if (st.sendq != nullptr && st.sendq->queued() > 0) return true;
  for (const Op* op = st.ops; op != nullptr; op = op->next) {
    if (op->output) return true;
  }
  return false;
}

ssize_t UringBackend::try_send_now(int fd, msghdr* msg, size_t total) {
  const bool wanted =
      options_.send_first && (!options_.async_send || total >= options_.send_first_min);
  if (!wanted || output_in_flight(fd)) {
    errno = EAGAIN;
    return -1;
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) {
    direct_sends_.add();
    detail::spend_io_budget();
  }
  return n;
}

bool UringBackend::is_socket(int fd) {
  FdState& st = fd_state(fd);
  if (st.socket == 0) {
    struct stat sb {};
    st.socket = (::fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode)) ? 1 : -1;
  }
  return st.socket > 0;
}

absl::StatusOr<size_t> UringBackend::send(int fd, std::span<const std::byte> buf,
                                          Deadline deadline) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("send on invalid fd ", fd));
  fd_state(fd).socket = 1;  // send(2) works on sockets only
  const iovec iov{const_cast<std::byte*>(buf.data()), buf.size()};
  return send_socket(fd, std::span(&iov, 1), deadline, "send");
}

absl::StatusOr<size_t> UringBackend::writev(int fd, std::span<const iovec> iov, Deadline deadline) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("writev on invalid fd ", fd));
  if (!is_socket(fd)) return vectored(fd, iov, deadline, /*output=*/true, /*socket=*/false);
  return send_socket(fd, iov, deadline, "writev");
}

absl::StatusOr<size_t> UringBackend::send_socket(int fd, std::span<const iovec> iov,
                                                 Deadline deadline, const char* what) {
  const size_t total = iov_total(iov);
  if (SendQueue* q = fd_state(fd).sendq; q != nullptr && q->error != 0) {
    return errno_status(std::exchange(q->error, 0), what, fd);
  }
  if (total > 0) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    const ssize_t n = try_send_now(fd, &msg, total);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_status(errno, what, fd);
    if (options_.async_send) return queue_send(fd, iov, total, deadline, what);
  }
  // A zero-length send goes through the ring as before: it reports the socket's error, if any.
  return vectored(fd, iov, deadline, /*output=*/true, /*socket=*/true);
}

absl::StatusOr<size_t> UringBackend::send_lent(int fd, std::span<const std::byte> buf,
                                               Deadline deadline) {
  loop_thread_.check();
  Receiver* const r = options_.async_send ? receiver_of(fd) : nullptr;
  // Only the ring's buffers (not a fallback receive's own) and only with nothing queued before
  // them; a send large enough for send_first goes directly, which copies nothing either.
  if (r == nullptr || r->lent < 0 || r->lent == Receiver::kFallback || buf.empty() ||
      (options_.send_first && buf.size() >= options_.send_first_min)) {
    return send(fd, buf, deadline);
  }
  const std::byte* const base = buffers_->buffer(static_cast<uint16_t>(r->lent));
  if (buf.data() < base || buf.data() + buf.size() > base + buffers_->buffer_size()) {
    return send(fd, buf, deadline);
  }
  SendQueue* q = send_queue(fd);
  if (q->error != 0) return errno_status(std::exchange(q->error, 0), "send", fd);
  if (q->queued() > 0) return send(fd, buf, deadline);
  // The buffer is the queue's now: the receiver's next call does not give it back.
  q->lent_bid = std::exchange(r->lent, -1);
  q->lent_data = buf.data();
  q->lent_len = buf.size();
  q->deadline = deadline;
  if (!q->in_flight && !q->dirty) {
    q->dirty = true;
    dirty_sends_.push_back(q);
  }
  queued_sends_.add();
  lent_sends_.add();
  detail::spend_io_budget();
  return buf.size();
}

// ---- async_send ----

UringBackend::SendQueue* UringBackend::send_queue(int fd) {
  FdState& st = fd_state(fd);
  if (st.sendq != nullptr) return st.sendq;
  SendQueue* q = free_send_queues_;
  if (q != nullptr) {
    free_send_queues_ = q->next_free;
  } else {
    send_queues_.push_back(std::make_unique<SendQueue>());
    q = send_queues_.back().get();
  }
  q->fd = fd;
  q->next_free = nullptr;
  st.sendq = q;
  return q;
}

void UringBackend::release_send_queue(SendQueue* q) {
  if (q->lent_bid >= 0) buffers_->recycle(static_cast<uint16_t>(q->lent_bid));
  q->lent_bid = -1;
  q->lent_in_flight = false;
  q->lent_data = nullptr;
  q->lent_len = 0;
  q->inflight.clear();
  q->pending.clear();
  if (q->inflight.capacity() > kKeptCapacity) std::vector<std::byte>().swap(q->inflight);
  if (q->pending.capacity() > kKeptCapacity) std::vector<std::byte>().swap(q->pending);
  q->fd = -1;
  q->in_flight = q->detached = false;
  q->error = 0;
  q->deadline = Deadline{};
  q->waiters.clear();
  // A queue still on dirty_sends_ is skipped there (fd -1) and may be reused meanwhile: it is
  // then flushed once more, harmlessly.
  q->next_free = free_send_queues_;
  free_send_queues_ = q;
}

absl::Status UringBackend::wait_send_queue(SendQueue* q, Deadline deadline, const char* what) {
  SendWaiter w;
  w.fiber = detail::current_fiber();
  w.linked = true;
  q->waiters.push_back(&w);
  const absl::Status s = detail::park(deadline, what);
  if (w.linked) std::erase(q->waiters, &w);
  return s;
}

void UringBackend::wake_send_waiters(SendQueue* q, const absl::Status& status) {
  std::vector<SendWaiter*> waiters;
  waiters.swap(q->waiters);
  for (SendWaiter* w : waiters) {
    w->linked = false;
    (void)detail::wake(w->fiber, status);
  }
}

absl::StatusOr<size_t> UringBackend::queue_send(int fd, std::span<const iovec> iov, size_t total,
                                                Deadline deadline, const char* what) {
  SendQueue* q = send_queue(fd);
  while (q->queued() >= options_.send_queue_bytes) {
    send_queue_waits_.add();
    absl::Status s = wait_send_queue(q, deadline, what);
    if (!s.ok()) return s;  // after close() the queue is no longer ours: leave it
    if (q->error != 0) return errno_status(std::exchange(q->error, 0), what, fd);
  }
  size_t n = std::min(total, options_.send_queue_bytes - q->queued());
  const size_t accepted = n;
  for (const iovec& v : iov) {
    const size_t take = std::min(n, v.iov_len);
    const auto* p = static_cast<const std::byte*>(v.iov_base);
    q->pending.insert(q->pending.end(), p, p + take);
    n -= take;
    if (n == 0) break;
  }
  q->deadline = deadline;
  if (!q->in_flight && !q->dirty) {
    q->dirty = true;
    dirty_sends_.push_back(q);
  }
  queued_sends_.add();
  detail::spend_io_budget();
  return accepted;
}

void UringBackend::submit_send(SendQueue* q) {
  const void* data;
  size_t len;
  if (q->lent_bid >= 0) {  // the lent bytes go first: they were queued before `pending`
    q->lent_in_flight = true;
    data = q->lent_data;
    len = q->lent_len;
  } else {
    q->inflight.swap(q->pending);
    q->pending.clear();
    data = q->inflight.data();
    len = q->inflight.size();
  }
  use_fixed_file(q->fd);
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_send(sqe, q->fd, data, len, MSG_NOSIGNAL);
  mark_fixed(sqe, q->fd);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uintptr_t>(q) | kTagSend);
  q->in_flight = true;
  send_sqes_.add();
}

void UringBackend::flush_sends() {
  // submit_send may submit early (a full SQ), which reaps nothing: the list stays stable.
  for (SendQueue* q : dirty_sends_) {
    q->dirty = false;
    if (q->fd >= 0 && !q->detached && !q->in_flight && q->has_unsent()) submit_send(q);
  }
  dirty_sends_.clear();
}

void UringBackend::handle_send_cqe(SendQueue* q, int32_t res) {
  q->in_flight = false;
  if (q->detached) {
    release_send_queue(q);  // the fd is closed: close() reported what was not sent
    return;
  }
  if (res == -EINTR || res == -EAGAIN) res = 0;  // try the same bytes again
  if (q->lent_in_flight) {
    q->lent_in_flight = false;
    if (res >= 0 && static_cast<size_t>(res) < q->lent_len) {
      q->lent_data += res;  // a short send: the rest goes first in the next SEND
      q->lent_len -= static_cast<size_t>(res);
    } else {
      buffers_->recycle(static_cast<uint16_t>(q->lent_bid));
      q->lent_bid = -1;
      q->lent_data = nullptr;
      q->lent_len = 0;
    }
    if (res < 0) {
      q->error = -res;
      q->pending.clear();
    }
  } else if (res < 0) {
    // The socket is broken: what is queued can never be sent. The next call on the fd says why.
    q->error = -res;
    q->inflight.clear();
    q->pending.clear();
  } else if (static_cast<size_t>(res) < q->inflight.size()) {
    // A short send: the rest goes first in the next SEND.
    q->pending.insert(q->pending.begin(), q->inflight.begin() + res, q->inflight.end());
    q->inflight.clear();
  } else {
    q->inflight.clear();
  }
  if (q->error == 0 && q->has_unsent()) submit_send(q);  // with the next enter; one in flight
  wake_send_waiters(q, absl::OkStatus());
}

absl::Status UringBackend::flush(int fd, Deadline deadline) {
  loop_thread_.check();
  if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return absl::OkStatus();
  SendQueue* q = fds_[static_cast<size_t>(fd)].sendq;
  if (q == nullptr) return absl::OkStatus();
  while (q->queued() > 0 && q->error == 0) {
    if (detail::current_fiber() == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("flush on fd ", fd, " outside a fiber: ", q->queued(), " bytes queued"));
    }
    absl::Status s = wait_send_queue(q, std::min(deadline, q->deadline), "flush");
    if (!s.ok()) return s;
  }
  if (q->error != 0) return errno_status(std::exchange(q->error, 0), "send", fd);
  return absl::OkStatus();
}

absl::Status UringBackend::detach_send_queue(int fd, bool* in_flight) {
  SendQueue* q = fd_state(fd).sendq;
  if (q == nullptr) return absl::OkStatus();
  // The writer is done (nobody waits to queue more): let its bytes go first, as a close(2) of a
  // socket lets the kernel's send buffer drain. A fiber still waiting to queue makes this an
  // abort: it wakes with FailedPrecondition below.
  const bool drain =
      q->queued() > 0 && q->error == 0 && q->waiters.empty() && detail::current_fiber();
  if (drain) {
    while (q->queued() > 0 && q->error == 0) {
      if (!wait_send_queue(q, q->deadline, "close (sending queued bytes)").ok()) break;
    }
  }
  absl::Status result = absl::OkStatus();
  if (q->error != 0) {
    result = errno_status(q->error, "send", fd);
  } else if (drain && q->queued() > 0) {
    // The send's deadline passed or the fiber was cancelled. (A close while another fiber still
    // sends is an abort, like close(2) of a socket another thread writes to: no error.)
    result = absl::DataLossError(absl::StrCat("close of fd ", fd, ": ", q->queued(),
                                              " queued bytes unsent; the socket's buffer got what "
                                              "it could take"));
  }
  wake_send_waiters(q, absl::FailedPreconditionError(closed_message("send", fd)));
  fd_state(fd).sendq = nullptr;
  // What is queued but not yet submitted goes in one last SEND, issued before the close's cancel:
  // whatever fits the socket's buffer still reaches the peer.
  if (!q->in_flight && q->has_unsent() && q->error == 0) submit_send(q);
  if (q->in_flight) {
    q->detached = true;
    *in_flight = true;
    if (!has_cancel_fd_) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(q) | kTagSend, 0);
      io_uring_sqe_set_data64(sqe, kIgnoreData);
    }
  } else {
    release_send_queue(q);
  }
  return result;
}

}  // namespace reactor
