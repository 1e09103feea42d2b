#include "ctl/format.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace reactord::ctl {
namespace {

const Json kNull;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "12.3" below 100, "123" from there: three significant digits at most, as people read them.
std::string short_number(double v) {
  return v < 99.95 ? absl::StrFormat("%.1f", v) : absl::StrFormat("%.0f", v);
}

std::string field(const Json& j, std::string_view key) {
  return format_field(key, member(j, key));
}

std::string count_field(const Json& j, std::string_view key) {
  const Json& v = member(j, key);
  return v.is_number() ? format_number(v.get<double>()) : "-";
}

std::string local_time(double epoch_seconds) {
  const time_t t = static_cast<time_t>(epoch_seconds);
  tm parts{};
  if (localtime_r(&t, &parts) == nullptr) return format_number(epoch_seconds);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &parts);
  return buf;
}

// "p50 / p99" of a histogram object of the protocol ({"count", "sum", "p50", "p99", ...}).
std::string quantiles(const Json& hist) {
  if (!hist.is_object()) return "-";
  return absl::StrCat(format_field("p50_seconds", member(hist, "p50")), " / ",
                      format_field("p99_seconds", member(hist, "p99")));
}

std::string current_slice(const Json& slice) {
  if (!slice.is_object()) return "-";
  const Json& running = member(slice, "running");
  if (!running.is_boolean() || !running.get<bool>()) return "idle";
  std::string who = string_or(slice, "fiber", "");
  if (who.empty()) who = "(loop)";
  return absl::StrCat(who, " for ", format_field("seconds", member(slice, "seconds")));
}

// Header of a generic column: the key, upper-cased, without the unit suffix the values show.
std::string column_title(std::string key) {
  for (std::string_view suffix : {"_seconds", "_bytes"}) {
    if (ends_with(key, suffix) && key.size() > suffix.size())
      key.resize(key.size() - suffix.size());
  }
  std::replace(key.begin(), key.end(), '_', ' ');
  return absl::AsciiStrToUpper(key);
}

// An object flattened to ("a.b", value) pairs in member order; arrays stay values.
void flatten(const Json& j, const std::string& prefix,
             std::vector<std::pair<std::string, const Json*>>* out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : absl::StrCat(prefix, ".", it.key());
    if (it.value().is_object() && !it.value().empty()) {
      flatten(it.value(), key, out);
    } else {
      out->emplace_back(key, &it.value());
    }
  }
}

std::string cell(const std::string& key, const Json& v) {
  const size_t dot = key.rfind('.');
  const std::string_view last =
      dot == std::string::npos ? std::string_view(key) : std::string_view(key).substr(dot + 1);
  if (v.is_array()) {
    bool scalars = true;
    for (const Json& e : v) scalars = scalars && !e.is_structured();
    if (!scalars) return absl::StrCat(v.size(), " items");
    std::vector<std::string> parts;
    for (const Json& e : v) parts.push_back(format_field(last, e));
    return absl::StrJoin(parts, ", ");
  }
  if (v.is_object()) return "{}";
  return format_field(last, v);
}

// An array of objects as one table, its columns the union of their flattened keys.
std::string object_table(const Json& array) {
  std::vector<std::string> keys;
  std::map<std::string, bool> numeric;
  std::vector<std::vector<std::pair<std::string, const Json*>>> rows;
  for (const Json& e : array) {
    std::vector<std::pair<std::string, const Json*>> flat;
    if (e.is_object()) {
      flatten(e, "", &flat);
    } else {
      flat.emplace_back("value", &e);
    }
    for (const auto& [k, v] : flat) {
      auto [it, added] = numeric.emplace(k, true);
      if (added) keys.push_back(k);
      if (!v->is_number() && !v->is_null()) it->second = false;
    }
    rows.push_back(std::move(flat));
  }
  std::vector<std::string> headers;
  for (const std::string& k : keys) headers.push_back((numeric[k] ? ">" : "") + column_title(k));
  Table t(headers);
  for (const auto& flat : rows) {
    std::vector<std::string> cells(keys.size(), "-");
    for (const auto& [k, v] : flat) {
      const size_t col = static_cast<size_t>(std::find(keys.begin(), keys.end(), k) - keys.begin());
      cells[col] = cell(k, *v);
    }
    t.add_row(std::move(cells));
  }
  return t.render();
}

