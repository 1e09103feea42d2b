#include "backends/libevent_backend.h"

#include <event2/event.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"

namespace reactor {
namespace {

#if !defined(NDEBUG) || defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
constexpr bool kCheckThreads = true;
#else
constexpr bool kCheckThreads = false;
#endif

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
    : base_(base), eventfd_(eventfd), timerfd_(timerfd), owner_(pthread_self()) {}

LibeventBackend::~LibeventBackend() {
  assert_loop_thread();
  // Fibers still parked here were abandoned by the reactor; only the events need freeing.
  for (FdRecord& r : fds_) {
    if (r.ev != nullptr) event_free(r.ev);
  }
  if (wakeup_event_ != nullptr) event_free(wakeup_event_);
  if (timer_event_ != nullptr) event_free(timer_event_);
  event_base_free(base_);
  ::close(timerfd_);
  ::close(eventfd_);
}

void LibeventBackend::assert_loop_thread() const {
  if (kCheckThreads && !pthread_equal(owner_, pthread_self())) {
    std::fprintf(stderr, "libevent backend: loop-thread method called from another thread\n");
    std::abort();
  }
}

std::string_view LibeventBackend::method() const {
  return event_base_get_method(base_);
}

LibeventBackend::FdRecord& LibeventBackend::record(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) * 2 + 64);
  return fds_[static_cast<size_t>(fd)];
}

absl::Status LibeventBackend::register_fd(int fd, FdRecord& r) {
  event* ev = event_new(base_, fd, EV_READ | EV_WRITE | EV_ET | EV_PERSIST, &on_fd_event, this);
  if (ev == nullptr) return absl::ResourceExhaustedError(absl::StrCat("event_new for fd ", fd));
  if (event_add(ev, nullptr) != 0) {
    const int err = errno != 0 ? errno : EIO;
    event_free(ev);
    return errno_status(err, "event_add", fd);
  }
  r.ev = ev;
  return absl::OkStatus();
}

absl::Status LibeventBackend::wait(int fd, Interest interest, Deadline deadline) {
  assert_loop_thread();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("wait on invalid fd ", fd));
  const bool read = interest == Interest::kRead;
  {
    FdRecord& r = record(fd);
    if (r.unpollable) return absl::OkStatus();
    if (r.ev == nullptr) {
      if (always_ready(fd)) {
        r.unpollable = true;
        return absl::OkStatus();
      }
      errno = 0;
      absl::Status s = register_fd(fd, r);
      if (status_errno(s) == EPERM) {
        // A character device without poll support (epoll_ctl EPERM) is always ready as well.
        r.unpollable = true;
        return absl::OkStatus();
      }
      if (!s.ok()) return s;
    }
    bool& ready = read ? r.ready_read : r.ready_write;
    if (ready) {
      ready = false;
      return absl::OkStatus();
    }
    detail::Fiber*& slot = read ? r.reader : r.writer;
    if (slot != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "fd ", fd, ": another fiber is already waiting to ", read ? "read" : "write"));
    }
    slot = detail::current_fiber();
  }
  absl::Status s = detail::park(deadline, read ? "wait for readable fd" : "wait for writable fd");
  if (!s.ok()) {
    // Woken by a deadline or cancel: stop being the waiter (close() may have cleared it already,
    // and the fd number may even belong to a new file by now). The record may have moved.
    FdRecord& r = record(fd);
    detail::Fiber*& slot = read ? r.reader : r.writer;
    if (slot == detail::current_fiber()) slot = nullptr;
  }
  return s;
}

absl::Status LibeventBackend::close(int fd) {
  assert_loop_thread();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("close of invalid fd ", fd));
  if (static_cast<size_t>(fd) < fds_.size()) {
    FdRecord& r = fds_[static_cast<size_t>(fd)];
    if (r.reader != nullptr || r.writer != nullptr) {
      const std::string why = absl::StrCat("fd ", fd, " closed while an operation was pending");
      if (r.reader != nullptr) detail::wake(r.reader, absl::FailedPreconditionError(why));
      if (r.writer != nullptr) detail::wake(r.writer, absl::FailedPreconditionError(why));
    }
    if (r.ev != nullptr) event_free(r.ev);  // deletes the event (epoll_ctl DEL) first
    r = FdRecord{};
  }
  if (::close(fd) != 0 && errno != EINTR) return errno_status(errno, "close", fd);
  return absl::OkStatus();
}

void LibeventBackend::on_fd_event(int fd, short what, void* arg) {
  auto* self = static_cast<LibeventBackend*>(arg);
  self->events_total_.add();
  FdRecord& r = self->fds_[static_cast<size_t>(fd)];
  // EPOLLERR/EPOLLHUP arrive as EV_READ|EV_WRITE. A waiter that is no longer parked (cancelled,
  // not yet run) cannot take the edge: keep it for the next wait.
  if (what & EV_READ) {
    if (r.reader == nullptr || !detail::wake(std::exchange(r.reader, nullptr))) r.ready_read = true;
  }
  if (what & EV_WRITE) {
    if (r.writer == nullptr || !detail::wake(std::exchange(r.writer, nullptr))) {
      r.ready_write = true;
    }
  }
}

void LibeventBackend::on_wakeup(int fd, short /*what*/, void* arg) {
  auto* self = static_cast<LibeventBackend*>(arg);
  uint64_t value;
  while (::read(fd, &value, sizeof value) > 0) {
  }
  // Cleared after draining: a wakeup() between the two writes nothing, but the loop is returning
  // from poll anyway and looks at the inbox and the stop flag next.
  self->wakeup_pending_.store(false);
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
  assert_loop_thread();
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

void LibeventBackend::wakeup() {
  // Not event_base_loopbreak(): on a NOLOCK base it is a plain, unsynchronised write from another
  // thread that does not interrupt a blocked epoll_wait (libevent notifies the loop only on bases
  // with locking), and event_base_loop clears the flag on entry, so a break that lands between
  // two polls is lost. An eventfd write is thread-safe and stays readable until the loop drains it.
  if (wakeup_pending_.exchange(true)) return;
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t w = ::write(eventfd_, &one, sizeof one);
  (void)w;  // EAGAIN means the counter is already non-zero: the loop wakes anyway
}

void LibeventBackend::counters(std::vector<Counter>& out) const {
  out.push_back({"libevent_loop_calls_total", loop_calls_.get()});
  out.push_back({"libevent_loop_errors_total", loop_errors_.get()});
  out.push_back({"libevent_events_total", events_total_.get()});
  out.push_back({"libevent_timer_arms_total", timer_arms_.get()});
  out.push_back({"wakeups_total", wakeups_.load(std::memory_order_relaxed)});
}

absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend() {
  absl::StatusOr<std::unique_ptr<LibeventBackend>> b = LibeventBackend::create();
  if (!b.ok()) return b.status();
  return std::unique_ptr<Backend>(*std::move(b));
}

}  // namespace reactor
