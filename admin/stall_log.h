// The watchdog's memory: the last 64 stall reports (for the admin `stalls` command) and counts
// by shard and kind. Written by the watchdog thread, read by the admin thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "nlohmann/json.hpp"
#include "reactor/histogram.h"

namespace reactord {

class StallLog {
 public:
  static constexpr size_t kKeep = 64;

  // Records a new stall (counted once) and returns its id. Any thread.
  uint64_t begin(size_t shard, std::string_view kind, nlohmann::json report);
  // Replaces the report of stall `id` if it is still kept (a re-report, frames, the end). Any
  // thread.
  void update(uint64_t id, nlohmann::json report);

  // Records how long an ended stall lasted. Any thread.
  void record_duration(int64_t ns);
  reactor::Histogram::Snapshot durations() const;

  uint64_t total() const;
  uint64_t count(size_t shard, std::string_view kind) const;
  // Oldest first. Any thread.
  nlohmann::json reports_json() const;

 private:
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  uint64_t total_ = 0;
  std::map<std::pair<size_t, std::string>, uint64_t> counts_;
  std::deque<std::pair<uint64_t, nlohmann::json>> reports_;
  reactor::Histogram durations_;  // written under mu_: one writer at a time
};

}  // namespace reactord
