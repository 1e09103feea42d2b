// Error convention of the runtime: absl::Status naming the operation, with the errno kept as a
// payload so callers can tell ECONNRESET from EPIPE without parsing messages.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace reactor {

// A Status for a failed system call: code from the errno, message "OP: strerror (errno N)".
absl::Status errno_status(int err, std::string_view op);
// The same with the file descriptor named: "OP on fd N: ...".
absl::Status errno_status(int err, std::string_view op, int fd);

// The errno carried by a Status made by errno_status, or 0.
int status_errno(const absl::Status& status);

}  // namespace reactor
