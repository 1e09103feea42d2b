#include "backends/readiness_backend.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"
#include "reactor/fiber.h"
#include "reactor/reactor.h"

namespace reactor {
namespace {

// recvfrom/sendto as the bare instruction: glibc's wrappers make each call a thread-cancellation
// point (two calls around the system call, ~60 instructions a request), and even its syscall()
// costs a call and ~11 instructions of argument shuffling; no thread of ours is ever cancelled.
// Returns the result, or -errno, as the kernel does.
#if defined(__x86_64__)
long sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}
#else
long sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  const long r = ::syscall(nr, a1, a2, a3, a4, a5, a6);
  return r < 0 ? -errno : r;
}
#endif

long sys_recv(int fd, void* buf, size_t len) {
  return sys6(SYS_recvfrom, fd, reinterpret_cast<long>(buf), static_cast<long>(len), 0, 0, 0);
}
long sys_send(int fd, const void* buf, size_t len) {
  return sys6(SYS_sendto, fd, reinterpret_cast<long>(buf), static_cast<long>(len), MSG_NOSIGNAL, 0,
              0);
}

// Runs `call` until it succeeds or fails with something other than EINTR/EAGAIN, waiting for
// `interest` on EAGAIN. `call` returns the syscall's result and leaves errno set on -1.
//
// The I/O budget (detail::count_io) yields only where the caller's buffer is not in use: before
// an input call (accept, recv, readv: before the kernel writes the buffer), and after an output
// call that took all `send_size` bytes (send_size 0: an input call). Never between a recv and its
// return, nor after a partial send, whose unsent rest the caller still holds: the echo service
// reads every connection of a shard into one buffer and relies on it. recv and send keep the same
// rules in their own loops, on the kernel's -errno results.
template <class Call>
auto retry_until_ready(ReadinessBackend& backend, int fd, Interest interest, Deadline deadline,
                       const char* op, Call call, size_t send_size = 0)
    -> absl::StatusOr<decltype(call())> {
  if (send_size == 0) detail::yield_if_io_budget_spent();
  for (;;) {
    auto r = call();
    if (r >= 0) {
      detail::count_io();
      if (send_size != 0 && static_cast<size_t>(r) == send_size) detail::yield_if_io_budget_spent();
      return r;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) return errno_status(err, op, fd);
    absl::Status s = backend.wait(fd, interest, deadline);
    if (!s.ok()) return s;
  }
}

absl::Status stopped_status(int fd) {
  return absl::OutOfRangeError(absl::StrCat("accept on fd ", fd, ": stopped accepting"));
}

}  // namespace

ReadinessBackend::ReadinessBackend(const char* what, int wakeup_fd, ShortReads short_reads)
    : loop_thread_(what), wakeup_fd_(wakeup_fd), short_reads_(short_reads) {}

ReadinessBackend::~ReadinessBackend() {
  ::close(wakeup_fd_);
}

void ReadinessBackend::grow_records(int fd) {
  fds_.resize(static_cast<size_t>(fd) * 2 + 64);
}

absl::Status ReadinessBackend::wait(int fd, Interest interest, Deadline deadline) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("wait on invalid fd ", fd));
  FdRecord& r = record(fd);
  if (!r.registered) [[unlikely]] {
    if (r.unpollable) return absl::OkStatus();
    absl::StatusOr<Registration> reg = register_fd(fd);
    if (!reg.ok()) return reg.status();
    if (*reg == Registration::kUnpollable) {
      r.unpollable = true;
      return absl::OkStatus();
    }
    r.registered = true;
    r.drains = short_reads_ == ShortReads::kWaitForEdge && short_read_drains(fd);
  }
  return wait_registered(fd, r, interest == Interest::kRead, deadline);
}

