#include "services/http_parser.h"

#include <cstring>
#include <utility>

namespace reactord {
namespace {

bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each element of a comma-separated list, elements trimmed, empty ones
// skipped (RFC 9110 section 5.6.1).
template <class F>
void for_each_list_element(std::string_view list, F&& fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty()) fn(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// A field value may hold visible ASCII, obs-text (>= 0x80), SP and HTAB; no other control bytes.
bool valid_field_value(std::string_view v) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool valid_target(std::string_view t) {
  if (t.empty()) return false;
  for (char ch : t) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Strips a line's terminating CR (the LF is already excluded).
std::string_view strip_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

const HttpHeader* HttpRequest::find_header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

HttpRequestParser::HttpRequestParser(HttpLimits limits) : limits_(limits) {}

void HttpRequestParser::rebase(size_t n) {
  scan_ -= n;
  line_start_ -= n;
  head_end_ = head_end_ >= n ? head_end_ - n : 0;
}

HttpParseResult HttpRequestParser::fail(int status, std::string reason) {
  state_ = State::kError;
  error_.status = status;
  error_.reason = std::move(reason);
  return HttpParseResult::kError;
}

HttpParseResult HttpRequestParser::next(HttpRequest& out) {
  if (state_ == State::kError) return HttpParseResult::kError;

  if (state_ == State::kHeaders) {
    // Find the empty line ending the header section; empty lines before the request line are
    // skipped but count towards the limit.
    const char* data = this->data();
    const size_t size = this->size();
    size_t head_end = 0;
    while (scan_ < size) {
      const void* hit = std::memchr(data + scan_, '\n', size - scan_);
      if (hit == nullptr) break;
      const size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - data);
      if (lf + 1 - start_ > limits_.max_header_bytes) {
        return fail(431, "request header section larger than " +
                             std::to_string(limits_.max_header_bytes) + " bytes");
      }
      const bool empty = lf == line_start_ || (lf == line_start_ + 1 && data[line_start_] == '\r');
      line_start_ = lf + 1;
      scan_ = lf + 1;
      if (!empty) {
        seen_line_ = true;
      } else if (seen_line_) {
        head_end = lf + 1;
        break;
      }
    }
    if (head_end == 0) {
      scan_ = size;
      if (size - start_ > limits_.max_header_bytes) {
        return fail(431, "request header section larger than " +
                             std::to_string(limits_.max_header_bytes) + " bytes");
      }
      return HttpParseResult::kNeedMore;
    }
    if (!parse_head(std::string_view(data + start_, head_end - start_), out)) {
      return HttpParseResult::kError;
    }
    head_end_ = head_end;
    state_ = State::kBody;
  } else {
    // The head was parsed and checked when it completed; once the body is here, parse it again
    // for views into the current buffer.
    if (size() - head_end_ < body_length_) return HttpParseResult::kNeedMore;
    if (!parse_head(std::string_view(data() + start_, head_end_ - start_), out)) {
      return HttpParseResult::kError;
    }
  }

  // kBody: wait for body_length_ bytes after the head.
  if (size() - head_end_ < body_length_) return HttpParseResult::kNeedMore;
  out.body = std::string_view(data() + head_end_, body_length_);
  out.wire_bytes = head_end_ + body_length_ - start_;
  start_ = head_end_ + body_length_;
  scan_ = start_;
  line_start_ = start_;
  seen_line_ = false;
  head_end_ = 0;
  body_length_ = 0;
  expect_continue_ = false;
  state_ = State::kHeaders;
  return HttpParseResult::kRequest;
}

bool HttpRequestParser::parse_head(std::string_view head, HttpRequest& out) {
  out.method = {};
  out.target = {};
  out.path = {};
  out.query = {};
  out.minor_version = 1;
  out.headers.clear();
  out.body = {};
  out.keep_alive = true;
  out.wire_bytes = 0;

  bool request_line_seen = false;
  while (!head.empty()) {
    const size_t lf = head.find('\n');  // present: the head ends with an empty line
    const std::string_view raw = head.substr(0, lf);
    head.remove_prefix(lf + 1);
    const std::string_view line = strip_cr(raw);
    if (line.empty()) {
      if (request_line_seen) break;  // the end of the header section
      continue;                      // a leading empty line
    }
    if (line.find('\r') != std::string_view::npos) {
      fail(400, "bare CR in the request header");
      return false;
    }
    if (!request_line_seen) {
      request_line_seen = true;
      if (!parse_request_line(line, out)) return false;
    } else if (!parse_header_line(line, out)) {
      return false;
    }
  }
  return finish_head(out);
}

bool HttpRequestParser::parse_request_line(std::string_view line, HttpRequest& out) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) {
    fail(400, "malformed request line");
    return false;
  }
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    fail(400, "malformed request line (HTTP/0.9 is not supported)");
    return false;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    fail(400, "malformed method in the request line");
    return false;
  }
  if (!valid_target(target)) {
    fail(400, "malformed request target");
    return false;
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[5] < '0' ||
      version[5] > '9' || version[6] != '.' || version[7] < '0' || version[7] > '9') {
    fail(400, "malformed HTTP version in the request line");
    return false;
  }
  if (version[5] != '1') {
    fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return false;
  }
  out.method = method;
  out.target = target;
  out.minor_version = version[7] == '0' ? 0 : 1;

