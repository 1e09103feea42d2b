#include "backends/epoll_backend.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"

namespace reactor {

absl::StatusOr<std::unique_ptr<EpollBackend>> EpollBackend::create() {
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return errno_status(errno, "epoll_create1");
  int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    absl::Status s = errno_status(errno, "eventfd");
    ::close(epfd);
    return s;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = efd;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) != 0) {
    absl::Status s = errno_status(errno, "epoll_ctl(ADD eventfd)");
    ::close(efd);
    ::close(epfd);
    return s;
  }
  return std::unique_ptr<EpollBackend>(new EpollBackend(epfd, efd));
}

EpollBackend::EpollBackend(int epfd, int eventfd) : epfd_(epfd), eventfd_(eventfd) {
  events_.resize(256);
}

EpollBackend::~EpollBackend() {
  ::close(eventfd_);
  ::close(epfd_);
}

EpollBackend::FdRecord& EpollBackend::record(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) * 2 + 64);
  return fds_[static_cast<size_t>(fd)];
}

absl::Status EpollBackend::wait(int fd, Interest interest, Deadline deadline) {
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("wait on invalid fd ", fd));
  const bool read = interest == Interest::kRead;
  {
    FdRecord& r = record(fd);
    if (!r.registered) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.fd = fd;
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        // Regular files and directories cannot be polled: they are always ready.
        if (errno == EPERM) return absl::OkStatus();
        return errno_status(errno, "epoll_ctl(ADD)", fd);
      }
      r.registered = true;
      r.drains = short_read_drains(fd);
    }
    r.drained = false;
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
    // Woken by a deadline or cancel: stop being the waiter (close() may have cleared it already).
    FdRecord& r = record(fd);
    detail::Fiber*& slot = read ? r.reader : r.writer;
    if (slot == detail::current_fiber()) slot = nullptr;
  }
  return s;
}

void EpollBackend::note_short_read(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) return;
  FdRecord& r = fds_[static_cast<size_t>(fd)];
  // After the edge that reported the peer's FIN or an error, a short read may have stopped at
  // that end, which no later edge will report again.
  r.drained = r.registered && r.drains && !r.hangup;
}

bool EpollBackend::known_drained(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return false;
  const FdRecord& r = fds_[static_cast<size_t>(fd)];
  if (!r.drained || r.ready_read) return false;
  reads_skipped_.add();
  return true;
}

absl::Status EpollBackend::close(int fd) {
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("close of invalid fd ", fd));
  if (static_cast<size_t>(fd) < fds_.size()) {
    FdRecord& r = fds_[static_cast<size_t>(fd)];
    const std::string why = absl::StrCat("fd ", fd, " closed while an operation was pending");
    if (r.reader != nullptr) detail::wake(r.reader, absl::FailedPreconditionError(why));
    if (r.writer != nullptr) detail::wake(r.writer, absl::FailedPreconditionError(why));
    if (r.registered) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    r = FdRecord{};
  }
  if (::close(fd) != 0 && errno != EINTR) return errno_status(errno, "close", fd);
  return absl::OkStatus();
}

void EpollBackend::poll(Duration timeout) {
  int ms = -1;
  if (timeout >= Duration::zero()) {
    // Round up: waking before the next timer only to poll again would spin.
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    ms = static_cast<int>(std::min<int64_t>((us + 999) / 1000, 1 << 30));
  }
  const int n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), ms);
  wait_calls_.add();
  if (n <= 0) return;  // timeout, or EINTR: the loop polls again
  events_total_.add(static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events_[static_cast<size_t>(i)];
    const int fd = ev.data.fd;
    if (fd == eventfd_) {
      uint64_t value;
      while (::read(eventfd_, &value, sizeof value) > 0) {
      }
      wakeup_pending_.store(false);
      continue;
    }
    FdRecord& r = record(fd);
    const bool error = ev.events & (EPOLLERR | EPOLLHUP);
    if (ev.events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) r.hangup = true;
    if (error || (ev.events & (EPOLLIN | EPOLLRDHUP))) {
      if (r.reader != nullptr) {
        detail::wake(std::exchange(r.reader, nullptr));
      } else {
        r.ready_read = true;
      }
    }
    if (error || (ev.events & EPOLLOUT)) {
      if (r.writer != nullptr) {
        detail::wake(std::exchange(r.writer, nullptr));
      } else {
        r.ready_write = true;
      }
    }
  }
  if (static_cast<size_t>(n) == events_.size() && events_.size() < 4096) {
    events_.resize(events_.size() * 2);
  }
}

void EpollBackend::wakeup() {
  if (wakeup_pending_.exchange(true)) return;
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t one = 1;
  ssize_t w = ::write(eventfd_, &one, sizeof one);
  (void)w;  // EAGAIN means the counter is already non-zero: the loop wakes anyway
}

void EpollBackend::counters(std::vector<Counter>& out) const {
  out.push_back({"epoll_wait_calls_total", wait_calls_.get()});
  out.push_back({"epoll_events_total", events_total_.get()});
  out.push_back({"epoll_reads_skipped_total", reads_skipped_.get()});
  out.push_back({"wakeups_total", wakeups_.load(std::memory_order_relaxed)});
}

}  // namespace reactor
