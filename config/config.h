// reactord's configuration: the schema as plain structs, the TOML loader that validates it, the
// printer for the effective configuration, and the rules for changing it at run time.
//
// The schema is frozen: every key that any feature will read is defined here, accepted and
// validated now, even when the feature that uses it lands later. A config file is checked in full
// before anything starts; the first problem (in file order) is reported as
//
//   FILE:LINE:COLUMN: KEY: what is wrong
//
// e.g. `reactord.toml:12:8: service[1].kind: expected one of echo, http, resp, got "ftp"`.
// Service indices count [[service]] tables from 0 in file order. docs/configuration.md lists every
// key with its type, default, range and whether SIGHUP reloads it.
//
// Status codes, which the daemon maps to exit codes (sysexits):
//   NotFound, PermissionDenied   the file cannot be read (missing, a directory, no permission): 66
//   InvalidArgument              anything wrong with its content: 78
//
// Run-time changes. SIGHUP and the admin `set` command change only the reloadable keys:
//   log.level, watchdog.{enabled, threshold_ms, slow_slice_ms, reports_per_minute, abort_after_ms,
//   backtrace}, admin.{allow_uids, allow_gids}, service.NAME.max_connections,
//   service.NAME.max_memory_bytes (resp).
// Everything else needs a restart; restart_needed() names what changed.
//
// Every function here is pure (no global state) and may be called from any thread.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace reactord {

enum class IoBackend : uint8_t { kAuto, kEpoll, kIoUring, kLibevent };
enum class IdleMode : uint8_t { kBlock, kSpin, kAdaptive };
enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarn, kError };
enum class LogFormat : uint8_t { kAuto, kJournal, kText };
enum class BacktraceMode : uint8_t { kAlways, kCpuOnly, kNever };
enum class ServiceKind : uint8_t { kEcho, kHttp, kResp };

// The enums a config file spells by name.
template <class E>
concept ConfigEnum =
    std::same_as<E, IoBackend> || std::same_as<E, IdleMode> || std::same_as<E, LogLevel> ||
    std::same_as<E, LogFormat> || std::same_as<E, BacktraceMode> || std::same_as<E, ServiceKind>;

// The names used in the file: "auto", "epoll", "io_uring", "libevent"; "block", "spin",
// "adaptive"; "trace" … "error"; "auto", "journal", "text"; "always", "cpu-only", "never";
// "echo", "http", "resp". Any thread.
template <ConfigEnum E>
std::string_view to_string(E v);

struct RuntimeConfig {
  IoBackend backend = IoBackend::kAuto;
  uint32_t shards = 0;  // 0..1024; 0 = one per online CPU
  bool pin_cpus = false;
  uint32_t stack_size_kib = 64;      // 16..8192, a multiple of 4
  IdleMode idle = IdleMode::kBlock;  // what an idle shard does: block, spin or adaptive
  uint32_t spin_us = 50;             // 0..100000: how long `adaptive` spins before it blocks
  // 0..3600000: a connection idle this long gives its fiber stack's pages back; 0: never.
  uint32_t release_idle_stacks_ms = 1000;
  uint32_t offload_threads = 4;  // 1..256
  // io_uring only: the kernel's SQ thread submits (IORING_SETUP_SQPOLL), pinned to
  // io_uring_sqpoll_cpu (-1..4095; -1: not pinned), asleep after io_uring_sqpoll_idle_ms
  // (1..60000) without work.
  bool io_uring_sqpoll = false;
  int32_t io_uring_sqpoll_cpu = -1;
  uint32_t io_uring_sqpoll_idle_ms = 1000;
  // io_uring only, 0..100000, 0 off: a shard's wait for completions asks for as many as its
  // previous poll reaped and returns with fewer only after this many microseconds (batched
  // waits, Linux 6.12; off by default). Other values than the default need backend io_uring or
  // auto.
  static constexpr uint32_t kDefaultIoUringMinWaitUs = 0;
  uint32_t io_uring_min_wait_us = kDefaultIoUringMinWaitUs;
  bool operator==(const RuntimeConfig&) const = default;
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;  // reloadable
  LogFormat format = LogFormat::kAuto;
  bool operator==(const LogConfig&) const = default;
};

struct AdminConfig {
  std::string socket = "/run/reactord/admin.sock";  // absolute after loading
  uint32_t mode = 0660;                             // permission bits of the socket, 0..0777
  std::string group;                                // empty: keep the daemon's group
  std::vector<uint32_t> allow_uids;                 // reloadable; read commands only
  std::vector<uint32_t> allow_gids;                 // reloadable; read commands only
  uint32_t max_clients = 16;                        // 1..1024
  uint32_t idle_timeout_ms = 60000;                 // 100..3600000
  bool operator==(const AdminConfig&) const = default;
};

struct WatchdogConfig {  // every key reloadable
  bool enabled = true;
  uint32_t threshold_ms = 100;       // 1..60000
  uint32_t slow_slice_ms = 10;       // 1..60000, at most threshold_ms
  uint32_t reports_per_minute = 10;  // 1..6000
  uint32_t abort_after_ms = 0;       // 0 (off) or threshold_ms..3600000
  BacktraceMode backtrace = BacktraceMode::kAlways;
  bool operator==(const WatchdogConfig&) const = default;
};

