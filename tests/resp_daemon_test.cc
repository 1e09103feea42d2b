// The resp service in the real daemon with two shards, through the clients people use: redis-py
// (tests/resp_redis_py_test.py, run with Debian's /usr/bin/python3), redis-cli --pipe and
// redis-benchmark; expiry of many keys at once without a stall; the memory cap and its reload.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"

namespace reactord {
namespace {

using namespace std::chrono_literals;
namespace test = reactor::test;
using test::DaemonProcess;
using ::testing::HasSubstr;

std::string config(const std::string& dir, const std::string& resp_extra = "") {
  return "[runtime]\nshards = 2\n\n[log]\nlevel = \"info\"\nformat = \"text\"\n\n[admin]\nsocket = "
         "\"" +
         dir +
         "/admin.sock\"\n\n[[service]]\nname = \"kv\"\nkind = \"resp\"\nlisten = "
         "\"127.0.0.1:0\"\n" +
         resp_extra;
}

// Runs a shell command; its output (stdout and stderr) and exit status.
struct Ran {
  int code = -1;
  std::string out;
};
Ran sh(const std::string& cmd) {
  Ran r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class RespDaemonTest : public ::testing::Test {
 protected:
  void start(const std::string& resp_extra = "") {
    d_.write_config(config(d_.dir(), resp_extra));
    d_.start();
    ASSERT_TRUE(d_.wait_ready()) << d_.log();
    const std::string addr = d_.addresses()["kv"];
    port_ = addr.substr(addr.rfind(':') + 1);
  }
  void TearDown() override {
    d_.signal(SIGTERM);
    EXPECT_EQ(d_.wait_exit(), 0) << d_.log();
  }
  // One redis-cli command; its output without the trailing newline.
  std::string cli(const std::string& args) {
    std::string out = sh("redis-cli -p " + port_ + " " + args).out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }
  // Writes `n` commands made by make(i) to a file and pipes it through redis-cli --pipe.
  template <class F>
  Ran pipe(int n, F make) {
    const std::string path = d_.dir() + "/pipe.resp";
    {
      std::ofstream f(path, std::ios::binary);
      for (int i = 0; i < n; ++i) f << make(i);
    }
    return sh("redis-cli -p " + port_ + " --pipe < " + path);
  }

  DaemonProcess d_;
  std::string port_;
};

std::string multibulk(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

TEST_F(RespDaemonTest, RedisPyDrivesEveryCommand) {
  start();
  const std::string script = REACTOR_SOURCE_DIR "/tests/resp_redis_py_test.py";
  const Ran r = sh("/usr/bin/python3 " + script + " " + port_ + " 2");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("0 failures")) << r.out;
}

TEST_F(RespDaemonTest, RedisCliPipeLoads100000Keys) {
  start();
  const Ran r = pipe(100000, [](int i) {
    return multibulk({"SET", "key:" + std::to_string(i), "value:" + std::to_string(i)});
  });
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("errors: 0, replies: 100000")) << r.out;
  EXPECT_EQ(cli("DBSIZE"), "100000");
  EXPECT_EQ(cli("GET key:99999"), "value:99999");
  EXPECT_THAT(cli("INFO keyspace"), HasSubstr("db0:keys=100000,expires=0,avg_ttl=0"));
}

// 200,000 keys expiring in the same millisecond: the shards' expiry fibers remove them all in
// bounded batches, and the watchdog reports no stall in them.
TEST_F(RespDaemonTest, ManyKeysExpiringAtOnceCauseNoStall) {
  start();
  // Far enough ahead for a loaded machine to send them all first.
  auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const int64_t at = now_ms() + 40000;
  const Ran r = pipe(200000, [&](int i) {
    return multibulk({"SET", "exp:" + std::to_string(i), "v", "PXAT", std::to_string(at)});
  });
  ASSERT_THAT(r.out, HasSubstr("errors: 0, replies: 200000")) << r.out;
  ASSERT_LT(now_ms(), at - 1000) << "loading took too long to test expiry at once";
  EXPECT_THAT(cli("INFO keyspace"), HasSubstr("db0:keys=200000,expires=200000"));
  std::this_thread::sleep_for(std::chrono::milliseconds(at - now_ms()));
  std::string size;
  for (int i = 0; i < 200 && (size = cli("DBSIZE")) != "0"; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(size, "0") << "the keys were not removed in the background";
  EXPECT_THAT(cli("INFO stats"), HasSubstr("expired_keys:200000"));
  // The expiry fibers never held their loop past the watchdog's threshold. (Stalls of the
  // connection loading 200,000 commands on an overloaded machine are not what this tests.)
  const Ran stalls =
      sh(std::string(REACTORCTL_BINARY) + " --socket " + d_.dir() + "/admin.sock --json stalls");
  EXPECT_EQ(stalls.code, 0) << stalls.out;
  EXPECT_THAT(stalls.out, HasSubstr("stalls_total")) << stalls.out;
  // A report names its fiber then fiber_id; "top_slow_fibers" (slices above slow_slice_ms, not
  // stalls) may name resp-expiry with slow_slices.
  EXPECT_THAT(stalls.out, ::testing::Not(HasSubstr("\"fiber\":\"resp-expiry\",\"fiber_id\"")))
      << stalls.out;
  EXPECT_THAT(d_.log(), ::testing::Not(HasSubstr("fiber 'resp-expiry'"))) << d_.log();
}

TEST_F(RespDaemonTest, RedisBenchmarkGetsNoErrors) {
  if (sh("which redis-benchmark").code != 0) GTEST_SKIP() << "no redis-benchmark";
  start();
  const Ran r = sh("redis-benchmark -p " + port_ + " -t set,get,incr,mset -P 16 -n 20000 -q");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* test : {"SET: ", "GET: ", "INCR: ", "MSET (10 keys): "})
    EXPECT_THAT(r.out, HasSubstr(test)) << r.out;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("rror"))) << r.out;
  EXPECT_EQ(cli("GET counter:__rand_int__"), "20000");
}

// Past max_memory_bytes writes get Redis' OOM error and reads still work; a SIGHUP that raises
// the cap lets writes in again.
TEST_F(RespDaemonTest, MemoryCapRefusesWritesAndReloads) {
  start("max_memory_bytes = 300000\n");
  const std::string value(1000, 'x');
  const Ran r = pipe(400, [&](int i) {
    return multibulk({"SET", "m" + std::to_string(i), value});
  });
  EXPECT_THAT(r.out, HasSubstr("replies: 400")) << r.out;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("errors: 0,"))) << r.out;
  EXPECT_EQ(cli("SET more x"), "OOM command not allowed when used memory > 'maxmemory'.");
  EXPECT_EQ(cli("GET m0"), value);
  const std::string info = cli("INFO memory");
  EXPECT_THAT(info, HasSubstr("maxmemory:300000"));
  const size_t at = info.find("used_memory:") + 12;
  const long used = std::stol(info.substr(at));
  EXPECT_GT(used, 300000);
  EXPECT_LE(used, 300000 + 1000 + 16 + 96);  // one value, its key and the per-key overhead

  d_.write_config(config(d_.dir(), "max_memory_bytes = 600000\n"));
  d_.signal(SIGHUP);
  ASSERT_TRUE(d_.wait_log("reload: done", 10s)) << d_.log();
  EXPECT_EQ(cli("SET more x"), "OK");
  EXPECT_THAT(cli("INFO memory"), HasSubstr("maxmemory:600000"));
}

}  // namespace
}  // namespace reactord
