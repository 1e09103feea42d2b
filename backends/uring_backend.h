// The io_uring backend. (Placeholder until it is implemented: make_uring_backend() reports that.)
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "reactor/backend.h"

namespace reactor {

// Creates the io_uring backend for the calling thread's loop, or says why it cannot. Loop thread.
absl::StatusOr<std::unique_ptr<Backend>> make_uring_backend();

}  // namespace reactor
