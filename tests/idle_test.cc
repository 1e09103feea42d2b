// The idle modes (Reactor::Options::idle, runtime.idle) on every available backend: what an idle
// loop costs in CPU time (the loop thread's own, from /proc/self/task/TID/stat), that a spinning
// loop still serves timers, posts and I/O from other threads on time, that spinning shows in the
// statistics as idle and costs no system call beyond the backend's zero-timeout poll, and that the
// watchdog does not take a spinning loop for a stall.
//
// The machine is shared: a spinning thread's CPU time is compared with the time it could run —
// the window's wall time less the time it waited on a run queue (/proc/self/task/TID/schedstat)
// — rather than with the wall time alone. The kernel adds a wait to that total only when it ends,
// so a spinning loop's times are read on its own thread (see measure_spin).
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "reactor/call_on.h"
#include "reactor/reactor.h"
#include "reactor/watchdog.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using test::backend_counter;
using test::ms_since;

// A reactor running on a thread of its own until the object goes. The reactor is destroyed only
// after stop() has returned on the test's thread: a spinning loop sees the stop at once, and must
// not free itself while stop() is still inside it.
class LoopThread {
 public:
  LoopThread(const std::string& backend, IdleMode idle, Duration spin = 50us) {
    std::promise<Reactor*> created;
    std::future<Reactor*> result = created.get_future();
    thread_ = std::thread([&, released = release_.get_future()] {
      Reactor::Options options;
      options.backend = backend;
      options.idle = idle;
      options.spin = spin;
      absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::create(options);
      if (!r.ok()) {
        ADD_FAILURE() << r.status();
        created.set_value(nullptr);
        return;
      }
      created.set_value(r->get());
      (*r)->run_until_stopped();
      (*r)->cancel_all();
      (*r)->run_until([&] { return (*r)->fibers_alive() == 0; });
      released.wait();
    });
    reactor_ = result.get();
  }
  ~LoopThread() {
    if (reactor_ != nullptr) reactor_->stop();
    release_.set_value();
    thread_.join();
  }
  bool ok() const { return reactor_ != nullptr; }
  Reactor& reactor() { return *reactor_; }

 private:
  std::promise<void> release_;
  std::thread thread_;
  Reactor* reactor_ = nullptr;
};

// A thread's CPU time (utime + stime) and the time it has waited on a run queue, in seconds.
struct ThreadTimes {
  double cpu = 0;
  double queued = 0;
};

ThreadTimes thread_times(pid_t tid) {
  ThreadTimes t;
  const std::string base = "/proc/self/task/" + std::to_string(tid);
  std::ifstream stat(base + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');
  EXPECT_NE(close, std::string::npos) << line;
  if (close == std::string::npos) return t;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string field; rest >> field;) f.push_back(field);
  // After the name come the fields from 3 (state) on: utime is field 14, stime 15.
  EXPECT_GT(f.size(), 12u) << line;
  if (f.size() <= 12) return t;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  t.cpu = (std::stod(f[11]) + std::stod(f[12])) / tick;
  std::ifstream schedstat(base + "/schedstat");  // on CPU, waiting on a run queue (ns), slices
  double on_cpu_ns = 0, queued_ns = 0;
  if (schedstat >> on_cpu_ns >> queued_ns) t.queued = queued_ns / 1e9;
  return t;
}

// What the loop thread did over a window of wall time the test thread slept through.
struct Window {
  double cpu = 0;       // CPU seconds
  double wall = 0;      // seconds
  double runnable = 0;  // seconds it could have run: the wall time less its run-queue wait
  double spin = 0;      // the reactor's spin seconds
  uint64_t spin_polls = 0;
  uint64_t polls = 0;
  // CPU time over the time the thread could run. /proc's CPU times come in clock ticks, so a
  // difference of two readings may fall short by up to one tick: that tick is allowed.
  double cpu_share() const {
    const double tick = 1.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
    return (cpu + tick) / std::max(runnable, 1e-3);
  }
};

// Runs fn on the loop and waits for it, so the loop has just done some work.
void run_on(Reactor& r, absl::AnyInvocable<void()> fn) {
  std::promise<void> done;
  ASSERT_TRUE(r.post([&] {
    fn();
    done.set_value();
  }));
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
}

// The loop thread's times and the reactor's counters at one moment.
struct Sample {
  ThreadTimes times;
  Deadline at;
  uint64_t spin_ns = 0, spin_polls = 0, polls = 0;
};

