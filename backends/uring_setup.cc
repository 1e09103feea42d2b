#include "backends/uring_setup.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "reactor/error.h"

namespace reactor {
namespace {

// Linux 6.6, newer than liburing 2.3's headers (which stop at 6.1).
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif

// io_uring_setup and the ring's mappings, by hand: liburing 2.3's io_uring_queue_init_params
// fills the SQ index array with the identity after mapping it at sq_off.array, which on a ring
// without the array (NO_SQARRAY: sq_off.array is 0) would write over the ring's head. Its own
// submission path never writes the array, so the rest of liburing works on either ring.
int setup_ring(unsigned entries, io_uring_params* params, io_uring* ring) {
  const int fd = static_cast<int>(::syscall(__NR_io_uring_setup, entries, params));
  if (fd < 0) return -errno;
  const int r = io_uring_queue_mmap(fd, params, ring);
  if (r < 0) {
    ::close(fd);
    return r;
  }
  if ((params->flags & IORING_SETUP_NO_SQARRAY) == 0) {
    for (unsigned i = 0; i < ring->sq.ring_entries; ++i) ring->sq.array[i] = i;
  }
  ring->features = params->features;
  return 0;
}

// Set-up levels, best first. SUBMIT_ALL (5.18) keeps one bad SQE from stalling the rest of the
// batch; every kernel with COOP_TASKRUN (5.19) or DEFER_TASKRUN (6.1) has it. TASKRUN_FLAG (5.19)
// makes the kernel say in the SQ ring's flags when completions wait for an enter as task work, so
// a zero-timeout poll can skip the enter otherwise. The last level is the bare ring of 5.1, whose
// completions need no enter (the kernel interrupts the task to post them).
// The SQPOLL levels keep SINGLE_ISSUER (6.0: with SQPOLL the SQ thread is the one issuer) and
// SUBMIT_ALL where the kernel has them; the last one is SQPOLL alone.
constexpr unsigned kSetupFlags[kUringLastSqpollLevel + 1] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_CQSIZE,
    0,
    IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_CQSIZE,
    IORING_SETUP_SQPOLL | IORING_SETUP_CQSIZE,
};

struct RequiredOp {
  int opcode;
  const char* name;
  const char* since;
};
// What the backend submits, with the kernel that brought each opcode.
constexpr RequiredOp kRequiredOps[] = {
    {IORING_OP_READV, "READV", "5.1"},
    {IORING_OP_WRITEV, "WRITEV", "5.1"},
    {IORING_OP_POLL_ADD, "POLL_ADD", "5.1"},
    {IORING_OP_SENDMSG, "SENDMSG", "5.3"},
    {IORING_OP_RECVMSG, "RECVMSG", "5.3"},
    {IORING_OP_ACCEPT, "ACCEPT", "5.5"},
    {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL", "5.5"},
    {IORING_OP_CONNECT, "CONNECT", "5.5"},
    {IORING_OP_READ, "READ", "5.6"},
    {IORING_OP_SEND, "SEND", "5.6"},
    {IORING_OP_RECV, "RECV", "5.6"},
};

}  // namespace

absl::Status init_uring(io_uring* ring, int level, const UringSetup& setup, bool* no_sqarray) {
  io_uring_params params{};
  params.flags = kSetupFlags[level];
  params.cq_entries = setup.cq_entries;
  const bool sqpoll = level >= kUringFirstSqpollLevel;
  if (sqpoll) {
    params.sq_thread_idle = setup.sqpoll_idle_ms;
    if (setup.sqpoll_cpu >= 0) {
      params.flags |= IORING_SETUP_SQ_AFF;
      params.sq_thread_cpu = static_cast<unsigned>(setup.sqpoll_cpu);
    }
  }
  int r = -EINVAL;
  *no_sqarray = false;
  if (setup.no_sqarray) {
    io_uring_params with = params;
    with.flags |= IORING_SETUP_NO_SQARRAY;
    r = setup_ring(setup.sq_entries, &with, ring);
    *no_sqarray = r == 0;
  }
  if (r == -EINVAL) r = setup_ring(setup.sq_entries, &params, ring);
  if (r < 0) {
    return errno_status(-r, sqpoll ? (setup.sqpoll_cpu >= 0 ? "io_uring_setup(SQPOLL|SQ_AFF)"
                                                            : "io_uring_setup(SQPOLL)")
                                   : "io_uring_setup");
  }
  return absl::OkStatus();
}

absl::StatusOr<UringFeatures> probe_uring(io_uring* ring) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return absl::FailedPreconditionError(
        "io_uring: cannot probe opcodes (IORING_REGISTER_PROBE needs Linux 5.6)");
  }
  for (const RequiredOp& op : kRequiredOps) {
    if (!io_uring_opcode_supported(probe, op.opcode)) {
      io_uring_free_probe(probe);
      return absl::FailedPreconditionError(absl::StrCat(
          "io_uring: the kernel lacks opcode IORING_OP_", op.name, " (Linux ", op.since, ")"));
    }
  }
  // Multishot accept and IORING_ASYNC_CANCEL_FD came with Linux 5.19, as did IORING_OP_SOCKET,
  // which the probe can see (flags cannot be probed).
  UringFeatures f;
  f.multishot_accept = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
  f.cancel_fd = f.multishot_accept;
  f.files_update = io_uring_opcode_supported(probe, IORING_OP_FILES_UPDATE);
  // Multishot receive (IORING_RECV_MULTISHOT) came with Linux 6.0, as did IORING_OP_SEND_ZC.
  f.multishot_recv = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
  f.msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
  io_uring_free_probe(probe);
  return f;
}

}  // namespace reactor
