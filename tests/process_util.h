// Child processes for the tests that run reactorctl (and other tools) as a real process: stdout
// and stderr captured apart, a time limit, the exit code. Test thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace reactor::test {

// What a child did: its exit code (128 + the signal if one killed it) and its output.
struct Ran {
  int code = -1;
  std::string out, err;
};

inline std::string describe(const Ran& r) {
  return "exit " + std::to_string(r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

// Everything read from `fd` until end of file or an error.
inline std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Runs `argv` with stdout and stderr captured apart and stdin on /dev/null; killed after
// `timeout`. `env` entries are set (an empty value unsets); `before_exec` runs in the child.
inline Ran run_process(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& env,
                       std::function<void()> before_exec = nullptr,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  using Clock = std::chrono::steady_clock;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, STDIN_FILENO);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (const auto& [k, v] : env) {
      if (v.empty()) {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
    if (before_exec) before_exec();
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Ran r;
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    if (::poll(fds, 2, killed ? 1000 : static_cast<int>(left.count()) + 1) < 0 && errno != EINTR) {
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// A copy of `binary` in a new directory under /tmp, both mode 0755, removed with the object: a
// child dropped to another uid can run it even when the build tree lies under a directory that
// uid may not search (a home of mode 0700), where exec fails and the child exits 127.
class ReachableCopy {
 public:
  explicit ReachableCopy(const std::string& binary) {
    char tmpl[] = "/tmp/reactord-bin-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return;
    dir_ = tmpl;
    const std::string to = dir_ + "/" + std::filesystem::path(binary).filename().string();
    std::error_code ec;
    std::filesystem::copy_file(binary, to, ec);
    if (ec || ::chmod(dir_.c_str(), 0755) != 0 || ::chmod(to.c_str(), 0755) != 0) return;
    path_ = to;
  }
  ~ReachableCopy() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  ReachableCopy(const ReachableCopy&) = delete;
  ReachableCopy& operator=(const ReachableCopy&) = delete;

  // The copy, or "" if it could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

#if defined(REACTORCTL_BINARY)
// The reactorctl under test (tests/CMakeLists.txt defines REACTORCTL_BINARY).
inline const char* reactorctl_binary() {
  return REACTORCTL_BINARY;
}

// `binary` (reactorctl unless given) with `args`; $REACTORD_ADMIN_SOCKET unset unless `env` sets
// it.
inline Ran run_reactorctl(std::vector<std::string> args,
                          std::map<std::string, std::string> env = {},
                          std::function<void()> before_exec = nullptr,
                          const std::string& binary = reactorctl_binary()) {
  args.insert(args.begin(), binary);
  env.emplace("REACTORD_ADMIN_SOCKET", "");
  return run_process(args, env, std::move(before_exec));
}
#endif

}  // namespace reactor::test
