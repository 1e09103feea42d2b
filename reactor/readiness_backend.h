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
};

}  // namespace reactor
