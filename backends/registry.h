// The backend registry: the one place that knows every backend. create_backend() (declared in
// reactor/backend.h) is implemented here.
//
//   "epoll", "io_uring", "libevent"  that backend, or an error saying why it cannot run here (for
//                                    io_uring: the errno, kernel.io_uring_disabled and the likely
//                                    cause: the sysctl, a seccomp profile, a kernel without it);
//   "auto"                           io_uring when it can be created, else epoll. The fallback is
//                                    reported once per process (reactor/notice.h: the process's
//                                    log, or stderr) and kept for stats (auto_fallback_reason()).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace reactor {

struct BackendInfo {
  std::string name;
  bool available = false;
  std::string reason;  // why not, when unavailable
  std::string detail;  // what was found, when available (e.g. io_uring's ring flags)
};

// Every backend this build knows, probed now on the calling thread (a backend is created and
// destroyed: for io_uring, ring creation plus the required opcodes). Any thread without a reactor
// or a loop thread.
std::vector<BackendInfo> list_backends();

// Probes one backend by name the same way. Same threads as list_backends().
BackendInfo probe_backend(std::string_view name);

// list_backends() as a table: one line per backend (name, available yes/no, the reason or the
// detail), then the line "auto -> NAME". Used by reactor-backends and reactord --list-backends.
std::string format_backend_table(const std::vector<BackendInfo>& backends);

// The backend `auto` picks on this machine now ("io_uring" or "epoll"). Same threads.
std::string auto_backend_choice();

// Why `auto` last fell back from io_uring to epoll in this process, or "" if it never did. Any
// thread.
std::string auto_fallback_reason();

// The current value of /proc/sys/kernel/io_uring_disabled ("0", "1", "2"), or a note saying why it
// cannot be read. Any thread.
std::string io_uring_disabled_sysctl();

}  // namespace reactor
