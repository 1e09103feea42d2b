// Every key of the schema: its type, range, default handling and whether SIGHUP reloads it.
#include "config/schema.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <functional>
#include <type_traits>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
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

// The member a field reads and writes: `get` is a pointer to a data member or a generic accessor
// ([](auto& s) -> auto& { return s.http.x; }) for nested ones; used on S and const S.
template <class Get, class S>
decltype(auto) member(const Get& get, S& s) {
  return std::invoke(get, s);
}

// The accessor of a member of a member: s.*outer.*inner.
template <class Outer, class Inner>
auto nested(Outer outer, Inner inner) {
  return [ outer, inner ](auto& s) -> auto& {
    return (s.*outer).*inner;
  };
}

template <class Get, class S, class V>
void assign(const Get& get, S& s, V v) {
  member(get, s) = static_cast<std::remove_cvref_t<decltype(member(get, s))>>(std::move(v));
}

// The parts every field shares: key, reload rule, syntax for `set`, and copy.
template <class S, class Get>
Field<S> base_field(std::string_view key, const Get& get, bool reloadable,
                    SetSyntax syntax = SetSyntax::kValue) {
  Field<S> f;
  f.key = key;
  f.reloadable = reloadable;
  f.syntax = syntax;
  f.copy = [get](const S& from, S& to) { member(get, to) = member(get, from); };
  return f;
}

absl::StatusOr<int64_t> read_int(const toml::node& n, int64_t lo, int64_t hi, int64_t step) {
  const auto* v = n.as_integer();
  std::string range = cat(lo, "..", hi);
  if (step > 1) append(range, ", a multiple of ", step);
  if (v == nullptr) return fail(cat("expected an integer in ", range, ", got ", describe(n)));
  const int64_t x = v->get();
  if (x < lo || x > hi || x % step != 0) {
    return fail(cat("expected an integer in ", range, ", got ", x));
  }
  return x;
}

template <class S, class Get>
Field<S> int_field(std::string_view key, Get get, int64_t lo, int64_t hi, bool reloadable,
                   int64_t step = 1) {
  Field<S> f = base_field<S>(key, get, reloadable);
  f.read = [get, lo, hi, step](const toml::node& n, S& s, const ReadContext&) -> absl::Status {
    absl::StatusOr<int64_t> v = read_int(n, lo, hi, step);
    if (!v.ok()) return v.status();
    assign(get, s, *v);
    return absl::OkStatus();
  };
  f.write = [get](const S& s) { return std::to_string(member(get, s)); };
  return f;
}

template <class S, class Get>
Field<S> bool_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f = base_field<S>(key, get, reloadable);
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> absl::Status {
    const auto* v = n.as_boolean();
    if (v == nullptr) return fail(cat("expected true or false, got ", describe(n)));
    assign(get, s, v->get());
    return absl::OkStatus();
  };
  f.write = [get](const S& s) { return std::string(member(get, s) ? "true" : "false"); };
  return f;
}

// An enum spelled by name; the names are the member type's table in EnumNames.
template <class S, class Get>
Field<S> enum_field(std::string_view key, Get get, bool reloadable) {
  using E = std::remove_cvref_t<decltype(member(get, std::declval<S&>()))>;
  const Names names = EnumNames::of(E{});
  Field<S> f = base_field<S>(key, get, reloadable, SetSyntax::kString);
  f.read = [get, names](const toml::node& n, S& s, const ReadContext&) -> absl::Status {
    const auto* v = n.as_string();
    if (v != nullptr) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == v->get()) {
          assign(get, s, i);
          return absl::OkStatus();
        }
      }
    }
    return fail(
        cat("expected ", one_of(names), ", got ", v != nullptr ? quote(v->get()) : describe(n)));
  };
  f.write = [get, names](const S& s) { return quote(names[static_cast<size_t>(member(get, s))]); };
  return f;
}

// A list of uids or gids.
template <class S, class Get>
Field<S> id_list_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f = base_field<S>(key, get, reloadable, SetSyntax::kList);
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> absl::Status {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
      return fail(cat("expected an array of integers, got ", describe(n)));
    }
    if (arr->size() > kMaxIdList) {
      return fail(cat("expected at most ", kMaxIdList, " entries, got ", arr->size()));
    }
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < arr->size(); ++i) {
      absl::StatusOr<int64_t> v = read_int(*arr->get(i), 0, kMaxId, 1);
      if (!v.ok()) return element_error(v.status(), i);
      ids.push_back(static_cast<uint32_t>(*v));
    }
    member(get, s) = std::move(ids);
    return absl::OkStatus();
  };
  f.write = [get](const S& s) { return cat("[", join(member(get, s), ", "), "]"); };
  return f;
}

