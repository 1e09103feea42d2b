#include "daemon/shard.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>

#include "absl/strings/str_cat.h"
#include "daemon/log.h"
#include "reactor/error.h"

namespace reactord {

using namespace std::chrono_literals;

Shard::~Shard() {
  if (thread_.joinable()) {
    stop();
    thread_.join();
  }
}

absl::Status Shard::start(const reactor::Reactor::Options& options, std::optional<int> cpu,
                          std::latch* stopped, reactor::Watchdog* watchdog) {
  std::promise<absl::Status> created;
  std::future<absl::Status> result = created.get_future();
  thread_ = std::thread([this, options, cpu, stopped, watchdog, &created] {
    const std::string name = absl::StrCat("shard-", index_);
    pthread_setname_np(pthread_self(), name.c_str());
    if (cpu) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(*cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        spdlog::warn("shard {}: cannot pin to CPU {}; running unpinned", index_, *cpu);
      }
    }
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> r = reactor::Reactor::create(options);
    if (!r.ok()) {
      created.set_value(r.status());
      stopped->count_down();
      return;
    }
    reactor_ = r->get();
    inbox_ = reactor_->inbox();
    if (watchdog != nullptr) watchdog->watch(reactor_, index_);
    created.set_value(absl::OkStatus());
    (void)reactor_->spawn("snapshot", [this] {
      do {
        publish_snapshot();
      } while (reactor::sleep_for(kSnapshotPeriod).ok());
    });
    reactor_->run_until_stopped();
    reactor_->cancel_all();
    reactor_->run_until([this] { return reactor_->fibers_alive() == 0; });
    for (int fd : listen_fds_) (void)reactor_->backend().close(fd);
    listen_fds_.clear();
    accepting_.store(0, std::memory_order_relaxed);
    stopped->count_down();
    stopped->wait();  // other shards may still post to this one until they stop too
    inbox_->close();
    if (watchdog != nullptr) watchdog->unwatch(reactor_);
    r->reset();
  });
  return result.get();
}

void Shard::post(absl::AnyInvocable<void()> fn) {
  if (inbox_ != nullptr) (void)inbox_->post(std::move(fn));
}

void Shard::listen(ServiceRuntime* svc, int fd) {
  post([this, svc, fd] {
    if (draining_) {
      (void)reactor_->backend().close(fd);
      return;
    }
    listen_fds_.push_back(fd);
    accepting_.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<reactor::Task<void>> t = reactor_->spawn(
        absl::StrCat("accept:", svc->name), [this, svc, fd] { accept_loop(svc, fd); });
    if (!t.ok()) {
      spdlog::error("shard {}: cannot start accepting for {}: {}", index_, svc->name,
                    t.status().ToString());
      close_listener(fd);
    }
  });
}

void Shard::close_listener(int fd) {
  auto it = std::find(listen_fds_.begin(), listen_fds_.end(), fd);
  if (it == listen_fds_.end()) return;
  listen_fds_.erase(it);
  (void)reactor_->backend().close(fd);
  accepting_.fetch_sub(1, std::memory_order_relaxed);
}

void Shard::accept_loop(ServiceRuntime* svc, int fd) {
  reactor::Backend& backend = reactor_->backend();
  ServiceStats& st = *svc->stats[index_];
  reactor::Duration backoff = 1ms;
  uint64_t seq = 0;
  for (;;) {
    absl::StatusOr<int> conn = backend.accept(fd, nullptr, reactor::kNoDeadline);
    if (!conn.ok()) {
      // OutOfRange: begin_drain stopped accepting and every connection the backend had already
      // taken was handed out here.
      if (absl::IsOutOfRange(conn.status()) || absl::IsCancelled(conn.status())) break;
      const int err = reactor::status_errno(conn.status());
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of fds: leave the connection in the backlog and retry later, without spinning.
        if (stats_.emfile_events.get() % 1000 == 0) {
          spdlog::warn(
              "shard {}: {}: accept: {}; backing off (the connection waits in the backlog)", index_,
              svc->name, conn.status().message());
        }
        stats_.emfile_events.add();
        if (!reactor::sleep_for(backoff).ok()) break;
        backoff = std::min<reactor::Duration>(backoff * 2, 100ms);
        continue;
      }
      if (err == 0) break;  // the listener was closed under us
      stats_.accept_errors.add();
      spdlog::warn("shard {}: {}: {}", index_, svc->name, conn.status().message());
      if (!reactor::sleep_for(1ms).ok()) break;
      continue;
    }
    backoff = 1ms;
    if (svc->active.fetch_add(1, std::memory_order_relaxed) >=
        static_cast<int64_t>(svc->max_connections.load(std::memory_order_relaxed))) {
      svc->active.fetch_sub(1, std::memory_order_relaxed);
      st.connections_rejected.add();
      ::close(*conn);  // never registered with the backend
      continue;
    }
    const int cfd = *conn;
    // Request/response protocols: answers go out at once, not after the peer's delayed ACK
    // (Nagle). Fails harmlessly on a Unix socket.
    const int one = 1;
    (void)::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const uint64_t id = ++seq;
    accepting_.fetch_add(1, std::memory_order_relaxed);  // until serve() counts it
    absl::StatusOr<reactor::Task<void>> t = reactor_->spawn(
        absl::StrCat(svc->name, "#", id), [this, svc, cfd, id] { serve(svc, cfd, id); });
    if (!t.ok()) {
      accepting_.fetch_sub(1, std::memory_order_relaxed);
      svc->active.fetch_sub(1, std::memory_order_relaxed);
      st.connections_rejected.add();
      ::close(cfd);
      spdlog::warn("shard {}: {}: {}", index_, svc->name, t.status().message());
    }
  }
  close_listener(fd);
}

