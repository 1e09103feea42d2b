// The I/O backend interface (layer 2): what every backend — epoll, io_uring, libevent — implements.
//
// I/O calls suspend the calling fiber, never the loop. Each takes a deadline (DeadlineExceeded) and
// returns Cancelled when the fiber is cancelled. A readiness backend tries the system call first
// and waits on EAGAIN (see readiness_backend.h); a completion backend submits the operation itself.
// The factory, create_backend(), lives apart in backends/registry.cc: this header knows no backend.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/time.h"

namespace reactor {

enum class Interest : uint8_t { kRead = 1, kWrite = 2 };

struct Counter {
  std::string_view name;  // Prometheus-style, e.g. "epoll_wait_calls_total"
  uint64_t value;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "epoll", "io_uring", "libevent". Any thread.
  virtual std::string_view name() const = 0;

  // Fiber-suspending I/O. Loop thread, inside a fiber. `fd` is non-blocking.
  // accept returns a non-blocking, close-on-exec connection; `peer` may be null.
  virtual absl::StatusOr<int> accept(int fd, sockaddr_storage* peer, Deadline deadline) = 0;
  virtual absl::Status connect(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) = 0;
  // 0 bytes from recv/readv means end of stream (or an empty buffer).
  virtual absl::StatusOr<size_t> recv(int fd, std::span<std::byte> buf, Deadline deadline) = 0;
  // May send less than asked; never raises SIGPIPE (EPIPE is returned instead).
  // The caller's buffer is free again when send/writev returns. A backend may return before the
  // bytes reach the kernel (io_uring's async_send copies them into the connection's outgoing
  // queue): it then keeps their order on the fd, bounds the bytes it holds per fd (past the
  // bound the call waits, so a slow reader cannot grow memory), reports an error of queued bytes
  // on the next send/writev/flush on that fd and at close, and sends them before a later
  // flush() returns. recv on the fd is not held back by queued bytes.
  virtual absl::StatusOr<size_t> send(int fd, std::span<const std::byte> buf,
                                      Deadline deadline) = 0;
  virtual absl::StatusOr<size_t> readv(int fd, std::span<const iovec> iov, Deadline deadline) = 0;
  virtual absl::StatusOr<size_t> writev(int fd, std::span<const iovec> iov, Deadline deadline) = 0;
  // Waits until fd is readable or writable (or in error). May return spuriously; retry the call.
  virtual absl::Status wait(int fd, Interest interest, Deadline deadline) = 0;
  // Whether a recv that waits keeps the caller's buffer while it waits (a completion backend: the
  // kernel fills it later) rather than touching it only as it returns (a readiness backend). Only
  // when false may fibers share one buffer for their reads. Any thread.
  virtual bool recv_holds_buffer() const { return true; }

  // A receive into memory the backend owns, lent to the caller: the bytes received (empty at end
  // of stream). They stay valid until the next recv_lent, recv, readv or release_lent on fd, or
  // close(fd); then the backend takes the memory back. One fiber at a time receives on an fd
  // this way (a second gets FailedPrecondition). Only where lends_buffers(): io_uring with a
  // multishot receive into its provided-buffer ring, where the kernel fills a ring buffer when
  // data arrives rather than a buffer the waiting fiber holds, so a connection waiting for input
  // holds no buffer and its stack may be released (Reactor::allow_stack_release). Elsewhere
  // recv_lent is Unimplemented and release_lent does nothing. Loop thread, inside a fiber
  // (release_lent: any fiber of the loop). recv, readv and wait(kRead) on an fd received on this
  // way take from the same queue, in order.
  virtual bool lends_buffers() const { return false; }
  virtual absl::StatusOr<std::span<const std::byte>> recv_lent(int fd, Deadline deadline) {
    (void)fd;
    (void)deadline;
    return absl::UnimplementedError("recv_lent: this backend does not lend buffers");
  }
  virtual void release_lent(int fd) { (void)fd; }
  // A send of bytes that lie in the memory recv_lent(fd) lent last, which the backend may send
  // without copying them: it then keeps that memory until the kernel has taken the bytes (the
  // caller reads the span no more, and the next call on fd does not take it back). Otherwise —
  // bytes queued before them, a span outside the lent memory, a backend that lends nothing — the
  // same as send(). Returns the bytes accepted, as send() does. Loop thread, inside a fiber.
  virtual absl::StatusOr<size_t> send_lent(int fd, std::span<const std::byte> buf,
                                           Deadline deadline) {
    return send(fd, buf, deadline);
  }

