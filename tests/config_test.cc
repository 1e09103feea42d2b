// The config loader: the shipped files, defaults, every range, each kind of bad config (with its
// file:line:column and key), path resolution, the printer's round trip, and run-time changes.
#include "config/config.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace reactord {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

const std::filesystem::path kRepo = REACTOR_SOURCE_DIR;

// One service, so that a snippet is a complete config.
constexpr std::string_view kOneService =
    "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n";

Config parse_ok(const std::string& text, const std::string& path = "/etc/reactord/t.toml") {
  absl::StatusOr<Config> cfg = parse_config(text, path);
  EXPECT_TRUE(cfg.ok()) << cfg.status() << "\n--- config:\n" << text;
  return cfg.ok() ? *cfg : Config{};
}

// The message of a config that must be invalid.
std::string parse_error(const std::string& text, const std::string& path = "t.toml") {
  absl::StatusOr<Config> cfg = parse_config(text, path);
  EXPECT_FALSE(cfg.ok()) << "accepted:\n" << text;
  if (cfg.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(cfg.status())) << cfg.status();
  return std::string(cfg.status().message());
}

// ---- shipped files -------------------------------------------------------------------------

TEST(ConfigFilesTest, DevelopmentConfigLoads) {
  const std::string path = (kRepo / "config/reactord.toml").string();
  absl::StatusOr<Config> cfg = load_config_file(path);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->admin.socket, (kRepo / "build/reactord.sock").lexically_normal().string());
  ASSERT_EQ(cfg->services.size(), 3u);
  std::vector<ServiceKind> kinds;
  for (const ServiceConfig& s : cfg->services) {
    kinds.push_back(s.kind);
    EXPECT_EQ(s.listen.family, ListenAddress::Family::kIpv4) << s.name;
    EXPECT_EQ(s.listen.host, "127.0.0.1") << s.name;
    EXPECT_GE(s.listen.port, 1024) << s.name << ": must run without root";
  }
  EXPECT_THAT(kinds,
              UnorderedElementsAre(ServiceKind::kEcho, ServiceKind::kHttp, ServiceKind::kResp));
}

TEST(ConfigFilesTest, SystemConfigLoads) {
  absl::StatusOr<Config> cfg = load_config_file((kRepo / "config/reactord.system.toml").string());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->admin.socket, "/run/reactord/admin.sock");
  EXPECT_EQ(cfg->admin.mode, 0660u);
  ASSERT_EQ(cfg->services.size(), 3u);
  for (const ServiceConfig& s : cfg->services) {
    EXPECT_FALSE(s.http.debug_routes) << s.name;
    if (s.kind == ServiceKind::kResp) {
      EXPECT_EQ(s.listen.host, "127.0.0.1") << "no auth in resp";
    }
  }
}

TEST(ConfigFilesTest, ShippedConfigsRoundTrip) {
  for (const char* name : {"config/reactord.toml", "config/reactord.system.toml"}) {
    absl::StatusOr<Config> cfg = load_config_file((kRepo / name).string());
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    absl::StatusOr<Config> again = parse_config(format_config(*cfg), "/elsewhere/x.toml");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << format_config(*cfg);
    EXPECT_EQ(*again, *cfg) << name;
  }
}

// ---- reading files -------------------------------------------------------------------------

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/config_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(ConfigFileTest, MissingFileIsNotFound) {
  absl::StatusOr<Config> cfg = load_config_file((dir_ / "nope.toml").string());
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(absl::IsNotFound(cfg.status())) << cfg.status();
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("nope.toml"));
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("No such file"));
}

TEST_F(ConfigFileTest, DirectoryIsNotFound) {
  absl::StatusOr<Config> cfg = load_config_file(dir_.string());
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(absl::IsNotFound(cfg.status())) << cfg.status();
}

TEST_F(ConfigFileTest, UnreadableFileIsPermissionDenied) {
  const std::string path = write("secret.toml", std::string(kOneService));
  ASSERT_EQ(chmod(path.c_str(), 0), 0);
  // Root reads any file: load it from a child that gives up root first. The child reports the
  // status code as its exit status.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(100);
    absl::StatusOr<Config> cfg = load_config_file(path);
    _exit(static_cast<int>(cfg.status().code()));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), static_cast<int>(absl::StatusCode::kPermissionDenied));
}

TEST_F(ConfigFileTest, InvalidFileNamesPathLineAndColumn) {
  const std::string path = write("bad.toml", "[runtime]\nshards = -1\n" + std::string(kOneService));
  absl::StatusOr<Config> cfg = load_config_file(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(cfg.status())) << cfg.status();
  EXPECT_THAT(std::string(cfg.status().message()), StartsWith(path + ":2:10: runtime.shards: "));
}

TEST_F(ConfigFileTest, HugeFileIsRefused) {
  const std::string path =
      write("huge.toml", std::string(kOneService) + std::string(size_t{2} << 20, '#') + "\n");
  absl::StatusOr<Config> cfg = load_config_file(path);
  ASSERT_FALSE(cfg.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(cfg.status())) << cfg.status();
}

TEST_F(ConfigFileTest, RelativePathsResolveAgainstTheFilesDirectory) {
  const std::string path = write("r.toml", R"(
[admin]
socket = "run/admin.sock"
[[service]]
name = "a"
kind = "echo"
listen = "./a.sock"
[[service]]
name = "b"
kind = "echo"
listen = "sub/../b.sock"
[[service]]
name = "c"
kind = "echo"
listen = "/abs/c.sock"
)");
  absl::StatusOr<Config> cfg = load_config_file(path);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->admin.socket, (dir_ / "run/admin.sock").string());
  EXPECT_EQ(cfg->services[0].listen.family, ListenAddress::Family::kUnix);
  EXPECT_EQ(cfg->services[0].listen.path, (dir_ / "a.sock").string());
  EXPECT_EQ(cfg->services[1].listen.path, (dir_ / "b.sock").string());
  EXPECT_EQ(cfg->services[2].listen.path, "/abs/c.sock");
  EXPECT_EQ(cfg->services[2].listen.to_string(), "/abs/c.sock");
}

TEST(ConfigPathTest, RelativeSourcePathIsMadeAbsolute) {
  const std::string cwd = std::filesystem::current_path().string();
  Config cfg = parse_ok("[admin]\nsocket = \"admin.sock\"\n" + std::string(kOneService),
                        "conf/reactord.toml");
  EXPECT_EQ(cfg.admin.socket, cwd + "/conf/admin.sock");
  cfg = parse_ok("[admin]\nsocket = \"../x/admin.sock\"\n" + std::string(kOneService), "");
  EXPECT_EQ(cfg.admin.socket,
            (std::filesystem::current_path().parent_path() / "x/admin.sock").string());
}

