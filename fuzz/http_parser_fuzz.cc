// libFuzzer target: services/http_parser.{h,cc}. The input is what a peer sends on one connection.
// Checked for every input, under default and under tiny limits:
//   - no crash, no sanitizer report, no leak;
//   - the same requests (or the same error) whether the bytes arrive at once or in small chunks;
//   - every request keeps the limits, and its wire bytes plus what stays buffered account for
//     every byte fed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "fuzz/parser_fuzz.h"
#include "services/http_parser.h"

namespace {

using reactord::HttpLimits;
using reactord::HttpParseResult;
using reactord::HttpRequest;
using reactord::HttpRequestParser;

// What a run produced, copied out of the parser's buffer.
struct Run {
  std::vector<std::string> requests;  // method, target, headers and body, joined
  int error = 0;
  size_t wire = 0;
  size_t buffered = 0;
  bool operator==(const Run&) const = default;
};

std::string describe(const HttpRequest& r) {
  std::string s;
  s.append(r.method).append(" ").append(r.target).append(" ").append(r.path).append("?");
  s.append(r.query).append(r.minor_version ? " 1.1" : " 1.0");
  s.append(r.keep_alive ? " ka\n" : " close\n");
  for (const auto& h : r.headers) s.append(h.name).append(": ").append(h.value).append("\n");
  s.append("\n").append(r.body);
  return s;
}

// Drains every request the parser has; false once it failed.
bool drain(HttpRequestParser& p, const HttpLimits& limits, Run& run) {
  for (;;) {
    HttpRequest r;
    switch (p.next(r)) {
      case HttpParseResult::kNeedMore:
        return true;
      case HttpParseResult::kError:
        run.error = p.error().status;
        FUZZ_CHECK(run.error >= 400 && run.error <= 505, "an error has a 4xx/5xx status");
        FUZZ_CHECK(!p.error().reason.empty(), "an error says why");
        FUZZ_CHECK(p.next(r) == HttpParseResult::kError, "errors are sticky");
        return false;
      case HttpParseResult::kRequest:
        FUZZ_CHECK(!r.method.empty() && !r.target.empty(), "a request has a method and target");
        FUZZ_CHECK(r.body.size() <= limits.max_body_bytes, "body within max_body_bytes");
        FUZZ_CHECK(r.minor_version == 0 || r.minor_version == 1, "HTTP/1.0 or 1.1");
        FUZZ_CHECK(r.wire_bytes > 0, "a request takes bytes");
        run.wire += r.wire_bytes;
        run.requests.push_back(describe(r));
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const HttpLimits& limits : {HttpLimits{}, HttpLimits{64, 16}}) {
    reactord::fuzz::check_chunking<HttpRequestParser, Run>(
        input, limits, drain, reactord::fuzz::Accounting::kExact,
        "the same requests however the bytes arrive");
  }
  return 0;
}
