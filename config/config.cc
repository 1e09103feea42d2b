// The config loader. One table of field descriptors per section drives everything: reading and
// validating a TOML node, printing the effective value, copying reloadable values, and comparing
// two configs for restart_needed(). A key added to the schema is added in exactly one place.

#include "config/config.h"
#include "config/tomlpp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace reactord {
namespace {

constexpr std::string_view kBackendNames[] = {"auto", "epoll", "io_uring", "libevent"};
constexpr std::string_view kIdleNames[] = {"block", "spin", "adaptive"};
constexpr std::string_view kLevelNames[] = {"trace", "debug", "info", "warn", "error"};
constexpr std::string_view kFormatNames[] = {"auto", "journal", "text"};
constexpr std::string_view kBacktraceNames[] = {"always", "cpu-only", "never"};
constexpr std::string_view kKindNames[] = {"echo", "http", "resp"};

constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;  // 107, room for the NUL
constexpr size_t kMaxServices = 256;
constexpr size_t kMaxIdList = 1024;
constexpr size_t kMaxServiceName = 64;
constexpr size_t kMaxGroupName = 32;
constexpr size_t kMaxConfigBytes = size_t{1} << 20;
constexpr int64_t kMaxId = 4294967294;  // uid_t / gid_t (-1 means "unchanged" to the kernel)
constexpr std::string_view kReservedServiceName = "admin";  // the admin socket's FileDescriptorName
constexpr std::string_view kSections[] = {"runtime",  "log",      "admin",
                                          "watchdog", "shutdown", "service"};

constexpr bool kReloadable = true;
constexpr bool kRestart = false;

// ---- small helpers -------------------------------------------------------------------------

// Debian's Abseil has an absl::string_view distinct from std::string_view, which absl::StrCat
// does not take: pass std::string_view pieces through as absl::string_view.
inline absl::string_view alpha(std::string_view s) {
  return {s.data(), s.size()};
}
template <class T>
const T& alpha(const T& v) {
  return v;
}

template <class... Args>
std::string cat(const Args&... args) {
  return absl::StrCat(alpha(args)...);
}

template <class... Args>
void append(std::string& out, const Args&... args) {
  absl::StrAppend(&out, alpha(args)...);
}

template <class Range>
std::string join(const Range& items, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += sep;
    out += cat(item);
    first = false;
  }
  return out;
}

// A TOML basic string literal for s.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\u%04X", static_cast<unsigned>(c));
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

// "the string \"64\"", "the float 1.5", "an array": what a value is, for error messages.
std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "the string " + quote(n.as_string()->get());
    case toml::node_type::integer:
      return cat("the integer ", n.as_integer()->get());
    case toml::node_type::floating_point:
      return absl::StrFormat("the float %g", n.as_floating_point()->get());
    case toml::node_type::boolean:
      return n.as_boolean()->get() ? "true" : "false";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string one_of(std::span<const std::string_view> names) {
  return cat("one of ", join(names, ", "));
}

std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the message (maybe not buf).
  return strerror_r(err, buf, sizeof buf);
}

struct Position {
  uint32_t line = 1;
  uint32_t column = 1;
};

Position position_of(const toml::source_region& r) {
  if (r.begin.line == 0) return {};
  return {r.begin.line, r.begin.column};
}

bool operator<(const Position& a, const Position& b) {
  return a.line != b.line ? a.line < b.line : a.column < b.column;
}

// ---- field descriptors ---------------------------------------------------------------------

// A failed read: `message` about the node `at` (the field's own value node when null), whose key
// is the field's key plus `suffix` (e.g. "[2]" for an array element).
struct FieldError {
  const toml::node* at = nullptr;
  std::string suffix;
  std::string message;
};
using ReadResult = std::optional<FieldError>;

ReadResult fail(std::string message) {
  return FieldError{nullptr, "", std::move(message)};
}

struct ReadContext {
  std::filesystem::path base_dir;  // relative paths resolve against it
};

// How apply_setting() turns its text into a TOML value for the field.
enum class SetSyntax : uint8_t { kValue, kString, kList };

template <class S>
struct Field {
  std::string_view key;
  bool reloadable = false;
  bool required = false;
  std::optional<ServiceKind> only_kind;  // kind-specific service keys
  SetSyntax syntax = SetSyntax::kValue;
  std::function<ReadResult(const toml::node&, S&, const ReadContext&)> read;
  std::function<std::string(const S&)> write;  // the value as TOML text
  std::function<void(const S& from, S& to)> copy;
};

template <class S>
struct Section {
  std::string_view name;
  S Config::*member;
  std::vector<Field<S>> fields;
};

ReadResult read_int(const toml::node& n, int64_t lo, int64_t hi, int64_t step, int64_t& out) {
  const auto* v = n.as_integer();
  std::string range = cat(lo, "..", hi);
  if (step > 1) append(range, ", a multiple of ", step);
  if (v == nullptr) return fail(cat("expected an integer in ", range, ", got ", describe(n)));
  const int64_t x = v->get();
  if (x < lo || x > hi || x % step != 0) {
    return fail(cat("expected an integer in ", range, ", got ", x));
  }
  out = x;
  return std::nullopt;
}

