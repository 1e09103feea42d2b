// An incremental HTTP/1.1 request parser: bytes in, requests (or one error) out. Pure: no I/O, no
// clock, no globals, so the http service, the tests and the libFuzzer target run the same code.
//
// What it accepts (RFC 9112):
//   - request line `METHOD SP request-target SP HTTP/1.x`; HTTP/1.0 and 1.1 (1.2-1.9 are served as
//     1.1); any other major version gets 505. Empty lines before a request line are skipped.
//   - header fields `name: value` (name a token, no whitespace before the colon; obsolete line
//     folding is refused); lines end in CRLF, a bare LF is accepted too.
//   - bodies framed by Content-Length only. Transfer-Encoding (chunked or any other) is refused
//     with 501: no route takes a body, so supporting chunked uploads would only add attack surface.
//     Content-Length that is not all digits or that disagrees with another Content-Length is 400.
//   - HTTP/1.1 requests need exactly one Host header (400 otherwise).
//   - keep-alive: HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with
//     `Connection: keep-alive`.
//   - pipelining: bytes after one request stay buffered for the next.
// Limits: the request line plus headers (including the empty line ending them) may take
// max_header_bytes, else 431; a body longer than max_body_bytes is 413; anything malformed is 400.
// The parser never buffers more than max_header_bytes + max_body_bytes of one request plus what
// the caller feeds beyond it.
//
// A parser belongs to one connection and is used by one thread at a time.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "services/read_buffer.h"

namespace reactord {

struct HttpLimits {
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 64 * 1024;
};

struct HttpHeader {
  std::string_view name;   // as sent (compare case-insensitively)
  std::string_view value;  // without surrounding whitespace
};

// One request. The views point into the parser's buffer: valid until the next call to prepare(),
// feed() or next() on that parser.
struct HttpRequest {
  std::string_view method;  // case-sensitive token: "GET", "HEAD", ...
  std::string_view target;  // as sent: "/healthz?x=1", "http://host/path", "*"
  std::string_view path;    // the target's path: "/healthz" (absolute-form reduced to its path)
  std::string_view query;   // after '?', without it; empty if none
  int minor_version = 1;    // HTTP/1.<minor_version>: 0 or 1
  std::vector<HttpHeader> headers;
  std::string_view body;
  bool keep_alive = true;  // what the client asked for, by the rules above
  size_t wire_bytes = 0;   // bytes the request took, leading empty lines included

  // The first header named `name` (ASCII case-insensitive), or null.
  const HttpHeader* find_header(std::string_view name) const;
};

// Why a request was refused: the status to answer with and a one-line reason for the body.
struct HttpError {
  int status = 0;  // 400, 413, 431, 501 or 505
  std::string reason;
};

enum class HttpParseResult {
  kNeedMore,  // no complete request buffered: feed more bytes
  kRequest,   // a request was stored in `out`
  kError,     // the input is refused; see error(). The connection must be closed after answering.
};

// Bytes go in through feed() or prepare()/commit() (services/read_buffer.h). Every method: any
// thread, one call at a time per parser (it shares nothing).
class HttpRequestParser : public ParserInput<HttpRequestParser> {
 public:
  explicit HttpRequestParser(HttpLimits limits = {});

  // Parses the next request from the buffered bytes. After kError every call returns kError.
  HttpParseResult next(HttpRequest& out);

  const HttpError& error() const { return error_; }
  // True when the next request's header section is complete and its body is still arriving.
  bool in_body() const { return state_ == State::kBody; }
  // In the body of an HTTP/1.1 request that sent `Expect: 100-continue` with a non-empty body:
  // the client may wait for an interim 100 before it sends the body (RFC 9110 §10.1.1).
  bool expects_continue() const { return state_ == State::kBody && expect_continue_; }

 private:
  friend class ParserInput<HttpRequestParser>;
  enum class State { kHeaders, kBody, kError };

  HttpParseResult fail(int status, std::string reason);
  // Parses the header section buffer_[start_, header_end) into out; sets body_length_.
  bool parse_head(std::string_view head, HttpRequest& out);
  bool parse_request_line(std::string_view line, HttpRequest& out);
  bool parse_header_line(std::string_view line, HttpRequest& out);
  bool finish_head(HttpRequest& out);
  // Shifts the offsets below down by n: ParserInput dropped the first n bytes.
  void rebase(size_t n);

  HttpLimits limits_;
  size_t scan_ = 0;               // where the search for the end of the header section resumes
  size_t line_start_ = 0;         // start of the header line scan_ is in
  bool seen_line_ = false;        // a non-empty line (the request line) was seen in this request
  size_t head_end_ = 0;           // in kBody: first byte after the header section
  size_t body_length_ = 0;        // in kBody
  bool expect_continue_ = false;  // in kBody: see expects_continue()
  State state_ = State::kHeaders;
  HttpError error_;
};

}  // namespace reactord
