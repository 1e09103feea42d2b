// The admin protocol (docs/admin-protocol.md): first its pure input side (admin/protocol.h) —
// line framing with the 4096-byte limit, however the bytes arrive, and the split of a line into
// a command — then the same rules on the wire, through a raw socket to the real reactord: every
// command's answer shape, error lines, pipelining, the line limit, and no command taking a path.
// The admin server's access rules, limits and robustness are tested in tests/admin_test.cc.
#include "admin/protocol.h"

#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/blocking_client.h"
#include "tests/daemon_harness.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Kind = AdminLineEvent::Kind;
using reactor::test::AdminClient;
using reactor::test::DaemonProcess;
using reactor::test::start_daemon;
using ::testing::AnyOf;
using ::testing::StartsWith;

constexpr size_t kMaxLine = 4096;

std::string config_for(const std::string& dir) {
  return reactor::test::daemon_config(dir, "", reactor::test::kEchoService);
}

Json parse_json(const std::string& text) {
  return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// "L:line" for a line, "T" for a too-long report.
std::vector<std::string> feed_all(AdminLineReader& r, const std::vector<std::string>& chunks) {
  std::vector<std::string> out;
  for (const std::string& c : chunks) {
    std::vector<AdminLineEvent> events;
    r.feed(c, events);
    for (const AdminLineEvent& e : events)
      out.push_back(e.kind == Kind::kLine ? "L:" + e.line : "T");
    EXPECT_LT(r.buffered(), AdminLineReader::kMaxLine);
  }
  return out;
}

std::vector<std::string> lines(const std::vector<std::string>& chunks) {
  AdminLineReader r;
  return feed_all(r, chunks);
}

TEST(AdminLineReaderTest, SplitsLinesAndDropsOneCarriageReturn) {
  EXPECT_THAT(lines({"ping\nstats\r\n\nhelp\r\r\nver", "sion\n"}),
              ::testing::ElementsAre("L:ping", "L:stats", "L:", "L:help\r", "L:version"));
  AdminLineReader r;
  EXPECT_THAT(feed_all(r, {"stats"}), ::testing::IsEmpty());
  EXPECT_EQ(r.buffered(), 5u);
}

TEST(AdminLineReaderTest, LongestLineFitsOneMoreIsTooLong) {
  const std::string fits(AdminLineReader::kMaxLine - 1, 'x');
  EXPECT_THAT(lines({fits + "\n"}), ::testing::ElementsAre("L:" + fits));
  EXPECT_THAT(lines({fits + "x\nping\n"}), ::testing::ElementsAre("T", "L:ping"));
}

TEST(AdminLineReaderTest, TooLongIsReportedOnceHoweverItArrives) {
  const std::string long_line(3 * AdminLineReader::kMaxLine, 'y');
  // At once, in 4096-byte reads (as the server reads), and a byte at a time near the limit.
  EXPECT_THAT(lines({long_line + "\nping\n"}), ::testing::ElementsAre("T", "L:ping"));
  std::vector<std::string> reads;
  const std::string all = long_line + "\nping\n";
  for (size_t i = 0; i < all.size(); i += 4096) reads.push_back(all.substr(i, 4096));
  EXPECT_THAT(lines(reads), ::testing::ElementsAre("T", "L:ping"));
  std::vector<std::string> bytes = {std::string(AdminLineReader::kMaxLine - 2, 'z')};
  for (char c : std::string("zz\nping\n")) bytes.push_back(std::string(1, c));
  EXPECT_THAT(lines(bytes), ::testing::ElementsAre("T", "L:ping"));
}

TEST(AdminLineReaderTest, TooLongAnswerIsTheProtocolError) {
  AdminLineReader r;
  std::vector<AdminLineEvent> events;
  r.feed(std::string(5000, 'a') + "\n", events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].line, "ERR too-long: lines are at most 4096 bytes");
}

TEST(ParseAdminLineTest, KnownCommandsAndWords) {
  AdminRequest r = parse_admin_line("  set  log.level   debug ");
  EXPECT_EQ(r.error, "");
  EXPECT_THAT(r.words, ::testing::ElementsAre("set", "log.level", "debug"));
  EXPECT_TRUE(r.write);
  r = parse_admin_line("reload");
  EXPECT_TRUE(r.write);
  r = parse_admin_line("fibers 0");
  EXPECT_EQ(r.error, "");
  EXPECT_FALSE(r.write);
}

TEST(ParseAdminLineTest, EmptyAndUnknown) {
  EXPECT_EQ(parse_admin_line("").error, "ERR usage: empty command; try help");
  EXPECT_EQ(parse_admin_line("    ").error, "ERR usage: empty command; try help");
  EXPECT_EQ(parse_admin_line("PING").error, "ERR unknown-command: 'PING'; try help");
  // A tab is not a separator, and the echoed name is cut at 64 bytes.
  EXPECT_EQ(parse_admin_line("ping\tx").error, "ERR unknown-command: 'ping\tx'; try help");
  EXPECT_EQ(parse_admin_line(std::string(100, 'q')).error,
            "ERR unknown-command: '" + std::string(64, 'q') + "'; try help");
}

// ---- on the wire, against the daemon ----

