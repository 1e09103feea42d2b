// The resp service's string, key, expiry, connection and introspection commands, each with its
// options and errors, in-process on every backend. Two shards share this test's reactor (both
// views name it), so every key owned by "the other shard" goes through the cross-shard path.
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "services/resp.h"
#include "tests/service_test_util.h"
#include "tests/test_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
namespace test = reactor::test;
using test::RawClient;
using test::TestServer;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string multibulk(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

std::string key_owned_by(size_t shard, const std::string& prefix) {
  for (int i = 0;; ++i) {
    std::string k = prefix + std::to_string(i);
    if (resp_key_owner(k, 2) == shard) return k;
  }
}

const char kOk[] = "+OK\r\n";
const char kNil[] = "$-1\r\n";
const char kNotInt[] = "-ERR value is not an integer or out of range\r\n";
const char kSyntax[] = "-ERR syntax error\r\n";

// Reads one whole RESP reply from c (a bulk, an array of them, or a line).
std::string read_reply(RawClient& c) {
  std::string out;
  std::function<bool()> one = [&]() -> bool {
    while (c.buffer().find("\r\n") == std::string::npos) {
      if (!c.fill(c.buffer().size() + 1)) return false;
    }
    const size_t eol = c.buffer().find("\r\n");
    const std::string line = c.take(eol + 2);
    out += line;
    if (line[0] == '$') {
      const long n = std::stol(line.substr(1));
      if (n >= 0) out += c.take(static_cast<size_t>(n) + 2);
    } else if (line[0] == '*') {
      const long n = std::stol(line.substr(1));
      for (long i = 0; i < n; ++i) {
        if (!one()) return false;
      }
    }
    return true;
  };
  (void)one();
  return out;
}

class RespCommandsTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs fn(client, shared) against a two-shard service on one reactor; `o` as given.
  template <class F>
  void run(F&& fn, RespOptions o = {}) {
    reactor::test::run_fiber(
        [&] {
          auto shared = std::make_unique<RespShared>();
          for (int i = 0; i < 2; ++i) shared->stores.push_back(std::make_unique<RespStore>());
          reactor::Reactor* self = reactor::Reactor::current();
          const ShardView view{0, 2, {self, self}};
          TestServer server([&](Connection& c) { serve_resp(c, o, *shared); }, view);
          RawClient c(server.address());
          fn(c, *shared);
        },
        GetParam());
  }
};

// Sends one command and returns its whole reply.
std::string ask(RawClient& c, const std::vector<std::string>& args) {
  EXPECT_TRUE(c.send(multibulk(args)));
  return read_reply(c);
}

TEST_P(RespCommandsTest, SetAndItsOptions) {
  run([](RawClient& c, RespShared&) {
    EXPECT_EQ(ask(c, {"SET", "k", "v", "NX"}), kOk);
    EXPECT_EQ(ask(c, {"SET", "k", "w", "NX"}), kNil);
    EXPECT_EQ(ask(c, {"GET", "k"}), bulk("v"));
    EXPECT_EQ(ask(c, {"SET", "k", "w", "XX"}), kOk);
    EXPECT_EQ(ask(c, {"SET", "absent", "w", "XX"}), kNil);
    EXPECT_EQ(ask(c, {"EXISTS", "absent"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"SET", "k", "x", "GET"}), bulk("w"));
    EXPECT_EQ(ask(c, {"SET", "new", "x", "GET"}), kNil);
    EXPECT_EQ(ask(c, {"SET", "k", "y", "NX", "GET"}), bulk("x"));  // not set, old value
    EXPECT_EQ(ask(c, {"GET", "k"}), bulk("x"));
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "100"}), kOk);
    EXPECT_THAT(ask(c, {"TTL", "k"}), ":100\r\n");
    EXPECT_EQ(ask(c, {"SET", "k", "v", "PX", "50000"}), kOk);
    EXPECT_EQ(ask(c, {"TTL", "k"}), ":50\r\n");
    EXPECT_EQ(ask(c, {"SET", "k", "v2", "KEEPTTL"}), kOk);
    EXPECT_EQ(ask(c, {"TTL", "k"}), ":50\r\n");
    EXPECT_EQ(ask(c, {"SET", "k", "v3"}), kOk);  // a plain SET clears the TTL
    EXPECT_EQ(ask(c, {"TTL", "k"}), ":-1\r\n");
    const int64_t now_s = resp_now_ms() / 1000;
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EXAT", std::to_string(now_s + 1000)}), kOk);
    EXPECT_THAT(ask(c, {"TTL", "k"}), ::testing::AnyOf(":1000\r\n", ":999\r\n"));
    EXPECT_EQ(ask(c, {"SET", "k", "v", "PXAT", std::to_string(resp_now_ms() + 30000)}), kOk);
    EXPECT_THAT(ask(c, {"TTL", "k"}), ::testing::AnyOf(":30\r\n", ":29\r\n"));
    EXPECT_EQ(ask(c, {"SET", "k", "v", "PXAT", "1"}), kOk);  // in the past: gone at once
    EXPECT_EQ(ask(c, {"EXISTS", "k"}), ":0\r\n");
    const std::string bad_expire = "-ERR invalid expire time in 'set' command\r\n";
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "0"}), bad_expire);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "PX", "-5"}), bad_expire);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "9223372036854775807"}), bad_expire);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "ten"}), kNotInt);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX"}), kSyntax);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "NX", "XX"}), kSyntax);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "1", "PX", "1"}), kSyntax);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "KEEPTTL", "EX", "1"}), kSyntax);
    EXPECT_EQ(ask(c, {"SET", "k", "v", "EX", "1", "KEEPTTL"}), kSyntax);
    EXPECT_EQ(ask(c, {"set", "k", "v", "px", "100000", "nx"}), kOk);  // case-insensitive
  });
}

