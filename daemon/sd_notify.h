// systemd's notification protocol, natively: one datagram per message to $NOTIFY_SOCKET (a path,
// or an abstract name written with a leading '@'), with file descriptors attached for the fd store
// (SCM_RIGHTS), and the watchdog settings from $WATCHDOG_USEC and $WATCHDOG_PID. Not libsystemd:
// the protocol is a datagram and a few environment variables.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "reactor/time.h"

namespace reactord {

class Notifier {
 public:
  // Reads the environment. Main thread, before other threads start.
  Notifier();

  bool enabled() const { return !socket_path_.empty(); }
  // Whether the unit keeps an fd store (FileDescriptorStoreMax= > 0): systemd 254 and later say so
  // in $FDSTORE; for older ones reactord.service sets it beside FileDescriptorStoreMax=. Any
  // thread.
  bool fd_store() const { return enabled() && fd_store_max_ > 0; }
  // Sends `state` ("READY=1", "STATUS=...", ...; several lines allowed) with `fds` attached. Never
  // blocks (the socket is non-blocking). OK and does nothing when not under systemd or after
  // detach(). Any thread.
  absl::Status notify(std::string_view state, const std::vector<int>& fds = {}) const;
  // From now on nothing is sent: another process is the service's main process. Any thread.
  void detach() { detached_.store(true); }
  // How often systemd wants WATCHDOG=1, if it does (for this process). Any thread.
  std::optional<reactor::Duration> watchdog_interval() const { return watchdog_; }

 private:
  std::string socket_path_;
  int64_t fd_store_max_ = 0;
  std::optional<reactor::Duration> watchdog_;
  std::atomic<bool> detached_{false};
};

// Microseconds of CLOCK_MONOTONIC, for RELOADING=1's MONOTONIC_USEC. Any thread.
uint64_t monotonic_usec();

}  // namespace reactord
