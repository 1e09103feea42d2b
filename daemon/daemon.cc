#include "daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <latch>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "admin/metrics.h"
#include "admin/server.h"
#include "admin/stall_log.h"
#include "backends/registry.h"
#include "daemon/listen_fds.h"
#include "daemon/log.h"
#include "daemon/shard.h"
#include "daemon/socket_path.h"
#include "daemon/upgrade.h"
#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/offload.h"
#include "reactor/reactor.h"
#include "reactor/stack.h"
#include "reactor/sync.h"
#include "reactor/watchdog.h"
#include "services/handlers.h"

namespace reactord {

using namespace std::chrono_literals;

namespace {

// A start-up failure: the exit code and the one line that says why.
struct Failure {
  int code;
  std::string why;
};

void raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      spdlog::info("raised the open-file limit from {} to {}", before, rl.rlim_max);
    }
  }
}

reactor::IdleMode to_reactor(IdleMode m) {
  switch (m) {
    case IdleMode::kBlock:
      return reactor::IdleMode::kBlock;
    case IdleMode::kSpin:
      return reactor::IdleMode::kSpin;
    case IdleMode::kAdaptive:
      return reactor::IdleMode::kAdaptive;
  }
  return reactor::IdleMode::kBlock;
}

// Fibers needed at most: one per connection of every service, plus a few per shard.
void check_map_count(const Config& cfg, size_t shards) {
  uint64_t fibers = 16 * shards;
  for (const ServiceConfig& s : cfg.services) fibers += s.max_connections;
  uint64_t max_maps = 0;
  std::ifstream in("/proc/sys/vm/max_map_count");
  if (!(in >> max_maps)) return;
  const uint64_t guarded = reactor::guarded_stack_budget();
  if (fibers > guarded) {
    spdlog::warn(
        "vm.max_map_count is {}: about {} fiber stacks can have a guard page, but the services "
        "allow {} connections; the rest get a canary (overflows caught later, not at once). "
        "Fix: sysctl -w vm.max_map_count={} (or install systemd/reactord-sysctl.conf)",
        max_maps, guarded, fibers, std::max<uint64_t>(262144, fibers * 2 + 65536));
  }
}

// A close-on-exec copy of fd, numbered 3 or above (0..2 stay stdio).
absl::StatusOr<int> dup_cloexec(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return reactor::errno_status(errno, "fcntl(F_DUPFD_CLOEXEC)", fd);
  return copy;
}

// Appends fd for the first shard and a copy of it for each other shard.
absl::Status add_shard_copies(int fd, size_t shards, std::vector<int>& fds) {
  fds.push_back(fd);
  for (size_t s = 1; s < shards; ++s) {
    absl::StatusOr<int> copy = dup_cloexec(fd);
    if (!copy.ok()) return copy.status();
    fds.push_back(*copy);
  }
  return absl::OkStatus();
}

absl::Status set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return reactor::errno_status(errno, "fcntl(F_GETFL)", fd);
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return reactor::errno_status(errno, "fcntl(F_SETFL, O_NONBLOCK)", fd);
  }
  return absl::OkStatus();
}

// The address an activated socket is bound to.
absl::StatusOr<reactor::SocketAddress> local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return reactor::errno_status(errno, "getsockname", fd);
  }
  return reactor::SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

size_t online_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<size_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

// The daemon's state; it is also what the admin server reads (admin/view.h).
struct Daemon::State final : DaemonView {
  Config cfg;
  std::string config_path;
  std::vector<Override> overrides;
  Notifier notifier;
  std::string backend_name;
  size_t num_shards = 1;
  std::vector<ShardView> views;
  std::vector<std::unique_ptr<ServiceRuntime>> runtimes;  // by service
  std::vector<std::unique_ptr<Shard>> shards;
  std::unique_ptr<std::latch> stopped;
  std::unique_ptr<ServiceShared> shared;
  std::unique_ptr<AdminServer> admin;
  StallLog stall_log;
  // Read by on_stall on the watchdog thread while the control loop may reload cfg.
  std::atomic<uint32_t> reports_per_minute{0};
  std::atomic<uint32_t> abort_after_ms{0};
  // Watchdog stall id -> StallLog id, for updating a report as the stall goes on.
  std::mutex stall_ids_mu;
  std::map<uint64_t, uint64_t> stall_ids;
  std::unique_ptr<reactor::Watchdog> watchdog;
  reactor::Deadline started_at = reactor::Clock::now();
  double start_time = 0;  // since the epoch
  // Per service, the listening fds the shards accept from: fd k on shard k % num_shards.
  std::vector<std::vector<int>> listen_fds;  // [service][k]
  std::vector<bool> bound_here;              // [service]: bound by this process, not passed
  // Passed sockets are checked against the configured addresses when they may come from an
  // earlier run (the fd store, an upgrade) rather than from a socket unit, which decides alone.
  bool check_passed = false;
  reactor::Event* shutdown = nullptr;  // control loop; set while control() runs
  bool upgrading = false;              // control loop
  bool handed_over = false;            // control loop: an upgrade's new process serves

