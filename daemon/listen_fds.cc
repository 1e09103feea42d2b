#include "daemon/listen_fds.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

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
  if (ours) {
    for (int i = 0; i < count; ++i) {
      const int fd = 3 + i;
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      const std::string name =
          static_cast<size_t>(i) < names.size() && !names[i].empty() ? names[i] : "unknown";
      out[name].push_back(fd);
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return out;
}

}  // namespace reactord
