#include "ctl/top.h"

#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace reactord::ctl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kBarWidth = 30;
constexpr char kClearScreen[] = "\x1b[H\x1b[2J";
constexpr char kHideCursor[] = "\x1b[?25l";
constexpr char kShowCursor[] = "\x1b[?25h";

volatile sig_atomic_t g_stop = 0;

void on_stop_signal(int) {
  g_stop = 1;
}

double parse_value(std::string_view s) {
  if (s == "+Inf" || s == "Inf") return std::numeric_limits<double>::infinity();
  if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  double v = 0;
  if (!absl::SimpleAtod(absl::string_view(s.data(), s.size()), &v)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return v;
}

// Parses `{a="x",b="y"}` at the front of `s`; returns the rest, or nullopt when malformed.
std::optional<std::string_view> parse_labels(std::string_view s,
                                             std::map<std::string, std::string>* labels) {
  s.remove_prefix(1);  // '{'
  for (;;) {
    while (!s.empty() && (s.front() == ' ' || s.front() == ',')) s.remove_prefix(1);
    if (s.empty()) return std::nullopt;
    if (s.front() == '}') return s.substr(1);
    const size_t eq = s.find('=');
    if (eq == std::string_view::npos || eq + 1 >= s.size() || s[eq + 1] != '"') return std::nullopt;
    std::string key(s.substr(0, eq));
    while (!key.empty() && key.back() == ' ') key.pop_back();
    s.remove_prefix(eq + 2);
    std::string value;
    for (;;) {
      if (s.empty()) return std::nullopt;
      const char c = s.front();
      s.remove_prefix(1);
      if (c == '"') break;
      if (c == '\\' && !s.empty()) {
        const char e = s.front();
        s.remove_prefix(1);
        value += e == 'n' ? '\n' : e;
      } else {
        value += c;
      }
    }
    (*labels)[key] = std::move(value);
  }
}

// The per-shard value of a counter family in the metrics, if present.
std::optional<double> shard_value(const std::vector<MetricSample>& samples, std::string_view name,
                                  const std::string& shard) {
  for (const MetricSample& m : samples) {
    if (m.name != name) continue;
    auto it = m.labels.find("shard");
    if (it != m.labels.end() && it->second == shard) return m.value;
  }
  return std::nullopt;
}

const Json* find_by(const Json& array, std::string_view key, const Json& value) {
  if (!array.is_array()) return nullptr;
  for (const Json& e : array) {
    if (member(e, key) == value) return &e;
  }
  return nullptr;
}

Json rate(double later, double earlier, double seconds) {
  if (seconds <= 0 || later < earlier) return nullptr;
  return (later - earlier) / seconds;
}

std::string bar(double fraction) {
  if (!std::isfinite(fraction)) return "[" + std::string(kBarWidth, ' ') + "]";
  const int filled = std::clamp(static_cast<int>(std::lround(fraction * kBarWidth)), 0, kBarWidth);
  return absl::StrCat("[", std::string(static_cast<size_t>(filled), '#'),
                      std::string(static_cast<size_t>(kBarWidth - filled), '.'), "]");
}

std::string per_second(const Json& v, bool bytes) {
  if (!v.is_number()) return "-";
  const double d = v.get<double>();
  return bytes ? absl::StrCat(format_bytes(d), "/s") : absl::StrFormat("%.1f", d);
}

// The protocol's fine histogram buckets ("buckets" in a `stats` histogram object: counts per
// bucket, log-linear from 1 us to 100 s as in reactor/histogram.h: an underflow bucket, nine per
// decade, an overflow bucket) as a cumulative histogram; nullopt when absent or of another shape.
std::optional<Buckets> stats_buckets(const Json& hist) {
  constexpr size_t kDecades = 8, kCount = kDecades * 9 + 2;
  const Json& counts = member(hist, "buckets");
  if (!counts.is_array() || counts.size() != kCount) return std::nullopt;
  std::vector<double> bounds = {1e-6};
  double decade = 1e-6;
  for (size_t d = 0; d < kDecades; ++d, decade *= 10) {
    for (int m = 2; m <= 10; ++m) bounds.push_back(decade * m);
  }
  bounds.push_back(std::numeric_limits<double>::infinity());
  Buckets b;
  double cumulative = 0;
  for (size_t i = 0; i < kCount; ++i) {
    if (!counts[i].is_number()) return std::nullopt;
    cumulative += counts[i].get<double>();
    b.emplace_back(bounds[i], cumulative);
  }
  return b;
}

// Latency quantiles of one shard's histogram over the interval, from bucket deltas: the fine
// buckets of `stats` if exposed, else the coarse ones of `metrics`; else the since-start p50/p99
// fields of `stats` (and the frame is marked as not windowed).
void add_latency(const TopSample* previous, const TopSample& current, const Json& shard_stats,
                 std::string_view stats_key, std::string_view family, std::string_view prefix,
                 Json* out, bool* windowed) {
  const Json& now_hist = member(shard_stats, stats_key);
  const std::string shard = format_number(number_or(shard_stats, "shard", -1));
  std::optional<Buckets> now = stats_buckets(now_hist), before;
  if (previous != nullptr) {
    const Json& id = member(shard_stats, "shard");
    if (const Json* s = find_by(member(previous->stats, "shards"), "shard", id)) {
      before = stats_buckets(member(*s, stats_key));
    }
  }
  if (!now || !before) {
    now = histogram_buckets(current.metrics, family, shard);
    before = previous ? histogram_buckets(previous->metrics, family, shard) : std::nullopt;
  }
  if (now && before) {
    const Buckets window = buckets_minus(*now, *before);
    for (auto [q, name] : {std::pair{0.5, "p50"}, std::pair{0.99, "p99"}}) {
      std::optional<double> v = bucket_quantile(window, q);
      (*out)[absl::StrCat(std::string(prefix), "_", name, "_seconds")] =
          v ? Json(*v) : Json(nullptr);
    }
    return;
  }
  *windowed = false;
  (*out)[absl::StrCat(std::string(prefix), "_p50_seconds")] = member(now_hist, "p50");
  (*out)[absl::StrCat(std::string(prefix), "_p99_seconds")] = member(now_hist, "p99");
}

// A shard's busy and poll-wait seconds since start: from `stats` if exposed, else `metrics`.
std::optional<std::pair<double, double>> busy_and_wait(const TopSample& sample, const Json& shard) {
  const Json* s = find_by(member(sample.stats, "shards"), "shard", shard);
  if (s != nullptr && member(*s, "busy_seconds").is_number() &&
      member(*s, "poll_wait_seconds_total").is_number()) {
    return std::pair{number_or(*s, "busy_seconds", 0), number_or(*s, "poll_wait_seconds_total", 0)};
  }
  const std::string id = format_number(shard.is_number() ? shard.get<double>() : -1);
  std::optional<double> busy = shard_value(sample.metrics, "reactord_busy_seconds_total", id);
  std::optional<double> wait = shard_value(sample.metrics, "reactord_poll_wait_seconds_total", id);
  if (!busy || !wait) return std::nullopt;
  return std::pair{*busy, *wait};
}

// True when `stats` lacks what top needs (buckets, busy time), so `metrics` must be fetched.
bool needs_metrics(const Json& stats) {
  for (const Json& s : member(stats, "shards")) {
    if (!member(s, "busy_seconds").is_number() || !stats_buckets(member(s, "slice_seconds")) ||
        !stats_buckets(member(s, "sched_latency_seconds"))) {
      return true;
    }
  }
  return false;
}

// Puts the terminal in non-canonical, no-echo mode (so 'q' arrives without Enter) and hides the
// cursor; restores both when destroyed.
class TerminalGuard {
 public:
  TerminalGuard() {
    if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      input_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    screen_ = ::isatty(STDOUT_FILENO);
    if (screen_) std::fputs(kHideCursor, stdout);
  }
  ~TerminalGuard() {
    if (input_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    if (screen_) {
      std::fputs(kShowCursor, stdout);
      std::fflush(stdout);
    }
  }
  TerminalGuard(const TerminalGuard&) = delete;
  TerminalGuard& operator=(const TerminalGuard&) = delete;

  bool input() const { return input_; }
  bool screen() const { return screen_; }

 private:
  termios saved_{};
  bool input_ = false;
  bool screen_ = false;
};

// Waits until `until`, a stop signal or a 'q' typed at the terminal. False when told to stop.
bool wait_until(Clock::time_point until, bool read_keys) {
  for (;;) {
    if (g_stop) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return true;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int r =
        ::poll(read_keys ? &p : nullptr, read_keys ? 1 : 0, static_cast<int>(left.count()) + 1);
    if (r > 0 && read_keys) {
      char keys[64];
      const ssize_t n = ::read(STDIN_FILENO, keys, sizeof keys);
      if (n == 0) read_keys = false;  // stdin closed: keep going on signals and time alone
      for (ssize_t i = 0; i < n; ++i) {
        if (keys[i] == 'q' || keys[i] == 'Q') return false;
      }
    }
  }
}

absl::StatusOr<TopSample> take_sample(AdminClient& client, const std::string& socket_path,
                                      std::chrono::milliseconds timeout) {
  if (!client.connected()) {
    absl::StatusOr<AdminClient> c = AdminClient::connect(socket_path, timeout);
    if (!c.ok()) return c.status();
    client = *std::move(c);
  }
  TopSample sample;
  sample.at = Clock::now();
  absl::StatusOr<Answer> stats = client.request("stats", timeout);
  if (!stats.ok()) return stats.status();
  if (stats->error) return absl::FailedPreconditionError(stats->text());
  sample.stats = Json::parse(stats->text(), nullptr, /*allow_exceptions=*/false);
  if (sample.stats.is_discarded() || !sample.stats.is_object()) {
    return absl::DataLossError("the answer to stats is not a JSON object");
  }
  if (needs_metrics(sample.stats)) {
    absl::StatusOr<Answer> metrics = client.request("metrics", timeout);
    if (!metrics.ok()) return metrics.status();
    if (!metrics->error) sample.metrics = parse_prometheus_text(metrics->text());
  }
  return sample;
}

// "block", or the mode with the share of the interval spent spinning: "spin 97.0%".
std::string idle_cell(const Json& shard) {
  std::string mode = string_or(shard, "idle", "-");
  const Json& share = member(shard, "spin_share");
  if (mode == "block" || !share.is_number()) return mode;
  return absl::StrCat(mode, " ", format_percent(share.get<double>()));
}

}  // namespace

std::vector<MetricSample> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> out;
  for (absl::string_view raw : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    std::string_view line(raw.data(), raw.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    MetricSample m;
    const size_t name_end = line.find_first_of("{ \t");
    if (name_end == std::string_view::npos) continue;
    m.name = std::string(line.substr(0, name_end));
    std::string_view rest = line.substr(name_end);
    if (rest.front() == '{') {
      std::optional<std::string_view> after = parse_labels(rest, &m.labels);
      if (!after) continue;
      rest = *after;
    }
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    const size_t value_end = rest.find_first_of(" \t");
    m.value = parse_value(rest.substr(0, value_end));
    if (std::isnan(m.value) && rest.substr(0, value_end) != "NaN") continue;
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<Buckets> histogram_buckets(const std::vector<MetricSample>& samples,
                                         std::string_view name, std::string_view shard) {
  const std::string bucket_name = absl::StrCat(std::string(name), "_bucket");
  Buckets b;
  for (const MetricSample& m : samples) {
    if (m.name != bucket_name) continue;
    auto s = m.labels.find("shard");
    auto le = m.labels.find("le");
    if (s == m.labels.end() || s->second != shard || le == m.labels.end()) continue;
    b.emplace_back(parse_value(le->second), m.value);
  }
  if (b.empty()) return std::nullopt;
  std::sort(b.begin(), b.end());
  return b;
}

Buckets buckets_minus(const Buckets& later, const Buckets& earlier) {
  Buckets d = later;
  for (auto& [le, count] : d) {
    for (const auto& [ele, ecount] : earlier) {
      if (ele == le) count = count >= ecount ? count - ecount : 0;
    }
  }
  return d;
}

std::optional<double> bucket_quantile(const Buckets& b, double q) {
  if (b.empty()) return std::nullopt;
  const double total = b.back().second;
  if (!(total > 0)) return std::nullopt;
  const double rank = std::clamp(q, 0.0, 1.0) * total;
  double lower_bound = 0, lower_count = 0;
  for (const auto& [le, count] : b) {
    if (count >= rank && count > lower_count) {
      if (std::isinf(le)) return lower_bound;  // beyond the last finite bound: all we know
      return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count);
    }
    lower_bound = le;
    lower_count = count;
  }
  return lower_bound;
}

Json top_frame(const TopSample* previous, const TopSample& current) {
  const double seconds =
      previous ? std::chrono::duration<double>(current.at - previous->at).count() : 0;
  const Json& stats = current.stats;
  Json frame = Json::object();
  frame["version"] = member(stats, "version");
  // `backend` in stats is the configured choice (possibly "auto"); shards name the running one.
  frame["backend"] = member(stats, "backend");
  if (!member(stats, "shards").empty()) {
    const Json& name = member(member(member(stats, "shards").front(), "backend"), "name");
    if (name.is_string()) frame["backend"] = name;
  }
  frame["uptime_seconds"] = member(stats, "uptime_seconds");
  frame["interval_seconds"] = previous ? Json(seconds) : Json(nullptr);
  bool windowed = previous != nullptr;
  Json shards = Json::array();
  for (const Json& s : member(stats, "shards")) {
    Json out = Json::object();
    out["shard"] = member(s, "shard");
    // Utilization over the interval from the busy and poll-wait times; the since-start figure of
    // `stats` for the first screen or when the times are not exposed.
    out["utilization"] = member(s, "utilization");
    if (previous) {
      auto now = busy_and_wait(current, member(s, "shard"));
      auto before = busy_and_wait(*previous, member(s, "shard"));
      if (now && before) {
        const double db = std::max(0.0, now->first - before->first);
        const double dw = std::max(0.0, now->second - before->second);
        out["utilization"] = db + dw > 0 ? Json(db / (db + dw)) : Json(0.0);
      } else {
        windowed = false;
      }
    }
    add_latency(previous, current, s, "slice_seconds", "reactord_slice_duration_seconds", "slice",
                &out, &windowed);
    add_latency(previous, current, s, "sched_latency_seconds",
                "reactord_scheduling_latency_seconds", "sched", &out, &windowed);
    // The idle mode, and the share of the interval spent spinning (counted as idle above).
    out["idle"] = member(s, "idle");
    out["spin_share"] = nullptr;
    const Json* before =
        previous ? find_by(member(previous->stats, "shards"), "shard", member(s, "shard"))
                 : nullptr;
    if (before != nullptr && seconds > 0 && member(s, "spin_seconds").is_number()) {
      out["spin_share"] = std::clamp(
          (number_or(s, "spin_seconds", 0) - number_or(*before, "spin_seconds", 0)) / seconds, 0.0,
          1.0);
    }
    out["fibers"] = member(member(s, "fibers"), "alive");
    out["connections"] = member(s, "connections");
    out["current_slice"] = member(s, "current_slice");
    shards.push_back(std::move(out));
  }
  frame["shards"] = std::move(shards);
  frame["windowed"] = windowed;
  Json services = Json::array();
  for (const Json& svc : member(stats, "services")) {
    Json out = Json::object();
    out["name"] = member(svc, "name");
    out["kind"] = member(svc, "kind");
    out["active"] = member(member(svc, "connections"), "active");
    out["requests"] = member(svc, "requests");
    const Json* before =
        previous ? find_by(member(previous->stats, "services"), "name", member(svc, "name"))
                 : nullptr;
    for (auto [key, name] : {std::pair{"requests", "requests_per_second"},
                             std::pair{"bytes_in", "received_bytes_per_second"},
                             std::pair{"bytes_out", "sent_bytes_per_second"}}) {
      out[name] = before ? rate(number_or(svc, key, 0), number_or(*before, key, 0), seconds)
                         : Json(nullptr);
    }
    services.push_back(std::move(out));
  }
  frame["services"] = std::move(services);
  frame["stalls_total"] = member(stats, "stalls_total");
  frame["stalls_in_interval"] =
      previous && member(stats, "stalls_total").is_number()
          ? Json(std::max(0.0, number_or(stats, "stalls_total", 0) -
                                   number_or(previous->stats, "stalls_total", 0)))
          : Json(nullptr);
  return frame;
}

std::string render_top_frame(const Json& frame) {
  const Json& interval = member(frame, "interval_seconds");
  std::string out = absl::StrCat("reactord ", string_or(frame, "version", "?"), "  backend ",
                                 string_or(frame, "backend", "?"), "  up ",
                                 format_field("uptime_seconds", member(frame, "uptime_seconds")),
                                 "  stalls ", format_field("", member(frame, "stalls_total")));
  if (member(frame, "stalls_in_interval").is_number()) {
    absl::StrAppend(&out, " (+", format_field("", member(frame, "stalls_in_interval")), ")");
  }
  absl::StrAppend(&out, "\n",
                  member(frame, "windowed").is_boolean() && member(frame, "windowed").get<bool>()
                      ? absl::StrCat("over the last ", format_field("seconds", interval))
                      : std::string("since start (no earlier sample or no buckets exposed)"),
                  "\n\n");
  Table shards({">SHARD", "UTILIZATION", ">", ">SLICE p50", ">p99", ">SCHED p50", ">p99", ">FIBERS",
                ">CONNS", "IDLE", "RUNNING"});
  for (const Json& s : member(frame, "shards")) {
    const double util = number_or(s, "utilization", NAN);
    std::string running = "idle";
    const Json& slice = member(s, "current_slice");
    if (member(slice, "running").is_boolean() && member(slice, "running").get<bool>()) {
      running = absl::StrCat(string_or(slice, "fiber", "(loop)"), " for ",
                             format_field("seconds", member(slice, "seconds")));
    }
    shards.add_row({format_field("", member(s, "shard")), bar(util), format_percent(util),
                    format_field("slice_p50_seconds", member(s, "slice_p50_seconds")),
                    format_field("slice_p99_seconds", member(s, "slice_p99_seconds")),
                    format_field("sched_p50_seconds", member(s, "sched_p50_seconds")),
                    format_field("sched_p99_seconds", member(s, "sched_p99_seconds")),
                    format_field("", member(s, "fibers")),
                    format_field("", member(s, "connections")), idle_cell(s), running});
  }
  Table services({"SERVICE", "KIND", ">REQ/S", ">IN/S", ">OUT/S", ">ACTIVE", ">REQUESTS"});
  for (const Json& s : member(frame, "services")) {
    services.add_row({string_or(s, "name", "-"), string_or(s, "kind", "-"),
                      per_second(member(s, "requests_per_second"), false),
                      per_second(member(s, "received_bytes_per_second"), true),
                      per_second(member(s, "sent_bytes_per_second"), true),
                      format_field("", member(s, "active")),
                      format_field("", member(s, "requests"))});
  }
  absl::StrAppend(&out, shards.render(), "\n", services.render());
  return out;
}

int run_top(AdminClient& client, const std::string& socket_path, const TopOptions& options) {
  g_stop = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a signal ends the wait at once
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  int code = kExitOk;
  {
    TerminalGuard terminal;
    std::optional<TopSample> previous;
    int shown = 0;
    auto next = Clock::now();
    while (!g_stop) {
      const bool was_connected = client.connected();
      absl::StatusOr<TopSample> sample = take_sample(client, socket_path, options.timeout);
      if (!sample.ok() && was_connected && !client.connected() &&
          sample.status().code() == absl::StatusCode::kUnavailable) {
        sample = take_sample(client, socket_path, options.timeout);  // the connection dropped
      }
      if (!sample.ok()) {
        if (sample.status().code() == absl::StatusCode::kFailedPrecondition) {
          std::fprintf(stderr, "%s", std::string(sample.status().message()).c_str());
          code = kExitDaemonError;
        } else {
          std::fprintf(stderr, "reactorctl: top: %s: %s\n", socket_path.c_str(),
                       std::string(sample.status().message()).c_str());
          code = kExitUnavailable;
        }
        break;
      }
      // The first sample only sets the baseline: every screen shows one interval's deltas.
      if (previous) {
        const Json frame = top_frame(&*previous, *sample);
        if (options.json) {
          std::printf("%s\n", frame.dump().c_str());
        } else {
          if (terminal.screen()) std::fputs(kClearScreen, stdout);
          std::string text = render_top_frame(frame);
          if (terminal.input()) text += "\nq or Ctrl-C quits\n";
          if (!terminal.screen() && shown > 0) text.insert(0, "\n");
          std::fputs(text.c_str(), stdout);
        }
        std::fflush(stdout);
        ++shown;
        if (options.iterations > 0 && shown >= options.iterations) break;
      }
      previous = *std::move(sample);
      next += options.interval;
      if (next < Clock::now()) next = Clock::now();
      if (!wait_until(next, terminal.input())) break;
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return code;
}

}  // namespace reactord::ctl