struct ShutdownConfig {
  uint32_t drain_timeout_ms = 30000;  // 0..3600000
  bool operator==(const ShutdownConfig&) const = default;
};

// Where a service listens: a numeric IPv4 or IPv6 address and port, or a Unix socket path.
struct ListenAddress {
  enum class Family : uint8_t { kIpv4, kIpv6, kUnix };
  Family family = Family::kIpv4;
  std::string host;   // canonical numeric form ("127.0.0.1", "::1"); empty for kUnix
  uint16_t port = 0;  // 0: the OS picks one
  std::string path;   // kUnix: absolute and normalised; empty otherwise

  // "127.0.0.1:7000", "[::1]:7000" or "/run/reactord/echo.sock": what the file accepts, and what
  // reactor::SocketAddress::parse_ip / unix_path take. Any thread.
  std::string to_string() const;
  bool operator==(const ListenAddress&) const = default;
};

struct HttpServiceConfig {             // kind = "http" only
  uint32_t header_timeout_ms = 10000;  // 100..600000
  uint32_t max_header_bytes = 16384;   // 1024..1048576
  bool debug_routes = false;
  uint32_t max_body_bytes = 65536;  // 0..67108864
  bool operator==(const HttpServiceConfig&) const = default;
};

struct RespServiceConfig {               // kind = "resp" only
  uint32_t max_bulk_bytes = 1048576;     // 1..536870912
  uint32_t max_array_len = 1024;         // 1..1048576
  uint32_t max_inline_bytes = 65536;     // 16..1048576
  uint32_t max_command_bytes = 8388608;  // 1024..1073741824
  uint64_t max_memory_bytes = 0;         // 0 (no cap)..1099511627776, across shards; reloadable
  bool operator==(const RespServiceConfig&) const = default;
};

struct ServiceConfig {
  std::string name;  // required, unique; [A-Za-z0-9][A-Za-z0-9_-]{0,63}, not "admin"
  ServiceKind kind = ServiceKind::kEcho;  // required
  ListenAddress listen;                   // required
  uint32_t max_connections = 4096;        // 1..1000000, across all shards; reloadable
  uint32_t idle_timeout_ms = 60000;       // 0 (never)..86400000
  HttpServiceConfig http;                 // defaults unless kind is kHttp
  RespServiceConfig resp;                 // defaults unless kind is kResp
  bool operator==(const ServiceConfig&) const = default;
};

struct Config {
  RuntimeConfig runtime;
  LogConfig log;
  AdminConfig admin;
  WatchdogConfig watchdog;
  ShutdownConfig shutdown;
  std::vector<ServiceConfig> services;  // 1..256, in file order
  bool operator==(const Config&) const = default;
};

// Reads and validates the file at `path`. NotFound / PermissionDenied when it cannot be read,
// InvalidArgument (FILE:LINE:COLUMN: KEY: …) when its content is wrong. Any thread (blocking I/O).
absl::StatusOr<Config> load_config_file(const std::string& path);

// Validates `toml_text` as if read from `source_path`, which names the file in errors and whose
// directory relative paths resolve against (the current directory if it has none; relative
// directories are made absolute from the current directory). InvalidArgument on any problem.
// Any thread.
absl::StatusOr<Config> parse_config(std::string_view toml_text, const std::string& source_path);

// The effective configuration as TOML, every key present, sections in schema order:
// parse_config(format_config(c), any path) == c. Any thread.
std::string format_config(const Config& cfg);

// The reloadable keys, in the spelling apply_setting() takes ("log.level", …,
// "service.NAME.max_connections" written literally with NAME). Any thread.
std::vector<std::string> reloadable_keys();

// The non-reloadable keys whose value differs between the two configs, e.g. "runtime.shards",
// "service.web.listen", "service.web (added)", "service.old (removed)"; empty when SIGHUP can
// apply new_cfg in full. Any thread.
std::vector<std::string> restart_needed(const Config& old_cfg, const Config& new_cfg);

// What SIGHUP makes of a freshly loaded file: `running` with every reloadable key taken from
// `loaded` (services matched by name; services only in one of them are left as in `running`).
// Any thread.
Config merge_reloadable(const Config& running, const Config& loaded);

// The admin `set KEY VALUE`: changes one reloadable key, validated as the loader would (including
// the checks between keys, e.g. slow_slice_ms <= threshold_ms). KEY is "section.key" or
// "service.NAME.max_connections"; VALUE is a TOML value or a bare word for strings ("debug",
// "cpu-only") and a comma-separated list for arrays ("1000,1001"; "" or "[]" empties it).
// NotFound for an unknown key, FailedPrecondition for a key that needs a restart,
// InvalidArgument for a bad value; `cfg` is unchanged on error. Any thread.
absl::Status apply_setting(Config& cfg, std::string_view key, std::string_view value);

// Like apply_setting() but for any key outside [[service]] and any service.NAME key except name
// and kind: what command-line flags use (--backend → "runtime.backend", --shards →
// "runtime.shards"). Relative paths resolve against the current directory. Any thread.
absl::Status apply_override(Config& cfg, std::string_view key, std::string_view value);

}  // namespace reactord
