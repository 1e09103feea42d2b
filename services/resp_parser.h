// An incremental RESP2 command parser (the Redis protocol, client to server): bytes in, commands
// (argument lists) or one protocol error out. Pure: no I/O, no clock, no globals, so the resp
// service, the tests and the libFuzzer target run the same code.
//
// Two framings, told apart by the first byte of a command:
//   - multibulk `*N\r\n` then N times `$len\r\n<len bytes>\r\n` (what redis-cli and client
//     libraries send). N <= 0 is an empty command and is skipped, as Redis does.
//   - inline: anything else up to `\n` (a preceding `\r` is dropped), split on ASCII whitespace
//     (what `PING\r\n` from telnet or redis-benchmark's PING_INLINE is). Quoting is not
//     interpreted. Empty lines are skipped.
// Limits (each a protocol error, after which the connection is closed): N > max_array_len (or an
// inline line with more words), len > max_bulk_bytes, a multibulk command whose bytes so far
// (length lines included) plus the next bulk's announced length and CRLF exceed
// max_command_bytes, an inline line longer than max_inline_bytes, a length line longer than 32
// bytes or not ending in CRLF, a bulk not followed by CRLF. Each is checked from the length line,
// before the data arrives, so a command never buffers more than max(max_command_bytes,
// max_inline_bytes) plus what the caller feeds beyond it.
//
// A parser belongs to one connection and is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "services/read_buffer.h"

namespace reactord {

struct RespLimits {
  size_t max_bulk_bytes = 1024 * 1024;
  size_t max_array_len = 1024;
  size_t max_inline_bytes = 64 * 1024;
  size_t max_command_bytes = 8 * 1024 * 1024;
};

// One command. The views point into the parser's buffer: valid until the next call to prepare(),
// feed() or next() on that parser.
struct RespCommand {
  std::vector<std::string_view> args;  // never empty: args[0] is the command name
  size_t wire_bytes = 0;               // bytes the command took, skipped empty commands included
};

enum class RespParseResult {
  kNeedMore,  // no complete command buffered: feed more bytes
  kCommand,   // a command was stored in `out`
  kError,     // a protocol error; see error(). Answer it and close the connection.
};

// Bytes go in through feed() or prepare()/commit() (services/read_buffer.h). Every method: any
// thread, one call at a time per parser (it shares nothing).
class RespParser : public ParserInput<RespParser> {
 public:
  explicit RespParser(RespLimits limits = {});

  // Parses the next command from the buffered bytes. After kError every call returns kError.
  RespParseResult next(RespCommand& out);

  // "Protocol error: ..." (the reply is "-ERR " + error()).
  const std::string& error() const { return error_; }

 private:
  friend class ParserInput<RespParser>;
  RespParseResult fail(std::string reason);
  // Shifts the offsets below down by n: ParserInput dropped the first n bytes.
  void rebase(size_t n);

  RespLimits limits_;
  size_t skipped_ = 0;      // empty commands skipped since the last command returned
  bool in_array_ = false;   // a multibulk header was read
  size_t array_left_ = 0;   // elements still to read
  int64_t bulk_len_ = -1;   // length of the element being read; -1 before its `$` line
  size_t cursor_ = 0;       // in an array: where the next element (or its payload) starts
  size_t inline_scan_ = 0;  // inline: where the search for `\n` resumes
  std::vector<std::pair<size_t, size_t>> args_;  // offset from start_, length
  bool failed_ = false;
  std::string error_;
};

}  // namespace reactord
