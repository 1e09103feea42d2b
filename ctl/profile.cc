#include "ctl/profile.h"

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ctl/format.h"

namespace reactord::ctl {
namespace {

// The daemon's defaults and bounds (admin/profile.h; reactorctl links nothing of the daemon).
constexpr int kDefaultSeconds = 5, kMaxSeconds = 300;
constexpr int kDefaultHz = 99, kMaxHz = 1000;
constexpr size_t kTopStacks = 10;

absl::Status bad(const std::string& why) {
  return absl::InvalidArgumentError(why);
}

}  // namespace

absl::StatusOr<bool> parse_profile_flag(const std::string& flag, const std::string& value,
                                        ProfileOptions* o) {
  int n = 0;
  const bool number = absl::SimpleAtoi(value, &n);
  if (flag == "--seconds") {
    if (!number || n < 1 || n > kMaxSeconds) {
      return bad(absl::StrCat("--seconds needs a whole number of seconds, 1 to ", kMaxSeconds));
    }
    o->seconds = n;
  } else if (flag == "--hz") {
    if (!number || n < 1 || n > kMaxHz) {
      return bad(absl::StrCat("--hz needs samples per second of CPU time, 1 to ", kMaxHz));
    }
    o->hz = n;
  } else if (flag == "--shard") {
    if (!number || n < 0) return bad("--shard needs a shard number");
    o->shard = n;
  } else {
    return false;
  }
  return true;
}

int profile_seconds(const ProfileOptions& o) {
  return o.seconds != 0 ? o.seconds : kDefaultSeconds;
}

std::string profile_line(const ProfileOptions& o) {
  std::string line =
      absl::StrCat("profile ", profile_seconds(o), " ", o.hz != 0 ? o.hz : kDefaultHz);
  if (o.shard >= 0) absl::StrAppend(&line, " ", o.shard);
  return line;
}

std::vector<FoldedStack> fold_profile(const Json& profile) {
  std::map<std::vector<std::string>, FoldedStack> by_stack;
  const Json& stacks = member(profile, "stacks");
  if (!stacks.is_array()) return {};
  for (const Json& s : stacks) {
    if (!s.is_object()) continue;
    std::vector<std::string> frames{string_or(s, "root", "?")};
    const Json& inner_first = member(s, "frames");
    if (inner_first.is_array()) {
      for (auto it = inner_first.rbegin(); it != inner_first.rend(); ++it) {
        frames.push_back(it->is_string() ? it->get<std::string>() : "?");
      }
    }
    const double n = number_or(s, "samples", 0);
    FoldedStack& f = by_stack[frames];
    f.frames = frames;
    f.weight += static_cast<uint64_t>(std::max(0.0, n));
    f.samples = f.weight;
  }
  std::vector<FoldedStack> out;
  for (auto& [k, f] : by_stack) out.push_back(std::move(f));
  std::stable_sort(out.begin(), out.end(),
                   [](const FoldedStack& a, const FoldedStack& b) { return a.weight > b.weight; });
  return out;
}

std::string render_profile(const Json& profile) {
  if (!profile.is_object()) return render_generic(profile);
  const double total = number_or(profile, "samples", 0);
  std::string shards;
  for (const Json& s : member(profile, "shards")) {
    absl::StrAppend(&shards, shards.empty() ? "" : ",", s.is_number() ? s.dump() : "?");
  }
  std::string out =
      absl::StrCat("profile: ", format_number(number_or(profile, "seconds", 0)), " s at ",
                   format_number(number_or(profile, "hz", 0)), " Hz of CPU time, shards ", shards,
                   ": ", format_number(total), " samples, ",
                   format_number(number_or(profile, "dropped", 0)), " dropped\n");
  auto share = [&](double n) { return format_percent(total > 0 ? n / total : 0); };
  Table roots({"ROOT", ">SAMPLES", ">SHARE"});
  std::vector<std::pair<std::string, double>> by_root;
  const Json& r = member(profile, "roots");
  if (r.is_object()) {
    for (auto it = r.begin(); it != r.end(); ++it) {
      by_root.emplace_back(it.key(), it->is_number() ? it->get<double>() : 0);
    }
  }
  std::stable_sort(by_root.begin(), by_root.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [name, n] : by_root) roots.add_row({name, format_number(n), share(n)});
  if (!roots.empty()) out += roots.render();
  const std::vector<FoldedStack> stacks = fold_profile(profile);
  if (!stacks.empty()) {
    out += "\nheaviest stacks (innermost frame):\n";
    Table top({">SAMPLES", ">SHARE", "ROOT", "FRAME"});
    for (size_t i = 0; i < stacks.size() && i < kTopStacks; ++i) {
      const FoldedStack& s = stacks[i];
      const double n = static_cast<double>(s.weight);
      top.add_row({format_number(n), share(n), s.frames.front(),
                   s.frames.size() > 1 ? s.frames.back() : "-"});
    }
    out += top.render();
  }
  return out;
}

}  // namespace reactord::ctl