  std::optional<Failure> bind_all(std::map<std::string, std::vector<int>>& activated);
  void forget_stored(const std::string& name) const;
  void store_listeners(bool admin_bound_here);
  std::optional<Failure> start_shards();
  std::string status_line() const;
  void apply_reloadable();
  absl::Status reload() override;
  reactor::WatchdogOptions watchdog_options() const;
  void on_stall(const reactor::StallReport& r);
  bool shards_healthy(reactor::Duration period) const;

  // DaemonView.
  std::string version() const override { return REACTORD_VERSION; }
  std::string requested_backend() const override { return backend_name; }
  reactor::Deadline started() const override { return started_at; }
  double start_time_seconds() const override { return start_time; }
  size_t shard_count() const override { return shards.size(); }
  const reactor::Reactor& shard_reactor(size_t i) const override { return *shards[i]->reactor(); }
  ShardCounters shard_counters(size_t i) const override;
  std::shared_ptr<const FiberSnapshot> fiber_snapshot(size_t i) const override {
    return shards[i]->fiber_snapshot();
  }
  std::shared_ptr<const FiberSnapshot> snapshot_now(size_t i,
                                                    const SnapshotRequest& what) const override {
    return shards[i]->snapshot_now(what);
  }
  std::vector<ServiceStatus> services() const override;
  std::string log_level() const override { return std::string(log::level_name()); }
  uint64_t log_lines_dropped() const override { return log::dropped(); }
  const StallLog* stalls() const override { return &stall_log; }
  std::string config_text() override { return format_config(cfg); }
  absl::Status set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> upgrade(const std::string& binary) override;
  std::optional<Failure> start_admin(std::map<std::string, std::vector<int>>& activated);
  void drain();
  int control();
};

Daemon::Daemon(Config config, std::string config_path, std::vector<Override> overrides)
    : s_(std::make_unique<State>()) {
  s_->cfg = std::move(config);
  s_->config_path = std::move(config_path);
  s_->overrides = std::move(overrides);
}

Daemon::~Daemon() = default;