// `get` is a generic accessor, [](auto& s) -> auto& { return s.member; }, used on S and const S.
template <class S, class Get>
Field<S> int_field(std::string_view key, Get get, int64_t lo, int64_t hi, bool reloadable,
                   int64_t step = 1) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.read = [get, lo, hi, step](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    int64_t v = 0;
    if (auto e = read_int(n, lo, hi, step, v)) return e;
    get(s) = static_cast<std::remove_reference_t<decltype(get(s))>>(v);
    return std::nullopt;
  };
  f.write = [get](const S& s) { return std::to_string(get(s)); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

template <class S, class Get>
Field<S> bool_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    const auto* v = n.as_boolean();
    if (v == nullptr) return fail(cat("expected true or false, got ", describe(n)));
    get(s) = v->get();
    return std::nullopt;
  };
  f.write = [get](const S& s) { return std::string(get(s) ? "true" : "false"); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

template <class S, class Get>
Field<S> enum_field(std::string_view key, Get get, std::span<const std::string_view> names,
                    bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = SetSyntax::kString;
  f.read = [get, names](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    const auto* v = n.as_string();
    if (v != nullptr) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == v->get()) {
          get(s) = static_cast<std::remove_reference_t<decltype(get(s))>>(i);
          return std::nullopt;
        }
      }
    }
    return fail(
        cat("expected ", one_of(names), ", got ", v != nullptr ? quote(v->get()) : describe(n)));
  };
  f.write = [get, names](const S& s) { return quote(names[static_cast<size_t>(get(s))]); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

// A list of uids or gids.
template <class S, class Get>
Field<S> id_list_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = SetSyntax::kList;
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      return fail(cat("expected an array of integers, got ", describe(n)));
    }
    if (arr->size() > kMaxIdList) {
      return fail(cat("expected at most ", kMaxIdList, " entries, got ", arr->size()));
    }
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < arr->size(); ++i) {
      int64_t v = 0;
      if (auto e = read_int(*arr->get(i), 0, kMaxId, 1, v)) {
        e->at = arr->get(i);
        e->suffix = cat("[", i, "]");
        return e;
      }
      ids.push_back(static_cast<uint32_t>(v));
    }
    get(s) = std::move(ids);
    return std::nullopt;
  };
  f.write = [get](const S& s) { return cat("[", join(get(s), ", "), "]"); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

// A Unix socket path: absolute, or relative to the config file's directory; normalised.
std::optional<std::string> resolve_socket_path(std::string_view text, const ReadContext& ctx,
                                               std::string& out) {
  if (text.empty()) return "expected a socket path, got an empty string";
  if (text.find('\0') != std::string_view::npos) return "a path cannot contain a NUL character";
  if (text.back() == '/') return cat(quote(text), " names a directory, not a socket file");
  std::filesystem::path p{std::string(text)};
  if (p.is_relative()) p = ctx.base_dir / p;
  std::string resolved = p.lexically_normal().string();
  if (resolved.size() > kMaxUnixPath) {
    return cat(quote(text), " resolves to ", quote(resolved), ", ", resolved.size(),
               " bytes; a Unix socket path holds at most ", kMaxUnixPath);
  }
  out = std::move(resolved);
  return std::nullopt;
}

template <class S, class Get>
Field<S> socket_path_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = SetSyntax::kString;
  f.read = [get](const toml::node& n, S& s, const ReadContext& ctx) -> ReadResult {
    const auto* v = n.as_string();
    if (v == nullptr) return fail(cat("expected a path string, got ", describe(n)));
    if (auto e = resolve_socket_path(v->get(), ctx, get(s))) return fail(std::move(*e));
    return std::nullopt;
  };
  f.write = [get](const S& s) { return quote(get(s)); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

template <class S, class Get, class Valid>
Field<S> name_field(std::string_view key, Get get, Valid valid, bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = SetSyntax::kString;
  f.read = [get, valid](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    const auto* v = n.as_string();
    if (v == nullptr) return fail(cat("expected a string, got ", describe(n)));
    if (auto e = valid(v->get())) return fail(std::move(*e));
    get(s) = v->get();
    return std::nullopt;
  };
  f.write = [get](const S& s) { return quote(get(s)); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::optional<std::string> valid_service_name(std::string_view s) {
  const bool ok = !s.empty() && s.size() <= kMaxServiceName && s[0] != '_' && s[0] != '-' &&
                  std::all_of(s.begin(), s.end(), is_name_char);
  if (!ok) {
    return cat("expected 1 to ", kMaxServiceName,
               " letters, digits, '_' or '-' starting with a letter or digit, got ", quote(s));
  }
  if (s == kReservedServiceName) {
    return cat(quote(s), " is reserved for the admin socket (socket activation)");
  }
  return std::nullopt;
}

std::optional<std::string> valid_group_name(std::string_view s) {
  if (s.empty()) return std::nullopt;  // keep the daemon's group
  const bool ok =
      s.size() <= kMaxGroupName && s[0] != '-' &&
      std::all_of(s.begin(), s.end(), [](char c) { return is_name_char(c) || c == '.'; });
  if (!ok) {
    return cat("expected a group name of at most ", kMaxGroupName,
               " letters, digits, '_', '-' or '.', got ", quote(s));
  }
  return std::nullopt;
}

// "0660" or "660" as a string; a TOML octal integer (0o660). A decimal integer is refused: 660
// is not 0660 and the mistake would open the socket to the wrong people.
template <class S, class Get>
Field<S> mode_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = SetSyntax::kString;
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> ReadResult {
    if (const auto* i = n.as_integer()) {
      if (i->flags() != toml::value_flags::format_as_octal) {
        return fail(
            cat("write the mode as a string (\"0660\") or an octal integer "
                "(0o660), not the integer ",
                i->get()));
      }
      if (i->get() < 0 || i->get() > 0777) {
        return fail(absl::StrFormat("expected permission bits 0o000..0o777, got 0o%o",
                                    static_cast<uint64_t>(i->get())));
      }
      get(s) = static_cast<uint32_t>(i->get());
      return std::nullopt;
    }
    const auto* v = n.as_string();
    if (v == nullptr) {
      return fail(cat("expected an octal mode string such as \"0660\", got ", describe(n)));
    }
    std::string_view t = v->get();
    if (t.size() == 4 && t[0] == '0') t.remove_prefix(1);
    if (t.size() != 3 ||
        !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '7'; })) {
      return fail(cat("expected an octal mode string such as \"0660\" (at most \"0777\"), got ",
                      quote(v->get())));
    }
    get(s) = static_cast<uint32_t>((t[0] - '0') * 64 + (t[1] - '0') * 8 + (t[2] - '0'));
    return std::nullopt;
  };
  f.write = [get](const S& s) { return absl::StrFormat("\"%04o\"", get(s)); };
  f.copy = [get](const S& from, S& to) { get(to) = get(from); };
  return f;
}

std::optional<std::string> parse_port(std::string_view t, uint16_t& out) {
  if (t.empty() || t.size() > 5 ||
      !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return cat("expected a port 0..65535 after the last ':', got ", quote(t));
  }
  uint32_t v = 0;
  for (char c : t) v = v * 10 + static_cast<uint32_t>(c - '0');
  if (v > 65535) return cat("expected a port 0..65535, got ", v);
  out = static_cast<uint16_t>(v);
  return std::nullopt;
}

// HOST:PORT with a numeric IPv4 host, [IPV6]:PORT, or a path (anything containing '/').
std::optional<std::string> parse_listen(std::string_view text, const ReadContext& ctx,
                                        ListenAddress& out) {
  ListenAddress a;
  if (text.find('/') != std::string_view::npos) {
    a.family = ListenAddress::Family::kUnix;
    if (auto e = resolve_socket_path(text, ctx, a.path)) return e;
    out = std::move(a);
    return std::nullopt;
  }
  const std::string_view usage =
      "expected HOST:PORT (numeric IPv4), [IPV6]:PORT, or a Unix socket path containing '/'";
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) return cat(usage, ", got ", quote(text));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    a.family = ListenAddress::Family::kIpv6;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return cat(usage, ", got ", quote(text));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return cat("an IPv6 address needs brackets, e.g. \"[::1]:7000\", got ", quote(text));
    }
    if (host.empty()) {
      return cat("missing host in ", quote(text), "; use 0.0.0.0 or [::] for every address");
    }
  }
  const int family = a.family == ListenAddress::Family::kIpv6 ? AF_INET6 : AF_INET;
  unsigned char bin[sizeof(in6_addr)];
  const std::string host_str(host);
  if (inet_pton(family, host_str.c_str(), bin) != 1) {
    return cat(quote(host), " is not a numeric ", family == AF_INET6 ? "IPv6" : "IPv4",
               " address (names are not resolved)");
  }
  char canon[INET6_ADDRSTRLEN];
  inet_ntop(family, bin, canon, sizeof canon);
  a.host = canon;
  if (auto e = parse_port(port, a.port)) return e;
  out = std::move(a);
  return std::nullopt;
}

