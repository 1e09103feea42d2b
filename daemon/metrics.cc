#include "daemon/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/registry.h"
#include "daemon/log.h"
#include "daemon/shard.h"
#include "daemon/stall_log.h"
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

json shard_json(const Shard& sh) {
  const reactor::Reactor* r = sh.reactor();
  const reactor::ReactorStats& st = r->stats();
  const uint64_t busy = st.busy_ns.get(), wait = st.poll_wait_ns();
  std::vector<reactor::Counter> counters;
  const_cast<reactor::Reactor*>(r)->backend().counters(counters);
  json backend_counters = json::object();
  for (const reactor::Counter& c : counters) backend_counters[std::string(c.name)] = c.value;
  return {
      {"shard", sh.index()},
      {"loop_iterations", st.loop_iterations.get()},
      {"polls", st.polls()},
      {"poll_wakeups", st.poll_wakeups.get()},
      {"utilization",
       busy + wait == 0 ? 0.0 : static_cast<double>(busy) / static_cast<double>(busy + wait)},
      {"busy_seconds", seconds(busy)},
      {"poll_wait_seconds_total", seconds(wait)},
      {"fibers",
       {{"alive", st.fibers_alive.get()},
        {"created", st.fibers_created.get()},
        {"finished", st.fibers_finished.get()},
        {"runnable", st.fibers_runnable.get()}}},
      {"context_switches", st.context_switches()},
      {"stacks", {{"guarded", st.stacks_guarded.get()}, {"canary", st.stacks_canary.get()}}},
      {"timers",
       {{"armed", st.timers_armed.get()},
        {"fired", st.timers_fired.get()},
        {"cancelled", st.timers_cancelled.get()}}},
      {"slice_seconds", histogram_json(st.slice.snapshot())},
      {"sched_latency_seconds", histogram_json(st.sched_latency.snapshot())},
      {"poll_wait_seconds", histogram_json(st.poll_wait.snapshot())},
      {"slow_slices", st.slow_slices.get()},
      {"io_budget_yields", st.io_budget_yields.get()},
      {"connections", sh.connections()},
      {"emfile_events", sh.stats().emfile_events.get()},
      {"accept_errors", sh.stats().accept_errors.get()},
      {"backend",
       {{"name", std::string(const_cast<reactor::Reactor*>(r)->backend().name())},
        {"counters", backend_counters}}},
      {"current_slice", current_slice_json(*r)},
  };
}

struct ServiceTotals {
  uint64_t accepted = 0, active = 0, closed = 0, rejected = 0, bytes_in = 0, bytes_out = 0,
           requests = 0;
};