// A Unix socket path: absolute, or relative to the config file's directory; normalised.
absl::StatusOr<std::string> resolve_socket_path(std::string_view text, const ReadContext& ctx) {
  if (text.empty()) return fail("expected a socket path, got an empty string");
  if (text.find('\0') != std::string_view::npos)
    return fail("a path cannot contain a NUL character");
  if (text.back() == '/') return fail(cat(quote(text), " names a directory, not a socket file"));
  std::filesystem::path p{std::string(text)};
  if (p.is_relative()) p = ctx.base_dir / p;
  std::string resolved = p.lexically_normal().string();
  if (resolved.size() > kMaxUnixPath) {
    return fail(cat(quote(text), " resolves to ", quote(resolved), ", ", resolved.size(),
                    " bytes; a Unix socket path holds at most ", kMaxUnixPath));
  }
  return resolved;
}

// A field whose value is a TOML string, turned into the member's value by `parse`, which
// returns absl::StatusOr of it: the string and the context go in.
template <class S, class Get, class Parse>
Field<S> string_field(std::string_view key, Get get, bool reloadable, std::string_view expected,
                      Parse parse) {
  Field<S> f = base_field<S>(key, get, reloadable, SetSyntax::kString);
  f.read = [get, expected, parse](const toml::node& n, S& s,
                                  const ReadContext& ctx) -> absl::Status {
    const auto* v = n.as_string();
    if (v == nullptr) return fail(cat("expected ", expected, ", got ", describe(n)));
    auto value = parse(v->get(), ctx);
    if (!value.ok()) return value.status();
    member(get, s) = *std::move(value);
    return absl::OkStatus();
  };
  return f;
}

template <class S, class Get>
Field<S> socket_path_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f = string_field<S>(key, get, reloadable, "a path string", resolve_socket_path);
  f.write = [get](const S& s) { return quote(member(get, s)); };
  return f;
}

