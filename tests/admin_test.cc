// The admin server and reactorctl against the real reactord: every command through reactorctl,
// top; the socket path; the SO_PEERCRED access rules (tested by a child dropped to uid/gid 65534
// on a socket that file permissions let anyone open, so any refusal comes from the daemon);
// `promtool check metrics` on the metrics text; counters after known traffic; garbage and
// oversized lines; max_clients and idle_timeout_ms; and answers while a shard is blocked.
// reactorctl without a daemon is tested in tests/reactorctl_test.cc, the protocol's framing and
// its raw commands in tests/admin_protocol_test.cc.
//
// Everything runs on loopback with ports the OS picks, uses wide time margins and asserts no
// speed. Tests marked "needs the http service" fail (they do not skip) when the daemon refuses
// http with "not available in this build".
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"
#include "tests/process_util.h"

namespace reactord {
namespace {

namespace test = reactor::test;

using namespace std::chrono_literals;
using Json = nlohmann::json;
using test::AdminClient;
using test::BlockingClient;
using test::DaemonProcess;
using test::describe;
using test::echo_through;
using test::kEchoService;
using test::Ran;
using test::reactorctl_binary;
using test::run_process;
using test::run_reactorctl;
using test::start_daemon;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;

constexpr uid_t kNobody = 65534;
constexpr size_t kMaxLine = 4096;

// Needs the http service (services/http.*, wired by another change): with debug_routes,
// /debug/block?ms=N blocks its shard's loop on purpose.
const char kHttpService[] =
    "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n"
    "debug_routes = true\n";

// A config with the admin socket in `dir`; `admin` adds keys to [admin].
std::string config_for(const std::string& dir, const std::string& admin = "",
                       const std::string& services = kEchoService, int shards = 2,
                       const std::string& level = "info") {
  return test::daemon_config(dir, admin, services, shards, level);
}

// Starts `d` with the http service of kHttpService (and the admin socket); the failure says that
// the test needs it.
::testing::AssertionResult start_with_http(DaemonProcess& d) {
  ::testing::AssertionResult started = start_daemon(d, config_for(d.dir(), "", kHttpService));
  if (!started) started << "\nthis test needs the http service";
  return started;
}

// ---- child processes ----

// Drops every group and becomes uid/gid 65534 (nobody/nogroup). In a forked child only.
void become_nobody() {
  if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) {
    ::_exit(125);
  }
}

Ran ctl_at(const DaemonProcess& d, std::vector<std::string> args) {
  args.insert(args.begin(), {"--socket", d.admin_socket()});
  return run_reactorctl(std::move(args));
}

Json parse_json(const std::string& text) {
  return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// `reactorctl --json ARGS` exits 0 with JSON of `type`: a success with the answer in *out, or a
// failure that shows the run.
::testing::AssertionResult ctl_json(const DaemonProcess& d, std::vector<std::string> args,
                                    Json::value_t type, Json* out) {
  args.insert(args.begin(), "--json");
  Ran r = ctl_at(d, args);
  if (r.code != 0) return ::testing::AssertionFailure() << describe(r);
  *out = parse_json(r.out);
  if (out->type() != type) {
    return ::testing::AssertionFailure()
           << "not a JSON " << Json(type).type_name() << ": " << r.out;
  }
  return ::testing::AssertionSuccess();
}

// `reactorctl ARGS` exits 0 and prints every one of `parts`.
::testing::AssertionResult ctl_prints(const DaemonProcess& d, std::vector<std::string> args,
                                      const std::vector<std::string>& parts) {
  Ran r = ctl_at(d, std::move(args));
  if (r.code != 0) return ::testing::AssertionFailure() << describe(r);
  for (const std::string& p : parts) {
    if (!absl::StrContains(r.out, p)) {
      return ::testing::AssertionFailure() << "no '" << p << "' in:\n" << r.out;
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs `fn` in a forked child as uid/gid 65534 and returns what it wrote to `out`.
std::string as_nobody(const std::function<std::string()>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(60);
    become_nobody();
    const std::string s = fn();
    (void)!::write(p[1], s.data(), s.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out = test::read_all(p[0]);
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  return out;
}

// `stats` as JSON through a raw connection.
Json raw_stats(const std::string& socket) {
  AdminClient a(socket);
  if (!a.ok()) return nullptr;
  return parse_json(a.ask_text("stats"));
}

const Json* service_in(const Json& stats, const std::string& name) {
  if (!stats.contains("services")) return nullptr;
  for (const Json& s : stats["services"]) {
    if (s.value("name", "") == name) return &s;
  }
  return nullptr;
}

// Polls `stats` until `pred` holds (bounded); returns the last stats seen.
Json poll_stats(const std::string& socket, const std::function<bool(const Json&)>& pred,
                std::chrono::milliseconds timeout = 15s) {
  const auto deadline = Clock::now() + timeout;
  Json last;
  while (Clock::now() < deadline) {
    last = raw_stats(socket);
    if (last.is_object() && pred(last)) return last;
    std::this_thread::sleep_for(50ms);
  }
  return last;
}

// ---- TCP clients ----

// One HTTP/1.1 request with Connection: close; the whole response.
std::string http_get(const std::string& addr, const std::string& target) {
  BlockingClient c(addr, 30s);
  if (!c.connected()) return "";
  (void)c.send_all(
      absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
  return c.recv_all();
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + seed * 7 + i / 251) & 0xff);
  return s;
}

std::optional<std::string> find_promtool() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string p = absl::StrCat(dir, "/promtool");
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

// `promtool check metrics` on `text` (fed on stdin).
Ran promtool_check(const std::string& dir, const std::string& text) {
  std::optional<std::string> promtool = find_promtool();
  if (!promtool) return {-1, "", "promtool not found"};
  const std::string file = dir + "/metrics.prom";
  std::ofstream(file) << text;
  return run_process({"/bin/sh", "-c", absl::StrCat(*promtool, " check metrics < ", file)}, {});
}

// ---- reactorctl: every command ----

TEST(Reactorctl, EveryCommand) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  const std::string echo = d.addresses()["echo"];
  ASSERT_EQ(echo_through(echo, "hello"), "hello");

  Ran r = ctl_at(d, {"ping"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.out, "pong\n");

  Json v;
  ASSERT_TRUE(ctl_json(d, {"version"}, Json::value_t::object, &v));
  EXPECT_EQ(v.value("version", ""), "0.1.0") << v.dump();
  EXPECT_EQ(v.value("protocol", 0), 1) << v.dump();
  EXPECT_THAT(v.value("backend", ""), AnyOf("epoll", "io_uring", "libevent")) << v.dump();
  EXPECT_TRUE(ctl_prints(d, {"version"}, {"reactord 0.1.0"}));

  Json stats;
  ASSERT_TRUE(ctl_json(d, {"stats"}, Json::value_t::object, &stats));
  EXPECT_EQ(stats["shards"].size(), 2u);
  for (const char* key : {"version", "backend", "uptime_seconds", "services", "offload", "log",
                          "stalls_total", "process"}) {
    EXPECT_TRUE(stats.contains(key)) << key;
  }
  ASSERT_NE(service_in(stats, "echo"), nullptr) << stats.dump();
  EXPECT_EQ((*service_in(stats, "echo"))["address"], echo);
  EXPECT_TRUE(ctl_prints(d, {"stats"}, {"SHARD", echo}));

  EXPECT_TRUE(
      ctl_prints(d, {"metrics"}, {"reactord_build_info{", "reactord_received_bytes_total{"}));

  Json shards;
  ASSERT_TRUE(ctl_json(d, {"shards"}, Json::value_t::array, &shards));
  ASSERT_EQ(shards.size(), 2u);
  EXPECT_EQ(shards[1]["shard"], 1);
  EXPECT_TRUE(ctl_prints(d, {"shards"}, {"ITERATIONS"}));

  Json services;
  ASSERT_TRUE(ctl_json(d, {"services"}, Json::value_t::array, &services));
  ASSERT_EQ(services.size(), 1u);
  EXPECT_EQ(services[0]["name"], "echo");
  EXPECT_EQ(services[0]["kind"], "echo");
  EXPECT_EQ(services[0]["address"], echo);
  EXPECT_TRUE(ctl_prints(d, {"services"}, {echo}));

  // Snapshots are published periodically: wait (bounded) until each shard has one.
  Json fibers;
  for (auto until = Clock::now() + 15s; Clock::now() < until; std::this_thread::sleep_for(50ms)) {
    ASSERT_TRUE(ctl_json(d, {"fibers"}, Json::value_t::array, &fibers));
    bool all = fibers.size() == 2;
    for (const Json& s : fibers) all = all && s["snapshot_age_seconds"].is_number();
    if (all) break;
  }
  ASSERT_EQ(fibers.size(), 2u);
  for (const Json& s : fibers) {
    EXPECT_TRUE(s["snapshot_age_seconds"].is_number()) << s.dump();
    ASSERT_TRUE(s["fibers"].is_array());
    EXPECT_FALSE(s["fibers"].empty()) << s.dump();  // at least the accept loop
    for (const Json& f : s["fibers"]) {
      for (const char* key : {"id", "name", "state", "age_seconds", "last_slice_seconds",
                              "stack_used_bytes", "stack_size_bytes"}) {
        EXPECT_TRUE(f.contains(key)) << key << " in " << f.dump();
      }
    }
  }
  ASSERT_TRUE(ctl_json(d, {"fibers", "1"}, Json::value_t::array, &fibers));
  ASSERT_EQ(fibers.size(), 1u) << fibers.dump();
  EXPECT_EQ(fibers[0]["shard"], 1);
  EXPECT_TRUE(ctl_prints(d, {"fibers", "0"}, {"shard 0"}));
  r = ctl_at(d, {"fibers", "7"});  // no such shard: the daemon's error
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR usage: "));

  Json stalls;
  ASSERT_TRUE(ctl_json(d, {"stalls"}, Json::value_t::object, &stalls));
  EXPECT_EQ(stalls.value("stalls_total", -1), 0) << stalls.dump();
  EXPECT_TRUE(ctl_prints(d, {"stalls"}, {"stalls: 0"}));

  Json backends;
  ASSERT_TRUE(ctl_json(d, {"backends"}, Json::value_t::array, &backends));
  bool epoll = false;
  for (const Json& b : backends) {
    if (b.value("name", "") == "epoll") epoll = b.value("available", false);
  }
  EXPECT_TRUE(epoll) << backends.dump();
  EXPECT_TRUE(ctl_prints(d, {"backends"}, {"io_uring"}));

  EXPECT_TRUE(ctl_prints(d, {"config"}, {"[admin]", d.admin_socket(), "name = \"echo\""}));

  EXPECT_TRUE(
      ctl_prints(d, {"help"}, {"stats", "metrics", "fibers", "stalls", "set", "reload", "ping"}));

  r = ctl_at(d, {"set", "log.level", "debug"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(raw_stats(d.admin_socket())["log"]["level"], "debug");
  r = ctl_at(d, {"set", "watchdog.threshold_ms", "0"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR invalid: "));
  EXPECT_THAT(r.err, HasSubstr("watchdog.threshold_ms"));
  r = ctl_at(d, {"set", "runtime.shards", "3"});  // needs a restart
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR "));
  r = ctl_at(d, {"set", "admin.allow_uids", "[1000,", "1001]"});  // the value is the rest
  EXPECT_EQ(r.code, 0) << describe(r);

  // reload re-reads the file: a changed log level shows; an invalid file is refused.
  d.write_config(config_for(d.dir(), "", kEchoService, 2, "warn"));
  r = ctl_at(d, {"reload"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(raw_stats(d.admin_socket())["log"]["level"], "warn");
  d.write_config("[runtime\nnot toml");
  r = ctl_at(d, {"reload"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR failed: "));
  EXPECT_EQ(ctl_at(d, {"ping"}).code, 0);

  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(Reactorctl, TopShowsRatesWhileTrafficRuns) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  const std::string echo = d.addresses()["echo"];

  Ran r = ctl_at(d, {"top", "--once"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("UTILIZATION"));
  EXPECT_THAT(r.out, HasSubstr("echo"));
  EXPECT_THAT(r.out, Not(HasSubstr("\x1b[")));  // no screen control codes into a pipe

  // Echo traffic at a known pace, kRate exchanges of kPayload a second, runs from before the first
  // screen's window to after the last: each window should show kRate * kPayload bytes a second.
  constexpr int kRate = 50;
  const std::string payload = "ping through echo";
  std::atomic<bool> stop{false};
  std::atomic<int> late{0};
  std::thread traffic([&] {
    const auto start = Clock::now();
    for (int k = 0; !stop; ++k) {
      std::this_thread::sleep_until(start + k * std::chrono::microseconds(1000000 / kRate));
      if (Clock::now() - (start + k * std::chrono::microseconds(1000000 / kRate)) > 100ms) ++late;
      echo_through(echo, payload);
    }
  });
  std::this_thread::sleep_for(300ms);
  r = ctl_at(d, {"--json", "top", "--iterations", "3", "--interval", "0.5"});
  std::this_thread::sleep_for(300ms);
  stop = true;
  traffic.join();
  ASSERT_EQ(r.code, 0) << describe(r);
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  double best_rate = 0;
  for (const std::string& l : lines) {
    Json frame = parse_json(l);
    ASSERT_TRUE(frame.is_object()) << l;
    EXPECT_EQ(frame["windowed"], true) << l;
    ASSERT_EQ(frame["shards"].size(), 2u) << l;
    for (const Json& s : frame["shards"]) {
      ASSERT_TRUE(s["utilization"].is_number()) << l;
      EXPECT_GE(s["utilization"].get<double>(), 0.0);
      EXPECT_LE(s["utilization"].get<double>(), 1.0);
    }
    ASSERT_EQ(frame["services"].size(), 1u) << l;
    const Json& rate = frame["services"][0]["requests_per_second"];
    ASSERT_TRUE(rate.is_number()) << l;
    best_rate = std::max(best_rate, rate.get<double>());
    // A window of 0.5 s holds 25 exchanges, give or take one at each end and the client's
    // scheduling: within 30 %.
    const Json& bytes = frame["services"][0]["received_bytes_per_second"];
    ASSERT_TRUE(bytes.is_number()) << l;
    const double sent = static_cast<double>(kRate * payload.size());
    EXPECT_NEAR(bytes.get<double>(), sent, 0.3 * sent)
        << l << "\n(the client was over 100 ms behind its pace " << late << " times)";
  }
  EXPECT_GT(best_rate, 0.0) << r.out;
  EXPECT_TRUE(test::stops_cleanly(d));
}

// `top` without a count runs until SIGINT, then restores what it changed and exits 0.
TEST(Reactorctl, TopStopsOnSigint) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  const std::string sock = d.admin_socket();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(::open("/dev/null", O_RDONLY), STDIN_FILENO);  // not the test's terminal
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(60);
    ::execl(reactorctl_binary(), reactorctl_binary(), "--socket", sock.c_str(), "top", "--interval",
            "0.2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  // Wait for two screens, then interrupt.
  std::string got;
  char buf[4096];
  for (auto until = Clock::now() + 30s; Clock::now() < until;) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    size_t screens = 0;
    for (size_t at = 0; (at = got.find("SERVICE", at)) != std::string::npos; ++at) ++screens;
    if (screens >= 2) break;
  }
  ::kill(pid, SIGINT);
  int status = 0;
  for (auto until = Clock::now() + 20s; Clock::now() < until;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(20ms);
  }
  ::close(out[0]);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << "\n" << got;
  EXPECT_EQ(WEXITSTATUS(status), 0) << got;
  EXPECT_THAT(got, HasSubstr("UTILIZATION"));
  EXPECT_TRUE(test::stops_cleanly(d));
}

// At a terminal, `top` clears the screen, hides the cursor, quits on 'q' and shows the cursor
// again.
TEST(Reactorctl, TopQuitsOnQAtATerminal) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  const std::string sock = d.admin_socket();
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(60);
    ::execl(reactorctl_binary(), reactorctl_binary(), "--socket", sock.c_str(), "top", "--interval",
            "0.2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string got;
  bool quit_sent = false;
  int status = -1;
  char buf[4096];
  for (auto until = Clock::now() + 40s; Clock::now() < until;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n > 0) got.append(buf, static_cast<size_t>(n));
    }
    if (!quit_sent && got.find("q or Ctrl-C quits") != std::string::npos) {
      ASSERT_EQ(::write(master, "q", 1), 1);
      quit_sent = true;
    }
  }
  // Drain what the child wrote last (the cursor being shown again).
  for (;;) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) break;
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  if (status == -1) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  EXPECT_TRUE(quit_sent) << got;
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << "\n" << got;
  EXPECT_EQ(WEXITSTATUS(status), 0) << got;
  EXPECT_THAT(got, HasSubstr("\x1b[2J"));
  EXPECT_THAT(got, HasSubstr("\x1b[?25l"));
  const size_t shown = got.rfind("\x1b[?25h");
  ASSERT_NE(shown, std::string::npos) << got;
  EXPECT_GT(shown, got.rfind("\x1b[2J"));  // the cursor comes back after the last screen
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- the socket path ----

// A regular file where the admin socket should be: the daemon refuses to start (71) and names
// the path; the file keeps its content and its modification time.
TEST(AdminSocketPath, RegularFileIsRefusedAndLeftUntouched) {
  DaemonProcess d;
  d.write_config(config_for(d.dir()));
  const std::string path = d.admin_socket();
  const std::string content = "not a socket: someone's data\n";
  std::ofstream(path) << content;
  const timespec old_times[2] = {{1700000000, 0}, {1700000000, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), old_times, 0), 0);
  std::string out;
  EXPECT_EQ(DaemonProcess::run_to_exit({"--config=" + d.dir() + "/reactord.toml"}, &out), 71)
      << out;
  EXPECT_THAT(out, HasSubstr(path));
  EXPECT_THAT(out, HasSubstr("not a socket"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mtim.tv_sec, old_times[1].tv_sec);
  EXPECT_EQ(st.st_mtim.tv_nsec, old_times[1].tv_nsec);
  std::ifstream in(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), content);
}

// ---- access: SO_PEERCRED, not file permissions ----

// The socket lives in a directory anyone may search, with mode 0666: every local user can
// connect, so a refusal can only come from the daemon's SO_PEERCRED check.
std::string open_socket_config(DaemonProcess& d, const std::string& acl) {
  ::chmod(d.dir().c_str(), 0755);
  return config_for(d.dir(), "mode = \"0666\"\n" + acl);
}

void expect_world_connectable(const DaemonProcess& d) {
  struct stat st {};
  ASSERT_EQ(::stat(d.admin_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  ASSERT_EQ(::stat(d.dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0001, 0001u);  // others may search the directory
}

// A raw exchange as uid 65534: "connected\n" plus the answer's lines, or "connect: <errno>".
std::string raw_as_nobody(const std::string& socket, const std::string& command) {
  return as_nobody([&] {
    AdminClient a(socket);
    if (!a.ok()) return absl::StrCat("connect: ", std::strerror(a.error()));
    std::string out = "connected\n";
    auto ans = a.ask(command);
    if (!ans) return out + "no answer";
    for (const auto& l : *ans) absl::StrAppend(&out, l, "\n");
    return out;
  });
}

TEST(AdminAccess, AllowedUidReadsButMayNotWrite) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, open_socket_config(d, "allow_uids = [65534]\n")));
  expect_world_connectable(d);
  Ran r = ctl_at(d, {"--json", "stats"});
  ASSERT_EQ(r.code, 0) << describe(r);

  // reactorctl itself, run as uid/gid 65534 from a directory it can reach.
  const test::ReachableCopy ctl(reactorctl_binary());
  ASSERT_FALSE(ctl.path().empty());
  auto as_nobody_ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", d.admin_socket()});
    return run_reactorctl(args, {}, become_nobody, ctl.path());
  };
  r = as_nobody_ctl({"--json", "stats"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(parse_json(r.out).is_object()) << r.out;
  r = as_nobody_ctl({"ping"});
  EXPECT_EQ(r.code, 0) << describe(r);
  r = as_nobody_ctl({"set", "log.level", "debug"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR denied: "));
  r = as_nobody_ctl({"reload"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR denied: "));

  // The same through a raw socket: connected, then refused by the daemon.
  std::string got = raw_as_nobody(d.admin_socket(), "stats");
  EXPECT_THAT(got, StartsWith("connected\n{"));
  got = raw_as_nobody(d.admin_socket(), "set log.level debug");
  EXPECT_THAT(got, StartsWith("connected\nERR denied: "));
  got = raw_as_nobody(d.admin_socket(), "reload");
  EXPECT_THAT(got, StartsWith("connected\nERR denied: "));
  EXPECT_EQ(raw_stats(d.admin_socket())["log"]["level"], "info");  // nothing changed

  // Root may write: taking 65534 out of allow_uids refuses it from then on.
  r = ctl_at(d, {"set", "admin.allow_uids", "[]"});
  EXPECT_EQ(r.code, 0) << describe(r);
  got = raw_as_nobody(d.admin_socket(), "stats");
  EXPECT_THAT(got, StartsWith("connected\nERR denied: "));
  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(AdminAccess, OtherUidIsRefusedEvenStats) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, open_socket_config(d, "")));
  expect_world_connectable(d);
  const test::ReachableCopy ctl(reactorctl_binary());  // run as uid 65534: see ReachableCopy
  ASSERT_FALSE(ctl.path().empty());
  Ran r = run_reactorctl({"--socket", d.admin_socket(), "stats"}, {}, become_nobody, ctl.path());
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR denied: "));
  r = run_reactorctl({"--socket", d.admin_socket(), "ping"}, {}, become_nobody, ctl.path());
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR denied: "));
  for (const char* cmd : {"stats", "metrics", "fibers", "set log.level debug", "reload"}) {
    EXPECT_THAT(raw_as_nobody(d.admin_socket(), cmd), StartsWith("connected\nERR denied: ")) << cmd;
  }
  EXPECT_EQ(ctl_at(d, {"ping"}).code, 0);  // root still may
  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(AdminAccess, AllowedGidReads) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, open_socket_config(d, "allow_gids = [65534]\n")));
  EXPECT_THAT(raw_as_nobody(d.admin_socket(), "stats"), StartsWith("connected\n{"));
  EXPECT_THAT(raw_as_nobody(d.admin_socket(), "reload"), StartsWith("connected\nERR denied: "));
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- metrics ----

TEST(AdminMetrics, PromtoolAcceptsMetrics) {
  std::optional<std::string> promtool = find_promtool();
  ASSERT_TRUE(promtool.has_value())
      << "promtool is missing: scripts/install-deps.sh installs it (Debian package prometheus)";
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  for (int i = 0; i < 4; ++i) {  // some traffic, so histograms and counters are not all zero
    ASSERT_EQ(echo_through(d.addresses()["echo"], pattern(10000, i)), pattern(10000, i));
  }
  Ran r = ctl_at(d, {"metrics"});
  ASSERT_EQ(r.code, 0) << describe(r);
  Ran check = promtool_check(d.dir(), r.out);
  EXPECT_EQ(check.code, 0) << describe(check) << "\nmetrics:\n" << r.out;
  for (const char* name : {"reactord_loop_iterations_total",
                           "reactord_polls_total",
                           "reactord_poll_wait_seconds_total",
                           "reactord_busy_seconds_total",
                           "reactord_fibers_alive",
                           "reactord_fibers_created_total",
                           "reactord_context_switches_total",
                           "reactord_stacks{",
                           "reactord_stacks_released{",
                           "reactord_stack_releases_total{",
                           "reactord_timers_armed",
                           "reactord_slice_duration_seconds_bucket{",
                           "reactord_scheduling_latency_seconds_bucket{",
                           "reactord_poll_wait_seconds_bucket{",
                           "reactord_connections_accepted_total{",
                           "reactord_connections_active{",
                           "reactord_received_bytes_total{",
                           "reactord_sent_bytes_total{",
                           "reactord_requests_total{",
                           "reactord_offload_jobs{",
                           "reactord_log_lines_dropped_total",
                           "reactord_stalls_total{",
                           "reactord_build_info{",
                           "process_cpu_seconds_total",
                           "process_resident_memory_bytes",
                           "process_open_fds",
                           "process_start_time_seconds",
                           "le=\"+Inf\"",
                           "le=\"1e-06\"",
                           "le=\"100\""}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
  EXPECT_TRUE(test::stops_cleanly(d));
}

// Needs the http service: /metrics serves the same text as the admin `metrics`.
TEST(AdminMetrics, PromtoolAcceptsHttpMetrics) {
  ASSERT_TRUE(find_promtool().has_value()) << "promtool is missing: run scripts/install-deps.sh";
  DaemonProcess d;
  ASSERT_TRUE(start_with_http(d));
  std::string response = http_get(d.addresses()["web"], "/metrics");
  ASSERT_THAT(response, StartsWith("HTTP/1.1 200")) << response;
  const size_t body = response.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  Ran check = promtool_check(d.dir(), response.substr(body + 4));
  EXPECT_EQ(check.code, 0) << describe(check) << "\n" << response;
  EXPECT_THAT(response, HasSubstr("reactord_build_info{"));
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- counters after known traffic ----

TEST(AdminCounters, EchoedBytesAddExactly) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  const std::string echo = d.addresses()["echo"];
  const Json before = raw_stats(d.admin_socket());
  const Json* svc = service_in(before, "echo");
  ASSERT_NE(svc, nullptr) << before.dump();
  const uint64_t in0 = (*svc)["bytes_in"], out0 = (*svc)["bytes_out"];
  const uint64_t accepted0 = (*svc)["connections"]["accepted"];
  const uint64_t requests0 = (*svc)["requests"];

  constexpr int kConnections = 6;
  uint64_t total = 0;
  for (int i = 0; i < kConnections; ++i) {
    const std::string payload = pattern(1000 + static_cast<size_t>(i) * 37777, i);
    ASSERT_EQ(echo_through(echo, payload), payload);
    total += payload.size();
  }
  // The counters settle once every connection's fiber has finished; then exactly M each way.
  auto settled = [&](const Json& s) {
    const Json* e = service_in(s, "echo");
    return e && (*e)["bytes_in"] == in0 + total && (*e)["bytes_out"] == out0 + total &&
           (*e)["connections"]["active"] == 0;
  };
  Json after = poll_stats(d.admin_socket(), settled);
  ASSERT_TRUE(settled(after)) << "expected +" << total << " bytes each way: " << after.dump();
  const Json& e = *service_in(after, "echo");
  EXPECT_EQ(e["connections"]["accepted"], accepted0 + kConnections);
  EXPECT_EQ(e["connections"]["closed"].get<uint64_t>(),
            before["services"][0]["connections"]["closed"].get<uint64_t>() + kConnections);
  EXPECT_GE(e["requests"].get<uint64_t>(), requests0 + kConnections);  // echo counts reads
  // Settled means settled: nothing moves without traffic.
  std::this_thread::sleep_for(300ms);
  const Json later = raw_stats(d.admin_socket());
  EXPECT_EQ((*service_in(later, "echo"))["bytes_in"], in0 + total);
  EXPECT_EQ((*service_in(later, "echo"))["bytes_out"], out0 + total);

  // The Prometheus counters agree, summed over shards.
  Ran m = ctl_at(d, {"metrics"});
  ASSERT_EQ(m.code, 0);
  double received = 0, sent = 0;
  for (absl::string_view line : absl::StrSplit(m.out, '\n')) {
    double v = 0;
    const size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos || !absl::SimpleAtod(line.substr(sp + 1), &v)) continue;
    if (absl::StartsWith(line, "reactord_received_bytes_total{") &&
        absl::StrContains(line, "service=\"echo\"")) {
      received += v;
    }
    if (absl::StartsWith(line, "reactord_sent_bytes_total{") &&
        absl::StrContains(line, "service=\"echo\"")) {
      sent += v;
    }
  }
  EXPECT_EQ(received, static_cast<double>(in0 + total));
  EXPECT_EQ(sent, static_cast<double>(out0 + total));
  EXPECT_TRUE(test::stops_cleanly(d));
}

// Needs the http service: N requests add exactly N.
TEST(AdminCounters, HttpRequestsAddExactly) {
  DaemonProcess d;
  ASSERT_TRUE(start_with_http(d));
  const std::string web = d.addresses()["web"];
  const Json before = raw_stats(d.admin_socket());
  ASSERT_NE(service_in(before, "web"), nullptr);
  const uint64_t requests0 = (*service_in(before, "web"))["requests"];
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_THAT(http_get(web, i % 2 ? "/" : "/healthz"), StartsWith("HTTP/1.1 200"));
  }
  auto settled = [&](const Json& s) {
    const Json* w = service_in(s, "web");
    return w && (*w)["requests"] == requests0 + kRequests && (*w)["connections"]["active"] == 0;
  };
  Json after = poll_stats(d.admin_socket(), settled);
  EXPECT_TRUE(settled(after)) << "expected +" << kRequests << ": " << after.dump();
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- garbage ----

TEST(AdminRobustness, RandomAndOversizedLinesLeaveItServing) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  std::mt19937 rng(12345);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) {
      do {
        c = static_cast<char>(rng() & 0xff);
      } while (c == '\n');
    }
    return s;
  };
  // Read commands with wrong arguments, binary garbage, and lines over 4096 bytes. Never a valid
  // write command: the daemon's configuration must not change under the test.
  const std::vector<std::string> words = {"stats",   "fibers", "metrics", "ping",   "help",
                                          "version", "shards", "set",     "stalls", "config"};
  constexpr int kLines = 1000;
  std::vector<std::string> lines;
  int oversized = 0;
  for (int i = 0; i < kLines; ++i) {
    switch (rng() % 4) {
      case 0:
        lines.push_back(words[rng() % words.size()] + " " + random_bytes(rng() % 40 + 1));
        break;
      case 1:
        lines.push_back(random_bytes(rng() % 200));
        break;
      case 2:
        lines.push_back(random_bytes(kMaxLine + rng() % 20000));
        ++oversized;
        break;
      default:
        lines.push_back(absl::StrCat("fibers ", rng()));
        break;
    }
  }
  AdminClient a(d.admin_socket());
  ASSERT_TRUE(a.ok());
  // Write everything from one thread while this one reads every answer.
  std::thread writer([&] {
    for (const std::string& l : lines) {
      if (!a.send(l + "\n")) return;
    }
  });
  int answers = 0, too_long = 0, errors = 0;
  for (; answers < kLines; ++answers) {
    auto ans = a.answer(30s);
    if (!ans) break;
    if (!ans->empty() && absl::StartsWith((*ans)[0], "ERR ")) {
      ++errors;
      EXPECT_EQ(ans->size(), 1u);
      if (absl::StartsWith((*ans)[0], "ERR too-long: ")) ++too_long;
    }
  }
  writer.join();
  EXPECT_EQ(answers, kLines) << "one answer per line";
  EXPECT_EQ(too_long, oversized);
  EXPECT_GT(errors, kLines / 2);
  // The same connection, a new one, reactorctl and the echo service all still work.
  EXPECT_EQ(a.ask("ping"), std::vector<std::string>{"pong"});
  EXPECT_EQ(ctl_at(d, {"ping"}).code, 0);
  // Garbage without a newline, then a hang-up, from a few more clients.
  for (int i = 0; i < 5; ++i) {
    AdminClient g(d.admin_socket());
    ASSERT_TRUE(g.ok());
    g.send(random_bytes(static_cast<size_t>(i) * 3000 + 10));
  }
  Ran r = ctl_at(d, {"--json", "stats"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse_json(r.out)["log"]["level"], "info");
  EXPECT_EQ(echo_through(d.addresses()["echo"], "still serving"), "still serving");
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- limits ----

TEST(AdminLimits, MaxClientsRefusesTheThirdWithBusy) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir(), "max_clients = 2\n")));
  AdminClient first(d.admin_socket()), second(d.admin_socket());
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first.ask("ping"), std::vector<std::string>{"pong"});
  EXPECT_EQ(second.ask("ping"), std::vector<std::string>{"pong"});

  AdminClient third(d.admin_socket());
  ASSERT_TRUE(third.ok());
  auto busy = third.answer();
  ASSERT_TRUE(busy.has_value());
  ASSERT_EQ(busy->size(), 1u);
  EXPECT_THAT((*busy)[0], StartsWith("ERR busy: "));
  EXPECT_TRUE(third.wait_closed(10s));
  // reactorctl shows the daemon's ERR line and exits 1.
  Ran r = ctl_at(d, {"stats"});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, StartsWith("ERR busy: "));

  // The first two still work.
  EXPECT_EQ(first.ask("ping"), std::vector<std::string>{"pong"});
  EXPECT_EQ(second.ask("ping"), std::vector<std::string>{"pong"});
  auto stats = second.ask("stats");
  ASSERT_TRUE(stats && stats->size() == 1);
  EXPECT_TRUE(parse_json((*stats)[0]).is_object());

  // A slot frees when a client leaves (noticed by the daemon soon after: poll, bounded).
  ::shutdown(first.fd(), SHUT_RDWR);
  bool admitted = false;
  for (auto until = Clock::now() + 15s; Clock::now() < until && !admitted;
       std::this_thread::sleep_for(50ms)) {
    admitted = ctl_at(d, {"ping"}).code == 0;
  }
  EXPECT_TRUE(admitted);
  EXPECT_TRUE(test::stops_cleanly(d));
}

TEST(AdminLimits, IdleTimeoutClosesAnIdleClient) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir(), "idle_timeout_ms = 1000\n")));
  // Commands keep a connection alive past several timeouts.
  AdminClient busy(d.admin_socket());
  ASSERT_TRUE(busy.ok());
  for (int i = 0; i < 25; ++i) {
    ASSERT_EQ(busy.ask("ping"), std::vector<std::string>{"pong"}) << "ping " << i;
    std::this_thread::sleep_for(100ms);
  }
  // Idle after a command: closed.
  AdminClient idle(d.admin_socket());
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle.ask("ping"), std::vector<std::string>{"pong"});
  EXPECT_TRUE(idle.wait_closed(20s));
  // Half a line is not activity: closed too.
  AdminClient partial(d.admin_socket());
  ASSERT_TRUE(partial.ok());
  ASSERT_TRUE(partial.send("sta"));
  EXPECT_TRUE(partial.wait_closed(20s));
  // Never sent anything: closed.
  AdminClient silent(d.admin_socket());
  ASSERT_TRUE(silent.ok());
  EXPECT_TRUE(silent.wait_closed(20s));
  EXPECT_EQ(ctl_at(d, {"ping"}).code, 0);
  EXPECT_TRUE(test::stops_cleanly(d));
}

