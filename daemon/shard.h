// A shard: one thread running one reactor, accepting on its own listeners (SO_REUSEPORT, or a dup
// of a socket-activated fd) and running each connection in its own fiber. Shards share nothing
// but the read-only service table and a few atomics; everything else reaches a shard by posting
// to its reactor.
#pragma once

#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "admin/view.h"
#include "reactor/reactor.h"
#include "reactor/stats.h"
#include "reactor/watchdog.h"
#include "services/connection.h"

namespace reactord {

// Per shard, written by its loop thread, read from any thread.
struct ShardStats {
  reactor::RelaxedCounter accept_errors;
  reactor::RelaxedCounter emfile_events;  // accept failed for lack of fds or memory: backed off
};

class Shard {
 public:
  // How often a shard publishes its fiber snapshot.
  static constexpr reactor::Duration kSnapshotPeriod = std::chrono::milliseconds(500);

  explicit Shard(size_t index, const ShardView* view) : index_(index), view_(view) {}
  ~Shard();

  // Starts the thread and its reactor (pinned to `cpu` if set); returns once the reactor exists,
  // or why it could not be created. `stopped` counts down when the loop has ended; the reactor is
  // destroyed only once every shard has counted down (so cross-shard posts stay safe).
  // Main thread.
  // The watchdog, if any, watches the reactor for its whole life.
  absl::Status start(const reactor::Reactor::Options& options, std::optional<int> cpu,
                     std::latch* stopped, reactor::Watchdog* watchdog);

  // Accepts connections for `svc` on `fd` (owned from now on). Any thread.
  void listen(ServiceRuntime* svc, int fd);
  // Stops accepting and drains connections (see service.h): every connection the backend already
  // took is still served; each listener closes once its accept loop has them all. Any thread.
  void begin_drain();
  // Cancels every connection still open. Any thread.
  void cancel_connections();
  // Ends the loop once its fibers are done. Any thread.
  void stop();
  // Waits for the thread. Main thread.
  void join();

  size_t index() const { return index_; }
  reactor::Reactor* reactor() const { return reactor_; }
  // Open connections. Any thread.
  int64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  // Listeners not yet closed plus accepted connections not yet counted in connections(): a drain
  // waits for both to reach 0. Any thread.
  int64_t accepting() const { return accepting_.load(std::memory_order_relaxed); }
  const ShardStats& stats() const { return stats_; }
  // The latest published snapshot (null before the first). Any thread.
  std::shared_ptr<const FiberSnapshot> fiber_snapshot() const;
  // A snapshot taken now, as `what` asks: fiber stacks and connections only when asked. Loop
  // thread.
  std::shared_ptr<FiberSnapshot> snapshot_now(const SnapshotRequest& what) const;

 private:
  void post(absl::AnyInvocable<void()> fn);
  void accept_loop(ServiceRuntime* svc, int fd);
  void close_listener(int fd);  // if still open
  void serve(ServiceRuntime* svc, int fd, uint64_t seq);
  void publish_snapshot();

  const size_t index_;
  const ShardView* view_;
  std::thread thread_;
  reactor::Reactor* reactor_ = nullptr;
  std::shared_ptr<reactor::detail::Inbox> inbox_;
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> accepting_{0};
  ShardStats stats_;
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const FiberSnapshot> snapshot_;
  // Loop thread only:
  std::vector<int> listen_fds_;
  struct ConnEntry {
    const ServiceRuntime* svc;
    uint64_t fiber_id;
  };
  std::unordered_map<Connection*, ConnEntry> conns_;
  bool draining_ = false;
};

}  // namespace reactord
