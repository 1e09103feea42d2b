#include "services/http.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "reactor/reactor.h"
#include "services/http_parser.h"

namespace reactord {
namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void append_uint(std::string& out, uint64_t v) {
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) out.push_back(digits[--n]);
}

struct Response {
  int status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string_view extra_headers;  // complete lines, each ending in CRLF
};

// Appends the response; `keep_alive_header` adds `Connection: keep-alive` (for HTTP/1.0 clients).
void append_response(std::string& out, const Response& r, bool head, bool close,
                     bool keep_alive_header) {
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<uint64_t>(r.status));
  out.push_back(' ');
  out.append(reason_phrase(r.status));
  out.append("\r\nContent-Type: ");
  out.append(r.content_type);
  out.append("\r\nContent-Length: ");
  append_uint(out, r.body.size());
  out.append("\r\n");
  if (close) {
    out.append("Connection: close\r\n");
  } else if (keep_alive_header) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append(r.extra_headers);
  out.append("\r\n");
  if (!head) out.append(r.body);
}

Response error_response(int status, std::string_view reason) {
  Response r;
  r.status = status;
  r.body.assign(reason);
  r.body.push_back('\n');
  return r;
}

// The value of `ms` in a query string, if it is a decimal number of at most kMaxDebugBlockMs.
std::optional<int> parse_block_ms(std::string_view query) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.substr(0, 3) != "ms=") continue;
    const std::string_view digits = param.substr(3);
    if (digits.empty() || digits.size() > 5) return std::nullopt;
    int v = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    if (v > kMaxDebugBlockMs) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

// Blocks the calling thread — the loop — for ms milliseconds, on purpose: /debug/block exists so
// the watchdog has a stalled loop to catch. A signal (the watchdog's backtrace request) interrupts
// the sleep; it resumes until the full time has passed.
// Not inlined, so a stall report's stack and `fibers --stacks` name it in every build.
[[gnu::noinline]] void block_loop_thread(int ms) {
  timespec until{};
  ::clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += static_cast<long>(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec += 1;
    until.tv_nsec -= 1000000000L;
  }
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
  }
}

int64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Burns ms milliseconds of the loop thread's CPU time here, on purpose, yielding to the shard's
// other fibers after each millisecond so it never stalls them: /debug/spin exists so a profile
// (`reactorctl profile`) has a known function to find. It reads the thread's CPU clock between
// short bursts of arithmetic; that call is intercepted under TSan, where the profiler's signal
// waits for one. Not inlined, so a profile names it in every build.
[[gnu::noinline]] void spin_loop_thread(int ms) {
  const int64_t until = thread_cpu_ns() + int64_t{ms} * 1'000'000;
  volatile uint64_t sink = 0;
  for (int64_t now = thread_cpu_ns(); now < until;) {
    const int64_t burst_end = std::min(until, now + 1'000'000);
    while ((now = thread_cpu_ns()) < burst_end) {
      uint64_t x = sink;
      for (int i = 0; i < 2000; ++i) x = x * 6364136223846793005u + 1442695040888963407u;
      sink = x;
    }
    reactor::yield();
    if (reactor::cancelled()) return;  // draining: stop early
  }
}

class HttpConnection {
 public:
  HttpConnection(Connection& c, const HttpOptions& o)
      : c_(c), o_(o), parser_(HttpLimits{o.max_header_bytes, o.max_body_bytes}) {}

  // Not inlined into serve_http: a parked connection's stack names it in optimised builds too.
  [[gnu::noinline]] void run();

 private:
  // Answers one parsed request into out_; false when the connection closes after it.
  bool answer(const HttpRequest& req);
  Response route(const HttpRequest& req);
  bool flush() { return c_.flush(out_, o_.idle_timeout); }
  // Sends an error response (after what is queued) and closes.
  void fail(int status, std::string_view reason);

  Connection& c_;
  const HttpOptions& o_;
  HttpRequestParser parser_;
  HttpRequest req_;
  std::string out_;
};

