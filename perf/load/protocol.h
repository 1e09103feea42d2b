// What reactord-load sends and how it checks what comes back, one object per connection: TCP echo
// (every byte compared with what was sent), HTTP/1.1 GET (status 200, framed by Content-Length)
// and RESP PING (every byte of "+PONG\r\n" compared). Requests may be pipelined: responses are
// parsed from a byte stream in any split. No I/O here, so tests feed it bytes directly.
// Not thread-safe: a connection belongs to one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace reactor::load {

enum class Mode { kEcho, kHttp, kResp };

// Parses "echo", "http" or "resp"; false otherwise.
bool parse_mode(std::string_view s, Mode* mode);
const char* mode_name(Mode mode);

struct ProtocolOptions {
  Mode mode = Mode::kEcho;
  size_t size = 64;                // echo: bytes per message
  std::string host = "127.0.0.1";  // http: Host header
  std::string path = "/";          // http: request target
};

class Protocol {
 public:
  virtual ~Protocol() = default;

  // Appends the bytes of one request to `out`.
  virtual void append_request(std::string& out) = 0;

  // Consumes received bytes. Returns the number of responses completed by them, or -1 when the
  // bytes are wrong (error() says how); after an error the connection is unusable.
  virtual int64_t consume(const char* data, size_t n) = 0;

  // Bytes checked and found right so far (whole responses and the checked part of a partial one).
  uint64_t verified_bytes() const { return verified_; }
  const std::string& error() const { return error_; }

  // `id` seeds the echo payload so that two connections never send the same bytes.
  static std::unique_ptr<Protocol> create(const ProtocolOptions& options, uint32_t id);

 protected:
  uint64_t verified_ = 0;
  std::string error_;
};

}  // namespace reactor::load
