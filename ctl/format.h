// How reactorctl shows answers to people: human units (12.3 us, 4.5 ms, 9.8 MiB), aligned tables,
// and the human views of the JSON answers of docs/admin-protocol.md (stats, shards, services,
// fibers, stalls, backends, version). Fields the protocol names by unit suffix (`_seconds`,
// `_bytes`) are shown in human units wherever they appear, so an answer that gains fields still
// reads well; a missing field shows as "-" rather than failing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace reactord::ctl {

using Json = nlohmann::json;

// "0 s", "850 ns", "12.3 us", "4.5 ms", "2.35 s", "3m07s", "5h02m", "2d03h".
std::string format_duration(double seconds);
// "512 B", "1.5 KiB", "9.8 MiB", "1.2 GiB".
std::string format_bytes(double bytes);
// "12.5%".
std::string format_percent(double fraction);
// A number as the protocol sends it: integers without a fraction, others with up to 4 significant
// digits.
std::string format_number(double v);
// `value` shown by its key's unit suffix (`_seconds` duration, `_bytes` bytes), "-" for null.
std::string format_field(std::string_view key, const Json& value);

// A text table with aligned columns; a column whose header starts with '>' is right-aligned (the
// '>' is not printed).
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// Member access that tolerates a missing member or a wrong type.
const Json& member(const Json& j, std::string_view key);
double number_or(const Json& j, std::string_view key, double fallback);
std::string string_or(const Json& j, std::string_view key, std::string fallback);

// The human views. Each returns text ending in '\n'.
std::string render_version(const Json& version);
std::string render_stats(const Json& stats);
std::string render_shards(const Json& shards);
std::string render_services(const Json& services);
// Both the snapshot table and, for `fibers --stacks`, each fiber with its stack.
std::string render_fibers(const Json& fibers);
std::string render_conns(const Json& conns);
std::string render_stalls(const Json& stalls);
std::string render_backends(const Json& backends);
// Any JSON value: objects as "key: value" lines, arrays of objects as tables.
std::string render_generic(const Json& value);

}  // namespace reactord::ctl