TEST(ConfigPathTest, SocketPathLongerThanSunPathIsAnError) {
  const std::string long_name(120, 'a');
  EXPECT_THAT(parse_error("[admin]\nsocket = \"" + long_name + "\"\n" + std::string(kOneService),
                          "/etc/t.toml"),
              StartsWith("/etc/t.toml:2:10: admin.socket: "));
  // 107 bytes fit (sun_path is 108 with its NUL).
  const std::string fits = "/" + std::string(106, 'b');
  EXPECT_EQ(
      parse_ok("[admin]\nsocket = \"" + fits + "\"\n" + std::string(kOneService)).admin.socket,
      fits);
  EXPECT_THAT(parse_error("[admin]\nsocket = \"/" + std::string(107, 'b') + "\"\n" +
                          std::string(kOneService)),
              HasSubstr("at most 107"));
}

// ---- defaults ------------------------------------------------------------------------------

TEST(ConfigDefaultsTest, OmittedKeysTakeDocumentedDefaults) {
  const Config cfg = parse_ok(std::string(kOneService));
  EXPECT_EQ(cfg.runtime.backend, IoBackend::kAuto);
  EXPECT_EQ(cfg.runtime.shards, 0u);
  EXPECT_FALSE(cfg.runtime.pin_cpus);
  EXPECT_EQ(cfg.runtime.stack_size_kib, 64u);
  EXPECT_EQ(cfg.runtime.idle, IdleMode::kBlock);
  EXPECT_EQ(cfg.runtime.spin_us, 50u);
  EXPECT_EQ(cfg.runtime.release_idle_stacks_ms, 1000u);
  EXPECT_EQ(cfg.runtime.offload_threads, 4u);
  EXPECT_FALSE(cfg.runtime.io_uring_sqpoll);
  EXPECT_EQ(cfg.runtime.io_uring_sqpoll_cpu, -1);
  EXPECT_EQ(cfg.runtime.io_uring_sqpoll_idle_ms, 1000u);
  EXPECT_EQ(cfg.runtime.io_uring_min_wait_us, 0u);
  EXPECT_EQ(cfg.log.level, LogLevel::kInfo);
  EXPECT_EQ(cfg.log.format, LogFormat::kAuto);
  EXPECT_EQ(cfg.admin.socket, "/run/reactord/admin.sock");
  EXPECT_EQ(cfg.admin.mode, 0660u);
  EXPECT_EQ(cfg.admin.group, "");
  EXPECT_THAT(cfg.admin.allow_uids, IsEmpty());
  EXPECT_THAT(cfg.admin.allow_gids, IsEmpty());
  EXPECT_EQ(cfg.admin.max_clients, 16u);
  EXPECT_EQ(cfg.admin.idle_timeout_ms, 60000u);
  EXPECT_TRUE(cfg.watchdog.enabled);
  EXPECT_EQ(cfg.watchdog.threshold_ms, 100u);
  EXPECT_EQ(cfg.watchdog.slow_slice_ms, 10u);
  EXPECT_EQ(cfg.watchdog.reports_per_minute, 10u);
  EXPECT_EQ(cfg.watchdog.abort_after_ms, 0u);
  EXPECT_EQ(cfg.watchdog.backtrace, BacktraceMode::kAlways);
  EXPECT_EQ(cfg.shutdown.drain_timeout_ms, 30000u);
  ASSERT_EQ(cfg.services.size(), 1u);
  const ServiceConfig& s = cfg.services[0];
  EXPECT_EQ(s.name, "e");
  EXPECT_EQ(s.kind, ServiceKind::kEcho);
  EXPECT_EQ(s.listen.to_string(), "127.0.0.1:0");
  EXPECT_EQ(s.max_connections, 4096u);
  EXPECT_EQ(s.idle_timeout_ms, 60000u);
  EXPECT_EQ(s.http.header_timeout_ms, 10000u);
  EXPECT_EQ(s.http.max_header_bytes, 16384u);
  EXPECT_EQ(s.http.max_body_bytes, 65536u);
  EXPECT_FALSE(s.http.debug_routes);
  EXPECT_EQ(s.resp.max_bulk_bytes, 1048576u);
  EXPECT_EQ(s.resp.max_array_len, 1024u);
  EXPECT_EQ(s.resp.max_inline_bytes, 65536u);
  EXPECT_EQ(s.resp.max_command_bytes, 8388608u);
  // The struct's own defaults are the loader's.
  Config expected;
  expected.services.push_back(s);
  EXPECT_EQ(cfg, expected);
}

TEST(ConfigDefaultsTest, EnumNames) {
  EXPECT_EQ(to_string(IoBackend::kIoUring), "io_uring");
  EXPECT_EQ(to_string(IdleMode::kAdaptive), "adaptive");
  EXPECT_EQ(to_string(LogLevel::kWarn), "warn");
  EXPECT_EQ(to_string(LogFormat::kJournal), "journal");
  EXPECT_EQ(to_string(BacktraceMode::kCpuOnly), "cpu-only");
  EXPECT_EQ(to_string(ServiceKind::kResp), "resp");
}

// ---- ranges --------------------------------------------------------------------------------

struct Range {
  std::string section;  // "runtime", or "service.http" / "service.resp" / "service.echo"
  std::string key;
  int64_t lo;
  int64_t hi;
};

// The config text with `key = value` in its place, and the line:column of the value.
std::string with_value(const Range& r, const std::string& value) {
  if (r.section.rfind("service.", 0) == 0) {
    const std::string kind = r.section.substr(8);
    return "[[service]]\nname = \"s\"\nkind = \"" + kind + "\"\nlisten = \"127.0.0.1:0\"\n" +
           r.key + " = " + value + "\n";
  }
  return "[" + r.section + "]\n" + r.key + " = " + value + "\n" + std::string(kOneService);
}

std::string key_path(const Range& r) {
  return r.section.rfind("service.", 0) == 0 ? "service[0]." + r.key : r.section + "." + r.key;
}

int value_line(const Range& r) {
  return r.section.rfind("service.", 0) == 0 ? 5 : 2;
}

