// What the admin server shows: the daemon's statistics as JSON and as Prometheus text (format
// 0.0.4). Everything is read from any thread without touching a running shard: relaxed-atomic
// counters, each shard's current slice, and the snapshots shards publish.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "admin/view.h"
#include "nlohmann/json.hpp"

namespace reactord {

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
