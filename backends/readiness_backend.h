// The part of a readiness backend (epoll, libevent) that does not depend on how readiness is
// learned: try the system call, and on EAGAIN wait for the fd with wait(), then try again.
//
// The base keeps one record per fd: the fibers waiting to read and to write, the edges that came
// while nobody waited, and whether the fd is registered or cannot be polled at all. A backend
// registers each fd once, edge-triggered for both directions, the first time a fiber waits on it
// (register_fd), deregisters it in close() (unregister_fd), and reports every edge its poll sees
// with deliver_edge(). Cross-thread wakeup is an eventfd the backend watches for reading: wakeup()
// writes it only when no wakeup is already pending, and the backend's poll calls drain_wakeup()
// when it is readable.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "reactor/backend.h"
#include "reactor/fiber.h"
#include "reactor/reactor.h"
#include "reactor/stats.h"
#include "reactor/thread_check.h"

namespace reactor {

class ReadinessBackend : public Backend {
 public:
  ~ReadinessBackend() override;  // closes the wakeup eventfd. Loop thread.

  // Loop thread, inside a fiber.
  absl::StatusOr<int> accept(int fd, sockaddr_storage* peer, Deadline deadline) override;
  absl::Status connect(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) override;
  absl::StatusOr<size_t> recv(int fd, std::span<std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> send(int fd, std::span<const std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> readv(int fd, std::span<const iovec> iov, Deadline deadline) override;
  absl::StatusOr<size_t> writev(int fd, std::span<const iovec> iov, Deadline deadline) override;
  absl::Status wait(int fd, Interest interest, Deadline deadline) final;
  // Any thread. A recv waits for readiness first, then copies: the buffer is touched at return.
  bool recv_holds_buffer() const final { return false; }
  // Loop thread. Nothing to hand over: a readiness backend accepts only when a fiber asks, so
  // accept(fd) returns OutOfRange from now on and wakes a fiber waiting in it with that.
  void stop_accepting(int fd) final;
  // Loop thread.
  absl::Status close(int fd) final;
  // Any thread.
  void wakeup() final;

 protected:
  // Whether a backend's edges say when the peer's end or an error arrived (deliver_edge's
  // `hangup`). Only then can a short read be trusted to have emptied the fd: the next recv waits
  // for the edge before trying, instead of making a system call that must fail with EAGAIN.
  enum class ShortReads : uint8_t { kRetry, kWaitForEdge };

  // `what` names the backend in the loop-thread check's message; the backend owns `wakeup_fd`
  // (a non-blocking eventfd) from here on. Loop thread.
  ReadinessBackend(const char* what, int wakeup_fd, ShortReads short_reads);

  enum class Registration : uint8_t {
    kRegistered,
    kUnpollable,  // a regular file, a directory, a device without poll: always ready
  };
  // Registers fd with the kernel's readiness source, or says that it cannot be polled (epoll_ctl
  // refuses such an fd with EPERM). Asked once per fd until close(). Loop thread.
  virtual absl::StatusOr<Registration> register_fd(int fd) = 0;
  // Forgets a registered fd before close() closes it. Loop thread.
  virtual void unregister_fd(int fd) = 0;

  // fd became readable and/or writable (an error or hang-up makes it both); `hangup`: the edge
  // said the peer's end or an error arrived. Wakes the waiting fiber, or keeps the edge for the
  // next wait. Loop thread, scheduler context (the backend's poll). Inline in the poll: every
  // edge pays it.
  void deliver_edge(int fd, bool readable, bool writable, bool hangup);
  // Reads the wakeup eventfd back to zero after poll saw it readable. Loop thread.
  void drain_wakeup();

  int wakeup_fd() const { return wakeup_fd_; }
  // Any thread.
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }
  uint64_t reads_skipped() const { return reads_skipped_.get(); }

  LoopThreadCheck loop_thread_;

 private:
  // 32 bytes: an fd's record is a shift away, and the bounds check needs no division.
  struct alignas(32) FdRecord {
    detail::Fiber* reader = nullptr;
    detail::Fiber* writer = nullptr;
    bool registered = false;
    bool unpollable = false;  // never registered, always ready
    bool ready_read = false;  // an edge arrived while nobody waited to read
    bool ready_write = false;
    // A short read empties it: kWaitForEdge, short_read_drains, and no edge has said the peer's
    // end or an error arrived (which may be queued behind the data a short read stopped at).
    bool drains = false;
    bool drained = false;         // the last read was short, and no wait since
    bool accept_stopped = false;  // stop_accepting(): accept returns OutOfRange until close()
  };

  FdRecord& record(int fd) {
    if (static_cast<size_t>(fd) >= fds_.size()) [[unlikely]] {
      grow_records(fd);
    }
    return fds_[static_cast<size_t>(fd)];
  }
  // The record, or null if fd has none yet (or is negative).
  FdRecord* find(int fd) {
    return static_cast<size_t>(fd) < fds_.size() ? &fds_[static_cast<size_t>(fd)] : nullptr;
  }
  void grow_records(int fd);
  // send() after EAGAIN: waits until fd is writable, then sends again.
  absl::StatusOr<size_t> send_when_writable(int fd, std::span<const std::byte> buf,
                                            Deadline deadline);
  // send() that failed with -n (the kernel's -errno).
  [[gnu::cold]] static absl::StatusOr<size_t> send_failed(int fd, long n);
  // wait() for a registered fd: r is fd's record, which a park may move (the vector grows).
  // Forgets that the last read was short (drained: a recv that returned fewer bytes than asked
  // left the receive queue empty, so the next recv waits for the edge first).
  // Inline in recv() and wait(): the recv after a short read waits here for every request.
  [[gnu::always_inline]] absl::Status wait_registered(int fd, FdRecord& r, bool read,
                                                      Deadline deadline);

  const int wakeup_fd_;
  const ShortReads short_reads_;
  std::atomic<bool> wakeup_pending_{false};
  std::vector<FdRecord> fds_;
  RelaxedCounter reads_skipped_;      // recvs that waited first (drained)
  std::atomic<uint64_t> wakeups_{0};  // written from any thread
};

inline void ReadinessBackend::deliver_edge(int fd, bool readable, bool writable, bool hangup) {
  FdRecord& r = record(fd);
  // After the edge that reported the peer's FIN or an error, a short read may have stopped at
  // that end, which no later edge will report again: short reads prove nothing from now on.
  if (hangup) r.drains = false;
  // A waiter that is no longer parked (its deadline or a cancel woke it, and it has not run yet)
  // cannot take the edge: keep it for the next wait.
  if (readable) {
    detail::Fiber* const f = std::exchange(r.reader, nullptr);
    if (f == nullptr || !f->reactor->wake_ok(f)) r.ready_read = true;
  }
  if (writable) {
    detail::Fiber* const f = std::exchange(r.writer, nullptr);
    if (f == nullptr || !f->reactor->wake_ok(f)) r.ready_write = true;
  }
}

// Whether a read returning fewer bytes than asked means fd had nothing more to read: stream
// sockets, pipes, eventfds, ttys; not datagram or seqpacket sockets (one message per read).
bool short_read_drains(int fd);

}  // namespace reactor