std::optional<Failure> Daemon::State::bind_all(std::map<std::string, std::vector<int>>& activated) {
  listen_fds.assign(cfg.services.size(), {});
  bound_here.assign(cfg.services.size(), true);
  for (size_t i = 0; i < cfg.services.size(); ++i) {
    const ServiceConfig& sc = cfg.services[i];
    ServiceRuntime& svc = *runtimes[i];
    std::vector<int>& fds = listen_fds[i];
    auto os_failure = [&sc](const absl::Status& s) {
      return Failure{kExitOsError, absl::StrCat("service ", sc.name, ": ", s.message())};
    };
    auto it = activated.find(sc.name);
    if (it != activated.end() && check_passed &&
        !std::all_of(it->second.begin(), it->second.end(),
                     [&sc](int fd) { return listens_on(fd, sc.listen); })) {
      spdlog::warn(
          "service {}: the passed socket is not bound to {} (the configuration changed); "
          "binding anew",
          sc.name, sc.listen.to_string());
      for (int fd : it->second) ::close(fd);
      forget_stored(sc.name);
      activated.erase(it);
      it = activated.end();
    }
    if (it != activated.end()) {
      // Every passed socket is accepted from, so no connection waits in a queue nobody reads (the
      // fd store passes back one SO_REUSEPORT socket per shard of the earlier run): socket k goes
      // to shard k % num_shards, and a shard without one accepts from a dup.
      const std::vector<int>& passed = it->second;
      for (size_t k = 0; k < std::max(passed.size(), num_shards); ++k) {
        if (k < passed.size()) {
          if (absl::Status s = set_nonblocking(passed[k]); !s.ok()) return os_failure(s);
          fds.push_back(passed[k]);
          continue;
        }
        absl::StatusOr<int> copy = dup_cloexec(passed[k % passed.size()]);
        if (!copy.ok()) return os_failure(copy.status());
        fds.push_back(*copy);
      }
      absl::StatusOr<reactor::SocketAddress> bound = local_address(passed.front());
      if (!bound.ok()) return os_failure(bound.status());
      svc.bound_address = bound->to_string() + " (activated)";
      bound_here[i] = false;
      activated.erase(it);
      continue;
    }
    if (sc.listen.family == ListenAddress::Family::kUnix) {
      absl::Status clear = clear_stale_unix_socket(sc.listen.path);
      if (!clear.ok()) return os_failure(clear);
      auto addr = reactor::SocketAddress::unix_path(sc.listen.path);
      if (!addr.ok()) return Failure{kExitConfig, std::string(addr.status().message())};
      auto l = reactor::UnixListener::bind(*addr);
      if (!l.ok()) return os_failure(l.status());
      absl::StatusOr<int> fd = dup_cloexec(l->fd());
      if (!fd.ok()) return os_failure(fd.status());
      if (absl::Status s = add_shard_copies(*fd, num_shards, fds); !s.ok()) return os_failure(s);
      svc.bound_address = addr->to_string();
      continue;
    }
    // TCP: one SO_REUSEPORT listener per shard on the same port; with port 0 the first bind picks
    // the port and the others reuse it.
    auto addr = reactor::SocketAddress::parse_ip(sc.listen.to_string());
    if (!addr.ok()) return Failure{kExitConfig, std::string(addr.status().message())};
    for (size_t s = 0; s < num_shards; ++s) {
      auto l = reactor::TcpListener::bind(*addr, {.backlog = 4096, .reuse_port = true});
      if (!l.ok()) return os_failure(l.status());
      if (s == 0) {
        auto bound = l->local_address();
        if (!bound.ok()) return Failure{kExitOsError, std::string(bound.status().message())};
        *addr = *bound;
        svc.bound_address = bound->to_string();
      }
      absl::StatusOr<int> fd = dup_cloexec(l->fd());
      if (!fd.ok()) return os_failure(fd.status());
      fds.push_back(*fd);
    }
  }
  return std::nullopt;
}

void Daemon::State::forget_stored(const std::string& name) const {
  if (notifier.fd_store()) (void)notifier.notify("FDSTOREREMOVE=1\nFDNAME=" + name);
}

// Hands what this process bound to systemd's fd store, so a restart finds the sockets open (and
// their queued connections waiting); what was passed in is held by systemd already.
void Daemon::State::store_listeners(bool admin_bound_here) {
  if (!notifier.fd_store()) return;
  for (size_t i = 0; i < runtimes.size(); ++i) {
    if (!bound_here[i]) continue;
    const std::string& name = runtimes[i]->name;
    absl::Status s = notifier.notify("FDSTORE=1\nFDNAME=" + name, unique_sockets(listen_fds[i]));
    if (!s.ok()) spdlog::warn("fd store: service {}: {}", name, s.message());
  }
  if (admin_bound_here && admin) {
    absl::Status s = notifier.notify("FDSTORE=1\nFDNAME=admin", {admin->listen_fd()});
    if (!s.ok()) spdlog::warn("fd store: admin socket: {}", s.message());
    admin->keep_socket_file();  // the stored socket is useless without its path
  }
}

