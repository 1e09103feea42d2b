// The echo service: every byte read is written back, until the peer closes or stays silent for
// the idle timeout. A streaming service: it never goes idle in the drain sense, so on SIGTERM a
// connection runs until its peer closes or the drain timeout passes.
#pragma once

#include "reactor/time.h"
#include "services/connection.h"

namespace reactord {

struct EchoOptions {
  reactor::Duration idle_timeout{};  // zero or less: no limit
};

// Loop thread, inside the connection's fiber.
void serve_echo(Connection& c, const EchoOptions& options);

}  // namespace reactord
