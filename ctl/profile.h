// `reactorctl profile [--seconds N] [--shard K] [--hz H] [--folded | --svg FILE]`: the daemon's
// sampling CPU profile (the admin `profile` command, docs/admin-protocol.md) as a summary table,
// as folded stacks or as a flame graph (ctl/flamegraph.h), each stack rooted at the fiber's name
// (or `scheduler`, `poll`, `spin`) so the widest root is the service that burns the CPU.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ctl/flamegraph.h"
#include "nlohmann/json.hpp"

namespace reactord::ctl {

// reactorctl's profile options, checked by parse_profile_flag; 0: the daemon's default.
struct ProfileOptions {
  int seconds = 0;
  int hz = 0;
  int shard = -1;  // -1: every shard
};

// Takes `flag` (--seconds, --hz, --shard) with `value` into `o`. False if `flag` is none of them;
// InvalidArgument, naming the bounds, for a bad value.
absl::StatusOr<bool> parse_profile_flag(const std::string& flag, const std::string& value,
                                        ProfileOptions* o);

// The protocol line: `profile SECONDS HZ [SHARD]`, the defaults filled in.
std::string profile_line(const ProfileOptions& o);

// How long the daemon takes to answer beyond the usual timeout: the profile's length.
int profile_seconds(const ProfileOptions& o);

// The `profile` answer's stacks, all shards together: root first, then the frames from the
// outermost to the innermost, weighted by samples. Heaviest first, then by stack.
std::vector<FoldedStack> fold_profile(const nlohmann::json& profile);

// The human view: samples by root and the heaviest stacks' innermost frames.
std::string render_profile(const nlohmann::json& profile);

}  // namespace reactord::ctl
