#include "services/echo.h"

#include <cstddef>

namespace reactord {

void serve_echo(Connection& c, const EchoOptions& options) {
  std::byte buf[16 * 1024];
  for (;;) {
    const reactor::Deadline deadline = timeout_deadline(options.idle_timeout);
    absl::StatusOr<size_t> n = c.read(buf, deadline);
    if (!n.ok() || *n == 0) return;
    c.count_requests();
    if (!c.write_all(std::span(buf, *n), deadline).ok()) return;
  }
}

}  // namespace reactord