TEST_P(RespCommandsTest, SetVariantsAndGetVariants) {
  run([](RawClient& c, RespShared&) {
    EXPECT_EQ(ask(c, {"SETNX", "a", "1"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"SETNX", "a", "2"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"SETEX", "b", "100", "x"}), kOk);
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":100\r\n");
    EXPECT_EQ(ask(c, {"SETEX", "b", "0", "x"}), "-ERR invalid expire time in 'setex' command\r\n");
    EXPECT_EQ(ask(c, {"PSETEX", "b", "100000", "y"}), kOk);
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":100\r\n");
    EXPECT_EQ(ask(c, {"PSETEX", "b", "-1", "y"}),
              "-ERR invalid expire time in 'psetex' command\r\n");
    EXPECT_EQ(ask(c, {"GETSET", "b", "z"}), bulk("y"));
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":-1\r\n");
    EXPECT_EQ(ask(c, {"GETSET", "c", "z"}), kNil);
    EXPECT_EQ(ask(c, {"GETDEL", "c"}), bulk("z"));
    EXPECT_EQ(ask(c, {"GETDEL", "c"}), kNil);
    EXPECT_EQ(ask(c, {"GETEX", "b", "EX", "100"}), bulk("z"));
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":100\r\n");
    EXPECT_EQ(ask(c, {"GETEX", "b", "PERSIST"}), bulk("z"));
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":-1\r\n");
    EXPECT_EQ(ask(c, {"GETEX", "b", "PX", "100000"}), bulk("z"));
    EXPECT_EQ(ask(c, {"GETEX", "b"}), bulk("z"));
    EXPECT_EQ(ask(c, {"TTL", "b"}), ":100\r\n");
    EXPECT_EQ(ask(c, {"GETEX", "b", "EX"}), kSyntax);
    EXPECT_EQ(ask(c, {"GETEX", "b", "EX", "0"}), "-ERR invalid expire time in 'getex' command\r\n");
    EXPECT_EQ(ask(c, {"GETEX", "nope"}), kNil);
    EXPECT_EQ(ask(c, {"GETEX", "b", "PXAT", "1"}), bulk("z"));
    EXPECT_EQ(ask(c, {"GET", "b"}), kNil);
  });
}

TEST_P(RespCommandsTest, MultiKeyCommandsAcrossShards) {
  run([](RawClient& c, RespShared& shared) {
    const std::string a0 = key_owned_by(0, "a"), b0 = key_owned_by(0, "b" + a0);
    const std::string a1 = key_owned_by(1, "a");
    EXPECT_EQ(ask(c, {"MSET", a0, "1", b0, "2"}), kOk);
    EXPECT_EQ(ask(c, {"MSET", a1, "3"}), kOk);
    EXPECT_EQ(ask(c, {"MGET", a0, a1, "missing", b0}),
              "*4\r\n" + bulk("1") + bulk("3") + kNil + bulk("2"));
    EXPECT_THAT(ask(c, {"MSET", a0, "x", a1, "y"}), StartsWith("-CROSSSLOT "));
    EXPECT_EQ(ask(c, {"GET", a0}), bulk("1"));  // nothing was set
    EXPECT_EQ(ask(c, {"MSET", a0, "x", b0}),
              "-ERR wrong number of arguments for 'mset' command\r\n");
    EXPECT_EQ(ask(c, {"MSETNX", a0, "x", b0, "y"}), ":0\r\n");  // a0 exists: none set
    EXPECT_EQ(ask(c, {"GET", b0}), bulk("2"));
    EXPECT_EQ(ask(c, {"DEL", a0, b0}), ":2\r\n");
    EXPECT_EQ(ask(c, {"MSETNX", a0, "x", b0, "y"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"MGET", a0, b0}), "*2\r\n" + bulk("x") + bulk("y"));
    EXPECT_THAT(ask(c, {"MSETNX", a0, "x", a1, "y"}), StartsWith("-CROSSSLOT "));
    EXPECT_TRUE(shared.stores[1]->contains(a1));
    EXPECT_FALSE(shared.stores[0]->contains(a1));
  });
}

