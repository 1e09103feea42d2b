#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "reactor/error.h"

namespace reactord {

Notifier::Notifier() {
  if (const char* path = std::getenv("NOTIFY_SOCKET"); path != nullptr && path[0] != '\0') {
    socket_path_ = path;
  }
  if (const char* max = std::getenv("FDSTORE");
      max == nullptr || !absl::SimpleAtoi(max, &fd_store_max_)) {
    fd_store_max_ = 0;
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  uint64_t us = 0;
  int64_t for_pid = 0;
  const bool ours = pid == nullptr || (absl::SimpleAtoi(pid, &for_pid) && for_pid == getpid());
  if (usec != nullptr && ours && absl::SimpleAtoi(usec, &us) && us > 0) {
    watchdog_ = std::chrono::microseconds(us);
  }
}

absl::Status Notifier::notify(std::string_view state, const std::vector<int>& fds) const {
  if (socket_path_.empty() || detached_.load()) return absl::OkStatus();
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
  iovec iov{const_cast<char*>(state.data()), state.size()};
  msghdr msg{};
  msg.msg_name = &addr;
  msg.msg_namelen = len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const ssize_t sent = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  const int err = errno;
  ::close(fd);
  if (sent < 0) return reactor::errno_status(err, "sendmsg(NOTIFY_SOCKET)");
  return absl::OkStatus();
}

uint64_t monotonic_usec() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace reactord