TEST(ConfigRangeTest, EveryNumberHasItsRange) {
  const std::vector<Range> ranges = {
      {"runtime", "shards", 0, 1024},
      {"runtime", "spin_us", 0, 100000},
      {"runtime", "release_idle_stacks_ms", 0, 3600000},
      {"runtime", "offload_threads", 1, 256},
      {"runtime", "io_uring_sqpoll_cpu", -1, 4095},
      {"runtime", "io_uring_sqpoll_idle_ms", 1, 60000},
      {"runtime", "io_uring_min_wait_us", 0, 100000},
      {"admin", "max_clients", 1, 1024},
      {"admin", "idle_timeout_ms", 100, 3600000},
      {"watchdog", "reports_per_minute", 1, 6000},
      {"shutdown", "drain_timeout_ms", 0, 3600000},
      {"service.echo", "max_connections", 1, 1000000},
      {"service.echo", "idle_timeout_ms", 0, 86400000},
      {"service.http", "header_timeout_ms", 100, 600000},
      {"service.http", "max_header_bytes", 1024, 1048576},
      {"service.http", "max_body_bytes", 0, 67108864},
      {"service.resp", "max_bulk_bytes", 1, 536870912},
      {"service.resp", "max_array_len", 1, 1048576},
      {"service.resp", "max_inline_bytes", 16, 1048576},
      {"service.resp", "max_command_bytes", 1024, 1073741824},
  };
  for (const Range& r : ranges) {
    SCOPED_TRACE(key_path(r));
    EXPECT_TRUE(parse_config(with_value(r, std::to_string(r.lo)), "t.toml").ok());
    EXPECT_TRUE(parse_config(with_value(r, std::to_string(r.hi)), "t.toml").ok());
    const std::string prefix = "t.toml:" + std::to_string(value_line(r)) + ":" +
                               std::to_string(r.key.size() + 4) + ": " + key_path(r) + ": ";
    const std::string range = std::to_string(r.lo) + ".." + std::to_string(r.hi);
    EXPECT_EQ(parse_error(with_value(r, std::to_string(r.lo - 1))),
              prefix + "expected an integer in " + range + ", got " + std::to_string(r.lo - 1));
    EXPECT_EQ(parse_error(with_value(r, std::to_string(r.hi + 1))),
              prefix + "expected an integer in " + range + ", got " + std::to_string(r.hi + 1));
  }
}

TEST(ConfigRangeTest, StackSizeIsBoundedAndAMultipleOfFour) {
  const Range r{"runtime", "stack_size_kib", 16, 8192};
  EXPECT_EQ(parse_ok(with_value(r, "16")).runtime.stack_size_kib, 16u);
  EXPECT_EQ(parse_ok(with_value(r, "8192")).runtime.stack_size_kib, 8192u);
  EXPECT_EQ(parse_ok(with_value(r, "132")).runtime.stack_size_kib, 132u);
  for (const char* bad : {"12", "8196", "66", "0"}) {
    EXPECT_EQ(parse_error(with_value(r, bad)),
              std::string("t.toml:2:18: runtime.stack_size_kib: expected an integer in "
                          "16..8192, a multiple of 4, got ") +
                  bad);
  }
}

TEST(ConfigRangeTest, WatchdogThresholdsAreConsistent) {
  // threshold_ms and slow_slice_ms are each 1..60000 (the range test above cannot take them:
  // the defaults of the other make a bound fail the check between them), slow_slice_ms at most
  // threshold_ms.
  Config cfg =
      parse_ok("[watchdog]\nthreshold_ms = 1\nslow_slice_ms = 1\n" + std::string(kOneService));
  EXPECT_EQ(cfg.watchdog.threshold_ms, 1u);
  EXPECT_EQ(cfg.watchdog.slow_slice_ms, 1u);
  cfg = parse_ok("[watchdog]\nthreshold_ms = 60000\nslow_slice_ms = 60000\n" +
                 std::string(kOneService));
  EXPECT_EQ(cfg.watchdog.threshold_ms, 60000u);
  EXPECT_EQ(cfg.watchdog.slow_slice_ms, 60000u);
  EXPECT_EQ(parse_error("[watchdog]\nthreshold_ms = 60001\n" + std::string(kOneService)),
            "t.toml:2:16: watchdog.threshold_ms: expected an integer in 1..60000, got 60001");
  EXPECT_EQ(parse_error("[watchdog]\nslow_slice_ms = 0\n" + std::string(kOneService)),
            "t.toml:2:17: watchdog.slow_slice_ms: expected an integer in 1..60000, got 0");
  EXPECT_EQ(parse_error("[watchdog]\nthreshold_ms = 0\n" + std::string(kOneService)),
            "t.toml:2:16: watchdog.threshold_ms: expected an integer in 1..60000, got 0");
  EXPECT_EQ(parse_error("[watchdog]\nslow_slice_ms = 60001\n" + std::string(kOneService)),
            "t.toml:2:17: watchdog.slow_slice_ms: expected an integer in 1..60000, got 60001");
  EXPECT_EQ(
      parse_error("[watchdog]\nthreshold_ms = 50\nslow_slice_ms = 60\n" + std::string(kOneService)),
      "t.toml:3:17: watchdog.slow_slice_ms: 60 exceeds watchdog.threshold_ms (50)");
  // With slow_slice_ms left at its default (10), the error points at threshold_ms.
  EXPECT_THAT(parse_error("[watchdog]\nthreshold_ms = 5\n" + std::string(kOneService)),
              StartsWith("t.toml:2:16: watchdog.slow_slice_ms: 10 exceeds"));
  // abort_after_ms: 0 (off) or threshold_ms..3600000.
  EXPECT_EQ(parse_ok("[watchdog]\nabort_after_ms = 100\n" + std::string(kOneService))
                .watchdog.abort_after_ms,
            100u);
  EXPECT_EQ(parse_ok("[watchdog]\nabort_after_ms = 3600000\n" + std::string(kOneService))
                .watchdog.abort_after_ms,
            3600000u);
  EXPECT_EQ(parse_error("[watchdog]\nabort_after_ms = 99\n" + std::string(kOneService)),
            "t.toml:2:18: watchdog.abort_after_ms: expected 0 (off) or at least "
            "watchdog.threshold_ms (100), got 99");
  EXPECT_THAT(parse_error("[watchdog]\nabort_after_ms = 3600001\n" + std::string(kOneService)),
              StartsWith("t.toml:2:18: watchdog.abort_after_ms: expected an integer in "));
}