  // Waits until every byte accepted by send/writev on fd was taken by the kernel; returns the
  // error of a queued send, if any. Callers use it before shutdown(SHUT_WR) and other calls that
  // must follow the bytes. Loop thread, inside a fiber (backends that queue nothing: at once).
  virtual absl::Status flush(int fd, Deadline deadline) {
    (void)fd;
    (void)deadline;
    return absl::OkStatus();
  }

  // Stops accepting on the listening socket fd without closing it. accept(fd) still hands out the
  // connections the backend already took from the kernel (io_uring's multishot accept takes them
  // ahead of the fibers), then returns OutOfRange, at once and to a fiber waiting in it; what is
  // still in the kernel's queue stays there for another holder of the socket (the new process of an
  // upgrade, systemd's fd store). No connection is left in the queue that this backend's wait took
  // the kernel's wakeup for: a backend whose wait is exclusive (io_uring's) takes those itself, so
  // the other holder is never left unwoken. Call close(fd) after that OutOfRange. Loop thread.
  virtual void stop_accepting(int fd) = 0;

  // Resumes every operation pending on fd with an error (FailedPrecondition "closed"), forgets the
  // fd and closes it. Loop thread.
  virtual absl::Status close(int fd) = 0;

  // Waits up to `timeout` (negative: without limit) for I/O, then makes the fibers whose operations
  // finished runnable. Loop thread, scheduler context (never from a fiber).
  virtual void poll(Duration timeout) = 0;

  // Ends a poll in progress, or makes the next one return at once. Any thread.
  virtual void wakeup() = 0;

  // wakeup() for a caller whose own loop (if the calling thread runs one) is about to poll: a
  // fiber that parks right after, a job ending in scheduler context. A backend may let the
  // wakeup go with that loop's next poll (io_uring's MSG_RING: no system call of its own), or
  // when its run ends (end_run). Any thread.
  virtual void wakeup_deferred() { wakeup(); }

  // The reactor's run loop returns: what this backend left for its next poll that other loops
  // wait for (deferred wakeups) goes to the kernel now. Loop thread, scheduler context.
  virtual void end_run() {}

  // The backend's own counters, appended to `out`. Any thread (values are relaxed atomics).
  virtual void counters(std::vector<Counter>& out) const = 0;
};

// Settings for the backend create_backend() makes (the daemon's runtime.io_uring_* keys); each
// backend reads only its own.
struct BackendParams {
  // io_uring: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL), so the loop makes
  // no system call to submit while that thread is awake; it sleeps after `uring_sqpoll_idle_ms`
  // without work. `uring_sqpoll_cpu` >= 0 pins it to that CPU (IORING_SETUP_SQ_AFF). With it,
  // "auto" means io_uring: a kernel that refuses SQPOLL is an error, never a fallback to epoll.
  bool uring_sqpoll = false;
  int uring_sqpoll_cpu = -1;
  uint32_t uring_sqpoll_idle_ms = 1000;
  // io_uring: a poll that waits asks for as many completions as the previous poll reaped and
  // returns with fewer only after this many microseconds (batched waits, Linux 6.12); 0: off,
  // the default (on this machine they cost CPU per request wherever the shard is not saturated:
  // docs/backends.md, "Batched waits").
  static constexpr uint32_t kDefaultUringMinWaitUs = 0;
  uint32_t uring_min_wait_us = kDefaultUringMinWaitUs;
};

// Creates the backend `name` ("auto", "epoll", ...) for the calling thread's loop, or says why it
// cannot. Implemented by backends/registry.cc, the only place that knows every backend.
absl::StatusOr<std::unique_ptr<Backend>> create_backend(std::string_view name,
                                                        const BackendParams& params = {});

}  // namespace reactor
