// The libevent backend: readiness from a libevent 2.1 event_base, one per reactor.
//
// Each fd gets one persistent edge-triggered event (EV_READ|EV_WRITE|EV_ET|EV_PERSIST) the first
// time a fiber waits on it, deleted by close(). A wait therefore costs no event_add/event_del (and
// no epoll_ctl) — a one-shot event per wait would cost two epoll_ctl calls per wait. Edges, the
// per-fd records and the wakeup eventfd are the readiness base's (readiness_backend.h); libevent
// does not say when the peer's end arrived, so a recv after a short read tries again at once.
//
// The base is created with EVENT_BASE_FLAG_NOLOCK (the loop is single-threaded) and must use an
// O(1), edge-triggered method (epoll on Linux). poll() runs one event_base_loop iteration:
// EVLOOP_ONCE, plus EVLOOP_NONBLOCK for a zero timeout. The reactor owns the timers; the poll
// timeout is a timerfd of ours, not a libevent timer (see libevent_backend.cc for why). Cross-
// thread wakeup is the base's eventfd, registered as a persistent read event. Not
// event_base_loopbreak(): on a NOLOCK base it is a plain, unsynchronised write from another thread
// that does not interrupt a blocked epoll_wait (libevent notifies the loop only on bases with
// locking), and event_base_loop clears the flag on entry, so a break that lands between two polls
// is lost. An eventfd write is thread-safe and stays readable until the loop drains it.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/readiness_backend.h"
#include "reactor/backend.h"
#include "reactor/stats.h"

struct event;
struct event_base;

namespace reactor {

class LibeventBackend final : public ReadinessBackend {
 public:
  // Creates the event_base, the wakeup eventfd and the timeout timerfd. Loop thread.
  static absl::StatusOr<std::unique_ptr<LibeventBackend>> create();
  ~LibeventBackend() override;  // Loop thread.
  LibeventBackend(const LibeventBackend&) = delete;
  LibeventBackend& operator=(const LibeventBackend&) = delete;

  // Any thread.
  std::string_view name() const override { return "libevent"; }
  // Loop thread, scheduler context.
  void poll(Duration timeout) override;
  // Any thread.
  void counters(std::vector<Counter>& out) const override;

  // The event method libevent chose ("epoll"). Any thread.
  std::string_view method() const;

 private:
  LibeventBackend(event_base* base, int eventfd, int timerfd);
  absl::StatusOr<Registration> register_fd(int fd) override;
  void unregister_fd(int fd) override;
  // Makes the timerfd fire by now + timeout; false if it cannot be armed.
  bool arm_timer(Duration timeout);

  static void on_fd_event(int fd, short what, void* arg);
  static void on_wakeup(int fd, short what, void* arg);
  static void on_timer(int fd, short what, void* arg);

  event_base* base_;
  int timerfd_;
  event* wakeup_event_ = nullptr;
  event* timer_event_ = nullptr;
  bool timer_armed_ = false;  // timerfd set and its expiry not yet seen
  Deadline timer_deadline_{};
  std::vector<event*> events_;  // by fd: its persistent event, from its first wait until close()
  RelaxedCounter loop_calls_;
  RelaxedCounter loop_errors_;
  RelaxedCounter events_total_;
  RelaxedCounter timer_arms_;
};

// Creates the libevent backend for the calling thread's loop, or says why it cannot. Loop thread.
absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend();

}  // namespace reactor
