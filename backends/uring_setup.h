// Setting up a ring for the io_uring backend: the set-up levels it tries (ring flags, best first)
// and the probe that says whether this kernel has every opcode the backend submits, and which
// optional features it has.
#pragma once

#include <liburing.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace reactor {

// Level 0: SINGLE_ISSUER|DEFER_TASKRUN (6.1), 1: COOP_TASKRUN (5.19), 2: no flags (5.1).
// With SQPOLL (asked for, never a fallback): 3: SQPOLL|SINGLE_ISSUER (6.0), 4: SQPOLL (5.11 for an
// unprivileged process). The kernel refuses COOP_TASKRUN, TASKRUN_FLAG and DEFER_TASKRUN beside
// SQPOLL (EINVAL): the SQ thread runs the task work itself, no task is interrupted for it.
inline constexpr int kUringLastSetupLevel = 2;
inline constexpr int kUringFirstSqpollLevel = 3;
inline constexpr int kUringLastSqpollLevel = 4;

struct UringSetup {
  unsigned sq_entries = 0;
  unsigned cq_entries = 0;
  int sqpoll_cpu = -1;             // SQPOLL levels: the SQ thread's CPU (SQ_AFF), -1 unpinned
  unsigned sqpoll_idle_ms = 1000;  // SQPOLL levels: idle time before the SQ thread sleeps
  // Ask for IORING_SETUP_NO_SQARRAY (Linux 6.6): SQEs are taken in ring order, without the SQ
  // index array; a kernel that refuses it (EINVAL) gets the same level without.
  bool no_sqarray = false;
};

// Creates `ring` with the flags of set-up `level`. Fails with io_uring_setup's errno: EINVAL when
// the kernel does not know the flags (a later level may work), EPERM, ENOSYS, ENOMEM otherwise.
// The thread that will use the ring (SINGLE_ISSUER binds it). `*no_sqarray` says whether the ring
// got IORING_SETUP_NO_SQARRAY.
absl::Status init_uring(io_uring* ring, int level, const UringSetup& setup, bool* no_sqarray);

struct UringFeatures {
  bool multishot_accept = false;  // IORING_ACCEPT_MULTISHOT (5.19)
  bool cancel_fd = false;         // IORING_ASYNC_CANCEL_FD (5.19)
  bool files_update = false;      // IORING_OP_FILES_UPDATE (5.6)
  bool multishot_recv = false;    // IORING_RECV_MULTISHOT (6.0)
  bool msg_ring = false;          // IORING_OP_MSG_RING (5.18)
};

// Checks that the kernel has every opcode the backend submits (FailedPrecondition naming the
// first one missing and the Linux version that brought it) and probes the optional features.
// The ring's thread.
absl::StatusOr<UringFeatures> probe_uring(io_uring* ring);

}  // namespace reactor
