// The HTTP/1.1 request parser on its own: every byte boundary, pipelining, keep-alive rules, each
// limit and malformed input.
#include "services/http_parser.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace reactord {
namespace {

// A request copied out of the parser (its views die with the next feed).
struct Parsed {
  std::string method, target, path, query, body;
  int minor_version = 1;
  bool keep_alive = true;
  size_t wire_bytes = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  bool operator==(const Parsed&) const = default;
};

Parsed copy(const HttpRequest& r) {
  Parsed p{std::string(r.method), std::string(r.target), std::string(r.path),
           std::string(r.query),  std::string(r.body),   r.minor_version,
           r.keep_alive,          r.wire_bytes,          {}};
  for (const HttpHeader& h : r.headers) p.headers.emplace_back(h.name, h.value);
  return p;
}

struct Outcome {
  std::vector<Parsed> requests;
  int error_status = 0;  // 0: no error
  std::string error_reason;
  size_t buffered = 0;
};

// How the chunks reach the parser: copied in (feed), or parsed where they lie (parse_in_place,
// as a connection does with a backend's lent buffers: settle() before the next chunk, whose
// bytes then replace the last ones, scribbled over first so that a view kept past settle()
// reads garbage).
enum class Input { kFeed, kInPlace };

// Feeds the chunks one by one, draining complete requests after each.
Outcome parse_chunks(const std::vector<std::string>& chunks, HttpLimits limits = {},
                     Input input = Input::kFeed) {
  HttpRequestParser parser(limits);
  HttpRequest req;
  Outcome out;
  std::string lent;
  for (const std::string& chunk : chunks) {
    if (input == Input::kFeed) {
      parser.feed(chunk);
    } else {
      parser.settle();
      std::fill(lent.begin(), lent.end(), '\xaa');
      lent = chunk;
      parser.parse_in_place(lent);
    }
    for (;;) {
      HttpParseResult r = parser.next(req);
      if (r == HttpParseResult::kRequest) {
        out.requests.push_back(copy(req));
        continue;
      }
      if (r == HttpParseResult::kError) {
        out.error_status = parser.error().status;
        out.error_reason = parser.error().reason;
        EXPECT_EQ(parser.next(req), HttpParseResult::kError) << "an error must stick";
        return out;
      }
      break;
    }
  }
  out.buffered = parser.buffered();
  return out;
}

Outcome parse(const std::string& input, HttpLimits limits = {}) {
  return parse_chunks({input}, limits);
}

// The outcome must not depend on how the input is split: every single split point, and one byte
// at a time.
void expect_same_at_every_split(const std::string& input, HttpLimits limits = {}) {
  const Outcome whole = parse(input, limits);
  for (size_t i = 1; i < input.size(); ++i) {
    const Outcome split = parse_chunks({input.substr(0, i), input.substr(i)}, limits);
    const Outcome in_place =
        parse_chunks({input.substr(0, i), input.substr(i)}, limits, Input::kInPlace);
    ASSERT_EQ(in_place.requests, whole.requests) << "in place, split at " << i;
    ASSERT_EQ(in_place.error_status, whole.error_status) << "in place, split at " << i;
    ASSERT_EQ(in_place.buffered, whole.buffered) << "in place, split at " << i;
    ASSERT_EQ(split.requests, whole.requests) << "split at " << i;
    ASSERT_EQ(split.error_status, whole.error_status) << "split at " << i;
    ASSERT_EQ(split.buffered, whole.buffered) << "split at " << i;
  }
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  const Outcome trickled = parse_chunks(bytes, limits);
  const Outcome trickled_in_place = parse_chunks(bytes, limits, Input::kInPlace);
  EXPECT_EQ(trickled_in_place.requests, whole.requests) << "in place, a byte at a time";
  EXPECT_EQ(trickled_in_place.error_status, whole.error_status) << "in place, a byte at a time";
  EXPECT_EQ(trickled.requests, whole.requests);
  EXPECT_EQ(trickled.error_status, whole.error_status);
}

// Parsed in place, a complete request points into the lent bytes (no copy); settle() copies only
// the partial request's tail, which the next bytes complete; bytes lent while some are buffered
// are copied in behind them.
TEST(HttpParserTest, InPlaceRequestsPointIntoTheLentBytesAndOnlyATailIsCopied) {
  HttpRequestParser parser;
  HttpRequest req;
  std::string lent = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHo";
  ASSERT_TRUE(parser.parse_in_place(lent));
  ASSERT_EQ(parser.next(req), HttpParseResult::kRequest);
  EXPECT_EQ(req.path, "/a");
  EXPECT_TRUE(req.path.data() >= lent.data() && req.path.data() < lent.data() + lent.size())
      << "copied";
  ASSERT_EQ(parser.next(req), HttpParseResult::kNeedMore);
  const size_t tail = parser.buffered();
  EXPECT_EQ(tail, std::string_view("GET /b HTTP/1.1\r\nHo").size());
  parser.settle();
  std::fill(lent.begin(), lent.end(), 'x');  // the lent bytes go back
  EXPECT_EQ(parser.buffered(), tail);
  std::string more = "st: h\r\n\r\n";
  EXPECT_FALSE(parser.parse_in_place(more)) << "a partial request is buffered: copied behind it";
  more = "zzzzzzzzzzz";  // copied, so this changes nothing
  ASSERT_EQ(parser.next(req), HttpParseResult::kRequest);
  EXPECT_EQ(req.path, "/b");
  ASSERT_NE(req.find_header("host"), nullptr);
  EXPECT_EQ(req.find_header("host")->value, "h");
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(HttpParserTest, SimpleGet) {
  const std::string in = "GET /healthz HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n";
  Outcome o = parse(in);
  ASSERT_EQ(o.error_status, 0) << o.error_reason;
  ASSERT_EQ(o.requests.size(), 1u);
  const Parsed& r = o.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/healthz");
  EXPECT_EQ(r.path, "/healthz");
  EXPECT_EQ(r.query, "");
  EXPECT_EQ(r.minor_version, 1);
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.wire_bytes, in.size());
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Host", "example"}));
  EXPECT_EQ(o.buffered, 0u);
}

TEST(HttpParserTest, FindHeaderIsCaseInsensitiveAndValuesAreTrimmed) {
  HttpRequestParser p;
  p.feed("GET / HTTP/1.1\r\nhOsT:   a.b  \r\nX-Empty:\r\n\r\n");
  HttpRequest r;
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  ASSERT_NE(r.find_header("HOST"), nullptr);
  EXPECT_EQ(r.find_header("host")->value, "a.b");
  ASSERT_NE(r.find_header("x-empty"), nullptr);
  EXPECT_EQ(r.find_header("x-empty")->value, "");
  EXPECT_EQ(r.find_header("missing"), nullptr);
}

TEST(HttpParserTest, QueryAndTargetForms) {
  Outcome o = parse(
      "GET /debug/block?ms=5&x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET http://h:80/metrics?a HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n"
      "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(o.error_status, 0) << o.error_reason;
  ASSERT_EQ(o.requests.size(), 4u);
  EXPECT_EQ(o.requests[0].path, "/debug/block");
  EXPECT_EQ(o.requests[0].query, "ms=5&x=1");
  EXPECT_EQ(o.requests[1].path, "/metrics");
  EXPECT_EQ(o.requests[1].query, "a");
  EXPECT_EQ(o.requests[2].path, "/");
  EXPECT_EQ(o.requests[3].path, "*");
  EXPECT_EQ(o.requests[3].method, "OPTIONS");
}

TEST(HttpParserTest, KeepAliveRules) {
  struct Case {
    const char* input;
    bool keep_alive;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.9\r\nHost: h\r\n\r\n", true},  // a later 1.x minor is served as 1.1
  };
  for (const Case& c : cases) {
    Outcome o = parse(c.input);
    ASSERT_EQ(o.error_status, 0) << c.input << ": " << o.error_reason;
    ASSERT_EQ(o.requests.size(), 1u) << c.input;
    EXPECT_EQ(o.requests[0].keep_alive, c.keep_alive) << c.input;
  }
}

TEST(HttpParserTest, ContentLengthBody) {
  const std::string in = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  Outcome o = parse(in);
  ASSERT_EQ(o.requests.size(), 1u) << o.error_reason;
  EXPECT_EQ(o.requests[0].body, "hello");
  EXPECT_EQ(o.requests[0].wire_bytes, in.size());
  // Identical repeated values are one length.
  o = parse("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab");
  ASSERT_EQ(o.requests.size(), 1u) << o.error_reason;
  EXPECT_EQ(o.requests[0].body, "ab");
}

TEST(HttpParserTest, PipeliningKeepsTheRestForTheNextRequest) {
  const std::string a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string b = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz";
  const std::string c = "HEAD /c HTTP/1.0\r\n\r\n";
  const std::string partial = "GET /d HTTP/1.1\r\nHo";
  Outcome o = parse(a + b + c + partial);
  ASSERT_EQ(o.error_status, 0) << o.error_reason;
  ASSERT_EQ(o.requests.size(), 3u);
  EXPECT_EQ(o.requests[0].path, "/a");
  EXPECT_EQ(o.requests[1].path, "/b");
  EXPECT_EQ(o.requests[1].body, "xyz");
  EXPECT_EQ(o.requests[2].method, "HEAD");
  EXPECT_EQ(o.requests[0].wire_bytes + o.requests[1].wire_bytes + o.requests[2].wire_bytes,
            a.size() + b.size() + c.size());
  EXPECT_EQ(o.buffered, partial.size());
}

TEST(HttpParserTest, EveryByteBoundary) {
  expect_same_at_every_split(
      "GET /a?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
      "\r\n\r\nGET /c HTTP/1.0\nConnection: keep-alive\n\n"
      "GET /partial HTTP/1.1\r\nHost");
}

TEST(HttpParserTest, EveryByteBoundaryOfErrors) {
  HttpLimits small{64, 8};
  expect_same_at_every_split(
      "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
  expect_same_at_every_split(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(80, 'a') + "\r\n\r\n", small);
  expect_same_at_every_split("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789",
                             small);
}

TEST(HttpParserTest, LeadingEmptyLinesAndBareLineFeeds) {
  Outcome o = parse("\r\n\r\n\nGET / HTTP/1.1\nHost: h\n\n");
  ASSERT_EQ(o.error_status, 0) << o.error_reason;
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].path, "/");
  EXPECT_EQ(o.requests[0].wire_bytes, 5u + 15u + 8u + 1u);
  // Only empty lines so far: nothing to return, nothing refused.
  o = parse("\r\n\r\n");
  EXPECT_EQ(o.error_status, 0);
  EXPECT_TRUE(o.requests.empty());
}

TEST(HttpParserTest, HeaderLimit431) {
  const std::string head_start = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  const std::string end = "\r\n\r\n";
  const size_t limit = 100;
  // Exactly at the limit (the final empty line included): accepted.
  const std::string fits = head_start + std::string(limit - head_start.size() - end.size(), 'a');
  Outcome o = parse(fits + end, HttpLimits{limit, 1024});
  EXPECT_EQ(o.error_status, 0) << o.error_reason;
  EXPECT_EQ(o.requests.size(), 1u);
  // One byte more: refused.
  o = parse(fits + "a" + end, HttpLimits{limit, 1024});
  EXPECT_EQ(o.error_status, 431);
  // Refused as soon as more than the limit is buffered without the end in sight.
  o = parse(head_start + std::string(limit, 'a'), HttpLimits{limit, 1024});
  EXPECT_EQ(o.error_status, 431);
  EXPECT_THAT(o.error_reason, ::testing::HasSubstr("100 bytes"));
  // Endless empty lines count as header bytes too.
  std::string blank;
  for (size_t i = 0; i < limit; ++i) blank += "\r\n";
  o = parse(blank, HttpLimits{limit, 1024});
  EXPECT_EQ(o.error_status, 431);
}

TEST(HttpParserTest, BodyLimit413) {
  const HttpLimits limits{8192, 10};
  Outcome o = parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits);
  EXPECT_EQ(o.error_status, 0) << o.error_reason;
  ASSERT_EQ(o.requests.size(), 1u);
  // Refused from the header alone: the body need not arrive.
  o = parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", limits);
  EXPECT_EQ(o.error_status, 413);
  o = parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
            limits);
  EXPECT_EQ(o.error_status, 413);
}

