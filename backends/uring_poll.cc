// The io_uring backend's submission side and its poll: SQEs taken from the ring, submitted with
// the loop's one io_uring_enter per poll (or, with SQPOLL, published to the kernel's SQ thread
// without a system call), and the completions reaped from the CQ in user space.
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "backends/uring_backend.h"
#include "backends/uring_ops.h"

namespace reactor {
namespace {

constexpr unsigned kReapBatch = 256;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

__kernel_timespec to_timespec(Duration d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  __kernel_timespec ts{};
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  return ts;
}

}  // namespace

io_uring_sqe* UringBackend::get_sqe() {
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    // The SQ is full before the loop's poll: submit what is there now.
    (void)enter_submit();
  }
  std::fprintf(stderr, "reactor: io_uring submission queue stays full\n");
  std::abort();
}

int UringBackend::enter_submit() {
  if (sqpoll_) return sqpoll_submit_now();
  const unsigned before = io_uring_smp_load_acquire(ring_.sq.khead);
  const int r = io_uring_submit(&ring_);
  enter_calls_.add();
  sqes_submitted_.add(io_uring_smp_load_acquire(ring_.sq.khead) - before);
  return r;
}

namespace {

// A full memory barrier (liburing's io_uring_smp_mb). GCC refuses a bare fence under TSan
// (-Werror=tsan: TSan does not model fences); there a sequentially consistent read-modify-write
// of a local atomic gives the same ordering (a locked instruction on x86-64).
inline void full_barrier() {
#if defined(REACTOR_TSAN)
  std::atomic<int> fence{0};
  fence.fetch_add(0, std::memory_order_seq_cst);
#else
  io_uring_smp_mb();
#endif
}

}  // namespace

void UringBackend::sqpoll_submit() {
  io_uring_sq& sq = ring_.sq;
  if (sq.sqe_head != sq.sqe_tail) {
    sqes_submitted_.add(sq.sqe_tail - sq.sqe_head);
    sq.sqe_head = sq.sqe_tail;
    // The SQEs' contents before the tail that makes them visible to the SQ thread.
    io_uring_smp_store_release(sq.ktail, sq.sqe_tail);
  }
  // The tail store before the flag load: the kernel sets NEED_WAKEUP, then looks at the tail once
  // more before it sleeps, so one of the two sides sees the other.
  full_barrier();
  if (io_uring_sq_ready(&ring_) == 0) return;  // the SQ thread took everything already
  if ((IO_URING_READ_ONCE(*sq.kflags) & IORING_SQ_NEED_WAKEUP) == 0) return;
  sqpoll_wakeups_.add();
  enter_calls_.add();
  (void)io_uring_enter(
      static_cast<unsigned>(ring_.enter_ring_fd), 0, 0,
      IORING_ENTER_SQ_WAKEUP | (ring_fd_registered_ ? IORING_ENTER_REGISTERED_RING : 0u), nullptr);
}

int UringBackend::sqpoll_submit_now() {
  const int published = static_cast<int>(ring_.sq.sqe_tail - ring_.sq.sqe_head);
  sqpoll_submit();
  // The SQ thread moves the ring's head past a batch after it has issued every SQE of it.
  for (unsigned spins = 0; io_uring_sq_ready(&ring_) > 0; ++spins) {
    if ((IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_NEED_WAKEUP) != 0) {
      sqpoll_submit();  // it went to sleep meanwhile
    } else if (spins < 256) {
      cpu_relax();
    } else {
      (void)::sched_yield();  // the SQ thread may share this CPU
    }
  }
  return published;
}

