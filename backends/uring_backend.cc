#include "backends/uring_backend.h"

namespace reactor {

absl::StatusOr<std::unique_ptr<Backend>> make_uring_backend() {
  return absl::UnimplementedError("backend 'io_uring' is not implemented yet");
}

}  // namespace reactor