template <class Get>
Field<ServiceConfig> listen_field(std::string_view key, Get get) {
  Field<ServiceConfig> f;
  f.key = key;
  f.required = true;
  f.syntax = SetSyntax::kString;
  f.read = [get](const toml::node& n, ServiceConfig& s, const ReadContext& ctx) -> ReadResult {
    const auto* v = n.as_string();
    if (v == nullptr) return fail(cat("expected a string, got ", describe(n)));
    if (auto e = parse_listen(v->get(), ctx, get(s))) return fail(std::move(*e));
    return std::nullopt;
  };
  f.write = [get](const ServiceConfig& s) { return quote(get(s).to_string()); };
  f.copy = [get](const ServiceConfig& from, ServiceConfig& to) { get(to) = get(from); };
  return f;
}

template <class S>
Field<S> required(Field<S> f) {
  f.required = true;
  return f;
}

template <class S>
Field<S> only_for(ServiceKind kind, Field<S> f) {
  f.only_kind = kind;
  return f;
}

// ---- the schema ----------------------------------------------------------------------------

const Section<RuntimeConfig>& runtime_section() {
  using S = RuntimeConfig;
  static const auto* section = new Section<S>{
      "runtime",
      &Config::runtime,
      {
          enum_field<S>(
              "backend", [](auto& s) -> auto& { return s.backend; }, kBackendNames, kRestart),
          int_field<S>(
              "shards", [](auto& s) -> auto& { return s.shards; }, 0, 1024, kRestart),
          bool_field<S>(
              "pin_cpus", [](auto& s) -> auto& { return s.pin_cpus; }, kRestart),
          int_field<S>(
              "stack_size_kib", [](auto& s) -> auto& { return s.stack_size_kib; }, 16, 8192,
              kRestart, 4),
          enum_field<S>(
              "idle", [](auto& s) -> auto& { return s.idle; }, kIdleNames, kRestart),
          int_field<S>(
              "spin_us", [](auto& s) -> auto& { return s.spin_us; }, 0, 100000, kRestart),
          int_field<S>(
              "offload_threads", [](auto& s) -> auto& { return s.offload_threads; }, 1, 256,
              kRestart),
      }};
  return *section;
}

