// Live upgrade (`reactorctl upgrade`): the running daemon starts a new binary with its listening
// sockets, waits until the new process reports ready, then stops accepting and drains; the
// sockets stay open in the new process, so no connect is refused. docs/operations.md.
//
// The new process gets the sockets as socket activation passes them ($LISTEN_FDS from fd 3,
// $LISTEN_FDNAMES, $LISTEN_PID set to its own pid), so daemon/listen_fds.cc adopts them by name,
// and $REACTORD_UPGRADE_FD: the write end of a pipe on which it reports "READY" once serving, or
// "FAILED <line>" when its start fails (the line it also prints on stderr). $WATCHDOG_PID is set
// to the new pid when $WATCHDOG_USEC is set, so the new process pings systemd's watchdog.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "reactor/time.h"

namespace reactord::upgrade {

// ---- the new process ----

// Takes and unsets $REACTORD_UPGRADE_FD. Main thread, before other threads start.
void take_channel_from_environment();
// Whether this process was started by an upgrade. Any thread.
bool is_new_process();
// Tells the old process this one serves. Once; any thread.
void report_ready();
// Tells the old process why this one could not start (one line). Any thread.
void report_failure(std::string_view line);

// ---- the old process ----

// Remembers the arguments and resolves /proc/self/exe, for later upgrades. Main thread, at start.
void remember_command_line(int argc, char** argv);

// A listening socket to pass, under its name ("admin", a service's name).
struct PassedFd {
  std::string name;
  int fd = -1;
};

struct Started {
  pid_t pid = -1;
  std::string binary;
};

// Starts `binary` (empty: this executable as resolved at start) with this process's arguments and
// environment and `fds` passed, and waits up to `timeout` for it to report ready. On failure the
// new process is gone (killed at the timeout) and the status says why: the exec error, its exit
// status or signal and the line it reported. Blocks: an offload thread, never a loop thread.
absl::StatusOr<Started> start_new_process(const std::string& binary,
                                          const std::vector<PassedFd>& fds,
                                          reactor::Duration timeout);

}  // namespace reactord::upgrade