inline absl::Status ReadinessBackend::wait_registered(int fd, FdRecord& r, bool read,
                                                      Deadline deadline) {
  r.drained = false;
  bool& ready = read ? r.ready_read : r.ready_write;
  if (ready) {
    ready = false;
    return absl::OkStatus();
  }
  detail::Fiber*& slot = read ? r.reader : r.writer;
  Reactor* const loop = Reactor::current();
  if (slot != nullptr) [[unlikely]] {
    return absl::FailedPreconditionError(
        absl::StrCat("fd ", fd, ": another fiber is already waiting to ", read ? "read" : "write"));
  }
  detail::Fiber* const self = loop->current_fiber();
  slot = self;
  // Releasable: the record holds the fiber, nothing points into its stack while it waits.
  absl::Status s = loop->park(deadline, read ? "wait for readable fd" : "wait for writable fd",
                              /*cancellable=*/true, /*releasable=*/true);
  if (!s.ok()) [[unlikely]] {
    // Woken by a deadline or cancel: stop being the waiter (close() may have cleared it already,
    // and the fd number may even belong to a new file by now). The record may have moved.
    FdRecord& now = record(fd);
    detail::Fiber*& waiting = read ? now.reader : now.writer;
    if (waiting == self) waiting = nullptr;
  }
  return s;
}

absl::Status ReadinessBackend::close(int fd) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("close of invalid fd ", fd));
  if (static_cast<size_t>(fd) < fds_.size()) {
    FdRecord& r = fds_[static_cast<size_t>(fd)];
    if (r.reader != nullptr || r.writer != nullptr) {
      const std::string why = absl::StrCat("fd ", fd, " closed while an operation was pending");
      if (r.reader != nullptr) detail::wake(r.reader, absl::FailedPreconditionError(why));
      if (r.writer != nullptr) detail::wake(r.writer, absl::FailedPreconditionError(why));
    }
    if (r.registered) unregister_fd(fd);
    r = FdRecord{};
  }
  if (::close(fd) != 0 && errno != EINTR) return errno_status(errno, "close", fd);
  return absl::OkStatus();
}

void ReadinessBackend::wakeup() {
  if (wakeup_pending_.exchange(true)) return;
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t w = ::write(wakeup_fd_, &one, sizeof one);
  (void)w;  // EAGAIN means the counter is already non-zero: the loop wakes anyway
}

void ReadinessBackend::drain_wakeup() {
  uint64_t value;
  while (::read(wakeup_fd_, &value, sizeof value) > 0) {
  }
  // Cleared after draining: a wakeup() between the two writes nothing, but the loop is returning
  // from poll anyway and looks at the inbox and the stop flag next.
  wakeup_pending_.store(false);
}

void ReadinessBackend::stop_accepting(int fd) {
  loop_thread_.check();
  if (fd < 0) return;
  FdRecord& r = record(fd);
  r.accept_stopped = true;
  // The fiber waiting to read a listener is its acceptor. One already woken by an edge (and not
  // yet run) sees the flag before its next accept4.
  if (r.reader != nullptr) (void)detail::wake(std::exchange(r.reader, nullptr), stopped_status(fd));
}

absl::StatusOr<int> ReadinessBackend::accept(int fd, sockaddr_storage* peer, Deadline deadline) {
  loop_thread_.check();
  detail::yield_if_io_budget_spent();
  for (;;) {
    // Checked before every try: an edge may have woken this fiber just before stop_accepting().
    if (fd >= 0 && static_cast<size_t>(fd) < fds_.size() &&
        fds_[static_cast<size_t>(fd)].accept_stopped) {
      return stopped_status(fd);
    }
    socklen_t len = sizeof(sockaddr_storage);
    const int conn = ::accept4(fd, reinterpret_cast<sockaddr*>(peer), peer ? &len : nullptr,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) {
      detail::count_io();
      return conn;
    }
    const int err = errno;
    // A connection reset before we took it is the peer's business, not the listener's.
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) return errno_status(err, "accept", fd);
    absl::Status s = wait(fd, Interest::kRead, deadline);
    if (!s.ok()) return s;
  }
}