const Section<LogConfig>& log_section() {
  using S = LogConfig;
  static const auto* section = new Section<S>{
      "log",
      &Config::log,
      {
          enum_field<S>(
              "level", [](auto& s) -> auto& { return s.level; }, kLevelNames, kReloadable),
          enum_field<S>(
              "format", [](auto& s) -> auto& { return s.format; }, kFormatNames, kRestart),
      }};
  return *section;
}

const Section<AdminConfig>& admin_section() {
  using S = AdminConfig;
  static const auto* section = new Section<S>{
      "admin",
      &Config::admin,
      {
          socket_path_field<S>(
              "socket", [](auto& s) -> auto& { return s.socket; }, kRestart),
          mode_field<S>(
              "mode", [](auto& s) -> auto& { return s.mode; }, kRestart),
          name_field<S>(
              "group", [](auto& s) -> auto& { return s.group; }, valid_group_name, kRestart),
          id_list_field<S>(
              "allow_uids", [](auto& s) -> auto& { return s.allow_uids; }, kReloadable),
          id_list_field<S>(
              "allow_gids", [](auto& s) -> auto& { return s.allow_gids; }, kReloadable),
          int_field<S>(
              "max_clients", [](auto& s) -> auto& { return s.max_clients; }, 1, 1024, kRestart),
          int_field<S>(
              "idle_timeout_ms", [](auto& s) -> auto& { return s.idle_timeout_ms; }, 100, 3600000,
              kRestart),
      }};
  return *section;
}

const Section<WatchdogConfig>& watchdog_section() {
  using S = WatchdogConfig;
  static const auto* section = new Section<S>{
      "watchdog",
      &Config::watchdog,
      {
          bool_field<S>(
              "enabled", [](auto& s) -> auto& { return s.enabled; }, kReloadable),
          int_field<S>(
              "threshold_ms", [](auto& s) -> auto& { return s.threshold_ms; }, 1, 60000,
              kReloadable),
          int_field<S>(
              "slow_slice_ms", [](auto& s) -> auto& { return s.slow_slice_ms; }, 1, 60000,
              kReloadable),
          int_field<S>(
              "reports_per_minute", [](auto& s) -> auto& { return s.reports_per_minute; }, 1, 6000,
              kReloadable),
          int_field<S>(
              "abort_after_ms", [](auto& s) -> auto& { return s.abort_after_ms; }, 0, 3600000,
              kReloadable),
          enum_field<S>(
              "backtrace", [](auto& s) -> auto& { return s.backtrace; }, kBacktraceNames,
              kReloadable),
      }};
  return *section;
}

const Section<ShutdownConfig>& shutdown_section() {
  using S = ShutdownConfig;
  static const auto* section = new Section<S>{
      "shutdown",
      &Config::shutdown,
      {
          int_field<S>(
              "drain_timeout_ms", [](auto& s) -> auto& { return s.drain_timeout_ms; }, 0, 3600000,
              kRestart),
      }};
  return *section;
}

