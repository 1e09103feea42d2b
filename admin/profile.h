// The admin `profile [SECONDS [HZ [SHARD]]]` command: samples the shards' CPU for SECONDS at HZ
// samples per second of each shard thread's CPU time (reactor/profiler.h) and answers the samples
// aggregated by stack, each rooted at its fiber's name without "#N" (so a service's connections
// add up) or at `scheduler`, `poll` or `spin`. The client's fiber waits (suspended) while the
// profile runs and drains the shards' rings every kProfileDrain; other clients are served
// meanwhile. One profile at a time: another request gets `ERR busy`. Frames are named on the
// blocking pool, off the loops. Protocol: docs/admin-protocol.md.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "admin/view.h"
#include "reactor/time.h"

namespace reactord {

inline constexpr int kProfileSeconds = 5, kMaxProfileSeconds = 300;
inline constexpr int kProfileHz = 99, kMaxProfileHz = 1000;
// How often the admin thread empties the shards' sample rings while a profile runs.
inline constexpr reactor::Duration kProfileDrain = std::chrono::milliseconds(50);
// Stacks listed at most (the heaviest); the samples of the rest are counted as omitted.
inline constexpr size_t kMaxProfileStacks = 2000;

// The answer of `profile …`: `words` is the command line split, as parse_admin_line gives it.
// Admin thread, inside a fiber (it suspends for the profile's length).
std::string profile_answer(const DaemonView& view, const std::vector<std::string>& words);

}  // namespace reactord