TEST(ConfigRangeTest, Ports) {
  auto listen = [](const std::string& addr) {
    return "[[service]]\nname = \"s\"\nkind = \"echo\"\nlisten = \"" + addr + "\"\n";
  };
  EXPECT_EQ(parse_ok(listen("127.0.0.1:0")).services[0].listen.port, 0);
  EXPECT_EQ(parse_ok(listen("127.0.0.1:65535")).services[0].listen.port, 65535);
  EXPECT_EQ(parse_error(listen("127.0.0.1:65536")),
            "t.toml:4:10: service[0].listen: expected a port 0..65535, got 65536");
  EXPECT_THAT(parse_error(listen("127.0.0.1:-1")), HasSubstr("expected a port 0..65535"));
  EXPECT_THAT(parse_error(listen("127.0.0.1:")), HasSubstr("expected a port 0..65535"));
  EXPECT_THAT(parse_error(listen("127.0.0.1:99999999")), HasSubstr("expected a port 0..65535"));
}

TEST(ConfigRangeTest, ServiceCountIsBounded) {
  std::string text;
  for (int i = 0; i < 257; ++i) {
    text += "[[service]]\nname = \"s" + std::to_string(i) + "\"\nkind = \"echo\"\nlisten = \"" +
            "127.0.0.1:" + std::to_string(1000 + i) + "\"\n";
  }
  EXPECT_THAT(parse_error(text), StartsWith("t.toml:1025:1: service[256]: at most 256"));
  text.resize(text.rfind("[[service]]"));
  EXPECT_EQ(parse_ok(text).services.size(), 256u);
}

// ---- each kind of bad config ---------------------------------------------------------------

struct BadConfig {
  const char* what;
  std::string text;
  std::string expected;  // the whole message, or its start when it ends in "…"
};

