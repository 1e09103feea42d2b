// `reactorctl top`: a live view of a running reactord, refreshed every interval. Each refresh asks
// for `stats` and `metrics` on one admin connection and shows what changed since the last one:
// per-shard utilization (busy / (busy + poll wait), from the counters' deltas), requests and bytes
// per second per service, p50/p99 slice and scheduling latency over the interval (from the
// histogram buckets' deltas; from the since-start p50/p99 fields when no buckets are exposed), the
// slice each shard is running now, and stalls. Also the Prometheus text parser it relies on.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ctl/client.h"
#include "ctl/format.h"

namespace reactord::ctl {

// One sample line of the Prometheus text format: name{labels} value.
struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the sample lines of a text exposition (comments and blank lines skipped; malformed lines
// ignored).
std::vector<MetricSample> parse_prometheus_text(std::string_view text);

// A cumulative histogram: (upper bound in seconds, count of observations <= it), sorted, the last
// bound +Inf.
using Buckets = std::vector<std::pair<double, double>>;

// The buckets of histogram family `name` (without `_bucket`) whose labels include `shard`.
std::optional<Buckets> histogram_buckets(const std::vector<MetricSample>& samples,
                                         std::string_view name, std::string_view shard);
// `later` minus `earlier`, bucket by bucket (counters that went backwards count as 0).
Buckets buckets_minus(const Buckets& later, const Buckets& earlier);
// The q-quantile in seconds, interpolated inside its bucket as Prometheus' histogram_quantile does;
// nullopt when the histogram is empty.
std::optional<double> bucket_quantile(const Buckets& buckets, double q);

// What one refresh fetched.
struct TopSample {
  std::chrono::steady_clock::time_point at;
  Json stats;
  std::vector<MetricSample> metrics;
};

// One screen, computed from two samples (or one, for the first screen: then rates are unknown).
// Also what `reactorctl --json top` prints, one object per line.
Json top_frame(const TopSample* previous, const TopSample& current);
std::string render_top_frame(const Json& frame);

struct TopOptions {
  std::chrono::milliseconds interval{1000};
  int iterations = 0;  // screens to show; 0 = until 'q' or SIGINT
  bool json = false;
  std::chrono::milliseconds timeout{10000};
};

// Runs the view on `client` (reconnecting to `socket_path` if the connection drops). Returns the
// process exit code; errors are printed to stderr.
int run_top(AdminClient& client, const std::string& socket_path, const TopOptions& options);

}  // namespace reactord::ctl
