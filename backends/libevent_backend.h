// The libevent backend: readiness from a libevent 2.1 event_base, one per reactor.
//
// Each fd gets one persistent edge-triggered event (EV_READ|EV_WRITE|EV_ET|EV_PERSIST) the first
// time a fiber waits on it, deleted by close(). A wait therefore costs no event_add/event_del (and
// no epoll_ctl) — a one-shot event per wait would cost two epoll_ctl calls per wait. As in the
// epoll backend, an edge that arrives while no fiber waits is remembered in the fd's record.
//
// The base is created with EVENT_BASE_FLAG_NOLOCK (the loop is single-threaded) and must use an
// O(1), edge-triggered method (epoll on Linux). poll() runs one event_base_loop iteration:
// EVLOOP_ONCE, plus EVLOOP_NONBLOCK for a zero timeout. The reactor owns the timers; the poll
// timeout is a timerfd of ours, not a libevent timer (see libevent_backend.cc for why). Cross-
// thread wakeup is an eventfd registered as a persistent read event, written only when no wakeup
// is already pending: event_base_loopbreak() cannot serve, see wakeup().
#pragma once

#include <pthread.h>

#include <atomic>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/readiness_backend.h"
#include "reactor/backend.h"
#include "reactor/fiber.h"
#include "reactor/stats.h"

struct event;
struct event_base;

namespace reactor {

class LibeventBackend final : public ReadinessBackend {
 public:
  // Creates the event_base, the wakeup eventfd and the timeout timerfd. Loop thread.
  static absl::StatusOr<std::unique_ptr<LibeventBackend>> create();
  // Loop thread.
  ~LibeventBackend() override;
  LibeventBackend(const LibeventBackend&) = delete;
  LibeventBackend& operator=(const LibeventBackend&) = delete;

  // Any thread.
  std::string_view name() const override { return "libevent"; }
  // Loop thread, inside a fiber.
  absl::Status wait(int fd, Interest interest, Deadline deadline) override;
  // Loop thread.
  absl::Status close(int fd) override;
  // Loop thread, scheduler context.
  void poll(Duration timeout) override;
  // Any thread.
  void wakeup() override;
  // Any thread.
  void counters(std::vector<Counter>& out) const override;

  // The event method libevent chose ("epoll"). Any thread.
  std::string_view method() const;

 private:
  struct FdRecord {
    event* ev = nullptr;  // the fd's persistent event, from its first wait until close()
    detail::Fiber* reader = nullptr;
    detail::Fiber* writer = nullptr;
    bool ready_read = false;  // an edge arrived while nobody waited to read
    bool ready_write = false;
    bool unpollable = false;  // a regular file or the like: always ready, never registered
  };

  LibeventBackend(event_base* base, int eventfd, int timerfd);
  FdRecord& record(int fd);
  absl::Status register_fd(int fd, FdRecord& r);
  // Makes the timerfd fire by now + timeout; false if it cannot be armed.
  bool arm_timer(Duration timeout);
  void assert_loop_thread() const;

  static void on_fd_event(int fd, short what, void* arg);
  static void on_wakeup(int fd, short what, void* arg);
  static void on_timer(int fd, short what, void* arg);

  event_base* base_;
  int eventfd_;
  int timerfd_;
  event* wakeup_event_ = nullptr;
  event* timer_event_ = nullptr;
  bool timer_armed_ = false;  // timerfd set and its expiry not yet seen
  Deadline timer_deadline_{};
  std::atomic<bool> wakeup_pending_{false};
  std::vector<FdRecord> fds_;
  pthread_t owner_;
  RelaxedCounter loop_calls_;
  RelaxedCounter loop_errors_;
  RelaxedCounter events_total_;
  RelaxedCounter timer_arms_;
  std::atomic<uint64_t> wakeups_{0};  // written from any thread
};

// Creates the libevent backend for the calling thread's loop, or says why it cannot. Loop thread.
absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend();

}  // namespace reactor
