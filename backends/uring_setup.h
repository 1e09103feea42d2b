// Setting up a ring for the io_uring backend: the set-up levels it tries (ring flags, best first)
// and the probe that says whether this kernel has every opcode the backend submits, and which
// optional features it has.
#pragma once

#include <liburing.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace reactor {

// Level 0: SINGLE_ISSUER|DEFER_TASKRUN (6.1), 1: COOP_TASKRUN (5.19), 2: no flags (5.1).
inline constexpr int kUringLastSetupLevel = 2;

// Creates `ring` with the flags of set-up `level`. Fails with io_uring_setup's errno: EINVAL when
// the kernel does not know the flags (a later level may work), EPERM, ENOSYS, ENOMEM otherwise.
// The thread that will use the ring (SINGLE_ISSUER binds it).
absl::Status init_uring(io_uring* ring, int level, unsigned sq_entries, unsigned cq_entries);

struct UringFeatures {
  bool multishot_accept = false;  // IORING_ACCEPT_MULTISHOT (5.19)
  bool cancel_fd = false;         // IORING_ASYNC_CANCEL_FD (5.19)
};

// Checks that the kernel has every opcode the backend submits (FailedPrecondition naming the
// first one missing and the Linux version that brought it) and probes the optional features.
// The ring's thread.
absl::StatusOr<UringFeatures> probe_uring(io_uring* ring);

}  // namespace reactor