TEST_P(RespCommandsTest, CountersAndTheirOverflow) {
  run([](RawClient& c, RespShared&) {
    EXPECT_EQ(ask(c, {"INCRBY", "n", "10"}), ":10\r\n");
    EXPECT_EQ(ask(c, {"DECR", "n"}), ":9\r\n");
    EXPECT_EQ(ask(c, {"DECRBY", "n", "20"}), ":-11\r\n");
    EXPECT_EQ(ask(c, {"INCRBY", "n", "-1"}), ":-12\r\n");
    EXPECT_EQ(ask(c, {"INCRBY", "n", "x"}), kNotInt);
    EXPECT_EQ(ask(c, {"INCRBY", "n", "1.5"}), kNotInt);
    EXPECT_EQ(ask(c, {"INCRBY", "n", "99999999999999999999"}), kNotInt);
    const std::string overflow = "-ERR increment or decrement would overflow\r\n";
    EXPECT_EQ(ask(c, {"SET", "max", "9223372036854775806"}), kOk);
    EXPECT_EQ(ask(c, {"INCRBY", "max", "1"}), ":9223372036854775807\r\n");
    EXPECT_EQ(ask(c, {"INCRBY", "max", "1"}), overflow);
    EXPECT_EQ(ask(c, {"INCR", "max"}), overflow);
    EXPECT_EQ(ask(c, {"DECRBY", "max", "-1"}), overflow);
    EXPECT_EQ(ask(c, {"GET", "max"}), bulk("9223372036854775807"));
    EXPECT_EQ(ask(c, {"SET", "min", "-9223372036854775807"}), kOk);
    EXPECT_EQ(ask(c, {"DECR", "min"}), ":-9223372036854775808\r\n");
    EXPECT_EQ(ask(c, {"DECR", "min"}), overflow);
    EXPECT_EQ(ask(c, {"INCRBY", "min", "-1"}), overflow);
    EXPECT_EQ(ask(c, {"DECRBY", "zero", "-9223372036854775808"}),
              "-ERR decrement would overflow\r\n");
    EXPECT_EQ(ask(c, {"INCRBY", "zero", "-9223372036854775808"}), ":-9223372036854775808\r\n");
    EXPECT_EQ(ask(c, {"SET", "t", "5", "EX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"INCR", "t"}), ":6\r\n");
    EXPECT_EQ(ask(c, {"TTL", "t"}), ":100\r\n");  // INCR keeps the expiry
    EXPECT_EQ(ask(c, {"SET", "f", "10.5"}), kOk);
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "f", "0.1"}), bulk("10.6"));
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "f", "-5"}), bulk("5.6"));
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "g", "3"}), bulk("3"));
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "g", "5.0e3"}), bulk("5003"));
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "g", "abc"}), "-ERR value is not a valid float\r\n");
    EXPECT_EQ(ask(c, {"SET", "s", "text"}), kOk);
    EXPECT_EQ(ask(c, {"INCRBYFLOAT", "s", "1"}), "-ERR value is not a valid float\r\n");
    EXPECT_EQ(ask(c, {"INCR", "s"}), kNotInt);
  });
}

TEST_P(RespCommandsTest, AppendStrlenAndRanges) {
  run([](RawClient& c, RespShared&) {
    EXPECT_EQ(ask(c, {"APPEND", "s", "Hello"}), ":5\r\n");
    EXPECT_EQ(ask(c, {"APPEND", "s", " World"}), ":11\r\n");
    EXPECT_EQ(ask(c, {"STRLEN", "s"}), ":11\r\n");
    EXPECT_EQ(ask(c, {"STRLEN", "none"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "0", "4"}), bulk("Hello"));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "-5", "-1"}), bulk("World"));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "0", "-1"}), bulk("Hello World"));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "5", "100"}), bulk(" World"));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "-1", "-5"}), bulk(""));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "7", "3"}), bulk(""));
    EXPECT_EQ(ask(c, {"GETRANGE", "none", "0", "-1"}), bulk(""));
    EXPECT_EQ(ask(c, {"GETRANGE", "s", "a", "1"}), kNotInt);
    EXPECT_EQ(ask(c, {"SETRANGE", "s", "6", "Redis"}), ":11\r\n");
    EXPECT_EQ(ask(c, {"GET", "s"}), bulk("Hello Redis"));
    EXPECT_EQ(ask(c, {"SETRANGE", "p", "3", "x"}), ":4\r\n");
    EXPECT_EQ(ask(c, {"GET", "p"}), bulk(std::string("\0\0\0x", 4)));
    EXPECT_EQ(ask(c, {"SETRANGE", "q", "3", ""}), ":0\r\n");
    EXPECT_EQ(ask(c, {"EXISTS", "q"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"SETRANGE", "s", "-1", "x"}), "-ERR offset is out of range\r\n");
    const std::string too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n";
    EXPECT_EQ(ask(c, {"SETRANGE", "s", "1048576", "x"}), too_big);  // past max_bulk_bytes
    EXPECT_EQ(ask(c, {"SET", "big", std::string(1048570, 'b')}), kOk);
    EXPECT_EQ(ask(c, {"APPEND", "big", "0123456789"}), too_big);
  });
}