Sample sample(Reactor& r) {
  Sample s;
  s.times = thread_times(r.thread_id());
  s.at = Clock::now();
  s.spin_ns = r.stats().spin_ns.get();
  s.spin_polls = r.stats().spin_polls.get();
  s.polls = r.stats().polls();
  return s;
}

Window between(const Sample& a, const Sample& b) {
  Window w;
  w.wall = std::chrono::duration<double>(b.at - a.at).count();
  w.cpu = b.times.cpu - a.times.cpu;
  w.runnable = std::max(0.0, w.wall - (b.times.queued - a.times.queued));
  w.spin = static_cast<double>(b.spin_ns - a.spin_ns) / 1e9;
  w.spin_polls = b.spin_polls - a.spin_polls;
  w.polls = b.polls - a.polls;
  return w;
}

// A window over a loop that should sleep, read from the test thread (a post would wake the loop).
Window measure_idle(Reactor& r, Duration d) {
  const Sample a = sample(r);
  std::this_thread::sleep_for(d);
  return between(a, sample(r));
}

// A window over a loop that should spin, read by the loop thread itself at both ends (posted to
// it): the kernel adds a run-queue wait to the thread's total only when the wait ends, so it is
// read while the thread runs. The post is work (adaptive starts a new spin window from it).
Window measure_spin(Reactor& r, Duration d) {
  Sample a, b;
  run_on(r, [&] { a = sample(r); });
  std::this_thread::sleep_for(d);
  run_on(r, [&] { b = sample(r); });
  return between(a, b);
}

std::string describe(const Window& w) {
  std::ostringstream out;
  out << "cpu " << w.cpu << " s over " << w.wall << " s of wall time (" << w.runnable
      << " s runnable), spin " << w.spin << " s, " << w.spin_polls << " spin polls, " << w.polls
      << " polls";
  return out.str();
}

class IdleTest : public ::testing::TestWithParam<std::string> {
 protected:
  // A window of 1 s, taken by `measure`, over a loop that has run idle in `mode` since it
  // started 50 ms before.
  Window idle_window(IdleMode mode, Window (*measure)(Reactor&, Duration)) {
    LoopThread loop(GetParam(), mode);
    EXPECT_TRUE(loop.ok());
    if (!loop.ok()) return {};
    EXPECT_EQ(loop.reactor().idle_mode(), mode);
    std::this_thread::sleep_for(50ms);
    return measure(loop.reactor(), 1s);
  }
};

TEST_P(IdleTest, BlockBurnsNoCpuWhenIdle) {
  const Window w = idle_window(IdleMode::kBlock, measure_idle);
  EXPECT_LT(w.cpu, 0.1) << describe(w);
  EXPECT_EQ(w.spin, 0) << describe(w);
  EXPECT_EQ(w.spin_polls, 0u) << describe(w);
}

TEST_P(IdleTest, SpinBurnsACpuWhenIdle) {
  const Window w = idle_window(IdleMode::kSpin, measure_spin);
  EXPECT_GT(w.cpu_share(), 0.7) << describe(w);
  EXPECT_GT(w.spin, 0.9 * w.wall) << describe(w);  // the spin counter is kept while it spins
  EXPECT_GT(w.spin_polls, 1000u) << describe(w);
}

// Adaptive spins for `spin` after the last work, then blocks; new work makes it spin again. The
// spin window is long beside the windows measured, so that a test thread the shared machine wakes
// late still measures inside it.
TEST_P(IdleTest, AdaptiveSpinsAfterWorkThenBlocks) {
  constexpr Duration kSpin = 2500ms;
  LoopThread loop(GetParam(), IdleMode::kAdaptive, kSpin);
  ASSERT_TRUE(loop.ok());
  Reactor& r = loop.reactor();
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "first work" : "new work");
    const Deadline worked = Clock::now();
    const Window after_work = measure_spin(r, 1s);  // its first post is the new work
    EXPECT_GT(after_work.cpu_share(), 0.7) << describe(after_work);
    EXPECT_GT(after_work.spin, 0.5) << describe(after_work);
    if (round == 1) break;
    std::this_thread::sleep_until(worked + 1s + kSpin + 300ms);  // spin_us has passed
    const Window idle = measure_idle(r, 1s);
    EXPECT_LT(idle.cpu, 0.1) << describe(idle);
    EXPECT_LT(idle.spin, 0.01) << describe(idle);
  }
}

