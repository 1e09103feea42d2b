// The http service: HTTP/1.1 with keep-alive and pipelining on one connection, over
// services/http_parser.h. Routes (GET and HEAD; other methods get 405):
//   /                 200, a line of text
//   /healthz          200 "ok"
//   /metrics          200 text/plain; version=0.0.4 from HttpOptions::metrics_text, 404 if unset
//   /debug/block?ms=N blocks the shard's loop thread for N ms (N <= 60000) with a real sleep, so
//                     the watchdog has something to catch; 404 unless debug_routes
//   anything else     404
// Refused requests get 400, 413, 431, 501 or 505 (see http_parser.h), a header that does not
// arrive within header_timeout gets 408; each of these closes the connection. Responses to a
// pipelined burst are answered in order and written together. On drain an idle connection is
// closed at once, a request in progress is answered with `Connection: close`.
// docs/services.md has the details.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "reactor/time.h"
#include "services/connection.h"

namespace reactord {

struct HttpOptions {
  // How long a keep-alive connection may wait for the next request (and a write or a body read
  // may stall). Zero or less: no limit.
  reactor::Duration idle_timeout = std::chrono::seconds(60);
  // The whole header of a request must arrive within this, from its first byte. Zero or less: no
  // limit.
  reactor::Duration header_timeout = std::chrono::seconds(10);
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 64 * 1024;
  bool debug_routes = false;
  // The Prometheus text for /metrics; called on the shard's loop thread, must not block. Unset:
  // /metrics is 404.
  std::function<std::string()> metrics_text;
};

// The longest /debug/block (and /debug/spin) accepted, in milliseconds.
inline constexpr int kMaxDebugBlockMs = 60000;

// Serves one connection until the peer closes, a timeout, an error, a `Connection: close`, or
// drain. Loop thread of the connection's shard, inside the connection's fiber.
void serve_http(Connection& c, const HttpOptions& o);

}  // namespace reactord
