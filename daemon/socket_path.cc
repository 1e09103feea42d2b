#include "daemon/socket_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"
#include "reactor/net.h"

namespace reactord {

absl::Status clear_stale_unix_socket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return reactor::errno_status(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  absl::StatusOr<reactor::SocketAddress> addr = reactor::SocketAddress::unix_path(path);
  if (!addr.ok()) return addr.status();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reactor::errno_status(errno, "socket");
  const bool live = ::connect(fd, addr->get(), addr->size()) == 0;
  ::close(fd);
  if (live) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " is in use by a running process (another reactord?)"));
  }
  if (::unlink(path.c_str()) != 0) return reactor::errno_status(errno, "unlink " + path);
  return absl::OkStatus();
}

}  // namespace reactord
