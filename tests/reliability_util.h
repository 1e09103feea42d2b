// Helpers for the churn, fault and soak tests against the real reactord: what /proc says about
// the daemon (open fds, resident memory, CPU time) and deterministic payloads. Their clients are
// in tests/blocking_client.h.
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

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

}  // namespace reactor::test
