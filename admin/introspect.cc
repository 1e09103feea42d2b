#include "admin/introspect.h"

#include <algorithm>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "admin/metrics.h"
#include "admin/protocol.h"
#include "nlohmann/json.hpp"
#include "reactor/fiber_stack.h"
#include "reactor/offload.h"
#include "reactor/reactor.h"
#include "reactor/reply.h"

namespace reactord {
namespace {

using nlohmann::json;
using SnapshotPtr = std::shared_ptr<const FiberSnapshot>;

std::string usage(std::string_view message) {
  return admin_error("usage", message);
}

std::string unanswered(size_t shard) {
  return absl::StrCat("shard ", shard, " did not answer within ",
                      std::chrono::duration_cast<std::chrono::milliseconds>(kSnapshotWait).count(),
                      " ms: a fiber holds its loop (see current_slice)");
}

// Frames walked beyond MAX_FRAMES: the runtime's parking frames, dropped when named.
constexpr size_t kParkingFrames = 8;

// A limit argument: 1..max.
bool parse_limit(const std::string& word, size_t max, size_t* out) {
  size_t n = 0;
  if (!absl::SimpleAtoi(word, &n) || n == 0 || n > max) return false;
  *out = n;
  return true;
}

}  // namespace

std::vector<SnapshotPtr> take_snapshots(const DaemonView& view, const std::vector<size_t>& shards,
                                        const SnapshotRequest& what, reactor::Deadline deadline) {
  using Reply = reactor::detail::Reply<SnapshotPtr>;
  std::shared_ptr<reactor::detail::Inbox> back = reactor::Reactor::current()->inbox();
  std::vector<std::shared_ptr<Reply>> replies;
  // Ask every shard first, then wait: a stalled shard costs one wait, not one per shard.
  for (size_t i : shards) {
    auto reply = std::make_shared<Reply>();
    reply->waiter = reactor::detail::current_fiber();
    auto job = reactor::detail::make_reply_job(
        reply, back, [&view, i, what] { return view.snapshot_now(i, what); });
    if (!view.shard_reactor(i).inbox()->post(std::move(job))) reply->waiter = nullptr;
    replies.push_back(std::move(reply));
  }
  std::vector<SnapshotPtr> out(shards.size());
  for (size_t k = 0; k < replies.size(); ++k) {
    if (replies[k]->waiter == nullptr) continue;  // never posted
    absl::StatusOr<SnapshotPtr> snap =
        reactor::detail::await_reply(*replies[k], deadline, "snapshot");
    if (snap.ok()) out[k] = *std::move(snap);
  }
  // A late answer must find no waiter: this fiber's record may hold another fiber by then.
  for (auto& r : replies) r->waiter = nullptr;
  return out;
}

std::string fibers_stacks_answer(const DaemonView& view, const std::vector<std::string>& words) {
  constexpr char kUsage[] = "fibers [SHARD] stacks [MAX_FIBERS [MAX_FRAMES]]";
  size_t w = 1;
  std::vector<size_t> shards;
  if (w < words.size() && words[w] != "stacks") {
    size_t n = 0;
    if (!absl::SimpleAtoi(words[w], &n) || n >= view.shard_count()) {
      return usage(absl::StrCat("no shard '", words[w].substr(0, 32), "' (0..",
                                view.shard_count() - 1, ")"));
    }
    shards.push_back(n);
    ++w;
  } else {
    for (size_t i = 0; i < view.shard_count(); ++i) shards.push_back(i);
  }
  if (w >= words.size() || words[w] != "stacks") return usage(kUsage);
  ++w;
  SnapshotRequest what;
  what.max_fibers = kStackFibers;
  what.max_frames = kStackFrames;
  if (w < words.size() && !parse_limit(words[w++], kMaxStackFibers, &what.max_fibers)) {
    return usage(absl::StrCat("MAX_FIBERS must be 1..", kMaxStackFibers));
  }
  if (w < words.size() && !parse_limit(words[w++], kMaxStackFrames, &what.max_frames)) {
    return usage(absl::StrCat("MAX_FRAMES must be 1..", kMaxStackFrames));
  }
  if (w < words.size()) return usage(kUsage);

  const size_t max_frames = what.max_frames;
  what.max_frames += kParkingFrames;
  std::vector<SnapshotPtr> fresh =
      take_snapshots(view, shards, what, reactor::deadline_after(kSnapshotWait));
  std::vector<ShardSnapshot> snaps;
  for (size_t k = 0; k < shards.size(); ++k) {
    if (fresh[k]) {
      snaps.push_back({shards[k], fresh[k], "", max_frames});
    } else {
      snaps.push_back({shards[k], view.fiber_snapshot(shards[k]), unanswered(shards[k])});
    }
  }
  // Naming the frames reads the binary's symbol tables: on the blocking pool, not this loop.
  absl::StatusOr<std::string> answer = reactor::offload([&view, snaps] {
    reactor::FrameSymbolizer symbolizer;
    return fibers_json(view, snaps, &symbolizer).dump();
  });
  if (!answer.ok()) return admin_error("unavailable", std::string(answer.status().message()));
  return *answer;
}

std::string conns_answer(const DaemonView& view, const std::vector<std::string>& words) {
  if (words.size() > 2) return usage("conns [SERVICE]");
  SnapshotRequest what;
  what.max_fibers = 0;
  what.connections = true;
  what.max_connections = kMaxConnections;
  if (words.size() == 2) {
    what.service = words[1];
    bool known = false;
    for (const ServiceStatus& s : view.services()) known = known || s.name == what.service;
    if (!known) return usage(absl::StrCat("no service '", what.service.substr(0, 64), "'"));
  }
  std::vector<size_t> shards;
  for (size_t i = 0; i < view.shard_count(); ++i) shards.push_back(i);
  std::vector<SnapshotPtr> snaps =
      take_snapshots(view, shards, what, reactor::deadline_after(kSnapshotWait));
  std::vector<const ConnectionInfo*> all;
  size_t omitted = 0;
  json unavailable = json::array();
  for (size_t k = 0; k < snaps.size(); ++k) {
    if (!snaps[k]) {
      unavailable.push_back({{"shard", shards[k]}, {"error", unanswered(shards[k])}});
      continue;
    }
    omitted += snaps[k]->connections_omitted;
    for (const ConnectionInfo& c : snaps[k]->connections) all.push_back(&c);
  }
  std::sort(all.begin(), all.end(), [](const ConnectionInfo* a, const ConnectionInfo* b) {
    return a->shard != b->shard ? a->shard < b->shard : a->fiber_id < b->fiber_id;
  });
  if (all.size() > kMaxConnections) {
    omitted += all.size() - kMaxConnections;
    all.resize(kMaxConnections);
  }
  json list = json::array();
  for (const ConnectionInfo* c : all) {
    list.push_back({{"service", c->service},
                    {"shard", c->shard},
                    {"peer", c->peer},
                    {"age_seconds", c->age_seconds},
                    {"bytes_in", c->bytes_in},
                    {"bytes_out", c->bytes_out},
                    {"requests", c->requests},
                    {"state", std::string(c->state)},
                    {"fiber_id", c->fiber_id}});
  }
  return json{{"connections", std::move(list)},
              {"omitted", omitted},
              {"unavailable_shards", std::move(unavailable)}}
      .dump();
}

}  // namespace reactord