TEST(ConfigErrorTest, EachKindOfMistakeNamesKeyLineAndColumn) {
  const std::string svc(kOneService);
  const std::vector<BadConfig> cases = {
      {"unknown key", "[runtime]\nshards = 2\n  shardz = 3\n" + svc,
       "t.toml:3:3: runtime.shardz: unknown key; [runtime] has backend, shards, pin_cpus, "
       "stack_size_kib, idle, spin_us, release_idle_stacks_ms, offload_threads, io_uring_sqpoll, "
       "io_uring_sqpoll_cpu, "
       "io_uring_sqpoll_idle_ms, io_uring_min_wait_us"},
      {"unknown section", "[runtme]\nshards = 2\n" + svc,
       "t.toml:1:2: runtme: unknown section; expected runtime, log, admin, watchdog, shutdown, "
       "service"},
      {"unknown top-level key", "verbose = true\n" + svc,
       "t.toml:1:1: verbose: unknown key; expected runtime, log, admin, watchdog, shutdown, "
       "service"},
      {"unknown key in a service", svc + "max_conns = 5\n",
       "t.toml:5:1: service[0].max_conns: unknown key; a service has name, kind, listen, "
       "max_connections, idle_timeout_ms, header_timeout_ms, max_header_bytes, max_body_bytes, "
       "debug_routes, max_bulk_bytes, max_array_len, max_inline_bytes, max_command_bytes, "
       "max_memory_bytes"},
      {"wrong type", "[runtime]\nshards = \"4\"\n" + svc,
       "t.toml:2:10: runtime.shards: expected an integer in 0..1024, got the string \"4\""},
      {"float for an integer", "[shutdown]\ndrain_timeout_ms = 1.5\n" + svc,
       "t.toml:2:20: shutdown.drain_timeout_ms: expected an integer in 0..3600000, got the "
       "float 1.5"},
      {"wrong type for a bool", "[runtime]\npin_cpus = \"yes\"\n" + svc,
       "t.toml:2:12: runtime.pin_cpus: expected true or false, got the string \"yes\""},
      {"section is not a table", "runtime = 4\n" + svc,
       "t.toml:1:11: runtime: expected a table ([runtime]), got the integer 4"},
      {"out of range", "[admin]\nmax_clients = 0\n" + svc,
       "t.toml:2:15: admin.max_clients: expected an integer in 1..1024, got 0"},
      {"bad enum", "[runtime]\nbackend = \"kqueue\"\n" + svc,
       "t.toml:2:11: runtime.backend: expected one of auto, epoll, io_uring, libevent, got "
       "\"kqueue\""},
      {"bad service kind",
       svc + "\n[[service]]\nname = \"f\"\n    kind = \"ftp\"\nlisten = \"127.0.0.1:21\"\n",
       "t.toml:8:12: service[1].kind: expected one of echo, http, resp, got \"ftp\""},
      {"bad log level", "[log]\nlevel = \"verbose\"\n" + svc,
       "t.toml:2:9: log.level: expected one of trace, debug, info, warn, error, got \"verbose\""},
      {"duplicate service name",
       svc + "[[service]]\nname = \"e\"\nkind = \"http\"\nlisten = \"127.0.0.1:1\"\n",
       "t.toml:6:8: service[1].name: duplicate service name \"e\", also used by service[0]"},
      {"duplicate listen",
       "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"127.0.0.1:7000\"\n"
       "[[service]]\nname = \"b\"\nkind = \"http\"\nlisten = \"127.0.0.1:7000\"\n",
       "t.toml:8:10: service[1].listen: duplicate listen address \"127.0.0.1:7000\", also used "
       "by service[0] (a)"},
      {"overlapping wildcard listen",
       "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"127.0.0.1:7000\"\n"
       "[[service]]\nname = \"b\"\nkind = \"http\"\nlisten = \"[::]:7000\"\n",
       "t.toml:8:10: service[1].listen: \"[::]:7000\" overlaps \"127.0.0.1:7000\", also used by "
       "service[0] (a)"},
      {"duplicate unix path",
       "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"/tmp/x.sock\"\n"
       "[[service]]\nname = \"b\"\nkind = \"http\"\nlisten = \"/tmp/../tmp/x.sock\"\n",
       "t.toml:8:10: service[1].listen: duplicate listen address \"/tmp/x.sock\", also used by "
       "service[0] (a)"},
      {"host name instead of an address",
       "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"localhost:7000\"\n",
       "t.toml:4:10: service[0].listen: \"localhost\" is not a numeric IPv4 address (names are "
       "not resolved)"},
      {"IPv6 without brackets",
       "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"::1:7000\"\n",
       "t.toml:4:10: service[0].listen: an IPv6 address needs brackets, e.g. \"[::1]:7000\", "
       "got \"::1:7000\""},
      {"no port", "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"127.0.0.1\"\n",
       "t.toml:4:10: service[0].listen: expected HOST:PORT (numeric IPv4), [IPV6]:PORT, or a "
       "Unix socket path containing '/', got \"127.0.0.1\""},
      {"bad IPv6", "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"[::g]:1\"\n",
       "t.toml:4:10: service[0].listen: \"::g\" is not a numeric IPv6 address (names are not "
       "resolved)"},
      {"kind-specific key on the wrong kind", svc + "max_bulk_bytes = 10\n",
       "t.toml:5:1: service[0].max_bulk_bytes: only valid for kind = \"resp\", this service is "
       "\"echo\""},
      {"http key on resp",
       "[[service]]\nname = \"r\"\nkind = \"resp\"\nlisten = \"127.0.0.1:0\"\ndebug_routes = "
       "true\n",
       "t.toml:5:1: service[0].debug_routes: only valid for kind = \"http\", this service is "
       "\"resp\""},
      {"missing required key", "[[service]]\nname = \"a\"\nkind = \"echo\"\n",
       "t.toml:1:1: service[0].listen: required key is missing"},
      {"malformed TOML", "[runtime]\nshards = [1,\n",
       "t.toml:2:14: invalid TOML: Error while parsing array: …"},
      {"duplicate TOML key", "[runtime]\nshards = 1\nshards = 2\n" + svc,
       "t.toml:3:10: invalid TOML: Error while parsing key-value pair: cannot redefine …"},
      {"broken table header (a toml++ assertion)", "[[[service]]]\n" + svc,
       "t.toml:1:3: invalid TOML: …"},
      {"decimal mode", "[admin]\nmode = 660\n" + svc,
       "t.toml:2:8: admin.mode: write the mode as a string (\"0660\") or an octal integer "
       "(0o660), not the integer 660"},
      {"bad octal mode", "[admin]\nmode = \"0968\"\n" + svc,
       "t.toml:2:8: admin.mode: expected an octal mode string such as \"0660\" (at most "
       "\"0777\"), got \"0968\""},
      {"setuid mode", "[admin]\nmode = \"4755\"\n" + svc, "t.toml:2:8: admin.mode: expected…"},
      {"octal mode too large", "[admin]\nmode = 0o1777\n" + svc,
       "t.toml:2:8: admin.mode: expected permission bits 0o000..0o777, got 0o1777"},
      {"negative uid", "[admin]\nallow_uids = [0, 1000,\n  -1]\n" + svc,
       "t.toml:3:3: admin.allow_uids[2]: expected an integer in 0..4294967294, got -1"},
      {"uid list is not a list", "[admin]\nallow_gids = 5\n" + svc,
       "t.toml:2:14: admin.allow_gids: expected an array of integers, got the integer 5"},
      {"bad group name", "[admin]\ngroup = \"-wheel\"\n" + svc,
       "t.toml:2:9: admin.group: expected a group name of at most 32 letters, digits, '_', '-' "
       "or '.', got \"-wheel\""},
      {"bad service name",
       "[[service]]\nname = \"a b\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n",
       "t.toml:2:8: service[0].name: expected 1 to 64 letters, digits, '_' or '-' starting with "
       "a letter or digit, got \"a b\""},
      {"reserved service name",
       "[[service]]\nname = \"admin\"\nkind = \"echo\"\nlisten = \"127.0.0.1:0\"\n",
       "t.toml:2:8: service[0].name: \"admin\" is reserved for the admin socket (socket "
       "activation)"},
      {"no services", "[runtime]\nshards = 1\n",
       "t.toml:1:1: service: at least one [[service]] table is required"},
      {"empty service list", "service = []\n",
       "t.toml:1:1: service: at least one [[service]] table is required"},
      {"service as a plain table", "[service]\nname = \"a\"\n",
       "t.toml:1:1: service: expected an array of tables ([[service]]), got a table"},
      {"directory as a socket path", "[admin]\nsocket = \"/run/reactord/\"\n" + svc,
       "t.toml:2:10: admin.socket: \"/run/reactord/\" names a directory, not a socket file"},
      {"empty socket path", "[admin]\nsocket = \"\"\n" + svc,
       "t.toml:2:10: admin.socket: expected a socket path, got an empty string"},
      {"non-ASCII outside a string (a toml++ 3.3 crash)", "[runtime]\nshards = 1\n  é = 2\n" + svc,
       "t.toml:3:3: invalid TOML: …"},
      {"non-ASCII after a value (a toml++ 3.3 crash)", "[runtime]\nshards = 1 \xef\xbb\x91\n" + svc,
       "t.toml:2:12: invalid TOML: …"},
      {"NUL in a path", "[admin]\nsocket = \"/a\\u0000b\"\n" + svc,
       "t.toml:2:10: admin.socket: a path cannot contain a NUL character"},
  };
  for (const BadConfig& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string message = parse_error(c.text);
    const std::string& e = c.expected;
    if (e.size() >= 3 && e.compare(e.size() - 3, 3, "…") == 0) {
      EXPECT_THAT(message, StartsWith(e.substr(0, e.size() - 3)));
    } else {
      EXPECT_EQ(message, e);
    }
  }
}

