#include "backends/libevent_backend.h"

namespace reactor {

absl::StatusOr<std::unique_ptr<Backend>> make_libevent_backend() {
  return absl::UnimplementedError("backend 'libevent' is not implemented yet");
}

}  // namespace reactor
