// The resp service's real handler in-process, on every available backend: each command and its
// errors, pipelining, protocol limits, exact stats, and keys owned by another shard reached across
// two reactors on two threads; plus the idle timeout and drain scenarios of
// tests/service_scenarios.h.
#include "services/resp.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reactor/call_on.h"
#include "reactor/reactor.h"
#include "tests/service_scenarios.h"
#include "tests/service_test_util.h"
#include "tests/test_util.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
using reactor::test::RawClient;
using reactor::test::TestServer;

std::string multibulk(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

std::unique_ptr<RespShared> make_shared_stores(size_t shards) {
  auto shared = std::make_unique<RespShared>();
  for (size_t i = 0; i < shards; ++i) shared->stores.push_back(std::make_unique<RespStore>());
  return shared;
}

// Serves with a copy of `o` and a store of its own, as one shard does.
ConnectionHandler resp_handler(RespOptions o) {
  std::shared_ptr<RespShared> shared = make_shared_stores(1);
  return [o = std::move(o), shared](Connection& c) { serve_resp(c, o, *shared); };
}

// Sends `request` and expects exactly `reply` back.
void expect_reply(RawClient& c, const std::string& request, const std::string& reply) {
  ASSERT_TRUE(c.send(request));
  EXPECT_EQ(c.take(reply.size()), reply) << "request: " << request;
}

// One inline PING answered PONG.
void ping(RawClient& c) {
  expect_reply(c, "PING\r\n", "+PONG\r\n");
}

// A key that resp_key_owner puts on `shard` of `shards`.
std::string key_owned_by(size_t shard, size_t shards, const std::string& prefix) {
  for (int i = 0;; ++i) {
    std::string k = prefix + std::to_string(i);
    if (resp_key_owner(k, shards) == shard) return k;
  }
}

class RespServiceTest : public reactor::test::BackendTest {};

const reactor::test::ServiceScenario kResp{
    .handler = [](reactor::Duration idle) { return resp_handler({.idle_timeout = idle}); },
    .exchange = ping,
    .half = "*2\r\n$4\r\nECHO\r\n",
    .finish = [](RawClient& busy) { expect_reply(busy, "$2\r\nhi\r\n", "$2\r\nhi\r\n"); },
};

REACTOR_SERVICE_SCENARIOS(Resp, kResp);

TEST_P(RespServiceTest, CommandsRepliesAndExactStats) {
  run([] {
    TestServer server(resp_handler({}));
    RawClient c(server.address());
    int commands = 0;
    auto check = [&](const std::string& request, const std::string& reply) {
      ++commands;
      expect_reply(c, request, reply);
    };
    check(multibulk({"PING"}), "+PONG\r\n");
    check("PING\r\n", "+PONG\r\n");
    check(multibulk({"pInG", "hi there"}), "$8\r\nhi there\r\n");
    check(multibulk({"PING", "a", "b"}), "-ERR wrong number of arguments for 'ping' command\r\n");
    check(multibulk({"ECHO", std::string("bin\0\r\n", 6)}), std::string("$6\r\nbin\0\r\n\r\n", 12));
    check(multibulk({"ECHO"}), "-ERR wrong number of arguments for 'echo' command\r\n");
    check(multibulk({"GET", "k"}), "$-1\r\n");
    check(multibulk({"SET", "k", "v1"}), "+OK\r\n");
    check(multibulk({"GET", "k"}), "$2\r\nv1\r\n");
    check("set k v2\r\n", "+OK\r\n");
    check("get k\r\n", "$2\r\nv2\r\n");
    check(multibulk({"SET", "k"}), "-ERR wrong number of arguments for 'set' command\r\n");
    check(multibulk({"SET", "k", "v", "EX", "10", "PX", "5"}), "-ERR syntax error\r\n");
    check(multibulk({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
    check(multibulk({"EXISTS", "k", "nope", "k"}), ":2\r\n");
    check(multibulk({"INCR", "n"}), ":1\r\n");
    check(multibulk({"INCR", "n"}), ":2\r\n");
    check(multibulk({"INCR", "k"}), "-ERR value is not an integer or out of range\r\n");
    check(multibulk({"SET", "big", "9223372036854775807"}), "+OK\r\n");
    check(multibulk({"INCR", "big"}), "-ERR increment or decrement would overflow\r\n");
    check(multibulk({"SET", "neg", "-5"}), "+OK\r\n");
    check(multibulk({"INCR", "neg"}), ":-4\r\n");
    check(multibulk({"SET", "lead", "007"}), "+OK\r\n");
    check(multibulk({"INCR", "lead"}), "-ERR value is not an integer or out of range\r\n");
    check(multibulk({"DBSIZE"}), ":5\r\n");
    check(multibulk({"DEL", "k", "n", "nope"}), ":2\r\n");
    check(multibulk({"DEL"}), "-ERR wrong number of arguments for 'del' command\r\n");
    check(multibulk({"DBSIZE"}), ":3\r\n");
    check(multibulk({"COMMAND", "DOCS"}), "*0\r\n");
    check(multibulk({"LPUSH", "x\r\ny"}),
          "-ERR unknown command 'LPUSH', with args beginning with: 'x  y' \r\n");
    check(multibulk({"QUIT"}), "+OK\r\n");
    EXPECT_TRUE(c.at_eof());
    c.close();
    server.wait_closed(1);
    EXPECT_TRUE(server.totals_are(commands, c.sent(), c.received()));
  });
}

// Every command's accepted argument counts, at both ends: one fewer or one more gets Redis'
// arity error (SET's unknown options a syntax error), and nothing else is refused.
TEST_P(RespServiceTest, ArgumentCountsOfEveryCommand) {
  run([] {
    TestServer server(resp_handler({}));
    RawClient c(server.address());
    auto arity = [](const std::string& name) {
      return "-ERR wrong number of arguments for '" + name + "' command\r\n";
    };
    expect_reply(c, multibulk({"PING", "a", "b"}), arity("ping"));
    expect_reply(c, multibulk({"ECHO"}), arity("echo"));
    expect_reply(c, multibulk({"ECHO", "a", "b"}), arity("echo"));
    expect_reply(c, multibulk({"SET", "k"}), arity("set"));
    expect_reply(c, multibulk({"SET", "k", "v", "NOPE"}), "-ERR syntax error\r\n");
    expect_reply(c, multibulk({"GET"}), arity("get"));
    expect_reply(c, multibulk({"GET", "k", "k"}), arity("get"));
    expect_reply(c, multibulk({"DEL"}), arity("del"));
    expect_reply(c, multibulk({"EXISTS"}), arity("exists"));
    expect_reply(c, multibulk({"INCR"}), arity("incr"));
    expect_reply(c, multibulk({"INCR", "n", "n"}), arity("incr"));
    expect_reply(c, multibulk({"DBSIZE", "x"}), arity("dbsize"));
    expect_reply(c, multibulk({"dbSize"}), ":0\r\n");  // nothing above reached the store
    expect_reply(c, multibulk({"DEL", "a", "b", "c", "d", "e"}), ":0\r\n");
    expect_reply(c, multibulk({"EXISTS", "a", "b", "c", "d", "e"}), ":0\r\n");
    expect_reply(c, multibulk({"COMMAND", "COUNT", "x", "y"}), arity("command|count"));
    expect_reply(c, multibulk({"QUIT", "now", "please"}), "+OK\r\n");
    EXPECT_TRUE(c.at_eof());
  });
}

// The store belongs to the first thread that uses it: a second thread is a broken invariant.
TEST(RespStoreDeathTest, UseFromAnotherThreadAborts) {
  if (!reactor::kCheckThreads) GTEST_SKIP() << "the loop-thread check is compiled out";
  EXPECT_DEATH(
      {
        RespStore store;
        store.set("k", "v");
        std::thread([&] { (void)store.contains("k"); }).join();
      },
      "RespStore used from a thread other than its loop's");
}

TEST_P(RespServiceTest, PipelinedBurstAnsweredInOrder) {
  run([] {
    TestServer server(resp_handler({}));
    RawClient c(server.address());
    std::string burst, expected;
    const int kRounds = 200;
    for (int i = 0; i < kRounds; ++i) {
      const std::string key = "key:" + std::to_string(i);
      const std::string value = std::string(static_cast<size_t>(i % 50), 'v');
      burst += multibulk({"SET", key, value});
      expected += "+OK\r\n";
      burst += (i % 2 == 0) ? "PING\r\n" : multibulk({"PING"});
      expected += "+PONG\r\n";
      burst += multibulk({"GET", key});
      expected += "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
    }
    ASSERT_TRUE(c.send(burst));
    EXPECT_EQ(c.take(expected.size()), expected);
    c.close();
    server.wait_closed(1);
    EXPECT_TRUE(server.totals_are(3 * kRounds, burst.size(), expected.size()));
  });
}

TEST_P(RespServiceTest, ProtocolErrorsAndLimitsClose) {
  run([] {
    TestServer server(resp_handler({.max_bulk_bytes = 64, .max_array_len = 4}));
    struct Case {
      std::string request;
      std::string error;
    };
    const std::vector<Case> cases = {
        {multibulk({"SET", "k", std::string(65, 'v')}), "invalid bulk length"},
        {multibulk({"DEL", "a", "b", "c", "d"}), "invalid multibulk length"},
        {"*1\r\n+PING\r\n", "expected '$', got '+'"},
        {"PING " + std::string(70000, 'x') + "\r\n", "too big inline request"},
    };
    reactor::test::expect_each_case_closes(server, cases, 2, [](RawClient& c, const Case& k) {
      // The command before the error is answered first.
      const std::string reply = "+PONG\r\n-ERR Protocol error: " + k.error + "\r\n";
      (void)c.send("PING\r\n" + k.request);  // the server may close before taking it all
      EXPECT_EQ(c.take(reply.size()), reply);
      EXPECT_TRUE(c.at_eof());
    });
  });
}

// Two shards: this reactor (0) and one on another thread (1), each serving connections. Keys
// owned by either shard are set through one and read through the other.
TEST_P(RespServiceTest, KeysOwnedByAnotherShard) {
  const std::string backend = GetParam();
  std::atomic<reactor::Reactor*> other{nullptr};
  std::atomic<bool> quit{false};
  std::thread thread([&] {
    reactor::Reactor::Options options;
    options.backend = backend;
    auto r = reactor::Reactor::create(options);
    ASSERT_TRUE(r.ok()) << r.status();
    other.store(r->get());
    (*r)->run_until([&] { return quit.load(); });
    (*r)->cancel_all();
    (*r)->run_until([&] { return (*r)->fibers_alive() == 0; });
  });
  while (other.load() == nullptr) std::this_thread::sleep_for(1ms);

  RespOptions o;
  auto shared = make_shared_stores(2);
  run([&] {
    reactor::Reactor* self = reactor::Reactor::current();
    const ShardView view0{0, 2, {self, other.load()}};
    const ShardView view1{1, 2, {self, other.load()}};
    TestServer server0([&](Connection& c) { serve_resp(c, o, *shared); }, view0);

    // Shard 1's server lives on the other thread; set it up there (nothing here suspends).
    std::unique_ptr<TestServer> server1;
    auto port = reactor::call_on(*other.load(), [&] {
      server1 =
          std::make_unique<TestServer>([&](Connection& c) { serve_resp(c, o, *shared); }, view1);
      return server1->address().port();
    });
    ASSERT_TRUE(port.ok()) << port.status();
    const reactor::SocketAddress address1 =
        *reactor::SocketAddress::parse_ip("127.0.0.1:" + std::to_string(*port));

    RawClient a(server0.address());
    RawClient b(address1);
    const std::string k0 = key_owned_by(0, 2, "k"), k1 = key_owned_by(1, 2, "k");
    const std::string n0 = key_owned_by(0, 2, "n"), n1 = key_owned_by(1, 2, "n");
    expect_reply(a, multibulk({"SET", k0, "zero"}), "+OK\r\n");
    expect_reply(a, multibulk({"SET", k1, "one"}), "+OK\r\n");
    expect_reply(b, multibulk({"GET", k0}), "$4\r\nzero\r\n");
    expect_reply(b, multibulk({"GET", k1}), "$3\r\none\r\n");
    expect_reply(b, multibulk({"SET", k0, "zero!"}), "+OK\r\n");
    expect_reply(a, multibulk({"GET", k0}), "$5\r\nzero!\r\n");
    expect_reply(a, multibulk({"INCR", n1}), ":1\r\n");
    expect_reply(b, multibulk({"INCR", n1}), ":2\r\n");
    expect_reply(b, multibulk({"INCR", n0}), ":1\r\n");
    expect_reply(a, multibulk({"DBSIZE"}), ":4\r\n");
    expect_reply(b, multibulk({"DBSIZE"}), ":4\r\n");
    expect_reply(a, multibulk({"EXISTS", k0, k1, "missing"}), ":2\r\n");
    expect_reply(b, multibulk({"DEL", k0, k1, n0}), ":3\r\n");
    expect_reply(a, multibulk({"DBSIZE"}), ":1\r\n");
    // A pipelined burst that crosses shards keeps its order.
    std::string burst, expected;
    for (int i = 0; i < 100; ++i) {
      const std::string key = "p" + std::to_string(i);
      burst += multibulk({"SET", key, std::to_string(i)}) + multibulk({"GET", key});
      expected += "+OK\r\n$" + std::to_string(std::to_string(i).size()) + "\r\n" +
                  std::to_string(i) + "\r\n";
    }
    ASSERT_TRUE(b.send(burst));
    EXPECT_EQ(b.take(expected.size()), expected);
    expect_reply(a, multibulk({"DBSIZE"}), ":101\r\n");

    // Each store holds exactly the keys its shard owns.
    size_t owned_by_0 = 0;
    for (int i = 0; i < 100; ++i) {
      const std::string key = "p" + std::to_string(i);
      const bool mine = resp_key_owner(key, 2) == 0;
      owned_by_0 += mine ? 1 : 0;
      EXPECT_EQ(shared->stores[0]->contains(key), mine) << key;
    }
    EXPECT_GT(owned_by_0, 10u);
    EXPECT_LT(owned_by_0, 90u);
    auto on1 = reactor::call_on(*other.load(), [&] { return shared->stores[1]->size(); });
    ASSERT_TRUE(on1.ok());
    EXPECT_EQ(shared->stores[0]->size() + *on1, 101u);

    a.close();
    b.close();
    server0.wait_closed(1);
    // Tear shard 1's server down on its own thread: its destructor cancels and joins fibers, so
    // it must run in a fiber there.
    std::atomic<bool> torn_down{false};
    ASSERT_TRUE(reactor::submit_to(*other.load(), "teardown", [&] {
      server1->wait_closed(1);
      server1.reset();
      torn_down.store(true);
    }));
    while (!torn_down.load()) ASSERT_TRUE(reactor::sleep_for(1ms).ok());
  });
  quit.store(true);
  other.load()->post([] {});
  thread.join();
}

INSTANTIATE_TEST_SUITE_P(Backends, RespServiceTest,
                         ::testing::ValuesIn(reactor::test::available_backends()),
                         reactor::test::backend_test_name);

}  // namespace
}  // namespace reactord
