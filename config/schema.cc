// Every key of the schema: its type, range, default handling and whether SIGHUP reloads it.
#include "config/schema.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/str_format.h"

namespace reactord::detail {
namespace {

constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;  // 107, room for the NUL
constexpr size_t kMaxIdList = 1024;
constexpr size_t kMaxServiceName = 64;
constexpr size_t kMaxGroupName = 32;
constexpr int64_t kMaxId = 4294967294;  // uid_t / gid_t (-1 means "unchanged" to the kernel)
constexpr std::string_view kReservedServiceName = "admin";  // the admin socket's FileDescriptorName

constexpr bool kReloadable = true;
constexpr bool kRestart = false;

std::string one_of(std::span<const std::string_view> names) {
  return cat("one of ", join(names, ", "));
}

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

}  // namespace

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
               int_field<S>(
                   "max_body_bytes", [](auto& s) -> auto& { return s.http.max_body_bytes; }, 0,
                   67108864, kRestart)),
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
      only_for(ServiceKind::kResp,
               int_field<S>(
                   "max_inline_bytes", [](auto& s) -> auto& { return s.resp.max_inline_bytes; }, 16,
                   1048576, kRestart)),
      only_for(ServiceKind::kResp,
               int_field<S>(
                   "max_command_bytes", [](auto& s) -> auto& { return s.resp.max_command_bytes; },
                   1024, 1073741824, kRestart)),
      only_for(ServiceKind::kResp,
               int_field<S>(
                   "max_memory_bytes", [](auto& s) -> auto& { return s.resp.max_memory_bytes; }, 0,
                   1099511627776, kReloadable)),
  };
  return *fields;
}

bool applies_to(const Field<ServiceConfig>& f, ServiceKind kind) {
  return !f.only_kind || *f.only_kind == kind;
}

}  // namespace reactord::detail
