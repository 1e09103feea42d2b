// reactor-profile-signal-cost: what a running profile (reactor/profiler.h, `reactorctl profile`)
// costs the thread it samples, measured where nothing else moves: a fiber on a reactor thread
// repeats a fixed unit of arithmetic, and the thread's CPU time over the same number of units is
// compared with no profile and with a profile at each rate, the rates alternated in every round.
// Everything a sample costs the sampled thread is in the difference: the kernel's signal delivery
// and rt_sigreturn, the handler, the caches it disturbs. An echo shard's CPU per request varies
// by more than a profile's whole cost from run to run on this machine (perf/profile-cost.sh); a
// compute loop varies by far less.
//
//   reactor-profile-signal-cost [--units N] [--rounds R] [--rates 0,99,1000,...] [--wall-hz W]
//                               [--cpu C]
//
// Prints one line per run (round, rate, clock, CPU ns, weighted samples, signals), then per rate
// the median CPU per unit, the median per-round ratio to no profile, and the median cost per
// signal ((CPU with - CPU without) / signals handled, per round). Pinned to CPU C (default 0; -1:
// not).
//
// A profile's CPU-time timer is checked at the scheduler tick, so it delivers at most ~250 signals
// a CPU-second here, and their cost (a few microseconds each) is below the rounds' spread. So each
// round also runs the same handler from a wall-clock timer at W Hz (default 20,000; 0: not), where
// the signals' cost is well above the spread: its cost per signal (delivery, handler, rt_sigreturn,
// and the cross-CPU kick a CPU-time timer does not need: an upper bound) times the signals each
// CPU rate delivered per CPU-second gives that rate's share of the thread's CPU.
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "reactor/profiler.h"
#include "reactor/reactor.h"

namespace {

using namespace std::chrono_literals;

int64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// One unit: a few microseconds of dependent multiply-adds, nothing in memory.
[[gnu::noinline]] uint64_t unit(uint64_t x) {
  for (int i = 0; i < 4000; ++i) x = x * 6364136223846793005u + 1442695040888963407u;
  return x;
}

struct Run {
  int round = 0;
  int rate = 0;
  bool wall = false;  // Profiler::Clock::kMonotonic
  int64_t cpu_ns = 0;
  uint64_t samples = 0;  // weighted (1 + overruns each)
  uint64_t signals = 0;  // handler calls that recorded
};

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)::sched_setaffinity(0, sizeof set, &set);
}

