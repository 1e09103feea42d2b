#include "tests/daemon_harness.h"

#include "tests/process_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace reactor::test {

const char* reactord_binary() {
  return REACTORD_BINARY;
}

std::string daemon_config(const std::string& dir, const std::string& admin,
                          const std::string& services, int shards, const std::string& level) {
  return absl::StrCat("[runtime]\nshards = ", shards, "\n\n[log]\nlevel = \"", level,
                      "\"\nformat = \"text\"\n\n[admin]\nsocket = \"", dir, "/admin.sock\"\n",
                      admin, "\n[shutdown]\ndrain_timeout_ms = 2000\n\n", services);
}

::testing::AssertionResult start_daemon(DaemonProcess& d, const std::string& toml,
                                        std::vector<std::string> args,
                                        std::function<void()> before_exec,
                                        std::chrono::milliseconds timeout) {
  d.write_config(toml);
  d.start(std::move(args), std::move(before_exec));
  if (!d.wait_ready(timeout)) {
    return ::testing::AssertionFailure() << "reactord did not become ready:\n" << d.log();
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> unexpected_log_lines(const std::string& log,
                                              const std::vector<std::string>& allowed) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    // "2024-05-01 12:00:00.123 warning message": the third field is spdlog's level name.
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    const bool bad_level = fields.size() >= 3 && (fields[2] == "warning" || fields[2] == "error" ||
                                                  fields[2] == "critical");
    const bool sanitizer =
        absl::StrContains(line, "Sanitizer") || absl::StrContains(line, "runtime error:");
    if (!bad_level && !sanitizer) continue;
    bool expected = false;
    for (const std::string& a : allowed) expected = expected || absl::StrContains(line, a);
    if (sanitizer || !expected) out.emplace_back(line);
  }
  return out;
}

::testing::AssertionResult stops_cleanly(DaemonProcess& d, std::chrono::milliseconds timeout) {
  d.signal(SIGTERM);
  const std::optional<int> code = d.wait_exit(timeout);
  if (code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "reactord " << (code ? "exited " + std::to_string(*code) : std::string("did not exit"))
         << " after SIGTERM:\n"
         << d.log();
}

DaemonProcess::DaemonProcess() {
  char tmpl[] = "/tmp/reactord-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = dir_ + "/notify.sock";
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("bind notify socket failed");
  }
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (notify_fd_ >= 0) ::close(notify_fd_);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void DaemonProcess::write_config(const std::string& toml) {
  std::ofstream(dir_ + "/reactord.toml") << toml;
}

void DaemonProcess::start(std::vector<std::string> args, std::function<void()> before_exec,
                          std::vector<std::string> prefix) {
  std::vector<std::string> argv = prefix;
  argv.push_back(reactord_binary());
  argv.push_back("--config=" + dir_ + "/reactord.toml");
  for (auto& a : args) argv.push_back(a);
  const std::string log_path = dir_ + "/stderr.log";
  const std::string notify = dir_ + "/notify.sock";
  pid_ = ::fork();
  if (pid_ == 0) {
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(log_fd, STDERR_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    ::setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    if (before_exec) before_exec();
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
}

std::optional<std::string> DaemonProcess::wait_notify(const std::string& needle,
                                                      std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{notify_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(notify_fd_, buf, sizeof buf, 0);
    if (n <= 0) continue;
    std::string msg(buf, static_cast<size_t>(n));
    if (msg.find(needle) != std::string::npos) return msg;
  }
}

std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>>
DaemonProcess::collect_notify(std::chrono::milliseconds d) {
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> out;
  const auto end = std::chrono::steady_clock::now() + d;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    pollfd p{notify_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(notify_fd_, buf, sizeof buf, 0);
    if (n > 0)
      out.emplace_back(std::chrono::steady_clock::now(), std::string(buf, static_cast<size_t>(n)));
  }
}

bool DaemonProcess::wait_ready(std::chrono::milliseconds timeout) {
  std::optional<std::string> msg = wait_notify("READY=1", timeout);
  if (!msg) return false;
  // STATUS=backend epoll, 2 shards; echo 127.0.0.1:4242, web [::1]:80; 0 connections
  const size_t at = msg->find("STATUS=");
  if (at == std::string::npos) return true;
  std::string status = msg->substr(at + 7, msg->find('\n', at) - at - 7);
  std::vector<std::string> parts = absl::StrSplit(status, "; ");
  if (parts.size() >= 2) {
    for (absl::string_view svc : absl::StrSplit(parts[1], ", ")) {
      std::vector<std::string> kv = absl::StrSplit(svc, absl::MaxSplits(' ', 1));
      if (kv.size() == 2) addresses_[kv[0]] = kv[1];
    }
  }
  return true;
}

void DaemonProcess::signal(int sig) {
  ::kill(pid_, sig);
}

std::optional<int> DaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

std::string DaemonProcess::log() const {
  std::ifstream in(dir_ + "/stderr.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool DaemonProcess::wait_log(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int DaemonProcess::run_to_exit(std::vector<std::string> args, std::string* output,
                               std::function<void()> before_exec) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    ::unsetenv("NOTIFY_SOCKET");
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(30);  // a daemon that unexpectedly starts serving must not hang the test
    if (before_exec) before_exec();
    std::vector<std::string> argv = {reactord_binary()};
    for (auto& a : args) argv.push_back(a);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string out = read_all(pipefd[0]);
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace reactor::test
