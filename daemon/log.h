// Logging that never blocks a loop: spdlog's asynchronous logger with a bounded queue that drops
// the oldest line when full (counted), written to stderr by one background thread.
//
// Format: with `format = journal`, or `auto` when stderr is the journal ($JOURNAL_STREAM names
// stderr's device and inode), each line starts with a `<N>` syslog priority that journald turns
// into the entry's priority; otherwise lines carry a human timestamp and level.
// Call sites use spdlog's functions: spdlog::info("shard {} ready", i).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian's Abseil has its own string_view (not std's): teach fmt to print it, so Status messages
// go straight into log lines.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <class Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace reactord::log {

enum class Format { kAuto, kJournal, kText };

// Installs the asynchronous logger as spdlog's default. Main thread, before other threads start.
void init(Format format, std::string_view level);

// Changes the level at run time ("trace", "debug", "info", "warn", "error"). Any thread.
absl::Status set_level(std::string_view level);
std::string_view level_name();

// Lines dropped because the queue was full. Any thread.
uint64_t dropped();

// True when lines carry `<N>` priority prefixes. Any thread.
bool journal_format();

// Flushes and stops the background writer. Main thread, at exit.
void shutdown();

}  // namespace reactord::log