std::optional<Failure> Daemon::State::start_shards() {
  reactor::Reactor::Options options;
  options.backend = backend_name;
  options.stack_size = size_t{cfg.runtime.stack_size_kib} * 1024;
  options.idle = to_reactor(cfg.runtime.idle);
  options.spin = std::chrono::microseconds(cfg.runtime.spin_us);
  options.release_idle_stacks = std::chrono::milliseconds(cfg.runtime.release_idle_stacks_ms);
  // SQPOLL for the shards only: the control and admin loops' rings stay without an SQ thread.
  options.backend_params.uring_sqpoll = cfg.runtime.io_uring_sqpoll;
  options.backend_params.uring_sqpoll_cpu = cfg.runtime.io_uring_sqpoll_cpu;
  options.backend_params.uring_sqpoll_idle_ms = cfg.runtime.io_uring_sqpoll_idle_ms;
  options.backend_params.uring_min_wait_us = cfg.runtime.io_uring_min_wait_us;
  // The shards and the admin thread count down; reactors are destroyed only when all have, so
  // neither a cross-shard post nor an admin read ever meets a destroyed reactor.
  stopped = std::make_unique<std::latch>(static_cast<std::ptrdiff_t>(num_shards + 1));
  views.resize(num_shards);
  for (size_t i = 0; i < num_shards; ++i) {
    views[i].index = i;
    views[i].count = num_shards;
    shards.push_back(std::make_unique<Shard>(i, &views[i]));
  }
  const size_t cpus = online_cpus();
  for (size_t i = 0; i < num_shards; ++i) {
    std::optional<int> cpu;
    if (cfg.runtime.pin_cpus) cpu = static_cast<int>(i % cpus);
    absl::Status s = shards[i]->start(options, cpu, stopped.get(), watchdog.get());
    if (!s.ok()) {
      for (size_t j = i + 1; j < num_shards + 1; ++j) stopped->count_down();
      for (size_t j = 0; j < i; ++j) shards[j]->stop();
      for (auto& sh : shards) sh->join();
      return Failure{kExitUnavailable, absl::StrCat("shard ", i, ": ", s.message())};
    }
  }
  std::vector<reactor::Reactor*> reactors;
  for (auto& sh : shards) reactors.push_back(sh->reactor());
  for (ShardView& v : views) v.reactors = reactors;
  return std::nullopt;
}

std::string Daemon::State::status_line() const {
  int64_t conns = 0;
  for (const auto& sh : shards) conns += sh->connections();
  std::vector<std::string> addrs;
  for (const auto& svc : runtimes)
    addrs.push_back(absl::StrCat(svc->name, " ", svc->bound_address));
  return absl::StrCat("backend ", active_backend(), ", ", num_shards, " shard",
                      num_shards == 1 ? "" : "s", "; ", absl::StrJoin(addrs, ", "), "; ", conns,
                      " connection", conns == 1 ? "" : "s");
}

reactor::WatchdogOptions Daemon::State::watchdog_options() const {
  reactor::WatchdogOptions o;
  o.enabled = cfg.watchdog.enabled;
  o.threshold = std::chrono::milliseconds(cfg.watchdog.threshold_ms);
  o.reports_per_minute = static_cast<int>(reports_per_minute.load());
  o.abort_after = std::chrono::milliseconds(abort_after_ms.load());
  o.backtrace = cfg.watchdog.backtrace == BacktraceMode::kAlways ? reactor::BacktraceWhen::kAlways
                : cfg.watchdog.backtrace == BacktraceMode::kCpuOnly
                    ? reactor::BacktraceWhen::kCpuOnly
                    : reactor::BacktraceWhen::kNever;
  return o;
}