// `units` units on a fresh reactor thread pinned to `cpu`, profiled at `rate` Hz (0: not) of its
// CPU time, or of wall time (`wall`).
Run measure(int round, int rate, bool wall, int units, int cpu) {
  Run r;
  r.round = round;
  r.rate = rate;
  r.wall = wall;
  std::atomic<reactor::Reactor*> loop{nullptr};
  std::atomic<bool> go{false}, done{false};
  std::atomic<int64_t> cpu_ns{0};
  std::thread t([&] {
    pin(cpu);
    absl::Status s = reactor::Reactor::run([&] {
      loop = reactor::Reactor::current();
      while (!go.load()) (void)reactor::sleep_for(1ms);
      auto burner = reactor::spawn("burner", [&] {
        uint64_t x = 1;
        const int64_t t0 = thread_cpu_ns();
        for (int i = 0; i < units; ++i) x = unit(x);
        cpu_ns = thread_cpu_ns() - t0;
        if (x == 42) std::puts("");  // keeps the work
      });
      if (burner.ok()) burner->join();
      done = true;
    });
    if (!s.ok()) std::fprintf(stderr, "reactor: %s\n", std::string(s.message()).c_str());
  });
  while (loop.load() == nullptr) std::this_thread::sleep_for(1ms);
  std::unique_ptr<reactor::Profiler> p;
  if (rate > 0) {
    auto started = reactor::Profiler::start(
        {loop.load()}, std::chrono::nanoseconds(1'000'000'000 / rate),
        wall ? reactor::Profiler::Clock::kMonotonic : reactor::Profiler::Clock::kThreadCpu);
    if (!started.ok()) {
      std::fprintf(stderr, "profile: %s\n", std::string(started.status().message()).c_str());
      std::exit(1);
    }
    p = *std::move(started);
  }
  auto take = [&] {
    if (p == nullptr) return;
    p->drain([&](size_t, const reactor::ProfileSample& s) {
      r.samples += s.weight;
      ++r.signals;
    });
  };
  go = true;
  while (!done.load()) {
    std::this_thread::sleep_for(20ms);
    take();
  }
  t.join();
  if (p != nullptr) {
    p->stop();
    take();
    if (p->dropped() != 0) std::fprintf(stderr, "warning: %lu samples dropped\n", p->dropped());
  }
  r.cpu_ns = cpu_ns.load();
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int units = 200'000, rounds = 7, cpu = 0, wall_hz = 20'000;
  std::vector<int> rates = {0, 99, 1000};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--units") {
      units = std::atoi(value());
    } else if (a == "--rounds") {
      rounds = std::atoi(value());
    } else if (a == "--wall-hz") {
      wall_hz = std::atoi(value());
    } else if (a == "--cpu") {
      cpu = std::atoi(value());
    } else if (a == "--rates") {
      rates.clear();
      std::string list = value();
      for (size_t pos = 0; pos <= list.size();) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        rates.push_back(std::atoi(list.substr(pos, comma - pos).c_str()));
        pos = comma + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--units N] [--rounds R] [--rates 0,99,1000] [--wall-hz W] "
                   "[--cpu C]\n",
                   argv[0]);
      return 64;
    }
  }
  if (units <= 0 || rounds <= 0 || rates.empty() || rates[0] != 0 || wall_hz < 0) {
    std::fprintf(stderr, "units and rounds must be positive; the first rate must be 0 (none)\n");
    return 64;
  }
  struct Variant {
    int rate;
    bool wall;
  };
  std::vector<Variant> variants;
  for (int r : rates) variants.push_back({r, false});
  if (wall_hz > 0) variants.push_back({wall_hz, true});
  std::printf("# %d units a run, %d rounds, rates", units, rounds);
  for (int r : rates) std::printf(" %d", r);
  std::printf(" Hz of CPU time");
  if (wall_hz > 0) std::printf(", %d Hz of wall time", wall_hz);
  std::printf("; reactor thread on CPU %d\n", cpu);
  (void)measure(0, 0, false, units / 10, cpu);  // warm-up, not counted
  std::printf("round rate_hz clock cpu_ns samples signals\n");
  std::vector<std::vector<Run>> by_round;
  for (int round = 1; round <= rounds; ++round) {
    std::vector<Run>& runs = by_round.emplace_back();
    for (const Variant& v : variants) {
      runs.push_back(measure(round, v.rate, v.wall, units, cpu));
      const Run& r = runs.back();
      std::printf("%d %d %s %ld %lu %lu\n", r.round, r.rate, r.wall ? "wall" : "cpu", r.cpu_ns,
                  r.samples, r.signals);
      std::fflush(stdout);
    }
  }
  std::printf(
      "\n| rate | CPU per unit (median) | vs none (median per-round ratio) | signals/s of CPU "
      "| samples/s of CPU | cost per signal (median) |\n|---|---|---|---|---|---|\n");
  std::vector<double> signals_per_cpu_second(variants.size());
  double wall_per_signal = 0;
  for (size_t k = 0; k < variants.size(); ++k) {
    std::vector<double> per_unit, ratio, per_signal, rate_seen, signal_rate;
    for (const std::vector<Run>& runs : by_round) {
      const Run& none = runs[0];
      const Run& r = runs[k];
      const double cpu_s = static_cast<double>(r.cpu_ns) / 1e9;
      per_unit.push_back(static_cast<double>(r.cpu_ns) / units);
      ratio.push_back(static_cast<double>(r.cpu_ns) / static_cast<double>(none.cpu_ns) - 1);
      rate_seen.push_back(static_cast<double>(r.samples) / cpu_s);
      signal_rate.push_back(static_cast<double>(r.signals) / cpu_s);
      if (r.signals > 0) {
        per_signal.push_back(static_cast<double>(r.cpu_ns - none.cpu_ns) /
                             static_cast<double>(r.signals));
      }
    }
    signals_per_cpu_second[k] = median(signal_rate);
    if (variants[k].wall) wall_per_signal = median(per_signal);
    const std::string name = variants[k].rate == 0 ? std::string("none")
                             : variants[k].wall
                                 ? std::to_string(variants[k].rate) + " Hz (wall clock)"
                                 : std::to_string(variants[k].rate) + " Hz";
    std::printf("| %s | %.1f ns | %+.3f %% | %.0f | %.0f | %s |\n", name.c_str(), median(per_unit),
                100 * median(ratio), signals_per_cpu_second[k], median(rate_seen),
                per_signal.empty()
                    ? "-"
                    : (std::to_string(static_cast<int64_t>(median(per_signal))) + " ns").c_str());
  }
  if (wall_hz > 0) {
    std::printf(
        "\nA signal costs the thread %.0f ns (the wall-clock runs' median, an upper bound: it "
        "includes the cross-CPU kick). At the signals each CPU-time rate delivered:\n",
        wall_per_signal);
    for (size_t k = 1; k < variants.size(); ++k) {
      if (variants[k].wall) continue;
      std::printf("- %d Hz: %.0f signals a CPU-second x %.0f ns = %.3f %% of the thread's CPU\n",
                  variants[k].rate, signals_per_cpu_second[k], wall_per_signal,
                  100 * signals_per_cpu_second[k] * wall_per_signal / 1e9);
    }
  }
  return 0;
}
