// The admin commands that look inside the shards on demand: `fibers [SHARD] stacks` (each
// fiber's stack, walked by its shard at a safe point and named here) and `conns [SERVICE]`
// (each connection). The shards do this work only when asked: the admin thread posts the request
// to each shard's loop, which takes the snapshot between fibers; a shard that does not answer in
// time (a stalled fiber holds its loop) is shown from its last published snapshot and named.
// Protocol: docs/admin-protocol.md.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "admin/view.h"
#include "reactor/time.h"

namespace reactord {

// How long the admin thread waits for a shard's on-demand snapshot.
inline constexpr reactor::Duration kSnapshotWait = std::chrono::seconds(1);

// Limits of `fibers … stacks`: fibers per shard and frames per fiber, by default and at most.
inline constexpr size_t kStackFibers = 100, kMaxStackFibers = 1000;
inline constexpr size_t kStackFrames = 32, kMaxStackFrames = 64;
// Connections listed by `conns`, in all.
inline constexpr size_t kMaxConnections = 1000;

// Snapshots of `shards` taken now on their loop threads, as `what` asks; null for a shard that
// did not answer by `deadline`. Admin thread, inside a fiber.
std::vector<std::shared_ptr<const FiberSnapshot>> take_snapshots(const DaemonView& view,
                                                                 const std::vector<size_t>& shards,
                                                                 const SnapshotRequest& what,
                                                                 reactor::Deadline deadline);

// The answers of `fibers [SHARD] stacks [MAX_FIBERS [MAX_FRAMES]]` and `conns [SERVICE]`:
// `words` is the command line split, as parse_admin_line gives it. Admin thread, inside a fiber.
std::string fibers_stacks_answer(const DaemonView& view, const std::vector<std::string>& words);
std::string conns_answer(const DaemonView& view, const std::vector<std::string>& words);

}  // namespace reactord
