// reactorctl: the command-line client of reactord's admin socket (docs/admin-protocol.md,
// reactorctl(1)). Each command sends one protocol command and shows the answer as human tables,
// or as the daemon's raw answer with --json; `top` is a live view built from repeated `stats` and
// `metrics`. Exit codes: 0 ok, 1 the daemon answered ERR (printed), 64 usage, 69 no connection or
// no complete answer (with the path tried and a hint).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ctl/client.h"
#include "ctl/flamegraph.h"
#include "ctl/format.h"
#include "ctl/profile.h"
#include "ctl/top.h"

#ifndef REACTORD_VERSION
#define REACTORD_VERSION "unknown"
#endif

namespace reactord::ctl {
namespace {

constexpr char kDefaultSocket[] = "/run/reactord/admin.sock";
constexpr char kSocketEnv[] = "REACTORD_ADMIN_SOCKET";
constexpr int kDefaultTimeoutSeconds = 10;
constexpr int kExitCannotCreate = 73;  // sysexits.h EX_CANTCREAT: --svg FILE could not be written

constexpr char kUsage[] =
    "usage: reactorctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "Commands (docs/admin-protocol.md, reactorctl(1)):\n"
    "  stats                 loop, service and process statistics\n"
    "  top [--once | --iterations N] [--interval SECONDS]\n"
    "                        live view: utilization, requests/s, latency, stalls\n"
    "  metrics               Prometheus text format\n"
    "  fibers [SHARD] [--stacks [--max-fibers N] [--max-frames N]]\n"
    "                        each shard's fibers; with --stacks each one's stack, taken now\n"
    "  conns [SERVICE]       each connection: peer, age, bytes, requests, state, fiber\n"
    "  stalls [--folded | --svg FILE]\n"
    "                        recent watchdog reports and the slowest fibers; --folded: the\n"
    "                        reports by stack, weighted by stall time (ms); --svg: as a flame "
    "graph\n"
    "  profile [--seconds N] [--hz H] [--shard K] [--folded | --svg FILE]\n"
    "                        sample the shards' CPU for N s (5; 1-300) at H Hz (99; 1-1000) by\n"
    "                        fiber; --folded: stacks with sample counts; --svg: a flame graph\n"
    "  shards                per-shard loop statistics\n"
    "  services              services, their addresses and counters\n"
    "  backends              I/O backends, available or not, and why\n"
    "  config                the effective configuration (TOML)\n"
    "  set KEY VALUE         change a reloadable key (root or the daemon's user)\n"
    "  reload                re-read the configuration file (root or the daemon's user)\n"
    "  upgrade [--binary PATH]\n"
    "                        start PATH (default: the daemon's binary) with the listening\n"
    "                        sockets; once it is ready the old process drains and exits\n"
    "  ping                  check that the daemon answers\n"
    "  version               the daemon's version, protocol and backend\n"
    "  help                  the daemon's command list\n"
    "\n"
    "Options:\n"
    "  --socket PATH         admin socket (default $REACTORD_ADMIN_SOCKET, else "
    "/run/reactord/admin.sock)\n"
    "  --json                print the daemon's JSON answer as it is\n"
    "  --timeout SECONDS     wait this long for a connection and each answer (default 10)\n"
    "  -h, --help            this text;  --version  reactorctl's version\n"
    "\n"
    "Exit status: 0 ok, 1 the daemon answered with an error, 64 usage, 69 cannot connect,\n"
    "73 cannot write the --svg file.\n";

struct Options {
  enum class Action : uint8_t { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  std::string socket;
  std::string socket_source;  // where `socket` came from, for error messages
  bool json = false;
  std::chrono::milliseconds timeout{kDefaultTimeoutSeconds * 1000};
  std::vector<std::string> words;  // the command and its arguments
  TopOptions top;
  bool stacks = false;                 // fibers --stacks
  int max_fibers = 0, max_frames = 0;  // 0: the daemon's default
  bool folded = false;                 // stalls --folded
  std::string svg;                     // stalls and profile --svg FILE
  ProfileOptions profile;              // profile --seconds, --hz, --shard
  bool profile_flags = false;
  std::string binary;  // upgrade --binary PATH
};

int usage_error(const std::string& why) {
  std::fprintf(stderr,
               "reactorctl: %s\nusage: reactorctl [--socket PATH] [--json] COMMAND [ARGS]; "
               "reactorctl --help lists the commands\n",
               why.c_str());
  return kExitUsage;
}

bool parse_seconds(std::string_view s, std::chrono::milliseconds* out) {
  double v = 0;
  if (!absl::SimpleAtod(absl::string_view(s.data(), s.size()), &v) || !(v > 0) || v > 86400) {
    return false;
  }
  *out = std::chrono::milliseconds(static_cast<int64_t>(v * 1000 + 0.5));
  return out->count() > 0;
}

absl::Status usage(std::string_view why) {
  return absl::InvalidArgumentError(absl::string_view(why.data(), why.size()));
}

// Parses the arguments after the program name. InvalidArgument, saying what is wrong, on a usage
// error; -h and --version end the parse with their action.
absl::StatusOr<Options> parse_args(const std::vector<std::string>& args) {
  Options o;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    // `set KEY VALUE...`: everything after KEY is the value, even if it starts with '-'.
    const bool in_set_value = !o.words.empty() && o.words[0] == "set" && o.words.size() >= 2;
    if (options_done || in_set_value || a.size() < 2 || a[0] != '-') {
      o.words.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
      has_value = true;
    }
    auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      o.action = Options::Action::kHelp;
      return o;
    } else if (a == "--version") {
      o.action = Options::Action::kVersion;
      return o;
    } else if (a == "--json") {
      if (has_value) return usage("--json takes no value");
      o.json = true;
    } else if (a == "--socket") {
      if (!take_value() || value.empty()) return usage("--socket needs a path");
      o.socket = value;
      o.socket_source = "from --socket";
    } else if (a == "--timeout") {
      if (!take_value() || !parse_seconds(value, &o.timeout)) {
        return usage("--timeout needs a number of seconds (0 < SECONDS <= 86400)");
      }
    } else if (a == "--once") {
      if (has_value) return usage("--once takes no value");
      o.top.iterations = 1;
    } else if (a == "--iterations") {
      int n = 0;
      if (!take_value() || !absl::SimpleAtoi(value, &n) || n < 1) {
        return usage("--iterations needs a positive number");
      }
      o.top.iterations = n;
    } else if (a == "--folded") {
      if (has_value) return usage("--folded takes no value");
      o.folded = true;
    } else if (a == "--svg") {
      if (!take_value() || value.empty()) return usage("--svg needs a file name");
      o.svg = value;
    } else if (a == "--seconds" || a == "--hz" || a == "--shard") {
      if (!take_value()) return usage(absl::StrCat(a, " needs a value"));
      absl::StatusOr<bool> taken = parse_profile_flag(a, value, &o.profile);
      if (!taken.ok()) return taken.status();
      o.profile_flags = true;
    } else if (a == "--binary") {
      if (!take_value() || value.empty()) return usage("--binary needs a path");
      o.binary = value;
    } else if (a == "--stacks") {
      if (has_value) return usage("--stacks takes no value");
      o.stacks = true;
    } else if (a == "--max-fibers" || a == "--max-frames") {
      int n = 0;
      if (!take_value() || !absl::SimpleAtoi(value, &n) || n < 1) {
        return usage(absl::StrCat(a, " needs a positive number"));
      }
      (a == "--max-fibers" ? o.max_fibers : o.max_frames) = n;
    } else if (a == "--interval") {
      if (!take_value() || !parse_seconds(value, &o.top.interval)) {
        return usage("--interval needs a number of seconds (0 < SECONDS <= 86400)");
      }
    } else {
      return usage(absl::StrCat("unknown option '", a, "'"));
    }
  }
  if (o.words.empty()) return usage("no command given");
  const bool top_options = o.top.iterations != 0 || o.top.interval != std::chrono::seconds(1);
  if (top_options && o.words[0] != "top") {
    return usage("--once, --iterations and --interval go with top only");
  }
  if ((o.max_fibers != 0 || o.max_frames != 0) && !o.stacks) {
    return usage("--max-fibers and --max-frames go with --stacks");
  }
  if (o.stacks && o.words[0] != "fibers") return usage("--stacks goes with fibers only");
  if ((o.folded || !o.svg.empty()) && o.words[0] != "stalls" && o.words[0] != "profile") {
    return usage("--folded and --svg go with stalls and profile only");
  }
  if (o.profile_flags && o.words[0] != "profile") {
    return usage("--seconds, --hz and --shard go with profile only");
  }
  if (o.folded && !o.svg.empty()) return usage("--folded and --svg exclude each other");
  if (!o.binary.empty() && o.words[0] != "upgrade") return usage("--binary goes with upgrade only");
  if (o.socket.empty()) {
    if (const char* env = std::getenv(kSocketEnv); env != nullptr && env[0] != '\0') {
      o.socket = env;
      o.socket_source = absl::StrCat("from $", kSocketEnv);
    } else {
      o.socket = kDefaultSocket;
      o.socket_source = "the default";
    }
  }
  o.top.json = o.json;
  o.top.timeout = o.timeout;
  return o;
}

int cannot_connect(const Options& o, const absl::Status& s) {
  std::fprintf(
      stderr,
      "reactorctl: cannot connect to %s (%s): %s\n"
      "hint: the default socket is %s; --socket PATH or $%s choose\n"
      "      another (the daemon's is [admin] socket in its reactord.toml). reactord must\n"
      "      be running, and you need permission on the socket and its directory\n"
      "      (admin.mode, admin.group): run as root, as the daemon's user or as a member\n"
      "      of the socket's group.\n",
      o.socket.c_str(), o.socket_source.c_str(), std::string(s.message()).c_str(), kDefaultSocket,
      kSocketEnv);
  return kExitUnavailable;
}

int no_answer(const Options& o, const absl::Status& s) {
  std::fprintf(stderr, "reactorctl: %s: %s\n", o.socket.c_str(), std::string(s.message()).c_str());
  return kExitUnavailable;
}

using Renderer = std::function<std::string(const Json&)>;

// How each command's answer is shown without --json: nullptr prints the lines as they are.
const std::map<std::string, Renderer>& renderers() {
  static const auto* const kRenderers = new std::map<std::string, Renderer>{
      {"stats", render_stats},     {"shards", render_shards}, {"services", render_services},
      {"fibers", render_fibers},   {"stalls", render_stalls}, {"backends", render_backends},
      {"version", render_version}, {"help", nullptr},         {"ping", nullptr},
      {"metrics", nullptr},        {"config", nullptr},       {"set", nullptr},
      {"reload", nullptr},         {"conns", render_conns},   {"profile", render_profile},
      {"upgrade", nullptr},
  };
  return *kRenderers;
}

// Checks the argument count of a one-shot command and builds its protocol line.
// InvalidArgument, saying what is wrong, when the arguments do not fit the command.
absl::StatusOr<std::string> protocol_line(const Options& o) {
  const std::vector<std::string>& w = o.words;
  const std::string& cmd = w[0];
  if (cmd == "set") {
    if (w.size() < 3) return usage("set needs KEY and VALUE, e.g. reactorctl set log.level debug");
    // The value is the rest of the line: `set admin.allow_uids [1000, 1001]` works unquoted.
    std::vector<std::string> value(w.begin() + 2, w.end());
    return absl::StrCat("set ", w[1], " ", absl::StrJoin(value, " "));
  }
  if (cmd == "fibers") {
    std::string line = cmd;
    if (w.size() > 2) return usage("fibers takes at most one SHARD");
    if (w.size() == 2) {
      int shard = 0;
      if (!absl::SimpleAtoi(w[1], &shard) || shard < 0) {
        return usage(absl::StrCat("SHARD must be a shard number, not '", w[1], "'"));
      }
      line = absl::StrCat("fibers ", shard);
    }
    if (o.stacks) {
      absl::StrAppend(&line, " stacks");
      // The daemon's defaults (docs/admin-protocol.md) fill what is not given.
      if (o.max_fibers != 0 || o.max_frames != 0) {
        absl::StrAppend(&line, " ", o.max_fibers != 0 ? o.max_fibers : 100);
      }
      if (o.max_frames != 0) absl::StrAppend(&line, " ", o.max_frames);
    }
    return line;
  }
  if (cmd == "profile") {
    if (w.size() > 1) return usage("profile takes no arguments besides its options");
    return profile_line(o.profile);
  }
  if (cmd == "conns") {
    if (w.size() > 2) return usage("conns takes at most one SERVICE");
    return w.size() == 2 ? absl::StrCat("conns ", w[1]) : cmd;
  }
  if (cmd == "upgrade" && !o.binary.empty()) {
    if (o.binary[0] != '/') return usage("--binary needs an absolute path");
    if (o.binary.find(' ') != std::string::npos) return usage("--binary: no spaces in the path");
  }
  if (w.size() > 1) return usage(absl::StrCat(cmd, " takes no arguments"));
  return o.binary.empty() ? cmd : absl::StrCat(cmd, " ", o.binary);
}

// `stalls` or `profile` with --folded prints the folded stacks; with --svg FILE writes the flame
// graph.
int write_graph(const Options& o, const Json& answer) {
  const bool profile = o.words[0] == "profile";
  const std::vector<FoldedStack> stacks =
      profile ? fold_profile(answer) : fold_stall_reports(answer);
  if (o.folded) {
    std::fputs(folded_text(stacks).c_str(), stdout);
    return kExitOk;
  }
  FlameGraphOptions fo;
  fo.title = profile ? "reactord CPU profile by fiber (samples of CPU time)"
                     : "reactord stalls by stack (weighted by stall time)";
  if (profile) fo.unit = fo.sample_noun = "samples";
  const std::string svg = flame_graph_svg(stacks, fo);
  std::FILE* f = std::fopen(o.svg.c_str(), "w");
  const bool ok = f != nullptr && std::fwrite(svg.data(), 1, svg.size(), f) == svg.size();
  if (f == nullptr || std::fclose(f) != 0 || !ok) {
    std::fprintf(stderr, "reactorctl: cannot write %s: %s\n", o.svg.c_str(), std::strerror(errno));
    return kExitCannotCreate;
  }
  uint64_t weight = 0;
  for (const FoldedStack& s : stacks) weight += s.weight;
  std::printf("wrote %s: %zu stacks, %llu %s\n", o.svg.c_str(), stacks.size(),
              static_cast<unsigned long long>(weight), profile ? "samples" : "ms of stalls");
  return kExitOk;
}

int run(const Options& o) {
  const std::string& cmd = o.words[0];
  const bool is_top = cmd == "top";
  std::string line;
  const Renderer* renderer = nullptr;
  if (!is_top) {
    auto it = renderers().find(cmd);
    if (it == renderers().end()) {
      return usage_error(absl::StrCat("unknown command '", cmd, "'"));
    }
    renderer = &it->second;
    absl::StatusOr<std::string> l = protocol_line(o);
    if (!l.ok()) return usage_error(std::string(l.status().message()));
    line = *std::move(l);
    if (line.size() >= 4096) return usage_error("the command is longer than 4095 bytes");
  } else if (o.words.size() > 1) {
    return usage_error("top takes no arguments besides its options");
  }

  absl::StatusOr<AdminClient> client = AdminClient::connect(o.socket, o.timeout);
  if (!client.ok()) {
    if (client.status().code() == absl::StatusCode::kInvalidArgument) {
      return usage_error(std::string(client.status().message()));
    }
    return cannot_connect(o, client.status());
  }
  if (is_top) return run_top(*client, o.socket, o.top);

  // A profile answers when it is over: wait for its length on top of the timeout. The daemon
  // gives a new process 10 s to report ready before it answers an upgrade.
  std::chrono::milliseconds wait =
      o.timeout + (cmd == "profile" ? std::chrono::seconds(profile_seconds(o.profile))
                                    : std::chrono::seconds(0));
  if (cmd == "upgrade")
    wait = std::max<std::chrono::milliseconds>(o.timeout, std::chrono::seconds(30));
  absl::StatusOr<Answer> answer = client->request(line, wait);
  if (!answer.ok()) return no_answer(o, answer.status());
  if (answer->error) {
    std::fprintf(stderr, "%s", answer->text().c_str());
    return kExitDaemonError;
  }
  const std::string text = answer->text();
  if (o.json || *renderer == nullptr) {
    std::fputs(text.c_str(), stdout);
    return kExitOk;
  }
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return no_answer(o, absl::DataLossError(
                            absl::StrCat("the answer to '", cmd, "' is not valid JSON:\n", text)));
  }
  if (o.folded || !o.svg.empty()) return write_graph(o, j);
  std::fputs((*renderer)(j).c_str(), stdout);
  return kExitOk;
}

// The whole program for the arguments after its name; returns the exit code.
int run_command_line(const std::vector<std::string>& args) {
  absl::StatusOr<Options> options = parse_args(args);
  if (!options.ok()) return usage_error(std::string(options.status().message()));
  switch (options->action) {
    case Options::Action::kHelp:
      std::fputs(kUsage, stdout);
      return kExitOk;
    case Options::Action::kVersion:
      std::printf("reactorctl %s\n", REACTORD_VERSION);
      return kExitOk;
    case Options::Action::kRun:
      break;
  }
  return run(*options);
}

}  // namespace
}  // namespace reactord::ctl

int main(int argc, char** argv) {
  return reactord::ctl::run_command_line(std::vector<std::string>(argv + 1, argv + argc));
}