TEST_P(RespCommandsTest, TypeRenameAndExpiryCommands) {
  run([](RawClient& c, RespShared& shared) {
    const std::string k0 = key_owned_by(0, "k"), k1 = key_owned_by(1, "k");
    const std::string j0 = key_owned_by(0, "j" + k0);
    EXPECT_EQ(ask(c, {"TYPE", k0}), "+none\r\n");
    EXPECT_EQ(ask(c, {"SET", k0, "v", "EX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"TYPE", k0}), "+string\r\n");
    EXPECT_EQ(ask(c, {"RENAME", k0, j0}), kOk);  // within a shard, the TTL kept
    EXPECT_EQ(ask(c, {"TTL", j0}), ":100\r\n");
    EXPECT_EQ(ask(c, {"RENAME", j0, k1}), kOk);  // across shards
    EXPECT_EQ(ask(c, {"GET", k1}), bulk("v"));
    EXPECT_EQ(ask(c, {"TTL", k1}), ":100\r\n");
    EXPECT_EQ(ask(c, {"EXISTS", j0}), ":0\r\n");
    EXPECT_TRUE(shared.stores[1]->contains(k1));
    EXPECT_EQ(shared.stores[0]->size(), 0u);
    EXPECT_EQ(ask(c, {"RENAME", "nope", k1}), "-ERR no such key\r\n");
    EXPECT_EQ(ask(c, {"RENAME", k1, k1}), kOk);
    EXPECT_EQ(ask(c, {"GET", k1}), bulk("v"));

    EXPECT_EQ(ask(c, {"PERSIST", k1}), ":1\r\n");
    EXPECT_EQ(ask(c, {"PERSIST", k1}), ":0\r\n");
    EXPECT_EQ(ask(c, {"TTL", k1}), ":-1\r\n");
    EXPECT_EQ(ask(c, {"TTL", "nope"}), ":-2\r\n");
    EXPECT_EQ(ask(c, {"PTTL", "nope"}), ":-2\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", "nope", "10"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "10"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"TTL", k1}), ":10\r\n");
    const std::string pttl = ask(c, {"PTTL", k1});
    EXPECT_THAT(pttl, StartsWith(":"));
    EXPECT_GT(std::stol(pttl.substr(1)), 9000);
    EXPECT_LE(std::stol(pttl.substr(1)), 10000);
    EXPECT_EQ(ask(c, {"PEXPIRE", k1, "20000"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"TTL", k1}), ":20\r\n");
    EXPECT_EQ(ask(c, {"EXPIREAT", k1, std::to_string(resp_now_ms() / 1000 + 300)}), ":1\r\n");
    EXPECT_THAT(ask(c, {"TTL", k1}), ::testing::AnyOf(":300\r\n", ":299\r\n"));
    EXPECT_EQ(ask(c, {"PEXPIREAT", k1, std::to_string(resp_now_ms() + 40000)}), ":1\r\n");
    EXPECT_EQ(ask(c, {"TTL", k1}), ":40\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "50", "NX"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "50", "XX"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "40", "GT"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "60", "GT"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "70", "LT"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "30", "LT"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"TTL", k1}), ":30\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "30", "NX", "XX"}),
              "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "30", "GT", "LT"}),
              "-ERR GT and LT options at the same time are not compatible\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "30", "SOON"}), "-ERR Unsupported option SOON\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "x"}), kNotInt);
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "9223372036854775807"}),
              "-ERR invalid expire time in 'expire' command\r\n");
    EXPECT_EQ(ask(c, {"EXPIRE", k1, "-1"}), ":1\r\n");  // in the past: removed
    EXPECT_EQ(ask(c, {"EXISTS", k1}), ":0\r\n");
  });
}