ServiceTotals totals(const ServiceRuntime& svc) {
  ServiceTotals t;
  for (const auto& s : svc.stats) {
    t.accepted += s->connections_accepted.get();
    t.active += s->connections_active.get();
    t.closed += s->connections_closed.get();
    t.rejected += s->connections_rejected.get();
    t.bytes_in += s->bytes_in.get();
    t.bytes_out += s->bytes_out.get();
    t.requests += s->requests.get();
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
  p.start_time_seconds = view.start_time_seconds;
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
  void family(const std::string& name, const char* type, const char* help) {
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
  const std::string backend = view.shards->empty() || (*view.shards)[0]->reactor() == nullptr
                                  ? view.backend
                                  : std::string((*view.shards)[0]->reactor()->backend().name());
  return {{"version", view.version},
          {"backend", backend},
          {"backend_requested", view.backend},
          {"uptime_seconds",
           std::chrono::duration<double>(reactor::Clock::now() - view.started).count()},
          {"shards", std::move(shards)},
          {"services", services_json(view)},
          {"offload", {{"queued", off.queued}, {"running", off.running}, {"done", off.done}}},
          {"log", {{"level", std::string(log::level_name())}, {"dropped", log::dropped()}}},
          {"stalls_total", view.stalls ? view.stalls->total() : 0},
          {"process",
           {{"cpu_seconds", p.cpu_seconds},
            {"resident_bytes", p.resident_bytes},
            {"open_fds", p.open_fds},
            {"start_time_seconds", p.start_time_seconds}}}};
}

json shards_json(const DaemonView& view) {
  json out = json::array();
  for (const auto& sh : *view.shards) out.push_back(shard_json(*sh));
  return out;
}

json services_json(const DaemonView& view) {
  json out = json::array();
  for (const auto& svc : *view.services) {
    const ServiceTotals t = totals(*svc);
    out.push_back({{"name", svc->name},
                   {"kind", svc->kind},
                   {"address", svc->bound_address},
                   {"max_connections", svc->max_connections.load()},
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
  json out = json::array();
  const reactor::Deadline now = reactor::Clock::now();
  for (const auto& sh : *view.shards) {
    if (shard && *shard != sh->index()) continue;
    json entry = {{"shard", sh->index()}, {"current_slice", current_slice_json(*sh->reactor())}};
    std::shared_ptr<const FiberSnapshot> snap = sh->fiber_snapshot();
    if (!snap) {
      entry["snapshot_age_seconds"] = nullptr;
      entry["fibers"] = json::array();
    } else {
      entry["snapshot_age_seconds"] = std::chrono::duration<double>(now - snap->taken).count();
      json fibers = json::array();
      for (const auto& f : snap->fibers) {
        fibers.push_back({{"id", f.id},
                          {"name", f.name},
                          {"state", std::string(f.state)},
                          {"waiting_on", std::string(f.waiting_on)},
                          {"age_seconds", f.age_seconds},
                          {"last_slice_seconds", seconds(f.last_slice_ns)},
                          {"slices", f.slices},
                          {"stack_used_bytes", f.stack_used},
                          {"stack_size_bytes", f.stack_size}});
      }
      entry["fibers"] = std::move(fibers);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

json stalls_json(const DaemonView& view) {
  json slow = json::object();
  for (const auto& sh : *view.shards) {
    if (auto snap = sh->fiber_snapshot()) {
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
  json reports = view.stalls ? view.stalls->reports_json() : json::array();
  return {{"stalls_total", view.stalls ? view.stalls->total() : 0},
          {"watchdog", view.stalls != nullptr},
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
  auto per_shard = [&](const std::string& name, const char* type, const char* help, auto value) {
    e.family(name, type, help);
    for (const auto& sh : *view.shards) {
      e.sample(name, absl::StrCat("shard=\"", sh->index(), "\""), static_cast<double>(value(*sh)));
    }
  };
  auto stats = [](const Shard& sh) -> const reactor::ReactorStats& {
    return sh.reactor()->stats();
  };
  per_shard("reactord_loop_iterations_total", "counter", "Reactor loop iterations.",
            [&](const Shard& s) { return stats(s).loop_iterations.get(); });
  per_shard("reactord_polls_total", "counter", "Backend polls.",
            [&](const Shard& s) { return stats(s).polls(); });
  per_shard("reactord_poll_wakeups_total", "counter", "Fibers made runnable by polls.",
            [&](const Shard& s) { return stats(s).poll_wakeups.get(); });
  per_shard("reactord_poll_wait_seconds_total", "counter", "Time spent waiting in poll.",
            [&](const Shard& s) { return seconds(stats(s).poll_wait_ns()); });
  per_shard("reactord_busy_seconds_total", "counter", "Time spent outside poll (running).",
            [&](const Shard& s) { return seconds(stats(s).busy_ns.get()); });
  per_shard("reactord_context_switches_total", "counter", "Fiber resumes.",
            [&](const Shard& s) { return stats(s).context_switches(); });
  per_shard("reactord_fibers_alive", "gauge", "Fibers alive.",
            [&](const Shard& s) { return stats(s).fibers_alive.get(); });
  per_shard("reactord_fibers_created_total", "counter", "Fibers created.",
            [&](const Shard& s) { return stats(s).fibers_created.get(); });
  per_shard("reactord_fibers_finished_total", "counter", "Fibers finished.",
            [&](const Shard& s) { return stats(s).fibers_finished.get(); });
  per_shard("reactord_fibers_runnable", "gauge", "Run-queue depth at the last poll.",
            [&](const Shard& s) { return stats(s).fibers_runnable.get(); });
  per_shard("reactord_timers_armed", "gauge", "Timers armed.",
            [&](const Shard& s) { return stats(s).timers_armed.get(); });
  per_shard("reactord_timers_fired_total", "counter", "Timers fired.",
            [&](const Shard& s) { return stats(s).timers_fired.get(); });
  per_shard("reactord_timers_cancelled_total", "counter", "Timers cancelled.",
            [&](const Shard& s) { return stats(s).timers_cancelled.get(); });
  per_shard("reactord_slow_slices_total", "counter", "Slices longer than watchdog.slow_slice_ms.",
            [&](const Shard& s) { return stats(s).slow_slices.get(); });
  per_shard("reactord_io_budget_yields_total", "counter",
            "Fibers sent to the back of the run queue after 32 I/O calls without suspending.",
            [&](const Shard& s) { return stats(s).io_budget_yields.get(); });
  per_shard("reactord_emfile_events_total", "counter",
            "Accepts that failed for lack of fds or memory.",
            [&](const Shard& s) { return s.stats().emfile_events.get(); });
  per_shard("reactord_accept_errors_total", "counter",
            "Accepts that failed for another reason than lack of fds or memory.",
            [&](const Shard& s) { return s.stats().accept_errors.get(); });
  per_shard("reactord_connections", "gauge", "Open connections on the shard.",
            [&](const Shard& s) { return s.connections(); });
  e.family("reactord_stacks", "gauge", "Fiber stacks in use, by kind (guard page or canary).");
  for (const auto& sh : *view.shards) {
    e.sample("reactord_stacks", absl::StrCat("shard=\"", sh->index(), "\",kind=\"guarded\""),
             static_cast<double>(stats(*sh).stacks_guarded.get()));
    e.sample("reactord_stacks", absl::StrCat("shard=\"", sh->index(), "\",kind=\"canary\""),
             static_cast<double>(stats(*sh).stacks_canary.get()));
  }
  auto histograms = [&](const std::string& name, const char* help, auto pick) {
    e.family(name, "histogram", help);
    for (const auto& sh : *view.shards) {
      e.histogram(name, absl::StrCat("shard=\"", sh->index(), "\""), pick(stats(*sh)).snapshot());
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
  for (const auto& sh : *view.shards) {
    std::vector<reactor::Counter> counters;
    sh->reactor()->backend().counters(counters);
    for (const reactor::Counter& c : counters)
      backend[std::string(c.name)].emplace_back(sh->index(), c.value);
  }
  for (const auto& [name, values] : backend) {
    const std::string family = "reactord_backend_" + name;
    const bool counter = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    e.family(family, counter ? "counter" : "gauge", "Backend counter (see docs/backends.md).");
    for (const auto& [shard, v] : values)
      e.sample(family, absl::StrCat("shard=\"", shard, "\""), static_cast<double>(v));
  }

  auto per_service = [&](const std::string& name, const char* type, const char* help, auto pick) {
    e.family(name, type, help);
    for (const auto& svc : *view.services) {
      for (size_t i = 0; i < svc->stats.size(); ++i) {
        e.sample(name, absl::StrCat("shard=\"", i, "\",service=\"", label_escape(svc->name), "\""),
                 static_cast<double>(pick(*svc->stats[i]).get()));
      }
    }
  };
  per_service("reactord_connections_accepted_total", "counter", "Connections accepted.",
              [](const ServiceStats& s) -> const reactor::RelaxedCounter& {
                return s.connections_accepted;
              });
  per_service(
      "reactord_connections_active", "gauge", "Connections open.",
      [](const ServiceStats& s) -> const reactor::RelaxedCounter& { return s.connections_active; });
  per_service(
      "reactord_connections_closed_total", "counter", "Connections closed.",
      [](const ServiceStats& s) -> const reactor::RelaxedCounter& { return s.connections_closed; });
  per_service("reactord_connections_rejected_total", "counter",
              "Connections refused over max_connections.",
              [](const ServiceStats& s) -> const reactor::RelaxedCounter& {
                return s.connections_rejected;
              });
  per_service("reactord_received_bytes_total", "counter", "Bytes received from clients.",
              [](const ServiceStats& s) -> const reactor::RelaxedCounter& { return s.bytes_in; });
  per_service("reactord_sent_bytes_total", "counter", "Bytes sent to clients.",
              [](const ServiceStats& s) -> const reactor::RelaxedCounter& { return s.bytes_out; });
  per_service("reactord_requests_total", "counter", "HTTP requests, RESP commands, echo reads.",
              [](const ServiceStats& s) -> const reactor::RelaxedCounter& { return s.requests; });

  const reactor::OffloadCounts off = reactor::offload_counts();
  e.family("reactord_offload_jobs", "gauge", "Offload pool jobs queued and running.");
  e.sample("reactord_offload_jobs", "state=\"queued\"", static_cast<double>(off.queued));
  e.sample("reactord_offload_jobs", "state=\"running\"", static_cast<double>(off.running));
  e.family("reactord_offload_jobs_done_total", "counter", "Offload pool jobs finished.");
  e.sample("reactord_offload_jobs_done_total", "", static_cast<double>(off.done));
  e.family("reactord_log_lines_dropped_total", "counter",
           "Log lines dropped because the writer fell behind.");
  e.sample("reactord_log_lines_dropped_total", "", static_cast<double>(log::dropped()));
  e.family("reactord_stalls_total", "counter", "Stalls reported by the watchdog.");
  for (const auto& sh : *view.shards) {
    for (const char* kind : {"cpu", "blocking"}) {
      e.sample("reactord_stalls_total",
               absl::StrCat("shard=\"", sh->index(), "\",kind=\"", kind, "\""),
               static_cast<double>(view.stalls ? view.stalls->count(sh->index(), kind) : 0));
    }
  }
  if (view.stalls != nullptr) {
    e.family("reactord_stall_duration_seconds", "histogram", "How long reported stalls lasted.");
    e.histogram("reactord_stall_duration_seconds", "scope=\"daemon\"", view.stalls->durations());
  }
  e.family("reactord_build_info", "gauge", "Build information.");
  e.sample("reactord_build_info",
           absl::StrCat("version=\"", label_escape(view.version), "\",backend=\"",
                        view.shards->empty()
                            ? view.backend
                            : std::string((*view.shards)[0]->reactor()->backend().name()),
                        "\""),
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