// A spin window shorter than the time to the next timer: the loop spins, then blocks until the
// timer, which fires on time.
TEST_P(IdleTest, AdaptiveTimerFiresOnTimeAfterTheSpin) {
  double elapsed = 0;
  Reactor::Options options;
  options.backend = GetParam();
  options.idle = IdleMode::kAdaptive;
  options.spin = 2ms;
  absl::Status s = Reactor::run(
      [&] {
        const Deadline start = Clock::now();
        ASSERT_TRUE(sleep_for(20ms).ok());
        elapsed = ms_since(start);
        EXPECT_GT(Reactor::current()->stats().spin_ns.get(), 0u);
      },
      options);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GE(elapsed, 20);
  EXPECT_LT(elapsed, 170);
}

// A spinning thread can wait long for a CPU on a shared machine: a timer is late by at most the
// usual margin beyond the time its thread spent waiting on a run queue over the sleep (read on
// the thread itself once the sleep is over, so the wait has ended and is counted).
TEST_P(IdleTest, SpinTimerFiresOnTime) {
  std::vector<double> elapsed, queued;
  Reactor::Options options;
  options.backend = GetParam();
  options.idle = IdleMode::kSpin;
  absl::Status s = Reactor::run(
      [&] {
        const pid_t tid = Reactor::current()->thread_id();
        for (int i = 0; i < 5; ++i) {
          const double queued0 = thread_times(tid).queued;
          const Deadline start = Clock::now();
          ASSERT_TRUE(sleep_for(10ms).ok());
          elapsed.push_back(ms_since(start));
          queued.push_back((thread_times(tid).queued - queued0) * 1e3);
        }
        EXPECT_GT(Reactor::current()->stats().spin_polls.get(), 0u);
      },
      options);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(elapsed.size(), 5u);
  for (size_t i = 0; i < elapsed.size(); ++i) {
    EXPECT_GE(elapsed[i], 10);
    EXPECT_LT(elapsed[i] - queued[i], 160) << elapsed[i] << " ms, " << queued[i] << " ms queued";
  }
}

// Posts from another thread reach a spinning loop: submit_to, post, and call_on from a fiber of
// another reactor.
TEST_P(IdleTest, SpinServesCrossThreadPosts) {
  LoopThread loop(GetParam(), IdleMode::kSpin);
  ASSERT_TRUE(loop.ok());
  Reactor& r = loop.reactor();
  std::this_thread::sleep_for(20ms);
  for (int i = 0; i < 20; ++i) {
    std::promise<bool> ran;
    ASSERT_TRUE(submit_to(r, "job", [&] { ran.set_value(Reactor::current() == &r); }));
    std::future<bool> f = ran.get_future();
    ASSERT_EQ(f.wait_for(2s), std::future_status::ready) << "submit_to " << i;
    EXPECT_TRUE(f.get());
  }
  std::promise<void> posted;
  ASSERT_TRUE(r.post([&] { posted.set_value(); }));
  EXPECT_EQ(posted.get_future().wait_for(2s), std::future_status::ready);
  int answer = 0;
  test::run_fiber(
      [&] {
        absl::StatusOr<int> v = call_on(
            r, [] { return 42; }, deadline_after(2s));
        ASSERT_TRUE(v.ok()) << v.status();
        answer = *v;
      },
      GetParam());
  EXPECT_EQ(answer, 42);
}

// I/O that another thread causes completes on a spinning loop (on io_uring, a completion that
// waits for an enter as deferred task work).
TEST_P(IdleTest, SpinServesIoFromAnotherThread) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  std::promise<std::string> got;
  std::atomic<bool> waiting{false};
  LoopThread loop(GetParam(), IdleMode::kSpin);
  ASSERT_TRUE(loop.ok());
  Reactor& r = loop.reactor();
  ASSERT_TRUE(submit_to(r, "reader", [&] {
    char buf[16];
    waiting = true;
    absl::StatusOr<size_t> n = Reactor::current()->backend().recv(
        sv[0], std::as_writable_bytes(std::span(buf)), deadline_after(5s));
    got.set_value(n.ok() ? std::string(buf, *n) : std::string(n.status().message()));
  }));
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);  // the reader is parked and the loop spins
  ASSERT_EQ(::write(sv[1], "ping", 4), 4);
  std::future<std::string> f = got.get_future();
  ASSERT_EQ(f.wait_for(3s), std::future_status::ready);
  EXPECT_EQ(f.get(), "ping");
  run_on(r, [&] { (void)r.backend().close(sv[0]); });
  ::close(sv[1]);
}

