#include "backends/epoll_backend.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

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

EpollBackend::EpollBackend(int epfd, int eventfd)
    : ReadinessBackend("epoll backend", eventfd, ShortReads::kWaitForEdge), epfd_(epfd) {
  events_.resize(256);
}

EpollBackend::~EpollBackend() {
  loop_thread_.check();
  ::close(epfd_);
}

absl::StatusOr<EpollBackend::Registration> EpollBackend::register_fd(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.fd = fd;
  ctl_calls_.add();
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    // Regular files, directories and devices without poll cannot be polled: always ready.
    if (errno == EPERM) return Registration::kUnpollable;
    return errno_status(errno, "epoll_ctl(ADD)", fd);
  }
  return Registration::kRegistered;
}

void EpollBackend::unregister_fd(int fd) {
  ctl_calls_.add();
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EpollBackend::poll(Duration timeout) {
  loop_thread_.check();
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
    if (ev.data.fd == wakeup_fd()) {
      drain_wakeup();
      continue;
    }
    const bool error = ev.events & (EPOLLERR | EPOLLHUP);
    deliver_edge(ev.data.fd, error || (ev.events & (EPOLLIN | EPOLLRDHUP)),
                 error || (ev.events & EPOLLOUT), error || (ev.events & EPOLLRDHUP));
  }
  if (static_cast<size_t>(n) == events_.size() && events_.size() < 4096) {
    events_.resize(events_.size() * 2);
  }
}

void EpollBackend::counters(std::vector<Counter>& out) const {
  out.push_back({"epoll_wait_calls_total", wait_calls_.get()});
  out.push_back({"epoll_events_total", events_total_.get()});
  out.push_back({"epoll_ctl_calls_total", ctl_calls_.get()});
  out.push_back({"epoll_reads_skipped_total", reads_skipped()});
  out.push_back({"wakeups_total", wakeups()});
}

}  // namespace reactor
