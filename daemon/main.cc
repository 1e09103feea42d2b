// reactord: flags, configuration, logging, then the daemon. Exit codes follow sysexits(3); every
// non-zero exit prints one line saying why.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "backends/registry.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/upgrade.h"
#include "reactor/notice.h"

ABSL_FLAG(std::string, config, "/etc/reactord/reactord.toml", "configuration file (TOML)");
ABSL_FLAG(std::string, backend, "",
          "I/O backend, overriding runtime.backend: auto, epoll, io_uring, libevent");
ABSL_FLAG(std::string, shards, "", "number of shards, overriding runtime.shards (0: one per core)");
ABSL_FLAG(bool, check_config, false,
          "validate the configuration, print the effective one and exit");
ABSL_FLAG(bool, list_backends, false,
          "list the I/O backends, whether each is available, and why not");

namespace {

constexpr char kUsage[] =
    "reactord: network services on fibers, one reactor per core.\n"
    "usage: reactord [--config FILE] [--backend NAME] [--shards N] [--check-config]\n"
    "                [--list-backends] [--version] [--help]\n"
    "  --config FILE     configuration file (default /etc/reactord/reactord.toml)\n"
    "  --backend NAME    auto, epoll, io_uring or libevent (overrides runtime.backend)\n"
    "  --shards N        shards, 0 = one per core (overrides runtime.shards)\n"
    "  --check-config    validate the configuration, print the effective one, exit\n"
    "  --list-backends   list the I/O backends and whether each is available\n"
    "  --version         print the version\n"
    "Exit codes: 0 clean stop, 64 bad flags, 66 config unreadable, 69 backend unavailable,\n"
    "71 bind/listen or OS resource failure, 78 invalid config.";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "reactord: %s (see reactord --help)\n", why.c_str());
  reactord::upgrade::report_failure(why);
  return reactord::kExitUsage;
}

// Checks argv before Abseil sees it (Abseil exits 1 on a bad flag; we owe 64), and spells
// --check-config / --list-backends the way Abseil's names have them.
int prescan(std::vector<std::string>& args, bool& help) {
  const std::set<std::string> valued = {"config", "backend", "shards"};
  const std::set<std::string> boolean = {"check_config", "list_backends", "version"};
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a == "--") return usage_error("unexpected '--'");
    if (a.size() < 2 || a[0] != '-')
      return usage_error(absl::StrCat("unexpected argument '", a, "'"));
    const size_t dashes = a[1] == '-' ? 2 : 1;
    const size_t eq = a.find('=');
    std::string name = a.substr(dashes, eq == std::string::npos ? std::string::npos : eq - dashes);
    for (char& c : name) c = c == '-' ? '_' : c;
    if (name == "help" || name == "h") {
      help = true;
      continue;
    }
    if (valued.count(name)) {
      if (eq == std::string::npos && i + 1 >= args.size()) {
        return usage_error(absl::StrCat("--", name, " needs a value"));
      }
      a = absl::StrCat("--", name, eq == std::string::npos ? "" : a.substr(eq));
      if (eq == std::string::npos) ++i;
      continue;
    }
    if (boolean.count(name)) {
      if (eq != std::string::npos) {
        const std::string v = a.substr(eq + 1);
        if (v != "true" && v != "false" && v != "1" && v != "0") {
          return usage_error(absl::StrCat("--", name, " takes true or false, not '", v, "'"));
        }
      }
      a = absl::StrCat("--", name, eq == std::string::npos ? "" : a.substr(eq));
      continue;
    }
    return usage_error(absl::StrCat("unknown flag '", a, "'"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals arrive through signalfd: block them before any thread starts, so every thread
  // inherits the mask. SIGPIPE is never wanted: writes report EPIPE instead.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  reactord::upgrade::take_channel_from_environment();
  reactord::upgrade::remember_command_line(argc, argv);

  std::vector<std::string> args(argv, argv + argc);
  bool help = false;
  if (int code = prescan(args, help); code != 0) return code;
  if (help) {
    std::printf("%s\n", kUsage);
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] { return std::string("reactord " REACTORD_VERSION "\n"); };
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(cargs.size()), cargs.data());

  if (absl::GetFlag(FLAGS_list_backends)) {
    for (const reactor::BackendInfo& b : reactor::list_backends()) {
      // Available: what the backend got (io_uring: ring flags and features); else why not.
      std::printf("%-10s %-3s %s\n", b.name.c_str(), b.available ? "yes" : "no",
                  (b.available ? b.detail : b.reason).c_str());
    }
    return 0;
  }

  const std::string path = absl::GetFlag(FLAGS_config);
  absl::StatusOr<reactord::Config> cfg = reactord::load_config_file(path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "reactord: %s\n", std::string(cfg.status().message()).c_str());
    reactord::upgrade::report_failure(std::string(cfg.status().message()));
    return absl::IsInvalidArgument(cfg.status()) ? reactord::kExitConfig : reactord::kExitNoInput;
  }
  std::vector<reactord::Override> overrides;
  if (const std::string b = absl::GetFlag(FLAGS_backend); !b.empty())
    overrides.emplace_back("runtime.backend", b);
  if (const std::string n = absl::GetFlag(FLAGS_shards); !n.empty())
    overrides.emplace_back("runtime.shards", n);
  for (const auto& [key, value] : overrides) {
    absl::Status s = reactord::apply_override(*cfg, key, value);
    if (!s.ok()) {
      return usage_error(
          absl::StrCat("--", key.substr(key.find('.') + 1), "=", value, ": ", s.message()));
    }
  }
  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("%s", reactord::format_config(*cfg).c_str());
    return 0;
  }

  const reactord::LogFormat format = cfg->log.format;
  reactord::log::init(format == reactord::LogFormat::kJournal ? reactord::log::Format::kJournal
                      : format == reactord::LogFormat::kText  ? reactord::log::Format::kText
                                                              : reactord::log::Format::kAuto,
                      reactord::to_string(cfg->log.level));
  // The runtime's notices (the auto backend's fallback, ...) go to the log, not behind it.
  reactor::set_notice_sink([](std::string_view message) { spdlog::warn("{}", message); });
  int code = reactord::Daemon(*std::move(cfg), path, std::move(overrides)).run();
  reactor::set_notice_sink(nullptr);
  reactord::log::shutdown();
  return code;
}
