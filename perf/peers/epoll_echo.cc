// The floor of the comparison: a single-threaded TCP echo server on raw epoll, as little as an
// echo server can do. Level-triggered; one shared 16 KiB read buffer; a connection whose send
// would block keeps its remainder and stops being read until the remainder is written.
// --idle-thread starts a second thread that only blocks, before the first connection: the same
// loop in a multithreaded process, whose fd table is shared, so the kernel's fd lookup per
// recv/send takes and drops a file reference (an atomic each) that a single-threaded process skips
// (fs/file.c, __fget_light). perf/compare.py's "epoll+thread" row.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "perf/peers/peer_args.h"

namespace {

struct Conn {
  std::string pending;  // bytes read but not yet written back
};

std::vector<Conn> conns;  // by fd

void set_events(int ep, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

void drop(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns[fd].pending.clear();
}

// Writes what it can; true when everything went out.
bool write_some(int fd, const char* data, size_t n, size_t* written) {
  *written = 0;
  while (*written < n) {
    const ssize_t w = send(fd, data + *written, n - *written, MSG_NOSIGNAL);
    if (w > 0) {
      *written += static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const reactor::peers::PeerArgs args = reactor::peers::parse_peer_args(argc, argv, true);
  signal(SIGPIPE, SIG_IGN);
  if (args.idle_thread) {
    std::thread([] {
      for (;;) pause();  // blocks until the process ends; a signal that returns only resumes it
    }).detach();
  }
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(args.port));
  inet_pton(AF_INET, args.host.c_str(), &addr.sin_addr);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4096) != 0) {
    perror("epoll_echo: bind/listen");
    return 71;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  reactor::peers::announce(ntohs(addr.sin_port));

  static char buf[reactor::peers::kReadSize];
  epoll_event events[256];
  for (;;) {
    const int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (static_cast<size_t>(c) >= conns.size()) conns.resize(c + 1024);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      Conn& conn = conns[fd];
      if (!conn.pending.empty()) {  // EPOLLOUT: finish the remainder, then read again
        size_t w = 0;
        const bool all = write_some(fd, conn.pending.data(), conn.pending.size(), &w);
        if (!all && errno != EAGAIN) {
          drop(ep, fd);
          continue;
        }
        conn.pending.erase(0, w);
        if (conn.pending.empty()) set_events(ep, fd, EPOLLIN);
        continue;
      }
      const ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(ep, fd);
        continue;
      }
      if (r < 0) continue;
      size_t w = 0;
      if (!write_some(fd, buf, static_cast<size_t>(r), &w)) {
        if (errno != EAGAIN) {
          drop(ep, fd);
          continue;
        }
        conn.pending.assign(buf + w, static_cast<size_t>(r) - w);
        set_events(ep, fd, EPOLLOUT);
      }
    }
  }
}