void Shard::serve(ServiceRuntime* svc, int fd, uint64_t seq) {
  {
    // On the heap: the shard's drain and `conns` reach it while the fiber waits, and the fiber's
    // stack may be released then (runtime.release_idle_stacks_ms). The services' handlers keep
    // nothing else that others point to on their stacks.
    auto owned = std::make_unique<Connection>(reactor::Stream(reactor::FileDescriptor(fd)),
                                              *svc->stats[index_], *view_);
    Connection& c = *owned;
    reactor::allow_stack_release();
    reactor::detail::Fiber* self = reactor::detail::current_fiber();
    c.set_cancel([self] { reactor::detail::cancel_fiber(self); });
    conns_.emplace(&c, ConnEntry{svc, self->id.load(std::memory_order_relaxed)});
    connections_.store(static_cast<int64_t>(conns_.size()), std::memory_order_relaxed);
    accepting_.fetch_sub(1, std::memory_order_relaxed);
    if (draining_) c.drain();
    try {
      svc->handler(c);
    } catch (const std::exception& e) {
      spdlog::error("shard {}: {}#{}: handler threw: {}", index_, svc->name, seq, e.what());
    }
    conns_.erase(&c);
    connections_.store(static_cast<int64_t>(conns_.size()), std::memory_order_relaxed);
  }
  svc->active.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<FiberSnapshot> Shard::snapshot_now(const SnapshotRequest& what) const {
  auto snap = std::make_shared<FiberSnapshot>();
  snap->taken = reactor::Clock::now();
  snap->fibers = reactor_->fibers_snapshot(what.max_fibers, what.max_frames);
  snap->fibers_alive = reactor_->fibers_alive();
  snap->stacks = what.max_frames > 0;
  snap->slow_slices_by_name = reactor_->slow_slices_by_name();
  if (!what.connections) return snap;
  for (const auto& [c, e] : conns_) {
    if (!what.service.empty() && e.svc->name != what.service) continue;
    if (snap->connections.size() >= what.max_connections) {
      ++snap->connections_omitted;
      continue;
    }
    ConnectionInfo& i = snap->connections.emplace_back();
    i.service = e.svc->name;
    i.shard = index_;
    // getpeername does not block; asked only here, so serving a connection never pays for it.
    absl::StatusOr<reactor::SocketAddress> peer = c->stream().peer_address();
    if (peer.ok()) i.peer = peer->to_string();
    i.age_seconds = std::chrono::duration<double>(snap->taken - c->created()).count();
    i.bytes_in = c->bytes_in();
    i.bytes_out = c->bytes_out();
    i.requests = c->requests();
    i.state = c->state();
    i.fiber_id = e.fiber_id;
  }
  return snap;
}

void Shard::publish_snapshot() {
  std::shared_ptr<const FiberSnapshot> snap = snapshot_now(SnapshotRequest{});
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = std::move(snap);
}

std::shared_ptr<const FiberSnapshot> Shard::fiber_snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

void Shard::begin_drain() {
  post([this] {
    draining_ = true;
    // Stop accepting, but close no listener yet: io_uring's multishot accept takes connections
    // ahead of the accept fibers, and closing would reset those. Each accept loop serves what
    // the backend already took, then closes its listener; connections still in the kernel's
    // queue stay there for whoever else holds the socket (an upgrade's new process, systemd's fd
    // store across a restart).
    for (int fd : listen_fds_) reactor_->backend().stop_accepting(fd);
    // drain() may cancel, which only marks fibers runnable: safe while iterating.
    for (const auto& [c, e] : conns_) c->drain();
  });
}

void Shard::cancel_connections() {
  post([this] {
    for (const auto& [c, e] : conns_) c->cancel();
  });
}

void Shard::stop() {
  post([this] { reactor_->stop(); });
}

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace reactord
