// reactorctl without a daemon: its pieces (human units, table alignment, the views' tolerance of
// missing fields, the Prometheus text parser, bucket quantiles, top's interval arithmetic), then
// the binary itself (usage and exit codes, the hint when it cannot connect, a server that never
// completes an answer). reactorctl against a running daemon is tested in tests/admin_test.cc.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "ctl/format.h"
#include "ctl/top.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process_util.h"

namespace reactord::ctl {
namespace {

using namespace std::chrono_literals;
using reactor::test::describe;
using reactor::test::Ran;
using reactor::test::run_reactorctl;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

TEST(Format, Durations) {
  EXPECT_EQ(format_duration(0), "0 s");
  EXPECT_EQ(format_duration(850e-9), "850 ns");
  EXPECT_EQ(format_duration(12.34e-6), "12.3 us");
  EXPECT_EQ(format_duration(4.5e-3), "4.5 ms");
  EXPECT_EQ(format_duration(0.9999), "1.00 s");  // never "1000 ms"
  EXPECT_EQ(format_duration(999.7e-6), "1.0 ms");
  EXPECT_EQ(format_duration(2.345), "2.35 s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(5 * 3600 + 120), "5h02m");
  EXPECT_EQ(format_duration(2 * 86400 + 3 * 3600), "2d03h");
  EXPECT_EQ(format_duration(std::nan("")), "-");
}

TEST(Format, Bytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(10 * 1024 * 1024 + 300 * 1024), "10.3 MiB");
  EXPECT_EQ(format_bytes(1023.9 * 1024), "1.0 MiB");
  EXPECT_EQ(format_bytes(3.0 * 1024 * 1024 * 1024), "3.0 GiB");
}

TEST(Format, FieldsByUnitSuffix) {
  EXPECT_EQ(format_field("age_seconds", Json(0.0042)), "4.2 ms");
  EXPECT_EQ(format_field("stack_used_bytes", Json(2048)), "2.0 KiB");
  EXPECT_EQ(format_field("slices", Json(12)), "12");
  EXPECT_EQ(format_field("ratio", Json(0.125)), "0.125");
  EXPECT_EQ(format_field("available", Json(true)), "yes");
  EXPECT_EQ(format_field("x", Json(nullptr)), "-");
}

TEST(Format, TableAligns) {
  Table t({"NAME", ">COUNT"});
  t.add_row({"a", "1"});
  t.add_row({"longer", "12345"});
  EXPECT_EQ(t.render(),
            "NAME    COUNT\n"
            "a           1\n"
            "longer  12345\n");
}

TEST(Format, ViewsTolerateMissingFields) {
  EXPECT_THAT(render_stats(Json::object()), HasSubstr("reactord ?"));
  EXPECT_THAT(render_shards(Json::array({Json::object()})), HasSubstr("SHARD"));
  EXPECT_THAT(render_services(Json::array({{{"name", "web"}}})), HasSubstr("web"));
  EXPECT_THAT(render_fibers(Json::array({{{"shard", 0}, {"fibers", Json::array({{}})}}})),
              HasSubstr("shard 0"));
  EXPECT_THAT(render_stalls(Json::object()), HasSubstr("no stall reports"));
  EXPECT_THAT(render_generic(Json::array({{{"a", 1}, {"b", {{"c", 0.5}}}}})), HasSubstr("B.C"));
}

TEST(Format, StallsShowReportsAndFrames) {
  const Json stalls = {
      {"stalls_total", 1},
      {"watchdog", true},
      {"reports", Json::array({{{"shard", 0},
                                {"fiber", "http#3"},
                                {"wall_seconds", 0.25},
                                {"frames", Json::array({"usleep", "handler"})}}})},
      {"top_slow_fibers", Json::array({{{"fiber", "http#3"}, {"slow_slices", 4}}})}};
  const std::string text = render_stalls(stalls);
  EXPECT_THAT(text, HasSubstr("stalls: 1 in all (watchdog on)"));
  EXPECT_THAT(text, HasSubstr("250 ms"));
  EXPECT_THAT(text, HasSubstr("  usleep\n"));
  EXPECT_THAT(text, HasSubstr("http#3"));
}

TEST(Prometheus, ParsesSamplesLabelsAndEscapes) {
  const auto samples = parse_prometheus_text(
      "# HELP x y\n# TYPE x counter\nx_total 3\n"
      "h_bucket{shard=\"0\",le=\"1e-06\"} 1\n"
      "h_bucket{shard=\"0\",le=\"+Inf\"} 4 1700000000\n"
      "info{version=\"a\\\"b\\\\c\"} 1\n"
      "broken{shard=\"0\" 1\n"
      "\n");
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples[0].name, "x_total");
  EXPECT_EQ(samples[0].value, 3);
  EXPECT_EQ(samples[1].labels.at("le"), "1e-06");
  EXPECT_EQ(samples[2].value, 4);
  EXPECT_EQ(samples[3].labels.at("version"), "a\"b\\c");
}

TEST(Prometheus, BucketQuantiles) {
  const double inf = std::numeric_limits<double>::infinity();
  // 10 observations in (0, 1], 10 in (1, 2], none beyond.
  const Buckets b = {{1, 10}, {2, 20}, {inf, 20}};
  EXPECT_DOUBLE_EQ(*bucket_quantile(b, 0.5), 1.0);
  EXPECT_DOUBLE_EQ(*bucket_quantile(b, 0.25), 0.5);
  EXPECT_DOUBLE_EQ(*bucket_quantile(b, 0.75), 1.5);
  EXPECT_FALSE(bucket_quantile({{1, 0}, {inf, 0}}, 0.5).has_value());
  // Beyond the last finite bound: that bound is all that is known.
  EXPECT_DOUBLE_EQ(*bucket_quantile({{1, 0}, {inf, 5}}, 0.99), 1.0);
  const Buckets earlier = {{1, 4}, {2, 4}, {inf, 4}};
  EXPECT_EQ(buckets_minus(b, earlier), (Buckets{{1, 6}, {2, 16}, {inf, 16}}));

  const auto samples = parse_prometheus_text(
      "h_bucket{shard=\"1\",le=\"+Inf\"} 9\nh_bucket{shard=\"1\",le=\"0.001\"} 3\n"
      "h_bucket{shard=\"0\",le=\"+Inf\"} 1\n");
  auto h = histogram_buckets(samples, "h", "1");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(*h, (Buckets{{0.001, 3}, {inf, 9}}));
  EXPECT_FALSE(histogram_buckets(samples, "h", "2").has_value());
}

Json shard(double busy, double wait, Json buckets) {
  return {{"shard", 0},
          {"utilization", 0.5},
          {"busy_seconds", busy},
          {"poll_wait_seconds_total", wait},
          {"slice_seconds", {{"p50", 1e-6}, {"p99", 2e-6}, {"buckets", buckets}}},
          {"sched_latency_seconds", {{"p50", 1e-6}, {"p99", 2e-6}, {"buckets", buckets}}},
          {"backend", {{"name", "epoll"}}}};
}

TEST(Top, FrameFromTwoSamples) {
  Json empty = Json::array();
  for (int i = 0; i < 74; ++i) empty.push_back(0);
  Json later = empty;
  later[5] = 10;  // bucket 5: 5-6 us
  TopSample a, b;
  a.at = std::chrono::steady_clock::time_point(std::chrono::seconds(10));
  b.at = a.at + std::chrono::seconds(2);
  a.stats = {{"backend", "auto"},
             {"shards", Json::array({shard(1.0, 9.0, empty)})},
             {"services", Json::array({{{"name", "echo"}, {"requests", 100}, {"bytes_in", 0}}})},
             {"stalls_total", 1}};
  b.stats = {{"backend", "auto"},
             {"shards", Json::array({shard(1.5, 10.0, later)})},
             {"services", Json::array({{{"name", "echo"}, {"requests", 300}, {"bytes_in", 4096}}})},
             {"stalls_total", 3}};
  const Json f = top_frame(&a, b);
  EXPECT_EQ(f["backend"], "epoll");
  EXPECT_EQ(f["windowed"], true);
  EXPECT_DOUBLE_EQ(f["interval_seconds"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(f["shards"][0]["utilization"].get<double>(), 0.5 / 1.5);
  EXPECT_NEAR(f["shards"][0]["slice_p50_seconds"].get<double>(), 5.5e-6, 1e-9);
  EXPECT_DOUBLE_EQ(f["services"][0]["requests_per_second"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(f["services"][0]["received_bytes_per_second"].get<double>(), 2048.0);
  EXPECT_EQ(f["stalls_in_interval"], 2.0);
  EXPECT_THAT(render_top_frame(f), HasSubstr("33.3%"));

  // Without buckets or busy time, top falls back to the since-start figures.
  TopSample c = b;
  c.stats["shards"][0].erase("busy_seconds");
  c.stats["shards"][0]["slice_seconds"].erase("buckets");
  const Json g = top_frame(&a, c);
  EXPECT_EQ(g["windowed"], false);
  EXPECT_EQ(g["shards"][0]["utilization"], 0.5);
  EXPECT_EQ(g["shards"][0]["slice_p99_seconds"], 2e-6);
}

// A spinning shard: top shows its mode and the share of the interval it spun, and counts the
// spin as idle (utilization comes from busy and poll-wait time alone).
TEST(Top, ShowsIdleModeAndSpinShare) {
  TopSample a, b;
  a.at = std::chrono::steady_clock::time_point(std::chrono::seconds(10));
  b.at = a.at + std::chrono::seconds(2);
  Json sa = shard(0.1, 1.0, Json::array()), sb = shard(0.2, 2.9, Json::array());
  sa["idle"] = sb["idle"] = "spin";
  sa["spin_seconds"] = 1.0;
  sb["spin_seconds"] = 2.8;
  a.stats = {{"shards", Json::array({sa})}};
  b.stats = {{"shards", Json::array({sb})}};
  const Json f = top_frame(&a, b);
  EXPECT_EQ(f["shards"][0]["idle"], "spin");
  EXPECT_DOUBLE_EQ(f["shards"][0]["spin_share"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(f["shards"][0]["utilization"].get<double>(), 0.1 / 2.0);
  EXPECT_THAT(render_top_frame(f), HasSubstr("spin 90.0%"));

  sb["idle"] = "block";
  b.stats = {{"shards", Json::array({sb})}};
  EXPECT_THAT(render_top_frame(top_frame(&a, b)), HasSubstr("block"));
}

// ---- the reactorctl binary without a daemon: exit codes, hints, timeouts ----

TEST(Reactorctl, UsageIs64) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"stats", "extra"},
           {"set", "log.level"},
           {"fibers", "x"},
           {"fibers", "0", "1"},
           {"--no-such-option", "stats"},
           {"--socket"},
           {"--once", "stats"},
           {"top", "--iterations", "0"},
       }) {
    Ran r = run_reactorctl(args);
    EXPECT_EQ(r.code, 64) << absl::StrJoin(args, " ") << "\n" << describe(r);
    EXPECT_THAT(r.err, HasSubstr("usage")) << absl::StrJoin(args, " ");
  }
  Ran r = run_reactorctl({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("top"));
}

TEST(Reactorctl, CannotConnectIs69WithPathErrnoAndHint) {
  const std::string missing = "/nonexistent-reactord-dir/admin.sock";
  Ran r = run_reactorctl({"--socket", missing, "stats"});
  EXPECT_EQ(r.code, 69) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(missing));
  EXPECT_THAT(r.err, HasSubstr(std::strerror(ENOENT)));
  EXPECT_THAT(r.err, HasSubstr("/run/reactord/admin.sock"));  // the default, in the hint
  EXPECT_THAT(r.err, HasSubstr("running"));
  EXPECT_THAT(r.err, HasSubstr("permission"));
  // $REACTORD_ADMIN_SOCKET is honoured, and --socket wins over it.
  r = run_reactorctl({"ping"}, {{"REACTORD_ADMIN_SOCKET", "/nonexistent-env/admin.sock"}});
  EXPECT_EQ(r.code, 69);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent-env/admin.sock"));
  r = run_reactorctl({"--socket", missing, "ping"},
                     {{"REACTORD_ADMIN_SOCKET", "/nonexistent-env/x.sock"}});
  EXPECT_THAT(r.err, HasSubstr(missing));
  // Without either: the default path.
  r = run_reactorctl({"ping"});
  if (r.code == 69) {
    EXPECT_THAT(r.err, HasSubstr("/run/reactord/admin.sock"));
  }
}

// A server that accepts and then answers only part of an answer (or nothing): reactorctl gives up
// after --timeout with 69 instead of hanging.
TEST(Reactorctl, IncompleteAnswerIsAnErrorNotAHang) {
  char tmpl[] = "/tmp/reactorctl-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/fake.sock";
  const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(l, 8), 0);
  std::atomic<bool> done{false};
  std::thread server([&] {
    std::vector<int> held;
    int n = 0;
    while (!done) {
      pollfd p{l, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (n++ == 1) {
        char cmd[64];
        (void)!::read(c, cmd, sizeof cmd);  // the command, then half an answer and a close
        const std::string half = "{\"partial\": ";
        (void)!::send(c, half.data(), half.size(), MSG_NOSIGNAL);
        ::close(c);
      } else {
        held.push_back(c);  // silent: hold the connection open
      }
    }
    for (int c : held) ::close(c);
  });
  const auto start = Clock::now();
  Ran r = run_reactorctl({"--socket", path, "--timeout", "1", "stats"});
  EXPECT_EQ(r.code, 69) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("no complete answer"));
  EXPECT_LT(Clock::now() - start, 30s);  // bounded, not a speed check
  r = run_reactorctl({"--socket", path, "--timeout", "5", "stats"});
  EXPECT_EQ(r.code, 69) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("connection closed before a complete answer"));
  done = true;
  server.join();
  ::close(l);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace reactord::ctl