void render_object(const Json& j, int indent, std::string* out) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Json& v = it.value();
    if (v.is_object()) {
      absl::StrAppend(out, pad, it.key(), ":\n");
      render_object(v, indent + 2, out);
    } else if (v.is_array() && !v.empty() && v.front().is_object()) {
      absl::StrAppend(out, pad, it.key(), ":\n");
      std::string table = object_table(v);
      for (absl::string_view line : absl::StrSplit(table, '\n', absl::SkipEmpty())) {
        absl::StrAppend(out, pad, "  ", line, "\n");
      }
    } else {
      absl::StrAppend(out, pad, it.key(), ": ", cell(it.key(), v), "\n");
    }
  }
}

}  // namespace

std::string format_duration(double s) {
  if (!std::isfinite(s)) return "-";
  if (s < 0) return absl::StrCat("-", format_duration(-s));
  if (s == 0) return "0 s";
  // Each unit up to the value that would round to 1000 of it.
  if (s < 0.9995e-6) return absl::StrFormat("%.0f ns", s * 1e9);
  if (s < 0.9995e-3) return short_number(s * 1e6) + " us";
  if (s < 0.9995) return short_number(s * 1e3) + " ms";
  if (s < 59.995) return absl::StrFormat("%.2f s", s);
  const auto whole = static_cast<int64_t>(s);
  if (whole < 3600) return absl::StrFormat("%dm%02ds", whole / 60, whole % 60);
  if (whole < 86400) return absl::StrFormat("%dh%02dm", whole / 3600, whole % 3600 / 60);
  return absl::StrFormat("%dd%02dh", whole / 86400, whole % 86400 / 3600);
}

std::string format_bytes(double b) {
  if (!std::isfinite(b)) return "-";
  if (b < 1024) return absl::StrFormat("%.0f B", b);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = b / 1024;
  size_t u = 0;
  while (v >= 1023.5 && u + 1 < std::size(kUnits)) {  // 1023.5 would print as 1024
    v /= 1024;
    ++u;
  }
  return absl::StrCat(short_number(v), " ", kUnits[u]);
}

std::string format_percent(double fraction) {
  if (!std::isfinite(fraction)) return "-";
  return absl::StrFormat("%.1f%%", fraction * 100);
}

std::string format_number(double v) {
  if (!std::isfinite(v)) return "-";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.4g", v);
}

std::string format_field(std::string_view key, const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) {
    const double d = v.get<double>();
    if (ends_with(key, "_seconds") || key == "seconds") return format_duration(d);
    if (ends_with(key, "_bytes") || key == "bytes") return format_bytes(d);
    return format_number(d);
  }
  return v.dump();
}

Table::Table(std::vector<std::string> headers) {
  for (std::string& h : headers) {
    const bool right = !h.empty() && h[0] == '>';
    right_.push_back(right);
    headers_.push_back(right ? h.substr(1) : std::move(h));
  }
}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string fill(width[c] - cells[c].size(), ' ');
      if (c > 0) l += "  ";
      l += right_[c] ? fill + cells[c] : (c + 1 < cells.size() ? cells[c] + fill : cells[c]);
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    absl::StrAppend(&out, l, "\n");
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
  return out;
}

