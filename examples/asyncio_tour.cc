// asyncio's vocabulary in reactord's terms, one section per idea; docs/asyncio.md quotes each
// section beside its asyncio version (examples/asyncio_tour.py) with what both print.
//   build/debug/examples/asyncio_tour            every section
//   build/debug/examples/asyncio_tour gather     one section (the names are listed in main)
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "reactor/channel.h"
#include "reactor/offload.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"
#include "reactor/watchdog.h"

using namespace std::chrono_literals;

namespace {

std::string str(const absl::Status& s) {
  return s.ToString();
}

// ---- run: asyncio.run(main()) ----
// Reactor::run starts a reactor on this thread, runs main in a fiber until it returns and hands
// back its value. It fails (a Status) only when the reactor cannot be created.
absl::Status section_run() {
  absl::StatusOr<int> answer = reactor::Reactor::run([] {
    (void)reactor::sleep_for(10ms);
    return 42;
  });
  if (!answer.ok()) return answer.status();
  std::printf("main returned %d\n", *answer);
  return absl::OkStatus();
}

// ---- fibers: no async, no await ----
// An ordinary function that suspends its caller's fiber: nothing in its signature says so, and
// nothing in its callers' either, because the fiber has a stack of its own.
std::string fetch(const std::string& what) {
  (void)reactor::sleep_for(100ms);
  return what + " fetched";
}

absl::Status section_fibers() {
  return reactor::Reactor::run([] {
    const auto start = reactor::Clock::now();
    auto report = [&](const std::string& line) {
      const double ms =
          std::chrono::duration<double, std::milli>(reactor::Clock::now() - start).count();
      std::printf("%4.0f ms  %s\n", ms, line.c_str());
    };
    // A standard algorithm calls a lambda that suspends: no async version of for_each is needed.
    auto crawl = [&](std::vector<std::string> pages) {
      std::for_each(pages.begin(), pages.end(), [&](const std::string& p) { report(fetch(p)); });
    };
    auto a = reactor::spawn("crawl-a", [&] { crawl({"a1", "a2"}); });
    auto b = reactor::spawn("crawl-b", [&] { crawl({"b1", "b2"}); });
    if (!a.ok() || !b.ok()) return;
    reactor::join_all(*a, *b);
  });
}

// ---- await: where a fiber may switch ----
// Code between two suspension points runs without interruption, as code between two awaits
// does. Here a suspension point sits between a read and a write: updates are lost.
absl::Status section_await() {
  return reactor::Reactor::run([] {
    for (bool suspend : {false, true}) {
      int counter = 0;
      auto bump = [&] {
        int seen = counter;
        if (suspend) reactor::yield();  // asyncio: await asyncio.sleep(0)
        counter = seen + 1;
      };
      std::vector<reactor::Task<void>> tasks;
      for (int i = 0; i < 3; ++i) tasks.push_back(reactor::spawn("bump", bump).value());
      reactor::join_all(tasks);
      std::printf("3 increments, %s: counter = %d\n",
                  suspend ? "a yield between read and write" : "no suspension point", counter);
    }
  });
}

// ---- gather: create_task, gather, exceptions ----
absl::Status section_gather() {
  return reactor::Reactor::run([] {
    // create_task: spawn starts the fiber at once and returns its Task.
    std::vector<reactor::Task<int>> tasks;
    for (int x = 1; x <= 3; ++x) {
      auto t = reactor::spawn("square", [x] {
        (void)reactor::sleep_for(x * 10ms);
        return x * x;
      });
      if (!t.ok()) return;
      tasks.push_back(*std::move(t));
    }
    // gather: join each in turn (the fibers already run side by side).
    std::string results;
    for (auto& t : tasks) results += (results.empty() ? "" : " ") + std::to_string(t.join());
    std::printf("squares: %s\n", results.c_str());

    // join rethrows the fiber's exception; join_all waits for every task, then rethrows the
    // first one (asyncio.gather without return_exceptions raises the first as well).
    auto ok = reactor::spawn("ok", [] { (void)reactor::sleep_for(10ms); });
    auto bad = reactor::spawn("bad", [] { throw std::runtime_error("bad input"); });
    if (!ok.ok() || !bad.ok()) return;
    try {
      reactor::join_all(*ok, *bad);
    } catch (const std::exception& e) {
      std::printf("join_all rethrew: %s (ok done: %s)\n", e.what(), ok->done() ? "yes" : "no");
    }

    // A WaitGroup waits for work items that return nothing (asyncio.TaskGroup's role).
    reactor::WaitGroup wg;
    int finished = 0;
    for (int i = 0; i < 3; ++i) {
      wg.add();
      (void)reactor::spawn("item", [&] {
        (void)reactor::sleep_for(10ms);
        ++finished;
        wg.done();
      });
    }
    absl::Status s = wg.wait();
    std::printf("WaitGroup: %s, %d finished\n", str(s).c_str(), finished);
  });
}

// ---- timeouts: wait_for and cancel ----
absl::Status section_timeouts() {
  return reactor::Reactor::run([] {
    // wait_for(q.get(), 0.05): the deadline is an argument of the suspension point itself.
    reactor::Channel<int> q(1);
    absl::StatusOr<int> v = q.pop(reactor::deadline_after(50ms));
    std::printf("pop with a 50 ms deadline: %s\n", str(v.status()).c_str());

    // wait_for(task, 0.05): wait() gives up at the deadline but does not cancel; cancel() does.
    auto slow = reactor::spawn("slow", [] {
      absl::Status s = reactor::sleep_for(10s);
      std::printf("slow: sleep_for returned %s\n", str(s).c_str());
      // Cancellation is sticky: every later suspension point returns Cancelled at once.
      std::printf("slow: a second sleep returns %s\n", str(reactor::sleep_for(1s)).c_str());
    });
    if (!slow.ok()) return;
    absl::Status w = slow->wait(reactor::deadline_after(50ms));
    std::printf("wait with a 50 ms deadline: %s\n", str(w).c_str());
    slow->cancel();
    slow->join();
  });
}

// ---- sync: Queue, Event, Lock, Semaphore ----
absl::Status section_sync() {
  return reactor::Reactor::run([] {
    // asyncio.Queue(maxsize=2): push waits while full, pop while empty; close() ends the stream.
    reactor::Channel<int> q(2);
    auto producer = reactor::spawn("producer", [&] {
      for (int i = 1; i <= 4; ++i) (void)q.push(i);
      q.close();
    });
    std::string got;
    for (;;) {
      absl::StatusOr<int> v = q.pop();
      if (!v.ok()) break;  // OutOfRange: closed and drained
      got += (got.empty() ? "" : " ") + std::to_string(*v);
    }
    std::printf("Channel: got %s\n", got.c_str());
    producer->join();

    // asyncio.Event: set() wakes every waiter.
    reactor::Event ready;
    std::vector<reactor::Task<void>> waiters;
    for (int i = 0; i < 2; ++i) {
      waiters.push_back(reactor::spawn("waiter", [&, i] {
                          (void)ready.wait();
                          std::printf("Event: waiter %d woke\n", i);
                        }).value());
    }
    (void)reactor::sleep_for(10ms);
    ready.set();
    reactor::join_all(waiters);

    // asyncio.Lock: held across a suspension point, so the two sections never interleave.
    reactor::Mutex mu;
    std::string trace;
    auto section = [&](char who) {
      if (!mu.lock().ok()) return;
      trace += who;
      (void)reactor::sleep_for(10ms);
      trace += who;
      mu.unlock();
    };
    auto x = reactor::spawn("x", [&] { section('x'); });
    auto y = reactor::spawn("y", [&] { section('y'); });
    reactor::join_all(*x, *y);
    std::printf("Mutex: %s\n", trace.c_str());

    // asyncio.Semaphore(2): at most two of five fibers inside at once.
    reactor::Semaphore sem(2);
    int inside = 0, most = 0;
    std::vector<reactor::Task<void>> users;
    for (int i = 0; i < 5; ++i) {
      users.push_back(reactor::spawn("user", [&] {
                        if (!sem.acquire().ok()) return;
                        most = std::max(most, ++inside);
                        (void)reactor::sleep_for(10ms);
                        --inside;
                        sem.release();
                      }).value());
    }
    reactor::join_all(users);
    std::printf("Semaphore(2): at most %d inside\n", most);
  });
}

// ---- to_thread: offload ----
absl::Status section_offload() {
  return reactor::Reactor::run([] {
    const auto start = reactor::Clock::now();
    auto ms = [&] {
      return std::chrono::duration<double, std::milli>(reactor::Clock::now() - start).count();
    };
    auto ticker = reactor::spawn("ticker", [&] {
      for (int i = 0; i < 3; ++i) {
        (void)reactor::sleep_for(100ms);
        std::printf("%4.0f ms  tick\n", ms());
      }
    });
    // A blocking call (here usleep) runs on the offload pool; this fiber waits, the loop does not.
    absl::StatusOr<int> r = reactor::offload([] {
      ::usleep(250'000);
      return 7;
    });
    std::printf("%4.0f ms  offload returned %d\n", ms(), r.ok() ? *r : -1);
    ticker->join();
  });
}

// ---- watchdog: debug mode's slow-callback warning, live ----
// Spins without suspending: the loop runs nothing else until it returns.
__attribute__((noinline)) void spin_for(reactor::Duration d) {
  const auto end = reactor::Clock::now() + d;
  while (reactor::Clock::now() < end) {
  }
}

absl::Status section_watchdog() {
  const char* phases[] = {"started", "ongoing", "frames", "ended", "aborting"};
  const auto start = reactor::Clock::now();
  reactor::WatchdogOptions options;
  options.threshold = 50ms;
  // The sink runs on the watchdog thread, while the loop is still stuck.
  reactor::Watchdog dog(options, [&](const reactor::StallReport& r) {
    const double ms =
        std::chrono::duration<double, std::milli>(reactor::Clock::now() - start).count();
    const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(r.wall).count();
    std::printf("%4.0f ms  watchdog: %-7s fiber '%s' %s, %lld ms %s\n", ms,
                phases[static_cast<int>(r.phase)], r.fiber_name.c_str(), r.kind.c_str(),
                static_cast<long long>(wall),
                r.phase == reactor::StallReport::Phase::kEnded ? "in all" : "so far");
    if (r.phase != reactor::StallReport::Phase::kFrames) return;
    for (const std::string& f : r.frames) {
      if (f.find("spin_for") != std::string::npos) std::printf("          frame: %s\n", f.c_str());
    }
  });
  dog.start();
  absl::Status s = reactor::Reactor::run([&] {
    dog.watch(reactor::Reactor::current(), 0);
    auto hog = reactor::spawn("hog", [&] {
      spin_for(200ms);
      std::printf("%4.0f ms  hog stopped spinning\n",
                  std::chrono::duration<double, std::milli>(reactor::Clock::now() - start).count());
    });
    if (hog.ok()) hog->join();
    dog.unwatch(reactor::Reactor::current());
  });
  dog.stop();
  return s;
}

struct Section {
  const char* name;
  absl::Status (*run)();
};
constexpr Section kSections[] = {
    {"run", section_run},         {"fibers", section_fibers},     {"await", section_await},
    {"gather", section_gather},   {"timeouts", section_timeouts}, {"sync", section_sync},
    {"offload", section_offload}, {"watchdog", section_watchdog},
};

}  // namespace

int main(int argc, char** argv) {
  bool any = false;
  for (const Section& s : kSections) {
    if (argc > 1 && std::strcmp(argv[1], s.name) != 0) continue;
    any = true;
    std::printf("== %s\n", s.name);
    std::fflush(stdout);
    absl::Status st = s.run();
    if (!st.ok()) {
      std::fprintf(stderr, "asyncio_tour %s: %s\n", s.name, std::string(st.message()).c_str());
      return 1;
    }
  }
  if (!any) {
    std::fprintf(stderr,
                 "asyncio_tour: no section '%s' (run, fibers, await, gather, timeouts, "
                 "sync, offload, watchdog)\n",
                 argv[1]);
    return 64;
  }
  return 0;
}
