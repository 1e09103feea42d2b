#include "daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <latch>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/registry.h"
#include "daemon/admin.h"
#include "daemon/listen_fds.h"
#include "daemon/log.h"
#include "daemon/services.h"
#include "daemon/shard.h"
#include "daemon/socket_path.h"
#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/offload.h"
#include "reactor/reactor.h"
#include "reactor/stack.h"
#include "reactor/sync.h"

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

size_t online_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<size_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

struct Daemon::State {
  Config cfg;
  std::string config_path;
  std::vector<Override> overrides;
  Notifier notifier = Notifier::from_environment();
  std::string backend_name;
  size_t shard_count = 1;
  std::vector<ShardView> views;
  std::vector<std::unique_ptr<ServiceRuntime>> services;
  std::vector<std::unique_ptr<Shard>> shards;
  std::unique_ptr<std::latch> stopped;
  std::unique_ptr<ServiceShared> shared;
  std::unique_ptr<AdminServer> admin;
  reactor::Deadline started = reactor::Clock::now();
  double start_time_seconds = 0;
  // Per shard and service: the listening fds to hand over.
  std::vector<std::vector<int>> listen_fds;  // [service][shard]

  std::optional<Failure> bind_all(std::map<std::string, std::vector<int>>& activated);
  std::optional<Failure> start_shards();
  std::string status_line() const;
  void apply_reloadable();
  absl::Status reload();
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
  for (size_t i = 0; i < cfg.services.size(); ++i) {
    const ServiceConfig& sc = cfg.services[i];
    ServiceRuntime& svc = *services[i];
    std::vector<int>& fds = listen_fds[i];
    auto it = activated.find(sc.name);
    if (it != activated.end()) {
      // One activated fd that every shard accepts from: each shard gets its own dup of it.
      const int fd = it->second.front();
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      fds.push_back(fd);
      for (size_t s = 1; s < shard_count; ++s) fds.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      svc.bound_address =
          reactor::SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string() +
          " (activated)";
      activated.erase(it);
      continue;
    }
    if (sc.listen.family == ListenAddress::Family::kUnix) {
      absl::Status clear = clear_stale_unix_socket(sc.listen.path);
      if (!clear.ok())
        return Failure{kExitOsError, absl::StrCat("service ", sc.name, ": ", clear.message())};
      auto addr = reactor::SocketAddress::unix_path(sc.listen.path);
      if (!addr.ok()) return Failure{kExitConfig, std::string(addr.status().message())};
      auto l = reactor::UnixListener::bind(*addr);
      if (!l.ok())
        return Failure{kExitOsError, absl::StrCat("service ", sc.name, ": ", l.status().message())};
      const int fd = ::fcntl(l->fd(), F_DUPFD_CLOEXEC, 3);
      fds.push_back(fd);
      for (size_t s = 1; s < shard_count; ++s) fds.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
      svc.bound_address = addr->to_string();
      continue;
    }
    // TCP: one SO_REUSEPORT listener per shard on the same port; with port 0 the first bind picks
    // the port and the others reuse it.
    auto addr = reactor::SocketAddress::parse_ip(sc.listen.to_string());
    if (!addr.ok()) return Failure{kExitConfig, std::string(addr.status().message())};
    for (size_t s = 0; s < shard_count; ++s) {
      auto l = reactor::TcpListener::bind(*addr, {.backlog = 4096, .reuse_port = true});
      if (!l.ok())
        return Failure{kExitOsError, absl::StrCat("service ", sc.name, ": ", l.status().message())};
      if (s == 0) {
        auto bound = l->local_address();
        if (!bound.ok()) return Failure{kExitOsError, std::string(bound.status().message())};
        *addr = *bound;
        svc.bound_address = bound->to_string();
      }
      fds.push_back(::fcntl(l->fd(), F_DUPFD_CLOEXEC, 3));
    }
  }
  return std::nullopt;
}

