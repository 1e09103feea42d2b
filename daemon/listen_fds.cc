#include "daemon/listen_fds.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "reactor/net.h"

namespace reactord {

std::map<std::string, std::vector<int>> take_listen_fds() {
  std::map<std::string, std::vector<int>> out;
  const char* pid_env = std::getenv("LISTEN_PID");
  const char* fds_env = std::getenv("LISTEN_FDS");
  const char* names_env = std::getenv("LISTEN_FDNAMES");
  int64_t pid = 0;
  int count = 0;
  const bool ours = pid_env != nullptr && fds_env != nullptr && absl::SimpleAtoi(pid_env, &pid) &&
                    pid == getpid() && absl::SimpleAtoi(fds_env, &count) && count > 0;
  std::vector<std::string> names;
  if (ours && names_env != nullptr) names = absl::StrSplit(names_env, ':');
  std::map<std::string, std::vector<struct stat>> seen;
  if (ours) {
    for (int i = 0; i < count; ++i) {
      const int fd = 3 + i;
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      const std::string name =
          static_cast<size_t>(i) < names.size() && !names[i].empty() ? names[i] : "unknown";
      // A socket unit's fd and the fd store's copy of it (stored by an earlier run) are the same
      // socket: keep one.
      struct stat st {};
      if (::fstat(fd, &st) == 0) {
        bool dup = false;
        for (const struct stat& o : seen[name])
          dup = dup || (o.st_dev == st.st_dev && o.st_ino == st.st_ino);
        if (dup) {
          ::close(fd);
          continue;
        }
        seen[name].push_back(st);
      }
      out[name].push_back(fd);
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return out;
}

bool listens_on(int fd, const ListenAddress& want) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  const reactor::SocketAddress bound =
      reactor::SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  ListenAddress w = want;
  if (w.family != ListenAddress::Family::kUnix && w.port == 0) {
    w.port = static_cast<uint16_t>(bound.port());
  }
  absl::StatusOr<reactor::SocketAddress> expected =
      w.family == ListenAddress::Family::kUnix ? reactor::SocketAddress::unix_path(w.path)
                                               : reactor::SocketAddress::parse_ip(w.to_string());
  return expected.ok() && expected->to_string() == bound.to_string();
}

std::vector<int> unique_sockets(const std::vector<int>& fds) {
  std::vector<int> out;
  std::vector<std::pair<dev_t, ino_t>> seen;
  for (int fd : fds) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) continue;
    const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    out.push_back(fd);
  }
  return out;
}

}  // namespace reactord
