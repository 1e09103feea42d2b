// The config loader, the printer and the rules for run-time changes, all walking the descriptor
// tables of schema.cc.

#include "config/config.h"
#include "config/schema.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace reactord {
namespace {

using namespace detail;  // NOLINT: the schema's helpers, internal to config/

constexpr size_t kMaxServices = 256;
constexpr size_t kMaxConfigBytes = size_t{1} << 20;

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
// address or where one is a wildcard ([::] is dual-stack: it takes IPv4 too).
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
    absl::Status status = f.read(v, s, ctx_);
    if (status.ok()) return true;
    const toml::node* at = &v;
    std::string suffix;
    if (std::optional<size_t> i = error_element(status)) {
      at = v.as_array()->get(*i);
      suffix = cat("[", *i, "]");
    }
    add(position_of(at->source()), key + suffix, std::string(status.message()));
    return false;
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
  absl::Status status = f.read(*t->get("v"), target, ctx);
  if (status.ok()) return status;
  const std::optional<size_t> i = error_element(status);
  return absl::InvalidArgumentError(
      cat(key, i ? cat("[", *i, "]") : std::string(), ": ", status.message()));
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

template <ConfigEnum E>
std::string_view to_string(E v) {
  return EnumNames::of(v)[static_cast<size_t>(v)];
}
template std::string_view to_string(IoBackend);
template std::string_view to_string(IdleMode);
template std::string_view to_string(LogLevel);
template std::string_view to_string(LogFormat);
template std::string_view to_string(BacktraceMode);
template std::string_view to_string(ServiceKind);

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
