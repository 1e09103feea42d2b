// The part of a readiness backend (epoll, libevent) that does not depend on how readiness is
// learned: try the system call, and on EAGAIN wait for the fd with wait(), then try again.
#pragma once

#include "reactor/backend.h"

namespace reactor {

class ReadinessBackend : public Backend {
 public:
  absl::StatusOr<int> accept(int fd, sockaddr_storage* peer, Deadline deadline) override;
  absl::Status connect(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) override;
  absl::StatusOr<size_t> recv(int fd, std::span<std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> send(int fd, std::span<const std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> readv(int fd, std::span<const iovec> iov, Deadline deadline) override;
  absl::StatusOr<size_t> writev(int fd, std::span<const iovec> iov, Deadline deadline) override;

 protected:
  // A read that returned fewer bytes than asked left a stream's receive queue empty. A backend
  // that sees every later edge for fd (edge-triggered, registered, and the fd one where a short
  // read means empty) remembers it, and the next recv waits for the edge before trying, instead
  // of making a system call that must fail with EAGAIN. wait() forgets it. Loop thread.
  virtual void note_short_read(int /*fd*/) {}
  virtual bool known_drained(int /*fd*/) const { return false; }
};

// Whether a read returning fewer bytes than asked means fd had nothing more to read: stream
// sockets, pipes, eventfds, ttys; not datagram or seqpacket sockets (one message per read).
bool short_read_drains(int fd);

}  // namespace reactor
