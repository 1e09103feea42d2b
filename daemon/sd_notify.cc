#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "reactor/error.h"

namespace reactord {

Notifier Notifier::from_environment() {
  Notifier n;
  if (const char* path = std::getenv("NOTIFY_SOCKET"); path != nullptr && path[0] != '\0') {
    n.socket_path_ = path;
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  uint64_t us = 0;
  int64_t for_pid = 0;
  const bool ours = pid == nullptr || (absl::SimpleAtoi(pid, &for_pid) && for_pid == getpid());
  if (usec != nullptr && ours && absl::SimpleAtoi(usec, &us) && us > 0) {
    n.watchdog_ = std::chrono::microseconds(us);
  }
  return n;
}

absl::Status Notifier::notify(std::string_view state) const {
  if (socket_path_.empty()) return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError("NOTIFY_SOCKET path is too long");
  }
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  if (addr.sun_path[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract namespace
  } else {
    len += 1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return reactor::errno_status(errno, "socket(NOTIFY_SOCKET)");
  const ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                reinterpret_cast<sockaddr*>(&addr), len);
  const int err = errno;
  ::close(fd);
  if (sent < 0) return reactor::errno_status(err, "sendto(NOTIFY_SOCKET)");
  return absl::OkStatus();
}

uint64_t monotonic_usec() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace reactord