// A client that pipelines big answers and never reads them blocks only its own connection.
TEST(AdminLimits, ClientThatNeverReadsHoldsUpNoOne) {
  DaemonProcess d;
  ASSERT_TRUE(start_daemon(d, config_for(d.dir())));
  AdminClient hog(d.admin_socket());
  ASSERT_TRUE(hog.ok());
  const int small = 4096;
  ::setsockopt(hog.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::string burst;
  for (int i = 0; i < 200; ++i) burst += "metrics\n";
  ASSERT_TRUE(hog.send(burst));
  std::this_thread::sleep_for(200ms);  // let the daemon fill the socket and wait to write
  for (int i = 0; i < 5; ++i) {
    Ran r = ctl_at(d, {"--json", "stats"});
    EXPECT_EQ(r.code, 0) << describe(r);
    AdminClient other(d.admin_socket());
    EXPECT_EQ(other.ask("ping"), std::vector<std::string>{"pong"});
  }
  EXPECT_TRUE(test::stops_cleanly(d));
}

// ---- a blocked shard ----

// Needs the http service (its /debug/block?ms=N route, debug_routes = true): a request blocks
// its shard's loop for 2 s; stats, fibers and stalls still answer meanwhile, and show it.
TEST(AdminBlocked, AnswersWhileAShardIsBlocked) {
  DaemonProcess d;
  ASSERT_TRUE(start_with_http(d));
  const std::string web = d.addresses()["web"];
  std::string response;
  std::thread blocker([&] { response = http_get(web, "/debug/block?ms=2000"); });

  // Wait (bounded) until a shard is seen inside a long slice.
  auto blocked = [](const Json& s) {
    if (!s.contains("shards")) return false;
    for (const Json& sh : s["shards"]) {
      const Json& c = sh["current_slice"];
      if (c.value("running", false) && c.value("seconds", 0.0) > 0.2) return true;
    }
    return false;
  };
  Json stats = poll_stats(d.admin_socket(), blocked, 10s);
  ASSERT_TRUE(blocked(stats)) << "no shard seen blocked: " << stats.dump();
  // While it lasts (2 s), every read command answers through reactorctl.
  Ran r = ctl_at(d, {"stats"});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr(" for "));  // the RUNNING column: "FIBER for 1.2 s"
  r = ctl_at(d, {"--json", "stats"});
  EXPECT_EQ(r.code, 0) << describe(r);
  r = ctl_at(d, {"fibers"});
  EXPECT_EQ(r.code, 0) << describe(r);
  r = ctl_at(d, {"stalls"});
  EXPECT_EQ(r.code, 0) << describe(r);
  blocker.join();
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200")) << response;
  // The watchdog reported it (threshold 100 ms by default).
  Json after =
      poll_stats(d.admin_socket(), [](const Json& s) { return s.value("stalls_total", 0) > 0; });
  EXPECT_GT(after.value("stalls_total", 0), 0) << after.dump();
  r = ctl_at(d, {"--json", "stalls"});
  ASSERT_EQ(r.code, 0) << describe(r);
  Json stalls = parse_json(r.out);
  EXPECT_FALSE(stalls["reports"].empty()) << r.out;
  EXPECT_TRUE(test::stops_cleanly(d));
}

}  // namespace
}  // namespace reactord
