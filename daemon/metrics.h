// What the admin server shows: the daemon's statistics as JSON and as Prometheus text (format
// 0.0.4). Everything is read from any thread without touching a running shard: relaxed-atomic
// counters, each shard's current slice, and the snapshots shards publish.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "reactor/time.h"

namespace reactord {

class Shard;
struct ServiceRuntime;
class StallLog;

// The parts of a running daemon the admin thread reads. Set up before the admin thread starts;
// the vectors do not change afterwards.
struct DaemonView {
  std::string version;
  std::string backend;  // what runtime.backend asked for ("auto", ...)
  reactor::Deadline started{};
  double start_time_seconds = 0;  // since the epoch
  const std::vector<std::unique_ptr<Shard>>* shards = nullptr;
  const std::vector<std::unique_ptr<ServiceRuntime>>* services = nullptr;
  const StallLog* stalls = nullptr;  // null when the watchdog is off
};

// Any thread.
nlohmann::json stats_json(const DaemonView& view);
nlohmann::json shards_json(const DaemonView& view);
nlohmann::json services_json(const DaemonView& view);
// One shard (nullopt: all); an unknown shard gives an empty array.
nlohmann::json fibers_json(const DaemonView& view, std::optional<size_t> shard);
nlohmann::json stalls_json(const DaemonView& view);
nlohmann::json backends_json();
std::string prometheus_text(const DaemonView& view);

}  // namespace reactord
