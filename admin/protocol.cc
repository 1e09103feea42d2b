#include "admin/protocol.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace reactord {
namespace {

absl::string_view alpha(std::string_view s) {
  return {s.data(), s.size()};
}

std::string too_long() {
  return admin_error("too-long",
                     absl::StrCat("lines are at most ", AdminLineReader::kMaxLine, " bytes"));
}

constexpr std::string_view kKnown[] = {
    "help",   "version",  "ping",   "stats", "metrics", "shards", "services", "fibers",
    "stalls", "backends", "config", "set",   "reload",  "conns",  "profile",  "upgrade"};

}  // namespace

std::string admin_error(std::string_view code, std::string_view message) {
  return absl::StrCat("ERR ", alpha(code), ": ", alpha(message));
}

void AdminLineReader::feed(std::string_view bytes, std::vector<AdminLineEvent>& out) {
  buf_.append(bytes.data(), bytes.size());
  size_t start = 0;
  for (;;) {
    // The bytes held from earlier calls (before scan_) hold no newline: a client trickling a long
    // line a byte at a time costs one pass over it, not one per read.
    const size_t nl = buf_.find('\n', std::max(start, scan_));
    if (nl == std::string::npos) break;
    const size_t len = nl - start;
    const size_t begin = start;
    start = nl + 1;
    if (discarding_) {
      discarding_ = false;  // the end of the long line
      continue;
    }
    if (len + 1 > kMaxLine) {
      out.push_back({AdminLineEvent::Kind::kTooLong, too_long()});
      continue;
    }
    std::string line = buf_.substr(begin, len);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back({AdminLineEvent::Kind::kLine, std::move(line)});
  }
  buf_.erase(0, start);
  scan_ = buf_.size();
  if (buf_.size() >= kMaxLine) {
    // A line longer than the limit: report it once, then drop bytes until its newline.
    if (!discarding_) out.push_back({AdminLineEvent::Kind::kTooLong, too_long()});
    discarding_ = true;
    buf_.clear();
    scan_ = 0;
  }
}

AdminRequest parse_admin_line(std::string_view line) {
  AdminRequest r;
  r.words = absl::StrSplit(alpha(line), ' ', absl::SkipEmpty());
  if (r.words.empty()) {
    r.error = admin_error("usage", "empty command; try help");
    return r;
  }
  const std::string& cmd = r.words[0];
  if (std::find(std::begin(kKnown), std::end(kKnown), cmd) == std::end(kKnown)) {
    r.error = admin_error("unknown-command", absl::StrCat("'", cmd.substr(0, 64), "'; try help"));
    return r;
  }
  r.write = cmd == "set" || cmd == "reload" || cmd == "upgrade";
  return r;
}

}  // namespace reactord
