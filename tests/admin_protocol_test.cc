// The admin protocol's pure input side (admin/protocol.h): line framing with the 4096-byte
// limit, however the bytes arrive, and the split of a line into a command.
#include "admin/protocol.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace reactord {
namespace {

using Kind = AdminLineEvent::Kind;

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

}  // namespace
}  // namespace reactord
