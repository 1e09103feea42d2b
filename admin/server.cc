#include "admin/server.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "admin/introspect.h"
#include "admin/metrics.h"
#include "admin/profile.h"
#include "admin/protocol.h"
#include "reactor/call_on.h"
#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/offload.h"
#include "spdlog/spdlog.h"

namespace reactord {

using namespace std::chrono_literals;

namespace {

constexpr char kHelp[] =
    "help\nversion\nping\nstats\nmetrics\nshards\nservices\nfibers [SHARD]\n"
    "fibers [SHARD] stacks [MAX_FIBERS [MAX_FRAMES]]\nconns [SERVICE]\nstalls\n"
    "profile [SECONDS [HZ [SHARD]]]\nbackends\nconfig\n"
    "set KEY VALUE\nreload\nupgrade [BINARY]";

std::string err(std::string_view code, std::string_view message) {
  return admin_error(code, message);
}

std::string status_message(const absl::Status& s) {
  return std::string(s.message());
}

}  // namespace

AdminServer::AdminServer(DaemonView& view, reactor::Reactor* control)
    : view_(view), control_(control) {}

AdminServer::~AdminServer() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

absl::Status AdminServer::bind(const AdminConfig& cfg, std::optional<int> activated_fd) {
  max_clients_ = cfg.max_clients;
  idle_timeout_ = std::chrono::milliseconds(cfg.idle_timeout_ms);
  allow_uids_ = cfg.allow_uids;
  allow_gids_ = cfg.allow_gids;
  if (activated_fd) {
    listen_fd_ = *activated_fd;
    path_ = "(activated)";
    ::fcntl(listen_fd_, F_SETFL, ::fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
    return absl::OkStatus();
  }
  path_ = cfg.socket;
  absl::StatusOr<reactor::SocketAddress> addr = reactor::SocketAddress::unix_path(path_);
  if (!addr.ok()) return addr.status();
  // Bind with no access at all, then open it up to `mode`: no window where it is wider.
  const mode_t old_umask = ::umask(0777);
  absl::StatusOr<reactor::UnixListener> l = reactor::UnixListener::bind(*addr, {.backlog = 64});
  ::umask(old_umask);
  if (!l.ok())
    return absl::FailedPreconditionError(absl::StrCat("admin socket: ", l.status().message()));
  listen_fd_ = ::fcntl(l->fd(), F_DUPFD_CLOEXEC, 3);
  if (::chmod(path_.c_str(), static_cast<mode_t>(cfg.mode)) != 0) {
    return reactor::errno_status(errno, "chmod " + path_);
  }
  if (!cfg.group.empty()) {
    // getgrnam may read files or ask NSS over the network: not on a loop thread.
    absl::StatusOr<gid_t> gid =
        reactor::offload([group = cfg.group]() -> absl::StatusOr<gid_t> {
          struct group g, *found = nullptr;
          std::vector<char> buf(16384);
          if (getgrnam_r(group.c_str(), &g, buf.data(), buf.size(), &found) != 0 || !found) {
            return absl::NotFoundError("admin.group: no group named '" + group + "'");
          }
          return found->gr_gid;
        }).value_or(absl::InternalError("admin.group lookup cancelled"));
    if (!gid.ok()) return gid.status();
    if (::chown(path_.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
      return reactor::errno_status(errno, "chown " + path_);
    }
  }
  return absl::OkStatus();
}

absl::Status AdminServer::start(const std::string& backend) {
  std::promise<absl::Status> created;
  std::future<absl::Status> result = created.get_future();
  thread_ = std::thread([this, backend, &created] {
    pthread_setname_np(pthread_self(), "admin");
    reactor::Reactor::Options options;
    options.backend = backend;
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> r = reactor::Reactor::create(options);
    if (!r.ok()) {
      created.set_value(r.status());
      return;
    }
    inbox_ = (*r)->inbox();
    created.set_value(absl::OkStatus());
    (void)(*r)->spawn("admin-accept", [this] {
      reactor::Backend& b = reactor::Reactor::current()->backend();
      uint64_t seq = 0;
      for (;;) {
        absl::StatusOr<int> fd = b.accept(listen_fd_, nullptr, reactor::kNoDeadline);
        if (!fd.ok()) {
          if (absl::IsOutOfRange(fd.status())) {  // handed over: every taken connection served
            (void)b.close(listen_fd_);
            listen_fd_ = -1;
            return;
          }
          if (absl::IsCancelled(fd.status()) || reactor::status_errno(fd.status()) == 0) return;
          spdlog::warn("admin: accept: {}", status_message(fd.status()));
          if (!reactor::sleep_for(10ms).ok()) return;
          continue;
        }
        const uint64_t id = ++seq;
        const int cfd = *fd;
        if (!reactor::spawn(absl::StrCat("admin#", id), [this, cfd, id] {
               serve_client(cfd, id);
             }).ok()) {
          ::close(cfd);
        }
      }
    });
    (*r)->run_until_stopped();
    (*r)->cancel_all();
    (*r)->run_until([&] { return (*r)->fibers_alive() == 0; });
    if (listen_fd_ >= 0) {
      (void)(*r)->backend().close(listen_fd_);
      listen_fd_ = -1;
    }
    inbox_->close();
  });
  return result.get();
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  if (inbox_) (void)inbox_->post([] { reactor::Reactor::current()->stop(); });
  thread_.join();
  if (path_ != "(activated)" && !path_.empty() && !keep_path_) ::unlink(path_.c_str());
}

void AdminServer::hand_over() {
  keep_path_ = true;
  if (inbox_) {
    // Stop accepting, not close: what the backend already took off the listener (io_uring's
    // multishot accept) is still served; the accept fiber closes the listener after it.
    (void)inbox_->post([this] {
      if (listen_fd_ >= 0) reactor::Reactor::current()->backend().stop_accepting(listen_fd_);
    });
  }
}

void AdminServer::set_access(std::vector<uint32_t> uids, std::vector<uint32_t> gids) {
  std::lock_guard<std::mutex> lock(access_mu_);
  allow_uids_ = std::move(uids);
  allow_gids_ = std::move(gids);
}

bool AdminServer::may_write(uint32_t uid) const {
  return uid == 0 || uid == ::getuid();
}

bool AdminServer::may_read(uint32_t uid, uint32_t gid) const {
  if (may_write(uid)) return true;
  std::lock_guard<std::mutex> lock(access_mu_);
  return std::find(allow_uids_.begin(), allow_uids_.end(), uid) != allow_uids_.end() ||
         std::find(allow_gids_.begin(), allow_gids_.end(), gid) != allow_gids_.end();
}

void AdminServer::serve_client(int fd, uint64_t id) {
  reactor::Stream conn{reactor::FileDescriptor(fd)};
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    spdlog::warn("admin#{}: SO_PEERCRED: {}", id, std::strerror(errno));
    return;
  }
  if (clients_ >= max_clients_) {
    (void)conn.write_all(err("busy", "too many admin clients") + "\n.\n",
                         reactor::deadline_after(1s));
    return;
  }
  clients_.fetch_add(1, std::memory_order_relaxed);
  struct Release {
    std::atomic<size_t>& n;
    ~Release() { n.fetch_sub(1, std::memory_order_relaxed); }
  } release{clients_};

  AdminLineReader reader;
  std::vector<AdminLineEvent> events;
  std::vector<std::byte> chunk(4096);
  reactor::Deadline idle_deadline = reactor::deadline_after(idle_timeout_);
  for (;;) {
    absl::StatusOr<size_t> n = conn.read(chunk, idle_deadline);
    if (!n.ok() || *n == 0) return;  // idle timeout, peer closed, or shutdown
    events.clear();
    reader.feed(std::string_view(reinterpret_cast<const char*>(chunk.data()), *n), events);
    std::string answers;
    for (const AdminLineEvent& e : events) {
      if (e.kind == AdminLineEvent::Kind::kTooLong) {
        absl::StrAppend(&answers, e.line, "\n.\n");
        continue;
      }
      std::string answer = handle(e.line, cred.uid, cred.gid);
      absl::StrAppend(&answers, answer, answer.empty() || answer.back() == '\n' ? "" : "\n", ".\n");
      idle_deadline = reactor::deadline_after(idle_timeout_);
    }
    if (!answers.empty() && !conn.write_all(answers, reactor::deadline_after(10s)).ok()) return;
  }
}

std::string AdminServer::handle(const std::string& line, uint32_t uid, uint32_t gid) {
  AdminRequest request = parse_admin_line(line);
  if (!request.error.empty()) return request.error;
  const std::vector<std::string>& words = request.words;
  const std::string& cmd = words[0];
  const bool write = request.write;
  if (write ? !may_write(uid) : !may_read(uid, gid)) {
    return err("denied",
               write
                   ? absl::StrCat(cmd, " needs root or the daemon's own uid")
                   : absl::StrCat("uid ", uid,
                                  " may not read statistics (admin.allow_uids, admin.allow_gids)"));
  }
  auto no_args = [&]() -> std::optional<std::string> {
    if (words.size() != 1) return err("usage", absl::StrCat(cmd, " takes no arguments"));
    return std::nullopt;
  };
  if (cmd == "help") return kHelp;
  if (cmd == "ping") return no_args().value_or("pong");
  if (auto e = no_args(); e && cmd != "fibers" && cmd != "conns" && cmd != "set" &&
                          cmd != "profile" && cmd != "upgrade")
    return *e;
  if (cmd == "version") {
    return nlohmann::json{{"version", view_.version()},
                          {"protocol", kProtocolVersion},
                          {"backend", view_.active_backend()}}
        .dump();
  }
  if (cmd == "stats") return stats_json(view_).dump();
  if (cmd == "metrics") return prometheus_text(view_);
  if (cmd == "shards") return shards_json(view_).dump();
  if (cmd == "services") return services_json(view_).dump();
  if (cmd == "stalls") return stalls_json(view_).dump();
  if (cmd == "backends") return backends_json().dump();
  if (cmd == "conns") return conns_answer(view_, words);
  if (cmd == "profile") return profile_answer(view_, words);
  if (cmd == "fibers") {
    if (std::find(words.begin(), words.end(), "stacks") != words.end()) {
      return fibers_stacks_answer(view_, words);
    }
    if (words.size() > 2) return err("usage", "fibers [SHARD] [stacks]");
    std::optional<size_t> shard;
    if (words.size() == 2) {
      size_t n = 0;
      if (!absl::SimpleAtoi(words[1], &n) || n >= view_.shard_count()) {
        return err("usage", absl::StrCat("no shard '", words[1].substr(0, 32), "' (0..",
                                         view_.shard_count() - 1, ")"));
      }
      shard = n;
    }
    return fibers_json(view_, shard).dump();
  }
  if (cmd == "config") {
    absl::StatusOr<std::string> text = reactor::call_on(
        *control_, [this] { return view_.config_text(); }, reactor::deadline_after(10s));
    if (!text.ok()) return err("unavailable", status_message(text.status()));
    return *text;
  }
  if (cmd == "set") {
    if (words.size() < 3) return err("usage", "set KEY VALUE");
    const std::string key = words[1];
    const std::string value = absl::StrJoin(words.begin() + 2, words.end(), " ");
    absl::StatusOr<absl::Status> r = reactor::call_on(
        *control_, [this, key, value] { return view_.set(key, value); },
        reactor::deadline_after(10s));
    if (!r.ok()) return err("unavailable", status_message(r.status()));
    if (!r->ok()) return err(absl::IsInvalidArgument(*r) ? "invalid" : "usage", status_message(*r));
    return "ok";
  }
  if (cmd == "upgrade") {
    if (words.size() > 2) return err("usage", "upgrade [BINARY]");
    if (words.size() == 2 && words[1][0] != '/') {
      return err("usage", "upgrade: BINARY must be an absolute path");
    }
    // Naming the file to run is root's alone: the new process gets the daemon's sockets (and,
    // under systemd, its capabilities); the daemon's own uid may restart its own binary only.
    if (words.size() == 2 && uid != 0) {
      return err("denied",
                 "upgrade BINARY needs root (the daemon's own uid may only upgrade to "
                 "its own binary: upgrade without BINARY)");
    }
    const std::string binary = words.size() == 2 ? words[1] : "";
    // The new process has up to 10 s to report ready.
    absl::StatusOr<absl::StatusOr<std::string>> r = reactor::call_on(
        *control_, [this, binary] { return view_.upgrade(binary); }, reactor::deadline_after(30s),
        /*in_fiber=*/true);
    if (!r.ok()) return err("unavailable", status_message(r.status()));
    if (!r->ok()) return err("failed", absl::StrCat("upgrade: ", status_message(r->status())));
    return **r;
  }
  // reload
  absl::StatusOr<absl::Status> r = reactor::call_on(
      *control_, [this] { return view_.reload(); }, reactor::deadline_after(30s),
      /*in_fiber=*/true);
  if (!r.ok()) return err("unavailable", status_message(r.status()));
  if (!r->ok()) return err("failed", status_message(*r));
  return "ok";
}

}  // namespace reactord
