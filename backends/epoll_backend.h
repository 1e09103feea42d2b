// The epoll backend: edge-triggered readiness, one registration per fd for its whole life.
//
// Each fd is added once (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) the first time a fiber waits on it
// and removed by close(); an fd epoll_ctl refuses (EPERM: a regular file, a directory, a device
// without poll) is always ready, and remembered as such until close(). Edges, the per-fd records
// and the wakeup eventfd are the readiness base's (readiness_backend.h). Its edges report the
// peer's end (EPOLLRDHUP), so a recv after a short read waits for the next edge first.
#pragma once

#include <sys/epoll.h>

#include <memory>
#include <string_view>
#include <vector>

#include "backends/readiness_backend.h"
#include "reactor/stats.h"

namespace reactor {

class EpollBackend final : public ReadinessBackend {
 public:
  // Creates the epoll instance and the wakeup eventfd. Loop thread.
  static absl::StatusOr<std::unique_ptr<EpollBackend>> create();
  ~EpollBackend() override;  // Loop thread.

  // Any thread.
  std::string_view name() const override { return "epoll"; }
  // Loop thread, scheduler context.
  void poll(Duration timeout) override;
  // Any thread.
  void counters(std::vector<Counter>& out) const override;

 private:
  EpollBackend(int epfd, int eventfd);
  absl::StatusOr<Registration> register_fd(int fd) override;
  void unregister_fd(int fd) override;

  int epfd_;
  std::vector<epoll_event> events_;
  RelaxedCounter wait_calls_;
  RelaxedCounter events_total_;
  RelaxedCounter ctl_calls_;  // epoll_ctl for fds: ADD at an fd's first wait, DEL at its close
};

}  // namespace reactor