// Runs on the watchdog thread (or a shard thread ending during a stall): logs and records.
void Daemon::State::on_stall(const reactor::StallReport& r) {
  using Phase = reactor::StallReport::Phase;
  const auto ms = [](reactor::Duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::string service;
  const std::string base = r.fiber_name.substr(0, r.fiber_name.find('#'));
  for (const auto& svc : runtimes) {
    if (svc->name == base) service = absl::StrCat(" (service ", svc->name, ")");
  }
  const std::string where =
      r.syscall.empty() || r.syscall == "running" ? "" : absl::StrCat(" in ", r.syscall);
  const std::string what =
      r.kind == "cpu" ? absl::StrCat("cpu, ", ms(r.cpu), " ms on-CPU")
                      : absl::StrCat("blocking, ", ms(r.wall - r.cpu), " ms off-CPU", where);
  if (r.suppressed > 0) {
    spdlog::warn("watchdog: {} stall report{} suppressed (watchdog.reports_per_minute = {})",
                 r.suppressed, r.suppressed == 1 ? "" : "s", reports_per_minute.load());
  }
  nlohmann::json j = {
      {"shard", r.shard},
      {"fiber", r.fiber_name},
      {"fiber_id", r.fiber_id},
      {"kind", r.kind},
      {"wall_seconds", std::chrono::duration<double>(r.wall).count()},
      {"cpu_seconds", std::chrono::duration<double>(r.cpu).count()},
      {"thread_state", std::string(1, r.thread_state)},
      {"syscall", r.syscall},
      {"frames", r.frames},
      {"ended", r.phase == Phase::kEnded},
      {"time_seconds",
       std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()}};
  std::map<uint64_t, uint64_t>& ids = stall_ids;
  std::lock_guard<std::mutex> lock(stall_ids_mu);
  switch (r.phase) {
    case Phase::kStarted:
      spdlog::warn("shard {} stalled {} ms in fiber '{}'{}: {}", r.shard, ms(r.wall), r.fiber_name,
                   service, what);
      ids[r.stall_id] = stall_log.begin(r.shard, r.kind, std::move(j));
      break;
    case Phase::kFrames: {
      std::string frames;
      for (size_t i = 0; i < r.frames.size(); ++i)
        absl::StrAppend(&frames, "\n  #", i, " ", r.frames[i]);
      spdlog::warn(
          "shard {} stall in fiber '{}': stack{}\n  hint: move blocking calls into "
          "reactor::offload()",
          r.shard, r.fiber_name, frames);
      if (auto it = ids.find(r.stall_id); it != ids.end())
        stall_log.update(it->second, std::move(j));
      break;
    }
    case Phase::kOngoing:
      spdlog::warn("shard {} still stalled {} ms in fiber '{}'{}: {}", r.shard, ms(r.wall),
                   r.fiber_name, service, what);
      if (auto it = ids.find(r.stall_id); it != ids.end())
        stall_log.update(it->second, std::move(j));
      break;
    case Phase::kEnded:
      spdlog::warn("shard {} stall in fiber '{}' ended after {} ms", r.shard, r.fiber_name,
                   ms(r.wall));
      stall_log.record_duration(
          std::chrono::duration_cast<std::chrono::nanoseconds>(r.wall).count());
      if (auto it = ids.find(r.stall_id); it != ids.end()) {
        stall_log.update(it->second, std::move(j));
        ids.erase(it);
      }
      break;
    case Phase::kAborting:
      spdlog::critical(
          "shard {} stalled {} ms in fiber '{}'{}: {}; aborting (watchdog.abort_after_ms = {})",
          r.shard, ms(r.wall), r.fiber_name, service, what, abort_after_ms.load());
      spdlog::default_logger_raw()->flush();
      break;
  }
}

bool Daemon::State::shards_healthy(reactor::Duration period) const {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(reactor::Clock::now().time_since_epoch())
          .count();
  const int64_t limit = std::chrono::duration_cast<std::chrono::nanoseconds>(period).count();
  for (const auto& sh : shards) {
    const reactor::Reactor::CurrentSlice c = sh->reactor()->current_slice();
    if (c.in_slice && now - c.start_ns > limit) return false;
  }
  return true;
}

void Daemon::State::apply_reloadable() {
  (void)log::set_level(to_string(cfg.log.level));
  reports_per_minute = cfg.watchdog.reports_per_minute;
  abort_after_ms = cfg.watchdog.abort_after_ms;
  if (watchdog) watchdog->set_options(watchdog_options());
  for (auto& sh : shards) {
    if (sh->reactor())
      sh->reactor()->set_slow_slice_threshold(
          std::chrono::milliseconds(cfg.watchdog.slow_slice_ms));
  }
  if (admin) admin->set_access(cfg.admin.allow_uids, cfg.admin.allow_gids);
  for (size_t i = 0; i < cfg.services.size() && i < runtimes.size(); ++i) {
    runtimes[i]->max_connections.store(cfg.services[i].max_connections);
  }
  if (shared) apply_service_settings(cfg.services, *shared);
}

absl::Status Daemon::State::reload() {
  (void)notifier.notify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", monotonic_usec()));
  spdlog::info("reload: reading {}", config_path);
  absl::StatusOr<Config> loaded =
      reactor::offload([this] { return load_config_file(config_path); }).value();
  if (loaded.ok()) {
    for (const Override& o : overrides) {
      absl::Status s = apply_override(*loaded, o.first, o.second);
      if (!s.ok()) loaded = s;
    }
  }
  absl::Status result = loaded.status();
  if (!loaded.ok()) {
    spdlog::error("reload: {}; keeping the running configuration", loaded.status().message());
  } else {
    for (const std::string& key : restart_needed(cfg, *loaded)) {
      spdlog::warn("reload: {} changed; it takes effect after a restart", key);
    }
    cfg = merge_reloadable(cfg, *loaded);
    apply_reloadable();
    spdlog::info("reload: done (log level {})", log::level_name());
  }
  (void)notifier.notify(absl::StrCat("READY=1\nSTATUS=", status_line()));
  return result;
}

ShardCounters Daemon::State::shard_counters(size_t i) const {
  const Shard& sh = *shards[i];
  return {.connections = sh.connections(),
          .accept_errors = sh.stats().accept_errors.get(),
          .emfile_events = sh.stats().emfile_events.get()};
}

std::vector<ServiceStatus> Daemon::State::services() const {
  std::vector<ServiceStatus> out;
  for (const auto& svc : runtimes) {
    ServiceStatus st{.name = svc->name,
                     .kind = svc->kind,
                     .address = svc->bound_address,
                     .max_connections = svc->max_connections.load(std::memory_order_relaxed),
                     .by_shard = {}};
    for (const auto& s : svc->stats) {
      st.by_shard.push_back({.accepted = s->connections_accepted.get(),
                             .closed = s->connections_closed.get(),
                             .rejected = s->connections_rejected.get(),
                             .active = s->connections_active.get(),
                             .bytes_in = s->bytes_in.get(),
                             .bytes_out = s->bytes_out.get(),
                             .requests = s->requests.get()});
    }
    out.push_back(std::move(st));
  }
  return out;
}

absl::Status Daemon::State::set(const std::string& key, const std::string& value) {
  absl::Status s = apply_setting(cfg, key, value);
  if (s.ok()) {
    apply_reloadable();
    spdlog::info("admin: set {} {}", key, value);
  }
  return s;
}

absl::StatusOr<std::string> Daemon::State::upgrade(const std::string& binary) {
  if (shutdown == nullptr || shutdown->is_set()) {
    return absl::FailedPreconditionError("the daemon is stopping");
  }
  if (upgrading) return absl::FailedPreconditionError("an upgrade is already under way");
  std::vector<upgrade::PassedFd> fds;
  for (size_t i = 0; i < runtimes.size(); ++i) {
    for (int fd : unique_sockets(listen_fds[i])) fds.push_back({runtimes[i]->name, fd});
  }
  if (admin && admin->listen_fd() >= 0) fds.push_back({"admin", admin->listen_fd()});
  upgrading = true;
  spdlog::info("upgrade: starting {} with {} listening socket{}",
               binary.empty() ? "this binary" : binary, fds.size(), fds.size() == 1 ? "" : "s");
  absl::StatusOr<absl::StatusOr<upgrade::Started>> started =
      reactor::offload([binary, fds] { return upgrade::start_new_process(binary, fds, 10s); });
  upgrading = false;
  if (!started.ok()) return started.status();
  if (!started->ok()) {
    spdlog::error("upgrade: {}; still serving", started->status().message());
    return started->status();
  }
  const pid_t pid = (*started)->pid;
  spdlog::info("upgrade: pid {} ({}) serves; this process stops accepting and drains", pid,
               (*started)->binary);
  // Under systemd the new process becomes the main one (NotifyAccess=all lets it, and this one,
  // speak); from now on this process tells systemd nothing.
  (void)notifier.notify(absl::StrCat("MAINPID=", pid, "\nSTATUS=upgraded: pid ", pid, " serves"));
  notifier.detach();
  handed_over = true;
  if (admin) admin->hand_over();
  shutdown->set();
  return absl::StrCat("ok: pid ", pid, " (", (*started)->binary, ") serves; pid ", ::getpid(),
                      " drains and exits");
}

std::optional<Failure> Daemon::State::start_admin(
    std::map<std::string, std::vector<int>>& activated) {
  admin = std::make_unique<AdminServer>(*this, reactor::Reactor::current());
  std::optional<int> fd;
  if (auto it = activated.find("admin"); it != activated.end()) {
    fd = it->second.front();
    activated.erase(it);
  }
  if (!fd) {
    if (absl::Status s = clear_stale_unix_socket(cfg.admin.socket); !s.ok()) {
      return Failure{kExitOsError, absl::StrCat("admin socket: ", s.message())};
    }
  }
  if (absl::Status s = admin->bind(cfg.admin, fd); !s.ok()) {
    return Failure{kExitOsError, std::string(s.message())};
  }
  if (absl::Status s = admin->start(backend_name); !s.ok()) {
    return Failure{kExitOsError, absl::StrCat("admin thread: ", s.message())};
  }
  spdlog::info("admin socket {}", fd ? "(activated)" : cfg.admin.socket);
  return std::nullopt;
}

void Daemon::State::drain() {
  (void)notifier.notify("STOPPING=1\nSTATUS=draining");  // nothing once handed over
  const auto timeout = std::chrono::milliseconds(cfg.shutdown.drain_timeout_ms);
  spdlog::info("draining: no new connections; waiting up to {} ms for open ones", timeout.count());
  for (auto& sh : shards) sh->begin_drain();
  auto open = [this] {
    int64_t n = 0;
    for (const auto& sh : shards) n += sh->connections();
    return n;
  };
  // Also until every listener is closed: a shard's accept loops first take and serve what the
  // backend already accepted (accepting() counts those not yet in connections()).
  auto busy = [&] {
    int64_t n = open();
    for (const auto& sh : shards) n += sh->accepting();
    return n;
  };
  const reactor::Deadline deadline = reactor::deadline_after(timeout);
  while (busy() > 0 && reactor::Clock::now() < deadline) (void)reactor::sleep_for(10ms);
  if (const int64_t left = open(); left > 0) {
    spdlog::warn("drain timeout: closing {} connection{}", left, left == 1 ? "" : "s");
    for (auto& sh : shards) sh->cancel_connections();
    const reactor::Deadline hard = reactor::deadline_after(2s);
    while (open() > 0 && reactor::Clock::now() < hard) (void)reactor::sleep_for(10ms);
  }
  for (auto& sh : shards) sh->stop();
  if (handed_over && admin) {
    // The upgrade's answer may still be on its way to reactorctl.
    const reactor::Deadline until = reactor::deadline_after(2s);
    while (admin->clients() > 0 && reactor::Clock::now() < until) (void)reactor::sleep_for(10ms);
  }
  if (admin) admin->stop();
  stopped->count_down();  // the admin thread's share: it no longer reads the shards
  spdlog::info("drained; stopping");
}

int Daemon::State::control() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  const int sfd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) {
    std::fprintf(stderr, "reactord: signalfd: %s\n", std::strerror(errno));
    return kExitOsError;
  }
  reactor::FileDescriptor signals(sfd);
  reactor::Event shutdown;
  this->shutdown = &shutdown;
  auto signal_fiber = reactor::spawn("signals", [&] {
    for (;;) {
      signalfd_siginfo si;
      const ssize_t n = ::read(sfd, &si, sizeof si);
      if (n != static_cast<ssize_t>(sizeof si)) {
        if (n < 0 && errno != EAGAIN && errno != EINTR) return;
        if (!reactor::Reactor::current()
                 ->backend()
                 .wait(sfd, reactor::Interest::kRead, reactor::kNoDeadline)
                 .ok())
          return;
        continue;
      }
      if (si.ssi_signo == SIGHUP) {
        (void)reload();
      } else if (!shutdown.is_set()) {
        spdlog::info("received {}", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        shutdown.set();
      }
    }
  });
  auto status_fiber = reactor::spawn("status", [&] {
    std::string last;
    while (reactor::sleep_for(2s).ok()) {
      std::string line = status_line();
      if (line != last) (void)notifier.notify("STATUS=" + line);
      last = std::move(line);
    }
  });
  if (auto interval = notifier.watchdog_interval()) {
    // WATCHDOG=1 at half the period, only while every shard is healthy: none has been inside
    // one slice (rather than waiting in poll) longer than the period.
    (void)reactor::spawn("sd-watchdog", [&, period = *interval] {
      do {
        if (shards_healthy(period)) (void)notifier.notify("WATCHDOG=1");
      } while (reactor::sleep_for(period / 2).ok());
    });
  }
  if (!signal_fiber.ok() || !status_fiber.ok()) return kExitOsError;
  for (const auto& svc : runtimes)
    spdlog::info("service {} ({}) listening on {}", svc->name, svc->kind, svc->bound_address);
  spdlog::info("ready: {}", status_line());
  (void)notifier.notify(absl::StrCat("READY=1\nSTATUS=", status_line()));
  upgrade::report_ready();
  (void)shutdown.wait();
  // An upgrade under way still reads the listening fds: they close only after it has decided.
  while (upgrading) (void)reactor::sleep_for(10ms);
  drain();
  this->shutdown = nullptr;
  return kExitOk;
}