  // origin-form "/p?q", absolute-form "http://host/p?q", asterisk-form "*", authority-form.
  std::string_view rest = target;
  bool absolute = false;
  if (rest.front() != '/') {
    const size_t scheme = rest.find("://");
    if (scheme != std::string_view::npos) {
      absolute = true;
      rest.remove_prefix(scheme + 3);
      const size_t p = rest.find_first_of("/?");
      rest = p == std::string_view::npos ? std::string_view() : rest.substr(p);
    }
  }
  const size_t q = rest.find('?');
  out.path = rest.substr(0, q);
  if (q != std::string_view::npos) out.query = rest.substr(q + 1);
  if (absolute && out.path.empty()) out.path = "/";
  return true;
}

bool HttpRequestParser::parse_header_line(std::string_view line, HttpRequest& out) {
  if (is_ows(line.front())) {
    fail(400, "obsolete header line folding is not accepted");
    return false;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    fail(400, "header line without a colon");
    return false;
  }
  const std::string_view name = line.substr(0, colon);
  if (!is_token(name)) {
    fail(400, "malformed header name");
    return false;
  }
  const std::string_view value = trim_ows(line.substr(colon + 1));
  if (!valid_field_value(value)) {
    fail(400, "control character in a header value");
    return false;
  }
  out.headers.push_back(HttpHeader{name, value});
  return true;
}

bool HttpRequestParser::finish_head(HttpRequest& out) {
  bool has_length = false;
  size_t length = 0;
  bool too_large = false;
  bool close = false;
  bool keep_alive = false;
  bool expect_continue = false;
  int hosts = 0;
  for (const HttpHeader& h : out.headers) {
    if (iequals(h.name, "transfer-encoding")) {
      fail(501, "Transfer-Encoding is not supported: send a Content-Length body");
      return false;
    }
    if (iequals(h.name, "host")) {
      ++hosts;
    } else if (iequals(h.name, "expect")) {
      expect_continue = expect_continue || iequals(h.value, "100-continue");
    } else if (iequals(h.name, "connection")) {
      for_each_list_element(h.value, [&](std::string_view option) {
        if (iequals(option, "close")) close = true;
        if (iequals(option, "keep-alive")) keep_alive = true;
      });
    } else if (iequals(h.name, "content-length")) {
      bool bad = false;
      bool any = false;
      for_each_list_element(h.value, [&](std::string_view element) {
        any = true;
        size_t v = 0;
        bool over = false;
        for (char c : element) {
          if (c < '0' || c > '9') {
            bad = true;
            return;
          }
          if (!over) {
            v = v * 10 + static_cast<size_t>(c - '0');
            if (v > limits_.max_body_bytes) over = true;
          }
        }
        if (has_length && (over != too_large || (!over && v != length))) bad = true;
        has_length = true;
        too_large = over;
        length = v;
      });
      if (bad || !any) {
        fail(400, "malformed or conflicting Content-Length");
        return false;
      }
    }
  }
  if (hosts > 1) {
    fail(400, "more than one Host header");
    return false;
  }
  if (hosts == 0 && out.minor_version == 1) {
    fail(400, "HTTP/1.1 request without a Host header");
    return false;
  }
  if (too_large) {
    fail(413, "request body larger than " + std::to_string(limits_.max_body_bytes) + " bytes");
    return false;
  }
  out.keep_alive = out.minor_version == 1 ? !close : (keep_alive && !close);
  body_length_ = has_length ? length : 0;
  expect_continue_ = expect_continue && out.minor_version == 1 && body_length_ > 0;
  return true;
}

}  // namespace reactord