std::optional<Failure> Daemon::State::start_shards() {
  reactor::Reactor::Options options;
  options.backend = backend_name;
  options.stack_size = size_t{cfg.runtime.stack_size_kib} * 1024;
  // The shards and the admin thread count down; reactors are destroyed only when all have, so
  // neither a cross-shard post nor an admin read ever meets a destroyed reactor.
  stopped = std::make_unique<std::latch>(static_cast<std::ptrdiff_t>(shard_count + 1));
  views.resize(shard_count);
  for (size_t i = 0; i < shard_count; ++i) {
    views[i].index = i;
    views[i].count = shard_count;
    shards.push_back(std::make_unique<Shard>(i, &views[i]));
  }
  const size_t cpus = online_cpus();
  for (size_t i = 0; i < shard_count; ++i) {
    std::optional<int> cpu;
    if (cfg.runtime.pin_cpus) cpu = static_cast<int>(i % cpus);
    absl::Status s = shards[i]->start(options, cpu, stopped.get());
    if (!s.ok()) {
      for (size_t j = i + 1; j < shard_count + 1; ++j) stopped->count_down();
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
  for (const auto& svc : services)
    addrs.push_back(absl::StrCat(svc->name, " ", svc->bound_address));
  return absl::StrCat("backend ", backend_name, ", ", shard_count, " shard",
                      shard_count == 1 ? "" : "s", "; ", absl::StrJoin(addrs, ", "), "; ", conns,
                      " connection", conns == 1 ? "" : "s");
}

void Daemon::State::apply_reloadable() {
  (void)log::set_level(to_string(cfg.log.level));
  if (admin) admin->set_access(cfg.admin.allow_uids, cfg.admin.allow_gids);
  for (size_t i = 0; i < cfg.services.size() && i < services.size(); ++i) {
    services[i]->max_connections.store(cfg.services[i].max_connections);
  }
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

std::optional<Failure> Daemon::State::start_admin(
    std::map<std::string, std::vector<int>>& activated) {
  DaemonView view;
  view.version = REACTORD_VERSION;
  view.backend = backend_name;
  view.started = started;
  view.start_time_seconds = start_time_seconds;
  view.shards = &shards;
  view.services = &services;
  AdminHooks hooks;
  hooks.config_text = [this] { return format_config(cfg); };
  hooks.set = [this](const std::string& key, const std::string& value) {
    absl::Status s = apply_setting(cfg, key, value);
    if (s.ok()) {
      apply_reloadable();
      spdlog::info("admin: set {} {}", key, value);
    }
    return s;
  };
  hooks.reload = [this] { return reload(); };
  admin =
      std::make_unique<AdminServer>(std::move(view), std::move(hooks), reactor::Reactor::current());
  std::optional<int> fd;
  if (auto it = activated.find("admin"); it != activated.end()) {
    fd = it->second.front();
    activated.erase(it);
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
  (void)notifier.notify("STOPPING=1\nSTATUS=draining");
  const auto timeout = std::chrono::milliseconds(cfg.shutdown.drain_timeout_ms);
  spdlog::info("draining: no new connections; waiting up to {} ms for open ones", timeout.count());
  for (auto& sh : shards) sh->begin_drain();
  auto open = [this] {
    int64_t n = 0;
    for (const auto& sh : shards) n += sh->connections();
    return n;
  };
  const reactor::Deadline deadline = reactor::deadline_after(timeout);
  while (open() > 0 && reactor::Clock::now() < deadline) (void)reactor::sleep_for(10ms);
  if (const int64_t left = open(); left > 0) {
    spdlog::warn("drain timeout: closing {} connection{}", left, left == 1 ? "" : "s");
    for (auto& sh : shards) sh->cancel_connections();
    const reactor::Deadline hard = reactor::deadline_after(2s);
    while (open() > 0 && reactor::Clock::now() < hard) (void)reactor::sleep_for(10ms);
  }
  for (auto& sh : shards) sh->stop();
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
    // Until the watchdog issue ties pings to loop health, a timer sends them.
    (void)reactor::spawn("sd-watchdog", [&, period = *interval / 2] {
      do {
        (void)notifier.notify("WATCHDOG=1");
      } while (reactor::sleep_for(period).ok());
    });
  }
  if (!signal_fiber.ok() || !status_fiber.ok()) return kExitOsError;
  for (const auto& svc : services)
    spdlog::info("service {} ({}) listening on {}", svc->name, svc->kind, svc->bound_address);
  spdlog::info("ready: {}", status_line());
  (void)notifier.notify(absl::StrCat("READY=1\nSTATUS=", status_line()));
  (void)shutdown.wait();
  drain();
  return kExitOk;
}

int Daemon::run() {
  State& s = *s_;
  raise_fd_limit();
  s.start_time_seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  reactor::set_offload_threads(s.cfg.runtime.offload_threads);
  s.shard_count = s.cfg.runtime.shards == 0 ? online_cpus() : s.cfg.runtime.shards;
  check_map_count(s.cfg, s.shard_count);
  s.backend_name = std::string(to_string(s.cfg.runtime.backend));

  // The control loop's reactor doubles as the backend probe: an unavailable backend fails here.
  reactor::Reactor::Options control_options;
  control_options.backend = s.backend_name;
  std::optional<Failure> failure;
  int code = kExitOk;
  absl::Status ran = reactor::Reactor::run(
      [&] {
        std::map<std::string, std::vector<int>> activated = take_listen_fds();
        s.shared = std::make_unique<ServiceShared>();
        for (const ServiceConfig& sc : s.cfg.services) {
          auto svc = std::make_unique<ServiceRuntime>();
          svc->name = sc.name;
          svc->kind = std::string(to_string(sc.kind));
          svc->max_connections = sc.max_connections;
          for (size_t i = 0; i < s.shard_count; ++i)
            svc->stats.push_back(std::make_unique<ServiceStats>());
          svc->handler = make_handler(sc, *s.shared, s.shard_count);
          if (!svc->handler) {
            failure = Failure{kExitConfig, absl::StrCat("service ", sc.name, ": kind ", svc->kind,
                                                        " is not available in this build")};
            return;
          }
          s.services.push_back(std::move(svc));
        }
        if ((failure = s.bind_all(activated))) return;
        for (const auto& [name, fds] : activated) {
          spdlog::warn("socket activation passed {} fd(s) named '{}' that no service uses",
                       fds.size(), name);
        }
        if ((failure = s.start_shards())) return;
        if ((failure = s.start_admin(activated))) {
          for (auto& sh : s.shards) sh->stop();
          s.stopped->count_down();
          return;
        }
        for (const auto& [name, fds] : activated) {
          spdlog::warn("socket activation passed {} fd(s) named '{}' that nothing uses", fds.size(),
                       name);
        }
        for (size_t i = 0; i < s.services.size(); ++i) {
          for (size_t sh = 0; sh < s.shard_count; ++sh)
            s.shards[sh]->listen(s.services[i].get(), s.listen_fds[i][sh]);
        }
        code = s.control();
      },
      control_options);
  for (auto& sh : s.shards) sh->join();  // their loops have stopped; off the control loop now
  if (!ran.ok()) {
    std::fprintf(stderr, "reactord: backend '%s' unavailable: %s\n", s.backend_name.c_str(),
                 std::string(ran.message()).c_str());
    return kExitUnavailable;
  }
  if (failure) {
    std::fprintf(stderr, "reactord: %s\n", failure->why.c_str());
    return failure->code;
  }
  return code;
}

}  // namespace reactord
