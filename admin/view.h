// What the admin server reads of a running daemon and asks of it. admin/ defines the view and
// daemon/ implements it, so no admin file knows the daemon's own types (shards, services, the
// logger). Set up before the admin thread starts; the number of shards and services does not
// change afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/reactor.h"
#include "reactor/time.h"

namespace reactord {

class StallLog;

// One connection as its shard sees it (the `conns` command).
struct ConnectionInfo {
  std::string service;
  size_t shard = 0;
  std::string peer;  // "127.0.0.1:50412", or "" if the socket no longer has one
  double age_seconds = 0;
  uint64_t bytes_in = 0, bytes_out = 0, requests = 0;
  std::string_view state;  // "reading", "writing", "idle", "draining", "running"
  uint64_t fiber_id = 0;
};

// What a snapshot taken on demand holds besides the fiber list; the defaults take what the
// periodic snapshot takes, so a snapshot costs more only when someone asks for more.
struct SnapshotRequest {
  size_t max_fibers = SIZE_MAX;
  size_t max_frames = 0;  // per fiber; 0: no stacks
  bool connections = false;
  std::string service;  // connections of this service only; "" for all
  size_t max_connections = SIZE_MAX;
};

// What a shard publishes about its fibers for other threads (the `fibers` command), or takes on
// demand (`fibers … stacks`, `conns`).
struct FiberSnapshot {
  reactor::Deadline taken{};
  std::vector<reactor::Reactor::FiberInfo> fibers;  // newest first
  size_t fibers_alive = 0;  // fibers.size() plus those past SnapshotRequest::max_fibers
  bool stacks = false;      // fibers carry their frames
  std::vector<std::pair<std::string, uint64_t>> slow_slices_by_name;
  std::vector<ConnectionInfo> connections;
  size_t connections_omitted = 0;  // of the service asked, past max_connections
};

// A shard's own counters, read at one moment.
struct ShardCounters {
  int64_t connections = 0;
  uint64_t accept_errors = 0;
  uint64_t emfile_events = 0;  // accept failed for lack of fds or memory: backed off
};

// One service's counters on one shard, read at one moment.
struct ServiceCounters {
  uint64_t accepted = 0, closed = 0, rejected = 0, active = 0, bytes_in = 0, bytes_out = 0,
           requests = 0;
};

// One configured service: what it is and its counters by shard.
struct ServiceStatus {
  std::string name;
  std::string kind;
  std::string address;  // as bound, e.g. "127.0.0.1:41234"
  uint64_t max_connections = 0;
  std::vector<ServiceCounters> by_shard;
};

class DaemonView {
 public:
  virtual ~DaemonView() = default;

  // Any thread.
  virtual std::string version() const = 0;
  virtual std::string requested_backend() const = 0;  // what runtime.backend asked for: "auto", …
  virtual reactor::Deadline started() const = 0;
  virtual double start_time_seconds() const = 0;  // since the epoch
  virtual size_t shard_count() const = 0;
  // Shard `i`'s reactor: read its stats, current slice and backend's name and counters only.
  virtual const reactor::Reactor& shard_reactor(size_t i) const = 0;
  virtual ShardCounters shard_counters(size_t i) const = 0;
  // The latest snapshot shard `i` published (null before the first).
  virtual std::shared_ptr<const FiberSnapshot> fiber_snapshot(size_t i) const = 0;
  // A snapshot of shard `i` taken now, as `what` asks. Shard i's loop thread only: the admin
  // server posts the call there (shard_reactor(i).inbox()) and waits for it with a deadline.
  virtual std::shared_ptr<const FiberSnapshot> snapshot_now(size_t i,
                                                            const SnapshotRequest& what) const = 0;
  virtual std::vector<ServiceStatus> services() const = 0;
  virtual std::string log_level() const = 0;
  virtual uint64_t log_lines_dropped() const = 0;
  virtual const StallLog* stalls() const = 0;  // null when the watchdog is off

  // Control loop, inside a fiber (the admin fiber waits for the answer); only reload suspends.
  virtual std::string config_text() = 0;
  virtual absl::Status set(const std::string& key, const std::string& value) = 0;
  virtual absl::Status reload() = 0;
  // Starts `binary` (empty: the daemon's own) as a new daemon holding the listening sockets; once
  // it reports ready, this process stops accepting, drains and exits. Returns what the answer
  // says (the new pid), or why the new process failed (this one then keeps serving).
  virtual absl::StatusOr<std::string> upgrade(const std::string& binary) = 0;

  // The backend in use: shard 0's (what "auto" picked), or the one requested before shards
  // exist. Any thread.
  std::string active_backend() const;
};

}  // namespace reactord
