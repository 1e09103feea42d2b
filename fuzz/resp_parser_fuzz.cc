// libFuzzer target: services/resp_parser.{h,cc}. The input is what a client sends on one
// connection. Checked for every input, under default and under tiny limits:
//   - no crash, no sanitizer report, no leak;
//   - the same commands (or the same error) whether the bytes arrive at once or in small chunks;
//   - every command keeps the limits (argument count, bulk length, inline line length), and its
//     wire bytes plus what stays buffered never exceed the bytes fed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "fuzz/parser_fuzz.h"
#include "services/resp_parser.h"

namespace {

using reactord::RespCommand;
using reactord::RespLimits;
using reactord::RespParser;
using reactord::RespParseResult;

struct Run {
  std::vector<std::vector<std::string>> commands;
  std::string error;
  size_t wire = 0;
  size_t buffered = 0;
  bool operator==(const Run&) const = default;
};

bool drain(RespParser& p, const RespLimits& limits, Run& run) {
  for (;;) {
    RespCommand c;
    switch (p.next(c)) {
      case RespParseResult::kNeedMore:
        return true;
      case RespParseResult::kError:
        run.error = p.error();
        FUZZ_CHECK(run.error.rfind("Protocol error: ", 0) == 0, "errors are protocol errors");
        FUZZ_CHECK(p.next(c) == RespParseResult::kError, "errors are sticky");
        return false;
      case RespParseResult::kCommand: {
        FUZZ_CHECK(!c.args.empty(), "a command has a name");
        FUZZ_CHECK(c.args.size() <= limits.max_array_len, "at most max_array_len arguments");
        FUZZ_CHECK(c.wire_bytes > 0, "a command takes bytes");
        std::vector<std::string> args;
        for (std::string_view a : c.args) {
          FUZZ_CHECK(a.size() <= std::max(limits.max_bulk_bytes, limits.max_inline_bytes),
                     "an argument within the limits");
          args.emplace_back(a);
        }
        run.wire += c.wire_bytes;
        run.commands.push_back(std::move(args));
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const RespLimits& limits : {RespLimits{}, RespLimits{8, 3, 16, 40}}) {
    reactord::fuzz::check_chunking<RespParser, Run>(input, limits, drain,
                                                    reactord::fuzz::Accounting::kAtMost,
                                                    "the same commands however the bytes arrive");
  }
  return 0;
}
