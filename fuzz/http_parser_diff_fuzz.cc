// libFuzzer target: a differential oracle for services/http_parser.{h,cc} against Debian's
// nodejs http-parser 2.9.4 (libhttp-parser-dev). The input is what a peer sends on one connection;
// both parse it whole. For every request both parse, in order, they must agree on the method,
// target, HTTP version, keep-alive, header fields (name and value) and body length; where one
// accepts a request and the other refuses it, they must not differ either. Requests outside the
// subset both implement are not compared (each kind is listed with its reason in
// docs/reliability.md, "Differential fuzzing"): from there on the two are not compared further.
// Also built with gcc into a replay driver that runs the seed corpus as a ctest test.
#include <http_parser.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "services/http_parser.h"

namespace {

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Without the spaces and tabs around it (OWS, RFC 9110 5.6.3).
std::string strip_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

struct Message {
  std::string method, target;
  int major = 1, minor = 1;
  bool keep_alive = true;
  std::vector<std::pair<std::string, std::string>> headers;
  size_t body = 0;
  bool operator==(const Message&) const = default;
};

struct Parsed {
  std::vector<Message> messages;   // complete requests, in order
  size_t wire = 0;                 // ours: bytes the messages took
  bool refused = false;            // the input was refused after them
  enum http_errno error = HPE_OK;  // http-parser's reason
  bool upgrade = false;            // http-parser stopped at an upgrade (CONNECT or Upgrade)
};

Parsed ours(std::string_view input) {
  Parsed out;
  // The limits sit above http-parser's 80 KiB header limit and any input's size, so neither
  // limit decides.
  reactord::HttpRequestParser p(reactord::HttpLimits{1 << 20, 1 << 20});
  p.feed(input);
  for (;;) {
    reactord::HttpRequest r;
    const reactord::HttpParseResult res = p.next(r);
    if (res == reactord::HttpParseResult::kNeedMore) return out;
    if (res == reactord::HttpParseResult::kError) {
      out.refused = true;
      return out;
    }
    Message m;
    m.method = r.method;
    m.target = r.target;
    m.minor = r.minor_version;
    m.keep_alive = r.keep_alive;
    for (const reactord::HttpHeader& h : r.headers) m.headers.emplace_back(h.name, h.value);
    m.body = r.body.size();
    out.wire += r.wire_bytes;
    out.messages.push_back(std::move(m));
  }
}

// http-parser's callbacks fill the message being parsed; a field or value may come in pieces.
struct Theirs {
  Parsed parsed;
  Message current;
  bool in_value = false;
};

Theirs& state(http_parser* p) {
  return *static_cast<Theirs*>(p->data);
}

Parsed theirs(std::string_view input) {
  Theirs t;
  http_parser_settings s{};
  s.on_message_begin = [](http_parser* p) {
    state(p).current = Message{};
    state(p).in_value = false;
    return 0;
  };
  s.on_url = [](http_parser* p, const char* at, size_t n) {
    state(p).current.target.append(at, n);
    return 0;
  };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    Theirs& t = state(p);
    if (t.in_value || t.current.headers.empty()) t.current.headers.emplace_back();
    t.in_value = false;
    t.current.headers.back().first.append(at, n);
    return 0;
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    Theirs& t = state(p);
    if (t.current.headers.empty()) t.current.headers.emplace_back();
    t.in_value = true;
    t.current.headers.back().second.append(at, n);
    return 0;
  };
  s.on_headers_complete = [](http_parser* p) {
    Message& m = state(p).current;
    m.method = http_method_str(static_cast<http_method>(p->method));
    m.major = p->http_major;
    m.minor = p->http_minor;
    m.keep_alive = http_should_keep_alive(p) != 0;
    return 0;
  };
  s.on_body = [](http_parser* p, const char*, size_t n) {
    state(p).current.body += n;
    return 0;
  };
  s.on_message_complete = [](http_parser* p) {
    state(p).parsed.messages.push_back(state(p).current);
    return 0;
  };
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = &t;
  const size_t n = http_parser_execute(&p, &s, input.data(), input.size());
  t.parsed.error = HTTP_PARSER_ERRNO(&p);
  t.parsed.upgrade = p.upgrade;
  t.parsed.refused = t.parsed.error != HPE_OK || (n < input.size() && !p.upgrade);
  // http-parser keeps trailing whitespace of a value; ours strips it (RFC 9112 5: OWS around the
  // value is not part of it).
  for (Message& m : t.parsed.messages) {
    for (auto& h : m.headers) h.second = strip_ows(h.second);
  }
  return t.parsed;
}

