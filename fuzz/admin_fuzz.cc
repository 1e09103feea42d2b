// libFuzzer target: admin/protocol.{h,cc}, what the admin server makes of a client's
// bytes before any command runs. Checked for every input:
//   - no crash, no sanitizer report, no leak;
//   - the same lines and too-long reports whether the bytes arrive at once or in small chunks;
//   - the reader never holds kMaxLine bytes, a line never holds a newline or exceeds the limit;
//   - a parsed line is a known command and non-empty words without spaces, or one ERR line.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "admin/protocol.h"
#include "fuzz/fuzz_check.h"

namespace {

using reactord::AdminLineEvent;
using reactord::AdminLineReader;

struct Event {
  AdminLineEvent::Kind kind;
  std::string line;
  bool operator==(const Event&) const = default;
};

void check_line(const std::string& line) {
  FUZZ_CHECK(line.size() < AdminLineReader::kMaxLine, "a line fits the limit");
  FUZZ_CHECK(line.find('\n') == std::string::npos, "a line holds no newline");
  const reactord::AdminRequest r = reactord::parse_admin_line(line);
  if (!r.error.empty()) {
    FUZZ_CHECK(r.error.rfind("ERR ", 0) == 0, "an error is an ERR line");
    FUZZ_CHECK(r.error.size() < 256, "an error echoes a bounded part of the line");
    return;
  }
  FUZZ_CHECK(!r.words.empty(), "a command has a name");
  // The commands of docs/admin-protocol.md, listed here apart from admin/protocol.cc's own list.
  static constexpr std::string_view kDocumented[] = {
      "help",  "version", "ping",     "stats",  "metrics", "shards", "services", "fibers",
      "conns", "stalls",  "backends", "config", "set",     "reload", "profile",  "upgrade"};
  FUZZ_CHECK(std::find(std::begin(kDocumented), std::end(kDocumented), r.words[0]) !=
                 std::end(kDocumented),
             "a parsed command is a known one");
  for (const std::string& w : r.words) {
    FUZZ_CHECK(!w.empty() && w.find(' ') == std::string::npos, "words are split on spaces");
  }
  FUZZ_CHECK(r.write == (r.words[0] == "set" || r.words[0] == "reload" || r.words[0] == "upgrade"),
             "set, reload and upgrade write");
}

void collect(AdminLineReader& reader, std::string_view bytes, std::vector<Event>& all) {
  std::vector<AdminLineEvent> out;
  reader.feed(bytes, out);
  FUZZ_CHECK(reader.buffered() < AdminLineReader::kMaxLine, "the reader holds under kMaxLine");
  for (AdminLineEvent& e : out) {
    if (e.kind == AdminLineEvent::Kind::kLine) check_line(e.line);
    all.push_back({e.kind, std::move(e.line)});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<Event> whole, chunked;
  {
    AdminLineReader reader;
    collect(reader, input, whole);
  }
  {
    // Like the server, never more than 4096 bytes at a time.
    AdminLineReader reader;
    for (size_t i = 0; i < size;) {
      size_t n = reactord::fuzz::chunk_at(data, size, i);
      if (data[i] % 5 == 0) n = std::min<size_t>(size - i, 4096);
      collect(reader, input.substr(i, n), chunked);
      i += n;
    }
  }
  FUZZ_CHECK(whole == chunked, "the same lines however the bytes arrive");
  return 0;
}