const std::vector<Field<ServiceConfig>>& service_fields() {
  using S = ServiceConfig;
  static const auto* fields = new std::vector<Field<S>>{
      required(name_field<S>(
          "name", [](auto& s) -> auto& { return s.name; }, valid_service_name, kRestart)),
      required(enum_field<S>(
          "kind", [](auto& s) -> auto& { return s.kind; }, kKindNames, kRestart)),
      listen_field(
          "listen", [](auto& s) -> auto& { return s.listen; }),
      int_field<S>(
          "max_connections", [](auto& s) -> auto& { return s.max_connections; }, 1, 1000000,
          kReloadable),
      int_field<S>(
          "idle_timeout_ms", [](auto& s) -> auto& { return s.idle_timeout_ms; }, 0, 86400000,
          kRestart),
      only_for(ServiceKind::kHttp,
               int_field<S>(
                   "header_timeout_ms", [](auto& s) -> auto& { return s.http.header_timeout_ms; },
                   100, 600000, kRestart)),
      only_for(ServiceKind::kHttp,
               int_field<S>(
                   "max_header_bytes", [](auto& s) -> auto& { return s.http.max_header_bytes; },
                   1024, 1048576, kRestart)),
      only_for(ServiceKind::kHttp,
               bool_field<S>(
                   "debug_routes", [](auto& s) -> auto& { return s.http.debug_routes; }, kRestart)),
      only_for(ServiceKind::kResp,
               int_field<S>(
                   "max_bulk_bytes", [](auto& s) -> auto& { return s.resp.max_bulk_bytes; }, 1,
                   536870912, kRestart)),
      only_for(ServiceKind::kResp,
               int_field<S>(
                   "max_array_len", [](auto& s) -> auto& { return s.resp.max_array_len; }, 1,
                   1048576, kRestart)),
  };
  return *fields;
}

// Calls fn(section) for every fixed section, in schema order.
template <class Fn>
void for_each_section(Fn&& fn) {
  fn(runtime_section());
  fn(log_section());
  fn(admin_section());
  fn(watchdog_section());
  fn(shutdown_section());
}

