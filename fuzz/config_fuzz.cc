// libFuzzer target: config/config.{h,cc} and config/schema.{h,cc} (through config/tomlpp.h, as
// the daemon includes toml++). Two kinds of input, told apart by the first byte:
//   - anything else: a config file's text. A valid one must print back (format_config) to text
//     that loads to the same Config, and comparing it with itself needs no restart;
//   - 0x01 then `KEY VALUE`: the admin `set` command's apply_setting() and the command line's
//     apply_override() on a small valid config; a refused change leaves the config unchanged.
// No crash, sanitizer report or leak for any input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "fuzz/fuzz_check.h"

namespace {

constexpr char kPath[] = "/etc/reactord/reactord.toml";

constexpr char kBase[] =
    "[admin]\nsocket = \"/run/reactord/admin.sock\"\n"
    "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n"
    "[[service]]\nname = \"kv\"\nkind = \"resp\"\nlisten = \"127.0.0.1:0\"\n";

void check_round_trip(const reactord::Config& cfg) {
  const std::string text = reactord::format_config(cfg);
  absl::StatusOr<reactord::Config> again = reactord::parse_config(text, kPath);
  FUZZ_CHECK(again.ok(), "format_config prints a valid config");
  FUZZ_CHECK(*again == cfg, "format_config prints the same config");
  FUZZ_CHECK(reactord::restart_needed(cfg, cfg).empty(), "no change needs no restart");
  FUZZ_CHECK(reactord::merge_reloadable(cfg, cfg) == cfg, "merging with itself changes nothing");
}

void fuzz_setting(std::string_view input) {
  static const reactord::Config base = *reactord::parse_config(kBase, kPath);
  const size_t space = input.find(' ');
  const std::string_view key = input.substr(0, space);
  const std::string_view value =
      space == std::string_view::npos ? std::string_view() : input.substr(space + 1);
  for (auto apply : {&reactord::apply_setting, &reactord::apply_override}) {
    reactord::Config cfg = base;
    if (apply(cfg, key, value).ok()) {
      check_round_trip(cfg);
    } else {
      FUZZ_CHECK(cfg == base, "a refused change leaves the config unchanged");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && input[0] == '\x01') {
    fuzz_setting(input.substr(1));
    return 0;
  }
  absl::StatusOr<reactord::Config> cfg = reactord::parse_config(input, kPath);
  if (cfg.ok()) {
    check_round_trip(*cfg);
  } else {
    FUZZ_CHECK(absl::IsInvalidArgument(cfg.status()), "bad content is InvalidArgument");
    FUZZ_CHECK(cfg.status().message().rfind(kPath, 0) == 0, "an error names the file");
  }
  return 0;
}