TEST(ConfigValueTest, NonAsciiInStringsAndCommentsIsFine) {
  const Config cfg = parse_ok(
      "# café, Grüße\n[admin]  # ü\nsocket = \"/tmp/é # x.sock\"  # ß\n"
      "group = 'a' # 'é\n"
      "[[service]]\nname = \"e\"\nkind = \"echo\" # \"\"\" é\n"
      "listen = \"\"\"/tmp/\"\"ü\\\n  .sock\"\"\"\"  # é\n");
  EXPECT_EQ(cfg.admin.socket, "/tmp/é # x.sock");
  EXPECT_EQ(cfg.admin.group, "a");
  EXPECT_EQ(cfg.services[0].listen.path, "/tmp/\"\"ü.sock\"");
  absl::StatusOr<Config> again = parse_config(format_config(cfg), "t.toml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, cfg);
}

TEST(ConfigErrorTest, FirstProblemInFileOrderIsReported) {
  // toml++ keeps keys sorted; the report must still follow the file.
  const std::string text = "[watchdog]\nthreshold_ms = 0\n[admin]\nzz = 1\n[runtime]\naa = 2\n" +
                           std::string(kOneService);
  EXPECT_THAT(parse_error(text), StartsWith("t.toml:2:16: watchdog.threshold_ms: "));
}

TEST(ConfigErrorTest, EmptySourcePathStillNamesAFile) {
  EXPECT_THAT(parse_error("[runtime]\nshards = -1\n" + std::string(kOneService), ""),
              StartsWith("<config>:2:10: runtime.shards: "));
}

TEST(ConfigErrorTest, GarbageNeverCrashes) {
  // Not a fuzzer, but the shapes a fuzzer finds first.
  for (const std::string& text :
       {std::string("\0\0\0", 3), std::string("[[service]]\n[[service]]\n"),
        std::string("service = [1, 2]\n"), std::string("[[service]]\nlisten = [\"a\"]\n"),
        std::string("a.b.c.d = 1\n"), std::string(1000, '['), std::string("\xff\xfe\n"),
        std::string("[=]\n"), std::string("[\n"), std::string("[[ ]]\n"),
        std::string("a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"),
        // Found by libFuzzer: toml++ 3.3's Unicode tables reached __builtin_unreachable (UBSan
        // in the asan build reports it).
        std::string("# react runEverythin(SIGHUP rldai oset)\012format "
                    "=0\042pin_[cpe\001\000\000\000er\000\000dservice[\320\246.idle_timeout_mis-"
                    "c\000\000\000runtim\245\321\214\213\236\234\224\240size_ing\012",
                    122),
        std::string("a = 0\"\320\246\"\n"), std::string("a = 1\xc2\xa7\n"),
        std::string("s = \"\"\"\\\n\xc2\xa7\"\"\"\n")}) {
    absl::StatusOr<Config> cfg = parse_config(text, "t.toml");
    EXPECT_FALSE(cfg.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(cfg.status())) << cfg.status();
  }
}

// ---- values that parse ---------------------------------------------------------------------

TEST(ConfigValueTest, Modes) {
  auto mode = [](const std::string& v) {
    return parse_ok("[admin]\nmode = " + v + "\n" + std::string(kOneService)).admin.mode;
  };
  EXPECT_EQ(mode("\"0660\""), 0660u);
  EXPECT_EQ(mode("\"640\""), 0640u);
  EXPECT_EQ(mode("\"0000\""), 0u);
  EXPECT_EQ(mode("\"0777\""), 0777u);
  EXPECT_EQ(mode("0o600"), 0600u);
  EXPECT_THAT(parse_error("[admin]\nmode = \"06600\"\n" + std::string(kOneService)),
              HasSubstr("admin.mode: expected an octal mode string"));
  EXPECT_THAT(parse_error("[admin]\nmode = 0x1b0\n" + std::string(kOneService)),
              HasSubstr("not the integer 432"));
}

TEST(ConfigValueTest, ListenAddressesAreCanonical) {
  auto listen = [](const std::string& addr) {
    return parse_ok("[[service]]\nname = \"s\"\nkind = \"echo\"\nlisten = \"" + addr + "\"\n")
        .services[0]
        .listen;
  };
  ListenAddress a = listen("[0:0::1]:80");
  EXPECT_EQ(a.family, ListenAddress::Family::kIpv6);
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 80);
  EXPECT_EQ(a.to_string(), "[::1]:80");
  a = listen("0.0.0.0:8080");
  EXPECT_EQ(a.family, ListenAddress::Family::kIpv4);
  EXPECT_EQ(a.to_string(), "0.0.0.0:8080");
}

TEST(ConfigValueTest, PortZeroNeverCollides) {
  // Tests run every service on a port the OS picks.
  std::string text;
  for (const char* kind : {"echo", "http", "resp"}) {
    text += std::string("[[service]]\nname = \"") + kind + "\"\nkind = \"" + kind +
            "\"\nlisten = \"127.0.0.1:0\"\n";
  }
  EXPECT_EQ(parse_ok(text).services.size(), 3u);
}

TEST(ConfigValueTest, DistinctAddressesOnOnePortAreAllowed) {
  const Config cfg = parse_ok(
      "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"127.0.0.1:7000\"\n"
      "[[service]]\nname = \"b\"\nkind = \"echo\"\nlisten = \"127.0.0.2:7000\"\n"
      "[[service]]\nname = \"c\"\nkind = \"echo\"\nlisten = \"[::1]:7000\"\n");
  EXPECT_EQ(cfg.services.size(), 3u);
}

TEST(ConfigValueTest, InlineAndDottedFormsAreTheSameConfig) {
  const Config a = parse_ok("runtime = { shards = 3 }\nwatchdog.threshold_ms = 200\n" +
                            std::string(kOneService));
  const Config b = parse_ok("[runtime]\nshards = 3\n[watchdog]\nthreshold_ms = 200\n" +
                            std::string(kOneService));
  EXPECT_EQ(a.runtime.shards, 3u);
  EXPECT_EQ(a.watchdog.threshold_ms, 200u);
  EXPECT_EQ(a, b);
}

// ---- format_config -------------------------------------------------------------------------

Config everything_changed() {
  Config cfg;
  cfg.runtime = {IoBackend::kIoUring, 8, true, 128, IdleMode::kAdaptive, 200, 16};
  cfg.log = {LogLevel::kTrace, LogFormat::kJournal};
  cfg.admin.socket = "/tmp/we\"ird\\ dir\t/admin.sock";
  cfg.admin.mode = 0604;
  cfg.admin.group = "adm";
  cfg.admin.allow_uids = {0, 1000, 4294967294u};
  cfg.admin.allow_gids = {4};
  cfg.admin.max_clients = 3;
  cfg.admin.idle_timeout_ms = 100;
  cfg.watchdog = {false, 250, 25, 3, 1000, BacktraceMode::kCpuOnly};
  cfg.shutdown.drain_timeout_ms = 0;
  ServiceConfig web;
  web.name = "web";
  web.kind = ServiceKind::kHttp;
  web.listen = {ListenAddress::Family::kIpv6, "::", 8443, ""};
  web.max_connections = 7;
  web.idle_timeout_ms = 0;
  web.http = {123, 2048, true, 4096};
  ServiceConfig kv;
  kv.name = "kv-1";
  kv.kind = ServiceKind::kResp;
  kv.listen = {ListenAddress::Family::kUnix, "", 0, "/run/kv.sock"};
  kv.resp = {5, 6, 100, 2048};
  ServiceConfig echo;
  echo.name = "Echo_2";
  echo.listen = {ListenAddress::Family::kIpv4, "10.1.2.3", 7, ""};
  cfg.services = {web, kv, echo};
  return cfg;
}

