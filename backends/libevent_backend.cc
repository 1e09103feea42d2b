#include "backends/libevent_backend.h"

#include <event2/event.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"

namespace reactor {
namespace {

// A poll deadline that differs from the armed one by less than this reuses the armed timerfd: the
// reactor's next timer, recomputed as "now + timeout" on every poll, jitters by nanoseconds.
constexpr Duration kTimerSlack = std::chrono::microseconds(50);

// Regular files, directories and block devices cannot be polled (epoll_ctl fails with EPERM) and
// are always ready. Checked before event_add, which would print a libevent warning on stderr.
bool always_ready(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;  // let event_add report the error
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode);
}

}  // namespace

// Timeouts. libevent's own timers would cost no system call, but without
// EVENT_BASE_FLAG_PRECISE_TIMER libevent 2.1 keeps time with CLOCK_MONOTONIC_COARSE (4 ms
// resolution on this kernel, clock_getres): measured here, a 1.5 ms timer + EVLOOP_ONCE took
// 2.0-5.5 ms, 4.0 ms on average. With the flag its epoll method calls timerfd_settime on every
// dispatch, EVLOOP_NONBLOCK ones included (strace: 100 loops, 100 timerfd_settime) — a system call
// per loop iteration. So the poll timeout is our own timerfd on CLOCK_MONOTONIC (steady_clock's
// clock), armed with an absolute deadline and re-armed only when the reactor's next timer moves
// earlier: a later one is left armed and costs at most one early return, after which the reactor
// polls again. Loops without timers never touch it.

absl::StatusOr<std::unique_ptr<LibeventBackend>> LibeventBackend::create() {
  event_config* cfg = event_config_new();
  if (cfg == nullptr) return absl::ResourceExhaustedError("libevent: event_config_new failed");
  // One loop thread per base: no lock. Edge-triggered and O(1) means epoll on Linux; the
  // environment (EVENT_NOEPOLL) must not silently take that away.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_IGNORE_ENV);
  event_config_require_features(cfg, EV_FEATURE_ET | EV_FEATURE_O1);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base == nullptr) {
    // libevent does not say why; its only such method here is epoll, so ask the kernel.
    const int probe = ::epoll_create1(EPOLL_CLOEXEC);
    if (probe < 0) {
      return errno_status(errno, "libevent: no edge-triggered event method, epoll_create1");
    }
    ::close(probe);
    return absl::UnavailableError(
        "libevent: event_base_new_with_config found no edge-triggered O(1) event method");
  }
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    absl::Status s = errno_status(errno, "eventfd");
    event_base_free(base);
    return s;
  }
  const int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) {
    absl::Status s = errno_status(errno, "timerfd_create");
    ::close(efd);
    event_base_free(base);
    return s;
  }
  // From here the destructor releases whatever was set up.
  std::unique_ptr<LibeventBackend> b(new LibeventBackend(base, efd, tfd));
  b->wakeup_event_ = event_new(base, efd, EV_READ | EV_PERSIST, &on_wakeup, b.get());
  b->timer_event_ = event_new(base, tfd, EV_READ | EV_PERSIST, &on_timer, b.get());
  if (b->wakeup_event_ == nullptr || b->timer_event_ == nullptr) {
    return absl::ResourceExhaustedError("libevent: event_new failed");
  }
  errno = 0;
  if (event_add(b->wakeup_event_, nullptr) != 0 || event_add(b->timer_event_, nullptr) != 0) {
    return errno_status(errno != 0 ? errno : EIO, "libevent: event_add");
  }
  return b;
}

LibeventBackend::LibeventBackend(event_base* base, int eventfd, int timerfd)
    : ReadinessBackend("libevent backend", eventfd, ShortReads::kRetry),
      base_(base),
      timerfd_(timerfd) {}

LibeventBackend::~LibeventBackend() {
  loop_thread_.check();
  // Fibers still parked here were abandoned by the reactor; only the events need freeing.
  for (event* ev : events_) {
    if (ev != nullptr) event_free(ev);
  }
  if (wakeup_event_ != nullptr) event_free(wakeup_event_);
  if (timer_event_ != nullptr) event_free(timer_event_);
  event_base_free(base_);
  ::close(timerfd_);
}

