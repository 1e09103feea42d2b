// Runs the real reactord binary for integration tests: a temporary directory with its config, a
// NOTIFY_SOCKET the test listens on (READY=1 and STATUS= tell which ports the OS picked), stderr
// captured to a file, signals, and the exit code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace reactor::test {

class DaemonProcess {
 public:
  DaemonProcess();
  ~DaemonProcess();  // kills the daemon if still running, removes the directory

  const std::string& dir() const { return dir_; }
  // DIR/admin.sock, where daemon_config() puts the admin socket.
  std::string admin_socket() const { return dir_ + "/admin.sock"; }
  // Writes `toml` as DIR/reactord.toml.
  void write_config(const std::string& toml);

  // Starts reactord with --config DIR/reactord.toml plus `args`. `before_exec` runs in the child.
  void start(std::vector<std::string> args = {}, std::function<void()> before_exec = nullptr,
             std::vector<std::string> prefix = {});
  // Waits for a notify message containing `needle` (e.g. "READY=1"); returns the whole message.
  std::optional<std::string> wait_notify(const std::string& needle,
                                         std::chrono::milliseconds timeout);
  // Every notify message received during `d`, with when it arrived.
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> collect_notify(
      std::chrono::milliseconds d);
  // After READY=1: service name → "host:port" parsed from its STATUS= line.
  std::map<std::string, std::string> addresses() const { return addresses_; }
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  void signal(int sig);
  // The exit code, or nullopt if it did not exit in time (it is then killed).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Polls the captured stderr until it contains `needle`.
  bool wait_log(const std::string& needle, std::chrono::milliseconds timeout);
  std::string log() const;
  pid_t pid() const { return pid_; }

  // Runs reactord to completion with `args` (no config written unless asked); returns the exit
  // code and fills `output` with stdout+stderr.
  static int run_to_exit(std::vector<std::string> args, std::string* output,
                         std::function<void()> before_exec = nullptr);

 private:
  std::string dir_;
  int notify_fd_ = -1;
  pid_t pid_ = -1;
  std::map<std::string, std::string> addresses_;
};

// The binary under test.
const char* reactord_binary();

// One echo service on 127.0.0.1 at a port the OS picks.
inline constexpr char kEchoService[] =
    "[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n";

// A config of `shards` shards, text logs at `level`, the admin socket at DIR/admin.sock with
// `admin` added to [admin], a 2 s drain, then `services`.
std::string daemon_config(const std::string& dir, const std::string& admin,
                          const std::string& services, int shards = 2,
                          const std::string& level = "info");

// Writes `toml` to `d`, starts it with `args` and waits until it is ready; a failure carries the
// daemon's log.
::testing::AssertionResult start_daemon(
    DaemonProcess& d, const std::string& toml, std::vector<std::string> args = {},
    std::function<void()> before_exec = nullptr,
    std::chrono::milliseconds timeout = std::chrono::seconds(20));

// The lines of a reactord text log (daemon_config's format: date, time, level, message) at
// warning level or worse that contain none of `allowed`, and every line of a sanitizer's report.
// Each `allowed` entry is a substring of one expected warning; say at its use why it is expected.
std::vector<std::string> unexpected_log_lines(const std::string& log,
                                              const std::vector<std::string>& allowed = {});

// Sends SIGTERM and waits for `d` to exit; a success when it exits 0 in time, else a failure that
// carries the exit code and the daemon's log.
::testing::AssertionResult stops_cleanly(
    DaemonProcess& d, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace reactor::test