TEST(ConfigFormatTest, RoundTripsEveryKey) {
  const Config cfg = everything_changed();
  const std::string text = format_config(cfg);
  absl::StatusOr<Config> again = parse_config(text, "/somewhere/else.toml");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << text;
  EXPECT_EQ(*again, cfg) << text;
  EXPECT_EQ(format_config(*again), text);
}

TEST(ConfigFormatTest, PrintsEveryKeyInSchemaOrder) {
  const std::string text = format_config(everything_changed());
  EXPECT_THAT(text, StartsWith("[runtime]\nbackend = \"io_uring\"\nshards = 8\npin_cpus = true\n"));
  EXPECT_THAT(text, HasSubstr("[admin]\nsocket = \"/tmp/we\\\"ird\\\\ dir\\t/admin.sock\"\n"
                              "mode = \"0604\"\ngroup = \"adm\"\n"
                              "allow_uids = [0, 1000, 4294967294]\nallow_gids = [4]\n"));
  EXPECT_THAT(text, HasSubstr("backtrace = \"cpu-only\"\n"));
  // Kind-specific keys only on their kind.
  EXPECT_THAT(text, HasSubstr("[[service]]\nname = \"web\"\nkind = \"http\"\n"
                              "listen = \"[::]:8443\"\nmax_connections = 7\n"
                              "idle_timeout_ms = 0\nheader_timeout_ms = 123\n"
                              "max_header_bytes = 2048\nmax_body_bytes = 4096\n"
                              "debug_routes = true\n\n"));
  EXPECT_THAT(text, HasSubstr("listen = \"/run/kv.sock\"\nmax_connections = 4096\n"
                              "idle_timeout_ms = 60000\nmax_bulk_bytes = 5\nmax_array_len = 6\n"
                              "max_inline_bytes = 100\nmax_command_bytes = 2048\n"));
  EXPECT_THAT(text, HasSubstr("listen = \"10.1.2.3:7\"\nmax_connections = 4096\n"
                              "idle_timeout_ms = 60000\n"));
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.substr(text.size() - 2), "\n\n");
}

// ---- run-time changes ----------------------------------------------------------------------

TEST(ConfigReloadTest, ReloadableKeys) {
  EXPECT_THAT(
      reloadable_keys(),
      ElementsAre("log.level", "admin.allow_uids", "admin.allow_gids", "watchdog.enabled",
                  "watchdog.threshold_ms", "watchdog.slow_slice_ms", "watchdog.reports_per_minute",
                  "watchdog.abort_after_ms", "watchdog.backtrace", "service.NAME.max_connections",
                  "service.NAME.max_memory_bytes"));
}

TEST(ConfigReloadTest, RestartNeededListsChangedNonReloadableKeys) {
  const Config old_cfg = everything_changed();
  EXPECT_THAT(restart_needed(old_cfg, old_cfg), IsEmpty());

  Config reloadable_only = old_cfg;
  reloadable_only.log.level = LogLevel::kError;
  reloadable_only.watchdog = WatchdogConfig{};
  reloadable_only.admin.allow_uids = {};
  reloadable_only.admin.allow_gids = {1, 2};
  reloadable_only.services[0].max_connections = 99;
  EXPECT_THAT(restart_needed(old_cfg, reloadable_only), IsEmpty());

  Config changed = old_cfg;
  changed.runtime.shards = 2;
  changed.log.format = LogFormat::kText;
  changed.admin.mode = 0600;
  changed.services[0].listen.port = 9443;
  changed.services[0].http.debug_routes = false;
  changed.services[1].name = "kv-2";  // removed kv-1, added kv-2
  changed.services[2].kind = ServiceKind::kHttp;
  EXPECT_THAT(restart_needed(old_cfg, changed),
              ElementsAre("runtime.shards", "log.format", "admin.mode", "service.web.listen",
                          "service.web.debug_routes", "service.kv-1 (removed)",
                          "service.Echo_2.kind", "service.kv-2 (added)"));
}

TEST(ConfigReloadTest, MergeReloadableTakesOnlyReloadableKeys) {
  const Config running = everything_changed();
  Config loaded = running;
  loaded.runtime.shards = 1;
  loaded.log.level = LogLevel::kWarn;
  loaded.admin.socket = "/elsewhere.sock";
  loaded.admin.allow_uids = {42};
  loaded.watchdog = WatchdogConfig{};
  loaded.services[0].max_connections = 5;
  loaded.services[0].idle_timeout_ms = 5;
  loaded.services[1].name = "new";
  loaded.services[1].max_connections = 6;

  const Config merged = merge_reloadable(running, loaded);
  Config expected = running;
  expected.log.level = LogLevel::kWarn;
  expected.admin.allow_uids = {42};
  expected.watchdog = WatchdogConfig{};
  expected.services[0].max_connections = 5;
  EXPECT_EQ(merged, expected);
}

TEST(ConfigSetTest, ChangesReloadableKeys) {
  Config cfg = parse_ok(std::string(kOneService));
  ASSERT_TRUE(apply_setting(cfg, "log.level", "debug").ok());
  EXPECT_EQ(cfg.log.level, LogLevel::kDebug);
  ASSERT_TRUE(apply_setting(cfg, "log.level", "\"warn\"").ok());
  EXPECT_EQ(cfg.log.level, LogLevel::kWarn);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.threshold_ms", "50").ok());
  EXPECT_EQ(cfg.watchdog.threshold_ms, 50u);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.enabled", "false").ok());
  EXPECT_FALSE(cfg.watchdog.enabled);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.backtrace", "cpu-only").ok());
  EXPECT_EQ(cfg.watchdog.backtrace, BacktraceMode::kCpuOnly);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.abort_after_ms", "5000").ok());
  EXPECT_EQ(cfg.watchdog.abort_after_ms, 5000u);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.reports_per_minute", "60").ok());
  EXPECT_EQ(cfg.watchdog.reports_per_minute, 60u);
  ASSERT_TRUE(apply_setting(cfg, "watchdog.slow_slice_ms", "20").ok());
  EXPECT_EQ(cfg.watchdog.slow_slice_ms, 20u);
  ASSERT_TRUE(apply_setting(cfg, "admin.allow_uids", "1000,1001").ok());
  EXPECT_THAT(cfg.admin.allow_uids, ElementsAre(1000u, 1001u));
  ASSERT_TRUE(apply_setting(cfg, "admin.allow_gids", "[7, 8]").ok());
  EXPECT_THAT(cfg.admin.allow_gids, ElementsAre(7u, 8u));
  ASSERT_TRUE(apply_setting(cfg, "admin.allow_uids", "").ok());
  EXPECT_THAT(cfg.admin.allow_uids, IsEmpty());
  ASSERT_TRUE(apply_setting(cfg, "admin.allow_gids", "[]").ok());
  EXPECT_THAT(cfg.admin.allow_gids, IsEmpty());
  ASSERT_TRUE(apply_setting(cfg, "service.e.max_connections", "12").ok());
  EXPECT_EQ(cfg.services[0].max_connections, 12u);
}