void HttpConnection::run() {
  bool continue_sent = false;   // the interim 100 for the request whose body is arriving
  bool header_started = false;  // a partial request is buffered; its first byte came at:
  reactor::Deadline header_start{};
  reactor::Deadline last_read = reactor::Clock::now();
  for (;;) {
    // Answer every request already buffered (a pipelined burst), in order.
    HttpParseResult result;
    while ((result = parser_.next(req_)) == HttpParseResult::kRequest) {
      header_started = false;
      continue_sent = false;
      if (!answer(req_)) {
        if (flush()) c_.linger();
        return;
      }
      if (out_.size() >= kFlushBytes && !flush()) return;
    }
    if (result == HttpParseResult::kError) {
      fail(parser_.error().status, parser_.error().reason);
      return;
    }
    // A client that sent `Expect: 100-continue` may hold its body back until told to send it, and
    // a request is answered only once its body is read: ask for the body (once per request).
    if (parser_.expects_continue() && !continue_sent) {
      out_.append("HTTP/1.1 100 Continue\r\n\r\n");
      continue_sent = true;
    }
    if (!flush()) return;

    // Wait for more: the next request (idle), or the rest of the one that started arriving.
    const bool idle = parser_.buffered() == 0;
    reactor::Deadline deadline;
    if (idle) {
      if (!c_.begin_idle()) return;  // draining: nothing in flight, close
      deadline = timeout_deadline(o_.idle_timeout);
    } else if (!parser_.in_body()) {
      if (!header_started) {
        header_started = true;
        header_start = last_read;
      }
      deadline = reactor::kNoDeadline;
      if (o_.header_timeout > reactor::Duration::zero() &&
          o_.header_timeout < reactor::kNoDeadline - header_start) {
        deadline = header_start + o_.header_timeout;
      }
    } else {
      deadline = timeout_deadline(o_.idle_timeout);
    }
    absl::Status status;
    const Connection::ReadStep step = c_.read_into(parser_, out_, idle, deadline, &status);
    if (step == Connection::ReadStep::kWaited) continue;
    if (step == Connection::ReadStep::kDone) {
      if (absl::IsDeadlineExceeded(status) && !idle) {
        fail(408, parser_.in_body() ? "request body not received in time"
                                    : "request header not received in time");
      }
      // Otherwise the peer closed, the idle timeout, cancelled (drain) or a broken connection:
      // close quietly.
      return;
    }
    last_read = reactor::Clock::now();
  }
}

bool HttpConnection::answer(const HttpRequest& req) {
  c_.count_requests();
  Response r = route(req);
  const bool close = !req.keep_alive || c_.draining();
  const bool head = req.method == "HEAD";
  append_response(out_, r, head, close, !close && req.minor_version == 0);
  return !close;
}

Response HttpConnection::route(const HttpRequest& req) {
  enum class Route { kRoot, kHealth, kMetrics, kBlock, kSpin, kNone };
  Route route = Route::kNone;
  if (req.path == "/") {
    route = Route::kRoot;
  } else if (req.path == "/healthz") {
    route = Route::kHealth;
  } else if (req.path == "/metrics" && o_.metrics_text) {
    route = Route::kMetrics;
  } else if (req.path == "/debug/block" && o_.debug_routes) {
    route = Route::kBlock;
  } else if (req.path == "/debug/spin" && o_.debug_routes) {
    route = Route::kSpin;
  }
  if (route == Route::kNone) return error_response(404, "not found");
  if (req.method != "GET" && req.method != "HEAD") {
    Response r = error_response(405, "method not allowed: use GET or HEAD");
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }
  Response r;
  switch (route) {
    case Route::kRoot:
      r.body = "Hello from reactord, shard " + std::to_string(c_.shard().index) + "\n";
      break;
    case Route::kHealth:
      r.body = "ok";
      break;
    case Route::kMetrics:
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = o_.metrics_text();
      break;
    case Route::kBlock:
    case Route::kSpin: {
      const std::optional<int> ms = parse_block_ms(req.query);
      if (!ms) {
        return error_response(
            400, "ms must be an integer from 0 to " + std::to_string(kMaxDebugBlockMs));
      }
      // Earlier responses of the burst go out first; then the loop stalls or spins.
      (void)flush();
      if (route == Route::kBlock) {
        block_loop_thread(*ms);
        r.body = "blocked the loop for " + std::to_string(*ms) + " ms\n";
      } else {
        spin_loop_thread(*ms);
        r.body = "spun " + std::to_string(*ms) + " ms of CPU\n";
      }
      break;
    }
    case Route::kNone:
      break;
  }
  return r;
}

void HttpConnection::fail(int status, std::string_view reason) {
  c_.count_requests();
  append_response(out_, error_response(status, reason), /*head=*/false, /*close=*/true, false);
  if (flush()) c_.linger();
}

}  // namespace

void serve_http(Connection& c, const HttpOptions& o) {
  HttpConnection(c, o).run();
}

}  // namespace reactord
