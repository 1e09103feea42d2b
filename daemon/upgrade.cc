#include "daemon/upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "reactor/error.h"

extern char** environ;

namespace reactord::upgrade {
namespace {

constexpr char kChannelEnv[] = "REACTORD_UPGRADE_FD";

std::atomic<int> g_channel{-1};
std::atomic<bool> g_new_process{false};
std::vector<std::string> g_args;  // written once at start, read by upgrades
std::string g_exe;

void send_line(const std::string& line) {
  const int fd = g_channel.exchange(-1);
  if (fd < 0) return;
  (void)!::write(fd, line.data(), line.size());  // one short write: atomic on a pipe
  ::close(fd);
}

// Writes `v` in decimal at `out` (room for 20 digits and a NUL). Async-signal-safe.
void put_decimal(char* out, uint64_t v) {
  char tmp[21];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat(sig);
}

// Waits up to `deadline` for the child to exit; kills it if it does not. Returns its wait status.
int reap(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return status;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

void take_channel_from_environment() {
  int fd = -1;
  if (const char* v = std::getenv(kChannelEnv);
      v != nullptr && absl::SimpleAtoi(v, &fd) && fd > 2 && ::fcntl(fd, F_GETFD) >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    g_channel = fd;
    g_new_process = true;
  }
  ::unsetenv(kChannelEnv);
}

bool is_new_process() {
  return g_new_process.load();
}

void report_ready() {
  send_line("READY\n");
}

void report_failure(std::string_view line) {
  std::string one(line.substr(0, line.find('\n')));
  send_line(absl::StrCat("FAILED ", one.substr(0, 1000), "\n"));
}

void remember_command_line(int argc, char** argv) {
  g_args.assign(argv, argv + argc);
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) g_exe.assign(buf, static_cast<size_t>(n));
}

absl::StatusOr<Started> start_new_process(const std::string& binary,
                                          const std::vector<PassedFd>& fds,
                                          reactor::Duration timeout) {
  const std::string path = binary.empty() ? g_exe : binary;
  if (path.empty() || g_args.empty()) {
    return absl::FailedPreconditionError("cannot tell which binary this process runs");
  }
  if (fds.size() > 250) return absl::InvalidArgumentError("more than 250 sockets to pass");
  const int n = static_cast<int>(fds.size());
  const int ready_target = 3 + n;
  // argv and envp are built before fork: the child of a threaded process may only make
  // async-signal-safe calls, so it writes its pid into the two slots reserved here.
  std::vector<std::string> args = g_args;
  args[0] = path;
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const absl::string_view kv(*e);
    if (absl::StartsWith(kv, "LISTEN_") || absl::StartsWith(kv, "WATCHDOG_PID=") ||
        absl::StartsWith(kv, kChannelEnv)) {
      continue;
    }
    env.emplace_back(kv);
  }
  std::vector<std::string> names;
  for (const PassedFd& f : fds) names.push_back(f.name);
  env.push_back(absl::StrCat("LISTEN_FDS=", n));
  env.push_back(absl::StrCat("LISTEN_FDNAMES=", absl::StrJoin(names, ":")));
  env.push_back(absl::StrCat(kChannelEnv, "=", ready_target));
  const std::string slot(21, '\0');
  env.push_back("LISTEN_PID=" + slot);
  const size_t listen_pid_at = env.size() - 1;
  size_t watchdog_pid_at = SIZE_MAX;
  if (std::getenv("WATCHDOG_USEC") != nullptr) {
    env.push_back("WATCHDOG_PID=" + slot);
    watchdog_pid_at = env.size() - 1;
  }
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char* listen_pid = envp[listen_pid_at] + std::strlen("LISTEN_PID=");
  char* watchdog_pid =
      watchdog_pid_at == SIZE_MAX ? nullptr : envp[watchdog_pid_at] + std::strlen("WATCHDOG_PID=");
  std::vector<int> sources;
  for (const PassedFd& f : fds) sources.push_back(f.fd);

  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return reactor::errno_status(errno, "pipe2");
  sources.push_back(ready[1]);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(ready[0]);
    ::close(ready[1]);
    return reactor::errno_status(err, "fork");
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, nullptr);
    // Every source is first copied above the targets 3..3+n, so no dup2 below overwrites a
    // source still to be moved; then everything else the parent had open is closed.
    int high[256];
    for (size_t i = 0; i < sources.size(); ++i) {
      high[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, ready_target + 1);
      if (high[i] < 0) ::_exit(126);
    }
    for (size_t i = 0; i < sources.size(); ++i) {
      if (::dup2(high[i], 3 + static_cast<int>(i)) < 0) ::_exit(126);
    }
    ::close_range(static_cast<unsigned>(ready_target + 1), ~0U, 0);
    put_decimal(listen_pid, static_cast<uint64_t>(::getpid()));
    if (watchdog_pid != nullptr) put_decimal(watchdog_pid, static_cast<uint64_t>(::getpid()));
    ::execve(path.c_str(), argv.data(), envp.data());
    char msg[32] = "EXEC ";
    put_decimal(msg + 5, static_cast<uint64_t>(errno));
    const size_t len = std::strlen(msg);
    msg[len] = '\n';
    (void)!::write(ready_target, msg, len + 1);
    ::_exit(127);
  }
  ::close(ready[1]);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  std::string got;
  bool timed_out = false;
  while (got.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{ready[0], POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    char buf[1100];
    const ssize_t m = ::read(ready[0], buf, sizeof buf);
    if (m < 0 && errno == EINTR) continue;
    if (m <= 0) break;  // end of file: the child exited (or closed the channel)
    got.append(buf, static_cast<size_t>(m));
  }
  ::close(ready[0]);
  if (absl::StartsWith(got, "READY\n")) return Started{pid, path};

  const auto seconds = std::chrono::duration<double>(timeout).count();
  if (timed_out) {
    ::kill(pid, SIGKILL);
    (void)reap(pid, std::chrono::steady_clock::now());
    return absl::DeadlineExceededError(absl::StrCat(
        path, " (pid ", pid, ") did not report ready within ", seconds, " s; killed it"));
  }
  const int status = reap(pid, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  std::string why = got.substr(0, got.find('\n'));
  int exec_errno = 0;
  if (absl::StartsWith(why, "EXEC ") && absl::SimpleAtoi(why.substr(5), &exec_errno)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot execute ", path, ": ", std::strerror(exec_errno)));
  }
  std::string how = WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                    : WIFSIGNALED(status)
                        ? absl::StrCat("was killed by ", signal_name(WTERMSIG(status)))
                        : std::string("stopped");
  if (absl::StartsWith(why, "FAILED "))
    why = absl::StrCat(": ", why.substr(7));
  else
    why.clear();
  return absl::FailedPreconditionError(
      absl::StrCat(path, " (pid ", pid, ") ", how, " before it was ready", why));
}

}  // namespace reactord::upgrade