const Json& member(const Json& j, std::string_view key) {
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

double number_or(const Json& j, std::string_view key, double fallback) {
  const Json& v = member(j, key);
  return v.is_number() ? v.get<double>() : fallback;
}

std::string string_or(const Json& j, std::string_view key, std::string fallback) {
  const Json& v = member(j, key);
  return v.is_string() ? v.get<std::string>() : std::move(fallback);
}

std::string render_version(const Json& v) {
  return absl::StrCat("reactord ", string_or(v, "version", "?"), " (admin protocol ",
                      count_field(v, "protocol"), ", backend ", string_or(v, "backend", "?"),
                      ")\n");
}

std::string render_shards(const Json& shards) {
  Table t({">SHARD", ">UTIL", ">ITERATIONS", ">POLLS", ">WAKEUPS", ">FIBERS", ">RUNNABLE",
           ">SWITCHES", ">SLICE p50 / p99", ">SCHED p50 / p99", ">POLL WAIT p50 / p99", ">SLOW",
           ">CONNS", "IDLE", "RUNNING"});
  Table extra({">SHARD", ">CREATED", ">FINISHED", ">STACKS GUARDED", ">CANARY", ">TIMERS ARMED",
               ">FIRED", ">CANCELLED", ">EMFILE", ">ACCEPT ERRORS", ">SPUN", "BACKEND"});
  // Backend counters, one row per counter (each backend names its own), one column per shard.
  std::vector<std::string> counter_names;
  std::vector<std::string> counter_headers = {"BACKEND COUNTER"};
  for (const Json& s : shards) {
    counter_headers.push_back(absl::StrCat(">SHARD ", count_field(s, "shard")));
    const Json& counters = member(member(s, "backend"), "counters");
    for (auto it = counters.begin(); it != counters.end(); ++it) {
      if (std::find(counter_names.begin(), counter_names.end(), it.key()) == counter_names.end())
        counter_names.push_back(it.key());
    }
  }
  Table counters(counter_headers);
  for (const std::string& n : counter_names) {
    std::vector<std::string> row = {n};
    for (const Json& s : shards) row.push_back(field(member(member(s, "backend"), "counters"), n));
    counters.add_row(std::move(row));
  }
  for (const Json& s : shards) {
    const Json& fibers = member(s, "fibers");
    const double util = number_or(s, "utilization", NAN);
    t.add_row({count_field(s, "shard"), format_percent(util), count_field(s, "loop_iterations"),
               count_field(s, "polls"), count_field(s, "poll_wakeups"),
               count_field(fibers, "alive"), count_field(fibers, "runnable"),
               count_field(s, "context_switches"), quantiles(member(s, "slice_seconds")),
               quantiles(member(s, "sched_latency_seconds")),
               quantiles(member(s, "poll_wait_seconds")), count_field(s, "slow_slices"),
               count_field(s, "connections"), string_or(s, "idle", "-"),
               current_slice(member(s, "current_slice"))});
    const Json& stacks = member(s, "stacks");
    const Json& timers = member(s, "timers");
    extra.add_row({count_field(s, "shard"), count_field(fibers, "created"),
                   count_field(fibers, "finished"), count_field(stacks, "guarded"),
                   count_field(stacks, "canary"), count_field(timers, "armed"),
                   count_field(timers, "fired"), count_field(timers, "cancelled"),
                   count_field(s, "emfile_events"), count_field(s, "accept_errors"),
                   format_field("seconds", member(s, "spin_seconds")),
                   string_or(member(s, "backend"), "name", "-")});
  }
  std::string out = t.render();
  absl::StrAppend(&out, "\n", extra.render());
  if (!counter_names.empty()) absl::StrAppend(&out, "\n", counters.render());
  return out;
}

std::string render_services(const Json& services) {
  Table t({"SERVICE", "KIND", "ADDRESS", ">ACTIVE", ">ACCEPTED", ">CLOSED", ">REJECTED", ">MAX",
           ">IN", ">OUT", ">REQUESTS"});
  for (const Json& s : services) {
    const Json& c = member(s, "connections");
    t.add_row({string_or(s, "name", "-"), string_or(s, "kind", "-"), string_or(s, "address", "-"),
               count_field(c, "active"), count_field(c, "accepted"), count_field(c, "closed"),
               count_field(c, "rejected"), count_field(s, "max_connections"),
               format_field("bytes", member(s, "bytes_in")),
               format_field("bytes", member(s, "bytes_out")), count_field(s, "requests")});
  }
  return t.render();
}

std::string render_stats(const Json& stats) {
  // The backend each shard runs, and the one asked for (`backend_requested`; older daemons sent
  // the configured choice, possibly "auto", as `backend`).
  const Json& shards = member(stats, "shards");
  const std::string configured =
      string_or(stats, "backend_requested", string_or(stats, "backend", "?"));
  const std::string running = shards.empty() ? string_or(stats, "backend", "?")
                                             : string_or(member(shards.front(), "backend"), "name",
                                                         string_or(stats, "backend", "?"));
  std::string out =
      absl::StrCat("reactord ", string_or(stats, "version", "?"), "  backend ", running,
                   running == configured ? "" : absl::StrCat(" (runtime.backend ", configured, ")"),
                   "  up ", field(stats, "uptime_seconds"), "  ", shards.size(), " shards\n");
  const Json& p = member(stats, "process");
  absl::StrAppend(&out, "process: cpu ", field(p, "cpu_seconds"), ", resident ",
                  field(p, "resident_bytes"), ", ", count_field(p, "open_fds"), " open fds",
                  member(p, "start_time_seconds").is_number()
                      ? ", started " + local_time(number_or(p, "start_time_seconds", 0))
                      : std::string(),
                  "\n");
  const Json& off = member(stats, "offload");
  const Json& log = member(stats, "log");
  absl::StrAppend(&out, "offload: ", count_field(off, "queued"), " queued, ",
                  count_field(off, "running"), " running, ", count_field(off, "done"),
                  " done   log: ", string_or(log, "level", "-"), ", ", count_field(log, "dropped"),
                  " lines dropped   stalls: ", count_field(stats, "stalls_total"), "\n\n");
  Table t({">SHARD", ">UTIL", ">FIBERS", ">RUNNABLE", ">SWITCHES", ">SLICE p50 / p99",
           ">SCHED p50 / p99", ">SLOW", ">CONNS", "IDLE", "RUNNING"});
  for (const Json& s : member(stats, "shards")) {
    const Json& fibers = member(s, "fibers");
    t.add_row({count_field(s, "shard"), format_percent(number_or(s, "utilization", NAN)),
               count_field(fibers, "alive"), count_field(fibers, "runnable"),
               count_field(s, "context_switches"), quantiles(member(s, "slice_seconds")),
               quantiles(member(s, "sched_latency_seconds")), count_field(s, "slow_slices"),
               count_field(s, "connections"), string_or(s, "idle", "-"),
               current_slice(member(s, "current_slice"))});
  }
  absl::StrAppend(&out, t.render(), "\n", render_services(member(stats, "services")));
  return out;
}

namespace {

// `fibers --stacks`: each fiber on a line of its own, then its stack, innermost first; the fiber
// running now (holding its loop) is marked with '*'.
void append_fiber_stacks(const Json& fibers, std::string* out) {
  for (const Json& f : fibers) {
    const bool running = member(f, "running").is_boolean() && member(f, "running").get<bool>();
    const std::string waiting = string_or(f, "waiting_on", "");
    absl::StrAppend(
        out, running ? "* " : "  ", "fiber ", count_field(f, "id"), " ", string_or(f, "name", "-"),
        ": ", running ? "running now" : string_or(f, "state", "-"),
        waiting.empty() ? "" : " on " + waiting, ", age ", field(f, "age_seconds"), ", stack ",
        field(f, "stack_used_bytes"), " of ", field(f, "stack_size_bytes"),
        member(f, "stack_released").is_boolean() && member(f, "stack_released").get<bool>()
            ? " (released: kept in a copy)"
            : "",
        "\n");
    const Json& stack = member(f, "stack");
    if (!stack.is_array()) continue;
    for (size_t i = 0; i < stack.size(); ++i) {
      absl::StrAppend(out, "      #", i, " ",
                      stack[i].is_string() ? stack[i].get<std::string>() : "?", "\n");
    }
    if (number_or(f, "frames_omitted", 0) > 0) {
      absl::StrAppend(out, "      (", count_field(f, "frames_omitted"), " more frames)\n");
    }
  }
}

}  // namespace

std::string render_fibers(const Json& shards) {
  std::string out;
  for (const Json& s : shards) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, "shard ", count_field(s, "shard"));
    if (member(s, "snapshot_age_seconds").is_number()) {
      absl::StrAppend(&out, ", snapshot ", field(s, "snapshot_age_seconds"), " old");
    }
    absl::StrAppend(&out, ", now ", current_slice(member(s, "current_slice")));
    if (member(s, "error").is_string()) absl::StrAppend(&out, ": ", string_or(s, "error", ""));
    out += "\n";
    const Json& fibers = member(s, "fibers");
    if (!fibers.is_array()) continue;
    if (member(s, "stacks").is_boolean()) {
      if (member(s, "stacks_error").is_string()) {
        absl::StrAppend(&out, "no stacks: ", string_or(s, "stacks_error", ""),
                        "; the fibers below are from the last snapshot\n");
      }
      append_fiber_stacks(fibers, &out);
      if (number_or(s, "fibers_omitted", 0) > 0) {
        absl::StrAppend(&out, "(", count_field(s, "fibers_omitted"), " more fibers not listed)\n");
      }
      continue;
    }
    Table t({">ID", "NAME", "STATE", "WAITING ON", ">AGE", ">LAST SLICE", ">SLICES", ">STACK USED",
             ">STACK SIZE"});
    for (const Json& f : fibers) {
      t.add_row({count_field(f, "id"), string_or(f, "name", "-"), string_or(f, "state", "-"),
                 string_or(f, "waiting_on", "-"), field(f, "age_seconds"),
                 field(f, "last_slice_seconds"), count_field(f, "slices"),
                 field(f, "stack_used_bytes"), field(f, "stack_size_bytes")});
    }
    out += t.render();
  }
  return out;
}

