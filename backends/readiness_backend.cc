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

// recvfrom/sendto without glibc's wrappers, which make each call a thread-cancellation point
// (two calls around the system call, ~60 instructions a request): no thread of ours is ever
// cancelled. Returns the result, or -1 with errno set, as the wrappers do.
template <class T>
long syscall_arg(T v) {
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<long>(v);
  } else {
    return static_cast<long>(v);
  }
}
template <class... Args>
ssize_t raw_syscall(long nr, Args... args) {
  return ::syscall(nr, syscall_arg(args)...);
}

// Runs `call` until it succeeds or fails with something other than EINTR/EAGAIN, waiting for
// `interest` on EAGAIN. `call` returns the syscall's result and leaves errno set on -1.
//
// The I/O budget (detail::count_io) yields only where the caller's buffer is not in use: before
// an input call (accept, recv, readv: before the kernel writes the buffer), and after an output
// call that took all `send_size` bytes (send_size 0: an input call). Never between a recv and its
// return, nor after a partial send, whose unsent rest the caller still holds: the echo service
// reads every connection of a shard into one buffer and relies on it.
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

// detail::wake with an OK status, inline: every edge that finds a waiter makes this call.
bool wake_ok(detail::Fiber* f) {
  return f->reactor->wake(f, absl::OkStatus());
}

}  // namespace

ReadinessBackend::ReadinessBackend(const char* what, int wakeup_fd, ShortReads short_reads)
    : loop_thread_(what), wakeup_fd_(wakeup_fd), short_reads_(short_reads) {}

ReadinessBackend::~ReadinessBackend() {
  ::close(wakeup_fd_);
}

ReadinessBackend::FdRecord& ReadinessBackend::record(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) [[unlikely]] {
    grow_records(fd);
  }
  return fds_[static_cast<size_t>(fd)];
}

void ReadinessBackend::grow_records(int fd) {
  fds_.resize(static_cast<size_t>(fd) * 2 + 64);
}

absl::Status ReadinessBackend::wait(int fd, Interest interest, Deadline deadline) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("wait on invalid fd ", fd));
  const bool read = interest == Interest::kRead;
  {
    FdRecord& r = record(fd);
    if (r.unpollable) return absl::OkStatus();
    if (!r.registered) {
      absl::StatusOr<Registration> reg = register_fd(fd);
      if (!reg.ok()) return reg.status();
      if (*reg == Registration::kUnpollable) {
        r.unpollable = true;
        return absl::OkStatus();
      }
      r.registered = true;
      r.drains = short_reads_ == ShortReads::kWaitForEdge && short_read_drains(fd);
    }
    r.drained = false;
    bool& ready = read ? r.ready_read : r.ready_write;
    if (ready) {
      ready = false;
      return absl::OkStatus();
    }
    detail::Fiber*& slot = read ? r.reader : r.writer;
    if (slot != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "fd ", fd, ": another fiber is already waiting to ", read ? "read" : "write"));
    }
    slot = detail::current_fiber();
  }
  // Releasable: the record holds the fiber, nothing points into its stack while it waits.
  absl::Status s = detail::park(deadline, read ? "wait for readable fd" : "wait for writable fd",
                                /*cancellable=*/true, /*releasable=*/true);
  if (!s.ok()) {
    // Woken by a deadline or cancel: stop being the waiter (close() may have cleared it already,
    // and the fd number may even belong to a new file by now). The record may have moved.
    FdRecord& r = record(fd);
    detail::Fiber*& slot = read ? r.reader : r.writer;
    if (slot == detail::current_fiber()) slot = nullptr;
  }
  return s;
}

void ReadinessBackend::deliver_edge(int fd, bool readable, bool writable, bool hangup) {
  FdRecord& r = record(fd);
  if (hangup) r.hangup = true;
  // A waiter that is no longer parked (its deadline or a cancel woke it, and it has not run yet)
  // cannot take the edge: keep it for the next wait.
  if (readable) {
    if (r.reader == nullptr || !wake_ok(std::exchange(r.reader, nullptr))) r.ready_read = true;
  }
  if (writable) {
    if (r.writer == nullptr || !wake_ok(std::exchange(r.writer, nullptr))) {
      r.ready_write = true;
    }
  }
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

void ReadinessBackend::note_short_read(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) return;
  FdRecord& r = fds_[static_cast<size_t>(fd)];
  // After the edge that reported the peer's FIN or an error, a short read may have stopped at
  // that end, which no later edge will report again.
  r.drained = r.registered && r.drains && !r.hangup;
}

bool ReadinessBackend::known_drained(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return false;
  const FdRecord& r = fds_[static_cast<size_t>(fd)];
  if (!r.drained || r.ready_read) return false;
  reads_skipped_.add();
  return true;
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

absl::StatusOr<size_t> ReadinessBackend::recv(int fd, std::span<std::byte> buf, Deadline deadline) {
  loop_thread_.check();
  if (known_drained(fd)) {
    absl::Status s = wait(fd, Interest::kRead, deadline);
    if (!s.ok()) return s;
  }
  auto r = retry_until_ready(*this, fd, Interest::kRead, deadline, "recv", [&] {
    return raw_syscall(SYS_recvfrom, fd, buf.data(), buf.size(), 0, 0, 0);
  });
  if (!r.ok()) return r.status();
  const auto n = static_cast<size_t>(*r);
  if (n > 0 && n < buf.size()) note_short_read(fd);
  return n;
}

absl::StatusOr<size_t> ReadinessBackend::send(int fd, std::span<const std::byte> buf,
                                              Deadline deadline) {
  loop_thread_.check();
  auto r = retry_until_ready(
      *this, fd, Interest::kWrite, deadline, "send",
      [&] { return raw_syscall(SYS_sendto, fd, buf.data(), buf.size(), MSG_NOSIGNAL, 0, 0); },
      buf.size());
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
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