template <class S, class Get, class Valid>
Field<S> name_field(std::string_view key, Get get, Valid valid, bool reloadable) {
  Field<S> f = string_field<S>(
      key, get, reloadable, "a string",
      [valid](std::string_view text, const ReadContext&) -> absl::StatusOr<std::string> {
        if (absl::Status s = valid(text); !s.ok()) return s;
        return std::string(text);
      });
  f.write = [get](const S& s) { return quote(member(get, s)); };
  return f;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

absl::Status valid_service_name(std::string_view s) {
  const bool ok = !s.empty() && s.size() <= kMaxServiceName && s[0] != '_' && s[0] != '-' &&
                  std::all_of(s.begin(), s.end(), is_name_char);
  if (!ok) {
    return fail(cat("expected 1 to ", kMaxServiceName,
                    " letters, digits, '_' or '-' starting with a letter or digit, got ",
                    quote(s)));
  }
  if (s == kReservedServiceName) {
    return fail(cat(quote(s), " is reserved for the admin socket (socket activation)"));
  }
  return absl::OkStatus();
}

absl::Status valid_group_name(std::string_view s) {
  if (s.empty()) return absl::OkStatus();  // keep the daemon's group
  const bool ok =
      s.size() <= kMaxGroupName && s[0] != '-' &&
      std::all_of(s.begin(), s.end(), [](char c) { return is_name_char(c) || c == '.'; });
  if (!ok) {
    return fail(cat("expected a group name of at most ", kMaxGroupName,
                    " letters, digits, '_', '-' or '.', got ", quote(s)));
  }
  return absl::OkStatus();
}

// "0660" or "660" as a string; a TOML octal integer (0o660). A decimal integer is refused: 660
// is not 0660 and the mistake would open the socket to the wrong people.
template <class S, class Get>
Field<S> mode_field(std::string_view key, Get get, bool reloadable) {
  Field<S> f = base_field<S>(key, get, reloadable, SetSyntax::kString);
  f.read = [get](const toml::node& n, S& s, const ReadContext&) -> absl::Status {
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
      assign(get, s, i->get());
      return absl::OkStatus();
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
    assign(get, s, (t[0] - '0') * 64 + (t[1] - '0') * 8 + (t[2] - '0'));
    return absl::OkStatus();
  };
  f.write = [get](const S& s) { return absl::StrFormat("\"%04o\"", member(get, s)); };
  return f;
}

absl::StatusOr<uint16_t> parse_port(std::string_view t) {
  if (t.empty() || t.size() > 5 ||
      !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail(cat("expected a port 0..65535 after the last ':', got ", quote(t)));
  }
  uint32_t v = 0;
  for (char c : t) v = v * 10 + static_cast<uint32_t>(c - '0');
  if (v > 65535) return fail(cat("expected a port 0..65535, got ", v));
  return static_cast<uint16_t>(v);
}

// HOST:PORT with a numeric IPv4 host, [IPV6]:PORT, or a path (anything containing '/').
absl::StatusOr<ListenAddress> parse_listen(std::string_view text, const ReadContext& ctx) {
  ListenAddress a;
  if (text.find('/') != std::string_view::npos) {
    a.family = ListenAddress::Family::kUnix;
    absl::StatusOr<std::string> path = resolve_socket_path(text, ctx);
    if (!path.ok()) return path.status();
    a.path = *std::move(path);
    return a;
  }
  const std::string_view usage =
      "expected HOST:PORT (numeric IPv4), [IPV6]:PORT, or a Unix socket path containing '/'";
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) return fail(cat(usage, ", got ", quote(text)));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    a.family = ListenAddress::Family::kIpv6;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(cat(usage, ", got ", quote(text)));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail(cat("an IPv6 address needs brackets, e.g. \"[::1]:7000\", got ", quote(text)));
    }
    if (host.empty()) {
      return fail(cat("missing host in ", quote(text), "; use 0.0.0.0 or [::] for every address"));
    }
  }
  const int family = a.family == ListenAddress::Family::kIpv6 ? AF_INET6 : AF_INET;
  unsigned char bin[sizeof(in6_addr)];
  const std::string host_str(host);
  if (inet_pton(family, host_str.c_str(), bin) != 1) {
    return fail(cat(quote(host), " is not a numeric ", family == AF_INET6 ? "IPv6" : "IPv4",
                    " address (names are not resolved)"));
  }
  char canon[INET6_ADDRSTRLEN];
  inet_ntop(family, bin, canon, sizeof canon);
  a.host = canon;
  absl::StatusOr<uint16_t> p = parse_port(port);
  if (!p.ok()) return p.status();
  a.port = *p;
  return a;
}

template <class Get>
Field<ServiceConfig> listen_field(std::string_view key, Get get) {
  Field<ServiceConfig> f =
      string_field<ServiceConfig>(key, get, kRestart, "a string", parse_listen);
  f.required = true;
  f.write = [get](const ServiceConfig& s) { return quote(member(get, s).to_string()); };
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

constexpr char kElementPayload[] = "reactord.config/element";

}  // namespace

absl::Status element_error(absl::Status s, size_t index) {
  s.SetPayload(kElementPayload, absl::Cord(std::to_string(index)));
  return s;
}

std::optional<size_t> error_element(const absl::Status& s) {
  const auto payload = s.GetPayload(kElementPayload);
  size_t index = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &index)) return std::nullopt;
  return index;
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