template <class S>
const Field<S>* find_field(const std::vector<Field<S>>& fields, std::string_view key) {
  for (const Field<S>& f : fields) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

template <class S>
std::string key_list(const std::vector<Field<S>>& fields) {
  std::vector<std::string_view> keys;
  for (const Field<S>& f : fields) keys.push_back(f.key);
  return join(keys, ", ");
}

bool applies_to(const Field<ServiceConfig>& f, ServiceKind kind) {
  return !f.only_kind || *f.only_kind == kind;
}

// ---- checks between keys -------------------------------------------------------------------

// A problem found after every key was read. `anchors` are keys whose position in the file the
// error is reported at (the first one present).
struct CrossProblem {
  std::string key;
  std::string message;
  std::vector<std::string> anchors;
};

bool is_wildcard(const ListenAddress& a) {
  return a.host == "0.0.0.0" || a.host == "::";
}

// Whether binding both would collide: the same path, or the same non-zero port on the same
// address or where one is a wildcard ([::] also takes IPv4 unless the socket is v6-only).
bool overlaps(const ListenAddress& a, const ListenAddress& b) {
  using Family = ListenAddress::Family;
  if (a.family == Family::kUnix || b.family == Family::kUnix) {
    return a.family == b.family && a.path == b.path;
  }
  if (a.port == 0 || a.port != b.port) return false;
  if (a.host == b.host) return true;
  if (a.host == "::" || b.host == "::") return true;
  if (a.family != b.family) return false;
  return is_wildcard(a) || is_wildcard(b);
}

std::vector<CrossProblem> cross_check(const Config& cfg) {
  std::vector<CrossProblem> out;
  const WatchdogConfig& w = cfg.watchdog;
  if (w.slow_slice_ms > w.threshold_ms) {
    out.push_back({"watchdog.slow_slice_ms",
                   cat(w.slow_slice_ms, " exceeds watchdog.threshold_ms (", w.threshold_ms, ")"),
                   {"watchdog.slow_slice_ms", "watchdog.threshold_ms", "watchdog"}});
  }
  if (w.abort_after_ms != 0 && w.abort_after_ms < w.threshold_ms) {
    out.push_back({"watchdog.abort_after_ms",
                   cat("expected 0 (off) or at least watchdog.threshold_ms (", w.threshold_ms,
                       "), got ", w.abort_after_ms),
                   {"watchdog.abort_after_ms", "watchdog.threshold_ms", "watchdog"}});
  }
  if (cfg.services.empty()) {
    out.push_back({"service", "at least one [[service]] table is required", {"service"}});
  }
  for (size_t i = 0; i < cfg.services.size(); ++i) {
    const ServiceConfig& s = cfg.services[i];
    for (size_t j = 0; j < i; ++j) {
      const ServiceConfig& t = cfg.services[j];
      if (s.name == t.name) {
        const std::string key = cat("service[", i, "].name");
        out.push_back(
            {key,
             cat("duplicate service name ", quote(s.name), ", also used by service[", j, "]"),
             {key, cat("service[", i, "]")}});
      }
      if (overlaps(s.listen, t.listen)) {
        const std::string key = cat("service[", i, "].listen");
        const std::string what =
            s.listen == t.listen
                ? "duplicate listen address " + quote(s.listen.to_string())
                : quote(s.listen.to_string()) + " overlaps " + quote(t.listen.to_string());
        out.push_back({key,
                       cat(what, ", also used by service[", j, "] (", t.name, ")"),
                       {key, cat("service[", i, "]")}});
      }
    }
  }
  return out;
}

// ---- the loader ----------------------------------------------------------------------------

struct Problem {
  Position where;
  std::string key;
  std::string message;
};

class Loader {
 public:
  Loader(std::string file, ReadContext ctx) : file_(std::move(file)), ctx_(std::move(ctx)) {}

  absl::StatusOr<Config> load(const toml::table& root) {
    Config cfg;
    for (auto&& entry : root) {
      // Named references, not a structured binding: clang 14 cannot capture bindings in lambdas.
      const toml::key& k = entry.first;
      const toml::node& v = entry.second;
      const std::string key(k.str());
      bool known = false;
      for_each_section([&](const auto& section) {
        if (section.name != key) return;
        known = true;
        read_section(section, k, v, cfg.*section.member);
      });
      if (key == "service") {
        known = true;
        read_services(k, v, cfg);
      }
      if (!known) {
        add(position_of(k.source()), key,
            cat(v.is_table() ? "unknown section" : "unknown key", "; expected ",
                join(kSections, ", ")));
      }
    }
    if (problems_.empty()) {
      for (CrossProblem& p : cross_check(cfg)) {
        Position pos;
        for (const std::string& anchor : p.anchors) {
          auto it = where_.find(anchor);
          if (it != where_.end()) {
            pos = it->second;
            break;
          }
        }
        add(pos, std::move(p.key), std::move(p.message));
      }
    }
    if (!problems_.empty()) {
      const Problem& first =
          *std::min_element(problems_.begin(), problems_.end(),
                            [](const Problem& a, const Problem& b) { return a.where < b.where; });
      return absl::InvalidArgumentError(absl::StrFormat("%s:%d:%d: %s: %s", file_, first.where.line,
                                                        first.where.column, first.key,
                                                        first.message));
    }
    return cfg;
  }

 private:
  void add(Position where, std::string key, std::string message) {
    problems_.push_back({where, std::move(key), std::move(message)});
  }

  template <class S>
  bool read_field(const Field<S>& f, const std::string& key, const toml::node& v, S& s) {
    where_[key] = position_of(v.source());
    if (auto e = f.read(v, s, ctx_)) {
      const toml::node& at = e->at != nullptr ? *e->at : v;
      add(position_of(at.source()), key + e->suffix, std::move(e->message));
      return false;
    }
    return true;
  }

  template <class S>
  void read_section(const Section<S>& section, const toml::key& k, const toml::node& v, S& out) {
    const std::string name(section.name);
    where_[name] = position_of(k.source());
    const toml::table* t = v.as_table();
    if (t == nullptr) {
      add(position_of(v.source()), name, cat("expected a table ([", name, "]), got ", describe(v)));
      return;
    }
    for (auto&& [fk, fv] : *t) {
      const std::string key = cat(name, ".", fk.str());
      const Field<S>* f = find_field(section.fields, fk.str());
      if (f == nullptr) {
        add(position_of(fk.source()), key,
            cat("unknown key; [", name, "] has ", key_list(section.fields)));
        continue;
      }
      read_field(*f, key, fv, out);
    }
  }

  void read_services(const toml::key& k, const toml::node& v, Config& cfg) {
    where_["service"] = position_of(k.source());
    const toml::array* arr = v.as_array();
    if (arr == nullptr || (!arr->empty() && !arr->is_array_of_tables())) {
      add(position_of(v.source()), "service",
          cat("expected an array of tables ([[service]]), got ", describe(v)));
      return;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string prefix = cat("service[", i, "]");
      const toml::node& node = *arr->get(i);
      if (i == kMaxServices) {
        add(position_of(node.source()), prefix,
            cat("at most ", kMaxServices, " services are allowed"));
        return;
      }
      cfg.services.push_back(read_service(prefix, *node.as_table()));
    }
  }

  ServiceConfig read_service(const std::string& prefix, const toml::table& t) {
    where_[prefix] = position_of(t.source());
    ServiceConfig s;
    const auto& fields = service_fields();
    bool kind_ok = false;
    std::vector<std::pair<const Field<ServiceConfig>*, Position>> present;
    for (auto&& [fk, fv] : t) {
      const std::string key = cat(prefix, ".", fk.str());
      const Field<ServiceConfig>* f = find_field(fields, fk.str());
      if (f == nullptr) {
        add(position_of(fk.source()), key, cat("unknown key; a service has ", key_list(fields)));
        continue;
      }
      present.emplace_back(f, position_of(fk.source()));
      const bool ok = read_field(*f, key, fv, s);
      if (f->key == "kind") kind_ok = ok;
    }
    for (const Field<ServiceConfig>& f : fields) {
      if (!f.required) continue;
      const bool found =
          std::any_of(present.begin(), present.end(), [&](const auto& p) { return p.first == &f; });
      if (!found) {
        add(position_of(t.source()), cat(prefix, ".", f.key), "required key is missing");
      }
    }
    if (kind_ok) {
      for (const auto& [f, pos] : present) {
        if (applies_to(*f, s.kind)) continue;
        add(pos, cat(prefix, ".", f->key),
            cat("only valid for kind = ", quote(kKindNames[static_cast<size_t>(*f->only_kind)]),
                ", this service is ", quote(kKindNames[static_cast<size_t>(s.kind)])));
      }
    }
    return s;
  }

  std::string file_;
  ReadContext ctx_;
  std::map<std::string, Position> where_;  // key path -> position of its value (or table)
  std::vector<Problem> problems_;
};

std::filesystem::path current_dir() {
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return ec ? std::filesystem::path() : cwd;
}

// ---- run-time changes ----------------------------------------------------------------------

// Turns the text of `set KEY VALUE` into a TOML node for a field with the given syntax.
absl::StatusOr<toml::table> value_node(std::string_view key, std::string_view value,
                                       SetSyntax syntax) {
  if (std::any_of(value.begin(), value.end(),
                  [](char c) { return c == '\n' || c == '\r' || c == '\0'; })) {
    return absl::InvalidArgumentError(
        cat(std::string(key), ": a value cannot contain line breaks or NUL characters"));
  }
  // A bare word for a string key becomes a TOML string, so toml++ still checks its UTF-8.
  const bool quoted = !value.empty() && (value[0] == '"' || value[0] == '\'');
  std::string text(value);
  if (syntax == SetSyntax::kString && !quoted) text = quote(value);
  if (syntax == SetSyntax::kList && (value.empty() || value[0] != '[')) text = "[" + text + "]";
  toml::parse_result r = toml::parse("v = " + text, std::string_view("set"));
  if (!r) {
    return absl::InvalidArgumentError(
        cat(std::string(key), ": cannot read ", quote(value),
            " as a TOML value: ", std::string(r.error().description())));
  }
  return std::move(r).table();
}

template <class S>
absl::Status set_field(const Field<S>& f, S& target, const std::string& key,
                       std::string_view value) {
  absl::StatusOr<toml::table> t = value_node(key, value, f.syntax);
  if (!t.ok()) return t.status();
  ReadContext ctx{current_dir()};
  if (auto e = f.read(*t->get("v"), target, ctx)) {
    return absl::InvalidArgumentError(cat(key, e->suffix, ": ", e->message));
  }
  return absl::OkStatus();
}

absl::Status set_key(Config& cfg, std::string_view key, std::string_view value,
                     bool reloadable_only) {
  const std::string key_str(key);
  const size_t dot = key.find('.');
  if (dot == std::string_view::npos) {
    return absl::NotFoundError(cat("unknown key ", quote(key), "; expected SECTION.KEY"));
  }
  const std::string_view section_name = key.substr(0, dot);
  const std::string_view rest = key.substr(dot + 1);
  Config next = cfg;
  absl::Status status = absl::NotFoundError(cat("unknown key ", quote(key)));

  if (section_name == "service") {
    const size_t last = rest.rfind('.');
    if (last == std::string_view::npos) {
      return absl::NotFoundError(cat("unknown key ", quote(key), "; expected service.NAME.KEY"));
    }
    const std::string_view name = rest.substr(0, last);
    const std::string_view field_key = rest.substr(last + 1);
    auto it = std::find_if(next.services.begin(), next.services.end(),
                           [&](const ServiceConfig& s) { return s.name == name; });
    if (it == next.services.end()) {
      return absl::NotFoundError(cat("no service named ", quote(name)));
    }
    const Field<ServiceConfig>* f = find_field(service_fields(), field_key);
    if (f == nullptr) return status;
    if (reloadable_only && !f->reloadable) {
      return absl::FailedPreconditionError(
          cat(key_str, " cannot change at run time; edit the file and restart"));
    }
    if (f->required && f->key != "listen") {
      return absl::FailedPreconditionError(cat(key_str, " cannot be overridden"));
    }
    if (!applies_to(*f, it->kind)) {
      return absl::InvalidArgumentError(
          cat(key_str,
              ": only valid for kind = ", quote(kKindNames[static_cast<size_t>(*f->only_kind)]),
              ", this service is ", quote(kKindNames[static_cast<size_t>(it->kind)])));
    }
    status = set_field(*f, *it, key_str, value);
  } else {
    bool found_section = false;
    for_each_section([&](const auto& section) {
      if (section.name != section_name) return;
      found_section = true;
      const auto* f = find_field(section.fields, rest);
      if (f == nullptr) return;
      if (reloadable_only && !f->reloadable) {
        status = absl::FailedPreconditionError(
            cat(key_str, " cannot change at run time; edit the file and restart"));
        return;
      }
      status = set_field(*f, next.*section.member, key_str, value);
    });
    if (!found_section) {
      return absl::NotFoundError(
          cat("unknown key ", quote(key), "; sections are ", join(kSections, ", ")));
    }
  }
  if (!status.ok()) return status;
  std::vector<CrossProblem> problems = cross_check(next);
  if (!problems.empty()) {
    return absl::InvalidArgumentError(cat(problems[0].key, ": ", problems[0].message));
  }
  cfg = std::move(next);
  return absl::OkStatus();
}

}  // namespace