TEST(ConfigSetTest, RefusesUnknownNonReloadableAndBadValues) {
  const Config before = parse_ok(std::string(kOneService));
  Config cfg = before;
  auto expect = [&](std::string_view key, std::string_view value, absl::StatusCode code,
                    const std::string& message) {
    absl::Status s = apply_setting(cfg, key, value);
    EXPECT_EQ(s.code(), code) << key << " " << value << ": " << s;
    if (message.size() >= 3 && message.compare(message.size() - 3, 3, "…") == 0) {
      EXPECT_THAT(std::string(s.message()), StartsWith(message.substr(0, message.size() - 3)));
    } else {
      EXPECT_EQ(std::string(s.message()), message);
    }
    EXPECT_EQ(cfg, before) << "changed by a refused set of " << key;
  };
  using C = absl::StatusCode;
  expect("watchdog.nope", "1", C::kNotFound, "unknown key \"watchdog.nope\"");
  expect("nope.x", "1", C::kNotFound,
         "unknown key \"nope.x\"; sections are runtime, log, admin, watchdog, shutdown, service");
  expect("shards", "1", C::kNotFound, "unknown key \"shards\"; expected SECTION.KEY");
  expect("service.nope.max_connections", "1", C::kNotFound, "no service named \"nope\"");
  expect("service.e.bogus", "1", C::kNotFound, "unknown key \"service.e.bogus\"");
  expect("runtime.shards", "2", C::kFailedPrecondition,
         "runtime.shards cannot change at run time; edit the file and restart");
  expect("admin.socket", "/x.sock", C::kFailedPrecondition,
         "admin.socket cannot change at run time; edit the file and restart");
  expect("service.e.listen", "127.0.0.1:1", C::kFailedPrecondition,
         "service.e.listen cannot change at run time; edit the file and restart");
  expect("watchdog.threshold_ms", "0", C::kInvalidArgument,
         "watchdog.threshold_ms: expected an integer in 1..60000, got 0");
  expect("watchdog.threshold_ms", "fast", C::kInvalidArgument,
         "watchdog.threshold_ms: cannot read \"fast\" as a TOML value: …");
  expect("watchdog.threshold_ms", "", C::kInvalidArgument,
         "watchdog.threshold_ms: cannot read \"\" as a TOML value: Error while parsing "
         "key-value pair: encountered end-of-file");
  expect("watchdog.enabled", "1", C::kInvalidArgument,
         "watchdog.enabled: expected true or false, got the integer 1");
  expect("log.level", "loud", C::kInvalidArgument,
         "log.level: expected one of trace, debug, info, warn, error, got \"loud\"");
  expect("admin.allow_uids", "1,-2", C::kInvalidArgument,
         "admin.allow_uids[1]: expected an integer in 0..4294967294, got -2");
  expect("watchdog.threshold_ms", "5", C::kInvalidArgument,
         "watchdog.slow_slice_ms: 10 exceeds watchdog.threshold_ms (5)");
  expect("watchdog.abort_after_ms", "10", C::kInvalidArgument,
         "watchdog.abort_after_ms: expected 0 (off) or at least watchdog.threshold_ms (100), got "
         "10");
  expect("watchdog.threshold_ms", "\xc3\xa9", C::kInvalidArgument,
         "watchdog.threshold_ms: cannot read \"é\" as a TOML value: …");
  expect("log.level", "\xff", C::kInvalidArgument,
         "log.level: cannot read \"\xff\" as a TOML value: …");
  expect("log.level", "debug\nx", C::kInvalidArgument,
         "log.level: a value cannot contain line breaks or NUL characters");
}

TEST(ConfigSetTest, OverridesAnyKeyForFlags) {
  Config cfg = parse_ok(std::string(kOneService) +
                        "[[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"127.0.0.1:80\"\n");
  ASSERT_TRUE(apply_override(cfg, "runtime.shards", "3").ok());
  EXPECT_EQ(cfg.runtime.shards, 3u);
  ASSERT_TRUE(apply_override(cfg, "runtime.backend", "epoll").ok());
  EXPECT_EQ(cfg.runtime.backend, IoBackend::kEpoll);
  ASSERT_TRUE(apply_override(cfg, "admin.mode", "0600").ok());
  EXPECT_EQ(cfg.admin.mode, 0600u);
  ASSERT_TRUE(apply_override(cfg, "admin.socket", "rel/a.sock").ok());
  EXPECT_EQ(cfg.admin.socket, (std::filesystem::current_path() / "rel/a.sock").string());
  ASSERT_TRUE(apply_override(cfg, "service.w.listen", "[::1]:0").ok());
  EXPECT_EQ(cfg.services[1].listen.to_string(), "[::1]:0");
  ASSERT_TRUE(apply_override(cfg, "service.w.debug_routes", "true").ok());
  EXPECT_TRUE(cfg.services[1].http.debug_routes);

  const Config before = cfg;
  EXPECT_EQ(apply_override(cfg, "runtime.backend", "kqueue").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(apply_override(cfg, "runtime.shards", "2000").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(apply_override(cfg, "service.w.name", "x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(apply_override(cfg, "service.w.kind", "resp").code(),
            absl::StatusCode::kFailedPrecondition);
  absl::Status s = apply_override(cfg, "service.e.debug_routes", "true");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()),
            "service.e.debug_routes: only valid for kind = \"http\", this service is \"echo\"");
  cfg.services[1].listen.port = 9000;
  const Config before_dup = cfg;
  s = apply_override(cfg, "service.e.listen", "[::]:9000");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("service[1].listen"));
  EXPECT_EQ(cfg, before_dup);
  cfg.services[1].listen.port = 0;
  EXPECT_EQ(cfg, before);
}

}  // namespace
}  // namespace reactord
