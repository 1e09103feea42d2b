// systemd's notification protocol, natively: one datagram per message to $NOTIFY_SOCKET (a path,
// or an abstract name written with a leading '@'), and the watchdog settings from $WATCHDOG_USEC
// and $WATCHDOG_PID. Not libsystemd: the protocol is a datagram and two environment variables.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "reactor/time.h"

namespace reactord {

class Notifier {
 public:
  // Reads the environment. Main thread, before other threads start.
  static Notifier from_environment();

  bool enabled() const { return !socket_path_.empty(); }
  // Sends `state` ("READY=1", "STATUS=...", ...; several lines allowed). Never blocks (the socket
  // is non-blocking). OK and does nothing when not under systemd. Any thread.
  absl::Status notify(std::string_view state) const;
  // How often systemd wants WATCHDOG=1, if it does (for this process). Any thread.
  std::optional<reactor::Duration> watchdog_interval() const { return watchdog_; }

 private:
  std::string socket_path_;
  std::optional<reactor::Duration> watchdog_;
};

// Microseconds of CLOCK_MONOTONIC, for RELOADING=1's MONOTONIC_USEC. Any thread.
uint64_t monotonic_usec();

}  // namespace reactord
