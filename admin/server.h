// The admin server: a Unix stream socket served by its own thread and reactor, so it answers
// while any shard is stalled. Protocol and access rules: docs/admin-protocol.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "admin/protocol.h"
#include "admin/view.h"
#include "config/config.h"
#include "reactor/reactor.h"

namespace reactord {

class AdminServer {
 public:
  static constexpr size_t kMaxLine = AdminLineReader::kMaxLine;
  static constexpr int kProtocolVersion = 1;

  // `view` outlives the server; its control-loop calls run on `control`.
  AdminServer(DaemonView& view, reactor::Reactor* control);
  ~AdminServer();

  // Binds `cfg.socket` (or adopts `activated_fd`), applying its mode and group; the path must be
  // free (the daemon removes a stale socket first). Control loop, in a fiber, at start (the group
  // lookup is offloaded).
  absl::Status bind(const AdminConfig& cfg, std::optional<int> activated_fd);
  // Starts the admin thread and its reactor on `backend`. Control thread.
  absl::Status start(const std::string& backend);
  // Changes who may read (SIGHUP, `set`). Any thread.
  void set_access(std::vector<uint32_t> uids, std::vector<uint32_t> gids);
  // Stops the thread; open clients are dropped. Control thread.
  void stop();
  // The listening socket (-1 once closed). Control thread.
  int listen_fd() const { return listen_fd_; }
  // Stops accepting (open clients are still served) and leaves the socket file in place: another
  // process serves it now. Any thread.
  void hand_over();
  // stop() leaves the socket file in place (systemd's fd store holds the socket). Control thread.
  void keep_socket_file() { keep_path_ = true; }
  // Clients connected now. Any thread.
  size_t clients() const { return clients_.load(std::memory_order_relaxed); }

  // One command line in, one answer out (without the end marker), for a peer with these
  // credentials. Admin thread, inside a fiber (it may wait for the control loop).
  std::string handle(const std::string& line, uint32_t uid, uint32_t gid);

 private:
  void serve_client(int fd, uint64_t id);
  bool may_read(uint32_t uid, uint32_t gid) const;
  bool may_write(uint32_t uid) const;

  DaemonView& view_;
  reactor::Reactor* control_;
  int listen_fd_ = -1;
  std::string path_;
  size_t max_clients_ = 16;
  reactor::Duration idle_timeout_{};
  std::thread thread_;
  std::shared_ptr<reactor::detail::Inbox> inbox_;
  mutable std::mutex access_mu_;
  std::vector<uint32_t> allow_uids_, allow_gids_;
  bool keep_path_ = false;
  std::atomic<size_t> clients_{0};  // written by the admin thread
};

}  // namespace reactord
