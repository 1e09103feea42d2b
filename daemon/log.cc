#include "daemon/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/async.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"

namespace reactord::log {
namespace {

std::atomic<bool> g_journal{false};

// $JOURNAL_STREAM is "DEV:INODE" of the stream journald gave us; it is ours only if stderr is it.
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  std::pair<std::string, std::string> parts = absl::StrSplit(env, ':');
  uint64_t dev = 0, ino = 0;
  if (!absl::SimpleAtoi(parts.first, &dev) || !absl::SimpleAtoi(parts.second, &ino)) return false;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<uint64_t>(st.st_dev) == dev && static_cast<uint64_t>(st.st_ino) == ino;
}

int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::info:
      return 6;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    default:
      return 2;
  }
}

// Runs on spdlog's background thread: stderr writes may block there, never on a loop.
class StderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string line;
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (g_journal.load(std::memory_order_relaxed)) {
      line = absl::StrCat("<", syslog_priority(msg.level), ">",
                          absl::string_view(text.data(), text.size()), "\n");
    } else {
      const auto t = std::chrono::system_clock::to_time_t(msg.time);
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch())
              .count() %
          1000;
      std::tm tm;
      localtime_r(&t, &tm);
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
      const auto lv = spdlog::level::to_string_view(msg.level);
      char msbuf[8];
      std::snprintf(msbuf, sizeof msbuf, ".%03d", static_cast<int>(ms));
      line = absl::StrCat(stamp, msbuf, " ", absl::string_view(lv.data(), lv.size()), " ",
                          absl::string_view(text.data(), text.size()), "\n");
    }
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

std::optional<spdlog::level::level_enum> parse_level(std::string_view s) {
  if (s == "trace") return spdlog::level::trace;
  if (s == "debug") return spdlog::level::debug;
  if (s == "info") return spdlog::level::info;
  if (s == "warn") return spdlog::level::warn;
  if (s == "error") return spdlog::level::err;
  return std::nullopt;
}

}  // namespace

void init(Format format, std::string_view level) {
  g_journal = format == Format::kJournal || (format == Format::kAuto && stderr_is_journal());
  spdlog::init_thread_pool(8192, 1);
  auto logger = std::make_shared<spdlog::async_logger>(
      "reactord", std::make_shared<StderrSink>(), spdlog::thread_pool(),
      spdlog::async_overflow_policy::overrun_oldest);
  logger->set_level(parse_level(level).value_or(spdlog::level::info));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

absl::Status set_level(std::string_view level) {
  auto l = parse_level(level);
  if (!l) {
    return absl::InvalidArgumentError(
        absl::StrCat("log level '", absl::string_view(level.data(), level.size()),
                     "': expected trace, debug, info, warn or error"));
  }
  spdlog::default_logger_raw()->set_level(*l);
  return absl::OkStatus();
}

std::string_view level_name() {
  switch (spdlog::default_logger_raw()->level()) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    default:
      return "error";
  }
}

uint64_t dropped() {
  auto pool = spdlog::thread_pool();
  return pool ? pool->overrun_counter() : 0;
}

bool journal_format() {
  return g_journal.load(std::memory_order_relaxed);
}

void shutdown() {
  spdlog::default_logger_raw()->flush();
  spdlog::shutdown();
}

}  // namespace reactord::log