void UringBackend::poll(Duration timeout) {
  loop_thread_.check();
  // This thread wakes other io_uring loops by message through this ring from now on.
  if (msg_ring_) uring_detail::t_msg_sender = this;
  flush_sends();
  if (sqpoll_) {
    poll_sqpoll(timeout);
    return;
  }
  const unsigned before = io_uring_smp_load_acquire(ring_.sq.khead);
  // Each branch is at most one io_uring_enter that submits every SQE prepared since the last poll.
  if (timeout == Duration::zero() || io_uring_cq_ready(&ring_) > 0) {
    // Not waiting: the CQ is read in user space, so enter only to submit, or when the kernel holds
    // completions back (task work, with TASKRUN_FLAG; an overflowed CQ). A spinning loop (the
    // reactor's runtime.idle) thus makes no system call while nothing happens.
    const unsigned held =
        IO_URING_READ_ONCE(*ring_.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
    if (io_uring_sq_ready(&ring_) == 0 && held == 0) {
      reap();
      return;
    }
    (void)io_uring_submit_and_get_events(&ring_);
  } else if (min_wait_us_ > 0 && wait_target_ > 1) {
    // The last poll found several completions: wait for as many, or min_wait_us_.
    const unsigned asked = wait_target_;
    enter_batched_wait(timeout, asked);
    enter_calls_.add();
    sqes_submitted_.add(io_uring_smp_load_acquire(ring_.sq.khead) - before);
    const unsigned got = reap();
    batched_waits_.add();
    if (got < asked) batched_waits_short_.add();
    wait_target_ = got < kMinWaitEvents ? got : kMinWaitEvents;
    return;
  } else if (timeout < Duration::zero()) {
    (void)io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts = to_timespec(timeout);
    io_uring_cqe* cqe = nullptr;
    (void)io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);  // -ETIME: timed out
  }
  enter_calls_.add();
  sqes_submitted_.add(io_uring_smp_load_acquire(ring_.sq.khead) - before);
  const unsigned reaped = reap();
  wait_target_ = reaped < kMinWaitEvents ? reaped : kMinWaitEvents;
}

void UringBackend::enter_batched_wait(Duration timeout, unsigned events) {
  // liburing 2.3 cannot pass min_wait_usec: publish the prepared SQEs (the tail, as io_uring_submit
  // would) and make the enter here. The SQ index array, where the ring has one, maps entry i to
  // SQE i (liburing fills it so at set-up), so the tail is all the kernel reads.
  io_uring_sq& sq = ring_.sq;
  const unsigned to_submit = sq.sqe_tail - sq.sqe_head;
  if (to_submit > 0) {
    sq.sqe_head = sq.sqe_tail;
    io_uring_smp_store_release(sq.ktail, sq.sqe_tail);
  }
  io_uring_getevents_arg arg{};
  arg.pad = min_wait_us_;  // min_wait_usec
  // Always a timeout: without one the kernel ends the wait when min_wait_usec passes even with
  // no completion at all (io_cqring_min_timer_wakeup), so an idle shard would wake every
  // min_wait_us. With one, it goes on sleeping until the first completion or the timeout.
  __kernel_timespec ts =
      to_timespec(timeout > Duration::zero() ? timeout : Duration(std::chrono::hours(24)));
  arg.ts = reinterpret_cast<uintptr_t>(&ts);
  const unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG |
                         (ring_fd_registered_ ? IORING_ENTER_REGISTERED_RING : 0u);
  // -ETIME: the timeout passed; -EINTR: a signal. Either way the loop reaps what is there.
  (void)io_uring_enter2(static_cast<unsigned>(ring_.enter_ring_fd), to_submit, events, flags,
                        reinterpret_cast<sigset_t*>(&arg), sizeof arg);
}

// SQPOLL: submitting is publishing (sqpoll_submit); the SQ thread also runs the task work that
// posts completions, so the CQ fills without this thread entering. It enters only to wait when
// nothing has completed (a sleep: what `idle = spin` avoids) and to flush an overflowed CQ.
void UringBackend::poll_sqpoll(Duration timeout) {
  sqpoll_submit();
  if (timeout == Duration::zero() || io_uring_cq_ready(&ring_) > 0) {
    if ((IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0) {
      enter_calls_.add();
      (void)io_uring_get_events(&ring_);
    }
    reap();
    return;
  }
  io_uring_cqe* cqe = nullptr;
  enter_calls_.add();
  if (timeout < Duration::zero()) {
    (void)io_uring_wait_cqe(&ring_, &cqe);
  } else {
    __kernel_timespec ts = to_timespec(timeout);
    (void)io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);  // -ETIME: timed out
  }
  reap();
}

unsigned UringBackend::reap() {
  struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };
  Completion batch[kReapBatch];
  // Bounded so that handlers which complete new operations inline cannot keep the loop here.
  unsigned total = 0;
  while (total < ring_.cq.ring_entries) {
    unsigned n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch[n++] = {cqe->user_data, cqe->res, cqe->flags};
      if (n == kReapBatch) break;
    }
    if (n == 0) return total;
    // Copy, then release the slots: a handler may submit (a full SQ), and must find the CQ
    // consumed.
    io_uring_cq_advance(&ring_, n);
    cqes_reaped_.add(n);
    total += n;
    for (unsigned i = 0; i < n; ++i) handle_cqe(batch[i].user_data, batch[i].res, batch[i].flags);
  }
  return total;
}

}  // namespace reactor
