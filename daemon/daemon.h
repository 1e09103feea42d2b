// The daemon: binds every service, starts one shard per core, tells systemd it is ready, and runs
// the control loop (signals, reload, status, watchdog pings, drain) on the main thread's own
// reactor until SIGTERM or SIGINT has drained it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "daemon/sd_notify.h"

namespace reactord {

// sysexits(3) codes the daemon exits with.
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 64,        // bad flags
  kExitNoInput = 66,      // config file missing or unreadable
  kExitUnavailable = 69,  // requested backend unavailable
  kExitOsError = 71,      // bind/listen or another OS resource failure
  kExitConfig = 78,       // invalid config
};

// A key overridden on the command line, re-applied over the file on every reload.
using Override = std::pair<std::string, std::string>;

class Daemon {
 public:
  Daemon(Config config, std::string config_path, std::vector<Override> overrides);
  ~Daemon();
  // Runs until drained; returns the exit code. Prints one line saying why on failure. Main thread.
  int run();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace reactord