// ---- public API ----------------------------------------------------------------------------

std::string_view to_string(IoBackend v) {
  return kBackendNames[static_cast<size_t>(v)];
}
std::string_view to_string(IdleMode v) {
  return kIdleNames[static_cast<size_t>(v)];
}
std::string_view to_string(LogLevel v) {
  return kLevelNames[static_cast<size_t>(v)];
}
std::string_view to_string(LogFormat v) {
  return kFormatNames[static_cast<size_t>(v)];
}
std::string_view to_string(BacktraceMode v) {
  return kBacktraceNames[static_cast<size_t>(v)];
}
std::string_view to_string(ServiceKind v) {
  return kKindNames[static_cast<size_t>(v)];
}

std::string ListenAddress::to_string() const {
  switch (family) {
    case Family::kIpv4:
      return cat(host, ":", port);
    case Family::kIpv6:
      return cat("[", host, "]:", port);
    case Family::kUnix:
      return path;
  }
  return path;
}

absl::StatusOr<Config> parse_config(std::string_view toml_text, const std::string& source_path) {
  const std::string file = source_path.empty() ? "<config>" : source_path;
  toml::parse_result result = toml::parse(toml_text, std::string_view(file));
  if (!result) {
    const toml::parse_error& e = result.error();
    const Position pos = position_of(e.source());
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d:%d: invalid TOML: %s", file, pos.line,
                                                      pos.column, std::string(e.description())));
  }
  ReadContext ctx{current_dir()};
  if (!source_path.empty()) {
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(source_path, ec);
    ctx.base_dir = (ec ? std::filesystem::path(source_path) : abs).parent_path();
  }
  return Loader(file, std::move(ctx)).load(result.table());
}