// A key past its expiry is never returned, and the shard's expiry fiber removes it without
// anyone asking for it.
TEST_P(RespCommandsTest, ExpiredKeysAreGoneAndRemovedInTheBackground) {
  run([](RawClient& c, RespShared& shared) {
    const std::string k0 = key_owned_by(0, "e"), k1 = key_owned_by(1, "e");
    EXPECT_EQ(ask(c, {"SET", k0, "v", "PX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"SET", k1, "v", "PX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"SET", "stays", "v", "EX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"GET", k0}), bulk("v"));
    ASSERT_TRUE(reactor::sleep_for(200ms).ok());
    EXPECT_EQ(ask(c, {"GET", k0}), kNil);  // the lazy check, or already removed
    // k1 is never asked for: only the background removal takes it.
    const reactor::Deadline until = reactor::deadline_after(2s);
    while (shared.stores[1]->key_count() + shared.stores[0]->key_count() > 1 &&
           reactor::Clock::now() < until) {
      ASSERT_TRUE(reactor::sleep_for(5ms).ok());
    }
    EXPECT_EQ(ask(c, {"DBSIZE"}), ":1\r\n");
    EXPECT_EQ(ask(c, {"EXISTS", "stays"}), ":1\r\n");
    EXPECT_EQ(shared.stores[0]->stats().expired.get() + shared.stores[1]->stats().expired.get(),
              2u);
    EXPECT_EQ(ask(c, {"PTTL", k1}), ":-2\r\n");
  });
}

TEST_P(RespCommandsTest, KeysScanAndFlush) {
  run([](RawClient& c, RespShared&) {
    std::set<std::string> all;
    for (int i = 0; i < 300; ++i) {
      const std::string k = (i % 3 == 0 ? "user:" : "item:") + std::to_string(i);
      ASSERT_EQ(ask(c, {"SET", k, "v"}), kOk);
      all.insert(k);
    }
    EXPECT_EQ(ask(c, {"SET", "h?llo", "v"}), kOk);
    EXPECT_EQ(ask(c, {"KEYS", "h\\?llo"}), "*1\r\n" + bulk("h?llo"));
    EXPECT_EQ(ask(c, {"KEYS", "h[^a]llo"}), "*1\r\n" + bulk("h?llo"));
    EXPECT_THAT(ask(c, {"KEYS", "user:1?"}), StartsWith("*3\r\n"));  // 12, 15, 18
    EXPECT_EQ(ask(c, {"DEL", "h?llo"}), ":1\r\n");
    const std::string keys = ask(c, {"KEYS", "*"});
    EXPECT_THAT(keys, StartsWith("*300\r\n"));
    EXPECT_THAT(ask(c, {"KEYS", "user:*"}), StartsWith("*100\r\n"));
    EXPECT_EQ(ask(c, {"KEYS", "nothing*"}), "*0\r\n");

    // SCAN walks both shards; every key is returned at least once, the MATCH filter applied.
    auto scan_all = [&](std::vector<std::string> extra) {
      std::set<std::string> seen;
      std::string cursor = "0";
      int steps = 0;
      do {
        std::vector<std::string> cmd = {"SCAN", cursor};
        cmd.insert(cmd.end(), extra.begin(), extra.end());
        EXPECT_TRUE(c.send(multibulk(cmd)));
        // *2 $n cursor *m ...
        EXPECT_EQ(c.take(4), "*2\r\n");
        std::string head = read_reply(c);
        cursor = head.substr(head.find("\r\n") + 2);
        cursor.resize(cursor.size() - 2);
        std::string arr = read_reply(c);
        size_t pos = arr.find("\r\n") + 2;
        while (pos < arr.size()) {
          const size_t eol = arr.find("\r\n", pos);
          const size_t n = std::stoul(arr.substr(pos + 1, eol - pos - 1));
          seen.insert(arr.substr(eol + 2, n));
          pos = eol + 2 + n + 2;
        }
        ++steps;
      } while (cursor != "0" && steps < 10000);
      return std::make_pair(seen, steps);
    };
    auto [seen, steps] = scan_all({});
    EXPECT_EQ(seen, all);
    EXPECT_GT(steps, 2);
    auto [users, steps2] = scan_all({"MATCH", "user:*", "COUNT", "1000"});
    EXPECT_EQ(users.size(), 100u);
    for (const std::string& u : users) EXPECT_THAT(u, StartsWith("user:"));
    EXPECT_LE(steps2, 4);
    auto [none, steps3] = scan_all({"TYPE", "list"});
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(ask(c, {"SCAN", "0", "COUNT", "0"}), kSyntax);
    EXPECT_EQ(ask(c, {"SCAN", "x"}), "-ERR invalid cursor\r\n");
    EXPECT_EQ(ask(c, {"SCAN", "0", "MATCH"}), kSyntax);

    EXPECT_EQ(ask(c, {"DBSIZE"}), ":300\r\n");
    EXPECT_EQ(ask(c, {"FLUSHDB"}), kOk);
    EXPECT_EQ(ask(c, {"DBSIZE"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"SET", "a", "b"}), kOk);
    EXPECT_EQ(ask(c, {"FLUSHALL", "ASYNC"}), kOk);
    EXPECT_EQ(ask(c, {"FLUSHALL", "LATER"}), kSyntax);
    EXPECT_EQ(ask(c, {"DBSIZE"}), ":0\r\n");
    EXPECT_EQ(ask(c, {"SELECT", "0"}), kOk);
    EXPECT_EQ(ask(c, {"SELECT", "1"}), "-ERR DB index is out of range\r\n");
    EXPECT_EQ(ask(c, {"SELECT", "x"}), kNotInt);
  });
}

TEST(RespGlob, MatchesAsRedis) {
  EXPECT_TRUE(resp_glob_match("*", ""));
  EXPECT_TRUE(resp_glob_match("h?llo", "hello"));
  EXPECT_FALSE(resp_glob_match("h?llo", "hllo"));
  EXPECT_TRUE(resp_glob_match("h*llo", "hllo"));
  EXPECT_TRUE(resp_glob_match("h*llo", "heeeello"));
  EXPECT_TRUE(resp_glob_match("h[ae]llo", "hallo"));
  EXPECT_FALSE(resp_glob_match("h[ae]llo", "hillo"));
  EXPECT_TRUE(resp_glob_match("h[^e]llo", "hallo"));
  EXPECT_FALSE(resp_glob_match("h[^e]llo", "hello"));
  EXPECT_TRUE(resp_glob_match("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(resp_glob_match("h[b-a]llo", "hallo"));  // a reversed range, as Redis
  EXPECT_FALSE(resp_glob_match("h[a-b]llo", "hcllo"));
  EXPECT_TRUE(resp_glob_match("h\\*llo", "h*llo"));
  EXPECT_FALSE(resp_glob_match("h\\*llo", "hello"));
  EXPECT_TRUE(resp_glob_match("[\\]]", "]"));
  EXPECT_TRUE(resp_glob_match("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(resp_glob_match("a*b*c", "aXXbYY"));
  EXPECT_TRUE(resp_glob_match("*.txt", "a.b.txt"));
  EXPECT_FALSE(resp_glob_match("abc", "abcd"));
  EXPECT_TRUE(resp_glob_match("ab\\", "ab\\"));
  // No exponential backtracking.
  EXPECT_FALSE(resp_glob_match("a*a*a*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST_P(RespCommandsTest, HelloClientInfoAndCommand) {
  run([](RawClient& c, RespShared&) {
    const std::string hello = ask(c, {"HELLO", "2"});
    EXPECT_THAT(hello, StartsWith("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"));
    EXPECT_THAT(hello, HasSubstr("$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:"));
    EXPECT_EQ(ask(c, {"HELLO", "3"}), "-NOPROTO unsupported protocol version\r\n");
    EXPECT_EQ(ask(c, {"HELLO", "x"}),
              "-ERR Protocol version is not an integer or out of range\r\n");
    EXPECT_THAT(ask(c, {"HELLO", "2", "SETNAME", "viahello"}), StartsWith("*14\r\n"));
    EXPECT_EQ(ask(c, {"CLIENT", "GETNAME"}), bulk("viahello"));
    EXPECT_EQ(ask(c, {"CLIENT", "SETNAME", "worker-1"}), kOk);
    EXPECT_EQ(ask(c, {"CLIENT", "GETNAME"}), bulk("worker-1"));
    EXPECT_EQ(ask(c, {"CLIENT", "SETNAME", "has space"}),
              "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
    const std::string id = ask(c, {"CLIENT", "ID"});
    EXPECT_THAT(id, StartsWith(":"));
    EXPECT_THAT(hello, HasSubstr("$2\r\nid\r\n" + id));
    EXPECT_EQ(ask(c, {"CLIENT", "SETINFO", "LIB-NAME", "redis-py"}), kOk);
    EXPECT_EQ(ask(c, {"CLIENT", "SETINFO", "lib-ver", "4.3.4"}), kOk);
    EXPECT_EQ(ask(c, {"CLIENT", "SETINFO", "color", "red"}),
              "-ERR Unrecognized option 'color'\r\n");
    EXPECT_EQ(ask(c, {"CLIENT", "KILL"}), "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n");
    EXPECT_EQ(ask(c, {"CLIENT", "ID", "x"}),
              "-ERR wrong number of arguments for 'client|id' command\r\n");

    EXPECT_EQ(ask(c, {"SET", "a", "1", "EX", "100"}), kOk);
    EXPECT_EQ(ask(c, {"SET", "b", "2"}), kOk);
    EXPECT_EQ(ask(c, {"GET", "b"}), bulk("2"));
    EXPECT_EQ(ask(c, {"GET", "zz"}), kNil);
    const std::string info = ask(c, {"INFO"});
    for (const char* line :
         {"# Server\r\nredis_version:7.0.0\r\n", "\r\n\r\n# Clients\r\nconnected_clients:1\r\n",
          "\r\n\r\n# Memory\r\nused_memory:", "\r\nmaxmemory:0\r\n",
          "\r\n\r\n# Stats\r\ntotal_connections_received:1\r\n", "\r\nkeyspace_hits:1\r\n",
          "\r\nkeyspace_misses:1\r\n",
          "\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n"}) {
      EXPECT_THAT(info, HasSubstr(line));
    }
    const std::string memory = ask(c, {"INFO", "memory"});
    EXPECT_THAT(memory, HasSubstr("# Memory\r\n"));
    EXPECT_THAT(memory, ::testing::Not(HasSubstr("# Server")));
    EXPECT_EQ(ask(c, {"INFO", "nosuch"}), bulk(""));

    const std::string count = ask(c, {"COMMAND", "COUNT"});
    EXPECT_THAT(count, StartsWith(":"));
    EXPECT_GT(std::stol(count.substr(1)), 40);
    EXPECT_EQ(ask(c, {"COMMAND", "INFO", "get", "nosuch"}),
              "*2\r\n*6\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n$-1\r\n");
    EXPECT_EQ(ask(c, {"COMMAND", "INFO", "mset"}),
              "*1\r\n*6\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n");
    EXPECT_EQ(ask(c, {"COMMAND", "DOCS", "get"}), "*0\r\n");
    EXPECT_THAT(ask(c, {"COMMAND"}), StartsWith("*" + count.substr(1)));
    EXPECT_EQ(ask(c, {"COMMAND", "BOGUS"}),
              "-ERR unknown subcommand 'BOGUS'. Try COMMAND HELP.\r\n");
  });
}

// Past max_memory_bytes, writes are refused with Redis' OOM error and reads still work; freeing
// memory makes writes work again.
TEST_P(RespCommandsTest, MemoryCapRefusesWritesOnly) {
  run([](RawClient& c, RespShared& shared) {
    shared.max_memory_bytes = 64 * 1024;
    const std::string value(1000, 'v');
    const std::string oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
    int stored = 0;
    for (; stored < 1000; ++stored) {
      const std::string r = ask(c, {"SET", "k" + std::to_string(stored), value});
      if (r != kOk) {
        EXPECT_EQ(r, oom);
        break;
      }
    }
    EXPECT_GT(stored, 40);
    EXPECT_LT(stored, 66);
    // Never past the cap by more than one value and its key's overhead.
    EXPECT_LE(shared.used_memory(), 64 * 1024 + value.size() + 16 + RespStore::kEntryOverhead);
    EXPECT_GT(shared.used_memory(), 64 * 1024u);
    for (const char* w : {"SET", "APPEND", "SETNX", "GETSET"})
      EXPECT_EQ(ask(c, {w, "k0", "x"}), oom) << w;
    EXPECT_EQ(ask(c, {"INCR", "n"}), oom);
    EXPECT_EQ(ask(c, {"MSET", "n", "1"}), oom);
    EXPECT_EQ(ask(c, {"GET", "k0"}), bulk(value));
    EXPECT_EQ(ask(c, {"EXISTS", "k1"}), ":1\r\n");
    EXPECT_THAT(ask(c, {"INFO", "memory"}), HasSubstr("\r\nmaxmemory:65536\r\n"));
    EXPECT_EQ(ask(c, {"DEL", "k0", "k1"}), ":2\r\n");
    EXPECT_EQ(ask(c, {"SET", "k0", "small"}), kOk);
    EXPECT_EQ(ask(c, {"FLUSHALL"}), kOk);
    EXPECT_EQ(shared.used_memory(), 0u);
    shared.max_memory_bytes = 0;
    EXPECT_EQ(ask(c, {"SET", "k", value}), kOk);
  });
}

// Memory accounting follows every change of a value's size and ends at zero.
TEST(RespStoreTest, AccountsKeyValueAndOverhead) {
  RespStore s;
  s.set("key", "value");
  EXPECT_EQ(s.used_memory(), 3 + 5 + RespStore::kEntryOverhead);
  s.set("key", "v");
  EXPECT_EQ(s.used_memory(), 3 + 1 + RespStore::kEntryOverhead);
  s.update("key", [](std::string& v) { v.append(9, 'x'); });
  EXPECT_EQ(s.used_memory(), 3 + 10 + RespStore::kEntryOverhead);
  s.set("other", "1", resp_now_ms() + 100000);
  EXPECT_EQ(s.expires_count(), 1u);
  EXPECT_EQ(s.key_count(), 2u);
  std::optional<RespEntry> e = s.take("other");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(s.expires_count(), 0u);
  EXPECT_TRUE(s.erase("key"));
  EXPECT_EQ(s.used_memory(), 0u);
  for (int i = 0; i < 2500; ++i) s.set("e" + std::to_string(i), "v", resp_now_ms() - 1 + 2);
  s.set("later", "v", resp_now_ms() + 100000);
  // Bounded batches: at most `max` per call.
  EXPECT_EQ(s.expire_due(resp_now_ms() + 10, 1000), 1000u);
  EXPECT_EQ(s.expire_due(resp_now_ms() + 10, 1000), 1000u);
  EXPECT_EQ(s.expire_due(resp_now_ms() + 10, 1000), 500u);
  EXPECT_EQ(s.key_count(), 1u);
  s.clear();
  EXPECT_EQ(s.used_memory(), 0u);
}

// On a loop, clear() empties the store at once and frees the entries in the background, a bounded
// number per slice, still counting their memory until they are freed; keys set meanwhile stay.
TEST(RespStoreTest, ClearFreesInTheBackgroundInBoundedSlices) {
  reactor::test::run_fiber([] {
    RespStore s;
    constexpr size_t kKeys = 5 * RespStore::kFreeBatch;
    for (size_t i = 0; i < kKeys; ++i)
      s.set("k" + std::to_string(i), "v", i % 2 ? resp_now_ms() + 100000 : 0);
    const size_t used = s.used_memory();
    s.clear();
    EXPECT_EQ(s.size(), 0u);
    EXPECT_EQ(s.key_count(), 0u);
    EXPECT_EQ(s.expires_count(), 0u);
    EXPECT_EQ(s.pending_free(), kKeys);
    EXPECT_EQ(s.used_memory(), used);
    EXPECT_EQ(s.peek("k1"), nullptr);
    s.set("new", "v");
    s.clear();  // a second clear while the first is being freed
    EXPECT_EQ(s.pending_free(), kKeys + 1);
    s.set("kept", "v", resp_now_ms() + 100000);
    // One slice frees at most kFreeBatch entries (index entries first, then keys).
    reactor::yield();
    EXPECT_GT(s.pending_free(), kKeys - RespStore::kFreeBatch);
    const reactor::Deadline until = reactor::deadline_after(5s);
    while (s.pending_free() > 0 && reactor::Clock::now() < until) reactor::yield();
    EXPECT_EQ(s.pending_free(), 0u);
    EXPECT_EQ(s.used_memory(), 4 + 1 + RespStore::kEntryOverhead);
    EXPECT_EQ(s.size(), 1u);
    EXPECT_NE(s.peek("kept"), nullptr);
    EXPECT_EQ(s.expires_count(), 1u);
  });
}

// Past its threshold the table grows incrementally: every change of the insert table's size is
// the start of a growth (never a rehash of every node in one insert), nodes move a few per insert,
// and meanwhile every key stays readable, expires, is counted, found by KEYS and by a SCAN walk
// whose steps straddle the growth, and cleared with its memory.
TEST(RespStoreTest, GrowsIncrementallyPastItsThreshold) {
  constexpr size_t kFrom = 1024;
  constexpr size_t kKeys = 40000;
  RespStore s(kFrom);
  const auto key = [](size_t i) { return "key:" + std::to_string(i); };
  size_t growths = 0, grew_while_growing = 0;
  std::vector<std::string> scanned;
  uint64_t cursor = 0;
  bool scan_started = false;
  for (size_t i = 0; i < kKeys; ++i) {
    const size_t buckets = s.table_buckets();
    const bool was_growing = s.growing();
    s.set(key(i), std::to_string(i), i % 7 == 0 ? resp_now_ms() + 100000 : 0);
    if (s.table_buckets() != buckets && s.size() > kFrom) {
      EXPECT_TRUE(s.growing()) << "a full rehash at " << s.size() << " keys";
      EXPECT_FALSE(was_growing) << "the new table grew before the old one emptied";
      ++growths;
    }
    if (was_growing && s.growing()) ++grew_while_growing;
    // A SCAN started once the first 20,000 keys are in, one step of 50 buckets per 10 inserts.
    if (i == kKeys / 2) scan_started = true;
    if (scan_started && i % 10 == 0 && (cursor != 0 || scanned.empty())) {
      cursor = s.scan(cursor, "", 50, scanned);
      if (cursor == 0) scan_started = false;
    }
  }
  EXPECT_GE(growths, 4u);  // 1024 -> 40,000 keys: several doublings, each incremental
  EXPECT_GT(grew_while_growing, 0u);
  while (scan_started && cursor != 0) cursor = s.scan(cursor, "", 50, scanned);
  // Every key present since the scan began was returned (repeats allowed).
  std::set<std::string> seen(scanned.begin(), scanned.end());
  for (size_t i = 0; i <= kKeys / 2; ++i) ASSERT_TRUE(seen.count(key(i))) << key(i);
  EXPECT_EQ(s.size(), kKeys);
  EXPECT_EQ(s.key_count(), kKeys);
  EXPECT_EQ(s.keys("key:1????").size(), 10000u);
  for (size_t i = 0; i < kKeys; i += 97) {
    const RespEntry* e = s.peek(key(i));
    ASSERT_NE(e, nullptr) << key(i);
    EXPECT_EQ(e->value, std::to_string(i));
  }
  // Keys in either table expire: every seventh is due at now + 100 s.
  EXPECT_EQ(s.expire_due(resp_now_ms() + 200000, kKeys), (kKeys + 6) / 7);
  EXPECT_EQ(s.key_count(), kKeys - (kKeys + 6) / 7);
  s.clear();  // no loop: freed at once, both tables
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.used_memory(), 0u);
  EXPECT_FALSE(s.growing());
}

// On a loop the growth finishes without further inserts: the resp-grow fiber moves the rest.
TEST(RespStoreTest, GrowthFinishesInTheBackground) {
  reactor::test::run_fiber([] {
    RespStore s(1024);
    size_t i = 0;
    while (!s.growing() && i < 100000) s.set("k" + std::to_string(i++), "v");
    ASSERT_TRUE(s.growing()) << i << " keys and no growth";
    const size_t keys = s.size();
    const reactor::Deadline until = reactor::deadline_after(5s);
    while (s.growing() && reactor::Clock::now() < until) reactor::yield();
    EXPECT_FALSE(s.growing());
    EXPECT_EQ(s.size(), keys);
    for (size_t j = 0; j < keys; ++j) ASSERT_NE(s.peek("k" + std::to_string(j)), nullptr) << j;
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, RespCommandsTest,
                         ::testing::ValuesIn(reactor::test::available_backends()),
                         reactor::test::backend_test_name);

}  // namespace
}  // namespace reactord