std::string render_conns(const Json& conns) {
  if (!conns.is_object()) return render_generic(conns);
  std::string out;
  const Json& list = member(conns, "connections");
  Table t({"SERVICE", ">SHARD", "PEER", ">AGE", ">IN", ">OUT", ">REQUESTS", "STATE", ">FIBER"});
  if (list.is_array()) {
    for (const Json& c : list) {
      t.add_row({string_or(c, "service", "-"), count_field(c, "shard"), string_or(c, "peer", "-"),
                 field(c, "age_seconds"), count_field(c, "bytes_in"), count_field(c, "bytes_out"),
                 count_field(c, "requests"), string_or(c, "state", "-"),
                 count_field(c, "fiber_id")});
    }
  }
  out = t.empty() ? "no connections\n" : t.render();
  if (number_or(conns, "omitted", 0) > 0) {
    absl::StrAppend(&out, "(", count_field(conns, "omitted"), " more connections not listed)\n");
  }
  const Json& unavailable = member(conns, "unavailable_shards");
  if (unavailable.is_array()) {
    for (const Json& u : unavailable)
      absl::StrAppend(&out, "not listed: ", string_or(u, "error", "-"), "\n");
  }
  return out;
}

std::string render_stalls(const Json& stalls) {
  if (!stalls.is_object()) return render_generic(stalls);
  std::string out = absl::StrCat("stalls: ", count_field(stalls, "stalls_total"), " in all");
  if (member(stalls, "watchdog").is_boolean()) {
    absl::StrAppend(&out,
                    member(stalls, "watchdog").get<bool>() ? " (watchdog on)" : " (watchdog off)");
  }
  out += "\n";
  const Json& reports = member(stalls, "reports");
  if (reports.is_array() && !reports.empty()) {
    // The usual fields first, in a fixed order; stack frames make a table unreadable, so the
    // table counts them and the latest report lists them; fields added later follow.
    static constexpr std::pair<const char*, const char*> kColumns[] = {
        {"id", ">ID"},           {"time_seconds", "AT"},    {"shard", ">SHARD"},
        {"fiber", "FIBER"},      {"kind", "KIND"},          {"wall_seconds", ">WALL"},
        {"cpu_seconds", ">CPU"}, {"thread_state", "STATE"}, {"syscall", "SYSCALL"},
        {"ended", "ENDED"},      {"frames", ">FRAMES"}};
    auto known = [](const std::string& key) {
      if (key == "fiber_id") return true;
      for (const auto& [k, title] : kColumns) {
        if (key == k) return true;
      }
      return false;
    };
    std::vector<std::string> extra;
    for (const Json& r : reports) {
      if (!r.is_object()) continue;
      for (auto it = r.begin(); it != r.end(); ++it) {
        if (!known(it.key()) && std::find(extra.begin(), extra.end(), it.key()) == extra.end())
          extra.push_back(it.key());
      }
    }
    std::vector<std::string> headers;
    for (const auto& [k, title] : kColumns) headers.push_back(title);
    for (const std::string& k : extra) headers.push_back(column_title(k));
    Table t(headers);
    for (const Json& r : reports) {
      std::vector<std::string> row;
      for (const auto& [key, title] : kColumns) {
        const Json& v = member(r, key);
        if (std::string_view(key) == "time_seconds" && v.is_number()) {
          row.push_back(local_time(v.get<double>()));
        } else if (std::string_view(key) == "frames") {
          row.push_back(v.is_array() ? format_number(static_cast<double>(v.size())) : "-");
        } else {
          row.push_back(format_field(key, v));
        }
      }
      for (const std::string& k : extra) row.push_back(cell(k, member(r, k)));
      t.add_row(std::move(row));
    }
    absl::StrAppend(&out, "\nrecent reports, oldest first:\n", t.render());
    const Json& frames = member(reports.back(), "frames");
    if (frames.is_array() && !frames.empty()) {
      absl::StrAppend(&out, "\nstack of the latest report, innermost first:\n");
      for (const Json& f : frames) absl::StrAppend(&out, "  ", format_field("", f), "\n");
    }
  } else {
    out += "no stall reports\n";
  }
  const Json& slow = member(stalls, "top_slow_fibers");
  if (slow.is_array() && !slow.empty()) {
    Table t({"FIBER", ">SLOW SLICES"});
    for (const Json& f : slow)
      t.add_row({string_or(f, "fiber", "-"), count_field(f, "slow_slices")});
    absl::StrAppend(&out, "\nfibers with the most slow slices (over watchdog.slow_slice_ms):\n",
                    t.render());
  }
  // Anything else the daemon adds, shown rather than hidden.
  Json rest = stalls;
  for (const char* known : {"stalls_total", "watchdog", "reports", "top_slow_fibers"}) {
    rest.erase(known);
  }
  if (!rest.empty()) absl::StrAppend(&out, "\n", render_generic(rest));
  return out;
}

std::string render_backends(const Json& backends) {
  if (!backends.is_array()) return render_generic(backends);
  Table t({"BACKEND", "AVAILABLE", "WHY NOT"});
  for (const Json& b : backends) {
    const std::string reason = string_or(b, "reason", "");
    t.add_row({string_or(b, "name", "-"), format_field("available", member(b, "available")),
               reason.empty() ? "-" : reason});
  }
  return t.render();
}

std::string render_generic(const Json& value) {
  if (value.is_array()) {
    if (value.empty()) return "(none)\n";
    return object_table(value);
  }
  if (value.is_object()) {
    std::string out;
    render_object(value, 0, &out);
    return out;
  }
  return format_field("", value) + "\n";
}

}  // namespace reactord::ctl
