#include "backends/readiness_backend.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "reactor/error.h"
#include "reactor/fiber.h"

namespace reactor {
namespace {

// Runs `call` until it succeeds or fails with something other than EINTR/EAGAIN, waiting for
// `interest` on EAGAIN. `call` returns the syscall's result and leaves errno set on -1.
template <class Call>
auto retry_until_ready(ReadinessBackend& backend, int fd, Interest interest, Deadline deadline,
                       const char* op, Call call) -> absl::StatusOr<decltype(call())> {
  for (;;) {
    auto r = call();
    if (r >= 0) {
      detail::spend_io_budget();
      return r;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) return errno_status(err, op, fd);
    absl::Status s = backend.wait(fd, interest, deadline);
    if (!s.ok()) return s;
  }
}

}  // namespace

absl::StatusOr<int> ReadinessBackend::accept(int fd, sockaddr_storage* peer, Deadline deadline) {
  for (;;) {
    absl::StatusOr<int> r = retry_until_ready(*this, fd, Interest::kRead, deadline, "accept", [&] {
      socklen_t len = sizeof(sockaddr_storage);
      return ::accept4(fd, reinterpret_cast<sockaddr*>(peer), peer ? &len : nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    });
    // A connection reset before we took it is the peer's business, not the listener's.
    if (!r.ok() && status_errno(r.status()) == ECONNABORTED) continue;
    return r;
  }
}

absl::Status ReadinessBackend::connect(int fd, const sockaddr* addr, socklen_t len,
                                       Deadline deadline) {
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
  if (known_drained(fd)) {
    absl::Status s = wait(fd, Interest::kRead, deadline);
    if (!s.ok()) return s;
  }
  auto r = retry_until_ready(*this, fd, Interest::kRead, deadline, "recv",
                             [&] { return ::recv(fd, buf.data(), buf.size(), 0); });
  if (!r.ok()) return r.status();
  const auto n = static_cast<size_t>(*r);
  if (n > 0 && n < buf.size()) note_short_read(fd);
  return n;
}

absl::StatusOr<size_t> ReadinessBackend::send(int fd, std::span<const std::byte> buf,
                                              Deadline deadline) {
  auto r = retry_until_ready(*this, fd, Interest::kWrite, deadline, "send",
                             [&] { return ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL); });
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
}

absl::StatusOr<size_t> ReadinessBackend::readv(int fd, std::span<const iovec> iov,
                                               Deadline deadline) {
  auto r = retry_until_ready(*this, fd, Interest::kRead, deadline, "readv",
                             [&] { return ::readv(fd, iov.data(), static_cast<int>(iov.size())); });
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
}

absl::StatusOr<size_t> ReadinessBackend::writev(int fd, std::span<const iovec> iov,
                                                Deadline deadline) {
  auto r = retry_until_ready(*this, fd, Interest::kWrite, deadline, "writev", [&] {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
    return n;
  });
  if (!r.ok()) return r.status();
  return static_cast<size_t>(*r);
}

}  // namespace reactor
