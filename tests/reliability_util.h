// Helpers for the churn, fault and soak tests against the real reactord: what /proc says about
// the daemon (open fds, resident memory, CPU time), plain blocking loopback clients with timeouts
// (independent of the runtime under test), and one-line admin queries.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace reactor::test {

#if defined(REACTOR_ASAN)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
#if defined(REACTOR_TSAN)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif

// ---- /proc/PID ----

// Entries in /proc/PID/fd, or -1 if the process is gone. fds open on the daemon's executable or on
// a shared library are not counted: absl::Symbolize opens the object files of a backtrace at the
// watchdog's first stall report and keeps them for the process's life (a cache, not a leak).
inline int open_fds(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  char exe[4096];
  const ssize_t exe_len = ::readlink((dir + "/exe").c_str(), exe, sizeof exe);
  DIR* d = ::opendir((dir + "/fd").c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[4096];
    const ssize_t len = ::readlink((dir + "/fd/" + e->d_name).c_str(), target, sizeof target);
    if (exe_len > 0 && len == exe_len && std::memcmp(target, exe, static_cast<size_t>(len)) == 0) {
      continue;
    }
    if (len > 0 &&
        std::string_view(target, static_cast<size_t>(len)).find(".so") != std::string_view::npos) {
      continue;
    }
    ++n;
  }
  ::closedir(d);
  return n;
}

// The fewest open fds seen over `samples` reads `gap` apart: the daemon opens a short-lived fd for
// each sd_notify message, which a single read may catch.
inline int settled_fds(pid_t pid, int samples = 5,
                       std::chrono::milliseconds gap = std::chrono::milliseconds(40)) {
  int best = -1;
  for (int i = 0; i < samples; ++i) {
    const int n = open_fds(pid);
    if (n >= 0 && (best < 0 || n < best)) best = n;
    if (i + 1 < samples) std::this_thread::sleep_for(gap);
  }
  return best;
}

// Waits (bounded) until the settled fd count equals `want`; returns the last count seen.
inline int wait_fds(pid_t pid, int want, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  int n = settled_fds(pid);
  while (n != want && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    n = settled_fds(pid);
  }
  return n;
}

// VmRSS of /proc/PID/status in bytes, or -1.
inline int64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

// utime + stime of the whole process (every thread) from /proc/PID/stat, in seconds, or -1.
inline double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');  // the command name may contain spaces
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  // After the name: state(3) ... utime is field 14, stime 15 (1-based over the whole line).
  for (int i = 3; i < 14; ++i) fields >> f;
  uint64_t utime = 0, stime = 0;
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// ---- a blocking loopback TCP client ----

inline uint16_t port_of(const std::string& host_port) {
  return static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

// One connection with send and receive timeouts, so a test never hangs on it.
class Client {
 public:
  Client() = default;
  Client(const std::string& host_port, std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) return;
    set_timeout(timeout);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_of(host_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  Client(Client&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), connected_(std::exchange(o.connected_, false)) {}
  Client& operator=(Client&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
      connected_ = std::exchange(o.connected_, false);
    }
    return *this;
  }
  ~Client() { close(); }

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void set_timeout(std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>(t.count() % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  bool send_all(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Sends without blocking as much of `s` as the socket takes; returns how much.
  size_t send_some(std::string_view s) {
    const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  // Reads exactly n bytes (less if the peer closes, fails or the timeout passes).
  std::string recv_exact(size_t n) {
    std::string got(n, '\0');
    size_t have = 0;
    while (have < n) {
      const ssize_t r = ::recv(fd_, got.data() + have, n - have, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      have += static_cast<size_t>(r);
    }
    got.resize(have);
    return got;
  }
  // Reads until the peer closes (true) or an error or the timeout (false); appends to *out.
  bool recv_to_eof(std::string* out) {
    char buf[16384];
    for (;;) {
      const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return true;
      if (r < 0) return false;
      out->append(buf, static_cast<size_t>(r));
    }
  }
  // Reads until `marker` has arrived `count` times, the peer closes, or the timeout passes.
  std::string recv_until(std::string_view marker, int count = 1) {
    std::string got;
    char buf[16384];
    for (;;) {
      int seen = 0;
      for (size_t at = got.find(marker); at != std::string::npos;
           at = got.find(marker, at + marker.size()))
        ++seen;
      if (seen >= count) return got;
      const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return got;
      got.append(buf, static_cast<size_t>(r));
    }
  }
  bool shutdown_write() { return ::shutdown(fd_, SHUT_WR) == 0; }
  // Closes with SO_LINGER 0: the peer gets a reset, not a FIN.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    connected_ = false;
  }
  // True if the peer closes (FIN or reset) within `timeout`, reading and dropping what it sends.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Deterministic bytes of every value, different for each seed.
inline std::string pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x & 0xff);
  }
  return s;
}

// ---- the admin socket ----

// Sends one command line to the admin socket at `path`; returns the answer without its "."
// terminator line, or nullopt on failure.
inline std::optional<std::string> admin_query(
    const std::string& path, const std::string& line,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  std::optional<std::string> answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = line + "\n";
    ssize_t sent;
    do {
      sent = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent == static_cast<ssize_t>(req.size())) {
      std::string got;
      char buf[16384];
      for (;;) {
        if (got == ".\n" || (got.size() >= 3 && got.compare(got.size() - 3, 3, "\n.\n") == 0)) {
          got.resize(got.size() >= 3 ? got.size() - 3 : 0);
          answer = std::move(got);
          break;
        }
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;  // a signal to this process (e.g. SIGCHLD)
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return answer;
}

}  // namespace reactor::test
