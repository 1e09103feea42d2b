#include "admin/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "admin/stall_log.h"
#include "backends/registry.h"
#include "reactor/histogram.h"
#include "reactor/offload.h"

namespace reactord {
namespace {

using nlohmann::json;

double seconds(int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}
double seconds(uint64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

json histogram_json(const reactor::Histogram::Snapshot& h) {
  const uint64_t n = h.count();
  int64_t max_bucket = 0;
  for (size_t i = reactor::Histogram::kBuckets; i-- > 0;) {
    if (h.buckets[i] != 0) {
      max_bucket = i == reactor::Histogram::kBuckets - 1 ? reactor::Histogram::upper_bound_ns(i - 1)
                                                         : reactor::Histogram::upper_bound_ns(i);
      break;
    }
  }
  json buckets = json::array();
  for (size_t i = 0; i < reactor::Histogram::kBuckets; ++i) buckets.push_back(h.buckets[i]);
  return {{"count", n},
          {"sum", seconds(h.sum_ns)},
          {"p50", seconds(h.quantile_ns(0.5))},
          {"p99", seconds(h.quantile_ns(0.99))},
          {"max_bucket", seconds(max_bucket)},
          {"buckets", std::move(buckets)}};
}

json current_slice_json(const reactor::Reactor& r) {
  const reactor::Reactor::CurrentSlice c = r.current_slice();
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(reactor::Clock::now().time_since_epoch())
          .count();
  if (!c.in_slice)
    return {{"running", false}, {"fiber", nullptr}, {"seconds", 0}, {"in_poll", c.in_poll}};
  return {{"running", true},
          {"fiber", c.fiber_name},
          {"fiber_id", c.fiber_id},
          {"seconds", seconds(now - c.start_ns)},
          {"in_poll", false}};
}

json shard_json(const DaemonView& view, size_t i) {
  const reactor::Reactor& r = view.shard_reactor(i);
  const reactor::ReactorStats& st = r.stats();
  const ShardCounters sc = view.shard_counters(i);
  const uint64_t busy = st.busy_ns.get(), wait = st.poll_wait_ns();
  std::vector<reactor::Counter> counters;
  r.backend().counters(counters);
  json backend_counters = json::object();
  for (const reactor::Counter& c : counters) backend_counters[std::string(c.name)] = c.value;
  return {
      {"shard", i},
      {"loop_iterations", st.loop_iterations.get()},
      {"polls", st.polls()},
      {"poll_wakeups", st.poll_wakeups.get()},
      {"utilization",
       busy + wait == 0 ? 0.0 : static_cast<double>(busy) / static_cast<double>(busy + wait)},
      {"busy_seconds", seconds(busy)},
      {"poll_wait_seconds_total", seconds(wait)},
      {"idle", std::string(reactor::idle_mode_name(r.idle_mode()))},
      {"spin_seconds", seconds(st.spin_ns.get())},  // part of the poll wait: idle, not busy
      {"spin_polls", st.spin_polls.get()},
      {"fibers",
       {{"alive", st.fibers_alive.get()},
        {"created", st.fibers_created.get()},
        {"finished", st.fibers_finished.get()},
        {"runnable", st.fibers_runnable.get()}}},
      {"context_switches", st.context_switches()},
      {"stacks",
       {{"guarded", st.stacks_guarded.get()},
        {"canary", st.stacks_canary.get()},
        {"released", st.stacks_released.get()},
        {"releases_total", st.stack_releases.get()}}},
      {"timers",
       {{"armed", st.timers_armed.get()},
        {"fired", st.timers_fired.get()},
        {"cancelled", st.timers_cancelled.get()}}},
      {"slice_seconds", histogram_json(st.slice.snapshot())},
      {"sched_latency_seconds", histogram_json(st.sched_latency.snapshot())},
      {"poll_wait_seconds", histogram_json(st.poll_wait.snapshot())},
      {"slow_slices", st.slow_slices.get()},
      {"io_budget_yields", st.io_budget_yields.get()},
      {"connections", sc.connections},
      {"emfile_events", sc.emfile_events},
      {"accept_errors", sc.accept_errors},
      {"backend", {{"name", std::string(r.backend().name())}, {"counters", backend_counters}}},
      {"current_slice", current_slice_json(r)},
  };
}

ServiceCounters totals(const ServiceStatus& svc) {
  ServiceCounters t;
  for (const ServiceCounters& s : svc.by_shard) {
    t.accepted += s.accepted;
    t.active += s.active;
    t.closed += s.closed;
    t.rejected += s.rejected;
    t.bytes_in += s.bytes_in;
    t.bytes_out += s.bytes_out;
    t.requests += s.requests;
  }
  return t;
}

struct ProcessStats {
  double cpu_seconds = 0;
  uint64_t resident_bytes = 0;
  uint64_t open_fds = 0;
  double start_time_seconds = 0;
};

// /proc reads are served from memory: they do not block like file I/O does.
ProcessStats process_stats(const DaemonView& view) {
  ProcessStats p;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (rest >> field) f.push_back(field);
    // Fields after the name start at 3 (state); utime is 14, stime 15, rss 24.
    if (f.size() > 21) {
      p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / tick;
      p.resident_bytes = std::stoull(f[21]) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++p.open_fds;
    }
    closedir(d);
    if (p.open_fds > 0) --p.open_fds;  // the directory stream's own fd
  }
  p.start_time_seconds = view.start_time_seconds();
  return p;
}

std::string label_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Exposition {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  void sample(const std::string& name, const std::string& labels, double value) {
    absl::StrAppend(&out_, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                    absl::StrFormat("%.17g", value), "\n");
  }
  void histogram(const std::string& name, const std::string& labels,
                 const reactor::Histogram::Snapshot& h) {
    // Coarse buckets at each power of ten: exact sums of the fine ones.
    uint64_t cumulative = 0;
    double le = 1e-6;
    for (size_t i = 0; i < reactor::Histogram::kBuckets - 1; ++i) {
      cumulative += h.buckets[i];
      const int64_t upper = reactor::Histogram::upper_bound_ns(i);
      int64_t p = 1000;
      while (p < upper) p *= 10;
      if (p == upper) {
        sample(name + "_bucket", absl::StrCat(labels, ",le=\"", absl::StrFormat("%g", le), "\""),
               static_cast<double>(cumulative));
        le *= 10;
      }
    }
    cumulative += h.buckets[reactor::Histogram::kBuckets - 1];
    sample(name + "_bucket", absl::StrCat(labels, ",le=\"+Inf\""), static_cast<double>(cumulative));
    sample(name + "_sum", labels, seconds(h.sum_ns));
    sample(name + "_count", labels, static_cast<double>(cumulative));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

json stats_json(const DaemonView& view) {
  json shards = shards_json(view);
  const reactor::OffloadCounts off = reactor::offload_counts();
  const ProcessStats p = process_stats(view);
  const StallLog* stalls = view.stalls();
  return {{"version", view.version()},
          {"backend", view.active_backend()},
          {"backend_requested", view.requested_backend()},
          {"uptime_seconds",
           std::chrono::duration<double>(reactor::Clock::now() - view.started()).count()},
          {"shards", std::move(shards)},
          {"services", services_json(view)},
          {"offload", {{"queued", off.queued}, {"running", off.running}, {"done", off.done}}},
          {"log", {{"level", view.log_level()}, {"dropped", view.log_lines_dropped()}}},
          {"stalls_total", stalls ? stalls->total() : 0},
          {"process",
           {{"cpu_seconds", p.cpu_seconds},
            {"resident_bytes", p.resident_bytes},
            {"open_fds", p.open_fds},
            {"start_time_seconds", p.start_time_seconds}}}};
}

json shards_json(const DaemonView& view) {
  json out = json::array();
  for (size_t i = 0; i < view.shard_count(); ++i) out.push_back(shard_json(view, i));
  return out;
}

json services_json(const DaemonView& view) {
  json out = json::array();
  for (const ServiceStatus& svc : view.services()) {
    const ServiceCounters t = totals(svc);
    out.push_back({{"name", svc.name},
                   {"kind", svc.kind},
                   {"address", svc.address},
                   {"max_connections", svc.max_connections},
                   {"connections",
                    {{"accepted", t.accepted},
                     {"active", t.active},
                     {"closed", t.closed},
                     {"rejected", t.rejected}}},
                   {"bytes_in", t.bytes_in},
                   {"bytes_out", t.bytes_out},
                   {"requests", t.requests}});
  }
  return out;
}

json fibers_json(const DaemonView& view, std::optional<size_t> shard) {
  std::vector<ShardSnapshot> snaps;
  for (size_t i = 0; i < view.shard_count(); ++i) {
    if (!shard || *shard == i) snaps.push_back({i, view.fiber_snapshot(i), ""});
  }
  return fibers_json(view, snaps, nullptr);
}

json fibers_json(const DaemonView& view, const std::vector<ShardSnapshot>& snaps,
                 reactor::FrameSymbolizer* symbolizer) {
  json out = json::array();
  const reactor::Deadline now = reactor::Clock::now();
  for (const ShardSnapshot& s : snaps) {
    const reactor::Reactor::CurrentSlice running = view.shard_reactor(s.shard).current_slice();
    json entry = {{"shard", s.shard},
                  {"current_slice", current_slice_json(view.shard_reactor(s.shard))}};
    if (!s.error.empty()) entry["stacks_error"] = s.error;
    const FiberSnapshot* snap = s.snapshot.get();
    if (snap == nullptr) {
      entry["snapshot_age_seconds"] = nullptr;
      entry["fibers"] = json::array();
      out.push_back(std::move(entry));
      continue;
    }
    const bool stacks = snap->stacks && symbolizer != nullptr;
    entry["snapshot_age_seconds"] = std::chrono::duration<double>(now - snap->taken).count();
    json fibers = json::array();
    for (const auto& f : snap->fibers) {
      json fj = {{"id", f.id},
                 {"name", f.name},
                 {"state", std::string(f.state)},
                 {"waiting_on", std::string(f.waiting_on)},
                 {"age_seconds", f.age_seconds},
                 {"last_slice_seconds", seconds(f.last_slice_ns)},
                 {"slices", f.slices},
                 {"stack_used_bytes", f.stack_used},
                 {"stack_size_bytes", f.stack_size},
                 {"stack_released", f.stack_released}};
      if (symbolizer != nullptr) {
        fj["running"] = running.in_slice && running.fiber_id == f.id;
        if (stacks) {
          std::vector<std::string> names = symbolizer->names(f.frames);
          size_t omitted = f.frames_omitted;
          if (names.size() > s.max_frames) {
            omitted += names.size() - s.max_frames;
            names.resize(s.max_frames);
          }
          fj["stack"] = std::move(names);
          fj["frames_omitted"] = omitted;
        }
      }
      fibers.push_back(std::move(fj));
    }
    entry["fibers"] = std::move(fibers);
    if (symbolizer != nullptr) {
      entry["stacks"] = stacks;
      entry["fibers_alive"] = std::max(snap->fibers_alive, snap->fibers.size());
      entry["fibers_omitted"] =
          std::max(snap->fibers_alive, snap->fibers.size()) - snap->fibers.size();
    }
    out.push_back(std::move(entry));
  }
  return out;
}

json stalls_json(const DaemonView& view) {
  json slow = json::object();
  for (size_t i = 0; i < view.shard_count(); ++i) {
    if (auto snap = view.fiber_snapshot(i)) {
      for (const auto& [name, n] : snap->slow_slices_by_name) {
        slow[name] = slow.value(name, uint64_t{0}) + n;
      }
    }
  }
  std::vector<std::pair<std::string, uint64_t>> top;
  for (auto it = slow.begin(); it != slow.end(); ++it)
    top.emplace_back(it.key(), it.value().get<uint64_t>());
  std::sort(top.begin(), top.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  json top_json = json::array();
  for (size_t i = 0; i < top.size() && i < 10; ++i) {
    top_json.push_back({{"fiber", top[i].first}, {"slow_slices", top[i].second}});
  }
  const StallLog* stalls = view.stalls();
  json reports = stalls ? stalls->reports_json() : json::array();
  return {{"stalls_total", stalls ? stalls->total() : 0},
          {"watchdog", stalls != nullptr},
          {"reports", std::move(reports)},
          {"top_slow_fibers", std::move(top_json)}};
}

json backends_json() {
  json out = json::array();
  for (const reactor::BackendInfo& b : reactor::list_backends()) {
    out.push_back({{"name", b.name}, {"available", b.available}, {"reason", b.reason}});
  }
  return out;
}

std::string prometheus_text(const DaemonView& view) {
  Exposition e;
  auto per_shard = [&](const std::string& name, const char* type, const std::string& help,
                       auto value) {
    e.family(name, type, help);
    for (size_t i = 0; i < view.shard_count(); ++i) {
      e.sample(name, absl::StrCat("shard=\"", i, "\""), static_cast<double>(value(i)));
    }
  };
  auto stats = [&](size_t i) -> const reactor::ReactorStats& {
    return view.shard_reactor(i).stats();
  };
  per_shard("reactord_loop_iterations_total", "counter", "Reactor loop iterations.",
            [&](size_t s) { return stats(s).loop_iterations.get(); });
  per_shard("reactord_polls_total", "counter", "Backend polls.",
            [&](size_t s) { return stats(s).polls(); });
  per_shard("reactord_poll_wakeups_total", "counter", "Fibers made runnable by polls.",
            [&](size_t s) { return stats(s).poll_wakeups.get(); });
  per_shard("reactord_poll_wait_seconds_total", "counter", "Time spent waiting in poll.",
            [&](size_t s) { return seconds(stats(s).poll_wait_ns()); });
  per_shard("reactord_busy_seconds_total", "counter", "Time spent outside poll (running).",
            [&](size_t s) { return seconds(stats(s).busy_ns.get()); });
  per_shard("reactord_shard_spin_seconds_total", "counter",
            "Part of the poll wait spent spinning instead of blocking (runtime.idle).",
            [&](size_t s) { return seconds(stats(s).spin_ns.get()); });
  per_shard("reactord_shard_spin_polls_total", "counter", "Zero-timeout polls made while spinning.",
            [&](size_t s) { return stats(s).spin_polls.get(); });
  e.family("reactord_shard_idle_mode", "gauge", "1 for the shard's runtime.idle mode.");
  for (size_t i = 0; i < view.shard_count(); ++i) {
    const std::string_view mode = reactor::idle_mode_name(view.shard_reactor(i).idle_mode());
    e.sample("reactord_shard_idle_mode",
             absl::StrCat("shard=\"", i, "\",mode=\"", std::string(mode), "\""), 1);
  }
  per_shard("reactord_context_switches_total", "counter", "Fiber resumes.",
            [&](size_t s) { return stats(s).context_switches(); });
  per_shard("reactord_fibers_alive", "gauge", "Fibers alive.",
            [&](size_t s) { return stats(s).fibers_alive.get(); });
  per_shard("reactord_fibers_created_total", "counter", "Fibers created.",
            [&](size_t s) { return stats(s).fibers_created.get(); });
  per_shard("reactord_fibers_finished_total", "counter", "Fibers finished.",
            [&](size_t s) { return stats(s).fibers_finished.get(); });
  per_shard("reactord_fibers_runnable", "gauge", "Run-queue depth at the last poll.",
            [&](size_t s) { return stats(s).fibers_runnable.get(); });
  per_shard("reactord_timers_armed", "gauge", "Timers armed.",
            [&](size_t s) { return stats(s).timers_armed.get(); });
  per_shard("reactord_timers_fired_total", "counter", "Timers fired.",
            [&](size_t s) { return stats(s).timers_fired.get(); });
  per_shard("reactord_timers_cancelled_total", "counter", "Timers cancelled.",
            [&](size_t s) { return stats(s).timers_cancelled.get(); });
  per_shard("reactord_slow_slices_total", "counter", "Slices longer than watchdog.slow_slice_ms.",
            [&](size_t s) { return stats(s).slow_slices.get(); });
  per_shard("reactord_io_budget_yields_total", "counter",
            absl::StrCat("Fibers sent to the back of the run queue after ",
                         reactor::Reactor::kIoBudget, " I/O calls without suspending."),
            [&](size_t s) { return stats(s).io_budget_yields.get(); });
  per_shard("reactord_emfile_events_total", "counter",
            "Accepts that failed for lack of fds or memory.",
            [&](size_t s) { return view.shard_counters(s).emfile_events; });
  per_shard("reactord_accept_errors_total", "counter",
            "Accepts that failed for another reason than lack of fds or memory.",
            [&](size_t s) { return view.shard_counters(s).accept_errors; });
  per_shard("reactord_connections", "gauge", "Open connections on the shard.",
            [&](size_t s) { return view.shard_counters(s).connections; });
  e.family("reactord_stacks", "gauge", "Fiber stacks in use, by kind (guard page or canary).");
  for (size_t i = 0; i < view.shard_count(); ++i) {
    e.sample("reactord_stacks", absl::StrCat("shard=\"", i, "\",kind=\"guarded\""),
             static_cast<double>(stats(i).stacks_guarded.get()));
    e.sample("reactord_stacks", absl::StrCat("shard=\"", i, "\",kind=\"canary\""),
             static_cast<double>(stats(i).stacks_canary.get()));
  }
  per_shard("reactord_stacks_released", "gauge",
            "Stacks of idle fibers whose pages are given back (runtime.release_idle_stacks_ms).",
            [&](size_t s) { return stats(s).stacks_released.get(); });
  per_shard("reactord_stack_releases_total", "counter",
            "Times an idle fiber's stack pages were given back.",
            [&](size_t s) { return stats(s).stack_releases.get(); });
  auto histograms = [&](const std::string& name, const char* help, auto pick) {
    e.family(name, "histogram", help);
    for (size_t i = 0; i < view.shard_count(); ++i) {
      e.histogram(name, absl::StrCat("shard=\"", i, "\""), pick(stats(i)).snapshot());
    }
  };
  histograms("reactord_slice_duration_seconds",
             "Time from a fiber's resume to its next suspension.",
             [](const reactor::ReactorStats& s) -> const reactor::Histogram& { return s.slice; });
  histograms(
      "reactord_scheduling_latency_seconds", "Time from runnable to running.",
      [](const reactor::ReactorStats& s) -> const reactor::Histogram& { return s.sched_latency; });
  histograms(
      "reactord_poll_wait_seconds", "Time each poll waited.",
      [](const reactor::ReactorStats& s) -> const reactor::Histogram& { return s.poll_wait; });

  // Backend counters: each backend names its own; one family per name.
  std::map<std::string, std::vector<std::pair<size_t, uint64_t>>> backend;
  for (size_t i = 0; i < view.shard_count(); ++i) {
    std::vector<reactor::Counter> counters;
    view.shard_reactor(i).backend().counters(counters);
    for (const reactor::Counter& c : counters)
      backend[std::string(c.name)].emplace_back(i, c.value);
  }
  for (const auto& [name, values] : backend) {
    const std::string family = "reactord_backend_" + name;
    const bool counter = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    e.family(family, counter ? "counter" : "gauge", "Backend counter (see docs/backends.md).");
    for (const auto& [shard, v] : values)
      e.sample(family, absl::StrCat("shard=\"", shard, "\""), static_cast<double>(v));
  }

  const std::vector<ServiceStatus> services = view.services();
  auto per_service = [&](const std::string& name, const char* type, const char* help, auto pick) {
    e.family(name, type, help);
    for (const ServiceStatus& svc : services) {
      for (size_t i = 0; i < svc.by_shard.size(); ++i) {
        e.sample(name, absl::StrCat("shard=\"", i, "\",service=\"", label_escape(svc.name), "\""),
                 static_cast<double>(pick(svc.by_shard[i])));
      }
    }
  };
  per_service("reactord_connections_accepted_total", "counter", "Connections accepted.",
              [](const ServiceCounters& s) { return s.accepted; });
  per_service("reactord_connections_active", "gauge", "Connections open.",
              [](const ServiceCounters& s) { return s.active; });
  per_service("reactord_connections_closed_total", "counter", "Connections closed.",
              [](const ServiceCounters& s) { return s.closed; });
  per_service("reactord_connections_rejected_total", "counter",
              "Connections refused over max_connections.",
              [](const ServiceCounters& s) { return s.rejected; });
  per_service("reactord_received_bytes_total", "counter", "Bytes received from clients.",
              [](const ServiceCounters& s) { return s.bytes_in; });
  per_service("reactord_sent_bytes_total", "counter", "Bytes sent to clients.",
              [](const ServiceCounters& s) { return s.bytes_out; });
  per_service("reactord_requests_total", "counter", "HTTP requests, RESP commands, echo reads.",
              [](const ServiceCounters& s) { return s.requests; });

  const reactor::OffloadCounts off = reactor::offload_counts();
  e.family("reactord_offload_jobs", "gauge", "Offload pool jobs queued and running.");
  e.sample("reactord_offload_jobs", "state=\"queued\"", static_cast<double>(off.queued));
  e.sample("reactord_offload_jobs", "state=\"running\"", static_cast<double>(off.running));
  e.family("reactord_offload_jobs_done_total", "counter", "Offload pool jobs finished.");
  e.sample("reactord_offload_jobs_done_total", "", static_cast<double>(off.done));
  e.family("reactord_log_lines_dropped_total", "counter",
           "Log lines dropped because the writer fell behind.");
  e.sample("reactord_log_lines_dropped_total", "", static_cast<double>(view.log_lines_dropped()));
  e.family("reactord_stalls_total", "counter", "Stalls reported by the watchdog.");
  const StallLog* stalls = view.stalls();
  for (size_t i = 0; i < view.shard_count(); ++i) {
    for (const char* kind : {"cpu", "blocking"}) {
      e.sample("reactord_stalls_total", absl::StrCat("shard=\"", i, "\",kind=\"", kind, "\""),
               static_cast<double>(stalls ? stalls->count(i, kind) : 0));
    }
  }
  if (stalls != nullptr) {
    e.family("reactord_stall_duration_seconds", "histogram", "How long reported stalls lasted.");
    e.histogram("reactord_stall_duration_seconds", "scope=\"daemon\"", stalls->durations());
  }
  e.family("reactord_build_info", "gauge", "Build information.");
  e.sample("reactord_build_info",
           absl::StrCat("version=\"", label_escape(view.version()), "\",backend=\"",
                        view.active_backend(), "\""),
           1);
  const ProcessStats p = process_stats(view);
  e.family("process_cpu_seconds_total", "counter", "User and system CPU time.");
  e.sample("process_cpu_seconds_total", "", p.cpu_seconds);
  e.family("process_resident_memory_bytes", "gauge", "Resident memory.");
  e.sample("process_resident_memory_bytes", "", static_cast<double>(p.resident_bytes));
  e.family("process_open_fds", "gauge", "Open file descriptors.");
  e.sample("process_open_fds", "", static_cast<double>(p.open_fds));
  e.family("process_start_time_seconds", "gauge", "Start time since the epoch.");
  e.sample("process_start_time_seconds", "", p.start_time_seconds);
  return e.take();
}

}  // namespace reactord
