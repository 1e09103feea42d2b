// The epoll backend: edge-triggered readiness, one registration per fd for its whole life.
//
// Each fd is added once (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) the first time a fiber waits on it
// and removed by close(). An edge that arrives while no fiber waits is remembered in the fd's
// record, so wait() after an edge returns at once. Cross-thread wakeup is an eventfd, written only
// when no wakeup is already pending.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <memory>
#include <vector>

#include "backends/readiness_backend.h"
#include "reactor/fiber.h"
#include "reactor/stats.h"

namespace reactor {

class EpollBackend final : public ReadinessBackend {
 public:
  // Creates the epoll instance and the wakeup eventfd. Loop thread.
  static absl::StatusOr<std::unique_ptr<EpollBackend>> create();
  ~EpollBackend() override;

  std::string_view name() const override { return "epoll"; }
  absl::Status wait(int fd, Interest interest, Deadline deadline) override;
  absl::Status close(int fd) override;
  void poll(Duration timeout) override;
  void wakeup() override;
  void counters(std::vector<Counter>& out) const override;

 protected:
  void note_short_read(int fd) override;
  bool known_drained(int fd) const override;

 private:
  struct FdRecord {
    detail::Fiber* reader = nullptr;
    detail::Fiber* writer = nullptr;
    bool registered = false;
    bool ready_read = false;  // an edge arrived while nobody waited to read
    bool ready_write = false;
    bool drains = false;   // a short read empties it (short_read_drains), known at registration
    bool drained = false;  // the last read was short, and no wait since
    bool hangup = false;   // an edge said RDHUP, HUP or ERR: the end may be queued behind data
  };

  EpollBackend(int epfd, int eventfd);
  FdRecord& record(int fd);

  int epfd_;
  int eventfd_;
  std::atomic<bool> wakeup_pending_{false};
  std::vector<FdRecord> fds_;
  std::vector<epoll_event> events_;
  RelaxedCounter wait_calls_;
  RelaxedCounter events_total_;
  mutable RelaxedCounter reads_skipped_;  // recvs that waited first (known_drained)
  std::atomic<uint64_t> wakeups_{0};      // written from any thread
};

}  // namespace reactor