std::string_view LibeventBackend::method() const {
  return event_base_get_method(base_);
}

absl::StatusOr<LibeventBackend::Registration> LibeventBackend::register_fd(int fd) {
  if (always_ready(fd)) return Registration::kUnpollable;
  event* ev = event_new(base_, fd, EV_READ | EV_WRITE | EV_ET | EV_PERSIST, &on_fd_event, this);
  if (ev == nullptr) return absl::ResourceExhaustedError(absl::StrCat("event_new for fd ", fd));
  errno = 0;
  if (event_add(ev, nullptr) != 0) {
    const int err = errno != 0 ? errno : EIO;
    event_free(ev);
    // A character device without poll support (epoll_ctl EPERM) is always ready as well.
    if (err == EPERM) return Registration::kUnpollable;
    return errno_status(err, "event_add", fd);
  }
  if (static_cast<size_t>(fd) >= events_.size()) events_.resize(static_cast<size_t>(fd) * 2 + 64);
  events_[static_cast<size_t>(fd)] = ev;
  return Registration::kRegistered;
}

void LibeventBackend::unregister_fd(int fd) {
  event*& ev = events_[static_cast<size_t>(fd)];
  event_free(ev);  // deletes the event (epoll_ctl DEL) first
  ev = nullptr;
}

void LibeventBackend::on_fd_event(int fd, short what, void* arg) {
  auto* self = static_cast<LibeventBackend*>(arg);
  self->events_total_.add();
  // EPOLLERR/EPOLLHUP arrive as EV_READ|EV_WRITE.
  self->deliver_edge(fd, what & EV_READ, what & EV_WRITE, /*hangup=*/false);
}

void LibeventBackend::on_wakeup(int /*fd*/, short /*what*/, void* arg) {
  static_cast<LibeventBackend*>(arg)->drain_wakeup();
}

void LibeventBackend::on_timer(int fd, short /*what*/, void* arg) {
  auto* self = static_cast<LibeventBackend*>(arg);
  uint64_t expirations;
  while (::read(fd, &expirations, sizeof expirations) > 0) {
  }
  self->timer_armed_ = false;
}

bool LibeventBackend::arm_timer(Duration timeout) {
  const Deadline target = deadline_after(timeout);
  if (timer_armed_ && timer_deadline_ - kTimerSlack <= target) return true;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(target.time_since_epoch()).count();
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  if (::timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr) != 0) return false;
  timer_arms_.add();
  timer_armed_ = true;
  timer_deadline_ = target;
  return true;
}

void LibeventBackend::poll(Duration timeout) {
  loop_thread_.check();
  // EVLOOP_ONCE blocks until some event is active, runs every active callback and returns. For a
  // zero timeout it is combined with EVLOOP_NONBLOCK (poll with a zero timeout): NONBLOCK alone
  // keeps dispatching until a dispatch finds nothing, an extra epoll_wait whenever there was work.
  int flags = EVLOOP_ONCE;
  if (timeout == Duration::zero() || (timeout > Duration::zero() && !arm_timer(timeout))) {
    flags |= EVLOOP_NONBLOCK;  // also when the timerfd cannot be armed: never oversleep a timer
  }
  loop_calls_.add();
  if (event_base_loop(base_, flags) < 0) loop_errors_.add();  // the reactor polls again
}

void LibeventBackend::counters(std::vector<Counter>& out) const {
  out.push_back({"libevent_loop_calls_total", loop_calls_.get()});
  out.push_back({"libevent_loop_errors_total", loop_errors_.get()});
  out.push_back({"libevent_events_total", events_total_.get()});
  out.push_back({"libevent_timer_arms_total", timer_arms_.get()});
  out.push_back({"wakeups_total", wakeups()});
}

absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend() {
  absl::StatusOr<std::unique_ptr<LibeventBackend>> b = LibeventBackend::create();
  if (!b.ok()) return b.status();
  return std::unique_ptr<Backend>(*std::move(b));
}

}  // namespace reactor