// While nothing happens, a spinning loop makes no system call beyond the backend's zero-timeout
// poll: one epoll_wait per spin on the readiness backends, none at all on io_uring (it reads the
// completion queue in user space).
TEST_P(IdleTest, SpinCostsNoSystemCallBeyondTheZeroTimeoutPoll) {
  LoopThread loop(GetParam(), IdleMode::kSpin);
  ASSERT_TRUE(loop.ok());
  Reactor& r = loop.reactor();
  std::this_thread::sleep_for(20ms);
  const std::string name = GetParam();
  const char* calls = name == "epoll"      ? "epoll_wait_calls_total"
                      : name == "io_uring" ? "io_uring_enter_calls_total"
                                           : "libevent_loop_calls_total";
  const ReactorStats& st = r.stats();
  // The loop counts a backend call before the poll that made it: read polls first at the start
  // and last at the end, so every call counted falls inside the polls counted.
  const uint64_t polls0 = st.spin_polls.get() + st.polls();
  const uint64_t calls0 = backend_counter(r.backend(), calls);
  std::this_thread::sleep_for(300ms);
  const uint64_t made = backend_counter(r.backend(), calls) - calls0;
  const uint64_t polls = st.spin_polls.get() + st.polls() - polls0;
  ASSERT_GT(polls, 100u);
  if (name == "io_uring") {
    EXPECT_LE(made, 2u) << polls << " polls";
  } else {
    EXPECT_LE(made, polls + 2) << polls << " polls";
  }
}

// Spinning is idle time: utilization (busy / (busy + poll wait)) stays low, and the loop is in
// poll, never in a slice, so the watchdog reports nothing and the daemon's health check passes.
TEST_P(IdleTest, SpinningIsIdleForStatsAndWatchdog) {
  std::atomic<uint64_t> reports{0};
  WatchdogOptions o;
  o.threshold = 20ms;
  Watchdog dog(o, [&](const StallReport&) { ++reports; });
  LoopThread loop(GetParam(), IdleMode::kSpin);
  ASSERT_TRUE(loop.ok());
  Reactor& r = loop.reactor();
  dog.watch(&r, 0);
  dog.start();
  // A fiber that wakes every 10 ms ends a spin now and then, so the poll-wait total moves.
  std::atomic<bool> stop{false};
  ASSERT_TRUE(submit_to(r, "ticker", [&] {
    while (!stop && sleep_for(10ms).ok()) {
    }
  }));
  std::this_thread::sleep_for(50ms);
  const ReactorStats& st = r.stats();
  const uint64_t busy0 = st.busy_ns.get(), wait0 = st.poll_wait_ns();
  int in_slice = 0, in_poll = 0;
  const Deadline start = Clock::now();
  while (Clock::now() - start < 300ms) {
    const Reactor::CurrentSlice c = r.current_slice();
    in_slice += c.in_slice ? 1 : 0;
    in_poll += c.in_poll ? 1 : 0;
    std::this_thread::sleep_for(1ms);
  }
  const double busy = static_cast<double>(st.busy_ns.get() - busy0);
  const double wait = static_cast<double>(st.poll_wait_ns() - wait0);
  stop = true;
  dog.unwatch(&r);
  dog.stop();
  EXPECT_EQ(reports.load(), 0u);
  ASSERT_GT(busy + wait, 0);
  EXPECT_LT(busy / (busy + wait), 0.2)
      << "busy " << busy / 1e9 << " s, wait " << wait / 1e9 << " s";
  EXPECT_GT(in_poll, 10 * std::max(in_slice, 1))
      << in_poll << " samples in poll, " << in_slice << " in a slice";
}

TEST(IdleMode, Names) {
  EXPECT_EQ(idle_mode_name(IdleMode::kBlock), "block");
  EXPECT_EQ(idle_mode_name(IdleMode::kSpin), "spin");
  EXPECT_EQ(idle_mode_name(IdleMode::kAdaptive), "adaptive");
}

INSTANTIATE_TEST_SUITE_P(Backends, IdleTest, ::testing::ValuesIn(test::available_backends()),
                         test::backend_test_name);

}  // namespace
}  // namespace reactor