absl::StatusOr<Config> load_config_file(const std::string& path) {
  auto read_error = [&](int err, std::string_view op) {
    std::string message =
        cat("cannot read config file ", path, ": ", std::string(op), ": ", errno_text(err));
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::NotFoundError(message);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return read_error(errno, "open");
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return read_error(err, "read");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          cat(path, ":1:1: file: larger than ", kMaxConfigBytes, " bytes"));
    }
  }
  ::close(fd);
  return parse_config(text, path);
}

std::string format_config(const Config& cfg) {
  std::string out;
  for_each_section([&](const auto& section) {
    append(out, "[", section.name, "]\n");
    for (const auto& f : section.fields) {
      append(out, f.key, " = ", f.write(cfg.*section.member), "\n");
    }
    out += "\n";
  });
  for (const ServiceConfig& s : cfg.services) {
    out += "[[service]]\n";
    for (const Field<ServiceConfig>& f : service_fields()) {
      if (applies_to(f, s.kind)) append(out, f.key, " = ", f.write(s), "\n");
    }
    out += "\n";
  }
  if (!out.empty()) out.pop_back();  // no blank line at the end
  return out;
}

std::vector<std::string> reloadable_keys() {
  std::vector<std::string> keys;
  for_each_section([&](const auto& section) {
    for (const auto& f : section.fields) {
      if (f.reloadable) keys.push_back(cat(section.name, ".", f.key));
    }
  });
  for (const Field<ServiceConfig>& f : service_fields()) {
    if (f.reloadable) keys.push_back(cat("service.NAME.", f.key));
  }
  return keys;
}

std::vector<std::string> restart_needed(const Config& old_cfg, const Config& new_cfg) {
  std::vector<std::string> keys;
  for_each_section([&](const auto& section) {
    for (const auto& f : section.fields) {
      if (!f.reloadable && f.write(old_cfg.*section.member) != f.write(new_cfg.*section.member)) {
        keys.push_back(cat(section.name, ".", f.key));
      }
    }
  });
  auto find = [](const Config& cfg, const std::string& name) -> const ServiceConfig* {
    for (const ServiceConfig& s : cfg.services) {
      if (s.name == name) return &s;
    }
    return nullptr;
  };
  for (const ServiceConfig& s : old_cfg.services) {
    const ServiceConfig* n = find(new_cfg, s.name);
    if (n == nullptr) {
      keys.push_back(cat("service.", s.name, " (removed)"));
      continue;
    }
    for (const Field<ServiceConfig>& f : service_fields()) {
      if (f.reloadable || !applies_to(f, n->kind)) continue;
      if (f.write(s) != f.write(*n)) keys.push_back(cat("service.", s.name, ".", f.key));
    }
  }
  for (const ServiceConfig& s : new_cfg.services) {
    if (find(old_cfg, s.name) == nullptr) {
      keys.push_back(cat("service.", s.name, " (added)"));
    }
  }
  return keys;
}

Config merge_reloadable(const Config& running, const Config& loaded) {
  Config out = running;
  for_each_section([&](const auto& section) {
    for (const auto& f : section.fields) {
      if (f.reloadable) f.copy(loaded.*section.member, out.*section.member);
    }
  });
  for (ServiceConfig& s : out.services) {
    for (const ServiceConfig& n : loaded.services) {
      if (n.name != s.name) continue;
      for (const Field<ServiceConfig>& f : service_fields()) {
        if (f.reloadable) f.copy(n, s);
      }
    }
  }
  return out;
}

absl::Status apply_setting(Config& cfg, std::string_view key, std::string_view value) {
  return set_key(cfg, key, value, /*reloadable_only=*/true);
}

absl::Status apply_override(Config& cfg, std::string_view key, std::string_view value) {
  return set_key(cfg, key, value, /*reloadable_only=*/false);
}

}  // namespace reactord
