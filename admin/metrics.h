// What the admin server shows: the daemon's statistics as JSON and as Prometheus text (format
// 0.0.4). Everything is read from any thread without touching a running shard: relaxed-atomic
// counters, each shard's current slice, and the snapshots shards publish.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "admin/view.h"
#include "nlohmann/json.hpp"
#include "reactor/fiber_stack.h"

namespace reactord {

// Any thread.
nlohmann::json stats_json(const DaemonView& view);
nlohmann::json shards_json(const DaemonView& view);
nlohmann::json services_json(const DaemonView& view);
// One shard (nullopt: all) from the snapshots the shards publish; an unknown shard gives an empty
// array.
nlohmann::json fibers_json(const DaemonView& view, std::optional<size_t> shard);
// A shard's snapshot for the `fibers` answer: null when there is none; `error` says why a fresh
// one asked for was not taken (the published one is shown instead).
struct ShardSnapshot {
  size_t shard = 0;
  std::shared_ptr<const FiberSnapshot> snapshot;
  std::string error;
  size_t max_frames = SIZE_MAX;  // frames named per fiber, after the parking frames are dropped
};
// The `fibers` answer from these snapshots. With a symbolizer (`fibers … stacks`), each fiber
// says whether it runs now and, when its snapshot has frames, names its stack; each shard says
// how many fibers were left out. Any thread; symbolizing reads files, so not a loop thread.
nlohmann::json fibers_json(const DaemonView& view, const std::vector<ShardSnapshot>& snaps,
                           reactor::FrameSymbolizer* symbolizer);
nlohmann::json stalls_json(const DaemonView& view);
nlohmann::json backends_json();
std::string prometheus_text(const DaemonView& view);

}  // namespace reactord