// A running daemon and one raw admin connection to it; the daemon must stop cleanly at the end.
class AdminProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(start_daemon(d_, config_for(d_.dir())));
    a_.emplace(d_.admin_socket());
    ASSERT_TRUE(a_->ok()) << std::strerror(a_->error());
  }
  void TearDown() override {
    if (a_) {
      EXPECT_TRUE(reactor::test::stops_cleanly(d_));
    }
  }

  DaemonProcess d_;
  std::optional<AdminClient> a_;
};

TEST_F(AdminProtocol, EveryCommandRaw) {
  auto one = [&](const std::string& cmd) -> std::vector<std::string> {
    auto ans = a_->ask(cmd);
    EXPECT_TRUE(ans.has_value()) << cmd;
    return ans.value_or(std::vector<std::string>{});
  };
  EXPECT_EQ(one("ping"), std::vector<std::string>{"pong"});
  // Every JSON answer is one line of valid JSON; no answer line is a lone ".".
  for (const char* cmd :
       {"version", "stats", "shards", "services", "fibers", "fibers 0", "stalls", "backends"}) {
    std::vector<std::string> lines = one(cmd);
    ASSERT_EQ(lines.size(), 1u) << cmd;
    EXPECT_FALSE(parse_json(lines[0]).is_discarded()) << cmd << ": " << lines[0];
    EXPECT_FALSE(absl::StartsWith(lines[0], "ERR")) << cmd;
  }
  std::vector<std::string> metrics = one("metrics");
  EXPECT_GT(metrics.size(), 20u);
  std::vector<std::string> config = one("config");
  EXPECT_THAT(config, ::testing::Contains("[admin]"));
  std::vector<std::string> help = one("help");
  EXPECT_THAT(help, ::testing::Contains("stats"));
  EXPECT_EQ(one("set log.level debug"), std::vector<std::string>{"ok"});
  EXPECT_EQ(one("reload"), std::vector<std::string>{"ok"});

  // Errors: one line, a stable code, and the connection stays usable.
  std::vector<std::string> e = one("frobnicate");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_THAT(e[0], StartsWith("ERR unknown-command: "));
  e = one("stats now");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_THAT(e[0], StartsWith("ERR usage: "));
  e = one("");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_THAT(e[0], StartsWith("ERR usage: "));
  e = one("set watchdog.threshold_ms zero");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_THAT(e[0], StartsWith("ERR invalid: "));
  EXPECT_EQ(one("ping"), std::vector<std::string>{"pong"});

  // A trailing \r is ignored; several commands in one write are answered in order.
  ASSERT_TRUE(a_->send("ping\r\nversion\nping\n"));
  EXPECT_EQ(a_->answer(), std::vector<std::string>{"pong"});
  auto version = a_->answer();
  ASSERT_TRUE(version && version->size() == 1);
  EXPECT_EQ(parse_json((*version)[0])["protocol"], 1);
  EXPECT_EQ(a_->answer(), std::vector<std::string>{"pong"});

  // A line of exactly 4096 bytes with its newline is accepted; one byte more is too long.
  std::string longest = "ping" + std::string(kMaxLine - 1 - 4, ' ');
  ASSERT_EQ(longest.size() + 1, kMaxLine);
  e = one(longest);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_FALSE(absl::StartsWith(e[0], "ERR too-long")) << e[0];
  e = one(longest + " ");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_THAT(e[0], StartsWith("ERR too-long: "));
  EXPECT_EQ(one("ping"), std::vector<std::string>{"pong"});
}

// docs/admin-protocol.md shows `stats` with the backend in use ("epoll"), as `version` and
// `reactord_build_info` give it, not the configured choice ("auto"): a fallback must show.
TEST_F(AdminProtocol, StatsShowsTheBackendInUse) {
  const Json version = parse_json(a_->ask_text("version"));
  const Json stats = parse_json(a_->ask_text("stats"));
  ASSERT_THAT(version.value("backend", ""), AnyOf("epoll", "io_uring", "libevent"));
  EXPECT_EQ(stats.value("backend", ""), version.value("backend", ""))
      << "stats shows the configured backend, not the one in use";
}

// No command reads or writes a path the client names: the keys `set` may change are none of
// them paths, path-valued keys need a restart, and arguments where none are taken are refused.
// Run as the daemon's own uid, which may write.
TEST_F(AdminProtocol, NoCommandTakesAPathFromTheClient) {
  const std::string target = d_.dir() + "/planted";
  for (const std::string& cmd : {
           "set admin.socket " + target,
           "set service.echo.listen " + target,
           "set log.level " + target,
           "set admin.group " + target,
           "reload " + target,
           "config " + target,
           "metrics " + target,
           "stalls " + target,
           "fibers " + target,
       }) {
    const std::string answer = a_->ask_text(cmd);
    EXPECT_THAT(answer, StartsWith("ERR ")) << cmd;
    EXPECT_FALSE(std::filesystem::exists(target)) << cmd;
  }
  // The socket is still where the file put it, and answers.
  EXPECT_EQ(a_->ask_text("ping"), "pong\n");
  AdminClient b(d_.admin_socket());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.ask_text("ping"), "pong\n");
}

}  // namespace
}  // namespace reactord
