// The libevent backend. (Placeholder until it is implemented: make_libevent_backend() reports that.)
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "reactor/backend.h"

namespace reactor {

// Creates the libevent backend for the calling thread's loop, or says why it cannot. Loop thread.
absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend();

}  // namespace reactor