int Daemon::run() {
  State& s = *s_;
  raise_fd_limit();
  s.start_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  reactor::set_offload_threads(s.cfg.runtime.offload_threads);
  s.num_shards = s.cfg.runtime.shards == 0 ? online_cpus() : s.cfg.runtime.shards;
  check_map_count(s.cfg, s.num_shards);
  s.backend_name = std::string(to_string(s.cfg.runtime.backend));
  // The io_uring keys set away from their defaults with a backend that cannot use them.
  const bool min_wait_set =
      s.cfg.runtime.io_uring_min_wait_us != RuntimeConfig::kDefaultIoUringMinWaitUs;
  const bool uring_keys = s.cfg.runtime.io_uring_sqpoll || min_wait_set;
  if (uring_keys && s.cfg.runtime.backend != IoBackend::kAuto &&
      s.cfg.runtime.backend != IoBackend::kIoUring) {
    const std::string why = absl::StrCat(
        s.cfg.runtime.io_uring_sqpoll
            ? std::string("runtime.io_uring_sqpoll = true")
            : absl::StrCat("runtime.io_uring_min_wait_us = ", s.cfg.runtime.io_uring_min_wait_us),
        " needs backend \"io_uring\" or \"auto\", not \"", s.backend_name, "\"");
    std::fprintf(stderr, "reactord: %s\n", why.c_str());
    upgrade::report_failure(why);
    return kExitConfig;
  }

  // The control loop's reactor doubles as the backend probe: an unavailable backend fails here.
  reactor::Reactor::Options control_options;
  control_options.backend = s.backend_name;
  std::optional<Failure> failure;
  int code = kExitOk;
  absl::Status ran = reactor::Reactor::run(
      [&] {
        std::map<std::string, std::vector<int>> activated = take_listen_fds();
        s.check_passed = s.notifier.fd_store() || upgrade::is_new_process();
        s.shared = std::make_unique<ServiceShared>();
        s.shared->metrics_text = [&s] { return prometheus_text(s); };
        for (const ServiceConfig& sc : s.cfg.services) {
          auto svc = std::make_unique<ServiceRuntime>();
          svc->name = sc.name;
          svc->kind = std::string(to_string(sc.kind));
          svc->max_connections = sc.max_connections;
          for (size_t i = 0; i < s.num_shards; ++i)
            svc->stats.push_back(std::make_unique<ServiceStats>());
          svc->handler = make_handler(sc, *s.shared, s.num_shards);
          s.runtimes.push_back(std::move(svc));
        }
        if ((failure = s.bind_all(activated))) return;
        s.watchdog = std::make_unique<reactor::Watchdog>(
            s.watchdog_options(), [&s](const reactor::StallReport& r) { s.on_stall(r); });
        if ((failure = s.start_shards())) return;
        s.apply_reloadable();  // slow-slice thresholds on the new reactors
        s.watchdog->start();
        const bool admin_bound_here = activated.count("admin") == 0;
        if ((failure = s.start_admin(activated))) {
          for (auto& sh : s.shards) sh->stop();
          s.stopped->count_down();
          return;
        }
        // The services and the admin server have taken theirs: what is left, nothing uses (a
        // service removed from the configuration): closed, and dropped from the fd store.
        for (const auto& [name, fds] : activated) {
          spdlog::warn("socket activation passed {} fd(s) named '{}' that nothing uses; closing",
                       fds.size(), name);
          for (int fd : fds) ::close(fd);
          s.forget_stored(name);
        }
        s.store_listeners(admin_bound_here);
        for (size_t i = 0; i < s.runtimes.size(); ++i) {
          for (size_t k = 0; k < s.listen_fds[i].size(); ++k)
            s.shards[k % s.num_shards]->listen(s.runtimes[i].get(), s.listen_fds[i][k]);
        }
        code = s.control();
      },
      control_options);
  for (auto& sh : s.shards) sh->join();  // their loops have stopped; off the control loop now
  if (s.watchdog) s.watchdog->stop();
  if (!ran.ok()) {
    const std::string why =
        absl::StrCat("backend '", s.backend_name, "' unavailable: ", ran.message());
    std::fprintf(stderr, "reactord: %s\n", why.c_str());
    upgrade::report_failure(why);
    return kExitUnavailable;
  }
  if (failure) {
    std::fprintf(stderr, "reactord: %s\n", failure->why.c_str());
    upgrade::report_failure(failure->why);
    return failure->code;
  }
  return code;
}

}  // namespace reactord