TEST(HttpParserTest, TransferEncodingIsNotImplemented) {
  Outcome o = parse(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(o.error_status, 501);
  o = parse(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc");
  EXPECT_EQ(o.error_status, 501);
}

TEST(HttpParserTest, UnsupportedVersion505) {
  EXPECT_EQ(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n").error_status, 505);
  EXPECT_EQ(parse("GET / HTTP/0.9\r\n\r\n").error_status, 505);
}

TEST(HttpParserTest, MalformedIs400) {
  const char* cases[] = {
      "GET /\r\n\r\n",                                              // HTTP/0.9 style
      "GET\r\n\r\n",                                                // no target
      "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",                         // two spaces
      "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",                         // trailing space
      "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",                          // not a token
      "GET / HTTP/11\r\nHost: h\r\n\r\n",                           // bad version
      "GET / http/1.1\r\nHost: h\r\n\r\n",                          // lower-case name
      "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",                      // control in target
      "GET / HTTP/1.1\r\nHost h\r\n\r\n",                           // no colon
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                         // space before colon
      "GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n",                   // empty name
      "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",               // obsolete folding
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",              // DEL in value
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",               // bare CR
      "GET / HTTP/1.1\r\n\r\n",                                     // 1.1 without Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",               // two Hosts
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",    // negative
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",    // not digits
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",       // empty
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n",  // conflicting list
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
  };
  for (const char* c : cases) {
    Outcome o = parse(c);
    EXPECT_EQ(o.error_status, 400) << "input: " << c;
    EXPECT_FALSE(o.error_reason.empty());
  }
  const char with_nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
  Outcome nul = parse(std::string(with_nul, sizeof(with_nul) - 1));
  EXPECT_EQ(nul.error_status, 400);
}

TEST(HttpParserTest, ErrorAfterGoodRequestsKeepsThem) {
  Outcome o =
      parse("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nBAD\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_EQ(o.error_status, 400);
}

TEST(HttpParserTest, PrepareAndCommit) {
  HttpRequestParser p;
  const std::string in = "GET /z HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\n";
  std::span<char> space = p.prepare(4096);
  ASSERT_EQ(space.size(), 4096u);
  std::copy(in.begin(), in.end(), space.begin());
  p.commit(in.size());
  HttpRequest r;
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  EXPECT_EQ(r.path, "/z");
  EXPECT_EQ(p.next(r), HttpParseResult::kNeedMore);
  EXPECT_FALSE(p.in_body());
  const std::string rest = "Host: h\r\nContent-Length: 2\r\n\r\n";
  space = p.prepare(rest.size());
  std::copy(rest.begin(), rest.end(), space.begin());
  p.commit(rest.size());
  EXPECT_EQ(p.next(r), HttpParseResult::kNeedMore);
  EXPECT_TRUE(p.in_body());
  space = p.prepare(100);
  space[0] = 'o';
  space[1] = 'k';
  p.commit(2);
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  EXPECT_EQ(r.path, "/y");
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(p.buffered(), 0u);
}

// release_pages(): an idle connection's parser (nothing buffered) gives its buffer's pages back,
// keeping the buffer (page-aligned, so every page goes) and parsing on; with a partial request
// buffered it keeps everything.
bool page_resident(const char* p) {
  unsigned char vec = 0;
  EXPECT_EQ(::mincore(const_cast<char*>(p), 1, &vec), 0);
  return (vec & 1) != 0;
}

TEST(HttpParserTest, ReleasePagesGivesAnIdleBuffersPagesBackAndParsingGoesOn) {
  constexpr size_t kPage = 4096;
  HttpRequestParser p;
  std::span<char> space = p.prepare(4 * kPage);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(space.data()) % kPage, 0u);
  std::fill(space.begin(), space.end(), 'x');  // every page touched
  const std::string get = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  std::copy(get.begin(), get.end(), space.begin());
  p.commit(get.size());
  HttpRequest r;
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  ASSERT_EQ(p.buffered(), 0u);
  p.release_pages();
  space = p.prepare(4 * kPage);
  for (size_t at = 0; at < space.size(); at += kPage) EXPECT_FALSE(page_resident(&space[at])) << at;
  const std::string next = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  std::copy(next.begin(), next.end(), space.begin());
  p.commit(next.size());
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  EXPECT_EQ(r.path, "/b");

  const std::string partial = "GET /c HTTP/1.1\r\nHo";
  p.feed(partial);
  ASSERT_EQ(p.next(r), HttpParseResult::kNeedMore);
  p.release_pages();  // a partial request stays
  p.feed("st: h\r\n\r\n");
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  EXPECT_EQ(r.path, "/c");
}

// BufferBlocks: page-aligned blocks of a read chunk, each its own, reused once given back.
TEST(HttpParserTest, BufferBlocksArePageAlignedAndDistinct) {
  std::vector<char*> blocks;
  for (int i = 0; i < 100; ++i) {  // more than one 1 MiB mapping's 64
    auto* b = static_cast<char*>(BufferBlocks::take());
    ASSERT_EQ(reinterpret_cast<uintptr_t>(b) % 4096, 0u);
    std::fill(b, b + BufferBlocks::kBytes, static_cast<char>(i));
    blocks.push_back(b);
  }
  for (int i = 0; i < 100; ++i) {
    const char* b = blocks[static_cast<size_t>(i)];
    EXPECT_EQ(std::count(b, b + BufferBlocks::kBytes, static_cast<char>(i)),
              static_cast<std::ptrdiff_t>(BufferBlocks::kBytes))
        << i;
  }
  for (char* b : blocks) BufferBlocks::give(b);
}

// expects_continue(): only while the body of an HTTP/1.1 request with `Expect: 100-continue` and
// a non-empty body is still arriving, and not for the request after it.
TEST(HttpParserTest, ExpectsContinueWhileTheBodyOfAnExpectingRequestArrives) {
  const auto waits = [](std::string_view head) {
    HttpRequestParser p;
    p.feed(head);
    HttpRequest r;
    EXPECT_EQ(p.next(r), HttpParseResult::kNeedMore) << head;
    return p.expects_continue();
  };
  EXPECT_TRUE(
      waits("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"));
  EXPECT_FALSE(waits("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"));
  EXPECT_FALSE(waits("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"));
  EXPECT_FALSE(
      waits("POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 3\r\n\r\n"));
  EXPECT_FALSE(waits("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"));

  HttpRequestParser p;
  p.feed("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  HttpRequest r;
  ASSERT_EQ(p.next(r), HttpParseResult::kNeedMore);
  EXPECT_TRUE(p.expects_continue());
  p.feed("okGET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n");
  ASSERT_EQ(p.next(r), HttpParseResult::kRequest);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(p.next(r), HttpParseResult::kNeedMore);
  EXPECT_TRUE(p.in_body());
  EXPECT_FALSE(p.expects_continue());
}

}  // namespace
}  // namespace reactord
