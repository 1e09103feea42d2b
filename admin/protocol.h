// The admin protocol's input side as pure functions (no I/O, no clock, no globals), so the admin
// server, the tests and the libFuzzer target run the same code: the line framing with its
// 4096-byte limit, and the split of one line into a command and its words. The answers are
// AdminServer::handle's. Protocol: docs/admin-protocol.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace reactord {

// What one complete input line turned into.
struct AdminLineEvent {
  enum class Kind { kLine, kTooLong };
  Kind kind = Kind::kLine;
  std::string line;  // kLine: without its '\n' and one trailing '\r'
};

// Splits a client's bytes into command lines. A line may take at most kMaxLine bytes including
// its newline; a longer one is reported once as kTooLong and its bytes are dropped up to its
// newline, so the reader never holds more than kMaxLine bytes however the peer sends them.
// One per connection; any thread, one call at a time.
class AdminLineReader {
 public:
  static constexpr size_t kMaxLine = 4096;

  // Appends `bytes` and adds to `out`, in order, an event for each line they complete and at most
  // one kTooLong for a line still open that is already over the limit.
  void feed(std::string_view bytes, std::vector<AdminLineEvent>& out);
  // Bytes held for the line not yet complete (always < kMaxLine).
  size_t buffered() const { return buf_.size(); }

 private:
  std::string buf_;
  size_t scan_ = 0;          // buf_[0, scan_) holds no '\n'
  bool discarding_ = false;  // inside a line that was too long
};

// One command line, split on spaces. `error` is the whole answer when the line names no known
// command (`ERR usage: …` for an empty line, `ERR unknown-command: …`); the arguments are checked
// by the command itself, after the access check.
struct AdminRequest {
  std::vector<std::string> words;  // words[0] is the command
  bool write = false;              // set, reload, upgrade: root or the daemon's own uid only
  std::string error;
};

// Any thread.
AdminRequest parse_admin_line(std::string_view line);

// "ERR CODE: MESSAGE", the protocol's error line (without its newline). Any thread.
std::string admin_error(std::string_view code, std::string_view message);

}  // namespace reactord
