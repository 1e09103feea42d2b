// libFuzzer target: a differential oracle for services/resp_parser.{h,cc} against hiredis' reply
// reader (Debian's libhiredis-dev). The input is what a client sends on one connection; both parse
// it whole. The subset both implement is the multibulk framing of a command: an array of bulk
// strings. For every array of one or more bulk strings hiredis reads, in order, ours must return a
// command with the same arguments, byte for byte (an empty or nil array is skipped by ours, as
// Redis does); where hiredis reads such an array, ours must not refuse it or wait for more; where
// ours returns a command sent in canonical multibulk form, hiredis must not refuse it. At the first
// reply outside the subset (an inline command, a status, integer, nested array ...) the comparison
// ends: docs/reliability.md, "Differential fuzzing", lists why those differ.
// Also built with gcc into a replay driver that runs the seed corpus as a ctest test.
#include <hiredis/hiredis.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "services/resp_parser.h"

namespace {

using Args = std::vector<std::string>;

struct Ours {
  std::vector<Args> commands;
  std::vector<size_t> wire;  // bytes each command took, skipped empty commands included
  bool refused = false;
};

Ours ours(std::string_view input) {
  Ours out;
  // Limits above anything the input can hold, so that none decides (each is its own check).
  reactord::RespParser p(reactord::RespLimits{1 << 30, 1 << 30, 1 << 30, size_t{1} << 31});
  p.feed(input);
  for (;;) {
    reactord::RespCommand c;
    const reactord::RespParseResult r = p.next(c);
    if (r == reactord::RespParseResult::kNeedMore) return out;
    if (r == reactord::RespParseResult::kError) {
      out.refused = true;
      return out;
    }
    out.commands.emplace_back(c.args.begin(), c.args.end());
    out.wire.push_back(c.wire_bytes);
  }
}

std::string multibulk(const Args& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

struct ReaderDeleter {
  void operator()(redisReader* r) const { redisReaderFree(r); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // hiredis allocates an array's elements when it reads its length: one longer than the input
  // cannot arrive whole, so that input tells nothing and only costs memory.
  for (size_t i = input.find('*'); i != std::string_view::npos; i = input.find('*', i + 1)) {
    size_t n = 0;
    for (size_t j = i + 1; j < size && j < i + 12 && std::isdigit(data[j]); ++j) {
      n = n * 10 + (data[j] - '0');
    }
    if (n > size) return 0;
  }
  const Ours a = ours(input);
  std::unique_ptr<redisReader, ReaderDeleter> reader(redisReaderCreate());
  FUZZ_CHECK(reader != nullptr, "hiredis made a reader");
  reader->maxbuf = 0;  // keep every byte fed
  FUZZ_CHECK(redisReaderFeed(reader.get(), input.data(), input.size()) == REDIS_OK, "fed");
  size_t k = 0;       // ours' next command
  size_t offset = 0;  // where it starts in the input
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
      // hiredis refused: ours' next command must not have been sent in canonical form there.
      if (k < a.commands.size()) {
        FUZZ_CHECK(input.substr(offset, a.wire[k]) != multibulk(a.commands[k]),
                   "hiredis refused a command ours accepted");
      }
      return 0;
    }
    if (raw == nullptr) return 0;  // hiredis waits for more
    std::unique_ptr<redisReply, ReplyDeleter> reply(static_cast<redisReply*>(raw));
    // hiredis reads `*-1` and `$-1` alike as nil: ours skips the first as an empty command but
    // reads the second as an inline one, so a nil is outside the subset.
    if (reply->type == REDIS_REPLY_NIL) return 0;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
      continue;  // an empty command: ours skips it and counts it with the next one
    }
    if (reply->type != REDIS_REPLY_ARRAY) return 0;  // outside the subset
    Args args;
    for (size_t i = 0; i < reply->elements; ++i) {
      const redisReply* e = reply->element[i];
      if (e->type != REDIS_REPLY_STRING) return 0;  // outside the subset
      args.emplace_back(e->str, e->len);
    }
    if (k >= a.commands.size()) {
      // hiredis does not check the CRLF after a bulk's data, nor the form of a length: only a
      // canonical multibulk command is one ours must have read too.
      if (input.substr(offset).substr(0, multibulk(args).size()) != multibulk(args)) return 0;
      FUZZ_CHECK(a.refused, "ours waits for more of a command hiredis read");
      FUZZ_CHECK(false, "ours refused a command hiredis read");
    }
    FUZZ_CHECK(a.commands[k] == args, "the same arguments from both parsers");
    offset += a.wire[k];
    ++k;
  }
}
