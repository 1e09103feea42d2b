// The client end of reactord's admin protocol (docs/admin-protocol.md), for reactorctl: a
// blocking Unix stream connection that sends one command line and reads the answer up to its
// end marker (a line holding a single "."). reactorctl is a short-lived command, not a loop, so
// plain blocking calls with deadlines are enough; every wait is bounded, so a daemon that stops
// answering produces an error, never a hang.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace reactord::ctl {

// reactorctl's exit codes (sysexits.h values where one fits).
inline constexpr int kExitOk = 0;
inline constexpr int kExitDaemonError = 1;  // the daemon answered ERR
inline constexpr int kExitUsage = 64;
inline constexpr int kExitUnavailable = 69;  // no connection, or no complete answer

// One answer: its lines without the end marker. `error` is set when the answer is an `ERR ...`
// line (then `lines` holds that one line).
struct Answer {
  std::vector<std::string> lines;
  bool error = false;

  // The lines joined with '\n' (and a final '\n' when not empty).
  std::string text() const;
};

class AdminClient {
 public:
  AdminClient() = default;
  AdminClient(AdminClient&& other) noexcept;
  AdminClient& operator=(AdminClient&& other) noexcept;
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;
  ~AdminClient();

  // Connects to the socket at `path`. Errors: InvalidArgument for a path too long for sun_path;
  // Unavailable (with the errno text) when the connect fails or does not finish within `timeout`.
  static absl::StatusOr<AdminClient> connect(const std::string& path,
                                             std::chrono::milliseconds timeout);

  // Sends `command` (one line, no '\n') and reads its answer. An ERR answer is an Answer with
  // `error` set, not an error status: the daemon did answer. Errors: DeadlineExceeded when the end
  // marker does not arrive within `timeout`; Unavailable when the connection fails or closes first;
  // InvalidArgument for a command holding a newline.
  absl::StatusOr<Answer> request(std::string_view command, std::chrono::milliseconds timeout);

  bool connected() const { return fd_ >= 0; }

 private:
  explicit AdminClient(int fd) : fd_(fd) {}
  void close();

  int fd_ = -1;
  std::string pending_;  // bytes read past the last answer's end marker
};

}  // namespace reactord::ctl
