#include "services/resp_parser.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace reactord {
namespace {

// Longest `*N` or `$len` line accepted, CRLF included.
constexpr size_t kMaxLengthLine = 32;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// Parses an optional '-' and 1 to 18 decimal digits. False on anything else.
bool parse_length(std::string_view s, int64_t* out) {
  bool negative = false;
  if (!s.empty() && s.front() == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = negative ? -v : v;
  return true;
}

// Finds the `\r\n`-terminated line starting at `from` in buf: its end (the '\r'), or npos if no
// '\n' is buffered yet. Sets *bad when a line is there but does not end in CRLF or is too long.
size_t find_length_line(std::string_view buf, size_t from, bool* bad) {
  *bad = false;
  const size_t limit = std::min(buf.size(), from + kMaxLengthLine);
  const void* hit = std::memchr(buf.data() + from, '\n', limit - from);
  if (hit == nullptr) {
    if (buf.size() - from >= kMaxLengthLine) *bad = true;
    return std::string::npos;
  }
  const size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - buf.data());
  if (lf == from || buf[lf - 1] != '\r') {
    *bad = true;
    return std::string::npos;
  }
  return lf - 1;
}

}  // namespace

RespParser::RespParser(RespLimits limits) : limits_(limits) {}

void RespParser::rebase(size_t n) {
  cursor_ = cursor_ >= n ? cursor_ - n : 0;
  inline_scan_ = inline_scan_ >= n ? inline_scan_ - n : 0;
}

RespParseResult RespParser::fail(std::string reason) {
  failed_ = true;
  error_ = "Protocol error: " + std::move(reason);
  return RespParseResult::kError;
}

RespParseResult RespParser::next(RespCommand& out) {
  if (failed_) return RespParseResult::kError;
  const size_t size = this->size();

  while (!in_array_) {
    if (start_ >= size) return RespParseResult::kNeedMore;
    if (data()[start_] == '*') {
      bool bad = false;
      const size_t cr = find_length_line(std::string_view(data(), size), start_, &bad);
      if (bad) return fail("invalid multibulk length");
      if (cr == std::string::npos) return RespParseResult::kNeedMore;
      int64_t n = 0;
      if (!parse_length(std::string_view(data() + start_ + 1, cr - start_ - 1), &n) ||
          (n > 0 && static_cast<uint64_t>(n) > limits_.max_array_len)) {
        return fail("invalid multibulk length");
      }
      if (n <= 0) {  // an empty command: skipped
        skipped_ += cr + 2 - start_;
        start_ = cr + 2;
        continue;
      }
      in_array_ = true;
      array_left_ = static_cast<size_t>(n);
      bulk_len_ = -1;
      cursor_ = cr + 2;
      args_.clear();
      break;
    }

    // Inline: one line split on whitespace.
    if (inline_scan_ < start_) inline_scan_ = start_;
    const size_t window_end = std::min(size, start_ + limits_.max_inline_bytes + 1);
    const void* hit = inline_scan_ < window_end
                          ? std::memchr(data() + inline_scan_, '\n', window_end - inline_scan_)
                          : nullptr;
    if (hit == nullptr) {
      inline_scan_ = window_end;
      if (size - start_ > limits_.max_inline_bytes) return fail("too big inline request");
      return RespParseResult::kNeedMore;
    }
    const size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - data());
    out.args.clear();
    size_t i = start_;
    while (i < lf) {
      while (i < lf && is_space(data()[i])) ++i;
      const size_t begin = i;
      while (i < lf && !is_space(data()[i])) ++i;
      if (i > begin) out.args.emplace_back(data() + begin, i - begin);
    }
    if (out.args.size() > limits_.max_array_len) {
      return fail("too many arguments in an inline request");
    }
    const size_t consumed = lf + 1 - start_;
    start_ = lf + 1;
    inline_scan_ = start_;
    if (out.args.empty()) {  // an empty line: skipped
      skipped_ += consumed;
      continue;
    }
    out.wire_bytes = skipped_ + consumed;
    skipped_ = 0;
    return RespParseResult::kCommand;
  }

  // Multibulk elements.
  while (array_left_ > 0) {
    if (bulk_len_ < 0) {
      if (cursor_ >= size) return RespParseResult::kNeedMore;
      if (data()[cursor_] != '$') {
        const char c = data()[cursor_];
        const bool printable = c > 0x20 && c < 0x7f;
        return fail(printable ? std::string("expected '$', got '") + c + "'"
                              : std::string("expected '$'"));
      }
      bool bad = false;
      const size_t cr = find_length_line(std::string_view(data(), size), cursor_, &bad);
      if (bad) return fail("invalid bulk length");
      if (cr == std::string::npos) return RespParseResult::kNeedMore;
      int64_t len = 0;
      if (!parse_length(std::string_view(data() + cursor_ + 1, cr - cursor_ - 1), &len) ||
          len < 0 || static_cast<uint64_t>(len) > limits_.max_bulk_bytes) {
        return fail("invalid bulk length");
      }
      // The whole command so far, this bulk and its CRLF included; len <= max_bulk_bytes.
      if (cr + 2 - start_ + static_cast<size_t>(len) + 2 > limits_.max_command_bytes) {
        return fail("command larger than " + std::to_string(limits_.max_command_bytes) + " bytes");
      }
      bulk_len_ = len;
      cursor_ = cr + 2;
    }
    const size_t len = static_cast<size_t>(bulk_len_);
    if (size - cursor_ < len + 2) return RespParseResult::kNeedMore;
    if (data()[cursor_ + len] != '\r' || data()[cursor_ + len + 1] != '\n') {
      return fail("expected CRLF after a bulk string");
    }
    args_.emplace_back(cursor_ - start_, len);
    cursor_ += len + 2;
    bulk_len_ = -1;
    --array_left_;
  }

  out.args.clear();
  for (const auto& [offset, len] : args_) {
    out.args.emplace_back(data() + start_ + offset, len);
  }
  out.wire_bytes = skipped_ + (cursor_ - start_);
  skipped_ = 0;
  start_ = cursor_;
  in_array_ = false;
  return RespParseResult::kCommand;
}

}  // namespace reactord