const Sections& sections() {
  using R = RuntimeConfig;
  using L = LogConfig;
  using A = AdminConfig;
  using W = WatchdogConfig;
  static const auto* all = new Sections{
      .runtime =
          {"runtime",
           &Config::runtime,
           {
               enum_field<R>("backend", &R::backend, kRestart),
               int_field<R>("shards", &R::shards, 0, 1024, kRestart),
               bool_field<R>("pin_cpus", &R::pin_cpus, kRestart),
               int_field<R>("stack_size_kib", &R::stack_size_kib, 16, 8192, kRestart, 4),
               enum_field<R>("idle", &R::idle, kRestart),
               int_field<R>("spin_us", &R::spin_us, 0, 100000, kRestart),
               int_field<R>("release_idle_stacks_ms", &R::release_idle_stacks_ms, 0, 3600000,
                            kRestart),
               int_field<R>("offload_threads", &R::offload_threads, 1, 256, kRestart),
               bool_field<R>("io_uring_sqpoll", &R::io_uring_sqpoll, kRestart),
               int_field<R>("io_uring_sqpoll_cpu", &R::io_uring_sqpoll_cpu, -1, 4095, kRestart),
               int_field<R>("io_uring_sqpoll_idle_ms", &R::io_uring_sqpoll_idle_ms, 1, 60000,
                            kRestart),
               int_field<R>("io_uring_min_wait_us", &R::io_uring_min_wait_us, 0, 100000, kRestart),
           }},
      .log = {"log",
              &Config::log,
              {
                  enum_field<L>("level", &L::level, kReloadable),
                  enum_field<L>("format", &L::format, kRestart),
              }},
      .admin = {"admin",
                &Config::admin,
                {
                    socket_path_field<A>("socket", &A::socket, kRestart),
                    mode_field<A>("mode", &A::mode, kRestart),
                    name_field<A>("group", &A::group, valid_group_name, kRestart),
                    id_list_field<A>("allow_uids", &A::allow_uids, kReloadable),
                    id_list_field<A>("allow_gids", &A::allow_gids, kReloadable),
                    int_field<A>("max_clients", &A::max_clients, 1, 1024, kRestart),
                    int_field<A>("idle_timeout_ms", &A::idle_timeout_ms, 100, 3600000, kRestart),
                }},
      .watchdog = {"watchdog",
                   &Config::watchdog,
                   {
                       bool_field<W>("enabled", &W::enabled, kReloadable),
                       int_field<W>("threshold_ms", &W::threshold_ms, 1, 60000, kReloadable),
                       int_field<W>("slow_slice_ms", &W::slow_slice_ms, 1, 60000, kReloadable),
                       int_field<W>("reports_per_minute", &W::reports_per_minute, 1, 6000,
                                    kReloadable),
                       int_field<W>("abort_after_ms", &W::abort_after_ms, 0, 3600000, kReloadable),
                       enum_field<W>("backtrace", &W::backtrace, kReloadable),
                   }},
      .shutdown = {"shutdown",
                   &Config::shutdown,
                   {
                       int_field<ShutdownConfig>("drain_timeout_ms",
                                                 &ShutdownConfig::drain_timeout_ms, 0,
                                                 3600000, kRestart),
                   }},
  };
  return *all;
}

const std::vector<Field<ServiceConfig>>& service_fields() {
  using S = ServiceConfig;
  using H = HttpServiceConfig;
  using P = RespServiceConfig;
  constexpr ServiceKind kHttp = ServiceKind::kHttp;
  constexpr ServiceKind kResp = ServiceKind::kResp;
  static const auto* fields = new std::vector<Field<S>>{
      required(name_field<S>("name", &S::name, valid_service_name, kRestart)),
      required(enum_field<S>("kind", &S::kind, kRestart)),
      listen_field("listen", &S::listen),
      int_field<S>("max_connections", &S::max_connections, 1, 1000000, kReloadable),
      int_field<S>("idle_timeout_ms", &S::idle_timeout_ms, 0, 86400000, kRestart),
      only_for(kHttp, int_field<S>("header_timeout_ms", nested(&S::http, &H::header_timeout_ms),
                                   100, 600000, kRestart)),
      only_for(kHttp, int_field<S>("max_header_bytes", nested(&S::http, &H::max_header_bytes), 1024,
                                   1048576, kRestart)),
      only_for(kHttp, int_field<S>("max_body_bytes", nested(&S::http, &H::max_body_bytes), 0,
                                   67108864, kRestart)),
      only_for(kHttp, bool_field<S>("debug_routes", nested(&S::http, &H::debug_routes), kRestart)),
      only_for(kResp, int_field<S>("max_bulk_bytes", nested(&S::resp, &P::max_bulk_bytes), 1,
                                   536870912, kRestart)),
      only_for(kResp, int_field<S>("max_array_len", nested(&S::resp, &P::max_array_len), 1, 1048576,
                                   kRestart)),
      only_for(kResp, int_field<S>("max_inline_bytes", nested(&S::resp, &P::max_inline_bytes), 16,
                                   1048576, kRestart)),
      only_for(kResp, int_field<S>("max_command_bytes", nested(&S::resp, &P::max_command_bytes),
                                   1024, 1073741824, kRestart)),
      only_for(kResp, int_field<S>("max_memory_bytes", nested(&S::resp, &P::max_memory_bytes), 0,
                                   1099511627776, kReloadable)),
  };
  return *fields;
}

bool applies_to(const Field<ServiceConfig>& f, ServiceKind kind) {
  return !f.only_kind || *f.only_kind == kind;
}

}  // namespace reactord::detail