const std::string* header(const Message& m, std::string_view name) {
  for (const auto& h : m.headers) {
    if (equals_ignore_case(h.first, name)) return &h.second;
  }
  return nullptr;
}

int count(const Message& m, std::string_view name) {
  int n = 0;
  for (const auto& h : m.headers) n += equals_ignore_case(h.first, name);
  return n;
}

// RFC 9110 5.6.2.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) &&
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// RFC 9110 5.5: visible characters, obs-text, spaces and tabs.
bool is_field_value(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// Whether a request http-parser parsed lies in the subset both parsers implement alike.
bool comparable(const Message& m) {
  for (const auto& [name, value] : m.headers) {
    // http-parser accepts some characters outside a token in a name (a space, for one), and
    // control characters in a value; ours refuses both (400), as RFC 9112 asks.
    if (!is_token(name) || !is_field_value(value)) return false;
  }
  if (header(m, "Transfer-Encoding")) return false;  // ours refuses every coding (501)
  if (m.major != 1 || m.minor > 1) return false;     // ours: 1.2-1.9 served as 1.1, others 505
  if (m.minor == 1 && count(m, "Host") != 1) return false;  // ours needs one Host (400)
  if (m.minor == 0 && count(m, "Host") > 1) return false;
  if (count(m, "Content-Length") > 1) return false;  // ours accepts equal duplicates
  // ours accepts a list of equal values ("5, 5", empty elements too, RFC 9110 8.6 and 5.6.1.2);
  // http-parser refuses it.
  if (const std::string* cl = header(m, "Content-Length");
      cl && cl->find(',') != std::string::npos) {
    return false;
  }
  return true;
}

// Whether the request starting at `at` (after empty lines) has a request line of the form
// `token SP target SP HTTP/d.d`, one space each: http-parser 2.9.4 does not check the letters of
// "HTTP/" (it takes "HT\aP/1.1"), ours refuses anything else, so only such a line is in the subset.
bool well_formed_request_line(std::string_view input, size_t at) {
  while (at < input.size() && (input[at] == '\r' || input[at] == '\n')) ++at;
  std::string_view line = input.substr(at, input.find('\n', at) - at);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  // Exactly two spaces: http-parser also takes several between the parts.
  if (sp1 == std::string_view::npos || line.find(' ', sp1 + 1) != sp2 || sp2 == sp1 + 1 ||
      !is_token(line.substr(0, sp1))) {
    return false;
  }
  // A target of visible ASCII only: http-parser also takes some control characters in it.
  for (unsigned char c : line.substr(sp1 + 1, sp2 - sp1 - 1)) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  const std::string_view version = line.substr(sp2 + 1);
  return version.size() == 8 && version.substr(0, 5) == "HTTP/" && std::isdigit(version[5]) &&
         version[6] == '.' && std::isdigit(version[7]);
}

// Why http-parser refused where ours may accept, for errors outside the common subset.
bool comparable_refusal(enum http_errno e) {
  switch (e) {
    case HPE_INVALID_METHOD:   // http-parser knows a fixed list of methods; ours takes any token
    case HPE_INVALID_URL:      // http-parser checks the target's characters and form; ours any
                               // visible characters (the routes match only what they serve)
    case HPE_INVALID_VERSION:  // http-parser allows at most 3 digits for each part
    case HPE_HEADER_OVERFLOW:
    // http-parser takes a header whose name starts with "Transfer-Encoding" for one
    // ("Transfer-EncodingX: chunked"); Transfer-Encoding is outside the subset anyway.
    case HPE_INVALID_TRANSFER_ENCODING:
    case HPE_UNEXPECTED_CONTENT_LENGTH:
      return false;
    default:
      return true;
  }
}

// Whether a line ends in a space or tab (before its CRLF or bare LF): after a Connection option
// ("keep-alive\t") ours trims it as optional whitespace (RFC 9110 5.5), http-parser 2.9.4 then no
// longer recognises the option, so the two differ in keep-alive only.
bool has_trailing_ows(std::string_view input) {
  for (size_t i = input.find('\n'); i != std::string_view::npos; i = input.find('\n', i + 1)) {
    size_t end = i;
    if (end > 0 && input[end - 1] == '\r') --end;
    if (end > 0 && (input[end - 1] == ' ' || input[end - 1] == '\t')) return true;
  }
  return false;
}

// Whether a Content-Length header's value has a tab in it: http-parser 2.9.4 takes only spaces
// after the digits ("2\t" is HPE_INVALID_CONTENT_LENGTH to it), where ours trims a tab as the
// optional whitespace it is (RFC 9110 5.5: OWS is spaces and tabs).
bool content_length_with_tab(std::string_view input) {
  constexpr std::string_view kName = "content-length:";
  for (size_t start = 0; start < input.size();) {
    size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    const std::string_view line = input.substr(start, end - start);
    if (line.size() > kName.size() && equals_ignore_case(line.substr(0, kName.size()), kName) &&
        line.find('\t', kName.size()) != std::string_view::npos) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// Whether a Connection header's list is one http-parser 2.9.4 misreads: after an element that is
// not a token (RFC 9110 7.6.1: connection-option = token) — an empty one (",close", "a,,close") or
// one such as ":" or "b c" ("a,:,close") —, after a tab or an element starting with '_' following a
// comma ("a,\tclose", "a,_,close"), or after a proper prefix of an option it knows right before a
// comma ("c,close", "keep,close") it no longer recognises the options. Ours skips empty elements,
// as RFC 9110 5.6.1.2 asks a recipient to, trims spaces and tabs around each (5.6.3) and looks at
// every element, so the two differ in keep-alive only.
bool connection_list_http_parser_misreads(const Message& m) {
  for (const auto& [name, value] : m.headers) {
    if (!equals_ignore_case(name, "Connection")) continue;
    std::string_view rest = value;
    for (bool first = true;; first = false) {
      const size_t comma = rest.find(',');
      const std::string_view element = rest.substr(0, comma);
      if (!is_token(strip_ows(element))) return true;
      // After a comma http-parser skips only spaces; a tab there, or an element starting with
      // '_' ("a,_,close"; as the first element it is read), loses the options after it.
      if (const size_t at = element.find_first_not_of(' ');
          !first && at != std::string_view::npos && (element[at] == '\t' || element[at] == '_')) {
        return true;
      }
      // A proper prefix of an option it knows, right before the comma ("c,close", "keep,x").
      if (comma != std::string_view::npos) {
        const std::string_view word =
            element.substr(std::min(element.find_first_not_of(' '), element.size()));
        for (std::string_view option : {"close", "keep-alive", "upgrade"}) {
          if (!word.empty() && word.size() < option.size() &&
              equals_ignore_case(word, option.substr(0, word.size()))) {
            return true;
          }
        }
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const Parsed a = ours(input);
  const Parsed b = theirs(input);
  const size_t both = std::min(a.messages.size(), b.messages.size());
  for (size_t i = 0; i < both; ++i) {
    if (!comparable(b.messages[i])) return 0;
    if (a.messages[i].keep_alive != b.messages[i].keep_alive &&
        (has_trailing_ows(input) || connection_list_http_parser_misreads(b.messages[i]))) {
      return 0;
    }
    FUZZ_CHECK(a.messages[i] == b.messages[i], "the same request from both parsers");
  }
  if (b.upgrade) return 0;  // http-parser hands the rest of an upgrade to its caller
  if (a.messages.size() > both) {
    // Ours parsed a request http-parser did not: it must have refused it, not waited for more.
    FUZZ_CHECK(b.refused, "http-parser waits for more of a request ours completed");
    if (!comparable(a.messages[both])) return 0;
    if (b.error == HPE_INVALID_CONTENT_LENGTH && content_length_with_tab(input)) return 0;
    FUZZ_CHECK(!comparable_refusal(b.error), "http-parser refused a request ours accepted");
  } else if (b.messages.size() > both) {
    // http-parser parsed a request ours did not: ours must be waiting, not refusing, unless the
    // request lies outside the common subset.
    if (!comparable(b.messages[both])) return 0;
    // Obsolete line folding (a header line starting with a space or tab): ours refuses it (RFC
    // 9112 5.2 lets a server), http-parser joins the lines.
    if (input.find("\n ") != std::string_view::npos ||
        input.find("\n\t") != std::string_view::npos) {
      return 0;
    }
    if (!well_formed_request_line(input, a.wire)) return 0;
    // A bare CR (not followed by LF): ours refuses it (RFC 9112 2.2), http-parser skips it.
    for (size_t i = input.find('\r'); i != std::string_view::npos; i = input.find('\r', i + 1)) {
      if (i + 1 == size || input[i + 1] != '\n') return 0;
    }
    FUZZ_CHECK(!a.refused, "ours refused a request http-parser accepted");
  }
  return 0;
}
