#include "admin/profile.h"

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "admin/protocol.h"
#include "nlohmann/json.hpp"
#include "reactor/fiber_stack.h"
#include "reactor/offload.h"
#include "reactor/profiler.h"
#include "reactor/reactor.h"

namespace reactord {
namespace {

using nlohmann::json;
using Kind = reactor::Reactor::Activity::Kind;

constexpr char kUsage[] = "profile [SECONDS [HZ [SHARD]]]";

// When the running profile ends (admin thread; one profile at a time).
reactor::Deadline g_profile_end{};

struct StackKey {
  size_t shard;
  std::string root;
  std::vector<void*> pcs;
  bool operator<(const StackKey& o) const {
    return std::tie(shard, root, pcs) < std::tie(o.shard, o.root, o.pcs);
  }
};

struct Collected {
  std::map<StackKey, uint64_t> stacks;  // samples by stack
  std::map<std::string, uint64_t> roots;
  uint64_t samples = 0;
};

std::string root_of(const reactor::ProfileSample& s) {
  switch (s.kind) {
    case Kind::kScheduler:
      return "scheduler";
    case Kind::kPoll:
      return "poll";
    case Kind::kSpin:
      return "spin";
    case Kind::kFiber:
      break;
  }
  std::string name(s.fiber);
  name = name.substr(0, name.find('#'));
  return name.empty() ? "[fiber]" : name;
}

bool parse_in(const std::string& word, int lo, int hi, int* out) {
  int n = 0;
  if (!absl::SimpleAtoi(word, &n) || n < lo || n > hi) return false;
  *out = n;
  return true;
}

// Names the frames (reads the binary's symbol tables: run it on the blocking pool), adds up the
// stacks that name the same frames, and builds the answer, the heaviest stacks first.
json profile_json(const Collected& c, int seconds, int hz, const std::vector<size_t>& shards,
                  uint64_t dropped) {
  reactor::FrameSymbolizer symbolizer;
  std::map<std::tuple<size_t, std::string, std::vector<std::string>>, uint64_t> named;
  for (const auto& [key, samples] : c.stacks) {
    std::vector<std::string> frames;
    for (size_t i = 0; i < key.pcs.size(); ++i) {
      // pcs[0] is where the signal found the thread, not a return address: name() looks up pc - 1.
      void* pc = key.pcs[i];
      frames.push_back(symbolizer.name(i == 0 ? static_cast<char*>(pc) + 1 : pc));
    }
    named[{key.shard, key.root, std::move(frames)}] += samples;
  }
  std::vector<const decltype(named)::value_type*> order;
  for (const auto& e : named) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return a->second > b->second; });
  uint64_t omitted_samples = 0;
  for (size_t i = kMaxProfileStacks; i < order.size(); ++i) omitted_samples += order[i]->second;
  const size_t omitted = order.size() > kMaxProfileStacks ? order.size() - kMaxProfileStacks : 0;
  order.resize(std::min(order.size(), kMaxProfileStacks));
  json stacks = json::array();
  for (const auto* e : order) {
    stacks.push_back({{"shard", std::get<0>(e->first)},
                      {"root", std::get<1>(e->first)},
                      {"samples", e->second},
                      {"frames", std::get<2>(e->first)}});
  }
  return json{{"seconds", seconds},
              {"hz", hz},
              {"shards", shards},
              {"samples", c.samples},
              {"dropped", dropped},
              {"roots", c.roots},
              {"stacks", std::move(stacks)},
              {"stacks_omitted", omitted},
              {"samples_omitted", omitted_samples}};
}

}  // namespace

std::string profile_answer(const DaemonView& view, const std::vector<std::string>& words) {
  if (words.size() > 4) return admin_error("usage", kUsage);
  int seconds = kProfileSeconds, hz = kProfileHz;
  if (words.size() > 1 && !parse_in(words[1], 1, kMaxProfileSeconds, &seconds)) {
    return admin_error("usage", absl::StrCat("SECONDS must be 1..", kMaxProfileSeconds));
  }
  if (words.size() > 2 && !parse_in(words[2], 1, kMaxProfileHz, &hz)) {
    return admin_error("usage", absl::StrCat("HZ must be 1..", kMaxProfileHz));
  }
  std::vector<size_t> shards;
  if (words.size() > 3) {
    int shard = 0;
    if (!parse_in(words[3], 0, static_cast<int>(view.shard_count()) - 1, &shard)) {
      return admin_error("usage", absl::StrCat("no shard '", words[3].substr(0, 32), "' (0..",
                                               view.shard_count() - 1, ")"));
    }
    shards.push_back(static_cast<size_t>(shard));
  } else {
    for (size_t i = 0; i < view.shard_count(); ++i) shards.push_back(i);
  }
  std::vector<const reactor::Reactor*> reactors;
  for (size_t i : shards) reactors.push_back(&view.shard_reactor(i));

  absl::StatusOr<std::unique_ptr<reactor::Profiler>> profiler =
      reactor::Profiler::start(reactors, std::chrono::nanoseconds(1'000'000'000 / hz));
  if (absl::IsFailedPrecondition(profiler.status())) {
    const auto left =
        std::chrono::duration_cast<std::chrono::seconds>(g_profile_end - reactor::Clock::now());
    return admin_error("busy",
                       absl::StrCat("a profile is already running (it ends in ",
                                    std::max<int64_t>(1, left.count() + 1), " s); one at a time"));
  }
  if (!profiler.ok()) return admin_error("failed", std::string(profiler.status().message()));
  const reactor::Deadline end = reactor::deadline_after(std::chrono::seconds(seconds));
  g_profile_end = end;

  auto collected = std::make_shared<Collected>();
  auto take = [&] {
    (*profiler)->drain([&](size_t i, const reactor::ProfileSample& s) {
      StackKey key{shards[i], root_of(s), std::vector<void*>(s.pcs, s.pcs + std::max(0, s.depth))};
      collected->stacks[key] += s.weight;
      collected->roots[key.root] += s.weight;
      collected->samples += s.weight;
    });
  };
  while (reactor::Clock::now() < end) {
    const reactor::Deadline next = std::min(end, reactor::deadline_after(kProfileDrain));
    if (!reactor::sleep_until(next).ok()) {
      return admin_error("unavailable", "the profile was cancelled: the daemon is stopping");
    }
    take();
  }
  (*profiler)->stop();
  take();
  const uint64_t dropped = (*profiler)->dropped();
  profiler->reset();  // the next profile may start

  absl::StatusOr<std::string> answer = reactor::offload([collected, seconds, hz, shards, dropped] {
    return profile_json(*collected, seconds, hz, shards, dropped).dump();
  });
  if (!answer.ok()) return admin_error("unavailable", std::string(answer.status().message()));
  return *answer;
}

}  // namespace reactord