absl::Status ReadinessBackend::connect(int fd, const sockaddr* addr, socklen_t len,
                                       Deadline deadline) {
  loop_thread_.check();
  if (::connect(fd, addr, len) == 0) return absl::OkStatus();
  int err = errno;
  if (err != EINPROGRESS && err != EINTR && err != EAGAIN) return errno_status(err, "connect", fd);
  for (;;) {
    absl::Status s = wait(fd, Interest::kWrite, deadline);
    if (!s.ok()) return s;
    socklen_t elen = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) {
      return errno_status(errno, "getsockopt(SO_ERROR)", fd);
    }
    if (err == 0) {
      // Writable with no error can still be a spurious wakeup: connected only if it has a peer.
      sockaddr_storage peer;
      socklen_t plen = sizeof peer;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
        return absl::OkStatus();
      }
      if (errno != ENOTCONN) return errno_status(errno, "connect", fd);
      continue;
    }
    if (err != EINPROGRESS && err != EALREADY) return errno_status(err, "connect", fd);
  }
}

bool short_read_drains(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return errno == ENOTSOCK;
  return type == SOCK_STREAM;
}

// The two calls of every request on a readiness backend, each in one frame: the record looked up
// once, the system call inline, errors as the kernel returns them.
absl::StatusOr<size_t> ReadinessBackend::recv(int fd, std::span<std::byte> buf, Deadline deadline) {
  loop_thread_.check();
  detail::yield_if_io_budget_spent();  // before the kernel writes buf
  // The last read was short: the receive queue is empty until the next edge, so wait for it first
  // instead of making a call that must fail with EAGAIN.
  if (FdRecord* r = find(fd); r != nullptr && r->drained && !r->ready_read) {
    reads_skipped_.add();
    absl::Status s = wait_registered(fd, *r, /*read=*/true, deadline);
    if (!s.ok()) return s;
  }
  for (;;) {
    const long n = sys_recv(fd, buf.data(), buf.size());
    if (n >= 0) {
      detail::count_io();
      const auto got = static_cast<size_t>(n);
      if (got > 0 && got < buf.size()) {
        if (FdRecord* r = find(fd)) r->drained = r->drains;
      }
      return got;
    }
    if (n == -EINTR) continue;
    if (n != -EAGAIN) return errno_status(static_cast<int>(-n), "recv", fd);
    absl::Status s = wait(fd, Interest::kRead, deadline);
    if (!s.ok()) return s;
  }
}

// The send of every reply, without a frame of its own: each way out that does more than return
// is a tail call with at most six register arguments.
absl::StatusOr<size_t> ReadinessBackend::send(int fd, std::span<const std::byte> buf,
                                              Deadline deadline) {
  loop_thread_.check();
  const long n = sys_send(fd, buf.data(), buf.size());
  if (n >= 0) [[likely]] {
    const auto sent = static_cast<size_t>(n);
    if (sent == buf.size()) [[likely]] {
      detail::spend_io_budget();  // the caller holds nothing unsent: the budget may yield
    } else {
      detail::count_io();  // a partial send: the caller still holds the rest, no yield
    }
    return sent;
  }
  if (n == -EAGAIN) return send_when_writable(fd, buf, deadline);
  if (n == -EINTR) return send(fd, buf, deadline);
  return send_failed(fd, n);
}

absl::StatusOr<size_t> ReadinessBackend::send_when_writable(int fd, std::span<const std::byte> buf,
                                                            Deadline deadline) {
  absl::Status s = wait(fd, Interest::kWrite, deadline);
  if (!s.ok()) return s;
  return send(fd, buf, deadline);
}

absl::StatusOr<size_t> ReadinessBackend::send_failed(int fd, long n) {
  return errno_status(static_cast<int>(-n), "send", fd);
}

absl::StatusOr<size_t> ReadinessBackend::readv(int fd, std::span<const iovec> iov,
                                               Deadline deadline) {
  loop_thread_.check();
  auto r = retry_until_ready(*this, fd, Interest::kRead, deadline, "readv",
                             [&] { return ::readv(fd, iov.data(), static_cast<int>(iov.size())); });
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
}

absl::StatusOr<size_t> ReadinessBackend::writev(int fd, std::span<const iovec> iov,
                                                Deadline deadline) {
  loop_thread_.check();
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  auto r = retry_until_ready(
      *this, fd, Interest::kWrite, deadline, "writev",
      [&] {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov.data());
        msg.msg_iovlen = iov.size();
        ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
        return n;
      },
      total);
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
}

}  // namespace reactor
