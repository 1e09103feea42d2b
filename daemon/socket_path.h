// Unix socket paths the daemon binds: an existing path is replaced only if it is a socket that
// nobody listens on (a leftover of a crashed run); anything else is refused, untouched.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace reactord {

// OK when `path` is free to bind (absent, or a stale socket now removed). AlreadyExists with a
// clear message for a regular file, a directory or a live socket. Main thread, at start.
absl::Status clear_stale_unix_socket(const std::string& path);

}  // namespace reactord
