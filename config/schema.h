// The schema as data (internal to config/): one descriptor per key that reads and checks a TOML
// value, prints it back, and copies it. The loader, format_config(), restart_needed(),
// merge_reloadable() and apply_setting() in config.cc all walk these tables, so a key is added in
// exactly one place: schema.cc. The public API is config/config.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "config/config.h"
#include "config/tomlpp.h"

namespace reactord::detail {

// The names used in the file, indexed by the enum's value.
inline constexpr std::string_view kBackendNames[] = {"auto", "epoll", "io_uring", "libevent"};
inline constexpr std::string_view kIdleNames[] = {"block", "spin", "adaptive"};
inline constexpr std::string_view kLevelNames[] = {"trace", "debug", "info", "warn", "error"};
inline constexpr std::string_view kFormatNames[] = {"auto", "journal", "text"};
inline constexpr std::string_view kBacktraceNames[] = {"always", "cpu-only", "never"};
inline constexpr std::string_view kKindNames[] = {"echo", "http", "resp"};

// The same tables, found by the enum's type: EnumNames::of(IdleMode{}) is kIdleNames.
using Names = std::span<const std::string_view>;
struct EnumNames {
  static constexpr Names of(IoBackend) { return kBackendNames; }
  static constexpr Names of(IdleMode) { return kIdleNames; }
  static constexpr Names of(LogLevel) { return kLevelNames; }
  static constexpr Names of(LogFormat) { return kFormatNames; }
  static constexpr Names of(BacktraceMode) { return kBacktraceNames; }
  static constexpr Names of(ServiceKind) { return kKindNames; }
};

inline constexpr std::string_view kSections[] = {"runtime",  "log",      "admin",
                                                 "watchdog", "shutdown", "service"};

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
std::string quote(std::string_view s);

// "the string \"64\"", "the float 1.5", "an array": what a value is, for error messages.
std::string describe(const toml::node& n);

// Field reads report errors as InvalidArgument with the message alone; the loader adds
// FILE:LINE:COLUMN and the key. An error in one element of an array value is marked with
// element_error(): the loader then reports it at that element, under KEY[INDEX].
inline absl::Status fail(std::string message) {
  return absl::InvalidArgumentError(message);
}
absl::Status element_error(absl::Status s, size_t index);
// The element index marked by element_error(), if any.
std::optional<size_t> error_element(const absl::Status& s);

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
  std::function<absl::Status(const toml::node&, S&, const ReadContext&)> read;
  std::function<std::string(const S&)> write;  // the value as TOML text
  std::function<void(const S& from, S& to)> copy;
};

template <class S>
struct Section {
  std::string_view name;
  S Config::*member;
  std::vector<Field<S>> fields;
};

// The fixed sections, in schema order, and the keys of a [[service]] table.
struct Sections {
  Section<RuntimeConfig> runtime;
  Section<LogConfig> log;
  Section<AdminConfig> admin;
  Section<WatchdogConfig> watchdog;
  Section<ShutdownConfig> shutdown;
};
const Sections& sections();
const std::vector<Field<ServiceConfig>>& service_fields();

// Calls fn(section) for every fixed section, in schema order.
template <class Fn>
void for_each_section(Fn&& fn) {
  const Sections& all = sections();
  fn(all.runtime);
  fn(all.log);
  fn(all.admin);
  fn(all.watchdog);
  fn(all.shutdown);
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

// Whether a service key applies to a service of this kind.
bool applies_to(const Field<ServiceConfig>& f, ServiceKind kind);

}  // namespace reactord::detail
